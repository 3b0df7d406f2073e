//! The command line: `imgstore serve` runs the daemon; every other verb is a
//! client of its socket, after SmartOS's imgadm where imgadm has the verb.
//!
//! - [`client`]: blocking HTTP/1.1 over the Unix socket, streaming bodies.
//! - [`output`]: tables, `-H`, `-o`, `-s`, `-j`, imgadm-style filters.
//! - [`packages`]: `packages load|list|get` and the bootstrap file formats.
//! - [`progress`]: bar on a terminal, periodic lines otherwise, `-q`.
//! - [`task`]: following a daemon task to its end; Ctrl-C handling.
//! - [`verbs`]: one function per verb.
//!
//! Exit status is a fixed contract (imgadm's): 0 ok, 1 error, 2 usage
//! (clap's own), 3 image not installed / not found for a uuid argument,
//! 130 interrupted by Ctrl-C.

pub mod client;
pub mod output;
pub mod packages;
pub mod progress;
pub mod task;
mod verbs;

use crate::config::{Config, ConfigError};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

pub const EXIT_ERROR: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_NOT_INSTALLED: u8 = 3;

const AFTER_HELP: &str = "\
Every verb but `serve` talks to a running daemon over its Unix socket: the
one given with --socket, else $IMGSTORE_SOCKET, else the `socket` key of the
config file (--config, else $IMGSTORE_CONFIG, else /etc/imgstore/imgstore.toml;
/var/run/imgstore.sock when there is no file). Pool verbs use -P POOL, else
the config's `default_pool` (zones).

Output: aligned tables; -H for scripts (no header, one TAB between columns),
-o FIELD,... for columns, -s FIELD,... to sort (-FIELD reverses), -j for JSON.
Progress of long work goes to stderr: a bar on a terminal, a line every 10 s
otherwise (IMGSTORE_PROGRESS_INTERVAL=SECONDS), nothing with -q.

Exit status: 0 ok; 1 error (code and message on stderr); 2 usage error;
3 image not installed / not found (for a UUID argument); 130 interrupted.

Examples:
  imgstore serve &                    # the daemon, with /etc/imgstore/imgstore.toml or defaults
  imgstore ping --wait 30             # wait until it answers
  imgstore install -m base.imgmanifest -f base.zfs.gz
  imgstore list name=~base -o uuid,name,version
  imgstore images -H -o uuid,name     # what the store holds";

/// imgstore: image store daemon for ZFS compute nodes, and its client.
#[derive(Parser, Debug)]
#[command(
    name = "imgstore",
    version,
    about = "Image store daemon for ZFS compute nodes (IMGAPI-compatible), and its imgadm-style client",
    after_help = AFTER_HELP,
    disable_help_subcommand = true,
    subcommand_required = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub conn: Conn,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the daemon in the foreground (SMF and systemd supervise it).
    #[command(after_help = "\
The daemon logs Bunyan JSON lines on stderr (--log-format text for people),
signals readiness to systemd (Type=notify) once its socket accepts requests,
re-reads the config on SIGHUP and drains and stops on SIGTERM or SIGINT.

Non-root try-out:
  imgstore serve --data-dir /tmp/imgstore --socket /tmp/imgstore.sock")]
    Serve(ServeArgs),
    /// Check that the daemon answers; with --wait, wait until it does.
    #[command(after_help = "\
