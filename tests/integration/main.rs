//! Integration tests: the real `imgstore` binary on a temp socket and data
//! dir. One test binary; one module per area.

mod common;
mod compat;
mod daemon;
mod images;
mod memory;
mod packages;
mod patch;
mod zfs;
