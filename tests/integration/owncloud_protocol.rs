//! The ownCloud protocol details sync clients depend on, request by
//! request: OCS and status endpoints, `oc:` properties, quoted etags, the
//! headers of PUT/MKCOL/MOVE matching later listings, checksums, and the
//! chunked upload NG endpoint (order, resume, checks, isolation, expiry).

use crate::common::gateway::{random_bytes, Dav, TestGateway};
use crate::common::wait;
use reqwest::blocking::Response;

const OWNCLOUDCMD_PROPFIND: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
<d:propfind xmlns:d=\"DAV:\" xmlns:oc=\"http://owncloud.org/ns\"><d:prop>\
<d:resourcetype/><d:getlastmodified/><d:getcontentlength/><d:getetag/>\
<oc:id/><oc:downloadURL/><oc:dDC/><oc:permissions/><oc:checksums/>\
<oc:share-types/><oc:size/><oc:fileid/><oc:data-fingerprint/>\
</d:prop>M</d:propfind>";

fn header(res: &Response, name: &str) -> String {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_string()
}

/// One `<response>` of a multistatus: its href and its 200 properties.
struct Entry {
    href: String,
    body: String,
}

impl Entry {
    fn prop(&self, name: &str) -> Option<String> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let i = self.body.find(&open)? + open.len();
        let j = self.body[i..].find(&close)? + i;
        Some(self.body[i..j].to_string())
    }
}

fn propfind(dav: &Dav, path: &str, depth: &str) -> Vec<Entry> {
    let res = dav
        .request("PROPFIND", &dav.url(path))
        .header("Depth", depth)
        .body(OWNCLOUDCMD_PROPFIND)
        .send()
        .expect("PROPFIND");
    assert_eq!(res.status().as_u16(), 207);
    // owncloudcmd refuses anything else.
    assert!(header(&res, "content-type").contains("application/xml; charset=utf-8"));
    let text = res.text().expect("body");
    text.split("<D:response>")
        .skip(1)
        .map(|r| {
            let href = r
                .split("<D:href>")
                .nth(1)
                .and_then(|x| x.split("</D:href>").next())
                .unwrap_or_default()
                .to_string();
            Entry {
                href,
                body: r.to_string(),
            }
        })
        .collect()
}

fn entry<'a>(entries: &'a [Entry], href_end: &str) -> &'a Entry {
    entries
        .iter()
        .find(|e| e.href.ends_with(href_end))
        .unwrap_or_else(|| panic!("no entry ending in {href_end}"))
}

#[test]
fn status_and_ocs_endpoints() {
    let gw = TestGateway::start();
    gw.add_user("olga", "olga-pw");
    let http = reqwest::blocking::Client::new();
    let status: serde_json::Value = http
        .get(format!("{}/status.php", gw.base))
        .send()
        .unwrap()
        .text()
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap();
    assert_eq!(status["installed"], true);
    assert_eq!(status["version"], "10.13.0.0");
    for v in ["v1", "v2"] {
        let caps: serde_json::Value = http
            .get(format!(
                "{}/ocs/{v}.php/cloud/capabilities?format=json",
                gw.base
            ))
            .header("OCS-APIREQUEST", "true")
            .basic_auth("olga", Some("olga-pw"))
            .send()
            .unwrap()
            .text()
            .map(|t| serde_json::from_str(&t).unwrap())
            .unwrap();
        assert_eq!(
            caps["ocs"]["data"]["capabilities"]["dav"]["chunking"],
            "1.0"
        );
        let user = http
            .get(format!("{}/ocs/{v}.php/cloud/user", gw.base))
            .basic_auth("olga", Some("olga-pw"))
            .send()
            .unwrap();
        assert!(header(&user, "content-type").contains("xml"));
        assert!(user.text().unwrap().contains("<id>olga</id>"));
        let denied = http
            .get(format!("{}/ocs/{v}.php/cloud/user?format=json", gw.base))
            .basic_auth("olga", Some("wrong"))
            .send()
            .unwrap();
        assert_eq!(denied.status().as_u16(), 401);
    }
}

