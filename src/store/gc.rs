//! Garbage collection: a chunk no manifest references any more is kept for a
//! grace period (its record says since when), then its object is deleted and
//! its record dropped — unless an upload revived it meanwhile. Deciding and
//! dropping records happens under the pin lock (see [`super::Pins`]), so an
//! upload can never rely on, or re-store into, an object being deleted.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt};

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
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ContentStore {
    /// Deletes the chunks unreferenced for longer than `grace`. `on_progress`
    /// is told the running totals after each batch.
    pub async fn collect_garbage(
        self: &Arc<Self>,
        grace: Duration,
        mut on_progress: impl FnMut(&GcReport),
    ) -> Result<GcReport, StoreError> {
        let cutoff = now_secs().saturating_sub(grace.as_secs());
        let mut report = GcReport::default();
        loop {
            let candidates = self.index.unreferenced_chunks(cutoff, BATCH)?;
            if candidates.is_empty() {
                break;
            }
            let ids: Vec<ChunkId> = candidates.iter().map(|c| ChunkId(*c)).collect();
            let (claimed, forgotten) = self.pins.claim_for_deletion(ids.clone(), |claimed| {
                let raw: Vec<[u8; 32]> = claimed.iter().map(|c| c.0).collect();
                self.index.forget_chunks(&raw, cutoff)
            });
            let forgotten = match forgotten {
                Ok(f) => f,
                Err(e) => {
                    self.pins.release_deleted(&claimed);
                    return Err(e.into());
                }
            };
            report.in_use += (ids.len() - claimed.len()) as u64;
            // Claimed but revived meanwhile: nothing to delete.
            let dropped: Vec<ChunkId> = forgotten.iter().map(|(id, _)| ChunkId(*id)).collect();
            let revived: Vec<ChunkId> = claimed
                .iter()
                .filter(|c| !dropped.contains(c))
                .copied()
                .collect();
            self.pins.release_deleted(&revived);
            self.delete_objects(&forgotten, &mut report).await;
            self.pins.release_deleted(&dropped);
            on_progress(&report);
            if claimed.is_empty() {
                // Everything left is in use right now; try again next round.
                break;
            }
        }
        if report.deleted > 0 {
            tracing::info!(
                deleted = report.deleted,
                bytes_freed = report.bytes_freed,
                in_use = report.in_use,
                failures = report.delete_failures,
                "garbage collection"
            );
        }
        Ok(report)
    }

    async fn delete_objects(&self, dropped: &[([u8; 32], u32)], report: &mut GcReport) {
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
        for (stored, ok) in results {
            report.deleted += 1;
            report.bytes_freed += stored as u64;
            if !ok {
                report.delete_failures += 1;
            }
        }
    }
}
