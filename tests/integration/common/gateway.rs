//! Starts a real gateway in-process on a loopback port with its own data
//! directory, and offers a small blocking WebDAV client for tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dedupdav::app::App;
use dedupdav::config::{BackendConfig, Config, WebDavConfig};

use super::apache::Apache;
use dedupdav::http::{Gateway, Listeners, Tls};
use dedupdav::meta::{Meta, Stats};
use reqwest::blocking::{Client, Response};
use reqwest::Method;

pub struct TestGateway {
    pub base: String,
    /// Where the backend keeps its `objects/` tree on disk.
    pub objects_root: PathBuf,
    pub data: tempfile::TempDir,
    pub meta: Meta,
    pub store: Arc<dedupdav::store::ContentStore>,
    pub gateway: Arc<Gateway>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The upstream, when the backend is a real Apache (dropped last).
    pub apache: Option<Apache>,
    /// The configuration it was started with.
    pub config: Config,
}

impl TestGateway {
    /// A gateway on the embedded defaults (local object directory).
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// A gateway whose backend is a real Apache mod_dav at an ownCloud-shaped path.
    pub fn start_on_apache() -> Self {
        Self::start_on_apache_with(|_| {})
    }

    pub fn start_on_apache_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_on_apache_via(|a| a.base_url(), tweak)
    }

    /// Like `start_on_apache_with`, reaching Apache at the URL `via` gives
    /// (e.g. through a fault-injecting proxy).
    pub fn start_on_apache_via(
        via: impl FnOnce(&Apache) -> String,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let apache = Apache::start();
        let url = via(&apache);
        let user = apache.user().to_string();
        let password = apache.password().to_string();
        let mut gw = Self::start_with(|c| {
            let mut upstream = WebDavConfig::new(url, user);
            upstream.password = Some(password);
            upstream.root = "dedupdav".into();
            upstream.retry_deadline_secs = 10;
            c.backend = BackendConfig::Webdav(upstream);
            tweak(c);
        });
        gw.objects_root = apache.data_dir().join("dedupdav");
        gw.apache = Some(apache);
        gw
    }

    /// A gateway on Apache reached through a recording, fault-injecting
    /// proxy, and the runtime serving that proxy. Kept as one value, they
    /// drop in this order: the gateway, the proxy, then the runtime.
    pub fn start_behind_proxy(
        tweak: impl FnOnce(&mut Config),
    ) -> (Self, super::faultproxy::FaultProxy, tokio::runtime::Runtime) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let mut proxy = None;
        let gw = Self::start_on_apache_via(
            |apache| {
                let p = rt.block_on(super::faultproxy::FaultProxy::start(&apache.origin()));
                let url = format!("{}{}", p.origin(), Apache::base_path());
                proxy = Some(p);
                url
            },
            tweak,
        );
        (gw, proxy.expect("proxy"), rt)
    }

    /// The upstream settings of a configuration `start_on_apache*` made.
    pub fn upstream_of(c: &mut Config) -> &mut WebDavConfig {
        match &mut c.backend {
            BackendConfig::Webdav(upstream) => upstream,
            other => panic!("not a webdav backend: {other:?}"),
        }
    }

    /// A gateway whose configuration `tweak` may change first.
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: data.path().to_path_buf(),
            listen: "127.0.0.1:0".into(),
            ..Config::default()
        };
        tweak(&mut config);
        Self::launch(data, config)
    }

    /// Serves `config` over the data directory `data`.
    fn launch(data: tempfile::TempDir, config: Config) -> Self {
        let app = App::open(config.clone()).expect("gateway starts");
        let meta = app.meta.clone();
        let store = app.store.clone();
        let gateway = Gateway::new(&app);
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("addr");
        let tls = config
            .tls
            .as_ref()
            .map(|t| Tls::load(t).expect("[tls] loads"));
        let base = match tls {
            // The test certificates name localhost.
            Some(_) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{addr}"),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let gw = gateway.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let tokio_listener = |l| tokio::net::TcpListener::from_std(l).expect("listener");
                let listeners = Listeners {
                    main: tokio_listener(std_listener),
                    tls,
                    // The redirect address is tested on the binary (tls.rs).
                    redirect: None,
                };
                gw.serve_listeners(listeners, async {
                    let _ = rx.await;
                })
                .await;
            });
            drop(app);
        });
        Self {
            base,
            objects_root: data.path().join("objects"),
            apache: None,
            data,
            meta,
            store,
            gateway,
            shutdown: Some(tx),
            thread: Some(thread),
            config,
        }
    }

    pub fn add_user(&self, name: &str, password: &str) {
        super::wait(dedupdav::accounts::add_user(
            &self.meta, name, password, false, None,
        ))
        .expect("add user");
    }

    pub fn add_user_with_quota(&self, name: &str, password: &str, quota: u64) {
        super::wait(dedupdav::accounts::add_user(
            &self.meta,
            name,
            password,
            false,
            Some(quota),
        ))
        .expect("add user");
    }

    /// Runs the garbage collector with the given grace period.
    pub fn collect_garbage(&self, grace: Duration) -> dedupdav::store::GcReport {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(self.store.collect_garbage(grace, |_| {}))
            .expect("garbage collection")
    }

    pub fn stats(&self) -> Stats {
        super::wait(self.meta.stats()).expect("stats")
    }

    /// The fan-out tree of objects.
    pub fn objects_dir(&self) -> PathBuf {
        self.objects_root.join("objects")
    }

    pub fn master_key_path(&self) -> PathBuf {
        self.data.path().join("master.key")
    }

    /// Where chunk `id`'s sealed bytes lie: the object file holding them
    /// (its own, or its pack) and their range in it.
    pub fn sealed_range(
        &self,
        id: &dedupdav::crypto::ChunkId,
    ) -> (PathBuf, std::ops::Range<usize>) {
        let rec = super::wait(self.meta.chunk(&id.0))
            .expect("chunk record")
            .expect("a known chunk");
        let name = self.store.object_name_of(id, &rec);
        let file = self.objects_root.join(name.relative_path());
        let start = rec.packed.map_or(0, |at| at.offset as usize);
        (file, start..start + rec.stored as usize)
    }

    /// Every object file the backend holds.
    pub fn object_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.objects_dir(), &mut out);
        out.sort();
        out
    }

    pub fn client(&self, user: &str, password: &str) -> Dav {
        Dav {
            http: Client::builder()
                .timeout(Duration::from_secs(300))
                .build()
                .expect("client"),
            base: self.base.clone(),
            user: user.to_string(),
            password: password.to_string(),
        }
    }
}

