//! Conditional requests on images: the entity tag of an image and the
//! `If-Match` / `If-None-Match` rules that guard its writes against lost
//! updates.
//!
//! The tag is the SHA-1 (hex) of the manifest's JSON as the store serves
//! it, the scheme of IMGAPI (`lib/images.js` `reqGetImage`, `resSetEtag`:
//! the SHA-1 of the serialized image); clients treat it as opaque and echo
//! it back. GetImage and every image write answer with the tag of the
//! manifest they return, so a client can chain writes.
//!
//! The comparison follows restify's `conditionalRequest` (what IMGAPI runs
//! on GetImage and `POST /images/:uuid?action=...`): a list of tags split
//! on commas, a `W/` prefix and surrounding quotes ignored, `*` matching
//! any. A write whose `If-Match` lists no current tag, or whose
//! `If-None-Match` lists the current one, fails with 412
//! `PreconditionFailed` and changes nothing; a read whose `If-None-Match`
//! lists the current tag is "not modified" (304).
//!
//! The writes check the tag inside the write lock, on the record they are
//! about to change ([`Precondition::check_write`]), so no other write can
//! land between the comparison and the commit.

use crate::error::{Error, Result};
use crate::store::meta::{Cached, ImageRecord};
use sha1::{Digest, Sha1};

/// The entity tag of a manifest's JSON bytes.
pub fn etag_of_json(json: &[u8]) -> String {
    hex::encode(Sha1::digest(json))
}

/// The entity tag of an image record (the same bytes [`Cached`] holds).
pub fn etag_of(rec: &ImageRecord) -> String {
    etag_of_json(&serde_json::to_vec(&rec.manifest).unwrap_or_default())
}

/// The entity tag of a cached image.
pub fn etag_of_cached(c: &Cached) -> String {
    etag_of_json(c.json())
}

/// The conditions a request puts on the current state of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Precondition {
    /// `If-Match` as sent.
    pub if_match: Option<String>,
    /// `If-None-Match` as sent.
    pub if_none_match: Option<String>,
}

/// Whether a comma-separated tag list names `etag` (or is `*`).
pub fn list_matches(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|t| {
        let t = t.strip_prefix("W/").unwrap_or(t);
        let t = t
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(t);
        t == "*" || t == etag
    })
}

impl Precondition {
    /// No condition: every check passes.
    pub fn none() -> Precondition {
        Precondition::default()
    }

    /// From the two headers, as sent (`None` when absent).
    pub fn new(if_match: Option<&str>, if_none_match: Option<&str>) -> Precondition {
        Precondition {
            if_match: if_match.map(str::to_string),
            if_none_match: if_none_match.map(str::to_string),
        }
    }

    /// The check of a write on an image whose current tag is `etag`.
    ///
    /// # Errors
    /// `PreconditionFailed` when `If-Match` does not list the tag or
    /// `If-None-Match` does.
    pub fn check_write(&self, etag: &str) -> Result<()> {
        if let Some(m) = self.if_match.as_deref() {
            if !list_matches(m, etag) {
                return Err(Error::PreconditionFailed(format!(
                    "if-match '{m}' didn't match etag '{etag}'"
                )));
            }
        }
        if let Some(m) = self.if_none_match.as_deref() {
            if list_matches(m, etag) {
                return Err(Error::PreconditionFailed(format!(
                    "if-none-match '{m}' matched etag '{etag}'"
                )));
            }
        }
        Ok(())
    }

    /// The check of a read (GET, HEAD): `Ok(true)` when the client's copy is
    /// current (`If-None-Match` lists the tag: 304 Not Modified).
    ///
    /// # Errors
    /// `PreconditionFailed` when `If-Match` does not list the tag.
    pub fn check_read(&self, etag: &str) -> Result<bool> {
        if let Some(m) = self.if_match.as_deref() {
            if !list_matches(m, etag) {
                return Err(Error::PreconditionFailed(format!(
                    "if-match '{m}' didn't match etag '{etag}'"
                )));
            }
        }
        Ok(self
            .if_none_match
            .as_deref()
            .is_some_and(|m| list_matches(m, etag)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_lists_as_restify_reads_them() {
        assert!(list_matches("abc", "abc"));
        assert!(list_matches("\"abc\"", "abc"));
        assert!(list_matches("W/\"abc\"", "abc"));
        assert!(list_matches("x, abc", "abc"));
        assert!(list_matches("*", "abc"));
        assert!(!list_matches("abd", "abc"));
        assert!(!list_matches("", "abc"));
    }

    #[test]
    fn writes_and_reads() {
        let c = Precondition::new(Some("old"), None);
        let e = c.check_write("new").unwrap_err();
        assert_eq!(e.code(), "PreconditionFailed");
        assert_eq!(e.to_string(), "if-match 'old' didn't match etag 'new'");
        assert!(Precondition::new(Some("new"), None)
            .check_write("new")
            .is_ok());
        assert!(Precondition::new(None, Some("new"))
            .check_write("new")
            .is_err());
        assert!(Precondition::none().check_write("x").is_ok());
        assert!(Precondition::new(None, Some("x")).check_read("x").unwrap());
        assert!(!Precondition::new(None, Some("y")).check_read("x").unwrap());
        assert!(Precondition::new(Some("y"), None).check_read("x").is_err());
    }

    #[test]
    fn the_tag_is_the_sha1_of_the_served_json() {
        let rec = ImageRecord {
            manifest: serde_json::json!({"v": 2, "uuid": "u"})
                .as_object()
                .unwrap()
                .clone(),
            activated: false,
            content_md5: None,
            icon: None,
        };
        assert_eq!(etag_of(&rec), etag_of_json(br#"{"v":2,"uuid":"u"}"#));
        assert_eq!(etag_of(&rec).len(), 40);
    }
}
