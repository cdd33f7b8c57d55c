//! What a hostile or careless client tries gets a clear error, changes
//! nothing and leaves the gateway serving (invariant 7): nested XML bodies,
//! bodies longer or shorter than announced, destructive requests on the
//! root, `..` names, Range floods, locks that are never released, and a
//! download whose first object is tampered with.

use std::time::Duration;

use crate::common::gateway::{basic, random_bytes, raw_http, TestGateway};

on_both_backends!(
    short_or_long_finder_put_keeps_the_previous_version,
    tampered_first_chunk_is_an_error_status
);

/// A body nested `depth` elements deep, of the kind that overflowed the
/// WebDAV layer's recursive parser.
fn nested_body(outer: &str, depth: usize) -> String {
    let mut s = format!("<?xml version=\"1.0\"?><D:{outer} xmlns:D=\"DAV:\">");
    for _ in 0..depth {
        s.push_str("<D:prop>");
    }
    for _ in 0..depth {
        s.push_str("</D:prop>");
    }
    s.push_str(&format!("</D:{outer}>"));
    s
}

#[test]
fn deeply_nested_xml_is_a_400_and_the_gateway_keeps_serving() {
    let gw = TestGateway::start();
    gw.add_user("alice", "pw");
    let dav = gw.client("alice", "pw");
    assert!(dav.put("f.txt", b"hello".to_vec()).status().is_success());
    for (method, outer) in [
        ("PROPFIND", "propfind"),
        ("PROPPATCH", "propertyupdate"),
        ("LOCK", "lockinfo"),
    ] {
        let body = nested_body(outer, 2000);
        assert!(body.len() < 40_000);
        let res = dav
            .request(method, &dav.url("f.txt"))
            .header("Depth", "0")
            .body(body)
            .send()
            .expect("the gateway answers");
        assert_eq!(res.status(), 400, "{method}");
        let text = res.text().unwrap();
        assert!(text.contains("deeper than"), "{method}: {text}");
    }
    // An entity-expansion body and an oversize one.
    let laughs = "<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaa\">\
                  <!ENTITY b \"&a;&a;&a;&a;\">]><D:propfind xmlns:D=\"DAV:\">&b;</D:propfind>";
    let res = dav
        .request("PROPFIND", &dav.url("f.txt"))
        .header("Depth", "0")
        .body(laughs)
        .send()
        .unwrap();
    assert_eq!(res.status(), 400);
    let huge = format!(
        "<D:propfind xmlns:D=\"DAV:\"><D:prop>{}</D:prop></D:propfind>",
        "<D:x/>".repeat(200_000)
    );
    let res = dav
        .request("PROPFIND", &dav.url("f.txt"))
        .header("Depth", "0")
        .body(huge)
        .send()
        .unwrap();
    assert_eq!(res.status(), 413);
    // Still serving, nothing changed.
    assert_eq!(dav.get_bytes("f.txt").unwrap(), b"hello");
    assert_eq!(dav.propfind("", "1").status(), 207);
}

