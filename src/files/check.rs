//! `dedupdav check`: is the installation intact? Two phases.
//!
//! 1. The metadata agrees with itself: one engine operation
//!    ([`Meta::verify`]) walks a consistent snapshot (reference counts,
//!    dirents, usage, counters, manifest sizes).
//! 2. The backend holds what the metadata names: a cursor over every chunk
//!    record ([`Meta::chunks_page`], pages, never one long read) asks the
//!    backend for each object's size; with `--read-data` a random share
//!    (or all) is fetched, authenticated and re-hashed instead.
//!
//! Both phases go through the metadata interface only, so an engine that
//! allows a second reader (or an admin API, issue 11) can run the same
//! check while the gateway serves. Each finding comes with what it means.

use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use crate::crypto::{ChunkId, ChunkIdKey};
use crate::meta::{ChunkRecord, Consistency, Inconsistency, IndexError, Meta};
use crate::store::{ContentStore, ObjectVerdict};

/// Chunk records read per page of the object phase.
const PAGE: usize = 500;
/// Backend requests in flight during the object phase.
const IN_FLIGHT: usize = 8;
/// The most object findings listed; the rest are counted.
const MAX_OBJECT_FINDINGS: usize = 1_000;

/// Errors that stop a check before it has an answer.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("--read-data takes a share between 0 and 100 percent, not {0}")]
    Share(f64),
}

/// What to check besides the metadata.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckOptions {
    /// The share of objects (percent) to fetch and open; `None`: only ask
    /// the backend for their sizes.
    pub read_percent: Option<f64>,
}

/// What the object phase found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ObjectsChecked {
    /// Chunk records whose object was looked at.
    pub checked: u64,
    /// Of those, objects fetched, opened and re-hashed.
    pub read: u64,
    pub bytes_read: u64,
    pub findings: Vec<ObjectFinding>,
    pub findings_not_listed: u64,
}

/// One object that is not what its chunk record says.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ObjectFinding {
    Missing {
        chunk: String,
        object: String,
        refs: u64,
    },
    WrongSize {
        chunk: String,
        object: String,
        refs: u64,
        expected: u64,
        found: u64,
    },
    Corrupt {
        chunk: String,
        object: String,
        refs: u64,
        cause: String,
    },
    Unanswered {
        chunk: String,
        object: String,
        cause: String,
    },
}

/// The whole answer of a check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub clean: bool,
    pub index: Consistency,
    pub objects: ObjectsChecked,
    /// What the background scrub last found (it reads every object, see
    /// `jobs/scrub.rs`); a finding here makes the check unclean too.
    pub scrub: ScrubRecord,
}

/// The scrub's own record, as the metadata keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct ScrubRecord {
    /// Unix time (s) the last complete pass ended; 0 = never.
    pub last_pass_finished: u64,
    /// Objects the last complete pass checked.
    pub last_pass_checked: u64,
    /// Objects it found missing or corrupt and has not seen whole since,
    /// at most [`MAX_SCRUB_FINDINGS`].
    pub findings: Vec<ScrubNote>,
}

/// One object the scrub found missing or corrupt.
#[derive(Debug, Clone, Serialize)]
pub struct ScrubNote {
    pub chunk: String,
    pub object: String,
    pub problem: String,
    /// Unix time (s) it was (last) found.
    pub found: u64,
    pub detail: String,
}

/// The most scrub findings a report lists.
const MAX_SCRUB_FINDINGS: usize = 100;

