//! The redb engine's consistency walk (`Meta::verify`): every table read
//! once, in one read transaction, so the walk sees one committed state
//! even while writers go on. It recomputes what the operations maintain
//! incrementally (reference counts, `used`, the file counter, folder sizes)
//! and compares. Memory: a few words per node and per referenced chunk.
//!
//! Also the test-only fault injection (`fault_injection`), which breaks a
//! redb file on purpose so the tests can show the walk finds it.

use std::collections::HashMap;
use std::path::Path;

use redb::{ReadTransaction, ReadableTable};

use super::sessions::{part_contents, session_received};
use super::tables::*;
use super::Index;
use crate::crypto::ChunkId;
use crate::meta::app_passwords::AppPasswordRecord;
use crate::meta::consistency::{Consistency, Inconsistency};
use crate::meta::records::{decode_manifest, prop_cost, ChunkRecord, ManifestEntry, Node};
use crate::meta::{IndexError, PackRecord, UserRecord};

/// What the walk keeps of a user.
struct UserSeen {
    name: String,
    used: u64,
    root: u64,
}

/// What the walk keeps of a node.
struct NodeSeen {
    owner: u64,
    parent: u64,
    is_dir: bool,
    size: u64,
    /// Dirents naming it, and the folder of the first.
    named: u64,
    named_in: u64,
    /// For a folder: the sizes of its entries, summed.
    entries_bytes: u64,
    has_manifest: bool,
}

/// References to one chunk found in manifests.
#[derive(Default)]
struct Tally {
    refs: u64,
    /// A file naming it (0 when only parts do).
    node: u64,
}

#[derive(Default)]
struct Walk {
    report: Consistency,
    users: HashMap<u64, UserSeen>,
    nodes: HashMap<u64, NodeSeen>,
    /// Files' bytes plus dead-property cost, by owner.
    usage: HashMap<u64, u64>,
    tally: HashMap<[u8; 32], Tally>,
}

impl Index {
    /// Walks every table in one read transaction and reports where the
    /// records disagree.
    pub fn verify(&self) -> Result<Consistency, IndexError> {
        let tx = self.db.begin_read()?;
        let mut walk = Walk::default();
        walk.users(&tx)?;
        walk.nodes(&tx)?;
        walk.props(&tx)?;
        walk.dirents(&tx)?;
        walk.manifests(&tx)?;
        walk.sessions(&tx)?;
        walk.app_passwords(&tx)?;
        walk.chunks(&tx)?;
        walk.counters(&tx)?;
        walk.settle();
        Ok(walk.report)
    }
}

fn hex(id: &[u8; 32]) -> String {
    ChunkId(*id).to_hex()
}

fn manifest_bytes(m: &[ManifestEntry]) -> u64 {
    m.iter().map(|e| e.len as u64).sum()
}

impl Walk {
    fn users(&mut self, tx: &ReadTransaction) -> Result<(), IndexError> {
        for row in tx.open_table(USERS)?.iter()? {
            let (_, v) = row?;
            let u = UserRecord::decode(v.value())?;
            self.report.users += 1;
            self.usage.insert(u.id, 0);
            let seen = UserSeen {
                name: u.name,
                used: u.used,
                root: u.root,
            };
            self.users.insert(u.id, seen);
        }
        Ok(())
    }

    fn nodes(&mut self, tx: &ReadTransaction) -> Result<(), IndexError> {
        for row in tx.open_table(NODES)?.iter()? {
            let (_, v) = row?;
            let n = Node::decode(v.value())?;
            self.report.nodes += 1;
            if !n.is_dir() {
                self.report.files += 1;
                *self.usage.entry(n.owner).or_default() += n.size;
            }
            if !self.users.contains_key(&n.owner) {
                let finding = Inconsistency::NoOwner {
                    node: n.id,
                    owner: n.owner,
                };
                self.report.found(finding);
            }
            let seen = NodeSeen {
                owner: n.owner,
                parent: n.parent,
                is_dir: n.is_dir(),
                size: n.size,
                named: 0,
                named_in: 0,
                entries_bytes: 0,
                has_manifest: false,
            };
            self.nodes.insert(n.id, seen);
        }
        Ok(())
    }

