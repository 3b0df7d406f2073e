//! Image use cases: create, import, add file, activate, enable/disable,
//! update, delete, list, get, and opening the file for download.
//!
//! State follows IMGAPI (imgapi.md section 3): `activated` and `disabled`
//! determine `state`, except for the placeholder states `creating` and
//! `failed`. A file can be added only while unactivated; activation needs a
//! file and sets `published_at` when unset.

use super::filter::ListFilter;
use super::precondition::{etag_of, Precondition};
use super::Service;
use crate::error::{Error, Result};
use crate::manifest::{self, FieldError, Manifest};
use crate::store::cas::Sealed;
use crate::store::meta::{Cached, ImageRecord};
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Parameters of AddImageFile.
#[derive(Debug, Clone)]
pub struct FileParams {
    pub compression: String,
    pub sha1: Option<String>,
    pub size: Option<u64>,
    /// The request's Content-Length, when it had one.
    pub content_length: Option<u64>,
    /// The ZFS dataset GUID of the stream, kept as `files[0].dataset_guid`
    /// (imgadm reads it to receive incremental images).
    pub dataset_guid: Option<String>,
}

/// Why a request body stopped early.
#[derive(Debug)]
pub enum BodyError {
    /// The client closed the connection or sent less than it announced.
    Truncated(String),
    /// No byte arrived for the idle timeout.
    Idle(u64),
    /// Fewer than `limits.min_upload_bytes_per_sec` on average arrived in an
    /// idle-timeout window.
    TooSlow { bytes: u64, secs: u64 },
}

/// The chunks of an upload, as the HTTP layer receives them.
pub type Chunks = mpsc::Receiver<std::result::Result<Bytes, BodyError>>;

/// Checks a path uuid. IMGAPI answers ResourceNotFound for a malformed one.
pub fn check_uuid(uuid: &str) -> Result<()> {
    if manifest::is_uuid(uuid) {
        Ok(())
    } else {
        Err(Error::ResourceNotFound(format!(
            "image {uuid:?} not found: not a lowercase UUID"
        )))
    }
}

fn calc_state(rec: &mut ImageRecord) {
    let m = &mut rec.manifest;
    if matches!(manifest::state_of(m), Some("creating" | "failed")) {
        return;
    }
    let disabled = m.get("disabled").and_then(|v| v.as_bool()).unwrap_or(false);
    let state = match (rec.activated, disabled) {
        (false, _) => "unactivated",
        (true, true) => "disabled",
        (true, false) => "active",
    };
    m.insert("state".into(), json!(state));
}

pub(super) fn not_found(uuid: &str) -> Error {
    Error::ResourceNotFound(format!("image {uuid} not found"))
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(&context, e)
}

impl Service {
    pub fn get_image(&self, uuid: &str) -> Result<Arc<ImageRecord>> {
        check_uuid(uuid)?;
        self.meta.get(uuid).ok_or_else(|| not_found(uuid))
    }

    /// GetImage, with the manifest already serialised.
    pub fn get_image_cached(&self, uuid: &str) -> Result<Arc<Cached>> {
        check_uuid(uuid)?;
        self.meta.get_cached(uuid).ok_or_else(|| not_found(uuid))
    }

    /// ListImages: one page, in list order. A `package` filter is resolved
    /// here, so that every caller gets it.
    ///
    /// # Errors
    /// The filter's own errors; `InvalidParameter` for an unknown package.
    pub fn list_images(&self, filter: &ListFilter) -> Result<Vec<Arc<Cached>>> {
        if let (Some(p), None) = (&filter.package, &filter.fit) {
            let mut filter = filter.clone();
            filter.fit = Some(self.package_fit_param(p)?);
            return filter.select(&self.meta);
        }
        filter.select(&self.meta)
    }

