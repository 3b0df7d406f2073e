//! Importing an image and its origin chain from remote sources
//! (`POST /images/:uuid?action=import-remote`), as a task.
//!
//! 1. **Resolve.** The image is looked up in the sources in order (or only
//!    in `?source=`); the first that has it supplies the whole chain: its
//!    `origin`, the origin's origin, ... until an image already in the store
//!    (active) or a base image. A source that fails is passed over for the
//!    next; a source that has the image but not one of its origins gives
//!    `OriginNotFoundInSource` unless a later source has the whole chain.
//!    Every manifest and file description is checked before any byte is
//!    downloaded.
//! 2. **Fetch, base first.** Each file streams from the network into a CAS
//!    ingest (hashed as it is written), on the blocking thread of the task,
//!    while a runtime task reads the network (see `sources/client.rs` for
//!    retries and `Range` resume). Size, SHA-1 and (when the manifest has
//!    `files[0].digest`) SHA-256 are verified before the blob is committed;
//!    anything else is dropped with its temp file, so nothing unverified is
//!    ever stored. The image is then recorded, its file committed and the
//!    image activated in one step under the write lock, through the same
//!    functions AddImageFile and ActivateImage use.
//! 3. **Install** the chain into `?install=POOL` when asked
//!    (`run_install`, `install.rs`).
//!
//! Sharing: requests for the same image and pool join one task (the task
//! dedupe key); and each image's download is claimed in
//! [`crate::sources::Sources::claim`], so a different task that needs the
//! same image (another pool, or an image whose chain shares an origin)
//! waits for that download and uses its result instead of fetching again.

use super::images::{check_sealed, check_uuid, FileParams};
use super::visibility::Channel;
use super::Service;
use crate::error::{Error, Result};
use crate::manifest::{self, Manifest};
use crate::sources::client::{Delivery, Transfer};
use crate::sources::{Catalog, FileLoc, RemoteImage, Source};
use crate::store::cas::Sealed;
use crate::store::meta::ImageRecord;
use crate::tasks::{Task, TaskCtx};
use crate::zfs::PoolName;
use bytes::Bytes;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::sync::mpsc;

/// The longest origin chain followed (IMGAPI's `MAX_ORIGIN_DEPTH`).
const MAX_CHAIN: usize = 100;

/// One image to fetch, checked and ready.
struct Job {
    img: RemoteImage,
    source: Source,
    manifest: Manifest,
    params: FileParams,
    loc: FileLoc,
}

/// What resolution found: the images to fetch (base first) and the first
/// ancestor already in the store, if any.
struct Plan {
    missing: Vec<(RemoteImage, Source)>,
    present: Option<String>,
}

/// Why walking a chain at one source stopped.
enum ChainError {
    /// The source lacks an origin: a later source may have the chain.
    OriginMissing(Error),
    /// The source failed: a later source may answer.
    Source(Error),
    /// Nothing another source could fix.
    Fatal(Error),
}

/// What one fetch reported.
struct Fetched {
    sealed: Sealed,
    received: u64,
    retries: u32,
    resumes: u32,
}

impl Service {
    /// Starts importing `uuid` (and its missing origins) from the sources,
    /// then installing it into `pool` when given. A request for an image
    /// and pool already being imported joins that task.
    ///
    /// Must be called on a thread of the daemon's runtime (a handler's
    /// `blocking` closure): the task drives its downloads on that runtime.
    ///
    /// # Errors
    /// A malformed uuid, an unusable `source` URL, a bad or missing pool, no
    /// ZFS (with a pool), or no sources at all for an image not in the store.
    pub fn import_remote(
        self: &Arc<Self>,
        uuid: &str,
        source: Option<&str>,
        pool: Option<&str>,
    ) -> Result<(Task, bool)> {
        self.import_remote_in(uuid, source, pool, None)
    }

