//! Remote image sources: where images not in the store can be imported from.
//!
//! Three kinds share one interface ([`Source::list`], [`Source::get`],
//! [`Source::download`]), as imgadm's sources do (imgadm.md section 2):
//! - [`imgapi`]: an IMGAPI-compatible server (`GET /images`,
//!   `/images/:uuid`, `/images/:uuid/file`), including another imgstore's
//!   peer listener;
//! - [`dsapi`]: the legacy static server: a JSON array of (often v1)
//!   manifests at the base URL, files at `BASE/UUID/PATH`;
//! - [`file`]: a local directory in the export layout
//!   (`NAME-VERSION.imgmanifest` beside `NAME-VERSION.zfs[.EXT]`).
//!
//! Every manifest comes out as v2 ([`crate::manifest::upgrade_v1`]) together
//! with where its file is and what it must hash to ([`RemoteImage`]).
//!
//! [`Sources`] is the ordered list the daemon keeps: in the sled tree
//! `sources` (one key, flushed on every change), seeded from the config the
//! first time the daemon starts on a data dir. It also caches each source's
//! image list for [`AVAIL_TTL`] for `GET /sources/images`, and tracks which
//! images are being downloaded so that concurrent imports share one
//! download (see `service/import.rs`).

pub mod client;
pub mod dsapi;
pub mod file;
pub mod imgapi;

use crate::config::{ConfigError, SourceTarget};
pub use crate::config::{SourceConfig, SourceKind};
use crate::manifest::{self, Manifest, UncheckedFile};
use client::{Delivery, FetchError, Http};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// Why a source operation failed. `crate::error` maps each to the code a
/// client sees (a fetch by what went wrong: `DownloadError`,
/// `RemoteSourceError`, `TlsError`, ...).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A source spec that is not usable; `field` is the request parameter
    /// it came in (`url`, `source`).
    #[error("{source}")]
    Spec {
        field: &'static str,
        #[source]
        source: ConfigError,
    },
    #[error("source {url} is already configured")]
    AlreadyListed { url: String },
    #[error("no source {url}")]
    NotListed { url: String },
    /// Fetching `what` from a source failed.
    #[error("{}", fetch_message(.what, .source))]
    Fetch {
        what: String,
        #[source]
        source: FetchError,
    },
    /// The stored list could not be written.
    #[error("database: {0}")]
    Store(#[source] sled::Error),
    /// The stored list could not be read at open.
    #[error("sources: {0}")]
    Load(#[source] sled::Error),
    #[error("sources: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("sources: stored list is unreadable: {0}")]
    Unreadable(#[source] serde_json::Error),
}

fn fetch_message(what: &str, e: &FetchError) -> String {
    match e {
        FetchError::Stopped => format!("fetching {what} was stopped"),
        e => format!("fetching {what}: {e}"),
    }
}

type Result<T, E = SourceError> = std::result::Result<T, E>;

/// How long a source's image list is reused by `GET /sources/images`.
pub const AVAIL_TTL: Duration = Duration::from_secs(60);

/// A configured source, parsed.
#[derive(Debug, Clone)]
pub struct Source {
    /// As configured; the URL string is the source's identity.
    pub spec: SourceConfig,
    target: SourceTarget,
}

/// Where an image's file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileLoc {
    Url(String),
    Path(PathBuf),
}

impl std::fmt::Display for FileLoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileLoc::Url(u) => f.write_str(u),
            FileLoc::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// An image as a source offers it.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    /// The manifest, upgraded to v2.
    pub manifest: Manifest,
    /// `None` when the manifest has no `files[0]`.
    pub file: Option<FileLoc>,
}

impl RemoteImage {
    pub fn uuid(&self) -> &str {
        manifest::uuid_of(&self.manifest).unwrap_or_default()
    }

    /// `origin`, when set (see [`manifest::origin_of`]).
    pub fn origin(&self) -> Option<&str> {
        manifest::origin_of(&self.manifest)
    }

    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.manifest.get(name).and_then(|v| v.as_str())
    }

    /// `files[0]`, as the source gave it (not validated yet).
    fn file_entry(&self) -> Option<UncheckedFile<'_>> {
        UncheckedFile::of(&self.manifest)
    }

    pub fn size(&self) -> Option<u64> {
        self.file_entry()?.size()
    }

    pub fn sha1(&self) -> Option<&str> {
        self.file_entry()?.sha1()
    }

    /// The SHA-256 hex from `files[0].digest` (`sha256:HEX`), when given.
    pub fn sha256(&self) -> Option<&str> {
        self.file_entry()?.sha256()
    }

    pub fn compression(&self) -> Option<&str> {
        self.file_entry()?.compression()
    }
}

