//! The orphan sweep: objects no record names (left by a crash between the
//! collector dropping records and deleting objects, or put by something
//! else) go once older than the grace period, young ones stay, live files
//! are untouched, and uploads of the same content racing the sweep never
//! lose an object (invariant 3). `dedupdav gc --orphans` runs it from the
//! command line.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::common::gateway::{random_bytes, upload_in_background, TestGateway};
use crate::common::{self, wait};
use dedupdav::crypto::ObjectName;
use dedupdav::store::SweepReport;

const MIB: usize = 1 << 20;
const DAY: Duration = Duration::from_secs(86_400);

on_both_backends!(
    with crate::common::small_chunks;
    old_orphans_go_young_ones_stay_and_files_are_untouched,
    uploads_racing_the_sweep_never_lose_an_object
);

fn sweep(gw: &TestGateway, grace: Duration) -> SweepReport {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(gw.store.sweep_orphans(grace, |_| {}))
        .expect("orphan sweep")
}

/// Drops the records of every unreferenced chunk without deleting their
/// objects: what a crash between the two steps of a collection leaves.
fn crash_mid_collection(gw: &TestGateway) -> usize {
    let unreferenced: Vec<[u8; 32]> = wait(gw.meta.chunks_page(None, 100_000))
        .unwrap()
        .into_iter()
        .filter(|(_, c)| c.refs == 0)
        .map(|(id, _)| id)
        .collect();
    let dropped = wait(gw.meta.forget_chunks(&unreferenced, u64::MAX / 2)).unwrap();
    assert_eq!(dropped.len(), unreferenced.len());
    dropped.len()
}

fn age(path: &Path, by: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - by).unwrap();
}

fn delete(gw: &TestGateway, user: &str, path: &str) {
    let dav = gw.client(user, "pw");
    let res = dav.request("DELETE", &dav.url(path)).send().unwrap();
    assert_eq!(res.status(), 204, "DELETE {path}");
}

fn old_orphans_go_young_ones_stay_and_files_are_untouched(gw: TestGateway) {
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let kept = random_bytes(2 * MIB, 1);
    assert_eq!(alice.put("kept.bin", kept.clone()).status(), 201);
    let live: Vec<PathBuf> = gw.object_files();
    assert_eq!(
        alice.put("gone.bin", random_bytes(2 * MIB, 2)).status(),
        201
    );
    delete(&gw, "alice", "gone.bin");
    let orphans = crash_mid_collection(&gw);
    assert!(orphans > 5, "{orphans} orphans");
    // The collector cannot see them any more.
    assert_eq!(gw.collect_garbage(Duration::ZERO).deleted, 0);
    let stray: Vec<PathBuf> = gw
        .object_files()
        .into_iter()
        .filter(|f| !live.contains(f))
        .collect();
    assert_eq!(stray.len(), orphans);
    for f in &stray {
        age(f, 2 * DAY);
    }
    // One more, put straight into the backend just now: young.
    let young = ObjectName::parse(&"ab".repeat(32)).unwrap();
    wait(gw.store.backend().put(&young, random_bytes(1000, 3).into())).unwrap();

    let r = sweep(&gw, DAY);
    assert_eq!(r.deleted, orphans as u64, "{r:?}");
    assert_eq!((r.young, r.in_use, r.delete_failures), (1, 0, 0), "{r:?}");
    assert_eq!(r.listed, (live.len() + orphans + 1) as u64);
    assert!(r.bytes_freed > 2 * MIB as u64 - 1000, "{r:?}");
    assert!(wait(gw.store.backend().exists(&young)).unwrap());
    assert_eq!(gw.object_files().len(), live.len() + 1);

    // With no grace the young one goes too; the file is untouched.
    assert_eq!(sweep(&gw, Duration::ZERO).deleted, 1);
    assert_eq!(gw.object_files(), live);
    assert_eq!(gw.stats().chunks, live.len() as u64);
    assert_eq!(alice.get_bytes("kept.bin").unwrap(), kept);
    assert_eq!(sweep(&gw, Duration::ZERO).deleted, 0, "nothing left");
}

/// Uploads of the very content whose objects are orphans (records dropped,
/// objects left) racing repeated sweeps with no grace: the sweep may delete
/// an orphan before an upload stores it anew, or find it named and keep
/// it, but never delete an object a committed file references.
fn uploads_racing_the_sweep_never_lose_an_object(gw: TestGateway) {
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let data: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(2 * MIB, 50 + i)).collect();
    let rounds = if gw.apache.is_some() { 3 } else { 6 };
    for round in 0..rounds {
        for (i, d) in data.iter().enumerate() {
            assert_eq!(alice.put(&format!("f{i}"), d.clone()).status(), 201);
            delete(&gw, "alice", &format!("f{i}"));
        }
        crash_mid_collection(&gw);
        // Two uploads of each file at once, while the sweep goes round.
        let prefixes = [format!("g{round}-"), format!("h{round}-")];
        let uploaders: Vec<_> = prefixes
            .iter()
            .map(|p| upload_in_background(&gw.base, "alice", "pw", p, &data))
            .collect();
        let mut sweeps = 0;
        while sweeps == 0 || !uploaders.iter().all(|u| u.is_finished()) {
            sweep(&gw, Duration::ZERO);
            sweeps += 1;
        }
        for u in uploaders {
            u.join().unwrap();
        }
        // One more sweep after every commit: it must keep them all.
        sweep(&gw, Duration::ZERO);
        for prefix in &prefixes {
            for (i, d) in data.iter().enumerate() {
                let name = format!("{prefix}{i}");
                let got = alice.get_bytes(&name).unwrap();
                assert!(got == *d, "{name} differs (round {round}, {sweeps} sweeps)");
                delete(&gw, "alice", &name);
            }
        }
        gw.collect_garbage(Duration::ZERO);
        assert_eq!(gw.object_files().len(), 0, "round {round}");
    }
}

/// `dedupdav gc --orphans` deletes an old object no record names and says so.
#[test]
fn gc_with_orphans_sweeps_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let gc = |extra: &[&str]| {
        let out = common::dedupdav_command()
            .arg("gc")
            .args(extra)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    // The first run creates the data directory, the key and the index.
    gc(&[]);
    let name = "cd".repeat(32);
    let folder = dir.path().join("dedupdav-data/objects/objects/cd");
    std::fs::create_dir_all(&folder).unwrap();
    let orphan = folder.join(&name);
    std::fs::write(&orphan, b"left behind").unwrap();
    age(&orphan, 2 * DAY);

    let text = gc(&[]);
    assert!(
        orphan.exists(),
        "a plain gc does not list the backend: {text}"
    );
    let text = gc(&["--orphans"]);
    assert!(!orphan.exists(), "{text}");
    assert!(
        text.contains("orphan sweep: 1 objects listed; deleted 1"),
        "{text}"
    );
}
