//! The HTTP service: one hyper service that authenticates (Basic, through
//! [`crate::accounts`] hashes), routes each request to its protocol adapter
//! — WebDAV ([`crate::webdav`]) or the ownCloud endpoints (status, OCS,
//! chunked uploads: [`crate::owncloud`]) — and keeps the request log and
//! metrics. Failures the adapters recorded become precise replies
//! ([`crate::wire`]). Accepting connections, their caps and timeouts:
//! `listener`. The admin REST API under `/api/v1/`:
//! [`admin`].

pub mod admin;
pub mod auth;
mod console;
pub(crate) mod fragment;
mod listener;
mod metrics;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::net::TcpListener;

use crate::app::App;
use crate::config::{Config, LimitsConfig};
use crate::files::refused::RefusedNames;
use crate::jobs::expire::StaleSessions;
use crate::jobs::JobStatus;
use crate::meta::{Meta, UserRecord};
use crate::meta::{Owner, UploadError};
use crate::owncloud::uploads::{names_below, Transfers, UploadsCtx};
use crate::store::ContentStore;
use crate::webdav::propfind::Requested;
use crate::webdav::quote_etags::QuoteEtags;
use crate::webdav::{DedupFs, LockTable, PendingReplace, RequestCtx, UploadHints};
pub use crate::wire::reply::GwBody;
use crate::wire::reply::{error_response, failure_response, home_page, unauthorized, GuardedBody};
use crate::wire::routes::{self, destination, route, Destination, Route};
use crate::wire::{body, ranges, reply};
use auth::{AuthError, Authenticator};
use listener::ConnectionLimits;
pub use listener::{Listeners, Stalled, Tls, TlsError};
pub use metrics::Metrics;

/// The gateway's HTTP service.
pub struct Gateway {
    fs: DedupFs,
    meta: Meta,
    store: Arc<ContentStore>,
    auth: Authenticator,
    metrics: Metrics,
    transfers: Transfers,
    limits: LimitsConfig,
    connection_limits: ConnectionLimits,
    /// The background jobs' status, once `serve` has started them.
    jobs: Mutex<Option<Arc<JobStatus>>>,
    /// The settings (the admin API's upstream check opens its own client).
    config: Config,
    /// The token of the local command line, once `serve` has made one.
    local_admin: Mutex<Option<admin::LocalToken>>,
    console: console::Console,
    /// `files.refuse`: names no write may create.
    refused: RefusedNames,
}

impl StaleSessions for Gateway {
    fn expire_stale(&self, now: i64) -> BoxFuture<'_, Result<usize, UploadError>> {
        crate::owncloud::uploads::expire(&self.meta, &self.transfers, now).boxed()
    }
}

