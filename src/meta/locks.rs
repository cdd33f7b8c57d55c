//! WebDAV locks as the metadata keeps them, and the rules that decide
//! between them: which locks cover a path, which new lock conflicts with
//! the ones held, and whether a request holds what covers it.
//!
//! A lock belongs to one user's tree and names a path in it (validated
//! names, so a rename of the tree never has to rewrite a lock: locks do
//! not move with MOVE, RFC 4918 §7.5, and are removed instead). Its
//! deadline is a wall-clock time (Unix milliseconds), so any gateway
//! reading the record agrees on whether it still holds; an expired record
//! is treated as absent everywhere and removed lazily or by the expiry job.
//!
//! Locks are not journaled: a restored index starts with none, which errs
//! toward letting people write. The rules here are the ones dav-server's
//! in-memory table applied, so clients see the same answers as before.

use super::codec::{Reader, Writer};
use super::IndexError;

/// One granted lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRecord {
    /// The lock token (`urn:uuid:…`), unguessable, unique.
    pub token: String,
    /// The id of the user whose tree holds the locked path.
    pub user: u64,
    /// The locked path below the user's root (empty: the root).
    pub path: Vec<String>,
    /// Depth infinity (covers everything below) or depth 0.
    pub deep: bool,
    /// Shared (others may take shared locks too) or exclusive.
    pub shared: bool,
    /// Who asked for it (the authenticated user's name).
    pub principal: Option<String>,
    /// The client's `<D:owner>` element, as XML, handed back verbatim.
    pub owner_xml: Option<String>,
    /// The timeout granted, in seconds.
    pub timeout_secs: u64,
    /// When it expires: Unix milliseconds.
    pub deadline_ms: i64,
}

/// Why a lock operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// A lock held by someone else is in the way.
    #[error("{} is locked", display_path(&.0.path))]
    Conflict(Box<LockRecord>),
    /// The user holds as many live locks as allowed.
    #[error("the user holds {0} locks, the most allowed")]
    TooMany(usize),
    /// No live lock with that token covers the path.
    #[error("no lock with that token covers the path")]
    NoSuchLock,
    #[error(transparent)]
    Index(#[from] IndexError),
}

fn display_path(path: &[String]) -> String {
    format!("/{}", path.join("/"))
}

impl LockRecord {
    /// Whether the lock is still held at `now_ms`.
    pub fn live_at(&self, now_ms: i64) -> bool {
        self.deadline_ms > now_ms
    }

    /// Whether the lock applies to `path`: it names it, or it is deep and
    /// names a folder above it.
    pub fn covers(&self, path: &[String]) -> bool {
        path.starts_with(&self.path) && (self.deep || path.len() == self.path.len())
    }

    /// Whether the lock names `path` or something below it.
    pub fn is_within(&self, path: &[String]) -> bool {
        self.path.starts_with(path)
    }

    /// Milliseconds left at `now_ms` (0 once expired).
    pub fn remaining_ms(&self, now_ms: i64) -> u64 {
        self.deadline_ms.saturating_sub(now_ms).max(0) as u64
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.str(&self.token)
            .u64(self.user)
            .u64(self.path.len() as u64);
        for name in &self.path {
            w.str(name);
        }
        w.bool(self.deep)
            .bool(self.shared)
            .option(self.principal.as_deref(), |w, p| {
                w.str(p);
            })
            .option(self.owner_xml.as_deref(), |w, o| {
                w.str(o);
            })
            .u64(self.timeout_secs)
            .i64(self.deadline_ms)
            .finish()
    }

    pub fn decode(b: &[u8]) -> Result<Self, IndexError> {
        let mut r = Reader::new("locks", b);
        let token = r.string()?;
        let user = r.u64()?;
        let names = r.u64()?;
        // Each name takes at least its 8-byte length: a corrupt count
        // cannot make this allocate more than the record holds.
        let mut path = Vec::with_capacity((names as usize).min(b.len() / 8));
        for _ in 0..names {
            path.push(r.string()?);
        }
        Ok(Self {
            token,
            user,
            path,
            deep: r.bool()?,
            shared: r.bool()?,
            principal: r.option(|r| r.string())?,
            owner_xml: r.option(|r| r.string())?,
            timeout_secs: r.u64()?,
            deadline_ms: r.i64()?,
        })
    }
}

/// `timeout_secs` after `now_ms`, in Unix milliseconds.
pub fn deadline_after(now_ms: i64, timeout_secs: u64) -> i64 {
    let ms = timeout_secs.saturating_mul(1000).min(i64::MAX as u64) as i64;
    now_ms.saturating_add(ms)
}

/// The key a lock's path is stored under: "/a/b" ("" for the root). A
/// name holds neither '/' nor NUL, so the locks below a path are the keys
/// starting with its key and '/'.
pub fn path_key(path: &[String]) -> String {
    let mut key = String::with_capacity(path.iter().map(|n| n.len() + 1).sum());
    for name in path {
        key.push('/');
        key.push_str(name);
    }
    key
}

/// The held lock a new lock `wanted` conflicts with, if any: an
/// exclusive lock covering its path, any covering lock when `wanted` is
/// exclusive, and — when `wanted` is deep — the same for every lock below.
/// `covering` are the live locks covering the path, `within` those on it
/// or below.
pub fn conflict<'a>(
    wanted: &LockRecord,
    covering: &'a [LockRecord],
    within: &'a [LockRecord],
) -> Option<&'a LockRecord> {
    let clashes = |held: &&LockRecord| !held.shared || !wanted.shared;
    covering
        .iter()
        .find(clashes)
        .or_else(|| within.iter().filter(|_| wanted.deep).find(clashes))
}

