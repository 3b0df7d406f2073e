//! Checking the store and repairing what can be repaired without losing
//! data: `imgstore fsck [--repair]` (offline) and `GET /state`,
//! `POST /state?action=repair` (online).
//!
//! What is checked, each finding with a stable code:
//! - every manifest record parses (`RecordUnreadable`), is a valid manifest
//!   (`RecordInvalid`), names a stored origin (`OriginMissing`), and an
//!   activated image has a file (`ActiveWithoutFile`);
//! - every record's blob exists (`BlobMissing`) with the recorded size
//!   (`BlobSizeMismatch`) and, with `verify`, the recorded SHA-256 and SHA-1
//!   (`BlobDigestMismatch`); blobs are read-only (`BlobWritable`);
//! - no blob is unreferenced (`UnreferencedBlob`) and nothing else sits
//!   among the blobs (`StrayFile`);
//! - sled's index agrees with the records (`IndexUnreadable`,
//!   `IndexMissing`, `IndexStale`, `IndexDiffers`) and, online, so does the
//!   in-memory cache the API serves from (`CacheDiffers`);
//! - no temp file is left in `ingest/` or `manifests/` (`TempFile`);
//!   `manifests/.clean`, the marker of a clean shutdown (see
//!   `store::meta`), is neither a record nor a leftover and is not
//!   reported;
//! - no task is recorded as running that does not run (`TaskUnfinished`),
//!   no undo step of an ended task is pending (`UndoPending`), and no
//!   `POOL/UUID-partial` dataset is left (`PartialDataset`).
//!
//! Severities: `error` means the store is not what the API claims; `garbage`
//! means wasted space that `vacuum` reclaims (an unreferenced blob is
//! expected after a crash between committing a blob and recording it);
//! `notice` is for information. A check "passes" when no error remains.
//!
//! Repair follows the rule the store is built on: the record files are the
//! truth. It rebuilds sled (and the cache) from them, restores a damaged
//! record from sled's copy when that one is good, removes temp files (never
//! committed, so no data), makes blobs read-only, marks stale tasks failed,
//! runs pending undo steps and destroys leftover `-partial` datasets (the
//! remains of receives that never finished). It never deletes a blob or a
//! record: a missing or corrupt blob cannot be rebuilt from anything here,
//! and an unreferenced blob is left to `vacuum`.
//!
//! Offline, the daemon must be stopped: the check takes the data-dir lock,
//! and refuses with the daemon's pid (and a pointer to the API) when the
//! daemon holds it. Without `--repair` it changes nothing of ours (sled may
//! replay its own log when opened). With `--repair` it opens the store as
//! the daemon does at start, which already reconciles sled, cleans temp
//! files and marks interrupted tasks, then repairs the rest.

use super::journal::{self, Undo};
use super::Service;
use crate::config::Config;
use crate::error::{Error, Result, StartError};
use crate::manifest;
use crate::store::cas::{Cas, CasError, Digests};
use crate::store::layout::{self, PidLock};
use crate::store::meta::{self, ImageRecord, MetaError};
use crate::zfs::PoolName;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Garbage,
    Notice,
}

/// One thing found wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Stable code (see the module doc).
    pub code: &'static str,
    pub severity: Severity,
    /// What it is about: an image uuid, a blob digest, a path, a task id.
    pub subject: String,
    pub message: String,
    /// Whether `--repair` can fix it.
    pub repairable: bool,
    /// Whether a repair fixed it.
    pub repaired: bool,
}

/// The result of a check (and repair).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub images: usize,
    pub blobs: usize,
    pub blob_bytes: u64,
    /// Whether blob digests were recomputed (otherwise only sizes).
    pub verified: bool,
    pub repair: bool,
    /// Whether the start-up undo of interrupted tasks is still running
    /// (their pending undo steps are then a notice, not an error).
    pub recovering: bool,
    pub findings: Vec<Finding>,
}

