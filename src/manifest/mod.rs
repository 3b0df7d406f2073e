//! The IMGAPI image manifest, version 2: every rule about what a manifest may
//! contain, and every way a manifest enters the store.
//!
//! This module owns:
//! - the field schema: which top-level fields exist, their JSON types, limits,
//!   and the cross-field rules (zvol-only fields, `published_at`/`files` once
//!   activated, `type:"null"` only for placeholders, ...), applied by
//!   [`validate()`], and IMGAPI's validation modes ([`Mode`]: minimal, dc,
//!   public, private, as node-imgmanifest's `validate*Manifest` apply them)
//!   by [`validate_as`];
//! - the three ways a manifest is built from a request body: CreateImage
//!   ([`prepare_create`]), AdminImportImage ([`prepare_import`]) and
//!   `?action=update` ([`apply_update`]), i.e. which fields a client may set,
//!   which the server owns, and the defaults;
//! - the v1 ("dsmanifest", DSAPI) to v2 upgrade ([`upgrade_v1`]);
//! - the field lists other code needs: [`MUTABLE_FIELDS`], [`INHERITED_FIELDS`];
//! - a typed, read-only view of a file entry: [`FileEntry`] for stored
//!   manifests, [`UncheckedFile`] for ones not yet validated.
//! - typed readers of the top-level fields other modules read
//!   ([`uuid_of`], [`origin_of`], [`state_of`], [`name_of`], [`version_of`]),
//!   so those keys are spelled here only.
//!
//! It does no I/O. Whatever needs the store (does the origin exist, is the uuid
//! free, may this caller see that image) is the service layer's job.
//!
//! # Layout
//! - this file: the public API ([`Manifest`], [`FieldError`], the field and
//!   value lists, [`FileEntry`]) and the canonical field order. Everything
//!   the submodules offer is re-exported here, so callers write
//!   `crate::manifest::X` and never name a submodule;
//! - `validate.rs`: [`validate()`], [`validate_as`] and [`Mode`], and the
//!   rule for each field;
//! - `build.rs`: [`prepare_create`], [`prepare_import`], [`apply_update`];
//! - `v1.rs`: [`upgrade_v1`];
//! - `text.rs`: hand-written character-class and number checks (no regex
//!   crate), and [`format_timestamp`].
//!
//! The reference is node-imgmanifest 3.2 (IMGAPI's own validator); where the
//! IMGAPI docs and that code disagree, the code wins (name ≤1024, version ≤512,
//! `name`/`version` mutable, `type` immutable). A manifest is stored exactly in
//! the form it is output, so unlike IMGAPI's raw records there is no
//! `activated` (it is `state` ∈ {active, disabled}) and `icon` is a boolean.
//! The validator still understands a raw `activated` (a boolean or its
//! string), so that a manifest in IMGAPI's raw form gets node-imgmanifest's
//! verdict; it is never stored.
//!
//! Deliberately stricter than node-imgmanifest, because a manifest we accept
//! is one we must later serve and install:
//! - `v` must be 2 (the only version we store; older ones go through
//!   [`upgrade_v1`]);
//! - `files[].sha1` must be 40 lowercase hex digits, `digest` is checked, and
//!   unknown keys inside a file entry are rejected;
//! - an active or disabled image needs exactly one file, not just a `files` key;
//! - `state` and `disabled` must agree (active ⇒ false, disabled ⇒ true);
//! - `published_at`/`expires_at` must be real calendar instants, platform
//!   versions must be all digits, `min_ram`/`max_ram`/`image_size` must not be
//!   negative, `origin` must not be the image itself;
//! - wrong JSON types (including `null`) are always reported, never coerced.
//!
//! Errors name the field with a dotted path (`requirements.min_ram`,
//! `files.0.sha1`, `acl.2`). Keys chosen by users (`tags`, `traits`, platform
//! names like `"7.0"`) are named in the message instead, since they may
//! contain dots themselves.

mod build;
mod text;
mod v1;
mod validate;

pub use build::{apply_update, extra_fields, prepare_create, prepare_import, IMPORT_FIELDS};
pub use text::{format_timestamp, is_uuid};
pub use v1::{downgrade_v1, upgrade_v1};
pub use validate::{validate, validate_as, Mode};

use serde_json::{Map, Value};

/// A manifest is kept as plain JSON so that unknown or future fields survive a
/// round trip untouched until [`validate()`] has judged them.
pub type Manifest = Map<String, Value>;

