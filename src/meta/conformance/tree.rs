//! Conformance cases for the tree: folders and files, their errors,
//! listing order, ids, etags and folder sizes.

use super::*;
use crate::meta::{manifest_digest, NsError};

pub(super) async fn mkdir_creates_folders_and_refuses_what_is_there(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    let d = meta.mkdir(&o, &p("d")).await.unwrap();
    assert!(d.is_dir());
    assert_eq!((d.size, d.owner), (0, o.id));
    let sub = meta.mkdir(&o, &p("d/sub")).await.unwrap();
    assert_eq!(sub.parent, d.id);
    assert_err!(meta.mkdir(&o, &p("d")).await, NsError::Exists);
    assert_err!(meta.mkdir(&o, &[]).await, NsError::Exists);
    assert_err!(meta.mkdir(&o, &p("x/y")).await, NsError::ParentMissing);
    meta.commit_file(&o, &p("f"), &file(3, 1)).await.unwrap();
    assert_err!(meta.mkdir(&o, &p("f")).await, NsError::Exists);
    assert_err!(meta.mkdir(&o, &p("f/y")).await, NsError::ParentMissing);
    assert!(!meta.lookup(&o, &p("f")).await.unwrap().is_dir());
}

pub(super) async fn lookup_and_list_answer_what_is_there(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    let root = meta.lookup(&o, &[]).await.unwrap();
    assert!(root.is_dir());
    assert_eq!(root.id, o.root);
    assert!(meta.list(&o, &[]).await.unwrap().is_empty());
    meta.mkdir(&o, &p("d")).await.unwrap();
    let (f, _) = meta.commit_file(&o, &p("d/f"), &file(5, 1)).await.unwrap();
    assert_eq!(meta.lookup(&o, &p("d/f")).await.unwrap().id, f.id);
    assert_err!(meta.lookup(&o, &p("missing")).await, NsError::NotFound);
    assert_err!(meta.lookup(&o, &p("d/f/below")).await, NsError::NotFound);
    assert_err!(meta.list(&o, &p("d/f")).await, NsError::NotADirectory);
    assert_err!(meta.list(&o, &p("nope")).await, NsError::NotFound);
    let listing = meta.list(&o, &p("d")).await.unwrap();
    assert_eq!(names(&listing), ["f"]);
    assert_eq!((listing[0].1.id, listing[0].1.size), (f.id, 5));
}

pub(super) async fn listing_is_in_byte_order_of_names(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    let given = [
        "b", "B", "a", "Z", "é", "e", "ä", "10", "9", "_x", "a b", "日本", "Ω", "ab", "A",
    ];
    for (i, name) in given.iter().enumerate() {
        if i % 2 == 0 {
            meta.mkdir(&o, &p(name)).await.unwrap();
        } else {
            meta.commit_file(&o, &p(name), &file(1, 1)).await.unwrap();
        }
    }
    let listed = names(&meta.list(&o, &[]).await.unwrap());
    let expected = [
        "10", "9", "A", "B", "Z", "_x", "a", "a b", "ab", "b", "e", "ä", "é", "Ω", "日本",
    ];
    assert_eq!(listed, expected);
    let mut by_bytes: Vec<&str> = given.to_vec();
    by_bytes.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    assert_eq!(listed, by_bytes);
}

pub(super) async fn remove_refuses_the_root_missing_and_non_empty(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    meta.mkdir(&o, &p("d")).await.unwrap();
    meta.commit_file(&o, &p("d/f"), &file(4, 1)).await.unwrap();
    assert_err!(meta.remove(&o, &[]).await, NsError::Root);
    assert_err!(meta.remove(&o, &p("nope")).await, NsError::NotFound);
    assert_err!(meta.remove(&o, &p("nope/f")).await, NsError::ParentMissing);
    assert_err!(meta.remove(&o, &p("d")).await, NsError::NotEmpty);
    assert_eq!(meta.lookup(&o, &p("d/f")).await.unwrap().size, 4);
    assert_eq!(used(&meta, &o).await, 4);
}

