//! Creating images from datasets, exporting images to files, and installing
//! from files (`imgadm create`, the cloud API's ExportImage layout, and
//! `imgadm install -m MANIFEST -f FILE`), all as tasks.
//!
//! Create snapshots `DATASET@final` (moving an existing `@final` aside as
//! imgadm does), sends it (incremental from the origin's `@final` when
//! asked), compresses, hashes and ingests the stream into the blob store in
//! one pass, and records an active image whose manifest inherits from the
//! origin image (imgadm.md section 3). On failure the snapshot is destroyed,
//! a moved-aside `@final` is put back, and nothing is recorded.

use super::images::{check_sealed, FileParams};
use super::journal::Undo;
use super::pipe::{self, CopyError};
use super::Service;
use crate::codec;
use crate::error::{Error, Result};
use crate::manifest::{self, Manifest, UncheckedFile};
use crate::store::cas::{Ingest, Sealed};
use crate::store::meta::ImageRecord;
use crate::tasks::{Task, TaskCtx};
use crate::zfs::{DatasetName, SendOpts};
use serde_json::{json, Value};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// `POST /images?action=create-from-dataset` body.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub dataset: String,
    pub manifest: Value,
    #[serde(default)]
    pub incremental: bool,
    /// `gzip` by default: what every imgadm and IMGAPI installs. `zstd` is
    /// imgstore-to-imgstore only (see [`super::compression`]).
    #[serde(default = "default_compression")]
    pub compression: String,
    /// `zfs send -c`: keep blocks compressed as they are on disk. Faster and
    /// smaller, but the image then installs only on pools that support the
    /// same block compression; refused where this ZFS lacks `send -c`.
    #[serde(default)]
    pub send_compressed: bool,
}

/// The default compression of created images: gzip, compressed on every
/// core ([`codec::ParallelGzip`]), so that the image installs with imgadm
/// (`gzip -cdfq | zfs receive`) and publishes to any IMGAPI.
pub const DEFAULT_COMPRESSION: &str = "gzip";

fn default_compression() -> String {
    DEFAULT_COMPRESSION.into()
}

/// `POST /images?action=install-from-files` body.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesRequest {
    pub manifest: PathBuf,
    pub file: PathBuf,
    /// The pool to install into; the config's `default_pool` when absent.
    /// (To add to the store without installing, use CreateImage or
    /// AdminImportImage, AddImageFile and ActivateImage: `imgstore add`.)
    #[serde(default)]
    pub pool: Option<String>,
}

/// An ingest as an `io::Write` (the compressor's output); the ingest
/// gathers the writes into large chunks itself.
struct IngestWriter {
    ingest: Ingest,
}

impl Write for IngestWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.ingest.write(data)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A path the daemon will read or write for a client: absolute, and with
/// no `..` (so a request cannot climb out of what it names).
fn check_path(field: &str, p: &Path) -> Result<()> {
    if !p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(Error::param(
            field,
            format!("{} must be an absolute path without '..'", p.display()),
        ));
    }
    Ok(())
}

