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

/// A set of checksum types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecksumSet {
    pub sha1: bool,
    pub md5: bool,
    pub adler32: bool,
}

impl ChecksumSet {
    /// Every supported type.
    pub const ALL: Self = Self {
        sha1: true,
        md5: true,
        adler32: true,
    };

    /// The set named by `kinds` (case-insensitive); an unknown name is an
    /// error naming it.
    pub fn parse<S: AsRef<str>>(kinds: &[S]) -> Result<Self, String> {
        let mut set = Self::default();
        for k in kinds {
            if !set.add(k.as_ref()) {
                return Err(format!(
                    "unknown checksum type {:?} (supported: {})",
                    k.as_ref(),
                    SUPPORTED.join(", ")
                ));
            }
        }
        Ok(set)
    }

    /// Adds a type by name; `false` when the gateway does not compute it.
    fn add(&mut self, kind: &str) -> bool {
        match kind.to_ascii_uppercase().as_str() {
            "SHA1" => self.sha1 = true,
            "MD5" => self.md5 = true,
            "ADLER32" => self.adler32 = true,
            _ => return false,
        }
        true
    }

    /// This set plus the supported types among `announced`.
    pub fn with_announced(mut self, announced: &[Announced]) -> Self {
        for a in announced {
            self.add(&a.kind);
        }
        self
    }
}

/// The digests of a finished stream (those that were computed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digests {
    pub sha1: Option<String>,
    pub md5: Option<String>,
    pub adler32: Option<String>,
}

impl Digests {
    /// The stored form, as ownCloud lists it in `oc:checksum`
    /// (`SHA1:… MD5:… ADLER32:…`); `None` when nothing was computed.
    pub fn to_oc_string(&self) -> Option<String> {
        let parts: Vec<String> = [
            ("SHA1", &self.sha1),
            ("MD5", &self.md5),
            ("ADLER32", &self.adler32),
        ]
        .into_iter()
        .filter_map(|(kind, v)| v.as_ref().map(|v| format!("{kind}:{v}")))
        .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    fn get(&self, kind: &str) -> Option<&str> {
        match kind {
            "SHA1" => self.sha1.as_deref(),
            "MD5" => self.md5.as_deref(),
            "ADLER32" => self.adler32.as_deref(),
            _ => None,
        }
    }

    /// Whether every announced checksum of a supported type was computed.
    pub fn covers(&self, announced: &[Announced]) -> bool {
        announced
            .iter()
            .all(|a| !SUPPORTED.contains(&a.kind.as_str()) || self.get(&a.kind).is_some())
    }

    /// Checks every announced checksum the gateway computed. Types it does
    /// not compute are ignored (and not stored).
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

/// Running SHA1, MD5 and Adler-32 of a byte stream, each only when asked
/// for: SHA1 and MD5 cost more than the rest of an upload's hashing, so an
/// upload computes them only when configured or announced by the client.
#[derive(Clone, Default)]
pub struct Hashers {
    sha1: Option<Sha1>,
    md5: Option<Md5>,
    adler: Option<simd_adler32::Adler32>,
}

impl std::fmt::Debug for Hashers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hashers")
    }
}

impl Hashers {
    pub fn new(set: ChecksumSet) -> Self {
        Self {
            sha1: set.sha1.then(Sha1::new),
            md5: set.md5.then(Md5::new),
            adler: set.adler32.then(simd_adler32::Adler32::new),
        }
    }

    /// Whether updating costs noticeably more than reading the bytes
    /// (SHA1 or MD5): worth a thread of its own on large uploads.
    pub fn is_costly(&self) -> bool {
        self.sha1.is_some() || self.md5.is_some()
    }

    pub fn update(&mut self, data: &[u8]) {
        if let Some(h) = self.sha1.as_mut() {
            h.update(data);
        }
        if let Some(h) = self.md5.as_mut() {
            h.update(data);
        }
        if let Some(h) = self.adler.as_mut() {
            h.write(data);
        }
    }

    pub fn finish(self) -> Digests {
        Digests {
            sha1: self.sha1.map(|h| hex::encode(h.finalize())),
            md5: self.md5.map(|h| hex::encode(h.finalize())),
            adler32: self.adler.map(|h| format!("{:08x}", h.finish())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(set: ChecksumSet, parts: &[&[u8]]) -> Digests {
        let mut h = Hashers::new(set);
        for p in parts {
            h.update(p);
        }
        h.finish()
    }

    #[test]
    fn known_digests() {
        let d = digest(ChecksumSet::ALL, &[b"hello ", b"world"]);
        assert_eq!(
            d.sha1.as_deref(),
            Some("2aae6c35c94fcfb415dbe95f408b9ce91ee846ed")
        );
        assert_eq!(d.md5.as_deref(), Some("5eb63bbbe01eeed093cb22bb8f5acdc3"));
        assert_eq!(d.adler32.as_deref(), Some("1a0b045d"));
        assert_eq!(
            d.to_oc_string().unwrap(),
            "SHA1:2aae6c35c94fcfb415dbe95f408b9ce91ee846ed \
             MD5:5eb63bbbe01eeed093cb22bb8f5acdc3 ADLER32:1a0b045d"
        );
    }

    #[test]
    fn only_configured_and_announced_types_are_computed() {
        let always = ChecksumSet::parse(&["adler32"]).unwrap();
        let d = digest(always, &[b"hello world"]);
        assert_eq!(d.to_oc_string().unwrap(), "ADLER32:1a0b045d");
        let sha1 = parse_header("SHA1:2aae6c35c94fcfb415dbe95f408b9ce91ee846ed").unwrap();
        let d = digest(always.with_announced(&sha1), &[b"hello world"]);
        assert!(d.md5.is_none());
        assert!(!d.to_oc_string().unwrap().contains("MD5"));
        assert!(d.verify(&sha1).is_ok());
        let md5 = parse_header("MD5:5eb63bbbe01eeed093cb22bb8f5acdc3").unwrap();
        let h = Hashers::new(ChecksumSet::default().with_announced(&md5));
        assert!(h.is_costly());
        let d = digest(
            ChecksumSet::default().with_announced(&md5),
            &[b"hello world"],
        );
        assert!(d.verify(&md5).is_ok());
        assert_eq!(digest(ChecksumSet::default(), &[b"x"]).to_oc_string(), None);
        assert!(!Hashers::new(always).is_costly());
        assert!(ChecksumSet::parse(&["SHA256"]).is_err());
        // What was computed covers what was announced, or not.
        let d = digest(always, &[b"hello world"]);
        assert!(d.covers(&parse_header("ADLER32:1a0b045d SHA256:00").unwrap()));
        assert!(!d.covers(&md5));
    }

    #[test]
    fn header_parsing_and_verification() {
        let d = digest(ChecksumSet::ALL, &[b"hello world"]);
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
        let d = digest(ChecksumSet::ALL, &[b""]);
        assert_eq!(d.adler32.as_deref(), Some("00000001"));
        assert!(d.verify(&parse_header("ADLER32:1").unwrap()).is_ok());
    }
}
