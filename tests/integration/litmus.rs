//! litmus, the WebDAV conformance suite, against the gateway: every suite
//! must pass, on both backends.

use std::process::Command;

use crate::common::gateway::TestGateway;

on_both_backends!(litmus_passes_every_suite);

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
    for suite in ["basic", "copymove", "props", "locks", "http"] {
        let line = text
            .lines()
            .find(|l| l.contains(&format!("summary for `{suite}'")))
            .unwrap_or_else(|| panic!("suite {suite} did not run:\n{text}"));
        assert!(line.contains(" 0 failed"), "{suite}: {line}\n{text}");
    }
    assert!(out.status.success(), "litmus failed:\n{text}");
}