/// What a request submits in its lock check.
#[derive(Debug, Clone, Copy)]
pub struct Submitted<'a> {
    /// The authenticated user's name, when the lock's principal must match.
    pub principal: Option<&'a str>,
    /// Whether any principal may use a token (an `If` header's condition).
    pub ignore_principal: bool,
    /// The lock tokens the request's `If` header submits.
    pub tokens: &'a [String],
}

impl Submitted<'_> {
    fn holds(&self, lock: &LockRecord) -> bool {
        self.tokens.contains(&lock.token)
            && (self.ignore_principal || self.principal == lock.principal.as_deref())
    }
}

/// The lock that stops a change to a path, if any. `covering`: the live
/// locks covering the path; an exclusive one must be held, and of shared
/// ones at least one. `within` (the live locks on or below the path, for
/// a change to everything below it): each must be held.
pub fn blocking<'a>(
    covering: &'a [LockRecord],
    within: &'a [LockRecord],
    submitted: &Submitted<'_>,
) -> Option<&'a LockRecord> {
    let mut holds_one = false;
    let mut first_shared = None;
    for lock in covering {
        if submitted.holds(lock) {
            holds_one = true;
        } else if !lock.shared {
            return Some(lock);
        } else {
            first_shared.get_or_insert(lock);
        }
    }
    if let Some(shared) = first_shared.filter(|_| !holds_one) {
        return Some(shared);
    }
    within.iter().find(|lock| !submitted.holds(lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(path: &[&str], deep: bool, shared: bool, token: &str) -> LockRecord {
        LockRecord {
            token: token.into(),
            user: 1,
            path: path.iter().map(|s| s.to_string()).collect(),
            deep,
            shared,
            principal: Some("ann".into()),
            owner_xml: Some("<D:owner xmlns:D=\"DAV:\">ann</D:owner>".into()),
            timeout_secs: 60,
            deadline_ms: 1_000,
        }
    }

    fn names(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn records_round_trip_and_refuse_cut_bytes() {
        let rec = lock(&["a", "b c"], true, false, "urn:uuid:1");
        let bytes = rec.encode();
        assert_eq!(LockRecord::decode(&bytes).unwrap(), rec);
        for cut in 0..bytes.len() {
            assert!(LockRecord::decode(&bytes[..cut]).is_err(), "{cut}");
        }
        let mut bare = rec.clone();
        (bare.principal, bare.owner_xml, bare.path) = (None, None, vec![]);
        assert_eq!(LockRecord::decode(&bare.encode()).unwrap(), bare);
    }

    #[test]
    fn coverage_follows_depth() {
        let deep = lock(&["d"], true, false, "t");
        let flat = lock(&["d"], false, false, "t");
        assert!(deep.covers(&names(&["d", "x", "y"])) && deep.covers(&names(&["d"])));
        assert!(!flat.covers(&names(&["d", "x"])) && flat.covers(&names(&["d"])));
        assert!(!deep.covers(&names(&["dx"])) && !deep.covers(&[]));
        assert!(flat.is_within(&[]) && flat.is_within(&names(&["d"])));
        assert!(!flat.is_within(&names(&["d", "x"])));
        assert_eq!(path_key(&names(&["a", "b"])), "/a/b");
        assert_eq!(path_key(&[]), "");
    }

    #[test]
    fn shared_locks_share_and_exclusive_ones_do_not() {
        let shared = [lock(&["f"], false, true, "s")];
        let mut wanted = lock(&["f"], false, true, "new");
        assert!(conflict(&wanted, &shared, &[]).is_none());
        wanted.shared = false;
        assert!(conflict(&wanted, &shared, &[]).is_some());
        let below = [lock(&["d", "f"], false, true, "s")];
        let mut folder = lock(&["d"], true, true, "new");
        assert!(conflict(&folder, &[], &below).is_none());
        folder.shared = false;
        assert!(conflict(&folder, &[], &below).is_some());
        folder.deep = false;
        assert!(conflict(&folder, &[], &below).is_none(), "depth 0");
    }

    #[test]
    fn a_change_needs_the_tokens_of_what_covers_it() {
        let excl = [lock(&["f"], false, false, "x")];
        let (none, x, a, b): (&[String], _, _, _) =
            (&[], ["x".to_string()], ["a".to_string()], ["b".to_string()]);
        fn by(tokens: &[String]) -> Submitted<'_> {
            Submitted {
                principal: Some("ann"),
                ignore_principal: false,
                tokens,
            }
        }
        assert!(blocking(&excl, &[], &by(none)).is_some());
        assert!(blocking(&excl, &[], &by(&x)).is_none());
        let other = Submitted {
            principal: Some("bob"),
            ..by(&x)
        };
        assert!(blocking(&excl, &[], &other).is_some(), "another principal");
        let two_shared = [
            lock(&["f"], false, true, "a"),
            lock(&["f"], false, true, "b"),
        ];
        assert!(blocking(&two_shared, &[], &by(none)).is_some());
        assert!(blocking(&two_shared, &[], &by(&b)).is_none());
        let below = [lock(&["d", "f"], false, true, "a")];
        assert!(blocking(&[], &below, &by(none)).is_some());
        assert!(blocking(&[], &below, &by(&a)).is_none());
    }
}
