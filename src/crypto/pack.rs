//! The sealed pack format: many small chunks in one backend object.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "DDPK"
//! 4       1     format version (1)
//! 5       1     kind (3 = pack)
//! 6       2     reserved (0)
//! 8       4     key id (little endian)
//! 12      ..    entries, back to back; each is the AES-256-GCM-SIV
//!               ciphertext of [flags (bit 0: zstd)] ‖ payload, tag last
//! ..      ..    trailer: AES-256-GCM-SIV ciphertext of the entry list
//!               (count u32, then per entry: chunk id 32, offset u32,
//!               length u32), tag last
//! end-4   4     trailer length in bytes (little endian)
//! ```
//!
//! Why this shape:
//! - **Entries carry no plaintext header.** An object's header starts with
//!   a magic; repeated inside a pack it would mark every entry's start, and
//!   the backend could read off the list of chunk sizes. Here the flags are
//!   inside the ciphertext, so the upstream sees one header, one opaque
//!   body and the trailer's length (which tells how many chunks a pack
//!   holds, nothing more).
//! - **Each entry is sealed on its own** (nonce derived from its chunk id,
//!   associated data = pack header ‖ pack name ‖ chunk id), so a ranged
//!   read of one entry is authenticated by itself, a flipped bit fails only
//!   the entry it lands in, and an entry cannot be moved to another pack or
//!   offered as another chunk.
//! - **The trailer lists what the pack holds**, sealed under a nonce
//!   derived from the pack's id: a pack describes itself, so chunk
//!   locations can be rebuilt from the packs alone (`read_trailer`).
//!
//! The pack's object name lives in the chunks' name space
//! ([`ObjectName::for_pack`]): a pack id is random, so it never equals a
//! chunk id, and the collector and the orphan sweep handle a pack like any
//! other object.

use aws_lc_rs::aead::{Aad, Nonce};
use bytes::{Bytes, BytesMut};

use super::object::FLAG_ZSTD;
use super::{mac, ChunkId, ChunkIdKey, CryptoError, ObjectName, Sealer};

/// The pack header's length.
pub const PACK_HEADER_LEN: usize = 12;
const MAGIC: &[u8; 4] = b"DDPK";
const VERSION: u8 = 1;
const KIND_PACK: u8 = 3;
const TAG_LEN: usize = 16;
/// One trailer row: chunk id, offset, length.
const TRAILER_ROW: usize = 40;
/// What sealing adds to a chunk in a pack at most: the flags byte and the
/// tag (a payload is compressed only when that makes it smaller).
pub const PACKED_OVERHEAD: u32 = (1 + TAG_LEN) as u32;

/// A pack's identity: random, fixed when the pack is opened.
pub type PackId = [u8; 32];

/// Where one chunk lies inside a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedEntry {
    pub id: ChunkId,
    /// From the start of the pack object.
    pub offset: u32,
    /// The sealed entry's length.
    pub len: u32,
}

/// A pack being filled: the header, then sealed entries as they come.
pub struct PackBuilder {
    pack: PackId,
    name: ObjectName,
    bytes: Vec<u8>,
    entries: Vec<PackedEntry>,
}

impl PackBuilder {
    /// Starts pack `pack` (named `name`) under `sealer`'s key.
    pub fn new(sealer: &Sealer, pack: PackId, name: ObjectName) -> Self {
        let mut bytes = Vec::with_capacity(1 << 20);
        bytes.extend_from_slice(&pack_header(sealer.keys().key_id));
        Self {
            pack,
            name,
            bytes,
            entries: Vec::new(),
        }
    }

    pub fn pack(&self) -> PackId {
        self.pack
    }

    pub fn name(&self) -> &ObjectName {
        &self.name
    }

    /// Bytes so far (without the trailer).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends an entry sealed by [`Sealer::seal_packed`] for this pack.
    pub fn push(&mut self, id: ChunkId, sealed: &[u8]) -> PackedEntry {
        let entry = PackedEntry {
            id,
            offset: self.bytes.len() as u32,
            len: sealed.len() as u32,
        };
        self.bytes.extend_from_slice(sealed);
        self.entries.push(entry);
        entry
    }

