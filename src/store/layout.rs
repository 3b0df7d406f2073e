//! Where everything lives under the data dir, and the names of the sled
//! trees: each is spelled here once, so the daemon, `fsck` and `vacuum`
//! cannot disagree about them. Also [`PidLock`], the lock that says which
//! process owns a data dir (`imgstore.lock`) or a socket (`<socket>.lock`,
//! see [`crate::server`]).
//!
//! ```text
//! DATA_DIR/
//!   imgstore.lock          the owner's pid, flock'ed (PidLock)
//!   db/                    sled: the trees in [`tree`]
//!   db.broken-STAMP/       a database that could not be opened, kept aside
//!   manifests/UUID.json    image records, the truth sled is rebuilt from
//!   manifests/.clean       clean-shutdown marker (store::meta)
//!   blobs/sha256/HEX       image files (store::cas)
//!   ingest/*.tmp           files being received (store::cas)
//!   packages/ID.json       package records (store::packages)
//! ```

use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The names of the sled trees in `db/`.
pub mod tree {
    /// Image records, by uuid (store::meta).
    pub const IMAGES: &str = "images";
    /// Tasks, by id (store::tasks).
    pub const TASKS: &str = "tasks";
    /// Undo steps of running tasks, `TASK/SEQ` (service::journal).
    pub const JOURNAL: &str = "journal";
    /// The source list, one key (crate::sources).
    pub const SOURCES: &str = "sources";
    /// Packages, by id (store::packages).
    pub const PACKAGES: &str = "packages";
}

/// The data-dir lock: held by the daemon and by offline verbs (`fsck`).
pub fn lock(data_dir: &Path) -> PathBuf {
    data_dir.join("imgstore.lock")
}

/// The sled database.
pub fn db(data_dir: &Path) -> PathBuf {
    data_dir.join("db")
}

/// What a database that cannot be opened is renamed to start with.
pub const BROKEN_DB_PREFIX: &str = "db.broken-";

/// A new, unique name to move a broken database aside to.
pub fn broken_db(data_dir: &Path) -> PathBuf {
    data_dir.join(format!("{BROKEN_DB_PREFIX}{}", crate::time::name_stamp()))
}

/// The image records (`UUID.json`).
pub fn records(data_dir: &Path) -> PathBuf {
    data_dir.join("manifests")
}

/// The blobs, by SHA-256.
pub fn blobs(data_dir: &Path) -> PathBuf {
    data_dir.join("blobs").join("sha256")
}

/// Temp files of ingests in progress.
pub fn ingest(data_dir: &Path) -> PathBuf {
    data_dir.join("ingest")
}

/// The package records.
pub fn packages(data_dir: &Path) -> PathBuf {
    data_dir.join("packages")
}

/// Why a [`PidLock`] was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it; the message names the thing locked, the
    /// holder's pid and the lock file.
    #[error("{0}")]
    Held(String),
    #[error("lock file {}: {source}", .path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive lock on a file that holds the owner's pid.
pub struct PidLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl PidLock {
    /// Takes the lock without waiting.
    ///
    /// # Errors
    /// Another process holds it (the message names its pid), or the file
    /// cannot be opened.
    pub fn acquire(path: &Path, what: &str) -> Result<PidLock, LockError> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| LockError::File {
                path: path.to_path_buf(),
                source,
            })?;
        // A daemon killed a moment ago can leave the lock with a child it
        // was starting (an open file description is shared until exec):
        // when the pid recorded in the file is dead, wait for the lock
        // instead of refusing at once.
        let started = std::time::Instant::now();
        let mut file = file;
        let mut first_holders: Option<Vec<String>> = None;
        let mut lock = loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(l) => break l,
                Err((mut f, _)) => {
                    let mut pid = String::new();
                    let _ = f.rewind();
                    let _ = f.read_to_string(&mut pid);
                    let pid = pid.trim().to_string();
                    let dead = pid.parse::<i32>().is_ok_and(|p| {
                        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None)
                            == Err(nix::errno::Errno::ESRCH)
                    });
                    if dead && first_holders.is_none() {
                        first_holders = Some(lock_holders(path));
                    }
                    if dead && started.elapsed() < LOCK_WAIT_FOR_DEAD_HOLDER {
                        std::thread::sleep(Duration::from_millis(20));
                        file = f;
                        continue;
                    }
                    let holders = lock_holders(path);
                    return Err(LockError::Held(format!(
                        "{what} is in use by another imgstore daemon (pid {}{}, lock {}){}",
                        if pid.is_empty() { "unknown" } else { &pid },
                        if dead { ", which has exited" } else { "" },
                        path.display(),
                        if dead && !holders.is_empty() {
                            format!("; still held by {}", holders.join(", "))
                        } else {
                            String::new()
                        }
                    )));
                }
            }
        };
        if started.elapsed() > Duration::from_millis(100) {
            tracing::warn!(lock = %path.display(), waited_ms = started.elapsed().as_millis() as u64, holders = ?first_holders, "waited for the lock of a daemon that had exited");
        }
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            writeln!(f, "{}", std::process::id())?;
            f.sync_all()
        };
        write(&mut lock).map_err(|source| LockError::File {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(PidLock {
            _lock: lock,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// How long a start waits for a lock whose recorded owner has exited.
const LOCK_WAIT_FOR_DEAD_HOLDER: Duration = Duration::from_secs(10);

/// Processes that have `path` open, as "pid (command)" (Linux /proc; empty
/// elsewhere), for the message when a lock stays held.
fn lock_holders(path: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if pid.parse::<u32>().is_err() {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == path))
        {
            let cmd = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            out.push(format!("{pid} ({})", cmd.trim()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_under_the_data_dir() {
        let d = Path::new("/var/imgstore");
        assert_eq!(lock(d), Path::new("/var/imgstore/imgstore.lock"));
        assert_eq!(db(d), Path::new("/var/imgstore/db"));
        assert_eq!(records(d), Path::new("/var/imgstore/manifests"));
        assert_eq!(blobs(d), Path::new("/var/imgstore/blobs/sha256"));
        assert_eq!(ingest(d), Path::new("/var/imgstore/ingest"));
        assert_eq!(packages(d), Path::new("/var/imgstore/packages"));
        let broken = broken_db(d);
        assert_eq!(broken.parent(), Some(d));
        assert!(broken
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(BROKEN_DB_PREFIX));
    }

    #[test]
    fn a_held_lock_names_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = lock(dir.path());
        let held = PidLock::acquire(&path, "data dir x").unwrap();
        assert_eq!(held.path(), path);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap().trim(),
            std::process::id().to_string()
        );
        let e = PidLock::acquire(&path, "data dir x")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("data dir x is in use"), "{e}");
        assert!(e.contains(&std::process::id().to_string()), "{e}");
        drop(held);
        assert!(PidLock::acquire(&path, "data dir x").is_ok());
    }
}
