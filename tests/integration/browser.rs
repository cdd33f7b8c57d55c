//! The web console in a real browser: headless Chromium (Debian's
//! `chromium`, which `scripts/test.sh` installs) driven over the DevTools
//! protocol. Logs in, enrols TOTP (the code computed here from the key the
//! page shows), logs in again with password and code, adds a user, sets a
//! quota, creates and revokes an app password, and checks that the
//! dashboard's charts render: a screenshot that is not blank, kept at
//! `target/console-dashboard.png` (CI keeps it when a test fails).

use std::path::{Path, PathBuf};
use std::time::Duration;

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};

use crate::common::gateway::TestGateway;
use crate::common::wait;
use dedupdav::accounts::totp::{step_of, TotpSecret};
use dedupdav::meta::history::HistorySample;

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("headless Chromium is needed: run scripts/test.sh, or apt-get install chromium")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Fills the field `selector` with `text`.
fn fill(tab: &Tab, selector: &str, text: &str) {
    let field = tab.wait_for_element(selector).expect(selector);
    field.click().expect("focus");
    if !text.is_empty() {
        field.type_into(text).expect("typed");
    }
}

/// Clicks `selector` (a submit button) and waits until the page it
/// leads to has loaded (the old document is marked first, so a reply on
/// the same URL is told apart).
fn submit(tab: &Tab, selector: &str) {
    let button = tab.wait_for_element(selector).expect(selector);
    mark_and(tab, || {
        button.click().expect("clicked");
    });
}

