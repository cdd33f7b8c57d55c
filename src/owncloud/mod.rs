//! The ownCloud server endpoints sync clients need besides WebDAV:
//! `/status.php`, the OCS capabilities and user (`/ocs/v1.php/...` and
//! `/ocs/v2.php/...`, JSON or XML as `format` asks), and the chunked
//! upload folders ([`uploads`]).
//!
//! The capabilities say what the gateway really does: chunking NG (with
//! sequential chunks), SHA1/MD5/Adler-32 checksums, no sharing, no
//! versions, no trash bin, no TUS.

pub mod checksum;
pub mod props;
pub mod uploads;

use crate::xml_escape::escape;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use crate::files::refused::RefusedNames;
use crate::meta::UserRecord;
use crate::owncloud::checksum::SUPPORTED;
use crate::wire::reply::{full, GwBody};

/// The ownCloud version the gateway presents (≥ 10 makes clients ask for
/// `oc:share-types`, as they do with a real server).
const VERSION: &str = "10.13.0.0";
const VERSION_STRING: &str = "10.13.0";
const PRODUCT: &str = "dedupdav";

fn status_value() -> Value {
    json!({
        "installed": true,
        "maintenance": false,
        "needsDbUpgrade": false,
        "version": VERSION,
        "versionstring": VERSION_STRING,
        "edition": "Community",
        "productname": PRODUCT,
        "product": PRODUCT,
        "productversion": env!("CARGO_PKG_VERSION"),
    })
}

fn json_response(status: StatusCode, v: &Value) -> Response<GwBody> {
    let mut res = Response::new(full(v.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    res
}

/// `GET /status.php`.
pub fn status() -> Response<GwBody> {
    json_response(StatusCode::OK, &status_value())
}

/// The reply format an OCS request asks for (`?format=json`; XML is the
/// default, as on ownCloud).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Xml,
}

pub fn format_of(query: Option<&str>) -> Format {
    let json = query.is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.eq_ignore_ascii_case("format=json"))
    });
    if json {
        Format::Json
    } else {
        Format::Xml
    }
}

/// The capabilities; `refused`: the names `files.refuse` keeps out,
/// which clients then do not try to upload.
fn capabilities(refused: &RefusedNames) -> Value {
    let mut blacklisted = vec![".htaccess".to_string()];
    blacklisted.extend(refused.patterns().iter().cloned());
    json!({
        "version": {
            "major": 10, "minor": 13, "micro": 0,
            "string": VERSION_STRING,
            "edition": "Community",
            "product": PRODUCT,
        },
        "capabilities": {
            "core": {
                "pollinterval": 60,
                "webdav-root": "remote.php/webdav",
                "status": status_value(),
                "support-url-signing": false,
            },
            "dav": {
                "chunking": "1.0",
                "chunkingParallelUploadDisabled": true,
                "reports": [],
                "trashbin": "",
            },
            "files": {
                "bigfilechunking": true,
                "blacklisted_files": blacklisted,
                "privateLinks": false,
                "privateLinksDetailsParam": false,
                "undelete": false,
                "versioning": false,
                "favorites": false,
                "tus_support": null,
            },
            "checksums": {
                "supportedTypes": SUPPORTED,
                "preferredUploadType": "SHA1",
            },
            "files_sharing": {
                "api_enabled": false,
                "public": { "enabled": false },
                "user": { "send_mail": false },
                "resharing": false,
                "group_sharing": false,
                "federation": { "outgoing": false, "incoming": false },
            },
            "notifications": { "ocs-endpoints": [] },
        },
    })
}

fn user_data(user: &UserRecord) -> Value {
    let quota = match user.quota {
        Some(q) => json!({
            "free": q.saturating_sub(user.used),
            "used": user.used,
            "total": q,
            "relative": if q > 0 { (user.used as f64 * 100.0 / q as f64 * 100.0).round() / 100.0 } else { 0.0 },
            "definition": q.to_string(),
        }),
        None => json!({
            "free": -3,
            "used": user.used,
            "total": -3,
            "relative": 0,
            "definition": "none",
        }),
    };
    json!({
        "id": user.name,
        "display-name": user.name,
        "displayname": user.name,
        "email": null,
        "language": "en",
        "quota": quota,
    })
}

/// The OCS reply envelope.
fn envelope(v2: bool, ok: bool, message: &str, data: Value) -> Value {
    let statuscode = match (ok, v2) {
        (true, false) => 100,
        (true, true) => 200,
        (false, _) => 998,
    };
    json!({
        "ocs": {
            "meta": {
                "status": if ok { "ok" } else { "failure" },
                "statuscode": statuscode,
                "message": message,
                "totalitems": "",
                "itemsperpage": "",
            },
            "data": data,
        }
    })
}

/// XML names must not start with a digit or contain odd characters; OCS
/// keys are plain, but keep the output well-formed whatever they are.
fn xml_name(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// Writes a JSON value the way ownCloud's OCS XML does: objects become
/// elements, list items `<element>`, true `1`, false and null empty.
fn write_xml(out: &mut String, v: &Value) {
    match v {
        Value::Null | Value::Bool(false) => {}
        Value::Bool(true) => out.push('1'),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&escape(s)),
        Value::Array(items) => {
            for item in items {
                out.push_str("<element>");
                write_xml(out, item);
                out.push_str("</element>");
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let name = xml_name(k);
                out.push('<');
                out.push_str(&name);
                out.push('>');
                write_xml(out, item);
                out.push_str("</");
                out.push_str(&name);
                out.push('>');
            }
        }
    }
}

