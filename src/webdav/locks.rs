//! One user's WebDAV locks for dav-server: its `DavLockSystem` over the
//! lock records in the metadata (`meta/locks.rs`), so locks survive a
//! restart and could be shared by several gateways.
//!
//! dav-server's own table (`MemLs`) kept locks in memory, never acted on
//! their timeout and had no size cap. [`LockTable`] keeps what the gateway
//! added to it: every lock gets a deadline (the client's `Timeout`, at
//! most [`MAX_TIMEOUT`]; `Infinite` or none becomes [`DEFAULT_TIMEOUT`],
//! and the reply says so), an expired lock is treated as absent at once
//! and its record removed lazily or by the expiry job, and a user holds at
//! most `limits.locks_per_user` live locks (the front answers 507 before
//! dav-server sees a LOCK beyond that; the metadata enforces it again in
//! the transaction that grants the lock).
//!
//! **Calling `Meta` from the trait.** dav-server's trait methods return
//! boxed futures that borrow only the table, not their arguments; each
//! method copies what it needs (names, tokens) and awaits the metadata
//! operation inside the future, so nothing blocks a runtime worker beyond
//! what the engine itself does (redb answers reads inline; a write hands
//! the worker off while it waits for the disk). The trait has no error
//! channel: a failing metadata operation is recorded in the request's
//! [`FailureSlot`] (the front answers with its status) and the lock
//! check fails closed.
//!
//! The table is built per request from the metadata handle: it holds no
//! state of its own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dav_server::davpath::DavPath;
use dav_server::ls::{DavLock, DavLockSystem, LsFuture};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use percent_encoding::utf8_percent_encode;
use xmltree::{Element, EmitterConfig, Namespace};

use crate::meta::locks::{blocking, deadline_after, LockError, LockRecord, Submitted};
use crate::meta::{split_path, Meta, NamePath, Owner};
use crate::owncloud::uploads::{if_header_lock_tokens, PathLocks, SEGMENT};
use crate::wire::error::{FailureSlot, GatewayError};

/// The longest lock granted (a client asking for more gets this).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The lock granted for `Timeout: Infinite` or no `Timeout` header (as
/// ownCloud's server does): clients refresh locks they keep.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// The shortest lock granted (`Second-0` would expire as it is granted).
const MIN_TIMEOUT: Duration = Duration::from_secs(1);

/// A user's locks, for one request (cheap to build and clone).
#[derive(Clone)]
pub struct LockTable {
    meta: Meta,
    user: u64,
    cap: usize,
    failure: Option<FailureSlot>,
}

impl std::fmt::Debug for LockTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockTable")
            .field("user", &self.user)
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

/// The timeout granted for a requested one.
fn granted(requested: Option<Duration>) -> Duration {
    requested.map_or(DEFAULT_TIMEOUT, |t| t.clamp(MIN_TIMEOUT, MAX_TIMEOUT))
}

impl LockTable {
    /// The locks of user id `user`, who may hold `cap` live ones.
    pub fn new(meta: Meta, user: u64, cap: usize) -> Self {
        Self {
            meta,
            user,
            cap,
            failure: None,
        }
    }

    /// Failing metadata operations are recorded in `slot` (the request's).
    pub fn reporting_to(mut self, slot: FailureSlot) -> Self {
        self.failure = Some(slot);
        self
    }

    /// Whether the user holds as many live locks as allowed (false when
    /// the count cannot be read: the grant checks again).
    pub async fn is_full(&self) -> bool {
        let now = crate::clock::unix_millis();
        matches!(self.meta.lock_count(self.user, now).await, Ok(n) if n >= self.cap)
    }

    fn report(&self, e: impl Into<GatewayError>) {
        let e = e.into();
        match &self.failure {
            Some(slot) => {
                slot.record(e);
            }
            None => tracing::error!(error = %e, "lock check failed"),
        }
    }

    /// The names of `path`; a path the namespace refuses is reported.
    fn names(&self, path: &DavPath) -> Option<NamePath> {
        split_path(path.as_bytes()).map_err(|e| self.report(e)).ok()
    }

