//! App passwords end to end: one works wherever the account password
//! does (WebDAV, chunked uploads, OCS) and the account password still
//! does; a revoked one is refused on its very next request, also right
//! after a request that filled the credential cache and also when that
//! request was already waiting in the login throttle; a wrong one counts
//! against the throttle; they go with their user, survive `dedupdav
//! restore`, and the CLI manages them without ever showing a verifier.

use std::time::{Duration, Instant};

use crate::common::gateway::{Dav, TestGateway};
use crate::common::wait;
use crate::restore::{delete_index, upload_metadata};
use dedupdav::accounts::app_passwords::{self, CreatedAppPassword};
use dedupdav::crypto::{app_password_tag, Keys, MasterKey};

fn keys(gw: &TestGateway) -> Keys {
    let text = std::fs::read_to_string(gw.master_key_path()).expect("master key");
    MasterKey::parse(&text).expect("a key").derive()
}

fn create(gw: &TestGateway, user: &str, label: &str) -> CreatedAppPassword {
    wait(app_passwords::create(&gw.meta, &keys(gw), user, label)).expect("app password")
}

fn revoke(gw: &TestGateway, user: &str, id: u64) {
    wait(app_passwords::revoke(&gw.meta, user, id)).expect("revoked");
}

fn propfind_status(dav: &Dav) -> u16 {
    dav.propfind("", "0").status().as_u16()
}

fn uploads_url(dav: &Dav, rest: &str) -> String {
    format!("{}/remote.php/dav/uploads/{}/{rest}", dav.base, dav.user)
}

/// A chunked upload of two parts, assembled into `dest`.
fn chunked_upload(dav: &Dav, transfer: &str, dest: &str, data: &[u8]) {
    let mkcol = dav
        .request("MKCOL", &uploads_url(dav, transfer))
        .send()
        .unwrap();
    assert_eq!(mkcol.status(), 201);
    let half = data.len() / 2;
    for (name, part) in [("00000", &data[..half]), ("00001", &data[half..])] {
        let put = dav
            .request("PUT", &uploads_url(dav, &format!("{transfer}/{name}")))
            .body(part.to_vec())
            .send()
            .unwrap();
        assert_eq!(put.status(), 201, "part {name}");
    }
    let moved = dav
        .request("MOVE", &uploads_url(dav, &format!("{transfer}/.file")))
        .header(
            "Destination",
            format!("/remote.php/dav/files/{}/{dest}", dav.user),
        )
        .header("OC-Total-Length", data.len().to_string())
        .send()
        .unwrap();
    assert!(moved.status().is_success(), "{}", moved.status());
}

