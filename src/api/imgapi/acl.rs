//! Handlers for sharing: `POST /images/:uuid/acl?action=add|remove`
//! (AddImageAcl, RemoveImageAcl; no action means add) and
//! `POST /images/:uuid/clone?account=UUID` (CloneImage). The rules are
//! `service::acl`'s.

use super::images::ok_in;
use super::view::View;
use crate::api::http::{json_body, Body, Ctx};
use crate::error::{Error, Result};
use crate::manifest::FieldError;
use crate::service::acl::parse_acl_body;
use hyper::Response;

/// AddImageAcl (`add`) and RemoveImageAcl: the body is a JSON array of
/// account uuids; only the owner (with `?account=`) or an operator may
/// change it.
pub async fn change(ctx: Ctx, uuid: String, add: bool) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    let scope = super::scope(&ctx, false)?;
    let (ctx, body) = json_body(ctx).await?;
    ctx.svc.check_owner(&uuid, &scope)?;
    let accounts = parse_acl_body(&body)?;
    ok_in(view, ctx.svc.change_acl(uuid, accounts, add).await?)
}

/// `POST /images/:uuid/acl?action=` neither add nor remove: 422
/// `InvalidParameter` on `action`, once the image is found and owned.
pub async fn unknown_action(ctx: Ctx, uuid: String, action: String) -> Result<Response<Body>> {
    let scope = super::scope(&ctx, false)?;
    let (ctx, _body) = json_body(ctx).await?;
    ctx.svc.check_owner(&uuid, &scope)?;
    let message = format!("\"{action}\" is not a valid action: expected add or remove");
    Err(Error::InvalidParameter(
        message.clone(),
        vec![FieldError {
            field: "action".into(),
            code: "Invalid".into(),
            message,
        }],
    ))
}

/// CloneImage: `account` is required; the image must be visible to it.
pub async fn clone(ctx: Ctx, uuid: String) -> Result<Response<Body>> {
    let view = View::of(&ctx)?;
    let scope = super::scope(&ctx, false)?;
    ctx.svc.scoped_image(&uuid, &scope)?;
    let Some(account) = scope.account else {
        return Err(super::invalid_account("undefined"));
    };
    ok_in(view, ctx.svc.clone_image(uuid, account).await?)
}
