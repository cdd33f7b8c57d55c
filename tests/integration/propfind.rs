//! PROPFIND answered by the front (Depth 0/1, a `<prop>` list) against the
//! WebDAV layer's answer to the same request: same entries, hrefs,
//! properties and headers; every other request (lock properties, dead
//! properties, allprop, malformed bodies, missing paths, other users'
//! trees) still answered as before.
//!
//! The front's reply carries a `Content-Length`; the WebDAV layer's streams
//! (chunked). Asking for `lockdiscovery` as well sends a request to the
//! WebDAV layer, so the two answers can be compared entry by entry.

use crate::common::gateway::{Dav, TestGateway};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use reqwest::blocking::Response;

const PROPS: &str = "<d:resourcetype/><d:getcontentlength/><d:getlastmodified/>\
<d:getetag/><d:creationdate/><d:displayname/><d:getcontenttype/><d:supportedlock/>\
<d:quota-used-bytes/><d:quota-available-bytes/><d:getcontentlanguage/>\
<oc:id/><oc:fileid/><oc:permissions/><oc:size/><oc:checksums/><oc:downloadURL/>\
<oc:dDC/><oc:share-types/><oc:data-fingerprint/><oc:owner-id/>\
<oc:owner-display-name/><oc:favorite/><nc:is-encrypted/><x:unknown/><bare/>";

fn body(props: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<d:propfind xmlns:d=\"DAV:\" \
         xmlns:oc=\"http://owncloud.org/ns\" xmlns:nc=\"http://nextcloud.org/ns\" \
         xmlns:x=\"urn:example\"><d:prop>{props}</d:prop></d:propfind>"
    )
}

/// A property as `{namespace}name(children…)`, text trimmed.
type Prop = String;

/// One `<response>`: href, then (status, properties) per propstat.
#[derive(Debug, PartialEq)]
struct Entry {
    href: String,
    propstats: Vec<(String, Vec<Prop>)>,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    fast: bool,
    entries: Vec<Entry>,
}

fn send(dav: &Dav, path: &str, depth: &str, body: &str) -> Response {
    dav.request("PROPFIND", &dav.url(path))
        .header("Depth", depth)
        .header("Content-Type", "application/xml")
        .body(body.to_string())
        .send()
        .expect("PROPFIND")
}

fn propfind(dav: &Dav, path: &str, depth: &str, body: &str) -> Reply {
    let res = send(dav, path, depth, body);
    let status = res.status().as_u16();
    let fast = res.headers().contains_key("content-length");
    let headers = [
        "content-type",
        "content-location",
        "cache-control",
        "pragma",
    ]
    .iter()
    .filter_map(|h| {
        let v = res.headers().get(*h)?.to_str().ok()?;
        Some((h.to_string(), v.to_string()))
    })
    .collect();
    let text = res.text().expect("body");
    let entries = if status == 207 {
        parse(&text)
    } else {
        Vec::new()
    };
    Reply {
        status,
        headers,
        fast,
        entries,
    }
}

fn name_of(ns: ResolveResult<'_>, local: &[u8]) -> String {
    let ns = match ns {
        ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
        _ => String::new(),
    };
    format!("{{{ns}}}{}", String::from_utf8_lossy(local))
}

