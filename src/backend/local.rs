//! The local-directory backend: one file per object under `<dir>/objects/ab/`.
//! Writes are atomic: a temporary file is written, fsynced and renamed.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, BoxStream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::{fanout_name, BackendError, ObjectInfo, ObjectStat, ObjectStore, MAX_RANGE};
use crate::crypto::{ObjectName, Place, METADATA_FOLDER};

pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    pub fn open(root: &Path) -> Result<Self, BackendError> {
        std::fs::create_dir_all(root.join("objects"))?;
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path_of(&self, name: &ObjectName) -> PathBuf {
        self.root.join(name.relative_path())
    }
}

fn map_io(name: &ObjectName, e: std::io::Error) -> BackendError {
    match e.kind() {
        std::io::ErrorKind::NotFound => BackendError::NotFound(name.to_string()),
        _ if e.raw_os_error() == Some(28) => BackendError::InsufficientStorage,
        _ => BackendError::Io(e),
    }
}

#[async_trait]
impl ObjectStore for LocalDirStore {
    async fn put(&self, name: &ObjectName, data: Bytes) -> Result<(), BackendError> {
        let path = self.path_of(name);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| map_io(name, e))?;
        }
        let tmp = self
            .root
            .join("tmp")
            .join(format!("{}.{}", name, uuid::Uuid::new_v4().simple()));
        let write = async {
            let mut f = tokio::fs::File::create(&tmp).await?;
            f.write_all(&data).await?;
            f.sync_all().await?;
            drop(f);
            tokio::fs::rename(&tmp, &path).await?;
            if let Some(dir) = path.parent() {
                tokio::fs::File::open(dir).await?.sync_all().await?;
            }
            Ok::<_, std::io::Error>(())
        };
        if let Err(e) = write.await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(map_io(name, e));
        }
        Ok(())
    }

    async fn get(&self, name: &ObjectName) -> Result<Bytes, BackendError> {
        tokio::fs::read(self.path_of(name))
            .await
            .map(Bytes::from)
            .map_err(|e| map_io(name, e))
    }

    async fn get_range(
        &self,
        name: &ObjectName,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, BackendError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut f = tokio::fs::File::open(self.path_of(name))
            .await
            .map_err(|e| map_io(name, e))?;
        f.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| map_io(name, e))?;
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX).min(MAX_RANGE)];
        match f.read_exact(&mut buf).await {
            Ok(_) if buf.len() as u64 == len => Ok(Bytes::from(buf)),
            Ok(_) => Err(BackendError::Corrupt {
                name: name.to_string(),
                cause: format!("a range of {len} bytes is larger than any object"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(BackendError::Corrupt {
                name: name.to_string(),
                cause: format!("shorter than {offset} + {len} bytes"),
            }),
            Err(e) => Err(map_io(name, e)),
        }
    }

    async fn delete(&self, name: &ObjectName) -> Result<(), BackendError> {
        match tokio::fs::remove_file(self.path_of(name)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(map_io(name, e)),
        }
    }

    async fn exists(&self, name: &ObjectName) -> Result<bool, BackendError> {
        Ok(tokio::fs::try_exists(self.path_of(name)).await?)
    }

    async fn stat(&self, name: &ObjectName) -> Result<Option<ObjectStat>, BackendError> {
        match tokio::fs::metadata(self.path_of(name)).await {
            Ok(m) => Ok(Some(ObjectStat {
                size: Some(m.len()),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(map_io(name, e)),
        }
    }

    fn list(&self) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        // Walk the fan-out folders lazily: only one folder's names are in
        // memory at a time.
        let top = self.root.join("objects");
        let dirs = stream::once(async move { read_names(&top).await })
            .flat_map(|r| stream::iter(flatten(r)))
            .then(|r| async move {
                match r {
                    Ok(p) => read_objects(&p).await,
                    Err(e) => Err(e),
                }
            })
            .flat_map(|r| stream::iter(flatten(r)));
        dirs.boxed()
    }

    fn list_metadata(&self) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        let dir = self.root.join(METADATA_FOLDER);
        stream::once(async move {
            match read_metadata(&dir).await {
                Err(BackendError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
                other => other,
            }
        })
        .flat_map(|r| stream::iter(flatten(r)))
        .boxed()
    }

    fn list_fanout(&self, fanout: u8) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        let dir = self.root.join("objects").join(fanout_name(fanout));
        stream::once(async move {
            match read_objects(&dir).await {
                Err(BackendError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
                other => other,
            }
        })
        .flat_map(|r| stream::iter(flatten(r)))
        .boxed()
    }

    fn describe(&self) -> String {
        format!("local:{}", self.root.display())
    }
}

fn flatten<T>(r: Result<Vec<T>, BackendError>) -> Vec<Result<T, BackendError>> {
    match r {
        Ok(v) => v.into_iter().map(Ok).collect(),
        Err(e) => vec![Err(e)],
    }
}

async fn read_names(dir: &Path) -> Result<Vec<PathBuf>, BackendError> {
    let mut out = Vec::new();
    let mut rd = tokio::fs::read_dir(dir).await?;
    while let Some(e) = rd.next_entry().await? {
        if e.file_type().await?.is_dir() {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

/// The sealed metadata objects in `dir`; other files are left out.
async fn read_metadata(dir: &Path) -> Result<Vec<ObjectInfo>, BackendError> {
    read_dir_objects(dir, |n| ObjectName::parse_in(n, Place::Metadata)).await
}

/// The objects of one fan-out folder; files that are not objects, or not
/// of this folder, are left out.
async fn read_objects(dir: &Path) -> Result<Vec<ObjectInfo>, BackendError> {
    let folder = dir.file_name().and_then(|f| f.to_str()).unwrap_or_default();
    read_dir_objects(dir, |n| {
        ObjectName::parse(n).filter(|name| name.fanout() == folder)
    })
    .await
}

/// The files of `dir` that `object` recognises, with size and mtime.
async fn read_dir_objects(
    dir: &Path,
    object: impl Fn(&str) -> Option<ObjectName>,
) -> Result<Vec<ObjectInfo>, BackendError> {
    let mut out = Vec::new();
    let mut rd = tokio::fs::read_dir(dir).await?;
    while let Some(e) = rd.next_entry().await? {
        let Some(name) = e.file_name().to_str().and_then(&object) else {
            continue;
        };
        let meta = e.metadata().await?;
        out.push(ObjectInfo {
            name,
            size: meta.len(),
            modified: meta.modified().ok(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{ChunkId, MasterKey};
    use futures_util::TryStreamExt;

    #[tokio::test]
    async fn put_get_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path()).unwrap();
        let keys = MasterKey::from_bytes([3; 32]).derive();
        let names: Vec<_> = (0u8..5)
            .map(|i| ObjectName::for_chunk(&keys, &ChunkId([i; 32])))
            .collect();
        for (i, n) in names.iter().enumerate() {
            store
                .put(n, Bytes::from(vec![i as u8; i + 1]))
                .await
                .unwrap();
            store
                .put(n, Bytes::from(vec![i as u8; i + 1]))
                .await
                .unwrap();
        }
        assert_eq!(&store.get(&names[3]).await.unwrap()[..], &[3, 3, 3, 3]);
        let listed: Vec<_> = store.list().collect().await;
        assert_eq!(listed.len(), 5);
        assert!(store.exists(&names[0]).await.unwrap());
        store.delete(&names[0]).await.unwrap();
        store.delete(&names[0]).await.unwrap();
        assert!(!store.exists(&names[0]).await.unwrap());
        assert_eq!(store.stat(&names[0]).await.unwrap(), None);
        let four = store.stat(&names[3]).await.unwrap();
        assert_eq!(four, Some(ObjectStat { size: Some(4) }));
        assert!(matches!(
            store.get(&names[0]).await,
            Err(BackendError::NotFound(_))
        ));
        let tmp_left = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
        assert_eq!(tmp_left, 0);
    }

    #[tokio::test]
    async fn a_fanout_folder_lists_its_objects_with_their_times() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path()).unwrap();
        let keys = MasterKey::from_bytes([4; 32]).derive();
        let names: Vec<_> = (0u8..40)
            .map(|i| ObjectName::for_chunk(&keys, &ChunkId([i; 32])))
            .collect();
        let started = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
        for n in &names {
            store.put(n, Bytes::from_static(b"x")).await.unwrap();
        }
        let first = &names[0];
        let fanout = u8::from_str_radix(first.fanout(), 16).unwrap();
        // A stray file and a file of another folder's name are not listed.
        let folder = dir.path().join("objects").join(first.fanout());
        std::fs::write(folder.join("notes.txt"), b"?").unwrap();
        let stray = names.iter().find(|n| n.fanout() != first.fanout()).unwrap();
        std::fs::write(folder.join(stray.as_str()), b"?").unwrap();
        let listed: Vec<ObjectInfo> = store.list_fanout(fanout).try_collect().await.unwrap();
        let want = names
            .iter()
            .filter(|n| n.fanout() == first.fanout())
            .count();
        assert_eq!(listed.len(), want);
        for info in &listed {
            assert_eq!(info.name.fanout(), first.fanout());
            assert!(info.modified.is_some_and(|t| t >= started), "{info:?}");
        }
        // A folder nothing was written to is empty, not an error.
        let used: std::collections::HashSet<&str> = names.iter().map(|n| n.fanout()).collect();
        let unused = (0..=255u8)
            .find(|f| !used.contains(fanout_name(*f).as_str()))
            .unwrap();
        assert_eq!(store.list_fanout(unused).count().await, 0);
    }
}
