//! Garbage collection: a chunk no manifest references any more is kept for a
//! grace period (its record says since when), then its object is deleted and
//! its record dropped — unless an upload revived it meanwhile. The objects
//! of uploads that never committed (pending records, `meta/redb/pending.rs`)
//! go the same way once their record is older than the grace period. Deciding and
//! dropping records happens under the pin lock (see [`super::Pins`]), so an
//! upload can never rely on, or re-store into, an object being deleted.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt};

use super::pending::now_secs;
use super::{ContentStore, StoreError};
use crate::crypto::{ChunkId, ObjectName};

/// Candidates handled per round (one index transaction each).
const BATCH: usize = 1000;
/// Object deletions in flight.
const PARALLEL_DELETES: usize = 8;

/// What one collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Chunks whose records were dropped.
    pub deleted: u64,
    /// Backend bytes those objects took.
    pub bytes_freed: u64,
    /// Candidates an upload was using, kept for a later round.
    pub in_use: u64,
    /// Objects whose deletion failed (left as orphans for a later sweep).
    pub delete_failures: u64,
    /// Objects of uploads that never committed, deleted (their bytes are
    /// in `bytes_freed` too).
    pub abandoned: u64,
}

/// Where a collection stands between batches: which candidates it is
/// walking and what it did so far. A job steps it one batch at a time
/// ([`ContentStore::gc_batch`]), so the runner can pause between batches
/// and stop at a batch's end.
#[derive(Debug)]
pub struct GcRound {
    cutoff: u64,
    phase: Phase,
    /// What the collection did so far.
    pub report: GcReport,
}

/// The candidates a collection walks, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Chunks no manifest references.
    Unreferenced,
    /// Objects of uploads that never committed.
    Pending,
    Done,
}

impl GcRound {
    /// Whether every candidate has been seen.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }
}

impl ContentStore {
    /// Starts a collection of what has been unreferenced (or pending) for
    /// longer than `grace`.
    pub fn gc_round(&self, grace: Duration) -> GcRound {
        GcRound {
            cutoff: now_secs().saturating_sub(grace.as_secs()),
            phase: Phase::Unreferenced,
            report: GcReport::default(),
        }
    }

    /// Handles one batch of at most [`BATCH`] candidates (one metadata
    /// transaction, then the object deletions); answers the items deleted.
    /// When a phase runs out of candidates, or only candidates in use are
    /// left, the round moves on.
    pub async fn gc_batch(&self, round: &mut GcRound) -> Result<u64, StoreError> {
        let before = round.report.deleted + round.report.abandoned;
        let advance = match round.phase {
            Phase::Unreferenced => {
                self.unreferenced_batch(round.cutoff, &mut round.report)
                    .await?
            }
            Phase::Pending => self.pending_batch(round.cutoff, &mut round.report).await?,
            Phase::Done => false,
        };
        if advance {
            round.phase = match round.phase {
                Phase::Unreferenced => Phase::Pending,
                Phase::Pending | Phase::Done => Phase::Done,
            };
            if round.is_done() {
                log_report(&round.report);
            }
        }
        Ok(round.report.deleted + round.report.abandoned - before)
    }

    /// Deletes the chunks unreferenced for longer than `grace`, and the
    /// objects of uploads abandoned (or cut off by a crash) longer ago than
    /// `grace`, batch after batch. `on_progress` is told the running totals
    /// after each batch.
    pub async fn collect_garbage(
        self: &Arc<Self>,
        grace: Duration,
        mut on_progress: impl FnMut(&GcReport),
    ) -> Result<GcReport, StoreError> {
        let mut round = self.gc_round(grace);
        while !round.is_done() {
            self.gc_batch(&mut round).await?;
            on_progress(&round.report);
        }
        Ok(round.report)
    }

