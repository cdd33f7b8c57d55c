//! Gateway accounts in the index.

use redb::{ReadableTable, ReadableTableMetadata};

use super::tables::KEY_FILES;
use super::tx::{get_user, WriteTables};
use super::Index;
use crate::meta::audit::{AuditEntry, AuditRecord, MAX_AUDIT_ENTRIES};
use crate::meta::records::{valid_user_name, NewUser, Node, NodeKind, UserRecord, UserUpdate};
use crate::meta::{IndexError, NsError, UploadError};

impl Index {
    /// Creates a user and their empty root folder.
    pub fn add_user(&self, new: NewUser) -> Result<UserRecord, IndexError> {
        self.add_user_audited(new, None)
    }

    /// Creates a user and their empty root folder, and records `audit` in
    /// the same transaction.
    pub fn add_user_audited(
        &self,
        new: NewUser,
        audit: Option<&AuditEntry>,
    ) -> Result<UserRecord, IndexError> {
        if !valid_user_name(&new.name) {
            return Err(IndexError::BadUserName(new.name));
        }
        self.write(|t| {
            if get_user(&*t.users, &new.name)?.is_some() {
                return Err(IndexError::UserExists(new.name.clone()));
            }
            let id = t.next_id()?;
            let root = t.next_id()?;
            let version = t.next_change()?;
            let now = crate::clock::unix_secs();
            t.put_node(&Node {
                id: root,
                parent: 0,
                owner: id,
                kind: NodeKind::Dir,
                size: 0,
                mtime: now * 1_000_000_000,
                created: now,
                version,
                digest: None,
                checksums: None,
            })?;
            let user = UserRecord {
                id,
                name: new.name.clone(),
                password_hash: new.password_hash.clone(),
                admin: new.admin,
                quota: new.quota,
                used: 0,
                root,
                created: now,
                disabled: false,
            };
            t.put_user(&user)?;
            if let Some(entry) = audit {
                append_audit(t, entry)?;
            }
            Ok(user)
        })
    }

    pub fn user(&self, name: &str) -> Result<Option<UserRecord>, IndexError> {
        self.read(|t| get_user(t.users()?, name))
    }

    pub fn users(&self) -> Result<Vec<UserRecord>, IndexError> {
        self.read(|t| {
            let mut out = Vec::new();
            for row in t.users()?.iter()? {
                let (_, v) = row?;
                out.push(UserRecord::decode(v.value())?);
            }
            Ok(out)
        })
    }

    pub fn set_password(&self, name: &str, password_hash: String) -> Result<(), IndexError> {
        let update = UserUpdate {
            password_hash: Some(password_hash),
            ..UserUpdate::default()
        };
        self.update_user(name, &update, None).map(drop)
    }

    pub fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<(), IndexError> {
        let update = UserUpdate {
            quota: Some(quota),
            ..UserUpdate::default()
        };
        self.update_user(name, &update, None).map(drop)
    }

    /// Applies `update` to a user and records `audit`, in one transaction;
    /// answers the changed record.
    pub fn update_user(
        &self,
        name: &str,
        update: &UserUpdate,
        audit: Option<&AuditEntry>,
    ) -> Result<UserRecord, IndexError> {
        self.write(|t| {
            let mut u = get_user(&*t.users, name)?
                .ok_or_else(|| IndexError::NoSuchUser(name.to_string()))?;
            update.apply(&mut u);
            t.put_user(&u)?;
            if let Some(entry) = audit {
                append_audit(t, entry)?;
            }
            Ok(u)
        })
    }

    /// Removes a user and their whole tree; the chunks only they used become
    /// unreferenced (and are collected after the grace period).
    pub fn remove_user(&self, name: &str) -> Result<(), IndexError> {
        self.remove_user_audited(name, None)
    }

