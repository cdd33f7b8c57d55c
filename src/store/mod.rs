//! The content store: turns byte streams into deduplicated, sealed chunk
//! objects and back.
//!
//! Upload path: bytes → [`chunker`] → chunk id (keyed BLAKE3) → dedup lookup in
//! the index → new chunks sealed (zstd when it shrinks, AES-256-GCM-SIV) and
//! put to the backend, up to `uploads_in_flight` at once (fewer when the
//! [`budget`] of transfer memory has no room), each new object recorded as
//! pending in the index before it is put. Nothing is
//! committed here: [`Upload::finish`] hands back the manifest for the
//! namespace to commit, with the chunks pinned so a collector cannot remove
//! them in between; an upload that never commits leaves its objects to the
//! collector. Dedup hits and misses are counted in [`metrics`].
//!
//! How far dedup reaches is the chunk-id key's choice ([`ChunkKeys`]): one
//! key for all users (`dedup.scope = "global"`), or one per user ("user"),
//! so the dedup index separates users by itself.
//!
//! Read path: [`FileReader`] fetches only the chunks a range needs, checks
//! each object's tag and id, and reads ahead on sequential access (as far as
//! the transfer budget allows).

pub mod budget;
pub mod chunker;
mod gc;
mod metadata;
pub mod metrics;
mod packs;
mod pending;
mod pins;
mod reader;
mod repack;
mod scrub;
mod snapshot;
mod sweep;
mod upload;
mod verify;

use std::sync::Arc;

use crate::backend::{BackendError, SharedObjectStore};
use crate::crypto::{ChunkId, ChunkIdKey, CryptoError, Keys, ObjectKind, ObjectName, Sealer};
use crate::meta::{IndexError, Meta};

pub use budget::{BufferPermit, TransferBudget};
pub use chunker::{Cdc, ChunkSizes, Chunker};
pub use gc::{GcReport, GcRound};
pub use metadata::MetadataObjects;
pub use packs::PackSettings;
pub use pins::{PinGuard, Pins, SweepClaim};
pub use reader::FileReader;
pub use repack::{RepackReport, RepackRound};
pub use scrub::{ObjectHealth, Verified};
pub use snapshot::SnapshotReport;
pub use sweep::{SweepReport, SweepRound, SHARDS as SWEEP_SHARDS};
pub use upload::{ByteSink, FinishedUpload, StoredContent, Upload};
pub use verify::ObjectVerdict;

/// Errors of the content store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("chunk {id:?} (object {name}): {source}")]
    Object {
        id: ChunkId,
        name: String,
        #[source]
        source: CryptoError,
    },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("upload is larger than announced ({announced} bytes)")]
    TooLong { announced: u64 },
    #[error("upload ended after {got} of {announced} bytes")]
    TooShort { got: u64, announced: u64 },
    #[error("a pipeline task failed: {0}")]
    Task(String),
    #[error("could not record a new object in the index: {0}")]
    Pending(#[source] Arc<IndexError>),
    /// The pack a chunk went into could not be stored (every writer of
    /// that pack gets this).
    #[error("storing a pack failed: {0}")]
    Pack(#[source] Arc<StoreError>),
}

/// Tuning of the content pipeline.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    pub chunk_sizes: ChunkSizes,
    pub zstd_level: i32,
    /// Chunk uploads in flight per PUT (bounds memory: N × max chunk).
    pub uploads_in_flight: usize,
    /// Chunks fetched ahead of a sequential reader.
    pub read_ahead: usize,
    /// Bytes all transfers' chunk buffers may take together
    /// (`limits.transfer_memory`); see [`budget`].
    pub transfer_memory: u64,
    /// Chunks are shared only within one user's files (`dedup.scope =
    /// "user"`), never across users.
    pub dedup_per_user: bool,
    /// Which chunks go into packs, and how packs are cut.
    pub packs: PackSettings,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            chunk_sizes: ChunkSizes {
                min: 256 << 10,
                avg: 1 << 20,
                max: 4 << 20,
            },
            zstd_level: 1,
            uploads_in_flight: 4,
            read_ahead: 4,
            transfer_memory: 256 << 20,
            dedup_per_user: false,
            packs: PackSettings::default(),
        }
    }
}

/// The chunk-id keys of one user's files: new uploads use the first (the
/// configured dedup scope's); reads accept either, because files written
/// before `dedup.scope` changed keep their chunks under the other one.
#[derive(Clone, Debug)]
pub struct ChunkKeys([ChunkIdKey; 2]);

impl ChunkKeys {
    fn for_uploads(&self) -> ChunkIdKey {
        self.0[0].clone()
    }

