//! Pins: chunks an upload in progress relies on, and objects being
//! deleted. An upload pins a chunk *before* it looks it up, and the
//! collector decides under the same lock, skipping pinned chunks; a chunk
//! the collector is deleting cannot be pinned until its object is gone, so
//! an upload never relies on, nor re-uploads into, an object being deleted.
//! Together with the commit's re-check this keeps invariant 3: no manifest
//! references a chunk that is not stored.
//!
//! The orphan sweep (`store/sweep.rs`) finds objects by name in the
//! backend's listing, and names cannot be turned back into chunk ids, so it
//! claims *names*: [`Pins::claim_swept`] skips a name whose chunk is pinned
//! (or being collected), and [`Pins::pin`] refuses a chunk whose object name
//! is claimed, until the sweep has deleted it. Computing a chunk's name
//! costs one HMAC, and `pin` pays it only while a sweep holds claims.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::crypto::{ChunkId, Keys, ObjectName};

#[derive(Default)]
struct PinState {
    pins: HashMap<ChunkId, u32>,
    deleting: HashSet<ChunkId>,
    /// Object names the orphan sweep is deleting.
    swept: HashSet<ObjectName>,
}

#[derive(Clone)]
pub struct Pins {
    inner: Arc<Mutex<PinState>>,
    /// For the names of pinned chunks (object-name key).
    keys: Arc<Keys>,
}

impl Pins {
    pub fn new(keys: Arc<Keys>) -> Self {
        Self {
            inner: Arc::default(),
            keys,
        }
    }

    /// Pins `id`, then the caller looks the chunk up. Returns `false`
    /// (nothing pinned) while the collector or the orphan sweep is deleting
    /// the chunk's object: the caller waits and tries again. The lookup
    /// needs no lock: once pinned, neither can claim the chunk, and a chunk
    /// claimed earlier stays unpinnable until its object is gone.
    pub fn pin(&self, id: ChunkId) -> bool {
        let mut state = self.inner.lock();
        if state.deleting.contains(&id) {
            return false;
        }
        if !state.swept.is_empty()
            && state
                .swept
                .contains(&ObjectName::for_chunk(&self.keys, &id))
        {
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

    /// For the orphan sweep: under the lock, keeps the `candidates` (object
    /// names no record named) whose chunk no upload pins and the collector
    /// is not deleting, and claims them, so no upload can pin their chunks
    /// until [`SweepClaim`] is dropped. The sweep then re-reads the records
    /// and gives back ([`SweepClaim::give_back`]) the names that became
    /// known before deleting the rest.
    pub fn claim_swept(&self, candidates: Vec<ObjectName>) -> SweepClaim {
        let mut state = self.inner.lock();
        let busy: HashSet<ObjectName> = state
            .pins
            .keys()
            .chain(state.deleting.iter())
            .map(|id| ObjectName::for_chunk(&self.keys, id))
            .collect();
        let claimed: Vec<ObjectName> = candidates
            .into_iter()
            .filter(|n| !busy.contains(n) && !state.swept.contains(n))
            .collect();
        state.swept.extend(claimed.iter().cloned());
        SweepClaim {
            pins: self.clone(),
            names: claimed,
        }
    }

    fn release_swept(&self, names: &[ObjectName]) {
        let mut state = self.inner.lock();
        for n in names {
            state.swept.remove(n);
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().pins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Object names the orphan sweep claimed; released when dropped, so a
/// sweep stopped at any point (an error, shutdown) leaves no name blocked.
pub struct SweepClaim {
    pins: Pins,
    names: Vec<ObjectName>,
}

impl SweepClaim {
    /// The names claimed.
    pub fn names(&self) -> &[ObjectName] {
        &self.names
    }

    /// Releases the names `keep` says to keep (a record names them now);
    /// the others stay claimed.
    pub fn give_back(&mut self, keep: impl Fn(&ObjectName) -> bool) {
        let (kept, rest): (Vec<_>, Vec<_>) = self.names.drain(..).partition(|n| keep(n));
        self.pins.release_swept(&kept);
        self.names = rest;
    }
}

impl Drop for SweepClaim {
    fn drop(&mut self) {
        self.pins.release_swept(&self.names);
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

    use crate::crypto::MasterKey;

    fn pins() -> (Pins, Arc<Keys>) {
        let keys = Arc::new(MasterKey::from_bytes([8; 32]).derive());
        (Pins::new(keys.clone()), keys)
    }

    #[test]
    fn pinned_chunks_are_not_claimed_and_claimed_ones_cannot_be_pinned() {
        let (pins, _) = pins();
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

    #[test]
    fn swept_names_block_their_chunks_and_skip_pinned_ones() {
        let (pins, keys) = pins();
        let (a, b, c) = (ChunkId([1; 32]), ChunkId([2; 32]), ChunkId([3; 32]));
        let name = |id: &ChunkId| ObjectName::for_chunk(&keys, id);
        let mut guard = PinGuard::new(pins.clone());
        assert!(pins.pin(a));
        guard.add(a);
        let gc = pins.claim_for_deletion(vec![c]);
        let mut claim = pins.claim_swept(vec![name(&a), name(&b), name(&c)]);
        assert_eq!(claim.names(), [name(&b)], "a is pinned, c being collected");
        assert!(!pins.pin(b), "its object is being swept");
        // A second sweep cannot claim it twice.
        assert!(pins.claim_swept(vec![name(&b)]).names().is_empty());
        claim.give_back(|n| *n == name(&b));
        assert!(claim.names().is_empty());
        assert!(pins.pin(b), "given back");
        guard.add(b);
        pins.release_deleted(&gc);
        drop(guard);
        let claim = pins.claim_swept(vec![name(&a), name(&b)]);
        assert_eq!(claim.names().len(), 2);
        assert!(!pins.pin(a));
        drop(claim);
        assert!(pins.pin(a) && pins.pin(b), "released when dropped");
    }
}
