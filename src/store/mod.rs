//! Persistent state: the content-addressed blob store, the metadata index,
//! and the record files both indexes can be rebuilt from; [`layout`] says
//! where each lives under the data dir.

pub mod cas;
pub mod layout;
pub mod meta;
pub mod packages;
pub mod records;
pub mod tasks;
