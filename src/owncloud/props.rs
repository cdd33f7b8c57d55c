//! The ownCloud (`oc:`) and Nextcloud (`nc:`) properties sync clients read
//! in PROPFIND, synthesized from the node itself (nothing is stored for
//! them): `oc:id`, `oc:fileid`, `oc:permissions`, `oc:size`,
//! `oc:checksums`, `oc:downloadURL`, `oc:dDC`, `oc:share-types`,
//! `oc:data-fingerprint`, `oc:owner-id`, `oc:owner-display-name`,
//! `nc:is-encrypted`. The ids are the visible ones ([`VisibleIds`]), never
//! the internal node id.
//!
//! dav-server asks the file system for any property outside its own
//! namespaces one at a time (`get_prop`) and checks `have_props` before
//! each; [`PropsCache`] keeps those calls from resolving the same path over
//! and over: a PROPFIND's folder listing is remembered, so the properties
//! of every listed entry come from memory.

use crate::xml_escape::escape;
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::crypto::VisibleIds;
use crate::meta::Node;
use crate::meta::{NamePath, StoredProp};

pub const NS_OWNCLOUD: &str = "http://owncloud.org/ns";
pub const NS_NEXTCLOUD: &str = "http://nextcloud.org/ns";

/// Permissions ownCloud reports: R share, G read, D delete, N rename,
/// V move, W write, C create file, K create folder.
pub const FILE_PERMISSIONS: &str = "RGDNVW";
pub const FOLDER_PERMISSIONS: &str = "RGDNVCK";

fn element(prefix: &str, ns: &str, name: &str, inner: &str, declare: bool) -> Vec<u8> {
    if declare {
        format!("<{prefix}:{name} xmlns:{prefix}=\"{ns}\">{inner}</{prefix}:{name}>").into_bytes()
    } else {
        format!("<{prefix}:{name}>{inner}</{prefix}:{name}>").into_bytes()
    }
}

const OC_NAMES: [&str; 11] = [
    "id",
    "fileid",
    "permissions",
    "size",
    "checksums",
    "downloadURL",
    "dDC",
    "share-types",
    "data-fingerprint",
    "owner-id",
    "owner-display-name",
];

/// Whether the property is answered from the node (never from storage).
pub fn is_synthesized(namespace: Option<&str>, name: &str) -> bool {
    match namespace {
        Some(NS_OWNCLOUD) => OC_NAMES.contains(&name),
        Some(NS_NEXTCLOUD) => name == "is-encrypted",
        _ => false,
    }
}

/// The value of a synthesized property, or `None` when the property is not
/// one of them (or has no value for this node, e.g. `oc:checksums` of a
/// folder): the caller then falls back to stored dead properties.
pub fn render(
    namespace: Option<&str>,
    name: &str,
    node: &Node,
    owner_name: &str,
    ids: &VisibleIds,
) -> Option<Vec<u8>> {
    render_as(namespace, name, node, owner_name, ids, true)
}

/// Like [`render`], for a document that already declares the `oc` and `nc`
/// prefixes: the element carries no namespace declaration of its own.
pub fn render_in_scope(
    namespace: Option<&str>,
    name: &str,
    node: &Node,
    owner_name: &str,
    ids: &VisibleIds,
) -> Option<Vec<u8>> {
    render_as(namespace, name, node, owner_name, ids, false)
}

fn render_as(
    namespace: Option<&str>,
    name: &str,
    node: &Node,
    owner_name: &str,
    ids: &VisibleIds,
    declare: bool,
) -> Option<Vec<u8>> {
    match namespace? {
        NS_OWNCLOUD => {
            let text = match name {
                "id" => ids.oc_id(node.id),
                "fileid" => ids.file_id(node.id).to_string(),
                "permissions" => if node.is_dir() {
                    FOLDER_PERMISSIONS
                } else {
                    FILE_PERMISSIONS
                }
                .to_string(),
                "size" => node.size.to_string(),
                "checksums" => {
                    let sums = node.checksums.as_deref().filter(|_| !node.is_dir())?;
                    let inner = format!("<oc:checksum>{}</oc:checksum>", escape(sums));
                    return Some(element("oc", NS_OWNCLOUD, name, &inner, declare));
                }
                "downloadURL" | "dDC" | "share-types" | "data-fingerprint" => String::new(),
                "owner-id" | "owner-display-name" => escape(owner_name),
                _ => return None,
            };
            Some(element("oc", NS_OWNCLOUD, name, &text, declare))
        }
        NS_NEXTCLOUD => match name {
            "is-encrypted" => Some(element("nc", NS_NEXTCLOUD, name, "0", declare)),
            _ => None,
        },
        _ => None,
    }
}

#[derive(Default)]
struct CacheInner {
    /// The folder last listed, and its entries by name.
    listing: Option<(NamePath, HashMap<String, Node>)>,
    /// The node last looked up by path.
    last: Option<(NamePath, Node)>,
    /// Dead properties of the listed folder's entries, by node id.
    dead: HashMap<u64, Vec<StoredProp>>,
}

