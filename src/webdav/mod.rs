//! WebDAV: dav-server's `GuardedFileSystem` over one user's tree in the
//! metadata and the shared content store, and the only module that names
//! dav-server ([`answer`] runs its handler for one request).
//!
//! dav-server speaks the protocol; this module answers its file-system
//! calls and closes the gaps it leaves:
//! - **Swallowed or blurred errors**: a failing directory read becomes an
//!   empty listing, every storage error a generic status. The precise error
//!   is recorded in the request's [`FailureSlot`] and the service answers
//!   with it (`errors.rs` maps the rest to `FsError`).
//! - **Unquoted etags** in PROPFIND replies (`quote_etags.rs`).
//! - **Slow PROPFIND**: one file-system call per property per entry, written
//!   through xml-rs; the common request is answered by `propfind/` instead.
//! - **Replace by delete-then-write**: MOVE/COPY with `Overwrite: T`
//!   deletes the destination in a step of its own; [`PendingReplace`] defers
//!   that deletion into the move's or copy's own transaction.
//! - **Folder COPY as a walk** of single steps: copied in one transaction
//!   instead (`PendingReplace` again).
//! - **PROPFIND replies** that leave out what they cannot find and add
//!   what was not asked for (`propfind/requested.rs`).
//! - **Locks in memory** that never expire and have no per-user cap:
//!   `locks.rs` is a lock system over the metadata's lock records (they
//!   survive restarts, expire, are capped), and the lock check the
//!   chunked-upload MOVE needs (`PathLocks`).
//! - **Reply headers**: the node an operation answered is kept in
//!   [`RequestCtx::target_node`] for `OC-FileId`/`OC-ETag`, so nothing
//!   reads it again.

mod errors;
mod file;
mod locks;
pub(crate) mod node_meta;
pub(crate) mod propfind;
pub(crate) mod quote_etags;
pub(crate) mod win32;

use std::sync::Arc;

use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavMetaData, DavProp, FsError, FsFuture, FsStream, GuardedFileSystem,
    OpenOptions, ReadDirMeta,
};
use dav_server::DavHandler;
use futures_util::{stream, FutureExt};
use http::StatusCode;
use parking_lot::Mutex;

use crate::crypto::VisibleIds;
use crate::meta::Node;
use crate::meta::{split_path, Meta, NamePath, NsError, Owner, StoredProp};
use crate::owncloud::checksum::ChecksumSet;
use crate::store::ContentStore;
use crate::wire::body::DavBody;
use crate::wire::error::{FailureSlot, GatewayError};

pub use crate::owncloud::props::PropsCache;
pub use file::{ReadFile, UploadFile};
pub use locks::LockTable;
pub use node_meta::NodeMeta;

/// Per-request hints from ownCloud clients for an upload.
#[derive(Debug, Clone, Default)]
pub struct UploadHints {
    /// `X-OC-Mtime`, as Unix nanoseconds.
    pub mtime: Option<i64>,
    /// `OC-Checksum`, e.g. `SHA1:0a4d…`.
    pub checksum: Option<String>,
}

/// What the file system knows of the request it serves.
#[derive(Debug, Clone)]
pub struct RequestCtx {
    pub owner: Owner,
    pub hints: UploadHints,
    pub failure: FailureSlot,
    /// Set for PROPFIND: remembers looked-up nodes for the `oc:` properties.
    pub props_cache: Option<PropsCache>,
    /// Set for MOVE/COPY that may overwrite: see [`PendingReplace`].
    pub replace: Option<PendingReplace>,
    /// The path the reply describes: the request's for GET, PUT and MKCOL,
    /// the destination's for MOVE and COPY.
    pub target: Option<NamePath>,
    /// The node the operation read or wrote at [`Self::target`], as the
    /// operation answered it: the reply's `OC-FileId`, `OC-ETag` and
    /// `OC-Checksum` come from it without reading it again.
    pub target_node: Arc<Mutex<Option<Node>>>,
}

