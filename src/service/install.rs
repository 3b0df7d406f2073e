//! Installing images into a pool, listing and uninstalling them.
//!
//! Install follows imgadm (imgadm.md section 2): the blob streams through
//! its decompressor into `zfs receive POOL/UUID-partial`; the received
//! dataset must have exactly one snapshot, renamed `@final`; then the
//! dataset is renamed `POOL/UUID`. The blob's SHA-256 and SHA-1 are
//! recomputed in the same pass (on a reader thread) and checked before the
//! rename, so a corrupt blob never becomes a visible dataset. An image with
//! an `origin` needs the origin installed: the whole chain is installed from
//! the store, base first, each incremental stream received on top of its
//! origin's `@final` (zfs finds the origin snapshot by guid).
//!
//! Every dataset install creates is first recorded in the undo journal
//! ([`super::journal`]), so `-partial` datasets never survive a restart.

use super::journal::Undo;
use super::pipe::{self, ChannelReader, CopyError};
use super::Service;
use crate::codec;
use crate::error::{Error, Result};
use crate::store::cas::Hasher;
use crate::store::meta::ImageRecord;
use crate::tasks::{Task, TaskCtx};
use crate::zfs::{DatasetName, MountPlan, PoolName, ReceiveOpts, ZfsError};
use serde_json::{json, Value};
use std::sync::Arc;

impl Service {
    /// The origin chain of an image from the store, base first, ending with
    /// the image itself.
    pub fn ancestry(&self, uuid: &str) -> Result<Vec<Arc<ImageRecord>>> {
        let mut chain = vec![self.get_image(uuid)?];
        while let Some(origin) = chain.last().unwrap().origin().map(str::to_string) {
            if chain.len() > 100 {
                return Err(Error::param(
                    "origin",
                    format!("origin chain of {uuid} is longer than 100 images"),
                ));
            }
            let rec = self
                .meta
                .get(&origin)
                .ok_or_else(|| Error::OriginDoesNotExist(origin.clone()))?;
            if chain.iter().any(|r| r.uuid() == origin) {
                return Err(Error::param(
                    "origin",
                    format!("origin chain of {uuid} has a cycle at {origin}"),
                ));
            }
            chain.push(rec);
        }
        chain.reverse();
        Ok(chain)
    }

    /// The pool a request names, or else the config's `default_pool`,
    /// checked: the one place a pool name from outside (`?pool=`, a
    /// request body, the config) becomes a [`PoolName`].
    ///
    /// # Errors
    /// [`ZfsError::InvalidName`] (a 422 `InvalidParameter`).
    pub(super) fn pool_name(&self, pool: Option<&str>) -> Result<PoolName> {
        Ok(match pool {
            Some(p) => PoolName::new(p)?,
            None => PoolName::new(&self.config().default_pool)?,
        })
    }

    /// Fails unless `pool` is imported: one `zpool list`, made when a
    /// request is admitted (the tasks that follow rely on it).
    ///
    /// # Errors
    /// [`ZfsError::PoolNotFound`], no ZFS.
    pub(super) fn require_pool(&self, pool: &PoolName) -> Result<()> {
        if self.zfs.pool_exists(pool)? {
            Ok(())
        } else {
            Err(ZfsError::PoolNotFound {
                pool: pool.to_string(),
            }
            .into())
        }
    }

    /// Starts installing an image (and any missing origins) into `pool`.
    /// A second request for the same image and pool gets the running task.
    ///
    /// # Errors
    /// Unknown image, an image without a file, a bad pool name, no ZFS.
    pub fn install(self: &Arc<Self>, uuid: &str, pool: Option<&str>) -> Result<(Task, bool)> {
        let pool = self.pool_name(pool)?;
        let chain = self.ancestry(uuid)?;
        for rec in &chain {
            if rec.blob_sha256().is_none() {
                return Err(Error::NoActivationNoFile(rec.uuid().to_string()));
            }
        }
        self.require_pool(&pool)?;
        let svc = self.clone();
        let uuid = uuid.to_string();
        let input = json!({"image_uuid": uuid, "pool": pool.as_str()});
        let key = format!("install:{pool}:{uuid}");
        self.tasks.start("install", input, Some(key), move |ctx| {
            svc.run_install(ctx, &uuid, &pool)?;
            Ok(json!({"image_uuid": uuid, "pool": pool.as_str(), "dataset": format!("{pool}/{uuid}")}))
        })
    }

