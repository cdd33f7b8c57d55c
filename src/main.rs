//! The `dedupdav` command line.
#![forbid(unsafe_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// glibc's malloc keeps freed multi-megabyte chunk buffers in per-thread
/// arenas (its mmap threshold grows after the first free), which tripled the
/// peak RSS of a large upload. jemalloc, configured in .cargo/config.toml
/// with a single arena, reuses them across threads.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use dedupdav::accounts;
use dedupdav::accounts::manage::{self as manage, AccountChange, Actor, NewAccount};
use dedupdav::app::App;
use dedupdav::config::{Config, LogFormat};
use dedupdav::http::admin::client::{AdminClient, ClientError};
use dedupdav::http::admin::local::LocalAccess;
use dedupdav::http::Gateway;
use dedupdav::jobs::expire::ExpireJob;
use dedupdav::jobs::gc::GcJob;
use dedupdav::jobs::history::HistoryJob;
use dedupdav::jobs::metadata::MetadataJob;
use dedupdav::jobs::repack::RepackJob;
use dedupdav::jobs::scrub::ScrubJob;
use dedupdav::jobs::snapshot::SnapshotJob;
use dedupdav::jobs::sweep::SweepJob;
use dedupdav::jobs::{Runner, RunnerConfig};
use dedupdav::meta::{IndexError, Meta};
use dedupdav::recovery::{RestoreOptions, RestoreReport};

/// A WebDAV gateway that stores every unique chunk of every upload once,
/// compressed and encrypted, in a local directory or an ownCloud account,
/// and shows every user their own private tree.
#[derive(Parser)]
#[command(name = "dedupdav", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML). Environment variables DEDUPDAV_* override it.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Data directory (index, master key, local objects). Default ./dedupdav-data
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway. On a fresh data directory this creates the master key
    /// and a first user `admin` whose password is printed once.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Log as JSON lines instead of human-readable text.
        #[arg(long)]
        log_json: bool,
    },
    /// Manage accounts. With `serve` running on this data directory this goes
    /// through its admin API (found in <data_dir>/admin-access.json);
    /// otherwise it works on the index directly.
    #[command(subcommand)]
    User(UserCommand),
    /// Check the configured upstream: connect, write, read and remove a probe
    /// object, and print latencies or what is wrong.
    CheckUpstream,
    /// Delete the objects of chunks no file has referenced for the grace
    /// period. While `serve` runs, its gc job (and with --orphans its sweep)
    /// is asked to run now instead; it also collects every gc.interval_minutes.
    Gc {
        /// Keep chunks unreferenced for less than this many hours
        /// (default: gc.grace_hours).
        #[arg(long, value_name = "HOURS")]
        grace_hours: Option<u64>,
        /// Then also list the backend and delete objects no record names
        /// that are older than the grace period (the orphan sweep; `serve`
        /// runs it every sweep.interval_hours).
        #[arg(long)]
        orphans: bool,
    },
    /// Check the installation: the index agrees with itself and the backend
    /// holds every object it names, with the recorded size. Exits 0 only
    /// when nothing is wrong. With `serve` running this asks it (through
    /// its admin API); --read-data needs `serve` stopped.
    Check {
        /// Also fetch, authenticate and re-hash objects: all of them, or a
        /// random share (--read-data=10 reads about 10 %).
        #[arg(long, value_name = "PERCENT", num_args = 0..=1, require_equals = true, default_missing_value = "100")]
        read_data: Option<f64>,
        /// Print one JSON object (keys clean, index, objects).
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the index from the metadata sealed upstream, with nothing but
    /// the configuration and the master key, then check it. Stop `serve`
    /// first.
    Restore {
        /// Replace an existing index (it is kept beside, renamed).
        #[arg(long)]
        force: bool,
        /// Restore the newest state that can be proven even when later
        /// changes were lost upstream (the unusable segments are deleted).
        #[arg(long)]
        accept_loss: bool,
        /// Print the restore's report and then the check's, one JSON object
        /// per line.
        #[arg(long)]
        json: bool,
    },
    /// Print users, files, logical and stored bytes, chunks and the dedup
    /// ratio (from the running `serve` when there is one).
    Stats {
        /// Print JSON (keys users, files, logical_bytes, stored_bytes, chunks).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. Without --password-stdin a random password is printed.
    Add {
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Limit on the user's stored file sizes, e.g. 500M, 10GiB.
        #[arg(long, value_name = "SIZE")]
        quota: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users with their usage.
    List,
    /// Remove a user and all their files.
    Remove { name: String },
    /// Set a user's password. Without --password-stdin a random one is printed.
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change a user's quota, role or whether they may log in.
    Set {
        name: String,
        /// New limit, e.g. 500M, 10GiB; `none` lifts it.
        #[arg(long, value_name = "SIZE")]
        quota: Option<String>,
        /// Make the user an administrator (true) or not (false).
        #[arg(long, value_name = "BOOL")]
        admin: Option<bool>,
        /// Refuse the user's logins (their files are kept).
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Allow a disabled user to log in again.
        #[arg(long)]
        enable: bool,
    },
    /// A user's app passwords: one per device or sync client, each revocable.
    #[command(subcommand)]
    AppPassword(AppPasswordCommand),
}

#[derive(Subcommand)]
enum AppPasswordCommand {
    /// Create an app password labelled LABEL; it is printed once, never again.
    Add { user: String, label: String },
    /// List a user's app passwords (id, label, created, last used).
    List { user: String },
    /// Revoke app password ID of a user: the device using it is locked out.
    Revoke { user: String, id: u64 },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dedupdav: {e}");
            ExitCode::FAILURE
        }
    }
}

