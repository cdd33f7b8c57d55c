//! The accept loop and the life of one client connection: what a client may
//! cost in connections and time before it reaches [`Gateway::handle`].
//!
//! - **Total cap** (`limits.max_connections`): a slot is taken *before*
//!   accepting, so at the cap the loop stops accepting until a connection
//!   closes; further clients wait in the kernel's accept queue.
//! - **Per-address cap** (`limits.max_connections_per_address`): a
//!   connection from an address that already has that many open is closed
//!   at once (one log line per second at most, with the number held back).
//! - **Timeouts** (`limits.header_timeout_secs`, `idle_timeout_secs`,
//!   `body_timeout_secs`): see [`watchdog`].
//! - **Accept errors** (out of descriptors: EMFILE, ENFILE; ENOBUFS, ENOMEM)
//!   leave the connection in the kernel's queue, so retrying at once would
//!   spin at full CPU and log millions of lines a second. The loop backs off
//!   (10 ms, doubling to 1 s, reset by the next success) and logs at most
//!   one line a second, with the count of those held back.
//! - **Lingering close**: a reply sent before the request body was read
//!   (507, 400) still reaches the client; see [`lingering_close`].
//! - **Fronts**: the client address speaks plain HTTP/1.1, or HTTPS with
//!   HTTP/1.1 or HTTP/2 as ALPN decided ([`tls`]); `tls.redirect_listen`
//!   adds a plain address that only redirects ([`redirect`]). Every
//!   listener shares the two caps, and a TLS handshake runs inside its
//!   connection's slot. HTTP/2 gets the same watchdog, its streams being
//!   the requests in flight (see [`serve_http2`] for what differs).

mod redirect;
mod tls;
mod watchdog;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::fragment::{FragmentWatch, Fragments};
use super::Gateway;
use crate::config::LimitsConfig;
use crate::wire::reply::GwBody;
pub use tls::{Tls, TlsError};
pub use watchdog::Stalled;
use watchdog::{Activity, ReplyBody, Timeouts, WatchedIo};

/// First pause after a failed accept; doubled per failure up to
/// `ACCEPT_BACKOFF_MAX`.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one log line per this, per kind of event.
const LOG_EVERY: Duration = Duration::from_secs(1);
/// How long an expired connection's handler gets to unwind after its
/// socket started failing, before it is dropped.
const UNWIND: Duration = Duration::from_secs(10);
/// Requests one HTTP/2 connection may have in flight at once.
const H2_STREAMS: u32 = 64;

/// The `[limits]` the listener enforces.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    max_connections: usize,
    per_address: usize,
    timeouts: Timeouts,
}

impl From<&LimitsConfig> for ConnectionLimits {
    fn from(l: &LimitsConfig) -> Self {
        Self {
            max_connections: l.max_connections,
            per_address: l.max_connections_per_address,
            timeouts: Timeouts {
                header: Duration::from_secs(l.header_timeout_secs),
                idle: Duration::from_secs(l.idle_timeout_secs),
                body: Duration::from_secs(l.body_timeout_secs),
            },
        }
    }
}

/// The addresses the gateway serves clients on.
pub struct Listeners {
    /// The client address (`listen`).
    pub main: TcpListener,
    /// HTTPS on `main` (`[tls]`); plain HTTP without it.
    pub tls: Option<Arc<Tls>>,
    /// `tls.redirect_listen`: plain HTTP answered with a 308 to `main`.
    pub redirect: Option<TcpListener>,
}

/// What a listener speaks.
#[derive(Clone)]
enum Front {
    Plain,
    Tls { tls: Arc<Tls>, port: u16 },
    Redirect { https_port: u16 },
}

/// Both caps, shared by every listener.
struct Caps {
    slots: Arc<Semaphore>,
    addresses: Arc<AddressTable>,
}

