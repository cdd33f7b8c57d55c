//! HTTPS on the client address (`[tls]`): real clients (curl over HTTP/1.1
//! and HTTP/2, rclone, owncloudcmd) against a certificate of a test CA made
//! with the openssl command line; a handshake that never comes frees its
//! slot; and, on the real binary, a certificate swapped under SIGHUP is
//! served to new connections while an open one keeps working, a bad one is
//! refused and the old kept, plain HTTP on the TLS port is answered and
//! logged, and the redirect address answers 308.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::common::gateway::TestGateway;
use super::common::{collect_stderr, dedupdav_command};
use dedupdav::config::TlsConfig;

const USER: &str = "alice";
const PASSWORD: &str = "alice-password-1";

/// Test CAs and the server certificates they issue, made with `openssl`.
struct Pki {
    dir: tempfile::TempDir,
}

/// A server certificate and its key.
struct Leaf {
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A self-signed CA named `name`; its certificate is `<name>.pem`.
    fn ca(&self, name: &str) -> PathBuf {
        let (cert, key) = (
            self.path(&format!("{name}.pem")),
            self.path(&format!("{name}.key")),
        );
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            path_str(&key),
            "-out",
            path_str(&cert),
        ]);
        cert
    }

    /// A certificate for localhost and 127.0.0.1 issued by the CA `ca`.
    fn leaf(&self, ca: &str, name: &str) -> Leaf {
        let leaf = Leaf {
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}.key")),
        };
        let csr = self.path(&format!("{name}.csr"));
        let ext = self.path(&format!("{name}.ext"));
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("extensions");
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            path_str(&leaf.key),
            "-out",
            path_str(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            path_str(&csr),
            "-CA",
            path_str(&self.path(&format!("{ca}.pem"))),
            "-CAkey",
            path_str(&self.path(&format!("{ca}.key"))),
            "-CAcreateserial",
            "-extfile",
            path_str(&ext),
            "-out",
            path_str(&leaf.cert),
        ]);
        leaf
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tls_config(leaf: &Leaf) -> TlsConfig {
    TlsConfig {
        cert: leaf.cert.clone(),
        key: leaf.key.clone(),
        redirect_listen: None,
        handshake_timeout_secs: 10,
    }
}

/// An in-process gateway serving HTTPS with `leaf`, with the user alice.
fn https_gateway(leaf: &Leaf, tweak: impl FnOnce(&mut dedupdav::config::Config)) -> TestGateway {
    let gw = TestGateway::start_with(|c| {
        c.tls = Some(tls_config(leaf));
        tweak(c);
    });
    gw.add_user(USER, PASSWORD);
    gw
}

/// A client trusting only the CA certificate at `ca`.
fn client_trusting(ca: &Path) -> reqwest::blocking::Client {
    let pem = std::fs::read(ca).expect("CA certificate");
    reqwest::blocking::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("PEM"))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} is not installed ({e}): run scripts/test.sh"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// curl with the test CA; answers what `-w` wrote.