/// One problem with one field, in IMGAPI's `errors[]` shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Dotted path of the offending field (`""` for the body itself).
    pub field: String,
    /// `"MissingParameter"`, `"Invalid"` or `"NotAllowed"` (node-imgmanifest's
    /// codes).
    pub code: String,
    /// Names the field and says what is wrong.
    pub message: String,
}

impl FieldError {
    fn new(field: &str, code: &str, message: String) -> Self {
        FieldError {
            field: field.to_string(),
            code: code.to_string(),
            message,
        }
    }
    fn missing(field: &str, message: String) -> Self {
        Self::new(field, "MissingParameter", message)
    }
    fn invalid(field: &str, message: String) -> Self {
        Self::new(field, "Invalid", message)
    }
    fn not_allowed(field: &str, message: String) -> Self {
        Self::new(field, "NotAllowed", message)
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The message already names the field.
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A top-level string field; `None` when it is absent or not a string.
fn str_of<'a>(m: &'a Manifest, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

/// `uuid`, when it is a string. The typed readers below are the only place
/// outside this module's rules where these top-level keys are spelled.
pub fn uuid_of(m: &Manifest) -> Option<&str> {
    str_of(m, "uuid")
}

/// `origin`: the uuid of the image this one is an increment on.
pub fn origin_of(m: &Manifest) -> Option<&str> {
    str_of(m, "origin")
}

/// `state` (one of [`STATES`] in a valid manifest).
pub fn state_of(m: &Manifest) -> Option<&str> {
    str_of(m, "state")
}

/// `name`, when it is a string.
pub fn name_of(m: &Manifest) -> Option<&str> {
    str_of(m, "name")
}

/// `version`, when it is a string.
pub fn version_of(m: &Manifest) -> Option<&str> {
    str_of(m, "version")
}

/// Owner of images nobody claimed (IMGAPI's `UNSET_OWNER_UUID`).
pub const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// The manifest version this module produces and stores.
pub const MANIFEST_VERSION: u64 = 2;

/// Values of `state`. `creating` and `failed` are create-from-vm placeholders.
pub const STATES: &[&str] = &["active", "unactivated", "disabled", "creating", "failed"];

/// Values of `type`. The string `"null"` is also accepted for placeholders.
pub const TYPES: &[&str] = &[
    "zone-dataset",
    "zvol",
    "lx-dataset",
    "lxd",
    "docker",
    "other",
];

/// Values of `os`. The string `"null"` is also accepted for placeholders.
pub const OSES: &[&str] = &["smartos", "linux", "windows", "bsd", "illumos", "other"];

/// Values of `files[].compression`. `zstd` is our addition to IMGAPI's four.
pub const COMPRESSIONS: &[&str] = &["none", "gzip", "bzip2", "xz", "zstd"];

/// The compressions IMGAPI and imgadm know (node-imgmanifest
/// `VALID_FILE_COMPRESSIONS`): [`COMPRESSIONS`] without `zstd`.
pub const IMGAPI_COMPRESSIONS: &[&str] = &["none", "gzip", "bzip2", "xz"];

/// Fields `?action=update` may change (imgmanifest `fields[].mutable`, less
/// `channels`, which has its own `channel-add` action). Everything else is
/// either immutable (`uuid`, `type`, `v`, `urn`, `origin`) or owned by another
/// action (`state`/`disabled` by activate/enable/disable, `files` by
/// AddImageFile, `icon` by AddImageIcon).
pub const MUTABLE_FIELDS: &[&str] = &[
    "owner",
    "name",
    "version",
    "description",
    "homepage",
    "eula",
    "public",
    "os",
    "acl",
    "requirements",
    "users",
    "billing_tags",
    "traits",
    "tags",
    "generate_passwords",
    "inherited_directories",
    "nic_driver",
    "disk_driver",
    "cpu_type",
    "image_size",
];

/// Fields `imgadm create` copies from the origin image into the new manifest
/// (imgmanifest `fields[].inheritable`).
pub const INHERITED_FIELDS: &[&str] = &[
    "type",
    "os",
    "requirements",
    "users",
    "billing_tags",
    "traits",
    "generate_passwords",
    "inherited_directories",
    "nic_driver",
    "disk_driver",
    "cpu_type",
    "image_size",
];

/// Every supported top-level field, in the order manifests are written out
/// (roughly IMGAPI's serialization order), so stored JSON is stable.
const FIELDS: &[&str] = &[
    "v",
    "uuid",
    "owner",
    "name",
    "version",
    "state",
    "disabled",
    "public",
    "published_at",
    "type",
    "os",
    "files",
    "origin",
    "acl",
    "description",
    "homepage",
    "eula",
    "icon",
    "urn",
    "requirements",
    "users",
    "generate_passwords",
    "inherited_directories",
    "nic_driver",
    "disk_driver",
    "cpu_type",
    "image_size",
    "tags",
    "billing_tags",
    "traits",
    "channels",
    "error",
    "expires_at",
];

/// Known fields in `FIELDS` order, then any others in their original order
/// (stable sort), so stored manifests and their ETags are deterministic.
fn canonical_order(m: Manifest) -> Manifest {
    let rank = |k: &str| FIELDS.iter().position(|f| *f == k).unwrap_or(FIELDS.len());
    let mut entries: Vec<(String, Value)> = m.into_iter().collect();
    entries.sort_by_key(|(k, _)| rank(k));
    entries.into_iter().collect()
}

/// A typed, read-only view of one `files[]` entry: the image's file as the
/// store holds it.
///
/// It reads, it does not judge: [`validate()`] is what guarantees a stored
/// manifest's entry is well formed (40-hex `sha1`, a positive `size`, a known
/// `compression`, a checked `digest`), so for a stored manifest the view
/// always exists when the image has a file. Keys it does not know are
/// ignored here (validate() refuses them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// SHA-1 of the file as stored (compressed), lowercase hex.
    pub sha1: String,
    /// Size of the file as stored, in bytes.
    pub size: u64,
    /// One of [`COMPRESSIONS`].
    pub compression: String,
    /// SHA-256 of the file, lowercase hex: `digest` without its `sha256:`
    /// prefix, when the entry has one.
    pub sha256: Option<String>,
    /// The ZFS guid of the snapshot the file was sent from, when known.
    pub dataset_guid: Option<String>,
}

impl FileEntry {
    /// `files[0]` of `m`: the image's file (IMGAPI allows one).
    ///
    /// `None` when the manifest has no file (no `files`, or an empty array),
    /// or when its entry lacks `sha1`, `size` or `compression` or holds one
    /// with the wrong JSON type, which [`validate()`] refuses.
    pub fn of(m: &Manifest) -> Option<FileEntry> {
        FileEntry::from_value(m.get("files")?.get(0)?)
    }

