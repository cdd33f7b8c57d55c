//! Background jobs under `dedupdav serve`: with a short GC period the
//! collector deletes a deleted file's chunks by itself (no `dedupdav gc`),
//! `/metrics` shows every job's counters, and SIGTERM stops the jobs and
//! the server cleanly.

use crate::common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::gateway::{files_below, random_bytes};
use reqwest::blocking::Client;

fn object_files(dir: &Path) -> usize {
    files_below(dir).len()
}

/// `serve` with a GC every second and no grace; returns the child, the
/// admin password, the base URL and the log collected so far.
fn serve(dir: &Path) -> (Child, String, String, Arc<Mutex<String>>) {
    let mut child = common::dedupdav_command()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("DEDUPDAV_GC__GRACE_HOURS", "0")
        .env("DEDUPDAV_GC__INTERVAL_SECONDS", "1")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = common::collect_stderr(&mut child);
    let (password, addr) = common::read_first_start(&mut child);
    (child, password, addr, log)
}

/// The value of the series `name` in a Prometheus text reply.
fn series(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

#[test]
fn the_collector_runs_under_serve_and_metrics_show_the_jobs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, password, base, log) = serve(dir.path());
    let objects = dir.path().join("dedupdav-data/objects");
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let file = format!("{base}/remote.php/webdav/gone.bin");
    let before = object_files(&objects);
    let put = http
        .put(&file)
        .basic_auth("admin", Some(&password))
        .body(random_bytes(3 << 20, 7))
        .send()
        .unwrap();
    assert_eq!(put.status(), 201);
    let stored = object_files(&objects);
    assert!(stored > before, "the file's chunks are stored");
    let del = http
        .delete(&file)
        .basic_auth("admin", Some(&password))
        .send()
        .unwrap();
    assert_eq!(del.status(), 204);

    // No `dedupdav gc`: the gc job finds the unreferenced chunks itself.
    let mut left = stored;
    for _ in 0..300 {
        left = object_files(&objects);
        if left <= before {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(left <= before, "{left} objects left of {stored}");

    let metrics = |who: &str, pw: &str| {
        http.get(format!("{base}/metrics"))
            .basic_auth(who, Some(pw))
            .send()
            .unwrap()
    };
    // The objects go within the run; it is counted once the run ends.
    let gc_series =
        |text: &str, name: &str| series(text, &format!("dedupdav_{name}{{job=\"gc\"}}"));
    let mut text = String::new();
    for _ in 0..100 {
        let res = metrics("admin", &password);
        assert_eq!(res.status(), 200);
        text = res.text().unwrap();
        if gc_series(&text, "job_runs_total").is_some_and(|n| n >= 1) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let gc = |name: &str| gc_series(&text, name);
    assert!(gc("job_runs_total").is_some_and(|n| n >= 1), "{text}");
    assert!(gc("job_items_total").is_some_and(|n| n >= 1), "{text}");
    assert_eq!(gc("job_errors_total"), Some(0), "{text}");
    assert!(gc("job_last_success_timestamp_seconds").is_some_and(|t| t > 1_600_000_000));
    assert!(gc("job_running").is_some());
    // Expiry runs once at start, then every ten minutes.
    let expire = series(&text, "dedupdav_job_runs_total{job=\"expire_uploads\"}");
    assert!(expire.is_some_and(|n| n >= 1), "{text}");

    stop(&mut child);
    let log = log.lock().unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("job run") && l.contains("gc")),
        "a run that found work is logged: {log}"
    );
    assert!(log.contains("stopped"), "{log}");
}

/// SIGTERM, then wait (bounded) for a clean exit.
fn stop(child: &mut Child) {
    let term = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    panic!("serve did not stop within 30 s of SIGTERM");
}
