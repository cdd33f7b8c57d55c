//! The command line's client of the admin API of a running `serve` on this
//! machine, authenticated by the token of the access file ([`super::local`]).
//! It tells "nobody answers" ([`ClientError::Unreachable`]: the caller then
//! works on the index directly) from every other failure.

use std::time::Duration;

use super::local::LocalAccess;

/// Errors of a call to the admin API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the gateway at {url} does not answer: {cause}")]
    Unreachable { url: String, cause: String },
    /// The API answered with an error (its message).
    #[error("{message}")]
    Api { status: u16, message: String },
    #[error("talking to the gateway at {url} failed: {cause}")]
    Transport { url: String, cause: String },
}

/// A client of one gateway.
pub struct AdminClient {
    http: reqwest::Client,
    access: LocalAccess,
}

impl AdminClient {
    pub fn new(access: LocalAccess) -> Result<Self, ClientError> {
        let transport = |cause: String| ClientError::Transport {
            url: access.url.clone(),
            cause,
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .no_proxy();
        if let Some(sha256) = &access.cert_sha256 {
            let tls = super::pinned::client_config(sha256).map_err(|e| transport(e.to_string()))?;
            builder = builder.use_preconfigured_tls(tls);
        }
        let http = builder.build().map_err(|e| transport(e.to_string()))?;
        Ok(Self { http, access })
    }

    /// The gateway's base URL.
    pub fn url(&self) -> &str {
        &self.access.url
    }

    /// `method /api/v1{path}` with an optional JSON body; answers the JSON
    /// reply of a success.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}/api/v1{path}", self.access.url);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(&self.access.token);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_string());
        }
        let transport = |e: reqwest::Error| {
            let cause = e.to_string();
            if e.is_connect() {
                ClientError::Unreachable {
                    url: self.access.url.clone(),
                    cause,
                }
            } else {
                ClientError::Transport {
                    url: self.access.url.clone(),
                    cause,
                }
            }
        };
        let res = req.send().await.map_err(transport)?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(transport)?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ClientError::Transport {
                url: self.access.url.clone(),
                cause: format!("a reply that is not JSON ({e}): {text:.200}"),
            })?;
        if (200..300).contains(&status) {
            Ok(json)
        } else {
            let message = json["error"].as_str().unwrap_or(&text).to_string();
            Err(ClientError::Api { status, message })
        }
    }
}
