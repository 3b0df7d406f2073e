//! The one module that runs `zfs` and `zpool`.
//!
//! Every ZFS operation of the daemon goes through [`Zfs`]: it validates
//! names, builds argument vectors (never a shell), runs the binaries with
//! `LC_ALL=C` so messages are the untranslated ones we classify, captures
//! stderr and turns it into a [`ZfsError`] with a stable [`ZfsError::code`].
//!
//! The API is **blocking**: the service layer calls it from
//! `tokio::task::spawn_blocking`, and stream data is pumped through
//! [`ReceiveChild`] / [`SendChild`] by blocking threads. Both children can be
//! killed from another thread through a cloneable [`Canceller`]; they are
//! killed and reaped on drop, and their stderr is drained by a thread so a
//! chatty child can never fill the pipe and deadlock.
//!
//! # Feature detection
//!
//! Nothing is assumed about the ZFS implementation. [`Zfs::available`]
//! detects [`Features`] once (and caches them): first `zpool list` proves
//! the control device/daemon is reachable, then each optional CLI flag is
//! probed by running the subcommand with only that flag and no operands
//! (`zfs receive -s`, `zfs send -c`, ...). Every implementation runs getopt
//! before looking at operands, so an unknown flag yields
//! `invalid option 'X'` and a known one `missing ... argument`; neither
//! touches a pool. `zfs list -p` is probed as `zfs list -H -p -o name -d 0`
//! (lists only pool roots). The `clones` property is looked up in the
//! property table that `zfs get` prints with its usage. Resumable receive
//! also needs the pool feature `extensible_dataset`; that is per pool, see
//! [`Zfs::supports_resumable_receive`].
//!
//! # What zfs-fuse does (Debian `zfs-fuse` 0.7.0, pool version 23)
//!
//! Recorded on this project's dev machine; the classification tests below
//! replay these texts verbatim.
//!
//! - Daemon not running (every command, exit 1):
//!   `connect: No such file or directory` /
//!   `Please make sure that the zfs-fuse daemon is running.` /
//!   `internal error: failed to initialize ZFS library`.
//! - Pool missing: `zpool list P` says `cannot open 'P': no such pool`;
//!   `zfs create P/x` says `cannot create 'P/x': no such pool 'P'`; but
//!   `zfs list P`, `zfs snapshot P/x@s` and `zfs receive P/x` only say
//!   `cannot open 'P/x': dataset does not exist` (receive adds
//!   `cannot receive new filesystem stream: dataset does not exist`). So a
//!   "dataset does not exist" is refined into [`ZfsError::PoolNotFound`] by
//!   asking `zpool list` about the pool.
//! - Dataset missing: `cannot open 'P/d': dataset does not exist` (list, get,
//!   destroy, rename, clone, snapshot); `zfs send P/d@nope` says
//!   `WARNING: could not send P/d@nope: does not exist`; a missing `-i`
//!   source says `warning: cannot send 'P/d@s': incremental source (@nope)
//!   does not exist`.
//! - Exists: `cannot create 'P/a': dataset already exists`,
//!   `cannot create snapshot 'P/a@s1': dataset already exists`,
//!   `cannot rename 'P/a@s1': dataset already exists`.
//! - Receive into an existing dataset:
//!   `cannot receive new filesystem stream: destination 'P/b' exists` /
//!   `must specify -F to overwrite it`; with `-F` and snapshots present:
//!   `cannot receive new filesystem stream: destination has snapshots (eg. P/b@s1)` /
//!   `must destroy them to overwrite it`.
//! - Invalid stream: random bytes or zeros give
//!   `cannot receive: invalid stream (bad magic number)`; empty input
//!   `cannot receive: failed to read from stream`; a truncated or corrupted
//!   (checksum) stream `cannot receive new filesystem stream: invalid backup stream`.
//! - Incremental onto the wrong base: `cannot receive incremental stream:
//!   most recent snapshot of P/b does not` / `match incremental source`.
//! - Destroy with clones (same wording as illumos/OpenZFS `zfs_main.c`):
//!   `cannot destroy 'P/a@s2': snapshot has dependent clones` /
//!   `use '-R' to destroy the following datasets:` / one clone per line;
//!   for `destroy -r P/a` the first line says `filesystem has dependent clones`.
//! - Unsupported flags (exit 2, followed by the usage text):
//!   `invalid option 's'` for `receive -s`; `invalid option 'c'` for
//!   `send -c` (also `-e`, `-L`, `-w`); `invalid option 'p'` for `list -p`.
//!   `receive -u` is accepted although the usage does not list it.
//!   `zfs get clones` fails with `bad property list: invalid property 'clones'`,
//!   so [`Zfs::clones_of`] falls back to scanning `origin`.
//!   `zpool get` takes no `-H`/`-o` and knows no `feature@...` properties.
//! - **Mounted filesystems are "busy"**: `zfs destroy` of a mounted
//!   filesystem often fails with `cannot destroy 'P/x': dataset is busy`
//!   but leaves it unmounted (FUSE unmounts asynchronously), so a retry
//!   succeeds; `destroy -r` of a mounted tree fails once per level.
//!   `zfs rename` of a mounted filesystem fails with
//!   `cannot rename 'P/x': dataset is busy` every time (it remounts), but
//!   works after `zfs unmount`. Hence destroy and rename retry on "busy",
//!   and rename unmounts/renames/remounts a mounted filesystem that stays
//!   busy. Receiving with [`ReceiveOpts::no_mount`] (`-u`) avoids both.
//! - Killing the `zfs receive` client does **not** stop the receive: the
//!   daemon holds the pipe and completes it if the writer keeps writing. So
//!   [`ReceiveWriter`] refuses writes once cancelled and the pipe is closed,
//!   and the daemon then fails the truncated stream.
//! - `zfs send` to a closed pipe: `warning: cannot send 'P/d@s': Broken pipe`.
//! - Clone-incremental streams (`send -i P/origin@final P/clone@final`)
//!   work and are received as a clone of the origin, as imgadm needs. The
//!   origin is looked up by snapshot guid: if the pool holds two snapshots
//!   with that guid (a dataset and its received copy), zfs-fuse picks
//!   either one.
//! - `zfs rename X X` succeeds silently; `zfs send` happily writes to a tty.
//! - `zpool destroy P` with mounted filesystems: `cannot destroy 'P': pool
//!   is busy` once (it unmounts them), then succeeds (not used here).
//!
//! # What OpenZFS 2.3 does (Debian `zfs-dkms` 2.3.2, Linux 6.1)
//!
//! Recorded in the guest of `scripts/zfs-vm.sh`, where `scripts/zfs-vm-test`
//! runs the ZFS tests; `classifies_openzfs_2_3_texts` replays these texts.
//!
//! - Every optional flag of [`Features`] exists (`missing snapshot
//!   argument` when probed); `clones` and `receive_resume_token` are in the
//!   property table; pools have feature flags (`feature@extensible_dataset`
//!   is `active`).
//! - Missing dataset, snapshot or send source (also `send -i` sources):
//!   `cannot open 'P/d@s': dataset does not exist`. `zfs snapshot` and
//!   `zfs list` in a missing pool say the same about the dataset (so
//!   [`ZfsError::PoolNotFound`] comes from asking `zpool`, as for zfs-fuse).
//!   A receive whose parent (or pool) is missing names it:
//!   `cannot open 'P/no/such': dataset does not exist` /
//!   `cannot receive new filesystem stream: unable to restore to destination`.
//! - `zfs rename` onto an existing name: `cannot rename 'FROM': dataset
//!   already exists` (for snapshots too), naming the source as zfs-fuse does.
//! - Truncated stream: `cannot receive new filesystem stream: incomplete
//!   stream`; with `-s`: `... checksum mismatch or incomplete stream.` /
//!   `Partially received snapshot is saved.` / the `zfs send -t` to resume.
//!   Killing `zfs receive -s` mid-stream also keeps the partial dataset and
//!   its `receive_resume_token`; without `-s` the partial dataset is gone
//!   once the killed process has exited.
//! - `zfs receive -A` without partial state: `'P/d' does not have any
//!   resumable receive state to abort`; `zfs send -t` with a damaged token:
//!   `cannot resume send: resume token is corrupt (incorrect checksum)`
//!   (exit 255).
//! - A mounted filesystem in use: destroy, rename and unmount all say
//!   `cannot unmount '/P/d': pool or dataset is busy` (quoting the mount
//!   point), which stays so while it is in use; idle mounted filesystems
//!   are renamed and destroyed without complaint.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Longest dataset or snapshot name ZFS accepts (`ZFS_MAX_DATASET_NAME_LEN`
/// is 256 including the terminating NUL).
pub const MAX_NAME_LEN: usize = 255;

/// How much of a child's stderr is kept; the rest is read and dropped.
const STDERR_LIMIT: usize = 64 * 1024;

/// Result alias for this module.
pub type Result<T, E = ZfsError> = std::result::Result<T, E>;

/// A failed ZFS operation, classified from the command's stderr.
///
/// [`ZfsError::code`] is part of the API (it ends up in error bodies); never
/// rename a code.
#[derive(Debug, thiserror::Error)]
pub enum ZfsError {
    /// The binaries are missing or cannot reach the ZFS control device
    /// (`/dev/zfs`, the zfs-fuse daemon socket).
    #[error("ZFS is not available: {detail}")]
    NotAvailable {
        /// What was missing, or the tool's own message.
        detail: String,
    },
    /// The pool does not exist (or is not imported).
    #[error("zpool {pool} does not exist")]
    PoolNotFound {
        /// Pool name.
        pool: String,
    },
    /// The dataset or snapshot does not exist.
    #[error("dataset {name} does not exist")]
    DatasetNotFound {
        /// Dataset or snapshot name.
        name: String,
    },
    /// The dataset or snapshot already exists.
    #[error("dataset {name} already exists")]
    DatasetExists {
        /// Dataset or snapshot name.
        name: String,
    },
    /// Destroy refused because clones depend on the snapshot.
    #[error("{name} has dependent clones: {}", clones.join(", "))]
    HasDependentClones {
        /// The snapshot or filesystem that could not be destroyed.
        name: String,
        /// The dependent clones, as ZFS listed them (may be empty if ZFS
        /// did not say and they could not be looked up).
        clones: Vec<String>,
    },
    /// A pool, dataset, snapshot or property name failed validation; no
    /// command was run.
    #[error("invalid ZFS name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The pool (or a quota) has no room for what the command writes:
    /// "cannot create snapshot 'P/d@s': out of space", "cannot receive new
    /// filesystem stream: out of space", "disk quota exceeded".
    #[error(
        "{name}: out of space in pool {}: {}",
        pool_of(name),
        first_lines(stderr)
    )]
    OutOfSpace {
        /// The dataset or snapshot being written.
        name: String,
        /// The command's stderr.
        stderr: String,
    },
    /// Any other failure of a zfs/zpool command.
    #[error("`{argv}` failed ({}): {}", status_text(*status), first_lines(stderr))]
    CommandFailed {
        /// The command line, for humans (arguments are quoted if needed).
        argv: String,
        /// Exit code, `None` if the command was killed by a signal.
        status: Option<i32>,
        /// The command's stderr (the usage text that follows a usage error
        /// is cut off).
        stderr: String,
    },
    /// The command was killed through a [`Canceller`].
    #[error("`{argv}` was cancelled")]
    Cancelled {
        /// The command line that was killed.
        argv: String,
    },
    /// I/O error while starting or talking to a command.
    #[error("I/O error running zfs: {0}")]
    Io(#[from] io::Error),
}

impl ZfsError {
    /// The stable, PascalCase code of this error, used in API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            ZfsError::NotAvailable { .. } => "ZfsNotAvailable",
            ZfsError::PoolNotFound { .. } => "PoolNotFound",
            ZfsError::DatasetNotFound { .. } => "DatasetNotFound",
            ZfsError::DatasetExists { .. } => "DatasetExists",
            ZfsError::HasDependentClones { .. } => "ImageHasDependentClones",
            ZfsError::InvalidName { .. } => "InvalidParameter",
            ZfsError::OutOfSpace { .. } => "InsufficientStorage",
            ZfsError::CommandFailed { .. } => "ZfsCommandFailed",
            ZfsError::Cancelled { .. } => "Cancelled",
            ZfsError::Io(_) => "InternalError",
        }
    }

    /// True if ZFS refused because the dataset is busy (mounted and in use,
    /// or, on zfs-fuse, still being unmounted). Such failures may succeed
    /// when retried.
    pub fn is_busy(&self) -> bool {
        matches!(self, ZfsError::CommandFailed { stderr, .. } if stderr.contains("is busy"))
    }
}

fn status_text(status: Option<i32>) -> String {
    match status {
        Some(code) => format!("exit status {code}"),
        None => "killed by a signal".to_string(),
    }
}

/// The first two non-empty lines of stderr, joined, for `Display`.
fn first_lines(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(2)
        .collect();
    if lines.is_empty() {
        "no error message".to_string()
    } else {
        lines.join(" ")
    }
}

/// What the installed ZFS supports, detected by [`Zfs::available`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    /// `zfs receive -s` exists (the pool must also have
    /// `feature@extensible_dataset`, see [`Zfs::supports_resumable_receive`]).
    pub resumable_receive: bool,
    /// `zfs receive -u` (do not mount) is accepted.
    pub receive_no_mount: bool,
    /// `zfs send -c` (compressed stream).
    pub compressed_send: bool,
    /// `zfs send -L` (large blocks).
    pub large_block_send: bool,
    /// `zfs send -e` (embedded data).
    pub embedded_send: bool,
    /// `zfs send -w` (raw, encrypted stream).
    pub raw_send: bool,
    /// `zfs list -p` (exact numbers); without it listings use `zfs get -p`.
    pub parsable_list: bool,
    /// The `clones` property exists; without it clones are found by origin.
    pub clones_property: bool,
}

/// The type of a dataset as `zfs list -o type` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetType {
    /// A filesystem.
    Filesystem,
    /// A volume (zvol).
    Volume,
    /// A snapshot.
    Snapshot,
    /// A bookmark.
    Bookmark,
}

impl DatasetType {
    fn parse(s: &str) -> Option<DatasetType> {
        match s {
            "filesystem" => Some(DatasetType::Filesystem),
            "volume" => Some(DatasetType::Volume),
            "snapshot" => Some(DatasetType::Snapshot),
            "bookmark" => Some(DatasetType::Bookmark),
            _ => None,
        }
    }
}

impl fmt::Display for DatasetType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatasetType::Filesystem => "filesystem",
            DatasetType::Volume => "volume",
            DatasetType::Snapshot => "snapshot",
            DatasetType::Bookmark => "bookmark",
        })
    }
}

/// One row of a dataset or snapshot listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Full name (`pool/a/b` or `pool/a@snap`).
    pub name: String,
    /// Dataset type.
    #[serde(rename = "type")]
    pub kind: DatasetType,
    /// The snapshot this clone was created from, if it is a clone.
    pub origin: Option<String>,
    /// `used`, in bytes.
    pub used: u64,
    /// `referenced`, in bytes.
    pub referenced: u64,
    /// `creation`, in seconds since the epoch.
    pub creation: u64,
}

/// Properties fetched for [`DatasetInfo`], in this order.
const INFO_PROPS: &str = "name,type,origin,used,referenced,creation";
const INFO_GET_PROPS: &str = "type,origin,used,referenced,creation";

/// Options of [`Zfs::receive`]. Flags the installed ZFS lacks (see
/// [`Features`]) are left out rather than failing the receive, and logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveOpts {
    /// `-F`: roll back / overwrite an existing target (ZFS still refuses if
    /// the target has snapshots a full stream would destroy).
    pub force: bool,
    /// `-u`: do not mount the received filesystem. Recommended for image
    /// datasets: an unmounted filesystem can be renamed and destroyed
    /// without "dataset is busy" on zfs-fuse.
    pub no_mount: bool,
    /// `-s`: keep partial state for a resumed receive. Only applied if
    /// [`Features::resumable_receive`]; check the pool with
    /// [`Zfs::supports_resumable_receive`]. A failed receive then leaves
    /// state that [`Zfs::abort_resumable_receive`] clears.
    pub resumable: bool,
}

/// Options of [`Zfs::send`]. Flags the installed ZFS lacks are left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendOpts {
    /// `-c`: send compressed blocks as they are on disk.
    pub compressed: bool,
    /// `-L`: allow blocks larger than 128 KiB.
    pub large_blocks: bool,
    /// `-e`: embed small blocks in the stream.
    pub embedded: bool,
    /// `-p`: include the dataset's properties.
    pub properties: bool,
}

/// Which binary to run.
#[derive(Debug, Clone, Copy)]
enum Bin {
    Zfs,
    Zpool,
}

/// Handle on the `zfs` and `zpool` binaries. Cheap to clone; features are
/// detected once per handle (clones made after detection share the result).
#[derive(Debug, Clone)]
pub struct Zfs {
    zfs_bin: PathBuf,
    zpool_bin: PathBuf,
    features: OnceLock<Features>,
}

impl Default for Zfs {
    /// `zfs` and `zpool` looked up on `PATH`.
    fn default() -> Self {
        Zfs::new("zfs", "zpool")
    }
}

impl Zfs {
    /// A handle running these binaries (bare names are looked up on `PATH`).
    /// Nothing is run until the first operation.
    pub fn new(zfs_bin: impl Into<PathBuf>, zpool_bin: impl Into<PathBuf>) -> Zfs {
        Zfs {
            zfs_bin: zfs_bin.into(),
            zpool_bin: zpool_bin.into(),
            features: OnceLock::new(),
        }
    }

