//! Conformance cases for TOTP enrolments: enrol, read, a step accepted
//! once and only after the last one, clearing, and removal with the user;
//! and the console's history (kept in order, trimmed).

use super::*;

pub(super) async fn totp_steps_are_accepted_once_and_go_with_the_user(meta: Meta) {
    let ann = user(&meta, "ann", None).await;
    let bob = user(&meta, "bob", None).await;
    assert!(meta.totp(ann.id).await.unwrap().is_none());
    assert!(
        !meta.accept_totp_step(ann.id, 5).await.unwrap(),
        "none enrolled"
    );
    assert_err!(
        meta.set_totp("nobody", &[1; 20], 1).await,
        IndexError::NoSuchUser(_)
    );

    meta.set_totp("ann", &[1; 20], 100).await.unwrap();
    let rec = meta.totp(ann.id).await.unwrap().expect("enrolled");
    assert_eq!((rec.secret, rec.last_step), ([1; 20], 100));
    assert!(rec.enrolled > 0);
    assert!(meta.totp(bob.id).await.unwrap().is_none(), "per user");

    // The confirming step and anything before it are spent.
    assert!(!meta.accept_totp_step(ann.id, 100).await.unwrap());
    assert!(!meta.accept_totp_step(ann.id, 99).await.unwrap());
    assert!(meta.accept_totp_step(ann.id, 101).await.unwrap());
    assert!(
        !meta.accept_totp_step(ann.id, 101).await.unwrap(),
        "no replay"
    );
    assert_eq!(meta.totp(ann.id).await.unwrap().unwrap().last_step, 101);

    // A new enrolment replaces the old one.
    meta.set_totp("ann", &[2; 20], 102).await.unwrap();
    assert_eq!(meta.totp(ann.id).await.unwrap().unwrap().secret, [2; 20]);

    assert!(meta.clear_totp("ann").await.unwrap());
    assert!(!meta.clear_totp("ann").await.unwrap());
    assert!(meta.totp(ann.id).await.unwrap().is_none());

    meta.set_totp("bob", &[3; 20], 1).await.unwrap();
    meta.remove_user("bob").await.unwrap();
    assert!(
        meta.totp(bob.id).await.unwrap().is_none(),
        "gone with the user"
    );
}

pub(super) async fn history_is_kept_in_order_and_trimmed(meta: Meta) {
    use crate::meta::history::HistorySample;
    assert!(meta.history_since(0).await.unwrap().is_empty());
    for at in [30, 10, 20, 40] {
        let s = HistorySample {
            at,
            logical_bytes: at as u64 * 2,
            stored_bytes: at as u64,
            files: 1,
            requests: at as u64,
            upstream_attempts: at as u64,
            upstream_micros: at as u64 * 1000,
        };
        meta.record_history(&s, 3).await.unwrap();
    }
    let got = meta.history_since(0).await.unwrap();
    let ats: Vec<i64> = got.iter().map(|s| s.at).collect();
    assert_eq!(
        ats,
        [20, 30, 40],
        "oldest first, the oldest beyond 3 dropped"
    );
    assert_eq!(got[0].logical_bytes, 40);
    assert_eq!(
        (got[0].upstream_attempts, got[0].upstream_micros),
        (20, 20_000)
    );
    assert_eq!(meta.history_since(30).await.unwrap().len(), 2);
}
