//! The per-user namespace: folders and files as an inode-style tree in the
//! index. Directory entries are keyed by (parent id, name), so moving a folder
//! rewrites one entry whatever lies below it. Every operation here is one
//! write transaction: it applies completely or not at all.

use std::collections::HashMap;
use std::sync::Arc;

use redb::ReadableTable;

use crate::crypto::ChunkId;
use crate::meta::records::encode_manifest;
use crate::meta::redb::tables::KEY_FILES;
use crate::meta::redb::tables::KEY_STORED_BYTES;
use crate::meta::redb::tx::{get_child, get_manifest, get_node, get_user, ReadTables, WriteTables};
use crate::meta::{
    manifest_digest, prop_cost, ChunkRecord, IndexError, ManifestEntry, Node, NodeKind,
};

use super::Index;
use crate::meta::tree::{FileCommit, NsError, Owner, PropLimits, WriteTarget};
use crate::meta::{Holdings, StoredProp};

fn prop_key(namespace: Option<&str>, name: &str) -> String {
    format!("{}\0{}", namespace.unwrap_or(""), name)
}

/// The tree operations, over the shared index.
#[derive(Clone)]
pub struct Namespace {
    pub(super) index: Arc<Index>,
    pub(super) prop_limits: PropLimits,
}

pub(super) fn resolve_in<T: ReadableTable<(u64, &'static str), u64>>(
    dirents: &T,
    root: u64,
    path: &[String],
) -> Result<u64, NsError> {
    let mut id = root;
    for seg in path {
        id = get_child(dirents, id, seg)?.ok_or(NsError::NotFound)?;
    }
    Ok(id)
}

impl Namespace {
    pub fn new(index: Arc<Index>) -> Self {
        Self {
            index,
            prop_limits: PropLimits::default(),
        }
    }

