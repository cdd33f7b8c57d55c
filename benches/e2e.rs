//! End-to-end benchmark: the gateway in front of a real Apache mod_dav
//! upstream, against that same Apache used directly.
//!
//! Run it with `benches/e2e.sh` (or `cargo bench --bench e2e`). Sizes come
//! from the environment:
//!
//! - `E2E_SIZE_MIB` (default 1024): size of each large file;
//! - `E2E_SMALL_FILES` (default 2000): number of 4 KiB files;
//! - `E2E_PARALLEL` (default 8): concurrency of the parallel small PUTs;
//! - `E2E_PROPFIND_RUNS` (default 5): PROPFINDs per side (the median is shown);
//! - `E2E_SMALL_RUNS` (default 3): rounds of each small-file measurement,
//!   each into a fresh folder, alternating Apache and gateway (the median
//!   rate of each side is shown; Apache's own rate varies a lot run to run);
//! - `E2E_LATENCY_MS` (default 0): delay added each way between every
//!   client and Apache (a latency proxy in front of it, used by both the
//!   direct client and the gateway), so Apache answers like an upstream
//!   across a network; with it the small-file lines also give the upstream
//!   requests per file and the objects the gateway left upstream;
//! - `E2E_ONLY` (default all): some of `random` (PUT, GET, duplicate PUT),
//!   `compressible` (PUT, GET), `small` (4 KiB PUTs, PROPFIND), comma-separated;
//! - any other `DEDUPDAV_*` variable (e.g. `DEDUPDAV_CHUNKING__UPLOADS_IN_FLIGHT`)
//!   reaches the gateway, so settings can be compared without editing a file.
//!
//! One run starts Apache httpd with mod_dav at `/remote.php/dav/files/svc/`
//! on a loopback port (the test harness in `tests/integration/common/apache.rs`), then
//! the release `dedupdav` binary as a separate process with a temporary data
//! directory and `backend.kind = "webdav"` pointing at that Apache. Each
//! measurement runs against Apache directly, then against the gateway, and
//! prints one line: `<figure> apache=… gateway=… ratio=… target… ok|MISS`.
//! Lines starting with `#` are diagnostics: CPU seconds spent by the gateway,
//! Apache, this client and everything else on the machine during each
//! measurement (to tell which side saturates the cores), and the gateway's
//! peak RSS during it (reset before each measurement via `clear_refs`).
//!
//! Bodies are streamed both ways and generated on the fly (a fast PRNG for
//! random data; runs cut from lines of random words for text-like data), so
//! the client holds no file in memory. `sync` runs before each measurement so
//! that writing back the previous one's page cache does not slow down the
//! next.

#[path = "../tests/integration/common/apache.rs"]
#[allow(dead_code)]
mod apache;
#[path = "latency_proxy.rs"]
mod latency_proxy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::{Client, Method, StatusCode};

const MIB: u64 = 1 << 20;
const BODY_PIECE: usize = 256 << 10;
const SMALL_FILE: usize = 4096;
const GATEWAY_USER: &str = "bench";
/// Measurement groups `E2E_ONLY` can pick (comma-separated; default all).
const GROUPS: [&str; 3] = ["random", "compressible", "small"];

fn main() {
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        tokio::select! {
            _ = run(settings) => {}
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted: stopping the gateway and Apache");
            }
        }
    });
    // Dropping the runtime drops the gateway and Apache (killed on drop).
}

struct Settings {
    /// Measurement groups to run: random, compressible, small.
    only: Vec<String>,
    size: u64,
    small_files: usize,
    parallel: usize,
    propfind_runs: usize,
    small_runs: usize,
    latency: Duration,
}