type AnyError = Box<dyn std::error::Error>;

fn load_config(cli: &Cli) -> Result<Config, AnyError> {
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(d) = &cli.data_dir {
        config.data_dir = d.clone();
    }
    Ok(config)
}

fn init_logs(config: &Config, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json || config.log_format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn run(cli: Cli) -> Result<(), AnyError> {
    let mut config = load_config(&cli)?;
    match cli.command {
        Command::Serve { listen, log_json } => {
            if let Some(l) = listen {
                config.listen = l;
            }
            init_logs(&config, log_json);
            serve(config)
        }
        Command::User(cmd) => {
            init_logs(&config, false);
            user_command(config, cmd)
        }
        Command::Gc {
            grace_hours,
            orphans,
        } => {
            init_logs(&config, false);
            collect_garbage(config, grace_hours, orphans)
        }
        Command::CheckUpstream => {
            init_logs(&config, false);
            check_upstream(config)
        }
        Command::Check { read_data, json } => {
            init_logs(&config, false);
            match (remote(&config)?, read_data) {
                (Remote::Gateway(client), None) => check_remote(&client, json),
                (Remote::Gateway(client), Some(_)) => Err(format!(
                    "`check --read-data` needs `serve` stopped (the gateway at {} runs); \
                     without --read-data the running gateway answers the check",
                    client.api.url()
                )
                .into()),
                (Remote::None(stale), _) => check(config, read_data, json, stale.as_deref()),
            }
        }
        Command::Restore {
            force,
            accept_loss,
            json,
        } => {
            init_logs(&config, false);
            let options = RestoreOptions { force, accept_loss };
            restore(config, options, json)
        }
        Command::Stats { json } => {
            init_logs(&config, false);
            let stats = match remote(&config)? {
                Remote::Gateway(client) => {
                    let answer = client.get("/stats")?;
                    serde_json::from_value(answer["installation"].clone())?
                }
                Remote::None(stale) => {
                    let app = open_app(config, stale.as_deref())?;
                    block_on(app.meta.stats())??
                }
            };
            if json {
                println!("{}", accounts::stats_json(&stats));
            } else {
                print!("{}", accounts::render_stats(&stats));
            }
            Ok(())
        }
    }
}

fn serve(config: Config) -> Result<(), AnyError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listen = config.listen.clone();
        let app = App::open(config)?;
        if let Some(pw) = accounts::ensure_first_admin(&app.meta).await? {
            say(&format!(
                "\nCreated the first user: admin\n  password: {pw}\n\
                 (shown only now; change it with `dedupdav user passwd admin`)\n"
            ));
        }
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, backend = %app.store.backend().describe(), "serving");
        let metrics_listener = match app.config.metrics.listen_addr()? {
            Some(at) => {
                let l = tokio::net::TcpListener::bind(at)
                    .await
                    .map_err(|e| format!("cannot listen on {at} (metrics.listen): {e}"))?;
                Some(l)
            }
            None => None,
        };
        let gateway = Gateway::new(&app);
        let runner = start_jobs(&app, &gateway).await?;
        gateway.show_jobs(runner.status());
        // The command line on this machine reaches the admin API with the
        // token of this file (see http/admin/local.rs).
        let access = LocalAccess::new(addr);
        access.write(&app.config.data_dir)?;
        gateway.allow_local_admin(&access.token);
        say(&format!(
            "dedupdav listening on http://{addr}/\n  \
             WebDAV: http://{addr}/remote.php/dav/files/<user>/  (or /remote.php/webdav/)\n  \
             admin API: http://{addr}/api/v1/ (the local command line uses {})",
            dedupdav::http::admin::local::access_path(&app.config.data_dir).display()
        ));
        if let Some(l) = &metrics_listener {
            say(&format!("  metrics: http://{}/metrics", l.local_addr()?));
        }
        let metrics = metrics_listener
            .map(|l| tokio::spawn(gateway.clone().serve_metrics(l, std::future::pending())));
        gateway.serve(listener, shutdown_signal()).await;
        if let Some(task) = metrics {
            task.abort();
        }
        access.remove(&app.config.data_dir);
        runner.shutdown().await;
        tracing::info!("stopped");
        Ok::<(), AnyError>(())
    })
}

