//! The web console over plain HTTP: logins (password, then a TOTP code
//! once enrolled; each code once), the session cookie's flags, CSRF
//! (cross-site `Origin`, missing or wrong token), admins-only pages,
//! the login throttle, a removed user's session, the forms (add a user,
//! set a quota, create and revoke an app password that then works over
//! WebDAV), the dashboard's charts, and that no page shows a password
//! hash or an enrolled TOTP secret.

use std::time::{Duration, Instant};

use crate::common::gateway::TestGateway;
use crate::common::wait;
use dedupdav::accounts::totp::{step_of, TotpSecret};
use dedupdav::meta::history::HistorySample;
use reqwest::blocking::{Client, Response};
use reqwest::header;

/// A browser without script: keeps the session cookie, reads the CSRF
/// token from the last page.
struct Browser {
    base: String,
    client: Client,
    cookie: Option<String>,
    csrf: Option<String>,
}

impl Browser {
    fn new(gw: &TestGateway) -> Self {
        Self {
            base: gw.base.clone(),
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookie: None,
            csrf: None,
        }
    }

    fn origin(&self) -> String {
        self.base.clone()
    }

    fn get(&mut self, path: &str) -> (u16, String) {
        let mut req = self.client.get(format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header(header::COOKIE, c);
        }
        let res = req.send().expect("GET");
        let status = res.status().as_u16();
        let body = res.text().expect("body");
        if let Some(t) = csrf_of(&body) {
            self.csrf = Some(t);
        }
        (status, body)
    }

    /// A form post as this console's own pages send it (Origin, token).
    fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        let token = self.csrf.clone().unwrap_or_default();
        all.push(("csrf", &token));
        let origin = self.origin();
        self.post_raw(path, &all, Some(&origin))
    }

    fn post_raw(&mut self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> Response {
        let mut req = self
            .client
            .post(format!("{}{path}", self.base))
            .form(fields);
        if let Some(c) = &self.cookie {
            req = req.header(header::COOKIE, c);
        }
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        req.send().expect("POST")
    }

    /// Logs in; answers the login reply's status.
    fn login(&mut self, user: &str, password: &str, code: &str) -> Response {
        let origin = self.origin();
        let res = self.post_raw(
            "/admin/login",
            &[("user", user), ("password", password), ("code", code)],
            Some(&origin),
        );
        if let Some(v) = res.headers().get(header::SET_COOKIE) {
            let v = v.to_str().expect("cookie text");
            self.cookie = v.split(';').next().map(str::to_string);
        }
        res
    }
}

fn csrf_of(body: &str) -> Option<String> {
    let at = body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(body[at..at + 64].to_string())
}

