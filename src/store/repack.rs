//! Pack GC: rewrites packs that are mostly dead space or small, so that
//! deleted files give their bytes back and a tree written one small file
//! at a time ends up in a few full packs.
//!
//! A pack is a candidate when nothing in it is live (it is simply
//! dropped), when its live share is below `repack_below_percent`, or when
//! it is smaller than a quarter of `pack_size` (strict mode writes a pack
//! per flush; rewriting merges them). A batch gathers candidates until
//! their live bytes fill one pack, then:
//! 1. reads each candidate whole, lists it by its own trailer, and opens
//!    every entry whose chunk record still points there (authenticating
//!    it: a damaged entry is left where it is, for the scrub to report);
//! 2. seals those chunks into one new pack (its pending record first) and
//!    puts it upstream;
//! 3. in one metadata transaction moves the records still located in the
//!    old packs and drops each old pack that this empties;
//! 4. deletes the emptied old packs.
//!
//! Why it races nothing: an upload that finds a chunk known takes a
//! reference whatever pack holds it, and new chunk records are only ever
//! located in the pack being recorded, so no old pack gains a live chunk.
//! The collector may forget a chunk meanwhile; step 3 then finds its
//! record gone (or elsewhere) and leaves that entry as dead space in the
//! new pack. A read in flight that still had the old location finds the
//! old pack gone, reads the record again and follows it
//! (`ContentStore::fetch_packed`). An old pack is deleted only by the
//! transaction that took its last live chunk, so exactly once, and only
//! once nothing points into it.

use std::sync::Arc;

use bytes::Bytes;

use super::pending::now_secs;
use super::{ContentStore, PinGuard, StoreError};
use crate::backend::BackendError;
use crate::crypto::{ChunkId, ObjectName, PackBuilder, PackId, PackedEntry};
use crate::meta::PackRecord;

/// Pack records read per page while looking for candidates.
const PAGE: usize = 256;

/// What one repack pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepackReport {
    /// Packs read and rewritten (or dropped when nothing in them lived).
    pub packs_rewritten: u64,
    /// New packs written.
    pub packs_written: u64,
    /// Chunks moved into new packs.
    pub chunks_moved: u64,
    /// Old packs deleted from the backend.
    pub packs_deleted: u64,
    /// Backend bytes freed (old packs' sizes less the new packs').
    pub bytes_freed: i64,
    /// Entries that did not open and were left in place.
    pub damaged_entries: u64,
}

/// A repack pass between batches.
#[derive(Debug, Default)]
pub struct RepackRound {
    after: Option<[u8; 32]>,
    done: bool,
    pub report: RepackReport,
}

impl RepackRound {
    pub fn is_done(&self) -> bool {
        self.done
    }
}

/// A chunk carried into the new pack.
struct Carried {
    id: ChunkId,
    plain: Bytes,
}

impl ContentStore {
    /// Starts a repack pass over every pack.
    pub fn repack_round(&self) -> RepackRound {
        RepackRound::default()
    }

    /// One batch: candidates until their live bytes fill a pack (or the
    /// packs run out), rewritten into one new pack. Answers the packs
    /// rewritten.
    pub async fn repack_batch(
        self: &Arc<Self>,
        round: &mut RepackRound,
        below_percent: u64,
    ) -> Result<u64, StoreError> {
        let candidates = self.repack_candidates(round, below_percent).await?;
        if candidates.is_empty() {
            round.done = true;
            return Ok(0);
        }
        let before = round.report.packs_rewritten;
        self.rewrite(&candidates, &mut round.report).await?;
        Ok(round.report.packs_rewritten - before)
    }

    /// Candidates from where the round stands, at most one pack's worth
    /// of live bytes.
    async fn repack_candidates(
        &self,
        round: &mut RepackRound,
        below_percent: u64,
    ) -> Result<Vec<([u8; 32], PackRecord)>, StoreError> {
        let (size, mut live, mut picked) = (self.settings.packs.size as u64, 0u64, Vec::new());
        loop {
            let page = self.meta.packs_page(round.after, PAGE).await?;
            for (id, rec) in &page {
                round.after = Some(*id);
                if !self.wants_repack(rec, below_percent) {
                    continue;
                }
                live += u64::from(rec.live_bytes);
                picked.push((*id, *rec));
                if live >= size {
                    return Ok(picked);
                }
            }
            if page.len() < PAGE {
                round.done = true;
                // One small pack alone gains nothing from a rewrite.
                let single_small = picked.len() == 1
                    && picked[0].1.live_chunks > 0
                    && picked[0].1.live_percent() >= below_percent;
                if single_small {
                    picked.clear();
                }
                return Ok(picked);
            }
        }
    }

    fn wants_repack(&self, rec: &PackRecord, below_percent: u64) -> bool {
        let small = (rec.size as usize) < self.settings.packs.size / 4;
        rec.live_chunks == 0 || rec.live_percent() < below_percent || small
    }

