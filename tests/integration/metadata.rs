//! The metadata journal sealed upstream: after a workload, running the
//! upload job until the journal is empty leaves a chain of segments under
//! `meta/` that reveals no name, survives an orphan sweep, and decodes end
//! to end into every captured row, in order.

use std::time::Duration;

use crate::common::gateway::files_below;
use crate::common::gateway::TestGateway;
use dedupdav::jobs::metadata::MetadataJob;
use dedupdav::meta::journal::{ChainCheck, JournalRow};

on_both_backends!(the_journal_reaches_the_backend_sealed_and_chained);

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
