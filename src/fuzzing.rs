//! Entry points for fuzzing every parser a client or the upstream can feed.
//!
//! Each function takes raw bytes, hands them to the gateway's real parser
//! (nothing here re-implements one) and checks what must hold whatever the
//! input: it returns (no panic, no endless loop), uses memory bounded by its
//! input, and keeps the property written on the function. A broken property
//! panics, which is what both runners report: the libFuzzer targets in
//! `fuzz/` (one per function, same name) and the short run of
//! `tests/integration/fuzz_smoke.rs` in the normal test suite. Inputs made of two parts
//! are split at the first newline; `fuzz/seeds/<function>/` holds examples.
//!
//! Not part of the gateway's interface: nothing else calls it.

use std::collections::HashSet;
use std::io::BufReader;
use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use percent_encoding::{percent_decode, utf8_percent_encode, NON_ALPHANUMERIC};

use crate::backend::webdav::multistatus::{parse_multistatus, read_multistatus};
use crate::config::Config;
use crate::crypto::{ChunkId, ChunkIdKey, MasterKey, ObjectKind, ObjectName, Sealer, HEADER_LEN};
use crate::http::below_prefix;
use crate::http::fragment::{self, FragmentWatch, Fragments};
use crate::meta::locks::{blocking, LockRecord, Submitted};
use crate::meta::sessions::{order_of, part_key, valid_name};
use crate::meta::split_path;
use crate::meta::{valid_user_name, UserRecord};
use crate::owncloud::checksum;
use crate::owncloud::uploads::{
    if_header_etags, if_header_lock_tokens, names_below, parse_target, unquote, Target,
};
use crate::owncloud::{format_of, ocs as ocs_reply, Format};
use crate::webdav::propfind::props;
use crate::webdav::win32;
use crate::wire::body::{check_xml, XmlLimits};
use crate::wire::ranges::{merge, Merged};
use crate::wire::routes::{self, Route, FILES_PREFIX, WEBDAV_PREFIX};

/// The user every two-part input that needs one acts as.
const USER: &str = "alice";
/// The folder [`if_header`] holds a lock on, and the placeholder an `If`
/// header may use for that lock's (random) token.
const LOCKED: &str = "locked";
const TOKEN_PLACEHOLDER: &str = "TOKEN";

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `first line`, `rest` (the rest may be empty).
fn two_parts(data: &[u8]) -> Option<(&str, &str)> {
    let t = text(data)?;
    Some(t.split_once('\n').unwrap_or((t, "")))
}

/// What every name a path parser hands the namespace must be.
fn assert_names(names: &[String]) {
    for n in names {
        assert!(
            !n.is_empty() && n != "." && n != ".." && !n.contains(['/', '\0']) && n.len() <= 255,
            "a path parser produced the name {n:?}"
        );
    }
}

fn xml_limits() -> XmlLimits {
    XmlLimits::from(&Config::default().limits)
}

/// An XML request body (PROPFIND, PROPPATCH, LOCK, ...) as the front checks
/// it with the default `[limits]`. Property: a body the check accepts is
/// parsed by the WebDAV layer's own (recursive) tree builder without
/// overflowing, to a tree no deeper than the depth limit.
pub fn xml_body(data: &[u8]) {
    let limits = xml_limits();
    let plain = check_xml(data, &limits, false).is_ok();
    let lock = check_xml(data, &limits, true).is_ok();
    assert!(
        plain || !lock,
        "a body accepted as a LOCK is refused otherwise"
    );
    if !plain {
        return;
    }
    if let Ok(root) = xmltree::Element::parse(data) {
        let depth = tree_depth(&root);
        assert!(
            depth <= limits.max_depth,
            "accepted body parses to depth {depth}"
        );
    }
}

/// Depth of an element tree, without recursion.
fn tree_depth(root: &xmltree::Element) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(root, 1usize)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        for child in &e.children {
            if let xmltree::XMLNode::Element(c) = child {
                stack.push((c, d + 1));
            }
        }
    }
    deepest
}

