//! The restore itself (see the module header for the steps and the
//! argument).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::backend::{BackendError, SharedObjectStore};
use crate::config::Config;
use crate::crypto::{Keys, ObjectName};
use crate::meta::journal::{ChainCheck, ChainHead, JournalError, JournalRow, JournalTable};
use crate::meta::restore::{Recount, RestoredState, Restorer};
use crate::meta::snapshot::{DumpDecoder, SnapshotHead};
use crate::meta::{IndexError, Meta};
use crate::store::{ContentStore, MetadataObjects, StoreError};

/// Snapshot generations looked for before concluding there is none (one
/// an hour for over a century).
const GENERATION_PROBES: u64 = 1 << 20;
/// Sequence numbers past the chain's end searched for a later segment
/// (a gap): a million changes.
const LOOKAHEAD: u64 = 1 << 20;
/// Rows per restore transaction.
const ROWS_PER_BATCH: usize = 20_000;
/// Snapshot pieces fetched at once.
const PIECES_IN_FLIGHT: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("an index exists at {0}; stop `serve` and add --force to replace it (it is kept beside, renamed)")]
    IndexExists(PathBuf),
    #[error(
        "nothing to restore: the backend holds no snapshot and no segment that starts the chain"
    )]
    NothingUpstream,
    #[error("no usable snapshot ({skipped}) and the chain does not start at an empty index: the state cannot be proven")]
    NoBase { skipped: String },
    #[error("changes were lost upstream:\n{0}\nRun again with --accept-loss to restore the newest state that can be proven (the unusable segments are then deleted).")]
    Loss(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("{0}")]
    Io(String),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Replace an existing index (kept beside it, renamed).
    pub force: bool,
    /// Restore the newest provable state even when changes after it were
    /// lost upstream.
    pub accept_loss: bool,
}

/// What a restore found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// The snapshot the state was built on, and when it was sealed.
    pub snapshot: Option<u64>,
    pub snapshot_created: Option<u64>,
    /// Snapshots that could not be used, and why.
    pub unusable_snapshots: Vec<String>,
    pub snapshot_rows: u64,
    pub segments: u64,
    pub transactions: u64,
    pub rows: u64,
    /// The sequence number and commit time (Unix seconds) of the restored
    /// state's last change.
    pub state_seq: u64,
    pub state_time: u64,
    /// Why the chain could not be followed to its end, if it could not.
    pub lost: Vec<String>,
    pub recount: RecountReport,
    /// The snapshot sealed of the restored state.
    pub new_snapshot: Option<u64>,
    /// Where a replaced index was kept.
    pub replaced: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RecountReport {
    pub corrected: u64,
    pub unrecorded: u64,
}

impl From<Recount> for RecountReport {
    fn from(r: Recount) -> Self {
        Self {
            corrected: r.corrected,
            unrecorded: r.unrecorded,
        }
    }
}

/// Rebuilds `config`'s index from the sealed metadata in `backend`.
/// `progress(phase, done)` reports long phases.
pub async fn restore(
    config: &Config,
    keys: Arc<Keys>,
    backend: SharedObjectStore,
    options: RestoreOptions,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> Result<RestoreReport, RestoreError> {
    let index = config.index_path();
    if index.exists() && !options.force {
        return Err(RestoreError::IndexExists(index));
    }
    let objects = MetadataObjects::new(keys.clone(), backend.clone(), config.chunking.zstd_level);
    let names = objects.names().await?;
    let work = index.with_extension("restoring");
    let mut rebuild = Rebuild::new(&objects, &names, &work, progress);
    let built = rebuild.run(options).await;
    let report = match built {
        Ok(report) => report,
        Err(e) => {
            let _ = std::fs::remove_file(&work);
            return Err(e);
        }
    };
    seal_and_install(config, keys, backend, &work, report, rebuild.unusable).await
}

/// Seals a snapshot of the restored state, deletes the segments a lossy
/// restore could not use, and moves the new index into place.
async fn seal_and_install(
    config: &Config,
    keys: Arc<Keys>,
    backend: SharedObjectStore,
    work: &Path,
    mut report: RestoreReport,
    unusable: Vec<u64>,
) -> Result<RestoreReport, RestoreError> {
    {
        let meta = Meta::open_redb(work, config.prop_limits())?;
        let store = ContentStore::new(keys, backend, meta, config.store_settings());
        let sealed = store.seal_snapshot(&config.data_dir).await?;
        report.new_snapshot = sealed.map(|s| s.generation);
        for first in unusable {
            store.metadata().delete_segment(first).await?;
        }
    }
    let index = config.index_path();
    if index.exists() {
        let now = crate::clock::unix_secs();
        let kept = index.with_extension(format!("replaced-{now}"));
        std::fs::rename(&index, &kept).map_err(|e| RestoreError::Io(e.to_string()))?;
        report.replaced = Some(kept);
    }
    std::fs::rename(work, &index).map_err(|e| RestoreError::Io(e.to_string()))?;
    Ok(report)
}

/// One restore's state while it reads upstream.
struct Rebuild<'a> {
    objects: &'a MetadataObjects,
    names: &'a HashSet<ObjectName>,
    work: &'a Path,
    progress: &'a (dyn Fn(&str, u64) + Sync),
    report: RestoreReport,
    /// Segments read: (first, last), to be deleted once redundant.
    read: Vec<(u64, u64)>,
    /// Segments that exist but cannot be used (after a loss).
    unusable: Vec<u64>,
}

