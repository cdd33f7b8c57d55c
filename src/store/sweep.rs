//! The orphan sweep: deletes objects in the backend that no record names
//! (no chunk record, no pending record) and that are older than the grace
//! period. Such objects are left by a crash between the collector dropping
//! records and deleting their objects, by a failed deletion, or by a
//! version before pending records existed; the collector cannot see them,
//! because it works from the records.
//!
//! Object names are keyed hashes of chunk ids and cannot be turned back
//! into ids, so the sweep computes the name of every id the metadata knows
//! and compares names. It goes through the fan-out folders in 16 shards
//! (`0x/` … `fx/`, one batch each), so it holds one sixteenth of the
//! listing at a time (about 100 bytes per object) and walks the records
//! once per shard (twice when the shard has candidates).
//!
//! # Why it never deletes an object an upload relies on
//!
//! Per shard, in this order:
//! 1. **List** the shard's objects with their modification times.
//! 2. **Read every name the metadata knows** (pending records, then chunk
//!    records). An object in the listing was put, and every put is preceded
//!    (a pack's put: accompanied, see `store/packs.rs`; a pack listed
//!    before its record is durable is far younger than the grace period,
//!    so never a candidate) by a durable pending record
//!    (`store/pending.rs`) that stays until a
//!    commit turns it into a chunk record or the collector deletes the
//!    object. So a listed object that no record names here is one nobody
//!    references, nor can reference without storing it anew first.
//!    (Pending records are read before chunk records: a commit moves a
//!    record from the first table to the second, so the walk cannot miss
//!    it between the two; pack records are read last for the same reason:
//!    a pack's pending record becomes its pack record. A pack's name is
//!    its id's, in the chunks' name space.)
//! 3. **Candidates**: listed, unnamed, and modified before the grace
//!    cutoff (a backend that gives no time never yields candidates).
//! 4. **Claim** the candidates' names in the pin set ([`super::Pins`]):
//!    a name whose chunk an upload pins right now is skipped, and from now
//!    on no upload can pin a chunk whose object name is claimed.
//! 5. **Re-read the names** and give back every claimed name a record
//!    names now: an upload that pinned the chunk, stored or committed it
//!    and unpinned between steps 2 and 4. After the claim no new record can
//!    name a claimed object (records are written only under a pin), so
//!    this second read is final.
//! 6. **Delete** what is still claimed, then release the claim (also when
//!    the sweep stops early: the claim is released when dropped). An upload
//!    that waited for the chunk then finds no record and stores it anew.
//!
//! So an object is deleted only while no upload can pin its chunk and no
//! record names it: no manifest can come to reference it (invariant 3).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures_util::{stream, StreamExt, TryStreamExt};

use super::{ContentStore, StoreError, SweepClaim};
use crate::backend::{ObjectInfo, FANOUT_FOLDERS};
use crate::crypto::{ChunkId, ObjectName};

/// Shards of the fan-out folders, one per batch.
pub const SHARDS: usize = 16;
/// Records read per metadata read.
const PAGE: usize = 1000;
/// Object deletions in flight.
const PARALLEL_DELETES: usize = 8;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Objects listed in the backend.
    pub listed: u64,
    /// Objects no record named, deleted (or tried: see `delete_failures`).
    pub deleted: u64,
    /// Backend bytes those objects took.
    pub bytes_freed: u64,
    /// Objects no record named, kept because they are younger than the
    /// grace period.
    pub young: u64,
    /// Objects no record named at first, kept because an upload was using
    /// their chunk or had recorded it by the time they were claimed.
    pub in_use: u64,
    /// Deletions that failed (tried again by the next sweep).
    pub delete_failures: u64,
}

/// Where a sweep stands between batches: the next shard and the totals.
#[derive(Debug)]
pub struct SweepRound {
    cutoff: SystemTime,
    next_shard: usize,
    /// What the sweep did so far.
    pub report: SweepReport,
}