/// Runs both phases; `progress` hears how many chunks the object phase
/// has looked at so far (of `index.chunks`, known after phase 1 via
/// `on_index`).
pub async fn check(
    meta: &Meta,
    store: &Arc<ContentStore>,
    options: CheckOptions,
    on_index: impl FnOnce(&Consistency),
    progress: impl Fn(u64),
) -> Result<CheckReport, CheckError> {
    if let Some(p) = options.read_percent {
        if !(p > 0.0 && p <= 100.0) {
            return Err(CheckError::Share(p));
        }
    }
    let index = meta.verify().await?;
    on_index(&index);
    let objects = check_objects(meta, store, options, progress).await?;
    let scrub = scrub_record(meta, store).await?;
    let clean = index.is_clean()
        && objects.findings.is_empty()
        && objects.findings_not_listed == 0
        && scrub.findings.is_empty();
    Ok(CheckReport {
        clean,
        index,
        objects,
        scrub,
    })
}

/// What the scrub has recorded.
async fn scrub_record(meta: &Meta, store: &ContentStore) -> Result<ScrubRecord, CheckError> {
    let state = meta.scrub_state().await?;
    let findings = meta
        .scrub_findings(MAX_SCRUB_FINDINGS)
        .await?
        .into_iter()
        .map(|f| ScrubNote {
            chunk: hex::encode(f.id),
            object: store.object_name(&ChunkId(f.id)).to_string(),
            problem: format!("{:?}", f.problem).to_lowercase(),
            found: f.found,
            detail: f.detail,
        })
        .collect();
    Ok(ScrubRecord {
        last_pass_finished: state.last_pass_finished,
        last_pass_checked: state.last_pass_checked,
        findings,
    })
}

/// The object phase: every chunk record, page by page.
async fn check_objects(
    meta: &Meta,
    store: &Arc<ContentStore>,
    options: CheckOptions,
    progress: impl Fn(u64),
) -> Result<ObjectsChecked, CheckError> {
    let users: Vec<u64> = meta.users().await?.iter().map(|u| u.id).collect();
    let keys = store.keys_of_every_scope(&users);
    let mut out = ObjectsChecked::default();
    let mut after = None;
    loop {
        let page = meta.chunks_page(after, PAGE).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        let verdicts: Vec<_> = stream::iter(page)
            .map(|(id, rec)| look_at(store, id, rec, options.read_percent, keys.clone()))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for seen in verdicts {
            out.tally(seen);
        }
        progress(out.checked);
    }
    Ok(out)
}

/// What one object looked like.
struct Seen {
    id: [u8; 32],
    /// The object's name, what an admin looks for upstream.
    object: String,
    rec: ChunkRecord,
    read: bool,
    verdict: ObjectVerdict,
}

async fn look_at(
    store: &Arc<ContentStore>,
    id: [u8; 32],
    rec: ChunkRecord,
    read_percent: Option<f64>,
    keys: Arc<[ChunkIdKey]>,
) -> Seen {
    let read = read_percent.is_some_and(|p| p >= 100.0 || rand::random::<f64>() * 100.0 < p);
    let verdict = if read {
        store.read_object(ChunkId(id), rec.stored, keys).await
    } else {
        store.inspect_object(ChunkId(id), &rec).await
    };
    Seen {
        id,
        object: store.object_name_of(&ChunkId(id), &rec).to_string(),
        rec,
        read,
        verdict,
    }
}

impl ObjectsChecked {
    fn tally(&mut self, seen: Seen) {
        self.checked += 1;
        if seen.read {
            self.read += 1;
            if seen.verdict == ObjectVerdict::Sound {
                self.bytes_read += seen.rec.stored as u64;
            }
        }
        let Some(finding) = finding_of(&seen) else {
            return;
        };
        if self.findings.len() < MAX_OBJECT_FINDINGS {
            self.findings.push(finding);
        } else {
            self.findings_not_listed += 1;
        }
    }
}

fn finding_of(seen: &Seen) -> Option<ObjectFinding> {
    let chunk = ChunkId(seen.id).to_hex();
    let object = seen.object.clone();
    let refs = seen.rec.refs;
    Some(match &seen.verdict {
        ObjectVerdict::Sound => return None,
        ObjectVerdict::Missing => ObjectFinding::Missing {
            chunk,
            object,
            refs,
        },
        ObjectVerdict::WrongSize { found } => ObjectFinding::WrongSize {
            chunk,
            object,
            refs,
            expected: seen.rec.stored as u64,
            found: *found,
        },
        ObjectVerdict::Corrupt(cause) => ObjectFinding::Corrupt {
            chunk,
            object,
            refs,
            cause: cause.clone(),
        },
        ObjectVerdict::Unanswered(cause) => ObjectFinding::Unanswered {
            chunk,
            object,
            cause: cause.clone(),
        },
    })
}