    /// [`Self::remove_user`], recording `audit` in the same transaction.
    pub fn remove_user_audited(
        &self,
        name: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<(), IndexError> {
        let now = crate::clock::unix_secs() as u64;
        self.write(|t| {
            let user = get_user(&*t.users, name)?
                .ok_or_else(|| IndexError::NoSuchUser(name.to_string()))?;
            super::sessions::drop_sessions_of(t, user.id, now as i64).map_err(storage_error)?;
            let (files, _) = t.remove_subtree(user.root, now)?;
            t.add_counter(KEY_FILES, -(files as i64))?;
            super::app_passwords::drop_app_passwords_of(t, user.id)?;
            t.totp.remove(user.id)?;
            super::locks::drop_locks_of(t, user.id)?;
            t.users.remove(name)?;
            if let Some(entry) = audit {
                append_audit(t, entry)?;
            }
            Ok(())
        })
    }

    /// Records a change made outside the user records (a job run asked
    /// for); answers the entry's sequence number.
    pub fn append_audit(&self, entry: &AuditEntry) -> Result<u64, IndexError> {
        self.write(|t| append_audit(t, entry))
    }

    /// The newest `limit` audit entries, newest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>, IndexError> {
        self.read(|t| {
            let mut out = Vec::new();
            for row in t.audit()?.iter()?.rev().take(limit) {
                let (k, v) = row?;
                out.push(AuditRecord {
                    seq: k.value(),
                    entry: AuditEntry::decode(v.value())?,
                });
            }
            Ok(out)
        })
    }
}

/// Appends `entry` to the audit log and trims the oldest entries beyond
/// [`MAX_AUDIT_ENTRIES`], in the caller's transaction.
fn append_audit(t: &mut WriteTables<'_>, entry: &AuditEntry) -> Result<u64, IndexError> {
    append_audit_keeping(t, entry, MAX_AUDIT_ENTRIES)
}

fn append_audit_keeping(
    t: &mut WriteTables<'_>,
    entry: &AuditEntry,
    keep: u64,
) -> Result<u64, IndexError> {
    let seq = match t.audit.last()? {
        Some((k, _)) => k.value() + 1,
        None => 1,
    };
    t.audit.insert(seq, entry.encode().as_slice())?;
    while t.audit.len()? > keep {
        let oldest = match t.audit.first()? {
            Some((k, _)) => k.value(),
            None => break,
        };
        t.audit.remove(oldest)?;
    }
    Ok(seq)
}

/// Dropping sessions fails only as the index does.
fn storage_error(e: UploadError) -> IndexError {
    match e {
        UploadError::Namespace(NsError::Index(e)) => e,
        other => IndexError::Storage(Box::new(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_user(name: &str) -> NewUser {
        NewUser {
            name: name.into(),
            password_hash: "x".into(),
            admin: false,
            quota: None,
        }
    }

    #[test]
    fn add_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.redb")).unwrap();
        let a = index.add_user(new_user("alice")).unwrap();
        index.add_user(new_user("bob")).unwrap();
        assert!(matches!(
            index.add_user(new_user("alice")),
            Err(IndexError::UserExists(_))
        ));
        assert!(matches!(
            index.add_user(new_user("../x")),
            Err(IndexError::BadUserName(_))
        ));
        assert_eq!(index.users().unwrap().len(), 2);
        assert_eq!(index.user("alice").unwrap().unwrap().root, a.root);
        index.remove_user("alice").unwrap();
        assert!(index.user("alice").unwrap().is_none());
        assert!(matches!(
            index.remove_user("alice"),
            Err(IndexError::NoSuchUser(_))
        ));
    }

    #[test]
    fn the_audit_log_keeps_the_newest_entries() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.redb")).unwrap();
        for n in 0..7 {
            let e = AuditEntry::now("admin", "local", "test", &format!("t{n}"), "");
            index.write(|t| append_audit_keeping(t, &e, 5)).unwrap();
        }
        let log = index.audit_log(100).unwrap();
        let seqs: Vec<u64> = log.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [7, 6, 5, 4, 3], "newest first, the oldest trimmed");
        assert_eq!(log[0].entry.target, "t6");
        assert_eq!(index.audit_log(2).unwrap().len(), 2);
    }

    #[test]
    fn audited_changes_write_their_entry_in_the_same_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.redb")).unwrap();
        let e = AuditEntry::now("admin", "10.0.0.1", "user.create", "bob", "");
        index.add_user_audited(new_user("bob"), Some(&e)).unwrap();
        // A refused change records nothing.
        assert!(index.add_user_audited(new_user("bob"), Some(&e)).is_err());
        let update = UserUpdate {
            disabled: Some(true),
            quota: Some(Some(5)),
            ..UserUpdate::default()
        };
        let u = index.update_user("bob", &update, Some(&e)).unwrap();
        assert!(u.disabled && u.quota == Some(5));
        assert!(index.update_user("nobody", &update, Some(&e)).is_err());
        index.remove_user_audited("bob", Some(&e)).unwrap();
        assert_eq!(index.audit_log(10).unwrap().len(), 3);
    }
}