/// Starts the background jobs: garbage collection (unless
/// `gc.interval_minutes` is 0), chunked-upload expiry, the scrub (unless
/// `scrub.interval_hours` is 0), the orphan sweep (unless
/// `sweep.interval_hours` is 0), the metadata upload and its snapshots
/// (unless `metadata.snapshot_interval_minutes` is 0).
async fn start_jobs(app: &App, gateway: &Arc<Gateway>) -> Result<Runner, AnyError> {
    let mut runner = Runner::new(RunnerConfig::default());
    if let Some(gc) = GcJob::from_config(app.store.clone(), &app.config.gc) {
        runner.spawn(gc);
    }
    if let Some(repack) = RepackJob::from_config(app.store.clone(), &app.config.gc) {
        runner.spawn(repack);
    }
    runner.spawn(ExpireJob::new(gateway.clone()));
    runner.spawn(HistoryJob::new(app.meta.clone(), gateway.clone()));
    let scrub = ScrubJob::from_config(app.store.clone(), app.meta.clone(), &app.config.scrub);
    if let Some(scrub) = scrub.await? {
        runner.spawn(scrub);
    }
    let (sweep, gc) = (&app.config.sweep, &app.config.gc);
    if let Some(sweep) = SweepJob::from_config(app.store.clone(), sweep, gc) {
        runner.spawn(sweep);
    }
    let (meta, store) = (app.meta.clone(), app.store.clone());
    runner.spawn(MetadataJob::from_config(meta, store, &app.config.metadata));
    let data_dir = app.config.data_dir.clone();
    let snapshot = SnapshotJob::from_config(app.store.clone(), data_dir, &app.config.metadata);
    if let Some(snapshot) = snapshot.await? {
        runner.spawn(snapshot);
    }
    Ok(runner)
}