impl Settings {
    fn from_env() -> Self {
        fn var(name: &str, default: u64) -> u64 {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
                Err(_) => default,
            }
        }
        let only: Vec<String> = std::env::var("E2E_ONLY")
            .unwrap_or_default()
            .split(',')
            .map(|g| g.trim().to_string())
            .filter(|g| !g.is_empty())
            .collect();
        for g in &only {
            assert!(
                GROUPS.contains(&g.as_str()),
                "E2E_ONLY: unknown group {g:?} (groups: {})",
                GROUPS.join(", ")
            );
        }
        let s = Self {
            only,
            size: var("E2E_SIZE_MIB", 1024) * MIB,
            small_files: var("E2E_SMALL_FILES", 2000) as usize,
            parallel: var("E2E_PARALLEL", 8).max(1) as usize,
            propfind_runs: var("E2E_PROPFIND_RUNS", 5).max(1) as usize,
            small_runs: var("E2E_SMALL_RUNS", 3).max(1) as usize,
            latency: Duration::from_millis(var("E2E_LATENCY_MS", 0)),
        };
        assert!(s.size > 0, "E2E_SIZE_MIB must be > 0");
        assert!(s.small_files > 0, "E2E_SMALL_FILES must be > 0");
        s
    }

    fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }

    /// "1GiB", "256MiB".
    fn size_label(&self) -> String {
        let mib = self.size / MIB;
        if mib.is_multiple_of(1024) {
            format!("{}GiB", mib / 1024)
        } else {
            format!("{mib}MiB")
        }
    }
}

