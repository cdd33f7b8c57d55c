//! The metadata upload as a job: every `metadata.upload_interval_secs`,
//! the journal rows after the chain's end are cut into segments, each
//! sealed and put under `meta/` (`store/metadata.rs`), and only then
//! recorded as uploaded and deleted from the journal (one metadata
//! transaction). The journal's format and the chain: `meta/journal.rs`.
//!
//! Why nothing is lost or applied twice: rows leave the journal only in
//! the transaction that records the segment holding them as upstream, and
//! only after its put returned. A crash between the put and that record
//! leaves the rows in the journal and the chain's end unchanged, so the
//! next run seals a segment with the same first sequence and the same
//! predecessor hash and puts it under the same name, replacing the first
//! (the rows from that point are the same ones; only the cut may differ).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{Batch, Job, JobCounter, JobError};
use crate::config::MetadataConfig;
use crate::meta::journal::{ChainHead, JournalError, JournalRow, Segment};
use crate::meta::upstream_gate::{UpstreamGate, WAIT_LIMIT};
use crate::meta::{IndexError, Meta};
use crate::store::{ContentStore, StoreError};

/// The job's name in the log and metrics.
pub const NAME: &str = "metadata";

/// Rows asked of the journal per segment.
const ROWS_PER_SEGMENT: usize = 4096;
/// A segment is cut once its rows pass this many bytes (well below what a
/// metadata object may hold, `crypto::MAX_METADATA_PLAIN`).
const SEGMENT_BYTES: usize = 4 << 20;
/// A lag of this many intervals is logged as a warning.
const LAG_WARNING_INTERVALS: u32 = 10;
/// Zero-lag mode: a run at least this often, should a wake be missed.
const BACKSTOP: Duration = Duration::from_secs(1);
/// Zero-lag mode: the first retry delay after a failed run, doubled per
/// further failure up to [`RETRY_CAP`]: writers are waiting (at most
/// [`WAIT_LIMIT`]), so the runner's minutes-long back-off would not do.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_CAP: Duration = Duration::from_secs(5);

