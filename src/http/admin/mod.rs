//! The admin REST API: JSON under `/api/v1/` for managing a running
//! gateway — accounts, usage, background jobs, the consistency check, the
//! upstream and the audit log (docs/api.md has every endpoint).
//!
//! This module owns the API's authentication, routing and request bodies;
//! the handlers (`handlers.rs`) stay thin and call the use cases
//! ([`crate::accounts::manage`], [`crate::files::check`], the job runner's
//! status). Errors become JSON replies in one place (`error.rs`).
//!
//! Who may call it: administrators, with HTTP Basic through the same
//! [`super::auth::Authenticator`] as every other request (a non-admin is
//! answered 403 on every endpoint, a missing or wrong login 401), and the
//! command line on the gateway's machine with the token of this run's
//! access file (`local.rs`), as the built-in local administrator.

pub mod client;
mod error;
mod handlers;
pub mod local;
mod pinned;

use std::net::SocketAddr;

use http::{header, Method, Request, Response};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use super::{Gateway, GwBody};
use crate::accounts::manage::{Actor, LOCAL_CLI};
use crate::wire::body;
pub use error::ApiError;

/// The largest request body the API reads (a user's fields are far less).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The path prefix of the API.
pub const PREFIX: &str = "/api/v1";

/// The token that authenticates the local command line, kept as its hash
/// so a comparison's timing tells nothing about the token.
pub(super) struct LocalToken([u8; 32]);

impl LocalToken {
    pub(super) fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    fn matches(&self, given: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        given == self.0
    }
}

/// Answers one API request; `rest` is the path after [`PREFIX`]. Also
/// answers the name of who asked, for the request log.
pub(super) async fn handle(
    gw: &Gateway,
    req: Request<Incoming>,
    peer: SocketAddr,
    rest: &str,
) -> (Response<GwBody>, Option<String>) {
    let actor = match authenticate(gw, &req, peer).await {
        Ok(a) => a,
        Err((e, who)) => return (e.response(), who),
    };
    let who = Some(actor.name.clone());
    match route(gw, req, &actor, rest).await {
        Ok(res) => (res, who),
        Err(e) => (e.response(), who),
    }
}

/// The administrator behind the request, or why there is none (with the
/// name of a non-admin who logged in).
async fn authenticate(
    gw: &Gateway,
    req: &Request<Incoming>,
    peer: SocketAddr,
) -> Result<Actor, (ApiError, Option<String>)> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let source = peer.ip().to_string();
    if let Some(token) = header.and_then(bearer) {
        let local = gw.local_admin.lock();
        return match local.as_ref() {
            Some(t) if t.matches(token) => Ok(Actor {
                name: LOCAL_CLI.into(),
                source,
            }),
            _ => Err((ApiError::Unauthenticated, None)),
        };
    }
    match gw.auth.authenticate(header, peer.ip()).await {
        Ok(u) if u.admin => Ok(Actor {
            name: u.name,
            source,
        }),
        Ok(u) => Err((ApiError::Forbidden, Some(u.name))),
        Err(e) => Err((e.into(), None)),
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// Percent-decodes one path segment (a user name).
fn segment(raw: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| ApiError::BadRequest("a path segment is not UTF-8".into()))
}

async fn route(
    gw: &Gateway,
    req: Request<Incoming>,
    actor: &Actor,
    rest: &str,
) -> Result<Response<GwBody>, ApiError> {
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    let query = req.uri().query().map(str::to_string);
    match (parts.as_slice(), &method) {
        (["users"], &Method::GET) => handlers::list_users(gw).await,
        (["users"], &Method::POST) => {
            let body = read_json(req).await?;
            handlers::create_user(gw, actor, body).await
        }
        (["users", name], &Method::GET) => handlers::get_user(gw, &segment(name)?).await,
        (["users", name], &Method::PATCH) => {
            let name = segment(name)?;
            let body = read_json(req).await?;
            handlers::update_user(gw, actor, &name, body).await
        }
        (["users", name], &Method::DELETE) => {
            handlers::remove_user(gw, actor, &segment(name)?).await
        }
        (["users", name, "app-passwords"], &Method::GET) => {
            handlers::list_app_passwords(gw, &segment(name)?).await
        }
        (["users", name, "app-passwords"], &Method::POST) => {
            let name = segment(name)?;
            let body = read_json(req).await?;
            handlers::create_app_password(gw, actor, &name, body).await
        }
        (["users", name, "app-passwords", id], &Method::DELETE) => {
            handlers::revoke_app_password(gw, actor, &segment(name)?, id).await
        }
        (["stats"], &Method::GET) => handlers::stats(gw).await,
        (["jobs"], &Method::GET) => handlers::jobs(gw),
        (["jobs", name, "run"], &Method::POST) => {
            handlers::run_job(gw, actor, &segment(name)?).await
        }
        (["check"], &Method::GET) => handlers::check(gw).await,
        (["upstream"], &Method::GET) => handlers::upstream(gw).await,
        (["audit"], &Method::GET) => handlers::audit(gw, query.as_deref()).await,
        (["users"] | ["users", _] | ["stats"] | ["jobs"] | ["jobs", _, "run"], _)
        | (["users", _, "app-passwords"] | ["users", _, "app-passwords", _], _)
        | (["check"] | ["upstream"] | ["audit"], _) => Err(ApiError::Method),
        _ => Err(ApiError::NoEndpoint),
    }
}

/// Reads a JSON object body of at most [`MAX_BODY_BYTES`].
async fn read_json(
    req: Request<Incoming>,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    if body::announced_length(req.headers())?.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::TooLarge(MAX_BODY_BYTES));
    }
    let bytes = body::read_capped(req.into_body(), MAX_BODY_BYTES).await?;
    match serde_json::from_slice(&bytes) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        )),
        Err(e) => Err(ApiError::BadRequest(format!("malformed JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        let t = LocalToken::new("abc");
        assert!(t.matches("abc") && !t.matches("abd") && !t.matches(""));
    }
}
