//! Handlers for store administration:
//! - `GET /ping`: liveness, version and pid; `?error=NAME` answers
//!   IMGAPI's sample error of that name.
//! - `GET /state[?verify=true]`: IMGAPI's AdminGetState fields (`cache`,
//!   `log.level`, `storageTypes`) and the fsck report (`service/fsck.rs`);
//!   200 whether or not problems were found, `ok` says which. `verify` re-reads
//!   every blob to check its digests; without it only sizes are checked.
//! - `POST /state?action=repair[&verify=true]`: repairs what can be
//!   repaired without losing data, and reports.
//! - `POST /vacuum[?dry_run=true][&uninstall_unused_days=N[&pool=P]]`:
//!   garbage collection (`service/vacuum.rs`).

use crate::api::http::{json_response, Body, Ctx};
use crate::api::types::Ping;
use crate::error::{Error, Result};
use crate::service::{fsck, vacuum};
use hyper::{Response, StatusCode};

/// `GET /ping`; `?error=NAME` answers IMGAPI's sample error of that name
/// instead (its clients' tests use it), as `lib/app.js` `apiPing` does.
pub async fn ping(ctx: Ctx) -> Result<Response<Body>> {
    if let Some(name) = ctx.param("error")? {
        return Err(sample_error(name));
    }
    let v = serde_json::to_value(Ping::now()).map_err(|e| Error::internal("ping", e))?;
    Ok(json_response(StatusCode::OK, &v))
}

/// The errors IMGAPI's `lib/errors.js` exports, by class name.
const IMGAPI_ERRORS: &[&str] = &[
    "ValidationFailedError",
    "InvalidParameterError",
    "ImageFilesImmutableError",
    "ImageAlreadyActivatedError",
    "NoActivationNoFileError",
    "OperatorOnlyError",
    "ImageUuidAlreadyExistsError",
    "UploadError",
    "DownloadError",
    "StorageIsDownError",
    "StorageUnsupportedError",
    "RemoteSourceError",
    "OwnerDoesNotExistError",
    "ImageNotSharedError",
    "AccountDoesNotExistError",
    "NotImageOwnerError",
    "NotMantaPathOwnerError",
    "OriginDoesNotExistError",
    "OriginIsNotActiveError",
    "InsufficientServerVersionError",
    "ImageHasDependentImagesError",
    "NotAvailableError",
    "NotImplementedError",
    "InternalError",
    "ResourceNotFoundError",
    "InvalidHeaderError",
    "ServiceUnavailableError",
    "UnauthorizedError",
    "BadRequestError",
];

/// The sample error `GET /ping?error=NAME` answers: `NAME` with `Error`
/// appended when it lacks it (empty is `InternalError`). IMGAPI has
/// samples for some of its errors; a known error without one is an
/// `InternalError` saying so, an unknown name an `InvalidParameter`.
fn sample_error(name: &str) -> Error {
    let name = if name.is_empty() {
        "InternalError"
    } else {
        name
    };
    let name = if name.ends_with("Error") {
        name.to_string()
    } else {
        format!("{name}Error")
    };
    let sample_uuid = "00000000-0000-0000-0000-000000000000".to_string();
    match name.as_str() {
        "ValidationFailedError" => Error::Validation("boom".into(), vec![]),
        "InvalidParameterError" => Error::InvalidParameter(
            "invalid \"foo\"".into(),
            vec![crate::manifest::FieldError {
                field: "foo".into(),
                code: "Invalid".into(),
                message: "invalid \"foo\"".into(),
            }],
        ),
        "ImageFilesImmutableError" => Error::ImageFilesImmutable(sample_uuid),
        "ImageAlreadyActivatedError" => Error::ImageAlreadyActivated(sample_uuid),
        "NoActivationNoFileError" => Error::NoActivationNoFile(sample_uuid),
        "OperatorOnlyError" => {
            Error::OperatorOnly("this endpoint may only be called by an operator".into())
        }
        "ImageUuidAlreadyExistsError" => Error::ImageUuidAlreadyExists(sample_uuid),
        "StorageIsDownError" => Error::StorageIsDown,
        "StorageUnsupportedError" => Error::StorageUnsupported,
        "RemoteSourceError" => Error::RemoteSourceError("remote source error".into()),
        "InternalError" => Error::Internal("boom".into()),
        known if IMGAPI_ERRORS.contains(&known) => {
            Error::Internal(format!("do not have a sample \"{known}\" error"))
        }
        unknown => Error::InvalidParameter(
            format!("unknown error: {unknown}"),
            vec![crate::manifest::FieldError {
                field: "error".into(),
                code: "Missing".into(),
                message: format!("unknown error: {unknown}"),
            }],
        ),
    }
}

