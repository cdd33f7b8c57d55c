//! PROPFIND answered in the front. The common request — Depth 0 or 1 on the
//! user's files, a `<D:prop>` list of live, `oc:` and `nc:` properties — is
//! answered here from one node lookup and one folder listing, written
//! straight into one buffer with etags already quoted. Everything else is
//! declined and handed, body re-attached, to the WebDAV layer: allprop and
//! propname, lock properties, any node carrying dead properties, and every
//! failure (missing path, bad name, index error), so those replies and the
//! `GatewayError` mapping behind them are exactly what they always were.
//! The reply is the one the WebDAV layer writes for the same request.

mod props;
mod xml;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use dav_server::davpath::DavPath;
use http::request::Parts;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::respond::{full, GwBody};
use crate::crypto::VisibleIds;
use crate::index::Node;
use crate::namespace::{split_path, Namespace, NsError, Owner};
use props::Want;

/// The largest PROPFIND body the WebDAV layer reads (it answers 413 above).
const MAX_BODY: usize = 64 << 10;

/// Why a PROPFIND is left to the WebDAV layer.
#[derive(Debug, thiserror::Error)]
pub(super) enum Decline {
    #[error("not answered here: {0}")]
    Unsupported(&'static str),
    #[error("request body: {0}")]
    Body(&'static str),
    #[error("request path outside the tree")]
    Path,
    #[error("dead properties are stored on a listed node")]
    DeadProps,
    #[error("a time the reply cannot show")]
    Time,
    #[error(transparent)]
    Namespace(#[from] NsError),
}

/// A request body for the WebDAV layer: untouched, or read here first.
pub(super) enum DavBody {
    Live(Incoming),
    Read(Option<Bytes>),
    Failed(Option<std::io::Error>),
}

impl Body for DavBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            DavBody::Live(b) => Pin::new(b).poll_frame(cx).map_err(std::io::Error::other),
            DavBody::Read(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            DavBody::Failed(e) => Poll::Ready(e.take().map(Err)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            DavBody::Live(b) => b.is_end_stream(),
            DavBody::Read(data) => data.is_none(),
            DavBody::Failed(e) => e.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            DavBody::Live(b) => b.size_hint(),
            DavBody::Read(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            DavBody::Failed(_) => SizeHint::default(),
        }
    }
}

/// What the front knows of the request's user and tree.
pub(super) struct Scope<'a> {
    pub ns: &'a Namespace,
    pub owner: &'a Owner,
    /// How ids and etags are shown to clients.
    pub ids: &'a VisibleIds,
    /// The decoded URL prefix of the user's tree.
    pub prefix: &'a str,
}

/// Answers a PROPFIND it can; otherwise gives the request back, with its
/// body, for the WebDAV layer.
pub(super) async fn propfind(
    scope: &Scope<'_>,
    req: Request<Incoming>,
) -> Result<Response<GwBody>, Request<DavBody>> {
    let Some(depth_one) = fast_depth(&req) else {
        return Err(req.map(DavBody::Live));
    };
    if announced_len(&req).is_some_and(|n| n > MAX_BODY as u64) {
        return Err(req.map(DavBody::Live));
    }
    let (parts, body) = req.into_parts();
    let body = match read_capped(body).await {
        Ok(b) => b,
        Err(e) => return Err(Request::from_parts(parts, DavBody::Failed(Some(e)))),
    };
    match answer(scope, &parts, depth_one, &body) {
        Ok(res) => Ok(res),
        Err(why) => {
            tracing::debug!(reason = %why, "PROPFIND left to the WebDAV layer");
            Err(Request::from_parts(parts, DavBody::Read(Some(body))))
        }
    }
}

/// `Some(false)` for Depth 0, `Some(true)` for Depth 1, `None` otherwise.
fn fast_depth<B>(req: &Request<B>) -> Option<bool> {
    if req.method().as_str() != "PROPFIND" {
        return None;
    }
    let mut values = req.headers().get_all("Depth").iter();
    let depth = values.next()?;
    if values.next().is_some() {
        return None;
    }
    match depth.as_bytes() {
        b"0" => Some(false),
        b"1" => Some(true),
        _ => None,
    }
}

fn announced_len<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The body, or its first bytes past `MAX_BODY` (enough for the WebDAV
/// layer to refuse it as it would).
async fn read_capped(mut body: Incoming) -> Result<Bytes, std::io::Error> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(std::io::Error::other)?;
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > MAX_BODY {
                break;
            }
        }
    }
    Ok(buf.freeze())
}

/// The target's node and, for Depth 1 on a folder, its entries.
struct Found {
    path: DavPath,
    names: Vec<String>,
    node: Node,
    entries: Vec<(String, Node)>,
}

fn answer(
    scope: &Scope<'_>,
    parts: &Parts,
    depth_one: bool,
    body: &[u8],
) -> Result<Response<GwBody>, Decline> {
    let props = props::parse(body)?;
    let wants = props
        .iter()
        .map(props::classify)
        .collect::<Result<Vec<Want<'_>>, Decline>>()?;
    let found = find(scope, parts, depth_one)?;
    let wants_quota = wants
        .iter()
        .any(|w| matches!(w, Want::QuotaUsed | Want::QuotaAvailable));
    let quota = if wants_quota {
        Some(scope.ns.usage(scope.owner)?)
    } else {
        None
    };
    let reply = xml::Reply {
        wants: &wants,
        owner_name: &scope.owner.name,
        ids: scope.ids,
        quota,
        webdavfs: user_agent(parts).contains("WebDAVFS"),
    };
    let (body, moved) = xml::multistatus(&reply, &props::root_namespaces(&props), &found)?;
    Ok(multistatus_response(body, moved))
}

fn user_agent(parts: &Parts) -> &str {
    parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Resolves the request path as the WebDAV layer does, in the owner's tree.
fn find(scope: &Scope<'_>, parts: &Parts, depth_one: bool) -> Result<Found, Decline> {
    let mut path = DavPath::new(parts.uri.path()).map_err(|_| Decline::Path)?;
    path.set_prefix(scope.prefix).map_err(|_| Decline::Path)?;
    let names = split_path(path.as_bytes())?;
    let node = scope.ns.lookup(scope.owner, &names)?;
    let entries = if node.is_dir() && depth_one {
        scope.ns.list(scope.owner, &names)?
    } else {
        Vec::new()
    };
    // The WebDAV layer adds every stored dead property to each reply entry.
    let ids: Vec<u64> = std::iter::once(node.id)
        .chain(entries.iter().map(|(_, n)| n.id))
        .collect();
    if !scope.ns.props_of_nodes(&ids)?.is_empty() {
        return Err(Decline::DeadProps);
    }
    Ok(Found {
        path,
        names,
        node,
        entries,
    })
}

/// A 207 with the WebDAV layer's headers; `moved` is the folder's URL with
/// the trailing slash the request lacked.
fn multistatus_response(body: Vec<u8>, moved: Option<String>) -> Response<GwBody> {
    let mut res = Response::new(full(body));
    *res.status_mut() = StatusCode::MULTI_STATUS;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Some(v) = moved.and_then(|m| HeaderValue::from_str(&m).ok()) {
        h.insert(header::CONTENT_LOCATION, v);
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    res
}