    /// [`Service::import_remote`] into `channel` (the request's; the
    /// default channel when `None`), as IMGAPI's import puts the images it
    /// creates into the request's channel.
    ///
    /// # Errors
    /// As [`Service::import_remote`].
    pub fn import_remote_in(
        self: &Arc<Self>,
        uuid: &str,
        source: Option<&str>,
        pool: Option<&str>,
        channel: Option<Channel>,
    ) -> Result<(Task, bool)> {
        check_uuid(uuid)?;
        let only = source.map(|u| self.sources.lookup(u)).transpose()?;
        let pool = match pool {
            Some(p) => {
                let pool = self.pool_name(Some(p))?;
                self.require_pool(&pool)?;
                Some(pool)
            }
            None => None,
        };
        let local = self.meta.get(uuid).is_some_and(|r| r.activated);
        if !local && only.is_none() && self.sources.list().is_empty() {
            return Err(Error::ImageNotFound(format!(
                "image {uuid} is not in the store and no sources are configured (add one with POST /sources)"
            )));
        }
        let rt = Handle::current();
        let svc = self.clone();
        let uuid = uuid.to_string();
        let input = json!({"image_uuid": uuid, "source": source, "pool": pool.as_ref().map(PoolName::as_str)});
        let key = format!(
            "import-remote:{uuid}:{}",
            pool.as_ref().map_or("", PoolName::as_str)
        );
        self.tasks
            .start("import-remote", input, Some(key), move |ctx| {
                svc.run_import_remote(
                    ctx,
                    &rt,
                    &uuid,
                    only.as_ref(),
                    pool.as_ref(),
                    channel.as_ref(),
                )
            })
    }

    fn run_import_remote(
        &self,
        ctx: &TaskCtx,
        rt: &Handle,
        uuid: &str,
        only: Option<&Source>,
        pool: Option<&PoolName>,
        channel: Option<&Channel>,
    ) -> Result<Value> {
        let plan = self.resolve(ctx, rt, uuid, only)?;
        let mut jobs = plan
            .missing
            .into_iter()
            .map(|(img, source)| self.prepare_job(img, source))
            .collect::<Result<Vec<Job>>>()?;
        // The remote's channels are its own: the copies go into ours.
        for job in &mut jobs {
            self.assign_channel(&mut job.manifest, channel);
        }
        let total: u64 = jobs.iter().filter_map(|j| j.params.size).sum();
        ctx.set_total(total);
        let mut imported = Vec::new();
        let mut fetched = 0u64;
        for job in &jobs {
            ctx.check()?;
            let report = self.import_one(ctx, rt, job, only.is_none())?;
            fetched += report["bytes_fetched"].as_u64().unwrap_or(0);
            imported.push(report);
        }
        if let Some(pool) = pool {
            self.run_install(ctx, uuid, pool)?;
        }
        Ok(json!({
            "image_uuid": uuid,
            "pool": pool.map(PoolName::as_str),
            "imported": imported,
            "present": plan.present,
            "bytes_total": total,
            "bytes_fetched": fetched,
        }))
    }

    /// Finds the chain of `uuid` that is missing from the store.
    fn resolve(
        &self,
        ctx: &TaskCtx,
        rt: &Handle,
        uuid: &str,
        only: Option<&Source>,
    ) -> Result<Plan> {
        if let Some(rec) = self.meta.get(uuid) {
            if rec.activated {
                return Ok(Plan {
                    missing: Vec::new(),
                    present: Some(uuid.to_string()),
                });
            }
            return Err(Error::ImageUuidAlreadyExists(format!(
                "{uuid} (in the store but not activated: delete it or add its file before importing)"
            )));
        }
        let sources = match only {
            Some(s) => vec![s.clone()],
            None => self.sources.list(),
        };
        let http = &self.sources.http;
        let mut not_here = Vec::new();
        let mut failures: Vec<(String, Error)> = Vec::new();
        let mut origin_missing = None;
        for src in &sources {
            ctx.check()?;
            let mut catalog = Catalog::new(src, http);
            match rt.block_on(catalog.get(uuid)) {
                Ok(None) => not_here.push(src.url().to_string()),
                Err(e) => {
                    let e = Error::from(
                        e.into_error(&format!("image {uuid} from source {}", src.url())),
                    );
                    tracing::warn!(source = src.url(), error = %e, "source failed; trying the next");
                    failures.push((src.url().to_string(), e));
                }
                Ok(Some(leaf)) => match self.walk_chain(ctx, rt, &mut catalog, src, leaf) {
                    Ok(plan) => return Ok(plan),
                    Err(ChainError::OriginMissing(e)) => {
                        tracing::warn!(source = src.url(), error = %e, "chain incomplete at source; trying the next");
                        origin_missing.get_or_insert(e);
                    }
                    Err(ChainError::Source(e)) => {
                        tracing::warn!(source = src.url(), error = %e, "source failed; trying the next");
                        failures.push((src.url().to_string(), e));
                    }
                    Err(ChainError::Fatal(e)) => return Err(e),
                },
            }
        }
        if let Some(e) = origin_missing {
            return Err(e);
        }
        if failures.is_empty() {
            return Err(Error::ImageNotFound(format!(
                "image {uuid} is in none of the sources ({})",
                not_here.join(", ")
            )));
        }
        if failures.len() == 1 && not_here.is_empty() {
            // One source, and it failed: its error says the most.
            return Err(failures.pop().expect("one failure").1);
        }
        let mut parts: Vec<String> = not_here.iter().map(|u| format!("not in {u}")).collect();
        parts.extend(
            failures
                .iter()
                .map(|(_, e)| format!("{} ({})", e, e.code())),
        );
        Err(Error::RemoteSourceError(format!(
            "image {uuid} could not be found: {}",
            parts.join("; ")
        )))
    }

