//! Object backends: where sealed objects live.
//!
//! The content store only ever talks to an [`ObjectStore`]: a flat key/value
//! store of immutable objects addressed by [`ObjectName`]. Two kinds exist:
//! a local directory (the embedded default) and an upstream ownCloud account
//! reached over WebDAV. [`open`] builds the one the `[backend]` section
//! ([`config::BackendConfig`]) names. An upstream counts its requests in
//! its own [`metrics::UpstreamMetrics`]. [`cache::CachedStore`] keeps
//! recently used objects on local disk in front of either.

pub mod cache;
pub mod config;
pub mod local;
pub mod metrics;
pub mod webdav;

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use self::config::BackendConfig;
use self::local::LocalDirStore;
use self::webdav::WebDavStore;
use crate::crypto::ObjectName;

/// Errors of an object backend, classified so callers know whether a retry
/// can help and which HTTP status the client should see.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("object {0} not found in the backend")]
    NotFound(String),
    #[error("backend is out of space")]
    InsufficientStorage,
    #[error("backend {backend} is unreachable: {cause}")]
    Unreachable { backend: String, cause: String },
    #[error("backend {backend} failed transiently: {cause}")]
    Transient { backend: String, cause: String },
    #[error("backend {backend} refused the request: {cause}")]
    Permanent { backend: String, cause: String },
    #[error("backend returned a short or corrupt object {name}: {cause}")]
    Corrupt { name: String, cause: String },
    #[error("local backend I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl BackendError {
    /// Whether trying the same request again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable { .. } | Self::Transient { .. })
    }
}

/// One object seen in a listing.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    pub name: ObjectName,
    pub size: u64,
    /// When the object was last written, by the backend's clock; `None`
    /// when the backend does not say (the orphan sweep then never deletes
    /// it).
    pub modified: Option<SystemTime>,
}

/// The largest range [`ObjectStore::get_range`] reads: a pack entry is far
/// smaller, so a larger range is a corrupt record, not a reason to
/// allocate.
pub const MAX_RANGE: usize = 64 << 20;

/// How many fan-out folders `objects/` has: `00` to `ff`, the first two
/// hex digits of the names of the objects inside.
pub const FANOUT_FOLDERS: usize = 256;

/// The name of fan-out folder `n` (`objects/<name>/`).
pub fn fanout_name(n: u8) -> String {
    format!("{n:02x}")
}

/// What a backend says of one stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectStat {
    /// Its size in bytes; `None` when the backend does not tell (an
    /// upstream answering HEAD without `Content-Length`).
    pub size: Option<u64>,
}

/// A store of immutable, idempotently written objects.
#[async_trait]
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores `data` under `name`. Returns only once the object is durable.
    /// Writing the same name twice with the same bytes is harmless.
    async fn put(&self, name: &ObjectName, data: Bytes) -> Result<(), BackendError>;
    /// Reads a whole object.
    async fn get(&self, name: &ObjectName) -> Result<Bytes, BackendError>;
    /// Reads `len` bytes of an object from `offset` (one entry of a pack).
    /// An object too short for the range is [`BackendError::Corrupt`].
    async fn get_range(
        &self,
        name: &ObjectName,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, BackendError>;
    /// Removes an object; removing a missing object is not an error.
    async fn delete(&self, name: &ObjectName) -> Result<(), BackendError>;
    /// Whether an object exists.
    async fn exists(&self, name: &ObjectName) -> Result<bool, BackendError>;
    /// Whether an object exists and, when the backend says, its size
    /// (`None`: missing).
    async fn stat(&self, name: &ObjectName) -> Result<Option<ObjectStat>, BackendError>;
    /// Streams every object with its size, without holding the listing in memory.
    fn list(&self) -> BoxStream<'_, Result<ObjectInfo, BackendError>>;
    /// Streams the objects of fan-out folder `fanout` (`objects/<fanout:02x>/`)
    /// with their sizes and modification times; a missing folder has none.
    /// Entries that are not objects of that folder are left out.
    fn list_fanout(&self, fanout: u8) -> BoxStream<'_, Result<ObjectInfo, BackendError>>;
    /// Streams the sealed metadata objects (`meta/`) with their sizes and
    /// modification times; a missing folder has none.
    fn list_metadata(&self) -> BoxStream<'_, Result<ObjectInfo, BackendError>>;
    /// A short description for logs ("local:/var/lib/..", "webdav:https://..").
    fn describe(&self) -> String;
    /// What this backend counts of its requests for `/metrics`, if it
    /// sends any (an upstream does; a local directory has none to count).
    fn upstream_metrics(&self) -> Option<&metrics::UpstreamMetrics> {
        None
    }
    /// What the local object cache counts, if this store is one.
    fn cache_metrics(&self) -> Option<&metrics::CacheMetrics> {
        None
    }
    /// The store behind a cache, for reads that must see what the backend
    /// itself holds (the scrub, `check --read-data`); `None` when this
    /// store caches nothing.
    fn behind_cache(&self) -> Option<SharedObjectStore> {
        None
    }
}

pub type SharedObjectStore = Arc<dyn ObjectStore>;

/// Opens the backend `config` names; `data_dir` holds a local backend's
/// objects unless it sets its own `path`. A webdav backend sends nothing
/// upstream until the first request.
pub fn open(config: &BackendConfig, data_dir: &Path) -> Result<SharedObjectStore, BackendError> {
    Ok(match config {
        BackendConfig::Local(local) => Arc::new(LocalDirStore::open(&local.objects_dir(data_dir))?),
        BackendConfig::Webdav(upstream) => Arc::new(WebDavStore::new(upstream)?),
    })
}
