//! Classification of upstream failures: a transport error (no answer) or an
//! answer the caller does not handle itself becomes a [`BackendError`],
//! wrapped in a [`Failure`] that says whether retrying can help. Causes are
//! written for an operator (wrong credentials, a redirect to fix in the URL,
//! a TLS mismatch) and never contain the password; the URL's host is left
//! out of the TLS guess because it could contain anything.

use reqwest::header::LOCATION;
use reqwest::Response;

use super::retry::{retry_after, Failure};
use super::{header_str, WebDavStore};
use crate::backend::BackendError;

impl WebDavStore {
    /// Classifies a failure to get any answer from the upstream.
    pub(super) fn transport_failure(&self, what: &str, e: &reqwest::Error) -> Failure {
        let cause = error_chain(e);
        if looks_like_tls(e) {
            return Failure::Fatal(self.permanent(format!(
                "TLS failure: {cause} (is the certificate valid and trusted, and does the URL's \
                     scheme match the server: https vs http?)"
            )));
        }
        if e.is_connect() {
            return Failure::Retry(
                BackendError::Unreachable {
                    backend: self.display.clone(),
                    cause: format!("cannot connect: {cause}"),
                },
                None,
            );
        }
        let cause = if e.is_timeout() {
            format!("{what}: timed out: {cause}")
        } else {
            format!("{what}: {cause}")
        };
        Failure::Retry(
            BackendError::Transient {
                backend: self.display.clone(),
                cause,
            },
            None,
        )
    }

    /// Classifies an answer that is not one the caller handles itself.
    pub(super) fn status_failure(&self, what: &str, resp: &Response) -> Failure {
        let status = resp.status();
        let backend = self.display.clone();
        let code = status.as_u16();
        match code {
            401 => Failure::Fatal(BackendError::Permanent {
                backend,
                cause: format!(
                    "wrong credentials: {what} answered 401 Unauthorized for user {:?}",
                    self.username
                ),
            }),
            403 => Failure::Fatal(BackendError::Permanent {
                backend,
                cause: format!(
                    "access forbidden: {what} answered 403 Forbidden for user {:?} (wrong \
                     credentials, or no write permission on the folder)",
                    self.username
                ),
            }),
            507 => Failure::Fatal(BackendError::InsufficientStorage),
            300..=399 => {
                let to = header_str(resp.headers(), LOCATION).unwrap_or_default();
                Failure::Fatal(BackendError::Permanent {
                    backend,
                    cause: format!(
                        "bad URL: {what} was redirected ({status}) to {to:?}; configure the final \
                         WebDAV URL (http vs https, the path up to /remote.php/dav/files/<user>/)"
                    ),
                })
            }
            408 | 423 | 425 | 429 | 500 | 502 | 503 | 504 => Failure::Retry(
                BackendError::Transient {
                    backend,
                    cause: format!("{what}: {status}"),
                },
                retry_after(resp.headers()),
            ),
            501 | 405 => Failure::Fatal(BackendError::Permanent {
                backend,
                cause: format!("not WebDAV: {what} answered {status}; is the URL a WebDAV folder?"),
            }),
            c if c >= 500 && c != 505 && c != 508 && c != 510 => Failure::Retry(
                BackendError::Transient {
                    backend,
                    cause: format!("{what}: {status}"),
                },
                retry_after(resp.headers()),
            ),
            _ => Failure::Fatal(BackendError::Permanent {
                backend,
                cause: format!("{what}: unexpected answer {status}"),
            }),
        }
    }

    /// A failure retrying cannot fix, naming this upstream.
    pub(super) fn permanent(&self, cause: impl Into<String>) -> BackendError {
        BackendError::Permanent {
            backend: self.display.clone(),
            cause: cause.into(),
        }
    }
}

/// An error and its sources, joined, without repeats.
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// Whether a transport error comes from TLS (a bad certificate, or https
/// spoken to a plain-http port). Only the sources are looked at: the
/// top-level message holds the URL, whose host name could contain anything.
fn looks_like_tls(e: &reqwest::Error) -> bool {
    const SIGNS: &[&str] = &[
        "certificate",
        "invalidcontenttype",
        "corrupt message",
        "handshake",
        "peer is incompatible",
        "received fatal alert",
        "unknownissuer",
    ];
    let mut cur = std::error::Error::source(e);
    while let Some(err) = cur {
        let msg = err.to_string().to_ascii_lowercase();
        if SIGNS.iter().any(|k| msg.contains(k)) {
            return true;
        }
        cur = err.source();
    }
    false
}