impl Gateway {
    pub fn new(app: &App) -> Arc<Self> {
        let gateway = Arc::new(Self {
            fs: app.fs.clone(),
            meta: app.meta.clone(),
            store: app.store.clone(),
            auth: Authenticator::new(
                app.meta.clone(),
                app.keys.clone(),
                app.config.auth.clone(),
                &app.config.limits,
            ),
            metrics: Metrics::new(
                &app.config.metrics,
                metrics::Sources {
                    upstream: app.store.backend().upstream_metrics().cloned(),
                    cache: app.store.backend().cache_metrics().cloned(),
                    store: Some(app.store.metrics().clone()),
                    index: Some(app.meta.index_metrics().clone()),
                },
            ),
            transfers: Transfers::default(),
            limits: app.config.limits.clone(),
            connection_limits: ConnectionLimits::from(&app.config.limits),
            jobs: Mutex::new(None),
            config: app.config.clone(),
            local_admin: Mutex::new(None),
            console: console::Console::new(&app.config.console, app.keys.clone()),
            refused: app.config.refused_names().unwrap_or_else(|e| {
                // Loading the settings checked them already.
                tracing::error!(error = %e, "files.refuse ignored");
                RefusedNames::default()
            }),
        });
        gateway.set_upload_ttl(Duration::from_secs(app.config.uploads.expire_hours * 3600));
        gateway
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// How long an untouched chunked upload is kept (default 24 h).
    pub fn set_upload_ttl(&self, ttl: Duration) {
        self.transfers.set_ttl(ttl);
    }

    /// Drops chunked uploads untouched for longer than the TTL before `now`
    /// (Unix seconds), releasing the chunks they hold. Returns how many
    /// (0 after a failure, which is logged). `serve` schedules this as a
    /// job (see [`crate::jobs::expire`]).
    pub async fn expire_sessions(&self, now: i64) -> usize {
        self.expire_stale(now).await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "expiring stale uploads failed");
            0
        })
    }

    /// Shows the background jobs' state in `/metrics` and the admin API,
    /// which may also ask them to run now.
    pub fn show_jobs(&self, status: Arc<JobStatus>) {
        *self.jobs.lock() = Some(status);
    }

    /// Accepts `token` (as `Authorization: Bearer`) on the admin API as
    /// the local command line (see [`admin::local`]).
    pub fn allow_local_admin(&self, token: &str) {
        *self.local_admin.lock() = Some(admin::LocalToken::new(token));
    }

    fn uploads_ctx(&self, user: u64) -> UploadsCtx<'_> {
        UploadsCtx {
            meta: &self.meta,
            store: &self.store,
            transfers: &self.transfers,
            ids: self.fs.ids(),
            checksums: self.fs.checksums(),
            locks: Box::new(self.lock_table(user)),
            refused: &self.refused,
        }
    }

    /// Serves connections until `shutdown` completes (see [`listener`] for
    /// the caps and timeouts).
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let plain = Listeners {
            main: listener,
            tls: None,
            redirect: None,
        };
        listener::serve(self, plain, shutdown).await;
    }

    /// Serves the client address (over HTTPS with `[tls]`) and the
    /// redirect address until `shutdown` completes.
    pub async fn serve_listeners(
        self: Arc<Self>,
        listeners: Listeners,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        listener::serve(self, listeners, shutdown).await;
    }

    /// Handles one request; never fails (errors become replies).
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<GwBody>, Infallible> {
        let started = Instant::now();
        let method = req.method().clone();
        let path = path_for_log(req.uri().path());
        let has_body = request_has_body(&req);
        let request_bytes = content_length(&req);
        let (mut res, user) = self.dispatch(req, peer).await;
        let status = res.status();
        if has_body && (status.is_client_error() || status.is_server_error()) {
            // The body may be unread: a client must not reuse this connection.
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let took = started.elapsed();
        self.metrics
            .observe_request(method.as_str(), status, took, request_bytes);
        let res = self.metrics.count_reply(method.as_str(), res);
        tracing::info!(
            %peer,
            method = %metrics::method_for_log(method.as_str()),
            path = %path,
            user = user.as_deref().unwrap_or("-"),
            status = status.as_u16(),
            ms = took.as_millis() as u64,
            "request"
        );
        Ok(res)
    }

    async fn dispatch(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> (Response<GwBody>, Option<String>) {
        if let Some(res) = refuse_fragment(&req) {
            return (res, None);
        }
        match route(req.uri().path()) {
            Route::Home if req.method() == Method::OPTIONS => (reply::root_options(), None),
            Route::Home => (home_page(), None),
            Route::NotFound => (
                error_response(StatusCode::NOT_FOUND, "no such endpoint"),
                None,
            ),
            Route::Status => (crate::owncloud::status(), None),
            Route::Ocs { v2, rest } => {
                let query = req.uri().query().map(str::to_string);
                match self.login(&req, peer).await {
                    Ok(u) => (
                        crate::owncloud::ocs(v2, &rest, query.as_deref(), &u, &self.refused),
                        Some(u.name),
                    ),
                    Err(res) if res.status() == StatusCode::UNAUTHORIZED => (
                        crate::owncloud::ocs_unauthorized(v2, query.as_deref()),
                        None,
                    ),
                    Err(res) => (res, None),
                }
            }
            Route::Uploads { user, rest } => {
                let me = match self.login(&req, peer).await {
                    Ok(u) => u,
                    Err(res) => return (res, None),
                };
                let name = me.name.clone();
                if user != me.name {
                    // The same answer whether or not that user exists.
                    let res = error_response(
                        StatusCode::FORBIDDEN,
                        "you can only access your own uploads",
                    );
                    return (res, Some(name));
                }
                let owner = Owner::from(&me);
                let res = self.uploads_ctx(me.id).handle(req, &owner, &rest).await;
                (res, Some(name))
            }
            Route::Admin { rest } => admin::handle(self, req, peer, &rest).await,
            Route::Metrics => match self
                .metrics
                .bearer(req.headers().get(header::AUTHORIZATION))
            {
                metrics::Bearer::Valid => (self.metrics_response().await, None),
                metrics::Bearer::Invalid => (metrics::bearer_refused(), None),
                metrics::Bearer::Absent => match self.login(&req, peer).await {
                    Ok(u) if u.admin => (self.metrics_response().await, Some(u.name)),
                    Ok(u) => (
                        error_response(StatusCode::FORBIDDEN, "metrics are for administrators"),
                        Some(u.name),
                    ),
                    Err(res) => (res, None),
                },
            },
            Route::Console { rest } => self.console(req, peer, &rest).await,
            Route::Dav { user, prefix } => {
                let me = match self.login(&req, peer).await {
                    Ok(u) => u,
                    Err(res) => return (res, None),
                };
                let name = me.name.clone();
                if user.as_deref().is_some_and(|u| u != me.name) {
                    // The same answer whether or not that user exists.
                    let res =
                        error_response(StatusCode::FORBIDDEN, "you can only access your own files");
                    return (res, Some(name));
                }
                // dav-server matches the prefix against the decoded path, so
                // a user name the client percent-encoded (`al%40ice`) must
                // be given decoded.
                let prefix = match user {
                    Some(_) => format!("{}{}", routes::FILES_PREFIX, me.name),
                    None => prefix,
                };
                (self.dav(req, me, prefix).await, Some(name))
            }
        }
    }

    async fn login(
        &self,
        req: &Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<UserRecord, Response<GwBody>> {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match self.auth.authenticate(header, peer.ip()).await {
            Ok(u) => Ok(u),
            Err(AuthError::Busy) => {
                let mut res = error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many logins are being checked; try again shortly",
                );
                res.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(auth::BUSY_RETRY_AFTER_SECS),
                );
                Err(res)
            }
            Err(e @ (AuthError::Index(_) | AuthError::Hash(_) | AuthError::Check(_))) => {
                tracing::error!(error = %e, "authentication backend failed");
                Err(error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "authentication is unavailable",
                ))
            }
            Err(AuthError::Missing | AuthError::Malformed | AuthError::Wrong) => {
                Err(unauthorized())
            }
        }
    }

    /// The WebDAV locks of user id `user` (records in the metadata).
    fn lock_table(&self, user: u64) -> LockTable {
        LockTable::new(self.meta.clone(), user, self.limits.locks_per_user)
    }

    async fn dav(
        &self,
        mut req: Request<Incoming>,
        me: UserRecord,
        prefix: String,
    ) -> Response<GwBody> {
        if let Some(res) = rewrite_destination(&mut req, &me.name, &prefix) {
            return res;
        }
        if let Some(res) = refuse_partial_update(&req)
            .or_else(|| refuse_infinite_depth(&req))
            .or_else(|| refuse_bad_names(&req, &prefix))
            .or_else(|| refuse_destroying_root(&req, &prefix))
            .or_else(|| refuse_names(&req, &prefix, &self.refused))
        {
            return res;
        }
        if let Some(res) = limit_ranges(&mut req, self.limits.range_parts) {
            return res;
        }
        let owner = Owner::from(&me);
        let mut ctx = RequestCtx::new(owner.clone());
        ctx.hints = upload_hints(&req);
        ctx.replace = pending_replace(&req, &prefix);
        let method = req.method().clone();
        let is_propfind = method.as_str() == "PROPFIND";
        if is_propfind {
            ctx.props_cache = Some(Default::default());
        }
        ctx.target = if method.as_str() == "MOVE" || method.as_str() == "COPY" {
            req.headers()
                .get("Destination")
                .and_then(|v| v.to_str().ok())
                .and_then(|d| below_prefix(d, &prefix))
                .and_then(names_below)
        } else {
            dav_target(req.uri(), &prefix)
        };
        let scope = crate::webdav::propfind::Scope {
            meta: &self.meta,
            owner: &owner,
            ids: self.fs.ids(),
            prefix: &prefix,
        };
        let (parts, body) = req.into_parts();
        let limits = body::XmlLimits::from(&self.limits);
        let body =
            match body::prepare(&parts.headers, &parts.method, body, &limits, &ctx.failure).await {
                Ok(b) => b,
                Err(e) => return body_refused(&e),
            };
        let req = match crate::webdav::propfind::propfind(&scope, Request::from_parts(parts, body))
            .await
        {
            Ok(res) => return res,
            Err(req) => *req,
        };
        let asked = crate::webdav::propfind::asked(&req);
        let locks = self.lock_table(me.id).reporting_to(ctx.failure.clone());
        let req = match crate::webdav::win32::proppatch(&self.meta, &locks, &ctx, req).await {
            Ok(res) => return res,
            Err(req) => *req,
        };
        let is_lock = req.method().as_str() == "LOCK" && !req.headers().contains_key("If");
        if is_lock && locks.is_full().await {
            tracing::info!(user = %me.name, "lock refused: the user holds the most locks allowed");
            return error_response(
                StatusCode::INSUFFICIENT_STORAGE,
                "you hold the most locks allowed; unlock files or wait for locks to expire",
            );
        }
        let res = crate::webdav::answer(&self.fs, locks, &prefix, req, &me.name, &ctx).await;
        if let Some(e) = ctx.failure.take() {
            return failure_response(&e);
        }
        let (mut parts, body) = res.into_parts();
        if parts.status.is_success() {
            self.add_oc_headers(&method, &ctx, &mut parts.headers);
        }
        if method == Method::OPTIONS {
            reply::announce_dav(&mut parts.headers);
        }
        let body = GuardedBody::new(body, ctx.failure.clone());
        let body = if is_propfind && parts.status == StatusCode::MULTI_STATUS {
            match asked {
                Some(asked) => QuoteEtags::new(Requested::new(body, asked)).boxed_unsync(),
                None => QuoteEtags::new(body).boxed_unsync(),
            }
        } else if method == Method::GET && parts.status.is_success() {
            match prime(body, &ctx).await {
                Ok(body) => body,
                Err(res) => return res,
            }
        } else {
            body.boxed_unsync()
        };
        Response::from_parts(parts, body)
    }

    /// ownCloud clients read the file id and etag of what they just wrote,
    /// created or moved (for MOVE and COPY, the destination), and check a
    /// download against `OC-Checksum`. All of it comes from the node the
    /// operation answered (see [`RequestCtx::target_node`]).
    fn add_oc_headers(&self, method: &Method, ctx: &RequestCtx, headers: &mut http::HeaderMap) {
        let reading = matches!(method.as_str(), "GET" | "HEAD");
        if !reading && !matches!(method.as_str(), "PUT" | "MKCOL" | "MOVE" | "COPY") {
            return;
        }
        let Some(node) = ctx.target_node.lock().clone() else {
            return;
        };
        let ids = self.fs.ids();
        if reading {
            // The body comes from the version whose etag dav-server put in
            // the reply; add its checksum only if that is still this node.
            let etag = ids.quoted_etag(node.id, node.version);
            if node.is_dir() || headers.get(header::ETAG).is_none_or(|v| *v != etag) {
                return;
            }
            if let Ok(v) = HeaderValue::from_str(&etag) {
                headers.insert("OC-ETag", v);
            }
            // The strongest stored checksum: clients verify any of them.
            let sums: Vec<&str> = node
                .checksums
                .as_deref()
                .map(|s| s.split_whitespace().collect())
                .unwrap_or_default();
            let best = ["SHA1:", "MD5:", "ADLER32:"]
                .iter()
                .find_map(|kind| sums.iter().find(|c| c.starts_with(kind)));
            if let Some(v) = best.and_then(|c| HeaderValue::from_str(c).ok()) {
                headers.insert("OC-Checksum", v);
            }
            return;
        }
        let etag = ids.quoted_etag(node.id, node.version);
        if let Ok(v) = HeaderValue::from_str(&ids.oc_id(node.id)) {
            headers.insert("OC-FileId", v);
        }
        if let Ok(v) = HeaderValue::from_str(&etag) {
            headers.insert("OC-ETag", v.clone());
            headers.insert(header::ETAG, v);
        }
        if method == Method::PUT && ctx.hints.mtime.is_some() {
            headers.insert("X-OC-MTime", HeaderValue::from_static("accepted"));
        }
    }

    async fn metrics_response(&self) -> Response<GwBody> {
        let stats = self.meta.stats().await.ok();
        let jobs = self
            .jobs
            .lock()
            .as_ref()
            .map(|j| j.snapshot())
            .unwrap_or_default();
        Metrics::reply(self.metrics.render_with(stats.as_ref(), jobs))
    }
}

