//! Building responses: Sabre-style XML errors (what ownCloud clients parse),
//! the page a person sees at `/`, the headers that announce WebDAV, and the body wrapper that turns a failure
//! recorded during streaming into a broken transfer instead of a short or
//! empty reply.

use crate::xml_escape::escape;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};

use crate::wire::error::FailureSlot;
use crate::wire::error::GatewayError;

pub type GwBody = UnsyncBoxBody<Bytes, std::io::Error>;

pub fn full(data: impl Into<Bytes>) -> GwBody {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn exception_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BadRequest",
        401 => "NotAuthenticated",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        412 => "PreconditionFailed",
        415 => "UnsupportedMediaType",
        423 => "Locked",
        501 => "NotImplemented",
        507 => "InsufficientStorage",
        502..=504 => "ServiceUnavailable",
        _ => "Exception",
    }
}

/// An error reply with a Sabre-style XML body.
pub fn error_response(status: StatusCode, message: &str) -> Response<GwBody> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <d:error xmlns:d=\"DAV:\" xmlns:s=\"http://sabredav.org/ns\">\n  \
         <s:exception>Sabre\\DAV\\Exception\\{}</s:exception>\n  \
         <s:message>{}</s:message>\n</d:error>\n",
        exception_name(status),
        escape(message)
    );
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    res
}

/// The reply for a failed request. Server-side details (upstream URLs,
/// internal causes) stay in the log; the client gets a plain message.
pub fn failure_response(e: &GatewayError) -> Response<GwBody> {
    let status = e.status();
    let message = match status.as_u16() {
        500 => "internal error; the gateway log has details".to_string(),
        502 => "the storage backend returned an invalid response".to_string(),
        503 => "the storage backend is unavailable; try again later".to_string(),
        507 => match e {
            GatewayError::Namespace(n) => n.to_string(),
            GatewayError::Upload(u) => u.to_string(),
            _ => "the storage backend is out of space".to_string(),
        },
        _ => e.to_string(),
    };
    let mut res = error_response(status, &message);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    }
    res
}

/// 403 for PROPFIND with Depth: infinity (RFC 4918, 9.1).
pub fn finite_depth_required() -> Response<GwBody> {
    let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
                <d:error xmlns:d=\"DAV:\"><d:propfind-finite-depth/></d:error>\n";
    let mut res = Response::new(full(body));
    *res.status_mut() = StatusCode::FORBIDDEN;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    res
}

pub fn unauthorized() -> Response<GwBody> {
    let mut res = error_response(
        StatusCode::UNAUTHORIZED,
        "authentication required: use HTTP Basic with your dedupdav user name and password",
    );
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"dedupdav\", charset=\"UTF-8\""),
    );
    res
}

/// What a person sees when they open the server in a browser.
pub fn home_page() -> Response<GwBody> {
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>dedupdav</title></head>\n\
         <body><h1>dedupdav {}</h1>\n\
         <p>This is a WebDAV file server. Every file is split into chunks that are stored\n\
         once, compressed and encrypted; each user sees only their own files.</p>\n\
         <p>Connect a WebDAV client (rclone, cadaver, a mounted network drive) to\n\
         <code>/remote.php/dav/files/&lt;user&gt;/</code> or <code>/remote.php/webdav/</code>\n\
         with your user name and password. ownCloud and Nextcloud desktop clients take\n\
         this server's address as it is.</p></body></html>\n",
        env!("CARGO_PKG_VERSION")
    );
    let mut res = Response::new(full(body));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res
}

/// The WebDAV compliance classes the gateway claims: 1 and 2 (locks).
/// dav-server also announces 3 and Sabre's partial updates, which the
/// gateway refuses (PATCH), so its header is replaced.
pub const DAV_CLASSES: &str = "1, 2";

/// Sets the headers by which WebDAV clients recognise a WebDAV server:
/// `DAV` and `MS-Author-Via` (Windows' redirector looks for both), and
/// takes PATCH out of `Allow` (partial updates are refused).
pub fn announce_dav(headers: &mut http::HeaderMap) {
    headers.insert("DAV", HeaderValue::from_static(DAV_CLASSES));
    headers.insert("MS-Author-Via", HeaderValue::from_static("DAV"));
    let allow = headers
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty() && !m.eq_ignore_ascii_case("PATCH"))
                .collect::<Vec<_>>()
                .join(",")
        });
    if let Some(v) = allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
        headers.insert(header::ALLOW, v);
    }
}

/// `OPTIONS /`, which Windows' WebDAV redirector sends before anything
/// else and without credentials: a server that does not answer it as a
/// WebDAV server is not mounted.
pub fn root_options() -> Response<GwBody> {
    let mut res = Response::new(full(Bytes::new()));
    let h = res.headers_mut();
    h.insert(
        header::ALLOW,
        HeaderValue::from_static("OPTIONS,GET,HEAD,PROPFIND"),
    );
    announce_dav(h);
    res
}

/// Passes a WebDAV reply through, but ends it with an error (the client sees
/// a broken transfer) if the file system recorded a failure while the body
/// was being produced — never a listing that silently lacks entries.
pub struct GuardedBody<B> {
    inner: Pin<Box<B>>,
    slot: FailureSlot,
}

impl<B> GuardedBody<B> {
    pub fn new(inner: B, slot: FailureSlot) -> Self {
        Self {
            inner: Box::pin(inner),
            slot,
        }
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes, Error = std::io::Error>,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.inner.as_mut().poll_frame(cx) {
            Poll::Ready(None) => match self.slot.get() {
                Some(e) => Poll::Ready(Some(Err(std::io::Error::other(e.to_string())))),
                None => Poll::Ready(None),
            },
            other => other,
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A body whose first frame was already read (so a failure on the first
/// bytes could still change the status): yields that frame, then the rest.
pub struct Primed<B> {
    first: Option<Frame<Bytes>>,
    rest: B,
}

impl<B> Primed<B> {
    pub fn new(first: Option<Frame<Bytes>>, rest: B) -> Self {
        Self { first, rest }
    }
}

impl<B> Body for Primed<B>
where
    B: Body<Data = Bytes, Error = std::io::Error> + Unpin,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if let Some(frame) = self.first.take() {
            return Poll::Ready(Some(Ok(frame)));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.rest.size_hint();
        if let Some(n) = self
            .first
            .as_ref()
            .and_then(|f| f.data_ref())
            .map(|d| d.len() as u64)
        {
            hint.set_lower(hint.lower() + n);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + n);
            }
        }
        hint
    }
}