    /// Rewrites `old` packs into one new pack and deletes them.
    async fn rewrite(
        self: &Arc<Self>,
        old: &[([u8; 32], PackRecord)],
        report: &mut RepackReport,
    ) -> Result<(), StoreError> {
        let mut carried = Vec::new();
        let mut readable = Vec::new();
        for (pack, rec) in old {
            if rec.live_chunks > 0 && !self.read_live(pack, &mut carried, report).await? {
                continue;
            }
            readable.push(*pack);
        }
        let mut emptied = Vec::new();
        if carried.is_empty() {
            for pack in &readable {
                if let Some(size) = self.meta.forget_empty_pack(pack).await? {
                    emptied.push((*pack, size));
                }
            }
        } else {
            // The new pack stays pinned until it is recorded.
            let (new, size, entries, _pin) = self.write_pack(&carried).await?;
            let relocated = self
                .meta
                .relocate_pack(&readable, &new, size, &entries, now_secs())
                .await?;
            report.packs_written += 1;
            report.chunks_moved += u64::from(relocated.moved);
            report.bytes_freed -= i64::from(size);
            emptied = relocated.emptied;
        }
        report.packs_rewritten += readable.len() as u64;
        for (pack, size) in emptied {
            let name = ObjectName::for_pack(&self.keys, &pack);
            match self.backend.delete(&name).await {
                Ok(()) => {
                    report.packs_deleted += 1;
                    report.bytes_freed += i64::from(size);
                }
                // Left for the orphan sweep: no record names it any more.
                Err(e) => {
                    tracing::warn!(object = %name, error = %e, "could not delete an emptied pack")
                }
            }
        }
        Ok(())
    }

    /// Reads pack `pack` and adds its live chunks (those whose records
    /// still point into it) to `carried`. False when the pack is gone (the
    /// collector dropped it meanwhile).
    async fn read_live(
        self: &Arc<Self>,
        pack: &[u8; 32],
        carried: &mut Vec<Carried>,
        report: &mut RepackReport,
    ) -> Result<bool, StoreError> {
        let name = ObjectName::for_pack(&self.keys, pack);
        let object = match self.backend.get(&name).await {
            Ok(object) => object,
            Err(BackendError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let entries = self
            .sealer
            .read_trailer(pack, &name, &object)
            .map_err(|source| StoreError::Object {
                id: ChunkId(*pack),
                name: name.to_string(),
                source,
            })?;
        let users: Vec<u64> = self.meta.users().await?.iter().map(|u| u.id).collect();
        let keys = self.keys_of_every_scope(&users);
        for e in entries {
            if !self.still_here(&e, pack).await? {
                continue;
            }
            let range = object.slice(e.offset as usize..(e.offset + e.len) as usize);
            match self
                .open_packed(e.id, name.clone(), range, keys.clone())
                .await
            {
                Ok(plain) => carried.push(Carried { id: e.id, plain }),
                Err(StoreError::Object { .. }) => report.damaged_entries += 1,
                Err(other) => return Err(other),
            }
        }
        Ok(true)
    }

    /// Whether chunk `e.id`'s record still points at this entry.
    async fn still_here(&self, e: &PackedEntry, pack: &[u8; 32]) -> Result<bool, StoreError> {
        let rec = self.meta.chunk(&e.id.0).await?;
        Ok(rec
            .and_then(|r| r.packed)
            .is_some_and(|at| at.pack == *pack && at.offset == e.offset))
    }

    /// Seals `carried` into a new pack and puts it upstream, after its
    /// pending record; the pack's id stays pinned while the guard lives.
    async fn write_pack(
        self: &Arc<Self>,
        carried: &[Carried],
    ) -> Result<(PackId, u32, Vec<PackedEntry>, PinGuard), StoreError> {
        let pack: PackId = rand::random();
        let name = ObjectName::for_pack(&self.keys, &pack);
        let store = self.clone();
        let (plains, seal_name): (Vec<_>, _) = (
            carried.iter().map(|c| (c.id, c.plain.clone())).collect(),
            name.clone(),
        );
        let (bytes, entries) = tokio::task::spawn_blocking(move || {
            let mut builder = PackBuilder::new(&store.sealer, pack, seal_name.clone());
            for (id, plain) in &plains {
                let sealed = store.sealer.seal_packed(id, &seal_name, plain)?;
                builder.push(*id, &sealed);
            }
            builder.finish(&store.sealer)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        let size = bytes.len() as u32;
        let pin = super::packs::pin_pack(&self.pins, pack);
        self.meta.add_pending(&[(pack, size)], now_secs()).await?;
        self.backend.put(&name, Bytes::from(bytes)).await?;
        Ok((pack, size, entries, pin))
    }
}
