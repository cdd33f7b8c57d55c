//! Garbage collection as a job: every `gc.interval_minutes` (or
//! `gc.interval_seconds`), the content store deletes the chunks unreferenced
//! for longer than `gc.grace_hours` (see `store::gc` for how it stays safe
//! against concurrent uploads). `interval_minutes = 0` schedules nothing:
//! then only `dedupdav gc` collects.
//!
//! A collection is stepped one batch at a time (at most 1000 candidates: one
//! metadata transaction, then their deletions; [`ContentStore::gc_batch`]),
//! so the runner's tranquilizer can pause between batches and shutdown
//! waits only for the batch in progress. A collection cut short leaves
//! nothing inconsistent: the next one starts over from the metadata.

use std::sync::Arc;
use std::time::Duration;

use super::{Batch, Job, JobError};
use crate::config::GcConfig;
use crate::store::{ContentStore, GcRound};

/// The collector's name in the log and metrics.
pub const NAME: &str = "gc";

pub struct GcJob {
    store: Arc<ContentStore>,
    every: Duration,
    grace: Duration,
    /// The collection in progress, between batches.
    round: Option<GcRound>,
}

impl GcJob {
    /// The collector `config` asks for, or `None` when `serve` must not
    /// collect.
    pub fn from_config(store: Arc<ContentStore>, config: &GcConfig) -> Option<Self> {
        let every = config.every()?;
        Some(Self {
            store,
            every,
            grace: config.grace(),
            round: None,
        })
    }
}

impl Job for GcJob {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interval(&self) -> Duration {
        self.every
    }

    async fn step(&mut self) -> Result<Batch, JobError> {
        let round = self
            .round
            .get_or_insert_with(|| self.store.gc_round(self.grace));
        let batch = self.store.gc_batch(round).await;
        let items = match batch {
            Ok(items) => items,
            Err(e) => {
                // The next run starts a new collection.
                self.round = None;
                return Err(e.into());
            }
        };
        if round.is_done() {
            self.round = None;
            return Ok(Batch::done(items));
        }
        Ok(Batch::more(items))
    }
}
