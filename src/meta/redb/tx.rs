//! Transactions over all tables at once: `Index::write` runs a closure with
//! every table open and commits only when it returns `Ok`, so each logical
//! change is exactly one redb write transaction. Each commit's time until
//! durable is recorded in the index's metrics (`meta/metrics.rs`).

use std::cell::OnceCell;

use redb::{ReadOnlyTable, ReadableTable, Table};

use super::durability::Commit;
use super::journal::{Journaled, SharedSink, Sink};
use super::tables::*;
use super::Index;
use crate::meta::journal::JournalTable;
use crate::meta::metrics::CommitMode;
use crate::meta::records::{
    decode_manifest, prop_cost, ChunkRecord, ManifestEntry, Node, PendingRecord, UserRecord,
};
use crate::meta::IndexError;

/// Every table of one write transaction. The journaled ones (see
/// `journal.rs`) write each change into the journal as well; `pending`,
/// the scrub's tables, the app passwords' last use and the WebDAV locks
/// are bookkeeping a restore does without.
pub(crate) struct WriteTables<'t> {
    pub meta: Journaled<'t, &'static str, u64>,
    pub users: Journaled<'t, &'static str, &'static [u8]>,
    pub nodes: Journaled<'t, u64, &'static [u8]>,
    pub dirents: Journaled<'t, (u64, &'static str), u64>,
    pub manifests: Journaled<'t, u64, &'static [u8]>,
    pub chunks: Journaled<'t, &'static [u8], &'static [u8]>,
    pub props: Journaled<'t, (u64, &'static str), &'static [u8]>,
    pub uploads: Journaled<'t, (u64, &'static str), &'static [u8]>,
    pub upload_parts: Journaled<'t, (u64, &'static str, &'static str), &'static [u8]>,
    pub app_passwords: Journaled<'t, (u64, u64), &'static [u8]>,
    pub app_password_seen: Table<'t, (u64, u64), u64>,
    pub audit: Journaled<'t, u64, &'static [u8]>,
    pub totp: Journaled<'t, u64, &'static [u8]>,
    pub packs: Journaled<'t, &'static [u8], &'static [u8]>,
    pub history: Table<'t, i64, &'static [u8]>,
    pub pending: Table<'t, &'static [u8], &'static [u8]>,
    pub scrub: Table<'t, &'static str, &'static [u8]>,
    pub scrub_findings: Table<'t, &'static [u8], &'static [u8]>,
    pub locks: Table<'t, LockKey, &'static [u8]>,
    journal: SharedSink<'t>,
}

