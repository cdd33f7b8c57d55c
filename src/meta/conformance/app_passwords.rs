//! Conformance cases for app passwords: adding within the limit and with
//! valid labels, listing without verifiers, revoking, last use, and
//! removal with the user.

use super::*;
use crate::meta::app_passwords::MAX_LABEL_BYTES;
use crate::meta::NewAppPassword;

fn new(label: &str, n: u8) -> NewAppPassword {
    NewAppPassword {
        label: label.into(),
        verifier: [n; 32],
    }
}

pub(super) async fn app_passwords_are_added_listed_and_revoked(meta: Meta) {
    let ann = user(&meta, "ann", None).await;
    let bob = user(&meta, "bob", None).await;
    let phone = meta
        .add_app_password("ann", &new("phone", 1), 3)
        .await
        .unwrap();
    let laptop = meta
        .add_app_password("ann", &new("laptop", 2), 3)
        .await
        .unwrap();
    assert_ne!(phone.id, laptop.id);
    assert_eq!((phone.label.as_str(), phone.last_used), ("phone", None));
    assert!(phone.created > 0);
    meta.add_app_password("bob", &new("phone", 3), 3)
        .await
        .unwrap();

    let listed = meta.app_passwords("ann").await.unwrap();
    assert_eq!(listed, [phone.clone(), laptop.clone()], "by id, as added");
    let verifiers = meta.app_password_verifiers(ann.id).await.unwrap();
    let pairs: Vec<(u64, [u8; 32])> = verifiers.iter().map(|v| (v.id, v.verifier)).collect();
    assert_eq!(pairs, [(phone.id, [1; 32]), (laptop.id, [2; 32])]);
    assert_eq!(meta.app_password_verifiers(bob.id).await.unwrap().len(), 1);
    assert!(meta
        .app_password_verifiers(999_999)
        .await
        .unwrap()
        .is_empty());

    // Refusals: unknown user, bad labels, the limit.
    assert_err!(
        meta.app_passwords("nobody").await,
        IndexError::NoSuchUser(_)
    );
    assert_err!(
        meta.add_app_password("nobody", &new("x", 4), 3).await,
        IndexError::NoSuchUser(_)
    );
    let long = "x".repeat(MAX_LABEL_BYTES + 1);
    for bad in ["", " ", "a\u{1b}[31m", long.as_str()] {
        assert_err!(
            meta.add_app_password("ann", &new(bad, 5), 3).await,
            IndexError::BadAppPasswordLabel
        );
    }
    meta.add_app_password("ann", &new("tablet", 6), 3)
        .await
        .unwrap();
    assert_err!(
        meta.add_app_password("ann", &new("fourth", 7), 3).await,
        IndexError::TooManyAppPasswords { max: 3, .. }
    );

    // Revoking takes one away (only the user's own) and frees a place.
    assert_err!(
        meta.revoke_app_password("bob", phone.id).await,
        IndexError::NoSuchAppPassword { .. }
    );
    meta.revoke_app_password("ann", phone.id).await.unwrap();
    assert_err!(
        meta.revoke_app_password("ann", phone.id).await,
        IndexError::NoSuchAppPassword { .. }
    );
    let left: Vec<u64> = meta
        .app_password_verifiers(ann.id)
        .await
        .unwrap()
        .iter()
        .map(|v| v.id)
        .collect();
    assert!(!left.contains(&phone.id) && left.contains(&laptop.id));
    meta.add_app_password("ann", &new("fourth", 7), 3)
        .await
        .unwrap();
}

pub(super) async fn last_use_is_recorded_at_most_once_a_minute(meta: Meta) {
    let ann = user(&meta, "ann", None).await;
    let phone = meta
        .add_app_password("ann", &new("phone", 1), 64)
        .await
        .unwrap();
    meta.app_password_used(ann.id, phone.id, 1_000)
        .await
        .unwrap();
    meta.app_password_used(ann.id, phone.id, 1_030)
        .await
        .unwrap();
    let last = |meta: Meta| async move { meta.app_passwords("ann").await.unwrap()[0].last_used };
    assert_eq!(last(meta.clone()).await, Some(1_000));
    meta.app_password_used(ann.id, phone.id, 1_060)
        .await
        .unwrap();
    assert_eq!(last(meta.clone()).await, Some(1_060));
    let verifiers = meta.app_password_verifiers(ann.id).await.unwrap();
    assert_eq!(verifiers[0].last_used, Some(1_060));
    // A revoked (or unknown) app password records nothing.
    meta.revoke_app_password("ann", phone.id).await.unwrap();
    meta.app_password_used(ann.id, phone.id, 2_000)
        .await
        .unwrap();
    let again = meta
        .add_app_password("ann", &new("phone", 1), 64)
        .await
        .unwrap();
    assert_eq!(again.last_used, None);
    assert_eq!(last(meta.clone()).await, None);
}

pub(super) async fn removing_a_user_removes_their_app_passwords(meta: Meta) {
    let old = user(&meta, "ann", None).await;
    let bob = user(&meta, "bob", None).await;
    for (label, n) in [("phone", 1), ("laptop", 2)] {
        let a = meta
            .add_app_password("ann", &new(label, n), 64)
            .await
            .unwrap();
        meta.app_password_used(old.id, a.id, 100).await.unwrap();
    }
    meta.add_app_password("bob", &new("phone", 3), 64)
        .await
        .unwrap();
    meta.remove_user("ann").await.unwrap();
    assert!(meta
        .app_password_verifiers(old.id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(meta.app_password_verifiers(bob.id).await.unwrap().len(), 1);
    // A new account of the same name starts without any.
    user(&meta, "ann", None).await;
    assert!(meta.app_passwords("ann").await.unwrap().is_empty());
}
