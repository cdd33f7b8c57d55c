//! Expiry as a job: chunked-upload sessions untouched for longer than
//! `uploads.expire_hours` are dropped, releasing the chunks they hold, and
//! the records of WebDAV locks past their deadline are deleted. This is the
//! one place expiry is scheduled (it used to run from a timer in the HTTP
//! service and again from the uploads endpoint). An expired lock stops
//! counting the moment its deadline passes; this only clears its record.
//!
//! The sessions live in the metadata, but the ownCloud adapter keeps running
//! digests for them in memory; the HTTP service implements [`StaleSessions`] so
//! this job needs nothing of it but that one call.

use std::sync::Arc;
use std::time::Duration;

use super::{Batch, Job, JobError};
use crate::meta::{Meta, UploadError};
use futures_util::future::BoxFuture;

/// The expiry job's name in the log and metrics.
pub const NAME: &str = "expire_uploads";

/// How often stale sessions are looked for. Sessions live 24 h by default:
/// ten minutes late is nothing, and a sweep is one index transaction.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Whoever holds the upload sessions.
pub trait StaleSessions: Send + Sync + 'static {
    /// Drops the sessions untouched for longer than their TTL before `now`
    /// (Unix seconds); returns how many.
    fn expire_stale(&self, now: i64) -> BoxFuture<'_, Result<usize, UploadError>>;
}

pub struct ExpireJob {
    sessions: Arc<dyn StaleSessions>,
    /// Where the lock records live.
    meta: Meta,
    every: Duration,
}

impl ExpireJob {
    pub fn new(sessions: Arc<dyn StaleSessions>, meta: Meta) -> Self {
        Self {
            sessions,
            meta,
            every: SWEEP_EVERY,
        }
    }
}

impl Job for ExpireJob {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interval(&self) -> Duration {
        self.every
    }

    /// Sessions and locks left over from before a restart go at once.
    fn first_delay(&self) -> Duration {
        Duration::ZERO
    }

    async fn step(&mut self) -> Result<Batch, JobError> {
        let now = crate::clock::unix_secs();
        let expired = self.sessions.expire_stale(now).await?;
        let locks = self
            .meta
            .expire_locks(crate::clock::unix_millis())
            .await
            .map_err(JobError::ExpireLocks)?;
        if locks > 0 {
            tracing::debug!(locks, "expired lock records removed");
        }
        Ok(Batch::done((expired + locks) as u64))
    }
}