    /// One `files[]` entry, read as [`FileEntry::of`] reads `files[0]`.
    pub fn from_value(entry: &Value) -> Option<FileEntry> {
        let e = entry.as_object()?;
        let string = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
        Some(FileEntry {
            sha1: string("sha1")?,
            // The same reading validate() applies: `16384.0` is a count too.
            size: e.get("size").and_then(text::as_count)?,
            compression: string("compression")?,
            sha256: digest_sha256(entry).map(str::to_string),
            dataset_guid: string("dataset_guid"),
        })
    }

    /// The SHA-256 hex of `files[0].digest` of `m`, read alone: what names
    /// the file's blob in the store. Alone, so that a record whose entry is
    /// otherwise unusable still names its blob (vacuum and fsck count it).
    pub fn sha256_of(m: &Manifest) -> Option<&str> {
        FileEntry::sha256_in(m.get("files")?)
    }

    /// [`FileEntry::sha256_of`] given the `files` value itself.
    pub fn sha256_in(files: &Value) -> Option<&str> {
        digest_sha256(files.get(0)?)
    }
}

/// A lenient, borrowed view of `files[0]` of a manifest nobody has
/// validated yet (a local file, a remote source's answer, a v1 manifest):
/// each field on its own, when present with the right JSON type, so a
/// partial entry still yields what it has. Stored manifests use
/// [`FileEntry`].
#[derive(Debug, Clone, Copy)]
pub struct UncheckedFile<'a>(&'a Value);

impl<'a> UncheckedFile<'a> {
    /// `files[0]` of `m`, whatever it holds; `None` without one.
    pub fn of(m: &'a Manifest) -> Option<UncheckedFile<'a>> {
        m.get("files")?.get(0).map(UncheckedFile)
    }

    /// [`UncheckedFile::of`] for a manifest that may not be an object.
    pub fn of_value(m: &'a Value) -> Option<UncheckedFile<'a>> {
        m.get("files")?.get(0).map(UncheckedFile)
    }

    fn str(&self, key: &str) -> Option<&'a str> {
        self.0.get(key)?.as_str()
    }

    /// `sha1`.
    pub fn sha1(&self) -> Option<&'a str> {
        self.str("sha1")
    }

    /// `size`, only as a JSON integer.
    pub fn size(&self) -> Option<u64> {
        self.0.get("size")?.as_u64()
    }

