//! dav-server's answer to a `<D:prop>` PROPFIND, made to answer exactly
//! what was asked (RFC 4918, 9.1). dav-server 0.11 leaves out every
//! property it cannot find instead of listing it under `404 Not Found`
//! (ownCloud clients and litmus read that status), and appends every dead
//! property a node carries to each entry, asked for or not. [`Requested`]
//! rewrites the reply as it streams, one `<D:response>` at a time (dav-server
//! flushes after each): properties not asked for are dropped, and those
//! asked for but absent are named in a 404 propstat; to an allprop request
//! each property is listed once. A property listed
//! twice keeps its first value, except a Windows one, where the stored
//! value (appended by dav-server after its computed one) wins: that is
//! what the client set (`webdav/win32.rs`). An entry is held
//! only until its end tag arrives; its size is bounded by the dead
//! properties a node may carry (`limits.props_per_node`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::props::PropName;
use super::xml::not_found_propstat;
use crate::webdav::win32::NS_MS;

const RESPONSE_END: &[u8] = b"</D:response>";

/// Every prefix dav-server declares on its reply's root, so one entry
/// parses on its own.
const ROOT: &str = "<w xmlns:D=\"DAV:\" xmlns:A=\"http://apache.org/dav/props/\" \
xmlns:Z=\"urn:schemas-microsoft-com:\" xmlns:nc=\"http://nextcloud.org/ns\" \
xmlns:oc=\"http://owncloud.org/ns\">";

/// What a PROPFIND asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// A `<D:prop>` list: only these, the missing ones under 404.
    Props(Vec<PropName>),
    /// `allprop` (or no body): everything, each property once.
    All,
}

/// A multistatus body answering what was asked.
pub struct Requested<B> {
    inner: Pin<Box<B>>,
    asked: Asked,
    held: Vec<u8>,
    ended: bool,
}

impl<B> Requested<B> {
    pub(crate) fn new(inner: B, asked: Asked) -> Self {
        Self {
            inner: Box::pin(inner),
            asked,
            held: Vec::new(),
            ended: false,
        }
    }