/// The multistatus as entries; elements compared by namespace and name.
fn parse(xml: &str) -> Vec<Entry> {
    let mut r = NsReader::from_str(xml);
    r.config_mut().trim_text(true);
    let mut entries: Vec<Entry> = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    loop {
        let (ns, ev) = r.read_resolved_event().expect("well-formed reply");
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = name_of(ns, e.local_name().as_ref());
                open(&mut entries, &path, &name);
                path.push(name);
                text.clear();
                if empty {
                    close(&mut entries, &mut path, "");
                }
            }
            Event::Text(t) => text = t.unescape().expect("text").into_owned(),
            Event::End(_) => {
                close(&mut entries, &mut path, &text);
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    entries
}

/// An element opens; `path` holds its ancestors.
fn open(entries: &mut Vec<Entry>, path: &[String], name: &str) {
    match path.len() {
        1 if name == "{DAV:}response" => entries.push(Entry {
            href: String::new(),
            propstats: Vec::new(),
        }),
        2 if name == "{DAV:}propstat" => {
            if let Some(e) = entries.last_mut() {
                e.propstats.push((String::new(), Vec::new()));
            }
        }
        4 => {
            if let Some(p) = last_propstat(entries) {
                p.1.push(format!("{name}("));
            }
        }
        d if d > 4 => {
            if let Some(p) = last_propstat(entries).and_then(|p| p.1.last_mut()) {
                p.push_str(&format!("{name}("));
            }
        }
        _ => {}
    }
}

fn last_propstat(entries: &mut [Entry]) -> Option<&mut (String, Vec<Prop>)> {
    entries.last_mut().and_then(|e| e.propstats.last_mut())
}

/// An element closes after `text`.
fn close(entries: &mut [Entry], path: &mut Vec<String>, text: &str) {
    let name = path.pop().unwrap_or_default();
    let Some(entry) = entries.last_mut() else {
        return;
    };
    match path.len() {
        2 if name == "{DAV:}href" => entry.href = text.to_string(),
        3 if name == "{DAV:}status" => {
            if let Some(p) = entry.propstats.last_mut() {
                p.0 = text.to_string();
            }
        }
        d if d >= 4 => {
            if let Some(p) = entry.propstats.last_mut().and_then(|p| p.1.last_mut()) {
                p.push_str(text);
                p.push(')');
            }
        }
        _ => {}
    }
}

/// The entries without `lockdiscovery` (the one property only the WebDAV
/// layer answers), and without a propstat it was alone in.
fn without_lockdiscovery(entries: Vec<Entry>) -> Vec<Entry> {
    entries
        .into_iter()
        .map(|mut e| {
            for (_, props) in &mut e.propstats {
                props.retain(|p| !p.starts_with("{DAV:}lockdiscovery("));
            }
            e.propstats.retain(|(_, props)| !props.is_empty());
            e
        })
        .collect()
}

/// The properties the entry lists as not found.
fn missing(entry: &Entry) -> Vec<&str> {
    entry
        .propstats
        .iter()
        .filter(|(status, _)| status == "HTTP/1.1 404 Not Found")
        .flat_map(|(_, p)| p.iter())
        .map(|p| p.trim_end_matches("()"))
        .collect()
}

/// Asks both ways and checks that the answers agree.
fn assert_same(dav: &Dav, path: &str, depth: &str, props: &str) -> Vec<Entry> {
    let fast = propfind(dav, path, depth, &body(props));
    let slow = propfind(
        dav,
        path,
        depth,
        &body(&format!("{props}<d:lockdiscovery/>")),
    );
    assert_eq!(fast.status, 207, "{path} depth {depth}");
    assert!(fast.fast, "{path} depth {depth}: answered by the front");
    assert!(
        !slow.fast,
        "{path} depth {depth}: answered by the WebDAV layer"
    );
    assert_eq!(fast.status, slow.status);
    assert_eq!(fast.headers, slow.headers, "{path} depth {depth}");
    assert!(!fast.entries.is_empty());
    assert_eq!(
        fast.entries,
        without_lockdiscovery(slow.entries),
        "{path} depth {depth}"
    );
    fast.entries
}

/// A property's value, if the entry has it (in a 200 propstat).
fn prop<'a>(entry: &'a Entry, name: &str) -> Option<&'a str> {
    entry
        .propstats
        .iter()
        .filter(|(status, _)| status == "HTTP/1.1 200 OK")
        .flat_map(|(_, p)| p.iter())
        .find(|p| p.starts_with(&format!("{name}(")))
        .map(|p| &p[name.len() + 1..p.len() - 1])
}

fn tree(gw: &TestGateway, user: &str) -> Dav {
    gw.add_user_with_quota(user, "pw", 1 << 30);
    let dav = gw.client(user, "pw");
    assert_eq!(dav.mkcol("a%20dir").status().as_u16(), 201);
    assert_eq!(dav.mkcol("a%20dir/sub").status().as_u16(), 201);
    for (name, data) in [
        ("a%20dir/notes.txt", &b"some notes"[..]),
        ("a%20dir/%C3%A9t%C3%A9%20%26%20%3Cmore%3E.pdf", b"pdf"),
        ("a%20dir/100%25%2Bplus%23hash", b""),
        ("a%20dir/.hidden", b"h"),
        ("top.bin", b"0123456789"),
    ] {
        let res = dav
            .request("PUT", &dav.url(name))
            .header("X-OC-Mtime", "1600000000")
            .body(data.to_vec())
            .send()
            .expect("PUT");
        assert!(res.status().is_success(), "{name}");
    }
    dav
}

