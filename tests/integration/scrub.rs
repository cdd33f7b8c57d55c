//! The scrub: a pass reads every object back and names a corrupted (one
//! flipped byte) and a missing object, on the local directory and behind a
//! real WebDAV upstream, while the damaged file itself is never served; a
//! pass stopped by a restart goes on where it stopped; under `dedupdav
//! serve` the finding reaches the log and `/metrics`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::gateway::{random_bytes, TestGateway};
use dedupdav::backend::local::LocalDirStore;
use dedupdav::config::ScrubConfig;
use dedupdav::crypto::{ChunkId, MasterKey};
use dedupdav::files::check::{check, render_json, render_text, CheckOptions};
use dedupdav::jobs::scrub::ScrubJob;
use dedupdav::jobs::{Batch, Job};
use dedupdav::meta::{split_path, FileCommit, Meta, NewUser, Owner, ScrubProblem};
use dedupdav::store::{ChunkSizes, ContentStore, StoreSettings};

const MIB: usize = 1 << 20;

on_both_backends!(with crate::common::small_chunks; a_pass_names_a_corrupt_and_a_missing_object);

/// A scrub every hour, unthrottled.
fn hourly() -> ScrubConfig {
    ScrubConfig {
        interval_hours: 1,
        interval_seconds: None,
        bytes_per_second: 0,
        tranquility: 0,
    }
}

/// Runs one whole scrub pass, 4 objects per batch.
fn scrub_pass(gw: &TestGateway) {
    let config = hourly();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let job = ScrubJob::from_config(gw.store.clone(), gw.meta.clone(), &config).await;
        let mut job = job.expect("scrub state").expect("a scrub").with_batch(4);
        while job.step().await.expect("scrub batch").more {}
    });
}

/// The object file of `name` below the backend's objects folder.
fn object_file(gw: &TestGateway, name: &str) -> PathBuf {
    gw.objects_dir().join(&name[..2]).join(name)
}

fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x08;
    std::fs::write(path, bytes).unwrap();
}