/// Marks the current document, runs `act`, and waits for a new document
/// to finish loading.
fn mark_and(tab: &Tab, act: impl FnOnce()) {
    tab.evaluate("document.documentElement.dataset.old = '1'", false)
        .expect("marked");
    act();
    let check =
        "document.documentElement.dataset.old === undefined && document.readyState === 'complete'";
    for _ in 0..200 {
        let done = tab
            .evaluate(check, false)
            .ok()
            .and_then(|r| r.value)
            .is_some_and(|v| v == serde_json::Value::Bool(true));
        if done {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no new page after 20 s: {}", tab.get_url());
}

fn text_of(tab: &Tab, selector: &str) -> String {
    tab.wait_for_element(selector)
        .expect(selector)
        .get_inner_text()
        .expect("text")
}

fn base32_decode(text: &str) -> [u8; 20] {
    crate::common::base32_decode(text)
        .try_into()
        .expect("a 160-bit key")
}

/// Distinct RGB(A) values in a PNG.
fn distinct_pixels(png_bytes: &[u8]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let bytes = &buf[..info.buffer_size()];
    let per = info.color_type.samples()
        * if info.bit_depth == png::BitDepth::Sixteen {
            2
        } else {
            1
        };
    let mut seen = std::collections::HashSet::new();
    for px in bytes.chunks(per) {
        seen.insert(px.to_vec());
    }
    seen.len()
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target")
}

#[test]
fn the_console_works_in_a_browser() {
    let gw = TestGateway::start();
    wait(dedupdav::accounts::add_user(
        &gw.meta,
        "root",
        "root-password",
        true,
        None,
    ))
    .expect("an admin");
    // Two hours of history for the charts (the job samples each minute).
    let t = now() as i64;
    for i in 0..120u64 {
        let s = HistorySample {
            at: t - 7200 + i as i64 * 60,
            logical_bytes: (i * i) << 18,
            stored_bytes: (i * i) << 16,
            files: i * 3,
            requests: i * i * 7,
            upstream_attempts: i * 40,
            upstream_micros: i * 40 * (20_000 + 300 * i),
        };
        wait(gw.meta.record_history(&s, 43_200)).expect("a sample");
    }

    let browser = Browser::new(
        LaunchOptions::default_builder()
            .path(Some(chromium()))
            .headless(true)
            .sandbox(false)
            .window_size(Some((1280, 1300)))
            .idle_browser_timeout(Duration::from_secs(120))
            .build()
            .expect("launch options"),
    )
    .expect("Chromium starts");
    let tab = browser.new_tab().expect("a tab");
    tab.set_default_timeout(Duration::from_secs(20));
    let url = |path: &str| format!("{}{path}", gw.base);

    // Log in with the password.
    tab.navigate_to(&url("/admin/")).expect("opened");
    tab.wait_until_navigated().expect("loaded");
    fill(&tab, "#user", "root");
    fill(&tab, "#password", "root-password");
    submit(&tab, "form button[type=submit]");
    assert!(
        tab.get_url().ends_with("/admin/dashboard"),
        "{}: {}",
        tab.get_url(),
        tab.get_content().unwrap_or_default()
    );

    // Enrol TOTP.
    tab.navigate_to(&url("/admin/account")).expect("opened");
    tab.wait_until_navigated().expect("loaded");
    submit(&tab, "form[action='/admin/account/totp/start'] button");
    tab.wait_for_element(".qr svg").expect("a QR code");
    let secret = TotpSecret(base32_decode(&text_of(&tab, "#totp-key")));
    let step = step_of(now());
    fill(
        &tab,
        "#confirm-code",
        &format!("{:06}", secret.code_at(step)),
    );
    submit(&tab, "form[action='/admin/account/totp/confirm'] button");
    assert!(text_of(&tab, ".note").contains("Two-factor login is on"));
    let user = wait(gw.meta.user("root")).unwrap().unwrap();
    assert!(wait(gw.meta.totp(user.id)).unwrap().is_some());

    // Log out, log in with password and a fresh code.
    submit(&tab, "nav form button");
    assert!(tab.get_url().ends_with("/admin/login"));
    fill(&tab, "#user", "root");
    fill(&tab, "#password", "root-password");
    fill(&tab, "#code", &format!("{:06}", secret.code_at(step + 1)));
    submit(&tab, "form button[type=submit]");
    assert!(
        tab.get_url().ends_with("/admin/dashboard"),
        "{}: {}",
        tab.get_url(),
        tab.get_content().unwrap_or_default()
    );

    // Add a user with a generated password and a quota; change the quota.
    tab.navigate_to(&url("/admin/users")).expect("opened");
    tab.wait_until_navigated().expect("loaded");
    fill(&tab, "#name", "dana");
    fill(&tab, "#quota", "5M");
    submit(&tab, "form[action='/admin/users/add'] button");
    let password = text_of(&tab, "#secret");
    assert_eq!(password.trim().len(), 24);
    assert_eq!(
        gw.client("dana", password.trim())
            .propfind("", "0")
            .status()
            .as_u16(),
        207
    );
    let quota = tab
        .wait_for_element("input[aria-label='quota of dana']")
        .expect("dana's quota field");
    quota.click().expect("focus");
    tab.press_key("End").expect("end");
    for _ in 0..8 {
        tab.press_key("Backspace").expect("erase");
    }
    quota.type_into("2G").expect("typed");
    mark_and(&tab, || {
        tab.press_key("Enter").expect("submitted");
    });
    assert!(text_of(&tab, ".note").contains("dana is now 2.00 GiB"));
    assert_eq!(
        wait(gw.meta.user("dana")).unwrap().unwrap().quota,
        Some(2 << 30)
    );

    // An app password for a sync client: created, used, revoked.
    tab.navigate_to(&url("/admin/account")).expect("opened");
    tab.wait_until_navigated().expect("loaded");
    fill(&tab, "#label", "sync client");
    submit(
        &tab,
        "form[action='/admin/account/app-passwords/add'] button",
    );
    let app_password = text_of(&tab, "#secret");
    let app_password = app_password.trim();
    assert_eq!(
        gw.client("root", app_password)
            .propfind("", "0")
            .status()
            .as_u16(),
        207
    );
    submit(&tab, "button[aria-label='revoke sync client']");
    assert!(text_of(&tab, ".note").contains("revoked"));
    assert!(wait(gw.meta.app_passwords("root")).unwrap().is_empty());
    assert_eq!(
        gw.client("root", app_password)
            .propfind("", "0")
            .status()
            .as_u16(),
        401
    );

    // Some content, stored once for two files.
    let dav = gw.client("root", "root-password");
    let data = crate::common::gateway::random_bytes(3 << 20, 7);
    for name in ["report.bin", "copy of report.bin"] {
        assert!(dav.put(name, data.clone()).status().is_success());
    }

    // The dashboard's charts render.
    tab.navigate_to(&url("/admin/dashboard")).expect("opened");
    tab.wait_until_navigated().expect("loaded");
    tab.wait_for_element("path.line.logical")
        .expect("the bytes chart");
    tab.wait_for_element("path.line.requests")
        .expect("the request chart");
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("a screenshot");
    let dir = target_dir();
    std::fs::create_dir_all(&dir).expect("target/");
    let saved = dir.join("console-dashboard.png");
    std::fs::write(&saved, &png).expect("saved");
    let colours = distinct_pixels(&png);
    assert!(
        colours > 50,
        "the screenshot looks blank: {colours} colours ({saved:?})"
    );
}
