//! `/metrics`: the gateway's series in the Prometheus text format (0.0.4),
//! kept in a [`prometheus_client`] registry.
//!
//! Why prometheus-client: it is the Prometheus project's own Rust client,
//! maintained and current (0.26), with counters, gauges and histograms as
//! plain atomics behind an `Arc` that any layer can own without a registry,
//! typed label sets, a collector hook for values read at scrape time, and
//! an encoder for the text format every scraper reads. The `prometheus`
//! crate would need a process-wide registry and a protobuf dependency;
//! `metrics` + an exporter would add a global recorder and a second crate.
//!
//! What is registered, and who owns it:
//! - here: requests by method and status (`dedupdav_requests_total`), their
//!   latency by method and status class (`dedupdav_request_duration_seconds`,
//!   until the reply's head is ready: a download's streaming is not in it),
//!   request and response body bytes by method, and the connections the
//!   accept loop and watchdog saw (`listener.rs`);
//! - the layers below each own a handle of prometheus-client metrics and
//!   record into it; [`Metrics::new`] registers clones, so no lower layer
//!   names this one (the layer rule, `src/lib.rs`): upstream requests and
//!   the local object cache's hits and misses (`backend::metrics`), dedup hits and misses (`store::metrics`), index
//!   commit latency (`meta::metrics`);
//! - read at each scrape ([`Snapshot`], a collector): the usage gauges
//!   (`meta::Stats`) and every job's status and own counters
//!   (`jobs::JobStatus`).
//!
//! Every label set is bounded: requests are keyed by one of the methods
//! WebDAV and ownCloud clients use (anything else counts as `OTHER`) and by
//! status, so invented method names cannot grow the table or the reply
//! (400 requests with 60 KB method names once added 25 MB to both). The
//! request log shows an unknown method cut to [`LOGGED_METHOD_CHARS`].
//! Jobs are keyed by their fixed names; the lower layers' labels are enums.
//!
//! Who may scrape is decided here too ([`Metrics::bearer`]): an admin's
//! Basic auth, or the `metrics.bearer_token` (compared in constant time);
//! `listen.rs` serves the separate `metrics.listen` address.

mod listen;

use std::borrow::Cow;
use std::fmt::Write;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use sha2::{Digest, Sha256};

use super::listener::Stalled;
use crate::backend::metrics::{CacheMetrics, UpstreamMetrics};
use crate::config::MetricsConfig;
use crate::jobs::JobState;
use crate::meta::metrics::IndexMetrics;
use crate::meta::Stats;
use crate::store::metrics::StoreMetrics;
use crate::wire::reply::{error_response, GwBody};

/// Every series name starts with this (and `_`).
const PREFIX: &str = "dedupdav";

/// The `Content-Type` of a scrape's reply.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

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

/// A status's class: `1xx` … `5xx` (a code past 599 counts as `5xx`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
struct StatusClass(u16);

impl StatusClass {
    fn of(status: StatusCode) -> Self {
        Self((status.as_u16() / 100).clamp(1, 5))
    }
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        write!(encoder, "{}xx", self.0)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    method: &'static str,
    class: StatusClass,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

/// A request latency histogram: 1 ms to ~16 s, doubling.
fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// What the accept loop and the connection watchdog saw.
#[derive(Default)]
struct ConnectionCounters {
    open: Gauge,
    accepted: Counter,
    refused_per_address: Counter,
    accept_errors: Counter,
    timeouts: Family<PhaseLabels, Counter>,
}

/// The label of a timeout's phase.
fn phase_label(phase: Stalled) -> &'static str {
    match phase {
        Stalled::Header => "header",
        Stalled::Idle => "idle",
        Stalled::Body => "body",
        Stalled::Handshake => "handshake",
    }
}

/// The lower layers' handles, registered beside the service's own series.
#[derive(Default)]
pub struct Sources {
    pub upstream: Option<UpstreamMetrics>,
    pub cache: Option<CacheMetrics>,
    pub store: Option<StoreMetrics>,
    pub index: Option<IndexMetrics>,
}

