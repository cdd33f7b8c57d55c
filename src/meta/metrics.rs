//! What the metadata engine counts for `/metrics`: how long each write
//! transaction's commit takes until it is durable, by how it became durable
//! (alone, with its own fsync, or grouped with concurrent writers behind a
//! shared one; see `redb/durability.rs`).
//!
//! Like every layer's handle, it is made of prometheus-client's metric
//! types, owned by the engine ([`super::Meta::index_metrics`]) and
//! registered by the HTTP service, so `meta` names no layer above it. The
//! one label has two values.

use std::fmt::Write;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// How a commit became durable.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum CommitMode {
    /// No other writer was in flight: it committed durably itself.
    Alone,
    /// It shared a durable commit with concurrent writers.
    Grouped,
}

impl EncodeLabelValue for CommitMode {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            Self::Alone => "alone",
            Self::Grouped => "grouped",
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitLabels {
    pub mode: CommitMode,
}

/// A commit histogram: 100 µs to ~3.3 s, doubling.
fn commit_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// The engine's series (cheap to clone: clones share the values).
#[derive(Debug, Clone)]
pub struct IndexMetrics {
    /// Seconds from a write transaction's commit to its durability.
    pub commit_duration: Family<CommitLabels, Histogram, fn() -> Histogram>,
}

impl Default for IndexMetrics {
    fn default() -> Self {
        Self {
            commit_duration: Family::new_with_constructor(commit_histogram),
        }
    }
}

impl IndexMetrics {
    /// Records a commit that took `took` until durable.
    pub fn commit(&self, mode: CommitMode, took: Duration) {
        self.commit_duration
            .get_or_create(&CommitLabels { mode })
            .observe(took.as_secs_f64());
    }
}
