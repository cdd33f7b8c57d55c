//! Account changes an administrator makes, through the admin API or the
//! command line: create, change (password, quota, role, disabled), remove,
//! and asking a job to run. Each change is recorded in the audit log by
//! the same metadata transaction that makes it, with who asked and from
//! where ([`Actor`]); a refused change records nothing. The audit detail
//! names the fields changed, never a password or its hash.
//!
//! Password hashing costs tens of milliseconds of CPU, so it runs on the
//! blocking pool, not on a request's worker.

use crate::crypto::Keys;
use crate::meta::{AuditEntry, IndexError, Meta, NewUser, UserRecord, UserUpdate};

use super::app_passwords::{self, AppPasswordError, CreatedAppPassword};

use super::password::hash_password;
use super::{generate_password, AdminError};

/// Who makes a change, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// An administrator's user name, or [`LOCAL_CLI`].
    pub name: String,
    /// The client's IP address, or `local` for the command line working
    /// on the index directly.
    pub source: String,
}

/// The actor name of the command line (with the gateway's local token or
/// on the index directly).
pub const LOCAL_CLI: &str = "local-cli";

impl Actor {
    /// The command line on this machine, working on the index directly.
    pub fn offline_cli() -> Self {
        Self {
            name: LOCAL_CLI.into(),
            source: "local".into(),
        }
    }

    fn entry(&self, action: &str, target: &str, detail: &str) -> AuditEntry {
        AuditEntry::now(&self.name, &self.source, action, target, detail)
    }
}

/// A new account as asked for.
#[derive(Debug, Clone, Default)]
pub struct NewAccount {
    pub name: String,
    /// `None`: generate one (returned once in [`Created`]).
    pub password: Option<String>,
    pub admin: bool,
    pub quota: Option<u64>,
}

/// A created account, with the password generated for it, if any.
#[derive(Debug, Clone)]
pub struct Created {
    pub user: UserRecord,
    pub generated_password: Option<String>,
}

/// A change asked for: each field set is applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountChange {
    pub password: Option<String>,
    /// `Some(None)` lifts the quota.
    pub quota: Option<Option<u64>>,
    pub admin: Option<bool>,
    pub disabled: Option<bool>,
}

impl AccountChange {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The audit detail: what changed, without the password.
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.password.is_some() {
            parts.push("password changed".to_string());
        }
        if let Some(q) = self.quota {
            parts.push(match q {
                Some(q) => format!("quota={q}"),
                None => "quota lifted".into(),
            });
        }
        if let Some(a) = self.admin {
            parts.push(format!("admin={a}"));
        }
        if let Some(d) = self.disabled {
            parts.push(if d { "disabled" } else { "enabled" }.into());
        }
        parts.join(", ")
    }
}

/// An argon2id hash of `password`, on the blocking pool.
async fn hash(password: String) -> Result<String, AdminError> {
    if password.is_empty() {
        return Err(AdminError::EmptyPassword);
    }
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AdminError::Hashing(e.to_string()))?
        .map_err(AdminError::from)
}

/// Creates an account and records it.
pub async fn create(meta: &Meta, actor: &Actor, new: NewAccount) -> Result<Created, AdminError> {
    let (password, generated) = match new.password {
        Some(p) => (p, None),
        None => {
            let p = generate_password();
            (p.clone(), Some(p))
        }
    };
    let password_hash = hash(password).await?;
    let mut detail = format!("admin={}", new.admin);
    if let Some(q) = new.quota {
        detail += &format!(", quota={q}");
    }
    if generated.is_some() {
        detail += ", password generated";
    }
    let entry = actor.entry("user.create", &new.name, &detail);
    let user = NewUser {
        name: new.name,
        password_hash,
        admin: new.admin,
        quota: new.quota,
    };
    let user = meta.add_user_audited(user, Some(&entry)).await?;
    Ok(Created {
        user,
        generated_password: generated,
    })
}

/// Changes an account and records it; answers the changed record. The
/// authenticator reads the record on every request, so the change holds
/// from the next request on.
pub async fn change(
    meta: &Meta,
    actor: &Actor,
    name: &str,
    change: AccountChange,
) -> Result<UserRecord, AdminError> {
    let detail = change.describe();
    let password_hash = match change.password {
        Some(p) => Some(hash(p).await?),
        None => None,
    };
    let update = UserUpdate {
        password_hash,
        quota: change.quota,
        admin: change.admin,
        disabled: change.disabled,
    };
    let entry = actor.entry("user.update", name, &detail);
    Ok(meta.update_user(name, &update, Some(&entry)).await?)
}