/// Serves every listener until `shutdown` completes.
pub async fn serve(gw: Arc<Gateway>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let caps = Arc::new(Caps {
        slots: Arc::new(Semaphore::new(gw.connection_limits.max_connections)),
        addresses: Arc::new(AddressTable::default()),
    });
    let port = listeners.main.local_addr().map_or(0, |a| a.port());
    let main_front = match listeners.tls {
        Some(tls) => Front::Tls { tls, port },
        None => Front::Plain,
    };
    let (stop, stopped) = tokio::sync::watch::channel(());
    let redirect = listeners.redirect.map(|l| {
        let mut stopped = stopped.clone();
        let front = Front::Redirect { https_port: port };
        tokio::spawn(accept_loop(
            gw.clone(),
            caps.clone(),
            l,
            front,
            async move {
                let _ = stopped.changed().await;
            },
        ))
    });
    accept_loop(gw, caps, listeners.main, main_front, shutdown).await;
    drop(stop);
    if let Some(task) = redirect {
        let _ = task.await;
    }
}

/// Accepts connections and serves each on its own task until `shutdown`
/// completes.
async fn accept_loop(
    gw: Arc<Gateway>,
    caps: Arc<Caps>,
    listener: TcpListener,
    front: Front,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let limits = gw.connection_limits;
    let (slots, addresses) = (&caps.slots, &caps.addresses);
    let mut backoff = Backoff::default();
    let mut full_log = LogThrottle::default();
    let mut refused_log = LogThrottle::default();
    let mut error_log = LogThrottle::default();
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if let Some(held) = full_log.admit(Instant::now()) {
                    tracing::warn!(
                        limit = limits.max_connections,
                        held_back = held,
                        "connection limit reached; new connections wait"
                    );
                }
                tokio::select! {
                    s = slots.clone().acquire_owned() => match s {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    _ = &mut shutdown => break,
                }
            }
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "a connection failed before it was accepted");
                continue;
            }
            Err(e) => {
                gw.metrics.accept_failed();
                let pause = backoff.failed();
                if let Some(held) = error_log.admit(Instant::now()) {
                    tracing::warn!(error = %e, retry_ms = pause.as_millis() as u64, held_back = held, "accept failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => continue,
                    _ = &mut shutdown => break,
                }
            }
        };
        backoff.reset();
        let Some(address) = addresses.admit(peer.ip(), limits.per_address) else {
            gw.metrics.connection_refused();
            if let Some(held) = refused_log.admit(Instant::now()) {
                tracing::warn!(
                    %peer,
                    limit = limits.per_address,
                    held_back = held,
                    "too many connections from one address; closed"
                );
            }
            drop(stream);
            continue;
        };
        let admitted = Admitted::new(gw.clone(), slot, address);
        tokio::spawn(serve_connection(admitted, stream, peer, front.clone()));
    }
}

/// Accept errors that belong to one connection (it was reset or aborted
/// while queued): the next accept may succeed at once.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// A connection's place under both caps, held until it closes.
struct Admitted {
    gw: Arc<Gateway>,
    _slot: OwnedSemaphorePermit,
    _address: AddressSlot,
}

impl Admitted {
    fn new(gw: Arc<Gateway>, slot: OwnedSemaphorePermit, address: AddressSlot) -> Self {
        gw.metrics.connection_opened();
        Self {
            gw,
            _slot: slot,
            _address: address,
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gw.metrics.connection_closed();
    }
}

/// Serves one connection as its listener's front does.
async fn serve_connection(admitted: Admitted, stream: TcpStream, peer: SocketAddr, front: Front) {
    let _ = stream.set_nodelay(true);
    let gw = admitted.gw.clone();
    let to_gateway = move |req: Request<Incoming>| gw.clone().handle(req, peer);
    match front {
        Front::Plain => serve_http1(&admitted, stream, peer, to_gateway).await,
        Front::Redirect { https_port } => {
            let to_https = move |req: Request<Incoming>| {
                std::future::ready(Ok(redirect::reply(&req, https_port, peer)))
            };
            serve_http1(&admitted, stream, peer, to_https).await
        }
        Front::Tls { tls, port } => match tls.accept(stream, peer, port).await {
            Ok((stream, tls::Protocol::Http2)) => {
                serve_http2(&admitted, stream, peer, to_gateway).await
            }
            Ok((stream, tls::Protocol::Http1)) => {
                serve_http1(&admitted, stream, peer, to_gateway).await
            }
            Err(tls::Refused::TimedOut) => {
                admitted.gw.metrics.connection_timed_out(Stalled::Handshake);
                tracing::debug!(%peer, "TLS handshake timed out; closing");
            }
            Err(_) => {}
        },
    }
}

/// What serves a request: the gateway, or the redirect.
trait Handler: Fn(Request<Incoming>) -> Self::Reply + Clone + Send + Sync + 'static {
    type Reply: Future<Output = Result<Response<GwBody>, Infallible>> + Send + 'static;
}