#[test]
fn front_answers_like_the_webdav_layer() {
    let gw = TestGateway::start();
    let dav = tree(&gw, "al@ice");
    for (path, depth) in [
        ("a%20dir", "1"),
        ("a%20dir/", "1"),
        ("a%20dir", "0"),
        ("a%20dir/notes.txt", "0"),
        ("a%20dir/notes.txt", "1"),
        ("a%20dir/notes.txt/", "0"),
        ("", "0"),
        ("", "1"),
    ] {
        assert_same(&dav, path, depth, PROPS);
    }
    let listing = assert_same(&dav, "a%20dir", "1", PROPS);
    let hrefs: Vec<&str> = listing.iter().map(|e| e.href.as_str()).collect();
    assert_eq!(
        hrefs,
        [
            "/remote.php/dav/files/al%40ice/a%20dir/",
            "/remote.php/dav/files/al%40ice/a%20dir/.hidden",
            "/remote.php/dav/files/al%40ice/a%20dir/100%25%2Bplus%23hash",
            "/remote.php/dav/files/al%40ice/a%20dir/notes.txt",
            "/remote.php/dav/files/al%40ice/a%20dir/sub/",
            "/remote.php/dav/files/al%40ice/a%20dir/%C3%A9t%C3%A9%20%26%20%3Cmore%3E.pdf",
        ]
    );
    let notes = &listing[3];
    assert_eq!(prop(notes, "{DAV:}getcontentlength"), Some("10"));
    assert_eq!(
        prop(notes, "{DAV:}getlastmodified"),
        Some("Sun, 13 Sep 2020 12:26:40 GMT")
    );
    assert!(prop(notes, "{DAV:}getetag").is_some_and(|e| e.starts_with('"')));
    assert_eq!(prop(notes, "{DAV:}getcontenttype"), Some("text/plain"));
    assert!(prop(&listing[4], "{DAV:}getcontentlength").is_none());
    assert_eq!(prop(&listing[0], "{DAV:}displayname"), None);
    assert_eq!(
        prop(&listing[0], "{http://owncloud.org/ns}permissions"),
        Some("RGDNVCK")
    );
    // What does not exist is listed as not found (RFC 4918, 9.1).
    assert_eq!(
        missing(notes),
        [
            "{DAV:}displayname",
            "{DAV:}getcontentlanguage",
            "{http://owncloud.org/ns}favorite",
            "{urn:example}unknown",
            "{}bare"
        ]
    );
    // A folder has no length.
    assert!(missing(&listing[4]).contains(&"{DAV:}getcontentlength"));
    // Nothing asked for that exists: only a 404 propstat.
    let none = assert_same(&dav, "a%20dir", "1", "<x:unknown/>");
    for e in &none {
        assert_eq!(
            e.propstats,
            [(
                "HTTP/1.1 404 Not Found".to_string(),
                vec!["{urn:example}unknown()".to_string()]
            )]
        );
    }
}

#[test]
fn other_url_form_and_other_clients_bodies() {
    let gw = TestGateway::start();
    let dav = tree(&gw, "olga");
    let webdav = Dav {
        base: format!("{}/remote.php/webdav", gw.base),
        ..gw.client("olga", "pw")
    };
    // `Dav::url` puts the files prefix in; the legacy form is spelled out.
    let url = format!("{}/remote.php/webdav/a%20dir", gw.base);
    let res = webdav
        .request("PROPFIND", &url)
        .header("Depth", "1")
        .body(body("<d:getetag/>"))
        .send()
        .expect("PROPFIND");
    assert_eq!(res.status().as_u16(), 207);
    assert!(res.headers().contains_key("content-length"));
    let text = res.text().unwrap();
    assert!(text.contains("<D:href>/remote.php/webdav/a%20dir/notes.txt</D:href>"));
    // Default namespace, no declaration, owncloudcmd's stray text.
    for b in [
        "<propfind xmlns=\"DAV:\"><prop><getetag/><resourcetype/></prop></propfind>",
        "<d:propfind xmlns:d=\"DAV:\" xmlns:oc=\"http://owncloud.org/ns\"><d:prop>\
         <d:getetag/><oc:id/></d:prop>M</d:propfind>",
    ] {
        let fast = propfind(&dav, "a%20dir", "1", b);
        assert!(fast.fast && fast.status == 207, "{b}");
        assert_eq!(fast.entries.len(), 6);
    }
    // macOS Finder gets its quota figures zero-padded, both ways.
    let quota = |props: &str| {
        let res = dav
            .request("PROPFIND", &dav.url(""))
            .header("Depth", "0")
            .header("User-Agent", "WebDAVFS/3.0.0 (03008000) Darwin/22.1.0")
            .body(body(props))
            .send()
            .unwrap();
        let fast = res.headers().contains_key("content-length");
        let entries = parse(&res.text().unwrap());
        let used = prop(&entries[0], "{DAV:}quota-used-bytes").map(str::to_string);
        (fast, used)
    };
    let fast = quota("<d:quota-used-bytes/>");
    let slow = quota("<d:quota-used-bytes/><d:lockdiscovery/>");
    assert_eq!((fast.0, slow.0), (true, false));
    assert_eq!(fast.1, slow.1);
    assert_eq!(fast.1.as_deref(), Some("00000000000024"));
}

