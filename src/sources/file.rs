//! `file` sources: a local directory in the export layout that
//! `?action=export` writes (`service/create.rs`): `NAME-VERSION.imgmanifest`
//! beside `NAME-VERSION.zfs[.EXT]` (`.zvol` for zvols). A v1 manifest with
//! `files[0].path` names its file directly.

use super::client::{Delivery, FetchError};
use super::{remote_image, FileLoc, RemoteImage};
use crate::codec;
use crate::manifest::{Manifest, UncheckedFile};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use tokio::io::AsyncReadExt;

const SUFFIX: &str = ".imgmanifest";

fn local(path: &Path, e: impl std::fmt::Display) -> FetchError {
    FetchError::Local {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// Where the file of the manifest at `DIR/STEM.imgmanifest` is.
fn file_for(dir: &Path, stem: &str, raw: &Manifest) -> PathBuf {
    let f = UncheckedFile::of(raw);
    if let Some(p) = f.and_then(|f| f.path()) {
        let p = Path::new(p);
        if p.components().count() == 1 {
            return dir.join(p);
        }
    }
    let compression = f.and_then(|f| f.compression()).unwrap_or("none");
    let ext = codec::extension(compression);
    let candidates = [
        dir.join(format!("{stem}.zfs{ext}")),
        dir.join(format!("{stem}.zvol{ext}")),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .unwrap_or(&candidates[0])
        .clone()
}

fn list_blocking(dir: &Path) -> Result<Vec<RemoteImage>, FetchError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| local(dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(SUFFIX) && !n.starts_with('.'))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let path = dir.join(&name);
        let stem = &name[..name.len() - SUFFIX.len()];
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                serde_json::from_slice::<serde_json::Value>(&b).map_err(|e| e.to_string())
            });
        let v = match parsed {
            Ok(v) => v,
            Err(e) => {
                // One bad file must not hide the rest of the directory.
                tracing::warn!(path = %path.display(), error = %e, "skipping an unreadable manifest");
                continue;
            }
        };
        if let Some(img) = remote_image(&v, |raw, _| Some(FileLoc::Path(file_for(dir, stem, raw))))
        {
            out.push(img);
        }
    }
    Ok(out)
}

/// Every manifest in the directory.
pub async fn list(dir: PathBuf) -> Result<Vec<RemoteImage>, FetchError> {
    let d = dir.clone();
    tokio::task::spawn_blocking(move || list_blocking(&d))
        .await
        .map_err(|e| local(&dir, e))?
}

/// Streams a local file into `to`, refusing one whose length is not `size`.
pub async fn read(path: &Path, size: Option<u64>, to: &Delivery) -> Result<(), FetchError> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| local(path, e))?;
    let len = f.metadata().await.map_err(|e| local(path, e))?.len();
    if let Some(s) = size.filter(|&s| s != len) {
        return Err(FetchError::Mismatch {
            url: path.display().to_string(),
            detail: format!("the file has {len} bytes, but the manifest declares {s}"),
        });
    }
    loop {
        if (to.stop)() {
            return Err(FetchError::Stopped);
        }
        let mut buf = vec![0u8; codec::CHUNK];
        let mut n = 0;
        while n < buf.len() {
            let k = f.read(&mut buf[n..]).await.map_err(|e| local(path, e))?;
            if k == 0 {
                break;
            }
            n += k;
        }
        if n == 0 {
            return Ok(());
        }
        buf.truncate(n);
        to.stats.received.fetch_add(n as u64, Ordering::Relaxed);
        to.send(Bytes::from(buf)).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn export_layout_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("base-1.0.imgmanifest"),
            json!({"v": 2, "uuid": "u1", "files": [{"compression": "gzip", "sha1": "x", "size": 1}]}).to_string(),
        )
        .unwrap();
        std::fs::write(d.join("base-1.0.zfs.gz"), b"x").unwrap();
        std::fs::write(
            d.join("vol-2.imgmanifest"),
            json!({"v": 2, "uuid": "u2", "type": "zvol", "files": [{"compression": "none"}]})
                .to_string(),
        )
        .unwrap();
        std::fs::write(d.join("vol-2.zvol"), b"y").unwrap();
        std::fs::write(d.join("junk.imgmanifest"), b"{not json").unwrap();
        let list = list_blocking(d).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].file, Some(FileLoc::Path(d.join("base-1.0.zfs.gz"))));
        assert_eq!(list[1].file, Some(FileLoc::Path(d.join("vol-2.zvol"))));
        assert!(list_blocking(&d.join("missing")).is_err());
    }
}