    /// Checks that ZFS is reachable and returns its [`Features`], detected
    /// on the first successful call and cached afterwards.
    ///
    /// # Errors
    ///
    /// [`ZfsError::NotAvailable`] if the binaries are missing or the control
    /// device / zfs-fuse daemon is unreachable; other errors if `zpool list`
    /// fails for another reason.
    pub fn available(&self) -> Result<Features> {
        if let Some(f) = self.features.get() {
            return Ok(*f);
        }
        self.run(Bin::Zpool, &["list", "-H", "-o", "name"], "")?;
        let features = Features {
            resumable_receive: self.probe_flag("receive", 's')?,
            receive_no_mount: self.probe_flag("receive", 'u')?,
            compressed_send: self.probe_flag("send", 'c')?,
            large_block_send: self.probe_flag("send", 'L')?,
            embedded_send: self.probe_flag("send", 'e')?,
            raw_send: self.probe_flag("send", 'w')?,
            parsable_list: self.probe_list_parsable()?,
            clones_property: self.probe_property("clones")?,
        };
        tracing::info!(?features, zfs = %self.zfs_bin.display(), "detected ZFS features");
        let _ = self.features.set(features);
        Ok(*self.features.get().unwrap_or(&features))
    }

    /// Runs `zfs <sub> -<flag>` without operands; the flag is supported
    /// unless getopt rejects it.
    fn probe_flag(&self, sub: &str, flag: char) -> Result<bool> {
        let out = self.output(Bin::Zfs, &[sub, &format!("-{flag}")])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        check_not_available(&stderr)?;
        Ok(!stderr.contains(&format!("invalid option '{flag}'")))
    }

    fn probe_list_parsable(&self) -> Result<bool> {
        let out = self.output(Bin::Zfs, &["list", "-H", "-p", "-o", "name", "-d", "0"])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        check_not_available(&stderr)?;
        Ok(!stderr.contains("invalid option 'p'"))
    }

    /// Looks for `prop` in the property table `zfs get` prints with its
    /// usage when run without arguments.
    fn probe_property(&self, prop: &str) -> Result<bool> {
        let out = self.output(Bin::Zfs, &["get"])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        check_not_available(&stderr)?;
        Ok(stderr
            .lines()
            .any(|l| l.split_whitespace().next() == Some(prop)))
    }

