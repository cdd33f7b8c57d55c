//! Which properties a PROPFIND body asks for. Only a plain, well-formed
//! `<D:propfind><D:prop>…</D:prop></D:propfind>` is accepted; anything
//! unusual (another encoding, a DOCTYPE, comments, entities, names outside
//! plain ASCII, `allprop`, `propname`) is declined, so the WebDAV layer
//! answers it — and rejects malformed XML — exactly as it always did.

use quick_xml::events::{BytesDecl, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::Decline;
use crate::dav::ocprops::{self, NS_NEXTCLOUD, NS_OWNCLOUD};

pub const NS_DAV: &str = "DAV:";
const NS_APACHE: &str = "http://apache.org/dav/props/";
const NS_MS: &str = "urn:schemas-microsoft-com:";

/// A property as named in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropName {
    pub namespace: Option<String>,
    pub name: String,
}

/// How a requested property is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want<'a> {
    ResourceType,
    ContentLength,
    LastModified,
    Etag,
    CreationDate,
    ContentType,
    QuotaUsed,
    QuotaAvailable,
    SupportedLock,
    /// An `oc:`/`nc:` property made from the node.
    Synthesized(&'a str, &'a str),
    /// Nothing answers it (no node has dead properties): left out, as the
    /// WebDAV layer leaves out every property it cannot find.
    Absent,
}

/// How `prop` is answered; declined for properties only the WebDAV layer
/// knows (locks, the principal, Windows attributes).
pub fn classify(prop: &PropName) -> Result<Want<'_>, Decline> {
    let name = prop.name.as_str();
    Ok(match prop.namespace.as_deref() {
        Some(NS_DAV) => match name {
            "resourcetype" => Want::ResourceType,
            "getcontentlength" => Want::ContentLength,
            "getlastmodified" => Want::LastModified,
            "getetag" => Want::Etag,
            "creationdate" => Want::CreationDate,
            "getcontenttype" => Want::ContentType,
            "quota-used-bytes" => Want::QuotaUsed,
            "quota-available-bytes" => Want::QuotaAvailable,
            "supportedlock" => Want::SupportedLock,
            "lockdiscovery" | "current-user-principal" => {
                return Err(Decline::Unsupported("a property of the lock system"))
            }
            _ => Want::Absent,
        },
        Some(NS_MS) => return Err(Decline::Unsupported("a Windows property")),
        Some(ns @ (NS_OWNCLOUD | NS_NEXTCLOUD)) if ocprops::is_synthesized(Some(ns), name) => {
            Want::Synthesized(ns, name)
        }
        _ => Want::Absent,
    })
}

/// The namespace declarations of the reply's root, as the WebDAV layer
/// writes them for these properties.
pub fn root_namespaces(props: &[PropName]) -> String {
    let has = |ns: &str| props.iter().any(|p| p.namespace.as_deref() == Some(ns));
    let mut out = format!(" xmlns:D=\"{NS_DAV}\"");
    for (prefix, ns) in [("A", NS_APACHE), ("nc", NS_NEXTCLOUD), ("oc", NS_OWNCLOUD)] {
        if has(ns) {
            out.push_str(&format!(" xmlns:{prefix}=\"{ns}\""));
        }
    }
    out
}

/// Where the reader is in the document.
#[derive(Default)]
struct Walk {
    depth: usize,
    root_done: bool,
    /// Inside the chosen `<prop>` (its children are the properties).
    in_prop: bool,
    props: Option<Vec<PropName>>,
}

/// The properties of a `<D:propfind><D:prop>` body.
pub fn parse(body: &[u8]) -> Result<Vec<PropName>, Decline> {
    let text = std::str::from_utf8(body).map_err(|_| Decline::Body("not UTF-8"))?;
    let mut reader = NsReader::from_str(text);
    let mut walk = Walk::default();
    let mut first = true;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|_| Decline::Body("not well-formed"))?;
        let ns = namespace(ns)?;
        match event {
            Event::Decl(d) if first && text.starts_with("<?xml") => check_decl(&d)?,
            Event::Start(e) => walk.open(&e, ns, true)?,
            Event::Empty(e) => walk.open(&e, ns, false)?,
            Event::End(_) => walk.close(),
            Event::Text(t) => check_text(&t, walk.depth)?,
            Event::Eof => break,
            _ => return Err(Decline::Body("markup other than elements and text")),
        }
        first = false;
    }
    if !walk.root_done {
        return Err(Decline::Body("no complete root element"));
    }
    walk.props
        .ok_or(Decline::Unsupported("not a list of properties"))
}

fn namespace(ns: ResolveResult<'_>) -> Result<Option<String>, Decline> {
    match ns {
        ResolveResult::Bound(n) => std::str::from_utf8(n.as_ref())
            .map(|s| Some(s.to_string()))
            .map_err(|_| Decline::Body("not UTF-8")),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(_) => Err(Decline::Body("undeclared prefix")),
    }
}

impl Walk {
    /// An element starts (`has_content`) or is empty.
    fn open(
        &mut self,
        e: &BytesStart<'_>,
        ns: Option<String>,
        has_content: bool,
    ) -> Result<(), Decline> {
        check_element(e)?;
        let local = std::str::from_utf8(e.local_name().into_inner())
            .map_err(|_| Decline::Body("not UTF-8"))?;
        match self.depth {
            0 if self.root_done => return Err(Decline::Body("a second root element")),
            0 if local != "propfind" || ns.as_deref() != Some(NS_DAV) => {
                return Err(Decline::Body("not a DAV: propfind"))
            }
            1 if self.props.is_none() && local == "prop" => {
                self.props = Some(Vec::new());
                self.in_prop = has_content;
            }
            1 if self.props.is_none() && (local == "allprop" || local == "propname") => {
                return Err(Decline::Unsupported("allprop or propname"))
            }
            2 if self.in_prop => {
                if let Some(list) = self.props.as_mut() {
                    list.push(PropName {
                        namespace: ns,
                        name: local.to_string(),
                    });
                }
            }
            _ => {}
        }
        if has_content {
            self.depth += 1;
        } else if self.depth == 0 {
            self.root_done = true;
        }
        Ok(())
    }

    fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        match self.depth {
            0 => self.root_done = true,
            1 => self.in_prop = false,
            _ => {}
        }
    }
}

fn check_decl(d: &BytesDecl<'_>) -> Result<(), Decline> {
    let version_ok = d.version().is_ok_and(|v| v.as_ref() == b"1.0");
    let encoding_ok = match d.encoding() {
        None => true,
        Some(Ok(e)) => e.eq_ignore_ascii_case(b"utf-8"),
        Some(Err(_)) => false,
    };
    if version_ok && encoding_ok {
        Ok(())
    } else {
        Err(Decline::Body("an XML declaration other than 1.0 / UTF-8"))
    }
}

/// ASCII names (`prefix:local`) only.
fn plain_name(qname: &[u8]) -> bool {
    let part = |p: &[u8]| {
        p.first()
            .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
            && p.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    };
    match qname.iter().position(|&c| c == b':') {
        Some(i) => part(&qname[..i]) && part(&qname[i + 1..]),
        None => part(qname),
    }
}

fn check_element(e: &BytesStart<'_>) -> Result<(), Decline> {
    if !plain_name(e.name().as_ref()) {
        return Err(Decline::Body("an unusual element name"));
    }
    for attr in e.attributes() {
        let attr = attr.map_err(|_| Decline::Body("a malformed attribute"))?;
        let value: &[u8] = attr.value.as_ref();
        if !plain_name(attr.key.as_ref()) || value.iter().any(|c| matches!(c, b'&' | b'<')) {
            return Err(Decline::Body("an unusual attribute"));
        }
    }
    Ok(())
}

fn check_text(t: &[u8], depth: usize) -> Result<(), Decline> {
    let blank = t.iter().all(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'));
    let plain = !t.contains(&b'&')
        && !t.windows(3).any(|w| w == b"]]>")
        && t.iter()
            .all(|&c| c >= 0x20 || matches!(c, b'\t' | b'\r' | b'\n'));
    if (depth == 0 && !blank) || !plain {
        return Err(Decline::Body("unusual text"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(body: &str) -> Option<Vec<(String, String)>> {
        parse(body.as_bytes()).ok().map(|v| {
            v.into_iter()
                .map(|p| (p.namespace.unwrap_or_default(), p.name))
                .collect()
        })
    }

    #[test]
    fn reads_prop_lists() {
        let got = names(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<d:propfind xmlns:d=\"DAV:\" \
             xmlns:oc=\"http://owncloud.org/ns\"><d:prop><d:getetag/><oc:id></oc:id>\
             <x:y xmlns:x=\"urn:x\"><z/></x:y><bare/></d:prop>M</d:propfind>\n",
        );
        let want = [
            ("DAV:", "getetag"),
            ("http://owncloud.org/ns", "id"),
            ("urn:x", "y"),
            ("", "bare"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(got, Some(want));
        let default_ns = names("<propfind xmlns=\"DAV:\"><prop><getetag/></prop></propfind>");
        assert_eq!(default_ns.map(|v| v.len()), Some(1));
        assert_eq!(
            names("<propfind xmlns=\"DAV:\"><prop/></propfind>"),
            Some(vec![])
        );
        let spaced = "<d:propfind  xmlns:d = 'DAV:' ><d:prop ><d:getetag /></d:prop ></d:propfind>";
        assert_eq!(names(spaced).map(|v| v.len()), Some(1));
    }

    #[test]
    fn declines_everything_else() {
        for body in [
            "",
            " ",
            "<d:propfind xmlns:d=\"DAV:\"><d:allprop/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><d:propname/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"></d:propfind>",
            "<propfind><prop><getetag/></prop></propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop><d:getetag/></d:prop>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop><d:getetag></d:prop></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop><x:y/></d:prop></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop/></d:propfind><d:propfind xmlns:d=\"DAV:\"/>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop>&amp;</d:prop></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><!-- c --><d:prop/></d:propfind>",
            "<!DOCTYPE x><d:propfind xmlns:d=\"DAV:\"><d:prop/></d:propfind>",
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><d:propfind xmlns:d=\"DAV:\"><d:prop/></d:propfind>",
            " <?xml version=\"1.0\"?><d:propfind xmlns:d=\"DAV:\"><d:prop/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\" a=\"1\" a=\"2\"><d:prop/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop><1a/></d:prop></d:propfind>",
            "x<d:propfind xmlns:d=\"DAV:\"><d:prop/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop a=b/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop a=\"<\"/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop/ ></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop></d:Prop></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop><![CDATA[x]]></d:prop></d:propfind>",
            "<?xml version=\"1.1\"?><d:propfind xmlns:d=\"DAV:\"><d:prop/></d:propfind>",
        ] {
            assert!(parse(body.as_bytes()).is_err(), "{body:?}");
        }
        assert!(parse(b"<d:propfind xmlns:d=\"DAV:\"><d:prop>\xff</d:prop></d:propfind>").is_err());
    }
}
