//! The file ids and etags a user sees reveal nothing about other users'
//! activity, and behave as before: stable across restarts and moves, the
//! same in every reply, and usable in conditional requests. Against a real
//! gateway over HTTP.

use std::collections::BTreeMap;

use crate::common::gateway::{Dav, TestGateway};
use crate::common::wait;
use dedupdav::meta::Owner;
use reqwest::blocking::Response;

const PROPS: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
<d:propfind xmlns:d=\"DAV:\" xmlns:oc=\"http://owncloud.org/ns\"><d:prop>\
<d:getetag/><oc:id/><oc:fileid/><oc:permissions/></d:prop></d:propfind>";

/// What a client sees of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    etag: String,
    fileid: String,
    oc_id: String,
}

fn header(res: &Response, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_string()
}

fn between(text: &str, open: &str, close: &str) -> Option<String> {
    let i = text.find(open)? + open.len();
    let j = text[i..].find(close)? + i;
    Some(text[i..j].to_string())
}

/// PROPFIND of `path` at `depth`: href → what the client sees.
fn listing(dav: &Dav, path: &str, depth: &str) -> BTreeMap<String, Seen> {
    let res = dav
        .request("PROPFIND", &dav.url(path))
        .header("Depth", depth)
        .body(PROPS)
        .send()
        .expect("PROPFIND");
    assert_eq!(res.status().as_u16(), 207);
    let text = res.text().expect("body");
    text.split("<D:response>")
        .skip(1)
        .map(|r| {
            let prop = |name: &str| {
                between(r, &format!("<{name}>"), &format!("</{name}>"))
                    .unwrap_or_else(|| panic!("no {name} in {r}"))
            };
            let seen = Seen {
                etag: prop("D:getetag"),
                fileid: prop("oc:fileid"),
                oc_id: prop("oc:id"),
            };
            (prop("D:href"), seen)
        })
        .collect()
}

/// Everything `dav` sees of its tree: the root and `docs` listed, the file
/// `top.txt` on its own, and the download headers of `top.txt`.
fn everything(dav: &Dav) -> (BTreeMap<String, Seen>, String, String) {
    let mut all = listing(dav, "", "1");
    all.extend(listing(dav, "docs", "1"));
    all.extend(listing(dav, "top.txt", "0"));
    let get = dav.get("top.txt");
    assert_eq!(get.status().as_u16(), 200);
    (all, header(&get, "ETag"), header(&get, "OC-ETag"))
}

/// The internal node of `user`'s `path`, read from the index.
fn internal(gw: &TestGateway, user: &str, path: &str) -> dedupdav::meta::Node {
    let record = wait(gw.meta.user(user)).unwrap().unwrap();
    let names: Vec<String> = path.split('/').map(str::to_string).collect();
    wait(gw.meta.lookup(&Owner::from(&record), &names)).unwrap()
}

fn fileid_of(dav: &Dav, path: &str) -> u64 {
    let seen = listing(dav, path, "0");
    let only = seen.values().next().expect("one entry");
    only.fileid.parse().expect("oc:fileid is a number")
}

/// Bob creating, changing and deleting many files.
fn bob_works(bob: &Dav, round: usize) {
    assert_eq!(bob.mkcol(&format!("b{round}")).status().as_u16(), 201);
    for i in 0..30 {
        let p = format!("b{round}/f{i}.txt");
        assert_eq!(bob.put(&p, vec![i as u8; 10]).status().as_u16(), 201);
        assert_eq!(bob.put(&p, vec![i as u8; 20]).status().as_u16(), 204);
    }
    for i in 0..30 {
        let res = bob
            .request("DELETE", &bob.url(&format!("b{round}/f{i}.txt")))
            .send()
            .unwrap();
        assert_eq!(res.status().as_u16(), 204);
    }
}

