//! The admin REST API (`/api/v1/`) and the command line managing a
//! running gateway through it: changes hold from the next request, only
//! administrators get in, errors are JSON with the right status, no
//! password hash ever leaves, and every change is in the audit log.

use crate::common;
use crate::common::gateway::{basic, random_bytes, TestGateway};

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::Method;
use serde_json::{json, Value};

fn http() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A `dedupdav serve` child process on its own data directory.
struct Serve {
    child: Child,
    dir: tempfile::TempDir,
    base: String,
    admin_password: String,
}

impl Serve {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = common::dedupdav_command()
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (admin_password, base) = common::read_first_start(&mut child);
        Self {
            child,
            dir,
            base,
            admin_password,
        }
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Runs the command line on the same data directory.
    fn cli(&self, args: &[&str], stdin: Option<&str>) -> (bool, String) {
        cli(&self.data(), args, stdin)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(data: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let data = data.to_string_lossy();
    let all = [&["--data-dir", data.as_ref()], args].concat();
    common::run_cli(Path::new("."), &all, stdin)
}

fn put(base: &str, user: &str, password: &str, name: &str, body: Vec<u8>) -> u16 {
    http()
        .put(format!("{base}/remote.php/dav/files/{user}/{name}"))
        .basic_auth(user, Some(password))
        .body(body)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// `method /api/v1{path}` as `user` (None: anonymous), with a raw body.
fn api(
    base: &str,
    method: Method,
    path: &str,
    user: Option<(&str, &str)>,
    body: Option<&str>,
) -> (u16, Value) {
    let mut req = http().request(method, format!("{base}/api/v1{path}"));
    if let Some((u, p)) = user {
        req = req.header("Authorization", basic(u, p));
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    answer(req.send().unwrap())
}

fn answer(res: Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let text = res.text().unwrap();
    assert_eq!(
        ctype.as_deref(),
        Some("application/json"),
        "{status} {text}"
    );
    assert!(
        !text.contains("$argon2") && !text.contains("password_hash"),
        "a password hash in {text}"
    );
    let json: Value = serde_json::from_str(&text).unwrap();
    if status >= 400 {
        assert_eq!(json["status"], status, "{json}");
        assert!(json["error"].is_string(), "{json}");
    }
    (status, json)
}

/// A gateway in this process with an administrator `root`.
fn gateway_with_admin() -> TestGateway {
    let gw = TestGateway::start();
    common::wait(dedupdav::accounts::add_user(
        &gw.meta, "root", "rootpw", true, None,
    ))
    .unwrap();
    gw
}

const ROOT: Option<(&str, &str)> = Some(("root", "rootpw"));

#[test]
fn the_command_line_manages_a_running_serve() {
    let s = Serve::start();
    let data = s.data();
    let access = data.join("admin-access.json");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&access).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "only the gateway's user reads the token"
    );

    // A new user can upload at once.
    let (ok, text) = s.cli(&["user", "add", "alice", "--password-stdin"], Some("pw1\n"));
    assert!(ok, "{text}");
    assert_eq!(
        put(&s.base, "alice", "pw1", "a.txt", b"hello".to_vec()),
        201
    );

    // A new password holds from the next request.
    let (ok, text) = s.cli(
        &["user", "passwd", "alice", "--password-stdin"],
        Some("pw2"),
    );
    assert!(ok, "{text}");
    assert_eq!(put(&s.base, "alice", "pw1", "b.txt", b"x".to_vec()), 401);
    assert_eq!(put(&s.base, "alice", "pw2", "b.txt", b"x".to_vec()), 201);

    // So does a quota, and lifting it.
    let (ok, text) = s.cli(&["user", "set", "alice", "--quota", "10"], None);
    assert!(ok, "{text}");
    let over = put(&s.base, "alice", "pw2", "c.txt", vec![7; 100]);
    assert!(over >= 400, "over the quota: {over}");
    let (ok, text) = s.cli(&["user", "set", "alice", "--quota", "none"], None);
    assert!(ok, "{text}");
    assert_eq!(put(&s.base, "alice", "pw2", "c.txt", vec![7; 100]), 201);

    // Disabled: no login; enabled again: back in.
    let (ok, text) = s.cli(&["user", "set", "alice", "--disable"], None);
    assert!(ok, "{text}");
    assert_eq!(put(&s.base, "alice", "pw2", "d.txt", b"x".to_vec()), 401);
    let (ok, text) = s.cli(&["user", "list"], None);
    assert!(ok && text.contains("alice"), "{text}");
    let (ok, text) = s.cli(&["user", "set", "alice", "--enable"], None);
    assert!(ok, "{text}");
    assert_eq!(put(&s.base, "alice", "pw2", "d.txt", b"x".to_vec()), 201);

    let (ok, text) = s.cli(&["stats", "--json"], None);
    assert!(ok, "{text}");
    let stats: Value =
        serde_json::from_str(text.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert_eq!(
        (stats["users"].as_u64(), stats["files"].as_u64()),
        (Some(2), Some(4))
    );
    let (ok, text) = s.cli(&["check"], None);
    assert!(ok && text.contains("result: clean"), "{text}");
    let (ok, text) = s.cli(&["check", "--json"], None);
    assert!(ok && text.contains("\"clean\":true"), "{text}");
    let (ok, text) = s.cli(&["check", "--read-data"], None);
    assert!(!ok && text.contains("needs `serve` stopped"), "{text}");
    let (ok, text) = s.cli(&["user", "add", "alice", "--password-stdin"], Some("x"));
    assert!(!ok && text.contains("already exists"), "{text}");

    // Jobs run on request, and that is audited too.
    let admin = Some(("admin", s.admin_password.as_str()));
    let (status, jobs) = api(&s.base, Method::GET, "/jobs", admin, None);
    assert_eq!(status, 200);
    let names: Vec<&str> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"gc") && names.contains(&"metadata"),
        "{names:?}"
    );
    let (status, _) = api(&s.base, Method::POST, "/jobs/gc/run", admin, None);
    assert_eq!(status, 202);
    let (status, _) = api(&s.base, Method::POST, "/jobs/nothing/run", admin, None);
    assert_eq!(status, 404);
    let ran = (0..200).any(|_| {
        let (_, jobs) = api(&s.base, Method::GET, "/jobs", admin, None);
        let gc = jobs["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["name"] == "gc")
            .cloned()
            .unwrap();
        let done = gc["runs"].as_u64().unwrap() >= 1;
        if !done {
            std::thread::sleep(Duration::from_millis(50));
        }
        done
    });
    assert!(ran, "the gc ran on request");

    let (ok, text) = s.cli(&["user", "remove", "alice"], None);
    assert!(ok, "{text}");
    assert_eq!(put(&s.base, "alice", "pw2", "e.txt", b"x".to_vec()), 401);

    let (status, log) = api(&s.base, Method::GET, "/audit?limit=50", admin, None);
    assert_eq!(status, 200);
    let entries = log["entries"].as_array().unwrap();
    let actions: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            "user.remove alice",
            "job.run gc",
            "user.update alice",
            "user.update alice",
            "user.update alice",
            "user.update alice",
            "user.update alice",
            "user.create alice",
        ],
        "newest first; the refused add is not there"
    );
    for e in entries {
        assert!(e["time"].as_i64().unwrap() > 1_600_000_000, "{e}");
        assert_eq!(e["source"], "127.0.0.1", "{e}");
        assert!(!e["detail"].as_str().unwrap().contains("pw"), "{e}");
    }
    assert_eq!(entries[1]["actor"], "admin");
    assert!(entries[2..].iter().all(|e| e["actor"] == "local-cli"));
    assert_eq!(entries[3]["detail"], "disabled");
    assert_eq!(entries[6]["detail"], "password changed");

