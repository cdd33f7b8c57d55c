//! The gateway in front of a real Apache, with a fault-injecting proxy in
//! between: every upload either succeeds, with every byte readable
//! afterwards, or fails with a clear 5xx and leaves the index unchanged; once
//! the faults stop, everything acknowledged reads back byte for byte.

use crate::common;

use crate::common::apache::Apache;
use crate::common::faultproxy::{Fault, FaultProxy};
use crate::common::gateway::{random_bytes, TestGateway};
use http::Method;

const MIB: usize = 1 << 20;

struct Rig {
    gw: TestGateway,
    proxy: FaultProxy,
    _rt: tokio::runtime::Runtime,
}

fn rig(retry_deadline_secs: u64) -> Rig {
    let (gw, proxy, rt) = TestGateway::start_behind_proxy(|c| {
        let upstream = TestGateway::upstream_of(c);
        upstream.retry_deadline_secs = retry_deadline_secs;
        upstream.request_timeout_secs = 5;
        upstream.connect_timeout_secs = 2;
    });
    gw.add_user("alice", "pw");
    Rig { gw, proxy, _rt: rt }
}

#[test]
fn transient_faults_are_retried_and_the_upload_succeeds() {
    let r = rig(30);
    let alice = r.gw.client("alice", "pw");
    let data = random_bytes(6 * MIB, 1);
    r.proxy.times(Some(Method::PUT), Fault::Status(503), 2);
    r.proxy.once(Some(Method::PUT), Fault::Drop);
    r.proxy.once(Some(Method::PUT), Fault::DropAfterForward);
    r.proxy
        .once(Some(Method::PUT), Fault::StatusRetryAfter(429, 1));
    r.proxy.once(Some(Method::PUT), Fault::Status(500));
    assert_eq!(alice.put("a.bin", data.clone()).status(), 201);
    let seen = r.proxy.seen();
    assert!(
        seen.iter().any(|s| s.fault == Fault::Status(503)),
        "faults were injected"
    );

    r.proxy.once(Some(Method::GET), Fault::Truncate);
    r.proxy.once(Some(Method::GET), Fault::Status(502));
    r.proxy.once(Some(Method::GET), Fault::Drop);
    assert_eq!(alice.get_bytes("a.bin").unwrap(), data);
}

#[test]
fn persistent_failure_is_a_clear_5xx_and_changes_nothing() {
    let r = rig(2);
    let alice = r.gw.client("alice", "pw");
    let v1 = random_bytes(3 * MIB, 2);
    assert_eq!(alice.put("doc.bin", v1.clone()).status(), 201);
    let before = r.gw.stats();

    for fault in [Fault::Status(500), Fault::Drop, Fault::Status(503)] {
        r.proxy.always(Some(Method::PUT), fault.clone());
        let res = alice.put("doc.bin", random_bytes(3 * MIB, 3));
        let status = res.status().as_u16();
        let body = res.text().unwrap();
        assert!(status == 502 || status == 503, "{fault:?} -> {status}");
        assert!(body.contains("storage backend"), "{body}");
        assert!(
            !body.contains("127.0.0.1"),
            "upstream address leaked: {body}"
        );
        let res = alice.put("new.bin", random_bytes(MIB, 4));
        assert!(res.status().is_server_error());
        r.proxy.clear();
        let after = r.gw.stats();
        assert_eq!(after.files, before.files, "{fault:?}");
        assert_eq!(after.logical_bytes, before.logical_bytes);
        assert_eq!(after.chunks, before.chunks, "no chunk was committed");
        assert_eq!(
            alice.get_bytes("doc.bin").unwrap(),
            v1,
            "previous version intact"
        );
        assert_eq!(alice.get("new.bin").status(), 404);
    }
}

#[test]
fn upstream_out_of_space_is_507() {
    let r = rig(5);
    let alice = r.gw.client("alice", "pw");
    r.proxy.always(Some(Method::PUT), Fault::Status(507));
    let res = alice.put("big.bin", random_bytes(2 * MIB, 5));
    assert_eq!(res.status(), 507);
    r.proxy.clear();
    assert_eq!(alice.get("big.bin").status(), 404);
    assert_eq!(r.gw.stats().files, 0);
}

