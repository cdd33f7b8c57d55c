//! Capturing every committed change into the `journal` table, in the same
//! write transaction that makes it, and the operations the upload job uses
//! to read the journal and to forget what is upstream.
//!
//! Why it is complete: the journaled tables are reachable in a write
//! transaction only as [`Journaled`] (see `tx.rs`), whose `insert` and
//! `remove` are the only ways to change them and write a row each into the
//! journal before returning; reads go through `Deref` to the table. A
//! rolled-back transaction takes its journal rows with it, a committed one
//! carries them, so the journal is exactly the committed changes, in
//! commit order (redb has one writer at a time). The tables left out are
//! `pending` (objects of uploads that never committed: after a restore
//! they are orphans, which the sweep deletes), `scrub` and
//! `scrub_findings` (a restore starts a new pass).

use std::borrow::Borrow;
use std::cell::RefCell;
use std::ops::Deref;
use std::rc::Rc;

use redb::{AccessGuard, Key, ReadableTable, ReadableTableMetadata, StorageError, Table, Value};

use super::tables::{JOURNAL, JOURNAL_STATE, KEY_JOURNAL_HEAD, UPSTREAM_SEGMENTS};
use super::Index;
use crate::meta::journal::{ChainHead, JournalBatch, JournalRow, JournalTable};
use crate::meta::IndexError;

/// A row that ends no transaction may be followed this many times the
/// asked limit to reach the end of its transaction.
const FINISH_TRANSACTION_FACTOR: usize = 4;

/// Where the rows of one write transaction go.
pub(crate) struct Sink<'t> {
    table: Table<'t, u64, &'static [u8]>,
    /// The sequence number the next row takes.
    next: u64,
    /// The first sequence number of this transaction.
    start: u64,
    /// Commit time written on every row (Unix seconds).
    now: u64,
}

/// The sink, shared by every journaled table of one transaction.
pub(crate) type SharedSink<'t> = Rc<RefCell<Sink<'t>>>;

impl<'t> Sink<'t> {
    /// Opens the journal in `tx`, continuing after sequence `next - 1`.
    pub(crate) fn open(
        tx: &'t redb::WriteTransaction,
        next: u64,
    ) -> Result<SharedSink<'t>, IndexError> {
        let next = next.max(1);
        Ok(Rc::new(RefCell::new(Self {
            table: tx.open_table(JOURNAL)?,
            next,
            start: next,
            now: crate::clock::unix_secs().max(0) as u64,
        })))
    }

    fn record(
        &mut self,
        table: JournalTable,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    ) -> Result<(), StorageError> {
        let row = JournalRow {
            seq: self.next,
            table,
            key,
            value,
            committed: self.now,
            ends_transaction: false,
        };
        self.table.insert(row.seq, row.encode_body().as_slice())?;
        self.next += 1;
        Ok(())
    }

    /// Marks the transaction's last row; returns the next sequence number
    /// when this transaction wrote any row.
    pub(crate) fn finish(&mut self) -> Result<Option<u64>, IndexError> {
        if self.next == self.start {
            return Ok(None);
        }
        let last = self.next - 1;
        let body = self.table.get(last)?.map(|v| v.value().to_vec());
        if let Some(mut body) = body {
            JournalRow::mark_end_of_transaction(&mut body);
            self.table.insert(last, body.as_slice())?;
        }
        Ok(Some(self.next))
    }
}

fn record(
    sink: &SharedSink<'_>,
    table: JournalTable,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
) -> Result<(), StorageError> {
    let mut sink = sink
        .try_borrow_mut()
        .map_err(|_| StorageError::Corrupted("the journal is in use twice".into()))?;
    sink.record(table, key, value)
}

/// A table whose every change is written to the journal too. Reads go to
/// the table (`Deref`); `insert` and `remove` are the only writes.
pub(crate) struct Journaled<'t, K: Key + 'static, V: Value + 'static> {
    table: Table<'t, K, V>,
    id: JournalTable,
    sink: SharedSink<'t>,
}

impl<'t, K: Key + 'static, V: Value + 'static> Journaled<'t, K, V> {
    pub(crate) fn new(table: Table<'t, K, V>, id: JournalTable, sink: &SharedSink<'t>) -> Self {
        Self {
            table,
            id,
            sink: Rc::clone(sink),
        }
    }