/// Prints a line for the operator; a closed stdout must not stop the server.
fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn collect_garbage(
    config: Config,
    grace_hours: Option<u64>,
    orphans: bool,
) -> Result<(), AnyError> {
    let stale = match remote(&config)? {
        Remote::Gateway(client) => return collect_through(&client, grace_hours, orphans),
        Remote::None(stale) => stale,
    };
    let grace = Duration::from_secs(grace_hours.unwrap_or(config.gc.grace_hours) * 3600);
    let app = open_app(config, stale.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message("collecting unreferenced chunks");
    let report = runtime.block_on(app.store.collect_garbage(grace, |r| {
        bar.set_message(format!(
            "{} objects deleted, {} bytes freed",
            r.deleted, r.bytes_freed
        ));
        bar.tick();
    }))?;
    bar.finish_and_clear();
    println!(
        "deleted {} objects ({} bytes); {} in use by uploads kept; {} deletions failed",
        report.deleted, report.bytes_freed, report.in_use, report.delete_failures
    );
    repack(&app, &runtime)?;
    if orphans {
        sweep_orphans(&app, &runtime, grace)?;
    }
    Ok(())
}

/// `dedupdav gc`'s second step: sparse and small packs rewritten.
fn repack(app: &App, runtime: &tokio::runtime::Runtime) -> Result<(), AnyError> {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message("rewriting sparse and small packs");
    let below = app.config.gc.repack_below_percent.min(100);
    let report = runtime.block_on(async {
        let mut round = app.store.repack_round();
        while !round.is_done() {
            app.store.repack_batch(&mut round, below).await?;
            bar.tick();
        }
        Ok::<_, dedupdav::store::StoreError>(round.report)
    })?;
    bar.finish_and_clear();
    println!(
        "rewrote {} packs into {} ({} chunks moved), deleted {}, {} bytes freed",
        report.packs_rewritten,
        report.packs_written,
        report.chunks_moved,
        report.packs_deleted,
        report.bytes_freed
    );
    Ok(())
}

/// `dedupdav gc` while `serve` runs: its own jobs collect (and sweep), now,
/// with its grace period.
fn collect_through(
    client: &Client,
    grace_hours: Option<u64>,
    orphans: bool,
) -> Result<(), AnyError> {
    if grace_hours.is_some() {
        return Err("serve is running and collects with its gc.grace_hours; \
                    --grace-hours needs it stopped"
            .into());
    }
    let mut jobs = vec!["gc", "repack"];
    if orphans {
        jobs.push("sweep");
    }
    for job in jobs {
        client.call(reqwest::Method::POST, &format!("/jobs/{job}/run"), None)?;
        println!("the running gateway's {job} job runs now (see the console's Jobs page or GET /api/v1/jobs)");
    }
    Ok(())
}

/// `dedupdav gc --orphans`: the orphan sweep after the collection.
fn sweep_orphans(
    app: &App,
    runtime: &tokio::runtime::Runtime,
    grace: Duration,
) -> Result<(), AnyError> {
    let bar = indicatif::ProgressBar::new(dedupdav::store::SWEEP_SHARDS as u64);
    bar.set_message("sweeping objects no record names");
    let report = runtime.block_on(app.store.sweep_orphans(grace, |r| {
        bar.set_message(format!("{} listed, {} deleted", r.listed, r.deleted));
        bar.inc(1);
    }))?;
    bar.finish_and_clear();
    println!(
        "orphan sweep: {} objects listed; deleted {} no record names ({} bytes); \
         {} younger than the grace period kept; {} in use kept; {} deletions failed",
        report.listed,
        report.deleted,
        report.bytes_freed,
        report.young,
        report.in_use,
        report.delete_failures
    );
    Ok(())
}

/// `dedupdav check` on the index itself; `stale`: the URL of an access
/// file whose gateway did not answer.
fn check(
    config: Config,
    read_percent: Option<f64>,
    json: bool,
    stale: Option<&str>,
) -> Result<(), AnyError> {
    use dedupdav::files::check;
    use std::io::IsTerminal;
    // A check must read the objects with the key they were sealed under;
    // never make up a new one here.
    if config.master_key.is_none() && !config.key_path().exists() {
        let path = config.key_path();
        return Err(format!(
            "no master key at {}: the check needs the key the objects were sealed with",
            path.display()
        )
        .into());
    }
    let app = open_app(config, stale)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let options = check::CheckOptions { read_percent };
    let report = runtime.block_on(check::check(
        &app.meta,
        &app.store,
        options,
        |index| {
            bar.set_length(index.chunks);
            bar.set_message("objects");
        },
        |done| bar.set_position(done),
    ))?;
    bar.finish_and_clear();
    if json {
        println!("{}", check::render_json(&report));
    } else {
        print!("{}", check::render_text(&report));
    }
    if report.clean {
        Ok(())
    } else {
        Err("the check found problems (listed above)".into())
    }
}

fn restore(config: Config, options: RestoreOptions, json: bool) -> Result<(), AnyError> {
    use std::io::IsTerminal;
    let keys = dedupdav::app::existing_keys(&config)?;
    std::fs::create_dir_all(&config.data_dir)?;
    let backend = dedupdav::backend::open(&config.backend, &config.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new_spinner()
    } else {
        indicatif::ProgressBar::hidden()
    };
    let progress = |phase: &str, done: u64| {
        bar.set_message(format!("{phase}: {done}"));
        bar.tick();
    };
    let restored = dedupdav::recovery::restore(&config, keys, backend, options, &progress);
    let report = runtime.block_on(restored)?;
    bar.finish_and_clear();
    drop(runtime);
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", render_restore(&report));
        println!("checking the restored index and the objects it names:");
    }
    check(config, None, json, None)
}

