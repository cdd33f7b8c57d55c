//! The WebDAV object backend against a real Apache mod_dav upstream, with a
//! fault-injecting proxy in between for the failures Apache does not produce.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::common::apache::{free_port, Apache};
use crate::common::faultproxy::{Fault, FaultProxy};
use bytes::Bytes;
use dedupdav::backend::webdav::{WebDavConfig, WebDavStore};
use dedupdav::backend::{BackendError, ObjectStore};
use dedupdav::crypto::ObjectName;
use futures_util::{StreamExt, TryStreamExt};
use http::Method;
use rand::Rng;

fn random_name() -> ObjectName {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    ObjectName::parse(&hex::encode(bytes)).expect("valid name")
}

fn random_bytes(n: usize) -> Bytes {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill(&mut v[..]);
    Bytes::from(v)
}

fn config(url: String, apache: &Apache) -> WebDavConfig {
    let mut c = WebDavConfig::new(url, apache.user());
    c.password = Some(apache.password().to_string());
    c.retry_deadline_secs = 5;
    c.request_timeout_secs = 10;
    c.connect_timeout_secs = 2;
    c
}

fn direct(apache: &Apache) -> WebDavStore {
    WebDavStore::new(&config(apache.base_url(), apache)).expect("store")
}

/// The configuration of a store whose requests go through `proxy`.
fn config_via(proxy: &FaultProxy, apache: &Apache) -> WebDavConfig {
    config(format!("{}{}", proxy.origin(), Apache::base_path()), apache)
}

/// A store whose requests go through `proxy`.
fn via(proxy: &FaultProxy, apache: &Apache) -> WebDavStore {
    WebDavStore::new(&config_via(proxy, apache)).expect("store")
}

fn on_disk(apache: &Apache, name: &ObjectName) -> std::path::PathBuf {
    apache
        .data_dir()
        .join("dedupdav")
        .join(name.relative_path())
}

#[tokio::test]
async fn put_get_exists_delete_round_trip() {
    let apache = Apache::start();
    let store = direct(&apache);
    let name = random_name();
    let data = random_bytes(100_000);

    assert!(!store.exists(&name).await.unwrap());
    store.put(&name, data.clone()).await.unwrap();
    assert!(store.exists(&name).await.unwrap());
    assert_eq!(store.get(&name).await.unwrap(), data);
    assert_eq!(std::fs::read(on_disk(&apache, &name)).unwrap(), data);

    store.delete(&name).await.unwrap();
    assert!(!on_disk(&apache, &name).exists());
    assert!(!store.exists(&name).await.unwrap());
    // Deleting a missing object is fine.
    store.delete(&name).await.unwrap();
    match store.get(&name).await {
        Err(BackendError::NotFound(n)) => assert_eq!(n, name.as_str()),
        other => panic!("expected NotFound, got {other:?}"),
    }

    // An empty object round-trips too.
    let empty = random_name();
    store.put(&empty, Bytes::new()).await.unwrap();
    assert_eq!(store.get(&empty).await.unwrap().len(), 0);
    assert!(store.describe().starts_with("webdav:http://127.0.0.1:"));
    assert!(!store.describe().contains(apache.password()));
}

#[tokio::test]
async fn reput_is_idempotent_and_recreates_vanished_folders() {
    let apache = Apache::start();
    let proxy = FaultProxy::start(&apache.origin()).await;
    let store = via(&proxy, &apache);
    let name = random_name();
    let data = random_bytes(5000);
    store.put(&name, data.clone()).await.unwrap();
    let mkcols = proxy.count(&Method::from_bytes(b"MKCOL").unwrap());
    assert_eq!(
        mkcols,
        3,
        "root + objects/ + one fan-out folder: {:?}",
        proxy.seen()
    );

    store.put(&name, data.clone()).await.unwrap();
    // A second object in the same fan-out folder needs no MKCOL at all.
    let sibling = ObjectName::parse(&format!("{}{}", &name.as_str()[..4], "0".repeat(60))).unwrap();
    store.put(&sibling, data.clone()).await.unwrap();
    assert_eq!(proxy.count(&Method::from_bytes(b"MKCOL").unwrap()), mkcols);
    assert_eq!(store.get(&name).await.unwrap(), data);

    // Someone removes the fan-out tree upstream: the next PUT gets 409,
    // re-creates the folders and succeeds.
    std::fs::remove_dir_all(apache.data_dir().join("dedupdav/objects")).unwrap();
    let again = random_bytes(10);
    store.put(&name, again.clone()).await.unwrap();
    assert_eq!(std::fs::read(on_disk(&apache, &name)).unwrap(), again);
}

