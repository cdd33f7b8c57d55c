//! The one quota policy. A user *holds* their files' logical bytes and
//! their dead properties (both in `UserRecord::used`) plus the bytes of
//! their unfinished chunked-upload sessions. A write that replaces
//! `replaced` held bytes by `new` ones is allowed when it does not grow
//! (shrinking is always allowed, even over quota) or when the user's
//! holdings after it stay within the quota. Every write path asks here:
//! the announced length and the running byte count of a PUT
//! (`dav/file.rs`), a chunked part (`front/owncloud/uploads.rs`), the
//! commit of a file, the recording of a part and the setting of dead
//! properties (inside their transactions).

use redb::ReadableTable;

use super::sessions::bytes_in_sessions;
use super::tree::{NsError, Owner};
use crate::meta::redb::tx::{get_user, WriteTables};

/// How many bytes of a body refused over quota are still read (and
/// dropped) before the refusal is answered: a client still sending its body
/// when the connection closes sees a broken connection instead of the 507.
/// Past this the request fails at once.
pub const REFUSED_BODY_DRAIN: u64 = 64 << 20;

/// What a user holds against their quota, read in one snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holdings {
    /// Files' logical bytes and dead properties.
    pub used: u64,
    /// Bytes held by unfinished chunked-upload sessions.
    pub in_sessions: u64,
    pub quota: Option<u64>,
}

impl Holdings {
    /// Reads a user's holdings; `except_session` is left out of the
    /// session bytes (the session being assembled into a file).
    pub(crate) fn read(
        users: &impl ReadableTable<&'static str, &'static [u8]>,
        uploads: &impl ReadableTable<(u64, &'static str), &'static [u8]>,
        owner: &Owner,
        except_session: Option<&str>,
    ) -> Result<Self, NsError> {
        let user = get_user(users, &owner.name)?.ok_or(NsError::NoUser)?;
        let in_sessions = match user.quota {
            // Without a quota nothing needs the sessions' bytes.
            None => 0,
            Some(_) => bytes_in_sessions(uploads, owner.id, except_session)?,
        };
        Ok(Self {
            used: user.used,
            in_sessions,
            quota: user.quota,
        })
    }

    fn held(&self) -> u64 {
        self.used.saturating_add(self.in_sessions)
    }

    /// The most bytes a write replacing `replaced` held bytes may bring,
    /// or `None` without a quota. A stream stops at the first byte past it.
    pub fn limit(&self, replaced: u64) -> Option<u64> {
        self.quota.map(|q| {
            let room = q.saturating_sub(self.held().saturating_sub(replaced));
            room.max(replaced)
        })
    }

    /// Refuses `new` bytes replacing `replaced` held ones when that goes
    /// over the quota.
    pub fn check(&self, replaced: u64, new: u64) -> Result<(), NsError> {
        match self.limit(replaced) {
            Some(limit) if new > limit => Err(NsError::QuotaExceeded {
                needed: new,
                available: limit,
            }),
            _ => Ok(()),
        }
    }
}

/// Replaces `old` bytes of the owner's `used` by `new` ones inside a write
/// transaction, refusing to go over the quota (see [`Holdings::check`]).
pub(crate) fn charge(
    t: &mut WriteTables<'_>,
    owner: &Owner,
    old: u64,
    new: u64,
    except_session: Option<&str>,
) -> Result<(), NsError> {
    let mut user = get_user(&t.users, &owner.name)?.ok_or(NsError::NoUser)?;
    if new > old {
        Holdings::read(&t.users, &t.uploads, owner, except_session)?.check(old, new)?;
    }
    user.used = user.used.saturating_sub(old).saturating_add(new);
    t.put_user(&user)?;
    Ok(())
}

/// Gives `bytes` back to the owner's `used` (a deletion).
pub(crate) fn credit(t: &mut WriteTables<'_>, owner: &Owner, bytes: u64) -> Result<(), NsError> {
    charge(t, owner, bytes, 0, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_needs_room_shrinking_never_refused() {
        let h = Holdings {
            used: 60,
            in_sessions: 30,
            quota: Some(100),
        };
        assert_eq!(h.limit(0), Some(10));
        assert!(h.check(0, 10).is_ok());
        assert!(matches!(
            h.check(0, 11),
            Err(NsError::QuotaExceeded {
                needed: 11,
                available: 10
            })
        ));
        // Replacing a 50-byte file: its bytes are free again.
        assert_eq!(h.limit(50), Some(60));
        // Over quota already (it was lowered): a replacement may keep its size.
        let over = Holdings {
            used: 150,
            in_sessions: 0,
            quota: Some(100),
        };
        assert_eq!(over.limit(40), Some(40));
        assert!(over.check(40, 40).is_ok());
        assert!(over.check(40, 41).is_err());
        let unlimited = Holdings { quota: None, ..h };
        assert_eq!(unlimited.limit(0), None);
        assert!(unlimited.check(0, u64::MAX).is_ok());
    }
}