    /// The complete entries held so far, rewritten; the rest stays held.
    fn drain_entries(&mut self) -> Vec<u8> {
        let Some(end) = rfind(&self.held, RESPONSE_END) else {
            return Vec::new();
        };
        let rest = self.held.split_off(end + RESPONSE_END.len());
        let ready = std::mem::replace(&mut self.held, rest);
        let mut out = Vec::with_capacity(ready.len() + 128);
        let mut pos = 0;
        while let Some(start) = find(&ready[pos..], b"<D:response>").map(|i| pos + i) {
            let Some(stop) = find(&ready[start..], RESPONSE_END).map(|i| start + i) else {
                break;
            };
            out.extend_from_slice(&ready[pos..start]);
            let entry = &ready[start..stop + RESPONSE_END.len()];
            match rewrite_entry(entry, &self.asked) {
                Some(fixed) => out.extend_from_slice(&fixed),
                None => out.extend_from_slice(entry),
            }
            pos = stop + RESPONSE_END.len();
        }
        out.extend_from_slice(&ready[pos..]);
        out
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// A property element of an entry: its place and what it is.
struct Found {
    range: std::ops::Range<usize>,
    name: PropName,
}

/// What one entry holds, as byte ranges into it.
#[derive(Default)]
struct Layout {
    /// Each 200 propstat and the properties inside it.
    propstats: Vec<(std::ops::Range<usize>, Vec<Found>)>,
}

/// One `<D:response>…</D:response>` answering `asked`, or `None` if it is
/// not what dav-server writes (then it passes unchanged).
fn rewrite_entry(entry: &[u8], asked: &Asked) -> Option<Vec<u8>> {
    if !entry.starts_with(b"<D:response>") || !entry.ends_with(RESPONSE_END) {
        return None;
    }
    let wanted = |name: &PropName| match asked {
        Asked::Props(props) => props.contains(name),
        Asked::All => true,
    };
    let layout = read_layout(entry)?;
    let mut out = Vec::with_capacity(entry.len() + 64);
    let mut answered: Vec<&PropName> = Vec::new();
    let mut pos = 0;
    for (propstat, found) in &layout.propstats {
        let mut kept: Vec<&Found> = Vec::new();
        for (i, f) in found.iter().enumerate() {
            let stored_later = found[i + 1..].iter().any(|g| g.name == f.name)
                && f.name.namespace.as_deref() == Some(NS_MS);
            if wanted(&f.name) && !answered.contains(&&f.name) && !stored_later {
                answered.push(&f.name);
                kept.push(f);
            }
        }
        out.extend_from_slice(&entry[pos..propstat.start]);
        pos = propstat.end;
        if kept.is_empty() {
            continue;
        }
        let first = found.first()?.range.start;
        let last = found.last()?.range.end;
        out.extend_from_slice(&entry[propstat.start..first]);
        for f in kept {
            out.extend_from_slice(&entry[f.range.clone()]);
        }
        out.extend_from_slice(&entry[last..propstat.end]);
    }
    let end = entry.len() - RESPONSE_END.len();
    out.extend_from_slice(&entry[pos..end]);
    let mut missing: Vec<&PropName> = Vec::new();
    let props = match asked {
        Asked::Props(props) => props.as_slice(),
        Asked::All => &[],
    };
    for p in props {
        if !answered.contains(&p) && !missing.contains(&p) {
            missing.push(p);
        }
    }
    not_found_propstat(&mut out, &missing);
    out.extend_from_slice(RESPONSE_END);
    Some(out)
}

/// Reads an entry: `response > propstat > prop > property`, with a
/// `200 OK` status in each propstat (dav-server writes no other).
fn read_layout(entry: &[u8]) -> Option<Layout> {
    let text = std::str::from_utf8(entry).ok()?;
    let doc = format!("{ROOT}{text}</w>");
    let shift = ROOT.len();
    let mut reader = NsReader::from_str(&doc);
    let mut layout = Layout::default();
    let mut depth = 0usize;
    let mut open: Option<(usize, PropName)> = None;
    let mut propstat_start = 0;
    let mut found = Vec::new();
    loop {
        let before = reader.buffer_position() as usize;
        let (ns, event) = reader.read_resolved_event().ok()?;
        let (ns, event) = (namespace(ns)?, event.into_owned());
        let after = reader.buffer_position() as usize;
        match event {
            Event::Empty(e) if depth == 4 => found.push(Found {
                range: before - shift..after - shift,
                name: prop_name(ns, e.local_name().as_ref())?,
            }),
            Event::Start(e) if depth == 4 => {
                open = Some((before - shift, prop_name(ns, e.local_name().as_ref())?));
                depth += 1;
            }
            Event::Start(e) => {
                if depth == 2 && e.local_name().as_ref() == b"propstat" {
                    propstat_start = before - shift;
                    found = Vec::new();
                }
                depth += 1;
            }
            Event::End(e) => {
                depth = depth.checked_sub(1)?;
                // The entry is one element, `response`, from start to end.
                if depth == 1 && after - shift != entry.len() {
                    return None;
                }
                if depth == 4 {
                    let (start, name) = open.take()?;
                    found.push(Found {
                        range: start..after - shift,
                        name,
                    });
                } else if depth == 2 && e.local_name().as_ref() == b"propstat" {
                    if !status_ok(&doc[propstat_start + shift..after]) {
                        return None;
                    }
                    let range = propstat_start..after - shift;
                    layout.propstats.push((range, std::mem::take(&mut found)));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Some(layout)
}

/// Whether a propstat says `200 OK`.
fn status_ok(propstat: &str) -> bool {
    propstat.contains("<D:status>HTTP/1.1 200 OK</D:status>")
}

/// A resolved namespace: `Some(None)` for none, `None` for an undeclared
/// prefix.
fn namespace(ns: ResolveResult<'_>) -> Option<Option<String>> {
    match ns {
        ResolveResult::Bound(n) => Some(Some(std::str::from_utf8(n.as_ref()).ok()?.to_string())),
        ResolveResult::Unbound => Some(None),
        ResolveResult::Unknown(_) => None,
    }
}

fn prop_name(namespace: Option<String>, local: &[u8]) -> Option<PropName> {
    Some(PropName {
        namespace,
        name: std::str::from_utf8(local).ok()?.to_string(),
    })
}

impl<B> Body for Requested<B>
where
    B: Body<Data = Bytes, Error = std::io::Error>,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        loop {
            if self.ended {
                return Poll::Ready(None);
            }
            match self.inner.as_mut().poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        self.held.extend_from_slice(&data);
                        let out = self.drain_entries();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                        }
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Poll::Ready(None) => {
                    self.ended = true;
                    let held = std::mem::take(&mut self.held);
                    if !held.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(held)))));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn prop(ns: Option<&str>, name: &str) -> PropName {
        PropName {
            namespace: ns.map(str::to_string),
            name: name.to_string(),
        }
    }

    fn run(parts: &[&str], asked: Asked) -> String {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from(p.to_string()))))
            .collect();
        let body = Requested::new(StreamBody::new(futures_util::stream::iter(frames)), asked);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt.block_on(body.collect()).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    const HEAD: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?><D:multistatus xmlns:D=\"DAV:\">";

