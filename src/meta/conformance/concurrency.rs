//! Conformance cases for concurrent writers: tasks on a multi-thread
//! runtime commit, replace, rename and collect at once. Each operation
//! succeeds or fails cleanly, and the end state is what some serial order
//! would give: no lost file, no lost update of `used`, reference counts
//! equal to what the manifests hold, and no manifest naming a chunk the
//! metadata has forgotten.

use std::collections::BTreeSet;

use tokio::task::JoinHandle;

use super::*;
use crate::meta::NsError;

const WRITERS: u8 = 8;
const FILES_EACH: u8 = 10;

/// Waits for every task; a panic in one fails the case.
async fn join_all<T>(tasks: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.expect("a writer task panicked"));
    }
    out
}

/// The size of writer `w`'s file `f` in the one-folder case: a shared
/// chunk of one byte and its own chunk.
fn own_len(w: u8, f: u8) -> u32 {
    (w as u32 + 1) * 3 + f as u32
}

fn own_chunk(w: u8, f: u8) -> u8 {
    1 + w * FILES_EACH + f
}

/// One writer: commits its files into `shared`, then moves the even ones
/// into a folder of its own.
async fn fill_shared(meta: Meta, o: Owner, w: u8) {
    let sub = format!("shared/sub{w}");
    meta.mkdir(&o, &p(&sub)).await.unwrap();
    for f in 0..FILES_EACH {
        let name = format!("shared/w{w}-{f}");
        let commit = file_of(&[(200, 1), (own_chunk(w, f), own_len(w, f))]);
        meta.commit_file(&o, &p(&name), &commit).await.unwrap();
        if f % 2 == 0 {
            let to = format!("{sub}/w{w}-{f}");
            meta.rename(&o, &p(&name), &p(&to)).await.unwrap();
        }
    }
}

pub(super) async fn writers_into_one_folder_lose_nothing(meta: Meta) {
    let o = user(&meta, "ann", Some(1 << 30)).await;
    meta.mkdir(&o, &p("shared")).await.unwrap();
    let tasks = (0..WRITERS)
        .map(|w| tokio::spawn(fill_shared(meta.clone(), o.clone(), w)))
        .collect();
    join_all(tasks).await;
    let mut expected_top = BTreeSet::new();
    let mut total = 0u64;
    let mut stored_bytes = sealed(1) as u64;
    for w in 0..WRITERS {
        expected_top.insert(format!("sub{w}"));
        let listed = names(&meta.list(&o, &p(&format!("shared/sub{w}"))).await.unwrap());
        let even: Vec<String> = (0..FILES_EACH)
            .step_by(2)
            .map(|f| format!("w{w}-{f}"))
            .collect();
        assert_eq!(listed, even);
        for f in 0..FILES_EACH {
            if f % 2 == 1 {
                expected_top.insert(format!("w{w}-{f}"));
            }
            total += 1 + own_len(w, f) as u64;
            stored_bytes += sealed(own_len(w, f)) as u64;
        }
    }
    let top = names(&meta.list(&o, &p("shared")).await.unwrap());
    assert_eq!(top, expected_top.into_iter().collect::<Vec<_>>());
    let files = (WRITERS as u64) * (FILES_EACH as u64);
    assert_eq!(used(&meta, &o).await, total, "no lost update of used");
    assert_eq!(meta.lookup(&o, &p("shared")).await.unwrap().size, total);
    assert_eq!(meta.chunk_references().await.unwrap(), 2 * files);
    assert_eq!(refs(&meta, 200).await, files);
    let s = meta.stats().await.unwrap();
    assert_eq!(
        (s.files, s.logical_bytes, s.stored_bytes),
        (files, total, stored_bytes)
    );
}

