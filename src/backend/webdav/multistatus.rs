//! Reading WebDAV multistatus answers (the body of a PROPFIND).
//!
//! This module owns the XML side of a listing: [`DavEntry`], the event-loop
//! parser over any [`BufRead`] source that hands out each entry as soon as
//! its `</response>` is read, the in-memory [`parse_multistatus`] built on it,
//! and [`stream_multistatus`], which parses an HTTP body while it arrives so
//! that a folder of any size is listed in bounded memory. Talking to the
//! upstream (requests, retries, error classification) stays in the other
//! files of `webdav`.

use std::io::{BufRead, BufReader, Read};
use std::ops::ControlFlow;
use std::time::SystemTime;

use bytes::{Buf, Bytes};
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use percent_encoding::percent_decode_str;
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;
use tokio::sync::mpsc;

/// Body chunks buffered between the HTTP connection and the parser.
const CHUNKS_AHEAD: usize = 4;
/// Parsed entries buffered between the parser and the consumer.
const ENTRIES_AHEAD: usize = 256;
/// Read buffer of the parser.
const READ_BUFFER: usize = 64 << 10;

/// One `<d:response>` of a multistatus answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DavEntry {
    /// The href's path, percent-decoded (scheme and host removed).
    pub path: String,
    pub is_collection: bool,
    /// `getcontentlength`, when the server sent it with a 200 propstat.
    pub size: Option<u64>,
    /// `getlastmodified` (an HTTP date), when sent with a 200 propstat and
    /// readable.
    pub modified: Option<SystemTime>,
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
    #[error("the listing parser stopped before the end of the answer")]
    Interrupted,
}

/// Why a streamed listing ended early: the body could not be read (`E` is
/// the transport's error), or what arrived is not a readable multistatus.
#[derive(Debug)]
pub(crate) enum StreamError<E> {
    Body(E),
    Parse(PropfindParseError),
}

