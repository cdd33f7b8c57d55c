//! Conformance cases for users: creation and its refusals, password and
//! quota changes, removal with the whole tree, and separate trees.

use super::*;
use crate::meta::NsError;

pub(super) async fn users_are_added_once_with_valid_names(meta: Meta) {
    let ann = user(&meta, "ann", Some(7)).await;
    let record = meta.user("ann").await.unwrap().unwrap();
    assert_eq!((record.id, record.root), (ann.id, ann.root));
    assert_eq!(
        (record.quota, record.used, record.admin),
        (Some(7), 0, false)
    );
    assert_ne!(ann.id, ann.root);
    assert!(meta.user("nobody").await.unwrap().is_none());
    let again = NewUser {
        name: "ann".into(),
        password_hash: "x".into(),
        admin: true,
        quota: None,
    };
    assert_err!(meta.add_user(again).await, IndexError::UserExists(_));
    let long = "x".repeat(65);
    for bad in ["", "../x", ".hidden", "a b", "a/b", long.as_str()] {
        let new = NewUser {
            name: bad.into(),
            password_hash: "x".into(),
            admin: false,
            quota: None,
        };
        assert_err!(meta.add_user(new).await, IndexError::BadUserName(_));
    }
    let carl = user(&meta, "carl@example.org", None).await;
    let bob = user(&meta, &"b".repeat(64), None).await;
    let names: Vec<String> = meta
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["ann", bob.name.as_str(), "carl@example.org"]);
    let roots = [ann.root, bob.root, carl.root];
    assert!(roots
        .iter()
        .all(|r| roots.iter().filter(|s| *s == r).count() == 1));
    for o in [&ann, &bob, &carl] {
        let root = meta.lookup(o, &[]).await.unwrap();
        assert_eq!((root.id, root.owner, root.is_dir()), (o.root, o.id, true));
        assert!(meta.list(o, &[]).await.unwrap().is_empty());
    }
    assert_eq!(meta.stats().await.unwrap().users, 3);
}

pub(super) async fn password_quota_and_removal(meta: Meta) {
    let old = user(&meta, "ann", None).await;
    meta.set_password("ann", "$argon2id$new".into())
        .await
        .unwrap();
    let record = meta.user("ann").await.unwrap().unwrap();
    assert_eq!(record.password_hash, "$argon2id$new");
    meta.set_quota("ann", Some(500)).await.unwrap();
    assert_eq!(meta.usage(&old).await.unwrap(), (0, Some(500)));
    let missing = meta.set_password("nobody", "x".into()).await;
    assert_err!(missing, IndexError::NoSuchUser(_));
    assert_err!(
        meta.set_quota("nobody", None).await,
        IndexError::NoSuchUser(_)
    );
    // Removal takes the whole tree with it and releases its chunks.
    meta.mkdir(&old, &p("d")).await.unwrap();
    meta.commit_file(&old, &p("d/f"), &file(10, 1))
        .await
        .unwrap();
    meta.commit_file(&old, &p("g"), &file(20, 2)).await.unwrap();
    // An unfinished chunked upload goes with the account too.
    meta.create_session(&old, "t", None).await.unwrap();
    let part = part_of(&[(9, 30)]);
    meta.add_part(&old, "t", "0", &part).await.unwrap();
    meta.remove_user("ann").await.unwrap();
    assert!(meta.user("ann").await.unwrap().is_none());
    assert_err!(meta.remove_user("ann").await, IndexError::NoSuchUser(_));
    let s = meta.stats().await.unwrap();
    assert_eq!((s.users, s.files, s.logical_bytes), (0, 0, 0));
    assert_eq!(meta.chunk_references().await.unwrap(), 0);
    // A new account of the same name starts empty, and the old one's
    // owner reaches nothing.
    let new = user(&meta, "ann", None).await;
    assert!(new.id != old.id && new.root != old.root);
    assert!(meta.lookup(&old, &p("g")).await.is_err());
    assert!(meta.commit_file(&old, &p("h"), &file(1, 3)).await.is_err());
    assert!(meta.mkdir(&old, &p("e")).await.is_err());
    assert!(meta.list(&new, &[]).await.unwrap().is_empty());
    assert!(meta.sessions(&new).await.unwrap().is_empty());
    assert_eq!(used(&meta, &new).await, 0);
}

