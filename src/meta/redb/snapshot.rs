//! The redb engine's side of snapshots and restores: the dump of every
//! journaled table in one read transaction, the record of sealed snapshots
//! and uploaded segments (what the upstream copy holds, so old parts can
//! be deleted), and [`RestoreTarget`], which loads rows into a new file.
//!
//! Rows go in and out as the engine's own key and value bytes (redb's
//! `Key::as_bytes` / `from_bytes`), so a dump and a replay need no codec
//! per table. Loading trusts the row bytes only as far as they were
//! authenticated: they come from objects sealed under the master key
//! (AES-256-GCM-SIV) and hashed into the chain, and the fixed-size keys
//! are length-checked before redb decodes them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use redb::{
    Database, Key, ReadTransaction, ReadableTable, Table, TableDefinition, Value, WriteTransaction,
};

use super::sessions::part_contents;
use super::tables::*;
use super::Index;
use crate::meta::journal::{ChainHead, JournalRow, JournalTable};
use crate::meta::records::{decode_manifest, ChunkRecord};
use crate::meta::restore::{Recount, RestoredState};
use crate::meta::snapshot::{encode_record, SnapshotDump, SnapshotHead};
use crate::meta::IndexError;

fn corrupt(table: &'static str, cause: impl ToString) -> IndexError {
    IndexError::Corrupt {
        table,
        cause: cause.to_string(),
    }
}

fn io(e: std::io::Error) -> IndexError {
    IndexError::Storage(Box::new(e))
}

/// Writes dump records to a file and counts them.
struct DumpWriter {
    out: BufWriter<File>,
    scratch: Vec<u8>,
    rows: u64,
    bytes: u64,
}

impl DumpWriter {
    fn record(&mut self, table: JournalTable, key: &[u8], value: &[u8]) -> Result<(), IndexError> {
        self.scratch.clear();
        encode_record(&mut self.scratch, table, key, value);
        self.out.write_all(&self.scratch).map_err(io)?;
        self.rows += 1;
        self.bytes += self.scratch.len() as u64;
        Ok(())
    }

    fn table<K: Key + 'static, V: Value + 'static>(
        &mut self,
        tx: &ReadTransaction,
        def: TableDefinition<K, V>,
        id: JournalTable,
    ) -> Result<(), IndexError> {
        for row in tx.open_table(def)?.iter()? {
            let (k, v) = row?;
            let (key, value) = (k.value(), v.value());
            self.record(id, K::as_bytes(&key).as_ref(), V::as_bytes(&value).as_ref())?;
        }
        Ok(())
    }
}