impl Report {
    /// Errors that no repair fixed.
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error && !f.repaired)
            .count()
    }

    pub fn garbage(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Garbage && !f.repaired)
            .count()
    }

    pub fn ok(&self) -> bool {
        self.errors() == 0
    }

    /// The JSON served by `GET /state`.
    pub fn to_json(&self) -> Value {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for f in self.findings.iter().filter(|f| !f.repaired) {
            *counts.entry(f.code).or_default() += 1;
        }
        let mut v = serde_json::to_value(self).unwrap_or_default();
        v["ok"] = json!(self.ok());
        v["errors"] = json!(self.errors());
        v["garbage"] = json!(self.garbage());
        v["counts"] = json!(counts);
        v
    }

    /// Lines for people (the CLI).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for f in &self.findings {
            let state = if f.repaired {
                "repaired"
            } else if f.repairable && !self.repair {
                "repairable"
            } else {
                "not repaired"
            };
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Garbage => "garbage",
                Severity::Notice => "notice",
            };
            out.push_str(&format!(
                "{sev:7} {:18} {} [{state}]: {}\n",
                f.code, f.subject, f.message
            ));
        }
        out.push_str(&format!(
            "{} images, {} blobs ({} bytes){}; {} errors, {} garbage{}\n",
            self.images,
            self.blobs,
            self.blob_bytes,
            if self.verified {
                ", digests verified"
            } else {
                ", sizes checked (digests not verified)"
            },
            self.errors(),
            self.garbage(),
            if self.garbage() > 0 {
                " (reclaim with `imgstore vacuum`)"
            } else {
                ""
            }
        ));
        out
    }
}

/// What to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Recompute every blob's digests (reads every byte).
    pub verify: bool,
    pub repair: bool,
}

/// Everything a check compares, gathered at one moment.
struct Snapshot {
    records: Vec<meta::RecordFile>,
    index: std::result::Result<Vec<(String, Option<ImageRecord>)>, MetaError>,
    /// The records the API serves from (online only).
    cache: Option<Vec<Arc<ImageRecord>>>,
    blobs: Vec<String>,
    strays: Vec<PathBuf>,
    temps: Vec<PathBuf>,
    broken_dbs: Vec<PathBuf>,
    /// Tasks recorded as unfinished and not running: (id, kind).
    stale_tasks: Vec<(String, String)>,
    /// Undo steps of tasks that are not running: task id -> steps.
    pending_undo: BTreeMap<String, Vec<Undo>>,
    /// Datasets of running tasks' undo steps (never stale).
    running_datasets: BTreeSet<String>,
    /// Start-up recovery has not finished.
    recovering: bool,
}

fn finding(
    code: &'static str,
    severity: Severity,
    subject: impl Into<String>,
    message: impl Into<String>,
    repairable: bool,
) -> Finding {
    Finding {
        code,
        severity,
        subject: subject.into(),
        message: message.into(),
        repairable,
        repaired: false,
    }
}

fn not_found_is_empty<T>(r: std::io::Result<Vec<T>>) -> std::io::Result<Vec<T>> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        r => r,
    }
}

/// Temp record files (`manifests/*.tmp`) and kept broken databases.
fn data_dir_leftovers(data_dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut temps = Vec::new();
    if let Ok(rd) = std::fs::read_dir(layout::records(data_dir)) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                temps.push(e.path());
            }
        }
    }
    let mut broken = Vec::new();
    if let Ok(rd) = std::fs::read_dir(data_dir) {
        for e in rd.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(layout::BROKEN_DB_PREFIX)
            {
                broken.push(e.path());
            }
        }
    }
    (temps, broken)
}

