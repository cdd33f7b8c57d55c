//! The local object cache: recently read or written objects kept on the
//! gateway's disk in front of the backend, so reading them again costs no
//! upstream request. [`CachedStore`] is a decorator over any
//! [`ObjectStore`]; `app.rs` puts it in front of the backend when
//! `[cache] dir` is set.
//!
//! Why it is safe:
//! - Objects are immutable and sealed: an object's name always means the
//!   same bytes, so an entry never goes stale, and the content store above
//!   authenticates every object it opens, so even a wrong entry can never
//!   reach a client. The cache holds only what the upstream holds: sealed
//!   bytes, never plaintext.
//! - The upstream stays the truth. `put` writes through (the inner store
//!   first, the entry only once that succeeded); `delete` drops the entry;
//!   `stat`, `exists` and the listings go to the inner store. The scrub and
//!   `check --read-data` read past the cache ([`ObjectStore::behind_cache`]):
//!   they judge what the backend holds, and a pass over every object would
//!   otherwise flush the cache.
//! - Every entry carries BLAKE3 hashes of its bytes, one per 64 KiB block
//!   (after the object in its file, then the object's length), and every
//!   read checks the blocks it reads. A damaged entry is dropped with a
//!   warning and the read goes to the inner store, which refills it: the
//!   cache heals itself. A cache I/O error never fails a request; it is
//!   logged and the inner store answers.
//! - An entry is written to `tmp/` and renamed into place, so an entry
//!   under `objects/` is always whole. It is not fsynced: after a power
//!   loss a renamed file may hold less than was written, which its hash
//!   catches on the first read; an fsync per entry would make every read
//!   miss wait for the disk.
//!
//! Only objects under `objects/` (chunks and packs) are cached; sealed
//! metadata (`meta/`) is written once and read only by a restore.
//!
//! Sizes and recency are kept in memory (one small record per entry; an
//! entry is a chunk or a pack, so a 1 GiB cache holds some thousands) and
//! rebuilt at start by scanning the directory, oldest file first: the
//! recency of reads before a restart is not kept, only the order of
//! writes. The least recently used entries are evicted to keep the files
//! under `max_bytes`; an object larger than a quarter of `max_bytes` is not
//! cached, so one object never flushes most of the cache.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

use super::metrics::{CacheMetrics, Lookup};
use super::{
    fanout_name, BackendError, ObjectInfo, ObjectStat, ObjectStore, SharedObjectStore, MAX_RANGE,
};
use crate::crypto::{ObjectName, Place};

/// Where the cache keeps its entries and how much it may hold.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// The cache's directory (`objects/ab/<name>` entries, `tmp/`).
    pub dir: PathBuf,
    /// The most bytes its entries may take on disk.
    pub max_bytes: u64,
}

/// Errors of the cache's own disk.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("object cache {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object cache entry {0} is damaged (its hash does not match its bytes)")]
    Damaged(String),
    #[error("object cache task failed: {0}")]
    Task(String),
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// An entry is checked in blocks of this many bytes: one BLAKE3 hash per
/// block. Measured (the optimized test profile, 2-core machine): a 3 KB read of an
/// 8 MiB pack from an entry with one hash over the whole object took
/// 2.0 ms (reading and hashing all 8 MiB; BLAKE3 alone 1.3 ms), against
/// 42 µs for the same read of the local backend's file. With a hash per
/// block a read touches one or two blocks whatever the object's size: the
/// same read takes 48 µs (the local backend's file: 70 µs). A whole 1 MiB
/// chunk takes 0.36 ms (0.06 ms unchecked), far below one upstream round
/// trip. The hashes cost 32 bytes per block (0.05 %).
const BLOCK: usize = 64 << 10;

/// One block's hash.
const HASH: usize = 32;

/// The object's length, after the hashes.
const LENGTH: usize = 8;

/// The bytes an entry of an object of `len` bytes takes on disk.
fn entry_len(len: usize) -> usize {
    len + len.div_ceil(BLOCK) * HASH + LENGTH
}

