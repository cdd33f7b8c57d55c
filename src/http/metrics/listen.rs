//! The separate metrics address (`metrics.listen`): it serves `GET
//! /metrics` and nothing else (404 for any other path, 405 for any other
//! method), so a firewall can open it to the scraper alone.
//!
//! A scrape there needs the bearer token, unless the address is loopback
//! and `metrics.allow_anonymous_on_loopback` is set (decided once, from the
//! bound address). Admins' Basic auth is not taken here: a scraper's
//! address is no place for a person's password. A few scrapers at most:
//! [`MAX_SCRAPERS`] connections at once (the rest wait in the kernel's
//! queue), each closed after [`CONNECTION_LIMIT`] or a header that takes
//! longer than [`HEADER_TIMEOUT`]. Scrapes here are not counted in the
//! request series, nor logged: they are the scraper's, not the clients'.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{header, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{bearer_refused, Bearer};
use crate::http::Gateway;
use crate::wire::reply::{error_response, GwBody};

/// Connections served at once on the metrics address.
const MAX_SCRAPERS: usize = 8;
/// The longest a metrics connection stays open.
const CONNECTION_LIMIT: Duration = Duration::from_secs(60);
/// The longest a request's header may take to arrive.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

impl Gateway {
    /// Serves `GET /metrics` on `listener` (the `metrics.listen` address)
    /// until `shutdown` completes.
    pub async fn serve_metrics(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) {
        let anonymous = listener
            .local_addr()
            .is_ok_and(|a| self.metrics.config.anonymous_on(a));
        let slots = Arc::new(Semaphore::new(MAX_SCRAPERS));
        tokio::pin!(shutdown);
        loop {
            let slot = tokio::select! {
                () = &mut shutdown => return,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return,
                },
            };
            let accepted = tokio::select! {
                () = &mut shutdown => return,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics address: accept failed");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            };
            let gw = self.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let svc = hyper::service::service_fn(move |req| {
                    let gw = gw.clone();
                    async move { Ok::<_, Infallible>(gw.scrape(req, anonymous).await) }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), svc);
                let _ = tokio::time::timeout(CONNECTION_LIMIT, conn).await;
            });
        }
    }

    /// One request on the metrics address.
    async fn scrape(&self, req: Request<Incoming>, anonymous: bool) -> Response<GwBody> {
        if req.uri().path() != "/metrics" {
            return error_response(StatusCode::NOT_FOUND, "this address serves only /metrics");
        }
        if req.method() != Method::GET {
            let mut res = error_response(StatusCode::METHOD_NOT_ALLOWED, "only GET /metrics");
            res.headers_mut()
                .insert(header::ALLOW, http::HeaderValue::from_static("GET"));
            return res;
        }
        let bearer = self
            .metrics
            .bearer(req.headers().get(header::AUTHORIZATION));
        if anonymous || bearer == Bearer::Valid {
            return self.metrics_response().await;
        }
        bearer_refused()
    }
}
