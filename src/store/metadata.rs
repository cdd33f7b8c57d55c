//! Sealed metadata segments in the backend: `meta/<name>`, where the name
//! is a keyed MAC of the segment's first sequence number (so it reveals
//! nothing and a restore can compute the next name from the last segment).
//!
//! Why the orphan sweep never deletes them: the sweep lists and deletes
//! only inside the fan-out folders of `objects/`; these objects live in a
//! folder of their own ([`crate::crypto::METADATA_FOLDER`]), which no
//! listing of `objects/` reaches. Sealing is the chunks' (AES-256-GCM-SIV,
//! kind "metadata", the name in the associated data), so a flipped bit or a
//! segment moved to another name is refused before it is decoded.

use bytes::Bytes;
use futures_util::TryStreamExt;

use super::{ContentStore, StoreError};
use crate::backend::BackendError;
use crate::crypto::{ObjectKind, ObjectName};

impl ContentStore {
    /// Seals a segment's plaintext and stores it under the name derived
    /// from its first sequence number; returns the sealed size.
    pub async fn put_metadata_segment(&self, first: u64, plain: &[u8]) -> Result<u64, StoreError> {
        let (name, id) = ObjectName::for_metadata_segment(&self.keys, first);
        let sealed = self.sealer.seal(ObjectKind::Metadata, &id, &name, plain)?;
        let size = sealed.len() as u64;
        self.backend.put(&name, Bytes::from(sealed)).await?;
        Ok(size)
    }

    /// The plaintext of the segment starting at `first`, authenticated;
    /// `None` when the backend has no such object.
    pub async fn read_metadata_segment(&self, first: u64) -> Result<Option<Bytes>, StoreError> {
        let (name, id) = ObjectName::for_metadata_segment(&self.keys, first);
        let object = match self.backend.get(&name).await {
            Ok(object) => object,
            Err(BackendError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let plain = self
            .sealer
            .open(ObjectKind::Metadata, &id, &name, object, &[])
            .map_err(|source| StoreError::Object {
                id,
                name: name.to_string(),
                source,
            })?;
        Ok(Some(plain))
    }

    /// The names of every sealed metadata object in the backend.
    pub async fn metadata_objects(&self) -> Result<Vec<ObjectName>, StoreError> {
        let infos: Vec<_> = self.backend.list_metadata().try_collect().await?;
        Ok(infos.into_iter().map(|i| i.name).collect())
    }
}
