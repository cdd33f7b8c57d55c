//! Configuration: built-in defaults < TOML file (`--config`) < `DEDUPDAV_*`
//! environment variables (nested keys joined with `__`, e.g.
//! `DEDUPDAV_BACKEND__KIND=webdav`). Unknown keys and bad values are start-up
//! errors that name the key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::files::refused::RefusedNames;
use crate::owncloud::checksum::ChecksumSet;
use crate::store::{ChunkSizes, StoreSettings};

/// `[backend]` is defined by the backend module itself, with its defaults.
pub use crate::backend::config::{BackendConfig, LocalConfig, WebDavConfig};

/// Errors of loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration error: {0}")]
    Invalid(String),
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        // figment's message names the key and where its value came from.
        let mut msg = String::new();
        for err in e {
            if !msg.is_empty() {
                msg.push_str("; ");
            }
            msg.push_str(&err.to_string());
        }
        ConfigError::Invalid(msg)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP front listens on.
    pub listen: String,
    /// Where the index, the master key and (by default) local objects live.
    pub data_dir: PathBuf,
    /// Master key file; default `<data_dir>/master.key`.
    pub master_key_file: Option<PathBuf>,
    /// The master key itself as 64 hex digits (takes precedence over the file).
    pub master_key: Option<String>,
    /// "human" or "json".
    pub log_format: LogFormat,
    /// A tracing filter such as "info" or "dedupdav=debug".
    pub log_level: String,
    pub chunking: ChunkingConfig,
    pub auth: AuthConfig,
    pub uploads: UploadsConfig,
    pub gc: GcConfig,
    pub scrub: ScrubConfig,
    pub sweep: SweepConfig,
    pub metadata: MetadataConfig,
    pub backend: BackendConfig,
    pub cache: CacheConfig,
    pub limits: LimitsConfig,
    pub dedup: DedupConfig,
    pub metrics: MetricsConfig,
    pub console: ConsoleConfig,
    /// HTTPS on `listen` (absent: plain HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    pub files: FilesConfig,
}

/// `[tls]`: serve `listen` over HTTPS with this certificate (reloaded on
/// SIGHUP, see `http/listener/tls.rs`), and optionally redirect plain HTTP
/// from a second address.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// An address answering every plain HTTP request with a 308 to the same
    /// path and query on HTTPS, e.g. "0.0.0.0:80".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_listen: Option<String>,
    /// Time a client has to complete the TLS handshake (seconds).
    #[serde(default = "default_handshake_timeout_secs")]
    pub handshake_timeout_secs: u64,
}

fn default_handshake_timeout_secs() -> u64 {
    10
}

impl TlsConfig {
    /// `redirect_listen` as an address (`None` when unset).
    pub fn redirect_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        self.redirect_listen
            .as_deref()
            .map(|l| {
                l.parse().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "tls.redirect_listen: {l:?} is not an address such as 0.0.0.0:80"
                    ))
                })
            })
            .transpose()
    }

    /// The handshake deadline.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_secs)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.redirect_addr()?;
        if self.handshake_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "tls.handshake_timeout_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What the gateway does with file names.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Patterns (`*`, `?`; ASCII case ignored) on the last name of a path
    /// that no write may create: PUT, MKCOL, the destination of MOVE and
    /// COPY, a chunked upload's final MOVE. Refused with 403 and a log
    /// line; listed in the OCS capabilities (`files.blacklisted_files`).
    /// Empty by default; macOS Finder's litter is `["._*", ".DS_Store"]`.
    #[serde(default)]
    pub refuse: Vec<String>,
}

/// The local object cache (`backend/cache.rs`): recently read or written
/// objects kept on the gateway's disk in front of the backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The cache's directory; unset (the default) means no cache. It is
    /// never turned on by itself: it takes up to `max_bytes` of disk, and
    /// in front of a local backend it would only copy files on one disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// The most bytes the cache's entries take on disk.
    pub max_bytes: u64,
}

/// The smallest `cache.max_bytes` accepted.
pub const CACHE_MIN_BYTES: u64 = 1 << 20;