fn render_restore(r: &RestoreReport) -> String {
    let mut out = String::new();
    match (r.snapshot, r.snapshot_created) {
        (Some(g), Some(t)) => out.push_str(&format!(
            "restored from snapshot {g} (sealed at {t}, Unix seconds; {} rows)\n",
            r.snapshot_rows
        )),
        _ => out.push_str("restored from the chain of segments alone (no snapshot)\n"),
    }
    for why in &r.unusable_snapshots {
        out.push_str(&format!("  not used: {why}\n"));
    }
    out.push_str(&format!(
        "replayed {} segments: {} transactions, {} rows\n\
         restored state: change {}, committed at {} (Unix seconds)\n",
        r.segments, r.transactions, r.rows, r.state_seq, r.state_time
    ));
    for lost in &r.lost {
        out.push_str(&format!("  LOST (accepted): {lost}\n"));
    }
    if r.recount.corrected > 0 || r.recount.unrecorded > 0 {
        out.push_str(&format!(
            "reference counts: {} corrected; {} chunks named without a record\n",
            r.recount.corrected, r.recount.unrecorded
        ));
    }
    if let Some(g) = r.new_snapshot {
        out.push_str(&format!("sealed snapshot {g} of the restored state\n"));
    }
    if let Some(p) = &r.replaced {
        out.push_str(&format!("the replaced index was kept at {}\n", p.display()));
    }
    out
}

fn check_upstream(config: Config) -> Result<(), AnyError> {
    if !matches!(config.backend, dedupdav::config::BackendConfig::Webdav(_)) {
        return Err("backend.kind is \"local\": there is no upstream to check (set [backend] kind = \"webdav\")".into());
    }
    let store = dedupdav::app::open_webdav(&config)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(store.check()) {
        Ok(report) => {
            println!("upstream OK\n{report}");
            Ok(())
        }
        Err(e) => Err(format!("upstream check failed: {e}").into()),
    }
}

fn read_password_stdin() -> Result<String, AnyError> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s)?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}

/// Where the commands that manage a running gateway go.
enum Remote {
    /// A `serve` of this data directory answers its admin API.
    Gateway(Client),
    /// None answers; the URL of a stale access file, if there was one.
    None(Option<String>),
}

/// The admin API of the running `serve`, with a runtime to call it from
/// this synchronous command line.
struct Client {
    api: AdminClient,
    runtime: tokio::runtime::Runtime,
}

impl Client {
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, ClientError> {
        self.runtime
            .block_on(self.api.call(method, path, body.as_ref()))
    }

    fn get(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        self.call(reqwest::Method::GET, path, None)
    }
}

/// Finds the running `serve` of this data directory through its access
/// file and asks it whether it answers. No file, or nobody answering at
/// its address (a `serve` that crashed), means no gateway runs.
fn remote(config: &Config) -> Result<Remote, AnyError> {
    let Some(access) = LocalAccess::read(&config.data_dir)? else {
        return Ok(Remote::None(None));
    };
    let url = access.url.clone();
    let client = Client {
        api: AdminClient::new(access)?,
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
    };
    match client.get("/jobs") {
        Ok(_) => Ok(Remote::Gateway(client)),
        Err(ClientError::Unreachable { .. }) => Ok(Remote::None(Some(url))),
        Err(e) => Err(format!("the running gateway at {url} refused the command line: {e}").into()),
    }
}

