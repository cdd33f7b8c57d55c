//! Packs: small chunks of every upload go into one shared open pack, which
//! is written upstream as one object and acknowledged to all its writers at
//! once — group commit, the way a database shares one fsync.
//!
//! Why: a small file is one small chunk, and one upstream object per chunk
//! cost an upstream PUT (plus a HEAD) per file and left one row per chunk
//! in ownCloud's file cache. A pack holds many (`crypto/pack.rs` has the
//! format); reads of a packed chunk are one ranged GET.
//!
//! The flush protocol (strict mode: a write is acknowledged only once its
//! bytes are upstream):
//! 1. A pack opens at its first entry with a random id; its pending record
//!    is written at once (durably, while the pack fills and is put), so a
//!    pack put but never recorded is collected like any abandoned object
//!    (or, if the crash came before that record was durable, by the orphan
//!    sweep).
//! 2. Each entry is sealed for this pack (its name is in the entry's
//!    associated data) and appended; its writer then waits for the pack.
//! 3. The pack is flushed when it reaches `pack_size`, when every upload
//!    in progress is waiting on it (nobody else can add: no reason to
//!    wait), or `pack_delay` after it opened.
//! 4. Flush: the pack is put upstream, then one metadata transaction
//!    records it (its new chunks become known, located in it, and its
//!    pending record goes), and only then are its writers answered. A
//!    failure answers every writer with the error; nothing was recorded.
//!
//! No acknowledged write can be lost: a writer is answered after its pack
//! is durable upstream and recorded, and its file's commit (which
//! references the chunk) comes after that answer, under the upload's pins.
//!
//! Memory: the open pack holds at most `pack_size` plus one entry; every
//! entry's writer still holds its transfer-budget room until answered, so
//! packs in flight are bounded by the budget like single objects are.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::pending::now_secs;
use super::{ChunkKeys, ContentStore, PinGuard, StoreError};
use crate::backend::BackendError;
use crate::crypto::{ChunkId, ChunkIdKey, ObjectName, PackBuilder, PackId};
use crate::meta::PackedAt;

/// How packs are cut.
#[derive(Debug, Clone, Copy)]
pub struct PackSettings {
    /// Chunks shorter than this go into packs (0: none do).
    pub below: usize,
    /// A pack is flushed once it is this large.
    pub size: usize,
    /// The longest a pack stays open for more writers.
    pub delay: Duration,
}

impl Default for PackSettings {
    fn default() -> Self {
        Self {
            below: 512 << 10,
            size: 8 << 20,
            delay: Duration::from_millis(5),
        }
    }
}

/// What every writer of one pack learns when it was flushed.
type Outcome = Option<Result<(), Arc<StoreError>>>;

/// The pack being filled.
struct OpenPack {
    builder: PackBuilder,
    /// Chunks already in it (a chunk two uploads bring at once goes in once).
    ids: HashSet<ChunkId>,
    /// Entries whose writers wait for this pack.
    waiters: usize,
    done: watch::Sender<Outcome>,
    /// The pack's pending record, being written.
    pending: JoinHandle<Result<(), StoreError>>,
    /// The pack's id, pinned until the pack is recorded (or has failed):
    /// the collector never takes a pending record whose id is pinned, so
    /// it cannot delete a pack on its way up (see [`pin_pack`]).
    pin: PinGuard,
}

/// The shared open pack and who might still add to it.
#[derive(Default)]
pub(super) struct Packer {
    open: Mutex<Option<OpenPack>>,
    /// Uploads in progress (see [`UploadCount`]).
    uploads: Arc<AtomicUsize>,
}

/// Counts one upload in progress for as long as it lives: a pack every
/// upload in progress waits on is flushed at once.
pub(super) struct UploadCount(Arc<AtomicUsize>);

impl Drop for UploadCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Packer {
    pub(super) fn count_upload(&self) -> UploadCount {
        self.uploads.fetch_add(1, Ordering::AcqRel);
        UploadCount(self.uploads.clone())
    }
}

/// What the writer of one entry holds: the pack it went into, to wait on.
enum Added {
    /// Appended; wait for the pack's outcome.
    Waiting(watch::Receiver<Outcome>),
    /// The open pack changed between sealing and appending: seal again.
    Stale,
}