impl CacheConfig {
    /// The cache's settings, when there is one.
    pub fn settings(&self) -> Option<crate::backend::cache::CacheSettings> {
        self.dir
            .as_ref()
            .map(|dir| crate::backend::cache::CacheSettings {
                dir: dir.clone(),
                max_bytes: self.max_bytes,
            })
    }
}

/// Who may scrape `/metrics`, and where. On the main address an admin's
/// Basic auth is always accepted, and `Authorization: Bearer <token>` when
/// a token is set. `listen` adds an address that serves only `/metrics`:
/// there the token is required, unless the address is loopback and
/// `allow_anonymous_on_loopback` is set. Nothing is open by default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A scraper's secret (at least 16 characters; no spaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<String>,
    /// A separate address serving only `/metrics`, e.g. "127.0.0.1:9100".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Scrapes without a token on `listen`, when it is a loopback address.
    #[serde(default)]
    pub allow_anonymous_on_loopback: bool,
}

/// The shortest `metrics.bearer_token` accepted.
pub const METRICS_TOKEN_MIN_CHARS: usize = 16;

impl MetricsConfig {
    /// `listen` as an address (`None` when unset).
    pub fn listen_addr(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        self.listen
            .as_deref()
            .map(|l| {
                l.parse().map_err(|_| {
                    ConfigError::Invalid(format!(
                        "metrics.listen: {l:?} is not an address such as 127.0.0.1:9100"
                    ))
                })
            })
            .transpose()
    }

    /// Whether scrapes on `addr` (the bound `listen` address) need no token.
    pub fn anonymous_on(&self, addr: std::net::SocketAddr) -> bool {
        self.allow_anonymous_on_loopback && addr.ip().is_loopback()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(token) = &self.bearer_token {
            if token.chars().count() < METRICS_TOKEN_MIN_CHARS {
                return Err(ConfigError::Invalid(format!(
                    "metrics.bearer_token must be at least {METRICS_TOKEN_MIN_CHARS} characters"
                )));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ConfigError::Invalid(
                    "metrics.bearer_token may hold only printable ASCII, no spaces".into(),
                ));
            }
        }
        let Some(addr) = self.listen_addr()? else {
            if self.allow_anonymous_on_loopback {
                return Err(ConfigError::Invalid(
                    "metrics.allow_anonymous_on_loopback needs metrics.listen".into(),
                ));
            }
            return Ok(());
        };
        if self.allow_anonymous_on_loopback && !addr.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "metrics.allow_anonymous_on_loopback: metrics.listen {addr} is not a loopback address"
            )));
        }
        if !self.anonymous_on(addr) && self.bearer_token.is_none() {
            return Err(ConfigError::Invalid(
                "metrics.listen needs metrics.bearer_token (or a loopback address with \
                 metrics.allow_anonymous_on_loopback = true)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The web console at `/admin/` (`http/console/`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Marks the session cookie `Secure`. Set this when the gateway is
    /// reached through an HTTPS proxy, so browsers never send the cookie
    /// over plain HTTP; with `[tls]` it is always set.
    pub secure_cookies: bool,
}

/// What hostile or careless clients may cost: connections, time, memory and
/// parsing effort. Every limit answers with a clear status and a log line
/// (or, for connections, a closed socket), never a crash.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Open client connections at most; further connections wait in the
    /// kernel's accept queue.
    pub max_connections: usize,
    /// Open connections from one client address at most; more are closed
    /// at once.
    pub max_connections_per_address: usize,
    /// Time a client has to send a request's header (seconds).
    pub header_timeout_secs: u64,
    /// A kept-alive connection with no request for this long is closed
    /// (seconds).
    pub idle_timeout_secs: u64,
    /// A request body that makes no progress for this long is abandoned
    /// (seconds); nothing of it is committed.
    pub body_timeout_secs: u64,
    /// Budget for the chunk buffers of all transfers together (bytes).
    /// Transfers beyond it wait for room; they never fail for it.
    pub transfer_memory: u64,
    /// Password verifications (argon2id, ~19 MiB each) running at once.
    pub password_checks: usize,
    /// Largest XML request body (PROPFIND, PROPPATCH, LOCK, REPORT), bytes.
    /// The WebDAV layer itself reads at most 64 KiB, so more has no effect.
    pub xml_max_bytes: usize,
    /// Deepest element nesting accepted in an XML request body.
    pub xml_max_depth: usize,
    /// Most elements accepted in one XML request body.
    pub xml_max_elements: usize,
    /// Most parts in one `Range` header, after overlapping and adjacent
    /// parts are merged; a request with more is answered 416.
    pub range_parts: usize,
    /// Locks one user may hold at once.
    pub locks_per_user: usize,
    /// Largest lock owner (`<D:owner>`) kept, in bytes.
    pub lock_owner_bytes: usize,
    /// Dead properties one file or folder may carry.
    pub props_per_node: usize,
    /// Largest value of one dead property, in bytes (counted in the quota).
    pub prop_value_bytes: usize,
}

/// How far deduplication reaches.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// "global": identical chunks are stored once across all users (the
    /// smallest storage; an upload of content another user already stored
    /// completes measurably faster, which tells the uploader it exists).
    /// "user": chunks are shared only within one user's files, so nothing
    /// about other users' content can be learned from upload timing.
    pub scope: DedupScope,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DedupScope {
    Global,
    User,
}

/// Garbage collection of chunks no file references any more.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcConfig {
    /// How long an unreferenced chunk is kept before its object is deleted
    /// (hours): an upload of the same data within that time reuses it.
    pub grace_hours: u64,
    /// How often `serve` collects (minutes; 0 = only `dedupdav gc`).
    pub interval_minutes: u64,
    /// Overrides `interval_minutes` with a period in seconds (0 = only
    /// `dedupdav gc`). Meant for tests, which cannot wait a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u64>,
    /// A pack whose live chunks take less than this share of it (percent)
    /// is rewritten on the collector's schedule, giving back the bytes of
    /// deleted files (0: only empty and small packs are).
    pub repack_below_percent: u64,
}

