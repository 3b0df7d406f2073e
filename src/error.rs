//! The daemon's error type: one enum, a stable code for each variant, and
//! the IMGAPI error body `{code, message, errors?}`. The HTTP status of each
//! variant is the API layer's choice (`api/error.rs`); nothing here knows
//! HTTP.
//!
//! Codes are API. They use IMGAPI's names wherever IMGAPI has the condition
//! (imgapi.md section 4) so existing clients understand them, and new names
//! only for new conditions. Never rename one; the table test in
//! `api/error.rs` pins code and status together.
//!
//! Lower modules have their own errors ([`SourceError`], [`MetaError`],
//! [`CasError`], [`ZfsError`](crate::zfs::ZfsError), [`CodecError`], ...)
//! and never name this one. They are folded in here: a condition the client
//! caused (a bad parameter, a conflict) becomes the flat variant with its
//! code; a failure with a cause below it (I/O, sled, a remote) is kept
//! whole (`Source`, `Zfs`; `Cas` and `Meta` with the caller's context), so
//! `source()` still reaches the cause, and answers with the code, status
//! and message of the flat variant it stands for.
//!
//! [`StartError`] is what stops the daemon (or an offline verb) from
//! starting: printed to the operator, never sent to a client.

use crate::codec::CodecError;
use crate::config::ConfigError;
use crate::manifest::FieldError;
use crate::sources::client::FetchError;
use crate::sources::SourceError;
use crate::store::cas::CasError;
use crate::store::layout::LockError;
use crate::store::meta::MetaError;
use serde_json::json;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("route {method} {path} does not exist")]
    RouteNotFound { method: String, path: String },
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allow: &'static str,
    },
    #[error("{0}")]
    Validation(String, Vec<FieldError>),
    #[error("{0}")]
    InvalidParameter(String, Vec<FieldError>),
    /// A request body that is not the JSON it must be.
    #[error("{0}")]
    MalformedBody(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("image {0} already exists")]
    ImageUuidAlreadyExists(String),
    #[error("image {0} is not unactivated: its file cannot be changed")]
    ImageFilesImmutable(String),
    #[error("image {0} is already activated")]
    ImageAlreadyActivated(String),
    #[error("image {0} has no file: add one before activating")]
    NoActivationNoFile(String),
    #[error("image {uuid} is the origin of {dependents:?}: delete those first")]
    ImageHasDependentImages {
        uuid: String,
        dependents: Vec<String>,
    },
    #[error("origin image {0} does not exist")]
    OriginDoesNotExist(String),
    /// `?account=` names an account that does not own the image it would
    /// change (sdc-imgapi `NotImageOwnerError`).
    #[error("account {account} is not the owner of image {uuid}")]
    NotImageOwner { account: String, uuid: String },
    /// CloneImage by an account not in the image's `acl` (sdc-imgapi
    /// `ImageNotSharedError`).
    #[error("image {uuid} is not shared with account {account}")]
    ImageNotShared { account: String, uuid: String },
    /// A package with that id, or that name and version, is already stored.
    #[error("{0}")]
    PackageExists(String),
    /// A JSON Patch `test` operation did not match (RFC 5789 "conflicting state").
    #[error("{0}")]
    PatchTestFailed(String),
    /// A JSON Patch operation's target does not exist in the resource.
    #[error("{0}")]
    PatchConflict(String),
    /// A file upload that did not arrive whole or did not match what was promised.
    #[error("{0}")]
    Upload(String, Vec<FieldError>),
    /// An uploaded file that is empty, or whose size or SHA-1 is not what
    /// the request said: IMGAPI's `Download` (AddImageFile, lib/images.js).
    #[error("{0}")]
    FileMismatch(String, Vec<FieldError>),
    /// An `If-Match` (or `If-None-Match`, `If-Unmodified-Since`) that the
    /// resource does not meet: restify's `PreconditionFailed`.
    #[error("{0}")]
    PreconditionFailed(String),
    /// IMGAPI's storage backend is down (its `StorageIsDown`; here only
    /// the sample `GET /ping?error=StorageIsDown` answers it).
    #[error("storage is down at the moment")]
    StorageIsDown,
    /// IMGAPI's `StorageUnsupported` (the `GET /ping?error=` sample only).
    #[error("storage type is unsupported")]
    StorageUnsupported,
    /// An `Accept-Version` no API version of this server satisfies
    /// (restify's `InvalidVersion`).
    #[error("{0}")]
    InvalidVersion(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    RangeNotSatisfiable(String, u64),
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("{0}")]
    Forbidden(String),
    /// A peer that may only read (see `access.rs`) tried to change something.
    #[error("{0}")]
    OperatorOnly(String),
    /// A request body that did not arrive in time (stalled, or trickling).
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    HeadersTooLarge(String),
    /// A request that is not HTTP/1.1 hyper can parse (see `conn.rs`).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UriTooLong(String),
    /// `limits.max_tasks` background tasks are already running.
    #[error("{0}")]
    TooManyTasks(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    #[error("{0}")]
    Cancelled(String),
    #[error("image {uuid} is not installed in pool {pool}")]
    ImageNotInstalled { uuid: String, pool: String },
    #[error("{0}")]
    ChecksumMismatch(String),
    #[error("{0}")]
    UnexpectedNumberOfSnapshots(String),
    #[error("{0}")]
    DatasetHasNoOrigin(String),
    #[error("{0}")]
    UncompressionError(String),
    /// An installed filesystem could not be mounted (the install was
    /// undone); the message names the dataset, the source is zfs's answer.
    #[error("{message}")]
    MountFailed {
        message: String,
        #[source]
        source: crate::zfs::ZfsError,
    },
    #[error("{0}")]
    NotSupported(String),
    /// A file fetched for the image (AddImageFile `?source=`,
    /// AddImageFileFromUrl) is not what was announced: IMGAPI's 400
    /// `Download`.
    #[error("{0}")]
    Download(String),
    /// An IMGAPI feature a single node cannot offer (Manta, VMAPI, Docker
    /// registries, other datacenters); IMGAPI's own 400 `NotImplemented`.
    #[error("{0}")]
    NotImplemented(String),
    /// No source offers the image (imgadm's ImageNotFound).
    #[error("{0}")]
    ImageNotFound(String),
    /// The source that has an image lacks one of its origins.
    #[error("{0}")]
    OriginNotFoundInSource(String),
    /// A remote answered a download with a permanent error status, or with
    /// something that is not what was asked for. The message names the URL.
    #[error("{0}")]
    DownloadError(String),
    /// A remote source could not be reached or kept failing (IMGAPI's code).
    #[error("{0}")]
    RemoteSourceError(String),
    /// A remote source's TLS certificate was not trusted.
    #[error("{0}")]
    TlsError(String),
    #[error(transparent)]
    Zfs(#[from] crate::zfs::ZfsError),
    /// A remote source, or the stored source list, failed (see
    /// `source_answer` for the code).
    #[error(transparent)]
    Source(SourceError),
    /// The blob store failed while doing `context` (see [`Error::cas`]).
    #[error("{}", cas_answer(.context, .source))]
    Cas {
        context: String,
        #[source]
        source: CasError,
    },
    /// The image store's database or records failed while doing
    /// `context` (see [`Error::meta`]): `InternalError`.
    #[error("{context}: {source}")]
    Meta {
        context: String,
        #[source]
        source: MetaError,
    },
}

impl Error {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::ResourceNotFound(_) | Error::RouteNotFound { .. } => "ResourceNotFound",
            Error::MethodNotAllowed { .. } => "MethodNotAllowed",
            Error::Validation(..) => "ValidationFailed",
            Error::InvalidParameter(..) => "InvalidParameter",
            Error::MalformedBody(_) => "InvalidContent",
            Error::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Error::ImageUuidAlreadyExists(_) => "ImageUuidAlreadyExists",
            Error::ImageFilesImmutable(_) => "ImageFilesImmutable",
            Error::ImageAlreadyActivated(_) => "ImageAlreadyActivated",
            Error::NoActivationNoFile(_) => "NoActivationNoFile",
            Error::ImageHasDependentImages { .. } => "ImageHasDependentImages",
            Error::OriginDoesNotExist(_) => "OriginDoesNotExist",
            Error::NotImageOwner { .. } => "NotImageOwner",
            Error::ImageNotShared { .. } => "ImageNotShared",
            Error::PackageExists(_) => "PackageExists",
            Error::PatchTestFailed(_) => "PatchTestFailed",
            Error::PatchConflict(_) => "PatchConflict",
            Error::Upload(..) => "Upload",
            Error::FileMismatch(..) => "Download",
            Error::PreconditionFailed(_) => "PreconditionFailed",
            Error::InvalidVersion(_) => "InvalidVersion",
            Error::StorageIsDown => "StorageIsDown",
            Error::StorageUnsupported => "StorageUnsupported",
            Error::PayloadTooLarge(_) => "PayloadTooLarge",
            Error::RangeNotSatisfiable(..) => "RequestedRangeNotSatisfiable",
            Error::InsufficientStorage(_) => "InsufficientStorage",
            Error::Forbidden(_) => "Forbidden",
            Error::OperatorOnly(_) => "OperatorOnly",
            Error::RequestTimeout(_) => "RequestTimeout",
            Error::HeadersTooLarge(_) => "RequestHeaderFieldsTooLarge",
            Error::BadRequest(_) => "BadRequest",
            Error::UriTooLong(_) => "UriTooLong",
            Error::TooManyTasks(_) => "TooManyTasks",
            Error::Conflict(_) => "Conflict",
            Error::Unavailable(_) => "ServiceUnavailable",
            Error::Internal(_) => "InternalError",
            Error::Cancelled(_) => "Cancelled",
            Error::ImageNotInstalled { .. } => "ImageNotInstalled",
            Error::ChecksumMismatch(_) => "ChecksumMismatch",
            Error::UnexpectedNumberOfSnapshots(_) => "UnexpectedNumberOfSnapshots",
            Error::DatasetHasNoOrigin(_) => "DatasetHasNoOrigin",
            Error::UncompressionError(_) => "UncompressionError",
            Error::MountFailed { .. } => "MountFailed",
            Error::NotSupported(_) => "NotSupported",
            Error::NotImplemented(_) => "NotImplemented",
            Error::Download(_) => "Download",
            Error::ImageNotFound(_) => "ImageNotFound",
            Error::OriginNotFoundInSource(_) => "OriginNotFoundInSource",
            Error::DownloadError(_) => "DownloadError",
            Error::RemoteSourceError(_) => "RemoteSourceError",
            Error::TlsError(_) => "TlsError",
            Error::Zfs(e) => e.code(),
            Error::Source(e) => source_answer(e).code(),
            Error::Cas { context, source } => cas_answer(context, source).code(),
            Error::Meta { .. } => "InternalError",
        }
    }

    /// The IMGAPI error body.
    pub fn body(&self) -> serde_json::Value {
        let mut v = json!({"code": self.code(), "message": self.to_string()});
        let errors = match self {
            Error::Validation(_, e)
            | Error::InvalidParameter(_, e)
            | Error::Upload(_, e)
            | Error::FileMismatch(_, e) => e,
            _ => return v,
        };
        if !errors.is_empty() {
            v["errors"] = serde_json::to_value(errors).unwrap_or_default();
        }
        v
    }

    /// A `ValidationFailed` listing every field problem.
    pub fn validation(errors: Vec<FieldError>) -> Error {
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        Error::Validation(
            format!("invalid manifest: problems with {}", fields.join(", ")),
            errors,
        )
    }

    /// An `InvalidParameter` naming one parameter.
    pub fn param(field: &str, message: impl Into<String>) -> Error {
        let message = message.into();
        Error::InvalidParameter(
            format!("invalid parameter {field}: {message}"),
            vec![FieldError {
                field: field.into(),
                code: "Invalid".into(),
                message,
            }],
        )
    }

    /// An `InvalidParameter` for a parameter that is required and absent:
    /// its `errors[].code` is IMGAPI's `MissingParameter`.
    pub fn missing_param(field: &str, message: impl Into<String>) -> Error {
        let message = message.into();
        Error::InvalidParameter(
            format!("invalid parameter {field}: {message}"),
            vec![FieldError {
                field: field.into(),
                code: "MissingParameter".into(),
                message,
            }],
        )
    }

    /// An `InternalError` from anything displayable, with context.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> Error {
        Error::Internal(format!("{context}: {e}"))
    }

    /// Maps an I/O error, turning a full disk into a 507.
    pub fn io(context: &str, e: std::io::Error) -> Error {
        io_answer(context, &e)
    }

    /// A database or records failure while doing `context`, kept whole.
    pub fn meta(context: impl Into<String>, source: MetaError) -> Error {
        Error::Meta {
            context: context.into(),
            source,
        }
    }

    /// A blob store failure while doing `context`, kept whole: it answers
    /// as [`Error::io`] would (a full disk is a 507).
    pub fn cas(context: impl Into<String>, source: CasError) -> Error {
        Error::Cas {
            context: context.into(),
            source,
        }
    }
}

