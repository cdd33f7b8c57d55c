//! Request-URIs that carry a `#fragment`. A fragment is never part of a
//! request target (RFC 9110, 7.1), but a client that sends one names
//! something other than the resource it reaches: litmus' `DELETE
//! /coll/#frag` would remove `/coll/`. hyper's URI parser drops the
//! fragment silently, so the request the service sees cannot tell; this
//! module watches the bytes hyper reads instead.
//!
//! [`FragmentWatch`] wraps a connection's reads and notes every line that
//! has the shape of a request line (`METHOD target HTTP/1.x`) with a `#`
//! in its target, as a hash of the method and the target before the `#`.
//! The service asks [`Fragments::take`] for each request; a match is
//! refused with 400 before anything is looked up. Lines are looked for at
//! line starts and at the start of each read (where the next request of a
//! keep-alive connection arrives), so a body that happened to contain the
//! very same request line can at worst get the same client's next
//! identical request refused. Memory per connection is bounded: at most
//! [`MAX_NOTED`] hashes and one partial line of at most [`MAX_LINE`] bytes
//! (a longer request line is not watched).

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest request line watched, in bytes.
pub const MAX_LINE: usize = 8 << 10;
/// Fragment-carrying request lines remembered per connection.
pub const MAX_NOTED: usize = 8;

/// The request lines with a fragment a connection has read and the service
/// has not yet met.
#[derive(Debug, Clone, Default)]
pub struct Fragments(Arc<Mutex<VecDeque<u64>>>);

impl Fragments {
    /// What is remembered (for the fuzzing property).
    pub(crate) fn noted(&self) -> Vec<u64> {
        self.0.lock().iter().copied().collect()
    }

    fn note(&self, method: &[u8], target: &[u8]) {
        let mut noted = self.0.lock();
        if noted.len() == MAX_NOTED {
            noted.pop_front();
        }
        noted.push_back(key(method, target));
    }

    /// Whether the request `method uri` arrived with a fragment (forgotten
    /// once asked).
    pub fn take(&self, method: &http::Method, uri: &http::Uri) -> bool {
        let mut noted = self.0.lock();
        if noted.is_empty() {
            return false;
        }
        let m = method.as_str().as_bytes();
        let origin = uri.path_and_query().map_or("", |p| p.as_str());
        let keys = [
            key(m, origin.as_bytes()),
            key(m, uri.to_string().as_bytes()),
        ];
        match noted.iter().position(|k| keys.contains(k)) {
            Some(i) => {
                noted.remove(i);
                true
            }
            None => false,
        }
    }
}

fn key(method: &[u8], target: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    method.hash(&mut h);
    target.hash(&mut h);
    h.finish()
}

/// A connection's reads, watched for request lines with a fragment.
pub struct FragmentWatch<IO> {
    inner: IO,
    fragments: Fragments,
    /// The unfinished last line of the previous read, while it may still
    /// be a request line.
    partial: Vec<u8>,
}

impl<IO> FragmentWatch<IO> {
    pub fn new(inner: IO, fragments: Fragments) -> Self {
        Self {
            inner,
            fragments,
            partial: Vec::new(),
        }
    }

    pub fn into_inner(self) -> IO {
        self.inner
    }

    /// The unfinished line held between reads, in bytes.
    pub(crate) fn held(&self) -> usize {
        self.partial.len()
    }

    /// Looks at the bytes just read.
    pub(crate) fn scan(&mut self, data: &[u8]) {
        let first_end = data.iter().position(|&c| c == b'\n');
        let growing = self.continue_partial(data, first_end);
        // Without a `#`, no line that starts in `data` has a fragment.
        if data.contains(&b'#') {
            let mut start = 0;
            while let Some(end) = data[start..].iter().position(|&c| c == b'\n') {
                self.check_line(&data[start..=start + end]);
                start += end + 1;
            }
        }
        if !growing {
            let tail = data.iter().rposition(|&c| c == b'\n').map_or(0, |i| i + 1);
            self.keep_partial(&data[tail..]);
        }
    }

    /// Goes on with the previous read's unfinished line; whether it is
    /// still unfinished.
    fn continue_partial(&mut self, data: &[u8], first_end: Option<usize>) -> bool {
        if self.partial.is_empty() {
            return false;
        }
        let head = &data[..first_end.map_or(data.len(), |i| i + 1)];
        if self.partial.len() + head.len() > MAX_LINE {
            self.partial.clear();
            return false;
        }
        self.partial.extend_from_slice(head);
        if first_end.is_none() {
            return true;
        }
        let line = std::mem::take(&mut self.partial);
        self.check_line(&line);
        false
    }

