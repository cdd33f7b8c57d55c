//! A fault-injecting HTTP proxy for upstream tests: sits between the store
//! and the real Apache and, per request, passes it through or injects what
//! Apache cannot be made to do on demand (5xx answers, dropped connections,
//! delays, truncated bodies, acknowledgements of writes it never forwarded).
//!
//! Faults are rules matched in order against each request's method; a rule
//! fires a fixed number of times or forever. Every request is recorded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

type ProxyBody = BoxBody<Bytes, std::io::Error>;

/// What the proxy does with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward it and relay the answer.
    Pass,
    /// Answer this status (with an empty body) without forwarding.
    Status(u16),
    /// Like `Status`, with a `Retry-After: <secs>` header.
    StatusRetryAfter(u16, u64),
    /// Close the connection without answering; the upstream never sees it.
    Drop,
    /// Forward it, then close the connection without relaying the answer.
    DropAfterForward,
    /// Wait, then forward.
    Delay(Duration),
    /// Forward it, relay the headers (with the full Content-Length) and half
    /// the body, then close the connection.
    Truncate,
    /// Forward it and relay the answer with this header set to this value.
    SetHeader(&'static str, String),
}

/// One request the proxy saw, and what it did with it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    /// Read only through `Debug`, in failure messages.
    #[allow(dead_code)]
    pub path: String,
    pub fault: Fault,
    /// The request's `OC-Checksum` header.
    pub oc_checksum: Option<String>,
    /// The request's `Range` header.
    pub range: Option<String>,
}

struct Rule {
    method: Option<Method>,
    fault: Fault,
    /// `None`: fires forever.
    remaining: Option<usize>,
}

struct State {
    upstream: String,
    client: reqwest::Client,
    rules: Mutex<VecDeque<Rule>>,
    seen: Mutex<Vec<Seen>>,
}

pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a loopback port forwarding to `upstream_origin`
    /// (`http://127.0.0.1:<port>`). Must be called inside a tokio runtime.
    pub async fn start(upstream_origin: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy port");
        let addr = listener.local_addr().expect("proxy addr");
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .expect("proxy client");
        let state = Arc::new(State {
            upstream: upstream_origin.trim_end_matches('/').to_string(),
            client,
            rules: Mutex::new(VecDeque::new()),
            seen: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Self { addr, state, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Injects `fault` into the next `times` requests with `method` (any
    /// method when `None`).
    pub fn times(&self, method: Option<Method>, fault: Fault, times: usize) {
        self.push(method, fault, Some(times));
    }

    /// Injects `fault` into the next request with `method`.
    pub fn once(&self, method: Option<Method>, fault: Fault) {
        self.push(method, fault, Some(1));
    }

    /// Injects `fault` into every request with `method` from now on.
    pub fn always(&self, method: Option<Method>, fault: Fault) {
        self.push(method, fault, None);
    }

    /// Removes every rule; requests pass again.
    pub fn clear(&self) {
        self.state.rules.lock().expect("rules").clear();
    }

    fn push(&self, method: Option<Method>, fault: Fault, remaining: Option<usize>) {
        self.state.rules.lock().expect("rules").push_back(Rule {
            method,
            fault,
            remaining,
        });
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("seen").clone()
    }

    /// How many requests with `method` were seen.
    pub fn count(&self, method: &Method) -> usize {
        self.seen().iter().filter(|s| s.method == *method).count()
    }

    /// Forgets the requests seen so far.
    pub fn reset_seen(&self) {
        self.state.seen.lock().expect("seen").clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every
        // connection task.
        self.task.abort();
    }
}

fn pick(state: &State, method: &Method) -> Fault {
    let mut rules = state.rules.lock().expect("rules");
    let Some(i) = rules
        .iter()
        .position(|r| r.method.as_ref().is_none_or(|m| m == method) && r.remaining != Some(0))
    else {
        return Fault::Pass;
    };
    let rule = &mut rules[i];
    let fault = rule.fault.clone();
    if let Some(n) = rule.remaining.as_mut() {
        *n -= 1;
        if *n == 0 {
            rules.remove(i);
        }
    }
    fault
}

fn full(b: Bytes) -> ProxyBody {
    Full::new(b).map_err(|never| match never {}).boxed()
}

fn io_err(msg: &str) -> std::io::Error {
    std::io::Error::other(msg.to_string())
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, std::io::Error> {
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let fault = pick(&state, &method);
    let oc_checksum = req
        .headers()
        .get("oc-checksum")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let range = req
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    state.seen.lock().expect("seen").push(Seen {
        method: method.clone(),
        path: path.clone(),
        fault: fault.clone(),
        oc_checksum,
        range,
    });
    match &fault {
        Fault::Status(code) | Fault::StatusRetryAfter(code, _) => {
            // Drain the request so the connection stays usable.
            let _ = req.into_body().collect().await;
            let mut resp = Response::builder()
                .status(StatusCode::from_u16(*code).expect("status code"))
                .header("content-length", "0");
            if let Fault::StatusRetryAfter(_, secs) = fault {
                resp = resp.header("retry-after", secs.to_string());
            }
            return Ok(resp.body(full(Bytes::new())).expect("response"));
        }
        Fault::Drop => return Err(io_err("fault: connection dropped")),
        Fault::Delay(d) => tokio::time::sleep(*d).await,
        Fault::Pass | Fault::DropAfterForward | Fault::Truncate | Fault::SetHeader(..) => {}
    }

    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|e| io_err(&format!("reading request: {e}")))?
        .to_bytes();
    let mut fwd = reqwest::header::HeaderMap::new();
    copy_headers(&headers, &mut fwd, &["host", "content-length"]);
    let upstream = state
        .client
        .request(method.clone(), format!("{}{}", state.upstream, path))
        .headers(fwd)
        .body(body)
        .send()
        .await
        .map_err(|e| io_err(&format!("forwarding: {e}")))?;
    let status = upstream.status();
    let up_headers = upstream.headers().clone();
    let up_body = upstream
        .bytes()
        .await
        .map_err(|e| io_err(&format!("reading upstream answer: {e}")))?;
    if fault == Fault::DropAfterForward {
        return Err(io_err("fault: connection dropped after forwarding"));
    }

    let mut resp = Response::builder().status(status);
    if let Some(h) = resp.headers_mut() {
        copy_headers(&up_headers, h, &[]);
        if let Fault::SetHeader(name, value) = &fault {
            h.insert(*name, value.parse().expect("header value"));
        }
    }
    if fault == Fault::Truncate && up_body.len() > 1 {
        let half = up_body.slice(..up_body.len() / 2);
        let frames = stream::unfold(0u8, move |step| {
            let half = half.clone();
            async move {
                match step {
                    0 => Some((Ok(Frame::data(half)), 1)),
                    1 => {
                        // Let the partial body reach the client first.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Some((Err(io_err("fault: body truncated")), 2))
                    }
                    _ => None,
                }
            }
        });
        return Ok(resp
            .body(BodyExt::boxed(StreamBody::new(frames)))
            .expect("response"));
    }
    Ok(resp.body(full(up_body)).expect("response"))
}

/// Copies end-to-end headers, leaving out hop-by-hop ones and `skip`.
fn copy_headers(from: &HeaderMap, to: &mut HeaderMap, skip: &[&str]) {
    const HOP: &[&str] = &[
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
    ];
    for (name, value) in from {
        let n = name.as_str();
        if HOP.contains(&n) || skip.contains(&n) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}
