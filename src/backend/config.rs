//! The `[backend]` section: which object backend stores the objects, and
//! its settings. This is the one definition of that schema and of its
//! defaults; `config.rs` re-exports it into the whole configuration.
//!
//! The section is a tagged enum on `kind` ("local" or "webdav"), so each
//! kind's settings exist only where they apply and a webdav backend cannot
//! exist without its URL. Two compatibility rules keep every file that
//! parsed before parsing the same way:
//!
//! - `config.example.toml` lists every key with its default, the webdav ones
//!   under `kind = "local"`, and copies of it are in use: a local section
//!   accepts the webdav keys (checked for their type, never used).
//! - A webdav section accepts a leftover `path` the same way, so switching
//!   kind (in the file or with `DEDUPDAV_BACKEND__KIND`) needs no other edit.
//!
//! Any other key is an error naming it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where objects are stored (`[backend]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BackendConfig {
    /// A directory on the gateway (the embedded default).
    Local(LocalConfig),
    /// An ownCloud (or any WebDAV) account.
    Webdav(WebDavConfig),
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self::Local(LocalConfig::default())
    }
}

impl BackendConfig {
    /// The configured kind, as written in the file ("local", "webdav").
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Local(_) => "local",
            Self::Webdav(_) => "webdav",
        }
    }
}

/// `kind = "local"`: one file per object below a directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
// The webdav keys below are accepted for compatibility (module header) and
// never read.
#[allow(dead_code)]
pub struct LocalConfig {
    /// The object directory; default `<data_dir>/objects`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(default, skip_serializing)]
    url: Option<String>,
    #[serde(default, skip_serializing)]
    username: Option<String>,
    #[serde(default, skip_serializing)]
    password: Option<String>,
    #[serde(default, skip_serializing)]
    password_file: Option<PathBuf>,
    #[serde(default, skip_serializing)]
    root: Option<String>,
    #[serde(default, skip_serializing)]
    connect_timeout_secs: Option<u64>,
    #[serde(default, skip_serializing)]
    request_timeout_secs: Option<u64>,
    #[serde(default, skip_serializing)]
    retry_deadline_secs: Option<u64>,
    #[serde(default, skip_serializing)]
    parallelism: Option<usize>,
    #[serde(default, skip_serializing)]
    verify_puts: Option<bool>,
}

impl LocalConfig {
    /// A local backend in `path`.
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: Some(path.into()),
            ..Self::default()
        }
    }

    /// The object directory: `path`, or `<data_dir>/objects`.
    pub fn objects_dir(&self, data_dir: &Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| data_dir.join("objects"))
    }
}

/// `kind = "webdav"`: how to reach the upstream WebDAV account.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebDavConfig {
    /// The account's WebDAV root, e.g.
    /// `https://cloud.example.org/remote.php/dav/files/svc/`.
    pub url: String,
    /// Account name for Basic auth; empty means no authentication.
    #[serde(default)]
    pub username: String,
    /// The password (or app password); prefer `password_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// A file holding the password (trailing newline ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Folder inside the account that holds every object.
    #[serde(default = "default_root")]
    pub root: String,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Limit for one whole request, body included.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// How long transient failures are retried before the error is returned.
    #[serde(default = "default_retry_deadline")]
    pub retry_deadline_secs: u64,
    /// Most requests in flight to the upstream at once.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// Check the stored size with a HEAD after every PUT.
    #[serde(default = "default_true")]
    pub verify_puts: bool,
    /// The local kind's key, accepted for compatibility (module header).
    #[serde(default, skip_serializing)]
    #[allow(dead_code)]
    path: Option<PathBuf>,
}

fn default_root() -> String {
    "dedupdav".to_string()
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_request_timeout() -> u64 {
    120
}
/// 60 s. Two defaults existed (60 in the configuration, 120 here); 60 is the
/// one every `serve` actually ran with, and the one config.example.toml
/// documents ("retried with backoff before the client gets 503"). A client
/// waiting longer than a minute for an answer usually gives up by itself.
fn default_retry_deadline() -> u64 {
    60
}
fn default_parallelism() -> usize {
    8
}
fn default_true() -> bool {
    true
}

impl WebDavConfig {
    /// A configuration with every optional setting at its default.
    pub fn new(url: impl Into<String>, username: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            username: username.into(),
            password: None,
            password_file: None,
            root: default_root(),
            connect_timeout_secs: default_connect_timeout(),
            request_timeout_secs: default_request_timeout(),
            retry_deadline_secs: default_retry_deadline(),
            parallelism: default_parallelism(),
            verify_puts: default_true(),
            path: None,
        }
    }
}

impl std::fmt::Debug for WebDavConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebDavConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("root", &self.root)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("retry_deadline_secs", &self.retry_deadline_secs)
            .field("parallelism", &self.parallelism)
            .field("verify_puts", &self.verify_puts)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<BackendConfig, toml::de::Error> {
        toml::from_str(toml_text)
    }

    #[test]
    fn webdav_defaults_and_redaction() {
        let cfg = parse(
            r#"kind = "webdav"
               url = "https://cloud.example.org/remote.php/dav/files/svc/"
               username = "svc"
               password = "secret""#,
        )
        .unwrap();
        let BackendConfig::Webdav(cfg) = cfg else {
            panic!("wrong variant")
        };
        assert_eq!(cfg.root, "dedupdav");
        assert_eq!(cfg.connect_timeout_secs, 10);
        assert_eq!(cfg.request_timeout_secs, 120);
        assert_eq!(cfg.retry_deadline_secs, 60);
        assert_eq!(cfg.parallelism, 8);
        assert!(cfg.verify_puts);
        assert!(!format!("{cfg:?}").contains("secret"));
        let new = WebDavConfig::new("http://x/", "svc");
        assert_eq!(new.retry_deadline_secs, cfg.retry_deadline_secs);
        let bad = toml::from_str::<WebDavConfig>("url = \"http://x/\"\nusernme = \"svc\"");
        assert!(bad.is_err());
    }

    #[test]
    fn local_accepts_the_webdav_keys_but_nothing_else() {
        let cfg = parse("kind = \"local\"\nroot = \"x\"\nretry_deadline_secs = 5\n").unwrap();
        assert!(matches!(cfg, BackendConfig::Local(LocalConfig { path: None, .. })));
        let cfg = parse("kind = \"local\"\npath = \"/srv/o\"\n").unwrap();
        let BackendConfig::Local(local) = cfg else {
            panic!("wrong variant")
        };
        assert_eq!(local.objects_dir(Path::new("/d")), Path::new("/srv/o"));
        assert_eq!(
            LocalConfig::default().objects_dir(Path::new("/d")),
            Path::new("/d/objects")
        );
        let e = parse("kind = \"local\"\nurll = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("urll"), "{e}");
        // Compatible keys keep their type.
        let e = parse("kind = \"local\"\nparallelism = \"many\"\n").unwrap_err();
        assert!(e.to_string().contains("many"), "{e}");
    }

    #[test]
    fn webdav_accepts_a_leftover_path() {
        let cfg = parse("kind = \"webdav\"\nurl = \"http://x/\"\npath = \"/srv/o\"\n").unwrap();
        assert_eq!(cfg.kind(), "webdav");
    }
}
