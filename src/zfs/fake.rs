//! Test support for the unit tests of `zfs`: the recorded samples in
//! `tests/fixtures/zfs/` and fake `zfs`/`zpool` binaries.
//!
//! The fakes are shell scripts that record their argv and answer as a test
//! tells them, often with a recorded sample (`cat "$F/<sample>" >&2`).
//! Real-pool round trips are in `pool_tests.rs` instead.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use super::{Features, Zfs};

/// The text of a recorded sample in `tests/fixtures/zfs/`, built into the
/// test binary.
macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/zfs/",
            $name
        ))
    };
}
pub(super) use fixture;

/// Where the samples are, for fake scripts (`$F`).
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/zfs");

pub(super) const ALL: Features = Features {
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
pub(super) const ZFS_FUSE: Features = Features {
    receive_no_mount: true,
    ..NONE
};

pub(super) const NONE: Features = Features {
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
/// appends "<zfs|zpool> <args>" to argv.log, sets `$CMD` to that line,
/// `$D` to its directory and `$F` to the samples' directory, then runs
/// `body`.
pub(super) struct Fake {
    dir: tempfile::TempDir,
    pub(super) zfs: Zfs,
}

impl Fake {
    pub(super) fn new(body: &str) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let script = format!(
            "#!/bin/sh\nD='{d}'\nF='{FIXTURES}'\nCMD=\"$(basename \"$0\") $*\"\nprintf '%s\\n' \"$CMD\" >> \"$D/argv.log\"\n{body}\n"
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
    pub(super) fn with(self, features: Features) -> Fake {
        self.zfs.features.set(features).unwrap();
        self
    }

    pub(super) fn log(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("argv.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub(super) fn file(&self, name: &str) -> Vec<u8> {
        fs::read(self.dir.path().join(name)).unwrap_or_default()
    }
}
