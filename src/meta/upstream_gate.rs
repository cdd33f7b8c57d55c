//! The zero-lag gate (`metadata.upload_interval_secs = 0`): a metadata
//! write answers only once the journal segment holding its change is
//! stored in the backend.
//!
//! It owns the meeting point of two sides and nothing else, so it knows no
//! engine and no store:
//! - the writers (the [`crate::meta::Meta`] facade, after a write that
//!   advanced the journal's committed sequence) wake the uploader and wait
//!   until the published upstream sequence reaches theirs;
//! - the uploader (`jobs/metadata.rs`) is woken through [`UpstreamGate::wakener`],
//!   uploads everything waiting, and publishes the chain's new end with
//!   [`UpstreamGate::publish`].
//!
//! Group commit: every writer waiting while a segment is being put is
//! carried by the next one (the uploader takes all rows waiting at once),
//! so many concurrent commits share one upload, as concurrent index
//! commits share one fsync (`meta/redb/durability.rs`).
//!
//! A wait is bounded ([`WAIT_LIMIT`]). When it runs out the change is
//! still committed in the index and stays in the journal: it goes upstream
//! with a later segment. The writer is answered with
//! [`UpstreamGateError::Timeout`] (503), so the client retries instead of
//! taking the change as safe upstream.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

/// How long a write waits for its change to be upstream. Long enough to
/// ride out an upstream's slow moments and the uploader's first retries,
/// short enough to answer before a client's own timeout (often 60 s).
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Why a write's change was not confirmed upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamGateError {
    #[error("the change is committed but its metadata segment is not in the backend after {} s; it goes up later", .0.as_secs())]
    Timeout(Duration),
    #[error("the metadata uploader stopped; the change is committed and goes up after a restart")]
    Closed,
}

/// The meeting point of writers waiting for their change to be upstream
/// and the uploader that puts it there. Shared behind an `Arc`.
#[derive(Debug)]
pub struct UpstreamGate {
    wake: Arc<Notify>,
    uploaded: watch::Sender<u64>,
    limit: Duration,
}

impl UpstreamGate {
    /// A gate whose waits end after `limit` ([`WAIT_LIMIT`] in service),
    /// with `uploaded` the chain's end already upstream.
    pub fn new(uploaded: u64, limit: Duration) -> Self {
        Self {
            wake: Arc::new(Notify::new()),
            uploaded: watch::channel(uploaded).0,
            limit,
        }
    }

    /// What wakes the uploader: notified once per write waiting (a wake
    /// while an upload runs is kept, so it is never lost).
    pub fn wakener(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Publishes that every journal row up to `last_seq` is upstream,
    /// waking the writers it covers. A smaller value changes nothing.
    pub fn publish(&self, last_seq: u64) {
        self.uploaded.send_if_modified(|v| {
            let grew = last_seq > *v;
            if grew {
                *v = last_seq;
            }
            grew
        });
    }

    /// The last journal sequence known to be upstream.
    pub fn uploaded(&self) -> u64 {
        *self.uploaded.borrow()
    }

    /// Wakes the uploader and waits until `seq` is upstream, at most the
    /// gate's limit.
    pub async fn wait_for(&self, seq: u64) -> Result<(), UpstreamGateError> {
        let mut rx = self.uploaded.subscribe();
        if *rx.borrow_and_update() >= seq {
            return Ok(());
        }
        self.wake.notify_one();
        let reached = tokio::time::timeout(self.limit, async {
            rx.wait_for(|v| *v >= seq).await.map(|_| ())
        })
        .await;
        match reached {
            Ok(Ok(())) => Ok(()),
            // The sender lives in `self`: it cannot be gone while we wait.
            Ok(Err(_)) => Err(UpstreamGateError::Closed),
            Err(_) => Err(UpstreamGateError::Timeout(self.limit)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_wake_when_the_published_sequence_passes_theirs() {
        let gate = Arc::new(UpstreamGate::new(5, Duration::from_secs(10)));
        gate.wait_for(5).await.expect("already upstream");
        let waiters: Vec<_> = [6u64, 8, 9]
            .into_iter()
            .map(|seq| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.wait_for(seq).await })
            })
            .collect();
        // The uploader is woken by the waiters.
        tokio::time::timeout(Duration::from_secs(5), gate.wakener().notified())
            .await
            .expect("woken");
        gate.publish(8);
        gate.publish(7); // going back changes nothing
        assert_eq!(gate.uploaded(), 8);
        let mut waiters = waiters.into_iter();
        waiters
            .next()
            .unwrap()
            .await
            .unwrap()
            .expect("6 is covered");
        waiters
            .next()
            .unwrap()
            .await
            .unwrap()
            .expect("8 is covered");
        let last = waiters.next().unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!last.is_finished(), "9 is not upstream yet");
        gate.publish(12);
        last.await.unwrap().expect("9 is covered");
    }

    #[tokio::test]
    async fn a_wait_ends_with_an_error_after_the_limit() {
        let gate = UpstreamGate::new(0, Duration::from_millis(50));
        let err = gate.wait_for(1).await.unwrap_err();
        assert!(matches!(err, UpstreamGateError::Timeout(_)), "{err}");
        assert!(err.to_string().contains("goes up later"), "{err}");
    }
}
