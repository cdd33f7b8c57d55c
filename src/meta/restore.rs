//! Loading a restored metadata into a new engine file: the rows of a
//! snapshot and of the chain after it go in batch by batch, then the
//! journal's state and the record of the upstream copy, and every chunk's
//! reference count is recounted from the manifests. The use case that
//! finds and checks the rows is `recovery/`; this is the engine-neutral
//! face of the engine's loader.

use std::path::Path;

use super::journal::{ChainHead, JournalRow};
use super::redb::snapshot::RestoreTarget as RedbTarget;
use super::snapshot::SnapshotHead;
use super::IndexError;

/// A metadata file being filled by a restore.
pub struct Restorer {
    engine: Target,
}

enum Target {
    Redb(RedbTarget),
}

impl Restorer {
    /// Creates a new redb metadata file at `path` (which must not exist).
    pub fn create_redb(path: &Path) -> Result<Self, IndexError> {
        Ok(Self {
            engine: Target::Redb(RedbTarget::create(path)?),
        })
    }

    /// Applies rows (values or tombstones) in one transaction.
    pub fn apply(&self, rows: &[JournalRow]) -> Result<(), IndexError> {
        match &self.engine {
            Target::Redb(t) => t.apply(rows),
        }
    }

    /// Writes where the journal and the upstream copy stand, recounts the
    /// references, and makes everything durable.
    pub fn finish(self, state: &RestoredState) -> Result<Recount, IndexError> {
        match self.engine {
            Target::Redb(t) => t.finish(state),
        }
    }
}

/// Where a restore ends: written with the rows' last batch.
#[derive(Clone, Debug, Default)]
pub struct RestoredState {
    /// The sequence number the next change takes.
    pub next_seq: u64,
    /// Where the chain continues from (the head a new snapshot names).
    pub chain: ChainHead,
    /// Segments upstream that older snapshots still need (first, last).
    pub segments: Vec<(u64, u64)>,
    /// Snapshots upstream.
    pub snapshots: Vec<SnapshotHead>,
}

/// What recounting the references from the manifests changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recount {
    /// Chunk records whose reference count was corrected.
    pub corrected: u64,
    /// Chunks manifests name without a chunk record (`check` lists them).
    pub unrecorded: u64,
}
