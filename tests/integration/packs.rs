//! Small chunks in packs: a tree of small files becomes a few upstream
//! objects and reads back byte for byte; a range read inside a packed
//! file fetches only its entry; a flipped bit in a pack fails only the
//! chunk it lands in; and pack GC gives back the space of deleted files
//! while other files are uploaded and read.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use dedupdav::files::check::{check, render_text, CheckOptions};
use http::Method;

use crate::common::gateway::{text_bytes, Dav, TestGateway};

on_both_backends!(
    many_small_files_become_a_few_packs_and_read_back,
    pack_gc_gives_back_deleted_files_while_others_are_used
);

/// Writers in parallel, as a sync client or `rclone --transfers 8` does.
const PARALLEL: usize = 8;

/// File `i` of a tree: text of 100 B to 6 KB, different for every `i`.
fn small_file(i: usize) -> Vec<u8> {
    text_bytes(100 + (i * 7919) % 6000, i as u64)
}

/// PUTs files `range` (named `d<i/100>/f<i>.txt`) from [`PARALLEL`]
/// writers; every PUT must succeed.
fn put_tree(dav: &Arc<Dav>, range: std::ops::Range<usize>) {
    for d in range.start / 100..range.end.div_ceil(100) {
        let res = dav.mkcol(&format!("d{d}"));
        assert!(res.status() == 201 || res.status() == 405, "MKCOL d{d}");
    }
    parallel(range, |i| {
        let res = dav.put(&format!("d{}/f{i}.txt", i / 100), small_file(i));
        assert!(res.status().is_success(), "PUT f{i}: {}", res.status());
    });
}

/// Reads files `range` back and compares every byte.
fn read_tree(dav: &Arc<Dav>, range: std::ops::Range<usize>) {
    parallel(range, |i| {
        let got = dav.get_bytes(&format!("d{}/f{i}.txt", i / 100));
        assert_eq!(got.as_deref(), Ok(small_file(i).as_slice()), "f{i}");
    });
}

/// Runs `f(i)` for every `i` of `range` on [`PARALLEL`] threads.
fn parallel(range: std::ops::Range<usize>, f: impl Fn(usize) + Sync) {
    let next = std::sync::atomic::AtomicUsize::new(range.start);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= range.end {
                    break;
                }
                f(i);
            });
        }
    });
}

/// One whole repack pass, as the job runs it.
fn repack(gw: &TestGateway) -> dedupdav::store::RepackReport {
    common::wait(async {
        let mut round = gw.store.repack_round();
        while !round.is_done() {
            gw.store.repack_batch(&mut round, 50).await.expect("repack");
        }
        round.report
    })
}

/// `dedupdav check` reading every object: clean.
fn assert_clean(gw: &TestGateway) {
    let options = CheckOptions {
        read_percent: Some(100.0),
    };
    let report = common::wait(check(&gw.meta, &gw.store, options, |_| {}, |_| {})).unwrap();
    assert!(report.clean, "{}", render_text(&report));
}

fn upstream_bytes(gw: &TestGateway) -> u64 {
    gw.object_files()
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum()
}

fn many_small_files_become_a_few_packs_and_read_back(gw: TestGateway) {
    const FILES: usize = 5_000;
    gw.add_user("alice", "pw");
    let dav = Arc::new(gw.client("alice", "pw"));
    put_tree(&dav, 0..FILES);
    // How many files shared a flush depends on timing (a pack goes as soon
    // as every writer waits on it); never more than one object per file.
    let written = gw.object_files().len();
    eprintln!("{written} packs for {FILES} files from {PARALLEL} writers");
    assert!(written <= FILES, "{written} objects for {FILES} files");
    let report = repack(&gw);
    let packs = gw.object_files().len();
    assert!(packs <= 4, "{packs} objects after repacking: {report:?}");
    assert_eq!(gw.stats().files, FILES as u64);
    read_tree(&dav, 0..FILES);
    assert_clean(&gw);
}

