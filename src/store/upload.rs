//! The upload pipeline: chunk, identify, deduplicate, seal and store, with a
//! bounded number of chunks in flight (back-pressure on the client's body).
//!
//! Memory: an upload takes its floor of the transfer budget before its
//! chunker buffers a byte (room for one chunk in the chunker and one in
//! flight); every further chunk in flight needs free room in the budget, and
//! without it the upload waits for its own oldest chunk instead.
//!
//! Every chunk is counted in the store's metrics as a dedup hit (the index
//! knew it) or a miss (sealed and stored), with its plaintext length.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::budget::{chunk_cost, BufferPermit};
use super::metrics::Dedup;
use super::packs::UploadCount;
use super::pending::PendingGuard;
use super::{ContentStore, PinGuard, StoreError};
use crate::crypto::{ChunkId, ChunkIdKey, ObjectKind, ObjectName, HEADER_LEN};
use crate::meta::ManifestEntry;

/// What became of one chunk.
struct ChunkOutcome {
    id: ChunkId,
    len: u32,
    /// Object size, when this upload stored the chunk.
    stored: Option<u32>,
}

/// A function fed every byte of an upload, in order.
type Update = Box<dyn FnMut(&[u8]) + Send + Sync>;

/// Sees every byte of an upload, in order (whole-file checksums).
pub struct ByteSink {
    update: Update,
    costly: bool,
}

impl ByteSink {
    /// A sink; a `costly` one (e.g. SHA1) runs on a thread of its own beside
    /// chunking and sealing when the upload is large.
    pub fn new(costly: bool, update: impl FnMut(&[u8]) + Send + Sync + 'static) -> Self {
        Self {
            update: Box::new(update),
            costly,
        }
    }
}

/// Uploads up to this size feed their sink inline: handing the bytes to a
/// thread would cost more than hashing them.
const INLINE_SINK_MAX: u64 = 1 << 20;

/// Where the bytes of an upload go besides the chunker.
enum Digester {
    None,
    Inline(Update),
    /// A blocking thread fed with the chunks in order.
    Thread {
        feed: tokio::sync::mpsc::Sender<Bytes>,
        task: JoinHandle<()>,
    },
}

impl Digester {
    fn start(sink: Option<ByteSink>, announced: Option<u64>) -> Self {
        let Some(ByteSink { mut update, costly }) = sink else {
            return Self::None;
        };
        if !costly || announced.is_some_and(|n| n <= INLINE_SINK_MAX) {
            return Self::Inline(update);
        }
        let (feed, mut rx) = tokio::sync::mpsc::channel::<Bytes>(2);
        let task = tokio::task::spawn_blocking(move || {
            while let Some(b) = rx.blocking_recv() {
                update(&b);
            }
        });
        Self::Thread { feed, task }
    }

    async fn feed(&mut self, chunk: &Bytes) -> Result<(), StoreError> {
        match self {
            Self::None => Ok(()),
            Self::Inline(update) => {
                update(chunk);
                Ok(())
            }
            Self::Thread { feed, .. } => feed
                .send(chunk.clone())
                .await
                .map_err(|_| StoreError::Task("a digest thread stopped".into())),
        }
    }

    async fn finish(self) -> Result<(), StoreError> {
        if let Self::Thread { feed, task } = self {
            drop(feed);
            task.await.map_err(|e| StoreError::Task(e.to_string()))?;
        }
        Ok(())
    }
}

/// An upload in progress. Dropping it abandons the upload: nothing is
/// committed; chunks in flight still finish (so no put lands after the
/// collector looked), then the objects it stored are marked abandoned and
/// the collector deletes them after the grace period.
pub struct Upload {
    store: Arc<ContentStore>,
    /// The key this upload's chunk ids are computed under (its dedup scope).
    id_key: ChunkIdKey,
    announced: Option<u64>,
    chunker: super::Chunker,
    digester: Digester,
    size: u64,
    manifest: Vec<ManifestEntry>,
    uploaded: Vec<(ChunkId, u32)>,
    in_flight: VecDeque<InFlight>,
    pins: Arc<Mutex<PinGuard>>,
    pending: Arc<Mutex<PendingGuard>>,
    /// This upload's floor of the transfer budget, once it has input.
    floor: Option<BufferPermit>,
    /// Counts this upload as one that may still add to the open pack.
    _counted: UploadCount,
}

/// A chunk being stored. Its buffers are counted either by the upload's
/// floor or by a permit of their own that the task holds until it ends.
struct InFlight {
    task: JoinHandle<Result<ChunkOutcome, StoreError>>,
    on_floor: bool,
}

