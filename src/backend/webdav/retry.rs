//! Retries of upstream requests: every request of this backend runs through
//! [`WebDavStore::with_retries`], which bounds the attempts in flight (the
//! `parallelism` setting), waits with exponential backoff and jitter (or as
//! long as `Retry-After` asks) between attempts, and gives up when the next
//! attempt would start after the retry deadline. Whether an attempt may be
//! retried at all is decided where its answer is read ([`super::classify`]).
//! Retrying is safe because every write is idempotent: the same name always
//! carries the same bytes. Each attempt is counted in the store's
//! [`UpstreamMetrics`] by verb and outcome, with its latency.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use tracing::{debug, warn};

use super::{header_str, WebDavStore};
use crate::backend::metrics::{Outcome, UpstreamMetrics, Verb};
use crate::backend::BackendError;

/// First retry delay; doubled on every further attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest delay between two attempts (unless the upstream asks for more).
const BACKOFF_CAP: Duration = Duration::from_secs(10);

/// The outcome of one failed attempt: retry it, or give up at once.
pub(super) enum Failure {
    Retry(BackendError, Option<Duration>),
    Fatal(BackendError),
}

pub(super) type Attempt<T> = Result<T, Failure>;

impl WebDavStore {
    /// Runs `attempt` until it succeeds, fails permanently, or the retry
    /// deadline would pass. At most `parallelism` attempts run at once.
    pub(super) async fn with_retries<T, F, Fut>(
        &self,
        verb: Verb,
        what: &str,
        deadline: Duration,
        mut attempt: F,
    ) -> Result<T, BackendError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let give_up_at = Instant::now() + deadline;
        let mut tries: u32 = 0;
        loop {
            tries += 1;
            let (outcome, took) = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .map_err(|_| self.permanent("the store is shutting down".to_string()))?;
                let sent = Instant::now();
                (attempt().await, sent.elapsed())
            };
            let (err, retry_after) = match outcome {
                Ok(v) => {
                    self.metrics.attempt(verb, Outcome::Ok, took);
                    return Ok(v);
                }
                Err(Failure::Fatal(e)) => {
                    if matches!(e, BackendError::NotFound(_)) {
                        self.metrics.attempt(verb, Outcome::NotFound, took);
                        debug!(upstream = %self.display, "{what}: {e}");
                    } else {
                        self.metrics.attempt(verb, Outcome::Failed, took);
                        warn!(upstream = %self.display, "{what} failed: {e}");
                    }
                    return Err(e);
                }
                Err(Failure::Retry(e, after)) => (e, after),
            };
            let wait = retry_after.unwrap_or_else(|| backoff(tries));
            if Instant::now() + wait > give_up_at {
                self.metrics.attempt(verb, Outcome::Failed, took);
                warn!(upstream = %self.display, attempts = tries, "{what} failed, giving up: {err}");
                return Err(err);
            }
            self.metrics.attempt(verb, Outcome::Retried, took);
            warn!(
                upstream = %self.display,
                attempt = tries,
                retry_in_ms = wait.as_millis() as u64,
                "{what} failed, retrying: {err}"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

impl WebDavStore {
    /// What this store counted of its upstream requests.
    pub fn metrics(&self) -> &UpstreamMetrics {
        &self.metrics
    }
}

/// Exponential backoff with jitter: a random delay in [d/2, d], d doubling
/// from [`BACKOFF_BASE`] up to [`BACKOFF_CAP`].
fn backoff(tries: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << tries.saturating_sub(1).min(16));
    let full = exp.min(BACKOFF_CAP);
    let ms = u64::try_from(full.as_millis()).unwrap_or(u64::MAX).max(2);
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

/// The delay asked for by `Retry-After` (seconds or an HTTP date).
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = header_str(headers, RETRY_AFTER)?;
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_and_backoff() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        for t in 1..40 {
            let b = backoff(t);
            assert!(b <= BACKOFF_CAP && b >= Duration::from_millis(100));
        }
    }
}