impl SweepRound {
    /// Whether every shard has been swept.
    pub fn is_done(&self) -> bool {
        self.next_shard >= SHARDS
    }
}

/// The shard's listing: object name → (size, older than the cutoff).
type Listing = HashMap<ObjectName, (u64, bool)>;

/// The two kinds of records that name objects.
#[derive(Clone, Copy)]
enum Records {
    Pending,
    Chunks,
    Packs,
}

impl ContentStore {
    /// Starts a sweep of objects older than `grace`.
    pub fn sweep_round(&self, grace: Duration) -> SweepRound {
        let now = SystemTime::now();
        SweepRound {
            cutoff: now.checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH),
            next_shard: 0,
            report: SweepReport::default(),
        }
    }

    /// Sweeps the next shard (steps 1 to 6 of the module header); answers
    /// the objects it deleted.
    pub async fn sweep_batch(&self, round: &mut SweepRound) -> Result<u64, StoreError> {
        if round.is_done() {
            return Ok(0);
        }
        let shard = round.next_shard;
        let before = round.report.deleted;
        self.sweep_shard(shard, round.cutoff, &mut round.report)
            .await?;
        round.next_shard += 1;
        if round.is_done() {
            log_report(&round.report);
        }
        Ok(round.report.deleted - before)
    }

    /// Deletes every object no record names that is older than `grace`,
    /// shard after shard. `on_progress` is told the totals after each.
    pub async fn sweep_orphans(
        &self,
        grace: Duration,
        mut on_progress: impl FnMut(&SweepReport),
    ) -> Result<SweepReport, StoreError> {
        let mut round = self.sweep_round(grace);
        while !round.is_done() {
            self.sweep_batch(&mut round).await?;
            on_progress(&round.report);
        }
        Ok(round.report)
    }

    async fn sweep_shard(
        &self,
        shard: usize,
        cutoff: SystemTime,
        report: &mut SweepReport,
    ) -> Result<(), StoreError> {
        let mut unnamed = self.list_shard(shard, cutoff, report).await?;
        let candidates = self.unnamed_old(&mut unnamed, report).await?;
        if candidates.is_empty() {
            return Ok(());
        }
        let claim = self.claim_unnamed(candidates, report).await?;
        self.delete_swept(claim.names(), &unnamed, report).await;
        Ok(())
    }

    /// Steps 2 and 3: drops from `listing` every object a record names,
    /// and answers those left that are old enough to go.
    async fn unnamed_old(
        &self,
        listing: &mut Listing,
        report: &mut SweepReport,
    ) -> Result<Vec<ObjectName>, StoreError> {
        if listing.is_empty() {
            return Ok(Vec::new());
        }
        self.walk_names(|name| {
            listing.remove(&name);
        })
        .await?;
        let candidates: Vec<ObjectName> = listing
            .iter()
            .filter(|(_, (_, old))| *old)
            .map(|(name, _)| name.clone())
            .collect();
        report.young += (listing.len() - candidates.len()) as u64;
        Ok(candidates)
    }

    /// Steps 4 and 5: claims the candidates no upload pins, then gives back
    /// those a record names by now. What stays claimed may be deleted.
    async fn claim_unnamed(
        &self,
        candidates: Vec<ObjectName>,
        report: &mut SweepReport,
    ) -> Result<SweepClaim, StoreError> {
        let asked = candidates.len();
        let mut claim = self.pins.claim_swept(candidates);
        let claimed: HashSet<ObjectName> = claim.names().iter().cloned().collect();
        let mut named_now = HashSet::new();
        self.walk_names(|name| {
            if claimed.contains(&name) {
                named_now.insert(name);
            }
        })
        .await?;
        claim.give_back(|name| named_now.contains(name));
        report.in_use += (asked - claim.names().len()) as u64;
        Ok(claim)
    }

    /// Step 1: the objects of the shard's fan-out folders, each with its
    /// size and whether it was modified before `cutoff`.
    async fn list_shard(
        &self,
        shard: usize,
        cutoff: SystemTime,
        report: &mut SweepReport,
    ) -> Result<Listing, StoreError> {
        let per_shard = FANOUT_FOLDERS / SHARDS;
        let mut listing = Listing::new();
        for folder in shard * per_shard..(shard + 1) * per_shard {
            let fanout = u8::try_from(folder).unwrap_or(u8::MAX);
            let mut objects = self.backend.list_fanout(fanout);
            while let Some(info) = objects.try_next().await? {
                report.listed += 1;
                let ObjectInfo {
                    name,
                    size,
                    modified,
                } = info;
                let old = modified.is_some_and(|m| m <= cutoff);
                listing.insert(name, (size, old));
            }
        }
        Ok(listing)
    }

    /// Steps 2 and 5: calls `visit` with the object name of every id a
    /// pending, chunk or pack record holds, pending records first.
    async fn walk_names(&self, mut visit: impl FnMut(ObjectName)) -> Result<(), StoreError> {
        for records in [Records::Pending, Records::Chunks, Records::Packs] {
            let mut after = None;
            loop {
                let ids = self.record_ids(records, after).await?;
                for id in &ids {
                    visit(ObjectName::for_chunk(&self.keys, &ChunkId(*id)));
                }
                if ids.len() < PAGE {
                    break;
                }
                after = ids.last().copied();
                tokio::task::yield_now().await;
            }
        }
        Ok(())
    }

    /// One page of the ids `records` hold, in id order after `after`.
    async fn record_ids(
        &self,
        records: Records,
        after: Option<[u8; 32]>,
    ) -> Result<Vec<[u8; 32]>, StoreError> {
        Ok(match records {
            Records::Pending => self
                .meta
                .pending_page(after, PAGE)
                .await?
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
            Records::Chunks => self
                .meta
                .chunks_page(after, PAGE)
                .await?
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
            Records::Packs => self
                .meta
                .packs_page(after, PAGE)
                .await?
                .into_iter()
                .map(|(id, _)| id)
                .collect(),
        })
    }

    /// Step 6: deletes the claimed objects, adding to `report`.
    async fn delete_swept(
        &self,
        claimed: &[ObjectName],
        listing: &Listing,
        report: &mut SweepReport,
    ) {
        let doomed: Vec<(ObjectName, u64)> = claimed
            .iter()
            .map(|name| (name.clone(), listing.get(name).map_or(0, |(size, _)| *size)))
            .collect();
        let results: Vec<(u64, bool)> = stream::iter(doomed)
            .map(|(name, size)| async move {
                match self.backend.delete(&name).await {
                    Ok(()) => {
                        tracing::debug!(object = %name, size, "deleted an object no record names");
                        (size, true)
                    }
                    Err(e) => {
                        tracing::warn!(object = %name, error = %e, "could not delete an orphan object");
                        (size, false)
                    }
                }
            })
            .buffer_unordered(PARALLEL_DELETES)
            .collect()
            .await;
        for (size, ok) in results {
            report.deleted += 1;
            if ok {
                report.bytes_freed += size;
            } else {
                report.delete_failures += 1;
            }
        }
    }
}