    /// True if `pool` is imported.
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`] for a bad pool name, [`ZfsError::NotAvailable`],
    /// or [`ZfsError::CommandFailed`] if `zpool list` fails otherwise.
    pub fn pool_exists(&self, pool: &str) -> Result<bool> {
        validate_pool_name(pool)?;
        match self.run(Bin::Zpool, &["list", "-H", "-o", "name", pool], pool) {
            Ok(_) => Ok(true),
            Err(ZfsError::PoolNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// True if the pool supports resumable receive: `zfs receive -s` exists
    /// and `feature@extensible_dataset` is enabled or active on `pool`
    /// (the checks syncoid and zrepl make). Pools without feature flags
    /// (zfs-fuse, version 23) answer false.
    ///
    /// # Errors
    ///
    /// [`ZfsError::PoolNotFound`], [`ZfsError::NotAvailable`], [`ZfsError::InvalidName`].
    pub fn supports_resumable_receive(&self, pool: &str) -> Result<bool> {
        validate_pool_name(pool)?;
        if !self.available()?.resumable_receive {
            return Ok(false);
        }
        let args = [
            "get",
            "-H",
            "-o",
            "value",
            "feature@extensible_dataset",
            pool,
        ];
        match self.run(Bin::Zpool, &args, pool) {
            Ok(out) => Ok(matches!(out.trim(), "enabled" | "active")),
            Err(e @ (ZfsError::PoolNotFound { .. } | ZfsError::NotAvailable { .. })) => Err(e),
            Err(e) => {
                tracing::debug!(error = %e, pool, "no feature@extensible_dataset");
                Ok(false)
            }
        }
    }

    /// True if the dataset, volume or snapshot exists.
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`], [`ZfsError::NotAvailable`], or a failure
    /// other than "does not exist". A missing pool answers `false`.
    pub fn exists(&self, name: &str) -> Result<bool> {
        validate_any_name(name)?;
        match self.run(Bin::Zfs, &["get", "-H", "-o", "name", "type", name], name) {
            Ok(_) => Ok(true),
            Err(ZfsError::DatasetNotFound { .. } | ZfsError::PoolNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Filesystems and volumes at and below `parent` (a pool or dataset),
    /// parents before children. `depth` limits the recursion as `zfs list -d`
    /// does (`Some(0)`: only `parent`, `Some(1)`: also its children); `None`
    /// lists everything below.
    ///
    /// Uses `zfs list -H -p -o name,type,origin,used,referenced,creation`
    /// where `-p` exists, otherwise the same properties via `zfs get -H -p`.
    ///
    /// # Errors
    ///
    /// [`ZfsError::DatasetNotFound`] / [`ZfsError::PoolNotFound`] if `parent`
    /// is missing, [`ZfsError::InvalidName`], [`ZfsError::NotAvailable`],
    /// [`ZfsError::CommandFailed`] (also for output that cannot be parsed).
    pub fn list_datasets(&self, parent: &str, depth: Option<u32>) -> Result<Vec<DatasetInfo>> {
        validate_dataset_name(parent)?;
        let rows = self.list_info(parent, depth, "filesystem,volume")?;
        Ok(rows
            .into_iter()
            .filter(|r| matches!(r.kind, DatasetType::Filesystem | DatasetType::Volume))
            .collect())
    }

    /// The snapshots of `dataset` (not of its children), oldest first as
    /// ZFS orders them (by creation txg).
    ///
    /// # Errors
    ///
    /// As [`Zfs::list_datasets`].
    pub fn list_snapshots(&self, dataset: &str) -> Result<Vec<DatasetInfo>> {
        validate_dataset_name(dataset)?;
        let prefix = format!("{dataset}@");
        let rows = self.list_info(dataset, Some(1), "snapshot")?;
        Ok(rows
            .into_iter()
            .filter(|r| r.kind == DatasetType::Snapshot && r.name.starts_with(&prefix))
            .collect())
    }

    fn list_info(&self, parent: &str, depth: Option<u32>, types: &str) -> Result<Vec<DatasetInfo>> {
        let depth_s = depth.map(|d| d.to_string());
        let mut args: Vec<&str> = Vec::new();
        if self.available()?.parsable_list {
            args.extend(["list", "-H", "-p", "-o", INFO_PROPS, "-t", types]);
            push_depth(&mut args, depth_s.as_deref());
            args.push(parent);
            let out = self.run(Bin::Zfs, &args, parent)?;
            parse_list_output(&out).map_err(|e| self.parse_error(&args, e))
        } else {
            args.extend(["get", "-H", "-p", "-o", "name,property,value"]);
            push_depth(&mut args, depth_s.as_deref());
            args.extend([INFO_GET_PROPS, parent]);
            let out = self.run(Bin::Zfs, &args, parent)?;
            parse_get_output(&out).map_err(|e| self.parse_error(&args, e))
        }
    }

    fn parse_error(&self, args: &[&str], what: String) -> ZfsError {
        ZfsError::CommandFailed {
            argv: display_argv(&self.zfs_bin, args),
            status: Some(0),
            stderr: format!("unexpected output: {what}"),
        }
    }

    /// The value of one property (`zfs get -H -p -o value`), `None` when ZFS
    /// prints `-` (unset user property, no origin, ...).
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`] for a bad dataset or property name,
    /// [`ZfsError::DatasetNotFound`], [`ZfsError::PoolNotFound`],
    /// [`ZfsError::CommandFailed`] (e.g. a property this ZFS does not know:
    /// `bad property list: invalid property 'x'`).
    pub fn get_property(&self, name: &str, prop: &str) -> Result<Option<String>> {
        validate_any_name(name)?;
        validate_property_name(prop)?;
        let out = self.run(
            Bin::Zfs,
            &["get", "-H", "-p", "-o", "value", prop, name],
            name,
        )?;
        let value = out.strip_suffix('\n').unwrap_or(&out);
        Ok(if value == "-" {
            None
        } else {
            Some(value.to_string())
        })
    }

    /// Sets a property (`zfs set prop=value name`).
    ///
    /// # Errors
    ///
    /// As [`Zfs::get_property`]; also [`ZfsError::InvalidName`] if the value
    /// contains a newline or NUL.
    pub fn set_property(&self, name: &str, prop: &str, value: &str) -> Result<()> {
        validate_any_name(name)?;
        validate_property_name(prop)?;
        if value.contains(['\n', '\0']) {
            return Err(invalid(
                value,
                "property values cannot contain newlines or NUL",
            ));
        }
        let assignment = format!("{prop}={value}");
        self.run(Bin::Zfs, &["set", &assignment, name], name)?;
        Ok(())
    }

    /// Creates `dataset@snap`.
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`] unless `snapshot` is `dataset@snap`,
    /// [`ZfsError::DatasetExists`], [`ZfsError::DatasetNotFound`],
    /// [`ZfsError::PoolNotFound`], [`ZfsError::CommandFailed`].
    pub fn snapshot(&self, snapshot: &str) -> Result<()> {
        validate_snapshot_name(snapshot)?;
        self.run(Bin::Zfs, &["snapshot", snapshot], snapshot)?;
        Ok(())
    }

    /// Creates a filesystem (`zfs create`); the parent must exist.
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`], [`ZfsError::DatasetExists`],
    /// [`ZfsError::PoolNotFound`], [`ZfsError::DatasetNotFound`] (parent),
    /// [`ZfsError::CommandFailed`].
    pub fn create_filesystem(&self, name: &str) -> Result<()> {
        validate_dataset_name(name)?;
        if !name.contains('/') {
            return Err(invalid(name, "a filesystem to create needs a parent"));
        }
        self.run(Bin::Zfs, &["create", name], name)
            .map_err(|e| not_found_is_parent(e, name))?;
        Ok(())
    }

    /// Creates `target` as a clone of `snapshot` (`zfs clone`).
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`], [`ZfsError::DatasetNotFound`] (snapshot),
    /// [`ZfsError::DatasetExists`] (target), [`ZfsError::CommandFailed`].
    pub fn clone_snapshot(&self, snapshot: &str, target: &str) -> Result<()> {
        validate_snapshot_name(snapshot)?;
        validate_dataset_name(target)?;
        self.run(Bin::Zfs, &["clone", snapshot, target], snapshot)?;
        Ok(())
    }

    /// Renames a filesystem, volume or snapshot. Snapshots stay in their
    /// dataset (`pool/ds@a` to `pool/ds@b`).
    ///
    /// A mounted filesystem that ZFS reports busy is unmounted (never
    /// forced), renamed and mounted again under its new name: zfs-fuse
    /// cannot rename mounted filesystems at all. If the remount fails the
    /// rename still counts as done and the failure is logged.
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`] (also for mixing a snapshot and a dataset,
    /// or moving a snapshot to another dataset), [`ZfsError::DatasetNotFound`],
    /// [`ZfsError::DatasetExists`], [`ZfsError::PoolNotFound`],
    /// [`ZfsError::CommandFailed`] (still busy: [`ZfsError::is_busy`]).
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        validate_any_name(from)?;
        validate_any_name(to)?;
        let snapshot = match (from.split_once('@'), to.split_once('@')) {
            (Some((from_ds, _)), Some((to_ds, _))) => {
                if from_ds != to_ds {
                    return Err(invalid(
                        to,
                        "a snapshot can only be renamed within its dataset",
                    ));
                }
                true
            }
            (None, None) => false,
            _ => {
                return Err(invalid(
                    to,
                    "cannot rename between a snapshot and a dataset",
                ))
            }
        };
        let args = ["rename", from, to];
        let err = match self.run(Bin::Zfs, &args, from) {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let err = exists_means_target(err, from, to);
        if snapshot
            || !err.is_busy()
            || self.get_property(from, "mounted")?.as_deref() != Some("yes")
        {
            return Err(err);
        }
        tracing::debug!(from, to, "rename: filesystem busy, renaming it unmounted");
        self.retry_busy(from, || self.run(Bin::Zfs, &["unmount", from], from))?;
        match self.retry_busy(from, || self.run(Bin::Zfs, &args, from)) {
            Ok(_) => {
                if let Err(e) = self.run(Bin::Zfs, &["mount", to], to) {
                    tracing::warn!(error = %e, dataset = to, "renamed, but remounting failed");
                }
                Ok(())
            }
            Err(e) => {
                if let Err(e2) = self.run(Bin::Zfs, &["mount", from], from) {
                    tracing::warn!(error = %e2, dataset = from, "rename failed; remount failed too");
                }
                Err(exists_means_target(e, from, to))
            }
        }
    }

    /// Destroys a filesystem, volume or snapshot; `recursive` adds `-r`
    /// (children and snapshots). Never `-R`: dependent clones make it fail
    /// with [`ZfsError::HasDependentClones`]. "Dataset is busy" is retried
    /// while it makes progress (zfs-fuse unmounts lazily, one level per try).
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`], [`ZfsError::DatasetNotFound`],
    /// [`ZfsError::PoolNotFound`], [`ZfsError::HasDependentClones`],
    /// [`ZfsError::CommandFailed`] (children without `recursive`, still busy).
    pub fn destroy(&self, name: &str, recursive: bool) -> Result<()> {
        validate_any_name(name)?;
        let mut args = vec!["destroy"];
        if recursive {
            args.push("-r");
        }
        args.push(name);
        match self.retry_busy(name, || self.run(Bin::Zfs, &args, name)) {
            Ok(_) => Ok(()),
            // OpenZFS's batched snapshot destroy says only "snapshot is cloned".
            Err(ZfsError::HasDependentClones { name: n, clones }) if clones.is_empty() => {
                let clones = if n.contains('@') {
                    self.clones_of(&n).unwrap_or_default()
                } else {
                    Vec::new()
                };
                Err(ZfsError::HasDependentClones { name: n, clones })
            }
            Err(e) => Err(e),
        }
    }

    /// The clones whose origin is `snapshot`: the `clones` property where
    /// ZFS has it, else every dataset of the pool whose `origin` is it.
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`], [`ZfsError::DatasetNotFound`],
    /// [`ZfsError::PoolNotFound`], [`ZfsError::CommandFailed`].
    pub fn clones_of(&self, snapshot: &str) -> Result<Vec<String>> {
        validate_snapshot_name(snapshot)?;
        if self.available()?.clones_property {
            let value = self.get_property(snapshot, "clones")?.unwrap_or_default();
            return Ok(value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect());
        }
        if !self.exists(snapshot)? {
            return Err(ZfsError::DatasetNotFound {
                name: snapshot.to_string(),
            });
        }
        let pool = pool_of(snapshot);
        Ok(self
            .list_datasets(pool, None)?
            .into_iter()
            .filter(|d| d.origin.as_deref() == Some(snapshot))
            .map(|d| d.name)
            .collect())
    }

    /// Starts `zfs receive` into `target` (a filesystem/volume, or
    /// `dataset@snap` to name the received snapshot). Write the stream into
    /// the returned child (or its [`ReceiveChild::take_writer`]), then call
    /// [`ReceiveChild::finish`].
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`], [`ZfsError::NotAvailable`], [`ZfsError::Io`]
    /// if the process cannot be started. Receive failures are reported by
    /// `finish`.
    pub fn receive(&self, target: &str, opts: ReceiveOpts) -> Result<ReceiveChild> {
        validate_any_name(target)?;
        let features = self.available()?;
        let mut args = vec!["receive"];
        if opts.force {
            args.push("-F");
        }
        push_if_supported(&mut args, opts.no_mount, features.receive_no_mount, "-u");
        push_if_supported(&mut args, opts.resumable, features.resumable_receive, "-s");
        args.push(target);
        let mut cmd = self.command(Bin::Zfs, &args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::null());
        let (proc_, stdin, _) =
            Proc::spawn(cmd, display_argv(&self.zfs_bin, &args), &self.zfs_bin)?;
        let writer = stdin.map(|stdin| ReceiveWriter {
            stdin,
            shared: Arc::clone(&proc_.shared),
        });
        Ok(ReceiveChild {
            writer,
            proc_,
            target: target.to_string(),
            zfs: self.clone(),
        })
    }

    /// Clears the partial state a failed resumable receive left in
    /// `target` (`zfs receive -A`).
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`], [`ZfsError::DatasetNotFound`],
    /// [`ZfsError::CommandFailed`] (also when there is no partial state, or
    /// the ZFS has no resumable receive).
    pub fn abort_resumable_receive(&self, target: &str) -> Result<()> {
        validate_dataset_name(target)?;
        self.run(Bin::Zfs, &["receive", "-A", target], target)?;
        Ok(())
    }

    /// The resume token of an interrupted `zfs receive -s` into `dataset`
    /// (its `receive_resume_token` property), for [`Zfs::send_resume`] on
    /// the sending side.
    ///
    /// `None` when there is no partial state (ZFS prints `-`) and when this
    /// ZFS has no such property (zfs-fuse: `bad property list: invalid
    /// property 'receive_resume_token'`, which it says before looking at
    /// the dataset, so the dataset's existence is then checked separately).
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`], [`ZfsError::DatasetNotFound`],
    /// [`ZfsError::PoolNotFound`], [`ZfsError::CommandFailed`].
    pub fn resume_token(&self, dataset: &str) -> Result<Option<String>> {
        validate_dataset_name(dataset)?;
        match self.get_property(dataset, "receive_resume_token") {
            Ok(token) => Ok(token.filter(|t| !t.is_empty())),
            Err(ZfsError::CommandFailed { ref stderr, .. })
                if stderr.contains("invalid property 'receive_resume_token'") =>
            {
                if self.exists(dataset)? {
                    Ok(None)
                } else {
                    Err(self.refine(ZfsError::DatasetNotFound {
                        name: dataset.to_string(),
                    }))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Starts `zfs send -t TOKEN`: the rest of the stream whose receive was
    /// interrupted, from the token [`Zfs::resume_token`] read on the
    /// receiving side. Receive it with [`ReceiveOpts::resumable`] into the
    /// same target. Read and finish the child as for [`Zfs::send`].
    ///
    /// The token is checked to be what ZFS makes (`1-<hex>-<hex>-<hex>`:
    /// lower-case hex digits and `-`, starting with a digit) before anything
    /// runs. A ZFS without resumable receive (zfs-fuse) has no `send -t`
    /// either; `finish` then reports its usage error.
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`] for a malformed token,
    /// [`ZfsError::NotAvailable`], [`ZfsError::Io`]. Send failures (a token
    /// whose snapshot is gone, a corrupt token) are reported by `finish` as
    /// [`ZfsError::CommandFailed`].
    pub fn send_resume(&self, token: &str) -> Result<SendChild> {
        validate_resume_token(token)?;
        self.available()?;
        self.spawn_send(&["send", "-t", token], "")
    }

    /// Starts `zfs send` of `snapshot`, incremental from `incremental_from`
    /// (`-i`: a full snapshot name, possibly the origin of a clone, or
    /// `@snap` in the same dataset). Read the stream from the returned child
    /// (or its [`SendChild::take_reader`]) to EOF, then call
    /// [`SendChild::finish`].
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`], [`ZfsError::NotAvailable`], [`ZfsError::Io`].
    /// Send failures (missing snapshot, ...) are reported by `finish`.
    pub fn send(
        &self,
        snapshot: &str,
        incremental_from: Option<&str>,
        opts: SendOpts,
    ) -> Result<SendChild> {
        validate_snapshot_name(snapshot)?;
        if let Some(from) = incremental_from {
            match from.strip_prefix('@') {
                Some(short) => validate_component(from, short)?,
                None => validate_snapshot_name(from)?,
            }
        }
        let features = self.available()?;
        let mut args = vec!["send"];
        push_if_supported(&mut args, opts.compressed, features.compressed_send, "-c");
        push_if_supported(
            &mut args,
            opts.large_blocks,
            features.large_block_send,
            "-L",
        );
        push_if_supported(&mut args, opts.embedded, features.embedded_send, "-e");
        if opts.properties {
            args.push("-p");
        }
        if let Some(from) = incremental_from {
            args.extend(["-i", from]);
        }
        args.push(snapshot);
        self.spawn_send(&args, snapshot)
    }

    /// Spawns a `zfs send` with stdout piped; `subject` names the snapshot
    /// for error classification (empty when only a resume token is known).
    fn spawn_send(&self, args: &[&str], subject: &str) -> Result<SendChild> {
        let mut cmd = self.command(Bin::Zfs, args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        let (proc_, _, stdout) =
            Proc::spawn(cmd, display_argv(&self.zfs_bin, args), &self.zfs_bin)?;
        let reader = stdout.map(|stdout| SendReader {
            stdout,
            shared: Arc::clone(&proc_.shared),
        });
        Ok(SendChild {
            reader,
            proc_,
            snapshot: subject.to_string(),
            zfs: self.clone(),
        })
    }

    // ---- running commands ------------------------------------------------

    fn bin(&self, bin: Bin) -> &Path {
        match bin {
            Bin::Zfs => &self.zfs_bin,
            Bin::Zpool => &self.zpool_bin,
        }
    }

    fn command(&self, bin: Bin, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.bin(bin));
        cmd.args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs a command to completion and returns its raw output.
    fn output(&self, bin: Bin, args: &[&str]) -> Result<std::process::Output> {
        let mut cmd = self.command(bin, args);
        let started = Instant::now();
        let out = retry_text_busy(|| cmd.output()).map_err(|e| spawn_error(e, self.bin(bin)))?;
        tracing::debug!(
            argv = %display_argv(self.bin(bin), args),
            status = ?out.status.code(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "ran zfs command"
        );
        Ok(out)
    }

    /// Runs a command; on success returns stdout, otherwise the classified
    /// error. `subject` is the dataset the command is about (used when
    /// stderr names none).
    fn run(&self, bin: Bin, args: &[&str], subject: &str) -> Result<String> {
        let out = self.output(bin, args)?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let err = classify(
            &display_argv(self.bin(bin), args),
            out.status.code(),
            &stderr,
            subject,
        );
        Err(self.refine(err))
    }

    /// zfs-fuse and some OpenZFS paths say "dataset does not exist" when the
    /// whole pool is missing; ask `zpool` which it is.
    fn refine(&self, err: ZfsError) -> ZfsError {
        if let ZfsError::DatasetNotFound { name } = &err {
            let pool = pool_of(name);
            if validate_pool_name(pool).is_ok() {
                if let Ok(false) = self.pool_exists(pool) {
                    return ZfsError::PoolNotFound {
                        pool: pool.to_string(),
                    };
                }
            }
        }
        err
    }

    /// Retries `op` while it fails with "is busy" and makes progress: each
    /// retry must name a different busy dataset than the one before, except
    /// that the same one may be retried twice (lazy unmount). Waits a little
    /// longer each time.
    fn retry_busy<T>(&self, subject: &str, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        const MAX_ATTEMPTS: u32 = 20;
        const SAME_NAME_RETRIES: u32 = 2;
        let mut last_busy = String::new();
        let mut same = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match op() {
                Ok(v) => return Ok(v),
                Err(e) if e.is_busy() => e,
                Err(e) => return Err(e),
            };
            let busy = match &err {
                ZfsError::CommandFailed { stderr, .. } => {
                    first_quoted(stderr).unwrap_or(subject).to_string()
                }
                _ => subject.to_string(),
            };
            if busy == last_busy {
                same += 1;
            } else {
                same = 0;
                last_busy = busy;
            }
            if same >= SAME_NAME_RETRIES || attempt >= MAX_ATTEMPTS {
                return Err(err);
            }
            tracing::debug!(dataset = %last_busy, attempt, "dataset busy, retrying");
            thread::sleep(Duration::from_millis(100 * u64::from(same + 1)));
        }
    }
}

fn push_depth<'a>(args: &mut Vec<&'a str>, depth: Option<&'a str>) {
    match depth {
        Some(d) => args.extend(["-d", d]),
        None => args.push("-r"),
    }
}

fn push_if_supported<'a>(args: &mut Vec<&'a str>, wanted: bool, supported: bool, flag: &'a str) {
    if wanted {
        if supported {
            args.push(flag);
        } else {
            tracing::debug!(flag, "zfs lacks this flag; leaving it out");
        }
    }
}

/// Retries a spawn that failed with ETXTBSY: another thread forking while a
/// just-written executable was still open for writing (tests write fake
/// `zfs` scripts; harmless elsewhere).
fn retry_text_busy<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let mut tries = 0;
    loop {
        match f() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn spawn_error(e: io::Error, bin: &Path) -> ZfsError {
    match e.kind() {
        io::ErrorKind::NotFound => ZfsError::NotAvailable {
            detail: format!("{} not found", bin.display()),
        },
        io::ErrorKind::PermissionDenied => ZfsError::NotAvailable {
            detail: format!("{} cannot be executed: {e}", bin.display()),
        },
        _ => ZfsError::Io(e),
    }
}

/// For a human: the command line with arguments quoted where needed.
fn display_argv(bin: &Path, args: &[&str]) -> String {
    let mut s = quote(&bin.to_string_lossy());
    for a in args {
        s.push(' ');
        s.push_str(&quote(a));
    }
    s
}

fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@=,+%".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

// ---- error classification -----------------------------------------------

/// Messages meaning the ZFS control device or daemon is unreachable:
/// illumos/FreeBSD/zfs-fuse `libzfs_init` failure, OpenZFS
/// `libzfs_error_init()` texts, zfs-fuse's socket connect failure.
const NOT_AVAILABLE: &[&str] = &[
    "failed to initialize ZFS library",
    "Failed to initialize the libzfs library",
    "The ZFS modules are not loaded",
    "The ZFS modules cannot be auto-loaded",
    "/dev/zfs and /proc/self/mounts are required",
    "Permission denied the ZFS utilities must be run as root",
    "zfs-fuse daemon is running",
    "Unable to open /dev/zfs",
];

fn check_not_available(stderr: &str) -> Result<()> {
    match NOT_AVAILABLE.iter().find(|p| stderr.contains(*p)) {
        Some(_) => Err(ZfsError::NotAvailable {
            detail: first_lines(stderr),
        }),
        None => Ok(()),
    }
}

/// Classifies a failed command from its stderr. `subject` is the dataset
/// the command was about, used when stderr names none.
fn classify(argv: &str, status: Option<i32>, stderr: &str, subject: &str) -> ZfsError {
    if let Err(e) = check_not_available(stderr) {
        return e;
    }
    let name_or_subject = || first_quoted(stderr).unwrap_or(subject).to_string();

    // "cannot destroy 'P/a@s': snapshot has dependent clones\nuse '-R' to
    // destroy the following datasets:\nP/k1\n..." (zfs_main.c everywhere);
    // OpenZFS batched snapshot destroy: "cannot destroy snapshot P/a@s:
    // snapshot is cloned".
    if stderr.contains("has dependent clones") || stderr.contains("snapshot is cloned") {
        let name = first_quoted(stderr)
            .map(str::to_string)
            .or_else(|| {
                after(stderr, "cannot destroy snapshot ")
                    .and_then(|rest| rest.split(": ").next())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| subject.to_string());
        let clones = stderr
            .lines()
            .skip_while(|l| !l.starts_with("use '-R'"))
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        return ZfsError::HasDependentClones { name, clones };
    }
    // "cannot create snapshot 'P/d@s': out of space" (zfs-fuse, OpenZFS,
    // illumos); receive: "cannot receive new filesystem stream: out of
    // space"; a quota: "disk quota exceeded".
    if stderr.contains("out of space")
        || stderr.contains("No space left on device")
        || stderr.contains("quota exceeded")
    {
        return ZfsError::OutOfSpace {
            name: name_or_subject(),
            stderr: trim_stderr(stderr),
        };
    }
    // "cannot create 'P/x': no such pool 'P'", "cannot open 'P': no such pool"
    if let Some(i) = stderr.find("no such pool") {
        let rest = &stderr[i + "no such pool".len()..];
        let pool = quoted_at_start(rest.trim_start())
            .or_else(|| first_quoted(stderr))
            .map(|n| pool_of(n).to_string())
            .unwrap_or_else(|| pool_of(subject).to_string());
        return ZfsError::PoolNotFound { pool };
    }
    // zfs-fuse: "warning: cannot send 'P/d@s': incremental source (@x) does not exist"
    if let Some(src) = between(stderr, "incremental source (", ") does not exist") {
        let name = if src.starts_with('@') {
            let snap = first_quoted(stderr).unwrap_or(subject);
            format!("{}{src}", snap.split('@').next().unwrap_or(snap))
        } else {
            src.to_string()
        };
        return ZfsError::DatasetNotFound { name };
    }
    // zfs-fuse: "WARNING: could not send P/d@s: does not exist"
    if let Some(name) = between(stderr, "could not send ", ": does not exist") {
        return ZfsError::DatasetNotFound {
            name: name.to_string(),
        };
    }
    // "cannot open 'P/d': dataset does not exist"; OpenZFS destroy of a
    // missing snapshot: "could not find any snapshots to destroy; check
    // snapshot names."; incremental receive into a missing target:
    // "cannot receive incremental stream: destination 'P/d' does not exist".
    if stderr.contains("does not exist") || stderr.contains("could not find any snapshots") {
        return ZfsError::DatasetNotFound {
            name: name_or_subject(),
        };
    }
    // "dataset already exists"; receive: "destination 'P/b' exists\nmust
    // specify -F to overwrite it" or "destination has snapshots (eg. P/b@s1)".
    if stderr.contains("already exists") || stderr.contains("must specify -F to overwrite") {
        return ZfsError::DatasetExists {
            name: name_or_subject(),
        };
    }
    if stderr.contains("destination has snapshots") {
        return ZfsError::DatasetExists {
            name: subject.to_string(),
        };
    }
    ZfsError::CommandFailed {
        argv: argv.to_string(),
        status,
        stderr: trim_stderr(stderr),
    }
}

/// Drops the usage text that follows usage errors (zfs prints the whole
/// property table) and caps the length.
fn trim_stderr(stderr: &str) -> String {
    let cut = match stderr.find("\nusage:") {
        Some(i) => &stderr[..i],
        None => stderr,
    };
    let mut s = cut.trim_end().to_string();
    if s.len() > 4096 {
        let mut end = 4096;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str(" [...]");
    }
    s
}

/// The first `'...'`-quoted text in `s`.
fn first_quoted(s: &str) -> Option<&str> {
    let start = s.find('\'')? + 1;
    let len = s[start..].find('\'')?;
    Some(&s[start..start + len])
}

/// The `'...'`-quoted text at the very start of `s`.
fn quoted_at_start(s: &str) -> Option<&str> {
    if s.starts_with('\'') {
        first_quoted(s)
    } else {
        None
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)?;
    Some(&s[i..i + j])
}

/// The rest of the line after `marker`.
fn after<'a>(s: &'a str, marker: &str) -> Option<&'a str> {
    let i = s.find(marker)? + marker.len();
    s[i..].lines().next()
}

/// For commands creating `name`: "does not exist" is about the parent.
fn not_found_is_parent(err: ZfsError, name: &str) -> ZfsError {
    match err {
        ZfsError::DatasetNotFound { name: n } if n == name => ZfsError::DatasetNotFound {
            name: parent_of(name).to_string(),
        },
        e => e,
    }
}

/// Receive-specific texts first, then [`classify`].
fn classify_receive(argv: &str, status: Option<i32>, stderr: &str, target: &str) -> ZfsError {
    let dataset = dataset_part(target);
    // "cannot receive: local origin for clone P/c@s does not exist": the
    // stream is a clone of something not here; not the target's fault.
    if stderr.contains("local origin for clone") {
        return ZfsError::CommandFailed {
            argv: argv.to_string(),
            status,
            stderr: trim_stderr(stderr),
        };
    }
    // Full stream whose parent is missing (zfs-fuse prefixes it with
    // "cannot open 'TARGET': dataset does not exist", naming the target).
    if stderr.contains("new filesystem stream: dataset does not exist") {
        return ZfsError::DatasetNotFound {
            name: parent_of(dataset).to_string(),
        };
    }
    classify(argv, status, stderr, dataset)
}

/// The dataset part of a name (`pool/ds@snap` gives `pool/ds`).
fn dataset_part(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

/// `zfs rename` says "cannot rename 'FROM': dataset already exists" when
/// the *target* exists.
fn exists_means_target(err: ZfsError, from: &str, to: &str) -> ZfsError {
    match err {
        ZfsError::DatasetExists { name } if name == from => ZfsError::DatasetExists {
            name: to.to_string(),
        },
        e => e,
    }
}

fn pool_of(name: &str) -> &str {
    let end = name.find(['/', '@']).unwrap_or(name.len());
    &name[..end]
}

fn parent_of(name: &str) -> &str {
    match name.rfind('/') {
        Some(i) => &name[..i],
        None => name,
    }
}

// ---- output parsing -------------------------------------------------------

fn parse_u64(field: &str, what: &str) -> std::result::Result<u64, String> {
    if field == "-" {
        return Ok(0);
    }
    field
        .parse()
        .map_err(|_| format!("{what} is not a number: {field:?}"))
}

fn info_from_fields(
    name: &str,
    kind: &str,
    origin: &str,
    used: &str,
    refer: &str,
    creation: &str,
) -> std::result::Result<Option<DatasetInfo>, String> {
    let Some(kind) = DatasetType::parse(kind) else {
        tracing::debug!(name, kind, "skipping dataset of unknown type");
        return Ok(None);
    };
    Ok(Some(DatasetInfo {
        name: name.to_string(),
        kind,
        origin: (origin != "-" && !origin.is_empty()).then(|| origin.to_string()),
        used: parse_u64(used, "used")?,
        referenced: parse_u64(refer, "referenced")?,
        creation: parse_u64(creation, "creation")?,
    }))
}

/// Parses `zfs list -H -p -o name,type,origin,used,referenced,creation`.
fn parse_list_output(out: &str) -> std::result::Result<Vec<DatasetInfo>, String> {
    let mut rows = Vec::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 6 {
            return Err(format!("expected 6 tab-separated fields: {line:?}"));
        }
        rows.extend(info_from_fields(f[0], f[1], f[2], f[3], f[4], f[5])?);
    }
    Ok(rows)
}

/// Parses `zfs get -H -p -o name,property,value type,origin,used,referenced,creation`,
/// one line per dataset and property, keeping the datasets' order.
fn parse_get_output(out: &str) -> std::result::Result<Vec<DatasetInfo>, String> {
    let mut grouped: Vec<(String, [String; 5])> = Vec::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let mut f = line.splitn(3, '\t');
        let (Some(name), Some(prop), Some(value)) = (f.next(), f.next(), f.next()) else {
            return Err(format!("expected 3 tab-separated fields: {line:?}"));
        };
        let slot = match prop {
            "type" => 0,
            "origin" => 1,
            "used" => 2,
            "referenced" => 3,
            "creation" => 4,
            _ => continue,
        };
        if grouped.last().map(|(n, _)| n.as_str()) != Some(name) {
            grouped.push((name.to_string(), Default::default()));
        }
        if let Some((_, props)) = grouped.last_mut() {
            props[slot] = value.to_string();
        }
    }
    let mut rows = Vec::new();
    for (name, p) in &grouped {
        rows.extend(info_from_fields(name, &p[0], &p[1], &p[2], &p[3], &p[4])?);
    }
    Ok(rows)
}

// ---- name validation --------------------------------------------------------

fn invalid(name: &str, reason: &'static str) -> ZfsError {
    ZfsError::InvalidName {
        name: name.to_string(),
        reason,
    }
}

/// Checks one name component: non-empty, `[A-Za-z0-9_.:-]`, not starting
/// with `-`, no `..`.
fn validate_component(whole: &str, c: &str) -> Result<()> {
    if c.is_empty() {
        return Err(invalid(whole, "empty name component"));
    }
    if c.starts_with('-') {
        return Err(invalid(whole, "a name component cannot start with '-'"));
    }
    if c.contains("..") || c == "." {
        return Err(invalid(whole, "'.' and '..' are not allowed in names"));
    }
    if !c
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
    {
        return Err(invalid(whole, "only A-Z a-z 0-9 _ . : - are allowed"));
    }
    Ok(())
}

fn check_length(name: &str) -> Result<()> {
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(name, "longer than 255 bytes"));
    }
    Ok(())
}

/// Validates a pool name: one component that starts with a letter.
///
/// # Errors
///
/// [`ZfsError::InvalidName`] with the reason.
pub fn validate_pool_name(pool: &str) -> Result<()> {
    check_length(pool)?;
    if pool.contains(['/', '@']) {
        return Err(invalid(pool, "a pool name cannot contain '/' or '@'"));
    }
    validate_component(pool, pool)?;
    if !pool.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(invalid(pool, "a pool name must start with a letter"));
    }
    Ok(())
}

/// Validates a filesystem or volume name (`pool[/component...]`).
///
/// # Errors
///
/// [`ZfsError::InvalidName`] with the reason.
pub fn validate_dataset_name(name: &str) -> Result<()> {
    check_length(name)?;
    if name.contains('@') {
        return Err(invalid(name, "a dataset name cannot contain '@'"));
    }
    let mut parts = name.split('/');
    validate_pool_name(parts.next().unwrap_or("")).map_err(|e| match e {
        ZfsError::InvalidName { reason, .. } => invalid(name, reason),
        e => e,
    })?;
    parts.try_for_each(|c| validate_component(name, c))
}

/// Validates a snapshot name (`dataset@snap`).
///
/// # Errors
///
/// [`ZfsError::InvalidName`] with the reason.
pub fn validate_snapshot_name(name: &str) -> Result<()> {
    check_length(name)?;
    let Some((dataset, snap)) = name.split_once('@') else {
        return Err(invalid(name, "a snapshot name needs '@'"));
    };
    if snap.contains('@') {
        return Err(invalid(name, "only one '@' is allowed"));
    }
    if snap.contains('/') {
        return Err(invalid(
            name,
            "a snapshot name cannot contain '/' after '@'",
        ));
    }
    validate_dataset_name(dataset).map_err(|e| match e {
        ZfsError::InvalidName { reason, .. } => invalid(name, reason),
        e => e,
    })?;
    validate_component(name, snap)
}

/// Validates a dataset or snapshot name.
///
/// # Errors
///
/// [`ZfsError::InvalidName`] with the reason.
pub fn validate_any_name(name: &str) -> Result<()> {
    if name.contains('@') {
        validate_snapshot_name(name)
    } else {
        validate_dataset_name(name)
    }
}

/// Longest resume token accepted. Real ones are a few hundred bytes (a
/// compressed nvlist in hex); the cap only bounds the argv.
const MAX_RESUME_TOKEN_LEN: usize = 64 * 1024;

/// A `receive_resume_token` as ZFS prints it: `1-<hex>-<hex>-<hex>`, so
/// only `0-9 a-f -`, starting with a digit (never an option to `zfs`).
fn validate_resume_token(token: &str) -> Result<()> {
    // Errors show the start of the token only; a bad one may be huge.
    let bad = |reason| invalid(&token.chars().take(80).collect::<String>(), reason);
    if token.is_empty() || token.len() > MAX_RESUME_TOKEN_LEN {
        return Err(bad("a resume token is 1 to 65536 characters"));
    }
    if !token.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad("a resume token starts with a digit"));
    }
    if !token
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'))
    {
        return Err(bad("a resume token has only 0-9 a-f and '-' in it"));
    }
    Ok(())
}

/// Property names: native (`used`) or user (`imgadm:ignore`); lower case,
/// digits, `_ . : -` and the `@` of `userquota@...`.
fn validate_property_name(prop: &str) -> Result<()> {
    let ok = !prop.is_empty()
        && prop.len() <= 256
        && !prop.starts_with('-')
        && prop
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(invalid(prop, "not a valid property name"))
    }
}

// ---- child processes ----------------------------------------------------------

/// State shared between a running child and its [`Canceller`]s.
#[derive(Debug)]
struct Shared {
    cancelled: AtomicBool,
    state: Mutex<ProcState>,
}

#[derive(Debug)]
struct ProcState {
    child: Child,
    /// Set once the child has been reaped; after that its pid must not be
    /// signalled (it may belong to another process).
    exited: Option<ExitStatus>,
    killed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ProcState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// Kills a running [`ReceiveChild`] or [`SendChild`] from any thread.
///
/// After `cancel`, writes to the receive stream and reads from the send
/// stream fail, and `finish` returns [`ZfsError::Cancelled`] if the process
/// was still running.
#[derive(Debug, Clone)]
pub struct Canceller {
    shared: Arc<Shared>,
}

impl Canceller {
    /// Kills the child (SIGKILL) unless it has already exited. Idempotent.
    pub fn cancel(&self) {
        self.shared.cancelled.store(true, Ordering::SeqCst);
        let mut st = self.shared.lock();
        if st.exited.is_some() {
            return;
        }
        match st.child.try_wait() {
            Ok(Some(status)) => st.exited = Some(status),
            _ => {
                if st.child.kill().is_ok() {
                    st.killed = true;
                    tracing::debug!(pid = st.child.id(), "killed zfs child");
                }
            }
        }
    }

    /// True once [`Canceller::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.shared.is_cancelled()
    }
}

