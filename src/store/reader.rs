//! Reading a file back: only the chunks a range touches are fetched, each is
//! authenticated and checked against its id, and a sequential reader gets
//! the next chunks fetched ahead while it streams the current one.
//!
//! Memory: a reader takes its floor of the transfer budget before its first
//! fetch (room for the chunk it streams and the one it fetches); a chunk is
//! fetched ahead only while the budget has free room for it.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::budget::{chunk_cost, BufferPermit};
use super::{ChunkKeys, ContentStore, StoreError};
use crate::meta::ManifestEntry;

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
    /// Room of the current chunk when it was fetched ahead (otherwise the
    /// floor covers it).
    current_room: Option<BufferPermit>,
    ahead: VecDeque<Ahead>,
    last_loaded: Option<usize>,
    /// This reader's floor of the transfer budget, from its first fetch.
    floor: Option<BufferPermit>,
}

/// A chunk fetched ahead, with the room its buffers take.
struct Ahead {
    idx: usize,
    task: JoinHandle<Result<Bytes, StoreError>>,
    room: BufferPermit,
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
            current_room: None,
            ahead: VecDeque::new(),
            last_loaded: None,
            floor: None,
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
        if self.floor.is_none() {
            // Nothing of the budget is held yet, so waiting here is safe.
            self.floor = Some(self.store.budget.floor(self.floor_bytes()).await);
        }
        while self.ahead.front().is_some_and(|a| a.idx < idx) {
            if let Some(a) = self.ahead.pop_front() {
                a.task.abort();
            }
        }
        let (data, room) = match self.ahead.pop_front() {
            Some(a) if a.idx == idx => {
                let data = a
                    .task
                    .await
                    .map_err(|e| StoreError::Task(e.to_string()))??;
                (data, Some(a.room))
            }
            other => {
                if let Some(a) = other {
                    a.task.abort();
                }
                self.clear_ahead();
                (self.fetch(idx).await?, None)
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
        self.current_room = room;
        self.last_loaded = Some(idx);
        if sequential {
            self.schedule_ahead(idx);
        }
        Ok(data)
    }

    /// The floor: room for the chunk being streamed and the one being
    /// fetched (its object and plain bytes), sized by the file's largest.
    fn floor_bytes(&self) -> u64 {
        let largest = self.chunks.iter().map(|c| c.len as usize).max();
        largest.map_or(0, |l| l as u64 + chunk_cost(l))
    }

    /// Fetches up to `read_ahead` chunks after `idx`, as far as the budget
    /// has free room.
    fn schedule_ahead(&mut self, idx: usize) {
        let want = self.store.settings.read_ahead;
        let mut next = self.ahead.back().map_or(idx + 1, |a| a.idx + 1);
        while self.ahead.len() < want && next < self.chunks.len() {
            let entry = self.chunks[next];
            let Some(room) = self.store.budget.try_extra(chunk_cost(entry.len as usize)) else {
                break;
            };
            let (store, keys) = (self.store.clone(), self.keys.clone());
            self.ahead.push_back(Ahead {
                idx: next,
                task: tokio::spawn(async move { store.fetch_chunk(entry.id, &keys).await }),
                room,
            });
            next += 1;
        }
    }

    fn clear_ahead(&mut self) {
        for a in self.ahead.drain(..) {
            a.task.abort();
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