    /// Seals the trailer and answers the whole object and its entries.
    pub fn finish(mut self, sealer: &Sealer) -> Result<(Vec<u8>, Vec<PackedEntry>), CryptoError> {
        let mut list = Vec::with_capacity(4 + self.entries.len() * TRAILER_ROW);
        list.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            list.extend_from_slice(&e.id.0);
            list.extend_from_slice(&e.offset.to_le_bytes());
            list.extend_from_slice(&e.len.to_le_bytes());
        }
        let header = pack_header(sealer.keys().key_id);
        let aad = trailer_aad(&header, &self.name);
        let nonce = sealer.pack_nonce(&[b"pack-trailer", &self.pack]);
        let tag = sealer
            .cipher()
            .seal_in_place_separate_tag(nonce, Aad::from(&aad), &mut list)
            .map_err(|_| CryptoError::Tampered)?;
        list.extend_from_slice(tag.as_ref());
        let trailer_len = list.len() as u32;
        self.bytes.extend_from_slice(&list);
        self.bytes.extend_from_slice(&trailer_len.to_le_bytes());
        Ok((self.bytes, self.entries))
    }
}

fn pack_header(key_id: u32) -> [u8; PACK_HEADER_LEN] {
    let mut h = [0u8; PACK_HEADER_LEN];
    h[..4].copy_from_slice(MAGIC);
    h[4] = VERSION;
    h[5] = KIND_PACK;
    h[8..12].copy_from_slice(&key_id.to_le_bytes());
    h
}

fn entry_aad(header: &[u8; PACK_HEADER_LEN], pack: &ObjectName, id: &ChunkId) -> Vec<u8> {
    [&header[..], pack.as_str().as_bytes(), &id.0].concat()
}

fn trailer_aad(header: &[u8; PACK_HEADER_LEN], pack: &ObjectName) -> Vec<u8> {
    [&header[..], pack.as_str().as_bytes(), b"trailer"].concat()
}

impl Sealer {
    fn pack_nonce(&self, parts: &[&[u8]]) -> Nonce {
        let n = mac(&self.keys().object_seal, parts);
        let mut out = [0u8; 12];
        out.copy_from_slice(&n[..12]);
        Nonce::assume_unique_for_key(out)
    }

