//! Garbage collection: `POST /vacuum` and `imgstore vacuum`.
//!
//! Removes what nothing uses:
//! - blobs no image refers to (left by a crash between committing a blob
//!   and recording it, or by a failed removal);
//! - temp files in `ingest/` that no upload of this process is writing;
//! - `creating`/`failed` placeholders whose `expires_at` has passed (as
//!   IMGAPI's reaper does), unless another image names them as origin;
//! - finished tasks whose `expires_at` has passed;
//! - optionally (`uninstall_unused_days`), images installed in a pool that
//!   have no clones and have not been used for that many days.
//!
//! Never removes anything in use. Blobs, temp files and placeholders are
//! handled under the service write lock, under which every commit happens
//! (blob rename and record write together), so a blob cannot become
//! referenced while it is being removed; if any record file cannot be read
//! no blob is removed at all (the unreadable record might name it).
//!
//! "Used", for an installed image, means having a clone (a VM, or an image
//! installed on top of it). ZFS does not say when a clone last existed, so
//! the store keeps its own clock: the user property `imgstore:last_used`
//! on `POOL/UUID`, set at install and whenever vacuum sees clones. Without
//! it the dataset's creation time counts. Uninstalling takes the install
//! gate exclusively, so no install can be between "origin is there" and
//! "child received" meanwhile, and `zfs destroy` (without `-R`) refuses a
//! snapshot that has clones, atomically, if a VM was cloned in between.
//!
//! With `dry_run` nothing is changed; the report lists what would go.

use super::Service;
use crate::error::{Error, Result};
use crate::zfs::PoolName;
use serde::Serialize;
use std::time::{Duration, Instant};

/// The ZFS user property holding when an installed image was last seen in
/// use (seconds since the epoch).
pub const LAST_USED_PROP: &str = "imgstore:last_used";

/// How long vacuum waits for running installs before it skips uninstalling.
const GATE_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub dry_run: bool,
    /// Uninstall images unused for this many days (none: never).
    pub uninstall_unused_days: Option<u64>,
    /// The pool for uninstalling; the config's `default_pool` when `None`.
    pub pool: Option<String>,
}

/// One thing removed (or, in a dry run, that would be).
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    /// `blob`, `temp`, `placeholder`, `task` or `installed`.
    pub kind: &'static str,
    pub subject: String,
    pub bytes: u64,
}

/// Something vacuum chose not to remove, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub subject: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub removed: Vec<Removed>,
    pub skipped: Vec<Skipped>,
    /// Bytes reclaimed from the data dir (blobs and temp files).
    pub bytes: u64,
}

impl Report {
    fn add(&mut self, kind: &'static str, subject: impl Into<String>, bytes: u64) {
        self.bytes += bytes;
        self.removed.push(Removed {
            kind,
            subject: subject.into(),
            bytes,
        });
    }

    fn skip(&mut self, subject: impl Into<String>, reason: impl Into<String>) {
        self.skipped.push(Skipped {
            subject: subject.into(),
            reason: reason.into(),
        });
    }

    /// Lines for people (the CLI).
    pub fn render(&self) -> String {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let mut out = String::new();
        for r in &self.removed {
            out.push_str(&format!(
                "{verb} {} {} ({} bytes)\n",
                r.kind, r.subject, r.bytes
            ));
        }
        for s in &self.skipped {
            out.push_str(&format!("kept {}: {}\n", s.subject, s.reason));
        }
        out.push_str(&format!(
            "{verb} {} items, {} bytes{}\n",
            self.removed.len(),
            self.bytes,
            if self.dry_run {
                " (dry run: nothing changed)"
            } else {
                ""
            }
        ));
        out
    }
}