/// Per-request memory of nodes, for PROPFIND only (where nothing changes
/// while the reply is produced).
#[derive(Clone, Default)]
pub struct PropsCache(Arc<Mutex<CacheInner>>);

impl std::fmt::Debug for PropsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PropsCache")
    }
}

impl PropsCache {
    /// Remembers a folder's entries.
    pub fn remember_listing(&self, dir: &[String], entries: &[(String, Node)]) {
        let map = entries.iter().cloned().collect();
        self.0.lock().listing = Some((dir.to_vec(), map));
    }

    /// Remembers the dead properties of the listed entries.
    pub fn remember_dead(&self, dead: HashMap<u64, Vec<StoredProp>>) {
        self.0.lock().dead = dead;
    }

    /// The dead properties of an entry of the listed folder (empty when it
    /// has none); `None` when `path` is not in the listing.
    pub fn dead_props(&self, path: &[String]) -> Option<Vec<StoredProp>> {
        let inner = self.0.lock();
        let (name, parent) = path.split_last()?;
        match &inner.listing {
            Some((dir, map)) if dir.as_slice() == parent => {
                let node = map.get(name)?;
                Some(inner.dead.get(&node.id).cloned().unwrap_or_default())
            }
            _ => None,
        }
    }

    pub fn remember(&self, path: &[String], node: &Node) {
        self.0.lock().last = Some((path.to_vec(), node.clone()));
    }

    pub fn get(&self, path: &[String]) -> Option<Node> {
        let inner = self.0.lock();
        if let Some((p, n)) = &inner.last {
            if p.as_slice() == path {
                return Some(n.clone());
            }
        }
        let (name, parent) = path.split_last()?;
        match &inner.listing {
            Some((dir, map)) if dir.as_slice() == parent => map.get(name).cloned(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::NodeKind;

    fn node(kind: NodeKind) -> Node {
        Node {
            id: 42,
            parent: 1,
            owner: 1,
            kind,
            size: 1234,
            mtime: 0,
            created: 0,
            version: 7,
            digest: None,
            checksums: Some("SHA1:ab MD5:cd ADLER32:ef".into()),
        }
    }

    fn ids() -> VisibleIds {
        VisibleIds::new(
            &crate::crypto::MasterKey::from_bytes([9; 32]).derive(),
            0xabc,
        )
    }

    fn text(ns: &str, name: &str, n: &Node) -> Option<String> {
        render(Some(ns), name, n, "al&ice", &ids()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn renders_oc_properties() {
        let f = node(NodeKind::File);
        let d = node(NodeKind::Dir);
        // The visible id, never the node id.
        let fileid = ids().file_id(42);
        assert_ne!(fileid, 42);
        assert_eq!(
            text(NS_OWNCLOUD, "id", &f).unwrap(),
            format!("<oc:id xmlns:oc=\"http://owncloud.org/ns\">{fileid:08}oc0000000abc</oc:id>")
        );
        assert!(text(NS_OWNCLOUD, "fileid", &f)
            .unwrap()
            .contains(&format!(">{fileid}<")));
        assert!(text(NS_OWNCLOUD, "permissions", &f)
            .unwrap()
            .contains(">RGDNVW<"));
        assert!(text(NS_OWNCLOUD, "permissions", &d)
            .unwrap()
            .contains(">RGDNVCK<"));
        assert!(text(NS_OWNCLOUD, "size", &d).unwrap().contains(">1234<"));
        assert!(text(NS_OWNCLOUD, "checksums", &f)
            .unwrap()
            .contains("<oc:checksum>SHA1:ab MD5:cd ADLER32:ef</oc:checksum>"));
        assert_eq!(text(NS_OWNCLOUD, "checksums", &d), None);
        assert!(text(NS_OWNCLOUD, "owner-id", &f)
            .unwrap()
            .contains(">al&amp;ice<"));
        assert!(text(NS_OWNCLOUD, "share-types", &f).is_some());
        assert_eq!(text(NS_OWNCLOUD, "favorite", &f), None);
        assert!(text(NS_NEXTCLOUD, "is-encrypted", &f).is_some());
        assert_eq!(text("DAV:", "getetag", &f), None);
    }

    #[test]
    fn cache_serves_listed_entries() {
        let c = PropsCache::default();
        let dir = vec!["a".to_string()];
        c.remember_listing(&dir, &[("x".into(), node(NodeKind::File))]);
        assert!(c.get(&["a".into(), "x".into()]).is_some());
        assert!(c.get(&["a".into(), "y".into()]).is_none());
        assert!(c.get(&["b".into(), "x".into()]).is_none());
        c.remember(&dir, &node(NodeKind::Dir));
        assert!(c.get(&dir).is_some());
        assert!(c.get(&[]).is_none());
    }
}
