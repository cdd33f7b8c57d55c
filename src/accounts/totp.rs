//! TOTP (RFC 6238): the second factor of the web console's login. Owns
//! the algorithm (HMAC-SHA1, 6 digits, 30-second steps, one step of clock
//! drift either way), the shape of a secret and its `otpauth://` URI, and
//! the use cases: start an enrolment, confirm it with a first code, check
//! a login's code, remove the enrolment. WebDAV logins never ask for a
//! code (sync clients use app passwords).
//!
//! A code is accepted once: the metadata keeps the last accepted time
//! step and accepts only later ones, checked and recorded in one
//! transaction (`Meta::accept_totp_step`), so a code seen by someone
//! else cannot be used again within its window.

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha1::Sha1;

use crate::meta::totp::TOTP_SECRET_BYTES;
use crate::meta::{IndexError, Meta};

/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Digits of a code.
pub const DIGITS: u32 = 6;
/// Steps of clock drift accepted either way.
pub const DRIFT: u64 = 1;
/// The issuer named in the URI (what an authenticator app shows).
pub const ISSUER: &str = "dedupdav";

/// Errors of the TOTP use cases.
#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("the code is wrong, expired or was already used")]
    WrongCode,
}

/// A TOTP secret. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpSecret(pub [u8; TOTP_SECRET_BYTES]);

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

impl TotpSecret {
    /// A new secret from the operating system's generator.
    pub fn generate() -> Self {
        let mut s = [0u8; TOTP_SECRET_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut s);
        Self(s)
    }

    /// The secret in base32 (RFC 4648, no padding), as authenticator apps
    /// take it.
    pub fn base32(&self) -> String {
        base32(&self.0)
    }

    /// The `otpauth://totp/...` URI an authenticator app scans.
    pub fn uri(&self, user: &str) -> String {
        let label = format!("{ISSUER}:{user}");
        let label =
            percent_encoding::utf8_percent_encode(&label, percent_encoding::NON_ALPHANUMERIC);
        format!(
            "otpauth://totp/{label}?secret={}&issuer={ISSUER}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
            self.base32()
        )
    }

    /// The code of time step `step` (RFC 4226's dynamic truncation).
    pub fn code_at(&self, step: u64) -> u32 {
        let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&self.0) else {
            // HMAC takes keys of any length; this cannot happen.
            return u32::MAX;
        };
        mac.update(&step.to_be_bytes());
        let h = mac.finalize().into_bytes();
        let offset = (h[h.len() - 1] & 0x0f) as usize;
        let bin = u32::from_be_bytes([h[offset], h[offset + 1], h[offset + 2], h[offset + 3]])
            & 0x7fff_ffff;
        bin % 10u32.pow(DIGITS)
    }

    /// The time step, within the accepted drift around `now` (Unix
    /// seconds), whose code `code` is; the latest if several match. Every
    /// candidate is compared, in constant time.
    pub fn matching_step(&self, code: &str, now: u64) -> Option<u64> {
        let code = code.trim();
        if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let now_step = now / STEP_SECS;
        let mut found = None;
        for step in now_step.saturating_sub(DRIFT)..=now_step + DRIFT {
            let want = format!("{:0width$}", self.code_at(step), width = DIGITS as usize);
            if same(want.as_bytes(), code.as_bytes()) {
                found = Some(step);
            }
        }
        found
    }
}