pub(super) async fn remove_frees_the_name_and_the_bytes(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    meta.mkdir(&o, &p("d")).await.unwrap();
    meta.commit_file(&o, &p("d/f"), &file(7, 1)).await.unwrap();
    meta.remove(&o, &p("d/f")).await.unwrap();
    assert_err!(meta.lookup(&o, &p("d/f")).await, NsError::NotFound);
    assert!(meta.list(&o, &p("d")).await.unwrap().is_empty());
    assert_eq!(meta.lookup(&o, &p("d")).await.unwrap().size, 0);
    assert_eq!(used(&meta, &o).await, 0);
    meta.remove(&o, &p("d")).await.unwrap();
    assert!(meta.list(&o, &[]).await.unwrap().is_empty());
    // The name is free again, for either kind.
    meta.commit_file(&o, &p("d"), &file(2, 2)).await.unwrap();
    assert!(!meta.lookup(&o, &p("d")).await.unwrap().is_dir());
}

pub(super) async fn rename_keeps_the_id_and_the_etag(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    meta.mkdir(&o, &p("a")).await.unwrap();
    meta.mkdir(&o, &p("b")).await.unwrap();
    let (f, _) = meta.commit_file(&o, &p("a/f"), &file(9, 1)).await.unwrap();
    let a_before = meta.lookup(&o, &p("a")).await.unwrap().etag();
    let b_before = meta.lookup(&o, &p("b")).await.unwrap().etag();
    let moved = meta.rename(&o, &p("a/f"), &p("b/g")).await.unwrap();
    assert_eq!((moved.id, moved.etag()), (f.id, f.etag()));
    let there = meta.lookup(&o, &p("b/g")).await.unwrap();
    assert_eq!((there.id, there.etag(), there.size), (f.id, f.etag(), 9));
    assert_eq!(there.parent, meta.lookup(&o, &p("b")).await.unwrap().id);
    assert_err!(meta.lookup(&o, &p("a/f")).await, NsError::NotFound);
    assert_ne!(meta.lookup(&o, &p("a")).await.unwrap().etag(), a_before);
    assert_ne!(meta.lookup(&o, &p("b")).await.unwrap().etag(), b_before);
    // A folder moves with everything below it.
    meta.mkdir(&o, &p("b/deep")).await.unwrap();
    let (g, _) = meta
        .commit_file(&o, &p("b/deep/g"), &file(1, 2))
        .await
        .unwrap();
    meta.rename(&o, &p("b"), &p("a/b2")).await.unwrap();
    assert_eq!(meta.lookup(&o, &p("a/b2/deep/g")).await.unwrap().id, g.id);
    assert_eq!(meta.lookup(&o, &p("a/b2/g")).await.unwrap().id, f.id);
}

pub(super) async fn rename_refuses_what_it_cannot_do(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    meta.mkdir(&o, &p("a")).await.unwrap();
    meta.mkdir(&o, &p("a/b")).await.unwrap();
    meta.commit_file(&o, &p("f"), &file(1, 1)).await.unwrap();
    meta.commit_file(&o, &p("g"), &file(2, 2)).await.unwrap();
    assert_err!(
        meta.rename(&o, &p("nope"), &p("x")).await,
        NsError::NotFound
    );
    assert_err!(meta.rename(&o, &p("f"), &p("g")).await, NsError::Exists);
    assert_err!(
        meta.rename(&o, &p("f"), &p("no/x")).await,
        NsError::ParentMissing
    );
    assert_err!(
        meta.rename(&o, &p("f"), &p("g/x")).await,
        NsError::ParentMissing
    );
    assert_err!(meta.rename(&o, &[], &p("x")).await, NsError::Root);
    assert_err!(meta.rename(&o, &p("f"), &[]).await, NsError::Root);
    assert_err!(
        meta.rename(&o, &p("a"), &p("a/x")).await,
        NsError::IntoItself
    );
    assert_err!(
        meta.rename(&o, &p("a"), &p("a/b/x")).await,
        NsError::IntoItself
    );
    assert_err!(meta.rename(&o, &p("f"), &p("f")).await, NsError::Exists);
    // Nothing moved.
    assert_eq!(names(&meta.list(&o, &[]).await.unwrap()), ["a", "f", "g"]);
    assert_eq!(meta.lookup(&o, &p("g")).await.unwrap().size, 2);
    assert_eq!(names(&meta.list(&o, &p("a")).await.unwrap()), ["b"]);
}

