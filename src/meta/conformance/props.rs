//! Conformance cases for dead properties: patches applied whole or not at
//! all, the caps of [`LIMITS`], their cost in the quota, and how they
//! follow a node through a rename and onto a copy.

use super::*;
use crate::meta::NsError;

/// A patch that removes the property `name`.
fn unset(name: &str) -> (bool, StoredProp) {
    let mut gone = prop(name, b"");
    gone.xml = None;
    (false, gone)
}

fn set(name: &str, value: &[u8]) -> (bool, StoredProp) {
    (true, prop(name, value))
}

/// The property names of the node at `path`, sorted.
async fn prop_names(meta: &Meta, o: &Owner, path: &str) -> Vec<String> {
    let mut out: Vec<String> = meta
        .props(o, &p(path))
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    out.sort();
    out
}

pub(super) async fn a_patch_applies_all_or_none(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    let (f, _) = meta.commit_file(&o, &p("f"), &file(1, 1)).await.unwrap();
    assert!(!meta.has_props(&o, &p("f")).await.unwrap());
    meta.patch_props(&o, &p("f"), &[set("a", b"1"), set("b", b"2")])
        .await
        .unwrap();
    assert!(meta.has_props(&o, &p("f")).await.unwrap());
    let stored = meta.props(&o, &p("f")).await.unwrap();
    assert!(stored.contains(&prop("a", b"1")) && stored.contains(&prop("b", b"2")));
    assert_eq!(stored.len(), 2);
    // A value too large refuses the whole patch, the removal included.
    let mixed = [unset("a"), set("c", &[b'x'; 33])];
    let refused = meta.patch_props(&o, &p("f"), &mixed).await;
    assert_err!(
        refused,
        NsError::PropTooLarge {
            len: 33,
            max: 32,
            ..
        }
    );
    assert_eq!(prop_names(&meta, &o, "f").await, ["a", "b"]);
    meta.patch_props(&o, &p("f"), &[unset("a"), set("b", b"22")])
        .await
        .unwrap();
    assert_eq!(meta.props(&o, &p("f")).await.unwrap(), [prop("b", b"22")]);
    // Removing what is not there changes nothing.
    meta.patch_props(&o, &p("f"), &[unset("zz")]).await.unwrap();
    // Several nodes at once: those without properties are left out.
    let (g, _) = meta.commit_file(&o, &p("g"), &file(1, 1)).await.unwrap();
    let of_nodes = meta.props_of_nodes(&[f.id, g.id]).await.unwrap();
    assert_eq!(of_nodes.len(), 1);
    assert_eq!(of_nodes[&f.id], [prop("b", b"22")]);
    let missing = meta.patch_props(&o, &p("nope"), &[set("a", b"1")]).await;
    assert_err!(missing, NsError::NotFound);
    assert_err!(meta.props(&o, &p("nope")).await, NsError::NotFound);
    // The root folder holds properties too.
    meta.patch_props(&o, &[], &[set("r", b"1")]).await.unwrap();
    assert_eq!(prop_names(&meta, &o, "").await, ["r"]);
}

pub(super) async fn caps_refuse_the_whole_patch(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    meta.mkdir(&o, &p("d")).await.unwrap();
    let three = [set("a", b"1"), set("b", b"2"), set("c", &[b'v'; 32])];
    meta.patch_props(&o, &p("d"), &three).await.unwrap();
    let fourth = meta.patch_props(&o, &p("d"), &[set("e", b"4")]).await;
    assert_err!(fourth, NsError::TooManyProps(3));
    // Replacing one at the cap is allowed; so is a swap in one patch.
    meta.patch_props(&o, &p("d"), &[set("a", b"11")])
        .await
        .unwrap();
    meta.patch_props(&o, &p("d"), &[unset("b"), set("e", b"5")])
        .await
        .unwrap();
    assert_eq!(prop_names(&meta, &o, "d").await, ["a", "c", "e"]);
    let too_many = [set("f", b"6"), set("g", b"7"), unset("a")];
    assert_err!(
        meta.patch_props(&o, &p("d"), &too_many).await,
        NsError::TooManyProps(3)
    );
    assert_eq!(prop_names(&meta, &o, "d").await, ["a", "c", "e"]);
    // The same name in another namespace is another property.
    let mut other = prop("a", b"1");
    other.namespace = Some("urn:y".into());
    let refused = meta.patch_props(&o, &p("d"), &[(true, other)]).await;
    assert_err!(refused, NsError::TooManyProps(3));
}