/// Reads a download's first piece before the status goes out: a file whose
/// first chunk fails (missing or tampered object, upstream down) is
/// answered with the error's status instead of `200` and an empty body.
/// A failure later in the file still ends the transfer with an error.
async fn prime<B>(mut body: GuardedBody<B>, ctx: &RequestCtx) -> Result<GwBody, Response<GwBody>>
where
    B: http_body::Body<Data = Bytes, Error = std::io::Error> + Send + 'static,
{
    let first = body.frame().await;
    if let Some(e) = ctx.failure.take() {
        return Err(failure_response(&e));
    }
    match first {
        Some(Err(e)) => {
            tracing::warn!(error = %e, "download failed before its first byte");
            Err(error_response(
                StatusCode::BAD_GATEWAY,
                "the file could not be read; the gateway log has details",
            ))
        }
        Some(Ok(frame)) => Ok(reply::Primed::new(Some(frame), body).boxed_unsync()),
        None => Ok(reply::Primed::new(None, body).boxed_unsync()),
    }
}

/// Longest request path written to the log, in bytes; a longer one is cut
/// (at a character boundary) and marked with `…`. A path can be as long as
/// the header limit (~400 KB): logging it whole would let one client fill
/// the log.
const LOGGED_PATH_BYTES: usize = 1024;