fn pack_gc_gives_back_deleted_files_while_others_are_used(gw: TestGateway) {
    const FILES: usize = 1_000;
    gw.add_user("alice", "pw");
    let dav = Arc::new(gw.client("alice", "pw"));
    put_tree(&dav, 0..FILES);
    repack(&gw);
    let before = upstream_bytes(&gw);
    // 90 % deleted: every file whose number does not end in 0.
    parallel(0..FILES, |i| {
        if i % 10 != 0 {
            let path = format!("d{}/f{i}.txt", i / 100);
            let res = dav.request("DELETE", &dav.url(&path)).send().unwrap();
            assert!(res.status().is_success(), "DELETE f{i}");
        }
    });
    gw.collect_garbage(Duration::ZERO);
    // Uploads and reads go on while the packs are rewritten.
    let report = std::thread::scope(|s| {
        let busy = s.spawn(|| {
            put_tree(&dav, FILES..FILES + 200);
            for _ in 0..3 {
                parallel(0..FILES / 10, |k| {
                    let i = k * 10;
                    let got = dav.get_bytes(&format!("d{}/f{i}.txt", i / 100));
                    assert_eq!(got.as_deref(), Ok(small_file(i).as_slice()), "f{i}");
                });
            }
        });
        let report = repack(&gw);
        busy.join().expect("uploads and reads succeed");
        report
    });
    assert!(report.packs_deleted >= 1, "{report:?}");
    let after = upstream_bytes(&gw);
    assert!(
        after * 100 < before * 45,
        "upstream bytes {before} → {after} (with 200 new files): {report:?}"
    );
    parallel(0..FILES / 10, |k| {
        let i = k * 10;
        let got = dav.get_bytes(&format!("d{}/f{i}.txt", i / 100));
        assert_eq!(got.as_deref(), Ok(small_file(i).as_slice()), "f{i}");
    });
    read_tree(&dav, FILES..FILES + 200);
    assert_clean(&gw);
}

/// Where file `path`'s only chunk lies: (pack id, offset, length).
fn packed_at(gw: &TestGateway, path: &str) -> ([u8; 32], u32, u32) {
    let owner = common::wait(gw.meta.user("alice")).unwrap().unwrap();
    let owner = dedupdav::meta::Owner::from(&owner);
    let path = dedupdav::meta::split_path(path.as_bytes()).unwrap();
    let manifest = common::wait(gw.meta.open_file(&owner, &path)).unwrap().1;
    assert_eq!(manifest.len(), 1, "one chunk");
    let rec = common::wait(gw.meta.chunk(&manifest[0].id.0))
        .unwrap()
        .unwrap();
    let at = rec.packed.expect("a small file's chunk lies in a pack");
    (at.pack, at.offset, rec.stored)
}

#[test]
fn a_range_read_inside_a_packed_file_fetches_only_its_bytes() {
    // One value: the gateway, the proxy, then its runtime drop in order.
    let rig = TestGateway::start_behind_proxy(|_| {});
    let (gw, proxy) = (&rig.0, &rig.1);
    gw.add_user("alice", "pw");
    let dav = Arc::new(gw.client("alice", "pw"));
    put_tree(&dav, 0..40);
    repack(gw);
    let (pack, offset, len) = packed_at(gw, "d0/f7.txt");
    let pack_size = common::wait(gw.meta.pack(&pack)).unwrap().unwrap().size;
    assert!(len * 10 < pack_size, "one entry of a bigger pack");
    proxy.reset_seen();
    let res = dav
        .request("GET", &dav.url("d0/f7.txt"))
        .header("Range", "bytes=10-59")
        .send()
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().unwrap().as_ref(), &small_file(7)[10..60]);
    let gets: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == Method::GET)
        .collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    let want = format!("bytes={offset}-{}", offset + len - 1);
    assert_eq!(gets[0].range.as_deref(), Some(want.as_str()));
}

#[test]
fn a_flipped_bit_in_a_pack_fails_only_the_chunk_it_lands_in() {
    let gw = TestGateway::start();
    gw.add_user("alice", "pw");
    let dav = Arc::new(gw.client("alice", "pw"));
    put_tree(&dav, 0..30);
    repack(&gw);
    assert_eq!(gw.object_files().len(), 1, "one pack");
    let (pack, offset, len) = packed_at(&gw, "d0/f12.txt");
    let name = dedupdav::crypto::ObjectName::for_pack(gw.store.keys(), &pack);
    let file = gw.objects_root.join(name.relative_path());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[(offset + len / 2) as usize] ^= 0x04;
    std::fs::write(&file, bytes).unwrap();
    for i in 0..30 {
        let res = dav.get(&format!("d0/f{i}.txt"));
        if i == 12 {
            assert_eq!(res.status(), 502, "the damaged entry's file");
        } else {
            assert_eq!(res.status(), 200, "f{i}");
            assert_eq!(res.bytes().unwrap().as_ref(), small_file(i).as_slice());
        }
    }
}
