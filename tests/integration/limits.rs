//! What one client may cost in connections and time (`[limits]`): the
//! header, idle and body timeouts, the total and per-address connection
//! caps, the accept loop out of file descriptors, and request metrics that
//! invented method names cannot grow.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::gateway::{basic, random_bytes, TestGateway};
use crate::common::wait;
use dedupdav::http::Stalled;

const MIB: usize = 1 << 20;
const STATUS: &[u8] = b"GET /status.php HTTP/1.1\r\nHost: x\r\n\r\n";

fn connect_to(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

fn connect(gw: &TestGateway) -> TcpStream {
    connect_to(gw.base.trim_start_matches("http://"))
}

/// Reads one reply (status and body, by `Content-Length`); `None` if the
/// connection closes first.
fn read_reply(s: &mut TcpStream) -> Option<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut piece = [0u8; 64 << 10];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut piece) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&piece[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf.split_off(head_end);
    while body.len() < len {
        match s.read(&mut piece) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&piece[..n]),
        }
    }
    Some((status, body))
}

/// Sends a `GET /status.php` on `s` and returns the reply's status.
fn status_on(s: &mut TcpStream) -> Option<u16> {
    s.write_all(STATUS).ok()?;
    read_reply(s).map(|(status, _)| status)
}

/// Reads until the gateway closes the connection (end of stream or reset)
/// and returns what arrived; panics if it is still open after `within`.
fn wait_closed(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut got = Vec::new();
    let mut piece = [0u8; 64 << 10];
    loop {
        match s.read(&mut piece) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&piece[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("still open after {within:?}")
            }
            Err(_) => return got,
        }
    }
}