/// A spawned child with its stderr drained by a thread.
#[derive(Debug)]
struct Proc {
    shared: Arc<Shared>,
    stderr: Option<JoinHandle<String>>,
    argv: String,
    started: Instant,
}

impl Proc {
    fn spawn(
        mut cmd: Command,
        argv: String,
        bin: &Path,
    ) -> Result<(Proc, Option<ChildStdin>, Option<ChildStdout>)> {
        cmd.stderr(Stdio::piped());
        let mut child = retry_text_busy(|| cmd.spawn()).map_err(|e| spawn_error(e, bin))?;
        tracing::debug!(%argv, pid = child.id(), "started zfs child");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        if let Some(p) = &stdin {
            grow_pipe(p);
        }
        if let Some(p) = &stdout {
            grow_pipe(p);
        }
        let stderr = child.stderr.take().map(|mut pipe| {
            thread::Builder::new()
                .name("zfs-stderr".to_string())
                .spawn(move || drain_capped(&mut pipe))
        });
        let stderr = match stderr.transpose() {
            Ok(h) => h,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ZfsError::Io(e));
            }
        };
        let proc_ = Proc {
            shared: Arc::new(Shared {
                cancelled: AtomicBool::new(false),
                state: Mutex::new(ProcState {
                    child,
                    exited: None,
                    killed: false,
                }),
            }),
            stderr,
            argv,
            started: Instant::now(),
        };
        Ok((proc_, stdin, stdout))
    }

    fn canceller(&self) -> Canceller {
        Canceller {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Waits for the child without holding the lock across the wait, so a
    /// [`Canceller`] can kill it meanwhile (std's `wait` needs `&mut`, hence
    /// polling with a short, growing sleep).
    fn wait(&self) -> io::Result<ExitStatus> {
        let mut delay = Duration::from_millis(1);
        loop {
            {
                let mut st = self.shared.lock();
                if let Some(status) = st.exited {
                    return Ok(status);
                }
                if let Some(status) = st.child.try_wait()? {
                    st.exited = Some(status);
                    return Ok(status);
                }
            }
            thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    fn take_stderr(&mut self) -> String {
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Waits and collects stderr: `Ok(None)` on success, `Ok(Some((exit
    /// code, stderr)))` on failure, [`ZfsError::Cancelled`] if it was killed
    /// through a [`Canceller`].
    fn wait_outcome(&mut self) -> Result<Option<(Option<i32>, String)>> {
        let status = self.wait()?;
        let stderr = self.take_stderr();
        let killed = self.shared.lock().killed;
        tracing::debug!(
            argv = %self.argv,
            status = ?status.code(),
            killed,
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            "zfs child finished"
        );
        if killed {
            return Err(ZfsError::Cancelled {
                argv: self.argv.clone(),
            });
        }
        Ok((!status.success()).then(|| (status.code(), stderr)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if st.exited.is_none() {
            let _ = st.child.kill();
            if let Ok(status) = st.child.wait() {
                st.exited = Some(status);
            }
            tracing::debug!(argv = %self.argv, "killed unfinished zfs child on drop");
        }
        // The stderr thread is detached, not joined: it ends when the pipe
        // closes, which a surviving grandchild could delay indefinitely.
    }
}

/// Size asked for the stream pipes of send and receive: 16 times Linux's
/// default 64 KiB, so the pipeline's 1 MiB chunks cross in one write and one
/// read instead of sixteen wake-ups on each side. Capped by the kernel at
/// `/proc/sys/fs/pipe-max-size` (1 MiB by default); other systems keep
/// their default.
const STREAM_PIPE_BYTES: i32 = 1 << 20;

fn grow_pipe(fd: &impl std::os::fd::AsFd) {
    #[cfg(target_os = "linux")]
    {
        use nix::fcntl::{fcntl, FcntlArg};
        // Best effort: a smaller pipe is only slower.
        let _ = fcntl(fd, FcntlArg::F_SETPIPE_SZ(STREAM_PIPE_BYTES));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}

/// Reads a pipe to EOF, keeping at most [`STDERR_LIMIT`] bytes.
fn drain_capped(r: &mut impl Read) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = STDERR_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

fn cancelled_io(what: &str) -> io::Error {
    io::Error::other(format!("{what} was cancelled"))
}

/// The stdin of a running `zfs receive`. Writes fail once the receive is
/// cancelled (zfs-fuse would otherwise finish the receive from the pipe).
#[derive(Debug)]
pub struct ReceiveWriter {
    stdin: ChildStdin,
    shared: Arc<Shared>,
}

impl Write for ReceiveWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.shared.is_cancelled() {
            return Err(cancelled_io("zfs receive"));
        }
        self.stdin.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stdin.flush()
    }
}

/// A running `zfs receive`.
///
/// Write the stream into it (it implements [`Write`]) or move the writer to
/// a pump thread with [`ReceiveChild::take_writer`]; then call
/// [`ReceiveChild::finish`]. If a write fails (e.g. broken pipe because zfs
/// gave up), still call `finish`: it returns zfs's own reason. Dropping it
/// unfinished kills and reaps the process.
#[derive(Debug)]
pub struct ReceiveChild {
    // Declared first so the pipe is closed before the process is reaped.
    writer: Option<ReceiveWriter>,
    proc_: Proc,
    target: String,
    zfs: Zfs,
}

impl ReceiveChild {
    /// Moves the stream writer out (e.g. to a pump thread). Returns `None`
    /// if it was already taken.
    pub fn take_writer(&mut self) -> Option<ReceiveWriter> {
        self.writer.take()
    }

    /// A handle that kills this receive from any thread.
    pub fn canceller(&self) -> Canceller {
        self.proc_.canceller()
    }

    /// The receive target as given.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Closes the stream (if the writer was not taken), waits for zfs and
    /// classifies its stderr. A taken writer must be dropped first, or this
    /// waits until it is.
    ///
    /// # Errors
    ///
    /// [`ZfsError::Cancelled`] if killed through a [`Canceller`] (with
    /// zfs-fuse the target's state is then unknown: destroy it if it
    /// exists); [`ZfsError::DatasetExists`] (target exists without `-F`, or
    /// has snapshots); [`ZfsError::DatasetNotFound`] (parent, or the target
    /// of an incremental stream); [`ZfsError::PoolNotFound`];
    /// [`ZfsError::CommandFailed`] for invalid, truncated or corrupted
    /// streams and everything else.
    pub fn finish(mut self) -> Result<()> {
        drop(self.writer.take());
        match self.proc_.wait_outcome()? {
            None => Ok(()),
            Some((status, stderr)) => {
                let err = classify_receive(&self.proc_.argv, status, &stderr, &self.target);
                Err(self.zfs.refine(err))
            }
        }
    }
}

impl Write for ReceiveChild {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.writer {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("receive writer was taken")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

/// The stdout of a running `zfs send`. Reads fail once it is cancelled.
#[derive(Debug)]
pub struct SendReader {
    stdout: ChildStdout,
    shared: Arc<Shared>,
}

impl Read for SendReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.shared.is_cancelled() {
            return Err(cancelled_io("zfs send"));
        }
        self.stdout.read(buf)
    }
}

/// A running `zfs send`.
///
/// Read the stream from it (it implements [`Read`]) or move the reader to a
/// pump thread with [`SendChild::take_reader`]; read to EOF, then call
/// [`SendChild::finish`]. Dropping it unfinished kills and reaps the process.
#[derive(Debug)]
pub struct SendChild {
    reader: Option<SendReader>,
    proc_: Proc,
    snapshot: String,
    zfs: Zfs,
}

impl SendChild {
    /// Moves the stream reader out. Returns `None` if it was already taken.
    pub fn take_reader(&mut self) -> Option<SendReader> {
        self.reader.take()
    }

    /// A handle that kills this send from any thread.
    pub fn canceller(&self) -> Canceller {
        self.proc_.canceller()
    }

    /// Closes the stream (if the reader was not taken), waits for zfs and
    /// classifies its stderr. Finishing before EOF makes zfs fail with a
    /// broken pipe. A taken reader must be dropped first, or this waits.
    ///
    /// # Errors
    ///
    /// [`ZfsError::Cancelled`]; [`ZfsError::DatasetNotFound`] (the snapshot
    /// or the incremental source); [`ZfsError::PoolNotFound`];
    /// [`ZfsError::CommandFailed`] otherwise (e.g. the incremental source is
    /// not an earlier snapshot of the same dataset or of its origin).
    pub fn finish(mut self) -> Result<()> {
        drop(self.reader.take());
        match self.proc_.wait_outcome()? {
            None => Ok(()),
            Some((status, stderr)) => {
                let err = classify(&self.proc_.argv, status, &stderr, &self.snapshot);
                Err(self.zfs.refine(err))
            }
        }
    }
}

impl Read for SendChild {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.reader {
            Some(r) => r.read(buf),
            None => Err(io::Error::other("send reader was taken")),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Unit tests: name validation, argv building and error classification.
    //! Commands run against a fake `zfs`/`zpool` shell script that records
    //! its argv and prints stderr recorded from real zfs-fuse, OpenZFS and
    //! illumos. Real-pool round trips are in `pool_tests` below.

    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::mpsc;

    const ALL: Features = Features {
        resumable_receive: true,
        receive_no_mount: true,
        compressed_send: true,
        large_block_send: true,
        embedded_send: true,
        raw_send: true,
        parsable_list: true,
        clones_property: true,
    };

    /// zfs-fuse: only `receive -u` of the optional flags.
    const ZFS_FUSE: Features = Features {
        receive_no_mount: true,
        ..NONE
    };

    const NONE: Features = Features {
        resumable_receive: false,
        receive_no_mount: false,
        compressed_send: false,
        large_block_send: false,
        embedded_send: false,
        raw_send: false,
        parsable_list: false,
        clones_property: false,
    };

    /// A fake `zfs` (and `zpool`, a symlink to it) in a temp dir. The script
    /// appends "<zfs|zpool> <args>" to argv.log, sets `$CMD` to that line
    /// and `$D` to its directory, then runs `body`.
    struct Fake {
        dir: tempfile::TempDir,
        zfs: Zfs,
    }

    impl Fake {
        fn new(body: &str) -> Fake {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().display().to_string();
            let script = format!(
                "#!/bin/sh\nD='{d}'\nCMD=\"$(basename \"$0\") $*\"\nprintf '%s\\n' \"$CMD\" >> \"$D/argv.log\"\n{body}\n"
            );
            let path = dir.path().join("zfs");
            {
                let mut f = fs::File::create(&path).unwrap();
                f.write_all(script.as_bytes()).unwrap();
                f.sync_all().unwrap();
            }
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::symlink(&path, dir.path().join("zpool")).unwrap();
            let zfs = Zfs::new(path, dir.path().join("zpool"));
            Fake { dir, zfs }
        }

        /// Skips detection: the features are given.
        fn with(self, features: Features) -> Fake {
            self.zfs.features.set(features).unwrap();
            self
        }

        fn log(&self) -> Vec<String> {
            fs::read_to_string(self.dir.path().join("argv.log"))
                .unwrap_or_default()
                .lines()
                .map(str::to_string)
                .collect()
        }

        fn file(&self, name: &str) -> Vec<u8> {
            fs::read(self.dir.path().join(name)).unwrap_or_default()
        }
    }

    /// Runs `f` on a thread and fails the test if it takes over 30 s
    /// (a deadlock would otherwise hang the suite).
    fn within_30s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("operation did not finish within 30 s (deadlock?)")
    }

    // ---- names -------------------------------------------------------------

    #[test]
    fn valid_names_are_accepted() {
        for pool in ["zones", "tank", "z", "zdrv1", "a_b.c:d-e"] {
            validate_pool_name(pool).unwrap();
        }
        for ds in [
            "zones",
            "zones/0764d78e-3472-11e5-8949-4f31ab6b8a81",
            "zones/a/b/c",
            "t/x.y:z_w-v",
            "zones/x-partial",
        ] {
            validate_dataset_name(ds).unwrap();
            validate_any_name(ds).unwrap();
        }
        for snap in [
            "zones/a@final",
            "zones@s",
            "t/a.b@2024-01-01T00:00:00",
            "t/a@x_y.z",
        ] {
            validate_snapshot_name(snap).unwrap();
            validate_any_name(snap).unwrap();
        }
        validate_dataset_name(&format!("t/{}", "a".repeat(253))).unwrap();
    }

    #[test]
    fn invalid_names_are_rejected_with_invalid_parameter() {
        let long = format!("t/{}", "a".repeat(254));
        let cases: &[&str] = &[
            "",
            "-pool",
            "9pool",
            "pool/",
            "/pool",
            "pool//x",
            "pool/-x",
            "pool/a b",
            "pool/a\tb",
            "pool/a\nb",
            "pool/x;rm",
            "pool/$(x)",
            "pool/../x",
            "pool/..",
            "pool/.",
            "pool/a..b",
            "pool/ä",
            "pool/x%recv",
            &long,
        ];
        for name in cases {
            let err = validate_any_name(name).unwrap_err();
            assert_eq!(err.code(), "InvalidParameter", "{name:?}");
            assert!(
                matches!(&err, ZfsError::InvalidName { name: n, .. } if n == name),
                "{err:?}"
            );
        }
        for snap in [
            "pool/a",
            "pool/a@",
            "pool/a@b@c",
            "pool/a@-b",
            "pool/a@b/c",
            "@s",
            "pool/a@b c",
        ] {
            assert!(validate_snapshot_name(snap).is_err(), "{snap:?}");
        }
        assert!(validate_dataset_name("pool/a@b").is_err());
        assert!(validate_pool_name("pool/a").is_err());
        for prop in ["", "-o", "a b", "x=y", "a\n"] {
            assert!(validate_property_name(prop).is_err(), "{prop:?}");
        }
        for prop in ["used", "imgadm:ignore", "com.joyent:x", "userquota@root"] {
            validate_property_name(prop).unwrap();
        }
    }

    #[test]
    fn invalid_names_never_run_a_command() {
        let fake = Fake::new("exit 0").with(ALL);
        let z = &fake.zfs;
        assert!(z.snapshot("pool/a").is_err());
        assert!(z.destroy("-r", false).is_err());
        assert!(z.rename("pool/a", "pool/-b").is_err());
        assert!(z.get_property("pool/a", "x=y").is_err());
        assert!(z.receive("pool/a b", ReceiveOpts::default()).is_err());
        assert!(z.send("pool/a", None, SendOpts::default()).is_err());
        assert!(z
            .send("pool/a@s", Some("@-x"), SendOpts::default())
            .is_err());
        assert!(z.pool_exists("bad pool").is_err());
        assert!(fake.log().is_empty(), "{:?}", fake.log());
    }

    // ---- classification (recorded stderr) ---------------------------------------

    const ZFS_FUSE_DOWN: &str = "connect: No such file or directory\n\
        Please make sure that the zfs-fuse daemon is running.\n\
        internal error: failed to initialize ZFS library\n";

    fn cls(stderr: &str, subject: &str) -> ZfsError {
        classify("zfs x", Some(1), stderr, subject)
    }

    #[test]
    fn classifies_not_available() {
        for stderr in [
            ZFS_FUSE_DOWN,
            // illumos / FreeBSD
            "internal error: failed to initialize ZFS library\n",
            // OpenZFS libzfs_error_init()
            "The ZFS modules are not loaded.\nTry running 'modprobe zfs' as root to load them.\n",
            "/dev/zfs and /proc/self/mounts are required.\nTry running 'udevadm trigger' and 'mount -t proc proc /proc' as root.\n",
            "Permission denied the ZFS utilities must be run as root.\n",
            "Failed to initialize the libzfs library.\n",
        ] {
            let e = cls(stderr, "tank");
            assert_eq!(e.code(), "ZfsNotAvailable", "{stderr}");
        }
    }

    #[test]
    fn classifies_out_of_space() {
        // zfs-fuse, snapshot of a dataset in a full pool (recorded).
        let e = cls(
            "cannot create snapshot 'fullt/vm@final': out of space\n",
            "fullt/vm@final",
        );
        assert!(
            matches!(&e, ZfsError::OutOfSpace { name, .. } if name == "fullt/vm@final"),
            "{e:?}"
        );
        assert_eq!(e.code(), "InsufficientStorage");
        assert!(e.to_string().contains("pool fullt"), "{e}");
        // receive into a full pool; a refquota.
        let e = classify_receive(
            "zfs receive",
            Some(1),
            "cannot receive new filesystem stream: out of space\n",
            "p/img-partial",
        );
        assert!(
            matches!(&e, ZfsError::OutOfSpace { name, .. } if name == "p/img-partial"),
            "{e:?}"
        );
        let e = cls("cannot create 'p/d': disk quota exceeded\n", "p/d");
        assert_eq!(e.code(), "InsufficientStorage", "{e:?}");
    }

    #[test]
    fn classifies_missing_pool_and_dataset() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // zpool list nopool (zfs-fuse, OpenZFS, illumos)
            ("cannot open 'nopool': no such pool\n", "nopool", "PoolNotFound", "nopool"),
            // zfs create nopool/x
            ("cannot create 'nopool/x': no such pool 'nopool'\n", "nopool/x", "PoolNotFound", "nopool"),
            // zfs rename zdrv1/a nopool/b (zfs-fuse)
            ("cannot create 'nopool/b': no such pool 'nopool'\n", "zdrv1/a", "PoolNotFound", "nopool"),
            ("cannot open 'zdrv1/nope': dataset does not exist\n", "zdrv1/nope", "DatasetNotFound", "zdrv1/nope"),
            ("cannot open 'zdrv1/nope@s': dataset does not exist\n", "zdrv1/nope@s", "DatasetNotFound", "zdrv1/nope@s"),
            // zfs snapshot zdrv1/nope@s names the dataset
            ("cannot open 'zdrv1/nope': dataset does not exist\n", "zdrv1/nope@s", "DatasetNotFound", "zdrv1/nope"),
            // zfs-fuse send of a missing snapshot
            ("WARNING: could not send zdrv1@nope: does not exist\n", "zdrv1@nope", "DatasetNotFound", "zdrv1@nope"),
            // zfs-fuse send -i with a missing source
            (
                "warning: cannot send 'zdrv1/big@s': incremental source (@nope) does not exist\n",
                "zdrv1/big@s",
                "DatasetNotFound",
                "zdrv1/big@nope",
            ),
            (
                "warning: cannot send 'tank/c@s': incremental source (tank/o@final) does not exist\n",
                "tank/c@s",
                "DatasetNotFound",
                "tank/o@final",
            ),
            // OpenZFS destroy of a missing snapshot
            (
                "could not find any snapshots to destroy; check snapshot names.\n",
                "tank/a@nope",
                "DatasetNotFound",
                "tank/a@nope",
            ),
            // rename to a missing parent (zfs-fuse)
            ("cannot create 'zdrv1/no/b': parent does not exist\n", "zdrv1/a", "DatasetNotFound", "zdrv1/no/b"),
        ];
        for (stderr, subject, code, name) in cases {
            let e = cls(stderr, subject);
            assert_eq!(e.code(), *code, "{stderr}");
            match e {
                ZfsError::PoolNotFound { pool } => assert_eq!(pool, *name),
                ZfsError::DatasetNotFound { name: n } => assert_eq!(n, *name),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn classifies_exists() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "cannot create 'zdrv1/a': dataset already exists\n",
                "zdrv1/a",
                "zdrv1/a",
            ),
            (
                "cannot create snapshot 'zdrv1/a@s1': dataset already exists\n",
                "zdrv1/a@s1",
                "zdrv1/a@s1",
            ),
        ];
        for (stderr, subject, name) in cases {
            assert!(
                matches!(cls(stderr, subject), ZfsError::DatasetExists { name: n } if n == *name)
            );
        }
    }

    #[test]
    fn classifies_receive_failures() {
        let rc =
            |stderr: &str, target: &str| classify_receive("zfs receive", Some(1), stderr, target);
        // zfs-fuse and OpenZFS: full stream into an existing dataset.
        let e = rc(
            "cannot receive new filesystem stream: destination 'zdrv1/b' exists\nmust specify -F to overwrite it\n",
            "zdrv1/b",
        );
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == "zdrv1/b"),
            "{e:?}"
        );
        let e = rc(
            "cannot receive new filesystem stream: destination 'zdrv1/b' exists\nmust specify -F to overwrite it\n",
            "zdrv1/b@x",
        );
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == "zdrv1/b"),
            "{e:?}"
        );
        // ... with -F while it has snapshots.
        let e = rc(
            "cannot receive new filesystem stream: destination has snapshots (eg. zdrv1/b@s1)\nmust destroy them to overwrite it\n",
            "zdrv1/b",
        );
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == "zdrv1/b"),
            "{e:?}"
        );
        // zfs-fuse: parent missing names the target, then the generic line.
        let e = rc(
            "cannot open 'zdrv1/nope/x': dataset does not exist\ncannot receive new filesystem stream: dataset does not exist\n",
            "zdrv1/nope/x",
        );
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "zdrv1/nope"),
            "{e:?}"
        );
        // incremental stream into a missing target
        let e = rc(
            "cannot receive incremental stream: destination 'zdrv2/inc' does not exist\n",
            "zdrv2/inc",
        );
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "zdrv2/inc"),
            "{e:?}"
        );
        // everything about the stream itself is a command failure
        for stderr in [
            "cannot receive: invalid stream (bad magic number)\n",
            "cannot receive: failed to read from stream\n",
            "cannot receive new filesystem stream: invalid backup stream\n",
            "cannot receive incremental stream: most recent snapshot of zdrv1/b does not\nmatch incremental source\n",
            "cannot receive: local origin for clone zdrv2/rc@x does not exist\n",
            // OpenZFS 2.x, resumable receive interrupted
            "cannot receive new filesystem stream: checksum mismatch or incomplete stream.\n\
             Partially received snapshot is saved.\n\
             A resuming stream can be generated on the sending system by running:\n    zfs send -t 1-abc\n",
            "cannot receive: invalid option 's'\n",
        ] {
            let e = rc(stderr, "zdrv1/t");
            assert_eq!(e.code(), "ZfsCommandFailed", "{stderr}");
            let ZfsError::CommandFailed { stderr: kept, status, .. } = &e else { unreachable!() };
            assert_eq!(kept.as_str(), stderr.trim_end());
            assert_eq!(*status, Some(1));
        }
    }

    /// Texts recorded from OpenZFS 2.3.2 (see the module docs).
    #[test]
    fn classifies_openzfs_2_3_texts() {
        let rc =
            |stderr: &str, target: &str| classify_receive("zfs receive", Some(1), stderr, target);
        let e = rc(
            "cannot open 'tank/no/such': dataset does not exist\n\
             cannot receive new filesystem stream: unable to restore to destination\n",
            "tank/no/such/x",
        );
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "tank/no/such"),
            "{e:?}"
        );
        // Refined into PoolNotFound by asking zpool.
        let e = rc(
            "cannot open 'nopool': dataset does not exist\n\
             cannot receive new filesystem stream: unable to restore to destination\n",
            "nopool/x",
        );
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "nopool"),
            "{e:?}"
        );
        let e = cls(
            "cannot open 'tank/src@nope': dataset does not exist\n",
            "tank/src@s2",
        );
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "tank/src@nope"),
            "{e:?}"
        );
        let e = exists_means_target(
            cls(
                "cannot rename 'tank/src@s1': dataset already exists\n",
                "tank/src@s1",
            ),
            "tank/src@s1",
            "tank/src@s2",
        );
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == "tank/src@s2"),
            "{e:?}"
        );
        let busy = cls(
            "cannot unmount '/tank/busy': pool or dataset is busy\n",
            "tank/busy",
        );
        assert!(busy.is_busy(), "{busy:?}");
        for stderr in [
            "cannot receive new filesystem stream: incomplete stream\n",
            "'tank/part' does not have any resumable receive state to abort\n",
            "cannot resume send: resume token is corrupt (incorrect checksum)\n",
            "cannot mount 'tank/busy': filesystem already mounted\n",
        ] {
            let e = rc(stderr, "tank/part");
            assert_eq!(e.code(), "ZfsCommandFailed", "{stderr}");
            assert!(!e.is_busy());
        }
    }

    #[test]
    fn classifies_dependent_clones() {
        let e = cls(
            "cannot destroy 'zdrv1/a@s2': snapshot has dependent clones\n\
             use '-R' to destroy the following datasets:\nzdrv1/k1\nzdrv1/k2\n",
            "zdrv1/a@s2",
        );
        match &e {
            ZfsError::HasDependentClones { name, clones } => {
                assert_eq!(name, "zdrv1/a@s2");
                assert_eq!(clones, &["zdrv1/k1", "zdrv1/k2"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(e.code(), "ImageHasDependentClones");
        let e = cls(
            "cannot destroy 'zdrv1/a': filesystem has dependent clones\n\
             use '-R' to destroy the following datasets:\nzdrv1/k1\n",
            "zdrv1/a",
        );
        assert!(
            matches!(&e, ZfsError::HasDependentClones { name, clones } if name == "zdrv1/a" && clones.len() == 1)
        );
        // OpenZFS batched snapshot destroy
        let e = cls(
            "cannot destroy snapshot tank/a@s: snapshot is cloned\n",
            "tank/a@s",
        );
        assert!(
            matches!(&e, ZfsError::HasDependentClones { name, clones } if name == "tank/a@s" && clones.is_empty()),
            "{e:?}"
        );
    }

    #[test]
    fn usage_errors_are_command_failures_without_the_usage_text() {
        let stderr = "invalid option 's'\nusage:\n\treceive [-vnF] <filesystem|volume|snapshot>\n\
                      \treceive [-vnF] -d <filesystem>\n\nFor the property list, run: zfs set|get\n";
        let e = cls(stderr, "t/x");
        let ZfsError::CommandFailed { stderr: kept, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(kept, "invalid option 's'");
        let e = cls(
            "bad property list: invalid property 'clones'\nusage:\n\tget [-rHp] ...\n\n\tPROPERTY ...\n",
            "t/x",
        );
        assert!(
            e.to_string()
                .contains("bad property list: invalid property 'clones'"),
            "{e}"
        );
        assert!(!e.to_string().contains("usage"), "{e}");
    }

    #[test]
    fn busy_is_detected() {
        assert!(cls("cannot destroy 'zdrv1/t4': dataset is busy\n", "zdrv1/t4").is_busy());
        assert!(cls("cannot rename 'zdrv1/t6': dataset is busy\n", "zdrv1/t6").is_busy());
        assert!(cls(
            "cannot destroy 'tank/x': pool or dataset is busy\n",
            "tank/x"
        )
        .is_busy());
        assert!(!cls("cannot destroy 'tank/x': permission denied\n", "tank/x").is_busy());
    }

    #[test]
    fn codes_are_stable() {
        let io = io::Error::other("x");
        let table: Vec<(ZfsError, &str)> = vec![
            (
                ZfsError::NotAvailable { detail: "x".into() },
                "ZfsNotAvailable",
            ),
            (ZfsError::PoolNotFound { pool: "p".into() }, "PoolNotFound"),
            (
                ZfsError::DatasetNotFound { name: "p/d".into() },
                "DatasetNotFound",
            ),
            (
                ZfsError::DatasetExists { name: "p/d".into() },
                "DatasetExists",
            ),
            (
                ZfsError::HasDependentClones {
                    name: "p/d@s".into(),
                    clones: vec![],
                },
                "ImageHasDependentClones",
            ),
            (invalid("x y", "bad"), "InvalidParameter"),
            (
                ZfsError::CommandFailed {
                    argv: "zfs x".into(),
                    status: Some(1),
                    stderr: String::new(),
                },
                "ZfsCommandFailed",
            ),
            (
                ZfsError::Cancelled {
                    argv: "zfs receive p/d".into(),
                },
                "Cancelled",
            ),
            (
                ZfsError::OutOfSpace {
                    name: "p/d@s".into(),
                    stderr: "out of space".into(),
                },
                "InsufficientStorage",
            ),
            (ZfsError::Io(io), "InternalError"),
        ];
        for (e, code) in table {
            assert_eq!(e.code(), code, "{e:?}");
        }
    }

    #[test]
    fn display_names_the_command_and_dataset() {
        let e = ZfsError::CommandFailed {
            argv: display_argv(Path::new("zfs"), &["receive", "-u", "zones/a b"]),
            status: Some(1),
            stderr: "cannot receive: invalid stream (bad magic number)".into(),
        };
        assert_eq!(
            e.to_string(),
            "`zfs receive -u 'zones/a b'` failed (exit status 1): cannot receive: invalid stream (bad magic number)"
        );
        let e = ZfsError::HasDependentClones {
            name: "zones/img@final".into(),
            clones: vec!["zones/vm1".into(), "zones/vm2".into()],
        };
        assert_eq!(
            e.to_string(),
            "zones/img@final has dependent clones: zones/vm1, zones/vm2"
        );
        assert_eq!(
            ZfsError::DatasetNotFound {
                name: "zones/x".into()
            }
            .to_string(),
            "dataset zones/x does not exist"
        );
        assert_eq!(
            display_argv(Path::new("/sbin/zfs"), &["set", "a:b=it's"]),
            "/sbin/zfs set 'a:b=it'\\''s'"
        );
    }

    // ---- fake binaries: detection ----------------------------------------------

    /// zfs-fuse's answers to the probes, as recorded.
    const ZFS_FUSE_PROBES: &str = r#"
case "$CMD" in
"zpool list -H -o name") echo zdrv1 ;;
"zfs receive -s") printf "invalid option 's'\nusage:\n\treceive [-vnF] <filesystem|volume|snapshot>\n" >&2; exit 2 ;;
"zfs receive -u") printf "missing snapshot argument\nusage:\n\treceive [-vnF] <filesystem|volume|snapshot>\n" >&2; exit 2 ;;
"zfs send -"[cLew]) printf "invalid option '%s'\nusage:\n\tsend [-RDp] [-[iI] snapshot] <snapshot>\n" "${CMD#zfs send -}" >&2; exit 2 ;;
"zfs list -H -p -o name -d 0") printf "invalid option 'p'\nusage:\n\tlist [-rH][-d max] ...\n" >&2; exit 2 ;;
"zfs get") printf "missing property argument\nusage:\n\tget [-rHp] ...\n\n\tPROPERTY       EDIT  INHERIT   VALUES\n\n\tavailable        NO       NO   <size>\n\torigin           NO       NO   <snapshot>\n" >&2; exit 2 ;;
esac
"#;

    /// OpenZFS 2.x: every flag known, `clones` in the property table.
    const OPENZFS_PROBES: &str = r#"