/// A PROPFIND body as the front's fast listing reads it. Property: a body
/// it accepts asks for exactly the properties the WebDAV layer would read
/// from it (root `DAV:propfind`, first `prop`/`propname`/`allprop` child a
/// `prop`, its child elements by namespace and name), so answering it here
/// never changes the reply.
pub fn propfind_body(data: &[u8]) {
    let Ok(list) = props::parse(data) else {
        return;
    };
    for p in &list {
        let _ = props::classify(p);
    }
    let _ = props::root_namespaces(&list);
    let Ok(root) = xmltree::Element::parse(data) else {
        panic!("the fast listing accepts a body the WebDAV layer cannot parse");
    };
    assert!(root.name == "propfind" && root.namespace.as_deref() == Some(props::NS_DAV));
    let chosen = root.children.iter().find_map(|c| match c {
        xmltree::XMLNode::Element(e)
            if matches!(e.name.as_str(), "prop" | "propname" | "allprop") =>
        {
            Some(e)
        }
        _ => None,
    });
    let Some(prop) = chosen.filter(|e| e.name == "prop") else {
        panic!("the fast listing accepts a body without a prop list");
    };
    let theirs: Vec<(Option<&str>, &str)> = prop
        .children
        .iter()
        .filter_map(|c| match c {
            xmltree::XMLNode::Element(e) => Some((e.namespace.as_deref(), e.name.as_str())),
            _ => None,
        })
        .collect();
    let ours: Vec<(Option<&str>, &str)> = list
        .iter()
        .map(|p| (p.namespace.as_deref(), p.name.as_str()))
        .collect();
    assert_eq!(ours, theirs, "the two parsers read different properties");
}

/// A raw request path (still percent-encoded), as routed and split into
/// names for the user's tree or the chunked-upload folders; also the
/// namespace's `split_path` on the decoded path. Property: every name
/// produced is one a file may have (no `.`, `..`, `/`, NUL, empty, or
/// over-long name).
pub fn request_path(data: &[u8]) {
    let Some(path) = text(data) else {
        return;
    };
    match routes::route(path) {
        Route::Dav { prefix, .. } => {
            assert!(path.starts_with(&prefix), "prefix {prefix:?} of {path:?}");
            let rest = below_prefix(path, &prefix);
            if let Some(names) = rest.and_then(names_below) {
                assert_names(&names);
            }
        }
        Route::Uploads { rest, .. } => upload_target(&rest),
        _ => {}
    }
    let decoded: Vec<u8> = percent_decode(data).collect();
    if let Ok(names) = split_path(&decoded) {
        assert_names(&names);
    }
}

/// A `Destination` header: `user\nvalue` (a user name the index accepts;
/// others are skipped). Property: one resolved to the
/// user's own tree names valid files, and rewritten onto either URL form of
/// that tree (as the front does) routes back into that tree.
pub fn destination(data: &[u8]) {
    let Some((user, value)) = two_parts(data).filter(|(u, _)| valid_user_name(u)) else {
        return;
    };
    let routes::Destination::Own(rest) = routes::destination(value, user) else {
        return;
    };
    if let Some(names) = names_below(&rest) {
        assert_names(&names);
    }
    let files = format!(
        "{FILES_PREFIX}{}",
        utf8_percent_encode(user, NON_ALPHANUMERIC)
    );
    for prefix in [files.as_str(), WEBDAV_PREFIX] {
        let rewritten = format!("{prefix}{rest}");
        match routes::route(&rewritten) {
            Route::Dav { user: u, prefix: p } => {
                assert!(u.is_none_or(|u| u == user), "{rewritten:?} is another tree");
                assert_eq!(p, prefix, "{rewritten:?}");
            }
            other => panic!("{rewritten:?} routes to {other:?}"),
        }
    }
}

