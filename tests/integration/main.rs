//! Integration tests: the real `imgstore` binary on a temp socket and data
//! dir. One test binary; one module per area.

mod access;
mod common;
mod crash;
mod daemon;
mod fullness;
mod hostile;
mod images;
mod memory;
mod recovery;
mod soak;
mod zfs;
