//! Garbage collection as a job: every `gc.interval_minutes` (or
//! `gc.interval_seconds`), the content store deletes the chunks unreferenced
//! for longer than `gc.grace_hours` (see `store::gc` for how it stays safe
//! against concurrent uploads). `interval_minutes = 0` schedules nothing:
//! then only `dedupdav gc` collects.
//!
//! One collection is one batch: the store walks its candidates in rounds of
//! 1000 inside `collect_garbage`, so the safe point the runner waits for on
//! shutdown is the end of a collection (bounded by the runner's wait; an
//! aborted collection leaves at most one round's objects unreferenced
//! upstream, as a failed delete does).

use std::sync::Arc;
use std::time::Duration;

use super::{Batch, Job, JobError};
use crate::config::GcConfig;
use crate::store::ContentStore;

/// The collector's name in the log and metrics.
pub const NAME: &str = "gc";

pub struct GcJob {
    store: Arc<ContentStore>,
    every: Duration,
    grace: Duration,
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
        let report = self.store.collect_garbage(self.grace, |_| {}).await?;
        Ok(Batch::done(report.deleted + report.abandoned))
    }
}
