//! The scrub as a job: every object the metadata knows is read back,
//! authenticated and re-hashed (`ContentStore::verify_object`, the check
//! every download makes), so the admin learns of a corrupt or missing
//! object before a user does. A corrupt object is never served either way
//! (invariant 1); the scrub only finds it first.
//!
//! - **Order and resumption.** A pass walks the chunk records in id order
//!   (`Meta::chunks_page`), one batch per step. Each batch's position and
//!   findings are saved in one metadata transaction, so a restart resumes
//!   after the last saved batch (at most one batch is read twice), and a
//!   restart between passes waits out the rest of the interval.
//! - **Throttling.** One object at a time, within the transfer budget;
//!   after a batch that read `b` bytes in `t`, the runner rests at least
//!   `t × tranquility` and at least `b / bytes_per_second − t`, so the
//!   average read rate stays under `scrub.bytes_per_second`.
//! - **Findings.** An error line in the log per missing or corrupt object
//!   (corrupt: it does not open, or the backend never returns it whole),
//!   naming the object and the chunk; kept in the metadata
//!   (`Meta::scrub_findings`, at most 1000, dropped once the object reads
//!   back whole or a later pass no longer finds it) for `dedupdav check`;
//!   counters in `/metrics` (`dedupdav_scrub_*`). Any other failure to
//!   read an object (upstream down, a refusal) fails the batch: the runner
//!   retries after its back-off, from the same position, and counts the
//!   error in `dedupdav_job_errors_total{job="scrub"}`.

use std::sync::Arc;
use std::time::Duration;

use super::{Batch, Job, JobCounter, JobError};
use crate::config::ScrubConfig;
use crate::crypto::{ChunkId, ChunkIdKey};
use crate::meta::scrub::MAX_FINDINGS;
use crate::meta::{ChunkRecord, Meta, ScrubFinding, ScrubProblem, ScrubState};
use crate::store::{ContentStore, ObjectHealth, StoreError};

/// The scrub's name in the log and metrics.
pub const NAME: &str = "scrub";

/// Objects read per batch.
const BATCH: usize = 100;

/// The longest wait before a pass left unfinished by a restart (or the
/// first pass ever) goes on.
const RESUME_AFTER: Duration = Duration::from_secs(60);

pub struct ScrubJob {
    store: Arc<ContentStore>,
    meta: Meta,
    every: Duration,
    first_delay: Duration,
    bytes_per_second: u64,
    tranquility: u32,
    batch: usize,
    /// Bytes the last batch read (for the byte rate).
    last_batch_bytes: u64,
    totals: Totals,
}

/// What this process's scrub has seen, for `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    checked: u64,
    bytes: u64,
    corrupt: u64,
    missing: u64,
    /// Findings kept in the metadata, as of the last batch.
    kept: u64,
}

/// What one batch found.
#[derive(Default)]
struct BatchOutcome {
    found: Vec<ScrubFinding>,
    sound: Vec<[u8; 32]>,
    bytes: u64,
}

impl ScrubJob {
    /// The scrub `config` asks for, or `None` when there is none. Reads
    /// where the scrub stands to decide when it goes on.
    pub async fn from_config(
        store: Arc<ContentStore>,
        meta: Meta,
        config: &ScrubConfig,
    ) -> Result<Option<Self>, JobError> {
        let Some(every) = config.every() else {
            return Ok(None);
        };
        let state = meta.scrub_state().await.map_err(scrub_error)?;
        let kept = meta
            .scrub_findings(MAX_FINDINGS)
            .await
            .map_err(scrub_error)?;
        let first_delay = first_delay(&state, every, now_secs());
        Ok(Some(Self {
            store,
            meta,
            every,
            first_delay,
            bytes_per_second: config.bytes_per_second,
            tranquility: config.tranquility,
            batch: BATCH,
            last_batch_bytes: 0,
            totals: Totals {
                kept: kept.len() as u64,
                ..Totals::default()
            },
        }))
    }

    /// Reads `objects` per batch instead of 100.
    pub fn with_batch(mut self, objects: usize) -> Self {
        self.batch = objects.max(1);
        self
    }

    /// The pass in progress, started now if there is none.
    async fn pass(&self) -> Result<ScrubState, StoreError> {
        let state = self.meta.scrub_state().await?;
        if state.in_pass() {
            return Ok(state);
        }
        tracing::debug!(job = NAME, "scrub pass starts");
        Ok(self.meta.start_scrub_pass(now_secs()).await?)
    }