    /// The live locks covering `path` and, when `deep`, those below it.
    async fn around(
        &self,
        path: &[String],
        deep: bool,
    ) -> Result<(Vec<LockRecord>, Vec<LockRecord>), GatewayError> {
        let now = crate::clock::unix_millis();
        let covering = self.meta.locks_covering(self.user, path, now).await?;
        let within = match deep {
            true => self.meta.locks_within(self.user, path, now).await?,
            false => Vec::new(),
        };
        Ok((covering, within))
    }
}

/// The URL path (below `prefix`, as dav-server names it) of `names`.
fn dav_path_in(prefix: &str, names: &[String]) -> Option<DavPath> {
    let segments = prefix.split('/').filter(|s| !s.is_empty());
    let mut url: String = segments
        .chain(names.iter().map(String::as_str))
        .map(|seg| format!("/{}", utf8_percent_encode(seg, SEGMENT)))
        .collect();
    if names.is_empty() {
        url.push('/');
    }
    let mut path = DavPath::new(&url).ok()?;
    if !prefix.is_empty() {
        path.set_prefix(prefix).ok()?;
    }
    Some(path)
}

/// The client's `<D:owner>` element as stored text. dav-server renames
/// its prefix to `D` without declaring it: the text declares it, so it
/// reads back.
fn owner_text(owner: &Element) -> Option<String> {
    let mut owner = owner.clone();
    if let (Some(prefix), Some(uri)) = (owner.prefix.clone(), owner.namespace.clone()) {
        owner
            .namespaces
            .get_or_insert_with(Namespace::empty)
            .force_put(prefix, uri);
    }
    let mut out = Vec::new();
    let config = EmitterConfig::new().write_document_declaration(false);
    owner.write_with_config(&mut out, config).ok()?;
    String::from_utf8(out).ok()
}

/// What dav-server shows of `lock` to a request for `request` (its URL
/// prefix names the lock root), with `timeout` as the time left.
fn dav_lock(lock: &LockRecord, request: &DavPath, timeout: Duration) -> DavLock {
    let path = dav_path_in(request.prefix(), &lock.path).unwrap_or_else(|| request.clone());
    DavLock {
        token: lock.token.clone(),
        path: Box::new(path),
        principal: lock.principal.clone(),
        owner: lock
            .owner_xml
            .as_deref()
            .and_then(|x| Element::parse(x.as_bytes()).ok())
            .map(Box::new),
        timeout_at: Some(UNIX_EPOCH + Duration::from_millis(lock.deadline_ms.max(0) as u64)),
        timeout: Some(timeout),
        shared: lock.shared,
        deep: lock.deep,
    }
}

/// As [`dav_lock`], the timeout being what is left now (rounded up).
fn dav_lock_now(lock: &LockRecord, request: &DavPath) -> DavLock {
    let left = lock.remaining_ms(crate::clock::unix_millis());
    dav_lock(lock, request, Duration::from_secs(left.div_ceil(1000)))
}

/// A stand-in for a conflicting lock when the check itself failed (the
/// trait's error is a lock; the request's answer is the recorded failure).
fn failed_check(request: &DavPath) -> DavLock {
    DavLock {
        token: String::new(),
        path: Box::new(request.clone()),
        principal: None,
        owner: None,
        timeout_at: Some(SystemTime::now()),
        timeout: Some(Duration::ZERO),
        shared: false,
        deep: false,
    }
}

impl PathLocks for LockTable {
    fn locked_for<'a>(
        &'a self,
        owner: &'a Owner,
        path: &'a [String],
        if_header: Option<&'a str>,
    ) -> BoxFuture<'a, bool> {
        async move {
            let tokens = if_header.map(if_header_lock_tokens).unwrap_or_default();
            let submitted = Submitted {
                principal: Some(&owner.name),
                ignore_principal: false,
                tokens: &tokens,
            };
            match self.around(path, false).await {
                Ok((covering, _)) => blocking(&covering, &[], &submitted).is_some(),
                Err(e) => {
                    self.report(e);
                    true
                }
            }
        }
        .boxed()
    }
}