pub(super) async fn rename_replacing_swaps_in_one_step(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    let (src, _) = meta.commit_file(&o, &p("src"), &file(10, 1)).await.unwrap();
    meta.mkdir(&o, &p("dst")).await.unwrap();
    meta.mkdir(&o, &p("dst/sub")).await.unwrap();
    meta.commit_file(&o, &p("dst/sub/f"), &file(20, 2))
        .await
        .unwrap();
    meta.commit_file(&o, &p("dst/g"), &file(30, 3))
        .await
        .unwrap();
    let moved = meta
        .rename_replacing(&o, &p("src"), &p("dst"))
        .await
        .unwrap();
    assert_eq!(moved.id, src.id);
    let there = meta.lookup(&o, &p("dst")).await.unwrap();
    assert_eq!((there.id, there.is_dir()), (src.id, false));
    assert_eq!(used(&meta, &o).await, 10);
    assert_eq!((refs(&meta, 2).await, refs(&meta, 3).await), (0, 0));
    assert_eq!(meta.stats().await.unwrap().files, 1);
    // A file over a file; the destination need not exist.
    meta.commit_file(&o, &p("h"), &file(4, 4)).await.unwrap();
    meta.rename_replacing(&o, &p("h"), &p("dst")).await.unwrap();
    assert_eq!(meta.lookup(&o, &p("dst")).await.unwrap().size, 4);
    assert_eq!(refs(&meta, 1).await, 0);
    meta.rename_replacing(&o, &p("dst"), &p("new"))
        .await
        .unwrap();
    assert_eq!(names(&meta.list(&o, &[]).await.unwrap()), ["new"]);
    // A destination holding the source is refused; nothing changes.
    meta.mkdir(&o, &p("a")).await.unwrap();
    meta.commit_file(&o, &p("a/x"), &file(5, 5)).await.unwrap();
    let refused = meta.rename_replacing(&o, &p("a/x"), &p("a")).await;
    assert_err!(refused, NsError::IntoItself);
    assert_eq!(meta.lookup(&o, &p("a/x")).await.unwrap().size, 5);
    // Onto itself: whatever it answers, the node stays.
    let _ = meta.rename_replacing(&o, &p("a/x"), &p("a/x")).await;
    assert_eq!(meta.lookup(&o, &p("a/x")).await.unwrap().size, 5);
    assert_eq!(used(&meta, &o).await, 9);
}