impl GcConfig {
    /// How often `serve` collects; `None` when only `dedupdav gc` does.
    pub fn every(&self) -> Option<Duration> {
        let secs = self
            .interval_seconds
            .unwrap_or(self.interval_minutes.saturating_mul(60));
        (secs > 0).then(|| Duration::from_secs(secs))
    }

    /// How long an unreferenced chunk is kept.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_hours.saturating_mul(3600))
    }
}

/// The scrub: every object read back, authenticated and re-hashed in the
/// background, throttled, resuming where it stopped after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrubConfig {
    /// Hours from the end of one pass to the start of the next (0 = no
    /// scrub).
    pub interval_hours: u64,
    /// Overrides `interval_hours` with seconds (0 = no scrub). Meant for
    /// tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u64>,
    /// Bytes read from the backend per second at most, on average (0 = no
    /// limit beyond the tranquility).
    pub bytes_per_second: u64,
    /// After a batch that took `t`, rest at least `t × tranquility`.
    pub tranquility: u32,
}

impl ScrubConfig {
    /// Time between passes; `None` when there is no scrub.
    pub fn every(&self) -> Option<Duration> {
        every(
            self.interval_seconds,
            self.interval_hours.saturating_mul(3600),
        )
    }
}

/// The orphan sweep: objects in the backend that no record names, older
/// than `gc.grace_hours`, are deleted.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// How often `serve` sweeps (hours; 0 = only `dedupdav gc --orphans`).
    pub interval_hours: u64,
    /// Overrides `interval_hours` with seconds (0 = only `dedupdav gc
    /// --orphans`). Meant for tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u64>,
}

impl SweepConfig {
    /// How often `serve` sweeps; `None` when only the command does.
    pub fn every(&self) -> Option<Duration> {
        every(
            self.interval_seconds,
            self.interval_hours.saturating_mul(3600),
        )
    }
}

/// The metadata journal sealed upstream (`jobs/metadata.rs`): every
/// committed change reaches the backend within about one interval, or,
/// with an interval of 0, before the write that made it is answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    /// Seconds between uploads of the journal. 0 is zero-lag mode: a
    /// metadata write answers only once the segment holding its change is
    /// in the backend; concurrent writes share one segment upload, and a
    /// write not upstream within 30 s is answered 503 (it stays committed
    /// locally and goes up later). See `meta/upstream_gate.rs`.
    pub upload_interval_secs: u64,
    /// Minutes between compacted snapshots of the whole index (0: none;
    /// the chain of segments then grows from the index's first change).
    pub snapshot_interval_minutes: u64,
}