/// What an `Authorization` header says about the metrics token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bearer {
    /// No bearer token (none at all, or Basic).
    Absent,
    /// A bearer token, and it is the configured one.
    Valid,
    /// A bearer token that is not the configured one (or none is set).
    Invalid,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// Every request counted in `requests`, summed (the console's
    /// request-rate history reads it without walking the family).
    requests_all: std::sync::atomic::AtomicU64,
    durations: Family<ClassLabels, Histogram, fn() -> Histogram>,
    request_bytes: Family<MethodLabels, Counter>,
    response_bytes: Family<MethodLabels, Counter>,
    connections: ConnectionCounters,
    /// SHA-256 of `metrics.bearer_token`: compared digest to digest, so
    /// the time a comparison takes says nothing of the token.
    token: Option<[u8; 32]>,
    config: MetricsConfig,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(&MetricsConfig::default(), Sources::default())
    }
}

impl Metrics {
    /// The service's series, plus those of `sources`, in one registry.
    pub fn new(config: &MetricsConfig, sources: Sources) -> Self {
        let mut m = Self {
            registry: Registry::with_prefix(PREFIX),
            requests: Family::default(),
            requests_all: Default::default(),
            durations: Family::new_with_constructor(request_histogram),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            connections: ConnectionCounters::default(),
            token: config
                .bearer_token
                .as_deref()
                .map(|t| Sha256::digest(t.as_bytes()).into()),
            config: config.clone(),
        };
        m.register_service();
        m.register_sources(sources);
        m
    }

    /// Registers the service's own series. (The registry ends each help
    /// text with a period; the collector's are written as they are.)
    fn register_service(&mut self) {
        let r = &mut self.registry;
        r.register(
            "requests",
            "HTTP requests by method and status",
            self.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Time until a reply's head is ready, by method and status class",
            Unit::Seconds,
            self.durations.clone(),
        );
        r.register_with_unit(
            "request_body",
            "Request body bytes announced by Content-Length, by method",
            Unit::Bytes,
            self.request_bytes.clone(),
        );
        r.register_with_unit(
            "response_body",
            "Reply body bytes (the length of a reply that has one, else as sent), by method",
            Unit::Bytes,
            self.response_bytes.clone(),
        );
        let c = &self.connections;
        r.register(
            "connections_open",
            "Client connections open now",
            c.open.clone(),
        );
        r.register(
            "connections_accepted",
            "Client connections accepted",
            c.accepted.clone(),
        );
        r.register(
            "connections_refused",
            "Connections closed at once: their address had limits.max_connections_per_address open",
            c.refused_per_address.clone(),
        );
        r.register(
            "accept_errors",
            "Failed accepts (e.g. out of file descriptors); each backs off",
            c.accept_errors.clone(),
        );
        for phase in [
            Stalled::Header,
            Stalled::Idle,
            Stalled::Body,
            Stalled::Handshake,
        ] {
            let _ = c.timeouts.get_or_create(&PhaseLabels {
                phase: phase_label(phase),
            });
        }
        r.register(
            "connection_timeouts",
            "Connections closed by a timeout, by phase",
            c.timeouts.clone(),
        );
    }