    /// Keeps an unfinished line that may be the start of a request line.
    fn keep_partial(&mut self, tail: &[u8]) {
        let may_be_request = tail.len() <= MAX_LINE
            && tail.first().is_some_and(u8::is_ascii_uppercase)
            && tail.iter().all(|c| (0x20..0x7f).contains(c) || *c == b'\r');
        self.partial.clear();
        if may_be_request {
            self.partial.extend_from_slice(tail);
        }
    }

    /// Notes `line` if it is a request line whose target has a fragment.
    fn check_line(&self, line: &[u8]) {
        if let Some((method, target)) = request_with_fragment(line) {
            self.fragments.note(method, target);
        }
    }
}

/// (method, target before `#`) of `METHOD target HTTP/1.x\r\n` whose
/// target holds a `#`: printable ASCII, at most [`MAX_LINE`] bytes with
/// its newline (what a line split across reads is held to as well).
fn request_with_fragment(line: &[u8]) -> Option<(&[u8], &[u8])> {
    if line.len() > MAX_LINE {
        return None;
    }
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if !line.first().is_some_and(u8::is_ascii_uppercase)
        || !line.iter().all(|c| (0x20..0x7f).contains(c))
    {
        return None;
    }
    let hash = line.iter().position(|&c| c == b'#')?;
    let mut parts = line.split(|&c| c == b' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let shaped = parts.next().is_none()
        && !method.is_empty()
        && method.iter().all(|c| c.is_ascii_uppercase() || *c == b'-')
        && matches!(version, b"HTTP/1.1" | b"HTTP/1.0")
        && hash > method.len();
    shaped.then(|| (method, &target[..hash - method.len() - 1]))
}

impl<IO: AsyncRead + Unpin> AsyncRead for FragmentWatch<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let filled = &buf.filled()[before..];
            if !filled.is_empty() {
                this.scan(filled);
            }
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for FragmentWatch<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(reads: &[&[u8]]) -> Fragments {
        let f = Fragments::default();
        let mut w = FragmentWatch::new((), f.clone());
        for r in reads {
            w.scan(r);
        }
        f
    }

    fn took(f: &Fragments, method: &str, uri: &str) -> bool {
        f.take(&method.parse().unwrap(), &uri.parse().unwrap())
    }

    #[test]
    fn notes_request_lines_with_a_fragment() {
        let f = watched(&[b"DELETE /a/frag/#ment HTTP/1.1\r\nHost: x\r\n\r\n"]);
        assert!(!took(&f, "GET", "/a/frag/"));
        assert!(took(&f, "DELETE", "/a/frag/"));
        assert!(!took(&f, "DELETE", "/a/frag/"), "forgotten once met");
        let f = watched(&[b"GET /x?q=1#top HTTP/1.0\n\n"]);
        assert!(took(&f, "GET", "/x?q=1"));
        let f = watched(&[b"PROPFIND http://h:1/p#f HTTP/1.1\r\n"]);
        assert!(took(&f, "PROPFIND", "http://h:1/p"));
    }

    #[test]
    fn lines_split_across_reads_and_later_requests() {
        let line = b"DELETE /a/frag/#ment HTTP/1.1\r\nHost: x\r\n\r\n";
        for i in 1..line.len() {
            let f = watched(&[&line[..i], &line[i..]]);
            assert!(took(&f, "DELETE", "/a/frag/"), "split at {i}");
        }
        // A keep-alive request after a body that ended mid-line.
        let f = watched(&[b"PUT /f HTTP/1.1\r\nContent-Length: 3\r\n\r\nABC", line]);
        assert!(took(&f, "DELETE", "/a/frag/"));
    }

    #[test]
    fn ignores_everything_else() {
        let f = watched(&[
            b"GET /a/%23b HTTP/1.1\r\n",
            b"a # in a body\r\n",
            b"get /x#y HTTP/1.1\r\n",
            b"GET /x#y HTTP/2\r\n",
            b"GET /x#y HTTP/1.1 more\r\n",
        ]);
        assert!(f.0.lock().is_empty());
        // Bounded however many are sent.
        let many = b"GET /x#y HTTP/1.1\r\n".repeat(100);
        let f = watched(&[&many]);
        assert_eq!(f.0.lock().len(), MAX_NOTED);
        let long = format!("GET /{}#y HTTP/1.1\r\n", "a".repeat(MAX_LINE));
        let (a, b) = long.as_bytes().split_at(10);
        assert!(watched(&[a, b]).0.lock().is_empty());
    }
}
