//! What a pool, dataset, snapshot, property name or resume token may look
//! like, checked before any of them reaches a `zfs` argv.
//!
//! The rules are stricter than ZFS's own (no spaces, no `%`, nothing that
//! starts with `-`), so a name that passes can never be read as an option
//! or need quoting. [`PoolName`] and [`DatasetName`] carry the check in
//! their type: they can only be built through validation. The `validate_*`
//! functions are the same rules for callers that hold a `&str`.

use std::fmt;
use std::str::FromStr;

use super::error::{Result, ZfsError};

/// Longest dataset or snapshot name ZFS accepts (`ZFS_MAX_DATASET_NAME_LEN`
/// is 256 including the terminating NUL).
pub const MAX_NAME_LEN: usize = 255;

/// Longest resume token accepted. Real ones are a few hundred bytes (a
/// compressed nvlist in hex); the cap only bounds the argv.
pub(super) const MAX_RESUME_TOKEN_LEN: usize = 64 * 1024;

/// A validated pool name: one component that starts with a letter (see
/// [`validate_pool_name`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolName(String);

/// A validated filesystem or volume name, `pool[/component...]` (see
/// [`validate_dataset_name`]). Never a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DatasetName(String);

/// The constructor and conversions both name types share; `$validate` is
/// the one check a value must pass.
macro_rules! validated_name {
    ($ty:ident, $validate:ident) => {
        impl $ty {
            /// Validates `name`.
            ///
            /// # Errors
            ///
            /// [`ZfsError::InvalidName`] with the reason.
            pub fn new(name: &str) -> Result<$ty> {
                $validate(name)?;
                Ok($ty(name.to_string()))
            }

            /// The name as ZFS spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $ty {
            type Err = ZfsError;

            fn from_str(s: &str) -> Result<$ty> {
                $ty::new(s)
            }
        }

        impl TryFrom<&str> for $ty {
            type Error = ZfsError;

            fn try_from(s: &str) -> Result<$ty> {
                $ty::new(s)
            }
        }
    };
}

validated_name!(PoolName, validate_pool_name);
validated_name!(DatasetName, validate_dataset_name);

impl PoolName {
    /// The pool's root dataset (a pool name is always a valid dataset name).
    pub fn root(&self) -> DatasetName {
        DatasetName(self.0.clone())
    }
}

impl DatasetName {
    /// The dataset this one is created in (`pool/a/b` gives `pool/a`);
    /// `None` for a pool's root dataset.
    pub fn parent(&self) -> Option<&str> {
        self.0.rfind('/').map(|i| &self.0[..i])
    }
}

/// [`ZfsError::InvalidName`] for `name`.
pub(super) fn invalid(name: &str, reason: &'static str) -> ZfsError {
    ZfsError::InvalidName {
        name: name.to_string(),
        reason,
    }
}

/// Checks one name component: non-empty, `[A-Za-z0-9_.:-]`, not starting
/// with `-`, no `..`.
pub(super) fn validate_component(whole: &str, c: &str) -> Result<()> {
    if c.is_empty() {
        return Err(invalid(whole, "empty name component"));
    }
    if c.starts_with('-') {
        return Err(invalid(whole, "a name component cannot start with '-'"));
    }
    if c.contains("..") || c == "." {
        return Err(invalid(whole, "'.' and '..' are not allowed in names"));
    }
    if !c
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
    {
        return Err(invalid(whole, "only A-Z a-z 0-9 _ . : - are allowed"));
    }
    Ok(())
}

fn check_length(name: &str) -> Result<()> {
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(name, "longer than 255 bytes"));
    }
    Ok(())
}

/// Validates a pool name: one component that starts with a letter.
///
/// # Errors
///
/// [`ZfsError::InvalidName`] with the reason.
pub fn validate_pool_name(pool: &str) -> Result<()> {
    check_length(pool)?;
    if pool.contains(['/', '@']) {
        return Err(invalid(pool, "a pool name cannot contain '/' or '@'"));
    }
    validate_component(pool, pool)?;
    if !pool.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(invalid(pool, "a pool name must start with a letter"));
    }
    Ok(())
}

/// Validates a filesystem or volume name (`pool[/component...]`).
///
/// # Errors
///
/// [`ZfsError::InvalidName`] with the reason.
pub fn validate_dataset_name(name: &str) -> Result<()> {
    check_length(name)?;
    if name.contains('@') {
        return Err(invalid(name, "a dataset name cannot contain '@'"));
    }
    let mut parts = name.split('/');
    validate_pool_name(parts.next().unwrap_or("")).map_err(|e| match e {
        ZfsError::InvalidName { reason, .. } => invalid(name, reason),
        e => e,
    })?;
    parts.try_for_each(|c| validate_component(name, c))
}

/// Validates a snapshot name (`dataset@snap`).
///
/// # Errors
///
/// [`ZfsError::InvalidName`] with the reason.
pub fn validate_snapshot_name(name: &str) -> Result<()> {
    check_length(name)?;
    let Some((dataset, snap)) = name.split_once('@') else {
        return Err(invalid(name, "a snapshot name needs '@'"));
    };
    if snap.contains('@') {
        return Err(invalid(name, "only one '@' is allowed"));
    }
    if snap.contains('/') {
        return Err(invalid(
            name,
            "a snapshot name cannot contain '/' after '@'",
        ));
    }
    validate_dataset_name(dataset).map_err(|e| match e {
        ZfsError::InvalidName { reason, .. } => invalid(name, reason),
        e => e,
    })?;
    validate_component(name, snap)
}

