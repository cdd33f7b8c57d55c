//! The real ownCloud and Nextcloud desktop sync clients (Debian's
//! `owncloudcmd` and `nextcloudcmd`) against the gateway: a tree with
//! awkward names and a file above the 10 MB chunk size syncs up (chunked
//! upload NG), down into an empty folder byte-identical, and a second round
//! of edits, a rename, a delete, a folder move and new files syncs across
//! transferring only what changed — the gateway's own metrics show the
//! rename and the folder move as MOVEs, and nothing else sent again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use crate::common::gateway::{random_bytes, TestGateway};
use crate::common::wait;

/// A client binary and how it is driven.
#[derive(Clone, Copy)]
enum Client {
    OwnCloud,
    Nextcloud,
}

impl Client {
    fn binary(self) -> &'static str {
        match self {
            Client::OwnCloud => "owncloudcmd",
            Client::Nextcloud => "nextcloudcmd",
        }
    }
}

/// Journal and log files the clients keep in the synced folder.
fn is_client_file(name: &str) -> bool {
    name.starts_with(".sync_")
        || name.starts_with("._sync_")
        || name.starts_with(".owncloudsync")
        || name.starts_with(".nextcloudsync")
        || name == ".csync_journal.db"
}

/// Every file below `root`: relative path → (bytes, mtime in seconds).
fn snapshot(root: &Path) -> BTreeMap<String, (Vec<u8>, u64)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (Vec<u8>, u64)>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if is_client_file(&name) {
                continue;
            }
            let rel = p
                .strip_prefix(root)
                .expect("below root")
                .to_string_lossy()
                .into_owned();
            if p.is_dir() {
                out.insert(format!("{rel}/"), (Vec::new(), 0));
                walk(root, &p, out);
            } else {
                let mtime = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs());
                out.insert(rel, (std::fs::read(&p).expect("read"), mtime));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn assert_same_tree(a: &Path, b: &Path) {
    let (sa, sb) = (snapshot(a), snapshot(b));
    let names_a: Vec<_> = sa.keys().collect();
    let names_b: Vec<_> = sb.keys().collect();
    assert_eq!(names_a, names_b, "the two copies hold different names");
    for (name, (data, mtime)) in &sa {
        let (other, other_mtime) = &sb[name];
        assert!(data == other, "{name} differs between the copies");
        assert_eq!(mtime, other_mtime, "{name}: modification time not kept");
    }
}

/// Runs one sync of `dir` with the gateway; panics with the client's log
/// when it fails.
fn sync(client: Client, gw: &TestGateway, dir: &Path, user: &str, password: &str) {
    let exclude = dir.parent().expect("parent").join("exclude.lst");
    if !exclude.exists() {
        std::fs::write(&exclude, "").expect("exclude list");
    }
    let mut cmd = Command::new("timeout");
    // nextcloudcmd may wait for ever for a confirmation; never let it hang
    // the suite.
    cmd.args(["180", client.binary(), "--non-interactive"]);
    if matches!(client, Client::OwnCloud) {
        // Debian's owncloudcmd aborts without an exclude list.
        cmd.arg("--exclude").arg(&exclude);
    }
    cmd.args(["-u", user, "-p", password])
        .arg(dir)
        .arg(format!("{}/", gw.base));
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "{} is not installed ({e}): run the README test command, which installs it",
            client.binary()
        )
    });
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed with {:?}:\n{}",
        client.binary(),
        out.status,
        tail(&log, 80)
    );
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Requests by method and status so far.
fn count(gw: &TestGateway, method: &str, statuses: &[u16]) -> u64 {
    statuses
        .iter()
        .map(|s| gw.gateway.metrics().count(method, *s))
        .sum()
}

fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

fn write(path: PathBuf, data: &[u8]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).expect("mkdir");
    }
    std::fs::write(path, data).expect("write");
}

