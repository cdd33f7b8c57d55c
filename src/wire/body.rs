//! Request bodies as the WebDAV layer receives them.
//!
//! Two gaps of dav-server are closed here, before it sees a byte:
//!
//! - **XML bodies are checked without building a tree.** dav-server parses
//!   PROPFIND, PROPPATCH and LOCK bodies into an element tree recursively; a
//!   6 KB body nested ~2,000 elements deep overflowed a worker's stack and
//!   aborted the whole process. Every body of a method other than PUT is
//!   read here (at most `limits.xml_max_bytes`, 413 above); the XML ones
//!   (PROPFIND, PROPPATCH, LOCK, REPORT, SEARCH) are walked once
//!   by a streaming reader that keeps only a depth counter: nesting depth,
//!   element count, attributes per element, the size of a LOCK's
//!   `<owner>`, and no `<!DOCTYPE` (entity declarations are how "billion
//!   laughs" bodies grow). Malformed XML is refused here too. Only a body
//!   that passes goes on, already in memory.
//! - **A PUT body must be exactly as long as announced.** dav-server writes
//!   the body to the file and flushes — commits — it *before* it compares
//!   the byte count with `Content-Length` or `X-Expected-Entity-Length`; a
//!   too-long or too-short body replaced the file and then answered 400.
//!   [`LengthChecked`] fails the stream before the first byte past the
//!   announced length and at an early end, so dav-server returns before
//!   `flush` and the previous version stays untouched.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderMap, Method};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use quick_xml::events::Event;
use quick_xml::Reader;

use crate::config::LimitsConfig;
use crate::wire::error::FailureSlot;
use crate::wire::error::GatewayError;

/// Attributes one XML element may carry (namespace declarations included).
/// Real clients send at most a handful.
const MAX_ATTRIBUTES: usize = 64;

/// Why a request body is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the XML body nests elements deeper than {0} levels")]
    TooDeep(usize),
    #[error("the XML body has more than {0} elements")]
    TooManyElements(usize),
    #[error("an XML element has more than {0} attributes")]
    TooManyAttributes(usize),
    #[error("the lock owner is larger than {0} bytes")]
    OwnerTooLarge(usize),
    #[error("XML bodies with a DOCTYPE are not accepted")]
    Doctype,
    #[error("the XML body is malformed: {0}")]
    Malformed(String),
    #[error("the request body could not be read: {0}")]
    Read(String),
    #[error("{0} is not a byte count")]
    BadLength(&'static str),
}

/// Limits on XML request bodies (from `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct XmlLimits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
    pub lock_owner_bytes: usize,
}

impl From<&LimitsConfig> for XmlLimits {
    fn from(l: &LimitsConfig) -> Self {
        Self {
            max_bytes: l.xml_max_bytes,
            max_depth: l.xml_max_depth,
            max_elements: l.xml_max_elements,
            lock_owner_bytes: l.lock_owner_bytes,
        }
    }
}

/// A request body for the WebDAV layer: streamed (a PUT, checked against
/// its announced length) or read and checked here.
pub enum DavBody {
    Put(Box<LengthChecked<Incoming>>),
    Read(Option<Bytes>),
}

impl Body for DavBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            DavBody::Put(b) => Pin::new(b.as_mut()).poll_frame(cx),
            DavBody::Read(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            DavBody::Put(b) => b.is_end_stream(),
            DavBody::Read(data) => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            DavBody::Put(b) => b.size_hint(),
            DavBody::Read(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

/// Whether the method's body is a file's content (streamed) rather than a
/// small XML document (read and checked).
pub fn streams_content(method: &Method) -> bool {
    method == Method::PUT
}

/// Whether the WebDAV layer parses the method's body as XML. Other bodies
/// (a MKCOL body, which it answers 415) are read, capped, and passed on.
fn parses_xml(method: &Method) -> bool {
    matches!(
        method.as_str(),
        "PROPFIND" | "PROPPATCH" | "LOCK" | "REPORT" | "SEARCH"
    )
}

/// Turns the request body into what the WebDAV layer gets: a PUT's body
/// wrapped in its length check, any other body read and checked as XML.
pub async fn prepare(
    headers: &HeaderMap,
    method: &Method,
    body: Incoming,
    limits: &XmlLimits,
    slot: &FailureSlot,
) -> Result<DavBody, BodyError> {
    if streams_content(method) {
        let announced = announced_length(headers)?;
        let checked = LengthChecked::new(body, announced).reporting_to(slot.clone());
        return Ok(DavBody::Put(Box::new(checked)));
    }
    let data = read_capped(body, limits.max_bytes).await?;
    if !data.is_empty() && parses_xml(method) {
        check_xml(&data, limits, method.as_str() == "LOCK")?;
    }
    Ok(DavBody::Read(Some(data)))
}

/// The body length a PUT announces: `Content-Length`, else macOS Finder's
/// `X-Expected-Entity-Length` (with `Transfer-Encoding: chunked`).
pub fn announced_length(headers: &HeaderMap) -> Result<Option<u64>, BodyError> {
    let parse = |name: &'static str| -> Result<Option<u64>, BodyError> {
        match headers.get(name) {
            None => Ok(None),
            Some(v) => v
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Some)
                .ok_or(BodyError::BadLength(name)),
        }
    };
    match parse(header::CONTENT_LENGTH.as_str())? {
        Some(n) => Ok(Some(n)),
        None => parse("X-Expected-Entity-Length"),
    }
}