/// Compares a snapshot and checks the blobs it names.
fn examine(s: &Snapshot, cas: &Cas, verify: bool, mode: manifest::Mode) -> Report {
    let mut r = Report {
        verified: verify,
        ..Default::default()
    };
    let f = &mut r.findings;
    let good: BTreeMap<&str, &ImageRecord> = s
        .records
        .iter()
        .filter_map(|(u, rec)| rec.as_ref().ok().map(|rec| (u.as_str(), rec)))
        .collect();
    let index: Option<HashMap<&str, &Option<ImageRecord>>> = s
        .index
        .as_ref()
        .ok()
        .map(|v| v.iter().map(|(u, r)| (u.as_str(), r)).collect());
    r.images = good.len();

    // Records and the index.
    if let Err(e) = &s.index {
        f.push(finding(
            "IndexUnreadable",
            Severity::Error,
            "db",
            format!(
                "the sled index cannot be read ({e}); repair rebuilds it from the manifest records"
            ),
            true,
        ));
    }
    for (uuid, rec) in &s.records {
        let in_index = index.as_ref().and_then(|i| i.get(uuid.as_str()).copied());
        match rec {
            Err(e) => {
                let sled_good = in_index.and_then(|r| r.as_ref()).is_some();
                f.push(finding(
                    "RecordUnreadable",
                    Severity::Error,
                    uuid,
                    if sled_good {
                        format!("manifest record cannot be read ({e}); repair restores it from the sled index")
                    } else {
                        format!("manifest record cannot be read ({e}) and the sled index has no good copy: restore the file from a backup, or move it away to drop the image")
                    },
                    sled_good,
                ));
            }
            Ok(rec) => {
                if let Some(index) = &index {
                    match index.get(uuid.as_str()) {
                        None => f.push(finding(
                            "IndexMissing",
                            Severity::Error,
                            uuid,
                            "image has a record but no sled index entry",
                            true,
                        )),
                        Some(Some(i)) if i == rec => {}
                        Some(_) => f.push(finding(
                            "IndexDiffers",
                            Severity::Error,
                            uuid,
                            "sled index entry differs from the manifest record",
                            true,
                        )),
                    }
                }
                let errors = manifest::validate_as(&rec.manifest, mode);
                if !errors.is_empty() {
                    let what: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                    f.push(finding(
                        "RecordInvalid",
                        Severity::Error,
                        uuid,
                        format!("stored manifest is not valid: {}", what.join("; ")),
                        false,
                    ));
                }
                if let Some(origin) = rec.origin() {
                    if !good.contains_key(origin) {
                        f.push(finding(
                            "OriginMissing",
                            Severity::Error,
                            uuid,
                            format!("origin image {origin} is not stored"),
                            false,
                        ));
                    }
                }
                if rec.activated && rec.file().is_none() {
                    f.push(finding(
                        "ActiveWithoutFile",
                        Severity::Error,
                        uuid,
                        "image is activated but has no file",
                        false,
                    ));
                }
            }
        }
    }
    if let Some(index) = &index {
        let on_disk: BTreeSet<&str> = s.records.iter().map(|(u, _)| u.as_str()).collect();
        for uuid in index.keys() {
            if !on_disk.contains(uuid) {
                f.push(finding(
                    "IndexStale",
                    Severity::Error,
                    *uuid,
                    "sled index names an image that has no manifest record (a deleted image)",
                    true,
                ));
            }
        }
    }
    if let Some(cache) = &s.cache {
        let cached: HashMap<&str, &ImageRecord> = cache.iter().map(|r| (r.uuid(), &**r)).collect();
        let mut subjects = BTreeSet::new();
        for (uuid, rec) in &good {
            if cached.get(uuid) != Some(rec) {
                subjects.insert(*uuid);
            }
        }
        for uuid in cached.keys() {
            if !good.contains_key(uuid) {
                subjects.insert(*uuid);
            }
        }
        for uuid in subjects {
            f.push(finding(
                "CacheDiffers",
                Severity::Error,
                uuid,
                "the image the API serves differs from its manifest record",
                true,
            ));
        }
    }

    // Blobs.
    let stored: BTreeSet<&str> = s.blobs.iter().map(String::as_str).collect();
    r.blobs = stored.len();
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    if let Ok(index) = &s.index {
        for rec in index.iter().filter_map(|(_, r)| r.as_ref()) {
            if let Some(b) = rec.blob_sha256() {
                referenced.insert(b.to_string());
            }
            if let Some(icon) = &rec.icon {
                referenced.insert(icon.sha256.clone());
            }
        }
    }
    let mut digests: HashMap<String, std::result::Result<Digests, CasError>> = HashMap::new();
    for (uuid, rec) in &good {
        if let Some(icon) = &rec.icon {
            referenced.insert(icon.sha256.clone());
            let len = cas
                .blob_path(&icon.sha256)
                .ok()
                .and_then(|p| std::fs::metadata(p).ok())
                .map(|m| m.len());
            if len != Some(icon.size) {
                f.push(finding(
                    "IconBlobMissing",
                    Severity::Error,
                    *uuid,
                    format!(
                        "icon blob {} has {}, the record says {} bytes: upload the icon again (or delete it)",
                        icon.sha256,
                        len.map_or("no file".into(), |n| format!("{n} bytes")),
                        icon.size
                    ),
                    false,
                ));
            }
        }
        // The typed view; a record whose entry it cannot read is already
        // RecordInvalid, and its blob is still checked by digest.
        let file = rec.file();
        let Some(sha256) = rec.blob_sha256() else {
            if file.is_none() {
                continue;
            }
            f.push(finding(
                "BlobMissing",
                Severity::Error,
                *uuid,
                "files[0] has no sha256 digest naming a blob",
                false,
            ));
            continue;
        };
        referenced.insert(sha256.to_string());
        let want_size = file.as_ref().map(|e| e.size);
        let want_sha1 = file.as_ref().map(|e| e.sha1.as_str());
        let path = match cas.blob_path(sha256) {
            Ok(p) => p,
            Err(e) => {
                f.push(finding(
                    "BlobMissing",
                    Severity::Error,
                    *uuid,
                    e.to_string(),
                    false,
                ));
                continue;
            }
        };
        let md = match std::fs::metadata(&path) {
            Ok(md) => md,
            Err(e) => {
                f.push(finding(
                    "BlobMissing",
                    Severity::Error,
                    *uuid,
                    format!("blob {sha256} of the image's file: {e}"),
                    false,
                ));
                continue;
            }
        };
        if want_size != Some(md.len()) {
            f.push(finding(
                "BlobSizeMismatch",
                Severity::Error,
                *uuid,
                format!(
                    "blob {sha256} has {} bytes, the manifest says {}",
                    md.len(),
                    want_size.map_or("nothing".into(), |n| n.to_string())
                ),
                false,
            ));
            continue;
        }
        if verify {
            let d = digests
                .entry(sha256.to_string())
                .or_insert_with(|| cas.digest(sha256));
            match d {
                Err(e) => f.push(finding(
                    "BlobMissing",
                    Severity::Error,
                    *uuid,
                    format!("reading blob {sha256}: {e}"),
                    false,
                )),
                Ok(d) if d.sha256 != sha256 || Some(d.sha1.as_str()) != want_sha1 => {
                    f.push(finding(
                        "BlobDigestMismatch",
                        Severity::Error,
                        *uuid,
                        format!(
                            "blob {sha256} hashes to sha256 {} and sha1 {}; the manifest says sha1 {}: the file is corrupt",
                            d.sha256,
                            d.sha1,
                            want_sha1.unwrap_or("none")
                        ),
                        false,
                    ))
                }
                Ok(_) => {}
            }
        }
    }
    for sha in &stored {
        let path = cas.blob_path(sha).unwrap_or_default();
        let md = std::fs::metadata(&path).ok();
        r.blob_bytes += md.as_ref().map_or(0, |m| m.len());
        if md.is_some_and(|m| m.permissions().mode() & 0o222 != 0) {
            f.push(finding(
                "BlobWritable",
                Severity::Notice,
                *sha,
                "blob is writable; committed blobs are read-only",
                true,
            ));
        }
        if !referenced.contains(*sha) {
            f.push(finding(
                "UnreferencedBlob",
                Severity::Garbage,
                *sha,
                "no image refers to this blob (reclaimed by vacuum)",
                false,
            ));
        }
    }
    for p in &s.strays {
        f.push(finding(
            "StrayFile",
            Severity::Garbage,
            p.display().to_string(),
            "not a blob: its name is not a SHA-256 digest (left alone)",
            false,
        ));
    }
    for p in &s.temps {
        f.push(finding(
            "TempFile",
            Severity::Garbage,
            p.display().to_string(),
            "temp file of a write that never completed",
            true,
        ));
    }
    for p in &s.broken_dbs {
        f.push(finding(
            "BrokenDatabaseKept",
            Severity::Notice,
            p.display().to_string(),
            "a sled database that could not be opened, kept for a post-mortem; remove it when done",
            false,
        ));
    }

    // Tasks and ZFS.
    for (id, kind) in &s.stale_tasks {
        f.push(finding(
            "TaskUnfinished",
            Severity::Error,
            id,
            format!("{kind} task is recorded as running but does not run"),
            true,
        ));
    }
    for (task, steps) in &s.pending_undo {
        let names: Vec<&str> = steps.iter().map(Undo::dataset).collect();
        let (severity, when) = if s.recovering {
            (Severity::Notice, "start-up recovery is running them")
        } else {
            (Severity::Error, "they have not run")
        };
        f.push(finding(
            "UndoPending",
            severity,
            task,
            format!(
                "ended task left ZFS undo steps on {}: {when}",
                names.join(", ")
            ),
            true,
        ));
    }
    r.recovering = s.recovering;
    r
}

