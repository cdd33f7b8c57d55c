//! Checking stored objects against their chunk records, for `dedupdav
//! check`: whether the object of a chunk exists with the size the record
//! names, and (reading it) whether it opens — AEAD tag, header, key id —
//! and its plaintext hashes to the chunk id. Opening goes through the same
//! [`crate::crypto::Sealer::open`] as every read, so a check proves what
//! a download would meet.

use std::sync::Arc;

use crate::backend::BackendError;
use crate::crypto::{ChunkId, ChunkIdKey, ObjectKind, ObjectName};

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
    /// The chunk-id keys a stored chunk may be under: the shared one and
    /// each of `users`' own (`dedup.scope = "user"`), the configured
    /// scope's first.
    pub fn every_chunk_key(&self, users: &[u64]) -> Arc<[ChunkIdKey]> {
        let shared = ChunkIdKey::shared(&self.keys);
        let own = users.iter().map(|u| ChunkIdKey::of_user(&self.keys, *u));
        let keys: Vec<ChunkIdKey> = if self.settings.dedup_per_user {
            own.chain(std::iter::once(shared)).collect()
        } else {
            std::iter::once(shared).chain(own).collect()
        };
        keys.into()
    }

    /// The name of chunk `id`'s object in the backend.
    pub fn object_name(&self, id: &ChunkId) -> ObjectName {
        ObjectName::for_chunk(&self.keys, id)
    }

    /// Asks the backend whether chunk `id`'s object is there with
    /// `stored` bytes (a HEAD upstream, a stat locally).
    pub async fn inspect_object(&self, id: ChunkId, stored: u32) -> ObjectVerdict {
        let name = ObjectName::for_chunk(&self.keys, &id);
        match self.backend.stat(&name).await {
            Ok(None) => ObjectVerdict::Missing,
            Ok(Some(stat)) => match stat.size {
                Some(found) if found != stored as u64 => ObjectVerdict::WrongSize { found },
                _ => ObjectVerdict::Sound,
            },
            Err(e) => ObjectVerdict::Unanswered(e.to_string()),
        }
    }

    /// Fetches chunk `id`'s object, checks its size against `stored`,
    /// opens it and re-hashes the plaintext under `keys`.
    pub async fn read_object(
        self: &Arc<Self>,
        id: ChunkId,
        stored: u32,
        keys: Arc<[ChunkIdKey]>,
    ) -> ObjectVerdict {
        let name = ObjectName::for_chunk(&self.keys, &id);
        let object = match self.backend.get(&name).await {
            Ok(o) => o,
            Err(BackendError::NotFound(_)) => return ObjectVerdict::Missing,
            Err(e) => return ObjectVerdict::Unanswered(e.to_string()),
        };
        if object.len() as u64 != stored as u64 {
            return ObjectVerdict::WrongSize {
                found: object.len() as u64,
            };
        }
        let store = self.clone();
        let opened = tokio::task::spawn_blocking(move || {
            store
                .sealer
                .open(ObjectKind::Chunk, &id, &name, object, &keys)
                .map(|_| ())
        })
        .await;
        match opened {
            Ok(Ok(())) => ObjectVerdict::Sound,
            Ok(Err(e)) => ObjectVerdict::Corrupt(e.to_string()),
            Err(e) => ObjectVerdict::Unanswered(e.to_string()),
        }
    }
}
