//! The console's history in the redb engine: the local `history` table,
//! Unix seconds → sample, trimmed to the newest samples in the
//! transaction that adds one.

use redb::ReadableTableMetadata;

use super::Index;
use crate::meta::history::HistorySample;
use crate::meta::IndexError;

impl Index {
    /// Adds `sample` and drops the oldest beyond `keep`, in one
    /// transaction.
    pub fn record_history(&self, sample: &HistorySample, keep: u64) -> Result<(), IndexError> {
        self.write(|t| {
            t.history.insert(sample.at, sample.encode().as_slice())?;
            let mut len = t.history.len()?;
            while len > keep {
                if t.history.pop_first()?.is_none() {
                    break;
                }
                len -= 1;
            }
            Ok(())
        })
    }

    /// The samples taken at `since` (Unix seconds) or later, oldest first.
    pub fn history_since(&self, since: i64) -> Result<Vec<HistorySample>, IndexError> {
        self.read(|t| {
            let mut out = Vec::new();
            for row in t.history()?.range(since..)? {
                let (k, v) = row?;
                out.push(HistorySample::decode(k.value(), v.value())?);
            }
            Ok(out)
        })
    }
}
