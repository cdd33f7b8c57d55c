//! Chunked-upload sessions as the metadata sees them (ownCloud "chunking
//! NG"): the session and part records, the names a part may have and
//! their order, and the errors of session operations. The engine keeps
//! them (see the redb engine's `sessions`), keyed by the user's id, so a
//! user can never name, list or touch another user's transfer.

use serde::{Deserialize, Serialize};

use crate::crypto::ChunkId;
use crate::meta::records::{ManifestEntry, Node};
use crate::meta::tree::NsError;
use crate::meta::IndexError;

/// Longest transfer id and part name accepted.
const MAX_NAME: usize = 200;

/// Open sessions one user may have at once (each costs index space until
/// it is finished, abandoned or expires).
pub const MAX_SESSIONS_PER_USER: usize = 1000;

/// Errors of chunked-upload sessions.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("no such upload")]
    NoSession,
    #[error("an upload with this id already exists")]
    SessionExists,
    #[error("too many unfinished uploads ({0}); finish or delete some first")]
    TooMany(usize),
    #[error("no such chunk")]
    NoPart,
    #[error("invalid upload or chunk name {0:?}")]
    BadName(String),
    #[error("chunk {0:?} would duplicate the position of chunk {1:?}")]
    DuplicatePosition(String, String),
    #[error("the upload would exceed its announced total length of {0} bytes")]
    OverTotal(u64),
    #[error("the chunks sum up to {actual} bytes, not the announced {expected}")]
    LengthMismatch { expected: u64, actual: u64 },
    #[error("the chunks do not form a contiguous file: {0}")]
    Gap(String),
    #[error("the destination changed since the client last saw it")]
    PreconditionFailed,
    #[error("the destination already exists and overwriting was not allowed")]
    DestinationExists,
    #[error("the chunks changed while the upload was being assembled")]
    Changed,
    #[error(transparent)]
    Namespace(#[from] NsError),
}

impl From<IndexError> for UploadError {
    fn from(e: IndexError) -> Self {
        UploadError::Namespace(NsError::Index(e))
    }
}

/// A transfer folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSession {
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds of the last change (expiry counts from here).
    pub updated: i64,
    /// `OC-Total-Length` announced at creation, if any.
    pub total_length: Option<u64>,
    /// Bytes held by the session's parts.
    pub received: u64,
}

/// What the assembled file records besides its content.
#[derive(Debug, Clone, Default)]
pub struct AssembleMeta {
    pub mtime: Option<i64>,
    pub checksums: Option<String>,
    pub expected_manifest: Option<Vec<ManifestEntry>>,
}

/// One part of a transfer, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub name: String,
    pub size: u64,
    pub modified: i64,
}

/// What a chunk PUT stored.
#[derive(Debug, Clone)]
pub struct NewPart {
    pub size: u64,
    pub chunks: Vec<ManifestEntry>,
    /// Chunks this PUT stored in the backend, with their object sizes.
    pub uploaded: Vec<(ChunkId, u32)>,
}

/// How the final MOVE may replace its destination.
#[derive(Debug, Clone, Default)]
pub struct AssembleCheck {
    /// `OC-Total-Length`: the parts must sum up to it.
    pub total_length: Option<u64>,
    /// The destination must exist with this (unquoted) etag (`If`,
    /// `If-Match`).
    pub if_etag: Option<String>,
    /// `If-None-Match: *` or `Overwrite: F`: the destination must not exist.
    pub must_not_exist: bool,
}

/// The result of an assembly.
#[derive(Debug, Clone)]
pub struct Assembled {
    pub node: Node,
    pub created: bool,
}

/// A validated transfer id or part name: one path segment, printable
/// ASCII-safe text without separators.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

/// A part's position key: its leading decimal digits (byte offset for
/// ownCloud, index for Nextcloud, `start-end` for rclone and Nextcloud's
/// documented scheme). Parts are assembled in this order.
pub fn part_key(name: &str) -> Option<u128> {
    let digits: &str = &name[..name
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(name.len())];
    if digits.is_empty() || digits.len() > 38 {
        return None;
    }
    digits.parse().ok()
}

/// Puts parts in assembly order: by the number their names carry, which
/// must be either consecutive byte offsets (owncloudcmd, rclone) or
/// consecutive indexes from 0 or 1 (nextcloudcmd). Takes (name, size,
/// payload) and answers (name, payload) in order.
pub fn order_parts<T>(parts: Vec<(String, u64, T)>) -> Result<Vec<(String, T)>, UploadError> {
    let mut keyed = Vec::with_capacity(parts.len());
    for (name, size, payload) in parts {
        let key = part_key(&name).ok_or_else(|| UploadError::BadName(name.clone()))?;
        keyed.push((key, name, size, payload));
    }
    keyed.sort_by_key(|a| a.0);
    for w in keyed.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(UploadError::DuplicatePosition(
                w[1].1.clone(),
                w[0].1.clone(),
            ));
        }
    }
    let mut offset: u128 = 0;
    let mut offsets_match = true;
    for (key, _, size, _) in &keyed {
        if *key != offset {
            offsets_match = false;
        }
        offset += *size as u128;
    }
    let first = keyed.first().map_or(0, |k| k.0);
    let indexes_match = first <= 1
        && keyed
            .iter()
            .enumerate()
            .all(|(i, k)| k.0 == first + i as u128);
    if !(offsets_match || indexes_match) {
        return Err(UploadError::Gap(
            "their names are neither consecutive byte offsets nor consecutive numbers".into(),
        ));
    }
    Ok(keyed.into_iter().map(|(_, n, _, p)| (n, p)).collect())
}

/// The assembly order of parts given as (name, size).
pub fn order_of(parts: &[(String, u64)]) -> Result<Vec<String>, UploadError> {
    let parts = parts.iter().map(|(n, s)| (n.clone(), *s, ())).collect();
    Ok(order_parts(parts)?.into_iter().map(|(n, ())| n).collect())
}
