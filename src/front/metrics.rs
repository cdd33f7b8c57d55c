//! Request counters, exported in the Prometheus text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;

use parking_lot::Mutex;

use crate::index::Stats;

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
}

impl Metrics {
    pub fn observe(&self, method: &str, status: u16) {
        *self
            .requests
            .lock()
            .entry((method.to_string(), status))
            .or_insert(0) += 1;
    }

    /// How many requests with this method got this status.
    pub fn count(&self, method: &str, status: u16) -> u64 {
        self.requests
            .lock()
            .get(&(method.to_string(), status))
            .copied()
            .unwrap_or(0)
    }

    pub fn render(&self, stats: Option<&Stats>) -> String {
        let mut out = String::new();
        out.push_str("# HELP dedupdav_requests_total HTTP requests by method and status.\n");
        out.push_str("# TYPE dedupdav_requests_total counter\n");
        for ((m, s), n) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "dedupdav_requests_total{{method=\"{m}\",status=\"{s}\"}} {n}"
            );
        }
        if let Some(st) = stats {
            for (name, help, v) in [
                ("users", "Accounts.", st.users),
                ("files", "Files across all users.", st.files),
                (
                    "logical_bytes",
                    "Sum of all users' file sizes.",
                    st.logical_bytes,
                ),
                (
                    "stored_bytes",
                    "Bytes of objects in the backend.",
                    st.stored_bytes,
                ),
                ("chunks", "Unique chunks stored.", st.chunks),
            ] {
                let _ = writeln!(out, "# HELP dedupdav_{name} {help}");
                let _ = writeln!(out, "# TYPE dedupdav_{name} gauge");
                let _ = writeln!(out, "dedupdav_{name} {v}");
            }
        }
        out
    }
}