/// macOS Finder sends `Transfer-Encoding: chunked` with the length in
/// `X-Expected-Entity-Length`; a body that does not match it must not
/// replace the file (it was replaced, then answered 400).
fn short_or_long_finder_put_keeps_the_previous_version(gw: TestGateway) {
    gw.add_user("alice", "pw");
    let dav = gw.client("alice", "pw");
    let old = random_bytes(300_000, 1);
    assert!(dav.put("doc.bin", old.clone()).status().is_success());
    let auth = basic("alice", "pw");
    for (announced, sent) in [(100usize, 5000usize), (5000, 100), (0, 10)] {
        for path in ["doc.bin", "new.bin"] {
            let body = random_bytes(sent, 2);
            let mut req = format!(
                "PUT /remote.php/dav/files/alice/{path} HTTP/1.1\r\nHost: x\r\n\
                 Authorization: {auth}\r\nTransfer-Encoding: chunked\r\n\
                 X-Expected-Entity-Length: {announced}\r\nConnection: close\r\n\r\n{:x}\r\n",
                body.len()
            )
            .into_bytes();
            req.extend_from_slice(&body);
            req.extend_from_slice(b"\r\n0\r\n\r\n");
            let (status, text) = raw_http(&gw.base, &req);
            assert_eq!(status, 400, "announced {announced}, sent {sent}: {text}");
            assert!(text.contains("announced"), "{text}");
        }
        assert_eq!(dav.get_bytes("doc.bin").unwrap(), old, "old version intact");
        assert_eq!(dav.get("new.bin").status(), 404, "nothing created");
    }
    // The exact length is stored.
    let body = random_bytes(5000, 3);
    let mut req = format!(
        "PUT /remote.php/dav/files/alice/doc.bin HTTP/1.1\r\nHost: x\r\n\
         Authorization: {auth}\r\nTransfer-Encoding: chunked\r\n\
         X-Expected-Entity-Length: 5000\r\nConnection: close\r\n\r\n{:x}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    let (status, _) = raw_http(&gw.base, &req);
    assert_eq!(status, 204);
    assert_eq!(dav.get_bytes("doc.bin").unwrap(), body);
}

#[test]
fn the_root_cannot_be_deleted_moved_or_replaced() {
    let gw = TestGateway::start();
    gw.add_user("alice", "pw");
    let dav = gw.client("alice", "pw");
    assert!(dav.mkcol("dir").status().is_success());
    assert!(dav.put("dir/a.txt", b"a".to_vec()).status().is_success());
    assert!(dav.put("b.txt", b"b".to_vec()).status().is_success());
    let before = gw.stats();
    for url in [
        dav.url(""),
        dav.url("/"),
        format!("{}/remote.php/webdav/", gw.base),
        format!("{}/remote.php/webdav", gw.base),
    ] {
        let res = dav.request("DELETE", &url).send().unwrap();
        assert_eq!(res.status(), 403, "DELETE {url}");
        let res = dav
            .request("MOVE", &url)
            .header("Destination", dav.url("moved/"))
            .send()
            .unwrap();
        assert_eq!(res.status(), 403, "MOVE {url}");
    }
    for method in ["COPY", "MOVE"] {
        let res = dav
            .request(method, &dav.url("dir/"))
            .header("Destination", dav.url(""))
            .header("Overwrite", "T")
            .send()
            .unwrap();
        assert_eq!(res.status(), 403, "{method} onto the root");
    }
    assert_eq!(dav.get_bytes("dir/a.txt").unwrap(), b"a");
    assert_eq!(dav.get_bytes("b.txt").unwrap(), b"b");
    let after = gw.stats();
    assert_eq!(before.files, after.files);
}

#[test]
fn dot_segments_are_a_bad_request() {
    let gw = TestGateway::start();
    gw.add_user("alice", "pw");
    gw.add_user("bob", "pw");
    let bob = gw.client("bob", "pw");
    assert!(bob.put("secret.txt", b"s".to_vec()).status().is_success());
    let auth = basic("alice", "pw");
    for path in [
        "/remote.php/dav/files/alice/../bob/secret.txt",
        "/remote.php/dav/files/alice/%2e%2e/bob/secret.txt",
        "/remote.php/dav/files/alice/x/%2E%2E/%2e%2e/bob/secret.txt",
        "/remote.php/webdav/./secret.txt",
        "/remote.php/dav/files/alice/a%2fb",
        "/remote.php/dav/files/alice/%ff%fe",
    ] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nConnection: close\r\n\r\n"
        );
        let (status, body) = raw_http(&gw.base, req.as_bytes());
        assert_eq!(status, 400, "{path}: {body}");
        assert!(!body.contains('s') || !body.contains("secret"), "{body}");
    }
    let alice = gw.client("alice", "pw");
    assert!(alice.put("mine.txt", b"m".to_vec()).status().is_success());
    let res = alice
        .request("MOVE", &alice.url("mine.txt"))
        .header(
            "Destination",
            format!("{}/remote.php/dav/files/alice/../bob/x.txt", gw.base),
        )
        .send()
        .unwrap();
    assert!(
        res.status() == 400 || res.status() == 403,
        "{}",
        res.status()
    );
    assert_eq!(alice.get_bytes("mine.txt").unwrap(), b"m");
    assert_eq!(bob.get_bytes("secret.txt").unwrap(), b"s");
}