pub(super) async fn writers_of_one_file_leave_one_version(meta: Meta) {
    let o = user(&meta, "ann", Some(1 << 20)).await;
    let tasks = (0..WRITERS)
        .map(|w| {
            let (meta, o) = (meta.clone(), o.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for f in 0..FILES_EACH {
                    let commit = file(own_len(w, f), own_chunk(w, f));
                    seen.push(meta.commit_file(&o, &p("f"), &commit).await.unwrap().0);
                }
                seen
            })
        })
        .collect();
    let nodes: Vec<Node> = join_all(tasks).await.into_iter().flatten().collect();
    let ids: BTreeSet<u64> = nodes.iter().map(|n| n.id).collect();
    assert_eq!(ids.len(), 1, "one file, whoever created it");
    let etags: BTreeSet<String> = nodes.iter().map(|n| n.etag()).collect();
    assert_eq!(etags.len(), nodes.len(), "every version has its own etag");
    let (last, manifest) = meta.open_file(&o, &p("f")).await.unwrap();
    let answered = nodes.iter().find(|n| n.etag() == last.etag());
    let answered = answered.expect("the final version is one a commit answered");
    assert_eq!((answered.size, answered.digest), (last.size, last.digest));
    assert_eq!(manifest.len(), 1);
    assert_eq!(meta.chunk_references().await.unwrap(), 1);
    assert_eq!(refs(&meta, manifest[0].id.0[0]).await, 1);
    assert_eq!(used(&meta, &o).await, last.size, "no lost update of used");
    assert_eq!(meta.lookup(&o, &[]).await.unwrap().size, last.size);
    assert_eq!(meta.stats().await.unwrap().files, 1);
}

pub(super) async fn racing_commits_never_exceed_the_quota(meta: Meta) {
    let o = user(&meta, "ann", Some(100)).await;
    let tasks = (0..WRITERS)
        .map(|w| {
            let (meta, o) = (meta.clone(), o.clone());
            tokio::spawn(async move {
                let name = format!("f{w}");
                meta.commit_file(&o, &p(&name), &file(20, w + 1)).await
            })
        })
        .collect();
    let mut committed = 0;
    for result in join_all(tasks).await {
        match result {
            Ok(_) => committed += 1,
            Err(NsError::QuotaExceeded { needed: 20, .. }) => {}
            Err(other) => panic!("a racing commit failed uncleanly: {other:?}"),
        }
    }
    assert_eq!(committed, 5);
    assert_eq!(used(&meta, &o).await, 100);
    assert_eq!(meta.list(&o, &[]).await.unwrap().len(), 5);
    assert_eq!(meta.chunk_references().await.unwrap(), 5);
    assert_eq!(meta.stats().await.unwrap().files, 5);
}

/// One mover: toggles files between `a` and `b`, colliding with others.
async fn shuffle(meta: Meta, o: Owner, w: u8) {
    for round in 0..24u8 {
        let k = (w + round) % WRITERS;
        let (from, to) = if round % 2 == 0 {
            ("a", "b")
        } else {
            ("b", "a")
        };
        let result = meta
            .rename(&o, &p(&format!("{from}/f{k}")), &p(&format!("{to}/f{k}")))
            .await;
        match result {
            Ok(node) => assert!(!node.is_dir()),
            Err(NsError::NotFound) => {}
            Err(other) => panic!("a racing rename failed uncleanly: {other:?}"),
        }
    }
}

pub(super) async fn racing_renames_keep_every_file_once(meta: Meta) {
    let o = user(&meta, "ann", Some(10_000)).await;
    meta.mkdir(&o, &p("a")).await.unwrap();
    meta.mkdir(&o, &p("b")).await.unwrap();
    let mut ids = BTreeSet::new();
    for k in 0..WRITERS {
        let (node, _) = meta
            .commit_file(&o, &p(&format!("a/f{k}")), &file(k as u32 + 1, k + 1))
            .await
            .unwrap();
        ids.insert((format!("f{k}"), node.id));
    }
    let tasks = (0..WRITERS)
        .map(|w| tokio::spawn(shuffle(meta.clone(), o.clone(), w)))
        .collect();
    join_all(tasks).await;
    let mut found = BTreeSet::new();
    let mut sizes = 0;
    for folder in ["a", "b"] {
        for (name, node) in meta.list(&o, &p(folder)).await.unwrap() {
            assert!(found.insert((name, node.id)), "listed twice");
        }
        sizes += meta.lookup(&o, &p(folder)).await.unwrap().size;
    }
    assert_eq!(found, ids, "every file once, with its id");
    let total: u64 = (1..=WRITERS as u64).sum();
    assert_eq!((sizes, used(&meta, &o).await), (total, total));
    assert_eq!(meta.chunk_references().await.unwrap(), WRITERS as u64);
}

