//! What the tree operations take and answer, whatever engine runs them:
//! the user a request acts for, a finished upload ready to commit, the
//! result of resolving a write's target, the caps on dead properties, and
//! the errors of tree operations.

use crate::crypto::ChunkId;
use crate::meta::quota::Holdings;
use crate::meta::records::{ManifestEntry, Node, UserRecord};
use crate::meta::IndexError;

/// Errors of namespace operations.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    Exists,
    #[error("a parent folder does not exist")]
    ParentMissing,
    #[error("not a folder")]
    NotADirectory,
    #[error("is a folder")]
    IsADirectory,
    #[error("folder is not empty")]
    NotEmpty,
    #[error("invalid name: {0}")]
    BadName(String),
    #[error("a folder cannot be moved into itself")]
    IntoItself,
    #[error("the root folder cannot be changed that way")]
    Root,
    #[error("quota exceeded: {needed} bytes needed, {available} available")]
    QuotaExceeded { needed: u64, available: u64 },
    #[error("too many dead properties: a node may have at most {0}")]
    TooManyProps(usize),
    #[error("the value of property {name:?} has {len} bytes, more than the {max} allowed")]
    PropTooLarge {
        name: String,
        len: usize,
        max: usize,
    },
    #[error("chunk {0:?} is not stored")]
    MissingChunk(ChunkId),
    #[error("the account no longer exists")]
    NoUser,
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// The user a request acts for.
#[derive(Debug, Clone)]
pub struct Owner {
    pub id: u64,
    pub name: String,
    pub root: u64,
}

impl From<&UserRecord> for Owner {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id,
            name: u.name.clone(),
            root: u.root,
        }
    }
}

/// A finished upload, ready to become the file's new version.
#[derive(Debug, Clone)]
pub struct FileCommit {
    pub size: u64,
    pub chunks: Vec<ManifestEntry>,
    /// Chunks this upload stored in the backend, with their object sizes.
    pub uploaded: Vec<(ChunkId, u32)>,
    /// Modification time to record (Unix ns); now when absent.
    pub mtime: Option<i64>,
    pub checksums: Option<String>,
}

/// See [`super::Meta::write_target`]. `existing` and `parent` are what
/// [`super::Meta::lookup`] would answer for the path and its parent.
#[derive(Debug)]
pub struct WriteTarget {
    pub existing: Result<Node, NsError>,
    pub parent: Result<Node, NsError>,
    /// What the owner holds against their quota.
    pub holdings: Holdings,
}

/// Caps on dead properties (`limits.props_per_node`,
/// `limits.prop_value_bytes`); what they take counts in the quota too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PropLimits {
    pub per_node: usize,
    pub value_bytes: usize,
}

impl Default for PropLimits {
    fn default() -> Self {
        Self {
            per_node: 256,
            value_bytes: 64 << 10,
        }
    }
}