fn path_for_log(path: &str) -> String {
    if path.len() <= LOGGED_PATH_BYTES {
        return path.to_string();
    }
    let mut end = LOGGED_PATH_BYTES;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &path[..end])
}

/// The request body's announced length, if any.
fn content_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Whether the request carries a body (which an early refusal leaves unread).
fn request_has_body(req: &Request<Incoming>) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

/// A Request-URI with a `#fragment` names something other than what it
/// reaches (`DELETE /dir/#x` would remove `/dir/`): refused with 400, for
/// every method, before anything is looked up (see [`fragment`]).
fn refuse_fragment(req: &Request<Incoming>) -> Option<Response<GwBody>> {
    let fragments = req.extensions().get::<fragment::Fragments>()?;
    if !fragments.take(req.method(), req.uri()) {
        return None;
    }
    tracing::info!(method = %req.method(), path = %path_for_log(req.uri().path()), "request refused: a fragment in the Request-URI");
    Some(error_response(
        StatusCode::BAD_REQUEST,
        "the Request-URI carries a #fragment, which no request may",
    ))
}

/// Partial updates (PUT with Content-Range, Sabre's PATCH) would need a
/// read-modify-write of deduplicated content; they are refused up front so
/// nothing is half-applied.
fn refuse_partial_update(req: &Request<Incoming>) -> Option<Response<GwBody>> {
    if req.method() == Method::PATCH {
        return Some(error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "partial updates (PATCH) are not supported",
        ));
    }
    if req.method() == Method::PUT && req.headers().contains_key(header::CONTENT_RANGE) {
        return Some(error_response(
            StatusCode::BAD_REQUEST,
            "PUT with Content-Range is not supported; upload the whole file",
        ));
    }
    None
}

