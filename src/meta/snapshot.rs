//! Snapshots of the whole metadata: the format of the dump (every row of
//! every journaled table, at one committed state) and of the head that
//! names a sealed snapshot's pieces.
//!
//! An engine writes the dump ([`crate::meta::Meta::dump_snapshot`]) into a
//! local file in one read transaction; the store cuts it into
//! content-defined pieces and seals each under a keyed MAC of its
//! plaintext, so the part of the index that did not change since the last
//! snapshot is the same pieces and is not stored again
//! (`store/snapshot.rs`). The head, sealed last, lists the pieces in
//! order with the hash of the whole dump, the state's sequence number and
//! where the chain of segments continues from; a snapshot without its head
//! does not exist for a restore.
//!
//! Dump records are the journal's rows without sequence numbers (table,
//! key, value: the engine's own row bytes), so a restore applies both with
//! one code path. Decoding checks every length and never panics.

use super::journal::{ChainHead, JournalError, JournalRow, JournalTable, Reader};

const HEAD_MAGIC: &[u8; 4] = b"DDMS";
const HEAD_VERSION: u8 = 1;

/// What an engine's dump holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotDump {
    /// The last journal sequence the dumped state contains.
    pub state_seq: u64,
    /// The end of the chain upstream when the dump was taken: a restore
    /// replays the segments after it, skipping rows up to `state_seq`.
    pub chain: ChainHead,
    pub rows: u64,
    pub bytes: u64,
}

/// One piece of a sealed snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPiece {
    /// Keyed MAC of the piece's plaintext (`crypto::snapshot_piece_id`).
    pub id: [u8; 32],
    pub len: u32,
}

/// The head of a sealed snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotHead {
    /// Snapshots are numbered 1, 2, …; a restore looks for the newest.
    pub generation: u64,
    /// When it was taken (Unix seconds).
    pub created: u64,
    pub dump: SnapshotDump,
    /// SHA-256 of the whole dump.
    pub dump_hash: [u8; 32],
    pub pieces: Vec<SnapshotPiece>,
}

impl SnapshotHead {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(140 + self.pieces.len() * 36);
        out.extend_from_slice(HEAD_MAGIC);
        out.push(HEAD_VERSION);
        for n in [self.generation, self.created, self.dump.state_seq] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&self.dump.chain.encode());
        out.extend_from_slice(&self.dump.rows.to_le_bytes());
        out.extend_from_slice(&self.dump.bytes.to_le_bytes());
        out.extend_from_slice(&self.dump_hash);
        out.extend_from_slice(&(self.pieces.len() as u32).to_le_bytes());
        for p in &self.pieces {
            out.extend_from_slice(&p.id);
            out.extend_from_slice(&p.len.to_le_bytes());
        }
        out
    }

    pub fn decode(raw: &[u8]) -> Result<Self, JournalError> {
        let mut r = Reader(raw);
        if r.take(4)? != HEAD_MAGIC || r.take(1)? != [HEAD_VERSION] {
            return Err(JournalError::Malformed("not a snapshot head"));
        }
        let (generation, created, state_seq) = (r.u64()?, r.u64()?, r.u64()?);
        let chain = ChainHead::decode(r.take(40)?)?;
        let (rows, bytes) = (r.u64()?, r.u64()?);
        let dump_hash = r.array()?;
        let count = r.u32()? as usize;
        if r.0.len() != count.saturating_mul(36) {
            return Err(JournalError::Malformed("snapshot head: piece list length"));
        }
        let mut pieces = Vec::with_capacity(count);
        for _ in 0..count {
            pieces.push(SnapshotPiece {
                id: r.array()?,
                len: r.u32()?,
            });
        }
        let total: u64 = pieces.iter().map(|p| p.len as u64).sum();
        if total != bytes {
            return Err(JournalError::Malformed(
                "snapshot head: pieces and size differ",
            ));
        }
        Ok(Self {
            generation,
            created,
            dump: SnapshotDump {
                state_seq,
                chain,
                rows,
                bytes,
            },
            dump_hash,
            pieces,
        })
    }
}

