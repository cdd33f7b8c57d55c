//! What the backend counts for `/metrics`: every attempt the upstream
//! store sends, by verb and outcome, each attempt's latency, and the
//! retries; and what the local object cache (`cache.rs`) answers.
//!
//! The handle is made of prometheus-client's metric types (atomics behind
//! an `Arc`, usable without a registry). The store that sends the requests
//! owns it and records into it; the HTTP service registers clones of its
//! parts in its own registry ([`super::ObjectStore::upstream_metrics`]), so
//! this layer names no layer above it. Labels come from closed enums:
//! nothing an upstream answers can add a series.

use std::fmt::Write;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// The request methods the backend sends upstream.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Verb {
    Get,
    Head,
    Put,
    Delete,
    Mkcol,
    Propfind,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Mkcol => "MKCOL",
            Self::Propfind => "PROPFIND",
        }
    }
}

impl EncodeLabelValue for Verb {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// Answered as hoped.
    Ok,
    /// The object (or folder) asked for is not there.
    NotFound,
    /// Failed transiently; another attempt follows.
    Retried,
    /// Failed for good (refused, or out of retry time).
    Failed,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Retried => "retried",
            Self::Failed => "failed",
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub verb: Verb,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerbLabels {
    pub verb: Verb,
}

/// A latency histogram: 5 ms to ~41 s, doubling.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// The upstream series (cheap to clone: clones share the values).
#[derive(Debug, Clone)]
pub struct UpstreamMetrics {
    /// Attempts sent, by verb and outcome.
    pub attempts: Family<AttemptLabels, Counter>,
    /// Seconds from sending an attempt to its answer (or failure), by verb.
    pub duration: Family<VerbLabels, Histogram, fn() -> Histogram>,
    /// Attempts repeated after a transient failure, by verb.
    pub retries: Family<VerbLabels, Counter>,
    /// Every attempt and the microseconds they took, summed over all
    /// verbs: what the console's history averages per minute.
    totals: std::sync::Arc<[std::sync::atomic::AtomicU64; 2]>,
}

impl Default for UpstreamMetrics {
    fn default() -> Self {
        Self {
            attempts: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            retries: Family::default(),
            totals: Default::default(),
        }
    }
}

impl UpstreamMetrics {
    /// Records one attempt of `verb` that took `took` and ended in `outcome`.
    pub fn attempt(&self, verb: Verb, outcome: Outcome, took: Duration) {
        self.attempts
            .get_or_create(&AttemptLabels { verb, outcome })
            .inc();
        self.duration
            .get_or_create(&VerbLabels { verb })
            .observe(took.as_secs_f64());
        if outcome == Outcome::Retried {
            self.retries.get_or_create(&VerbLabels { verb }).inc();
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.totals[0].fetch_add(1, Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.totals[1].fetch_add(micros, Relaxed);
    }

    /// Attempts since the process started by outcome, over every verb:
    /// (ok, not found, retried, failed).
    pub fn outcome_totals(&self) -> [u64; 4] {
        const VERBS: [Verb; 6] = [
            Verb::Get,
            Verb::Head,
            Verb::Put,
            Verb::Delete,
            Verb::Mkcol,
            Verb::Propfind,
        ];
        let sum = |o: Outcome| VERBS.iter().map(|v| self.attempts(*v, o)).sum();
        [
            sum(Outcome::Ok),
            sum(Outcome::NotFound),
            sum(Outcome::Retried),
            sum(Outcome::Failed),
        ]
    }

    /// (attempts, microseconds they took) since the process started.
    pub fn latency_totals(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.totals[0].load(Relaxed), self.totals[1].load(Relaxed))
    }

    /// Attempts of `verb` that ended in `outcome` so far.
    pub fn attempts(&self, verb: Verb, outcome: Outcome) -> u64 {
        self.attempts
            .get(&AttemptLabels { verb, outcome })
            .map_or(0, |c| c.get())
    }
}

/// How a read asked of the local object cache ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Lookup {
    /// Served from a cache entry.
    Hit,
    /// No entry: read from the store behind the cache.
    Miss,
    /// An entry failed its check: dropped, and read from the store behind.
    Damaged,
}

impl EncodeLabelValue for Lookup {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Damaged => "damaged",
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    pub outcome: Lookup,
}

/// The local object cache's series (cheap to clone: clones share the
/// values).
#[derive(Debug, Clone, Default)]
pub struct CacheMetrics {
    /// Reads of objects asked of the cache, by outcome.
    pub lookups: Family<LookupLabels, Counter>,
    /// Bytes the cache's entries take on disk now.
    pub stored_bytes: Gauge,
}

impl CacheMetrics {
    /// Counts one read that ended in `outcome`.
    pub fn lookup(&self, outcome: Lookup) {
        self.lookups.get_or_create(&LookupLabels { outcome }).inc();
    }

    /// Reads that ended in `outcome` so far.
    pub fn lookups(&self, outcome: Lookup) -> u64 {
        self.lookups
            .get(&LookupLabels { outcome })
            .map_or(0, |c| c.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_totals_sum_every_attempt_across_clones() {
        let m = UpstreamMetrics::default();
        m.attempt(Verb::Put, Outcome::Ok, Duration::from_millis(3));
        m.clone()
            .attempt(Verb::Get, Outcome::Retried, Duration::from_micros(500));
        assert_eq!(m.latency_totals(), (2, 3_500));
        assert_eq!(m.attempts(Verb::Get, Outcome::Retried), 1);
        assert_eq!(m.outcome_totals(), [1, 0, 1, 0]);
    }
}
