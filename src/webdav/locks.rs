//! One user's WebDAV lock table: dav-server's in-memory table, with the
//! two things it lacks — expiry and a size cap.
//!
//! dav-server's `MemLs` records a lock's timeout but never acts on it, so a
//! crashed Office or Finder client left a file locked until the gateway
//! restarted, and a client could add locks without end. [`LockTable`]
//! wraps it: every lock it grants gets a deadline (the client's `Timeout`,
//! at most [`MAX_TIMEOUT`]; `Infinite` or none becomes [`DEFAULT_TIMEOUT`],
//! and the reply says so), expired locks are removed before every
//! operation, and a user holds at most `limits.locks_per_user` locks (the
//! front answers 507 before dav-server sees a LOCK beyond that).
//!
//! Locks live in memory: a restart releases them all, which errs on the
//! side of letting people write.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use dav_server::davpath::DavPath;
use dav_server::ls::{DavLock, DavLockSystem, LsFuture};
use dav_server::memls::MemLs;
use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::Mutex;
use percent_encoding::utf8_percent_encode;
use xmltree::Element;

use crate::meta::Owner;
use crate::owncloud::uploads::{if_header_lock_tokens, PathLocks, SEGMENT};

/// The longest lock granted (a client asking for more gets this).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// The lock granted for `Timeout: Infinite` or no `Timeout` header (as
/// ownCloud's server does): clients refresh locks they keep.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// What the table knows of a lock it granted.
#[derive(Debug, Clone)]
struct Held {
    path: DavPath,
    expires: SystemTime,
}

/// A user's locks (cheap to clone; clones share the table).
#[derive(Debug, Clone)]
pub struct LockTable {
    inner: Box<MemLs>,
    held: Arc<Mutex<HashMap<String, Held>>>,
    cap: usize,
}

impl LockTable {
    pub fn new(cap: usize) -> Self {
        Self {
            inner: MemLs::new(),
            held: Arc::new(Mutex::new(HashMap::new())),
            cap,
        }
    }

    /// Whether the user holds as many live locks as allowed.
    pub fn is_full(&self) -> bool {
        self.expire();
        self.held.lock().len() >= self.cap
    }

    /// Live locks held.
    pub fn len(&self) -> usize {
        self.expire();
        self.held.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every lock whose deadline has passed.
    fn expire(&self) {
        let now = SystemTime::now();
        let expired: Vec<(String, DavPath)> = {
            let mut held = self.held.lock();
            let gone: Vec<String> = held
                .iter()
                .filter(|(_, h)| h.expires <= now)
                .map(|(t, _)| t.clone())
                .collect();
            gone.into_iter()
                .filter_map(|t| held.remove(&t).map(|h| (t, h.path)))
                .collect()
        };
        for (token, path) in expired {
            // MemLs answers at once; its future holds no lock across an await.
            let _ = self.inner.unlock(&path, &token).now_or_never();
            tracing::debug!(%token, "lock expired");
        }
    }

    fn remember(&self, lock: &DavLock) {
        let expires = lock
            .timeout_at
            .unwrap_or_else(|| SystemTime::now() + DEFAULT_TIMEOUT);
        self.held.lock().insert(
            lock.token.clone(),
            Held {
                path: (*lock.path).clone(),
                expires,
            },
        );
    }
}

/// The timeout granted for a requested one.
fn granted(requested: Option<Duration>) -> Duration {
    requested.map_or(DEFAULT_TIMEOUT, |t| t.min(MAX_TIMEOUT))
}

/// Whether `path` is `root` or lies below it.
fn is_within(path: &DavPath, root: &DavPath) -> bool {
    let (p, r) = (path.as_bytes(), root.as_bytes());
    let r = r.strip_suffix(b"/").unwrap_or(r);
    p.starts_with(r) && (p.len() == r.len() || p[r.len()] == b'/')
}

impl LockTable {
    /// Takes an exclusive lock on `path` (and, when `deep`, everything
    /// below) for `user`, for the longest timeout; answers its token, or
    /// `None` when a lock is in the way or the table is full.
    pub async fn lock_exclusive(&self, user: &str, path: &[String], deep: bool) -> Option<String> {
        let path = dav_path(path)?;
        self.lock(&path, Some(user), None, None, false, deep)
            .await
            .ok()
            .map(|lock| lock.token)
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
            let Some(dav_path) = dav_path(path) else {
                return false;
            };
            let tokens = if_header.map(if_header_lock_tokens).unwrap_or_default();
            self.check(&dav_path, Some(&owner.name), false, false, &tokens)
                .await
                .is_err()
        }
        .boxed()
    }
}

