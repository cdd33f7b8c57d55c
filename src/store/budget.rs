//! The transfer memory budget: one byte semaphore shared by every upload and
//! download, so that their chunk buffers together stay within
//! `limits.transfer_memory` however many transfers run.
//!
//! A buffer is counted before it is filled or fetched and released when its
//! [`BufferPermit`] is dropped. A chunk buffer is counted as twice its plain
//! length: the plain bytes and the sealed object (upload) or the fetched
//! object (download) exist together while a chunk is sealed or opened.
//!
//! No deadlock, no failure: every transfer first takes a *floor* — room for
//! the one chunk it works on — and waits for it while it holds nothing else
//! of the budget. Every further buffer (chunks in flight, read-ahead) is
//! taken only if room is free at that moment ([`TransferBudget::try_extra`]);
//! otherwise the transfer goes on with fewer buffers. So no transfer ever
//! waits while holding budget, and each holder can always finish with its
//! floor alone. Waiters are served in arrival order (the semaphore is fair
//! and hands released room to the first waiter before anyone else can take
//! it), so a stream of small extras cannot starve a waiting transfer.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Room is counted in units of this many bytes: `acquire_many` takes a
/// `u32`, so KiB units cover budgets up to 4 TiB.
const UNIT: u64 = 1024;

/// The shared budget of transfer buffers.
#[derive(Debug)]
pub struct TransferBudget {
    room: Arc<Semaphore>,
    total_units: u32,
}

/// Room for one buffer (or a transfer's floor); given back when dropped.
#[derive(Debug)]
pub struct BufferPermit {
    _room: Option<OwnedSemaphorePermit>,
}

impl TransferBudget {
    pub fn new(bytes: u64) -> Self {
        let total_units = units(bytes).max(1);
        Self {
            room: Arc::new(Semaphore::new(total_units as usize)),
            total_units,
        }
    }

    /// The whole budget, in bytes.
    pub fn total(&self) -> u64 {
        u64::from(self.total_units) * UNIT
    }

    /// Bytes free right now.
    pub fn free(&self) -> u64 {
        self.room.available_permits() as u64 * UNIT
    }

    /// A transfer's floor: waits until `bytes` are free (at most the whole
    /// budget is asked for, so a floor is always granted in the end). Call
    /// it only while the transfer holds no other permit.
    pub async fn floor(&self, bytes: u64) -> BufferPermit {
        let n = units(bytes).min(self.total_units);
        if n == 0 {
            return BufferPermit { _room: None };
        }
        // The semaphore is never closed, so acquiring cannot fail; if it
        // ever did, the transfer goes on rather than failing.
        let room = self.room.clone().acquire_many_owned(n).await.ok();
        BufferPermit { _room: room }
    }

    /// Room for one more buffer beyond the floor, if `bytes` are free now.
    pub fn try_extra(&self, bytes: u64) -> Option<BufferPermit> {
        let n = units(bytes);
        if n == 0 {
            return Some(BufferPermit { _room: None });
        }
        let room = self.room.clone().try_acquire_many_owned(n).ok()?;
        Some(BufferPermit { _room: Some(room) })
    }
}

/// Budget units covering `bytes` (rounded up).
fn units(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT)).unwrap_or(u32::MAX)
}

/// The budget a chunk buffer of `len` plain bytes takes (see the module
/// header: the plain bytes and their sealed form).
pub fn chunk_cost(len: usize) -> u64 {
    2 * len as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn extras_only_take_free_room() {
        let b = TransferBudget::new(8 << 20);
        let floor = b.floor(4 << 20).await;
        let extra = b.try_extra(3 << 20).expect("room is free");
        assert!(b.try_extra(2 << 20).is_none());
        drop(extra);
        assert!(b.try_extra(2 << 20).is_some());
        drop(floor);
        assert_eq!(b.free(), 8 << 20);
    }

    #[tokio::test]
    async fn a_floor_waits_for_room_and_gets_it_when_released() {
        let b = Arc::new(TransferBudget::new(4 << 20));
        let held = b.floor(3 << 20).await;
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.floor(2 << 20).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the floor must wait for room");
        // Room released to a waiter is not up for grabs by extras.
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(matches!(got, Ok(Ok(_))), "the waiter gets its floor");
    }

    #[tokio::test]
    async fn a_floor_larger_than_the_budget_is_clamped() {
        let b = TransferBudget::new(1 << 20);
        let f = tokio::time::timeout(Duration::from_secs(5), b.floor(10 << 20)).await;
        assert!(f.is_ok());
        assert_eq!(b.free(), 0);
    }

    /// Many transfers, each holding a floor and trying for extras, all
    /// finish: nobody waits while holding room.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_transfers_all_progress() {
        let b = Arc::new(TransferBudget::new(16 << 20));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let _floor = b.floor(4 << 20).await;
                let mut extras = Vec::new();
                for _ in 0..4 {
                    if let Some(p) = b.try_extra(1 << 20) {
                        extras.push(p);
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
        let all = futures_util::future::join_all(tasks);
        let done = tokio::time::timeout(Duration::from_secs(30), all).await;
        assert!(done.is_ok(), "transfers deadlocked");
        assert_eq!(b.free(), 16 << 20);
    }
}
