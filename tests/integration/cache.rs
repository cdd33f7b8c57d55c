//! The local object cache in front of a real Apache upstream, seen through
//! the fault proxy that records every request the gateway sends: a file
//! another user already stored is downloaded without an upstream GET,
//! small files read again (even after a restart) cost none, and damaged
//! cache entries are refetched while every read stays correct; the scrub
//! judges the upstream's objects, not the cache's copies.

use std::path::PathBuf;

use dedupdav::backend::metrics::Lookup;
use http::Method;

use crate::common::faultproxy::FaultProxy;
use crate::common::gateway::{files_below, random_bytes, text_bytes, Dav, TestGateway};

/// A gateway with the cache on, reaching Apache through a recording proxy.
/// (Fields drop in order: the gateway before the proxy and its runtime.)
struct Cached {
    gw: TestGateway,
    proxy: FaultProxy,
    _rt: tokio::runtime::Runtime,
}

impl Cached {
    fn start() -> Self {
        Self::start_with(|_| {})
    }

    fn start_with(tweak: impl FnOnce(&mut dedupdav::config::Config)) -> Self {
        let (gw, proxy, rt) = TestGateway::start_behind_proxy(|c| {
            c.cache.dir = Some(c.data_dir.join("cache"));
            tweak(c);
        });
        Self { gw, proxy, _rt: rt }
    }

    fn cache_dir(&self) -> PathBuf {
        self.gw.data.path().join("cache")
    }

    /// Object GETs (whole or ranged) sent upstream since the last reset.
    fn upstream_gets(&self) -> usize {
        self.proxy.count(&Method::GET)
    }

    fn lookups(&self, outcome: Lookup) -> u64 {
        let backend = self.gw.store.backend();
        backend.cache_metrics().expect("cache on").lookups(outcome)
    }
}

/// Small file `i`: text of 200 B to 9 KB, different for every `i`.
fn small_file(i: usize) -> Vec<u8> {
    text_bytes(200 + (i * 7919) % 9000, i as u64)
}

fn put_small_files(dav: &Dav, n: usize) {
    assert_eq!(dav.mkcol("small").status(), 201);
    for i in 0..n {
        let res = dav.put(&format!("small/f{i}.txt"), small_file(i));
        assert!(res.status().is_success(), "PUT f{i}: {}", res.status());
    }
}

fn read_small_files(dav: &Dav, n: usize) {
    for i in 0..n {
        let got = dav.get_bytes(&format!("small/f{i}.txt"));
        assert_eq!(got.as_deref(), Ok(small_file(i).as_slice()), "f{i}");
    }
}

#[test]
fn a_file_another_user_stored_is_downloaded_without_an_upstream_get() {
    let c = Cached::start();
    c.gw.add_user("alice", "pw-a");
    c.gw.add_user("bob", "pw-b");
    let alice = c.gw.client("alice", "pw-a");
    let bob = c.gw.client("bob", "pw-b");
    // Several chunks, single objects and a packed tail among them.
    let body = random_bytes(5 << 20, 12);
    assert!(alice.put("video.bin", body.clone()).status().is_success());
    let before = c.proxy.seen().len();
    assert!(bob.put("copy.bin", body.clone()).status().is_success());
    let object_puts = c
        .proxy
        .seen()
        .into_iter()
        .skip(before)
        .filter(|s| s.method == Method::PUT && s.path.contains("/objects/"))
        .count();
    assert_eq!(object_puts, 0, "bob's upload is deduplicated");

    c.proxy.reset_seen();
    assert_eq!(bob.get_bytes("copy.bin").as_deref(), Ok(body.as_slice()));
    assert_eq!(alice.get_bytes("video.bin").as_deref(), Ok(body.as_slice()));
    assert_eq!(c.upstream_gets(), 0, "{:?}", c.proxy.seen());
    assert!(c.lookups(Lookup::Hit) >= 2, "served by the cache");
    assert_eq!(c.lookups(Lookup::Miss), 0);
}