    /// Every key a chunk may be under: read after the page, so every chunk
    /// in it belongs to a user in the list (or to one removed since).
    async fn keys(&self) -> Result<Arc<[ChunkIdKey]>, StoreError> {
        let users = self.meta.users().await?;
        let ids: Vec<u64> = users.iter().map(|u| u.id).collect();
        Ok(self.store.keys_of_every_scope(&ids))
    }

    /// Reads every object of `page`.
    async fn check_page(
        &mut self,
        page: &[([u8; 32], ChunkRecord)],
        keys: &Arc<[ChunkIdKey]>,
        pass: u64,
    ) -> Result<BatchOutcome, StoreError> {
        let mut outcome = BatchOutcome::default();
        for (id, rec) in page {
            let verified = self.store.verify_object(ChunkId(*id), keys).await?;
            outcome.bytes += verified.bytes_read;
            self.totals.checked += 1;
            match verified.health {
                ObjectHealth::Sound => outcome.sound.push(*id),
                ObjectHealth::Missing => outcome.found.push(self.finding(*id, rec, pass, None)),
                ObjectHealth::Corrupt(cause) => {
                    let cause = Some(cause.to_string());
                    outcome.found.push(self.finding(*id, rec, pass, cause))
                }
                ObjectHealth::Unreadable(cause) => {
                    outcome
                        .found
                        .push(self.finding(*id, rec, pass, Some(cause)))
                }
                ObjectHealth::Unowned | ObjectHealth::Collected => {}
            }
        }
        self.totals.bytes += outcome.bytes;
        Ok(outcome)
    }

    /// Logs and counts a missing (`cause` None) or corrupt object found
    /// by pass `pass`.
    fn finding(
        &mut self,
        id: [u8; 32],
        rec: &ChunkRecord,
        pass: u64,
        cause: Option<String>,
    ) -> ScrubFinding {
        let object = self.store.object_name_of(&ChunkId(id), rec);
        let chunk = hex::encode(id);
        let (problem, detail) = match cause {
            None => {
                self.totals.missing += 1;
                tracing::error!(job = NAME, %object, %chunk, "scrub: object missing from the backend");
                (
                    ScrubProblem::Missing,
                    "the backend does not have it".to_string(),
                )
            }
            Some(cause) => {
                self.totals.corrupt += 1;
                tracing::error!(job = NAME, %object, %chunk, %cause, "scrub: object corrupt");
                (ScrubProblem::Corrupt, cause)
            }
        };
        ScrubFinding {
            id,
            problem,
            found: now_secs(),
            pass,
            detail,
        }
    }

    /// Ends the pass and says so in the log.
    async fn finish(&mut self) -> Result<(), StoreError> {
        let state = self.meta.finish_scrub_pass(now_secs()).await?;
        let kept = self.meta.scrub_findings(MAX_FINDINGS).await?.len() as u64;
        self.totals.kept = kept;
        if kept > 0 {
            tracing::warn!(
                job = NAME,
                checked = state.last_pass_checked,
                findings = kept,
                "scrub pass finished with findings"
            );
        } else {
            tracing::info!(
                job = NAME,
                checked = state.last_pass_checked,
                "scrub pass finished; every object is sound"
            );
        }
        Ok(())
    }

    async fn batch(&mut self) -> Result<Batch, StoreError> {
        let state = self.pass().await?;
        let page = self.meta.chunks_page(state.position, self.batch).await?;
        let Some(last) = page.last().map(|(id, _)| *id) else {
            self.last_batch_bytes = 0;
            self.finish().await?;
            return Ok(Batch::done(0));
        };
        let keys = self.keys().await?;
        let outcome = self.check_page(&page, &keys, state.pass).await?;
        self.last_batch_bytes = outcome.bytes;
        let n = page.len() as u64;
        self.meta
            .record_scrub_batch(last, n, &outcome.found, &outcome.sound)
            .await?;
        if !outcome.found.is_empty() || !outcome.sound.is_empty() {
            self.totals.kept = self.meta.scrub_findings(MAX_FINDINGS).await?.len() as u64;
        }
        if page.len() < self.batch {
            self.finish().await?;
            return Ok(Batch::done(n));
        }
        Ok(Batch::more(n))
    }
}