pub(super) async fn copy_file_shares_the_content(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    let mut commit = file_of(&[(1, 6), (2, 4)]);
    commit.mtime = Some(1_234_000_000_000);
    commit.checksums = Some("SHA1:00".into());
    let (f, _) = meta.commit_file(&o, &p("f"), &commit).await.unwrap();
    let copy = meta.copy_file(&o, &p("f"), &p("c")).await.unwrap();
    assert_ne!(copy.id, f.id);
    assert_eq!(
        (copy.size, copy.digest, copy.mtime),
        (10, f.digest, f.mtime)
    );
    assert_eq!(copy.checksums.as_deref(), Some("SHA1:00"));
    assert_eq!(meta.manifest(copy.id).await.unwrap(), commit.chunks);
    assert_eq!(used(&meta, &o).await, 20);
    // Onto an existing file: replaced, keeping its id.
    let (g, _) = meta.commit_file(&o, &p("g"), &file(3, 3)).await.unwrap();
    let over = meta.copy_file(&o, &p("f"), &p("g")).await.unwrap();
    assert_eq!((over.id, over.size), (g.id, 10));
    assert_eq!(refs(&meta, 3).await, 0);
    meta.mkdir(&o, &p("d")).await.unwrap();
    assert_err!(
        meta.copy_file(&o, &p("d"), &p("x")).await,
        NsError::IsADirectory
    );
    assert_err!(
        meta.copy_file(&o, &p("f"), &p("d")).await,
        NsError::IsADirectory
    );
    assert_err!(
        meta.copy_file(&o, &p("nope"), &p("x")).await,
        NsError::NotFound
    );
    let no_parent = meta.copy_file(&o, &p("f"), &p("no/x")).await;
    assert_err!(no_parent, NsError::ParentMissing);
    assert_eq!(
        names(&meta.list(&o, &[]).await.unwrap()),
        ["c", "d", "f", "g"]
    );
}

pub(super) async fn copy_replacing_copies_a_tree_in_one_step(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    meta.mkdir(&o, &p("src")).await.unwrap();
    meta.mkdir(&o, &p("src/sub")).await.unwrap();
    meta.commit_file(&o, &p("src/a"), &file(10, 1))
        .await
        .unwrap();
    meta.commit_file(&o, &p("src/sub/b"), &file(20, 2))
        .await
        .unwrap();
    let before_prop = used(&meta, &o).await;
    let colour = prop("colour", b"blue");
    meta.patch_props(&o, &p("src/sub/b"), &[(true, colour.clone())])
        .await
        .unwrap();
    let prop_bytes = used(&meta, &o).await - before_prop;
    meta.mkdir(&o, &p("dst")).await.unwrap();
    meta.mkdir(&o, &p("dst/x")).await.unwrap();
    meta.commit_file(&o, &p("dst/old"), &file(30, 3))
        .await
        .unwrap();
    let src = meta.lookup(&o, &p("src")).await.unwrap();
    let copy = meta.copy_replacing(&o, &p("src"), &p("dst")).await.unwrap();
    assert!(copy.is_dir());
    assert_ne!(copy.id, src.id);
    assert_eq!(copy.size, 30);
    assert_eq!(
        names(&meta.list(&o, &p("dst")).await.unwrap()),
        ["a", "sub"]
    );
    let b = meta.lookup(&o, &p("dst/sub/b")).await.unwrap();
    assert_eq!(b.size, 20);
    assert_eq!(meta.props(&o, &p("dst/sub/b")).await.unwrap(), [colour]);
    assert_eq!((refs(&meta, 1).await, refs(&meta, 2).await), (2, 2));
    assert_eq!(refs(&meta, 3).await, 0, "the old destination is gone");
    assert_eq!(used(&meta, &o).await, 60 + 2 * prop_bytes);
    assert_eq!(meta.stats().await.unwrap().files, 4);
    assert_eq!(meta.lookup(&o, &[]).await.unwrap().size, 60);
    // A file over a folder, and onto nothing.
    meta.copy_replacing(&o, &p("src/a"), &p("dst"))
        .await
        .unwrap();
    assert_eq!(meta.lookup(&o, &p("dst")).await.unwrap().size, 10);
    meta.copy_replacing(&o, &p("src"), &p("new")).await.unwrap();
    assert_eq!(meta.lookup(&o, &p("new/sub/b")).await.unwrap().size, 20);
    // Into itself, or over a folder holding the source: refused.
    assert_err!(
        meta.copy_replacing(&o, &p("src"), &p("src/sub/in")).await,
        NsError::IntoItself
    );
    assert_err!(
        meta.copy_replacing(&o, &p("src/sub"), &p("src")).await,
        NsError::IntoItself
    );
    assert_err!(
        meta.copy_replacing(&o, &p("nope"), &p("x")).await,
        NsError::NotFound
    );
    assert_eq!(
        names(&meta.list(&o, &p("src")).await.unwrap()),
        ["a", "sub"]
    );
}

