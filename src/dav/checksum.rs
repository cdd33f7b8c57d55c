//! ownCloud-style content checksums: SHA1, MD5 and Adler-32 computed while
//! an upload streams through, the `OC-Checksum` header a client sends, and
//! the `SHA1:… MD5:… ADLER32:…` string stored for `oc:checksums`.

use md5::Md5;
use sha1::{Digest, Sha1};

/// The checksum types the gateway computes (and advertises).
pub const SUPPORTED: [&str; 3] = ["SHA1", "MD5", "ADLER32"];

/// Errors of an `OC-Checksum` header or its verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error("malformed OC-Checksum header {0:?} (expected TYPE:hex)")]
    Malformed(String),
    #[error("{kind} {expected} was announced, but the data has {actual}")]
    Mismatch {
        kind: String,
        expected: String,
        actual: String,
    },
}

/// A checksum a client announced: its type (upper case) and hex value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    pub kind: String,
    pub hex: String,
}

/// Parses `OC-Checksum` (`SHA1:0a4d…`). Several space-separated values are
/// allowed; each must be `TYPE:hex`.
pub fn parse_header(value: &str) -> Result<Vec<Announced>, ChecksumError> {
    let mut out = Vec::new();
    for part in value.split_whitespace() {
        let (kind, hex) = part
            .split_once(':')
            .ok_or_else(|| ChecksumError::Malformed(value.into()))?;
        if kind.is_empty()
            || hex.is_empty()
            || hex.len() > 128
            || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(ChecksumError::Malformed(value.into()));
        }
        out.push(Announced {
            kind: kind.to_ascii_uppercase(),
            hex: hex.to_ascii_lowercase(),
        });
    }
    if out.is_empty() {
        return Err(ChecksumError::Malformed(value.into()));
    }
    Ok(out)
}

/// The three digests of a finished stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub sha1: String,
    /// Only when it was computed (see [`Hashers::without_md5`]).
    pub md5: Option<String>,
    pub adler32: String,
}

impl Digests {
    /// The stored form, as ownCloud lists it in `oc:checksum`.
    pub fn to_oc_string(&self) -> String {
        match &self.md5 {
            Some(md5) => format!("SHA1:{} MD5:{md5} ADLER32:{}", self.sha1, self.adler32),
            None => format!("SHA1:{} ADLER32:{}", self.sha1, self.adler32),
        }
    }

    fn get(&self, kind: &str) -> Option<&str> {
        match kind {
            "SHA1" => Some(&self.sha1),
            "MD5" => self.md5.as_deref(),
            "ADLER32" => Some(&self.adler32),
            _ => None,
        }
    }

    /// Checks every announced checksum of a supported type. Types the
    /// gateway does not compute are ignored (and not stored).
    pub fn verify(&self, announced: &[Announced]) -> Result<(), ChecksumError> {
        for a in announced {
            let Some(actual) = self.get(&a.kind) else {
                continue;
            };
            // Adler-32 may come without leading zeros.
            let expected = if a.kind == "ADLER32" {
                format!("{:0>8}", a.hex)
            } else {
                a.hex.clone()
            };
            if expected != actual {
                return Err(ChecksumError::Mismatch {
                    kind: a.kind.clone(),
                    expected: a.hex.clone(),
                    actual: actual.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Running SHA1, MD5 and Adler-32 of a byte stream.
#[derive(Clone)]
pub struct Hashers {
    sha1: Sha1,
    md5: Option<Md5>,
    adler: simd_adler32::Adler32,
}

impl Default for Hashers {
    fn default() -> Self {
        Self {
            sha1: Sha1::new(),
            md5: Some(Md5::new()),
            adler: simd_adler32::Adler32::new(),
        }
    }
}

impl std::fmt::Debug for Hashers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hashers")
    }
}

impl Hashers {
    /// SHA1 and Adler-32 only. MD5 costs more than all other hashing of an
    /// upload together, so a plain PUT computes it only when the client
    /// announces an MD5 checksum.
    pub fn without_md5() -> Self {
        Self {
            md5: None,
            ..Self::default()
        }
    }

    /// The hashers a PUT announcing `announced` needs.
    pub fn for_announced(announced: &[Announced]) -> Self {
        if announced.iter().any(|a| a.kind == "MD5") {
            Self::default()
        } else {
            Self::without_md5()
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.sha1.update(data);
        if let Some(m) = self.md5.as_mut() {
            m.update(data);
        }
        self.adler.write(data);
    }

    pub fn finish(self) -> Digests {
        Digests {
            sha1: hex::encode(self.sha1.finalize()),
            md5: self.md5.map(|m| hex::encode(m.finalize())),
            adler32: format!("{:08x}", self.adler.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let mut h = Hashers::default();
        h.update(b"hello ");
        h.update(b"world");
        let d = h.finish();
        assert_eq!(d.sha1, "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed");
        assert_eq!(d.md5.as_deref(), Some("5eb63bbbe01eeed093cb22bb8f5acdc3"));
        assert_eq!(d.adler32, "1a0b045d");
        assert_eq!(
            d.to_oc_string(),
            "SHA1:2aae6c35c94fcfb415dbe95f408b9ce91ee846ed \
             MD5:5eb63bbbe01eeed093cb22bb8f5acdc3 ADLER32:1a0b045d"
        );
    }

    #[test]
    fn md5_only_when_announced() {
        let sha1 = parse_header("SHA1:2aae6c35c94fcfb415dbe95f408b9ce91ee846ed").unwrap();
        let mut h = Hashers::for_announced(&sha1);
        h.update(b"hello world");
        let d = h.finish();
        assert!(d.md5.is_none());
        assert!(!d.to_oc_string().contains("MD5"));
        assert!(d.verify(&sha1).is_ok());
        let md5 = parse_header("MD5:5eb63bbbe01eeed093cb22bb8f5acdc3").unwrap();
        let mut h = Hashers::for_announced(&md5);
        h.update(b"hello world");
        assert!(h.finish().verify(&md5).is_ok());
    }

    #[test]
    fn header_parsing_and_verification() {
        let d = {
            let mut h = Hashers::default();
            h.update(b"hello world");
            h.finish()
        };
        let ok = parse_header("SHA1:2AAE6C35C94FCFB415DBE95F408B9CE91EE846ED").unwrap();
        assert!(d.verify(&ok).is_ok());
        assert!(d.verify(&parse_header("Adler32:1a0b045d").unwrap()).is_ok());
        assert!(d
            .verify(&parse_header("MD5:5eb63bbbe01eeed093cb22bb8f5acdc3").unwrap())
            .is_ok());
        // Unknown types are not verified.
        assert!(d.verify(&parse_header("SHA256:00ff").unwrap()).is_ok());
        let bad = parse_header("SHA1:0000000000000000000000000000000000000000").unwrap();
        assert!(matches!(
            d.verify(&bad),
            Err(ChecksumError::Mismatch { .. })
        ));
        for junk in ["", "SHA1", "SHA1:", ":abc", "SHA1:xyz", "MD5:12 foo"] {
            assert!(parse_header(junk).is_err(), "{junk:?}");
        }
        assert_eq!(parse_header("md5:AB sha1:cd").unwrap().len(), 2);
    }

    #[test]
    fn adler_without_leading_zeros() {
        let d = {
            let mut h = Hashers::default();
            h.update(b"");
            h.finish()
        };
        assert_eq!(d.adler32, "00000001");
        assert!(d.verify(&parse_header("ADLER32:1").unwrap()).is_ok());
    }
}