case "$CMD" in
"zpool list -H -o name") echo tank ;;
"zfs receive -"?|"zfs send -"?) printf "missing snapshot argument\nusage:\n" >&2; exit 2 ;;
"zfs list -H -p -o name -d 0") echo tank ;;
"zfs get") printf "missing property argument\nusage:\n\n\tPROPERTY       EDIT  INHERIT   VALUES\n\n\tclones           NO       NO   <dataset>[,...]\n" >&2; exit 2 ;;
esac
"#;

    #[test]
    fn detects_zfs_fuse_features_once() {
        let fake = Fake::new(ZFS_FUSE_PROBES);
        assert_eq!(fake.zfs.available().unwrap(), ZFS_FUSE);
        let calls = fake.log();
        assert_eq!(
            calls,
            [
                "zpool list -H -o name",
                "zfs receive -s",
                "zfs receive -u",
                "zfs send -c",
                "zfs send -L",
                "zfs send -e",
                "zfs send -w",
                "zfs list -H -p -o name -d 0",
                "zfs get",
            ]
        );
        assert_eq!(fake.zfs.available().unwrap(), ZFS_FUSE);
        assert_eq!(fake.log().len(), calls.len(), "features are detected once");
        // resumable receive needs the CLI flag first; no zpool get is run
        assert!(!fake.zfs.supports_resumable_receive("zdrv1").unwrap());
        assert_eq!(fake.log().len(), calls.len());
    }

    #[test]
    fn detects_openzfs_features_and_pool_resume() {
        let fake = Fake::new(&format!(
            "{OPENZFS_PROBES}\ncase \"$CMD\" in\n\"zpool get -H -o value feature@extensible_dataset tank\") echo active ;;\n\
             \"zpool get -H -o value feature@extensible_dataset old\") echo disabled ;;\nesac"
        ));
        assert_eq!(fake.zfs.available().unwrap(), ALL);
        assert!(fake.zfs.supports_resumable_receive("tank").unwrap());
        assert!(!fake.zfs.supports_resumable_receive("old").unwrap());
    }

    #[test]
    fn unreachable_daemon_is_not_available() {
        let fake = Fake::new(&format!(
            "printf '{}' >&2; exit 1",
            ZFS_FUSE_DOWN.replace('\n', "\\n")
        ));
        let e = fake.zfs.available().unwrap_err();
        assert_eq!(e.code(), "ZfsNotAvailable", "{e:?}");
        assert!(e.to_string().contains("zfs-fuse daemon is running"), "{e}");
        let e = fake.zfs.pool_exists("zdrv1").unwrap_err();
        assert_eq!(e.code(), "ZfsNotAvailable");
    }

    #[test]
    fn missing_binary_is_not_available() {
        let dir = tempfile::tempdir().unwrap();
        let z = Zfs::new(dir.path().join("no-zfs"), dir.path().join("no-zpool"));
        let e = z.available().unwrap_err();
        assert!(
            matches!(&e, ZfsError::NotAvailable { detail } if detail.contains("no-zpool")),
            "{e:?}"
        );
        let e = z.snapshot("tank/a@s").unwrap_err();
        assert_eq!(e.code(), "ZfsNotAvailable");
    }

    // ---- fake binaries: argv and parsing ------------------------------------------

    #[test]
    fn list_datasets_uses_list_p_when_available() {
        let fake = Fake::new(
            r#"printf 'tank\tfilesystem\t-\t1000\t100\t1700000000\ntank/img\tfilesystem\t-\t500\t400\t1700000001\ntank/vm\tfilesystem\ttank/img@final\t20\t410\t1700000002\ntank/vol\tvolume\t-\t7\t7\t1700000003\n'"#,
        )
        .with(ALL);
        let rows = fake.zfs.list_datasets("tank", None).unwrap();
        assert_eq!(
            fake.log(),
            ["zfs list -H -p -o name,type,origin,used,referenced,creation -t filesystem,volume -r tank"]
        );
        assert_eq!(rows.len(), 4);
        assert_eq!(
            rows[2],
            DatasetInfo {
                name: "tank/vm".into(),
                kind: DatasetType::Filesystem,
                origin: Some("tank/img@final".into()),
                used: 20,
                referenced: 410,
                creation: 1_700_000_002,
            }
        );
        assert_eq!(rows[0].origin, None);
        assert_eq!(rows[3].kind, DatasetType::Volume);
        fake.zfs.list_datasets("tank/img", Some(1)).unwrap();
        assert_eq!(
            fake.log()[1],
            "zfs list -H -p -o name,type,origin,used,referenced,creation -t filesystem,volume -d 1 tank/img"
        );
    }

    /// What zfs-fuse prints for `zfs get -H -p -o name,property,value -r ...`.
    const GET_OUTPUT: &str = r#"printf 'zdrv1\ttype\tfilesystem\nzdrv1\torigin\t-\nzdrv1\tused\t647168\nzdrv1\treferenced\t122880\nzdrv1\tcreation\t1795529900\nzdrv1/a\ttype\tfilesystem\nzdrv1/a\torigin\t-\nzdrv1/a\tused\t204800\nzdrv1/a\treferenced\t118784\nzdrv1/a\tcreation\t1795529950\nzdrv1/a@s1\ttype\tsnapshot\nzdrv1/a@s1\torigin\t-\nzdrv1/a@s1\tused\t86016\nzdrv1/a@s1\treferenced\t118784\nzdrv1/a@s1\tcreation\t1795529966\nzdrv1/a@s2\ttype\tsnapshot\nzdrv1/a@s2\torigin\t-\nzdrv1/a@s2\tused\t0\nzdrv1/a@s2\treferenced\t118784\nzdrv1/a@s2\tcreation\t1795529970\nzdrv1/k1\ttype\tfilesystem\nzdrv1/k1\torigin\tzdrv1/a@s2\nzdrv1/k1\tused\t0\nzdrv1/k1\treferenced\t118784\nzdrv1/k1\tcreation\t1795529980\n'"#;

    #[test]
    fn list_falls_back_to_zfs_get_without_list_p() {
        let fake = Fake::new(GET_OUTPUT).with(ZFS_FUSE);
        let rows = fake.zfs.list_datasets("zdrv1", None).unwrap();
        assert_eq!(
            fake.log(),
            ["zfs get -H -p -o name,property,value -r type,origin,used,referenced,creation zdrv1"]
        );
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["zdrv1", "zdrv1/a", "zdrv1/k1"]);
        assert_eq!(rows[2].origin.as_deref(), Some("zdrv1/a@s2"));
        assert_eq!(rows[1].used, 204_800);

        let snaps = fake.zfs.list_snapshots("zdrv1/a").unwrap();
        assert_eq!(
            fake.log()[1],
            "zfs get -H -p -o name,property,value -d 1 type,origin,used,referenced,creation zdrv1/a"
        );
        let names: Vec<&str> = snaps.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["zdrv1/a@s1", "zdrv1/a@s2"]);
        assert_eq!(snaps[0].creation, 1_795_529_966);
    }

    #[test]
    fn list_snapshots_with_list_p() {
        let fake =
            Fake::new(r#"printf 'tank/a@final\tsnapshot\t-\t0\t4096\t1700000000\n'"#).with(ALL);
        let snaps = fake.zfs.list_snapshots("tank/a").unwrap();
        assert_eq!(
            fake.log(),
            ["zfs list -H -p -o name,type,origin,used,referenced,creation -t snapshot -d 1 tank/a"]
        );
        assert_eq!(snaps.len(), 1);
        assert_eq!(snaps[0].kind, DatasetType::Snapshot);
    }

    #[test]
    fn garbage_listing_is_a_command_failure() {
        let fake = Fake::new("echo 'not a listing'").with(ALL);
        let e = fake.zfs.list_datasets("tank", None).unwrap_err();
        assert_eq!(e.code(), "ZfsCommandFailed");
        assert!(e.to_string().contains("unexpected output"), "{e}");
    }

    #[test]
    fn simple_commands_build_the_expected_argv() {
        let fake = Fake::new(r#"case "$CMD" in "zfs get"*) echo '-' ;; esac"#).with(ALL);
        let z = &fake.zfs;
        z.snapshot("tank/a@final").unwrap();
        z.create_filesystem("tank/a").unwrap();
        z.clone_snapshot("tank/a@final", "tank/vm").unwrap();
        z.rename("tank/a-partial", "tank/a").unwrap();
        z.rename("tank/a@s1", "tank/a@final").unwrap();
        z.destroy("tank/a", true).unwrap();
        z.destroy("tank/a@final", false).unwrap();
        assert_eq!(z.get_property("tank/a", "imgadm:ignore").unwrap(), None);
        z.set_property("tank/a", "imgadm:ignore", "true").unwrap();
        z.abort_resumable_receive("tank/a").unwrap();
        assert!(z.pool_exists("tank").unwrap());
        assert_eq!(
            fake.log(),
            [
                "zfs snapshot tank/a@final",
                "zfs create tank/a",
                "zfs clone tank/a@final tank/vm",
                "zfs rename tank/a-partial tank/a",
                "zfs rename tank/a@s1 tank/a@final",
                "zfs destroy -r tank/a",
                "zfs destroy tank/a@final",
                "zfs get -H -p -o value imgadm:ignore tank/a",
                "zfs set imgadm:ignore=true tank/a",
                "zfs receive -A tank/a",
                "zpool list -H -o name tank",
            ]
        );
        assert!(z.rename("tank/a@s1", "tank/b@s1").is_err());
        assert!(z.rename("tank/a@s1", "tank/b").is_err());
        assert!(z.create_filesystem("tank").is_err());
        assert_eq!(fake.log().len(), 11);
    }

    #[test]
    fn get_property_returns_the_value() {
        let fake = Fake::new("printf 'tank/img@final\\n'").with(ALL);
        assert_eq!(
            fake.zfs
                .get_property("tank/vm", "origin")
                .unwrap()
                .as_deref(),
            Some("tank/img@final")
        );
    }

    #[test]
    fn missing_dataset_in_missing_pool_becomes_pool_not_found() {
        let fake = Fake::new(
            r#"case "$CMD" in
"zpool list -H -o name nopool") echo "cannot open 'nopool': no such pool" >&2; exit 1 ;;
"zpool list -H -o name tank") echo tank ;;
"zfs "*) echo "cannot open '${CMD##* }': dataset does not exist" >&2; exit 1 ;;
esac"#,
        )
        .with(ZFS_FUSE);
        let e = fake.zfs.snapshot("nopool/x@s").unwrap_err();
        assert!(
            matches!(&e, ZfsError::PoolNotFound { pool } if pool == "nopool"),
            "{e:?}"
        );
        let e = fake.zfs.get_property("tank/x", "used").unwrap_err();
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "tank/x"),
            "{e:?}"
        );
        assert!(!fake.zfs.pool_exists("nopool").unwrap());
        assert!(!fake.zfs.exists("tank/x").unwrap());
        assert!(!fake.zfs.exists("nopool/x").unwrap());
    }

    #[test]
    fn create_without_parent_names_the_parent() {
        let fake = Fake::new(
            r#"case "$CMD" in
"zpool "*) echo tank ;;
*) echo "cannot create 'tank/a/b': parent does not exist" >&2; exit 1 ;;
esac"#,
        )
        .with(ALL);
        let e = fake.zfs.create_filesystem("tank/a/b").unwrap_err();
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "tank/a"),
            "{e:?}"
        );
    }

    #[test]
    fn rename_onto_an_existing_name_reports_the_target() {
        let fake =
            Fake::new(r#"echo "cannot rename 'zdrv1/a@s1': dataset already exists" >&2; exit 1"#)
                .with(ALL);
        let e = fake.zfs.rename("zdrv1/a@s1", "zdrv1/a@s2").unwrap_err();
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == "zdrv1/a@s2"),
            "{e:?}"
        );
    }

    #[test]
    fn clones_of_uses_the_clones_property() {
        let fake = Fake::new("echo 'tank/vm1,tank/vm2'").with(ALL);
        assert_eq!(
            fake.zfs.clones_of("tank/img@final").unwrap(),
            ["tank/vm1", "tank/vm2"]
        );
        assert_eq!(fake.log(), ["zfs get -H -p -o value clones tank/img@final"]);
        let fake = Fake::new("echo ''").with(ALL);
        assert!(fake.zfs.clones_of("tank/img@final").unwrap().is_empty());
    }

    #[test]
    fn clones_of_scans_origins_without_the_property() {
        let fake = Fake::new(&format!(
            "case \"$CMD\" in \"zfs get -H -o name type zdrv1/a@s2\") echo zdrv1/a@s2 ;; *) {GET_OUTPUT} ;; esac"
        ))
        .with(ZFS_FUSE);
        assert_eq!(fake.zfs.clones_of("zdrv1/a@s2").unwrap(), ["zdrv1/k1"]);
        assert!(fake.zfs.clones_of("zdrv1/a@s1").unwrap().is_empty());
        assert_eq!(
            fake.log()[..2],
            [
                "zfs get -H -o name type zdrv1/a@s2",
                "zfs get -H -p -o name,property,value -r type,origin,used,referenced,creation zdrv1",
            ]
        );
    }

    #[test]
    fn destroy_reports_dependent_clones() {
        let fake = Fake::new(
            r#"printf "cannot destroy 'zdrv1/a@s2': snapshot has dependent clones\nuse '-R' to destroy the following datasets:\nzdrv1/k1\nzdrv1/k2\n" >&2; exit 1"#,
        )
        .with(ZFS_FUSE);
        let e = fake.zfs.destroy("zdrv1/a@s2", false).unwrap_err();
        assert!(
            matches!(&e, ZfsError::HasDependentClones { name, clones } if name == "zdrv1/a@s2" && clones == &["zdrv1/k1", "zdrv1/k2"]),
            "{e:?}"
        );
        assert_eq!(fake.log().len(), 1, "not retried");
    }

    #[test]
    fn destroy_looks_up_clones_openzfs_did_not_name() {
        let fake = Fake::new(
            r#"case "$CMD" in
"zfs destroy"*) echo "cannot destroy snapshot tank/a@s: snapshot is cloned" >&2; exit 1 ;;
"zfs get -H -p -o value clones tank/a@s") echo tank/vm ;;
esac"#,
        )
        .with(ALL);
        let e = fake.zfs.destroy("tank/a@s", false).unwrap_err();
        assert!(
            matches!(&e, ZfsError::HasDependentClones { clones, .. } if clones == &["tank/vm"]),
            "{e:?}"
        );
    }

    #[test]
    fn destroy_retries_while_busy() {
        // busy twice (zfs-fuse's lazy unmount), then gone
        let fake = Fake::new(
            r#"n=$(cat "$D/n" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$D/n"
if [ $n -lt 3 ]; then echo "cannot destroy 'zdrv1/t4': dataset is busy" >&2; exit 1; fi"#,
        )
        .with(ZFS_FUSE);
        fake.zfs.destroy("zdrv1/t4", false).unwrap();
        assert_eq!(fake.log().len(), 3);
    }

    #[test]
    fn destroy_recursive_retries_once_per_level() {
        // zfs-fuse: `destroy -r` of a mounted tree fails one level at a time
        let fake = Fake::new(
            r#"n=$(cat "$D/n" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$D/n"
case $n in
1) echo "cannot destroy 'zdrv1/p/q/r': dataset is busy" >&2; exit 1 ;;
2) echo "cannot destroy 'zdrv1/p/q': dataset is busy" >&2; exit 1 ;;
3) echo "cannot destroy 'zdrv1/p': dataset is busy" >&2; exit 1 ;;
esac"#,
        )
        .with(ZFS_FUSE);
        fake.zfs.destroy("zdrv1/p", true).unwrap();
        assert_eq!(fake.log(), vec!["zfs destroy -r zdrv1/p"; 4]);
    }

    #[test]
    fn destroy_gives_up_when_busy_persists() {
        let fake =
            Fake::new(r#"echo "cannot destroy 'tank/z': dataset is busy" >&2; exit 1"#).with(ALL);
        let e = fake.zfs.destroy("tank/z", false).unwrap_err();
        assert!(e.is_busy(), "{e:?}");
        assert_eq!(e.code(), "ZfsCommandFailed");
        assert_eq!(fake.log().len(), 3);
    }

    #[test]
    fn rename_of_a_busy_mounted_filesystem_unmounts_it() {
        let fake = Fake::new(
            r#"case "$CMD" in
"zfs rename zdrv1/a zdrv1/b") [ -e "$D/unmounted" ] && exit 0; echo "cannot rename 'zdrv1/a': dataset is busy" >&2; exit 1 ;;
"zfs get -H -p -o value mounted zdrv1/a") echo yes ;;
"zfs unmount zdrv1/a") touch "$D/unmounted" ;;
esac"#,
        )
        .with(ZFS_FUSE);
        fake.zfs.rename("zdrv1/a", "zdrv1/b").unwrap();
        assert_eq!(
            fake.log(),
            [
                "zfs rename zdrv1/a zdrv1/b",
                "zfs get -H -p -o value mounted zdrv1/a",
                "zfs unmount zdrv1/a",
                "zfs rename zdrv1/a zdrv1/b",
                "zfs mount zdrv1/b",
            ]
        );
    }

    #[test]
    fn rename_of_a_busy_unmounted_filesystem_just_fails() {
        let fake = Fake::new(
            r#"case "$CMD" in
"zfs rename"*) echo "cannot rename 'tank/a': dataset is busy" >&2; exit 1 ;;
"zfs get"*) echo no ;;
esac"#,
        )
        .with(ALL);
        assert!(fake.zfs.rename("tank/a", "tank/b").unwrap_err().is_busy());
        assert_eq!(fake.log().len(), 2);
    }

    // ---- fake binaries: receive / send --------------------------------------------

    #[test]
    fn receive_argv_leaves_out_unsupported_flags() {
        let opts = ReceiveOpts {
            force: true,
            no_mount: true,
            resumable: true,
        };
        let fake = Fake::new("cat >/dev/null").with(ALL);
        fake.zfs
            .receive("tank/a-partial", opts)
            .unwrap()
            .finish()
            .unwrap();
        let fake2 = Fake::new("cat >/dev/null").with(NONE);
        fake2
            .zfs
            .receive("tank/a-partial", opts)
            .unwrap()
            .finish()
            .unwrap();
        let fake3 = Fake::new("cat >/dev/null").with(ZFS_FUSE);
        fake3
            .zfs
            .receive("tank/a@final", ReceiveOpts::default())
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(fake.log(), ["zfs receive -F -u -s tank/a-partial"]);
        assert_eq!(fake2.log(), ["zfs receive -F tank/a-partial"]);
        assert_eq!(fake3.log(), ["zfs receive tank/a@final"]);
    }

    #[test]
    fn receive_pipes_the_stream() {
        let fake = Fake::new(r#"exec cat > "$D/stream""#).with(ZFS_FUSE);
        let mut child = fake.zfs.receive("tank/a", ReceiveOpts::default()).unwrap();
        assert_eq!(child.target(), "tank/a");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        child.write_all(&data).unwrap();
        child.finish().unwrap();
        assert_eq!(fake.file("stream"), data);
    }

    #[test]
    fn receive_from_a_pump_thread() {
        let fake = Fake::new(r#"exec cat > "$D/stream""#).with(ZFS_FUSE);
        let mut child = fake.zfs.receive("tank/a", ReceiveOpts::default()).unwrap();
        let mut w = child.take_writer().unwrap();
        assert!(child.take_writer().is_none());
        let pump = thread::spawn(move || {
            for _ in 0..64 {
                w.write_all(&[7u8; 4096]).unwrap();
            }
        });
        pump.join().unwrap();
        child.finish().unwrap();
        assert_eq!(fake.file("stream").len(), 64 * 4096);
    }

    #[test]
    fn receive_failure_is_classified_after_the_stream() {
        let fake = Fake::new(
            r#"cat >/dev/null; printf "cannot receive new filesystem stream: destination 'tank/a' exists\nmust specify -F to overwrite it\n" >&2; exit 1"#,
        )
        .with(ALL);
        let mut child = fake.zfs.receive("tank/a", ReceiveOpts::default()).unwrap();
        child.write_all(b"stream").unwrap();
        let e = child.finish().unwrap_err();
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == "tank/a"),
            "{e:?}"
        );
    }

    #[test]
    fn receive_that_stops_reading_still_reports_its_error() {
        // zfs gives up at once; the writer gets EPIPE, finish() the reason
        let fake =
            Fake::new(r#"echo "cannot receive: invalid stream (bad magic number)" >&2; exit 1"#)
                .with(ALL);
        let mut child = fake.zfs.receive("tank/a", ReceiveOpts::default()).unwrap();
        thread::sleep(Duration::from_millis(100));
        let write = child.write_all(&vec![0u8; 1 << 20]);
        assert!(write.is_err());
        let e = child.finish().unwrap_err();
        assert!(
            e.to_string().contains("invalid stream (bad magic number)"),
            "{e}"
        );
    }

    #[test]
    fn chatty_stderr_does_not_deadlock() {
        let fake = Fake::new(
            r#"head -c 1048576 /dev/zero | tr '\0' x >&2; cat > "$D/stream"; echo done >&2; exit 1"#,
        )
        .with(ALL);
        let zfs = fake.zfs.clone();
        let e = within_30s(move || {
            let mut child = zfs.receive("tank/a", ReceiveOpts::default()).unwrap();
            child.write_all(&vec![1u8; 1 << 20]).unwrap();
            child.finish().unwrap_err()
        });
        let ZfsError::CommandFailed { stderr, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(stderr.len() <= 4096 + 6, "kept {} bytes", stderr.len());
        assert_eq!(fake.file("stream").len(), 1 << 20);
    }

    fn pid_is_gone(pid: u32) -> bool {
        use nix::sys::signal::kill;
        use nix::unistd::Pid;
        kill(Pid::from_raw(pid as i32), None).is_err()
    }

    #[test]
    fn cancelled_receive_is_killed_and_refuses_writes() {
        let fake = Fake::new("exec sleep 30").with(ALL);
        let mut child = fake.zfs.receive("tank/a", ReceiveOpts::default()).unwrap();
        let pid = child.proc_.shared.lock().child.id();
        let mut writer = child.take_writer().unwrap();
        writer.write_all(b"some data").unwrap();
        let canceller = child.canceller();
        let c2 = canceller.clone();
        assert!(!c2.is_cancelled());
        let started = Instant::now();
        thread::spawn(move || c2.cancel()).join().unwrap();
        assert!(canceller.is_cancelled());
        let err = writer.write_all(b"more").unwrap_err();
        assert!(err.to_string().contains("cancelled"), "{err}");
        drop(writer);
        let e = child.finish().unwrap_err();
        assert!(
            matches!(&e, ZfsError::Cancelled { argv } if argv.ends_with("receive tank/a")),
            "{e:?}"
        );
        assert_eq!(e.code(), "Cancelled");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(pid_is_gone(pid));
        canceller.cancel(); // after reaping: a no-op, must not signal anything
    }

    #[test]
    fn dropping_an_unfinished_child_kills_and_reaps_it() {
        let fake = Fake::new("exec sleep 30").with(ALL);
        let child = fake.zfs.receive("tank/a", ReceiveOpts::default()).unwrap();
        let pid = child.proc_.shared.lock().child.id();
        let canceller = child.canceller();
        drop(child);
        assert!(pid_is_gone(pid));
        canceller.cancel();

        let send = fake
            .zfs
            .send("tank/a@s", None, SendOpts::default())
            .unwrap();
        let pid = send.proc_.shared.lock().child.id();
        drop(send);
        assert!(pid_is_gone(pid));
    }

    #[test]
    fn send_argv_and_stream() {
        let fake = Fake::new("printf 'STREAM'").with(ALL);
        let opts = SendOpts {
            compressed: true,
            large_blocks: true,
            embedded: true,
            properties: true,
        };
        let mut child = fake
            .zfs
            .send("tank/vm@final", Some("tank/img@final"), opts)
            .unwrap();
        let mut out = String::new();
        child.read_to_string(&mut out).unwrap();
        child.finish().unwrap();
        assert_eq!(out, "STREAM");

        let fake2 = Fake::new("printf 'STREAM'").with(ZFS_FUSE);
        let mut child = fake2.zfs.send("tank/a@s2", Some("@s1"), opts).unwrap();
        let mut r = child.take_reader().unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        drop(r);
        child.finish().unwrap();
        let mut child = fake2
            .zfs
            .send("tank/a@s1", None, SendOpts::default())
            .unwrap();
        io::copy(&mut child, &mut io::sink()).unwrap();
        child.finish().unwrap();
        assert_eq!(
            fake.log(),
            ["zfs send -c -L -e -p -i tank/img@final tank/vm@final"]
        );
        assert_eq!(
            fake2.log(),
            ["zfs send -p -i @s1 tank/a@s2", "zfs send tank/a@s1"]
        );
    }

    const TOKEN: &str = "1-e604ea4bf-e0-789c63a2";

    #[test]
    fn resume_token_reads_the_property() {
        let fake = Fake::new(
            r#"case "$CMD" in
*" tank/partial") echo '1-e604ea4bf-e0-789c63a2' ;;
*" tank/done") echo '-' ;;
*" tank/gone") echo "cannot open 'tank/gone': dataset does not exist" >&2; exit 1 ;;
"zpool list -H -o name tank") echo tank ;;
esac"#,
        )
        .with(ALL);
        let z = &fake.zfs;
        assert_eq!(
            z.resume_token("tank/partial").unwrap().as_deref(),
            Some(TOKEN)
        );
        assert_eq!(z.resume_token("tank/done").unwrap(), None);
        let e = z.resume_token("tank/gone").unwrap_err();
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "tank/gone"),
            "{e:?}"
        );
        assert_eq!(
            fake.log()[..2],
            [
                "zfs get -H -p -o value receive_resume_token tank/partial",
                "zfs get -H -p -o value receive_resume_token tank/done",
            ]
        );
        assert!(
            z.resume_token("tank/a@s").is_err(),
            "snapshots have no token"
        );
    }

    /// zfs-fuse rejects the property before it looks at the dataset.
    #[test]
    fn resume_token_is_none_where_zfs_has_no_such_property() {
        let fake = Fake::new(
            r#"case "$CMD" in
"zfs get -H -o name type zdrv1/a") ;;
"zfs get -H -o name type "*) echo "cannot open 'zdrv1/gone': dataset does not exist" >&2; exit 1 ;;
"zfs get "*) printf "bad property list: invalid property 'receive_resume_token'\nusage:\n\tget [-rHp] ...\n" >&2; exit 2 ;;
"zpool list -H -o name zdrv1") echo zdrv1 ;;
esac"#,
        )
        .with(ZFS_FUSE);
        let z = &fake.zfs;
        assert_eq!(z.resume_token("zdrv1/a").unwrap(), None);
        let e = z.resume_token("zdrv1/gone").unwrap_err();
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "zdrv1/gone"),
            "{e:?}"
        );
    }

    #[test]
    fn send_resume_builds_send_t() {
        let fake = Fake::new("printf 'REST'").with(ALL);
        let mut child = fake.zfs.send_resume(TOKEN).unwrap();
        let mut out = String::new();
        child.read_to_string(&mut out).unwrap();
        child.finish().unwrap();
        assert_eq!(out, "REST");
        assert_eq!(fake.log(), [format!("zfs send -t {TOKEN}")]);
    }

    #[test]
    fn send_resume_rejects_malformed_tokens_without_running_zfs() {
        let fake = Fake::new("printf 'REST'").with(ALL);
        let huge = format!("1-{}", "a".repeat(MAX_RESUME_TOKEN_LEN));
        for bad in [
            "", "-", "-t", "-n1-abc", "abc-1", "1-ABCDEF", "1-abc 2", "1-abc\n", "1-abc;rm",
            "1-ab/cd", "1-xyz", &huge,
        ] {
            let e = fake.zfs.send_resume(bad).unwrap_err();
            assert_eq!(e.code(), "InvalidParameter", "{bad:?}: {e}");
            assert!(e.to_string().len() < 300, "{e}");
        }
        assert!(fake.log().is_empty(), "{:?}", fake.log());
    }

    #[test]
    fn send_resume_failures_are_command_failures() {
        // zfs-fuse has no -t; OpenZFS with a token whose snapshot is gone.
        let fake = Fake::new(
            r#"printf "invalid option 't'\nusage:\n\tsend [-RDp] [-[iI] snapshot] <snapshot>\n" >&2; exit 2"#,
        )
        .with(ZFS_FUSE);
        let e = fake.zfs.send_resume(TOKEN).unwrap().finish().unwrap_err();
        assert_eq!(e.code(), "ZfsCommandFailed", "{e}");
        assert!(e.to_string().contains("invalid option 't'"), "{e}");
        assert!(!e.to_string().contains("usage"), "{e}");
    }

    #[test]
    fn send_failures_are_classified() {
        let fake = Fake::new(
            r#"case "$CMD" in
"zpool "*) echo zdrv1 ;;
*"-i"*) echo "warning: cannot send 'zdrv1/big@s': incremental source (@nope) does not exist" >&2; exit 1 ;;
*) echo "WARNING: could not send zdrv1/big@nope: does not exist" >&2; exit 1 ;;
esac"#,
        )
        .with(ZFS_FUSE);
        let e = fake
            .zfs
            .send("zdrv1/big@nope", None, SendOpts::default())
            .unwrap()
            .finish()
            .unwrap_err();
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "zdrv1/big@nope"),
            "{e:?}"
        );
        let e = fake
            .zfs
            .send("zdrv1/big@s", Some("@nope"), SendOpts::default())
            .unwrap()
            .finish()
            .unwrap_err();
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "zdrv1/big@nope"),
            "{e:?}"
        );
    }

    #[test]
    fn cancelled_send_is_killed_and_refuses_reads() {
        let fake = Fake::new("exec yes zfs-stream").with(ALL);
        let mut child = fake
            .zfs
            .send("tank/a@s", None, SendOpts::default())
            .unwrap();
        let mut buf = [0u8; 4096];
        child.read_exact(&mut buf).unwrap();
        child.canceller().cancel();
        assert!(child.read(&mut buf).is_err());
        let e = within_30s(move || child.finish().unwrap_err());
        assert_eq!(e.code(), "Cancelled", "{e:?}");
    }

    #[test]
    fn finishing_a_send_early_reports_the_broken_pipe() {
        // zfs-fuse: "warning: cannot send 'P/d@s': Broken pipe"
        let fake = Fake::new(
            r#"trap '' PIPE; while echo data 2>/dev/null; do :; done; echo "warning: cannot send 'tank/a@s': Broken pipe" >&2; exit 1"#,
        )
        .with(ALL);
        let mut child = fake
            .zfs
            .send("tank/a@s", None, SendOpts::default())
            .unwrap();
        let mut buf = [0u8; 10];
        child.read_exact(&mut buf).unwrap();
        let e = within_30s(move || child.finish().unwrap_err());
        assert!(e.to_string().contains("Broken pipe"), "{e}");
    }
}

