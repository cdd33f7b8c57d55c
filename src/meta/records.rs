//! Typed records stored in the index, and their encodings.
//!
//! Users and nodes use the field layout of [`super::codec`]; manifests and
//! chunk records use fixed-size packed layouts because they are read on
//! every upload and download.

use serde::{Deserialize, Serialize};

use super::codec::{Reader, Writer};
use super::IndexError;
use crate::crypto::ChunkId;

fn corrupt(table: &'static str, e: impl std::fmt::Display) -> IndexError {
    IndexError::Corrupt {
        table,
        cause: e.to_string(),
    }
}

/// A gateway account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: u64,
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub admin: bool,
    /// Limit on the user's logical bytes, if any.
    pub quota: Option<u64>,
    /// The user's logical bytes: the sum of their files' sizes.
    pub used: u64,
    /// The user's root folder node.
    pub root: u64,
    pub created: i64,
    /// A disabled user keeps their files but cannot log in.
    pub disabled: bool,
}

impl UserRecord {
    pub fn encode(&self) -> Vec<u8> {
        Writer::new()
            .u64(self.id)
            .str(&self.name)
            .str(&self.password_hash)
            .bool(self.admin)
            .option(self.quota, |w, q| {
                w.u64(q);
            })
            .u64(self.used)
            .u64(self.root)
            .i64(self.created)
            .bool(self.disabled)
            .finish()
    }
    /// Fields added after the first layout (`disabled`) are appended: a
    /// record written before them ends early and reads with their
    /// defaults, so existing indexes and sealed snapshots keep decoding.
    pub fn decode(b: &[u8]) -> Result<Self, IndexError> {
        let mut r = Reader::new("users", b);
        Ok(Self {
            id: r.u64()?,
            name: r.string()?,
            password_hash: r.string()?,
            admin: r.bool()?,
            quota: r.option(|r| r.u64())?,
            used: r.u64()?,
            root: r.u64()?,
            created: r.i64()?,
            disabled: if r.at_end() { false } else { r.bool()? },
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    Dir,
    File,
}

/// A folder or file of one user's tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    /// Stable for the node's life, kept across renames and moves (`oc:fileid`).
    pub id: u64,
    /// Parent folder, 0 for a user's root.
    pub parent: u64,
    pub owner: u64,
    pub kind: NodeKind,
    /// Logical size in bytes: a file's length; for a folder, the sum of the
    /// files below it (kept up to date by every change, for `oc:size`).
    pub size: u64,
    /// Modification time, Unix nanoseconds.
    pub mtime: i64,
    pub created: i64,
    /// Change counter value of the last change at or below this node (etag).
    pub version: u64,
    /// Content digest of a file: SHA-256 over its manifest's chunk ids
    /// ([`manifest_digest`]). Equal contents give equal digests; since
    /// chunk ids are keyed, it reveals nothing without the master key.
    pub digest: Option<[u8; 32]>,
    /// Client-supplied checksums, ownCloud style ("SHA1:… MD5:…").
    pub checksums: Option<String>,
}

/// The content digest of a file made of `entries` (see [`Node::digest`]):
/// computed from the manifest, so no extra pass over the bytes is needed.
pub fn manifest_digest(entries: &[ManifestEntry]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for e in entries {
        h.update(e.id.0);
        h.update(e.len.to_le_bytes());
    }
    h.finalize().into()
}

impl Node {
    pub fn encode(&self) -> Vec<u8> {
        let kind = match self.kind {
            NodeKind::Dir => 0,
            NodeKind::File => 1,
        };
        Writer::new()
            .u64(self.id)
            .u64(self.parent)
            .u64(self.owner)
            .variant(kind)
            .u64(self.size)
            .i64(self.mtime)
            .i64(self.created)
            .u64(self.version)
            .option(self.digest.as_ref(), |w, d| {
                w.array(d);
            })
            .option(self.checksums.as_deref(), |w, c| {
                w.str(c);
            })
            .finish()
    }
    pub fn decode(b: &[u8]) -> Result<Self, IndexError> {
        let mut r = Reader::new("nodes", b);
        Ok(Self {
            id: r.u64()?,
            parent: r.u64()?,
            owner: r.u64()?,
            kind: match r.variant()? {
                0 => NodeKind::Dir,
                1 => NodeKind::File,
                _ => return Err(corrupt("nodes", "unknown node kind")),
            },
            size: r.u64()?,
            mtime: r.i64()?,
            created: r.i64()?,
            version: r.u64()?,
            digest: r.option(|r| r.array::<32>())?,
            checksums: r.option(|r| r.string())?,
        })
    }
    pub fn is_dir(&self) -> bool {
        self.kind == NodeKind::Dir
    }
    /// The entity tag (unquoted): changes whenever the node or anything
    /// below it changes.
    pub fn etag(&self) -> String {
        format!("{:x}-{:x}", self.id, self.version)
    }
}

/// One chunk of a file, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestEntry {
    pub id: ChunkId,
    pub len: u32,
}

const ENTRY_LEN: usize = 36;

/// Packs a manifest: 32-byte id then little-endian u32 length, per chunk.
pub fn encode_manifest(entries: &[ManifestEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for e in entries {
        out.extend_from_slice(&e.id.0);
        out.extend_from_slice(&e.len.to_le_bytes());
    }
    out
}

pub fn decode_manifest(b: &[u8]) -> Result<Vec<ManifestEntry>, IndexError> {
    if !b.len().is_multiple_of(ENTRY_LEN) {
        return Err(corrupt("manifests", "length is not a multiple of 36"));
    }
    Ok(b.chunks_exact(ENTRY_LEN)
        .map(|c| {
            let mut id = [0u8; 32];
            id.copy_from_slice(&c[..32]);
            let len = u32::from_le_bytes([c[32], c[33], c[34], c[35]]);
            ManifestEntry {
                id: ChunkId(id),
                len,
            }
        })
        .collect())
}

/// What the index knows of one stored chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRecord {
    /// How many manifest entries point at the chunk.
    pub refs: u64,
    /// Size of the sealed object in the backend (of the sealed entry, for
    /// a chunk in a pack).
    pub stored: u32,
    /// 0 while referenced; else the Unix time (s) the last reference went
    /// away. A collector deletes the object after a grace period.
    pub unreferenced_since: u64,
    /// Where the chunk lies when it is an entry of a pack; `None`: it is
    /// an object of its own.
    pub packed: Option<PackedAt>,
}

/// A chunk's place inside a pack: the pack and the entry's offset (its
/// length is the record's `stored`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackedAt {
    pub pack: [u8; 32],
    pub offset: u32,
}