async fn run(s: Settings) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "# e2e benchmark: {} files, {} x 4 KiB files, {} cores, load average at start {}",
        s.size_label(),
        s.small_files,
        cores,
        load_average()
    );

    let apache = apache::Apache::start();
    let apache_pid = apache_pid(&apache);
    let upstream_objects = apache.data_dir().join("dedupdav");
    let origin = apache.origin();
    let proxy = latency_proxy::LatencyProxy::start(
        origin.trim_start_matches("http://").to_string(),
        s.latency,
    )
    .await;
    let upstream = format!(
        "http://127.0.0.1:{}{}",
        proxy.port,
        apache::Apache::base_path()
    );
    println!(
        "# upstream reached through a proxy adding {} ms each way",
        s.latency.as_millis()
    );
    let gateway = GatewayProcess::start(&apache, &upstream);

    let direct = Side::new(
        "apache",
        format!("{upstream}bench/"),
        apache.user(),
        apache.password(),
    );
    let via = Side::new(
        "gateway",
        gateway.files_url(),
        GATEWAY_USER,
        &gateway.password,
    );
    direct.mkcol("").await;
    for side in [&direct, &via] {
        for r in 0..s.small_runs {
            side.mkcol(&small_folder("small-seq", r)).await;
            side.mkcol(&small_folder("small-par", r)).await;
        }
    }
    let mut probe = Probe {
        gateway_pid: gateway.pid(),
        apache_pid,
        rss: Vec::new(),
    };
    let label = s.size_label();
    let size = s.size;
    let mb = |secs: f64| size as f64 / 1e6 / secs;
    let sides = [&direct, &via];

    let mut upstream_before = dir_size(&upstream_objects);
    let mut upstream_phase = |what: &str| {
        let now = dir_size(&upstream_objects);
        let written = now.saturating_sub(upstream_before);
        upstream_before = now;
        println!("# upstream bytes written by the gateway's {what}: {written}");
        written
    };

    // --- large files -------------------------------------------------------
    if s.wants("random") {
        let t = on_both(&mut probe, sides, "put_random", |side| {
            side.put_stream("random.bin", Data::Random(1), size)
        })
        .await;
        upstream_phase("random PUT");
        report_rate(
            &format!("put_random_{label}"),
            mb(t[0]),
            mb(t[1]),
            Target::RatioAtLeast(0.80),
        );

        let t = on_both(&mut probe, sides, "get_random", |side| {
            side.get_count("random.bin", size)
        })
        .await;
        report_rate(
            &format!("get_random_{label}"),
            mb(t[0]),
            mb(t[1]),
            Target::RatioAtLeast(0.50),
        );

        // The same bytes again under another name: the duplicate path.
        let t = on_both(&mut probe, sides, "put_duplicate", |side| {
            side.put_stream("random-again.bin", Data::Random(1), size)
        })
        .await;
        let written = upstream_phase("duplicate PUT");
        report_rate(
            &format!("put_duplicate_{label}"),
            mb(t[0]),
            mb(t[1]),
            Target::GatewayAtLeast(1000.0),
        );
        let pct = written as f64 * 100.0 / size as f64;
        println!(
            "put_duplicate_{label}_upstream_bytes={written} ({pct:.4} %) target<0.1% {}",
            verdict(pct < 0.1)
        );
    }

    if s.wants("compressible") {
        let t = on_both(&mut probe, sides, "put_compressible", |side| {
            side.put_stream("text.txt", Data::Text(2), size)
        })
        .await;
        let written = upstream_phase("compressible PUT");
        report_rate(
            &format!("put_compressible_{label}"),
            mb(t[0]),
            mb(t[1]),
            Target::RatioAbove(1.0),
        );
        println!(
            "# compressible PUT: the gateway sent {:.1} % of the bytes upstream",
            written as f64 * 100.0 / size as f64
        );

        let t = on_both(&mut probe, sides, "get_compressible", |side| {
            side.get_count("text.txt", size)
        })
        .await;
        report_rate(
            &format!("get_compressible_{label}"),
            mb(t[0]),
            mb(t[1]),
            Target::RatioAtLeast(0.50),
        );
    }

    // --- small files ---------------------------------------------------------
    if s.wants("small") {
        let n = s.small_files;
        let runs = s.small_runs;
        let mut rates = [Vec::new(), Vec::new()];
        let requests_before = proxy.requests();
        for r in 0..runs {
            let folder = small_folder("small-seq", r);
            let t = on_both(&mut probe, sides, "small_put_seq", |side| {
                side.put_small_files(&folder, n, 1, 1_000_000 + (r * n) as u64)
            })
            .await;
            rates[0].push(n as f64 / t[0]);
            rates[1].push(n as f64 / t[1]);
        }
        upstream_phase(&format!("sequential 4 KiB PUTs ({runs} rounds)"));
        let [a, g] = rates.map(median);
        report_ops(&format!("put_4KiB_x{n}_sequential"), a, g, 0.80);
        report_requests(&proxy, requests_before, n * runs, "sequential");

        let p = s.parallel;
        let mut rates = [Vec::new(), Vec::new()];
        let requests_before = proxy.requests();
        for r in 0..runs {
            let folder = small_folder("small-par", r);
            let t = on_both(&mut probe, sides, &format!("small_put_par{p}"), |side| {
                side.put_small_files(&folder, n, p, 2_000_000 + (r * n) as u64)
            })
            .await;
            rates[0].push(n as f64 / t[0]);
            rates[1].push(n as f64 / t[1]);
        }
        upstream_phase(&format!("{p}-way parallel 4 KiB PUTs ({runs} rounds)"));
        let [a, g] = rates.map(median);
        report_ops(&format!("put_4KiB_x{n}_parallel{p}"), a, g, 1.0);
        report_requests(&proxy, requests_before, n * runs, &format!("parallel{p}"));
        println!(
            "upstream_objects_after_small_files={}",
            count_files(&upstream_objects.join("objects"))
        );

        let mut runs = [Vec::new(), Vec::new()];
        for _ in 0..s.propfind_runs {
            let t = on_both(&mut probe, sides, "propfind", |side| {
                side.propfind_depth1("small-seq/", n)
            })
            .await;
            runs[0].push(t[0]);
            runs[1].push(t[1]);
        }
        let [a, g] = runs.map(median);
        let ratio = g / a;
        println!(
            "propfind_depth1_{n}_files apache={:.1}ms gateway={:.1}ms ratio={ratio:.2} target<=1.00 {} (median of {})",
            a * 1e3,
            g * 1e3,
            verdict(ratio <= 1.0),
            s.propfind_runs
        );
    }

    // --- memory and upstream bytes -----------------------------------------
    let (hwm, during) = probe.peak_rss();
    println!(
        "gateway_peak_rss_mib={hwm:.1} target<=64 {} ({during})",
        verdict(hwm <= 64.0)
    );
    let upstream = dir_size(&upstream_objects);
    println!("upstream_bytes_written={upstream}");
    let stats = gateway.stop_and_stats();
    println!(
        "# dedupdav stats after stopping: stored_bytes={} logical_bytes={} chunks={} files={}",
        stats["stored_bytes"], stats["logical_bytes"], stats["chunks"], stats["files"]
    );
    println!("# load average at the end {}", load_average());
    drop(apache);
}

