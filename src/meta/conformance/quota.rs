//! Conformance cases for the quota: exact to the byte, replaced bytes
//! free, shrinking always allowed, unfinished sessions counted.

use super::*;
use crate::meta::NsError;

pub(super) async fn a_commit_may_fill_the_quota_exactly(meta: Meta) {
    let o = user(&meta, "ann", Some(100)).await;
    meta.commit_file(&o, &p("a"), &file(60, 1)).await.unwrap();
    let over = meta.commit_file(&o, &p("b"), &file(41, 2)).await;
    assert_err!(
        over,
        NsError::QuotaExceeded {
            needed: 41,
            available: 40
        }
    );
    assert_err!(meta.lookup(&o, &p("b")).await, NsError::NotFound);
    assert!(!meta.chunk_known(&[2; 32]).await.unwrap());
    meta.commit_file(&o, &p("b"), &file(40, 2)).await.unwrap();
    assert_eq!(meta.usage(&o).await.unwrap(), (100, Some(100)));
    let full = meta.commit_file(&o, &p("c"), &file(1, 3)).await;
    assert_err!(
        full,
        NsError::QuotaExceeded {
            needed: 1,
            available: 0
        }
    );
    // An empty file takes nothing, so it fits even now.
    meta.commit_file(&o, &p("c"), &file_of(&[])).await.unwrap();
    let h = meta.holdings(&o).await.unwrap();
    assert_eq!((h.used, h.in_sessions, h.quota), (100, 0, Some(100)));
}

pub(super) async fn replacing_a_file_frees_its_bytes(meta: Meta) {
    let o = user(&meta, "ann", Some(100)).await;
    meta.commit_file(&o, &p("f"), &file(80, 1)).await.unwrap();
    // 80 held, the 80 replaced are free: 100 fit, 101 do not.
    let too_big = meta.commit_file(&o, &p("f"), &file(101, 2)).await;
    assert_err!(too_big, NsError::QuotaExceeded { needed: 101, .. });
    assert_eq!(meta.lookup(&o, &p("f")).await.unwrap().size, 80);
    meta.commit_file(&o, &p("f"), &file(100, 2)).await.unwrap();
    assert_eq!(used(&meta, &o).await, 100);
    meta.commit_file(&o, &p("f"), &file(30, 3)).await.unwrap();
    assert_eq!(used(&meta, &o).await, 30);
    // A copy over a file replaces it too.
    meta.commit_file(&o, &p("g"), &file(70, 4)).await.unwrap();
    meta.copy_file(&o, &p("f"), &p("g")).await.unwrap();
    assert_eq!(used(&meta, &o).await, 60);
    let fits = meta.copy_file(&o, &p("f"), &p("h")).await;
    assert!(fits.is_ok(), "90 of 100: {fits:?}");
    assert_err!(
        meta.copy_file(&o, &p("f"), &p("i")).await,
        NsError::QuotaExceeded { .. }
    );
    assert_eq!(used(&meta, &o).await, 90);
}

pub(super) async fn shrinking_is_allowed_over_the_quota(meta: Meta) {
    let o = user(&meta, "ann", Some(100)).await;
    meta.commit_file(&o, &p("f"), &file(60, 1)).await.unwrap();
    meta.commit_file(&o, &p("g"), &file(40, 2)).await.unwrap();
    meta.set_quota("ann", Some(50)).await.unwrap();
    assert_eq!(meta.usage(&o).await.unwrap(), (100, Some(50)));
    // Over quota: the same size or smaller passes, growing does not.
    meta.commit_file(&o, &p("f"), &file(60, 3)).await.unwrap();
    meta.commit_file(&o, &p("f"), &file(55, 4)).await.unwrap();
    let grow = meta.commit_file(&o, &p("f"), &file(56, 5)).await;
    assert_err!(
        grow,
        NsError::QuotaExceeded {
            needed: 56,
            available: 55
        }
    );
    assert_err!(
        meta.commit_file(&o, &p("n"), &file(1, 6)).await,
        NsError::QuotaExceeded { .. }
    );
    meta.remove(&o, &p("g")).await.unwrap();
    assert_eq!(used(&meta, &o).await, 55);
    meta.mkdir(&o, &p("d")).await.unwrap();
}

pub(super) async fn sessions_hold_bytes_against_the_quota(meta: Meta) {
    let o = user(&meta, "ann", Some(100)).await;
    meta.create_session(&o, "t", None).await.unwrap();
    meta.add_part(&o, "t", "0", &part_of(&[(1, 60)]))
        .await
        .unwrap();
    let h = meta.holdings(&o).await.unwrap();
    assert_eq!((h.used, h.in_sessions), (0, 60));
    assert_eq!(h.limit(0), Some(40));
    assert_eq!(used(&meta, &o).await, 0, "sessions are not files");
    let over = meta.commit_file(&o, &p("f"), &file(41, 2)).await;
    assert_err!(
        over,
        NsError::QuotaExceeded {
            needed: 41,
            available: 40
        }
    );
    meta.commit_file(&o, &p("f"), &file(40, 2)).await.unwrap();
    // Replacing the part frees its own bytes only.
    assert_eq!(meta.part_limit(&o, "t", "0").await.unwrap(), Some(60));
    assert_eq!(meta.part_limit(&o, "t", "60").await.unwrap(), Some(0));
    // A session announcing more than fits is refused at creation.
    assert!(meta.create_session(&o, "big", Some(1)).await.is_err());
    meta.abandon_session(&o, "t").await.unwrap();
    assert_eq!(meta.holdings(&o).await.unwrap().in_sessions, 0);
    meta.create_session(&o, "u", Some(60)).await.unwrap();
    meta.commit_file(&o, &p("g"), &file(60, 3)).await.unwrap();
    assert_eq!(used(&meta, &o).await, 100);
}

pub(super) async fn without_a_quota_nothing_is_refused(meta: Meta) {
    let o = user(&meta, "ann", Some(10)).await;
    meta.set_quota("ann", None).await.unwrap();
    let big = u32::MAX;
    meta.commit_file(&o, &p("f"), &file(big, 1)).await.unwrap();
    meta.copy_file(&o, &p("f"), &p("g")).await.unwrap();
    assert_eq!(meta.usage(&o).await.unwrap(), (2 * big as u64, None));
    assert_eq!(meta.holdings(&o).await.unwrap().limit(0), None);
    meta.create_session(&o, "t", Some(u64::MAX)).await.unwrap();
    assert_eq!(meta.part_limit(&o, "t", "0").await.unwrap(), None);
    // A quota set again applies at once.
    meta.set_quota("ann", Some(10)).await.unwrap();
    assert_err!(
        meta.commit_file(&o, &p("h"), &file(1, 2)).await,
        NsError::QuotaExceeded { .. }
    );
}