fn adler32(data: &[u8]) -> String {
    let mut a = simd_adler32::Adler32::new();
    a.write(data);
    format!("ADLER32:{:08x}", a.finish())
}

#[tokio::test]
async fn puts_carry_a_checksum_the_upstream_may_report_back() {
    let apache = Apache::start();
    let proxy = FaultProxy::start(&apache.origin()).await;
    let store = via(&proxy, &apache);
    let data = random_bytes(5000);
    store.put(&random_name(), data.clone()).await.unwrap();
    let put = proxy
        .seen()
        .into_iter()
        .find(|s| s.method == Method::PUT)
        .unwrap();
    assert_eq!(put.oc_checksum, Some(adler32(&data)), "ownCloud checks it");

    // An upstream (ownCloud) that reports the checksum of what it stored:
    // a match passes, a mismatch is written again once, then refused.
    let data = random_bytes(777);
    proxy.always(
        Some(Method::HEAD),
        Fault::SetHeader("OC-Checksum", format!("SHA1:00 {}", adler32(&data))),
    );
    store.put(&random_name(), data).await.unwrap();
    proxy.clear();
    proxy.always(
        Some(Method::HEAD),
        Fault::SetHeader("OC-Checksum", "SHA1:00 ADLER32:00000001".into()),
    );
    proxy.reset_seen();
    let err = store
        .put(&random_name(), random_bytes(100))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("ADLER32:00000001"), "{err}");
    assert_eq!(proxy.count(&Method::PUT), 2, "{:?}", proxy.seen());
}

