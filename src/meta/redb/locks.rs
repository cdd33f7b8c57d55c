//! WebDAV locks in the redb engine: the unjournaled `locks` table, keyed
//! (user id, path key, token), so the locks on one path are one key range
//! and those below it another (`meta/locks.rs`, `path_key`).
//!
//! A new lock is checked against the live locks of its user and inserted
//! in one write transaction, so two requests racing for one path cannot
//! both win; expired records met on the way are deleted in it too.
//! `Index::remove_user` drops the user's locks with the account.

use redb::ReadableTable;

use super::tx::{LockKey, WriteTables};
use super::Index;
use crate::meta::locks::{conflict, deadline_after, path_key, LockError, LockRecord};
use crate::meta::IndexError;

/// The records stored under exactly `key` (any token).
fn at_key(
    table: &impl ReadableTable<LockKey, &'static [u8]>,
    user: u64,
    key: &str,
) -> Result<Vec<LockRecord>, IndexError> {
    // Names hold no NUL: `key` + NUL is the first key after `key`'s own.
    let end = format!("{key}\0");
    collect(table.range((user, key, "")..(user, end.as_str(), ""))?)
}

/// The records strictly below the path of `key`.
fn below_key(
    table: &impl ReadableTable<LockKey, &'static [u8]>,
    user: u64,
    key: &str,
) -> Result<Vec<LockRecord>, IndexError> {
    let (start, end) = (format!("{key}/"), format!("{key}0"));
    collect(table.range((user, start.as_str(), "")..(user, end.as_str(), ""))?)
}

/// Every record of `user`.
fn of_user(
    table: &impl ReadableTable<LockKey, &'static [u8]>,
    user: u64,
) -> Result<Vec<LockRecord>, IndexError> {
    collect(table.range((user, "", "")..(user + 1, "", ""))?)
}

fn collect(rows: redb::Range<'_, LockKey, &'static [u8]>) -> Result<Vec<LockRecord>, IndexError> {
    let mut out = Vec::new();
    for row in rows {
        let (_, v) = row?;
        out.push(LockRecord::decode(v.value())?);
    }
    Ok(out)
}

/// The records covering `path`: on it, or deep on a folder above it.
fn covering(
    table: &impl ReadableTable<LockKey, &'static [u8]>,
    user: u64,
    path: &[String],
) -> Result<Vec<LockRecord>, IndexError> {
    let mut out = Vec::new();
    for depth in 0..=path.len() {
        let here = at_key(table, user, &path_key(&path[..depth]))?;
        out.extend(here.into_iter().filter(|l| l.covers(path)));
    }
    Ok(out)
}

/// The records on `path` or below it.
fn within(
    table: &impl ReadableTable<LockKey, &'static [u8]>,
    user: u64,
    path: &[String],
) -> Result<Vec<LockRecord>, IndexError> {
    let key = path_key(path);
    let mut out = at_key(table, user, &key)?;
    out.extend(below_key(table, user, &key)?);
    Ok(out)
}

fn live(locks: Vec<LockRecord>, now_ms: i64) -> Vec<LockRecord> {
    locks.into_iter().filter(|l| l.live_at(now_ms)).collect()
}

impl WriteTables<'_> {
    fn put_lock(&mut self, lock: &LockRecord) -> Result<(), IndexError> {
        let key = path_key(&lock.path);
        self.locks.insert(
            (lock.user, key.as_str(), lock.token.as_str()),
            lock.encode().as_slice(),
        )?;
        Ok(())
    }

    fn drop_lock(&mut self, lock: &LockRecord) -> Result<(), IndexError> {
        let key = path_key(&lock.path);
        self.locks
            .remove((lock.user, key.as_str(), lock.token.as_str()))?;
        Ok(())
    }

    /// Deletes the expired records among `locks`; answers the live ones.
    fn drop_expired(
        &mut self,
        locks: Vec<LockRecord>,
        now_ms: i64,
    ) -> Result<Vec<LockRecord>, IndexError> {
        let (live, expired): (Vec<_>, Vec<_>) = locks.into_iter().partition(|l| l.live_at(now_ms));
        for lock in &expired {
            self.drop_lock(lock)?;
        }
        Ok(live)
    }

    /// The live lock `token` covering `path`, expired ones deleted.
    fn held_lock(
        &mut self,
        user: u64,
        path: &[String],
        token: &str,
        now_ms: i64,
    ) -> Result<LockRecord, LockError> {
        let found = covering(&self.locks, user, path)?;
        self.drop_expired(found, now_ms)?
            .into_iter()
            .find(|l| l.token == token)
            .ok_or(LockError::NoSuchLock)
    }
}

