//! PROPFIND replies as ownCloud clients need them. dav-server writes
//! `d:getetag` without the quotes an entity tag has (RFC 4918 §15.6 wants
//! the quoted form, and sync clients compare it with the quoted `ETag`
//! header of PUT and GET); [`QuoteEtags`] adds them while the reply
//! streams, holding back at most one unfinished element between frames.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame};

const OPEN: &[u8] = b"<D:getetag>";
const CLOSE: &[u8] = b"</D:getetag>";
/// An etag element longer than this is passed through untouched.
const MAX_HELD: usize = 4096;

/// Rewrites `buf`; returns the bytes ready to send and the unfinished tail
/// to keep for the next frame (or the end of the body).
fn rewrite(buf: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut out = Vec::with_capacity(buf.len() + 16);
    let mut i = 0;
    while let Some(pos) = find(&buf[i..], OPEN) {
        let start = i + pos;
        let content_start = start + OPEN.len();
        match find(&buf[content_start..], CLOSE) {
            Some(len) => {
                let content = &buf[content_start..content_start + len];
                out.extend_from_slice(&buf[i..content_start]);
                if content.is_empty() || content.starts_with(b"\"") || content.starts_with(b"W/") {
                    out.extend_from_slice(content);
                } else {
                    out.push(b'"');
                    out.extend_from_slice(content);
                    out.push(b'"');
                }
                out.extend_from_slice(CLOSE);
                i = content_start + len + CLOSE.len();
            }
            None if buf.len() - start <= MAX_HELD => {
                out.extend_from_slice(&buf[i..start]);
                return (out, buf[start..].to_vec());
            }
            None => {
                out.extend_from_slice(&buf[i..content_start]);
                i = content_start;
            }
        }
    }
    // Hold back a tail that may be the beginning of the next element.
    let rest = &buf[i..];
    let keep = (1..OPEN.len())
        .rev()
        .find(|&n| rest.len() >= n && rest.ends_with(&OPEN[..n]))
        .unwrap_or(0);
    out.extend_from_slice(&rest[..rest.len() - keep]);
    (out, rest[rest.len() - keep..].to_vec())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A 207 body with every `D:getetag` value quoted.
pub struct QuoteEtags<B> {
    inner: Pin<Box<B>>,
    held: Vec<u8>,
    ended: bool,
}

impl<B> QuoteEtags<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner: Box::pin(inner),
            held: Vec::new(),
            ended: false,
        }
    }
}

impl<B> Body for QuoteEtags<B>
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
                        let mut buf = std::mem::take(&mut self.held);
                        buf.extend_from_slice(&data);
                        let (out, held) = rewrite(&buf);
                        self.held = held;
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
                        return Poll::Ready(Some(Ok(Frame::data(
                            BytesMut::from(&held[..]).freeze(),
                        ))));
                    }
                    return Poll::Ready(None);
                }
            }
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        // The length changes; only a lower bound is known.
        let mut h = http_body::SizeHint::new();
        h.set_lower(self.inner.size_hint().lower());
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn run(parts: &[&str]) -> String {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from(p.to_string()))))
            .collect();
        let body = QuoteEtags::new(StreamBody::new(futures_util::stream::iter(frames)));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = rt.block_on(body.collect()).unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn quotes_whole_and_split_elements() {
        let xml = "<D:prop><D:getetag>2a-7</D:getetag></D:prop>";
        let want = "<D:prop><D:getetag>\"2a-7\"</D:getetag></D:prop>";
        assert_eq!(run(&[xml]), want);
        // Split at every possible place.
        for i in 1..xml.len() {
            assert_eq!(run(&[&xml[..i], &xml[i..]]), want, "split at {i}");
        }
        assert_eq!(
            run(&["<D:getetag>\"q\"</D:getetag><D:getetag></D:getetag>"]),
            "<D:getetag>\"q\"</D:getetag><D:getetag></D:getetag>"
        );
        assert_eq!(run(&["no etag here <D:get"]), "no etag here <D:get");
        assert_eq!(
            run(&["<D:getetag>a</D:getetag>", "x<D:getetag>b</D:getetag>"]),
            "<D:getetag>\"a\"</D:getetag>x<D:getetag>\"b\"</D:getetag>"
        );
    }
}