/// The hash of block `n` of an entry: its number is in it, so a block
/// moved to another place does not pass.
fn block_hash(n: usize, block: &[u8]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&(n as u64).to_le_bytes());
    hasher.update(block);
    hasher.finalize()
}

/// How many deletes are remembered for fills that started before them
/// (see [`Index::deleted_since`]); beyond it the record is cleared and
/// every fill older than the clearing is skipped.
const DELETES_REMEMBERED: usize = 4096;

struct Entry {
    /// The entry file's length (object + trailer).
    bytes: u64,
    /// Its place in `recency`.
    tick: u64,
}

/// Sizes and recency of the entries, and the deletes a fill must not undo.
#[derive(Default)]
struct Index {
    entries: HashMap<String, Entry>,
    /// Entry names by last use, oldest first.
    recency: BTreeMap<u64, String>,
    next_tick: u64,
    /// The entries' bytes together.
    bytes: u64,
    /// Deletes since start.
    deletes: u64,
    /// Recently deleted names, with `deletes` right after each.
    deleted: HashMap<String, u64>,
    /// `deletes` when `deleted` was last cleared.
    forgotten: u64,
}

impl Index {
    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// Marks `name` as just used; whether it has an entry.
    fn touch(&mut self, name: &str) -> bool {
        let tick = self.tick();
        let Some(entry) = self.entries.get_mut(name) else {
            return false;
        };
        if let Some(owned) = self.recency.remove(&entry.tick) {
            self.recency.insert(tick, owned);
        }
        entry.tick = tick;
        true
    }

    fn insert(&mut self, name: &str, bytes: u64) {
        self.remove(name);
        let tick = self.tick();
        self.recency.insert(tick, name.to_string());
        self.entries.insert(name.to_string(), Entry { bytes, tick });
        self.bytes += bytes;
    }

    fn remove(&mut self, name: &str) -> bool {
        let Some(entry) = self.entries.remove(name) else {
            return false;
        };
        self.recency.remove(&entry.tick);
        self.bytes -= entry.bytes;
        true
    }

    /// Drops the least recently used entries until at most `max` bytes
    /// are held; answers their names, whose files the caller removes.
    fn evict(&mut self, max: u64) -> Vec<String> {
        let mut victims = Vec::new();
        while self.bytes > max {
            let Some((_, name)) = self.recency.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&name) {
                self.bytes -= entry.bytes;
            }
            victims.push(name);
        }
        victims
    }

    /// Notes that `name` was deleted from the inner store.
    fn note_delete(&mut self, name: &str) {
        self.deletes += 1;
        if self.deleted.len() >= DELETES_REMEMBERED {
            self.deleted.clear();
            self.forgotten = self.deletes;
        }
        self.deleted.insert(name.to_string(), self.deletes);
    }

    /// Whether `name` may have been deleted since a fill started at
    /// `mark` (`deletes` then): its bytes are then not cached, or a read
    /// that raced the delete would keep an entry of an object that is gone.
    fn deleted_since(&self, name: &str, mark: u64) -> bool {
        mark < self.forgotten || self.deleted.get(name).is_some_and(|at| *at > mark)
    }
}

/// What the cache had of an object.
enum Cached {
    Hit(Bytes),
    /// No entry.
    Miss,
    /// An entry that was damaged or unreadable, now dropped.
    Dropped,
}

/// An [`ObjectStore`] that keeps recently read or written objects on local
/// disk in front of `inner` (see the module's header).
pub struct CachedStore {
    inner: SharedObjectStore,
    dir: PathBuf,
    max_bytes: u64,
    /// Objects larger than this are not cached.
    largest: u64,
    index: Mutex<Index>,
    metrics: CacheMetrics,
}

