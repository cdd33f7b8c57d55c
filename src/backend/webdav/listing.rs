//! Listing the store: a walk of `objects/` and then of each fan-out folder
//! `objects/ab/` (or of one fan-out folder, for the orphan sweep) with
//! PROPFIND Depth 1 asking for sizes and modification times, one folder at a time, each answer
//! parsed while it streams in ([`super::multistatus`]) so memory does not
//! grow with the folder. A request is retried until its first entry is
//! read; a failure after that ends the listing with an error, never with a
//! shorter list. Entries that are not objects of their own fan-out folder
//! are not ours and are left out.

use futures_util::stream::{self, BoxStream, StreamExt};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Response, Url};

use super::classify::error_chain;
use super::multistatus::{
    decode_path, parse_multistatus, stream_multistatus, DavEntry, StreamError,
};
use super::retry::Failure;
use super::{propfind, WebDavStore, PROPFIND_BODY};
use crate::backend::metrics::Verb;
use crate::backend::{fanout_name, BackendError, ObjectInfo};
use crate::crypto::{ObjectName, Place, METADATA_FOLDER};

impl WebDavStore {
    /// Every object with its size, read folder by folder.
    pub(super) fn list_objects(&self) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        // Walk objects/ → objects/ab/ lazily: one folder's listing is
        // fetched only when the previous one is used up.
        stream::once(self.fanout_children("objects".to_string()))
            .flat_map(|r| stream::iter(flatten(r)))
            .flat_map(move |r| match r {
                Ok(dir) => self.objects_in(dir),
                Err(e) => stream::once(std::future::ready(Err(e))).boxed(),
            })
            .boxed()
    }

    /// The objects of fan-out folder `fanout`, with their sizes and
    /// modification times (`getlastmodified`): one PROPFIND Depth 1, read
    /// while the answer arrives. A missing folder has no objects.
    pub(super) fn list_fanout_objects(
        &self,
        fanout: u8,
    ) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        self.objects_in(format!("objects/{}", fanout_name(fanout)))
    }

    /// One PROPFIND Depth 1 of the folder at `url`: its 207 answer, or
    /// `None` when the folder is missing.
    async fn propfind_depth1(&self, url: &Url, what: &str) -> Result<Option<Response>, Failure> {
        let resp = self
            .request(propfind(), url.clone())
            .header("Depth", "1")
            .header(CONTENT_TYPE, "application/xml; charset=utf-8")
            .body(PROPFIND_BODY)
            .send()
            .await
            .map_err(|e| self.transport_failure(what, &e))?;
        match resp.status().as_u16() {
            207 => Ok(Some(resp)),
            404 | 410 => Ok(None),
            _ => Err(self.status_failure(what, &resp)),
        }
    }

    /// PROPFIND Depth 1 of a folder under the root: its children (the folder
    /// itself left out). A missing folder has no children.
    async fn children(&self, rel: &str) -> Result<Vec<DavEntry>, BackendError> {
        let url = self.url(rel, true);
        let what = format!("PROPFIND {rel}/");
        let body = self
            .with_retries(Verb::Propfind, &what, self.retry_deadline, || async {
                let Some(resp) = self.propfind_depth1(&url, &what).await? else {
                    return Ok(None);
                };
                match resp.bytes().await {
                    Ok(b) => Ok(Some(b)),
                    Err(e) => Err(self.transport_failure(&what, &e)),
                }
            })
            .await?;
        let Some(body) = body else {
            return Ok(Vec::new());
        };
        let entries = parse_multistatus(&body)
            .map_err(|e| self.permanent(format!("{what}: unreadable answer: {e}")))?;
        let is_child = self.child_filter(rel, &url);
        Ok(entries.into_iter().filter(|e| is_child(e)).collect())
    }

    /// Tells the children of the folder `rel` (at `url`) from the folder's
    /// own entry in its PROPFIND answer.
    fn child_filter(&self, rel: &str, url: &Url) -> impl Fn(&DavEntry) -> bool {
        let own_path = normalize(&decode_path(url.path()).unwrap_or_default());
        let own_suffix = format!(
            "/{}",
            normalize(&format!("{}/{}", self.root.join("/"), rel))
        );
        move |e| {
            let p = normalize(&e.path);
            p != own_path && !p.ends_with(&own_suffix)
        }
    }

    /// Like [`Self::children`], but the answer is parsed while it arrives, so
    /// memory does not grow with the size of the folder. The request is
    /// retried on transient failures until the first entry is read; a failure
    /// after that ends the stream with one `Err`.
    async fn children_stream(
        &self,
        rel: &str,
    ) -> Result<BoxStream<'static, Result<DavEntry, BackendError>>, BackendError> {
        let url = self.url(rel, true);
        let what = format!("PROPFIND {rel}/");
        let started = self
            .with_retries(Verb::Propfind, &what, self.retry_deadline, || async {
                let Some(resp) = self.propfind_depth1(&url, &what).await? else {
                    return Ok(None);
                };
                let mut entries = stream_multistatus(resp.bytes_stream());
                match entries.next().await {
                    Some(Err(e)) => Err(self.listing_failure(&what, e)),
                    first => Ok(Some((first, entries))),
                }
            })
            .await?;
        let Some((first, rest)) = started else {
            return Ok(stream::empty().boxed());
        };
        let backend = self.display.clone();
        let is_child = self.child_filter(rel, &url);
        Ok(stream::iter(first)
            .chain(rest)
            .filter_map(move |r| {
                let item = match r {
                    Ok(e) => is_child(&e).then_some(Ok(e)),
                    Err(e) => Some(Err(listing_error(&backend, &what, e))),
                };
                std::future::ready(item)
            })
            .boxed())
    }

    /// Classifies a listing that failed before its first entry.
    fn listing_failure(&self, what: &str, e: StreamError<reqwest::Error>) -> Failure {
        match e {
            StreamError::Body(e) => self.transport_failure(what, &e),
            StreamError::Parse(e) => {
                Failure::Fatal(self.permanent(format!("{what}: unreadable answer: {e}")))
            }
        }
    }

    /// Names of the two-hex-digit fan-out folders inside `rel`.
    async fn fanout_children(&self, rel: String) -> Result<Vec<String>, BackendError> {
        Ok(self
            .children(&rel)
            .await?
            .into_iter()
            .filter(|e| e.is_collection)
            .filter_map(|e| {
                let n = e.name()?;
                is_fanout_name(n).then(|| format!("{rel}/{n}"))
            })
            .collect())
    }

    /// The sealed metadata objects (`meta/`); a missing folder has none.
    pub(super) fn list_metadata_objects(&self) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        self.objects_in(METADATA_FOLDER.to_string())
    }

    /// The objects inside one fan-out folder, read while the upstream's
    /// answer arrives.
    fn objects_in(&self, rel: String) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        stream::once(async move {
            match self.children_stream(&rel).await {
                Ok(entries) => entries
                    .filter_map(move |r| std::future::ready(object_info(&rel, r)))
                    .boxed(),
                Err(e) => stream::once(std::future::ready(Err(e))).boxed(),
            }
        })
        .flatten()
        .boxed()
    }
}

