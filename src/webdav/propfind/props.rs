//! Which properties a PROPFIND body asks for. Only a plain, well-formed
//! `<D:propfind><D:prop>…</D:prop></D:propfind>` is accepted; anything
//! unusual (another encoding, a DOCTYPE, comments, entities, names outside
//! plain ASCII, `allprop`, `propname`) is declined, so the WebDAV layer
//! answers it — and rejects malformed XML — exactly as it always did.

use quick_xml::events::{BytesDecl, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::Decline;
use crate::owncloud::props::{self, NS_NEXTCLOUD, NS_OWNCLOUD};

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
    /// Nothing answers it (no node has dead properties): listed as not
    /// found.
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
            "lockdiscovery" => return Err(Decline::Unsupported("a property of the lock system")),
            _ => Want::Absent,
        },
        Some(NS_MS) => return Err(Decline::Unsupported("a Windows property")),
        Some(ns @ (NS_OWNCLOUD | NS_NEXTCLOUD)) if props::is_synthesized(Some(ns), name) => {
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

/// Only `version="1.0"`, then optionally `encoding` (UTF-8) and
/// `standalone`, each after white space. The reader itself lets stray text
/// through (`<?xml version="1.0" <encoding="utf-8"?>`, found by fuzzing),
/// which the WebDAV layer refuses.
fn check_decl(d: &BytesDecl<'_>) -> Result<(), Decline> {
    let refused = || Decline::Body("an XML declaration other than 1.0 / UTF-8");
    let fields = decl_fields(d).ok_or_else(refused)?;
    let mut names = fields.iter().map(|(name, _)| *name);
    let in_order = names.next() == Some(&b"version"[..])
        && names.is_sorted_by_key(|n| match n {
            b"encoding" => 1,
            b"standalone" => 2,
            _ => 3,
        })
        && fields.iter().skip(1).all(|(n, _)| *n != b"version");
    let unique = (1..fields.len()).all(|i| fields[i - 1].0 != fields[i].0);
    let values_ok = fields.iter().all(|(name, value)| match *name {
        b"version" => *value == b"1.0",
        b"encoding" => value.eq_ignore_ascii_case(b"utf-8"),
        b"standalone" => matches!(*value, b"yes" | b"no"),
        _ => false,
    });
    if in_order && unique && values_ok {
        Ok(())
    } else {
        Err(refused())
    }
}

/// The `name="value"` fields of a declaration's content (`xml version=...`),
/// or `None` unless it is nothing but such fields, each after white space.
fn decl_fields(content: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let mut rest = content.strip_prefix(b"xml")?;
    let mut out = Vec::new();
    loop {
        let field = trim_xml_space(rest);
        if field.is_empty() {
            return Some(out);
        }
        if field.len() == rest.len() {
            return None;
        }
        let eq = field.iter().position(|&c| c == b'=')?;
        let name = &field[..field[..eq].iter().rposition(|c| !is_xml_space(*c))? + 1];
        let value = trim_xml_space(&field[eq + 1..]);
        let quote = *value.first().filter(|q| matches!(q, b'"' | b'\''))?;
        let end = value[1..].iter().position(|&c| c == quote)?;
        out.push((name, &value[1..1 + end]));
        rest = &value[2 + end..];
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
    // The `xml` and `xmlns` prefixes are reserved: an element may not use
    // them (found by fuzzing: `<xmlns:a/>`, which the WebDAV layer refuses).
    let reserved = matches!(e.name().prefix(), Some(p) if matches!(p.as_ref(), b"xml" | b"xmlns"));
    if !plain_name(e.name().as_ref()) || reserved {
        return Err(Decline::Body("an unusual element name"));
    }
    if !attributes_apart(e) {
        return Err(Decline::Body("attributes not separated by white space"));
    }
    for attr in e.attributes() {
        let attr = attr.map_err(|_| Decline::Body("a malformed attribute"))?;
        let value: &[u8] = attr.value.as_ref();
        // Tab, CR and LF in a value are read as spaces by XML parsers but
        // not by this reader: declined, so both always agree.
        let odd = value
            .iter()
            .any(|c| matches!(c, b'&' | b'<' | b'\t' | b'\r' | b'\n'))
            || !xml_chars(value);
        if !plain_name(attr.key.as_ref()) || odd || !plain_attribute_name(attr.key.as_ref(), value)
        {
            return Err(Decline::Body("an unusual attribute"));
        }
    }
    Ok(())
}

/// XML's white space: space, tab, CR, LF (not form feed, found by fuzzing).
fn is_xml_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim_xml_space(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|c| !is_xml_space(*c)).unwrap_or(s.len());
    &s[start..]
}

/// Unprefixed names and namespace declarations only: an attribute with any
/// other prefix needs that prefix declared, which this reader does not
/// check (found by fuzzing: `ymlns:nc="..."`); `xml` and `xmlns` cannot be
/// declared and a prefix cannot be undeclared.
fn plain_attribute_name(key: &[u8], value: &[u8]) -> bool {
    match key.iter().position(|&c| c == b':') {
        None => true,
        Some(i) => {
            let (prefix, declared) = (&key[..i], &key[i + 1..]);
            prefix == b"xmlns" && !matches!(declared, b"xml" | b"xmlns") && !value.is_empty()
        }
    }
}

/// Whether every attribute value in a tag is followed by white space or the
/// tag's end. The reader accepts `a="1"b="2"` (found by fuzzing); XML and
/// the WebDAV layer do not.
fn attributes_apart(tag: &[u8]) -> bool {
    let mut quote = None;
    let mut just_closed = false;
    for &c in tag {
        if just_closed && !is_xml_space(c) {
            return false;
        }
        just_closed = false;
        match quote {
            Some(q) if c == q => {
                quote = None;
                just_closed = true;
            }
            Some(_) => {}
            None if matches!(c, b'"' | b'\'') => quote = Some(c),
            None => {}
        }
    }
    true
}

fn check_text(t: &[u8], depth: usize) -> Result<(), Decline> {
    let blank = t.iter().all(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'));
    let plain = !t.contains(&b'&') && !t.windows(3).any(|w| w == b"]]>") && xml_chars(t);
    if (depth == 0 && !blank) || !plain {
        return Err(Decline::Body("unusual text"));
    }
    Ok(())
}

/// Only characters XML allows (XML 1.0, 2.2): no control character but
/// tab, CR and LF, no U+FFFE or U+FFFF. The reader lets them through in
/// attribute values (found by fuzzing), which the WebDAV layer refuses.
fn xml_chars(t: &[u8]) -> bool {
    std::str::from_utf8(t).is_ok_and(|s| {
        s.chars().all(|c| {
            matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
        })
    })
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
        let decl = "<?xml version = '1.0'\n standalone=\"yes\" ?><d:propfind xmlns:d=\"DAV:\"><d:prop/></d:propfind>";
        assert_eq!(names(decl), Some(vec![]));
        let attrs = "<d:propfind xmlns:d='DAV:' xmlns:x=\"urn:x\"><d:prop a='1'/></d:propfind>";
        assert_eq!(names(attrs), Some(vec![]));
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
            // Found by fuzzing: the WebDAV layer refuses these declarations.
            "<?xml version=\"1.0\" <encoding=\"utf-8\"?><d:propfind xmlns:d=\"DAV:\"><d:prop/></d:propfind>",
            "<?xml version=\"1.0\"encoding=\"utf-8\"?><d:propfind xmlns:d=\"DAV:\"><d:prop/></d:propfind>",
            "<?xml encoding=\"utf-8\" version=\"1.0\"?><d:propfind xmlns:d=\"DAV:\"><d:prop/></d:propfind>",
            "<?xml version=\"1.0\" standalone=\"maybe\"?><d:propfind xmlns:d=\"DAV:\"><d:prop/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\" xmlns:oc=\"http\u{1a}//owncloud.org/ns\"><d:prop/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop a=\"\u{1}\"/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\" xmlns:x=\"urn:\nx\"><d:prop><x:a/></d:prop></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"xmlns:x=\"urn:x\"><d:prop/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\" ymlns:x=\"urn:x\"><d:prop/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\" xmlns:x=\"\"><d:prop/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\" xmlns:xmlns=\"urn:x\"><d:prop/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop><xmlns:a/></d:prop></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop><xml:a/></d:prop></d:propfind>",
            "<?xml version=\"1.0\" encoding=\"utf-8\"\u{c}?><d:propfind xmlns:d=\"DAV:\"><d:prop/></d:propfind>",
            "<?xml version=\"1.0\"\u{c}encoding=\"utf-8\"?><d:propfind xmlns:d=\"DAV:\"><d:prop/></d:propfind>",
            "<d:propfind xmlns:d=\"DAV:\"><d:prop>\u{fffe}</d:prop></d:propfind>",
        ] {
            assert!(parse(body.as_bytes()).is_err(), "{body:?}");
        }
        assert!(parse(b"<d:propfind xmlns:d=\"DAV:\"><d:prop>\xff</d:prop></d:propfind>").is_err());
    }
}