#[cfg(test)]
mod pool_tests {
    //! Round trips against a real pool: set `IMGSTORE_TEST_POOL` to an
    //! imported pool (CI and `tests/zfs-fuse-setup.sh` use zfs-fuse). Each
    //! test works below its own `<pool>/imgstore-zfs-test-<pid>-<n>`, which is
    //! destroyed afterwards. Without the variable these tests print that they
    //! did not run, and fail if `CI` is set.

    use super::*;
    use std::fs;
    use std::sync::atomic::AtomicU32;

    fn test_pool() -> Option<String> {
        match std::env::var("IMGSTORE_TEST_POOL") {
            Ok(pool) if !pool.is_empty() => Some(pool),
            _ => {
                if std::env::var_os("CI").is_some() {
                    panic!(
                        "CI is set but IMGSTORE_TEST_POOL is not: the real-ZFS tests of src/zfs.rs \
                         must run in CI (create a pool first, e.g. with tests/zfs-fuse-setup.sh)"
                    );
                }
                // Straight to stderr, which the test harness does not
                // capture, so the skip is visible in every `cargo test`.
                static ONCE: std::sync::Once = std::sync::Once::new();
                ONCE.call_once(|| {
                    let _ = writeln!(
                        io::stderr(),
                        "NOT RUN: zfs::pool_tests (real ZFS round trips) were skipped: \
                         IMGSTORE_TEST_POOL is not set (create a pool, e.g. with \
                         tests/zfs-fuse-setup.sh, and set it to the pool's name)"
                    );
                });
                None
            }
        }
    }