/// A `true`/`false` parameter; absent is `false`.
fn flag(ctx: &Ctx, name: &str) -> Result<bool> {
    match ctx.param(name)? {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(Error::param(name, format!("{v:?} is not true or false"))),
    }
}

/// `GET /state`.
pub async fn state(ctx: Ctx) -> Result<Response<Body>> {
    check(ctx, false).await
}

/// `POST /state?action=repair` (the action is checked by the route).
pub async fn repair(ctx: Ctx) -> Result<Response<Body>> {
    check(ctx, true).await
}

/// The fsck report, with `?verify=` read the same way for both.
async fn check(ctx: Ctx, repair: bool) -> Result<Response<Body>> {
    let opts = fsck::Options {
        verify: flag(&ctx, "verify")?,
        repair,
    };
    let level = ctx.svc.config().log_level.clone();
    let report = ctx.svc.check(opts).await?;
    let mut v = report.to_json();
    if !repair {
        // IMGAPI's AdminGetState fields (`lib/app.js` getStateSnapshot),
        // next to the store's own check report.
        v["cache"] = serde_json::json!({});
        v["log"] = serde_json::json!({"level": bunyan_level(&level)});
        v["storageTypes"] = serde_json::json!(["local"]);
    }
    Ok(json_response(StatusCode::OK, &v))
}

/// Bunyan's number for a configured level (`info`, or a filter such as
/// `imgstore=debug,info`: its most verbose level).
fn bunyan_level(level: &str) -> u8 {
    let names = ["trace", "debug", "info", "warn", "error"];
    names
        .iter()
        .zip([10u8, 20, 30, 40, 50])
        .find(|(n, _)| level.to_ascii_lowercase().contains(*n))
        .map_or(30, |(_, v)| v)
}

/// `POST /vacuum`.
pub async fn vacuum(ctx: Ctx) -> Result<Response<Body>> {
    let days = match ctx.param("uninstall_unused_days")? {
        None => None,
        Some(v) => Some(match v.parse::<u64>() {
            Ok(n) if n <= 36_500 => n,
            _ => {
                return Err(Error::param(
                    "uninstall_unused_days",
                    format!("{v:?} is not a number of days from 0 to 36500"),
                ))
            }
        }),
    };
    let pool = ctx.param("pool")?.map(str::to_string);
    if pool.is_some() && days.is_none() {
        return Err(Error::param("pool", "only used with uninstall_unused_days"));
    }
    let opts = vacuum::Options {
        dry_run: flag(&ctx, "dry_run")?,
        uninstall_unused_days: days,
        pool,
    };
    let report = ctx.svc.run_vacuum(opts).await?;
    let v = serde_json::to_value(&report).map_err(|e| Error::internal("vacuum report", e))?;
    Ok(json_response(StatusCode::OK, &v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::status;

    /// `?error=` as IMGAPI's ping answers it: code and status.
    #[test]
    fn ping_samples() {
        let cases = [
            ("ValidationFailed", "ValidationFailed", 422),
            ("ValidationFailedError", "ValidationFailed", 422),
            ("InvalidParameter", "InvalidParameter", 422),
            ("ImageFilesImmutable", "ImageFilesImmutable", 422),
            ("ImageAlreadyActivated", "ImageAlreadyActivated", 422),
            ("NoActivationNoFile", "NoActivationNoFile", 422),
            ("OperatorOnly", "OperatorOnly", 403),
            ("ImageUuidAlreadyExists", "ImageUuidAlreadyExists", 409),
            ("StorageIsDown", "StorageIsDown", 503),
            ("StorageUnsupported", "StorageUnsupported", 503),
            ("RemoteSource", "RemoteSourceError", 503),
            ("", "InternalError", 500),
            ("Internal", "InternalError", 500),
            ("Upload", "InternalError", 500),
            ("Bogus", "InvalidParameter", 422),
        ];
        for (name, code, want) in cases {
            let e = sample_error(name);
            assert_eq!((e.code(), status(&e).as_u16()), (code, want), "{name}");
        }
        assert_eq!(
            sample_error("Upload").to_string(),
            "do not have a sample \"UploadError\" error"
        );
        let e = sample_error("Bogus");
        assert_eq!(e.to_string(), "unknown error: BogusError");
        assert_eq!(e.body()["errors"][0]["field"], "error");
    }
}