impl Service {
    /// Validates a create request and starts the task.
    ///
    /// # Errors
    /// Bad dataset name or compression, missing dataset, an incremental
    /// request for a dataset without an origin image, an invalid manifest,
    /// no ZFS. Nothing has been changed when these are returned.
    pub fn create_from_dataset(self: &Arc<Self>, req: CreateRequest) -> Result<(Task, bool)> {
        // The one check of the dataset's name; the task carries it typed.
        let dataset = DatasetName::new(&req.dataset)?;
        if !manifest::COMPRESSIONS.contains(&req.compression.as_str()) {
            return Err(Error::param(
                "compression",
                format!(
                    "{:?} is not one of {}",
                    req.compression,
                    manifest::COMPRESSIONS.join(", ")
                ),
            ));
        }
        let mut body = match &req.manifest {
            Value::Object(m) => m.clone(),
            _ => return Err(Error::param("manifest", "must be a JSON object")),
        };
        let features = self.zfs.available()?;
        if req.send_compressed && !features.compressed_send {
            return Err(Error::NotSupported(
                "send_compressed: this ZFS has no `zfs send -c`".into(),
            ));
        }
        if !self.zfs.exists(dataset.as_str())? {
            return Err(crate::zfs::ZfsError::DatasetNotFound {
                name: dataset.to_string(),
            }
            .into());
        }
        // The origin image: the dataset is a clone of POOL/ORIGIN@final.
        let origin_snap = self.zfs.get_property(dataset.as_str(), "origin")?;
        let origin = origin_snap
            .as_deref()
            .and_then(|s| s.strip_suffix("@final"))
            .and_then(|ds| ds.rsplit('/').next())
            .and_then(|u| self.meta.get(u));
        if req.incremental {
            let Some(o) = &origin else {
                return Err(Error::DatasetHasNoOrigin(format!(
                    "dataset {} is not a clone of an image's @final snapshot in this store (origin {}): cannot create an incremental image",
                    dataset,
                    origin_snap.as_deref().unwrap_or("none")
                )));
            };
            body.insert("origin".into(), json!(o.uuid()));
        }
        if let Some(o) = &origin {
            for f in manifest::INHERITED_FIELDS {
                if !body.contains_key(*f) {
                    if let Some(v) = o.manifest.get(*f) {
                        body.insert(f.to_string(), v.clone());
                    }
                }
            }
        }
        let uuid = match body.remove("uuid") {
            Some(Value::String(u)) => {
                super::images::check_uuid(&u).map_err(|_| {
                    Error::param("manifest.uuid", format!("{u:?} is not a lowercase UUID"))
                })?;
                if self.meta.get(&u).is_some() {
                    return Err(Error::ImageUuidAlreadyExists(u));
                }
                u
            }
            Some(_) => return Err(Error::param("manifest.uuid", "must be a string")),
            None => uuid::Uuid::new_v4().to_string(),
        };
        let m = manifest::prepare_create(&Value::Object(body), &uuid, self.manifest_mode())
            .map_err(Error::validation)?;
        self.check_origin(&m)?;
        let svc = self.clone();
        let input = json!({"dataset": req.dataset, "incremental": req.incremental, "compression": req.compression, "send_compressed": req.send_compressed, "manifest": req.manifest});
        let send_from = if req.incremental { origin_snap } else { None };
        self.tasks.start("create", input, None, move |ctx| {
            let result = svc.run_create(ctx, &req, &dataset, send_from.as_deref(), m);
            if result.is_err() {
                svc.journal_undo(ctx.id());
            } else {
                svc.journal_clear(ctx.id())?;
            }
            result
        })
    }

    fn run_create(
        &self,
        ctx: &TaskCtx,
        req: &CreateRequest,
        ds: &DatasetName,
        send_from: Option<&str>,
        mut m: Manifest,
    ) -> Result<Value> {
        let uuid = manifest::uuid_of(&m).unwrap_or_default().to_string();
        let snap = format!("{ds}@final");
        if self.zfs.exists(&snap)? {
            let aside = format!("{ds}@final-{}", crate::time::name_stamp());
            self.journal_push(
                ctx.id(),
                Undo::Rename {
                    from: aside.clone(),
                    to: snap.clone(),
                },
            )?;
            self.zfs.rename(&snap, &aside)?;
            tracing::info!(snapshot = %snap, moved_to = %aside, "moved an existing @final aside");
        }
        self.journal_push(ctx.id(), Undo::Destroy { name: snap.clone() })?;
        self.zfs.snapshot(&snap)?;
        if let Ok(Some(size)) = self
            .zfs
            .get_property(ds.as_str(), "referenced")
            .map(|v| v.and_then(|s| s.parse::<u64>().ok()))
        {
            ctx.set_total(size);
        }
        let opts = SendOpts {
            compressed: req.send_compressed,
            ..Default::default()
        };
        let mut child = self.zfs.send(&snap, send_from, opts)?;
        let canceller = child.canceller();
        ctx.on_cancel(move || canceller.cancel());
        let mut reader = child.take_reader().expect("fresh send has a reader");
        let ingest = self
            .cas
            .ingest()
            .map_err(|e| Error::io("starting the image file", e))?;
        let mut enc = codec::Compressor::new(&req.compression, IngestWriter { ingest })?;
        let copied = pipe::copy(ctx, &mut reader, &mut enc, true);
        drop(reader);
        let finished = child.finish();
        ctx.check()?;
        match copied {
            Err(CopyError::Cancelled) => {
                return Err(Error::Cancelled(format!("create from {ds} was cancelled")))
            }
            Err(CopyError::Read(e)) => {
                finished?;
                return Err(Error::internal(&format!("reading zfs send {snap}"), e));
            }
            Err(CopyError::Write(e)) => {
                return Err(Error::io(&format!("writing the image file of {uuid}"), e))
            }
            Ok(_) => finished?,
        }
        let mut w = enc
            .finish()
            .map_err(|e| Error::io("compressing the image file", e))?;
        w.flush()
            .map_err(|e| Error::io("writing the image file", e))?;
        let sealed = w
            .ingest
            .finish()
            .map_err(|e| Error::io("writing the image file", e))?;
        let d = sealed.digests.clone();
        m.insert("files".into(), json!([{"sha1": d.sha1, "size": d.size, "compression": req.compression, "digest": format!("sha256:{}", d.sha256)}]));
        m.insert("published_at".into(), json!(crate::time::now_timestamp()));
        m.insert("state".into(), json!("active"));
        self.assign_channel(&mut m, None);
        let errors = manifest::validate_as(&m, self.manifest_mode());
        if !errors.is_empty() {
            return Err(Error::validation(errors));
        }
        self.write_locked(|svc| {
            svc.check_origin(&m)?;
            svc.cas
                .commit(sealed)
                .map_err(|e| Error::cas(format!("storing the file of image {uuid}"), e))?;
            svc.meta
                .put(ImageRecord {
                    manifest: m,
                    activated: true,
                    content_md5: Some(d.md5_b64.clone()),
                    icon: None,
                })
                .map_err(|e| Error::io(&format!("storing image {uuid}"), e))?;
            Ok(())
        })?;
        tracing::info!(image = %uuid, dataset = %ds, size = d.size, "image created from dataset");
        Ok(json!({"image_uuid": uuid, "dataset": ds.as_str(), "snapshot": snap, "size": d.size}))
    }

