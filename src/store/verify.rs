//! Checking stored objects against their chunk records, for `dedupdav
//! check`: whether the object of a chunk exists with the size the record
//! names, and (reading it) whether it opens — AEAD tag, header, key id —
//! and its plaintext hashes to the chunk id. Reading is the scrub's
//! verification (`store/scrub.rs`), which opens objects as every read
//! does, so a check proves what a download would meet.

use std::sync::Arc;

use crate::crypto::{ChunkId, ChunkIdKey, ObjectName};
use crate::meta::ChunkRecord;

use super::scrub::ObjectHealth;
use super::ContentStore;

/// What the backend holds for one chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectVerdict {
    /// There, with the size the record names (and, when read, it opens
    /// and hashes to its id).
    Sound,
    /// No object under the chunk's name.
    Missing,
    /// An object of another size than the record names.
    WrongSize { found: u64 },
    /// An object that does not open or does not hash to its id.
    Corrupt(String),
    /// The backend failed to answer (after its retries).
    Unanswered(String),
}

impl ContentStore {
    /// The object holding chunk `id`: its own, or the pack `rec` names.
    pub fn object_name_of(&self, id: &ChunkId, rec: &ChunkRecord) -> ObjectName {
        match rec.packed {
            Some(at) => ObjectName::for_pack(&self.keys, &at.pack),
            None => ObjectName::for_chunk(&self.keys, id),
        }
    }

    /// Asks the backend whether chunk `id`'s object is there with the
    /// size `rec` names (a HEAD upstream, a stat locally); for a chunk in a
    /// pack, whether the pack is there and long enough to hold its entry.
    pub async fn inspect_object(&self, id: ChunkId, rec: &ChunkRecord) -> ObjectVerdict {
        let name = self.object_name_of(&id, rec);
        let fits = |found: u64| match rec.packed {
            Some(at) => found >= u64::from(at.offset) + u64::from(rec.stored),
            None => found == u64::from(rec.stored),
        };
        match self.backend.stat(&name).await {
            Ok(None) => ObjectVerdict::Missing,
            Ok(Some(stat)) => match stat.size {
                Some(found) if !fits(found) => ObjectVerdict::WrongSize { found },
                _ => ObjectVerdict::Sound,
            },
            Err(e) => ObjectVerdict::Unanswered(e.to_string()),
        }
    }

    /// Fetches chunk `id`'s object and judges it as the scrub does
    /// ([`ContentStore::verify_object`]: authenticated and re-hashed under
    /// `keys`, the chunk pinned meanwhile), and checks its size against
    /// `stored`.
    pub async fn read_object(
        self: &Arc<Self>,
        id: ChunkId,
        stored: u32,
        keys: Arc<[ChunkIdKey]>,
    ) -> ObjectVerdict {
        let verified = match self.verify_object(id, &keys).await {
            Ok(v) => v,
            Err(e) => return ObjectVerdict::Unanswered(e.to_string()),
        };
        match verified.health {
            ObjectHealth::Missing => ObjectVerdict::Missing,
            ObjectHealth::Corrupt(e) => ObjectVerdict::Corrupt(e.to_string()),
            ObjectHealth::Unreadable(e) => ObjectVerdict::Corrupt(e),
            // Collected meanwhile, or a removed user's chunk awaiting
            // collection: nothing a file relies on.
            ObjectHealth::Collected | ObjectHealth::Unowned => ObjectVerdict::Sound,
            ObjectHealth::Sound if verified.bytes_read != u64::from(stored) => {
                ObjectVerdict::WrongSize {
                    found: verified.bytes_read,
                }
            }
            ObjectHealth::Sound => ObjectVerdict::Sound,
        }
    }
}