impl<F, R> Handler for F
where
    F: Fn(Request<Incoming>) -> R + Clone + Send + Sync + 'static,
    R: Future<Output = Result<Response<GwBody>, Infallible>> + Send + 'static,
{
    type Reply = R;
}

/// `handler` as a hyper service whose requests the watchdog sees in flight
/// until their reply body is done.
fn watched_service(
    activity: &Arc<Activity>,
    handler: impl Handler,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<ReplyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ReplyBody>, Infallible>> + Send,
> + Clone {
    let activity = activity.clone();
    hyper::service::service_fn(move |req| {
        let request = activity.request_started();
        let reply = handler(req);
        async move {
            let res = reply.await?;
            Ok::<_, Infallible>(res.map(|body| ReplyBody::new(body, request)))
        }
    })
}

/// HTTP/1.1 over the watched socket, beside the watchdog, then a
/// lingering close.
async fn serve_http1<S>(admitted: &Admitted, stream: S, peer: SocketAddr, handler: impl Handler)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let timeouts = admitted.gw.connection_limits.timeouts;
    let activity = Activity::new();
    let fragments = Fragments::default();
    let io = TokioIo::new(FragmentWatch::new(
        WatchedIo::new(stream, activity.clone()),
        fragments.clone(),
    ));
    // The request lines' fragments, which hyper drops, as the watch saw
    // them (`http/fragment.rs`).
    let handler = move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(fragments.clone());
        handler(req)
    };
    let conn = http1::Builder::new()
        .keep_alive(true)
        // Without this, hyper reads ahead while a request is being handled
        // (to notice a hang-up), and a pending read would no longer mean
        // "waiting for the client's body" to the watchdog.
        .half_close(true)
        // A backstop: hyper counts from the moment it is ready for the next
        // request, which includes the keep-alive wait (watchdog.rs).
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.idle + timeouts.header)
        .serve_connection(io, watched_service(&activity, handler))
        .without_shutdown();
    match watched(admitted, conn, &activity, peer).await {
        Some(Ok(parts)) => lingering_close(parts.io.into_inner().into_inner().into_inner()).await,
        Some(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        None => {}
    }
}

/// HTTP/2 over the watched TLS stream, beside the watchdog. hyper reads
/// an HTTP/2 connection all along, so while a request is in flight the
/// connection always waits for the client: `body` counts from the last
/// byte either way, including time the gateway spends on its own work.
/// There are no server pings, as a live client answering them would keep
/// a stream it no longer reads (and the transfer memory it holds) open
/// for ever. Any byte between requests (the preface, a window update)
/// starts the header clock, so an idle HTTP/2 connection is closed after
/// `header`, not `idle`.
async fn serve_http2<S>(admitted: &Admitted, stream: S, peer: SocketAddr, handler: impl Handler)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let io = TokioIo::new(WatchedIo::new(stream, activity.clone()));
    let handler = move |mut req: Request<Incoming>| {
        authority_as_host(&mut req);
        handler(req)
    };
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_STREAMS)
        .serve_connection(io, watched_service(&activity, handler));
    if let Some(Err(e)) = watched(admitted, conn, &activity, peer).await {
        tracing::debug!(%peer, error = %e, "HTTP/2 connection ended with an error");
    }
}

/// An HTTP/2 request names its host in `:authority` (the URI), not in
/// `Host`; the service reads `Host` (the console's same-origin check), so
/// it gets one, as RFC 9113 (8.3.1) asks of a server translating to
/// HTTP/1.1.
fn authority_as_host<B>(req: &mut Request<B>) {
    if req.headers().contains_key(http::header::HOST) {
        return;
    }
    let host = req
        .uri()
        .authority()
        .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok());
    if let Some(host) = host {
        req.headers_mut().insert(http::header::HOST, host);
    }
}