/// Says plainly why the index cannot be opened while something holds it.
fn explain_in_use(e: IndexError, stale: Option<&str>) -> AnyError {
    match (e, stale) {
        (IndexError::InUse { path }, Some(url)) => format!(
            "the index {path} is in use by another process, and the gateway named in admin-access.json ({url}) does not answer; \
             is `dedupdav serve` starting or stopping? try again shortly"
        )
        .into(),
        (IndexError::InUse { path }, None) => format!(
            "the index {path} is in use by another process (a `dedupdav serve` without an admin-access.json in its data directory, \
             or another command); try again once it is done"
        )
        .into(),
        (e, _) => e.into(),
    }
}

fn open_meta(config: &Config, stale: Option<&str>) -> Result<Meta, AnyError> {
    std::fs::create_dir_all(&config.data_dir)?;
    Meta::open_redb(&config.index_path(), config.prop_limits())
        .map_err(|e| explain_in_use(e, stale))
}

fn open_app(config: Config, stale: Option<&str>) -> Result<App, AnyError> {
    App::open(config).map_err(|e| match e {
        dedupdav::app::StartError::Index(e) => explain_in_use(e, stale),
        e => e.into(),
    })
}

/// Runs one metadata operation of a command that does not serve.
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, std::io::Error> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f))
}

/// `dedupdav check` through the running gateway.
fn check_remote(client: &Client, json: bool) -> Result<(), AnyError> {
    let report = client.get("/check")?;
    if json {
        println!("{report}");
    } else {
        print!("{}", render_check_json(&report));
    }
    if report["clean"] == serde_json::Value::Bool(true) {
        Ok(())
    } else {
        Err("the check found problems (listed above)".into())
    }
}

/// The check's JSON answer as text for a person.
fn render_check_json(r: &serde_json::Value) -> String {
    let (i, o) = (&r["index"], &r["objects"]);
    let mut out = format!(
        "index: {} users, {} nodes ({} files), {} entries, {} chunks, {} references\n\
         objects: {} checked\n",
        i["users"],
        i["nodes"],
        i["files"],
        i["dirents"],
        i["chunks"],
        i["references"],
        o["checked"]
    );
    let findings = [&i["findings"], &o["findings"], &r["scrub"]["findings"]];
    let mut problems = 0;
    for list in findings {
        for f in list.as_array().into_iter().flatten() {
            problems += 1;
            out += &format!("PROBLEM {f}\n");
        }
    }
    out += &if r["clean"] == serde_json::Value::Bool(true) {
        "result: clean\n".to_string()
    } else {
        format!("result: {problems} problem(s) listed\n")
    };
    out
}

fn print_users(users: &[(String, bool, bool, u64, Option<u64>)]) {
    println!(
        "{:<24} {:>6} {:>9} {:>16} {:>16}",
        "NAME", "ADMIN", "DISABLED", "USED", "QUOTA"
    );
    for (name, admin, disabled, used, quota) in users {
        let quota = quota.map_or("-".to_string(), |q| q.to_string());
        let yes = |b: &bool| if *b { "yes" } else { "no" };
        println!(
            "{:<24} {:>6} {:>9} {:>16} {:>16}",
            name,
            yes(admin),
            yes(disabled),
            used,
            quota
        );
    }
}

/// The password a command sets: from standard input, or generated (and
/// then printed once).
fn password_for(stdin: bool) -> Result<(String, bool), AnyError> {
    Ok(if stdin {
        (read_password_stdin()?, false)
    } else {
        (accounts::generate_password(), true)
    })
}

/// What `user set` asks for.
fn account_change(
    quota: Option<String>,
    admin: Option<bool>,
    disable: bool,
    enable: bool,
) -> Result<AccountChange, AnyError> {
    let quota = match quota.as_deref() {
        None => None,
        Some("none") => Some(None),
        Some(q) => Some(Some(accounts::parse_size(q)?)),
    };
    let change = AccountChange {
        password: None,
        quota,
        admin,
        disabled: (disable || enable).then_some(disable),
    };
    if change.is_empty() {
        return Err("nothing to change: give --quota, --admin, --disable or --enable".into());
    }
    Ok(change)
}

