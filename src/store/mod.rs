//! Persistent state: the content-addressed blob store, the metadata index,
//! and the record files both indexes can be rebuilt from.

pub mod cas;
pub mod meta;
pub mod packages;
pub mod records;