Examples:
  imgstore ping                       # exit 0 when the daemon answers, 1 otherwise
  imgstore serve & imgstore ping --wait 30")]
    Ping(PingArgs),
    /// List the images installed in a pool (imgadm list).
    #[command(after_help = LIST_HELP)]
    List(ListArgs),
    /// Show an installed image as JSON (imgadm get).
    #[command(visible_alias = "info")]
    Get(PoolImageArgs),
    /// List the images available from the configured remote sources.
    #[command(after_help = AVAIL_HELP)]
    Avail(AvailArgs),
    /// Import an image (and its origins) from the remote sources and install it.
    Import(ImportArgs),
    /// Add an image to the store from a manifest and a file; no ZFS involved.
    #[command(after_help = ADD_HELP)]
    Add(AddArgs),
    /// Add an image from local files and install it into a pool (imgadm install).
    #[command(after_help = INSTALL_HELP)]
    Install(InstallArgs),
    /// Uninstall an image from a pool (imgadm delete).
    #[command(visible_aliases = ["uninstall", "destroy"])]
    Delete(PoolImageArgs),
    /// Create an image from a ZFS dataset's snapshot (imgadm create).
    #[command(after_help = CREATE_HELP)]
    Create(CreateArgs),
    /// Write an image's manifest and file into a directory.
    Export(ExportArgs),
    /// Show the origin chain of an installed image (imgadm ancestry).
    Ancestry(AncestryArgs),
    /// Uninstall every installed image that no dataset depends on (imgadm vacuum).
    Vacuum(VacuumArgs),
    /// List the images in the store (the daemon's IMGAPI ListImages).
    #[command(after_help = IMAGES_HELP)]
    Images(ImagesArgs),
    /// One image in the store: get, get-file, delete.
    #[command(subcommand)]
    Image(ImageCmd),
    /// List the daemon's tasks (installs, imports, creates, exports).
    Tasks(TasksArgs),
    /// One task: get, wait, cancel.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Packages (the sizes VMs get): load a bootstrap file, list, get.
    Packages(packages::PackagesArgs),
    /// Check a stopped daemon's store, and with --repair fix what can be
    /// fixed without losing data (while the daemon runs: GET /state and
    /// POST /state?action=repair). Exits 0 when no error remains, 2 when
    /// one does, 1 when it could not run.
    Fsck(FsckArgs),
}

/// `imgstore fsck`.
#[derive(Args, Debug, Clone)]
pub struct FsckArgs {
    /// Data directory (overrides the config's data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Repair what can be repaired without losing data.
    #[arg(long)]
    pub repair: bool,
    /// Check blob sizes only, without re-reading every blob for its digests.
    #[arg(long)]
    pub quick: bool,
    /// Print the report as JSON (the shape of GET /state).
    #[arg(long)]
    pub json: bool,
}

const LIST_HELP: &str = "\
FIELDS (for filters, -o and -s): any manifest field (name, version, os, type,
uuid, owner, origin, published_at, tags.KEY, files.0.size, ...), the
installed-image fields zpool and clones, and pub (date of published_at) and
size (files.0.size).

Examples:
  imgstore list
  imgstore list name=~base os=smartos
  imgstore list -H -o uuid,name,version -s -published_at
  imgstore list -j -P data";

const AVAIL_HELP: &str = "\
FIELDS: as for `imgstore list` (manifest fields, pub, size).

Examples:
  imgstore avail name=~base -o uuid,name,version,pub";

const ADD_HELP: &str = "\
The manifest is IMGAPI/imgadm JSON. With a \"uuid\" it is imported keeping
that uuid (AdminImportImage); without, the daemon assigns one. The file's
compression, sha1 and size come from the manifest's files[0] when present
(the daemon verifies them); otherwise compression is guessed from the file
name (.gz, .bz2, .xz, .zst, else none). The image is activated once its file
is stored; on any failure the half-added image is removed again.

Example:
  imgstore add -m base-64.imgmanifest -f base-64.zfs.gz";

const INSTALL_HELP: &str = "\
The daemon reads both files itself (so they must be on this host), stores the
image and receives it into POOL/UUID. The command follows the daemon's task
until it ends and exits with its status; Ctrl-C asks whether to cancel the
task or detach from it.

Example:
  imgstore install -m base-64.imgmanifest -f base-64.zfs.gz -P zones";

const CREATE_HELP: &str = "\
Manifest fields come from -m FILE and then from FIELD=VALUE arguments (a
string) or FIELD:=JSON arguments (any JSON value), later ones winning.

Example:
  imgstore create zones/3f0c0f3a-6ba1-4b30-8c6c-5a3ed8ac8bd8 name=my-base version=1.0.0 \\
      os=smartos type=zone-dataset -c gzip";

const IMAGES_HELP: &str = "\
By default only active images are listed; -a lists every state, and a
state=... filter implies -a. FIELDS: manifest fields, pub, size.

Examples:
  imgstore images
  imgstore images -a -o uuid,name,version,state
  imgstore images -H -o uuid name=~base";

