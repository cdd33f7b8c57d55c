//! Throughput of the content pipeline: chunking, keyed hashing, dedup
//! lookups, compression and encryption, on unique random data, unique
//! compressible data, and data the store already holds (the duplicate path).
//! Objects go to an in-memory store so the figures show the pipeline itself.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dedupdav::backend::{BackendError, ObjectInfo, ObjectStat, ObjectStore};
use dedupdav::crypto::{MasterKey, ObjectName};
use dedupdav::files::put;
use dedupdav::meta::{Meta, NewUser, Owner};
use dedupdav::store::{Cdc, ChunkSizes, Chunker, ContentStore, StoreSettings};
use futures_util::stream::BoxStream;
use parking_lot::Mutex;

/// Keeps objects in memory.
#[derive(Default)]
struct MemoryStore(Mutex<HashMap<String, Bytes>>);

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put(&self, name: &ObjectName, data: Bytes) -> Result<(), BackendError> {
        self.0.lock().insert(name.to_string(), data);
        Ok(())
    }
    async fn get(&self, name: &ObjectName) -> Result<Bytes, BackendError> {
        self.0
            .lock()
            .get(name.as_str())
            .cloned()
            .ok_or_else(|| BackendError::NotFound(name.to_string()))
    }
    async fn get_range(
        &self,
        name: &ObjectName,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, BackendError> {
        let whole = self.get(name).await?;
        let (start, end) = (offset as usize, (offset + len) as usize);
        if end > whole.len() {
            return Err(BackendError::Corrupt {
                name: name.to_string(),
                cause: "short".into(),
            });
        }
        Ok(whole.slice(start..end))
    }
    async fn delete(&self, name: &ObjectName) -> Result<(), BackendError> {
        self.0.lock().remove(name.as_str());
        Ok(())
    }
    async fn stat(&self, name: &ObjectName) -> Result<Option<ObjectStat>, BackendError> {
        let objects = self.0.lock();
        Ok(objects.get(name.as_str()).map(|o| ObjectStat {
            size: Some(o.len() as u64),
        }))
    }
    async fn exists(&self, name: &ObjectName) -> Result<bool, BackendError> {
        Ok(self.0.lock().contains_key(name.as_str()))
    }
    fn list(&self) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        Box::pin(futures_util::stream::empty())
    }
    fn list_fanout(&self, _fanout: u8) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        Box::pin(futures_util::stream::empty())
    }
    fn list_metadata(&self) -> BoxStream<'_, Result<ObjectInfo, BackendError>> {
        Box::pin(futures_util::stream::empty())
    }
    fn describe(&self) -> String {
        "memory".into()
    }
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

fn compressible(len: usize) -> Vec<u8> {
    let words = [
        "ledger ",
        "invoice ",
        "quarterly ",
        "report ",
        "numbers\n",
        "alpha ",
    ];
    let r = random(len / 3, 7);
    let mut v = Vec::with_capacity(len + 16);
    let mut i = 0;
    while v.len() < len {
        v.extend_from_slice(words[r[i % r.len()] as usize % words.len()].as_bytes());
        v.extend_from_slice(format!("{} ", r[i % r.len()] as u32 * 31 + i as u32).as_bytes());
        i += 1;
    }
    v.truncate(len);
    v
}

struct Rig {
    rt: tokio::runtime::Runtime,
    store: Arc<ContentStore>,
    meta: Meta,
    owner: Owner,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let meta = Meta::open_redb(&dir.path().join("i.redb"), Default::default()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let user = rt
        .block_on(meta.add_user(NewUser {
            name: "bench".into(),
            password_hash: "x".into(),
            admin: false,
            quota: None,
        }))
        .unwrap();
    let keys = Arc::new(MasterKey::from_bytes([5; 32]).derive());
    let store = ContentStore::new(
        keys,
        Arc::new(MemoryStore::default()),
        meta.clone(),
        StoreSettings::default(),
    );
    Rig {
        rt,
        store,
        meta,
        owner: Owner::from(&user),
        _dir: dir,
    }
}

impl Rig {
    /// Streams `data` through the pipeline in 64 KiB pieces (what an HTTP
    /// body delivers) and commits it under `name`.
    fn session(&self, name: &str, data: &[u8]) {
        self.rt.block_on(async {
            let mut up = self
                .store
                .begin_upload(self.owner.id, Some(data.len() as u64));
            for piece in data.chunks(64 << 10) {
                up.write(piece).await.unwrap();
            }
            let done = up.finish().await.unwrap();
            let path = [name.to_string()];
            put::commit_file(&self.meta, &self.owner, &path, done, Default::default())
                .await
                .unwrap();
        });
    }
}

fn pipeline(c: &mut Criterion) {
    const LEN: usize = 64 << 20;
    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(LEN as u64));

    let rig = rig();
    let mut seed = 1;
    g.bench_function("unique_random", |b| {
        b.iter_batched(
            || {
                seed += 1;
                random(LEN, seed)
            },
            |data| rig.session("r", &data),
            criterion::BatchSize::LargeInput,
        )
    });

    let text = compressible(LEN);
    let mut n = 0u8;
    g.bench_function("unique_compressible", |b| {
        b.iter_batched(
            || {
                // A different first byte per round shifts every chunk's
                // content, so nothing dedups against the previous round.
                n = n.wrapping_add(1);
                let mut v = vec![n; 1 + n as usize % 7];
                v.extend_from_slice(&text);
                v.truncate(LEN);
                v
            },
            |data| rig.session("c", &data),
            criterion::BatchSize::LargeInput,
        )
    });

    let dup = random(LEN, 4242);
    rig.session("dup-original", &dup);
    g.bench_function("duplicate", |b| b.iter(|| rig.session("dup-copy", &dup)));

    // The content-defined chunker alone (one core), fed 256 KiB pieces.
    let cdc = Cdc::new(
        MasterKey::from_bytes([7; 32]).derive().gear,
        ChunkSizes {
            min: 256 << 10,
            avg: 1 << 20,
            max: 4 << 20,
        },
    );
    g.bench_function("chunking", |b| {
        b.iter(|| {
            let mut chunker = Chunker::new(cdc.clone());
            let mut n = 0;
            for piece in dup.chunks(256 << 10) {
                n += chunker.push(piece).len();
            }
            n + chunker.finish().len()
        })
    });
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
