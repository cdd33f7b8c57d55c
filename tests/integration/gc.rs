//! Garbage collection: deleted data leaves the backend after the grace
//! period, data still (or again) referenced never does, and nothing a file
//! references is ever deleted (invariant 3).

use std::time::Duration;

use crate::common::gateway::{random_bytes, upload_in_background, TestGateway};

const MIB: usize = 1 << 20;

on_both_backends!(
    deleted_data_leaves_after_the_grace_period,
    revived_and_reuploaded_chunks_stay_readable
);

fn object_bytes(gw: &TestGateway) -> u64 {
    gw.object_files()
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum()
}

fn deleted_data_leaves_after_the_grace_period(gw: TestGateway) {
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let gone = random_bytes(3 * MIB, 1);
    let kept = random_bytes(3 * MIB, 2);
    assert_eq!(alice.put("gone.bin", gone).status(), 201);
    assert_eq!(alice.put("kept.bin", kept.clone()).status(), 201);
    let objects_before = gw.object_files().len();
    assert_eq!(
        alice
            .request("DELETE", &alice.url("gone.bin"))
            .send()
            .unwrap()
            .status(),
        204
    );

    // Within the grace period nothing goes.
    let r = gw.collect_garbage(Duration::from_secs(3600));
    assert_eq!(r.deleted, 0);
    assert_eq!(gw.object_files().len(), objects_before);

    let r = gw.collect_garbage(Duration::ZERO);
    assert!(r.deleted > 0 && r.bytes_freed > 0, "{r:?}");
    assert_eq!(r.delete_failures, 0);
    let stats = gw.stats();
    assert_eq!(
        gw.object_files().len() as u64,
        stats.chunks,
        "one object per chunk left"
    );
    assert_eq!(
        object_bytes(&gw),
        stats.stored_bytes,
        "stored bytes match the backend"
    );
    assert_eq!(alice.get_bytes("kept.bin").unwrap(), kept);
    // Nothing left to collect.
    assert_eq!(gw.collect_garbage(Duration::ZERO).deleted, 0);
}

fn revived_and_reuploaded_chunks_stay_readable(gw: TestGateway) {
    gw.add_user("alice", "pw");
    gw.add_user("bob", "pw");
    let alice = gw.client("alice", "pw");
    let bob = gw.client("bob", "pw");
    let data = random_bytes(3 * MIB, 3);
    assert_eq!(alice.put("a.bin", data.clone()).status(), 201);
    assert_eq!(
        alice
            .request("DELETE", &alice.url("a.bin"))
            .send()
            .unwrap()
            .status(),
        204
    );
    // Bob uploads the same bytes before the collector runs: revived.
    assert_eq!(bob.put("b.bin", data.clone()).status(), 201);
    assert_eq!(gw.collect_garbage(Duration::ZERO).deleted, 0);
    assert_eq!(bob.get_bytes("b.bin").unwrap(), data);

    // Deleted and collected, then uploaded again: stored anew.
    assert_eq!(
        bob.request("DELETE", &bob.url("b.bin"))
            .send()
            .unwrap()
            .status(),
        204
    );
    assert!(gw.collect_garbage(Duration::ZERO).deleted > 0);
    assert_eq!(gw.object_files().len(), 0);
    assert_eq!(alice.put("again.bin", data.clone()).status(), 201);
    assert_eq!(alice.get_bytes("again.bin").unwrap(), data);
    assert_eq!(object_bytes(&gw), gw.stats().stored_bytes);
}

/// Uploads racing the collector on the same chunks: every acknowledged file
/// reads back whole, however the two interleave.
#[test]
fn uploads_racing_the_collector_never_lose_chunks() {
    let gw = TestGateway::start();
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let data: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(2 * MIB, 40 + i)).collect();
    for round in 0..6 {
        for (i, d) in data.iter().enumerate() {
            assert_eq!(
                alice.put(&format!("f{i}"), d.clone()).status().as_u16() / 100,
                2
            );
        }
        for i in 0..data.len() {
            alice
                .request("DELETE", &alice.url(&format!("f{i}")))
                .send()
                .unwrap();
        }
        // Re-upload while the collector deletes the same chunks.
        let uploader = upload_in_background(&gw.base, "alice", "pw", &format!("g{round}-"), &data);
        gw.collect_garbage(Duration::ZERO);
        uploader.join().unwrap();
        for (i, d) in data.iter().enumerate() {
            assert_eq!(
                &alice.get_bytes(&format!("g{round}-{i}")).unwrap(),
                d,
                "round {round}"
            );
            alice
                .request("DELETE", &alice.url(&format!("g{round}-{i}")))
                .send()
                .unwrap();
        }
    }
}