/// Why an upload batch failed (the rows stay in the journal).
#[derive(Debug, thiserror::Error)]
pub enum MetadataUploadError {
    #[error("reading or recording the journal: {0}")]
    Index(#[from] IndexError),
    #[error("building a segment: {0}")]
    Journal(#[from] JournalError),
    #[error("storing a segment: {0}")]
    Store(#[from] StoreError),
}

pub struct MetadataJob {
    meta: Meta,
    store: Arc<ContentStore>,
    every: Duration,
    segments: u64,
    rows: u64,
    bytes: u64,
    waiting: u64,
    lag_secs: u64,
    /// Zero-lag mode: where writers wait and the job is woken.
    gate: Option<Arc<UpstreamGate>>,
}

impl MetadataJob {
    /// The job `config` asks for. In zero-lag mode this also makes every
    /// metadata write through `meta` (and its clones) wait for the job.
    pub fn from_config(meta: Meta, store: Arc<ContentStore>, config: &MetadataConfig) -> Self {
        match config.every() {
            Some(every) => Self::new(meta, store, every),
            None => Self::zero_lag(meta, store, WAIT_LIMIT),
        }
    }

    /// The job in zero-lag mode, its gate installed in `meta`; writes wait
    /// at most `limit`.
    pub fn zero_lag(meta: Meta, store: Arc<ContentStore>, limit: Duration) -> Self {
        let gate = Arc::new(UpstreamGate::new(0, limit));
        if !meta.set_upstream_gate(gate.clone()) {
            tracing::warn!("a metadata upstream gate was already set; keeping the first");
        }
        Self {
            gate: Some(gate),
            ..Self::new(meta, store, BACKSTOP)
        }
    }

    pub fn new(meta: Meta, store: Arc<ContentStore>, every: Duration) -> Self {
        Self {
            meta,
            store,
            every,
            segments: 0,
            rows: 0,
            bytes: 0,
            waiting: 0,
            lag_secs: 0,
            gate: None,
        }
    }

    /// Seals and stores the next segment; the rows it carried, or 0 when
    /// the journal was empty. `more` tells whether rows still wait.
    pub async fn upload_one(&mut self) -> Result<(u64, bool), MetadataUploadError> {
        let head = self.meta.journal_head().await?;
        self.publish(head.last_seq);
        let batch = self
            .meta
            .journal_after(head.last_seq, ROWS_PER_SEGMENT)
            .await?;
        self.note_lag(batch.waiting, batch.oldest);
        if batch.rows.is_empty() {
            return Ok((0, false));
        }
        let rows = cut(batch.rows, SEGMENT_BYTES);
        let count = rows.len() as u64;
        let segment = Segment::after(&head, rows)?;
        let plain = segment.encode();
        self.bytes += self
            .store
            .metadata()
            .put_segment(segment.first, &plain)
            .await?;
        let uploaded = ChainHead {
            last_seq: segment.last,
            hash: Segment::hash(&plain),
        };
        self.meta.journal_uploaded(segment.first, &uploaded).await?;
        self.publish(uploaded.last_seq);
        self.segments += 1;
        self.rows += count;
        self.waiting = batch.waiting.saturating_sub(count);
        if self.waiting == 0 {
            self.lag_secs = 0;
        }
        Ok((count, self.waiting > 0))
    }

    /// Zero-lag mode: tells the writers waiting that the journal up to
    /// `last_seq` is upstream.
    fn publish(&self, last_seq: u64) {
        if let Some(gate) = &self.gate {
            gate.publish(last_seq);
        }
    }

    fn note_lag(&mut self, waiting: u64, oldest: Option<u64>) {
        let now = crate::clock::unix_secs().max(0) as u64;
        self.waiting = waiting;
        self.lag_secs = oldest.map_or(0, |t| now.saturating_sub(t));
        let limit = self.every.saturating_mul(LAG_WARNING_INTERVALS).as_secs();
        if self.lag_secs > limit.max(60) {
            tracing::warn!(
                rows = waiting,
                lag_secs = self.lag_secs,
                "the metadata upstream lags behind the index"
            );
        }
    }
}

/// The longest prefix of `rows` within `max_bytes` (at least one row),
/// ending on a transaction's last row when one lies within it.
fn cut(mut rows: Vec<JournalRow>, max_bytes: usize) -> Vec<JournalRow> {
    let (mut bytes, mut fits, mut last_end) = (0usize, 0usize, None);
    for (i, row) in rows.iter().enumerate() {
        bytes += 22 + row.key.len() + row.value.as_ref().map_or(0, Vec::len);
        if i > 0 && bytes > max_bytes {
            break;
        }
        fits = i + 1;
        if row.ends_transaction {
            last_end = Some(i + 1);
        }
    }
    let keep = if fits == rows.len() {
        fits
    } else {
        last_end.unwrap_or(fits)
    };
    rows.truncate(keep);
    rows
}

impl Job for MetadataJob {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interval(&self) -> Duration {
        self.every
    }

    fn first_delay(&self) -> Duration {
        match self.gate {
            // Writers may wait already (for rows left from before a restart).
            Some(_) => Duration::ZERO,
            None => self.every,
        }
    }

    fn wake(&self) -> Option<Arc<Notify>> {
        self.gate.as_ref().map(|g| g.wakener())
    }

    fn backoff(&self, failures: u32) -> Option<Duration> {
        self.gate.as_ref()?;
        let doublings = failures.saturating_sub(1).min(16);
        Some(RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_CAP))
    }

    fn counters(&self) -> Vec<JobCounter> {
        vec![
            JobCounter::total(
                "metadata_segments_uploaded_total",
                "Sealed metadata segments stored in the backend.",
                self.segments,
            ),
            JobCounter::total(
                "metadata_rows_uploaded_total",
                "Journal rows (index changes) stored in the backend.",
                self.rows,
            ),
            JobCounter::total(
                "metadata_bytes_uploaded_total",
                "Sealed metadata bytes stored in the backend.",
                self.bytes,
            ),
            JobCounter::level(
                "metadata_rows_waiting",
                "Index changes not yet in the backend.",
                self.waiting,
            ),
            JobCounter::level(
                "metadata_lag_seconds",
                "Age of the oldest index change not yet in the backend.",
                self.lag_secs,
            ),
        ]
    }

    async fn step(&mut self) -> Result<Batch, JobError> {
        let (items, more) = self.upload_one().await.map_err(JobError::Metadata)?;
        Ok(if more {
            Batch::more(items)
        } else {
            Batch::done(items)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::journal::JournalTable;

    fn row(seq: u64, len: usize, ends: bool) -> JournalRow {
        JournalRow {
            seq,
            table: JournalTable::Nodes,
            key: vec![0; 8],
            value: Some(vec![1; len]),
            committed: 0,
            ends_transaction: ends,
        }
    }

    #[test]
    fn segments_are_cut_at_a_transaction_end_within_the_bound() {
        let rows = vec![
            row(1, 100, false),
            row(2, 100, true),
            row(3, 100, false),
            row(4, 100, true),
        ];
        assert_eq!(cut(rows.clone(), 10_000).len(), 4);
        assert_eq!(
            cut(rows.clone(), 350).len(),
            2,
            "back to the end of the first transaction"
        );
        let open = vec![row(1, 100, false), row(2, 100, false), row(3, 100, false)];
        assert_eq!(
            cut(open, 300).len(),
            2,
            "one transaction larger than the bound is split"
        );
        assert_eq!(cut(vec![row(1, 1000, true)], 10).len(), 1, "never empty");
    }
}