#[test]
fn small_files_read_again_cost_no_upstream_request_even_after_a_restart() {
    const FILES: usize = 40;
    let c = Cached::start();
    c.gw.add_user("alice", "pw");
    let dav = c.gw.client("alice", "pw");
    put_small_files(&dav, FILES);
    c.proxy.reset_seen();
    read_small_files(&dav, FILES);
    read_small_files(&dav, FILES);
    assert_eq!(c.upstream_gets(), 0, "{:?}", c.proxy.seen());
    assert!(c.lookups(Lookup::Hit) >= 2 * FILES as u64);

    // The index is rebuilt from the cache's directory.
    let Cached { gw, proxy, _rt } = c;
    let c = Cached {
        gw: gw.stop().restart(),
        proxy,
        _rt,
    };
    let dav = c.gw.client("alice", "pw");
    c.proxy.reset_seen();
    read_small_files(&dav, FILES);
    assert_eq!(c.upstream_gets(), 0, "{:?}", c.proxy.seen());
    assert!(c.lookups(Lookup::Hit) >= FILES as u64);
    assert_eq!(c.lookups(Lookup::Miss), 0);
    // The same figures, as /metrics shows them.
    let text = c.gw.gateway.metrics().render(None);
    let hits = format!(
        "dedupdav_object_cache_lookups_total{{outcome=\"hit\"}} {}",
        c.lookups(Lookup::Hit)
    );
    assert!(text.contains(&hits), "{text}");
    assert!(
        text.contains("dedupdav_object_cache_stored_bytes "),
        "{text}"
    );
}

#[test]
fn damaged_cache_entries_are_refetched_and_every_read_stays_correct() {
    const FILES: usize = 20;
    let c = Cached::start();
    c.gw.add_user("alice", "pw");
    let dav = c.gw.client("alice", "pw");
    put_small_files(&dav, FILES);
    let big = random_bytes(3 << 20, 7);
    assert!(dav.put("big.bin", big.clone()).status().is_success());
    let entries = files_below(&c.cache_dir().join("objects"));
    assert!(entries.len() >= 2, "packs and chunks cached: {entries:?}");
    for entry in &entries {
        let mut bytes = std::fs::read(entry).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
        std::fs::write(entry, bytes).unwrap();
    }

    c.proxy.reset_seen();
    read_small_files(&dav, FILES);
    assert_eq!(dav.get_bytes("big.bin").as_deref(), Ok(big.as_slice()));
    assert_eq!(c.lookups(Lookup::Damaged), entries.len() as u64);
    assert_eq!(
        c.upstream_gets(),
        entries.len(),
        "each damaged entry refetched once"
    );

    // Healed: the refetched objects are cached again, sound.
    c.proxy.reset_seen();
    read_small_files(&dav, FILES);
    assert_eq!(dav.get_bytes("big.bin").as_deref(), Ok(big.as_slice()));
    assert_eq!(c.upstream_gets(), 0, "{:?}", c.proxy.seen());
    assert_eq!(c.lookups(Lookup::Damaged), entries.len() as u64);
    for entry in &entries {
        assert!(entry.exists(), "{} refilled", entry.display());
    }
}

#[test]
fn the_scrub_judges_the_upstream_copy_not_the_cached_one() {
    let c = Cached::start_with(crate::common::small_chunks);
    c.gw.add_user("alice", "pw");
    let dav = c.gw.client("alice", "pw");
    let body = random_bytes(1 << 20, 3);
    assert!(dav.put("a.bin", body.clone()).status().is_success());
    let owner = crate::common::wait(c.gw.meta.user("alice"))
        .unwrap()
        .unwrap();
    let owner = dedupdav::meta::Owner::from(&owner);
    let path = dedupdav::meta::split_path(b"a.bin").unwrap();
    let manifest = crate::common::wait(c.gw.meta.open_file(&owner, &path))
        .unwrap()
        .1;
    let damaged = manifest[1].id;
    let name = c.gw.store.object_name(&damaged).to_string();
    let upstream = c.gw.objects_dir().join(&name[..2]).join(&name);
    let mut bytes = std::fs::read(&upstream).unwrap();
    bytes[100] ^= 0x01;
    std::fs::write(&upstream, bytes).unwrap();

    // Reads are served by the cache's sound copy...
    assert_eq!(dav.get_bytes("a.bin").as_deref(), Ok(body.as_slice()));
    // ...and the scrub reads every object from the upstream, past it.
    c.proxy.reset_seen();
    let config = dedupdav::config::ScrubConfig {
        interval_hours: 1,
        interval_seconds: None,
        bytes_per_second: 0,
        tranquility: 0,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use dedupdav::jobs::Job;
        let job = dedupdav::jobs::scrub::ScrubJob::from_config(
            c.gw.store.clone(),
            c.gw.meta.clone(),
            &config,
        )
        .await;
        let mut job = job.expect("scrub state").expect("a scrub");
        while job.step().await.expect("scrub batch").more {}
    });
    assert_eq!(c.upstream_gets(), manifest.len(), "one GET per object");
    let findings = crate::common::wait(c.gw.meta.scrub_findings(100)).unwrap();
    let found: Vec<_> = findings.iter().map(|f| (f.id, f.problem)).collect();
    assert_eq!(found, [(damaged.0, dedupdav::meta::ScrubProblem::Corrupt)]);
}