impl CachedStore {
    /// Opens the cache in `settings.dir` (created if missing) over
    /// `inner`: removes what an interrupted write left in `tmp/`, indexes
    /// the entries found, and evicts down to `max_bytes`.
    pub fn open(inner: SharedObjectStore, settings: &CacheSettings) -> Result<Self, CacheError> {
        let dir = settings.dir.clone();
        let objects = dir.join("objects");
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&objects).map_err(io_at(&objects))?;
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io_at(&tmp))?;
        }
        std::fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
        let mut found = scan(&objects)?;
        found.sort();
        let mut index = Index::default();
        for (_, bytes, name) in found {
            index.insert(&name, bytes);
        }
        let mut store = Self {
            inner,
            max_bytes: settings.max_bytes,
            largest: settings.max_bytes / 4,
            dir,
            index: Mutex::new(Index::default()),
            metrics: CacheMetrics::default(),
        };
        for name in index.evict(store.max_bytes) {
            let path = store.entry_path(&name);
            std::fs::remove_file(&path).map_err(io_at(&path))?;
        }
        store.metrics.stored_bytes.set(gauge(index.bytes));
        tracing::info!(
            dir = %store.dir.display(),
            entries = index.entries.len(),
            bytes = index.bytes,
            max_bytes = store.max_bytes,
            "object cache opened"
        );
        store.index = Mutex::new(index);
        Ok(store)
    }

    /// The cache's series, for `/metrics`.
    pub fn metrics(&self) -> &CacheMetrics {
        &self.metrics
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        // The index is consistent after every statement that changes it
        // under the lock, so a panic elsewhere leaves it usable.
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn entry_path(&self, name: &str) -> PathBuf {
        let fanout = name.get(0..2).unwrap_or("__");
        self.dir.join("objects").join(fanout).join(name)
    }

    /// The number of deletes so far: a fill starting now passes it to
    /// [`Self::fill`].
    fn mark(&self) -> u64 {
        self.index().deletes
    }

    /// Bytes `range` (all when `None`) of the object `name` from its
    /// entry, if there is a sound one. A damaged or unreadable entry is
    /// dropped.
    async fn cached(&self, name: &ObjectName, range: Option<(u64, u64)>) -> Cached {
        if name.place() != Place::Objects {
            return Cached::Miss;
        }
        if !self.index().touch(name.as_str()) {
            self.metrics.lookup(Lookup::Miss);
            return Cached::Miss;
        }
        let path = self.entry_path(name.as_str());
        let read = tokio::task::spawn_blocking(move || read_entry(&path, range)).await;
        let failure = match read {
            Ok(Ok(EntryRead::Bytes(bytes))) => {
                self.metrics.lookup(Lookup::Hit);
                return Cached::Hit(bytes);
            }
            // The inner store says how the range is wrong.
            Ok(Ok(EntryRead::Beyond)) => return Cached::Miss,
            // Evicted (or removed by hand) since the index was asked.
            Ok(Ok(EntryRead::Missing)) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(CacheError::Task(e.to_string())),
        };
        match &failure {
            Some(e @ CacheError::Damaged(_)) => {
                tracing::warn!(object = %name, error = %e, "dropping a damaged cache entry; reading the object from the backend");
                self.metrics.lookup(Lookup::Damaged);
            }
            Some(e) => {
                tracing::warn!(object = %name, error = %e, "cannot read a cache entry; reading the object from the backend");
                self.metrics.lookup(Lookup::Miss);
            }
            None => self.metrics.lookup(Lookup::Miss),
        }
        self.drop_entry(name.as_str()).await;
        Cached::Dropped
    }

    /// Reads the whole object `name` from the inner store and keeps it.
    async fn fetch(&self, name: &ObjectName) -> Result<Bytes, BackendError> {
        let mark = self.mark();
        let bytes = self.inner.get(name).await?;
        self.fill(name, &bytes, mark).await;
        Ok(bytes)
    }

    /// Keeps `data`, the object `name` as the inner store has it, in an
    /// entry; `mark` is [`Self::mark`] from before the inner store was
    /// asked. Failures are logged: the read or write they follow stands.
    async fn fill(&self, name: &ObjectName, data: &Bytes, mark: u64) {
        let bytes = entry_len(data.len()) as u64;
        if name.place() != Place::Objects || bytes > self.largest {
            return;
        }
        if self.index().deleted_since(name.as_str(), mark) {
            return;
        }
        let path = self.entry_path(name.as_str());
        let tmp = self.dir.join("tmp").join(format!(
            "{}.{}",
            name.as_str(),
            uuid::Uuid::new_v4().simple()
        ));
        let data = data.clone();
        let target = path.clone();
        let written = tokio::task::spawn_blocking(move || write_entry(&tmp, &target, &data)).await;
        let failure = match written {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(CacheError::Task(e.to_string())),
        };
        if let Some(e) = failure {
            tracing::warn!(object = %name, error = %e, "cannot write a cache entry");
            return;
        }
        let (victims, raced) = {
            let mut index = self.index();
            let raced = index.deleted_since(name.as_str(), mark);
            if !raced {
                index.insert(name.as_str(), bytes);
            }
            let victims = index.evict(self.max_bytes);
            self.metrics.stored_bytes.set(gauge(index.bytes));
            (victims, raced)
        };
        let mut paths: Vec<PathBuf> = victims.iter().map(|v| self.entry_path(v)).collect();
        if raced {
            paths.push(path);
        }
        remove_files(paths).await;
    }

    /// Drops the entry of `name`, if any, and its file.
    async fn drop_entry(&self, name: &str) {
        {
            let mut index = self.index();
            index.remove(name);
            self.metrics.stored_bytes.set(gauge(index.bytes));
        }
        remove_files(vec![self.entry_path(name)]).await;
    }
}

