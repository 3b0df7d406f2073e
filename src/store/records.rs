//! Durable record files: the on-disk truth that a sled index is rebuilt from.
//!
//! Image manifests (`manifests/<uuid>.json`) and packages
//! (`packages/<id>.json`) are both stored as one small JSON file per record
//! in a directory of their own. A record is written whole or not at all:
//! temp file, fsync, rename over the old one, fsync of the directory. A
//! crash can therefore leave only a `.tmp` file behind, which
//! [`clean_temp`] removes at open.
//!
//! Writes are blocking: callers run them on the blocking pool.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Durably writes `bytes` to `dir/name`, replacing any previous content
/// atomically.
///
/// # Errors
/// Any write, fsync or rename failed; the temp file is removed and the old
/// record, if any, is untouched.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Durably removes `dir/name`; a record that is already gone is not an error.
///
/// # Errors
/// The unlink (other than NotFound) or the directory fsync failed.
pub fn remove(dir: &Path, name: &str) -> io::Result<()> {
    match fs::remove_file(dir.join(name)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    sync_dir(dir)
}

/// fsyncs a directory, so that renames and unlinks in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A records directory that cannot be created or listed.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// The directory itself (the message names it).
    #[error("{}: {source}", .dir.display())]
    Dir {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An entry of a directory that could be opened.
    #[error(transparent)]
    Entry(io::Error),
}

fn dir_error(dir: &Path) -> impl FnOnce(io::Error) -> DirError + '_ {
    move |source| DirError::Dir {
        dir: dir.to_path_buf(),
        source,
    }
}

/// Creates `dir` if needed and removes temp files a crash left in it.
///
/// # Errors
/// The directory cannot be created or read; the message names it.
pub fn open_dir(dir: &Path) -> Result<(), DirError> {
    fs::create_dir_all(dir).map_err(dir_error(dir))?;
    clean_temp(dir)
}

/// Removes `*.tmp` files (half-written records) from `dir`.
///
/// # Errors
/// The directory cannot be read; the message names it.
pub fn clean_temp(dir: &Path) -> Result<(), DirError> {
    for entry in fs::read_dir(dir).map_err(dir_error(dir))? {
        let entry = entry.map_err(DirError::Entry)?;
        if entry.file_name().to_string_lossy().ends_with(".tmp") {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// The uuids of the `<uuid>.json` records in `dir`; other files are ignored.
///
/// # Errors
/// The directory cannot be read; the message names it.
pub fn uuid_stems(dir: &Path) -> Result<Vec<String>, DirError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(dir_error(dir))?;
    for entry in entries {
        let entry = entry.map_err(DirError::Entry)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(uuid) = name.strip_suffix(".json") {
            if uuid::Uuid::parse_str(uuid).is_ok() {
                out.push(uuid.to_string());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replace_remove_and_clean() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let u = "11111111-1111-4111-8111-111111111111";
        write_atomic(d, &format!("{u}.json"), b"{}").unwrap();
        write_atomic(d, &format!("{u}.json"), b"[1]").unwrap();
        assert_eq!(fs::read(d.join(format!("{u}.json"))).unwrap(), b"[1]");
        fs::write(d.join(".x.json.tmp"), b"half").unwrap();
        fs::write(d.join("notes.txt"), b"").unwrap();
        open_dir(d).unwrap();
        assert!(!d.join(".x.json.tmp").exists());
        assert_eq!(uuid_stems(d).unwrap(), [u]);
        remove(d, &format!("{u}.json")).unwrap();
        remove(d, &format!("{u}.json")).unwrap();
        assert!(uuid_stems(d).unwrap().is_empty());
    }
}