/// The tables of one read transaction, each opened on first use: most
/// reads touch one or two of them.
pub(crate) struct ReadTables {
    tx: redb::ReadTransaction,
    users: OnceCell<ReadOnlyTable<&'static str, &'static [u8]>>,
    nodes: OnceCell<ReadOnlyTable<u64, &'static [u8]>>,
    dirents: OnceCell<ReadOnlyTable<(u64, &'static str), u64>>,
    manifests: OnceCell<ReadOnlyTable<u64, &'static [u8]>>,
    chunks: OnceCell<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    props: OnceCell<ReadOnlyTable<(u64, &'static str), &'static [u8]>>,
    uploads: OnceCell<ReadOnlyTable<(u64, &'static str), &'static [u8]>>,
    upload_parts: OnceCell<ReadOnlyTable<PartKey, &'static [u8]>>,
    app_passwords: OnceCell<ReadOnlyTable<(u64, u64), &'static [u8]>>,
    app_password_seen: OnceCell<ReadOnlyTable<(u64, u64), u64>>,
    totp: OnceCell<ReadOnlyTable<u64, &'static [u8]>>,
    packs: OnceCell<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    history: OnceCell<ReadOnlyTable<i64, &'static [u8]>>,
    pending: OnceCell<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    scrub: OnceCell<ReadOnlyTable<&'static str, &'static [u8]>>,
    scrub_findings: OnceCell<ReadOnlyTable<&'static [u8], &'static [u8]>>,
    audit: OnceCell<ReadOnlyTable<u64, &'static [u8]>>,
    locks: OnceCell<ReadOnlyTable<LockKey, &'static [u8]>>,
}

/// Key of the `upload_parts` table: (user id, transfer, part name).
type PartKey = (u64, &'static str, &'static str);
/// Key of the `locks` table: (user id, path key, token).
pub(crate) type LockKey = (u64, &'static str, &'static str);

/// Opens `def` in `tx` unless `cell` already holds it.
fn lazily<'c, K: redb::Key + 'static, V: redb::Value + 'static>(
    cell: &'c OnceCell<ReadOnlyTable<K, V>>,
    tx: &redb::ReadTransaction,
    def: redb::TableDefinition<'static, K, V>,
) -> Result<&'c ReadOnlyTable<K, V>, IndexError> {
    if let Some(table) = cell.get() {
        return Ok(table);
    }
    let table = tx.open_table(def)?;
    Ok(cell.get_or_init(|| table))
}

macro_rules! read_table {
    ($name:ident, $def:ident, $k:ty, $v:ty) => {
        pub fn $name(&self) -> Result<&ReadOnlyTable<$k, $v>, IndexError> {
            lazily(&self.$name, &self.tx, $def)
        }
    };
}

impl ReadTables {
    fn new(tx: redb::ReadTransaction) -> Self {
        Self {
            tx,
            users: OnceCell::new(),
            nodes: OnceCell::new(),
            dirents: OnceCell::new(),
            manifests: OnceCell::new(),
            chunks: OnceCell::new(),
            props: OnceCell::new(),
            uploads: OnceCell::new(),
            upload_parts: OnceCell::new(),
            app_passwords: OnceCell::new(),
            app_password_seen: OnceCell::new(),
            totp: OnceCell::new(),
            packs: OnceCell::new(),
            history: OnceCell::new(),
            pending: OnceCell::new(),
            scrub: OnceCell::new(),
            scrub_findings: OnceCell::new(),
            audit: OnceCell::new(),
            locks: OnceCell::new(),
        }
    }

