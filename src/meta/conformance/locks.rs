//! Conformance cases for WebDAV locks: conflicts on a path, depth
//! infinity on folders, shared against exclusive, refresh, expiry by the
//! wall clock, release by the right token only, the per-user cap, and
//! locks going with what they name (delete, move, the user).

use super::*;
use crate::meta::{LockError, LockRecord};

/// A moment in Unix milliseconds the cases count from.
const NOW: i64 = 1_700_000_000_000;
/// Caps no case reaches unless it means to.
const CAP: usize = 100;

/// A lock on `path` of `owner` for 60 s from [`NOW`].
fn lock(owner: &Owner, path: &str, token: &str, deep: bool, shared: bool) -> LockRecord {
    LockRecord {
        token: token.into(),
        user: owner.id,
        path: p(path),
        deep,
        shared,
        principal: Some(owner.name.clone()),
        owner_xml: Some("<D:owner xmlns:D=\"DAV:\">x</D:owner>".into()),
        timeout_secs: 60,
        deadline_ms: NOW + 60_000,
    }
}

fn tokens(locks: &[LockRecord]) -> Vec<&str> {
    let mut t: Vec<&str> = locks.iter().map(|l| l.token.as_str()).collect();
    t.sort_unstable();
    t
}

pub(super) async fn exclusive_locks_conflict_on_a_path(meta: Meta) {
    let ann = user(&meta, "ann", None).await;
    let bob = user(&meta, "bob", None).await;
    let first = lock(&ann, "f.txt", "t1", false, false);
    assert_eq!(meta.lock_acquire(&first, NOW, CAP).await.unwrap(), first);
    assert_err!(
        meta.lock_acquire(&lock(&ann, "f.txt", "t2", false, false), NOW, CAP).await,
        LockError::Conflict(held) if held.token == "t1"
    );
    assert_err!(
        meta.lock_acquire(&lock(&ann, "f.txt", "t3", false, true), NOW, CAP)
            .await,
        LockError::Conflict(_)
    );
    // Neighbours and another user's tree are not covered.
    for (owner, path, token) in [
        (&ann, "f.txt2", "t4"),
        (&ann, "f", "t5"),
        (&bob, "f.txt", "t6"),
    ] {
        meta.lock_acquire(&lock(owner, path, token, false, false), NOW, CAP)
            .await
            .unwrap();
    }
    let found = meta.locks_covering(ann.id, &p("f.txt"), NOW).await.unwrap();
    assert_eq!(found, vec![first]);
    let bobs = meta.locks_covering(bob.id, &p("f.txt"), NOW).await.unwrap();
    assert_eq!(tokens(&bobs), ["t6"]);
}

pub(super) async fn shared_locks_share_a_path(meta: Meta) {
    let ann = user(&meta, "ann", None).await;
    for token in ["s1", "s2"] {
        meta.lock_acquire(&lock(&ann, "doc", token, false, true), NOW, CAP)
            .await
            .unwrap();
    }
    assert_err!(
        meta.lock_acquire(&lock(&ann, "doc", "x", false, false), NOW, CAP)
            .await,
        LockError::Conflict(_)
    );
    let found = meta.locks_covering(ann.id, &p("doc"), NOW).await.unwrap();
    assert_eq!(tokens(&found), ["s1", "s2"]);
}

pub(super) async fn depth_infinity_covers_a_folder_and_below(meta: Meta) {
    let ann = user(&meta, "ann", None).await;
    let folder = lock(&ann, "d", "deep", true, false);
    meta.lock_acquire(&folder, NOW, CAP).await.unwrap();
    for (path, token) in [("d/f", "a"), ("d/e/f", "b"), ("d", "c")] {
        assert_err!(
            meta.lock_acquire(&lock(&ann, path, token, false, false), NOW, CAP).await,
            LockError::Conflict(held) if held.token == "deep"
        );
    }
    let below = meta.locks_covering(ann.id, &p("d/e/f"), NOW).await.unwrap();
    assert_eq!(below, vec![folder.clone()]);
    assert!(meta
        .locks_covering(ann.id, &p("dx"), NOW)
        .await
        .unwrap()
        .is_empty());
    assert!(meta
        .locks_covering(ann.id, &p(""), NOW)
        .await
        .unwrap()
        .is_empty());

    // A depth-0 lock on a folder covers only the folder.
    meta.lock_acquire(&lock(&ann, "z", "flat", false, false), NOW, CAP)
        .await
        .unwrap();
    meta.lock_acquire(&lock(&ann, "z/f", "in-z", false, false), NOW, CAP)
        .await
        .unwrap();
    assert!(meta
        .locks_covering(ann.id, &p("z/g"), NOW)
        .await
        .unwrap()
        .is_empty());

    // A deep lock is refused over a lock below it, a depth-0 one is not.
    meta.lock_acquire(&lock(&ann, "y/in/f", "below", false, false), NOW, CAP)
        .await
        .unwrap();
    assert_err!(
        meta.lock_acquire(&lock(&ann, "y", "over", true, false), NOW, CAP).await,
        LockError::Conflict(held) if held.token == "below"
    );
    meta.lock_acquire(&lock(&ann, "y", "flat-y", false, false), NOW, CAP)
        .await
        .unwrap();
    let within = meta.locks_within(ann.id, &p("y"), NOW).await.unwrap();
    assert_eq!(tokens(&within), ["below", "flat-y"]);
    // A deep lock on the root covers every path.
    assert_err!(
        meta.lock_acquire(&lock(&ann, "", "root", true, true), NOW, CAP)
            .await,
        LockError::Conflict(_)
    );
    let all = meta.locks_within(ann.id, &p(""), NOW).await.unwrap();
    assert_eq!(all.len(), 5);
}

