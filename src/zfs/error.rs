//! [`ZfsError`], its stable codes, and the classification of a failed
//! command's stderr into it.
//!
//! Everything here is pure text work: no command is run. The one refinement
//! that needs to ask ZFS (a "dataset does not exist" that is really a
//! missing pool) is `Runner::refine` in `proc.rs`. The texts these rules
//! match are recorded in the module docs of `zfs` and replayed by the tests
//! below from `tests/fixtures/zfs/`.

use std::io;

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
    /// The command was killed through a [`Canceller`](super::Canceller).
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

// ---- classification ---------------------------------------------------------

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

/// [`ZfsError::NotAvailable`] if `stderr` says ZFS is unreachable. Also used
/// on the output of feature probes, which "fail" by design.
pub(super) fn check_not_available(stderr: &str) -> Result<()> {
    match NOT_AVAILABLE.iter().find(|p| stderr.contains(*p)) {
        Some(_) => Err(ZfsError::NotAvailable {
            detail: first_lines(stderr),
        }),
        None => Ok(()),
    }
}

/// Classifies a failed command from its stderr. `subject` is the dataset
/// the command was about, used when stderr names none.
pub(super) fn classify(argv: &str, status: Option<i32>, stderr: &str, subject: &str) -> ZfsError {
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

/// Receive-specific texts first, then [`classify`].
pub(super) fn classify_receive(
    argv: &str,
    status: Option<i32>,
    stderr: &str,
    target: &str,
) -> ZfsError {
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

/// For commands creating `name`: "does not exist" is about the parent.
pub(super) fn not_found_is_parent(err: ZfsError, name: &str) -> ZfsError {
    match err {
        ZfsError::DatasetNotFound { name: n } if n == name => ZfsError::DatasetNotFound {
            name: parent_of(name).to_string(),
        },
        e => e,
    }
}

/// `zfs rename` says "cannot rename 'FROM': dataset already exists" when
/// the *target* exists.
pub(super) fn exists_means_target(err: ZfsError, from: &str, to: &str) -> ZfsError {
    match err {
        ZfsError::DatasetExists { name } if name == from => ZfsError::DatasetExists {
            name: to.to_string(),
        },
        e => e,
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

// ---- taking names apart -------------------------------------------------------
//
// These slice names as stderr and callers give them, unvalidated (a name in
// an error message has not been through `names.rs`), so they live here with
// the classification that needs them most.

/// The first `'...'`-quoted text in `s`.
pub(super) fn first_quoted(s: &str) -> Option<&str> {
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

/// The dataset part of a name (`pool/ds@snap` gives `pool/ds`).
fn dataset_part(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

/// The pool part of a name (`pool/ds@snap` gives `pool`).
pub(super) fn pool_of(name: &str) -> &str {
    let end = name.find(['/', '@']).unwrap_or(name.len());
    &name[..end]
}

/// The parent of a dataset (`pool/a/b` gives `pool/a`; a pool is its own).
fn parent_of(name: &str) -> &str {
    match name.rfind('/') {
        Some(i) => &name[..i],
        None => name,
    }
}

#[cfg(test)]
mod tests {
    //! Classification of stderr recorded from real zfs-fuse, OpenZFS and
    //! illumos (`tests/fixtures/zfs/`), and the stable codes.

    use super::*;
    use crate::zfs::fake::fixture;
    use crate::zfs::names::invalid;
    use crate::zfs::proc::display_argv;
    use std::path::Path;

    fn cls(stderr: &str, subject: &str) -> ZfsError {
        classify("zfs x", Some(1), stderr, subject)
    }

    #[test]
    fn classifies_not_available() {
        for stderr in [
            fixture!("zfs-fuse-daemon-down.stderr"),
            // illumos / FreeBSD
            fixture!("illumos-libzfs-init-failed.stderr"),
            // OpenZFS libzfs_error_init()
            fixture!("openzfs-modules-not-loaded.stderr"),
            fixture!("openzfs-no-dev-zfs.stderr"),
            fixture!("openzfs-not-root.stderr"),
            fixture!("openzfs-libzfs-init-failed.stderr"),
        ] {
            let e = cls(stderr, "tank");
            assert_eq!(e.code(), "ZfsNotAvailable", "{stderr}");
        }
    }

    #[test]
    fn classifies_out_of_space() {
        // zfs-fuse, snapshot of a dataset in a full pool (recorded).
        let e = cls(
            fixture!("zfs-fuse-snapshot-out-of-space.stderr"),
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
            fixture!("receive-out-of-space.stderr"),
            "p/img-partial",
        );
        assert!(
            matches!(&e, ZfsError::OutOfSpace { name, .. } if name == "p/img-partial"),
            "{e:?}"
        );
        let e = cls(fixture!("create-quota-exceeded.stderr"), "p/d");
        assert_eq!(e.code(), "InsufficientStorage", "{e:?}");
    }

    #[test]
    fn classifies_missing_pool_and_dataset() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // zpool list nopool (zfs-fuse, OpenZFS, illumos)
            (
                fixture!("zpool-list-no-such-pool.stderr"),
                "nopool",
                "PoolNotFound",
                "nopool",
            ),
            // zfs create nopool/x
            (
                fixture!("create-no-such-pool.stderr"),
                "nopool/x",
                "PoolNotFound",
                "nopool",
            ),
            // zfs rename zdrv1/a nopool/b (zfs-fuse)
            (
                fixture!("zfs-fuse-rename-no-such-pool.stderr"),
                "zdrv1/a",
                "PoolNotFound",
                "nopool",
            ),
            (
                fixture!("open-missing-dataset.stderr"),
                "zdrv1/nope",
                "DatasetNotFound",
                "zdrv1/nope",
            ),
            (
                fixture!("open-missing-snapshot.stderr"),
                "zdrv1/nope@s",
                "DatasetNotFound",
                "zdrv1/nope@s",
            ),
            // zfs snapshot zdrv1/nope@s names the dataset
            (
                fixture!("open-missing-dataset.stderr"),
                "zdrv1/nope@s",
                "DatasetNotFound",
                "zdrv1/nope",
            ),
            // zfs-fuse send of a missing snapshot
            (
                fixture!("zfs-fuse-send-missing-snapshot.stderr"),
                "zdrv1@nope",
                "DatasetNotFound",
                "zdrv1@nope",
            ),
            // zfs-fuse send -i with a missing source
            (
                fixture!("zfs-fuse-send-missing-incremental-source.stderr"),
                "zdrv1/big@s",
                "DatasetNotFound",
                "zdrv1/big@nope",
            ),
            (
                fixture!("zfs-fuse-send-missing-incremental-origin.stderr"),
                "tank/c@s",
                "DatasetNotFound",
                "tank/o@final",
            ),
            // OpenZFS destroy of a missing snapshot
            (
                fixture!("openzfs-destroy-missing-snapshot.stderr"),
                "tank/a@nope",
                "DatasetNotFound",
                "tank/a@nope",
            ),
            // rename to a missing parent (zfs-fuse)
            (
                fixture!("zfs-fuse-rename-missing-parent.stderr"),
                "zdrv1/a",
                "DatasetNotFound",
                "zdrv1/no/b",
            ),
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
            (fixture!("create-exists.stderr"), "zdrv1/a", "zdrv1/a"),
            (
                fixture!("snapshot-exists.stderr"),
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
        let e = rc(fixture!("receive-destination-exists.stderr"), "zdrv1/b");
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == "zdrv1/b"),
            "{e:?}"
        );
        let e = rc(fixture!("receive-destination-exists.stderr"), "zdrv1/b@x");
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == "zdrv1/b"),
            "{e:?}"
        );
        // ... with -F while it has snapshots.
        let e = rc(
            fixture!("receive-destination-has-snapshots.stderr"),
            "zdrv1/b",
        );
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == "zdrv1/b"),
            "{e:?}"
        );
        // zfs-fuse: parent missing names the target, then the generic line.
        let e = rc(
            fixture!("zfs-fuse-receive-missing-parent.stderr"),
            "zdrv1/nope/x",
        );
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "zdrv1/nope"),
            "{e:?}"
        );
        // incremental stream into a missing target
        let e = rc(
            fixture!("receive-incremental-missing-destination.stderr"),
            "zdrv2/inc",
        );
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "zdrv2/inc"),
            "{e:?}"
        );
        // everything about the stream itself is a command failure
        for stderr in [
            fixture!("receive-bad-magic.stderr"),
            fixture!("receive-empty-stream.stderr"),
            fixture!("receive-invalid-backup-stream.stderr"),
            fixture!("receive-incremental-wrong-base.stderr"),
            fixture!("receive-missing-clone-origin.stderr"),
            // OpenZFS 2.x, resumable receive interrupted
            fixture!("openzfs-receive-resumable-interrupted.stderr"),
            fixture!("receive-invalid-option-s.stderr"),
        ] {
            let e = rc(stderr, "zdrv1/t");
            assert_eq!(e.code(), "ZfsCommandFailed", "{stderr}");
            let ZfsError::CommandFailed {
                stderr: kept,
                status,
                ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(kept.as_str(), stderr.trim_end());
            assert_eq!(*status, Some(1));
        }
    }

    /// Texts recorded from OpenZFS 2.3.2 (see the module docs of `zfs`).
    #[test]
    fn classifies_openzfs_2_3_texts() {
        let rc =
            |stderr: &str, target: &str| classify_receive("zfs receive", Some(1), stderr, target);
        let e = rc(
            fixture!("openzfs-receive-missing-parent.stderr"),
            "tank/no/such/x",
        );
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "tank/no/such"),
            "{e:?}"
        );
        // Refined into PoolNotFound by asking zpool.
        let e = rc(fixture!("openzfs-receive-missing-pool.stderr"), "nopool/x");
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "nopool"),
            "{e:?}"
        );
        let e = cls(
            fixture!("openzfs-send-missing-incremental-source.stderr"),
            "tank/src@s2",
        );
        assert!(
            matches!(&e, ZfsError::DatasetNotFound { name } if name == "tank/src@nope"),
            "{e:?}"
        );
        let e = exists_means_target(
            cls(fixture!("openzfs-rename-exists.stderr"), "tank/src@s1"),
            "tank/src@s1",
            "tank/src@s2",
        );
        assert!(
            matches!(&e, ZfsError::DatasetExists { name } if name == "tank/src@s2"),
            "{e:?}"
        );
        let busy = cls(fixture!("openzfs-unmount-busy.stderr"), "tank/busy");
        assert!(busy.is_busy(), "{busy:?}");
        for stderr in [
            fixture!("openzfs-receive-incomplete-stream.stderr"),
            fixture!("openzfs-receive-abort-without-state.stderr"),
            fixture!("openzfs-send-resume-corrupt-token.stderr"),
            fixture!("openzfs-mount-already-mounted.stderr"),
        ] {
            let e = rc(stderr, "tank/part");
            assert_eq!(e.code(), "ZfsCommandFailed", "{stderr}");
            assert!(!e.is_busy());
        }
    }

    #[test]
    fn classifies_dependent_clones() {
        let e = cls(
            fixture!("destroy-snapshot-dependent-clones.stderr"),
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
            fixture!("destroy-filesystem-dependent-clones.stderr"),
            "zdrv1/a",
        );
        assert!(
            matches!(&e, ZfsError::HasDependentClones { name, clones } if name == "zdrv1/a" && clones.len() == 1)
        );
        // OpenZFS batched snapshot destroy
        let e = cls(
            fixture!("openzfs-destroy-snapshot-is-cloned.stderr"),
            "tank/a@s",
        );
        assert!(
            matches!(&e, ZfsError::HasDependentClones { name, clones } if name == "tank/a@s" && clones.is_empty()),
            "{e:?}"
        );
    }

    #[test]
    fn usage_errors_are_command_failures_without_the_usage_text() {
        let stderr = fixture!("zfs-fuse-receive-s-usage.stderr");
        let e = cls(stderr, "t/x");
        let ZfsError::CommandFailed { stderr: kept, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(kept, "invalid option 's'");
        let e = cls(fixture!("zfs-fuse-get-clones-usage.stderr"), "t/x");
        assert!(
            e.to_string()
                .contains("bad property list: invalid property 'clones'"),
            "{e}"
        );
        assert!(!e.to_string().contains("usage"), "{e}");
    }

    #[test]
    fn busy_is_detected() {
        assert!(cls(fixture!("zfs-fuse-destroy-busy.stderr"), "zdrv1/t4").is_busy());
        assert!(cls(fixture!("zfs-fuse-rename-busy.stderr"), "zdrv1/t6").is_busy());
        assert!(cls(fixture!("openzfs-destroy-busy.stderr"), "tank/x").is_busy());
        assert!(!cls(fixture!("destroy-permission-denied.stderr"), "tank/x").is_busy());
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
}
