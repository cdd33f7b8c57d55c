//! `/metrics` as a scraper sees it: the whole reply parses as the
//! Prometheus text format and shows the request, dedup, index and upstream
//! series after a small workload; who may scrape (admins, the bearer
//! token, nobody else); and the separate metrics address.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_parse::{LineInfo, Scrape, Value};
use reqwest::blocking::Client;
use reqwest::StatusCode;

use crate::common::gateway::{random_bytes, TestGateway};
use crate::common::wait;
use dedupdav::backend::metrics::{Outcome, Verb};

const TOKEN: &str = "scrape-token-0123456789";

fn add_admin(gw: &TestGateway) {
    wait(dedupdav::accounts::add_user(
        &gw.meta, "root", "pw-root", true, None,
    ))
    .unwrap();
}

fn http() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A scrape as the admin; the reply must be 200.
fn scrape(gw: &TestGateway) -> String {
    let res = http()
        .get(format!("{}/metrics", gw.base))
        .basic_auth("root", Some("pw-root"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    let kind = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    res.text().unwrap()
}

/// Parses the reply as a scraper does. Every line must be a comment or a
/// sample the parser reads (it skips lines it does not understand, so each
/// is checked on its own first).
fn parse(text: &str) -> Scrape {
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP dedupdav_") || line.starts_with("# TYPE dedupdav_"),
                "{line}"
            );
            assert!(!line.ends_with(".."), "{line}");
            continue;
        }
        match LineInfo::parse(line) {
            LineInfo::Sample {
                metric_name, value, ..
            } => {
                assert!(metric_name.starts_with("dedupdav_"), "{line}");
                let v: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
                assert!(v.is_finite() && v >= 0.0, "{line}");
            }
            other => panic!("not a sample: {line:?} ({other:?})"),
        }
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of a counter or gauge whose labels include `labels`, summed
/// over the series that match.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .filter_map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// The number of observations of a histogram whose labels include
/// `labels` (its `+Inf` bucket), summed over the series that match.
fn observations(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .filter_map(|s| match &s.value {
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map(|b| b.count),
            _ => None,
        })
        .sum()
}

/// A small workload: the same content under two names (the second upload
/// finds every chunk stored), a download, a listing, a missing file.
fn workload(gw: &TestGateway) -> usize {
    let dav = gw.client("root", "pw-root");
    let data = random_bytes(300_000, 11);
    assert_eq!(dav.put("one.bin", data.clone()).status(), 201);
    assert_eq!(dav.put("two.bin", data.clone()).status(), 201);
    assert_eq!(dav.get_bytes("two.bin").unwrap(), data);
    assert_eq!(dav.propfind("", "1").status(), 207);
    assert_eq!(dav.get("missing.bin").status(), 404);
    data.len()
}

#[test]
fn the_whole_reply_parses_and_shows_the_new_series() {
    let gw = TestGateway::start();
    add_admin(&gw);
    let size = workload(&gw) as f64;
    scrape(&gw);
    let text = scrape(&gw);
    let s = parse(&text);

    let put = [("method", "PUT"), ("status", "201")];
    assert_eq!(value(&s, "dedupdav_requests_total", &put), Some(2.0));
    let put = [("method", "PUT"), ("class", "2xx")];
    assert_eq!(
        observations(&s, "dedupdav_request_duration_seconds", &put),
        2.0,
        "{text}"
    );
    let missing = [("method", "GET"), ("class", "4xx")];
    assert_eq!(
        observations(&s, "dedupdav_request_duration_seconds", &missing),
        1.0
    );
    let put = [("method", "PUT")];
    let sent = value(&s, "dedupdav_request_body_bytes_total", &put).unwrap();
    assert!(sent >= 2.0 * size, "{sent}");
    let get = [("method", "GET")];
    let got = value(&s, "dedupdav_response_body_bytes_total", &get).unwrap();
    assert!(got >= size, "{got}: the download and the earlier scrape");

    let hits = value(&s, "dedupdav_dedup_chunks_total", &[("result", "hit")]).unwrap();
    let misses = value(&s, "dedupdav_dedup_chunks_total", &[("result", "miss")]).unwrap();
    assert!(hits >= 1.0 && misses >= 1.0, "{hits} hits, {misses} misses");
    assert_eq!(
        value(&s, "dedupdav_dedup_saved_bytes_total", &[]),
        Some(size)
    );
    assert_eq!(value(&s, "dedupdav_dedup_new_bytes_total", &[]), Some(size));
    assert!(observations(&s, "dedupdav_index_commit_duration_seconds", &[]) >= 2.0);

    assert!(value(&s, "dedupdav_connections_open", &[]).is_some_and(|n| n >= 1.0));
    assert_eq!(value(&s, "dedupdav_users", &[]), Some(1.0));
    for phase in ["header", "idle", "body"] {
        let labels = [("phase", phase)];
        assert_eq!(
            value(&s, "dedupdav_connection_timeouts_total", &labels),
            Some(0.0)
        );
    }
    assert!(
        !text.contains("dedupdav_upstream_"),
        "a local directory sends nothing upstream"
    );
}

#[test]
fn upstream_requests_are_counted_by_verb_and_outcome() {
    let gw = TestGateway::start_on_apache();
    add_admin(&gw);
    workload(&gw);
    let text = scrape(&gw);
    let s = parse(&text);
    let puts = [("verb", "PUT"), ("outcome", "ok")];
    assert!(
        value(&s, "dedupdav_upstream_requests_total", &puts).is_some_and(|n| n >= 1.0),
        "{text}"
    );
    let gets = [("verb", "GET"), ("outcome", "ok")];
    assert!(value(&s, "dedupdav_upstream_requests_total", &gets).is_some_and(|n| n >= 1.0));
    assert!(
        observations(
            &s,
            "dedupdav_upstream_request_duration_seconds",
            &[("verb", "PUT")]
        ) >= 1.0
    );
    let attempts: f64 = value(&s, "dedupdav_upstream_requests_total", &[]).unwrap();
    assert_eq!(
        observations(&s, "dedupdav_upstream_request_duration_seconds", &[]),
        attempts,
        "every attempt is timed"
    );

    // A missing object: not_found, and no retry.
    let metrics = gw.store.backend().upstream_metrics().unwrap();
    let before = metrics.attempts(Verb::Get, Outcome::NotFound);
    let name = dedupdav::crypto::ObjectName::parse(&"0f".repeat(32)).unwrap();
    assert!(wait(gw.store.backend().get(&name)).is_err());
    assert_eq!(metrics.attempts(Verb::Get, Outcome::NotFound), before + 1);
    assert_eq!(metrics.attempts(Verb::Get, Outcome::Retried), 0);
}

#[test]
fn only_admins_and_the_token_may_scrape() {
    let gw = TestGateway::start_with(|c| c.metrics.bearer_token = Some(TOKEN.into()));
    add_admin(&gw);
    gw.add_user("alice", "pw-alice");
    let url = format!("{}/metrics", gw.base);
    let http = http();
    let anonymous = http.get(&url).send().unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let user = http.get(&url).basic_auth("alice", Some("pw-alice"));
    assert_eq!(user.send().unwrap().status(), StatusCode::FORBIDDEN);
    let admin = http.get(&url).basic_auth("root", Some("pw-root"));
    assert_eq!(admin.send().unwrap().status(), StatusCode::OK);
    let token = http.get(&url).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(token.status(), StatusCode::OK);
    parse(&token.text().unwrap());
    let wrong = http
        .get(&url)
        .bearer_auth("scrape-token-0123456780")
        .send()
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));

    // Without a configured token, no bearer token is accepted.
    let plain = TestGateway::start();
    let url = format!("{}/metrics", plain.base);
    let token = http.get(&url).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(token.status(), StatusCode::UNAUTHORIZED);
}

