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
        // sled 0.34 may panic rather than return an error on a damaged
        // database (peers.md section D, #1533): both count as "cannot be
        // opened", and so does a panic while reading it back.
        let first = catch(|| {
            let db = open_db(&db_path)?;
            Meta::with_db(db, records.clone())
        });
        match first {
            Ok(meta) => Ok(meta),
            Err(Broken::Records(e)) => Err(e),
            Err(Broken::Db(e)) => {
                // The records are the truth: keep the broken database for a
                // post-mortem and start a fresh one, rebuilt from them.
                let aside = data_dir.join(format!(
                    "db.broken-{}",
                    chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
                ));
                tracing::error!(error = %e, moved_to = %aside.display(), "sled database cannot be opened; rebuilding it from the manifest records");
                if db_path.exists() {
                    fs::rename(&db_path, &aside).map_err(|e2| {
                        format!(
                            "sled database {}: {e}; moving it aside failed: {e2}",
                            db_path.display()
                        )
                    })?;
                }
                catch(|| {
                    let db = open_db(&db_path)?;
                    Meta::with_db(db, records.clone())
                })
                .map_err(|e| match e {
                    Broken::Db(e) | Broken::Records(e) => e,
                })
            }
        }
    }

    fn with_db(db: sled::Db, records: PathBuf) -> Result<Meta, Broken> {
        let images = db
            .open_tree("images")
            .map_err(|e| Broken::Db(e.to_string()))?;
        let meta = Meta {
            db,
            images,
            records,
            cache: RwLock::new(BTreeMap::new()),
        };
        meta.load()?;
        Ok(meta)
    }

    /// Makes sled and the cache agree with the record files again (records
    /// win), as at open; returns how many entries were repaired.
    ///
    /// # Errors
    /// The records cannot be listed, or sled failed.
    pub fn reindex(&self) -> Result<usize, String> {
        match catch(|| self.load()) {
            Ok(n) => Ok(n),
            Err(Broken::Db(e) | Broken::Records(e)) => Err(e),
        }
    }

    /// Loads the cache from sled, after making sled agree with the records.
    /// A record file that cannot be parsed is restored from sled's copy when
    /// that one is good, and otherwise left out (and reported by fsck), so
    /// one damaged file does not keep the daemon from starting.
    fn load(&self) -> Result<usize, Broken> {
        let db_err = |e: sled::Error| Broken::Db(e.to_string());
        let on_disk: std::collections::BTreeSet<String> = self
            .record_uuids()
            .map_err(Broken::Records)?
            .into_iter()
            .collect();
        let mut cache = BTreeMap::new();
        let mut repaired = 0usize;
        for item in self.images.iter() {
            let (k, v) = item.map_err(db_err)?;
            let uuid = String::from_utf8_lossy(&k).into_owned();
            if !on_disk.contains(&uuid) {
                // Deleted: the record goes first, so sled's copy is stale.
                self.images.remove(&k).map_err(db_err)?;
                repaired += 1;
                continue;
            }
            if let Ok(rec) = serde_json::from_slice::<ImageRecord>(&v) {
                cache.insert(uuid, Arc::new(rec));
            }
            // Otherwise reloaded from the record below.
        }
        for uuid in &on_disk {
            let rec = match self.read_record(uuid) {
                Ok(rec) => rec,
                Err(e) => match cache.get(uuid).filter(|r| r.uuid() == uuid) {
                    Some(good) => {
                        tracing::error!(image = %uuid, error = %e, "manifest record is damaged; restoring it from the sled index");
                        let good = (**good).clone();
                        self.put(good).map_err(|e| {
                            Broken::Records(format!("restoring record {uuid}: {e}"))
                        })?;
                        repaired += 1;
                        continue;
                    }
                    None => {
                        tracing::error!(image = %uuid, error = %e, "manifest record is damaged and sled has no good copy; the image is left out (see `imgstore fsck`)");
                        cache.remove(uuid);
                        if self
                            .images
                            .remove(uuid.as_bytes())
                            .map_err(db_err)?
                            .is_some()
                        {
                            repaired += 1;
                        }
                        continue;
                    }
                },
            };
            let stale = cache.get(uuid).is_none_or(|c| **c != rec);
            if stale {
                let bytes = serde_json::to_vec(&rec).map_err(|e| Broken::Records(e.to_string()))?;
                self.images.insert(uuid.as_bytes(), bytes).map_err(db_err)?;
                cache.insert(uuid.clone(), Arc::new(rec));
                repaired += 1;
            }
        }
        if repaired > 0 {
            tracing::warn!(
                repaired,
                "sled index disagreed with the manifest records; rebuilt from the records"
            );
            self.db.flush().map_err(db_err)?;
        }
        *self.cache.write().unwrap() = cache;
        Ok(repaired)
    }

    /// The records directory (`manifests/`).
    pub fn records_dir(&self) -> &Path {
        &self.records
    }

    /// Every record file, parsed, in uuid order (for checks).
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn read_records(&self) -> Result<Vec<RecordFile>, String> {
        read_records(&self.records)
    }

    /// Every entry of the sled index, parsed (`None` if it does not parse).
    ///
    /// # Errors
    /// sled failed (or panicked) while reading.
    pub fn index_entries(&self) -> Result<Vec<(String, Option<ImageRecord>)>, String> {
        match catch(|| index_entries(&self.images).map_err(Broken::Db)) {
            Ok(v) => Ok(v),
            Err(Broken::Db(e) | Broken::Records(e)) => Err(e),
        }
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

/// A record file's uuid and its parsed content (or why it does not parse).
pub type RecordFile = (String, Result<ImageRecord, String>);

/// Why opening failed: the database (rebuildable) or the records (not).
enum Broken {
    Db(String),
    Records(String),
}

/// Runs `f`, turning a panic (sled's way of reporting some corruption) into
/// [`Broken::Db`].
fn catch<T>(f: impl FnOnce() -> Result<T, Broken>) -> Result<T, Broken> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into());
        Err(Broken::Db(format!("sled panicked: {msg}")))
    })
}