/// Reads a whole body, refusing it as soon as it passes `max` bytes.
pub async fn read_capped(mut body: Incoming, max: usize) -> Result<Bytes, BodyError> {
    if body.size_hint().lower() > max as u64 {
        return Err(BodyError::TooLarge(max));
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                return Err(BodyError::TooLarge(max));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Walks an XML document once, keeping only counters: refuses it if it is
/// malformed, nests deeper or holds more elements than allowed, declares a
/// DOCTYPE, or (for LOCK) carries an `<owner>` larger than allowed.
pub fn check_xml(data: &[u8], limits: &XmlLimits, is_lock: bool) -> Result<(), BodyError> {
    let mut reader = Reader::from_reader(data);
    reader.config_mut().check_end_names = true;
    let mut walk = Walk::default();
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader
            .read_event()
            .map_err(|e| BodyError::Malformed(e.to_string()))?;
        match event {
            Event::Start(e) => {
                walk.open(e.attributes().count(), limits)?;
                if is_lock && e.local_name().as_ref() == b"owner" && walk.owner_at.is_none() {
                    walk.owner_at = Some((walk.depth, before));
                }
            }
            Event::Empty(e) => {
                walk.open(e.attributes().count(), limits)?;
                walk.depth -= 1;
            }
            Event::End(_) => {
                if let Some((depth, start)) = walk.owner_at {
                    if depth == walk.depth {
                        let size = reader.buffer_position() as usize - start;
                        if size > limits.lock_owner_bytes {
                            return Err(BodyError::OwnerTooLarge(limits.lock_owner_bytes));
                        }
                        walk.owner_at = None;
                    }
                }
                walk.depth = walk.depth.saturating_sub(1);
            }
            Event::DocType(_) => return Err(BodyError::Doctype),
            Event::Eof => break,
            _ => {}
        }
    }
    if walk.elements == 0 || walk.depth != 0 {
        return Err(BodyError::Malformed("no complete root element".into()));
    }
    Ok(())
}

/// Counters of [`check_xml`].
#[derive(Default)]
struct Walk {
    depth: usize,
    elements: usize,
    /// Depth and offset of an open LOCK `<owner>` element.
    owner_at: Option<(usize, usize)>,
}

impl Walk {
    fn open(&mut self, attributes: usize, limits: &XmlLimits) -> Result<(), BodyError> {
        self.depth += 1;
        self.elements += 1;
        if self.depth > limits.max_depth {
            return Err(BodyError::TooDeep(limits.max_depth));
        }
        if self.elements > limits.max_elements {
            return Err(BodyError::TooManyElements(limits.max_elements));
        }
        if attributes > MAX_ATTRIBUTES {
            return Err(BodyError::TooManyAttributes(MAX_ATTRIBUTES));
        }
        Ok(())
    }
}

/// A body that must be exactly `announced` bytes long (when announced):
/// the first frame that would pass the length, or an end before it, is
/// turned into an error, so whoever consumes it never sees a complete body
/// that is not the announced one.
pub struct LengthChecked<B> {
    inner: B,
    announced: Option<u64>,
    seen: u64,
    failed: bool,
    /// Where the refusal is recorded, so the reply is a precise 400.
    slot: Option<FailureSlot>,
}

impl<B> LengthChecked<B> {
    pub fn new(inner: B, announced: Option<u64>) -> Self {
        Self {
            inner,
            announced,
            seen: 0,
            failed: false,
            slot: None,
        }
    }

    /// Records the refusal in the request's failure slot too.
    pub fn reporting_to(mut self, slot: FailureSlot) -> Self {
        self.slot = Some(slot);
        self
    }

    fn fail(&mut self, why: String) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.failed = true;
        match &self.slot {
            Some(slot) => {
                slot.record(GatewayError::BadRequest(format!(
                    "{why}; nothing was stored"
                )));
            }
            None => tracing::info!(reason = %why, "PUT body refused; nothing is committed"),
        }
        Poll::Ready(Some(Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            why,
        ))))
    }
}