#[test]
fn properties_and_headers_agree() {
    let gw = TestGateway::start();
    gw.add_user("olga", "olga-pw");
    let dav = gw.client("olga", "olga-pw");

    let mk = dav.mkcol("my%20dir");
    assert_eq!(mk.status().as_u16(), 201);
    let dir_id = header(&mk, "OC-FileId");

    let data = b"hello, owncloud\n".to_vec();
    let put = dav
        .request("PUT", &dav.url("my%20dir/a%23b%20%25.txt"))
        .header("X-OC-Mtime", "1600000000")
        .header("OC-Checksum", format!("SHA1:{}", sha1_hex(&data)))
        .body(data.clone())
        .send()
        .unwrap();
    assert_eq!(put.status().as_u16(), 201);
    assert_eq!(header(&put, "X-OC-MTime"), "accepted");
    let file_id = header(&put, "OC-FileId");
    let file_etag = header(&put, "OC-ETag");
    assert_eq!(header(&put, "ETag"), file_etag);
    assert!(file_etag.starts_with('"') && file_etag.ends_with('"'));
    dav.put("my%20dir/second.bin", vec![7u8; 1000]);

    let root = propfind(&dav, "", "1");
    let dir = entry(&root, "/my%20dir/");
    assert_eq!(dir.prop("oc:id").unwrap(), dir_id);
    assert_eq!(dir.prop("oc:permissions").unwrap(), "RGDNVCK");
    assert_eq!(
        dir.prop("oc:size").unwrap(),
        (data.len() + 1000).to_string(),
        "a folder's oc:size is the sum of what it holds"
    );
    assert!(dir.prop("D:getetag").unwrap().starts_with('"'));
    let top = entry(&root, "/olga/");
    assert!(top.prop("oc:data-fingerprint").is_some());
    assert_eq!(
        top.prop("oc:size").unwrap(),
        (data.len() + 1000).to_string()
    );

    let listing = propfind(&dav, "my%20dir/", "1");
    let f = entry(&listing, "/a%23b%20%25.txt");
    assert_eq!(f.prop("oc:id").unwrap(), file_id);
    assert_eq!(f.prop("D:getetag").unwrap(), file_etag);
    assert_eq!(f.prop("oc:permissions").unwrap(), "RGDNVW");
    assert_eq!(
        f.prop("D:getcontentlength").unwrap(),
        data.len().to_string()
    );
    assert_eq!(
        f.prop("D:getlastmodified").unwrap(),
        "Sun, 13 Sep 2020 12:26:40 GMT"
    );
    let sums = f.prop("oc:checksum").unwrap();
    assert!(
        sums.contains(&format!("SHA1:{}", sha1_hex(&data))),
        "{sums}"
    );
    // MD5 is computed only when a client announces it.
    assert!(
        !sums.contains("MD5:") && sums.contains("ADLER32:"),
        "{sums}"
    );
    assert!(f.prop("oc:fileid").unwrap().parse::<u64>().is_ok());
    assert!(file_id.starts_with(&format!(
        "{:08}",
        f.prop("oc:fileid").unwrap().parse::<u64>().unwrap()
    )));

    // A rename with a path-only, percent-encoded Destination keeps the id
    // and the etag of the file, and changes the folder's etag.
    let dir_etag = dir.prop("D:getetag").unwrap();
    let mv = dav
        .request("MOVE", &dav.url("my%20dir/a%23b%20%25.txt"))
        .header(
            "Destination",
            "/remote.php/dav/files/olga/my%20dir/renamed%20x.txt",
        )
        .send()
        .unwrap();
    assert_eq!(mv.status().as_u16(), 201);
    assert_eq!(header(&mv, "OC-FileId"), file_id);
    assert_eq!(header(&mv, "ETag"), file_etag);
    let root = propfind(&dav, "", "1");
    assert_ne!(
        entry(&root, "/my%20dir/").prop("D:getetag").unwrap(),
        dir_etag
    );
    let listing = propfind(&dav, "my%20dir/", "1");
    let f = entry(&listing, "/renamed%20x.txt");
    assert_eq!(f.prop("oc:id").unwrap(), file_id);
    assert_eq!(f.prop("D:getetag").unwrap(), file_etag);

    // Downloads carry the etag and the checksum the client verifies.
    let get = dav.get("my%20dir/renamed%20x.txt");
    assert_eq!(header(&get, "OC-ETag"), file_etag);
    assert_eq!(
        header(&get, "OC-Checksum"),
        format!("SHA1:{}", sha1_hex(&data))
    );
    assert!(get.bytes().unwrap() == data);

    // A PUT that announces nothing gets the configured types (Adler-32 by
    // default) in oc:checksums and on its downloads; SHA1 is not computed.
    assert_eq!(
        dav.put("my%20dir/plain.txt", b"hello world".to_vec())
            .status()
            .as_u16(),
        201
    );
    let listing = propfind(&dav, "my%20dir/", "1");
    let sums = entry(&listing, "/plain.txt").prop("oc:checksum").unwrap();
    assert_eq!(sums, "ADLER32:1a0b045d");
    let get = dav.get("my%20dir/plain.txt");
    assert_eq!(header(&get, "OC-Checksum"), "ADLER32:1a0b045d");
    let del = dav
        .request("DELETE", &dav.url("my%20dir/plain.txt"))
        .send()
        .unwrap();
    assert_eq!(del.status().as_u16(), 204);

    // Moving a file to another folder moves its bytes in the folder sizes.
    let mv = dav
        .request("MOVE", &dav.url("my%20dir/renamed%20x.txt"))
        .header("Destination", "/remote.php/dav/files/olga/other/x.txt")
        .send()
        .unwrap();
    assert_eq!(mv.status().as_u16(), 409, "no parent folder yet");
    assert_eq!(dav.mkcol("other").status().as_u16(), 201);
    let mv = dav
        .request("MOVE", &dav.url("my%20dir/renamed%20x.txt"))
        .header("Destination", "/remote.php/dav/files/olga/other/x.txt")
        .send()
        .unwrap();
    assert_eq!(mv.status().as_u16(), 201);
    let root = propfind(&dav, "", "1");
    assert_eq!(entry(&root, "/my%20dir/").prop("oc:size").unwrap(), "1000");
    assert_eq!(
        entry(&root, "/other/").prop("oc:size").unwrap(),
        data.len().to_string()
    );
    assert_eq!(
        entry(&root, "/olga/").prop("oc:size").unwrap(),
        (data.len() + 1000).to_string()
    );
    let mv = dav
        .request("MOVE", &dav.url("other/x.txt"))
        .header(
            "Destination",
            "/remote.php/dav/files/olga/my%20dir/renamed%20x.txt",
        )
        .send()
        .unwrap();
    assert_eq!(mv.status().as_u16(), 201);

    // A wrong checksum is refused and nothing is stored.
    let bad = dav
        .request("PUT", &dav.url("my%20dir/bad.txt"))
        .header(
            "OC-Checksum",
            "SHA1:0000000000000000000000000000000000000000",
        )
        .body(b"some bytes".to_vec())
        .send()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    assert!(bad
        .text()
        .unwrap()
        .contains("Sabre\\DAV\\Exception\\BadRequest"));
    assert_eq!(dav.get("my%20dir/bad.txt").status().as_u16(), 404);
    for kind in ["MD5", "ADLER32"] {
        let bad = dav
            .request("PUT", &dav.url("my%20dir/bad.txt"))
            .header("OC-Checksum", format!("{kind}:00000001"))
            .body(b"other bytes".to_vec())
            .send()
            .unwrap();
        assert_eq!(bad.status().as_u16(), 400, "{kind}");
    }
    assert_eq!(dav.get("my%20dir/bad.txt").status().as_u16(), 404);
}