    /// Like `Table::insert`, and journals the new value.
    pub fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<Option<AccessGuard<'_, V>>, StorageError> {
        let k = K::as_bytes(key.borrow()).as_ref().to_vec();
        let v = V::as_bytes(value.borrow()).as_ref().to_vec();
        record(&self.sink, self.id, k, Some(v))?;
        self.table.insert(key, value)
    }

    /// Like `Table::remove`, and journals a tombstone when a row went.
    pub fn remove<'a>(
        &mut self,
        key: impl Borrow<K::SelfType<'a>>,
    ) -> Result<Option<AccessGuard<'_, V>>, StorageError> {
        let k = K::as_bytes(key.borrow()).as_ref().to_vec();
        let old = self.table.remove(key)?;
        if old.is_some() {
            record(&self.sink, self.id, k, None)?;
        }
        Ok(old)
    }

    /// The table itself, for the journal's own bookkeeping (the sequence
    /// counter), which is not a change to replay.
    pub(super) fn uncaptured(&mut self) -> &mut Table<'t, K, V> {
        &mut self.table
    }
}

impl<'t, K: Key + 'static, V: Value + 'static> Deref for Journaled<'t, K, V> {
    type Target = Table<'t, K, V>;

    fn deref(&self) -> &Self::Target {
        &self.table
    }
}

impl Index {
    /// Journal rows after sequence `after`, at most `limit` (more only to
    /// reach the end of a transaction), with how many wait in all.
    pub fn journal_after(&self, after: u64, limit: usize) -> Result<JournalBatch, IndexError> {
        let tx = self.db.begin_read()?;
        let journal = tx.open_table(JOURNAL)?;
        let waiting = journal.len()?;
        let oldest = match journal.first()? {
            Some((k, v)) => Some(JournalRow::decode_body(k.value(), v.value())?.committed),
            None => None,
        };
        let mut rows = Vec::new();
        let bound = limit.max(1).saturating_mul(FINISH_TRANSACTION_FACTOR);
        for entry in journal.range(after.saturating_add(1)..)? {
            let (k, v) = entry?;
            let row = JournalRow::decode_body(k.value(), v.value())?;
            let ends = row.ends_transaction;
            rows.push(row);
            if rows.len() >= bound || (rows.len() >= limit && ends) {
                break;
            }
        }
        Ok(JournalBatch {
            rows,
            waiting,
            oldest,
        })
    }

    /// The end of the chain upstream (zeros before the first segment).
    pub fn journal_head(&self) -> Result<ChainHead, IndexError> {
        let tx = self.db.begin_read()?;
        let state = tx.open_table(JOURNAL_STATE)?;
        read_head(&state)
    }

    /// Records that the segment `first..=head.last_seq` ending at `head` is
    /// upstream and deletes the rows it holds, in one transaction. A head
    /// not beyond the one recorded changes nothing (a repeated call).
    /// Returns the rows deleted.
    pub fn journal_uploaded(&self, first: u64, head: &ChainHead) -> Result<u64, IndexError> {
        let tx = self.db.begin_write()?;
        let deleted = {
            let mut state = tx.open_table(JOURNAL_STATE)?;
            if read_head(&state)?.last_seq >= head.last_seq {
                0
            } else {
                let mut journal = tx.open_table(JOURNAL)?;
                let mut deleted = 0u64;
                journal.retain_in(..=head.last_seq, |_, _| {
                    deleted += 1;
                    false
                })?;
                state.insert(KEY_JOURNAL_HEAD, head.encode().as_slice())?;
                tx.open_table(UPSTREAM_SEGMENTS)?
                    .insert(first, head.last_seq)?;
                deleted
            }
        };
        tx.commit()?;
        Ok(deleted)
    }
}

