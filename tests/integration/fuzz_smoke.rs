//! The short fuzzing run of the normal test suite (CI has no nightly
//! toolchain for `fuzz/`): every entry point of `dedupdav::fuzzing` gets
//! every seed of `fuzz/seeds/<target>/`, then a few hundred inputs made
//! from those seeds (cut, bit-flipped, fragments inserted, duplicated or
//! repeated thousands of times, spliced with another seed) and random
//! bytes. The generator is seeded, so a run is reproducible; set
//! `FUZZ_SMOKE_SEED=<number>` to explore other inputs. A failure prints the
//! smallest input proptest could shrink it to.

use std::path::{Path, PathBuf};

use dedupdav::fuzzing::{self, TARGETS};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

/// Generated inputs per target: the whole run stays within a few seconds
/// in the debug test profile.
const CASES: u32 = 2000;
/// Largest input a mutation may grow (bytes).
const MAX_INPUT: usize = 256 << 10;

/// Fragments that mean something to one of the parsers.
const FRAGMENTS: &[&str] = &[
    "<",
    ">",
    "</",
    "/>",
    "<D:prop>",
    "</D:prop>",
    "<d:prop xmlns:d=\"DAV:\">",
    "xmlns=\"\"",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?xml version=\"1.0\"?>",
    "<!DOCTYPE a>",
    "&amp;",
    "&#0;",
    "&#x10FFFF;",
    "&lol;",
    "\"",
    "'",
    "=",
    " ",
    "\n",
    "\0",
    "%",
    "%2f",
    "%2F",
    "%2e%2e",
    "%00",
    "%ff",
    "%C3%A9",
    "..",
    ".",
    "/",
    "//",
    "\\",
    "?",
    "#",
    ";",
    "://",
    "@",
    ",",
    "-",
    "bytes=",
    "18446744073709551615",
    "18446744073709551616",
    "0",
    "9",
    "[\"",
    "\"]",
    "(",
    ")",
    "<opaquelocktoken:",
    "TOKEN",
    "Not ",
    "format=json",
    "&",
    "SHA1:",
    "MD5:",
    "DDAV",
    "\u{feff}",
    "\u{202e}",
    "é",
];

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    FlipBit(usize, u8),
    Remove(usize, usize),
    Insert(usize, usize),
    Duplicate(usize, usize, usize),
    Repeat(usize, usize, usize),
    Splice(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let i = any::<usize>();
    prop_oneof![
        2 => i.prop_map(Mutation::Truncate),
        4 => (i, 0u8..8).prop_map(|(a, b)| Mutation::FlipBit(a, b)),
        2 => (i, 1usize..16).prop_map(|(a, b)| Mutation::Remove(a, b)),
        4 => (i, 0..FRAGMENTS.len()).prop_map(|(a, b)| Mutation::Insert(a, b)),
        2 => (i, 1usize..64, i).prop_map(|(a, b, c)| Mutation::Duplicate(a, b, c)),
        1 => (i, 1usize..32, 2usize..20_000).prop_map(|(a, b, c)| Mutation::Repeat(a, b, c)),
        1 => (i, i).prop_map(|(a, b)| Mutation::Splice(a, b)),
    ]
}

/// A position in `0..=len`.
fn at(i: usize, len: usize) -> usize {
    i % (len + 1)
}

