//! Package storage: the sled tree `packages` is the index, one JSON record
//! per package (`<data_dir>/packages/<id>.json`) the durable truth it can be
//! rebuilt from, exactly as [`super::meta`] keeps image manifests.
//!
//! A change is written as a record file first (see [`super::records`]), then
//! to sled, then sled is flushed; only then is it acknowledged. At open the
//! records win wherever sled disagrees with them.
//!
//! Writing several packages at once ([`PackageStore::put_all`], used by the
//! bootstrap `load`) is all-or-nothing across a crash: the whole set is first
//! written as one journal file (`packages/load.journal`, atomically), which
//! is the commit point. Then the records are written, the sled batch applied
//! and the journal removed. If the daemon dies in between, `open` finds the
//! journal and rolls it forward, so either none or all of a load is visible.
//!
//! Every package is held in memory too: a node has tens of them.

use super::meta::MetaError;
use super::{layout, records};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

const JOURNAL: &str = "load.journal";

/// A package, in the shape of the cloud API's (sdc-papi) packages: the
/// resources an instance gets. Sizes are MiB. The field order is the output
/// order. Validation lives in `service::packages`; this is the stored form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub version: String,
    pub memory: u64,
    pub disk: u64,
    pub swap: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lwps: Option<u64>,
    pub vcpus: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The brand instances of this package must have (PAPI's `brand`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(default)]
    pub flexible_disk: bool,
    /// PAPI's disk list (`[{"size": MiB | "remaining"}]`), only with
    /// `flexible_disk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub default: bool,
}

pub struct PackageStore {
    tree: sled::Tree,
    dir: PathBuf,
    cache: RwLock<BTreeMap<String, Arc<Package>>>,
}

fn record_name(id: &str) -> String {
    format!("{id}.json")
}

impl PackageStore {
    /// Opens the records under `data_dir/packages` and the sled `tree`,
    /// rolls a leftover load journal forward, and rebuilds sled from the
    /// records where they disagree.
    ///
    /// # Errors
    /// The records directory cannot be read, a record or the journal cannot
    /// be parsed or written, or sled fails.
    pub fn open(data_dir: &Path, tree: sled::Tree) -> Result<PackageStore, MetaError> {
        let dir = layout::packages(data_dir);
        records::open_dir(&dir)?;
        let store = PackageStore {
            tree,
            dir,
            cache: RwLock::new(BTreeMap::new()),
        };
        store.replay_journal()?;
        store.load()?;
        Ok(store)
    }

