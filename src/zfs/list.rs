//! Reading what `zfs list`, `zfs get` and `zpool get` print: the
//! [`DatasetInfo`] rows of a listing, single property values, and the
//! property table of `zfs get`'s usage text (a feature probe).
//!
//! Everything here parses text that scripted mode (`-H`, tab-separated, `-p`
//! for exact numbers) produced; nothing runs a command. Errors are plain
//! strings that the caller wraps into a `ZfsError::CommandFailed` naming the
//! command.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The type of a dataset as `zfs list -o type` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetType {
    /// A filesystem.
    Filesystem,
    /// A volume (zvol).
    Volume,
    /// A snapshot.
    Snapshot,
    /// A bookmark.
    Bookmark,
}

impl DatasetType {
    fn parse(s: &str) -> Option<DatasetType> {
        match s {
            "filesystem" => Some(DatasetType::Filesystem),
            "volume" => Some(DatasetType::Volume),
            "snapshot" => Some(DatasetType::Snapshot),
            "bookmark" => Some(DatasetType::Bookmark),
            _ => None,
        }
    }
}

impl fmt::Display for DatasetType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatasetType::Filesystem => "filesystem",
            DatasetType::Volume => "volume",
            DatasetType::Snapshot => "snapshot",
            DatasetType::Bookmark => "bookmark",
        })
    }
}

/// One row of a dataset or snapshot listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// Full name (`pool/a/b` or `pool/a@snap`).
    pub name: String,
    /// Dataset type.
    #[serde(rename = "type")]
    pub kind: DatasetType,
    /// The snapshot this clone was created from, if it is a clone.
    pub origin: Option<String>,
    /// `used`, in bytes.
    pub used: u64,
    /// `referenced`, in bytes.
    pub referenced: u64,
    /// `creation`, in seconds since the epoch.
    pub creation: u64,
}

/// Properties fetched for [`DatasetInfo`], in this order: the columns
/// [`parse_list_output`] expects.
pub(super) const INFO_PROPS: &str = "name,type,origin,used,referenced,creation";
/// The same without `name`, for `zfs get`, which prints the name anyway.
pub(super) const INFO_GET_PROPS: &str = "type,origin,used,referenced,creation";

/// Output of `zfs list`/`zfs get` that is not in the shape asked for; the
/// caller turns it into [`super::ZfsError::CommandFailed`] with the argv.
#[derive(Debug, thiserror::Error)]
pub(super) enum ParseError {
    #[error("{what} is not a number: {field:?}")]
    NotANumber {
        what: &'static str,
        field: String,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error("expected {expected} tab-separated fields: {line:?}")]
    Fields { expected: usize, line: String },
}

fn parse_u64(field: &str, what: &'static str) -> Result<u64, ParseError> {
    if field == "-" {
        return Ok(0);
    }
    field.parse().map_err(|source| ParseError::NotANumber {
        what,
        field: field.to_string(),
        source,
    })
}

fn info_from_fields(
    name: &str,
    kind: &str,
    origin: &str,
    used: &str,
    refer: &str,
    creation: &str,
) -> Result<Option<DatasetInfo>, ParseError> {
    let Some(kind) = DatasetType::parse(kind) else {
        tracing::debug!(name, kind, "skipping dataset of unknown type");
        return Ok(None);
    };
    Ok(Some(DatasetInfo {
        name: name.to_string(),
        kind,
        origin: (origin != "-" && !origin.is_empty()).then(|| origin.to_string()),
        used: parse_u64(used, "used")?,
        referenced: parse_u64(refer, "referenced")?,
        creation: parse_u64(creation, "creation")?,
    }))
}

/// Parses `zfs list -H -p -o name,type,origin,used,referenced,creation`.
pub(super) fn parse_list_output(out: &str) -> Result<Vec<DatasetInfo>, ParseError> {
    let mut rows = Vec::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 6 {
            return Err(ParseError::Fields {
                expected: 6,
                line: line.to_string(),
            });
        }
        rows.extend(info_from_fields(f[0], f[1], f[2], f[3], f[4], f[5])?);
    }
    Ok(rows)
}

