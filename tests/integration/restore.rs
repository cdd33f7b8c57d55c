//! `dedupdav restore` as an operator runs it after losing the gateway's
//! disk: a mixed workload, a snapshot, more changes, everything uploaded,
//! the gateway stopped and its index deleted (config, master key and the
//! objects kept); the restore rebuilds what every user sees — the same
//! bytes, file ids, etags, mtimes, checksums, dead properties, quotas,
//! passwords and the upload in progress — and `check --read-data` is
//! clean. Then tampering upstream: a flipped bit in a segment, a deleted
//! segment, a segment of an older chain; each is named and refused, and
//! `--accept-loss` restores the newest state that can be proven.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::check::{destination, flip_a_byte, mixed_workload, send};
use crate::common::gateway::{files_below, Stopped, TestGateway};
use crate::common::wait;
use dedupdav::jobs::metadata::MetadataJob;

on_both_backends!(a_lost_index_is_restored_with_everything_users_see);

/// Every property a sync client compares, and the dead one the workload set.
const PROPS: &str = r#"<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:x="urn:x"><d:prop><d:getetag/><oc:fileid/><oc:id/><d:getlastmodified/><d:getcontentlength/><oc:checksums/><oc:size/><d:quota-used-bytes/><d:quota-available-bytes/><x:colour/></d:prop></d:propfind>"#;

/// Uploads every journal row waiting, as the metadata job does.
pub(crate) fn upload_metadata(gw: &TestGateway) {
    let mut job = MetadataJob::new(gw.meta.clone(), gw.store.clone(), Duration::from_secs(10));
    while wait(job.upload_one()).expect("metadata upload").1 {}
}

fn seal_snapshot(gw: &TestGateway) -> u64 {
    let report = wait(gw.store.seal_snapshot(gw.data.path())).expect("snapshot");
    report.expect("something changed").generation
}

/// Changes after the snapshot, so the restore replays the chain too.
fn later_changes(gw: &TestGateway) {
    let (alice, bob) = (gw.client("alice", "alice-pw"), gw.client("bob", "bob-pw"));
    assert_eq!(
        alice
            .put("late.txt", b"written after the snapshot".to_vec())
            .status(),
        201
    );
    assert_eq!(send(&alice, "DELETE", "copy.bin", &[], ""), 204);
    let to = destination(&alice, "a/moved");
    assert_eq!(send(&alice, "MOVE", "a/b", &[to], ""), 201);
    assert_eq!(bob.mkcol("later").status(), 201);
    wait(dedupdav::accounts::set_password(&gw.meta, "bob", "bob-new")).unwrap();
    wait(gw.meta.set_quota("bob", Some(32 << 20))).unwrap();
}

/// What the users see: every folder's listing with its properties, and
/// every file's bytes.
fn view(gw: &TestGateway, bob_password: &str) -> BTreeMap<String, Vec<u8>> {
    let alice = gw.client("alice", "alice-pw");
    let bob = gw.client("bob", bob_password);
    let mut seen = BTreeMap::new();
    for (dav, folders, files) in [
        (
            &alice,
            &["", "a", "a/moved"][..],
            &[
                "a/moved/one.bin",
                "a/renamed.bin",
                "a/chunked.bin",
                "late.txt",
            ][..],
        ),
        (&bob, &["", "later"][..], &["same.bin"][..]),
    ] {
        for folder in folders {
            let res = dav
                .request("PROPFIND", &dav.url(folder))
                .header("Depth", "1")
                .body(PROPS)
                .send()
                .unwrap();
            assert_eq!(res.status(), 207, "{folder}");
            seen.insert(
                format!("{} {folder}/", dav.user),
                res.bytes().unwrap().to_vec(),
            );
        }
        for file in files {
            let bytes = dav
                .get_bytes(file)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            seen.insert(format!("{} {file}", dav.user), bytes);
        }
        let res = dav
            .request(
                "PROPFIND",
                &format!("{}/remote.php/dav/uploads/{}/t2", dav.base, dav.user),
            )
            .header("Depth", "1")
            .send()
            .unwrap();
        seen.insert(
            format!("{} upload t2", dav.user),
            res.status().as_str().into(),
        );
    }
    seen
}

