//! App passwords in the redb engine: the journaled `app_passwords` table
//! (user id, id) → record, and the unjournaled `app_password_seen` table
//! of last logins. A user's rows are one key range, so listing them and
//! dropping them with the user are range walks.

use redb::{ReadableTable, Table};

use super::journal::Journaled;
use super::tx::{get_user, WriteTables};
use super::Index;
use crate::meta::app_passwords::{
    valid_label, AppPasswordInfo, AppPasswordRecord, AppPasswordVerifier, NewAppPassword,
    SCHEME_HMAC_SHA256,
};
use crate::meta::IndexError;

/// Seconds between two recordings of one app password's last use.
pub(crate) const SEEN_EVERY_SECS: u64 = 60;

type Rows = Vec<(u64, AppPasswordRecord)>;

/// The app passwords of `user`, by id.
fn rows_of(
    table: &impl ReadableTable<(u64, u64), &'static [u8]>,
    user: u64,
) -> Result<Rows, IndexError> {
    let mut out = Vec::new();
    for row in table.range((user, 0)..=(user, u64::MAX))? {
        let (k, v) = row?;
        out.push((k.value().1, AppPasswordRecord::decode(v.value())?));
    }
    Ok(out)
}

fn seen(
    table: &impl ReadableTable<(u64, u64), u64>,
    user: u64,
    id: u64,
) -> Result<Option<u64>, IndexError> {
    Ok(table.get((user, id))?.map(|v| v.value()))
}

/// Drops every app password of `user` (and their last uses), inside the
/// caller's transaction: removing a user removes their devices' access in
/// the same commit.
pub(crate) fn drop_app_passwords_of(t: &mut WriteTables<'_>, user: u64) -> Result<(), IndexError> {
    let ids: Vec<u64> = rows_of(&*t.app_passwords, user)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for id in ids {
        remove_one(&mut t.app_passwords, &mut t.app_password_seen, user, id)?;
    }
    Ok(())
}

fn remove_one(
    records: &mut Journaled<'_, (u64, u64), &'static [u8]>,
    seen: &mut Table<'_, (u64, u64), u64>,
    user: u64,
    id: u64,
) -> Result<bool, IndexError> {
    let existed = records.remove((user, id))?.is_some();
    seen.remove((user, id))?;
    Ok(existed)
}

impl Index {
    /// Adds an app password to the user named `user`, refused past `max`.
    pub fn add_app_password(
        &self,
        user: &str,
        new: &NewAppPassword,
        max: usize,
    ) -> Result<AppPasswordInfo, IndexError> {
        if !valid_label(&new.label) {
            return Err(IndexError::BadAppPasswordLabel);
        }
        self.write(|t| {
            let u = get_user(&*t.users, user)?
                .ok_or_else(|| IndexError::NoSuchUser(user.to_string()))?;
            if rows_of(&*t.app_passwords, u.id)?.len() >= max {
                return Err(IndexError::TooManyAppPasswords {
                    user: user.to_string(),
                    max,
                });
            }
            let id = t.next_id()?;
            let record = AppPasswordRecord {
                label: new.label.clone(),
                scheme: SCHEME_HMAC_SHA256,
                verifier: new.verifier,
                created: crate::clock::unix_secs(),
            };
            t.app_passwords
                .insert((u.id, id), record.encode().as_slice())?;
            Ok(record.info(id, None))
        })
    }

    /// The app passwords of the user named `user`, by id, without their
    /// verifiers.
    pub fn app_passwords(&self, user: &str) -> Result<Vec<AppPasswordInfo>, IndexError> {
        self.read(|t| {
            let u = get_user(t.users()?, user)?
                .ok_or_else(|| IndexError::NoSuchUser(user.to_string()))?;
            let seen_table = t.app_password_seen()?;
            rows_of(t.app_passwords()?, u.id)?
                .into_iter()
                .map(|(id, rec)| Ok(rec.info(id, seen(seen_table, u.id, id)?)))
                .collect()
        })
    }

    /// The verifiers of user id `user`'s app passwords (for logins).
    pub fn app_password_verifiers(
        &self,
        user: u64,
    ) -> Result<Vec<AppPasswordVerifier>, IndexError> {
        self.read(|t| {
            let seen_table = t.app_password_seen()?;
            rows_of(t.app_passwords()?, user)?
                .into_iter()
                .filter(|(_, rec)| rec.scheme == SCHEME_HMAC_SHA256)
                .map(|(id, rec)| {
                    Ok(AppPasswordVerifier {
                        id,
                        verifier: rec.verifier,
                        last_used: seen(seen_table, user, id)?,
                    })
                })
                .collect()
        })
    }

    /// Revokes app password `id` of the user named `user`.
    pub fn revoke_app_password(&self, user: &str, id: u64) -> Result<(), IndexError> {
        self.write(|t| {
            let u = get_user(&*t.users, user)?
                .ok_or_else(|| IndexError::NoSuchUser(user.to_string()))?;
            if remove_one(&mut t.app_passwords, &mut t.app_password_seen, u.id, id)? {
                Ok(())
            } else {
                Err(IndexError::NoSuchAppPassword {
                    user: user.to_string(),
                    id,
                })
            }
        })
    }

    /// Records a login with app password `id` of user id `user` at `now`
    /// (Unix seconds), unless one was recorded less than a minute before
    /// or the app password is gone. Touches only the unjournaled table.
    pub fn app_password_used(&self, user: u64, id: u64, now: u64) -> Result<(), IndexError> {
        self.write(|t| {
            if t.app_passwords.get((user, id))?.is_none() {
                return Ok(());
            }
            let last = seen(&t.app_password_seen, user, id)?;
            if last.is_none_or(|l| now >= l.saturating_add(SEEN_EVERY_SECS)) {
                t.app_password_seen.insert((user, id), now)?;
            }
            Ok(())
        })
    }
}