    /// `compression`, unchecked.
    pub fn compression(&self) -> Option<&'a str> {
        self.str("compression")
    }

    /// `digest` without its `sha256:` prefix.
    pub fn sha256(&self) -> Option<&'a str> {
        digest_sha256(self.0)
    }

    /// `path`: the file's name beside the manifest (v1/DSAPI and
    /// `imgadm` directories; a v2 manifest may not keep it).
    pub fn path(&self) -> Option<&'a str> {
        self.str("path")
    }

    /// `url`: where a DSAPI server serves the file (v1 only).
    pub fn url(&self) -> Option<&'a str> {
        self.str("url")
    }
}

/// `digest` of one file entry without its `sha256:` prefix.
fn digest_sha256(entry: &Value) -> Option<&str> {
    entry.get("digest")?.as_str()?.strip_prefix("sha256:")
}

/// Manifests the tests of every submodule start from.
#[cfg(test)]
mod fixtures {
    use super::{FieldError, Manifest};
    use serde_json::{json, Value};

    pub(super) const UUID: &str = "1f9b7958-289e-4ea3-8f88-5486a40d6823";
    pub(super) const OWNER: &str = "930896af-bf8c-48d4-885c-6573a94b1853";
    pub(super) const ORIGIN: &str = "f9f8d4e5-30d9-438e-88f7-ea745370049b";
    pub(super) const SHA1: &str = "3dcf0d8695bf81a05a6272ccdc5048dd025acceb";

    pub(super) fn obj(v: Value) -> Manifest {
        v.as_object().expect("test value is an object").clone()
    }

    /// The smallest valid stored manifest: freshly created, unactivated.
    pub(super) fn minimal() -> Manifest {
        obj(json!({
            "v": 2, "uuid": UUID, "owner": OWNER, "name": "foo", "version": "1.2.3",
            "state": "unactivated", "disabled": false, "public": false,
            "type": "zone-dataset", "os": "smartos"
        }))
    }

    /// An active zone-dataset with (nearly) every optional field.
    pub(super) fn active_zone() -> Manifest {
        obj(json!({
            "v": 2, "uuid": UUID, "owner": OWNER, "name": "base-64 lts/x_y.z",
            "version": "1.2.3+master-20131204T013417Z-gcafebab",
            "state": "active", "disabled": false, "public": true,
            "published_at": "2012-11-02T22:46:45.992Z",
            "type": "zone-dataset", "os": "smartos",
            "files": [{ "sha1": SHA1, "size": 121737890, "compression": "gzip",
                        "dataset_guid": "1234567890",
                        "digest": format!("sha256:{}", "a".repeat(64)) }],
            "origin": ORIGIN,
            "acl": ["df6ea68c-6549-486c-9479-1d48d54ae066"],
            "description": "good manifest",
            "homepage": "http://imgapi.co", "eula": "https://imgapi.co/eula",
            "icon": true, "urn": "sdc:sdc:foo:1.2.3",
            "requirements": {
                "networks": [{ "name": "net0", "description": "public" }],
                "brand": "joyent", "ssh_key": true, "min_ram": 256, "max_ram": 1024,
                "min_platform": { "7.0": "20130729T063445Z", "6.5": "20120614T001014Z" },
                "max_platform": { "7.0": "20991231T235959Z" }
            },
            "users": [{ "name": "root" }, { "name": "admin" }],
            "generate_passwords": false,
            "inherited_directories": ["/usr/bin"],
            "tags": { "homeric": true, "nested": { "a": [1, 2] } },
            "billing_tags": ["xxl"],
            "traits": { "provisionable": true, "ssd": "yes", "list": [1] },
            "channels": ["release"]
        }))
    }

    /// A valid bhyve zvol image.
    pub(super) fn zvol() -> Manifest {
        let mut m = minimal();
        m.extend(obj(json!({
            "type": "zvol", "os": "linux",
            "nic_driver": "virtio", "disk_driver": "virtio", "cpu_type": "host",
            "image_size": 10240,
            "requirements": { "brand": "bhyve", "bootrom": "uefi" }
        })));
        m
    }

    pub(super) fn codes(errs: &[FieldError]) -> Vec<(String, String)> {
        errs.iter()
            .map(|e| (e.field.clone(), e.code.clone()))
            .collect()
    }

    pub(super) fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(f, c)| (f.to_string(), c.to_string()))
            .collect()
    }

    /// Expected (field, code) pairs.
    pub(super) type Expected<'a> = Vec<(&'a str, &'a str)>;
}

#[cfg(test)]
mod tests {
    use super::build::CREATE_NOT_ALLOWED;
    use super::fixtures::*;
    use super::text::is_uuid;
    use super::validate::{REQUIRED_FIELDS, ZVOL_FIELDS};
    use super::*;
    use serde_json::json;

