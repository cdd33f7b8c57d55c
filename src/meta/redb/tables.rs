//! redb table definitions and the keys of the `meta` table.

use redb::TableDefinition;

/// Counters and settings: schema version, id and change counters, totals.
pub(crate) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// User name → encoded [`super::UserRecord`].
pub(crate) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
/// Node id → encoded [`super::Node`] (folders and files of every user).
pub(crate) const NODES: TableDefinition<u64, &[u8]> = TableDefinition::new("nodes");
/// (parent node id, entry name) → child node id.
pub(crate) const DIRENTS: TableDefinition<(u64, &str), u64> = TableDefinition::new("dirents");
/// File node id → packed manifest (36 bytes per chunk: id, length).
pub(crate) const MANIFESTS: TableDefinition<u64, &[u8]> = TableDefinition::new("manifests");
/// Chunk id → encoded [`super::ChunkRecord`] (refcount, stored size, state).
pub(crate) const CHUNKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chunks");
/// Pack id → encoded [`crate::meta::PackRecord`] (size, live chunks and
/// bytes, created). Journaled: chunk records name their packs, and the
/// collector needs the live counts after a restore as well.
pub(crate) const PACKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("packs");
/// (node id, "namespace\0name") → encoded dead property.
pub(crate) const PROPS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("props");
/// (user id, transfer id) → encoded chunked-upload session.
pub(crate) const UPLOADS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("uploads");
/// (user id, transfer id, part name) → encoded part (size and manifest).
pub(crate) const UPLOAD_PARTS: TableDefinition<(u64, &str, &str), &[u8]> =
    TableDefinition::new("upload_parts");
/// (user id, app password id) → encoded
/// [`crate::meta::app_passwords::AppPasswordRecord`] (label, verifier,
/// created). Journaled: a restore brings every device's access back.
pub(crate) const APP_PASSWORDS: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("app_passwords");
/// Unix seconds → encoded [`crate::meta::history::HistorySample`]: the
/// web console's charts, one sample a minute, the newest 30 days. Not
/// journaled: history is this gateway's, and a restore starts it empty.
pub(crate) const HISTORY: TableDefinition<i64, &[u8]> = TableDefinition::new("history");
/// User id → encoded [`crate::meta::totp::TotpRecord`] (secret, last
/// accepted step, enrolled). Journaled: a restore keeps every enrolment.
pub(crate) const TOTP: TableDefinition<u64, &[u8]> = TableDefinition::new("totp");
/// (user id, app password id) → Unix seconds of its last login, written at
/// most once a minute per app password. Not journaled: it would add a row
/// upstream per device and minute, and a login would wait for the upstream
/// in zero-lag mode; a restore starts it empty.
pub(crate) const APP_PASSWORD_SEEN: TableDefinition<(u64, u64), u64> =
    TableDefinition::new("app_password_seen");

/// Sequence number → encoded [`crate::meta::audit::AuditEntry`]: the
/// audit log of administrative changes, newest last, at most
/// [`crate::meta::audit::MAX_AUDIT_ENTRIES`]. Journaled; created on open,
/// so an index made before it gains it empty.
pub(crate) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// Chunk id → encoded [`super::PendingRecord`]: an object written (or
/// about to be written) for an upload that has not committed yet. Written
/// durably *before* the object is put upstream, removed when a commit
/// references the chunk, swept with the object after the grace period.
pub(crate) const PENDING: TableDefinition<&[u8], &[u8]> = TableDefinition::new("pending");

/// The scrub's state: [`KEY_SCRUB_PASS`] → encoded
/// [`crate::meta::ScrubState`] (position, pass times, counts). Created on
/// open, so an index made before it gains it empty.
pub(crate) const SCRUB: TableDefinition<&str, &[u8]> = TableDefinition::new("scrub");
/// Chunk id → encoded [`crate::meta::ScrubFinding`]: objects the scrub
/// found missing or corrupt, at most [`crate::meta::scrub::MAX_FINDINGS`].
pub(crate) const SCRUB_FINDINGS: TableDefinition<&[u8], &[u8]> =
    TableDefinition::new("scrub_findings");

/// (user id, path key, token) → encoded [`crate::meta::locks::LockRecord`]:
/// the WebDAV locks held, keyed so the locks on a path and below it are
/// one key range (`meta/locks.rs`, `path_key`). Not journaled: a restore
/// starts without locks.
pub(crate) const LOCKS: TableDefinition<(u64, &str, &str), &[u8]> = TableDefinition::new("locks");

/// Sequence number → encoded [`crate::meta::journal::JournalRow`] body:
/// every committed change of the journaled tables not yet upstream.
pub(crate) const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
/// [`KEY_JOURNAL_HEAD`] → encoded [`crate::meta::journal::ChainHead`]: the
/// end of the chain upstream.
pub(crate) const JOURNAL_STATE: TableDefinition<&str, &[u8]> =
    TableDefinition::new("journal_state");

/// First sequence → last sequence of every sealed segment upstream that
/// a snapshot has not yet made redundant (so it can be deleted once one
/// does). Not journaled: it describes the upstream copy, not the index.
pub(crate) const UPSTREAM_SEGMENTS: TableDefinition<u64, u64> =
    TableDefinition::new("upstream_segments");

/// Sealed snapshots upstream not yet deleted: generation → encoded
/// [`crate::meta::snapshot::SnapshotHead`]. Not journaled either.
pub(crate) const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");

pub(crate) const KEY_JOURNAL_HEAD: &str = "head";
/// In `meta`: the sequence number the next journal row takes (not itself
/// journaled).
pub(crate) const KEY_JOURNAL_NEXT: &str = "journal_next";
pub(crate) const KEY_SCRUB_PASS: &str = "pass";
pub(crate) const KEY_SCHEMA: &str = "schema_version";
pub(crate) const KEY_NEXT_ID: &str = "next_id";
pub(crate) const KEY_CHANGE: &str = "change_counter";
pub(crate) const KEY_INSTANCE: &str = "instance_id";
pub(crate) const KEY_FILES: &str = "files";
pub(crate) const KEY_STORED_BYTES: &str = "stored_bytes";
