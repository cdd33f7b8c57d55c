//! Conformance cases for chunk references and the collector's steps: a
//! commit references its chunks (creating records only for what it
//! uploaded), removal and new versions release them, and the collector
//! forgets only chunks still unreferenced when it looks again.

use std::collections::BTreeSet;

use super::*;
use crate::meta::NsError;

pub(super) async fn commits_reference_chunks_and_removal_releases_them(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    let f = file_of(&[(1, 10), (2, 5), (1, 10)]);
    meta.commit_file(&o, &p("f"), &f).await.unwrap();
    assert_eq!((refs(&meta, 1).await, refs(&meta, 2).await), (2, 1));
    assert_eq!(meta.chunk_references().await.unwrap(), 3);
    let one = meta.chunk(&[1; 32]).await.unwrap().unwrap();
    assert_eq!((one.stored, one.unreferenced_since), (sealed(10), 0));
    meta.commit_file(&o, &p("g"), &stored(file(10, 1)))
        .await
        .unwrap();
    assert_eq!(refs(&meta, 1).await, 3);
    meta.rename(&o, &p("g"), &p("h")).await.unwrap();
    assert_eq!(meta.chunk_references().await.unwrap(), 4);
    meta.remove(&o, &p("f")).await.unwrap();
    assert_eq!((refs(&meta, 1).await, refs(&meta, 2).await), (1, 0));
    let two = meta.chunk(&[2; 32]).await.unwrap().unwrap();
    assert!(
        two.unreferenced_since > 0,
        "released, kept for the collector"
    );
    assert!(meta.chunk_known(&[2; 32]).await.unwrap());
    assert_eq!(
        meta.chunk(&[1; 32])
            .await
            .unwrap()
            .unwrap()
            .unreferenced_since,
        0
    );
    meta.remove(&o, &p("h")).await.unwrap();
    assert_eq!(meta.chunk_references().await.unwrap(), 0);
    assert!(meta.chunk(&[9; 32]).await.unwrap().is_none());
}

pub(super) async fn a_commit_needs_its_chunks_stored(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    let unknown = meta.commit_file(&o, &p("f"), &stored(file(5, 9))).await;
    assert_err!(unknown, NsError::MissingChunk(id) if id == chunk(9));
    // One chunk missing fails the whole commit.
    let mut half = file_of(&[(1, 3), (2, 3)]);
    half.uploaded.truncate(1);
    assert_err!(meta.commit_file(&o, &p("f"), &half).await, NsError::MissingChunk(id) if id == chunk(2));
    assert!(!meta.chunk_known(&[1; 32]).await.unwrap());
    assert_err!(meta.lookup(&o, &p("f")).await, NsError::NotFound);
    // A released chunk not yet collected is referenced again.
    meta.commit_file(&o, &p("f"), &file(4, 3)).await.unwrap();
    meta.remove(&o, &p("f")).await.unwrap();
    meta.commit_file(&o, &p("g"), &stored(file(4, 3)))
        .await
        .unwrap();
    let revived = meta.chunk(&[3; 32]).await.unwrap().unwrap();
    assert_eq!((revived.refs, revived.unreferenced_since), (1, 0));
    // A collected chunk is gone: referencing it needs an upload again.
    meta.commit_file(&o, &p("h"), &file(4, 4)).await.unwrap();
    meta.remove(&o, &p("h")).await.unwrap();
    let dropped = meta.forget_chunks(&[[4; 32]], LATER).await.unwrap();
    assert_eq!(dropped, [([4; 32], sealed(4))]);
    let gone = meta.commit_file(&o, &p("h"), &stored(file(4, 4))).await;
    assert_err!(gone, NsError::MissingChunk(_));
    meta.commit_file(&o, &p("h"), &file(4, 4)).await.unwrap();
    assert_eq!(refs(&meta, 4).await, 1);
}

pub(super) async fn copies_and_new_versions_move_references(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    meta.commit_file(&o, &p("f"), &file_of(&[(1, 4), (2, 4)]))
        .await
        .unwrap();
    meta.copy_file(&o, &p("f"), &p("c")).await.unwrap();
    assert_eq!((refs(&meta, 1).await, refs(&meta, 2).await), (2, 2));
    assert_eq!(meta.chunk_references().await.unwrap(), 4);
    meta.commit_file(&o, &p("f"), &file(4, 3)).await.unwrap();
    assert_eq!((refs(&meta, 1).await, refs(&meta, 3).await), (1, 1));
    meta.copy_file(&o, &p("f"), &p("c")).await.unwrap();
    assert_eq!((refs(&meta, 1).await, refs(&meta, 2).await), (0, 0));
    assert_eq!(refs(&meta, 3).await, 2);
    // A copy onto itself keeps one reference per entry.
    meta.copy_file(&o, &p("f"), &p("f")).await.unwrap();
    assert_eq!(refs(&meta, 3).await, 2);
    // Session parts hold references too.
    meta.create_session(&o, "t", None).await.unwrap();
    let part = NewPart {
        uploaded: Vec::new(),
        ..part_of(&[(3, 4)])
    };
    meta.add_part(&o, "t", "0", &part).await.unwrap();
    assert_eq!(meta.chunk_references().await.unwrap(), 3);
}