/// Builds a [`RemoteImage`] from a raw (possibly v1) manifest; `file` says
/// where the file is given the raw manifest. Anything that is not an object
/// or has no uuid is skipped (`None`).
fn remote_image(
    raw: &Value,
    file: impl FnOnce(&Manifest, &str) -> Option<FileLoc>,
) -> Option<RemoteImage> {
    let raw = raw.as_object()?;
    let uuid = manifest::uuid_of(raw)?.to_string();
    let file = if UncheckedFile::of(raw).is_some() {
        file(raw, &uuid)
    } else {
        None
    };
    Some(RemoteImage {
        manifest: crate::manifest::upgrade_v1(raw),
        file,
    })
}

impl Source {
    /// Parses and checks a configured source (see [`SourceConfig::target`]);
    /// the URL is kept trimmed.
    ///
    /// # Errors
    /// A message naming the problem: not an http(s) URL (imgapi, dsapi), not
    /// an absolute path (file), a query parameter other than `channel`.
    pub fn parse(spec: &SourceConfig) -> std::result::Result<Source, ConfigError> {
        let target = spec.target()?;
        Ok(Source {
            spec: SourceConfig {
                url: spec.url.trim().to_string(),
                kind: spec.kind,
                insecure: spec.insecure,
            },
            target,
        })
    }

    /// An ad-hoc IMGAPI source (`?source=URL` not in the list).
    pub fn adhoc(url: &str) -> std::result::Result<Source, ConfigError> {
        Source::parse(&SourceConfig {
            url: url.to_string(),
            kind: SourceKind::Imgapi,
            insecure: false,
        })
    }

    pub fn url(&self) -> &str {
        &self.spec.url
    }

    /// Every image the source offers (for IMGAPI: the active ones).
    ///
    /// # Errors
    /// The source did not answer, or answered something unusable.
    pub async fn list(&self, http: &Http) -> std::result::Result<Vec<RemoteImage>, FetchError> {
        match &self.target {
            SourceTarget::Imgapi { base, channel } => {
                imgapi::list(http, base, channel.as_deref(), self.spec.insecure).await
            }
            SourceTarget::Dsapi { index, base } => {
                dsapi::list(http, index, base, self.spec.insecure).await
            }
            SourceTarget::File { dir } => file::list(dir.clone()).await,
        }
    }

    /// One image, or `None` when the source does not have it.
    ///
    /// # Errors
    /// The source did not answer, or answered something unusable.
    pub async fn get(
        &self,
        http: &Http,
        uuid: &str,
    ) -> std::result::Result<Option<RemoteImage>, FetchError> {
        match &self.target {
            SourceTarget::Imgapi { base, channel } => {
                imgapi::get(http, base, channel.as_deref(), self.spec.insecure, uuid).await
            }
            SourceTarget::Dsapi { .. } | SourceTarget::File { .. } => Ok(self
                .list(http)
                .await?
                .into_iter()
                .find(|i| i.uuid() == uuid)),
        }
    }

    /// Whether [`Source::get`] reads the whole list (DSAPI index, directory),
    /// so that looking up a chain should read it once ([`Catalog`]).
    fn lists_everything(&self) -> bool {
        !matches!(self.target, SourceTarget::Imgapi { .. })
    }

    /// Streams the image's file into `to`, in order, each byte once. HTTP
    /// downloads are retried and resumed (see [`client`]); `size`, when
    /// known, bounds what is accepted.
    ///
    /// # Errors
    /// As [`Http::download`]; `Local` for an unreadable file.
    pub async fn download(
        &self,
        http: &Http,
        loc: &FileLoc,
        size: Option<u64>,
        to: &Delivery,
    ) -> std::result::Result<(), FetchError> {
        match loc {
            FileLoc::Url(url) => {
                http.download(url, self.spec.insecure, size, client::DOWNLOAD, to)
                    .await
            }
            FileLoc::Path(path) => file::read(path, size, to).await,
        }
    }
}

