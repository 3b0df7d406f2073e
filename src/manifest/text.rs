//! Hand-written checks on strings and JSON numbers, so the manifest rules
//! need no regex crate: the character classes of names and versions,
//! lowercase uuids and hex digests, timestamps and platform build stamps,
//! http(s) URLs, lengths as JavaScript counts them, and non-negative
//! integers as a JavaScript producer writes them. Also the one timestamp
//! format the store writes ([`format_timestamp`]).
//!
//! Pure functions on their argument; the rules that use them (which field,
//! which limit, which message) are in `validate.rs` and `build.rs`.

use serde_json::Value;

/// `requirements.min_platform`/`max_platform` values before this year are
/// rejected, as in imgmanifest: no SmartOS platform is older.
pub(super) const MIN_PLATFORM_YEAR: u32 = 2012;

/// Length as JavaScript's `.length` counts it (UTF-16 units), so the limits
/// match IMGAPI's for non-ASCII text too.
pub(super) fn js_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Shorten a client-supplied string before echoing it in a message.
pub(super) fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

pub(super) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ' ' | '-')
}

pub(super) fn is_version_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '+' | '-')
}

pub(super) fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`: any
/// version, but lowercase only, since uuids are compared as strings. The
/// crate's one UUID rule: path uuids, `?origin=`, markers and package ids
/// are checked with it too.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        })
}

pub(super) fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|hex| is_lower_hex(hex, 64))
}

pub(super) fn all_digits(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}

/// `YYYY-MM-DDTHH:MM:SS(.sss)Z`, and a real calendar instant.
pub(super) fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let shape = match b.len() {
        20 => true,
        24 => b[19] == b'.' && all_digits(&b[20..23]),
        _ => false,
    };
    // The exact shape first: chrono alone tolerates one-digit fields, and
    // the checked bytes make the slice below fall on a char boundary.
    shape
        && b[b.len() - 1] == b'Z'
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19]
            .into_iter()
            .all(|r| all_digits(&b[r]))
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && chrono::NaiveDateTime::parse_from_str(&s[..19], "%Y-%m-%dT%H:%M:%S").is_ok()
}

/// A platform build stamp `YYYYMMDDTHHMMSSZ`, checked field by field as
/// imgmanifest does (day ≤ 31 whatever the month), plus all-digit fields.
pub(super) fn is_platform_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 16
        || b[8] != b'T'
        || b[15] != b'Z'
        || !all_digits(&b[..8])
        || !all_digits(&b[9..15])
    {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().unwrap_or(u32::MAX);
    num(0..4) >= MIN_PLATFORM_YEAR
        && (1..=12).contains(&num(4..6))
        && (1..=31).contains(&num(6..8))
        && num(9..11) <= 23
        && num(11..13) <= 59
        && num(13..15) <= 59
}

/// `http://` or `https://` (scheme case-insensitive, as URL parsers treat
/// it), then a host, and no whitespace or control characters anywhere.
pub(super) fn is_http_url(s: &str) -> bool {
    let starts = |prefix: &str| {
        s.len() >= prefix.len()
            && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    let rest = if starts("http://") {
        &s[7..]
    } else if starts("https://") {
        &s[8..]
    } else {
        return false;
    };
    !rest.is_empty()
        && !rest.starts_with('/')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Format an instant the way `published_at` and `expires_at` are stored
/// (`YYYY-MM-DDTHH:MM:SS.sssZ`, JavaScript's `toISOString`), so the service
/// layer never has to know the format [`validate`](super::validate()) enforces.
/// The format is the daemon's one clock format, [`crate::time::format`].
pub fn format_timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    crate::time::format(t)
}

/// A non-negative integer. JSON has one number type, so `16384.0` counts too:
/// a JavaScript producer cannot tell the two apart.
pub(super) fn as_count(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    // 2^53: beyond it a float no longer holds every integer exactly.
    (f >= 0.0 && f.fract() == 0.0 && f <= 9_007_199_254_740_992.0).then_some(f as u64)
}

pub(super) fn parse_count(s: &str) -> Option<u64> {
    if s.is_empty() || !all_digits(s.as_bytes()) {
        return None;
    }
    s.parse().ok()
}
#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn character_class_helpers() {
        let fresh = uuid::Uuid::new_v4().to_string();
        assert!(is_uuid(&fresh));
        assert!(!is_uuid(&fresh.to_uppercase()));
        assert!(!is_uuid(&format!("{fresh}0")));
        assert!(!is_uuid(&uuid::Uuid::new_v4().simple().to_string()));
        for ok in [
            "2012-11-02T22:46:45Z",
            "2012-11-02T22:46:45.992Z",
            "2000-02-29T23:59:59Z",
        ] {
            assert!(is_timestamp(ok), "{ok}");
        }
        for bad in [
            "2012-11-02 22:46:45Z",
            "2012-11-2T22:46:45Z",
            "2001-02-29T00:00:00Z",
            "2012-11-02T24:00:00Z",
            "2012-11-02T22:46:45.Z",
            "2012-11-02T22:46:45.9921Z",
            "2012-11-02T22:46:45z",
            "",
            "+2012-11-02T22:46:45Z",
        ] {
            assert!(!is_timestamp(bad), "{bad}");
        }
        assert!(is_platform_stamp("20120101T000000Z"));
        assert!(is_platform_stamp("20991231T235959Z"));
        assert!(!is_platform_stamp("20120101T000000"));
        assert!(!is_platform_stamp("2012010lT000000Z"));
        for ok in ["http://a", "https://a.b/c?d#e", "HTTP://A"] {
            assert!(is_http_url(ok), "{ok}");
        }
        for bad in [
            "http:/a",
            "https://",
            "http:///path",
            "mailto:x@y",
            "http://a\tb",
            "javascript:alert(1)",
            "httpx://a",
        ] {
            assert!(!is_http_url(bad), "{bad}");
        }
        let t = chrono::DateTime::parse_from_rfc3339("2012-11-02T22:46:45.5+00:00").unwrap();
        let stamp = format_timestamp(t.with_timezone(&chrono::Utc));
        assert_eq!(stamp, "2012-11-02T22:46:45.500Z");
        assert!(is_timestamp(&format_timestamp(chrono::Utc::now())));
        assert_eq!(js_len("a😀"), 3);
        assert_eq!(as_count(&json!(3)), Some(3));
        assert_eq!(as_count(&json!(3.0)), Some(3));
        assert_eq!(as_count(&json!(3.5)), None);
        assert_eq!(as_count(&json!(-3)), None);
        assert_eq!(as_count(&json!(1e300)), None);
        assert_eq!(as_count(&json!("3")), None);
        assert_eq!(clip(&"x".repeat(100)).chars().count(), 65);
    }
}
