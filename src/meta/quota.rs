//! The one quota policy. A user *holds* their files' logical bytes and
//! their dead properties (both in `UserRecord::used`) plus the bytes of
//! their unfinished chunked-upload sessions. A write that replaces
//! `replaced` held bytes by `new` ones is allowed when it does not grow
//! (shrinking is always allowed, even over quota) or when the user's
//! holdings after it stay within the quota. Every write path asks here:
//! the announced length and the running byte count of a PUT
//! (`webdav/file.rs`), a chunked part (`owncloud/uploads.rs`), the
//! commit of a file, the recording of a part and the setting of dead
//! properties (inside their transactions).

use crate::meta::tree::NsError;

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
