//! The metadata journal and its segments: every committed index change as
//! rows (table, key, new value or tombstone), numbered by one sequence,
//! and the segment format that carries a run of rows upstream.
//!
//! Owns the engine-neutral types and their byte codec; an engine captures
//! rows inside the transaction that makes the change (the redb engine:
//! `meta/redb/journal.rs`), the upload job (`jobs/metadata.rs`) seals
//! segments. Keys and values are the engine's own row bytes, so a restore
//! into the same engine replays them as they are.
//!
//! Why a restore cannot be fooled silently: a segment states its sequence
//! range and the SHA-256 of the previous segment's plaintext (zeros for the
//! first). [`ChainCheck`] accepts segments only in order, each starting
//! right after the last one and naming its hash, with rows numbered without
//! a gap; a missing, swapped, reordered or replayed segment breaks one of
//! these and is an error, and the AEAD seal refuses a changed bit before
//! the decoder sees it. Decoding checks every length against what is left
//! and never panics.

use sha2::{Digest, Sha256};

/// Errors of the journal's codec and of the chain check.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JournalError {
    #[error("malformed journal data: {0}")]
    Malformed(&'static str),
    #[error("unknown journal table id {0}")]
    UnknownTable(u8),
    #[error("segment starting at {found} where {expected} was due: a segment is missing")]
    Missing { expected: u64, found: u64 },
    #[error(
        "segment starting at {found} after the chain reached {reached}: replayed or reordered"
    )]
    Replayed { reached: u64, found: u64 },
    #[error("segment starting at {first} does not name its predecessor's hash: swapped or from another chain")]
    BrokenLink { first: u64 },
    #[error("segment {first}..={last} holds rows out of sequence at {at}")]
    RowsOutOfSequence { first: u64, last: u64, at: u64 },
}

/// The tables whose changes the journal carries. The numbers are part of
/// the segment format and never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum JournalTable {
    Meta = 1,
    Users = 2,
    Nodes = 3,
    Dirents = 4,
    Manifests = 5,
    Chunks = 6,
    Props = 7,
    Uploads = 8,
    UploadParts = 9,
    /// The audit log (`meta/audit.rs`).
    Audit = 10,
    AppPasswords = 11,
    Totp = 12,
    /// Packs of small chunks (`meta/redb/packs.rs`).
    Packs = 13,
}

impl JournalTable {
    pub(crate) fn from_u8(b: u8) -> Result<Self, JournalError> {
        use JournalTable::*;
        Ok(match b {
            1 => Meta,
            2 => Users,
            3 => Nodes,
            4 => Dirents,
            5 => Manifests,
            6 => Chunks,
            7 => Props,
            8 => Uploads,
            9 => UploadParts,
            10 => Audit,
            11 => AppPasswords,
            12 => Totp,
            13 => Packs,
            other => return Err(JournalError::UnknownTable(other)),
        })
    }
}

const FLAG_TOMBSTONE: u8 = 1;
const FLAG_ENDS_TRANSACTION: u8 = 2;

/// One captured row change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalRow {
    /// Its place in the one sequence of all changes (from 1).
    pub seq: u64,
    pub table: JournalTable,
    pub key: Vec<u8>,
    /// The new value; `None`: the row was removed.
    pub value: Option<Vec<u8>>,
    /// The transaction that made it committed (Unix seconds).
    pub committed: u64,
    /// The last row of its transaction: a restore applies whole
    /// transactions only.
    pub ends_transaction: bool,
}

impl JournalRow {
    /// The row without its sequence number (the engine keys it by that).
    pub fn encode_body(&self) -> Vec<u8> {
        let value = self.value.as_deref().unwrap_or_default();
        let mut out = Vec::with_capacity(14 + self.key.len() + value.len());
        let mut flags = 0;
        if self.value.is_none() {
            flags |= FLAG_TOMBSTONE;
        }
        if self.ends_transaction {
            flags |= FLAG_ENDS_TRANSACTION;
        }
        out.push(self.table as u8);
        out.push(flags);
        out.extend_from_slice(&self.committed.to_le_bytes());
        out.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.key);
        out.extend_from_slice(value);
        out
    }

    /// The inverse of [`Self::encode_body`].
    pub fn decode_body(seq: u64, raw: &[u8]) -> Result<Self, JournalError> {
        let mut r = Reader(raw);
        let table = JournalTable::from_u8(r.u8()?)?;
        let flags = r.u8()?;
        if flags & !(FLAG_TOMBSTONE | FLAG_ENDS_TRANSACTION) != 0 {
            return Err(JournalError::Malformed("unknown row flags"));
        }
        let committed = r.u64()?;
        let key_len = r.u32()? as usize;
        let key = r.take(key_len)?.to_vec();
        let rest = r.take(r.0.len())?.to_vec();
        let value = if flags & FLAG_TOMBSTONE != 0 {
            if !rest.is_empty() {
                return Err(JournalError::Malformed("a tombstone with a value"));
            }
            None
        } else {
            Some(rest)
        };
        Ok(Self {
            seq,
            table,
            key,
            value,
            committed,
            ends_transaction: flags & FLAG_ENDS_TRANSACTION != 0,
        })
    }

    /// Sets the transaction-end flag in an encoded body.
    pub fn mark_end_of_transaction(body: &mut [u8]) {
        if let Some(flags) = body.get_mut(1) {
            *flags |= FLAG_ENDS_TRANSACTION;
        }
    }
}