#[test]
fn upstream_gone_then_back_loses_nothing_acknowledged() {
    let r = rig(2);
    let alice = r.gw.client("alice", "pw");
    let mut acknowledged = Vec::new();
    for i in 0..3 {
        let data = random_bytes(2 * MIB + i * 1000, 10 + i as u64);
        assert_eq!(alice.put(&format!("f{i}.bin"), data.clone()).status(), 201);
        acknowledged.push((format!("f{i}.bin"), data));
    }
    // The upstream vanishes: uploads fail with 503, reads fail, nothing is
    // half-committed.
    r.proxy.always(None, Fault::Drop);
    let res = alice.put("during.bin", random_bytes(2 * MIB, 99));
    assert!(res.status().is_server_error(), "{}", res.status());
    assert!(
        alice.get_bytes("f0.bin").is_err(),
        "reads fail while it is gone"
    );
    // Dedup hits need no upstream: a file made only of known chunks commits.
    let res = alice.put("copy-of-f1.bin", acknowledged[1].1.clone());
    assert_eq!(res.status(), 201);
    acknowledged.push(("copy-of-f1.bin".into(), acknowledged[1].1.clone()));
    // It comes back: everything acknowledged reads back byte for byte.
    r.proxy.clear();
    for (name, data) in &acknowledged {
        assert_eq!(&alice.get_bytes(name).unwrap(), data, "{name}");
    }
    assert_eq!(alice.get("during.bin").status(), 404);
    let data = random_bytes(2 * MIB, 100);
    assert_eq!(alice.put("after.bin", data.clone()).status(), 201);
    assert_eq!(alice.get_bytes("after.bin").unwrap(), data);
}

#[test]
fn an_upstream_that_truncates_every_read_is_an_error_never_short_data() {
    let r = rig(2);
    let alice = r.gw.client("alice", "pw");
    let data = random_bytes(3 * MIB, 7);
    assert_eq!(alice.put("t.bin", data.clone()).status(), 201);
    r.proxy.always(Some(Method::GET), Fault::Truncate);
    match alice.get_bytes("t.bin") {
        Ok(body) => panic!("got {} bytes from a truncating upstream", body.len()),
        Err(e) => eprintln!("failed as it must: {e}"),
    }
    r.proxy.clear();
    assert_eq!(alice.get_bytes("t.bin").unwrap(), data);
}

#[test]
fn slow_upstream_answers_within_the_timeout_are_waited_for() {
    let r = rig(20);
    let alice = r.gw.client("alice", "pw");
    let data = random_bytes(2 * MIB, 8);
    r.proxy.times(
        Some(Method::PUT),
        Fault::Delay(std::time::Duration::from_millis(700)),
        3,
    );
    assert_eq!(alice.put("slow.bin", data.clone()).status(), 201);
    r.proxy.times(
        Some(Method::GET),
        Fault::Delay(std::time::Duration::from_millis(700)),
        2,
    );
    assert_eq!(alice.get_bytes("slow.bin").unwrap(), data);
}

/// `dedupdav check-upstream` as an operator runs it.
#[test]
fn check_upstream_reports_success_and_wrong_credentials() {
    let apache = Apache::start();
    let run = |password: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut c = common::dedupdav_command();
        let out = c
            .current_dir(dir.path())
            .arg("check-upstream")
            .env("DEDUPDAV_BACKEND__KIND", "webdav")
            .env("DEDUPDAV_BACKEND__URL", apache.base_url())
            .env("DEDUPDAV_BACKEND__USERNAME", apache.user())
            .env("DEDUPDAV_BACKEND__PASSWORD", password)
            .env("DEDUPDAV_BACKEND__RETRY_DEADLINE_SECS", "3")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = run(apache.password());
    assert!(ok && text.contains("upstream OK"), "{text}");
    let (ok, text) = run("wrong-password");
    assert!(!ok && text.contains("credentials"), "{text}");
    assert!(
        !text.contains("wrong-password"),
        "the password is never printed"
    );
}
