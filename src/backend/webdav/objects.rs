//! The objects themselves: the [`ObjectStore`] operations on
//! `<root>/objects/ab/<name>`, i.e. PUT (with its folders, its checksum
//! and the check that the upstream kept it whole), GET, HEAD and DELETE.
//!
//! Every PUT carries `OC-Checksum: ADLER32:…` of its bytes, which an
//! ownCloud upstream verifies before it keeps them. A PUT is acknowledged
//! only after the upstream answered 201/204 and, when `verify_puts` is on
//! (the default), a HEAD shows the stored size equals the size sent (and the
//! Adler-32 too, when the upstream reports checksums): one extra round trip
//! per *new* chunk, which catches an upstream or proxy that acknowledges a
//! write it did not keep whole. The bytes themselves are authenticated on
//! every read (AEAD), so this cheap check is enough here.

use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::stream::BoxStream;
use reqwest::header::{HeaderMap, CONTENT_LENGTH};
use reqwest::Method;
use tracing::warn;

use super::classify::error_chain;
use super::retry::Failure;
use super::{header_str, WebDavStore};
use crate::backend::metrics::Verb;
use crate::backend::{BackendError, ObjectInfo, ObjectStat, ObjectStore, MAX_RANGE};
use crate::crypto::ObjectName;

/// Largest buffer reserved up front from an upstream's Content-Length; bigger
/// objects still load, the buffer just grows as bytes arrive.
const MAX_PREALLOC: usize = 16 << 20;

#[async_trait]
impl ObjectStore for WebDavStore {
    async fn put(&self, name: &ObjectName, data: Bytes) -> Result<(), BackendError> {
        let dirs = self.dirs_of(name);
        self.ensure_dirs(&dirs).await?;
        let rel = name.relative_path();
        let checksum = adler32_checksum(&data);
        let mut refolded = false;
        let mut reput = false;
        loop {
            if !self.put_once(name, &data, &checksum).await? {
                if refolded {
                    return Err(self.permanent(format!(
                        "PUT {rel}: the folder is still missing after re-creating it"
                    )));
                }
                warn!(upstream = %self.display, "PUT {rel}: folder missing upstream, re-creating it");
                self.forget_dirs(&dirs);
                self.ensure_dirs(&dirs).await?;
                refolded = true;
                continue;
            }
            if !self.verify_puts {
                return Ok(());
            }
            let Some(mismatch) = self
                .verify_stored(&rel, data.len() as u64, &checksum)
                .await?
            else {
                return Ok(());
            };
            let err = BackendError::Corrupt {
                name: name.to_string(),
                cause: format!(
                    "after a PUT of {} bytes ({checksum}) the upstream holds {mismatch}",
                    data.len()
                ),
            };
            if reput {
                warn!(upstream = %self.display, "{err}");
                return Err(err);
            }
            warn!(upstream = %self.display, "{err}; writing it again");
            reput = true;
        }
    }

    async fn get(&self, name: &ObjectName) -> Result<Bytes, BackendError> {
        self.get_rel(&name.relative_path(), name.as_str(), self.retry_deadline)
            .await
    }

    async fn get_range(
        &self,
        name: &ObjectName,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, BackendError> {
        if len == 0 || len > MAX_RANGE as u64 {
            return Err(BackendError::Corrupt {
                name: name.to_string(),
                cause: format!("a range of {len} bytes"),
            });
        }
        self.get_range_rel(&name.relative_path(), name.as_str(), offset, len)
            .await
    }

    async fn delete(&self, name: &ObjectName) -> Result<(), BackendError> {
        self.delete_rel(&name.relative_path(), self.retry_deadline)
            .await
    }

    async fn exists(&self, name: &ObjectName) -> Result<bool, BackendError> {
        Ok(self.head(&name.relative_path()).await?.is_some())
    }

    async fn stat(&self, name: &ObjectName) -> Result<Option<ObjectStat>, BackendError> {
        let stored = self.head(&name.relative_path()).await?;
        Ok(stored.map(|s| ObjectStat { size: s.size }))
    }

    fn list(&self) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        self.list_objects()
    }

    fn list_fanout(&self, fanout: u8) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        self.list_fanout_objects(fanout)
    }

    fn list_metadata(&self) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        self.list_metadata_objects()
    }

    fn describe(&self) -> String {
        self.display.clone()
    }

    fn upstream_metrics(&self) -> Option<&crate::backend::metrics::UpstreamMetrics> {
        Some(self.metrics())
    }
}