    /// The one origin rule: `origin`, when the manifest has one, is an
    /// image in the store (in any state), else `OriginDoesNotExist`. Used
    /// by CreateImage, AdminImportImage, UpdateImage and the JSON Patch,
    /// create-from-dataset, install-from-files and import-remote, each
    /// under the store's write lock when it commits. (Import-remote refuses
    /// an origin that is stored but not activated earlier, when it plans
    /// the chain.)
    pub(super) fn check_origin(&self, m: &Manifest) -> Result<()> {
        if let Some(origin) = manifest::origin_of(m) {
            if !self.meta.contains(origin) {
                return Err(Error::OriginDoesNotExist(origin.to_string()));
            }
        }
        Ok(())
    }

    pub(super) fn put(&self, mut rec: ImageRecord) -> Result<Arc<ImageRecord>> {
        calc_state(&mut rec);
        let uuid = rec.uuid().to_string();
        self.meta
            .put(rec)
            .map_err(io_err(format!("storing image {uuid}")))
    }

    /// CreateImage: a new unactivated image with a server-assigned uuid.
    pub async fn create_image(self: &Arc<Self>, body: Value) -> Result<Arc<ImageRecord>> {
        check_create_body(&body)?;
        self.mutate(move |svc| {
            let uuid = uuid::Uuid::new_v4().to_string();
            let m = manifest::prepare_create(&body, &uuid, svc.manifest_mode())
                .map_err(Error::validation)?;
            svc.check_origin(&m)?;
            svc.put(ImageRecord {
                manifest: m,
                activated: false,
                content_md5: None,
                icon: None,
            })
        })
        .await
    }

    /// AdminImportImage: keeps the given uuid and `published_at`. A
    /// `creating`/`failed` placeholder of the same uuid is replaced.
    pub async fn import_image(
        self: &Arc<Self>,
        uuid: String,
        body: Value,
    ) -> Result<Arc<ImageRecord>> {
        check_uuid(&uuid)?;
        check_import_body(&uuid, &body)?;
        self.mutate(move |svc| {
            if let Some(old) = svc.meta.get(&uuid) {
                if !matches!(old.state(), Some("creating" | "failed")) {
                    return Err(Error::ImageUuidAlreadyExists(uuid));
                }
            }
            let m = manifest::prepare_import(&body, &uuid, svc.manifest_mode())
                .map_err(Error::validation)?;
            svc.check_origin(&m)?;
            svc.put(ImageRecord {
                manifest: m,
                activated: false,
                content_md5: None,
                icon: None,
            })
        })
        .await
    }

    /// AddImageFile: streams `chunks` into the blob store, verifying size and
    /// SHA-1, then points the image's `files[0]` at the blob. Nothing is
    /// stored unless every check passes.
    pub async fn add_file(
        self: &Arc<Self>,
        uuid: String,
        p: FileParams,
        chunks: Chunks,
    ) -> Result<Arc<ImageRecord>> {
        self.add_file_if(uuid, p, chunks, Precondition::none())
            .await
    }

    /// AddImageFile guarded by `cond` (see [`Precondition`]): checked before
    /// the upload is read, and again under the write lock at commit.
    pub async fn add_file_if(
        self: &Arc<Self>,
        uuid: String,
        p: FileParams,
        mut chunks: Chunks,
        cond: Precondition,
    ) -> Result<Arc<ImageRecord>> {
        let rec = self.get_image(&uuid)?;
        cond.check_write(&etag_of(&rec))?;
        if rec.activated {
            return Err(Error::ImageFilesImmutable(uuid));
        }
        self.check_file_params(&uuid, &p)?;
        let max = self.limits().max_file_bytes;
        if let Some(n) = p.size.or(p.content_length) {
            let dir = crate::store::layout::ingest(&self.config().data_dir);
            if let Ok(st) = nix::sys::statvfs::statvfs(&dir) {
                // fsblkcnt_t and c_ulong are not u64 on every target.
                #[allow(clippy::unnecessary_cast)]
                let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
                if n > free {
                    return Err(Error::InsufficientStorage(format!(
                        "image file of {n} bytes does not fit: {free} bytes free in {}; nothing was stored",
                        dir.display()
                    )));
                }
            }
        }
        let id = uuid.clone();
        let (sealed, p) = self
            .blocking(move |svc| svc.ingest(&id, &p, max, &mut chunks).map(|s| (s, p)))
            .await?;
        self.mutate(move |svc| {
            svc.current_if(&uuid, &cond)?;
            svc.commit_file(&uuid, sealed, &p)
        })
        .await
    }

