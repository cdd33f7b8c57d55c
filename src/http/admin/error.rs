//! The admin API's errors and the one place they become HTTP statuses and
//! JSON bodies (`{"error": "...", "status": N}`). The WebDAV side keeps its
//! own map (`wire/error.rs`); this one speaks JSON to scripts.

use http::{header, HeaderValue, Response, StatusCode};

use crate::accounts::app_passwords::AppPasswordError;
use crate::accounts::AdminError;
use crate::http::auth::AuthError;
use crate::meta::IndexError;
use crate::wire::body::BodyError;
use crate::wire::reply::{full, GwBody};

/// Why an admin request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("authentication required: HTTP Basic with an administrator's name and password")]
    Unauthenticated,
    #[error("the admin API is for administrators")]
    Forbidden,
    #[error("too many logins are being checked; try again shortly")]
    Busy,
    #[error("no such endpoint")]
    NoEndpoint,
    #[error("method not allowed here")]
    Method,
    #[error("no user {0:?}")]
    NoUser(String),
    #[error("no job {0:?} runs on this gateway")]
    NoJob(String),
    #[error("the background jobs are not running")]
    NoJobs,
    #[error("{0}")]
    Missing(String),
    #[error("user {0:?} already exists")]
    Exists(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Busy | Self::NoJobs => StatusCode::SERVICE_UNAVAILABLE,
            Self::NoEndpoint | Self::NoUser(_) | Self::NoJob(_) | Self::Missing(_) => {
                StatusCode::NOT_FOUND
            }
            Self::Method => StatusCode::METHOD_NOT_ALLOWED,
            Self::Exists(_) => StatusCode::CONFLICT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON reply; 401 names the scheme, 503 asks to retry.
    pub fn response(&self) -> Response<GwBody> {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "admin request failed");
        }
        let body = serde_json::json!({"error": self.to_string(), "status": status.as_u16()});
        let mut res = json_response(status, &body);
        match self {
            Self::Unauthenticated => {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"dedupdav\", charset=\"UTF-8\""),
                );
            }
            Self::Busy => {
                res.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(crate::http::auth::BUSY_RETRY_AFTER_SECS),
                );
            }
            _ => {}
        }
        res
    }
}

/// A JSON reply.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<GwBody> {
    let mut res = Response::new(full(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::Malformed | AuthError::Wrong => Self::Unauthenticated,
            AuthError::Busy => Self::Busy,
            e @ (AuthError::Index(_) | AuthError::Hash(_) | AuthError::Check(_)) => {
                Self::Internal(format!("authentication is unavailable: {e}"))
            }
        }
    }
}

impl From<IndexError> for ApiError {
    fn from(e: IndexError) -> Self {
        match e {
            IndexError::NoSuchUser(n) => Self::NoUser(n),
            e @ IndexError::NoSuchAppPassword { .. } => Self::Missing(e.to_string()),
            e @ (IndexError::TooManyAppPasswords { .. } | IndexError::BadAppPasswordLabel) => {
                Self::BadRequest(e.to_string())
            }
            IndexError::UserExists(n) => Self::Exists(n),
            e @ IndexError::BadUserName(_) => Self::BadRequest(e.to_string()),
            e => Self::Internal(e.to_string()),
        }
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::Index(e) => e.into(),
            e @ (AdminError::BadSize(_) | AdminError::EmptyPassword) => {
                Self::BadRequest(e.to_string())
            }
            e => Self::Internal(e.to_string()),
        }
    }
}

impl From<AppPasswordError> for ApiError {
    fn from(e: AppPasswordError) -> Self {
        match e {
            AppPasswordError::Index(e) => e.into(),
            e @ AppPasswordError::BadLabel(_) => Self::BadRequest(e.to_string()),
        }
    }
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::TooLarge(n) => Self::TooLarge(n),
            e => Self::BadRequest(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let cases = [
            (ApiError::from(AuthError::Wrong), 401),
            (ApiError::Forbidden, 403),
            (ApiError::from(IndexError::NoSuchUser("x".into())), 404),
            (ApiError::from(IndexError::UserExists("x".into())), 409),
            (ApiError::from(IndexError::BadUserName("../x".into())), 400),
            (ApiError::from(AdminError::EmptyPassword), 400),
            (ApiError::from(BodyError::TooLarge(10)), 413),
            (ApiError::from(AuthError::Busy), 503),
        ];
        for (e, status) in cases {
            assert_eq!(e.status().as_u16(), status, "{e}");
            assert_eq!(e.response().status().as_u16(), status);
        }
        assert!(ApiError::Unauthenticated
            .response()
            .headers()
            .contains_key(header::WWW_AUTHENTICATE));
    }
}
