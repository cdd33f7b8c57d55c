//! Chunked upload NG over HTTP: `/remote.php/dav/uploads/<user>/<transfer>/`.
//!
//! - `MKCOL <transfer>` (optional `OC-Total-Length`) opens a session.
//! - `PUT <transfer>/<name>` stores one piece straight into the content
//!   store (chunked, deduplicated, sealed, uploaded as it streams) and
//!   records its manifest in the session. Names are byte offsets
//!   (owncloudcmd), indexes (nextcloudcmd) or `start-end` (rclone); they
//!   are assembled in numeric order.
//! - `PROPFIND <transfer>` lists the pieces so a client can resume.
//! - `DELETE <transfer>` abandons it; stale sessions expire.
//! - `MOVE <transfer>/.file` with `Destination` in the user's files
//!   assembles the file from the pieces' manifests in one transaction,
//!   checking `OC-Total-Length`, `If`/`If-Match`, and `OC-Checksum`.
//!
//! The whole-file checksums a client announces on the final MOVE are
//! checked against digests computed while the pieces arrived in order;
//! only when pieces arrived out of order, were replaced, or the gateway
//! restarted meanwhile are the stored pieces read back to compute them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use parking_lot::Mutex;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use futures_util::future::BoxFuture;

use crate::crypto::VisibleIds;
use crate::files::put;
use crate::meta::sessions::{part_key, valid_name};
use crate::meta::Node;
use crate::meta::{
    split_path, AssembleCheck, AssembleMeta, Meta, NamePath, NsError, Owner, PartInfo, UploadError,
    UploadSession, REFUSED_BODY_DRAIN,
};
use crate::owncloud::checksum::{self, Announced, ChecksumSet, Digests, Hashers};
use crate::store::{ByteSink, ContentStore, FileReader};
use crate::wire::error::GatewayError;

use crate::files::refused::RefusedNames;
use crate::wire::reply::{error_response, failure_response, full, GwBody};
use crate::wire::routes::{destination, Destination};

pub use crate::wire::routes::UPLOADS_PREFIX;

/// How long an untouched session lives (Nextcloud uses the same).
pub const UPLOAD_TTL: Duration = Duration::from_secs(24 * 3600);
/// Sessions whose running digests are kept in memory at most.
const MAX_RUNNING: usize = 4096;

/// Characters escaped in hrefs (a path segment).
pub(crate) const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/');

/// The digests of a session's pieces hashed so far, in order.
#[derive(Clone, Default)]
struct Running {
    hashers: Hashers,
    /// The pieces hashed, in order: (name, size).
    covered: Vec<(String, u64)>,
}

/// In-memory state of the chunked uploads in progress.
pub struct Transfers {
    running: Mutex<HashMap<(u64, String), Running>>,
    ttl: Mutex<Duration>,
}

impl Default for Transfers {
    fn default() -> Self {
        Self {
            running: Mutex::new(HashMap::new()),
            ttl: Mutex::new(UPLOAD_TTL),
        }
    }
}

impl Transfers {
    pub fn ttl(&self) -> Duration {
        *self.ttl.lock()
    }

    pub fn set_ttl(&self, ttl: Duration) {
        *self.ttl.lock() = ttl;
    }

    /// Starts hashing a transfer's pieces with `set`.
    fn start(&self, user: u64, transfer: &str, set: ChecksumSet) {
        let mut map = self.running.lock();
        if map.len() < MAX_RUNNING {
            let running = Running {
                hashers: Hashers::new(set),
                covered: Vec::new(),
            };
            map.insert((user, transfer.to_string()), running);
        }
    }

    fn forget(&self, user: u64, transfer: &str) {
        self.running.lock().remove(&(user, transfer.to_string()));
    }

    /// A copy of the running digests to extend with piece `name`, if that
    /// piece comes after every piece hashed so far; otherwise the running
    /// digests can no longer be trusted and are dropped.
    fn snapshot(&self, user: u64, transfer: &str, name: &str) -> Option<Running> {
        let key = (user, transfer.to_string());
        let mut map = self.running.lock();
        let r = map.get(&key)?;
        let after_last = match r.covered.last() {
            None => true,
            Some((last, _)) => part_key(last) < part_key(name),
        };
        if after_last && !r.covered.iter().any(|(n, _)| n == name) {
            Some(r.clone())
        } else {
            map.remove(&key);
            None
        }
    }

