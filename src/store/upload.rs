//! The upload pipeline: chunk, identify, deduplicate, seal and store, with a
//! bounded number of chunks in flight (back-pressure on the client's body).

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::{ContentStore, PinGuard, StoreError};
use crate::crypto::{ChunkId, ObjectKind, ObjectName};
use crate::index::ManifestEntry;
use crate::namespace::FileCommit;

/// What became of one chunk.
struct ChunkOutcome {
    id: ChunkId,
    len: u32,
    /// Object size, when this upload stored the chunk.
    stored: Option<u32>,
}

/// Sees every byte of an upload, in order (whole-file checksums). Runs on the
/// upload's digest thread, beside chunking and sealing.
pub type ByteSink = Box<dyn FnMut(&[u8]) + Send>;

/// Whole-file digests, computed on blocking threads fed with the chunks in
/// order, so they do not add to the chunker's time: SHA-256 on one, the
/// sink (ownCloud checksums) on another.
struct Digester {
    feeds: Vec<tokio::sync::mpsc::Sender<Bytes>>,
    sha256: JoinHandle<[u8; 32]>,
    sink: Option<JoinHandle<()>>,
}

/// A thread that feeds every chunk sent to it, in order, to `state`, and
/// returns `finish(state)` once the sender is dropped.
fn digest_thread<S: Send + 'static, R: Send + 'static>(
    mut state: S,
    update: fn(&mut S, &[u8]),
    finish: fn(S) -> R,
) -> (tokio::sync::mpsc::Sender<Bytes>, JoinHandle<R>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    let task = tokio::task::spawn_blocking(move || {
        while let Some(b) = rx.blocking_recv() {
            update(&mut state, &b);
        }
        finish(state)
    });
    (tx, task)
}

impl Digester {
    fn start(sink: Option<ByteSink>) -> Self {
        let (sha_tx, sha256) =
            digest_thread(Sha256::new(), |s, d| s.update(d), |s| s.finalize().into());
        let mut feeds = vec![sha_tx];
        let sink = sink.map(|sink| {
            let (tx, task) = digest_thread(sink, |s, d| s(d), |_| ());
            feeds.push(tx);
            task
        });
        Self {
            feeds,
            sha256,
            sink,
        }
    }

    async fn feed(&self, chunk: Bytes) -> Result<(), StoreError> {
        for f in &self.feeds {
            f.send(chunk.clone())
                .await
                .map_err(|_| StoreError::Task("a digest thread stopped".into()))?;
        }
        Ok(())
    }

    async fn finish(self) -> Result<[u8; 32], StoreError> {
        drop(self.feeds);
        if let Some(t) = self.sink {
            t.await.map_err(|e| StoreError::Task(e.to_string()))?;
        }
        self.sha256
            .await
            .map_err(|e| StoreError::Task(e.to_string()))
    }
}

/// An upload in progress. Dropping it abandons the upload: nothing is
/// committed, and objects it already stored are left for the orphan sweep.
pub struct Upload {
    store: Arc<ContentStore>,
    announced: Option<u64>,
    chunker: super::Chunker,
    digester: Option<Digester>,
    size: u64,
    manifest: Vec<ManifestEntry>,
    uploaded: Vec<(ChunkId, u32)>,
    in_flight: VecDeque<JoinHandle<Result<ChunkOutcome, StoreError>>>,
    pins: Arc<Mutex<PinGuard>>,
}

/// A fully stored upload, ready to commit. Its chunks stay pinned until it
/// is dropped, so drop it only after the commit.
pub struct FinishedUpload {
    pub size: u64,
    pub sha256: [u8; 32],
    pub manifest: Vec<ManifestEntry>,
    pub uploaded: Vec<(ChunkId, u32)>,
    _pins: Arc<Mutex<PinGuard>>,
}

impl FinishedUpload {
    /// The namespace commit for this upload.
    pub fn to_commit(&self, mtime: Option<i64>, checksums: Option<String>) -> FileCommit {
        FileCommit {
            size: self.size,
            sha256: self.sha256,
            chunks: self.manifest.clone(),
            uploaded: self.uploaded.clone(),
            mtime,
            checksums,
        }
    }
}

impl Upload {
    pub(super) fn new(
        store: Arc<ContentStore>,
        announced: Option<u64>,
        sink: Option<ByteSink>,
    ) -> Self {
        let chunker = super::Chunker::new(store.cdc.clone());
        let pins = Arc::new(Mutex::new(PinGuard::new(store.pins.clone())));
        Self {
            store,
            announced,
            chunker,
            digester: Some(Digester::start(sink)),
            size: 0,
            manifest: Vec::new(),
            uploaded: Vec::new(),
            in_flight: VecDeque::new(),
            pins,
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
        let digester = self
            .digester
            .take()
            .ok_or_else(|| StoreError::Task("upload finished twice".into()))?;
        let sha256 = digester.finish().await?;
        Ok(FinishedUpload {
            size: self.size,
            sha256,
            manifest: std::mem::take(&mut self.manifest),
            uploaded: std::mem::take(&mut self.uploaded),
            _pins: self.pins.clone(),
        })
    }

    async fn submit(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        while self.in_flight.len() >= self.store.settings.uploads_in_flight.max(1) {
            self.complete_oldest().await?;
        }
        if let Some(d) = &self.digester {
            d.feed(chunk.clone()).await?;
        }
        let store = self.store.clone();
        let pins = self.pins.clone();
        self.in_flight
            .push_back(tokio::spawn(store_chunk(store, pins, chunk)));
        Ok(())
    }

    async fn complete_oldest(&mut self) -> Result<(), StoreError> {
        let Some(task) = self.in_flight.pop_front() else {
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

impl Drop for Upload {
    fn drop(&mut self) {
        for t in &self.in_flight {
            t.abort();
        }
    }
}

/// Identifies one chunk, and seals and stores it unless the index knows it.
async fn store_chunk(
    store: Arc<ContentStore>,
    pins: Arc<Mutex<PinGuard>>,
    chunk: Bytes,
) -> Result<ChunkOutcome, StoreError> {
    let len = chunk.len() as u32;
    let cpu_store = store.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        let id = ChunkId::of(&cpu_store.keys, &chunk);
        let known = loop {
            let found = cpu_store.pins.pin_then(id, || {
                pins.lock().add(id);
                cpu_store.index.chunk_known(&id.0)
            });
            match found {
                Some(known) => break known?,
                // The collector is deleting this chunk's object right now:
                // wait until it is gone, then store it anew.
                None => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        };
        if known {
            return Ok::<_, StoreError>((id, None));
        }
        let name = ObjectName::for_chunk(&cpu_store.keys, &id);
        let sealed = cpu_store
            .sealer
            .seal(ObjectKind::Chunk, &id, &name, &chunk)?;
        Ok((id, Some((name, sealed))))
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))??;
    let (id, sealed) = prepared;
    let stored = match sealed {
        None => None,
        Some((name, sealed)) => {
            let n = sealed.len() as u32;
            store.backend.put(&name, Bytes::from(sealed)).await?;
            Some(n)
        }
    };
    Ok(ChunkOutcome { id, len, stored })
}
