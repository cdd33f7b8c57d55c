//! The request sequences of the clients that mount a drive, replayed on
//! both backends: Windows' WebDAV redirector ("Map network drive": OPTIONS
//! on `/` without credentials, PROPPATCH of its file times and attributes
//! after an upload, PROPFIND asking for them) and macOS Finder ("Connect to
//! Server": PUT without a length, in chunked encoding, each file followed
//! by its `._` AppleDouble companion), with and without `files.refuse`.

use std::process::Command;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::common::gateway::TestGateway;

on_both_backends!(
    windows_mounts_and_keeps_its_file_times,
    finder_writes_without_a_length
);
mod refusing {
    use super::*;
    on_both_backends!(with super::refuse_finder_litter; finder_litter_is_refused_and_nothing_changes);
}

const MS: &str = "urn:schemas-microsoft-com:";

fn refuse_finder_litter(config: &mut dedupdav::config::Config) {
    config.files.refuse = vec!["._*".into(), ".DS_Store".into()];
}

/// What Windows sets after writing a file (its own format: RFC 1123 dates,
/// attributes as 8 hex digits; 0x20 archive, 0x02 hidden).
const WIN32_PATCH: &str = "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\
<D:propertyupdate xmlns:D=\"DAV:\" xmlns:Z=\"urn:schemas-microsoft-com:\"><D:set><D:prop>\
<Z:Win32CreationTime>Mon, 01 Jun 2020 10:00:00 GMT</Z:Win32CreationTime>\
<Z:Win32LastAccessTime>Tue, 02 Jun 2020 11:00:00 GMT</Z:Win32LastAccessTime>\
<Z:Win32LastModifiedTime>Wed, 03 Jun 2020 12:00:00 GMT</Z:Win32LastModifiedTime>\
<Z:Win32FileAttributes>00000022</Z:Win32FileAttributes>\
</D:prop></D:set></D:propertyupdate>";

/// What the redirector asks a folder listing for.
const WIN32_PROPFIND: &str = "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\
<D:propfind xmlns:D=\"DAV:\" xmlns:Z=\"urn:schemas-microsoft-com:\"><D:prop>\
<D:getcontentlength/><D:getlastmodified/><D:resourcetype/><D:displayname/>\
<Z:Win32CreationTime/><Z:Win32LastAccessTime/><Z:Win32LastModifiedTime/>\
<Z:Win32FileAttributes/></D:prop></D:propfind>";

