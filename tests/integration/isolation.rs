//! Users are isolated: no request of one user reads, lists, changes or
//! learns the existence of anything of another (invariant 5).

use crate::common::gateway::{basic, raw_http, TestGateway};

const SECRET: &[u8] = b"alice's private numbers: 4711";

on_both_backends!(
    every_method_on_another_users_path_is_refused,
    destinations_inside_another_tree_are_refused,
    encoded_traversal_stays_inside_the_own_tree,
    other_users_and_missing_users_look_the_same,
    locks_are_per_user
);

fn setup(gw: TestGateway) -> TestGateway {
    gw.add_user("alice", "pw-a");
    gw.add_user("bob", "pw-b");
    let alice = gw.client("alice", "pw-a");
    assert_eq!(alice.mkcol("secret").status(), 201);
    assert_eq!(alice.put("secret/a.txt", SECRET.to_vec()).status(), 201);
    let bob = gw.client("bob", "pw-b");
    assert_eq!(bob.put("mine.txt", b"bob's".to_vec()).status(), 201);
    gw
}

fn assert_alice_untouched(gw: &TestGateway) {
    let alice = gw.client("alice", "pw-a");
    assert_eq!(alice.get_bytes("secret/a.txt").unwrap(), SECRET);
    let listing = alice.propfind("secret/", "1").text().unwrap();
    assert_eq!(listing.matches("<D:response>").count(), 2, "{listing}");
}

fn every_method_on_another_users_path_is_refused(gw: TestGateway) {
    let gw = setup(gw);
    let bob = gw.client("bob", "pw-b");
    let target = format!("{}/remote.php/dav/files/alice/secret/a.txt", gw.base);
    let folder = format!("{}/remote.php/dav/files/alice/secret/", gw.base);
    let newdir = format!("{folder}new/");
    let lock_body = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"#;
    let cases: Vec<(&str, &str, Option<&str>)> = vec![
        ("GET", &target, None),
        ("HEAD", &target, None),
        ("PUT", &target, Some("overwritten")),
        ("DELETE", &target, None),
        ("PROPFIND", &folder, None),
        (
            "PROPPATCH",
            &target,
            Some(
                r#"<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:"><D:set><D:prop><x xmlns="urn:x">1</x></D:prop></D:set></D:propertyupdate>"#,
            ),
        ),
        ("MKCOL", &newdir, None),
        ("LOCK", &target, Some(lock_body)),
        ("UNLOCK", &target, None),
        ("OPTIONS", &target, None),
    ];
    for (method, url, body) in cases {
        let mut req = bob.request(method, url).header("Depth", "1");
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let res = req.send().unwrap();
        let status = res.status().as_u16();
        let text = res.text().unwrap_or_default();
        assert!(status == 403 || status == 404, "{method} {url} -> {status}");
        assert!(
            !text.contains("4711") && !text.contains("a.txt"),
            "{method} leaked: {text}"
        );
    }
    for method in ["MOVE", "COPY"] {
        let res = bob
            .request(method, &target)
            .header(
                "Destination",
                format!("{}/remote.php/dav/files/bob/stolen.txt", gw.base),
            )
            .send()
            .unwrap();
        assert!(matches!(res.status().as_u16(), 403 | 404), "{method}");
    }
    assert_eq!(bob.get("stolen.txt").status(), 404);
    assert_alice_untouched(&gw);
}

fn destinations_inside_another_tree_are_refused(gw: TestGateway) {
    let gw = setup(gw);
    let bob = gw.client("bob", "pw-b");
    let dests = [
        format!("{}/remote.php/dav/files/alice/secret/planted.txt", gw.base),
        "/remote.php/dav/files/alice/secret/planted.txt".to_string(),
        "/remote.php/dav/files/alice/secret/a.txt".to_string(),
        "/remote.php/dav/files/bob/..%2falice/secret/a.txt".to_string(),
        "/remote.php/dav/files/bob%2f..%2falice/secret/a.txt".to_string(),
        "http://elsewhere.example/remote.php/dav/files/alice/x".to_string(),
    ];
    for dest in &dests {
        for method in ["COPY", "MOVE"] {
            let res = bob
                .request(method, &bob.url("mine.txt"))
                .header("Destination", dest)
                .header("Overwrite", "T")
                .send()
                .unwrap();
            let s = res.status().as_u16();
            assert!(
                s == 403 || s == 400 || s == 404 || s == 409,
                "{method} to {dest} -> {s}"
            );
        }
    }
    assert_eq!(bob.get_bytes("mine.txt").unwrap(), b"bob's");
    assert_alice_untouched(&gw);
}