/// Runs `f` against Apache directly, then against the gateway; returns the
/// two wall times in seconds.
async fn on_both<'a, F, Fut>(probe: &mut Probe, sides: [&'a Side; 2], what: &str, f: F) -> [f64; 2]
where
    F: Fn(&'a Side) -> Fut,
    Fut: std::future::Future<Output = ()> + 'a,
{
    let mut t = [0.0; 2];
    for (i, side) in sides.into_iter().enumerate() {
        t[i] = probe
            .measure(&format!("{what} {}", side.name), || f(side))
            .await;
    }
    t
}

// --- the two sides ------------------------------------------------------------

struct Side {
    name: &'static str,
    client: Client,
    /// The folder everything goes into, ending in `/`.
    base: String,
    user: String,
    password: String,
}

impl Side {
    fn new(name: &'static str, base: String, user: &str, password: &str) -> Self {
        let client = Client::builder()
            .timeout(Duration::from_secs(3600))
            .tcp_nodelay(true)
            .build()
            .expect("reqwest client");
        Self {
            name,
            client,
            base,
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    fn request(&self, method: Method, rel: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{rel}", self.base))
            .basic_auth(&self.user, Some(&self.password))
    }

    async fn mkcol(&self, rel: &str) {
        let resp = self
            .request(Method::from_bytes(b"MKCOL").expect("method"), rel)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: MKCOL {rel}: {e}", self.name));
        check(self.name, &format!("MKCOL {rel}"), resp, &[201]).await;
    }

    /// PUTs `size` generated bytes, streamed.
    async fn put_stream(&self, rel: &str, data: Data, size: u64) {
        let body =
            reqwest::Body::wrap_stream(futures_util::stream::iter(Generator::new(data, size)));
        let resp = self
            .request(Method::PUT, rel)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: PUT {rel}: {e}", self.name));
        check(self.name, &format!("PUT {rel}"), resp, &[201, 204]).await;
    }

    /// GETs `rel`, counting (and dropping) the bytes.
    async fn get_count(&self, rel: &str, size: u64) {
        let mut resp = self
            .request(Method::GET, rel)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: GET {rel}: {e}", self.name));
        if resp.status() != StatusCode::OK {
            check(self.name, &format!("GET {rel}"), resp, &[200]).await;
            return;
        }
        let mut got = 0u64;
        while let Some(piece) = resp.chunk().await.unwrap_or_else(|e| {
            panic!(
                "{}: GET {rel}: body failed after {got} bytes: {e}",
                self.name
            )
        }) {
            got += piece.len() as u64;
        }
        assert_eq!(got, size, "{}: GET {rel} returned {got} bytes", self.name);
    }

    /// PUTs `n` unique 4 KiB files into `folder` with `parallel` requests in
    /// flight.
    async fn put_small_files(&self, folder: &str, n: usize, parallel: usize, seed: u64) {
        let mut tasks = Vec::new();
        for lane in 0..parallel {
            let me = self.clone_for_task();
            let folder = folder.to_string();
            tasks.push(tokio::spawn(async move {
                for i in (lane..n).step_by(parallel) {
                    let mut buf = vec![0u8; SMALL_FILE];
                    WyRand(seed + i as u64).fill(&mut buf);
                    let rel = format!("{folder}f{i:05}.bin");
                    let resp = me
                        .request(Method::PUT, &rel)
                        .body(buf)
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("{}: PUT {rel}: {e}", me.name));
                    check(me.name, &format!("PUT {rel}"), resp, &[201, 204]).await;
                }
            }));
        }
        for t in tasks {
            t.await.expect("a PUT task panicked");
        }
    }

    /// PROPFIND Depth 1 of `folder` asking for the properties clients list.
    async fn propfind_depth1(&self, folder: &str, n: usize) {
        const BODY: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getcontentlength/><d:getlastmodified/><d:getetag/></d:prop></d:propfind>"#;
        let resp = self
            .request(Method::from_bytes(b"PROPFIND").expect("method"), folder)
            .header("Depth", "1")
            .header(reqwest::header::CONTENT_TYPE, "application/xml")
            .body(BODY)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: PROPFIND {folder}: {e}", self.name));
        let status = resp.status();
        let body = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("{}: PROPFIND {folder}: {e}", self.name));
        assert_eq!(
            status.as_u16(),
            207,
            "{}: PROPFIND {folder}: {}",
            self.name,
            snippet(&body)
        );
        let entries = closing_tags(&body, "response");
        assert_eq!(
            entries,
            n + 1,
            "{}: PROPFIND {folder} listed {entries} entries, expected {}",
            self.name,
            n + 1
        );
    }

    fn clone_for_task(&self) -> Side {
        Side {
            name: self.name,
            client: self.client.clone(),
            base: self.base.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
        }
    }
}

async fn check(side: &str, what: &str, resp: reqwest::Response, ok: &[u16]) {
    let status = resp.status().as_u16();
    if !ok.contains(&status) {
        let body = resp.text().await.unwrap_or_default();
        panic!("{side}: {what}: status {status}: {}", snippet(&body));
    }
    // Drain the body so the connection goes back to the pool.
    let _ = resp.bytes().await;
}

/// How many `</response>` or `</prefix:response>` tags `xml` has.
fn closing_tags(xml: &str, local: &str) -> usize {
    xml.split("</")
        .skip(1)
        .filter(|rest| {
            let name = rest.split('>').next().unwrap_or("").trim();
            name.rsplit(':').next() == Some(local)
        })
        .count()
}

fn snippet(s: &str) -> &str {
    let mut end = s.len().min(500);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// --- reporting ------------------------------------------------------------------

enum Target {
    RatioAtLeast(f64),
    RatioAbove(f64),
    GatewayAtLeast(f64),
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "MISS"
    }
}

fn report_rate(name: &str, apache: f64, gateway: f64, target: Target) {
    let ratio = gateway / apache;
    let (t, ok) = match target {
        Target::RatioAtLeast(r) => (format!("target>={r:.2}"), ratio >= r),
        Target::RatioAbove(r) => (format!("target>{r:.2}"), ratio > r),
        Target::GatewayAtLeast(v) => (format!("target:gateway>={v:.0}MB/s"), gateway >= v),
    };
    println!(
        "{name} apache={apache:.1}MB/s gateway={gateway:.1}MB/s ratio={ratio:.2} {t} {}",
        verdict(ok)
    );
}

/// The median of a non-empty list.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The folder of round `r` of a small-file measurement.
fn small_folder(name: &str, r: usize) -> String {
    if r == 0 {
        format!("{name}/")
    } else {
        format!("{name}-{r}/")
    }
}

/// One line: median rates of both sides over the rounds.
/// The gateway's upstream requests per small file during a phase: all
/// requests through the proxy since `before`, less the direct client's
/// (one PUT per file).
fn report_requests(proxy: &latency_proxy::LatencyProxy, before: u64, files: usize, what: &str) {
    let gateway = proxy
        .requests()
        .saturating_sub(before)
        .saturating_sub(files as u64);
    let per_file = gateway as f64 / files as f64;
    println!(
        "upstream_requests_per_small_file_{what}={per_file:.3} ({gateway} for {files} files; target<=0.05 in write-back mode, strict mode needs at least one pack per acknowledged flush)"
    );
}

fn count_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.path().is_dir() {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn report_ops(name: &str, apache: f64, gateway: f64, at_least: f64) {
    let ratio = gateway / apache;
    println!(
        "{name} apache={apache:.0}ops/s gateway={gateway:.0}ops/s ratio={ratio:.2} target>={at_least:.2} {} (median)",
        verdict(ratio >= at_least)
    );
}

// --- CPU accounting ---------------------------------------------------------------

/// Samples CPU time around each measurement.
struct Probe {
    gateway_pid: u32,
    apache_pid: u32,
    /// Per measurement: its name, the gateway's RSS before it and its peak
    /// RSS during it (MiB).
    rss: Vec<(String, f64, f64)>,
}

#[derive(Clone, Copy)]
struct CpuSample {
    gateway: f64,
    apache: f64,
    client: f64,
    machine_busy: f64,
}

impl Probe {
    fn sample(&self) -> CpuSample {
        CpuSample {
            gateway: proc_cpu_secs(self.gateway_pid, false).unwrap_or(0.0),
            apache: group_cpu_secs(self.apache_pid),
            client: proc_cpu_secs(std::process::id(), false).unwrap_or(0.0),
            machine_busy: machine_busy_secs(),
        }
    }

    /// Runs `f` once and returns its wall time in seconds; prints where the
    /// CPU time went meanwhile.
    async fn measure<F, Fut>(&mut self, what: &str, f: F) -> f64
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        sync_disks();
        reset_hwm(self.gateway_pid);
        let rss_before = vm_kib(self.gateway_pid, "VmRSS:").unwrap_or(0) as f64 / 1024.0;
        let before = self.sample();
        let start = Instant::now();
        f().await;
        let wall = start.elapsed().as_secs_f64();
        let after = self.sample();
        let gw = after.gateway - before.gateway;
        let ap = after.apache - before.apache;
        let cl = after.client - before.client;
        let busy = after.machine_busy - before.machine_busy;
        let other = (busy - gw - ap - cl).max(0.0);
        let pct = |s: f64| s * 100.0 / wall;
        let hwm = vm_kib(self.gateway_pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
        self.rss.push((what.to_string(), rss_before, hwm));
        println!(
            "# {what}: wall={wall:.3}s cpu gateway={gw:.2}s({:.0}%) apache={ap:.2}s({:.0}%) client={cl:.2}s({:.0}%) other={other:.2}s({:.0}%) gateway_rss={rss_before:.1}MiB->peak {hwm:.1}MiB",
            pct(gw),
            pct(ap),
            pct(cl),
            pct(other),
        );
        wall
    }

    /// The gateway's peak RSS over all measurements, and the measurement
    /// during which it rose the most (RSS before -> peak).
    fn peak_rss(&self) -> (f64, String) {
        let max = self.rss.iter().map(|r| r.2).fold(0.0, f64::max);
        let rise = self
            .rss
            .iter()
            .max_by(|a, b| (a.2 - a.1).total_cmp(&(b.2 - b.1)))
            .map_or_else(String::new, |r| {
                format!("largest rise during {}: {:.1}->{:.1}MiB", r.0, r.1, r.2)
            });
        (max, rise)
    }
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Fields of /proc/<pid>/stat after the command name (index 0 = state).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// utime + stime (+ reaped children's) of a process, in seconds.
fn proc_cpu_secs(pid: u32, with_children: bool) -> Option<f64> {
    let f = stat_fields(pid)?;
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let mut ticks = n(11) + n(12);
    if with_children {
        ticks += n(13) + n(14);
    }
    Some(ticks / clock_ticks())
}

/// CPU of every process in Apache's process group (parent and workers).
fn group_cpu_secs(pgid: u32) -> f64 {
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Some(f) = stat_fields(pid) else { continue };
        if f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid) {
            total += proc_cpu_secs(pid, pid == pgid).unwrap_or(0.0);
        }
    }
    total
}

/// Busy CPU seconds of the whole machine (all cores) since boot.
fn machine_busy_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = s.lines().next() else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy: f64 = v
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| x)
        .sum();
    busy / clock_ticks()
}