/// An unknown compression is the client's parameter; a codec that cannot
/// start is ours.
impl From<CodecError> for Error {
    fn from(e: CodecError) -> Error {
        match e {
            CodecError::Unknown(name) => {
                Error::param("compression", format!("unknown compression {name:?}"))
            }
            CodecError::Start(context, e) => Error::internal(context, e),
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Error {
        Error::internal("database", e)
    }
}

fn io_answer(context: &str, e: &std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
        Error::InsufficientStorage(format!("{context}: no space left on device"))
    } else {
        Error::internal(context, e)
    }
}

/// The flat variant a blob store error answers as.
pub(crate) fn cas_answer(context: &str, e: &CasError) -> Error {
    match e {
        CasError::Io(io) => io_answer(context, io),
        CasError::NotADigest(_) => Error::internal(context, e),
    }
}

/// The flat variant a source error answers as: its code, status and
/// message. A fetch answers by what went wrong (a permanent answer from
/// the remote is a `DownloadError`, an unreachable one a
/// `RemoteSourceError`, ...).
pub(crate) fn source_answer(e: &SourceError) -> Error {
    let msg = e.to_string();
    match e {
        SourceError::Spec { field, source } => Error::param(field, source.to_string()),
        SourceError::AlreadyListed { .. } => Error::Conflict(msg),
        SourceError::NotListed { .. } => Error::ResourceNotFound(msg),
        SourceError::Fetch { source, .. } => match source {
            FetchError::NotFound { .. }
            | FetchError::Status { .. }
            | FetchError::Invalid { .. }
            | FetchError::Local { .. } => Error::DownloadError(msg),
            FetchError::Network { .. } => Error::RemoteSourceError(msg),
            FetchError::Tls { .. } => Error::TlsError(msg),
            FetchError::Mismatch { .. } => Error::ChecksumMismatch(msg),
            FetchError::Stopped => Error::Cancelled(msg),
        },
        SourceError::Store(_)
        | SourceError::Load(_)
        | SourceError::Encode(_)
        | SourceError::Unreadable(_) => Error::Internal(msg),
    }
}

/// The code a source error answers with, for reports that list several
/// (`GET /sources/images`).
pub fn source_code(e: &SourceError) -> &'static str {
    source_answer(e).code()
}