/// Whether two source URLs name the same source (a trailing `/` aside).
fn same_url(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

/// Lookups of several images at one source (an origin chain): a source
/// whose `get` reads its whole list is read once, not once per image.
pub struct Catalog<'a> {
    source: &'a Source,
    http: &'a Http,
    listed: Option<Vec<RemoteImage>>,
}

impl<'a> Catalog<'a> {
    pub fn new(source: &'a Source, http: &'a Http) -> Catalog<'a> {
        Catalog {
            source,
            http,
            listed: None,
        }
    }

    /// As [`Source::get`].
    ///
    /// # Errors
    /// As [`Source::get`].
    pub async fn get(
        &mut self,
        uuid: &str,
    ) -> std::result::Result<Option<RemoteImage>, FetchError> {
        if !self.source.lists_everything() {
            return self.source.get(self.http, uuid).await;
        }
        if self.listed.is_none() {
            self.listed = Some(self.source.list(self.http).await?);
        }
        Ok(self
            .listed
            .iter()
            .flatten()
            .find(|i| i.uuid() == uuid)
            .cloned())
    }
}

/// A source that could not be listed, as `GET /sources/images` reports it.
#[derive(Debug, Clone)]
pub struct SourceFailure {
    pub source: SourceConfig,
    pub error: Arc<SourceError>,
}

impl SourceFailure {
    /// The entry of `errors`; `code` is the one the error answers with
    /// (see `crate::error::source_code`).
    pub fn to_json(&self, code: &str) -> Value {
        json!({
            "url": self.source.url,
            "type": self.source.kind,
            "code": code,
            "message": self.error.to_string(),
        })
    }
}

/// What `GET /sources/images` merges: each image with the source it came
/// from (the first source that has a uuid wins).
pub struct Avail {
    pub images: Vec<(RemoteImage, String)>,
    pub failures: Vec<SourceFailure>,
}

/// Each source's image list and when it was fetched.
type ListCache = HashMap<String, (Instant, Arc<Vec<RemoteImage>>)>;

/// The daemon's ordered, persisted source list, the HTTP client, the list
/// cache and the in-flight download table.
pub struct Sources {
    tree: sled::Tree,
    list: RwLock<Vec<Source>>,
    pub http: Http,
    cache: Mutex<ListCache>,
    inflight: Mutex<HashSet<String>>,
    inflight_done: Condvar,
}

const LIST_KEY: &[u8] = b"list";