    /// One batch of unreferenced chunks; answers whether the phase is over.
    async fn unreferenced_batch(
        &self,
        cutoff: u64,
        report: &mut GcReport,
    ) -> Result<bool, StoreError> {
        let candidates = self.meta.unreferenced_chunks(cutoff, BATCH).await?;
        if candidates.is_empty() {
            return Ok(true);
        }
        let ids: Vec<ChunkId> = candidates.iter().map(|c| ChunkId(*c)).collect();
        let claimed = self.pins.claim_for_deletion(ids.clone());
        let forgotten = self.meta.forget_chunks(&raw(&claimed), cutoff).await;
        let forgotten = self.released_on_error(&claimed, forgotten)?;
        report.in_use += (ids.len() - claimed.len()) as u64;
        // Claimed but revived meanwhile: not in `forgotten`, nothing to delete.
        report.deleted += self.delete_claimed(&claimed, &forgotten, report).await;
        // Everything left is in use right now: try again next round.
        Ok(claimed.is_empty())
    }

    /// The answer of the transaction that dropped the records of the
    /// `claimed` chunks; if it failed, the claim is released and nothing
    /// was deleted.
    fn released_on_error<T>(
        &self,
        claimed: &[ChunkId],
        forgotten: Result<T, crate::meta::IndexError>,
    ) -> Result<T, StoreError> {
        forgotten.map_err(|e| {
            self.pins.release_deleted(claimed);
            e.into()
        })
    }

    /// One batch of the objects of pending records older than `cutoff`,
    /// under the same pin discipline as chunks: an upload pinning the chunk
    /// (it is writing or committing it) keeps the record for a later round,
    /// and a chunk being deleted cannot be pinned until its object is gone.
    /// Answers whether the phase is over.
    async fn pending_batch(&self, cutoff: u64, report: &mut GcReport) -> Result<bool, StoreError> {
        let candidates = self.meta.expired_pending(cutoff, BATCH).await?;
        if candidates.is_empty() {
            return Ok(true);
        }
        let ids: Vec<ChunkId> = candidates.iter().map(|c| ChunkId(*c)).collect();
        let claimed = self.pins.claim_for_deletion(ids.clone());
        let forgotten = self.meta.forget_pending(&raw(&claimed), cutoff).await;
        let forgotten = self.released_on_error(&claimed, forgotten)?;
        report.in_use += (ids.len() - claimed.len()) as u64;
        // A chunk record names the object (another upload committed the
        // same chunk), or the record was renewed: nothing to delete.
        let doomed: Vec<([u8; 32], u32)> = forgotten
            .iter()
            .filter(|e| e.delete_object)
            .map(|e| (e.id, e.stored))
            .collect();
        report.abandoned += self.delete_claimed(&claimed, &doomed, report).await;
        Ok(claimed.is_empty())
    }

    /// Of the `claimed` chunks, deletes the objects of `doomed` (id, stored
    /// size) and releases every claim: the others' at once (they stay), the
    /// doomed ones' once their objects are gone. Answers how many objects
    /// it deleted (or tried to: failures are counted in `report`).
    async fn delete_claimed(
        &self,
        claimed: &[ChunkId],
        doomed: &[([u8; 32], u32)],
        report: &mut GcReport,
    ) -> u64 {
        let doomed_ids: Vec<ChunkId> = doomed.iter().map(|(id, _)| ChunkId(*id)).collect();
        let kept: Vec<ChunkId> = claimed
            .iter()
            .filter(|c| !doomed_ids.contains(c))
            .copied()
            .collect();
        self.pins.release_deleted(&kept);
        report.delete_failures += self.delete_objects(doomed, report).await;
        self.pins.release_deleted(&doomed_ids);
        doomed.len() as u64
    }

    /// Deletes the objects of `dropped` (id, stored size), adding their
    /// bytes to `report`; returns how many deletions failed.
    async fn delete_objects(&self, dropped: &[([u8; 32], u32)], report: &mut GcReport) -> u64 {
        let results: Vec<(u32, bool)> = stream::iter(dropped.iter().copied())
            .map(|(id, stored)| async move {
                let name = ObjectName::for_chunk(&self.keys, &ChunkId(id));
                match self.backend.delete(&name).await {
                    Ok(()) => (stored, true),
                    Err(e) => {
                        tracing::warn!(object = %name, error = %e, "could not delete an unreferenced object");
                        (stored, false)
                    }
                }
            })
            .buffer_unordered(PARALLEL_DELETES)
            .collect()
            .await;
        let mut failures = 0;
        for (stored, ok) in &results {
            report.bytes_freed += *stored as u64;
            if !ok {
                failures += 1;
            }
        }
        failures
    }
}

