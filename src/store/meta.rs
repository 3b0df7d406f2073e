//! Image metadata: sled is the index, one JSON record file per image is the
//! durable truth it can be rebuilt from.
//!
//! sled 0.34 is beta-quality (peers.md section D: corruption after abrupt
//! stops, writes not durable until a flush). So every change is written
//! twice, in this order: `manifests/<uuid>.json` (temp file, fsync, rename,
//! directory fsync), then the sled tree `images`, then `flush()`. Only then is
//! the change acknowledged. At open, the sled keys are compared with the
//! record files; where they disagree, or sled cannot be opened at all, the
//! records win and sled is rebuilt from them.
//!
//! All records are also held in memory (`cache`), so reads never touch the
//! disk or parse JSON; the store is small (a node keeps hundreds of images,
//! tens of thousands at most) and listing must be fast.
//!
//! Writes are blocking: callers run them on the blocking pool.

use super::records;
use crate::manifest::Manifest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// What the store keeps about one image: the manifest as served, plus the
/// fields IMGAPI stores but never outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub manifest: Manifest,
    /// IMGAPI's `activated`: state is derived from it and `disabled`.
    #[serde(default)]
    pub activated: bool,
    /// Base64 MD5 of the file, served as `Content-MD5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_md5: Option<String>,
}

impl ImageRecord {
    pub fn uuid(&self) -> &str {
        self.manifest
            .get("uuid")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    }

    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.manifest.get(name).and_then(|v| v.as_str())
    }

    /// `files[0]`, if the image has a file.
    pub fn file(&self) -> Option<&serde_json::Map<String, serde_json::Value>> {
        self.manifest.get("files")?.get(0)?.as_object()
    }

    /// The SHA-256 hex of the image's blob, from `files[0].digest`.
    pub fn blob_sha256(&self) -> Option<&str> {
        self.file()?
            .get("digest")?
            .as_str()?
            .strip_prefix("sha256:")
    }
}

pub struct Meta {
    db: sled::Db,
    images: sled::Tree,
    records: PathBuf,
    cache: RwLock<BTreeMap<String, Arc<ImageRecord>>>,
}

impl Meta {
    /// Opens the database under `data_dir/db` and the records under
    /// `data_dir/manifests`, reconciling the two (records win).
    ///
    /// # Errors
    /// The records directory cannot be read, a record cannot be parsed, or
    /// sled cannot be opened even after moving a broken database aside.
    pub fn open(data_dir: &Path) -> Result<Meta, String> {
        let records = data_dir.join("manifests");
        records::open_dir(&records)?;
        let db_path = data_dir.join("db");
        let db = match sled::Config::new().path(&db_path).open() {
            Ok(db) => db,
            Err(e) => {
                // The records are the truth: keep the broken database for a
                // post-mortem and start a fresh one, rebuilt below.
                let aside = data_dir.join(format!("db.broken-{}", chrono::Utc::now().timestamp()));
                tracing::error!(error = %e, moved_to = %aside.display(), "sled database cannot be opened; rebuilding it from the manifest records");
                fs::rename(&db_path, &aside).map_err(|e2| {
                    format!(
                        "sled database {}: {e}; moving it aside failed: {e2}",
                        db_path.display()
                    )
                })?;
                sled::Config::new()
                    .path(&db_path)
                    .open()
                    .map_err(|e| format!("sled database {}: {e}", db_path.display()))?
            }
        };
        let images = db.open_tree("images").map_err(|e| e.to_string())?;
        let meta = Meta {
            db,
            images,
            records,
            cache: RwLock::new(BTreeMap::new()),
        };
        meta.load()?;
        Ok(meta)
    }

    /// Loads the cache from sled, after making sled agree with the records.
    fn load(&self) -> Result<(), String> {
        let on_disk = self.record_uuids()?;
        let mut cache = BTreeMap::new();
        let mut repaired = 0usize;
        for item in self.images.iter() {
            let (k, v) = item.map_err(|e| e.to_string())?;
            let uuid = String::from_utf8_lossy(&k).into_owned();
            if !on_disk.contains(&uuid) {
                // Deleted: the record goes first, so sled's copy is stale.
                self.images.remove(&k).map_err(|e| e.to_string())?;
                repaired += 1;
                continue;
            }
            match serde_json::from_slice::<ImageRecord>(&v) {
                Ok(rec) => {
                    cache.insert(uuid, Arc::new(rec));
                }
                Err(_) => {
                    // Reloaded from the record below.
                }
            }
        }
        for uuid in &on_disk {
            let rec = self.read_record(uuid)?;
            let stale = cache.get(uuid).is_none_or(|c| **c != rec);
            if stale {
                let bytes = serde_json::to_vec(&rec).map_err(|e| e.to_string())?;
                self.images
                    .insert(uuid.as_bytes(), bytes)
                    .map_err(|e| e.to_string())?;
                cache.insert(uuid.clone(), Arc::new(rec));
                repaired += 1;
            }
        }
        if repaired > 0 {
            tracing::warn!(
                repaired,
                "sled index disagreed with the manifest records; rebuilt from the records"
            );
            self.db.flush().map_err(|e| e.to_string())?;
        }
        *self.cache.write().unwrap() = cache;
        Ok(())
    }

