//! Persistent state: the content-addressed blob store and the metadata index.

pub mod cas;
pub mod meta;