fn log_report(report: &GcReport) {
    if report.deleted > 0 || report.abandoned > 0 {
        tracing::info!(
            deleted = report.deleted,
            abandoned = report.abandoned,
            bytes_freed = report.bytes_freed,
            in_use = report.in_use,
            failures = report.delete_failures,
            "garbage collection"
        );
    }
}

fn raw(ids: &[ChunkId]) -> Vec<[u8; 32]> {
    ids.iter().map(|c| c.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalDirStore;
    use crate::crypto::MasterKey;
    use crate::meta::Meta;
    use crate::store::{ChunkSizes, StoreSettings};

    fn bytes(len: usize, mut x: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    fn files_below(dir: &std::path::Path) -> usize {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return 0;
        };
        rd.flatten()
            .map(|e| {
                if e.path().is_dir() {
                    files_below(&e.path())
                } else {
                    1
                }
            })
            .sum()
    }

    #[test]
    fn objects_of_an_upload_cut_off_by_a_crash_go_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open_redb(&dir.path().join("i.redb"), Default::default()).unwrap();
        let backend = Arc::new(LocalDirStore::open(&dir.path().join("data")).unwrap());
        let keys = Arc::new(MasterKey::from_bytes([5; 32]).derive());
        let settings = StoreSettings {
            chunk_sizes: ChunkSizes {
                min: 4 << 10,
                avg: 16 << 10,
                max: 64 << 10,
            },
            // These cases are about objects of their own.
            packs: crate::store::PackSettings {
                below: 0,
                ..Default::default()
            },
            ..StoreSettings::default()
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let objects = dir.path().join("data").join("objects");
        let before = ContentStore::new(
            keys.clone(),
            backend.clone(),
            meta.clone(),
            settings.clone(),
        );
        rt.block_on(async {
            let mut up = before.begin_upload(1, None);
            up.write(&bytes(1 << 20, 9)).await.unwrap();
            let stored = up.finish().await.unwrap();
            // The process dies here: no commit, nothing marked abandoned.
            std::mem::forget(stored);
        });
        let written = files_below(&objects);
        assert!(written > 10, "{written} objects");
        assert_eq!(
            rt.block_on(meta.pending_totals()).unwrap().0,
            written as u64
        );

        // After the restart no upload pins anything.
        let after = ContentStore::new(keys, backend, meta.clone(), settings);
        let within = rt
            .block_on(after.collect_garbage(Duration::from_secs(3600), |_| {}))
            .unwrap();
        assert_eq!(within.abandoned, 0);
        assert_eq!(files_below(&objects), written);
        let r = rt
            .block_on(after.collect_garbage(Duration::ZERO, |_| {}))
            .unwrap();
        assert_eq!(r.abandoned, written as u64);
        assert!(r.bytes_freed > 1 << 20);
        assert_eq!(files_below(&objects), 0);
        assert_eq!(rt.block_on(meta.pending_totals()).unwrap(), (0, 0));
    }

    #[test]
    fn a_pinned_pending_object_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open_redb(&dir.path().join("i.redb"), Default::default()).unwrap();
        let backend = Arc::new(LocalDirStore::open(&dir.path().join("data")).unwrap());
        let keys = Arc::new(MasterKey::from_bytes([6; 32]).derive());
        let settings = StoreSettings {
            packs: crate::store::PackSettings {
                below: 0,
                ..Default::default()
            },
            ..StoreSettings::default()
        };
        let store = ContentStore::new(keys, backend, meta.clone(), settings);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut up = store.begin_upload(1, None);
            up.write(&bytes(100_000, 3)).await.unwrap();
            let stored = up.finish().await.unwrap();
            // Not committed yet, still pinned: the sweep keeps it.
            let r = store.collect_garbage(Duration::ZERO, |_| {}).await.unwrap();
            assert_eq!((r.abandoned, r.in_use), (0, 1));
            assert_eq!(meta.pending_totals().await.unwrap().0, 1);
            drop(stored);
        });
        // Dropped without a commit: marked abandoned, then collected.
        let r = rt
            .block_on(store.collect_garbage(Duration::ZERO, |_| {}))
            .unwrap();
        assert_eq!(r.abandoned, 1);
        assert_eq!(rt.block_on(meta.pending_totals()).unwrap(), (0, 0));
    }
}