    /// The checks of AddImageFile's parameters made before any byte is
    /// read: a known compression, a well-formed SHA-1, an announced size
    /// within `limits.max_file_bytes`.
    pub(super) fn check_file_params(&self, uuid: &str, p: &FileParams) -> Result<()> {
        if !manifest::COMPRESSIONS.contains(&p.compression.as_str()) {
            return Err(Error::param(
                "compression",
                format!(
                    "{:?} is not one of {}",
                    p.compression,
                    manifest::COMPRESSIONS.join(", ")
                ),
            ));
        }
        if let Some(sha1) = &p.sha1 {
            if sha1.len() != 40 || !sha1.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::param(
                    "sha1",
                    format!("{sha1:?} is not a 40-digit hex SHA-1"),
                ));
            }
        }
        let max = self.limits().max_file_bytes;
        for (name, v) in [("size", p.size), ("Content-Length", p.content_length)] {
            if let Some(n) = v.filter(|&n| n > max) {
                return Err(Error::Upload(
                    format!(
                        "image file of {n} bytes ({name}) for image {uuid} is larger than the limit of {max} bytes (limits.max_file_bytes)"
                    ),
                    vec![],
                ));
            }
        }
        Ok(())
    }

    /// Adds `data` as the uncompressed file of `uuid` (unit tests).
    #[cfg(test)]
    pub(crate) async fn add_test_file(
        self: &Arc<Self>,
        uuid: &str,
        data: &'static [u8],
    ) -> Result<Arc<ImageRecord>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(Ok(Bytes::from_static(data)))
            .await
            .expect("receiver is alive");
        drop(tx);
        let p = FileParams {
            compression: "none".into(),
            sha1: None,
            size: None,
            content_length: None,
            dataset_guid: None,
        };
        self.add_file(uuid.to_string(), p, rx).await
    }

    /// Writes the upload into a temp file and checks it. Blocking.
    fn ingest(&self, uuid: &str, p: &FileParams, max: u64, chunks: &mut Chunks) -> Result<Sealed> {
        let ctx = || format!("writing the file of image {uuid}");
        let mut ingest = self.cas.ingest().map_err(|e| Error::io(&ctx(), e))?;
        // The ingest gathers the HTTP frames into large aligned chunks, so
        // hashing and writing work on large buffers, side by side.
        while let Some(chunk) = chunks.blocking_recv() {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let got = ingest.bytes_written();
                    let expected = p.content_length.or(p.size);
                    let msg = match e {
                        BodyError::Truncated(why) => format!(
                            "upload of image {uuid} ended after {got} bytes{}: {why}; nothing was stored",
                            expected.map(|n| format!(" of {n}")).unwrap_or_default()
                        ),
                        BodyError::Idle(secs) => {
                            return Err(Error::RequestTimeout(format!(
                                "upload of image {uuid} stalled for {secs} s after {got} bytes (limits.idle_timeout_secs); nothing was stored"
                            )))
                        }
                        BodyError::TooSlow { bytes, secs } => {
                            return Err(Error::RequestTimeout(format!(
                                "upload of image {uuid} brought only {bytes} bytes in {secs} s after {got} bytes, under limits.min_upload_bytes_per_sec; nothing was stored"
                            )))
                        }
                    };
                    let errors = vec![FieldError {
                        field: "size".into(),
                        code: "Invalid".into(),
                        message: format!(
                            "expected {}, got {got}",
                            expected.map_or("more".into(), |n| n.to_string())
                        ),
                    }];
                    return Err(Error::Upload(msg, errors));
                }
            };
            if ingest.bytes_written() + chunk.len() as u64 > max {
                return Err(Error::Upload(
                    format!(
                        "image file for {uuid} is larger than the limit of {max} bytes (limits.max_file_bytes); nothing was stored"
                    ),
                    vec![],
                ));
            }
            ingest.write(&chunk).map_err(|e| Error::io(&ctx(), e))?;
        }
        let sealed = ingest.finish().map_err(|e| Error::io(&ctx(), e))?;
        check_sealed(uuid, &sealed, p)?;
        Ok(sealed)
    }

    /// Commits a checked upload and records it. Runs under the write lock.
    pub(crate) fn commit_file(
        &self,
        uuid: &str,
        sealed: Sealed,
        p: &FileParams,
    ) -> Result<Arc<ImageRecord>> {
        // Re-check: the image may have been activated or deleted while the
        // body was streaming.
        let cur = self.meta.get(uuid).ok_or_else(|| not_found(uuid))?;
        if cur.activated {
            return Err(Error::ImageFilesImmutable(uuid.to_string()));
        }
        let d = sealed.digests.clone();
        self.cas
            .commit(sealed)
            .map_err(|e| Error::cas(format!("storing the file of image {uuid}"), e))?;
        let old_blob = cur.blob_sha256().map(str::to_string);
        let mut rec = (*cur).clone();
        let mut file = json!({
            "sha1": d.sha1,
            "size": d.size,
            "compression": p.compression,
            "digest": format!("sha256:{}", d.sha256),
        });
        if let Some(guid) = &p.dataset_guid {
            file["dataset_guid"] = json!(guid);
        }
        rec.manifest.insert("files".into(), json!([file]));
        rec.content_md5 = Some(d.md5_b64);
        let rec = self.put(rec)?;
        if let Some(old) = old_blob.filter(|o| *o != d.sha256) {
            self.release_blob(&old);
        }
        Ok(rec)
    }

    /// Removes a blob once no image refers to it. Failures are logged, not
    /// returned: the metadata change has been committed already, and an
    /// unreferenced blob is only wasted space that `vacuum` reclaims.
    pub(super) fn release_blob(&self, sha256: &str) {
        let used = self.meta.any(|f| f.uses_blob(sha256));
        if !used {
            if let Err(e) = self.cas.remove(sha256) {
                tracing::warn!(blob = sha256, error = %e, "could not remove unreferenced blob");
            }
        }
    }

    pub async fn activate(self: &Arc<Self>, uuid: String) -> Result<Arc<ImageRecord>> {
        self.activate_if(uuid, Precondition::none()).await
    }

    /// ActivateImage guarded by `cond`, checked under the write lock.
    pub async fn activate_if(
        self: &Arc<Self>,
        uuid: String,
        cond: Precondition,
    ) -> Result<Arc<ImageRecord>> {
        check_uuid(&uuid)?;
        self.mutate(move |svc| {
            svc.check_precondition(&uuid, &cond)?;
            svc.activate_locked(&uuid)
        })
        .await
    }

    /// Checks `cond` against the current record of `uuid`. Called under
    /// the write lock, by the write it guards, so nothing lands between
    /// the comparison and the commit.
    pub(super) fn check_precondition(&self, uuid: &str, cond: &Precondition) -> Result<()> {
        if cond == &Precondition::none() {
            return Ok(());
        }
        self.current_if(uuid, cond).map(drop)
    }

    /// The current record of `uuid`, once `cond` holds for it. Called
    /// under the write lock, by the write it guards.
    pub(super) fn current_if(&self, uuid: &str, cond: &Precondition) -> Result<Arc<ImageRecord>> {
        let cur = self.meta.get(uuid).ok_or_else(|| not_found(uuid))?;
        cond.check_write(&etag_of(&cur))?;
        Ok(cur)
    }

    /// ActivateImage, for callers holding the write lock.
    pub(crate) fn activate_locked(&self, uuid: &str) -> Result<Arc<ImageRecord>> {
        let cur = self.meta.get(uuid).ok_or_else(|| not_found(uuid))?;
        if cur.activated {
            return Err(Error::ImageAlreadyActivated(uuid.to_string()));
        }
        if cur.file().is_none() {
            return Err(Error::NoActivationNoFile(uuid.to_string()));
        }
        let mut rec = (*cur).clone();
        rec.activated = true;
        if !rec.manifest.contains_key("published_at") {
            rec.manifest
                .insert("published_at".into(), json!(crate::time::now_timestamp()));
        }
        rec.manifest.remove("expires_at");
        self.put(rec)
    }

    pub async fn set_disabled(
        self: &Arc<Self>,
        uuid: String,
        disabled: bool,
    ) -> Result<Arc<ImageRecord>> {
        self.set_disabled_if(uuid, disabled, Precondition::none())
            .await
    }

    /// EnableImage / DisableImage guarded by `cond`.
    pub async fn set_disabled_if(
        self: &Arc<Self>,
        uuid: String,
        disabled: bool,
        cond: Precondition,
    ) -> Result<Arc<ImageRecord>> {
        check_uuid(&uuid)?;
        self.mutate(move |svc| {
            let cur = svc.current_if(&uuid, &cond)?;
            let mut rec = (*cur).clone();
            rec.manifest.insert("disabled".into(), json!(disabled));
            svc.put(rec)
        })
        .await
    }

    /// UpdateImage: changes mutable fields; the result is validated whole.
    pub async fn update(
        self: &Arc<Self>,
        uuid: String,
        changes: Value,
    ) -> Result<Arc<ImageRecord>> {
        self.update_if(uuid, changes, Precondition::none()).await
    }

    /// UpdateImage guarded by `cond`.
    pub async fn update_if(
        self: &Arc<Self>,
        uuid: String,
        changes: Value,
        cond: Precondition,
    ) -> Result<Arc<ImageRecord>> {
        check_uuid(&uuid)?;
        self.mutate(move |svc| {
            let cur = svc.current_if(&uuid, &cond)?;
            let m = manifest::apply_update(&cur.manifest, &changes, svc.manifest_mode())
                .map_err(Error::validation)?;
            svc.check_origin(&m)?;
            let mut rec = (*cur).clone();
            rec.manifest = m;
            svc.put(rec)
        })
        .await
    }

    /// DeleteImage: refused while another image names this one as origin.
    /// The file's and the icon's blobs go with it (when nothing else uses
    /// them).
    pub async fn delete(self: &Arc<Self>, uuid: String) -> Result<()> {
        self.delete_if(uuid, Precondition::none()).await
    }

    /// DeleteImage guarded by `cond`.
    pub async fn delete_if(self: &Arc<Self>, uuid: String, cond: Precondition) -> Result<()> {
        check_uuid(&uuid)?;
        self.mutate(move |svc| svc.delete_locked(&uuid, &cond))
            .await
    }

    /// DeleteImage, for callers holding the write lock.
    pub(super) fn delete_locked(&self, uuid: &str, cond: &Precondition) -> Result<()> {
        let cur = self.current_if(uuid, cond)?;
        let dependents: Vec<String> = self.meta.uuids_where(|f| f.origin.as_deref() == Some(uuid));
        if !dependents.is_empty() {
            return Err(Error::ImageHasDependentImages {
                uuid: uuid.to_string(),
                dependents,
            });
        }
        self.meta
            .delete(uuid)
            .map_err(io_err(format!("deleting image {uuid}")))?;
        if let Some(blob) = cur.blob_sha256() {
            self.release_blob(blob);
        }
        if let Some(icon) = &cur.icon {
            self.release_blob(&icon.sha256);
        }
        Ok(())
    }

    /// The path of the image's file, for download.
    pub fn file_path(&self, uuid: &str) -> Result<(Arc<ImageRecord>, std::path::PathBuf)> {
        let rec = self.get_image(uuid)?;
        let sha = rec
            .blob_sha256()
            .ok_or_else(|| Error::ResourceNotFound(format!("image {uuid} has no file")))?;
        let path = self
            .cas
            .blob_path(sha)
            .map_err(|e| Error::cas(format!("image {uuid}"), e))?;
        Ok((rec, path))
    }
}

