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
//! # Layout
//!
//! - `mod.rs` (this file): [`Zfs`] and its commands, the argv of each.
//! - `error.rs`: [`ZfsError`] and the classification of stderr into it.
//! - `names.rs`: name validation, [`PoolName`] and [`DatasetName`].
//! - `proc.rs`: running the binaries; the [`ReceiveChild`] / [`SendChild`]
//!   stream children and their [`Canceller`].
//! - `list.rs`: parsing `zfs list` / `zfs get` / `zpool get` output.
//! - `pool_tests.rs`: round trips against a real pool (`IMGSTORE_TEST_POOL`);
//!   `fake.rs`: the unit tests' fake binaries and recorded samples.
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
//! Recorded on this project's dev machine; the classification tests in
//! `error.rs` replay these texts verbatim from `tests/fixtures/zfs/`.
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

mod error;
mod list;
mod names;
mod proc;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::{Result, ZfsError};
pub use list::{DatasetInfo, DatasetType};
pub use names::{
    validate_any_name, validate_dataset_name, validate_pool_name, validate_snapshot_name,
    DatasetName, PoolName, MAX_NAME_LEN,
};
pub use proc::{Canceller, ReceiveChild, ReceiveWriter, SendChild, SendReader};

use error::{check_not_available, exists_means_target, first_quoted, not_found_is_parent, pool_of};
use list::{INFO_GET_PROPS, INFO_PROPS};
use names::{invalid, validate_component, validate_property_name, validate_resume_token};
use proc::{Bin, Runner};

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