fn gauge(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// The entries under `objects`: (modified, file length, name).
fn scan(objects: &Path) -> Result<Vec<(std::time::SystemTime, u64, String)>, CacheError> {
    let mut found = Vec::new();
    for n in 0..=255u8 {
        let folder = objects.join(fanout_name(n));
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_at(&folder)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_at(&folder))?;
            let Some(name) = entry.file_name().to_str().and_then(ObjectName::parse) else {
                continue;
            };
            if name.fanout() != fanout_name(n) {
                continue;
            }
            let meta = entry.metadata().map_err(io_at(&entry.path()))?;
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            found.push((modified, meta.len(), name.as_str().to_string()));
        }
    }
    Ok(found)
}

/// What a read of an entry found.
enum EntryRead {
    /// No entry file.
    Missing,
    /// The bytes asked for, checked.
    Bytes(Bytes),
    /// The range asked for lies beyond the object.
    Beyond,
}

/// Reads and checks bytes `range` (all when `None`) of the entry at
/// `path`: only the blocks holding them are read and hashed.
fn read_entry(path: &Path, range: Option<(u64, u64)>) -> Result<EntryRead, CacheError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(EntryRead::Missing),
        Err(e) => return Err(io_at(path)(e)),
    };
    let damaged = || CacheError::Damaged(path.display().to_string());
    let file_len = file.metadata().map_err(io_at(path))?.len();
    let mut read_at = |at: u64, buf: &mut [u8]| -> Result<(), CacheError> {
        file.seek(SeekFrom::Start(at))
            .and_then(|_| file.read_exact(buf))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => damaged(),
                _ => io_at(path)(e),
            })
    };
    let Some(length_at) = file_len.checked_sub(LENGTH as u64) else {
        return Err(damaged());
    };
    let mut length = [0u8; LENGTH];
    read_at(length_at, &mut length)?;
    let len = usize::try_from(u64::from_le_bytes(length)).map_err(|_| damaged())?;
    if len > length_at as usize || entry_len(len) as u64 != file_len {
        return Err(damaged());
    }
    let (offset, end) = match range {
        None => (0, len),
        Some((offset, count)) => {
            let end = offset.checked_add(count).filter(|end| *end <= len as u64);
            match end {
                Some(end) => (offset as usize, end as usize),
                None => return Ok(EntryRead::Beyond),
            }
        }
    };
    if offset == end {
        return Ok(EntryRead::Bytes(Bytes::new()));
    }
    let (first, last) = (offset / BLOCK, end.div_ceil(BLOCK));
    let from = first * BLOCK;
    let to = (last * BLOCK).min(len);
    let mut data = vec![0u8; to - from];
    read_at(from as u64, &mut data)?;
    let mut hashes = vec![0u8; (last - first) * HASH];
    read_at((len + first * HASH) as u64, &mut hashes)?;
    for (i, block) in data.chunks(BLOCK).enumerate() {
        let want = &hashes[i * HASH..(i + 1) * HASH];
        if block_hash(first + i, block).as_bytes()[..] != *want {
            return Err(damaged());
        }
    }
    Ok(EntryRead::Bytes(
        Bytes::from(data).slice(offset - from..end - from),
    ))
}

