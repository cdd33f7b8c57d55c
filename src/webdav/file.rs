//! Open files: an upload that commits on flush, or a verified reader.
//! Uploads compute the configured checksums (`uploads.checksums`) and those
//! the client announces in `OC-Checksum` as the bytes stream through, check
//! the announced ones before committing, and store them for `oc:checksums`.
//! An upload stops at the first byte past the owner's quota (announced
//! length or not); the commit checks the quota again in its transaction.

use std::io::SeekFrom;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use dav_server::fs::{DavFile, DavMetaData, FsError, FsFuture, OpenOptions};
use futures_util::FutureExt;
use parking_lot::Mutex;

use super::{DedupFs, NodeMeta, RequestCtx};
use crate::crypto::VisibleIds;
use crate::files::put::{self, FileAttrs};
use crate::meta::Node;
use crate::meta::{NamePath, NsError, REFUSED_BODY_DRAIN};
use crate::owncloud::checksum::{self, Announced, Hashers};
use crate::store::{ByteSink, FileReader, Upload};
use crate::wire::error::GatewayError;

/// A PUT in progress. The new version becomes visible only when `flush`
/// has stored every chunk and committed the manifest; an upload dropped
/// before that (client gone, body short) changes nothing.
pub struct UploadFile {
    fs: DedupFs,
    ctx: RequestCtx,
    names: NamePath,
    upload: Option<Upload>,
    /// The most bytes the owner's quota lets this upload bring.
    limit: Option<u64>,
    /// Set once the body went past `limit`: the bytes received so far. The
    /// rest of the body is read and dropped, and the flush answers 507.
    refused: Option<u64>,
    committed: Option<Node>,
    /// ownCloud checksums, fed by the upload's digest thread.
    hashers: Arc<Mutex<Hashers>>,
    announced: Vec<Announced>,
}

impl std::fmt::Debug for UploadFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UploadFile({:?})", self.names)
    }
}

pub(super) async fn open_for_write(
    fs: &DedupFs,
    names: NamePath,
    options: OpenOptions,
    ctx: &RequestCtx,
) -> Result<Box<dyn DavFile>, FsError> {
    if names.is_empty() {
        return Err(FsError::Forbidden);
    }
    // A malformed OC-Checksum is refused before any byte is read.
    let announced = match &ctx.hints.checksum {
        Some(h) => checksum::parse_header(h)
            .map_err(|e| ctx.fail(GatewayError::BadRequest(e.to_string())))?,
        None => Vec::new(),
    };
    let target = fs
        .meta
        .write_target(&ctx.owner, &names)
        .await
        .map_err(|e| ctx.fail(e))?;
    let existing = match target.existing {
        Ok(n) => Some(n),
        Err(NsError::NotFound) => None,
        Err(e) => return Err(ctx.fail(e)),
    };
    match &existing {
        Some(n) if n.is_dir() => return Err(FsError::Forbidden),
        Some(_) if options.create_new => return Err(FsError::Exists),
        None if !options.create => return Err(FsError::NotFound),
        _ => {}
    }
    // The parent must be a folder (dav-server answers 409 on NotFound).
    match target.parent {
        Ok(p) if p.is_dir() => {}
        Ok(_) | Err(NsError::NotFound) => return Err(FsError::NotFound),
        Err(e) => return Err(ctx.fail(e)),
    }
    if !options.truncate || options.append {
        // The front refuses partial PUTs, so this is a LOCK of an unmapped
        // URL: it creates an empty file (RFC 4918, 7.3).
        if existing.is_some() {
            return Err(ctx.fail(GatewayError::NotImplemented(
                "partial updates are not supported",
            )));
        }
        let empty = fs.store.begin_upload(ctx.owner.id, Some(0));
        let finished = empty.finish().await.map_err(|e| ctx.fail(e))?;
        let sums = Hashers::new(fs.checksums).finish().to_oc_string();
        let attrs = FileAttrs {
            mtime: None,
            checksums: sums,
        };
        let (node, _) = put::commit_file(&fs.meta, &ctx.owner, &names, finished, attrs)
            .await
            .map_err(|e| ctx.fail(e))?;
        ctx.note_target(&names, &node);
        return Ok(Box::new(UploadFile {
            fs: fs.clone(),
            ctx: ctx.clone(),
            names,
            upload: None,
            limit: None,
            refused: None,
            committed: Some(node),
            hashers: Arc::default(),
            announced: Vec::new(),
        }));
    }
    // Refuse an announced size over the quota before reading the body.
    let replaced = existing.as_ref().map_or(0, |n| n.size);
    if let Some(size) = options.size {
        target
            .holdings
            .check(replaced, size)
            .map_err(|e| ctx.fail(e))?;
    }
    let hashers = Hashers::new(fs.checksums.with_announced(&announced));
    let hashers = Arc::new(Mutex::new(hashers));
    Ok(Box::new(UploadFile {
        fs: fs.clone(),
        ctx: ctx.clone(),
        names,
        upload: Some(fs.store.begin_upload_with(
            ctx.owner.id,
            options.size,
            checksum_sink(&hashers),
        )),
        limit: target.holdings.limit(replaced),
        refused: None,
        committed: None,
        hashers,
        announced,
    }))
}

/// Feeds every uploaded byte to the ownCloud checksums.
fn checksum_sink(hashers: &Arc<Mutex<Hashers>>) -> ByteSink {
    let costly = hashers.lock().is_costly();
    let hashers = hashers.clone();
    ByteSink::new(costly, move |data| hashers.lock().update(data))
}