fn encoded_traversal_stays_inside_the_own_tree(gw: TestGateway) {
    let gw = setup(gw);
    let auth = basic("bob", "pw-b");
    let paths = [
        "/remote.php/dav/files/bob/%2e%2e/alice/secret/a.txt",
        "/remote.php/dav/files/bob/..%2falice/secret/a.txt",
        "/remote.php/dav/files/bob/..%2f..%2fdav/files/alice/secret/a.txt",
        "/remote.php/dav/files/bob/../alice/secret/a.txt",
        "/remote.php/dav/files/bob/%2e%2e%2f%2e%2e%2f%2e%2e%2ffiles/alice/secret/a.txt",
        "/remote.php/webdav/%2e%2e/%2e%2e/dav/files/alice/secret/a.txt",
        "/remote.php/webdav/..%5c..%5calice/secret/a.txt",
        "/remote.php/dav/files/alice%2f..%2fbob/../alice/secret/a.txt",
    ];
    for p in paths {
        for method in ["GET", "PROPFIND", "DELETE"] {
            let req = format!(
                "{method} {p} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nDepth: 0\r\nConnection: close\r\n\r\n"
            );
            let (status, body) = raw_http(&gw.base, req.as_bytes());
            assert!(
                !(200..300).contains(&status) || status == 207 && !body.contains("a.txt"),
                "{method} {p} -> {status}: {body}"
            );
            assert!(!body.contains("4711"), "{method} {p} leaked content");
        }
    }
    assert_alice_untouched(&gw);
}

fn other_users_and_missing_users_look_the_same(gw: TestGateway) {
    let gw = setup(gw);
    let bob = gw.client("bob", "pw-b");
    let a = bob
        .request(
            "GET",
            &format!("{}/remote.php/dav/files/alice/secret/a.txt", gw.base),
        )
        .send()
        .unwrap();
    let (sa, ba) = (a.status(), a.text().unwrap());
    let c = bob
        .request(
            "GET",
            &format!("{}/remote.php/dav/files/carol/secret/a.txt", gw.base),
        )
        .send()
        .unwrap();
    let (sc, bc) = (c.status(), c.text().unwrap());
    assert_eq!(sa, sc);
    assert_eq!(ba, bc);
    // Bob's own listing shows only his things.
    let listing = bob.propfind("", "1").text().unwrap();
    assert!(listing.contains("mine.txt"));
    assert!(!listing.contains("secret"));
}

fn locks_are_per_user(gw: TestGateway) {
    let gw = setup(gw);
    let alice = gw.client("alice", "pw-a");
    let bob = gw.client("bob", "pw-b");
    let body = r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype><D:owner>alice</D:owner></D:lockinfo>"#;
    // Both lock a file at the same relative path in their own trees.
    assert_eq!(alice.put("same.txt", b"a".to_vec()).status(), 201);
    assert_eq!(bob.put("same.txt", b"b".to_vec()).status(), 201);
    let res = alice
        .request("LOCK", &alice.url("same.txt"))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    // Alice's lock does not affect Bob, nor appear in his lock discovery.
    let bob_body = body.replace(">alice<", ">bob<");
    let res = bob
        .request("LOCK", &bob.url("same.txt"))
        .body(bob_body)
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        bob.put("same.txt", b"b2".to_vec()).status(),
        423,
        "bob's own lock holds"
    );
    let disc = bob.propfind("same.txt", "0").text().unwrap();
    assert!(!disc.contains(">alice<"), "{disc}");
}

/// A user name with a character clients percent-encode works in either form.
#[test]
fn percent_encoded_user_names_reach_the_own_tree() {
    let gw = TestGateway::start();
    gw.add_user("al@ice", "pw");
    let http = reqwest::blocking::Client::new();
    let enc = format!("{}/remote.php/dav/files/al%40ice", gw.base);
    let plain = format!("{}/remote.php/dav/files/al@ice", gw.base);
    let res = http
        .put(format!("{enc}/a.txt"))
        .basic_auth("al@ice", Some("pw"))
        .body("one")
        .send()
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = http
        .get(format!("{plain}/a.txt"))
        .basic_auth("al@ice", Some("pw"))
        .send()
        .unwrap();
    assert_eq!(res.text().unwrap(), "one");
    let res = http
        .request(
            reqwest::Method::from_bytes(b"MOVE").unwrap(),
            format!("{plain}/a.txt"),
        )
        .header("Destination", "/remote.php/dav/files/al%40ice/b.txt")
        .basic_auth("al@ice", Some("pw"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = http
        .request(
            reqwest::Method::from_bytes(b"PROPFIND").unwrap(),
            format!("{enc}/"),
        )
        .header("Depth", "1")
        .basic_auth("al@ice", Some("pw"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 207);
    assert!(res.text().unwrap().contains("b.txt"));
}