/// dav-server deletes an existing destination before it moves or copies
/// onto it, in separate steps: a crash in between would lose the old
/// destination. Instead, those deletions are only noted here, and the move
/// (or the copy) replaces the destination in its own transaction. If the
/// move or copy fails, the destination is untouched.
///
/// A folder COPY is, in dav-server, a walk: create the destination folder,
/// then copy each entry one by one. Here the first step of that walk copies
/// the whole tree in one transaction (`Meta::copy_replacing`) and the
/// walk's later steps below the destination find their work done.
#[derive(Debug, Clone)]
pub struct PendingReplace {
    dest: NamePath,
    /// The request's own path: what a COPY copies.
    source: NamePath,
    is_move: bool,
    deferred: Arc<Mutex<bool>>,
    /// Set once a COPY has copied the whole tree.
    copied: Arc<Mutex<bool>>,
}

/// Where a step of dav-server's COPY walk stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CopyStep {
    /// The destination itself, not yet copied: copy the whole tree now.
    Whole,
    /// Below a destination already copied: nothing left to do.
    Done,
    /// Not part of a tree copy.
    Other,
}

impl PendingReplace {
    /// A MOVE (`is_move`) or a COPY of everything below `source` (Depth
    /// infinity) onto `dest`, overwriting allowed.
    pub fn new(source: NamePath, dest: NamePath, is_move: bool) -> Self {
        Self {
            dest,
            source,
            is_move,
            deferred: Arc::default(),
            copied: Arc::default(),
        }
    }

    /// Whether removing `names` is part of replacing the destination, and so
    /// left to the move or copy that follows.
    fn defer_removal(&self, names: &[String]) -> bool {
        let covered = names.starts_with(&self.dest);
        if covered {
            *self.deferred.lock() = true;
        }
        covered
    }

    fn replaces(&self, names: &[String]) -> bool {
        *self.deferred.lock() && names == self.dest.as_slice()
    }

    fn copy_step(&self, names: &[String]) -> CopyStep {
        if self.is_move || !names.starts_with(&self.dest) {
            return CopyStep::Other;
        }
        match (*self.copied.lock(), names == self.dest.as_slice()) {
            (true, _) => CopyStep::Done,
            (false, true) => CopyStep::Whole,
            (false, false) => CopyStep::Other,
        }
    }

    fn mark_copied(&self) {
        *self.copied.lock() = true;
    }
}

impl RequestCtx {
    pub fn new(owner: Owner) -> Self {
        Self {
            owner,
            hints: UploadHints::default(),
            failure: FailureSlot::default(),
            props_cache: None,
            replace: None,
            target: None,
            target_node: Arc::default(),
        }
    }

    /// Keeps `node` for the reply if `names` is the request's target.
    pub(crate) fn note_target(&self, names: &[String], node: &Node) {
        if self.target.as_deref() == Some(names) {
            *self.target_node.lock() = Some(node.clone());
        }
    }

    /// Turns any layer's error into dav-server's, remembering it when the
    /// front must report it precisely.
    pub(crate) fn fail(&self, e: impl Into<GatewayError>) -> FsError {
        let e: GatewayError = e.into();
        let fs = errors::fs_error(&e);
        if e.overrides_dav_status() {
            self.failure.record(e);
        }
        fs
    }
}

/// Largest piece of a file body handed to hyper at once.
const READ_PIECE: usize = 256 << 10;

/// Answers one WebDAV request with dav-server over `fs`, with `locks` (the
/// user's lock table); `prefix` is the URL path the user's tree is served
/// under. Failures the file system recorded are in `ctx.failure`.
pub async fn answer(
    fs: &DedupFs,
    locks: LockTable,
    prefix: &str,
    req: http::Request<DavBody>,
    user: &str,
    ctx: &RequestCtx,
) -> http::Response<
    impl http_body::Body<Data = bytes::Bytes, Error = std::io::Error> + Send + 'static,
> {
    DavHandler::builder()
        .filesystem(Box::new(fs.clone()))
        .locksystem(Box::new(locks))
        .strip_prefix(prefix.to_string())
        // Reads are slices of whole chunks: hand out big pieces.
        .read_buf_size(READ_PIECE)
        .build_handler()
        .handle_guarded(req, user.to_string(), ctx.clone())
        .await
}