/// Handle on the `zfs` and `zpool` binaries. Cheap to clone; features are
/// detected once per handle (clones made after detection share the result).
#[derive(Debug, Clone)]
pub struct Zfs {
    runner: Runner,
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
            runner: Runner::new(zfs_bin.into(), zpool_bin.into()),
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
        self.runner
            .run(Bin::Zpool, &["list", "-H", "-o", "name"], "")?;
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
        tracing::info!(?features, zfs = %self.runner.bin(Bin::Zfs).display(), "detected ZFS features");
        let _ = self.features.set(features);
        Ok(*self.features.get().unwrap_or(&features))
    }

    /// Runs `zfs <sub> -<flag>` without operands; the flag is supported
    /// unless getopt rejects it.
    fn probe_flag(&self, sub: &str, flag: char) -> Result<bool> {
        let stderr = self.probe(&[sub, &format!("-{flag}")])?;
        Ok(!stderr.contains(&format!("invalid option '{flag}'")))
    }

    fn probe_list_parsable(&self) -> Result<bool> {
        let stderr = self.probe(&["list", "-H", "-p", "-o", "name", "-d", "0"])?;
        Ok(!stderr.contains("invalid option 'p'"))
    }

    /// Looks for `prop` in the property table `zfs get` prints with its
    /// usage when run without arguments.
    fn probe_property(&self, prop: &str) -> Result<bool> {
        let stderr = self.probe(&["get"])?;
        Ok(list::usage_lists_property(&stderr, prop))
    }

    /// Runs a probe and returns its stderr, which is the answer whether
    /// the probe "failed" or not, unless it says ZFS is unreachable.
    fn probe(&self, args: &[&str]) -> Result<String> {
        let out = self.runner.output(Bin::Zfs, args)?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        check_not_available(&stderr)?;
        Ok(stderr)
    }

    /// True if `pool` is imported.
    ///
    /// # Errors
    ///
    /// [`ZfsError::NotAvailable`], or [`ZfsError::CommandFailed`] if `zpool
    /// list` fails otherwise. The name was checked when the [`PoolName`]
    /// was made.
    pub fn pool_exists(&self, pool: &PoolName) -> Result<bool> {
        self.runner.pool_exists(pool)
    }

    /// True if the pool supports resumable receive: `zfs receive -s` exists
    /// and `feature@extensible_dataset` is enabled or active on `pool`
    /// (the checks syncoid and zrepl make). Pools without feature flags
    /// (zfs-fuse, version 23) answer false.
    ///
    /// # Errors
    ///
    /// [`ZfsError::PoolNotFound`], [`ZfsError::NotAvailable`].
    pub fn supports_resumable_receive(&self, pool: &PoolName) -> Result<bool> {
        if !self.available()?.resumable_receive {
            return Ok(false);
        }
        let pool = pool.as_str();
        let args = [
            "get",
            "-H",
            "-o",
            "value",
            "feature@extensible_dataset",
            pool,
        ];
        match self.runner.run(Bin::Zpool, &args, pool) {
            Ok(out) => Ok(list::feature_is_on(&out)),
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
        match self
            .runner
            .run(Bin::Zfs, &["get", "-H", "-o", "name", "type", name], name)
        {
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
    /// is missing, [`ZfsError::NotAvailable`],
    /// [`ZfsError::CommandFailed`] (also for output that cannot be parsed).
    pub fn list_datasets(
        &self,
        parent: &DatasetName,
        depth: Option<u32>,
    ) -> Result<Vec<DatasetInfo>> {
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
    pub fn list_snapshots(&self, dataset: &DatasetName) -> Result<Vec<DatasetInfo>> {
        let prefix = format!("{dataset}@");
        let rows = self.list_info(dataset, Some(1), "snapshot")?;
        Ok(rows
            .into_iter()
            .filter(|r| r.kind == DatasetType::Snapshot && r.name.starts_with(&prefix))
            .collect())
    }

    fn list_info(
        &self,
        parent: &DatasetName,
        depth: Option<u32>,
        types: &str,
    ) -> Result<Vec<DatasetInfo>> {
        let parent = parent.as_str();
        let depth_s = depth.map(|d| d.to_string());
        let mut args: Vec<&str> = Vec::new();
        if self.available()?.parsable_list {
            args.extend(["list", "-H", "-p", "-o", INFO_PROPS, "-t", types]);
            push_depth(&mut args, depth_s.as_deref());
            args.push(parent);
            let out = self.runner.run(Bin::Zfs, &args, parent)?;
            list::parse_list_output(&out).map_err(|e| self.parse_error(&args, e))
        } else {
            args.extend(["get", "-H", "-p", "-o", "name,property,value"]);
            push_depth(&mut args, depth_s.as_deref());
            args.extend([INFO_GET_PROPS, parent]);
            let out = self.runner.run(Bin::Zfs, &args, parent)?;
            list::parse_get_output(&out).map_err(|e| self.parse_error(&args, e))
        }
    }

    fn parse_error(&self, args: &[&str], what: list::ParseError) -> ZfsError {
        ZfsError::CommandFailed {
            argv: self.runner.argv(Bin::Zfs, args),
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
        let out = self.runner.run(
            Bin::Zfs,
            &["get", "-H", "-p", "-o", "value", prop, name],
            name,
        )?;
        Ok(list::parse_value(&out))
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
        self.runner
            .run(Bin::Zfs, &["set", &assignment, name], name)?;
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
        self.runner
            .run(Bin::Zfs, &["snapshot", snapshot], snapshot)?;
        Ok(())
    }

    /// Creates a filesystem (`zfs create`); the parent must exist.
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`] (a pool's root), [`ZfsError::DatasetExists`],
    /// [`ZfsError::PoolNotFound`], [`ZfsError::DatasetNotFound`] (parent),
    /// [`ZfsError::CommandFailed`].
    pub fn create_filesystem(&self, dataset: &DatasetName) -> Result<()> {
        let name = dataset.as_str();
        if dataset.parent().is_none() {
            return Err(invalid(name, "a filesystem to create needs a parent"));
        }
        self.runner
            .run(Bin::Zfs, &["create", name], name)
            .map_err(|e| not_found_is_parent(e, name))?;
        Ok(())
    }

    /// Creates `target` as a clone of `snapshot` (`zfs clone`).
    ///
    /// # Errors
    ///
    /// [`ZfsError::InvalidName`] (snapshot), [`ZfsError::DatasetNotFound`] (snapshot),
    /// [`ZfsError::DatasetExists`] (target), [`ZfsError::CommandFailed`].
    pub fn clone_snapshot(&self, snapshot: &str, target: &DatasetName) -> Result<()> {
        validate_snapshot_name(snapshot)?;
        self.runner
            .run(Bin::Zfs, &["clone", snapshot, target.as_str()], snapshot)?;
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
        let runner = &self.runner;
        let args = ["rename", from, to];
        let err = match runner.run(Bin::Zfs, &args, from) {
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
        self.retry_busy(from, || runner.run(Bin::Zfs, &["unmount", from], from))?;
        match self.retry_busy(from, || runner.run(Bin::Zfs, &args, from)) {
            Ok(_) => {
                if let Err(e) = runner.run(Bin::Zfs, &["mount", to], to) {
                    tracing::warn!(error = %e, dataset = to, "renamed, but remounting failed");
                }
                Ok(())
            }
            Err(e) => {
                if let Err(e2) = runner.run(Bin::Zfs, &["mount", from], from) {
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
        match self.retry_busy(name, || self.runner.run(Bin::Zfs, &args, name)) {
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
            return Ok(list::parse_name_list(&value));
        }
        if !self.exists(snapshot)? {
            return Err(ZfsError::DatasetNotFound {
                name: snapshot.to_string(),
            });
        }
        let pool = DatasetName::new(pool_of(snapshot))?;
        Ok(self
            .list_datasets(&pool, None)?
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
        self.runner.spawn_receive(&args, target)
    }

    /// Mounts a received filesystem where `zfs receive` without `-u` would
    /// have: imgadm receives without `-u`, so installed zone and lx images
    /// end up mounted at their mountpoint (`/zones/UUID`). Receiving with
    /// `-u` and mounting afterwards (`zfs mount DATASET`, after the rename to
    /// the final name) leaves the same result without ever mounting the
    /// `-partial` dataset.
    ///
    /// Reads `type`, `canmount`, `mountpoint` and `mounted` in one
    /// `zfs get`, and mounts only what ZFS itself would mount: a filesystem
    /// (never a volume) with `canmount=on`, a real mountpoint (not `none`
    /// or `legacy`) and not mounted yet ([`mount_plan`]).
    ///
    /// # Errors
    ///
    /// [`ZfsError::DatasetNotFound`], [`ZfsError::CommandFailed`] (the
    /// mount failed; its stderr says why, the error names the dataset).
    pub fn mount_received(&self, dataset: &DatasetName) -> Result<MountPlan> {
        let name = dataset.as_str();
        let out = self.runner.run(
            Bin::Zfs,
            &[
                "get",
                "-H",
                "-o",
                "value",
                "type,canmount,mountpoint,mounted",
                name,
            ],
            name,
        )?;
        let mut values = out.lines().map(str::trim);
        let mut next = || values.next().unwrap_or("-");
        let plan = mount_plan(next(), next(), next(), next());
        if plan == MountPlan::Mount {
            self.runner.run(Bin::Zfs, &["mount", name], name)?;
        }
        Ok(plan)
    }

    /// Clears the partial state a failed resumable receive left in
    /// `target` (`zfs receive -A`).
    ///
    /// # Errors
    ///
    /// [`ZfsError::DatasetNotFound`],
    /// [`ZfsError::CommandFailed`] (also when there is no partial state, or
    /// the ZFS has no resumable receive).
    pub fn abort_resumable_receive(&self, target: &DatasetName) -> Result<()> {
        let target = target.as_str();
        self.runner
            .run(Bin::Zfs, &["receive", "-A", target], target)?;
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
    /// [`ZfsError::DatasetNotFound`],
    /// [`ZfsError::PoolNotFound`], [`ZfsError::CommandFailed`].
    pub fn resume_token(&self, dataset: &DatasetName) -> Result<Option<String>> {
        let dataset = dataset.as_str();
        match self.get_property(dataset, "receive_resume_token") {
            Ok(token) => Ok(token.filter(|t| !t.is_empty())),
            Err(ZfsError::CommandFailed { ref stderr, .. })
                if stderr.contains("invalid property 'receive_resume_token'") =>
            {
                if self.exists(dataset)? {
                    Ok(None)
                } else {
                    Err(self.runner.refine(ZfsError::DatasetNotFound {
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
        self.runner.spawn_send(&["send", "-t", token], "")
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
        self.runner.spawn_send(&args, snapshot)
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

#[cfg(test)]
mod fake;
#[cfg(test)]
mod pool_tests;

/// What [`Zfs::mount_received`] does with a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountPlan {
    /// A filesystem ZFS would mount on receive: it is mounted.
    Mount,
    /// Already mounted: nothing to do.
    AlreadyMounted,
    /// Not mountable, and left alone: why.
    Skip(&'static str),
}

/// Whether a received dataset with these properties is one `zfs receive`
/// mounts: `kind` (`type`), `canmount`, `mountpoint`, `mounted` as
/// `zfs get -H -o value` prints them (`-` where a property does not apply,
/// as for every one of these on a volume).
pub fn mount_plan(kind: &str, canmount: &str, mountpoint: &str, mounted: &str) -> MountPlan {
    if kind != "filesystem" {
        MountPlan::Skip("not a filesystem (a volume has no mountpoint)")
    } else if mounted == "yes" {
        MountPlan::AlreadyMounted
    } else if canmount != "on" {
        MountPlan::Skip("canmount is not on")
    } else if mountpoint == "none" || mountpoint == "legacy" || !mountpoint.starts_with('/') {
        MountPlan::Skip("mountpoint is none or legacy")
    } else {
        MountPlan::Mount
    }
}

#[cfg(test)]
mod tests {
    //! Argv building, feature detection and the commands' own handling of
    //! failures, against fake `zfs`/`zpool` scripts (`fake.rs`) that record
    //! their argv and answer with stderr recorded from real zfs-fuse,
    //! OpenZFS and illumos. The children's plumbing is tested in `proc.rs`,
    //! real-pool round trips are in `pool_tests.rs`.

    use super::*;
    use fake::{fixture, Fake, ALL, NONE, ZFS_FUSE};
    use names::MAX_RESUME_TOKEN_LEN;
    use std::io::{self, Read};

    fn ds(name: &str) -> DatasetName {
        DatasetName::new(name).unwrap()
    }

    fn pool(name: &str) -> PoolName {
        PoolName::new(name).unwrap()
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
        assert!(PoolName::new("bad pool").is_err());
        assert!(fake.log().is_empty(), "{:?}", fake.log());
    }

    // ---- fake binaries: detection ----------------------------------------------

    /// zfs-fuse's answers to the probes, as recorded.
    const ZFS_FUSE_PROBES: &str = r#"
case "$CMD" in
"zpool list -H -o name") echo zdrv1 ;;
"zfs receive -s") cat "$F/zfs-fuse-probe-receive-s.stderr" >&2; exit 2 ;;
"zfs receive -u") cat "$F/zfs-fuse-probe-receive-u.stderr" >&2; exit 2 ;;
"zfs send -"[cLew]) printf "invalid option '%s'\nusage:\n\tsend [-RDp] [-[iI] snapshot] <snapshot>\n" "${CMD#zfs send -}" >&2; exit 2 ;;
"zfs list -H -p -o name -d 0") cat "$F/zfs-fuse-probe-list-p.stderr" >&2; exit 2 ;;
"zfs get") cat "$F/zfs-fuse-get-usage.stderr" >&2; exit 2 ;;
esac
"#;

    /// OpenZFS 2.x: every flag known, `clones` in the property table.
    const OPENZFS_PROBES: &str = r#"
case "$CMD" in
"zpool list -H -o name") echo tank ;;
"zfs receive -"?|"zfs send -"?) cat "$F/openzfs-probe-flag.stderr" >&2; exit 2 ;;
"zfs list -H -p -o name -d 0") echo tank ;;
"zfs get") cat "$F/openzfs-get-usage.stderr" >&2; exit 2 ;;
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
        assert!(!fake.zfs.supports_resumable_receive(&pool("zdrv1")).unwrap());
        assert_eq!(fake.log().len(), calls.len());
    }

    #[test]
    fn detects_openzfs_features_and_pool_resume() {
        let fake = Fake::new(&format!(
            "{OPENZFS_PROBES}\ncase \"$CMD\" in\n\"zpool get -H -o value feature@extensible_dataset tank\") echo active ;;\n\
             \"zpool get -H -o value feature@extensible_dataset old\") echo disabled ;;\nesac"
        ));
        assert_eq!(fake.zfs.available().unwrap(), ALL);
        assert!(fake.zfs.supports_resumable_receive(&pool("tank")).unwrap());
        assert!(!fake.zfs.supports_resumable_receive(&pool("old")).unwrap());
    }

    #[test]
    fn mounts_received_filesystems_only() {
        use MountPlan::*;
        assert_eq!(mount_plan("filesystem", "on", "/zones/x", "no"), Mount);
        assert_eq!(
            mount_plan("filesystem", "on", "/zones/x", "yes"),
            AlreadyMounted
        );
        assert!(matches!(mount_plan("volume", "-", "-", "-"), Skip(_)));
        assert!(matches!(
            mount_plan("filesystem", "off", "/z", "no"),
            Skip(_)
        ));
        assert!(matches!(
            mount_plan("filesystem", "noauto", "/z", "no"),
            Skip(_)
        ));
        assert!(matches!(
            mount_plan("filesystem", "on", "none", "no"),
            Skip(_)
        ));
        assert!(matches!(
            mount_plan("filesystem", "on", "legacy", "no"),
            Skip(_)
        ));

        let get = "zfs get -H -o value type,canmount,mountpoint,mounted";
        // A filesystem: one get, then `zfs mount` (argv, no shell).
        let fake = Fake::new(&format!(
            "case \"$CMD\" in \"{get} tank/fs\") printf 'filesystem\\non\\n/tank/fs\\nno\\n' ;; esac"
        ))
        .with(ALL);
        assert_eq!(fake.zfs.mount_received(&ds("tank/fs")).unwrap(), Mount);
        assert_eq!(
            fake.log(),
            [format!("{get} tank/fs"), "zfs mount tank/fs".into()]
        );
        // A volume is never mounted.
        let fake = Fake::new("printf 'volume\\n-\\n-\\n-\\n'").with(ALL);
        assert!(matches!(
            fake.zfs.mount_received(&ds("tank/vol")).unwrap(),
            Skip(_)
        ));
        assert_eq!(fake.log(), [format!("{get} tank/vol")]);
        // A failing mount is an error naming the dataset.
        let fake = Fake::new(&format!(
            "case \"$CMD\" in \"{get} tank/fs\") printf 'filesystem\\non\\n/tank/fs\\nno\\n' ;; \
             *) echo \"cannot mount '/tank/fs': directory is not empty\" >&2; exit 1 ;; esac"
        ))
        .with(ALL);
        let e = fake.zfs.mount_received(&ds("tank/fs")).unwrap_err();
        assert!(e.to_string().contains("tank/fs"), "{e}");
    }

    #[test]
    fn unreachable_daemon_is_not_available() {
        let fake = Fake::new(&format!(
            "printf '{}' >&2; exit 1",
            fixture!("zfs-fuse-daemon-down.stderr").replace('\n', "\\n")
        ));
        let e = fake.zfs.available().unwrap_err();
        assert_eq!(e.code(), "ZfsNotAvailable", "{e:?}");
        assert!(e.to_string().contains("zfs-fuse daemon is running"), "{e}");
        let e = fake.zfs.pool_exists(&pool("zdrv1")).unwrap_err();
        assert_eq!(e.code(), "ZfsNotAvailable");
    }

    // ---- fake binaries: argv and parsing ------------------------------------------

    #[test]
    fn list_datasets_uses_list_p_when_available() {
        let fake = Fake::new(r#"cat "$F/list-p.out""#).with(ALL);
        let rows = fake.zfs.list_datasets(&ds("tank"), None).unwrap();
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
        fake.zfs.list_datasets(&ds("tank/img"), Some(1)).unwrap();
        assert_eq!(
            fake.log()[1],
            "zfs list -H -p -o name,type,origin,used,referenced,creation -t filesystem,volume -d 1 tank/img"
        );
    }

    /// What zfs-fuse prints for `zfs get -H -p -o name,property,value -r ...`.
    const GET_OUTPUT: &str = r#"cat "$F/zfs-fuse-get-p-r.out""#;

    #[test]
    fn list_falls_back_to_zfs_get_without_list_p() {
        let fake = Fake::new(GET_OUTPUT).with(ZFS_FUSE);
        let rows = fake.zfs.list_datasets(&ds("zdrv1"), None).unwrap();
        assert_eq!(
            fake.log(),
            ["zfs get -H -p -o name,property,value -r type,origin,used,referenced,creation zdrv1"]
        );
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["zdrv1", "zdrv1/a", "zdrv1/k1"]);
        assert_eq!(rows[2].origin.as_deref(), Some("zdrv1/a@s2"));
        assert_eq!(rows[1].used, 204_800);

        let snaps = fake.zfs.list_snapshots(&ds("zdrv1/a")).unwrap();
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
        let fake = Fake::new(r#"cat "$F/list-p-snapshot.out""#).with(ALL);
        let snaps = fake.zfs.list_snapshots(&ds("tank/a")).unwrap();
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
        let e = fake.zfs.list_datasets(&ds("tank"), None).unwrap_err();
        assert_eq!(e.code(), "ZfsCommandFailed");
        assert!(e.to_string().contains("unexpected output"), "{e}");
    }

    #[test]
    fn simple_commands_build_the_expected_argv() {
        let fake = Fake::new(r#"case "$CMD" in "zfs get"*) echo '-' ;; esac"#).with(ALL);
        let z = &fake.zfs;
        z.snapshot("tank/a@final").unwrap();
        z.create_filesystem(&ds("tank/a")).unwrap();
        z.clone_snapshot("tank/a@final", &ds("tank/vm")).unwrap();
        z.rename("tank/a-partial", "tank/a").unwrap();
        z.rename("tank/a@s1", "tank/a@final").unwrap();
        z.destroy("tank/a", true).unwrap();
        z.destroy("tank/a@final", false).unwrap();
        assert_eq!(z.get_property("tank/a", "imgadm:ignore").unwrap(), None);
        z.set_property("tank/a", "imgadm:ignore", "true").unwrap();
        z.abort_resumable_receive(&ds("tank/a")).unwrap();
        assert!(z.pool_exists(&pool("tank")).unwrap());
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
        assert!(z.create_filesystem(&ds("tank")).is_err());
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
"zpool list -H -o name nopool") cat "$F/zpool-list-no-such-pool.stderr" >&2; exit 1 ;;
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
        assert!(!fake.zfs.pool_exists(&pool("nopool")).unwrap());
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
        let e = fake.zfs.create_filesystem(&ds("tank/a/b")).unwrap_err();
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
        let fake = Fake::new(r#"cat "$F/destroy-snapshot-dependent-clones.stderr" >&2; exit 1"#)
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
"zfs destroy"*) cat "$F/openzfs-destroy-snapshot-is-cloned.stderr" >&2; exit 1 ;;
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
if [ $n -lt 3 ]; then cat "$F/zfs-fuse-destroy-busy.stderr" >&2; exit 1; fi"#,
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
            z.resume_token(&ds("tank/partial")).unwrap().as_deref(),
            Some(TOKEN)
        );
        assert_eq!(z.resume_token(&ds("tank/done")).unwrap(), None);
        let e = z.resume_token(&ds("tank/gone")).unwrap_err();
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
            DatasetName::new("tank/a@s").is_err(),
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
"zfs get "*) cat "$F/zfs-fuse-get-receive-resume-token-usage.stderr" >&2; exit 2 ;;
"zpool list -H -o name zdrv1") echo zdrv1 ;;
esac"#,
        )
        .with(ZFS_FUSE);
        let z = &fake.zfs;
        assert_eq!(z.resume_token(&ds("zdrv1/a")).unwrap(), None);
        let e = z.resume_token(&ds("zdrv1/gone")).unwrap_err();
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
        let fake = Fake::new(r#"cat "$F/zfs-fuse-send-t-usage.stderr" >&2; exit 2"#).with(ZFS_FUSE);
        let e = fake.zfs.send_resume(TOKEN).unwrap().finish().unwrap_err();
        assert_eq!(e.code(), "ZfsCommandFailed", "{e}");
        assert!(e.to_string().contains("invalid option 't'"), "{e}");
        assert!(!e.to_string().contains("usage"), "{e}");
    }
}
