//! Every file id and entity tag a client sees (`oc:fileid`, `oc:id`,
//! `OC-FileId`, `getetag`, `ETag`, `OC-ETag`) is rendered here, and nowhere
//! else.
//!
//! Internally a node's id comes from one counter shared by all users, and
//! its version from one change counter shared by all users. Shown as they
//! are, user A could read from the gap between two of their own ids how
//! many files and folders other users created meanwhile, and from the gap
//! between two etags how many changes they made. So:
//!
//! - the visible file id is a keyed pseudo-random *permutation* of the node
//!   id (a Feistel network over 52 bits with AES-256 as round function, the
//!   shape of NIST's FF1): bijective, so two nodes never share an id;
//!   stable, because it depends only on the node id and the master key
//!   (across restarts, renames and moves); a positive integer below 2^53,
//!   which every client can parse, JavaScript ones included;
//! - the visible etag is AES-256 of (node id, version), a PRF on these
//!   never-repeating inputs, cut to 80 bits: it changes exactly when the
//!   version does (a folder's whenever anything below it changes), and the
//!   value a PUT returns is what later listings show.
//!
//! Why AES and not the keyed BLAKE3 of chunk ids: every listed entry costs
//! two ids and an etag, and the inputs are 16 bytes. One AES block
//! (aws-lc-rs, AES-NI, key schedule done once) took 46 ns against keyed
//! BLAKE3's 210 ns and prekeyed HMAC-SHA256's 388 ns in the same run on
//! the build machine (loaded, so all three are high); a file id is ten
//! blocks.
//!
//! Both keys are derived from the master key (see `keys.rs`). Nothing a
//! client sends back is compared in the internal form: requests carrying an
//! etag are checked against [`VisibleIds::etag`] of the current node.

use aws_lc_rs::cipher::{EncryptingKey, UnboundCipherKey, AES_256};

use super::{Keys, KEY_LEN};

/// Bits of the permuted part of a node id: node ids are a counter starting
/// at 1 and stay far below 2^52 (4.5 × 10^15), and 52 bits keep every
/// visible id an exact JavaScript number (below 2^53).
const DOMAIN_BITS: u32 = 52;
const HALF_BITS: u32 = DOMAIN_BITS / 2;
const HALF_MASK: u64 = (1 << HALF_BITS) - 1;
const DOMAIN_MASK: u64 = (1 << DOMAIN_BITS) - 1;

/// Feistel rounds. Four rounds of a PRF already give a pseudo-random
/// permutation (Luby–Rackoff); ten, as in FF1, leave a wide margin for a
/// domain of 52 bits. Measured on the (loaded) build machine: 250–650 ns
/// per file id, 50 ns per etag (the old `{id:x}-{version:x}` took ~90 ns),
/// so an ownCloud client's listing (`oc:id`, `oc:fileid`, `getetag`) costs
/// about 1 µs more per entry.
const ROUNDS: u8 = 10;

/// Bytes of MAC in a visible etag (80 bits, 20 hex digits): the chance that
/// a change leaves the etag as it was is 2^-80.
const ETAG_BYTES: usize = 10;

/// Renders the ids and etags clients see.
pub struct VisibleIds {
    file_id: EncryptingKey,
    etag: EncryptingKey,
    /// This installation's instance id, the suffix of `oc:id`.
    instance: String,
}

impl std::fmt::Debug for VisibleIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VisibleIds({})", self.instance)
    }
}

impl VisibleIds {
    /// `instance_id`: the index's random installation id (part of `oc:id`,
    /// the same for every user, so it reveals nothing about anyone).
    pub fn new(keys: &Keys, instance_id: u64) -> Self {
        Self {
            file_id: aes_256(&keys.visible_file_id),
            etag: aes_256(&keys.visible_etag),
            instance: format!("oc{:010x}", instance_id & 0xff_ffff_ffff),
        }
    }

    /// The instance suffix of `oc:id`.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The `oc:fileid` / number part of `oc:id` of a node: positive, unique
    /// among all nodes, fixed for the node's life.
    pub fn file_id(&self, node_id: u64) -> u64 {
        let high = node_id & !DOMAIN_MASK;
        let low = node_id & DOMAIN_MASK;
        let mut out = self.permute(low);
        // Node id 0 is never a node: walking past the one input that would
        // map to 0 keeps every visible id positive and the map bijective
        // (the input 0 would have taken this output).
        if high == 0 && out == 0 {
            out = self.permute(0);
        }
        high | out
    }

    /// The node id whose visible file id is `file_id` (the inverse of
    /// [`Self::file_id`]), for ids a client sends back.
    pub fn node_id(&self, file_id: u64) -> u64 {
        let high = file_id & !DOMAIN_MASK;
        let mut out = self.unpermute(file_id & DOMAIN_MASK);
        if high == 0 && out == 0 {
            out = self.unpermute(0);
        }
        high | out
    }

    /// `oc:id`: the visible file id, zero-padded to 8 digits as ownCloud
    /// does, then the instance id.
    pub fn oc_id(&self, node_id: u64) -> String {
        format!("{:08}{}", self.file_id(node_id), self.instance)
    }

    /// The entity tag (unquoted) of a node at `version`.
    pub fn etag(&self, node_id: u64, version: u64) -> String {
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(&node_id.to_le_bytes());
        block[8..].copy_from_slice(&version.to_le_bytes());
        encrypt(&self.etag, &mut block);
        lower_hex(&block[..ETAG_BYTES])
    }