fn location(res: &Response) -> &str {
    res.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn add_admin(gw: &TestGateway, name: &str, password: &str) {
    wait(dedupdav::accounts::add_user(
        &gw.meta, name, password, true, None,
    ))
    .expect("admin");
}

/// The text of `<code id="ID">…</code>` on a page.
fn code_text(body: &str, id: &str) -> String {
    let open = format!("<code id=\"{id}\">");
    let at = body
        .find(&open)
        .unwrap_or_else(|| panic!("no {id} in {body}"))
        + open.len();
    let end = body[at..].find("</code>").expect("closed") + at;
    body[at..end].to_string()
}

use crate::common::base32_decode;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn code(secret: &TotpSecret, step: u64) -> String {
    format!("{:06}", secret.code_at(step))
}

#[test]
fn login_sets_a_strict_http_only_cookie_and_logout_ends_the_session() {
    let gw = TestGateway::start();
    add_admin(&gw, "root", "rootpw");
    let mut b = Browser::new(&gw);
    let (status, _) = b.get("/admin/dashboard");
    assert_eq!(status, 303, "not logged in: to the login form");
    let (status, page) = b.get("/admin/login");
    assert_eq!(status, 200);
    assert!(page.contains("name=\"password\""));

    assert_eq!(b.login("root", "wrong", "").status().as_u16(), 401);
    assert!(b.cookie.is_none());
    let res = b.login("root", "rootpw", "");
    assert_eq!(res.status().as_u16(), 303);
    let cookie = res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/admin"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP by default: {cookie}"
    );
    let (status, page) = b.get("/admin/dashboard");
    assert_eq!(status, 200);
    assert!(page.contains("dedup ratio"));
    let csp = b
        .client
        .get(format!("{}/admin/dashboard", b.base))
        .header(header::COOKIE, b.cookie.clone().unwrap())
        .send()
        .unwrap();
    let policy = csp.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(policy.contains("default-src 'none'"), "{policy}");

    let res = b.post("/admin/logout", &[]);
    assert_eq!(res.status().as_u16(), 303);
    assert!(res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let (status, _) = b.get("/admin/dashboard");
    assert_eq!(status, 303, "the old cookie opens nothing");
}

#[test]
fn secure_cookies_follow_the_setting() {
    let gw = TestGateway::start_with(|c| c.console.secure_cookies = true);
    add_admin(&gw, "root", "rootpw");
    let mut b = Browser::new(&gw);
    let res = b.login("root", "rootpw", "");
    assert!(res.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("; Secure"));
}

#[test]
fn cross_site_posts_and_forms_without_the_token_are_refused() {
    let gw = TestGateway::start();
    add_admin(&gw, "root", "rootpw");
    let mut b = Browser::new(&gw);
    // Even the login form, from another site.
    let res = b.post_raw(
        "/admin/login",
        &[("user", "root"), ("password", "rootpw")],
        Some("http://evil.example"),
    );
    assert_eq!(res.status().as_u16(), 403);
    assert_eq!(b.login("root", "rootpw", "").status().as_u16(), 303);
    b.get("/admin/account");
    let token = b.csrf.clone().expect("a token on the page");

    let before = wait(gw.meta.app_passwords("root")).unwrap().len();
    let add = |b: &mut Browser, fields: &[(&str, &str)], origin: Option<&str>| {
        b.post_raw("/admin/account/app-passwords/add", fields, origin)
            .status()
            .as_u16()
    };
    let own = b.origin();
    assert_eq!(add(&mut b, &[("label", "x")], Some(&own)), 403, "no token");
    let wrong = "0".repeat(64);
    assert_eq!(
        add(&mut b, &[("label", "x"), ("csrf", &wrong)], Some(&own)),
        403
    );
    assert_eq!(
        add(
            &mut b,
            &[("label", "x"), ("csrf", &token)],
            Some("http://evil.example")
        ),
        403,
        "right token, wrong origin"
    );
    assert_eq!(
        add(&mut b, &[("label", "x"), ("csrf", &token)], Some("null")),
        403
    );
    assert_eq!(wait(gw.meta.app_passwords("root")).unwrap().len(), before);
    assert_eq!(
        add(&mut b, &[("label", "x"), ("csrf", &token)], Some(&own)),
        303
    );
    assert_eq!(
        wait(gw.meta.app_passwords("root")).unwrap().len(),
        before + 1
    );

    // Another session's token does not fit this one.
    let mut other = Browser::new(&gw);
    other.login("root", "rootpw", "");
    other.get("/admin/account");
    let theirs = other.csrf.clone().unwrap();
    assert_ne!(theirs, token);
    assert_eq!(
        add(&mut b, &[("label", "y"), ("csrf", &theirs)], Some(&own)),
        403
    );
}

#[test]
fn non_admins_see_only_their_account() {
    let gw = TestGateway::start();
    gw.add_user("ann", "annpw");
    let mut b = Browser::new(&gw);
    let res = b.login("ann", "annpw", "");
    assert_eq!(location(&res), "/admin/");
    let res = b
        .client
        .get(format!("{}/admin/", b.base))
        .header(header::COOKIE, b.cookie.clone().unwrap())
        .send()
        .unwrap();
    assert_eq!(location(&res), "/admin/account");
    for page in [
        "/admin/dashboard",
        "/admin/users",
        "/admin/jobs",
        "/admin/audit",
    ] {
        assert_eq!(b.get(page).0, 403, "{page}");
    }
    let (status, page) = b.get("/admin/account");
    assert_eq!(status, 200);
    assert!(!page.contains("/admin/users\""), "no admin links");
    let res = b.post("/admin/users/add", &[("name", "eve"), ("password", "x")]);
    assert_eq!(res.status().as_u16(), 403);
    let res = b.post("/admin/users/quota", &[("name", "ann"), ("quota", "")]);
    assert_eq!(res.status().as_u16(), 403);
    let res = b.post("/admin/users/totp-reset", &[("name", "ann")]);
    assert_eq!(res.status().as_u16(), 403);
    let res = b.post("/admin/jobs/run", &[("job", "gc")]);
    assert_eq!(res.status().as_u16(), 403);
    assert!(wait(gw.meta.user("eve")).unwrap().is_none());
}

#[test]
fn console_logins_are_throttled_like_basic_auth() {
    let gw = TestGateway::start_with(|c| {
        c.auth.failures_before_delay = 1;
        c.auth.max_delay_ms = 3000;
    });
    add_admin(&gw, "root", "rootpw");
    let mut b = Browser::new(&gw);
    for _ in 0..4 {
        assert_eq!(b.login("root", "wrong", "").status().as_u16(), 401);
    }
    // Three failures over the free one: 800 ms before the next check.
    let started = Instant::now();
    assert_eq!(b.login("root", "rootpw", "").status().as_u16(), 303);
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    // The success cleared the name's count: the next login is quick again.
    let started = Instant::now();
    assert_eq!(b.login("root", "rootpw", "").status().as_u16(), 303);
    assert!(started.elapsed() < Duration::from_millis(700));
    // Console failures also hold back Basic auth for that name.
    for _ in 0..4 {
        b.login("root", "wrong", "");
    }
    let dav = gw.client("root", "rootpw");
    let started = Instant::now();
    assert_eq!(dav.propfind("", "0").status().as_u16(), 207);
    assert!(started.elapsed() >= Duration::from_millis(700));
}

#[test]
fn totp_enrolment_then_logins_need_a_fresh_code_and_no_page_shows_secrets() {
    let gw = TestGateway::start();
    add_admin(&gw, "root", "rootpw");
    let mut b = Browser::new(&gw);
    b.login("root", "rootpw", "");
    b.get("/admin/account");
    assert_eq!(
        b.post("/admin/account/totp/start", &[]).status().as_u16(),
        303
    );
    let (_, page) = b.get("/admin/account");
    assert!(page.contains("<svg"), "a QR code");
    let key = code_text(&page, "totp-key");
    let uri = code_text(&page, "totp-uri");
    assert!(
        uri.starts_with("otpauth://totp/dedupdav%3Aroot?secret="),
        "{uri}"
    );
    let bytes: [u8; 20] = base32_decode(&key).try_into().expect("160 bits");
    let secret = TotpSecret(bytes);

    // A wrong code does not enrol.
    let s = step_of(now());
    let wrong = format!("{:06}", (secret.code_at(s) + 1) % 1_000_000);
    b.post("/admin/account/totp/confirm", &[("code", &wrong)]);
    let (_, page) = b.get("/admin/account");
    assert!(page.contains("wrong or expired"));
    let user = wait(gw.meta.user("root")).unwrap().unwrap();
    assert!(wait(gw.meta.totp(user.id)).unwrap().is_none());

    b.post(
        "/admin/account/totp/confirm",
        &[("code", &code(&secret, s))],
    );
    assert!(wait(gw.meta.totp(user.id)).unwrap().is_some());
    // From now on no page shows the secret (nor any password hash).
    for path in ["/admin/account", "/admin/users", "/admin/dashboard"] {
        let (status, page) = b.get(path);
        assert_eq!(status, 200, "{path}");
        assert!(!page.contains(&key), "{path} shows the TOTP secret");
        assert!(!page.contains("$argon2"), "{path} shows a password hash");
    }
    b.post("/admin/logout", &[]);

    let mut b = Browser::new(&gw);
    assert_eq!(
        b.login("root", "rootpw", "").status().as_u16(),
        401,
        "a code is needed"
    );
    assert_eq!(
        b.login("root", "rootpw", &code(&secret, s))
            .status()
            .as_u16(),
        401,
        "the enrolment's code is spent"
    );
    assert_eq!(
        b.login("root", "rootpw", &code(&secret, s + 1))
            .status()
            .as_u16(),
        303
    );
    let mut again = Browser::new(&gw);
    assert_eq!(
        again
            .login("root", "rootpw", &code(&secret, s + 1))
            .status()
            .as_u16(),
        401,
        "a code is accepted once"
    );
    // An administrator resets it for a user who lost the device (here:
    // another admin for root).
    add_admin(&gw, "ops", "opspw");
    let mut ops = Browser::new(&gw);
    ops.login("ops", "opspw", "");
    ops.get("/admin/users");
    let res = ops.post("/admin/users/totp-reset", &[("name", "root")]);
    assert_eq!(location(&res), "/admin/users");
    assert!(wait(gw.meta.totp(user.id)).unwrap().is_none());
    assert_eq!(
        Browser::new(&gw)
            .login("root", "rootpw", "")
            .status()
            .as_u16(),
        303
    );
    // WebDAV Basic auth is unchanged.
    assert_eq!(
        gw.client("root", "rootpw")
            .propfind("", "0")
            .status()
            .as_u16(),
        207
    );
}

#[test]
fn admins_add_users_set_quotas_and_users_manage_app_passwords() {
    let gw = TestGateway::start();
    add_admin(&gw, "root", "rootpw");
    let mut b = Browser::new(&gw);
    b.login("root", "rootpw", "");
    b.get("/admin/users");

    // A generated password, shown once.
    let res = b.post(
        "/admin/users/add",
        &[("name", "bob"), ("password", ""), ("quota", "10M")],
    );
    assert_eq!(location(&res), "/admin/users");
    let (_, page) = b.get("/admin/users");
    let password = code_text(&page, "secret");
    assert_eq!(password.len(), 24);
    let (_, page) = b.get("/admin/users");
    assert!(!page.contains(&password), "shown only once");
    let bob = wait(gw.meta.user("bob")).unwrap().unwrap();
    assert_eq!(bob.quota, Some(10 << 20));
    assert!(!bob.admin);
    assert_eq!(
        gw.client("bob", &password)
            .propfind("", "0")
            .status()
            .as_u16(),
        207
    );

    // A given password, a bad name, a user with markup in nothing.
    b.post(
        "/admin/users/add",
        &[("name", "cy"), ("password", "cypw"), ("admin", "on")],
    );
    assert!(wait(gw.meta.user("cy")).unwrap().unwrap().admin);
    b.post("/admin/users/add", &[("name", "../x"), ("password", "p")]);
    let (_, page) = b.get("/admin/users");
    assert!(page.contains("note bad"), "refused with a reason");

    b.post("/admin/users/quota", &[("name", "bob"), ("quota", "1G")]);
    assert_eq!(
        wait(gw.meta.user("bob")).unwrap().unwrap().quota,
        Some(1 << 30)
    );
    b.post("/admin/users/quota", &[("name", "bob"), ("quota", "")]);
    assert_eq!(wait(gw.meta.user("bob")).unwrap().unwrap().quota, None);
    b.post("/admin/users/quota", &[("name", "bob"), ("quota", "lots")]);
    let (_, page) = b.get("/admin/users");
    assert!(page.contains("invalid quota"));

    // Bob makes an app password for a sync client, then revokes it.
    let mut bob_b = Browser::new(&gw);
    assert_eq!(bob_b.login("bob", &password, "").status().as_u16(), 303);
    bob_b.get("/admin/account");
    bob_b.post("/admin/account/app-passwords/add", &[("label", "<laptop>")]);
    let (_, page) = bob_b.get("/admin/account");
    let secret = code_text(&page, "secret");
    assert!(
        page.contains("&lt;laptop&gt;") && !page.contains("<laptop>"),
        "escaped"
    );
    assert_eq!(
        gw.client("bob", &secret)
            .propfind("", "0")
            .status()
            .as_u16(),
        207
    );
    let (_, page) = bob_b.get("/admin/account");
    assert!(!page.contains(&secret), "shown only once");
    let id = wait(gw.meta.app_passwords("bob")).unwrap()[0]
        .id
        .to_string();
    bob_b.post("/admin/account/app-passwords/revoke", &[("id", &id)]);
    assert!(wait(gw.meta.app_passwords("bob")).unwrap().is_empty());
    assert_eq!(
        gw.client("bob", &secret)
            .propfind("", "0")
            .status()
            .as_u16(),
        401
    );
    // An app password does not open the console.
    let created = bob_b.post("/admin/account/app-passwords/add", &[("label", "phone")]);
    assert_eq!(created.status().as_u16(), 303);
    let (_, page) = bob_b.get("/admin/account");
    let phone = code_text(&page, "secret");
    assert_eq!(
        Browser::new(&gw).login("bob", &phone, "").status().as_u16(),
        401
    );
}

#[test]
fn a_removed_users_session_stops_working() {
    let gw = TestGateway::start();
    gw.add_user("ann", "annpw");
    let mut b = Browser::new(&gw);
    b.login("ann", "annpw", "");
    assert_eq!(b.get("/admin/account").0, 200);
    wait(dedupdav::accounts::remove_user(&gw.meta, "ann")).unwrap();
    assert_eq!(b.get("/admin/account").0, 303);
    // A new user of the same name does not inherit the session.
    gw.add_user("ann", "other");
    assert_eq!(b.get("/admin/account").0, 303);
    assert_eq!(
        b.post("/admin/account/totp/start", &[]).status().as_u16(),
        403
    );
}

#[test]
fn the_dashboard_draws_the_history() {
    let gw = TestGateway::start();
    add_admin(&gw, "root", "rootpw");
    let t = now() as i64;
    for i in 0..30u64 {
        let s = HistorySample {
            at: t - 1800 + i as i64 * 60,
            logical_bytes: 1000 * i * i,
            stored_bytes: 400 * i * i,
            files: i,
            requests: 50 * i,
            upstream_attempts: 20 * i,
            upstream_micros: 20 * i * (30_000 + 1000 * i),
        };
        wait(gw.meta.record_history(&s, 43_200)).unwrap();
    }
    let mut b = Browser::new(&gw);
    b.login("root", "rootpw", "");
    let (status, page) = b.get("/admin/dashboard");
    assert_eq!(status, 200);
    for line in [
        "line logical",
        "line stored",
        "line requests",
        "line latency",
    ] {
        assert!(
            page.contains(&format!("<path class=\"{line}\" d=\"M")),
            "{line}"
        );
    }
    assert!(!page.contains("no samples yet"));
    let css = b
        .client
        .get(format!("{}/admin/style.css", b.base))
        .send()
        .unwrap();
    assert_eq!(css.status().as_u16(), 200);
    assert!(css.text().unwrap().contains("svg .line"));
}

/// Changes made in the console are in the audit log with who and from
/// where, and the audit and jobs pages show them to administrators.
#[test]
fn console_changes_are_audited_and_shown_with_the_jobs() {
    let gw = TestGateway::start();
    add_admin(&gw, "root", "rootpw");
    let mut b = Browser::new(&gw);
    b.login("root", "rootpw", "");
    b.get("/admin/users");
    let res = b.post(
        "/admin/users/add",
        &[("name", "dora"), ("password", "dora-pw")],
    );
    assert_eq!(location(&res), "/admin/users");
    b.get("/admin/users");
    let res = b.post("/admin/users/quota", &[("name", "dora"), ("quota", "5M")]);
    assert_eq!(location(&res), "/admin/users");
    b.get("/admin/account");
    let res = b.post("/admin/account/app-passwords/add", &[("label", "tablet")]);
    assert_eq!(location(&res), "/admin/account");

    let log = wait(gw.meta.audit_log(50)).unwrap();
    let actions: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|r| {
            (
                r.entry.action.as_str(),
                r.entry.actor.as_str(),
                r.entry.source.as_str(),
            )
        })
        .collect();
    for action in ["user.create", "user.update", "app_password.create"] {
        assert!(
            actions
                .iter()
                .any(|(a, who, from)| *a == action && *who == "root" && *from == "127.0.0.1"),
            "{action} in {actions:?}"
        );
    }
    let (status, page) = b.get("/admin/audit");
    assert_eq!(status, 200);
    assert!(
        page.contains("user.create") && page.contains("dora"),
        "{page}"
    );
    assert!(!page.contains("dora-pw"), "no password in the log");

    // The in-process gateway runs no jobs: the page says so, and asking
    // for one is refused with a message, not an error.
    let (status, page) = b.get("/admin/jobs");
    assert_eq!(status, 200);
    assert!(page.contains("No background jobs"), "{page}");
    let res = b.post("/admin/jobs/run", &[("job", "gc")]);
    assert_eq!(location(&res), "/admin/jobs");
    let (_, page) = b.get("/admin/jobs");
    assert!(page.contains("no job"), "{page}");
}