pub(super) async fn a_refused_copy_leaves_the_destination_whole(meta: Meta) {
    let o = user(&meta, "bob", Some(50)).await;
    meta.mkdir(&o, &p("s")).await.unwrap();
    meta.commit_file(&o, &p("s/big"), &file(30, 1))
        .await
        .unwrap();
    meta.mkdir(&o, &p("d")).await.unwrap();
    let (old, _) = meta
        .commit_file(&o, &p("d/old"), &file(5, 2))
        .await
        .unwrap();
    let d = meta.lookup(&o, &p("d")).await.unwrap();
    // 35 held; replacing 5 by 30 would hold 60 > 50.
    assert_err!(
        meta.copy_replacing(&o, &p("s"), &p("d")).await,
        NsError::QuotaExceeded { .. }
    );
    let still = |n: Node| (n.id, n.version, n.size);
    assert_eq!(still(meta.lookup(&o, &p("d")).await.unwrap()), still(d));
    assert_eq!(
        still(meta.lookup(&o, &p("d/old")).await.unwrap()),
        still(old)
    );
    assert_eq!((refs(&meta, 1).await, refs(&meta, 2).await), (1, 1));
    assert_eq!(used(&meta, &o).await, 35);
    assert_eq!(meta.stats().await.unwrap().files, 2);
}

pub(super) async fn set_mtime_is_a_change(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    meta.mkdir(&o, &p("d")).await.unwrap();
    let (f, _) = meta.commit_file(&o, &p("d/f"), &file(2, 1)).await.unwrap();
    let d_before = meta.lookup(&o, &p("d")).await.unwrap().etag();
    let set = meta.set_mtime(&o, &p("d/f"), 42_000_000_000).await.unwrap();
    assert_eq!((set.id, set.mtime), (f.id, 42_000_000_000));
    let now = meta.lookup(&o, &p("d/f")).await.unwrap();
    assert_eq!(now.mtime, 42_000_000_000);
    assert_ne!(
        now.etag(),
        f.etag(),
        "a changed mtime is a change of the file"
    );
    assert_ne!(meta.lookup(&o, &p("d")).await.unwrap().etag(), d_before);
    let folder = meta.set_mtime(&o, &p("d"), 7).await.unwrap();
    assert_eq!(meta.lookup(&o, &p("d")).await.unwrap().mtime, folder.mtime);
    assert_err!(meta.set_mtime(&o, &p("nope"), 1).await, NsError::NotFound);
}

/// Every etag a client saw, with the state it stood for.
struct SeenEtags(Vec<String>);

impl SeenEtags {
    /// Records the etags of `paths` after a change; each must be new.
    async fn after_change(&mut self, meta: &Meta, o: &Owner, paths: &[&str]) {
        for path in paths {
            let etag = meta.lookup(o, &p(path)).await.unwrap().etag();
            assert!(!self.0.contains(&etag), "{path}: etag {etag} seen before");
            self.0.push(etag);
        }
    }
}