impl Sources {
    /// Loads the list from `tree`, or seeds it from the config the first
    /// time (when the tree has never been written).
    ///
    /// # Errors
    /// sled failed, or the stored list cannot be read.
    pub fn open(tree: sled::Tree, seed: &[SourceConfig]) -> Result<Sources> {
        let stored = tree.get(LIST_KEY).map_err(SourceError::Load)?;
        let specs: Vec<SourceConfig> = match stored {
            Some(bytes) => {
                let specs: Vec<SourceConfig> =
                    serde_json::from_slice(&bytes).map_err(SourceError::Unreadable)?;
                if !seed.is_empty() && specs != seed {
                    tracing::info!(
                        "the config's sources differ from the stored list; the stored list (managed with /sources) is used"
                    );
                }
                specs
            }
            None => {
                let bytes = serde_json::to_vec(seed).map_err(SourceError::Encode)?;
                tree.insert(LIST_KEY, bytes).map_err(SourceError::Load)?;
                tree.flush().map_err(SourceError::Load)?;
                seed.to_vec()
            }
        };
        let mut list = Vec::new();
        for s in &specs {
            match Source::parse(s) {
                Ok(src) => list.push(src),
                // A stored source always parsed when it was added; should
                // the rules tighten, keep the daemon up and say why.
                Err(e) => tracing::error!(url = %s.url, error = %e, "ignoring a stored source"),
            }
        }
        Ok(Sources {
            tree,
            list: RwLock::new(list),
            http: Http::new(),
            cache: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashSet::new()),
            inflight_done: Condvar::new(),
        })
    }

    /// The sources, in order.
    pub fn list(&self) -> Vec<Source> {
        self.list.read().unwrap().clone()
    }

    pub fn specs(&self) -> Vec<SourceConfig> {
        self.list().into_iter().map(|s| s.spec).collect()
    }

    fn store(&self, list: &[Source]) -> Result<()> {
        let specs: Vec<&SourceConfig> = list.iter().map(|s| &s.spec).collect();
        let bytes = serde_json::to_vec(&specs).map_err(SourceError::Encode)?;
        self.tree
            .insert(LIST_KEY, bytes)
            .map_err(SourceError::Store)?;
        self.tree.flush().map_err(SourceError::Store)?;
        Ok(())
    }

    /// Appends a source. Blocking (flushes sled).
    ///
    /// # Errors
    /// `InvalidParameter` for a bad spec, `Conflict` for a URL already listed.
    pub fn add(&self, spec: &SourceConfig) -> Result<Vec<SourceConfig>> {
        let src = Source::parse(spec).map_err(|source| SourceError::Spec {
            field: "url",
            source,
        })?;
        let mut list = self.list.write().unwrap();
        if list.iter().any(|s| same_url(s.url(), src.url())) {
            return Err(SourceError::AlreadyListed {
                url: src.url().to_string(),
            });
        }
        let mut new = list.clone();
        new.push(src);
        self.store(&new)?;
        *list = new;
        Ok(list.iter().map(|s| s.spec.clone()).collect())
    }

    /// Removes the source with this URL. Blocking (flushes sled).
    ///
    /// # Errors
    /// `ResourceNotFound` when no source has it.
    pub fn remove(&self, url: &str) -> Result<Vec<SourceConfig>> {
        let mut list = self.list.write().unwrap();
        let Some(pos) = list.iter().position(|s| same_url(s.url(), url)) else {
            return Err(SourceError::NotListed {
                url: url.to_string(),
            });
        };
        let mut new = list.clone();
        let removed = new.remove(pos);
        self.store(&new)?;
        *list = new;
        self.cache.lock().unwrap().remove(removed.url());
        Ok(list.iter().map(|s| s.spec.clone()).collect())
    }

    /// The configured source with this URL, or an ad-hoc IMGAPI source.
    ///
    /// # Errors
    /// `InvalidParameter` for a URL that is not usable.
    pub fn lookup(&self, url: &str) -> Result<Source> {
        if let Some(s) = self.list().into_iter().find(|s| same_url(s.url(), url)) {
            return Ok(s);
        }
        Source::adhoc(url).map_err(|source| SourceError::Spec {
            field: "source",
            source,
        })
    }

    /// A source's image list, from the cache when fresh. Failures are not
    /// cached: the next request asks again.
    async fn cached_list(&self, src: &Source) -> Result<Arc<Vec<RemoteImage>>> {
        if let Some((at, v)) = self.cache.lock().unwrap().get(src.url()) {
            if at.elapsed() < AVAIL_TTL {
                return Ok(v.clone());
            }
        }
        let v = Arc::new(
            src.list(&self.http)
                .await
                .map_err(|e| e.into_error(&format!("the images of source {}", src.url())))?,
        );
        self.cache
            .lock()
            .unwrap()
            .insert(src.url().to_string(), (Instant::now(), v.clone()));
        Ok(v)
    }

    /// Every source's images, merged (first source wins for a uuid). All
    /// sources are asked at once; one that fails is reported, not fatal.
    pub async fn avail(&self) -> Avail {
        let list = self.list();
        let results =
            futures_util::future::join_all(list.iter().map(|s| self.cached_list(s))).await;
        let mut seen = HashSet::new();
        let mut out = Avail {
            images: Vec::new(),
            failures: Vec::new(),
        };
        for (src, r) in list.iter().zip(results) {
            match r {
                Ok(images) => {
                    for img in images.iter() {
                        if seen.insert(img.uuid().to_string()) {
                            out.images.push((img.clone(), src.url().to_string()));
                        }
                    }
                }
                Err(e) => out.failures.push(SourceFailure {
                    source: src.spec.clone(),
                    error: Arc::new(e),
                }),
            }
        }
        out
    }

    /// Takes the download slot of `uuid`, waiting while another task holds
    /// it. `stop` is polled while waiting (a cancelled task). The slot is
    /// released when the guard drops.
    ///
    /// # Errors
    /// Whatever `stop` returns.
    pub fn claim<E>(
        &self,
        uuid: &str,
        stop: impl Fn() -> Result<(), E>,
    ) -> Result<(DownloadSlot<'_>, bool), E> {
        let mut inflight = self.inflight.lock().unwrap();
        let mut waited = false;
        while inflight.contains(uuid) {
            waited = true;
            stop()?;
            inflight = self
                .inflight_done
                .wait_timeout(inflight, Duration::from_millis(200))
                .unwrap()
                .0;
        }
        inflight.insert(uuid.to_string());
        Ok((
            DownloadSlot {
                sources: self,
                uuid: uuid.to_string(),
            },
            waited,
        ))
    }
}