impl DavLockSystem for LockTable {
    fn lock(
        &'_ self,
        path: &DavPath,
        principal: Option<&str>,
        owner: Option<&Element>,
        timeout: Option<Duration>,
        shared: bool,
        deep: bool,
    ) -> LsFuture<'_, Result<DavLock, DavLock>> {
        let request = path.clone();
        let names = self.names(path);
        let timeout = granted(timeout);
        let now = crate::clock::unix_millis();
        let wanted = names.map(|path| LockRecord {
            token: uuid::Uuid::new_v4().urn().to_string(),
            user: self.user,
            path,
            deep,
            shared,
            principal: principal.map(str::to_string),
            owner_xml: owner.and_then(owner_text),
            timeout_secs: timeout.as_secs(),
            deadline_ms: deadline_after(now, timeout.as_secs()),
        });
        async move {
            let Some(wanted) = wanted else {
                return Err(failed_check(&request));
            };
            match self.meta.lock_acquire(&wanted, now, self.cap).await {
                Ok(lock) => Ok(dav_lock(&lock, &request, timeout)),
                Err(LockError::Conflict(held)) => Err(dav_lock_now(&held, &request)),
                Err(e) => {
                    self.report(e);
                    Err(failed_check(&request))
                }
            }
        }
        .boxed()
    }

    fn unlock(&'_ self, path: &DavPath, token: &str) -> LsFuture<'_, Result<(), ()>> {
        let names = self.names(path);
        let token = token.to_string();
        async move {
            let names = names.ok_or(())?;
            let now = crate::clock::unix_millis();
            match self.meta.lock_release(self.user, &names, &token, now).await {
                Ok(()) => Ok(()),
                Err(LockError::NoSuchLock) => Err(()),
                Err(e) => {
                    self.report(e);
                    Err(())
                }
            }
        }
        .boxed()
    }

    fn refresh(
        &'_ self,
        path: &DavPath,
        token: &str,
        timeout: Option<Duration>,
    ) -> LsFuture<'_, Result<DavLock, ()>> {
        let request = path.clone();
        let names = self.names(path);
        let token = token.to_string();
        let timeout = granted(timeout);
        async move {
            let names = names.ok_or(())?;
            let now = crate::clock::unix_millis();
            let secs = timeout.as_secs();
            match self
                .meta
                .lock_refresh(self.user, &names, &token, secs, now)
                .await
            {
                Ok(lock) => Ok(dav_lock(&lock, &request, timeout)),
                Err(LockError::NoSuchLock) => Err(()),
                Err(e) => {
                    self.report(e);
                    Err(())
                }
            }
        }
        .boxed()
    }

    fn check(
        &'_ self,
        path: &DavPath,
        principal: Option<&str>,
        ignore_principal: bool,
        deep: bool,
        submitted_tokens: &[String],
    ) -> LsFuture<'_, Result<(), DavLock>> {
        let request = path.clone();
        let names = self.names(path);
        let principal = principal.map(str::to_string);
        let tokens = submitted_tokens.to_vec();
        async move {
            let names = names.ok_or_else(|| failed_check(&request))?;
            let (covering, within) = self.around(&names, deep).await.map_err(|e| {
                self.report(e);
                failed_check(&request)
            })?;
            let submitted = Submitted {
                principal: principal.as_deref(),
                ignore_principal,
                tokens: &tokens,
            };
            match blocking(&covering, &within, &submitted) {
                Some(lock) => Err(dav_lock_now(lock, &request)),
                None => Ok(()),
            }
        }
        .boxed()
    }

    fn discover(&'_ self, path: &DavPath) -> LsFuture<'_, Vec<DavLock>> {
        let request = path.clone();
        let names = self.names(path);
        async move {
            let Some(names) = names else {
                return Vec::new();
            };
            match self.around(&names, false).await {
                Ok((covering, _)) => covering.iter().map(|l| dav_lock_now(l, &request)).collect(),
                Err(e) => {
                    self.report(e);
                    Vec::new()
                }
            }
        }
        .boxed()
    }

    /// After a DELETE or MOVE: the locks on what went (and below it) go
    /// too; locks do not move with MOVE (RFC 4918 §7.5).
    fn delete(&'_ self, path: &DavPath) -> LsFuture<'_, Result<(), ()>> {
        let names = self.names(path);
        async move {
            let names = names.ok_or(())?;
            match self.meta.drop_locks_within(self.user, &names).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    self.report(e);
                    Err(())
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{NewUser, PropLimits};

    fn path(p: &str) -> DavPath {
        DavPath::new(p).unwrap()
    }

    async fn table(cap: usize) -> (tempfile::TempDir, LockTable) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open_redb(&dir.path().join("i.redb"), PropLimits::default()).unwrap();
        let user = meta
            .add_user(NewUser {
                name: "u".into(),
                password_hash: "x".into(),
                admin: false,
                quota: None,
            })
            .await
            .unwrap();
        (dir, LockTable::new(meta, user.id, cap))
    }

    async fn take(t: &LockTable, p: &str, secs: u64) -> Result<DavLock, DavLock> {
        // As dav-server hands it over: renamed to the undeclared prefix D.
        let info = b"<lockinfo xmlns='DAV:'><owner><href>me</href></owner></lockinfo>";
        let mut owner = Element::parse(&info[..]).unwrap().children[0]
            .as_element()
            .unwrap()
            .clone();
        owner.prefix = Some("D".into());
        t.lock(
            &path(p),
            Some("u"),
            Some(&owner),
            Some(Duration::from_secs(secs)),
            false,
            false,
        )
        .await
    }

    #[tokio::test]
    async fn a_lock_is_enforced_until_it_expires() {
        let (_d, t) = table(10).await;
        let lock = take(&t, "/a.txt", 1).await.unwrap();
        assert_eq!(lock.timeout, Some(Duration::from_secs(1)));
        assert!(t
            .check(&path("/a.txt"), Some("u"), false, false, &[])
            .await
            .is_err());
        assert!(t
            .check(&path("/a.txt"), Some("u"), false, false, &[lock.token])
            .await
            .is_ok());
        assert!(take(&t, "/a.txt", 1).await.is_err(), "exclusive");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(t
            .check(&path("/a.txt"), Some("u"), false, false, &[])
            .await
            .is_ok());
        assert!(!t.is_full().await);
        assert!(take(&t, "/a.txt", 1).await.is_ok(), "free again");
    }

    #[tokio::test]
    async fn timeouts_are_capped_and_infinite_is_not_forever() {
        let (_d, t) = table(10).await;
        let long = take(&t, "/a", 10 * 24 * 3600).await.unwrap();
        assert_eq!(long.timeout, Some(MAX_TIMEOUT));
        let inf = t
            .lock(&path("/b"), None, None, None, false, false)
            .await
            .unwrap();
        assert_eq!(inf.timeout, Some(DEFAULT_TIMEOUT));
        let zero = take(&t, "/c", 0).await.unwrap();
        assert_eq!(zero.timeout, Some(MIN_TIMEOUT));
    }

    #[tokio::test]
    async fn discovery_shows_the_owner_and_the_lock_root() {
        let (_d, t) = table(10).await;
        let mut dir = DavPath::new("/remote.php/dav/files/u/my%20dir/").unwrap();
        dir.set_prefix("/remote.php/dav/files/u").unwrap();
        let lock = t
            .lock(&dir, Some("u"), None, None, false, true)
            .await
            .unwrap();
        let mut inside = DavPath::new("/remote.php/dav/files/u/my%20dir/f").unwrap();
        inside.set_prefix("/remote.php/dav/files/u").unwrap();
        let found = t.discover(&inside).await;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].token, lock.token);
        assert_eq!(
            found[0].path.with_prefix().as_url_string(),
            "/remote.php/dav/files/u/my%20dir"
        );
        let owned = take(&t, "/o", 60).await.unwrap();
        let again = t.discover(&path("/o")).await;
        assert_eq!(again[0].token, owned.token);
        let owner = again[0].owner.as_ref().expect("the owner is kept");
        assert_eq!(owner.name, "owner");
        let href = owner.get_child("href").and_then(|h| h.get_text());
        assert_eq!(href.as_deref(), Some("me"));
    }

    #[tokio::test]
    async fn the_table_counts_live_locks_only() {
        let (_d, t) = table(2).await;
        let a = take(&t, "/a", 60).await.unwrap();
        take(&t, "/dir/b", 60).await.unwrap();
        assert!(t.is_full().await);
        assert!(take(&t, "/c", 60).await.is_err(), "over the cap");
        t.unlock(&path("/a"), &a.token).await.unwrap();
        assert!(!t.is_full().await);
        t.delete(&path("/dir")).await.unwrap();
        assert!(t.discover(&path("/dir/b")).await.is_empty());
    }
}
