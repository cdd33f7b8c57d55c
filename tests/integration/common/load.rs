//! Keeps the one test that saturates the machine apart from the tests that
//! assert an upper bound on wall time.
//!
//! All integration tests run in one process, one per core at a time,
//! in whatever pairing the harness picks. What the measuring tests measure
//! is not disturbed by that: memory, CPU time and descriptors are read from
//! `/proc/<pid>` of a `dedupdav` child process (`resource_limits`,
//! `limits`), never from this process; and neither the library nor a test
//! changes anything process-wide (no global set from a configuration, no
//! signal handler, no environment variable, current directory or umask:
//! each child process gets its settings on its own `Command`). What
//! sharing does change is who runs next to whom: when each file was its
//! own binary, the 32 concurrent 64 MiB uploads and downloads (4 GiB
//! through the gateway, every core busy) only ever ran beside their own
//! file's tests; in one binary they could run beside a test that asserts,
//! say, that a failing upstream is given up within 3 s.
//!
//! So a test that saturates the machine takes [`saturating`] (exclusive)
//! and a test whose assertion is an upper bound on elapsed time takes
//! [`wall_clock_bound`] (shared): the two never overlap, while the timed
//! tests still run beside each other and everything else. Tests that
//! assert only lower bounds ("closed after at least the timeout") or
//! nothing about time take neither; load can only make them slower.
//!
//! A tokio lock, so the async tests can wait for it without blocking their
//! runtime; it is fair, so a waiting exclusive test is not starved.

use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static LOAD: RwLock<()> = RwLock::const_new(());

/// Held for the whole of a test that keeps every core busy.
#[must_use = "hold the guard for the whole test"]
pub fn saturating() -> RwLockWriteGuard<'static, ()> {
    LOAD.blocking_write()
}

/// Held for the whole of a test that asserts an upper bound on elapsed time.
#[must_use = "hold the guard for the whole test"]
pub fn wall_clock_bound() -> RwLockReadGuard<'static, ()> {
    LOAD.blocking_read()
}

/// [`wall_clock_bound`] for a test that runs on a tokio runtime.
#[must_use = "hold the guard for the whole test"]
pub async fn wall_clock_bound_async() -> RwLockReadGuard<'static, ()> {
    LOAD.read().await
}
