//! Conformance cases for the scrub's records: the position of the pass in
//! progress (what a restart resumes from), its findings, their bound, and
//! what a finished pass keeps.

use super::*;
use crate::meta::scrub::MAX_FINDINGS;
use crate::meta::{ScrubFinding, ScrubProblem, ScrubState};

/// A finding of pass `pass`.
fn finding(id: [u8; 32], problem: ScrubProblem, pass: u64) -> ScrubFinding {
    ScrubFinding {
        id,
        problem,
        found: 100 * pass + 10,
        pass,
        detail: format!("{problem:?} in pass {pass}"),
    }
}

fn ids(findings: &[ScrubFinding]) -> Vec<[u8; 32]> {
    findings.iter().map(|f| f.id).collect()
}

pub(super) async fn a_scrub_pass_records_its_position_and_findings(meta: Meta) {
    assert_eq!(meta.scrub_state().await.unwrap(), ScrubState::default());
    let started = meta.start_scrub_pass(100).await.unwrap();
    assert!(started.in_pass() && started.position.is_none());
    assert_eq!(started.pass, 1);

    let found = [finding([2; 32], ScrubProblem::Corrupt, 1)];
    let state = meta
        .record_scrub_batch([2; 32], 2, &found, &[[1; 32]])
        .await
        .unwrap();
    assert_eq!((state.position, state.checked), (Some([2; 32]), 2));
    let missing = [finding([5; 32], ScrubProblem::Missing, 1)];
    meta.record_scrub_batch([5; 32], 3, &missing, &[[3; 32], [4; 32]])
        .await
        .unwrap();
    let state = meta.scrub_state().await.unwrap();
    assert_eq!(
        (state.pass_started, state.position, state.checked),
        (100, Some([5; 32]), 5),
        "read back as a restart would"
    );
    let kept = meta.scrub_findings(10).await.unwrap();
    assert_eq!(kept, [found[0].clone(), missing[0].clone()]);
    assert_eq!(meta.scrub_findings(1).await.unwrap().len(), 1);

    // Read back whole later in the pass: its finding goes.
    meta.record_scrub_batch([6; 32], 1, &[], &[[2; 32]])
        .await
        .unwrap();
    assert_eq!(ids(&meta.scrub_findings(10).await.unwrap()), [[5; 32]]);
}

pub(super) async fn a_finished_pass_keeps_only_what_it_confirmed(meta: Meta) {
    meta.start_scrub_pass(100).await.unwrap();
    let first = [
        finding([1; 32], ScrubProblem::Corrupt, 1),
        finding([2; 32], ScrubProblem::Missing, 1),
    ];
    meta.record_scrub_batch([2; 32], 2, &first, &[])
        .await
        .unwrap();
    let done = meta.finish_scrub_pass(150).await.unwrap();
    assert!(!done.in_pass());
    assert_eq!(
        (
            done.last_pass_finished,
            done.last_pass_checked,
            done.checked
        ),
        (150, 2, 0)
    );
    assert_eq!(meta.scrub_findings(10).await.unwrap().len(), 2);

    // The next pass confirms chunk 2 only; chunk 1 is not seen again.
    // (In the same second: passes are told apart by number, not time.)
    let second = meta.start_scrub_pass(150).await.unwrap();
    assert_eq!(second.pass, 2);
    let again = [finding([2; 32], ScrubProblem::Missing, 2)];
    meta.record_scrub_batch([2; 32], 1, &again, &[])
        .await
        .unwrap();
    meta.finish_scrub_pass(150).await.unwrap();
    assert_eq!(meta.scrub_findings(10).await.unwrap(), again);
    let state = meta.scrub_state().await.unwrap();
    let last = (
        state.pass,
        state.last_pass_finished,
        state.last_pass_checked,
    );
    assert_eq!(last, (2, 150, 1));
}

pub(super) async fn scrub_findings_are_bounded(meta: Meta) {
    meta.start_scrub_pass(100).await.unwrap();
    let many: Vec<ScrubFinding> = (0..MAX_FINDINGS + 5)
        .map(|i| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            finding(id, ScrubProblem::Corrupt, 1)
        })
        .collect();
    meta.record_scrub_batch([9; 32], many.len() as u64, &many, &[])
        .await
        .unwrap();
    let kept = meta.scrub_findings(usize::MAX).await.unwrap();
    assert_eq!(kept.len(), MAX_FINDINGS);
    // A finding already kept is still updated when the list is full.
    let worse = finding(many[0].id, ScrubProblem::Missing, 1);
    meta.record_scrub_batch([9; 32], 1, std::slice::from_ref(&worse), &[])
        .await
        .unwrap();
    assert_eq!(meta.scrub_findings(1).await.unwrap(), [worse]);
}
