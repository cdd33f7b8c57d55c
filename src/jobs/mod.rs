//! Background work's one home: the [`Job`] trait and the [`Runner`] that
//! schedules jobs, throttles them, backs off after errors, keeps a status
//! table for the log and `/metrics`, and stops them at a safe point.
//!
//! A job's *run* is a sequence of *batches* ([`Job::step`]), each a bounded
//! piece of work. Between batches the runner
//! - checks the shutdown signal (a batch is the safe point: it is never
//!   interrupted unless it outlives [`RunnerConfig::shutdown_wait`]);
//! - sleeps `t × tranquility` after a batch that took `t` (the tranquilizer,
//!   as in garage: a job that finds much work gives the foreground at least
//!   `1 / (1 + tranquility)` of the time it would take).
//!
//! A job may rest longer than the tranquilizer asks ([`Job::rest_after`]:
//! the scrub holds a byte rate) and show counters of its own in `/metrics`
//! ([`Job::counters`]).
//!
//! After a run the job waits its interval; after a failed run it retries
//! sooner, after a back-off that doubles per consecutive failure up to a cap
//! (or the job's own, [`Job::backoff`]). A job may also be woken before its
//! interval ends ([`Job::wake`]): the zero-lag metadata upload runs as soon
//! as a write waits for it, and stays an ordinary job, with its status,
//! counters and shutdown, instead of a loop of its own. Any job can be
//! asked to run now by name ([`JobStatus::run_now`], the admin API's
//! `POST /api/v1/jobs/{name}/run`): that ends its wait, a back-off too.
//! The jobs: [`gc`] (garbage collection), [`expire`] (stale chunked
//! upload sessions), [`scrub`] (reading every object back), [`sweep`]
//! (objects no record names), [`metadata`] (the journal sealed upstream)
//! and [`snapshot`] (compacted snapshots of the metadata).

pub mod expire;
pub mod gc;
pub mod history;
pub mod metadata;
pub mod repack;
pub mod scrub;
pub mod snapshot;
pub mod sweep;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Items handled (objects deleted, sessions expired, …).
    pub items: u64,
    /// Whether more work is waiting: the run goes on with another batch.
    pub more: bool,
}

impl Batch {
    /// The last batch of a run.
    pub fn done(items: u64) -> Self {
        Self { items, more: false }
    }

    /// A batch after which more work is waiting.
    pub fn more(items: u64) -> Self {
        Self { items, more: true }
    }
}

