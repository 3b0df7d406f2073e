//! Images and files taken from elsewhere within one request, as IMGAPI's
//! operators do it (sdc-imgapi `lib/images.js`):
//!
//! - AdminImportImage with `?source=URL` (`apiAdminImportImageFromSource`):
//!   the manifest of the same uuid at another IMGAPI becomes a new,
//!   unactivated image here (its file follows with AddImageFile
//!   `?source=`); an image already here is `ImageUuidAlreadyExists`.
//! - AddImageFile with `?source=URL` (`apiAddImageFileFromSource`): the file
//!   of the same uuid at that IMGAPI, checked against the size and SHA-1
//!   (and SHA-256, when given) its manifest there states.
//! - AddImageFileFromUrl (`apiAddImageFileFromUrl`): the file at an
//!   `https://` URL, checked against `?sha1=` when given.
//!
//! A `source` that is one of the configured sources is used as configured
//! (its `insecure` flag, its channel); any other URL is an ad-hoc IMGAPI.
//!
//! Both file paths stream through the source client (retries, `Range`
//! resume) into a blob-store ingest with a bounded channel in between, so
//! memory stays flat whatever the size, and commit through the same
//! function AddImageFile uses: nothing unverified is stored. A source that
//! cannot be reached or read is 503 `RemoteSourceError`; a file that is not
//! what was announced is 400 `Download`.

use super::images::{check_sealed, check_uuid, FileParams};
use super::visibility::{check_operator, Scope};
use super::Service;
use crate::error::{Error, Result};
use crate::manifest::{self, Manifest};
use crate::sources::client::{Delivery, FetchError, Transfer, DOWNLOAD};
use crate::sources::{FileLoc, RemoteImage, Source};

use crate::store::cas::Sealed;
use crate::store::meta::ImageRecord;
use bytes::Bytes;
use serde_json::Value;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Fields of a remote manifest that describe the image at the remote, not
/// what the import sends: they are dropped before the import's own checks
/// (IMGAPI's import from a source does the same with `channels`, and
/// creates the image unactivated, without its file).
const REMOTE_ONLY: &[&str] = &[
    "state",
    "files",
    "activated",
    "icon",
    "channels",
    "error",
    "expires_at",
];

fn remote_error(uuid: &str, source: &str, what: impl std::fmt::Display) -> Error {
    Error::RemoteSourceError(format!(
        "unable to get the manifest of image {uuid} from source {source}: {what}"
    ))
}

impl Service {
    /// The manifest of `uuid` at the IMGAPI `source`.
    async fn remote_manifest(&self, uuid: &str, source: &Source) -> Result<RemoteImage> {
        match source.get(&self.sources.http, uuid).await {
            Ok(Some(img)) => Ok(img),
            Ok(None) => Err(remote_error(
                uuid,
                source.url(),
                "the source has no such image",
            )),
            Err(e) => Err(remote_error(uuid, source.url(), e)),
        }
    }

    /// AdminImportImage from `source`: the manifest the IMGAPI there has
    /// for `uuid`, stored here unactivated and without its file.
    ///
    /// # Errors
    /// `OperatorOnly` for a request on an account's behalf;
    /// `InvalidParameter` for an unusable `source`; `RemoteSourceError`
    /// when the source does not give the manifest; `ImageUuidAlreadyExists`
    /// for an image already here; the import's validation errors.
    pub async fn import_from_source(
        self: &Arc<Self>,
        uuid: String,
        source: String,
        scope: &Scope,
    ) -> Result<Arc<ImageRecord>> {
        check_operator(scope)?;
        let channel = scope.channel.clone();
        check_uuid(&uuid)?;
        let src = self.sources.lookup(&source)?;
        let img = self.remote_manifest(&uuid, &src).await?;
        let mut m: Manifest = img.manifest;
        for k in REMOTE_ONLY {
            m.remove(*k);
        }
        self.mutate(move |svc| {
            if svc.meta.contains(&uuid) {
                return Err(Error::ImageUuidAlreadyExists(uuid));
            }
            let mode = svc.manifest_mode();
            let mut m =
                manifest::prepare_import(&Value::Object(m), &uuid, mode).map_err(|errors| {
                    let mut e = Error::validation(errors);
                    if let Error::Validation(msg, _) = &mut e {
                        *msg = format!("{msg} (image {uuid} at source {source})");
                    }
                    e
                })?;
            svc.assign_channel(&mut m, channel.as_ref());
            svc.check_origin(&m)?;
            svc.put(ImageRecord {
                manifest: m,
                ..ImageRecord::default()
            })
        })
        .await
    }