    /// The chain of `leaf` at `src`, down to a base image or an image the
    /// store has.
    fn walk_chain(
        &self,
        ctx: &TaskCtx,
        rt: &Handle,
        catalog: &mut Catalog<'_>,
        src: &Source,
        leaf: RemoteImage,
    ) -> std::result::Result<Plan, ChainError> {
        let top = leaf.uuid().to_string();
        let mut chain = vec![leaf];
        let mut present = None;
        loop {
            ctx.check().map_err(ChainError::Fatal)?;
            let cur = chain.last().expect("chain starts with the leaf");
            let Some(origin) = cur.origin().map(str::to_string) else {
                break;
            };
            if check_uuid(&origin).is_err() {
                return Err(ChainError::Fatal(Error::param(
                    "origin",
                    format!(
                        "image {} at {} has origin {origin:?}, which is not a lowercase UUID",
                        cur.uuid(),
                        src.url()
                    ),
                )));
            }
            if chain.len() >= MAX_CHAIN {
                return Err(ChainError::Fatal(Error::param(
                    "origin",
                    format!(
                        "origin chain of {top} at {} is longer than {MAX_CHAIN} images",
                        src.url()
                    ),
                )));
            }
            if chain.iter().any(|i| i.uuid() == origin) {
                return Err(ChainError::Fatal(Error::param(
                    "origin",
                    format!(
                        "origin chain of {top} at {} has a cycle at {origin}",
                        src.url()
                    ),
                )));
            }
            if let Some(rec) = self.meta.get(&origin) {
                if !rec.activated {
                    return Err(ChainError::Fatal(Error::ImageUuidAlreadyExists(format!(
                        "{origin} (origin of {top}; in the store but not activated)"
                    ))));
                }
                present = Some(origin);
                break;
            }
            match rt.block_on(catalog.get(&origin)) {
                Ok(Some(img)) => chain.push(img),
                Ok(None) => {
                    return Err(ChainError::OriginMissing(Error::OriginNotFoundInSource(
                        format!(
                            "origin {origin} of image {} is not in source {} (importing {top})",
                            cur.uuid(),
                            src.url()
                        ),
                    )))
                }
                Err(e) => {
                    return Err(ChainError::Source(
                        e.into_error(&format!("origin {origin} from source {}", src.url()))
                            .into(),
                    ))
                }
            }
        }
        chain.reverse();
        Ok(Plan {
            missing: chain.into_iter().map(|i| (i, src.clone())).collect(),
            present,
        })
    }

