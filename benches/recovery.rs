//! Disaster-recovery figures: metadata bytes sealed upstream per 10,000
//! file changes, the time to seal a snapshot of an index of N files
//! (default 100,000; `RECOVERY_FILES`), and the time `restore` takes to
//! rebuild that index from the backend alone.
//!
//! The backend is the local object directory (real files, fsync'd by the
//! OS as it likes), so the figures are the gateway's own work; behind an
//! upstream add its round trips (about 120 piece PUTs per 100,000-file
//! snapshot). Files are recorded through the metadata interface with one
//! small chunk each (their objects are not written: the figures are about
//! metadata), from 32 concurrent writers, as many clients would.
//!
//! Run: `cargo bench --bench recovery` (release build).

use std::time::{Duration, Instant};

use dedupdav::app::App;
use dedupdav::config::{BackendConfig, Config, LocalConfig};
use dedupdav::crypto::ChunkId;
use dedupdav::jobs::metadata::MetadataJob;
use dedupdav::jobs::Job;
use dedupdav::meta::{split_path, FileCommit, ManifestEntry, Meta, NewUser, Owner};
use dedupdav::recovery::{restore, RestoreOptions};
use dedupdav::store::ContentStore;

const WRITERS: u64 = 32;
const FOLDERS: u64 = 100;
const CHANGES: u64 = 10_000;

fn file_commit(seed: u64) -> FileCommit {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&seed.to_le_bytes());
    id[8] = 0xa5;
    FileCommit {
        size: 4096,
        chunks: vec![ManifestEntry {
            id: ChunkId(id),
            len: 4096,
        }],
        uploaded: vec![(ChunkId(id), 4200)],
        mtime: None,
        checksums: Some("SHA1:da39a3ee5e6b4b0d3255bfef95601890afd80709".into()),
    }
}

fn path(folder: u64, file: u64) -> Vec<String> {
    let raw = format!("/folder-{folder:03}/document-{file:07}.txt");
    split_path(raw.as_bytes()).expect("a valid path")
}