#[test]
fn an_app_password_works_for_webdav_chunked_uploads_and_ocs() {
    let gw = TestGateway::start();
    gw.add_user("olga", "olga-pw");
    let phone = create(&gw, "olga", "phone");
    let dav = gw.client("olga", &phone.secret);

    assert_eq!(
        dav.put("note.txt", b"from the phone".to_vec()).status(),
        201
    );
    assert_eq!(dav.get_bytes("note.txt").unwrap(), b"from the phone");
    assert_eq!(propfind_status(&dav), 207);
    assert_eq!(dav.mkcol("photos").status(), 201);
    let big = crate::common::gateway::random_bytes(300_000, 7);
    chunked_upload(&dav, "t1", "photos/big.bin", &big);
    assert_eq!(dav.get_bytes("photos/big.bin").unwrap(), big);

    let http = reqwest::blocking::Client::new();
    let user = http
        .get(format!("{}/ocs/v2.php/cloud/user", gw.base))
        .basic_auth("olga", Some(&phone.secret))
        .send()
        .unwrap();
    assert_eq!(user.status(), 200);
    assert!(user.text().unwrap().contains("<id>olga</id>"));

    // The account password still works, and sees the same tree.
    let account = gw.client("olga", "olga-pw");
    assert_eq!(account.get_bytes("note.txt").unwrap(), b"from the phone");
    // The app password is olga's only: not another user's.
    gw.add_user("paul", "paul-pw");
    assert_eq!(propfind_status(&gw.client("paul", &phone.secret)), 401);

    // Its use is recorded (in the background).
    let start = Instant::now();
    loop {
        let listed = wait(app_passwords::list(&gw.meta, "olga")).unwrap();
        if listed[0].last_used.is_some() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{listed:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_revoked_app_password_fails_on_its_next_request() {
    // The default credential cache is on: the account password's logins
    // are remembered; an app password must not outlive its revoke in it.
    let gw = TestGateway::start();
    gw.add_user("olga", "olga-pw");
    let laptop = create(&gw, "olga", "laptop");
    let tablet = create(&gw, "olga", "tablet");
    let dav = gw.client("olga", &laptop.secret);
    for _ in 0..3 {
        assert_eq!(propfind_status(&dav), 207);
    }
    assert_eq!(propfind_status(&gw.client("olga", "olga-pw")), 207);
    revoke(&gw, "olga", laptop.info.id);
    assert_eq!(propfind_status(&dav), 401, "the very next request");
    assert_eq!(dav.put("x", b"x".to_vec()).status(), 401);
    assert_eq!(propfind_status(&gw.client("olga", &tablet.secret)), 207);
    assert_eq!(propfind_status(&gw.client("olga", "olga-pw")), 207);
}

#[test]
fn a_request_waiting_in_the_throttle_when_the_revoke_returns_is_refused() {
    let gw = TestGateway::start_with(|c| {
        c.auth.failures_before_delay = 0;
        c.auth.max_delay_ms = 2_000;
    });
    gw.add_user("olga", "olga-pw");
    let laptop = create(&gw, "olga", "laptop");
    let dav = gw.client("olga", &laptop.secret);
    assert_eq!(propfind_status(&dav), 207);
    // Failures against olga's name: her next login waits (1.6 s).
    let guess = gw.client("olga", "guess");
    for _ in 0..4 {
        assert_eq!(propfind_status(&guess), 401);
    }
    let url = dav.url("");
    let secret = laptop.secret.clone();
    let waiting = std::thread::spawn(move || {
        let start = Instant::now();
        let status = reqwest::blocking::Client::new()
            .request(reqwest::Method::from_bytes(b"PROPFIND").unwrap(), &url)
            .basic_auth("olga", Some(secret))
            .header("Depth", "0")
            .send()
            .unwrap()
            .status()
            .as_u16();
        (status, start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    revoke(&gw, "olga", laptop.info.id);
    let (status, took) = waiting.join().unwrap();
    assert!(took >= Duration::from_millis(1_000), "it waited: {took:?}");
    assert_eq!(status, 401, "in flight when the revoke returned");
}

#[test]
fn a_wrong_app_password_counts_against_the_login_throttle() {
    let max_delay = Duration::from_millis(800);
    let gw = TestGateway::start_with(|c| {
        c.auth.failures_before_delay = 2;
        c.auth.max_delay_ms = max_delay.as_millis() as u64;
        c.auth.cache_seconds = 0;
    });
    gw.add_user("olga", "olga-pw");
    let phone = create(&gw, "olga", "phone");
    // Guesses shaped like app passwords: one character changed.
    let mut wrong = phone.secret.clone().into_bytes();
    wrong[0] = if wrong[0] == b'a' { b'b' } else { b'a' };
    let wrong = String::from_utf8(wrong).unwrap();
    let guess = gw.client("olga", &wrong);
    let mut took = Vec::new();
    for _ in 0..6 {
        let start = Instant::now();
        assert_eq!(propfind_status(&guess), 401);
        took.push(start.elapsed());
    }
    assert!(took[5] >= max_delay, "{took:?}");
    assert!(took[4] >= Duration::from_millis(400), "{took:?}");
    // The right one is held back by the same delay, then let in (and a
    // success clears the name's failures).
    let start = Instant::now();
    assert_eq!(propfind_status(&gw.client("olga", &phone.secret)), 207);
    assert!(start.elapsed() >= max_delay, "{:?}", start.elapsed());
    let start = Instant::now();
    assert_eq!(propfind_status(&gw.client("olga", &phone.secret)), 207);
    assert!(start.elapsed() < max_delay, "{:?}", start.elapsed());
}

#[test]
fn removing_a_user_removes_their_app_passwords() {
    let gw = TestGateway::start();
    gw.add_user("olga", "olga-pw");
    let phone = create(&gw, "olga", "phone");
    assert_eq!(propfind_status(&gw.client("olga", &phone.secret)), 207);
    wait(dedupdav::accounts::remove_user(&gw.meta, "olga")).unwrap();
    gw.add_user("olga", "olga-pw");
    assert!(wait(app_passwords::list(&gw.meta, "olga"))
        .unwrap()
        .is_empty());
    assert_eq!(propfind_status(&gw.client("olga", &phone.secret)), 401);
    assert_eq!(propfind_status(&gw.client("olga", "olga-pw")), 207);
    assert!(wait(gw.meta.verify()).unwrap().is_clean());
}

#[test]
fn app_passwords_survive_a_restore_and_the_cli_manages_them() {
    let gw = TestGateway::start();
    gw.add_user("olga", "olga-pw");
    let phone = create(&gw, "olga", "phone");
    let keys = keys(&gw);
    let olga = wait(gw.meta.user("olga")).unwrap().unwrap();
    let verifier = app_password_tag(&keys, olga.id, &phone.secret);
    let dav = gw.client("olga", &phone.secret);
    assert_eq!(dav.put("a.txt", b"before".to_vec()).status(), 201);
    upload_metadata(&gw);

    let stopped = gw.stop();
    delete_index(&stopped);
    let (ok, out, err) = stopped.run(&["restore"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("result: clean"), "{out}");

    // The CLI, on the restored index: add, list, revoke.
    let (ok, out, err) = stopped.run(&["user", "app-password", "add", "olga", "Work laptop"]);
    assert!(ok, "{out}{err}");
    let secret = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("password: "))
        .expect("the password is printed")
        .to_string();
    assert_eq!(secret.len(), app_passwords::SECRET_LEN);
    let (ok, listed, err) = stopped.run(&["user", "app-password", "list", "olga"]);
    assert!(ok, "{listed}{err}");
    assert!(
        listed.contains("phone") && listed.contains("Work laptop"),
        "{listed}"
    );
    assert!(!listed.contains(&secret) && !listed.contains(&phone.secret));
    let (ok, bad, err) = stopped.run(&["user", "app-password", "add", "olga", "a\u{7}b"]);
    assert!(!ok && err.contains("invalid label"), "{bad}{err}");
    let (ok, checked, err) = stopped.run(&["check"]);
    assert!(ok, "{checked}{err}");
    // No output ever carries a verifier.
    let hex = hex::encode(verifier);
    for text in [&out, &listed, &err, &checked] {
        assert!(!text.contains(&hex), "{text}");
    }

    let gw = stopped.restart();
    assert_eq!(
        dav_of(&gw, &phone.secret).get_bytes("a.txt").unwrap(),
        b"before"
    );
    assert_eq!(propfind_status(&dav_of(&gw, &secret)), 207);
    let work_id = wait(app_passwords::list(&gw.meta, "olga"))
        .unwrap()
        .into_iter()
        .find(|a| a.label == "Work laptop")
        .unwrap()
        .id;
    let stopped = gw.stop();
    let (ok, out, err) = stopped.run(&[
        "user",
        "app-password",
        "revoke",
        "olga",
        &work_id.to_string(),
    ]);
    assert!(ok && out.contains("revoked"), "{out}{err}");
    let gw = stopped.restart();
    assert_eq!(propfind_status(&dav_of(&gw, &secret)), 401);
    assert_eq!(propfind_status(&dav_of(&gw, &phone.secret)), 207);
}

fn dav_of(gw: &TestGateway, secret: &str) -> Dav {
    gw.client("olga", secret)
}