    // Stopped: the file goes, and the command line works on the index
    // directly again (audited as the offline command line).
    let pid = s.child.id().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let mut s = s;
    s.child.wait().unwrap();
    assert!(
        !access.exists(),
        "serve removes its access file when it stops"
    );
    let (ok, text) = cli(
        &data,
        &["user", "add", "bob", "--password-stdin"],
        Some("x"),
    );
    assert!(ok, "{text}");
}

#[test]
fn only_administrators_get_in_on_every_endpoint() {
    let gw = gateway_with_admin();
    gw.add_user("alice", "alicepw");
    let alice = Some(("alice", "alicepw"));
    let endpoints = [
        (Method::GET, "/users"),
        (Method::POST, "/users"),
        (Method::GET, "/users/alice"),
        (Method::PATCH, "/users/alice"),
        (Method::DELETE, "/users/alice"),
        (Method::GET, "/stats"),
        (Method::GET, "/jobs"),
        (Method::POST, "/jobs/gc/run"),
        (Method::GET, "/check"),
        (Method::GET, "/upstream"),
        (Method::GET, "/audit"),
        (Method::GET, "/nothing"),
    ];
    for (m, path) in &endpoints {
        let body = Some(r#"{"name": "x", "admin": true}"#);
        let (status, _) = api(&gw.base, m.clone(), path, alice, body);
        assert_eq!(status, 403, "{m} {path} as a user");
        let (status, _) = api(&gw.base, m.clone(), path, None, body);
        assert_eq!(status, 401, "{m} {path} anonymously");
        let (status, _) = api(&gw.base, m.clone(), path, Some(("root", "wrong")), body);
        assert_eq!(status, 401, "{m} {path} with a wrong password");
    }
    // A token is only accepted once `serve` has made one, and only that one.
    let (status, _) = answer(
        http()
            .get(format!("{}/api/v1/users", gw.base))
            .bearer_auth("guess")
            .send()
            .unwrap(),
    );
    assert_eq!(status, 401);
    gw.gateway.allow_local_admin("the-token");
    let with = |token: &str| {
        answer(
            http()
                .get(format!("{}/api/v1/users", gw.base))
                .bearer_auth(token)
                .send()
                .unwrap(),
        )
        .0
    };
    assert_eq!((with("guess"), with("the-token")), (401, 200));
    // Nothing changed on the way.
    assert!(common::wait(gw.meta.user("alice")).unwrap().is_some());
    assert!(common::wait(gw.meta.audit_log(10)).unwrap().is_empty());
}

#[test]
fn requests_are_checked_and_answered_as_json() {
    let gw = gateway_with_admin();
    let b = gw.base.as_str();
    let (status, created) = api(
        b,
        Method::POST,
        "/users",
        ROOT,
        Some(r#"{"name": "bob", "quota": "1MiB"}"#),
    );
    assert_eq!(status, 201, "{created}");
    let password = created["password"].as_str().unwrap().to_string();
    assert_eq!(created["user"]["quota"], 1 << 20);
    assert_eq!(put(b, "bob", &password, "f", b"x".to_vec()), 201);

    let bad = [
        (Method::POST, "/users", "{not json", 400),
        (Method::POST, "/users", "[1, 2]", 400),
        (Method::POST, "/users", r#"{"name": "bob"}"#, 409),
        (Method::POST, "/users", r#"{"name": "../x"}"#, 400),
        (
            Method::POST,
            "/users",
            r#"{"name": "carl", "password": ""}"#,
            400,
        ),
        (
            Method::POST,
            "/users",
            r#"{"name": "carl", "colour": "red"}"#,
            400,
        ),
        (
            Method::POST,
            "/users",
            r#"{"name": "carl", "quota": "lots"}"#,
            400,
        ),
        (Method::POST, "/users", r#"{"name": 5}"#, 400),
        (Method::PATCH, "/users/bob", "{}", 400),
        (Method::PATCH, "/users/bob", r#"{"admin": "yes"}"#, 400),
        (Method::PATCH, "/users/nobody", r#"{"admin": true}"#, 404),
        (Method::DELETE, "/users/nobody", "", 404),
        (Method::GET, "/users/nobody", "", 404),
        (Method::PUT, "/users", "", 405),
        (Method::GET, "/audit?limit=0", "", 400),
        (Method::GET, "/audit?color=1", "", 400),
        (Method::GET, "/nothing", "", 404),
    ];
    for (m, path, body, want) in bad {
        let (status, json) = api(b, m.clone(), path, ROOT, Some(body));
        assert_eq!(status, want, "{m} {path} {body}: {json}");
    }
    let huge = format!(
        r#"{{"name": "carl", "password": "{}"}}"#,
        "x".repeat(100_000)
    );
    let (status, _) = api(b, Method::POST, "/users", ROOT, Some(&huge));
    assert_eq!(status, 413);
    assert!(common::wait(gw.meta.user("carl")).unwrap().is_none());

    let (status, bob) = api(
        b,
        Method::PATCH,
        "/users/bob",
        ROOT,
        Some(r#"{"quota": null, "admin": true}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(
        (bob["quota"].clone(), bob["admin"].clone()),
        (Value::Null, json!(true))
    );
    for path in ["/users", "/users/bob", "/users/root", "/stats", "/audit"] {
        let (status, _) = api(b, Method::GET, path, ROOT, None);
        assert_eq!(status, 200, "{path}");
    }
    let (_, stats) = api(b, Method::GET, "/stats", ROOT, None);
    for k in [
        "users",
        "files",
        "logical_bytes",
        "stored_bytes",
        "chunks",
        "dedup_ratio",
        "bytes_saved",
    ] {
        assert!(stats["installation"].get(k).is_some(), "{k}: {stats}");
    }
    let users = stats["users"].as_array().unwrap();
    assert!(users
        .iter()
        .any(|u| u["name"] == "bob" && u["logical_bytes"] == 1 && u["files"] == 1));
    let (status, up) = api(b, Method::GET, "/upstream", ROOT, None);
    assert_eq!((status, up["kind"].as_str()), (200, Some("local")));
    let (status, check) = api(b, Method::GET, "/check", ROOT, None);
    assert_eq!(
        (status, check["clean"].clone()),
        (200, json!(true)),
        "{check}"
    );
    // No jobs run in this in-process gateway.
    let (status, _) = api(b, Method::POST, "/jobs/gc/run", ROOT, None);
    assert_eq!(status, 503);

    let (_, log) = api(b, Method::GET, "/audit?limit=2", ROOT, None);
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["action"], "user.update");
    assert_eq!(entries[0]["actor"], "root");
    assert_eq!(entries[0]["source"], "127.0.0.1");
    assert_eq!(entries[0]["detail"], "quota lifted, admin=true");
    assert_eq!(entries[1]["action"], "user.create");
}

#[test]
fn removing_a_user_while_they_upload_leaves_no_half_state() {
    let gw = gateway_with_admin();
    gw.add_user("carol", "carolpw");
    let base = gw.base.clone();
    let uploader = std::thread::spawn(move || {
        let mut statuses = Vec::new();
        for i in 0..40u64 {
            let body = random_bytes(300_000, i);
            let status = put(&base, "carol", "carolpw", &format!("f{i}"), body);
            statuses.push(status);
            if status >= 400 {
                // Gone: further logins would only be throttled.
                break;
            }
        }
        statuses
    });
    // Remove her once her first file is in, while the others go up.
    for _ in 0..600 {
        if gw.stats().files > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (status, _) = api(&gw.base, Method::DELETE, "/users/carol", ROOT, None);
    assert_eq!(status, 200);
    let statuses = uploader.join().unwrap();
    assert!(
        statuses
            .iter()
            .all(|s| [201, 204, 401, 404, 409].contains(s)),
        "{statuses:?}"
    );
    assert!(common::wait(gw.meta.user("carol")).unwrap().is_none());
    let (_, check) = api(&gw.base, Method::GET, "/check", ROOT, None);
    assert_eq!(check["clean"], json!(true), "{check}");
    let stats = gw.stats();
    assert_eq!((stats.users, stats.files), (1, 0), "{stats:?}");
}

#[test]
fn the_offline_command_line_is_audited_as_local() {
    let gw = gateway_with_admin();
    let stopped = gw.stop();
    let (ok, out, err) = stopped.run(&["user", "add", "dan", "--quota", "5M"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = stopped.run(&["user", "set", "dan", "--disable", "--admin", "true"]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = stopped.run(&["user", "list"]);
    assert!(ok && out.contains("dan"), "{out}{err}");
    let gw = stopped.restart();
    let (_, log) = api(&gw.base, Method::GET, "/audit", ROOT, None);
    let entries = log["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{log}");
    for e in entries {
        assert_eq!(
            (e["actor"].as_str(), e["source"].as_str()),
            (Some("local-cli"), Some("local"))
        );
    }
    assert_eq!(entries[0]["detail"], "admin=true, disabled");
    let (_, dan) = api(&gw.base, Method::GET, "/users/dan", ROOT, None);
    assert_eq!(
        (dan["disabled"].clone(), dan["quota"].clone()),
        (json!(true), json!(5 << 20))
    );
}

#[test]
fn app_passwords_are_managed_through_the_api_and_the_command_line() {
    let gw = gateway_with_admin();
    gw.add_user("bob", "bob-pw");
    let path = "/users/bob/app-passwords";
    let (status, created) = api(
        &gw.base,
        Method::POST,
        path,
        ROOT,
        Some(r#"{"label":"laptop"}"#),
    );
    assert_eq!(status, 201, "{created}");
    let secret = created["password"].as_str().unwrap().to_string();
    let id = created["id"].as_u64().unwrap();
    assert_eq!(
        put(&gw.base, "bob", &secret, "via-app.txt", b"x".to_vec()),
        201
    );

    let (status, listed) = api(&gw.base, Method::GET, path, ROOT, None);
    assert_eq!(status, 200);
    assert_eq!(listed["app_passwords"][0]["label"], "laptop");
    assert!(
        !listed.to_string().contains(&secret),
        "the secret is shown once"
    );

    let (status, _) = api(&gw.base, Method::POST, path, ROOT, Some(r#"{"label":""}"#));
    assert_eq!(status, 400, "an empty label");
    let (status, _) = api(
        &gw.base,
        Method::POST,
        path,
        ROOT,
        Some(r#"{"colour":"x"}"#),
    );
    assert_eq!(status, 400, "an unknown field");
    let other = "/users/nobody/app-passwords";
    let (status, _) = api(
        &gw.base,
        Method::POST,
        other,
        ROOT,
        Some(r#"{"label":"x"}"#),
    );
    assert_eq!(status, 404);
    let (status, _) = api(&gw.base, Method::GET, path, Some(("bob", "bob-pw")), None);
    assert_eq!(status, 403, "not for a non-administrator");

    let (status, _) = api(
        &gw.base,
        Method::DELETE,
        &format!("{path}/{id}"),
        ROOT,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(
        put(&gw.base, "bob", &secret, "again.txt", b"x".to_vec()),
        401
    );
    let (status, _) = api(
        &gw.base,
        Method::DELETE,
        &format!("{path}/{id}"),
        ROOT,
        None,
    );
    assert_eq!(status, 404, "revoked already");

    let (_, audit) = api(&gw.base, Method::GET, "/audit", ROOT, None);
    let text = audit.to_string();
    assert!(
        text.contains("app_password.create") && text.contains("app_password.revoke"),
        "{text}"
    );
    assert!(!text.contains(&secret));
}

#[test]
fn the_command_line_manages_app_passwords_of_a_running_serve() {
    let s = Serve::start();
    let (ok, out) = s.cli(
        &["user", "add", "carol", "--password-stdin"],
        Some("carol-pw"),
    );
    assert!(ok, "{out}");
    let (ok, out) = s.cli(&["user", "app-password", "add", "carol", "phone"], None);
    assert!(ok, "{out}");
    let secret = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .expect("the password is printed")
        .to_string();
    assert_eq!(put(&s.base, "carol", &secret, "a.txt", b"a".to_vec()), 201);
    let (ok, out) = s.cli(&["user", "app-password", "list", "carol"], None);
    assert!(
        ok && out.contains("phone") && !out.contains(&secret),
        "{out}"
    );
    let id = out
        .lines()
        .find(|l| l.contains("phone"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let (ok, out) = s.cli(&["user", "app-password", "revoke", "carol", &id], None);
    assert!(ok, "{out}");
    assert_eq!(put(&s.base, "carol", &secret, "b.txt", b"b".to_vec()), 401);
}

#[test]
fn gc_beside_a_running_serve_asks_its_jobs_to_run() {
    let s = Serve::start();
    let (ok, out) = s.cli(&["gc", "--orphans"], None);
    assert!(ok, "{out}");
    assert!(
        out.contains("gc job runs now") && out.contains("sweep job runs now"),
        "{out}"
    );
    let (ok, out) = s.cli(&["gc", "--grace-hours", "1"], None);
    assert!(
        !ok && out.contains("--grace-hours needs it stopped"),
        "{out}"
    );
    let (status, audit) = api(
        &s.base,
        Method::GET,
        "/audit",
        Some(("admin", &s.admin_password)),
        None,
    );
    assert_eq!(status, 200);
    let text = audit.to_string();
    assert!(
        text.contains("job.run") && text.contains("local-cli"),
        "{text}"
    );
}

#[test]
fn upstream_health_shows_reachability_latency_and_what_requests_met() {
    let gw = TestGateway::start_on_apache();
    common::wait(dedupdav::accounts::add_user(
        &gw.meta, "root", "rootpw", true, None,
    ))
    .unwrap();
    assert_eq!(
        put(
            &gw.base,
            "root",
            "rootpw",
            "f.bin",
            random_bytes(100_000, 1)
        ),
        201
    );
    let (status, up) = api(&gw.base, Method::GET, "/upstream", ROOT, None);
    assert_eq!(status, 200);
    assert_eq!(
        (up["kind"].as_str(), up["ok"].as_bool()),
        (Some("webdav"), Some(true)),
        "{up}"
    );
    assert!(up["latency_ms"]["write"].is_number(), "{up}");
    assert!(up["attempts"]["ok"].as_u64().unwrap_or(0) > 0, "{up}");
    assert_eq!(up["attempts"]["failed"], 0, "{up}");
}
