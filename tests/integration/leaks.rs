//! Uploads that never commit leave nothing behind upstream, and the quota
//! holds while a body streams in: a PUT refused over quota (no
//! `Content-Length`), one whose client hangs up, one failing its checksum
//! and a refused chunked-upload part all have their objects deleted by the
//! collector; a re-upload of the same chunks racing that sweep never loses
//! them (invariant 3); chunked sessions count against every write; dead
//! properties are capped and count in the quota.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use crate::common::gateway::{basic, random_bytes, upload_in_background, Dav, TestGateway};
use crate::common::small_chunks;
use crate::common::wait;

const MIB: usize = 1 << 20;

on_both_backends!(
    with crate::common::small_chunks;
    a_streamed_upload_over_quota_stops_and_leaves_nothing,
    an_abandoned_upload_leaves_nothing,
    a_checksum_mismatch_leaves_nothing,
    a_refused_chunked_part_leaves_nothing
);

/// Runs the collector with no grace until the backend holds `objects`
/// objects and no pending record is left; fails if that never happens.
/// (Chunks an abandoned upload had in flight still finish first, so one
/// round may come too early.)
fn collect_until_back_to(gw: &TestGateway, objects: usize) {
    for _ in 0..100 {
        gw.collect_garbage(Duration::ZERO);
        let stats = gw.stats();
        if gw.object_files().len() == objects && stats.pending_objects == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the backend still holds {} objects (expected {objects}), {} pending records",
        gw.object_files().len(),
        gw.stats().pending_objects
    );
}

fn used(gw: &TestGateway, user: &str) -> u64 {
    wait(gw.meta.user(user)).unwrap().unwrap().used
}

