//! Shared harnesses for integration tests: the gateway in-process, a real
//! Apache WebDAV upstream, and a fault-injecting proxy to put in front of it.

/// Runs each scenario (a `fn(TestGateway)` in the calling file) on the embedded defaults and against a real Apache
/// WebDAV upstream.
macro_rules! on_both_backends {
    (with $tweak:path; $($name:ident),* $(,)?) => {
        mod local {
            $(#[test] fn $name() { super::$name(super::TestGateway::start_with($tweak)) })*
        }
        mod upstream {
            $(#[test] fn $name() {
                super::$name(super::TestGateway::start_on_apache_with($tweak))
            })*
        }
    };
    ($($name:ident),*) => {
        mod local {
            $(#[test] fn $name() { super::$name(super::TestGateway::start()) })*
        }
        mod upstream {
            $(#[test] fn $name() { super::$name(super::TestGateway::start_on_apache()) })*
        }
    };
}

pub mod apache;
pub mod faultproxy;
pub mod gateway;
pub mod load;

/// Runs one metadata operation from a test that is not async.
pub fn wait<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// Small chunks, so a few MiB make many objects (each an object of its
/// own: these cases are about objects, not packs).
pub fn small_chunks(c: &mut dedupdav::config::Config) {
    c.chunking.min_size = 16 << 10;
    c.chunking.avg_size = 64 << 10;
    c.chunking.max_size = 256 << 10;
    c.uploads.pack_below = 0;
}

/// The `dedupdav` binary, without any `DEDUPDAV_*` setting of the test
/// environment leaking into it.
pub fn dedupdav_command() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dedupdav"));
    for (k, _) in std::env::vars() {
        if k.starts_with("DEDUPDAV_") {
            c.env_remove(k);
        }
    }
    c
}

/// Reads what a first `serve` prints on stdout — the generated admin
/// password and the address it listens on — and keeps draining its output
/// afterwards so the server never blocks on a full pipe.
/// Collects a child's standard error, line by line, into a shared log.
pub fn collect_stderr(child: &mut std::process::Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    use std::io::{BufRead, BufReader};
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let Some(stderr) = child.stderr.take() else {
        return log;
    };
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    log
}

pub fn read_first_start(child: &mut std::process::Child) -> (String, String) {
    use std::io::{BufRead, BufReader};
    let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut password, mut addr) = (None, None);
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(60)) {
        if let Some(p) = line.trim().strip_prefix("password: ") {
            password = Some(p.to_string());
        }
        if let Some(a) = line.strip_prefix("dedupdav listening on ") {
            addr = Some(a.trim().trim_end_matches('/').to_string());
            break;
        }
    }
    (
        password.expect("admin password printed"),
        addr.expect("listening address printed"),
    )
}

/// Decodes RFC 4648 base32 (upper case, no padding), as authenticator
/// apps read a TOTP secret.
pub fn base32_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in text.trim().bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => panic!("not base32: {c}"),
        };
        buf = (buf << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    out
}

/// Runs the `dedupdav` binary with `args` in `dir`, feeding `stdin`;
/// answers (success, stdout and stderr together).
pub fn run_cli(dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = dedupdav_command()
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dedupdav runs");
    if let Some(s) = stdin {
        if let Some(mut input) = child.stdin.take() {
            input.write_all(s.as_bytes()).expect("stdin");
        }
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("dedupdav ends");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
