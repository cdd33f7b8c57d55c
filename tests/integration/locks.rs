//! WebDAV locks kept in the metadata: a lock outlives a gateway restart
//! and is enforced after it, expires on time, covers a folder's contents
//! at depth infinity, creates an empty file on an unmapped URL, and does
//! not move with MOVE. Then davfs2 with its default configuration (locks
//! on): two mounts of one tree, the second meeting the first one's lock.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use reqwest::blocking::Response;

use crate::common::gateway::{Dav, TestGateway};

on_both_backends!(
    a_lock_is_enforced_after_a_restart,
    a_short_lock_expires_on_time,
    folder_locks_cover_below_and_stay_behind_on_move
);

const EXCLUSIVE: &str = "<?xml version=\"1.0\"?><D:lockinfo xmlns:D=\"DAV:\">\
    <D:lockscope><D:exclusive/></D:lockscope><D:locktype><D:write/></D:locktype>\
    <D:owner><D:href>mailto:ann@example.org</D:href></D:owner></D:lockinfo>";

/// LOCKs `path` (encoded) exclusively: the response.
fn lock(dav: &Dav, path: &str, depth: &str, timeout: &str) -> Response {
    dav.request("LOCK", &dav.url(path))
        .header("Depth", depth)
        .header("Timeout", timeout)
        .body(EXCLUSIVE)
        .send()
        .expect("LOCK")
}

/// LOCKs `path` and answers the token the reply carries.
fn take(dav: &Dav, path: &str, depth: &str, timeout: &str) -> String {
    let res = lock(dav, path, depth, timeout);
    assert!(res.status().is_success(), "LOCK {path}: {}", res.status());
    let header = res
        .headers()
        .get("lock-token")
        .and_then(|v| v.to_str().ok())
        .expect("a Lock-Token header")
        .to_string();
    let body = res.text().unwrap();
    let token = header.trim_matches(|c| c == '<' || c == '>').to_string();
    assert!(body.contains(&token), "{body}");
    token
}

fn put_with(dav: &Dav, path: &str, body: &[u8], token: Option<&str>) -> u16 {
    let mut req = dav.request("PUT", &dav.url(path)).body(body.to_vec());
    if let Some(t) = token {
        req = req.header("If", format!("(<{t}>)"));
    }
    req.send().expect("PUT").status().as_u16()
}

/// The lockdiscovery of `path`, as the XML text of a PROPFIND.
fn discovery(dav: &Dav, path: &str) -> String {
    let res = dav
        .request("PROPFIND", &dav.url(path))
        .header("Depth", "0")
        .body(
            "<?xml version=\"1.0\"?><D:propfind xmlns:D=\"DAV:\"><D:prop>\
             <D:lockdiscovery/></D:prop></D:propfind>",
        )
        .send()
        .expect("PROPFIND");
    assert_eq!(res.status(), 207);
    res.text().unwrap()
}

