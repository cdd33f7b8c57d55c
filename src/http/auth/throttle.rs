//! Slowing down password guessing, before any hashing is spent on it.
//!
//! Failures are counted per client address (IPv6 by its /64, which one
//! client usually holds whole), per user name, and per (address, user)
//! pair. An attempt is held back by a delay that grows with the larger of
//! its address's and its user name's counts, so neither guessing many names
//! from one address nor one name from many addresses is cheap.
//!
//! A successful login clears only what it proves: the failures of that user
//! name, and that pair's share of its address's count. It never clears
//! failures against another account, so logging in to an own account from
//! the same address buys no further guesses at someone else's password.
//!
//! The tables are bounded: counts expire [`WINDOW`] after their last
//! failure, and a full table evicts its stalest entries first. User names
//! are kept only as keyed hashes of fixed size, whatever length was sent.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::AuthConfig;

/// A user name as the throttle keeps it: a keyed hash (see the auth module).
pub type UserKey = [u8; 16];

/// Failures older than this are forgotten.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Entries per table (address, user name, pair) at most: about 64 bytes
/// each, so a table costs at most ~1 MiB whatever a client sends.
const MAX_ENTRIES: usize = 16_384;

/// The first delayed attempt waits this long; each further failure doubles it
/// up to `auth.max_delay_ms`.
const FIRST_DELAY_MS: u64 = 100;

struct Count {
    failures: u32,
    last: Instant,
}

/// Failure counts by key, bounded in size and age.
struct FailureTable<K> {
    counts: HashMap<K, Count>,
}

impl<K: Hash + Eq + Clone> FailureTable<K> {
    fn new() -> Self {
        Self {
            counts: HashMap::new(),
        }
    }

    fn get(&self, key: &K, now: Instant) -> u32 {
        self.counts
            .get(key)
            .filter(|c| now.duration_since(c.last) < WINDOW)
            .map_or(0, |c| c.failures)
    }

    /// Adds a failure; returns the count.
    fn add(&mut self, key: K, now: Instant) -> u32 {
        if !self.counts.contains_key(&key) && self.counts.len() >= MAX_ENTRIES {
            self.make_room(now);
        }
        let c = self.counts.entry(key).or_insert(Count {
            failures: 0,
            last: now,
        });
        if now.duration_since(c.last) >= WINDOW {
            c.failures = 0;
        }
        c.failures = c.failures.saturating_add(1);
        c.last = now;
        c.failures
    }

    fn remove(&mut self, key: &K, now: Instant) -> u32 {
        let n = self.get(key, now);
        self.counts.remove(key);
        n
    }

    fn subtract(&mut self, key: &K, n: u32) {
        if let Some(c) = self.counts.get_mut(key) {
            c.failures = c.failures.saturating_sub(n);
            if c.failures == 0 {
                self.counts.remove(key);
            }
        }
    }

    /// Drops expired entries; if the table is still full, the stalest
    /// eighth (evicting in batches keeps the cost per failure low).
    fn make_room(&mut self, now: Instant) {
        self.counts
            .retain(|_, c| now.duration_since(c.last) < WINDOW);
        if self.counts.len() < MAX_ENTRIES {
            return;
        }
        let mut ages: Vec<(Instant, K)> = self
            .counts
            .iter()
            .map(|(k, c)| (c.last, k.clone()))
            .collect();
        let evict = (MAX_ENTRIES / 8).max(1);
        ages.select_nth_unstable_by_key(evict - 1, |(last, _)| *last);
        for (_, k) in ages.iter().take(evict) {
            self.counts.remove(k);
        }
    }
}

struct Tables {
    by_address: FailureTable<IpAddr>,
    by_user: FailureTable<UserKey>,
    by_pair: FailureTable<(IpAddr, UserKey)>,
}

/// Failure counts and the delays they impose.
pub struct Throttle {
    tables: Mutex<Tables>,
    free_failures: u32,
    max_delay: Duration,
}

impl Throttle {
    pub fn new(cfg: &AuthConfig) -> Self {
        Self {
            tables: Mutex::new(Tables {
                by_address: FailureTable::new(),
                by_user: FailureTable::new(),
                by_pair: FailureTable::new(),
            }),
            free_failures: cfg.failures_before_delay,
            max_delay: Duration::from_millis(cfg.max_delay_ms),
        }
    }

    /// How long to hold back an attempt from `client` as `user` (`None`
    /// when the request named no user), before its password is checked.
    pub fn delay(&self, client: IpAddr, user: Option<&UserKey>) -> Duration {
        let now = Instant::now();
        let t = self.tables.lock();
        let by_address = t.by_address.get(&client_key(client), now);
        let by_user = user.map_or(0, |u| t.by_user.get(u, now));
        self.delay_after(by_address.max(by_user))
    }

    /// Records a failed attempt; returns the address's failure count.
    pub fn failed(&self, client: IpAddr, user: Option<&UserKey>) -> u32 {
        let now = Instant::now();
        let client = client_key(client);
        let mut t = self.tables.lock();
        if let Some(u) = user {
            t.by_user.add(*u, now);
            t.by_pair.add((client, *u), now);
        }
        t.by_address.add(client, now)
    }