    /// Compresses (when that shrinks it) and seals chunk `id` as an entry
    /// of the pack named `pack`.
    pub fn seal_packed(
        &self,
        id: &ChunkId,
        pack: &ObjectName,
        plain: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let compressed =
            zstd::bulk::compress(plain, self.zstd_level()).map_err(CryptoError::Compression)?;
        let (flags, payload) = if compressed.len() + 64 < plain.len() {
            (FLAG_ZSTD, compressed.as_slice())
        } else {
            (0, plain)
        };
        let mut out = Vec::with_capacity(1 + payload.len() + TAG_LEN);
        out.push(flags);
        out.extend_from_slice(payload);
        let aad = entry_aad(&pack_header(self.keys().key_id), pack, id);
        let nonce = self.pack_nonce(&[b"pack-entry", &id.0]);
        let tag = self
            .cipher()
            .seal_in_place_separate_tag(nonce, Aad::from(&aad), &mut out)
            .map_err(|_| CryptoError::Tampered)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Authenticates and opens one entry (as read from the pack named
    /// `pack`), and checks that its plaintext hashes to `id` under one of
    /// `id_keys`.
    pub fn open_packed(
        &self,
        id: &ChunkId,
        pack: &ObjectName,
        entry: Bytes,
        id_keys: &[ChunkIdKey],
    ) -> Result<Bytes, CryptoError> {
        if entry.len() < PACKED_OVERHEAD as usize {
            return Err(CryptoError::NotAnObject);
        }
        let aad = entry_aad(&pack_header(self.keys().key_id), pack, id);
        let mut buf = match entry.try_into_mut() {
            Ok(whole) => whole,
            Err(shared) => BytesMut::from(&shared[..]),
        };
        let nonce = self.pack_nonce(&[b"pack-entry", &id.0]);
        let len = self
            .cipher()
            .open_in_place(nonce, Aad::from(&aad), &mut buf)
            .map_err(|_| CryptoError::Tampered)?
            .len();
        buf.truncate(len);
        let flags = buf[0];
        let payload = buf.split_off(1);
        let plain = if flags & FLAG_ZSTD != 0 {
            Bytes::from(
                zstd::bulk::decompress(&payload, self.max_plain())
                    .map_err(|_| CryptoError::TooLarge)?,
            )
        } else {
            payload.freeze()
        };
        if !id_keys.iter().any(|k| ChunkId::under(k, &plain) == *id) {
            return Err(CryptoError::IdMismatch);
        }
        Ok(plain)
    }

    /// Reads the entry list of a whole pack object `pack` (its id and
    /// name): what it holds and where, authenticated.
    pub fn read_trailer(
        &self,
        pack: &PackId,
        name: &ObjectName,
        object: &[u8],
    ) -> Result<Vec<PackedEntry>, CryptoError> {
        let header = self.check_pack_header(object)?;
        let end = object.len() - 4;
        let trailer_len = u32::from_le_bytes([
            object[end],
            object[end + 1],
            object[end + 2],
            object[end + 3],
        ]) as usize;
        if trailer_len < 4 + TAG_LEN || trailer_len > end - PACK_HEADER_LEN {
            return Err(CryptoError::NotAnObject);
        }
        let start = end - trailer_len;
        let mut list = object[start..end].to_vec();
        let aad = trailer_aad(&header, name);
        let nonce = self.pack_nonce(&[b"pack-trailer", pack]);
        let plain = self
            .cipher()
            .open_in_place(nonce, Aad::from(&aad), &mut list)
            .map_err(|_| CryptoError::Tampered)?;
        parse_trailer(plain, start)
    }

    fn check_pack_header(&self, object: &[u8]) -> Result<[u8; PACK_HEADER_LEN], CryptoError> {
        if object.len() < PACK_HEADER_LEN + 4 + 4 + TAG_LEN || &object[..4] != MAGIC {
            return Err(CryptoError::NotAnObject);
        }
        if object[4] != VERSION {
            return Err(CryptoError::UnsupportedVersion(object[4]));
        }
        if object[5] != KIND_PACK {
            return Err(CryptoError::Tampered);
        }
        let found = u32::from_le_bytes([object[8], object[9], object[10], object[11]]);
        if found != self.keys().key_id {
            return Err(CryptoError::WrongKey {
                expected: self.keys().key_id,
                found,
            });
        }
        let mut h = [0u8; PACK_HEADER_LEN];
        h.copy_from_slice(&object[..PACK_HEADER_LEN]);
        Ok(h)
    }
}

/// The entry list; every entry must lie between the header and the
/// trailer (`body_end`).
fn parse_trailer(plain: &[u8], body_end: usize) -> Result<Vec<PackedEntry>, CryptoError> {
    let count = u32::from_le_bytes([plain[0], plain[1], plain[2], plain[3]]) as usize;
    let rows = &plain[4..];
    if rows.len() != count.saturating_mul(TRAILER_ROW) {
        return Err(CryptoError::NotAnObject);
    }
    let mut entries = Vec::with_capacity(count);
    for row in rows.chunks_exact(TRAILER_ROW) {
        let mut id = [0u8; 32];
        id.copy_from_slice(&row[..32]);
        let offset = u32::from_le_bytes([row[32], row[33], row[34], row[35]]);
        let len = u32::from_le_bytes([row[36], row[37], row[38], row[39]]);
        let end = offset as usize + len as usize;
        if (offset as usize) < PACK_HEADER_LEN || end > body_end {
            return Err(CryptoError::NotAnObject);
        }
        entries.push(PackedEntry {
            id: ChunkId(id),
            offset,
            len,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use std::sync::Arc;

    fn sealer() -> Sealer {
        Sealer::new(
            Arc::new(MasterKey::from_bytes([4; 32]).derive()),
            1,
            1 << 22,
        )
    }

    fn pack_of(s: &Sealer, chunks: &[Vec<u8>]) -> (PackId, ObjectName, Vec<u8>, Vec<PackedEntry>) {
        let pack = [7u8; 32];
        let name = ObjectName::for_pack(s.keys(), &pack);
        let mut b = PackBuilder::new(s, pack, name.clone());
        let key = ChunkIdKey::shared(s.keys());
        for c in chunks {
            let id = ChunkId::under(&key, c);
            let sealed = s.seal_packed(&id, &name, c).unwrap();
            b.push(id, &sealed);
        }
        let (bytes, entries) = b.finish(s).unwrap();
        (pack, name, bytes, entries)
    }

    fn chunks() -> Vec<Vec<u8>> {
        vec![
            b"a small text file with a secret name in it".to_vec(),
            b"x".repeat(5000),
            (0..3000u32).flat_map(|i| i.to_le_bytes()).collect(),
        ]
    }

    #[test]
    fn every_entry_opens_by_its_range_and_the_trailer_lists_them() {
        let s = sealer();
        let key = [ChunkIdKey::shared(s.keys())];
        let plain = chunks();
        let (pack, name, bytes, entries) = pack_of(&s, &plain);
        assert_eq!(s.read_trailer(&pack, &name, &bytes).unwrap(), entries);
        for (e, p) in entries.iter().zip(&plain) {
            let range = &bytes[e.offset as usize..(e.offset + e.len) as usize];
            let opened = s
                .open_packed(&e.id, &name, Bytes::copy_from_slice(range), &key)
                .unwrap();
            assert_eq!(&opened[..], &p[..]);
        }
    }

    #[test]
    fn a_flipped_bit_fails_only_the_entry_it_lands_in() {
        let s = sealer();
        let key = [ChunkIdKey::shared(s.keys())];
        let (_, name, mut bytes, entries) = pack_of(&s, &chunks());
        bytes[entries[1].offset as usize + 3] ^= 0x10;
        for (i, e) in entries.iter().enumerate() {
            let range = &bytes[e.offset as usize..(e.offset + e.len) as usize];
            let r = s.open_packed(&e.id, &name, Bytes::copy_from_slice(range), &key);
            assert_eq!(r.is_err(), i == 1, "entry {i}");
        }
    }

    #[test]
    fn an_entry_refuses_another_pack_another_id_and_the_trailer_a_flip() {
        let s = sealer();
        let key = [ChunkIdKey::shared(s.keys())];
        let (pack, name, mut bytes, entries) = pack_of(&s, &chunks());
        let e = entries[0];
        let range = Bytes::copy_from_slice(&bytes[e.offset as usize..(e.offset + e.len) as usize]);
        let other = ObjectName::for_pack(s.keys(), &[8; 32]);
        assert!(s.open_packed(&e.id, &other, range.clone(), &key).is_err());
        assert!(s.open_packed(&entries[1].id, &name, range, &key).is_err());
        let at = bytes.len() - 10;
        bytes[at] ^= 1;
        assert!(matches!(
            s.read_trailer(&pack, &name, &bytes),
            Err(CryptoError::Tampered)
        ));
    }

    #[test]
    fn nothing_of_an_entry_is_visible_in_the_pack() {
        let s = sealer();
        let plain = chunks();
        let (_, _, bytes, entries) = pack_of(&s, &plain);
        // One header at the start, none at an entry's start.
        assert_eq!(&bytes[..4], MAGIC);
        for e in &entries {
            assert_ne!(&bytes[e.offset as usize..e.offset as usize + 4], b"DDAV");
            let hay = &bytes[..];
            assert!(
                !hay.windows(32).any(|w| w == e.id.0),
                "a chunk id in the clear"
            );
        }
        assert!(!bytes.windows(10).any(|w| w == &plain[0][2..12]));
    }

    #[test]
    fn short_and_foreign_objects_are_refused_not_panicked_on() {
        let s = sealer();
        let name = ObjectName::for_pack(s.keys(), &[1; 32]);
        for bad in [
            Vec::new(),
            b"DDPK".to_vec(),
            vec![0u8; 100],
            [b"DDPK\x01\x03\0\0".as_slice(), &[0u8; 40]].concat(),
        ] {
            assert!(s.read_trailer(&[1; 32], &name, &bad).is_err());
        }
    }
}
