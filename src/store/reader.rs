//! Reading a file back: only the chunks a range touches are fetched, each is
//! authenticated and checked against its id, and a sequential reader gets
//! the next chunks fetched ahead while it streams the current one.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::{ChunkKeys, ContentStore, StoreError};
use crate::index::ManifestEntry;

pub struct FileReader {
    store: Arc<ContentStore>,
    /// The keys the owner's chunk ids may be under.
    keys: ChunkKeys,
    chunks: Vec<ManifestEntry>,
    /// Start offset of each chunk.
    starts: Vec<u64>,
    size: u64,
    pos: u64,
    current: Option<(usize, Bytes)>,
    ahead: VecDeque<(usize, JoinHandle<Result<Bytes, StoreError>>)>,
    last_loaded: Option<usize>,
}

impl FileReader {
    /// A reader of `owner`'s file made of `chunks`.
    pub fn new(store: Arc<ContentStore>, owner: u64, chunks: Vec<ManifestEntry>) -> Self {
        let mut starts = Vec::with_capacity(chunks.len());
        let mut off = 0u64;
        for c in &chunks {
            starts.push(off);
            off += c.len as u64;
        }
        Self {
            keys: store.chunk_keys(owner),
            store,
            chunks,
            starts,
            size: off,
            pos: 0,
            current: None,
            ahead: VecDeque::new(),
            last_loaded: None,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Moves the read position (beyond the end reads nothing).
    pub fn seek(&mut self, pos: u64) {
        self.pos = pos;
    }

    /// Reads up to `max` bytes at the position. Returns an empty buffer only
    /// at the end of the file; a chunk that cannot be fetched or fails its
    /// checks is an error, never short or wrong data.
    pub async fn read(&mut self, max: usize) -> Result<Bytes, StoreError> {
        if self.pos >= self.size || max == 0 {
            return Ok(Bytes::new());
        }
        let idx = self.starts.partition_point(|&s| s <= self.pos) - 1;
        let data = match &self.current {
            Some((i, d)) if *i == idx => d.clone(),
            _ => self.load(idx).await?,
        };
        let off = (self.pos - self.starts[idx]) as usize;
        let end = (off + max).min(data.len());
        let out = data.slice(off..end);
        self.pos += out.len() as u64;
        Ok(out)
    }

    async fn load(&mut self, idx: usize) -> Result<Bytes, StoreError> {
        let sequential = self.last_loaded.map_or(self.pos == 0, |l| l + 1 == idx);
        while let Some((i, _)) = self.ahead.front() {
            if *i >= idx {
                break;
            }
            if let Some((_, t)) = self.ahead.pop_front() {
                t.abort();
            }
        }
        let data = match self.ahead.front() {
            Some((i, _)) if *i == idx => match self.ahead.pop_front() {
                Some((_, t)) => t.await.map_err(|e| StoreError::Task(e.to_string()))??,
                None => self.fetch(idx).await?,
            },
            _ => {
                self.clear_ahead();
                self.fetch(idx).await?
            }
        };
        let want = self.chunks[idx].len as usize;
        if data.len() != want {
            return Err(StoreError::Task(format!(
                "chunk {idx} has {} bytes, the manifest says {want}",
                data.len()
            )));
        }
        self.current = Some((idx, data.clone()));
        self.last_loaded = Some(idx);
        if sequential {
            self.schedule_ahead(idx);
        }
        Ok(data)
    }

    fn schedule_ahead(&mut self, idx: usize) {
        let want = self.store.settings.read_ahead;
        let mut next = self.ahead.back().map_or(idx + 1, |(i, _)| i + 1);
        while self.ahead.len() < want && next < self.chunks.len() {
            let (store, keys) = (self.store.clone(), self.keys.clone());
            let id = self.chunks[next].id;
            self.ahead.push_back((
                next,
                tokio::spawn(async move { store.fetch_chunk(id, &keys).await }),
            ));
            next += 1;
        }
    }

    fn clear_ahead(&mut self) {
        for (_, t) in self.ahead.drain(..) {
            t.abort();
        }
    }

    async fn fetch(&self, idx: usize) -> Result<Bytes, StoreError> {
        self.store
            .fetch_chunk(self.chunks[idx].id, &self.keys)
            .await
    }
}

impl Drop for FileReader {
    fn drop(&mut self) {
        self.clear_ahead();
    }
}