/// Appends one dump record (table, key, value) to `out`.
pub fn encode_record(out: &mut Vec<u8>, table: JournalTable, key: &[u8], value: &[u8]) {
    out.push(table as u8);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// Decodes a dump fed in pieces of any size into rows (sequence 0, never
/// a tombstone). Holds at most one record plus one piece.
#[derive(Default)]
pub struct DumpDecoder {
    buf: Vec<u8>,
    rows: u64,
}

impl DumpDecoder {
    /// Feeds the next bytes; answers the records they complete.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<JournalRow>, JournalError> {
        self.buf.extend_from_slice(data);
        let mut rows = Vec::new();
        let mut at = 0;
        while let Some((row, used)) = decode_record(&self.buf[at..])? {
            rows.push(row);
            at += used;
        }
        self.buf.drain(..at);
        self.rows += rows.len() as u64;
        Ok(rows)
    }

    /// Ends the dump: an unfinished record is an error. Answers the records
    /// decoded in all.
    pub fn finish(self) -> Result<u64, JournalError> {
        if self.buf.is_empty() {
            Ok(self.rows)
        } else {
            Err(JournalError::Malformed("the dump ends inside a record"))
        }
    }
}

/// One record from the front of `raw`, with the bytes it took; `None` when
/// `raw` holds only part of one.
fn decode_record(raw: &[u8]) -> Result<Option<(JournalRow, usize)>, JournalError> {
    let mut r = Reader(raw);
    let Ok(table) = r.take(1) else {
        return Ok(None);
    };
    let table = JournalTable::from_u8(table[0])?;
    let Ok(key_len) = r.u32() else {
        return Ok(None);
    };
    let Ok(key) = r.take(key_len as usize) else {
        return Ok(None);
    };
    let Ok(value_len) = r.u32() else {
        return Ok(None);
    };
    let Ok(value) = r.take(value_len as usize) else {
        return Ok(None);
    };
    let used = raw.len() - r.0.len();
    let row = JournalRow {
        seq: 0,
        table,
        key: key.to_vec(),
        value: Some(value.to_vec()),
        committed: 0,
        ends_transaction: false,
    };
    Ok(Some((row, used)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> SnapshotHead {
        SnapshotHead {
            generation: 3,
            created: 1_700_000_000,
            dump: SnapshotDump {
                state_seq: 99,
                chain: ChainHead {
                    last_seq: 90,
                    hash: [4; 32],
                },
                rows: 12,
                bytes: 30,
            },
            dump_hash: [5; 32],
            pieces: vec![
                SnapshotPiece {
                    id: [1; 32],
                    len: 10,
                },
                SnapshotPiece {
                    id: [2; 32],
                    len: 20,
                },
            ],
        }
    }

    #[test]
    fn a_head_round_trips_and_a_cut_one_is_refused() {
        let h = head();
        let raw = h.encode();
        assert_eq!(SnapshotHead::decode(&raw).unwrap(), h);
        for cut in 0..raw.len() {
            assert!(SnapshotHead::decode(&raw[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong = h.clone();
        wrong.dump.bytes = 31;
        assert!(SnapshotHead::decode(&wrong.encode()).is_err());
    }

    #[test]
    fn a_dump_decodes_whatever_the_piece_boundaries() {
        let mut dump = Vec::new();
        encode_record(&mut dump, JournalTable::Users, b"alice", b"record");
        encode_record(&mut dump, JournalTable::Nodes, &7u64.to_le_bytes(), b"");
        encode_record(&mut dump, JournalTable::Meta, b"next_id", &[1; 8]);
        for step in [1, 2, 5, 17, dump.len()] {
            let mut d = DumpDecoder::default();
            let mut rows = Vec::new();
            for piece in dump.chunks(step) {
                rows.extend(d.push(piece).unwrap());
            }
            assert_eq!(d.finish().unwrap(), 3);
            assert_eq!(rows[0].key, b"alice");
            assert_eq!(rows[1].value.as_deref(), Some(&b""[..]));
            assert_eq!(rows[2].table, JournalTable::Meta);
        }
        let mut d = DumpDecoder::default();
        d.push(&dump[..dump.len() - 1]).unwrap();
        assert!(d.finish().is_err(), "a cut dump is an error");
        let mut d = DumpDecoder::default();
        assert!(d.push(&[42, 0, 0, 0, 0]).is_err(), "unknown table");
    }
}