    /// Makes `next` (a snapshot extended by one piece) the running state,
    /// unless another piece was hashed meanwhile.
    fn advance(&self, user: u64, transfer: &str, base_len: usize, next: Running) {
        let key = (user, transfer.to_string());
        let mut map = self.running.lock();
        if let Some(r) = map.get_mut(&key) {
            if r.covered.len() == base_len {
                *r = next;
            }
        }
    }

    /// The digests, if exactly `parts` (in order) were hashed.
    fn digests_for(&self, user: u64, transfer: &str, parts: &[PartInfo]) -> Option<Digests> {
        let map = self.running.lock();
        let r = map.get(&(user, transfer.to_string()))?;
        let same = r.covered.len() == parts.len()
            && r.covered
                .iter()
                .zip(parts)
                .all(|((n, s), p)| *n == p.name && *s == p.size);
        if !same {
            return None;
        }
        Some(r.hashers.clone().finish())
    }
}

/// Everything the upload endpoints work with.
pub struct UploadsCtx<'a> {
    pub meta: &'a Meta,
    pub store: &'a Arc<ContentStore>,
    pub transfers: &'a Transfers,
    /// How ids and etags are shown to clients.
    pub ids: &'a VisibleIds,
    /// Checksum types every upload computes (besides announced ones).
    pub checksums: ChecksumSet,
    /// The user's WebDAV locks.
    pub locks: Box<dyn PathLocks>,
    /// `files.refuse`: names the final MOVE may not create.
    pub refused: &'a RefusedNames,
}

/// Drops stale sessions, releasing the chunks they hold (the `jobs`
/// runner schedules this).
pub async fn expire(meta: &Meta, transfers: &Transfers, now: i64) -> Result<usize, UploadError> {
    let ttl = transfers.ttl().as_secs() as i64;
    let n = meta.expire_sessions(now, ttl).await?;
    if n > 0 {
        // Their running digests go too (cheap: the map is small).
        let live: Vec<(u64, String)> = transfers.running.lock().keys().cloned().collect();
        for (user, tid) in live {
            let owner = Owner {
                id: user,
                name: String::new(),
                root: 0,
            };
            if matches!(
                meta.session(&owner, &tid).await,
                Err(UploadError::NoSession)
            ) {
                transfers.forget(user, &tid);
            }
        }
    }
    Ok(n)
}

/// Where in the uploads tree a request points.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Root,
    Transfer(String),
    Part(String, String),
}

pub(crate) fn parse_target(rest: &str) -> Option<Target> {
    let mut segs = Vec::new();
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        let s = percent_decode_str(raw).decode_utf8().ok()?.into_owned();
        if !valid_name(&s) {
            return None;
        }
        segs.push(s);
    }
    match segs.len() {
        0 => Some(Target::Root),
        1 => Some(Target::Transfer(segs.remove(0))),
        2 => {
            let part = segs.remove(1);
            Some(Target::Part(segs.remove(0), part))
        }
        _ => None,
    }
}

/// The names below the user's files root that a raw (percent-encoded)
/// path below `prefix` denotes; `None` if it is not a valid path.
pub fn names_below(raw: &str) -> Option<NamePath> {
    let mut names = Vec::new();
    for seg in raw.split('/').filter(|s| !s.is_empty()) {
        let s = percent_decode_str(seg).decode_utf8().ok()?;
        let one = split_path(s.as_bytes()).ok()?;
        if one.len() != 1 || one[0] != s {
            return None;
        }
        names.push(s.into_owned());
    }
    Some(names)
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn header_u64(h: &HeaderMap, name: &str) -> Result<Option<u64>, GatewayError> {
    match header_str(h, name) {
        None => Ok(None),
        Some(s) => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| GatewayError::BadRequest(format!("{name} is not a byte count"))),
    }
}

