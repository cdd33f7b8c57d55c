//! The `dedupdav` command as a person uses it: first start on the embedded
//! defaults, user management, stats, and clear errors.

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

fn dedupdav() -> Command {
    common::dedupdav_command()
}

fn run(args: &[&str], dir: &std::path::Path, stdin: Option<&str>) -> (bool, String) {
    common::run_cli(dir, args, stdin)
}

#[test]
fn first_start_prints_key_warning_and_admin_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = dedupdav()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (password, addr) = common::read_first_start(&mut child);
    let key = dir.path().join("dedupdav-data/master.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let res = http
        .request(
            reqwest::Method::from_bytes(b"PROPFIND").unwrap(),
            format!("{addr}/remote.php/webdav/"),
        )
        .header("Depth", "0")
        .basic_auth("admin", Some(&password))
        .send()
        .unwrap();
    assert_eq!(res.status(), 207);
    let home = http.get(format!("{addr}/")).send().unwrap().text().unwrap();
    assert!(home.contains("/remote.php/dav/files/"));

    // While the server runs, the command line goes through it.
    let (ok, text) = run(&["user", "add", "bob"], dir.path(), None);
    assert!(ok, "{text}");

    child.kill().unwrap();
    child.wait().unwrap();

    // A killed server leaves its access file; nobody answers there, so the
    // command line works on the index directly. A second start keeps the
    // key and creates no second admin.
    let (ok, text) = run(&["user", "list"], dir.path(), None);
    assert!(ok, "{text}");
    assert!(text.contains("admin") && text.contains("bob"), "{text}");
}

#[test]
fn user_management_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, text) = run(
        &[
            "user",
            "add",
            "alice",
            "--quota",
            "10GiB",
            "--password-stdin",
        ],
        d,
        Some("s3cret\n"),
    );
    assert!(ok, "{text}");
    let (ok, text) = run(&["user", "add", "carol", "--admin"], d, None);
    assert!(ok, "{text}");
    assert!(
        text.contains("password: "),
        "a generated password is printed"
    );
    let (ok, text) = run(&["user", "add", "alice", "--password-stdin"], d, Some("x"));
    assert!(!ok && text.contains("already exists"), "{text}");
    let (ok, text) = run(
        &["user", "add", "../evil", "--password-stdin"],
        d,
        Some("x"),
    );
    assert!(!ok && text.contains("invalid user name"), "{text}");
    let (ok, text) = run(&["user", "add", "dave", "--quota", "lots"], d, None);
    assert!(!ok && text.contains("invalid size"), "{text}");
    let (ok, text) = run(&["user", "list"], d, None);
    assert!(
        ok && text.contains("alice") && text.contains("10737418240"),
        "{text}"
    );
    let (ok, _) = run(
        &["user", "passwd", "alice", "--password-stdin"],
        d,
        Some("new"),
    );
    assert!(ok);
    let (ok, text) = run(&["user", "remove", "carol"], d, None);
    assert!(ok, "{text}");
    let (ok, text) = run(&["user", "remove", "carol"], d, None);
    assert!(!ok && text.contains("no user"), "{text}");

    let (ok, text) = run(&["stats", "--json"], d, None);
    assert!(ok, "{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("a JSON line");
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    for k in ["users", "files", "logical_bytes", "stored_bytes", "chunks"] {
        assert!(json.get(k).is_some(), "stats lacks {k}: {json}");
    }
    assert_eq!(json["users"], 1);
    let (ok, text) = run(&["stats"], d, None);
    assert!(ok && text.contains("dedup ratio"), "{text}");
    let (ok, text) = run(&["gc", "--grace-hours", "0"], d, None);
    assert!(ok && text.contains("deleted 0 objects"), "{text}");
}

#[test]
fn bad_configuration_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[backend]\nkind = \"local\"\nurll = \"x\"\n",
    )
    .unwrap();
    let (ok, text) = run(&["--config", "c.toml", "stats"], dir.path(), None);
    assert!(!ok && text.contains("urll"), "{text}");
    let mut c = dedupdav();
    let out = c
        .args(["stats"])
        .current_dir(dir.path())
        .env("DEDUPDAV_CHUNKING__AVG_SIZE", "1000")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("chunking"), "{text}");
    let (ok, text) = run(&["--config", "missing.toml", "stats"], dir.path(), None);
    assert!(!ok && text.contains("missing.toml"), "{text}");
    let (ok, text) = run(&["check-upstream"], dir.path(), None);
    assert!(!ok && text.contains("local"), "{text}");
}
