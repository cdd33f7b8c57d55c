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
use dedupdav::app::App;
use dedupdav::config::{Config, LogFormat};
use dedupdav::http::Gateway;
use dedupdav::jobs::expire::ExpireJob;
use dedupdav::jobs::gc::GcJob;
use dedupdav::jobs::history::HistoryJob;
use dedupdav::jobs::metadata::MetadataJob;
use dedupdav::jobs::scrub::ScrubJob;
use dedupdav::jobs::snapshot::SnapshotJob;
use dedupdav::jobs::sweep::SweepJob;
use dedupdav::jobs::{Runner, RunnerConfig};
use dedupdav::meta::Meta;
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
    /// Manage accounts (stop `serve` first: the index belongs to one process).
    #[command(subcommand)]
    User(UserCommand),
    /// Check the configured upstream: connect, write, read and remove a probe
    /// object, and print latencies or what is wrong.
    CheckUpstream,
    /// Delete the objects of chunks no file has referenced for the grace
    /// period (stop `serve` first; its gc job also collects every gc.interval_minutes).
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
    /// when nothing is wrong. Stop `serve` first (the index belongs to one
    /// process).
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
    /// Print users, files, logical and stored bytes, chunks and the dedup ratio.
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
            check(config, read_data, json)
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
            let app = App::open(config)?;
            let stats = block_on(app.meta.stats())??;
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
        say(&format!(
            "dedupdav listening on http://{addr}/\n  \
             WebDAV: http://{addr}/remote.php/dav/files/<user>/  (or /remote.php/webdav/)"
        ));
        tracing::info!(%addr, backend = %app.store.backend().describe(), "serving");
        let gateway = Gateway::new(&app);
        let runner = start_jobs(&app, &gateway).await?;
        gateway.show_jobs(runner.status());
        gateway.serve(listener, shutdown_signal()).await;
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
    let grace = Duration::from_secs(grace_hours.unwrap_or(config.gc.grace_hours) * 3600);
    let app = App::open(config)?;
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
    if orphans {
        sweep_orphans(&app, &runtime, grace)?;
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

fn check(config: Config, read_percent: Option<f64>, json: bool) -> Result<(), AnyError> {
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
    let app = App::open(config)?;
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
    check(config, None, json)
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

fn open_meta(config: &Config) -> Result<Meta, AnyError> {
    std::fs::create_dir_all(&config.data_dir)?;
    Ok(Meta::open_redb(&config.index_path(), config.prop_limits())?)
}

/// Runs one metadata operation of a command that does not serve.
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, std::io::Error> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .build()?
        .block_on(f))
}

fn user_command(config: Config, cmd: UserCommand) -> Result<(), AnyError> {
    let meta = open_meta(&config)?;
    match cmd {
        UserCommand::Add {
            name,
            admin: is_admin,
            quota,
            password_stdin,
        } => {
            let quota = quota.map(|q| accounts::parse_size(&q)).transpose()?;
            let (password, generated) = if password_stdin {
                (read_password_stdin()?, false)
            } else {
                (accounts::generate_password(), true)
            };
            block_on(accounts::add_user(&meta, &name, &password, is_admin, quota))??;
            println!("created user {name}");
            if generated {
                println!("  password: {password}");
            }
        }
        UserCommand::List => {
            println!(
                "{:<24} {:>6} {:>16} {:>16}",
                "NAME", "ADMIN", "USED", "QUOTA"
            );
            for u in block_on(meta.users())?? {
                let quota = u.quota.map_or("-".to_string(), |q| q.to_string());
                let admin_flag = if u.admin { "yes" } else { "no" };
                println!(
                    "{:<24} {:>6} {:>16} {:>16}",
                    u.name, admin_flag, u.used, quota
                );
            }
        }
        UserCommand::Remove { name } => {
            block_on(accounts::remove_user(&meta, &name))??;
            println!("removed user {name} and their files");
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let (password, generated) = if password_stdin {
                (read_password_stdin()?, false)
            } else {
                (accounts::generate_password(), true)
            };
            block_on(accounts::set_password(&meta, &name, &password))??;
            println!("password of {name} changed");
            if generated {
                println!("  password: {password}");
            }
        }
        UserCommand::AppPassword(cmd) => app_password_command(&config, &meta, cmd)?,
    }
    Ok(())
}

/// `dedupdav user app-password …`, on the index directly (the server must
/// be stopped). Everything the command does is here, so it can be routed
/// through a running server's admin API as a whole.
fn app_password_command(
    config: &Config,
    meta: &Meta,
    cmd: AppPasswordCommand,
) -> Result<(), AnyError> {
    use accounts::app_passwords;
    match cmd {
        AppPasswordCommand::Add { user, label } => {
            let keys = dedupdav::app::keys(config)?;
            let created = block_on(app_passwords::create(meta, &keys, &user, &label))??;
            println!(
                "created app password {} ({:?}) for {user}",
                created.info.id, created.info.label
            );
            println!("  password: {}", created.secret);
            println!("  it is shown only now; use it with the user name {user}");
        }
        AppPasswordCommand::List { user } => {
            let listed = block_on(app_passwords::list(meta, &user))??;
            println!("{:<8} {:<32} {:<30} LAST USED", "ID", "LABEL", "CREATED");
            for a in listed {
                let created = unix_time(a.created.max(0) as u64);
                let last = a.last_used.map_or_else(|| "-".to_string(), unix_time);
                println!("{:<8} {:<32} {:<30} {last}", a.id, a.label, created);
            }
        }
        AppPasswordCommand::Revoke { user, id } => {
            block_on(app_passwords::revoke(meta, &user, id))??;
            println!("revoked app password {id} of {user}");
        }
    }
    Ok(())
}

/// Unix seconds as an HTTP date (UTC).
fn unix_time(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}