/// A chunk record's length on its own, and with a pack location.
const CHUNK_RECORD: usize = 20;
const PACKED_CHUNK_RECORD: usize = CHUNK_RECORD + 36;

impl ChunkRecord {
    /// A record of a chunk stored as an object of its own.
    pub fn object(refs: u64, stored: u32, unreferenced_since: u64) -> Self {
        Self {
            refs,
            stored,
            unreferenced_since,
            packed: None,
        }
    }

    /// 20 bytes (refs, stored, mark), then for a packed chunk the pack id
    /// and the offset: records written before packs existed still decode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PACKED_CHUNK_RECORD);
        out.extend_from_slice(&self.refs.to_le_bytes());
        out.extend_from_slice(&self.stored.to_le_bytes());
        out.extend_from_slice(&self.unreferenced_since.to_le_bytes());
        if let Some(at) = &self.packed {
            out.extend_from_slice(&at.pack);
            out.extend_from_slice(&at.offset.to_le_bytes());
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, IndexError> {
        if b.len() != CHUNK_RECORD && b.len() != PACKED_CHUNK_RECORD {
            return Err(corrupt("chunks", "record is neither 20 nor 56 bytes"));
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let packed = (b.len() == PACKED_CHUNK_RECORD).then(|| {
            let mut pack = [0u8; 32];
            pack.copy_from_slice(&b[20..52]);
            PackedAt {
                pack,
                offset: u32::from_le_bytes([b[52], b[53], b[54], b[55]]),
            }
        });
        Ok(Self {
            refs: u64_at(0),
            stored: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            unreferenced_since: u64_at(12),
            packed,
        })
    }
}

/// What the index knows of one pack (an object holding many small
/// chunks): its size, how much of it still holds live chunks (chunks with
/// a record located in it), and when it was written. The collector drops
/// a pack whose last live chunk goes; the repacker rewrites sparse ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackRecord {
    /// The pack object's size in the backend.
    pub size: u32,
    /// Chunks whose records point into this pack.
    pub live_chunks: u32,
    /// Their sealed bytes.
    pub live_bytes: u32,
    /// Unix seconds it was recorded.
    pub created: u64,
}

impl PackRecord {
    pub fn encode(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..4].copy_from_slice(&self.size.to_le_bytes());
        out[4..8].copy_from_slice(&self.live_chunks.to_le_bytes());
        out[8..12].copy_from_slice(&self.live_bytes.to_le_bytes());
        out[12..].copy_from_slice(&self.created.to_le_bytes());
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, IndexError> {
        if b.len() != 20 {
            return Err(corrupt("packs", "record is not 20 bytes"));
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut created = [0u8; 8];
        created.copy_from_slice(&b[12..20]);
        Ok(Self {
            size: u32_at(0),
            live_chunks: u32_at(4),
            live_bytes: u32_at(8),
            created: u64::from_le_bytes(created),
        })
    }

    /// The share of the pack that live chunks take, in percent.
    pub fn live_percent(&self) -> u64 {
        u64::from(self.live_bytes) * 100 / u64::from(self.size.max(1))
    }
}

/// What a relocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relocated {
    /// Chunk records moved into the new pack.
    pub moved: u32,
    /// The old packs this relocation took the last live chunk of, with
    /// their sizes (their records are gone; the caller deletes them).
    pub emptied: Vec<([u8; 32], u32)>,
}

/// What one dead property costs its owner's quota: its stored key
/// (namespace and name) plus its encoded value, i.e. what it takes in the
/// index.
pub fn prop_cost(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len()) as u64
}