pub(super) async fn unreferenced_chunks_respect_cutoff_and_limit(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    for n in 1..=4u8 {
        meta.commit_file(&o, &p(&format!("f{n}")), &file(2, n))
            .await
            .unwrap();
    }
    for n in 1..=3u8 {
        meta.remove(&o, &p(&format!("f{n}"))).await.unwrap();
    }
    assert!(meta.unreferenced_chunks(0, 10).await.unwrap().is_empty());
    let all: BTreeSet<[u8; 32]> = meta
        .unreferenced_chunks(LATER, 10)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(all, BTreeSet::from([[1; 32], [2; 32], [3; 32]]));
    let some = meta.unreferenced_chunks(LATER, 2).await.unwrap();
    assert_eq!(some.len(), 2);
    assert!(some.iter().all(|id| all.contains(id)));
    // The cutoff is the time of release, to the second.
    let since = meta
        .chunk(&[1; 32])
        .await
        .unwrap()
        .unwrap()
        .unreferenced_since;
    let at = meta.unreferenced_chunks(since, 10).await.unwrap();
    assert!(at.contains(&[1; 32]));
    assert!(!meta
        .unreferenced_chunks(since - 1, 10)
        .await
        .unwrap()
        .contains(&[1; 32]));
}

pub(super) async fn forget_chunks_keeps_what_was_referenced_again(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    for n in 1..=3u8 {
        let name = format!("f{n}");
        meta.commit_file(&o, &p(&name), &file(n as u32, n))
            .await
            .unwrap();
        meta.remove(&o, &p(&name)).await.unwrap();
    }
    let candidates = meta.unreferenced_chunks(LATER, 10).await.unwrap();
    assert_eq!(candidates.len(), 3);
    // Between the listing and the forgetting, an upload references 2.
    meta.commit_file(&o, &p("k"), &stored(file(2, 2)))
        .await
        .unwrap();
    // A cutoff before the releases forgets nothing.
    assert!(meta.forget_chunks(&candidates, 0).await.unwrap().is_empty());
    let mut dropped = meta.forget_chunks(&candidates, LATER).await.unwrap();
    dropped.sort();
    assert_eq!(dropped, [([1; 32], sealed(1)), ([3; 32], sealed(3))]);
    assert!(!meta.chunk_known(&[1; 32]).await.unwrap());
    assert!(!meta.chunk_known(&[3; 32]).await.unwrap());
    assert_eq!(refs(&meta, 2).await, 1);
    assert_eq!(meta.stats().await.unwrap().stored_bytes, sealed(2) as u64);
    assert!(meta
        .forget_chunks(&candidates, LATER)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(meta.open_file(&o, &p("k")).await.unwrap().1.len(), 1);
}

pub(super) async fn stats_count_files_bytes_and_chunks(meta: Meta) {
    let empty = meta.stats().await.unwrap();
    assert_eq!((empty.users, empty.files, empty.chunks), (0, 0, 0));
    let ann = user(&meta, "ann", None).await;
    let bob = user(&meta, "bob", None).await;
    meta.commit_file(&ann, &p("f"), &file_of(&[(1, 10), (2, 20)]))
        .await
        .unwrap();
    meta.commit_file(&bob, &p("g"), &file(10, 1)).await.unwrap();
    meta.copy_file(&ann, &p("f"), &p("f2")).await.unwrap();
    meta.mkdir(&ann, &p("d")).await.unwrap();
    let s = meta.stats().await.unwrap();
    assert_eq!((s.users, s.files, s.logical_bytes), (2, 3, 70));
    let both = (sealed(10) + sealed(20)) as u64;
    assert_eq!((s.chunks, s.stored_bytes), (2, both), "each chunk once");
    assert_eq!((s.pending_objects, s.pending_bytes), (0, 0));
    meta.remove(&ann, &p("f")).await.unwrap();
    meta.remove(&ann, &p("f2")).await.unwrap();
    let s = meta.stats().await.unwrap();
    assert_eq!((s.files, s.logical_bytes), (1, 10));
    assert_eq!(
        (s.chunks, s.stored_bytes),
        (2, both),
        "kept until collected"
    );
    meta.forget_chunks(&[[2; 32]], LATER).await.unwrap();
    let s = meta.stats().await.unwrap();
    assert_eq!((s.chunks, s.stored_bytes), (1, sealed(10) as u64));
}