/// The config file and the socket: `serve` listens on the socket, the other
/// verbs connect to it. Both sides read the same flags and variables, so
/// `imgstore serve &` and `imgstore ping` agree without repeating them.
#[derive(Args, Debug, Clone, Default)]
pub struct Conn {
    /// Socket path (serve listens on it; other verbs connect to it) [default: the config's `socket`].
    #[arg(long, value_name = "PATH", env = "IMGSTORE_SOCKET", global = true)]
    pub socket: Option<PathBuf>,
    /// Config file; when the default /etc/imgstore/imgstore.toml does not exist, embedded defaults are used.
    #[arg(long, value_name = "PATH", env = "IMGSTORE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

/// `imgstore serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Data directory (overrides the config's data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format (overrides the config's log_format).
    #[arg(long, value_parser = ["json", "text"])]
    pub log_format: Option<String>,
}

impl ServeArgs {
    /// The config file, with the command line's overrides applied.
    ///
    /// # Errors
    /// The file is unreadable or invalid (the message names it).
    pub fn load(&self, conn: &Conn) -> Result<Config, ConfigError> {
        let mut c = Config::load(conn.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
        }
        if let Some(s) = &conn.socket {
            c.socket = s.clone();
        }
        if let Some(f) = &self.log_format {
            c.log_format = f.clone();
        }
        c.validate()?;
        Ok(c)
    }
}

/// Output options of listing verbs.
#[derive(Args, Debug, Clone, Default)]
pub struct TableArgs {
    /// Scripting mode: no header, one TAB between columns.
    #[arg(short = 'H')]
    pub no_header: bool,
    /// Columns to show, comma-separated.
    #[arg(short = 'o', long = "output", value_name = "FIELD,...")]
    pub columns: Option<String>,
    /// Sort by these fields, comma-separated; -FIELD sorts descending.
    #[arg(
        short = 's',
        long = "sort",
        value_name = "FIELD,...",
        allow_hyphen_values = true
    )]
    pub sort: Option<String>,
    /// JSON output: the full objects, as an array.
    #[arg(short = 'j', long = "json")]
    pub json: bool,
}

/// Options of verbs that start a daemon task and follow it.
#[derive(Args, Debug, Clone, Default)]
pub struct FollowArgs {
    /// No progress output.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Print the task as JSON when it ends (or, with --detach, when it starts).
    #[arg(short = 'j', long = "json")]
    pub json: bool,
    /// Start the task, print its id and exit without following it.
    #[arg(long)]
    pub detach: bool,
}

fn uuid_arg(s: &str) -> Result<String, String> {
    match uuid::Uuid::parse_str(s) {
        Ok(u) if s.len() == 36 => Ok(u.hyphenated().to_string()),
        _ => Err(format!(
            "{s:?} is not a UUID (expected the form 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9)"
        )),
    }
}

#[derive(Args, Debug)]
pub struct PingArgs {
    /// Keep trying for up to SECONDS until the daemon answers.
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<f64>,
    /// JSON output.
    #[arg(short = 'j', long = "json")]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Filters: FIELD=VALUE (equal) or FIELD=~SUBSTRING (contains), all must match.
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Pool [default: the config's default_pool].
    #[arg(short = 'P', long = "pool", value_name = "POOL")]
    pub pool: Option<String>,
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Args, Debug)]
pub struct PoolImageArgs {
    /// The image's UUID.
    #[arg(value_name = "UUID", value_parser = uuid_arg)]
    pub uuid: String,
    /// Pool [default: the config's default_pool].
    #[arg(short = 'P', long = "pool", value_name = "POOL")]
    pub pool: Option<String>,
}

