//! Reading WebDAV multistatus answers (the body of a PROPFIND).
//!
//! This module owns the XML side of a listing: [`DavEntry`], the event-loop
//! parser over any [`BufRead`] source that hands out each entry as soon as
//! its `</response>` is read, and the in-memory [`parse_multistatus`] built
//! on it. Talking to the upstream (requests, retries, error classification)
//! stays in `webdav`.

use std::io::BufRead;
use std::ops::ControlFlow;

use percent_encoding::percent_decode_str;
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;

/// One `<d:response>` of a multistatus answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DavEntry {
    /// The href's path, percent-decoded (scheme and host removed).
    pub path: String,
    pub is_collection: bool,
    /// `getcontentlength`, when the server sent it with a 200 propstat.
    pub size: Option<u64>,
}

impl DavEntry {
    /// The last path segment.
    pub fn name(&self) -> Option<&str> {
        self.path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
    }
}

/// An unreadable multistatus body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PropfindParseError {
    #[error("malformed XML: {0}")]
    Xml(#[from] quick_xml::Error),
    #[error("no DAV: multistatus element")]
    NotMultistatus,
    #[error("the answer ends before its last element is closed (truncated)")]
    Truncated,
}

const DAV_NS: &[u8] = b"DAV:";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Collect {
    None,
    Href,
    Length,
    Status,
}

