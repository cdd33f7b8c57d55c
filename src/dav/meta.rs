//! Node metadata as dav-server sees it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dav_server::fs::{DavDirEntry, DavMetaData, FsFuture, FsResult};
use futures_util::FutureExt;

use crate::index::Node;

/// A node's metadata; the etag is the node's change version, so it is the
/// same in every reply and changes whenever the node or its content does.
#[derive(Debug, Clone)]
pub struct NodeMeta(pub Node);

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
        self.0.size
    }

    fn modified(&self) -> FsResult<SystemTime> {
        Ok(modified(&self.0))
    }

    fn is_dir(&self) -> bool {
        self.0.is_dir()
    }

    fn etag(&self) -> Option<String> {
        Some(self.0.etag())
    }

    fn created(&self) -> FsResult<SystemTime> {
        Ok(created(&self.0))
    }
}

/// One entry of a folder listing.
pub(crate) struct Entry {
    name: String,
    meta: NodeMeta,
}

impl Entry {
    pub(crate) fn new(name: String, node: Node) -> Self {
        Self {
            name,
            meta: NodeMeta(node),
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