#[tokio::test]
async fn lists_hundreds_of_objects_across_fanout_folders() {
    let apache = Apache::start();
    let store = direct(&apache);
    assert_eq!(
        store.list().count().await,
        0,
        "empty upstream lists nothing"
    );

    let mut expected = HashMap::new();
    for i in 0..300usize {
        expected.insert(random_name(), i % 97 + 1);
    }
    // Some share fan-out folders with each other.
    for i in 0..5usize {
        let first = expected.keys().next().unwrap().as_str()[..4].to_string();
        let n = ObjectName::parse(&format!("{first}{:060x}", i)).unwrap();
        expected.insert(n, 7);
    }
    let puts = futures_util::stream::iter(expected.iter())
        .map(|(n, size)| {
            let store = &store;
            async move { store.put(n, random_bytes(*size)).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>();
    if let Err(e) = puts.await {
        panic!("{e:?}\n{}", apache.logs());
    }

    // Things that are not objects are skipped.
    let some = expected.keys().next().unwrap();
    let leaf = on_disk(&apache, some).parent().unwrap().to_path_buf();
    std::fs::write(leaf.join("notes.txt"), b"x").unwrap();
    std::fs::create_dir(leaf.join(some.as_str())).ok();
    std::fs::create_dir(apache.data_dir().join("dedupdav/objects/zz")).unwrap();
    let misplaced = random_name();
    std::fs::write(leaf.join(misplaced.as_str()), b"x").unwrap();

    let listed: Vec<_> = store.list().try_collect().await.unwrap();
    let got: HashMap<ObjectName, usize> = listed
        .into_iter()
        .map(|o| (o.name, o.size as usize))
        .collect();
    let misplaced_here = misplaced.as_str()[..2] == some.as_str()[..2];
    let mut want = expected.clone();
    if misplaced_here {
        want.insert(misplaced, 1);
    }
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
}

/// Stores one object through `store`, then `n` more in its fan-out folder
/// straight on Apache's disk (thousands of PUTs would be slow), and one in
/// another folder. Returns every object with its size.
async fn fill_one_folder(
    apache: &Apache,
    store: &WebDavStore,
    n: usize,
) -> HashMap<ObjectName, usize> {
    let first = random_name();
    store.put(&first, random_bytes(3)).await.unwrap();
    let leaf = on_disk(apache, &first).parent().unwrap().to_path_buf();
    let mut expected = HashMap::from([(first.clone(), 3usize)]);
    for i in 0..n {
        let name = ObjectName::parse(&format!("{}{i:062x}", first.fanout())).unwrap();
        let size = i % 13;
        std::fs::write(leaf.join(name.as_str()), vec![b'x'; size]).unwrap();
        expected.insert(name, size);
    }
    let elsewhere = ObjectName::parse(&format!("{}{:062x}", other_fanout(&first), 1)).unwrap();
    store.put(&elsewhere, random_bytes(5)).await.unwrap();
    expected.insert(elsewhere, 5);
    expected
}

#[tokio::test]
async fn lists_a_folder_of_thousands_of_objects() {
    let apache = Apache::start();
    let store = direct(&apache);
    let expected = fill_one_folder(&apache, &store, 4000).await;

    let mut got = HashMap::new();
    let mut listed = store.list();
    while let Some(o) = listed.next().await {
        let o = o.unwrap_or_else(|e| panic!("{e}\n{}", apache.logs()));
        assert!(
            got.insert(o.name, o.size as usize).is_none(),
            "listed twice"
        );
    }
    assert_eq!(got.len(), 4002);
    assert_eq!(got, expected);

    // Stopping early is fine, and the store lists again afterwards.
    let some: Vec<_> = store.list().take(10).try_collect().await.unwrap();
    assert_eq!(some.len(), 10);
    assert_eq!(store.list().count().await, 4002);
}

#[tokio::test]
async fn a_listing_that_breaks_off_is_an_error_never_a_short_list() {
    let apache = Apache::start();
    let proxy = FaultProxy::start(&apache.origin()).await;
    let store = via(&proxy, &apache);
    let expected = fill_one_folder(&apache, &store, 3000).await;
    let propfind = Method::from_bytes(b"PROPFIND").unwrap();

    // A failure before the folder's answer starts is retried.
    proxy.once(Some(propfind.clone()), Fault::Pass);
    proxy.once(Some(propfind.clone()), Fault::Status(503));
    let listed: Vec<_> = store.list().try_collect().await.unwrap();
    assert_eq!(listed.len(), expected.len());

    // Half of a folder's answer, then the connection closes.
    proxy.once(Some(propfind.clone()), Fault::Pass);
    proxy.always(Some(propfind.clone()), Fault::Truncate);
    let items: Vec<_> = store.list().collect().await;
    let errors: Vec<String> = items
        .iter()
        .filter_map(|r| r.as_ref().err())
        .inspect(|e| assert!(e.is_transient(), "{e}"))
        .map(ToString::to_string)
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("PROPFIND objects/") && e.contains("the answer broke off")),
        "{errors:?}"
    );
    assert!(items.len() - errors.len() < expected.len());
}

/// A fan-out folder other than `name`'s.
fn other_fanout(name: &ObjectName) -> &'static str {
    if name.fanout() == "00" {
        "01"
    } else {
        "00"
    }
}

#[tokio::test]
async fn wrong_password_is_permanent_with_clear_cause() {
    let _timed = crate::common::load::wall_clock_bound_async().await;
    let apache = Apache::start();
    let mut cfg = config(apache.base_url(), &apache);
    cfg.password = Some("not-the-password".to_string());
    let store = WebDavStore::new(&cfg).unwrap();
    let started = Instant::now();
    let err = store
        .put(&random_name(), random_bytes(10))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "not retried");
    match &err {
        BackendError::Permanent { cause, .. } => {
            assert!(cause.contains("wrong credentials"), "{cause}")
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert!(!err.is_transient());
    assert!(!err.to_string().contains("not-the-password"));
    let err = store.get(&random_name()).await.unwrap_err();
    assert!(err.to_string().contains("wrong credentials"), "{err}");
}

#[tokio::test]
async fn password_file_is_read() {
    let apache = Apache::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, format!("{}\n", apache.password())).unwrap();
    let mut cfg = config(apache.base_url(), &apache);
    cfg.password = None;
    cfg.password_file = Some(file);
    let store = WebDavStore::new(&cfg).unwrap();
    let name = random_name();
    store.put(&name, random_bytes(3)).await.unwrap();
    assert!(store.exists(&name).await.unwrap());
}

