//! The route table: one [`Route`] parsed from a request's method, decoded
//! path segments and, on the paths that take one, its `?action=`. Nothing
//! else in the API decides which handler runs.
//!
//! The order of the checks is part of the contract: an unknown path is 404
//! `ResourceNotFound`, then a method the path does not take is 405
//! `MethodNotAllowed` (with `Allow`), then the action and the parameters
//! that belong to it. The request's body is never read here.

use super::http::param;
use crate::error::{Error, Result};
use hyper::Method;

/// Every request the IMGAPI dialect serves, with the path's identifiers and,
/// for the actions that take any, their typed query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /ping`.
    Ping,
    /// `GET /images`.
    ListImages,
    /// `POST /images`: CreateImage.
    CreateImage,
    /// `POST /images?action=create-from-dataset`.
    CreateFromDataset,
    /// `POST /images?action=install-from-files`.
    InstallFromFiles,
    /// `GET /images/:uuid`.
    GetImage(String),
    /// `POST /images/:uuid?action=import`.
    ImportImage(String),
    /// `POST /images/:uuid?action=import-remote[&source=URL][&install=POOL]`.
    ImportRemote(ImportRemote),
    /// `POST /images/:uuid?action=activate`.
    ActivateImage(String),
    /// `POST /images/:uuid?action=enable`.
    EnableImage(String),
    /// `POST /images/:uuid?action=disable`.
    DisableImage(String),
    /// `POST /images/:uuid?action=update`.
    UpdateImage(String),
    /// `POST /images/:uuid?action=install[&pool=POOL]`.
    InstallImage(Install),
    /// `POST /images/:uuid?action=export&path=DIR`.
    ExportImage(Export),
    /// `PATCH /images/:uuid`.
    PatchImage(String),
    /// `DELETE /images/:uuid`.
    DeleteImage(String),
    /// `GET /images/:uuid/file` (and `HEAD`).
    GetImageFile(String),
    /// `PUT /images/:uuid/file`: AddImageFile.
    PutImageFile(String),
    /// `GET /tasks`.
    ListTasks,
    /// `GET /tasks/:id[?wait=SECS]`.
    GetTask(String),
    /// `DELETE /tasks/:id`.
    CancelTask(String),
    /// `GET /pools/:pool/images`.
    PoolImages(String),
    /// `GET /pools/:pool/images/:uuid`.
    PoolImage { pool: String, uuid: String },
    /// `DELETE /pools/:pool/images/:uuid`.
    Uninstall { pool: String, uuid: String },
    /// `GET /packages`.
    ListPackages,
    /// `POST /packages`.
    CreatePackage,
    /// `POST /packages?action=load`.
    LoadPackages,
    /// `POST /packages?action=` something else. Refused only once the body
    /// has been read, so that a bad body is reported first (as it always
    /// was on this path).
    UnknownPackagesAction(String),
    /// `GET /packages/:id-or-name`.
    GetPackage(String),
    /// `PUT /packages/:id`.
    ReplacePackage(String),
    /// `DELETE /packages/:id`.
    DeletePackage(String),
    /// `GET /packages/:id-or-name/images`.
    PackageImages(String),
    /// `GET /sources`.
    ListSources,
    /// `POST /sources`.
    AddSource,
    /// `DELETE /sources?url=URL`.
    RemoveSource,
    /// `GET /sources/images`.
    AvailImages,
    /// `GET /sources/images/:uuid`.
    AvailImage(String),
    /// `GET /state[?verify=true]`.
    State,
    /// `POST /state?action=repair[&verify=true]`.
    Repair,
    /// `POST /vacuum`.
    Vacuum,
    /// `GET /channels`: ListChannels.
    ListChannels,
    /// `POST /images/:uuid?action=channel-add` (body `{"channel": NAME}`).
    ChannelAddImage(String),
    /// `POST /images/:uuid/acl[?action=add]`: AddImageAcl.
    AddImageAcl(String),
    /// `POST /images/:uuid/acl?action=remove`: RemoveImageAcl.
    RemoveImageAcl(String),
    /// `POST /images/:uuid/acl?action=` something else: refused once the
    /// image has been found and its owner checked, as IMGAPI does.
    UnknownAclAction { uuid: String, action: String },
    /// `POST /images/:uuid/clone?account=UUID`: CloneImage.
    CloneImage(String),
    /// `PUT /images/:uuid/icon` (and `POST`, as IMGAPI's docs have it):
    /// AddImageIcon.
    AddImageIcon(String),
    /// `GET /images/:uuid/icon` (and `HEAD`).
    GetImageIcon(String),
    /// `DELETE /images/:uuid/icon`.
    DeleteImageIcon(String),
    /// `GET /images/:uuid/jobs[?task=KIND]`: ListImageJobs, from the tasks.
    ListImageJobs(String),
    /// `POST /images/:uuid?action=import&source=URL`: AdminImportImage of
    /// the manifest another IMGAPI has.
    ImportImageFromSource { uuid: String, source: String },
    /// `PUT /images/:uuid/file?source=URL`: AddImageFile fetched from
    /// another IMGAPI's `/images/:uuid/file`.
    AddImageFileFromSource { uuid: String, source: String },
    /// `POST /images/:uuid/file/from-url`: AddImageFileFromUrl.
    AddImageFileFromUrl(String),
    /// `GET /datasets`: the legacy DSAPI list.
    ListDatasets,
    /// `GET /datasets/:uuid`: one legacy DSAPI manifest.
    GetDataset(String),
    /// `GET /datasets/:uuid/:path`: the file a DSAPI manifest's
    /// `files[0].url` names (any `path`: the image has one file).
    GetDatasetFile(String),
}