impl WebDavStore {
    /// One PUT with retries; `Ok(false)` when the upstream says the folder
    /// is missing. `OC-Checksum` lets an ownCloud upstream check the bytes it
    /// received (it refuses a mismatch); other servers ignore it.
    async fn put_once(
        &self,
        name: &ObjectName,
        data: &Bytes,
        checksum: &str,
    ) -> Result<bool, BackendError> {
        let url = self.url(&name.relative_path(), false);
        let what = format!("PUT {}", name.relative_path());
        self.with_retries(Verb::Put, &what, self.retry_deadline, || async {
            let resp = self
                .request(Method::PUT, url.clone())
                .header(CONTENT_LENGTH, data.len())
                .header(OC_CHECKSUM, checksum)
                .body(data.clone())
                .send()
                .await
                .map_err(|e| self.transport_failure(&what, &e))?;
            match resp.status().as_u16() {
                200 | 201 | 204 => Ok(true),
                404 | 409 => Ok(false),
                _ => Err(self.status_failure(&what, &resp)),
            }
        })
        .await
    }

    /// Compares what the upstream says it holds at `rel` with what was sent:
    /// the size, and the Adler-32 when the upstream reports checksums
    /// (ownCloud does). `Some(what it holds)` on a mismatch.
    async fn verify_stored(
        &self,
        rel: &str,
        size: u64,
        checksum: &str,
    ) -> Result<Option<String>, BackendError> {
        let Some(stored) = self.head(rel).await? else {
            return Ok(Some("nothing".to_string()));
        };
        // No Content-Length on HEAD: nothing cheap to compare.
        if stored.size.is_some_and(|n| n != size) {
            return Ok(Some(format!("{} bytes", stored.size.unwrap_or_default())));
        }
        match stored.adler32 {
            Some(theirs) if !theirs.eq_ignore_ascii_case(checksum) => Ok(Some(theirs)),
            _ => Ok(None),
        }
    }

    /// HEAD: what the upstream says it stores (`None` when the object is
    /// missing).
    async fn head(&self, rel: &str) -> Result<Option<Stored>, BackendError> {
        let url = self.url(rel, false);
        let what = format!("HEAD {rel}");
        self.with_retries(Verb::Head, &what, self.retry_deadline, || async {
            let resp = self
                .request(Method::HEAD, url.clone())
                .send()
                .await
                .map_err(|e| self.transport_failure(&what, &e))?;
            match resp.status().as_u16() {
                200 | 204 => Ok(Some(Stored::from_headers(resp.headers()))),
                404 | 410 => Ok(None),
                _ => Err(self.status_failure(&what, &resp)),
            }
        })
        .await
    }

