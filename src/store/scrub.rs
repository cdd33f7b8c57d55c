//! Verifying one stored object, for the scrub (`jobs::scrub`): fetch it,
//! authenticate it and re-hash its plaintext against its chunk id — the
//! very check every read makes (`ContentStore::open_object`), so the scrub
//! judges an object exactly as a download would, and no crypto is repeated
//! here.
//!
//! A chunk record does not say whose upload stored it, and with
//! `dedup.scope = "user"` (or after the scope changed) a chunk id is keyed
//! per user. [`ContentStore::keys_of_every_scope`] therefore lists every key a chunk
//! may be under, the configured scope's first; an object is sound when its
//! plaintext hashes to its id under any of them. Re-hashing costs one keyed
//! BLAKE3 per key tried, so with per-user keys the cost grows with the
//! number of users (the scrub's pacing counts that time too).
//!
//! Races: the chunk is pinned while it is checked, and its record is read
//! after the pin. A chunk the collector is deleting cannot be pinned, and
//! one it deleted before the pin has no record: either way the object is
//! not judged ([`ObjectHealth::Collected`]). Once pinned with a record, the
//! collector cannot drop it, so a missing object then is really missing.
//!
//! Memory: one object at a time, within the transfer budget (the scrub
//! waits for room like any download, so it yields to users).

use std::sync::Arc;

use super::budget::chunk_cost;
use super::{ContentStore, PinGuard, StoreError};
use crate::backend::BackendError;
use crate::crypto::{ChunkId, ChunkIdKey, CryptoError, ObjectName};
use crate::meta::ChunkRecord;

/// What reading one object back found.
#[derive(Debug)]
pub enum ObjectHealth {
    /// It opens and hashes to its id.
    Sound,
    /// The backend does not have it.
    Missing,
    /// It does not open, or its content is not its chunk's.
    Corrupt(CryptoError),
    /// The backend answers for it, but even after retries never with the
    /// whole object (a body shorter or longer than announced).
    Unreadable(String),
    /// Authentic, but its content hashes to its id under none of the keys
    /// given, and no file references it: a chunk of a removed user (whose
    /// key is gone with them), awaiting collection.
    Unowned,
    /// The collector deleted it, or is deleting it: nothing to judge.
    Collected,
}

/// The verdict on one object and what reading it cost.
#[derive(Debug)]
pub struct Verified {
    pub health: ObjectHealth,
    /// Bytes fetched from the backend.
    pub bytes_read: u64,
}

impl ContentStore {
    /// Every chunk-id key a chunk of `users` may be under: the shared one
    /// and each user's, the configured scope's kind first (so the usual
    /// chunk matches the first key tried).
    pub fn keys_of_every_scope(&self, users: &[u64]) -> Arc<[ChunkIdKey]> {
        let shared = ChunkIdKey::shared(&self.keys);
        let own = users.iter().map(|u| ChunkIdKey::of_user(&self.keys, *u));
        let keys: Vec<ChunkIdKey> = if self.settings.dedup_per_user {
            own.chain(std::iter::once(shared)).collect()
        } else {
            std::iter::once(shared).chain(own).collect()
        };
        keys.into()
    }

    /// Fetches the object of chunk `id` and checks it as a read would,
    /// accepting an id under any of `keys`. A missing or corrupt object is
    /// a verdict; an error is a failure to ask (the upstream is down or
    /// refuses), after which the object is still unjudged.
    pub async fn verify_object(
        self: &Arc<Self>,
        id: ChunkId,
        keys: &Arc<[ChunkIdKey]>,
    ) -> Result<Verified, StoreError> {
        let unjudged = Verified {
            health: ObjectHealth::Collected,
            bytes_read: 0,
        };
        if !self.pins.pin(id) {
            return Ok(unjudged);
        }
        let mut pinned = PinGuard::new(self.pins.clone());
        pinned.add(id);
        let Some(record) = self.meta.chunk(&id.0).await? else {
            return Ok(unjudged);
        };
        let _room = self
            .budget
            .floor(chunk_cost(self.settings.chunk_sizes.max))
            .await;
        let mut verified = self.fetch_and_open(id, &record, keys).await?;
        if matches!(
            verified.health,
            ObjectHealth::Corrupt(CryptoError::IdMismatch)
        ) && record.refs == 0
        {
            verified.health = ObjectHealth::Unowned;
        }
        Ok(verified)
    }