/// `?action=install`'s request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub uuid: String,
    /// The pool to install into; the configured default when absent.
    pub pool: Option<String>,
}

/// `?action=export`'s request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub uuid: String,
    /// The directory to write the manifest and file into.
    pub path: String,
}

/// `?action=import-remote`'s request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRemote {
    pub uuid: String,
    /// The source to import from; every source in order when absent.
    pub source: Option<String>,
    /// A pool to install into once imported.
    pub install: Option<String>,
}

const IMAGE_ACTIONS: &str =
    "import, import-remote, activate, enable, disable, update, install, export, channel-add";

/// Parses a request into its route.
///
/// `path` is the request's path as sent (errors name it), `segments` the
/// same path split and decoded (`api::segments`), `query` the decoded query
/// pairs.
///
/// # Errors
/// `ResourceNotFound` for a path no route has, `MethodNotAllowed` for a
/// method the path does not take, `InvalidParameter` for a missing or
/// unknown action or a bad action parameter.
pub fn parse(
    method: &Method,
    path: &str,
    segments: &[String],
    query: &[(String, String)],
) -> Result<Route> {
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let read = matches!(*method, Method::GET | Method::HEAD);
    let not_allowed = |allow: &'static str| Error::MethodNotAllowed {
        method: method.to_string(),
        path: path.to_string(),
        allow,
    };
    let id = |s: &str| s.to_string();
    let route = match (segs.as_slice(), method) {
        (["ping"], _) if read => Route::Ping,
        (["ping"], _) => return Err(not_allowed("GET, HEAD")),
        (["images"], _) if read => Route::ListImages,
        (["images"], &Method::POST) => images_action(query)?,
        (["images"], _) => return Err(not_allowed("GET, HEAD, POST")),
        (["images", u], _) if read => Route::GetImage(id(u)),
        (["images", u], &Method::POST) => image_action(u, query)?,
        (["images", u], &Method::PATCH) => Route::PatchImage(id(u)),
        (["images", u], &Method::DELETE) => Route::DeleteImage(id(u)),
        (["images", _], _) => return Err(not_allowed("GET, HEAD, POST, PATCH, DELETE")),
        (["images", u, "file"], _) if read => Route::GetImageFile(id(u)),
        (["images", u, "file"], &Method::PUT) => match param(query, "source")? {
            Some(source) => Route::AddImageFileFromSource {
                uuid: id(u),
                source: source.to_string(),
            },
            None => Route::PutImageFile(id(u)),
        },
        (["images", _, "file"], _) => return Err(not_allowed("GET, HEAD, PUT")),
        (["images", u, "acl"], &Method::POST) => match param(query, "action")? {
            None | Some("add") => Route::AddImageAcl(id(u)),
            Some("remove") => Route::RemoveImageAcl(id(u)),
            Some(other) => Route::UnknownAclAction {
                uuid: id(u),
                action: other.to_string(),
            },
        },
        (["images", _, "acl"], _) => return Err(not_allowed("POST")),
        (["images", u, "clone"], &Method::POST) => Route::CloneImage(id(u)),
        (["images", _, "clone"], _) => return Err(not_allowed("POST")),
        (["channels"], _) if read => Route::ListChannels,
        (["channels"], _) => return Err(not_allowed("GET, HEAD")),
        (["images", u, "file", "from-url"], &Method::POST) => Route::AddImageFileFromUrl(id(u)),
        (["images", _, "file", "from-url"], _) => return Err(not_allowed("POST")),
        (["images", u, "icon"], _) if read => Route::GetImageIcon(id(u)),
        (["images", u, "icon"], &Method::PUT | &Method::POST) => Route::AddImageIcon(id(u)),
        (["images", u, "icon"], &Method::DELETE) => Route::DeleteImageIcon(id(u)),
        (["images", _, "icon"], _) => return Err(not_allowed("GET, HEAD, PUT, POST, DELETE")),
        (["images", u, "jobs"], _) if read => Route::ListImageJobs(id(u)),
        (["images", _, "jobs"], _) => return Err(not_allowed("GET, HEAD")),
        (["datasets"], _) if read => Route::ListDatasets,
        (["datasets"], _) => return Err(not_allowed("GET, HEAD")),
        (["datasets", u], _) if read => Route::GetDataset(id(u)),
        (["datasets", _], _) => return Err(not_allowed("GET, HEAD")),
        (["datasets", u, _], _) if read => Route::GetDatasetFile(id(u)),
        (["datasets", _, _], _) => return Err(not_allowed("GET, HEAD")),
        (["tasks"], _) if read => Route::ListTasks,
        (["tasks"], _) => return Err(not_allowed("GET, HEAD")),
        (["tasks", t], _) if read => Route::GetTask(id(t)),
        (["tasks", t], &Method::DELETE) => Route::CancelTask(id(t)),
        (["tasks", _], _) => return Err(not_allowed("GET, HEAD, DELETE")),
        (["pools", p, "images"], _) if read => Route::PoolImages(id(p)),
        (["pools", _, "images"], _) => return Err(not_allowed("GET, HEAD")),
        (["pools", p, "images", u], _) if read => Route::PoolImage {
            pool: id(p),
            uuid: id(u),
        },
        (["pools", p, "images", u], &Method::DELETE) => Route::Uninstall {
            pool: id(p),
            uuid: id(u),
        },
        (["pools", _, "images", _], _) => return Err(not_allowed("GET, HEAD, DELETE")),
        (["packages"], _) if read => Route::ListPackages,
        (["packages"], &Method::POST) => match param(query, "action")? {
            None => Route::CreatePackage,
            Some("load") => Route::LoadPackages,
            Some(other) => Route::UnknownPackagesAction(other.to_string()),
        },
        (["packages"], _) => return Err(not_allowed("GET, HEAD, POST")),
        (["packages", x], _) if read => Route::GetPackage(id(x)),
        (["packages", x], &Method::PUT) => Route::ReplacePackage(id(x)),
        (["packages", x], &Method::DELETE) => Route::DeletePackage(id(x)),
        (["packages", _], _) => return Err(not_allowed("GET, HEAD, PUT, DELETE")),
        (["packages", x, "images"], _) if read => Route::PackageImages(id(x)),
        (["packages", _, "images"], _) => return Err(not_allowed("GET, HEAD")),
        (["sources"], _) if read => Route::ListSources,
        (["sources"], &Method::POST) => Route::AddSource,
        (["sources"], &Method::DELETE) => Route::RemoveSource,
        (["sources"], _) => return Err(not_allowed("GET, HEAD, POST, DELETE")),
        (["sources", "images"], _) if read => Route::AvailImages,
        (["sources", "images"], _) => return Err(not_allowed("GET, HEAD")),
        (["sources", "images", u], _) if read => Route::AvailImage(id(u)),
        (["sources", "images", _], _) => return Err(not_allowed("GET, HEAD")),
        (["state"], _) if read => Route::State,
        (["state"], &Method::POST) => match param(query, "action")? {
            Some("repair") => Route::Repair,
            other => {
                return Err(Error::param(
                    "action",
                    format!("{other:?}: POST /state takes action=repair"),
                ))
            }
        },
        (["state"], _) => return Err(not_allowed("GET, HEAD, POST")),
        (["vacuum"], &Method::POST) => Route::Vacuum,
        (["vacuum"], _) => return Err(not_allowed("POST")),
        _ => {
            return Err(Error::RouteNotFound {
                method: method.to_string(),
                path: path.to_string(),
            })
        }
    };
    Ok(route)
}

