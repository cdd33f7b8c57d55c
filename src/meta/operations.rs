//! The metadata interface: every operation the gateway performs on
//! metadata, one method per logical change, each one transaction inside
//! the engine. This list is what a second engine (PostgreSQL, several
//! gateways over one installation) implements; the conformance suite
//! (`meta/conformance.rs`) runs the same cases against every engine.
//!
//! Why this shape (see docs/ARCHITECTURE.md, "The metadata interface"):
//! - **Async.** A network engine behind a synchronous interface would tie
//!   up a runtime worker for every round trip. The redb engine answers
//!   reads inline and makes its writes durable as before (group commit,
//!   the worker handed off while it waits for the disk).
//! - **Operations, not tables.** A shared SQL engine retries a whole
//!   operation on a serialization failure, so an operation is re-runnable
//!   and never has side effects outside the metadata (no object PUTs).
//!   No method takes a closure or hands out a transaction.
//! - **A closed set of engines behind an enum**: async methods and `dyn`
//!   do not mix, and hyper needs `Send` futures. A new engine is a new
//!   variant, and every operation below gets its arm from the macro.
//! - **No engine type in any signature**: records, errors and parameters
//!   are the types of [`crate::meta`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::journal::{ChainHead, JournalBatch};
use super::redb::tree::Namespace;
use super::redb::Index;
use super::snapshot::{SnapshotDump, SnapshotHead};
use super::Consistency;
use super::{
    AssembleCheck, AssembleMeta, Assembled, ChunkRecord, ExpiredPending, FileCommit, Holdings,
    IndexError, ManifestEntry, NewPart, NewUser, Node, NsError, Owner, PartInfo, PendingRecord,
    PropLimits, ScrubFinding, ScrubState, Stats, StoredProp, UploadError, UploadSession,
    UserRecord, WriteTarget,
};

/// The metadata of one installation. Cheap to clone: clones share the
/// engine.
#[derive(Clone)]
pub struct Meta {
    engine: Arc<Engine>,
    /// A short random id of this installation (part of `oc:id`), fixed
    /// when the metadata was created.
    instance: u64,
}

/// The engines the metadata can live in.
enum Engine {
    /// One redb file on the gateway's disk (single gateway).
    Redb(Namespace),
}

impl Meta {
    /// Opens (or creates) a redb metadata file at `path` and checks its
    /// schema version.
    pub fn open_redb(path: &Path, props: PropLimits) -> Result<Self, IndexError> {
        let index = Arc::new(Index::open(path)?);
        let instance = index.instance_id()?;
        let engine = Engine::Redb(Namespace::new(index).with_prop_limits(props));
        Ok(Self {
            engine: Arc::new(engine),
            instance,
        })
    }

    /// A short random id of this installation (part of `oc:id`).
    pub fn instance_id(&self) -> u64 {
        self.instance
    }
}