fn metric(gw: &TestGateway, series: &str) -> u64 {
    let text = gw.gateway.metrics().render(None);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn a_half_sent_header_is_closed_after_the_header_timeout() {
    let gw = TestGateway::start_with(|c| {
        c.limits.header_timeout_secs = 1;
        c.limits.idle_timeout_secs = 30;
    });
    let mut half = connect(&gw);
    let mut idle = connect(&gw);
    let mut dribble = connect(&gw);
    let started = Instant::now();
    half.write_all(b"GET /status.php HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // One byte every 100 ms: the limit counts from the first byte, so
    // trickling never extends it.
    dribble
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let request = b"PROPFIND /remote.php/webdav/ HTTP/1.1\r\nHost: x\r\nX-Slow: ".repeat(4);
    let mut dribble_closed = None;
    for b in &request {
        if dribble.write_all(&[*b]).is_err() {
            dribble_closed = Some(started.elapsed());
            break;
        }
        let mut one = [0u8; 1];
        match dribble.read(&mut one) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            _ => {
                dribble_closed = Some(started.elapsed());
                break;
            }
        }
    }
    let dribble_closed = dribble_closed.expect("a dribbled header is closed");
    assert!(
        dribble_closed >= Duration::from_millis(900),
        "{dribble_closed:?}"
    );
    let reply = wait_closed(&mut half, Duration::from_secs(20));
    assert!(reply.is_empty(), "no reply to half a header");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // The connection that sent nothing is idle, not late: it still gets
    // its reply after more than the header timeout.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(status_on(&mut idle), Some(200));
    assert_eq!(gw.gateway.metrics().timeouts(Stalled::Header), 2);
    assert_eq!(gw.gateway.metrics().timeouts(Stalled::Idle), 0);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let _timed = crate::common::load::wall_clock_bound();
    let gw = TestGateway::start_with(|c| c.limits.idle_timeout_secs = 1);
    let mut quiet = connect(&gw);
    assert_eq!(status_on(&mut quiet), Some(200));
    let after_reply = Instant::now();
    // A client with pauses shorter than the limit keeps its connection.
    let mut busy = connect(&gw);
    for _ in 0..8 {
        assert_eq!(status_on(&mut busy), Some(200));
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(wait_closed(&mut quiet, Duration::from_secs(20)).is_empty());
    assert!(after_reply.elapsed() >= Duration::from_millis(900));
    assert_eq!(status_on(&mut busy), Some(200));
    assert_eq!(gw.gateway.metrics().timeouts(Stalled::Idle), 1);
}

/// Announces `announced` bytes for `path`, sends `sent`, then waits for the
/// gateway to close the connection.
fn stalled_put(gw: &TestGateway, path: &str, announced: usize, sent: &[u8]) {
    let mut s = connect(gw);
    let head = format!(
        "PUT /remote.php/dav/files/alice/{path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {announced}\r\n\r\n",
        basic("alice", "pw")
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(sent).unwrap();
    let last_byte = Instant::now();
    let reply = wait_closed(&mut s, Duration::from_secs(60));
    assert!(
        last_byte.elapsed() >= Duration::from_millis(900),
        "closed only after the body timeout"
    );
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        !reply.contains(" 20"),
        "no success for a stalled body: {reply}"
    );
}

#[test]
fn a_stalled_body_is_dropped_and_commits_nothing() {
    stalled_body_commits_nothing(TestGateway::start_with(|c| c.limits.body_timeout_secs = 1));
}

#[test]
fn a_stalled_body_is_dropped_and_commits_nothing_upstream() {
    stalled_body_commits_nothing(TestGateway::start_on_apache_with(|c| {
        c.limits.body_timeout_secs = 1
    }));
}

fn stalled_body_commits_nothing(gw: TestGateway) {
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let v1 = random_bytes(2 * MIB, 1);
    assert_eq!(alice.put("doc.bin", v1.clone()).status(), 201);
    let before = gw.stats();
    let v2 = random_bytes(6 * MIB, 2);
    stalled_put(&gw, "doc.bin", v2.len(), &v2[..3 * MIB]);
    stalled_put(&gw, "new.bin", v2.len(), &v2[..3 * MIB]);
    assert_eq!(gw.gateway.metrics().timeouts(Stalled::Body), 2);
    assert_eq!(
        alice.get_bytes("doc.bin").unwrap(),
        v1,
        "old file untouched"
    );
    assert_eq!(alice.get("new.bin").status(), 404, "no half file");
    let after = gw.stats();
    assert_eq!(after.files, before.files);
    assert_eq!(after.logical_bytes, before.logical_bytes);
}

#[test]
fn transfers_that_keep_moving_outlast_the_body_timeout() {
    let _timed = crate::common::load::wall_clock_bound();
    let gw = TestGateway::start_with(|c| c.limits.body_timeout_secs = 1);
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let auth = basic("alice", "pw");
    // An upload sending 128 KiB every 200 ms for 3 s.
    let up = random_bytes(2 * MIB, 3);
    let mut s = connect(&gw);
    let head = format!(
        "PUT /remote.php/dav/files/alice/slow.bin HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: {}\r\n\r\n",
        up.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    for piece in up.chunks(128 << 10) {
        std::thread::sleep(Duration::from_millis(200));
        s.write_all(piece).unwrap();
    }
    assert_eq!(read_reply(&mut s).map(|r| r.0), Some(201));
    assert_eq!(alice.get_bytes("slow.bin").unwrap(), up);

    // A download larger than the sockets' buffers, read 512 KiB every
    // 100 ms: the gateway's writes wait on the client, and keep moving.
    let big = random_bytes(32 * MIB, 4);
    assert_eq!(alice.put("big.bin", big.clone()).status(), 201);
    let get = format!(
        "GET /remote.php/dav/files/alice/big.bin HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"
    );
    let mut s = connect(&gw);
    s.write_all(get.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut piece = vec![0u8; 512 << 10];
    while got.len() < big.len() + 64 {
        std::thread::sleep(Duration::from_millis(100));
        match s.read(&mut piece) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&piece[..n]),
        }
        if got.ends_with(&big[big.len() - 1024..]) {
            break;
        }
    }
    assert!(got.ends_with(&big), "the slow reader got the whole file");
    assert_eq!(gw.gateway.metrics().timeouts(Stalled::Body), 0);

    // The same download, but the client stops reading: it is cut.
    let mut s = connect(&gw);
    s.write_all(get.as_bytes()).unwrap();
    let mut got = vec![0u8; MIB];
    s.read_exact(&mut got).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let rest = wait_closed(&mut s, Duration::from_secs(30));
    assert!(
        got.len() + rest.len() < big.len(),
        "the stalled download was cut"
    );
    assert_eq!(gw.gateway.metrics().timeouts(Stalled::Body), 1);
}

#[test]
fn invented_methods_add_nothing_to_metrics() {
    let gw = TestGateway::start();
    wait(dedupdav::accounts::add_user(
        &gw.meta, "root", "pw", true, None,
    ))
    .unwrap();
    let http = reqwest::blocking::Client::new();
    let nowhere = format!("{}/nowhere", gw.base);
    let send = |method: &str| {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        http.request(m, &nowhere).send().unwrap().status()
    };
    let scrape = || {
        let res = http
            .get(format!("{}/metrics", gw.base))
            .basic_auth("root", Some("pw"))
            .send()
            .unwrap();
        assert_eq!(res.status(), 200);
        res.text().unwrap()
    };
    // One invented method and one scrape first, so every series exists.
    assert_eq!(send("INVENTED"), 404);
    scrape();
    let before = scrape();
    for i in 0..1000 {
        let filler = if i % 100 == 0 { 60_000 } else { i % 50 };
        let method = format!("M{i}{}", "Q".repeat(filler));
        assert_eq!(send(&method), 404, "method {i}");
    }
    let after = scrape();
    let series = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_string()))
            .collect()
    };
    assert_eq!(series(&before), series(&after));
    // Only values changed: a few more digits in the counters and in the
    // OTHER/4xx latency histogram's buckets, never a method name.
    assert!(
        after.len().abs_diff(before.len()) <= 512,
        "{before}\n---\n{after}"
    );
    let other = "dedupdav_requests_total{method=\"OTHER\",status=\"404\"}";
    let count = |text: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(other)?.trim().parse().ok())
            .unwrap()
    };
    assert_eq!(count(&after) - count(&before), 1000);
    assert!(!after.contains("M1Q"));
}

