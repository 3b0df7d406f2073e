//! Test harness: runs the real `imgstore` binary on a temp socket and data
//! dir, and talks raw HTTP/1.1 to it over the Unix socket, so tests control
//! every byte (truncated bodies, bad headers) and depend on no client crate.
//!
//! - [`daemon`]: the daemon under test ([`Daemon`]), its tasks, a
//!   process's memory use;
//! - [`http`]: raw requests and responses ([`request`], [`Resp`]), streamed
//!   uploads, body data ([`pattern`], [`sha1_hex`]);
//! - [`wait`]: waiting for a child process, with a deadline;
//! - [`zfs`]: the test pool, `zfs` commands, datasets and images made from
//!   them, pools of a test's own;
//! - [`nginx`]: nginx and a fault-injecting proxy on loopback;
//! - here: [`tool`], for tests that need a program that may be missing.
//!
//! Shared helpers only, no tests. `use crate::common::*` brings in
//! everything of `daemon`, `http` and `wait`; `zfs` and `nginx` are named
//! (`crate::common::zfs::pool()`), since names such as `install`, `tree`
//! and `zfs` would otherwise crowd every test module.

#![allow(dead_code)]

pub mod daemon;
pub mod http;
pub mod nginx;
pub mod wait;
pub mod zfs;

pub use daemon::*;
pub use http::*;
pub use wait::*;

use std::path::PathBuf;

/// The tool's path, or `None` (outside CI) after saying the check is skipped.
pub fn tool(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{name} is required in CI: apt-get install -y {package}");
        }
        eprintln!("SKIPPED: {name} not found (apt-get install -y {package}); CI would fail here");
    }
    found
}