    /// A scratch filesystem below the test pool, destroyed with everything
    /// in it on drop.
    struct Scratch {
        zfs: Zfs,
        pool: String,
        root: String,
    }

    impl Scratch {
        fn new() -> Option<Scratch> {
            static N: AtomicU32 = AtomicU32::new(0);
            let pool = test_pool()?;
            let zfs = Zfs::default();
            let n = N.fetch_add(1, Ordering::SeqCst);
            let root = format!("{pool}/imgstore-zfs-test-{}-{n}", std::process::id());
            zfs.create_filesystem(&root)
                .unwrap_or_else(|e| panic!("creating {root} on IMGSTORE_TEST_POOL={pool}: {e}"));
            Some(Scratch { zfs, pool, root })
        }

        fn ds(&self, name: &str) -> String {
            format!("{}/{name}", self.root)
        }

        /// Creates a mounted filesystem holding one file of `len`
        /// pseudo-random bytes.
        fn filesystem_with_data(&self, name: &str, len: usize, seed: u64) -> String {
            let ds = self.ds(name);
            self.zfs.create_filesystem(&ds).unwrap();
            self.write_file(&ds, "data", len, seed);
            ds
        }

        fn write_file(&self, ds: &str, file: &str, len: usize, seed: u64) {
            let mnt = self.zfs.get_property(ds, "mountpoint").unwrap().unwrap();
            fs::write(Path::new(&mnt).join(file), pseudo_random(len, seed)).unwrap();
        }