    /// The verdict on the object of `id` (or its entry in a pack, as
    /// `record` locates it) as it is in the backend.
    async fn fetch_and_open(
        self: &Arc<Self>,
        id: ChunkId,
        record: &ChunkRecord,
        keys: &Arc<[ChunkIdKey]>,
    ) -> Result<Verified, StoreError> {
        // What the backend holds, not a local cache's copy of it.
        let backend = self.backend.behind_cache();
        let backend = backend.as_ref().unwrap_or(&self.backend);
        let (name, fetched) = match record.packed {
            Some(at) => {
                let name = ObjectName::for_pack(&self.keys, &at.pack);
                let range = (u64::from(at.offset), u64::from(record.stored));
                let fetched = backend.get_range(&name, range.0, range.1).await;
                (name, fetched)
            }
            None => {
                let name = ObjectName::for_chunk(&self.keys, &id);
                let fetched = backend.get(&name).await;
                (name, fetched)
            }
        };
        let object = match fetched {
            Ok(object) => object,
            Err(BackendError::NotFound(_)) => {
                return Ok(Verified {
                    health: ObjectHealth::Missing,
                    bytes_read: 0,
                })
            }
            Err(e @ BackendError::Corrupt { .. }) => {
                return Ok(Verified {
                    health: ObjectHealth::Unreadable(e.to_string()),
                    bytes_read: 0,
                })
            }
            Err(e) => return Err(e.into()),
        };
        let bytes_read = object.len() as u64;
        let opened = match record.packed {
            Some(_) => self.open_packed(id, name, object, keys.clone()).await,
            None => self.open_object(id, name, object, keys.clone()).await,
        };
        let health = match opened {
            Ok(_) => ObjectHealth::Sound,
            Err(StoreError::Object { source, .. }) => ObjectHealth::Corrupt(source),
            Err(e) => return Err(e),
        };
        Ok(Verified { health, bytes_read })
    }

    /// The object name of chunk `id` (for findings and the log).
    pub fn object_name(&self, id: &ChunkId) -> ObjectName {
        ObjectName::for_chunk(&self.keys, id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::LocalDirStore;
    use crate::crypto::MasterKey;
    use crate::meta::{split_path, FileCommit, Meta, NewUser, Owner};
    use crate::store::StoreSettings;

    /// Stores `data` (one chunk) as the file `path` of `owner`; its id.
    async fn commit(
        store: &Arc<ContentStore>,
        meta: &Meta,
        owner: &Owner,
        path: &str,
        data: &[u8],
    ) -> ChunkId {
        let mut up = store.begin_upload(owner.id, None);
        up.write(data).await.unwrap();
        let done = up.finish().await.unwrap();
        let path = split_path(path.as_bytes()).unwrap();
        done.record_with(|c| async move {
            let id = c.manifest[0].id;
            let commit = FileCommit {
                size: c.size,
                chunks: c.manifest,
                uploaded: c.uploaded,
                mtime: None,
                checksums: None,
            };
            meta.commit_file(owner, &path, &commit).await.map(|_| id)
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sound_corrupt_missing_and_unowned_objects_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let meta = Meta::open_redb(&dir.path().join("i.redb"), Default::default()).unwrap();
        let backend = Arc::new(LocalDirStore::open(&dir.path().join("data")).unwrap());
        let keys = Arc::new(MasterKey::from_bytes([7; 32]).derive());
        let settings = StoreSettings {
            dedup_per_user: true,
            // These cases are about objects of their own.
            packs: crate::store::PackSettings {
                below: 0,
                ..Default::default()
            },
            ..StoreSettings::default()
        };
        let store = ContentStore::new(keys, backend.clone(), meta.clone(), settings);
        let mut owners = Vec::new();
        for name in ["ann", "bob"] {
            let new = NewUser {
                name: name.into(),
                password_hash: "x".into(),
                admin: false,
                quota: None,
            };
            owners.push(Owner::from(&meta.add_user(new).await.unwrap()));
        }
        let (ann, bob) = (&owners[0], &owners[1]);
        let mut ids = Vec::new();
        for seed in 0..3u8 {
            let path = format!("f{seed}");
            ids.push(commit(&store, &meta, ann, &path, &vec![seed; 50_000]).await);
        }
        let bobs = commit(&store, &meta, bob, "b", &[9; 50_000]).await;

        let keys = store.keys_of_every_scope(&[bob.id, ann.id]);
        let sound = store.verify_object(ids[0], &keys).await.unwrap();
        assert!(matches!(sound.health, ObjectHealth::Sound), "{sound:?}");
        assert!(sound.bytes_read > 0);
        // Without ann's key her content does not hash to its id.
        let others = store.keys_of_every_scope(&[bob.id]);
        let foreign = store.verify_object(ids[0], &others).await.unwrap();
        assert!(matches!(
            foreign.health,
            ObjectHealth::Corrupt(CryptoError::IdMismatch)
        ));

        let path = backend
            .root()
            .join(store.object_name(&ids[1]).relative_path());
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let flipped = store.verify_object(ids[1], &keys).await.unwrap();
        assert!(matches!(
            flipped.health,
            ObjectHealth::Corrupt(CryptoError::Tampered)
        ));

        std::fs::remove_file(
            backend
                .root()
                .join(store.object_name(&ids[2]).relative_path()),
        )
        .unwrap();
        let gone = store.verify_object(ids[2], &keys).await.unwrap();
        assert!(matches!(gone.health, ObjectHealth::Missing));
        assert_eq!(gone.bytes_read, 0);

        // Bob is removed: his chunk awaits collection under a key no one
        // has any more; not a finding.
        meta.remove_user("bob").await.unwrap();
        let keys = store.keys_of_every_scope(&[ann.id]);
        let unowned = store.verify_object(bobs, &keys).await.unwrap();
        assert!(
            matches!(unowned.health, ObjectHealth::Unowned),
            "{unowned:?}"
        );
        // A chunk without a record is not judged.
        let none = store.verify_object(ChunkId([1; 32]), &keys).await.unwrap();
        assert!(matches!(none.health, ObjectHealth::Collected));
        assert!(store.pins.is_empty(), "every pin released");
    }
}