#[test]
fn missing_paths_and_other_users_are_answered_as_before() {
    let gw = TestGateway::start();
    let alice = tree(&gw, "alice");
    gw.add_user("bob", "pw");
    let bob = gw.client("bob", "pw");
    for depth in ["0", "1"] {
        let res = send(&alice, "a%20dir/nothing", depth, &body(PROPS));
        assert_eq!(res.status().as_u16(), 404);
        assert_eq!(res.text().unwrap(), "");
        // Bob's tree has no `a dir`; Alice's is out of reach.
        assert_eq!(
            send(&bob, "a%20dir", depth, &body(PROPS)).status().as_u16(),
            404
        );
        let other = bob
            .request("PROPFIND", &alice.url("a%20dir"))
            .header("Depth", depth)
            .body(body(PROPS))
            .send()
            .unwrap();
        assert_eq!(other.status().as_u16(), 403);
        assert!(!other.text().unwrap().contains("notes"));
    }
    let mine = propfind(&bob, "", "1", &body(PROPS));
    assert!(mine.fast);
    assert_eq!(mine.entries.len(), 1, "bob sees only his empty root");
    assert_eq!(
        mine.entries[0].href, "/remote.php/dav/files/bob/",
        "bob's own root"
    );
}

#[test]
fn dead_properties_go_to_the_webdav_layer() {
    let gw = TestGateway::start();
    let dav = tree(&gw, "olga");
    let patch = "<?xml version=\"1.0\"?><d:propertyupdate xmlns:d=\"DAV:\" \
                 xmlns:x=\"urn:example\"><d:set><d:prop><x:colour>blue</x:colour>\
                 </d:prop></d:set></d:propertyupdate>";
    let res = dav
        .request("PROPPATCH", &dav.url("a%20dir/notes.txt"))
        .body(patch)
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 207);
    for (props, asked) in [("<x:colour/><d:getetag/>", true), ("<d:getetag/>", false)] {
        let r = propfind(&dav, "a%20dir", "1", &body(props));
        assert_eq!(r.status, 207);
        assert!(!r.fast, "a listed node has a dead property");
        let notes = r
            .entries
            .iter()
            .find(|e| e.href.ends_with("/notes.txt"))
            .expect("notes listed");
        // Only what was asked for (RFC 4918, 9.1): the WebDAV layer adds
        // every dead property, the front takes the others out.
        let colour = asked.then_some("blue");
        assert_eq!(prop(notes, "{urn:example}colour"), colour, "{props}");
        assert!(prop(notes, "{DAV:}getetag").is_some_and(|e| e.starts_with('"')));
        assert!(missing(notes).is_empty());
        assert_eq!(r.entries.len(), 6);
        let sub = r
            .entries
            .iter()
            .find(|e| e.href.ends_with("/sub/"))
            .unwrap();
        let absent: &[&str] = if asked { &["{urn:example}colour"] } else { &[] };
        assert_eq!(missing(sub), absent);
    }
    // Elsewhere the front still answers.
    assert!(propfind(&dav, "a%20dir/sub", "1", &body(PROPS)).fast);
}

#[test]
fn other_bodies_are_answered_as_before() {
    let gw = TestGateway::start();
    let dav = tree(&gw, "olga");
    for bad in [
        "<d:propfind xmlns:d=\"DAV:\"><d:prop><d:getetag/></d:propfind>",
        "<d:propfind xmlns:d=\"DAV:\"><d:prop><x:y/></d:prop></d:propfind>",
        "<d:other xmlns:d=\"DAV:\"><d:prop><d:getetag/></d:prop></d:other>",
        "<d:propfind xmlns:d=\"DAV:\"></d:propfind>",
        "not xml",
    ] {
        for depth in ["0", "1"] {
            let res = send(&dav, "a%20dir", depth, bad);
            assert_eq!(res.status().as_u16(), 400, "{bad}");
            // Malformed XML is refused by the front with a Sabre error
            // body; well-formed but wrong bodies by the WebDAV layer.
            let text = res.text().unwrap();
            assert!(text.is_empty() || text.contains("BadRequest"), "{text}");
        }
    }
    let huge = body(&"<d:getetag/>".repeat(6000));
    assert_eq!(send(&dav, "a%20dir", "1", &huge).status().as_u16(), 413);
    for other in [
        "<d:propfind xmlns:d=\"DAV:\"><d:allprop/></d:propfind>",
        "<d:propfind xmlns:d=\"DAV:\"><d:propname/></d:propfind>",
        "",
    ] {
        let r = propfind(&dav, "a%20dir", "1", other);
        assert_eq!(r.status, 207, "{other}");
        assert!(!r.fast, "{other}");
        assert_eq!(r.entries.len(), 6);
    }
    // A Depth the front does not answer, and Depth infinity (refused).
    assert!(!propfind(&dav, "a%20dir", "2", &body(PROPS)).fast);
    assert_eq!(
        send(&dav, "a%20dir", "infinity", &body(PROPS))
            .status()
            .as_u16(),
        403
    );
}