/// The collector: lists candidates and forgets them, a few at a time,
/// until none is left.
async fn collect_all(meta: Meta) -> usize {
    let mut forgotten = 0;
    loop {
        let candidates = meta.unreferenced_chunks(LATER, 3).await.unwrap();
        if candidates.is_empty() {
            return forgotten;
        }
        tokio::task::yield_now().await;
        forgotten += meta.forget_chunks(&candidates, LATER).await.unwrap().len();
    }
}

pub(super) async fn collection_racing_commits_never_dangles(meta: Meta) {
    const CHUNKS: u8 = 64;
    let o = user(&meta, "ann", None).await;
    for n in 1..=CHUNKS {
        meta.commit_file(&o, &p("seed"), &file(5, n)).await.unwrap();
    }
    meta.remove(&o, &p("seed")).await.unwrap();
    let collector = tokio::spawn(collect_all(meta.clone()));
    let writers = (0..WRITERS)
        .map(|w| {
            let (meta, o) = (meta.clone(), o.clone());
            tokio::spawn(async move {
                let mut outcome = Vec::new();
                for n in (1..=CHUNKS).filter(|n| n % WRITERS == w) {
                    let path = p(&format!("f{n}"));
                    let result = meta.commit_file(&o, &path, &stored(file(5, n))).await;
                    match result {
                        Ok(_) => outcome.push((n, true)),
                        Err(NsError::MissingChunk(id)) if id == chunk(n) => {
                            outcome.push((n, false))
                        }
                        Err(other) => panic!("a commit racing the collector: {other:?}"),
                    }
                }
                outcome
            })
        })
        .collect();
    let outcomes: Vec<(u8, bool)> = join_all(writers).await.into_iter().flatten().collect();
    let forgotten = collector.await.expect("the collector panicked");
    let kept = outcomes.iter().filter(|(_, ok)| *ok).count();
    assert_eq!(outcomes.len(), CHUNKS as usize);
    for (n, ok) in outcomes {
        let record = meta.chunk(&[n; 32]).await.unwrap();
        if ok {
            let record = record.unwrap_or_else(|| panic!("file f{n} names a forgotten chunk"));
            assert_eq!((record.refs, record.unreferenced_since), (1, 0));
            let (_, manifest) = meta.open_file(&o, &p(&format!("f{n}"))).await.unwrap();
            assert_eq!(manifest[0].id, chunk(n));
        } else {
            assert!(record.is_none(), "chunk {n} refused yet kept");
            assert_err!(
                meta.lookup(&o, &p(&format!("f{n}"))).await,
                NsError::NotFound
            );
        }
    }
    // Each chunk was either taken by its commit or forgotten, never both.
    assert_eq!(forgotten + kept, CHUNKS as usize);
    assert_eq!(meta.chunk_references().await.unwrap(), kept as u64);
    assert_eq!(meta.stats().await.unwrap().files, kept as u64);
    assert!(meta
        .unreferenced_chunks(LATER, 100)
        .await
        .unwrap()
        .is_empty());
}

/// Writers racing for an exclusive lock on one file, and for deep locks on
/// the folder above it: exactly one lock is granted, whatever the order,
/// because each grant checks and records in one transaction.
pub(super) async fn racing_locks_grant_one(meta: Meta) {
    use crate::meta::{LockError, LockRecord};
    let o = user(&meta, "ann", None).await;
    let now = 1_700_000_000_000;
    let tasks: Vec<JoinHandle<Result<LockRecord, LockError>>> = (0..WRITERS)
        .map(|w| {
            let (meta, o) = (meta.clone(), o.clone());
            tokio::spawn(async move {
                let deep = w % 2 == 1;
                let wanted = LockRecord {
                    token: format!("urn:uuid:{w}"),
                    user: o.id,
                    path: p(if deep { "d" } else { "d/f" }),
                    deep,
                    shared: false,
                    principal: Some(o.name.clone()),
                    owner_xml: None,
                    timeout_secs: 60,
                    deadline_ms: now + 60_000,
                };
                meta.lock_acquire(&wanted, now, 100).await
            })
        })
        .collect();
    let results = join_all(tasks).await;
    let granted: Vec<&LockRecord> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(granted.len(), 1, "{results:?}");
    for r in &results {
        assert!(matches!(r, Ok(_) | Err(LockError::Conflict(_))), "{r:?}");
    }
    let held = meta.locks_within(o.id, &p(""), now).await.unwrap();
    assert_eq!(held, vec![granted[0].clone()]);
}