/// Every file below `dir` (none when it does not exist).
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    walk(dir, &mut out);
    out
}

/// PUTs `data[i]` as `<prefix>{i}` in `user`'s tree on another thread
/// (racing whatever the caller does meanwhile); every PUT must succeed.
pub fn upload_in_background(
    base: &str,
    user: &str,
    password: &str,
    prefix: &str,
    data: &[Vec<u8>],
) -> std::thread::JoinHandle<()> {
    let (base, user, password, prefix, data) = (
        base.to_string(),
        user.to_string(),
        password.to_string(),
        prefix.to_string(),
        data.to_vec(),
    );
    std::thread::spawn(move || {
        let http = Client::new();
        for (i, d) in data.iter().enumerate() {
            let url = format!("{base}/remote.php/dav/files/{user}/{prefix}{i}");
            let res = http
                .put(url)
                .basic_auth(&user, Some(&password))
                .body(d.clone())
                .send();
            assert!(res.expect("PUT").status().is_success());
        }
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What stays of a gateway after [`TestGateway::stop`]: its data
/// directory (index, master key, local objects) and its upstream.
pub struct Stopped {
    pub data: tempfile::TempDir,
    /// Where the backend keeps its `objects/` tree on disk.
    pub objects_root: PathBuf,
    pub apache: Option<Apache>,
    pub config: Config,
}

impl Stopped {
    /// Serves the same data and upstream again, with the same settings.
    pub fn restart(self) -> TestGateway {
        let mut gw = TestGateway::launch(self.data, self.config);
        gw.objects_root = self.objects_root;
        gw.apache = self.apache;
        gw
    }

    /// Runs the `dedupdav` binary with `args` over this data and upstream;
    /// answers (success, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (bool, String, String) {
        let mut c = super::dedupdav_command();
        c.arg("--data-dir").arg(self.data.path()).args(args);
        if let Some(apache) = &self.apache {
            c.env("DEDUPDAV_BACKEND__KIND", "webdav")
                .env("DEDUPDAV_BACKEND__URL", apache.base_url())
                .env("DEDUPDAV_BACKEND__USERNAME", apache.user())
                .env("DEDUPDAV_BACKEND__PASSWORD", apache.password())
                .env("DEDUPDAV_BACKEND__ROOT", "dedupdav")
                .env("DEDUPDAV_BACKEND__RETRY_DEADLINE_SECS", "5");
        }
        let out = c.output().expect("dedupdav runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl TestGateway {
    /// Stops the gateway and closes its index, keeping its data and its
    /// upstream, so the `dedupdav` binary can work on them.
    pub fn stop(mut self) -> Stopped {
        let placeholder = tempfile::tempdir().expect("temp dir");
        let data = std::mem::replace(&mut self.data, placeholder);
        let stopped = Stopped {
            data,
            objects_root: self.objects_root.clone(),
            apache: self.apache.take(),
            config: self.config.clone(),
        };
        drop(self);
        stopped
    }
}

/// A blocking WebDAV client acting as one user.
pub struct Dav {
    pub http: Client,
    pub base: String,
    pub user: String,
    pub password: String,
}

impl Dav {
    /// URL of `path` in this user's tree (`path` is already encoded).
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}/remote.php/dav/files/{}/{}",
            self.base,
            self.user,
            path.trim_start_matches('/')
        )
    }

    pub fn request(&self, method: &str, url: &str) -> reqwest::blocking::RequestBuilder {
        self.http
            .request(Method::from_bytes(method.as_bytes()).expect("method"), url)
            .basic_auth(&self.user, Some(&self.password))
    }

    pub fn put(&self, path: &str, body: Vec<u8>) -> Response {
        self.request("PUT", &self.url(path))
            .body(body)
            .send()
            .expect("PUT")
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", &self.url(path)).send().expect("GET")
    }

    /// GETs and returns the body, or the error reading it.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, String> {
        let res = self
            .request("GET", &self.url(path))
            .send()
            .map_err(|e| e.to_string())?;
        if !res.status().is_success() {
            return Err(format!("status {}", res.status()));
        }
        res.bytes().map(|b| b.to_vec()).map_err(|e| e.to_string())
    }

    pub fn mkcol(&self, path: &str) -> Response {
        self.request("MKCOL", &self.url(path))
            .send()
            .expect("MKCOL")
    }

    pub fn propfind(&self, path: &str, depth: &str) -> Response {
        self.request("PROPFIND", &self.url(path))
            .header("Depth", depth)
            .send()
            .expect("PROPFIND")
    }
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compressible text-like bytes.
pub fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "gateway ",
        "chunk ",
        "owncloud ",
        "secret ",
        "ledger ",
        "invoice ",
        "alpha ",
        "river ",
        "mountain ",
        "report ",
        "quarterly ",
        "numbers ",
        "private ",
        "budget ",
        "draft ",
        "notes\n",
    ];
    let r = random_bytes(len / 4 + 16, seed);
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(WORDS[(r[i % r.len()] & 15) as usize].as_bytes());
        if i % 7 == 0 {
            out.extend_from_slice(format!("{} ", r[i % r.len()] as u32 * 37 + i as u32).as_bytes());
        }
        i += 1;
    }
    out.truncate(len);
    out
}

/// Sends `request` (a whole raw HTTP/1.1 request) and returns the status and
/// body of the reply. For paths a URL library would normalize.
pub fn raw_http(base: &str, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    s.write_all(request).expect("send");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (status, body)
}

/// `Authorization` header value for Basic auth.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
