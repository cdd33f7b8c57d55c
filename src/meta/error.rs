//! Errors of the metadata store, whatever engine holds it.

/// Errors of the metadata index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("the index {path} is in use by another process (is `dedupdav serve` running? stop it first)")]
    InUse { path: String },
    #[error("the index has schema version {found}, this build understands {expected}; refusing to open it")]
    SchemaMismatch { found: u64, expected: u64 },
    /// The engine failed; the cause is kept as the error's source.
    #[error("index storage error: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("corrupt index record in {table}: {cause}")]
    Corrupt { table: &'static str, cause: String },
    #[error("the metadata journal: {0}")]
    Journal(#[from] super::journal::JournalError),
    /// Zero-lag mode: the change is committed in the index but was not
    /// confirmed upstream in time (it goes up later); answered with 503.
    #[error(transparent)]
    NotUpstream(#[from] super::upstream_gate::UpstreamGateError),
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("no user named {0}")]
    NoSuchUser(String),
    #[error("invalid user name {0:?}: use 1-64 letters, digits, '.', '_', '-' or '@'")]
    BadUserName(String),
    #[error("user {user} already has {max} app passwords; revoke one first")]
    TooManyAppPasswords { user: String, max: usize },
    #[error("user {user} has no app password {id}")]
    NoSuchAppPassword { user: String, id: u64 },
    #[error("invalid app password label: use 1-100 bytes without control characters")]
    BadAppPasswordLabel,
}