    fn props(&mut self, tx: &ReadTransaction) -> Result<(), IndexError> {
        let mut last_orphan = None;
        for row in tx.open_table(PROPS)?.iter()? {
            let (k, v) = row?;
            let (node, key) = k.value();
            match self.nodes.get(&node) {
                Some(n) => *self.usage.entry(n.owner).or_default() += prop_cost(key, v.value()),
                None if last_orphan != Some(node) => {
                    last_orphan = Some(node);
                    self.report.found(Inconsistency::OrphanProps { node });
                }
                None => {}
            }
        }
        Ok(())
    }

    fn dirents(&mut self, tx: &ReadTransaction) -> Result<(), IndexError> {
        for row in tx.open_table(DIRENTS)?.iter()? {
            let (k, v) = row?;
            let (parent, name) = k.value();
            self.report.dirents += 1;
            if let Some(finding) = self.dirent(parent, name, v.value()) {
                self.report.found(finding);
            }
        }
        Ok(())
    }

    /// Checks one dirent; records what it tells about its child.
    fn dirent(&mut self, parent: u64, name: &str, child: u64) -> Option<Inconsistency> {
        let name = name.to_string();
        let Some(c) = self.nodes.get_mut(&child) else {
            return Some(Inconsistency::DanglingDirent {
                parent,
                name,
                child,
            });
        };
        c.named += 1;
        if c.named == 1 {
            c.named_in = parent;
        }
        let (child_owner, child_size) = (c.owner, c.size);
        let Some(p) = self.nodes.get_mut(&parent).filter(|p| p.is_dir) else {
            return Some(Inconsistency::DirentOutsideFolder { parent, name });
        };
        p.entries_bytes += child_size;
        (p.owner != child_owner).then_some(Inconsistency::ForeignDirent {
            parent,
            name,
            parent_owner: p.owner,
            child_owner,
        })
    }

    fn manifests(&mut self, tx: &ReadTransaction) -> Result<(), IndexError> {
        for row in tx.open_table(MANIFESTS)?.iter()? {
            let (k, v) = row?;
            let node = k.value();
            let m = decode_manifest(v.value())?;
            self.count_references(&m, node);
            let Some(n) = self.nodes.get_mut(&node).filter(|n| !n.is_dir) else {
                self.report.found(Inconsistency::OrphanManifest { node });
                continue;
            };
            n.has_manifest = true;
            let total = manifest_bytes(&m);
            if total != n.size {
                let finding = Inconsistency::ManifestSize {
                    node,
                    size: n.size,
                    manifest_bytes: total,
                };
                self.report.found(finding);
            }
        }
        Ok(())
    }

    fn count_references(&mut self, m: &[ManifestEntry], node: u64) {
        for e in m {
            let t = self.tally.entry(e.id.0).or_default();
            t.refs += 1;
            if t.node == 0 {
                t.node = node;
            }
            self.report.references += 1;
        }
    }

    /// Sessions and their parts: the parts' manifests hold references too.
    fn sessions(&mut self, tx: &ReadTransaction) -> Result<(), IndexError> {
        let mut received = HashMap::new();
        for row in tx.open_table(UPLOADS)?.iter()? {
            let (k, v) = row?;
            let (user, transfer) = k.value();
            self.report.sessions += 1;
            let bytes = session_received(v.value())?;
            received.insert((user, transfer.to_string()), (bytes, 0u64));
        }
        for row in tx.open_table(UPLOAD_PARTS)?.iter()? {
            let (k, v) = row?;
            let (user, transfer, part) = k.value();
            self.report.parts += 1;
            let (size, m) = part_contents(v.value())?;
            self.count_references(&m, 0);
            let (transfer, part) = (transfer.to_string(), part.to_string());
            let total = manifest_bytes(&m);
            if total != size {
                let finding = Inconsistency::PartSize {
                    user,
                    transfer: transfer.clone(),
                    part: part.clone(),
                    size,
                    manifest_bytes: total,
                };
                self.report.found(finding);
            }
            match received.get_mut(&(user, transfer.clone())) {
                Some((_, parts)) if self.users.contains_key(&user) => *parts += size,
                _ => self.report.found(Inconsistency::OrphanPart {
                    user,
                    transfer,
                    part,
                }),
            }
        }
        for ((user, transfer), (recorded, parts)) in received {
            if recorded != parts {
                let finding = Inconsistency::SessionBytes {
                    user,
                    transfer,
                    recorded,
                    parts,
                };
                self.report.found(finding);
            }
        }
        Ok(())
    }

