//! Connection timeouts: what one connection is doing, and how long it may
//! keep doing it.
//!
//! An [`Activity`] per connection is told by the socket ([`WatchedIo`]) about
//! every read and write, and by the service ([`RequestGuard`]) when a request
//! is dispatched and when its reply body is done. From that, the connection
//! is in one of three phases, each with its own deadline:
//!
//! - **idle**: no request in flight and no byte of the next one: closed
//!   `idle` after the last byte exchanged;
//! - **header**: bytes of a request arrived but hyper has not dispatched it
//!   yet: closed `header` after the *first* byte, however the rest trickles
//!   in (a client dribbling one byte a second gains nothing);
//! - **request**: a request in flight. Only time the gateway spends waiting
//!   on the client counts (a read for body bytes, or a write the client does
//!   not take, is pending): closed when that wait has lasted `body` since the
//!   last progress in either direction. A download the client keeps reading,
//!   or an upload it keeps sending, never times out; time the gateway spends
//!   on its own work (upstream, commit) never counts.
//!
//! hyper's own `header_read_timeout` starts when the connection becomes ready
//! for a request, so it also bounds the keep-alive wait and cannot tell an
//! idle client (allowed 120 s) from a slow header (30 s); it stays on as a
//! backstop of `idle + header` (see `listener.rs`).
//!
//! When a deadline passes the connection is *expired*: every further read or
//! write fails with [`Stalled`], and a pending one is woken. hyper and the
//! handler then unwind through their ordinary error paths: a PUT whose body
//! stalls sees a body error, exactly as when the client hangs up, and
//! commits nothing.
//!
//! Everything here runs on the connection's one task (the watchdog is polled
//! beside hyper's connection future), so the relaxed atomics never race;
//! they are atomics only to be shared through an `Arc`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http::GwBody;

/// Milliseconds since the connection opened; `NONE` for "not happening".
type Millis = u64;
const NONE: Millis = u64::MAX;

/// Why a connection was closed by a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stalled {
    #[error("the request header did not arrive within the header timeout")]
    Header,
    #[error("no request came within the idle timeout")]
    Idle,
    #[error("the transfer made no progress within the body timeout")]
    Body,
    #[error("the TLS handshake did not complete within the handshake timeout")]
    Handshake,
}

impl Stalled {
    pub fn phase(self) -> &'static str {
        match self {
            Stalled::Header => "header",
            Stalled::Idle => "idle",
            Stalled::Body => "body",
            Stalled::Handshake => "handshake",
        }
    }
}

/// The three limits of [`Activity`].
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
    pub body: Duration,
}

impl Timeouts {
    fn shortest(&self) -> Duration {
        self.header.min(self.idle).min(self.body)
    }
}

/// What one connection is doing (see the module comment).
pub struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    idle_since: AtomicU64,
    header_since: AtomicU64,
    last_progress: AtomicU64,
    read_wait: AtomicU64,
    write_wait: AtomicU64,
    expired: OnceLock<Stalled>,
    read_waker: AtomicWaker,
    write_waker: AtomicWaker,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            header_since: AtomicU64::new(NONE),
            last_progress: AtomicU64::new(0),
            read_wait: AtomicU64::new(NONE),
            write_wait: AtomicU64::new(NONE),
            expired: OnceLock::new(),
            read_waker: AtomicWaker::new(),
            write_waker: AtomicWaker::new(),
        })
    }

    fn now(&self) -> Millis {
        self.opened.elapsed().as_millis() as Millis
    }

    /// hyper dispatched a request; it is in flight until the guard (carried
    /// by its reply body) is dropped.
    pub fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Relaxed);
        self.header_since.store(NONE, Relaxed);
        RequestGuard(self.clone())
    }

    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Relaxed) == 1 {
            self.idle_since.store(self.now(), Relaxed);
            self.header_since.store(NONE, Relaxed);
        }
    }

    fn read_done(&self, bytes: usize) {
        self.read_wait.store(NONE, Relaxed);
        if bytes == 0 {
            return;
        }
        let now = self.now();
        self.last_progress.store(now, Relaxed);
        if self.in_flight.load(Relaxed) == 0 && self.header_since.load(Relaxed) == NONE {
            self.header_since.store(now, Relaxed);
        }
    }

    fn write_done(&self, bytes: usize) {
        self.write_wait.store(NONE, Relaxed);
        if bytes > 0 {
            self.last_progress.store(self.now(), Relaxed);
        }
    }

    fn waiting(&self, which: &AtomicU64) {
        if which.load(Relaxed) == NONE {
            which.store(self.now(), Relaxed);
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            in_flight: self.in_flight.load(Relaxed) > 0,
            idle_since: self.idle_since.load(Relaxed),
            header_since: self.header_since.load(Relaxed),
            last_progress: self.last_progress.load(Relaxed),
            read_wait: self.read_wait.load(Relaxed),
            write_wait: self.write_wait.load(Relaxed),
        }
    }

    /// Fails every later read and write with `why`, waking pending ones.
    pub fn expire(&self, why: Stalled) {
        let _ = self.expired.set(why);
        self.read_waker.wake();
        self.write_waker.wake();
    }

    fn expired(&self) -> Option<io::Error> {
        self.expired
            .get()
            .map(|why| io::Error::new(io::ErrorKind::TimedOut, *why))
    }
}

/// Marks a request in flight until dropped.
pub struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The state the deadline is computed from.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    in_flight: bool,
    idle_since: Millis,
    header_since: Millis,
    last_progress: Millis,
    read_wait: Millis,
    write_wait: Millis,
}