        /// Full or incremental stream of `snapshot`, in memory.
        fn stream(&self, snapshot: &str, from: Option<&str>) -> Vec<u8> {
            let mut send = self.zfs.send(snapshot, from, SendOpts::default()).unwrap();
            let mut out = Vec::new();
            send.read_to_end(&mut out).unwrap();
            send.finish().unwrap();
            out
        }

        fn receive(&self, target: &str, stream: &[u8]) -> Result<()> {
            let opts = ReceiveOpts {
                no_mount: true,
                ..ReceiveOpts::default()
            };
            let mut recv = self.zfs.receive(target, opts)?;
            // A write error (zfs gave up) is reported better by finish().
            let _ = recv.write_all(stream);
            recv.finish()
        }

        /// `zfs send | zfs receive`, piped through this process.
        fn pipe(&self, snapshot: &str, from: Option<&str>, target: &str) {
            let mut send = self.zfs.send(snapshot, from, SendOpts::default()).unwrap();
            let opts = ReceiveOpts {
                no_mount: true,
                ..ReceiveOpts::default()
            };
            let mut recv = self.zfs.receive(target, opts).unwrap();
            io::copy(&mut send, &mut recv).unwrap();
            send.finish().unwrap();
            recv.finish().unwrap();
        }

        fn snapshot_names(&self, ds: &str) -> Vec<String> {
            self.zfs
                .list_snapshots(ds)
                .unwrap()
                .into_iter()
                .map(|s| s.name)
                .collect()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            if let Err(e) = self.zfs.destroy(&self.root, true) {
                eprintln!("cleanup: could not destroy {}: {e}", self.root);
            }
        }
    }

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn assert_code<T: fmt::Debug>(r: Result<T>, code: &str) -> ZfsError {
        match r {
            Ok(v) => panic!("expected {code}, got Ok({v:?})"),
            Err(e) => {
                assert_eq!(e.code(), code, "{e}");
                e
            }
        }
    }

    #[test]
    fn features_and_pool() {
        let Some(s) = Scratch::new() else { return };
        let f = s.zfs.available().unwrap();
        eprintln!("features of the test pool's ZFS: {f:?}");
        assert!(s.zfs.pool_exists(&s.pool).unwrap());
        assert!(!s.zfs.pool_exists("zdrvnosuchpool").unwrap());
        if !f.resumable_receive {
            assert!(!s.zfs.supports_resumable_receive(&s.pool).unwrap());
        }
        let roots = s.zfs.list_datasets(&s.pool, Some(0)).unwrap();
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0].name, s.pool);
        let mine = s.zfs.list_datasets(&s.root, None).unwrap();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0].kind, DatasetType::Filesystem);
        assert!(mine[0].creation > 1_500_000_000, "{:?}", mine[0]);
        assert!(s.zfs.exists(&s.root).unwrap());
        assert!(!s.zfs.exists(&s.ds("nope")).unwrap());
        assert_eq!(s.zfs.get_property(&s.root, "origin").unwrap(), None);
        s.zfs.set_property(&s.root, "imgstore:test", "yes").unwrap();
        assert_eq!(
            s.zfs
                .get_property(&s.root, "imgstore:test")
                .unwrap()
                .as_deref(),
            Some("yes")
        );
    }

    /// imgadm's install (receive `-partial`, one snapshot renamed to
    /// `@final`, rename into place), clone, incremental and
    /// clone-incremental (`imgadm create -i`) streams, destroy rules.
    #[test]
    fn snapshot_send_receive_rename_clone_destroy() {
        let Some(s) = Scratch::new() else { return };
        let z = &s.zfs;
        let src = s.filesystem_with_data("src", 200_000, 1);
        z.snapshot(&format!("{src}@final")).unwrap();

        let partial = s.ds("img-partial");
        s.pipe(&format!("{src}@final"), None, &partial);
        assert_eq!(s.snapshot_names(&partial), [format!("{partial}@final")]);
        let img = s.ds("img");
        z.rename(&partial, &img).unwrap();
        z.rename(&format!("{img}@final"), &format!("{img}@tmp"))
            .unwrap();
        z.rename(&format!("{img}@tmp"), &format!("{img}@final"))
            .unwrap();
        assert_eq!(s.snapshot_names(&img), [format!("{img}@final")]);
        assert!(!z.exists(&partial).unwrap());

        let names: Vec<String> = z
            .list_datasets(&s.root, Some(1))
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, [s.root.clone(), img.clone(), src.clone()]);

        // clone, clones_of, dependent-clone refusal
        let vm = s.ds("vm");
        let final_snap = format!("{img}@final");
        z.clone_snapshot(&final_snap, &vm).unwrap();
        assert_eq!(
            z.get_property(&vm, "origin").unwrap().as_deref(),
            Some(final_snap.as_str())
        );
        assert_eq!(z.clones_of(&final_snap).unwrap(), std::slice::from_ref(&vm));
        let e = assert_code(z.destroy(&final_snap, false), "ImageHasDependentClones");
        assert!(
            matches!(&e, ZfsError::HasDependentClones { name, clones } if name == &final_snap && clones == std::slice::from_ref(&vm)),
            "{e:?}"
        );
        assert_code(z.destroy(&img, true), "ImageHasDependentClones");

        // incremental onto the installed image
        s.write_file(&src, "more", 50_000, 2);
        z.snapshot(&format!("{src}@s2")).unwrap();
        s.pipe(&format!("{src}@s2"), Some(&format!("{src}@final")), &img);
        assert_eq!(
            s.snapshot_names(&img),
            [final_snap.clone(), format!("{img}@s2")]
        );

        // clone-incremental: what `imgadm create -i` sends. The origin is
        // found by guid; src@final has the same guid as img@final and
        // zfs-fuse may pick either, so src goes first.
        z.destroy(&src, true).unwrap();
        s.write_file(&vm, "vm-file", 30_000, 3);
        z.snapshot(&format!("{vm}@final")).unwrap();
        let img2 = s.ds("img2");
        s.pipe(&format!("{vm}@final"), Some(&final_snap), &img2);
        assert_eq!(
            z.get_property(&img2, "origin").unwrap().as_deref(),
            Some(final_snap.as_str())
        );
        let mut clones = z.clones_of(&final_snap).unwrap();
        clones.sort();
        assert_eq!(clones, [img2.clone(), vm.clone()]);

        z.destroy(&img2, true).unwrap();
        z.destroy(&vm, true).unwrap();
        assert!(z.clones_of(&final_snap).unwrap().is_empty());
        z.destroy(&format!("{img}@s2"), false).unwrap();
        z.destroy(&img, true).unwrap();
        assert!(!z.exists(&img).unwrap());
    }

    #[test]
    fn errors_from_real_zfs() {
        let Some(s) = Scratch::new() else { return };
        let z = &s.zfs;
        let src = s.filesystem_with_data("src", 20_000, 4);
        let snap = format!("{src}@final");
        z.snapshot(&snap).unwrap();
        let full = s.stream(&snap, None);

        let e = assert_code(z.snapshot(&snap), "DatasetExists");
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == &snap),
            "{e:?}"
        );
        assert_code(z.create_filesystem(&src), "DatasetExists");

        let copy = s.ds("copy");
        s.receive(&copy, &full).unwrap();
        let e = assert_code(s.receive(&copy, &full), "DatasetExists");
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == &copy),
            "{e:?}"
        );
        z.snapshot(&format!("{src}@s2")).unwrap();
        let e = assert_code(z.rename(&snap, &format!("{src}@s2")), "DatasetExists");
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == &format!("{src}@s2")),
            "{e:?}"
        );

        let bad = s.ds("bad");
        let e = assert_code(
            s.receive(&bad, &pseudo_random(64 * 1024, 5)),
            "ZfsCommandFailed",
        );
        assert!(e.to_string().contains("invalid stream"), "{e}");
        let e = assert_code(s.receive(&bad, &full[..full.len() / 2]), "ZfsCommandFailed");
        eprintln!("truncated stream: {e}");
        assert!(!z.exists(&bad).unwrap());

        let e = assert_code(s.receive(&s.ds("no/such/parent"), &full), "DatasetNotFound");
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == &s.ds("no/such")),
            "{e:?}"
        );
        let e = assert_code(s.receive("zdrvnosuchpool/x", &full), "PoolNotFound");
        assert!(
            matches!(&e, ZfsError::PoolNotFound { pool } if pool == "zdrvnosuchpool"),
            "{e:?}"
        );
        assert_code(z.snapshot("zdrvnosuchpool/x@s"), "PoolNotFound");
        assert_code(z.create_filesystem("zdrvnosuchpool/x"), "PoolNotFound");

        let missing = s.ds("missing");
        let e = assert_code(z.get_property(&missing, "used"), "DatasetNotFound");
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == &missing),
            "{e:?}"
        );
        assert_code(z.destroy(&missing, true), "DatasetNotFound");
        assert_code(z.destroy(&format!("{src}@nope"), false), "DatasetNotFound");
        assert_code(z.rename(&missing, &s.ds("x")), "DatasetNotFound");
        assert_code(z.list_snapshots(&missing), "DatasetNotFound");
        let e = assert_code(
            z.send(&format!("{src}@nope"), None, SendOpts::default())
                .unwrap()
                .finish(),
            "DatasetNotFound",
        );
        eprintln!("send of a missing snapshot: {e}");
        let mut send = z
            .send(&snap, Some(&format!("{src}@nope")), SendOpts::default())
            .unwrap();
        let _ = io::copy(&mut send, &mut io::sink());
        let e = assert_code(send.finish(), "DatasetNotFound");
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == &format!("{src}@nope")),
            "{e:?}"
        );
        let e = assert_code(z.rename(&src, &copy), "DatasetExists");
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == &copy),
            "{e:?}"
        );
    }

    #[test]
    fn cancelled_receive_leaves_no_dataset() {
        let Some(s) = Scratch::new() else { return };
        let z = &s.zfs;
        let src = s.filesystem_with_data("src", 4_000_000, 6);
        z.snapshot(&format!("{src}@final")).unwrap();
        let full = s.stream(&format!("{src}@final"), None);
        let target = s.ds("cancelled");
        let mut recv = z
            .receive(
                &target,
                ReceiveOpts {
                    no_mount: true,
                    ..Default::default()
                },
            )
            .unwrap();
        recv.write_all(&full[..full.len() / 3]).unwrap();
        recv.canceller().cancel();
        assert!(recv.write_all(&full[full.len() / 3..]).is_err());
        assert_code(recv.finish(), "Cancelled");
        // zfs-fuse's daemon notices the closed pipe on its own time.
        let deadline = Instant::now() + Duration::from_secs(10);
        while z.exists(&target).unwrap() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(100));
        }
        assert!(
            !z.exists(&target).unwrap(),
            "a cancelled receive left {target}"
        );
        // and the name is free for a new attempt
        s.receive(&target, &full).unwrap();
    }

    #[test]
    fn cancelled_send() {
        let Some(s) = Scratch::new() else { return };
        let src = s.filesystem_with_data("src", 4_000_000, 7);
        s.zfs.snapshot(&format!("{src}@final")).unwrap();
        let mut send = s
            .zfs
            .send(&format!("{src}@final"), None, SendOpts::default())
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        send.read_exact(&mut buf).unwrap();
        send.canceller().cancel();
        assert!(send.read(&mut buf).is_err());
        assert_code(send.finish(), "Cancelled");
    }

    /// `receive -s`, interrupted, then resumed from its token with `send -t`
    /// where ZFS and the pool have it (OpenZFS, see scripts/zfs-vm-test);
    /// elsewhere (zfs-fuse) the feature is detected as absent and
    /// `resumable: true` receives without `-s`.
    #[test]
    fn interrupted_resumable_receive_resumes_from_its_token() {
        let Some(s) = Scratch::new() else { return };
        let z = &s.zfs;
        let f = z.available().unwrap();
        let resumable = z.supports_resumable_receive(&s.pool).unwrap();
        const LEN: usize = 6_000_000;
        let src = s.filesystem_with_data("src", LEN, 9);
        z.snapshot(&format!("{src}@final")).unwrap();
        let full = s.stream(&format!("{src}@final"), None);
        let target = s.ds("resumed");
        let opts = ReceiveOpts {
            no_mount: true,
            resumable: true,
            ..ReceiveOpts::default()
        };

        if !f.resumable_receive {
            assert!(!resumable);
            let mut recv = z.receive(&target, opts).unwrap();
            assert!(!recv.proc_.argv.contains(" -s"), "{}", recv.proc_.argv);
            recv.write_all(&full).unwrap();
            recv.finish().unwrap();
            assert_eq!(z.resume_token(&target).unwrap(), None);
            assert_code(z.resume_token(&s.ds("missing")), "DatasetNotFound");
            let e = assert_code(
                z.send_resume("1-e604ea4bf-e0-789c63a2").unwrap().finish(),
                "ZfsCommandFailed",
            );
            eprintln!("send -t without resumable receive: {e}");
            return;
        }
        if !resumable {
            let why = format!(
                "{} lacks feature@extensible_dataset although zfs has receive -s",
                s.pool
            );
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set: the resume test must run; {why}"
            );
            eprintln!("NOT RUN: resume: {why}");
            return;
        }

        // Part of the stream, then the receive is killed: with -s the
        // partial dataset stays, with a token saying where to go on.
        let mut recv = z.receive(&target, opts).unwrap();
        assert!(recv.proc_.argv.contains(" -s "), "{}", recv.proc_.argv);
        recv.write_all(&full[..full.len() / 2]).unwrap();
        recv.canceller().cancel();
        assert_code(recv.finish(), "Cancelled");
        let deadline = Instant::now() + Duration::from_secs(30);
        let token = loop {
            if let Some(t) = z.resume_token(&target).unwrap() {
                break t;
            }
            assert!(
                Instant::now() < deadline,
                "no receive_resume_token on {target} after the interrupted receive"
            );
            thread::sleep(Duration::from_millis(200));
        };
        eprintln!("resume token: {}...", &token[..token.len().min(40)]);
        assert!(token.starts_with("1-"), "{token}");
        validate_resume_token(&token).unwrap();
        assert!(s.snapshot_names(&target).is_empty(), "not received yet");

        // The rest, from the token.
        let mut send = z.send_resume(&token).unwrap();
        let mut recv = z.receive(&target, opts).unwrap();
        let copied = io::copy(&mut send, &mut recv).unwrap();
        send.finish().unwrap();
        recv.finish().unwrap();
        assert!(
            (copied as usize) < full.len(),
            "resumed stream ({copied} bytes) should be shorter than the full one ({})",
            full.len()
        );
        assert_eq!(z.resume_token(&target).unwrap(), None);
        assert_eq!(s.snapshot_names(&target), [format!("{target}@final")]);
        z.run(Bin::Zfs, &["mount", &target], &target).unwrap();
        let mnt = z.get_property(&target, "mountpoint").unwrap().unwrap();
        let got = fs::read(Path::new(&mnt).join("data")).unwrap();
        assert!(got == pseudo_random(LEN, 9), "resumed data differs");

        // Partial state that will not be resumed is cleared with receive -A.
        let again = s.ds("aborted");
        let mut recv = z.receive(&again, opts).unwrap();
        recv.write_all(&full[..full.len() / 2]).unwrap();
        recv.canceller().cancel();
        assert_code(recv.finish(), "Cancelled");
        z.abort_resumable_receive(&again).unwrap();
        assert!(
            !z.exists(&again).unwrap(),
            "receive -A destroys a new dataset"
        );
    }

    /// zfs-fuse needs the busy retries and the unmounted rename here.
    #[test]
    fn mounted_filesystems_rename_and_destroy() {
        let Some(s) = Scratch::new() else { return };
        let z = &s.zfs;
        let m = s.filesystem_with_data("m", 1000, 8);
        assert_eq!(
            z.get_property(&m, "mounted").unwrap().as_deref(),
            Some("yes")
        );
        let m2 = s.ds("m2");
        z.rename(&m, &m2).unwrap();
        assert_eq!(
            z.get_property(&m2, "mounted").unwrap().as_deref(),
            Some("yes")
        );
        for d in ["p", "p/q", "p/q/r"] {
            z.create_filesystem(&s.ds(d)).unwrap();
        }
        z.snapshot(&s.ds("p/q@s")).unwrap();
        z.destroy(&s.ds("p"), true).unwrap();
        z.destroy(&m2, false).unwrap();
        assert_eq!(z.list_datasets(&s.root, None).unwrap().len(), 1);
    }
}