/// Generates one async method of [`Meta`] per operation, dispatching to
/// the engine. `tree` operations are answered by the redb engine's tree,
/// `index` ones by its installation-wide tables.
macro_rules! operations {
    ($(
        $(#[doc = $doc:literal])*
        $part:ident fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;
    )*) => {
        impl Meta {$(
            $(#[doc = $doc])*
            pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                match &*self.engine {
                    Engine::Redb(engine) => operations!(@redb $part engine $name $($arg)*),
                }
            }
        )*}
    };
    (@redb tree $e:ident $name:ident $($arg:ident)*) => { $e.$name($($arg),*) };
    (@redb index $e:ident $name:ident $($arg:ident)*) => { $e.index().$name($($arg),*) };
}

operations! {
    // ---- Installation ----
    /// Overall usage figures.
    index fn stats(&self) -> Result<Stats, IndexError>;

    // ---- Users ----
    /// Creates a user with an empty root folder.
    index fn add_user(&self, new: NewUser) -> Result<UserRecord, IndexError>;
    /// The user named `name`, if any.
    index fn user(&self, name: &str) -> Result<Option<UserRecord>, IndexError>;
    /// Every user, by name.
    index fn users(&self) -> Result<Vec<UserRecord>, IndexError>;
    /// Replaces a user's password hash.
    index fn set_password(&self, name: &str, password_hash: String) -> Result<(), IndexError>;
    /// Sets (or, with `None`, lifts) a user's quota.
    index fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<(), IndexError>;
    /// Removes a user with their whole tree and their chunked-upload
    /// sessions, releasing every chunk reference they held, in one
    /// transaction.
    index fn remove_user(&self, name: &str) -> Result<(), IndexError>;

    // ---- Tree: reads ----
    /// The node at `path` in the owner's tree.
    tree fn lookup(&self, owner: &Owner, path: &[String]) -> Result<Node, NsError>;
    /// What a write to `path` needs to know, in one snapshot: the node
    /// there, its parent, and the owner's holdings.
    tree fn write_target(&self, owner: &Owner, path: &[String]) -> Result<WriteTarget, NsError>;
    /// The entries of the folder at `path`, in byte order of their names.
    tree fn list(&self, owner: &Owner, path: &[String]) -> Result<Vec<(String, Node)>, NsError>;
    /// The file at `path` and its manifest, in one snapshot.
    tree fn open_file(&self, owner: &Owner, path: &[String]) -> Result<(Node, Vec<ManifestEntry>), NsError>;
    /// The manifest of file node `node`.
    tree fn manifest(&self, node: u64) -> Result<Vec<ManifestEntry>, NsError>;
    /// What the owner holds against their quota.
    tree fn holdings(&self, owner: &Owner) -> Result<Holdings, NsError>;
    /// (bytes used, quota) of the owner.
    tree fn usage(&self, owner: &Owner) -> Result<(u64, Option<u64>), NsError>;
    /// Whether the node at `path` has dead properties.
    tree fn has_props(&self, owner: &Owner, path: &[String]) -> Result<bool, NsError>;
    /// The dead properties of the node at `path`.
    tree fn props(&self, owner: &Owner, path: &[String]) -> Result<Vec<StoredProp>, NsError>;
    /// The dead properties of several nodes (a listing), by node id.
    tree fn props_of_nodes(&self, ids: &[u64]) -> Result<HashMap<u64, Vec<StoredProp>>, NsError>;

    // ---- Tree: changes ----
    /// Creates the folder at `path`.
    tree fn mkdir(&self, owner: &Owner, path: &[String]) -> Result<Node, NsError>;
    /// Makes a finished upload the file at `path` (new or a new version):
    /// references its chunks, settles their pending records, charges the
    /// quota. Answers the committed node and whether it was created.
    tree fn commit_file(&self, owner: &Owner, path: &[String], commit: &FileCommit) -> Result<(Node, bool), NsError>;
    /// Removes the file or folder (with everything below) at `path`.
    tree fn remove(&self, owner: &Owner, path: &[String]) -> Result<(), NsError>;
    /// Moves `from` to `to`, which must not exist.
    tree fn rename(&self, owner: &Owner, from: &[String], to: &[String]) -> Result<Node, NsError>;
    /// Moves `from` to `to`, replacing what is there, in one transaction.
    tree fn rename_replacing(&self, owner: &Owner, from: &[String], to: &[String]) -> Result<Node, NsError>;
    /// Copies the file `from` to `to` (new or replaced): the manifest is
    /// shared, its chunks gain references.
    tree fn copy_file(&self, owner: &Owner, from: &[String], to: &[String]) -> Result<Node, NsError>;
    /// Sets the modification time (Unix ns) of the node at `path`.
    tree fn set_mtime(&self, owner: &Owner, path: &[String], mtime: i64) -> Result<Node, NsError>;
    /// Sets (`true`) or removes (`false`) dead properties, all or none.
    tree fn patch_props(&self, owner: &Owner, path: &[String], patch: &[(bool, StoredProp)]) -> Result<(), NsError>;
    /// Copies the dead properties of `from` onto `to`.
    tree fn copy_props(&self, owner: &Owner, from: &[String], to: &[String]) -> Result<(), NsError>;

    // ---- Chunked-upload sessions ----
    /// Opens the session `transfer`.
    tree fn create_session(&self, owner: &Owner, transfer: &str, total_length: Option<u64>) -> Result<UploadSession, UploadError>;
    /// The session `transfer` and its parts.
    tree fn session(&self, owner: &Owner, transfer: &str) -> Result<(UploadSession, Vec<PartInfo>), UploadError>;
    /// The owner's open sessions.
    tree fn sessions(&self, owner: &Owner) -> Result<Vec<(String, UploadSession)>, UploadError>;
    /// The parts of `transfer` in assembly order and their joined manifest.
    tree fn session_manifest(&self, owner: &Owner, transfer: &str) -> Result<(Vec<PartInfo>, Vec<ManifestEntry>), UploadError>;
    /// The most bytes part `name` may have under the owner's quota.
    tree fn part_limit(&self, owner: &Owner, transfer: &str, name: &str) -> Result<Option<u64>, UploadError>;
    /// Records a stored part (replacing one of the same name).
    tree fn add_part(&self, owner: &Owner, transfer: &str, name: &str, part: &NewPart) -> Result<(), UploadError>;
    /// Drops part `name` and releases its chunks.
    tree fn remove_part(&self, owner: &Owner, transfer: &str, name: &str) -> Result<(), UploadError>;
    /// Drops the session and releases its chunks.
    tree fn abandon_session(&self, owner: &Owner, transfer: &str) -> Result<(), UploadError>;
    /// Assembles the session into the file at `path` in one transaction.
    tree fn assemble_session(&self, owner: &Owner, transfer: &str, path: &[String], check: &AssembleCheck, commit_meta: AssembleMeta) -> Result<Assembled, UploadError>;
    /// Drops sessions untouched for `ttl_secs` before `now`; how many.
    tree fn expire_sessions(&self, now: i64, ttl_secs: i64) -> Result<usize, UploadError>;

    // ---- Chunks and the collector ----
    /// Whether the chunk is known (stored, possibly awaiting deletion).
    index fn chunk_known(&self, id: &[u8; 32]) -> Result<bool, IndexError>;
    /// What the metadata knows of a chunk.
    index fn chunk(&self, id: &[u8; 32]) -> Result<Option<ChunkRecord>, IndexError>;
    /// The sum of all chunk reference counts (file manifests and chunked
    /// upload sessions).
    index fn chunk_references(&self) -> Result<u64, IndexError>;
    /// Chunks no manifest references, unreferenced since `cutoff` (Unix
    /// seconds) or earlier: the collector's candidates. At most `limit`.
    index fn unreferenced_chunks(&self, cutoff: u64, limit: usize) -> Result<Vec<[u8; 32]>, IndexError>;
    /// Chunk records in id order after `after` (from the first without),
    /// at most `limit`: a cursor over every chunk for long walks.
    index fn chunks_page(&self, after: Option<[u8; 32]>, limit: usize) -> Result<Vec<([u8; 32], ChunkRecord)>, IndexError>;
    /// Drops the records of chunks still unreferenced since `cutoff` (re-
    /// checked in this transaction); answers those dropped with their
    /// object sizes.
    index fn forget_chunks(&self, ids: &[[u8; 32]], cutoff: u64) -> Result<Vec<([u8; 32], u32)>, IndexError>;

    // ---- Scrub and sweep ----
    /// Where the scrub stands: the pass in progress (its position, so a
    /// restart resumes) and the last complete pass.
    index fn scrub_state(&self) -> Result<ScrubState, IndexError>;
    /// Starts a scrub pass at `now` (Unix seconds), from the first chunk.
    index fn start_scrub_pass(&self, now: u64) -> Result<ScrubState, IndexError>;
    /// Records one scrub batch in one transaction: `checked` objects up to
    /// and including chunk `position`, the problems it `found`, and the
    /// objects it read back `sound` (their earlier findings are dropped).
    index fn record_scrub_batch(&self, position: [u8; 32], checked: u64, found: &[ScrubFinding], sound: &[[u8; 32]]) -> Result<ScrubState, IndexError>;
    /// Ends the scrub pass at `now`; findings it did not confirm are dropped.
    index fn finish_scrub_pass(&self, now: u64) -> Result<ScrubState, IndexError>;
    /// The objects the scrub found missing or corrupt (kept, bounded), in
    /// chunk-id order, at most `limit`.
    index fn scrub_findings(&self, limit: usize) -> Result<Vec<ScrubFinding>, IndexError>;

    // ---- Objects of uploads not committed yet ----
    /// Records (chunk id, sealed size) as pending since `now`, durably,
    /// before the objects are put.
    index fn add_pending(&self, entries: &[([u8; 32], u32)], now: u64) -> Result<(), IndexError>;
    /// Marks the pending records of an upload that will not commit as
    /// abandoned at `now`; answers how many were marked.
    index fn abandon_pending(&self, ids: &[([u8; 32], Option<u32>)], now: u64) -> Result<usize, IndexError>;
    /// Pending records written or abandoned at `cutoff` or earlier. At most
    /// `limit`.
    index fn expired_pending(&self, cutoff: u64, limit: usize) -> Result<Vec<[u8; 32]>, IndexError>;
    /// Drops the pending records of `ids` still expired at `cutoff`, and
    /// says of each whether its object is to be deleted.
    index fn forget_pending(&self, ids: &[[u8; 32]], cutoff: u64) -> Result<Vec<ExpiredPending>, IndexError>;
    /// Pending records in id order after `after`, at most `limit`.
    index fn pending_page(&self, after: Option<[u8; 32]>, limit: usize) -> Result<Vec<([u8; 32], PendingRecord)>, IndexError>;
    /// A chunk's pending record, if it has one.
    index fn pending(&self, id: &[u8; 32]) -> Result<Option<PendingRecord>, IndexError>;
    /// (records, sealed bytes) of objects of uploads not committed.
    index fn pending_totals(&self) -> Result<(u64, u64), IndexError>;

    // ---- Check ----
    /// Walks the whole metadata in one consistent snapshot and reports
    /// where its records disagree (reference counts, dirents, usage,
    /// counters, manifest sizes); see [`Consistency`].
    index fn verify(&self) -> Result<Consistency, IndexError>;

    // ---- Metadata journal (sealed upstream by `jobs/metadata.rs`) ----
    /// Journal rows after sequence `after`, at most `limit` (more only to
    /// end on a transaction's last row), and how far behind the upload is.
    index fn journal_after(&self, after: u64, limit: usize) -> Result<JournalBatch, IndexError>;
    /// The end of the chain upstream (zeros before the first segment).
    index fn journal_head(&self) -> Result<ChainHead, IndexError>;
    /// Records that the segment `first..=head.last_seq` is upstream and
    /// deletes its rows, in one transaction; returns how many went.
    index fn journal_uploaded(&self, first: u64, head: &ChainHead) -> Result<u64, IndexError>;

    // ---- Snapshots and the upstream copy (`store/snapshot.rs`) ----
    /// Writes every row of the metadata, as of one committed state, to a
    /// new local file at `path` (the dump a snapshot is cut from).
    index fn dump_snapshot(&self, path: &Path) -> Result<SnapshotDump, IndexError>;
    /// The sealed snapshots recorded as upstream, oldest first.
    index fn snapshots(&self) -> Result<Vec<SnapshotHead>, IndexError>;
    /// Records a snapshot whose head is upstream.
    index fn record_snapshot(&self, head: &SnapshotHead) -> Result<(), IndexError>;
    /// Forgets a snapshot whose head was deleted upstream.
    index fn forget_snapshot(&self, generation: u64) -> Result<(), IndexError>;
    /// Uploaded segments (first, last sequence) wholly at or before `up_to`.
    index fn upstream_segments(&self, up_to: u64) -> Result<Vec<(u64, u64)>, IndexError>;
    /// Forgets segments deleted upstream.
    index fn forget_upstream_segments(&self, firsts: &[u64]) -> Result<(), IndexError>;
}