#[tokio::test]
async fn upstream_not_running_is_unreachable() {
    let _timed = crate::common::load::wall_clock_bound_async().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/remote.php/dav/files/svc/");
    let mut cfg = WebDavConfig::new(url, "svc");
    cfg.password = Some("secret-pw".to_string());
    cfg.retry_deadline_secs = 1;
    let store = WebDavStore::new(&cfg).unwrap();
    let started = Instant::now();
    let err = store.get(&random_name()).await.unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        BackendError::Unreachable { backend, cause } => {
            assert!(
                backend.contains(&format!("127.0.0.1:{port}/remote.php/dav/files/svc/")),
                "{backend}"
            );
            assert!(cause.to_lowercase().contains("connect"), "{cause}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(err.is_transient());
    assert!(!err.to_string().contains("secret-pw"));
    assert!(
        elapsed < Duration::from_secs(3),
        "gave up at the deadline: {elapsed:?}"
    );
    let err = store
        .put(&random_name(), random_bytes(1))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn transient_statuses_are_retried() {
    let apache = Apache::start();
    let proxy = FaultProxy::start(&apache.origin()).await;
    let store = via(&proxy, &apache);
    let name = random_name();
    let data = random_bytes(20_000);

    proxy.times(Some(Method::PUT), Fault::Status(503), 2);
    store.put(&name, data.clone()).await.unwrap();
    assert_eq!(proxy.count(&Method::PUT), 3);
    assert_eq!(std::fs::read(on_disk(&apache, &name)).unwrap(), data);

    for status in [500, 423, 429] {
        proxy.once(Some(Method::GET), Fault::Status(status));
    }
    proxy.reset_seen();
    assert_eq!(store.get(&name).await.unwrap(), data);
    assert_eq!(proxy.count(&Method::GET), 4);

    proxy.once(Some(Method::HEAD), Fault::Status(504));
    proxy.once(Some(Method::DELETE), Fault::Status(502));
    assert!(store.exists(&name).await.unwrap());
    store.delete(&name).await.unwrap();
    assert!(!on_disk(&apache, &name).exists());
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let _timed = crate::common::load::wall_clock_bound_async().await;
    let apache = Apache::start();
    let proxy = FaultProxy::start(&apache.origin()).await;
    let store = via(&proxy, &apache);
    let name = random_name();
    store.put(&name, random_bytes(10)).await.unwrap();
    proxy.once(Some(Method::GET), Fault::StatusRetryAfter(429, 2));
    let started = Instant::now();
    store.get(&name).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A Retry-After beyond the deadline ends the retries at once.
    proxy.once(Some(Method::GET), Fault::StatusRetryAfter(503, 3600));
    let started = Instant::now();
    let err = store.get(&name).await.unwrap_err();
    assert!(matches!(err, BackendError::Transient { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn persistent_5xx_gives_up_at_the_deadline() {
    let _timed = crate::common::load::wall_clock_bound_async().await;
    let apache = Apache::start();
    let proxy = FaultProxy::start(&apache.origin()).await;
    let mut cfg = config_via(&proxy, &apache);
    cfg.retry_deadline_secs = 2;
    let store = WebDavStore::new(&cfg).unwrap();
    proxy.always(Some(Method::GET), Fault::Status(500));
    let started = Instant::now();
    let err = store.get(&random_name()).await.unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        BackendError::Transient { cause, .. } => assert!(cause.contains("500"), "{cause}"),
        other => panic!("expected Transient, got {other:?}"),
    }
    assert!(proxy.count(&Method::GET) >= 3, "{:?}", proxy.seen());
    assert!(elapsed <= Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn permanent_statuses_are_not_retried() {
    let apache = Apache::start();
    let proxy = FaultProxy::start(&apache.origin()).await;
    let store = via(&proxy, &apache);
    let name = random_name();
    store.put(&name, random_bytes(10)).await.unwrap();
    proxy.reset_seen();

    proxy.once(Some(Method::PUT), Fault::Status(507));
    let err = store.put(&name, random_bytes(10)).await.unwrap_err();
    assert!(matches!(err, BackendError::InsufficientStorage), "{err:?}");
    assert_eq!(proxy.count(&Method::PUT), 1);

    proxy.once(Some(Method::PUT), Fault::Status(403));
    let err = store.put(&name, random_bytes(10)).await.unwrap_err();
    match &err {
        BackendError::Permanent { cause, .. } => assert!(cause.contains("forbidden"), "{cause}"),
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert_eq!(proxy.count(&Method::PUT), 2);

    proxy.once(Some(Method::GET), Fault::Status(400));
    let err = store.get(&name).await.unwrap_err();
    assert!(matches!(err, BackendError::Permanent { .. }), "{err:?}");
    assert_eq!(proxy.count(&Method::GET), 1);
}

#[tokio::test]
async fn dropped_connections_and_delays_are_retried() {
    let apache = Apache::start();
    let proxy = FaultProxy::start(&apache.origin()).await;
    let mut cfg = config_via(&proxy, &apache);
    cfg.request_timeout_secs = 1;
    let store = WebDavStore::new(&cfg).unwrap();
    let name = random_name();
    let data = random_bytes(50_000);

    // The upstream stored the object but the answer was lost: the retry
    // writes the same bytes again.
    proxy.once(Some(Method::PUT), Fault::DropAfterForward);
    proxy.once(Some(Method::PUT), Fault::Drop);
    store.put(&name, data.clone()).await.unwrap();
    assert_eq!(proxy.count(&Method::PUT), 3);
    assert_eq!(std::fs::read(on_disk(&apache, &name)).unwrap(), data);

    proxy.once(Some(Method::GET), Fault::Drop);
    proxy.once(Some(Method::GET), Fault::Delay(Duration::from_secs(3)));
    let started = Instant::now();
    assert_eq!(store.get(&name).await.unwrap(), data);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "timed out once"
    );
    assert_eq!(proxy.count(&Method::GET), 3);

    proxy.once(Some(Method::DELETE), Fault::DropAfterForward);
    store.delete(&name).await.unwrap();
    assert!(!store.exists(&name).await.unwrap());
}

#[tokio::test]
async fn short_body_is_retried_then_corrupt_never_short() {
    let apache = Apache::start();
    let proxy = FaultProxy::start(&apache.origin()).await;
    let mut cfg = config_via(&proxy, &apache);
    cfg.retry_deadline_secs = 2;
    let store = WebDavStore::new(&cfg).unwrap();
    let name = random_name();
    let data = random_bytes(200_000);
    store.put(&name, data.clone()).await.unwrap();

    proxy.once(Some(Method::GET), Fault::Truncate);
    assert_eq!(store.get(&name).await.unwrap(), data);
    assert_eq!(proxy.count(&Method::GET), 2);

    proxy.always(Some(Method::GET), Fault::Truncate);
    match store.get(&name).await {
        Err(BackendError::Corrupt { name: n, cause }) => {
            assert_eq!(n, name.as_str());
            assert!(
                cause.contains(&format!("of {} bytes", data.len())),
                "{cause}"
            );
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|b| b.len())),
    }
}

#[tokio::test]
async fn acknowledged_but_unstored_put_is_detected() {
    let apache = Apache::start();
    let proxy = FaultProxy::start(&apache.origin()).await;
    let store = via(&proxy, &apache);
    let name = random_name();
    let data = random_bytes(1000);

    // The first PUT is answered 201 but never reaches the upstream: the
    // HEAD check notices and the object is written again.
    proxy.once(Some(Method::PUT), Fault::Status(201));
    store.put(&name, data.clone()).await.unwrap();
    assert_eq!(proxy.count(&Method::PUT), 2);
    assert_eq!(std::fs::read(on_disk(&apache, &name)).unwrap(), data);

    let other = random_name();
    proxy.always(Some(Method::PUT), Fault::Status(204));
    let err = store.put(&other, data.clone()).await.unwrap_err();
    assert!(matches!(err, BackendError::Corrupt { .. }), "{err:?}");
}

#[tokio::test]
async fn check_reports_latencies_and_cleans_up() {
    let apache = Apache::start();
    let store = direct(&apache);
    let report = store.check().await.unwrap();
    assert!(report
        .upstream
        .contains("/remote.php/dav/files/svc/dedupdav"));
    assert!(report.probe_path.starts_with("dedupdav/probe-"));
    assert!(
        report.server.as_deref().unwrap_or("").contains("Apache"),
        "{report:?}"
    );
    assert!(report.write_latency > Duration::ZERO && report.read_latency > Duration::ZERO);
    let left: Vec<_> = std::fs::read_dir(apache.data_dir().join("dedupdav"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "probe left behind: {left:?}");
    assert!(report.to_string().contains("write"));
}

#[tokio::test]
async fn check_explains_common_mistakes() {
    let apache = Apache::start();

    let mut cfg = config(apache.base_url(), &apache);
    cfg.password = Some("wrong".to_string());
    let err = WebDavStore::new(&cfg).unwrap().check().await.unwrap_err();
    assert!(err.to_string().contains("wrong credentials"), "{err}");

    let cfg = config(
        format!("{}/remote.php/webdav-typo/", apache.origin()),
        &apache,
    );
    let err = WebDavStore::new(&cfg).unwrap().check().await.unwrap_err();
    assert!(err.to_string().contains("bad URL"), "{err}");

    let proxy = FaultProxy::start(&apache.origin()).await;
    proxy.always(
        Some(Method::from_bytes(b"PROPFIND").unwrap()),
        Fault::Status(200),
    );
    let err = via(&proxy, &apache).check().await.unwrap_err();
    assert!(err.to_string().contains("not WebDAV"), "{err}");

    proxy.clear();
    proxy.always(Some(Method::PUT), Fault::Status(507));
    let err = via(&proxy, &apache).check().await.unwrap_err();
    assert!(matches!(err, BackendError::InsufficientStorage), "{err:?}");

    let cfg = config(apache.base_url().replace("http://", "https://"), &apache);
    let err = WebDavStore::new(&cfg).unwrap().check().await.unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn two_gateways_racing_to_create_folders_both_succeed() {
    let apache = Apache::start();
    // Separate stores do not share their memory of created folders, like two
    // gateway processes on one upstream; Apache answers the loser of a MKCOL
    // race with 403.
    let stores: Vec<WebDavStore> = (0..4).map(|_| direct(&apache)).collect();
    let names: Vec<ObjectName> = (0..32).map(|_| random_name()).collect();
    let puts = stores.iter().flat_map(|store| {
        names
            .iter()
            .map(move |n| async move { store.put(n, Bytes::from(n.as_str().to_string())).await })
    });
    let results = futures_util::future::join_all(puts).await;
    for r in results {
        r.unwrap_or_else(|e| panic!("{e:?}\n{}", apache.logs()));
    }
    for n in &names {
        assert_eq!(
            std::fs::read(on_disk(&apache, n)).unwrap(),
            n.as_str().as_bytes()
        );
    }
}

#[tokio::test]
async fn parallelism_bounds_requests_in_flight() {
    let apache = Apache::start();
    let proxy = FaultProxy::start(&apache.origin()).await;
    let mut cfg = config_via(&proxy, &apache);
    cfg.parallelism = 2;
    let store = WebDavStore::new(&cfg).unwrap();
    let names: Vec<ObjectName> = (0..6).map(|_| random_name()).collect();
    for n in &names {
        store.put(n, random_bytes(10)).await.unwrap();
    }
    proxy.always(Some(Method::GET), Fault::Delay(Duration::from_millis(400)));
    let started = Instant::now();
    let gets = futures_util::future::join_all(names.iter().map(|n| store.get(n))).await;
    let elapsed = started.elapsed();
    assert!(gets.iter().all(Result::is_ok));
    // 6 requests, 2 at a time, 400 ms each: at least 3 rounds.
    assert!(elapsed >= Duration::from_millis(1200), "{elapsed:?}");
}

/// An upstream that checks `OC-Checksum` itself (ownCloud and Nextcloud
/// answer every PUT with `OC-FileId`) needs no HEAD after a PUT; a plain
/// WebDAV server keeps it.
#[tokio::test]
async fn a_put_to_an_upstream_that_checks_the_checksum_needs_no_head() {
    let apache = Apache::start();
    let proxy = FaultProxy::start(&apache.origin()).await;
    let store = via(&proxy, &apache);
    store.put(&random_name(), random_bytes(300)).await.unwrap();
    assert_eq!(proxy.count(&Method::HEAD), 1, "Apache's PUT is checked");

    proxy.always(
        Some(Method::PUT),
        Fault::SetHeader("OC-FileId", "00000042ocabcdef".into()),
    );
    proxy.reset_seen();
    let (name, data) = (random_name(), random_bytes(400));
    store.put(&name, data.clone()).await.unwrap();
    assert_eq!(proxy.count(&Method::PUT), 1);
    assert_eq!(proxy.count(&Method::HEAD), 0, "{:?}", proxy.seen());
    assert_eq!(store.get(&name).await.unwrap(), data);
}