    fn register_sources(&mut self, sources: Sources) {
        let r = &mut self.registry;
        if let Some(u) = sources.upstream {
            r.register(
                "upstream_requests",
                "Requests sent to the upstream WebDAV server (each attempt), by verb and outcome",
                u.attempts,
            );
            r.register_with_unit(
                "upstream_request_duration",
                "Time of one upstream attempt, from sending to its answer or failure, by verb",
                Unit::Seconds,
                u.duration,
            );
            r.register(
                "upstream_retries",
                "Upstream attempts repeated after a transient failure, by verb",
                u.retries,
            );
        }
        if let Some(c) = sources.cache {
            r.register(
                "object_cache_lookups",
                "Object reads asked of the local object cache, by outcome (damaged: an entry failed its hash and was dropped)",
                c.lookups,
            );
            r.register_with_unit(
                "object_cache_stored",
                "Bytes the local object cache's entries take on disk",
                Unit::Bytes,
                c.stored_bytes,
            );
        }
        if let Some(s) = sources.store {
            r.register(
                "dedup_chunks",
                "Chunks of uploads: hit = already stored, miss = new (sealed and stored)",
                s.chunks,
            );
            r.register_with_unit(
                "dedup_saved",
                "Plaintext bytes of uploaded chunks that were already stored",
                Unit::Bytes,
                s.bytes_saved,
            );
            r.register_with_unit(
                "dedup_new",
                "Plaintext bytes of uploaded chunks that were new",
                Unit::Bytes,
                s.bytes_new,
            );
            r.register(
                "packs_stored",
                "Packs of small chunks written upstream",
                s.packs,
            );
            r.register(
                "packed_chunks",
                "Chunk entries written upstream in packs",
                s.packed_chunks,
            );
        }
        if let Some(i) = sources.index {
            r.register_with_unit(
                "index_commit_duration",
                "Time from an index write's commit until it is durable, by mode (alone or grouped)",
                Unit::Seconds,
                i.commit_duration,
            );
        }
    }

    /// Counts one answered request: its status, the time until its head was
    /// ready, and the announced request body length.
    pub fn observe_request(
        &self,
        method: &str,
        status: StatusCode,
        took: Duration,
        request_bytes: Option<u64>,
    ) {
        let method = method_label(method);
        self.observe(method, status.as_u16());
        self.durations
            .get_or_create(&ClassLabels {
                method,
                class: StatusClass::of(status),
            })
            .observe(took.as_secs_f64());
        if let Some(n) = request_bytes.filter(|n| *n > 0) {
            self.request_bytes
                .get_or_create(&MethodLabels { method })
                .inc_by(n);
        }
    }

    pub fn observe(&self, method: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method_label(method),
                status,
            })
            .inc();
        self.requests_all
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts a reply's body bytes: its length at once when it is known,
    /// else each frame as hyper takes it.
    pub fn count_reply(&self, method: &str, res: Response<GwBody>) -> Response<GwBody> {
        let counter = self
            .response_bytes
            .get_or_create(&MethodLabels {
                method: method_label(method),
            })
            .clone();
        if let Some(n) = res.body().size_hint().exact() {
            counter.inc_by(n);
            return res;
        }
        res.map(|inner| CountedBody { inner, counter }.boxed_unsync())
    }

    /// Every request served since the process started (the console's
    /// request-rate history reads this).
    pub fn requests_total(&self) -> u64 {
        self.requests_all.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many requests with this method (or, for an unknown one, with
    /// any unknown method) got this status.
    pub fn count(&self, method: &str, status: u16) -> u64 {
        self.requests
            .get(&RequestLabels {
                method: method_label(method),
                status,
            })
            .map_or(0, |c| c.get())
    }

    pub fn connection_opened(&self) {
        self.connections.accepted.inc();
        self.connections.open.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.open.dec();
    }

    /// A connection closed at once: its address had too many open.
    pub fn connection_refused(&self) {
        self.connections.refused_per_address.inc();
    }

    pub fn accept_failed(&self) {
        self.connections.accept_errors.inc();
    }

    pub fn connection_timed_out(&self, phase: Stalled) {
        self.connections
            .timeouts
            .get_or_create(&PhaseLabels {
                phase: phase_label(phase),
            })
            .inc();
    }

    /// Connections closed because `phase` passed its timeout.
    pub fn timeouts(&self, phase: Stalled) -> u64 {
        self.connections
            .timeouts
            .get(&PhaseLabels {
                phase: phase_label(phase),
            })
            .map_or(0, |c| c.get())
    }

    /// Whether `authorization` carries the configured bearer token.
    pub fn bearer(&self, authorization: Option<&HeaderValue>) -> Bearer {
        let Some(value) = authorization.map(HeaderValue::as_bytes) else {
            return Bearer::Absent;
        };
        let scheme = b"bearer ";
        if value.len() < scheme.len() || !value[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Bearer::Absent;
        }
        let presented = value[scheme.len()..].trim_ascii();
        match &self.token {
            Some(token) if same_digest(&Sha256::digest(presented).into(), token) => Bearer::Valid,
            _ => Bearer::Invalid,
        }
    }

    /// The whole reply text: every registered series, then `stats` and the
    /// jobs as of now.
    pub fn render(&self, stats: Option<&Stats>) -> String {
        self.render_with(stats, Vec::new())
    }

    /// [`Self::render`], with the jobs' states.
    pub fn render_with(
        &self,
        stats: Option<&Stats>,
        jobs: Vec<(&'static str, JobState)>,
    ) -> String {
        let mut out = String::new();
        let mut now = Registry::with_prefix(PREFIX);
        now.register_collector(Box::new(Snapshot {
            stats: stats.cloned(),
            jobs,
        }));
        for registry in [&self.registry, &now] {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
        }
        out
    }

    /// The reply to a scrape.
    pub fn reply(text: String) -> Response<GwBody> {
        let mut res = Response::new(crate::wire::reply::full(Bytes::from(text)));
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        res
    }
}

/// The reply to a scrape whose bearer token is missing or wrong.
pub fn bearer_refused() -> Response<GwBody> {
    let mut res = error_response(
        StatusCode::UNAUTHORIZED,
        "metrics need an administrator's login or the metrics bearer token",
    );
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"dedupdav metrics\""),
    );
    res
}