    read_table!(users, USERS, &'static str, &'static [u8]);
    read_table!(nodes, NODES, u64, &'static [u8]);
    read_table!(dirents, DIRENTS, (u64, &'static str), u64);
    read_table!(manifests, MANIFESTS, u64, &'static [u8]);
    read_table!(chunks, CHUNKS, &'static [u8], &'static [u8]);
    read_table!(props, PROPS, (u64, &'static str), &'static [u8]);
    read_table!(uploads, UPLOADS, (u64, &'static str), &'static [u8]);
    read_table!(upload_parts, UPLOAD_PARTS, PartKey, &'static [u8]);
    read_table!(app_passwords, APP_PASSWORDS, (u64, u64), &'static [u8]);
    read_table!(app_password_seen, APP_PASSWORD_SEEN, (u64, u64), u64);
    read_table!(totp, TOTP, u64, &'static [u8]);
    read_table!(packs, PACKS, &'static [u8], &'static [u8]);
    read_table!(history, HISTORY, i64, &'static [u8]);
    read_table!(pending, PENDING, &'static [u8], &'static [u8]);
    read_table!(scrub, SCRUB, &'static str, &'static [u8]);
    read_table!(scrub_findings, SCRUB_FINDINGS, &'static [u8], &'static [u8]);
    read_table!(audit, AUDIT, u64, &'static [u8]);
    read_table!(locks, LOCKS, LockKey, &'static [u8]);
}

impl<'t> WriteTables<'t> {
    fn open(tx: &'t redb::WriteTransaction) -> Result<Self, IndexError> {
        let meta = tx.open_table(META)?;
        let next = meta.get(KEY_JOURNAL_NEXT)?.map_or(1, |v| v.value());
        let sink = Sink::open(tx, next)?;
        Ok(Self {
            meta: Journaled::new(meta, JournalTable::Meta, &sink),
            users: Journaled::new(tx.open_table(USERS)?, JournalTable::Users, &sink),
            nodes: Journaled::new(tx.open_table(NODES)?, JournalTable::Nodes, &sink),
            dirents: Journaled::new(tx.open_table(DIRENTS)?, JournalTable::Dirents, &sink),
            manifests: Journaled::new(tx.open_table(MANIFESTS)?, JournalTable::Manifests, &sink),
            chunks: Journaled::new(tx.open_table(CHUNKS)?, JournalTable::Chunks, &sink),
            props: Journaled::new(tx.open_table(PROPS)?, JournalTable::Props, &sink),
            uploads: Journaled::new(tx.open_table(UPLOADS)?, JournalTable::Uploads, &sink),
            upload_parts: Journaled::new(
                tx.open_table(UPLOAD_PARTS)?,
                JournalTable::UploadParts,
                &sink,
            ),
            app_passwords: Journaled::new(
                tx.open_table(APP_PASSWORDS)?,
                JournalTable::AppPasswords,
                &sink,
            ),
            app_password_seen: tx.open_table(APP_PASSWORD_SEEN)?,
            audit: Journaled::new(tx.open_table(AUDIT)?, JournalTable::Audit, &sink),
            totp: Journaled::new(tx.open_table(TOTP)?, JournalTable::Totp, &sink),
            packs: Journaled::new(tx.open_table(PACKS)?, JournalTable::Packs, &sink),
            history: tx.open_table(HISTORY)?,
            pending: tx.open_table(PENDING)?,
            scrub: tx.open_table(SCRUB)?,
            scrub_findings: tx.open_table(SCRUB_FINDINGS)?,
            locks: tx.open_table(LOCKS)?,
            journal: sink,
        })
    }

    /// Ends the transaction's journal: marks its last row and stores the
    /// next sequence number. Returns the transaction's last sequence
    /// number when it journaled any row.
    fn finish_journal(&mut self) -> Result<Option<u64>, IndexError> {
        let next = self
            .journal
            .try_borrow_mut()
            .map_err(|_| IndexError::Corrupt {
                table: "journal",
                cause: "the journal is in use twice".into(),
            })?
            .finish()?;
        if let Some(next) = next {
            self.meta.uncaptured().insert(KEY_JOURNAL_NEXT, next)?;
        }
        Ok(next.map(|n| n - 1))
    }
}

impl Index {
    /// Runs `f` in one write transaction; commits only if it returns `Ok`.
    ///
    /// A commit waits for the disk (fsync), and write transactions queue
    /// behind each other: on a multi-threaded runtime the worker thread is
    /// handed off first, so other requests keep being served meanwhile.
    pub(crate) fn write<R, E>(
        &self,
        f: impl FnOnce(&mut WriteTables<'_>) -> Result<R, E>,
    ) -> Result<R, E>
    where
        E: From<IndexError>,
    {
        use tokio::runtime::{Handle, RuntimeFlavor};
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.write_now(f))
            }
            _ => self.write_now(f),
        }
    }

    /// Commits without waiting for the disk, then waits until a durable
    /// commit (shared with concurrent writers) covers this one.
    fn write_now<R, E>(&self, f: impl FnOnce(&mut WriteTables<'_>) -> Result<R, E>) -> Result<R, E>
    where
        E: From<IndexError>,
    {
        let writer = self.group.writer();
        let mut tx = self.db.begin_write().map_err(IndexError::from)?;
        let result = match WriteTables::open(&tx) {
            Ok(mut t) => f(&mut t).and_then(|r| Ok((r, t.finish_journal()?))),
            Err(e) => Err(e.into()),
        };
        match result {
            Ok((r, last_seq)) => {
                let started = std::time::Instant::now();
                let mode = match self.group.ticket(&writer) {
                    Commit::Alone(ticket) => {
                        tx.commit().map_err(IndexError::from)?;
                        self.group.durable(ticket);
                        CommitMode::Alone
                    }
                    Commit::Grouped(ticket) => {
                        tx.set_durability(redb::Durability::None);
                        tx.commit().map_err(IndexError::from)?;
                        self.group.wait_durable(ticket, || self.persist())?;
                        CommitMode::Grouped
                    }
                };
                self.metrics().commit(mode, started.elapsed());
                if let Some(seq) = last_seq {
                    self.note_committed(seq);
                }
                Ok(r)
            }
            Err(e) => {
                // Dropping the transaction aborts it: nothing is applied.
                let _ = tx.abort();
                Err(e)
            }
        }
    }

    /// Makes every transaction committed so far durable (one fsync).
    fn persist(&self) -> Result<(), IndexError> {
        self.db.begin_write()?.commit()?;
        Ok(())
    }

    /// Runs `f` over a consistent snapshot of every table.
    pub(crate) fn read<R, E>(&self, f: impl FnOnce(&ReadTables) -> Result<R, E>) -> Result<R, E>
    where
        E: From<IndexError>,
    {
        let tx = self.db.begin_read().map_err(IndexError::from)?;
        f(&ReadTables::new(tx))
    }
}

pub(crate) fn get_node(
    nodes: &impl ReadableTable<u64, &'static [u8]>,
    id: u64,
) -> Result<Option<Node>, IndexError> {
    match nodes.get(id)? {
        Some(v) => Ok(Some(Node::decode(v.value())?)),
        None => Ok(None),
    }
}

pub(crate) fn get_child(
    dirents: &impl ReadableTable<(u64, &'static str), u64>,
    parent: u64,
    name: &str,
) -> Result<Option<u64>, IndexError> {
    Ok(dirents.get((parent, name))?.map(|v| v.value()))
}

pub(crate) fn get_user(
    users: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Option<UserRecord>, IndexError> {
    match users.get(name)? {
        Some(v) => Ok(Some(UserRecord::decode(v.value())?)),
        None => Ok(None),
    }
}

pub(crate) fn get_manifest(
    manifests: &impl ReadableTable<u64, &'static [u8]>,
    id: u64,
) -> Result<Vec<ManifestEntry>, IndexError> {
    match manifests.get(id)? {
        Some(v) => decode_manifest(v.value()),
        None => Ok(Vec::new()),
    }
}

pub(crate) fn get_pending(
    pending: &impl ReadableTable<&'static [u8], &'static [u8]>,
    id: &[u8; 32],
) -> Result<Option<PendingRecord>, IndexError> {
    match pending.get(id.as_slice())? {
        Some(v) => Ok(Some(PendingRecord::decode(v.value())?)),
        None => Ok(None),
    }
}

pub(crate) fn get_chunk(
    chunks: &impl ReadableTable<&'static [u8], &'static [u8]>,
    id: &[u8; 32],
) -> Result<Option<ChunkRecord>, IndexError> {
    match chunks.get(id.as_slice())? {
        Some(v) => Ok(Some(ChunkRecord::decode(v.value())?)),
        None => Ok(None),
    }
}

impl WriteTables<'_> {
    pub fn counter(&self, key: &str) -> Result<u64, IndexError> {
        Ok(self.meta.get(key)?.map(|v| v.value()).unwrap_or(0))
    }

    pub fn add_counter(&mut self, key: &str, delta: i64) -> Result<(), IndexError> {
        let v = self.counter(key)?.saturating_add_signed(delta);
        self.meta.insert(key, v)?;
        Ok(())
    }

    /// Allocates a node or user id.
    pub fn next_id(&mut self) -> Result<u64, IndexError> {
        let id = self.counter(KEY_NEXT_ID)?.max(1);
        self.meta.insert(KEY_NEXT_ID, id + 1)?;
        Ok(id)
    }

    /// Allocates the next value of the change counter (used for etags).
    pub fn next_change(&mut self) -> Result<u64, IndexError> {
        let v = self.counter(KEY_CHANGE)?.max(1);
        self.meta.insert(KEY_CHANGE, v + 1)?;
        Ok(v)
    }

    pub fn node(&self, id: u64) -> Result<Option<Node>, IndexError> {
        get_node(&*self.nodes, id)
    }

    pub fn put_node(&mut self, node: &Node) -> Result<(), IndexError> {
        self.nodes.insert(node.id, node.encode().as_slice())?;
        Ok(())
    }

    pub fn put_user(&mut self, user: &UserRecord) -> Result<(), IndexError> {
        self.users
            .insert(user.name.as_str(), user.encode().as_slice())?;
        Ok(())
    }

    pub fn chunk(&self, id: &[u8; 32]) -> Result<Option<ChunkRecord>, IndexError> {
        get_chunk(&*self.chunks, id)
    }

    pub fn put_chunk(&mut self, id: &[u8; 32], rec: &ChunkRecord) -> Result<(), IndexError> {
        self.chunks.insert(id.as_slice(), rec.encode().as_slice())?;
        Ok(())
    }

    /// Drops one reference from each manifest entry; a chunk whose count
    /// reaches zero is marked unreferenced (kept for the grace period).
    pub fn release_chunks(
        &mut self,
        entries: &[ManifestEntry],
        now: u64,
    ) -> Result<(), IndexError> {
        for e in entries {
            let Some(mut rec) = self.chunk(&e.id.0)? else {
                return Err(IndexError::Corrupt {
                    table: "chunks",
                    cause: format!("manifest references unknown chunk {:?}", e.id),
                });
            };
            rec.refs = rec.refs.saturating_sub(1);
            if rec.refs == 0 {
                rec.unreferenced_since = now.max(1);
            }
            self.put_chunk(&e.id.0, &rec)?;
        }
        Ok(())
    }

    /// Sets `version` on the node and every ancestor up to the user's root,
    /// so every folder's etag changes when anything below it changes.
    pub fn touch_up(&mut self, id: u64, version: u64) -> Result<(), IndexError> {
        self.touch_up_sized(id, version, 0)
    }

    /// Like [`Self::touch_up`], and adds `delta` bytes to the size of every
    /// folder on the way (a folder's size is the sum of the files below it,
    /// `oc:size`), in the same walk.
    pub fn touch_up_sized(
        &mut self,
        mut id: u64,
        version: u64,
        delta: i64,
    ) -> Result<(), IndexError> {
        while id != 0 {
            let Some(mut n) = self.node(id)? else { break };
            n.version = version;
            if n.is_dir() {
                n.size = n.size.saturating_add_signed(delta);
            }
            self.put_node(&n)?;
            id = n.parent;
        }
        Ok(())
    }

    /// Deletes a node and everything below it (not its own dirent); files
    /// release their chunks. Returns the files removed and the bytes they
    /// and every removed node's dead properties counted in the quota (the
    /// caller settles counters and quota).
    pub fn remove_subtree(&mut self, top: u64, now: u64) -> Result<(u64, u64), IndexError> {
        let (mut files, mut bytes) = (0u64, 0u64);
        let mut stack = vec![top];
        while let Some(id) = stack.pop() {
            let children: Vec<(String, u64)> = self
                .dirents
                .range((id, "")..(id + 1, ""))?
                .map(|r| r.map(|(k, v)| (k.value().1.to_string(), v.value())))
                .collect::<Result<_, _>>()?;
            for (name, child) in children {
                self.dirents.remove((id, name.as_str()))?;
                stack.push(child);
            }
            if let Some(node) = self.node(id)? {
                if !node.is_dir() {
                    let m = get_manifest(&*self.manifests, id)?;
                    self.release_chunks(&m, now)?;
                    files += 1;
                    bytes += node.size;
                }
            }
            bytes += self.drop_node(id)?;
        }
        Ok((files, bytes))
    }

    /// Deletes a node's record, manifest and dead properties (not its
    /// dirent). Returns what the properties counted in the quota.
    pub fn drop_node(&mut self, id: u64) -> Result<u64, IndexError> {
        self.nodes.remove(id)?;
        self.manifests.remove(id)?;
        let mut cost = 0;
        let keys: Vec<String> = self
            .props
            .range((id, "")..(id + 1, ""))?
            .map(|r| {
                r.map(|(k, v)| {
                    cost += prop_cost(k.value().1, v.value());
                    k.value().1.to_string()
                })
            })
            .collect::<Result<_, _>>()?;
        for k in keys {
            self.props.remove((id, k.as_str()))?;
        }
        Ok(cost)
    }

    /// Removes the pending records of chunks a commit now references.
    pub fn settle_pending(
        &mut self,
        ids: impl Iterator<Item = [u8; 32]>,
    ) -> Result<(), IndexError> {
        for id in ids {
            self.pending.remove(id.as_slice())?;
        }
        Ok(())
    }
}
