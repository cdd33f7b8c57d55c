//! `dedup.scope`: "global" stores a chunk once for everyone; "user" shares
//! chunks only within one user's files, so no upload is faster because of
//! what someone else stored. Against a real gateway over HTTP.

use std::time::Duration;

use crate::common::gateway::{random_bytes, Dav, TestGateway};
use dedupdav::config::{Config, DedupScope};

const MIB: usize = 1 << 20;

fn scoped(scope: DedupScope) -> impl FnOnce(&mut Config) {
    move |c| c.dedup.scope = scope
}

fn status(res: reqwest::blocking::Response) -> u16 {
    res.status().as_u16()
}

/// Stored bytes and object count.
fn footprint(gw: &TestGateway) -> (u64, usize) {
    (gw.stats().stored_bytes, gw.object_files().len())
}

mod local {
    use super::*;

    #[test]
    fn user_scope_stores_each_users_copy_once() {
        super::user_scope_stores_each_users_copy_once(TestGateway::start_with(scoped(
            DedupScope::User,
        )));
    }

    #[test]
    fn global_scope_stores_everyones_copy_once() {
        super::global_scope_stores_everyones_copy_once(TestGateway::start_with(scoped(
            DedupScope::Global,
        )));
    }
}

mod upstream {
    use super::*;

    #[test]
    fn user_scope_stores_each_users_copy_once() {
        super::user_scope_stores_each_users_copy_once(TestGateway::start_on_apache_with(scoped(
            DedupScope::User,
        )));
    }
}

fn user_scope_stores_each_users_copy_once(gw: TestGateway) {
    gw.add_user("alice", "pw-a");
    gw.add_user("bob", "pw-b");
    let alice = gw.client("alice", "pw-a");
    let bob = gw.client("bob", "pw-b");
    let data = random_bytes(6 * MIB, 7);

    assert_eq!(status(alice.put("a.bin", data.clone())), 201);
    let one = footprint(&gw);
    assert!(one.0 >= (6 * MIB) as u64 && one.1 >= 2, "{one:?}");

    // Alice's second copy, and a COPY of it, cost nothing.
    assert_eq!(status(alice.put("again.bin", data.clone())), 201);
    let copy = alice
        .request("COPY", &alice.url("a.bin"))
        .header("Destination", alice.url("copied.bin"))
        .send()
        .unwrap();
    assert_eq!(status(copy), 201);
    assert_eq!(footprint(&gw), one);

    // Bob's copy of the same bytes is stored again: other objects.
    let before_bob = gw.object_files();
    assert_eq!(status(bob.put("b.bin", data.clone())), 201);
    let two = footprint(&gw);
    assert_eq!(two.1, 2 * one.1, "bob's chunks are his own objects");
    assert_eq!(two.0, 2 * one.0, "random data: the same size again");
    let bobs: Vec<_> = gw
        .object_files()
        .into_iter()
        .filter(|p| !before_bob.contains(p))
        .collect();
    assert_eq!(bobs.len(), one.1);
    // ... and bob's second copy only once.
    assert_eq!(status(bob.put("b2.bin", data.clone())), 201);
    assert_eq!(footprint(&gw), two);

    for (dav, path) in [
        (&alice, "a.bin"),
        (&alice, "again.bin"),
        (&alice, "copied.bin"),
        (&bob, "b.bin"),
        (&bob, "b2.bin"),
    ] {
        assert!(dav.get_bytes(path).unwrap() == data, "{path}");
    }

    // Bob's files gone and collected: exactly his objects go, alice's
    // files still read.
    for p in ["b.bin", "b2.bin"] {
        assert_eq!(
            status(bob.request("DELETE", &bob.url(p)).send().unwrap()),
            204
        );
    }
    let report = gw.collect_garbage(Duration::ZERO);
    assert_eq!(report.deleted as usize, one.1);
    assert_eq!(footprint(&gw), one);
    assert!(bobs.iter().all(|p| !p.exists()));
    assert!(alice.get_bytes("copied.bin").unwrap() == data);
}

fn global_scope_stores_everyones_copy_once(gw: TestGateway) {
    gw.add_user("alice", "pw-a");
    gw.add_user("bob", "pw-b");
    let alice = gw.client("alice", "pw-a");
    let bob = gw.client("bob", "pw-b");
    let data = random_bytes(6 * MIB, 8);
    assert_eq!(status(alice.put("a.bin", data.clone())), 201);
    let one = footprint(&gw);
    assert_eq!(status(bob.put("b.bin", data.clone())), 201);
    assert_eq!(footprint(&gw), one);
    assert!(bob.get_bytes("b.bin").unwrap() == data);
}

