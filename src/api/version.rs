//! API versions and `Accept-Version`, as IMGAPI negotiates them (restify's
//! versioned routes; `lib/app.js` serves versions `1.0.0` and `2.0.0`).
//!
//! `Accept-Version` is a semver range; the request gets the highest server
//! version it accepts, and a range no server version satisfies is 400
//! `InvalidVersion`. Version 1 manifests have no `channels`
//! (`Image.serialize`, `lib/images.js`).
//!
//! One difference kept on purpose: without `Accept-Version` IMGAPI assumes
//! `~1`; here the request gets the latest version. Clients that send no
//! header (imgadm, this daemon's own CLI, curl) see the extra `channels`
//! field, which they ignore, and the fields of version 2 stay visible to
//! the tools that read them without knowing about the header.

use crate::error::{Error, Result};

/// A version of the API this server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiVersion {
    /// `1.0.0`: manifests without `channels`.
    V1,
    /// `2.0.0`: the latest.
    V2,
}

/// The versions this server serves, lowest first, as semver triples.
const SERVED: [(ApiVersion, (u64, u64, u64)); 2] =
    [(ApiVersion::V1, (1, 0, 0)), (ApiVersion::V2, (2, 0, 0))];

/// The version a request gets from its `Accept-Version` header (the latest
/// when absent).
///
/// # Errors
/// `InvalidVersion` when no served version satisfies the range, or it is
/// not a range.
pub fn negotiate(header: Option<&str>, method: &str, path: &str) -> Result<ApiVersion> {
    let Some(range) = header else {
        return Ok(ApiVersion::V2);
    };
    SERVED
        .iter()
        .rev()
        .find(|(_, v)| satisfies(range, *v))
        .map(|(api, _)| *api)
        .ok_or_else(|| {
            Error::InvalidVersion(format!(
                "{range} is not supported by {method} {path} (this server serves API versions 1.0.0 and 2.0.0)"
            ))
        })
}

type Triple = (u64, u64, u64);

/// A partial version: `1`, `1.2`, `1.2.3`, with `x`/`X`/`*` as wildcards.
fn partial(s: &str) -> Option<Vec<Option<u64>>> {
    let s = s.trim().trim_start_matches(['v', '=']);
    if s.is_empty() {
        return None;
    }
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() > 3 {
        return None;
    }
    parts
        .iter()
        .map(|p| match *p {
            "x" | "X" | "*" => Some(None),
            p => p.parse::<u64>().ok().map(Some),
        })
        .collect()
}

/// The lowest version a partial stands for and the bound above it: `1.2`
/// is `>=1.2.0 <1.3.0`; `1` is `>=1.0.0 <2.0.0`; `*` is everything.
fn partial_range(p: &[Option<u64>]) -> (Triple, Option<Triple>) {
    let get = |i: usize| p.get(i).copied().flatten();
    match (get(0), get(1), get(2)) {
        (None, _, _) => ((0, 0, 0), None),
        (Some(a), None, _) => ((a, 0, 0), Some((a + 1, 0, 0))),
        (Some(a), Some(b), None) => ((a, b, 0), Some((a, b + 1, 0))),
        (Some(a), Some(b), Some(c)) => ((a, b, c), Some((a, b, c + 1))),
    }
}

/// One comparator (`~1`, `^2.0`, `>=1.0.0`, `1.x`, `*`) against `v`.
fn comparator(c: &str, v: Triple) -> Option<bool> {
    let c = c.trim();
    if c.is_empty() || c == "*" || c == "x" || c == "X" {
        return Some(true);
    }
    for op in [">=", "<=", ">", "<"] {
        if let Some(rest) = c.strip_prefix(op) {
            let (lo, _) = partial_range(&partial(rest)?);
            return Some(match op {
                ">=" => v >= lo,
                "<=" => v <= lo,
                ">" => v > lo,
                _ => v < lo,
            });
        }
    }
    if let Some(rest) = c.strip_prefix('~') {
        let p = partial(rest)?;
        let (lo, _) = partial_range(&p);
        // ~1 and ~1.x: the major; ~1.2 and ~1.2.3: the minor.
        let hi = match p.get(1).copied().flatten() {
            Some(_) => (lo.0, lo.1 + 1, 0),
            None => (lo.0 + 1, 0, 0),
        };
        return Some(v >= lo && v < hi);
    }
    if let Some(rest) = c.strip_prefix('^') {
        let (lo, _) = partial_range(&partial(rest)?);
        let hi = if lo.0 > 0 {
            (lo.0 + 1, 0, 0)
        } else {
            (0, lo.1 + 1, 0)
        };
        return Some(v >= lo && v < hi);
    }
    let (lo, hi) = partial_range(&partial(c)?);
    Some(v >= lo && hi.is_none_or(|hi| v < hi))
}

/// Whether `v` satisfies the range: `||`-separated sets of
/// space-separated comparators (a hyphen range `a - b` included).
fn satisfies(range: &str, v: Triple) -> bool {
    range.split("||").any(|set| {
        let words: Vec<&str> = set.split_whitespace().collect();
        if let [a, "-", b] = words.as_slice() {
            return comparator(&format!(">={a}"), v) == Some(true)
                && comparator(&format!("<={b}"), v) == Some(true);
        }
        if words.is_empty() {
            return true;
        }
        words.iter().all(|w| comparator(w, v) == Some(true))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(h: &str) -> std::result::Result<ApiVersion, &'static str> {
        negotiate(Some(h), "GET", "/images").map_err(|e| e.code())
    }

    /// The ranges IMGAPI's own tests send (api-versions.public-test.js)
    /// and a few more.
    #[test]
    fn ranges() {
        assert_eq!(negotiate(None, "GET", "/").unwrap(), ApiVersion::V2);
        assert_eq!(get("*"), Ok(ApiVersion::V2));
        assert_eq!(get("~1"), Ok(ApiVersion::V1));
        assert_eq!(get("~2"), Ok(ApiVersion::V2));
        assert_eq!(get("1.0.0"), Ok(ApiVersion::V1));
        assert_eq!(get("2"), Ok(ApiVersion::V2));
        assert_eq!(get("1.x"), Ok(ApiVersion::V1));
        assert_eq!(get("^1"), Ok(ApiVersion::V1));
        assert_eq!(get(">=1"), Ok(ApiVersion::V2));
        assert_eq!(get("<2"), Ok(ApiVersion::V1));
        assert_eq!(get("~1 || ~2"), Ok(ApiVersion::V2));
        assert_eq!(get("1 - 2"), Ok(ApiVersion::V2));
        assert_eq!(get("~99"), Err("InvalidVersion"));
        assert_eq!(get("3.0.0"), Err("InvalidVersion"));
        assert_eq!(get("~1.1"), Err("InvalidVersion"));
        assert_eq!(get("banana"), Err("InvalidVersion"));
        let e = negotiate(Some("~99"), "GET", "/images").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("~99 is not supported by GET /images"));
    }
}
