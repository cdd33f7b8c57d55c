//! Request and connection counters, exported in the Prometheus text format
//! at `/metrics`.
//!
//! Every label set is bounded: requests are keyed by one of the methods
//! WebDAV and ownCloud clients use (anything else counts as `OTHER`) and by
//! status code, so invented method names cannot grow the table or the reply
//! (400 requests with 60 KB method names once added 25 MB to both). The
//! request log shows an unknown method cut to [`LOGGED_METHOD_CHARS`].
//! Background jobs are keyed by their fixed names (`jobs::gc::NAME`, …).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;

use super::listener::Stalled;
use crate::jobs::JobState;
use crate::meta::Stats;

/// The methods counted under their own name.
const KNOWN_METHODS: [&str; 16] = [
    "GET",
    "HEAD",
    "PUT",
    "POST",
    "DELETE",
    "OPTIONS",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "REPORT",
    "SEARCH",
    "PATCH",
];

/// The label of every other method.
const OTHER: &str = "OTHER";

/// How much of an unknown method the request log shows.
pub const LOGGED_METHOD_CHARS: usize = 16;

/// The metrics label of `method`: its own name if known, else `OTHER`.
pub fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or(OTHER)
}

/// `method` as the request log shows it: a known one whole, any other cut
/// to [`LOGGED_METHOD_CHARS`] characters with `…` after the cut.
pub fn method_for_log(method: &str) -> Cow<'_, str> {
    if method_label(method) != OTHER || method.chars().count() <= LOGGED_METHOD_CHARS {
        return Cow::Borrowed(method);
    }
    let mut cut: String = method.chars().take(LOGGED_METHOD_CHARS).collect();
    cut.push('…');
    Cow::Owned(cut)
}

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    connections: ConnectionCounters,
}

/// What the accept loop and the connection watchdog saw.
#[derive(Default)]
struct ConnectionCounters {
    open: AtomicU64,
    accepted: AtomicU64,
    refused_per_address: AtomicU64,
    accept_errors: AtomicU64,
    header_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
    body_timeouts: AtomicU64,
}

impl Metrics {
    pub fn observe(&self, method: &str, status: u16) {
        *self
            .requests
            .lock()
            .entry((method_label(method), status))
            .or_insert(0) += 1;
    }

    /// Every request served since the process started (the console's
    /// request-rate history reads this).
    pub fn requests_total(&self) -> u64 {
        self.requests.lock().values().sum()
    }

    /// How many requests with this method (or, for an unknown one, with
    /// any unknown method) got this status.
    pub fn count(&self, method: &str, status: u16) -> u64 {
        self.requests
            .lock()
            .get(&(method_label(method), status))
            .copied()
            .unwrap_or(0)
    }

    pub fn connection_opened(&self) {
        self.connections.accepted.fetch_add(1, Relaxed);
        self.connections.open.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.open.fetch_sub(1, Relaxed);
    }

    /// A connection closed at once: its address had too many open.
    pub fn connection_refused(&self) {
        self.connections.refused_per_address.fetch_add(1, Relaxed);
    }

    pub fn accept_failed(&self) {
        self.connections.accept_errors.fetch_add(1, Relaxed);
    }

    pub fn connection_timed_out(&self, phase: Stalled) {
        let counter = match phase {
            Stalled::Header => &self.connections.header_timeouts,
            Stalled::Idle => &self.connections.idle_timeouts,
            Stalled::Body => &self.connections.body_timeouts,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Connections closed because `phase` passed its timeout.
    pub fn timeouts(&self, phase: Stalled) -> u64 {
        match phase {
            Stalled::Header => &self.connections.header_timeouts,
            Stalled::Idle => &self.connections.idle_timeouts,
            Stalled::Body => &self.connections.body_timeouts,
        }
        .load(Relaxed)
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
        self.render_connections(&mut out);
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
                gauge(&mut out, name, help, v);
            }
        }
        out
    }

    fn render_connections(&self, out: &mut String) {
        let c = &self.connections;
        gauge(
            out,
            "connections_open",
            "Client connections open now.",
            c.open.load(Relaxed),
        );
        for (name, help, v) in [
            (
                "connections_accepted_total",
                "Client connections accepted.",
                &c.accepted,
            ),
            (
                "connections_refused_total",
                "Connections closed at once: their address had limits.max_connections_per_address open.",
                &c.refused_per_address,
            ),
            (
                "accept_errors_total",
                "Failed accepts (e.g. out of file descriptors); each backs off.",
                &c.accept_errors,
            ),
        ] {
            let _ = writeln!(out, "# HELP dedupdav_{name} {help}");
            let _ = writeln!(out, "# TYPE dedupdav_{name} counter");
            let _ = writeln!(out, "dedupdav_{name} {}", v.load(Relaxed));
        }
        out.push_str(
            "# HELP dedupdav_connection_timeouts_total Connections closed by a timeout, by phase.\n",
        );
        out.push_str("# TYPE dedupdav_connection_timeouts_total counter\n");
        for (phase, v) in [
            ("header", &c.header_timeouts),
            ("idle", &c.idle_timeouts),
            ("body", &c.body_timeouts),
        ] {
            let _ = writeln!(
                out,
                "dedupdav_connection_timeouts_total{{phase=\"{phase}\"}} {}",
                v.load(Relaxed)
            );
        }
    }
}

