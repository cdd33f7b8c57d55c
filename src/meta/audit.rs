//! The audit log's records: who changed what through the admin API or the
//! command line, when, and from where. Owned here (engine-neutral, with
//! their byte layout) because an entry is written by the same metadata
//! operation, in the same transaction, as the change it describes; the
//! redb engine keeps them in its journaled `audit` table (sequence number
//! → encoded entry), so they reach the upstream and survive a restore.
//!
//! An entry never holds a password or a hash: `detail` is a short
//! description the caller builds from the fields it changed. Every text
//! field is cut to [`MAX_FIELD_BYTES`], and the log keeps the newest
//! [`MAX_AUDIT_ENTRIES`] (older ones are trimmed by the writing
//! transaction), so neither a long name nor years of changes grow it
//! without bound.

use serde::Serialize;

use super::codec::{Reader, Writer};
use super::IndexError;

/// Entries kept; the oldest beyond this go in the transaction that adds one.
pub const MAX_AUDIT_ENTRIES: u64 = 100_000;

/// The longest text field kept, in bytes (cut at a character boundary).
pub const MAX_FIELD_BYTES: usize = 256;

/// One change, as the caller describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// Unix seconds.
    pub time: i64,
    /// Who: the administrator's user name, or `local-cli`.
    pub actor: String,
    /// What: a fixed verb such as `user.create` or `job.run`.
    pub action: String,
    /// What it was done to: a user name, a job name.
    pub target: String,
    /// A short description of the change (never a password).
    pub detail: String,
    /// From where: the client's IP address, or `local`.
    pub source: String,
}

impl AuditEntry {
    /// An entry stamped now, every field cut to [`MAX_FIELD_BYTES`].
    pub fn now(actor: &str, source: &str, action: &str, target: &str, detail: &str) -> Self {
        Self {
            time: crate::clock::unix_secs(),
            actor: cut(actor),
            action: cut(action),
            target: cut(target),
            detail: cut(detail),
            source: cut(source),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        Writer::new()
            .i64(self.time)
            .str(&self.actor)
            .str(&self.action)
            .str(&self.target)
            .str(&self.detail)
            .str(&self.source)
            .finish()
    }

    pub fn decode(b: &[u8]) -> Result<Self, IndexError> {
        let mut r = Reader::new("audit", b);
        Ok(Self {
            time: r.i64()?,
            actor: r.string()?,
            action: r.string()?,
            target: r.string()?,
            detail: r.string()?,
            source: r.string()?,
        })
    }
}

/// An entry as the log holds it, with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Increasing; never reused.
    pub seq: u64,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

fn cut(text: &str) -> String {
    if text.len() <= MAX_FIELD_BYTES {
        return text.to_string();
    }
    let mut end = MAX_FIELD_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_long_fields_are_cut() {
        let long = "é".repeat(300);
        let e = AuditEntry::now("admin", "127.0.0.1", "user.update", "bob", &long);
        assert!(e.detail.len() <= MAX_FIELD_BYTES && e.detail.starts_with('é'));
        assert_eq!(AuditEntry::decode(&e.encode()).unwrap(), e);
        let bytes = e.encode();
        for cut in [0, 5, bytes.len() - 1] {
            assert!(AuditEntry::decode(&bytes[..cut]).is_err(), "{cut}");
        }
    }

    #[test]
    fn records_flatten_into_one_json_object() {
        let r = AuditRecord {
            seq: 4,
            entry: AuditEntry::now("admin", "local", "user.remove", "bob", ""),
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["seq"], 4);
        assert_eq!(json["action"], "user.remove");
        assert_eq!(json["source"], "local");
    }
}