fn open_db(path: &Path) -> Result<sled::Db, Broken> {
    sled::Config::new()
        .path(path)
        .open()
        .map_err(|e| Broken::Db(format!("sled database {}: {e}", path.display())))
}

fn index_entries(tree: &sled::Tree) -> Result<Vec<(String, Option<ImageRecord>)>, String> {
    let mut out = Vec::new();
    for item in tree.iter() {
        let (k, v) = item.map_err(|e| e.to_string())?;
        let uuid = String::from_utf8_lossy(&k).into_owned();
        out.push((uuid, serde_json::from_slice(&v).ok()));
    }
    Ok(out)
}

/// Every record file in `dir`, parsed, in uuid order.
///
/// # Errors
/// The directory cannot be listed.
pub fn read_records(dir: &Path) -> Result<Vec<RecordFile>, String> {
    let mut uuids = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(uuid) = name.strip_suffix(".json") {
            if uuid::Uuid::parse_str(uuid).is_ok() {
                uuids.push(uuid.to_string());
            }
        }
    }
    uuids.sort();
    Ok(uuids
        .into_iter()
        .map(|u| {
            let path = dir.join(format!("{u}.json"));
            let rec = fs::read(&path)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|b| {
                    serde_json::from_slice::<ImageRecord>(&b)
                        .map_err(|e| format!("{}: {e}", path.display()))
                });
            (u, rec)
        })
        .collect())
}

/// The raw key/value pairs of sled trees (the database under
/// `data_dir/db`), read without reconciling anything with the records: for
/// a check that must not repair. sled may still replay its own log while
/// opening.
pub type RawTree = Vec<(Vec<u8>, Vec<u8>)>;

/// Reads `trees` from the database under `data_dir/db`, one [`RawTree`]
/// each, in order.
///
/// # Errors
/// The database does not exist, cannot be opened or read (a panic counts
/// as an error).
pub fn inspect_trees(data_dir: &Path, trees: &[&str]) -> Result<Vec<RawTree>, String> {
    let path = data_dir.join("db");
    if !path.exists() {
        return Err(format!("sled database {} does not exist", path.display()));
    }
    let r = catch(|| {
        let db = open_db(&path)?;
        let mut out = Vec::new();
        for name in trees {
            let tree = db.open_tree(name).map_err(|e| Broken::Db(e.to_string()))?;
            let mut kv = Vec::new();
            for item in tree.iter() {
                let (k, v) = item.map_err(|e| Broken::Db(e.to_string()))?;
                kv.push((k.to_vec(), v.to_vec()));
            }
            out.push(kv);
        }
        Ok(out)
    });
    match r {
        Ok(v) => Ok(v),
        Err(Broken::Db(e) | Broken::Records(e)) => Err(e),
    }
}

/// Parses raw `images` entries as [`Meta::index_entries`] does.
pub fn parse_index(raw: &RawTree) -> Vec<(String, Option<ImageRecord>)> {
    raw.iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                serde_json::from_slice(v).ok(),
            )
        })
        .collect()
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
    fn damaged_record_is_restored_from_sled_or_left_out() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            m.put(rec(U1, "a")).unwrap();
        }
        let p = dir.path().join(format!("manifests/{U1}.json"));
        fs::write(&p, b"{not json").unwrap();
        {
            let m = Meta::open(dir.path()).unwrap();
            assert_eq!(m.get(U1).unwrap().str_field("name"), Some("a"));
        }
        assert!(serde_json::from_slice::<ImageRecord>(&fs::read(&p).unwrap()).is_ok());
        // Without a good sled copy the daemon still opens, without the image.
        fs::write(&p, b"{not json").unwrap();
        fs::remove_dir_all(dir.path().join("db")).unwrap();
        let m = Meta::open(dir.path()).unwrap();
        assert!(m.get(U1).is_none());
        assert!(m.read_records().unwrap()[0].1.is_err());
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