impl<B> Body for LengthChecked<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.seen += data.len() as u64;
                    if let Some(n) = this.announced.filter(|n| this.seen > *n) {
                        return this.fail(format!("body longer than the announced {n} bytes"));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => this.fail(format!("body broke off: {e}")),
            Poll::Ready(None) => match this.announced.filter(|n| this.seen < *n) {
                Some(n) => this.fail(format!(
                    "body ended after {} of the announced {n} bytes",
                    this.seen
                )),
                None => Poll::Ready(None),
            },
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        // Never claim the end early: the final check runs when the inner
        // body reports its end.
        self.failed
    }

    fn size_hint(&self) -> SizeHint {
        match self.announced {
            Some(n) => SizeHint::with_exact(n.saturating_sub(self.seen)),
            None => self.inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn limits() -> XmlLimits {
        XmlLimits {
            max_bytes: 1 << 20,
            max_depth: 32,
            max_elements: 1000,
            lock_owner_bytes: 64,
        }
    }

    fn nested(depth: usize) -> String {
        let mut s = String::from("<?xml version=\"1.0\"?>");
        for _ in 0..depth {
            s.push_str("<D:prop xmlns:D=\"DAV:\">");
        }
        for _ in 0..depth {
            s.push_str("</D:prop>");
        }
        s
    }

    #[test]
    fn accepts_what_clients_send() {
        let propfind = "<?xml version=\"1.0\"?><d:propfind xmlns:d=\"DAV:\" \
            xmlns:oc=\"http://owncloud.org/ns\"><d:prop><d:getetag/><oc:fileid/>\
            </d:prop></d:propfind>";
        assert_eq!(check_xml(propfind.as_bytes(), &limits(), false), Ok(()));
        let lock = "<?xml version=\"1.0\"?><D:lockinfo xmlns:D=\"DAV:\"><D:lockscope>\
            <D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>\
            <D:owner><D:href>alice</D:href></D:owner></D:lockinfo>";
        assert_eq!(check_xml(lock.as_bytes(), &limits(), true), Ok(()));
        assert_eq!(check_xml(nested(32).as_bytes(), &limits(), false), Ok(()));
    }

    #[test]
    fn refuses_deep_wide_doctype_and_broken_bodies() {
        let l = limits();
        assert_eq!(
            check_xml(nested(2000).as_bytes(), &l, false),
            Err(BodyError::TooDeep(32))
        );
        let wide = format!("<a>{}</a>", "<b/>".repeat(1000));
        assert_eq!(
            check_xml(wide.as_bytes(), &l, false),
            Err(BodyError::TooManyElements(1000))
        );
        let attrs: String = (0..65).map(|i| format!(" a{i}=\"x\"")).collect();
        let many = format!("<a{attrs}/>");
        assert_eq!(
            check_xml(many.as_bytes(), &l, false),
            Err(BodyError::TooManyAttributes(64))
        );
        let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\">]><a>&lol;</a>";
        assert_eq!(
            check_xml(laughs.as_bytes(), &l, false),
            Err(BodyError::Doctype)
        );
        for broken in ["<a><b></a>", "<a>", "just text", "<a></a><", "</a>"] {
            assert!(
                matches!(
                    check_xml(broken.as_bytes(), &l, false),
                    Err(BodyError::Malformed(_))
                ),
                "{broken}"
            );
        }
        let owner = format!(
            "<D:lockinfo xmlns:D=\"DAV:\"><D:owner>{}</D:owner></D:lockinfo>",
            "x".repeat(100)
        );
        assert_eq!(
            check_xml(owner.as_bytes(), &l, true),
            Err(BodyError::OwnerTooLarge(64))
        );
    }

    fn body(parts: &[&'static [u8]]) -> impl Body<Data = Bytes, Error = std::io::Error> + Unpin {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    async fn collect(
        b: LengthChecked<impl Body<Data = Bytes, Error = std::io::Error> + Unpin>,
    ) -> Result<Vec<u8>, String> {
        b.collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn a_body_must_match_its_announced_length() {
        let exact = LengthChecked::new(body(&[b"abc", b"def"]), Some(6));
        assert_eq!(collect(exact).await, Ok(b"abcdef".to_vec()));
        let unannounced = LengthChecked::new(body(&[b"abc", b"def"]), None);
        assert_eq!(collect(unannounced).await, Ok(b"abcdef".to_vec()));
        let long = LengthChecked::new(body(&[b"abc", b"def"]), Some(4));
        assert!(collect(long).await.unwrap_err().contains("longer"));
        let short = LengthChecked::new(body(&[b"abc"]), Some(4));
        assert!(collect(short).await.unwrap_err().contains("ended after 3"));
    }
}
