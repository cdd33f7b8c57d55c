//! Packs in the redb engine: the journaled `packs` table (pack id →
//! [`PackRecord`]) and the chunk records located in packs.
//!
//! The rules, each kept inside one transaction:
//! - **Recording a pack** creates a record for every entry whose chunk the
//!   index does not know yet (no references, marked unreferenced now, so an
//!   upload that never commits leaves it to the collector), located in the
//!   pack; an entry whose chunk is already known (a concurrent upload
//!   stored it too) is dead space from the start. The pack's pending
//!   record goes: from now on its record names the object.
//! - **Live counts** are the chunk records located in the pack: the
//!   collector forgetting a packed chunk takes it off its pack, and the
//!   transaction that takes the last one off drops the pack's record and
//!   answers the pack for deletion (so exactly one caller deletes it).
//! - **Relocating** (the repacker) moves only records still located in
//!   the old pack; a record the collector dropped meanwhile stays dropped.
//! - The stored-bytes counter counts a pack's whole size (what the
//!   backend holds) from its recording to its deletion, and nothing for
//!   the chunks inside it.

use redb::ReadableTable;

use super::tables::KEY_STORED_BYTES;
use super::tx::{get_chunk, WriteTables};
use super::Index;
use crate::crypto::PackedEntry;
use crate::meta::{ChunkRecord, IndexError, PackRecord, PackedAt, Relocated};

impl Index {
    /// Records pack `pack` (`size` bytes, holding `entries`) as stored, at
    /// `now`; answers how many of its entries became live.
    pub fn record_pack(
        &self,
        pack: &[u8; 32],
        size: u32,
        entries: &[PackedEntry],
        now: u64,
    ) -> Result<u32, IndexError> {
        self.write(|t| {
            let mut record = new_pack(size, now);
            for e in entries {
                if get_chunk(&*t.chunks, &e.id.0)?.is_some() {
                    continue;
                }
                let rec = packed_chunk(pack, e, 0, now.max(1));
                t.put_chunk(&e.id.0, &rec)?;
                record.live_chunks += 1;
                record.live_bytes = record.live_bytes.saturating_add(e.len);
            }
            t.packs
                .insert(pack.as_slice(), record.encode().as_slice())?;
            t.add_counter(KEY_STORED_BYTES, i64::from(size))?;
            t.settle_pending(std::iter::once(*pack))?;
            Ok(record.live_chunks)
        })
    }

    /// What the index knows of pack `pack`.
    pub fn pack(&self, pack: &[u8; 32]) -> Result<Option<PackRecord>, IndexError> {
        self.read(|t| match t.packs()?.get(pack.as_slice())? {
            Some(v) => Ok(Some(PackRecord::decode(v.value())?)),
            None => Ok(None),
        })
    }