    /// GET of a whole object at `rel`; a body shorter or longer than the
    /// announced Content-Length is retried, and reported as
    /// [`BackendError::Corrupt`] if it persists.
    pub(super) async fn get_rel(
        &self,
        rel: &str,
        label: &str,
        deadline: Duration,
    ) -> Result<Bytes, BackendError> {
        let url = self.url(rel, false);
        let what = format!("GET {rel}");
        self.with_retries(Verb::Get, &what, deadline, || async {
            let mut resp = self
                .request(Method::GET, url.clone())
                .send()
                .await
                .map_err(|e| self.transport_failure(&what, &e))?;
            match resp.status().as_u16() {
                200 => {}
                404 | 410 => return Err(Failure::Fatal(BackendError::NotFound(label.to_string()))),
                _ => return Err(self.status_failure(&what, &resp)),
            }
            let expected = content_length(resp.headers());
            let prealloc = expected.map_or(0, |n| {
                usize::try_from(n).unwrap_or(usize::MAX).min(MAX_PREALLOC)
            });
            let mut buf = BytesMut::with_capacity(prealloc);
            let short = |got: usize, cause: String| {
                Failure::Retry(
                    BackendError::Corrupt {
                        name: label.to_string(),
                        cause: match expected {
                            Some(n) => format!("body ended after {got} of {n} bytes: {cause}"),
                            None => format!("body ended after {got} bytes: {cause}"),
                        },
                    },
                    None,
                )
            };
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                    Ok(None) => break,
                    Err(e) if e.is_timeout() => {
                        return Err(self.transport_failure(&what, &e));
                    }
                    Err(e) => return Err(short(buf.len(), error_chain(&e))),
                }
            }
            if let Some(n) = expected {
                if buf.len() as u64 != n {
                    return Err(short(
                        buf.len(),
                        "length differs from Content-Length".to_string(),
                    ));
                }
            }
            Ok(buf.freeze())
        })
        .await
    }

    /// GET of bytes `offset..offset + len` of the object at `rel`, with a
    /// `Range` header. A 206 must carry exactly those bytes; an upstream
    /// that ignores `Range` answers 200 with the whole object, which is cut
    /// here (correct, only slower). A body of the wrong length is retried,
    /// then [`BackendError::Corrupt`].
    async fn get_range_rel(
        &self,
        rel: &str,
        label: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, BackendError> {
        let url = self.url(rel, false);
        let what = format!("GET {rel} (bytes {offset}+{len})");
        let range = format!("bytes={offset}-{}", offset + len - 1);
        self.with_retries(Verb::Get, &what, self.retry_deadline, || async {
            let resp = self
                .request(Method::GET, url.clone())
                .header(reqwest::header::RANGE, range.as_str())
                .send()
                .await
                .map_err(|e| self.transport_failure(&what, &e))?;
            let whole = match resp.status().as_u16() {
                206 => false,
                200 => true,
                404 | 410 => return Err(Failure::Fatal(BackendError::NotFound(label.to_string()))),
                416 => {
                    return Err(Failure::Fatal(BackendError::Corrupt {
                        name: label.to_string(),
                        cause: format!("the upstream has fewer than {} bytes", offset + len),
                    }))
                }
                _ => return Err(self.status_failure(&what, &resp)),
            };
            let (start, want) = (if whole { offset as usize } else { 0 }, len as usize);
            // Read no further than the range needs (plus one byte, to tell
            // a 206 that is too long): an upstream ignoring `Range` on a
            // big object, or sending without end, costs no more memory.
            let mut resp = resp;
            let mut body = BytesMut::with_capacity(want.min(MAX_PREALLOC));
            while body.len() <= start + want {
                match resp.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    Ok(None) => break,
                    Err(e) => return Err(self.transport_failure(&what, &e)),
                }
            }
            let body = body.freeze();
            if body.len() < start + want || (!whole && body.len() != want) {
                return Err(Failure::Retry(
                    BackendError::Corrupt {
                        name: label.to_string(),
                        cause: format!("a range of {want} bytes came back as {} bytes", body.len()),
                    },
                    None,
                ));
            }
            Ok(body.slice(start..start + want))
        })
        .await
    }

    /// DELETE; a missing object is fine.
    pub(super) async fn delete_rel(
        &self,
        rel: &str,
        deadline: Duration,
    ) -> Result<(), BackendError> {
        let url = self.url(rel, false);
        let what = format!("DELETE {rel}");
        self.with_retries(Verb::Delete, &what, deadline, || async {
            let resp = self
                .request(Method::DELETE, url.clone())
                .send()
                .await
                .map_err(|e| self.transport_failure(&what, &e))?;
            match resp.status().as_u16() {
                200 | 202 | 204 | 404 | 410 => Ok(()),
                _ => Err(self.status_failure(&what, &resp)),
            }
        })
        .await
    }
}

/// The Content-Length header (reqwest's own `content_length()` is 0 for HEAD).
fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, CONTENT_LENGTH)?.trim().parse().ok()
}

/// ownCloud's checksum header (`SHA1:… MD5:… ADLER32:…` on GET/HEAD).
const OC_CHECKSUM: &str = "OC-Checksum";

/// `ADLER32:<8 hex digits>` of `data`, as ownCloud writes it: cheap enough
/// to send with every PUT.
fn adler32_checksum(data: &[u8]) -> String {
    let mut a = simd_adler32::Adler32::new();
    a.write(data);
    format!("ADLER32:{:08x}", a.finish())
}

/// What a HEAD says about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    size: Option<u64>,
    /// The `ADLER32:…` entry of `OC-Checksum`, when the upstream sends one.
    adler32: Option<String>,
}

impl Stored {
    fn from_headers(headers: &HeaderMap) -> Self {
        let adler32 = header_str(headers, OC_CHECKSUM).and_then(|v| {
            v.split_whitespace().find_map(|c| {
                let (kind, hex) = c.split_once(':')?;
                let ok = kind.eq_ignore_ascii_case("ADLER32") && !hex.is_empty();
                ok.then(|| format!("ADLER32:{:0>8}", hex.to_ascii_lowercase()))
            })
        });
        Self {
            size: content_length(headers),
            adler32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_checksums_are_read_from_head() {
        assert_eq!(adler32_checksum(b"hello world"), "ADLER32:1a0b045d");
        let mut h = HeaderMap::new();
        assert_eq!(Stored::from_headers(&h).adler32, None);
        h.insert(CONTENT_LENGTH, "11".parse().unwrap());
        h.insert(
            OC_CHECKSUM,
            "SHA1:2aae6c35c94fcfb415dbe95f408b9ce91ee846ed MD5:x Adler32:A0B045D"
                .parse()
                .unwrap(),
        );
        let s = Stored::from_headers(&h);
        assert_eq!(s.size, Some(11));
        assert_eq!(s.adler32.as_deref(), Some("ADLER32:0a0b045d"));
        h.insert(OC_CHECKSUM, "SHA1:ab ADLER3é:12 ADLER32:".parse().unwrap());
        assert_eq!(Stored::from_headers(&h).adler32, None);
    }
}
