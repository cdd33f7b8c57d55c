//! Content-defined chunking: FastCDC (gear hash, normalized chunking) with a
//! gear table derived from the master key, so chunk boundaries reveal nothing
//! to someone without the key.
//!
//! [`Chunker`] is streaming: bytes go in as they arrive, whole chunks come
//! out. It buffers at most one maximum-size chunk plus the last input.

use bytes::{Bytes, BytesMut};

/// Chunk size bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSizes {
    pub min: usize,
    pub avg: usize,
    pub max: usize,
}

impl ChunkSizes {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.min >= 64 && self.min < self.avg && self.avg < self.max) {
            return Err("chunk sizes must satisfy 64 <= min < avg < max".into());
        }
        if !self.avg.is_power_of_two() {
            return Err("the average chunk size must be a power of two".into());
        }
        if self.max > 64 << 20 {
            return Err("the maximum chunk size must be at most 64 MiB".into());
        }
        Ok(())
    }
}

/// A mask with `bits` one-bits in the top of a u64: the top bits of a gear
/// hash depend on the most recent 64 bytes.
fn top_mask(bits: u32) -> u64 {
    if bits == 0 {
        0
    } else {
        !0u64 << (64 - bits)
    }
}

/// Interleaved searches in [`Cdc::find_in_lanes`] (its loop is written for 4).
const LANES: usize = 4;
/// Bytes each lane searches per round.
const SPAN: usize = 4096;

/// The cut-point finder.
#[derive(Clone)]
pub struct Cdc {
    gear: Box<[u64; 256]>,
    sizes: ChunkSizes,
    mask_small: u64,
    mask_large: u64,
}

impl Cdc {
    pub fn new(gear: Box<[u64; 256]>, sizes: ChunkSizes) -> Self {
        let bits = sizes.avg.trailing_zeros();
        Self {
            gear,
            sizes,
            // Normalized chunking (level 2): harder to cut before the
            // average, easier after, so sizes cluster around the average.
            mask_small: top_mask(bits + 2),
            mask_large: top_mask(bits.saturating_sub(2)),
        }
    }

    pub fn sizes(&self) -> ChunkSizes {
        self.sizes
    }

    /// The length of the first chunk of `buf`; `buf.len()` when no cut point
    /// lies within it (the caller decides whether more data may follow).
    pub fn cut(&self, buf: &[u8]) -> usize {
        self.scan(buf, &mut Scan::default())
            .unwrap_or(buf.len().min(self.sizes.max))
    }

    /// Continues the search for the end of the chunk starting at `buf[0]`
    /// from where `state` stopped: the chunk's length once a cut point (or
    /// the maximum size) is reached, else `None` with `state` advanced to
    /// the end of `buf`. A cut point depends only on the bytes before it,
    /// so the result does not depend on how the input was split.
    fn scan(&self, buf: &[u8], state: &mut Scan) -> Option<usize> {
        let n = buf.len().min(self.sizes.max);
        let mut i = state.pos.max(self.sizes.min);
        let mut h = state.hash;
        for (end, mask) in [
            (n.min(self.sizes.avg), self.mask_small),
            (n, self.mask_large),
        ] {
            if i + LANES * SPAN <= end {
                while i + LANES * SPAN <= end {
                    if let Some(cut) = self.find_in_lanes(buf, i, mask) {
                        return Some(cut);
                    }
                    i += LANES * SPAN;
                }
                h = self.hash_before(buf, i);
            }
            if let Some(cut) = self.find(buf, &mut i, &mut h, end, mask) {
                return Some(cut);
            }
        }
        *state = Scan { pos: i, hash: h };
        (n == self.sizes.max).then_some(n)
    }

    /// The gear hash just before byte `p` of a chunk. It depends only on
    /// the 64 bytes before `p` (older bytes are shifted out) and on where
    /// hashing starts (the minimum size), so it can be computed afresh.
    fn hash_before(&self, buf: &[u8], p: usize) -> u64 {
        let from = p.saturating_sub(64).max(self.sizes.min);
        buf[from..p]
            .iter()
            .fold(0u64, |h, &b| (h << 1).wrapping_add(self.gear[b as usize]))
    }

