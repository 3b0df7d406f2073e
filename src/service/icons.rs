//! Image icons: AddImageIcon, GetImageIcon, DeleteImageIcon.
//!
//! As in IMGAPI (sdc-imgapi `lib/images.js` `apiAddImageIcon`): the body
//! is the icon itself, `Content-Type` one of [`ICON_CONTENT_TYPES`], at
//! most [`MAX_ICON_BYTES`], an optional `?sha1=` checked against it; every
//! refusal is 400 `Upload`. An icon can be added in any state and replaces
//! the previous one. The manifest says `icon: true` while the image has one.
//!
//! The icon is a blob of the content-addressed store, like the image file,
//! and the record names it ([`Icon`]): fsck counts it as referenced (and
//! reports it missing), vacuum keeps it, and deleting the icon or the image
//! releases the blob once nothing else refers to it.

use super::images::{check_uuid, not_found};
use super::Service;
use crate::error::{Error, Result};
use crate::store::meta::{Icon, ImageRecord};
use std::path::PathBuf;
use std::sync::Arc;

/// The media types an icon may have (IMGAPI's `ICON_CONTENT_TYPES`).
pub const ICON_CONTENT_TYPES: &[&str] = &["image/jpeg", "image/gif", "image/png"];

/// The largest icon, in bytes (IMGAPI's `MAX_ICON_SIZE`, 128 KiB).
pub const MAX_ICON_BYTES: u64 = 128 * 1024;

/// What AddImageIcon was sent, besides the bytes.
#[derive(Debug, Clone, Default)]
pub struct IconUpload {
    /// The request's `Content-Type`, as sent.
    pub content_type: Option<String>,
    /// `?sha1=`, the SHA-1 the client says the icon has.
    pub sha1: Option<String>,
    /// The request's `Content-Length`, when it had one.
    pub content_length: Option<u64>,
}

fn upload(message: String) -> Error {
    Error::Upload(message, Vec::new())
}

impl IconUpload {
    /// The media type, when it is one an icon may have.
    ///
    /// # Errors
    /// 400 `Upload` naming the type sent and the ones allowed.
    pub fn media_type(&self) -> Result<&'static str> {
        let sent = self.content_type.as_deref().unwrap_or_default();
        let media = sent.split(';').next().unwrap_or_default().trim();
        ICON_CONTENT_TYPES
            .iter()
            .find(|t| t.eq_ignore_ascii_case(media))
            .copied()
            .ok_or_else(|| {
                upload(format!(
                    "invalid content-type, {sent:?}, must be one of {}",
                    ICON_CONTENT_TYPES.join(", ")
                ))
            })
    }

    /// The checks made before the body is read: the media type and a
    /// `Content-Length` over the limit.
    ///
    /// # Errors
    /// 400 `Upload`.
    pub fn check_head(&self) -> Result<()> {
        self.media_type()?;
        if let Some(n) = self.content_length.filter(|&n| n > MAX_ICON_BYTES) {
            return Err(upload(format!(
                "icon size {n} (from Content-Length) exceeds the maximum allowed size, 128 KiB"
            )));
        }
        Ok(())
    }
}

/// The error for a body that grew past [`MAX_ICON_BYTES`] while streaming.
pub fn too_big() -> Error {
    upload("icon size exceeds the maximum allowed size, 128 KiB; nothing was stored".into())
}