/// Lock tokens submitted in an `If` header: `<…>` entries that are not
/// resource tags (URLs or paths).
pub(crate) fn if_header_lock_tokens(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(i) = rest.find('<') {
        let after = &rest[i + 1..];
        let Some(j) = after.find('>') else { break };
        let tag = &after[..j];
        if !tag.contains("://") && !tag.starts_with('/') {
            out.push(tag.to_string());
        }
        rest = &after[j + 1..];
    }
    out
}

/// Who tells whether a path is locked against a request: the user's
/// WebDAV lock table (`webdav/locks.rs`). The assembled file must not land
/// on a path someone else has locked.
pub trait PathLocks: Send + Sync {
    /// Whether `path` is locked by a lock the request does not hold
    /// (`if_header`, the request's `If` header, may submit lock tokens).
    fn locked_for<'a>(
        &'a self,
        owner: &'a Owner,
        path: &'a [String],
        if_header: Option<&'a str>,
    ) -> BoxFuture<'a, bool>;
}

/// The etags an `If` header asks for (`(["etag"])` lists), unquoted.
pub(crate) fn if_header_etags(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(i) = rest.find("[\"") {
        let after = &rest[i + 2..];
        match after.find("\"]") {
            Some(j) => {
                out.push(after[..j].to_string());
                rest = &after[j + 2..];
            }
            None => break,
        }
    }
    out
}

pub(crate) fn unquote(s: &str) -> &str {
    let s = s.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
}

fn mtime_hint(h: &HeaderMap) -> Option<i64> {
    header_str(h, "X-OC-Mtime")
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e11)
        .map(|s| (s * 1e9) as i64)
}

fn set_oc_headers(res: &mut Response<GwBody>, node: &Node, ids: &VisibleIds) {
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ids.oc_id(node.id)) {
        h.insert("OC-FileId", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ids.quoted_etag(node.id, node.version)) {
        h.insert("OC-ETag", v.clone());
        h.insert(header::ETAG, v);
    }
}

fn empty(status: StatusCode) -> Response<GwBody> {
    let mut res = Response::new(full(Bytes::new()));
    *res.status_mut() = status;
    res
}

fn not_allowed(what: &str) -> Response<GwBody> {
    error_response(StatusCode::METHOD_NOT_ALLOWED, what)
}