pub(super) async fn dead_properties_count_in_the_quota(meta: Meta) {
    let o = user(&meta, "ann", Some(1000)).await;
    meta.commit_file(&o, &p("f"), &file(10, 1)).await.unwrap();
    meta.commit_file(&o, &p("g"), &file(10, 2)).await.unwrap();
    meta.patch_props(&o, &p("f"), &[set("a", b"12345")])
        .await
        .unwrap();
    let cost = used(&meta, &o).await - 20;
    assert!(
        cost >= 6,
        "a property costs at least its name and value: {cost}"
    );
    // The same property costs the same on another node.
    meta.patch_props(&o, &p("g"), &[set("a", b"12345")])
        .await
        .unwrap();
    assert_eq!(used(&meta, &o).await, 20 + 2 * cost);
    // A longer value costs the extra bytes exactly.
    meta.patch_props(&o, &p("g"), &[set("a", b"1234567")])
        .await
        .unwrap();
    assert_eq!(used(&meta, &o).await, 20 + 2 * cost + 2);
    meta.patch_props(&o, &p("g"), &[unset("a")]).await.unwrap();
    assert_eq!(used(&meta, &o).await, 20 + cost);
    // Removing the node frees its properties' bytes.
    meta.remove(&o, &p("f")).await.unwrap();
    assert_eq!(used(&meta, &o).await, 10);
    // Exactly the quota passes; one byte more does not.
    meta.patch_props(&o, &p("g"), &[set("a", b"12345")])
        .await
        .unwrap();
    let room = 1000 - used(&meta, &o).await;
    let one_more = meta
        .commit_file(&o, &p("h"), &file(room as u32 + 1, 3))
        .await;
    assert_err!(one_more, NsError::QuotaExceeded { .. });
    meta.commit_file(&o, &p("h"), &file(room as u32, 3))
        .await
        .unwrap();
    let no_room = meta.patch_props(&o, &p("g"), &[set("b", b"1")]).await;
    assert_err!(no_room, NsError::QuotaExceeded { .. });
    // Shrinking a property is allowed at the quota.
    meta.patch_props(&o, &p("g"), &[set("a", b"1234")])
        .await
        .unwrap();
    assert_eq!(used(&meta, &o).await, 999);
}

pub(super) async fn properties_follow_a_rename_and_copy_props(meta: Meta) {
    let o = user(&meta, "ann", None).await;
    meta.mkdir(&o, &p("d")).await.unwrap();
    meta.commit_file(&o, &p("d/f"), &file(1, 1)).await.unwrap();
    meta.patch_props(&o, &p("d/f"), &[set("a", b"1"), set("b", b"2")])
        .await
        .unwrap();
    let cost_of_f = used(&meta, &o).await - 1;
    meta.patch_props(&o, &p("d"), &[set("dir", b"x")])
        .await
        .unwrap();
    meta.rename(&o, &p("d"), &p("e")).await.unwrap();
    meta.rename(&o, &p("e/f"), &p("e/g")).await.unwrap();
    assert_eq!(prop_names(&meta, &o, "e/g").await, ["a", "b"]);
    assert_eq!(prop_names(&meta, &o, "e").await, ["dir"]);
    let before = used(&meta, &o).await;
    // A copied file starts without properties; copy_props brings them,
    // and they cost what they cost on the original.
    meta.copy_file(&o, &p("e/g"), &p("c")).await.unwrap();
    assert!(!meta.has_props(&o, &p("c")).await.unwrap());
    meta.copy_props(&o, &p("e/g"), &p("c")).await.unwrap();
    assert_eq!(prop_names(&meta, &o, "c").await, ["a", "b"]);
    assert_eq!(used(&meta, &o).await, before + 1 + cost_of_f);
    // Copying from a node without properties changes nothing.
    meta.commit_file(&o, &p("bare"), &file(1, 2)).await.unwrap();
    meta.copy_props(&o, &p("bare"), &p("c")).await.unwrap();
    assert_eq!(prop_names(&meta, &o, "c").await, ["a", "b"]);
    let missing = meta.copy_props(&o, &p("e/g"), &p("nope")).await;
    assert_err!(missing, NsError::NotFound);
    // A rename over a node drops the replaced node's properties.
    meta.rename_replacing(&o, &p("bare"), &p("c"))
        .await
        .unwrap();
    assert!(!meta.has_props(&o, &p("c")).await.unwrap());
    assert_eq!(used(&meta, &o).await, before + 1);
}