/// Writes `data`, its block hashes and its length to `tmp`, then renames
/// it to `path`.
fn write_entry(tmp: &Path, path: &Path, data: &[u8]) -> Result<(), CacheError> {
    let write = || -> std::io::Result<()> {
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)?;
        }
        let mut file = std::fs::File::create(tmp)?;
        file.write_all(data)?;
        let mut trailer = Vec::with_capacity(entry_len(data.len()) - data.len());
        for (n, block) in data.chunks(BLOCK).enumerate() {
            trailer.extend_from_slice(block_hash(n, block).as_bytes());
        }
        trailer.extend_from_slice(&(data.len() as u64).to_le_bytes());
        file.write_all(&trailer)?;
        drop(file);
        std::fs::rename(tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        io_at(path)(e)
    })
}

/// Removes entry files, logging what cannot be removed.
async fn remove_files(paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    let removed = tokio::task::spawn_blocking(move || {
        for path in paths {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a cache entry")
                }
            }
        }
    })
    .await;
    if let Err(e) = removed {
        tracing::warn!(error = %e, "cannot remove cache entries");
    }
}

#[async_trait]
impl ObjectStore for CachedStore {
    async fn put(&self, name: &ObjectName, data: Bytes) -> Result<(), BackendError> {
        let mark = self.mark();
        self.inner.put(name, data.clone()).await?;
        self.fill(name, &data, mark).await;
        Ok(())
    }

    async fn get(&self, name: &ObjectName) -> Result<Bytes, BackendError> {
        match self.cached(name, None).await {
            Cached::Hit(bytes) => Ok(bytes),
            Cached::Miss | Cached::Dropped => self.fetch(name).await,
        }
    }

    /// A miss reads only the range and caches nothing (a damaged entry is
    /// refetched whole, below). Fetching the whole
    /// object instead was considered: a pack is 8 MiB by default
    /// (`uploads.pack_size`) and a small file's entry a few KiB, so the
    /// read a client waits for would carry up to 2,000 times the bytes it
    /// asked for (at 100 Mbit/s, ~0.7 s instead of one round trip), and
    /// that pays only if many more entries of the same pack are read
    /// before it is evicted. Packs this gateway writes are cached as they
    /// are written, and a pack read whole (pack GC) is cached too, so the
    /// small files written through the gateway are served locally anyway.
    async fn get_range(
        &self,
        name: &ObjectName,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, BackendError> {
        if len > MAX_RANGE as u64 {
            return self.inner.get_range(name, offset, len).await;
        }
        match self.cached(name, Some((offset, len))).await {
            Cached::Hit(bytes) => Ok(bytes),
            Cached::Miss => self.inner.get_range(name, offset, len).await,
            // The object was worth keeping whole before its entry was
            // damaged: it is fetched whole again, so the cache heals.
            Cached::Dropped => {
                let whole = self.fetch(name).await?;
                let range = offset
                    .checked_add(len)
                    .filter(|end| *end <= whole.len() as u64)
                    .and_then(|end| {
                        Some(usize::try_from(offset).ok()?..usize::try_from(end).ok()?)
                    });
                match range {
                    Some(range) => Ok(whole.slice(range)),
                    None => self.inner.get_range(name, offset, len).await,
                }
            }
        }
    }

    async fn delete(&self, name: &ObjectName) -> Result<(), BackendError> {
        let deleted = self.inner.delete(name).await;
        if name.place() == Place::Objects {
            self.index().note_delete(name.as_str());
            self.drop_entry(name.as_str()).await;
        }
        deleted
    }

    async fn exists(&self, name: &ObjectName) -> Result<bool, BackendError> {
        self.inner.exists(name).await
    }

    async fn stat(&self, name: &ObjectName) -> Result<Option<ObjectStat>, BackendError> {
        self.inner.stat(name).await
    }

    fn list(&self) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        self.inner.list()
    }