/// Uploads `data` as `dest` through the ownCloud chunked upload endpoint,
/// in pieces of one MiB.
fn chunked_upload(dav: &Dav, transfer: &str, dest: &str, data: &[u8]) {
    let base = format!(
        "{}/remote.php/dav/uploads/{}/{transfer}",
        dav.base, dav.user
    );
    assert_eq!(status(dav.request("MKCOL", &base).send().unwrap()), 201);
    for (i, piece) in data.chunks(MIB).enumerate() {
        let url = format!("{base}/{:08}", i * MIB);
        let res = dav
            .request("PUT", &url)
            .body(piece.to_vec())
            .send()
            .unwrap();
        assert_eq!(status(res), 201);
    }
    let res = dav
        .request("MOVE", &format!("{base}/.file"))
        .header("Destination", dav.url(dest))
        .header("OC-Total-Length", data.len().to_string())
        .send()
        .unwrap();
    assert_eq!(status(res), 201);
}

#[test]
fn chunked_uploads_follow_the_user_scope() {
    let gw = TestGateway::start_with(scoped(DedupScope::User));
    gw.add_user("alice", "pw-a");
    gw.add_user("bob", "pw-b");
    let alice = gw.client("alice", "pw-a");
    let bob = gw.client("bob", "pw-b");
    let data = random_bytes(5 * MIB, 9);
    chunked_upload(&alice, "t1", "a.bin", &data);
    let one = footprint(&gw);
    // Alice's second chunked upload of the same bytes shares the chunks
    // (each piece is chunked on its own, so a plain PUT, cut elsewhere,
    // would not, whatever the scope) ...
    chunked_upload(&alice, "t1b", "a2.bin", &data);
    assert_eq!(footprint(&gw), one);
    // ... bob's chunked upload does not.
    chunked_upload(&bob, "t2", "b.bin", &data);
    let two = footprint(&gw);
    assert!(two.0 > one.0 + (4 * MIB) as u64, "{one:?} {two:?}");
    assert!(alice.get_bytes("a.bin").unwrap() == data);
    assert!(bob.get_bytes("b.bin").unwrap() == data);
    assert!(alice.get_bytes("a2.bin").unwrap() == data);
}

/// Stops `gw` and starts a gateway on its data directory with `scope`.
fn reopen(mut gw: TestGateway, scope: DedupScope) -> TestGateway {
    let dir = std::mem::replace(&mut gw.data, tempfile::tempdir().unwrap());
    // The first gateway must be gone before the index is opened again.
    drop(gw);
    let path = dir.path().to_path_buf();
    let mut next = TestGateway::start_with(move |c| {
        c.data_dir = path;
        c.dedup.scope = scope;
    });
    next.objects_root = dir.path().join("objects");
    next.data = dir;
    next
}

/// Files written under one scope stay readable under the other.
#[test]
fn changing_the_scope_keeps_old_files_readable() {
    let gw = TestGateway::start_with(scoped(DedupScope::Global));
    gw.add_user("alice", "pw-a");
    gw.add_user("bob", "pw-b");
    let data = random_bytes(3 * MIB, 10);
    let other = random_bytes(3 * MIB, 11);
    assert_eq!(
        status(gw.client("alice", "pw-a").put("old.bin", data.clone())),
        201
    );
    let one = footprint(&gw);

    let gw = reopen(gw, DedupScope::User);
    let alice = gw.client("alice", "pw-a");
    let bob = gw.client("bob", "pw-b");
    assert!(
        alice.get_bytes("old.bin").unwrap() == data,
        "shared chunks, user scope"
    );
    // New uploads are per user now: bob's copy is stored again.
    assert_eq!(status(bob.put("b.bin", data.clone())), 201);
    assert_eq!(footprint(&gw), (2 * one.0, 2 * one.1));
    assert_eq!(status(alice.put("new.bin", other.clone())), 201);

    // And back: files written per user read under the global scope.
    let gw = reopen(gw, DedupScope::Global);
    let alice = gw.client("alice", "pw-a");
    let bob = gw.client("bob", "pw-b");
    assert!(alice.get_bytes("old.bin").unwrap() == data);
    assert!(alice.get_bytes("new.bin").unwrap() == other);
    assert!(bob.get_bytes("b.bin").unwrap() == data);
    // The global scope shares with the chunks stored before the change.
    let before = footprint(&gw);
    assert_eq!(status(bob.put("b-again.bin", data.clone())), 201);
    assert_eq!(footprint(&gw), before);
}