/// A job metric: name, type, help, and its value in a job's state.
type JobSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&JobState) -> u64,
);

/// Appends the background jobs' counters, one series per job.
pub fn render_jobs(out: &mut String, jobs: &[(&'static str, JobState)]) {
    let unix = |t: Option<std::time::SystemTime>| {
        t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    };
    let series: [JobSeries; 4] = [
        (
            "job_runs_total",
            "counter",
            "Background job runs finished.",
            |s| s.runs,
        ),
        (
            "job_errors_total",
            "counter",
            "Background job batches that failed.",
            |s| s.errors_total,
        ),
        (
            "job_items_total",
            "counter",
            "Items background jobs handled (objects deleted, sessions expired).",
            |s| s.items_total,
        ),
        (
            "job_running",
            "gauge",
            "1 while a background job runs.",
            |s| u64::from(s.running),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = writeln!(out, "# HELP dedupdav_{name} {help}");
        let _ = writeln!(out, "# TYPE dedupdav_{name} {kind}");
        for (job, state) in jobs {
            let _ = writeln!(out, "dedupdav_{name}{{job=\"{job}\"}} {}", value(state));
        }
    }
    let name = "job_last_success_timestamp_seconds";
    let _ = writeln!(out, "# HELP dedupdav_{name} When a background job last finished a run without error (Unix seconds; 0 = never).");
    let _ = writeln!(out, "# TYPE dedupdav_{name} gauge");
    for (job, state) in jobs {
        let _ = writeln!(
            out,
            "dedupdav_{name}{{job=\"{job}\"}} {}",
            unix(state.last_success)
        );
    }
    for counter in jobs.iter().flat_map(|(_, state)| &state.counters) {
        let kind = if counter.gauge { "gauge" } else { "counter" };
        let name = counter.name;
        let _ = writeln!(out, "# HELP dedupdav_{name} {}", counter.help);
        let _ = writeln!(out, "# TYPE dedupdav_{name} {kind}");
        let _ = writeln!(out, "dedupdav_{name} {}", counter.value);
    }
}

fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP dedupdav_{name} {help}");
    let _ = writeln!(out, "# TYPE dedupdav_{name} gauge");
    let _ = writeln!(out, "dedupdav_{name} {v}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        let m = Metrics::default();
        m.observe("PROPFIND", 207);
        m.observe("FROB", 405);
        m.observe(&"X".repeat(60_000), 405);
        assert_eq!(m.count("PROPFIND", 207), 1);
        assert_eq!(m.count("OTHER", 405), 2);
        assert_eq!(m.count("ANYTHING", 405), 2);
        let text = m.render(None);
        assert!(
            text.contains("method=\"OTHER\",status=\"405\"} 2"),
            "{text}"
        );
        assert!(!text.contains("FROB"));
        assert!(text.len() < 4096);
    }

    #[test]
    fn jobs_are_one_series_each() {
        let gc = JobState {
            runs: 3,
            items_total: 7,
            errors_total: 1,
            running: true,
            last_success: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(42)),
            counters: vec![crate::jobs::JobCounter {
                name: "gc_probe_total",
                help: "A job's own counter.",
                gauge: false,
                value: 5,
            }],
            ..JobState::default()
        };
        let mut text = String::new();
        render_jobs(
            &mut text,
            &[("gc", gc), ("expire_uploads", JobState::default())],
        );
        for line in [
            "dedupdav_job_runs_total{job=\"gc\"} 3",
            "dedupdav_job_items_total{job=\"gc\"} 7",
            "dedupdav_job_errors_total{job=\"gc\"} 1",
            "dedupdav_job_running{job=\"gc\"} 1",
            "dedupdav_job_last_success_timestamp_seconds{job=\"gc\"} 42",
            "dedupdav_job_last_success_timestamp_seconds{job=\"expire_uploads\"} 0",
            "# TYPE dedupdav_gc_probe_total counter",
            "dedupdav_gc_probe_total 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }

    #[test]
    fn the_log_cuts_unknown_methods() {
        assert_eq!(method_for_log("PROPPATCH"), "PROPPATCH");
        assert_eq!(method_for_log("FROB"), "FROB");
        let long = "Y".repeat(60_000);
        let logged = method_for_log(&long);
        assert_eq!(logged, format!("{}…", "Y".repeat(LOGGED_METHOD_CHARS)));
    }
}