    /// Every app password belongs to an existing user.
    fn app_passwords(&mut self, tx: &ReadTransaction) -> Result<(), IndexError> {
        for row in tx.open_table(APP_PASSWORDS)?.iter()? {
            let (k, v) = row?;
            let (user, id) = k.value();
            AppPasswordRecord::decode(v.value())?;
            if !self.users.contains_key(&user) {
                self.report
                    .found(Inconsistency::OrphanAppPassword { user, id });
            }
        }
        Ok(())
    }

    fn chunks(&mut self, tx: &ReadTransaction) -> Result<(), IndexError> {
        let mut stored = 0u64;
        let mut packed: HashMap<[u8; 32], (u32, u32)> = HashMap::new();
        let mut located = Vec::new();
        for row in tx.open_table(CHUNKS)?.iter()? {
            let (k, v) = row?;
            let id = super::chunk_key(k.value())?;
            let rec = ChunkRecord::decode(v.value())?;
            self.report.chunks += 1;
            match rec.packed {
                Some(at) => {
                    let live = packed.entry(at.pack).or_default();
                    live.0 += 1;
                    live.1 = live.1.saturating_add(rec.stored);
                    located.push((id, at.pack));
                }
                None => stored += rec.stored as u64,
            }
            let referenced = self.tally.remove(&id).map_or(0, |t| t.refs);
            self.chunk(&id, &rec, referenced);
        }
        stored += self.packs(tx, packed, &located)?;
        self.stored_bytes(tx, stored)
    }

    /// Every pack's live counts against the chunk records located in it
    /// (`packed`), and every located chunk's pack has a record; answers
    /// the packs' total size.
    fn packs(
        &mut self,
        tx: &ReadTransaction,
        mut packed: HashMap<[u8; 32], (u32, u32)>,
        located: &[([u8; 32], [u8; 32])],
    ) -> Result<u64, IndexError> {
        let mut total = 0u64;
        let mut known = std::collections::HashSet::new();
        for row in tx.open_table(PACKS)?.iter()? {
            let (k, v) = row?;
            let id = super::chunk_key(k.value())?;
            let rec = PackRecord::decode(v.value())?;
            total += u64::from(rec.size);
            known.insert(id);
            let counted = packed.remove(&id).unwrap_or_default();
            if (rec.live_chunks, rec.live_bytes) != counted {
                self.report.found(Inconsistency::PackLiveMismatch {
                    pack: hex(&id),
                    recorded: (rec.live_chunks, rec.live_bytes),
                    counted,
                });
            }
        }
        for (chunk, pack) in located {
            if !known.contains(pack) {
                self.report.found(Inconsistency::MissingPack {
                    chunk: hex(chunk),
                    pack: hex(pack),
                });
            }
        }
        Ok(total)
    }

    fn chunk(&mut self, id: &[u8; 32], rec: &ChunkRecord, referenced: u64) {
        if rec.refs != referenced {
            let finding = Inconsistency::RefcountMismatch {
                chunk: hex(id),
                recorded: rec.refs,
                referenced,
            };
            self.report.found(finding);
        }
        if (rec.refs == 0) != (rec.unreferenced_since != 0) {
            let finding = Inconsistency::CollectorMark {
                chunk: hex(id),
                refs: rec.refs,
                unreferenced_since: rec.unreferenced_since,
            };
            self.report.found(finding);
        }
    }

    fn stored_bytes(&mut self, tx: &ReadTransaction, summed: u64) -> Result<(), IndexError> {
        let recorded = counter(tx, KEY_STORED_BYTES)?;
        if recorded != summed {
            let finding = Inconsistency::StoredBytesMismatch { recorded, summed };
            self.report.found(finding);
        }
        Ok(())
    }

    fn counters(&mut self, tx: &ReadTransaction) -> Result<(), IndexError> {
        let recorded = counter(tx, KEY_FILES)?;
        if recorded != self.report.files {
            let finding = Inconsistency::FileCountMismatch {
                recorded,
                counted: self.report.files,
            };
            self.report.found(finding);
        }
        Ok(())
    }

    /// The checks that need every table seen.
    fn settle(&mut self) {
        self.unknown_chunks();
        self.roots();
        self.tree_links();
        self.usage();
    }

    fn unknown_chunks(&mut self) {
        let mut left: Vec<_> = self.tally.drain().collect();
        left.sort_by_key(|(id, _)| *id);
        for (id, t) in left {
            let finding = Inconsistency::UnknownChunk {
                chunk: hex(&id),
                node: t.node,
                references: t.refs,
            };
            self.report.found(finding);
        }
    }