fn users(gw: &TestGateway) -> Vec<(String, bool, u64, Option<u64>)> {
    let users = wait(gw.meta.users()).unwrap();
    users
        .into_iter()
        .map(|u| (u.name, u.admin, u.used, u.quota))
        .collect()
}

pub(crate) fn delete_index(stopped: &Stopped) {
    std::fs::remove_file(stopped.data.path().join("index.redb")).expect("index deleted");
}

fn a_lost_index_is_restored_with_everything_users_see(gw: TestGateway) {
    mixed_workload(&gw);
    upload_metadata(&gw);
    assert_eq!(seal_snapshot(&gw), 1);
    later_changes(&gw);
    upload_metadata(&gw);
    let before = view(&gw, "bob-new");
    let users_before = users(&gw);
    assert_eq!(
        before["alice upload t2"], b"207",
        "the upload in progress is there"
    );
    let listing = String::from_utf8_lossy(&before["bob /"]);
    for prop in [
        "fileid>",
        "getetag>",
        "checksums>",
        "blue</x:colour>",
        "quota-used-bytes>",
    ] {
        assert!(listing.contains(prop), "{prop} in {listing}");
    }
    assert_eq!(listing.matches("blue</x:colour>").count(), 1, "listed once");

    let stopped = gw.stop();
    delete_index(&stopped);
    let (ok, out, err) = stopped.run(&["restore"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("restored from snapshot 1"), "{out}");
    assert!(
        !out.contains("replayed 0 segments"),
        "the chain after it: {out}"
    );
    assert!(out.contains("sealed snapshot 2"), "{out}");
    assert!(out.contains("result: clean"), "{out}");

    let gw = stopped.restart();
    assert_eq!(users(&gw), users_before);
    let after = view(&gw, "bob-new");
    for (k, v) in &before {
        assert_eq!(
            String::from_utf8_lossy(&after[k]),
            String::from_utf8_lossy(v),
            "{k} differs after the restore"
        );
    }
    assert_eq!(after, before);
    let old = gw.client("bob", "bob-pw");
    assert_eq!(
        old.propfind("", "0").status(),
        401,
        "the old password is gone"
    );

    // The restored installation goes on: new changes, then a second
    // restore from the snapshot the first one sealed.
    let alice = gw.client("alice", "alice-pw");
    assert_eq!(
        alice.put("after-restore.txt", b"new".to_vec()).status(),
        201
    );
    upload_metadata(&gw);
    let stopped = gw.stop();
    let (ok, out, err) = stopped.run(&["restore"]);
    assert!(
        !ok && err.contains("--force"),
        "an index exists: {out}{err}"
    );
    let (ok, out, err) = stopped.run(&["restore", "--force"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("restored from snapshot 2"), "{out}");
    assert!(out.contains("the replaced index was kept"), "{out}");
    let (ok, out, err) = stopped.run(&["check", "--read-data"]);
    assert!(ok, "{out}{err}");
    let gw = stopped.restart();
    let alice = gw.client("alice", "alice-pw");
    assert_eq!(alice.get_bytes("after-restore.txt").unwrap(), b"new");
}

/// The sealed segments on the local backend, by name.
fn segment_files(stopped: &Stopped) -> Vec<std::path::PathBuf> {
    files_below(&stopped.objects_root.join("meta"))
}

/// A workload uploaded as several segments without a snapshot; answers
/// the stopped gateway and the file of each segment, in chain order.
fn chained_installation() -> (Stopped, Vec<(u64, std::path::PathBuf)>) {
    let gw = TestGateway::start();
    gw.add_user("carol", "carol-pw");
    let carol = gw.client("carol", "carol-pw");
    for i in 0..4 {
        assert_eq!(
            carol
                .put(&format!("f{i}.txt"), vec![b'x'; 100 + i])
                .status(),
            201
        );
        upload_metadata(&gw);
    }
    let stopped = gw.stop();
    let keys = dedupdav::app::existing_keys(&stopped.config).unwrap();
    let segments = (1..10_000u64)
        .filter_map(|first| {
            let (name, _) = dedupdav::crypto::ObjectName::for_metadata_segment(&keys, first);
            let path = stopped.objects_root.join(name.relative_path());
            path.exists().then_some((first, path))
        })
        .collect();
    (stopped, segments)
}

#[test]
fn a_flipped_bit_in_a_segment_is_named_and_refused() {
    let (stopped, segments) = chained_installation();
    assert!(segments.len() >= 4, "{segments:?}");
    delete_index(&stopped);
    let (first, path) = &segments[2];
    flip_a_byte(path);
    let (ok, out, err) = stopped.run(&["restore"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains(&format!("starting at change {first} cannot be used")),
        "{err}"
    );
    assert!(
        !stopped.data.path().join("index.redb").exists(),
        "nothing written"
    );

    // Accepting the loss restores the two files before the damage.
    let (ok, out, err) = stopped.run(&["restore", "--accept-loss"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("LOST (accepted)"), "{out}");
    assert!(!path.exists(), "the unusable segment is deleted");
    let gw = stopped.restart();
    let carol = gw.client("carol", "carol-pw");
    assert!(carol.get_bytes("f0.txt").is_ok());
    assert_eq!(carol.get("f3.txt").status(), 404);
}

#[test]
fn a_deleted_segment_is_found_from_the_ones_after_it() {
    let (stopped, segments) = chained_installation();
    delete_index(&stopped);
    std::fs::remove_file(&segments[1].1).unwrap();
    let (ok, out, err) = stopped.run(&["restore"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains(&format!(
            "no usable segment starts at change {}",
            segments[1].0
        )) && err.contains("changes between were lost"),
        "{err}"
    );
}

#[test]
fn a_segment_of_an_older_chain_is_refused() {
    // Chain A: segments up to the last one, which is then lost upstream.
    let (stopped, segments) = chained_installation();
    let (last_first, last_path) = segments.last().unwrap().clone();
    let old = std::fs::read(&last_path).unwrap();
    std::fs::remove_file(&last_path).unwrap();
    delete_index(&stopped);
    let (ok, out, err) = stopped.run(&["restore"]);
    assert!(
        ok,
        "the lost tail is not detectable, the rest restores: {out}{err}"
    );

    // Chain B continues after the restore and writes a segment of the same
    // number, linked to the restored state.
    let gw = stopped.restart();
    let carol = gw.client("carol", "carol-pw");
    assert_eq!(carol.put("b.txt", b"chain b".to_vec()).status(), 201);
    upload_metadata(&gw);
    let stopped = gw.stop();
    assert!(last_path.exists(), "chain B's segment {last_first}");
    assert!(segment_files(&stopped).len() > 1);

    // An old copy of chain A's segment put back in its place is refused.
    std::fs::write(&last_path, old).unwrap();
    delete_index(&stopped);
    let (ok, out, err) = stopped.run(&["restore"]);
    assert!(!ok, "{out}");
    assert!(
        err.contains(&format!("starting at change {last_first} cannot be used"))
            && err.contains("another chain"),
        "{err}"
    );
}

#[test]
fn old_snapshots_and_the_segments_before_them_are_deleted_and_nothing_is_readable() {
    use dedupdav::crypto::{ChunkId, ObjectName};
    let gw = TestGateway::start();
    gw.add_user("dorothea-unique-user", "pw");
    let dav = gw.client("dorothea-unique-user", "pw");
    let mut generations = Vec::new();
    for round in 0..4 {
        let name = format!("secret-plan-{round}.txt");
        assert_eq!(dav.put(&name, vec![b'p'; 1000]).status(), 201);
        upload_metadata(&gw);
        generations.push(seal_snapshot(&gw));
        wait(gw.store.prune_snapshots()).expect("prune");
    }
    assert_eq!(generations, [1, 2, 3, 4]);
    assert!(
        wait(gw.store.seal_snapshot(gw.data.path()))
            .unwrap()
            .is_none(),
        "nothing changed: no new snapshot"
    );
    let kept = wait(gw.meta.snapshots()).unwrap();
    assert_eq!(
        kept.iter().map(|h| h.generation).collect::<Vec<_>>(),
        [3, 4]
    );

    // Upstream: exactly the kept heads, their pieces, and the segments
    // after the older kept snapshot's chain head.
    let keys = dedupdav::app::existing_keys(&gw.config).unwrap();
    let mut expected: std::collections::BTreeSet<String> = Default::default();
    for head in &kept {
        expected.insert(
            ObjectName::for_snapshot_head(&keys, head.generation)
                .0
                .to_string(),
        );
        for piece in &head.pieces {
            expected.insert(ObjectName::for_snapshot_piece(&keys, &ChunkId(piece.id)).to_string());
        }
    }
    let segments = wait(gw.meta.upstream_segments(u64::MAX)).unwrap();
    assert!(!segments.is_empty());
    for (first, _) in &segments {
        assert!(*first > kept[0].dump.chain.last_seq, "{first} is redundant");
        expected.insert(
            ObjectName::for_metadata_segment(&keys, *first)
                .0
                .to_string(),
        );
    }
    let stopped = gw.stop();
    let files = segment_files(&stopped);
    let listed: std::collections::BTreeSet<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, expected);

    // Nothing readable in any metadata object.
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for secret in ["dorothea-unique-user", "secret-plan"] {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{secret} readable in {}", f.display());
        }
    }

    // And the newest snapshot restores.
    delete_index(&stopped);
    let (ok, out, err) = stopped.run(&["restore"]);
    assert!(ok && out.contains("restored from snapshot 4"), "{out}{err}");

    // --json: the restore's report, then the check's, a line each.
    let (ok, out, err) = stopped.run(&["restore", "--force", "--json"]);
    assert!(ok, "{out}{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["snapshot"], 5, "the one the last restore sealed");
    assert_eq!(lines[0]["new_snapshot"], 6);
    assert_eq!(lines[1]["clean"], true);

    // The chain a restore starts is followed by the next restore.
    let gw = stopped.restart();
    let dav = gw.client("dorothea-unique-user", "pw");
    assert_eq!(dav.put("after.txt", b"after".to_vec()).status(), 201);
    upload_metadata(&gw);
    let stopped = gw.stop();
    delete_index(&stopped);
    let (ok, out, err) = stopped.run(&["restore"]);
    assert!(ok && out.contains("replayed 1 segments"), "{out}{err}");
    let gw = stopped.restart();
    let dav = gw.client("dorothea-unique-user", "pw");
    assert_eq!(dav.get_bytes("after.txt").unwrap(), b"after");
}

#[test]
fn a_snapshot_missing_a_piece_gives_way_to_the_one_before() {
    use dedupdav::crypto::{ChunkId, ObjectName};
    let gw = TestGateway::start();
    gw.add_user("erin", "pw");
    let dav = gw.client("erin", "pw");
    for i in 0..3 {
        assert_eq!(dav.put(&format!("f{i}.txt"), vec![b'e'; 100]).status(), 201);
        upload_metadata(&gw);
        if i < 2 {
            seal_snapshot(&gw);
        }
    }
    let heads = wait(gw.meta.snapshots()).unwrap();
    let older: std::collections::HashSet<_> = heads[0].pieces.iter().map(|p| p.id).collect();
    let only_newer = heads[1]
        .pieces
        .iter()
        .find(|p| !older.contains(&p.id))
        .expect("the newer snapshot has a piece of its own");
    let keys = dedupdav::app::existing_keys(&gw.config).unwrap();
    let piece = ObjectName::for_snapshot_piece(&keys, &ChunkId(only_newer.id));
    let stopped = gw.stop();
    std::fs::remove_file(stopped.objects_root.join(piece.relative_path())).unwrap();
    delete_index(&stopped);

    let (ok, out, err) = stopped.run(&["restore"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("restored from snapshot 1"), "{out}");
    assert!(out.contains("not used: snapshot 2"), "{out}");
    let gw = stopped.restart();
    let dav = gw.client("erin", "pw");
    for i in 0..3 {
        assert!(dav.get_bytes(&format!("f{i}.txt")).is_ok(), "f{i}.txt");
    }
}