fn apply(mut data: Vec<u8>, m: &Mutation, seeds: &[Vec<u8>]) -> Vec<u8> {
    let len = data.len();
    match *m {
        Mutation::Truncate(i) => data.truncate(at(i, len)),
        Mutation::FlipBit(i, bit) if len > 0 => data[i % len] ^= 1 << bit,
        Mutation::FlipBit(..) => {}
        Mutation::Remove(i, n) => {
            let start = at(i, len);
            data.drain(start..(start + n).min(len));
        }
        Mutation::Insert(i, f) => {
            let pos = at(i, len);
            data.splice(pos..pos, FRAGMENTS[f].bytes());
        }
        Mutation::Duplicate(i, n, to) => {
            let start = at(i, len);
            let piece = data[start..(start + n).min(len)].to_vec();
            let pos = at(to, len);
            data.splice(pos..pos, piece);
        }
        Mutation::Repeat(i, n, times) => {
            let start = at(i, len);
            let end = (start + n).min(len);
            let piece = data[start..end].to_vec();
            let times = times.min(MAX_INPUT / piece.len().max(1));
            data.splice(end..end, piece.repeat(times));
        }
        Mutation::Splice(i, s) if !seeds.is_empty() => {
            let other = &seeds[s % seeds.len()];
            data.truncate(at(i, len));
            data.extend_from_slice(&other[at(i, other.len())..]);
        }
        Mutation::Splice(..) => {}
    }
    data.truncate(MAX_INPUT);
    data
}

fn seed_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target)
}

/// The seed files of a target, by name.
fn seeds_of(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(seed_dir(target))
        .unwrap_or_else(|e| panic!("no seeds for {target}: {e}"))
        .map(|e| e.expect("a seed file").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let data = std::fs::read(&p).expect("a readable seed");
            (p, data)
        })
        .collect()
}

fn rng_seed() -> u64 {
    std::env::var("FUZZ_SMOKE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6465_6475_7064_6176)
}

/// Inputs for one target: its seeds mutated, or random bytes.
fn inputs(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    let mutated = (0..n, vec(mutation(), 1..6)).prop_map(move |(i, ms)| {
        ms.iter()
            .fold(seeds[i].clone(), |data, m| apply(data, m, &seeds))
    });
    prop_oneof![4 => mutated, 1 => vec(any::<u8>(), 0..512)]
}

fn smoke(target: &str, run: fn(&[u8])) {
    let files = seeds_of(target);
    assert!(!files.is_empty(), "{target} has no seeds");
    for (path, data) in &files {
        if std::panic::catch_unwind(|| run(data)).is_err() {
            panic!("{target} fails on the seed {path:?}");
        }
    }
    let seeds: Vec<Vec<u8>> = files.into_iter().map(|(_, d)| d).collect();
    let seed = rng_seed();
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..8 + target.len().min(24)].copy_from_slice(&target.as_bytes()[..target.len().min(24)]);
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &key);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let result = runner.run(&inputs(seeds), |input| {
        run(&input);
        Ok(())
    });
    if let Err(e) = result {
        let shown = match &e {
            TestError::Fail(why, input) => {
                format!("{why}; input {:?}", String::from_utf8_lossy(input))
            }
            TestError::Abort(why) => why.to_string(),
        };
        panic!("{target} (FUZZ_SMOKE_SEED={seed}): {shown}");
    }
}

macro_rules! smoke_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                smoke(stringify!($name), fuzzing::$name);
            }
        )*
        const SMOKED: &[&str] = &[$(stringify!($name)),*];
    };
}

smoke_tests!(
    xml_body,
    propfind_body,
    request_path,
    destination,
    if_header,
    range_header,
    ocs,
    upload_names,
    checksum_header,
    object,
    object_tamper,
    multistatus,
    metadata_objects,
    win32_proppatch,
    request_lines,
    pack,
);

/// Both runners cover every entry point: each has a test here, a libFuzzer
/// target in `fuzz/` and seeds.
#[test]
fn every_target_is_run_by_both_runners() {
    let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, SMOKED);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for name in names {
        let file = root.join("fuzz_targets").join(format!("{name}.rs"));
        let source = std::fs::read_to_string(&file).expect("a fuzz target file");
        assert!(
            source.contains(&format!("fuzzing::{name}(data)")),
            "{file:?}"
        );
        assert!(manifest.contains(&format!("name = \"{name}\"")), "{name}");
        assert!(seed_dir(name).is_dir(), "{name} has no seeds");
    }
}
