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
    /// Pins `id`, then the caller looks the chunk up. Returns `false`
    /// (nothing pinned) while the collector is deleting the chunk's object:
    /// the caller waits and tries again. The lookup needs no lock: once
    /// pinned, the collector cannot claim the chunk, and a chunk it claimed
    /// earlier stays unpinnable until its record and object are both gone.
    pub fn pin(&self, id: ChunkId) -> bool {
        let mut state = self.inner.lock();
        if state.deleting.contains(&id) {
            return false;
        }
        *state.pins.entry(id).or_insert(0) += 1;
        true
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

    /// For the collector: under the lock, keeps the unpinned `candidates`
    /// and marks them as being deleted, so no upload can pin them until
    /// [`Self::release_deleted`]. The collector then drops their records
    /// (re-checked in that transaction) and deletes their objects.
    pub fn claim_for_deletion(&self, candidates: Vec<ChunkId>) -> Vec<ChunkId> {
        let mut state = self.inner.lock();
        let claimed: Vec<ChunkId> = candidates
            .into_iter()
            .filter(|id| !state.pins.contains_key(id) && !state.deleting.contains(id))
            .collect();
        state.deleting.extend(claimed.iter().copied());
        claimed
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
        assert!(pins.pin(a));
        guard.add(a);
        let claimed = pins.claim_for_deletion(vec![a, b]);
        assert_eq!(claimed, vec![b]);
        assert!(!pins.pin(b), "being deleted");
        pins.release_deleted(&[b]);
        assert!(pins.pin(b));
        drop(guard);
        let claimed = pins.claim_for_deletion(vec![a]);
        assert_eq!(claimed, vec![a], "unpinned once the upload is done");
    }
}
