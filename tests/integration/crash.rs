//! Crash safety (invariant 2): the gateway process is killed (SIGKILL) at
//! arbitrary moments while clients upload; after a restart every file is
//! exactly one version a client sent — never a mix — and every upload that
//! was acknowledged is there. With `metadata.upload_interval_secs = 0`
//! that holds even when the disk is lost with the process: after each
//! kill the index is deleted and `dedupdav restore` rebuilds it from the
//! backend alone.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::gateway::random_bytes;

fn dedupdav(dir: &std::path::Path) -> Command {
    let mut c = common::dedupdav_command();
    c.current_dir(dir);
    c
}

fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut child = dedupdav(dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        if let Some(a) = line.strip_prefix("dedupdav listening on ") {
            return (child, a.trim().trim_end_matches('/').to_string());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the gateway did not start");
}

fn url(base: &str, name: &str) -> String {
    format!("{base}/remote.php/dav/files/alice/{name}")
}

/// Three writers of files from 200 KB to 3.2 MB (small chunks in packs,
/// large ones as objects of their own).
const MIXED: Workload = Workload {
    writers: 3,
    small: false,
};

/// 32 writers of small files (1 to 20 KB): every file is one chunk in a
/// pack, and packs are shared by concurrent writers.
const SMALL_FILES: Workload = Workload {
    writers: 32,
    small: true,
};

/// Who uploads during a round.
#[derive(Clone, Copy)]
struct Workload {
    writers: u64,
    small: bool,
}

impl Workload {
    fn len(&self, round: u64, w: u64, i: u64) -> usize {
        let step = (round * 7 + i * 13 + w) % 11;
        if self.small {
            1_000 + step as usize * 1_900
        } else {
            200_000 + step as usize * 300_000
        }
    }
}

#[test]
fn killed_at_any_moment_no_acknowledged_write_is_lost_and_no_file_is_mixed() {
    kill_rounds(6, MIXED, &[], |_| {});
}

/// Strict mode with packs: a pack is acknowledged to all its writers at
/// once, only after it is upstream and recorded.
#[test]
fn killed_among_32_small_file_writers_no_packed_write_is_lost() {
    kill_rounds(8, SMALL_FILES, &[], |_| {});
}

/// Zero lag: every acknowledged write is upstream before its answer, so
/// losing the index with the process loses none of them.
#[test]
fn with_zero_lag_no_acknowledged_write_is_lost_with_the_disk() {
    let env = [
        ("DEDUPDAV_METADATA__UPLOAD_INTERVAL_SECS", "0"),
        ("DEDUPDAV_METADATA__SNAPSHOT_INTERVAL_MINUTES", "1"),
    ];
    kill_rounds(4, MIXED, &env, |dir| {
        std::fs::remove_file(dir.join("dedupdav-data/index.redb")).expect("index deleted");
        let out = dedupdav(dir)
            .args(["restore"])
            .envs(env.iter().copied())
            .output()
            .expect("restore runs");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "restore failed:\n{stdout}{stderr}");
        assert!(stdout.contains("result: clean"), "{stdout}");
    });
}

/// Rounds of: start, check what survived, upload from the writers of `load`, kill
/// the process at a moment that moves each round, then `after_kill`.
fn kill_rounds(
    rounds: u64,
    load: Workload,
    env: &[(&str, &str)],
    after_kill: impl Fn(&std::path::Path),
) {
    let dir = tempfile::tempdir().unwrap();
    let mut add = dedupdav(dir.path())
        .args(["user", "add", "alice", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin.take().unwrap().write_all(b"pw").unwrap();
    assert!(add.wait().unwrap().success());

    // Every version ever sent, by file name; and what was acknowledged last.
    let sent: Arc<Mutex<HashMap<String, Vec<Vec<u8>>>>> = Arc::default();
    let acked: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();

    for round in 0..rounds {
        let (mut child, base) = start(dir.path(), env);
        // Check what survived the previous crash.
        verify(&http, &base, &sent.lock().unwrap(), &acked.lock().unwrap());

        let writers: Vec<_> = (0..load.writers)
            .map(|w| {
                let (http, base, sent, acked) =
                    (http.clone(), base.clone(), sent.clone(), acked.clone());
                std::thread::spawn(move || {
                    for i in 0..50u64 {
                        let name = format!("w{w}-f{}.bin", i % 3);
                        let len = load.len(round, w, i);
                        let data = random_bytes(len, round * 10_000 + w * 100 + i);
                        sent.lock()
                            .unwrap()
                            .entry(name.clone())
                            .or_default()
                            .push(data.clone());
                        let res = http
                            .put(url(&base, &name))
                            .basic_auth("alice", Some("pw"))
                            .body(data.clone())
                            .send();
                        match res {
                            Ok(r) if r.status().is_success() => {
                                acked.lock().unwrap().insert(name, data);
                            }
                            _ => return,
                        }
                    }
                })
            })
            .collect();
        let jitter = rand::random::<u64>() % 200;
        std::thread::sleep(Duration::from_millis(150 + round * 130 + jitter));
        child.kill().unwrap();
        child.wait().unwrap();
        for w in writers {
            w.join().unwrap();
        }
        after_kill(dir.path());
    }
    let (mut child, base) = start(dir.path(), env);
    verify(&http, &base, &sent.lock().unwrap(), &acked.lock().unwrap());
    assert!(
        acked.lock().unwrap().len() >= 3,
        "some uploads were acknowledged"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Every acknowledged file exists and holds one of the versions sent for it
/// (the acknowledged one or a later one whose answer was lost in the crash).
fn verify(
    http: &reqwest::blocking::Client,
    base: &str,
    sent: &HashMap<String, Vec<Vec<u8>>>,
    acked: &HashMap<String, Vec<u8>>,
) {
    for (name, versions) in sent {
        let res = http
            .get(url(base, name))
            .basic_auth("alice", Some("pw"))
            .send()
            .unwrap();
        if res.status() == 404 {
            assert!(!acked.contains_key(name), "acknowledged {name} was lost");
            continue;
        }
        assert_eq!(res.status(), 200, "{name}");
        let body = res.bytes().unwrap().to_vec();
        let idx = versions.iter().rposition(|v| *v == body);
        assert!(
            idx.is_some(),
            "{name} holds bytes no client sent ({} bytes)",
            body.len()
        );
        if let Some(a) = acked.get(name) {
            let acked_idx = versions.iter().rposition(|v| v == a).unwrap();
            assert!(
                idx.unwrap() >= acked_idx,
                "{name} went back to a version older than the acknowledged one"
            );
        }
    }
}