impl UploadFile {
    async fn write(&mut self, data: &[u8]) -> Result<(), FsError> {
        if let Some(received) = self.refused.as_mut() {
            *received += data.len() as u64;
            let past = *received - self.limit.unwrap_or(0);
            if past > REFUSED_BODY_DRAIN {
                return Err(self.quota_refusal());
            }
            return Ok(());
        }
        let upload = self.upload.as_mut().ok_or(FsError::GeneralFailure)?;
        let total = upload.len() + data.len() as u64;
        if self.limit.is_some_and(|l| total > l) {
            // Nothing more is stored and nothing is committed; what was
            // stored is released for the collector with the upload.
            self.upload = None;
            self.refused = Some(total);
            return Ok(());
        }
        upload.write(data).await.map_err(|e| self.ctx.fail(e))
    }

    fn quota_refusal(&self) -> FsError {
        self.ctx.fail(NsError::QuotaExceeded {
            needed: self.refused.unwrap_or(0),
            available: self.limit.unwrap_or(0),
        })
    }

    async fn commit(&mut self) -> Result<(), FsError> {
        if self.refused.is_some() {
            return Err(self.quota_refusal());
        }
        let Some(upload) = self.upload.take() else {
            return Ok(());
        };
        let finished = upload.finish().await.map_err(|e| self.ctx.fail(e))?;
        // Nothing is committed unless the bytes are what the client meant.
        let digests = std::mem::take(&mut *self.hashers.lock()).finish();
        digests
            .verify(&self.announced)
            .map_err(|e| self.ctx.fail(GatewayError::ChecksumMismatch(e.to_string())))?;
        let attrs = FileAttrs {
            mtime: self.ctx.hints.mtime,
            checksums: digests.to_oc_string(),
        };
        let (node, _created) =
            put::commit_file(&self.fs.meta, &self.ctx.owner, &self.names, finished, attrs)
                .await
                .map_err(|e| self.ctx.fail(e))?;
        self.ctx.note_target(&self.names, &node);
        self.committed = Some(node);
        Ok(())
    }
}

impl DavFile for UploadFile {
    fn metadata(&'_ mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        async move {
            match &self.committed {
                Some(n) => Ok(Box::new(NodeMeta::new(n.clone(), self.fs.ids().clone()))
                    as Box<dyn DavMetaData>),
                None => Err(FsError::NotFound),
            }
        }
        .boxed()
    }

    fn write_buf(&'_ mut self, mut buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        async move {
            while buf.has_remaining() {
                let chunk = buf.chunk().to_vec();
                buf.advance(chunk.len());
                self.write(&chunk).await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn write_bytes(&'_ mut self, buf: Bytes) -> FsFuture<'_, ()> {
        async move { self.write(&buf).await }.boxed()
    }

    fn read_bytes(&'_ mut self, _count: usize) -> FsFuture<'_, Bytes> {
        async move { Err(FsError::Forbidden) }.boxed()
    }

    fn seek(&'_ mut self, _pos: SeekFrom) -> FsFuture<'_, u64> {
        async move { Err(FsError::NotImplemented) }.boxed()
    }

    fn flush(&'_ mut self) -> FsFuture<'_, ()> {
        async move { self.commit().await }.boxed()
    }
}

/// A file opened for reading.
pub struct ReadFile {
    node: Node,
    ids: Arc<VisibleIds>,
    reader: FileReader,
    ctx: RequestCtx,
}

impl std::fmt::Debug for ReadFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReadFile({})", self.node.id)
    }
}

pub(super) async fn open_for_read(
    fs: &DedupFs,
    names: NamePath,
    ctx: &RequestCtx,
) -> Result<Box<dyn DavFile>, FsError> {
    let (node, manifest) = match fs.meta.open_file(&ctx.owner, &names).await {
        Ok(x) => x,
        Err(NsError::NotFound) => return Err(FsError::NotFound),
        Err(NsError::IsADirectory) => return Err(FsError::Forbidden),
        Err(e) => return Err(ctx.fail(e)),
    };
    ctx.note_target(&names, &node);
    Ok(Box::new(ReadFile {
        node,
        ids: fs.ids().clone(),
        reader: FileReader::new(fs.store.clone(), ctx.owner.id, manifest),
        ctx: ctx.clone(),
    }))
}

impl DavFile for ReadFile {
    fn metadata(&'_ mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let m: Box<dyn DavMetaData> = Box::new(NodeMeta::new(self.node.clone(), self.ids.clone()));
        async move { Ok(m) }.boxed()
    }

    fn write_buf(&'_ mut self, _buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        async move { Err(FsError::Forbidden) }.boxed()
    }

    fn write_bytes(&'_ mut self, _buf: Bytes) -> FsFuture<'_, ()> {
        async move { Err(FsError::Forbidden) }.boxed()
    }

    fn read_bytes(&'_ mut self, count: usize) -> FsFuture<'_, Bytes> {
        async move {
            let at = self.reader.position();
            let data = self
                .reader
                .read(count)
                .await
                .map_err(|e| self.ctx.fail(e))?;
            if data.is_empty() && count > 0 && at < self.reader.size() {
                // Never let an early empty read look like the end of the file.
                return Err(FsError::GeneralFailure);
            }
            Ok(data)
        }
        .boxed()
    }

    fn seek(&'_ mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        async move {
            let size = self.reader.size() as i128;
            let target = match pos {
                SeekFrom::Start(p) => p as i128,
                SeekFrom::Current(d) => self.reader.position() as i128 + d as i128,
                SeekFrom::End(d) => size + d as i128,
            };
            if target < 0 {
                return Err(FsError::GeneralFailure);
            }
            self.reader.seek(target as u64);
            Ok(target as u64)
        }
        .boxed()
    }

    fn flush(&'_ mut self) -> FsFuture<'_, ()> {
        async move { Ok(()) }.boxed()
    }
}
