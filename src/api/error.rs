//! The HTTP face of [`Error`]: the status each error code answers with, and
//! the whole error response (status, IMGAPI body `{code, message, errors?}`
//! and the headers some errors carry). The statuses follow IMGAPI's table
//! (imgapi.md section 4); the table test below pins code and status
//! together, and both are API.

use super::http::{json_response, Body};
use crate::error::Error;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};

/// The HTTP status of an error.
pub fn status(e: &Error) -> StatusCode {
    match e {
        Error::ResourceNotFound(_) | Error::RouteNotFound { .. } => StatusCode::NOT_FOUND,
        Error::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        Error::MalformedBody(_)
        | Error::Upload(..)
        | Error::FileMismatch(..)
        | Error::InvalidVersion(_) => StatusCode::BAD_REQUEST,
        Error::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
        Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::Validation(..)
        | Error::InvalidParameter(..)
        | Error::ImageFilesImmutable(_)
        | Error::ImageAlreadyActivated(_)
        | Error::NoActivationNoFile(_)
        | Error::ImageHasDependentImages { .. }
        | Error::OriginDoesNotExist(_)
        | Error::NotImageOwner { .. }
        | Error::ImageNotShared { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::ImageUuidAlreadyExists(_)
        | Error::PackageExists(_)
        | Error::PatchTestFailed(_)
        | Error::PatchConflict(_)
        | Error::Conflict(_) => StatusCode::CONFLICT,
        Error::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::RangeNotSatisfiable(..) => StatusCode::RANGE_NOT_SATISFIABLE,
        Error::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
        Error::Forbidden(_) | Error::OperatorOnly(_) => StatusCode::FORBIDDEN,
        Error::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        Error::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        Error::BadRequest(_) | Error::NotImplemented(_) | Error::Download(_) => {
            StatusCode::BAD_REQUEST
        }
        Error::UriTooLong(_) => StatusCode::URI_TOO_LONG,
        Error::TooManyTasks(_) => StatusCode::TOO_MANY_REQUESTS,
        Error::Unavailable(_) | Error::StorageIsDown | Error::StorageUnsupported => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::Internal(_) | Error::MountFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        Error::Cancelled(_) => StatusCode::CONFLICT,
        Error::ImageNotInstalled { .. } => StatusCode::NOT_FOUND,
        Error::ChecksumMismatch(_)
        | Error::UnexpectedNumberOfSnapshots(_)
        | Error::DatasetHasNoOrigin(_)
        | Error::UncompressionError(_)
        | Error::NotSupported(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::ImageNotFound(_) => StatusCode::NOT_FOUND,
        // The image was found; what is wrong is its chain at the source.
        Error::OriginNotFoundInSource(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::DownloadError(_) | Error::TlsError(_) => StatusCode::BAD_GATEWAY,
        Error::RemoteSourceError(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Zfs(e) => {
            use crate::zfs::ZfsError as Z;
            match e {
                Z::NotAvailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                Z::PoolNotFound { .. } | Z::DatasetNotFound { .. } => StatusCode::NOT_FOUND,
                Z::DatasetExists { .. } | Z::Cancelled { .. } => StatusCode::CONFLICT,
                Z::HasDependentClones { .. } | Z::InvalidName { .. } => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                Z::OutOfSpace { .. } => StatusCode::INSUFFICIENT_STORAGE,
                Z::CommandFailed { .. } | Z::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            }
        }
        // Kept whole for their cause; they answer as the flat variant they
        // stand for (see error.rs).
        Error::Source(e) => status(&crate::error::source_answer(e)),
        Error::Cas { context, source } => status(&crate::error::cas_answer(context, source)),
        Error::Meta { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The response for an error: its status, its IMGAPI body, and `Allow`
/// (405) or `Content-Range` (416) where HTTP asks for them.
pub fn response(e: &Error) -> Response<Body> {
    let mut resp = json_response(status(e), &e.body());
    match e {
        Error::MethodNotAllowed { allow, .. } => {
            resp.headers_mut()
                .insert("allow", HeaderValue::from_static(allow));
        }
        Error::RangeNotSatisfiable(_, size) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                resp.headers_mut().insert("content-range", v);
            }
        }
        _ => {}
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zfs::ZfsError;

    fn status_of(e: &Error) -> u16 {
        status(e).as_u16()
    }

    /// Codes and statuses are API: this table is the contract.
    #[test]
    fn code_and_status_table() {
        let s = String::new;
        let table: Vec<(Error, &str, u16)> = vec![
            (Error::ResourceNotFound(s()), "ResourceNotFound", 404),
            (
                Error::RouteNotFound {
                    method: s(),
                    path: s(),
                },
                "ResourceNotFound",
                404,
            ),
            (
                Error::MethodNotAllowed {
                    method: s(),
                    path: s(),
                    allow: "GET",
                },
                "MethodNotAllowed",
                405,
            ),
            (Error::Validation(s(), vec![]), "ValidationFailed", 422),
            (
                Error::InvalidParameter(s(), vec![]),
                "InvalidParameter",
                422,
            ),
            (Error::MalformedBody(s()), "InvalidContent", 400),
            (Error::FileMismatch(s(), vec![]), "Download", 400),
            (Error::PreconditionFailed(s()), "PreconditionFailed", 412),
            (Error::InvalidVersion(s()), "InvalidVersion", 400),
            (Error::StorageIsDown, "StorageIsDown", 503),
            (Error::StorageUnsupported, "StorageUnsupported", 503),
            (
                Error::UnsupportedMediaType(s()),
                "UnsupportedMediaType",
                415,
            ),
            (
                Error::ImageUuidAlreadyExists(s()),
                "ImageUuidAlreadyExists",
                409,
            ),
            (Error::ImageFilesImmutable(s()), "ImageFilesImmutable", 422),
            (
                Error::ImageAlreadyActivated(s()),
                "ImageAlreadyActivated",
                422,
            ),
            (Error::NoActivationNoFile(s()), "NoActivationNoFile", 422),
            (
                Error::ImageHasDependentImages {
                    uuid: s(),
                    dependents: vec![],
                },
                "ImageHasDependentImages",
                422,
            ),
            (Error::OriginDoesNotExist(s()), "OriginDoesNotExist", 422),
            (
                Error::NotImageOwner {
                    account: s(),
                    uuid: s(),
                },
                "NotImageOwner",
                422,
            ),
            (
                Error::ImageNotShared {
                    account: s(),
                    uuid: s(),
                },
                "ImageNotShared",
                422,
            ),
            (Error::PackageExists(s()), "PackageExists", 409),
            (Error::PatchTestFailed(s()), "PatchTestFailed", 409),
            (Error::PatchConflict(s()), "PatchConflict", 409),
            (Error::Upload(s(), vec![]), "Upload", 400),
            (Error::PayloadTooLarge(s()), "PayloadTooLarge", 413),
            (
                Error::RangeNotSatisfiable(s(), 0),
                "RequestedRangeNotSatisfiable",
                416,
            ),
            (Error::InsufficientStorage(s()), "InsufficientStorage", 507),
            (Error::Forbidden(s()), "Forbidden", 403),
            (Error::OperatorOnly(s()), "OperatorOnly", 403),
            (Error::RequestTimeout(s()), "RequestTimeout", 408),
            (
                Error::HeadersTooLarge(s()),
                "RequestHeaderFieldsTooLarge",
                431,
            ),
            (Error::BadRequest(s()), "BadRequest", 400),
            (Error::UriTooLong(s()), "UriTooLong", 414),
            (Error::TooManyTasks(s()), "TooManyTasks", 429),
            (Error::Conflict(s()), "Conflict", 409),
            (Error::Unavailable(s()), "ServiceUnavailable", 503),
            (Error::Internal(s()), "InternalError", 500),
            (Error::Cancelled(s()), "Cancelled", 409),
            (
                Error::ImageNotInstalled {
                    uuid: s(),
                    pool: s(),
                },
                "ImageNotInstalled",
                404,
            ),
            (Error::ChecksumMismatch(s()), "ChecksumMismatch", 422),
            (
                Error::UnexpectedNumberOfSnapshots(s()),
                "UnexpectedNumberOfSnapshots",
                422,
            ),
            (Error::DatasetHasNoOrigin(s()), "DatasetHasNoOrigin", 422),
            (Error::UncompressionError(s()), "UncompressionError", 422),
            (
                Error::MountFailed {
                    message: s(),
                    source: ZfsError::DatasetNotFound { name: s() },
                },
                "MountFailed",
                500,
            ),
            (Error::NotSupported(s()), "NotSupported", 422),
            (Error::NotImplemented(s()), "NotImplemented", 400),
            (Error::Download(s()), "Download", 400),
            (Error::ImageNotFound(s()), "ImageNotFound", 404),
            (
                Error::OriginNotFoundInSource(s()),
                "OriginNotFoundInSource",
                422,
            ),
            (Error::DownloadError(s()), "DownloadError", 502),
            (Error::RemoteSourceError(s()), "RemoteSourceError", 503),
            (Error::TlsError(s()), "TlsError", 502),
            (
                Error::Zfs(ZfsError::NotAvailable { detail: s() }),
                "ZfsNotAvailable",
                503,
            ),
            (
                Error::Zfs(ZfsError::PoolNotFound { pool: s() }),
                "PoolNotFound",
                404,
            ),
            (
                Error::Zfs(ZfsError::DatasetNotFound { name: s() }),
                "DatasetNotFound",
                404,
            ),
            (
                Error::Zfs(ZfsError::DatasetExists { name: s() }),
                "DatasetExists",
                409,
            ),
            (
                Error::Zfs(ZfsError::HasDependentClones {
                    name: s(),
                    clones: vec![],
                }),
                "ImageHasDependentClones",
                422,
            ),
            (
                Error::Zfs(ZfsError::InvalidName {
                    name: s(),
                    reason: "x",
                }),
                "InvalidParameter",
                422,
            ),
            (
                Error::Zfs(ZfsError::CommandFailed {
                    argv: s(),
                    status: None,
                    stderr: s(),
                }),
                "ZfsCommandFailed",
                500,
            ),
        ];
        for (e, code, status) in table {
            assert_eq!(e.code(), code, "{e:?}");
            assert_eq!(status_of(&e), status, "{e:?}");
        }
    }

    #[test]
    fn full_disk_is_507() {
        let e = Error::io("writing x", std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(status_of(&e), 507);
        assert!(e.to_string().contains("writing x"));
    }
}