    /// Starts exporting an image to `DIR/NAME-VERSION.imgmanifest` and
    /// `DIR/NAME-VERSION.zfs[.EXT]`.
    ///
    /// # Errors
    /// Unknown image or one without a file; `dir` not an absolute existing
    /// directory.
    pub fn export(self: &Arc<Self>, uuid: &str, dir: &Path) -> Result<(Task, bool)> {
        let (rec, blob) = self.file_path(uuid)?;
        check_path("path", dir)?;
        if !dir.is_dir() {
            return Err(Error::param(
                "path",
                format!("{} is not an existing directory", dir.display()),
            ));
        }
        let name = format!(
            "{}-{}",
            rec.name().unwrap_or("image"),
            rec.version().unwrap_or("0")
        )
        .replace(['/', ' '], "_");
        let file = rec.file();
        let compression = file.as_ref().map_or("none", |f| f.compression.as_str());
        let kind = if rec.str_field("type") == Some("zvol") {
            "zvol"
        } else {
            "zfs"
        };
        let manifest_path = dir.join(format!("{name}.imgmanifest"));
        let file_path = dir.join(format!("{name}.{kind}{}", codec::extension(compression)));
        let size = file.as_ref().map_or(0, |f| f.size);
        let input = json!({"image_uuid": uuid, "path": dir});
        let key = format!("export:{uuid}:{}", dir.display());
        self.tasks.start("export", input, Some(key), move |ctx| {
            ctx.set_total(size);
            let manifest_bytes = serde_json::to_vec_pretty(&Value::Object(rec.manifest.clone())).map_err(|e| Error::internal("manifest", e))?;
            write_atomically(&manifest_path, |f| f.write_all(&manifest_bytes))?;
            let mut src = std::fs::File::open(&blob).map_err(|e| Error::internal("opening the blob", e))?;
            write_atomically(&file_path, |f| match pipe::copy(ctx, &mut src, f, true) {
                Ok(_) => Ok(()),
                Err(CopyError::Cancelled) => Err(io::Error::other("export cancelled")),
                Err(CopyError::Read(e) | CopyError::Write(e)) => Err(e),
            })
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&manifest_path);
            })?;
            Ok(json!({"image_uuid": rec.uuid(), "manifest_path": manifest_path, "file_path": file_path}))
        })
    }

    /// Starts installing from local files: import the manifest, add and
    /// verify the file, activate, then (with a pool) install.
    ///
    /// # Errors
    /// Relative paths, missing files, a manifest that is not valid JSON or
    /// fails validation, an image uuid that exists with other content.
    pub fn install_from_files(self: &Arc<Self>, req: FilesRequest) -> Result<(Task, bool)> {
        check_path("manifest", &req.manifest)?;
        check_path("file", &req.file)?;
        let pool = self.pool_name(req.pool.as_deref())?;
        let max = self.limits().max_body_bytes;
        let meta = std::fs::metadata(&req.manifest)
            .map_err(|e| Error::param("manifest", format!("{}: {e}", req.manifest.display())))?;
        if meta.len() > max {
            return Err(Error::PayloadTooLarge(format!(
                "manifest {} is larger than {max} bytes",
                req.manifest.display()
            )));
        }
        let text = std::fs::read(&req.manifest)
            .map_err(|e| Error::param("manifest", format!("{}: {e}", req.manifest.display())))?;
        let mut m: Value = serde_json::from_slice(&text).map_err(|e| {
            Error::param(
                "manifest",
                format!("{} is not JSON: {e}", req.manifest.display()),
            )
        })?;
        if let Value::Object(obj) = &m {
            if obj.get("v").and_then(|v| v.as_u64()).unwrap_or(1) < 2 {
                m = Value::Object(manifest::upgrade_v1(obj));
            }
        }
        let uuid = m
            .as_object()
            .and_then(manifest::uuid_of)
            .ok_or_else(|| Error::param("manifest", "has no uuid"))?
            .to_string();
        super::images::check_uuid(&uuid).map_err(|_| {
            Error::param("manifest", format!("uuid {uuid:?} is not a lowercase UUID"))
        })?;
        // Read leniently: an existing image is matched by sha1 alone, and
        // a new one is validated below.
        let file = UncheckedFile::of_value(&m);
        let params = FileParams {
            compression: file
                .and_then(|f| f.compression())
                .unwrap_or("none")
                .to_string(),
            sha1: file.and_then(|f| f.sha1()).map(str::to_string),
            size: file.and_then(|f| f.size()),
            content_length: None,
            dataset_guid: None,
        };
        let existing = self.meta.get(&uuid);
        if let Some(e) = &existing {
            let same =
                e.activated && params.sha1.is_some() && e.file().map(|f| f.sha1) == params.sha1;
            if !same {
                return Err(Error::ImageUuidAlreadyExists(uuid));
            }
        } else {
            // Validate now, so a bad manifest is a 422 and not a failed task.
            manifest::prepare_import(&m, &uuid, self.manifest_mode()).map_err(Error::validation)?;
        }
        // The request is well-formed; now the pool it installs into.
        self.zfs.available()?;
        self.require_pool(&pool)?;
        let file_len = std::fs::metadata(&req.file)
            .map_err(|e| Error::param("file", format!("{}: {e}", req.file.display())))?
            .len();
        let svc = self.clone();
        let input = json!({"manifest": req.manifest, "file": req.file, "pool": pool.as_str(), "image_uuid": uuid});
        self.tasks.start(
            "install-from-files",
            input,
            Some(format!("import:{uuid}")),
            move |ctx| {
                ctx.set_total(file_len);
                if existing.is_none() {
                    svc.import_from_file(ctx, &uuid, &m, &req.file, &params)?;
                } else {
                    ctx.add_done(file_len);
                }
                svc.run_install(ctx, &uuid, &pool)?;
                Ok(json!({"image_uuid": uuid, "pool": pool.as_str()}))
            },
        )
    }

    fn import_from_file(
        &self,
        ctx: &TaskCtx,
        uuid: &str,
        m: &Value,
        path: &Path,
        p: &FileParams,
    ) -> Result<()> {
        let mut src = std::fs::File::open(path)
            .map_err(|e| Error::param("file", format!("{}: {e}", path.display())))?;
        let ingest = self
            .cas
            .ingest()
            .map_err(|e| Error::io("starting the image file", e))?;
        let mut w = IngestWriter { ingest };
        match pipe::copy(ctx, &mut src, &mut w, true) {
            Ok(_) => {}
            Err(CopyError::Cancelled) => {
                return Err(Error::Cancelled(format!("import of {uuid} was cancelled")))
            }
            Err(CopyError::Read(e)) => {
                return Err(Error::param(
                    "file",
                    format!("reading {}: {e}", path.display()),
                ))
            }
            Err(CopyError::Write(e)) => {
                return Err(Error::io(&format!("writing the file of image {uuid}"), e))
            }
        }
        w.flush()
            .map_err(|e| Error::io("writing the image file", e))?;
        let sealed: Sealed = w
            .ingest
            .finish()
            .map_err(|e| Error::io("writing the image file", e))?;
        check_sealed(uuid, &sealed, p)?;
        let mut manifest =
            manifest::prepare_import(m, uuid, self.manifest_mode()).map_err(Error::validation)?;
        self.assign_channel(&mut manifest, None);
        if !manifest.contains_key("published_at") {
            manifest.insert("published_at".into(), json!(crate::time::now_timestamp()));
        }
        let uuid = uuid.to_string();
        self.write_locked(move |svc| {
            if svc.meta.get(&uuid).is_some() {
                return Err(Error::ImageUuidAlreadyExists(uuid.clone()));
            }
            svc.check_origin(&manifest)?;
            svc.meta
                .put(ImageRecord {
                    manifest,
                    activated: false,
                    content_md5: None,
                    icon: None,
                })
                .map_err(|e| Error::io(&format!("storing image {uuid}"), e))?;
            let result = svc
                .commit_file(&uuid, sealed, p)
                .and_then(|_| svc.activate_locked(&uuid));
            if result.is_err() {
                // One call: all or nothing.
                let _ = svc.meta.delete(&uuid);
            }
            result.map(|_| ())
        })
    }
}

/// Writes `path` through a temp file in the same directory, fsynced and
/// renamed into place, so a reader never sees a partial file.
fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> io::Result<()>,
) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = dir.join(format!(
        ".{}.partial",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("export")
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        fill(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(&format!("writing {}", path.display()), e)
    })
}