impl Service {
    /// Gathers a consistent snapshot: called under the write lock, so no
    /// commit is halfway.
    fn snapshot(&self) -> Snapshot {
        let running: BTreeSet<String> = self
            .tasks
            .running_keys()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let mut pending_undo = self.journal_pending();
        let mut running_datasets = BTreeSet::new();
        pending_undo.retain(|task, steps| {
            if running.contains(task) {
                running_datasets.extend(steps.iter().map(|u| u.dataset().to_string()));
                false
            } else {
                true
            }
        });
        let data_dir = self.config().data_dir.clone();
        let (mut temps, broken_dbs) = data_dir_leftovers(&data_dir);
        temps.extend(self.cas.stale_temps().unwrap_or_default());
        Snapshot {
            records: self.meta.read_records().unwrap_or_default(),
            index: self.meta.index_entries(),
            cache: Some(self.meta.all()),
            blobs: self.cas.list().unwrap_or_default(),
            strays: self.cas.strays().unwrap_or_default(),
            temps,
            broken_dbs,
            stale_tasks: self
                .tasks
                .stale_unfinished()
                .into_iter()
                .map(|t| (t.id, t.kind))
                .collect(),
            pending_undo,
            running_datasets,
            recovering: self.recovering.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    /// Checks the store, and with `opts.repair` repairs it (see the module
    /// doc). Blocking: hashes blobs with `opts.verify`.
    ///
    /// # Errors
    /// A repair step failed in a way that leaves the check meaningless
    /// (sled could not be rebuilt).
    pub fn fsck(&self, opts: Options) -> Result<Report> {
        let snap = self.write_locked(|svc| Ok(svc.snapshot()))?;
        let mut report = examine(&snap, &self.cas, opts.verify, self.manifest_mode());
        self.check_partials(&snap, &mut report.findings);
        if opts.verify {
            // Hashing ran without the lock: drop findings about images that
            // changed or went away meanwhile.
            let current = self.meta.all();
            report.findings.retain(|f| {
                !matches!(
                    f.code,
                    "BlobMissing" | "BlobSizeMismatch" | "BlobDigestMismatch"
                ) || snap.records.iter().any(|(u, r)| {
                    u == &f.subject
                        && r.as_ref()
                            .ok()
                            .is_some_and(|r| current.iter().any(|c| c.uuid() == u && **c == *r))
                })
            });
        }
        report.repair = opts.repair;
        if !opts.repair {
            return Ok(report);
        }
        self.repair(&snap, &report)?;
        let after = self.fsck(Options {
            verify: false,
            repair: false,
        })?;
        mark_repaired(&mut report, &after);
        Ok(report)
    }

    /// `-partial` datasets in the default pool and the pools of pending
    /// undo steps that no running task owns.
    fn check_partials(&self, snap: &Snapshot, f: &mut Vec<Finding>) {
        for name in self.stale_partials(snap) {
            f.push(finding(
                "PartialDataset",
                Severity::Error,
                name,
                "dataset of a receive that never finished",
                true,
            ));
        }
    }

    fn stale_partials(&self, snap: &Snapshot) -> Vec<String> {
        let mut pools: BTreeSet<String> = BTreeSet::new();
        pools.insert(self.config().default_pool.clone());
        for steps in snap.pending_undo.values() {
            for u in steps {
                if let Some(pool) = u.dataset().split('/').next() {
                    pools.insert(pool.to_string());
                }
            }
        }
        if self.zfs.available().is_err() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for pool in pools {
            let Ok(pool) = PoolName::new(&pool) else {
                continue;
            };
            if !self.zfs.pool_exists(&pool).unwrap_or(false) {
                continue;
            }
            for ds in self
                .zfs
                .list_datasets(&pool.root(), Some(1))
                .unwrap_or_default()
            {
                let Some(rest) = ds.name.strip_prefix(&format!("{pool}/")) else {
                    continue;
                };
                let Some(uuid) = rest.strip_suffix("-partial") else {
                    continue;
                };
                if super::images::check_uuid(uuid).is_ok()
                    && !snap.running_datasets.contains(&ds.name)
                {
                    out.push(ds.name);
                }
            }
        }
        out
    }

    fn repair(&self, snap: &Snapshot, report: &Report) -> Result<()> {
        let wants = |code: &str| report.findings.iter().any(|f| f.code == code);
        self.write_locked(|svc| {
            if ["IndexUnreadable", "IndexMissing", "IndexStale", "IndexDiffers", "CacheDiffers", "RecordUnreadable"]
                .iter()
                .any(|c| wants(c))
            {
                let n = svc
                    .meta
                    .reindex()
                    .map_err(|e| Error::meta("rebuilding the sled index", e))?;
                tracing::warn!(repaired = n, "fsck: sled index rebuilt from the manifest records");
            }
            // Under the lock no write is halfway: every temp file is stale.
            for f in report.findings.iter().filter(|f| f.code == "TempFile") {
                let p = Path::new(&f.subject);
                if svc.cas.stale_temps().unwrap_or_default().iter().any(|t| t == p)
                    || p.parent() == Some(svc.meta.records_dir())
                {
                    if let Err(e) = std::fs::remove_file(p) {
                        tracing::warn!(path = %p.display(), error = %e, "fsck: could not remove a temp file");
                    }
                }
            }
            for f in report.findings.iter().filter(|f| f.code == "BlobWritable") {
                if let Ok(p) = svc.cas.blob_path(&f.subject) {
                    let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o444));
                }
            }
            for f in report.findings.iter().filter(|f| f.code == "TaskUnfinished") {
                svc.tasks.mark_interrupted(&f.subject)?;
            }
            Ok(())
        })?;
        if !snap.pending_undo.is_empty() && self.zfs.available().is_ok() {
            for task in snap.pending_undo.keys() {
                self.journal_undo(task);
            }
        }
        // Recomputed, so that a partial created since the check is not
        // touched unless it is stale too.
        let fresh = self.write_locked(|svc| Ok(svc.snapshot()))?;
        let stale = self.stale_partials(&fresh);
        for f in report
            .findings
            .iter()
            .filter(|f| f.code == "PartialDataset")
        {
            if stale.contains(&f.subject) {
                match self.zfs.destroy(&f.subject, true) {
                    Ok(()) => {
                        tracing::warn!(dataset = %f.subject, "fsck: destroyed a leftover partial dataset")
                    }
                    Err(e) => {
                        tracing::error!(dataset = %f.subject, error = %e, "fsck: could not destroy a partial dataset")
                    }
                }
            }
        }
        Ok(())
    }
}