// ---- Rendering ----

/// What a metadata finding means for the installation.
pub fn meaning(f: &Inconsistency) -> String {
    use Inconsistency::*;
    match f {
        RefcountMismatch { recorded, referenced, .. } if recorded < referenced => {
            "files still name this chunk after its count reaches 0: a later collection could delete its object while they reference it, and they would no longer read".into()
        }
        RefcountMismatch { .. } => {
            "the count never reaches 0 when the last file lets go: the collector never frees its object (space only)".into()
        }
        CollectorMark { refs: 0, .. } => {
            "the collector looks only for marked chunks: this one is never collected (space only)".into()
        }
        CollectorMark { .. } => {
            "marked for collection while referenced; the collector's re-check keeps it, but the record is wrong".into()
        }
        UnknownChunk { .. } => {
            "a manifest names a chunk the index has no record of: nothing protects its object, and the file may not read".into()
        }
        DanglingDirent { .. } => {
            "the folder names an entry whose node is gone: listing the folder fails, and the name cannot be read or removed".into()
        }
        DirentOutsideFolder { .. } => {
            "an entry hangs below a node that is missing or not a folder: no path reaches it".into()
        }
        ForeignDirent { .. } => {
            "a folder of one user names a node of another: users are no longer isolated".into()
        }
        WrongParent { .. } => {
            "etag and folder-size updates climb the recorded parent: the wrong folders change, so sync clients miss changes".into()
        }
        NamedTwice { .. } => {
            "two names show one node: removing one releases its chunks while the other still shows the file".into()
        }
        Unreachable { .. } => {
            "no path leads to this node: its chunk references and bytes are held for ever".into()
        }
        NoOwner { .. } => "the node belongs to no user: it is held for ever".into(),
        BadRoot { .. } => "the user's root folder is missing or wrong: they cannot reach their files".into(),
        UsageMismatch { .. } => {
            "quota decisions use the recorded figure: the user is refused too early or allowed past the quota".into()
        }
        FileCountMismatch { .. } | StoredBytesMismatch { .. } => {
            "only `dedupdav stats` and /metrics show a wrong figure".into()
        }
        ManifestSize { .. } => {
            "the file's size and content disagree: reading it fails".into()
        }
        PackLiveMismatch { recorded, counted, .. } if recorded.0 < counted.0 => {
            "the pack's count reaches 0 while chunks still lie in it: the collector could delete the pack under them, and files naming them would no longer read".into()
        }
        PackLiveMismatch { .. } => {
            "the pack is never found empty, so never deleted, and the repacker misjudges it (space only)".into()
        }
        MissingPack { .. } => {
            "the chunk's pack has no record: the sweep may delete the pack, and files naming the chunk would no longer read".into()
        }
        OrphanManifest { .. } => {
            "a manifest without its file holds chunk references for ever (space only)".into()
        }
        OrphanProps { .. } => "properties of a removed node are kept and charged to nobody".into(),
        FolderSize { .. } => "clients show a wrong folder size (oc:size)".into(),
        OrphanPart { .. } => {
            "a part without its session is never expired: its chunk references are held for ever".into()
        }
        PartSize { .. } => "assembling this upload would make a file whose size and content disagree".into(),
        SessionBytes { .. } => "the quota counts the wrong bytes for this upload in progress".into(),
        OrphanAppPassword { .. } => {
            "an app password of a removed user is kept (it lets no one in: logins name an existing user)".into()
        }
    }
}