fn change_json(change: &AccountChange) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    if let Some(p) = &change.password {
        body.insert("password".into(), p.clone().into());
    }
    if let Some(q) = change.quota {
        body.insert("quota".into(), q.into());
    }
    if let Some(a) = change.admin {
        body.insert("admin".into(), a.into());
    }
    if let Some(d) = change.disabled {
        body.insert("disabled".into(), d.into());
    }
    body.into()
}

fn user_command(config: Config, cmd: UserCommand) -> Result<(), AnyError> {
    match remote(&config)? {
        Remote::Gateway(client) => user_command_remote(&client, cmd),
        Remote::None(stale) => {
            let meta = open_meta(&config, stale.as_deref())?;
            user_command_direct(&config, &meta, cmd)
        }
    }
}

/// A user command through the running gateway's admin API.
fn user_command_remote(client: &Client, cmd: UserCommand) -> Result<(), AnyError> {
    use reqwest::Method;
    let user_path = |name: &str| {
        format!(
            "/users/{}",
            percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
        )
    };
    match cmd {
        UserCommand::Add {
            name,
            admin,
            quota,
            password_stdin,
        } => {
            let quota = quota.map(|q| accounts::parse_size(&q)).transpose()?;
            let mut body = serde_json::json!({"name": name, "admin": admin, "quota": quota});
            if password_stdin {
                body["password"] = read_password_stdin()?.into();
            }
            let answer = client.call(Method::POST, "/users", Some(body))?;
            println!("created user {name}");
            if let Some(p) = answer["password"].as_str() {
                println!("  password: {p}");
            }
        }
        UserCommand::List => {
            let answer = client.get("/users")?;
            let users: Vec<_> = answer["users"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|u| {
                    (
                        u["name"].as_str().unwrap_or_default().to_string(),
                        u["admin"].as_bool().unwrap_or_default(),
                        u["disabled"].as_bool().unwrap_or_default(),
                        u["used"].as_u64().unwrap_or_default(),
                        u["quota"].as_u64(),
                    )
                })
                .collect();
            print_users(&users);
        }
        UserCommand::Remove { name } => {
            client.call(Method::DELETE, &user_path(&name), None)?;
            println!("removed user {name} and their files");
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let (password, generated) = password_for(password_stdin)?;
            let body = serde_json::json!({ "password": password });
            client.call(Method::PATCH, &user_path(&name), Some(body))?;
            println!("password of {name} changed");
            if generated {
                println!("  password: {password}");
            }
        }
        UserCommand::AppPassword(cmd) => app_password_remote(client, cmd)?,
        UserCommand::Set {
            name,
            quota,
            admin,
            disable,
            enable,
        } => {
            let change = account_change(quota, admin, disable, enable)?;
            client.call(Method::PATCH, &user_path(&name), Some(change_json(&change)))?;
            println!("user {name} changed");
        }
    }
    Ok(())
}

/// A user command on the index itself (no gateway runs).
fn user_command_direct(config: &Config, meta: &Meta, cmd: UserCommand) -> Result<(), AnyError> {
    let actor = Actor::offline_cli();
    match cmd {
        UserCommand::Add {
            name,
            admin: is_admin,
            quota,
            password_stdin,
        } => {
            let quota = quota.map(|q| accounts::parse_size(&q)).transpose()?;
            let password = if password_stdin {
                Some(read_password_stdin()?)
            } else {
                None
            };
            let new = NewAccount {
                name: name.clone(),
                password,
                admin: is_admin,
                quota,
            };
            let created = block_on(manage::create(meta, &actor, new))??;
            println!("created user {name}");
            if let Some(p) = created.generated_password {
                println!("  password: {p}");
            }
        }
        UserCommand::List => {
            let users: Vec<_> = block_on(meta.users())??
                .into_iter()
                .map(|u| (u.name, u.admin, u.disabled, u.used, u.quota))
                .collect();
            print_users(&users);
        }
        UserCommand::Remove { name } => {
            block_on(manage::remove(meta, &actor, &name))??;
            println!("removed user {name} and their files");
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let (password, generated) = password_for(password_stdin)?;
            let change = AccountChange {
                password: Some(password.clone()),
                ..AccountChange::default()
            };
            block_on(manage::change(meta, &actor, &name, change))??;
            println!("password of {name} changed");
            if generated {
                println!("  password: {password}");
            }
        }
        UserCommand::AppPassword(cmd) => app_password_direct(config, meta, cmd)?,
        UserCommand::Set {
            name,
            quota,
            admin,
            disable,
            enable,
        } => {
            let change = account_change(quota, admin, disable, enable)?;
            block_on(manage::change(meta, &actor, &name, change))??;
            println!("user {name} changed");
        }
    }
    Ok(())
}

