//! The metadata: users, every user's tree, file manifests, chunk
//! references, upload sessions and counters.

pub mod codec;
#[cfg(test)]
mod conformance;
mod error;
mod operations;
mod path;
pub mod quota;
pub mod records;
mod redb;
pub mod scrub;
pub mod sessions;
pub mod tree;

pub use error::IndexError;
pub use operations::Meta;
pub use path::{split_path, NamePath};
pub use quota::{Holdings, REFUSED_BODY_DRAIN};
pub use records::{
    manifest_digest, prop_cost, valid_user_name, ChunkRecord, ExpiredPending, ManifestEntry,
    NewUser, Node, NodeKind, PendingRecord, Stats, StoredProp, UserRecord,
};
pub use scrub::{ScrubFinding, ScrubProblem, ScrubState};
pub use sessions::{
    AssembleCheck, AssembleMeta, Assembled, NewPart, PartInfo, UploadError, UploadSession,
};
pub use tree::{FileCommit, NsError, Owner, PropLimits, WriteTarget};
