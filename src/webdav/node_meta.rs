//! Node metadata as dav-server sees it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dav_server::fs::{DavDirEntry, DavMetaData, FsFuture, FsResult};
use futures_util::FutureExt;

use crate::crypto::VisibleIds;
use crate::meta::Node;

/// A node's metadata; the etag is the visible form of the node's change
/// version, so it is the same in every reply and changes whenever the node
/// or its content does. dav-server also compares `If`, `If-Match` and
/// `If-None-Match` against it, so clients' conditions are checked in the
/// form they saw.
#[derive(Debug, Clone)]
pub struct NodeMeta {
    node: Node,
    ids: Arc<VisibleIds>,
}

impl NodeMeta {
    pub fn new(node: Node, ids: Arc<VisibleIds>) -> Self {
        Self { node, ids }
    }
}

fn unix_ns(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH
    }
}

/// The modification time a node reports (`getlastmodified`).
pub(crate) fn modified(node: &Node) -> SystemTime {
    unix_ns(node.mtime)
}

/// The creation time a node reports (`creationdate`), to the second.
pub(crate) fn created(node: &Node) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(node.created.max(0) as u64)
}

impl DavMetaData for NodeMeta {
    fn len(&self) -> u64 {
        self.node.size
    }

    fn modified(&self) -> FsResult<SystemTime> {
        Ok(modified(&self.node))
    }

    fn is_dir(&self) -> bool {
        self.node.is_dir()
    }

    fn etag(&self) -> Option<String> {
        Some(self.ids.etag(self.node.id, self.node.version))
    }

    fn created(&self) -> FsResult<SystemTime> {
        Ok(created(&self.node))
    }
}

/// One entry of a folder listing.
pub(crate) struct Entry {
    name: String,
    meta: NodeMeta,
}

impl Entry {
    pub(crate) fn new(name: String, node: Node, ids: Arc<VisibleIds>) -> Self {
        Self {
            name,
            meta: NodeMeta::new(node, ids),
        }
    }
}

impl DavDirEntry for Entry {
    fn name(&self) -> Vec<u8> {
        self.name.as_bytes().to_vec()
    }

    fn metadata(&'_ self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let m: Box<dyn DavMetaData> = Box::new(self.meta.clone());
        async move { Ok(m) }.boxed()
    }
}