    fn record_uuids(&self) -> Result<Vec<String>, String> {
        records::uuid_stems(&self.records)
    }

    fn record_path(&self, uuid: &str) -> PathBuf {
        self.records.join(format!("{uuid}.json"))
    }

    fn read_record(&self, uuid: &str) -> Result<ImageRecord, String> {
        let path = self.record_path(uuid);
        let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn get(&self, uuid: &str) -> Option<Arc<ImageRecord>> {
        self.cache.read().unwrap().get(uuid).cloned()
    }

    /// A snapshot of every record, in uuid order.
    pub fn all(&self) -> Vec<Arc<ImageRecord>> {
        self.cache.read().unwrap().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.cache.read().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Durably stores a record (record file, then sled, then flush).
    ///
    /// # Errors
    /// Any write or fsync failed. The cache is updated only on success.
    pub fn put(&self, rec: ImageRecord) -> io::Result<Arc<ImageRecord>> {
        let uuid = rec.uuid().to_string();
        let bytes = serde_json::to_vec(&rec).map_err(io::Error::other)?;
        records::write_atomic(&self.records, &format!("{uuid}.json"), &bytes)?;
        self.images
            .insert(uuid.as_bytes(), bytes)
            .map_err(io::Error::other)?;
        self.db.flush().map_err(io::Error::other)?;
        let rec = Arc::new(rec);
        self.cache.write().unwrap().insert(uuid, rec.clone());
        Ok(rec)
    }

    /// Durably removes a record (record file first, so a crash in between
    /// can only leave a stale sled entry, which `open` drops).
    pub fn delete(&self, uuid: &str) -> io::Result<()> {
        records::remove(&self.records, &format!("{uuid}.json"))?;
        self.images
            .remove(uuid.as_bytes())
            .map_err(io::Error::other)?;
        self.db.flush().map_err(io::Error::other)?;
        self.cache.write().unwrap().remove(uuid);
        Ok(())
    }

    /// Opens another sled tree in the same database (tasks, packages, ...).
    pub fn tree(&self, name: &str) -> sled::Result<sled::Tree> {
        self.db.open_tree(name)
    }

    /// Flushes sled (at shutdown and after writes to other trees).
    pub fn flush(&self) -> sled::Result<usize> {
        self.db.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(uuid: &str, name: &str) -> ImageRecord {
        ImageRecord {
            manifest: json!({"uuid": uuid, "name": name})
                .as_object()
                .unwrap()
                .clone(),
            activated: false,
            content_md5: None,
        }
    }

    const U1: &str = "11111111-1111-4111-8111-111111111111";
    const U2: &str = "22222222-2222-4222-8222-222222222222";

    #[test]
    fn put_get_delete_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(rec(U1, "a")).unwrap();
            m.put(rec(U2, "b")).unwrap();
            m.delete(U2).unwrap();
        }
        let m = Meta::open(dir.path()).unwrap();
        assert_eq!(m.get(U1).unwrap().str_field("name"), Some("a"));
        assert!(m.get(U2).is_none());
    }

    #[test]
    fn lost_database_is_rebuilt_from_records() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(rec(U1, "a")).unwrap();
            m.put(rec(U2, "b")).unwrap();
        }
        fs::remove_dir_all(dir.path().join("db")).unwrap();
        let m = Meta::open(dir.path()).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(U2).unwrap().str_field("name"), Some("b"));
    }

    #[test]
    fn corrupt_database_is_moved_aside_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(rec(U1, "a")).unwrap();
        }
        // Overwrite every sled file with garbage.
        for e in fs::read_dir(dir.path().join("db")).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                fs::write(&p, vec![0xffu8; 4096]).unwrap();
            }
        }
        let m = Meta::open(dir.path()).unwrap();
        assert_eq!(m.get(U1).unwrap().str_field("name"), Some("a"));
    }

    #[test]
    fn stale_sled_entry_without_record_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(rec(U1, "a")).unwrap();
        }
        // A crash between removing the record and the sled entry.
        fs::remove_file(dir.path().join(format!("manifests/{U1}.json"))).unwrap();
        let m = Meta::open(dir.path()).unwrap();
        assert!(m.is_empty());
    }
}