/// What IMGAPI's AdminImportImage refuses before it looks at the manifest
/// (`lib/images.js` `apiAdminImportImage`, `Image.create`): a body uuid
/// that is not the path's, then keys it does not take ("invalid extra
/// parameters", such as `activated` or `expires_at`). Each is one
/// `InvalidParameter`.
fn check_import_body(uuid: &str, body: &Value) -> Result<()> {
    let given = body.get("uuid");
    if given.and_then(Value::as_str) != Some(uuid) {
        let given = given.map_or("undefined".to_string(), |v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let message = format!("URL UUID, \"{uuid}\" and body UUID, \"{given}\" do not match");
        return Err(Error::InvalidParameter(
            message.clone(),
            vec![FieldError {
                field: "uuid".into(),
                code: "Invalid".into(),
                message,
            }],
        ));
    }
    refuse_extra_fields(body, true)
}

/// IMGAPI's "invalid extra parameters" (`Image.create`): one
/// `InvalidParameter` listing every key the request does not take.
fn refuse_extra_fields(body: &Value, import: bool) -> Result<()> {
    let extra = manifest::extra_fields(body, import);
    if extra.is_empty() {
        return Ok(());
    }
    let what = if import {
        "AdminImportImage"
    } else {
        "CreateImage"
    };
    Err(Error::InvalidParameter(
        format!("invalid extra parameters: \"{}\"", extra.join("\", \"")),
        extra
            .iter()
            .map(|f| FieldError {
                field: f.clone(),
                code: "Invalid".into(),
                message: format!("{f} is not a field {what} takes"),
            })
            .collect(),
    ))
}

/// What IMGAPI's CreateImage refuses before it looks at the manifest
/// (`lib/images.js` `apiCreateImage`, `Image.create`): a `state` (422
/// ValidationFailed, so that a manifest is not mistaken for a state
/// change), then keys it does not take, such as `uuid`, `published_at`
/// or `activated` (InvalidParameter). `files` is dropped.
fn check_create_body(body: &Value) -> Result<()> {
    if body.get("state").is_some() {
        return Err(Error::Validation(
            "invalid image data: \"state\"".into(),
            vec![FieldError {
                field: "state".into(),
                code: "NotAllowed".into(),
                message: "Parameter cannot be set".into(),
            }],
        ));
    }
    refuse_extra_fields(body, false)
}

/// Checks a written file against what the client promised: not empty, the
/// declared size and SHA-1. The error names expected and actual values.
pub(crate) fn check_sealed(uuid: &str, sealed: &Sealed, p: &FileParams) -> Result<()> {
    let d = &sealed.digests;
    let mut errors = Vec::new();
    let invalid = |field: &str, message: String| FieldError {
        field: field.into(),
        code: "Invalid".into(),
        message,
    };
    if d.size == 0 {
        errors.push(invalid("size", "the file is empty".into()));
    }
    if let Some(size) = p.size.filter(|&s| s != d.size) {
        errors.push(invalid("size", format!("expected {size}, got {}", d.size)));
    }
    if let Some(sha1) = p.sha1.as_ref().filter(|s| !s.eq_ignore_ascii_case(&d.sha1)) {
        errors.push(invalid("sha1", format!("expected {sha1}, got {}", d.sha1)));
    }
    if errors.is_empty() {
        return Ok(());
    }
    let what: Vec<String> = errors
        .iter()
        .map(|e| format!("{} {}", e.field, e.message))
        .collect();
    Err(Error::FileMismatch(
        format!(
            "file for image {uuid} does not match: {}; nothing was stored",
            what.join("; ")
        ),
        errors,
    ))
}