pub(super) async fn etags_change_on_every_change_and_never_repeat(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    let mut seen = SeenEtags(Vec::new());
    seen.after_change(&meta, &o, &[""]).await;
    meta.mkdir(&o, &p("d")).await.unwrap();
    seen.after_change(&meta, &o, &["", "d"]).await;
    meta.mkdir(&o, &p("d/e")).await.unwrap();
    seen.after_change(&meta, &o, &["", "d", "d/e"]).await;
    let (first, _) = meta
        .commit_file(&o, &p("d/e/f"), &file(1, 1))
        .await
        .unwrap();
    seen.after_change(&meta, &o, &["", "d", "d/e", "d/e/f"])
        .await;
    let (second, _) = meta
        .commit_file(&o, &p("d/e/f"), &file(1, 1))
        .await
        .unwrap();
    assert_eq!(second.id, first.id);
    seen.after_change(&meta, &o, &["", "d", "d/e", "d/e/f"])
        .await;
    meta.remove(&o, &p("d/e/f")).await.unwrap();
    seen.after_change(&meta, &o, &["", "d", "d/e"]).await;
    let (again, _) = meta
        .commit_file(&o, &p("d/e/f"), &file(1, 1))
        .await
        .unwrap();
    assert_ne!(again.id, first.id, "a file id is never reused");
    seen.after_change(&meta, &o, &["", "d", "d/e", "d/e/f"])
        .await;
    meta.remove(&o, &p("d/e/f")).await.unwrap();
    meta.remove(&o, &p("d/e")).await.unwrap();
    meta.mkdir(&o, &p("d/e")).await.unwrap();
    seen.after_change(&meta, &o, &["", "d", "d/e"]).await;
    meta.rename(&o, &p("d/e"), &p("e")).await.unwrap();
    seen.after_change(&meta, &o, &["", "d"]).await;
    // A change elsewhere leaves a sibling's etag alone.
    let e = meta.lookup(&o, &p("e")).await.unwrap().etag();
    meta.mkdir(&o, &p("d/x")).await.unwrap();
    assert_eq!(meta.lookup(&o, &p("e")).await.unwrap().etag(), e);
    // The etag a change answers is the one a lookup then shows.
    let (node, _) = meta.commit_file(&o, &p("e/f"), &file(2, 2)).await.unwrap();
    assert_eq!(
        meta.lookup(&o, &p("e/f")).await.unwrap().etag(),
        node.etag()
    );
}

pub(super) async fn folder_sizes_follow_the_files_below(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    meta.mkdir(&o, &p("a")).await.unwrap();
    meta.mkdir(&o, &p("a/b")).await.unwrap();
    meta.mkdir(&o, &p("c")).await.unwrap();
    meta.commit_file(&o, &p("a/b/f"), &file(10, 1))
        .await
        .unwrap();
    meta.commit_file(&o, &p("a/g"), &file(5, 2)).await.unwrap();
    let size = |path: &'static str| {
        let meta = meta.clone();
        let o = o.clone();
        async move { meta.lookup(&o, &p(path)).await.unwrap().size }
    };
    assert_eq!(
        (size("").await, size("a").await, size("a/b").await),
        (15, 15, 10)
    );
    meta.commit_file(&o, &p("a/b/f"), &file(4, 3))
        .await
        .unwrap();
    assert_eq!(
        (size("").await, size("a").await, size("a/b").await),
        (9, 9, 4)
    );
    meta.rename(&o, &p("a/b"), &p("c/b")).await.unwrap();
    assert_eq!(
        (size("a").await, size("c").await, size("").await),
        (5, 4, 9)
    );
    meta.copy_file(&o, &p("a/g"), &p("c/g")).await.unwrap();
    assert_eq!((size("c").await, size("").await), (9, 14));
    meta.remove(&o, &p("c/b/f")).await.unwrap();
    assert_eq!(
        (size("c/b").await, size("c").await, size("").await),
        (0, 5, 10)
    );
    meta.rename_replacing(&o, &p("a"), &p("c")).await.unwrap();
    assert_eq!((size("c").await, size("").await), (5, 5));
}

