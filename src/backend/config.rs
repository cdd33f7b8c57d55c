//! The `[backend]` section: which object backend stores the objects, and
//! its settings. This is the one definition of that schema and of its
//! defaults; `config.rs` re-exports it into the whole configuration.
//!
//! The rest of the gateway sees [`BackendConfig`], an enum tagged by `kind`
//! ("local" or "webdav"): each kind's settings exist only where they apply,
//! and a webdav backend cannot exist without its URL. The file is read
//! through [`Section`], the table as users write it, and converted. Two
//! reasons, both checked by the tests below and in `config.rs`:
//!
//! - Files that parsed before keep parsing the same way. `config.example.toml`
//!   lists every key with its default, the webdav ones under
//!   `kind = "local"`, and copies of it are in use; a leftover `path` under
//!   `kind = "webdav"` was accepted too. A key of the other kind is still
//!   checked for its type, and ignored; any other key is an error naming it.
//! - Errors keep naming the key. A derived internally tagged enum buffers
//!   the section before it picks the variant, so a bad value was reported
//!   "for key backend" instead of "for key backend.parallelism" (tried).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A `[backend]` section that names no usable backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendConfigError {
    #[error("url is required when kind = \"webdav\"")]
    MissingUrl,
}

/// Where objects are stored (`[backend]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "Section", into = "Section")]
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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalConfig {
    /// The object directory; default `<data_dir>/objects`.
    pub path: Option<PathBuf>,
}

impl LocalConfig {
    /// The object directory: `path`, or `<data_dir>/objects`.
    pub fn objects_dir(&self, data_dir: &Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| data_dir.join("objects"))
    }
}

/// `kind = "webdav"`: how to reach the upstream WebDAV account.
#[derive(Clone)]
pub struct WebDavConfig {
    /// The account's WebDAV root, e.g.
    /// `https://cloud.example.org/remote.php/dav/files/svc/`.
    pub url: String,
    /// Account name for Basic auth; empty means no authentication.
    pub username: String,
    /// The password (or app password); prefer `password_file`.
    pub password: Option<String>,
    /// A file holding the password (trailing newline ignored).
    pub password_file: Option<PathBuf>,
    /// Folder inside the account that holds every object.
    pub root: String,
    pub connect_timeout_secs: u64,
    /// Limit for one whole request, body included.
    pub request_timeout_secs: u64,
    /// How long transient failures are retried before the error is returned.
    pub retry_deadline_secs: u64,
    /// Most requests in flight to the upstream at once.
    pub parallelism: usize,
    /// Check the stored size with a HEAD after every PUT.
    pub verify_puts: bool,
}

impl WebDavConfig {
    /// A configuration with every optional setting at its default: the
    /// defaults of `[backend]`, as config.example.toml shows them.
    pub fn new(url: impl Into<String>, username: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            username: username.into(),
            password: None,
            password_file: None,
            root: "dedupdav".to_string(),
            connect_timeout_secs: 10,
            request_timeout_secs: 120,
            // Two defaults existed (60 s in the configuration, 120 s in this
            // backend); 60 s is the one every `serve` ran with and the one
            // config.example.toml documents ("retried with backoff before
            // the client gets 503"). Most clients give up on an answer
            // that takes longer than a minute anyway.
            retry_deadline_secs: 60,
            parallelism: 8,
            verify_puts: true,
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

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    #[default]
    Local,
    Webdav,
}

/// The `[backend]` table as written: every key of every kind, unset keys
/// taking the defaults of [`WebDavConfig::new`].
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    #[serde(default)]
    kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    root: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connect_timeout_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    request_timeout_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_deadline_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parallelism: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verify_puts: Option<bool>,
}

impl Section {
    /// The webdav settings: the keys set here over the defaults.
    fn into_webdav(self) -> Result<WebDavConfig, BackendConfigError> {
        let url = self.url.ok_or(BackendConfigError::MissingUrl)?;
        let mut w = WebDavConfig::new(url, self.username.unwrap_or_default());
        w.password = self.password;
        w.password_file = self.password_file;
        w.root = self.root.unwrap_or(w.root);
        w.connect_timeout_secs = self.connect_timeout_secs.unwrap_or(w.connect_timeout_secs);
        w.request_timeout_secs = self.request_timeout_secs.unwrap_or(w.request_timeout_secs);
        w.retry_deadline_secs = self.retry_deadline_secs.unwrap_or(w.retry_deadline_secs);
        w.parallelism = self.parallelism.unwrap_or(w.parallelism);
        w.verify_puts = self.verify_puts.unwrap_or(w.verify_puts);
        Ok(w)
    }

    fn from_webdav(w: WebDavConfig) -> Self {
        Self {
            kind: Kind::Webdav,
            path: None,
            url: Some(w.url),
            username: Some(w.username),
            password: w.password,
            password_file: w.password_file,
            root: Some(w.root),
            connect_timeout_secs: Some(w.connect_timeout_secs),
            request_timeout_secs: Some(w.request_timeout_secs),
            retry_deadline_secs: Some(w.retry_deadline_secs),
            parallelism: Some(w.parallelism),
            verify_puts: Some(w.verify_puts),
        }
    }
}

impl TryFrom<Section> for BackendConfig {
    type Error = BackendConfigError;

    fn try_from(s: Section) -> Result<Self, Self::Error> {
        Ok(match s.kind {
            Kind::Local => Self::Local(LocalConfig { path: s.path }),
            Kind::Webdav => Self::Webdav(s.into_webdav()?),
        })
    }
}

impl From<BackendConfig> for Section {
    fn from(c: BackendConfig) -> Self {
        match c {
            BackendConfig::Local(l) => Self {
                path: l.path,
                ..Self::default()
            },
            BackendConfig::Webdav(w) => Self::from_webdav(w),
        }
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
        let bad = parse("kind = \"webdav\"\nurl = \"http://x/\"\nusernme = \"svc\"");
        assert!(bad.is_err());
    }

    #[test]
    fn local_accepts_the_webdav_keys_but_nothing_else() {
        let cfg = parse("kind = \"local\"\nroot = \"x\"\nretry_deadline_secs = 5\n").unwrap();
        assert!(matches!(
            cfg,
            BackendConfig::Local(LocalConfig { path: None })
        ));
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
        // Keys of the other kind keep their type.
        let e = parse("kind = \"local\"\nparallelism = \"many\"\n").unwrap_err();
        assert!(e.to_string().contains("parallelism"), "{e}");
    }

    #[test]
    fn webdav_accepts_a_leftover_path_and_needs_a_url() {
        let cfg = parse("kind = \"webdav\"\nurl = \"http://x/\"\npath = \"/srv/o\"\n").unwrap();
        assert_eq!(cfg.kind(), "webdav");
        let e = parse("kind = \"webdav\"\nusername = \"svc\"\n").unwrap_err();
        assert!(e.to_string().contains("url is required"), "{e}");
    }

    #[test]
    fn written_back_it_reads_the_same() {
        let mut w = WebDavConfig::new("http://x/", "svc");
        w.password = Some("pw".into());
        w.parallelism = 3;
        let text = toml::to_string(&BackendConfig::Webdav(w)).unwrap();
        let BackendConfig::Webdav(back) = parse(&text).unwrap() else {
            panic!("wrong variant: {text}")
        };
        assert_eq!(
            (back.parallelism, back.password.as_deref()),
            (3, Some("pw"))
        );
        let text = toml::to_string(&BackendConfig::default()).unwrap();
        assert_eq!(text.trim(), "kind = \"local\"");
    }
}
