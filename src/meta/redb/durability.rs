//! Group commit: many write transactions share one fsync.
//!
//! A change made while no other writer is in flight commits durably itself,
//! as usual. Under concurrent writes, each change commits its redb
//! transaction without waiting for the disk (`Durability::None`), then
//! waits until a durable commit covers it. One waiter at a time leads: it
//! commits an empty transaction durably, which persists every transaction
//! committed before it began, and wakes the others. So one fsync serves all
//! the writers that queued up meanwhile.
//!
//! Nothing returns to the caller before the change is on disk, so callers
//! keep the guarantee of a durable commit (a crash loses only changes nobody
//! was told about). Other requests may read a change a moment before it is
//! durable; if the machine crashes in that moment the change is rolled back
//! together with everything after it, and its own request never succeeded.

use parking_lot::{Condvar, Mutex};

use crate::meta::IndexError;

#[derive(Default)]
struct State {
    /// Changes committed (not necessarily durable), counted.
    committed: u64,
    /// Every change up to this count is durable.
    durable: u64,
    /// A leader is committing durably right now.
    syncing: bool,
    /// Write transactions begun and not yet durable (or failed).
    writers: u32,
}

/// Tracks which committed changes are durable, and elects the waiter that
/// makes them so.
#[derive(Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    synced: Condvar,
}

/// A writer in flight, from before its transaction begins until it is
/// durable or failed.
pub(crate) struct Writer<'g>(&'g GroupCommit);

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        self.0.state.lock().writers -= 1;
    }
}

/// How a transaction about to commit becomes durable.
pub(crate) enum Commit {
    /// Commit durably: no other writer is in flight.
    Alone(u64),
    /// Commit without waiting for the disk, then [`GroupCommit::wait_durable`].
    Grouped(u64),
}

impl GroupCommit {
    /// Registers a writer; call before beginning its transaction.
    pub fn writer(&self) -> Writer<'_> {
        self.state.lock().writers += 1;
        Writer(self)
    }

    /// Takes the ticket of a transaction about to commit. Called while the
    /// transaction is open, so tickets follow the commit order.
    pub fn ticket(&self, _writer: &Writer<'_>) -> Commit {
        let mut s = self.state.lock();
        s.committed += 1;
        if s.writers == 1 && !s.syncing {
            Commit::Alone(s.committed)
        } else {
            Commit::Grouped(s.committed)
        }
    }

    /// Records that a transaction with `ticket` committed durably: it and
    /// every transaction before it are on disk.
    pub fn durable(&self, ticket: u64) {
        let mut s = self.state.lock();
        s.durable = s.durable.max(ticket);
        self.synced.notify_all();
    }

    /// Returns once the change with `ticket` is durable. `persist` commits
    /// durably (everything committed before it started becomes durable); it
    /// runs on one waiting thread at a time. An error of `persist` goes to
    /// the leader that ran it; the others try again.
    pub fn wait_durable(
        &self,
        ticket: u64,
        persist: impl Fn() -> Result<(), IndexError>,
    ) -> Result<(), IndexError> {
        let mut s = self.state.lock();
        loop {
            if s.durable >= ticket {
                return Ok(());
            }
            if s.syncing {
                self.synced.wait(&mut s);
                continue;
            }
            // Every ticket up to `target` was handed out inside its
            // transaction, which `persist` (a write transaction too) waits
            // for before it begins.
            let target = s.committed;
            s.syncing = true;
            drop(s);
            let result = persist();
            s = self.state.lock();
            s.syncing = false;
            if result.is_ok() {
                s.durable = s.durable.max(target);
            }
            self.synced.notify_all();
            result?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    #[test]
    fn concurrent_changes_share_durable_commits() {
        let group = Arc::new(GroupCommit::default());
        let persists = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (group, persists) = (group.clone(), persists.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        let writer = group.writer();
                        let ticket = match group.ticket(&writer) {
                            Commit::Alone(t) => {
                                group.durable(t);
                                continue;
                            }
                            Commit::Grouped(t) => t,
                        };
                        group
                            .wait_durable(ticket, || {
                                persists.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_micros(200));
                                Ok(())
                            })
                            .unwrap();
                        assert!(group.state.lock().durable >= ticket);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let n = persists.load(Ordering::SeqCst);
        assert!(n < 1600, "{n} durable commits for 1600 changes");
    }

    #[test]
    fn a_failed_persist_is_reported_and_retried_by_the_next_waiter() {
        let group = GroupCommit::default();
        let _other = group.writer();
        let writer = group.writer();
        let Commit::Grouped(ticket) = group.ticket(&writer) else {
            panic!("two writers in flight commit as a group");
        };
        let err = group.wait_durable(ticket, || Err(IndexError::Storage("disk full".into())));
        assert!(err.is_err());
        assert_eq!(group.state.lock().durable, 0);
        group.wait_durable(ticket, || Ok(())).unwrap();
        assert_eq!(group.state.lock().durable, 1);
    }
}