    /// The entity tag quoted, as headers and `getetag` carry it.
    pub fn quoted_etag(&self, node_id: u64, version: u64) -> String {
        format!("\"{}\"", self.etag(node_id, version))
    }

    /// The round function: AES of (round number, half).
    fn round(&self, round: u8, half: u64) -> u64 {
        let mut block = [0u8; 16];
        block[0] = round;
        block[1..9].copy_from_slice(&half.to_le_bytes());
        encrypt(&self.file_id, &mut block);
        let mut first = [0u8; 8];
        first.copy_from_slice(&block[..8]);
        u64::from_le_bytes(first) & HALF_MASK
    }

    fn permute(&self, x: u64) -> u64 {
        let (mut left, mut right) = (x >> HALF_BITS, x & HALF_MASK);
        for r in 0..ROUNDS {
            (left, right) = (right, left ^ self.round(r, right));
        }
        (left << HALF_BITS) | right
    }

    fn unpermute(&self, y: u64) -> u64 {
        let (mut left, mut right) = (y >> HALF_BITS, y & HALF_MASK);
        for r in (0..ROUNDS).rev() {
            (left, right) = (right ^ self.round(r, left), left);
        }
        (left << HALF_BITS) | right
    }
}

fn aes_256(key: &[u8; KEY_LEN]) -> EncryptingKey {
    // A 32-byte key is what AES-256 takes, and ECB accepts it: cannot fail.
    UnboundCipherKey::new(&AES_256, key)
        .and_then(EncryptingKey::ecb)
        .unwrap_or_else(|_| unreachable!())
}

/// One AES block, in place.
fn encrypt(key: &EncryptingKey, block: &mut [u8; 16]) {
    // ECB fails only on a length that is not a whole number of blocks.
    if key.encrypt(block).is_err() {
        unreachable!()
    }
}

/// Lower-case hex digits, without the `hex` crate's per-character
/// iterator (it took twice as long as the AES block before it).
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * bytes.len());
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;
    use std::collections::HashSet;

    fn ids(seed: u8) -> VisibleIds {
        VisibleIds::new(&MasterKey::from_bytes([seed; 32]).derive(), 0x1234)
    }

    #[test]
    fn file_ids_are_a_positive_bijection() {
        let v = ids(1);
        let mut seen = HashSet::new();
        for node in (1..20_000u64).chain([DOMAIN_MASK, DOMAIN_MASK - 1, 1 << 40]) {
            let f = v.file_id(node);
            assert!(f > 0 && f < 1 << 53, "{node} -> {f}");
            assert!(seen.insert(f), "collision at {node}");
            assert_eq!(v.node_id(f), node);
        }
        // Beyond the permuted domain the map stays injective.
        let big = (1u64 << 60) | 5;
        assert_eq!(v.node_id(v.file_id(big)), big);
    }

    /// Clients remember ids and etags: a change of the algorithm or of the
    /// key derivation would make every sync client download everything
    /// again, so the values for a fixed key are pinned here.
    #[test]
    fn known_answers() {
        let v = ids(1);
        assert_eq!(v.file_id(1), 2_533_558_338_364_942);
        assert_eq!(v.file_id(123_456), 3_774_385_507_292_333);
        assert_eq!(v.etag(1, 2), "13cbe7c322cace746e52");
    }

    #[test]
    fn consecutive_nodes_get_unrelated_ids() {
        let v = ids(2);
        let a: Vec<u64> = (100..164).map(|n| v.file_id(n)).collect();
        let increasing = a.windows(2).filter(|w| w[1] > w[0]).count();
        // A counter would give 63 increases; a random order about half.
        assert!((16..48).contains(&increasing), "{increasing} of 63");
        let gaps: HashSet<u64> = a.windows(2).map(|w| w[1].abs_diff(w[0])).collect();
        assert!(gaps.len() > 60, "gaps repeat: {}", gaps.len());
    }

    #[test]
    fn the_zero_walk_keeps_the_map_bijective() {
        let v = ids(3);
        // Find the one node that the bare permutation sends to 0.
        let to_zero = v.unpermute(0);
        assert_ne!(to_zero, 0, "by chance; pick another seed");
        assert_eq!(v.file_id(to_zero), v.permute(0));
        assert_eq!(v.node_id(v.permute(0)), to_zero);
    }

    #[test]
    fn ids_and_etags_are_keyed_and_stable() {
        let (a, b) = (ids(4), ids(5));
        assert_eq!(a.file_id(7), ids(4).file_id(7));
        assert_ne!(a.file_id(7), b.file_id(7));
        assert_eq!(a.etag(7, 9), ids(4).etag(7, 9));
        assert_ne!(a.etag(7, 9), b.etag(7, 9));
        assert_ne!(a.etag(7, 9), a.etag(7, 10));
        assert_ne!(a.etag(7, 9), a.etag(8, 9));
        let e = a.etag(7, 9);
        assert_eq!(e.len(), 2 * ETAG_BYTES);
        assert_eq!(
            lower_hex(&[0x0f, 0xa0, 0x5b]),
            hex::encode([0x0f, 0xa0, 0x5b])
        );
        assert!(e.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.quoted_etag(7, 9), format!("\"{e}\""));
        let oc = a.oc_id(7);
        assert!(oc.starts_with(&a.file_id(7).to_string()));
        assert!(oc.ends_with("oc0000001234"));
    }
}