/// Serves `gw`'s metrics on a loopback port of its own; returns its URL
/// and what stops it.
fn metrics_address(gw: &TestGateway) -> (String, tokio::sync::oneshot::Sender<()>) {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let addr = std_listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = gw.gateway.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            gateway
                .serve_metrics(listener, async {
                    let _ = stopped.await;
                })
                .await;
        });
    });
    (format!("http://{addr}"), stop)
}

#[test]
fn the_separate_address_serves_only_metrics() {
    let gw = TestGateway::start_with(|c| {
        c.metrics.bearer_token = Some(TOKEN.into());
        c.metrics.listen = Some("127.0.0.1:0".into());
    });
    add_admin(&gw);
    workload(&gw);
    let (base, _stop) = metrics_address(&gw);
    let http = http();
    let url = format!("{base}/metrics");
    let token = http.get(&url).bearer_auth(TOKEN).send().unwrap();
    assert_eq!(token.status(), StatusCode::OK);
    let s = parse(&token.text().unwrap());
    assert!(value(&s, "dedupdav_dedup_chunks_total", &[("result", "hit")]).is_some());
    assert_eq!(
        http.get(&url).send().unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let admin = http.get(&url).basic_auth("root", Some("pw-root"));
    assert_eq!(
        admin.send().unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "no passwords on the scraper's address"
    );
    let wrong = http.get(&url).bearer_auth("scrape-token-0123456780");
    assert_eq!(wrong.send().unwrap().status(), StatusCode::UNAUTHORIZED);
    let elsewhere = http
        .get(format!("{base}/remote.php/webdav/"))
        .bearer_auth(TOKEN);
    assert_eq!(elsewhere.send().unwrap().status(), StatusCode::NOT_FOUND);
    let put = http.put(&url).bearer_auth(TOKEN).body("x");
    assert_eq!(put.send().unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);

    // Loopback with allow_anonymous_on_loopback: no token needed.
    let open = TestGateway::start_with(|c| {
        c.metrics.listen = Some("127.0.0.1:0".into());
        c.metrics.allow_anonymous_on_loopback = true;
    });
    let (base, _stop) = metrics_address(&open);
    let res = http.get(format!("{base}/metrics")).send().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let families: HashMap<String, String> = parse(&res.text().unwrap()).docs;
    assert!(
        families.contains_key("dedupdav_connections_open"),
        "{families:?}"
    );
}
