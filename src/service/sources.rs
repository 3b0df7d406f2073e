//! The remote sources as use cases: the ordered list (`GET/POST/DELETE
//! /sources`), what they offer (`GET /sources/images`, like `imgadm avail`)
//! and one image asked of them now (`GET /sources/images/:uuid`, like
//! `imgadm show`). Importing from them is `import.rs`.

use super::filter::ListFilter;
use super::Service;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::store::meta::ImageRecord;
use std::collections::HashMap;
use std::sync::Arc;

pub use crate::sources::{SourceConfig, SourceFailure};

/// What the sources offer, filtered: each manifest with the URL of the
/// source it came from, and the sources that could not be listed.
pub struct Available {
    pub images: Vec<(Manifest, Option<String>)>,
    pub failures: Vec<SourceFailure>,
}

impl Service {
    /// The sources, in the order they are asked.
    pub fn source_specs(&self) -> Vec<SourceConfig> {
        self.sources.specs()
    }

    /// Appends a source; the whole list after.
    ///
    /// # Errors
    /// As [`crate::sources::Sources::add`].
    pub async fn add_source(self: &Arc<Self>, spec: SourceConfig) -> Result<Vec<SourceConfig>> {
        self.blocking(move |svc| Ok(svc.sources.add(&spec)?)).await
    }

    /// Removes the source with this URL; the whole list after.
    ///
    /// # Errors
    /// As [`crate::sources::Sources::remove`].
    pub async fn remove_source(self: &Arc<Self>, url: String) -> Result<Vec<SourceConfig>> {
        self.blocking(move |svc| Ok(svc.sources.remove(&url)?))
            .await
    }

    /// Every source's images, merged (first source wins for a uuid),
    /// filtered like `GET /images`. A source that fails is listed under
    /// `failures`; the others still answer.
    ///
    /// # Errors
    /// As [`ListFilter::apply`].
    pub async fn available(&self, filter: &ListFilter) -> Result<Available> {
        let avail = self.sources.avail().await;
        let mut from: HashMap<String, String> = HashMap::new();
        let recs: Vec<Arc<ImageRecord>> = avail
            .images
            .into_iter()
            .map(|(img, url)| {
                from.insert(img.uuid().to_string(), url);
                Arc::new(ImageRecord {
                    manifest: img.manifest,
                    activated: true,
                    content_md5: None,
                    icon: None,
                })
            })
            .collect();
        let images = filter
            .apply(recs)?
            .iter()
            .map(|r| (r.manifest.clone(), from.get(r.uuid()).cloned()))
            .collect();
        Ok(Available {
            images,
            failures: avail.failures,
        })
    }

    /// The manifest of `uuid` from the first source that has the image
    /// (asked now, not from the cache), and that source's URL.
    ///
    /// # Errors
    /// `InvalidParameter` for a malformed uuid; `ImageNotFound` when no
    /// source has it, naming the sources that failed.
    pub async fn available_one(&self, uuid: &str) -> Result<(Manifest, String)> {
        super::images::check_uuid(uuid)?;
        let mut failures = Vec::new();
        for src in self.sources.list() {
            match src.get(&self.sources.http, uuid).await {
                Ok(Some(img)) => return Ok((img.manifest, src.url().to_string())),
                Ok(None) => {}
                Err(e) => failures.push(e.to_string()),
            }
        }
        let detail = if failures.is_empty() {
            String::new()
        } else {
            format!("; sources that failed: {}", failures.join("; "))
        };
        Err(Error::ImageNotFound(format!(
            "image {uuid} is in none of the sources{detail}"
        )))
    }
}
