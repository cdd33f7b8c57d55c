//! The metadata: users, every user's tree, file manifests, chunk
//! references, upload sessions and counters.

pub mod app_passwords;
pub mod audit;
pub mod codec;
#[cfg(test)]
mod conformance;
pub mod consistency;
mod error;
pub mod history;
pub mod journal;
pub mod metrics;
mod operations;
mod path;
pub mod quota;
pub mod records;
mod redb;
pub mod restore;
pub mod scrub;
pub mod sessions;
pub mod snapshot;
pub mod totp;
pub mod tree;
pub mod upstream_gate;

pub use app_passwords::{AppPasswordInfo, AppPasswordVerifier, NewAppPassword};
pub use audit::{AuditEntry, AuditRecord};
pub use consistency::{Consistency, Inconsistency};
pub use error::IndexError;
pub use operations::Meta;
pub use path::{split_path, NamePath};
pub use quota::{Holdings, REFUSED_BODY_DRAIN};
pub use records::{
    manifest_digest, prop_cost, valid_user_name, ChunkRecord, ExpiredPending, ManifestEntry,
    NewUser, Node, NodeKind, PackRecord, PackedAt, PendingRecord, Relocated, Stats, StoredProp,
    UserRecord, UserUpdate,
};
pub use scrub::{ScrubFinding, ScrubProblem, ScrubState};
pub use sessions::{
    AssembleCheck, AssembleMeta, Assembled, NewPart, PartInfo, UploadError, UploadSession,
};
pub use totp::TotpRecord;
pub use tree::{FileCommit, NsError, Owner, PropLimits, WriteTarget};

/// Test support only: breaks an index file on purpose so tests can show
/// that `Meta::verify` and `dedupdav check` find it. Never used by the
/// gateway; works on an index no process has open.
#[doc(hidden)]
pub mod fault_injection {
    pub use super::redb::check::fault_injection::{add_dangling_dirent, corrupt_refcount};
}
