//! What a consistency walk of the metadata found: the figures it counted
//! and every way the records disagree with each other. Engine-neutral, so
//! every engine's `verify` answers the same type and `dedupdav check`
//! renders it whatever holds the metadata.
//!
//! Why these checks: each one is a relation the operations keep inside
//! their transactions. When one breaks, something outside the operations
//! (a bug, a damaged disk, a hand edit) changed the index, and the next
//! operation may act on a wrong premise: the collector deletes by
//! refcount, quotas refuse by `used`, listings trust dirents.

use serde::Serialize;

/// The most findings a walk keeps; the rest are only counted, so a badly
/// damaged index cannot make the report itself unbounded.
pub const MAX_FINDINGS: usize = 1_000;

/// What one walk over a consistent snapshot of the metadata found.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Consistency {
    pub users: u64,
    pub nodes: u64,
    pub files: u64,
    pub dirents: u64,
    pub chunks: u64,
    /// Manifest entries of files and of chunked-upload parts.
    pub references: u64,
    pub sessions: u64,
    pub parts: u64,
    /// The first [`MAX_FINDINGS`] findings.
    pub findings: Vec<Inconsistency>,
    /// Findings beyond those listed.
    pub findings_not_listed: u64,
}

impl Consistency {
    /// Whether the walk found nothing wrong.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty() && self.findings_not_listed == 0
    }

    /// Records a finding (or only counts it, past [`MAX_FINDINGS`]).
    pub fn found(&mut self, finding: Inconsistency) {
        if self.findings.len() < MAX_FINDINGS {
            self.findings.push(finding);
        } else {
            self.findings_not_listed += 1;
        }
    }
}

/// One way the metadata disagrees with itself. Chunk ids are in hex.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Inconsistency {
    /// A chunk record's reference count differs from the number of
    /// manifest entries (files and parts) naming the chunk.
    RefcountMismatch {
        chunk: String,
        recorded: u64,
        referenced: u64,
    },
    /// A chunk with references is marked unreferenced, or one without
    /// references carries no mark (the collector never finds it).
    CollectorMark {
        chunk: String,
        refs: u64,
        unreferenced_since: u64,
    },
    /// A manifest (of `node`, or of a part when `node` is 0) names a chunk
    /// the index has no record of.
    UnknownChunk {
        chunk: String,
        node: u64,
        references: u64,
    },
    /// A dirent names a node that does not exist.
    DanglingDirent {
        parent: u64,
        name: String,
        child: u64,
    },
    /// A dirent sits in a node that does not exist or is not a folder.
    DirentOutsideFolder { parent: u64, name: String },
    /// A dirent links nodes of two owners.
    ForeignDirent {
        parent: u64,
        name: String,
        parent_owner: u64,
        child_owner: u64,
    },
    /// A node's `parent` is not the folder whose dirent names it.
    WrongParent {
        node: u64,
        recorded: u64,
        named_in: u64,
    },
    /// A node is named by more than one dirent.
    NamedTwice { node: u64, dirents: u64 },
    /// A node no dirent names and that is no user's root.
    Unreachable { node: u64, owner: u64 },
    /// A node whose owner is no user.
    NoOwner { node: u64, owner: u64 },
    /// A user's root node is missing, not a folder, or not theirs.
    BadRoot { user: String, root: u64 },
    /// A user's `used` differs from their files' sizes plus the cost of
    /// their dead properties.
    UsageMismatch {
        user: String,
        recorded: u64,
        computed: u64,
    },
    /// The installation's file counter differs from the file nodes.
    FileCountMismatch { recorded: u64, counted: u64 },
    /// The stored-bytes counter differs from the sizes of the chunk
    /// objects and packs.
    StoredBytesMismatch { recorded: u64, summed: u64 },
    /// A pack's live counts differ from the chunk records located in it.
    PackLiveMismatch {
        pack: String,
        recorded: (u32, u32),
        counted: (u32, u32),
    },
    /// A chunk record located in a pack the index has no record of.
    MissingPack { chunk: String, pack: String },
    /// A file's size differs from the sum of its manifest's lengths.
    ManifestSize {
        node: u64,
        size: u64,
        manifest_bytes: u64,
    },
    /// A manifest of a node that does not exist or is a folder.
    OrphanManifest { node: u64 },
    /// Dead properties of a node that does not exist.
    OrphanProps { node: u64 },
    /// A folder's size differs from the sum of its entries' sizes.
    FolderSize {
        node: u64,
        recorded: u64,
        computed: u64,
    },
    /// A chunked-upload part whose session or user does not exist.
    OrphanPart {
        user: u64,
        transfer: String,
        part: String,
    },
    /// A part's size differs from its manifest's lengths.
    PartSize {
        user: u64,
        transfer: String,
        part: String,
        size: u64,
        manifest_bytes: u64,
    },
    /// A session's received bytes differ from its parts' sizes.
    SessionBytes {
        user: u64,
        transfer: String,
        recorded: u64,
        parts: u64,
    },
    /// An app password whose user does not exist.
    OrphanAppPassword { user: u64, id: u64 },
}
