//! Sharing: AddImageAcl, RemoveImageAcl and CloneImage (sdc-imgapi
//! `lib/images.js` `apiAddImageAcl`, `apiRemoveImageAcl`, `apiCloneImage`).
//!
//! - The ACL is the manifest's `acl`, a set of account uuids; an empty one
//!   is not written (IMGAPI does not serialise it either).
//! - A clone is a copy of an activated image for an account on its ACL:
//!   new uuid, that account as owner, no ACL, private as the original
//!   (IMGAPI copies `public`), same file (the blob is shared: the store is
//!   content-addressed), activated at once with a new `published_at`.
//!   Origins owned by someone else are cloned too (disabled, so only the
//!   final image is offered for provisioning), up to the first origin
//!   owned by the unset owner, which the clones keep as their origin.

use super::images::not_found;
use super::Service;
use crate::error::{Error, Result};
use crate::manifest::{self, FieldError, NIL_UUID};
use crate::store::meta::ImageRecord;
use serde_json::{json, Value};
use std::sync::Arc;

/// IMGAPI's `MAX_ORIGIN_DEPTH`: the longest origin chain a clone follows.
pub const MAX_ORIGIN_DEPTH: usize = 100;

/// Checks an AddImageAcl/RemoveImageAcl body: a JSON array of uuids.
///
/// # Errors
/// `InvalidParameter` (field `acl`, `Invalid`) naming the first bad item.
pub fn parse_acl_body(body: &Value) -> Result<Vec<String>> {
    let invalid = |message: String| {
        Error::InvalidParameter(
            message.clone(),
            vec![FieldError {
                field: "acl".into(),
                code: "Invalid".into(),
                message,
            }],
        )
    };
    let Some(items) = body.as_array() else {
        return Err(invalid("invalid image \"acl\" (not an array)".into()));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v.as_str() {
            Some(s) if manifest::is_uuid(s) => Ok(s.to_string()),
            _ => Err(invalid(format!(
                "invalid image \"acl\" (item {i} is not a UUID): {v}"
            ))),
        })
        .collect()
}

fn invalid_field(field: &str, message: &str) -> Error {
    Error::Validation(
        message.to_string(),
        vec![FieldError {
            field: field.into(),
            code: "Invalid".into(),
            message: message.to_string(),
        }],
    )
}

impl Service {
    /// AddImageAcl (`add`) or RemoveImageAcl: adds the accounts not yet on
    /// the image's ACL, or removes those on it. The caller has checked the
    /// request's scope and ownership.
    ///
    /// # Errors
    /// `ResourceNotFound`; storage errors.
    pub async fn change_acl(
        self: &Arc<Self>,
        uuid: String,
        accounts: Vec<String>,
        add: bool,
    ) -> Result<Arc<ImageRecord>> {
        super::images::check_uuid(&uuid)?;
        self.mutate(move |svc| {
            let cur = svc.meta.get(&uuid).ok_or_else(|| not_found(&uuid))?;
            let mut acl: Vec<String> = cur.fields().acl;
            if add {
                for a in accounts {
                    if !acl.contains(&a) {
                        acl.push(a);
                    }
                }
            } else {
                acl.retain(|a| !accounts.contains(a));
            }
            let mut rec = (*cur).clone();
            if acl.is_empty() {
                rec.manifest.remove("acl");
            } else {
                rec.manifest.insert("acl".into(), json!(acl));
            }
            svc.put(rec)
        })
        .await
    }

    /// CloneImage for `account` (see the module doc). The caller has
    /// checked that the request's scope sees the image.
    ///
    /// # Errors
    /// `ValidationFailed` for an image that is not activated (field
    /// `active`) or a docker image (field `type`); `ImageNotShared` for an
    /// account not on the ACL; `InternalError` for an origin chain longer
    /// than [`MAX_ORIGIN_DEPTH`]; `ResourceNotFound`.
    pub async fn clone_image(
        self: &Arc<Self>,
        uuid: String,
        account: String,
    ) -> Result<Arc<ImageRecord>> {
        super::images::check_uuid(&uuid)?;
        self.mutate(move |svc| svc.clone_locked(&uuid, &account))
            .await
    }

