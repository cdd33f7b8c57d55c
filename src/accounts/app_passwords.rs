//! App passwords: one named password per device or sync client, shown once
//! when created, each revocable on its own. Owns the use cases (create,
//! list, revoke), the shape of the secret, and the check a login makes
//! against a user's app passwords ([`matching`]); the HTTP authenticator
//! calls it, the CLI and the admin API call the rest.
//!
//! # Why a keyed fast hash, not argon2id
//!
//! An account password is chosen by a person, so it may be guessable, and
//! a slow hash (argon2id) is what makes every guess against a stolen index
//! expensive. An app password is generated here: [`SECRET_LEN`] characters
//! drawn uniformly from 62 by the operating system's generator, about 190
//! bits. Nobody can search that space, whatever one guess costs, so a slow
//! hash would buy nothing and would cost one argon2 run per app password
//! on every uncached login (up to 64 per user). Instead the index stores a
//! verifier: HMAC-SHA256 under a key derived from the master key
//! (`crypto::app_password_tag`) of (user id, secret). A login computes one
//! MAC (about a microsecond) and compares it in constant time with the
//! user's verifiers, so checking N app passwords costs one MAC and N
//! 32-byte comparisons. The key adds a second wall: an index copied
//! without the master key gives nothing to test guesses against; with the
//! key, guessing still faces 190 bits. The verifier is bound to the user
//! id, so the same secret can never open another account.
//!
//! A wrong password costs an attacker exactly what it cost before: the
//! authenticator checks app passwords after the throttle's delay, and a
//! password no app password matches goes on to the argon2id check of the
//! account password, whose failure the throttle counts.

use rand::distributions::Alphanumeric;
use rand::Rng;

use crate::crypto::{app_password_tag, tags_equal, Keys};
use crate::meta::app_passwords::{valid_label, MAX_APP_PASSWORDS};
use crate::meta::{AppPasswordInfo, AppPasswordVerifier, IndexError, Meta, NewAppPassword};

/// Characters of a generated app password (62 symbols each, ~5.95 bits).
pub const SECRET_LEN: usize = 32;

/// Errors of the app-password use cases.
#[derive(Debug, thiserror::Error)]
pub enum AppPasswordError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("invalid label {0:?}: use 1-100 bytes, not only spaces, without control characters")]
    BadLabel(String),
}

/// A new app password: the secret is in no record and is shown only now.
pub struct CreatedAppPassword {
    pub info: AppPasswordInfo,
    pub secret: String,
}

impl std::fmt::Debug for CreatedAppPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedAppPassword")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn generate_secret() -> String {
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(SECRET_LEN)
        .map(char::from)
        .collect()
}

/// Creates an app password labelled `label` for the user named `user`.
pub async fn create(
    meta: &Meta,
    keys: &Keys,
    user: &str,
    label: &str,
) -> Result<CreatedAppPassword, AppPasswordError> {
    if !valid_label(label) {
        return Err(AppPasswordError::BadLabel(label.to_string()));
    }
    let record = meta
        .user(user)
        .await?
        .ok_or_else(|| IndexError::NoSuchUser(user.to_string()))?;
    let secret = generate_secret();
    let new = NewAppPassword {
        label: label.to_string(),
        verifier: app_password_tag(keys, record.id, &secret),
    };
    // The metadata checks the count in the transaction that adds it, and
    // that the user (by name) is still there.
    let info = meta.add_app_password(user, &new, MAX_APP_PASSWORDS).await?;
    Ok(CreatedAppPassword { info, secret })
}

/// The app passwords of the user named `user` (never a verifier).
pub async fn list(meta: &Meta, user: &str) -> Result<Vec<AppPasswordInfo>, AppPasswordError> {
    Ok(meta.app_passwords(user).await?)
}

/// Revokes app password `id` of the user named `user`: the next login
/// with it fails.
pub async fn revoke(meta: &Meta, user: &str, id: u64) -> Result<(), AppPasswordError> {
    Ok(meta.revoke_app_password(user, id).await?)
}