/// Rows waiting to go upstream, and how far behind that is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalBatch {
    /// Rows after the asked sequence, in order, ending at a transaction's
    /// end unless that transaction alone exceeds the limit many times.
    pub rows: Vec<JournalRow>,
    /// Every row waiting (uploaded rows are deleted).
    pub waiting: u64,
    /// When the oldest waiting row was committed (Unix seconds).
    pub oldest: Option<u64>,
}

/// The end of the uploaded chain: the last sequence upstream and the
/// hash of the segment that holds it (zeros before the first).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChainHead {
    pub last_seq: u64,
    pub hash: [u8; 32],
}

impl ChainHead {
    pub fn encode(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        out[..8].copy_from_slice(&self.last_seq.to_le_bytes());
        out[8..].copy_from_slice(&self.hash);
        out
    }

    pub fn decode(raw: &[u8]) -> Result<Self, JournalError> {
        let mut r = Reader(raw);
        let last_seq = r.u64()?;
        let hash = r.hash()?;
        Ok(Self { last_seq, hash })
    }
}

const SEGMENT_MAGIC: &[u8; 4] = b"DDMJ";
const SEGMENT_VERSION: u8 = 1;

/// A run of consecutive rows, linked to the segment before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub first: u64,
    pub last: u64,
    /// SHA-256 of the previous segment's plaintext; zeros for the first.
    pub prev: [u8; 32],
    pub rows: Vec<JournalRow>,
}

impl Segment {
    /// Builds the segment after `head` from `rows` (consecutive, not empty).
    pub fn after(head: &ChainHead, rows: Vec<JournalRow>) -> Result<Self, JournalError> {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Err(JournalError::Malformed("an empty segment"));
        };
        let segment = Self {
            first: first.seq,
            last: last.seq,
            prev: head.hash,
            rows,
        };
        segment.check_rows()?;
        Ok(segment)
    }

    /// The plaintext that is sealed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(SEGMENT_MAGIC);
        out.push(SEGMENT_VERSION);
        out.extend_from_slice(&self.first.to_le_bytes());
        out.extend_from_slice(&self.last.to_le_bytes());
        out.extend_from_slice(&self.prev);
        out.extend_from_slice(&(self.rows.len() as u32).to_le_bytes());
        for row in &self.rows {
            let body = row.encode_body();
            out.extend_from_slice(&row.seq.to_le_bytes());
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(&body);
        }
        out
    }

    /// The inverse of [`Self::encode`]; checks the rows' numbering.
    pub fn decode(raw: &[u8]) -> Result<Self, JournalError> {
        let mut r = Reader(raw);
        if r.take(4)? != SEGMENT_MAGIC || r.u8()? != SEGMENT_VERSION {
            return Err(JournalError::Malformed("not a journal segment"));
        }
        let (first, last, prev) = (r.u64()?, r.u64()?, r.hash()?);
        let count = r.u32()? as usize;
        let mut rows = Vec::with_capacity(count.min(raw.len() / 22));
        for _ in 0..count {
            let seq = r.u64()?;
            let len = r.u32()? as usize;
            rows.push(JournalRow::decode_body(seq, r.take(len)?)?);
        }
        if !r.0.is_empty() {
            return Err(JournalError::Malformed("bytes after the last row"));
        }
        let segment = Self {
            first,
            last,
            prev,
            rows,
        };
        segment.check_rows()?;
        Ok(segment)
    }

    /// The hash the next segment names.
    pub fn hash(plain: &[u8]) -> [u8; 32] {
        Sha256::digest(plain).into()
    }

    /// Rows numbered `first..=last` without a gap.
    fn check_rows(&self) -> Result<(), JournalError> {
        let mut expected = self.first;
        for row in &self.rows {
            if row.seq != expected {
                return Err(JournalError::RowsOutOfSequence {
                    first: self.first,
                    last: self.last,
                    at: row.seq,
                });
            }
            expected += 1;
        }
        if self.rows.is_empty() || expected != self.last.wrapping_add(1) {
            return Err(JournalError::Malformed(
                "the row count disagrees with the range",
            ));
        }
        Ok(())
    }
}

/// Follows a chain segment by segment from its start (or from a known
/// head, e.g. a snapshot's), refusing any segment that does not continue it.
#[derive(Debug, Default)]
pub struct ChainCheck {
    head: ChainHead,
}

impl ChainCheck {
    pub fn from_head(head: ChainHead) -> Self {
        Self { head }
    }