/// Marks the findings of `before` that `after` no longer has as repaired,
/// and adds what `after` found anew.
fn mark_repaired(before: &mut Report, after: &Report) {
    let key = |f: &Finding| (f.code, f.subject.clone());
    let remaining: BTreeSet<(&str, String)> = after.findings.iter().map(key).collect();
    let known: BTreeSet<(&str, String)> = before.findings.iter().map(key).collect();
    for f in &mut before.findings {
        f.repaired = f.repairable && !remaining.contains(&key(f));
    }
    for f in &after.findings {
        if !known.contains(&key(f)) {
            before.findings.push(f.clone());
        }
    }
    before.images = after.images;
    before.blobs = after.blobs;
    before.blob_bytes = after.blob_bytes;
}

/// `imgstore fsck` with the daemon stopped: checks the data dir and, with
/// `opts.repair`, repairs it.
///
/// # Errors
/// The data dir is in use by a running daemon (the message names its pid
/// and says to use the API), or the store cannot be opened for repair.
pub fn run_offline(config: &Config, opts: Options) -> std::result::Result<Report, StartError> {
    let data_dir = &config.data_dir;
    if !layout::records(data_dir).is_dir() && !layout::db(data_dir).exists() {
        return Err(StartError::Refused(format!(
            "{} is not an imgstore data dir (no manifests/ or db/)",
            data_dir.display()
        )));
    }
    let _lock = lock_offline(
        config,
        "fsck",
        "GET /state (POST /state?action=repair to repair)",
    )?;
    let before = check_offline(data_dir, config, opts.verify);
    if !opts.repair {
        return Ok(before);
    }
    // Opening the store as the daemon does repairs sled, temp files and
    // interrupted tasks; then the online repair does the rest.
    let svc = Service::open(config.clone())?;
    svc.recover_journal();
    let after = svc
        .fsck(Options {
            verify: false,
            repair: true,
        })
        .and_then(|_| {
            svc.fsck(Options {
                verify: false,
                repair: false,
            })
        })?;
    svc.flush()?;
    let mut report = before;
    report.repair = true;
    mark_repaired(&mut report, &after);
    Ok(report)
}

