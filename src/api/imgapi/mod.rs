//! The IMGAPI dialect: one handler per [`Route`], in one file per resource.
//! Handlers turn a route and its request into a service call and its result
//! into IMGAPI's response; the business rules are the service's.

pub mod admin;
pub mod files;
pub mod images;
pub mod packages;
pub mod pools;
pub mod sources;
pub mod tasks;
pub mod view;

use super::http::{Body, Ctx};
use super::routes::Route;
use crate::error::Result;
use hyper::Response;

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
    }
}