    /// Records a successful login: clears the user name's failures and this
    /// pair's share of the address's, nothing else.
    pub fn succeeded(&self, client: IpAddr, user: &UserKey) {
        let now = Instant::now();
        let client = client_key(client);
        let mut t = self.tables.lock();
        t.by_user.remove(user, now);
        let own = t.by_pair.remove(&(client, *user), now);
        if own > 0 {
            t.by_address.subtract(&client, own);
        }
    }

    /// The delay after `failures` recent failures: none for the first
    /// `auth.failures_before_delay`, then doubling up to the maximum.
    fn delay_after(&self, failures: u32) -> Duration {
        let Some(over) = failures.checked_sub(self.free_failures) else {
            return Duration::ZERO;
        };
        let ms = FIRST_DELAY_MS.saturating_mul(1u64 << over.min(20));
        Duration::from_millis(ms).min(self.max_delay)
    }
}

/// The key an address is counted under: IPv4 as is (also when mapped into
/// IPv6), IPv6 by its /64 prefix.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> Throttle {
        Throttle::new(&AuthConfig {
            cache_seconds: 0,
            failures_before_delay: 2,
            max_delay_ms: 1_000,
        })
    }

    const A: UserKey = [1; 16];
    const B: UserKey = [2; 16];

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn delay_grows_and_is_capped() {
        let t = throttle();
        let x = ip("192.0.2.1");
        assert_eq!(t.delay(x, Some(&B)), Duration::ZERO);
        for _ in 0..2 {
            t.failed(x, Some(&B));
        }
        assert_eq!(t.delay(x, Some(&B)), Duration::from_millis(100));
        t.failed(x, Some(&B));
        assert_eq!(t.delay(x, Some(&B)), Duration::from_millis(200));
        for _ in 0..10 {
            t.failed(x, Some(&B));
        }
        assert_eq!(t.delay(x, Some(&B)), Duration::from_millis(1_000));
    }

    #[test]
    fn own_success_does_not_clear_guesses_at_another_account() {
        let t = throttle();
        let x = ip("192.0.2.1");
        for _ in 0..4 {
            t.failed(x, Some(&B));
            t.succeeded(x, &A);
        }
        assert_eq!(t.delay(x, Some(&B)), Duration::from_millis(400));
        // The address is still suspicious for other names too.
        assert_eq!(t.delay(x, None), Duration::from_millis(400));
    }

    #[test]
    fn user_count_follows_the_name_across_addresses() {
        let t = throttle();
        for i in 0..4 {
            t.failed(ip(&format!("192.0.2.{i}")), Some(&B));
        }
        assert_eq!(
            t.delay(ip("198.51.100.7"), Some(&B)),
            Duration::from_millis(400)
        );
        assert_eq!(t.delay(ip("198.51.100.7"), Some(&A)), Duration::ZERO);
    }

    #[test]
    fn success_clears_the_pair_and_the_name() {
        let t = throttle();
        let x = ip("192.0.2.1");
        for _ in 0..3 {
            t.failed(x, Some(&A));
        }
        t.failed(x, Some(&B));
        t.succeeded(x, &A);
        // A's typos are forgiven; the guess at B still counts for x.
        assert_eq!(t.delay(x, Some(&A)), Duration::ZERO);
        t.failed(x, Some(&B));
        assert_eq!(t.delay(x, Some(&B)), Duration::from_millis(100));
    }

    #[test]
    fn ipv6_counts_by_prefix() {
        let t = throttle();
        for i in 1..=3 {
            t.failed(ip(&format!("2001:db8::{i}")), None);
        }
        assert_eq!(
            t.delay(ip("2001:db8::99"), None),
            Duration::from_millis(200)
        );
        assert_eq!(t.delay(ip("2001:db8:1::1"), None), Duration::ZERO);
        t.failed(ip("::ffff:192.0.2.9"), None);
        assert_eq!(client_key(ip("::ffff:192.0.2.9")), ip("192.0.2.9"));
    }

    #[test]
    fn tables_stay_bounded() {
        let mut table = FailureTable::new();
        let now = Instant::now();
        for i in 0..(MAX_ENTRIES as u32 * 3) {
            table.add(i, now + Duration::from_micros(u64::from(i)));
        }
        assert!(table.counts.len() <= MAX_ENTRIES);
        // The newest survive, the stalest went first.
        let last = MAX_ENTRIES as u32 * 3 - 1;
        assert_eq!(table.get(&last, now + Duration::from_secs(1)), 1);
        assert_eq!(table.get(&0, now + Duration::from_secs(1)), 0);
    }

    #[test]
    fn counts_expire() {
        let mut table = FailureTable::new();
        let now = Instant::now();
        table.add(1u32, now);
        table.add(1u32, now);
        assert_eq!(table.get(&1, now), 2);
        assert_eq!(table.get(&1, now + WINDOW), 0);
        assert_eq!(table.add(1, now + WINDOW), 1);
    }
}
