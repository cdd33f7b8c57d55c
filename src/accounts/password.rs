//! Account passwords: argon2id hashes with a random salt, in the PHC
//! string format stored in the user record. Verifying costs tens of
//! milliseconds and 19 MiB by design; the HTTP layer bounds how many run at
//! once (`http/auth.rs`).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Errors of password hashing.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(#[source] argon2::password_hash::Error),
}

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(PasswordError::Hash)
}

/// Whether `password` matches the stored argon2id `hash` (a malformed
/// hash matches nothing).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}