pub(super) async fn refresh_extends_and_expiry_frees(meta: Meta) {
    let ann = user(&meta, "ann", None).await;
    meta.lock_acquire(&lock(&ann, "d", "t", true, false), NOW, CAP)
        .await
        .unwrap();
    // Refreshed through a path below the lock, 10 s before it ends.
    let later = NOW + 50_000;
    let refreshed = meta
        .lock_refresh(ann.id, &p("d/f"), "t", 120, later)
        .await
        .unwrap();
    assert_eq!(refreshed.timeout_secs, 120);
    assert_eq!(refreshed.deadline_ms, later + 120_000);
    let at_old_end = NOW + 60_000;
    assert_eq!(
        meta.locks_covering(ann.id, &p("d"), at_old_end)
            .await
            .unwrap(),
        vec![refreshed.clone()]
    );
    assert_err!(
        meta.lock_refresh(ann.id, &p("d"), "other", 60, later).await,
        LockError::NoSuchLock
    );

    // At its deadline the lock is gone for every operation.
    let end = refreshed.deadline_ms;
    assert!(meta
        .locks_covering(ann.id, &p("d"), end)
        .await
        .unwrap()
        .is_empty());
    assert!(meta
        .locks_within(ann.id, &p(""), end)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(meta.lock_count(ann.id, end - 1).await.unwrap(), 1);
    assert_eq!(meta.lock_count(ann.id, end).await.unwrap(), 0);
    assert_err!(
        meta.lock_refresh(ann.id, &p("d"), "t", 60, end).await,
        LockError::NoSuchLock
    );
    let mut again = lock(&ann, "d", "t2", true, false);
    again.deadline_ms = end + 60_000;
    meta.lock_acquire(&again, end, CAP).await.unwrap();

    // The expiry job deletes what has ended, and nothing else.
    meta.lock_acquire(&lock(&ann, "old", "o", false, false), NOW, CAP)
        .await
        .unwrap();
    assert_eq!(meta.expire_locks(end).await.unwrap(), 1, "the lock on old");
    assert_eq!(meta.expire_locks(end).await.unwrap(), 0);
    assert_eq!(meta.lock_count(ann.id, end).await.unwrap(), 1);
}

pub(super) async fn release_needs_the_lock_token(meta: Meta) {
    let ann = user(&meta, "ann", None).await;
    let bob = user(&meta, "bob", None).await;
    meta.lock_acquire(&lock(&ann, "d", "t", true, false), NOW, CAP)
        .await
        .unwrap();
    meta.lock_acquire(&lock(&ann, "f", "flat", false, false), NOW, CAP)
        .await
        .unwrap();
    assert_err!(
        meta.lock_release(ann.id, &p("d"), "wrong", NOW).await,
        LockError::NoSuchLock
    );
    assert_err!(
        meta.lock_release(bob.id, &p("d"), "t", NOW).await,
        LockError::NoSuchLock
    );
    assert_err!(
        meta.lock_release(ann.id, &p("f/x"), "flat", NOW).await,
        LockError::NoSuchLock
    );
    assert_eq!(meta.lock_count(ann.id, NOW).await.unwrap(), 2);
    // Any path the lock covers names it.
    meta.lock_release(ann.id, &p("d/in"), "t", NOW)
        .await
        .unwrap();
    assert_err!(
        meta.lock_release(ann.id, &p("d"), "t", NOW).await,
        LockError::NoSuchLock
    );
    meta.lock_acquire(&lock(&ann, "d", "t2", true, false), NOW, CAP)
        .await
        .unwrap();
}

pub(super) async fn locks_are_capped_per_user(meta: Meta) {
    let ann = user(&meta, "ann", None).await;
    let bob = user(&meta, "bob", None).await;
    for n in 0..3 {
        let l = lock(&ann, &format!("f{n}"), &format!("t{n}"), false, false);
        meta.lock_acquire(&l, NOW, 3).await.unwrap();
    }
    assert_err!(
        meta.lock_acquire(&lock(&ann, "g", "g", false, false), NOW, 3)
            .await,
        LockError::TooMany(3)
    );
    meta.lock_acquire(&lock(&bob, "g", "g", false, false), NOW, 3)
        .await
        .unwrap();
    // Expired locks do not count.
    let later = NOW + 60_000;
    let mut l = lock(&ann, "g", "g2", false, false);
    l.deadline_ms = later + 1000;
    meta.lock_acquire(&l, later, 3).await.unwrap();
    assert_eq!(meta.lock_count(ann.id, later).await.unwrap(), 1);
}

pub(super) async fn locks_go_with_what_they_name(meta: Meta) {
    let ann = user(&meta, "ann", None).await;
    for (path, token) in [("d", "d"), ("d/f", "df"), ("d/e/f", "def"), ("dx", "dx")] {
        meta.lock_acquire(&lock(&ann, path, token, false, true), NOW, CAP)
            .await
            .unwrap();
    }
    assert_eq!(meta.drop_locks_within(ann.id, &p("d/e")).await.unwrap(), 1);
    assert_eq!(meta.drop_locks_within(ann.id, &p("d")).await.unwrap(), 2);
    assert_eq!(meta.drop_locks_within(ann.id, &p("d")).await.unwrap(), 0);
    let left = meta.locks_within(ann.id, &p(""), NOW).await.unwrap();
    assert_eq!(tokens(&left), ["dx"]);

    meta.remove_user("ann").await.unwrap();
    assert!(meta
        .locks_within(ann.id, &p(""), NOW)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(meta.lock_count(ann.id, NOW).await.unwrap(), 0);
}
