//! dav-server's view of our errors. Its file-system calls can only fail
//! with an `FsError`, which it turns into a status of its own choosing; the
//! request's [`crate::wire::error::FailureSlot`] keeps the precise error for the ones
//! where that choice would be wrong.

use dav_server::fs::FsError;
use http::StatusCode;

use crate::meta::NsError;
use crate::wire::error::GatewayError;

/// The closest `FsError` for dav-server, decided from the status the
/// error has everywhere else ([`GatewayError::status`]).
pub(crate) fn fs_error(e: &GatewayError) -> FsError {
    match e.status() {
        StatusCode::NOT_FOUND => FsError::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => FsError::Exists,
        StatusCode::CONFLICT => match e {
            GatewayError::Namespace(NsError::ParentMissing) => FsError::NotFound,
            GatewayError::Namespace(NsError::NotEmpty) => FsError::Exists,
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