fn expired(ts: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> bool {
    ts.and_then(crate::time::parse).is_some_and(|t| t < now)
}

fn file_len(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

impl Service {
    /// Runs a vacuum (see the module doc). Blocking.
    ///
    /// # Errors
    /// A bad pool name, a pool that does not exist or no ZFS when
    /// uninstalling is asked for; sled failed.
    pub fn vacuum(&self, opts: &Options) -> Result<Report> {
        let pool = match opts.uninstall_unused_days {
            Some(_) => {
                let pool = self.pool_name(opts.pool.as_deref())?;
                self.require_pool(&pool)?;
                Some(pool)
            }
            None => None,
        };
        let mut report = Report {
            dry_run: opts.dry_run,
            ..Default::default()
        };
        self.write_locked(|svc| svc.vacuum_store(opts.dry_run, &mut report))?;
        for t in self.tasks.expired() {
            report.add("task", t.id.clone(), 0);
        }
        if !opts.dry_run {
            self.tasks.remove_expired()?;
        }
        if let (Some(days), Some(pool)) = (opts.uninstall_unused_days, pool) {
            self.vacuum_installed(&pool, days, opts.dry_run, &mut report)?;
        }
        if !opts.dry_run && !report.removed.is_empty() {
            tracing::info!(
                removed = report.removed.len(),
                bytes = report.bytes,
                "vacuum done"
            );
        }
        Ok(report)
    }

    /// Blobs, temp files and expired placeholders. Under the write lock.
    fn vacuum_store(&self, dry_run: bool, report: &mut Report) -> Result<()> {
        let now = chrono::Utc::now();
        // Expired placeholders first: their blobs then count as unused.
        // Which images name which origin is read once, before any goes.
        let children: Vec<(String, String)> = self
            .meta
            .scan(|u, f| f.origin.clone().map(|o| (o, u.to_string())));
        let placeholders = self.meta.scan(|u, f| {
            matches!(f.state.as_deref(), Some("creating" | "failed")).then(|| u.to_string())
        });
        for uuid in placeholders {
            let Some(rec) = self.meta.get(&uuid) else {
                continue;
            };
            if !expired(rec.str_field("expires_at"), now) {
                continue;
            }
            if let Some((_, child)) = children.iter().find(|(o, _)| *o == uuid) {
                report.skip(
                    &uuid,
                    format!("expired placeholder is the origin of {child}"),
                );
                continue;
            }
            if !dry_run {
                self.meta
                    .delete(&uuid)
                    .map_err(|e| Error::io(&format!("deleting placeholder {uuid}"), e))?;
            }
            report.add("placeholder", uuid, 0);
        }
        let unreadable: Vec<String> = self
            .meta
            .read_records()
            .map_err(|e| Error::meta("listing manifest records", e))?
            .into_iter()
            .filter(|(_, r)| r.is_err())
            .map(|(u, _)| u)
            .collect();
        if unreadable.is_empty() {
            let referenced: std::collections::BTreeSet<String> = self
                .meta
                .scan(|_, f| Some([f.blob_sha256.clone(), f.icon_sha256.clone()]))
                .into_iter()
                .flatten()
                .flatten()
                .collect();
            let blobs = self.cas.list().map_err(|e| Error::io("listing blobs", e))?;
            for sha in blobs.into_iter().filter(|b| !referenced.contains(b)) {
                let bytes = self.cas.blob_path(&sha).map(|p| file_len(&p)).unwrap_or(0);
                if !dry_run {
                    self.cas
                        .remove(&sha)
                        .map_err(|e| Error::cas(format!("removing blob {sha}"), e))?;
                }
                report.add("blob", sha, bytes);
            }
        } else {
            report.skip(
                "blobs",
                format!(
                    "manifest records {} cannot be read and might name a blob: run `imgstore fsck` first",
                    unreadable.join(", ")
                ),
            );
        }
        for p in self
            .cas
            .stale_temps()
            .map_err(|e| Error::io("listing ingest temp files", e))?
        {
            let bytes = file_len(&p);
            if !dry_run {
                if let Err(e) = std::fs::remove_file(&p) {
                    report.skip(p.display().to_string(), e.to_string());
                    continue;
                }
            }
            report.add("temp", p.display().to_string(), bytes);
        }
        Ok(())
    }

    /// Uninstalls images of `pool` unused for `days` days.
    fn vacuum_installed(
        &self,
        pool: &PoolName,
        days: u64,
        dry_run: bool,
        report: &mut Report,
    ) -> Result<()> {
        // Exclusive against installs (which hold the gate shared while
        // they run): no install is between "origin is there" and "child
        // received" while we decide and destroy.
        let deadline = Instant::now() + GATE_WAIT;
        let _gate = loop {
            match self.install_gate.try_write() {
                Ok(g) => break g,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(std::sync::TryLockError::WouldBlock) => {
                    report.skip(
                        pool.as_str(),
                        format!(
                            "installs kept running for {} s: uninstalling skipped, run vacuum again later",
                            GATE_WAIT.as_secs()
                        ),
                    );
                    return Ok(());
                }
            }
        };
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        let max_age = days.saturating_mul(86_400);
        for ds in self.zfs.list_datasets(&pool.root(), Some(1))? {
            let Some(uuid) = ds.name.strip_prefix(&format!("{pool}/")) else {
                continue;
            };
            if super::images::check_uuid(uuid).is_err() || !self.meta.contains(uuid) {
                // Not an image of this store (or a -partial): not ours to remove.
                continue;
            }
            let final_snap = format!("{}@final", ds.name);
            if !self.zfs.exists(&final_snap)? {
                continue;
            }
            let clones = self.zfs.clones_of(&final_snap)?;
            if !clones.is_empty() {
                if !dry_run {
                    self.zfs
                        .set_property(&ds.name, LAST_USED_PROP, &now.to_string())?;
                }
                continue;
            }
            let last_used = self
                .zfs
                .get_property(&ds.name, LAST_USED_PROP)?
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(ds.creation);
            let age = now.saturating_sub(last_used);
            if age < max_age {
                continue;
            }
            if !dry_run {
                match self.zfs.destroy(&ds.name, true) {
                    Ok(()) => {
                        tracing::info!(dataset = %ds.name, idle_days = age / 86_400, "vacuum: uninstalled an unused image");
                    }
                    Err(e) => {
                        // A clone made since the check: in use after all.
                        report.skip(&ds.name, e.to_string());
                        continue;
                    }
                }
            }
            report.add("installed", ds.name, ds.used);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::meta::ImageRecord;
    use serde_json::json;

    #[tokio::test(flavor = "multi_thread")]
    async fn removes_garbage_and_keeps_what_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        let svc = Service::open(cfg).unwrap();
        let m = json!({"name": "a", "version": "1", "type": "zone-dataset", "os": "smartos"});
        let rec = svc.create_image(m).await.unwrap();
        let rec = svc.add_test_file(rec.uuid(), b"kept").await.unwrap();
        let kept = rec.blob_sha256().unwrap().to_string();
        let orphan = "b".repeat(64);
        std::fs::write(dir.path().join("blobs/sha256").join(&orphan), b"garbage").unwrap();
        std::fs::write(dir.path().join("ingest/left.tmp"), b"tmp").unwrap();
        let live = svc.cas.ingest().unwrap();
        // An expired placeholder, and one that has not expired.
        let placeholder = |uuid: &str, expires: &str| ImageRecord {
            manifest:
                json!({"uuid": uuid, "name": "p", "version": "1", "type": "null", "os": "null",
                "state": "failed", "expires_at": expires, "v": 2,
                "owner": crate::manifest::NIL_UUID, "public": false, "disabled": false})
                .as_object()
                .unwrap()
                .clone(),
            activated: false,
            content_md5: None,
            icon: None,
        };
        let old = "11111111-1111-4111-8111-111111111111";
        let fresh = "22222222-2222-4222-8222-222222222222";
        svc.meta
            .put(placeholder(old, "2000-01-01T00:00:00Z"))
            .unwrap();
        svc.meta
            .put(placeholder(fresh, "2999-01-01T00:00:00Z"))
            .unwrap();

        let dry = tokio::task::block_in_place(|| {
            svc.vacuum(&Options {
                dry_run: true,
                ..Default::default()
            })
        })
        .unwrap();
        let kinds = |r: &Report| {
            let mut v: Vec<(&str, String)> = r
                .removed
                .iter()
                .map(|x| (x.kind, x.subject.clone()))
                .collect();
            v.sort();
            v
        };
        let want = vec![
            ("blob", orphan.clone()),
            ("placeholder", old.to_string()),
            (
                "temp",
                dir.path().join("ingest/left.tmp").display().to_string(),
            ),
        ];
        assert_eq!(kinds(&dry), want);
        assert!(
            svc.cas.exists(&orphan) && svc.meta.get(old).is_some(),
            "dry run changes nothing"
        );
        let real = tokio::task::block_in_place(|| svc.vacuum(&Options::default())).unwrap();
        assert_eq!(kinds(&real), want);
        assert_eq!(real.bytes, 7 + 3);
        assert!(!svc.cas.exists(&orphan) && svc.cas.exists(&kept));
        assert!(svc.meta.get(old).is_none() && svc.meta.get(fresh).is_some());
        assert!(!dir.path().join("ingest/left.tmp").exists());
        drop(live);
        let again = tokio::task::block_in_place(|| svc.vacuum(&Options::default())).unwrap();
        assert!(again.removed.is_empty(), "{again:?}");
    }
}