    /// Decodes the next segment's plaintext and checks it continues the chain.
    pub fn accept(&mut self, plain: &[u8]) -> Result<Segment, JournalError> {
        let segment = Segment::decode(plain)?;
        let due = self.head.last_seq + 1;
        if segment.first < due {
            return Err(JournalError::Replayed {
                reached: self.head.last_seq,
                found: segment.first,
            });
        }
        if segment.first > due {
            return Err(JournalError::Missing {
                expected: due,
                found: segment.first,
            });
        }
        if segment.prev != self.head.hash {
            return Err(JournalError::BrokenLink {
                first: segment.first,
            });
        }
        self.head = ChainHead {
            last_seq: segment.last,
            hash: Segment::hash(plain),
        };
        Ok(segment)
    }

    pub fn head(&self) -> ChainHead {
        self.head
    }
}

/// A bounds-checked little-endian reader over the metadata formats
/// (segments here, snapshot heads and dumps in `meta/snapshot.rs`).
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], JournalError> {
        if n > self.0.len() {
            return Err(JournalError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], JournalError> {
        let mut b = [0u8; N];
        b.copy_from_slice(self.take(N)?);
        Ok(b)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, JournalError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, JournalError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, JournalError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn hash(&mut self) -> Result<[u8; 32], JournalError> {
        self.array()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: u64, value: Option<&[u8]>) -> JournalRow {
        JournalRow {
            seq,
            table: JournalTable::Nodes,
            key: seq.to_le_bytes().to_vec(),
            value: value.map(<[u8]>::to_vec),
            committed: 1_700_000_000 + seq,
            ends_transaction: seq.is_multiple_of(2),
        }
    }

    /// Three linked segments of rows 1-2, 3-5, 6, as plaintexts.
    fn chain() -> Vec<Vec<u8>> {
        let mut head = ChainHead::default();
        let mut out = Vec::new();
        for range in [1..=2u64, 3..=5, 6..=6] {
            let rows = range.map(|s| row(s, (s != 4).then_some(b"v"))).collect();
            let plain = Segment::after(&head, rows).unwrap().encode();
            head = ChainHead {
                last_seq: Segment::decode(&plain).unwrap().last,
                hash: Segment::hash(&plain),
            };
            out.push(plain);
        }
        out
    }

    #[test]
    fn rows_and_segments_round_trip() {
        for r in [row(7, Some(b"value")), row(8, None), row(9, Some(b""))] {
            assert_eq!(JournalRow::decode_body(r.seq, &r.encode_body()).unwrap(), r);
        }
        let mut check = ChainCheck::default();
        let rows: Vec<u64> = chain()
            .iter()
            .flat_map(|p| check.accept(p).unwrap().rows)
            .map(|r| r.seq)
            .collect();
        assert_eq!(rows, (1..=6).collect::<Vec<_>>());
        assert_eq!(check.head().last_seq, 6);
    }

    #[test]
    fn a_missing_segment_is_detected() {
        let segments = chain();
        let mut check = ChainCheck::default();
        check.accept(&segments[0]).unwrap();
        let err = check.accept(&segments[2]).unwrap_err();
        assert_eq!(
            err,
            JournalError::Missing {
                expected: 3,
                found: 6
            }
        );
    }

    #[test]
    fn reordered_and_replayed_segments_are_detected() {
        let segments = chain();
        let mut check = ChainCheck::default();
        assert!(matches!(
            check.accept(&segments[1]),
            Err(JournalError::Missing { .. })
        ));
        check.accept(&segments[0]).unwrap();
        check.accept(&segments[1]).unwrap();
        let err = check.accept(&segments[1]).unwrap_err();
        assert_eq!(
            err,
            JournalError::Replayed {
                reached: 5,
                found: 3
            }
        );
    }

    #[test]
    fn a_swapped_segment_or_one_from_another_chain_is_detected() {
        let segments = chain();
        // Same range as the second segment, other rows: another chain.
        let other = Segment::after(
            &ChainHead {
                last_seq: 2,
                hash: [7; 32],
            },
            (3..=5).map(|s| row(s, Some(b"other"))).collect(),
        )
        .unwrap()
        .encode();
        let mut check = ChainCheck::default();
        check.accept(&segments[0]).unwrap();
        assert_eq!(
            check.accept(&other).unwrap_err(),
            JournalError::BrokenLink { first: 3 }
        );
        // A segment continuing a changed predecessor is refused too.
        let mut check = ChainCheck::default();
        let mut changed = segments[0].clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        check.accept(&changed).unwrap();
        assert!(matches!(
            check.accept(&segments[1]),
            Err(JournalError::BrokenLink { .. })
        ));
    }

    #[test]
    fn malformed_segments_are_errors_not_panics() {
        let plain = chain().remove(1);
        for cut in 0..plain.len() {
            assert!(Segment::decode(&plain[..cut]).is_err(), "cut at {cut}");
        }
        let gap = Segment {
            first: 1,
            last: 3,
            prev: [0; 32],
            rows: vec![row(1, None), row(3, None)],
        };
        assert!(matches!(
            Segment::decode(&gap.encode()),
            Err(JournalError::RowsOutOfSequence { at: 3, .. })
        ));
    }
}
