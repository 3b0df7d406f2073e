//! The daemon's error type: one enum, a stable code for each variant, and
//! the IMGAPI error body `{code, message, errors?}`. The HTTP status of each
//! variant is the API layer's choice (`api/error.rs`); nothing here knows
//! HTTP.
//!
//! Codes are API. They use IMGAPI's names wherever IMGAPI has the condition
//! (imgapi.md section 4) so existing clients understand them, and new names
//! only for new conditions. Never rename one; the table test in
//! `api/error.rs` pins code and status together.

use crate::codec::CodecError;
use crate::manifest::FieldError;
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
    #[error("{0}")]
    NotSupported(String),
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
}

impl Error {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::ResourceNotFound(_) | Error::RouteNotFound { .. } => "ResourceNotFound",
            Error::MethodNotAllowed { .. } => "MethodNotAllowed",
            Error::Validation(..) => "ValidationFailed",
            Error::InvalidParameter(..) | Error::MalformedBody(_) => "InvalidParameter",
            Error::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Error::ImageUuidAlreadyExists(_) => "ImageUuidAlreadyExists",
            Error::ImageFilesImmutable(_) => "ImageFilesImmutable",
            Error::ImageAlreadyActivated(_) => "ImageAlreadyActivated",
            Error::NoActivationNoFile(_) => "NoActivationNoFile",
            Error::ImageHasDependentImages { .. } => "ImageHasDependentImages",
            Error::OriginDoesNotExist(_) => "OriginDoesNotExist",
            Error::PackageExists(_) => "PackageExists",
            Error::PatchTestFailed(_) => "PatchTestFailed",
            Error::PatchConflict(_) => "PatchConflict",
            Error::Upload(..) => "Upload",
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
            Error::NotSupported(_) => "NotSupported",
            Error::ImageNotFound(_) => "ImageNotFound",
            Error::OriginNotFoundInSource(_) => "OriginNotFoundInSource",
            Error::DownloadError(_) => "DownloadError",
            Error::RemoteSourceError(_) => "RemoteSourceError",
            Error::TlsError(_) => "TlsError",
            Error::Zfs(e) => e.code(),
        }
    }

    /// The IMGAPI error body.
    pub fn body(&self) -> serde_json::Value {
        let mut v = json!({"code": self.code(), "message": self.to_string()});
        let errors = match self {
            Error::Validation(_, e) | Error::InvalidParameter(_, e) | Error::Upload(_, e) => e,
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

    /// An `InternalError` from anything displayable, with context.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> Error {
        Error::Internal(format!("{context}: {e}"))
    }

    /// Maps an I/O error, turning a full disk into a 507.
    pub fn io(context: &str, e: std::io::Error) -> Error {
        if e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT) {
            Error::InsufficientStorage(format!("{context}: no space left on device"))
        } else {
            Error::internal(context, e)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_lists_field_errors() {
        let e = Error::param("limit", "must be an integer from 1 to 1000");
        let b = e.body();
        assert_eq!(b["code"], "InvalidParameter");
        assert_eq!(b["errors"][0]["field"], "limit");
    }
}
