//! The one place where every layer's errors become HTTP statuses.
//!
//! Each module has its own error enum; a request that fails carries a
//! [`GatewayError`] and [`GatewayError::status`] decides what the client
//! sees. The WebDAV layer also needs a `dav_server::fs::FsError`; that
//! mapping lives here too, so the two cannot drift apart.

use dav_server::fs::FsError;
use http::StatusCode;

use crate::backend::BackendError;
use crate::http::body::BodyError;
use crate::meta::IndexError;
use crate::meta::{NsError, UploadError};
use crate::store::StoreError;

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
    #[error("checksum mismatch: {0}")]
    ChecksumMismatch(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("{0}")]
    NotImplemented(&'static str),
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
        NsError::MissingChunk(_) | NsError::Index(_) => StatusCode::INTERNAL_SERVER_ERROR,
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

impl GatewayError {
    /// The HTTP status a client gets for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Namespace(e) => namespace_status(e),
            Self::Upload(e) => upload_status(e),
            Self::Store(StoreError::Backend(e)) | Self::Backend(e) => backend_status(e),
            Self::Store(StoreError::TooShort { .. }) | Self::Store(StoreError::TooLong { .. }) => {
                StatusCode::BAD_REQUEST
            }
            Self::Store(StoreError::Object { .. }) => StatusCode::BAD_GATEWAY,
            Self::Store(_) | Self::Index(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ChecksumMismatch(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
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

    /// The closest `FsError` for the WebDAV library.
    pub fn fs_error(&self) -> FsError {
        match self.status() {
            StatusCode::NOT_FOUND => FsError::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => FsError::Exists,
            StatusCode::CONFLICT => match self {
                Self::Namespace(NsError::ParentMissing) => FsError::NotFound,
                Self::Namespace(NsError::NotEmpty) => FsError::Exists,
                _ => FsError::Forbidden,
            },
            StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED => {
                FsError::Forbidden
            }
            StatusCode::INSUFFICIENT_STORAGE => FsError::InsufficientStorage,
            StatusCode::NOT_IMPLEMENTED => FsError::NotImplemented,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => FsError::IsRemote,
            _ => FsError::GeneralFailure,
        }
    }
}