    /// The same namespace with other caps on dead properties.
    pub fn with_prop_limits(mut self, limits: PropLimits) -> Self {
        self.prop_limits = limits;
        self
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// The node at `path` in the owner's tree.
    pub fn lookup(&self, owner: &Owner, path: &[String]) -> Result<Node, NsError> {
        self.index.read(|t: &ReadTables| {
            let id = resolve_in(t.dirents()?, owner.root, path)?;
            get_node(t.nodes()?, id)?.ok_or(NsError::NotFound)
        })
    }

    /// What a write to `path` needs to know, read in one snapshot: the node
    /// there now, the parent folder, and the owner's usage and quota.
    pub fn write_target(&self, owner: &Owner, path: &[String]) -> Result<WriteTarget, NsError> {
        let parent_path = path.split_last().map_or(path, |(_, p)| p);
        self.index.read(|t: &ReadTables| {
            let node_at = |p: &[String]| -> Result<Node, NsError> {
                let id = resolve_in(t.dirents()?, owner.root, p)?;
                get_node(t.nodes()?, id)?.ok_or(NsError::NotFound)
            };
            Ok(WriteTarget {
                existing: node_at(path),
                parent: node_at(parent_path),
                holdings: super::quota::read_holdings(t.users()?, t.uploads()?, owner, None)?,
            })
        })
    }

    /// The entries of the folder at `path`, sorted by name.
    pub fn list(&self, owner: &Owner, path: &[String]) -> Result<Vec<(String, Node)>, NsError> {
        self.index.read(|t: &ReadTables| {
            let id = resolve_in(t.dirents()?, owner.root, path)?;
            let dir = get_node(t.nodes()?, id)?.ok_or(NsError::NotFound)?;
            if !dir.is_dir() {
                return Err(NsError::NotADirectory);
            }
            let mut out = Vec::new();
            for row in t.dirents()?.range((id, "")..(id + 1, ""))? {
                let (k, v) = row.map_err(IndexError::from)?;
                let node = get_node(t.nodes()?, v.value())?.ok_or_else(|| IndexError::Corrupt {
                    table: "dirents",
                    cause: format!("entry points at missing node {}", v.value()),
                })?;
                out.push((k.value().1.to_string(), node));
            }
            Ok(out)
        })
    }

    /// A file node and its manifest, read in one snapshot.
    pub fn open_file(
        &self,
        owner: &Owner,
        path: &[String],
    ) -> Result<(Node, Vec<ManifestEntry>), NsError> {
        self.index.read(|t: &ReadTables| {
            let id = resolve_in(t.dirents()?, owner.root, path)?;
            let node = get_node(t.nodes()?, id)?.ok_or(NsError::NotFound)?;
            if node.is_dir() {
                return Err(NsError::IsADirectory);
            }
            let manifest = get_manifest(t.manifests()?, id)?;
            let total: u64 = manifest.iter().map(|e| e.len as u64).sum();
            if total != node.size {
                return Err(NsError::Index(IndexError::Corrupt {
                    table: "manifests",
                    cause: format!(
                        "file {} has {} bytes but its manifest {}",
                        id, node.size, total
                    ),
                }));
            }
            Ok((node, manifest))
        })
    }

    /// The manifest of a file node.
    pub fn manifest(&self, node: u64) -> Result<Vec<ManifestEntry>, NsError> {
        Ok(self
            .index
            .read(|t: &ReadTables| get_manifest(t.manifests()?, node))?)
    }

    /// What the owner holds against their quota (files, dead properties
    /// and unfinished chunked uploads).
    pub fn holdings(&self, owner: &Owner) -> Result<Holdings, NsError> {
        self.index.read(|t: &ReadTables| {
            super::quota::read_holdings(t.users()?, t.uploads()?, owner, None)
        })
    }

    /// The owner's (logical bytes used, quota).
    pub fn usage(&self, owner: &Owner) -> Result<(u64, Option<u64>), NsError> {
        self.index.read(|t: &ReadTables| {
            let u = get_user(t.users()?, &owner.name)?.ok_or(NsError::NoUser)?;
            Ok((u.used, u.quota))
        })
    }

    /// Creates a folder.
    pub fn mkdir(&self, owner: &Owner, path: &[String]) -> Result<Node, NsError> {
        let (name, parent_path) = path.split_last().ok_or(NsError::Exists)?;
        self.index.write(|t| {
            let parent = parent_dir(t, owner, parent_path)?;
            if get_child(&*t.dirents, parent.id, name)?.is_some() {
                return Err(NsError::Exists);
            }
            let version = t.next_change()?;
            let node = Node {
                id: t.next_id()?,
                parent: parent.id,
                owner: owner.id,
                kind: NodeKind::Dir,
                size: 0,
                mtime: crate::clock::unix_nanos(),
                created: crate::clock::unix_nanos() / 1_000_000_000,
                version,
                digest: None,
                checksums: None,
            };
            t.put_node(&node)?;
            t.dirents.insert((parent.id, name.as_str()), node.id)?;
            t.touch_up(parent.id, version)?;
            Ok(node)
        })
    }

    /// Makes `commit` the content of the file at `path` (creating it or
    /// replacing the previous version) in one transaction: chunk references
    /// are taken (each re-checked to be stored), the old version's released,
    /// the quota checked. Returns the node and whether it was created.
    pub fn commit_file(
        &self,
        owner: &Owner,
        path: &[String],
        commit: &FileCommit,
    ) -> Result<(Node, bool), NsError> {
        self.index
            .write(|t| commit_file_in(t, owner, path, commit, None))
    }

    /// Removes a file, or an empty folder.
    pub fn remove(&self, owner: &Owner, path: &[String]) -> Result<(), NsError> {
        let (name, parent_path) = path.split_last().ok_or(NsError::Root)?;
        let now = (crate::clock::unix_nanos() / 1_000_000_000) as u64;
        self.index.write(|t| {
            let parent = parent_dir(t, owner, parent_path)?;
            let id = get_child(&*t.dirents, parent.id, name)?.ok_or(NsError::NotFound)?;
            let node = t.node(id)?.ok_or(NsError::NotFound)?;
            if node.is_dir() {
                if t.dirents.range((id, "")..(id + 1, ""))?.next().is_some() {
                    return Err(NsError::NotEmpty);
                }
            } else {
                let m = get_manifest(&*t.manifests, id)?;
                t.release_chunks(&m, now)?;
                t.add_counter(KEY_FILES, -1)?;
            }
            t.dirents.remove((parent.id, name.as_str()))?;
            let props = t.drop_node(id)?;
            let file_bytes = if node.is_dir() { 0 } else { node.size };
            super::quota::credit(t, owner, file_bytes + props)?;
            let version = t.next_change()?;
            // An empty folder has size 0, so this is right for both kinds.
            t.touch_up_sized(parent.id, version, -(node.size as i64))?;
            Ok(())
        })
    }

    /// Moves a node to `to` (which must not exist). The node keeps its id.
    pub fn rename(&self, owner: &Owner, from: &[String], to: &[String]) -> Result<Node, NsError> {
        self.index.write(|t| rename_in(t, owner, from, to, false))
    }

    /// Moves a node to `to`, replacing whatever is there (a file or a whole
    /// folder) in the same transaction: a crash leaves either the old
    /// destination or the moved node, never neither.
    pub fn rename_replacing(
        &self,
        owner: &Owner,
        from: &[String],
        to: &[String],
    ) -> Result<Node, NsError> {
        self.index.write(|t| rename_in(t, owner, from, to, true))
    }

    /// Copies a file: the copy shares the source's chunks (references go up,
    /// nothing is uploaded). An existing destination file is replaced.
    pub fn copy_file(
        &self,
        owner: &Owner,
        from: &[String],
        to: &[String],
    ) -> Result<Node, NsError> {
        let src = self.lookup(owner, from)?;
        if src.is_dir() {
            return Err(NsError::IsADirectory);
        }
        let chunks = self.manifest(src.id)?;
        let commit = FileCommit {
            size: src.size,
            chunks,
            uploaded: Vec::new(),
            mtime: Some(src.mtime),
            checksums: src.checksums.clone(),
        };
        // The source's chunks are referenced by the source itself; if it
        // changed meanwhile, the commit's own re-check still guarantees
        // every chunk it references is stored.
        self.commit_file(owner, to, &commit).map(|(n, _)| n)
    }

    /// Copies the file or folder `from` (everything below it, dead
    /// properties included) to `to`, replacing whatever is there, in one
    /// transaction: a refusal (quota, a copy into itself) or a crash leaves
    /// the old destination whole. Files share the source's chunks.
    pub fn copy_replacing(
        &self,
        owner: &Owner,
        from: &[String],
        to: &[String],
    ) -> Result<Node, NsError> {
        self.index.write(|t| copy_replacing_in(t, owner, from, to))
    }

    /// Sets a node's modification time (Unix ns). Like every change, it
    /// takes a new version for the node and its ancestors (new etags).
    pub fn set_mtime(&self, owner: &Owner, path: &[String], mtime: i64) -> Result<Node, NsError> {
        self.index.write(|t| {
            let id = resolve_in(&*t.dirents, owner.root, path)?;
            let mut node = t.node(id)?.ok_or(NsError::NotFound)?;
            node.mtime = mtime;
            node.version = t.next_change()?;
            t.put_node(&node)?;
            t.touch_up(node.parent, node.version)?;
            Ok(node)
        })
    }

    /// Whether the node at `path` has dead properties.
    pub fn has_props(&self, owner: &Owner, path: &[String]) -> Result<bool, NsError> {
        self.index.read(|t: &ReadTables| {
            let id = resolve_in(t.dirents()?, owner.root, path)?;
            Ok(t.props()?.range((id, "")..(id + 1, ""))?.next().is_some())
        })
    }

    /// The dead properties of the node at `path`.
    pub fn props(&self, owner: &Owner, path: &[String]) -> Result<Vec<StoredProp>, NsError> {
        self.index.read(|t: &ReadTables| {
            let id = resolve_in(t.dirents()?, owner.root, path)?;
            props_of(t, id)
        })
    }

    /// The dead properties of many nodes, read in one snapshot (a folder
    /// listing); nodes without any are left out.
    pub fn props_of_nodes(&self, ids: &[u64]) -> Result<HashMap<u64, Vec<StoredProp>>, NsError> {
        self.index.read(|t: &ReadTables| {
            let mut out = HashMap::new();
            for &id in ids {
                let props = props_of(t, id)?;
                if !props.is_empty() {
                    out.insert(id, props);
                }
            }
            Ok(out)
        })
    }

    /// Sets (`set == true`) or removes dead properties, all in one
    /// transaction: a value over `limits.prop_value_bytes`, more than
    /// `limits.props_per_node` on the node, or more bytes than the owner's
    /// quota has room for refuses the whole patch.
    pub fn patch_props(
        &self,
        owner: &Owner,
        path: &[String],
        patch: &[(bool, StoredProp)],
    ) -> Result<(), NsError> {
        let limits = self.prop_limits;
        for (_, p) in patch.iter().filter(|(set, _)| *set) {
            let len = p.xml.as_ref().map_or(0, Vec::len);
            if len > limits.value_bytes {
                return Err(NsError::PropTooLarge {
                    name: p.name.clone(),
                    len,
                    max: limits.value_bytes,
                });
            }
        }
        self.index.write(|t| {
            let id = resolve_in(&*t.dirents, owner.root, path)?;
            let before = t.props.range((id, "")..(id + 1, ""))?.count();
            let (mut count, mut old_cost, mut new_cost) = (before, 0, 0);
            for (set, p) in patch {
                let key = prop_key(p.namespace.as_deref(), &p.name);
                let old = if *set {
                    let v = p.encode();
                    new_cost += prop_cost(&key, &v);
                    let old = t.props.insert((id, key.as_str()), v.as_slice())?;
                    old.map(|o| prop_cost(&key, o.value()))
                } else {
                    let old = t.props.remove((id, key.as_str()))?;
                    old.map(|o| prop_cost(&key, o.value()))
                };
                match old {
                    Some(cost) => old_cost += cost,
                    None if *set => count += 1,
                    None => {}
                }
                if !*set && old.is_some() {
                    count -= 1;
                }
            }
            if count > limits.per_node && count > before {
                return Err(NsError::TooManyProps(limits.per_node));
            }
            super::quota::charge(t, owner, old_cost, new_cost, None)
        })
    }

    /// Copies dead properties from one node to another (COPY keeps them).
    pub fn copy_props(&self, owner: &Owner, from: &[String], to: &[String]) -> Result<(), NsError> {
        let props = self.props(owner, from)?;
        if props.is_empty() {
            return Ok(());
        }
        let patch: Vec<_> = props.into_iter().map(|p| (true, p)).collect();
        self.patch_props(owner, to, &patch)
    }
}

/// `Namespace::commit_file` inside a caller's write transaction (the
/// chunked-upload assembly commits the file and ends its session in one;
/// it names that session in `except_session`, whose bytes become the
/// file's rather than counting twice against the quota).
pub(crate) fn commit_file_in(
    t: &mut WriteTables<'_>,
    owner: &Owner,
    path: &[String],
    commit: &FileCommit,
    except_session: Option<&str>,
) -> Result<(Node, bool), NsError> {
    let (name, parent_path) = path.split_last().ok_or(NsError::IsADirectory)?;
    let now = crate::clock::unix_nanos();
    let parent = parent_dir(t, owner, parent_path)?;
    let existing = match get_child(&*t.dirents, parent.id, name)? {
        Some(id) => Some(t.node(id)?.ok_or(NsError::NotFound)?),
        None => None,
    };
    if existing.as_ref().is_some_and(|n| n.is_dir()) {
        return Err(NsError::IsADirectory);
    }
    let old_size = existing.as_ref().map_or(0, |n| n.size);
    super::quota::charge(t, owner, old_size, commit.size, except_session)?;
    take_chunks(t, &commit.chunks, &commit.uploaded)?;
    let version = t.next_change()?;
    let node = match existing {
        Some(mut n) => {
            let old = get_manifest(&*t.manifests, n.id)?;
            t.release_chunks(&old, (now / 1_000_000_000) as u64)?;
            n.size = commit.size;
            n.digest = Some(manifest_digest(&commit.chunks));
            n.checksums = commit.checksums.clone();
            n.mtime = commit.mtime.unwrap_or(now);
            n.version = version;
            n
        }
        None => {
            t.add_counter(KEY_FILES, 1)?;
            Node {
                id: t.next_id()?,
                parent: parent.id,
                owner: owner.id,
                kind: NodeKind::File,
                size: commit.size,
                mtime: commit.mtime.unwrap_or(now),
                created: now / 1_000_000_000,
                version,
                digest: Some(manifest_digest(&commit.chunks)),
                checksums: commit.checksums.clone(),
            }
        }
    };
    let created = get_child(&*t.dirents, parent.id, name)?.is_none();
    t.put_node(&node)?;
    t.manifests
        .insert(node.id, encode_manifest(&commit.chunks).as_slice())?;
    t.dirents.insert((parent.id, name.as_str()), node.id)?;
    t.touch_up_sized(parent.id, version, commit.size as i64 - old_size as i64)?;
    Ok((node, created))
}

fn props_of(t: &ReadTables, id: u64) -> Result<Vec<StoredProp>, NsError> {
    let mut out = Vec::new();
    for row in t.props()?.range((id, "")..(id + 1, ""))? {
        let (_, v) = row.map_err(IndexError::from)?;
        out.push(StoredProp::decode(v.value())?);
    }
    Ok(out)
}

fn rename_in(
    t: &mut WriteTables<'_>,
    owner: &Owner,
    from: &[String],
    to: &[String],
    replace: bool,
) -> Result<Node, NsError> {
    let (from_name, from_parent) = from.split_last().ok_or(NsError::Root)?;
    let (to_name, to_parent) = to.split_last().ok_or(NsError::Root)?;
    let src_parent = parent_dir(t, owner, from_parent)?;
    let id = get_child(&*t.dirents, src_parent.id, from_name)?.ok_or(NsError::NotFound)?;
    let dst_parent = parent_dir(t, owner, to_parent)?;
    // Refuse to move a folder below itself.
    let mut cur = dst_parent.id;
    while cur != 0 {
        if cur == id {
            return Err(NsError::IntoItself);
        }
        cur = t.node(cur)?.map_or(0, |n| n.parent);
    }
    let version = t.next_change()?;
    if let Some(old) = get_child(&*t.dirents, dst_parent.id, to_name)? {
        if !replace {
            return Err(NsError::Exists);
        }
        // The destination must not contain the source.
        let mut cur = src_parent.id;
        while cur != 0 {
            if cur == old {
                return Err(NsError::IntoItself);
            }
            cur = t.node(cur)?.map_or(0, |n| n.parent);
        }
        let size = t.node(old)?.map_or(0, |n| n.size);
        remove_subtree(t, owner, old)?;
        t.dirents.remove((dst_parent.id, to_name.as_str()))?;
        t.touch_up_sized(dst_parent.id, version, -(size as i64))?;
    }
    let mut node = t.node(id)?.ok_or(NsError::NotFound)?;
    t.dirents.remove((src_parent.id, from_name.as_str()))?;
    t.dirents.insert((dst_parent.id, to_name.as_str()), id)?;
    // The node keeps its etag: its content did not change, and sync
    // clients recognise a rename by an unchanged id and etag (a new
    // etag makes them download the file again). Both parents change.
    node.parent = dst_parent.id;
    t.put_node(&node)?;
    // The moved subtree's bytes leave the old ancestors and join the
    // new ones (shared ancestors get both, so they end unchanged).
    let bytes = node.size as i64;
    t.touch_up_sized(src_parent.id, version, -bytes)?;
    t.touch_up_sized(dst_parent.id, version, bytes)?;
    Ok(node)
}

fn copy_replacing_in(
    t: &mut WriteTables<'_>,
    owner: &Owner,
    from: &[String],
    to: &[String],
) -> Result<Node, NsError> {
    let (to_name, to_parent) = to.split_last().ok_or(NsError::Root)?;
    let src = resolve_in(&*t.dirents, owner.root, from)?;
    let dst_parent = parent_dir(t, owner, to_parent)?;
    // Neither tree may hold the other: the copy would copy itself, or
    // replacing the destination would delete the source.
    if is_below(t, dst_parent.id, src)? {
        return Err(NsError::IntoItself);
    }
    let version = t.next_change()?;
    let (mut old_bytes, mut old_size) = (0, 0);
    if let Some(old) = get_child(&*t.dirents, dst_parent.id, to_name)? {
        if is_below(t, src, old)? {
            return Err(NsError::IntoItself);
        }
        old_size = t.node(old)?.map_or(0, |n| n.size);
        let now = (crate::clock::unix_nanos() / 1_000_000_000) as u64;
        let (files, bytes) = t.remove_subtree(old, now)?;
        t.add_counter(KEY_FILES, -(files as i64))?;
        t.dirents.remove((dst_parent.id, to_name.as_str()))?;
        old_bytes = bytes;
    }
    let (top, new_bytes) = copy_subtree(t, src, dst_parent.id, to_name, version)?;
    super::quota::charge(t, owner, old_bytes, new_bytes, None)?;
    t.touch_up_sized(dst_parent.id, version, top.size as i64 - old_size as i64)?;
    Ok(top)
}

/// Whether `id` is `ancestor` or lies below it.
fn is_below(t: &WriteTables<'_>, mut id: u64, ancestor: u64) -> Result<bool, NsError> {
    while id != 0 {
        if id == ancestor {
            return Ok(true);
        }
        id = t.node(id)?.map_or(0, |n| n.parent);
    }
    Ok(false)
}

/// Copies the node `src` and everything below it as `name` in the folder
/// `parent`, every copy at `version`: files reference the same chunks,
/// dead properties are copied. Returns the new top node and the bytes the
/// copies count in the quota (files and properties).
fn copy_subtree(
    t: &mut WriteTables<'_>,
    src: u64,
    parent: u64,
    name: &str,
    version: u64,
) -> Result<(Node, u64), NsError> {
    let mut bytes = 0;
    let mut top = None;
    let mut stack = vec![(src, parent, name.to_string())];
    while let Some((old_id, new_parent, name)) = stack.pop() {
        let old = t.node(old_id)?.ok_or(NsError::NotFound)?;
        let node = Node {
            id: t.next_id()?,
            parent: new_parent,
            created: crate::clock::unix_nanos() / 1_000_000_000,
            version,
            ..old
        };
        t.put_node(&node)?;
        t.dirents.insert((new_parent, name.as_str()), node.id)?;
        if node.is_dir() {
            for row in t.dirents.range((old_id, "")..(old_id + 1, ""))? {
                let (k, v) = row.map_err(IndexError::from)?;
                stack.push((v.value(), node.id, k.value().1.to_string()));
            }
        } else {
            let m = get_manifest(&*t.manifests, old_id)?;
            take_chunks(t, &m, &[])?;
            t.manifests
                .insert(node.id, encode_manifest(&m).as_slice())?;
            t.add_counter(KEY_FILES, 1)?;
            bytes += node.size;
        }
        bytes += copy_node_props(t, old_id, node.id)?;
        top.get_or_insert(node);
    }
    Ok((top.ok_or(NsError::NotFound)?, bytes))
}

/// Copies one node's dead properties; returns what they cost.
fn copy_node_props(t: &mut WriteTables<'_>, from: u64, to: u64) -> Result<u64, NsError> {
    let rows: Vec<(String, Vec<u8>)> = t
        .props
        .range((from, "")..(from + 1, ""))?
        .map(|r| r.map(|(k, v)| (k.value().1.to_string(), v.value().to_vec())))
        .collect::<Result<_, _>>()
        .map_err(IndexError::from)?;
    let mut cost = 0;
    for (key, value) in rows {
        cost += prop_cost(&key, &value);
        t.props.insert((to, key.as_str()), value.as_slice())?;
    }
    Ok(cost)
}

/// Deletes a node and everything below it (not its own dirent): files
/// release their chunks and their bytes from the owner's usage.
fn remove_subtree(t: &mut WriteTables<'_>, owner: &Owner, top: u64) -> Result<(), NsError> {
    let now = (crate::clock::unix_nanos() / 1_000_000_000) as u64;
    let (files, bytes) = t.remove_subtree(top, now)?;
    super::quota::credit(t, owner, bytes)?;
    t.add_counter(KEY_FILES, -(files as i64))?;
    Ok(())
}

/// Resolves the parent folder of an entry being created or removed.
fn parent_dir(t: &WriteTables<'_>, owner: &Owner, path: &[String]) -> Result<Node, NsError> {
    let id = resolve_in(&*t.dirents, owner.root, path).map_err(|e| match e {
        NsError::NotFound => NsError::ParentMissing,
        e => e,
    })?;
    let node = t.node(id)?.ok_or(NsError::ParentMissing)?;
    if !node.is_dir() {
        return Err(NsError::ParentMissing);
    }
    Ok(node)
}

/// Takes one reference per manifest entry. A chunk must either be known to
/// the index (and not yet collected) or have been uploaded by this commit;
/// otherwise the commit fails and nothing changes. The chunks this commit
/// uploaded are referenced now, so their pending records go.
pub(super) fn take_chunks(
    t: &mut WriteTables<'_>,
    chunks: &[ManifestEntry],
    uploaded: &[(ChunkId, u32)],
) -> Result<(), NsError> {
    let uploaded: HashMap<ChunkId, u32> = uploaded.iter().copied().collect();
    for e in chunks {
        let rec = match t.chunk(&e.id.0)? {
            Some(mut rec) => {
                rec.refs += 1;
                rec.unreferenced_since = 0;
                rec
            }
            None => {
                let stored = *uploaded.get(&e.id).ok_or(NsError::MissingChunk(e.id))?;
                t.add_counter(KEY_STORED_BYTES, stored as i64)?;
                ChunkRecord::object(1, stored, 0)
            }
        };
        t.put_chunk(&e.id.0, &rec)?;
    }
    t.settle_pending(uploaded.keys().map(|id| id.0))?;
    Ok(())
}

impl From<redb::StorageError> for NsError {
    fn from(e: redb::StorageError) -> Self {
        NsError::Index(IndexError::from(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::NewUser;
    use crate::meta::{split_path, AssembleCheck, AssembleMeta, NamePath, NewPart};

    fn setup() -> (tempfile::TempDir, Namespace, Owner) {
        let dir = tempfile::tempdir().unwrap();
        let index = Arc::new(Index::open(&dir.path().join("i.redb")).unwrap());
        let u = index
            .add_user(NewUser {
                name: "u".into(),
                password_hash: "x".into(),
                admin: false,
                quota: Some(100),
            })
            .unwrap();
        (dir, Namespace::new(index), Owner::from(&u))
    }

    fn p(s: &str) -> NamePath {
        split_path(s.as_bytes()).unwrap()
    }

    fn commit(size: u64, chunk: u8) -> FileCommit {
        FileCommit {
            size,
            chunks: vec![ManifestEntry {
                id: ChunkId([chunk; 32]),
                len: size as u32,
            }],
            uploaded: vec![(ChunkId([chunk; 32]), 10)],
            mtime: None,
            checksums: None,
        }
    }

    #[test]
    fn moving_a_folder_keeps_ids_and_everything_below() {
        let (_d, ns, o) = setup();
        ns.mkdir(&o, &p("a")).unwrap();
        ns.mkdir(&o, &p("a/b")).unwrap();
        let mut ids = Vec::new();
        for i in 0..200 {
            let name = format!("a/b/f{i}");
            ids.push(ns.commit_file(&o, &p(&name), &commit(0, 1)).unwrap().0.id);
        }
        let root_before = ns.lookup(&o, &[]).unwrap().etag();
        let moved = ns.rename(&o, &p("a/b"), &p("c")).unwrap();
        assert_eq!(moved.id, ns.lookup(&o, &p("c")).unwrap().id);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(ns.lookup(&o, &p(&format!("c/f{i}"))).unwrap().id, *id);
        }
        assert!(matches!(ns.lookup(&o, &p("a/b")), Err(NsError::NotFound)));
        assert_ne!(
            ns.lookup(&o, &[]).unwrap().etag(),
            root_before,
            "root etag changes"
        );
        assert!(matches!(
            ns.rename(&o, &p("a"), &p("a/x")),
            Err(NsError::IntoItself)
        ));
        ns.mkdir(&o, &p("c/d")).unwrap();
        assert!(matches!(
            ns.rename(&o, &p("c"), &p("c/d/e")),
            Err(NsError::IntoItself)
        ));
    }

    #[test]
    fn commits_count_references_and_quota() {
        let (_d, ns, o) = setup();
        ns.commit_file(&o, &p("f"), &commit(60, 7)).unwrap();
        assert_eq!(ns.usage(&o).unwrap().0, 60);
        // Over quota: refused, nothing changes.
        let err = ns.commit_file(&o, &p("g"), &commit(50, 8)).unwrap_err();
        assert!(matches!(err, NsError::QuotaExceeded { .. }));
        assert!(matches!(ns.lookup(&o, &p("g")), Err(NsError::NotFound)));
        assert!(!ns.index().chunk_known(&[8; 32]).unwrap());
        // A copy shares the chunk.
        ns.copy_file(&o, &p("f"), &p("f2")).unwrap_err(); // 120 > 100: quota
        ns.commit_file(&o, &p("f"), &commit(30, 7)).unwrap();
        ns.copy_file(&o, &p("f"), &p("f2")).unwrap();
        assert_eq!(ns.usage(&o).unwrap().0, 60);
        let chunk = |id: u8| ns.index().chunk(&[id; 32]).unwrap().unwrap();
        assert_eq!(chunk(7).refs, 2);
        ns.remove(&o, &p("f")).unwrap();
        ns.remove(&o, &p("f2")).unwrap();
        let c = chunk(7);
        assert_eq!(c.refs, 0);
        assert!(
            c.unreferenced_since > 0,
            "marked for the collector, not deleted"
        );
        assert_eq!(ns.usage(&o).unwrap().0, 0);
    }

    #[test]
    fn a_move_replaces_the_destination_in_one_step() {
        let (_d, ns, o) = setup();
        ns.commit_file(&o, &p("src"), &commit(10, 1)).unwrap();
        ns.mkdir(&o, &p("dst")).unwrap();
        ns.mkdir(&o, &p("dst/sub")).unwrap();
        ns.commit_file(&o, &p("dst/sub/f"), &commit(20, 2)).unwrap();
        ns.commit_file(&o, &p("dst/g"), &commit(30, 3)).unwrap();
        assert!(matches!(
            ns.rename(&o, &p("src"), &p("dst")),
            Err(NsError::Exists)
        ));
        let moved = ns.rename_replacing(&o, &p("src"), &p("dst")).unwrap();
        assert_eq!(ns.lookup(&o, &p("dst")).unwrap().id, moved.id);
        assert!(!ns.lookup(&o, &p("dst")).unwrap().is_dir());
        assert_eq!(
            ns.usage(&o).unwrap().0,
            10,
            "the replaced tree's bytes are released"
        );
        for id in [2u8, 3] {
            assert_eq!(ns.index().chunk(&[id; 32]).unwrap().unwrap().refs, 0);
        }
        assert_eq!(ns.index().stats().unwrap().files, 1);
        // A destination that contains the source is refused, and nothing changes.
        ns.mkdir(&o, &p("a")).unwrap();
        ns.commit_file(&o, &p("a/x"), &commit(5, 4)).unwrap();
        assert!(matches!(
            ns.rename_replacing(&o, &p("a/x"), &p("a")),
            Err(NsError::IntoItself)
        ));
        assert_eq!(ns.lookup(&o, &p("a/x")).unwrap().size, 5);
    }

    #[test]
    fn a_commit_never_references_a_chunk_that_is_not_stored() {
        let (_d, ns, o) = setup();
        let mut c = commit(5, 9);
        c.uploaded.clear();
        let err = ns.commit_file(&o, &p("f"), &c).unwrap_err();
        assert!(matches!(err, NsError::MissingChunk(_)));
        assert!(matches!(ns.lookup(&o, &p("f")), Err(NsError::NotFound)));
    }

    fn prop(name: &str, value: &[u8]) -> (bool, StoredProp) {
        let p = StoredProp {
            name: name.into(),
            prefix: None,
            namespace: Some("urn:x".into()),
            xml: Some(value.to_vec()),
        };
        (true, p)
    }

    #[test]
    fn dead_properties_are_capped_and_count_in_the_quota() {
        let (_d, ns, o) = setup();
        let ns = ns.with_prop_limits(PropLimits {
            per_node: 2,
            value_bytes: 16,
        });
        ns.commit_file(&o, &p("f"), &commit(10, 1)).unwrap();
        ns.patch_props(&o, &p("f"), &[prop("a", b"1")]).unwrap();
        let after_one = ns.usage(&o).unwrap().0;
        assert!(after_one > 10, "the property costs quota: {after_one}");
        // Too many, or a value too large: refused whole, nothing applied.
        let three = [prop("b", b"2"), prop("c", b"3")];
        assert!(matches!(
            ns.patch_props(&o, &p("f"), &three),
            Err(NsError::TooManyProps(2))
        ));
        assert!(matches!(
            ns.patch_props(&o, &p("f"), &[prop("b", &[b'x'; 17])]),
            Err(NsError::PropTooLarge { len: 17, .. })
        ));
        assert_eq!(ns.props(&o, &p("f")).unwrap().len(), 1);
        assert_eq!(ns.usage(&o).unwrap().0, after_one);
        // Replacing one is allowed at the cap; the cost is replaced too.
        ns.patch_props(&o, &p("f"), &[prop("b", b"2")]).unwrap();
        ns.patch_props(&o, &p("f"), &[prop("b", b"22")]).unwrap();
        let two = ns.usage(&o).unwrap().0;
        // Removing one frees its bytes.
        let (_, mut b) = prop("b", b"");
        b.xml = None;
        ns.patch_props(&o, &p("f"), &[(false, b)]).unwrap();
        assert!(ns.usage(&o).unwrap().0 < two);
        // Over the quota (100 bytes): refused.
        let big = [prop("x", &[b'y'; 16])];
        let room = 100 - ns.usage(&o).unwrap().0;
        ns.commit_file(&o, &p("g"), &commit(room - 5, 2)).unwrap();
        assert!(matches!(
            ns.patch_props(&o, &p("g"), &big),
            Err(NsError::QuotaExceeded { .. })
        ));
        // Deleting the node gives everything back.
        ns.remove(&o, &p("f")).unwrap();
        ns.remove(&o, &p("g")).unwrap();
        assert_eq!(ns.usage(&o).unwrap().0, 0);
    }

    #[test]
    fn chunked_sessions_count_against_every_write() {
        let (_d, ns, o) = setup();
        ns.create_session(&o, "t", None).unwrap();
        let part = NewPart {
            size: 60,
            chunks: vec![ManifestEntry {
                id: ChunkId([5; 32]),
                len: 60,
            }],
            uploaded: vec![(ChunkId([5; 32]), 70)],
        };
        ns.add_part(&o, "t", "0", &part).unwrap();
        assert_eq!(ns.holdings(&o).unwrap().limit(0), Some(40));
        assert!(matches!(
            ns.commit_file(&o, &p("f"), &commit(41, 1)),
            Err(NsError::QuotaExceeded { .. })
        ));
        ns.commit_file(&o, &p("f"), &commit(40, 1)).unwrap();
        // The assembly turns the session's bytes into the file's: not
        // counted twice (60 + 40 = 100 fits).
        let done = ns
            .assemble_session(
                &o,
                "t",
                &p("g"),
                &AssembleCheck::default(),
                AssembleMeta::default(),
            )
            .unwrap();
        assert_eq!(done.node.size, 60);
        assert_eq!(ns.usage(&o).unwrap().0, 100);
    }

    #[test]
    fn a_commit_settles_the_pending_records_of_what_it_uploaded() {
        let (_d, ns, o) = setup();
        ns.index()
            .add_pending(&[([1; 32], 10), ([2; 32], 20)], 5)
            .unwrap();
        ns.commit_file(&o, &p("f"), &commit(10, 1)).unwrap();
        assert!(ns.index().pending(&[1; 32]).unwrap().is_none());
        assert!(ns.index().pending(&[2; 32]).unwrap().is_some());
        // A failed commit leaves them.
        let err = ns.commit_file(&o, &p("g"), &commit(200, 2)).unwrap_err();
        assert!(matches!(err, NsError::QuotaExceeded { .. }));
        assert!(ns.index().pending(&[2; 32]).unwrap().is_some());
    }

    #[test]
    fn folders_and_names() {
        let (_d, ns, o) = setup();
        ns.mkdir(&o, &p("d")).unwrap();
        assert!(matches!(ns.mkdir(&o, &p("d")), Err(NsError::Exists)));
        assert!(matches!(
            ns.mkdir(&o, &p("x/y")),
            Err(NsError::ParentMissing)
        ));
        ns.commit_file(&o, &p("d/f"), &commit(1, 1)).unwrap();
        assert!(matches!(ns.remove(&o, &p("d")), Err(NsError::NotEmpty)));
        assert!(matches!(
            ns.commit_file(&o, &p("d"), &commit(1, 1)),
            Err(NsError::IsADirectory)
        ));
        let names: Vec<_> = ns
            .list(&o, &p("d"))
            .unwrap()
            .into_iter()
            .map(|x| x.0)
            .collect();
        assert_eq!(names, vec!["f"]);
    }
}