fn sha1_hex(data: &[u8]) -> String {
    use sha1::{Digest, Sha1};
    hex::encode(Sha1::digest(data))
}

// ------------------------------------------------------- chunked uploads

fn uploads_url(dav: &Dav, user: &str, rest: &str) -> String {
    format!("{}/remote.php/dav/uploads/{user}/{rest}", dav.base)
}

fn status_of(res: reqwest::Result<Response>) -> u16 {
    res.expect("request").status().as_u16()
}

/// Uploads `data` in pieces of `piece` bytes named by `name(index, offset)`
/// in the given order of piece indexes.
fn put_pieces(
    dav: &Dav,
    transfer: &str,
    data: &[u8],
    piece: usize,
    order: &[usize],
    name: impl Fn(usize, usize) -> String,
) {
    for &i in order {
        let start = i * piece;
        let end = (start + piece).min(data.len());
        let url = uploads_url(dav, &dav.user, &format!("{transfer}/{}", name(i, start)));
        let res = dav
            .request("PUT", &url)
            .header("OC-Chunk-Offset", start.to_string())
            .body(data[start..end].to_vec())
            .send();
        assert_eq!(status_of(res), 201, "piece {i}");
    }
}

fn finish(dav: &Dav, transfer: &str, dest: &str, data: &[u8]) -> Response {
    dav.request(
        "MOVE",
        &uploads_url(dav, &dav.user, &format!("{transfer}/.file")),
    )
    .header(
        "Destination",
        format!("/remote.php/dav/files/{}/{dest}", dav.user),
    )
    .header("OC-Total-Length", data.len().to_string())
    .header("OC-Checksum", format!("SHA1:{}", sha1_hex(data)))
    .header("X-OC-Mtime", "1500000000")
    .send()
    .expect("MOVE")
}