impl Service {
    /// AddImageIcon: stores `data` as the image's icon, replacing any
    /// previous one, and sets `icon: true`.
    ///
    /// # Errors
    /// 404 for an unknown image; 400 `Upload` for a wrong media type, an
    /// icon over 128 KiB, an empty one, or a size or SHA-1 that is not what
    /// the client announced. Nothing changes on error.
    pub async fn add_icon(
        self: &Arc<Self>,
        uuid: String,
        up: IconUpload,
        data: bytes::Bytes,
    ) -> Result<Arc<ImageRecord>> {
        self.get_image(&uuid)?;
        up.check_head()?;
        let content_type = up.media_type()?.to_string();
        let size = data.len() as u64;
        if size > MAX_ICON_BYTES {
            return Err(too_big());
        }
        if size == 0 {
            return Err(upload(format!("icon for image {uuid} is empty")));
        }
        if let Some(n) = up.content_length.filter(|&n| n != size) {
            return Err(upload(format!(
                "\"Content-Length\" header, {n}, does not match uploaded size, {size}"
            )));
        }
        let id = uuid.clone();
        let sealed = self
            .blocking(move |svc| {
                let ctx = || format!("writing the icon of image {id}");
                let mut ingest = svc.cas.ingest().map_err(|e| Error::io(&ctx(), e))?;
                ingest.write(&data).map_err(|e| Error::io(&ctx(), e))?;
                ingest.finish().map_err(|e| Error::io(&ctx(), e))
            })
            .await?;
        let d = sealed.digests.clone();
        if let Some(want) = up.sha1.filter(|s| !s.eq_ignore_ascii_case(&d.sha1)) {
            return Err(upload(format!(
                "\"sha1\" hash, {want}, does not match the uploaded icon file sha1 hash, {}; nothing was stored",
                d.sha1
            )));
        }
        self.mutate(move |svc| {
            let cur = svc.meta.get(&uuid).ok_or_else(|| not_found(&uuid))?;
            svc.cas
                .commit(sealed)
                .map_err(|e| Error::cas(format!("storing the icon of image {uuid}"), e))?;
            let old = cur.icon.as_ref().map(|i| i.sha256.clone());
            let mut rec = (*cur).clone();
            rec.icon = Some(Icon {
                sha256: d.sha256.clone(),
                sha1: d.sha1,
                content_md5: d.md5_b64,
                size: d.size,
                content_type,
                mtime: crate::time::now_timestamp(),
            });
            rec.manifest.insert("icon".into(), serde_json::json!(true));
            let rec = svc.put(rec)?;
            if let Some(old) = old.filter(|o| *o != d.sha256) {
                svc.release_blob(&old);
            }
            Ok(rec)
        })
        .await
    }

    /// DeleteImageIcon: removes the icon and `icon: true`.
    ///
    /// # Errors
    /// 404 for an unknown image or one without an icon.
    pub async fn delete_icon(self: &Arc<Self>, uuid: String) -> Result<Arc<ImageRecord>> {
        check_uuid(&uuid)?;
        self.mutate(move |svc| {
            let cur = svc.meta.get(&uuid).ok_or_else(|| not_found(&uuid))?;
            let Some(icon) = cur.icon.clone() else {
                return Err(no_icon(&uuid));
            };
            let mut rec = (*cur).clone();
            rec.icon = None;
            rec.manifest.remove("icon");
            let rec = svc.put(rec)?;
            svc.release_blob(&icon.sha256);
            Ok(rec)
        })
        .await
    }

    /// GetImageIcon: the icon's facts and the path of its blob.
    ///
    /// # Errors
    /// 404 for an unknown image or one without an icon.
    pub fn icon_path(&self, uuid: &str) -> Result<(Icon, PathBuf)> {
        check_uuid(uuid)?;
        let cached = self.meta.get_cached(uuid).ok_or_else(|| not_found(uuid))?;
        let icon = cached.icon.clone().ok_or_else(|| no_icon(uuid))?;
        let path = self
            .cas
            .blob_path(&icon.sha256)
            .map_err(|e| Error::cas(format!("the icon of image {uuid}"), e))?;
        Ok((icon, path))
    }
}

fn no_icon(uuid: &str) -> Error {
    Error::ResourceNotFound(format!("image \"{uuid}\" has no icon"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_and_sizes() {
        let up = |ct: &str, len: Option<u64>| IconUpload {
            content_type: Some(ct.into()),
            sha1: None,
            content_length: len,
        };
        assert_eq!(up("image/png", None).media_type().unwrap(), "image/png");
        assert_eq!(
            up("IMAGE/JPEG; x=y", None).media_type().unwrap(),
            "image/jpeg"
        );
        for bad in ["text/plain", "image/svg+xml", ""] {
            let e = up(bad, None).check_head().unwrap_err();
            assert_eq!(e.code(), "Upload", "{bad}");
        }
        assert!(up("image/gif", Some(MAX_ICON_BYTES)).check_head().is_ok());
        let e = up("image/gif", Some(MAX_ICON_BYTES + 1))
            .check_head()
            .unwrap_err();
        assert_eq!(e.code(), "Upload");
    }
}
