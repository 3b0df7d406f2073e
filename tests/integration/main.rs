//! Integration tests: the real `imgstore` binary on a temp socket and data
//! dir. One test binary; one module per area.

mod access;
mod cli;
mod common;
mod compat;
mod crash;
mod daemon;
mod fullness;
mod hostile;
mod images;
mod imgapi_a;
mod imgapi_b;
mod imgapi_c;
mod imgapi_d;
mod logs;
mod memory;
mod packages;
mod patch;
mod readme;
mod recovery;
mod remote;
mod service_files;
mod soak;
mod zfs;
