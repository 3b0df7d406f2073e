//! imgstore: the image store daemon of a ZFS compute node.
//!
//! # Layout
//! The modules form a stack, listed here bottom to top; a module uses only
//! the ones below it (`python3 ../shared/tools/modgraph.py src` finds no
//! circle).
//! - [`time`]: the one RFC 3339 clock every stored timestamp comes from.
//! - [`codec`]: the (de)compressors of `files[].compression` and the one
//!   `CHUNK` every data path moves bytes in.
//! - [`log`]: structured logging with a reloadable level.
//! - [`config`]: the TOML config, embedded defaults, validation.
//! - [`manifest`]: every rule of the IMGAPI manifest v2 (pure, no I/O).
//! - [`zfs`]: the one module that runs `zfs`/`zpool` (argv only, classified errors).
//! - [`store`]: where everything lives in the data dir and its lock
//!   ([`store::layout`]), the content-addressed blob store ([`store::cas`])
//!   and the metadata index in sled with on-disk records ([`store::meta`]);
//!   the task record's one encoder and decoder ([`store::tasks`]).
//! - [`sources`]: remote image sources (IMGAPI, DSAPI, directories) and the
//!   HTTP(S) client that fetches from them with retries and resume.
//! - [`error`]: the error enum with IMGAPI codes and the IMGAPI error body
//!   (the HTTP status of each code is [`api::error`]'s); the
//!   modules listed before it have their own errors and never name it, it folds them
//!   in ([`sources::SourceError`], [`store::meta::MetaError`],
//!   [`store::cas::CasError`], [`zfs::ZfsError`]); and
//!   [`error::StartError`], what stops the daemon from starting.
//! - [`access`]: who is calling ([`access::Peer`], SO_PEERCRED) and who may
//!   read and who may write.
//! - [`tasks`]: long operations that answer 202 with a task.
//! - [`service`]: the use cases (create, import, add file, activate, ...);
//!   no HTTP types. [`service::Service`]'s fields are private: one method
//!   per use case, and the records it returns are re-exported from it.
//!   [`service::journal`] owns the undo journal (its record, push, undo,
//!   recovery); fsck reads pending steps through it.
//!   [`service::visibility`] holds IMGAPI's `?account=`/`?channel=` rules
//!   once, for every dialect; [`service::scoped`] applies them.
//! - [`api`]: admit, route and log ([`api::routes`] parses each request
//!   into one [`api::routes::Route`]); [`api::error`] chooses each error's
//!   HTTP status; the IMGAPI dialect's handlers are [`api::imgapi`], one
//!   file per resource (images, files, icons, acl, channels, pools,
//!   tasks, sources, packages, admin, and the legacy DSAPI view
//!   `datasets`), over the service only.
//! - [`conn`]: per-connection plumbing: a write deadline and JSON for the
//!   errors hyper answers by itself.
//! - [`server`]: data-dir and socket ownership, accept loop, signals; and
//!   [`server::peer`], the optional TCP listener serving the read-only
//!   IMGAPI subset to other nodes.
//! - [`cli`]: the command line: `serve`, and the imgadm-style client verbs
//!   that talk to the daemon's socket.
//!
//! The binary (`src/main.rs`) is thin: `imgstore serve` runs the daemon, and
//! the other verbs are a client of its socket ([`cli`]).

pub mod access;
pub mod api;
pub mod cli;
pub mod codec;
pub mod config;
pub mod conn;
pub mod error;
pub mod log;
pub mod manifest;
pub mod server;
pub mod service;
pub mod sources;
pub mod store;
pub mod tasks;
pub mod time;
pub mod zfs;
