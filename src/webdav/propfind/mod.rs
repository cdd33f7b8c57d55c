//! PROPFIND answered without dav-server. The common request — Depth 0 or 1 on the
//! user's files, a `<D:prop>` list of live, `oc:` and `nc:` properties — is
//! answered here from one node lookup and one folder listing, written
//! straight into one buffer with etags already quoted. Everything else is
//! declined and handed, body re-attached, to the WebDAV layer: allprop and
//! propname, lock properties, any node carrying dead properties, and every
//! failure (missing path, bad name, index error), so those replies and the
//! `GatewayError` mapping behind them are exactly what they always were.
//! The reply is the one the WebDAV layer writes for the same request once
//! [`Requested`] has made that one list what is missing and leave out what
//! was not asked for.

pub(crate) mod props;
mod requested;
mod xml;

use dav_server::davpath::DavPath;
use http::request::Parts;
use http::{header, HeaderValue, Request, Response, StatusCode};

use crate::crypto::VisibleIds;
use crate::meta::Node;
use crate::meta::{split_path, Meta, NsError, Owner};
use crate::wire::body::DavBody;
use crate::wire::reply::{full, GwBody};
use props::Want;
pub use requested::{Asked, Requested};

/// Why a PROPFIND is left to the WebDAV layer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Decline {
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

/// What the service knows of the request's user and tree.
pub(crate) struct Scope<'a> {
    pub meta: &'a Meta,
    pub owner: &'a Owner,
    /// How ids and etags are shown to clients.
    pub ids: &'a VisibleIds,
    /// The decoded URL prefix of the user's tree.
    pub prefix: &'a str,
}

/// Answers a PROPFIND it can; otherwise gives the request back for the
/// WebDAV layer. The body was read and checked by the service already.
pub(crate) async fn propfind(
    scope: &Scope<'_>,
    req: Request<DavBody>,
) -> Result<Response<GwBody>, Box<Request<DavBody>>> {
    let Some(depth_one) = fast_depth(&req) else {
        return Err(Box::new(req));
    };
    let body = match req.body() {
        DavBody::Read(Some(data)) => data.clone(),
        _ => return Err(Box::new(req)),
    };
    let (parts, dav_body) = req.into_parts();
    match answer(scope, &parts, depth_one, &body).await {
        Ok(res) => Ok(res),
        Err(why) => {
            tracing::debug!(reason = %why, "PROPFIND left to the WebDAV layer");
            Err(Box::new(Request::from_parts(parts, dav_body)))
        }
    }
}

/// What a PROPFIND asks for, for the WebDAV layer's reply to be made to
/// answer exactly that ([`Requested`]): a `<D:prop>` list, or allprop
/// (also an empty body). `None` for propname and any body neither this
/// reader nor the WebDAV layer's parser takes (that reply then goes out
/// as the WebDAV layer writes it).
pub(crate) fn asked(req: &Request<DavBody>) -> Option<Asked> {
    if req.method().as_str() != "PROPFIND" {
        return None;
    }
    let data = match req.body() {
        DavBody::Read(Some(data)) => data.clone(),
        DavBody::Read(None) => bytes::Bytes::new(),
        _ => return None,
    };
    if data.iter().all(u8::is_ascii_whitespace) {
        return Some(Asked::All);
    }
    if let Ok(list) = props::parse(&data) {
        return Some(Asked::Props(list));
    }
    // allprop, read by the WebDAV layer's own parser (the body passed the
    // front's depth and size checks).
    let root = xmltree::Element::parse(&data[..]).ok()?;
    let first = root.children.iter().find_map(|c| match c {
        xmltree::XMLNode::Element(e)
            if matches!(e.name.as_str(), "prop" | "propname" | "allprop") =>
        {
            Some(e)
        }
        _ => None,
    })?;
    (root.name == "propfind" && first.name == "allprop").then_some(Asked::All)
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

/// The target's node and, for Depth 1 on a folder, its entries.
struct Found {
    path: DavPath,
    names: Vec<String>,
    node: Node,
    entries: Vec<(String, Node)>,
}

async fn answer(
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
    let found = find(scope, parts, depth_one).await?;
    let wants_quota = wants
        .iter()
        .any(|w| matches!(w, Want::QuotaUsed | Want::QuotaAvailable));
    let quota = if wants_quota {
        Some(scope.meta.usage(scope.owner).await?)
    } else {
        None
    };
    let reply = xml::Reply {
        props: &props,
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
async fn find(scope: &Scope<'_>, parts: &Parts, depth_one: bool) -> Result<Found, Decline> {
    let mut path = DavPath::new(parts.uri.path()).map_err(|_| Decline::Path)?;
    path.set_prefix(scope.prefix).map_err(|_| Decline::Path)?;
    let names = split_path(path.as_bytes())?;
    let node = scope.meta.lookup(scope.owner, &names).await?;
    let entries = if node.is_dir() && depth_one {
        scope.meta.list(scope.owner, &names).await?
    } else {
        Vec::new()
    };
    // The WebDAV layer adds every stored dead property to each reply entry.
    let ids: Vec<u64> = std::iter::once(node.id)
        .chain(entries.iter().map(|(_, n)| n.id))
        .collect();
    if !scope.meta.props_of_nodes(&ids).await?.is_empty() {
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