/// Parses a PROPFIND answer held in memory. Elements are matched by
/// namespace, not prefix; hrefs may be full URLs or paths, percent-encoded or
/// not. Entries whose response status is not 2xx, or whose href does not
/// decode, are left out.
pub(crate) fn parse_multistatus(body: &[u8]) -> Result<Vec<DavEntry>, PropfindParseError> {
    let mut out = Vec::new();
    read_multistatus(body, |e| {
        out.push(e);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

/// Parses a PROPFIND answer from `src`, calling `emit` with each entry as
/// soon as its `</response>` is read (same rules as [`parse_multistatus`]).
/// Only `<response>`s inside a `<multistatus>` count. Stops early, with
/// `Ok`, when `emit` breaks. An answer that ends before `</multistatus>` is
/// [`PropfindParseError::Truncated`], so a cut body never passes for a
/// shorter listing; entries emitted before that stay emitted.
pub(crate) fn read_multistatus<R: BufRead>(
    src: R,
    mut emit: impl FnMut(DavEntry) -> ControlFlow<()>,
) -> Result<(), PropfindParseError> {
    let mut reader = NsReader::from_reader(src);
    reader.config_mut().expand_empty_elements = true;
    reader.config_mut().trim_text(true);

    let mut buf = Vec::new();
    // Elements open right now, of any namespace.
    let mut depth: usize = 0;
    let mut saw_multistatus = false;
    // Current response: href, response-level status ok, collection, size.
    let mut in_response = false;
    let mut href = String::new();
    let mut response_ok = true;
    let mut is_collection = false;
    let mut size: Option<u64> = None;
    // Current propstat.
    let mut in_propstat = false;
    let mut ps_collection = false;
    let mut ps_size: Option<u64> = None;
    let mut ps_ok = true;
    let mut in_resourcetype = false;
    let mut collect = Collect::None;
    let mut text = String::new();

    loop {
        buf.clear();
        let (ns, event) = reader.read_resolved_event_into(&mut buf)?;
        let dav = matches!(ns, ResolveResult::Bound(Namespace(n)) if n == DAV_NS);
        match event {
            Event::Start(e) => {
                depth += 1;
                if !dav {
                    continue;
                }
                match e.local_name().as_ref() {
                    b"multistatus" => saw_multistatus = true,
                    b"response" if saw_multistatus => {
                        in_response = true;
                        href.clear();
                        response_ok = true;
                        is_collection = false;
                        size = None;
                    }
                    b"propstat" if in_response => {
                        in_propstat = true;
                        ps_collection = false;
                        ps_size = None;
                        ps_ok = true;
                    }
                    b"href" if in_response && !in_propstat => {
                        collect = Collect::Href;
                        text.clear();
                    }
                    b"resourcetype" if in_propstat => in_resourcetype = true,
                    b"collection" if in_resourcetype => ps_collection = true,
                    b"getcontentlength" if in_propstat => {
                        collect = Collect::Length;
                        text.clear();
                    }
                    b"status" if in_response => {
                        collect = Collect::Status;
                        text.clear();
                    }
                    _ => {}
                }
            }
            Event::Text(t) if collect != Collect::None => {
                text.push_str(&t.unescape()?);
            }
            Event::CData(t) if collect != Collect::None => {
                text.push_str(&String::from_utf8_lossy(&t));
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                if !dav {
                    continue;
                }
                match e.local_name().as_ref() {
                    b"href" if collect == Collect::Href => {
                        href = text.trim().to_string();
                        collect = Collect::None;
                    }
                    b"getcontentlength" if collect == Collect::Length => {
                        ps_size = text.trim().parse().ok();
                        collect = Collect::None;
                    }
                    b"status" if collect == Collect::Status => {
                        let ok = status_is_success(&text);
                        if in_propstat {
                            ps_ok = ok;
                        } else {
                            response_ok = ok;
                        }
                        collect = Collect::None;
                    }
                    b"resourcetype" => in_resourcetype = false,
                    b"propstat" if in_propstat => {
                        if ps_ok {
                            is_collection |= ps_collection;
                            size = size.or(ps_size);
                        }
                        in_propstat = false;
                    }
                    b"response" if in_response => {
                        in_response = false;
                        if response_ok && !href.is_empty() {
                            if let Some(path) = href_path(&href) {
                                let entry = DavEntry {
                                    is_collection: is_collection || path.ends_with('/'),
                                    path,
                                    size,
                                };
                                if emit(entry).is_break() {
                                    return Ok(());
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_multistatus {
        return Err(PropfindParseError::NotMultistatus);
    }
    if depth > 0 {
        return Err(PropfindParseError::Truncated);
    }
    Ok(())
}

/// "HTTP/1.1 200 OK" → true.
pub(crate) fn status_is_success(line: &str) -> bool {
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .is_some_and(|c| (200..300).contains(&c))
}

/// The decoded path of an href that is a path or a full URL.
fn href_path(href: &str) -> Option<String> {
    let path = match href.find("://") {
        Some(i) => {
            let rest = &href[i + 3..];
            match rest.find('/') {
                Some(j) => &rest[j..],
                None => "/",
            }
        }
        None => href,
    };
    decode_path(path)
}

/// A percent-decoded path; `None` when it is not UTF-8.
pub(crate) fn decode_path(path: &str) -> Option<String> {
    percent_decode_str(path)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    const APACHE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:" xmlns:ns0="DAV:">
<D:response xmlns:lp1="DAV:" xmlns:lp2="http://apache.org/dav/props/">
<D:href>/remote.php/dav/files/svc/dedupdav/objects/ab/</D:href>
<D:propstat>
<D:prop>
<lp1:resourcetype><D:collection/></lp1:resourcetype>
</D:prop>
<D:status>HTTP/1.1 200 OK</D:status>
</D:propstat>
<D:propstat>
<D:prop>
<lp1:getcontentlength/>
</D:prop>
<D:status>HTTP/1.1 404 Not Found</D:status>
</D:propstat>
</D:response>
<D:response xmlns:lp1="DAV:" xmlns:lp2="http://apache.org/dav/props/">
<D:href>/remote.php/dav/files/svc/dedupdav/objects/ab/cd/</D:href>
<D:propstat>
<D:prop>
<lp1:resourcetype><D:collection/></lp1:resourcetype>
</D:prop>
<D:status>HTTP/1.1 200 OK</D:status>
</D:propstat>
</D:response>
</D:multistatus>
"#;

    #[test]
    fn parses_apache_listing_with_other_prefixes() {
        let entries = parse_multistatus(APACHE.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[1].path,
            "/remote.php/dav/files/svc/dedupdav/objects/ab/cd/"
        );
        assert!(entries[1].is_collection);
        assert_eq!(entries[1].name(), Some("cd"));
        assert_eq!(entries[0].size, None);
    }

    #[test]
    fn parses_owncloud_listing_with_encoded_hrefs_and_sizes() {
        let name = "ab".repeat(32);
        let body = format!(
            r#"<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns" xmlns:oc="http://owncloud.org/ns">
 <d:response>
  <d:href>/remote.php/dav/files/svc%20user/my%20root/objects/ab/ab/</d:href>
  <d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop>
   <d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
 <d:response>
  <d:href>https://cloud.example.org/remote.php/dav/files/svc%20user/my%20root/objects/ab/ab/{name}</d:href>
  <d:propstat><d:prop><d:resourcetype/><d:getcontentlength>12345</d:getcontentlength>
   <oc:getcontentlength>999</oc:getcontentlength></d:prop>
   <d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
 <d:response>
  <d:href>/remote.php/dav/files/svc%20user/my%20root/objects/ab/ab/caf%C3%A9%3F.part</d:href>
  <d:propstat><d:prop><d:getcontentlength>7</d:getcontentlength></d:prop>
   <d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
</d:multistatus>"#
        );
        let entries = parse_multistatus(body.as_bytes()).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(
            entries[0].path,
            "/remote.php/dav/files/svc user/my root/objects/ab/ab/"
        );
        assert!(entries[0].is_collection);
        assert_eq!(entries[1].name(), Some(name.as_str()));
        assert_eq!(entries[1].size, Some(12345));
        assert!(!entries[1].is_collection);
        assert_eq!(entries[2].name(), Some("café?.part"));
        assert_eq!(entries[2].size, Some(7));
    }

    #[test]
    fn default_namespace_and_unusual_prefixes() {
        let body = r#"<multistatus xmlns="DAV:"><response><href>/a/b%2fc</href>
            <propstat><prop><getcontentlength>5</getcontentlength></prop><status>HTTP/1.1 200 OK</status></propstat>
            </response><x:response xmlns:x="DAV:"><x:href>/a/dir/</x:href><x:propstat><x:prop>
            <x:resourcetype><x:collection></x:collection></x:resourcetype></x:prop>
            <x:status>HTTP/1.1 200 OK</x:status></x:propstat></x:response></multistatus>"#;
        let entries = parse_multistatus(body.as_bytes()).unwrap();
        assert_eq!(entries[0].path, "/a/b/c");
        assert_eq!(entries[0].size, Some(5));
        assert!(entries[1].is_collection);
        assert_eq!(entries[1].name(), Some("dir"));
    }

    #[test]
    fn ignores_foreign_namespaces_and_failed_responses() {
        let body = r#"<d:multistatus xmlns:d="DAV:" xmlns:e="urn:evil">
            <d:response><d:href>/gone</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response>
            <d:response><d:href>/real</d:href><e:href>/fake</e:href>
              <d:propstat><d:prop><e:getcontentlength>1</e:getcontentlength><e:collection/></d:prop>
              <d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
            </d:multistatus>"#;
        let entries = parse_multistatus(body.as_bytes()).unwrap();
        assert_eq!(
            entries,
            vec![DavEntry {
                path: "/real".to_string(),
                is_collection: false,
                size: None
            }]
        );
    }

    #[test]
    fn rejects_non_multistatus_and_broken_xml() {
        assert!(matches!(
            parse_multistatus(b"<html><body>Login</body></html>"),
            Err(PropfindParseError::NotMultistatus)
        ));
        assert!(
            parse_multistatus(b"<d:multistatus xmlns:d=\"DAV:\"><d:response></d:multistatus>")
                .is_err()
        );
    }

    #[test]
    fn truncated_answer_is_an_error() {
        let cut = &APACHE.as_bytes()[..APACHE.find("</D:response>").unwrap() + 13];
        assert!(matches!(
            parse_multistatus(cut),
            Err(PropfindParseError::Truncated)
        ));
        let mut seen = Vec::new();
        let r = read_multistatus(cut, |e| {
            seen.push(e);
            ControlFlow::Continue(())
        });
        assert!(matches!(r, Err(PropfindParseError::Truncated)));
        assert_eq!(seen.len(), 1, "entries read before the cut stay read");
    }

    #[test]
    fn undecodable_href_is_skipped() {
        let body = r#"<d:multistatus xmlns:d="DAV:"><d:response><d:href>/bad%FF</d:href></d:response>
            <d:response><d:href>/ok</d:href></d:response></d:multistatus>"#;
        let entries = parse_multistatus(body.as_bytes()).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].path, "/ok");
    }

    #[test]
    fn status_lines() {
        assert!(status_is_success("HTTP/1.1 200 OK"));
        assert!(status_is_success("HTTP/1.1 207 Multi-Status"));
        assert!(!status_is_success("HTTP/1.1 404 Not Found"));
        assert!(!status_is_success("garbage"));
    }
}
