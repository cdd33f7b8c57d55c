//! What the upload pipeline counts for `/metrics`: chunks found already
//! stored (dedup hits) against new ones, and the bytes the hits saved.
//!
//! Like every layer's handle, it is made of prometheus-client's metric
//! types, owned here ([`super::ContentStore::metrics`]) and registered by
//! the HTTP service, so the store names no layer above it. The one label
//! has two values.

use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Whether a chunk of an upload was already stored.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Dedup {
    /// The index knew the chunk: nothing was sealed or sent.
    Hit,
    /// A new chunk: sealed and stored.
    Miss,
}

impl EncodeLabelValue for Dedup {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DedupLabels {
    pub result: Dedup,
}

/// The store's series (cheap to clone: clones share the values).
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// Chunks of uploads, by whether they were already stored.
    pub chunks: Family<DedupLabels, Counter>,
    /// Plaintext bytes of chunks found already stored (not stored again).
    pub bytes_saved: Counter,
    /// Plaintext bytes of new chunks (sealed and stored).
    pub bytes_new: Counter,
    /// Packs written upstream.
    pub packs: Counter,
    /// Entries in those packs.
    pub packed_chunks: Counter,
}

impl Default for StoreMetrics {
    /// Both results shown from the start, at 0.
    fn default() -> Self {
        let chunks = Family::<DedupLabels, Counter>::default();
        for result in [Dedup::Hit, Dedup::Miss] {
            let _ = chunks.get_or_create(&DedupLabels { result });
        }
        Self {
            chunks,
            bytes_saved: Counter::default(),
            bytes_new: Counter::default(),
            packs: Counter::default(),
            packed_chunks: Counter::default(),
        }
    }
}

impl StoreMetrics {
    /// Records one chunk of `len` plaintext bytes.
    pub fn chunk(&self, result: Dedup, len: u64) {
        self.chunks.get_or_create(&DedupLabels { result }).inc();
        match result {
            Dedup::Hit => self.bytes_saved.inc_by(len),
            Dedup::Miss => self.bytes_new.inc_by(len),
        };
    }

    /// Records one pack of `entries` chunks written upstream.
    pub fn pack(&self, entries: u64, _bytes: u64) {
        self.packs.inc();
        self.packed_chunks.inc_by(entries);
    }

    /// Chunks with this result so far.
    pub fn chunks(&self, result: Dedup) -> u64 {
        self.chunks
            .get(&DedupLabels { result })
            .map_or(0, |c| c.get())
    }
}
