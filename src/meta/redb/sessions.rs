//! Chunked-upload sessions (ownCloud "chunking NG"): a transfer folder per
//! user and transfer id, holding parts whose chunks are already in the
//! content store. Each part's manifest and its chunk references live in the
//! index, so a session survives a restart, and the final assembly is one
//! write transaction that concatenates the part manifests into the file's —
//! no byte is read or uploaded again. Sessions are keyed by the user's id:
//! a user can never name, list or touch another user's transfer.

use redb::ReadableTable;

use super::tree::{commit_file_in, take_chunks, Namespace};
use crate::meta::sessions::*;
use crate::meta::tree::{FileCommit, NsError, Owner};

use crate::meta::codec::{Reader, Writer};
use crate::meta::records::{decode_manifest, encode_manifest};
use crate::meta::redb::tx::{get_node, ReadTables, WriteTables};
use crate::meta::{IndexError, ManifestEntry, Node};

impl From<redb::StorageError> for UploadError {
    fn from(e: redb::StorageError) -> Self {
        UploadError::Namespace(NsError::from(e))
    }
}

#[derive(Debug, Clone)]
struct PartRecord {
    size: u64,
    /// Unix seconds.
    modified: i64,
    manifest: Vec<u8>,
}

/// A record of the session tables, in the layout of [`crate::meta::codec`].
trait SessionRecord: Sized {
    fn write(&self, w: &mut Writer);
    fn read(r: &mut Reader<'_>) -> Result<Self, IndexError>;
}

impl SessionRecord for UploadSession {
    fn write(&self, w: &mut Writer) {
        w.i64(self.created)
            .i64(self.updated)
            .option(self.total_length, |w, n| {
                w.u64(n);
            })
            .u64(self.received);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, IndexError> {
        Ok(Self {
            created: r.i64()?,
            updated: r.i64()?,
            total_length: r.option(|r| r.u64())?,
            received: r.u64()?,
        })
    }
}

impl SessionRecord for PartRecord {
    fn write(&self, w: &mut Writer) {
        w.u64(self.size).i64(self.modified).bytes(&self.manifest);
    }
    fn read(r: &mut Reader<'_>) -> Result<Self, IndexError> {
        Ok(Self {
            size: r.u64()?,
            modified: r.i64()?,
            manifest: r.bytes()?.to_vec(),
        })
    }
}

fn encode<T: SessionRecord>(v: &T) -> Vec<u8> {
    let mut w = Writer::new();
    v.write(&mut w);
    w.finish()
}

fn decode<T: SessionRecord>(table: &'static str, b: &[u8]) -> Result<T, IndexError> {
    T::read(&mut Reader::new(table, b))
}

/// A part record's size and manifest (for the consistency walk).
pub(super) fn part_contents(raw: &[u8]) -> Result<(u64, Vec<ManifestEntry>), IndexError> {
    let rec: PartRecord = decode("upload_parts", raw)?;
    Ok((rec.size, decode_manifest(&rec.manifest)?))
}

/// The bytes a session record says its parts hold.
pub(super) fn session_received(raw: &[u8]) -> Result<u64, IndexError> {
    Ok(decode::<UploadSession>("uploads", raw)?.received)
}

fn get_session(
    t: &WriteTables<'_>,
    user: u64,
    transfer: &str,
) -> Result<Option<UploadSession>, UploadError> {
    match t.uploads.get((user, transfer))? {
        Some(v) => Ok(Some(decode("uploads", v.value())?)),
        None => Ok(None),
    }
}

fn put_session(
    t: &mut WriteTables<'_>,
    user: u64,
    transfer: &str,
    s: &UploadSession,
) -> Result<(), UploadError> {
    t.uploads.insert((user, transfer), encode(s).as_slice())?;
    Ok(())
}

/// The parts of a transfer with their records, in storage (name) order.
fn parts_of(
    table: &impl ReadableTable<(u64, &'static str, &'static str), &'static [u8]>,
    user: u64,
    transfer: &str,
) -> Result<Vec<(String, PartRecord)>, UploadError> {
    let mut out = Vec::new();
    for row in table.range((user, transfer, "")..)? {
        let (k, v) = row.map_err(IndexError::from)?;
        let (u, tid, name) = k.value();
        if u != user || tid != transfer {
            break;
        }
        out.push((name.to_string(), decode("upload_parts", v.value())?));
    }
    Ok(out)
}

/// Sorts parts by position and checks they can form one file: no two at
/// the same position, and positions that are either byte offsets matching
/// the sizes or consecutive indexes.
fn ordered(parts: Vec<(String, PartRecord)>) -> Result<Vec<(String, PartRecord)>, UploadError> {
    order_parts(parts.into_iter().map(|(n, r)| (n, r.size, r)).collect())
}

fn release_part(t: &mut WriteTables<'_>, rec: &PartRecord, now: i64) -> Result<(), UploadError> {
    let m = decode_manifest(&rec.manifest)?;
    t.release_chunks(&m, now.max(0) as u64)?;
    Ok(())
}

/// Drops a whole session, releasing every chunk its parts hold.
fn drop_session(
    t: &mut WriteTables<'_>,
    user: u64,
    transfer: &str,
    now: i64,
) -> Result<(), UploadError> {
    for (name, rec) in parts_of(&*t.upload_parts, user, transfer)? {
        release_part(t, &rec, now)?;
        t.upload_parts.remove((user, transfer, name.as_str()))?;
    }
    t.uploads.remove((user, transfer))?;
    Ok(())
}

/// Drops every session of `user`, releasing the chunks their parts hold
/// (the user is being removed).
pub(super) fn drop_sessions_of(
    t: &mut WriteTables<'_>,
    user: u64,
    now: i64,
) -> Result<(), UploadError> {
    let mut transfers = Vec::new();
    for row in t.uploads.range((user, "")..(user + 1, ""))? {
        let (k, _) = row?;
        transfers.push(k.value().1.to_string());
    }
    for transfer in transfers {
        drop_session(t, user, &transfer, now)?;
    }
    Ok(())
}

/// The bytes all of a user's sessions hold, but `except`.
pub(super) fn bytes_in_sessions(
    uploads: &impl ReadableTable<(u64, &'static str), &'static [u8]>,
    user: u64,
    except: Option<&str>,
) -> Result<u64, IndexError> {
    let mut total = 0u64;
    for row in uploads.range((user, "")..(user + 1, ""))? {
        let (k, v) = row?;
        if except == Some(k.value().1) {
            continue;
        }
        let s: UploadSession = decode("uploads", v.value())?;
        total = total.saturating_add(s.received);
    }
    Ok(total)
}

impl Namespace {
    /// Creates a transfer folder (MKCOL).
    pub fn create_session(
        &self,
        owner: &Owner,
        transfer: &str,
        total_length: Option<u64>,
    ) -> Result<UploadSession, UploadError> {
        if !valid_name(transfer) {
            return Err(UploadError::BadName(transfer.into()));
        }
        let now = crate::clock::unix_secs();
        self.index.write(|t| {
            if get_session(t, owner.id, transfer)?.is_some() {
                return Err(UploadError::SessionExists);
            }
            let open = t
                .uploads
                .range((owner.id, "")..(owner.id + 1, ""))?
                .take(MAX_SESSIONS_PER_USER)
                .count();
            if open >= MAX_SESSIONS_PER_USER {
                return Err(UploadError::TooMany(MAX_SESSIONS_PER_USER));
            }
            if let Some(total) = total_length {
                check_quota(t, owner, 0, total)?;
            }
            let s = UploadSession {
                created: now,
                updated: now,
                total_length,
                received: 0,
            };
            put_session(t, owner.id, transfer, &s)?;
            Ok(s)
        })
    }

    /// A transfer folder and its parts (PROPFIND, to resume).
    pub fn session(
        &self,
        owner: &Owner,
        transfer: &str,
    ) -> Result<(UploadSession, Vec<PartInfo>), UploadError> {
        self.index.read(|t: &ReadTables| {
            let s: UploadSession = match t.uploads()?.get((owner.id, transfer))? {
                Some(v) => decode("uploads", v.value())?,
                None => return Err(UploadError::NoSession),
            };
            let parts = parts_of(t.upload_parts()?, owner.id, transfer)?
                .into_iter()
                .map(|(name, r)| PartInfo {
                    name,
                    size: r.size,
                    modified: r.modified,
                })
                .collect();
            Ok((s, parts))
        })
    }

    /// The user's transfer folders.
    pub fn sessions(&self, owner: &Owner) -> Result<Vec<(String, UploadSession)>, UploadError> {
        self.index.read(|t: &ReadTables| {
            let mut out = Vec::new();
            for row in t.uploads()?.range((owner.id, "")..(owner.id + 1, ""))? {
                let (k, v) = row.map_err(IndexError::from)?;
                out.push((k.value().1.to_string(), decode("uploads", v.value())?));
            }
            Ok(out)
        })
    }

    /// The parts of a transfer in assembly order, and the manifest they
    /// would assemble into, read in one snapshot.
    pub fn session_manifest(
        &self,
        owner: &Owner,
        transfer: &str,
    ) -> Result<(Vec<PartInfo>, Vec<ManifestEntry>), UploadError> {
        self.index.read(|t: &ReadTables| {
            if t.uploads()?.get((owner.id, transfer))?.is_none() {
                return Err(UploadError::NoSession);
            }
            let parts = ordered(parts_of(t.upload_parts()?, owner.id, transfer)?)?;
            let mut infos = Vec::with_capacity(parts.len());
            let mut out = Vec::new();
            for (name, rec) in parts {
                out.extend(decode_manifest(&rec.manifest)?);
                infos.push(PartInfo {
                    name,
                    size: rec.size,
                    modified: rec.modified,
                });
            }
            Ok((infos, out))
        })
    }

    /// The most bytes a PUT of part `name` may stream before the owner's
    /// quota refuses it (`None`: no quota); a part of the same name is
    /// replaced, so its bytes count as free. The session must exist.
    pub fn part_limit(
        &self,
        owner: &Owner,
        transfer: &str,
        name: &str,
    ) -> Result<Option<u64>, UploadError> {
        self.index.read(|t: &ReadTables| {
            if t.uploads()?.get((owner.id, transfer))?.is_none() {
                return Err(UploadError::NoSession);
            }
            let replaced = match t.upload_parts()?.get((owner.id, transfer, name))? {
                Some(v) => decode::<PartRecord>("upload_parts", v.value())?.size,
                None => 0,
            };
            let holdings = super::quota::read_holdings(t.users()?, t.uploads()?, owner, None)?;
            Ok(holdings.limit(replaced))
        })
    }

    /// Records a stored part (chunk PUT). Its chunks are referenced by the
    /// session from now on; a part of the same name is replaced.
    pub fn add_part(
        &self,
        owner: &Owner,
        transfer: &str,
        name: &str,
        part: &NewPart,
    ) -> Result<(), UploadError> {
        if !valid_name(name) || name == ".file" || part_key(name).is_none() {
            return Err(UploadError::BadName(name.into()));
        }
        let key = part_key(name);
        let now = crate::clock::unix_secs();
        self.index.write(|t| {
            let mut s = get_session(t, owner.id, transfer)?.ok_or(UploadError::NoSession)?;
            let mut replaced = 0;
            for (other, rec) in parts_of(&*t.upload_parts, owner.id, transfer)? {
                if other == name {
                    release_part(t, &rec, now)?;
                    replaced = rec.size;
                } else if part_key(&other) == key {
                    return Err(UploadError::DuplicatePosition(name.into(), other));
                }
            }
            let received = s.received.saturating_sub(replaced) + part.size;
            if let Some(total) = s.total_length {
                if received > total {
                    return Err(UploadError::OverTotal(total));
                }
            }
            check_quota(t, owner, replaced, part.size)?;
            take_chunks(t, &part.chunks, &part.uploaded)?;
            let rec = PartRecord {
                size: part.size,
                modified: now,
                manifest: encode_manifest(&part.chunks),
            };
            t.upload_parts
                .insert((owner.id, transfer, name), encode(&rec).as_slice())?;
            s.received = received;
            s.updated = now;
            put_session(t, owner.id, transfer, &s)?;
            Ok(())
        })
    }

    /// Removes one part (DELETE of a chunk).
    pub fn remove_part(
        &self,
        owner: &Owner,
        transfer: &str,
        name: &str,
    ) -> Result<(), UploadError> {
        let now = crate::clock::unix_secs();
        self.index.write(|t| {
            let mut s = get_session(t, owner.id, transfer)?.ok_or(UploadError::NoSession)?;
            let rec: PartRecord = match t.upload_parts.get((owner.id, transfer, name))? {
                Some(v) => decode("upload_parts", v.value())?,
                None => return Err(UploadError::NoPart),
            };
            release_part(t, &rec, now)?;
            t.upload_parts.remove((owner.id, transfer, name))?;
            s.received = s.received.saturating_sub(rec.size);
            s.updated = now;
            put_session(t, owner.id, transfer, &s)?;
            Ok(())
        })
    }

    /// Abandons a transfer (DELETE), releasing what it holds.
    pub fn abandon_session(&self, owner: &Owner, transfer: &str) -> Result<(), UploadError> {
        let now = crate::clock::unix_secs();
        self.index.write(|t| {
            if get_session(t, owner.id, transfer)?.is_none() {
                return Err(UploadError::NoSession);
            }
            drop_session(t, owner.id, transfer, now)
        })
    }

    /// Assembles a transfer into the file at `path` (the final MOVE), in one
    /// transaction: the file's manifest is the parts' manifests in order,
    /// the file takes its chunk references, the session releases its own
    /// and disappears. `expected` is the manifest the caller hashed, if it
    /// had to read the parts back; the assembly fails if they changed since.
    pub fn assemble_session(
        &self,
        owner: &Owner,
        transfer: &str,
        path: &[String],
        check: &AssembleCheck,
        commit_meta: AssembleMeta,
    ) -> Result<Assembled, UploadError> {
        let now = crate::clock::unix_secs();
        self.index.write(|t| {
            if get_session(t, owner.id, transfer)?.is_none() {
                return Err(UploadError::NoSession);
            }
            let parts = ordered(parts_of(&*t.upload_parts, owner.id, transfer)?)?;
            let mut chunks = Vec::new();
            let mut size = 0u64;
            for (_, rec) in &parts {
                chunks.extend(decode_manifest(&rec.manifest)?);
                size += rec.size;
            }
            if let Some(expected) = check.total_length {
                if expected != size {
                    return Err(UploadError::LengthMismatch {
                        expected,
                        actual: size,
                    });
                }
            }
            if let Some(m) = &commit_meta.expected_manifest {
                if *m != chunks {
                    return Err(UploadError::Changed);
                }
            }
            let existing = lookup_in(t, owner, path)?;
            if check.must_not_exist && existing.is_some() {
                return Err(UploadError::DestinationExists);
            }
            if let Some(etag) = &check.if_etag {
                match &existing {
                    Some(n) if n.etag() == *etag => {}
                    _ => return Err(UploadError::PreconditionFailed),
                }
            }
            let commit = FileCommit {
                size,
                chunks,
                uploaded: Vec::new(),
                mtime: commit_meta.mtime,
                checksums: commit_meta.checksums,
            };
            // The file takes its references before the session lets go of
            // its own, so no chunk is ever unreferenced in between.
            let (node, created) = commit_file_in(t, owner, path, &commit, Some(transfer))?;
            drop_session(t, owner.id, transfer, now)?;
            Ok(Assembled { node, created })
        })
    }

    /// Drops every session not changed for `ttl_secs` before `now` (Unix
    /// seconds), each in its own transaction. Returns how many.
    pub fn expire_sessions(&self, now: i64, ttl_secs: i64) -> Result<usize, UploadError> {
        let stale: Vec<(u64, String)> = self.index.read(|t: &ReadTables| {
            let mut out = Vec::new();
            for row in t.uploads()?.iter()? {
                let (k, v) = row.map_err(IndexError::from)?;
                let s: UploadSession = decode("uploads", v.value())?;
                if s.updated.saturating_add(ttl_secs) < now {
                    let (u, tid) = k.value();
                    out.push((u, tid.to_string()));
                }
            }
            Ok::<_, UploadError>(out)
        })?;
        let mut n = 0;
        for (user, transfer) in stale {
            let dropped = self.index.write(|t| {
                // Re-check inside the transaction: a chunk may have arrived.
                match get_session(t, user, &transfer)? {
                    Some(s) if s.updated.saturating_add(ttl_secs) < now => {
                        drop_session(t, user, &transfer, now)?;
                        Ok::<_, UploadError>(true)
                    }
                    _ => Ok(false),
                }
            })?;
            if dropped {
                tracing::info!(user, transfer = %transfer, "expired a stale chunked upload");
                n += 1;
            }
        }
        Ok(n)
    }
}

fn lookup_in(
    t: &WriteTables<'_>,
    owner: &Owner,
    path: &[String],
) -> Result<Option<Node>, UploadError> {
    match super::tree::resolve_in(&*t.dirents, owner.root, path) {
        Ok(id) => Ok(get_node(&*t.nodes, id)?),
        Err(NsError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Refuses `new` session bytes replacing `replaced` ones (a part sent
/// again) when the user's holdings would go over their quota.
fn check_quota(
    t: &WriteTables<'_>,
    owner: &Owner,
    replaced: u64,
    new: u64,
) -> Result<(), UploadError> {
    super::quota::read_holdings(&*t.users, &*t.uploads, owner, None)?.check(replaced, new)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_keys() {
        assert_eq!(part_key("0000000000000000"), Some(0));
        assert_eq!(part_key("0000000010000000"), Some(10_000_000));
        assert_eq!(part_key("000000000000000-000000010485759"), Some(0));
        assert_eq!(part_key("7"), Some(7));
        assert_eq!(part_key(".file"), None);
        assert_eq!(part_key("abc"), None);
        assert_eq!(part_key(&"9".repeat(39)), None);
    }

    fn rec(size: u64) -> PartRecord {
        PartRecord {
            size,
            modified: 0,
            manifest: Vec::new(),
        }
    }

    #[test]
    fn ordering_accepts_offsets_and_indexes() {
        let offsets = vec![
            ("0000000000000010".to_string(), rec(5)),
            ("0000000000000000".to_string(), rec(10)),
        ];
        let o = ordered(offsets).unwrap();
        assert_eq!(o[0].0, "0000000000000000");
        let indexes = vec![
            ("00002".to_string(), rec(3)),
            ("00000".to_string(), rec(10)),
            ("00001".to_string(), rec(10)),
        ];
        assert_eq!(ordered(indexes).unwrap()[2].0, "00002");
        let one_based = vec![("1".to_string(), rec(3)), ("2".to_string(), rec(3))];
        assert!(ordered(one_based).is_ok());
        let gap = vec![
            ("0000000000000000".to_string(), rec(10)),
            ("0000000000000020".to_string(), rec(10)),
        ];
        assert!(matches!(ordered(gap), Err(UploadError::Gap(_))));
        let dup = vec![("1".to_string(), rec(3)), ("01".to_string(), rec(3))];
        assert!(matches!(
            ordered(dup),
            Err(UploadError::DuplicatePosition(..))
        ));
    }

    fn setup(quota: Option<u64>) -> (tempfile::TempDir, Namespace, Owner, Owner) {
        let dir = tempfile::tempdir().unwrap();
        let index = std::sync::Arc::new(
            crate::meta::redb::Index::open(&dir.path().join("i.redb")).unwrap(),
        );
        let mut owners = Vec::new();
        for name in ["ann", "ben"] {
            let u = index
                .add_user(crate::meta::NewUser {
                    name: name.into(),
                    password_hash: "x".into(),
                    admin: false,
                    quota,
                })
                .unwrap();
            owners.push(Owner::from(&u));
        }
        let ben = owners.pop().unwrap();
        let ann = owners.pop().unwrap();
        (dir, Namespace::new(index), ann, ben)
    }

    fn part(size: u64) -> NewPart {
        NewPart {
            size,
            chunks: Vec::new(),
            uploaded: Vec::new(),
        }
    }

    #[test]
    fn sessions_refuse_what_cannot_be_assembled() {
        let (_d, ns, ann, ben) = setup(Some(100));
        ns.create_session(&ann, "t", Some(50)).unwrap();
        assert!(matches!(
            ns.create_session(&ann, "t", None),
            Err(UploadError::SessionExists)
        ));
        // Same id, other user: a separate session; neither sees the other's.
        ns.create_session(&ben, "t", None).unwrap();
        ns.add_part(&ann, "t", "0", &part(10)).unwrap();
        assert_eq!(ns.session(&ben, "t").unwrap().1.len(), 0);
        assert!(matches!(
            ns.add_part(&ann, "nope", "0", &part(1)),
            Err(UploadError::NoSession)
        ));
        assert!(matches!(
            ns.add_part(&ann, "t", ".file", &part(1)),
            Err(UploadError::BadName(_))
        ));
        assert!(matches!(
            ns.add_part(&ann, "t", "00", &part(1)),
            Err(UploadError::DuplicatePosition(..))
        ));
        assert!(matches!(
            ns.add_part(&ann, "t", "10", &part(41)),
            Err(UploadError::OverTotal(50))
        ));
        // Replacing a part counts its size once.
        ns.add_part(&ann, "t", "0", &part(20)).unwrap();
        assert_eq!(ns.session(&ann, "t").unwrap().0.received, 20);
        // The quota counts what sessions hold.
        ns.create_session(&ann, "u", None).unwrap();
        assert!(matches!(
            ns.add_part(&ann, "u", "0", &part(81)),
            Err(UploadError::Namespace(NsError::QuotaExceeded { .. }))
        ));
        assert!(matches!(
            ns.create_session(&ann, "v", Some(1000)),
            Err(UploadError::Namespace(NsError::QuotaExceeded { .. }))
        ));
        ns.abandon_session(&ann, "t").unwrap();
        assert!(matches!(
            ns.abandon_session(&ann, "t"),
            Err(UploadError::NoSession)
        ));
        assert_eq!(ns.sessions(&ann).unwrap().len(), 1);
        assert_eq!(ns.sessions(&ben).unwrap().len(), 1);
    }

    #[test]
    fn names() {
        assert!(valid_name("1234567"));
        assert!(valid_name("rclone-chunked-upload-abc"));
        assert!(!valid_name(""));
        assert!(!valid_name(".."));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(&"x".repeat(201)));
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use crate::meta::StoredProp;

    // Bytes the previous encoder (the `bincode` 1 crate) wrote: existing
    // indexes must keep reading as they are.
    const SESSION: &str = "0500000000000000faffffffffffffff014d000000000000000900000000000000";
    const PART: &str = "030000000000000004000000000000000300000000000000010203";
    const PROP: &str = "01000000000000006e0001050000000000000075726e3a780102000000000000003c3e";

    #[test]
    fn session_and_property_records_keep_their_layout() {
        let s = UploadSession {
            created: 5,
            updated: -6,
            total_length: Some(77),
            received: 9,
        };
        assert_eq!(hex::encode(encode(&s)), SESSION);
        let back: UploadSession = decode("uploads", &hex::decode(SESSION).unwrap()).unwrap();
        assert_eq!(back.total_length, Some(77));
        let p = PartRecord {
            size: 3,
            modified: 4,
            manifest: vec![1, 2, 3],
        };
        assert_eq!(hex::encode(encode(&p)), PART);
        let back: PartRecord = decode("upload_parts", &hex::decode(PART).unwrap()).unwrap();
        assert_eq!(back.manifest, vec![1, 2, 3]);
        let q = StoredProp {
            name: "n".into(),
            prefix: None,
            namespace: Some("urn:x".into()),
            xml: Some(vec![60, 62]),
        };
        assert_eq!(hex::encode(q.encode()), PROP);
        assert_eq!(StoredProp::decode(&hex::decode(PROP).unwrap()).unwrap(), q);
        assert!(StoredProp::decode(&hex::decode(&PROP[..20]).unwrap()).is_err());
    }
}
