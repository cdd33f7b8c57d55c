//! The sealed object format.
//!
//! ```text
//! offset size field
//! 0      4    magic "DDAV"
//! 4      1    format version (1)
//! 5      1    kind (1 = chunk, 2 = sealed metadata)
//! 6      1    flags (bit 0: payload is zstd-compressed)
//! 7      1    reserved (0)
//! 8      4    key id (little endian)
//! 12     ..   AES-256-GCM-SIV ciphertext of the payload, 16-byte tag last
//! ```
//! The nonce is derived from the chunk id; the associated data is the header
//! and the object name, so an object cannot be swapped for another.
//!
//! AES-256-GCM-SIV (RFC 8452) comes from aws-lc-rs: the same ciphertext as
//! the RustCrypto `aes-gcm-siv` crate (a test checks it), about three times
//! faster; both sealing and opening work in place.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM_SIV};
use bytes::{Bytes, BytesMut};

use super::{mac, ChunkId, ChunkIdKey, CryptoError, Keys, ObjectName};

pub const HEADER_LEN: usize = 12;
const MAGIC: &[u8; 4] = b"DDAV";
const VERSION: u8 = 1;
pub(super) const FLAG_ZSTD: u8 = 1;
const TAG_LEN: usize = 16;
/// The most a metadata object may decompress to (segments are cut well
/// below it).
pub const MAX_METADATA_PLAIN: usize = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ObjectKind {
    Chunk = 1,
    Metadata = 2,
}

/// Seals and opens objects with the gateway's keys.
pub struct Sealer {
    keys: std::sync::Arc<Keys>,
    cipher: LessSafeKey,
    zstd_level: i32,
    max_plain: usize,
}