/// Sends a request head, then `len` body bytes from a writer thread
/// (chunked transfer coding when `chunked`), and returns the reply's
/// status. The writer stops quietly when the gateway stops reading.
fn stream_request(gw: &TestGateway, head: String, len: usize, chunked: bool) -> u16 {
    let addr = gw.base.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let body = random_bytes(len, 77);
    let sender = std::thread::spawn(move || {
        writer.write_all(head.as_bytes())?;
        for piece in body.chunks(64 << 10) {
            if chunked {
                writer.write_all(format!("{:x}\r\n", piece.len()).as_bytes())?;
                writer.write_all(piece)?;
                writer.write_all(b"\r\n")?;
            } else {
                writer.write_all(piece)?;
            }
        }
        if chunked {
            writer.write_all(b"0\r\n\r\n")?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while !reply.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    let _ = sender.join();
    let text = String::from_utf8_lossy(&reply);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn put_head(gw: &TestGateway, user: &str, path: &str, length: Option<usize>) -> String {
    let framing = match length {
        Some(n) => format!("Content-Length: {n}"),
        None => "Transfer-Encoding: chunked".to_string(),
    };
    let host = gw.base.trim_start_matches("http://");
    format!(
        "PUT /remote.php/dav/files/{user}/{path} HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: {}\r\n{framing}\r\n\r\n",
        basic(user, "pw")
    )
}

fn a_streamed_upload_over_quota_stops_and_leaves_nothing(gw: TestGateway) {
    gw.add_user_with_quota("alice", "pw", 3 * MIB as u64);
    let alice = gw.client("alice", "pw");
    let kept = random_bytes(MIB, 1);
    assert_eq!(alice.put("kept.bin", kept.clone()).status(), 201);
    let (usage, objects) = (used(&gw, "alice"), gw.object_files().len());

    // 16 MiB without Content-Length into 2 MiB of room: refused at the
    // first byte past it, nothing committed.
    let head = put_head(&gw, "alice", "big.bin", None);
    assert_eq!(stream_request(&gw, head, 16 * MIB, true), 507);
    assert_eq!(alice.get("big.bin").status(), 404);
    assert_eq!(used(&gw, "alice"), usage, "usage unchanged");
    let stats = gw.stats();
    assert!(
        stats.pending_objects > 0 && stats.pending_bytes > 0,
        "what it stored is shown as pending: {stats:?}"
    );
    // The stream stopped near the quota instead of storing all 16 MiB.
    let stored: u64 = gw
        .object_files()
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    assert!(stored < 4 * MIB as u64, "{stored} bytes stored upstream");

    collect_until_back_to(&gw, objects);
    assert_eq!(alice.get_bytes("kept.bin").unwrap(), kept);
    // The room is still there for a PUT that fits.
    assert_eq!(alice.put("fits.bin", random_bytes(MIB, 2)).status(), 201);
}

fn an_abandoned_upload_leaves_nothing(gw: TestGateway) {
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let objects = gw.object_files().len();
    // Announce 16 MiB, send 8, hang up.
    let addr = gw.base.trim_start_matches("http://").to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(put_head(&gw, "alice", "cut.bin", Some(16 * MIB)).as_bytes())
        .unwrap();
    s.write_all(&random_bytes(8 * MIB, 3)).unwrap();
    // Wait until the gateway stored some of it, then disconnect.
    for _ in 0..100 {
        if gw.stats().pending_objects > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gw.stats().pending_objects > 0, "objects were stored");
    s.shutdown(Shutdown::Both).unwrap();
    drop(s);

    collect_until_back_to(&gw, objects);
    assert_eq!(alice.get("cut.bin").status(), 404);
    assert_eq!(used(&gw, "alice"), 0);
}

fn a_checksum_mismatch_leaves_nothing(gw: TestGateway) {
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let objects = gw.object_files().len();
    let res = alice
        .request("PUT", &alice.url("bad.bin"))
        .header("OC-Checksum", format!("SHA1:{}", "0".repeat(40)))
        .body(random_bytes(4 * MIB, 4))
        .send()
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(gw.stats().pending_objects > 0);
    collect_until_back_to(&gw, objects);
    assert_eq!(alice.get("bad.bin").status(), 404);
}

fn uploads_url(dav: &Dav, rest: &str) -> String {
    format!("{}/remote.php/dav/uploads/{}/{rest}", dav.base, dav.user)
}

fn a_refused_chunked_part_leaves_nothing(gw: TestGateway) {
    gw.add_user_with_quota("alice", "pw", 2 * MIB as u64);
    let alice = gw.client("alice", "pw");
    let objects = gw.object_files().len();
    let res = alice
        .request("MKCOL", &uploads_url(&alice, "t1"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 201);
    let host = gw.base.trim_start_matches("http://");
    let head = format!(
        "PUT /remote.php/dav/uploads/alice/t1/0000000000000000 HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        basic("alice", "pw")
    );
    assert_eq!(stream_request(&gw, head, 16 * MIB, true), 507);
    let listing = alice
        .request("PROPFIND", &uploads_url(&alice, "t1"))
        .header("Depth", "1")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!listing.contains("0000000000000000"), "{listing}");
    collect_until_back_to(&gw, objects);
    // A piece within the quota is still accepted.
    let res = alice
        .request("PUT", &uploads_url(&alice, "t1/0000000000000000"))
        .body(random_bytes(MIB, 5))
        .send()
        .unwrap();
    assert_eq!(res.status(), 201);
}

/// Uploads whose objects are being swept (abandoned ones) racing a
/// re-upload of the same bytes: every acknowledged file reads back whole.
#[test]
fn reuploads_racing_the_sweep_of_abandoned_objects_never_lose_chunks() {
    let gw = TestGateway::start_with(small_chunks);
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let data: Vec<Vec<u8>> = (0..3).map(|i| random_bytes(2 * MIB, 60 + i)).collect();
    for round in 0..6 {
        // Abandoned: every chunk of `data` is stored, pending, never committed.
        for (i, d) in data.iter().enumerate() {
            let res = alice
                .request("PUT", &alice.url(&format!("bad{i}")))
                .header("OC-Checksum", format!("SHA1:{}", "0".repeat(40)))
                .body(d.clone())
                .send()
                .unwrap();
            assert_eq!(res.status(), 400);
        }
        let uploader = upload_in_background(&gw.base, "alice", "pw", &format!("g{round}-"), &data);
        gw.collect_garbage(Duration::ZERO);
        uploader.join().unwrap();
        for (i, d) in data.iter().enumerate() {
            let name = format!("g{round}-{i}");
            assert_eq!(&alice.get_bytes(&name).unwrap(), d, "round {round}");
            alice.request("DELETE", &alice.url(&name)).send().unwrap();
        }
        // Whatever the interleaving, the collector ends with nothing left.
        collect_until_back_to(&gw, 0);
    }
}

#[test]
fn chunked_sessions_count_against_a_following_put() {
    let gw = TestGateway::start_with(small_chunks);
    gw.add_user_with_quota("alice", "pw", 4 * MIB as u64);
    let alice = gw.client("alice", "pw");
    let mkcol = alice
        .request("MKCOL", &uploads_url(&alice, "t"))
        .send()
        .unwrap();
    assert_eq!(mkcol.status(), 201);
    let part = alice
        .request("PUT", &uploads_url(&alice, "t/0000000000000000"))
        .body(random_bytes(3 * MIB, 6))
        .send()
        .unwrap();
    assert_eq!(part.status(), 201);
    let objects = gw.object_files().len();

    // Announced: refused before the body is read.
    assert_eq!(alice.put("a.bin", random_bytes(2 * MIB, 7)).status(), 507);
    // Streamed: refused at the first byte past the room left.
    let head = put_head(&gw, "alice", "b.bin", None);
    assert_eq!(stream_request(&gw, head, 2 * MIB, true), 507);
    // A second chunked session cannot take the room either.
    let mkcol = alice
        .request("MKCOL", &uploads_url(&alice, "u"))
        .send()
        .unwrap();
    assert_eq!(mkcol.status(), 201);
    let part = alice
        .request("PUT", &uploads_url(&alice, "u/0000000000000000"))
        .body(random_bytes(2 * MIB, 8))
        .send()
        .unwrap();
    assert_eq!(part.status(), 507);
    assert_eq!(used(&gw, "alice"), 0);
    collect_until_back_to(&gw, objects);

    // Once the session is gone, the room is back.
    let del = alice
        .request("DELETE", &uploads_url(&alice, "t"))
        .send()
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(alice.put("a.bin", random_bytes(2 * MIB, 7)).status(), 201);
}

fn proppatch(dav: &Dav, path: &str, props: &[(&str, String)]) -> reqwest::blocking::Response {
    let mut body = String::from(
        "<?xml version=\"1.0\"?><d:propertyupdate xmlns:d=\"DAV:\" xmlns:x=\"urn:x\"><d:set><d:prop>",
    );
    for (name, value) in props {
        body.push_str(&format!("<x:{name}>{value}</x:{name}>"));
    }
    body.push_str("</d:prop></d:set></d:propertyupdate>");
    dav.request("PROPPATCH", &dav.url(path))
        .header("Content-Type", "application/xml")
        .body(body)
        .send()
        .unwrap()
}

fn has_prop(dav: &Dav, path: &str, name: &str) -> bool {
    let body = format!(
        "<?xml version=\"1.0\"?><d:propfind xmlns:d=\"DAV:\" xmlns:x=\"urn:x\"><d:prop><x:{name}/></d:prop></d:propfind>"
    );
    let text = dav
        .request("PROPFIND", &dav.url(path))
        .header("Depth", "0")
        .body(body)
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.contains(&format!("</x:{name}>"))
}

#[test]
fn dead_properties_are_capped_and_count_in_the_quota() {
    let gw = TestGateway::start_with(|c| {
        c.limits.props_per_node = 3;
        c.limits.prop_value_bytes = 1000;
    });
    gw.add_user_with_quota("alice", "pw", 10_000);
    let alice = gw.client("alice", "pw");
    assert_eq!(alice.put("f", b"0123456789".to_vec()).status(), 201);
    assert_eq!(used(&gw, "alice"), 10);

    // One property: 207, and it costs quota.
    let res = proppatch(&alice, "f", &[("p0", "v0".into())]);
    assert_eq!(res.status(), 207);
    assert!(has_prop(&alice, "f", "p0"));
    let with_one = used(&gw, "alice");
    assert!(with_one > 10, "{with_one}");

    // Three more would make four: refused whole, none applied.
    let res = proppatch(
        &alice,
        "f",
        &[
            ("p1", "v1".into()),
            ("p2", "v2".into()),
            ("p3", "v3".into()),
        ],
    );
    assert_eq!(res.status(), 507);
    let text = res.text().unwrap();
    assert!(text.contains("at most 3"), "{text}");
    assert!(!has_prop(&alice, "f", "p1"));
    assert_eq!(used(&gw, "alice"), with_one);

    // A value over 1000 bytes: refused.
    let res = proppatch(&alice, "f", &[("big", format!("v{}", "x".repeat(1000)))]);
    assert_eq!(res.status(), 507);
    assert!(!has_prop(&alice, "f", "big"));

    // Property bytes cannot go past the quota either: fill it with 4
    // files' worth of properties, up to the limit per node.
    let mut refused = false;
    for i in 0..20 {
        let name = format!("g{i}");
        assert_eq!(alice.put(&name, Vec::new()).status(), 201);
        let props: Vec<(&str, String)> = ["a", "b", "c"]
            .iter()
            .map(|p| (*p, format!("v{}", "y".repeat(900))))
            .collect();
        let res = proppatch(&alice, &name, &props);
        if res.status() == 507 {
            assert!(!has_prop(&alice, &name, "a"));
            refused = true;
            break;
        }
        assert_eq!(res.status(), 207);
    }
    assert!(refused, "the quota stopped the properties");
    assert!(used(&gw, "alice") <= 10_000);

    // Deleting a node gives its properties' bytes back.
    let before = used(&gw, "alice");
    assert_eq!(
        alice
            .request("DELETE", &alice.url("g0"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert!(used(&gw, "alice") < before);
}