impl Index {
    /// Writes every row of every journaled table, as of one committed
    /// state, to a new file at `path`.
    pub fn dump_snapshot(&self, path: &Path) -> Result<SnapshotDump, IndexError> {
        let tx = self.db.begin_read()?;
        let next = tx
            .open_table(META)?
            .get(KEY_JOURNAL_NEXT)?
            .map_or(1, |v| v.value());
        let chain = read_chain_head(&tx)?;
        let file = File::create(path).map_err(io)?;
        let mut w = DumpWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            scratch: Vec::new(),
            rows: 0,
            bytes: 0,
        };
        w.table(&tx, META, JournalTable::Meta)?;
        w.table(&tx, USERS, JournalTable::Users)?;
        w.table(&tx, NODES, JournalTable::Nodes)?;
        w.table(&tx, DIRENTS, JournalTable::Dirents)?;
        w.table(&tx, MANIFESTS, JournalTable::Manifests)?;
        w.table(&tx, CHUNKS, JournalTable::Chunks)?;
        w.table(&tx, PROPS, JournalTable::Props)?;
        w.table(&tx, UPLOADS, JournalTable::Uploads)?;
        w.table(&tx, UPLOAD_PARTS, JournalTable::UploadParts)?;
        w.table(&tx, APP_PASSWORDS, JournalTable::AppPasswords)?;
        w.table(&tx, AUDIT, JournalTable::Audit)?;
        w.table(&tx, TOTP, JournalTable::Totp)?;
        w.table(&tx, PACKS, JournalTable::Packs)?;
        let file = w.out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        Ok(SnapshotDump {
            state_seq: next.saturating_sub(1),
            chain,
            rows: w.rows,
            bytes: w.bytes,
        })
    }

    /// The sealed snapshots recorded as upstream, oldest first.
    pub fn snapshots(&self) -> Result<Vec<SnapshotHead>, IndexError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SNAPSHOTS)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(SnapshotHead::decode(v.value()).map_err(|e| corrupt("snapshots", e))?);
        }
        Ok(out)
    }

    /// Records a snapshot whose head is upstream.
    pub fn record_snapshot(&self, head: &SnapshotHead) -> Result<(), IndexError> {
        let tx = self.db.begin_write()?;
        tx.open_table(SNAPSHOTS)?
            .insert(head.generation, head.encode().as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets a snapshot whose head was deleted upstream.
    pub fn forget_snapshot(&self, generation: u64) -> Result<(), IndexError> {
        let tx = self.db.begin_write()?;
        tx.open_table(SNAPSHOTS)?.remove(generation)?;
        tx.commit()?;
        Ok(())
    }

    /// Uploaded segments (first, last) wholly at or before `up_to`.
    pub fn upstream_segments(&self, up_to: u64) -> Result<Vec<(u64, u64)>, IndexError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(UPSTREAM_SEGMENTS)?;
        let mut out = Vec::new();
        for row in table.range(..=up_to)? {
            let (first, last) = row?;
            if last.value() <= up_to {
                out.push((first.value(), last.value()));
            }
        }
        Ok(out)
    }

    /// Forgets segments deleted upstream.
    pub fn forget_upstream_segments(&self, firsts: &[u64]) -> Result<(), IndexError> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(UPSTREAM_SEGMENTS)?;
            for first in firsts {
                table.remove(*first)?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn read_chain_head(tx: &ReadTransaction) -> Result<ChainHead, IndexError> {
    match tx.open_table(JOURNAL_STATE)?.get(KEY_JOURNAL_HEAD)? {
        Some(v) => ChainHead::decode(v.value()).map_err(|e| corrupt("journal_state", e)),
        None => Ok(ChainHead::default()),
    }
}

/// A new redb file being filled by a restore.
pub struct RestoreTarget {
    db: Database,
}

impl RestoreTarget {
    /// Creates the file at `path`, which must not exist, with every table.
    pub fn create(path: &Path) -> Result<Self, IndexError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io)?;
        let db = Database::builder()
            .create_file(file)
            .map_err(|e| IndexError::Storage(Box::new(e)))?;
        Ok(Self { db })
    }

    /// Applies `rows` (values or tombstones) in one transaction, not
    /// waiting for the disk ([`Self::finish`] does).
    pub fn apply(&self, rows: &[JournalRow]) -> Result<(), IndexError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(redb::Durability::None);
        {
            let mut t = RawTables::open(&tx)?;
            for row in rows {
                t.apply(row)?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Writes the journal's state and the upstream records, recounts every
    /// chunk's references from the manifests, and commits durably.
    pub fn finish(self, state: &RestoredState) -> Result<Recount, IndexError> {
        let tx = self.db.begin_write()?;
        let recount = {
            let _ = RawTables::open(&tx)?;
            for def in [PENDING, SCRUB_FINDINGS] {
                tx.open_table(def)?;
            }
            tx.open_table(APP_PASSWORD_SEEN)?;
            tx.open_table(HISTORY)?;
            tx.open_table(LOCKS)?;
            tx.open_table(SCRUB)?;
            tx.open_table(JOURNAL)?;
            tx.open_table(META)?
                .insert(KEY_JOURNAL_NEXT, state.next_seq.max(1))?;
            tx.open_table(JOURNAL_STATE)?
                .insert(KEY_JOURNAL_HEAD, state.chain.encode().as_slice())?;
            let mut segments = tx.open_table(UPSTREAM_SEGMENTS)?;
            for (first, last) in &state.segments {
                segments.insert(first, last)?;
            }
            let mut snapshots = tx.open_table(SNAPSHOTS)?;
            for head in &state.snapshots {
                snapshots.insert(head.generation, head.encode().as_slice())?;
            }
            recount_references(&tx)?
        };
        tx.commit()?;
        Ok(recount)
    }
}

/// The journaled tables, opened without journaling.
struct RawTables<'t> {
    meta: Table<'t, &'static str, u64>,
    users: Table<'t, &'static str, &'static [u8]>,
    nodes: Table<'t, u64, &'static [u8]>,
    dirents: Table<'t, (u64, &'static str), u64>,
    manifests: Table<'t, u64, &'static [u8]>,
    chunks: Table<'t, &'static [u8], &'static [u8]>,
    props: Table<'t, (u64, &'static str), &'static [u8]>,
    uploads: Table<'t, (u64, &'static str), &'static [u8]>,
    upload_parts: Table<'t, (u64, &'static str, &'static str), &'static [u8]>,
    app_passwords: Table<'t, (u64, u64), &'static [u8]>,
    audit: Table<'t, u64, &'static [u8]>,
    totp: Table<'t, u64, &'static [u8]>,
    packs: Table<'t, &'static [u8], &'static [u8]>,
}

