//! Pins: chunks an upload in progress relies on, and chunks the collector is
//! deleting. An upload pins a chunk *before* it looks it up, and the
//! collector decides under the same lock, skipping pinned chunks; a chunk
//! the collector is deleting cannot be pinned until its object is gone, so
//! an upload never relies on, nor re-uploads into, an object being deleted.
//! Together with the commit's re-check this keeps invariant 3: no manifest
//! references a chunk that is not stored.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::crypto::ChunkId;

#[derive(Default)]
struct PinState {
    pins: HashMap<ChunkId, u32>,
    deleting: HashSet<ChunkId>,
}

#[derive(Default, Clone)]
pub struct Pins {
    inner: Arc<Mutex<PinState>>,
}

impl Pins {
    /// Pins `id` and, under the same lock, runs `check` (the index lookup).
    /// Returns `None` (nothing pinned) while the collector is deleting the
    /// chunk's object: the caller waits and tries again.
    pub fn pin_then<R>(&self, id: ChunkId, check: impl FnOnce() -> R) -> Option<R> {
        let mut state = self.inner.lock();
        if state.deleting.contains(&id) {
            return None;
        }
        *state.pins.entry(id).or_insert(0) += 1;
        Some(check())
    }

    fn unpin(&self, ids: &[ChunkId]) {
        let mut state = self.inner.lock();
        for id in ids {
            if let Some(n) = state.pins.get_mut(id) {
                *n -= 1;
                if *n == 0 {
                    state.pins.remove(id);
                }
            }
        }
    }

    /// For the collector: under the lock, keeps the unpinned `candidates`,
    /// marks them as being deleted, and runs `forget` on them (the index
    /// transaction that drops their records); returns what `forget` kept.
    pub fn claim_for_deletion<R>(
        &self,
        candidates: Vec<ChunkId>,
        forget: impl FnOnce(&[ChunkId]) -> R,
    ) -> (Vec<ChunkId>, R) {
        let mut state = self.inner.lock();
        let claimed: Vec<ChunkId> = candidates
            .into_iter()
            .filter(|id| !state.pins.contains_key(id) && !state.deleting.contains(id))
            .collect();
        state.deleting.extend(claimed.iter().copied());
        let r = forget(&claimed);
        (claimed, r)
    }

    /// For the collector: the objects of `ids` are gone; uploads may store
    /// them anew.
    pub fn release_deleted(&self, ids: &[ChunkId]) {
        let mut state = self.inner.lock();
        for id in ids {
            state.deleting.remove(id);
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().pins.len()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_chunks_are_not_claimed_and_claimed_ones_cannot_be_pinned() {
        let pins = Pins::default();
        let (a, b) = (ChunkId([1; 32]), ChunkId([2; 32]));
        let mut guard = PinGuard::new(pins.clone());
        assert_eq!(pins.pin_then(a, || 7), Some(7));
        guard.add(a);
        let (claimed, seen) = pins.claim_for_deletion(vec![a, b], |ids| ids.to_vec());
        assert_eq!(claimed, vec![b]);
        assert_eq!(seen, vec![b]);
        assert_eq!(pins.pin_then(b, || ()), None, "being deleted");
        pins.release_deleted(&[b]);
        assert_eq!(pins.pin_then(b, || ()), Some(()));
        drop(guard);
        let (claimed, _) = pins.claim_for_deletion(vec![a], |_| ());
        assert_eq!(claimed, vec![a], "unpinned once the upload is done");
    }
}
