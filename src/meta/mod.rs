//! The metadata: users, every user's tree, file manifests, chunk
//! references, upload sessions and counters.

pub mod codec;
mod path;
pub mod records;
pub(crate) mod redb;

pub use self::redb::sessions;
pub use self::redb::tree::*;
pub use self::redb::{
    valid_user_name, ExpiredPending, Index, IndexError, NewUser, Stats, SCHEMA_VERSION,
};
pub use path::{split_path, NamePath};
pub use records::{
    manifest_digest, prop_cost, ChunkRecord, ManifestEntry, Node, NodeKind, PendingRecord,
    UserRecord,
};