/// Validates a dataset or snapshot name.
///
/// # Errors
///
/// [`ZfsError::InvalidName`] with the reason.
pub fn validate_any_name(name: &str) -> Result<()> {
    if name.contains('@') {
        validate_snapshot_name(name)
    } else {
        validate_dataset_name(name)
    }
}

/// A `receive_resume_token` as ZFS prints it: `1-<hex>-<hex>-<hex>`, so
/// only `0-9 a-f -`, starting with a digit (never an option to `zfs`).
pub(super) fn validate_resume_token(token: &str) -> Result<()> {
    // Errors show the start of the token only; a bad one may be huge.
    let bad = |reason| invalid(&token.chars().take(80).collect::<String>(), reason);
    if token.is_empty() || token.len() > MAX_RESUME_TOKEN_LEN {
        return Err(bad("a resume token is 1 to 65536 characters"));
    }
    if !token.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(bad("a resume token starts with a digit"));
    }
    if !token
        .bytes()
        .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f' | b'-'))
    {
        return Err(bad("a resume token has only 0-9 a-f and '-' in it"));
    }
    Ok(())
}

/// Property names: native (`used`) or user (`imgadm:ignore`); lower case,
/// digits, `_ . : -` and the `@` of `userquota@...`.
pub(super) fn validate_property_name(prop: &str) -> Result<()> {
    let ok = !prop.is_empty()
        && prop.len() <= 256
        && !prop.starts_with('-')
        && prop
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(invalid(prop, "not a valid property name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_accepted() {
        for pool in ["zones", "tank", "z", "zdrv1", "a_b.c:d-e"] {
            validate_pool_name(pool).unwrap();
        }
        for ds in [
            "zones",
            "zones/0764d78e-3472-11e5-8949-4f31ab6b8a81",
            "zones/a/b/c",
            "t/x.y:z_w-v",
            "zones/x-partial",
        ] {
            validate_dataset_name(ds).unwrap();
            validate_any_name(ds).unwrap();
        }
        for snap in [
            "zones/a@final",
            "zones@s",
            "t/a.b@2024-01-01T00:00:00",
            "t/a@x_y.z",
        ] {
            validate_snapshot_name(snap).unwrap();
            validate_any_name(snap).unwrap();
        }
        validate_dataset_name(&format!("t/{}", "a".repeat(253))).unwrap();
    }

    #[test]
    fn invalid_names_are_rejected_with_invalid_parameter() {
        let long = format!("t/{}", "a".repeat(254));
        let cases: &[&str] = &[
            "",
            "-pool",
            "9pool",
            "pool/",
            "/pool",
            "pool//x",
            "pool/-x",
            "pool/a b",
            "pool/a\tb",
            "pool/a\nb",
            "pool/x;rm",
            "pool/$(x)",
            "pool/../x",
            "pool/..",
            "pool/.",
            "pool/a..b",
            "pool/ä",
            "pool/x%recv",
            &long,
        ];
        for name in cases {
            let err = validate_any_name(name).unwrap_err();
            assert_eq!(err.code(), "InvalidParameter", "{name:?}");
            assert!(
                matches!(&err, ZfsError::InvalidName { name: n, .. } if n == name),
                "{err:?}"
            );
        }
        for snap in [
            "pool/a",
            "pool/a@",
            "pool/a@b@c",
            "pool/a@-b",
            "pool/a@b/c",
            "@s",
            "pool/a@b c",
        ] {
            assert!(validate_snapshot_name(snap).is_err(), "{snap:?}");
        }
        assert!(validate_dataset_name("pool/a@b").is_err());
        assert!(validate_pool_name("pool/a").is_err());
        for prop in ["", "-o", "a b", "x=y", "a\n"] {
            assert!(validate_property_name(prop).is_err(), "{prop:?}");
        }
        for prop in ["used", "imgadm:ignore", "com.joyent:x", "userquota@root"] {
            validate_property_name(prop).unwrap();
        }
    }

    #[test]
    fn name_types_hold_only_valid_names() {
        let pool = PoolName::new("zones").unwrap();
        assert_eq!(pool.as_str(), "zones");
        assert_eq!(pool.to_string(), "zones");
        assert_eq!("zones".parse::<PoolName>().unwrap(), pool);
        assert_eq!(PoolName::try_from("zones").unwrap(), pool);
        for bad in ["", "9pool", "zones/a", "zones@s", "-x", "a b"] {
            let e = PoolName::new(bad).unwrap_err();
            assert!(
                matches!(&e, ZfsError::InvalidName { name, .. } if name == bad),
                "{bad:?}: {e:?}"
            );
            assert!(bad.parse::<PoolName>().is_err(), "{bad:?}");
        }

        let ds = DatasetName::new("zones/a/b").unwrap();
        assert_eq!(ds.as_str(), "zones/a/b");
        assert_eq!(ds.to_string(), "zones/a/b");
        assert_eq!(ds.as_ref(), "zones/a/b");
        assert_eq!(ds.parent(), Some("zones/a"));
        assert_eq!(DatasetName::new("zones").unwrap().parent(), None);
        assert_eq!("zones/a/b".parse::<DatasetName>().unwrap(), ds);
        for bad in ["", "zones/a@s", "zones//a", "zones/-a", "9pool/a"] {
            let e = DatasetName::try_from(bad).unwrap_err();
            assert_eq!(e.code(), "InvalidParameter", "{bad:?}");
        }
    }
}
