//! HTTP Basic authentication against argon2id hashes.
//!
//! Verifying an argon2id hash costs tens of milliseconds by design, so a
//! successful login is remembered for a while under a keyed MAC of the
//! credentials (the password itself is never kept). Repeated failures from
//! one client address are answered more and more slowly.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use parking_lot::Mutex;

use crate::config::AuthConfig;
use crate::crypto::{auth_cache_tag, Keys};
use crate::index::{Index, UserRecord};

/// Errors of authentication.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials")]
    Missing,
    #[error("malformed Authorization header")]
    Malformed,
    #[error("wrong user name or password")]
    Wrong,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Hashes a password with argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Parses `Authorization: Basic …` into (user, password).
pub fn parse_basic(header: Option<&str>) -> Result<(String, String), AuthError> {
    let h = header.ok_or(AuthError::Missing)?;
    let (scheme, rest) = h.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::Missing);
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| AuthError::Malformed)?;
    let text = String::from_utf8(raw).map_err(|_| AuthError::Malformed)?;
    let (u, p) = text.split_once(':').ok_or(AuthError::Malformed)?;
    Ok((u.to_string(), p.to_string()))
}

struct Failures {
    count: u32,
    last: Instant,
}

pub struct Authenticator {
    index: Arc<Index>,
    keys: Arc<Keys>,
    cfg: AuthConfig,
    cache: Mutex<HashMap<[u8; 32], Instant>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl Authenticator {
    pub fn new(index: Arc<Index>, keys: Arc<Keys>, cfg: AuthConfig) -> Self {
        Self {
            index,
            keys,
            cfg,
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Checks the request's credentials and returns the user.
    pub async fn authenticate(
        &self,
        header: Option<&str>,
        client: IpAddr,
    ) -> Result<UserRecord, AuthError> {
        let result = self.check(header).await;
        match &result {
            Ok(_) => {
                self.failures.lock().remove(&client);
            }
            Err(AuthError::Missing) => {}
            Err(_) => {
                let delay = self.note_failure(client);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
        }
        result
    }

    async fn check(&self, header: Option<&str>) -> Result<UserRecord, AuthError> {
        let (name, password) = parse_basic(header)?;
        let user = self
            .index
            .user(&name)
            .map_err(|e| AuthError::Hash(e.to_string()))?;
        let tag = auth_cache_tag(
            &self.keys,
            &[name.as_bytes(), b"\0", password.as_bytes(), b"\0"],
        );
        let Some(user) = user else {
            // Spend the same effort as for a real user, so timing does not
            // tell which user names exist.
            let _ = tokio::task::spawn_blocking(move || {
                verify_password(dummy_hash(), &password);
            })
            .await;
            return Err(AuthError::Wrong);
        };
        let tag = auth_cache_tag(&self.keys, &[&tag, user.password_hash.as_bytes()]);
        if self.cached(&tag) {
            return Ok(user);
        }
        let hash = user.password_hash.clone();
        let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
            .await
            .unwrap_or(false);
        if !ok {
            return Err(AuthError::Wrong);
        }
        if self.cfg.cache_seconds > 0 {
            let mut cache = self.cache.lock();
            if cache.len() > 10_000 {
                let now = Instant::now();
                cache.retain(|_, exp| *exp > now);
            }
            cache.insert(
                tag,
                Instant::now() + Duration::from_secs(self.cfg.cache_seconds),
            );
        }
        Ok(user)
    }

    fn cached(&self, tag: &[u8; 32]) -> bool {
        self.cache
            .lock()
            .get(tag)
            .is_some_and(|exp| *exp > Instant::now())
    }

    /// Records a failure and returns how long to hold the answer back.
    fn note_failure(&self, client: IpAddr) -> Duration {
        let mut map = self.failures.lock();
        let now = Instant::now();
        if map.len() > 10_000 {
            map.retain(|_, f| now.duration_since(f.last) < Duration::from_secs(900));
        }
        let f = map.entry(client).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(f.last) > Duration::from_secs(900) {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        tracing::warn!(%client, failures = f.count, "failed login");
        let over = f.count.saturating_sub(self.cfg.failures_before_delay);
        if over == 0 {
            return Duration::ZERO;
        }
        let ms = 100u64.saturating_mul(1u64 << over.min(16));
        Duration::from_millis(ms.min(self.cfg.max_delay_ms))
    }
}

/// An argon2id hash of a random password, verified against when the user
/// does not exist.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let random = uuid::Uuid::new_v4().to_string();
        hash_password(&random).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_parsing() {
        let h = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:pa:ss")
        );
        assert_eq!(
            parse_basic(Some(&h)).unwrap(),
            ("alice".to_string(), "pa:ss".to_string())
        );
        assert!(matches!(parse_basic(None), Err(AuthError::Missing)));
        assert!(matches!(
            parse_basic(Some("Basic !!!")),
            Err(AuthError::Malformed)
        ));
        assert!(matches!(
            parse_basic(Some("Bearer x")),
            Err(AuthError::Missing)
        ));
    }

    #[test]
    fn hashes_verify() {
        let h = hash_password("secret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "secret"));
        assert!(!verify_password(&h, "Secret"));
        assert!(!verify_password(dummy_hash(), "anything"));
        assert!(PasswordHash::new(dummy_hash()).is_ok());
    }
}
