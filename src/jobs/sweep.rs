//! The orphan sweep as a job: every `sweep.interval_hours` (or
//! `sweep.interval_seconds`), objects in the backend that no record names
//! and that are older than `gc.grace_hours` are deleted (see `store::sweep`
//! for why an upload of the same chunk can never lose its object).
//! `interval_hours = 0` schedules nothing: then only `dedupdav gc
//! --orphans` sweeps.
//!
//! A sweep is stepped one shard of fan-out folders at a time (16 shards:
//! a listing, one or two walks of the records, then the deletions;
//! [`ContentStore::sweep_batch`]), so the tranquilizer pauses between
//! shards and shutdown waits only for the shard in progress. A sweep cut
//! short leaves nothing inconsistent: its claims are released and the next
//! sweep starts over from the listing.

use std::sync::Arc;
use std::time::Duration;

use super::{Batch, Job, JobCounter, JobError};
use crate::config::{GcConfig, SweepConfig};
use crate::store::{ContentStore, SweepRound};

/// The sweep's name in the log and metrics.
pub const NAME: &str = "sweep";

/// After a shard that took `t`, rest `t` before the next.
const TRANQUILITY: u32 = 1;

pub struct SweepJob {
    store: Arc<ContentStore>,
    every: Duration,
    grace: Duration,
    /// The sweep in progress, between shards.
    round: Option<SweepRound>,
    deleted: u64,
    bytes_freed: u64,
}

impl SweepJob {
    /// The sweep `config` asks for (with the collector's grace period), or
    /// `None` when `serve` must not sweep.
    pub fn from_config(
        store: Arc<ContentStore>,
        config: &SweepConfig,
        gc: &GcConfig,
    ) -> Option<Self> {
        Some(Self {
            store,
            every: config.every()?,
            grace: gc.grace(),
            round: None,
            deleted: 0,
            bytes_freed: 0,
        })
    }
}

impl Job for SweepJob {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interval(&self) -> Duration {
        self.every
    }

    fn tranquility(&self) -> u32 {
        TRANQUILITY
    }

    fn counters(&self) -> Vec<JobCounter> {
        vec![
            JobCounter {
                name: "sweep_objects_deleted_total",
                help: "Objects no record named that the orphan sweep deleted.",
                gauge: false,
                value: self.deleted,
            },
            JobCounter {
                name: "sweep_bytes_freed_total",
                help: "Backend bytes the orphan sweep freed.",
                gauge: false,
                value: self.bytes_freed,
            },
        ]
    }

    async fn step(&mut self) -> Result<Batch, JobError> {
        let round = self
            .round
            .get_or_insert_with(|| self.store.sweep_round(self.grace));
        let freed_before = round.report.bytes_freed;
        let items = match self.store.sweep_batch(round).await {
            Ok(items) => items,
            Err(e) => {
                // The next run starts a new sweep.
                self.round = None;
                return Err(JobError::Sweep(e));
            }
        };
        self.deleted += items;
        self.bytes_freed += round.report.bytes_freed - freed_before;
        if round.is_done() {
            self.round = None;
            return Ok(Batch::done(items));
        }
        Ok(Batch::more(items))
    }
}
