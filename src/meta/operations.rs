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
//! - **Each operation says what it does to the journal**: `read` never
//!   changes anything; `write` may change journaled tables, so in zero-lag
//!   mode it answers only once its change is upstream
//!   (`meta/upstream_gate.rs`); `staged` changes journaled tables but
//!   never waits, because a `write` always follows it on the path that
//!   answers a client (a pack's record, then its files' commits) and that
//!   write waits for every change before it (the journal is one sequence):
//!   so each small file waits for the upstream once, not twice; `local`
//!   changes only tables a restore does
//!   without (pending records, the scrub's, the journal's own state) and
//!   never waits.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use super::history::HistorySample;
use super::journal::{ChainHead, JournalBatch};
use super::locks::{LockError, LockRecord};
use super::redb::tree::Namespace;
use super::redb::Index;
use super::snapshot::{SnapshotDump, SnapshotHead};
use super::totp::{TotpRecord, TOTP_SECRET_BYTES};
use super::upstream_gate::UpstreamGate;
use super::Consistency;
use super::{
    AppPasswordInfo, AppPasswordVerifier, AssembleCheck, AssembleMeta, Assembled, AuditEntry,
    AuditRecord, ChunkRecord, ExpiredPending, FileCommit, Holdings, IndexError, ManifestEntry,
    NewAppPassword, NewPart, NewUser, Node, NsError, Owner, PackRecord, PartInfo, PendingRecord,
    PropLimits, Relocated, ScrubFinding, ScrubState, Stats, StoredProp, UploadError, UploadSession,
    UserRecord, UserUpdate, WriteTarget,
};
use crate::crypto::PackedEntry;

/// The metadata of one installation. Cheap to clone: clones share the
/// engine.
#[derive(Clone)]
pub struct Meta {
    engine: Arc<Engine>,
    /// A short random id of this installation (part of `oc:id`), fixed
    /// when the metadata was created.
    instance: u64,
    /// Set in zero-lag mode (shared by every clone): `write` operations
    /// wait at it until their change is upstream.
    gate: Arc<OnceLock<Arc<UpstreamGate>>>,
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
            gate: Arc::default(),
        })
    }

    /// A short random id of this installation (part of `oc:id`).
    pub fn instance_id(&self) -> u64 {
        self.instance
    }

    /// Zero-lag mode from now on, for this handle and every clone: each
    /// `write` operation that changed the journal answers only once
    /// `gate` says its change is upstream. Set once, by whoever starts the
    /// uploader that feeds the gate (`jobs/metadata.rs`); false if a gate
    /// was already set.
    pub fn set_upstream_gate(&self, gate: Arc<UpstreamGate>) -> bool {
        self.gate.set(gate).is_ok()
    }

    /// The last journal sequence number the engine committed durably.
    pub fn committed_seq(&self) -> u64 {
        match &*self.engine {
            Engine::Redb(engine) => engine.index().committed_seq(),
        }
    }

    /// What the engine counted of its commits, for `/metrics`.
    pub fn index_metrics(&self) -> &super::metrics::IndexMetrics {
        match &*self.engine {
            Engine::Redb(engine) => engine.index().metrics(),
        }
    }

    /// After a `write` operation: in zero-lag mode, waits until the
    /// journal up to where it stands now is upstream, when it advanced
    /// since `before`. A concurrent write may have advanced it too; waiting
    /// for its change as well costs at most the same shared upload.
    async fn upstream_after(&self, before: u64) -> Result<(), IndexError> {
        let Some(gate) = self.gate.get() else {
            return Ok(());
        };
        let after = self.committed_seq();
        if after <= before {
            return Ok(());
        }
        gate.wait_for(after).await.map_err(|e| {
            tracing::warn!(
                seq = after,
                uploaded = gate.uploaded(),
                error = %e,
                "a metadata change is not upstream in time; answering 503"
            );
            IndexError::NotUpstream(e)
        })
    }
}