/// A path or `Destination` with a name no file can have (`.`, `..`, a
/// slash or NUL encoded into a name, text that is not UTF-8) is a bad
/// request, answered before anything looks it up.
fn refuse_bad_names(req: &Request<Incoming>, prefix: &str) -> Option<Response<GwBody>> {
    let bad_target = dav_target(req.uri(), prefix).is_none();
    let bad_dest = req.headers().get("Destination").is_some_and(|d| {
        d.to_str()
            .ok()
            .and_then(|d| below_prefix(d, prefix))
            .and_then(names_below)
            .is_none()
    });
    (bad_target || bad_dest).then(|| {
        tracing::info!(path = %req.uri().path(), "request refused: a name that is not allowed");
        error_response(
            StatusCode::BAD_REQUEST,
            "the path or Destination holds a name that is not allowed (\".\", \"..\", or not UTF-8)",
        )
    })
}

/// DELETE or MOVE of a user's root, or COPY/MOVE onto it, would empty the
/// whole tree one entry at a time before failing: refused up front, before
/// anything is touched.
fn refuse_destroying_root(req: &Request<Incoming>, prefix: &str) -> Option<Response<GwBody>> {
    let is_root = |names: Option<Vec<String>>| names.is_some_and(|n| n.is_empty());
    let method = req.method().as_str();
    let target_is_root =
        matches!(method, "DELETE" | "MOVE") && is_root(dav_target(req.uri(), prefix));
    let dest_is_root = matches!(method, "COPY" | "MOVE")
        && is_root(
            req.headers()
                .get("Destination")
                .and_then(|v| v.to_str().ok())
                .and_then(|d| below_prefix(d, prefix))
                .and_then(names_below),
        );
    (target_is_root || dest_is_root).then(|| {
        error_response(
            StatusCode::FORBIDDEN,
            "your top folder cannot be deleted, moved or replaced",
        )
    })
}