    fn accepted(&self) -> &[ChunkIdKey] {
        &self.0
    }
}

impl AsRef<[ChunkIdKey]> for ChunkKeys {
    fn as_ref(&self) -> &[ChunkIdKey] {
        self.accepted()
    }
}

/// The shared content store.
pub struct ContentStore {
    keys: Arc<Keys>,
    sealer: Sealer,
    cdc: Cdc,
    backend: SharedObjectStore,
    meta: Meta,
    pins: Pins,
    budget: TransferBudget,
    pending: pending::PendingLog,
    metadata: MetadataObjects,
    packer: packs::Packer,
    settings: StoreSettings,
    metrics: metrics::StoreMetrics,
}

impl ContentStore {
    pub fn new(
        keys: Arc<Keys>,
        backend: SharedObjectStore,
        meta: Meta,
        settings: StoreSettings,
    ) -> Arc<Self> {
        let sealer = Sealer::new(keys.clone(), settings.zstd_level, settings.chunk_sizes.max);
        let cdc = Cdc::new(keys.gear.clone(), settings.chunk_sizes);
        let pins = Pins::new(keys.clone());
        let metadata = MetadataObjects::new(keys.clone(), backend.clone(), settings.zstd_level);
        Arc::new(Self {
            keys,
            sealer,
            cdc,
            backend,
            meta,
            pins,
            budget: TransferBudget::new(settings.transfer_memory),
            pending: Default::default(),
            metadata,
            packer: Default::default(),
            settings,
            metrics: Default::default(),
        })
    }

    /// The keys objects are named and sealed with.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn backend(&self) -> &SharedObjectStore {
        &self.backend
    }

    /// What the upload pipeline counted (dedup hits and misses).
    pub fn metrics(&self) -> &metrics::StoreMetrics {
        &self.metrics
    }

    /// The metadata this store records its chunks in.
    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    /// The memory budget every upload and download buffers within.
    pub fn budget(&self) -> &TransferBudget {
        &self.budget
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// The chunk-id keys of `owner`'s files under the configured scope.
    pub fn chunk_keys(&self, owner: u64) -> ChunkKeys {
        let shared = ChunkIdKey::shared(&self.keys);
        let own = ChunkIdKey::of_user(&self.keys, owner);
        ChunkKeys(if self.settings.dedup_per_user {
            [own, shared]
        } else {
            [shared, own]
        })
    }

    /// Starts an upload of `owner`'s. `announced` is the expected length,
    /// if known.
    pub fn begin_upload(self: &Arc<Self>, owner: u64, announced: Option<u64>) -> Upload {
        let key = self.chunk_keys(owner).for_uploads();
        Upload::new(self.clone(), key, announced, None)
    }

    /// Starts an upload of `owner`'s whose bytes `sink` also sees, in order
    /// (for whole-file checksums; see [`ByteSink`]).
    pub fn begin_upload_with(
        self: &Arc<Self>,
        owner: u64,
        announced: Option<u64>,
        sink: ByteSink,
    ) -> Upload {
        let key = self.chunk_keys(owner).for_uploads();
        Upload::new(self.clone(), key, announced, Some(sink))
    }

    /// Fetches, authenticates and checks one chunk of a file whose chunk
    /// ids are under `keys`.
    pub async fn fetch_chunk(
        self: &Arc<Self>,
        id: ChunkId,
        keys: &ChunkKeys,
    ) -> Result<bytes::Bytes, StoreError> {
        if let Some(rec) = self.meta.chunk(&id.0).await? {
            if let Some(at) = rec.packed {
                return self.fetch_packed(id, at, rec.stored, keys).await;
            }
        }
        let name = ObjectName::for_chunk(&self.keys, &id);
        let object = self.backend.get(&name).await?;
        self.open_object(id, name, object, keys.clone()).await
    }

    /// Authenticates and decrypts a fetched `object` of chunk `id`, and
    /// checks that its plaintext hashes to `id` under one of `keys` — the
    /// one check every read (and the scrub) goes through. A failing object
    /// is [`StoreError::Object`].
    async fn open_object<K>(
        self: &Arc<Self>,
        id: ChunkId,
        name: ObjectName,
        object: bytes::Bytes,
        keys: K,
    ) -> Result<bytes::Bytes, StoreError>
    where
        K: AsRef<[ChunkIdKey]> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            store
                .sealer
                .open(ObjectKind::Chunk, &id, &name, object, keys.as_ref())
                .map_err(|source| StoreError::Object {
                    id,
                    name: name.to_string(),
                    source,
                })
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}