/// Removes an account with everything it holds (its tree, its chunked
/// uploads) in one transaction, and records it.
pub async fn remove(meta: &Meta, actor: &Actor, name: &str) -> Result<(), AdminError> {
    let entry = actor.entry("user.remove", name, "the account and all its files");
    Ok(meta.remove_user_audited(name, Some(&entry)).await?)
}

/// Creates an app password labelled `label` for `user`, and records it
/// (the label and id, never the secret).
pub async fn create_app_password(
    meta: &Meta,
    keys: &Keys,
    actor: &Actor,
    user: &str,
    label: &str,
) -> Result<CreatedAppPassword, AppPasswordError> {
    let created = app_passwords::create(meta, keys, user, label).await?;
    let detail = format!("id {} labelled {:?}", created.info.id, created.info.label);
    meta.append_audit(&actor.entry("app_password.create", user, &detail))
        .await?;
    Ok(created)
}

/// Revokes app password `id` of `user`, and records it.
pub async fn revoke_app_password(
    meta: &Meta,
    actor: &Actor,
    user: &str,
    id: u64,
) -> Result<(), AppPasswordError> {
    app_passwords::revoke(meta, user, id).await?;
    let entry = actor.entry("app_password.revoke", user, &format!("id {id}"));
    meta.append_audit(&entry).await?;
    Ok(())
}

/// Turns off `user`'s two-factor login (a lost authenticator), and
/// records it. `false` when they had none (nothing is recorded).
pub async fn reset_two_factor(
    meta: &Meta,
    actor: &Actor,
    user: &str,
) -> Result<bool, super::totp::TotpError> {
    let removed = super::totp::remove(meta, user).await?;
    if removed {
        let entry = actor.entry("totp.reset", user, "two-factor login turned off");
        meta.append_audit(&entry).await?;
    }
    Ok(removed)
}

/// Records that `actor` asked job `job` to run now.
pub async fn record_job_run(meta: &Meta, actor: &Actor, job: &str) -> Result<(), IndexError> {
    let entry = actor.entry("job.run", job, "run requested");
    meta.append_audit(&entry).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn changes_are_audited_without_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open_redb(&dir.path().join("i.redb"), Default::default()).unwrap();
        let actor = Actor {
            name: "root".into(),
            source: "192.0.2.1".into(),
        };
        let new = NewAccount {
            name: "bob".into(),
            quota: Some(10),
            ..NewAccount::default()
        };
        let created = create(&meta, &actor, new).await.unwrap();
        let pw = created.generated_password.unwrap();
        assert_eq!(pw.len(), 24);
        let secret = "correct horse".to_string();
        let change_pw = AccountChange {
            password: Some(secret.clone()),
            quota: Some(None),
            disabled: Some(true),
            ..AccountChange::default()
        };
        let u = change(&meta, &actor, "bob", change_pw).await.unwrap();
        assert!(u.disabled && u.quota.is_none());
        assert!(crate::accounts::password::verify_password(
            &u.password_hash,
            &secret
        ));
        let empty = AccountChange {
            password: Some(String::new()),
            ..AccountChange::default()
        };
        assert!(matches!(
            change(&meta, &actor, "bob", empty).await,
            Err(AdminError::EmptyPassword)
        ));
        record_job_run(&meta, &actor, "gc").await.unwrap();
        remove(&meta, &actor, "bob").await.unwrap();
        let log = meta.audit_log(10).await.unwrap();
        let actions: Vec<&str> = log.iter().map(|r| r.entry.action.as_str()).collect();
        assert_eq!(
            actions,
            ["user.remove", "job.run", "user.update", "user.create"]
        );
        for r in &log {
            assert_eq!(
                (r.entry.actor.as_str(), r.entry.source.as_str()),
                ("root", "192.0.2.1")
            );
            assert!(!r.entry.detail.contains(&secret) && !r.entry.detail.contains(&pw));
        }
        assert_eq!(
            log[2].entry.detail,
            "password changed, quota lifted, disabled"
        );
        assert_eq!(
            log[3].entry.detail,
            "admin=false, quota=10, password generated"
        );
    }
}
