//! The metadata journal sealed upstream: after a workload, running the
//! upload job until the journal is empty leaves a chain of segments under
//! `meta/` that reveals no name, survives an orphan sweep, and decodes end
//! to end into every captured row, in order.
//!
//! Zero-lag mode (`upload_interval_secs = 0`): a PUT answered 201 has its
//! change in a sealed segment in the backend already, and parallel PUTs
//! share segments (group commit).

use std::time::Duration;

use crate::common::gateway::files_below;
use crate::common::gateway::TestGateway;
use dedupdav::config::MetadataConfig;
use dedupdav::jobs::metadata::{MetadataJob, NAME};
use dedupdav::jobs::{Runner, RunnerConfig};
use dedupdav::meta::journal::{ChainCheck, JournalRow};

on_both_backends!(
    the_journal_reaches_the_backend_sealed_and_chained,
    zero_lag_a_put_answered_is_upstream,
    zero_lag_parallel_puts_share_segments
);

const USER: &str = "marguerite-unique-user";
const FILE: &str = "quarterly-confidential-report.txt";
const FOLDER: &str = "holiday-folder-name";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn workload(gw: &TestGateway) {
    gw.add_user(USER, "pw");
    let dav = gw.client(USER, "pw");
    assert_eq!(dav.mkcol(FOLDER).status(), 201);
    let path = format!("{FOLDER}/{FILE}");
    assert_eq!(dav.put(&path, b"first version".to_vec()).status(), 201);
    assert_eq!(dav.put(&path, b"second version".to_vec()).status(), 204);
    assert_eq!(dav.put("scratch.txt", b"gone soon".to_vec()).status(), 201);
    let url = dav.url("scratch.txt");
    assert_eq!(dav.request("DELETE", &url).send().unwrap().status(), 204);
}

fn the_journal_reaches_the_backend_sealed_and_chained(gw: TestGateway) {
    workload(&gw);
    let rt = runtime();
    let captured: Vec<JournalRow> = rt.block_on(gw.meta.journal_after(0, 1 << 20)).unwrap().rows;
    assert!(captured.len() > 20, "{} rows", captured.len());

    let mut job = MetadataJob::new(gw.meta.clone(), gw.store.clone(), Duration::from_secs(10));
    let mut segments = 0;
    loop {
        let (rows, more) = rt.block_on(job.upload_one()).expect("upload");
        segments += u64::from(rows > 0);
        if !more {
            break;
        }
    }
    let left = rt.block_on(gw.meta.journal_after(0, 10)).unwrap();
    assert!(
        left.rows.is_empty() && left.waiting == 0,
        "the journal is empty"
    );

    // Upstream, outside objects/, and an orphan sweep with no grace keeps them.
    rt.block_on(gw.store.sweep_orphans(Duration::ZERO, |_| {}))
        .expect("sweep");
    let listed = rt.block_on(gw.store.metadata().names()).unwrap();
    assert_eq!(listed.len() as u64, segments);
    let files = files_below(&gw.objects_root.join("meta"));
    assert_eq!(files.len() as u64, segments);

    // Nothing readable: no user, file or folder name in any object.
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for secret in [USER, FILE, FOLDER, "second version"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} shows {secret:?}",
                f.display()
            );
        }
    }

    // The chain decodes from its start into every captured row, in order.
    let mut check = ChainCheck::default();
    let mut decoded = Vec::new();
    loop {
        let next = check.head().last_seq + 1;
        let Some(plain) = rt.block_on(gw.store.metadata().read_segment(next)).unwrap() else {
            break;
        };
        decoded.extend(check.accept(&plain).expect("a sound chain").rows);
    }
    assert_eq!(decoded, captured);
    assert!(decoded
        .iter()
        .any(|r| r.key.windows(FILE.len()).any(|w| w == FILE.as_bytes())));
}