/// Resets the peak RSS of `pid` to its current RSS (Linux >= 4.0), so the
/// next `VmHWM` shows the peak of one measurement. Without the right
/// to do so the peak stays cumulative (still an upper bound).
fn reset_hwm(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// A `Vm…:` line of /proc/<pid>/status, in KiB.
fn vm_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn sync_disks() {
    let _ = Command::new("sync").status();
}

/// Apache's parent process (its pid is also its process group).
fn apache_pid(apache: &apache::Apache) -> u32 {
    let root = apache.data_dir();
    let pidfile = root
        .parent()
        .expect("apache root")
        .join("run")
        .join("httpd.pid");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < until,
            "apache wrote no pid file at {}",
            pidfile.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Bytes in the files below `dir` (0 when it does not exist yet).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

// --- the gateway process ----------------------------------------------------------

struct GatewayProcess {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    password: String,
    env: Vec<(String, String)>,
}

impl GatewayProcess {
    fn binary() -> PathBuf {
        PathBuf::from(env!("CARGO_BIN_EXE_dedupdav"))
    }

    /// Creates the user, then starts `serve` and waits until it listens.
    fn start(apache: &apache::Apache, upstream: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("dedupdav-e2e-")
            .tempdir()
            .expect("temp dir");
        let port = apache::free_port();
        let env: Vec<(String, String)> = [
            (
                "DEDUPDAV_DATA_DIR",
                dir.path().join("data").display().to_string(),
            ),
            ("DEDUPDAV_LISTEN", format!("127.0.0.1:{port}")),
            ("DEDUPDAV_LOG_LEVEL", "warn".to_string()),
            ("DEDUPDAV_BACKEND__KIND", "webdav".to_string()),
            ("DEDUPDAV_BACKEND__URL", upstream.to_string()),
            ("DEDUPDAV_BACKEND__USERNAME", apache.user().to_string()),
            ("DEDUPDAV_BACKEND__PASSWORD", apache.password().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let password = format!("bench-{}", uuid::Uuid::new_v4().simple());

        let mut add = Command::new(Self::binary())
            .args(["user", "add", GATEWAY_USER, "--password-stdin"])
            .envs(env.iter().cloned())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run dedupdav user add");
        {
            use std::io::Write;
            let mut stdin = add.stdin.take().expect("stdin");
            stdin
                .write_all(format!("{password}\n").as_bytes())
                .expect("write the password");
        }
        let out = add.wait_with_output().expect("dedupdav user add");
        assert!(
            out.status.success(),
            "dedupdav user add failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );

        let log = std::fs::File::create(dir.path().join("gateway.log")).expect("log file");
        let mut child = Command::new(Self::binary())
            .arg("serve")
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("run dedupdav serve");
        // Keep reading stdout so the gateway never blocks on a full pipe.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut me = Self {
            child: Some(child),
            dir,
            port,
            password,
            env,
        };
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                if line.contains("listening on") {
                    break;
                }
            }
            if let Some(status) = me.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("dedupdav serve exited with {status}: {}", me.log());
            }
            assert!(
                Instant::now() < until,
                "dedupdav serve did not listen within 30s: {}",
                me.log()
            );
        }
        me
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn files_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/remote.php/dav/files/{GATEWAY_USER}/",
            self.port
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Stops the server and reads `dedupdav stats --json`.
    fn stop_and_stats(mut self) -> serde_json::Value {
        self.stop();
        let out = Command::new(Self::binary())
            .args(["stats", "--json"])
            .envs(self.env.iter().cloned())
            .output()
            .expect("run dedupdav stats");
        assert!(
            out.status.success(),
            "dedupdav stats failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("stats JSON")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

// --- data ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Data {
    /// Incompressible bytes from a PRNG with this seed.
    Random(u64),
    /// Text-like: runs of lines of random words (see [`Generator`]).
    Text(u64),
}

/// wyrand: one multiply per 8 bytes.
struct WyRand(u64);

impl WyRand {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) ^ t) as u64
    }

    fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next().to_le_bytes();
        let k = rest.len();
        rest.copy_from_slice(&last[..k]);
    }
}

