//! Windows' file times and attributes (`urn:schemas-microsoft-com:`
//! `Win32CreationTime`, `Win32LastAccessTime`, `Win32LastModifiedTime`,
//! `Win32FileAttributes`), which the Windows WebDAV redirector sets with a
//! PROPPATCH after every upload. dav-server answers such a PROPPATCH `200
//! OK` and keeps nothing, so the hidden or read-only bit and the creation
//! time were lost. A PROPPATCH that sets only these properties is answered
//! here instead: `Win32LastModifiedTime` becomes the node's modification
//! time (so `getlastmodified` agrees with it), the other three are kept as
//! dead properties, which PROPFIND then returns (`propfind/requested.rs`
//! prefers a stored Windows property over dav-server's computed one). Any
//! other PROPPATCH, or one the node's locks forbid, goes to dav-server
//! unchanged.

use http::{header, HeaderValue, Request, Response, StatusCode};
use xmltree::{Element, XMLNode};

use super::locks::LockTable;
use super::propfind::props::NS_DAV;
use super::RequestCtx;
use crate::meta::{Meta, StoredProp};
use crate::owncloud::uploads::PathLocks;
use crate::wire::body::DavBody;
use crate::wire::error::GatewayError;
use crate::wire::reply::{failure_response, full, GwBody};
use crate::xml_escape::escape;

pub const NS_MS: &str = "urn:schemas-microsoft-com:";
const NAMES: [&str; 4] = [
    "Win32CreationTime",
    "Win32LastAccessTime",
    "Win32LastModifiedTime",
    "Win32FileAttributes",
];
/// Longest value kept (an HTTP date is 29 bytes, the attributes 8).
const MAX_VALUE: usize = 64;

/// Answers a PROPPATCH of the request's target (`ctx.target`) that only
/// sets Windows properties; otherwise gives the request back.
pub(crate) async fn proppatch(
    meta: &Meta,
    locks: &LockTable,
    ctx: &RequestCtx,
    req: Request<DavBody>,
) -> Result<Response<GwBody>, Box<Request<DavBody>>> {
    if req.method().as_str() != "PROPPATCH" {
        return Err(Box::new(req));
    }
    let sets = match req.body() {
        DavBody::Read(Some(data)) => parse(data),
        _ => None,
    };
    let Some(sets) = sets.filter(|s| !s.is_empty()) else {
        return Err(Box::new(req));
    };
    let Some(names) = ctx.target.clone() else {
        return Err(Box::new(req));
    };
    let if_header = req.headers().get("If").and_then(|v| v.to_str().ok());
    if locks.locked_for(&ctx.owner, &names, if_header).await {
        // dav-server answers it, with its lock checks.
        return Err(Box::new(req));
    }
    match apply(meta, ctx, &names, &sets).await {
        Ok(()) => Ok(multistatus(req.uri().path(), &sets)),
        Err(e) => {
            tracing::info!(error = %e, "Windows properties refused");
            Ok(failure_response(&e))
        }
    }
}

/// Stores the properties: the modification time on the node, the rest as
/// dead properties (all of them or none).
async fn apply(
    meta: &Meta,
    ctx: &RequestCtx,
    names: &[String],
    sets: &[(String, String)],
) -> Result<(), GatewayError> {
    let dead: Vec<(bool, StoredProp)> = sets
        .iter()
        .filter(|(name, _)| name != "Win32LastModifiedTime")
        .map(|(name, value)| (true, stored(name, value)))
        .collect();
    let mtime = sets
        .iter()
        .find(|(name, _)| name == "Win32LastModifiedTime")
        .map(|(_, v)| httpdate::parse_http_date(v.trim()))
        .transpose()
        .map_err(|_| {
            GatewayError::BadRequest("Win32LastModifiedTime is not an HTTP date".into())
        })?;
    if !dead.is_empty() {
        meta.patch_props(&ctx.owner, names, &dead).await?;
    }
    if let Some(t) = mtime {
        let ns = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos().min(i64::MAX as u128) as i64);
        meta.set_mtime(&ctx.owner, names, ns).await?;
    }
    Ok(())
}

/// A property as dav-server stores one (its XML element, self-declared).
pub(crate) fn stored(name: &str, value: &str) -> StoredProp {
    let xml = format!("<Z:{name} xmlns:Z=\"{NS_MS}\">{}</Z:{name}>", escape(value));
    StoredProp {
        name: name.to_string(),
        prefix: Some("Z".into()),
        namespace: Some(NS_MS.into()),
        xml: Some(xml.into_bytes()),
    }
}

/// The reply dav-server gives to the same PROPPATCH: every property 200.
fn multistatus(href: &str, sets: &[(String, String)]) -> Response<GwBody> {
    let mut body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><D:multistatus xmlns:D=\"DAV:\">\
         <D:response><D:href>{}</D:href><D:propstat><D:prop>",
        escape(href)
    );
    for (name, _) in sets {
        body.push_str(&format!("<Z:{name} xmlns:Z=\"{NS_MS}\"/>"));
    }
    body.push_str(
        "</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>",
    );
    let mut res = Response::new(full(body));
    *res.status_mut() = StatusCode::MULTI_STATUS;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml; charset=utf-8"),
    );
    res
}

/// The `(name, value)` pairs of a `<D:propertyupdate>` that only sets
/// Windows properties, each to plain text; `None` for anything else. The
/// body is read by dav-server's own XML parser and walked as dav-server
/// walks it (`set`/`remove` children, their `prop` children, any
/// namespace on those two), so this takes over exactly the PROPPATCHes
/// dav-server would have answered with 200 for every property.
pub(crate) fn parse(body: &[u8]) -> Option<Vec<(String, String)>> {
    let root = Element::parse(body).ok()?;
    if root.name != "propertyupdate" || root.namespace.as_deref() != Some(NS_DAV) {
        return None;
    }
    let mut sets = Vec::new();
    for action in elements(&root) {
        match action.name.as_str() {
            "set" => {}
            "remove" => return None,
            _ => continue,
        }
        for prop in elements(action).filter(|e| e.name == "prop") {
            for p in elements(prop) {
                let windows =
                    p.namespace.as_deref() == Some(NS_MS) && NAMES.contains(&p.name.as_str());
                let value = p.get_text()?;
                if !windows || elements(p).next().is_some() || value.len() > MAX_VALUE {
                    return None;
                }
                sets.push((p.name.clone(), value.into_owned()));
            }
        }
    }
    Some(sets)
}

fn elements(e: &Element) -> impl Iterator<Item = &Element> {
    e.children.iter().filter_map(|c| match c {
        XMLNode::Element(e) => Some(e),
        _ => None,
    })
}
