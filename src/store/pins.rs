//! Pins: chunks an upload in progress relies on. A collector must not delete
//! a pinned chunk, and an upload pins a chunk *before* it looks it up, so a
//! chunk found in the index stays stored until the upload has committed its
//! reference (invariant 3).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::crypto::ChunkId;

#[derive(Default, Clone)]
pub struct Pins {
    inner: Arc<Mutex<HashMap<ChunkId, u32>>>,
}

impl Pins {
    /// Pins `id` and, under the same lock, runs `check` (the index lookup).
    /// A collector holds the lock while it decides, so the two cannot interleave.
    pub fn pin_then<R>(&self, id: ChunkId, check: impl FnOnce() -> R) -> R {
        let mut map = self.inner.lock();
        *map.entry(id).or_insert(0) += 1;
        check()
    }

    fn unpin(&self, ids: &[ChunkId]) {
        let mut map = self.inner.lock();
        for id in ids {
            if let Some(n) = map.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    map.remove(id);
                }
            }
        }
    }

    /// Runs `f` with the pin set locked (for a collector's decision).
    pub fn with_locked<R>(&self, f: impl FnOnce(&dyn Fn(&ChunkId) -> bool) -> R) -> R {
        let map = self.inner.lock();
        f(&|id| map.contains_key(id))
    }

    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Releases its pins when dropped.
pub struct PinGuard {
    pins: Pins,
    ids: Vec<ChunkId>,
}

impl PinGuard {
    pub fn new(pins: Pins) -> Self {
        Self {
            pins,
            ids: Vec::new(),
        }
    }

    pub fn add(&mut self, id: ChunkId) {
        self.ids.push(id);
    }
}

impl Drop for PinGuard {
    fn drop(&mut self) {
        self.pins.unpin(&self.ids);
    }
}