    /// Checks what a source says about an image before fetching it: a valid
    /// manifest, a file with size, SHA-1 and a known compression, within
    /// `limits.max_file_bytes`.
    fn prepare_job(&self, img: RemoteImage, source: Source) -> Result<Job> {
        let uuid = img.uuid().to_string();
        check_uuid(&uuid)?;
        let manifest = manifest::prepare_import(
            &Value::Object(img.manifest.clone()),
            &uuid,
            self.manifest_mode(),
        )
        .map_err(|errors| {
            let mut e = Error::validation(errors);
            if let Error::Validation(msg, _) = &mut e {
                *msg = format!("{msg} (image {uuid} at source {})", source.url());
            }
            e
        })?;
        let bad = |what: &str| {
            Error::DownloadError(format!(
                "image {uuid} at source {} cannot be imported: {what}",
                source.url()
            ))
        };
        let loc = img
            .file
            .clone()
            .ok_or_else(|| bad("its manifest has no file"))?;
        let sha1 = img
            .sha1()
            .filter(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| {
                bad("files[0].sha1 is missing or not a SHA-1, so the file could not be verified")
            })?;
        let size = img
            .size()
            .filter(|&s| s > 0)
            .ok_or_else(|| bad("files[0].size is missing, so the file could not be verified"))?;
        let compression = img.compression().unwrap_or("none");
        if !manifest::COMPRESSIONS.contains(&compression) {
            return Err(bad(&format!("unknown compression {compression:?}")));
        }
        if let Some(d) = img.sha256() {
            if !crate::store::cas::is_sha256_hex(d) {
                return Err(bad(&format!("files[0].digest sha256:{d} is not a SHA-256")));
            }
        }
        let max = self.limits().max_file_bytes;
        if size > max {
            return Err(Error::PayloadTooLarge(format!(
                "the file of image {uuid} ({size} bytes) is larger than the limit of {max} bytes (limits.max_file_bytes)"
            )));
        }
        let params = FileParams {
            compression: compression.to_string(),
            sha1: Some(sha1.to_lowercase()),
            size: Some(size),
            content_length: None,
            dataset_guid: None,
        };
        Ok(Job {
            img,
            source,
            manifest,
            params,
            loc,
        })
    }

    /// Fetches, verifies and records one image, unless another task does
    /// (or did) it. With `failover`, a transient failure that outlasted the
    /// retries moves on to the next source offering the same file.
    fn import_one(&self, ctx: &TaskCtx, rt: &Handle, job: &Job, failover: bool) -> Result<Value> {
        let uuid = job.img.uuid();
        let size = job.params.size.unwrap_or(0);
        let (_slot, waited) = self.sources.claim(uuid, || ctx.check())?;
        if self.meta.get(uuid).is_some_and(|r| r.activated) {
            // Another task fetched it while we waited: one download, shared.
            ctx.add_done(size);
            return Ok(
                json!({"uuid": uuid, "source": job.source.url(), "shared": true, "waited": waited, "bytes_fetched": 0}),
            );
        }
        let mut candidates = vec![(job.source.clone(), job.loc.clone())];
        let mut tried = 0;
        let mut failed_bytes = 0u64;
        let fetched = loop {
            let (src, loc) = &candidates[tried];
            match self.fetch(ctx, rt, src, loc, job) {
                Ok(f) => break (f, src.url().to_string()),
                Err((e, partial, transient)) => {
                    failed_bytes += partial;
                    if !(failover && transient) {
                        return Err(e);
                    }
                    tracing::warn!(image = uuid, source = src.url(), error = %e, "download failed; looking for another source");
                    if tried + 1 == candidates.len() {
                        if let Some(next) = self.next_source(ctx, rt, job, &candidates)? {
                            candidates.push(next);
                        }
                    }
                    if tried + 1 == candidates.len() {
                        return Err(e);
                    }
                    // The bytes of the failed attempt were counted as done:
                    // grow the total, so progress never passes it.
                    ctx.add_total(partial);
                    tried += 1;
                }
            }
        };
        let (f, source) = fetched;
        let recorded = self.record_fetched(uuid, job.manifest.clone(), f.sealed, &job.params)?;
        tracing::info!(image = uuid, source = %source, bytes = size, received = f.received, resumes = f.resumes, "image imported");
        Ok(json!({
            "uuid": uuid,
            "source": source,
            "shared": !recorded,
            "waited": waited,
            "bytes": size,
            // Everything received for this image, a failed source included.
            "bytes_fetched": f.received + failed_bytes,
            "retries": f.retries,
            "resumes": f.resumes,
        }))
    }

    /// The next source (after those in `tried`) that offers the same file.
    fn next_source(
        &self,
        ctx: &TaskCtx,
        rt: &Handle,
        job: &Job,
        tried: &[(Source, FileLoc)],
    ) -> Result<Option<(Source, FileLoc)>> {
        let uuid = job.img.uuid();
        for src in self.sources.list() {
            ctx.check()?;
            if tried.iter().any(|(s, _)| s.url() == src.url()) {
                continue;
            }
            let Ok(Some(img)) = rt.block_on(src.get(&self.sources.http, uuid)) else {
                continue;
            };
            let same = img.sha1().map(str::to_lowercase) == job.params.sha1
                && img.size() == job.params.size;
            if let (true, Some(loc)) = (same, img.file) {
                return Ok(Some((src, loc)));
            }
        }
        Ok(None)
    }

