//! The service layer: every use case of the store, with no HTTP types.
//!
//! Handlers in `api/` parse a request into a call here and turn the result
//! into a response; the fields are private, so every use the API makes of
//! the store is a method here (one per use case). Mutations run on the blocking pool (`spawn_blocking`)
//! because they fsync files and flush sled, and they are serialised by one
//! write lock: a node's image store sees a handful of writes a minute, and a
//! single writer makes invariants such as "a blob is removed only when no
//! image refers to it" and "an origin cannot be deleted while an image names
//! it" trivially race-free. Reads come from the in-memory index and take no
//! lock beyond it.

pub mod acl;
pub mod admin;
pub mod channels;
pub mod compression;
pub mod create;
pub mod fetched;
pub mod filter;
pub mod fsck;
pub mod icons;
pub mod images;
pub mod import;
pub mod install;
pub mod journal;
pub mod packages;
pub mod patch;
pub mod pipe;
pub mod pools;
pub mod precondition;
pub mod scoped;
pub mod sources;
pub mod tasks;
pub mod vacuum;
pub mod visibility;

use crate::config::{Config, Limits};
use crate::error::{Error, Result, StartError};
use crate::sources::Sources;
use crate::store::layout::tree;
use crate::store::{cas::Cas, meta::Meta, packages::PackageStore};
use crate::tasks::Tasks;
use crate::zfs::Zfs;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// What the service hands the API: an image's record and its cached JSON,
/// a package, a task. They are defined where they are stored or run; the
/// API names them only through here, as the service's contract.
pub use crate::store::meta::{Cached, ImageRecord};
pub use crate::store::packages::Package;
pub use crate::tasks::Task;

pub struct Service {
    /// A weak handle on itself, so blocking code can start tasks that own
    /// the service.
    me: std::sync::Weak<Service>,
    cas: Cas,
    meta: Meta,
    zfs: Zfs,
    tasks: Arc<Tasks>,
    /// Remote sources, their HTTP client and in-flight downloads.
    sources: Sources,
    /// Undo steps of running tasks (see `journal.rs`).
    journal: sled::Tree,
    packages: PackageStore,
    config: RwLock<Arc<Config>>,
    /// The single-writer lock. An async mutex: a write request waits for it
    /// on the runtime, not parked in a blocking-pool thread, so a queue of
    /// writers neither grows the blocking pool nor delays the reads that
    /// need it (downloads).
    write_lock: Arc<tokio::sync::Mutex<()>>,
    /// Held shared by every running install and exclusively by vacuum while
    /// it uninstalls unused images, so that vacuum never destroys an origin
    /// an install is about to receive onto (see `vacuum.rs`).
    install_gate: RwLock<()>,
    /// True until the start-up undo of interrupted tasks has run
    /// (`recover_journal`); fsck reports their pending steps as a notice
    /// meanwhile.
    recovering: std::sync::atomic::AtomicBool,
}

/// The manifest validation rules of a config's IMGAPI `mode`.
pub fn manifest_mode_of(config: &Config) -> crate::manifest::Mode {
    use crate::config::ImgapiMode;
    use crate::manifest::Mode;
    match config.imgapi.mode {
        ImgapiMode::Dc => Mode::Dc,
        ImgapiMode::Public => Mode::Public,
        ImgapiMode::Private => Mode::Private,
    }
}

impl Service {
    /// Opens the store under the config's data dir.
    ///
    /// # Errors
    /// The data dir cannot be created, or the store in it cannot be opened.
    pub fn open(config: Config) -> std::result::Result<Arc<Service>, StartError> {
        let dir: &Path = &config.data_dir;
        std::fs::create_dir_all(dir)
            .map_err(StartError::during(format!("data dir {}", dir.display())))?;
        let cas = Cas::open(dir).map_err(StartError::during(format!(
            "blob store in {}",
            dir.display()
        )))?;
        let meta = Meta::open(dir)?;
        let (tasks, interrupted) = Tasks::open(
            meta.tree(tree::TASKS)
                .map_err(StartError::during("task database"))?,
        )?;
        for t in &interrupted {
            tracing::warn!(task = %t.id, kind = %t.kind, "task was interrupted by a restart; marked failed");
        }
        let journal = meta
            .tree(tree::JOURNAL)
            .map_err(StartError::during("journal"))?;
        let sources = Sources::open(
            meta.tree(tree::SOURCES)
                .map_err(StartError::during("sources"))?,
            &config.sources,
        )?;
        let zfs = Zfs::new(&config.zfs.zfs_bin, &config.zfs.zpool_bin);
        let tree = meta
            .tree(tree::PACKAGES)
            .map_err(StartError::during(format!(
                "sled tree packages in {}",
                dir.display()
            )))?;
        let packages = PackageStore::open(dir, tree)?;
        tasks.set_max_running(config.limits.max_tasks);
        Ok(Arc::new_cyclic(|me| Service {
            me: me.clone(),
            cas,
            meta,
            zfs,
            tasks: Arc::new(tasks),
            sources,
            journal,
            packages,
            config: RwLock::new(Arc::new(config)),
            write_lock: Arc::new(tokio::sync::Mutex::new(())),
            install_gate: RwLock::new(()),
            recovering: std::sync::atomic::AtomicBool::new(true),
        }))
    }

    /// The `Arc` this service lives in.
    fn arc(&self) -> Arc<Service> {
        self.me.upgrade().expect("the service outlives its users")
    }

    pub fn config(&self) -> Arc<Config> {
        self.config.read().unwrap().clone()
    }

    pub fn limits(&self) -> Limits {
        self.config.read().unwrap().limits.clone()
    }

    /// The manifest validation rules of the configured IMGAPI `mode`
    /// (`[imgapi] mode`).
    pub fn manifest_mode(&self) -> crate::manifest::Mode {
        manifest_mode_of(&self.config.read().unwrap())
    }

    /// Replaces the live config (SIGHUP).
    pub fn set_config(&self, config: Config) {
        self.tasks.set_max_running(config.limits.max_tasks);
        *self.config.write().unwrap() = Arc::new(config);
    }

    /// Runs `f` on the blocking pool holding the write lock.
    async fn mutate<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        F: FnOnce(&Service) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let svc = self.clone();
        let guard = self.write_lock.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            f(&svc)
        })
        .await
        .map_err(|e| Error::internal("write task", e))?
    }

    /// Runs blocking work (hashing, file I/O) off the async workers, without
    /// the write lock.
    async fn blocking<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        F: FnOnce(&Service) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let svc = self.clone();
        tokio::task::spawn_blocking(move || f(&svc))
            .await
            .map_err(|e| Error::internal("blocking task", e))?
    }

    /// Takes the write lock from code already on the blocking pool.
    /// Must not be called on an async worker thread (it blocks).
    fn write_locked<T>(&self, f: impl FnOnce(&Service) -> Result<T>) -> Result<T> {
        let _guard = self.write_lock.blocking_lock();
        f(self)
    }

    /// Flushes sled and marks the metadata clean (so the next start can
    /// skip re-reading every record); called at shutdown. Holds the write
    /// lock, so no change can slip in between the flush and the marker; a
    /// task that still changes an image afterwards removes the marker
    /// first (see `store::meta`).
    pub fn flush(&self) -> Result<()> {
        self.write_locked(|svc| {
            svc.meta.flush()?;
            svc.meta
                .mark_clean()
                .map_err(|e| Error::io("marking the metadata clean", e))
        })
    }
}