/// Equal digests, compared without an early exit.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A reply body that counts its bytes as hyper takes them.
struct CountedBody {
    inner: GwBody,
    counter: Counter,
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.counter.inc_by(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The values read at a scrape: usage figures and the jobs' states.
#[derive(Debug)]
struct Snapshot {
    stats: Option<Stats>,
    jobs: Vec<(&'static str, JobState)>,
}

/// A job series: name, type, help, and its value in a job's state.
type JobSeries = (&'static str, MetricType, &'static str, fn(&JobState) -> u64);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        if let Some(st) = &self.stats {
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
                let gauge = ConstGauge::new(v);
                gauge.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
            }
        }
        self.encode_jobs(&mut encoder)
    }
}

impl Snapshot {
    fn encode_jobs(&self, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
        if self.jobs.is_empty() {
            return Ok(());
        }
        let unix = |t: Option<std::time::SystemTime>| {
            t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs())
        };
        let series: [JobSeries; 4] = [
            (
                "job_runs",
                MetricType::Counter,
                "Background job runs finished.",
                |s| s.runs,
            ),
            (
                "job_errors",
                MetricType::Counter,
                "Background job batches that failed.",
                |s| s.errors_total,
            ),
            (
                "job_items",
                MetricType::Counter,
                "Items background jobs handled (objects deleted, sessions expired).",
                |s| s.items_total,
            ),
            (
                "job_running",
                MetricType::Gauge,
                "1 while a background job runs.",
                |s| u64::from(s.running),
            ),
        ];
        for (name, kind, help, value) in series {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (job, state) in &self.jobs {
                let labels = [("job", *job)];
                let metric = family.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(value(state)).encode(metric)?,
                    _ => ConstGauge::new(value(state)).encode(metric)?,
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "job_last_success_timestamp_seconds",
            "When a background job last finished a run without error (Unix seconds; 0 = never).",
            None,
            MetricType::Gauge,
        )?;
        for (job, state) in &self.jobs {
            let labels = [("job", *job)];
            ConstGauge::new(unix(state.last_success)).encode(family.encode_family(&labels)?)?;
        }
        for counter in self.jobs.iter().flat_map(|(_, state)| &state.counters) {
            let help = counter.help;
            if counter.gauge {
                let metric =
                    encoder.encode_descriptor(counter.name, help, None, MetricType::Gauge)?;
                ConstGauge::new(counter.value).encode(metric)?;
            } else {
                // The encoder adds `_total` to a counter's name.
                let name = counter.name.strip_suffix("_total").unwrap_or(counter.name);
                let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
                ConstCounter::new(counter.value).encode(metric)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_string)
    }

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
    fn requests_have_latency_histograms_by_status_class() {
        let m = Metrics::default();
        let ms = Duration::from_millis;
        m.observe_request("PUT", StatusCode::CREATED, ms(3), Some(1000));
        m.observe_request("PUT", StatusCode::NO_CONTENT, ms(30), Some(24));
        m.observe_request("FROB", StatusCode::METHOD_NOT_ALLOWED, ms(1), None);
        let text = m.render(None);
        let series = "dedupdav_request_duration_seconds_count{method=\"PUT\",class=\"2xx\"}";
        assert_eq!(line_value(&text, series).as_deref(), Some("2"), "{text}");
        let series =
            "dedupdav_request_duration_seconds_bucket{method=\"PUT\",class=\"2xx\",le=\"0.004\"}";
        assert_eq!(line_value(&text, series).as_deref(), Some("1"), "{text}");
        let series = "dedupdav_request_duration_seconds_count{method=\"OTHER\",class=\"4xx\"}";
        assert_eq!(line_value(&text, series).as_deref(), Some("1"), "{text}");
        let series = "dedupdav_request_body_bytes_total{method=\"PUT\"}";
        assert_eq!(line_value(&text, series).as_deref(), Some("1024"), "{text}");
    }

    #[test]
    fn replies_are_counted_by_their_length_or_as_sent() {
        let m = Metrics::default();
        let full = Response::new(crate::wire::reply::full("hello"));
        drop(m.count_reply("GET", full));
        let stream = futures_util::stream::iter([
            Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"abc"))),
            Ok(Frame::data(Bytes::from_static(b"defg"))),
        ]);
        let body = http_body_util::StreamBody::new(stream).boxed_unsync();
        let res = m.count_reply("PROPFIND", Response::new(body));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = rt.block_on(res.into_body().collect()).unwrap().to_bytes();
        assert_eq!(&got[..], b"abcdefg");
        let text = m.render(None);
        let series = |method: &str| {
            line_value(
                &text,
                &format!("dedupdav_response_body_bytes_total{{method=\"{method}\"}}"),
            )
        };
        assert_eq!(series("GET").as_deref(), Some("5"), "{text}");
        assert_eq!(series("PROPFIND").as_deref(), Some("7"), "{text}");
    }

    #[test]
    fn the_bearer_token_is_checked() {
        let config = MetricsConfig {
            bearer_token: Some("0123456789abcdef".into()),
            ..MetricsConfig::default()
        };
        let m = Metrics::new(&config, Sources::default());
        let h = |v: &str| HeaderValue::from_str(v).unwrap();
        assert_eq!(m.bearer(None), Bearer::Absent);
        assert_eq!(m.bearer(Some(&h("Basic YTpi"))), Bearer::Absent);
        assert_eq!(m.bearer(Some(&h("Bearer 0123456789abcdef"))), Bearer::Valid);
        assert_eq!(
            m.bearer(Some(&h("bearer  0123456789abcdef "))),
            Bearer::Valid
        );
        assert_eq!(
            m.bearer(Some(&h("Bearer 0123456789abcdeF"))),
            Bearer::Invalid
        );
        assert_eq!(m.bearer(Some(&h("Bearer "))), Bearer::Invalid);
        let none = Metrics::default();
        assert_eq!(
            none.bearer(Some(&h("Bearer 0123456789abcdef"))),
            Bearer::Invalid,
            "no token configured: every token is wrong"
        );
    }

    #[test]
    fn jobs_are_one_series_each() {
        let gc = JobState {
            runs: 3,
            items_total: 7,
            errors_total: 1,
            running: true,
            last_success: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(42)),
            counters: vec![
                crate::jobs::JobCounter {
                    name: "gc_probe_total",
                    help: "A job's own counter",
                    gauge: false,
                    value: 5,
                },
                crate::jobs::JobCounter {
                    name: "gc_level",
                    help: "A job's own gauge",
                    gauge: true,
                    value: 2,
                },
            ],
            ..JobState::default()
        };
        let text = Metrics::default().render_with(
            None,
            vec![("gc", gc), ("expire_uploads", JobState::default())],
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
            "# TYPE dedupdav_gc_level gauge",
            "dedupdav_gc_level 2",
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