impl<'t> RawTables<'t> {
    fn open(tx: &'t WriteTransaction) -> Result<Self, IndexError> {
        Ok(Self {
            meta: tx.open_table(META)?,
            users: tx.open_table(USERS)?,
            nodes: tx.open_table(NODES)?,
            dirents: tx.open_table(DIRENTS)?,
            manifests: tx.open_table(MANIFESTS)?,
            chunks: tx.open_table(CHUNKS)?,
            props: tx.open_table(PROPS)?,
            uploads: tx.open_table(UPLOADS)?,
            upload_parts: tx.open_table(UPLOAD_PARTS)?,
            app_passwords: tx.open_table(APP_PASSWORDS)?,
            audit: tx.open_table(AUDIT)?,
            totp: tx.open_table(TOTP)?,
            packs: tx.open_table(PACKS)?,
        })
    }

    fn apply(&mut self, row: &JournalRow) -> Result<(), IndexError> {
        let (k, v) = (row.key.as_slice(), row.value.as_deref());
        match row.table {
            JournalTable::Meta => put(&mut self.meta, k, v, "meta"),
            JournalTable::Users => put(&mut self.users, k, v, "users"),
            JournalTable::Nodes => put(&mut self.nodes, k, v, "nodes"),
            JournalTable::Dirents => put(&mut self.dirents, k, v, "dirents"),
            JournalTable::Manifests => put(&mut self.manifests, k, v, "manifests"),
            JournalTable::Chunks => put(&mut self.chunks, k, v, "chunks"),
            JournalTable::Props => put(&mut self.props, k, v, "props"),
            JournalTable::Uploads => put(&mut self.uploads, k, v, "uploads"),
            JournalTable::UploadParts => put(&mut self.upload_parts, k, v, "upload_parts"),
            JournalTable::AppPasswords => put(&mut self.app_passwords, k, v, "app_passwords"),
            JournalTable::Audit => put(&mut self.audit, k, v, "audit"),
            JournalTable::Totp => put(&mut self.totp, k, v, "totp"),
            JournalTable::Packs => put(&mut self.packs, k, v, "packs"),
        }
    }
}

