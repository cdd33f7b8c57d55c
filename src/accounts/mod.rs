//! Accounts: creating users, their passwords and app passwords, removing a
//! user with everything they hold, the first administrator; and the usage
//! report. Changes an administrator makes, each recorded in the audit log:
//! [`manage`].

pub mod app_passwords;
pub mod manage;
pub mod password;
pub mod totp;

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::meta::sessions::UploadError;
use crate::meta::{IndexError, Meta, NewUser, Owner, Stats, UserRecord};
use password::{hash_password, PasswordError};

/// Errors of admin commands.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("invalid size {0:?}: use a number with an optional unit such as 500M, 10GiB or 2T")]
    BadSize(String),
    #[error("the password must not be empty")]
    EmptyPassword,
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error("hashing the password stopped: {0}")]
    Hashing(String),
}

/// A random password for generated accounts.
pub fn generate_password() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// Parses sizes like `1048576`, `500M`, `10GiB`, `2T` (binary units).
pub fn parse_size(text: &str) -> Result<u64, AdminError> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| AdminError::BadSize(text.into()))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(AdminError::BadSize(text.into())),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| AdminError::BadSize(text.into()))
}

/// Creates a user with the given password.
pub async fn add_user(
    meta: &Meta,
    name: &str,
    password: &str,
    admin: bool,
    quota: Option<u64>,
) -> Result<UserRecord, AdminError> {
    if password.is_empty() {
        return Err(AdminError::EmptyPassword);
    }
    let password_hash = hash_password(password)?;
    let new = NewUser {
        name: name.to_string(),
        password_hash,
        admin,
        quota,
    };
    Ok(meta.add_user(new).await?)
}

pub async fn set_password(meta: &Meta, name: &str, password: &str) -> Result<(), AdminError> {
    if password.is_empty() {
        return Err(AdminError::EmptyPassword);
    }
    let hash = hash_password(password)?;
    Ok(meta.set_password(name, hash).await?)
}

/// Removes a user: first their unfinished chunked uploads (releasing the
/// chunks those hold), then their whole tree and the account.
pub async fn remove_user(meta: &Meta, name: &str) -> Result<(), AdminError> {
    let user = meta
        .user(name)
        .await?
        .ok_or_else(|| IndexError::NoSuchUser(name.to_string()))?;
    let owner = Owner::from(&user);
    for (transfer, _) in meta.sessions(&owner).await? {
        meta.abandon_session(&owner, &transfer).await?;
    }
    Ok(meta.remove_user(name).await?)
}

/// On a fresh index, creates `admin` with a random password and returns it.
pub async fn ensure_first_admin(meta: &Meta) -> Result<Option<String>, AdminError> {
    if !meta.users().await?.is_empty() {
        return Ok(None);
    }
    let password = generate_password();
    add_user(meta, "admin", &password, true, None).await?;
    Ok(Some(password))
}

/// Sizes for people: `1.50 GiB`.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// The stats report, for people.
pub fn render_stats(s: &Stats) -> String {
    let ratio = if s.stored_bytes > 0 {
        format!("{:.2}", s.logical_bytes as f64 / s.stored_bytes as f64)
    } else {
        "-".into()
    };
    format!(
        "users          {}\nfiles          {}\nlogical bytes  {} ({})\nstored bytes   {} ({})\nunique chunks  {}\ndedup ratio    {}\n\
         pending        {} objects, {} bytes ({}) of uploads not committed\n",
        s.users,
        s.files,
        s.logical_bytes,
        human(s.logical_bytes),
        s.stored_bytes,
        human(s.stored_bytes),
        s.chunks,
        ratio,
        s.pending_objects,
        s.pending_bytes,
        human(s.pending_bytes)
    )
}

/// The stats report as JSON (keys: users, files, logical_bytes,
/// stored_bytes, chunks, dedup_ratio, bytes_saved, pending_objects,
/// pending_bytes).
pub fn stats_json(s: &Stats) -> serde_json::Value {
    let ratio = if s.stored_bytes > 0 {
        s.logical_bytes as f64 / s.stored_bytes as f64
    } else {
        0.0
    };
    serde_json::json!({
        "users": s.users,
        "files": s.files,
        "logical_bytes": s.logical_bytes,
        "stored_bytes": s.stored_bytes,
        "chunks": s.chunks,
        "dedup_ratio": ratio,
        "bytes_saved": s.logical_bytes.saturating_sub(s.stored_bytes),
        "pending_objects": s.pending_objects,
        "pending_bytes": s.pending_bytes,
    })
}

/// What an administrator sees of an account (never its password hash).
pub fn user_json(u: &UserRecord) -> serde_json::Value {
    serde_json::json!({
        "name": u.name,
        "admin": u.admin,
        "disabled": u.disabled,
        "quota": u.quota,
        "used": u.used,
        "created": u.created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123").unwrap(), 123);
        assert_eq!(parse_size("10GiB").unwrap(), 10 << 30);
        assert_eq!(parse_size("500M").unwrap(), 500 << 20);
        assert_eq!(parse_size("2t").unwrap(), 2 << 40);
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn stats_show_pending_objects() {
        let s = Stats {
            pending_objects: 3,
            pending_bytes: 3 << 20,
            ..Default::default()
        };
        assert!(render_stats(&s).contains("pending        3 objects, 3145728 bytes (3.00 MiB)"));
        let json = stats_json(&s);
        assert_eq!(json["pending_objects"], 3);
        assert_eq!(json["pending_bytes"], 3 << 20);
    }

    #[tokio::test]
    async fn first_admin_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open_redb(&dir.path().join("i.redb"), Default::default()).unwrap();
        let pw = ensure_first_admin(&meta).await.unwrap().unwrap();
        assert_eq!(pw.len(), 24);
        assert!(ensure_first_admin(&meta).await.unwrap().is_none());
        assert!(meta.user("admin").await.unwrap().unwrap().admin);
    }
}
