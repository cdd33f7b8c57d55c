//! The upstream backend: sealed objects stored in one folder of an
//! ownCloud-compatible WebDAV account.
//!
//! This module owns everything about talking to the upstream, one concern
//! per file:
//!
//! - here: the store itself, its pooled HTTP client and the URL layout
//!   (`<account url>/<root>/objects/ab/<name>`);
//! - `setup`: turning a [`WebDavConfig`] into those parts, or a
//!   [`WebDavConfigError`] that says what is wrong;
//! - `retry`: retries with backoff on transient failures, the bound on
//!   requests in flight, and each attempt counted in [`UpstreamMetrics`];
//! - `classify`: upstream answers and transport errors as [`BackendError`]s,
//!   retryable or not;
//! - `folders`: lazy creation of the fan-out folders (remembered per
//!   process);
//! - `objects`: the [`ObjectStore`] operations (PUT and its verification,
//!   GET, HEAD, DELETE);
//! - `listing`: the PROPFIND listing, whose XML [`multistatus`] reads while
//!   the answer streams in;
//! - `check`: the probe behind `dedupdav check-upstream`.
//!
//! Writes are idempotent (same name, same bytes), so every request may be
//! retried.
//!
//! [`ObjectStore`]: super::ObjectStore
//! [`BackendError`]: super::BackendError
//! [`UpstreamMetrics`]: super::metrics::UpstreamMetrics

mod check;
mod classify;
mod folders;
mod listing;
pub(crate) mod multistatus;
mod objects;
mod retry;
mod setup;

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Url};
use tokio::sync::Semaphore;

pub use self::check::CheckReport;
pub use self::setup::WebDavConfigError;
pub use super::config::WebDavConfig;
use folders::FolderCache;

/// The properties every PROPFIND of this backend asks for.
const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getcontentlength/><d:getlastmodified/></d:prop></d:propfind>"#;

/// An [`ObjectStore`](super::ObjectStore) on an upstream WebDAV account.
pub struct WebDavStore {
    client: reqwest::Client,
    /// The account's WebDAV root, always ending in `/`.
    base: Url,
    /// The `root` folder, split into path segments.
    root: Vec<String>,
    username: String,
    password: Option<String>,
    /// "webdav:<url>/<root>", never with credentials.
    display: String,
    folders: FolderCache,
    permits: Semaphore,
    retry_deadline: Duration,
    verify_puts: bool,
    metrics: super::metrics::UpstreamMetrics,
}

impl WebDavStore {
    /// Builds the store. Nothing is sent upstream until the first request.
    pub fn new(config: &WebDavConfig) -> Result<Self, WebDavConfigError> {
        let base = setup::account_base(&config.url)?;
        let root = setup::root_segments(&config.root)?;
        let password = setup::password(config)?;
        setup::check_limits(config)?;
        let client = setup::http_client(config)?;
        let display = format!("webdav:{}{}", base, root.join("/"));
        Ok(Self {
            client,
            base,
            root,
            username: config.username.clone(),
            password,
            display,
            folders: FolderCache::default(),
            permits: Semaphore::new(config.parallelism),
            retry_deadline: Duration::from_secs(config.retry_deadline_secs),
            verify_puts: config.verify_puts,
            metrics: Default::default(),
        })
    }

    /// The URL of `rel` (a `/`-separated path under the root folder; empty
    /// for the root folder itself), with a trailing `/` when `folder`.
    fn url(&self, rel: &str, folder: bool) -> Url {
        let segments = self
            .root
            .iter()
            .map(String::as_str)
            .chain(rel.split('/').filter(|s| !s.is_empty()));
        self.account_url(segments, folder)
    }

    fn account_url<'a>(&self, segments: impl Iterator<Item = &'a str>, folder: bool) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            // `base` always ends in '/', leaving one empty last segment.
            path.pop_if_empty();
            path.extend(segments);
            if folder {
                path.push("");
            }
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let rb = self.client.request(method, url);
        match &self.password {
            Some(p) => rb.basic_auth(&self.username, Some(p)),
            None => rb,
        }
    }
}

fn propfind() -> Method {
    // A valid token, so this cannot fail.
    Method::from_bytes(b"PROPFIND").unwrap_or_else(|_| unreachable!())
}

fn header_str(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ObjectStore;
    use crate::crypto::ObjectName;

    #[test]
    fn config_validation() {
        let mut cfg = WebDavConfig::new("http://u:p@127.0.0.1:1/dav/", "svc");
        cfg.password = Some("pw".to_string());
        assert!(matches!(
            WebDavStore::new(&cfg),
            Err(WebDavConfigError::Url { .. })
        ));
        cfg.url = "ftp://127.0.0.1/".to_string();
        assert!(matches!(
            WebDavStore::new(&cfg),
            Err(WebDavConfigError::Url { .. })
        ));
        cfg.url = "http://127.0.0.1:1/remote.php/dav/files/svc".to_string();
        let store = WebDavStore::new(&cfg).unwrap();
        assert_eq!(
            store.describe(),
            "webdav:http://127.0.0.1:1/remote.php/dav/files/svc/dedupdav"
        );
        cfg.password = None;
        assert!(matches!(
            WebDavStore::new(&cfg),
            Err(WebDavConfigError::Credentials(_))
        ));
        cfg.password = Some("pw".to_string());
        cfg.root = "a/../b".to_string();
        assert!(matches!(
            WebDavStore::new(&cfg),
            Err(WebDavConfigError::Invalid(_))
        ));
    }

    #[test]
    fn urls_are_encoded_per_segment() {
        let mut cfg = WebDavConfig::new("http://127.0.0.1:1/remote.php/dav/files/svc%20x/", "svc");
        cfg.password = Some("pw".to_string());
        cfg.root = "/my root/sub/".to_string();
        let store = WebDavStore::new(&cfg).unwrap();
        let name = ObjectName::parse(&"0f".repeat(32)).unwrap();
        assert_eq!(
            store.url(&name.relative_path(), false).as_str(),
            format!(
                "http://127.0.0.1:1/remote.php/dav/files/svc%20x/my%20root/sub/objects/0f/{name}"
            )
        );
        assert_eq!(
            store.url("objects", true).as_str(),
            "http://127.0.0.1:1/remote.php/dav/files/svc%20x/my%20root/sub/objects/"
        );
        assert_eq!(
            store.dirs_of(&name),
            vec![
                "my root",
                "my root/sub",
                "my root/sub/objects",
                "my root/sub/objects/0f",
            ]
        );
    }
}