pub(super) async fn commit_file_creates_then_replaces(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    let mut commit = file_of(&[(1, 3), (2, 4)]);
    commit.mtime = Some(5_000_000_000);
    commit.checksums = Some("MD5:ab".into());
    let (f, created) = meta.commit_file(&o, &p("f"), &commit).await.unwrap();
    assert!(created);
    assert_eq!((f.size, f.mtime, f.owner), (7, 5_000_000_000, o.id));
    assert_eq!(f.digest, Some(manifest_digest(&commit.chunks)));
    assert_eq!(f.checksums.as_deref(), Some("MD5:ab"));
    assert_eq!(meta.manifest(f.id).await.unwrap(), commit.chunks);
    let next = file(9, 3);
    let (g, created) = meta.commit_file(&o, &p("f"), &next).await.unwrap();
    assert!(!created);
    assert_eq!((g.id, g.size, g.checksums.clone()), (f.id, 9, None));
    assert_ne!(g.digest, f.digest);
    assert_eq!(meta.manifest(f.id).await.unwrap(), next.chunks);
    assert_eq!(used(&meta, &o).await, 9);
    // Without an mtime the commit records the time of the change.
    let before = crate::clock::unix_nanos();
    let (h, _) = meta.commit_file(&o, &p("h"), &file(1, 4)).await.unwrap();
    assert!(h.mtime >= before && h.mtime <= crate::clock::unix_nanos());
    // An empty file has no chunks.
    let empty = file_of(&[]);
    let (e, _) = meta.commit_file(&o, &p("empty"), &empty).await.unwrap();
    assert_eq!(e.size, 0);
    assert!(meta.manifest(e.id).await.unwrap().is_empty());
}

pub(super) async fn commit_file_refuses_folders_and_missing_parents(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    meta.mkdir(&o, &p("d")).await.unwrap();
    meta.commit_file(&o, &p("f"), &file(1, 1)).await.unwrap();
    assert_err!(
        meta.commit_file(&o, &[], &file(1, 2)).await,
        NsError::IsADirectory
    );
    assert_err!(
        meta.commit_file(&o, &p("d"), &file(1, 2)).await,
        NsError::IsADirectory
    );
    let no_parent = meta.commit_file(&o, &p("x/f"), &file(1, 2)).await;
    assert_err!(no_parent, NsError::ParentMissing);
    let under_file = meta.commit_file(&o, &p("f/g"), &file(1, 2)).await;
    assert_err!(under_file, NsError::ParentMissing);
    assert!(meta.lookup(&o, &p("d")).await.unwrap().is_dir());
    assert_eq!(refs(&meta, 2).await, 0);
    assert!(!meta.chunk_known(&[2; 32]).await.unwrap());
    assert_eq!(used(&meta, &o).await, 1);
}

pub(super) async fn open_file_and_write_target_read_one_snapshot(meta: Meta) {
    let o = user(&meta, "ann", Some(1000)).await;
    meta.mkdir(&o, &p("d")).await.unwrap();
    let commit = file_of(&[(1, 3), (2, 4), (1, 3)]);
    let (f, _) = meta.commit_file(&o, &p("d/f"), &commit).await.unwrap();
    let (node, manifest) = meta.open_file(&o, &p("d/f")).await.unwrap();
    assert_eq!((node.id, node.size), (f.id, 10));
    assert_eq!(manifest, commit.chunks);
    assert_err!(meta.open_file(&o, &p("d")).await, NsError::IsADirectory);
    assert_err!(meta.open_file(&o, &p("d/nope")).await, NsError::NotFound);
    let target = meta.write_target(&o, &p("d/f")).await.unwrap();
    assert_eq!(target.existing.unwrap().id, f.id);
    assert!(target.parent.unwrap().is_dir());
    assert_eq!(
        (target.holdings.used, target.holdings.quota),
        (10, Some(1000))
    );
    let fresh = meta.write_target(&o, &p("d/new")).await.unwrap();
    assert_err!(fresh.existing, NsError::NotFound);
    assert!(fresh.parent.is_ok());
    let orphan = meta.write_target(&o, &p("x/new")).await.unwrap();
    assert_err!(orphan.parent, NsError::NotFound);
}
