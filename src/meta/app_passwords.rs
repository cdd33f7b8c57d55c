//! App passwords as the metadata keeps them: one record per (user,
//! app password id) with its label, creation time and verifier, the
//! limits every engine enforces, and the two views handed out: the
//! listing (no verifier, for people and admin tools) and the verifiers
//! (for the authenticator only).
//!
//! Owned here, not in `records.rs`, because the account record and its
//! codec are shared with other work; this file is the whole of the app
//! passwords' storage shape. The secret itself is never stored: the
//! verifier is a keyed MAC of it (`crypto::app_password_tag`), and why a
//! fast MAC is enough is argued in `accounts/app_passwords.rs`.

use serde::Serialize;

use super::codec::{Reader, Writer};
use super::IndexError;

/// App passwords one user may hold at most. Checked inside the
/// transaction that adds one, so concurrent adds cannot pass it.
pub const MAX_APP_PASSWORDS: usize = 64;

/// Longest label, in bytes.
pub const MAX_LABEL_BYTES: usize = 100;

/// How the verifier was made: 1 = HMAC-SHA256 under the app-password key
/// of (user id, secret). Stored so a later scheme can be told apart.
pub const SCHEME_HMAC_SHA256: u32 = 1;

/// Whether `label` may name an app password: 1 to [`MAX_LABEL_BYTES`]
/// bytes, not only white space, no control characters.
pub fn valid_label(label: &str) -> bool {
    !label.trim().is_empty()
        && label.len() <= MAX_LABEL_BYTES
        && !label.chars().any(char::is_control)
}

/// An app password to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAppPassword {
    pub label: String,
    /// The keyed MAC of the secret.
    pub verifier: [u8; 32],
}

/// What a listing shows of an app password: never its verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppPasswordInfo {
    pub id: u64,
    pub label: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of the last login with it, recorded at most once a
    /// minute; `None` before the first (or after a restore, which does
    /// not carry it).
    pub last_used: Option<u64>,
}

/// What the authenticator compares a presented password with.
#[derive(Clone, PartialEq, Eq)]
pub struct AppPasswordVerifier {
    pub id: u64,
    pub verifier: [u8; 32],
    pub last_used: Option<u64>,
}

impl std::fmt::Debug for AppPasswordVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppPasswordVerifier")
            .field("id", &self.id)
            .field("last_used", &self.last_used)
            .finish_non_exhaustive()
    }
}

/// The stored record of one app password (its key holds user and id).
#[derive(Clone, PartialEq, Eq)]
pub struct AppPasswordRecord {
    pub label: String,
    pub scheme: u32,
    pub verifier: [u8; 32],
    pub created: i64,
}

impl std::fmt::Debug for AppPasswordRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppPasswordRecord")
            .field("label", &self.label)
            .field("scheme", &self.scheme)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl AppPasswordRecord {
    pub fn encode(&self) -> Vec<u8> {
        Writer::new()
            .variant(self.scheme)
            .str(&self.label)
            .array(&self.verifier)
            .i64(self.created)
            .finish()
    }

    pub fn decode(b: &[u8]) -> Result<Self, IndexError> {
        let mut r = Reader::new("app_passwords", b);
        Ok(Self {
            scheme: r.variant()?,
            label: r.string()?,
            verifier: r.array()?,
            created: r.i64()?,
        })
    }

    /// The listing's view, with the last use recorded apart.
    pub fn info(&self, id: u64, last_used: Option<u64>) -> AppPasswordInfo {
        AppPasswordInfo {
            id,
            label: self.label.clone(),
            created: self.created,
            last_used,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_refuse_truncation() {
        let rec = AppPasswordRecord {
            label: "phone – Ω".into(),
            scheme: SCHEME_HMAC_SHA256,
            verifier: [9; 32],
            created: 1_700_000_000,
        };
        let bytes = rec.encode();
        assert_eq!(AppPasswordRecord::decode(&bytes).unwrap(), rec);
        for cut in 0..bytes.len() {
            assert!(AppPasswordRecord::decode(&bytes[..cut]).is_err(), "{cut}");
        }
        let shown = format!("{rec:?}");
        assert!(!shown.contains("9, 9"), "no verifier in debug output");
    }

    #[test]
    fn labels() {
        assert!(valid_label("Laptop (work)"));
        assert!(valid_label(&"é".repeat(50)));
        for bad in ["", "   ", "a\nb", "tab\there", "\u{7f}", "\u{85}x"] {
            assert!(!valid_label(bad), "{bad:?}");
        }
        assert!(!valid_label(&"x".repeat(MAX_LABEL_BYTES + 1)));
        assert!(valid_label(&"x".repeat(MAX_LABEL_BYTES)));
    }
}