    fn list_fanout(&self, fanout: u8) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        self.inner.list_fanout(fanout)
    }

    fn list_metadata(&self) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        self.inner.list_metadata()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn upstream_metrics(&self) -> Option<&super::metrics::UpstreamMetrics> {
        self.inner.upstream_metrics()
    }

    fn cache_metrics(&self) -> Option<&CacheMetrics> {
        Some(&self.metrics)
    }

    fn behind_cache(&self) -> Option<SharedObjectStore> {
        Some(self.inner.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::local::LocalDirStore;
    use crate::crypto::{ChunkId, MasterKey};

    struct Fixture {
        dir: tempfile::TempDir,
        inner: Arc<LocalDirStore>,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let inner = Arc::new(LocalDirStore::open(&dir.path().join("inner")).unwrap());
            Self { dir, inner }
        }

        fn cache(&self, max_bytes: u64) -> CachedStore {
            let settings = CacheSettings {
                dir: self.dir.path().join("cache"),
                max_bytes,
            };
            CachedStore::open(self.inner.clone(), &settings).unwrap()
        }

        fn entry(&self, name: &ObjectName) -> PathBuf {
            self.dir.path().join("cache").join(name.relative_path())
        }

        fn entry_files(&self) -> usize {
            let objects = self.dir.path().join("cache/objects");
            std::fs::read_dir(objects)
                .unwrap()
                .map(|d| std::fs::read_dir(d.unwrap().path()).unwrap().count())
                .sum()
        }
    }

    fn name(i: u8) -> ObjectName {
        let keys = MasterKey::from_bytes([5; 32]).derive();
        ObjectName::for_chunk(&keys, &ChunkId([i; 32]))
    }

    fn object(i: u8, len: usize) -> Bytes {
        Bytes::from(
            (0..len)
                .map(|n| (n as u8).wrapping_mul(31) ^ i)
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn a_written_object_is_read_from_the_cache_and_a_missed_one_is_kept() {
        let f = Fixture::new();
        let cache = f.cache(1 << 20);
        let written = object(1, 5000);
        cache.put(&name(1), written.clone()).await.unwrap();
        assert!(f.inner.exists(&name(1)).await.unwrap(), "written through");
        // Gone from the inner store: only the cache can answer now.
        f.inner.delete(&name(1)).await.unwrap();
        assert_eq!(cache.get(&name(1)).await.unwrap(), written);
        let range = cache.get_range(&name(1), 100, 50).await.unwrap();
        assert_eq!(range, written.slice(100..150));
        assert_eq!(cache.metrics().lookups(Lookup::Hit), 2);

        // Written past the cache: a miss, read from the inner store, kept.
        let other = object(2, 3000);
        f.inner.put(&name(2), other.clone()).await.unwrap();
        assert_eq!(cache.get(&name(2)).await.unwrap(), other);
        assert_eq!(cache.metrics().lookups(Lookup::Miss), 1);
        f.inner.delete(&name(2)).await.unwrap();
        assert_eq!(cache.get(&name(2)).await.unwrap(), other);
        assert_eq!(cache.metrics().lookups(Lookup::Hit), 3);

        // A ranged miss reads the range and caches nothing.
        let third = object(3, 4000);
        f.inner.put(&name(3), third.clone()).await.unwrap();
        let range = cache.get_range(&name(3), 10, 20).await.unwrap();
        assert_eq!(range, third.slice(10..30));
        assert!(!f.entry(&name(3)).exists());
        // Whatever the inner store says of existence stands.
        assert!(!cache.exists(&name(1)).await.unwrap());
        assert_eq!(cache.stat(&name(1)).await.unwrap(), None);
        let held = cache.metrics().stored_bytes.get();
        assert_eq!(held, (entry_len(5000) + entry_len(3000)) as i64);
    }

    #[tokio::test]
    async fn delete_drops_the_entry() {
        let f = Fixture::new();
        let cache = f.cache(1 << 20);
        cache.put(&name(1), object(1, 100)).await.unwrap();
        assert!(f.entry(&name(1)).exists());
        cache.delete(&name(1)).await.unwrap();
        assert!(!f.entry(&name(1)).exists());
        assert!(matches!(
            cache.get(&name(1)).await,
            Err(BackendError::NotFound(_))
        ));
        assert_eq!(cache.metrics().stored_bytes.get(), 0);
    }

    #[tokio::test]
    async fn the_least_recently_used_entries_are_evicted_to_stay_under_the_bound() {
        let f = Fixture::new();
        let entry = entry_len(1000) as u64;
        let cache = f.cache(10 * entry);
        for i in 0..20u8 {
            cache.put(&name(i), object(i, 1000)).await.unwrap();
            if i >= 1 {
                // Object 0 is read after every write: always the newest.
                cache.get(&name(0)).await.unwrap();
            }
        }
        assert_eq!(cache.metrics().stored_bytes.get(), 10 * entry as i64);
        assert_eq!(f.entry_files(), 10, "evicted entries' files are removed");
        assert!(f.entry(&name(0)).exists(), "the one read all along stays");
        for i in 1..=10u8 {
            assert!(!f.entry(&name(i)).exists(), "{i} was used least recently");
        }
        for i in 11..20u8 {
            assert!(f.entry(&name(i)).exists(), "{i} is recent");
        }
        // An object over a quarter of the bound is not cached at all.
        cache.put(&name(30), object(30, 3000)).await.unwrap();
        assert!(!f.entry(&name(30)).exists());
        assert!(f.entry(&name(0)).exists());
    }

    #[tokio::test]
    async fn a_flipped_bit_in_an_entry_is_detected_and_the_object_refetched() {
        let f = Fixture::new();
        let cache = f.cache(1 << 20);
        let written = object(7, 4096);
        cache.put(&name(7), written.clone()).await.unwrap();
        let path = f.entry(&name(7));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[1234] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(cache.get(&name(7)).await.unwrap(), written);
        assert_eq!(cache.metrics().lookups(Lookup::Damaged), 1);
        // Refilled from the inner store: sound again, and a hit.
        let refilled = std::fs::read(&path).unwrap();
        assert_eq!(&refilled[..4096], &written[..]);
        assert_eq!(cache.get(&name(7)).await.unwrap(), written);
        assert_eq!(cache.metrics().lookups(Lookup::Hit), 1);

        // A cut entry, in a ranged read.
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 40)
            .unwrap();
        let range = cache.get_range(&name(7), 4000, 96).await.unwrap();
        assert_eq!(range, written.slice(4000..4096));
        assert_eq!(cache.metrics().lookups(Lookup::Damaged), 2);
        // Refetched whole: the next ranged read is a hit.
        assert_eq!(
            cache.get_range(&name(7), 0, 10).await.unwrap(),
            written.slice(0..10)
        );
        assert_eq!(cache.metrics().lookups(Lookup::Hit), 2);
    }

    #[tokio::test]
    async fn a_ranged_read_checks_only_the_blocks_it_reads() {
        let f = Fixture::new();
        let cache = f.cache(16 << 20);
        let len = 3 * BLOCK + 1000;
        let written = object(4, len);
        cache.put(&name(4), written.clone()).await.unwrap();
        assert_eq!(
            std::fs::metadata(f.entry(&name(4))).unwrap().len(),
            entry_len(len) as u64
        );
        for (offset, count) in [
            (0, 10),
            (BLOCK - 5, 10),
            (BLOCK, BLOCK),
            (len - 7, 7),
            (len, 0),
        ] {
            let got = cache
                .get_range(&name(4), offset as u64, count as u64)
                .await
                .unwrap();
            assert_eq!(
                got,
                written.slice(offset..offset + count),
                "{offset}+{count}"
            );
        }
        assert_eq!(cache.metrics().lookups(Lookup::Hit), 5);
        // Past the end: the inner store answers, as without a cache.
        let beyond = cache.get_range(&name(4), len as u64 - 2, 5).await;
        assert!(
            matches!(beyond, Err(BackendError::Corrupt { .. })),
            "{beyond:?}"
        );

        // Damage in block 2 passes unseen by reads of other blocks...
        let path = f.entry(&name(4));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[2 * BLOCK + 99] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let got = cache.get_range(&name(4), 100, 50).await.unwrap();
        assert_eq!(got, written.slice(100..150));
        assert_eq!(cache.metrics().lookups(Lookup::Damaged), 0);
        // ...and is caught by the first read of it, which refetches.
        let at = 2 * BLOCK as u64 + 90;
        let got = cache.get_range(&name(4), at, 20).await.unwrap();
        assert_eq!(got, written.slice(2 * BLOCK + 90..2 * BLOCK + 110));
        assert_eq!(cache.metrics().lookups(Lookup::Damaged), 1);
        assert_eq!(
            std::fs::read(&path).unwrap()[2 * BLOCK + 99],
            written[2 * BLOCK + 99]
        );
    }

    #[tokio::test]
    async fn an_unreadable_entry_falls_back_to_the_inner_store() {
        let f = Fixture::new();
        let cache = f.cache(1 << 20);
        let written = object(8, 2000);
        cache.put(&name(8), written.clone()).await.unwrap();
        let path = f.entry(&name(8));
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert_eq!(cache.get(&name(8)).await.unwrap(), written);
        // The fill could not rename over the folder: logged, not an error.
        assert_eq!(cache.get(&name(8)).await.unwrap(), written);
        assert_eq!(cache.metrics().lookups(Lookup::Hit), 0);
    }

    #[tokio::test]
    async fn a_restart_rebuilds_the_index_from_the_directory() {
        let f = Fixture::new();
        let entry = entry_len(1000) as u64;
        {
            let cache = f.cache(100 * entry);
            for i in 0..6u8 {
                cache.put(&name(i), object(i, 1000)).await.unwrap();
                // Distinct modification times, oldest first.
                let when = std::time::SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_secs(1_000_000 + u64::from(i));
                std::fs::File::options()
                    .write(true)
                    .open(f.entry(&name(i)))
                    .unwrap()
                    .set_modified(when)
                    .unwrap();
            }
        }
        // A half-written entry left by a crash is cleared.
        std::fs::write(f.dir.path().join("cache/tmp/leftover"), b"half").unwrap();
        // Reopened with room for four: the two oldest go.
        let cache = f.cache(4 * entry);
        assert_eq!(cache.metrics().stored_bytes.get(), 4 * entry as i64);
        assert_eq!(f.entry_files(), 4);
        assert!(!f.dir.path().join("cache/tmp/leftover").exists());
        for i in 0..6u8 {
            f.inner.delete(&name(i)).await.unwrap();
        }
        for i in 2..6u8 {
            assert_eq!(cache.get(&name(i)).await.unwrap(), object(i, 1000));
        }
        assert_eq!(cache.metrics().lookups(Lookup::Hit), 4);
        assert!(
            cache.get(&name(0)).await.is_err(),
            "evicted, and gone upstream"
        );
    }

    #[tokio::test]
    async fn a_fill_that_races_a_delete_is_not_kept() {
        let f = Fixture::new();
        let cache = f.cache(1 << 20);
        f.inner.put(&name(9), object(9, 500)).await.unwrap();
        // A read took its mark, then the object was deleted.
        let mark = cache.mark();
        cache.delete(&name(9)).await.unwrap();
        cache.fill(&name(9), &object(9, 500), mark).await;
        assert!(!f.entry(&name(9)).exists());
        // A read after the delete fills as usual.
        let mark = cache.mark();
        cache.fill(&name(9), &object(9, 500), mark).await;
        assert!(f.entry(&name(9)).exists());
    }
}