const DAV_NS: &[u8] = b"DAV:";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Collect {
    None,
    Href,
    Length,
    Modified,
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
    let mut modified: Option<SystemTime> = None;
    // Current propstat.
    let mut in_propstat = false;
    let mut ps_collection = false;
    let mut ps_size: Option<u64> = None;
    let mut ps_modified: Option<SystemTime> = None;
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
                        modified = None;
                    }
                    b"propstat" if in_response => {
                        in_propstat = true;
                        ps_collection = false;
                        ps_size = None;
                        ps_modified = None;
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
                    b"getlastmodified" if in_propstat => {
                        collect = Collect::Modified;
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
                    b"getlastmodified" if collect == Collect::Modified => {
                        ps_modified = httpdate::parse_http_date(text.trim()).ok();
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
                            modified = modified.or(ps_modified);
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
                                    modified,
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

/// Parses an HTTP body while it arrives. The parser runs on a blocking
/// thread fed through a small bounded channel of chunks; entries come back
/// through another bounded channel, so memory stays bounded whatever the
/// size of the answer. The stream ends after the last entry, or with one
/// `Err` (a body error is reported as such, not as the parse error it
/// causes). Dropping the stream stops the body download and the parser.
pub(crate) fn stream_multistatus<S, E>(
    body: S,
) -> BoxStream<'static, Result<DavEntry, StreamError<E>>>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Send + 'static,
{
    let (chunk_tx, chunk_rx) = mpsc::channel::<Result<Bytes, E>>(CHUNKS_AHEAD);
    let (entry_tx, entry_rx) = mpsc::channel::<Msg<E>>(ENTRIES_AHEAD);

    let feeder = tokio::spawn(async move {
        let mut body = std::pin::pin!(body);
        while let Some(item) = body.next().await {
            let failed = item.is_err();
            if chunk_tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });

    tokio::task::spawn_blocking(move || {
        let mut src = BufReader::with_capacity(
            READ_BUFFER,
            ChannelReader {
                rx: chunk_rx,
                chunk: Bytes::new(),
                failed: None,
            },
        );
        let parsed = read_multistatus(&mut src, |entry| {
            match entry_tx.blocking_send(Msg::Entry(entry)) {
                Ok(()) => ControlFlow::Continue(()),
                // Nobody listens any more.
                Err(_) => ControlFlow::Break(()),
            }
        });
        let last = match (src.into_inner().failed, parsed) {
            (Some(e), _) => Msg::Failed(StreamError::Body(e)),
            (None, Err(e)) => Msg::Failed(StreamError::Parse(e)),
            (None, Ok(())) => Msg::Done,
        };
        // Fails only when nobody listens any more.
        let _ = entry_tx.blocking_send(last);
    });

    let guard = AbortOnDrop(feeder);
    stream::unfold(Some((entry_rx, guard)), |state| async move {
        let (mut rx, guard) = state?;
        match rx.recv().await {
            Some(Msg::Entry(e)) => Some((Ok(e), Some((rx, guard)))),
            Some(Msg::Failed(e)) => Some((Err(e), None)),
            Some(Msg::Done) => None,
            // The parser went away without a word: never a silent short list.
            None => Some((
                Err(StreamError::Parse(PropfindParseError::Interrupted)),
                None,
            )),
        }
    })
    .boxed()
}

/// What the parser thread sends: entries, then exactly one of the others.
enum Msg<E> {
    Entry(DavEntry),
    Failed(StreamError<E>),
    Done,
}

/// Stops the body download when the listing is dropped; the parser then
/// reads the end of its input and stops too.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The parser's view of the body: chunks from the channel, end of input when
/// the channel closes. A body error is kept for the caller and ends the input
/// with an I/O error.
struct ChannelReader<E> {
    rx: mpsc::Receiver<Result<Bytes, E>>,
    chunk: Bytes,
    failed: Option<E>,
}

impl<E> Read for ChannelReader<E> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            if self.failed.is_some() {
                return Err(std::io::Error::other("the answer broke off"));
            }
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => self.failed = Some(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
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
    fn modification_times_are_read_from_good_propstats_only() {
        let body = r#"<d:multistatus xmlns:d="DAV:"><d:response><d:href>/a/ab01</d:href>
            <d:propstat><d:prop><d:getlastmodified>Sun, 06 Nov 1994 08:49:37 GMT</d:getlastmodified>
            </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
            <d:response><d:href>/a/ab02</d:href>
            <d:propstat><d:prop><d:getlastmodified>Sun, 06 Nov 1994 08:49:37 GMT</d:getlastmodified>
            </d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat></d:response>
            <d:response><d:href>/a/ab03</d:href>
            <d:propstat><d:prop><d:getlastmodified>yesterday</d:getlastmodified>
            </d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
            </d:multistatus>"#;
        let entries = parse_multistatus(body.as_bytes()).unwrap();
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(entries[0].modified, Some(when));
        assert_eq!(entries[1].modified, None, "not from a failed propstat");
        assert_eq!(entries[2].modified, None, "not a date");
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
                size: None,
                modified: None,
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

    /// An ownCloud-style answer for a folder of `n` objects, with the
    /// folder's own entry, a failed response and escaped characters.
    fn listing_body(n: usize) -> String {
        let mut body = String::from(
            r#"<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns" xmlns:oc="http://owncloud.org/ns">
 <d:response><d:href>/remote.php/dav/files/svc/dedupdav/objects/ab/</d:href>
  <d:propstat><d:prop><d:resourcetype><d:collection/></d:resourcetype></d:prop>
  <d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>
 <d:response><d:href>/gone</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response>
"#,
        );
        for i in 0..n {
            body.push_str(&format!(
                " <d:response><d:href>/remote.php/dav/files/svc/dedupdav/objects/ab/ab{i:062x}</d:href>\n  \
                 <d:propstat><d:prop><d:resourcetype/><d:getcontentlength>{i}</d:getcontentlength></d:prop>\n  \
                 <d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>\n"
            ));
        }
        body.push_str(
            " <d:response><d:href>/a%20b/x&amp;y</d:href><d:propstat><d:prop>\
             <d:getcontentlength><![CDATA[42]]></d:getcontentlength></d:prop>\
             <d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>\n</d:multistatus>\n",
        );
        body
    }

    type Item = Result<DavEntry, StreamError<std::io::Error>>;

    /// Streams `body` in pieces of `piece` bytes, then `tail` if any.
    async fn stream_in_pieces(
        body: &[u8],
        piece: usize,
        tail: Option<std::io::Error>,
    ) -> Vec<Item> {
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .chain(tail.map(Err))
            .collect();
        stream_multistatus(stream::iter(chunks)).collect().await
    }

    fn entries(items: Vec<Item>) -> Vec<DavEntry> {
        items
            .into_iter()
            .map(|r| r.unwrap_or_else(|e| panic!("unexpected error {e:?}")))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streamed_in_any_pieces_equals_in_memory() {
        let body = listing_body(1000);
        let want = parse_multistatus(body.as_bytes()).unwrap();
        assert_eq!(want.len(), 1002);
        assert_eq!(want[0].name(), Some("ab"));
        assert_eq!(want[1001].path, "/a b/x&y");
        assert_eq!(want[1001].size, Some(42));
        assert!(body.len() > 2 * 65536);
        for piece in [1, 7, 65536] {
            let got = entries(stream_in_pieces(body.as_bytes(), piece, None).await);
            assert_eq!(got, want, "pieces of {piece} bytes");
        }
        for small in [APACHE.to_string(), String::new()] {
            let got = stream_in_pieces(small.as_bytes(), 7, None).await;
            match parse_multistatus(small.as_bytes()) {
                Ok(want) => assert_eq!(entries(got), want),
                Err(_) => assert!(matches!(
                    got.as_slice(),
                    [Err(StreamError::Parse(PropfindParseError::NotMultistatus))]
                )),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn truncated_body_ends_with_an_error_not_a_short_list() {
        let body = listing_body(50);
        let full = parse_multistatus(body.as_bytes()).unwrap();
        let after_tenth = body.match_indices("</d:response>").nth(10).unwrap().0 + 13;
        for cut in [after_tenth, body.len() / 2, body.len() - 20] {
            let part = &body.as_bytes()[..cut];
            assert!(parse_multistatus(part).is_err(), "cut at {cut}");
            let mut got = stream_in_pieces(part, 7, None).await;
            let last = got.pop().unwrap();
            assert!(
                matches!(
                    last,
                    Err(StreamError::Parse(
                        PropfindParseError::Truncated | PropfindParseError::Xml(_)
                    ))
                ),
                "cut at {cut}: {last:?}"
            );
            let got = entries(got);
            assert!(got.len() < full.len());
            assert_eq!(got[..], full[..got.len()]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn body_error_is_reported_as_such() {
        let body = listing_body(20);
        let half = &body.as_bytes()[..body.len() / 2];
        let tail = std::io::Error::other("connection reset");
        let mut got = stream_in_pieces(half, 64, Some(tail)).await;
        match got.pop() {
            Some(Err(StreamError::Body(e))) => assert_eq!(e.to_string(), "connection reset"),
            other => panic!("{other:?}"),
        }
        assert!(!entries(got).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_stream_stops_the_download() {
        let body = listing_body(1000);
        let alive = std::sync::Arc::new(());
        let held = alive.clone();
        // The first 4 KiB, then an upstream that never sends more.
        let chunks = vec![Ok::<_, std::io::Error>(Bytes::copy_from_slice(
            &body.as_bytes()[..4096],
        ))];
        let endless = stream::iter(chunks).chain(stream::pending()).map(move |c| {
            let _ = &held;
            c
        });
        let mut entries = stream_multistatus(endless);
        assert!(matches!(entries.next().await, Some(Ok(_))));
        drop(entries);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::sync::Arc::strong_count(&alive) > 1 {
            assert!(std::time::Instant::now() < deadline, "body still read");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