    /// The install task's body (blocking). The caller checked that `pool`
    /// exists ([`Service::require_pool`]) before starting the task; should
    /// it be gone since, the first `zfs receive` reports `PoolNotFound`.
    pub fn run_install(&self, ctx: &TaskCtx, uuid: &str, pool: &PoolName) -> Result<()> {
        // Shared with other installs; vacuum takes it exclusively to
        // uninstall, so an origin checked below stays until we are done.
        let _gate = self.install_gate.read().unwrap_or_else(|p| p.into_inner());
        let chain = self.ancestry(uuid)?;
        let mut todo = Vec::new();
        for rec in chain {
            if !self.zfs.exists(&format!("{pool}/{}@final", rec.uuid()))? {
                todo.push(rec);
            }
        }
        // Added, not set: an import or install-from-files task counted its
        // own phase first.
        ctx.add_total(todo.iter().map(|r| file_size(r)).sum());
        for rec in todo {
            ctx.check()?;
            let result = self.install_one(ctx, &rec, pool);
            if result.is_err() {
                self.journal_undo(ctx.id());
            } else {
                self.journal_clear(ctx.id())?;
            }
            result?;
        }
        Ok(())
    }

    fn install_one(&self, ctx: &TaskCtx, rec: &ImageRecord, pool: &PoolName) -> Result<()> {
        let uuid = rec.uuid();
        let target = format!("{pool}/{uuid}");
        let partial = DatasetName::new(&format!("{target}-partial"))?;
        if self.zfs.exists(&target)? {
            return Err(ZfsError::DatasetExists { name: target }.into());
        }
        if self.zfs.exists(partial.as_str())? {
            tracing::warn!(dataset = %partial, "destroying a leftover partial dataset");
            self.zfs.destroy(partial.as_str(), true)?;
        }
        let (compression, want_sha1) =
            rec.file().map_or(("none".to_string(), String::new()), |f| {
                (f.compression, f.sha1)
            });
        let want_sha256 = rec.blob_sha256().unwrap_or_default().to_string();
        let path = self
            .cas
            .blob_path(&want_sha256)
            .map_err(|e| Error::cas(format!("image {uuid}"), e))?;
        let blob = std::fs::File::open(&path)
            .map_err(|e| Error::internal(&format!("opening the file of image {uuid}"), e))?;

        self.journal_push(
            ctx.id(),
            Undo::Destroy {
                name: partial.to_string(),
            },
        )?;
        let mut child = self.zfs.receive(
            partial.as_str(),
            ReceiveOpts {
                no_mount: true,
                ..Default::default()
            },
        )?;
        let canceller = child.canceller();
        ctx.on_cancel(move || canceller.cancel());
        let mut writer = child.take_writer().expect("fresh receive has a writer");

        // Thread 1 reads and hashes the blob; this thread decompresses and
        // feeds zfs. Hashing thus overlaps decompression and the receive.
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let (copied, digests) = std::thread::scope(|s| {
            let reader = s.spawn(move || {
                // SHA-256 and SHA-1 are checked; MD5 is not needed here.
                let mut h = Hasher::verifier();
                let r = pipe::produce(blob, tx, |chunk| {
                    h.update_bytes(chunk.clone());
                    ctx.add_done(chunk.len() as u64);
                });
                r.map(|()| h.finish())
            });
            let copied = match codec::decompressor(&compression, ChannelReader::new(rx)) {
                Ok(mut src) => pipe::copy(ctx, &mut src, &mut writer, false),
                Err(e) => Err(CopyError::Read(std::io::Error::other(
                    Error::from(e).to_string(),
                ))),
            };
            drop(writer);
            (copied, reader.join().expect("reader thread panicked"))
        });
        let finished = pool_full(pool, uuid, child.finish());
        ctx.check()?;
        let digests = digests
            .map_err(|e| Error::internal(&format!("reading the file of image {uuid}"), e))?;
        // When zfs stopped reading (a full pool, a refused stream) the reader
        // stopped too, so its digests cover only part of the blob: hash the
        // whole blob to tell a corrupt image from zfs's own failure.
        let digests = if matches!(copied, Err(CopyError::Write(_))) {
            self.cas
                .digest(&want_sha256)
                .map_err(|e| Error::cas(format!("reading the file of image {uuid}"), e))?
        } else {
            digests
        };
        // A stream zfs refused is zfs's error; a decompressor that choked on
        // a blob whose digests are right is a corrupt image.
        let checksum_ok = digests.sha256 == want_sha256 && digests.sha1 == want_sha1;
        if !checksum_ok {
            return Err(Error::ChecksumMismatch(format!(
                "file of image {uuid} does not match its manifest (sha1 {want_sha1}, sha256 {want_sha256}): got sha1 {}, sha256 {}; the install was aborted",
                digests.sha1, digests.sha256
            )));
        }
        match copied {
            Err(CopyError::Read(e)) => {
                return Err(Error::UncompressionError(format!(
                    "decompressing the {compression} file of image {uuid}: {e}"
                )))
            }
            Err(CopyError::Cancelled) => {
                return Err(Error::Cancelled(format!(
                    "install of image {uuid} was cancelled"
                )))
            }
            Err(CopyError::Write(e)) => {
                // zfs stopped reading: its own reason says why.
                finished?;
                return Err(Error::internal(
                    &format!("feeding zfs receive {partial}"),
                    e,
                ));
            }
            Ok(_) => finished?,
        }
        let snaps = self.zfs.list_snapshots(&partial)?;
        if snaps.len() != 1 {
            return Err(Error::UnexpectedNumberOfSnapshots(format!(
                "image {uuid}: the received dataset has {} snapshots, expected exactly 1",
                snaps.len()
            )));
        }
        let final_snap = format!("{partial}@final");
        if snaps[0].name != final_snap {
            self.zfs.rename(&snaps[0].name, &final_snap)?;
        }
        self.zfs.rename(partial.as_str(), &target)?;
        // Received with `-u`; now mount what imgadm's plain `zfs receive`
        // leaves mounted (zone and lx filesystems, never volumes). A mount
        // that fails undoes the install, as a failed receive does in
        // imgadm: the image is then not half there.
        self.journal_push(
            ctx.id(),
            Undo::Destroy {
                name: target.clone(),
            },
        )?;
        let target_ds = DatasetName::new(&target)?;
        match self.zfs.mount_received(&target_ds) {
            Ok(MountPlan::Skip(why)) => {
                tracing::debug!(dataset = %target, why, "installed dataset not mounted");
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Error::MountFailed {
                    message: format!(
                        "image {uuid} was received into {target}, but mounting {target} failed, so the install was undone: {e}"
                    ),
                    source: e,
                })
            }
        }
        // Vacuum's clock of when the image was last used (best effort).
        let now = chrono::Utc::now().timestamp().max(0).to_string();
        if let Err(e) = self
            .zfs
            .set_property(&target, super::vacuum::LAST_USED_PROP, &now)
        {
            tracing::warn!(dataset = %target, error = %e, "could not set imgstore:last_used");
        }
        tracing::info!(image = uuid, dataset = %target, "image installed");
        Ok(())
    }

    /// Images installed in a pool: `POOL/UUID` datasets that have an
    /// `@final` snapshot or whose uuid is a stored image, joined with the
    /// manifests (like `imgadm list -j`).
    pub fn installed(&self, pool: &str) -> Result<Vec<Value>> {
        let pool = self.pool_name(Some(pool))?;
        self.require_pool(&pool)?;
        let mut out = Vec::new();
        for ds in self.zfs.list_datasets(&pool.root(), Some(1))? {
            let Some(uuid) = ds.name.strip_prefix(&format!("{pool}/")) else {
                continue;
            };
            if super::images::check_uuid(uuid).is_err() {
                continue;
            }
            let rec = self.meta.get(uuid);
            let final_snap = format!("{}@final", ds.name);
            let has_final = self.zfs.exists(&final_snap)?;
            if rec.is_none() && !has_final {
                continue;
            }
            let clones = if has_final {
                self.zfs.clones_of(&final_snap)?.len()
            } else {
                0
            };
            out.push(json!({
                "manifest": rec.map(|r| Value::Object(r.manifest.clone())),
                "zpool": pool.as_str(),
                "dataset": ds.name,
                "clones": clones,
                "origin_snapshot": ds.origin,
                "used": ds.used,
                "referenced": ds.referenced,
            }));
        }
        Ok(out)
    }

    pub fn installed_one(&self, pool: &str, uuid: &str) -> Result<Value> {
        super::images::check_uuid(uuid)?;
        self.installed(pool)?
            .into_iter()
            .find(|v| v["dataset"] == format!("{pool}/{uuid}"))
            .ok_or_else(|| Error::ImageNotInstalled {
                uuid: uuid.to_string(),
                pool: pool.to_string(),
            })
    }

    /// Uninstalls (`zfs destroy -r POOL/UUID`), refused while clones of its
    /// `@final` exist (VMs, or images installed on top of it).
    pub fn uninstall(&self, pool: &str, uuid: &str) -> Result<()> {
        self.installed_one(pool, uuid)?;
        let ds = format!("{pool}/{uuid}");
        let clones = self.zfs.clones_of(&format!("{ds}@final"))?;
        if !clones.is_empty() {
            return Err(ZfsError::HasDependentClones {
                name: format!("{ds}@final"),
                clones,
            }
            .into());
        }
        self.zfs.destroy(&ds, true)?;
        tracing::info!(image = uuid, dataset = %ds, "image uninstalled");
        Ok(())
    }
}

/// A receive that failed because the pool is full is a 507
/// `InsufficientStorage`, like a full data dir, not a generic zfs failure.
fn pool_full(pool: &PoolName, uuid: &str, r: std::result::Result<(), ZfsError>) -> Result<()> {
    match r {
        Err(ZfsError::OutOfSpace { stderr, .. }) => Err(Error::InsufficientStorage(format!(
            "pool {pool} is full: receiving image {uuid} failed ({}); nothing was installed",
            stderr.trim()
        ))),
        r => r.map_err(Error::from),
    }
}

fn file_size(rec: &ImageRecord) -> u64 {
    rec.file().map_or(0, |f| f.size)
}