/// The percent-encoded path dav-server names `names` by.
fn dav_path(names: &[String]) -> Option<DavPath> {
    let encoded: String = names
        .iter()
        .map(|seg| format!("/{}", utf8_percent_encode(seg, SEGMENT)))
        .collect();
    DavPath::new(&encoded).ok()
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
        self.expire();
        let timeout = Some(granted(timeout));
        let inner = self
            .inner
            .lock(path, principal, owner, timeout, shared, deep);
        async move {
            let lock = inner.await?;
            self.remember(&lock);
            Ok(lock)
        }
        .boxed()
    }

    fn unlock(&'_ self, path: &DavPath, token: &str) -> LsFuture<'_, Result<(), ()>> {
        self.expire();
        let token = token.to_string();
        let inner = self.inner.unlock(path, &token);
        async move {
            inner.await?;
            self.held.lock().remove(&token);
            Ok(())
        }
        .boxed()
    }

    fn refresh(
        &'_ self,
        path: &DavPath,
        token: &str,
        timeout: Option<Duration>,
    ) -> LsFuture<'_, Result<DavLock, ()>> {
        self.expire();
        let inner = self.inner.refresh(path, token, Some(granted(timeout)));
        async move {
            let lock = inner.await?;
            self.remember(&lock);
            Ok(lock)
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
        self.expire();
        self.inner
            .check(path, principal, ignore_principal, deep, submitted_tokens)
    }

    fn discover(&'_ self, path: &DavPath) -> LsFuture<'_, Vec<DavLock>> {
        self.expire();
        self.inner.discover(path)
    }

    fn delete(&'_ self, path: &DavPath) -> LsFuture<'_, Result<(), ()>> {
        self.held.lock().retain(|_, h| !is_within(&h.path, path));
        self.inner.delete(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> DavPath {
        DavPath::new(p).unwrap()
    }

    async fn take(t: &LockTable, p: &str, secs: u64) -> Result<DavLock, DavLock> {
        t.lock(
            &path(p),
            Some("u"),
            None,
            Some(Duration::from_secs(secs)),
            false,
            false,
        )
        .await
    }

    #[tokio::test]
    async fn a_lock_is_enforced_until_it_expires() {
        let t = LockTable::new(10);
        let lock = take(&t, "/a.txt", 1).await.unwrap();
        assert_eq!(lock.timeout, Some(Duration::from_secs(1)));
        assert!(t
            .check(&path("/a.txt"), Some("u"), false, false, &[])
            .await
            .is_err());
        assert!(take(&t, "/a.txt", 1).await.is_err(), "exclusive");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(t
            .check(&path("/a.txt"), Some("u"), false, false, &[])
            .await
            .is_ok());
        assert!(t.is_empty());
        assert!(take(&t, "/a.txt", 1).await.is_ok(), "free again");
    }

    #[tokio::test]
    async fn timeouts_are_capped_and_infinite_is_not_forever() {
        let t = LockTable::new(10);
        let long = take(&t, "/a", 10 * 24 * 3600).await.unwrap();
        assert_eq!(long.timeout, Some(MAX_TIMEOUT));
        let inf = t
            .lock(&path("/b"), None, None, None, false, false)
            .await
            .unwrap();
        assert_eq!(inf.timeout, Some(DEFAULT_TIMEOUT));
    }

    #[tokio::test]
    async fn the_table_counts_live_locks_only() {
        let t = LockTable::new(2);
        let a = take(&t, "/a", 60).await.unwrap();
        take(&t, "/dir/b", 60).await.unwrap();
        assert!(t.is_full());
        t.unlock(&path("/a"), &a.token).await.unwrap();
        assert!(!t.is_full());
        t.delete(&path("/dir")).await.unwrap();
        assert!(t.is_empty());
        assert!(!is_within(&path("/dirx"), &path("/dir")));
        assert!(is_within(&path("/dir/x"), &path("/dir/")));
    }
}
