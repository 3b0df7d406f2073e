//! The `imgstore` binary: `imgstore serve` runs the daemon; other verbs talk
//! to a running daemon over its socket (see [`imgstore::cli`]).

use clap::Parser;
use imgstore::cli::{self, Cli, Cmd, Conn, ServeArgs};
use imgstore::server;
use std::process::ExitCode;

fn serve(args: ServeArgs, conn: Conn) -> Result<(), String> {
    let config = args.load(&conn)?;
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
            server::reload(svc, args.load(&conn), &level)
        })
        .await
    })
}

fn main() -> ExitCode {
    let Cli { conn, cmd } = Cli::parse();
    match cmd {
        Cmd::Serve(args) => match serve(args, conn) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("imgstore: {e}");
                ExitCode::from(1)
            }
        },
        other => cli::run(other, &conn),
    }
}