const WORDS: [&str; 64] = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "he",
    "this",
    "are",
    "or",
    "his",
    "from",
    "at",
    "which",
    "but",
    "have",
    "an",
    "had",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "request",
    "server",
    "upload",
    "folder",
    "chunk",
    "status",
    "error",
    "200",
    "404",
    "2024-05-17",
    "12:03:44",
    "user",
    "file",
    "bytes",
    "GET",
    "PUT",
];

/// Bytes of text-like data the compressible stream is cut from.
const TEXT_POOL: usize = 8 << 20;

/// 8 MiB of lines of random words from a 256-word vocabulary (each word
/// plain, capitalised, with a comma or a full stop), made once.
fn text_pool() -> &'static [u8] {
    static POOL: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let mut vocab = Vec::with_capacity(256);
        for w in WORDS {
            let mut cap = w.as_bytes().to_vec();
            cap[0] = cap[0].to_ascii_uppercase();
            vocab.push(w.as_bytes().to_vec());
            vocab.push(cap);
            vocab.push(format!("{w},").into_bytes());
            vocab.push(format!("{w}.").into_bytes());
        }
        let mut rng = WyRand(0x5eed);
        let mut pool = Vec::with_capacity(TEXT_POOL + 256);
        let (mut in_line, mut line_len) = (0u32, 12u32);
        while pool.len() < TEXT_POOL {
            let r = rng.next();
            for k in 0..7 {
                pool.extend_from_slice(&vocab[((r >> (8 * k)) & 0xff) as usize]);
                in_line += 1;
                if in_line >= line_len {
                    pool.push(b'\n');
                    in_line = 0;
                    line_len = 6 + ((r >> 56) % 14) as u32;
                } else {
                    pool.push(b' ');
                }
            }
        }
        pool.truncate(TEXT_POOL);
        pool
    })
}

