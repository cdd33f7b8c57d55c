//! End-to-end: deduplication across users, content-defined chunking, nothing
//! readable in the backend, tamper detection — over real HTTP against a
//! gateway on the embedded defaults.

use std::collections::HashSet;

use crate::common::gateway::{random_bytes, text_bytes, TestGateway};
use dedupdav::crypto::{ChunkId, MasterKey};
use dedupdav::store::{Cdc, Chunker};
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

on_both_backends!(
    two_users_same_file_is_stored_once,
    an_insertion_stores_only_nearby_chunks,
    nothing_in_the_backend_reveals_the_content,
    a_flipped_byte_fails_reads_that_touch_it_only
);

fn two_users_same_file_is_stored_once(gw: TestGateway) {
    gw.add_user("alice", "pw-alice");
    gw.add_user("bob", "pw-bob");
    let alice = gw.client("alice", "pw-alice");
    let bob = gw.client("bob", "pw-bob");
    let data = random_bytes(50 * MIB, 1);

    assert_eq!(alice.put("report.bin", data.clone()).status(), 201);
    let after_first = gw.stats();
    assert!(
        after_first.stored_bytes >= (50 * MIB) as u64,
        "random data does not shrink"
    );
    assert!(after_first.stored_bytes < (51 * MIB) as u64);

    assert_eq!(bob.put("other-name.bin", data.clone()).status(), 201);
    let after_second = gw.stats();
    assert_eq!(alice.get_bytes("report.bin").unwrap(), data);
    assert_eq!(bob.get_bytes("other-name.bin").unwrap(), data);

    let grown = after_second.stored_bytes - after_first.stored_bytes;
    assert!(
        grown < (MIB / 10) as u64,
        "second copy stored {grown} more bytes"
    );
    assert_eq!(after_second.logical_bytes, 2 * (50 * MIB) as u64);
    assert_eq!(after_second.files, 2);
}

fn an_insertion_stores_only_nearby_chunks(gw: TestGateway) {
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let data = random_bytes(50 * MIB, 2);
    assert_eq!(alice.put("v1.bin", data.clone()).status(), 201);
    let before = gw.stats().stored_bytes;

    let mut edited = data[..25 * MIB].to_vec();
    edited.extend_from_slice(&random_bytes(100, 99));
    edited.extend_from_slice(&data[25 * MIB..]);
    assert_eq!(alice.put("v2.bin", edited.clone()).status(), 201);
    let added = gw.stats().stored_bytes - before;
    assert!(
        added < (50 * MIB / 10) as u64,
        "100 inserted bytes cost {added} stored bytes"
    );
    assert_eq!(alice.get_bytes("v2.bin").unwrap(), edited);
    assert_eq!(alice.get_bytes("v1.bin").unwrap(), data);
}

/// The chunks the gateway makes of `data`, recomputed with its key.
fn chunks_of(gw: &TestGateway, data: &[u8]) -> (dedupdav::crypto::Keys, Vec<Vec<u8>>) {
    let text = std::fs::read_to_string(gw.master_key_path()).unwrap();
    let keys = MasterKey::parse(&text).unwrap().derive();
    let sizes = dedupdav::config::Config::default().chunk_sizes();
    let mut chunker = Chunker::new(Cdc::new(keys.gear.clone(), sizes));
    let mut chunks: Vec<Vec<u8>> = chunker.push(data).iter().map(|c| c.to_vec()).collect();
    chunks.extend(chunker.finish().iter().map(|c| c.to_vec()));
    (keys, chunks)
}

fn nothing_in_the_backend_reveals_the_content(gw: TestGateway) {
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let text = text_bytes(3 * MIB, 5);
    assert_eq!(alice.put("diary.txt", text.clone()).status(), 201);

    let windows: HashSet<&[u8]> = text.windows(32).collect();
    let files = gw.object_files();
    assert!(!files.is_empty());
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            !bytes.windows(32).any(|w| windows.contains(w)),
            "{} contains plaintext",
            f.display()
        );
    }

    let (keys, chunks) = chunks_of(&gw, &text);
    assert!(chunks.len() >= 2, "several chunks expected");
    let names: HashSet<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut plain_hashes: Vec<String> = chunks
        .iter()
        .map(|c| hex::encode(Sha256::digest(c)))
        .collect();
    plain_hashes.push(hex::encode(Sha256::digest(&text)));
    for h in &plain_hashes {
        assert!(!names.contains(h), "an object is named by a plain SHA-256");
    }
    // Every object is the keyed name of one of the file's chunks, or of
    // the pack holding it.
    let expected: HashSet<String> = chunks
        .iter()
        .map(|c| {
            let (file, _) = gw.sealed_range(&ChunkId::of(&keys, c));
            file.file_name().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    assert_eq!(names, expected);
    // No chunk id either (a pack's list of what it holds is sealed).
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for c in &chunks {
            let id = ChunkId::of(&keys, c).0;
            assert!(!bytes.windows(32).any(|w| w == id), "a chunk id in {f:?}");
        }
    }
    // No user or file name appears in any path.
    for f in &files {
        let rel = f
            .strip_prefix(&gw.objects_root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(!rel.contains("alice") && !rel.contains("diary"), "{rel}");
    }
}

fn a_flipped_byte_fails_reads_that_touch_it_only(gw: TestGateway) {
    gw.add_user("alice", "pw");
    let alice = gw.client("alice", "pw");
    let data = random_bytes(8 * MIB, 3);
    assert_eq!(alice.put("f.bin", data.clone()).status(), 201);

    let (keys, chunks) = chunks_of(&gw, &data);
    assert!(
        chunks.len() >= 3,
        "need several chunks, got {}",
        chunks.len()
    );
    // Corrupt the second chunk's sealed bytes (an object of its own, or
    // an entry of a pack).
    let (path, range) = gw.sealed_range(&ChunkId::of(&keys, &chunks[1]));
    let mut obj = std::fs::read(&path).unwrap();
    let mid = (range.start + range.end) / 2;
    obj[mid] ^= 0x01;
    std::fs::write(&path, obj).unwrap();

    // A whole-file read fails: never returns the file, never wrong bytes.
    match alice.get_bytes("f.bin") {
        Ok(body) => panic!("corrupt read returned {} bytes", body.len()),
        Err(e) => eprintln!("whole read failed as it must: {e}"),
    }
    // A range inside the first chunk still works.
    let first = chunks[0].len();
    let res = alice
        .request("GET", &alice.url("f.bin"))
        .header("Range", format!("bytes=0-{}", first - 1))
        .send()
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().unwrap().to_vec(), data[..first].to_vec());
    // So does a range inside the third chunk.
    let start = chunks[0].len() + chunks[1].len();
    let end = start + chunks[2].len() - 1;
    let res = alice
        .request("GET", &alice.url("f.bin"))
        .header("Range", format!("bytes={start}-{end}"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().unwrap().to_vec(), data[start..=end].to_vec());
    // A range touching the corrupt chunk fails.
    let res = alice
        .request("GET", &alice.url("f.bin"))
        .header("Range", format!("bytes={}-{}", first, first + 10))
        .send();
    let failed = match res {
        Err(_) => true,
        Ok(r) => !r.status().is_success() || r.bytes().is_err(),
    };
    assert!(failed, "a read of the corrupt chunk must fail");
}