impl<'a> Rebuild<'a> {
    fn new(
        objects: &'a MetadataObjects,
        names: &'a HashSet<ObjectName>,
        work: &'a Path,
        progress: &'a (dyn Fn(&str, u64) + Sync),
    ) -> Self {
        Self {
            objects,
            names,
            work,
            progress,
            report: RestoreReport::default(),
            read: Vec::new(),
            unusable: Vec::new(),
        }
    }

    async fn run(&mut self, options: RestoreOptions) -> Result<RestoreReport, RestoreError> {
        let _ = std::fs::remove_file(self.work);
        let (target, base) = self.load_base().await?;
        let (chain, skip) = match &base {
            Some(head) => (head.dump.chain, head.dump.state_seq),
            None => {
                self.chain_starts_empty().await?;
                (ChainHead::default(), 0)
            }
        };
        let end = self.replay(&target, chain, skip).await?;
        self.find_unusable(end);
        if !self.report.lost.is_empty() && !options.accept_loss {
            return Err(RestoreError::Loss(self.report.lost.join("\n")));
        }
        let state_seq = self.report.state_seq.max(skip);
        self.report.state_seq = state_seq;
        let segments = self
            .read
            .iter()
            .map(|&(first, last)| (first, last.min(state_seq)))
            .collect();
        let state = RestoredState {
            next_seq: state_seq + 1,
            chain: ChainHead {
                last_seq: state_seq,
                hash: rand::random(),
            },
            segments,
            snapshots: base.into_iter().collect(),
        };
        self.report.recount = target.finish(&state)?.into();
        Ok(std::mem::take(&mut self.report))
    }

    /// The newest snapshot that loads whole, loaded into a new file; or an
    /// empty file when there is none.
    async fn load_base(&mut self) -> Result<(Restorer, Option<SnapshotHead>), RestoreError> {
        let generations = self.generations();
        for generation in generations.into_iter().rev() {
            let target = Restorer::create_redb(self.work)?;
            match self.load_snapshot(&target, generation).await {
                Ok(head) => {
                    self.report.snapshot = Some(generation);
                    self.report.snapshot_created = Some(head.created);
                    self.report.state_time = head.created;
                    return Ok((target, Some(head)));
                }
                Err(e) => {
                    drop(target);
                    let _ = std::fs::remove_file(self.work);
                    // A missing piece is a loss (try the older snapshot); the
                    // backend failing is not, and proves nothing.
                    if let RestoreError::Store(StoreError::Backend(b)) = &e {
                        if !matches!(b, BackendError::NotFound(_)) {
                            return Err(e);
                        }
                    }
                    let why = format!("snapshot {generation}: {e}");
                    tracing::warn!("{why}");
                    self.report.unusable_snapshots.push(why);
                }
            }
        }
        Ok((Restorer::create_redb(self.work)?, None))
    }

    /// The generations whose heads are listed, oldest first.
    fn generations(&self) -> Vec<u64> {
        let mut found = Vec::new();
        for generation in 1..=GENERATION_PROBES {
            let listed = self.names.contains(&self.objects.head_name(generation));
            if listed {
                found.push(generation);
            } else if !found.is_empty() {
                break;
            }
        }
        found
    }

    async fn load_snapshot(
        &mut self,
        target: &Restorer,
        generation: u64,
    ) -> Result<SnapshotHead, RestoreError> {
        let plain = self.objects.read_head(generation).await?;
        let plain = plain.ok_or_else(|| RestoreError::Io("the head vanished".into()))?;
        let head = SnapshotHead::decode(&plain).map_err(malformed)?;
        if head.generation != generation {
            return Err(malformed(JournalError::Malformed(
                "a head of another generation",
            )));
        }
        let objects = self.objects;
        let mut pieces = stream::iter(head.pieces.clone())
            .map(|p| async move { objects.read_piece(&p).await })
            .buffered(PIECES_IN_FLIGHT);
        let (mut decoder, mut hash, mut batch) =
            (DumpDecoder::default(), Sha256::new(), Vec::new());
        let mut done = 0u64;
        while let Some(plain) = pieces.try_next().await? {
            hash.update(&plain);
            batch.extend(decoder.push(&plain).map_err(malformed)?);
            if batch.len() >= ROWS_PER_BATCH {
                blocking(|| target.apply(&batch))?;
                batch.clear();
            }
            done += 1;
            (self.progress)("snapshot pieces", done);
        }
        drop(pieces);
        blocking(|| target.apply(&batch))?;
        let rows = decoder.finish().map_err(malformed)?;
        let digest: [u8; 32] = hash.finalize().into();
        if digest != head.dump_hash || rows != head.dump.rows {
            return Err(malformed(JournalError::Malformed(
                "the pieces do not add up to the dump the head describes",
            )));
        }
        self.report.snapshot_rows = rows;
        Ok(head)
    }