    /// Downloads one file into a verified, uncommitted blob. On failure:
    /// the error, the bytes counted as progress, and whether another source
    /// may do better (a transient failure that outlasted the retries).
    fn fetch(
        &self,
        ctx: &TaskCtx,
        rt: &Handle,
        src: &Source,
        loc: &FileLoc,
        job: &Job,
    ) -> std::result::Result<Fetched, (Error, u64, bool)> {
        let (uuid, p, sha256) = (job.img.uuid(), &job.params, job.img.sha256());
        let what = format!("the file of image {uuid}");
        let stats = Arc::new(Transfer::default());
        // A few MiB in flight: the network never waits for one disk write,
        // and memory stays flat whatever the file size.
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        let download = {
            let stop_ctx = ctx.clone();
            let to = Delivery {
                tx,
                stats: stats.clone(),
                stop: Arc::new(move || stop_ctx.is_cancelled()),
            };
            let (http, src, loc, size) =
                (self.sources.http.clone(), src.clone(), loc.clone(), p.size);
            rt.spawn(async move { src.download(&http, &loc, size, &to).await })
        };
        let written = (|| -> std::io::Result<Option<Sealed>> {
            let mut ingest = self.cas.ingest()?;
            while let Some(chunk) = rx.blocking_recv() {
                if ctx.is_cancelled() {
                    return Ok(None);
                }
                ingest.write(&chunk)?;
                ctx.add_done(chunk.len() as u64);
            }
            Ok(Some(ingest.finish()?))
        })();
        // Hang up first, so a downloader blocked on a full channel ends.
        drop(rx);
        let outcome = rt.block_on(download);
        let partial = stats.delivered.load(Ordering::Relaxed);
        let fail = |e: Error, transient: bool| Err((e, partial, transient));
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => return fail(Error::internal("download task", e), false),
        };
        if ctx.is_cancelled() {
            return fail(
                Error::Cancelled(format!("import of image {uuid} was cancelled")),
                false,
            );
        }
        if let Err(e) = outcome {
            let transient = e.is_transient();
            return fail(
                e.into_error(&format!("{what} from {}", src.url())).into(),
                transient,
            );
        }
        let sealed = match written {
            Ok(Some(s)) => s,
            Ok(None) => {
                return fail(
                    Error::Cancelled(format!("import of image {uuid} was cancelled")),
                    false,
                )
            }
            Err(e) => return fail(Error::io(&format!("writing {what}"), e), false),
        };
        // Upload's message already says what differs and that nothing was
        // stored; for a download that is a checksum failure of the source.
        if let Err(e) = check_sealed(uuid, &sealed, p) {
            return fail(
                Error::ChecksumMismatch(format!("{e} (downloaded from {loc})")),
                false,
            );
        }
        if let Some(want) = sha256.filter(|w| *w != sealed.digests.sha256) {
            return fail(
                Error::ChecksumMismatch(format!(
                    "file for image {uuid} does not match: sha256 expected {want}, got {}; nothing was stored (downloaded from {loc})",
                    sealed.digests.sha256
                )),
                false,
            );
        }
        Ok(Fetched {
            sealed,
            received: stats.received.load(Ordering::Relaxed),
            retries: stats.retries.load(Ordering::Relaxed),
            resumes: stats.resumes.load(Ordering::Relaxed),
        })
    }

    /// Records a verified image: manifest, file and activation in one step
    /// under the write lock, through the functions AddImageFile and
    /// ActivateImage use; all or nothing. `false` when another import
    /// recorded the same image first (the blob is then dropped).
    fn record_fetched(
        &self,
        uuid: &str,
        manifest: Manifest,
        sealed: Sealed,
        p: &FileParams,
    ) -> Result<bool> {
        self.write_locked(|svc| {
            if let Some(cur) = svc.meta.get(uuid) {
                let same = cur.activated && cur.file().map(|f| f.sha1) == p.sha1;
                return if same {
                    Ok(false)
                } else {
                    Err(Error::ImageUuidAlreadyExists(uuid.to_string()))
                };
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
                .commit_file(uuid, sealed, p)
                .and_then(|_| svc.activate_locked(uuid));
            if result.is_err() {
                let _ = svc.meta.delete(uuid);
            }
            result.map(|_| true)
        })
    }
}
