//! The installation's history for the web console's charts: one sample a
//! minute (`jobs/history.rs`) of logical bytes, stored bytes, files and
//! the requests served since the process started, kept for 30 days. A
//! local table: a restore starts it empty, and recording never waits for
//! the upstream.

use super::codec::{Reader, Writer};
use super::IndexError;

/// Samples kept: 30 days at one a minute.
pub const HISTORY_SAMPLES: u64 = 30 * 24 * 60;

/// One sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistorySample {
    /// Unix seconds.
    pub at: i64,
    pub logical_bytes: u64,
    pub stored_bytes: u64,
    pub files: u64,
    /// Requests served since the gateway started (a restart starts again).
    pub requests: u64,
}

impl HistorySample {
    /// The value stored under key `at`.
    pub fn encode(&self) -> Vec<u8> {
        Writer::new()
            .u64(self.logical_bytes)
            .u64(self.stored_bytes)
            .u64(self.files)
            .u64(self.requests)
            .finish()
    }

    pub fn decode(at: i64, b: &[u8]) -> Result<Self, IndexError> {
        let mut r = Reader::new("history", b);
        Ok(Self {
            at,
            logical_bytes: r.u64()?,
            stored_bytes: r.u64()?,
            files: r.u64()?,
            requests: r.u64()?,
        })
    }
}