pub(super) async fn trees_of_users_are_separate(meta: Meta) {
    let ann = user(&meta, "ann", None).await;
    let ben = user(&meta, "ben", None).await;
    for o in [&ann, &ben] {
        meta.mkdir(o, &p("d")).await.unwrap();
    }
    let (a, _) = meta
        .commit_file(&ann, &p("d/f"), &file(10, 1))
        .await
        .unwrap();
    let (b, _) = meta
        .commit_file(&ben, &p("d/f"), &file(4, 1))
        .await
        .unwrap();
    assert_ne!(a.id, b.id);
    assert_eq!(refs(&meta, 1).await, 2);
    meta.commit_file(&ann, &p("only-ann"), &file(1, 2))
        .await
        .unwrap();
    assert_eq!(names(&meta.list(&ben, &[]).await.unwrap()), ["d"]);
    assert_err!(meta.lookup(&ben, &p("only-ann")).await, NsError::NotFound);
    let move_it = meta.rename(&ben, &p("only-ann"), &p("mine")).await;
    assert_err!(move_it, NsError::NotFound);
    assert_err!(meta.remove(&ben, &p("only-ann")).await, NsError::NotFound);
    let copy_it = meta.copy_file(&ben, &p("only-ann"), &p("mine")).await;
    assert_err!(copy_it, NsError::NotFound);
    assert_err!(meta.props(&ben, &p("only-ann")).await, NsError::NotFound);
    meta.remove(&ben, &p("d/f")).await.unwrap();
    assert_eq!(meta.lookup(&ann, &p("d/f")).await.unwrap().id, a.id);
    assert_eq!((used(&meta, &ann).await, used(&meta, &ben).await), (11, 0));
    assert_eq!(meta.lookup(&ann, &[]).await.unwrap().size, 11);
    assert_eq!(meta.lookup(&ben, &[]).await.unwrap().size, 0);
    let files = meta.files_by_owner().await.unwrap();
    assert_eq!((files.get(&ann.id), files.get(&ben.id)), (Some(&2), None));
}

pub(super) async fn audited_changes_are_logged_with_them(meta: Meta) {
    use crate::meta::{AuditEntry, UserUpdate};
    let entry =
        |action: &str, target: &str| AuditEntry::now("root", "192.0.2.7", action, target, "detail");
    assert!(meta.audit_log(10).await.unwrap().is_empty());
    let new = NewUser {
        name: "dora".into(),
        password_hash: "$argon2id$test".into(),
        admin: false,
        quota: None,
    };
    let created = entry("user.create", "dora");
    meta.add_user_audited(new, Some(&created)).await.unwrap();
    // A refused change logs nothing.
    let again = NewUser {
        name: "dora".into(),
        password_hash: "x".into(),
        admin: false,
        quota: None,
    };
    assert_err!(
        meta.add_user_audited(again, Some(&created)).await,
        IndexError::UserExists(_)
    );
    let update = UserUpdate {
        quota: Some(Some(10)),
        ..UserUpdate::default()
    };
    meta.update_user("dora", &update, Some(&entry("user.update", "dora")))
        .await
        .unwrap();
    assert_err!(
        meta.update_user("nobody", &update, Some(&entry("user.update", "nobody")))
            .await,
        IndexError::NoSuchUser(_)
    );
    let seq = meta.append_audit(&entry("job.run", "gc")).await.unwrap();
    meta.remove_user_audited("dora", Some(&entry("user.remove", "dora")))
        .await
        .unwrap();
    assert_err!(
        meta.remove_user_audited("dora", Some(&entry("user.remove", "dora")))
            .await,
        IndexError::NoSuchUser(_)
    );
    let log = meta.audit_log(10).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|r| r.entry.action.as_str()).collect();
    assert_eq!(
        actions,
        ["user.remove", "job.run", "user.update", "user.create"],
        "newest first, refused changes absent"
    );
    assert!(log.windows(2).all(|w| w[0].seq > w[1].seq));
    assert_eq!(log[1].seq, seq);
    assert_eq!(log[3].entry, created);
    assert_eq!(meta.audit_log(2).await.unwrap().len(), 2);
    assert!(meta.user("dora").await.unwrap().is_none());
}

pub(super) async fn disabled_users_and_updates_keep_the_rest(meta: Meta) {
    use crate::meta::UserUpdate;
    user(&meta, "eve", Some(100)).await;
    let before = meta.user("eve").await.unwrap().unwrap();
    assert!(!before.disabled);
    let disable = UserUpdate {
        disabled: Some(true),
        admin: Some(true),
        ..UserUpdate::default()
    };
    let after = meta.update_user("eve", &disable, None).await.unwrap();
    assert!(after.disabled && after.admin);
    let stored = meta.user("eve").await.unwrap().unwrap();
    assert!(stored.disabled && stored.admin);
    assert_eq!(
        (stored.quota, stored.password_hash.as_str(), stored.root),
        (Some(100), before.password_hash.as_str(), before.root)
    );
    let lift = UserUpdate {
        quota: Some(None),
        disabled: Some(false),
        password_hash: Some("$argon2id$other".into()),
        ..UserUpdate::default()
    };
    let lifted = meta.update_user("eve", &lift, None).await.unwrap();
    assert_eq!(
        (lifted.quota, lifted.disabled, lifted.admin),
        (None, false, true)
    );
    assert_eq!(lifted.password_hash, "$argon2id$other");
}