/// `POST /images[?action=...]`.
fn images_action(query: &[(String, String)]) -> Result<Route> {
    match param(query, "action")? {
        None => Ok(Route::CreateImage),
        Some("create-from-dataset") => Ok(Route::CreateFromDataset),
        Some("install-from-files") => Ok(Route::InstallFromFiles),
        Some(action @ ("create-from-vm" | "import-docker-image" | "import-lxd-image")) => {
            Err(not_on_one_node(action))
        }
        Some(action) => Err(Error::param(
            "action",
            format!("unknown action {action:?} on /images: expected create-from-dataset or install-from-files"),
        )),
    }
}

/// The IMGAPI actions that need what a single node does not have (Manta, a
/// datacenter's VMAPI and workflow, a Docker registry, other datacenters):
/// 400 `NotImplemented`, naming why and what to use instead.
fn not_on_one_node(action: &str) -> Error {
    let why = match action {
        "create-from-vm" => {
            "creating an image from a VM needs a datacenter (VMAPI, workflow); on a node use action=create-from-dataset"
        }
        "import-docker-image" | "import-lxd-image" => {
            "importing Docker and LXD images needs a registry service; import IMGAPI images with action=import-remote"
        }
        "export&manta_path" => {
            "exporting to Manta needs Manta storage; export to a local directory with action=export&path=DIR"
        }
        "change-stor" => "this store has one storage, the node's local blob store",
        _ => "importing from another datacenter needs a datacenter; import from an IMGAPI source with action=import-remote",
    };
    Error::NotImplemented(format!(
        "action {action:?} is not available on a single-node image store: {why}"
    ))
}

