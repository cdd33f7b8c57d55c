//! The redb side of the scrub's records (`meta::scrub`): the state of the
//! pass in progress in the `scrub` table, the findings in `scrub_findings`.
//! Each operation is one transaction, so a batch's position and its
//! findings are saved together: a restart resumes after the last batch
//! whose findings are recorded, never after one whose findings are lost.

use redb::{ReadableTable, ReadableTableMetadata};

use super::tables::KEY_SCRUB_PASS;
use super::tx::WriteTables;
use super::Index;
use crate::meta::scrub::{ScrubFinding, ScrubState, MAX_FINDINGS};
use crate::meta::IndexError;

impl Index {
    /// Where the scrub stands (all zero before its first pass).
    pub fn scrub_state(&self) -> Result<ScrubState, IndexError> {
        self.read(|t| match t.scrub()?.get(KEY_SCRUB_PASS)? {
            Some(v) => ScrubState::decode(v.value()),
            None => Ok(ScrubState::default()),
        })
    }

    /// Starts the next pass at `now`, from the first chunk.
    pub fn start_scrub_pass(&self, now: u64) -> Result<ScrubState, IndexError> {
        self.write(|t| {
            let old = state_in(t)?;
            let state = ScrubState {
                pass: old.pass + 1,
                pass_started: now.max(1),
                position: None,
                checked: 0,
                ..old
            };
            put_state(t, &state)?;
            Ok(state)
        })
    }

    /// Records one batch of the pass: it checked `checked` objects up to
    /// and including `position`; `found` are its findings (kept while
    /// fewer than [`MAX_FINDINGS`] are), `sound` the objects it read back
    /// whole (their earlier findings go).
    pub fn record_scrub_batch(
        &self,
        position: [u8; 32],
        checked: u64,
        found: &[ScrubFinding],
        sound: &[[u8; 32]],
    ) -> Result<ScrubState, IndexError> {
        self.write(|t| {
            for id in sound {
                t.scrub_findings.remove(id.as_slice())?;
            }
            for f in found {
                let known = t.scrub_findings.get(f.id.as_slice())?.is_some();
                if known || (t.scrub_findings.len()? as usize) < MAX_FINDINGS {
                    t.scrub_findings
                        .insert(f.id.as_slice(), f.encode().as_slice())?;
                }
            }
            let mut state = state_in(t)?;
            state.position = Some(position);
            state.checked += checked;
            put_state(t, &state)?;
            Ok(state)
        })
    }

    /// Ends the pass in progress at `now`. Findings of earlier passes were
    /// not confirmed by it (the chunk is gone, or its object reads back
    /// whole now) and are dropped.
    pub fn finish_scrub_pass(&self, now: u64) -> Result<ScrubState, IndexError> {
        self.write(|t| {
            let old = state_in(t)?;
            let stale: Vec<Vec<u8>> = t
                .scrub_findings
                .iter()?
                .filter_map(|row| match row {
                    Ok((k, v)) => stale_key(k.value(), v.value(), old.pass).map(Ok),
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, _>>()?;
            for k in stale {
                t.scrub_findings.remove(k.as_slice())?;
            }
            let state = ScrubState {
                pass: old.pass,
                pass_started: 0,
                position: None,
                checked: 0,
                last_pass_finished: now.max(1),
                last_pass_checked: old.checked,
            };
            put_state(t, &state)?;
            Ok(state)
        })
    }

    /// The findings kept, in chunk-id order, at most `limit`.
    pub fn scrub_findings(&self, limit: usize) -> Result<Vec<ScrubFinding>, IndexError> {
        self.read(|t| {
            let mut out = Vec::new();
            for row in t.scrub_findings()?.iter()?.take(limit) {
                let (k, v) = row?;
                let id = k.value().try_into().map_err(|_| IndexError::Corrupt {
                    table: "scrub_findings",
                    cause: format!("a key of {} bytes, not 32", k.value().len()),
                })?;
                out.push(ScrubFinding::decode(id, v.value())?);
            }
            Ok(out)
        })
    }
}

fn state_in(t: &WriteTables<'_>) -> Result<ScrubState, IndexError> {
    match t.scrub.get(KEY_SCRUB_PASS)? {
        Some(v) => ScrubState::decode(v.value()),
        None => Ok(ScrubState::default()),
    }
}

fn put_state(t: &mut WriteTables<'_>, state: &ScrubState) -> Result<(), IndexError> {
    t.scrub.insert(KEY_SCRUB_PASS, state.encode().as_slice())?;
    Ok(())
}

/// The key of a finding not made by pass `pass` (an unreadable record
/// counts as stale too: it is dropped rather than kept forever).
fn stale_key(key: &[u8], value: &[u8], pass: u64) -> Option<Vec<u8>> {
    let fresh = key
        .try_into()
        .ok()
        .and_then(|id| ScrubFinding::decode(id, value).ok())
        .is_some_and(|f| f.pass == pass);
    (!fresh).then(|| key.to_vec())
}