    #[test]
    fn field_error_serializes_in_imgapi_shape() {
        let e = FieldError::invalid("name", "name is bad".into());
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"field": "name", "code": "Invalid", "message": "name is bad"})
        );
        assert_eq!(e.to_string(), "Invalid: name is bad");
    }

    #[test]
    fn field_lists_are_consistent() {
        for list in [
            MUTABLE_FIELDS,
            INHERITED_FIELDS,
            REQUIRED_FIELDS,
            ZVOL_FIELDS,
            CREATE_NOT_ALLOWED,
        ] {
            for f in list {
                assert!(
                    FIELDS.contains(f) || *f == "activated",
                    "{f} is not a field"
                );
            }
        }
        for f in [
            "uuid",
            "type",
            "v",
            "state",
            "files",
            "published_at",
            "origin",
            "urn",
            "disabled",
            "icon",
        ] {
            assert!(!MUTABLE_FIELDS.contains(&f), "{f} must not be mutable");
        }
        let mut sorted = FIELDS.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), FIELDS.len(), "duplicate in FIELDS");
        assert_eq!(COMPRESSIONS, &["none", "gzip", "bzip2", "xz", "zstd"]);
        assert!(is_uuid(NIL_UUID));
    }

    #[test]
    fn file_entry_reads_files_0() {
        let m = active_zone();
        assert_eq!(
            FileEntry::of(&m),
            Some(FileEntry {
                sha1: SHA1.into(),
                size: 121737890,
                compression: "gzip".into(),
                sha256: Some("a".repeat(64)),
                dataset_guid: Some("1234567890".into()),
            })
        );
        // Optional keys may be absent; an integral float is a size.
        let e = json!({"sha1": SHA1, "size": 5.0, "compression": "none"});
        let f = FileEntry::from_value(&e).unwrap();
        assert_eq!((f.size, f.sha256, f.dataset_guid), (5, None, None));
        // A digest that is not SHA-256 gives no sha256.
        let e = json!({"sha1": SHA1, "size": 5, "compression": "none", "digest": "md5:x"});
        assert_eq!(FileEntry::from_value(&e).unwrap().sha256, None);
    }

    #[test]
    fn file_entry_is_none_without_a_usable_file() {
        assert_eq!(FileEntry::of(&minimal()), None);
        let mut m = minimal();
        m.insert("files".into(), json!([]));
        assert_eq!(FileEntry::of(&m), None);
        for bad in [
            json!({"size": 1, "compression": "none"}),
            json!({"sha1": SHA1, "compression": "none"}),
            json!({"sha1": SHA1, "size": 1}),
            json!({"sha1": 1, "size": 1, "compression": "none"}),
            json!({"sha1": SHA1, "size": -1, "compression": "none"}),
            json!({"sha1": SHA1, "size": "1", "compression": "none"}),
            json!("not an object"),
        ] {
            assert_eq!(FileEntry::from_value(&bad), None, "{bad}");
            m.insert("files".into(), json!([bad]));
            assert_eq!(FileEntry::of(&m), None);
        }
    }

    #[test]
    fn unchecked_file_reads_each_field_alone() {
        assert!(UncheckedFile::of(&minimal()).is_none());
        let m = obj(
            json!({"files": [{"sha1": "x", "size": 5.0, "path": "a.zfs.gz",
            "url": "http://h/f", "digest": format!("sha256:{}", "b".repeat(64))}]}),
        );
        let f = UncheckedFile::of(&m).unwrap();
        assert_eq!(
            (f.sha1(), f.size(), f.compression()),
            (Some("x"), None, None)
        );
        assert_eq!((f.path(), f.url()), (Some("a.zfs.gz"), Some("http://h/f")));
        assert_eq!(f.sha256(), Some("b".repeat(64).as_str()));
        assert_eq!(FileEntry::sha256_of(&m), f.sha256());
        assert_eq!(FileEntry::of(&m), None);
        let v = Value::Object(m);
        assert_eq!(UncheckedFile::of_value(&v).unwrap().sha1(), Some("x"));
    }

    #[test]
    fn every_valid_file_entry_has_a_view() {
        for c in COMPRESSIONS {
            let file = json!({"sha1": SHA1, "size": 1, "compression": c});
            let mut m = active_zone();
            m.insert("files".into(), json!([file]));
            assert_eq!(validate(&m), vec![]);
            let f = FileEntry::of(&m).unwrap();
            assert_eq!(
                (f.sha1.as_str(), f.size, f.compression.as_str()),
                (SHA1, 1, *c)
            );
        }
    }
}
