//! The plain HTTP address of `tls.redirect_listen`: every request, whatever
//! its method, is answered `308 Permanent Redirect` to the same path and
//! query over HTTPS, on the host the client asked for and the port the
//! gateway serves HTTPS on. 308 (not 301) so a client repeats a PUT or
//! PROPFIND as it was, body and method, instead of turning it into a GET.
//!
//! Nothing else is served here: no credentials or file data cross plain
//! HTTP. A request without a usable `Host` is answered 400. Connections
//! are the listener's like any other (both caps, the timeouts).

use http::{header, HeaderValue, Request, Response, StatusCode};

use crate::wire::reply::{error_response, full, GwBody};

/// Why a request could not be redirected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedirectError {
    #[error("the request names no host to redirect to")]
    NoHost,
    #[error("the Host header is not a host name or address")]
    BadHost,
}

impl RedirectError {
    fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

/// The answer to any request on the redirect address.
pub fn reply<B>(req: &Request<B>, https_port: u16, peer: std::net::SocketAddr) -> Response<GwBody> {
    match location(req, https_port) {
        Ok(to) => match HeaderValue::from_str(&to) {
            Ok(value) => {
                tracing::debug!(%peer, location = %to, "redirected to HTTPS");
                let mut res = Response::new(full(format!("Moved to {to}\n")));
                *res.status_mut() = StatusCode::PERMANENT_REDIRECT;
                res.headers_mut().insert(header::LOCATION, value);
                res
            }
            Err(_) => refuse(&RedirectError::BadHost, peer),
        },
        Err(e) => refuse(&e, peer),
    }
}

fn refuse(e: &RedirectError, peer: std::net::SocketAddr) -> Response<GwBody> {
    tracing::info!(%peer, error = %e, "plain HTTP request not redirected");
    error_response(e.status(), &e.to_string())
}

/// `https://<host>[:port]<path and query>` for `req`: the host of its
/// `Host` header (or its absolute URI), the HTTPS port (left out when 443).
pub fn location<B>(req: &Request<B>, https_port: u16) -> Result<String, RedirectError> {
    let authority = match req.headers().get(header::HOST) {
        Some(h) => {
            let text = h.to_str().map_err(|_| RedirectError::BadHost)?;
            text.parse::<http::uri::Authority>()
                .map_err(|_| RedirectError::BadHost)?
        }
        None => req
            .uri()
            .authority()
            .cloned()
            .ok_or(RedirectError::NoHost)?,
    };
    let host = authority.host();
    if host.is_empty() || authority.as_str().contains('@') {
        return Err(RedirectError::BadHost);
    }
    let port = match https_port {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    Ok(format!("https://{host}{port}{target}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str, host: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header(header::HOST, h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_same_path_and_query_on_the_https_port() {
        let req = get(
            "/remote.php/dav/files/a%20b/x?y=1&z",
            Some("cloud.example:8081"),
        );
        assert_eq!(
            location(&req, 8443).unwrap(),
            "https://cloud.example:8443/remote.php/dav/files/a%20b/x?y=1&z"
        );
        assert_eq!(
            location(&get("/", Some("cloud.example")), 443).unwrap(),
            "https://cloud.example/"
        );
        assert_eq!(
            location(&get("/s", Some("[::1]:80")), 8443).unwrap(),
            "https://[::1]:8443/s"
        );
    }

    #[test]
    fn a_missing_or_odd_host_is_refused() {
        assert_eq!(location(&get("/", None), 443), Err(RedirectError::NoHost));
        for bad in ["evil.example/x", "user@evil.example", "", "a b"] {
            assert_eq!(
                location(&get("/", Some(bad)), 443),
                Err(RedirectError::BadHost),
                "{bad:?}"
            );
        }
        let absolute = get("http://cloud.example/p?q", None);
        assert_eq!(
            location(&absolute, 8443).unwrap(),
            "https://cloud.example:8443/p?q"
        );
    }
}
