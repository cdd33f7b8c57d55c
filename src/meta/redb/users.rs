//! Gateway accounts in the index.

use redb::ReadableTable;

use super::tables::KEY_FILES;
use super::tx::get_user;
use super::Index;
use crate::meta::records::{valid_user_name, NewUser, Node, NodeKind, UserRecord};
use crate::meta::{IndexError, NsError, UploadError};

impl Index {
    /// Creates a user and their empty root folder.
    pub fn add_user(&self, new: NewUser) -> Result<UserRecord, IndexError> {
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
            };
            t.put_user(&user)?;
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
        self.update_user(name, |u| u.password_hash = password_hash)
    }

    pub fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<(), IndexError> {
        self.update_user(name, |u| u.quota = quota)
    }

    fn update_user(&self, name: &str, f: impl FnOnce(&mut UserRecord)) -> Result<(), IndexError> {
        self.write(|t| {
            let mut u = get_user(&*t.users, name)?
                .ok_or_else(|| IndexError::NoSuchUser(name.to_string()))?;
            f(&mut u);
            t.put_user(&u)
        })
    }

    /// Removes a user and their whole tree; the chunks only they used become
    /// unreferenced (and are collected after the grace period).
    pub fn remove_user(&self, name: &str) -> Result<(), IndexError> {
        let now = crate::clock::unix_secs() as u64;
        self.write(|t| {
            let user = get_user(&*t.users, name)?
                .ok_or_else(|| IndexError::NoSuchUser(name.to_string()))?;
            super::sessions::drop_sessions_of(t, user.id, now as i64).map_err(storage_error)?;
            let (files, _) = t.remove_subtree(user.root, now)?;
            t.add_counter(KEY_FILES, -(files as i64))?;
            super::app_passwords::drop_app_passwords_of(t, user.id)?;
            t.totp.remove(user.id)?;
            t.users.remove(name)?;
            Ok(())
        })
    }
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
}
