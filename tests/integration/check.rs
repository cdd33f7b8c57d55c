//! `dedupdav check` as an operator runs it, on both backends: after a mixed
//! workload the installation is clean (with and without `--read-data`);
//! then faults are injected one after another — a flipped byte in an
//! object (found only by reading it), a deleted object, a wrong reference
//! count and a dangling entry in the index — and each is named in the
//! report, with a non-zero exit.

use std::path::Path;

use crate::common;
use crate::common::gateway::{random_bytes, Dav, Stopped, TestGateway};

/// Runs `dedupdav check <args>` over a stopped gateway's data and
/// upstream; answers (success, stdout, stderr).
fn check(stopped: &Stopped, args: &[&str]) -> (bool, String, String) {
    stopped.run(&[&["check"], args].concat())
}

pub(crate) fn send(
    dav: &Dav,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> u16 {
    let mut req = dav.request(method, &dav.url(path));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    req.body(body.to_string())
        .send()
        .expect("request")
        .status()
        .as_u16()
}

pub(crate) fn destination(dav: &Dav, path: &str) -> (&'static str, String) {
    let to = format!("/remote.php/dav/files/{}/{path}", dav.user);
    ("Destination", to)
}

const PROPPATCH: &str = r#"<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:x="urn:x"><d:set><d:prop><x:colour>blue</x:colour></d:prop></d:set></d:propertyupdate>"#;

/// Several users, nested folders, overwrites, a rename, a copy, a
/// deletion, a dead property, a finished chunked upload and one left in
/// progress, a quota.
pub(crate) fn mixed_workload(gw: &TestGateway) {
    gw.add_user("alice", "alice-pw");
    gw.add_user_with_quota("bob", "bob-pw", 64 << 20);
    let (alice, bob) = (gw.client("alice", "alice-pw"), gw.client("bob", "bob-pw"));
    let shared = random_bytes(3 << 20, 1);
    assert_eq!(alice.mkcol("a").status(), 201);
    assert_eq!(alice.mkcol("a/b").status(), 201);
    assert_eq!(alice.put("a/b/one.bin", shared.clone()).status(), 201);
    assert_eq!(
        alice.put("a/two.bin", random_bytes(2 << 20, 2)).status(),
        201
    );
    assert_eq!(
        alice.put("a/two.bin", random_bytes(1 << 20, 3)).status(),
        204
    );
    assert_eq!(bob.put("same.bin", shared).status(), 201);
    assert_eq!(bob.put("gone.bin", random_bytes(500_000, 4)).status(), 201);
    assert_eq!(send(&bob, "DELETE", "gone.bin", &[], ""), 204);
    let to = destination(&alice, "a/renamed.bin");
    assert_eq!(send(&alice, "MOVE", "a/two.bin", &[to], ""), 201);
    let to = destination(&alice, "copy.bin");
    assert_eq!(send(&alice, "COPY", "a/b/one.bin", &[to], ""), 201);
    assert_eq!(send(&bob, "PROPPATCH", "same.bin", &[], PROPPATCH), 207);
    chunked_uploads(&alice);
}

fn uploads(dav: &Dav, rest: &str) -> String {
    format!("{}/remote.php/dav/uploads/{}/{rest}", dav.base, dav.user)
}

fn chunked_uploads(dav: &Dav) {
    let data = random_bytes(1_500_000, 5);
    for transfer in ["t1", "t2"] {
        let res = dav
            .request("MKCOL", &uploads(dav, transfer))
            .send()
            .unwrap();
        assert_eq!(res.status(), 201);
        for (i, piece) in data.chunks(1 << 20).enumerate() {
            let url = uploads(dav, &format!("{transfer}/{:05}", i));
            let res = dav
                .request("PUT", &url)
                .body(piece.to_vec())
                .send()
                .unwrap();
            assert_eq!(res.status(), 201);
        }
    }
    // t1 is assembled into a file; t2 stays in progress.
    let res = dav
        .request("MOVE", &uploads(dav, "t1/.file"))
        .header("Destination", "/remote.php/dav/files/alice/a/chunked.bin")
        .header("OC-Total-Length", data.len().to_string())
        .send()
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
}

fn object_files(stopped: &Stopped) -> Vec<std::path::PathBuf> {
    let mut files = common::gateway::files_below(&stopped.objects_root.join("objects"));
    files.sort();
    files
}

fn name_of(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

pub(crate) fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

fn a_clean_installation_passes_and_each_fault_is_found(gw: TestGateway) {
    mixed_workload(&gw);
    let stopped = gw.stop();

    let (ok, out, err) = check(&stopped, &[]);
    assert!(ok && out.contains("result: clean"), "{out}{err}");
    let (ok, out, err) = check(&stopped, &["--read-data", "--json"]);
    assert!(ok, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["clean"], true);
    assert_eq!(json["index"]["users"], 2);
    assert_eq!(json["index"]["parts"], 2, "the upload in progress");
    let objects = object_files(&stopped);
    assert_eq!(json["objects"]["read"], objects.len() as u64, "{json}");

    // (d) A flipped byte keeps the size: only reading finds it.
    flip_a_byte(&objects[0]);
    let (ok, out, err) = check(&stopped, &[]);
    assert!(ok, "sizes still match: {out}{err}");
    let (ok, out, _) = check(&stopped, &["--read-data"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(&name_of(&objects[0])) && out.contains("does not open"),
        "{out}"
    );
    let (_, out, _) = check(&stopped, &["--read-data=50", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let read = json["objects"]["read"].as_u64().unwrap();
    assert!(read <= objects.len() as u64, "{json}");

    // (c) A missing object.
    std::fs::remove_file(&objects[1]).unwrap();
    let (ok, out, _) = check(&stopped, &["--json"]);
    assert!(!ok);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let found = &json["objects"]["findings"];
    assert_eq!(found.as_array().unwrap().len(), 1, "{json}");
    assert_eq!(found[0]["kind"], "missing");
    assert_eq!(found[0]["object"], name_of(&objects[1]).as_str());
    assert!(found[0]["meaning"].as_str().unwrap().contains("gone"));

    // (a) and (b) in the index.
    let index = stopped.data.path().join("index.redb");
    let chunk = dedupdav::meta::fault_injection::corrupt_refcount(&index, 1).unwrap();
    let ghost = dedupdav::meta::fault_injection::add_dangling_dirent(&index, "alice", "ghost");
    let ghost = ghost.unwrap();
    let (ok, out, _) = check(&stopped, &[]);
    assert!(!ok);
    assert!(out.contains(&format!("chunk {chunk} has refs=")), "{out}");
    assert!(
        out.contains("\"ghost\"") && out.contains(&format!("node {ghost}")),
        "{out}"
    );
    assert!(
        out.contains("a later collection") || out.contains("never frees"),
        "{out}"
    );
}

on_both_backends!(a_clean_installation_passes_and_each_fault_is_found);

#[test]
fn check_refuses_to_run_beside_serve_and_without_the_key() {
    let gw = TestGateway::start();
    let mut c = common::dedupdav_command();
    let out = c
        .arg("--data-dir")
        .arg(gw.data.path())
        .arg("check")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("in use"), "{text}");
    let empty = tempfile::tempdir().unwrap();
    let out = common::dedupdav_command()
        .arg("--data-dir")
        .arg(empty.path())
        .arg("check")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && text.contains("no master key"),
        "{text}"
    );
    assert!(!empty.path().join("master.key").exists());
}