    /// Without a snapshot, the chain must begin with a new index's first
    /// transaction, or rows before it are missing.
    async fn chain_starts_empty(&mut self) -> Result<(), RestoreError> {
        let skipped = self.report.unusable_snapshots.join("; ");
        if !self.names.contains(&self.objects.segment_name(1)) {
            return Err(if skipped.is_empty() {
                RestoreError::NothingUpstream
            } else {
                RestoreError::NoBase { skipped }
            });
        }
        let first = match self.objects.read_segment(1).await {
            Ok(Some(plain)) => ChainCheck::default().accept(&plain).ok(),
            _ => None,
        };
        let starts_empty = first
            .and_then(|s| s.rows.into_iter().next())
            .is_some_and(|r| {
                r.seq == 1 && r.table == JournalTable::Meta && r.key == b"schema_version"
            });
        if starts_empty {
            Ok(())
        } else {
            Err(RestoreError::NoBase {
                skipped: if skipped.is_empty() {
                    "none found".into()
                } else {
                    skipped
                },
            })
        }
    }

    /// Applies the chain after `chain`, skipping rows up to `skip`; answers
    /// the sequence the chain was followed to.
    async fn replay(
        &mut self,
        target: &Restorer,
        chain: ChainHead,
        skip: u64,
    ) -> Result<u64, RestoreError> {
        let mut check = ChainCheck::from_head(chain);
        let (mut open, mut batch): (Vec<JournalRow>, Vec<JournalRow>) = (Vec::new(), Vec::new());
        loop {
            let next = check.head().last_seq + 1;
            if !self.names.contains(&self.objects.segment_name(next)) {
                break;
            }
            let segment = match self.objects.read_segment(next).await {
                Ok(Some(plain)) => check.accept(&plain).map_err(|e| e.to_string()),
                Ok(None) => Err("listed but gone".to_string()),
                // The backend failing (after its own retries) proves nothing
                // about the chain: stop, and let the admin run it again.
                Err(e @ StoreError::Backend(_)) => return Err(e.into()),
                Err(e) => Err(e.to_string()),
            };
            let segment = match segment {
                Ok(segment) => segment,
                Err(why) => {
                    self.report.lost.push(format!(
                        "the segment starting at change {next} cannot be used: {why}"
                    ));
                    self.unusable.push(next);
                    break;
                }
            };
            self.read.push((segment.first, segment.last));
            self.report.segments += 1;
            for row in segment.rows.into_iter().filter(|r| r.seq > skip) {
                let ends = row.ends_transaction;
                let (seq, time) = (row.seq, row.committed);
                open.push(row);
                if ends {
                    batch.append(&mut open);
                    self.report.transactions += 1;
                    self.report.state_seq = seq;
                    self.report.state_time = time;
                }
            }
            if batch.len() >= ROWS_PER_BATCH {
                self.report.rows += batch.len() as u64;
                blocking(|| target.apply(&batch))?;
                batch.clear();
            }
            (self.progress)("chain segments", self.report.segments);
        }
        self.report.rows += batch.len() as u64;
        blocking(|| target.apply(&batch))?;
        Ok(check.head().last_seq)
    }

    /// Segments listed after the chain's end: a segment went missing.
    fn find_unusable(&mut self, end: u64) {
        let from = self.unusable.first().map_or(end + 2, |bad| bad + 1);
        let later: Vec<u64> = (from..from.saturating_add(LOOKAHEAD))
            .filter(|first| self.names.contains(&self.objects.segment_name(*first)))
            .collect();
        if let Some(first) = later.first() {
            let missing = self.unusable.first().copied().unwrap_or(end + 1);
            self.report.lost.push(format!(
                "no usable segment starts at change {missing}, but {} later segment(s) exist, the first at change {first}: changes between were lost",
                later.len()
            ));
        }
        self.unusable.extend(later);
    }
}

fn malformed(e: JournalError) -> RestoreError {
    RestoreError::Index(IndexError::Corrupt {
        table: "snapshot",
        cause: e.to_string(),
    })
}

/// Runs a disk-bound step without holding up the runtime's other tasks.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