/// Generates one async method of [`Meta`] per operation, dispatching to
/// the engine. `tree` operations are answered by the redb engine's tree,
/// `index` ones by its installation-wide tables. The first word says what
/// the operation does to the journal (`read`, `write`, `staged`, `local`:
/// see the module's header); only `write` may wait for the upstream.
macro_rules! operations {
    ($(
        $(#[doc = $doc:literal])*
        $kind:ident $part:ident fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;
    )*) => {
        impl Meta {$(
            $(#[doc = $doc])*
            pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                operations!(@$kind self, match &*self.engine {
                    Engine::Redb(engine) => operations!(@redb $part engine $name $($arg)*),
                })
            }
        )*}
    };
    (@read $s:ident, $call:expr) => { $call };
    (@local $s:ident, $call:expr) => { $call };
    (@staged $s:ident, $call:expr) => { $call };
    (@write $s:ident, $call:expr) => {{
        let before = $s.committed_seq();
        let result = $call;
        match result {
            Ok(value) => match $s.upstream_after(before).await {
                Ok(()) => Ok(value),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e),
        }
    }};
    (@redb tree $e:ident $name:ident $($arg:ident)*) => { $e.$name($($arg),*) };
    (@redb index $e:ident $name:ident $($arg:ident)*) => { $e.index().$name($($arg),*) };
}

operations! {
    // ---- Installation ----
    /// Overall usage figures.
    read index fn stats(&self) -> Result<Stats, IndexError>;
    /// Files per owner (user id), counted in one snapshot (a walk of every
    /// node: for reports, not request paths).
    read index fn files_by_owner(&self) -> Result<HashMap<u64, u64>, IndexError>;

    // ---- Users ----
    /// Creates a user with an empty root folder.
    write index fn add_user(&self, new: NewUser) -> Result<UserRecord, IndexError>;
    /// The user named `name`, if any.
    read index fn user(&self, name: &str) -> Result<Option<UserRecord>, IndexError>;
    /// Every user, by name.
    read index fn users(&self) -> Result<Vec<UserRecord>, IndexError>;
    /// Replaces a user's password hash.
    write index fn set_password(&self, name: &str, password_hash: String) -> Result<(), IndexError>;
    /// Sets (or, with `None`, lifts) a user's quota.
    write index fn set_quota(&self, name: &str, quota: Option<u64>) -> Result<(), IndexError>;
    /// Removes a user with their whole tree and their chunked-upload
    /// sessions, releasing every chunk reference they held, in one
    /// transaction.
    write index fn remove_user(&self, name: &str) -> Result<(), IndexError>;
    /// [`Meta::add_user`], recording `audit` in the same transaction.
    write index fn add_user_audited(&self, new: NewUser, audit: Option<&AuditEntry>) -> Result<UserRecord, IndexError>;
    /// Applies `update` to a user (password hash, quota, role, disabled)
    /// and records `audit`, in one transaction; answers the new record.
    write index fn update_user(&self, name: &str, update: &UserUpdate, audit: Option<&AuditEntry>) -> Result<UserRecord, IndexError>;
    /// [`Meta::remove_user`], recording `audit` in the same transaction.
    write index fn remove_user_audited(&self, name: &str, audit: Option<&AuditEntry>) -> Result<(), IndexError>;

    // ---- Audit log ----
    /// Records a change that has no user record of its own (a job run
    /// asked for); answers the entry's sequence number. The log keeps the
    /// newest [`crate::meta::audit::MAX_AUDIT_ENTRIES`].
    write index fn append_audit(&self, entry: &AuditEntry) -> Result<u64, IndexError>;
    /// The newest `limit` audit entries, newest first.
    read index fn audit_log(&self, limit: usize) -> Result<Vec<AuditRecord>, IndexError>;

    // ---- App passwords (`accounts/app_passwords.rs`) ----
    /// Adds an app password to the user named `user`: refused with
    /// `TooManyAppPasswords` when they hold `max` already, with
    /// `BadAppPasswordLabel` for a label `valid_label` refuses.
    write index fn add_app_password(&self, user: &str, new: &NewAppPassword, max: usize) -> Result<AppPasswordInfo, IndexError>;
    /// The app passwords of the user named `user`, by id, without their
    /// verifiers.
    read index fn app_passwords(&self, user: &str) -> Result<Vec<AppPasswordInfo>, IndexError>;
    /// The verifiers of the app passwords of user id `user`: for the
    /// authenticator only.
    read index fn app_password_verifiers(&self, user: u64) -> Result<Vec<AppPasswordVerifier>, IndexError>;
    /// Revokes app password `id` of the user named `user`; it fails every
    /// login that reads the metadata after this returns.
    write index fn revoke_app_password(&self, user: &str, id: u64) -> Result<(), IndexError>;
    /// Records a login with app password `id` of user id `user` at `now`
    /// (Unix seconds), unless one was recorded within the last minute.
    /// Not journaled: a restore starts every last use afresh.
    local index fn app_password_used(&self, user: u64, id: u64, now: u64) -> Result<(), IndexError>;

    // ---- TOTP (`accounts/totp.rs`, the web console's second factor) ----
    /// Enrols the user named `user` with `secret`; `step` is the time step
    /// of the code that confirmed it, which cannot be used again.
    write index fn set_totp(&self, user: &str, secret: &[u8; TOTP_SECRET_BYTES], step: u64) -> Result<(), IndexError>;
    /// Removes the enrolment of the user named `user`; whether there was one.
    write index fn clear_totp(&self, user: &str) -> Result<bool, IndexError>;
    /// The enrolment of user id `user`, if any.
    read index fn totp(&self, user: u64) -> Result<Option<TotpRecord>, IndexError>;
    /// Accepts (and records) a code of time step `step` for user id `user`
    /// only if `step` is later than the last accepted one: a code is never
    /// accepted twice.
    write index fn accept_totp_step(&self, user: u64, step: u64) -> Result<bool, IndexError>;

    // ---- WebDAV locks (`webdav/locks.rs`; not journaled: a restore starts without) ----
    /// Grants `wanted` unless a live lock on its path, a deep one above it
    /// or (when `wanted` is deep) one below it conflicts, or its user holds
    /// `max_per_user` live locks; checked and recorded in one transaction.
    local index fn lock_acquire(&self, wanted: &LockRecord, now_ms: i64, max_per_user: usize) -> Result<LockRecord, LockError>;
    /// Gives the live lock `token` covering `path` of user id `user` the
    /// deadline `timeout_secs` after `now_ms`.
    local index fn lock_refresh(&self, user: u64, path: &[String], token: &str, timeout_secs: u64, now_ms: i64) -> Result<LockRecord, LockError>;
    /// Releases the live lock `token` covering `path` of user id `user`.
    local index fn lock_release(&self, user: u64, path: &[String], token: &str, now_ms: i64) -> Result<(), LockError>;
    /// The live locks covering `path` of user id `user`: on it, or deep on
    /// a folder above it.
    read index fn locks_covering(&self, user: u64, path: &[String], now_ms: i64) -> Result<Vec<LockRecord>, IndexError>;
    /// The live locks on `path` of user id `user` or below it.
    read index fn locks_within(&self, user: u64, path: &[String], now_ms: i64) -> Result<Vec<LockRecord>, IndexError>;
    /// How many live locks user id `user` holds.
    read index fn lock_count(&self, user: u64, now_ms: i64) -> Result<usize, IndexError>;
    /// Deletes the locks on `path` of user id `user` and below it (it was
    /// deleted or moved away); answers how many.
    local index fn drop_locks_within(&self, user: u64, path: &[String]) -> Result<usize, IndexError>;
    /// Deletes every lock expired at `now_ms`; answers how many.
    local index fn expire_locks(&self, now_ms: i64) -> Result<usize, IndexError>;

    // ---- History (`jobs/history.rs`, the web console's charts) ----
    /// Adds a sample and drops the oldest beyond `keep`, in one
    /// transaction. Not journaled.
    local index fn record_history(&self, sample: &HistorySample, keep: u64) -> Result<(), IndexError>;
    /// The samples taken at `since` (Unix seconds) or later, oldest first.
    read index fn history_since(&self, since: i64) -> Result<Vec<HistorySample>, IndexError>;

    // ---- Tree: reads ----
    /// The node at `path` in the owner's tree.
    read tree fn lookup(&self, owner: &Owner, path: &[String]) -> Result<Node, NsError>;
    /// What a write to `path` needs to know, in one snapshot: the node
    /// there, its parent, and the owner's holdings.
    read tree fn write_target(&self, owner: &Owner, path: &[String]) -> Result<WriteTarget, NsError>;
    /// The entries of the folder at `path`, in byte order of their names.
    read tree fn list(&self, owner: &Owner, path: &[String]) -> Result<Vec<(String, Node)>, NsError>;
    /// The file at `path` and its manifest, in one snapshot.
    read tree fn open_file(&self, owner: &Owner, path: &[String]) -> Result<(Node, Vec<ManifestEntry>), NsError>;
    /// The manifest of file node `node`.
    read tree fn manifest(&self, node: u64) -> Result<Vec<ManifestEntry>, NsError>;
    /// What the owner holds against their quota.
    read tree fn holdings(&self, owner: &Owner) -> Result<Holdings, NsError>;
    /// (bytes used, quota) of the owner.
    read tree fn usage(&self, owner: &Owner) -> Result<(u64, Option<u64>), NsError>;
    /// Whether the node at `path` has dead properties.
    read tree fn has_props(&self, owner: &Owner, path: &[String]) -> Result<bool, NsError>;
    /// The dead properties of the node at `path`.
    read tree fn props(&self, owner: &Owner, path: &[String]) -> Result<Vec<StoredProp>, NsError>;
    /// The dead properties of several nodes (a listing), by node id.
    read tree fn props_of_nodes(&self, ids: &[u64]) -> Result<HashMap<u64, Vec<StoredProp>>, NsError>;

    // ---- Tree: changes ----
    /// Creates the folder at `path`.
    write tree fn mkdir(&self, owner: &Owner, path: &[String]) -> Result<Node, NsError>;
    /// Makes a finished upload the file at `path` (new or a new version):
    /// references its chunks, settles their pending records, charges the
    /// quota. Answers the committed node and whether it was created.
    write tree fn commit_file(&self, owner: &Owner, path: &[String], commit: &FileCommit) -> Result<(Node, bool), NsError>;
    /// Removes the file or folder (with everything below) at `path`.
    write tree fn remove(&self, owner: &Owner, path: &[String]) -> Result<(), NsError>;
    /// Moves `from` to `to`, which must not exist.
    write tree fn rename(&self, owner: &Owner, from: &[String], to: &[String]) -> Result<Node, NsError>;
    /// Moves `from` to `to`, replacing what is there, in one transaction.
    write tree fn rename_replacing(&self, owner: &Owner, from: &[String], to: &[String]) -> Result<Node, NsError>;
    /// Copies the file `from` to `to` (new or replaced): the manifest is
    /// shared, its chunks gain references.
    write tree fn copy_file(&self, owner: &Owner, from: &[String], to: &[String]) -> Result<Node, NsError>;
    /// Copies the file or folder `from` with everything below it and its
    /// dead properties to `to`, replacing whatever is there, in one
    /// transaction (a refused copy leaves the old destination whole).
    write tree fn copy_replacing(&self, owner: &Owner, from: &[String], to: &[String]) -> Result<Node, NsError>;
    /// Sets the modification time (Unix ns) of the node at `path`.
    write tree fn set_mtime(&self, owner: &Owner, path: &[String], mtime: i64) -> Result<Node, NsError>;
    /// Sets (`true`) or removes (`false`) dead properties, all or none.
    write tree fn patch_props(&self, owner: &Owner, path: &[String], patch: &[(bool, StoredProp)]) -> Result<(), NsError>;
    /// Copies the dead properties of `from` onto `to`.
    write tree fn copy_props(&self, owner: &Owner, from: &[String], to: &[String]) -> Result<(), NsError>;

    // ---- Chunked-upload sessions ----
    /// Opens the session `transfer`.
    write tree fn create_session(&self, owner: &Owner, transfer: &str, total_length: Option<u64>) -> Result<UploadSession, UploadError>;
    /// The session `transfer` and its parts.
    read tree fn session(&self, owner: &Owner, transfer: &str) -> Result<(UploadSession, Vec<PartInfo>), UploadError>;
    /// The owner's open sessions.
    read tree fn sessions(&self, owner: &Owner) -> Result<Vec<(String, UploadSession)>, UploadError>;
    /// The parts of `transfer` in assembly order and their joined manifest.
    read tree fn session_manifest(&self, owner: &Owner, transfer: &str) -> Result<(Vec<PartInfo>, Vec<ManifestEntry>), UploadError>;
    /// The most bytes part `name` may have under the owner's quota.
    read tree fn part_limit(&self, owner: &Owner, transfer: &str, name: &str) -> Result<Option<u64>, UploadError>;
    /// Records a stored part (replacing one of the same name).
    write tree fn add_part(&self, owner: &Owner, transfer: &str, name: &str, part: &NewPart) -> Result<(), UploadError>;
    /// Drops part `name` and releases its chunks.
    write tree fn remove_part(&self, owner: &Owner, transfer: &str, name: &str) -> Result<(), UploadError>;
    /// Drops the session and releases its chunks.
    write tree fn abandon_session(&self, owner: &Owner, transfer: &str) -> Result<(), UploadError>;
    /// Assembles the session into the file at `path` in one transaction.
    write tree fn assemble_session(&self, owner: &Owner, transfer: &str, path: &[String], check: &AssembleCheck, commit_meta: AssembleMeta) -> Result<Assembled, UploadError>;
    /// Drops sessions untouched for `ttl_secs` before `now`; how many.
    write tree fn expire_sessions(&self, now: i64, ttl_secs: i64) -> Result<usize, UploadError>;

    // ---- Chunks and the collector ----
    /// Whether the chunk is known (stored, possibly awaiting deletion).
    read index fn chunk_known(&self, id: &[u8; 32]) -> Result<bool, IndexError>;
    /// What the metadata knows of a chunk.
    read index fn chunk(&self, id: &[u8; 32]) -> Result<Option<ChunkRecord>, IndexError>;
    /// The sum of all chunk reference counts (file manifests and chunked
    /// upload sessions).
    read index fn chunk_references(&self) -> Result<u64, IndexError>;
    /// Chunks no manifest references, unreferenced since `cutoff` (Unix
    /// seconds) or earlier: the collector's candidates. At most `limit`.
    read index fn unreferenced_chunks(&self, cutoff: u64, limit: usize) -> Result<Vec<[u8; 32]>, IndexError>;
    /// Chunk records in id order after `after` (from the first without),
    /// at most `limit`: a cursor over every chunk for long walks.
    read index fn chunks_page(&self, after: Option<[u8; 32]>, limit: usize) -> Result<Vec<([u8; 32], ChunkRecord)>, IndexError>;
    /// Drops the records of chunks still unreferenced since `cutoff` (re-
    /// checked in this transaction); answers those dropped with their
    /// object sizes.
    write index fn forget_chunks(&self, ids: &[[u8; 32]], cutoff: u64) -> Result<Vec<([u8; 32], u32)>, IndexError>;

    // ---- Packs of small chunks (`meta/redb/packs.rs` states the rules) ----
    /// Records a stored pack: its chunks the metadata did not know become
    /// known (unreferenced since `now`) and located in it, and its pending
    /// record goes. Answers how many of its entries became live.
    staged index fn record_pack(&self, pack: &[u8; 32], size: u32, entries: &[PackedEntry], now: u64) -> Result<u32, IndexError>;
    /// What the metadata knows of a pack.
    read index fn pack(&self, pack: &[u8; 32]) -> Result<Option<PackRecord>, IndexError>;
    /// Pack records in id order after `after`, at most `limit`.
    read index fn packs_page(&self, after: Option<[u8; 32]>, limit: usize) -> Result<Vec<([u8; 32], PackRecord)>, IndexError>;
    /// Moves the chunks still located in the packs `old` to their entries
    /// in the stored pack `new`; drops the records of the old packs that
    /// empties.
    write index fn relocate_pack(&self, old: &[[u8; 32]], new: &[u8; 32], size: u32, entries: &[PackedEntry], now: u64) -> Result<Relocated, IndexError>;
    /// Drops a pack's record if nothing live is left in it; its size then.
    write index fn forget_empty_pack(&self, pack: &[u8; 32]) -> Result<Option<u32>, IndexError>;

    // ---- Scrub and sweep ----
    /// Where the scrub stands: the pass in progress (its position, so a
    /// restart resumes) and the last complete pass.
    read index fn scrub_state(&self) -> Result<ScrubState, IndexError>;
    /// Starts a scrub pass at `now` (Unix seconds), from the first chunk.
    local index fn start_scrub_pass(&self, now: u64) -> Result<ScrubState, IndexError>;
    /// Records one scrub batch in one transaction: `checked` objects up to
    /// and including chunk `position`, the problems it `found`, and the
    /// objects it read back `sound` (their earlier findings are dropped).
    local index fn record_scrub_batch(&self, position: [u8; 32], checked: u64, found: &[ScrubFinding], sound: &[[u8; 32]]) -> Result<ScrubState, IndexError>;
    /// Ends the scrub pass at `now`; findings it did not confirm are dropped.
    local index fn finish_scrub_pass(&self, now: u64) -> Result<ScrubState, IndexError>;
    /// The objects the scrub found missing or corrupt (kept, bounded), in
    /// chunk-id order, at most `limit`.
    read index fn scrub_findings(&self, limit: usize) -> Result<Vec<ScrubFinding>, IndexError>;

    // ---- Objects of uploads not committed yet ----
    /// Records (chunk id, sealed size) as pending since `now`, durably,
    /// before the objects are put.
    local index fn add_pending(&self, entries: &[([u8; 32], u32)], now: u64) -> Result<(), IndexError>;
    /// Marks the pending records of an upload that will not commit as
    /// abandoned at `now`; answers how many were marked.
    local index fn abandon_pending(&self, ids: &[([u8; 32], Option<u32>)], now: u64) -> Result<usize, IndexError>;
    /// Pending records written or abandoned at `cutoff` or earlier. At most
    /// `limit`.
    read index fn expired_pending(&self, cutoff: u64, limit: usize) -> Result<Vec<[u8; 32]>, IndexError>;
    /// Drops the pending records of `ids` still expired at `cutoff`, and
    /// says of each whether its object is to be deleted.
    local index fn forget_pending(&self, ids: &[[u8; 32]], cutoff: u64) -> Result<Vec<ExpiredPending>, IndexError>;
    /// Pending records in id order after `after`, at most `limit`.
    read index fn pending_page(&self, after: Option<[u8; 32]>, limit: usize) -> Result<Vec<([u8; 32], PendingRecord)>, IndexError>;
    /// A chunk's pending record, if it has one.
    read index fn pending(&self, id: &[u8; 32]) -> Result<Option<PendingRecord>, IndexError>;
    /// (records, sealed bytes) of objects of uploads not committed.
    read index fn pending_totals(&self) -> Result<(u64, u64), IndexError>;

    // ---- Check ----
    /// Walks the whole metadata in one consistent snapshot and reports
    /// where its records disagree (reference counts, dirents, usage,
    /// counters, manifest sizes); see [`Consistency`].
    read index fn verify(&self) -> Result<Consistency, IndexError>;

    // ---- Metadata journal (sealed upstream by `jobs/metadata.rs`) ----
    /// Journal rows after sequence `after`, at most `limit` (more only to
    /// end on a transaction's last row), and how far behind the upload is.
    read index fn journal_after(&self, after: u64, limit: usize) -> Result<JournalBatch, IndexError>;
    /// The end of the chain upstream (zeros before the first segment).
    read index fn journal_head(&self) -> Result<ChainHead, IndexError>;
    /// Records that the segment `first..=head.last_seq` is upstream and
    /// deletes its rows, in one transaction; returns how many went.
    local index fn journal_uploaded(&self, first: u64, head: &ChainHead) -> Result<u64, IndexError>;

    // ---- Snapshots and the upstream copy (`store/snapshot.rs`) ----
    /// Writes every row of the metadata, as of one committed state, to a
    /// new local file at `path` (the dump a snapshot is cut from).
    read index fn dump_snapshot(&self, path: &Path) -> Result<SnapshotDump, IndexError>;
    /// The sealed snapshots recorded as upstream, oldest first.
    read index fn snapshots(&self) -> Result<Vec<SnapshotHead>, IndexError>;
    /// Records a snapshot whose head is upstream.
    local index fn record_snapshot(&self, head: &SnapshotHead) -> Result<(), IndexError>;
    /// Forgets a snapshot whose head was deleted upstream.
    local index fn forget_snapshot(&self, generation: u64) -> Result<(), IndexError>;
    /// Uploaded segments (first, last sequence) wholly at or before `up_to`.
    read index fn upstream_segments(&self, up_to: u64) -> Result<Vec<(u64, u64)>, IndexError>;
    /// Forgets segments deleted upstream.
    local index fn forget_upstream_segments(&self, firsts: &[u64]) -> Result<(), IndexError>;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::meta::upstream_gate::UpstreamGateError;
    use crate::meta::{split_path, Owner};

    async fn open() -> (tempfile::TempDir, Meta, Owner) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open_redb(&dir.path().join("i.redb"), PropLimits::default()).unwrap();
        let user = meta
            .add_user(NewUser {
                name: "alice".into(),
                password_hash: "x".into(),
                admin: false,
                quota: None,
            })
            .await
            .unwrap();
        (dir, meta, Owner::from(&user))
    }

    #[tokio::test]
    async fn reads_and_local_writes_never_wait_only_journaled_writes_do() {
        let (_d, meta, alice) = open().await;
        // A gate nobody publishes to: whatever waits at it fails.
        let gate = Arc::new(UpstreamGate::new(0, Duration::from_millis(50)));
        assert!(meta.set_upstream_gate(gate.clone()));
        assert!(!meta.clone().set_upstream_gate(gate), "set once, shared");
        let root: Vec<String> = Vec::new();
        meta.user("alice").await.expect("a read");
        meta.list(&alice, &root).await.expect("a read");
        meta.journal_after(0, 10).await.expect("a read");
        let before = meta.committed_seq();
        meta.add_pending(&[([7; 32], 100)], 1)
            .await
            .expect("pending records are not journaled");
        meta.start_scrub_pass(1).await.expect("nor the scrub's");
        assert_eq!(meta.committed_seq(), before);

        let path = split_path(b"/d").unwrap();
        let err = meta.mkdir(&alice, &path).await.unwrap_err();
        assert!(
            matches!(
                err,
                NsError::Index(IndexError::NotUpstream(UpstreamGateError::Timeout(_)))
            ),
            "{err:?}"
        );
        assert!(meta.committed_seq() > before);
        // Committed locally all the same; it goes up later.
        meta.lookup(&alice, &path).await.expect("the folder exists");
        // A refused write changed nothing, so it does not wait either.
        let again = meta.mkdir(&alice, &path).await.unwrap_err();
        assert!(matches!(again, NsError::Exists), "{again:?}");
    }

    #[tokio::test]
    async fn a_write_answers_once_its_change_is_published() {
        let (_d, meta, alice) = open().await;
        let gate = Arc::new(UpstreamGate::new(0, Duration::from_secs(20)));
        meta.set_upstream_gate(gate.clone());
        let uploader = {
            let (meta, gate) = (meta.clone(), gate.clone());
            tokio::spawn(async move {
                gate.wakener().notified().await;
                gate.publish(meta.committed_seq());
            })
        };
        meta.mkdir(&alice, &split_path(b"/d").unwrap())
            .await
            .expect("answered once upstream");
        assert!(gate.uploaded() >= meta.committed_seq());
        uploader.await.unwrap();
    }
}