/// Which of `verifiers` (of user id `user`) `password` is, if any: one
/// MAC, then a constant-time comparison with each.
pub fn matching<'v>(
    keys: &Keys,
    user: u64,
    password: &str,
    verifiers: &'v [AppPasswordVerifier],
) -> Option<&'v AppPasswordVerifier> {
    let tag = app_password_tag(keys, user, password);
    // Compare with every verifier, so the time does not tell which matched.
    let mut found = None;
    for v in verifiers {
        if tags_equal(&tag, &v.verifier) && found.is_none() {
            found = Some(v);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use crate::meta::{NewUser, PropLimits};

    async fn setup() -> (tempfile::TempDir, Meta, Keys) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open_redb(&dir.path().join("i.redb"), PropLimits::default()).unwrap();
        for name in ["ann", "bob"] {
            meta.add_user(NewUser {
                name: name.into(),
                password_hash: "x".into(),
                admin: false,
                quota: None,
            })
            .await
            .unwrap();
        }
        (dir, meta, MasterKey::from_bytes([3; 32]).derive())
    }

    #[tokio::test]
    async fn created_secrets_match_only_their_own_user_and_not_once_revoked() {
        let (_d, meta, keys) = setup().await;
        let phone = create(&meta, &keys, "ann", "phone").await.unwrap();
        let laptop = create(&meta, &keys, "ann", "laptop").await.unwrap();
        assert_eq!(phone.secret.len(), SECRET_LEN);
        assert!(phone.secret.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(phone.secret, laptop.secret);
        assert!(!format!("{phone:?}").contains(&phone.secret));

        let ann = meta.user("ann").await.unwrap().unwrap();
        let bob = meta.user("bob").await.unwrap().unwrap();
        let verifiers = meta.app_password_verifiers(ann.id).await.unwrap();
        assert_eq!(verifiers.len(), 2);
        let found = matching(&keys, ann.id, &laptop.secret, &verifiers).unwrap();
        assert_eq!(found.id, laptop.info.id);
        assert!(matching(&keys, ann.id, "guess", &verifiers).is_none());
        // Bound to the user: the same secret means nothing for bob.
        assert!(matching(&keys, bob.id, &laptop.secret, &verifiers).is_none());
        // And to the master key.
        let other = MasterKey::from_bytes([4; 32]).derive();
        assert!(matching(&other, ann.id, &laptop.secret, &verifiers).is_none());

        let listed = list(&meta, "ann").await.unwrap();
        let labels: Vec<&str> = listed.iter().map(|a| a.label.as_str()).collect();
        assert_eq!(labels, ["phone", "laptop"]);
        assert!(list(&meta, "bob").await.unwrap().is_empty());

        revoke(&meta, "ann", laptop.info.id).await.unwrap();
        let verifiers = meta.app_password_verifiers(ann.id).await.unwrap();
        assert!(matching(&keys, ann.id, &laptop.secret, &verifiers).is_none());
        assert!(matching(&keys, ann.id, &phone.secret, &verifiers).is_some());
        assert!(matches!(
            revoke(&meta, "ann", laptop.info.id).await,
            Err(AppPasswordError::Index(
                IndexError::NoSuchAppPassword { .. }
            ))
        ));
        assert!(matches!(
            revoke(&meta, "bob", phone.info.id).await,
            Err(AppPasswordError::Index(
                IndexError::NoSuchAppPassword { .. }
            ))
        ));
    }

    #[tokio::test]
    async fn labels_are_checked_and_a_user_holds_at_most_64() {
        let (_d, meta, keys) = setup().await;
        for bad in ["", "  ", "a\u{0}b", "line\nbreak"] {
            assert!(matches!(
                create(&meta, &keys, "ann", bad).await,
                Err(AppPasswordError::BadLabel(_))
            ));
        }
        assert!(matches!(
            create(&meta, &keys, "nobody", "x").await,
            Err(AppPasswordError::Index(IndexError::NoSuchUser(_)))
        ));
        for i in 0..MAX_APP_PASSWORDS {
            create(&meta, &keys, "ann", &format!("device {i}"))
                .await
                .unwrap();
        }
        assert!(matches!(
            create(&meta, &keys, "ann", "one more").await,
            Err(AppPasswordError::Index(IndexError::TooManyAppPasswords {
                max: 64,
                ..
            }))
        ));
        // The limit is per user.
        create(&meta, &keys, "bob", "phone").await.unwrap();
    }
}
