//! The history behind the web console's charts: every minute, one sample
//! of logical bytes, stored bytes, files and the requests served so far,
//! kept for 30 days (`meta/history.rs`, a local table trimmed in the
//! transaction that adds). The HTTP service counts the requests; it
//! implements [`RequestTotal`], so this job needs nothing else of it.

use std::sync::Arc;
use std::time::Duration;

use super::{Batch, Job, JobError};
use crate::meta::history::{HistorySample, HISTORY_SAMPLES};
use crate::meta::Meta;

/// The job's name in the log and metrics.
pub const NAME: &str = "history";

/// Time between two samples.
pub const EVERY: Duration = Duration::from_secs(60);

/// Whoever counts the requests served (and sees the upstream's answers).
pub trait RequestTotal: Send + Sync + 'static {
    /// Requests served since the process started.
    fn requests_served(&self) -> u64;

    /// Upstream attempts since the process started and the microseconds
    /// they took in all; (0, 0) without an upstream.
    fn upstream_latency_totals(&self) -> (u64, u64) {
        (0, 0)
    }
}

pub struct HistoryJob {
    meta: Meta,
    requests: Arc<dyn RequestTotal>,
}

impl HistoryJob {
    pub fn new(meta: Meta, requests: Arc<dyn RequestTotal>) -> Self {
        Self { meta, requests }
    }

    /// Takes and records one sample at `now` (Unix seconds).
    pub async fn sample(&self, now: i64) -> Result<HistorySample, JobError> {
        let stats = self.meta.stats().await.map_err(JobError::History)?;
        let (attempts, micros) = self.requests.upstream_latency_totals();
        let sample = HistorySample {
            at: now,
            logical_bytes: stats.logical_bytes,
            stored_bytes: stats.stored_bytes,
            files: stats.files,
            requests: self.requests.requests_served(),
            upstream_attempts: attempts,
            upstream_micros: micros,
        };
        self.meta
            .record_history(&sample, HISTORY_SAMPLES)
            .await
            .map_err(JobError::History)?;
        Ok(sample)
    }
}

impl Job for HistoryJob {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interval(&self) -> Duration {
        EVERY
    }

    /// A first point at once, so a new gateway's charts are not empty.
    fn first_delay(&self) -> Duration {
        Duration::ZERO
    }

    async fn step(&mut self) -> Result<Batch, JobError> {
        self.sample(crate::clock::unix_secs()).await?;
        Ok(Batch::done(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Counter(AtomicU64);
    impl RequestTotal for Counter {
        fn requests_served(&self) -> u64 {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[tokio::test]
    async fn samples_are_recorded_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open_redb(&dir.path().join("i.redb"), Default::default()).unwrap();
        let counter = Arc::new(Counter(AtomicU64::new(5)));
        let job = HistoryJob::new(meta.clone(), counter.clone());
        let s = job.sample(1000).await.unwrap();
        assert_eq!((s.at, s.requests, s.logical_bytes), (1000, 5, 0));
        counter.0.store(9, Ordering::Relaxed);
        job.sample(1060).await.unwrap();
        let all = meta.history_since(0).await.unwrap();
        assert_eq!(all.iter().map(|s| s.requests).collect::<Vec<_>>(), [5, 9]);
        assert_eq!(meta.history_since(1001).await.unwrap().len(), 1);
        // Trimmed to the newest `keep` in the same transaction.
        for at in 2000..2010 {
            meta.record_history(
                &HistorySample {
                    at,
                    ..Default::default()
                },
                4,
            )
            .await
            .unwrap();
        }
        let kept: Vec<i64> = meta
            .history_since(0)
            .await
            .unwrap()
            .iter()
            .map(|s| s.at)
            .collect();
        assert_eq!(kept, [2006, 2007, 2008, 2009]);
    }
}