/// A client's mistake (a bad spec, a conflict) becomes its flat variant,
/// field errors included; a failure with a cause is kept whole.
impl From<SourceError> for Error {
    fn from(e: SourceError) -> Error {
        match e {
            SourceError::Spec { .. }
            | SourceError::AlreadyListed { .. }
            | SourceError::NotListed { .. } => source_answer(&e),
            e => Error::Source(e),
        }
    }
}

/// Why the daemon, or an offline verb on its data dir, could not start.
/// Printed to the operator (`imgstore: {e}`); the messages name the file,
/// path or lock involved.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The data dir is locked by a running daemon and the verb works only
    /// on a stopped one.
    #[error("{source}: `imgstore {verb}` works on a stopped daemon's data dir; while the daemon runs use its API instead: {api}")]
    Running {
        #[source]
        source: LockError,
        verb: String,
        api: String,
    },
    /// A step that failed (I/O, a system call, sled): what was being
    /// done, and the cause in its own words.
    #[error("{context}: {source}")]
    Step {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A blocking step that panicked.
    #[error(transparent)]
    Join(#[from] tokio::task::JoinError),
    /// A step that failed in the service (opening the task list,
    /// repairing, flushing).
    #[error(transparent)]
    Service(#[from] Error),
    /// A refusal that has no cause below it (not a data dir, no such user).
    #[error("{0}")]
    Refused(String),
}

impl StartError {
    /// A failure of the step `context` (for `map_err`).
    pub fn during<E>(context: impl Into<String>) -> impl FnOnce(E) -> StartError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let context = context.into();
        move |source| StartError::Step {
            context,
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::status;

    /// What a source error answers with: the codes and statuses of the
    /// flat variants it stands for (pinned above), and the same message.
    #[test]
    fn source_errors_answer_as_before() {
        use crate::config::SourceConfig;
        let url = |u: &str| u.to_string();
        let st = |status| FetchError::Status {
            url: url("u"),
            status,
            attempts: 1,
        };
        let fetch = |e: FetchError| Error::from(e.into_error("f"));
        let cases: Vec<(Error, &str, u16)> = vec![
            (
                fetch(FetchError::NotFound { url: url("u") }),
                "DownloadError",
                502,
            ),
            (fetch(st(403)), "DownloadError", 502),
            (
                fetch(FetchError::Network {
                    url: url("u"),
                    detail: url("reset"),
                    attempts: 1,
                }),
                "RemoteSourceError",
                503,
            ),
            (
                fetch(FetchError::Tls {
                    url: url("u"),
                    detail: url("d"),
                }),
                "TlsError",
                502,
            ),
            (
                fetch(FetchError::Mismatch {
                    url: url("u"),
                    detail: url("d"),
                }),
                "ChecksumMismatch",
                422,
            ),
            (fetch(FetchError::Stopped), "Cancelled", 409),
            (
                SourceError::AlreadyListed { url: url("u") }.into(),
                "Conflict",
                409,
            ),
            (
                SourceError::NotListed { url: url("u") }.into(),
                "ResourceNotFound",
                404,
            ),
        ];
        for (e, code, want) in cases {
            assert_eq!(e.code(), code, "{e:?}");
            assert_eq!(status(&e).as_u16(), want, "{e:?}");
        }
        let e = fetch(st(403));
        assert_eq!(e.to_string(), "fetching f: GET u: HTTP 403 Forbidden");
        assert!(
            std::error::Error::source(&e).is_some(),
            "the fetch error is kept"
        );
        let e = fetch(FetchError::Stopped);
        assert_eq!(e.to_string(), "fetching f was stopped");
        let spec = SourceConfig {
            url: url("ftp://x"),
            kind: crate::config::SourceKind::Imgapi,
            insecure: false,
        };
        let e: Error = SourceError::Spec {
            field: "url",
            source: spec.target().unwrap_err(),
        }
        .into();
        assert_eq!(e.code(), "InvalidParameter");
        assert_eq!(e.body()["errors"][0]["field"], "url");
    }

    /// A database error is an `InternalError` that keeps its cause.
    #[test]
    fn meta_errors_are_internal_and_keep_their_cause() {
        let e = Error::meta(
            "rebuilding the sled index",
            MetaError::Panicked("boom".into()),
        );
        assert_eq!((e.code(), status(&e).as_u16()), ("InternalError", 500));
        assert_eq!(
            e.to_string(),
            Error::internal("rebuilding the sled index", "sled panicked: boom").to_string()
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    /// A blob store error answers as the I/O error would, and keeps it.
    #[test]
    fn cas_errors_answer_as_io_errors() {
        let full = || std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = Error::cas("storing x", CasError::Io(full()));
        assert_eq!(
            (e.code(), status(&e).as_u16()),
            ("InsufficientStorage", 507)
        );
        assert_eq!(e.to_string(), Error::io("storing x", full()).to_string());
        assert!(std::error::Error::source(&e).is_some());
        let denied = || std::io::Error::from_raw_os_error(libc::EACCES);
        let e = Error::cas("storing x", CasError::Io(denied()));
        assert_eq!((e.code(), status(&e).as_u16()), ("InternalError", 500));
        assert_eq!(e.to_string(), Error::io("storing x", denied()).to_string());
        let e = Error::cas("image u", CasError::NotADigest("x".into()));
        assert_eq!(e.code(), "InternalError");
        assert_eq!(e.to_string(), "image u: not a sha256 hex digest: \"x\"");
    }

    #[test]
    fn body_lists_field_errors() {
        let e = Error::param("limit", "must be an integer from 1 to 1000");
        let b = e.body();
        assert_eq!(b["code"], "InvalidParameter");
        assert_eq!(b["errors"][0]["field"], "limit");
    }
}
