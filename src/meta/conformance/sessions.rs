//! Conformance cases for chunked-upload sessions: creation, parts and
//! their order, the assembly into a file in one step and the checks that
//! refuse it, release of chunks, expiry, and isolation between users.

use std::collections::BTreeSet;

use super::*;
use crate::meta::{manifest_digest, AssembleCheck, AssembleMeta, NsError, UploadError};

/// The part names of a session as listed, in any order.
async fn part_names(meta: &Meta, o: &Owner, transfer: &str) -> BTreeSet<String> {
    let (_, parts) = meta.session(o, transfer).await.unwrap();
    parts.into_iter().map(|part| part.name).collect()
}

fn set_of(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

async fn assemble(
    meta: &Meta,
    o: &Owner,
    transfer: &str,
    path: &str,
    check: AssembleCheck,
) -> Result<crate::meta::Assembled, UploadError> {
    meta.assemble_session(o, transfer, &p(path), &check, AssembleMeta::default())
        .await
}

pub(super) async fn sessions_are_created_once_per_name(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    let before = crate::clock::unix_secs();
    let s = meta.create_session(&o, "t", Some(50)).await.unwrap();
    assert_eq!((s.total_length, s.received), (Some(50), 0));
    assert!(s.created >= before && s.updated >= s.created);
    assert_err!(
        meta.create_session(&o, "t", None).await,
        UploadError::SessionExists
    );
    for bad in ["", "a/b", "..", "a\\b"] {
        assert_err!(
            meta.create_session(&o, bad, None).await,
            UploadError::BadName(_)
        );
    }
    meta.create_session(&o, "rclone-chunked-1", None)
        .await
        .unwrap();
    let open: BTreeSet<String> = meta
        .sessions(&o)
        .await
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(open, set_of(&["rclone-chunked-1", "t"]));
    let (again, parts) = meta.session(&o, "t").await.unwrap();
    assert_eq!((again, parts.len()), (s, 0));
    assert_err!(meta.session(&o, "nope").await, UploadError::NoSession);
    assert_err!(
        meta.session_manifest(&o, "nope").await,
        UploadError::NoSession
    );
    assert_err!(
        meta.part_limit(&o, "nope", "0").await,
        UploadError::NoSession
    );
}

pub(super) async fn parts_are_added_replaced_and_removed(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    meta.create_session(&o, "t", Some(100)).await.unwrap();
    meta.add_part(&o, "t", "0", &part_of(&[(1, 10)]))
        .await
        .unwrap();
    meta.add_part(&o, "t", "10", &part_of(&[(2, 20)]))
        .await
        .unwrap();
    assert_eq!(meta.session(&o, "t").await.unwrap().0.received, 30);
    assert_eq!((refs(&meta, 1).await, refs(&meta, 2).await), (1, 1));
    // A part sent again replaces the first, whose chunks are released.
    meta.add_part(&o, "t", "10", &part_of(&[(3, 25)]))
        .await
        .unwrap();
    let (s, parts) = meta.session(&o, "t").await.unwrap();
    assert_eq!(s.received, 35);
    let ten = parts.iter().find(|part| part.name == "10").unwrap();
    assert_eq!(ten.size, 25);
    assert_eq!((refs(&meta, 2).await, refs(&meta, 3).await), (0, 1));
    let same_place = meta.add_part(&o, "t", "010", &part_of(&[(4, 1)])).await;
    assert_err!(same_place, UploadError::DuplicatePosition(..));
    for bad in [".file", "abc", "a/b", ""] {
        let refused = meta.add_part(&o, "t", bad, &part_of(&[(4, 1)])).await;
        assert_err!(refused, UploadError::BadName(_));
    }
    let over = meta.add_part(&o, "t", "35", &part_of(&[(4, 66)])).await;
    assert_err!(over, UploadError::OverTotal(100));
    assert!(
        !meta.chunk_known(&[4; 32]).await.unwrap(),
        "refused parts leave nothing"
    );
    assert_eq!(part_names(&meta, &o, "t").await, set_of(&["0", "10"]));
    meta.remove_part(&o, "t", "10").await.unwrap();
    assert_eq!(refs(&meta, 3).await, 0);
    assert_eq!(meta.session(&o, "t").await.unwrap().0.received, 10);
    assert_err!(meta.remove_part(&o, "t", "10").await, UploadError::NoPart);
    assert_err!(meta.remove_part(&o, "x", "0").await, UploadError::NoSession);
    let no_session = meta.add_part(&o, "x", "0", &part_of(&[(5, 1)])).await;
    assert_err!(no_session, UploadError::NoSession);
    assert_eq!(meta.chunk_references().await.unwrap(), 1);
}

pub(super) async fn upload_manifest_follows_assembly_order(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    meta.create_session(&o, "t", None).await.unwrap();
    let parts = [
        ("0000000010", part_of(&[(2, 5)])),
        ("0000000015", part_of(&[(3, 1), (4, 2)])),
        ("0000000000", part_of(&[(1, 10)])),
    ];
    for (name, part) in &parts {
        meta.add_part(&o, "t", name, part).await.unwrap();
    }
    let (infos, manifest) = meta.session_manifest(&o, "t").await.unwrap();
    let order: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(order, ["0000000000", "0000000010", "0000000015"]);
    let ids: Vec<ChunkId> = manifest.iter().map(|e| e.id).collect();
    assert_eq!(ids, [chunk(1), chunk(2), chunk(3), chunk(4)]);
    assert_eq!(infos.iter().map(|i| i.size).sum::<u64>(), 18);
    // Consecutive indexes are an order too (Nextcloud).
    meta.create_session(&o, "n", None).await.unwrap();
    for name in ["3", "1", "2"] {
        meta.add_part(&o, "n", name, &part_of(&[(name.as_bytes()[0], 7)]))
            .await
            .unwrap();
    }
    let (infos, _) = meta.session_manifest(&o, "n").await.unwrap();
    let order: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(order, ["1", "2", "3"]);
    // A gap is not.
    meta.create_session(&o, "g", None).await.unwrap();
    meta.add_part(&o, "g", "0", &part_of(&[(5, 10)]))
        .await
        .unwrap();
    meta.add_part(&o, "g", "20", &part_of(&[(6, 10)]))
        .await
        .unwrap();
    assert_err!(meta.session_manifest(&o, "g").await, UploadError::Gap(_));
}

pub(super) async fn assembly_makes_the_file_in_one_step(meta: Meta) {
    let o = user(&meta, "ann", Some(100)).await;
    meta.mkdir(&o, &p("d")).await.unwrap();
    meta.create_session(&o, "t", Some(50)).await.unwrap();
    meta.add_part(&o, "t", "0", &part_of(&[(1, 30)]))
        .await
        .unwrap();
    meta.add_part(&o, "t", "30", &part_of(&[(2, 20)]))
        .await
        .unwrap();
    let (_, expected) = meta.session_manifest(&o, "t").await.unwrap();
    let check = AssembleCheck {
        total_length: Some(50),
        ..Default::default()
    };
    let commit_meta = AssembleMeta {
        mtime: Some(9_000_000_000),
        checksums: Some("SHA1:aa".into()),
        expected_manifest: Some(expected.clone()),
    };
    let done = meta
        .assemble_session(&o, "t", &p("d/f"), &check, commit_meta)
        .await
        .unwrap();
    assert!(done.created);
    let f = meta.lookup(&o, &p("d/f")).await.unwrap();
    assert_eq!(
        (f.id, f.etag(), f.size),
        (done.node.id, done.node.etag(), 50)
    );
    assert_eq!(
        (f.mtime, f.checksums.as_deref()),
        (9_000_000_000, Some("SHA1:aa"))
    );
    assert_eq!(f.digest, Some(manifest_digest(&expected)));
    assert_eq!(meta.manifest(f.id).await.unwrap(), expected);
    assert_err!(meta.session(&o, "t").await, UploadError::NoSession);
    assert!(meta.sessions(&o).await.unwrap().is_empty());
    assert_eq!(
        meta.chunk_references().await.unwrap(),
        2,
        "moved, not copied"
    );
    let h = meta.holdings(&o).await.unwrap();
    assert_eq!((h.used, h.in_sessions), (50, 0));
    assert_eq!(meta.stats().await.unwrap().files, 1);
    // A second session of 50 bytes fits next to the file: not counted twice.
    meta.create_session(&o, "u", None).await.unwrap();
    meta.add_part(&o, "u", "0", &part_of(&[(3, 50)]))
        .await
        .unwrap();
    let over = AssembleCheck {
        if_etag: Some(f.etag()),
        ..Default::default()
    };
    let replaced = assemble(&meta, &o, "u", "d/f", over).await.unwrap();
    assert!(!replaced.created);
    assert_eq!((replaced.node.id, replaced.node.size), (f.id, 50));
    assert_ne!(replaced.node.etag(), f.etag());
    assert_eq!((refs(&meta, 1).await, refs(&meta, 3).await), (0, 1));
    assert_eq!(used(&meta, &o).await, 50);
}

pub(super) async fn assembly_checks_leave_the_session_intact(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    meta.mkdir(&o, &p("d")).await.unwrap();
    let (f, _) = meta.commit_file(&o, &p("f"), &file(3, 9)).await.unwrap();
    meta.create_session(&o, "t", None).await.unwrap();
    meta.add_part(&o, "t", "0", &part_of(&[(1, 10)]))
        .await
        .unwrap();
    let length = AssembleCheck {
        total_length: Some(11),
        ..Default::default()
    };
    let refused = assemble(&meta, &o, "t", "g", length).await;
    assert_err!(
        refused,
        UploadError::LengthMismatch {
            expected: 11,
            actual: 10
        }
    );
    let exclusive = AssembleCheck {
        must_not_exist: true,
        ..Default::default()
    };
    let refused = assemble(&meta, &o, "t", "f", exclusive).await;
    assert_err!(refused, UploadError::DestinationExists);
    for (path, etag) in [("f", "not-it".to_string()), ("new", f.etag())] {
        let if_match = AssembleCheck {
            if_etag: Some(etag),
            ..Default::default()
        };
        let refused = assemble(&meta, &o, "t", path, if_match).await;
        assert_err!(refused, UploadError::PreconditionFailed);
    }
    let changed = AssembleMeta {
        expected_manifest: Some(file(10, 2).chunks),
        ..Default::default()
    };
    let refused = meta
        .assemble_session(&o, "t", &p("g"), &AssembleCheck::default(), changed)
        .await;
    assert_err!(refused, UploadError::Changed);
    let refused = assemble(&meta, &o, "t", "x/g", AssembleCheck::default()).await;
    assert_err!(refused, UploadError::Namespace(NsError::ParentMissing));
    let refused = assemble(&meta, &o, "t", "d", AssembleCheck::default()).await;
    assert_err!(refused, UploadError::Namespace(NsError::IsADirectory));
    // Nothing changed: the session, its chunks, the destination.
    assert_eq!(part_names(&meta, &o, "t").await, set_of(&["0"]));
    assert_eq!(refs(&meta, 1).await, 1);
    assert_eq!(meta.lookup(&o, &p("f")).await.unwrap().etag(), f.etag());
    assert_err!(
        meta.lookup(&o, &p("g")).await,
        crate::meta::NsError::NotFound
    );
    let fine = AssembleCheck {
        must_not_exist: true,
        total_length: Some(10),
        ..Default::default()
    };
    assemble(&meta, &o, "t", "g", fine).await.unwrap();
    assert_eq!(meta.lookup(&o, &p("g")).await.unwrap().size, 10);
}

pub(super) async fn abandon_and_expiry_release_the_chunks(meta: Meta) {
    let ann = user(&meta, "ann", None).await;
    let ben = user(&meta, "ben", None).await;
    meta.create_session(&ann, "t", None).await.unwrap();
    meta.add_part(&ann, "t", "0", &part_of(&[(1, 10)]))
        .await
        .unwrap();
    meta.abandon_session(&ann, "t").await.unwrap();
    assert_err!(
        meta.abandon_session(&ann, "t").await,
        UploadError::NoSession
    );
    let one = meta.chunk(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(one.refs, 0);
    assert!(one.unreferenced_since > 0);
    meta.create_session(&ann, "a", None).await.unwrap();
    meta.add_part(&ann, "a", "0", &part_of(&[(2, 10)]))
        .await
        .unwrap();
    meta.create_session(&ben, "b", None).await.unwrap();
    meta.add_part(&ben, "b", "0", &part_of(&[(2, 10)]))
        .await
        .unwrap();
    assert_eq!(refs(&meta, 2).await, 2);
    let now = crate::clock::unix_secs();
    assert_eq!(meta.expire_sessions(now, 3600).await.unwrap(), 0);
    assert_eq!(meta.sessions(&ann).await.unwrap().len(), 1);
    assert_eq!(meta.expire_sessions(now + 7200, 3600).await.unwrap(), 2);
    assert!(meta.sessions(&ann).await.unwrap().is_empty());
    assert!(meta.sessions(&ben).await.unwrap().is_empty());
    assert_eq!(meta.chunk_references().await.unwrap(), 0);
    assert_eq!(meta.holdings(&ann).await.unwrap().in_sessions, 0);
    assert_eq!(meta.expire_sessions(now + 7200, 3600).await.unwrap(), 0);
}

pub(super) async fn another_users_session_is_invisible(meta: Meta) {
    let ann = user(&meta, "ann", Some(100)).await;
    let ben = user(&meta, "ben", Some(100)).await;
    meta.create_session(&ann, "t", None).await.unwrap();
    meta.add_part(&ann, "t", "0", &part_of(&[(1, 60)]))
        .await
        .unwrap();
    assert_err!(meta.session(&ben, "t").await, UploadError::NoSession);
    assert!(meta.sessions(&ben).await.unwrap().is_empty());
    let part = part_of(&[(2, 1)]);
    assert_err!(
        meta.add_part(&ben, "t", "60", &part).await,
        UploadError::NoSession
    );
    assert_err!(
        meta.remove_part(&ben, "t", "0").await,
        UploadError::NoSession
    );
    assert_err!(
        meta.session_manifest(&ben, "t").await,
        UploadError::NoSession
    );
    assert_err!(
        meta.part_limit(&ben, "t", "0").await,
        UploadError::NoSession
    );
    let stolen = assemble(&meta, &ben, "t", "f", AssembleCheck::default()).await;
    assert_err!(stolen, UploadError::NoSession);
    assert_err!(
        meta.abandon_session(&ben, "t").await,
        UploadError::NoSession
    );
    assert_eq!(meta.holdings(&ben).await.unwrap().in_sessions, 0);
    // The same transfer id for ben is his own session.
    meta.create_session(&ben, "t", None).await.unwrap();
    assert!(meta.session(&ben, "t").await.unwrap().1.is_empty());
    meta.abandon_session(&ben, "t").await.unwrap();
    assert_eq!(part_names(&meta, &ann, "t").await, set_of(&["0"]));
    assert_eq!(meta.holdings(&ann).await.unwrap().in_sessions, 60);
    assert_eq!(refs(&meta, 1).await, 1);
}
