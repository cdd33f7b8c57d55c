//! Console sessions: random 256-bit ids in a bounded in-memory table.
//! A session ends after [`IDLE`] without a request, at logout, when the
//! table is full and it is the stalest, or when its user is gone (checked
//! on every request by the caller). Each carries its own CSRF token, the
//! one-shot message of the last form (a password shown once) and an
//! enrolment in progress. Sessions are lost on restart: people log in
//! again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::RngCore;

use crate::accounts::totp::TotpSecret;

/// Idle time after which a session ends.
pub const IDLE: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at most; a new one beyond it ends the stalest.
pub const MAX_SESSIONS: usize = 10_000;

/// A message shown once, on the page the form redirects to.
#[derive(Clone)]
pub enum Flash {
    /// Something went well.
    Done(String),
    /// A form was refused: why.
    Refused(String),
    /// A secret shown once (generated password, app password): (what, secret).
    Secret(String, String),
}

/// One logged-in browser.
#[derive(Clone)]
pub struct Session {
    pub user_id: u64,
    pub user: String,
    /// The CSRF token (64 hex digits) every form of this session carries.
    pub csrf: String,
    pub flash: Option<Flash>,
    /// A TOTP secret shown for enrolment, not confirmed yet.
    pub pending_totp: Option<TotpSecret>,
    last_seen: Instant,
}

#[derive(Default)]
pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl Sessions {
    /// Starts a session for a user who just logged in; answers its id.
    pub fn start(&self, user_id: u64, user: &str) -> String {
        let id = random_hex();
        let session = Session {
            user_id,
            user: user.to_string(),
            csrf: random_hex(),
            flash: None,
            pending_totp: None,
            last_seen: Instant::now(),
        };
        let mut table = self.table.lock();
        if table.len() >= MAX_SESSIONS {
            let now = Instant::now();
            table.retain(|_, s| now.duration_since(s.last_seen) < IDLE);
        }
        if table.len() >= MAX_SESSIONS {
            let stalest = table
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone());
            if let Some(k) = stalest {
                table.remove(&k);
            }
        }
        table.insert(id.clone(), session);
        id
    }

    /// The live session `id` (its idle clock restarted), or `None`.
    pub fn touch(&self, id: &str) -> Option<Session> {
        let mut table = self.table.lock();
        let now = Instant::now();
        let live = table
            .get(id)
            .is_some_and(|s| now.duration_since(s.last_seen) < IDLE);
        if !live {
            table.remove(id);
            return None;
        }
        let s = table.get_mut(id)?;
        s.last_seen = now;
        Some(s.clone())
    }

    /// Changes session `id`, if it is there.
    pub fn update(&self, id: &str, change: impl FnOnce(&mut Session)) {
        if let Some(s) = self.table.lock().get_mut(id) {
            change(s);
        }
    }

    /// Takes the session's one-shot message.
    pub fn take_flash(&self, id: &str) -> Option<Flash> {
        self.table.lock().get_mut(id).and_then(|s| s.flash.take())
    }

    pub fn end(&self, id: &str) {
        self.table.lock().remove(id);
    }

    /// Ends every session of user id `user` (the user was removed).
    pub fn end_user(&self, user: u64) {
        self.table.lock().retain(|_, s| s.user_id != user);
    }

    #[cfg(test)]
    fn age(&self, id: &str, by: Duration) {
        if let Some(s) = self.table.lock().get_mut(id) {
            s.last_seen = s.last_seen.checked_sub(by).unwrap_or(s.last_seen);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().len()
    }
}

/// Compares a presented CSRF token with the session's without an early
/// exit.
pub fn token_matches(expected: &str, presented: &str) -> bool {
    let (a, b) = (expected.as_bytes(), presented.as_bytes());
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    a.len() == b.len() && !a.is_empty() && std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_end() {
        let s = Sessions::default();
        let id = s.start(1, "ann");
        assert_eq!(id.len(), 64);
        let got = s.touch(&id).unwrap();
        assert_eq!((got.user_id, got.user.as_str()), (1, "ann"));
        assert_eq!(got.csrf.len(), 64);
        assert_ne!(got.csrf, id);
        assert!(s.touch("nope").is_none());
        s.age(&id, IDLE + Duration::from_secs(1));
        assert!(s.touch(&id).is_none(), "idle too long");
        let id = s.start(1, "ann");
        s.end(&id);
        assert!(s.touch(&id).is_none());
        let a = s.start(2, "bob");
        let b = s.start(3, "cy");
        s.end_user(2);
        assert!(s.touch(&a).is_none());
        assert!(s.touch(&b).is_some());
    }

    #[test]
    fn the_table_is_bounded() {
        let s = Sessions::default();
        let first = s.start(1, "ann");
        s.age(&first, Duration::from_secs(60));
        for _ in 0..MAX_SESSIONS {
            s.start(2, "bob");
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.touch(&first).is_none(), "the stalest went first");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches("abcd", "abcd"));
        assert!(!token_matches("abcd", "abce"));
        assert!(!token_matches("abcd", "abc"));
        assert!(!token_matches("", ""));
    }
}
