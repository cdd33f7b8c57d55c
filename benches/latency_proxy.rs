//! A TCP proxy that delays every byte by a fixed time in each direction,
//! so that a loopback Apache behaves like an upstream across a network
//! (a round trip of twice the delay), and that counts the HTTP requests
//! passing through it.
//!
//! Each direction is a reader and a writer: the reader stamps every piece
//! it reads with the time it may leave, the writer sleeps until then.
//! Pieces are therefore delayed, not serialised: throughput is what the
//! sockets give, only latency is added.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub struct LatencyProxy {
    pub port: u16,
    requests: Arc<AtomicU64>,
}

impl LatencyProxy {
    /// Listens on a loopback port, forwarding to `upstream` (host:port)
    /// with `delay` each way.
    pub async fn start(upstream: String, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let requests = Arc::new(AtomicU64::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, counted) = (upstream.clone(), counted.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pipe(cr, sw, delay, Some(counted)));
                    tokio::spawn(pipe(sr, cw, delay, None));
                });
            }
        });
        Self { port, requests }
    }

    /// HTTP requests seen so far (request lines ending in ` HTTP/1.1`).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
    count: Option<Arc<AtomicU64>>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, piece)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&piece).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 << 10];
    let mut tail = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(count) = &count {
            // Request lines; the tail keeps a line cut between two reads.
            tail.extend_from_slice(&buf[..n]);
            let found = tail.windows(11).filter(|w| w == b" HTTP/1.1\r\n").count();
            count.fetch_add(found as u64, Ordering::Relaxed);
            let keep = tail.len().saturating_sub(10);
            tail.drain(..keep);
        }
        if tx
            .send((Instant::now() + delay, buf[..n].to_vec()))
            .is_err()
        {
            break;
        }
    }
    drop(tx);
    let _ = writer.await;
}