/// The `If` header the chunked-upload MOVE reads: `path\nvalue`, where
/// `path` is a raw destination below the user's files root and `value` may
/// write the token of the lock on `/locked` as `TOKEN`. Property: a
/// destination at or below the locked folder is reported locked unless the
/// header submits the lock's token.
pub fn if_header(data: &[u8]) {
    let Some((path, value)) = two_parts(data) else {
        return;
    };
    for etag in if_header_etags(value) {
        assert!(!etag.contains("\"]"), "etag {etag:?}");
    }
    let _ = unquote(value);
    let token = uuid::Uuid::new_v4().urn().to_string();
    let lock = LockRecord {
        token: token.clone(),
        user: 1,
        path: vec![LOCKED.to_string()],
        deep: true,
        shared: false,
        principal: Some(USER.into()),
        owner_xml: None,
        timeout_secs: 60,
        deadline_ms: i64::MAX,
    };
    let value = value.replace(TOKEN_PLACEHOLDER, &token);
    let tokens = if_header_lock_tokens(&value);
    let Some(names) = names_below(path) else {
        return;
    };
    // What the chunked-upload MOVE's lock check (`webdav/locks.rs`,
    // `PathLocks`) decides over the locks the metadata finds covering it.
    let covering: Vec<LockRecord> = Some(lock)
        .into_iter()
        .filter(|l| l.covers(&names))
        .collect();
    let submitted = Submitted {
        principal: Some(USER),
        ignore_principal: false,
        tokens: &tokens,
    };
    let locked = blocking(&covering, &[], &submitted).is_some();
    if names.first().is_some_and(|n| n == LOCKED) && !locked {
        assert!(tokens.contains(&token), "{path:?} unlocked by {value:?}");
    }
}

/// One part of a `Range` header: `(first, last)`, `last` None for `N-`;
/// a suffix `-N` is `(None, Some(N))`.
type RangePart = (Option<u64>, Option<u64>);

/// `bytes=` parts as RFC 9110 writes them (`None` if any part is not one).
fn range_parts(value: &str) -> Option<Vec<RangePart>> {
    let list = value.trim().strip_prefix("bytes=")?;
    let mut out = Vec::new();
    for spec in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = spec.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        let first = if a.is_empty() {
            None
        } else {
            Some(a.parse().ok()?)
        };
        let last = if b.is_empty() {
            None
        } else {
            Some(b.parse().ok()?)
        };
        match (first, last) {
            (None, None) => return None,
            (Some(f), Some(l)) if l < f => return None,
            _ => out.push((first, last)),
        }
    }
    Some(out)
}

/// A `Range` header, merged with the default cap on parts. Properties: a
/// rewritten header is valid, its spans sorted, apart (neither overlapping
/// nor adjacent) and followed by at most one suffix part; it has fewer
/// parts than the request and no more than the cap, and covers exactly the
/// bytes the request's parts cover. A refusal counts more parts than the
/// cap and no more than the request has.
pub fn range_header(data: &[u8]) {
    let Some(value) = text(data) else {
        return;
    };
    let max = Config::default().limits.range_parts;
    let asked = range_parts(value);
    match merge(value, max) {
        Merged::Unchanged => {
            if let Some(parts) = asked {
                assert!(parts.len() <= max, "{} parts left unchanged", parts.len());
            }
        }
        Merged::TooMany(n) => {
            let parts = asked.unwrap_or_else(|| panic!("refused a header it cannot read"));
            assert!(n > max && n <= parts.len(), "{n} parts of {}", parts.len());
        }
        Merged::Rewritten(out) => {
            let asked = asked.unwrap_or_else(|| panic!("rewrote a header it cannot read"));
            let got = range_parts(&out).unwrap_or_else(|| panic!("wrote {out:?}"));
            assert!(got.len() < asked.len() && got.len() <= max, "{out:?}");
            check_merged(&asked, &got, &out);
        }
    }
}

