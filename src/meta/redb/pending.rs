//! Pending records: the index's account of objects written for uploads
//! that have not committed. Each is written durably before its object is
//! put upstream (many chunks per transaction, see `store::pending`), so an
//! object the index does not name can only exist while its put is in
//! flight. A commit that references the chunk removes the record; an
//! upload that ends without committing marks it abandoned now; the
//! collector deletes the object once the record is older than the grace
//! period and no upload pins the chunk (`store::gc`).

use redb::{ReadableTable, ReadableTableMetadata};

use super::tx::{get_chunk, get_pending};
use super::Index;
use crate::meta::records::{ExpiredPending, PendingRecord};
use crate::meta::IndexError;

impl Index {
    /// Records `entries` (chunk id, sealed size) as pending since `now`,
    /// in one durable transaction. A chunk already pending keeps one
    /// record, with the later time.
    pub fn add_pending(&self, entries: &[([u8; 32], u32)], now: u64) -> Result<(), IndexError> {
        self.write(|t| {
            for (id, stored) in entries {
                let since = match get_pending(&t.pending, id)? {
                    Some(old) => old.since.max(now),
                    None => now,
                };
                let rec = PendingRecord {
                    since,
                    stored: *stored,
                };
                t.pending.insert(id.as_slice(), rec.encode().as_slice())?;
            }
            Ok(())
        })
    }

    /// Marks the pending records of an upload that will not commit as
    /// abandoned at `now` (the grace period starts over), with the exact
    /// size of each object the upload put. Ids without a record (a commit
    /// took them, or the collector already did) are skipped; when none has
    /// one, nothing is written.
    pub fn abandon_pending(
        &self,
        ids: &[([u8; 32], Option<u32>)],
        now: u64,
    ) -> Result<usize, IndexError> {
        let any = self.read(|t| {
            let pending = t.pending()?;
            for (id, _) in ids {
                if pending.get(id.as_slice())?.is_some() {
                    return Ok::<_, IndexError>(true);
                }
            }
            Ok(false)
        })?;
        if !any {
            return Ok(0);
        }
        self.write(|t| {
            let mut n = 0;
            for (id, stored) in ids {
                if let Some(mut rec) = get_pending(&t.pending, id)? {
                    rec.since = rec.since.max(now);
                    rec.stored = stored.unwrap_or(rec.stored);
                    t.pending.insert(id.as_slice(), rec.encode().as_slice())?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    /// Pending records written or abandoned at `cutoff` (Unix seconds) or
    /// earlier: the collector's candidates. At most `limit`.
    pub fn expired_pending(&self, cutoff: u64, limit: usize) -> Result<Vec<[u8; 32]>, IndexError> {
        self.read(|t| {
            let mut out = Vec::new();
            for row in t.pending()?.iter()? {
                let (k, v) = row?;
                let rec = PendingRecord::decode(v.value())?;
                if rec.since <= cutoff {
                    if let Ok(id) = <[u8; 32]>::try_from(k.value()) {
                        out.push(id);
                    }
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            Ok(out)
        })
    }

    /// Drops the pending records of `ids` that are still expired at
    /// `cutoff` (re-checked in this transaction), and says for each whether
    /// its object is to be deleted: not when a chunk record names it.
    pub fn forget_pending(
        &self,
        ids: &[[u8; 32]],
        cutoff: u64,
    ) -> Result<Vec<ExpiredPending>, IndexError> {
        self.write(|t| {
            let mut out = Vec::new();
            for id in ids {
                let Some(rec) = get_pending(&t.pending, id)? else {
                    continue;
                };
                if rec.since > cutoff {
                    continue;
                }
                t.pending.remove(id.as_slice())?;
                out.push(ExpiredPending {
                    id: *id,
                    stored: rec.stored,
                    delete_object: get_chunk(&*t.chunks, id)?.is_none(),
                });
            }
            Ok(out)
        })
    }

    /// What a chunk's pending record says, if it has one.
    pub fn pending(&self, id: &[u8; 32]) -> Result<Option<PendingRecord>, IndexError> {
        self.read(|t| get_pending(t.pending()?, id))
    }

    /// (records, sealed bytes) of objects written for uploads that have not
    /// committed: in flight, or abandoned and awaiting the collector.
    pub fn pending_totals(&self) -> Result<(u64, u64), IndexError> {
        self.read(|t| {
            let pending = t.pending()?;
            let mut bytes = 0u64;
            for row in pending.iter()? {
                let (_, v) = row?;
                bytes += PendingRecord::decode(v.value())?.stored as u64;
            }
            Ok((pending.len()?, bytes))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::ChunkRecord;

    fn open() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("i.redb")).unwrap();
        (dir, index)
    }

    #[test]
    fn pending_records_expire_and_yield_to_chunk_records() {
        let (_d, index) = open();
        index
            .add_pending(&[([1; 32], 100), ([2; 32], 200), ([3; 32], 300)], 50)
            .unwrap();
        assert_eq!(index.pending_totals().unwrap(), (3, 600));
        // A pending record never makes a chunk known (its object may not exist).
        assert!(!index.chunk_known(&[1; 32]).unwrap());
        // Abandoned later: the grace period starts over.
        let abandoned = [([2; 32], Some(150)), ([9; 32], None)];
        assert_eq!(index.abandon_pending(&abandoned, 80).unwrap(), 1);
        assert_eq!(index.abandon_pending(&[([9; 32], None)], 90).unwrap(), 0);
        assert_eq!(index.expired_pending(60, 10).unwrap().len(), 2);
        // Chunk 3 was committed by another upload meanwhile.
        index
            .write(|t| t.put_chunk(&[3; 32], &ChunkRecord::object(1, 300, 0)))
            .unwrap();
        let gone = index
            .forget_pending(&[[1; 32], [2; 32], [3; 32]], 60)
            .unwrap();
        assert_eq!(
            gone,
            vec![
                ExpiredPending {
                    id: [1; 32],
                    stored: 100,
                    delete_object: true
                },
                ExpiredPending {
                    id: [3; 32],
                    stored: 300,
                    delete_object: false
                },
            ]
        );
        let left = index.pending(&[2; 32]).unwrap().unwrap();
        assert_eq!((left.since, left.stored), (80, 150), "exact size once put");
        assert_eq!(index.pending_totals().unwrap(), (1, 150));
    }
}
