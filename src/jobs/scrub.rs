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
//! - **Findings.** An error line in the log per missing or corrupt object,
//!   naming the object and the chunk; kept in the metadata
//!   (`Meta::scrub_findings`, at most 1000, dropped once the object reads
//!   back whole or a later pass no longer finds it) for `dedupdav check`;
//!   counters in `/metrics` (`dedupdav_scrub_*`).

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
        Ok(self.store.scrub_keys(&ids))
    }

    /// Reads every object of `page`.
    async fn check_page(
        &mut self,
        page: &[([u8; 32], ChunkRecord)],
        keys: &Arc<[ChunkIdKey]>,
        pass: u64,
    ) -> Result<BatchOutcome, StoreError> {
        let mut outcome = BatchOutcome::default();
        for (id, _) in page {
            let verified = self.store.verify_object(ChunkId(*id), keys).await?;
            outcome.bytes += verified.bytes_read;
            self.totals.checked += 1;
            match verified.health {
                ObjectHealth::Sound => outcome.sound.push(*id),
                ObjectHealth::Missing => outcome.found.push(self.finding(*id, pass, None)),
                ObjectHealth::Corrupt(cause) => {
                    let cause = Some(cause.to_string());
                    outcome.found.push(self.finding(*id, pass, cause))
                }
                ObjectHealth::Unowned | ObjectHealth::Collected => {}
            }
        }
        self.totals.bytes += outcome.bytes;
        Ok(outcome)
    }

    /// Logs and counts a missing (`cause` None) or corrupt object found
    /// by pass `pass`.
    fn finding(&mut self, id: [u8; 32], pass: u64, cause: Option<String>) -> ScrubFinding {
        let object = self.store.object_name(&ChunkId(id));
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
        let calm = took.saturating_mul(self.tranquility);
        if self.bytes_per_second == 0 {
            return calm;
        }
        let due =
            Duration::from_secs_f64(self.last_batch_bytes as f64 / self.bytes_per_second as f64);
        calm.max(due.saturating_sub(took))
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
    use crate::backend::local::LocalDirStore;
    use crate::crypto::MasterKey;
    use crate::meta::{split_path, FileCommit, NewUser, Owner};
    use crate::store::{ChunkSizes, StoreSettings};

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

    fn config() -> ScrubConfig {
        ScrubConfig {
            interval_hours: 1,
            interval_seconds: None,
            bytes_per_second: 0,
            tranquility: 0,
        }
    }

    /// A content store over the index and objects in `dir`, opened anew
    /// (as after a restart).
    fn open(dir: &std::path::Path) -> (Arc<ContentStore>, Meta) {
        let meta = Meta::open_redb(&dir.join("index.redb"), Default::default()).unwrap();
        let backend = Arc::new(LocalDirStore::open(&dir.join("data")).unwrap());
        let keys = Arc::new(MasterKey::from_bytes([12; 32]).derive());
        let settings = StoreSettings {
            chunk_sizes: ChunkSizes {
                min: 4 << 10,
                avg: 16 << 10,
                max: 64 << 10,
            },
            ..StoreSettings::default()
        };
        (
            ContentStore::new(keys, backend, meta.clone(), settings),
            meta,
        )
    }

    /// Stores a file of pseudo-random bytes; its chunk ids.
    async fn store_file(store: &Arc<ContentStore>, meta: &Meta, len: usize) -> Vec<ChunkId> {
        let new = NewUser {
            name: "ann".into(),
            password_hash: "x".into(),
            admin: false,
            quota: None,
        };
        let owner = Owner::from(&meta.add_user(new).await.unwrap());
        let mut data = Vec::with_capacity(len);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        while data.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            data.extend_from_slice(&x.to_le_bytes());
        }
        let mut up = store.begin_upload(owner.id, None);
        up.write(&data).await.unwrap();
        let done = up.finish().await.unwrap();
        let path = split_path(b"f").unwrap();
        done.record_with(|c| async move {
            let ids = c.manifest.iter().map(|e| e.id).collect();
            let commit = FileCommit {
                size: c.size,
                chunks: c.manifest,
                uploaded: c.uploaded,
                mtime: None,
                checksums: None,
            };
            meta.commit_file(&owner, &path, &commit).await.map(|_| ids)
        })
        .await
        .unwrap()
    }

    fn object_path(
        dir: &std::path::Path,
        store: &ContentStore,
        id: [u8; 32],
    ) -> std::path::PathBuf {
        dir.join("data")
            .join(store.object_name(&ChunkId(id)).relative_path())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pass_finds_damage_and_a_restart_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (store, meta) = open(dir.path());
        store_file(&store, &meta, 400 << 10).await;
        // Chunk ids in the order the scrub reads them.
        let all: Vec<[u8; 32]> = meta
            .chunks_page(None, 1000)
            .await
            .unwrap()
            .iter()
            .map(|(id, _)| *id)
            .collect();
        assert!(all.len() >= 10, "{} chunks", all.len());
        // One object damaged in the first batch, one missing after it.
        let (corrupt, missing) = (all[1], all[all.len() - 2]);
        let path = object_path(dir.path(), &store, corrupt);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        std::fs::remove_file(object_path(dir.path(), &store, missing)).unwrap();

        let mut job = ScrubJob::from_config(store, meta, &config())
            .await
            .unwrap()
            .unwrap()
            .with_batch(3);
        assert_eq!(
            job.first_delay(),
            RESUME_AFTER,
            "the first pass starts soon"
        );
        assert_eq!(job.step().await.unwrap(), Batch::more(3));
        assert_eq!(job.totals.corrupt, 1);
        drop(job);

        // Restart: everything is opened anew from the same files.
        let (store, meta) = open(dir.path());
        let state = meta.scrub_state().await.unwrap();
        assert_eq!((state.position, state.checked), (Some(all[2]), 3));
        let mut job = ScrubJob::from_config(store, meta.clone(), &config())
            .await
            .unwrap()
            .unwrap()
            .with_batch(3);
        assert_eq!(job.first_delay(), RESUME_AFTER);
        assert_eq!(job.totals.kept, 1, "the finding survived the restart");
        let mut steps = 0;
        while job.step().await.unwrap().more {
            steps += 1;
            assert!(steps < 100);
        }
        // Resumed after the third object, not started over.
        assert_eq!(job.totals.checked, all.len() as u64 - 3);
        assert_eq!((job.totals.corrupt, job.totals.missing), (0, 1));
        let state = meta.scrub_state().await.unwrap();
        assert!(!state.in_pass());
        assert_eq!(state.last_pass_checked, all.len() as u64);

        let findings = meta.scrub_findings(10).await.unwrap();
        let mut want = [
            (corrupt, ScrubProblem::Corrupt),
            (missing, ScrubProblem::Missing),
        ];
        want.sort_by_key(|(id, _)| *id);
        let got: Vec<_> = findings.iter().map(|f| (f.id, f.problem)).collect();
        assert_eq!(got, want);
        assert!(findings.iter().any(|f| f.detail.contains("authentication")));
        let counters = job.counters();
        let kept = counters.iter().find(|c| c.name == "scrub_findings");
        assert_eq!(kept.map(|c| c.value), Some(2));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_rest_after_a_batch_holds_the_byte_rate() {
        let dir = tempfile::tempdir().unwrap();
        let (store, meta) = open(dir.path());
        let limited = ScrubConfig {
            bytes_per_second: 1 << 20,
            tranquility: 2,
            ..config()
        };
        let mut job = ScrubJob::from_config(store, meta, &limited)
            .await
            .unwrap()
            .unwrap();
        job.last_batch_bytes = 4 << 20;
        let half = Duration::from_millis(500);
        assert_eq!(
            job.rest_after(half),
            Duration::from_millis(3500),
            "the rate"
        );
        job.last_batch_bytes = 1 << 19;
        assert_eq!(
            job.rest_after(half),
            Duration::from_secs(1),
            "the tranquility"
        );
        // An empty store: one step ends the pass.
        assert_eq!(job.step().await.unwrap(), Batch::done(0));
    }
}