    /// Pack records in id order after `after`, at most `limit`.
    pub fn packs_page(
        &self,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<([u8; 32], PackRecord)>, IndexError> {
        self.read(|t| {
            let packs = t.packs()?;
            let rows = match &after {
                Some(a) => packs.range::<&[u8]>((
                    std::ops::Bound::Excluded(a.as_slice()),
                    std::ops::Bound::Unbounded,
                ))?,
                None => packs.range::<&[u8]>(..)?,
            };
            let mut page = Vec::new();
            for row in rows.take(limit) {
                let (k, v) = row?;
                page.push((super::chunk_key(k.value())?, PackRecord::decode(v.value())?));
            }
            Ok(page)
        })
    }

    /// Moves the chunk records still located in one of the packs `old`
    /// whose entries pack `new` (`size` bytes, recorded now) holds too;
    /// entries of chunks no longer there are dead space in `new`.
    pub fn relocate_pack(
        &self,
        old: &[[u8; 32]],
        new: &[u8; 32],
        size: u32,
        entries: &[PackedEntry],
        now: u64,
    ) -> Result<Relocated, IndexError> {
        self.write(|t| {
            let mut record = new_pack(size, now);
            for e in entries {
                let Some(rec) = get_chunk(&*t.chunks, &e.id.0)? else {
                    continue;
                };
                let Some(from) = rec.packed.map(|at| at.pack).filter(|p| old.contains(p)) else {
                    continue;
                };
                let moved = ChunkRecord {
                    packed: Some(PackedAt {
                        pack: *new,
                        offset: e.offset,
                    }),
                    stored: e.len,
                    ..rec
                };
                t.put_chunk(&e.id.0, &moved)?;
                take_off(t, &from, rec.stored)?;
                record.live_chunks += 1;
                record.live_bytes = record.live_bytes.saturating_add(e.len);
            }
            t.packs.insert(new.as_slice(), record.encode().as_slice())?;
            t.add_counter(KEY_STORED_BYTES, i64::from(size))?;
            t.settle_pending(std::iter::once(*new))?;
            let mut emptied = Vec::new();
            for pack in old {
                if let Some(size) = drop_if_empty(t, pack)? {
                    emptied.push((*pack, size));
                }
            }
            Ok(Relocated {
                moved: record.live_chunks,
                emptied,
            })
        })
    }

    /// Drops the record of pack `pack` if no live chunk is left in it;
    /// answers its size then (the caller deletes the object).
    pub fn forget_empty_pack(&self, pack: &[u8; 32]) -> Result<Option<u32>, IndexError> {
        self.write(|t| drop_if_empty(t, pack))
    }
}

fn new_pack(size: u32, now: u64) -> PackRecord {
    PackRecord {
        size,
        live_chunks: 0,
        live_bytes: 0,
        created: now,
    }
}

fn packed_chunk(pack: &[u8; 32], e: &PackedEntry, refs: u64, mark: u64) -> ChunkRecord {
    ChunkRecord {
        refs,
        stored: e.len,
        unreferenced_since: mark,
        packed: Some(PackedAt {
            pack: *pack,
            offset: e.offset,
        }),
    }
}

/// Takes one live chunk of `stored` bytes off pack `pack`.
pub(super) fn take_off(
    t: &mut WriteTables<'_>,
    pack: &[u8; 32],
    stored: u32,
) -> Result<(), IndexError> {
    let Some(v) = t.packs.get(pack.as_slice())? else {
        return Ok(());
    };
    let mut rec = PackRecord::decode(v.value())?;
    drop(v);
    rec.live_chunks = rec.live_chunks.saturating_sub(1);
    rec.live_bytes = rec.live_bytes.saturating_sub(stored);
    t.packs.insert(pack.as_slice(), rec.encode().as_slice())?;
    Ok(())
}

/// Drops pack `pack`'s record when nothing live is left in it, taking
/// its size off the stored bytes; answers that size.
pub(super) fn drop_if_empty(
    t: &mut WriteTables<'_>,
    pack: &[u8; 32],
) -> Result<Option<u32>, IndexError> {
    let Some(v) = t.packs.get(pack.as_slice())? else {
        return Ok(None);
    };
    let rec = PackRecord::decode(v.value())?;
    drop(v);
    if rec.live_chunks > 0 {
        return Ok(None);
    }
    t.packs.remove(pack.as_slice())?;
    t.add_counter(KEY_STORED_BYTES, -i64::from(rec.size))?;
    Ok(Some(rec.size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ChunkId;

    fn open() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.redb")).unwrap();
        (dir, index)
    }

    fn entry(id: u8, offset: u32, len: u32) -> PackedEntry {
        PackedEntry {
            id: ChunkId([id; 32]),
            offset,
            len,
        }
    }

    #[test]
    fn a_pack_records_its_new_chunks_and_counts_them_live() {
        let (_d, index) = open();
        index.add_pending(&[([9; 32], 300)], 5).unwrap();
        let entries = [entry(1, 12, 100), entry(2, 112, 150)];
        assert_eq!(index.record_pack(&[9; 32], 300, &entries, 10).unwrap(), 2);
        let rec = index.chunk(&[2; 32]).unwrap().unwrap();
        assert_eq!((rec.refs, rec.stored, rec.unreferenced_since), (0, 150, 10));
        assert_eq!(
            rec.packed,
            Some(PackedAt {
                pack: [9; 32],
                offset: 112
            })
        );
        let pack = index.pack(&[9; 32]).unwrap().unwrap();
        assert_eq!(
            (pack.size, pack.live_chunks, pack.live_bytes),
            (300, 2, 250)
        );
        assert!(index.pending(&[9; 32]).unwrap().is_none(), "settled");
        assert_eq!(index.stats().unwrap().stored_bytes, 300);
        // A second pack with chunk 1 again and a new chunk 3.
        let again = [entry(1, 12, 100), entry(3, 112, 40)];
        assert_eq!(index.record_pack(&[8; 32], 200, &again, 11).unwrap(), 1);
        let first = index.chunk(&[1; 32]).unwrap().unwrap();
        assert_eq!(first.packed.unwrap().pack, [9; 32], "the first copy stays");
    }

    #[test]
    fn forgetting_the_last_live_chunk_drops_the_pack_once() {
        let (_d, index) = open();
        let entries = [entry(1, 12, 100), entry(2, 112, 150)];
        index.record_pack(&[9; 32], 300, &entries, 10).unwrap();
        let first = index.forget_chunks(&[[1; 32]], 20).unwrap();
        assert!(first.is_empty(), "the pack still holds chunk 2");
        assert_eq!(index.pack(&[9; 32]).unwrap().unwrap().live_chunks, 1);
        let second = index.forget_chunks(&[[2; 32]], 20).unwrap();
        assert_eq!(second, vec![([9; 32], 300)], "the pack is answered once");
        assert!(index.pack(&[9; 32]).unwrap().is_none());
        assert_eq!(index.stats().unwrap().stored_bytes, 0);
    }

    #[test]
    fn relocation_moves_only_what_is_still_in_the_old_pack() {
        let (_d, index) = open();
        let entries = [entry(1, 12, 100), entry(2, 112, 150), entry(3, 262, 30)];
        index.record_pack(&[9; 32], 400, &entries, 10).unwrap();
        index.forget_chunks(&[[2; 32]], 20).unwrap();
        let moved = [entry(1, 12, 101), entry(2, 113, 150), entry(3, 263, 30)];
        let r = index
            .relocate_pack(&[[9; 32]], &[7; 32], 320, &moved, 30)
            .unwrap();
        assert_eq!(
            r,
            Relocated {
                moved: 2,
                emptied: vec![([9; 32], 400)]
            }
        );
        let one = index.chunk(&[1; 32]).unwrap().unwrap();
        assert_eq!(
            (
                one.packed.unwrap().pack,
                one.packed.unwrap().offset,
                one.stored
            ),
            ([7; 32], 12, 101)
        );
        assert!(index.chunk(&[2; 32]).unwrap().is_none(), "stays dropped");
        let new = index.pack(&[7; 32]).unwrap().unwrap();
        assert_eq!((new.live_chunks, new.live_bytes), (2, 131));
        assert_eq!(index.stats().unwrap().stored_bytes, 320);
    }

    #[test]
    fn a_pack_with_nothing_live_can_be_forgotten_and_one_with_can_not() {
        let (_d, index) = open();
        index
            .record_pack(&[9; 32], 300, &[entry(1, 12, 100)], 10)
            .unwrap();
        index
            .record_pack(&[8; 32], 200, &[entry(1, 12, 100)], 10)
            .unwrap();
        assert_eq!(index.forget_empty_pack(&[9; 32]).unwrap(), None);
        assert_eq!(index.forget_empty_pack(&[8; 32]).unwrap(), Some(200));
        let page = index.packs_page(None, 10).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].0, [9; 32]);
    }
}