/// Writes (or, for `None`, removes) one row given as the engine's bytes.
fn put<K: Key + 'static, V: Value + 'static>(
    table: &mut Table<'_, K, V>,
    key: &[u8],
    value: Option<&[u8]>,
    name: &'static str,
) -> Result<(), IndexError> {
    let fits = |width: Option<usize>, raw: &[u8]| width.is_none_or(|w| w == raw.len());
    if !fits(K::fixed_width(), key) || !value.is_none_or(|v| fits(V::fixed_width(), v)) {
        return Err(corrupt(name, "a row of the wrong width"));
    }
    if name == "meta" || name == "users" {
        // `&str` keys: redb decodes them without checking UTF-8.
        std::str::from_utf8(key).map_err(|_| corrupt(name, "a key that is not UTF-8"))?;
    }
    match value {
        Some(v) => table.insert(K::from_bytes(key), V::from_bytes(v))?,
        None => table.remove(K::from_bytes(key))?,
    };
    Ok(())
}

/// Sets every chunk record's reference count to the number of manifest
/// entries (files and upload parts) naming it, and the collector's mark
/// to match.
fn recount_references(tx: &WriteTransaction) -> Result<Recount, IndexError> {
    let mut tally: HashMap<[u8; 32], u64> = HashMap::new();
    for row in tx.open_table(MANIFESTS)?.iter()? {
        let (_, v) = row?;
        for e in decode_manifest(v.value())? {
            *tally.entry(e.id.0).or_default() += 1;
        }
    }
    for row in tx.open_table(UPLOAD_PARTS)?.iter()? {
        let (_, v) = row?;
        for e in part_contents(v.value())?.1 {
            *tally.entry(e.id.0).or_default() += 1;
        }
    }
    let now = crate::clock::unix_secs().max(1) as u64;
    let mut chunks = tx.open_table(CHUNKS)?;
    let mut fixes = Vec::new();
    for row in chunks.iter()? {
        let (k, v) = row?;
        let id = super::chunk_key(k.value())?;
        let mut rec = ChunkRecord::decode(v.value())?;
        let refs = tally.remove(&id).unwrap_or(0);
        let mark = match (refs, rec.unreferenced_since) {
            (0, 0) => now,
            (0, since) => since,
            _ => 0,
        };
        if rec.refs != refs || rec.unreferenced_since != mark {
            rec.refs = refs;
            rec.unreferenced_since = mark;
            fixes.push((id, rec));
        }
    }
    let mut corrected = fixes.len() as u64;
    for (id, rec) in fixes {
        chunks.insert(id.as_slice(), rec.encode().as_slice())?;
    }
    corrected += recount_packs(tx, &chunks)?;
    Ok(Recount {
        corrected,
        unrecorded: tally.len() as u64,
    })
}

