//! Integration tests: the real `imgstore` binary on a temp socket and data
//! dir. One test binary; one module per area.

mod cli;
mod common;
mod compat;
mod daemon;
mod images;
mod logs;
mod memory;
mod nginx;
mod packages;
mod patch;
mod readme;
mod remote;
mod service_files;
mod zfs;