fn log_report(report: &SweepReport) {
    let level_info = report.deleted > 0 || report.delete_failures > 0;
    if level_info {
        tracing::info!(
            listed = report.listed,
            deleted = report.deleted,
            bytes_freed = report.bytes_freed,
            young = report.young,
            in_use = report.in_use,
            failures = report.delete_failures,
            "orphan sweep"
        );
    } else {
        tracing::debug!(listed = report.listed, young = report.young, "orphan sweep");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalDirStore;
    use crate::crypto::MasterKey;
    use crate::meta::Meta;
    use crate::store::StoreSettings;
    use bytes::Bytes;
    use std::sync::Arc;

    fn store(dir: &std::path::Path) -> (Arc<ContentStore>, Meta) {
        let meta = Meta::open_redb(&dir.join("i.redb"), Default::default()).unwrap();
        let backend = Arc::new(LocalDirStore::open(&dir.join("data")).unwrap());
        let keys = Arc::new(MasterKey::from_bytes([11; 32]).derive());
        let store = ContentStore::new(keys, backend, meta.clone(), StoreSettings::default());
        (store, meta)
    }

    /// Puts an object for chunk `n` straight into the backend (no record).
    async fn orphan(store: &ContentStore, n: u8) -> ObjectName {
        let name = store.object_name(&ChunkId([n; 32]));
        store
            .backend
            .put(&name, Bytes::from(vec![n; 100]))
            .await
            .unwrap();
        name
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_unnamed_objects_go_and_a_pinned_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        let (store, meta) = store(dir.path());
        let mut names = Vec::new();
        for n in 1..=4u8 {
            names.push(orphan(&store, n).await);
        }
        // Chunk 1 has a pending record, chunk 2 is pinned by an upload.
        meta.add_pending(&[([1; 32], 100)], 1).await.unwrap();
        let mut guard = super::super::PinGuard::new(store.pins.clone());
        assert!(store.pins.pin(ChunkId([2; 32])));
        guard.add(ChunkId([2; 32]));

        let young = store
            .sweep_orphans(Duration::from_secs(3600), |_| {})
            .await
            .unwrap();
        assert_eq!((young.listed, young.young, young.deleted), (4, 3, 0));

        let r = store.sweep_orphans(Duration::ZERO, |_| {}).await.unwrap();
        assert_eq!((r.deleted, r.in_use, r.bytes_freed), (2, 1, 200), "{r:?}");
        for (name, kept) in names.iter().zip([true, true, false, false]) {
            assert_eq!(store.backend.exists(name).await.unwrap(), kept, "{name}");
        }
        // Nothing stays claimed: chunk 3 can be pinned (and stored anew).
        assert!(store.pins.pin(ChunkId([3; 32])));
        guard.add(ChunkId([3; 32]));
    }

    /// Each safety step on its own, with the upload's moves made between
    /// the sweep's steps: a chunk pinned at the claim is skipped, one an
    /// upload recorded after the first read is given back, and a claimed
    /// one cannot be pinned until the claim is released.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn uploads_between_the_steps_keep_their_objects() {
        let dir = tempfile::tempdir().unwrap();
        let (store, meta) = store(dir.path());
        let mut names = Vec::new();
        for n in 1..=3u8 {
            names.push(orphan(&store, n).await);
        }
        let round = store.sweep_round(Duration::ZERO);
        let mut report = SweepReport::default();
        let mut unnamed = Listing::new();
        for shard in 0..SHARDS {
            let listed = store.list_shard(shard, round.cutoff, &mut report).await;
            unnamed.extend(listed.unwrap());
        }
        let candidates = store.unnamed_old(&mut unnamed, &mut report).await.unwrap();
        assert_eq!(candidates.len(), 3, "steps 1 to 3: all unnamed and old");

        // Meanwhile one upload pins chunk 1 (and still holds it); another
        // pinned chunk 2, recorded it and let go.
        let mut pinned = crate::store::PinGuard::new(store.pins.clone());
        assert!(store.pins.pin(ChunkId([1; 32])));
        pinned.add(ChunkId([1; 32]));
        meta.add_pending(&[([2; 32], 100)], 1).await.unwrap();

        let claim = store.claim_unnamed(candidates, &mut report).await.unwrap();
        assert_eq!(claim.names(), [names[2].clone()]);
        assert_eq!(report.in_use, 2);
        assert!(
            !store.pins.pin(ChunkId([3; 32])),
            "claimed: cannot be pinned"
        );
        store
            .delete_swept(claim.names(), &unnamed, &mut report)
            .await;
        drop(claim);
        assert!(store.pins.pin(ChunkId([3; 32])), "released");
        pinned.add(ChunkId([3; 32]));
        for (name, kept) in names.iter().zip([true, true, false]) {
            assert_eq!(store.backend.exists(name).await.unwrap(), kept, "{name}");
        }
    }
}