fn a_pass_names_a_corrupt_and_a_missing_object(gw: TestGateway) {
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let (a, b) = (random_bytes(MIB, 1), random_bytes(MIB, 2));
    assert_eq!(alice.put("a.bin", a.clone()).status(), 201);
    assert_eq!(alice.put("b.bin", b.clone()).status(), 201);
    let manifest = |path: &str| {
        let owner = common::wait(gw.meta.user("alice")).unwrap().unwrap();
        let owner = dedupdav::meta::Owner::from(&owner);
        let path = dedupdav::meta::split_path(path.as_bytes()).unwrap();
        common::wait(gw.meta.open_file(&owner, &path)).unwrap().1
    };
    let (corrupt, missing) = (manifest("a.bin")[1].id, manifest("b.bin")[2].id);
    let name_of = |id| gw.store.object_name(&id).to_string();
    flip_a_byte(&object_file(&gw, &name_of(corrupt)));
    std::fs::remove_file(object_file(&gw, &name_of(missing))).unwrap();

    scrub_pass(&gw);
    let findings = common::wait(gw.meta.scrub_findings(100)).unwrap();
    let mut got: Vec<_> = findings.iter().map(|f| (f.id, f.problem)).collect();
    got.sort_by_key(|(id, _)| *id);
    let mut want = vec![
        (corrupt.0, ScrubProblem::Corrupt),
        (missing.0, ScrubProblem::Missing),
    ];
    want.sort_by_key(|(id, _)| *id);
    assert_eq!(got, want, "{findings:?}");
    let state = common::wait(gw.meta.scrub_state()).unwrap();
    assert_eq!(state.last_pass_checked, gw.stats().chunks);
    // `check` reports what the scrub found, even without reading objects.
    let options = CheckOptions::default();
    let report = common::wait(check(&gw.meta, &gw.store, options, |_| {}, |_| {})).unwrap();
    assert!(!report.clean);
    let mut noted: Vec<_> = report
        .scrub
        .findings
        .iter()
        .map(|f| f.problem.clone())
        .collect();
    noted.sort();
    assert_eq!(noted, ["corrupt", "missing"]);
    let text = render_text(&report);
    assert!(
        text.contains(&format!("the scrub found object {}", name_of(corrupt))),
        "{text}"
    );
    assert_eq!(
        render_json(&report)["scrub"]["findings"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Neither file is ever served with wrong bytes.
    assert_ne!(alice.get_bytes("a.bin").ok(), Some(a));
    assert_ne!(alice.get_bytes("b.bin").ok(), Some(b));

    // Once the files are gone, the next pass keeps no finding.
    for f in ["a.bin", "b.bin"] {
        let res = alice.request("DELETE", &alice.url(f)).send().unwrap();
        assert_eq!(res.status(), 204);
    }
    gw.collect_garbage(Duration::ZERO);
    scrub_pass(&gw);
    assert!(common::wait(gw.meta.scrub_findings(100))
        .unwrap()
        .is_empty());
}

/// A content store over the index and objects in `dir`, opened anew each
/// time (as after a restart).
fn open_store(dir: &Path) -> (Arc<ContentStore>, Meta) {
    let meta = Meta::open_redb(&dir.join("index.redb"), Default::default()).unwrap();
    let backend = Arc::new(LocalDirStore::open(&dir.join("data")).unwrap());
    let keys = Arc::new(MasterKey::from_bytes([12; 32]).derive());
    let settings = StoreSettings {
        chunk_sizes: ChunkSizes {
            min: 4 << 10,
            avg: 16 << 10,
            max: 64 << 10,
        },
        // Objects of their own: the case damages single objects.
        packs: dedupdav::store::PackSettings {
            below: 0,
            ..Default::default()
        },
        ..StoreSettings::default()
    };
    (
        ContentStore::new(keys, backend, meta.clone(), settings),
        meta,
    )
}

/// Stores `data` as the file `f` of a new user.
async fn store_file(store: &Arc<ContentStore>, meta: &Meta, data: &[u8]) {
    let new = NewUser {
        name: "ann".into(),
        password_hash: "x".into(),
        admin: false,
        quota: None,
    };
    let owner = Owner::from(&meta.add_user(new).await.unwrap());
    let mut up = store.begin_upload(owner.id, None);
    up.write(data).await.unwrap();
    let path = split_path(b"f").unwrap();
    let done = up.finish().await.unwrap();
    done.record_with(|c| async move {
        let commit = FileCommit {
            size: c.size,
            chunks: c.manifest,
            uploaded: c.uploaded,
            mtime: None,
            checksums: None,
        };
        meta.commit_file(&owner, &path, &commit).await
    })
    .await
    .unwrap();
}

/// A job counter's value by name.
fn counter(job: &ScrubJob, name: &str) -> u64 {
    let counters = job.counters();
    counters.iter().find(|c| c.name == name).unwrap().value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_the_pass_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, meta) = open_store(dir.path());
    store_file(&store, &meta, &random_bytes(400 << 10, 5)).await;
    // Chunk ids in the order the scrub reads them.
    let records = meta.chunks_page(None, 1000).await.unwrap();
    let all: Vec<[u8; 32]> = records.iter().map(|(id, _)| *id).collect();
    assert!(all.len() >= 10, "{} chunks", all.len());
    // One object damaged in the first batch, one missing after it.
    let (corrupt, missing) = (all[1], all[all.len() - 2]);
    let file = |id| {
        let name = store.object_name(&ChunkId(id)).relative_path();
        dir.path().join("data").join(name)
    };
    flip_a_byte(&file(corrupt));
    std::fs::remove_file(file(missing)).unwrap();

    let job = ScrubJob::from_config(store, meta, &hourly()).await;
    let mut job = job.unwrap().unwrap().with_batch(3);
    assert_eq!(
        job.first_delay(),
        Duration::from_secs(60),
        "the first pass starts soon"
    );
    assert_eq!(job.step().await.unwrap(), Batch::more(3));
    assert_eq!(counter(&job, "scrub_objects_corrupt_total"), 1);
    drop(job);

    // Restart: index and store opened anew from the same files.
    let (store, meta) = open_store(dir.path());
    let state = meta.scrub_state().await.unwrap();
    assert_eq!((state.position, state.checked), (Some(all[2]), 3));
    let job = ScrubJob::from_config(store.clone(), meta.clone(), &hourly()).await;
    let mut job = job.unwrap().unwrap().with_batch(3);
    assert_eq!(
        job.first_delay(),
        Duration::from_secs(60),
        "the pass goes on soon"
    );
    assert_eq!(
        counter(&job, "scrub_findings"),
        1,
        "kept across the restart"
    );
    let mut steps = 0;
    while job.step().await.unwrap().more {
        steps += 1;
        assert!(steps < 100);
    }
    // It went on after the third object instead of starting over.
    let checked = counter(&job, "scrub_objects_checked_total");
    assert_eq!(checked, all.len() as u64 - 3);
    assert_eq!(counter(&job, "scrub_objects_corrupt_total"), 0);
    assert_eq!(counter(&job, "scrub_objects_missing_total"), 1);
    let state = meta.scrub_state().await.unwrap();
    assert!(!state.in_pass());
    assert_eq!(state.last_pass_checked, all.len() as u64);

    let findings = meta.scrub_findings(10).await.unwrap();
    let mut want = [
        (corrupt, ScrubProblem::Corrupt),
        (missing, ScrubProblem::Missing),
    ];
    want.sort_by_key(|(id, _)| *id);
    let got: Vec<_> = findings.iter().map(|f| (f.id, f.problem)).collect();
    assert_eq!(got, want);
    assert!(findings.iter().any(|f| f.detail.contains("authentication")));
    assert_eq!(counter(&job, "scrub_findings"), 2);
    // A restart after the pass waits out the interval.
    let job = ScrubJob::from_config(store, meta, &hourly()).await;
    let delay = job.unwrap().unwrap().first_delay();
    assert!(delay > Duration::from_secs(3500), "{delay:?}");
}

/// The value of the series `name` in a Prometheus text reply.
fn series(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

#[test]
fn under_serve_a_corrupt_object_reaches_the_log_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::dedupdav_command()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("DEDUPDAV_SCRUB__INTERVAL_SECONDS", "1")
        .env("DEDUPDAV_GC__INTERVAL_MINUTES", "0")
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = common::collect_stderr(&mut child);
    let (password, base) = common::read_first_start(&mut child);
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let put = http
        .put(format!("{base}/remote.php/webdav/one.bin"))
        .basic_auth("admin", Some(&password))
        .body(random_bytes(100_000, 9))
        .send()
        .unwrap();
    assert_eq!(put.status(), 201);
    let objects = dir.path().join("dedupdav-data/objects");
    let files = common::gateway::files_below(&objects);
    assert_eq!(files.len(), 1, "one chunk");
    flip_a_byte(&files[0]);
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();

    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let text = http
            .get(format!("{base}/metrics"))
            .basic_auth("admin", Some(&password))
            .send()
            .unwrap()
            .text()
            .unwrap();
        if series(&text, "dedupdav_scrub_objects_corrupt_total") == Some(1) {
            break text;
        }
        assert!(Instant::now() < deadline, "no finding in time:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(series(&metrics, "dedupdav_scrub_findings"), Some(1));
    assert!(series(&metrics, "dedupdav_scrub_objects_checked_total").unwrap() >= 1);
    let logged = log.lock().unwrap().clone();
    assert!(
        logged
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("object corrupt") && l.contains(&name)),
        "{logged}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
