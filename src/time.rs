//! The one clock format: every timestamp the daemon writes (`published_at`,
//! task times and expiries, log lines) is RFC 3339 in UTC with
//! milliseconds, `2024-05-06T07:08:09.123Z`, the shape of JavaScript's
//! `toISOString` that IMGAPI and Bunyan use. Keeping one formatter means
//! stored timestamps compare correctly as strings (ListImages sorts and
//! pages on `published_at` that way).
//!
//! Also here: reading RFC 3339 back (any offset), and the compact UTC stamp
//! that makes names unique (`db.broken-STAMP`, `@final-STAMP`).

use chrono::{DateTime, Utc};

/// The stored shape, as a chrono format string.
const FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// `t` in the stored shape.
pub fn format(t: DateTime<Utc>) -> String {
    t.format(FORMAT).to_string()
}

/// The current time in the stored shape.
pub fn now_timestamp() -> String {
    format(Utc::now())
}

/// `hours` from now, in the stored shape (expiry times).
pub fn hours_from_now(hours: i64) -> String {
    format(Utc::now() + chrono::Duration::hours(hours))
}

/// An RFC 3339 time with any offset, as UTC; `None` when `s` is not one.
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// An RFC 3339 time with any offset, rewritten in the stored shape so it
/// compares as a string with stored times; `None` when `s` is not one.
pub fn normalize(s: &str) -> Option<String> {
    parse(s).map(format)
}

/// The current time as a compact stamp that makes a file or snapshot name
/// unique, without the `:` and `-` of the stored shape:
/// `20240506T070809.123Z`.
pub fn name_stamp() -> String {
    Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shape_everywhere() {
        let t = parse("2012-11-02T22:46:45.5+01:00").unwrap();
        assert_eq!(format(t), "2012-11-02T21:46:45.500Z");
        assert_eq!(
            normalize("2024-02-01T01:00:00+01:00").as_deref(),
            Some("2024-02-01T00:00:00.000Z")
        );
        assert_eq!(normalize("yesterday"), None);
        let now = now_timestamp();
        assert_eq!(now.len(), "2024-05-06T07:08:09.123Z".len(), "{now}");
        assert_eq!(normalize(&now).as_deref(), Some(now.as_str()));
        assert!(hours_from_now(1) > now);
        let stamp = name_stamp();
        assert_eq!(stamp.len(), "20240506T070809.123Z".len(), "{stamp}");
        assert!(!stamp.contains(':'));
    }
}