/// Commits `count` files (from `start`) with `WRITERS` concurrent writers.
async fn write_files(meta: &Meta, owner: &Owner, start: u64, count: u64) {
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (meta, owner) = (meta.clone(), owner.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = start + w;
            while i < start + count {
                let p = path(i % FOLDERS, i);
                meta.commit_file(&owner, &p, &file_commit(i))
                    .await
                    .expect("commit");
                i += WRITERS;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
}

/// New versions of 5,000 files spread over every folder, and 5,000 new
/// files numbered from `new_from`.
async fn change_files(meta: &Meta, owner: &Owner, new_from: u64, salt: u64) {
    let files = new_from;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (meta, owner) = (meta.clone(), owner.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < CHANGES / 2 {
                let n = i * (files / (CHANGES / 2)).max(1);
                let p = path(n % FOLDERS, n);
                let commit = file_commit(n + 1_000_000_000 + salt);
                meta.commit_file(&owner, &p, &commit).await.expect("commit");
                i += WRITERS;
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer");
    }
    write_files(meta, owner, new_from, CHANGES / 2).await;
}

async fn snapshot(store: &ContentStore, work_dir: &std::path::Path, when: &str) {
    let t = Instant::now();
    let r = store
        .seal_snapshot(work_dir)
        .await
        .expect("snapshot")
        .expect("a snapshot");
    println!(
        "snapshot {} {when}: {} of {} pieces new, {} bytes sealed, in {}",
        r.generation,
        r.new_pieces,
        r.pieces,
        r.stored_bytes,
        secs(t.elapsed())
    );
}

/// Uploads every waiting journal row; answers the sealed bytes.
async fn upload_all(job: &mut MetadataJob) -> u64 {
    let sealed = |job: &MetadataJob| {
        job.counters()
            .iter()
            .find(|c| c.name == "metadata_bytes_uploaded_total")
            .map_or(0, |c| c.value)
    };
    let before = sealed(job);
    while job.upload_one().await.expect("upload").1 {}
    sealed(job) - before
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    let files: u64 = std::env::var("RECOVERY_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let work = tempfile::tempdir().expect("temp dir");
    let objects = work.path().join("objects");
    let config = |dir: &str| Config {
        data_dir: work.path().join(dir),
        master_key: Some("42".repeat(32)),
        backend: BackendConfig::Local(LocalConfig {
            path: Some(objects.clone()),
        }),
        ..Config::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = App::open(config("gateway")).expect("gateway");
    let (meta, store) = (app.meta.clone(), app.store.clone());
    runtime.block_on(async {
        let user = meta
            .add_user(NewUser {
                name: "bench".into(),
                password_hash: "x".into(),
                admin: false,
                quota: None,
            })
            .await
            .expect("user");
        let owner = Owner::from(&user);
        for f in 0..FOLDERS {
            let p = split_path(format!("/folder-{f:03}").as_bytes()).expect("path");
            meta.mkdir(&owner, &p).await.expect("mkdir");
        }
        let t = Instant::now();
        write_files(&meta, &owner, 0, files).await;
        println!("recorded {files} files in {}", secs(t.elapsed()));

        let mut job = MetadataJob::new(meta.clone(), store.clone(), Duration::from_secs(10));
        let t = Instant::now();
        let bytes = upload_all(&mut job).await;
        println!(
            "journal of the {files} files sealed upstream: {bytes} bytes ({} per file) in {}",
            bytes / files.max(1),
            secs(t.elapsed())
        );

        let t = Instant::now();
        let first = store
            .seal_snapshot(&app.config.data_dir)
            .await
            .expect("snapshot")
            .expect("a snapshot");
        println!(
            "snapshot of {files} files: {} rows, {} dump bytes, {} pieces, {} bytes sealed, in {}",
            first.rows,
            first.dump_bytes,
            first.pieces,
            first.stored_bytes,
            secs(t.elapsed())
        );

        // 10,000 changes: half new versions of existing files, half new files.
        let t = Instant::now();
        change_files(&meta, &owner, files, 0).await;
        let took = t.elapsed();
        let bytes = upload_all(&mut job).await;
        println!(
            "{CHANGES} file changes (5,000 new versions spread over every folder, 5,000 new files) in {}: {bytes} metadata bytes sealed upstream ({} per change)",
            secs(took),
            bytes / CHANGES
        );
        snapshot(&store, &app.config.data_dir, "after those changes").await;

        // A few changes in one place, as one user's edits are.
        for n in 0..10 {
            let p = path(7, 7 + n * FOLDERS);
            meta.commit_file(&owner, &p, &file_commit(n + 2_000_000_000))
                .await
                .expect("commit");
        }
        upload_all(&mut job).await;
        snapshot(&store, &app.config.data_dir, "after 10 new versions in one folder").await;

        // Changes after the newest snapshot: a restore replays them.
        change_files(&meta, &owner, files + CHANGES / 2, 3_000_000_000).await;
        upload_all(&mut job).await;
    });
    drop((meta, store, app));

    let restored = config("restored");
    std::fs::create_dir_all(&restored.data_dir).expect("data dir");
    let keys = dedupdav::app::existing_keys(&restored).expect("keys");
    let backend = dedupdav::backend::open(&restored.backend, &restored.data_dir).expect("backend");
    let t = Instant::now();
    let report = runtime
        .block_on(restore(
            &restored,
            keys,
            backend,
            RestoreOptions::default(),
            &|_, _| {},
        ))
        .expect("restore");
    println!(
        "restore of {} files: snapshot {:?} ({} rows) + {} segments ({} transactions), new snapshot sealed, in {}",
        files + CHANGES,
        report.snapshot,
        report.snapshot_rows,
        report.segments,
        report.transactions,
        secs(t.elapsed())
    );
    let app = App::open(restored).expect("restored index opens");
    let stats = runtime.block_on(app.meta.stats()).expect("stats");
    assert_eq!(stats.files, files + CHANGES, "every file restored");
}
