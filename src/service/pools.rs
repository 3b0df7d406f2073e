//! What is installed in a pool, as use cases for the API: the blocking
//! work (`zfs list`, `zfs destroy`) is `install.rs`'s, run here off the
//! async workers. Installing is a task (`tasks.rs`).

use super::Service;
use crate::error::Result;
use serde_json::Value;
use std::sync::Arc;

impl Service {
    /// The images installed in `pool`; see [`Service::installed`].
    ///
    /// # Errors
    /// As [`Service::installed`].
    pub async fn pool_images(self: &Arc<Self>, pool: String) -> Result<Vec<Value>> {
        self.blocking(move |svc| svc.installed(&pool)).await
    }

    /// One image installed in `pool`; see [`Service::installed_one`].
    ///
    /// # Errors
    /// As [`Service::installed_one`].
    pub async fn pool_image(self: &Arc<Self>, pool: String, uuid: String) -> Result<Value> {
        self.blocking(move |svc| svc.installed_one(&pool, &uuid))
            .await
    }

    /// Uninstalls `uuid` from `pool`; see [`Service::uninstall`].
    ///
    /// # Errors
    /// As [`Service::uninstall`].
    pub async fn uninstall_image(self: &Arc<Self>, pool: String, uuid: String) -> Result<()> {
        self.blocking(move |svc| svc.uninstall(&pool, &uuid)).await
    }
}