/// Runs a connection beside its watchdog; `None` when the watchdog closed
/// it.
async fn watched<C: Future>(
    admitted: &Admitted,
    conn: C,
    activity: &Activity,
    peer: SocketAddr,
) -> Option<C::Output> {
    let timeouts = admitted.gw.connection_limits.timeouts;
    tokio::pin!(conn);
    // The connection first: after a stall of this task, a socket that has
    // become ready counts as progress before the deadline is checked.
    tokio::select! {
        biased;
        ended = &mut conn => Some(ended),
        why = watchdog::watch(activity, &timeouts) => {
            admitted.gw.metrics.connection_timed_out(why);
            tracing::debug!(%peer, phase = why.phase(), "connection timed out; closing");
            activity.expire(why);
            let _ = tokio::time::timeout(UNWIND, &mut conn).await;
            None
        }
    }
}

/// Open connections per client address.
#[derive(Default)]
struct AddressTable {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl AddressTable {
    /// A place for one more connection from `ip`, if it has fewer than
    /// `cap` open.
    fn admit(self: &Arc<Self>, ip: IpAddr, cap: usize) -> Option<AddressSlot> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock();
        let n = open.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            ip,
        })
    }
}

struct AddressSlot {
    table: Arc<AddressTable>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The pause after each consecutive failed accept.
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: ACCEPT_BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    fn failed(&mut self) -> Duration {
        let pause = self.next;
        self.next = (pause * 2).min(ACCEPT_BACKOFF_MAX);
        pause
    }

    fn reset(&mut self) {
        self.next = ACCEPT_BACKOFF_FIRST;
    }
}

/// At most one log line per [`LOG_EVERY`].
#[derive(Default)]
struct LogThrottle {
    last: Option<Instant>,
    held_back: u64,
}

impl LogThrottle {
    /// Whether to log now; if so, how many lines were held back since the
    /// last one.
    fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < LOG_EVERY => {
                self.held_back += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held_back))
            }
        }
    }
}

/// Closes a connection the way a client can read the last reply: an error
/// reply may come before the request body was read, and closing a socket
/// with unread data makes the kernel reset it, so the client sees "connection
/// reset" instead of the 507 or 400. Sends FIN after the reply, then reads
/// and discards what the client still sends, for a bounded time and amount.
async fn lingering_close<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LINGER: Duration = Duration::from_secs(2);
    const LINGER_BYTES: usize = 64 << 20;
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 64 << 10];
    let mut drained = 0usize;
    let _ = tokio::time::timeout(LINGER, async {
        while drained < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut b = Backoff::default();
        let pauses: Vec<u64> = (0..9).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(pauses, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.failed(), ACCEPT_BACKOFF_FIRST);
    }

    #[test]
    fn the_log_throttle_counts_what_it_held_back() {
        let mut t = LogThrottle::default();
        let start = Instant::now();
        assert_eq!(t.admit(start), Some(0));
        for i in 1..=5 {
            assert_eq!(t.admit(start + Duration::from_millis(100 * i)), None);
        }
        assert_eq!(t.admit(start + LOG_EVERY), Some(5));
        assert_eq!(t.admit(start + LOG_EVERY), None);
    }

    #[test]
    fn an_http2_authority_becomes_the_host() {
        let mut req = Request::builder()
            .uri("https://cloud.example:8443/admin/login")
            .body(())
            .unwrap();
        authority_as_host(&mut req);
        assert_eq!(req.headers()[http::header::HOST], "cloud.example:8443");
        let mut req = Request::builder()
            .uri("https://other.example/")
            .header(http::header::HOST, "cloud.example")
            .body(())
            .unwrap();
        authority_as_host(&mut req);
        assert_eq!(req.headers()[http::header::HOST], "cloud.example");
    }

    #[test]
    fn the_address_table_caps_and_releases() {
        let table = Arc::new(AddressTable::default());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let a = table.admit(ip, 2).unwrap();
        let _b = table.admit(mapped, 2).unwrap();
        assert!(table.admit(ip, 2).is_none(), "one address, however spelled");
        assert!(table.admit("127.0.0.2".parse().unwrap(), 2).is_some());
        drop(a);
        assert!(table.admit(ip, 2).is_some());
        assert_eq!(
            table.open.lock().len(),
            1,
            "closed addresses leave the table"
        );
    }
}
