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
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

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
        Err(e) => Ok(failure_response(&e)),
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
fn stored(name: &str, value: &str) -> StoredProp {
    let xml = format!("<Z:{name} xmlns:Z=\"{NS_MS}\">{}</Z:{name}>", escape(value));
    StoredProp {
        name: name.to_string(),
        prefix: Some("Z".into()),
        namespace: Some(NS_MS.into()),
        xml: Some(xml.into_bytes()),
    }
}

/// Whether an element named `local` in `ns` may open at `depth`.
fn expected(depth: usize, ns: Option<&str>, local: &str) -> bool {
    match depth {
        0 => ns == Some(NS_DAV) && local == "propertyupdate",
        1 => ns == Some(NS_DAV) && local == "set",
        2 => ns == Some(NS_DAV) && local == "prop",
        3 => ns == Some(NS_MS) && NAMES.contains(&local),
        _ => false,
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
/// Windows properties, each with plain text; `None` for anything else.
fn parse(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut reader = NsReader::from_str(text);
    let mut path: Vec<(Option<String>, String)> = Vec::new();
    // A Windows property holds text only: any element inside it declines.
    let mut sets: Vec<(String, String)> = Vec::new();
    loop {
        let (ns, event) = reader.read_resolved_event().ok()?;
        let ns = match ns {
            ResolveResult::Bound(n) => Some(std::str::from_utf8(n.as_ref()).ok()?.to_string()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(_) => return None,
        };
        let opens = matches!(event, Event::Start(_));
        match event {
            Event::Start(e) | Event::Empty(e) => {
                let local = std::str::from_utf8(e.local_name().into_inner()).ok()?;
                if !expected(path.len(), ns.as_deref(), local) {
                    return None;
                }
                if path.len() == 3 {
                    sets.push((local.to_string(), String::new()));
                }
                if opens {
                    path.push((ns, local.to_string()));
                }
            }
            Event::End(_) => {
                path.pop()?;
            }
            Event::Text(t) if path.len() == 4 => {
                let value = t.unescape().ok()?;
                let last = sets.last_mut()?;
                last.1.push_str(&value);
                if last.1.len() > MAX_VALUE {
                    return None;
                }
            }
            Event::Text(t) if t.iter().all(u8::is_ascii_whitespace) => {}
            Event::Decl(_) => {}
            Event::Eof => break,
            _ => return None,
        }
    }
    Some(sets)
}
