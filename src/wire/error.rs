//! The one place where every layer's errors become HTTP statuses.
//!
//! Each module has its own error enum; a request that fails carries a
//! [`GatewayError`] and [`GatewayError::status`] decides what the client
//! sees. The WebDAV layer turns a status into the closest error of its
//! library (`webdav/errors.rs`), from [`GatewayError::status`], so the two
//! cannot drift apart.

use std::sync::Arc;

use http::StatusCode;
use parking_lot::Mutex;

use crate::backend::BackendError;
use crate::files::refused::RefusedName;
use crate::meta::{IndexError, LockError};
use crate::meta::{NsError, UploadError};
use crate::store::StoreError;
use crate::wire::body::BodyError;

/// Any error a request can end with.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Namespace(#[from] NsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("checksum mismatch: {0}")]
    ChecksumMismatch(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("{0}")]
    NotImplemented(&'static str),
    #[error(transparent)]
    RefusedName(#[from] RefusedName),
}

fn backend_status(e: &BackendError) -> StatusCode {
    match e {
        BackendError::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        BackendError::Unreachable { .. } | BackendError::Transient { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        BackendError::NotFound(_)
        | BackendError::Permanent { .. }
        | BackendError::Corrupt { .. } => StatusCode::BAD_GATEWAY,
        BackendError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn namespace_status(e: &NsError) -> StatusCode {
    match e {
        NsError::NotFound => StatusCode::NOT_FOUND,
        NsError::Exists => StatusCode::METHOD_NOT_ALLOWED,
        NsError::ParentMissing | NsError::NotADirectory | NsError::NotEmpty => StatusCode::CONFLICT,
        NsError::IsADirectory => StatusCode::CONFLICT,
        NsError::BadName(_) => StatusCode::BAD_REQUEST,
        NsError::IntoItself | NsError::Root => StatusCode::FORBIDDEN,
        NsError::QuotaExceeded { .. } | NsError::TooManyProps(_) | NsError::PropTooLarge { .. } => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        NsError::NoUser => StatusCode::UNAUTHORIZED,
        NsError::MissingChunk(_) => StatusCode::INTERNAL_SERVER_ERROR,
        NsError::Index(e) => index_status(e),
    }
}

fn index_status(e: &IndexError) -> StatusCode {
    match e {
        // Committed locally, not yet upstream: the client should retry.
        IndexError::NotUpstream(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn upload_status(e: &UploadError) -> StatusCode {
    match e {
        UploadError::NoSession | UploadError::NoPart => StatusCode::NOT_FOUND,
        UploadError::SessionExists => StatusCode::METHOD_NOT_ALLOWED,
        UploadError::BadName(_)
        | UploadError::DuplicatePosition(..)
        | UploadError::OverTotal(_)
        | UploadError::LengthMismatch { .. }
        | UploadError::Gap(_) => StatusCode::BAD_REQUEST,
        UploadError::PreconditionFailed | UploadError::DestinationExists => {
            StatusCode::PRECONDITION_FAILED
        }
        UploadError::Changed => StatusCode::CONFLICT,
        UploadError::TooMany(_) => StatusCode::INSUFFICIENT_STORAGE,
        UploadError::Namespace(e) => namespace_status(e),
    }
}

fn lock_status(e: &LockError) -> StatusCode {
    match e {
        LockError::Conflict(_) => StatusCode::LOCKED,
        LockError::TooMany(_) => StatusCode::INSUFFICIENT_STORAGE,
        LockError::NoSuchLock => StatusCode::CONFLICT,
        LockError::Index(e) => index_status(e),
    }
}

/// The status of a request body refused by the front before the WebDAV
/// layer saw it.
pub fn body_status(e: &BodyError) -> StatusCode {
    match e {
        BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        BodyError::TooDeep(_)
        | BodyError::TooManyElements(_)
        | BodyError::TooManyAttributes(_)
        | BodyError::OwnerTooLarge(_)
        | BodyError::Doctype
        | BodyError::Malformed(_)
        | BodyError::Read(_)
        | BodyError::BadLength(_) => StatusCode::BAD_REQUEST,
    }
}

/// The status of a content-store error (a pack's error is its cause's).
fn store_status(e: &StoreError) -> StatusCode {
    match e {
        StoreError::Backend(e) => backend_status(e),
        StoreError::TooShort { .. } | StoreError::TooLong { .. } => StatusCode::BAD_REQUEST,
        StoreError::Object { .. } => StatusCode::BAD_GATEWAY,
        StoreError::Index(e) => index_status(e),
        StoreError::Pack(cause) => store_status(cause),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl GatewayError {
    /// The HTTP status a client gets for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Namespace(e) => namespace_status(e),
            Self::Upload(e) => upload_status(e),
            Self::Lock(e) => lock_status(e),
            Self::Backend(e) => backend_status(e),
            Self::Store(e) => store_status(e),
            Self::Index(e) => index_status(e),
            Self::ChecksumMismatch(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::RefusedName(_) => StatusCode::FORBIDDEN,
        }
    }

    /// Whether the WebDAV layer's own status would hide what happened, so
    /// the front must answer with [`Self::status`] instead. Expected
    /// outcomes (not found, exists, conflict) are left to the WebDAV layer.
    pub fn overrides_dav_status(&self) -> bool {
        let s = self.status();
        s.is_server_error()
            || s == StatusCode::BAD_REQUEST
            || s == StatusCode::INSUFFICIENT_STORAGE
            || s == StatusCode::UNAUTHORIZED
    }
}

/// Where the file system leaves the error a request really failed with.
#[derive(Debug, Clone, Default)]
pub struct FailureSlot(Arc<Mutex<Option<Arc<GatewayError>>>>);

impl FailureSlot {
    pub fn record(&self, e: GatewayError) -> Arc<GatewayError> {
        let e = Arc::new(e);
        if e.status().is_server_error() {
            tracing::error!(error = %e, "request failed");
        } else {
            tracing::info!(error = %e, "request refused");
        }
        let mut slot = self.0.lock();
        if slot.is_none() {
            *slot = Some(e.clone());
        }
        e
    }

    pub fn take(&self) -> Option<Arc<GatewayError>> {
        self.0.lock().take()
    }

    pub fn get(&self) -> Option<Arc<GatewayError>> {
        self.0.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::meta::upstream_gate::UpstreamGateError;

    #[test]
    fn a_change_not_upstream_in_time_is_answered_503() {
        let late = || IndexError::NotUpstream(UpstreamGateError::Timeout(Duration::from_secs(30)));
        for e in [
            GatewayError::Namespace(NsError::Index(late())),
            GatewayError::Upload(UploadError::from(late())),
            GatewayError::Index(late()),
            GatewayError::Store(StoreError::Index(late())),
        ] {
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE, "{e}");
            assert!(e.overrides_dav_status());
        }
        let other = GatewayError::Index(IndexError::NoSuchUser("x".into()));
        assert_eq!(other.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