fn a_lock_is_enforced_after_a_restart(gw: TestGateway) {
    gw.add_user("ann", "ann-pw");
    let dav = gw.client("ann", "ann-pw");
    assert!(dav.put("report.odt", b"v1".to_vec()).status().is_success());
    let token = take(&dav, "report.odt", "0", "Second-600");
    assert_eq!(put_with(&dav, "report.odt", b"v2", None), 423);

    let gw = gw.stop().restart();
    let dav = gw.client("ann", "ann-pw");
    assert_eq!(
        put_with(&dav, "report.odt", b"v2", None),
        423,
        "still locked"
    );
    let res = dav
        .request("DELETE", &dav.url("report.odt"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 423);
    assert_eq!(lock(&dav, "report.odt", "0", "Second-60").status(), 423);
    let found = discovery(&dav, "report.odt");
    assert!(found.contains(&token), "{found}");
    assert!(
        found.contains("mailto:ann@example.org"),
        "the owner: {found}"
    );
    assert_eq!(dav.get_bytes("report.odt").unwrap(), b"v1");

    // The holder writes with its token, refreshes, then unlocks.
    assert_eq!(put_with(&dav, "report.odt", b"v2", Some(&token)), 204);
    let refreshed = dav
        .request("LOCK", &dav.url("report.odt"))
        .header("If", format!("(<{token}>)"))
        .header("Timeout", "Second-300")
        .send()
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    assert!(refreshed.text().unwrap().contains("Second-300"));
    let wrong = dav
        .request("UNLOCK", &dav.url("report.odt"))
        .header(
            "Lock-Token",
            "<urn:uuid:00000000-0000-4000-8000-000000000000>",
        )
        .send()
        .unwrap();
    assert_eq!(wrong.status(), 409, "a wrong token releases nothing");
    let res = dav
        .request("UNLOCK", &dav.url("report.odt"))
        .header("Lock-Token", format!("<{token}>"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(put_with(&dav, "report.odt", b"v3", None), 204);
    assert_eq!(dav.get_bytes("report.odt").unwrap(), b"v3");
}

fn a_short_lock_expires_on_time(gw: TestGateway) {
    gw.add_user("ann", "ann-pw");
    let dav = gw.client("ann", "ann-pw");
    // A lock on an unmapped URL creates an empty file (RFC 4918, 7.3).
    let res = lock(&dav, "new.txt", "0", "Second-2");
    assert_eq!(res.status(), 201);
    assert!(res.text().unwrap().contains("Second-2"));
    assert_eq!(dav.get_bytes("new.txt").unwrap(), b"");
    assert_eq!(put_with(&dav, "new.txt", b"x", None), 423);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        !discovery(&dav, "new.txt").contains("opaquelocktoken")
            && !discovery(&dav, "new.txt").contains("urn:uuid"),
        "no lock is shown once it expired"
    );
    assert_eq!(put_with(&dav, "new.txt", b"x", None), 204);
    // The expired record does not count against a new lock either.
    take(&dav, "new.txt", "0", "Second-60");
}

fn folder_locks_cover_below_and_stay_behind_on_move(gw: TestGateway) {
    gw.add_user("ann", "ann-pw");
    let dav = gw.client("ann", "ann-pw");
    assert!(dav.mkcol("team").status().is_success());
    assert!(dav.mkcol("team/sub").status().is_success());
    assert!(dav
        .put("team/sub/a.txt", b"a".to_vec())
        .status()
        .is_success());
    let token = take(&dav, "team", "infinity", "Second-600");
    assert_eq!(put_with(&dav, "team/sub/b.txt", b"b", None), 423);
    assert_eq!(dav.mkcol("team/new").status(), 423);
    assert_eq!(put_with(&dav, "team/sub/b.txt", b"b", Some(&token)), 201);
    assert_eq!(lock(&dav, "team/sub/a.txt", "0", "Second-60").status(), 423);
    assert!(discovery(&dav, "team/sub/a.txt").contains(&token));
    assert_eq!(put_with(&dav, "elsewhere.txt", b"e", None), 201);

    // MOVE with the token: the lock stays behind and goes away.
    let res = dav
        .request("MOVE", &dav.url("team"))
        .header("Destination", dav.url("moved"))
        .header("If", format!("(<{token}>)"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(put_with(&dav, "moved/sub/c.txt", b"c", None), 201);
    assert!(!discovery(&dav, "moved").contains(&token));
    assert!(dav.mkcol("team").status().is_success());
    assert_eq!(
        put_with(&dav, "team/d.txt", b"d", None),
        201,
        "no lock left"
    );
    // DELETE drops the locks on what it removed.
    let file_token = take(&dav, "moved/sub/a.txt", "0", "Second-600");
    let res = dav
        .request("DELETE", &dav.url("moved"))
        .header("If", format!("(<{file_token}>)"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(put_with(&dav, "moved", b"now a file", None), 201);
    let res = lock(&dav, "moved/sub/a.txt", "0", "Second-60");
    assert_eq!(res.status(), 409, "its parent is a file now");
}

// ---------------------------------------------------------------- davfs2

fn run(cmd: &mut Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what} is not installed ({e}): run the README test command, which installs it")
    });
    assert_ne!(out.status.code(), Some(127), "{what} is not installed");
    out
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A davfs2 mount of `url` at `dir/name`, with davfs2's defaults (locks
/// on) but for the settings the test machine needs and `extra`; unmounted
/// on drop.
pub(crate) struct Mount {
    point: PathBuf,
}

impl Mount {
    pub(crate) fn new(dir: &Path, name: &str, url: &str, login: (&str, &str), extra: &str) -> Self {
        let (user, password) = login;
        let point = dir.join(name);
        std::fs::create_dir_all(&point).expect("mount point");
        let secrets = dir.join(format!("{name}.secrets"));
        std::fs::write(&secrets, format!("{url} {user} {password}\n")).expect("secrets");
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(&secrets, mode).expect("chmod");
        }
        // Without `buf_size 64` davfs2 1.6 cannot list on this kernel.
        // Each mount point has a cache of its own.
        let conf = dir.join(format!("{name}.conf"));
        let secrets = secrets.display();
        let settings = format!("buf_size 64\nsecrets {secrets}\nask_auth 0\n{extra}");
        std::fs::write(&conf, settings).expect("conf");
        let out = run(
            Command::new("timeout")
                .args(["60", "mount.davfs", "-o"])
                .arg(format!("conf={}", conf.display()))
                .arg(url)
                .arg(&point),
            "davfs2 (mount.davfs)",
        );
        assert!(out.status.success(), "mount.davfs failed:\n{}", text(&out));
        Self { point }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.point.join(rel)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let out = run(
            Command::new("timeout")
                .args(["120", "umount"])
                .arg(&self.point),
            "umount",
        );
        if !out.status.success() && !std::thread::panicking() {
            panic!("umount failed:\n{}", text(&out));
        }
    }
}

#[test]
fn davfs2_with_locks_writes_renames_deletes_and_meets_the_other_mounts_lock() {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("SKIPPED: /dev/fuse is missing, so davfs2 cannot mount here");
        return;
    }
    let gw = TestGateway::start();
    gw.add_user("dora", "dora-pw");
    let work = tempfile::tempdir().expect("temp dir");
    let url = format!("{}/remote.php/dav/files/dora/", gw.base);
    let dav = gw.client("dora", "dora-pw");
    {
        let first = Mount::new(work.path(), "first", &url, ("dora", "dora-pw"), "");
        std::fs::create_dir(first.path("docs")).expect("mkdir");
        std::fs::write(first.path("docs/draft.txt"), b"draft\n").expect("write");
        std::fs::rename(first.path("docs/draft.txt"), first.path("docs/final.txt"))
            .expect("rename");
        std::fs::write(first.path("docs/scratch.txt"), b"x").expect("write");
        std::fs::remove_file(first.path("docs/scratch.txt")).expect("delete");
        assert_eq!(
            std::fs::read(first.path("docs/final.txt")).expect("read back"),
            b"draft\n"
        );

        // The first mount holds a file open for writing: davfs2 locks it.
        use std::io::Write;
        let mut held = std::fs::OpenOptions::new()
            .write(true)
            .open(first.path("docs/final.txt"))
            .expect("open for writing");
        held.write_all(b"edited\n").expect("write");
        held.flush().expect("flush");
        let found = discovery(&dav, "docs/final.txt");
        assert!(found.contains("activelock"), "davfs2 took a lock: {found}");
        assert_eq!(put_with(&dav, "docs/final.txt", b"over", None), 423);

        // davfs2 takes a lock whose owner is its own `lock_owner` (by
        // default the user name) for one it holds, so two machines of one
        // account tell their locks apart by their lock owners.
        let second = Mount::new(
            work.path(),
            "second",
            &url,
            ("dora", "dora-pw"),
            "lock_owner dora-laptop\n",
        );
        let other = std::fs::OpenOptions::new()
            .write(true)
            .open(second.path("docs/final.txt"));
        assert!(
            other.is_err(),
            "the second mount meets the first one's lock"
        );
        // Reading is not refused (what it shows depends on when the
        // first mount uploads: davfs2 delays uploads).
        std::fs::read(second.path("docs/final.txt")).expect("reading is fine");
        drop(held);
    }
    // Both unmounted: what the first mount wrote is on the gateway and its
    // lock is released.
    assert_eq!(dav.get_bytes("docs/final.txt").unwrap(), b"edited\n");
    assert_eq!(dav.get("docs/draft.txt").status(), 404);
    assert_eq!(dav.get("docs/scratch.txt").status(), 404);
    assert!(!discovery(&dav, "docs/final.txt").contains("activelock"));
    assert_eq!(put_with(&dav, "docs/final.txt", b"free", None), 204);
}
