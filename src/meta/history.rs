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
    /// Upstream attempts since the gateway started, and the microseconds
    /// they took in all (0 for samples written before they were kept).
    pub upstream_attempts: u64,
    pub upstream_micros: u64,
}

impl HistorySample {
    /// The value stored under key `at`.
    pub fn encode(&self) -> Vec<u8> {
        Writer::new()
            .u64(self.logical_bytes)
            .u64(self.stored_bytes)
            .u64(self.files)
            .u64(self.requests)
            .u64(self.upstream_attempts)
            .u64(self.upstream_micros)
            .finish()
    }

    pub fn decode(at: i64, b: &[u8]) -> Result<Self, IndexError> {
        let mut r = Reader::new("history", b);
        let mut sample = Self {
            at,
            logical_bytes: r.u64()?,
            stored_bytes: r.u64()?,
            files: r.u64()?,
            requests: r.u64()?,
            ..Self::default()
        };
        if !r.at_end() {
            sample.upstream_attempts = r.u64()?;
            sample.upstream_micros = r.u64()?;
        }
        Ok(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_round_trip_and_older_ones_decode_without_upstream_figures() {
        let s = HistorySample {
            at: 60,
            logical_bytes: 1,
            stored_bytes: 2,
            files: 3,
            requests: 4,
            upstream_attempts: 5,
            upstream_micros: 6,
        };
        assert_eq!(HistorySample::decode(60, &s.encode()).unwrap(), s);
        let older = &s.encode()[..32];
        let decoded = HistorySample::decode(60, older).unwrap();
        assert_eq!((decoded.requests, decoded.upstream_attempts), (4, 0));
        assert!(HistorySample::decode(60, &s.encode()[..40]).is_err());
    }
}
