//! Sealing snapshots of the metadata upstream, and deleting what newer
//! snapshots made redundant.
//!
//! A snapshot: the metadata dumps every row, as of one committed state,
//! into a local file (`Meta::dump_snapshot`); the dump is cut into
//! content-defined pieces (the chunker, with its own sizes), each sealed
//! under a keyed MAC of its plaintext; pieces a kept snapshot already has
//! are not stored again, so an index that changed in a few places costs a
//! few pieces. The head (`meta/snapshot.rs`), put last, names the pieces;
//! it is recorded in the index only once it is upstream.
//!
//! Deleting: [`KEEP_SNAPSHOTS`] newest are kept (the older one is the
//! fallback when the newest cannot be read). An older head goes first, so
//! a restore never finds a head whose pieces are gone; then its pieces no
//! kept snapshot names; then every chain segment that ends at or before
//! the oldest kept snapshot's chain head: a restore starts from a kept
//! snapshot and replays only segments after its chain head.

use std::collections::HashSet;
use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::chunker::{Cdc, ChunkSizes, Chunker};
use super::{ContentStore, StoreError};
use crate::meta::snapshot::{SnapshotHead, SnapshotPiece};
use crate::meta::IndexError;

/// Snapshots kept upstream: the newest and one to fall back on.
pub const KEEP_SNAPSHOTS: usize = 2;

/// Piece sizes. Smaller than file chunks: a change to a few files touches
/// a few rows spread over the dump (by table, then key), and each touched
/// piece is stored again, so the average bounds the bytes per change;
/// 256 KiB keeps a 100,000-file index (about 30 MB of dump) at about 120
/// pieces.
const PIECE_SIZES: ChunkSizes = ChunkSizes {
    min: 64 << 10,
    avg: 256 << 10,
    max: 1 << 20,
};

/// What sealing a snapshot did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotReport {
    pub generation: u64,
    pub rows: u64,
    pub dump_bytes: u64,
    pub pieces: u64,
    /// Pieces stored now (the rest were upstream already).
    pub new_pieces: u64,
    /// Sealed bytes stored now (new pieces and the head).
    pub stored_bytes: u64,
}

impl ContentStore {
    /// Seals a snapshot of the metadata, using `work_dir` for the dump.
    /// `None` when nothing changed since the newest snapshot (neither the
    /// state nor where the chain continues from).
    pub async fn seal_snapshot(
        &self,
        work_dir: &Path,
    ) -> Result<Option<SnapshotReport>, StoreError> {
        let kept = self.meta.snapshots().await?;
        let generation = kept.last().map_or(1, |h| h.generation + 1);
        let path = work_dir.join(format!("snapshot-{generation}.dump"));
        let dump = self.meta.dump_snapshot(&path).await;
        let result = match dump {
            // Nothing changed: the same state, continued by the same chain
            // (a restore keeps the state but starts a new chain, which
            // needs a snapshot naming it).
            Ok(dump) if kept.last().is_some_and(|h| h.dump == dump) => Ok(None),
            Ok(dump) => {
                let known = kept.iter().flat_map(|h| h.pieces.iter().map(|p| p.id));
                let mut head = SnapshotHead {
                    generation,
                    created: crate::clock::unix_secs().max(0) as u64,
                    dump,
                    dump_hash: [0; 32],
                    pieces: Vec::new(),
                };
                self.seal_dump(&path, &mut head, known.collect())
                    .await
                    .map(Some)
            }
            Err(e) => Err(e.into()),
        };
        let _ = tokio::fs::remove_file(&path).await;
        result
    }

    /// Cuts the dump at `path` into pieces, stores the new ones, then the
    /// head, and records it.
    async fn seal_dump(
        &self,
        path: &Path,
        head: &mut SnapshotHead,
        mut known: HashSet<[u8; 32]>,
    ) -> Result<SnapshotReport, StoreError> {
        let io = |e: std::io::Error| StoreError::Index(IndexError::Storage(Box::new(e)));
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut chunker = Chunker::new(Cdc::new(self.keys.gear.clone(), PIECE_SIZES));
        let mut hash = Sha256::new();
        let mut report = SnapshotReport {
            generation: head.generation,
            rows: head.dump.rows,
            dump_bytes: head.dump.bytes,
            ..Default::default()
        };
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).await.map_err(io)?;
            let pieces = if n == 0 {
                chunker.finish()
            } else {
                hash.update(&buf[..n]);
                chunker.push(&buf[..n])
            };
            for plain in pieces {
                let piece = self.metadata.piece(&plain);
                if known.insert(piece.id) {
                    report.stored_bytes += self.metadata.put_piece(&piece, &plain).await?;
                    report.new_pieces += 1;
                }
                head.pieces.push(piece);
            }
            if n == 0 {
                break;
            }
        }
        head.dump_hash = hash.finalize().into();
        report.pieces = head.pieces.len() as u64;
        let plain = head.encode();
        report.stored_bytes += self.metadata.put_head(head.generation, &plain).await?;
        self.meta.record_snapshot(head).await?;
        Ok(report)
    }

    /// Deletes snapshots beyond the [`KEEP_SNAPSHOTS`] newest, their pieces
    /// no kept one names, and the segments the oldest kept one makes
    /// redundant. Answers the objects deleted.
    pub async fn prune_snapshots(&self) -> Result<u64, StoreError> {
        let heads = self.meta.snapshots().await?;
        let Some(split) = heads.len().checked_sub(KEEP_SNAPSHOTS) else {
            return Ok(0);
        };
        let (old, kept) = heads.split_at(split);
        let mut live: HashSet<[u8; 32]> = pieces_of(kept);
        let mut deleted = 0u64;
        for head in old {
            self.metadata.delete_head(head.generation).await?;
            deleted += 1;
            for piece in &head.pieces {
                if live.insert(piece.id) {
                    self.metadata.delete_piece(&piece.id).await?;
                    deleted += 1;
                }
            }
            self.meta.forget_snapshot(head.generation).await?;
        }
        if let Some(oldest) = kept.first() {
            let redundant = self
                .meta
                .upstream_segments(oldest.dump.chain.last_seq)
                .await?;
            let mut firsts = Vec::with_capacity(redundant.len());
            for (first, _) in redundant {
                self.metadata.delete_segment(first).await?;
                firsts.push(first);
                deleted += 1;
            }
            self.meta.forget_upstream_segments(&firsts).await?;
        }
        Ok(deleted)
    }
}

fn pieces_of(heads: &[SnapshotHead]) -> HashSet<[u8; 32]> {
    heads
        .iter()
        .flat_map(|h| h.pieces.iter().map(|p: &SnapshotPiece| p.id))
        .collect()
}
