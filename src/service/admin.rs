//! The store's administration as use cases for the API: check (and
//! repair) and vacuum, run off the async workers. The work is `fsck.rs`'s
//! and `vacuum.rs`'s.

use super::{fsck, vacuum, Service};
use crate::error::Result;
use std::sync::Arc;

impl Service {
    /// Checks the store, and with `opts.repair` repairs it; see
    /// [`Service::fsck`].
    ///
    /// # Errors
    /// As [`Service::fsck`].
    pub async fn check(self: &Arc<Self>, opts: fsck::Options) -> Result<fsck::Report> {
        self.blocking(move |svc| svc.fsck(opts)).await
    }

    /// Runs a vacuum; see [`Service::vacuum`].
    ///
    /// # Errors
    /// As [`Service::vacuum`].
    pub async fn run_vacuum(self: &Arc<Self>, opts: vacuum::Options) -> Result<vacuum::Report> {
        self.blocking(move |svc| svc.vacuum(&opts)).await
    }
}