#[derive(Args, Debug)]
pub struct AvailArgs {
    /// Filters: FIELD=VALUE or FIELD=~SUBSTRING.
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The image's UUID.
    #[arg(value_name = "UUID", value_parser = uuid_arg)]
    pub uuid: String,
    /// Pool to install into [default: the daemon's default_pool].
    #[arg(short = 'P', long = "pool", value_name = "POOL")]
    pub pool: Option<String>,
    #[command(flatten)]
    pub follow: FollowArgs,
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The image manifest (JSON).
    #[arg(short = 'm', long = "manifest", value_name = "MANIFEST")]
    pub manifest: PathBuf,
    /// The image file.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// No progress output.
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Print the stored manifest as JSON.
    #[arg(short = 'j', long = "json")]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct InstallArgs {
    /// The image manifest (JSON).
    #[arg(short = 'm', long = "manifest", value_name = "MANIFEST")]
    pub manifest: PathBuf,
    /// The image file.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Pool to install into [default: the daemon's default_pool].
    #[arg(short = 'P', long = "pool", value_name = "POOL")]
    pub pool: Option<String>,
    #[command(flatten)]
    pub follow: FollowArgs,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The dataset to make an image of (e.g. zones/UUID).
    #[arg(value_name = "DATASET")]
    pub dataset: String,
    /// Manifest fields: FIELD=STRING or FIELD:=JSON.
    #[arg(value_name = "FIELD=VALUE")]
    pub fields: Vec<String>,
    /// A JSON file with manifest fields (name, version, os, type, ...).
    #[arg(short = 'm', long = "manifest", value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Compression of the image file [default: gzip, on every core]. zstd
    /// is imgstore-to-imgstore only: imgadm and IMGAPI cannot install it.
    #[arg(short = 'c', long = "compression", value_name = "COMPRESSION", value_parser = ["none", "gzip", "bzip2", "xz", "zstd"])]
    pub compression: Option<String>,
    /// An incremental image: only the changes since the origin image.
    #[arg(short = 'i', long = "incremental")]
    pub incremental: bool,
    #[command(flatten)]
    pub follow: FollowArgs,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The image's UUID.
    #[arg(value_name = "UUID", value_parser = uuid_arg)]
    pub uuid: String,
    /// Directory to write the manifest and file into.
    #[arg(short = 'd', long = "dir", value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub follow: FollowArgs,
}

#[derive(Args, Debug)]
pub struct AncestryArgs {
    /// The image's UUID.
    #[arg(value_name = "UUID", value_parser = uuid_arg)]
    pub uuid: String,
    /// Pool [default: the config's default_pool].
    #[arg(short = 'P', long = "pool", value_name = "POOL")]
    pub pool: Option<String>,
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Args, Debug)]
pub struct VacuumArgs {
    /// Dry run: show what would be removed, remove nothing.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Do not ask before uninstalling images (needed without a terminal).
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// Also uninstall installed images that have no clones and were not
    /// used for N days.
    #[arg(long, value_name = "N")]
    pub uninstall_unused_days: Option<u64>,
    /// Pool for --uninstall-unused-days (default: the daemon's default_pool).
    #[arg(
        short = 'P',
        long = "pool",
        value_name = "POOL",
        requires = "uninstall_unused_days"
    )]
    pub pool: Option<String>,
    /// JSON output.
    #[arg(short = 'j', long = "json")]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Filters: FIELD=VALUE or FIELD=~SUBSTRING.
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    /// Every state, not only active images.
    #[arg(short = 'a', long = "all")]
    pub all: bool,
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Subcommand, Debug)]
pub enum ImageCmd {
    /// Show an image's manifest from the store.
    Get {
        /// The image's UUID.
        #[arg(value_name = "UUID", value_parser = uuid_arg)]
        uuid: String,
    },
    /// Download an image's file (verified against its sha1).
    GetFile {
        /// The image's UUID.
        #[arg(value_name = "UUID", value_parser = uuid_arg)]
        uuid: String,
        /// Where to write it; - for stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        /// No progress output.
        #[arg(short = 'q', long = "quiet")]
        quiet: bool,
    },
    /// Remove an image from the store (refused while images name it as origin).
    Delete {
        /// The image's UUID.
        #[arg(value_name = "UUID", value_parser = uuid_arg)]
        uuid: String,
    },
}

#[derive(Args, Debug)]
pub struct TasksArgs {
    /// Filters: FIELD=VALUE or FIELD=~SUBSTRING (e.g. status=processing).
    #[arg(value_name = "FILTER")]
    pub filters: Vec<String>,
    #[command(flatten)]
    pub table: TableArgs,
}