    #[test]
    fn lists_missing_and_drops_unasked() {
        let entry = "<D:response><D:href>/a</D:href><D:propstat><D:prop>\
<D:getetag>1</D:getetag><x:dead xmlns:x=\"urn:x\">v</x:dead><x:other xmlns:x=\"urn:x\"/>\
</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>";
        let doc = format!("{HEAD}{entry}</D:multistatus>");
        let props = vec![
            prop(Some("DAV:"), "getetag"),
            prop(Some("urn:x"), "dead"),
            prop(Some("urn:y"), "gone"),
            prop(None, "bare"),
            prop(Some("DAV:"), "displayname"),
        ];
        let want = format!(
            "{HEAD}<D:response><D:href>/a</D:href><D:propstat><D:prop>\
<D:getetag>1</D:getetag><x:dead xmlns:x=\"urn:x\">v</x:dead>\
</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>\
<D:propstat><D:prop><gone xmlns=\"urn:y\"/><bare xmlns=\"\"/><D:displayname/></D:prop>\
<D:status>HTTP/1.1 404 Not Found</D:status></D:propstat></D:response></D:multistatus>"
        );
        assert_eq!(run(&[&doc], Asked::Props(props.clone())), want);
        for i in 1..doc.len() {
            assert_eq!(
                run(&[&doc[..i], &doc[i..]], Asked::Props(props.clone())),
                want,
                "split at {i}"
            );
        }
    }

    #[test]
    fn allprop_lists_a_stored_windows_property_once() {
        let entry = "<D:response><D:href>/a</D:href><D:propstat><D:prop>\
<D:getetag>1</D:getetag><Z:Win32FileAttributes>00000020</Z:Win32FileAttributes>\
<x:dead xmlns:x=\"urn:x\">v</x:dead>\
<Z:Win32FileAttributes xmlns:Z=\"urn:schemas-microsoft-com:\">00000022</Z:Win32FileAttributes>\
</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>";
        let head = "<?xml version=\"1.0\" encoding=\"utf-8\"?><D:multistatus xmlns:D=\"DAV:\" \
xmlns:Z=\"urn:schemas-microsoft-com:\">";
        let got = run(&[&format!("{head}{entry}</D:multistatus>")], Asked::All);
        let want = format!(
            "{head}<D:response><D:href>/a</D:href><D:propstat><D:prop>\
<D:getetag>1</D:getetag><x:dead xmlns:x=\"urn:x\">v</x:dead>\
<Z:Win32FileAttributes xmlns:Z=\"urn:schemas-microsoft-com:\">00000022</Z:Win32FileAttributes>\
</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>"
        );
        assert_eq!(got, want);
    }

    #[test]
    fn an_entry_with_nothing_found_gets_only_the_404() {
        let doc = format!(
            "{HEAD}<D:response><D:href>/a</D:href><D:propstat><D:prop>\
<x:dead xmlns:x=\"urn:x\"/></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>\
</D:response><D:response><D:href>/b</D:href></D:response></D:multistatus>"
        );
        let got = run(&[&doc], Asked::Props(vec![prop(Some("DAV:"), "getetag")]));
        let nf = "<D:propstat><D:prop><D:getetag/></D:prop>\
<D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>";
        assert_eq!(
            got,
            format!(
                "{HEAD}<D:response><D:href>/a</D:href>{nf}</D:response>\
<D:response><D:href>/b</D:href>{nf}</D:response></D:multistatus>"
            )
        );
    }
}