/// An object of an upload that has not committed (see the `pending` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRecord {
    /// Unix time (s) the record was written, or the upload was abandoned.
    /// The collector deletes the object once this is older than the grace
    /// period and no upload pins the chunk.
    pub since: u64,
    /// Size of the sealed object in the backend.
    pub stored: u32,
}

impl PendingRecord {
    pub fn encode(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&self.since.to_le_bytes());
        out[8..].copy_from_slice(&self.stored.to_le_bytes());
        out
    }
    pub fn decode(b: &[u8]) -> Result<Self, IndexError> {
        if b.len() != 12 {
            return Err(corrupt("pending", "record is not 12 bytes"));
        }
        let mut since = [0u8; 8];
        since.copy_from_slice(&b[..8]);
        Ok(Self {
            since: u64::from_le_bytes(since),
            stored: u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip() {
        let m = vec![
            ManifestEntry {
                id: ChunkId([1; 32]),
                len: 7,
            },
            ManifestEntry {
                id: ChunkId([2; 32]),
                len: u32::MAX,
            },
        ];
        assert_eq!(decode_manifest(&encode_manifest(&m)).unwrap(), m);
        assert!(decode_manifest(&[0; 35]).is_err());
    }

    #[test]
    fn chunk_record_round_trip() {
        let r = ChunkRecord::object(3, 99, 12345);
        assert_eq!(ChunkRecord::decode(&r.encode()).unwrap(), r);
        let packed = ChunkRecord {
            packed: Some(PackedAt {
                pack: [5; 32],
                offset: 4096,
            }),
            ..r
        };
        assert_eq!(packed.encode().len(), 56);
        assert_eq!(ChunkRecord::decode(&packed.encode()).unwrap(), packed);
        assert!(ChunkRecord::decode(&[0; 21]).is_err());
        let pack = PackRecord {
            size: 1 << 20,
            live_chunks: 3,
            live_bytes: 1 << 18,
            created: 9,
        };
        assert_eq!(PackRecord::decode(&pack.encode()).unwrap(), pack);
        assert_eq!(pack.live_percent(), 25);
        let p = PendingRecord {
            since: 77,
            stored: 4096,
        };
        assert_eq!(PendingRecord::decode(&p.encode()).unwrap(), p);
        assert!(PendingRecord::decode(&[0; 11]).is_err());
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    fn user() -> UserRecord {
        UserRecord {
            id: 3,
            name: "alïce".into(),
            password_hash: "$argon2id$v=19$x".into(),
            admin: true,
            quota: Some(1 << 30),
            used: 12345,
            root: 9,
            created: -5,
            disabled: false,
        }
    }

    fn node(digest: bool) -> Node {
        Node {
            id: 77,
            parent: 9,
            owner: 3,
            kind: if digest {
                NodeKind::File
            } else {
                NodeKind::Dir
            },
            size: 1 << 40,
            mtime: 1_700_000_000_123_456_789,
            created: 42,
            version: 0xdead_beef,
            digest: digest.then_some([0xab; 32]),
            checksums: digest.then(|| "SHA1:00 MD5:11".to_string()),
        }
    }

    /// Bytes the previous encoder (the `bincode` 1 crate) wrote for these
    /// records: existing indexes must keep reading as they are.
    const USER: &str = "03000000000000000600000000000000616cc3af63651000000000000000246172676f6e32696424763d313924780101000000400000000039300000000000000900000000000000fbffffffffffffff";
    const FILE: &str = "4d000000000000000900000000000000030000000000000001000000000000000001000015cd853dfe9c97172a00000000000000efbeadde0000000001abababababababababababababababababababababababababababababababab010e00000000000000534841313a3030204d44353a3131";
    const DIR: &str = "4d000000000000000900000000000000030000000000000000000000000000000001000015cd853dfe9c97172a00000000000000efbeadde000000000000";

    #[test]
    fn records_keep_the_layout_existing_indexes_hold() {
        // The user layout gained a trailing `disabled` flag.
        assert_eq!(hex::encode(user().encode()), format!("{USER}00"));
        assert_eq!(hex::encode(node(true).encode()), FILE);
        assert_eq!(hex::encode(node(false).encode()), DIR);
        let u = UserRecord::decode(&hex::decode(USER).unwrap()).unwrap();
        assert_eq!(
            (u.name.as_str(), u.quota, u.created, u.disabled),
            ("alïce", Some(1 << 30), -5, false)
        );
        let f = Node::decode(&hex::decode(FILE).unwrap()).unwrap();
        assert_eq!(f.encode(), node(true).encode());
        let d = Node::decode(&hex::decode(DIR).unwrap()).unwrap();
        assert_eq!((d.kind, d.digest, d.checksums), (NodeKind::Dir, None, None));
    }

    #[test]
    fn a_disabled_user_round_trips_and_a_bad_flag_is_refused() {
        let mut u = user();
        u.disabled = true;
        let bytes = u.encode();
        assert!(UserRecord::decode(&bytes).unwrap().disabled);
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() = 7;
        assert!(UserRecord::decode(&bad).is_err());
    }

    #[test]
    fn truncated_records_are_errors() {
        let f = hex::decode(FILE).unwrap();
        for cut in [0, 7, 30, f.len() - 1] {
            assert!(Node::decode(&f[..cut]).is_err(), "{cut}");
        }
    }
}

/// A dead property as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProp {
    pub name: String,
    pub prefix: Option<String>,
    pub namespace: Option<String>,
    pub xml: Option<Vec<u8>>,
}

impl StoredProp {
    /// The `props` table's value, in the layout of [`crate::meta::codec`].
    pub fn encode(&self) -> Vec<u8> {
        let text = |w: &mut Writer, t: &str| {
            w.str(t);
        };
        Writer::new()
            .str(&self.name)
            .option(self.prefix.as_deref(), text)
            .option(self.namespace.as_deref(), text)
            .option(self.xml.as_deref(), |w, x| {
                w.bytes(x);
            })
            .finish()
    }

    pub fn decode(b: &[u8]) -> Result<Self, IndexError> {
        let mut r = Reader::new("props", b);
        Ok(Self {
            name: r.string()?,
            prefix: r.option(|r| r.string())?,
            namespace: r.option(|r| r.string())?,
            xml: r.option(|r| r.bytes().map(<[u8]>::to_vec))?,
        })
    }
}

/// Usage figures for `dedupdav stats`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub users: u64,
    pub files: u64,
    pub logical_bytes: u64,
    pub stored_bytes: u64,
    pub chunks: u64,
    /// Objects written for uploads that have not committed (in flight, or
    /// abandoned and awaiting the collector), and their backend bytes.
    pub pending_objects: u64,
    pub pending_bytes: u64,
}

/// What the collector does with one expired pending record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiredPending {
    pub id: [u8; 32],
    pub stored: u32,
    /// False when a chunk record names the object (a commit of the same
    /// chunk by another upload took it over): only the record goes.
    pub delete_object: bool,
}

/// What `user add` supplies.
pub struct NewUser {
    pub name: String,
    pub password_hash: String,
    pub admin: bool,
    pub quota: Option<u64>,
}

/// A change to an account: each field set is applied, the others are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserUpdate {
    pub password_hash: Option<String>,
    /// `Some(None)` lifts the quota.
    pub quota: Option<Option<u64>>,
    pub admin: Option<bool>,
    pub disabled: Option<bool>,
}

impl UserUpdate {
    /// Applies the change to `user`.
    pub fn apply(&self, user: &mut UserRecord) {
        if let Some(h) = &self.password_hash {
            user.password_hash = h.clone();
        }
        if let Some(q) = self.quota {
            user.quota = q;
        }
        if let Some(a) = self.admin {
            user.admin = a;
        }
        if let Some(d) = self.disabled {
            user.disabled = d;
        }
    }
}

/// User names appear in URLs: keep them to a safe alphabet.
pub fn valid_user_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
        && !name.starts_with('.')
}