#[test]
fn connections_beyond_the_per_address_cap_are_closed_at_once() {
    let gw = TestGateway::start_with(|c| c.limits.max_connections_per_address = 3);
    let mut kept: Vec<TcpStream> = (0..3).map(|_| connect(&gw)).collect();
    for s in &mut kept {
        assert_eq!(status_on(s), Some(200));
    }
    let mut extra = connect(&gw);
    let _ = extra.write_all(STATUS);
    assert!(wait_closed(&mut extra, Duration::from_secs(20)).is_empty());
    assert_eq!(metric(&gw, "dedupdav_connections_refused_total"), 1);
    for s in &mut kept {
        assert_eq!(status_on(s), Some(200), "the first three stay usable");
    }
    // Once one closes (and the gateway has seen it), a new one is let in.
    drop(kept.pop());
    let admitted = (0..100).any(|_| {
        let ok = status_on(&mut connect(&gw)) == Some(200);
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(admitted);
}

#[test]
fn at_the_total_cap_new_connections_wait_for_a_free_slot() {
    let gw = TestGateway::start_with(|c| c.limits.max_connections = 2);
    let mut a = connect(&gw);
    let mut b = connect(&gw);
    assert_eq!(status_on(&mut a), Some(200));
    assert_eq!(status_on(&mut b), Some(200));
    let mut waiting = connect(&gw);
    waiting.write_all(STATUS).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut one = [0u8; 1];
    let early = waiting.read(&mut one);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "not served while both slots are taken: {early:?}"
    );
    drop(a);
    waiting
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    assert_eq!(read_reply(&mut waiting).map(|r| r.0), Some(200));
    assert_eq!(status_on(&mut b), Some(200));
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is 3rd,
    // utime 14th, stime 15th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The real binary with 64 descriptors, and more clients than that: the
/// accept loop backs off instead of spinning, logs a bounded number of
/// lines, and serves again once the clients leave.
#[test]
fn out_of_descriptors_the_accept_loop_neither_spins_nor_floods_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("gateway.log");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" serve --listen 127.0.0.1:0")
        .arg(env!("CARGO_BIN_EXE_dedupdav"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("DEDUPDAV_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while stdout.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(a) = line.trim().strip_prefix("dedupdav listening on http://") {
            addr = Some(a.trim_end_matches('/').to_string());
            break;
        }
        line.clear();
    }
    let addr = addr.expect("the gateway starts with 64 descriptors");
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));

    let clients: Vec<TcpStream> = (0..100).map(|_| connect_to(&addr)).collect();
    let full = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        open_descriptors(pid) >= 64
    });
    assert!(full, "the gateway ran out of descriptors");
    let lines = |p: &std::path::Path| std::fs::read_to_string(p).unwrap().lines().count();
    let (log_before, cpu_before) = (lines(&log_path), cpu_ticks(pid));
    std::thread::sleep(Duration::from_secs(3));
    let (log_after, cpu_after) = (lines(&log_path), cpu_ticks(pid));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("accept failed"), "{log}");
    // A spinning loop burns a whole core (3 s of CPU here) and logs
    // millions of lines; backing off costs next to nothing.
    let cpu = (cpu_after - cpu_before) as f64 / clock_ticks_per_second() as f64;
    assert!(cpu < 0.3, "{cpu} s of CPU in 3 s while out of descriptors");
    assert!(log_after - log_before <= 6, "{log}");

    drop(clients);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let res = http.get(format!("http://{addr}/status.php")).send();
    let status = res.map(|r| r.status().as_u16());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status.ok(), Some(200), "serves again once clients leave");
}
