//! The content store: turns byte streams into deduplicated, sealed chunk
//! objects and back.
//!
//! Upload path: bytes → [`chunker`] → chunk id (keyed HMAC) → dedup lookup in
//! the index → new chunks sealed (zstd when it shrinks, AES-256-GCM-SIV) and
//! put to the backend, up to `uploads_in_flight` at once, each new object
//! recorded as pending in the index before it is put. Nothing is
//! committed here: [`Upload::finish`] hands back the manifest for the
//! namespace to commit, with the chunks pinned so a collector cannot remove
//! them in between; an upload that never commits leaves its objects to the
//! collector.
//!
//! Read path: [`FileReader`] fetches only the chunks a range needs, checks
//! each object's tag and id, and reads ahead on sequential access.

pub mod chunker;
mod gc;
mod pending;
mod pins;
mod reader;
mod upload;

use std::sync::Arc;

use crate::backend::{BackendError, SharedObjectStore};
use crate::crypto::{ChunkId, CryptoError, Keys, ObjectKind, ObjectName, Sealer};
use crate::index::{Index, IndexError};

pub use chunker::{Cdc, ChunkSizes, Chunker};
pub use gc::GcReport;
pub use pins::{PinGuard, Pins};
pub use reader::FileReader;
pub use upload::{ByteSink, FinishedUpload, Upload};

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
    Pending(String),
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
        }
    }
}

/// The shared content store.
pub struct ContentStore {
    keys: Arc<Keys>,
    sealer: Sealer,
    cdc: Cdc,
    backend: SharedObjectStore,
    index: Arc<Index>,
    pins: Pins,
    pending: pending::PendingLog,
    settings: StoreSettings,
}

impl ContentStore {
    pub fn new(
        keys: Arc<Keys>,
        backend: SharedObjectStore,
        index: Arc<Index>,
        settings: StoreSettings,
    ) -> Arc<Self> {
        let sealer = Sealer::new(keys.clone(), settings.zstd_level, settings.chunk_sizes.max);
        let cdc = Cdc::new(keys.gear.clone(), settings.chunk_sizes);
        Arc::new(Self {
            keys,
            sealer,
            cdc,
            backend,
            index,
            pins: Pins::default(),
            pending: Default::default(),
            settings,
        })
    }

    pub fn backend(&self) -> &SharedObjectStore {
        &self.backend
    }

    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.settings
    }

    /// Starts an upload. `announced` is the expected length, if known.
    pub fn begin_upload(self: &Arc<Self>, announced: Option<u64>) -> Upload {
        Upload::new(self.clone(), announced, None)
    }

    /// Starts an upload whose bytes `sink` also sees, in order (for
    /// whole-file checksums; see [`ByteSink`]).
    pub fn begin_upload_with(self: &Arc<Self>, announced: Option<u64>, sink: ByteSink) -> Upload {
        Upload::new(self.clone(), announced, Some(sink))
    }

    /// Fetches, authenticates and checks one chunk.
    pub async fn fetch_chunk(self: &Arc<Self>, id: ChunkId) -> Result<bytes::Bytes, StoreError> {
        let name = ObjectName::for_chunk(&self.keys, &id);
        let object = self.backend.get(&name).await?;
        let store = self.clone();
        let plain = tokio::task::spawn_blocking(move || {
            store
                .sealer
                .open(ObjectKind::Chunk, &id, &name, object)
                .map_err(|source| StoreError::Object {
                    id,
                    name: name.to_string(),
                    source,
                })
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        Ok(plain)
    }
}
