//! Turning a [`WebDavConfig`] into the parts of a [`WebDavStore`](super::WebDavStore):
//! the account's base URL, the root folder's segments, the password and the
//! pooled HTTP client. Everything is checked before anything is sent, so a
//! bad setting stops the start with a [`WebDavConfigError`] that names it.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use super::WebDavConfig;
use crate::backend::BackendError;

/// A [`WebDavConfig`] that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebDavConfigError {
    #[error("upstream url {url:?} is not usable: {cause}")]
    Url { url: String, cause: String },
    #[error("upstream credentials: {0}")]
    Credentials(String),
    #[error("cannot read the upstream password file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid upstream setting: {0}")]
    Invalid(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl From<WebDavConfigError> for BackendError {
    fn from(e: WebDavConfigError) -> Self {
        BackendError::Permanent {
            backend: "webdav".to_string(),
            cause: e.to_string(),
        }
    }
}

/// The account's WebDAV root: an http(s) server URL without credentials,
/// query or fragment, ending in `/`.
pub(super) fn account_base(url: &str) -> Result<Url, WebDavConfigError> {
    let url_err = |cause: &str| WebDavConfigError::Url {
        url: url.to_string(),
        cause: cause.to_string(),
    };
    let mut base = Url::parse(url).map_err(|e| url_err(&e.to_string()))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(url_err("the scheme must be http or https"));
    }
    if base.cannot_be_a_base() || base.host().is_none() {
        return Err(url_err("not a server URL"));
    }
    if !base.username().is_empty() || base.password().is_some() {
        return Err(url_err(
            "put credentials in username and password, not in the URL",
        ));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(url_err("a query or fragment is not allowed"));
    }
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    Ok(base)
}

/// The `root` folder as path segments: at least one, none `.` or `..`.
pub(super) fn root_segments(root: &str) -> Result<Vec<String>, WebDavConfigError> {
    let segments: Vec<String> = root
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if segments.iter().any(|s| s == "." || s == "..") {
        return Err(WebDavConfigError::Invalid(format!(
            "root {root:?} must not contain . or .."
        )));
    }
    if segments.is_empty() {
        return Err(WebDavConfigError::Invalid(
            "root must name a folder inside the account".to_string(),
        ));
    }
    Ok(segments)
}

/// The password from `password` or `password_file` (one of them, and only
/// together with a username); `None` when the account needs none.
pub(super) fn password(config: &WebDavConfig) -> Result<Option<String>, WebDavConfigError> {
    let password = match (&config.password, &config.password_file) {
        (Some(_), Some(_)) => {
            return Err(WebDavConfigError::Credentials(
                "set password or password_file, not both".to_string(),
            ))
        }
        (Some(p), None) => Some(p.clone()),
        (None, Some(path)) => Some(read_password_file(path)?),
        (None, None) => None,
    };
    if password.is_some() && config.username.is_empty() {
        return Err(WebDavConfigError::Credentials(
            "a password is set but username is empty".to_string(),
        ));
    }
    if password.is_none() && !config.username.is_empty() {
        return Err(WebDavConfigError::Credentials(format!(
            "username {:?} needs password or password_file",
            config.username
        )));
    }
    Ok(password)
}

/// The file's content without its trailing newline.
fn read_password_file(path: &PathBuf) -> Result<String, WebDavConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| WebDavConfigError::PasswordFile {
        path: path.clone(),
        source,
    })?;
    Ok(text.trim_end_matches(['\r', '\n']).to_string())
}

/// Timeouts and `parallelism` must be positive.
pub(super) fn check_limits(config: &WebDavConfig) -> Result<(), WebDavConfigError> {
    for (name, v) in [
        ("connect_timeout_secs", config.connect_timeout_secs),
        ("request_timeout_secs", config.request_timeout_secs),
    ] {
        if v == 0 {
            return Err(WebDavConfigError::Invalid(format!("{name} must be > 0")));
        }
    }
    if config.parallelism == 0 {
        return Err(WebDavConfigError::Invalid(
            "parallelism must be > 0".to_string(),
        ));
    }
    Ok(())
}

/// The pooled client every request goes through. Redirects are not
/// followed: a redirect means a URL to fix ([`super::classify`] says so).
pub(super) fn http_client(config: &WebDavConfig) -> Result<reqwest::Client, WebDavConfigError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
        .timeout(Duration::from_secs(config.request_timeout_secs))
        .pool_max_idle_per_host(config.parallelism)
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .user_agent(concat!("dedupdav/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(WebDavConfigError::Client)
}
