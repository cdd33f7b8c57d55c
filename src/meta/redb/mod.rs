//! The redb engine: one redb database on the gateway's disk holding users,
//! the per-user trees, file manifests, chunk refcounts, sessions, pending
//! records and counters. Private to `meta`: the rest of the code sees only
//! [`crate::meta::Meta`] and the records, and this is the only folder that
//! names redb. `Index` owns the database and the installation-wide tables;
//! `tree::Namespace` the tree, session and property operations.

mod app_passwords;
pub(crate) mod check;
pub(crate) mod durability;
mod history;
mod journal;
mod locks;
mod migrate;
mod objects;
pub(crate) mod packs;
mod pending;
pub(crate) mod quota;
pub mod sessions;
pub(crate) mod snapshot;
pub(crate) mod tables;
mod totp;
pub mod tree;
pub(crate) mod tx;
mod users;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, ReadableTable, ReadableTableMetadata};

use crate::meta::records::Stats;
use crate::meta::records::{ChunkRecord, PendingRecord, UserRecord};
use crate::meta::IndexError;
pub(crate) use tables::*;

/// The schema version this build reads and writes. 2: objects live in one
/// level of fan-out folders (`objects/ab/<name>`); an index of version 1
/// names objects under `objects/ab/cd/`, so it is refused. 3: the
/// `pending` table (objects of uploads not committed yet) and dead
/// properties counted in each user's `used`; a version-2 index is migrated
/// on open ([`migrate`]).
pub const SCHEMA_VERSION: u64 = 3;

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for IndexError {
            fn from(e: $t) -> Self {
                IndexError::Storage(Box::new(e))
            }
        }
    )*};
}
storage_from!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The open index.
pub struct Index {
    pub(crate) db: Database,
    /// Shares durable commits between concurrent write transactions.
    group: durability::GroupCommit,
    /// The last journal sequence number of a durable commit: what the
    /// metadata facade compares before and after a write to know whether
    /// it changed journaled tables (zero-lag mode, `meta/upstream_gate.rs`).
    committed_seq: AtomicU64,
    /// Commit latencies, for `/metrics`.
    metrics: crate::meta::metrics::IndexMetrics,
}