impl ContentStore {
    /// Whether a chunk of `len` bytes goes into a pack.
    pub(super) fn packs_chunk(&self, len: usize) -> bool {
        len < self.settings.packs.below
    }

    /// Seals chunk `id` into the open pack and waits until that pack is
    /// upstream and recorded (its chunk record then exists, located in it).
    pub(super) async fn store_packed(
        self: &Arc<Self>,
        id: ChunkId,
        chunk: Bytes,
    ) -> Result<(), StoreError> {
        loop {
            let (pack, name) = self.open_pack();
            let sealed = if chunk.len() <= INLINE_SEAL_MAX {
                self.sealer.seal_packed(&id, &name, &chunk)?
            } else {
                let store = self.clone();
                let plain = chunk.clone();
                tokio::task::spawn_blocking(move || store.sealer.seal_packed(&id, &name, &plain))
                    .await
                    .map_err(|e| StoreError::Task(e.to_string()))??
            };
            match self.add_to_pack(pack, id, &sealed) {
                Added::Stale => continue,
                Added::Waiting(mut done) => return wait_for(&mut done).await,
            }
        }
    }

    /// The open pack's id and name, opening one (and starting its pending
    /// record) if none is open.
    fn open_pack(self: &Arc<Self>) -> (PackId, ObjectName) {
        let mut open = self.packer.open.lock();
        if let Some(p) = open.as_ref() {
            return (p.builder.pack(), p.builder.name().clone());
        }
        let pack: PackId = rand::random();
        let pin = pin_pack(&self.pins, pack);
        let name = ObjectName::for_pack(&self.keys, &pack);
        let bound = (self.settings.packs.size + self.settings.packs.below) as u32;
        let meta = self.meta.clone();
        let pending = tokio::spawn(async move {
            meta.add_pending(&[(pack, bound)], now_secs()).await?;
            Ok(())
        });
        let (done, _) = watch::channel(None);
        *open = Some(OpenPack {
            builder: PackBuilder::new(&self.sealer, pack, name.clone()),
            ids: HashSet::new(),
            waiters: 0,
            done,
            pending,
            pin,
        });
        let store = self.clone();
        let delay = self.settings.packs.delay;
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            store.flush_if_open(pack);
        });
        (pack, name)
    }

    /// Appends a sealed entry to pack `pack` if it is still the open one,
    /// and flushes it when it is full or nobody else can add to it.
    fn add_to_pack(self: &Arc<Self>, pack: PackId, id: ChunkId, sealed: &[u8]) -> Added {
        let mut open = self.packer.open.lock();
        let Some(p) = open.as_mut().filter(|p| p.builder.pack() == pack) else {
            return Added::Stale;
        };
        if p.ids.insert(id) {
            p.builder.push(id, sealed);
        }
        p.waiters += 1;
        let done = p.done.subscribe();
        let full = p.builder.len() >= self.settings.packs.size;
        let everyone = p.waiters >= self.packer.uploads.load(Ordering::Acquire);
        if full || everyone {
            if let Some(p) = open.take() {
                self.spawn_flush(p);
            }
        }
        Added::Waiting(done)
    }

    /// Flushes pack `pack` if it is still open (its delay ran out).
    fn flush_if_open(self: &Arc<Self>, pack: PackId) {
        let mut open = self.packer.open.lock();
        if open.as_ref().is_some_and(|p| p.builder.pack() == pack) {
            if let Some(p) = open.take() {
                self.spawn_flush(p);
            }
        }
    }

    fn spawn_flush(self: &Arc<Self>, pack: OpenPack) {
        let store = self.clone();
        tokio::spawn(async move {
            let OpenPack {
                builder,
                done,
                pending,
                pin,
                ..
            } = pack;
            let id = builder.pack();
            let outcome = store.flush(builder, pending).await;
            if let Err(e) = &outcome {
                tracing::warn!(error = %e, "could not store a pack; its writers get the error");
                let meta = store.meta.clone();
                // A partial put may have landed: let the collector take it.
                let _ = meta.abandon_pending(&[(id, None)], now_secs()).await;
            }
            done.send_replace(Some(outcome.map_err(Arc::new)));
            drop(pin);
        });
    }

    /// Puts a pack upstream and records it. The put does not wait for the
    /// pack's pending record (a lone writer's pack is flushed at once, and
    /// the two round trips would add up); the record waits for both. A
    /// crash in between leaves an object that no record names, younger
    /// than the sweep's grace period: the orphan sweep deletes it later.
    async fn flush(
        self: &Arc<Self>,
        builder: PackBuilder,
        pending: JoinHandle<Result<(), StoreError>>,
    ) -> Result<(), StoreError> {
        let (pack, name) = (builder.pack(), builder.name().clone());
        let (bytes, entries) = builder.finish(&self.sealer)?;
        let size = bytes.len() as u32;
        let pending = async { pending.await.map_err(|e| StoreError::Task(e.to_string()))? };
        let (pending, put) = tokio::join!(pending, self.backend.put(&name, Bytes::from(bytes)));
        pending?;
        put?;
        self.meta
            .record_pack(&pack, size, &entries, now_secs())
            .await?;
        self.metrics.pack(entries.len() as u64, u64::from(size));
        Ok(())
    }

    /// Fetches, authenticates and checks chunk `id` at `at` in a pack
    /// (`stored` bytes). If the pack is gone — the repacker moved the chunk
    /// since its record was read — the record is read again and followed.
    pub(super) async fn fetch_packed(
        self: &Arc<Self>,
        id: ChunkId,
        mut at: PackedAt,
        mut stored: u32,
        keys: &ChunkKeys,
    ) -> Result<Bytes, StoreError> {
        for _ in 0..3 {
            let name = ObjectName::for_pack(&self.keys, &at.pack);
            match self
                .backend
                .get_range(&name, u64::from(at.offset), u64::from(stored))
                .await
            {
                Ok(entry) => return self.open_packed(id, name, entry, keys.clone()).await,
                Err(BackendError::NotFound(what)) => {
                    let moved = self.meta.chunk(&id.0).await?;
                    match moved.and_then(|r| r.packed.map(|p| (p, r.stored))) {
                        Some((p, len)) if p != at => (at, stored) = (p, len),
                        _ => return Err(BackendError::NotFound(what).into()),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(BackendError::NotFound(format!("chunk {id:?}: its pack moved too often")).into())
    }

    /// Opens one pack entry on the blocking pool (see `open_object`).
    pub(super) async fn open_packed<K>(
        self: &Arc<Self>,
        id: ChunkId,
        pack: ObjectName,
        entry: Bytes,
        keys: K,
    ) -> Result<Bytes, StoreError>
    where
        K: AsRef<[ChunkIdKey]> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            store
                .sealer
                .open_packed(&id, &pack, entry, keys.as_ref())
                .map_err(|source| StoreError::Object {
                    id,
                    name: pack.to_string(),
                    source,
                })
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// Pins the id of a new pack (random, so no collector or sweep can be
/// deleting it). A pack's pending record is written before or while it
/// is put and dropped when it is recorded; with the id pinned meanwhile,
/// the collector (which claims only unpinned ids) and the orphan sweep
/// (which skips the names of pinned ids) leave the pack alone however
/// short their grace period.
pub(super) fn pin_pack(pins: &super::Pins, pack: PackId) -> PinGuard {
    let mut guard = PinGuard::new(pins.clone());
    if pins.pin(ChunkId(pack)) {
        guard.add(ChunkId(pack));
    }
    guard
}

/// Entries up to this size are sealed on the writer's own task: handing
/// them to the blocking pool would cost more than the work (as for single
/// objects, `store/upload.rs`).
const INLINE_SEAL_MAX: usize = 64 << 10;

/// Waits for a pack's outcome.
async fn wait_for(done: &mut watch::Receiver<Outcome>) -> Result<(), StoreError> {
    let outcome = done
        .wait_for(Option::is_some)
        .await
        .map_err(|_| StoreError::Task("a pack's flush stopped".into()))?
        .clone();
    match outcome {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(StoreError::Pack(e)),
        None => Err(StoreError::Task("a pack ended without an outcome".into())),
    }
}
