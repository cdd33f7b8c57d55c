//! The dependency rule written at the top of `src/lib.rs`, checked on the
//! source: each top-level module imports only the modules below it, and
//! the two libraries we adapt are named only inside their adapters (`redb`
//! in `meta/redb/`, `dav_server` in `webdav/`). A new import that breaks
//! the rule fails here with the file and line.

use std::path::{Path, PathBuf};

/// Helpers any module may use.
const ANYWHERE: &[&str] = &["clock", "xml_escape"];

/// Each top-level module and the modules it may import, top to bottom.
const ALLOWED: &[(&str, &[&str])] = &[
    ("fuzzing", &["*"]),
    ("http", &["*"]),
    (
        "app",
        &[
            "webdav", "owncloud", "jobs", "accounts", "files", "config", "store", "meta",
            "backend", "crypto",
        ],
    ),
    (
        "webdav",
        &["owncloud", "wire", "files", "store", "meta", "crypto"],
    ),
    ("owncloud", &["wire", "files", "store", "meta", "crypto"]),
    (
        "wire",
        &["config", "files", "store", "meta", "backend", "crypto"],
    ),
    ("jobs", &["config", "files", "store", "meta", "crypto"]),
    ("accounts", &["meta", "crypto"]),
    (
        "recovery",
        &["config", "store", "meta", "backend", "crypto"],
    ),
    ("files", &["store", "meta", "crypto"]),
    (
        "config",
        &["owncloud", "files", "store", "meta", "backend", "crypto"],
    ),
    ("store", &["meta", "backend", "crypto"]),
    ("meta", &["crypto"]),
    ("backend", &["crypto"]),
    ("crypto", &[]),
    ("clock", &[]),
    ("xml_escape", &[]),
];

/// (library path prefix, the only folder that may name it).
const ADAPTED: &[(&str, &str)] = &[("redb::", "meta/redb/"), ("dav_server::", "webdav/")];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for `lib.rs` and `main.rs`).
fn module_of(relative: &str) -> Option<&str> {
    let first = relative.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then_some(name)
}

/// The code of a line: nothing after `//`.
fn code(line: &str) -> &str {
    line.split("//").next().unwrap_or("")
}

/// Every `crate::<module>` a line names.
fn crate_modules(line: &str) -> Vec<&str> {
    code(line)
        .match_indices("crate::")
        .filter(|(at, _)| !line[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .filter_map(|(at, _)| {
            let rest = &line[at + "crate::".len()..];
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
            Some(&rest[..end])
        })
        .collect()
}

fn each_line(mut visit: impl FnMut(&str, usize, &str)) {
    let root = src();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(files.len() > 50, "found only {} source files", files.len());
    for file in files {
        let relative = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            visit(&relative, n + 1, line);
        }
    }
}

#[test]
fn modules_import_only_what_lies_below_them() {
    let mut broken = Vec::new();
    each_line(|file, n, line| {
        let Some(module) = module_of(file) else {
            return;
        };
        let allowed = ALLOWED
            .iter()
            .find(|(m, _)| *m == module)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("src/{file}: module {module} is missing from the rule"));
        for used in crate_modules(line) {
            let ok = used == module
                || ANYWHERE.contains(&used)
                || allowed.contains(&"*")
                || allowed.contains(&used);
            if !ok {
                broken.push(format!("src/{file}:{n}: {module} imports {used}"));
            }
        }
    });
    assert!(
        broken.is_empty(),
        "imports against the dependency rule:\n{}",
        broken.join("\n")
    );
}

/// Whether `line` names the library `library` (`redb::`) by a path of its
/// own: `use redb::…`, `redb::Error`, `::redb::…` — not our module of that
/// name (`self::redb::`, `super::redb::`) nor a word ending in it.
fn names_library(line: &str, library: &str) -> bool {
    let code = code(line);
    code.match_indices(library).any(|(at, _)| {
        let before = &code[..at];
        let ours = before.ends_with("self::") || before.ends_with("super::");
        let word = before.ends_with(|c: char| c.is_alphanumeric() || c == '_');
        !ours && !word
    })
}

#[test]
fn adapted_libraries_are_named_only_in_their_adapters() {
    let mut broken = Vec::new();
    each_line(|file, n, line| {
        for (library, home) in ADAPTED {
            if names_library(line, library) && !file.starts_with(home) {
                broken.push(format!(
                    "src/{file}:{n}: names {library} outside src/{home}"
                ));
            }
        }
    });
    assert!(
        broken.is_empty(),
        "adapted libraries named outside their adapter:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_rule_checks_the_source_it_claims_to() {
    // A check that reads nothing would pass on anything.
    assert_eq!(
        crate_modules("use crate::meta::{Meta, Node};"),
        vec!["meta"]
    );
    assert_eq!(
        crate_modules("x(dedupdav::meta::Node) // crate::http"),
        Vec::<&str>::new()
    );
    assert_eq!(module_of("meta/redb/tree.rs"), Some("meta"));
    assert_eq!(module_of("clock.rs"), Some("clock"));
    assert!(names_library(
        "use redb::{Database, ReadableTable};",
        "redb::"
    ));
    assert!(names_library("    e: redb::StorageError,", "redb::"));
    assert!(!names_library("use super::redb::Index;", "redb::"));
    assert!(!names_library(
        "let p = \"index.redb\"; // redb::",
        "redb::"
    ));
    let mut meta_lines = 0;
    each_line(|file, _, _| meta_lines += usize::from(file.starts_with("meta/redb/")));
    assert!(meta_lines > 500);
}
