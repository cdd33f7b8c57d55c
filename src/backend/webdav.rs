//! The upstream backend: sealed objects stored in one folder of an
//! ownCloud-compatible WebDAV account.
//!
//! This module owns everything about talking to the upstream: the pooled HTTP
//! client, the URL layout (`<account url>/<root>/objects/ab/<name>`), lazy
//! creation of the fan-out folders (remembered per process), retries with
//! backoff on transient failures, classification of upstream answers into
//! [`BackendError`]s, the PROPFIND listing (its XML is read by
//! [`super::multistatus`] while the answer streams in), and the `check` probe
//! behind `dedupdav check-upstream`.
//!
//! Writes are idempotent (same name, same bytes), so every request may be
//! retried. Every PUT carries `OC-Checksum: ADLER32:…` of its bytes, which an
//! ownCloud upstream verifies before it keeps them. A PUT is acknowledged
//! only after the upstream answered 201/204 and, when `verify_puts` is on
//! (the default), a HEAD shows the stored size equals the size sent (and the
//! Adler-32 too, when the upstream reports checksums): one extra round trip
//! per *new* chunk, which catches an upstream or proxy that acknowledges a
//! write it did not keep whole. The bytes themselves are authenticated on
//! every read (AEAD), so this cheap check is enough here.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::stream::{self, BoxStream, StreamExt};
use parking_lot::Mutex;
use rand::Rng;
use reqwest::header::{HeaderMap, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, Url};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::multistatus::{
    decode_path, parse_multistatus, stream_multistatus, DavEntry, StreamError,
};
use super::{BackendError, ObjectInfo, ObjectStore};
use crate::crypto::ObjectName;

/// Largest buffer reserved up front from an upstream's Content-Length; bigger
/// objects still load, the buffer just grows as bytes arrive.
const MAX_PREALLOC: usize = 16 << 20;
/// First retry delay; doubled on every further attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest delay between two attempts (unless the upstream asks for more).
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// Size of the probe object written by [`WebDavStore::check`].
const PROBE_SIZE: usize = 64 << 10;
/// The `check` probe gives up on transient failures after this long at most.
const CHECK_DEADLINE: Duration = Duration::from_secs(15);

const PROPFIND_BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getcontentlength/></d:prop></d:propfind>"#;

pub use super::config::WebDavConfig;

/// A [`WebDavConfig`] that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebDavConfigError {
    #[error("upstream url {url:?} is not usable: {cause}")]
    Url { url: String, cause: String },
    #[error("upstream credentials: {0}")]
    Credentials(String),
    #[error("cannot read the upstream password file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid upstream setting: {0}")]
    Invalid(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl From<WebDavConfigError> for BackendError {
    fn from(e: WebDavConfigError) -> Self {
        BackendError::Permanent {
            backend: "webdav".to_string(),
            cause: e.to_string(),
        }
    }
}

/// What [`WebDavStore::check`] measured.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// The upstream, as [`ObjectStore::describe`] names it.
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

/// The outcome of one failed attempt: retry it, or give up at once.
enum Failure {
    Retry(BackendError, Option<Duration>),
    Fatal(BackendError),
}

type Attempt<T> = Result<T, Failure>;

/// An [`ObjectStore`] on an upstream WebDAV account.
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
    /// Folders (relative to the account root) known to exist.
    created: Mutex<HashSet<String>>,
    /// One gate per folder being created right now.
    inflight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    permits: Semaphore,
    retry_deadline: Duration,
    verify_puts: bool,
}