/// Takes the data-dir lock for an offline verb, or explains who holds it.
pub fn lock_offline(
    config: &Config,
    verb: &str,
    api: &str,
) -> std::result::Result<PidLock, StartError> {
    let data_dir = &config.data_dir;
    PidLock::acquire(
        &layout::lock(data_dir),
        &format!("data dir {}", data_dir.display()),
    )
    .map_err(|source| StartError::Running {
        source,
        verb: verb.to_string(),
        api: api.to_string(),
    })
}

/// The check-only offline pass: reads records, sled and the blob store
/// without changing them.
fn check_offline(data_dir: &Path, config: &Config, verify: bool) -> Report {
    let cas = Cas::inspect(data_dir);
    let trees = meta::inspect_trees(
        data_dir,
        &[
            layout::tree::IMAGES,
            layout::tree::TASKS,
            layout::tree::JOURNAL,
        ],
    );
    let (index, stale_tasks, pending_undo) = match trees {
        Ok(t) => {
            let stale: Vec<(String, String)> = t[1]
                .iter()
                .filter_map(|(_, v)| crate::store::tasks::decode(v))
                .filter(|t| !t.status.is_finished())
                .map(|t| (t.id, t.kind))
                .collect();
            (Ok(meta::parse_index(&t[0])), stale, journal::by_task(&t[2]))
        }
        Err(e) => (Err(e), Vec::new(), BTreeMap::new()),
    };
    let (mut temps, broken_dbs) = data_dir_leftovers(data_dir);
    temps.extend(not_found_is_empty(cas.stale_temps()).unwrap_or_default());
    let snap = Snapshot {
        records: meta::read_records(&layout::records(data_dir)).unwrap_or_default(),
        index,
        cache: None,
        blobs: not_found_is_empty(cas.list()).unwrap_or_default(),
        strays: not_found_is_empty(cas.strays()).unwrap_or_default(),
        temps,
        broken_dbs,
        stale_tasks,
        pending_undo,
        running_datasets: BTreeSet::new(),
        recovering: false,
    };
    let mut report = examine(&snap, &cas, verify, super::manifest_mode_of(config));
    // Leftover partial datasets, looked up without a service.
    let zfs = crate::zfs::Zfs::new(&config.zfs.zfs_bin, &config.zfs.zpool_bin);
    if zfs.available().is_ok() {
        let mut pools: BTreeSet<String> = BTreeSet::new();
        pools.insert(config.default_pool.clone());
        for steps in snap.pending_undo.values() {
            for u in steps {
                if let Some(p) = u.dataset().split('/').next() {
                    pools.insert(p.to_string());
                }
            }
        }
        for pool in pools {
            let Ok(pool) = PoolName::new(&pool) else {
                continue;
            };
            if !zfs.pool_exists(&pool).unwrap_or(false) {
                continue;
            }
            for ds in zfs.list_datasets(&pool.root(), Some(1)).unwrap_or_default() {
                let is_partial = ds
                    .name
                    .strip_prefix(&format!("{pool}/"))
                    .and_then(|r| r.strip_suffix("-partial"))
                    .is_some_and(|u| super::images::check_uuid(u).is_ok());
                if is_partial {
                    report.findings.push(finding(
                        "PartialDataset",
                        Severity::Error,
                        ds.name,
                        "dataset of a receive that never finished",
                        true,
                    ));
                }
            }
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        Config {
            data_dir: dir.to_path_buf(),
            zfs: crate::config::ZfsConfig {
                zfs_bin: "/nonexistent/zfs".into(),
                zpool_bin: "/nonexistent/zpool".into(),
            },
            ..Config::default()
        }
    }

    fn codes(r: &Report) -> Vec<&'static str> {
        let mut v: Vec<&str> = r
            .findings
            .iter()
            .filter(|f| !f.repaired)
            .map(|f| f.code)
            .collect();
        v.sort();
        v
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn clean_store_passes_and_damage_is_found_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let svc = Service::open(cfg.clone()).unwrap();
        let m = json!({"name": "a", "version": "1", "type": "zone-dataset", "os": "smartos"});
        let rec = svc.create_image(m).await.unwrap();
        let uuid = rec.uuid().to_string();
        svc.add_test_file(&uuid, b"file bytes").await.unwrap();
        let r = tokio::task::block_in_place(|| {
            svc.fsck(Options {
                verify: true,
                repair: false,
            })
        })
        .unwrap();
        assert!(r.ok() && r.findings.is_empty(), "{r:?}");
        assert_eq!((r.images, r.blobs, r.blob_bytes), (1, 1, 10));
        drop(svc);

        // Offline: a stray temp file, an unreferenced blob, a lost index.
        std::fs::write(dir.path().join("ingest/x.tmp"), b"t").unwrap();
        let orphan = "a".repeat(64);
        std::fs::write(dir.path().join("blobs/sha256").join(&orphan), b"o").unwrap();
        std::fs::remove_dir_all(dir.path().join("db")).unwrap();
        let r = tokio::task::block_in_place(|| run_offline(&cfg, Options::default())).unwrap();
        assert_eq!(
            codes(&r),
            [
                "BlobWritable",
                "IndexUnreadable",
                "TempFile",
                "UnreferencedBlob"
            ],
            "{}",
            r.render()
        );
        assert!(!r.ok());
        let opts = Options {
            verify: true,
            repair: true,
        };
        let r = tokio::task::block_in_place(|| run_offline(&cfg, opts)).unwrap();
        assert!(r.ok(), "{}", r.render());
        assert_eq!(codes(&r), ["UnreferencedBlob"], "{}", r.render());
        let r = tokio::task::block_in_place(|| run_offline(&cfg, Options::default())).unwrap();
        assert_eq!(codes(&r), ["UnreferencedBlob"], "{}", r.render());

        // A corrupt blob is found with verify, and not "repaired".
        let svc = Service::open(cfg.clone()).unwrap();
        let rec = svc.meta.get(&uuid).unwrap();
        let blob = svc.cas.blob_path(rec.blob_sha256().unwrap()).unwrap();
        std::fs::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&blob, b"file bytez").unwrap();
        let opts = Options {
            verify: true,
            repair: true,
        };
        let r = tokio::task::block_in_place(|| svc.fsck(opts)).unwrap();
        assert!(!r.ok());
        let mismatch = r
            .findings
            .iter()
            .find(|f| f.code == "BlobDigestMismatch")
            .unwrap();
        assert!(!mismatch.repaired && mismatch.subject == uuid, "{r:?}");
        assert!(r
            .findings
            .iter()
            .any(|f| f.code == "BlobWritable" && f.repaired));
    }

    /// The clean-shutdown marker in `manifests/` is not a record: no check
    /// (online, offline, repair) nor vacuum reports or touches it as one.
    #[tokio::test(flavor = "multi_thread")]
    async fn clean_marker_is_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let marker = dir.path().join("manifests").join(meta::CLEAN_MARKER);
        let svc = Service::open(cfg.clone()).unwrap();
        let m = json!({"name": "a", "version": "1", "type": "zone-dataset", "os": "smartos"});
        svc.create_image(m).await.unwrap();
        tokio::task::block_in_place(|| svc.flush()).unwrap();
        assert!(marker.exists());
        let quick = Options::default();
        let r = tokio::task::block_in_place(|| svc.fsck(quick)).unwrap();
        assert!(r.ok() && r.findings.is_empty(), "{}", r.render());
        assert_eq!(r.images, 1);
        let v =
            tokio::task::block_in_place(|| svc.vacuum(&super::super::vacuum::Options::default()))
                .unwrap();
        assert!(v.removed.is_empty(), "{v:?}");
        assert!(marker.exists(), "neither check nor vacuum removes it");
        drop(svc);

        let r = tokio::task::block_in_place(|| run_offline(&cfg, quick)).unwrap();
        assert!(r.ok() && r.findings.is_empty(), "{}", r.render());
        assert_eq!(r.images, 1);
        assert!(marker.exists(), "a check without repair changes nothing");
        let repair = Options {
            verify: false,
            repair: true,
        };
        let r = tokio::task::block_in_place(|| run_offline(&cfg, repair)).unwrap();
        assert!(r.ok() && r.findings.is_empty(), "{}", r.render());
        assert!(marker.exists(), "a repair ends with a clean stop");
        // A temp file next to it is reported (and repaired), the marker not.
        std::fs::write(dir.path().join("manifests/.x.json.tmp"), b"{").unwrap();
        let r = tokio::task::block_in_place(|| run_offline(&cfg, quick)).unwrap();
        assert_eq!(codes(&r), ["TempFile"], "{}", r.render());
        assert!(!r.render().contains(meta::CLEAN_MARKER), "{}", r.render());
    }

    #[test]
    fn offline_check_is_refused_while_the_lock_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        drop(Service::open(cfg.clone()).unwrap());
        let _held =
            crate::store::layout::PidLock::acquire(&dir.path().join("imgstore.lock"), "x").unwrap();
        // flock locks are per open file description: a second acquire in
        // the same process conflicts too.
        let e = run_offline(&cfg, Options::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("GET /state") && e.contains(&std::process::id().to_string()),
            "{e}"
        );
    }
}
