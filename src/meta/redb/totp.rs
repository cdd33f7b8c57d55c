//! TOTP enrolments in the redb engine: the journaled `totp` table, user
//! id → record. `Index::remove_user` drops a user's row in its own
//! transaction.

use redb::ReadableTable;

use super::tx::get_user;
use super::Index;
use crate::meta::totp::{TotpRecord, TOTP_SECRET_BYTES};
use crate::meta::IndexError;

impl Index {
    /// Enrols the user named `user` with `secret`, the code of `step`
    /// having confirmed it (so that code cannot be used again); replaces
    /// an earlier enrolment.
    pub fn set_totp(
        &self,
        user: &str,
        secret: &[u8; TOTP_SECRET_BYTES],
        step: u64,
    ) -> Result<(), IndexError> {
        self.write(|t| {
            let u = get_user(&*t.users, user)?
                .ok_or_else(|| IndexError::NoSuchUser(user.to_string()))?;
            let record = TotpRecord {
                secret: *secret,
                last_step: step,
                enrolled: crate::clock::unix_secs(),
            };
            t.totp.insert(u.id, record.encode().as_slice())?;
            Ok(())
        })
    }

    /// Removes the enrolment of the user named `user`; whether there was
    /// one.
    pub fn clear_totp(&self, user: &str) -> Result<bool, IndexError> {
        self.write(|t| {
            let u = get_user(&*t.users, user)?
                .ok_or_else(|| IndexError::NoSuchUser(user.to_string()))?;
            Ok(t.totp.remove(u.id)?.is_some())
        })
    }

    /// The enrolment of user id `user`, if any.
    pub fn totp(&self, user: u64) -> Result<Option<TotpRecord>, IndexError> {
        self.read(|t| match t.totp()?.get(user)? {
            Some(v) => Ok(Some(TotpRecord::decode(v.value())?)),
            None => Ok(None),
        })
    }

    /// Accepts a code of time step `step` for user id `user` when `step`
    /// is later than the last one accepted, recording it; false otherwise
    /// (a replay, or no enrolment). Checked and recorded in one
    /// transaction, so two logins racing with one code cannot both pass.
    pub fn accept_totp_step(&self, user: u64, step: u64) -> Result<bool, IndexError> {
        self.write(|t| {
            let Some(mut record) = t
                .totp
                .get(user)?
                .map(|v| TotpRecord::decode(v.value()))
                .transpose()?
            else {
                return Ok(false);
            };
            if step <= record.last_step {
                return Ok(false);
            }
            record.last_step = step;
            t.totp.insert(user, record.encode().as_slice())?;
            Ok(true)
        })
    }
}
