//! The byte layout of the index's variable-size records (users, nodes,
//! dead properties, upload sessions and parts).
//!
//! Fixed-width little-endian fields in declaration order: integers as 8
//! bytes, `bool` as one byte (0 or 1), an enum as its variant number in 4
//! bytes, `Option` as a tag byte (0 none, 1 some) before the value, text and
//! byte strings as an 8-byte length before the bytes, fixed arrays as their
//! bytes. This is byte for byte the layout the `bincode` 1 crate wrote for
//! these records (that crate is no longer maintained), so indexes written
//! before keep reading as they are: no migration, and `tests` below pin the
//! layout with bytes written by the old encoder.
//!
//! Decoding never trusts a length: every read is checked against what is
//! left, so a corrupt record is an error, never a panic or a huge
//! allocation.

use super::IndexError;

/// Appends fields to a record.
#[derive(Default)]
pub struct Writer(Vec<u8>);

impl Writer {
    pub fn new() -> Self {
        Self(Vec::with_capacity(96))
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.0.push(u8::from(v));
        self
    }
    pub fn variant(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    pub fn array(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    /// `None` as a 0 tag; `Some` as a 1 tag followed by what `write` adds.
    pub fn option<T>(&mut self, v: Option<T>, write: impl FnOnce(&mut Self, T)) -> &mut Self {
        match v {
            None => {
                self.0.push(0);
            }
            Some(x) => {
                self.0.push(1);
                write(self, x);
            }
        }
        self
    }
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// Reads fields of a record, in the order they were written.
pub struct Reader<'a> {
    table: &'static str,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(table: &'static str, bytes: &'a [u8]) -> Self {
        Self { table, rest: bytes }
    }

    fn corrupt(&self, what: &str) -> IndexError {
        IndexError::Corrupt {
            table: self.table,
            cause: format!("record ends early or holds a bad {what}"),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], IndexError> {
        if self.rest.len() < n {
            return Err(self.corrupt(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Whether every byte was read (a record written before a field was
    /// appended ends here).
    pub fn at_end(&self) -> bool {
        self.rest.is_empty()
    }
    pub fn u64(&mut self) -> Result<u64, IndexError> {
        let b = self.take(8, "integer")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub fn i64(&mut self) -> Result<i64, IndexError> {
        Ok(self.u64()? as i64)
    }
    pub fn bool(&mut self) -> Result<bool, IndexError> {
        match self.take(1, "flag")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.corrupt("flag")),
        }
    }
    pub fn variant(&mut self) -> Result<u32, IndexError> {
        let b = self.take(4, "variant")?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], IndexError> {
        let len = self.u64()?;
        let len = usize::try_from(len).map_err(|_| self.corrupt("length"))?;
        self.take(len, "length")
    }
    pub fn string(&mut self) -> Result<String, IndexError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.corrupt("text"))
    }
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], IndexError> {
        let b = self.take(N, "array")?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }
    /// Reads a tag byte and, when it is 1, the value `read` reads.
    pub fn option<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, IndexError>,
    ) -> Result<Option<T>, IndexError> {
        match self.take(1, "option tag")?[0] {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err(self.corrupt("option tag")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field_kind() {
        let bytes = Writer::new()
            .u64(7)
            .i64(-3)
            .bool(true)
            .variant(1)
            .str("héllo")
            .array(&[9u8; 4])
            .option(Some(5u64), |w, v| {
                w.u64(v);
            })
            .option(None::<&str>, |w, v| {
                w.str(v);
            })
            .finish();
        let mut r = Reader::new("t", &bytes);
        assert_eq!(r.u64().unwrap(), 7);
        assert_eq!(r.i64().unwrap(), -3);
        assert!(r.bool().unwrap());
        assert_eq!(r.variant().unwrap(), 1);
        assert_eq!(r.string().unwrap(), "héllo");
        assert_eq!(r.array::<4>().unwrap(), [9u8; 4]);
        assert_eq!(r.option(|r| r.u64()).unwrap(), Some(5));
        assert_eq!(r.option(|r| r.string()).unwrap(), None);
    }

    #[test]
    fn corrupt_records_are_errors() {
        let mut r = Reader::new("t", &[1, 2, 3]);
        assert!(r.u64().is_err());
        // A length far past the end allocates nothing and fails.
        let huge = Writer::new().u64(u64::MAX).finish();
        assert!(Reader::new("t", &huge).bytes().is_err());
        assert!(Reader::new("t", &[2]).bool().is_err());
        assert!(Reader::new("t", &[7]).option(|r| r.u64()).is_err());
        let bad_utf8 = Writer::new().bytes(&[0xff, 0xfe]).finish();
        assert!(Reader::new("t", &bad_utf8).string().is_err());
    }
}