impl UploadsCtx<'_> {
    /// What a transfer's pieces are hashed with as they arrive. The client
    /// announces its checksum only on the final MOVE, so SHA1 (the upload
    /// type the capabilities prefer) is computed too; another announced
    /// type is computed by reading the pieces back.
    fn hashed_types(&self) -> ChecksumSet {
        ChecksumSet {
            sha1: true,
            ..self.checksums
        }
    }

    /// Handles one request below `/remote.php/dav/uploads/<user>`; `rest`
    /// is the raw path after the user segment.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        owner: &Owner,
        rest: &str,
    ) -> Response<GwBody> {
        let Some(target) = parse_target(rest) else {
            return error_response(StatusCode::BAD_REQUEST, "invalid upload path");
        };
        let method = req.method().clone();
        let base = format!(
            "{UPLOADS_PREFIX}{}",
            utf8_percent_encode(&owner.name, SEGMENT)
        );
        let result = match (&target, method.as_str()) {
            (_, "OPTIONS") => Ok(options()),
            (Target::Root, "PROPFIND") => self.list_root(&req, owner, &base).await,
            (Target::Root, _) => Ok(not_allowed("create a transfer folder below this one")),
            (Target::Transfer(t), "MKCOL") => self.mkcol(&req, owner, t).await,
            (Target::Transfer(t), "PROPFIND") => self.list_transfer(&req, owner, &base, t).await,
            (Target::Transfer(t), "DELETE") => self
                .meta
                .abandon_session(owner, t)
                .await
                .map(|()| {
                    self.transfers.forget(owner.id, t);
                    empty(StatusCode::NO_CONTENT)
                })
                .map_err(GatewayError::from),
            (Target::Transfer(_), _) => Ok(not_allowed("not supported on a transfer folder")),
            (Target::Part(t, p), "PUT") => self.put_part(req, owner, t, p).await,
            (Target::Part(t, p), "MOVE") if p == ".file" => self.assemble(&req, owner, t).await,
            (Target::Part(t, p), "DELETE") => {
                self.transfers.forget(owner.id, t);
                self.meta
                    .remove_part(owner, t, p)
                    .await
                    .map(|()| empty(StatusCode::NO_CONTENT))
                    .map_err(GatewayError::from)
            }
            (Target::Part(t, p), "PROPFIND") => self.list_part(owner, &base, t, p).await,
            (Target::Part(..), _) => Ok(not_allowed(
                "chunks can only be uploaded, listed or deleted",
            )),
        };
        result.unwrap_or_else(|e| {
            if e.status().is_server_error() {
                tracing::error!(error = %e, "chunked upload failed");
            } else {
                tracing::info!(error = %e, "chunked upload refused");
            }
            failure_response(&e)
        })
    }

    async fn mkcol(
        &self,
        req: &Request<Incoming>,
        owner: &Owner,
        transfer: &str,
    ) -> Result<Response<GwBody>, GatewayError> {
        let total = header_u64(req.headers(), "OC-Total-Length")?;
        self.meta.create_session(owner, transfer, total).await?;
        self.transfers
            .start(owner.id, transfer, self.hashed_types());
        Ok(empty(StatusCode::CREATED))
    }

    async fn put_part(
        &self,
        req: Request<Incoming>,
        owner: &Owner,
        transfer: &str,
        name: &str,
    ) -> Result<Response<GwBody>, GatewayError> {
        if name == ".file" || part_key(name).is_none() {
            return Err(UploadError::BadName(name.into()).into());
        }
        let (session, _) = self.meta.session(owner, transfer).await?;
        let announced = header_u64(req.headers(), header::CONTENT_LENGTH.as_str())?;
        let limit = session.total_length;
        if let (Some(total), Some(len)) = (limit, announced) {
            if len > total {
                return Err(UploadError::OverTotal(total).into());
            }
        }
        // The quota counts this user's files and every session; the piece
        // stops at the first byte past it.
        let quota_limit = self.meta.part_limit(owner, transfer, name).await?;
        if let (Some(max), Some(len)) = (quota_limit, announced) {
            if len > max {
                return Err(quota_exceeded(len, max));
            }
        }
        let running = self.transfers.snapshot(owner.id, transfer, name);
        let base_len = running.as_ref().map_or(0, |r| r.covered.len());
        // The whole-file sums run on the upload's digest thread.
        let running = Arc::new(Mutex::new(running));
        let sink_state = running.clone();
        let costly = running
            .lock()
            .as_ref()
            .is_some_and(|r| r.hashers.is_costly());
        let sink = ByteSink::new(costly, move |data| {
            if let Some(r) = sink_state.lock().as_mut() {
                r.hashers.update(data);
            }
        });
        let mut upload = self.store.begin_upload_with(owner.id, announced, sink);
        let mut body = req.into_body();
        let mut got = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                GatewayError::BadRequest(format!("the chunk body could not be read: {e}"))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            got += data.len() as u64;
            if let Some(total) = limit {
                if got > total {
                    return Err(UploadError::OverTotal(total).into());
                }
            }
            if let Some(max) = quota_limit.filter(|m| got > *m) {
                // Store no more; read the rest so the client sees the 507.
                drop(upload);
                drain(&mut body, got - max).await;
                return Err(quota_exceeded(got, max));
            }
            upload.write(&data).await?;
        }
        let finished = upload.finish().await?;
        // Refused here, the upload's objects are released for the collector.
        let size = put::record_part(self.meta, owner, transfer, name, finished).await?;
        let running = running.lock().take();
        if let Some(mut r) = running {
            r.covered.push((name.to_string(), size));
            self.transfers.advance(owner.id, transfer, base_len, r);
        }
        Ok(empty(StatusCode::CREATED))
    }

    async fn assemble(
        &self,
        req: &Request<Incoming>,
        owner: &Owner,
        transfer: &str,
    ) -> Result<Response<GwBody>, GatewayError> {
        let h = req.headers();
        let dest = header_str(h, "Destination")
            .ok_or_else(|| GatewayError::BadRequest("MOVE needs a Destination".into()))?;
        let path = match destination(dest, &owner.name) {
            Destination::Own(rest) => names_below(&rest)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| GatewayError::BadRequest("invalid Destination path".into()))?,
            Destination::Elsewhere => {
                return Ok(error_response(
                    StatusCode::FORBIDDEN,
                    "the destination must be inside your own files",
                ))
            }
        };
        if let Err(e) = self.refused.check(&path) {
            tracing::info!(error = %e, "chunked upload refused: files.refuse");
            return Err(e.into());
        }
        if self
            .locks
            .locked_for(owner, &path, header_str(h, "If"))
            .await
        {
            return Ok(error_response(
                StatusCode::LOCKED,
                "the destination is locked",
            ));
        }
        let mut check = AssembleCheck {
            total_length: header_u64(h, "OC-Total-Length")?,
            ..Default::default()
        };
        if let Some(v) = header_str(h, "If") {
            check.if_etag = if_header_etags(v).into_iter().next();
        }
        if let Some(v) = header_str(h, header::IF_MATCH.as_str()) {
            if v != "*" {
                check.if_etag = Some(unquote(v).to_string());
            }
        }
        if let Some(seen) = check.if_etag.take() {
            check.if_etag = Some(self.internal_etag(owner, &path, &seen).await?);
        }
        if header_str(h, header::IF_NONE_MATCH.as_str()) == Some("*")
            || header_str(h, "Overwrite").is_some_and(|v| v.eq_ignore_ascii_case("F"))
        {
            check.must_not_exist = true;
        }
        let announced: Vec<Announced> = match header_str(h, "OC-Checksum") {
            Some(v) => {
                checksum::parse_header(v).map_err(|e| GatewayError::BadRequest(e.to_string()))?
            }
            None => Vec::new(),
        };
        let mtime = mtime_hint(h);

        let (parts, manifest) = self.meta.session_manifest(owner, transfer).await?;
        let running = self
            .transfers
            .digests_for(owner.id, transfer, &parts)
            .filter(|d| d.covers(&announced));
        let digests = match running {
            Some(d) => d,
            None => {
                tracing::info!(
                    transfer,
                    parts = parts.len(),
                    "chunks arrived out of order, before a restart, or with another checksum type announced; reading them back for the checksums"
                );
                self.digest_stored(owner, manifest.clone(), &announced)
                    .await?
            }
        };
        digests
            .verify(&announced)
            .map_err(|e| GatewayError::ChecksumMismatch(e.to_string()))?;
        let done = self
            .meta
            .assemble_session(
                owner,
                transfer,
                &path,
                &check,
                AssembleMeta {
                    mtime,
                    checksums: digests.to_oc_string(),
                    expected_manifest: Some(manifest),
                },
            )
            .await?;
        self.transfers.forget(owner.id, transfer);
        let mut res = empty(if done.created {
            StatusCode::CREATED
        } else {
            StatusCode::NO_CONTENT
        });
        set_oc_headers(&mut res, &done.node, self.ids);
        if mtime.is_some() {
            res.headers_mut()
                .insert("X-OC-MTime", HeaderValue::from_static("accepted"));
        }
        Ok(res)
    }

    /// The client names the destination's etag as it saw it; the namespace
    /// checks the internal one inside the committing transaction. The
    /// destination as it is now translates: if its visible etag is the one
    /// named, its internal etag is checked again at commit (so a change in
    /// between still fails the request); otherwise the condition fails now.
    async fn internal_etag(
        &self,
        owner: &Owner,
        path: &[String],
        seen: &str,
    ) -> Result<String, GatewayError> {
        match self.meta.lookup(owner, path).await {
            Ok(n) if self.ids.etag(n.id, n.version) == seen => Ok(n.etag()),
            Ok(_) | Err(NsError::NotFound) => Err(UploadError::PreconditionFailed.into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads stored pieces back to compute their digests (bounded memory:
    /// one chunk at a time, plus the reader's read-ahead).
    async fn digest_stored(
        &self,
        owner: &Owner,
        manifest: Vec<crate::meta::ManifestEntry>,
        announced: &[Announced],
    ) -> Result<Digests, GatewayError> {
        let mut reader = FileReader::new(self.store.clone(), owner.id, manifest);
        let mut hashers = Hashers::new(self.hashed_types().with_announced(announced));
        loop {
            let data = reader.read(1 << 20).await?;
            if data.is_empty() {
                break;
            }
            hashers.update(&data);
        }
        if reader.position() != reader.size() {
            return Err(GatewayError::BadRequest(
                "the stored chunks could not be read completely".into(),
            ));
        }
        Ok(hashers.finish())
    }

    async fn list_root(
        &self,
        req: &Request<Incoming>,
        owner: &Owner,
        base: &str,
    ) -> Result<Response<GwBody>, GatewayError> {
        let mut ms = Multistatus::new();
        ms.folder(&format!("{base}/"), crate::clock::unix_secs(), "root");
        if depth(req.headers()) != 0 {
            for (tid, s) in self.meta.sessions(owner).await? {
                ms.folder(
                    &format!("{base}/{}/", utf8_percent_encode(&tid, SEGMENT)),
                    s.updated,
                    &session_etag(&s),
                );
            }
        }
        Ok(ms.finish())
    }

    async fn list_transfer(
        &self,
        req: &Request<Incoming>,
        owner: &Owner,
        base: &str,
        transfer: &str,
    ) -> Result<Response<GwBody>, GatewayError> {
        let (s, parts) = self.meta.session(owner, transfer).await?;
        let dir = format!("{base}/{}/", utf8_percent_encode(transfer, SEGMENT));
        let mut ms = Multistatus::new();
        ms.folder(&dir, s.updated, &session_etag(&s));
        if depth(req.headers()) != 0 {
            for p in parts {
                ms.file(&dir, &p);
            }
        }
        Ok(ms.finish())
    }

    async fn list_part(
        &self,
        owner: &Owner,
        base: &str,
        transfer: &str,
        name: &str,
    ) -> Result<Response<GwBody>, GatewayError> {
        let (_, parts) = self.meta.session(owner, transfer).await?;
        let p = parts
            .into_iter()
            .find(|p| p.name == name)
            .ok_or(UploadError::NoPart)?;
        let dir = format!("{base}/{}/", utf8_percent_encode(transfer, SEGMENT));
        let mut ms = Multistatus::new();
        ms.file(&dir, &p);
        Ok(ms.finish())
    }
}

/// Reads and drops the rest of a refused body, up to
/// [`REFUSED_BODY_DRAIN`] bytes past the limit (`past` already are).
async fn drain(body: &mut Incoming, mut past: u64) {
    while past <= REFUSED_BODY_DRAIN {
        match body.frame().await {
            Some(Ok(frame)) => {
                past += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
}

fn quota_exceeded(needed: u64, available: u64) -> GatewayError {
    NsError::QuotaExceeded { needed, available }.into()
}

fn options() -> Response<GwBody> {
    let mut res = empty(StatusCode::OK);
    let h = res.headers_mut();
    h.insert("DAV", HeaderValue::from_static("1"));
    h.insert(
        header::ALLOW,
        HeaderValue::from_static("OPTIONS, MKCOL, PUT, MOVE, DELETE, PROPFIND"),
    );
    res
}

fn depth(h: &HeaderMap) -> u8 {
    match header_str(h, "Depth") {
        Some("0") => 0,
        _ => 1,
    }
}

fn session_etag(s: &UploadSession) -> String {
    format!("{:x}-{:x}", s.received, s.updated)
}

fn http_date(secs: i64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

/// A small 207 writer for the upload folders.
struct Multistatus(String);

impl Multistatus {
    fn new() -> Self {
        Self(String::from(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
             <d:multistatus xmlns:d=\"DAV:\" xmlns:oc=\"http://owncloud.org/ns\">",
        ))
    }

    fn entry(&mut self, href: &str, props: &str) {
        self.0.push_str(&format!(
            "<d:response><d:href>{}</d:href><d:propstat><d:prop>{props}</d:prop>\
             <d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>",
            href.replace('&', "&amp;").replace('<', "&lt;")
        ));
    }

    fn folder(&mut self, href: &str, modified: i64, etag: &str) {
        let props = format!(
            "<d:resourcetype><d:collection/></d:resourcetype>\
             <d:getlastmodified>{}</d:getlastmodified><d:getetag>\"{etag}\"</d:getetag>",
            http_date(modified)
        );
        self.entry(href, &props);
    }

    fn file(&mut self, dir: &str, p: &PartInfo) {
        let props = format!(
            "<d:resourcetype/><d:getcontentlength>{}</d:getcontentlength>\
             <d:getlastmodified>{}</d:getlastmodified>\
             <d:getetag>\"{:x}-{:x}\"</d:getetag><oc:size>{}</oc:size>",
            p.size,
            http_date(p.modified),
            p.size,
            p.modified,
            p.size
        );
        let href = format!("{dir}{}", utf8_percent_encode(&p.name, SEGMENT));
        self.entry(&href, &props);
    }

    fn finish(mut self) -> Response<GwBody> {
        self.0.push_str("</d:multistatus>\n");
        let mut res = Response::new(full(self.0));
        *res.status_mut() = StatusCode::MULTI_STATUS;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml; charset=utf-8"),
        );
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target(""), Some(Target::Root));
        assert_eq!(parse_target("/"), Some(Target::Root));
        assert_eq!(parse_target("/123/"), Some(Target::Transfer("123".into())));
        assert_eq!(
            parse_target("/123/0000000000000000"),
            Some(Target::Part("123".into(), "0000000000000000".into()))
        );
        assert_eq!(
            parse_target("/123/.file"),
            Some(Target::Part("123".into(), ".file".into()))
        );
        assert_eq!(parse_target("/a/b/c"), None);
        assert_eq!(parse_target("/a%2Fb"), None);
        assert_eq!(parse_target("/.."), None);
    }

    #[test]
    fn if_header() {
        assert_eq!(
            if_header_etags("</remote.php/dav/files/u/a.bin> ([\"5-9\"])"),
            vec!["5-9".to_string()]
        );
        assert!(if_header_etags("(<opaquelocktoken:x>)").is_empty());
        assert_eq!(unquote("\"x-1\""), "x-1");
        assert_eq!(unquote("W/\"x\""), "x");
    }

    #[test]
    fn destination_names() {
        assert_eq!(
            names_below("/dir/renamed%20x.txt").unwrap(),
            vec!["dir".to_string(), "renamed x.txt".to_string()]
        );
        assert_eq!(names_below("/").unwrap(), Vec::<String>::new());
        assert!(names_below("/a%2Fb").is_none());
        assert!(names_below("/%2E%2E/x").is_none());
        assert!(names_below("/%ff").is_none());
    }

    #[test]
    fn running_digests_follow_order() {
        let t = Transfers::default();
        t.start(1, "x", ChecksumSet::ALL);
        let s = t.snapshot(1, "x", "0000000000000000").unwrap();
        let mut s2 = s.clone();
        s2.hashers.update(b"abc");
        s2.covered.push(("0000000000000000".into(), 3));
        t.advance(1, "x", 0, s2);
        let parts = vec![PartInfo {
            name: "0000000000000000".into(),
            size: 3,
            modified: 0,
        }];
        let d = t.digests_for(1, "x", &parts).unwrap();
        assert_eq!(
            d.sha1.as_deref(),
            Some("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        // Another user's transfer of the same id is separate.
        assert!(t.digests_for(2, "x", &parts).is_none());
        // Re-sending a piece already hashed invalidates the digests.
        assert!(t.snapshot(1, "x", "0000000000000000").is_none());
        assert!(t.digests_for(1, "x", &parts).is_none());
    }
}
