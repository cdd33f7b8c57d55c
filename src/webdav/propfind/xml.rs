//! The 207 body, written the way the WebDAV layer writes it: the same
//! hrefs (its percent-encoding, a slash after folders), one 200 propstat
//! per entry with the properties in request order, etags quoted. What an
//! entry does not have is named in a 404 propstat after it (RFC 4918,
//! 9.1: every property asked for is listed under some status). Property values are
//! numbers, dates, MIME types and hrefs, none of which need escaping; the
//! `oc:`/`nc:` values come escaped from [`ocprops`].

use std::time::{SystemTime, UNIX_EPOCH};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::props::{PropName, Want, NS_DAV};
use super::{Decline, Found};
use crate::crypto::VisibleIds;
use crate::meta::Node;
use crate::owncloud::props;
use crate::webdav::node_meta;

/// What the WebDAV layer leaves unencoded in an href: RFC 3986's
/// unreserved characters and `/`.
const HREF: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

const SUPPORTED_LOCK: &[u8] = b"<D:supportedlock>\
<D:lockentry><D:lockscope><D:exclusive></D:exclusive></D:lockscope>\
<D:locktype><D:write></D:write></D:locktype></D:lockentry>\
<D:lockentry><D:lockscope><D:shared></D:shared></D:lockscope>\
<D:locktype><D:write></D:write></D:locktype></D:lockentry>\
</D:supportedlock>";

/// The first instant `getlastmodified` cannot show (year 10000).
const HTTP_DATE_END: u64 = 253_402_300_800;

/// How every entry of one reply is answered.
pub(super) struct Reply<'a> {
    /// The properties asked for, and how each is answered (same order).
    pub props: &'a [PropName],
    pub wants: &'a [Want<'a>],
    pub owner_name: &'a str,
    /// How ids and etags are shown to clients.
    pub ids: &'a VisibleIds,
    /// The owner's (used bytes, quota), when a quota property is asked for.
    pub quota: Option<(u64, Option<u64>)>,
    /// macOS Finder wants `quota-used-bytes` zero-padded.
    pub webdavfs: bool,
}

/// One reply entry.
struct At<'a> {
    /// The target's href (with a slash if it is a folder).
    base: &'a [u8],
    /// For a folder entry, its name below `base`.
    child: Option<&'a str>,
    node: &'a Node,
    /// The last name of the path (for the MIME type).
    file_name: &'a str,
    /// The root of the user's tree (quota-used-bytes is the user's total).
    is_root: bool,
}

/// The whole body, and the folder's href when the request named it
/// without its trailing slash (for `Content-Location`).
pub(super) fn multistatus(
    reply: &Reply<'_>,
    root_namespaces: &str,
    found: &Found,
) -> Result<(Vec<u8>, Option<String>), Decline> {
    let mut href = found.path.with_prefix().as_url_string();
    let moved = found.node.is_dir() && !found.path.is_collection();
    if moved {
        href.push('/');
    }
    let per_entry = 2 * href.len() + 120 + 80 * reply.wants.len();
    let mut out = Vec::with_capacity(per_entry * (found.entries.len() + 1) + 200);
    out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"utf-8\"?><D:multistatus");
    out.extend_from_slice(root_namespaces.as_bytes());
    out.push(b'>');
    let target = At {
        base: href.as_bytes(),
        child: None,
        node: &found.node,
        file_name: found.names.last().map_or("", String::as_str),
        is_root: found.path.as_bytes() == b"/",
    };
    reply.response(&mut out, &target)?;
    for (name, node) in &found.entries {
        let entry = At {
            base: href.as_bytes(),
            child: Some(name),
            node,
            file_name: name,
            is_root: false,
        };
        reply.response(&mut out, &entry)?;
    }
    out.extend_from_slice(b"</D:multistatus>");
    Ok((out, moved.then_some(href)))
}

impl Reply<'_> {
    fn response(&self, out: &mut Vec<u8>, at: &At<'_>) -> Result<(), Decline> {
        out.extend_from_slice(b"<D:response><D:href>");
        out.extend_from_slice(at.base);
        if let Some(name) = at.child {
            for piece in utf8_percent_encode(name, HREF) {
                out.extend_from_slice(piece.as_bytes());
            }
            if at.node.is_dir() {
                out.push(b'/');
            }
        }
        out.extend_from_slice(b"</D:href>");
        let start = out.len();
        out.extend_from_slice(b"<D:propstat><D:prop>");
        let props_start = out.len();
        let mut missing = Vec::new();
        for (want, name) in self.wants.iter().zip(self.props) {
            let before = out.len();
            self.prop(out, *want, at)?;
            if out.len() == before {
                missing.push(name);
            }
        }
        if out.len() == props_start {
            out.truncate(start);
        } else {
            out.extend_from_slice(b"</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>");
        }
        not_found_propstat(out, &missing);
        out.extend_from_slice(b"</D:response>");
        Ok(())
    }

    fn prop(&self, out: &mut Vec<u8>, want: Want<'_>, at: &At<'_>) -> Result<(), Decline> {
        let node = at.node;
        match want {
            Want::ResourceType if node.is_dir() => out.extend_from_slice(
                b"<D:resourcetype><D:collection></D:collection></D:resourcetype>",
            ),
            Want::ResourceType => out.extend_from_slice(b"<D:resourcetype></D:resourcetype>"),
            Want::ContentLength if !node.is_dir() => {
                dav_text(out, "getcontentlength", &node.size.to_string())
            }
            Want::LastModified => dav_text(
                out,
                "getlastmodified",
                &http_date(node_meta::modified(node))?,
            ),
            Want::Etag => dav_text(out, "getetag", &self.ids.quoted_etag(node.id, node.version)),
            Want::CreationDate => {
                dav_text(out, "creationdate", &rfc3339(node_meta::created(node))?)
            }
            Want::ContentType => dav_text(out, "getcontenttype", content_type(node, at.file_name)),
            Want::QuotaUsed | Want::QuotaAvailable => self.quota_prop(out, want, at),
            Want::SupportedLock => out.extend_from_slice(SUPPORTED_LOCK),
            Want::Synthesized(ns, name) => {
                let xml = props::render_in_scope(Some(ns), name, node, self.owner_name, self.ids);
                if let Some(xml) = xml {
                    out.extend_from_slice(&xml);
                }
            }
            Want::ContentLength | Want::Absent => {}
        }
        Ok(())
    }

    /// The WebDAV layer's quota figures: the user's total at the root, the
    /// node's own size elsewhere; available = quota − that.
    fn quota_prop(&self, out: &mut Vec<u8>, want: Want<'_>, at: &At<'_>) {
        let Some((total_used, quota)) = self.quota else {
            return;
        };
        let used = if at.is_root { total_used } else { at.node.size };
        match want {
            Want::QuotaUsed if self.webdavfs => {
                dav_text(out, "quota-used-bytes", &format!("{used:014}"))
            }
            Want::QuotaUsed => dav_text(out, "quota-used-bytes", &used.to_string()),
            _ => {
                if let Some(q) = quota {
                    dav_text(
                        out,
                        "quota-available-bytes",
                        &q.saturating_sub(used).to_string(),
                    );
                }
            }
        }
    }
}

