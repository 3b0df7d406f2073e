//! Handlers for IMGAPI channels: `GET /channels` (ListChannels) and
//! `POST /images/:uuid?action=channel-add` (ChannelAddImage). Which
//! channel a request looks in, and the rules, are `service::visibility`
//! and `service::channels`.

use super::images::{ok_in, precondition};
use super::view::View;
use crate::api::http::{json_body, json_response, Body, Ctx};
use crate::error::{Error, Result};
use hyper::{Response, StatusCode};

/// `GET /channels`: the configured channels, `[{name, description,
/// default?}]`. Without channels the endpoint does not exist (404), as in
/// an IMGAPI configured without them.
pub fn list(ctx: Ctx) -> Result<Response<Body>> {
    let Some(channels) = ctx.svc.list_channels() else {
        return Err(Error::RouteNotFound {
            method: ctx.method.to_string(),
            path: ctx.req.uri().path().to_string(),
        });
    };
    let v = serde_json::to_value(channels).map_err(|e| Error::internal("channels", e))?;
    Ok(json_response(StatusCode::OK, &v))
}

/// `POST /images/:uuid?action=channel-add`: the body's `channel` is the
/// channel to add the image to; the query's `channel` (as on every image
/// endpoint) is where the image is looked up.
pub async fn add_image(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    let cond = precondition(&ctx);
    let scope = super::scope(&ctx, false)?;
    let (ctx, body) = json_body(ctx).await?;
    ctx.svc.check_owner(&uuid, &scope)?;
    let name = body
        .get("channel")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    ok_in(view, ctx.svc.channel_add(uuid, name, cond).await?)
}
