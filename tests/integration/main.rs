//! Integration tests: the real `imgstore` binary on a temp socket and data
//! dir. One test binary; one module per area.

mod common;
mod daemon;
mod images;
mod memory;
mod nginx;
mod remote;
mod zfs;
