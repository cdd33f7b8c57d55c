//! HTTP Basic authentication against argon2id hashes.
//!
//! Verifying an argon2id hash costs tens of milliseconds and 19 MiB by
//! design, so:
//! - a successful login is remembered for a while under a keyed MAC of the
//!   credentials (the password itself is never kept), and a remembered one
//!   costs no hashing and no delay;
//! - at most `limits.password_checks` verifications run at once (each holds
//!   its slot until the hash is done, even if the client hangs up); further
//!   logins wait in a queue of at most [`QUEUE_PER_CHECK`] per slot for at
//!   most [`QUEUE_WAIT`], and beyond that are answered 503 with
//!   `Retry-After` ([`AuthError::Busy`]) instead of holding ever more
//!   connections and memory;
//! - repeated failures are held back *before* hashing by the [`throttle`],
//!   counted per address and per user name.
//!
//! A user's app passwords (`accounts/app_passwords.rs`) are accepted like
//! the account password. They are checked after the throttle's delay and
//! before the argon2id check: one MAC of the presented password, compared
//! with the verifiers read from the metadata for this very request, so a
//! revoked app password fails the first login that reads the metadata
//! after the revoke returned (also one that was waiting in the delay).
//! They are never put in the cache: checking one costs a MAC and a read,
//! so there is nothing worth remembering and no entry to invalidate on a
//! revoke. A password that matches no app password goes on to the account
//! password's check, so a wrong app password is a failed login the
//! throttle counts like any other. A successful app-password login
//! records its time (at most once a minute per app password, in the
//! background, in a table that is not journaled).
//!
//! The user record is read on every request and the remembered login is
//! keyed by its password hash too, so a changed password, a disabled or a
//! removed account holds from the next request on.

mod throttle;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::accounts::app_passwords;
use crate::accounts::password::{hash_password, verify_password, PasswordError};
use crate::config::{AuthConfig, LimitsConfig};
use crate::crypto::{auth_cache_tag, Keys};
use crate::meta::{AppPasswordVerifier, IndexError, Meta, UserRecord};
use throttle::{Throttle, UserKey};

/// Logins that may wait for a verification slot, per slot. A waiting login
/// costs its connection and a few hundred bytes; at ~25-50 ms per check a
/// full queue is one to two seconds of work, so a longer one only makes
/// every login slower.
pub const QUEUE_PER_CHECK: usize = 32;

/// Longest wait for a verification slot before answering 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(10);

/// Seconds between two recordings of an app password's last use.
const USE_EVERY_SECS: u64 = 60;

/// Seconds a client answered [`AuthError::Busy`] is asked to wait.
pub const BUSY_RETRY_AFTER_SECS: u64 = 2;

