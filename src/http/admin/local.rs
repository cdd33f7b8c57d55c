//! How the command line on the gateway's machine reaches the running
//! `serve`: at start, `serve` writes `<data_dir>/admin-access.json`
//! (mode 0600, so only the gateway's OS user — who could open the index
//! anyway — can read it) holding the address it listens on and a random
//! token made for this run. The command line reads the file and sends
//! `Authorization: Bearer <token>`; the admin API takes that token as the
//! built-in local administrator (audited as `local-cli`). The file is
//! removed when `serve` stops; a stale one (after a crash) names a token
//! and an address nobody answers, and the command line then works on the
//! index directly.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The file's name in the data directory.
pub const ACCESS_FILE: &str = "admin-access.json";

/// What the access file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalAccess {
    /// The gateway's base URL, reachable from this machine
    /// (`http://127.0.0.1:8080`).
    pub url: String,
    /// The token of this run (64 hex digits).
    pub token: String,
    /// The process id of the `serve` that wrote it.
    pub pid: u32,
    /// With `[tls]`: the SHA-256 (hex) of the certificate served, the one
    /// the command line trusts (`pinned.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_sha256: Option<String>,
}

/// Errors of the access file.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path} (run this as the gateway's user): {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is malformed: {cause}")]
    Malformed { path: String, cause: String },
}

/// Where the access file of `data_dir` is.
pub fn access_path(data_dir: &Path) -> PathBuf {
    data_dir.join(ACCESS_FILE)
}

impl LocalAccess {
    /// A new token for a gateway listening on `addr` (an unspecified
    /// address such as 0.0.0.0 is reached through loopback).
    pub fn new(addr: SocketAddr) -> Self {
        let mut reach = addr;
        if addr.ip().is_unspecified() {
            let loopback: std::net::IpAddr = if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            reach.set_ip(loopback);
        }
        let mut token = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut token);
        Self {
            url: format!("http://{reach}"),
            token: hex::encode(token),
            pid: std::process::id(),
            cert_sha256: None,
        }
    }

    /// The same access over HTTPS, trusting the certificate whose SHA-256
    /// is `cert_sha256`.
    pub fn over_tls(mut self, cert_sha256: String) -> Self {
        if let Some(rest) = self.url.strip_prefix("http://") {
            self.url = format!("https://{rest}");
        }
        self.cert_sha256 = Some(cert_sha256);
        self
    }

    /// Writes the file (0600), replacing any earlier one in one rename.
    pub fn write(&self, data_dir: &Path) -> Result<(), AccessError> {
        let path = access_path(data_dir);
        let tmp = data_dir.join(format!(".{ACCESS_FILE}.tmp"));
        let err = |source| AccessError::Write {
            path: path.display().to_string(),
            source,
        };
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let text = serde_json::to_string(self).map_err(|e| err(e.into()))?;
        let mut file = options.open(&tmp).map_err(err)?;
        file.write_all(text.as_bytes()).map_err(err)?;
        file.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &path).map_err(err)
    }

    /// The file of `data_dir`; `None` when there is none (no gateway runs,
    /// or one from before this feature).
    pub fn read(data_dir: &Path) -> Result<Option<Self>, AccessError> {
        let path = access_path(data_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(AccessError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| AccessError::Malformed {
                path: path.display().to_string(),
                cause: e.to_string(),
            })
    }

    /// Removes the file if it is still this one (a newer `serve` may have
    /// replaced it).
    pub fn remove(&self, data_dir: &Path) {
        if let Ok(Some(current)) = Self::read(data_dir) {
            if current.token == self.token {
                let _ = std::fs::remove_file(access_path(data_dir));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_private_read_back_removed_only_by_its_writer() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LocalAccess::read(dir.path()).unwrap().is_none());
        let a = LocalAccess::new("0.0.0.0:8080".parse().unwrap());
        assert_eq!(a.url, "http://127.0.0.1:8080");
        assert_eq!(a.token.len(), 64);
        a.write(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(access_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(LocalAccess::read(dir.path()).unwrap(), Some(a.clone()));
        let b = LocalAccess::new("[::]:1".parse().unwrap());
        assert_eq!(b.url, "http://[::1]:1");
        assert_ne!(a.token, b.token);
        b.write(dir.path()).unwrap();
        a.remove(dir.path());
        assert_eq!(LocalAccess::read(dir.path()).unwrap(), Some(b.clone()));
        b.remove(dir.path());
        assert!(LocalAccess::read(dir.path()).unwrap().is_none());
        std::fs::write(access_path(dir.path()), "nonsense").unwrap();
        assert!(matches!(
            LocalAccess::read(dir.path()),
            Err(AccessError::Malformed { .. })
        ));
    }
}