/// What an object finding means for the installation.
pub fn object_meaning(f: &ObjectFinding) -> String {
    let refs = match f {
        ObjectFinding::Unanswered { .. } => {
            return "the backend did not answer: this object was not checked".into()
        }
        ObjectFinding::Missing { refs, .. }
        | ObjectFinding::WrongSize { refs, .. }
        | ObjectFinding::Corrupt { refs, .. } => *refs,
    };
    let harm = match f {
        ObjectFinding::Corrupt { .. } => "fails authentication",
        ObjectFinding::WrongSize { .. } => "is not the object that was written",
        _ => "is gone",
    };
    if refs == 0 {
        format!("the object {harm}; no file uses the chunk now, but an upload of the same bytes would reference it again")
    } else {
        format!("the object {harm}: reads of the {refs} file part(s) naming this chunk fail (never wrong bytes); restore the object or those files")
    }
}

fn describe(f: &Inconsistency) -> String {
    use Inconsistency::*;
    match f {
        RefcountMismatch { chunk, recorded, referenced } => format!(
            "chunk {chunk} has refs={recorded} but {referenced} manifest entries name it"
        ),
        CollectorMark { chunk, refs, unreferenced_since } => format!(
            "chunk {chunk} has refs={refs} and unreferenced_since={unreferenced_since}"
        ),
        UnknownChunk { chunk, node, references } => format!(
            "chunk {chunk} is named {references} time(s) (first by node {node}; 0 = an upload part) but has no record"
        ),
        DanglingDirent { parent, name, child } => format!(
            "entry {name:?} of folder {parent} names node {child}, which does not exist"
        ),
        DirentOutsideFolder { parent, name } => {
            format!("entry {name:?} sits in node {parent}, which is missing or not a folder")
        }
        ForeignDirent { parent, name, parent_owner, child_owner } => format!(
            "entry {name:?} of folder {parent} (user {parent_owner}) names a node of user {child_owner}"
        ),
        WrongParent { node, recorded, named_in } => format!(
            "node {node} records parent {recorded} but is named in folder {named_in}"
        ),
        NamedTwice { node, dirents } => format!("node {node} is named by {dirents} entries"),
        Unreachable { node, owner } => format!("node {node} of user {owner} is named by no entry"),
        NoOwner { node, owner } => format!("node {node} belongs to user {owner}, who does not exist"),
        BadRoot { user, root } => format!("user {user}'s root node {root} is missing or wrong"),
        UsageMismatch { user, recorded, computed } => format!(
            "user {user} has used={recorded} but their files and dead properties take {computed}"
        ),
        FileCountMismatch { recorded, counted } => {
            format!("the file counter says {recorded}, there are {counted} files")
        }
        StoredBytesMismatch { recorded, summed } => format!(
            "the stored-bytes counter says {recorded}, the chunk and pack records add up to {summed}"
        ),
        PackLiveMismatch { pack, recorded, counted } => format!(
            "pack {pack} records {} live chunks ({} bytes) but {} chunk records ({} bytes) lie in it",
            recorded.0, recorded.1, counted.0, counted.1
        ),
        MissingPack { chunk, pack } => {
            format!("chunk {chunk} lies in pack {pack}, which has no record")
        }
        ManifestSize { node, size, manifest_bytes } => format!(
            "file {node} has {size} bytes but its manifest {manifest_bytes}"
        ),
        OrphanManifest { node } => format!("a manifest belongs to node {node}, which is no file"),
        OrphanProps { node } => format!("dead properties belong to node {node}, which does not exist"),
        FolderSize { node, recorded, computed } => format!(
            "folder {node} has size {recorded} but its entries hold {computed}"
        ),
        OrphanPart { user, transfer, part } => format!(
            "part {part:?} of upload {transfer:?} (user {user}) has no session or user"
        ),
        PartSize { user, transfer, part, size, manifest_bytes } => format!(
            "part {part:?} of upload {transfer:?} (user {user}) has {size} bytes but its manifest {manifest_bytes}"
        ),
        SessionBytes { user, transfer, recorded, parts } => format!(
            "upload {transfer:?} (user {user}) records {recorded} bytes received, its parts hold {parts}"
        ),
        OrphanAppPassword { user, id } => {
            format!("app password {id} belongs to user {user}, who does not exist")
        }
    }
}