fn read_head(
    state: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<ChainHead, IndexError> {
    match state.get(KEY_JOURNAL_HEAD)? {
        Some(v) => ChainHead::decode(v.value()).map_err(|e| IndexError::Corrupt {
            table: "journal_state",
            cause: e.to_string(),
        }),
        None => Ok(ChainHead::default()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use super::*;
    use crate::crypto::ChunkId;
    use crate::meta::redb::tree::Namespace;
    use crate::meta::{split_path, FileCommit, ManifestEntry, NewUser, NsError, Owner};

    fn setup() -> (tempfile::TempDir, Namespace, Owner) {
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(Index::open(&dir.path().join("i.redb")).unwrap());
        let u = index
            .add_user(NewUser {
                name: "alice".into(),
                password_hash: "x".into(),
                admin: false,
                quota: Some(1000),
            })
            .unwrap();
        (dir, Namespace::new(index), Owner::from(&u))
    }

    fn commit(size: u64, chunk: u8) -> FileCommit {
        FileCommit {
            size,
            chunks: vec![ManifestEntry {
                id: ChunkId([chunk; 32]),
                len: size as u32,
            }],
            uploaded: vec![(ChunkId([chunk; 32]), 10)],
            mtime: None,
            checksums: None,
        }
    }

    fn all_rows(index: &Index) -> Vec<JournalRow> {
        index.journal_after(0, usize::MAX / 8).unwrap().rows
    }

    #[test]
    fn a_new_index_journals_from_its_first_counter() {
        let (_d, ns, _) = setup();
        let rows = all_rows(ns.index());
        assert_eq!(rows[0].seq, 1);
        assert_eq!(rows[0].table, JournalTable::Meta);
        assert_eq!(rows[0].key, b"schema_version");
        assert!(rows.iter().any(|r| r.table == JournalTable::Users));
        let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=rows.len() as u64).collect::<Vec<_>>());
        assert!(rows.last().unwrap().ends_transaction);
    }

    #[test]
    fn a_commit_journals_every_table_it_changes_in_one_transaction() {
        let (_d, ns, o) = setup();
        let before = all_rows(ns.index()).len();
        ns.commit_file(&o, &split_path(b"/a.txt").unwrap(), &commit(5, 1))
            .unwrap();
        let rows = all_rows(ns.index());
        let new = &rows[before..];
        let tables: HashSet<JournalTable> = new.iter().map(|r| r.table).collect();
        for t in [
            JournalTable::Nodes,
            JournalTable::Dirents,
            JournalTable::Manifests,
            JournalTable::Chunks,
            JournalTable::Users,
            JournalTable::Meta,
        ] {
            assert!(tables.contains(&t), "{t:?} missing in {tables:?}");
        }
        let ends: Vec<bool> = new.iter().map(|r| r.ends_transaction).collect();
        assert_eq!(ends.iter().filter(|e| **e).count(), 1);
        assert_eq!(ends.last(), Some(&true));
        // The dirent's key carries the name; its value, the node id.
        assert!(new
            .iter()
            .any(|r| r.table == JournalTable::Dirents && r.key.windows(5).any(|w| w == b"a.txt")));
    }

    #[test]
    fn a_removal_journals_tombstones() {
        let (_d, ns, o) = setup();
        let path = split_path(b"/a.txt").unwrap();
        ns.commit_file(&o, &path, &commit(5, 1)).unwrap();
        let before = all_rows(ns.index()).len();
        ns.remove(&o, &path).unwrap();
        let rows = all_rows(ns.index());
        let gone: HashSet<JournalTable> = rows[before..]
            .iter()
            .filter(|r| r.value.is_none())
            .map(|r| r.table)
            .collect();
        for t in [
            JournalTable::Nodes,
            JournalTable::Dirents,
            JournalTable::Manifests,
        ] {
            assert!(gone.contains(&t), "no tombstone in {t:?}");
        }
    }

    #[test]
    fn a_failed_operation_journals_nothing() {
        let (_d, ns, o) = setup();
        let before = all_rows(ns.index());
        // Over quota: refused after it began changing tables.
        let err = ns
            .commit_file(&o, &split_path(b"/big").unwrap(), &commit(5000, 2))
            .unwrap_err();
        assert!(matches!(err, NsError::QuotaExceeded { .. }), "{err:?}");
        // Missing parent.
        assert!(ns.mkdir(&o, &split_path(b"/x/y").unwrap()).is_err());
        assert_eq!(all_rows(ns.index()), before);
    }

    #[test]
    fn uploaded_rows_are_deleted_and_numbering_continues() {
        let (_d, ns, o) = setup();
        let index = ns.index();
        let batch = index.journal_after(0, 3).unwrap();
        assert!(batch.rows.len() >= 3);
        assert!(batch.rows.last().unwrap().ends_transaction);
        assert!(batch.waiting >= batch.rows.len() as u64);
        assert!(batch.oldest.is_some());
        let head = ChainHead {
            last_seq: batch.rows.last().unwrap().seq,
            hash: [9; 32],
        };
        assert_eq!(
            index.journal_uploaded(1, &head).unwrap(),
            batch.rows.len() as u64
        );
        assert_eq!(index.journal_head().unwrap(), head);
        // A repeated call changes nothing.
        assert_eq!(index.journal_uploaded(1, &head).unwrap(), 0);
        ns.mkdir(&o, &split_path(b"/d").unwrap()).unwrap();
        let rest = index.journal_after(head.last_seq, 1000).unwrap();
        assert_eq!(rest.rows[0].seq, head.last_seq + 1);
        assert_eq!(index.journal_after(0, 1000).unwrap().rows, rest.rows);
    }

    #[test]
    fn reopening_keeps_the_journal_and_its_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        let last = {
            let index = Index::open(&path).unwrap();
            all_rows(&index).last().unwrap().seq
        };
        let index = Index::open(&path).unwrap();
        assert_eq!(
            all_rows(&index).last().unwrap().seq,
            last,
            "opening again writes nothing"
        );
        index
            .add_user(NewUser {
                name: "bob".into(),
                password_hash: "x".into(),
                admin: false,
                quota: None,
            })
            .unwrap();
        assert_eq!(all_rows(&index)[last as usize].seq, last + 1);
    }
}