fn curl(ca: &Path, args: &[&str]) -> String {
    let out = run(
        Command::new("curl")
            .args(["-sS", "--max-time", "120", "--cacert", path_str(ca)])
            .args(["-u", &format!("{USER}:{PASSWORD}")])
            .args(args),
        "curl",
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn curl_works_over_http1_and_http2() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let gw = https_gateway(&pki.leaf("ca", "server"), |_| {});
    let files = tempfile::tempdir().unwrap();
    let (small, large) = (files.path().join("small"), files.path().join("large"));
    std::fs::write(&small, b"over HTTP/1.1").unwrap();
    std::fs::write(&large, pseudo_random(3 << 20, 7)).unwrap();
    let url = |name: &str| format!("{}/remote.php/dav/files/{USER}/{name}", gw.base);
    let w = ["-w", "%{http_version} %{http_code}"];

    let put1 = curl(
        &ca,
        &[
            &["--http1.1", "-T", path_str(&small), &url("small")][..],
            &w,
        ]
        .concat(),
    );
    assert_eq!(put1, "1.1 201");
    let put2 = curl(
        &ca,
        &[&["--http2", "-T", path_str(&large), &url("large")][..], &w].concat(),
    );
    assert_eq!(put2, "2 201", "a 3 MiB upload over HTTP/2");

    let back = files.path().join("back");
    let get2 = curl(
        &ca,
        &[&["--http2", "-o", path_str(&back), &url("small")][..], &w].concat(),
    );
    assert_eq!(get2, "2 200");
    assert_eq!(std::fs::read(&back).unwrap(), b"over HTTP/1.1");
    let get1 = curl(
        &ca,
        &[&["--http1.1", "-o", path_str(&back), &url("large")][..], &w].concat(),
    );
    assert_eq!(get1, "1.1 200");
    assert!(std::fs::read(&back).unwrap() == std::fs::read(&large).unwrap());

    let listing = curl(
        &ca,
        &["--http2", "-X", "PROPFIND", "-H", "Depth: 1", &url("")],
    );
    assert!(
        listing.contains("small") && listing.contains("large"),
        "PROPFIND over HTTP/2 lists both files: {listing}"
    );
}

#[test]
fn the_console_takes_its_own_forms_over_http2() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let gw = https_gateway(&pki.leaf("ca", "server"), |_| {});
    // A browser sends Origin with a form, and over HTTP/2 no Host header.
    let status = |origin: &str| {
        let origin = format!("Origin: {origin}");
        let url = format!("{}/admin/login", gw.base);
        let out = run(
            Command::new("curl")
                .args(["-sS", "--http2", "--cacert", path_str(&ca)])
                .args(["-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
                .args(["-H", &origin, "--data", "user=&password=", &url]),
            "curl",
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        status(&gw.base),
        "2 401",
        "the same origin reaches the login (which wants a name)"
    );
    assert_eq!(status("https://elsewhere.example"), "2 403");
}

#[test]
fn rclone_copies_over_https_with_the_test_ca() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let gw = https_gateway(&pki.leaf("ca", "server"), |_| {});
    let work = tempfile::tempdir().unwrap();
    let (up, down) = (work.path().join("up"), work.path().join("down"));
    std::fs::create_dir_all(up.join("sub")).unwrap();
    std::fs::write(up.join("a.txt"), b"alpha").unwrap();
    std::fs::write(up.join("sub/big.bin"), pseudo_random(5 << 20, 11)).unwrap();
    let obscured = run(Command::new("rclone").args(["obscure", PASSWORD]), "rclone");
    let obscured = String::from_utf8_lossy(&obscured.stdout).trim().to_string();
    let rclone = |from: &str, to: &str| {
        let mut cmd = Command::new("timeout");
        cmd.args(["300", "rclone", "copy", from, to])
            .args(["--config", "/dev/null", "--webdav-vendor", "owncloud"])
            .arg(format!(
                "--webdav-url={}/remote.php/dav/files/{USER}/",
                gw.base
            ))
            .arg(format!("--webdav-user={USER}"))
            .arg(format!("--webdav-pass={obscured}"))
            .args(["--ca-cert", path_str(&ca), "--retries", "1"]);
        run(&mut cmd, "rclone");
    };
    rclone(path_str(&up), ":webdav:tree");
    rclone(":webdav:tree", path_str(&down));
    assert_eq!(std::fs::read(down.join("a.txt")).unwrap(), b"alpha");
    assert!(
        std::fs::read(down.join("sub/big.bin")).unwrap()
            == std::fs::read(up.join("sub/big.bin")).unwrap()
    );
}

/// The Linux mount of README's client section, over HTTPS: davfs2 with
/// its defaults (locks on), trusting the test CA (`trust_ca_cert`).
#[test]
fn davfs2_mounts_over_https_with_the_test_ca() {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("SKIPPED: /dev/fuse is missing, so davfs2 cannot mount here");
        return;
    }
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let gw = https_gateway(&pki.leaf("ca", "server"), |_| {});
    let work = tempfile::tempdir().unwrap();
    let url = format!("{}/remote.php/dav/files/{USER}/", gw.base);
    assert!(url.starts_with("https://"), "{url}");
    let trust = format!("trust_ca_cert {}\n", path_str(&ca));
    {
        let mount = crate::locks::Mount::new(work.path(), "m", &url, (USER, PASSWORD), &trust);
        std::fs::create_dir(mount.path("notes")).expect("mkdir");
        std::fs::write(mount.path("notes/a.txt"), b"over https\n").expect("write");
        std::fs::rename(mount.path("notes/a.txt"), mount.path("notes/b.txt")).expect("rename");
        assert_eq!(
            std::fs::read(mount.path("notes/b.txt")).unwrap(),
            b"over https\n"
        );
    }
    // Unmounted: the file is on the gateway, read over HTTPS.
    let got = client_trusting(&ca)
        .get(format!("{url}notes/b.txt"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().unwrap().as_ref(), b"over https\n");
}

#[test]
fn owncloudcmd_syncs_over_https() {
    let pki = Pki::new();
    pki.ca("ca");
    let gw = https_gateway(&pki.leaf("ca", "server"), |_| {});
    let work = tempfile::tempdir().unwrap();
    let exclude = work.path().join("exclude.lst");
    std::fs::write(&exclude, "").unwrap();
    let (first, second) = (work.path().join("first"), work.path().join("second"));
    std::fs::create_dir_all(first.join("docs")).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    std::fs::write(first.join("docs/report.txt"), b"quarterly figures").unwrap();
    std::fs::write(first.join("photo.bin"), pseudo_random(2 << 20, 3)).unwrap();
    let sync = |dir: &Path| {
        let mut cmd = Command::new("timeout");
        // --trust: owncloudcmd has no option for a CA file; it accepts the
        // test CA's certificate after showing it.
        cmd.args(["180", "owncloudcmd", "--non-interactive", "--trust"])
            .arg("--exclude")
            .arg(&exclude)
            .args(["-u", USER, "-p", PASSWORD])
            .arg(dir)
            .arg(format!("{}/", gw.base));
        run(&mut cmd, "owncloudcmd");
    };
    sync(&first);
    sync(&second);
    assert_eq!(
        std::fs::read(second.join("docs/report.txt")).unwrap(),
        b"quarterly figures"
    );
    assert!(
        std::fs::read(second.join("photo.bin")).unwrap()
            == std::fs::read(first.join("photo.bin")).unwrap()
    );
}

/// The value of a series with no labels but `phase`, from the gateway's
/// own registry.
fn timeouts(gw: &TestGateway, phase: &str) -> u64 {
    let series = format!("dedupdav_connection_timeouts_total{{phase=\"{phase}\"}} ");
    let text = gw.gateway.metrics().render(None);
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

fn open_connections(gw: &TestGateway) -> u64 {
    let text = gw.gateway.metrics().render(None);
    text.lines()
        .find_map(|l| l.strip_prefix("dedupdav_connections_open ")?.parse().ok())
        .unwrap_or_else(|| panic!("no dedupdav_connections_open in\n{text}"))
}

/// Reads until the gateway closes the socket (end of file or reset).
fn closed_by_the_gateway(mut s: TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

#[test]
fn a_client_that_never_finishes_its_handshake_holds_a_slot_only_until_the_timeout() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf("ca", "server");
    let gw = https_gateway(&leaf, |c| {
        c.limits.max_connections = 2;
        if let Some(t) = &mut c.tls {
            t.handshake_timeout_secs = 1;
        }
    });
    let addr = gw.base.trim_start_matches("https://localhost:");
    let addr = format!("127.0.0.1:{addr}");
    // One says nothing; one starts a TLS record and stops.
    let silent = TcpStream::connect(&addr).unwrap();
    let mut partial = TcpStream::connect(&addr).unwrap();
    partial.write_all(&[0x16, 0x03, 0x01, 0x02]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_connections(&gw) < 2 {
        assert!(
            Instant::now() < deadline,
            "the two connections were not admitted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        open_connections(&gw),
        2,
        "both hold a slot: the cap is full"
    );

    // A real client waits in the accept queue until a slot is freed.
    let res = client_trusting(&ca)
        .get(format!("{}/status.php", gw.base))
        .send()
        .expect("served once the stalled handshakes were closed");
    assert_eq!(res.status(), 200);
    assert!(closed_by_the_gateway(silent), "a silent client is closed");
    assert!(closed_by_the_gateway(partial), "a half handshake is closed");
    // Counted just after the socket closes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while timeouts(&gw, "handshake") < 2 {
        assert!(Instant::now() < deadline, "the timeouts were not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(timeouts(&gw, "handshake"), 2);
}

#[test]
fn the_watchdog_closes_an_idle_http2_connection() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let gw = https_gateway(&pki.leaf("ca", "server"), |c| {
        c.limits.idle_timeout_secs = 1;
        c.limits.header_timeout_secs = 1;
    });
    let port = gw.base.trim_start_matches("https://localhost:");
    // A client that agrees on h2 and then sends nothing (stdin stays open).
    let mut idle = Command::new("openssl")
        .args(["s_client", "-alpn", "h2", "-CAfile", path_str(&ca)])
        .args(["-connect", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl");
    let deadline = Instant::now() + Duration::from_secs(60);
    while idle.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = idle.kill();
            panic!("the idle HTTP/2 connection was never closed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = String::new();
    idle.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert_eq!(timeouts(&gw, "idle"), 1);
}

// ------------------------------------------------ the binary: SIGHUP etc.

/// A `dedupdav serve` with `[tls]`, its addresses and its log.
struct Served {
    child: Child,
    https: String,
    redirect: String,
    log: Arc<Mutex<String>>,
    config: PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(dir: &Path, leaf: &Leaf) -> Self {
        let config = dir.join("dedupdav.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\
                 [tls]\ncert = \"{}\"\nkey = \"{}\"\nredirect_listen = \"127.0.0.1:0\"\n",
                path_str(&dir.join("data")),
                path_str(&leaf.cert),
                path_str(&leaf.key)
            ),
        )
        .unwrap();
        let mut child = dedupdav_command()
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dedupdav starts");
        let log = collect_stderr(&mut child);
        let (https, redirect) = addresses(&mut child);
        Self {
            child,
            https,
            redirect,
            log,
            config,
        }
    }

    /// Sends SIGHUP and waits for the log line `expect` to appear once more.
    fn hang_up(&self, expect: &str) {
        let before = self.log.lock().unwrap().matches(expect).count();
        let pid = self.child.id().to_string();
        run(Command::new("kill").args(["-HUP", &pid]), "kill");
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log.lock().unwrap().matches(expect).count() == before {
            assert!(
                Instant::now() < deadline,
                "no {expect:?} after SIGHUP:\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for `needle` in the log (its reader is a thread of its own).
    fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn status(&self, client: &reqwest::blocking::Client) -> reqwest::Result<u16> {
        let url = format!("{}/status.php", self.https);
        client.get(url).send().map(|r| r.status().as_u16())
    }
}

/// The HTTPS base URL (by the name the certificates hold) and the redirect
/// address a starting `serve` prints.
fn addresses(child: &mut Child) -> (String, String) {
    let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut https, mut redirect) = (None, None);
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        if let Some(a) = line.strip_prefix("dedupdav listening on https://127.0.0.1:") {
            https = Some(format!(
                "https://localhost:{}",
                a.trim().trim_end_matches('/')
            ));
        }
        if let Some(a) = line.trim().strip_prefix("redirecting http://") {
            redirect = a.split('/').next().map(str::to_string);
            break;
        }
    }
    (
        https.expect("the HTTPS address printed"),
        redirect.expect("the redirect address printed"),
    )
}

#[test]
fn sighup_serves_a_new_certificate_to_new_connections_and_keeps_a_bad_one_out() {
    let pki = Pki::new();
    let (old_ca, new_ca) = (pki.ca("old-ca"), pki.ca("new-ca"));
    let first = pki.leaf("old-ca", "first");
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), &first);

    let old_client = client_trusting(&old_ca);
    assert_eq!(served.status(&old_client).unwrap(), 200);
    assert!(
        served.status(&client_trusting(&new_ca)).is_err(),
        "the first certificate is not the new CA's"
    );

    // Swap the files and reload.
    let second = pki.leaf("new-ca", "second");
    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    served.hang_up("TLS certificate reloaded");
    assert_eq!(
        served.status(&client_trusting(&new_ca)).unwrap(),
        200,
        "a new connection gets the new certificate"
    );
    assert!(served.status(&client_trusting(&old_ca)).is_err());
    assert_eq!(
        served.status(&old_client).unwrap(),
        200,
        "the open connection (its client trusts only the old CA, so it \
         cannot have reconnected) keeps working"
    );

    // A key that is not the certificate's: refused, the second one stays.
    let third = pki.leaf("old-ca", "third");
    std::fs::copy(&third.cert, &first.cert).unwrap();
    served.hang_up("TLS certificate not reloaded");
    assert!(
        served.log.lock().unwrap().contains("KeyMismatch"),
        "the log says why: {}",
        served.log.lock().unwrap()
    );
    // A file that is no certificate at all: refused too.
    std::fs::write(&first.cert, "not a certificate\n").unwrap();
    served.hang_up("TLS certificate not reloaded");
    assert_eq!(served.status(&client_trusting(&new_ca)).unwrap(), 200);
    assert!(served.status(&client_trusting(&old_ca)).is_err());

    // The local command line follows the reloaded certificate.
    let stats = run(
        dedupdav_command()
            .arg("--config")
            .arg(&served.config)
            .arg("stats"),
        "dedupdav stats",
    );
    assert!(String::from_utf8_lossy(&stats.stdout).contains("users"));
    // It asked the running gateway, over HTTPS.
    served.wait_for_log("/api/v1/stats");
}

#[test]
fn plain_http_is_refused_on_the_tls_port_and_redirected_from_the_redirect_address() {
    let pki = Pki::new();
    let ca = pki.ca("ca");
    let leaf = pki.leaf("ca", "server");
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), &leaf);
    let port = served.https.trim_start_matches("https://localhost:");

    let plain = run(
        Command::new("curl").args([
            "-sS",
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:{port}/status.php"),
        ]),
        "curl",
    );
    let plain = String::from_utf8_lossy(&plain.stdout);
    assert!(plain.ends_with("\n400"), "{plain}");
    assert!(plain.contains("This port speaks HTTPS"), "{plain}");
    served.wait_for_log("plain HTTP sent to the HTTPS port");

    // A TLS record that is no ClientHello: closed, and logged.
    let mut garbage = TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    garbage
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0x04, 0xff, 0xff, 0xff, 0xff])
        .unwrap();
    assert!(closed_by_the_gateway(garbage));
    served.wait_for_log("TLS handshake failed");

    let redirect = format!(
        "http://localhost:{}",
        served.redirect.rsplit(':').next().unwrap()
    );
    let moved = run(
        Command::new("curl").args([
            "-sS",
            "-o",
            "/dev/null",
            "-X",
            "PUT",
            "-w",
            "%{http_code} %{redirect_url}",
            &format!("{redirect}/remote.php/webdav/a%20b.txt?x=1"),
        ]),
        "curl",
    );
    assert_eq!(
        String::from_utf8_lossy(&moved.stdout),
        format!("308 https://localhost:{port}/remote.php/webdav/a%20b.txt?x=1")
    );
    let followed = run(
        Command::new("curl")
            .args(["-sS", "-L", "--cacert", path_str(&ca)])
            .arg(format!("{redirect}/status.php")),
        "curl",
    );
    let followed = String::from_utf8_lossy(&followed.stdout);
    assert!(followed.contains("\"installed\":true"), "{followed}");
}

#[test]
fn a_certificate_that_does_not_load_stops_the_start_before_anything_is_created() {
    let pki = Pki::new();
    pki.ca("ca");
    let mismatched = Leaf {
        cert: pki.leaf("ca", "one").cert,
        key: pki.leaf("ca", "two").key,
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("dedupdav.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            path_str(&data),
            path_str(&mismatched.cert),
            path_str(&mismatched.key)
        ),
    )
    .unwrap();
    let out = dedupdav_command()
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .expect("dedupdav runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("[tls]") && stderr.contains("two.key") && stderr.contains("KeyMismatch"),
        "{stderr}"
    );
    assert!(!data.exists(), "no data directory, no key, no first admin");
}
