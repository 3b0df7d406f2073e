//! Handlers for store administration:
//! - `GET /ping`: liveness, version and pid.
//! - `GET /state[?verify=true]`: the fsck report (`service/fsck.rs`); 200
//!   whether or not problems were found, `ok` says which. `verify` re-reads
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

/// `GET /ping`.
pub async fn ping(_ctx: Ctx) -> Result<Response<Body>> {
    let v = serde_json::to_value(Ping::now()).map_err(|e| Error::internal("ping", e))?;
    Ok(json_response(StatusCode::OK, &v))
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
    let report = ctx.svc.check(opts).await?;
    Ok(json_response(StatusCode::OK, &report.to_json()))
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
