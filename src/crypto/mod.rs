//! Keys, chunk ids, object names and the sealed object format.
//!
//! Everything that leaves the gateway for the backend passes through here:
//! a chunk is named by a keyed MAC of its keyed id (keyed BLAKE3 of the
//! plaintext), compressed when that
//! shrinks it, and sealed with AES-256-GCM-SIV under a nonce derived from its
//! id (deterministic, so a retried or concurrent upload writes the same bytes).

mod keys;
mod object;
mod pack;
mod visible_ids;

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use keys::{Keys, MasterKey, KEY_LEN};
pub use object::{ObjectKind, Sealer, HEADER_LEN, MAX_METADATA_PLAIN};
pub use pack::{PackBuilder, PackId, PackedEntry, PACKED_OVERHEAD, PACK_HEADER_LEN};
pub use visible_ids::VisibleIds;

/// Errors of key handling and of sealing / opening objects.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the master key file is not 64 hex digits")]
    BadKeyFile,
    #[error("cannot read or write the master key file: {0}")]
    KeyFile(#[source] std::io::Error),
    #[error("object is not in the dedupdav format (bad magic or too short)")]
    NotAnObject,
    #[error("object format version {0} is not supported")]
    UnsupportedVersion(u8),
    #[error("object was sealed with key id {found:08x}, this gateway has {expected:08x}")]
    WrongKey { expected: u32, found: u32 },
    #[error("object failed authentication (tampered or corrupted)")]
    Tampered,
    #[error("object content does not match its id")]
    IdMismatch,
    #[error("object is larger than allowed when decompressed")]
    TooLarge,
    #[error("compression failed: {0}")]
    Compression(#[source] std::io::Error),
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8; KEY_LEN], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// The identity of a chunk: keyed BLAKE3 of its plaintext under the
/// chunk-id key (a PRF like HMAC-SHA256, about five times faster; every
/// chunk is hashed on upload and again on every read).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// The id under the installation's shared chunk-id key.
    pub fn of(keys: &Keys, plaintext: &[u8]) -> Self {
        Self::under(&ChunkIdKey::shared(keys), plaintext)
    }

    /// The id under `key`: the same content gets the same id (and so is
    /// stored once) only among uploads keyed alike.
    pub fn under(key: &ChunkIdKey, plaintext: &[u8]) -> Self {
        Self(*blake3::keyed_hash(&key.0, plaintext).as_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl std::fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

/// The key chunk ids are computed under, which is how far deduplication
/// reaches: the installation's chunk-id key shares chunks among all users;
/// a user's own key ([`Keys::user_chunk_id`]) confines sharing to that
/// user's files, so the timing of an upload says nothing about what other
/// users stored (`dedup.scope = "user"`).
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkIdKey([u8; KEY_LEN]);

impl ChunkIdKey {
    /// Chunks shared across all users (`dedup.scope = "global"`).
    pub fn shared(keys: &Keys) -> Self {
        Self(keys.chunk_id)
    }

    /// Chunks shared only within `user`'s files (`dedup.scope = "user"`).
    pub fn of_user(keys: &Keys, user: u64) -> Self {
        Self(keys.user_chunk_id(user))
    }
}

impl std::fmt::Debug for ChunkIdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChunkIdKey(..)")
    }
}

/// The name of an object in the backend: a keyed MAC, so it reveals nothing.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ObjectName {
    name: String,
    place: Place,
}

/// Where an object lives in the backend.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Place {
    /// `objects/ab/<name>`: chunks, which the orphan sweep walks.
    Objects,
    /// `meta/<name>`: sealed metadata (segments, snapshot heads and
    /// pieces), outside the sweep's reach.
    Metadata,
}

impl ObjectName {
    /// The object holding a chunk.
    pub fn for_chunk(keys: &Keys, id: &ChunkId) -> Self {
        Self {
            name: hex::encode(mac(&keys.object_name, &[b"chunk", &id.0])),
            place: Place::Objects,
        }
    }

    /// The object holding pack `pack`. Packs share the chunks' name space
    /// (so the collector and the sweep treat them as objects like any
    /// other): a pack id is random, so it never equals a chunk id.
    pub fn for_pack(keys: &Keys, pack: &[u8; 32]) -> Self {
        Self::for_chunk(keys, &ChunkId(*pack))
    }

    /// The object holding the metadata segment that starts at sequence
    /// `first`, and the id its nonce is derived from.
    pub fn for_metadata_segment(keys: &Keys, first: u64) -> (Self, ChunkId) {
        let seq = first.to_le_bytes();
        let name = Self {
            name: hex::encode(mac(&keys.object_name, &[b"metadata-segment", &seq])),
            place: Place::Metadata,
        };
        (name, ChunkId(mac(&keys.metadata, &[b"segment", &seq])))
    }

    /// The head of snapshot number `generation` (it lists the snapshot's
    /// chunks), and the id its nonce is derived from.
    pub fn for_snapshot_head(keys: &Keys, generation: u64) -> (Self, ChunkId) {
        let generation = generation.to_le_bytes();
        let name = Self {
            name: hex::encode(mac(&keys.object_name, &[b"snapshot-head", &generation])),
            place: Place::Metadata,
        };
        (name, ChunkId(mac(&keys.metadata, &[b"head", &generation])))
    }