/// A fully stored upload, ready to be recorded in the metadata. Its chunks
/// stay pinned (the collector cannot delete them) for as long as it lives,
/// and what it stored can only be had through [`Self::record_with`], which
/// consumes it: so the pins always outlive the metadata operation that
/// references the chunks (invariant 3), by construction. Dropped without
/// being recorded, its new objects are marked abandoned for the collector.
pub struct FinishedUpload {
    size: u64,
    manifest: Vec<ManifestEntry>,
    uploaded: Vec<(ChunkId, u32)>,
    pins: Arc<Mutex<PinGuard>>,
    pending: Arc<Mutex<PendingGuard>>,
}

/// What a stored upload brings to the metadata.
#[derive(Debug)]
pub struct StoredContent {
    /// Logical bytes.
    pub size: u64,
    /// The chunks, in order.
    pub manifest: Vec<ManifestEntry>,
    /// Chunks this upload stored in the backend, with their object sizes.
    pub uploaded: Vec<(ChunkId, u32)>,
}

impl FinishedUpload {
    /// Logical bytes stored.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Runs `record`, the metadata operation that references this upload's
    /// chunks (a file commit, a session part), with what was stored. The
    /// pins are released only once it has answered; if it succeeded it
    /// settled the objects' pending records, otherwise they are marked
    /// abandoned for the collector.
    pub async fn record_with<T, E, F, Fut>(self, record: F) -> Result<T, E>
    where
        F: FnOnce(StoredContent) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let Self {
            size,
            manifest,
            uploaded,
            pins,
            pending,
        } = self;
        let content = StoredContent {
            size,
            manifest,
            uploaded,
        };
        let recorded = record(content).await;
        if recorded.is_ok() {
            pending.lock().settled();
        }
        drop(pins);
        recorded
    }
}

impl Upload {
    pub(super) fn new(
        store: Arc<ContentStore>,
        id_key: ChunkIdKey,
        announced: Option<u64>,
        sink: Option<ByteSink>,
    ) -> Self {
        let chunker = super::Chunker::new(store.cdc.clone());
        let counted = store.packer.count_upload();
        let pins = Arc::new(Mutex::new(PinGuard::new(store.pins.clone())));
        let pending = Arc::new(Mutex::new(PendingGuard::new(store.meta.clone())));
        Self {
            store,
            id_key,
            announced,
            chunker,
            digester: Digester::start(sink, announced),
            size: 0,
            manifest: Vec::new(),
            uploaded: Vec::new(),
            in_flight: VecDeque::new(),
            pins,
            pending,
            floor: None,
            _counted: counted,
        }
    }

    /// Bytes received so far.
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Feeds bytes in; waits while too many chunks are in flight.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.size += data.len() as u64;
        if let Some(a) = self.announced {
            if self.size > a {
                return Err(StoreError::TooLong { announced: a });
            }
        }
        if self.floor.is_none() {
            self.floor = Some(self.store.budget.floor(self.floor_bytes()).await);
        }
        for chunk in self.chunker.push(data) {
            self.submit(chunk).await?;
        }
        Ok(())
    }

    /// Ends the input, waits for every chunk to be stored, and returns the
    /// manifest. Fails if fewer bytes arrived than announced.
    pub async fn finish(mut self) -> Result<FinishedUpload, StoreError> {
        if let Some(a) = self.announced {
            if self.size != a {
                return Err(StoreError::TooShort {
                    got: self.size,
                    announced: a,
                });
            }
        }
        for chunk in self.chunker.finish() {
            self.submit(chunk).await?;
        }
        while !self.in_flight.is_empty() {
            self.complete_oldest().await?;
        }
        std::mem::replace(&mut self.digester, Digester::None)
            .finish()
            .await?;
        Ok(FinishedUpload {
            size: self.size,
            manifest: std::mem::take(&mut self.manifest),
            uploaded: std::mem::take(&mut self.uploaded),
            pins: self.pins.clone(),
            pending: self.pending.clone(),
        })
    }

    /// The floor: room for the chunk the chunker fills and one chunk in
    /// flight, no larger than the announced length needs.
    fn floor_bytes(&self) -> u64 {
        let max = self.store.settings.chunk_sizes.max;
        let chunk = self
            .announced
            .map_or(max, |a| usize::try_from(a).unwrap_or(max).min(max));
        chunk as u64 + chunk_cost(chunk)
    }

    async fn submit(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        let room = self.room_for(chunk.len()).await?;
        self.digester.feed(&chunk).await?;
        let store = self.store.clone();
        let (pins, pending) = (self.pins.clone(), self.pending.clone());
        let on_floor = room.is_none();
        let key = self.id_key.clone();
        let task = tokio::spawn(async move {
            let _buffers = room;
            store_chunk(store, pins, pending, key, chunk).await
        });
        self.in_flight.push_back(InFlight { task, on_floor });
        Ok(())
    }

    /// Room for one more chunk in flight: the floor when no chunk in flight
    /// uses it, else free room in the budget; without either, waits for the
    /// oldest chunk (when none is in flight the floor is free, so this ends).
    async fn room_for(&mut self, len: usize) -> Result<Option<BufferPermit>, StoreError> {
        loop {
            if self.in_flight.len() < self.store.settings.uploads_in_flight.max(1) {
                if !self.in_flight.iter().any(|f| f.on_floor) {
                    return Ok(None);
                }
                if let Some(extra) = self.store.budget.try_extra(chunk_cost(len)) {
                    return Ok(Some(extra));
                }
            }
            self.complete_oldest().await?;
        }
    }

    async fn complete_oldest(&mut self) -> Result<(), StoreError> {
        let Some(InFlight { task, .. }) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let outcome = task.await.map_err(|e| StoreError::Task(e.to_string()))??;
        self.manifest.push(ManifestEntry {
            id: outcome.id,
            len: outcome.len,
        });
        if let Some(stored) = outcome.stored {
            self.uploaded.push((outcome.id, stored));
        }
        Ok(())
    }
}

