//! Wall-clock time as the index stores it: whole seconds, milliseconds or nanoseconds
//! since the Unix epoch. One place, so every record and every expiry uses
//! the same reading; a clock set before 1970 reads as 0 rather than
//! failing a request.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch.
pub fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (lock deadlines).
pub fn unix_millis() -> i64 {
    unix_nanos() / 1_000_000
}

/// Nanoseconds since the Unix epoch (file modification times).
pub fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn readings_agree() {
        let s = super::unix_secs();
        let ns = super::unix_nanos();
        assert!(s > 1_600_000_000);
        assert!((ns / 1_000_000_000 - s).abs() <= 1);
    }
}