/// A `404 Not Found` propstat naming `missing` (nothing if it is empty).
/// `D:` is declared on the reply's root; any other namespace is declared
/// on the element itself, and a property in no namespace undeclares the
/// default one, so the names read back exactly as they were asked for.
pub(crate) fn not_found_propstat(out: &mut Vec<u8>, missing: &[&PropName]) {
    if missing.is_empty() {
        return;
    }
    out.extend_from_slice(b"<D:propstat><D:prop>");
    for p in missing {
        match p.namespace.as_deref() {
            Some(NS_DAV) => {
                out.extend_from_slice(b"<D:");
                out.extend_from_slice(p.name.as_bytes());
            }
            ns => {
                out.push(b'<');
                out.extend_from_slice(p.name.as_bytes());
                out.extend_from_slice(b" xmlns=\"");
                out.extend_from_slice(crate::xml_escape::escape(ns.unwrap_or("")).as_bytes());
                out.push(b'"');
            }
        }
        out.extend_from_slice(b"/>");
    }
    out.extend_from_slice(b"</D:prop><D:status>HTTP/1.1 404 Not Found</D:status></D:propstat>");
}

fn dav_text(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b"<D:");
    out.extend_from_slice(name.as_bytes());
    out.push(b'>');
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"</D:");
    out.extend_from_slice(name.as_bytes());
    out.push(b'>');
}

/// The MIME type the WebDAV layer guesses from the name's extension.
fn content_type(node: &Node, name: &str) -> &'static str {
    if node.is_dir() {
        return "httpd/unix-directory";
    }
    name.rsplit_once('.')
        .and_then(|(_, ext)| mime_guess::from_ext(ext).first_raw())
        .unwrap_or("application/octet-stream")
}

fn unix_secs(t: SystemTime) -> Result<u64, Decline> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| Decline::Time)
}

/// RFC 1123 (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn http_date(t: SystemTime) -> Result<String, Decline> {
    if unix_secs(t)? >= HTTP_DATE_END {
        return Err(Decline::Time);
    }
    Ok(httpdate::fmt_http_date(t))
}

/// RFC 3339 in UTC, to the second (`1996-12-19T16:39:57Z`).
fn rfc3339(t: SystemTime) -> Result<String, Decline> {
    let secs = unix_secs(t)?;
    if secs >= HTTP_DATE_END {
        return Err(Decline::Time);
    }
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    Ok(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    ))
}

/// (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_match_http_dates() {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let mut secs = 0u64;
        while secs < HTTP_DATE_END {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let iso = rfc3339(t).unwrap();
            let http = http_date(t).unwrap();
            // "Sun, 06 Nov 1994 08:49:37 GMT" against "1994-11-06T08:49:37Z".
            let f: Vec<&str> = http.split(' ').collect();
            let month = MONTHS.iter().position(|m| *m == f[2]).unwrap() + 1;
            let want = format!("{}-{month:02}-{}T{}Z", f[3], f[1], f[4]);
            assert_eq!(iso, want, "{secs}");
            secs += 86_400 * 97 + 3_607;
        }
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)).unwrap(),
            "2000-02-29T00:00:00Z"
        );
        assert!(http_date(UNIX_EPOCH + Duration::from_secs(HTTP_DATE_END)).is_err());
    }

    #[test]
    fn content_types_follow_the_extension() {
        let file = Node {
            id: 1,
            parent: 0,
            owner: 1,
            kind: crate::meta::NodeKind::File,
            size: 0,
            mtime: 0,
            created: 0,
            version: 1,
            digest: None,
            checksums: None,
        };
        assert_eq!(content_type(&file, "a.txt"), "text/plain");
        assert_eq!(content_type(&file, "a.PDF"), "application/pdf");
        assert_eq!(content_type(&file, "noext"), "application/octet-stream");
        assert_eq!(content_type(&file, ".bashrc"), "application/octet-stream");
    }
}