fn app_password_path(user: &str) -> String {
    let user = percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC);
    format!("/users/{user}/app-passwords")
}

/// `dedupdav user app-password …` through the running gateway's admin API.
fn app_password_remote(client: &Client, cmd: AppPasswordCommand) -> Result<(), AnyError> {
    match cmd {
        AppPasswordCommand::Add { user, label } => {
            let body = serde_json::json!({ "label": label });
            let path = app_password_path(&user);
            let a = client.call(reqwest::Method::POST, &path, Some(body))?;
            let secret = a["password"].as_str().unwrap_or_default();
            print_created_app_password(&user, a["id"].as_u64(), &label, secret)
        }
        AppPasswordCommand::List { user } => {
            let a = client.get(&app_password_path(&user))?;
            let listed: Vec<AppPasswordRow> = a["app_passwords"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["id"].as_u64().unwrap_or_default(),
                        p["label"].as_str().unwrap_or_default().to_string(),
                        p["created"].as_i64().unwrap_or_default(),
                        p["last_used"].as_u64(),
                    )
                })
                .collect();
            print_app_passwords(&user, &listed);
            Ok(())
        }
        AppPasswordCommand::Revoke { user, id } => {
            let path = format!("{}/{id}", app_password_path(&user));
            client.call(reqwest::Method::DELETE, &path, None)?;
            println!("revoked app password {id} of {user}");
            Ok(())
        }
    }
}

/// `dedupdav user app-password …` on the index (no gateway runs).
fn app_password_direct(
    config: &Config,
    meta: &Meta,
    cmd: AppPasswordCommand,
) -> Result<(), AnyError> {
    let actor = Actor::offline_cli();
    match cmd {
        AppPasswordCommand::Add { user, label } => {
            let keys = dedupdav::app::keys(config)?;
            let created = block_on(manage::create_app_password(
                meta, &keys, &actor, &user, &label,
            ))??;
            let id = Some(created.info.id);
            print_created_app_password(&user, id, &label, &created.secret)
        }
        AppPasswordCommand::List { user } => {
            let listed: Vec<AppPasswordRow> =
                block_on(accounts::app_passwords::list(meta, &user))??
                    .into_iter()
                    .map(|a| (a.id, a.label, a.created, a.last_used))
                    .collect();
            print_app_passwords(&user, &listed);
            Ok(())
        }
        AppPasswordCommand::Revoke { user, id } => {
            block_on(manage::revoke_app_password(meta, &actor, &user, id))??;
            println!("revoked app password {id} of {user}");
            Ok(())
        }
    }
}

fn print_created_app_password(
    user: &str,
    id: Option<u64>,
    label: &str,
    secret: &str,
) -> Result<(), AnyError> {
    let id = id.ok_or("the gateway answered without an id")?;
    println!("created app password {id} ({label:?}) for {user}");
    println!("  password: {secret}");
    println!("  it is shown only now; use it with the user name {user}");
    Ok(())
}

/// An app password as listed: id, label, created, last used.
type AppPasswordRow = (u64, String, i64, Option<u64>);

fn print_app_passwords(user: &str, listed: &[AppPasswordRow]) {
    println!("app passwords of {user}:");
    println!("{:<8} {:<32} {:<30} LAST USED", "ID", "LABEL", "CREATED");
    for (id, label, created, last) in listed {
        let created = unix_time((*created).max(0) as u64);
        let last = last.map_or_else(|| "-".to_string(), unix_time);
        println!("{id:<8} {label:<32} {created:<30} {last}");
    }
}

/// Unix seconds as an HTTP date (UTC).
fn unix_time(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}