#[test]
fn what_alice_sees_does_not_move_when_bob_works() {
    let gw = TestGateway::start();
    gw.add_user("alice", "pw-a");
    gw.add_user("bob", "pw-b");
    let alice = gw.client("alice", "pw-a");
    let bob = gw.client("bob", "pw-b");
    assert_eq!(alice.mkcol("docs").status().as_u16(), 201);
    assert_eq!(
        alice.put("docs/a.txt", b"a".to_vec()).status().as_u16(),
        201
    );
    let put = alice.put("top.txt", b"top".to_vec());
    assert_eq!(put.status().as_u16(), 201);

    let before = everything(&alice);
    // What PUT answered is what the listing shows.
    let top = &before
        .0
        .values()
        .find(|s| s.oc_id == header(&put, "OC-FileId"));
    assert_eq!(top.map(|s| s.etag.clone()), Some(header(&put, "ETag")));
    assert_eq!(before.1, header(&put, "ETag"));
    assert_eq!(before.2, before.1);

    bob_works(&bob, 0);
    assert_eq!(everything(&alice), before, "alice's view moved");

    // The visible values are not the internal counters.
    let node = internal(&gw, "alice", "top.txt");
    let fileid = fileid_of(&alice, "top.txt");
    assert_ne!(fileid, node.id);
    assert_ne!(before.1, format!("\"{}\"", node.etag()));
    assert!(!before.1.contains('-'), "{}", before.1);
    let oc_id = listing(&alice, "top.txt", "0")
        .into_values()
        .next()
        .unwrap()
        .oc_id;
    assert!(oc_id.starts_with(&fileid.to_string()), "{oc_id}");
}

#[test]
fn new_ids_and_etags_do_not_count_other_users_work() {
    let gw = TestGateway::start();
    gw.add_user("alice", "pw-a");
    gw.add_user("bob", "pw-b");
    let alice = gw.client("alice", "pw-a");
    let bob = gw.client("bob", "pw-b");

    assert_eq!(alice.put("one.txt", b"1".to_vec()).status().as_u16(), 201);
    let first = fileid_of(&alice, "one.txt");
    let first_etag = header(&alice.get("one.txt"), "ETag");
    bob_works(&bob, 1);
    assert_eq!(alice.put("two.txt", b"2".to_vec()).status().as_u16(), 201);
    assert_eq!(alice.put("one.txt", b"1b".to_vec()).status().as_u16(), 204);
    let second = fileid_of(&alice, "two.txt");
    let second_etag = header(&alice.get("one.txt"), "ETag");

    // Internally, bob's 31 folders and files lie between alice's two, and
    // 91 of his changes between her two versions of one.txt ...
    let (n1, n2) = (
        internal(&gw, "alice", "one.txt"),
        internal(&gw, "alice", "two.txt"),
    );
    assert!(n2.id - n1.id > 30, "{} {}", n1.id, n2.id);
    assert!(n1.version > 91);
    // ... which the ids alice sees do not show: they are 52-bit values in
    // an order and at distances of their own (a gap this small by chance
    // is a 1 in 2^30 event).
    assert!(
        first.abs_diff(second) > 1 << 22,
        "ids {first} and {second} are close"
    );
    assert!(first < 1 << 53 && second < 1 << 53);
    for e in [&first_etag, &second_etag] {
        let bare = e.trim_matches('"');
        assert_eq!(bare.len(), 20, "{e}");
        assert!(bare.bytes().all(|c| c.is_ascii_hexdigit()), "{e}");
    }
    assert_ne!(first_etag, second_etag, "a change changes the etag");
}