impl Sealer {
    /// `max_plain` bounds what an object may decompress to (the largest chunk).
    pub fn new(keys: std::sync::Arc<Keys>, zstd_level: i32, max_plain: usize) -> Self {
        // A 32-byte key is what AES-256 takes, so this cannot fail.
        let key =
            UnboundKey::new(&AES_256_GCM_SIV, &keys.object_seal).unwrap_or_else(|_| unreachable!());
        let cipher = LessSafeKey::new(key);
        Self {
            keys,
            cipher,
            zstd_level,
            max_plain,
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub(super) fn cipher(&self) -> &LessSafeKey {
        &self.cipher
    }

    pub(super) fn zstd_level(&self) -> i32 {
        self.zstd_level
    }

    /// The most a chunk may decompress to.
    pub(super) fn max_plain(&self) -> usize {
        self.max_plain
    }

    fn nonce_bytes(&self, id: &ChunkId) -> [u8; 12] {
        let n = mac(&self.keys.object_seal, &[b"nonce", &id.0]);
        let mut out = [0u8; 12];
        out.copy_from_slice(&n[..12]);
        out
    }

    fn nonce(&self, id: &ChunkId) -> Nonce {
        Nonce::assume_unique_for_key(self.nonce_bytes(id))
    }

    fn header(&self, kind: ObjectKind, flags: u8) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(MAGIC);
        h[4] = VERSION;
        h[5] = kind as u8;
        h[6] = flags;
        h[8..12].copy_from_slice(&self.keys.key_id.to_le_bytes());
        h
    }

    /// Compresses (when that shrinks it) and encrypts `plain` into object bytes.
    pub fn seal(
        &self,
        kind: ObjectKind,
        id: &ChunkId,
        name: &ObjectName,
        plain: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let compressed =
            zstd::bulk::compress(plain, self.zstd_level).map_err(CryptoError::Compression)?;
        let (flags, payload) = if compressed.len() + 64 < plain.len() {
            (FLAG_ZSTD, compressed.as_slice())
        } else {
            (0, plain)
        };
        let header = self.header(kind, flags);
        let aad = [&header[..], name.as_str().as_bytes()].concat();
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TAG_LEN);
        out.extend_from_slice(&header);
        out.extend_from_slice(payload);
        let tag = self
            .cipher
            .seal_in_place_separate_tag(self.nonce(id), Aad::from(&aad), &mut out[HEADER_LEN..])
            .map_err(|_| CryptoError::Tampered)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Authenticates, decrypts and decompresses an object, then checks that
    /// a chunk's plaintext hashes to `id` under one of `id_keys` (tried in
    /// order; a file written before `dedup.scope` changed has its chunks
    /// under the other key). An object nobody else holds (as fetched) is
    /// decrypted where it lies, without a copy.
    pub fn open(
        &self,
        kind: ObjectKind,
        id: &ChunkId,
        name: &ObjectName,
        object: Bytes,
        id_keys: &[ChunkIdKey],
    ) -> Result<Bytes, CryptoError> {
        self.check_header(kind, &object)?;
        let aad = [&object[..HEADER_LEN], name.as_str().as_bytes()].concat();
        let compressed = object[6] & FLAG_ZSTD != 0;
        let mut payload = match object.try_into_mut() {
            Ok(mut whole) => whole.split_off(HEADER_LEN),
            Err(shared) => BytesMut::from(&shared[HEADER_LEN..]),
        };
        let len = self
            .cipher
            .open_in_place(self.nonce(id), Aad::from(&aad), &mut payload)
            .map_err(|_| CryptoError::Tampered)?
            .len();
        payload.truncate(len);
        let plain = if compressed {
            Bytes::from(
                zstd::bulk::decompress(&payload, self.bound(kind))
                    .map_err(|_| CryptoError::TooLarge)?,
            )
        } else {
            payload.freeze()
        };
        if kind == ObjectKind::Chunk && !id_keys.iter().any(|k| ChunkId::under(k, &plain) == *id) {
            return Err(CryptoError::IdMismatch);
        }
        Ok(plain)
    }

    /// What an object of `kind` may decompress to.
    fn bound(&self, kind: ObjectKind) -> usize {
        match kind {
            ObjectKind::Chunk => self.max_plain,
            ObjectKind::Metadata => MAX_METADATA_PLAIN,
        }
    }

    /// Magic, version, kind and key id of an object's header.
    fn check_header(&self, kind: ObjectKind, object: &[u8]) -> Result<(), CryptoError> {
        if object.len() < HEADER_LEN + TAG_LEN || &object[..4] != MAGIC {
            return Err(CryptoError::NotAnObject);
        }
        if object[4] != VERSION {
            return Err(CryptoError::UnsupportedVersion(object[4]));
        }
        if object[5] != kind as u8 {
            return Err(CryptoError::Tampered);
        }
        let found = u32::from_le_bytes([object[8], object[9], object[10], object[11]]);
        if found != self.keys.key_id {
            return Err(CryptoError::WrongKey {
                expected: self.keys.key_id,
                found,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use std::sync::Arc;

    fn shared_key(s: &Sealer) -> [ChunkIdKey; 1] {
        [ChunkIdKey::shared(s.keys())]
    }

    fn sealer() -> Sealer {
        Sealer::new(
            Arc::new(MasterKey::from_bytes([9; 32]).derive()),
            1,
            1 << 24,
        )
    }

    #[test]
    fn a_metadata_segment_refuses_a_flipped_bit_and_another_name() {
        let s = sealer();
        let plain = b"segment rows with a file name in them".repeat(50);
        let (name, id) = ObjectName::for_metadata_segment(s.keys(), 7);
        assert!(name.relative_path().starts_with("meta/"));
        let obj = s.seal(ObjectKind::Metadata, &id, &name, &plain).unwrap();
        let opened = s.open(
            ObjectKind::Metadata,
            &id,
            &name,
            Bytes::from(obj.clone()),
            &[],
        );
        assert_eq!(&opened.unwrap()[..], &plain[..]);
        for bit in [HEADER_LEN * 8 + 3, (obj.len() - 1) * 8] {
            let mut bad = obj.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let r = s.open(ObjectKind::Metadata, &id, &name, Bytes::from(bad), &[]);
            assert!(matches!(r, Err(CryptoError::Tampered)), "bit {bit}");
        }
        // Stored under the next segment's name: refused.
        let (other, other_id) = ObjectName::for_metadata_segment(s.keys(), 8);
        let r = s.open(
            ObjectKind::Metadata,
            &other_id,
            &other,
            Bytes::from(obj.clone()),
            &[],
        );
        assert!(matches!(r, Err(CryptoError::Tampered)));
        // Nor does it pass for a chunk.
        let r = s.open(ObjectKind::Chunk, &id, &name, Bytes::from(obj), &[]);
        assert!(r.is_err());
    }

    #[test]
    fn round_trip_compressible_and_random() {
        let s = sealer();
        let text = b"abcabcabc".repeat(1000);
        let random: Vec<u8> = (0..10_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for plain in [&text[..], &random[..], &b""[..]] {
            let id = ChunkId::of(s.keys(), plain);
            let name = ObjectName::for_chunk(s.keys(), &id);
            let obj = s.seal(ObjectKind::Chunk, &id, &name, plain).unwrap();
            let opened = s.open(
                ObjectKind::Chunk,
                &id,
                &name,
                Bytes::from(obj.clone()),
                &shared_key(&s),
            );
            assert_eq!(opened.unwrap(), plain);
            // An object shared with someone else is opened from a copy.
            let shared = Bytes::from(obj.clone());
            let _keep = shared.clone();
            assert_eq!(
                s.open(ObjectKind::Chunk, &id, &name, shared, &shared_key(&s))
                    .unwrap(),
                plain
            );
            // Deterministic: the same chunk always seals to the same bytes.
            assert_eq!(obj, s.seal(ObjectKind::Chunk, &id, &name, plain).unwrap());
        }
        let id = ChunkId::of(s.keys(), &text);
        let name = ObjectName::for_chunk(s.keys(), &id);
        let obj = s.seal(ObjectKind::Chunk, &id, &name, &text).unwrap();
        assert!(obj.len() < text.len() / 10, "compressible data shrinks");
    }

    /// The object format is RFC 8452 AES-256-GCM-SIV: the bytes must not
    /// depend on which implementation sealed them.
    #[test]
    fn objects_match_the_reference_implementation() {
        use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
        let s = sealer();
        let reference = aes_gcm_siv::Aes256GcmSiv::new((&s.keys.object_seal).into());
        for len in [0usize, 1, 15, 16, 17, 4096, 300_000] {
            let mut plain = vec![0u8; len];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut plain);
            let id = ChunkId::of(s.keys(), &plain);
            let name = ObjectName::for_chunk(s.keys(), &id);
            let obj = s.seal(ObjectKind::Chunk, &id, &name, &plain).unwrap();
            let aad = [&obj[..HEADER_LEN], name.as_str().as_bytes()].concat();
            let expected = reference
                .encrypt(
                    aes_gcm_siv::Nonce::from_slice(&s.nonce_bytes(&id)),
                    Payload {
                        msg: &plain,
                        aad: &aad,
                    },
                )
                .unwrap();
            assert_eq!(obj[6], 0, "random data is stored uncompressed");
            assert_eq!(&obj[HEADER_LEN..], &expected[..], "{len} bytes");
        }
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let s = sealer();
        let plain = b"some secret content".repeat(20);
        let id = ChunkId::of(s.keys(), &plain);
        let name = ObjectName::for_chunk(s.keys(), &id);
        let obj = s.seal(ObjectKind::Chunk, &id, &name, &plain).unwrap();
        for i in 0..obj.len() {
            let mut bad = obj.clone();
            bad[i] ^= 0x40;
            assert!(
                s.open(
                    ObjectKind::Chunk,
                    &id,
                    &name,
                    Bytes::from(bad),
                    &shared_key(&s)
                )
                .is_err(),
                "byte {i}"
            );
        }
        let other = ObjectName::for_chunk(s.keys(), &ChunkId([0; 32]));
        let obj = Bytes::from(obj);
        assert!(s
            .open(ObjectKind::Chunk, &id, &other, obj.clone(), &shared_key(&s))
            .is_err());
        assert!(s
            .open(
                ObjectKind::Chunk,
                &id,
                &name,
                obj.slice(..obj.len() - 1),
                &shared_key(&s)
            )
            .is_err());
    }

    #[test]
    fn a_chunk_opens_only_under_a_key_its_id_was_made_with() {
        let s = sealer();
        let plain = b"per-user content".repeat(10);
        let alice = ChunkIdKey::of_user(s.keys(), 1);
        let bob = ChunkIdKey::of_user(s.keys(), 2);
        let id = ChunkId::under(&alice, &plain);
        let name = ObjectName::for_chunk(s.keys(), &id);
        let obj = Bytes::from(s.seal(ObjectKind::Chunk, &id, &name, &plain).unwrap());
        let open = |keys: &[ChunkIdKey]| s.open(ObjectKind::Chunk, &id, &name, obj.clone(), keys);
        assert!(matches!(
            open(std::slice::from_ref(&bob)),
            Err(CryptoError::IdMismatch)
        ));
        assert!(matches!(
            open(&shared_key(&s)),
            Err(CryptoError::IdMismatch)
        ));
        assert_eq!(open(&[bob, alice.clone()]).unwrap(), plain);
        assert_eq!(open(&[alice]).unwrap(), plain);
    }
}