    /// Searches `buf[start..start + LANES * SPAN]` for the first cut point
    /// as [`LANES`] interleaved searches over consecutive spans, each
    /// starting from its own [`Self::hash_before`]: the hash chains are
    /// independent, so the processor runs them side by side. The cut
    /// points are exactly those of one sequential search.
    fn find_in_lanes(&self, buf: &[u8], start: usize, mask: u64) -> Option<usize> {
        let gear = &*self.gear;
        let span = |l: usize| &buf[start + l * SPAN..start + (l + 1) * SPAN];
        let mut h: [u64; LANES] = std::array::from_fn(|l| self.hash_before(buf, start + l * SPAN));
        let mut hit = [usize::MAX; LANES];
        let bytes = span(0).iter().zip(span(1)).zip(span(2)).zip(span(3));
        for (t, (((&b0, &b1), &b2), &b3)) in bytes.enumerate() {
            h[0] = (h[0] << 1).wrapping_add(gear[b0 as usize]);
            h[1] = (h[1] << 1).wrapping_add(gear[b1 as usize]);
            h[2] = (h[2] << 1).wrapping_add(gear[b2 as usize]);
            h[3] = (h[3] << 1).wrapping_add(gear[b3 as usize]);
            if (h[0] & mask == 0) | (h[1] & mask == 0) | (h[2] & mask == 0) | (h[3] & mask == 0) {
                for l in 0..LANES {
                    if h[l] & mask == 0 && hit[l] == usize::MAX {
                        hit[l] = start + l * SPAN + t + 1;
                    }
                }
                // Lane 0's cut comes before any other lane's.
                if hit[0] != usize::MAX {
                    return Some(hit[0]);
                }
            }
        }
        hit.into_iter().find(|&c| c != usize::MAX)
    }

    /// Rolls the gear hash over `buf[*i..end]`, stopping after the first
    /// byte where `hash & mask == 0` (returns the cut length). Two bytes per
    /// step: the hash after the second byte, `(h << 2) + (g0 << 1) + g1`,
    /// depends on the previous hash through one shift and one add, so the
    /// steps do not wait on each other byte by byte; both positions are
    /// still checked, so the cut points are exactly those of one byte per
    /// step.
    fn find(&self, buf: &[u8], i: &mut usize, h: &mut u64, end: usize, mask: u64) -> Option<usize> {
        let gear = &*self.gear;
        while *i + 1 < end {
            let g0 = gear[buf[*i] as usize];
            let g1 = gear[buf[*i + 1] as usize];
            let first = (*h << 1).wrapping_add(g0);
            let second = (*h << 2).wrapping_add((g0 << 1).wrapping_add(g1));
            if first & mask == 0 {
                return Some(*i + 1);
            }
            if second & mask == 0 {
                return Some(*i + 2);
            }
            *h = second;
            *i += 2;
        }
        if *i < end {
            *h = (*h << 1).wrapping_add(gear[buf[*i] as usize]);
            *i += 1;
            if *h & mask == 0 {
                return Some(*i);
            }
        }
        None
    }
}

/// How far the search for the current chunk's end has gone.
#[derive(Debug, Clone, Copy, Default)]
struct Scan {
    /// Offset (from the chunk's start) of the next byte to hash.
    pos: usize,
    hash: u64,
}

/// Streaming chunker over [`Cdc`].
///
/// Each byte is hashed once, as it arrives: the search for a chunk's end
/// resumes where the previous input stopped. Input is copied once, into a
/// buffer with room for about two average chunks plus the input; chunks are
/// split off that buffer without copying, so a chunk in flight keeps at
/// most its own buffer alive, and the next buffer is allocated when the
/// current one is used up.
pub struct Chunker {
    cdc: Cdc,
    /// The bytes not yet emitted.
    buf: BytesMut,
    scan: Scan,
}

impl Chunker {
    pub fn new(cdc: Cdc) -> Self {
        Self {
            cdc,
            buf: BytesMut::new(),
            scan: Scan::default(),
        }
    }

    /// The length of the next chunk, if its end is known (`eof`: no more
    /// input follows).
    fn next_len(&mut self, eof: bool) -> Option<usize> {
        if self.buf.is_empty() {
            return None;
        }
        let found = self.cdc.scan(&self.buf, &mut self.scan);
        found.or(eof.then_some(self.buf.len()))
    }

    fn emit(&mut self, n: usize, out: &mut Vec<Bytes>) {
        out.push(self.buf.split_to(n).freeze());
        self.scan = Scan::default();
    }