#[test]
fn ids_survive_a_restart_and_a_move() {
    let mut gw = TestGateway::start();
    gw.add_user("alice", "pw-a");
    let alice = gw.client("alice", "pw-a");
    assert_eq!(alice.mkcol("docs").status().as_u16(), 201);
    assert_eq!(
        alice.put("docs/a.txt", b"a".to_vec()).status().as_u16(),
        201
    );
    assert_eq!(alice.put("top.txt", b"top".to_vec()).status().as_u16(), 201);
    let before = everything(&alice);

    // Reopen the same data directory (and so the same master key).
    let data = std::mem::replace(&mut gw.data, tempfile::tempdir().unwrap());
    drop(gw);
    let dir = data.path().to_path_buf();
    let gw = TestGateway::start_with(|c| c.data_dir = dir);
    let alice = gw.client("alice", "pw-a");
    assert_eq!(everything(&alice), before, "a restart changed ids or etags");

    let a_before = before
        .0
        .iter()
        .find(|(href, _)| href.ends_with("/docs/a.txt"))
        .map(|(_, s)| s.clone())
        .unwrap();
    let mv = alice
        .request("MOVE", &alice.url("docs/a.txt"))
        .header("Destination", alice.url("moved.txt"))
        .send()
        .unwrap();
    assert_eq!(mv.status().as_u16(), 201);
    assert_eq!(header(&mv, "OC-FileId"), a_before.oc_id);
    assert_eq!(header(&mv, "ETag"), a_before.etag);
    let after = listing(&alice, "moved.txt", "0");
    assert_eq!(after.values().next(), Some(&a_before));
    // The folder it left changed, so its etag did.
    let docs_now = listing(&alice, "docs", "0");
    let docs_before = before
        .0
        .iter()
        .find(|(href, _)| href.ends_with("/docs/"))
        .map(|(_, s)| s.clone())
        .unwrap();
    let docs_now = docs_now.values().next().unwrap();
    assert_ne!(docs_now.etag, docs_before.etag);
    assert_eq!(docs_now.fileid, docs_before.fileid);
    drop(data);
}

/// The WebDAV layer (which answers listings with dead properties) and the
/// front's own listing show the same values.
#[test]
fn both_listing_paths_agree() {
    let gw = TestGateway::start();
    gw.add_user("alice", "pw-a");
    let alice = gw.client("alice", "pw-a");
    assert_eq!(alice.mkcol("docs").status().as_u16(), 201);
    assert_eq!(
        alice.put("docs/a.txt", b"a".to_vec()).status().as_u16(),
        201
    );
    assert_eq!(
        alice.put("docs/b.txt", b"b".to_vec()).status().as_u16(),
        201
    );
    let fast = listing(&alice, "docs", "1");
    let patch = alice
        .request("PROPPATCH", &alice.url("docs/b.txt"))
        .body(
            "<?xml version=\"1.0\"?><d:propertyupdate xmlns:d=\"DAV:\" xmlns:x=\"urn:x\">\
             <d:set><d:prop><x:colour>red</x:colour></d:prop></d:set></d:propertyupdate>",
        )
        .send()
        .unwrap();
    assert_eq!(patch.status().as_u16(), 207);
    let slow = listing(&alice, "docs", "1");
    assert_eq!(fast, slow);
}

#[test]
fn conditional_requests_use_the_etags_clients_saw() {
    let gw = TestGateway::start();
    gw.add_user("alice", "pw-a");
    let alice = gw.client("alice", "pw-a");
    let put = alice.put("c.txt", b"first".to_vec());
    assert_eq!(put.status().as_u16(), 201);
    let etag = header(&put, "ETag");
    let get_with = |name: &str, value: &str| {
        alice
            .request("GET", &alice.url("c.txt"))
            .header(name, value)
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(get_with("If-None-Match", &etag), 304);
    assert_eq!(get_with("If-None-Match", "\"00000000000000000000\""), 200);
    assert_eq!(get_with("If-Match", &etag), 200);
    assert_eq!(get_with("If-Match", "\"00000000000000000000\""), 412);

    let put_with = |name: &str, value: String, body: &[u8]| {
        alice
            .request("PUT", &alice.url("c.txt"))
            .header(name, value)
            .body(body.to_vec())
            .send()
            .unwrap()
    };
    let second = put_with("If-Match", etag.clone(), b"second");
    assert_eq!(second.status().as_u16(), 204);
    let new_etag = header(&second, "ETag");
    assert_ne!(new_etag, etag);
    assert_eq!(
        put_with("If-Match", etag.clone(), b"stale")
            .status()
            .as_u16(),
        412
    );
    // The `If` header with an entity tag (RFC 4918 §10.4).
    let target = alice.url("c.txt");
    let stale = put_with("If", format!("<{target}> ([{etag}])"), b"stale");
    assert_eq!(stale.status().as_u16(), 412);
    let third = put_with("If", format!("<{target}> ([{new_etag}])"), b"third");
    assert_eq!(third.status().as_u16(), 204);
    assert_eq!(alice.get_bytes("c.txt").unwrap(), b"third");
    let listed = listing(&alice, "c.txt", "0");
    assert_eq!(listed.values().next().unwrap().etag, header(&third, "ETag"));
}