fn flatten<T>(r: Result<Vec<T>, BackendError>) -> Vec<Result<T, BackendError>> {
    match r {
        Ok(v) => v.into_iter().map(Ok).collect(),
        Err(e) => vec![Err(e)],
    }
}

/// An entry of the fan-out folder `rel` as an object, if it is one of ours;
/// errors pass through.
fn object_info(
    rel: &str,
    r: Result<DavEntry, BackendError>,
) -> Option<Result<ObjectInfo, BackendError>> {
    let e = match r {
        Ok(e) => e,
        Err(e) => return Some(Err(e)),
    };
    if e.is_collection {
        return None;
    }
    let name = if rel == METADATA_FOLDER {
        ObjectName::parse_in(e.name()?, Place::Metadata)?
    } else {
        let name = ObjectName::parse(e.name()?)?;
        // Objects outside their own fan-out folder are not ours.
        if !rel.ends_with(&format!("/{}", name.fanout())) {
            return None;
        }
        name
    };
    Some(Ok(ObjectInfo {
        name,
        size: e.size.unwrap_or(0),
        modified: e.modified,
    }))
}

/// A listing that failed after entries were read: too late to retry.
fn listing_error(backend: &str, what: &str, e: StreamError<reqwest::Error>) -> BackendError {
    match e {
        StreamError::Body(e) => BackendError::Transient {
            backend: backend.to_string(),
            cause: format!("{what}: the answer broke off: {}", error_chain(&e)),
        },
        StreamError::Parse(e) => BackendError::Permanent {
            backend: backend.to_string(),
            cause: format!("{what}: unreadable answer: {e}"),
        },
    }
}

fn is_fanout_name(n: &str) -> bool {
    n.len() == 2 && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A path without trailing slashes and without a leading one.
fn normalize(path: &str) -> String {
    path.trim_matches('/').to_string()
}