/// A write that would create a name `files.refuse` matches (PUT, MKCOL,
/// or the destination of COPY/MOVE) is refused with 403 before anything
/// is read or changed.
fn refuse_names(
    req: &Request<Incoming>,
    prefix: &str,
    refused: &RefusedNames,
) -> Option<Response<GwBody>> {
    let created = match req.method().as_str() {
        "PUT" | "MKCOL" => dav_target(req.uri(), prefix),
        "COPY" | "MOVE" => req
            .headers()
            .get("Destination")
            .and_then(|v| v.to_str().ok())
            .and_then(|d| below_prefix(d, prefix))
            .and_then(names_below),
        _ => None,
    }?;
    let e = refused.check(&created).err()?;
    tracing::info!(method = %req.method(), error = %e, "write refused: files.refuse");
    Some(failure_response(&e.into()))
}

/// Caps the parts of a `Range` header: overlapping and adjacent parts are
/// merged (RFC 9110, 14.2 allows it); if more than `max` remain the request
/// is answered 416. Thousands of tiny parts cost ~170 times a whole download
/// before this cap.
fn limit_ranges(req: &mut Request<Incoming>, max: usize) -> Option<Response<GwBody>> {
    let value = req.headers().get(header::RANGE)?;
    let Ok(text) = value.to_str() else {
        req.headers_mut().remove(header::RANGE);
        return None;
    };
    match ranges::merge(text, max) {
        ranges::Merged::Unchanged => None,
        ranges::Merged::Rewritten(spec) => {
            if let Ok(v) = HeaderValue::from_str(&spec) {
                req.headers_mut().insert(header::RANGE, v);
            }
            None
        }
        ranges::Merged::TooMany(n) => {
            tracing::info!(parts = n, max, "Range header refused");
            let mut res = error_response(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &format!("a Range header may have at most {max} separate parts"),
            );
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Some(res)
        }
    }
}

/// The reply to a request body refused before the WebDAV layer saw it.
fn body_refused(e: &body::BodyError) -> Response<GwBody> {
    let status = crate::wire::error::body_status(e);
    tracing::info!(error = %e, status = status.as_u16(), "request body refused");
    let mut res = error_response(status, &e.to_string());
    res.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    res
}