/// The metadata job in zero-lag mode, as `serve` starts it, on `rt`.
fn zero_lag_runner(gw: &TestGateway, rt: &tokio::runtime::Runtime) -> Runner {
    let config = MetadataConfig {
        upload_interval_secs: 0,
        snapshot_interval_minutes: 0,
    };
    let mut runner = Runner::new(RunnerConfig::default());
    let _in_rt = rt.enter();
    runner.spawn(MetadataJob::from_config(
        gw.meta.clone(),
        gw.store.clone(),
        &config,
    ));
    runner
}

/// Every row of the chain in the backend, decoded from its start.
fn rows_upstream(gw: &TestGateway, rt: &tokio::runtime::Runtime) -> Vec<JournalRow> {
    let mut check = ChainCheck::default();
    let mut decoded = Vec::new();
    loop {
        let next = check.head().last_seq + 1;
        let Some(plain) = rt.block_on(gw.store.metadata().read_segment(next)).unwrap() else {
            return decoded;
        };
        decoded.extend(check.accept(&plain).expect("a sound chain").rows);
    }
}

fn segments_uploaded(runner: &Runner) -> u64 {
    let state = runner.status().get(NAME).expect("the job's status");
    state
        .counters
        .iter()
        .find(|c| c.name == "metadata_segments_uploaded_total")
        .expect("the segment counter")
        .value
}

fn zero_lag_a_put_answered_is_upstream(gw: TestGateway) {
    let rt = runtime();
    let runner = zero_lag_runner(&gw, &rt);
    gw.add_user(USER, "pw");
    let dav = gw.client(USER, "pw");
    assert_eq!(dav.put(FILE, b"acknowledged".to_vec()).status(), 201);

    // Right after the 201, nothing waits in the journal …
    let left = rt.block_on(gw.meta.journal_after(0, 10)).unwrap();
    assert!(
        left.rows.is_empty() && left.waiting == 0,
        "{} rows wait",
        left.waiting
    );
    // … and the backend's chain holds the change, up to the last commit.
    let upstream = rows_upstream(&gw, &rt);
    assert!(upstream
        .iter()
        .any(|r| r.key.windows(FILE.len()).any(|w| w == FILE.as_bytes())));
    let last = upstream.last().expect("rows upstream").seq;
    assert_eq!(last, rt.block_on(gw.meta.journal_head()).unwrap().last_seq);
    assert!(last >= gw.meta.committed_seq());
    assert!(segments_uploaded(&runner) >= 1);
    assert!(rt.block_on(runner.shutdown()).is_empty());
}

fn zero_lag_parallel_puts_share_segments(gw: TestGateway) {
    const PUTS: u64 = 32;
    let rt = runtime();
    let runner = zero_lag_runner(&gw, &rt);
    gw.add_user(USER, "pw");
    let before = segments_uploaded(&runner);
    let barrier = std::sync::Barrier::new(PUTS as usize);
    std::thread::scope(|s| {
        for i in 0..PUTS {
            let (dav, barrier) = (gw.client(USER, "pw"), &barrier);
            s.spawn(move || {
                barrier.wait();
                let put = dav.put(&format!("f{i}.txt"), format!("file {i}").into_bytes());
                assert_eq!(put.status(), 201, "PUT {i}");
            });
        }
    });
    let segments = segments_uploaded(&runner) - before;
    let left = rt.block_on(gw.meta.journal_after(0, 10)).unwrap();
    assert_eq!(left.waiting, 0, "every acknowledged change is upstream");
    let upstream = rows_upstream(&gw, &rt);
    for i in 0..PUTS {
        let name = format!("f{i}.txt");
        assert!(
            upstream
                .iter()
                .any(|r| r.key.windows(name.len()).any(|w| w == name.as_bytes())),
            "{name} upstream"
        );
    }
    // Commits waiting together rode in shared segments.
    assert!(segments < PUTS, "{segments} segments for {PUTS} PUTs");
    eprintln!("zero lag: {PUTS} parallel PUTs, {segments} segments");
    assert!(rt.block_on(runner.shutdown()).is_empty());
}