impl MetadataConfig {
    /// How often `serve` uploads the journal; `None` in zero-lag mode,
    /// where each write wakes the upload.
    pub fn every(&self) -> Option<Duration> {
        every(None, self.upload_interval_secs)
    }

    /// Whether writes wait for their change to be upstream (interval 0).
    pub fn zero_lag(&self) -> bool {
        self.upload_interval_secs == 0
    }

    /// How often `serve` seals a snapshot; `None` for 0.
    pub fn snapshot_every(&self) -> Option<Duration> {
        every(None, self.snapshot_interval_minutes.saturating_mul(60))
    }
}

/// A job's period: `seconds` if set, else `default_secs`; `None` for 0.
fn every(seconds: Option<u64>, default_secs: u64) -> Option<Duration> {
    let secs = seconds.unwrap_or(default_secs);
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Chunked uploads (ownCloud/Nextcloud clients' large files).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadsConfig {
    /// An unfinished chunked upload untouched this long (hours) is dropped
    /// and the chunks it held are released.
    pub expire_hours: u64,
    /// Checksum types (SHA1, MD5, ADLER32) computed on every upload and
    /// listed in `oc:checksums`, besides those the client announces in
    /// `OC-Checksum`. SHA1 and MD5 cost more CPU than the rest of an
    /// upload's hashing together; ownCloud and Nextcloud clients and rclone
    /// announce the one they check.
    pub checksums: Vec<String>,
    /// Chunks shorter than this many bytes (small files, the tails of
    /// large ones) are stored in packs, many to one upstream object,
    /// instead of one object each. 0 stores every chunk on its own.
    pub pack_below: usize,
    /// A pack is written upstream once it holds this many bytes.
    pub pack_size: usize,
    /// The longest a pack waits for more writers (milliseconds) before it
    /// is written; it goes at once when every upload in progress waits on
    /// it.
    pub pack_delay_ms: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkingConfig {
    pub min_size: usize,
    pub avg_size: usize,
    pub max_size: usize,
    /// zstd level for chunks (1 = fastest; chunks that do not shrink stay raw).
    pub zstd_level: i32,
    /// Chunk uploads in flight per PUT.
    pub uploads_in_flight: usize,
    /// Chunks fetched ahead of a sequential download.
    pub read_ahead: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// How long verified credentials are remembered (seconds; 0 = never).
    pub cache_seconds: u64,
    /// Failed logins (per client address and per user name) before further
    /// attempts are held back, before their password is checked.
    pub failures_before_delay: u32,
    /// Longest delay imposed on a client that keeps failing (milliseconds).
    pub max_delay_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        let s = StoreSettings::default();
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./dedupdav-data"),
            master_key_file: None,
            master_key: None,
            log_format: LogFormat::Human,
            log_level: "info".into(),
            chunking: ChunkingConfig {
                min_size: s.chunk_sizes.min,
                avg_size: s.chunk_sizes.avg,
                max_size: s.chunk_sizes.max,
                zstd_level: s.zstd_level,
                uploads_in_flight: s.uploads_in_flight,
                read_ahead: s.read_ahead,
            },
            auth: AuthConfig {
                cache_seconds: 300,
                failures_before_delay: 3,
                max_delay_ms: 5000,
            },
            uploads: UploadsConfig {
                expire_hours: 24,
                checksums: vec!["ADLER32".into()],
                pack_below: s.packs.below,
                pack_size: s.packs.size,
                pack_delay_ms: s.packs.delay.as_millis() as u64,
            },
            gc: GcConfig {
                grace_hours: 24,
                interval_minutes: 60,
                interval_seconds: None,
                repack_below_percent: 50,
            },
            scrub: ScrubConfig {
                interval_hours: 168,
                interval_seconds: None,
                bytes_per_second: 8 << 20,
                tranquility: 2,
            },
            sweep: SweepConfig {
                interval_hours: 24,
                interval_seconds: None,
            },
            metadata: MetadataConfig {
                upload_interval_secs: 10,
                snapshot_interval_minutes: 60,
            },
            backend: BackendConfig::default(),
            cache: CacheConfig {
                dir: None,
                max_bytes: 1 << 30,
            },
            limits: LimitsConfig {
                max_connections: 4096,
                max_connections_per_address: 256,
                header_timeout_secs: 30,
                idle_timeout_secs: 120,
                body_timeout_secs: 120,
                transfer_memory: 256 << 20,
                password_checks: 4,
                xml_max_bytes: 64 << 10,
                xml_max_depth: 32,
                xml_max_elements: 10_000,
                range_parts: 64,
                locks_per_user: 1024,
                lock_owner_bytes: 4096,
                props_per_node: 256,
                prop_value_bytes: 64 << 10,
            },
            dedup: DedupConfig {
                scope: DedupScope::Global,
            },
            metrics: MetricsConfig::default(),
            console: ConsoleConfig {
                secure_cookies: false,
            },
            tls: None,
            files: FilesConfig::default(),
        }
    }
}