/// An image being downloaded by one task; see [`Sources::claim`].
pub struct DownloadSlot<'a> {
    sources: &'a Sources,
    uuid: String,
}

impl Drop for DownloadSlot<'_> {
    fn drop(&mut self) {
        self.sources.inflight.lock().unwrap().remove(&self.uuid);
        self.sources.inflight_done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str, kind: SourceKind) -> SourceConfig {
        SourceConfig {
            url: url.into(),
            kind,
            insecure: false,
        }
    }

    #[test]
    fn urls_are_checked_per_type() {
        let s = Source::parse(&spec(
            "https://images.example.com/?channel=dev",
            SourceKind::Imgapi,
        ))
        .unwrap();
        match &s.target {
            SourceTarget::Imgapi { base, channel } => {
                assert_eq!(base, "https://images.example.com");
                assert_eq!(channel.as_deref(), Some("dev"));
            }
            t => panic!("{t:?}"),
        }
        let s = Source::parse(&spec("http://h:8080/datasets/", SourceKind::Dsapi)).unwrap();
        match &s.target {
            SourceTarget::Dsapi { index, base } => {
                assert_eq!(index, "http://h:8080/datasets/");
                assert_eq!(base, "http://h:8080/datasets");
            }
            t => panic!("{t:?}"),
        }
        assert!(Source::parse(&spec("file:///srv/img", SourceKind::File)).is_ok());
        assert!(Source::parse(&spec("/srv/img", SourceKind::File)).is_ok());
        for (url, kind) in [
            ("srv/img", SourceKind::File),
            ("ftp://h/x", SourceKind::Imgapi),
            ("/local/dir", SourceKind::Dsapi),
            ("http://h/?page=2", SourceKind::Imgapi),
            ("", SourceKind::Imgapi),
        ] {
            assert!(Source::parse(&spec(url, kind)).is_err(), "{url}");
        }
        let mut insecure_http = spec("http://h", SourceKind::Imgapi);
        insecure_http.insecure = true;
        assert!(Source::parse(&insecure_http).is_err());
    }

    #[test]
    fn list_is_seeded_once_then_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let seed = vec![spec("http://a", SourceKind::Imgapi)];
        let s = Sources::open(db.open_tree("sources").unwrap(), &seed).unwrap();
        assert_eq!(s.specs(), seed);
        s.add(&spec("/srv/x", SourceKind::File)).unwrap();
        // The codes these answer with (Conflict, ResourceNotFound) are
        // pinned in `crate::error`'s tests.
        assert!(matches!(
            s.add(&spec("http://a", SourceKind::Imgapi)).unwrap_err(),
            SourceError::AlreadyListed { .. }
        ));
        s.remove("http://a").unwrap();
        assert!(matches!(
            s.remove("http://a").unwrap_err(),
            SourceError::NotListed { .. }
        ));
        drop(s);
        // The seed is not applied again.
        let s = Sources::open(db.open_tree("sources").unwrap(), &seed).unwrap();
        assert_eq!(s.specs(), vec![spec("/srv/x", SourceKind::File)]);
    }

    #[test]
    fn download_slots_are_exclusive_per_image() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let s = Arc::new(Sources::open(db.open_tree("sources").unwrap(), &[]).unwrap());
        let ok = || Ok::<(), &str>(());
        let (slot, waited) = s.claim("a", ok).unwrap();
        assert!(!waited);
        let (_b, _) = s.claim("b", ok).unwrap();
        let s2 = s.clone();
        let t = std::thread::spawn(move || s2.claim("a", ok).map(|(_, w)| w).unwrap());
        std::thread::sleep(Duration::from_millis(300));
        drop(slot);
        assert!(t.join().unwrap(), "second claim waited for the first");
        let err = {
            let _held = s.claim("c", ok).unwrap();
            s.claim("c", || Err("Cancelled")).err().unwrap()
        };
        assert_eq!(err, "Cancelled");
    }
}