    fn roots(&mut self) {
        let mut bad = Vec::new();
        for (id, u) in &self.users {
            let ok = self
                .nodes
                .get(&u.root)
                .is_some_and(|n| n.is_dir && n.owner == *id && n.parent == 0);
            if !ok {
                bad.push(Inconsistency::BadRoot {
                    user: u.name.clone(),
                    root: u.root,
                });
            }
        }
        bad.into_iter().for_each(|f| self.report.found(f));
    }

    /// Every node is named once, by its parent's dirent (roots by none),
    /// and a folder's size is what its entries hold.
    fn tree_links(&mut self) {
        let roots: std::collections::HashSet<u64> = self.users.values().map(|u| u.root).collect();
        let mut ids: Vec<u64> = self.nodes.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(n) = self.nodes.get(&id) else {
                continue;
            };
            let mut found = Vec::new();
            if n.named == 0 && !roots.contains(&id) {
                found.push(Inconsistency::Unreachable {
                    node: id,
                    owner: n.owner,
                });
            }
            if n.named > 1 {
                found.push(Inconsistency::NamedTwice {
                    node: id,
                    dirents: n.named,
                });
            }
            if n.named >= 1 && n.named_in != n.parent {
                found.push(Inconsistency::WrongParent {
                    node: id,
                    recorded: n.parent,
                    named_in: n.named_in,
                });
            }
            if n.is_dir && n.entries_bytes != n.size {
                found.push(Inconsistency::FolderSize {
                    node: id,
                    recorded: n.size,
                    computed: n.entries_bytes,
                });
            }
            if !n.is_dir && !n.has_manifest && n.size != 0 {
                found.push(Inconsistency::ManifestSize {
                    node: id,
                    size: n.size,
                    manifest_bytes: 0,
                });
            }
            found.into_iter().for_each(|f| self.report.found(f));
        }
    }

    fn usage(&mut self) {
        let mut users: Vec<_> = self.users.iter().collect();
        users.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        let mut found = Vec::new();
        for (id, u) in users {
            let computed = self.usage.get(id).copied().unwrap_or(0);
            if computed != u.used {
                found.push(Inconsistency::UsageMismatch {
                    user: u.name.clone(),
                    recorded: u.used,
                    computed,
                });
            }
        }
        found.into_iter().for_each(|f| self.report.found(f));
    }
}

fn counter(tx: &ReadTransaction, key: &str) -> Result<u64, IndexError> {
    Ok(tx.open_table(META)?.get(key)?.map_or(0, |v| v.value()))
}

/// Breaks a redb index file on purpose, for tests of the consistency
/// walk and of `dedupdav check`. Never called by the gateway.
pub mod fault_injection {
    use super::*;

    /// Adds `delta` to the reference count of the first chunk (in id
    /// order) that has references; answers its id in hex.
    pub fn corrupt_refcount(index: &Path, delta: i64) -> Result<String, IndexError> {
        let index = Index::open(index)?;
        index.write(|t| {
            let mut first = None;
            for row in t.chunks.iter()? {
                let (k, v) = row?;
                let rec = ChunkRecord::decode(v.value())?;
                if rec.refs > 0 {
                    first = Some((super::super::chunk_key(k.value())?, rec));
                    break;
                }
            }
            let (id, mut rec) = first.ok_or_else(|| IndexError::Corrupt {
                table: "chunks",
                cause: "no referenced chunk to corrupt".into(),
            })?;
            rec.refs = rec.refs.saturating_add_signed(delta);
            t.put_chunk(&id, &rec)?;
            Ok(hex(&id))
        })
    }