/// Why a batch failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("garbage collection failed: {0}")]
    Gc(#[from] crate::store::StoreError),
    #[error("expiring stale uploads failed: {0}")]
    Expire(#[from] crate::meta::UploadError),
    #[error("expiring WebDAV locks failed: {0}")]
    ExpireLocks(#[source] crate::meta::IndexError),
    #[error("scrub failed: {0}")]
    Scrub(#[source] crate::store::StoreError),
    #[error("orphan sweep failed: {0}")]
    Sweep(#[source] crate::store::StoreError),
    #[error("metadata snapshot failed: {0}")]
    Snapshot(#[source] crate::store::StoreError),
    #[error("recording the history failed: {0}")]
    History(#[source] crate::meta::IndexError),
    #[error("metadata upload failed: {0}")]
    Metadata(#[source] metadata::MetadataUploadError),
    #[cfg(test)]
    #[error("test failure: {0}")]
    Test(&'static str),
}

/// A piece of background work run by the [`Runner`].
pub trait Job: Send + 'static {
    /// A fixed name: it labels the job's metrics, so the set stays bounded.
    fn name(&self) -> &'static str;

    /// Time between the end of a run and the start of the next.
    fn interval(&self) -> Duration;

    /// Delay before the first run (by default one interval).
    fn first_delay(&self) -> Duration {
        self.interval()
    }

    /// The tranquilizer factor: after a batch that took `t`, the runner
    /// sleeps `t × tranquility` before the next batch of the same run.
    fn tranquility(&self) -> u32 {
        0
    }

    /// How long to rest after a batch that took `took`, before the next
    /// batch of the same run: by default the tranquilizer's
    /// `took × tranquility`.
    fn rest_after(&self, took: Duration) -> Duration {
        took.saturating_mul(self.tranquility())
    }

    /// Counters of this job's own for `/metrics`, read after every batch.
    /// Their names are fixed (and name the job), so the set stays bounded.
    fn counters(&self) -> Vec<JobCounter> {
        Vec::new()
    }

    /// What wakes this job before its interval ends, if anything: a
    /// notification ends the wait between runs at once (one that arrives
    /// during a run is kept, so the next run follows it). Runs of a woken
    /// job are routine, so the log shows them at debug only.
    fn wake(&self) -> Option<Arc<Notify>> {
        None
    }

    /// The retry delay after `failures` consecutive failed runs (≥ 1), if
    /// this job needs another than the runner's (a job others wait for
    /// cannot back off for minutes).
    fn backoff(&self, _failures: u32) -> Option<Duration> {
        None
    }

    /// Does one bounded batch of work.
    fn step(&mut self) -> impl Future<Output = Result<Batch, JobError>> + Send;
}

/// One of a job's own series in `/metrics` (`dedupdav_<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobCounter {
    pub name: &'static str,
    pub help: &'static str,
    /// A gauge (a level) rather than a counter (a running total).
    pub gauge: bool,
    pub value: u64,
}

impl JobCounter {
    /// A running total.
    pub fn total(name: &'static str, help: &'static str, value: u64) -> Self {
        Self {
            name,
            help,
            gauge: false,
            value,
        }
    }

    /// A level that goes up and down.
    pub fn level(name: &'static str, help: &'static str, value: u64) -> Self {
        Self {
            name,
            help,
            gauge: true,
            value,
        }
    }
}

/// A job's entry in the status table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobState {
    /// A run is in progress.
    pub running: bool,
    pub last_start: Option<SystemTime>,
    pub last_end: Option<SystemTime>,
    pub last_success: Option<SystemTime>,
    /// Runs finished (successful or not).
    pub runs: u64,
    pub items_last_run: u64,
    pub items_total: u64,
    pub errors_total: u64,
    pub last_error: Option<String>,
    /// The job's own counters, as of its last batch.
    pub counters: Vec<JobCounter>,
}

/// The status of every job, shared with whoever shows it (log, metrics),
/// and the way to ask one to run now.
#[derive(Debug, Default)]
pub struct JobStatus {
    jobs: Mutex<BTreeMap<&'static str, JobState>>,
    /// Per job: a notification that ends its wait at once.
    triggers: Mutex<BTreeMap<&'static str, Arc<Notify>>>,
}

impl JobStatus {
    /// Asks job `name` to start a run now: at once when it waits, right
    /// after the current run when one is in progress. False when no such
    /// job runs.
    pub fn run_now(&self, name: &str) -> bool {
        match self.triggers.lock().get(name) {
            Some(t) => {
                t.notify_one();
                true
            }
            None => false,
        }
    }

    /// The trigger of job `name`, made on first use.
    fn trigger(&self, name: &'static str) -> Arc<Notify> {
        self.triggers.lock().entry(name).or_default().clone()
    }

    /// A copy of every job's state, by name.
    pub fn snapshot(&self) -> Vec<(&'static str, JobState)> {
        self.jobs
            .lock()
            .iter()
            .map(|(n, s)| (*n, s.clone()))
            .collect()
    }

    /// A copy of one job's state.
    pub fn get(&self, name: &str) -> Option<JobState> {
        self.jobs.lock().get(name).cloned()
    }

    fn update(&self, name: &'static str, f: impl FnOnce(&mut JobState)) {
        f(self.jobs.lock().entry(name).or_default());
    }
}

/// The runner's own timing.
#[derive(Debug, Clone, Copy)]
pub struct RunnerConfig {
    /// Retry delay after the first failed run; doubled per further failure.
    pub backoff_first: Duration,
    /// The longest retry delay.
    pub backoff_cap: Duration,
    /// How long [`Runner::shutdown`] waits for a batch in progress.
    pub shutdown_wait: Duration,
    /// A run that takes longer is logged at info.
    pub long_run: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            backoff_first: Duration::from_secs(30),
            backoff_cap: Duration::from_secs(3600),
            // A GC batch deletes up to 1000 objects, 8 at a time: a few
            // seconds on a healthy upstream.
            shutdown_wait: Duration::from_secs(10),
            long_run: Duration::from_secs(60),
        }
    }
}

impl RunnerConfig {
    /// The retry delay after `failures` consecutive failed runs (≥ 1).
    fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.backoff_first
            .saturating_mul(1 << doublings)
            .min(self.backoff_cap)
    }
}

/// Owns the jobs' tasks: starts them, and stops them on shutdown.
pub struct Runner {
    config: RunnerConfig,
    status: Arc<JobStatus>,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Runner {
    pub fn new(config: RunnerConfig) -> Self {
        Self {
            config,
            status: Arc::default(),
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }

    /// The status table, to show in the log or metrics.
    pub fn status(&self) -> Arc<JobStatus> {
        self.status.clone()
    }

    /// Starts `job` on its schedule (on the current tokio runtime).
    pub fn spawn<J: Job>(&mut self, job: J) {
        let name = job.name();
        let counters = job.counters();
        self.status.update(name, |s| s.counters = counters);
        let driver = Driver {
            name,
            config: self.config,
            status: self.status.clone(),
            stop: self.stop.subscribe(),
            quiet: false,
        };
        self.tasks.push((name, tokio::spawn(driver.drive(job))));
    }

    /// Tells every job to stop at its next safe point and waits at most
    /// `shutdown_wait` for the batches in progress; jobs still busy then
    /// are aborted. Returns the names of the aborted jobs.
    pub async fn shutdown(self) -> Vec<&'static str> {
        let _ = self.stop.send(true);
        let deadline = Instant::now() + self.config.shutdown_wait;
        let mut aborted = Vec::new();
        for (name, mut task) in self.tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                tracing::warn!(
                    job = name,
                    waited_ms = self.config.shutdown_wait.as_millis() as u64,
                    "job did not reach a safe point in time; aborted"
                );
                aborted.push(name);
            }
        }
        aborted
    }
}

/// How a run ended.
enum RunEnd {
    Finished,
    Failed,
    Stopped,
}

/// One job's loop: wait, run batches, record, repeat.
struct Driver {
    name: &'static str,
    config: RunnerConfig,
    status: Arc<JobStatus>,
    stop: watch::Receiver<bool>,
    /// Runs are logged at debug only (a woken job's are routine).
    quiet: bool,
}

impl Driver {
    async fn drive<J: Job>(mut self, mut job: J) {
        let mut delay = job.first_delay();
        let mut failures = 0u32;
        let wake = job.wake();
        self.quiet = wake.is_some();
        let trigger = self.status.trigger(self.name);
        loop {
            // Only the wait after a success may be cut short by a wake: a
            // back-off is kept (the wake is not lost, it ends the next wait).
            // A run asked for by name ends any wait.
            let wake = if failures == 0 { wake.as_deref() } else { None };
            if self.pause_or_wake(delay, wake, Some(&trigger)).await {
                return;
            }
            match self.run(&mut job).await {
                RunEnd::Stopped => return,
                RunEnd::Finished => {
                    failures = 0;
                    delay = job.interval();
                }
                RunEnd::Failed => {
                    failures = failures.saturating_add(1);
                    delay = job
                        .backoff(failures)
                        .unwrap_or_else(|| self.config.backoff(failures));
                    tracing::debug!(
                        job = self.name,
                        retry_in_ms = delay.as_millis() as u64,
                        "job backs off"
                    );
                }
            }
        }
    }

    /// Sleeps `delay` unless told to stop first; true when stopping.
    async fn pause(&mut self, delay: Duration) -> bool {
        self.pause_or_wake(delay, None, None).await
    }

    /// Sleeps `delay` unless woken by `wake` or `trigger`, or told to stop
    /// first; true when stopping.
    async fn pause_or_wake(
        &mut self,
        delay: Duration,
        wake: Option<&Notify>,
        trigger: Option<&Notify>,
    ) -> bool {
        if *self.stop.borrow() {
            return true;
        }
        async fn notified(n: Option<&Notify>) {
            match n {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => *self.stop.borrow(),
            _ = notified(wake) => *self.stop.borrow(),
            _ = notified(trigger) => *self.stop.borrow(),
            _ = self.stop.changed() => true,
        }
    }

    /// One run: batches until the job says it is done, fails, or the
    /// runner stops (checked between batches).
    async fn run<J: Job>(&mut self, job: &mut J) -> RunEnd {
        let started = Instant::now();
        self.status.update(self.name, |s| {
            s.running = true;
            s.last_start = Some(SystemTime::now());
            s.items_last_run = 0;
        });
        let mut items = 0u64;
        let end = loop {
            let batch_start = Instant::now();
            let batch = job.step().await;
            let took = batch_start.elapsed();
            let counters = job.counters();
            self.status.update(self.name, |s| s.counters = counters);
            match batch {
                Ok(b) => {
                    items += b.items;
                    self.status.update(self.name, |s| {
                        s.items_last_run = items;
                        s.items_total += b.items;
                    });
                    if !b.more {
                        break RunEnd::Finished;
                    }
                }
                Err(e) => {
                    tracing::warn!(job = self.name, error = %e, "job failed; retrying after a back-off");
                    self.status.update(self.name, |s| {
                        s.errors_total += 1;
                        s.last_error = Some(e.to_string());
                    });
                    break RunEnd::Failed;
                }
            }
            if self.pause(job.rest_after(took)).await {
                break RunEnd::Stopped;
            }
        };
        self.finish(&end, items, started.elapsed());
        end
    }

    fn finish(&self, end: &RunEnd, items: u64, took: Duration) {
        let now = SystemTime::now();
        self.status.update(self.name, |s| {
            s.running = false;
            s.last_end = Some(now);
            s.runs += 1;
            if matches!(end, RunEnd::Finished) {
                s.last_success = Some(now);
            }
        });
        let ms = took.as_millis() as u64;
        let notable = (items > 0 && !self.quiet) || took >= self.config.long_run;
        if matches!(end, RunEnd::Finished) && notable {
            tracing::info!(job = self.name, items, ms, "job run");
        } else {
            tracing::debug!(job = self.name, items, ms, "job run");
        }
    }
}

#[cfg(test)]
mod tests;