/// Compares two byte strings of equal length without an early exit.
fn same(a: &[u8], b: &[u8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    a.len() == b.len() && std::hint::black_box(diff) == 0
}

/// The time step of `now` (Unix seconds).
pub fn step_of(now: u64) -> u64 {
    now / STEP_SECS
}

fn now() -> u64 {
    crate::clock::unix_secs().max(0) as u64
}

fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in data {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Whether user id `user` has enrolled.
pub async fn enrolled(meta: &Meta, user: u64) -> Result<bool, TotpError> {
    Ok(meta.totp(user).await?.is_some())
}

/// Finishes an enrolment of the user named `user` with `secret` (made by
/// [`TotpSecret::generate`] and shown to them) when `code` is a current
/// code of it; that code is then spent.
pub async fn confirm(
    meta: &Meta,
    user: &str,
    secret: &TotpSecret,
    code: &str,
) -> Result<(), TotpError> {
    let step = secret
        .matching_step(code, now())
        .ok_or(TotpError::WrongCode)?;
    meta.set_totp(user, &secret.0, step).await?;
    Ok(())
}

/// Checks a login's code for user id `user`: right, current, and later
/// than the last code accepted (which it then becomes).
pub async fn check_login(meta: &Meta, user: u64, code: &str) -> Result<(), TotpError> {
    let record = meta.totp(user).await?.ok_or(TotpError::WrongCode)?;
    let secret = TotpSecret(record.secret);
    let step = secret
        .matching_step(code, now())
        .ok_or(TotpError::WrongCode)?;
    if meta.accept_totp_step(user, step).await? {
        Ok(())
    } else {
        Err(TotpError::WrongCode)
    }
}

/// Removes the enrolment of the user named `user`.
pub async fn remove(meta: &Meta, user: &str) -> Result<bool, TotpError> {
    Ok(meta.clear_totp(user).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{NewUser, PropLimits};

    /// RFC 6238, appendix B, SHA-1 (8 digits there; the last 6 here).
    #[test]
    fn rfc6238_vectors() {
        let secret = TotpSecret(*b"12345678901234567890");
        for (time, code) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(secret.code_at(step_of(time)), code % 1_000_000, "{time}");
        }
        assert_eq!(secret.base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }

    #[test]
    fn codes_match_within_one_step_and_only_digits() {
        let secret = TotpSecret([9; 20]);
        let now = 1_700_000_000;
        let code = |step| format!("{:06}", secret.code_at(step));
        let s = step_of(now);
        assert_eq!(secret.matching_step(&code(s), now), Some(s));
        assert_eq!(secret.matching_step(&code(s - 1), now), Some(s - 1));
        assert_eq!(secret.matching_step(&code(s + 1), now), Some(s + 1));
        assert_eq!(secret.matching_step(&code(s + 2), now), None);
        assert_eq!(secret.matching_step(&code(s - 2), now), None);
        assert_eq!(secret.matching_step(" 12345", now), None);
        assert_eq!(secret.matching_step("abcdef", now), None);
        assert!(!format!("{secret:?}").contains('9'));
        let uri = secret.uri("al ice");
        assert!(uri.starts_with("otpauth://totp/dedupdav%3Aal%20ice?secret="));
        assert!(uri.contains(&secret.base32()));
    }

    #[tokio::test]
    async fn enrolment_and_logins_spend_each_code_once() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open_redb(&dir.path().join("i.redb"), PropLimits::default()).unwrap();
        let ann = meta
            .add_user(NewUser {
                name: "ann".into(),
                password_hash: "x".into(),
                admin: false,
                quota: None,
            })
            .await
            .unwrap();
        let secret = TotpSecret::generate();
        let code = |step| format!("{:06}", secret.code_at(step));
        assert!(matches!(
            confirm(&meta, "ann", &secret, "000000x").await,
            Err(TotpError::WrongCode)
        ));
        let s = step_of(now());
        confirm(&meta, "ann", &secret, &code(s - 1)).await.unwrap();
        assert!(enrolled(&meta, ann.id).await.unwrap());
        // The confirming code is spent; the next step's works once.
        assert!(check_login(&meta, ann.id, &code(s - 1)).await.is_err());
        check_login(&meta, ann.id, &code(s + 1)).await.unwrap();
        assert!(check_login(&meta, ann.id, &code(s + 1)).await.is_err());
        assert!(check_login(&meta, ann.id, &code(s)).await.is_err(), "older");
        assert!(remove(&meta, "ann").await.unwrap());
        assert!(!enrolled(&meta, ann.id).await.unwrap());
    }
}