#[test]
fn chunked_upload_in_any_naming_and_order() {
    let gw = TestGateway::start();
    gw.add_user("olga", "olga-pw");
    let dav = gw.client("olga", "olga-pw");
    let data = random_bytes(5 * 1024 * 1024 + 99, 3);
    let piece = 1024 * 1024;
    let n = data.len().div_ceil(piece);
    let in_order: Vec<usize> = (0..n).collect();
    let mut shuffled = in_order.clone();
    shuffled.reverse();
    type Namer = fn(usize, usize) -> String;
    let cases: [(&str, Namer, &[usize]); 4] = [
        ("offsets", |_, off| format!("{off:016}"), &in_order),
        ("indexes", |i, _| format!("{i:016}"), &in_order),
        (
            "start-end",
            |_, off| format!("{off:015}-{:015}", off + 1024 * 1024 - 1),
            &in_order,
        ),
        ("reversed", |_, off| format!("{off:016}"), &shuffled),
    ];
    for (label, namer, order) in cases {
        let transfer = format!("t-{label}");
        let mk = dav
            .request("MKCOL", &uploads_url(&dav, "olga", &transfer))
            .header("OC-Total-Length", data.len().to_string())
            .send();
        assert_eq!(status_of(mk), 201, "{label}");
        put_pieces(&dav, &transfer, &data, piece, order, namer);
        // A resume lists what is there.
        let list = dav
            .request("PROPFIND", &uploads_url(&dav, "olga", &transfer))
            .header("Depth", "1")
            .send()
            .unwrap();
        assert_eq!(list.status().as_u16(), 207);
        let text = list.text().unwrap();
        assert_eq!(text.matches("<d:getcontentlength>").count(), n, "{label}");
        let dest = format!("{label}.bin");
        let res = finish(&dav, &transfer, &dest, &data);
        assert_eq!(res.status().as_u16(), 201, "{label}: {:?}", res.text());
        assert_eq!(header(&res, "X-OC-MTime"), "accepted");
        let id = header(&res, "OC-FileId");
        let etag = header(&res, "ETag");
        assert!(
            dav.get_bytes(&dest).unwrap() == data,
            "{label}: wrong bytes"
        );
        let listing = propfind(&dav, "", "1");
        let e = entry(&listing, &format!("/{dest}"));
        assert_eq!(e.prop("oc:id").unwrap(), id);
        assert_eq!(e.prop("D:getetag").unwrap(), etag);
        assert!(e.prop("oc:checksum").unwrap().contains(&sha1_hex(&data)));
        // The session is gone.
        let gone = dav
            .request("PROPFIND", &uploads_url(&dav, "olga", &transfer))
            .header("Depth", "1")
            .send();
        assert_eq!(status_of(gone), 404);
    }
}