impl Config {
    /// Loads defaults, then the file (if given), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(file, Env::prefixed("DEDUPDAV_").split("__"))
    }

    fn load_with_env(file: Option<&Path>, env: Env) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::MissingFile(f.to_path_buf()));
            }
            fig = fig.merge(Toml::file(f));
        }
        let mut cfg: Config = fig.merge(env).extract()?;
        // Served over HTTPS, the session cookie never needs plain HTTP.
        cfg.console.secure_cookies |= cfg.tls.is_some();
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.chunk_sizes()
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("chunking: {e}")))?;
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "listen: {:?} is not an address such as 127.0.0.1:8080",
                self.listen
            )));
        }
        if self.uploads.expire_hours == 0 {
            return Err(ConfigError::Invalid(
                "uploads.expire_hours must be at least 1".into(),
            ));
        }
        self.upload_checksums()?;
        self.refused_names()?;
        self.validate_limits()?;
        self.metrics.validate()?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        if self.cache.max_bytes < CACHE_MIN_BYTES {
            return Err(ConfigError::Invalid(format!(
                "cache.max_bytes must be at least {CACHE_MIN_BYTES} bytes"
            )));
        }
        if !(1..=22).contains(&self.chunking.zstd_level) {
            return Err(ConfigError::Invalid(
                "chunking.zstd_level must be 1..=22".into(),
            ));
        }
        Ok(())
    }

    /// `files.refuse`, checked.
    pub fn refused_names(&self) -> Result<RefusedNames, ConfigError> {
        RefusedNames::new(&self.files.refuse)
            .map_err(|e| ConfigError::Invalid(format!("files.refuse: {e}")))
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let positive = [
            ("limits.max_connections", l.max_connections as u64),
            (
                "limits.max_connections_per_address",
                l.max_connections_per_address as u64,
            ),
            ("limits.header_timeout_secs", l.header_timeout_secs),
            ("limits.idle_timeout_secs", l.idle_timeout_secs),
            ("limits.body_timeout_secs", l.body_timeout_secs),
            ("limits.password_checks", l.password_checks as u64),
            ("limits.xml_max_bytes", l.xml_max_bytes as u64),
            ("limits.xml_max_depth", l.xml_max_depth as u64),
            ("limits.xml_max_elements", l.xml_max_elements as u64),
            ("limits.range_parts", l.range_parts as u64),
            ("limits.locks_per_user", l.locks_per_user as u64),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid(format!("{key} must be at least 1")));
        }
        // A transfer's floor (3 x chunking.max_size, store/budget.rs) must
        // fit with room to spare for read-ahead and chunks in flight.
        let floor = 2 * 2 * self.chunking.max_size as u64;
        if l.transfer_memory < floor {
            return Err(ConfigError::Invalid(format!(
                "limits.transfer_memory must be at least {floor} bytes (4 x chunking.max_size)"
            )));
        }
        Ok(())
    }

    /// The checksum types every upload computes (`uploads.checksums`).
    pub fn upload_checksums(&self) -> Result<ChecksumSet, ConfigError> {
        ChecksumSet::parse(&self.uploads.checksums)
            .map_err(|e| ConfigError::Invalid(format!("uploads.checksums: {e}")))
    }

    pub fn chunk_sizes(&self) -> ChunkSizes {
        ChunkSizes {
            min: self.chunking.min_size,
            avg: self.chunking.avg_size,
            max: self.chunking.max_size,
        }
    }

    pub fn store_settings(&self) -> StoreSettings {
        StoreSettings {
            chunk_sizes: self.chunk_sizes(),
            zstd_level: self.chunking.zstd_level,
            uploads_in_flight: self.chunking.uploads_in_flight.max(1),
            read_ahead: self.chunking.read_ahead,
            transfer_memory: self.limits.transfer_memory,
            dedup_per_user: self.dedup.scope == DedupScope::User,
            packs: crate::store::PackSettings {
                below: self.uploads.pack_below.min(self.chunking.max_size),
                size: self.uploads.pack_size.clamp(64 << 10, 64 << 20),
                delay: Duration::from_millis(self.uploads.pack_delay_ms.min(1000)),
            },
        }
    }

    /// The caps on dead properties (`limits.props_per_node`,
    /// `limits.prop_value_bytes`).
    pub fn prop_limits(&self) -> crate::meta::PropLimits {
        crate::meta::PropLimits {
            per_node: self.limits.props_per_node,
            value_bytes: self.limits.prop_value_bytes,
        }
    }

    pub fn index_path(&self) -> PathBuf {
        self.data_dir.join("index.redb")
    }

    pub fn key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    fn no_env() -> Env {
        Env::prefixed("DEDUPDAV_TEST_NOTHING_SET_")
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::load_with_env(None, no_env()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        assert!(matches!(c.backend, BackendConfig::Local(_)));
    }

    #[test]
    fn file_then_env_override() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "c.toml",
                "listen = \"127.0.0.1:9000\"\n[backend]\nkind = \"webdav\"\nurl = \"http://h/\"\nroot = \"x\"\n",
            )?;
            jail.set_env("DEDUPDAV_LISTEN", "127.0.0.1:9001");
            jail.set_env("DEDUPDAV_CHUNKING__ZSTD_LEVEL", "3");
            let c = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.listen, "127.0.0.1:9001");
            assert_eq!(c.chunking.zstd_level, 3);
            let BackendConfig::Webdav(w) = &c.backend else {
                panic!("kind from the file: {:?}", c.backend)
            };
            assert_eq!(w.root, "x");
            Ok(())
        });
    }

    #[test]
    fn the_cache_is_off_unless_its_dir_is_set() {
        let c = Config::load_with_env(None, no_env()).unwrap();
        assert!(c.cache.settings().is_none());
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[cache]\ndir = \"/var/cache/d\"\n")?;
            let c = Config::load(Some(Path::new("c.toml"))).map_err(|e| e.to_string())?;
            let settings = c.cache.settings().ok_or("a cache")?;
            assert_eq!(settings.dir, Path::new("/var/cache/d"));
            assert_eq!(settings.max_bytes, 1 << 30);
            jail.set_env("DEDUPDAV_CACHE__MAX_BYTES", "1000");
            let e = Config::load(Some(Path::new("c.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("cache.max_bytes"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_and_bad_value_name_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[backend]\nkindd = \"local\"\n")?;
            let e = Config::load(Some(Path::new("c.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("kindd"), "{e}");
            jail.create_file("d.toml", "[backend]\nkind = \"ftp\"\n")?;
            let e = Config::load(Some(Path::new("d.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("kind"), "{e}");
            jail.create_file("e.toml", "listen = \"nowhere\"\n")?;
            let e = Config::load(Some(Path::new("e.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("listen"), "{e}");
            jail.create_file("f.toml", "[uploads]\nchecksums = [\"SHA1\", \"CRC\"]\n")?;
            let e = Config::load(Some(Path::new("f.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("uploads.checksums") && e.contains("CRC"), "{e}");
            jail.create_file("g.toml", "[uploads]\nchecksums = [\"sha1\", \"MD5\"]\n")?;
            let c = Config::load(Some(Path::new("g.toml"))).unwrap();
            let set = c.upload_checksums().unwrap();
            assert!(set.sha1 && set.md5 && !set.adler32);
            Ok(())
        });
    }

    #[test]
    fn a_zero_upload_interval_parses_as_zero_lag_mode() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("h.toml", "[metadata]\nupload_interval_secs = 0\n")?;
            let c = Config::load(Some(Path::new("h.toml"))).map_err(|e| e.to_string())?;
            assert!(c.metadata.zero_lag(), "0 is zero-lag mode");
            assert_eq!(c.metadata.every(), None);
            let default = Config::default().metadata;
            assert!(!default.zero_lag());
            assert_eq!(default.every(), Some(Duration::from_secs(10)));
            Ok(())
        });
    }

    /// The upstream settings, or a test failure naming the kind found.
    fn upstream(c: &Config) -> Result<&WebDavConfig, String> {
        match &c.backend {
            BackendConfig::Webdav(w) => Ok(w),
            other => Err(format!("expected kind webdav, got {other:?}")),
        }
    }

    #[test]
    fn documented_backend_forms_parse() {
        figment::Jail::expect_with(|jail| {
            // config.example.toml as shipped: kind = "local" with every
            // webdav key at its default.
            let example = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"));
            let c = Config::load(Some(example)).map_err(|e| e.to_string())?;
            assert!(matches!(
                c.backend,
                BackendConfig::Local(LocalConfig { path: None })
            ));

            // ... switched to the upstream by the environment (its header).
            jail.set_env("DEDUPDAV_BACKEND__KIND", "webdav");
            jail.set_env("DEDUPDAV_BACKEND__URL", "https://cloud.example.com/dav/");
            jail.set_env("DEDUPDAV_BACKEND__USERNAME", "dedupsvc");
            jail.set_env(
                "DEDUPDAV_BACKEND__PASSWORD_FILE",
                "/etc/dedupdav/upstream.pw",
            );
            jail.set_env("DEDUPDAV_BACKEND__RETRY_DEADLINE_SECS", "30");
            let c = Config::load(Some(example)).map_err(|e| e.to_string())?;
            let w = upstream(&c)?;
            assert_eq!(w.url, "https://cloud.example.com/dav/");
            assert_eq!(w.username, "dedupsvc");
            assert_eq!(
                w.password_file.as_deref(),
                Some(Path::new("/etc/dedupdav/upstream.pw"))
            );
            assert_eq!((w.retry_deadline_secs, w.parallelism), (30, 8));

            // ... and by the environment alone (benches/e2e.rs).
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(upstream(&c)?.root, "dedupdav");
            jail.clear_env();

            // README, "Store the objects in ownCloud".
            jail.create_file(
                "readme.toml",
                r#"[backend]
kind = "webdav"
url = "https://cloud.example.com/remote.php/dav/files/dedupsvc/"
username = "dedupsvc"
password_file = "/etc/dedupdav/upstream.pw"   # the app password
root = "dedupdav"                             # folder holding the objects
"#,
            )?;
            let c = Config::load(Some(Path::new("readme.toml"))).map_err(|e| e.to_string())?;
            let w = upstream(&c)?;
            assert_eq!(w.username, "dedupsvc");
            assert_eq!((w.retry_deadline_secs, w.request_timeout_secs), (60, 120));
            assert!(w.verify_puts && w.password.is_none());

            // A local directory, and a section without `kind` (local).
            jail.create_file(
                "local.toml",
                "[backend]\npath = \"/srv/dedupdav/objects\"\n",
            )?;
            let c = Config::load(Some(Path::new("local.toml"))).map_err(|e| e.to_string())?;
            let BackendConfig::Local(l) = &c.backend else {
                return Err(format!("expected kind local, got {:?}", c.backend).into());
            };
            assert_eq!(
                l.objects_dir(&c.data_dir),
                Path::new("/srv/dedupdav/objects")
            );
            Ok(())
        });
    }

    #[test]
    fn a_bad_backend_section_says_what_is_wrong() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "a.toml",
                "[backend]\nkind = \"webdav\"\nusername = \"svc\"\n",
            )?;
            let e = Config::load(Some(Path::new("a.toml")))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("backend") && e.contains("url is required"),
                "{e}"
            );
            jail.create_file(
                "b.toml",
                "[backend]\nkind = \"webdav\"\nurl = \"http://h/\"\nparallelism = -1\n",
            )?;
            let e = Config::load(Some(Path::new("b.toml")))
                .unwrap_err()
                .to_string();
            assert!(e.contains("backend.parallelism") && e.contains("-1"), "{e}");
            jail.create_file("c.toml", "[backend]\nkind = \"ftp\"\n")?;
            let e = Config::load(Some(Path::new("c.toml")))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("ftp") && e.contains("local") && e.contains("webdav"),
                "{e}"
            );

            Ok(())
        });
    }

    #[test]
    fn tls_parses_with_its_defaults_and_checks_the_redirect_address() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n")?;
            let c = Config::load_with_env(Some(Path::new("c.toml")), no_env())
                .map_err(|e| e.to_string())?;
            assert!(c.console.secure_cookies, "HTTPS marks the cookie Secure");
            let tls = c.tls.expect("[tls] read");
            assert_eq!(tls.cert, Path::new("c.pem"));
            assert_eq!(tls.handshake_timeout(), Duration::from_secs(10));
            assert_eq!(tls.redirect_addr().map_err(|e| e.to_string())?, None);
            jail.create_file(
                "bad.toml",
                "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nredirect_listen = \"port 80\"\n",
            )?;
            let err = Config::load_with_env(Some(Path::new("bad.toml")), no_env())
                .expect_err("a bad redirect address stops the start");
            assert!(err.to_string().contains("tls.redirect_listen"), "{err}");
            Ok(())
        });
        assert!(Config::default().tls.is_none(), "plain HTTP by default");
    }

    #[test]
    fn the_compose_configuration_parses_as_the_container_sees_it() {
        figment::Jail::expect_with(|jail| {
            let file = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/dedupdav.toml");
            // What deploy/compose.yaml and deploy/Containerfile set.
            jail.set_env("DEDUPDAV_BACKEND__PASSWORD", "from-compose");
            jail.set_env("DEDUPDAV_DATA_DIR", "/var/lib/dedupdav");
            let c = Config::load(Some(Path::new(file))).map_err(|e| e.to_string())?;
            assert_eq!(c.listen, "0.0.0.0:8443", "not the redirect's port");
            let w = upstream(&c)?;
            assert_eq!(w.url, "http://owncloud:8080/remote.php/dav/files/admin/");
            assert_eq!(w.password.as_deref(), Some("from-compose"));
            let tls = c.tls.as_ref().ok_or("[tls] is set")?;
            assert_eq!(tls.cert, Path::new("/etc/dedupdav/tls/cert.pem"));
            assert_eq!(
                tls.redirect_addr().map_err(|e| e.to_string())?,
                Some("0.0.0.0:8080".parse().unwrap())
            );
            Ok(())
        });
    }

    #[test]
    fn metrics_are_never_open_by_default() {
        let ok = |m: &MetricsConfig| m.validate().is_ok();
        let token = Some("0123456789abcdef".to_string());
        let mut m = MetricsConfig::default();
        assert!(ok(&m), "admin Basic auth only");
        m.bearer_token = Some("short".into());
        assert!(!ok(&m));
        m.bearer_token = Some("0123456789 abcdef".into());
        assert!(!ok(&m), "no spaces");
        m.bearer_token = None;
        m.listen = Some("127.0.0.1:9100".into());
        assert!(!ok(&m), "a separate address needs a token");
        m.allow_anonymous_on_loopback = true;
        assert!(ok(&m));
        assert!(m.anonymous_on("127.0.0.1:9100".parse().unwrap()));
        m.listen = Some("0.0.0.0:9100".into());
        assert!(!ok(&m), "anonymous only on loopback");
        m.bearer_token = token.clone();
        assert!(
            !ok(&m),
            "even with a token, the flag must not stand for 0.0.0.0"
        );
        m.allow_anonymous_on_loopback = false;
        assert!(ok(&m));
        assert!(!m.anonymous_on("0.0.0.0:9100".parse().unwrap()));
        m.listen = Some("nowhere".into());
        assert!(!ok(&m));
        let m = MetricsConfig {
            allow_anonymous_on_loopback: true,
            ..MetricsConfig::default()
        };
        assert!(!ok(&m), "the flag without an address");
    }
}