/// What sealing adds to a chunk at most: the object header and the AEAD
/// tag (a payload is compressed only when that makes it smaller).
const OBJECT_OVERHEAD: u32 = (HEADER_LEN + 16) as u32;

/// Chunks up to this size are hashed and sealed on the request's own task:
/// handing them to the blocking pool would cost more than the work.
const INLINE_CHUNK_MAX: usize = 64 << 10;

/// Runs CPU work on the blocking pool, or inline when it is small.
async fn cpu<R: Send + 'static>(
    inline: bool,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, StoreError> {
    if inline {
        Ok(f())
    } else {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| StoreError::Task(e.to_string()))
    }
}

/// Identifies one chunk, and seals and stores it unless the index knows it.
/// A new chunk's pending record is durable before its object is put.
async fn store_chunk(
    store: Arc<ContentStore>,
    pins: Arc<Mutex<PinGuard>>,
    pending: Arc<Mutex<PendingGuard>>,
    id_key: ChunkIdKey,
    chunk: Bytes,
) -> Result<ChunkOutcome, StoreError> {
    let len = chunk.len() as u32;
    let inline = chunk.len() <= INLINE_CHUNK_MAX;
    let data = chunk.clone();
    let id = cpu(inline, move || ChunkId::under(&id_key, &data)).await?;
    if store.pin_and_check(id, &pins).await? {
        store.metrics.chunk(Dedup::Hit, u64::from(len));
        return Ok(ChunkOutcome {
            id,
            len,
            stored: None,
        });
    }
    if store.packs_chunk(chunk.len()) {
        store.store_packed(id, chunk).await?;
        store.metrics.chunk(Dedup::Miss, u64::from(len));
        return Ok(ChunkOutcome {
            id,
            len,
            stored: None,
        });
    }
    let name = ObjectName::for_chunk(&store.keys, &id);
    let (cpu_store, object_name) = (store.clone(), name.clone());
    let seal = cpu(inline, move || {
        cpu_store
            .sealer
            .seal(ObjectKind::Chunk, &id, &object_name, &chunk)
    });
    // The pending record is made durable while the chunk is sealed, so the
    // wait for the disk overlaps the compression and encryption. Until the
    // put, its size is a bound (sealing adds at most the object overhead).
    pending.lock().add(id);
    let (recorded, sealed) = tokio::join!(store.record_pending(id, len + OBJECT_OVERHEAD), seal);
    recorded?;
    let sealed = sealed??;
    let n = sealed.len() as u32;
    store.backend.put(&name, Bytes::from(sealed)).await?;
    store.metrics.chunk(Dedup::Miss, u64::from(len));
    pending.lock().stored(id, n);
    Ok(ChunkOutcome {
        id,
        len,
        stored: Some(n),
    })
}

impl ContentStore {
    /// Pins `id` for this upload and tells whether the index already holds
    /// the chunk. While the collector is deleting the chunk's object, waits
    /// until it is gone (the chunk is then stored anew).
    async fn pin_and_check(
        &self,
        id: ChunkId,
        pins: &Arc<Mutex<PinGuard>>,
    ) -> Result<bool, StoreError> {
        loop {
            if self.pins.pin(id) {
                pins.lock().add(id);
                return Ok(self.meta.chunk_known(&id.0).await?);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
