//! The `check` probe behind `dedupdav check-upstream`: PROPFIND of the
//! account root (reachability, credentials, WebDAV), then write, read back
//! and remove `<root>/probe-<uuid>`, timing each step. Failures come back
//! with a cause meant for an operator, and sooner than a normal request's
//! retry deadline would allow.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};
use reqwest::Method;

use super::multistatus::parse_multistatus;
use super::retry::Failure;
use super::{header_str, propfind, WebDavStore, PROPFIND_BODY};
use crate::backend::metrics::Verb;
use crate::backend::BackendError;

/// Size of the probe object written by [`WebDavStore::check`].
const PROBE_SIZE: usize = 64 << 10;
/// The `check` probe gives up on transient failures after this long at most.
const CHECK_DEADLINE: Duration = Duration::from_secs(15);

/// What [`WebDavStore::check`] measured.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The upstream, as [`ObjectStore::describe`](crate::backend::ObjectStore::describe) names it.
    pub upstream: String,
    /// The `Server` header of the upstream, if it sent one.
    pub server: Option<String>,
    /// The `DAV` compliance classes the upstream announced, if any.
    pub dav: Option<String>,
    /// Path of the probe object, relative to the account root.
    pub probe_path: String,
    /// Bytes written and read back.
    pub probe_size: usize,
    /// PROPFIND of the account root (reachability, credentials, WebDAV).
    pub propfind_latency: Duration,
    pub write_latency: Duration,
    pub read_latency: Duration,
    pub delete_latency: Duration,
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "upstream   {}", self.upstream)?;
        if let Some(s) = &self.server {
            writeln!(f, "server     {s}")?;
        }
        if let Some(d) = &self.dav {
            writeln!(f, "dav        {d}")?;
        }
        writeln!(
            f,
            "probe      {} ({} bytes)",
            self.probe_path, self.probe_size
        )?;
        writeln!(f, "propfind   {:?}", self.propfind_latency)?;
        writeln!(f, "write      {:?}", self.write_latency)?;
        writeln!(f, "read       {:?}", self.read_latency)?;
        write!(f, "delete     {:?}", self.delete_latency)
    }
}

impl WebDavStore {
    /// Probes the upstream end to end: PROPFIND of the account root, then
    /// write, read back and remove `<root>/probe-<uuid>`, timing each step.
    /// Failures come back with a cause meant for an operator.
    pub async fn check(&self) -> Result<CheckReport, BackendError> {
        let deadline = self.retry_deadline.min(CHECK_DEADLINE);
        let account = self.base.clone();
        let what = "PROPFIND of the account root".to_string();
        let started = Instant::now();
        let (server, dav) = self
            .with_retries(Verb::Propfind, &what, deadline, || async {
                let resp = self
                    .request(propfind(), account.clone())
                    .header("Depth", "0")
                    .header(CONTENT_TYPE, "application/xml; charset=utf-8")
                    .body(PROPFIND_BODY)
                    .send()
                    .await
                    .map_err(|e| self.transport_failure(&what, &e))?;
                let status = resp.status();
                let server = header_str(resp.headers(), reqwest::header::SERVER);
                let dav = header_str(resp.headers(), "dav");
                match status.as_u16() {
                    207 => {}
                    404 | 410 | 405 | 501 => {
                        let meaning = if matches!(status.as_u16(), 405 | 501) {
                            "no WebDAV here"
                        } else {
                            "nothing here"
                        };
                        return Err(Failure::Fatal(self.permanent(format!(
                            "bad URL: PROPFIND on {account} answered {status} ({meaning}); \
                                 expected the account's WebDAV root, like \
                                 https://host/remote.php/dav/files/<user>/"
                        ))));
                    }
                    200..=299 => {
                        let kind = header_str(resp.headers(), CONTENT_TYPE).unwrap_or_default();
                        return Err(Failure::Fatal(self.permanent(format!(
                            "not WebDAV: PROPFIND on {account} answered {status} ({kind}) \
                                 instead of 207 Multi-Status; is the URL the WebDAV root?"
                        ))));
                    }
                    _ => return Err(self.status_failure(&what, &resp)),
                }
                let body = resp
                    .bytes()
                    .await
                    .map_err(|e| self.transport_failure(&what, &e))?;
                if parse_multistatus(&body).is_err() {
                    return Err(Failure::Fatal(self.permanent(format!(
                        "not WebDAV: PROPFIND on {account} did not answer a readable multistatus"
                    ))));
                }
                Ok((server, dav))
            })
            .await?;
        let propfind_latency = started.elapsed();

        self.ensure_dirs(&self.root_dirs()).await?;
        let probe = format!("probe-{}", uuid::Uuid::new_v4().simple());
        let probe_path = format!("{}/{probe}", self.root.join("/"));
        let mut data = vec![0u8; PROBE_SIZE];
        rand::thread_rng().fill(&mut data[..]);
        let data = Bytes::from(data);

        let started = Instant::now();
        let url = self.url(&probe, false);
        let what = format!("PUT {probe_path}");
        self.with_retries(Verb::Put, &what, deadline, || async {
            let resp = self
                .request(Method::PUT, url.clone())
                .header(CONTENT_LENGTH, data.len())
                .body(data.clone())
                .send()
                .await
                .map_err(|e| self.transport_failure(&what, &e))?;
            match resp.status().as_u16() {
                200 | 201 | 204 => Ok(()),
                404 | 409 => Err(Failure::Fatal(self.permanent(format!(
                    "{what} answered {}: the root folder cannot be written",
                    resp.status()
                )))),
                _ => Err(self.status_failure(&what, &resp)),
            }
        })
        .await?;
        let write_latency = started.elapsed();

        let started = Instant::now();
        let read = self.get_rel(&probe, &probe_path, deadline).await;
        let read_latency = started.elapsed();
        let read_ok = match &read {
            Ok(back) if back == &data => Ok(()),
            Ok(back) => Err(BackendError::Corrupt {
                name: probe_path.clone(),
                cause: format!(
                    "the probe read back differs from what was written ({} bytes instead of {})",
                    back.len(),
                    data.len()
                ),
            }),
            Err(_) => Ok(()),
        };

        let started = Instant::now();
        let deleted = self.delete_rel(&probe, deadline).await;
        let delete_latency = started.elapsed();
        read?;
        read_ok?;
        deleted?;
        Ok(CheckReport {
            upstream: self.display.clone(),
            server,
            dav,
            probe_path,
            probe_size: data.len(),
            propfind_latency,
            write_latency,
            read_latency,
            delete_latency,
        })
    }
}
