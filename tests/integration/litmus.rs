//! litmus, the WebDAV conformance suite, against the gateway: every suite
//! must pass without a single failure or warning, on both backends.

use std::process::Command;

use crate::common::gateway::TestGateway;

on_both_backends!(litmus_passes_every_suite);

const SUITES: [&str; 5] = ["basic", "copymove", "props", "locks", "http"];

fn litmus_passes_every_suite(gw: TestGateway) {
    gw.add_user("litmus", "litmus-pw");
    let url = format!("{}/remote.php/dav/files/litmus/", gw.base);
    // litmus writes debug.log into its working directory.
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .current_dir(scratch.path())
        .args(["600", "litmus", &url, "litmus", "litmus-pw"])
        .output()
        .expect("litmus is not installed: run the README test command, which installs it");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_ne!(
        out.status.code(),
        Some(127),
        "litmus is not installed: {text}"
    );
    let mut run = 0;
    for suite in SUITES {
        let summary = Summary::of(&text, suite);
        assert_eq!(summary.failed, 0, "{suite} failed:\n{text}");
        assert_eq!(summary.warnings, 0, "{suite} warned:\n{text}");
        assert_eq!(summary.passed, summary.run, "{suite}:\n{text}");
        run += summary.run;
    }
    assert_eq!(run, 104, "litmus ran another number of tests:\n{text}");
    assert!(out.status.success(), "litmus failed:\n{text}");
}

/// One suite's summary, e.g.
/// ``<- summary for `props': of 30 tests run: 30 passed, 0 failed. 100.0%``
/// and, when there were any, `-> 11 warnings were issued.` after it.
struct Summary {
    run: u32,
    passed: u32,
    failed: u32,
    warnings: u32,
}

impl Summary {
    fn of(text: &str, suite: &str) -> Self {
        let mut lines = text
            .lines()
            .skip_while(|l| !l.contains(&format!("summary for `{suite}'")));
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("suite {suite} did not run:\n{text}"));
        let number_before = |word: &str| -> u32 {
            let head = line
                .split(word)
                .next()
                .unwrap_or_else(|| panic!("no `{word}` in {line:?}"));
            head.split_whitespace()
                .last()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no count before `{word}` in {line:?}"))
        };
        let warnings = lines
            .next()
            .filter(|l| l.contains("warning"))
            .map_or(0, |l| {
                l.split_whitespace()
                    .find_map(|w| w.parse().ok())
                    .unwrap_or_else(|| panic!("unreadable warning count: {l:?}"))
            });
        Self {
            run: number_before(" tests run"),
            passed: number_before(" passed"),
            failed: number_before(" failed"),
            warnings,
        }
    }
}