/// Errors of authentication.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials")]
    Missing,
    #[error("malformed Authorization header")]
    Malformed,
    #[error("wrong user name or password")]
    Wrong,
    #[error("too many logins are being checked; try again shortly")]
    Busy,
    #[error("the user index failed: {0}")]
    Index(#[source] IndexError),
    #[error(transparent)]
    Hash(#[from] PasswordError),
    #[error("a password check stopped: {0}")]
    Check(#[source] tokio::task::JoinError),
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

/// The slots for password verification and the queue in front of them.
struct PasswordChecks {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
}

/// Counts one login as waiting for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordChecks {
    fn new(slots: usize) -> Self {
        let slots = slots.max(1);
        Self {
            slots: Arc::new(Semaphore::new(slots)),
            waiting: AtomicUsize::new(0),
            max_waiting: slots.saturating_mul(QUEUE_PER_CHECK),
        }
    }

    /// A verification slot, or [`AuthError::Busy`] when the queue is full or
    /// the wait too long.
    async fn slot(&self) -> Result<OwnedSemaphorePermit, AuthError> {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Ok(slot);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(AuthError::Busy);
        }
        let _waiting = Waiting(&self.waiting);
        match tokio::time::timeout(QUEUE_WAIT, self.slots.clone().acquire_owned()).await {
            Ok(Ok(slot)) => Ok(slot),
            _ => Err(AuthError::Busy),
        }
    }

    /// Verifies `password` against `hash` on the blocking pool, in a slot.
    async fn verify(&self, hash: String, password: String) -> Result<bool, AuthError> {
        let slot = self.slot().await?;
        tokio::task::spawn_blocking(move || {
            // The slot is held by the hashing itself, so a client that hangs
            // up does not free it while its hash still runs.
            let _slot = slot;
            verify_password(&hash, &password)
        })
        .await
        .map_err(AuthError::Check)
    }
}

pub struct Authenticator {
    meta: Meta,
    keys: Arc<Keys>,
    cfg: AuthConfig,
    cache: Mutex<std::collections::HashMap<[u8; 32], Instant>>,
    checks: PasswordChecks,
    throttle: Throttle,
    /// (user id, app password id) → Unix seconds its last use was last
    /// handed to the metadata, so parallel requests of one device record
    /// it once a minute, not once each.
    recorded_use: Mutex<std::collections::HashMap<(u64, u64), u64>>,
}

impl Authenticator {
    /// The keys app-password verifiers are made with.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn new(meta: Meta, keys: Arc<Keys>, cfg: AuthConfig, limits: &LimitsConfig) -> Self {
        Self {
            meta,
            keys,
            throttle: Throttle::new(&cfg),
            cfg,
            cache: Mutex::new(std::collections::HashMap::new()),
            checks: PasswordChecks::new(limits.password_checks),
            recorded_use: Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Checks the request's credentials and returns the user.
    pub async fn authenticate(
        &self,
        header: Option<&str>,
        client: IpAddr,
    ) -> Result<UserRecord, AuthError> {
        let (name, password) = match parse_basic(header) {
            Ok(credentials) => credentials,
            Err(AuthError::Missing) => return Err(AuthError::Missing),
            Err(e) => {
                self.note_failure(client, None);
                tokio::time::sleep(self.throttle.delay(client, None)).await;
                return Err(e);
            }
        };
        let who = self.user_key(&name);
        let user = self.meta.user(&name).await.map_err(AuthError::Index)?;
        let tag = auth_cache_tag(
            &self.keys,
            &[name.as_bytes(), b"\0", password.as_bytes(), b"\0"],
        );
        let (tag, hash) = match &user {
            Some(u) => (
                Some(auth_cache_tag(
                    &self.keys,
                    &[&tag, u.password_hash.as_bytes()],
                )),
                u.password_hash.clone(),
            ),
            // Spend the same effort as for a real user, so timing does not
            // tell which user names exist.
            None => (None, dummy_hash().to_string()),
        };
        if let (Some(user), Some(tag)) = (&user, &tag) {
            if !user.disabled && self.cached(tag) {
                self.throttle.succeeded(client, &who);
                return Ok(user.clone());
            }
        }
        let delay = self.throttle.delay(client, Some(&who));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(user) = &user {
            // Read now, after the delay: a revoke that returned meanwhile
            // is seen.
            let verifiers = self
                .meta
                .app_password_verifiers(user.id)
                .await
                .map_err(AuthError::Index)?;
            if let Some(found) = app_passwords::matching(&self.keys, user.id, &password, &verifiers)
            {
                self.throttle.succeeded(client, &who);
                self.note_use(user.id, found);
                return Ok(user.clone());
            }
        }
        let verified = self.checks.verify(hash, password).await?;
        match (user, tag) {
            // A disabled account is refused like a wrong password.
            (Some(user), Some(tag)) if verified && !user.disabled => {
                self.throttle.succeeded(client, &who);
                self.remember(tag);
                Ok(user)
            }
            _ => {
                self.note_failure(client, Some(&who));
                Err(AuthError::Wrong)
            }
        }
    }

    /// The web console's password check (`http/console/`): the account
    /// password only (an app password is a device's, and must not open the
    /// console where more of them are made), through the same throttle
    /// delay and verification slots as Basic auth; a wrong one counts as a
    /// failure. A right one is *not* yet a success: the console may still
    /// need a second factor, so the caller ends the attempt with
    /// [`Authenticator::console_outcome`].
    pub async fn check_account_password(
        &self,
        name: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<UserRecord, AuthError> {
        let who = self.user_key(name);
        let user = self.meta.user(name).await.map_err(AuthError::Index)?;
        let hash = match &user {
            Some(u) => u.password_hash.clone(),
            None => dummy_hash().to_string(),
        };
        let delay = self.throttle.delay(client, Some(&who));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let verified = self.checks.verify(hash, password.to_string()).await?;
        match user {
            Some(user) if verified => Ok(user),
            _ => {
                self.note_failure(client, Some(&who));
                Err(AuthError::Wrong)
            }
        }
    }

    /// Ends a console login whose password was right: a success clears the
    /// throttle's counts as a Basic login does, a failure (a wrong second
    /// factor) counts like a wrong password.
    pub fn console_outcome(&self, client: IpAddr, name: &str, succeeded: bool) {
        let who = self.user_key(name);
        if succeeded {
            self.throttle.succeeded(client, &who);
        } else {
            self.note_failure(client, Some(&who));
        }
    }

    /// The throttle's key for a user name: a keyed hash of fixed size.
    fn user_key(&self, name: &str) -> UserKey {
        let mac = auth_cache_tag(&self.keys, &[b"login throttle\0", name.as_bytes()]);
        let mut key = [0u8; 16];
        key.copy_from_slice(&mac[..16]);
        key
    }

    fn note_failure(&self, client: IpAddr, user: Option<&UserKey>) {
        let failures = self.throttle.failed(client, user);
        tracing::warn!(%client, failures, "failed login");
    }

    /// Records a login with an app password, at most once a minute per app
    /// password, without making the request wait for the write.
    fn note_use(&self, user: u64, used: &AppPasswordVerifier) {
        let now = crate::clock::unix_secs().max(0) as u64;
        let due = |last: Option<u64>| last.is_none_or(|l| now >= l.saturating_add(USE_EVERY_SECS));
        if !due(used.last_used) {
            return;
        }
        {
            let mut recorded = self.recorded_use.lock();
            if !due(recorded.get(&(user, used.id)).copied()) {
                return;
            }
            if recorded.len() > 10_000 {
                recorded.retain(|_, at| now < at.saturating_add(USE_EVERY_SECS));
            }
            recorded.insert((user, used.id), now);
        }
        let (meta, id) = (self.meta.clone(), used.id);
        tokio::spawn(async move {
            if let Err(e) = meta.app_password_used(user, id, now).await {
                tracing::warn!(user, app_password = id, error = %e, "recording an app password's use failed");
            }
        });
    }

    fn remember(&self, tag: [u8; 32]) {
        if self.cfg.cache_seconds == 0 {
            return;
        }
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

    fn cached(&self, tag: &[u8; 32]) -> bool {
        self.cache
            .lock()
            .get(tag)
            .is_some_and(|exp| *exp > Instant::now())
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
        assert!(argon2::password_hash::PasswordHash::new(dummy_hash()).is_ok());
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy() {
        let checks = Arc::new(PasswordChecks::new(1));
        let held = checks.slot().await.unwrap();
        let waiters: Vec<_> = (0..QUEUE_PER_CHECK)
            .map(|_| {
                let c = checks.clone();
                tokio::spawn(async move { c.slot().await.is_ok() })
            })
            .collect();
        for _ in 0..10_000 {
            if checks.waiting.load(Ordering::Acquire) == QUEUE_PER_CHECK {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(checks.waiting.load(Ordering::Acquire), QUEUE_PER_CHECK);
        // The queue is full: the next login is refused at once.
        assert!(matches!(checks.slot().await, Err(AuthError::Busy)));
        drop(held);
        for w in waiters {
            assert!(w.await.unwrap(), "every queued login gets its slot");
        }
        assert_eq!(checks.waiting.load(Ordering::Acquire), 0);
    }
}