fn windows_mounts_and_keeps_its_file_times(gw: TestGateway) {
    gw.add_user("win", "pw");
    let dav = gw.client("win", "pw");
    // The redirector's first request, before it has credentials.
    let res = reqwest::blocking::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/", gw.base))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "DAV"), "1, 2");
    assert_eq!(header(&res, "MS-Author-Via"), "DAV");
    // The tree itself, logged in: the same classes; PATCH is not offered.
    let res = dav.request("OPTIONS", &dav.url("")).send().unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "DAV"), "1, 2");
    assert_eq!(header(&res, "MS-Author-Via"), "DAV");
    assert!(
        !header(&res, "Allow").contains("PATCH"),
        "{:?}",
        header(&res, "Allow")
    );
    // Upload, then the file times and attributes.
    assert_eq!(dav.mkcol("docs").status(), 201);
    assert_eq!(
        dav.put("docs/report.txt", b"quarterly".to_vec()).status(),
        201
    );
    let res = dav
        .request("PROPPATCH", &dav.url("docs/report.txt"))
        .header("Content-Type", "text/xml")
        .body(WIN32_PATCH)
        .send()
        .unwrap();
    assert_eq!(res.status(), 207);
    let patched = props_by_status(&res.text().unwrap());
    assert_eq!(patched.len(), 4);
    assert!(patched.iter().all(|(status, _, _)| status.contains("200")));
    // The listing returns what was set; the modification time is the file's.
    let res = dav
        .request("PROPFIND", &dav.url("docs"))
        .header("Depth", "1")
        .body(WIN32_PROPFIND)
        .send()
        .unwrap();
    assert_eq!(res.status(), 207);
    let text = res.text().unwrap();
    let entry = entry_of(&text, "report.txt");
    let value = |ns: &str, name: &str| {
        entry
            .iter()
            .find(|(s, n, _)| s.contains("200") && *n == format!("{{{ns}}}{name}"))
            .map(|(_, _, v)| v.clone())
    };
    assert_eq!(
        value(MS, "Win32CreationTime").as_deref(),
        Some("Mon, 01 Jun 2020 10:00:00 GMT")
    );
    assert_eq!(
        value(MS, "Win32LastAccessTime").as_deref(),
        Some("Tue, 02 Jun 2020 11:00:00 GMT")
    );
    assert_eq!(
        value(MS, "Win32LastModifiedTime").as_deref(),
        Some("Wed, 03 Jun 2020 12:00:00 GMT")
    );
    assert_eq!(
        value("DAV:", "getlastmodified").as_deref(),
        Some("Wed, 03 Jun 2020 12:00:00 GMT")
    );
    assert_eq!(
        value(MS, "Win32FileAttributes").as_deref(),
        Some("00000022")
    );
    assert_eq!(value("DAV:", "getcontentlength").as_deref(), Some("9"));
    // Asked for, never set: listed as not found, once.
    let missing: Vec<&str> = entry
        .iter()
        .filter(|(s, _, _)| s.contains("404"))
        .map(|(_, n, _)| n.as_str())
        .collect();
    assert_eq!(missing, ["{DAV:}displayname"], "{text}");
    let names: Vec<&str> = entry.iter().map(|(_, n, _)| n.as_str()).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "each property once: {text}");
    // allprop, as the redirector may ask: the stored values, each once.
    let res = dav
        .request("PROPFIND", &dav.url("docs"))
        .header("Depth", "1")
        .header("User-Agent", "Microsoft-WebDAV-MiniRedir/10.0.19045")
        .body("<?xml version=\"1.0\"?><D:propfind xmlns:D=\"DAV:\"><D:allprop/></D:propfind>")
        .send()
        .unwrap();
    let all = entry_of(&res.text().unwrap(), "report.txt");
    let attributes: Vec<&str> = all
        .iter()
        .filter(|(_, n, _)| *n == format!("{{{MS}}}Win32FileAttributes"))
        .map(|(_, _, v)| v.as_str())
        .collect();
    assert_eq!(attributes, ["00000022"]);
    let mut names: Vec<&str> = all.iter().map(|(_, n, _)| n.as_str()).collect();
    let count = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), count, "each property once: {all:?}");
    // A folder Windows never patched still answers its computed values.
    let folder = entry_of(&text, "docs/");
    assert!(folder.iter().any(|(s, n, v)| s.contains("200")
        && n == &format!("{{{MS}}}Win32FileAttributes")
        && v == "00000010"));
    // A bad time is refused and changes nothing.
    let res = dav
        .request("PROPPATCH", &dav.url("docs/report.txt"))
        .body(WIN32_PATCH.replace("Wed, 03 Jun 2020 12:00:00 GMT", "yesterday"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = dav
        .request("PROPFIND", &dav.url("docs/report.txt"))
        .header("Depth", "0")
        .body(WIN32_PROPFIND)
        .send()
        .unwrap();
    let again = entry_of(&res.text().unwrap(), "report.txt");
    assert!(again
        .iter()
        .any(|(_, n, v)| n == "{DAV:}getlastmodified" && v == "Wed, 03 Jun 2020 12:00:00 GMT"));
}

fn finder_writes_without_a_length(gw: TestGateway) {
    gw.add_user("mac", "pw");
    let dav = gw.client("mac", "pw");
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let apple_double = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X".to_vec();
    assert_eq!(finder_put(&gw, "mac", "photo.jpg", &photo), "201");
    assert_eq!(finder_put(&gw, "mac", "._photo.jpg", &apple_double), "201");
    assert_eq!(dav.get_bytes("photo.jpg").unwrap(), photo);
    assert_eq!(dav.get_bytes("._photo.jpg").unwrap(), apple_double);
    // Replacing it the same way keeps one file of the new length.
    assert_eq!(finder_put(&gw, "mac", "photo.jpg", &photo[..1000]), "204");
    assert_eq!(dav.get_bytes("photo.jpg").unwrap(), &photo[..1000]);
    assert_eq!(gw.stats().files, 2);
}

fn finder_litter_is_refused_and_nothing_changes(gw: TestGateway) {
    gw.add_user("mac", "pw");
    let dav = gw.client("mac", "pw");
    let photo = b"jpeg bytes".to_vec();
    assert_eq!(finder_put(&gw, "mac", "photo.jpg", &photo), "201");
    assert_eq!(
        finder_put(&gw, "mac", "._photo.jpg", b"resource fork"),
        "403"
    );
    assert_eq!(
        finder_put(&gw, "mac", ".DS_Store", b"\x00\x00\x00\x01Bud1"),
        "403"
    );
    let res = dav.put("sub._ok", b"a name that only contains ._".to_vec());
    assert_eq!(res.status(), 201);
    let res = dav.put("._PHOTO.JPG", b"x".to_vec());
    assert_eq!(res.status(), 403, "case is ignored");
    assert!(res.text().unwrap().contains("refused"));
    assert_eq!(dav.mkcol("._folder").status(), 403);
    for method in ["COPY", "MOVE"] {
        let res = dav
            .request(method, &dav.url("photo.jpg"))
            .header("Destination", "/remote.php/dav/files/mac/._copy")
            .send()
            .unwrap();
        assert_eq!(res.status(), 403, "{method}");
    }
    // A chunked upload may not end under such a name either.
    let uploads = format!("{}/remote.php/dav/uploads/mac/t1", gw.base);
    assert_eq!(dav.request("MKCOL", &uploads).send().unwrap().status(), 201);
    let part = dav
        .request("PUT", &format!("{uploads}/00000"))
        .body(b"part".to_vec())
        .send()
        .unwrap();
    assert_eq!(part.status(), 201);
    let res = dav
        .request("MOVE", &format!("{uploads}/.file"))
        .header("Destination", "/remote.php/dav/files/mac/.DS_Store")
        .header("OC-Total-Length", "4")
        .send()
        .unwrap();
    assert_eq!(res.status(), 403);
    // Nothing but what was allowed exists; the photo is untouched.
    assert_eq!(dav.get_bytes("photo.jpg").unwrap(), photo);
    for refused in [
        "._photo.jpg",
        ".DS_Store",
        "._PHOTO.JPG",
        "._folder",
        "._copy",
    ] {
        assert_eq!(dav.get(refused).status(), 404, "{refused}");
    }
    assert_eq!(gw.stats().files, 2);
    // Sync clients learn the patterns from the capabilities.
    let caps = dav
        .request(
            "GET",
            &format!("{}/ocs/v2.php/cloud/capabilities?format=json", gw.base),
        )
        .send()
        .unwrap()
        .text()
        .unwrap();
    let caps: serde_json::Value = serde_json::from_str(&caps).unwrap();
    let listed = &caps["ocs"]["data"]["capabilities"]["files"]["blacklisted_files"];
    assert!(
        listed.as_array().unwrap().iter().any(|v| v == "._*"),
        "{listed}"
    );
}

/// PUT as Finder sends it: chunked transfer encoding, no Content-Length.
/// Answers the status curl saw.
fn finder_put(gw: &TestGateway, user: &str, name: &str, data: &[u8]) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-u"])
        .arg(format!("{user}:pw"))
        .args(["-X", "PUT", "-H", "Transfer-Encoding: chunked"])
        .args([
            "-H",
            "User-Agent: WebDAVFS/3.0.0 (03008000) Darwin/21.6.0 (x86_64)",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", file.path().display()))
        .arg(format!("{}/remote.php/dav/files/{user}/{name}", gw.base))
        .output()
        .expect("curl is not installed: run the README test command, which installs it");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn header(res: &reqwest::blocking::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// A property as (status, `{namespace}name`, text).
type Prop = (String, String, String);

/// Every property in a multistatus, per response href.
fn responses(xml: &str) -> Vec<(String, Vec<Prop>)> {
    let mut r = NsReader::from_str(xml);
    let mut out: Vec<(String, Vec<Prop>)> = Vec::new();
    let mut depth = 0;
    let mut pending: Vec<(String, String)> = Vec::new();
    let mut text = String::new();
    loop {
        let (ns, ev) = r.read_resolved_event().expect("well-formed reply");
        let name = |local: &[u8]| {
            let ns = match ns {
                ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
                _ => String::new(),
            };
            format!("{{{ns}}}{}", String::from_utf8_lossy(local))
        };
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let n = name(e.local_name().as_ref());
                if depth == 1 && n == "{DAV:}response" {
                    out.push((String::new(), Vec::new()));
                }
                if depth == 4 {
                    pending.push((n, String::new()));
                }
                text.clear();
                if matches!(ev, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::Text(t) => text = t.unescape().unwrap().into_owned(),
            Event::End(ref e) => {
                depth -= 1;
                let n = name(e.local_name().as_ref());
                match (depth, n.as_str()) {
                    (2, "{DAV:}href") => out.last_mut().unwrap().0 = text.clone(),
                    (4, _) => pending.last_mut().unwrap().1 = text.clone(),
                    (3, "{DAV:}status") => {
                        let entry = &mut out.last_mut().unwrap().1;
                        for (p, v) in pending.drain(..) {
                            entry.push((text.clone(), p, v));
                        }
                    }
                    _ => {}
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    out
}

/// The properties of the response whose href ends with `suffix`.
fn entry_of(xml: &str, suffix: &str) -> Vec<Prop> {
    responses(xml)
        .into_iter()
        .find(|(href, _)| href.ends_with(suffix))
        .map(|(_, props)| props)
        .unwrap_or_else(|| panic!("no {suffix} in {xml}"))
}

/// The properties of a one-response multistatus.
fn props_by_status(xml: &str) -> Vec<Prop> {
    responses(xml)
        .into_iter()
        .next()
        .map(|(_, p)| p)
        .unwrap_or_default()
}

/// The redirector refuses a folder listing larger than
/// `FileAttributesLimitInBytes` (1,000,000 bytes by default). README says
/// how many entries that holds; this keeps the figure true: an entry of a
/// Windows listing (a 33-character name, every Win32 property set) costs at
/// most 750 bytes, so the default limit holds at least 1,333 of them.
#[test]
fn a_windows_listing_entry_stays_small() {
    let gw = TestGateway::start();
    gw.add_user("win", "pw");
    let dav = gw.client("win", "pw");
    assert_eq!(dav.mkcol("Documents").status(), 201);
    let n = 100;
    for i in 0..n {
        let name = format!("Documents/Quarterly%20report%20{i:04}.docx");
        assert_eq!(dav.put(&name, b"x".to_vec()).status(), 201);
        let res = dav
            .request("PROPPATCH", &dav.url(&name))
            .body(WIN32_PATCH)
            .send()
            .unwrap();
        assert_eq!(res.status(), 207);
    }
    let res = dav
        .request("PROPFIND", &dav.url("Documents"))
        .header("Depth", "1")
        .header("User-Agent", "Microsoft-WebDAV-MiniRedir/10.0.19045")
        .body(WIN32_PROPFIND)
        .send()
        .unwrap();
    let text = res.text().unwrap();
    let entries = responses(&text);
    assert_eq!(entries.len(), n + 1);
    let per_entry = text.len() / entries.len();
    println!(
        "a Windows listing: {} bytes, {per_entry} per entry",
        text.len()
    );
    assert!(per_entry <= 750, "{per_entry} bytes per entry");
    assert!(entries[1..].iter().all(|(_, props)| props.len() == 8));
}