impl Job for ScrubJob {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interval(&self) -> Duration {
        self.every
    }

    fn first_delay(&self) -> Duration {
        self.first_delay
    }

    fn tranquility(&self) -> u32 {
        self.tranquility
    }

    /// The tranquilizer's rest, or longer to hold the byte rate.
    fn rest_after(&self, took: Duration) -> Duration {
        let pace = Pace {
            tranquility: self.tranquility,
            bytes_per_second: self.bytes_per_second,
        };
        pace.rest(took, self.last_batch_bytes)
    }

    fn counters(&self) -> Vec<JobCounter> {
        let t = self.totals;
        let counter = |name, help, value| JobCounter {
            name,
            help,
            gauge: false,
            value,
        };
        vec![
            counter("scrub_objects_checked_total", "Objects the scrub read back.", t.checked),
            counter("scrub_bytes_read_total", "Bytes the scrub read from the backend.", t.bytes),
            counter("scrub_objects_corrupt_total", "Objects the scrub found corrupt (each is in the log).", t.corrupt),
            counter("scrub_objects_missing_total", "Objects the scrub found missing (each is in the log).", t.missing),
            JobCounter {
                name: "scrub_findings",
                help: "Objects found missing or corrupt and not read back whole since (kept for dedupdav check).",
                gauge: true,
                value: t.kept,
            },
        ]
    }

    async fn step(&mut self) -> Result<Batch, JobError> {
        self.batch().await.map_err(JobError::Scrub)
    }
}

/// How fast the scrub may go.
struct Pace {
    tranquility: u32,
    bytes_per_second: u64,
}

impl Pace {
    /// The rest after a batch that read `bytes` in `took`: at least
    /// `took × tranquility`, and long enough that `bytes` over the batch
    /// and its rest stay within the byte rate (0: no rate).
    fn rest(&self, took: Duration, bytes: u64) -> Duration {
        let calm = took.saturating_mul(self.tranquility);
        if self.bytes_per_second == 0 {
            return calm;
        }
        let due = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
        calm.max(due.saturating_sub(took))
    }
}

/// When the scrub goes on after a start at `now`: soon when a pass is
/// unfinished or none ever ran, else one interval after the last pass
/// ended.
fn first_delay(state: &ScrubState, every: Duration, now: u64) -> Duration {
    let soon = every.min(RESUME_AFTER);
    if state.in_pass() || state.last_pass_finished == 0 {
        return soon;
    }
    let next = state.last_pass_finished.saturating_add(every.as_secs());
    Duration::from_secs(next.saturating_sub(now))
}

fn scrub_error(e: crate::meta::IndexError) -> JobError {
    JobError::Scrub(e.into())
}

fn now_secs() -> u64 {
    crate::clock::unix_secs().max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_resumes_soon_or_waits_out_the_interval() {
        let day = Duration::from_secs(86_400);
        let never = ScrubState::default();
        assert_eq!(first_delay(&never, day, 1000), RESUME_AFTER);
        let busy = ScrubState {
            pass_started: 900,
            ..never
        };
        assert_eq!(first_delay(&busy, day, 1000), RESUME_AFTER);
        let short = Duration::from_secs(5);
        assert_eq!(first_delay(&busy, short, 1000), short);
        let done = ScrubState {
            last_pass_finished: 1000,
            ..never
        };
        let hour = Duration::from_secs(3600);
        assert_eq!(first_delay(&done, day, 1000 + 3600), day - hour);
        assert_eq!(first_delay(&done, day, 1000 + 2 * 86_400), Duration::ZERO);
    }

    #[test]
    fn the_rest_after_a_batch_holds_the_byte_rate() {
        let pace = Pace {
            tranquility: 2,
            bytes_per_second: 1 << 20,
        };
        let half = Duration::from_millis(500);
        // 4 MiB at 1 MiB/s: 4 s in all, 3.5 s of it resting.
        assert_eq!(pace.rest(half, 4 << 20), Duration::from_millis(3500));
        // Half a MiB: the tranquility asks more than the rate.
        assert_eq!(pace.rest(half, 1 << 19), Duration::from_secs(1));
        let unlimited = Pace {
            bytes_per_second: 0,
            ..pace
        };
        assert_eq!(unlimited.rest(half, 1 << 30), Duration::from_secs(1));
    }
}