impl Snapshot {
    /// When the current phase ends, and which it is; `None` while the
    /// gateway itself is working on a request.
    fn deadline(&self, t: &Timeouts) -> Option<(Millis, Stalled)> {
        let after = |since: Millis, limit: Duration| since.saturating_add(limit.as_millis() as u64);
        if self.in_flight {
            let waiting = self.read_wait.min(self.write_wait);
            (waiting != NONE).then(|| {
                (
                    after(waiting.max(self.last_progress), t.body),
                    Stalled::Body,
                )
            })
        } else if self.header_since != NONE {
            Some((after(self.header_since, t.header), Stalled::Header))
        } else {
            let quiet = self.idle_since.max(self.last_progress);
            Some((after(quiet, t.idle), Stalled::Idle))
        }
    }
}

/// Sleeps until the connection's current phase passes its deadline and
/// says which one it was.
///
/// It wakes at least every `t.shortest()`, so a phase that starts while it
/// sleeps (it is not told) is still caught at its exact deadline: every
/// limit is at least that long.
pub async fn watch(activity: &Activity, t: &Timeouts) -> Stalled {
    let tick = t.shortest();
    loop {
        let now = activity.now();
        let nap = match activity.snapshot().deadline(t) {
            Some((at, why)) if at <= now => return why,
            Some((at, _)) => Duration::from_millis(at - now).min(tick),
            None => tick,
        };
        tokio::time::sleep(nap).await;
    }
}

/// The client's socket (or the TLS stream over it, so only what the client
/// means counts), reporting progress and waits to its [`Activity`].
pub struct WatchedIo<S> {
    stream: S,
    activity: Arc<Activity>,
}

impl<S> WatchedIo<S> {
    pub fn new(stream: S, activity: Arc<Activity>) -> Self {
        Self { stream, activity }
    }

    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Records a write's outcome; `Pending` means the client is not taking
    /// what the gateway sends.
    fn after_write(&self, cx: &Context<'_>, r: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        match r {
            Poll::Pending => {
                self.activity.write_waker.register(cx.waker());
                self.activity.waiting(&self.activity.write_wait);
                match self.activity.expired() {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Pending,
                }
            }
            Poll::Ready(r) => {
                self.activity.write_done(r.as_ref().map_or(0, |n| *n));
                Poll::Ready(r)
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.activity.expired() {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Pending => {
                this.activity.read_waker.register(cx.waker());
                this.activity.waiting(&this.activity.read_wait);
                match this.activity.expired() {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Pending,
                }
            }
            Poll::Ready(r) => {
                this.activity.read_done(buf.filled().len() - before);
                Poll::Ready(r)
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.activity.expired() {
            return Poll::Ready(Err(e));
        }
        let r = Pin::new(&mut this.stream).poll_write(cx, data);
        this.after_write(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.activity.expired() {
            return Poll::Ready(Err(e));
        }
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.after_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A reply body that keeps its request in flight until hyper is done with
/// it (sent whole, or dropped).
pub struct ReplyBody {
    inner: GwBody,
    _request: RequestGuard,
}

impl ReplyBody {
    pub fn new(inner: GwBody, request: RequestGuard) -> Self {
        Self {
            inner,
            _request: request,
        }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header: Duration::from_millis(30),
        idle: Duration::from_millis(120),
        body: Duration::from_millis(60),
    };

    fn idle_at(ms: Millis) -> Snapshot {
        Snapshot {
            in_flight: false,
            idle_since: ms,
            header_since: NONE,
            last_progress: ms,
            read_wait: ms,
            write_wait: NONE,
        }
    }

    #[test]
    fn an_idle_connection_gets_the_idle_timeout_from_its_last_byte() {
        assert_eq!(idle_at(0).deadline(&T), Some((120, Stalled::Idle)));
        let flushed_later = Snapshot {
            last_progress: 50,
            ..idle_at(10)
        };
        assert_eq!(flushed_later.deadline(&T), Some((170, Stalled::Idle)));
    }

    #[test]
    fn a_header_counts_from_its_first_byte_whatever_trickles_after() {
        let s = Snapshot {
            header_since: 200,
            last_progress: 225,
            ..idle_at(100)
        };
        assert_eq!(s.deadline(&T), Some((230, Stalled::Header)));
    }

    #[test]
    fn a_request_times_out_only_while_waiting_on_the_client() {
        let busy = Snapshot {
            in_flight: true,
            read_wait: NONE,
            write_wait: NONE,
            ..idle_at(0)
        };
        assert_eq!(
            busy.deadline(&T),
            None,
            "the gateway's own work never counts"
        );
        let body_wait = Snapshot {
            read_wait: 400,
            last_progress: 300,
            ..busy
        };
        assert_eq!(body_wait.deadline(&T), Some((460, Stalled::Body)));
        let reply_wait = Snapshot {
            write_wait: 500,
            last_progress: 520,
            ..busy
        };
        assert_eq!(reply_wait.deadline(&T), Some((580, Stalled::Body)));
    }

    #[test]
    fn guards_move_the_phase() {
        let a = Activity::new();
        a.read_done(10);
        assert_ne!(a.snapshot().header_since, NONE);
        let g = a.request_started();
        let s = a.snapshot();
        assert!(s.in_flight);
        assert_eq!(s.header_since, NONE);
        a.read_done(10);
        assert_eq!(a.snapshot().header_since, NONE, "body bytes are no header");
        drop(g);
        let s = a.snapshot();
        assert!(!s.in_flight);
        assert_eq!(s.header_since, NONE);
    }
}