impl Index {
    /// Opens (or creates) the index at `path` and checks its schema version.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => IndexError::InUse {
                path: path.display().to_string(),
            },
            other => IndexError::Storage(Box::new(other)),
        })?;
        let index = Self {
            db,
            group: Default::default(),
            committed_seq: AtomicU64::new(0),
            metrics: Default::default(),
        };
        index.init_schema()?;
        index.note_committed(index.journal_next()?.saturating_sub(1));
        Ok(index)
    }

    /// The last journal sequence number of a durable commit (0 before the
    /// first). Only grows.
    pub fn committed_seq(&self) -> u64 {
        self.committed_seq.load(Ordering::Acquire)
    }

    /// What this engine counted of its commits.
    pub fn metrics(&self) -> &crate::meta::metrics::IndexMetrics {
        &self.metrics
    }

    /// Notes that every journal row up to `seq` is committed and durable.
    pub(crate) fn note_committed(&self, seq: u64) {
        self.committed_seq.fetch_max(seq, Ordering::AcqRel);
    }

    fn init_schema(&self) -> Result<(), IndexError> {
        let tx = self.db.begin_write()?;
        let mut fresh = false;
        {
            let mut meta = tx.open_table(META)?;
            let found = meta.get(KEY_SCHEMA)?.map(|v| v.value());
            match found {
                Some(2) => migrate::from_v2(&tx, &mut meta)?,
                Some(v) if v != SCHEMA_VERSION => {
                    return Err(IndexError::SchemaMismatch {
                        found: v,
                        expected: SCHEMA_VERSION,
                    })
                }
                Some(_) => {}
                None => fresh = true,
            }
            // Create every table so read transactions never miss one.
            tx.open_table(USERS)?;
            tx.open_table(NODES)?;
            tx.open_table(DIRENTS)?;
            tx.open_table(MANIFESTS)?;
            tx.open_table(CHUNKS)?;
            tx.open_table(PROPS)?;
            tx.open_table(UPLOADS)?;
            tx.open_table(UPLOAD_PARTS)?;
            tx.open_table(APP_PASSWORDS)?;
            tx.open_table(APP_PASSWORD_SEEN)?;
            tx.open_table(AUDIT)?;
            tx.open_table(TOTP)?;
            tx.open_table(PACKS)?;
            tx.open_table(HISTORY)?;
            tx.open_table(PENDING)?;
            tx.open_table(SCRUB)?;
            tx.open_table(SCRUB_FINDINGS)?;
            tx.open_table(LOCKS)?;
            tx.open_table(JOURNAL)?;
            tx.open_table(JOURNAL_STATE)?;
            tx.open_table(UPSTREAM_SEGMENTS)?;
            tx.open_table(SNAPSHOTS)?;
        }
        tx.commit()?;
        if fresh {
            self.seed()?;
        }
        Ok(())
    }

    /// Writes a new index's counters, journaled like every change, so the
    /// journal of a new index starts from nothing: its first transaction
    /// sets `schema_version`. A crash before this commits leaves an index
    /// without a version, which the next open seeds again.
    fn seed(&self) -> Result<(), IndexError> {
        self.write(|t| {
            t.meta.insert(KEY_SCHEMA, SCHEMA_VERSION)?;
            t.meta.insert(KEY_NEXT_ID, 1)?;
            t.meta.insert(KEY_CHANGE, 1)?;
            t.meta.insert(KEY_INSTANCE, rand::random::<u32>() as u64)?;
            Ok(())
        })
    }

    /// The sequence number the next journal row takes.
    fn journal_next(&self) -> Result<u64, IndexError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get(KEY_JOURNAL_NEXT)?.map_or(1, |v| v.value()))
    }

    /// A short random id of this installation (part of `oc:id`).
    pub fn instance_id(&self) -> Result<u64, IndexError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get(KEY_INSTANCE)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Whether the chunk is known (stored, possibly awaiting deletion).
    pub fn chunk_known(&self, id: &[u8; 32]) -> Result<bool, IndexError> {
        Ok(self.chunk(id)?.is_some())
    }

    /// What the index knows of a chunk.
    pub fn chunk(&self, id: &[u8; 32]) -> Result<Option<ChunkRecord>, IndexError> {
        self.read(|t| tx::get_chunk(t.chunks()?, id))
    }

    /// The sum of all chunk reference counts (file manifests and chunked
    /// upload sessions); a check that what is released is released.
    pub fn chunk_references(&self) -> Result<u64, IndexError> {
        let tx = self.db.begin_read()?;
        let chunks = tx.open_table(CHUNKS)?;
        let mut total = 0u64;
        for row in chunks.iter()? {
            let (_, v) = row?;
            total += ChunkRecord::decode(v.value())?.refs;
        }
        Ok(total)
    }

    /// Chunk records in id order after `after` (from the first without),
    /// at most `limit`: a cursor over every chunk for walks that must not
    /// hold one long read (scrub, check, orphan sweep).
    pub fn chunks_page(
        &self,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<([u8; 32], ChunkRecord)>, IndexError> {
        self.read(|t| {
            let chunks = t.chunks()?;
            let rows = match &after {
                Some(a) => chunks.range::<&[u8]>((
                    std::ops::Bound::Excluded(&a[..]),
                    std::ops::Bound::Unbounded,
                ))?,
                None => chunks.iter()?,
            };
            let mut out = Vec::new();
            for row in rows.take(limit) {
                let (k, v) = row?;
                out.push((chunk_key(k.value())?, ChunkRecord::decode(v.value())?));
            }
            Ok(out)
        })
    }

    /// Pending records in id order after `after`, at most `limit`.
    pub fn pending_page(
        &self,
        after: Option<[u8; 32]>,
        limit: usize,
    ) -> Result<Vec<([u8; 32], PendingRecord)>, IndexError> {
        self.read(|t| {
            let pending = t.pending()?;
            let rows = match &after {
                Some(a) => pending.range::<&[u8]>((
                    std::ops::Bound::Excluded(&a[..]),
                    std::ops::Bound::Unbounded,
                ))?,
                None => pending.iter()?,
            };
            let mut out = Vec::new();
            for row in rows.take(limit) {
                let (k, v) = row?;
                out.push((chunk_key(k.value())?, PendingRecord::decode(v.value())?));
            }
            Ok(out)
        })
    }

    /// Chunks no manifest references, unreferenced since `cutoff` (Unix
    /// seconds) or earlier: the collector's candidates. At most `limit`.
    pub fn unreferenced_chunks(
        &self,
        cutoff: u64,
        limit: usize,
    ) -> Result<Vec<[u8; 32]>, IndexError> {
        self.read(|t| {
            let mut out = Vec::new();
            for row in t.chunks()?.iter()? {
                let (k, v) = row?;
                let rec = ChunkRecord::decode(v.value())?;
                if rec.refs == 0 && rec.unreferenced_since != 0 && rec.unreferenced_since <= cutoff
                {
                    let mut id = [0u8; 32];
                    if k.value().len() == 32 {
                        id.copy_from_slice(k.value());
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

    /// Drops the records of chunks that are still unreferenced since
    /// `cutoff` or earlier (re-checked in this transaction: a chunk an
    /// upload revived meanwhile is kept). Returns the objects to delete,
    /// with their sizes: each dropped chunk stored on its own, and each
    /// pack whose last live chunk this took (see `packs.rs`).
    pub fn forget_chunks(
        &self,
        ids: &[[u8; 32]],
        cutoff: u64,
    ) -> Result<Vec<([u8; 32], u32)>, IndexError> {
        self.write(|t| {
            let mut dropped = Vec::new();
            for id in ids {
                let Some(rec) = t.chunk(id)? else { continue };
                if rec.refs == 0 && rec.unreferenced_since != 0 && rec.unreferenced_since <= cutoff
                {
                    t.chunks.remove(id.as_slice())?;
                    let Some(at) = rec.packed else {
                        t.add_counter(KEY_STORED_BYTES, -(rec.stored as i64))?;
                        dropped.push((*id, rec.stored));
                        continue;
                    };
                    packs::take_off(t, &at.pack, rec.stored)?;
                    if let Some(size) = packs::drop_if_empty(t, &at.pack)? {
                        dropped.push((at.pack, size));
                    }
                }
            }
            Ok(dropped)
        })
    }

    /// Overall usage figures.
    /// Files per owner (user id), counted over every node in one read
    /// transaction: O(nodes), for occasional reports (the admin API's
    /// statistics), not for request paths.
    pub fn files_by_owner(&self) -> Result<std::collections::HashMap<u64, u64>, IndexError> {
        let tx = self.db.begin_read()?;
        let mut files = std::collections::HashMap::new();
        for row in tx.open_table(NODES)?.iter()? {
            let (_, v) = row?;
            let node = crate::meta::Node::decode(v.value())?;
            if !node.is_dir() {
                *files.entry(node.owner).or_insert(0) += 1;
            }
        }
        Ok(files)
    }

    pub fn stats(&self) -> Result<Stats, IndexError> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        let get = |k: &str| -> Result<u64, IndexError> {
            Ok(meta.get(k)?.map(|v| v.value()).unwrap_or(0))
        };
        let users = tx.open_table(USERS)?;
        let mut logical = 0;
        for row in users.iter()? {
            let (_, v) = row?;
            logical += UserRecord::decode(v.value())?.used;
        }
        let (pending_objects, pending_bytes) = self.pending_totals()?;
        Ok(Stats {
            users: users.len()?,
            files: get(KEY_FILES)?,
            logical_bytes: logical,
            stored_bytes: get(KEY_STORED_BYTES)?,
            chunks: tx.open_table(CHUNKS)?.len()?,
            pending_objects,
            pending_bytes,
        })
    }
}

/// A chunk id stored as a table key.
fn chunk_key(raw: &[u8]) -> Result<[u8; 32], IndexError> {
    raw.try_into().map_err(|_| IndexError::Corrupt {
        table: "chunks",
        cause: format!("a key of {} bytes, not 32", raw.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{prop_cost, NewUser};

    #[test]
    fn schema_version_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        drop(Index::open(&path).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert(KEY_SCHEMA, 99).unwrap();
            tx.commit().unwrap();
        }
        match Index::open(&path) {
            Err(IndexError::SchemaMismatch { found: 99, .. }) => {}
            other => panic!("expected a schema mismatch, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn a_version_2_index_is_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let (alice, value) = {
            let index = Index::open(&path).unwrap();
            let alice = index
                .add_user(NewUser {
                    name: "alice".into(),
                    password_hash: "x".into(),
                    admin: false,
                    quota: None,
                })
                .unwrap();
            let value = b"a dead property value".to_vec();
            index
                .write(|t| {
                    t.props
                        .insert((alice.root, "urn:x\0colour"), value.as_slice())?;
                    Ok::<_, IndexError>(())
                })
                .unwrap();
            (alice, value)
        };
        // Make it what version 2 wrote: no pending table, properties free.
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META).unwrap().insert(KEY_SCHEMA, 2).unwrap();
            assert!(tx.delete_table(PENDING).unwrap());
            tx.commit().unwrap();
        }
        let index = Index::open(&path).unwrap();
        let tx = index.db.begin_read().unwrap();
        let version = tx.open_table(META).unwrap().get(KEY_SCHEMA).unwrap();
        assert_eq!(version.unwrap().value(), SCHEMA_VERSION);
        drop(tx);
        assert_eq!(index.pending_totals().unwrap(), (0, 0));
        let used = index.user("alice").unwrap().unwrap().used;
        assert_eq!(used, prop_cost("urn:x\0colour", &value));
        assert_eq!(index.user("alice").unwrap().unwrap().id, alice.id);
        // Opening again changes nothing.
        drop(index);
        let index = Index::open(&path).unwrap();
        assert_eq!(index.user("alice").unwrap().unwrap().used, used);
    }

    #[test]
    fn the_committed_sequence_follows_journaled_writes_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let last_row = |index: &Index| {
            index
                .journal_after(0, 1 << 20)
                .unwrap()
                .rows
                .last()
                .unwrap()
                .seq
        };
        let seq = {
            let index = Index::open(&path).unwrap();
            assert_eq!(index.committed_seq(), last_row(&index), "the seed");
            index
                .add_user(NewUser {
                    name: "bob".into(),
                    password_hash: "x".into(),
                    admin: false,
                    quota: None,
                })
                .unwrap();
            assert_eq!(index.committed_seq(), last_row(&index));
            let seq = index.committed_seq();
            index.add_pending(&[([1; 32], 10)], 1).unwrap();
            assert_eq!(index.committed_seq(), seq, "pending is not journaled");
            seq
        };
        assert_eq!(Index::open(&path).unwrap().committed_seq(), seq);
    }

    #[test]
    fn second_open_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let _first = Index::open(&path).unwrap();
        let err = Index::open(&path).err().unwrap();
        assert!(err.to_string().contains("in use"), "{err}");
    }
}
