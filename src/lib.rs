//! imgstore: the image store daemon of a ZFS compute node.
//!
//! # Layout
//! - [`access`]: who may read and who may write (SO_PEERCRED).
//! - [`config`]: the TOML config, embedded defaults, validation.
//! - [`error`]: the error enum with IMGAPI codes and HTTP statuses.
//! - [`manifest`]: every rule of the IMGAPI manifest v2 (pure, no I/O).
//! - [`store`]: the content-addressed blob store ([`store::cas`]) and the
//!   metadata index in sled with on-disk records ([`store::meta`]).
//! - [`service`]: the use cases (create, import, add file, activate, ...);
//!   no HTTP types.
//! - [`api`]: the route table and handlers (hyper), one file per resource.
//! - [`server`]: data-dir and socket ownership, accept loop, signals.
//! - [`sources`]: remote image sources (IMGAPI, DSAPI, directories) and the
//!   HTTP(S) client that fetches from them with retries and resume.
//! - [`peer`]: the optional TCP listener serving the read-only IMGAPI subset
//!   to other nodes.
//! - [`log`]: structured logging with a reloadable level.
//! - [`zfs`]: the one module that runs `zfs`/`zpool` (argv only, classified errors).
//! - [`cli`]: the command line: `serve`, and the imgadm-style client verbs
//!   that talk to the daemon's socket.
//!
//! The binary (`src/main.rs`) is thin: `imgstore serve` runs the daemon, and
//! the other verbs are a client of its socket ([`cli`]).

pub mod access;
pub mod api;
pub mod cli;
pub mod config;
pub mod error;
pub mod hyper_errors;
pub mod log;
pub mod manifest;
pub mod peer;
pub mod server;
pub mod service;
pub mod sources;
pub mod store;
pub mod tasks;
pub mod zfs;
