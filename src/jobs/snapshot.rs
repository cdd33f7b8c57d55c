//! Snapshots of the metadata as a job: every
//! `metadata.snapshot_interval_minutes` (default 60) a compacted snapshot
//! of the whole index is sealed upstream (`store/snapshot.rs`), then what
//! it made redundant is deleted: snapshots beyond the two newest, and the
//! chain segments before the older kept one. A restore then reads one
//! snapshot and the segments after it, however long the gateway has run.
//!
//! The first run comes when the newest snapshot is one interval old, or
//! soon after start when there is none (an index older than the journal
//! has changes no segment holds, so its first snapshot is its base). A run
//! with nothing changed since the newest snapshot seals nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Batch, Job, JobCounter, JobError};
use crate::config::MetadataConfig;
use crate::meta::IndexError;
use crate::store::ContentStore;

/// The job's name in the log and metrics.
pub const NAME: &str = "snapshot";

/// The first run when there is no snapshot yet: soon, not at once, so a
/// gateway started only to be stopped again does not seal one.
const FIRST_SNAPSHOT_DELAY: Duration = Duration::from_secs(5);

pub struct SnapshotJob {
    store: Arc<ContentStore>,
    work_dir: PathBuf,
    every: Duration,
    first_delay: Duration,
    sealed: u64,
    stored_bytes: u64,
    deleted: u64,
    generation: u64,
}

impl SnapshotJob {
    /// The job `config` asks for, or `None` when snapshots are off; dumps
    /// are written in `work_dir` (the data directory) and removed after.
    pub async fn from_config(
        store: Arc<ContentStore>,
        work_dir: PathBuf,
        config: &MetadataConfig,
    ) -> Result<Option<Self>, IndexError> {
        let Some(every) = config.snapshot_every() else {
            return Ok(None);
        };
        let newest = store.meta().snapshots().await?.pop();
        let now = crate::clock::unix_secs().max(0) as u64;
        let first_delay = match &newest {
            None => FIRST_SNAPSHOT_DELAY,
            Some(h) => {
                let age = Duration::from_secs(now.saturating_sub(h.created));
                every.saturating_sub(age).max(FIRST_SNAPSHOT_DELAY)
            }
        };
        Ok(Some(Self {
            store,
            work_dir,
            every,
            first_delay,
            sealed: 0,
            stored_bytes: 0,
            deleted: 0,
            generation: newest.map_or(0, |h| h.generation),
        }))
    }
}

impl Job for SnapshotJob {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interval(&self) -> Duration {
        self.every
    }

    fn first_delay(&self) -> Duration {
        self.first_delay
    }

    fn counters(&self) -> Vec<JobCounter> {
        vec![
            JobCounter::total(
                "snapshots_sealed_total",
                "Metadata snapshots sealed in the backend.",
                self.sealed,
            ),
            JobCounter::total(
                "snapshot_bytes_uploaded_total",
                "Sealed bytes of new snapshot pieces and heads stored in the backend.",
                self.stored_bytes,
            ),
            JobCounter::total(
                "snapshot_objects_deleted_total",
                "Snapshot heads, pieces and chain segments deleted as redundant.",
                self.deleted,
            ),
            JobCounter::level(
                "snapshot_generation",
                "Number of the newest sealed metadata snapshot.",
                self.generation,
            ),
        ]
    }

    async fn step(&mut self) -> Result<Batch, JobError> {
        let sealed = self.store.seal_snapshot(&self.work_dir).await;
        let report = sealed.map_err(JobError::Snapshot)?;
        if let Some(r) = &report {
            tracing::info!(
                generation = r.generation,
                rows = r.rows,
                dump_bytes = r.dump_bytes,
                pieces = r.pieces,
                new_pieces = r.new_pieces,
                stored_bytes = r.stored_bytes,
                "sealed a metadata snapshot"
            );
            self.sealed += 1;
            self.stored_bytes += r.stored_bytes;
            self.generation = r.generation;
        }
        let deleted = self.store.prune_snapshots().await;
        self.deleted += deleted.map_err(JobError::Snapshot)?;
        Ok(Batch::done(report.map_or(0, |r| r.rows)))
    }
}