fn check_merged(asked: &[RangePart], got: &[RangePart], out: &str) {
    let spans: Vec<(u64, Option<u64>)> = got.iter().filter_map(|&(f, l)| Some((f?, l))).collect();
    let suffixes: Vec<u64> = got
        .iter()
        .filter_map(|&(f, l)| f.is_none().then_some(l).flatten())
        .collect();
    assert!(suffixes.len() <= 1, "{out:?}");
    if let Some(pos) = got.iter().position(|p| p.0.is_none()) {
        assert_eq!(pos, got.len() - 1, "suffix not last in {out:?}");
    }
    for w in spans.windows(2) {
        let Some(prev_last) = w[0].1 else {
            panic!("an open span before another in {out:?}");
        };
        assert!(w[1].0 > prev_last.saturating_add(1), "{out:?} not apart");
    }
    let asked_suffix = asked
        .iter()
        .filter_map(|&(f, l)| f.is_none().then_some(l).flatten())
        .max();
    assert_eq!(suffixes.first().copied(), asked_suffix, "{out:?}");
    let contains = |(f, l): (u64, Option<u64>), (g, m): (u64, Option<u64>)| {
        f <= g && (l.is_none() || m.is_some_and(|m| Some(m) <= l))
    };
    let asked_spans: Vec<(u64, Option<u64>)> =
        asked.iter().filter_map(|&(f, l)| Some((f?, l))).collect();
    for &a in &asked_spans {
        assert!(
            spans.iter().any(|&s| contains(s, a)),
            "{a:?} lost in {out:?}"
        );
    }
    for &(f, l) in &spans {
        assert!(
            asked_spans.iter().any(|a| a.0 == f),
            "{out:?} invents a start"
        );
        assert!(
            asked_spans.iter().any(|a| a.1 == l),
            "{out:?} invents an end"
        );
    }
}

fn ocs_user() -> UserRecord {
    UserRecord {
        id: 1,
        name: USER.into(),
        password_hash: String::new(),
        admin: false,
        quota: Some(1 << 30),
        used: 1 << 20,
        root: 1,
        created: 0,
        disabled: false,
    }
}

