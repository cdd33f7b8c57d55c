//! What the metadata keeps for the scrub (the background job that reads
//! every object back, `jobs::scrub`): where the pass in progress stands,
//! so a restart resumes instead of starting over, and what it found, so
//! the admin (`dedupdav check`, `/metrics`, the log) learns of a corrupt or
//! missing object before a user does.
//!
//! Findings are kept per chunk and bounded ([`MAX_FINDINGS`]): a finding is
//! dropped when a later read of the object is sound, or when a whole pass
//! ends without confirming it (the chunk is gone, or its object was
//! restored). Passes are numbered and each finding carries the number of
//! the pass that made it, so "not confirmed" does not depend on the clock. Beyond the bound new findings are only logged. The state and
//! the findings are records of their own, not counters in memory, because
//! `check` runs in another process and a restart must not forget them.

use super::IndexError;

/// Findings kept at most; every finding is logged whether kept or not.
pub const MAX_FINDINGS: usize = 1000;

/// The longest detail kept with a finding, in bytes.
const DETAIL_MAX: usize = 200;

/// Where the scrub stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubState {
    /// The number of the pass in progress, or of the last one (the first
    /// is 1).
    pub pass: u64,
    /// Unix time (s) the pass in progress started; 0 when none is.
    pub pass_started: u64,
    /// The last chunk id the pass in progress checked: it goes on after it.
    pub position: Option<[u8; 32]>,
    /// Objects the pass in progress checked so far.
    pub checked: u64,
    /// Unix time (s) the last complete pass ended; 0 = never.
    pub last_pass_finished: u64,
    /// Objects the last complete pass checked.
    pub last_pass_checked: u64,
}

const STATE_LEN: usize = 8 * 5 + 1 + 32;

impl ScrubState {
    /// Whether a pass is in progress.
    pub fn in_pass(&self) -> bool {
        self.pass_started != 0
    }

    /// Fixed layout: five u64 LE (pass, pass started, checked, last
    /// finished, last checked), a flag byte, the position (zeros when
    /// none).
    pub fn encode(&self) -> [u8; STATE_LEN] {
        let mut out = [0u8; STATE_LEN];
        let fields = [
            self.pass,
            self.pass_started,
            self.checked,
            self.last_pass_finished,
            self.last_pass_checked,
        ];
        for (i, v) in fields.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        if let Some(p) = &self.position {
            out[40] = 1;
            out[41..].copy_from_slice(p);
        }
        out
    }

    pub fn decode(b: &[u8]) -> Result<Self, IndexError> {
        if b.len() != STATE_LEN {
            return Err(corrupt("scrub", format!("state of {} bytes", b.len())));
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(a)
        };
        let position = match b[40] {
            0 => None,
            1 => b[41..].try_into().ok(),
            f => return Err(corrupt("scrub", format!("position flag {f}"))),
        };
        Ok(Self {
            pass: u64_at(0),
            pass_started: u64_at(1),
            checked: u64_at(2),
            last_pass_finished: u64_at(3),
            last_pass_checked: u64_at(4),
            position,
        })
    }
}

/// What was wrong with an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScrubProblem {
    /// The backend does not have it.
    Missing,
    /// It does not open: not our format, failed authentication, or its
    /// content does not hash to its chunk id.
    Corrupt,
}

/// One object the scrub found missing or corrupt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrubFinding {
    pub id: [u8; 32],
    pub problem: ScrubProblem,
    /// Unix time (s) it was (last) found.
    pub found: u64,
    /// The pass that found it ([`ScrubState::pass`]).
    pub pass: u64,
    /// What failed, in words (cut to 200 bytes).
    pub detail: String,
}

impl ScrubFinding {
    /// Layout: problem byte, found u64 LE, pass u64 LE, the detail's UTF-8
    /// bytes.
    pub fn encode(&self) -> Vec<u8> {
        let detail = cut(&self.detail, DETAIL_MAX);
        let mut out = Vec::with_capacity(17 + detail.len());
        out.push(match self.problem {
            ScrubProblem::Missing => 1,
            ScrubProblem::Corrupt => 2,
        });
        out.extend_from_slice(&self.found.to_le_bytes());
        out.extend_from_slice(&self.pass.to_le_bytes());
        out.extend_from_slice(detail.as_bytes());
        out
    }

    pub fn decode(id: [u8; 32], b: &[u8]) -> Result<Self, IndexError> {
        if b.len() < 17 {
            return Err(corrupt("scrub_findings", "record shorter than 17 bytes"));
        }
        let problem = match b[0] {
            1 => ScrubProblem::Missing,
            2 => ScrubProblem::Corrupt,
            p => return Err(corrupt("scrub_findings", format!("problem {p}"))),
        };
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let detail = std::str::from_utf8(&b[17..])
            .map_err(|e| corrupt("scrub_findings", e))?
            .to_string();
        Ok(Self {
            id,
            problem,
            found: u64_at(1),
            pass: u64_at(9),
            detail,
        })
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn corrupt(table: &'static str, e: impl std::fmt::Display) -> IndexError {
    IndexError::Corrupt {
        table,
        cause: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_and_findings_round_trip() {
        let state = ScrubState {
            pass: 2,
            pass_started: 7,
            position: Some([3; 32]),
            checked: 11,
            last_pass_finished: 5,
            last_pass_checked: 13,
        };
        assert_eq!(ScrubState::decode(&state.encode()).unwrap(), state);
        let none = ScrubState::default();
        assert_eq!(ScrubState::decode(&none.encode()).unwrap(), none);
        assert!(ScrubState::decode(&[0; 10]).is_err());

        let long = "é".repeat(150);
        let f = ScrubFinding {
            id: [9; 32],
            problem: ScrubProblem::Corrupt,
            found: 42,
            pass: 3,
            detail: long.clone(),
        };
        let back = ScrubFinding::decode([9; 32], &f.encode()).unwrap();
        let fields = (back.problem, back.found, back.pass);
        assert_eq!(fields, (ScrubProblem::Corrupt, 42, 3));
        assert_eq!(back.detail, "é".repeat(100), "cut at a character boundary");
        assert!(ScrubFinding::decode([9; 32], &[3; 17]).is_err());
        assert!(ScrubFinding::decode([9; 32], &[1; 16]).is_err());
    }
}