/// Sets every pack's live chunks and bytes to what the chunk records
/// located in it add up to; answers how many packs were corrected.
fn recount_packs(
    tx: &WriteTransaction,
    chunks: &Table<'_, &'static [u8], &'static [u8]>,
) -> Result<u64, IndexError> {
    let mut live: HashMap<[u8; 32], (u32, u32)> = HashMap::new();
    for row in chunks.iter()? {
        let (_, v) = row?;
        let rec = ChunkRecord::decode(v.value())?;
        if let Some(at) = rec.packed {
            let entry = live.entry(at.pack).or_default();
            entry.0 += 1;
            entry.1 = entry.1.saturating_add(rec.stored);
        }
    }
    let mut packs = tx.open_table(PACKS)?;
    let mut fixes = Vec::new();
    for row in packs.iter()? {
        let (k, v) = row?;
        let id = super::chunk_key(k.value())?;
        let mut rec = crate::meta::PackRecord::decode(v.value())?;
        let (chunks, bytes) = live.get(&id).copied().unwrap_or_default();
        if (rec.live_chunks, rec.live_bytes) != (chunks, bytes) {
            (rec.live_chunks, rec.live_bytes) = (chunks, bytes);
            fixes.push((id, rec));
        }
    }
    let corrected = fixes.len() as u64;
    for (id, rec) in fixes {
        packs.insert(id.as_slice(), rec.encode().as_slice())?;
    }
    Ok(corrected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::snapshot::DumpDecoder;

    fn dump(index: &Index, dir: &Path) -> (SnapshotDump, Vec<JournalRow>) {
        let path = dir.join("dump");
        let dump = index.dump_snapshot(&path).unwrap();
        let mut decoder = DumpDecoder::default();
        let rows = decoder.push(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(decoder.finish().unwrap(), dump.rows);
        (dump, rows)
    }

    fn restored(dir: &Path, rows: &[JournalRow], state: &RestoredState) -> (Index, Recount) {
        let path = dir.join("restored.redb");
        let target = RestoreTarget::create(&path).unwrap();
        for batch in rows.chunks(7) {
            target.apply(batch).unwrap();
        }
        let recount = target.finish(state).unwrap();
        (Index::open(&path).unwrap(), recount)
    }

    fn state_after(dump: &SnapshotDump) -> RestoredState {
        RestoredState {
            next_seq: dump.state_seq + 1,
            chain: ChainHead {
                last_seq: dump.state_seq,
                hash: [7; 32],
            },
            segments: vec![(1, 5)],
            snapshots: Vec::new(),
        }
    }

    #[test]
    fn a_dump_loaded_into_a_new_file_is_the_same_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        super::super::check::tests::busy_index(&path);
        let index = Index::open(&path).unwrap();
        let (dump, rows) = dump(&index, dir.path());
        assert!(dump.state_seq > 10 && dump.rows == rows.len() as u64);
        assert!(
            rows.iter().any(|r| r.table == JournalTable::AppPasswords),
            "app passwords are in the dump"
        );

        let state = state_after(&dump);
        let (copy, recount) = restored(dir.path(), &rows, &state);
        assert_eq!(recount, Recount::default(), "the counts were right");
        assert!(copy.verify().unwrap().is_clean());
        let (again, rows_again) = self::dump(&copy, dir.path());
        assert_eq!(rows_again, rows, "every row, byte for byte");
        assert_eq!(again.state_seq, dump.state_seq);
        assert_eq!(
            again.chain, state.chain,
            "the chain continues from the restore"
        );
        assert!(copy.journal_after(0, 100).unwrap().rows.is_empty());
        assert_eq!(copy.upstream_segments(10).unwrap(), vec![(1, 5)]);
        assert_eq!(copy.instance_id().unwrap(), index.instance_id().unwrap());
    }

    #[test]
    fn a_restore_recounts_references_from_the_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        super::super::check::tests::busy_index(&path);
        let (dump, mut rows) = dump(&Index::open(&path).unwrap(), dir.path());
        let chunk = rows
            .iter_mut()
            .find(|r| r.table == JournalTable::Chunks)
            .unwrap();
        let mut rec = ChunkRecord::decode(chunk.value.as_deref().unwrap()).unwrap();
        rec.refs += 5;
        chunk.value = Some(rec.encode().to_vec());
        let (copy, recount) = restored(dir.path(), &rows, &state_after(&dump));
        assert_eq!(recount.corrected, 1);
        assert_eq!(recount.unrecorded, 0);
        assert!(copy.verify().unwrap().is_clean());
    }

    #[test]
    fn rows_of_the_wrong_shape_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let target = RestoreTarget::create(&dir.path().join("r.redb")).unwrap();
        let row = |table, key: &[u8], value: &[u8]| JournalRow {
            seq: 1,
            table,
            key: key.to_vec(),
            value: Some(value.to_vec()),
            committed: 0,
            ends_transaction: true,
        };
        for bad in [
            row(JournalTable::Nodes, b"abc", b"x"),
            row(JournalTable::Meta, b"next_id", b"short"),
            row(JournalTable::Users, &[0xff, 0xfe], b"x"),
        ] {
            assert!(target.apply(&[bad]).is_err());
        }
        assert!(
            RestoreTarget::create(&dir.path().join("r.redb")).is_err(),
            "an existing file is never overwritten"
        );
    }
}