    fn clone_locked(&self, uuid: &str, account: &str) -> Result<Arc<ImageRecord>> {
        let image = self.meta.get(uuid).ok_or_else(|| not_found(uuid))?;
        if !image.activated {
            return Err(invalid_field("active", "image is not active"));
        }
        if !image.fields().acl.iter().any(|a| a == account) {
            return Err(Error::ImageNotShared {
                account: account.to_string(),
                uuid: uuid.to_string(),
            });
        }
        if image.str_field("type") == Some("docker") {
            return Err(invalid_field("type", "docker images cannot be cloned"));
        }
        // The chain to copy, base first, and the origin the base keeps.
        let mut chain = vec![image.clone()];
        let mut kept_origin: Option<String> = None;
        let mut next = image.origin().map(str::to_string);
        while let Some(o) = next {
            let img = self
                .meta
                .get(&o)
                .ok_or_else(|| Error::OriginDoesNotExist(o.clone()))?;
            if img.str_field("owner") == Some(NIL_UUID) {
                kept_origin = Some(o);
                break;
            }
            chain.insert(0, img.clone());
            if chain.len() >= MAX_ORIGIN_DEPTH && img.origin().is_some() {
                return Err(Error::Internal(format!(
                    "origin chain of image {uuid} too long, exceeds {MAX_ORIGIN_DEPTH} images"
                )));
            }
            next = img.origin().map(str::to_string);
        }
        let last = chain.len() - 1;
        let mut created: Vec<String> = Vec::new();
        let mut result = None;
        for (i, src) in chain.iter().enumerate() {
            match self.clone_one(src, account, kept_origin.as_deref(), i < last) {
                Ok(rec) => {
                    kept_origin = Some(rec.uuid().to_string());
                    created.push(rec.uuid().to_string());
                    result = Some(rec);
                }
                Err(e) => {
                    // All or nothing: drop the clones made so far, newest
                    // first (each is the origin of the next).
                    for u in created.iter().rev() {
                        if let Err(de) = self.meta.delete(u) {
                            tracing::warn!(image = %u, error = %de, "could not remove a partial clone");
                        }
                    }
                    return Err(e);
                }
            }
        }
        result.ok_or_else(|| Error::Internal(format!("cloning image {uuid}: empty chain")))
    }

    /// Stores one clone of `src`.
    fn clone_one(
        &self,
        src: &ImageRecord,
        account: &str,
        origin: Option<&str>,
        intermediate: bool,
    ) -> Result<Arc<ImageRecord>> {
        let mut m = src.manifest.clone();
        let new_uuid = uuid::Uuid::new_v4().to_string();
        for k in ["acl", "published_at", "icon", "error", "expires_at"] {
            m.remove(k);
        }
        m.insert("uuid".into(), json!(new_uuid));
        m.insert("owner".into(), json!(account));
        m.insert("published_at".into(), json!(crate::time::now_timestamp()));
        match origin {
            Some(o) => m.insert("origin".into(), json!(o)),
            None => m.remove("origin"),
        };
        if intermediate {
            m.insert("disabled".into(), json!(true));
        }
        let disabled = m.get("disabled").and_then(Value::as_bool).unwrap_or(false);
        let state = if disabled { "disabled" } else { "active" };
        m.insert("state".into(), json!(state));
        let errors = manifest::validate_as(&m, self.manifest_mode());
        if !errors.is_empty() {
            return Err(Error::validation(errors));
        }
        self.put(ImageRecord {
            manifest: m,
            activated: true,
            content_md5: src.content_md5.clone(),
            icon: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_bodies() {
        let u = "11111111-1111-4111-8111-111111111111";
        assert_eq!(parse_acl_body(&json!([u])).unwrap(), [u]);
        assert!(parse_acl_body(&json!([])).unwrap().is_empty());
        let e = parse_acl_body(&json!({"acl": [u]})).unwrap_err();
        assert_eq!(e.code(), "InvalidParameter");
        assert_eq!(e.to_string(), "invalid image \"acl\" (not an array)");
        let e = parse_acl_body(&json!([u, "x"])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid image \"acl\" (item 1 is not a UUID): \"x\""
        );
    }
}