/// Parses `zfs get -H -p -o name,property,value type,origin,used,referenced,creation`,
/// one line per dataset and property, keeping the datasets' order.
pub(super) fn parse_get_output(out: &str) -> Result<Vec<DatasetInfo>, ParseError> {
    let mut grouped: Vec<(String, [String; 5])> = Vec::new();
    for line in out.lines().filter(|l| !l.is_empty()) {
        let mut f = line.splitn(3, '\t');
        let (Some(name), Some(prop), Some(value)) = (f.next(), f.next(), f.next()) else {
            return Err(ParseError::Fields {
                expected: 3,
                line: line.to_string(),
            });
        };
        let slot = match prop {
            "type" => 0,
            "origin" => 1,
            "used" => 2,
            "referenced" => 3,
            "creation" => 4,
            _ => continue,
        };
        if grouped.last().map(|(n, _)| n.as_str()) != Some(name) {
            grouped.push((name.to_string(), Default::default()));
        }
        if let Some((_, props)) = grouped.last_mut() {
            props[slot] = value.to_string();
        }
    }
    let mut rows = Vec::new();
    for (name, p) in &grouped {
        rows.extend(info_from_fields(name, &p[0], &p[1], &p[2], &p[3], &p[4])?);
    }
    Ok(rows)
}

/// The value `zfs get -H -p -o value PROP NAME` printed: `None` for `-`
/// (unset user property, no origin, ...).
pub(super) fn parse_value(out: &str) -> Option<String> {
    let value = out.strip_suffix('\n').unwrap_or(out);
    if value == "-" {
        None
    } else {
        Some(value.to_string())
    }
}

/// The datasets in a comma-separated property value (`clones`).
pub(super) fn parse_name_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// True if the property table that `zfs get` prints with its usage has a
/// row for `prop`.
pub(super) fn usage_lists_property(usage: &str, prop: &str) -> bool {
    usage
        .lines()
        .any(|l| l.split_whitespace().next() == Some(prop))
}

/// True if `zpool get -H -o value feature@...` says the feature can be used.
pub(super) fn feature_is_on(out: &str) -> bool {
    matches!(out.trim(), "enabled" | "active")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zfs::fake::fixture;

    #[test]
    fn parses_list_p_output() {
        let rows = parse_list_output(fixture!("list-p.out")).unwrap();
        let kinds: Vec<DatasetType> = rows.iter().map(|r| r.kind).collect();
        assert_eq!(
            kinds,
            [
                DatasetType::Filesystem,
                DatasetType::Filesystem,
                DatasetType::Filesystem,
                DatasetType::Volume
            ]
        );
        assert_eq!(rows[1].referenced, 400);
        assert_eq!(rows[2].origin.as_deref(), Some("tank/img@final"));
        let e = parse_list_output("tank\tfilesystem\t-\t1\t2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("6 tab-separated fields"), "{e}");
        let e = parse_list_output("tank\tfilesystem\t-\tlots\t2\t3\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "used is not a number: \"lots\"");
    }

    #[test]
    fn parses_zfs_get_output_grouped_by_dataset() {
        let rows = parse_get_output(fixture!("zfs-fuse-get-p-r.out")).unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["zdrv1", "zdrv1/a", "zdrv1/a@s1", "zdrv1/a@s2", "zdrv1/k1"]
        );
        assert_eq!(rows[2].kind, DatasetType::Snapshot);
        assert_eq!(rows[2].used, 86_016);
        assert_eq!(rows[0].origin, None);
        // unknown types are skipped, "-" numbers are 0
        let out = "p/b\ttype\tnew-kind\np/c\ttype\tvolume\np/c\torigin\t-\np/c\tused\t-\n\
                   p/c\treferenced\t-\np/c\tcreation\t-\n";
        let rows = parse_get_output(out).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].kind, rows[0].used), (DatasetType::Volume, 0));
        assert!(parse_get_output("p/c\ttype\n").is_err());
    }

    #[test]
    fn parses_values_and_tables() {
        assert_eq!(parse_value("-\n"), None);
        assert_eq!(
            parse_value("tank/img@final\n").as_deref(),
            Some("tank/img@final")
        );
        assert_eq!(parse_value("").as_deref(), Some(""));
        assert_eq!(
            parse_name_list("tank/vm1,tank/vm2\n"),
            ["tank/vm1", "tank/vm2"]
        );
        assert!(parse_name_list("").is_empty());
        assert!(usage_lists_property(
            fixture!("openzfs-get-usage.stderr"),
            "clones"
        ));
        assert!(!usage_lists_property(
            fixture!("zfs-fuse-get-usage.stderr"),
            "clones"
        ));
        assert!(usage_lists_property(
            fixture!("zfs-fuse-get-usage.stderr"),
            "origin"
        ));
        assert!(feature_is_on("active\n") && feature_is_on("enabled"));
        assert!(!feature_is_on("disabled\n") && !feature_is_on("-"));
    }
}
