//! The one write pipeline: how bytes a client sends become a file (or a
//! part of a chunked-upload session) in a user's tree.
//!
//! 1. The protocol adapter starts an upload in the content store
//!    ([`crate::store::ContentStore::begin_upload_with`]) with the length
//!    it was told and a sink for the checksums it must compute, stops it at
//!    the first byte past the owner's quota ([`crate::meta::Holdings`]),
//!    and finishes it: every chunk is stored upstream and verified.
//! 2. It checks the checksums the client announced.
//! 3. It hands the [`FinishedUpload`] to [`commit_file`] or
//!    [`record_part`], which consume it: the metadata operation runs while
//!    the upload's chunks are still pinned, and the pins go only once it
//!    has answered. No other way to reference stored chunks exists, so a
//!    commit can never reference a chunk the collector is deleting
//!    (invariant 3).

use crate::meta::{FileCommit, Meta, NewPart, Node, NsError, Owner, UploadError};
use crate::store::FinishedUpload;

/// What is recorded with a file besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct FileAttrs {
    /// Modification time (Unix ns); now when absent.
    pub mtime: Option<i64>,
    /// The ownCloud checksums, as `oc:checksums` shows them.
    pub checksums: Option<String>,
}

/// Makes `upload` the file at `path` (new, or a new version). Answers the
/// committed node and whether it was created.
pub async fn commit_file(
    meta: &Meta,
    owner: &Owner,
    path: &[String],
    upload: FinishedUpload,
    attrs: FileAttrs,
) -> Result<(Node, bool), NsError> {
    upload
        .record_with(|stored| async move {
            let commit = FileCommit {
                size: stored.size,
                chunks: stored.manifest,
                uploaded: stored.uploaded,
                mtime: attrs.mtime,
                checksums: attrs.checksums,
            };
            meta.commit_file(owner, path, &commit).await
        })
        .await
}

/// Records `upload` as part `name` of the chunked-upload session
/// `transfer` (replacing a part of that name). Answers its size.
pub async fn record_part(
    meta: &Meta,
    owner: &Owner,
    transfer: &str,
    name: &str,
    upload: FinishedUpload,
) -> Result<u64, UploadError> {
    upload
        .record_with(|stored| async move {
            let part = NewPart {
                size: stored.size,
                chunks: stored.manifest,
                uploaded: stored.uploaded,
            };
            meta.add_part(owner, transfer, name, &part).await?;
            Ok(part.size)
        })
        .await
}
