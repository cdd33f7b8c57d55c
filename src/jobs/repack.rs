//! Pack GC as a job: on the collector's schedule (`gc.interval_minutes`),
//! packs whose live share fell below `gc.repack_below_percent`, and packs
//! too small to be worth an object of their own, are rewritten into full
//! ones (see `store::repack` for why this races neither uploads, reads nor
//! the collector). One batch is at most one new pack, so the runner's
//! tranquilizer paces the pass and shutdown waits for one pack at most.

use std::sync::Arc;
use std::time::Duration;

use super::{Batch, Job, JobError};
use crate::config::GcConfig;
use crate::store::{ContentStore, RepackRound};

/// The repacker's name in the log and metrics.
pub const NAME: &str = "repack";

pub struct RepackJob {
    store: Arc<ContentStore>,
    every: Duration,
    below_percent: u64,
    round: Option<RepackRound>,
}

impl RepackJob {
    /// The repacker `config` asks for: it runs when the collector does.
    pub fn from_config(store: Arc<ContentStore>, config: &GcConfig) -> Option<Self> {
        Some(Self {
            store,
            every: config.every()?,
            below_percent: config.repack_below_percent.min(100),
            round: None,
        })
    }
}

impl Job for RepackJob {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interval(&self) -> Duration {
        self.every
    }

    async fn step(&mut self) -> Result<Batch, JobError> {
        let round = self.round.get_or_insert_with(|| self.store.repack_round());
        let items = match self.store.repack_batch(round, self.below_percent).await {
            Ok(items) => items,
            Err(e) => {
                self.round = None;
                return Err(e.into());
            }
        };
        if round.is_done() {
            let report = &round.report;
            if report.packs_rewritten > 0 {
                tracing::info!(
                    rewritten = report.packs_rewritten,
                    written = report.packs_written,
                    moved = report.chunks_moved,
                    deleted = report.packs_deleted,
                    bytes_freed = report.bytes_freed,
                    damaged = report.damaged_entries,
                    "repacked"
                );
            }
            self.round = None;
            return Ok(Batch::done(items));
        }
        Ok(Batch::more(items))
    }
}