    /// Adds input and returns the chunks that are now complete.
    pub fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        if self.buf.capacity() - self.buf.len() < data.len() {
            // Room for about two average chunks: a chunk in flight pins at
            // most one such buffer (a longer chunk grows it once).
            self.buf.reserve(2 * self.cdc.sizes.avg + data.len());
        }
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        while let Some(n) = self.next_len(false) {
            self.emit(n, &mut out);
        }
        out
    }

    /// Ends the input and returns the remaining chunks.
    pub fn finish(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(n) = self.next_len(true) {
            self.emit(n, &mut out);
        }
        self.buf = BytesMut::new();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn cdc(key: u8) -> Cdc {
        let keys = MasterKey::from_bytes([key; 32]).derive();
        Cdc::new(
            keys.gear,
            ChunkSizes {
                min: 2048,
                avg: 8192,
                max: 32768,
            },
        )
    }

    fn chunk_all(cdc: &Cdc, data: &[u8], piece: usize) -> Vec<Bytes> {
        let mut c = Chunker::new(cdc.clone());
        let mut out = Vec::new();
        for p in data.chunks(piece) {
            out.extend(c.push(p));
        }
        out.extend(c.finish());
        out
    }

    #[test]
    fn chunks_reassemble_and_respect_bounds() {
        let data = pseudo_random(1 << 20, 42);
        let chunks = chunk_all(&cdc(1), &data, 1000);
        assert_eq!(chunks.concat(), data);
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.len() >= 2048 && c.len() <= 32768, "{}", c.len());
        }
        let avg = data.len() / chunks.len();
        assert!((4096..=16384).contains(&avg), "average {avg}");
    }

    #[test]
    fn boundaries_do_not_depend_on_input_pieces() {
        let data = pseudo_random(300_000, 7);
        let a: Vec<usize> = chunk_all(&cdc(1), &data, 1)
            .iter()
            .map(|c| c.len())
            .collect();
        let b: Vec<usize> = chunk_all(&cdc(1), &data, 65536)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(a, b);
        // The same cut points as cutting the whole buffer at once.
        let mut whole = Vec::new();
        let mut rest = &data[..];
        while !rest.is_empty() {
            let n = cdc(1).cut(rest);
            whole.push(n);
            rest = &rest[n..];
        }
        assert_eq!(a, whole);
        for piece in [7, 2048, 40_000] {
            let c: Vec<usize> = chunk_all(&cdc(1), &data, piece)
                .iter()
                .map(|c| c.len())
                .collect();
            assert_eq!(a, c, "pieces of {piece} bytes");
        }
    }

    /// The cut point one byte at a time, as FastCDC defines it.
    fn reference_cut(cdc: &Cdc, buf: &[u8]) -> usize {
        let n = buf.len().min(cdc.sizes.max);
        let mut h = 0u64;
        for (i, &byte) in buf.iter().enumerate().take(n).skip(cdc.sizes.min) {
            h = (h << 1).wrapping_add(cdc.gear[byte as usize]);
            let mask = if i < cdc.sizes.avg {
                cdc.mask_small
            } else {
                cdc.mask_large
            };
            if h & mask == 0 {
                return i + 1;
            }
        }
        n
    }

    #[test]
    fn fast_search_cuts_where_one_byte_per_step_does() {
        let keys = MasterKey::from_bytes([5; 32]).derive();
        let wide = Cdc::new(
            keys.gear,
            ChunkSizes {
                min: 4096,
                avg: 65536,
                max: 262_144,
            },
        );
        for (c, len) in [(cdc(3), 40_000), (wide, 1_500_000)] {
            for seed in 1..12 {
                let mut data = pseudo_random(len + seed as usize * 997, seed);
                // A run of zeros forces maximum-size cuts.
                let z = data.len() / 3;
                data[z..z + 300_000.min(len / 4)].fill(0);
                let mut rest = &data[..];
                while !rest.is_empty() {
                    let n = c.cut(rest);
                    assert_eq!(n, reference_cut(&c, rest), "seed {seed}");
                    rest = &rest[n..];
                }
                // And streamed in odd pieces.
                let streamed: Vec<usize> = chunk_all(&c, &data, 9_999)
                    .iter()
                    .map(|c| c.len())
                    .collect();
                let whole: Vec<usize> = chunk_all(&c, &data, data.len())
                    .iter()
                    .map(|c| c.len())
                    .collect();
                assert_eq!(streamed, whole, "seed {seed}");
            }
        }
    }

    #[test]
    fn boundaries_depend_on_the_key() {
        let data = pseudo_random(300_000, 7);
        let a: Vec<usize> = chunk_all(&cdc(1), &data, 4096)
            .iter()
            .map(|c| c.len())
            .collect();
        let b: Vec<usize> = chunk_all(&cdc(2), &data, 4096)
            .iter()
            .map(|c| c.len())
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn an_insertion_changes_only_nearby_chunks() {
        let data = pseudo_random(1 << 20, 9);
        let mut edited = data[..500_000].to_vec();
        edited.extend_from_slice(b"inserted bytes");
        edited.extend_from_slice(&data[500_000..]);
        let c = cdc(3);
        let before: std::collections::HashSet<_> = chunk_all(&c, &data, 4096).into_iter().collect();
        let after = chunk_all(&c, &edited, 4096);
        let new = after.iter().filter(|x| !before.contains(*x)).count();
        assert!(new <= 3, "{new} of {} chunks changed", after.len());
    }

    #[test]
    fn empty_input_gives_no_chunks() {
        assert!(chunk_all(&cdc(1), &[], 10).is_empty());
    }
}
