//! The `imgstore` binary: `imgstore serve` runs the daemon; other verbs talk
//! to a running daemon over its socket.

use clap::{Parser, Subcommand};
use imgstore::config::Config;
use imgstore::server;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "imgstore",
    version,
    about = "Image store daemon for ZFS compute nodes (IMGAPI-compatible)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the daemon in the foreground (SMF and systemd supervise it).
    Serve(ServeArgs),
    /// Check the store, and with --repair fix what can be fixed without
    /// losing data. Works on a stopped daemon's data dir; while the daemon
    /// runs use GET /state and POST /state?action=repair. Exits 0 when no
    /// error remains, 2 when one does, 1 when it could not run.
    Fsck(FsckArgs),
    /// Remove unreferenced blobs, stale temp files, expired placeholders and
    /// tasks (and with --uninstall-unused-days, unused installed images).
    /// Works on a stopped daemon's data dir; while it runs use POST /vacuum.
    Vacuum(VacuumArgs),
}

#[derive(clap::Args, Clone)]
struct StoreArgs {
    /// Config file; when the default path does not exist, embedded defaults are used.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Data directory (overrides the config's data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl StoreArgs {
    fn load(&self) -> Result<Config, String> {
        let mut c = Config::load(self.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
        }
        c.validate()?;
        imgstore::log::init("warn", "text");
        Ok(c)
    }
}

#[derive(clap::Args, Clone)]
struct FsckArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Repair what can be repaired without losing data.
    #[arg(long)]
    repair: bool,
    /// Check blob sizes only, without re-reading every blob for its digests.
    #[arg(long)]
    quick: bool,
    /// Print the report as JSON (the shape of GET /state).
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Clone)]
struct VacuumArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Dry run: report what would be removed, remove nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Also uninstall installed images without clones unused for N days.
    #[arg(long, value_name = "N")]
    uninstall_unused_days: Option<u64>,
    /// The pool for --uninstall-unused-days (default: the config's default_pool).
    #[arg(long, value_name = "POOL", requires = "uninstall_unused_days")]
    pool: Option<String>,
}

/// Exit status of `fsck` when errors remain.
const EXIT_ERRORS_REMAIN: u8 = 2;

fn fsck(args: FsckArgs) -> Result<ExitCode, String> {
    use imgstore::service::fsck;
    let config = args.store.load()?;
    let report = fsck::run_offline(
        &config,
        fsck::Options {
            verify: !args.quick,
            repair: args.repair,
        },
    )?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render());
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERRORS_REMAIN)
    })
}

fn vacuum(args: VacuumArgs) -> Result<ExitCode, String> {
    use imgstore::service::{fsck, vacuum, Service};
    let config = args.store.load()?;
    let _lock = fsck::lock_offline(&config, "vacuum", "POST /vacuum")?;
    let svc = Service::open(config)?;
    let report = svc
        .vacuum(&vacuum::Options {
            dry_run: args.dry_run,
            uninstall_unused_days: args.uninstall_unused_days,
            pool: args.pool,
        })
        .map_err(|e| e.to_string())?;
    svc.flush().map_err(|e| e.to_string())?;
    print!("{}", report.render());
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Clone)]
struct ServeArgs {
    /// Config file; when the default path does not exist, embedded defaults are used.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Data directory (overrides the config's data_dir).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Socket path (overrides the config's socket).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Log format (overrides the config's log_format).
    #[arg(long, value_parser = ["json", "text"])]
    log_format: Option<String>,
}

impl ServeArgs {
    fn load(&self) -> Result<Config, String> {
        let mut c = Config::load(self.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
        }
        if let Some(s) = &self.socket {
            c.socket = s.clone();
        }
        if let Some(f) = &self.log_format {
            c.log_format = f.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

fn serve(args: ServeArgs) -> Result<(), String> {
    let config = args.load()?;
    // glibc gives every thread that allocates under contention its own
    // arena (up to 8 per core); with hundreds of connections and blocking
    // threads that fragments memory and RSS creeps up. Four arenas keep
    // RSS flat under the soak test at no measurable cost.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
    let level = imgstore::log::init(&config.log_level, &config.log_format);
    let control = server::signals()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("imgstore")
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    rt.block_on(async move {
        let bound = server::bind(config)?;
        server::run(bound, control, move |svc| {
            let new = match args.load() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: new config refused; keeping the old one");
                    return;
                }
            };
            let old = svc.config();
            let mut changed = Vec::new();
            if new.log_level != old.log_level {
                match level.set(&new.log_level) {
                    Ok(()) => changed.push(format!("log_level {:?} -> {:?}", old.log_level, new.log_level)),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: log_level not applied"),
                }
            }
            if new.limits != old.limits {
                changed.push(format!("limits {:?} -> {:?}", old.limits, new.limits));
            }
            if new.access != old.access {
                changed.push(format!("access {:?} -> {:?}", old.access, new.access));
            }
            let mut restart = Vec::new();
            for (name, differs) in [
                ("data_dir", new.data_dir != old.data_dir),
                ("socket", new.socket != old.socket),
                ("socket_mode", new.socket_mode != old.socket_mode),
                ("socket_group", new.socket_group != old.socket_group),
                ("socket_owner", new.socket_owner != old.socket_owner),
                ("log_format", new.log_format != old.log_format),
                ("zfs", new.zfs != old.zfs),
            ] {
                if differs {
                    restart.push(name);
                }
            }
            // Keys that need a restart keep their running values.
            let mut applied = (*old).clone();
            applied.log_level = new.log_level.clone();
            applied.limits = new.limits.clone();
            applied.access = new.access.clone();
            applied.shutdown_grace_secs = new.shutdown_grace_secs;
            applied.default_pool = new.default_pool.clone();
            svc.set_config(applied);
            if !restart.is_empty() {
                tracing::warn!(keys = ?restart, "SIGHUP: these keys changed but need a restart to apply");
            }
            tracing::info!(changed = ?changed, "SIGHUP: configuration reloaded");
        })
        .await
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve(args) => serve(args).map(|()| ExitCode::SUCCESS),
        Cmd::Fsck(args) => fsck(args),
        Cmd::Vacuum(args) => vacuum(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("imgstore: {e}");
            ExitCode::from(1)
        }
    }
}