fn ocs_reply(format: Format, status: StatusCode, body: &Value) -> Response<GwBody> {
    match format {
        Format::Json => json_response(status, body),
        Format::Xml => {
            let mut xml = String::from("<?xml version=\"1.0\"?>\n");
            write_xml(&mut xml, body);
            xml.push('\n');
            let mut res = Response::new(full(xml));
            *res.status_mut() = status;
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/xml; charset=UTF-8"),
            );
            res
        }
    }
}

/// An OCS request of an authenticated user. `rest` is the path after
/// `/ocs/v1.php/` (or v2).
pub fn ocs(
    v2: bool,
    rest: &str,
    query: Option<&str>,
    user: &UserRecord,
    refused: &RefusedNames,
) -> Response<GwBody> {
    let format = format_of(query);
    let path = rest.trim_end_matches('/');
    let data = match path {
        "cloud/capabilities" => capabilities(refused),
        "cloud/user" => user_data(user),
        _ => {
            let body = envelope(v2, false, "no such OCS endpoint", Value::Array(Vec::new()));
            return ocs_reply(format, StatusCode::NOT_FOUND, &body);
        }
    };
    ocs_reply(format, StatusCode::OK, &envelope(v2, true, "OK", data))
}

/// The OCS reply for a request without valid credentials.
pub fn ocs_unauthorized(v2: bool, query: Option<&str>) -> Response<GwBody> {
    let mut body = envelope(v2, false, "Unauthorised", Value::Array(Vec::new()));
    body["ocs"]["meta"]["statuscode"] = json!(997);
    let mut res = ocs_reply(format_of(query), StatusCode::UNAUTHORIZED, &body);
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"dedupdav\", charset=\"UTF-8\""),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn user(quota: Option<u64>) -> UserRecord {
        UserRecord {
            id: 3,
            name: "alice".into(),
            password_hash: String::new(),
            admin: false,
            quota,
            used: 250,
            root: 4,
            created: 0,
            disabled: false,
        }
    }

    async fn body(res: Response<GwBody>) -> String {
        let b = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn status_json() {
        let v: Value = serde_json::from_str(&body(status()).await).unwrap();
        assert_eq!(v["installed"], true);
        assert_eq!(v["version"], "10.13.0.0");
        assert_eq!(v["maintenance"], false);
    }

    #[tokio::test]
    async fn capabilities_json_v1_and_v2() {
        for (v2, code) in [(false, 100), (true, 200)] {
            let res = ocs(
                v2,
                "cloud/capabilities",
                Some("format=json"),
                &user(None),
                &RefusedNames::default(),
            );
            assert_eq!(res.status(), StatusCode::OK);
            let v: Value = serde_json::from_str(&body(res).await).unwrap();
            assert_eq!(v["ocs"]["meta"]["statuscode"], code);
            let caps = &v["ocs"]["data"]["capabilities"];
            assert_eq!(caps["dav"]["chunking"], "1.0");
            assert_eq!(caps["core"]["status"]["version"], "10.13.0.0");
            assert_eq!(caps["checksums"]["preferredUploadType"], "SHA1");
            assert_eq!(
                caps["checksums"]["supportedTypes"],
                json!(["SHA1", "MD5", "ADLER32"])
            );
            assert_eq!(caps["files_sharing"]["api_enabled"], false);
        }
    }

    #[tokio::test]
    async fn capabilities_xml() {
        let res = ocs(
            false,
            "cloud/capabilities/",
            None,
            &user(None),
            &RefusedNames::default(),
        );
        assert!(res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("xml"));
        let text = body(res).await;
        assert!(text.contains("<statuscode>100</statuscode>"), "{text}");
        assert!(text.contains("<chunking>1.0</chunking>"), "{text}");
        assert!(
            text.contains("<supportedTypes><element>SHA1</element>"),
            "{text}"
        );
        // Well-formed: every element closes.
        let mut reader = quick_xml::Reader::from_str(&text);
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("bad XML: {e}: {text}"),
            }
        }
    }

    #[tokio::test]
    async fn user_endpoint() {
        let res = ocs(
            true,
            "cloud/user",
            Some("format=json"),
            &user(Some(1000)),
            &RefusedNames::default(),
        );
        let v: Value = serde_json::from_str(&body(res).await).unwrap();
        assert_eq!(v["ocs"]["data"]["id"], "alice");
        assert_eq!(v["ocs"]["data"]["display-name"], "alice");
        assert_eq!(v["ocs"]["data"]["quota"]["free"], 750);
        let xml = body(ocs(
            false,
            "cloud/user",
            Some("format=xml"),
            &user(None),
            &RefusedNames::default(),
        ))
        .await;
        assert!(xml.contains("<id>alice</id>"), "{xml}");
    }

    #[tokio::test]
    async fn unknown_endpoint_and_unauthorized() {
        let res = ocs(
            false,
            "apps/nothing",
            Some("format=json"),
            &user(None),
            &RefusedNames::default(),
        );
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        let res = ocs_unauthorized(true, Some("format=json"));
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        let v: Value = serde_json::from_str(&body(res).await).unwrap();
        assert_eq!(v["ocs"]["meta"]["statuscode"], 997);
    }
}