/// The deduplicating file system shared by every request.
#[derive(Clone)]
pub struct DedupFs {
    meta: Meta,
    store: Arc<ContentStore>,
    checksums: ChecksumSet,
    ids: Arc<VisibleIds>,
}

impl DedupFs {
    /// `checksums`: the types every upload computes, besides those the
    /// client announces; `ids`: how ids and etags are shown to clients.
    pub fn new(
        meta: Meta,
        store: Arc<ContentStore>,
        checksums: ChecksumSet,
        ids: Arc<VisibleIds>,
    ) -> Self {
        Self {
            meta,
            store,
            checksums,
            ids,
        }
    }

    /// The ids and etags clients see.
    pub fn ids(&self) -> &Arc<VisibleIds> {
        &self.ids
    }

    pub fn checksums(&self) -> ChecksumSet {
        self.checksums
    }

    pub fn meta(&self) -> &Meta {
        &self.meta
    }

    fn names(&self, path: &DavPath, ctx: &RequestCtx) -> Result<NamePath, FsError> {
        split_path(path.as_bytes()).map_err(|e| ctx.fail(e))
    }

    /// The node at `names`, from the request's cache when it has one.
    /// Dead properties, from the listing's memory when the path is in it.
    async fn dead_props(
        &self,
        names: &[String],
        ctx: &RequestCtx,
    ) -> Result<Vec<StoredProp>, FsError> {
        if let Some(props) = ctx.props_cache.as_ref().and_then(|c| c.dead_props(names)) {
            return Ok(props);
        }
        self.meta
            .props(&ctx.owner, names)
            .await
            .map_err(|e| ctx.fail(e))
    }

    fn remove<'a>(&'a self, path: &'a DavPath, ctx: &'a RequestCtx) -> FsFuture<'a, ()> {
        async move {
            let names = self.names(path, ctx)?;
            if ctx
                .replace
                .as_ref()
                .is_some_and(|r| r.defer_removal(&names))
            {
                return Ok(());
            }
            self.meta
                .remove(&ctx.owner, &names)
                .await
                .map_err(|e| ctx.fail(e))
        }
        .boxed()
    }

    /// Copies `from` onto the destination `to` in one transaction (see
    /// [`PendingReplace`]).
    async fn copy_tree(
        &self,
        replace: &PendingReplace,
        from: &[String],
        to: &[String],
        ctx: &RequestCtx,
    ) -> Result<(), FsError> {
        let node = self
            .meta
            .copy_replacing(&ctx.owner, from, to)
            .await
            .map_err(|e| ctx.fail(e))?;
        replace.mark_copied();
        ctx.note_target(to, &node);
        Ok(())
    }

    /// Whether a folder is at `names` (a file or nothing: false).
    async fn is_folder(&self, names: &[String], ctx: &RequestCtx) -> Result<bool, FsError> {
        match self.meta.lookup(&ctx.owner, names).await {
            Ok(n) => Ok(n.is_dir()),
            Err(NsError::NotFound) => Ok(false),
            Err(e) => Err(ctx.fail(e)),
        }
    }

    async fn node_at(&self, names: &[String], ctx: &RequestCtx) -> Result<Node, NsError> {
        if let Some(cache) = &ctx.props_cache {
            if let Some(n) = cache.get(names) {
                return Ok(n);
            }
            let n = self.meta.lookup(&ctx.owner, names).await?;
            cache.remember(names, &n);
            return Ok(n);
        }
        self.meta.lookup(&ctx.owner, names).await
    }
}

fn to_stored(p: DavProp) -> StoredProp {
    StoredProp {
        name: p.name,
        prefix: p.prefix,
        namespace: p.namespace,
        xml: p.xml,
    }
}

fn from_stored(p: StoredProp) -> DavProp {
    DavProp {
        name: p.name,
        prefix: p.prefix,
        namespace: p.namespace,
        xml: p.xml,
    }
}