/// Deletes every lock of `user` (the account goes).
pub(crate) fn drop_locks_of(t: &mut WriteTables<'_>, user: u64) -> Result<(), IndexError> {
    for lock in of_user(&t.locks, user)? {
        t.drop_lock(&lock)?;
    }
    Ok(())
}

impl Index {
    /// Grants `wanted` unless a live lock conflicts with it or its user
    /// holds `max_per_user` live locks already; checked and inserted in one
    /// transaction. The user's expired records are deleted on the way.
    pub fn lock_acquire(
        &self,
        wanted: &LockRecord,
        now_ms: i64,
        max_per_user: usize,
    ) -> Result<LockRecord, LockError> {
        self.write(|t| {
            let held = of_user(&t.locks, wanted.user)?;
            let held = t.drop_expired(held, now_ms)?;
            if held.len() >= max_per_user {
                return Err(LockError::TooMany(max_per_user));
            }
            let (cover, below): (Vec<_>, Vec<_>) = held
                .into_iter()
                .filter(|l| l.covers(&wanted.path) || l.is_within(&wanted.path))
                .partition(|l| l.covers(&wanted.path));
            if let Some(c) = conflict(wanted, &cover, &below) {
                return Err(LockError::Conflict(Box::new(c.clone())));
            }
            t.put_lock(wanted)?;
            Ok(wanted.clone())
        })
    }

    /// Gives the live lock `token` covering `path` a new deadline,
    /// `timeout_secs` from `now_ms`.
    pub fn lock_refresh(
        &self,
        user: u64,
        path: &[String],
        token: &str,
        timeout_secs: u64,
        now_ms: i64,
    ) -> Result<LockRecord, LockError> {
        self.write(|t| {
            let mut lock = t.held_lock(user, path, token, now_ms)?;
            lock.timeout_secs = timeout_secs;
            lock.deadline_ms = deadline_after(now_ms, timeout_secs);
            t.put_lock(&lock)?;
            Ok(lock)
        })
    }

    /// Releases the live lock `token` covering `path`.
    pub fn lock_release(
        &self,
        user: u64,
        path: &[String],
        token: &str,
        now_ms: i64,
    ) -> Result<(), LockError> {
        self.write(|t| {
            let lock = t.held_lock(user, path, token, now_ms)?;
            t.drop_lock(&lock)?;
            Ok(())
        })
    }

    /// The live locks covering `path`.
    pub fn locks_covering(
        &self,
        user: u64,
        path: &[String],
        now_ms: i64,
    ) -> Result<Vec<LockRecord>, IndexError> {
        self.read(|t| Ok(live(covering(t.locks()?, user, path)?, now_ms)))
    }

    /// The live locks on `path` or below it.
    pub fn locks_within(
        &self,
        user: u64,
        path: &[String],
        now_ms: i64,
    ) -> Result<Vec<LockRecord>, IndexError> {
        self.read(|t| Ok(live(within(t.locks()?, user, path)?, now_ms)))
    }

    /// How many live locks `user` holds.
    pub fn lock_count(&self, user: u64, now_ms: i64) -> Result<usize, IndexError> {
        self.read(|t| Ok(live(of_user(t.locks()?, user)?, now_ms).len()))
    }

    /// Deletes the locks on `path` and below it (what was there is gone
    /// or moved away); answers how many, expired ones included.
    pub fn drop_locks_within(&self, user: u64, path: &[String]) -> Result<usize, IndexError> {
        if !self.read(|t| Ok::<_, IndexError>(!within(t.locks()?, user, path)?.is_empty()))? {
            return Ok(0);
        }
        self.write(|t| {
            let found = within(&t.locks, user, path)?;
            for lock in &found {
                t.drop_lock(lock)?;
            }
            Ok(found.len())
        })
    }

    /// Deletes every lock expired at `now_ms`; answers how many.
    pub fn expire_locks(&self, now_ms: i64) -> Result<usize, IndexError> {
        let any = self.read(|t| {
            for row in t.locks()?.iter()? {
                let (_, v) = row?;
                if !LockRecord::decode(v.value())?.live_at(now_ms) {
                    return Ok::<_, IndexError>(true);
                }
            }
            Ok(false)
        })?;
        if !any {
            return Ok(0);
        }
        self.write(|t| {
            let mut expired = Vec::new();
            for row in t.locks.iter()? {
                let (_, v) = row?;
                let lock = LockRecord::decode(v.value())?;
                if !lock.live_at(now_ms) {
                    expired.push(lock);
                }
            }
            for lock in &expired {
                t.drop_lock(lock)?;
            }
            Ok(expired.len())
        })
    }
}
