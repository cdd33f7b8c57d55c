//! A user's TOTP enrolment as the metadata keeps it: the shared secret
//! and the last time step a code was accepted for (so a code cannot be
//! replayed within its window). One record per user id; a user has one
//! or none. The algorithm (RFC 6238) is `accounts/totp.rs`; the web
//! console (`http/console/`) enrols and checks.
//!
//! Owned here, apart from the account record, so the account's codec and
//! the golden records that pin it stay unchanged.

use super::codec::{Reader, Writer};
use super::IndexError;

/// Bytes of a TOTP secret (160 bits, RFC 4226's recommendation for SHA-1).
pub const TOTP_SECRET_BYTES: usize = 20;

/// The stored enrolment of one user (its key holds the user id).
#[derive(Clone, PartialEq, Eq)]
pub struct TotpRecord {
    pub secret: [u8; TOTP_SECRET_BYTES],
    /// The last time step (Unix seconds / 30) a code was accepted for;
    /// only later steps are accepted.
    pub last_step: u64,
    /// Unix seconds of the enrolment.
    pub enrolled: i64,
}

impl std::fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpRecord")
            .field("last_step", &self.last_step)
            .field("enrolled", &self.enrolled)
            .finish_non_exhaustive()
    }
}

impl TotpRecord {
    pub fn encode(&self) -> Vec<u8> {
        Writer::new()
            .array(&self.secret)
            .u64(self.last_step)
            .i64(self.enrolled)
            .finish()
    }

    pub fn decode(b: &[u8]) -> Result<Self, IndexError> {
        let mut r = Reader::new("totp", b);
        Ok(Self {
            secret: r.array()?,
            last_step: r.u64()?,
            enrolled: r.i64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_hide_the_secret() {
        let rec = TotpRecord {
            secret: [7; TOTP_SECRET_BYTES],
            last_step: 56_000_000,
            enrolled: 1_700_000_000,
        };
        let bytes = rec.encode();
        assert_eq!(TotpRecord::decode(&bytes).unwrap(), rec);
        for cut in 0..bytes.len() {
            assert!(TotpRecord::decode(&bytes[..cut]).is_err(), "{cut}");
        }
        assert!(!format!("{rec:?}").contains("7, 7"));
    }
}