impl GuardedFileSystem<RequestCtx> for DedupFs {
    fn open<'a>(
        &'a self,
        path: &'a DavPath,
        options: OpenOptions,
        ctx: &'a RequestCtx,
    ) -> FsFuture<'a, Box<dyn DavFile>> {
        async move {
            let names = self.names(path, ctx)?;
            if options.write {
                file::open_for_write(self, names, options, ctx).await
            } else {
                file::open_for_read(self, names, ctx).await
            }
        }
        .boxed()
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        _meta: ReadDirMeta,
        ctx: &'a RequestCtx,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        async move {
            let names = self.names(path, ctx)?;
            let entries = self
                .meta
                .list(&ctx.owner, &names)
                .await
                .map_err(|e| match e {
                    // A listing that fails for a reason other than "no such
                    // folder" must fail the request, not look empty.
                    NsError::NotFound | NsError::NotADirectory => FsError::NotFound,
                    e => ctx.fail(e),
                })?;
            if let Some(cache) = &ctx.props_cache {
                let ids: Vec<u64> = entries.iter().map(|(_, n)| n.id).collect();
                cache.remember_dead(
                    self.meta
                        .props_of_nodes(&ids)
                        .await
                        .map_err(|e| ctx.fail(e))?,
                );
                cache.remember_listing(&names, &entries);
            }
            let items: Vec<Result<Box<dyn DavDirEntry>, FsError>> = entries
                .into_iter()
                .map(|(name, node)| {
                    Ok(
                        Box::new(node_meta::Entry::new(name, node, self.ids.clone()))
                            as Box<dyn DavDirEntry>,
                    )
                })
                .collect();
            Ok(Box::pin(stream::iter(items)) as FsStream<Box<dyn DavDirEntry>>)
        }
        .boxed()
    }

    fn metadata<'a>(
        &'a self,
        path: &'a DavPath,
        ctx: &'a RequestCtx,
    ) -> FsFuture<'a, Box<dyn DavMetaData>> {
        async move {
            let names = self.names(path, ctx)?;
            match self.node_at(&names, ctx).await {
                Ok(node) => {
                    Ok(Box::new(NodeMeta::new(node, self.ids.clone())) as Box<dyn DavMetaData>)
                }
                Err(NsError::NotFound) => Err(FsError::NotFound),
                Err(e) => Err(ctx.fail(e)),
            }
        }
        .boxed()
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath, ctx: &'a RequestCtx) -> FsFuture<'a, ()> {
        async move {
            let names = self.names(path, ctx)?;
            if names.is_empty() {
                return Err(FsError::Exists);
            }
            if let Some(replace) = &ctx.replace {
                match replace.copy_step(&names) {
                    CopyStep::Whole => {
                        return self.copy_tree(replace, &replace.source, &names, ctx).await
                    }
                    CopyStep::Done => return Ok(()),
                    CopyStep::Other => {}
                }
            }
            let node = self
                .meta
                .mkdir(&ctx.owner, &names)
                .await
                .map_err(|e| ctx.fail(e))?;
            ctx.note_target(&names, &node);
            Ok(())
        }
        .boxed()
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath, ctx: &'a RequestCtx) -> FsFuture<'a, ()> {
        self.remove(path, ctx)
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath, ctx: &'a RequestCtx) -> FsFuture<'a, ()> {
        self.remove(path, ctx)
    }

    fn rename<'a>(
        &'a self,
        from: &'a DavPath,
        to: &'a DavPath,
        ctx: &'a RequestCtx,
    ) -> FsFuture<'a, ()> {
        async move {
            let (f, t) = (self.names(from, ctx)?, self.names(to, ctx)?);
            let replacing = ctx.replace.as_ref().is_some_and(|r| r.replaces(&t));
            let moved = if replacing {
                self.meta.rename_replacing(&ctx.owner, &f, &t).await
            } else {
                self.meta.rename(&ctx.owner, &f, &t).await
            };
            let node = moved.map_err(|e| ctx.fail(e))?;
            ctx.note_target(&t, &node);
            Ok(())
        }
        .boxed()
    }

    fn copy<'a>(
        &'a self,
        from: &'a DavPath,
        to: &'a DavPath,
        ctx: &'a RequestCtx,
    ) -> FsFuture<'a, ()> {
        async move {
            let (f, t) = (self.names(from, ctx)?, self.names(to, ctx)?);
            if let Some(replace) = &ctx.replace {
                match replace.copy_step(&t) {
                    CopyStep::Done => return Ok(()),
                    CopyStep::Whole if self.is_folder(&t, ctx).await? => {
                        return self.copy_tree(replace, &f, &t, ctx).await
                    }
                    _ => {}
                }
            }
            let node = self
                .meta
                .copy_file(&ctx.owner, &f, &t)
                .await
                .map_err(|e| ctx.fail(e))?;
            // Dead properties do not change the node.
            ctx.note_target(&t, &node);
            self.meta
                .copy_props(&ctx.owner, &f, &t)
                .await
                .map_err(|e| ctx.fail(e))
        }
        .boxed()
    }

    fn have_props<'a>(
        &'a self,
        path: &'a DavPath,
        ctx: &'a RequestCtx,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        async move {
            match split_path(path.as_bytes()) {
                // Dead properties can be stored on any existing node.
                Ok(names) => self.node_at(&names, ctx).await.is_ok(),
                Err(_) => false,
            }
        }
        .boxed()
    }

    fn patch_props<'a>(
        &'a self,
        path: &'a DavPath,
        patch: Vec<(bool, DavProp)>,
        ctx: &'a RequestCtx,
    ) -> FsFuture<'a, Vec<(StatusCode, DavProp)>> {
        async move {
            let names = self.names(path, ctx)?;
            let stored: Vec<(bool, StoredProp)> = patch
                .iter()
                .map(|(set, p)| (*set, to_stored(p.clone())))
                .collect();
            self.meta
                .patch_props(&ctx.owner, &names, &stored)
                .await
                .map_err(|e| ctx.fail(e))?;
            Ok(patch
                .into_iter()
                .map(|(_, mut p)| {
                    p.xml = None;
                    (StatusCode::OK, p)
                })
                .collect())
        }
        .boxed()
    }

    fn get_props<'a>(
        &'a self,
        path: &'a DavPath,
        do_content: bool,
        ctx: &'a RequestCtx,
    ) -> FsFuture<'a, Vec<DavProp>> {
        async move {
            let names = self.names(path, ctx)?;
            let props = self.dead_props(&names, ctx).await?;
            Ok(props
                .into_iter()
                .map(|p| {
                    let mut p = from_stored(p);
                    if !do_content {
                        p.xml = None;
                    }
                    p
                })
                .collect())
        }
        .boxed()
    }

    fn get_prop<'a>(
        &'a self,
        path: &'a DavPath,
        prop: DavProp,
        ctx: &'a RequestCtx,
    ) -> FsFuture<'a, Vec<u8>> {
        async move {
            let names = self.names(path, ctx)?;
            // ownCloud's properties are answered from the node itself.
            if crate::owncloud::props::is_synthesized(prop.namespace.as_deref(), &prop.name) {
                let node = match self.node_at(&names, ctx).await {
                    Ok(n) => n,
                    Err(NsError::NotFound) => return Err(FsError::NotFound),
                    Err(e) => return Err(ctx.fail(e)),
                };
                return crate::owncloud::props::render(
                    prop.namespace.as_deref(),
                    &prop.name,
                    &node,
                    &ctx.owner.name,
                    &self.ids,
                )
                .ok_or(FsError::NotFound);
            }
            // A dead property is not answered here: dav-server appends
            // every stored one (`get_props`) to each entry of a `prop`
            // request after the requested ones, so answering it here too
            // listed it twice.
            Err(FsError::NotFound)
        }
        .boxed()
    }

    fn get_quota<'a>(&'a self, ctx: &'a RequestCtx) -> FsFuture<'a, (u64, Option<u64>)> {
        async move {
            let (used, quota) = self.meta.usage(&ctx.owner).await.map_err(|e| ctx.fail(e))?;
            // dav-server wants (used, total) and computes what is available.
            Ok((used, quota))
        }
        .boxed()
    }
}