#[derive(Subcommand, Debug)]
pub enum TaskCmd {
    /// Show a task as JSON.
    Get {
        /// The task's id.
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Follow a task until it ends; exit with its status.
    Wait {
        /// The task's id.
        #[arg(value_name = "ID")]
        id: String,
        /// Give up after SECONDS (exit 1; the task goes on).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
        /// No progress output.
        #[arg(short = 'q', long = "quiet")]
        quiet: bool,
        /// Print the task as JSON when it ends.
        #[arg(short = 'j', long = "json")]
        json: bool,
    },
    /// Cancel a task.
    Cancel {
        /// The task's id.
        #[arg(value_name = "ID")]
        id: String,
    },
}

/// A failed command: what to print and how to exit.
#[derive(Debug, Clone, PartialEq)]
pub struct CliError {
    pub exit: u8,
    /// The daemon's (or a task's) error code.
    pub code: Option<String>,
    pub message: String,
    /// Further lines: field errors, hints, the request id.
    pub details: Vec<String>,
}

impl CliError {
    pub fn local(message: impl Into<String>) -> CliError {
        CliError {
            exit: EXIT_ERROR,
            code: None,
            message: message.into(),
            details: vec![],
        }
    }

    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            exit: EXIT_USAGE,
            ..CliError::local(message)
        }
    }

    pub fn with_detail(mut self, d: impl Into<String>) -> CliError {
        self.details.push(d.into());
        self
    }

    /// The text printed on stderr.
    pub fn render(&self) -> String {
        let mut s = match &self.code {
            Some(c) => format!("imgstore: error ({c}): {}", self.message),
            None => format!("imgstore: error: {}", self.message),
        };
        for d in &self.details {
            s.push_str("\n    ");
            s.push_str(d);
        }
        s
    }
}

impl From<client::Error> for CliError {
    fn from(e: client::Error) -> CliError {
        match e {
            client::Error::Api(a) => {
                let mut details: Vec<String> = a
                    .errors
                    .iter()
                    .map(|fe| {
                        let g = |k: &str| fe.get(k).and_then(|v| v.as_str()).unwrap_or("");
                        format!("{}: {} ({})", g("field"), g("message"), g("code"))
                    })
                    .collect();
                if a.is_unknown_route() {
                    details.push(
                        "this daemon does not implement the request; it may be older than this \
                         imgstore command"
                            .into(),
                    );
                }
                if let Some(id) = &a.request_id {
                    details.push(format!("request id {id} (in the daemon's log as req_id)"));
                }
                CliError {
                    exit: EXIT_ERROR,
                    code: Some(a.code),
                    message: a.message,
                    details,
                }
            }
            client::Error::Aborted => CliError {
                exit: task::EXIT_INTERRUPTED,
                code: None,
                message: "interrupted".into(),
                details: vec![],
            },
            other => CliError::local(other.to_string()),
        }
    }
}

impl Conn {
    fn load_config(&self) -> Result<Config, CliError> {
        Config::load(self.config.as_deref()).map_err(|e| CliError::local(e.to_string()))
    }

    /// The socket: --socket / $IMGSTORE_SOCKET, else the config's.
    ///
    /// # Errors
    /// The config file had to be read and could not be.
    pub fn socket(&self) -> Result<PathBuf, CliError> {
        match &self.socket {
            Some(s) => Ok(s.clone()),
            None => Ok(self.load_config()?.socket),
        }
    }

    pub fn client(&self) -> Result<client::Client, CliError> {
        Ok(client::Client::new(self.socket()?))
    }

    /// The pool for verbs given no -P: the config's `default_pool`.
    ///
    /// # Errors
    /// The config file could not be read.
    pub fn pool(&self, given: &Option<String>) -> Result<String, CliError> {
        match given {
            Some(p) => Ok(p.clone()),
            None => Ok(self.load_config()?.default_pool),
        }
    }
}

/// Runs a client verb (everything but `serve`) and returns the exit status.
pub fn run(cmd: Cmd, conn: &Conn) -> ExitCode {
    match verbs::dispatch(cmd, conn) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.render());
            ExitCode::from(e.exit)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definitions_are_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn error_rendering() {
        let e = CliError {
            exit: 3,
            code: Some("ImageNotInstalled".into()),
            message: "image x is not installed in pool zones".into(),
            details: vec!["request id r1".into()],
        };
        assert_eq!(
            e.render(),
            "imgstore: error (ImageNotInstalled): image x is not installed in pool zones\n    request id r1"
        );
        assert_eq!(CliError::usage("bad").render(), "imgstore: error: bad");
    }

    #[test]
    fn uuids_are_normalised_and_checked() {
        assert_eq!(
            uuid_arg("0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9").unwrap(),
            "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
        );
        assert!(uuid_arg("0f1e2d3c4b5a49788695a4b3c2d1e0f9").is_err());
        assert!(uuid_arg("nope").is_err());
    }
}