/// An OCS request target (`/ocs/v1.php/cloud/user?format=json`). Property:
/// the reply is 200 or 404, and its body is JSON or well-formed XML, as the
/// query asks.
pub fn ocs(data: &[u8]) {
    let Some(target) = text(data) else {
        return;
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let format = format_of(query);
    let Route::Ocs { v2, rest } = routes::route(path) else {
        return;
    };
    let res = ocs_reply(
        v2,
        &rest,
        query,
        &ocs_user(),
        &crate::files::refused::RefusedNames::default(),
    );
    assert!(
        matches!(res.status().as_u16(), 200 | 404),
        "{}",
        res.status()
    );
    let Some(Ok(body)) = res.into_body().collect().now_or_never() else {
        panic!("the OCS reply body is not ready at once");
    };
    let body: Bytes = body.to_bytes();
    match format {
        Format::Json => {
            assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
        }
        Format::Xml => {
            let parsed = xmltree::Element::parse(&body[..]);
            assert!(parsed.is_ok(), "{}", String::from_utf8_lossy(&body));
        }
    }
}

fn upload_target(rest: &str) {
    let Some(target) = parse_target(rest) else {
        return;
    };
    let names = match target {
        Target::Root => vec![],
        Target::Transfer(t) => vec![t],
        Target::Part(t, p) => vec![t, p],
    };
    for n in &names {
        assert!(valid_name(n), "{n:?}");
        assert_names(std::slice::from_ref(n));
    }
}

/// Chunked-upload names: the first line is a path below
/// `/remote.php/dav/uploads/<user>` (`/<transfer>/<part>`); every other line
/// is `name size`, a part of one transfer. Properties: the names the path
/// yields are valid; a part's position is its leading digits; parts are
/// assembled only as consecutive byte offsets or consecutive numbers.
pub fn upload_names(data: &[u8]) {
    let Some((path, parts)) = two_parts(data) else {
        return;
    };
    upload_target(path);
    let mut list = Vec::new();
    for line in parts.lines() {
        let (name, size) = line.rsplit_once(' ').unwrap_or((line, "0"));
        if let Some(key) = part_key(name) {
            let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
            assert_eq!(digits.parse::<u128>().ok(), Some(key), "{name:?}");
        }
        list.push((name.to_string(), size.parse::<u64>().unwrap_or(0)));
    }
    let Ok(order) = order_of(&list) else {
        return;
    };
    assert_eq!(order.len(), list.len());
    let unique: HashSet<&String> = order.iter().collect();
    assert_eq!(unique.len(), order.len(), "a part twice");
    let sizes: std::collections::HashMap<&str, u64> =
        list.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let keys: Vec<u128> = order.iter().filter_map(|n| part_key(n)).collect();
    assert_eq!(keys.len(), order.len(), "a part without a position");
    let first = keys.first().copied().unwrap_or(0);
    let numbered = first <= 1
        && keys
            .iter()
            .enumerate()
            .all(|(i, k)| *k == first + i as u128);
    let mut offset = 0u128;
    let mut by_offset = true;
    for (name, key) in order.iter().zip(&keys) {
        by_offset &= *key == offset;
        offset += u128::from(sizes.get(name.as_str()).copied().unwrap_or(0));
    }
    assert!(numbered || by_offset, "{order:?} accepted");
}

/// A request's `OC-Checksum` header. Property: what it announces are
/// upper-case types with lower-case hex digests of at most 128 digits.
pub fn checksum_header(data: &[u8]) {
    let Some(value) = text(data) else {
        return;
    };
    if let Ok(list) = checksum::parse_header(value) {
        for a in list {
            assert!(!a.kind.is_empty() && a.kind == a.kind.to_ascii_uppercase());
            assert!(!a.hex.is_empty() && a.hex.len() <= 128);
            assert!(a
                .hex
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        }
    }
}

/// The sealer of the fuzzing runs (a fixed key) and the chunk id and object
/// name objects are opened as.
fn sealer() -> (Sealer, ChunkId, ObjectName) {
    let keys = Arc::new(MasterKey::from_bytes([0x5a; 32]).derive());
    let sealer = Sealer::new(keys, 3, Config::default().chunking.max_size);
    let id = ChunkId::of(sealer.keys(), b"fuzz");
    let name = ObjectName::for_chunk(sealer.keys(), &id);
    (sealer, id, name)
}

/// The chunk-id keys objects are opened with: one user's and the shared one
/// (as a file written before `dedup.scope` changed is read).
fn id_keys(s: &Sealer) -> [ChunkIdKey; 2] {
    [
        ChunkIdKey::of_user(s.keys(), 1),
        ChunkIdKey::shared(s.keys()),
    ]
}

/// What the object opener must make of `object`: the plaintext only if
/// sealing that plaintext gives exactly these bytes, an error otherwise.
fn assert_opens_only_sealed(s: &Sealer, id: &ChunkId, name: &ObjectName, object: &[u8]) {
    for kind in [ObjectKind::Chunk, ObjectKind::Metadata] {
        let opened = s.open(kind, id, name, Bytes::copy_from_slice(object), &id_keys(s));
        if let Ok(plain) = opened {
            let again = s.seal(kind, id, name, &plain).ok();
            assert!(
                again.as_deref() == Some(object),
                "opened bytes that are not a sealed object"
            );
        }
    }
}

/// Object bytes from the backend, opened as the chunk `fuzz` (and as
/// metadata). Property: only an object the gateway sealed opens, to the
/// plaintext it sealed.
pub fn object(data: &[u8]) {
    let (s, id, name) = sealer();
    assert_opens_only_sealed(&s, &id, &name, data);
}

/// A plaintext, sealed and then damaged. Property: the intact object opens
/// to the plaintext; with any bit of a byte flipped, one byte cut off or
/// added, as another kind or under another id, it does not open.
pub fn object_tamper(data: &[u8]) {
    let (s, _, _) = sealer();
    let id = ChunkId::of(s.keys(), data);
    let name = ObjectName::for_chunk(s.keys(), &id);
    let Ok(sealed) = s.seal(ObjectKind::Chunk, &id, &name, data) else {
        panic!("sealing failed");
    };
    let keys = id_keys(&s);
    let open = |bytes: &[u8]| {
        s.open(
            ObjectKind::Chunk,
            &id,
            &name,
            Bytes::copy_from_slice(bytes),
            &keys,
        )
    };
    assert_eq!(open(&sealed).ok().as_deref(), Some(data));
    let bit = 1u8 << (data.len() % 8);
    let stride = (sealed.len() / 64).max(1);
    for i in (0..sealed.len()).step_by(stride).chain(0..HEADER_LEN) {
        let mut bad = sealed.clone();
        bad[i] ^= bit;
        assert!(open(&bad).is_err(), "byte {i} flipped still opens");
    }
    assert!(
        open(&sealed[..sealed.len() - 1]).is_err(),
        "cut object opens"
    );
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(open(&longer).is_err(), "extended object opens");
    let as_meta = s.open(
        ObjectKind::Metadata,
        &id,
        &name,
        Bytes::from(sealed.clone()),
        &keys,
    );
    assert!(as_meta.is_err(), "a chunk opens as metadata");
    let other = ChunkId::of(s.keys(), b"another chunk");
    let elsewhere = s.open(ObjectKind::Chunk, &other, &name, Bytes::from(sealed), &keys);
    assert!(elsewhere.is_err(), "an object opens under another id");
}

/// Seals `plain` as the chunk [`object`] opens (for making seeds).
pub fn sealed_sample(plain: &[u8]) -> Vec<u8> {
    let (s, id, name) = sealer();
    s.seal(ObjectKind::Chunk, &id, &name, plain)
        .unwrap_or_default()
}

/// A PROPFIND answer from the upstream (which may lie). Property: parsed
/// in memory and streamed through a tiny read buffer, it gives the same
/// entries and the same outcome.
pub fn multistatus(data: &[u8]) {
    let whole = parse_multistatus(data);
    let mut streamed = Vec::new();
    let outcome = read_multistatus(BufReader::with_capacity(7, data), |e| {
        streamed.push(e);
        ControlFlow::Continue(())
    });
    match (whole, outcome) {
        (Ok(entries), Ok(())) => assert_eq!(entries, streamed),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("in memory {:?}, streamed {:?}", a.map(|v| v.len()), b),
    }
    for e in &streamed {
        let _ = e.name();
    }
}

/// Sealed metadata as a restore decodes it once it authenticated: the
/// first byte picks a chain segment (0), a snapshot head (1) or a snapshot
/// dump fed in pieces of the second byte's size (2). Properties: decoding
/// never panics, a decoded segment or head encodes back to the same bytes
/// (one meaning per input), and a dump decodes to the same rows however
/// it is split.
pub fn metadata_objects(data: &[u8]) {
    use crate::meta::journal::{ChainCheck, Segment};
    use crate::meta::snapshot::{DumpDecoder, SnapshotHead};
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => {
            if let Ok(segment) = Segment::decode(rest) {
                assert_eq!(segment.encode(), rest, "a segment with two encodings");
                let _ = ChainCheck::default().accept(rest);
            }
        }
        1 => {
            if let Ok(head) = SnapshotHead::decode(rest) {
                assert_eq!(head.encode(), rest, "a head with two encodings");
            }
        }
        _ => {
            let Some((&step, dump)) = rest.split_first() else {
                return;
            };
            let mut whole = DumpDecoder::default();
            let once = whole
                .push(dump)
                .and_then(|rows| Ok((rows, whole.finish()?)));
            let mut split = DumpDecoder::default();
            let mut rows = Vec::new();
            let mut pieces = Ok(());
            for piece in dump.chunks(usize::from(step.max(1))) {
                match split.push(piece) {
                    Ok(more) => rows.extend(more),
                    Err(e) => {
                        pieces = Err(e);
                        break;
                    }
                }
            }
            let in_pieces = pieces.and_then(|()| Ok((rows, split.finish()?)));
            assert_eq!(
                once.is_ok(),
                in_pieces.is_ok(),
                "the split changed the verdict"
            );
            if let (Ok(a), Ok(b)) = (once, in_pieces) {
                assert_eq!(a, b);
            }
        }
    }
}

/// A PROPPATCH body, as `webdav/win32.rs` reads it (after the front's
/// check, like every body) to take over one that sets only Windows
/// properties. Property: each value it takes is stored as XML that
/// dav-server's parser reads back as that property, in the Windows
/// namespace, with exactly that text.
pub fn win32_proppatch(data: &[u8]) {
    if check_xml(data, &xml_limits(), false).is_err() {
        return;
    }
    let Some(sets) = win32::parse(data) else {
        return;
    };
    for (name, value) in sets {
        let stored = win32::stored(&name, &value);
        let xml = stored.xml.unwrap_or_default();
        let Ok(back) = xmltree::Element::parse(&xml[..]) else {
            panic!("a stored Windows property does not parse: {xml:?}");
        };
        assert_eq!(back.name, name);
        assert_eq!(back.namespace.as_deref(), Some(win32::NS_MS));
        let text = back.get_text().map(|t| t.into_owned()).unwrap_or_default();
        assert_eq!(
            text, value,
            "a stored Windows property reads back otherwise"
        );
    }
}

/// The bytes of a connection, as `http/fragment.rs` watches them for
/// request lines with a `#fragment`; the first byte says where to split
/// them into two reads. Properties: what is remembered stays bounded, and
/// every such line noted when the bytes come in one read is noted when
/// they come in two.
pub fn request_lines(data: &[u8]) {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let at = usize::from(split) * bytes.len() / 256;
    let whole = Fragments::default();
    FragmentWatch::new((), whole.clone()).scan(bytes);
    let parts = Fragments::default();
    let mut watch = FragmentWatch::new((), parts.clone());
    watch.scan(&bytes[..at]);
    watch.scan(&bytes[at..]);
    assert!(watch.held() <= fragment::MAX_LINE);
    let (whole, parts) = (whole.noted(), parts.noted());
    assert!(whole.len() <= fragment::MAX_NOTED && parts.len() <= fragment::MAX_NOTED);
    if parts.len() < fragment::MAX_NOTED {
        for k in &whole {
            assert!(
                parts.contains(k),
                "a request line was missed when split at {at}"
            );
        }
    }
}

/// A fuzzing entry point.
pub type EntryPoint = fn(&[u8]);

/// Every entry point by name (the names of the libFuzzer targets and of the
/// seed folders).
/// Packs. The first byte picks the case: (even) `data` read as a whole
/// pack object, which must be refused or listed without a panic; (odd)
/// the rest cut into chunks, packed, then one byte of one entry flipped.
/// Property: the trailer lists exactly the entries; every entry opens to
/// its chunk by its range, except the damaged one, which does not.
pub fn pack(data: &[u8]) {
    use crate::crypto::PackBuilder;
    let (s, _, _) = sealer();
    let pack = [7u8; 32];
    let name = ObjectName::for_pack(s.keys(), &pack);
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(entries) = s.read_trailer(&pack, &name, rest) {
            for e in entries {
                assert!((e.offset as usize + e.len as usize) <= rest.len());
            }
        }
        return;
    }
    let keys = id_keys(&s);
    let pieces: Vec<&[u8]> = rest.chunks(usize::from(mode).max(1)).take(64).collect();
    let mut builder = PackBuilder::new(&s, pack, name.clone());
    for p in &pieces {
        let id = ChunkId::under(&keys[1], p);
        let Ok(sealed) = s.seal_packed(&id, &name, p) else {
            panic!("sealing failed");
        };
        builder.push(id, &sealed);
    }
    let Ok((mut bytes, entries)) = builder.finish(&s) else {
        panic!("finishing a pack failed");
    };
    assert_eq!(
        s.read_trailer(&pack, &name, &bytes).ok().as_ref(),
        Some(&entries)
    );
    let victim = usize::from(mode) % entries.len().max(1);
    if let Some(e) = entries.get(victim) {
        bytes[e.offset as usize + (e.len as usize / 2)] ^= 1;
    }
    for (i, (e, p)) in entries.iter().zip(&pieces).enumerate() {
        let range = Bytes::copy_from_slice(&bytes[e.offset as usize..(e.offset + e.len) as usize]);
        let opened = s.open_packed(&e.id, &name, range, &keys);
        if i == victim {
            assert!(opened.is_err(), "a damaged entry opens");
        } else {
            assert_eq!(opened.ok().as_deref(), Some(*p), "entry {i}");
        }
    }
}

pub const TARGETS: &[(&str, EntryPoint)] = &[
    ("xml_body", xml_body),
    ("propfind_body", propfind_body),
    ("request_path", request_path),
    ("destination", destination),
    ("if_header", if_header),
    ("range_header", range_header),
    ("ocs", ocs),
    ("upload_names", upload_names),
    ("checksum_header", checksum_header),
    ("object", object),
    ("object_tamper", object_tamper),
    ("multistatus", multistatus),
    ("metadata_objects", metadata_objects),
    ("win32_proppatch", win32_proppatch),
    ("request_lines", request_lines),
    ("pack", pack),
];
