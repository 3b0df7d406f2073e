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
            let mut restart = Vec::new();
            for (name, differs) in [
                ("data_dir", new.data_dir != old.data_dir),
                ("socket", new.socket != old.socket),
                ("socket_mode", new.socket_mode != old.socket_mode),
                ("socket_group", new.socket_group != old.socket_group),
                ("log_format", new.log_format != old.log_format),
                ("zfs", new.zfs != old.zfs),
                ("peer", new.peer != old.peer),
            ] {
                if differs {
                    restart.push(name);
                }
            }
            // Keys that need a restart keep their running values.
            let mut applied = (*old).clone();
            applied.log_level = new.log_level.clone();
            applied.limits = new.limits.clone();
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
        Cmd::Serve(args) => serve(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("imgstore: {e}");
            ExitCode::from(1)
        }
    }
}
