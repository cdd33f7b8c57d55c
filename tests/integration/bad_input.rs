//! Bad input gets a clear HTTP error and changes nothing (invariant 7), and
//! no acknowledged write is lost to a broken upload (invariant 2).

use std::io::Write;
use std::time::{Duration, Instant};

use crate::common::gateway::{basic, random_bytes, raw_http, TestGateway};

const MIB: usize = 1 << 20;

on_both_backends!(
    truncated_put_keeps_the_previous_version,
    quota_overrun_gets_507_and_stores_nothing
);

#[test]
fn wrong_or_missing_credentials_get_401() {
    let gw = TestGateway::start();
    gw.add_user("alice", "right");
    let url = format!("{}/remote.php/dav/files/alice/", gw.base);
    let http = reqwest::blocking::Client::new();
    let res = http.get(&url).send().unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    let res = http
        .get(&url)
        .basic_auth("alice", Some("wrong"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = http
        .get(&url)
        .basic_auth("nobody", Some("x"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = http
        .get(&url)
        .header("Authorization", "Basic %%%")
        .send()
        .unwrap();
    assert_eq!(res.status(), 401);
    // Failures from one address are slowed down.
    for _ in 0..4 {
        http.get(&url)
            .basic_auth("alice", Some("wrong"))
            .send()
            .unwrap();
    }
    let t = Instant::now();
    let res = http
        .get(&url)
        .basic_auth("alice", Some("wrong"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "repeated failures are delayed"
    );
    // The right password still works.
    let res = http
        .request(reqwest::Method::from_bytes(b"PROPFIND").unwrap(), &url)
        .header("Depth", "0")
        .basic_auth("alice", Some("right"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 207);
}

#[test]
fn malformed_xml_is_a_400_and_changes_nothing() {
    let gw = TestGateway::start();
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    assert_eq!(alice.put("f.txt", b"hello".to_vec()).status(), 201);
    for (method, body) in [
        (
            "PROPFIND",
            "<?xml version=\"1.0\"?><D:propfind xmlns:D=\"DAV:\"><D:prop><D:getetag>",
        ),
        (
            "PROPPATCH",
            "<D:propertyupdate xmlns:D=\"DAV:\"><D:set><D:prop>",
        ),
        ("PROPPATCH", "not xml at all"),
        ("LOCK", "<D:lockinfo xmlns:D=\"DAV:\"><D:lockscope>"),
    ] {
        let res = alice
            .request(method, &alice.url("f.txt"))
            .header("Depth", "0")
            .body(body)
            .send()
            .unwrap();
        assert_eq!(res.status(), 400, "{method} with {body:?}");
    }
    assert_eq!(alice.get_bytes("f.txt").unwrap(), b"hello");
    // Not locked by the broken LOCK.
    assert_eq!(alice.put("f.txt", b"hello2".to_vec()).status(), 204);
}

#[test]
fn hostile_names_and_shapes_are_refused() {
    let gw = TestGateway::start();
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let long = "x".repeat(256);
    assert_eq!(alice.put(&long, b"a".to_vec()).status(), 400);
    assert_eq!(alice.put("missing/parent.txt", b"a".to_vec()).status(), 409);
    assert_eq!(alice.mkcol("dir").status(), 201);
    assert!(matches!(
        alice.put("dir", b"a".to_vec()).status().as_u16(),
        405 | 409 | 403
    ));
    assert_eq!(alice.mkcol("dir").status(), 405);
    let res = alice.propfind("", "infinity");
    assert_eq!(res.status(), 403, "Depth: infinity is refused");
    assert!(res.text().unwrap().contains("propfind-finite-depth"));
    let res = alice.request("PROPFIND", &alice.url("")).send().unwrap();
    assert_eq!(res.status(), 403, "no Depth means infinity");
    // Invalid UTF-8 in a name.
    let req = format!(
        "PUT /remote.php/dav/files/alice/bad%ff.txt HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 1\r\nConnection: close\r\n\r\na",
        basic("alice", "pw")
    );
    let (status, _) = raw_http(&gw.base, req.as_bytes());
    assert_eq!(status, 400);
    // Partial updates are refused up front.
    let res = alice
        .request("PUT", &alice.url("p.txt"))
        .header("Content-Range", "bytes 0-0/1")
        .body("a")
        .send()
        .unwrap();
    assert_eq!(res.status(), 400);
    let listing = alice.propfind("", "1").text().unwrap();
    assert_eq!(listing.matches("<D:response>").count(), 2, "{listing}");
    assert_eq!(gw.stats().files, 0);
}

/// Sends a PUT announcing `announced` bytes, sends `sent`, then hangs up.
fn truncated_put(gw: &TestGateway, path: &str, announced: usize, sent: &[u8]) {
    let addr = gw.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "PUT /remote.php/dav/files/alice/{path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {announced}\r\n\r\n",
        basic("alice", "pw")
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(sent).unwrap();
    s.flush().unwrap();
    drop(s);
    // Give the gateway a moment to notice the hang-up.
    std::thread::sleep(Duration::from_millis(500));
}

fn truncated_put_keeps_the_previous_version(gw: TestGateway) {
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let v1 = random_bytes(3 * MIB, 10);
    assert_eq!(alice.put("doc.bin", v1.clone()).status(), 201);
    let before = gw.stats();
    let v2 = random_bytes(9 * MIB, 11);
    truncated_put(&gw, "doc.bin", v2.len(), &v2[..5 * MIB]);
    truncated_put(&gw, "new.bin", v2.len(), &v2[..5 * MIB]);
    assert_eq!(
        alice.get_bytes("doc.bin").unwrap(),
        v1,
        "previous version intact"
    );
    assert_eq!(alice.get("new.bin").status(), 404, "no half file");
    let after = gw.stats();
    assert_eq!(after.files, before.files);
    assert_eq!(after.logical_bytes, before.logical_bytes);
    // A complete upload afterwards works.
    assert_eq!(alice.put("doc.bin", v2.clone()).status(), 204);
    assert_eq!(alice.get_bytes("doc.bin").unwrap(), v2);
}

fn quota_overrun_gets_507_and_stores_nothing(gw: TestGateway) {
    gw.add_user_with_quota("alice", "pw", 2 * MIB as u64);
    let alice = gw.client("alice", "pw");
    assert_eq!(alice.put("small.bin", random_bytes(MIB, 1)).status(), 201);
    let objects = gw.object_files().len();
    let before = gw.stats();
    let res = alice.put("big.bin", random_bytes(3 * MIB / 2, 2));
    assert_eq!(res.status(), 507);
    assert!(res.text().unwrap().contains("quota"));
    assert_eq!(gw.object_files().len(), objects, "nothing stored");
    assert_eq!(gw.stats().stored_bytes, before.stored_bytes);
    assert_eq!(alice.get("big.bin").status(), 404);
    // Without a Content-Length the overrun is caught at commit: no file.
    let body = reqwest::blocking::Body::new(std::io::Cursor::new(random_bytes(3 * MIB / 2, 3)));
    let res = alice
        .request("PUT", &alice.url("chunked.bin"))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(res.status(), 507);
    assert_eq!(alice.get("chunked.bin").status(), 404);
    assert_eq!(gw.stats().logical_bytes, before.logical_bytes);
    // Replacing a file within the quota is fine.
    assert_eq!(
        alice.put("small.bin", random_bytes(2 * MIB, 4)).status(),
        204
    );
}

#[test]
fn move_and_copy_onto_existing_targets_replace_them_whole() {
    let gw = TestGateway::start();
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    assert_eq!(alice.mkcol("dir").status(), 201);
    assert_eq!(alice.mkcol("dir/sub").status(), 201);
    assert_eq!(
        alice.put("dir/sub/a.bin", random_bytes(MIB, 1)).status(),
        201
    );
    assert_eq!(alice.put("dir/b.bin", random_bytes(MIB, 2)).status(), 201);
    let new = random_bytes(MIB / 2, 3);
    assert_eq!(alice.put("new.bin", new.clone()).status(), 201);
    let dest = "/remote.php/dav/files/alice/dir";
    // Overwrite: F refuses and changes nothing.
    let res = alice
        .request("MOVE", &alice.url("new.bin"))
        .header("Destination", dest)
        .header("Overwrite", "F")
        .send()
        .unwrap();
    assert_eq!(res.status(), 412);
    assert_eq!(alice.get("dir/b.bin").status(), 200);
    // A file moved onto a folder replaces the whole folder.
    let res = alice
        .request("MOVE", &alice.url("new.bin"))
        .header("Destination", dest)
        .send()
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(alice.get_bytes("dir").unwrap(), new);
    assert_eq!(alice.get("new.bin").status(), 404);
    let stats = gw.stats();
    assert_eq!(stats.files, 1);
    assert_eq!(stats.logical_bytes, (MIB / 2) as u64);
    // COPY onto an existing file replaces it.
    assert_eq!(alice.put("other.bin", b"other".to_vec()).status(), 201);
    let res = alice
        .request("COPY", &alice.url("other.bin"))
        .header("Destination", dest)
        .send()
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(alice.get_bytes("dir").unwrap(), b"other");
    assert_eq!(gw.stats().files, 2);
}

/// COPY of a folder onto an existing folder replaces it in one transaction:
/// one refused (here over the quota) leaves the old destination whole,
/// where deleting it first and then copying entry by entry lost it.
#[test]
fn a_refused_folder_copy_leaves_the_destination_whole() {
    let gw = TestGateway::start();
    gw.add_user_with_quota("alice", "pw", 3 * MIB as u64 / 2);
    let alice = gw.client("alice", "pw");
    assert_eq!(alice.mkcol("src").status(), 201);
    for (name, seed) in [("src/a.bin", 1), ("src/b.bin", 2)] {
        assert_eq!(
            alice.put(name, random_bytes(MIB * 6 / 10, seed)).status(),
            201
        );
    }
    assert_eq!(alice.mkcol("dst").status(), 201);
    assert_eq!(alice.mkcol("dst/keep").status(), 201);
    let small = random_bytes(MIB / 10, 3);
    assert_eq!(alice.put("dst/keep/small.bin", small.clone()).status(), 201);
    let before = gw.stats();
    // 1.3 MiB held; replacing 0.1 by 1.2 would hold 2.4 > 1.5.
    let res = alice
        .request("COPY", &alice.url("src"))
        .header("Destination", "/remote.php/dav/files/alice/dst")
        .send()
        .unwrap();
    assert_eq!(res.status(), 507);
    assert_eq!(alice.get_bytes("dst/keep/small.bin").unwrap(), small);
    assert_eq!(alice.get("dst/a.bin").status(), 404);
    let after = gw.stats();
    assert_eq!(
        (after.files, after.logical_bytes),
        (before.files, before.logical_bytes)
    );
    // With room, the folder is replaced by the copy, whole.
    crate::common::wait(gw.meta.set_quota("alice", None)).unwrap();
    let res = alice
        .request("COPY", &alice.url("src"))
        .header("Destination", "/remote.php/dav/files/alice/dst")
        .send()
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(alice.get("dst/keep/small.bin").status(), 404);
    assert_eq!(
        alice.get_bytes("dst/b.bin").unwrap(),
        random_bytes(MIB * 6 / 10, 2)
    );
    assert_eq!(gw.stats().files, 4);
}

/// A client that sends its whole body before reading the reply still gets
/// the early 507 (the gateway reads and drops the rest of the body before
/// it closes), not a connection reset.
#[test]
fn an_early_refusal_reaches_a_client_still_sending() {
    let gw = TestGateway::start();
    gw.add_user_with_quota("alice", "pw", MIB as u64);
    let body = random_bytes(8 * MIB, 9);
    let mut req = format!(
        "PUT /remote.php/dav/files/alice/huge.bin HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n",
        basic("alice", "pw"),
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    let (status, reply) = raw_http(&gw.base, &req);
    assert_eq!(status, 507, "{reply}");
    assert!(reply.contains("quota"), "{reply}");
}