    /// AddImageFile from `source`: the file of `uuid` at that IMGAPI,
    /// verified against its manifest there.
    ///
    /// # Errors
    /// 404 for an unknown image, `ImageFilesImmutable` once activated,
    /// `RemoteSourceError` when the source does not give the manifest or
    /// the file, `Download` for a file that is not what the manifest says.
    pub async fn add_file_from_source(
        self: &Arc<Self>,
        uuid: String,
        source: String,
    ) -> Result<Arc<ImageRecord>> {
        let rec = self.get_image(&uuid)?;
        if rec.activated {
            return Err(Error::ImageFilesImmutable(uuid));
        }
        let src = self.sources.lookup(&source)?;
        let img = self.remote_manifest(&uuid, &src).await?;
        let bad = |what: &str| remote_error(&uuid, src.url(), what);
        let Some(FileLoc::Url(file_url)) = img.file.clone() else {
            return Err(bad("its manifest names no file URL"));
        };
        let sha1 = img
            .sha1()
            .filter(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| bad("files[0].sha1 is missing or not a SHA-1"))?
            .to_lowercase();
        let size = img
            .size()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad("files[0].size is missing"))?;
        let compression = img.compression().unwrap_or("none").to_string();
        let p = FileParams {
            compression,
            sha1: Some(sha1),
            size: Some(size),
            content_length: None,
            dataset_guid: img
                .manifest
                .get("files")
                .and_then(|f| f.get(0))
                .and_then(|f| f.get("dataset_guid"))
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        self.check_file_params(&uuid, &p)?;
        let sha256 = img.sha256().map(str::to_string);
        let (http, insecure) = (self.sources.http.clone(), src.spec.insecure);
        let what = format!("the file of image {uuid} from {file_url}");
        let sealed = self
            .fetch_blob(&uuid, &what, &p, move |to| async move {
                http.download(&file_url, insecure, Some(size), DOWNLOAD, &to)
                    .await
            })
            .await?;
        if let Some(want) = sha256.filter(|w| *w != sealed.digests.sha256) {
            return Err(Error::Download(format!(
                "file for image {uuid} does not match: sha256 expected {want}, got {}; nothing was stored ({what})",
                sealed.digests.sha256
            )));
        }
        self.mutate(move |svc| svc.commit_file(&uuid, sealed, &p))
            .await
    }

    /// AddImageFileFromUrl: the file at `url` (https only, as IMGAPI),
    /// checked against `p.sha1` when given.
    ///
    /// # Errors
    /// 404 for an unknown image, `ImageFilesImmutable` once activated,
    /// `InvalidParameter` for a bad compression, SHA-1 or URL,
    /// `RemoteSourceError` when the URL cannot be read, `Download` for an
    /// empty file or one whose SHA-1 differs.
    pub async fn add_file_from_url(
        self: &Arc<Self>,
        uuid: String,
        url: String,
        p: FileParams,
    ) -> Result<Arc<ImageRecord>> {
        let rec = self.get_image(&uuid)?;
        if rec.activated {
            return Err(Error::ImageFilesImmutable(uuid));
        }
        self.check_file_params(&uuid, &p)?;
        let host = url
            .strip_prefix("https://")
            .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
        if host.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace)) {
            return Err(Error::param(
                "file_url",
                format!("{url:?}: only URLs using the https: scheme are supported"),
            ));
        }
        let http = self.sources.http.clone();
        let what = format!("the file of image {uuid} from {url}");
        let sealed = self
            .fetch_blob(&uuid, &what, &p, move |to| async move {
                http.download(&url, false, None, DOWNLOAD, &to).await
            })
            .await?;
        self.mutate(move |svc| svc.commit_file(&uuid, sealed, &p))
            .await
    }

    /// Runs `download` into a blob-store ingest and checks the result
    /// against `p`: an uncommitted, verified blob.
    async fn fetch_blob<F, Fut>(
        self: &Arc<Self>,
        uuid: &str,
        what: &str,
        p: &FileParams,
        download: F,
    ) -> Result<Sealed>
    where
        F: FnOnce(Delivery) -> Fut,
        Fut: Future<Output = std::result::Result<(), FetchError>> + Send + 'static,
    {
        // A few MiB in flight: memory stays flat whatever the size.
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        let to = Delivery {
            tx,
            stats: Arc::new(Transfer::default()),
            stop: Arc::new(|| false),
        };
        let running = tokio::spawn(download(to));
        let max = self.limits().max_file_bytes;
        let ctx = format!("writing {what}");
        let written = self
            .blocking(move |svc| {
                let mut ingest = svc.cas.ingest().map_err(|e| Error::io(&ctx, e))?;
                while let Some(chunk) = rx.blocking_recv() {
                    if ingest.bytes_written() + chunk.len() as u64 > max {
                        return Err(Error::Download(format!(
                            "{ctx}: larger than the limit of {max} bytes (limits.max_file_bytes); nothing was stored"
                        )));
                    }
                    ingest.write(&chunk).map_err(|e| Error::io(&ctx, e))?;
                }
                ingest.finish().map_err(|e| Error::io(&ctx, e))
            })
            .await;
        let outcome = running
            .await
            .map_err(|e| Error::internal("download task", e))?;
        if let Err(e) = outcome {
            // What a failed write said comes first: it is why the download
            // stopped.
            written?;
            return Err(match e {
                FetchError::Mismatch { .. } => Error::Download(format!("{what}: {e}")),
                e => Error::RemoteSourceError(format!("unable to get {what}: {e}")),
            });
        }
        let sealed = written?;
        check_sealed(uuid, &sealed, p).map_err(|e| Error::Download(e.to_string()))?;
        Ok(sealed)
    }
}