#[test]
fn chunked_upload_checks_before_assembling() {
    let gw = TestGateway::start();
    gw.add_user("olga", "olga-pw");
    let dav = gw.client("olga", "olga-pw");
    let old = random_bytes(300_000, 1);
    let put = dav.put("target.bin", old.clone());
    let old_etag = header(&put, "ETag");
    let data = random_bytes(2 * 1024 * 1024, 2);
    let piece = 1024 * 1024;
    let mk = dav
        .request("MKCOL", &uploads_url(&dav, "olga", "t1"))
        .send();
    assert_eq!(status_of(mk), 201);
    assert_eq!(
        status_of(
            dav.request("MKCOL", &uploads_url(&dav, "olga", "t1"))
                .send()
        ),
        405
    );
    put_pieces(&dav, "t1", &data, piece, &[0, 1], |_, off| {
        format!("{off:016}")
    });
    let url = uploads_url(&dav, "olga", "t1/.file");
    let dest = "/remote.php/dav/files/olga/target.bin";

    // Wrong total length.
    let res = dav
        .request("MOVE", &url)
        .header("Destination", dest)
        .header("OC-Total-Length", "5")
        .send();
    assert_eq!(status_of(res), 400);
    // Wrong checksum.
    let res = dav
        .request("MOVE", &url)
        .header("Destination", dest)
        .header(
            "OC-Checksum",
            "SHA1:0000000000000000000000000000000000000000",
        )
        .send();
    assert_eq!(status_of(res), 400);
    // A wrong checksum of a type not hashed while the pieces arrived
    // (MD5) is still checked: the pieces are read back for it.
    let res = dav
        .request("MOVE", &url)
        .header("Destination", dest)
        .header("OC-Checksum", "MD5:00000000000000000000000000000000")
        .send();
    assert_eq!(status_of(res), 400);
    // Stale etag in the If header.
    let res = dav
        .request("MOVE", &url)
        .header("Destination", dest)
        .header("If", format!("<{}{dest}> ([\"1-1\"])", gw.base))
        .send();
    assert_eq!(status_of(res), 412);
    // Must not overwrite.
    let res = dav
        .request("MOVE", &url)
        .header("Destination", dest)
        .header("Overwrite", "F")
        .send();
    assert_eq!(status_of(res), 412);
    // Into another user's files.
    let res = dav
        .request("MOVE", &url)
        .header("Destination", "/remote.php/dav/files/someone/x.bin")
        .send();
    assert_eq!(status_of(res), 403);
    assert!(
        dav.get_bytes("target.bin").unwrap() == old,
        "changed by a refused MOVE"
    );

    // With the right etag the file is replaced, keeping its id.
    let res = dav
        .request("MOVE", &url)
        .header("Destination", dest)
        .header("OC-Total-Length", data.len().to_string())
        .header("OC-Checksum", format!("SHA1:{}", sha1_hex(&data)))
        .header("If", format!("<{}{dest}> ([{old_etag}])", gw.base))
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    assert_eq!(header(&res, "OC-FileId"), header(&put, "OC-FileId"));
    assert!(dav.get_bytes("target.bin").unwrap() == data);
}