/// Hostile bodies: an oversized form is refused before it is read whole
/// and changes nothing; a login form with fields missing is a plain
/// failed login.
#[test]
fn oversized_and_malformed_forms_are_refused_and_change_nothing() {
    let gw = TestGateway::start();
    add_admin(&gw, "root", "rootpw");
    let mut b = Browser::new(&gw);
    let huge = "x".repeat(200_000);
    let origin = b.origin();
    let res = b.post_raw(
        "/admin/login",
        &[("user", "root"), ("password", huge.as_str())],
        Some(&origin),
    );
    assert_eq!(res.status().as_u16(), 413);
    assert!(
        res.headers().get(header::SET_COOKIE).is_none(),
        "no session"
    );
    let res = b.post_raw("/admin/login", &[("user", "root")], Some(&origin));
    assert!(
        res.headers().get(header::SET_COOKIE).is_none(),
        "no session"
    );

    b.login("root", "rootpw", "");
    b.get("/admin/users");
    let res = b.post("/admin/users/add", &[("name", &huge), ("password", "pw")]);
    assert_eq!(res.status().as_u16(), 413);
    let res = b.post(
        "/admin/users/add",
        &[("name", "../evil"), ("password", "pw")],
    );
    assert_eq!(location(&res), "/admin/users", "refused with a message");
    let users = wait(gw.meta.users()).unwrap();
    assert_eq!(users.len(), 1, "nothing was added");
}
