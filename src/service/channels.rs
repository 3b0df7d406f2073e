//! IMGAPI channels (sdc-imgapi `lib/channels.js`, and `lib/images.js`
//! `apiChannelAddImage`, `apiDeleteImage`): the configured list, the
//! channel new images go into, adding an image to a channel, and deleting
//! an image from one channel only.
//!
//! Channels are stored where IMGAPI keeps them, in the manifest's
//! `channels` array, so the record files stay the one truth the index is
//! rebuilt from. Which channel a request looks in is `visibility.rs`.

use super::precondition::Precondition;
use super::visibility::{channels_of, in_channel, unknown_channel, Channel};
use super::Service;
use crate::config::ChannelConfig;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::store::meta::ImageRecord;
use serde_json::{json, Value};
use std::sync::Arc;

impl Service {
    /// ListChannels: the configured channels, in config order; `None` when
    /// none are configured (IMGAPI then has no such endpoint).
    pub fn list_channels(&self) -> Option<Vec<ChannelConfig>> {
        let config = self.config();
        (!config.channels.is_empty()).then(|| config.channels.clone())
    }

    /// Puts a new image's manifest into `channel` (the request's, else the
    /// default), replacing any `channels` the client sent, as IMGAPI's
    /// creators do (`delete data.channels`). Without channels configured
    /// the manifest has none.
    pub(super) fn assign_channel(&self, m: &mut Manifest, channel: Option<&Channel>) {
        m.remove("channels");
        let config = self.config();
        let name = channel
            .map(|c| c.name.clone())
            .or_else(|| config.default_channel().map(|c| c.name.clone()));
        if let Some(name) = name {
            m.insert("channels".into(), json!([name]));
        }
    }

    /// ChannelAddImage: adds the image to channel `name` (a no-op when it
    /// is there already). The caller has checked the request's scope.
    ///
    /// # Errors
    /// `InvalidParameter` (`"channel-add" is not a valid action`) when no
    /// channels are configured, as IMGAPI answers then; `ValidationFailed`
    /// for an unknown channel; `ResourceNotFound`.
    pub async fn channel_add(
        self: &Arc<Self>,
        uuid: String,
        name: Option<String>,
        cond: Precondition,
    ) -> Result<Arc<ImageRecord>> {
        let config = self.config();
        let Some(default) = config.default_channel().map(|c| c.name.clone()) else {
            return Err(Error::InvalidParameter(
                "\"channel-add\" is not a valid action: no channels are configured".into(),
                vec![crate::manifest::FieldError {
                    field: "action".into(),
                    code: "Invalid".into(),
                    message: "\"channel-add\" is not a valid action".into(),
                }],
            ));
        };
        let name = match name {
            Some(n) if config.channels.iter().any(|c| c.name == n) => n,
            other => return Err(unknown_channel(other.as_deref().unwrap_or("undefined"))),
        };
        self.mutate(move |svc| {
            let cur = svc.current_if(&uuid, &cond)?;
            let mut list = channels_of(&cur.fields(), &default);
            if list.contains(&name) && cur.manifest.contains_key("channels") {
                return Ok(cur);
            }
            if !list.contains(&name) {
                list.push(name);
            }
            let mut rec = (*cur).clone();
            rec.manifest.insert("channels".into(), json!(list));
            svc.put(rec)
        })
        .await
    }

    /// DeleteImage in a channel: with channels configured, an image in
    /// more than one channel is only removed from `channel` (unless
    /// `force_all_channels`); otherwise it is deleted. Images that name this
    /// one as origin and are in the same channel refuse either (IMGAPI's
    /// check); a real delete also refuses while any image names it as
    /// origin (this store never leaves an origin dangling).
    ///
    /// # Errors
    /// `ImageHasDependentImages`, `ResourceNotFound`, storage errors.
    pub async fn delete_in_channel(
        self: &Arc<Self>,
        uuid: String,
        channel: Option<Channel>,
        force_all_channels: bool,
        cond: Precondition,
    ) -> Result<()> {
        let Some(channel) = channel else {
            return self.delete_if(uuid, cond).await;
        };
        super::images::check_uuid(&uuid)?;
        self.mutate(move |svc| {
            let cur = svc.current_if(&uuid, &cond)?;
            let dependents: Vec<String> = svc.meta.uuids_where(|f| {
                f.origin.as_deref() == Some(uuid.as_str()) && in_channel(f, &channel)
            });
            if !dependents.is_empty() {
                return Err(Error::ImageHasDependentImages {
                    uuid: uuid.clone(),
                    dependents,
                });
            }
            let default = svc
                .config()
                .default_channel()
                .map(|c| c.name.clone())
                .unwrap_or_default();
            let list = channels_of(&cur.fields(), &default);
            if list.len() > 1 && !force_all_channels {
                let rest: Vec<Value> = list
                    .into_iter()
                    .filter(|c| *c != channel.name)
                    .map(Value::from)
                    .collect();
                let mut rec = (*cur).clone();
                rec.manifest.insert("channels".into(), Value::Array(rest));
                svc.put(rec)?;
                return Ok(());
            }
            svc.delete_locked(&uuid, &Precondition::none())
        })
        .await
    }
}