impl WebDavStore {
    /// Builds the store. Nothing is sent upstream until the first request.
    pub fn new(config: &WebDavConfig) -> Result<Self, WebDavConfigError> {
        let url_err = |cause: &str| WebDavConfigError::Url {
            url: config.url.clone(),
            cause: cause.to_string(),
        };
        let mut base = Url::parse(&config.url).map_err(|e| url_err(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(url_err("the scheme must be http or https"));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(url_err("not a server URL"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(url_err(
                "put credentials in username and password, not in the URL",
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(url_err("a query or fragment is not allowed"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let root: Vec<String> = config
            .root
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if root.iter().any(|s| s == "." || s == "..") {
            return Err(WebDavConfigError::Invalid(format!(
                "root {:?} must not contain . or ..",
                config.root
            )));
        }
        if root.is_empty() {
            return Err(WebDavConfigError::Invalid(
                "root must name a folder inside the account".to_string(),
            ));
        }
        let password = match (&config.password, &config.password_file) {
            (Some(_), Some(_)) => {
                return Err(WebDavConfigError::Credentials(
                    "set password or password_file, not both".to_string(),
                ))
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|source| {
                    WebDavConfigError::PasswordFile {
                        path: path.clone(),
                        source,
                    }
                })?;
                Some(text.trim_end_matches(['\r', '\n']).to_string())
            }
            (None, None) => None,
        };
        if password.is_some() && config.username.is_empty() {
            return Err(WebDavConfigError::Credentials(
                "a password is set but username is empty".to_string(),
            ));
        }
        if password.is_none() && !config.username.is_empty() {
            return Err(WebDavConfigError::Credentials(format!(
                "username {:?} needs password or password_file",
                config.username
            )));
        }
        for (name, v) in [
            ("connect_timeout_secs", config.connect_timeout_secs),
            ("request_timeout_secs", config.request_timeout_secs),
        ] {
            if v == 0 {
                return Err(WebDavConfigError::Invalid(format!("{name} must be > 0")));
            }
        }
        if config.parallelism == 0 {
            return Err(WebDavConfigError::Invalid(
                "parallelism must be > 0".to_string(),
            ));
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .timeout(Duration::from_secs(config.request_timeout_secs))
            .pool_max_idle_per_host(config.parallelism)
            .redirect(reqwest::redirect::Policy::none())
            .tcp_nodelay(true)
            .user_agent(concat!("dedupdav/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WebDavConfigError::Client)?;
        let display = format!("webdav:{}{}", base, root.join("/"));
        Ok(Self {
            client,
            base,
            root,
            username: config.username.clone(),
            password,
            display,
            created: Mutex::new(HashSet::new()),
            inflight: Mutex::new(HashMap::new()),
            permits: Semaphore::new(config.parallelism),
            retry_deadline: Duration::from_secs(config.retry_deadline_secs),
            verify_puts: config.verify_puts,
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

    /// Runs `attempt` until it succeeds, fails permanently, or the retry
    /// deadline would pass. At most `parallelism` attempts run at once.
    async fn with_retries<T, F, Fut>(
        &self,
        what: &str,
        deadline: Duration,
        mut attempt: F,
    ) -> Result<T, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let give_up_at = Instant::now() + deadline;
        let mut tries: u32 = 0;
        loop {
            tries += 1;
            let outcome = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| self.permanent("the store is shutting down".to_string()))?;
                attempt().await
            };
            let (err, retry_after) = match outcome {
                Ok(v) => return Ok(v),
                Err(Failure::Fatal(e)) => {
                    if matches!(e, BackendError::NotFound(_)) {
                        debug!(upstream = %self.display, "{what}: {e}");
                    } else {
                        warn!(upstream = %self.display, "{what} failed: {e}");
                    }
                    return Err(e);
                }
                Err(Failure::Retry(e, after)) => (e, after),
            };
            let wait = retry_after.unwrap_or_else(|| backoff(tries));
            if Instant::now() + wait > give_up_at {
                warn!(upstream = %self.display, attempts = tries, "{what} failed, giving up: {err}");
                return Err(err);
            }
            warn!(
                upstream = %self.display,
                attempt = tries,
                retry_in_ms = wait.as_millis() as u64,
                "{what} failed, retrying: {err}"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// Classifies a failure to get any answer from the upstream.
    fn transport_failure(&self, what: &str, e: &reqwest::Error) -> Failure {
        let cause = error_chain(e);
        if looks_like_tls(e) {
            return Failure::Fatal(self.permanent(format!(
                "TLS failure: {cause} (is the certificate valid and trusted, and does the URL's \
                     scheme match the server: https vs http?)"
            )));
        }
        if e.is_connect() {
            return Failure::Retry(
                BackendError::Unreachable {
                    backend: self.display.clone(),
                    cause: format!("cannot connect: {cause}"),
                },
                None,
            );
        }
        let cause = if e.is_timeout() {
            format!("{what}: timed out: {cause}")
        } else {
            format!("{what}: {cause}")
        };
        Failure::Retry(
            BackendError::Transient {
                backend: self.display.clone(),
                cause,
            },
            None,
        )
    }

    /// Classifies an answer that is not one the caller handles itself.
    fn status_failure(&self, what: &str, resp: &Response) -> Failure {
        let status = resp.status();
        let backend = self.display.clone();
        let code = status.as_u16();
        match code {
            401 => Failure::Fatal(BackendError::Permanent {
                backend,
                cause: format!(
                    "wrong credentials: {what} answered 401 Unauthorized for user {:?}",
                    self.username
                ),
            }),
            403 => Failure::Fatal(BackendError::Permanent {
                backend,
                cause: format!(
                    "access forbidden: {what} answered 403 Forbidden for user {:?} (wrong \
                     credentials, or no write permission on the folder)",
                    self.username
                ),
            }),
            507 => Failure::Fatal(BackendError::InsufficientStorage),
            300..=399 => {
                let to = header_str(resp.headers(), LOCATION).unwrap_or_default();
                Failure::Fatal(BackendError::Permanent {
                    backend,
                    cause: format!(
                        "bad URL: {what} was redirected ({status}) to {to:?}; configure the final \
                         WebDAV URL (http vs https, the path up to /remote.php/dav/files/<user>/)"
                    ),
                })
            }
            408 | 423 | 425 | 429 | 500 | 502 | 503 | 504 => Failure::Retry(
                BackendError::Transient {
                    backend,
                    cause: format!("{what}: {status}"),
                },
                retry_after(resp.headers()),
            ),
            501 | 405 => Failure::Fatal(BackendError::Permanent {
                backend,
                cause: format!("not WebDAV: {what} answered {status}; is the URL a WebDAV folder?"),
            }),
            c if c >= 500 && c != 505 && c != 508 && c != 510 => Failure::Retry(
                BackendError::Transient {
                    backend,
                    cause: format!("{what}: {status}"),
                },
                retry_after(resp.headers()),
            ),
            _ => Failure::Fatal(BackendError::Permanent {
                backend,
                cause: format!("{what}: unexpected answer {status}"),
            }),
        }
    }

    /// The folders (relative to the account root) above an object.
    fn dirs_of(&self, name: &ObjectName) -> Vec<String> {
        let root = self.root.join("/");
        let mut dirs = self.root_dirs();
        dirs.extend(name.fanout_dirs().iter().map(|d| format!("{root}/{d}")));
        dirs
    }

    /// The root folder and its parents, outermost first.
    fn root_dirs(&self) -> Vec<String> {
        (1..=self.root.len())
            .map(|n| self.root[..n].join("/"))
            .collect()
    }

    /// A failure retrying cannot fix, naming this upstream.
    fn permanent(&self, cause: impl Into<String>) -> BackendError {
        BackendError::Permanent {
            backend: self.display.clone(),
            cause: cause.into(),
        }
    }

    /// Creates the missing folders of `dirs` (outermost first) with MKCOL,
    /// remembering which exist.
    async fn ensure_dirs(&self, dirs: &[String]) -> Result<(), BackendError> {
        let mut restarted = false;
        let mut i = 0;
        while i < dirs.len() {
            let dir = &dirs[i];
            i += 1;
            if self.created.lock().contains(dir) {
                continue;
            }
            if self.create_dir(dir).await? {
                continue;
            }
            if restarted {
                return Err(self.permanent(format!(
                    "MKCOL {dir}/ keeps answering 409 Conflict: a parent folder cannot be created"
                )));
            }
            debug!(upstream = %self.display, "MKCOL {dir}/: parent missing, re-creating the chain");
            self.forget_dirs(dirs);
            restarted = true;
            i = 0;
        }
        Ok(())
    }

    /// Creates one folder unless it is known to exist; `Ok(false)` when its
    /// parent is missing. Concurrent callers for the same folder wait for
    /// one another instead of racing (Apache answers a MKCOL that loses such
    /// a race with 403).
    async fn create_dir(&self, dir: &str) -> Result<bool, BackendError> {
        let gate = self
            .inflight
            .lock()
            .entry(dir.to_string())
            .or_default()
            .clone();
        let result = {
            let _turn = gate.lock().await;
            if self.created.lock().contains(dir) {
                Ok(true)
            } else {
                let r = self.mkcol(dir).await;
                if matches!(r, Ok(true)) {
                    self.created.lock().insert(dir.to_string());
                }
                r
            }
        };
        let mut inflight = self.inflight.lock();
        // Clones are only taken under this lock, so the count is stable here:
        // 2 means nobody else is waiting for this folder.
        if inflight.get(dir).is_some_and(|g| Arc::ptr_eq(g, &gate)) && Arc::strong_count(&gate) == 2
        {
            inflight.remove(dir);
        }
        result
    }

    async fn mkcol(&self, dir: &str) -> Result<bool, BackendError> {
        let url = self.account_url(dir.split('/'), true);
        let what = format!("MKCOL {dir}/");
        // Apache answers the loser of a MKCOL race with 403, sometimes before
        // the winner's folder is visible: a few such answers are retried.
        let races = std::sync::atomic::AtomicU32::new(0);
        self.with_retries(&what, self.retry_deadline, || async {
            let resp = self
                .request(mkcol(), url.clone())
                .send()
                .await
                .map_err(|e| self.transport_failure(&what, &e))?;
            match resp.status().as_u16() {
                // 405: the folder is already there.
                200 | 201 | 204 | 405 => Ok(true),
                // 409: a parent vanished since we created it.
                409 => Ok(false),
                // Another client may have created it at the same moment.
                403 if self.is_folder(&url).await => Ok(true),
                403 if races.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3 => {
                    Err(Failure::Retry(
                        BackendError::Transient {
                            backend: self.display.clone(),
                            cause: format!(
                                "{what} answered 403 while another client may be creating it"
                            ),
                        },
                        None,
                    ))
                }
                _ => Err(self.status_failure(&what, &resp)),
            }
        })
        .await
    }

    /// Whether a PROPFIND Depth 0 shows a folder at `url` (one attempt).
    async fn is_folder(&self, url: &Url) -> bool {
        let resp = self
            .request(propfind(), url.clone())
            .header("Depth", "0")
            .header(CONTENT_TYPE, "application/xml; charset=utf-8")
            .body(PROPFIND_BODY)
            .send()
            .await;
        match resp {
            Ok(r) if r.status().as_u16() == 207 => match r.bytes().await {
                Ok(body) => {
                    parse_multistatus(&body).is_ok_and(|e| e.iter().any(|e| e.is_collection))
                }
                Err(_) => false,
            },
            _ => false,
        }
    }

    fn forget_dirs(&self, dirs: &[String]) {
        let mut created = self.created.lock();
        for d in dirs {
            created.remove(d);
        }
    }

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
        self.with_retries(&what, self.retry_deadline, || async {
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
        self.with_retries(&what, self.retry_deadline, || async {
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
    async fn get_rel(
        &self,
        rel: &str,
        label: &str,
        deadline: Duration,
    ) -> Result<Bytes, BackendError> {
        let url = self.url(rel, false);
        let what = format!("GET {rel}");
        self.with_retries(&what, deadline, || async {
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

    /// DELETE; a missing object is fine.
    async fn delete_rel(&self, rel: &str, deadline: Duration) -> Result<(), BackendError> {
        let url = self.url(rel, false);
        let what = format!("DELETE {rel}");
        self.with_retries(&what, deadline, || async {
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
            .with_retries(&what, self.retry_deadline, || async {
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
            .with_retries(&what, self.retry_deadline, || async {
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

    /// Probes the upstream end to end: PROPFIND of the account root, then
    /// write, read back and remove `<root>/probe-<uuid>`, timing each step.
    /// Failures come back with a cause meant for an operator.
    pub async fn check(&self) -> Result<CheckReport, BackendError> {
        let deadline = self.retry_deadline.min(CHECK_DEADLINE);
        let account = self.base.clone();
        let what = "PROPFIND of the account root".to_string();
        let started = Instant::now();
        let (server, dav) = self
            .with_retries(&what, deadline, || async {
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
        self.with_retries(&what, deadline, || async {
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

    async fn delete(&self, name: &ObjectName) -> Result<(), BackendError> {
        self.delete_rel(&name.relative_path(), self.retry_deadline)
            .await
    }

    async fn exists(&self, name: &ObjectName) -> Result<bool, BackendError> {
        Ok(self.head(&name.relative_path()).await?.is_some())
    }

    fn list(&self) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
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

    fn describe(&self) -> String {
        self.display.clone()
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
    let name = ObjectName::parse(e.name()?)?;
    // Objects outside their own fan-out folder are not ours.
    if !rel.ends_with(&format!("/{}", name.fanout())) {
        return None;
    }
    Some(Ok(ObjectInfo {
        name,
        size: e.size.unwrap_or(0),
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

fn propfind() -> Method {
    // A valid token, so this cannot fail.
    Method::from_bytes(b"PROPFIND").unwrap_or_else(|_| unreachable!())
}

fn mkcol() -> Method {
    Method::from_bytes(b"MKCOL").unwrap_or_else(|_| unreachable!())
}

fn is_fanout_name(n: &str) -> bool {
    n.len() == 2 && n.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Exponential backoff with jitter: a random delay in [d/2, d], d doubling
/// from [`BACKOFF_BASE`] up to [`BACKOFF_CAP`].
fn backoff(tries: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << tries.saturating_sub(1).min(16));
    let full = exp.min(BACKOFF_CAP);
    let ms = u64::try_from(full.as_millis()).unwrap_or(u64::MAX).max(2);
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

/// The delay asked for by `Retry-After` (seconds or an HTTP date).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = header_str(headers, RETRY_AFTER)?;
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn header_str(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
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

/// An error and its sources, joined, without repeats.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// Whether a transport error comes from TLS (a bad certificate, or https
/// spoken to a plain-http port). Only the sources are looked at: the
/// top-level message holds the URL, whose host name could contain anything.
fn looks_like_tls(e: &reqwest::Error) -> bool {
    const SIGNS: &[&str] = &[
        "certificate",
        "invalidcontenttype",
        "corrupt message",
        "handshake",
        "peer is incompatible",
        "received fatal alert",
        "unknownissuer",
    ];
    let mut cur = std::error::Error::source(e);
    while let Some(err) = cur {
        let msg = err.to_string().to_ascii_lowercase();
        if SIGNS.iter().any(|k| msg.contains(k)) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A path without trailing slashes and without a leading one.
fn normalize(path: &str) -> String {
    path.trim_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn retry_after_and_backoff() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        for t in 1..40 {
            let b = backoff(t);
            assert!(b <= BACKOFF_CAP && b >= Duration::from_millis(100));
        }
    }
}