#[test]
fn range_floods_are_merged_or_refused() {
    let gw = TestGateway::start();
    gw.add_user("alice", "pw");
    let dav = gw.client("alice", "pw");
    let data = random_bytes(200_000, 7);
    assert!(dav.put("r.bin", data.clone()).status().is_success());
    // Thousands of adjacent one-byte parts merge into one.
    let adjacent: Vec<String> = (0..3000).map(|i| format!("{i}-{i}")).collect();
    let res = dav
        .request("GET", &dav.url("r.bin"))
        .header("Range", format!("bytes={}", adjacent.join(",")))
        .send()
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().unwrap().as_ref(), &data[..3000]);
    // Thousands of separate parts are refused.
    let apart: Vec<String> = (0..3000)
        .map(|i| format!("{}-{}", i * 10, i * 10))
        .collect();
    let res = dav
        .request("GET", &dav.url("r.bin"))
        .header("Range", format!("bytes={}", apart.join(",")))
        .send()
        .unwrap();
    assert_eq!(res.status(), 416);
    // Ordinary ranges still work.
    let res = dav
        .request("GET", &dav.url("r.bin"))
        .header("Range", "bytes=100-199")
        .send()
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().unwrap().as_ref(), &data[100..200]);
}

fn lock_body() -> &'static str {
    "<?xml version=\"1.0\" encoding=\"utf-8\"?><D:lockinfo xmlns:D=\"DAV:\">\
     <D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>\
     <D:owner>test</D:owner></D:lockinfo>"
}

#[test]
fn locks_expire_and_are_capped_per_user() {
    let gw = TestGateway::start_with(|c| c.limits.locks_per_user = 3);
    gw.add_user("alice", "pw");
    let dav = gw.client("alice", "pw");
    assert!(dav.put("l.txt", b"v1".to_vec()).status().is_success());
    let res = dav
        .request("LOCK", &dav.url("l.txt"))
        .header("Timeout", "Second-2")
        .body(lock_body())
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().contains_key("lock-token"));
    assert_eq!(dav.put("l.txt", b"v2".to_vec()).status(), 423, "locked");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        dav.put("l.txt", b"v3".to_vec()).status().is_success(),
        "the 2-second lock is gone after 3 seconds"
    );
    assert_eq!(dav.get_bytes("l.txt").unwrap(), b"v3");
    // At most three live locks; the fourth is refused with 507.
    for i in 0..3 {
        assert!(dav
            .put(&format!("n{i}"), b"x".to_vec())
            .status()
            .is_success());
        let res = dav
            .request("LOCK", &dav.url(&format!("n{i}")))
            .header("Timeout", "Second-600")
            .body(lock_body())
            .send()
            .unwrap();
        assert_eq!(res.status(), 200, "lock {i}");
    }
    let res = dav
        .request("LOCK", &dav.url("l.txt"))
        .body(lock_body())
        .send()
        .unwrap();
    assert_eq!(res.status(), 507);
    // A huge lock owner is refused before it is stored.
    let owner = format!(
        "<D:lockinfo xmlns:D=\"DAV:\"><D:lockscope><D:exclusive/></D:lockscope>\
         <D:locktype><D:write/></D:locktype><D:owner>{}</D:owner></D:lockinfo>",
        "o".repeat(20_000)
    );
    let res = dav
        .request("LOCK", &dav.url("l.txt"))
        .body(owner)
        .send()
        .unwrap();
    assert_eq!(res.status(), 400);
}

/// A download whose first object fails authentication answers with an
/// error status, not `200` and an empty body.
fn tampered_first_chunk_is_an_error_status(gw: TestGateway) {
    gw.add_user("alice", "pw");
    let dav = gw.client("alice", "pw");
    let data = random_bytes(100_000, 9);
    assert!(dav.put("t.bin", data).status().is_success());
    let objects = gw.object_files();
    assert_eq!(objects.len(), 1);
    // The middle byte lies in the chunk's sealed bytes, whether the chunk
    // is an object of its own or the one entry of a pack.
    let mut bytes = std::fs::read(&objects[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    std::fs::write(&objects[0], bytes).unwrap();
    let res = dav.get("t.bin");
    assert_eq!(res.status(), 502);
    assert!(res.text().unwrap().contains("<s:exception>"));
}

#[test]
fn the_index_and_data_dir_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let gw = TestGateway::start_with(|c| c.data_dir = data.clone());
    gw.add_user("alice", "pw");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("index.redb")), 0o600);
    assert_eq!(mode(&data.join("master.key")), 0o600);
}
