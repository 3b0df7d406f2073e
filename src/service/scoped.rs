//! The image use cases as a request's [`Scope`] (its `?account=` and
//! `?channel=`) sees them: the look-up every image endpoint starts with,
//! the owner check of the writes, and the creators that put a new image
//! into the scope's channel and owner. The rules are `visibility.rs`.

use super::images::not_found;
use super::visibility::{check_operator, in_scope, unknown_channel, Channel, Scope};
use super::Service;
use crate::error::{Error, Result};
use crate::manifest::FieldError;
use crate::store::meta::{Cached, ImageRecord};
use serde_json::Value;
use std::sync::Arc;

impl Service {
    /// Resolves a request's `?channel=` (`given`): `None` when no channels
    /// are configured (the parameter is then ignored, as IMGAPI does) or,
    /// where `allow_star`, for `*`; the default channel when not given.
    ///
    /// # Errors
    /// `ValidationFailed` (field `channel`, `Invalid`) for a channel that is
    /// not configured.
    pub fn channel_scope(&self, given: Option<&str>, allow_star: bool) -> Result<Option<Channel>> {
        let config = self.config();
        let Some(default) = config.default_channel() else {
            return Ok(None);
        };
        let name = match given {
            None | Some("") => default.name.as_str(),
            Some("*") if allow_star => return Ok(None),
            Some(n) => n,
        };
        if !config.channels.iter().any(|c| c.name == name) {
            return Err(unknown_channel(name));
        }
        Ok(Some(Channel {
            name: name.to_string(),
            is_default: name == default.name,
        }))
    }

    /// The image `uuid` as `scope` sees it.
    ///
    /// # Errors
    /// `ResourceNotFound` for a malformed uuid, a missing image, or one
    /// outside the scope (the same message in every case).
    pub fn scoped_image(&self, uuid: &str, scope: &Scope) -> Result<Arc<Cached>> {
        let c = self.get_image_cached(uuid)?;
        if in_scope(&c.fields, scope) {
            Ok(c)
        } else {
            Err(not_found(uuid))
        }
    }

    /// Checks that `scope` may change the image: it sees it, and its
    /// account (if any) owns it.
    ///
    /// # Errors
    /// As [`Service::scoped_image`]; `NotImageOwner` for an account that
    /// sees the image but does not own it.
    pub fn check_owner(&self, uuid: &str, scope: &Scope) -> Result<Arc<Cached>> {
        let c = self.scoped_image(uuid, scope)?;
        if let Some(account) = &scope.account {
            if c.fields.owner.as_deref() != Some(account.as_str()) {
                return Err(Error::NotImageOwner {
                    account: account.clone(),
                    uuid: uuid.to_string(),
                });
            }
        }
        Ok(c)
    }
}

impl Service {
    /// CreateImage within `scope`: with an account, `owner` defaults to it
    /// and may not name another; the image goes into the scope's channel
    /// (any `channels` in the body are replaced, as IMGAPI does).
    ///
    /// # Errors
    /// `InvalidParameter` (field `owner`) for an owner other than the
    /// account; then as [`Service::create_image`].
    pub async fn create_image_scoped(
        self: &Arc<Self>,
        mut body: Value,
        scope: &Scope,
    ) -> Result<Arc<ImageRecord>> {
        if let (Some(account), Some(obj)) = (&scope.account, body.as_object_mut()) {
            match obj.get("owner") {
                None | Some(Value::Null) => {
                    obj.insert("owner".into(), Value::from(account.as_str()));
                }
                Some(Value::String(o)) if o == account => {}
                Some(other) => {
                    let message = format!(
                        "invalid owner: given owner, {other}, does not match account, \"{account}\""
                    );
                    return Err(Error::InvalidParameter(
                        message.clone(),
                        vec![FieldError {
                            field: "owner".into(),
                            code: "Invalid".into(),
                            message,
                        }],
                    ));
                }
            }
        }
        self.put_channel_in_body(&mut body, scope);
        self.create_image(body).await
    }

    /// AdminImportImage within `scope`: operators only (no account); the
    /// image goes into the scope's channel.
    ///
    /// # Errors
    /// `OperatorOnly` (403) with an account; then as
    /// [`Service::import_image`].
    pub async fn import_image_scoped(
        self: &Arc<Self>,
        uuid: String,
        mut body: Value,
        scope: &Scope,
    ) -> Result<Arc<ImageRecord>> {
        check_operator(scope)?;
        self.put_channel_in_body(&mut body, scope);
        self.import_image(uuid, body).await
    }

    fn put_channel_in_body(&self, body: &mut Value, scope: &Scope) {
        if let Some(obj) = body.as_object_mut() {
            self.assign_channel(obj, scope.channel.as_ref());
        }
    }
}