    fn replay_journal(&self) -> Result<(), MetaError> {
        let path = self.dir.join(JOURNAL);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(MetaError::File { path, source }),
        };
        let pkgs: Vec<Package> =
            serde_json::from_slice(&bytes).map_err(|source| MetaError::Decode {
                path: path.clone(),
                source,
            })?;
        tracing::warn!(
            packages = pkgs.len(),
            "an interrupted package load was found; completing it"
        );
        for p in &pkgs {
            let bytes = serde_json::to_vec(p).map_err(MetaError::Encode)?;
            records::write_atomic(&self.dir, &record_name(&p.id), &bytes).map_err(|source| {
                MetaError::File {
                    path: self.dir.clone(),
                    source,
                }
            })?;
        }
        records::remove(&self.dir, JOURNAL).map_err(|source| MetaError::File { path, source })
    }

    /// Loads the cache, after making sled agree with the records.
    fn load(&self) -> Result<(), MetaError> {
        let on_disk = records::uuid_stems(&self.dir)?;
        let mut cache = BTreeMap::new();
        let mut repaired = 0usize;
        for item in self.tree.iter() {
            let (k, v) = item?;
            let id = String::from_utf8_lossy(&k).into_owned();
            if !on_disk.contains(&id) {
                self.tree.remove(&k)?;
                repaired += 1;
                continue;
            }
            if let Ok(p) = serde_json::from_slice::<Package>(&v) {
                cache.insert(id, Arc::new(p));
            }
        }
        for id in &on_disk {
            let path = self.dir.join(record_name(id));
            let bytes = fs::read(&path).map_err(|source| MetaError::File {
                path: path.clone(),
                source,
            })?;
            let p: Package = serde_json::from_slice(&bytes)
                .map_err(|source| MetaError::Decode { path, source })?;
            if cache.get(id).is_none_or(|c| **c != p) {
                self.tree.insert(id.as_bytes(), bytes)?;
                cache.insert(id.clone(), Arc::new(p));
                repaired += 1;
            }
        }
        if repaired > 0 {
            tracing::warn!(
                repaired,
                "sled package index disagreed with the package records; rebuilt from the records"
            );
            self.tree.flush()?;
        }
        *self.cache.write().unwrap() = cache;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Option<Arc<Package>> {
        self.cache.read().unwrap().get(id).cloned()
    }

    /// A snapshot of every package, in id order.
    pub fn all(&self) -> Vec<Arc<Package>> {
        self.cache.read().unwrap().values().cloned().collect()
    }

    /// Durably stores one package.
    ///
    /// # Errors
    /// As [`PackageStore::put_all`].
    pub fn put(&self, p: Package) -> io::Result<Arc<Package>> {
        let mut v = self.put_all(vec![p])?;
        Ok(v.remove(0))
    }

    /// Durably stores `pkgs` as one unit (see the module doc): after a crash
    /// either all of them or none are visible.
    ///
    /// # Errors
    /// Any write, fsync or sled operation failed. The cache is updated only
    /// on success; a failure after the journal was written is completed at
    /// the next open.
    pub fn put_all(&self, pkgs: Vec<Package>) -> io::Result<Vec<Arc<Package>>> {
        let encoded: Vec<Vec<u8>> = pkgs
            .iter()
            .map(serde_json::to_vec)
            .collect::<Result<_, _>>()
            .map_err(io::Error::other)?;
        let journaled = pkgs.len() > 1;
        if journaled {
            let all = serde_json::to_vec(&pkgs).map_err(io::Error::other)?;
            records::write_atomic(&self.dir, JOURNAL, &all)?;
        }
        let mut batch = sled::Batch::default();
        for (p, bytes) in pkgs.iter().zip(&encoded) {
            records::write_atomic(&self.dir, &record_name(&p.id), bytes)?;
            batch.insert(p.id.as_bytes(), bytes.as_slice());
        }
        self.tree.apply_batch(batch).map_err(io::Error::other)?;
        self.tree.flush().map_err(io::Error::other)?;
        if journaled {
            records::remove(&self.dir, JOURNAL)?;
        }
        let mut cache = self.cache.write().unwrap();
        Ok(pkgs
            .into_iter()
            .map(|p| {
                let p = Arc::new(p);
                cache.insert(p.id.clone(), p.clone());
                p
            })
            .collect())
    }

    /// Durably removes a package (record first; a stale sled entry left by
    /// a crash is dropped at open).
    ///
    /// # Errors
    /// The unlink, fsync or sled operation failed.
    pub fn delete(&self, id: &str) -> io::Result<()> {
        records::remove(&self.dir, &record_name(id))?;
        self.tree.remove(id.as_bytes()).map_err(io::Error::other)?;
        self.tree.flush().map_err(io::Error::other)?;
        self.cache.write().unwrap().remove(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U1: &str = "11111111-1111-4111-8111-111111111111";
    const U2: &str = "22222222-2222-4222-8222-222222222222";

    fn pkg(id: &str, name: &str) -> Package {
        Package {
            id: id.into(),
            name: name.into(),
            version: "1.0.0".into(),
            memory: 1024,
            disk: 10240,
            swap: 2048,
            lwps: None,
            vcpus: 1,
            group: None,
            description: None,
            brand: None,
            flexible_disk: false,
            disks: None,
            default: false,
        }
    }

    fn open(dir: &Path) -> PackageStore {
        let db = sled::Config::new().path(dir.join("db")).open().unwrap();
        PackageStore::open(dir, db.open_tree("packages").unwrap()).unwrap()
    }

    #[test]
    fn survives_reopen_and_a_lost_database() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            s.put_all(vec![pkg(U1, "a"), pkg(U2, "b")]).unwrap();
            s.delete(U2).unwrap();
            assert!(!dir.path().join("packages").join(JOURNAL).exists());
        }
        assert_eq!(open(dir.path()).get(U1).unwrap().name, "a");
        fs::remove_dir_all(dir.path().join("db")).unwrap();
        let s = open(dir.path());
        assert_eq!(s.all().len(), 1);
        assert_eq!(s.get(U1).unwrap().name, "a");
    }

    #[test]
    fn an_interrupted_load_is_rolled_forward() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        // A crash right after the journal was committed.
        let journal = serde_json::to_vec(&vec![pkg(U1, "a"), pkg(U2, "b")]).unwrap();
        fs::write(dir.path().join("packages").join(JOURNAL), journal).unwrap();
        let s = open(dir.path());
        assert_eq!(s.all().len(), 2);
        assert!(!dir.path().join("packages").join(JOURNAL).exists());
        drop(s);
        fs::remove_dir_all(dir.path().join("db")).unwrap();
        assert_eq!(open(dir.path()).all().len(), 2);
    }
}