    /// The object holding a piece of a snapshot whose id (keyed MAC of its
    /// plaintext, see [`snapshot_piece_id`]) is `id`.
    pub fn for_snapshot_piece(keys: &Keys, id: &ChunkId) -> Self {
        Self {
            name: hex::encode(mac(&keys.object_name, &[b"snapshot-piece", &id.0])),
            place: Place::Metadata,
        }
    }

    /// Accepts a name read back from a listing of `objects/` (64 lowercase
    /// hex digits).
    pub fn parse(name: &str) -> Option<Self> {
        Self::parse_in(name, Place::Objects)
    }

    /// Accepts a name read back from a listing of `place`.
    pub fn parse_in(name: &str, place: Place) -> Option<Self> {
        let ok = name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Self {
            name: name.to_string(),
            place,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub fn place(&self) -> Place {
        self.place
    }

    /// Path relative to the backend root: `objects/ab/<name>`, one level
    /// of 256 fan-out folders (see docs/ARCHITECTURE.md, "Upstream layout"),
    /// or `meta/<name>` for metadata.
    pub fn relative_path(&self) -> String {
        match self.place {
            Place::Objects => format!("objects/{}/{}", self.fanout(), self.name),
            Place::Metadata => format!("{METADATA_FOLDER}/{}", self.name),
        }
    }

    /// The fan-out folder's name: the name's first two hex digits.
    pub fn fanout(&self) -> &str {
        &self.name[0..2]
    }

    /// The folders above the object, outermost first.
    pub fn fanout_dirs(&self) -> Vec<String> {
        match self.place {
            Place::Objects => vec!["objects".to_string(), format!("objects/{}", self.fanout())],
            Place::Metadata => vec![METADATA_FOLDER.to_string()],
        }
    }
}

/// The id of a snapshot piece: a keyed MAC of its plaintext under the
/// metadata key, so equal pieces of successive snapshots are stored once
/// and never coincide with a chunk of a user's file.
pub fn snapshot_piece_id(keys: &Keys, plain: &[u8]) -> ChunkId {
    ChunkId(mac(&keys.metadata, &[b"piece", plain]))
}

/// The backend folder of sealed metadata (next to `objects/`).
pub const METADATA_FOLDER: &str = "meta";

impl std::fmt::Display for ObjectName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// A MAC under the auth-cache key (used to remember verified credentials
/// without keeping passwords in memory).
pub fn auth_cache_tag(keys: &Keys, parts: &[&[u8]]) -> [u8; 32] {
    mac(&keys.auth_cache, parts)
}

/// The verifier of an app password of user `user`: HMAC-SHA256 under the
/// app-password key of the user id and the secret. App passwords are
/// random with about 190 bits of entropy, so a fast keyed hash is as strong as a
/// slow one against guessing (see `accounts/app_passwords.rs`).
pub fn app_password_tag(keys: &Keys, user: u64, secret: &str) -> [u8; 32] {
    mac(
        &keys.app_password,
        &[b"app password\0", &user.to_le_bytes(), secret.as_bytes()],
    )
}

/// Compares two tags in time independent of where they differ.
pub fn tags_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    #[test]
    fn ids_and_names_are_keyed() {
        let k1 = MasterKey::from_bytes([1; 32]).derive();
        let k2 = MasterKey::from_bytes([2; 32]).derive();
        let data = b"hello world";
        assert_ne!(ChunkId::of(&k1, data), ChunkId::of(&k2, data));
        let id = ChunkId::of(&k1, data);
        let plain: [u8; 32] = sha2::Sha256::digest(data).into();
        assert_ne!(id.0, plain);
        assert_ne!(id.0, *blake3::hash(data).as_bytes(), "not the unkeyed hash");
        let name = ObjectName::for_chunk(&k1, &id);
        assert_ne!(name.as_str(), hex::encode(plain));
        assert_ne!(name.as_str(), id.to_hex());
        assert_eq!(ObjectName::parse(name.as_str()), Some(name.clone()));
        assert!(name
            .relative_path()
            .starts_with(&format!("objects/{}/", &name.as_str()[..2])));
        assert_eq!(ObjectName::parse("../etc/passwd"), None);
    }

    #[test]
    fn per_user_keys_give_per_user_ids() {
        let keys = MasterKey::from_bytes([1; 32]).derive();
        let data = b"the same content";
        let (a, b) = (ChunkIdKey::of_user(&keys, 1), ChunkIdKey::of_user(&keys, 2));
        assert_ne!(ChunkId::under(&a, data), ChunkId::under(&b, data));
        assert_ne!(ChunkId::under(&a, data), ChunkId::of(&keys, data));
        assert_eq!(ChunkId::under(&a, data), ChunkId::under(&a, data));
        assert_eq!(
            ChunkId::under(&ChunkIdKey::shared(&keys), data),
            ChunkId::of(&keys, data)
        );
    }
}
