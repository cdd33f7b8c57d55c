//! Conformance cases for pending records: the metadata's account of
//! objects put for uploads that have not committed, their expiry, and the
//! hand-over to chunk records when a commit references the chunk.

use super::*;
use crate::meta::{ExpiredPending, NsError, PendingRecord};

pub(super) async fn pending_records_expire_and_are_forgotten(meta: Meta) {
    let entries = [([1; 32], 100), ([2; 32], 200), ([3; 32], 300)];
    meta.add_pending(&entries, 50).await.unwrap();
    assert_eq!(meta.pending_totals().await.unwrap(), (3, 600));
    let s = meta.stats().await.unwrap();
    assert_eq!((s.pending_objects, s.pending_bytes, s.chunks), (3, 600, 0));
    // A pending record never makes a chunk known: its object may not exist.
    assert!(!meta.chunk_known(&[1; 32]).await.unwrap());
    // Written again earlier: the later time stays.
    meta.add_pending(&[([1; 32], 100)], 40).await.unwrap();
    let one = meta.pending(&[1; 32]).await.unwrap();
    assert_eq!(
        one,
        Some(PendingRecord {
            since: 50,
            stored: 100
        })
    );
    // Abandoned later: the grace period starts over, with the exact size.
    let abandoned = [([2; 32], Some(150)), ([9; 32], None)];
    assert_eq!(meta.abandon_pending(&abandoned, 80).await.unwrap(), 1);
    assert_eq!(
        meta.abandon_pending(&[([9; 32], None)], 90).await.unwrap(),
        0
    );
    let mut expired = meta.expired_pending(60, 10).await.unwrap();
    expired.sort();
    assert_eq!(expired, [[1; 32], [3; 32]]);
    assert_eq!(meta.expired_pending(60, 1).await.unwrap().len(), 1);
    assert!(meta.expired_pending(49, 10).await.unwrap().is_empty());
    // Forgetting re-checks: record 2 is not expired at 60.
    let mut gone = meta.forget_pending(&[[1; 32], [2; 32]], 60).await.unwrap();
    gone.sort_by_key(|g| g.id);
    let expected = ExpiredPending {
        id: [1; 32],
        stored: 100,
        delete_object: true,
    };
    assert_eq!(gone, [expected]);
    assert_eq!(meta.pending(&[1; 32]).await.unwrap(), None);
    let two = meta.pending(&[2; 32]).await.unwrap();
    assert_eq!(
        two,
        Some(PendingRecord {
            since: 80,
            stored: 150
        })
    );
    assert_eq!(meta.pending_totals().await.unwrap(), (2, 450));
    assert!(meta
        .forget_pending(&[[1; 32]], 60)
        .await
        .unwrap()
        .is_empty());
}

pub(super) async fn pending_records_yield_to_chunk_records(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    // An upload commits chunk 5; another one put the same object again.
    meta.commit_file(&o, &p("f"), &file(8, 5)).await.unwrap();
    meta.add_pending(&[([5; 32], sealed(8)), ([6; 32], 30)], 10)
        .await
        .unwrap();
    let mut gone = meta.forget_pending(&[[5; 32], [6; 32]], 10).await.unwrap();
    gone.sort_by_key(|g| g.id);
    let keep = ExpiredPending {
        id: [5; 32],
        stored: sealed(8),
        delete_object: false,
    };
    let delete = ExpiredPending {
        id: [6; 32],
        stored: 30,
        delete_object: true,
    };
    assert_eq!(gone, [keep, delete]);
    assert_eq!(meta.pending_totals().await.unwrap(), (0, 0));
    assert_eq!(refs(&meta, 5).await, 1);
    // A chunk released but not collected still names its object.
    meta.remove(&o, &p("f")).await.unwrap();
    meta.add_pending(&[([5; 32], sealed(8))], 20).await.unwrap();
    let gone = meta.forget_pending(&[[5; 32]], 20).await.unwrap();
    assert!(!gone[0].delete_object);
}

pub(super) async fn a_commit_settles_the_pending_records_it_uploaded(meta: Meta) {
    let o = user(&meta, "ann", Some(100)).await;
    meta.add_pending(&[([1; 32], sealed(10)), ([2; 32], 20)], 5)
        .await
        .unwrap();
    meta.commit_file(&o, &p("f"), &file(10, 1)).await.unwrap();
    assert!(meta.pending(&[1; 32]).await.unwrap().is_none());
    assert!(meta.pending(&[2; 32]).await.unwrap().is_some());
    // A commit that fails leaves them.
    let refused = meta.commit_file(&o, &p("g"), &file(200, 2)).await;
    assert_err!(refused, NsError::QuotaExceeded { .. });
    assert!(meta.pending(&[2; 32]).await.unwrap().is_some());
    // A session part settles what it uploaded too.
    meta.create_session(&o, "t", None).await.unwrap();
    meta.add_part(&o, "t", "0", &part_of(&[(2, 20)]))
        .await
        .unwrap();
    assert_eq!(meta.pending_totals().await.unwrap(), (0, 0));
    assert_eq!(refs(&meta, 2).await, 1);
}

pub(super) async fn pages_walk_every_record_once_in_id_order(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    // Five chunks stored by commits, three pending objects.
    for n in [5u8, 1, 4, 2, 3] {
        let path = p(&format!("f{n}"));
        meta.commit_file(&o, &path, &file(10, n)).await.unwrap();
    }
    let pending = [([9; 32], 9), ([7; 32], 7), ([8; 32], 8)];
    meta.add_pending(&pending, 10).await.unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = meta.chunks_page(after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.0);
        seen.extend(page.into_iter().map(|(id, rec)| (id[0], rec.refs)));
    }
    assert_eq!(seen, vec![(1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]);
    let first = meta.pending_page(None, 10).await.unwrap();
    let ids: Vec<u8> = first.iter().map(|(id, _)| id[0]).collect();
    assert_eq!(ids, vec![7, 8, 9]);
    assert_eq!(first[0].1.stored, 7);
    let rest = meta.pending_page(Some([8; 32]), 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].0, [9; 32]);
    assert!(meta
        .pending_page(Some([9; 32]), 10)
        .await
        .unwrap()
        .is_empty());
}