#[test]
fn transfers_are_private_abandonable_and_expire() {
    let gw = TestGateway::start();
    gw.add_user("olga", "olga-pw");
    gw.add_user("mallory", "mallory-pw");
    let olga = gw.client("olga", "olga-pw");
    let mallory = gw.client("mallory", "mallory-pw");
    olga.put("kept.bin", random_bytes(1_500_000, 9));
    let refs = wait(gw.meta.chunk_references()).unwrap();

    let mk = olga
        .request("MKCOL", &uploads_url(&olga, "olga", "secret"))
        .send();
    assert_eq!(status_of(mk), 201);
    // Half of it is already stored as kept.bin (dedup), half is new.
    let mut piece = random_bytes(1_500_000, 9);
    piece.extend(random_bytes(1_500_000, 10));
    put_pieces(&olga, "secret", &piece, piece.len(), &[0], |_, _| {
        "0".repeat(16)
    });
    let held = wait(gw.meta.chunk_references()).unwrap();
    assert!(held > refs, "the session holds no chunk references");

    // Another user can neither see nor touch it, under either name.
    for (method, url) in [
        ("PROPFIND", uploads_url(&mallory, "olga", "secret")),
        ("DELETE", uploads_url(&mallory, "olga", "secret")),
        (
            "PUT",
            uploads_url(&mallory, "olga", "secret/0000000000000001"),
        ),
        ("MOVE", uploads_url(&mallory, "olga", "secret/.file")),
    ] {
        let res = mallory
            .request(method, &url)
            .header("Destination", "/remote.php/dav/files/mallory/stolen.bin")
            .body(Vec::new())
            .send();
        assert_eq!(status_of(res), 403, "{method}");
    }
    for method in ["PROPFIND", "DELETE"] {
        let res = mallory
            .request(method, &uploads_url(&mallory, "mallory", "secret"))
            .send();
        assert_eq!(
            status_of(res),
            404,
            "{method} of a transfer mallory does not have"
        );
    }
    let res = mallory
        .request("MOVE", &uploads_url(&mallory, "mallory", "secret/.file"))
        .header("Destination", "/remote.php/dav/files/mallory/stolen.bin")
        .send();
    assert_eq!(status_of(res), 404);
    assert_eq!(wait(gw.meta.chunk_references()).unwrap(), held);

    // Abandoning releases what the session held.
    let res = olga
        .request("DELETE", &uploads_url(&olga, "olga", "secret"))
        .send();
    assert_eq!(status_of(res), 204);
    assert_eq!(wait(gw.meta.chunk_references()).unwrap(), refs);
    assert!(olga.get_bytes("kept.bin").unwrap() == random_bytes(1_500_000, 9));

    // Untouched sessions expire after the TTL, releasing what they held;
    // nothing expires early.
    for t in ["stale", "staler"] {
        let mk = olga.request("MKCOL", &uploads_url(&olga, "olga", t)).send();
        assert_eq!(status_of(mk), 201);
        put_pieces(&olga, t, &piece, piece.len(), &[0], |_, _| "0".repeat(16));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    gw.gateway
        .set_upload_ttl(std::time::Duration::from_secs(3600));
    assert_eq!(
        wait(gw.gateway.expire_sessions(now)),
        0,
        "nothing is stale yet"
    );
    assert_eq!(wait(gw.gateway.expire_sessions(now + 7200)), 2);
    assert_eq!(wait(gw.meta.chunk_references()).unwrap(), refs);
    let res = olga
        .request("PROPFIND", &uploads_url(&olga, "olga", "stale"))
        .header("Depth", "1")
        .send();
    assert_eq!(status_of(res), 404);
}

#[test]
fn chunked_upload_respects_locks_on_its_destination() {
    let gw = TestGateway::start();
    gw.add_user("lena", "lena-pw");
    let dav = gw.client("lena", "lena-pw");
    assert_eq!(dav.put("locked.bin", b"old".to_vec()).status(), 201);
    let lock = dav
        .request("LOCK", &dav.url("locked.bin"))
        .body(r#"<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype></D:lockinfo>"#)
        .send()
        .unwrap();
    assert_eq!(lock.status(), 200);
    let token = header(&lock, "lock-token");
    let data = random_bytes(300_000, 9);
    let transfer = "locked-transfer";
    assert_eq!(
        status_of(
            dav.request("MKCOL", &uploads_url(&dav, "lena", transfer))
                .send()
        ),
        201
    );
    put_pieces(&dav, transfer, &data, 100_000, &[0, 1, 2], |_, off| {
        format!("{off:016}")
    });
    // Without the lock token: refused, the old content stays.
    assert_eq!(finish(&dav, transfer, "locked.bin", &data).status(), 423);
    assert_eq!(dav.get_bytes("locked.bin").unwrap(), b"old");
    // With it: assembled.
    let res = dav
        .request(
            "MOVE",
            &uploads_url(&dav, "lena", &format!("{transfer}/.file")),
        )
        .header("Destination", "/remote.php/dav/files/lena/locked.bin")
        .header("OC-Total-Length", data.len().to_string())
        .header("If", format!("({token})"))
        .send()
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(dav.get_bytes("locked.bin").unwrap(), data);
}

#[test]
fn removing_a_user_releases_their_unfinished_uploads() {
    let gw = TestGateway::start();
    gw.add_user("gone", "gone-pw");
    let dav = gw.client("gone", "gone-pw");
    let data = random_bytes(300_000, 11);
    assert_eq!(
        status_of(
            dav.request("MKCOL", &uploads_url(&dav, "gone", "t1"))
                .send()
        ),
        201
    );
    put_pieces(&dav, "t1", &data, 100_000, &[0, 1], |_, off| {
        format!("{off:016}")
    });
    assert_eq!(dav.put("kept.bin", random_bytes(50_000, 12)).status(), 201);
    assert!(wait(gw.meta.chunk_references()).unwrap() > 0);
    wait(dedupdav::accounts::remove_user(&gw.meta, "gone")).unwrap();
    assert_eq!(
        wait(gw.meta.chunk_references()).unwrap(),
        0,
        "nothing holds a chunk any more"
    );
    assert!(wait(gw.meta.user("gone")).unwrap().is_none());
}
