//! Sealed metadata in the backend, under `meta/`: chain segments (named by
//! a keyed MAC of their first sequence number), snapshot heads (by their
//! generation) and snapshot pieces (by a keyed MAC of their plaintext).
//! Names reveal nothing, and a restore computes the name of what it looks
//! for next: the segment after the last, the snapshot after a generation.
//!
//! [`MetadataObjects`] needs only the keys and the backend, not the index,
//! so `dedupdav restore` uses it before any index exists.
//!
//! Why the orphan sweep never deletes them: the sweep lists and deletes
//! only inside the fan-out folders of `objects/`; these objects live in a
//! folder of their own ([`crate::crypto::METADATA_FOLDER`]), which no
//! listing of `objects/` reaches. Sealing is the chunks' (AES-256-GCM-SIV,
//! kind "metadata", the name in the associated data), so a flipped bit or
//! an object moved to another name is refused before it is decoded.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;

use super::{ContentStore, StoreError};
use crate::backend::{BackendError, SharedObjectStore};
use crate::crypto::{snapshot_piece_id, ChunkId, Keys, ObjectKind, ObjectName, Sealer};
use crate::meta::snapshot::SnapshotPiece;

/// The sealed metadata objects of one installation.
pub struct MetadataObjects {
    keys: Arc<Keys>,
    sealer: Sealer,
    backend: SharedObjectStore,
}

impl MetadataObjects {
    pub fn new(keys: Arc<Keys>, backend: SharedObjectStore, zstd_level: i32) -> Self {
        let sealer = Sealer::new(keys.clone(), zstd_level, 0);
        Self {
            keys,
            sealer,
            backend,
        }
    }

    /// Seals a segment's plaintext and stores it under the name derived
    /// from its first sequence number; returns the sealed size.
    pub async fn put_segment(&self, first: u64, plain: &[u8]) -> Result<u64, StoreError> {
        let (name, id) = ObjectName::for_metadata_segment(&self.keys, first);
        self.put(&name, &id, plain).await
    }

    /// The plaintext of the segment starting at `first`, authenticated;
    /// `None` when the backend has no such object.
    pub async fn read_segment(&self, first: u64) -> Result<Option<Bytes>, StoreError> {
        let (name, id) = ObjectName::for_metadata_segment(&self.keys, first);
        self.get(&name, &id).await
    }

    /// The name of the segment starting at `first`.
    pub fn segment_name(&self, first: u64) -> ObjectName {
        ObjectName::for_metadata_segment(&self.keys, first).0
    }

    /// Seals a snapshot head (its plaintext) under its generation.
    pub async fn put_head(&self, generation: u64, plain: &[u8]) -> Result<u64, StoreError> {
        let (name, id) = ObjectName::for_snapshot_head(&self.keys, generation);
        self.put(&name, &id, plain).await
    }

    /// The plaintext of snapshot head `generation`, authenticated.
    pub async fn read_head(&self, generation: u64) -> Result<Option<Bytes>, StoreError> {
        let (name, id) = ObjectName::for_snapshot_head(&self.keys, generation);
        self.get(&name, &id).await
    }

    /// The name of snapshot head `generation`.
    pub fn head_name(&self, generation: u64) -> ObjectName {
        ObjectName::for_snapshot_head(&self.keys, generation).0
    }

    /// The piece `plain` of a snapshot: its id and length, not stored.
    pub fn piece(&self, plain: &[u8]) -> SnapshotPiece {
        SnapshotPiece {
            id: snapshot_piece_id(&self.keys, plain).0,
            len: plain.len() as u32,
        }
    }

    /// Seals and stores a snapshot piece; returns the sealed size.
    pub async fn put_piece(&self, piece: &SnapshotPiece, plain: &[u8]) -> Result<u64, StoreError> {
        let id = ChunkId(piece.id);
        let name = ObjectName::for_snapshot_piece(&self.keys, &id);
        self.put(&name, &id, plain).await
    }

    /// A snapshot piece, authenticated and checked against its id.
    pub async fn read_piece(&self, piece: &SnapshotPiece) -> Result<Bytes, StoreError> {
        let id = ChunkId(piece.id);
        let name = ObjectName::for_snapshot_piece(&self.keys, &id);
        let plain = self.get(&name, &id).await?;
        let plain = plain.ok_or_else(|| BackendError::NotFound(name.relative_path()))?;
        if snapshot_piece_id(&self.keys, &plain) != id || plain.len() != piece.len as usize {
            return Err(StoreError::Object {
                id,
                name: name.to_string(),
                source: crate::crypto::CryptoError::IdMismatch,
            });
        }
        Ok(plain)
    }

    /// Deletes the segment starting at `first` (gone already is fine).
    pub async fn delete_segment(&self, first: u64) -> Result<(), StoreError> {
        self.delete(&self.segment_name(first)).await
    }

    /// Deletes snapshot head `generation` (gone already is fine).
    pub async fn delete_head(&self, generation: u64) -> Result<(), StoreError> {
        self.delete(&self.head_name(generation)).await
    }

    /// Deletes a snapshot piece (gone already is fine).
    pub async fn delete_piece(&self, id: &[u8; 32]) -> Result<(), StoreError> {
        let name = ObjectName::for_snapshot_piece(&self.keys, &ChunkId(*id));
        self.delete(&name).await
    }

    /// The names of every sealed metadata object in the backend.
    pub async fn names(&self) -> Result<HashSet<ObjectName>, StoreError> {
        let infos: Vec<_> = self.backend.list_metadata().try_collect().await?;
        Ok(infos.into_iter().map(|i| i.name).collect())
    }

    async fn put(&self, name: &ObjectName, id: &ChunkId, plain: &[u8]) -> Result<u64, StoreError> {
        let sealed = self.sealer.seal(ObjectKind::Metadata, id, name, plain)?;
        let size = sealed.len() as u64;
        self.backend.put(name, Bytes::from(sealed)).await?;
        Ok(size)
    }

    async fn get(&self, name: &ObjectName, id: &ChunkId) -> Result<Option<Bytes>, StoreError> {
        let object = match self.backend.get(name).await {
            Ok(object) => object,
            Err(BackendError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let plain = self
            .sealer
            .open(ObjectKind::Metadata, id, name, object, &[])
            .map_err(|source| StoreError::Object {
                id: *id,
                name: name.to_string(),
                source,
            })?;
        Ok(Some(plain))
    }

    async fn delete(&self, name: &ObjectName) -> Result<(), StoreError> {
        match self.backend.delete(name).await {
            Ok(()) | Err(BackendError::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

impl ContentStore {
    /// The installation's sealed metadata objects.
    pub fn metadata(&self) -> &MetadataObjects {
        &self.metadata
    }
}