fn describe_object(f: &ObjectFinding) -> String {
    match f {
        ObjectFinding::Missing { chunk, object, refs } => {
            format!("object {object} of chunk {chunk} (refs={refs}) is missing")
        }
        ObjectFinding::WrongSize { chunk, object, refs, expected, found } => format!(
            "object {object} of chunk {chunk} (refs={refs}) has {found} bytes, the record says {expected}"
        ),
        ObjectFinding::Corrupt { chunk, object, refs, cause } => {
            format!("object {object} of chunk {chunk} (refs={refs}) does not open: {cause}")
        }
        ObjectFinding::Unanswered { chunk, object, cause } => {
            format!("object {object} of chunk {chunk}: {cause}")
        }
    }
}

/// The report as text for a person.
pub fn render_text(r: &CheckReport) -> String {
    let i = &r.index;
    let o = &r.objects;
    let mut out = format!(
        "index: {} users, {} nodes ({} files), {} entries, {} chunks, {} references, {} uploads in progress ({} parts)\n\
         objects: {} checked, {} read and verified ({} bytes)\n",
        i.users, i.nodes, i.files, i.dirents, i.chunks, i.references, i.sessions, i.parts,
        o.checked, o.read, o.bytes_read
    );
    for f in &i.findings {
        out += &format!("PROBLEM {}\n  means: {}\n", describe(f), meaning(f));
    }
    for f in &o.findings {
        out += &format!(
            "PROBLEM {}\n  means: {}\n",
            describe_object(f),
            object_meaning(f)
        );
    }
    for f in &r.scrub.findings {
        out += &format!(
            "PROBLEM the scrub found object {} (chunk {}) {}: {}\n  means: every file using this chunk fails to read there; restore the object from a backup of the upstream, or remove the affected files\n",
            f.object, f.chunk, f.problem, f.detail
        );
    }
    if r.scrub.last_pass_finished == 0 {
        out += "scrub: no complete pass yet\n";
    } else {
        out += &format!(
            "scrub: last complete pass checked {} objects (finished at {} Unix time)\n",
            r.scrub.last_pass_checked, r.scrub.last_pass_finished
        );
    }
    let more = i.findings_not_listed + o.findings_not_listed;
    if more > 0 {
        out += &format!("... and {more} more problems not listed\n");
    }
    let total = (i.findings.len() + o.findings.len() + r.scrub.findings.len()) as u64 + more;
    out += &if r.clean {
        "result: clean\n".to_string()
    } else {
        format!("result: {total} problem(s) found\n")
    };
    out
}

/// A finding with what it means, as JSON.
#[derive(Serialize)]
struct Explained<'a, T: Serialize> {
    #[serde(flatten)]
    finding: &'a T,
    meaning: String,
}

/// The report as one JSON object: `clean`, `index` (counts and
/// `findings`), `objects` (counts and `findings`); every finding has a
/// `kind`, its fields and a `meaning`.
pub fn render_json(r: &CheckReport) -> serde_json::Value {
    let index: Vec<_> = r
        .index
        .findings
        .iter()
        .map(|f| Explained {
            finding: f,
            meaning: meaning(f),
        })
        .collect();
    let objects: Vec<_> = r
        .objects
        .findings
        .iter()
        .map(|f| Explained {
            finding: f,
            meaning: object_meaning(f),
        })
        .collect();
    let mut v = serde_json::json!({
        "clean": r.clean,
        "index": r.index,
        "objects": r.objects,
        "scrub": r.scrub,
    });
    v["index"]["findings"] = serde_json::json!(index);
    v["objects"]["findings"] = serde_json::json!(objects);
    v
}
