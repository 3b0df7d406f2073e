//! The IMGAPI dialect: one handler per [`Route`], in one file per resource.
//! Handlers turn a route and its request into a service call and its result
//! into IMGAPI's response; the business rules are the service's.

pub mod acl;
pub mod admin;
pub mod channels;
pub mod datasets;
pub mod files;
pub mod icons;
pub mod images;
pub mod packages;
pub mod pools;
pub mod sources;
pub mod tasks;
pub mod view;

use super::http::{Body, Ctx};
use super::routes::Route;
use crate::error::{Error, Result};
use crate::manifest::{self, FieldError};
use crate::service::visibility::Scope;
use hyper::Response;

/// The request's `?account=` and `?channel=` (see `service::visibility`);
/// `allow_star` where IMGAPI takes `channel=*` (the reads).
///
/// # Errors
/// `InvalidParameter` (field `account`) for an account that is not a
/// UUID; `ValidationFailed` for an unknown channel.
pub(super) fn scope(ctx: &Ctx, allow_star: bool) -> Result<Scope> {
    let channel = ctx.svc.channel_scope(ctx.param("channel")?, allow_star)?;
    let account = match ctx.param("account")? {
        None | Some("") => None,
        Some(a) if manifest::is_uuid(a) => Some(a.to_string()),
        Some(a) => return Err(invalid_account(a)),
    };
    Ok(Scope { account, channel })
}

/// IMGAPI's answer to an `account` that is not a UUID.
pub(super) fn invalid_account(a: &str) -> Error {
    let message = format!("invalid \"account\": not a UUID: \"{a}\"");
    Error::InvalidParameter(
        message.clone(),
        vec![FieldError {
            field: "account".into(),
            code: "Invalid".into(),
            message,
        }],
    )
}

/// Runs the handler of `route`.
pub async fn serve(route: Route, ctx: Ctx) -> Result<Response<Body>> {
    match route {
        Route::Ping => admin::ping(ctx).await,
        Route::ListImages => images::list(ctx).await,
        Route::CreateImage => images::create(ctx).await,
        Route::CreateFromDataset => images::create_from_dataset(ctx).await,
        Route::InstallFromFiles => images::install_from_files(ctx).await,
        Route::GetImage(uuid) => images::get(ctx, uuid).await,
        Route::ImportImage(uuid) => images::import(ctx, uuid).await,
        Route::ImportRemote(req) => images::import_remote(ctx, req).await,
        Route::ActivateImage(uuid) => images::activate(ctx, uuid).await,
        Route::EnableImage(uuid) => images::set_disabled(ctx, uuid, false).await,
        Route::DisableImage(uuid) => images::set_disabled(ctx, uuid, true).await,
        Route::UpdateImage(uuid) => images::update(ctx, uuid).await,
        Route::InstallImage(req) => pools::install(ctx, req).await,
        Route::ExportImage(req) => images::export(ctx, req).await,
        Route::PatchImage(uuid) => images::patch(ctx, uuid).await,
        Route::DeleteImage(uuid) => images::delete(ctx, uuid).await,
        Route::GetImageFile(uuid) => files::get(ctx, uuid).await,
        Route::PutImageFile(uuid) => files::put(ctx, uuid).await,
        Route::ListTasks => tasks::list(ctx).await,
        Route::GetTask(id) => tasks::get(ctx, id).await,
        Route::CancelTask(id) => tasks::cancel(ctx, id),
        Route::PoolImages(pool) => pools::images(ctx, pool).await,
        Route::PoolImage { pool, uuid } => pools::image(ctx, pool, uuid).await,
        Route::Uninstall { pool, uuid } => pools::uninstall(ctx, pool, uuid).await,
        Route::ListPackages => packages::list(ctx),
        Route::CreatePackage => packages::create(ctx).await,
        Route::LoadPackages => packages::load(ctx).await,
        Route::UnknownPackagesAction(action) => packages::unknown_action(ctx, action).await,
        Route::GetPackage(x) => packages::get(ctx, x),
        Route::ReplacePackage(id) => packages::replace(ctx, id).await,
        Route::DeletePackage(id) => packages::delete(ctx, id).await,
        Route::PackageImages(x) => packages::images(ctx, x),
        Route::ListSources => sources::list(ctx),
        Route::AddSource => sources::add(ctx).await,
        Route::RemoveSource => sources::remove(ctx).await,
        Route::AvailImages => sources::avail(ctx).await,
        Route::AvailImage(uuid) => sources::avail_one(ctx, uuid).await,
        Route::State => admin::state(ctx).await,
        Route::Repair => admin::repair(ctx).await,
        Route::Vacuum => admin::vacuum(ctx).await,
        Route::ListChannels => channels::list(ctx),
        Route::ChannelAddImage(uuid) => channels::add_image(ctx, uuid).await,
        Route::AddImageAcl(uuid) => acl::change(ctx, uuid, true).await,
        Route::RemoveImageAcl(uuid) => acl::change(ctx, uuid, false).await,
        Route::UnknownAclAction { uuid, action } => acl::unknown_action(ctx, uuid, action).await,
        Route::CloneImage(uuid) => acl::clone(ctx, uuid).await,
        Route::AddImageIcon(uuid) => icons::add(ctx, uuid).await,
        Route::GetImageIcon(uuid) => icons::get(ctx, uuid).await,
        Route::DeleteImageIcon(uuid) => icons::delete(ctx, uuid).await,
        Route::ListImageJobs(uuid) => tasks::image_jobs(ctx, uuid).await,
        Route::ImportImageFromSource { uuid, source } => {
            images::import_from_source(ctx, uuid, source).await
        }
        Route::AddImageFileFromSource { uuid, source } => {
            files::add_from_source(ctx, uuid, source).await
        }
        Route::AddImageFileFromUrl(uuid) => files::add_from_url(ctx, uuid).await,
        Route::ListDatasets => datasets::list(ctx).await,
        Route::GetDataset(uuid) => datasets::get(ctx, uuid).await,
        Route::GetDatasetFile(uuid) => files::get(ctx, uuid).await,
    }
}