/// Streams `size` bytes of `Data` in pieces of `BODY_PIECE` bytes.
///
/// Text is a sequence of runs of 256 bytes to 4 KiB copied from random
/// offsets of [`text_pool`]: it compresses like the pool does, yet no
/// 256 KiB stretch of it repeats, so content-defined chunks do not
/// deduplicate (and it costs the client a copy, not a word-by-word build).
struct Generator {
    rng: WyRand,
    text: bool,
    left: u64,
}

impl Generator {
    fn new(data: Data, size: u64) -> Self {
        let (seed, text) = match data {
            Data::Random(s) => (s, false),
            Data::Text(s) => (s, true),
        };
        Self {
            rng: WyRand(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            text,
            left: size,
        }
    }

    fn text_piece(&mut self, n: usize) -> Vec<u8> {
        let pool = text_pool();
        let mut buf = Vec::with_capacity(n);
        while buf.len() < n {
            let r = self.rng.next();
            let run = (256 + (r >> 40) as usize % 3841).min(n - buf.len());
            let at = (r as usize) % (pool.len() - run);
            buf.extend_from_slice(&pool[at..at + run]);
        }
        buf
    }
}

impl Iterator for Generator {
    type Item = Result<Bytes, std::io::Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let n = self.left.min(BODY_PIECE as u64) as usize;
        self.left -= n as u64;
        let piece = if self.text {
            self.text_piece(n)
        } else {
            let mut buf = vec![0u8; n];
            self.rng.fill(&mut buf);
            buf
        };
        Some(Ok(Bytes::from(piece)))
    }
}