/// PROPFIND without a Depth header means Depth: infinity (RFC 4918, 9.1),
/// which would walk a whole tree in one reply: refused with 403 and the
/// `propfind-finite-depth` precondition, as Apache's mod_dav does.
fn refuse_infinite_depth(req: &Request<Incoming>) -> Option<Response<GwBody>> {
    if req.method().as_str() != "PROPFIND" {
        return None;
    }
    let depth = req.headers().get("Depth").and_then(|v| v.to_str().ok());
    let infinite = match depth {
        None => true,
        Some(d) => d.trim().eq_ignore_ascii_case("infinity"),
    };
    infinite.then(reply::finite_depth_required)
}

/// The request's path as names inside the user's tree (percent-decoded,
/// one segment at a time).
fn dav_target(uri: &http::Uri, prefix: &str) -> Option<Vec<String>> {
    names_below(below_prefix(uri.path(), prefix)?)
}

/// The part of a raw path below `prefix`, matched segment by segment (the
/// path may spell the prefix's user name percent-encoded).
pub(crate) fn below_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let depth = prefix.trim_end_matches('/').matches('/').count();
    let mut rest = path;
    for _ in 0..depth {
        let after = rest.strip_prefix('/')?;
        rest = &after[after.find('/').unwrap_or(after.len())..];
    }
    Some(rest)
}

/// For MOVE, and COPY of everything below (Depth infinity), with
/// overwriting allowed: source and destination, so the file system
/// replaces the destination in the same transaction as the move or copy
/// instead of deleting it first.
fn pending_replace(req: &Request<Incoming>, prefix: &str) -> Option<PendingReplace> {
    let h = req.headers();
    let is_move = match req.method().as_str() {
        "MOVE" => true,
        "COPY" => h
            .get("Depth")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|d| d.trim().eq_ignore_ascii_case("infinity"))
            .then_some(false)?,
        _ => return None,
    };
    let overwrite = h
        .get("Overwrite")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| !v.trim().eq_ignore_ascii_case("F"));
    if !overwrite {
        return None;
    }
    let dest = h.get("Destination")?.to_str().ok()?;
    let names = names_below(below_prefix(dest, prefix)?)?;
    let source = dav_target(req.uri(), prefix)?;
    (!names.is_empty()).then(|| PendingReplace::new(source, names, is_move))
}

/// `X-OC-Mtime` (Unix seconds, possibly fractional) and `OC-Checksum`.
fn upload_hints(req: &Request<Incoming>) -> UploadHints {
    let h = req.headers();
    let mtime = h
        .get("X-OC-Mtime")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e11)
        .map(|s| (s * 1e9) as i64);
    let checksum = h
        .get("OC-Checksum")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    UploadHints { mtime, checksum }
}

/// Keeps COPY/MOVE inside the user's own tree: a `Destination` in another
/// user's tree (or anywhere else) is refused; one written with the other URL
/// form of the same tree is rewritten to this request's form.
fn rewrite_destination(
    req: &mut Request<Incoming>,
    user: &str,
    prefix: &str,
) -> Option<Response<GwBody>> {
    let value = req.headers().get("Destination")?;
    let Ok(text) = value.to_str() else {
        return Some(error_response(
            StatusCode::BAD_REQUEST,
            "Destination is not valid text",
        ));
    };
    match destination(text, user) {
        Destination::Own(rest) => match HeaderValue::from_str(&format!("{prefix}{rest}")) {
            Ok(v) => {
                req.headers_mut().insert("Destination", v);
                None
            }
            Err(_) => Some(error_response(StatusCode::BAD_REQUEST, "bad Destination")),
        },
        Destination::Elsewhere => Some(error_response(
            StatusCode::FORBIDDEN,
            "the destination must be inside your own files",
        )),
    }
}

#[cfg(test)]
mod log_tests {
    use super::*;

    #[test]
    fn long_paths_are_cut_in_the_log() {
        assert_eq!(path_for_log("/a/b"), "/a/b");
        let long = format!("/{}", "é".repeat(2000));
        let logged = path_for_log(&long);
        assert!(logged.len() <= LOGGED_PATH_BYTES + '…'.len_utf8());
        assert!(logged.ends_with('…'));
    }
}