fn round_trip(client: Client) {
    let gw = TestGateway::start();
    gw.add_user("carol", "carol-pw");
    let work = tempfile::tempdir().expect("temp dir");
    let a = work.path().join("first");
    let b = work.path().join("second");
    std::fs::create_dir_all(&a).expect("mkdir");
    std::fs::create_dir_all(&b).expect("mkdir");

    // A tree with awkward names and one file above the 10 MB chunk size.
    write(a.join("with space.txt"), b"spaces\n");
    write(a.join("100%.txt"), b"percent\n");
    write(a.join("hash#tag & amp.txt"), b"hash and ampersand\n");
    write(a.join("ünïcødé/emoji 😀.txt"), "non-ascii 😀\n".as_bytes());
    write(a.join("ünïcødé/deeper/note.md"), b"# note\n");
    write(a.join("sub dir/keep.txt"), b"stays\n");
    write(
        a.join("sub dir/big.bin"),
        &random_bytes(12 * 1024 * 1024 + 333, 7),
    );
    write(a.join("empty.txt"), b"");

    let chunked_before = count(&gw, "MOVE", &[201, 204]);
    sync(client, &gw, &a, "carol", "carol-pw");
    // The big file went through the chunked upload (MKCOL on the uploads
    // folder, chunk PUTs, one final MOVE).
    assert!(
        count(&gw, "MOVE", &[201, 204]) > chunked_before,
        "the file above 10 MB was not uploaded in chunks"
    );
    let big = gw
        .client("carol", "carol-pw")
        .get_bytes("sub%20dir/big.bin")
        .expect("big file stored");
    assert_eq!(big, random_bytes(12 * 1024 * 1024 + 333, 7));

    // Into an empty folder: identical.
    sync(client, &gw, &b, "carol", "carol-pw");
    assert_same_tree(&a, &b);

    // Second round in the second copy.
    write(b.join("with space.txt"), b"spaces, edited\n");
    std::fs::rename(b.join("100%.txt"), b.join("renamed 100%.txt")).expect("rename");
    std::fs::remove_file(b.join("hash#tag & amp.txt")).expect("delete");
    std::fs::rename(b.join("ünïcødé"), b.join("sub dir/moved ünïcødé")).expect("move folder");
    write(b.join("new folder/new file.txt"), b"brand new\n");
    write(b.join("added.txt"), b"added\n");

    let puts = count(&gw, "PUT", &[200, 201, 204]);
    let moves = count(&gw, "MOVE", &[201, 204]);
    let deletes = count(&gw, "DELETE", &[204]);
    sync(client, &gw, &b, "carol", "carol-pw");
    assert_eq!(
        count(&gw, "MOVE", &[201, 204]) - moves,
        2,
        "the rename and the folder move must be MOVEs"
    );
    assert_eq!(
        count(&gw, "PUT", &[200, 201, 204]) - puts,
        3,
        "only the edited and the two new files may be uploaded"
    );
    assert_eq!(count(&gw, "DELETE", &[204]) - deletes, 1);

    let renamed_inode = inode(&a.join("100%.txt"));
    let moved_inode = inode(&a.join("ünïcødé/emoji 😀.txt"));
    sync(client, &gw, &a, "carol", "carol-pw");
    assert_same_tree(&a, &b);
    // The first copy renamed and moved its own files instead of
    // downloading them again (a download writes a new file).
    assert_eq!(
        inode(&a.join("renamed 100%.txt")),
        renamed_inode,
        "the renamed file was downloaded again"
    );
    assert_eq!(
        inode(&a.join("sub dir/moved ünïcødé/emoji 😀.txt")),
        moved_inode,
        "the moved folder's file was downloaded again"
    );
    // Nothing is left behind in the uploads area.
    assert_eq!(wait(gw.gateway.expire_sessions(i64::MAX / 2)), 0);
}

#[test]
fn owncloudcmd_syncs_both_ways() {
    round_trip(Client::OwnCloud);
}

#[test]
fn nextcloudcmd_syncs_both_ways() {
    round_trip(Client::Nextcloud);
}

/// After the gateway's disk is lost and `dedupdav restore` rebuilds the
/// index, a client that synced before finds every etag and file id as it
/// left them: the next sync transfers nothing.
#[test]
fn a_sync_after_a_restore_transfers_nothing() {
    use crate::restore::{delete_index, upload_metadata};
    let gw = TestGateway::start();
    gw.add_user("carol", "carol-pw");
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().join("synced");
    write(dir.join("notes.txt"), b"notes\n");
    write(dir.join("sub dir/photo.bin"), &random_bytes(300_000, 3));
    write(dir.join("sub dir/deeper/empty.txt"), b"");
    sync(Client::OwnCloud, &gw, &dir, "carol", "carol-pw");
    upload_metadata(&gw);
    // What a sync with nothing to do asks (status, capabilities, listings).
    let requests = |gw: &TestGateway| -> Vec<u64> {
        ["GET", "PUT", "MOVE", "DELETE", "MKCOL"]
            .iter()
            .map(|m| count(gw, m, &[200, 201, 204, 206]))
            .collect()
    };
    let before = requests(&gw);
    sync(Client::OwnCloud, &gw, &dir, "carol", "carol-pw");
    let idle: Vec<u64> = requests(&gw)
        .iter()
        .zip(&before)
        .map(|(a, b)| a - b)
        .collect();
    assert_eq!(idle[1..], [0, 0, 0, 0], "nothing to upload");

    let stopped = gw.stop();
    delete_index(&stopped);
    let (ok, out, err) = stopped.run(&["restore"]);
    assert!(ok, "{out}{err}");
    let gw = stopped.restart();
    sync(Client::OwnCloud, &gw, &dir, "carol", "carol-pw");
    assert_eq!(
        requests(&gw),
        idle,
        "GET, PUT, MOVE, DELETE, MKCOL after the restore"
    );
    assert!(count(&gw, "PROPFIND", &[207]) > 0, "the client did sync");
}