/// `POST /images/:uuid?action=...`.
fn image_action(uuid: &str, query: &[(String, String)]) -> Result<Route> {
    let action = param(query, "action")?.ok_or_else(|| {
        Error::missing_param("action", format!("missing: one of {IMAGE_ACTIONS}"))
    })?;
    let uuid = uuid.to_string();
    let owned =
        |key: &str| -> Result<Option<String>> { Ok(param(query, key)?.map(str::to_string)) };
    Ok(match action {
        "import" => match owned("source")? {
            Some(source) => Route::ImportImageFromSource { uuid, source },
            None => Route::ImportImage(uuid),
        },
        "export" if param(query, "manta_path")?.is_some() => {
            return Err(not_on_one_node("export&manta_path"))
        }
        action @ ("change-stor" | "import-from-datacenter") => return Err(not_on_one_node(action)),
        "activate" => Route::ActivateImage(uuid),
        "enable" => Route::EnableImage(uuid),
        "disable" => Route::DisableImage(uuid),
        "update" => Route::UpdateImage(uuid),
        "channel-add" => Route::ChannelAddImage(uuid),
        "install" => Route::InstallImage(Install {
            uuid,
            pool: owned("pool")?,
        }),
        "export" => Route::ExportImage(Export {
            uuid,
            path: owned("path")?
                .ok_or_else(|| Error::param("path", "missing: the directory to export into"))?,
        }),
        "import-remote" => {
            let source = owned("source")?;
            Route::ImportRemote(ImportRemote {
                uuid,
                source,
                install: owned("install")?,
            })
        }
        other => {
            return Err(Error::param(
                "action",
                format!("unknown action {other:?}: expected one of {IMAGE_ACTIONS}"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::segments;

    fn parsed(method: &Method, path: &str, query: &str) -> Result<Route> {
        let query: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        parse(method, path, &segments(path)?, &query)
    }

    /// What each (method, path, query) routes to.
    #[test]
    fn route_table() {
        let u = "00000000-0000-4000-8000-000000000001";
        let s = |x: &str| x.to_string();
        let img = format!("/images/{u}");
        let file = format!("{img}/file");
        let acl = format!("{img}/acl");
        let clone = format!("{img}/clone");
        let pool_img = format!("/pools/zones/images/{u}");
        let avail_one = format!("/sources/images/{u}");
        let icon = format!("{img}/icon");
        let jobs = format!("{img}/jobs");
        let from_url = format!("{file}/from-url");
        let dataset = format!("/datasets/{u}");
        let dataset_file = format!("{dataset}/x.zfs.gz");
        let table: Vec<(Method, &str, &str, Route)> = vec![
            (Method::GET, "/ping", "", Route::Ping),
            (Method::HEAD, "/ping", "", Route::Ping),
            (Method::GET, "/images", "", Route::ListImages),
            (Method::GET, "/images", "action=x", Route::ListImages),
            (Method::HEAD, "/images/", "", Route::ListImages),
            (Method::POST, "/images", "", Route::CreateImage),
            (
                Method::POST,
                "/images",
                "action=create-from-dataset",
                Route::CreateFromDataset,
            ),
            (
                Method::POST,
                "/images",
                "action=install-from-files",
                Route::InstallFromFiles,
            ),
            (Method::GET, &img, "", Route::GetImage(s(u))),
            (
                Method::POST,
                &img,
                "action=import",
                Route::ImportImage(s(u)),
            ),
            (
                Method::POST,
                &img,
                "action=activate",
                Route::ActivateImage(s(u)),
            ),
            (
                Method::POST,
                &img,
                "action=enable",
                Route::EnableImage(s(u)),
            ),
            (
                Method::POST,
                &img,
                "action=disable",
                Route::DisableImage(s(u)),
            ),
            (
                Method::POST,
                &img,
                "action=update",
                Route::UpdateImage(s(u)),
            ),
            (
                Method::POST,
                &img,
                "action=install",
                Route::InstallImage(Install {
                    uuid: s(u),
                    pool: None,
                }),
            ),
            (
                Method::POST,
                &img,
                "action=install&pool=zones",
                Route::InstallImage(Install {
                    uuid: s(u),
                    pool: Some(s("zones")),
                }),
            ),
            (
                Method::POST,
                &img,
                "action=export&path=/var/tmp/x",
                Route::ExportImage(Export {
                    uuid: s(u),
                    path: s("/var/tmp/x"),
                }),
            ),
            (
                Method::POST,
                &img,
                "action=import-remote",
                Route::ImportRemote(ImportRemote {
                    uuid: s(u),
                    source: None,
                    install: None,
                }),
            ),
            (
                Method::POST,
                &img,
                "action=import-remote&source=https://s&install=zones",
                Route::ImportRemote(ImportRemote {
                    uuid: s(u),
                    source: Some(s("https://s")),
                    install: Some(s("zones")),
                }),
            ),
            (Method::PATCH, &img, "", Route::PatchImage(s(u))),
            (
                Method::POST,
                &img,
                "action=channel-add",
                Route::ChannelAddImage(s(u)),
            ),
            (Method::POST, &acl, "", Route::AddImageAcl(s(u))),
            (Method::POST, &acl, "action=add", Route::AddImageAcl(s(u))),
            (
                Method::POST,
                &acl,
                "action=remove",
                Route::RemoveImageAcl(s(u)),
            ),
            (
                Method::POST,
                &acl,
                "action=grant",
                Route::UnknownAclAction {
                    uuid: s(u),
                    action: s("grant"),
                },
            ),
            (Method::POST, &clone, "account=x", Route::CloneImage(s(u))),
            (Method::GET, "/channels", "", Route::ListChannels),
            (Method::HEAD, "/channels", "", Route::ListChannels),
            (Method::DELETE, &img, "", Route::DeleteImage(s(u))),
            (Method::GET, &file, "", Route::GetImageFile(s(u))),
            (Method::HEAD, &file, "", Route::GetImageFile(s(u))),
            (
                Method::PUT,
                &file,
                "compression=gzip",
                Route::PutImageFile(s(u)),
            ),
            (Method::GET, "/tasks", "", Route::ListTasks),
            (Method::GET, "/tasks/t1", "wait=5", Route::GetTask(s("t1"))),
            (Method::DELETE, "/tasks/t1", "", Route::CancelTask(s("t1"))),
            (
                Method::GET,
                "/pools/zones/images",
                "",
                Route::PoolImages(s("zones")),
            ),
            (
                Method::GET,
                &pool_img,
                "",
                Route::PoolImage {
                    pool: s("zones"),
                    uuid: s(u),
                },
            ),
            (
                Method::DELETE,
                &pool_img,
                "",
                Route::Uninstall {
                    pool: s("zones"),
                    uuid: s(u),
                },
            ),
            (Method::GET, "/packages", "name=x", Route::ListPackages),
            (Method::POST, "/packages", "", Route::CreatePackage),
            (
                Method::POST,
                "/packages",
                "action=load",
                Route::LoadPackages,
            ),
            (
                Method::POST,
                "/packages",
                "action=x",
                Route::UnknownPackagesAction(s("x")),
            ),
            (Method::GET, "/packages/p1", "", Route::GetPackage(s("p1"))),
            (
                Method::PUT,
                "/packages/p1",
                "",
                Route::ReplacePackage(s("p1")),
            ),
            (
                Method::DELETE,
                "/packages/p1",
                "",
                Route::DeletePackage(s("p1")),
            ),
            (
                Method::GET,
                "/packages/p%201/images",
                "",
                Route::PackageImages(s("p 1")),
            ),
            (Method::GET, "/sources", "", Route::ListSources),
            (Method::POST, "/sources", "", Route::AddSource),
            (Method::DELETE, "/sources", "url=x", Route::RemoveSource),
            (Method::GET, "/sources/images", "", Route::AvailImages),
            (Method::GET, &avail_one, "", Route::AvailImage(s(u))),
            (Method::GET, "/state", "verify=true", Route::State),
            (Method::POST, "/state", "action=repair", Route::Repair),
            (Method::POST, "/vacuum", "dry_run=true", Route::Vacuum),
            (Method::PUT, &icon, "sha1=x", Route::AddImageIcon(s(u))),
            (Method::POST, &icon, "", Route::AddImageIcon(s(u))),
            (Method::GET, &icon, "", Route::GetImageIcon(s(u))),
            (Method::HEAD, &icon, "", Route::GetImageIcon(s(u))),
            (Method::DELETE, &icon, "", Route::DeleteImageIcon(s(u))),
            (Method::GET, &jobs, "task=x", Route::ListImageJobs(s(u))),
            (
                Method::POST,
                &img,
                "action=import&source=http://h",
                Route::ImportImageFromSource {
                    uuid: s(u),
                    source: s("http://h"),
                },
            ),
            (
                Method::PUT,
                &file,
                "source=http://h",
                Route::AddImageFileFromSource {
                    uuid: s(u),
                    source: s("http://h"),
                },
            ),
            (
                Method::POST,
                &from_url,
                "compression=gzip",
                Route::AddImageFileFromUrl(s(u)),
            ),
            (Method::GET, "/datasets", "", Route::ListDatasets),
            (Method::GET, &dataset, "", Route::GetDataset(s(u))),
            (Method::GET, &dataset_file, "", Route::GetDatasetFile(s(u))),
        ];
        for (m, p, q, want) in table {
            assert_eq!(parsed(&m, p, q).unwrap(), want, "{m} {p}?{q}");
        }
    }

    /// A refused request (method, path, query) and what it answers: code,
    /// status and, for 405, the `Allow` list.
    type Refusal<'a> = (Method, &'a str, &'a str, &'a str, u16, Option<&'a str>);

    /// What each refused request answers.
    #[test]
    fn refusals() {
        let img = "/images/00000000-0000-4000-8000-000000000001";
        let file = format!("{img}/file");
        let file_x = format!("{file}/x");
        let icon = format!("{img}/icon");
        let jobs = format!("{img}/jobs");
        let from_url = format!("{file}/from-url");
        let table: Vec<Refusal> = vec![
            (Method::GET, "/", "", "ResourceNotFound", 404, None),
            (Method::GET, "/nope", "", "ResourceNotFound", 404, None),
            (Method::GET, &file_x, "", "ResourceNotFound", 404, None),
            (
                Method::GET,
                "/sources/other",
                "",
                "ResourceNotFound",
                404,
                None,
            ),
            (
                Method::POST,
                "/ping",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD"),
            ),
            (
                Method::PUT,
                "/images",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD, POST"),
            ),
            (
                Method::PUT,
                img,
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD, POST, PATCH, DELETE"),
            ),
            (
                Method::POST,
                &file,
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD, PUT"),
            ),
            (
                Method::POST,
                "/tasks",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD"),
            ),
            (
                Method::GET,
                "/images/u/acl",
                "",
                "MethodNotAllowed",
                405,
                Some("POST"),
            ),
            (
                Method::GET,
                "/images/u/clone",
                "",
                "MethodNotAllowed",
                405,
                Some("POST"),
            ),
            (
                Method::POST,
                "/channels",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD"),
            ),
            (
                Method::PUT,
                "/tasks/t",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD, DELETE"),
            ),
            (
                Method::POST,
                "/pools/z/images",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD"),
            ),
            (
                Method::POST,
                "/pools/z/images/u",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD, DELETE"),
            ),
            (
                Method::PUT,
                "/packages",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD, POST"),
            ),
            (
                Method::POST,
                "/packages/p",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD, PUT, DELETE"),
            ),
            (
                Method::PUT,
                "/packages/p/images",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD"),
            ),
            (
                Method::PUT,
                "/sources",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD, POST, DELETE"),
            ),
            (
                Method::POST,
                "/sources/images",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD"),
            ),
            (
                Method::POST,
                "/sources/images/u",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD"),
            ),
            (
                Method::PUT,
                "/state",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD, POST"),
            ),
            (
                Method::GET,
                "/vacuum",
                "",
                "MethodNotAllowed",
                405,
                Some("POST"),
            ),
            // The method is checked before the action.
            (
                Method::PUT,
                "/images",
                "action=bad",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD, POST"),
            ),
            (
                Method::POST,
                "/images",
                "action=bad",
                "InvalidParameter",
                422,
                None,
            ),
            (
                Method::POST,
                "/images",
                "action=a&action=b",
                "InvalidParameter",
                422,
                None,
            ),
            (Method::POST, img, "", "InvalidParameter", 422, None),
            (
                Method::POST,
                img,
                "action=bad",
                "InvalidParameter",
                422,
                None,
            ),
            (
                Method::POST,
                img,
                "action=export",
                "InvalidParameter",
                422,
                None,
            ),
            (
                Method::POST,
                img,
                "action=install&pool=a&pool=b",
                "InvalidParameter",
                422,
                None,
            ),
            (
                Method::POST,
                "/packages",
                "action=a&action=b",
                "InvalidParameter",
                422,
                None,
            ),
            (Method::POST, "/state", "", "InvalidParameter", 422, None),
            // Not on one node: IMGAPI's NotImplemented, before the image is
            // looked up.
            (
                Method::POST,
                "/images",
                "action=create-from-vm",
                "NotImplemented",
                400,
                None,
            ),
            (
                Method::POST,
                "/images",
                "action=import-docker-image",
                "NotImplemented",
                400,
                None,
            ),
            (
                Method::POST,
                "/images",
                "action=import-lxd-image",
                "NotImplemented",
                400,
                None,
            ),
            (
                Method::POST,
                img,
                "action=export&manta_path=/a/stor/x",
                "NotImplemented",
                400,
                None,
            ),
            (
                Method::POST,
                img,
                "action=change-stor&stor=manta",
                "NotImplemented",
                400,
                None,
            ),
            (
                Method::POST,
                img,
                "action=import-from-datacenter",
                "NotImplemented",
                400,
                None,
            ),
            (
                Method::PATCH,
                &icon,
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD, PUT, POST, DELETE"),
            ),
            (
                Method::POST,
                &jobs,
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD"),
            ),
            (
                Method::GET,
                &from_url,
                "",
                "MethodNotAllowed",
                405,
                Some("POST"),
            ),
            (
                Method::POST,
                "/datasets",
                "",
                "MethodNotAllowed",
                405,
                Some("GET, HEAD"),
            ),
            (
                Method::POST,
                "/state",
                "action=check",
                "InvalidParameter",
                422,
                None,
            ),
        ];
        for (m, p, q, code, status, allow) in table {
            let e = parsed(&m, p, q).unwrap_err();
            assert_eq!(e.code(), code, "{m} {p}?{q}");
            assert_eq!(
                crate::api::error::status(&e).as_u16(),
                status,
                "{m} {p}?{q}"
            );
            let resp = crate::api::error::response(&e);
            let got = resp.headers().get("allow").map(|v| v.to_str().unwrap());
            assert_eq!(got, allow, "{m} {p}?{q}");
        }
    }

    /// A missing action is IMGAPI's `InvalidParameter` whose error says
    /// `MissingParameter`; an unknown one says `Invalid`.
    #[test]
    fn action_error_codes() {
        let code = |q: &str| {
            parsed(&Method::POST, "/images/u", q).unwrap_err().body()["errors"][0]["code"].clone()
        };
        assert_eq!(code(""), "MissingParameter");
        assert_eq!(code("action=x"), "Invalid");
    }

    /// The messages of the action errors, as clients have seen them.
    #[test]
    fn action_messages() {
        let img = "/images/u";
        let msg = |q: &str| parsed(&Method::POST, img, q).unwrap_err().to_string();
        assert_eq!(
            msg(""),
            "invalid parameter action: missing: one of import, import-remote, activate, enable, disable, update, install, export, channel-add"
        );
        assert_eq!(
            msg("action=x"),
            "invalid parameter action: unknown action \"x\": expected one of import, import-remote, activate, enable, disable, update, install, export, channel-add"
        );
        let e = parsed(&Method::POST, "/state", "").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid parameter action: None: POST /state takes action=repair"
        );
        let e = parsed(&Method::POST, "/state", "action=x")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "invalid parameter action: Some(\"x\"): POST /state takes action=repair"
        );
    }
}