    /// Adds an entry `name` to `user`'s root folder naming a node that
    /// does not exist; answers that node id.
    pub fn add_dangling_dirent(index: &Path, user: &str, name: &str) -> Result<u64, IndexError> {
        let index = Index::open(index)?;
        index.write(|t| {
            let u = super::super::tx::get_user(&*t.users, user)?
                .ok_or_else(|| IndexError::NoSuchUser(user.to_string()))?;
            let missing = t.next_id()?;
            t.dirents.insert((u.root, name), missing)?;
            Ok(missing)
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::fault_injection::{add_dangling_dirent, corrupt_refcount};
    use super::*;
    use crate::meta::redb::tree::Namespace;
    use crate::meta::{split_path, FileCommit, NewPart, NewUser, Owner, StoredProp};

    fn commit(chunks: &[(u8, u32)]) -> FileCommit {
        let chunks: Vec<ManifestEntry> = chunks
            .iter()
            .map(|&(n, len)| ManifestEntry {
                id: ChunkId([n; 32]),
                len,
            })
            .collect();
        FileCommit {
            size: manifest_bytes(&chunks),
            uploaded: chunks.iter().map(|e| (e.id, e.len + 16)).collect(),
            chunks,
            mtime: None,
            checksums: None,
        }
    }

    /// An index with two users, folders, shared chunks, a dead property
    /// and a chunked upload in progress.
    pub(crate) fn busy_index(path: &Path) {
        let ns = Namespace::new(Arc::new(Index::open(path).unwrap()));
        let user = |name: &str| {
            let new = NewUser {
                name: name.into(),
                password_hash: "x".into(),
                admin: false,
                quota: Some(10_000),
            };
            Owner::from(&ns.index().add_user(new).unwrap())
        };
        let (ann, bob) = (user("ann"), user("bob"));
        let p = |s: &str| split_path(s.as_bytes()).unwrap();
        ns.mkdir(&ann, &p("d")).unwrap();
        ns.commit_file(&ann, &p("d/f"), &commit(&[(1, 10), (2, 5), (1, 10)]))
            .unwrap();
        ns.copy_file(&ann, &p("d/f"), &p("g")).unwrap();
        ns.rename(&ann, &p("d"), &p("e")).unwrap();
        ns.commit_file(&bob, &p("f"), &commit(&[(2, 5), (3, 7)]))
            .unwrap();
        let colour = StoredProp {
            name: "colour".into(),
            prefix: None,
            namespace: Some("urn:x".into()),
            xml: Some(b"blue".to_vec()),
        };
        ns.patch_props(&bob, &p("f"), &[(true, colour)]).unwrap();
        ns.create_session(&bob, "t", None).unwrap();
        let part = NewPart {
            size: 4,
            chunks: vec![ManifestEntry {
                id: ChunkId([3; 32]),
                len: 4,
            }],
            uploaded: Vec::new(),
        };
        ns.add_part(&bob, "t", "0", &part).unwrap();
        let phone = crate::meta::NewAppPassword {
            label: "phone".into(),
            verifier: [5; 32],
        };
        ns.index().add_app_password("bob", &phone, 64).unwrap();
        ns.commit_file(&ann, &p("h"), &commit(&[(4, 3)])).unwrap();
        ns.remove(&ann, &p("h")).unwrap();
    }

    #[test]
    fn a_busy_index_is_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        busy_index(&path);
        let found = Index::open(&path).unwrap().verify().unwrap();
        assert!(found.is_clean(), "{found:#?}");
        assert_eq!((found.users, found.files, found.parts), (2, 3, 1));
        assert_eq!(found.references, 3 + 3 + 2 + 1);
    }

    #[test]
    fn an_app_password_of_no_user_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        busy_index(&path);
        let index = Index::open(&path).unwrap();
        let record = AppPasswordRecord {
            label: "ghost".into(),
            scheme: crate::meta::app_passwords::SCHEME_HMAC_SHA256,
            verifier: [1; 32],
            created: 1,
        };
        index
            .write(|t| {
                t.app_passwords
                    .insert((999_999, 7), record.encode().as_slice())?;
                Ok::<_, IndexError>(())
            })
            .unwrap();
        let found = index.verify().unwrap();
        assert_eq!(
            found.findings,
            [Inconsistency::OrphanAppPassword {
                user: 999_999,
                id: 7
            }]
        );
    }

    #[test]
    fn a_wrong_refcount_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        busy_index(&path);
        let chunk = corrupt_refcount(&path, 1).unwrap();
        let found = Index::open(&path).unwrap().verify().unwrap();
        assert_eq!(found.findings.len(), 1, "{found:#?}");
        let Inconsistency::RefcountMismatch {
            chunk: named,
            recorded,
            referenced,
        } = &found.findings[0]
        else {
            panic!("{found:#?}")
        };
        assert_eq!((named, *recorded), (&chunk, referenced + 1));
    }

    #[test]
    fn a_dangling_dirent_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.redb");
        busy_index(&path);
        let missing = add_dangling_dirent(&path, "ann", "ghost").unwrap();
        let found = Index::open(&path).unwrap().verify().unwrap();
        assert_eq!(found.findings.len(), 1, "{found:#?}");
        assert!(matches!(
            &found.findings[0],
            Inconsistency::DanglingDirent { name, child, .. } if name == "ghost" && *child == missing
        ));
    }
}
