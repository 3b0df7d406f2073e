//! The IMGAPI image manifest, version 2: every rule about what a manifest may
//! contain, and every way a manifest enters the store.
//!
//! This module owns:
//! - the field schema: which top-level fields exist, their JSON types, limits,
//!   and the cross-field rules (zvol-only fields, `published_at`/`files` once
//!   activated, `type:"null"` only for placeholders, ...), applied by [`validate`];
//! - the three ways a manifest is built from a request body: CreateImage
//!   ([`prepare_create`]), AdminImportImage ([`prepare_import`]) and
//!   `?action=update` ([`apply_update`]), i.e. which fields a client may set,
//!   which the server owns, and the defaults;
//! - the v1 ("dsmanifest", DSAPI) to v2 upgrade ([`upgrade_v1`]);
//! - the field lists other code needs: [`MUTABLE_FIELDS`], [`INHERITED_FIELDS`].
//!
//! It does no I/O. Whatever needs the store (does the origin exist, is the uuid
//! free, may this caller see that image) is the service layer's job.
//!
//! The reference is node-imgmanifest 3.2 (IMGAPI's own validator); where the
//! IMGAPI docs and that code disagree, the code wins (name ≤1024, version ≤512,
//! `name`/`version` mutable, `type` immutable). A manifest is stored exactly in
//! the form it is output, so unlike IMGAPI's raw records there is no
//! `activated` (it is `state` ∈ {active, disabled}) and `icon` is a boolean.
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

use serde_json::{Map, Value};

/// A manifest is kept as plain JSON so that unknown or future fields survive a
/// round trip untouched until [`validate`] has judged them.
pub type Manifest = Map<String, Value>;

/// One problem with one field, in IMGAPI's `errors[]` shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// Dotted path of the offending field (`""` for the body itself).
    pub field: String,
    /// `"Missing"`, `"Invalid"` or `"NotAllowed"`.
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
        Self::new(field, "Missing", message)
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

/// Always required in a stored manifest.
const REQUIRED_FIELDS: &[&str] = &[
    "v", "uuid", "owner", "name", "version", "type", "os", "state", "disabled", "public",
];

/// Required when `type` is `zvol` and refused otherwise: they describe the
/// virtual hardware a zvol image boots on, meaningless for a zone dataset.
const ZVOL_FIELDS: &[&str] = &["nic_driver", "disk_driver", "cpu_type", "image_size"];

/// Server-owned fields a CreateImage body may not carry: the uuid is assigned,
/// the state and `published_at` come from activation, files and icon from their
/// uploads, `expires_at` only exists on placeholders, and `urn` is a legacy
/// field that is only ever carried over by an import.
const CREATE_NOT_ALLOWED: &[&str] = &[
    "uuid",
    "state",
    "published_at",
    "files",
    "activated",
    "icon",
    "expires_at",
    "urn",
];

/// Boolean fields for which the strings `"true"`/`"false"` are accepted on
/// input (as IMGAPI's `boolFromString` does) and stored as real booleans.
const STRING_BOOL_FIELDS: &[&str] = &["public", "disabled", "generate_passwords"];

const MAX_NAME_LEN: usize = 1024;
const MAX_VERSION_LEN: usize = 512;
const MAX_DESCRIPTION_LEN: usize = 10 * 1024;
const MAX_URL_LEN: usize = 1024;
const MAX_BILLING_TAG_LEN: usize = 128;
const MAX_TAGS_JSON_LEN: usize = 100 * 1024;
const MAX_FILES: usize = 1;
/// `requirements.min_platform`/`max_platform` values before this year are
/// rejected, as in imgmanifest: no SmartOS platform is older.
const MIN_PLATFORM_YEAR: u32 = 2012;

// ---- validation

/// Validate a complete manifest as stored and output by the server.
///
/// Returns every problem found, in field order (see `FIELDS`), then one
/// `Invalid` per unsupported field; an empty vector means the manifest is
/// valid. Rules that depend on another field (`state`, `type`) are only
/// applied when that field holds a known value, so a typo in `type` yields
/// one error rather than a cascade.
pub fn validate(m: &Manifest) -> Vec<FieldError> {
    let ctx = Ctx::of(m);
    let mut errs = Vec::new();
    for &field in FIELDS {
        match m.get(field) {
            None => {
                if let Some(message) = required_because(field, &ctx) {
                    errs.push(FieldError::missing(field, message));
                }
            }
            Some(value) => check_field(field, value, m, &ctx, &mut errs),
        }
    }
    for key in m.keys() {
        if !FIELDS.contains(&key.as_str()) {
            errs.push(FieldError::invalid(
                key,
                format!("{key} is an unsupported field"),
            ));
        }
    }
    errs
}

/// The values other rules depend on, each kept only if it is itself valid.
struct Ctx<'a> {
    state: Option<&'a str>,
    type_: Option<&'a str>,
}

impl<'a> Ctx<'a> {
    fn of(m: &'a Manifest) -> Self {
        let known = |field: &str, allowed: &[&str]| {
            m.get(field)
                .and_then(Value::as_str)
                .filter(|s| allowed.contains(s))
        };
        Ctx {
            state: known("state", STATES),
            type_: known("type", TYPES),
        }
    }

    /// Activated images (IMGAPI's `activated: true`) must have a file and a
    /// publication date.
    fn activated(&self) -> bool {
        matches!(self.state, Some("active" | "disabled"))
    }

    /// create-from-vm placeholders have no content yet.
    fn placeholder(&self) -> bool {
        matches!(self.state, Some("creating" | "failed"))
    }
}

/// Why `field` is required in this manifest, or `None` if it is optional.
fn required_because(field: &str, ctx: &Ctx) -> Option<String> {
    if REQUIRED_FIELDS.contains(&field) {
        return Some(format!("{field} is required"));
    }
    if matches!(field, "published_at" | "files") && ctx.activated() {
        let state = ctx.state.unwrap_or_default();
        return Some(format!("{field} is required when state is \"{state}\""));
    }
    if ZVOL_FIELDS.contains(&field) && ctx.type_ == Some("zvol") {
        return Some(format!("{field} is required when type is \"zvol\""));
    }
    None
}

fn check_field(field: &str, value: &Value, m: &Manifest, ctx: &Ctx, errs: &mut Vec<FieldError>) {
    match field {
        "v" => match value.as_f64() {
            Some(v) if v == MANIFEST_VERSION as f64 => {}
            Some(_) => errs.push(FieldError::invalid(
                field,
                format!("v must be {MANIFEST_VERSION} (older manifests must be upgraded first)"),
            )),
            None => errs.push(wrong_type(field, "a number", value)),
        },
        "uuid" | "owner" => check_uuid(field, value, errs),
        "origin" => {
            check_uuid(field, value, errs);
            if value.as_str().is_some() && value.as_str() == m.get("uuid").and_then(Value::as_str) {
                errs.push(FieldError::invalid(
                    field,
                    "origin must not be the image's own uuid".to_string(),
                ));
            }
        }
        "name" => check_name(
            field,
            value,
            is_name_char,
            MAX_NAME_LEN,
            "^[A-Za-z0-9._/ -]+$",
            errs,
        ),
        "version" => check_name(
            field,
            value,
            is_version_char,
            MAX_VERSION_LEN,
            "^[A-Za-z0-9._/+-]+$",
            errs,
        ),
        "description" => {
            if let Some(s) = expect_str(field, value, errs) {
                if js_len(s) > MAX_DESCRIPTION_LEN {
                    errs.push(FieldError::invalid(
                        field,
                        format!("description must be at most {MAX_DESCRIPTION_LEN} characters"),
                    ));
                }
            }
        }
        "homepage" | "eula" => {
            if let Some(s) = expect_str(field, value, errs) {
                if !is_http_url(s) || js_len(s) > MAX_URL_LEN {
                    errs.push(FieldError::invalid(
                        field,
                        format!(
                            "{field} must be an http:// or https:// URL of at most \
                             {MAX_URL_LEN} characters"
                        ),
                    ));
                }
            }
        }
        "state" => {
            if let Some(s) = expect_enum(field, value, STATES, errs) {
                // The server sets both; disagreement means a bug or a
                // hand-edited record, and the state machine relies on both.
                match (s, m.get("disabled").and_then(Value::as_bool)) {
                    ("active", Some(true)) => errs.push(FieldError::invalid(
                        field,
                        "state \"active\" requires disabled to be false".to_string(),
                    )),
                    ("disabled", Some(false)) => errs.push(FieldError::invalid(
                        field,
                        "state \"disabled\" requires disabled to be true".to_string(),
                    )),
                    _ => {}
                }
            }
        }
        "disabled" | "public" | "icon" | "generate_passwords" => {
            if !value.is_boolean() {
                errs.push(wrong_type(field, "a boolean", value));
            }
        }
        "published_at" | "expires_at" => {
            if let Some(s) = expect_str(field, value, errs) {
                if !is_timestamp(s) {
                    errs.push(FieldError::invalid(
                        field,
                        format!("{field} must be a UTC timestamp YYYY-MM-DDTHH:MM:SS(.sss)Z"),
                    ));
                }
            }
        }
        "type" => check_kind(field, value, TYPES, ctx, errs),
        "os" => check_kind(field, value, OSES, ctx, errs),
        "files" => check_files(value, ctx, errs),
        "acl" => {
            if let Some(items) = expect_array(field, value, errs) {
                for (i, item) in items.iter().enumerate() {
                    check_uuid(&format!("acl.{i}"), item, errs);
                }
            }
        }
        "urn" => {
            expect_str(field, value, errs);
        }
        "requirements" => check_requirements(value, errs),
        "users" => {
            if let Some(items) = expect_array(field, value, errs) {
                for (i, user) in items.iter().enumerate() {
                    let ok = user.as_object().is_some_and(|u| {
                        u.len() == 1 && u.get("name").is_some_and(Value::is_string)
                    });
                    if !ok {
                        errs.push(FieldError::invalid(
                            &format!("users.{i}"),
                            format!(r#"users.{i} must be {{"name": string}}"#),
                        ));
                    }
                }
            }
        }
        "inherited_directories" => {
            if ctx.type_.is_some_and(|t| t != "zone-dataset") {
                errs.push(FieldError::not_allowed(
                    field,
                    "inherited_directories is only allowed when type is \"zone-dataset\""
                        .to_string(),
                ));
            } else {
                check_string_array(field, value, None, errs);
            }
        }
        "nic_driver" | "disk_driver" | "cpu_type" | "image_size" => {
            if ctx.type_.is_some_and(|t| t != "zvol") {
                errs.push(FieldError::not_allowed(
                    field,
                    format!("{field} is only allowed when type is \"zvol\""),
                ));
            } else if field == "image_size" {
                if as_count(value).is_none() {
                    errs.push(FieldError::invalid(
                        field,
                        format!(
                            "image_size must be a non-negative integer (MiB), got {}",
                            type_name(value)
                        ),
                    ));
                }
            } else if value.as_str() == Some("") {
                errs.push(FieldError::invalid(
                    field,
                    format!("{field} must be a non-empty string"),
                ));
            } else if !value.is_string() {
                errs.push(wrong_type(field, "a non-empty string", value));
            }
        }
        "tags" => {
            if let Some(tags) = expect_object(field, value, errs) {
                // IMGAPI limits the serialized size (JS `.length`), so match it.
                let len = serde_json::to_string(tags).map_or(0, |json| js_len(&json));
                if len > MAX_TAGS_JSON_LEN {
                    errs.push(FieldError::invalid(
                        field,
                        format!(
                            "tags must serialize to at most {MAX_TAGS_JSON_LEN} characters \
                             of JSON, got {len}"
                        ),
                    ));
                }
            }
        }
        "billing_tags" => check_string_array(field, value, Some(MAX_BILLING_TAG_LEN), errs),
        "traits" => {
            if let Some(traits) = expect_object(field, value, errs) {
                for (key, v) in traits {
                    if !(v.is_string() || v.is_boolean() || v.is_array()) {
                        errs.push(FieldError::invalid(
                            field,
                            format!(
                                "traits value for \"{}\" must be a string, boolean or array, \
                                 got {}",
                                clip(key),
                                type_name(v)
                            ),
                        ));
                    }
                }
            }
        }
        "channels" => check_string_array(field, value, None, errs),
        "error" => check_error(value, errs),
        _ => unreachable!("every name in FIELDS has a rule: {field}"),
    }
}

fn check_uuid(field: &str, value: &Value, errs: &mut Vec<FieldError>) {
    if let Some(s) = expect_str(field, value, errs) {
        if !is_uuid(s) {
            errs.push(FieldError::invalid(
                field,
                format!("{field} must be a lowercase UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"),
            ));
        }
    }
}

/// `name` and `version`: one message for charset and length, as the pattern
/// and the limit are one rule to a client.
fn check_name(
    field: &str,
    value: &Value,
    allowed: fn(char) -> bool,
    max: usize,
    pattern: &str,
    errs: &mut Vec<FieldError>,
) {
    if let Some(s) = expect_str(field, value, errs) {
        if s.is_empty() || s.len() > max || !s.chars().all(allowed) {
            errs.push(FieldError::invalid(
                field,
                format!("{field} must match {pattern} and be at most {max} characters"),
            ));
        }
    }
}

/// `type` and `os`: an enum, or `"null"` while a placeholder has no content.
fn check_kind(field: &str, value: &Value, allowed: &[&str], ctx: &Ctx, errs: &mut Vec<FieldError>) {
    if value.as_str() == Some("null") {
        if !ctx.placeholder() {
            errs.push(FieldError::invalid(
                field,
                format!(
                    "{field} \"null\" is only allowed while state is \"creating\" or \"failed\""
                ),
            ));
        }
        return;
    }
    expect_enum(field, value, allowed, errs);
}

fn check_files(value: &Value, ctx: &Ctx, errs: &mut Vec<FieldError>) {
    let Some(files) = expect_array("files", value, errs) else {
        return;
    };
    if files.len() > MAX_FILES {
        errs.push(FieldError::invalid(
            "files",
            format!(
                "files must have at most {MAX_FILES} entry, got {}",
                files.len()
            ),
        ));
    } else if files.is_empty() && ctx.activated() {
        errs.push(FieldError::invalid(
            "files",
            format!(
                "files must have an entry when state is \"{}\"",
                ctx.state.unwrap_or_default()
            ),
        ));
    }
    for (i, file) in files.iter().enumerate() {
        check_file(i, file, errs);
    }
}

fn check_file(i: usize, file: &Value, errs: &mut Vec<FieldError>) {
    let base = format!("files.{i}");
    let Some(file) = expect_object(&base, file, errs) else {
        return;
    };
    for required in ["sha1", "size", "compression"] {
        if !file.contains_key(required) {
            let path = format!("{base}.{required}");
            errs.push(FieldError::missing(&path, format!("{path} is required")));
        }
    }
    for (key, v) in file {
        let path = format!("{base}.{key}");
        let problem = match key.as_str() {
            "sha1" => (!v.as_str().is_some_and(|s| is_lower_hex(s, 40)))
                .then_some("must be 40 lowercase hex characters"),
            // imgmanifest rejects 0 (`!file.size`), and IMGAPI refuses empty uploads.
            "size" => (as_count(v).unwrap_or(0) == 0).then_some("must be a positive integer"),
            "compression" => (!v.as_str().is_some_and(|s| COMPRESSIONS.contains(&s)))
                .then_some("must be one of none, gzip, bzip2, xz, zstd"),
            "digest" => (!v.as_str().is_some_and(is_sha256_digest))
                .then_some("must be \"sha256:\" followed by 64 lowercase hex characters"),
            "dataset_guid" => (!v.is_string()).then_some("must be a string"),
            _ => Some("is an unsupported file field"),
        };
        if let Some(problem) = problem {
            errs.push(FieldError::invalid(&path, format!("{path} {problem}")));
        }
    }
}

fn check_requirements(value: &Value, errs: &mut Vec<FieldError>) {
    let Some(reqs) = expect_object("requirements", value, errs) else {
        return;
    };
    for (key, v) in reqs {
        let path = format!("requirements.{key}");
        match key.as_str() {
            "networks" => {
                let Some(nets) = expect_array(&path, v, errs) else {
                    continue;
                };
                for (i, net) in nets.iter().enumerate() {
                    let ok = net.as_object().is_some_and(|n| {
                        n.len() == 2
                            && n.get("name").is_some_and(Value::is_string)
                            && n.get("description").is_some_and(Value::is_string)
                    });
                    if !ok {
                        let p = format!("{path}.{i}");
                        errs.push(FieldError::invalid(
                            &p,
                            format!(r#"{p} must be {{"name": string, "description": string}}"#),
                        ));
                    }
                }
            }
            "brand" => {
                expect_str(&path, v, errs);
            }
            "ssh_key" => {
                if !v.is_boolean() {
                    errs.push(wrong_type(&path, "a boolean", v));
                }
            }
            "min_ram" | "max_ram" => {
                if as_count(v).is_none() {
                    errs.push(FieldError::invalid(
                        &path,
                        format!(
                            "{path} must be a non-negative integer (MiB), got {}",
                            type_name(v)
                        ),
                    ));
                }
            }
            "min_platform" | "max_platform" => {
                let Some(platforms) = expect_object(&path, v, errs) else {
                    continue;
                };
                if platforms.is_empty() {
                    errs.push(FieldError::invalid(
                        &path,
                        format!("{path} must not be empty"),
                    ));
                }
                for (ver, stamp) in platforms {
                    if !stamp.as_str().is_some_and(is_platform_stamp) {
                        errs.push(FieldError::invalid(
                            &path,
                            format!(
                                "{path} entry \"{}\" must be a platform build stamp \
                                 YYYYMMDDTHHMMSSZ (year {MIN_PLATFORM_YEAR} or later)",
                                clip(ver)
                            ),
                        ));
                    }
                }
            }
            "bootrom" => {
                expect_enum(&path, v, &["bios", "uefi"], errs);
                // Only bhyve has a selectable bootrom. imgmanifest reports a
                // missing brand on the bootrom field, with code Missing.
                match reqs.get("brand") {
                    None => errs.push(FieldError::missing(
                        &path,
                        format!("{path} requires requirements.brand to be \"bhyve\""),
                    )),
                    Some(Value::String(b)) if b != "bhyve" => errs.push(FieldError::invalid(
                        &path,
                        format!(
                            "{path} is not supported with brand \"{}\"; requirements.brand \
                             must be \"bhyve\"",
                            clip(b)
                        ),
                    )),
                    // A non-string brand is already reported on the brand.
                    _ => {}
                }
            }
            _ => errs.push(FieldError::invalid(
                &path,
                format!("{path} is an unsupported requirement"),
            )),
        }
    }
    let ram = |k: &str| reqs.get(k).and_then(as_count);
    if let (Some(min), Some(max)) = (ram("min_ram"), ram("max_ram")) {
        if min > max {
            errs.push(FieldError::invalid(
                "requirements.max_ram",
                format!("requirements.max_ram ({max}) must not be less than min_ram ({min})"),
            ));
        }
    }
}

/// `error` records why a create-from-vm workflow failed: `{message, code?, stack?}`.
fn check_error(value: &Value, errs: &mut Vec<FieldError>) {
    let Some(error) = expect_object("error", value, errs) else {
        return;
    };
    if !error.contains_key("message") {
        errs.push(FieldError::missing(
            "error.message",
            "error.message is required".to_string(),
        ));
    }
    for (key, v) in error {
        let path = format!("error.{key}");
        if !matches!(key.as_str(), "message" | "code" | "stack") {
            errs.push(FieldError::invalid(
                &path,
                format!("{path} is an unsupported field"),
            ));
        } else if !v.is_string() {
            errs.push(wrong_type(&path, "a string", v));
        }
    }
}

/// An array of strings, each at most `max` characters; one error per bad item.
fn check_string_array(field: &str, value: &Value, max: Option<usize>, errs: &mut Vec<FieldError>) {
    let Some(items) = expect_array(field, value, errs) else {
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let path = format!("{field}.{i}");
        match (item.as_str(), max) {
            (None, _) => errs.push(wrong_type(&path, "a string", item)),
            (Some(s), Some(max)) if js_len(s) > max => errs.push(FieldError::invalid(
                &path,
                format!("{path} must be at most {max} characters"),
            )),
            _ => {}
        }
    }
}

// ---- typed accessors that report a wrong JSON type

fn wrong_type(field: &str, expected: &str, value: &Value) -> FieldError {
    FieldError::invalid(
        field,
        format!("{field} must be {expected}, got {}", type_name(value)),
    )
}

fn expect_str<'a>(field: &str, value: &'a Value, errs: &mut Vec<FieldError>) -> Option<&'a str> {
    let s = value.as_str();
    if s.is_none() {
        errs.push(wrong_type(field, "a string", value));
    }
    s
}

fn expect_array<'a>(
    field: &str,
    value: &'a Value,
    errs: &mut Vec<FieldError>,
) -> Option<&'a Vec<Value>> {
    let a = value.as_array();
    if a.is_none() {
        errs.push(wrong_type(field, "an array", value));
    }
    a
}

fn expect_object<'a>(
    field: &str,
    value: &'a Value,
    errs: &mut Vec<FieldError>,
) -> Option<&'a Manifest> {
    let o = value.as_object();
    if o.is_none() {
        errs.push(wrong_type(field, "an object", value));
    }
    o
}

fn expect_enum<'a>(
    field: &str,
    value: &'a Value,
    allowed: &[&str],
    errs: &mut Vec<FieldError>,
) -> Option<&'a str> {
    let s = expect_str(field, value, errs)?;
    if allowed.contains(&s) {
        Some(s)
    } else {
        errs.push(FieldError::invalid(
            field,
            format!(
                "{field} must be one of {} (got \"{}\")",
                allowed.join(", "),
                clip(s)
            ),
        ));
        None
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A non-negative integer. JSON has one number type, so `16384.0` counts too:
/// a JavaScript producer cannot tell the two apart.
fn as_count(value: &Value) -> Option<u64> {
    if let Some(n) = value.as_u64() {
        return Some(n);
    }
    let f = value.as_f64()?;
    // 2^53: beyond it a float no longer holds every integer exactly.
    (f >= 0.0 && f.fract() == 0.0 && f <= 9_007_199_254_740_992.0).then_some(f as u64)
}

// ---- hand-written character-class checks (no regex crate)

/// Length as JavaScript's `.length` counts it (UTF-16 units), so the limits
/// match IMGAPI's for non-ASCII text too.
fn js_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Shorten a client-supplied string before echoing it in a message.
fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX).collect();
        out.push('…');
        out
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | ' ' | '-')
}

fn is_version_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '+' | '-')
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`: any
/// version, but lowercase only, since uuids are compared as strings.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        })
}

fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|hex| is_lower_hex(hex, 64))
}

fn all_digits(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}

/// `YYYY-MM-DDTHH:MM:SS(.sss)Z`, and a real calendar instant.
fn is_timestamp(s: &str) -> bool {
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
fn is_platform_stamp(s: &str) -> bool {
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
fn is_http_url(s: &str) -> bool {
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
/// layer never has to know the format [`validate`] enforces.
pub fn format_timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

// ---- building manifests from requests

/// CreateImage (`POST /images`): build the manifest to store from a client's
/// body and the uuid the server assigned.
///
/// Server-owned fields in the body (`uuid`, `state`, `published_at`, `files`,
/// `activated`, `icon`, `expires_at`, `urn`) are refused with `NotAllowed`. A
/// `null` value counts as absent. Defaults: `v` 2, `owner` [`NIL_UUID`],
/// `public` and `disabled` false; `state` is always `unactivated`. The strings
/// `"true"`/`"false"` become booleans for `public`, `disabled` and
/// `generate_passwords`, and a decimal string `image_size` a number (as
/// IMGAPI's `Image.create` does). The result is in canonical field order.
///
/// # Errors
/// Every problem found: the `NotAllowed` fields first, then [`validate`]'s
/// findings on the rest. A body that is not an object gives the single error
/// `{field: "", code: "Invalid", message: "manifest must be a JSON object"}`.
pub fn prepare_create(body: &Value, uuid: &str) -> Result<Manifest, Vec<FieldError>> {
    let mut m = body_object(body)?;
    let mut errs = Vec::new();
    for &field in CREATE_NOT_ALLOWED {
        if m.remove(field).is_some() {
            errs.push(FieldError::not_allowed(
                field,
                format!("{field} is set by the server and cannot be given to CreateImage"),
            ));
        }
    }
    m.insert("uuid".into(), Value::from(uuid));
    m.insert("state".into(), Value::from("unactivated"));
    apply_defaults(&mut m);
    finish(m, errs)
}

/// AdminImportImage (`POST /images/:uuid?action=import`): build the manifest
/// to store from another server's manifest (typically its GetImage output).
///
/// A v1 manifest is upgraded first ([`upgrade_v1`]). The body's `uuid` must be
/// present and equal `path_uuid`. `published_at`, `origin` and `urn` are
/// kept. The file itself is uploaded afterwards (AddImageFile) and the image
/// then activated, so `state` is forced to `unactivated` and `disabled` to
/// false whatever the body says.
///
/// `files`, `activated` and `icon` are accepted and dropped, as IMGAPI's
/// `Image.create` drops `files`: they describe the source server's copy.
/// Keeping `files` would let an image be activated with no blob behind it,
/// since "has a file" means "has `files[0]`". `expires_at` is refused:
/// placeholders are never imported. Nulls, defaults and normalisation as in
/// [`prepare_create`].
///
/// # Errors
/// Every problem found, including a `Missing`/`Invalid` `uuid` for a missing
/// or mismatched body uuid (validation then proceeds with `path_uuid`).
pub fn prepare_import(body: &Value, path_uuid: &str) -> Result<Manifest, Vec<FieldError>> {
    let mut m = upgrade_v1(&body_object(body)?);
    let mut errs = Vec::new();
    match m.get("uuid") {
        None => errs.push(FieldError::missing(
            "uuid",
            format!(
                "uuid is required and must equal the uuid in the path ({})",
                clip(path_uuid)
            ),
        )),
        Some(Value::String(s)) if s == path_uuid => {}
        Some(other) => errs.push(FieldError::invalid(
            "uuid",
            format!(
                "uuid in the body ({}) does not match the uuid in the path ({})",
                clip(&other.to_string()),
                clip(path_uuid)
            ),
        )),
    }
    if m.remove("expires_at").is_some() {
        errs.push(FieldError::not_allowed(
            "expires_at",
            "expires_at is set by the server and cannot be imported".to_string(),
        ));
    }
    for dropped in ["files", "activated", "icon"] {
        m.remove(dropped);
    }
    m.insert("uuid".into(), Value::from(path_uuid));
    m.insert("state".into(), Value::from("unactivated"));
    m.insert("disabled".into(), Value::Bool(false));
    apply_defaults(&mut m);
    finish(m, errs)
}

/// `?action=update`: apply `changes` (a JSON object) to `current`.
///
/// Only [`MUTABLE_FIELDS`] may appear; a `null` value deletes the field. The
/// merged manifest is normalised like a create body and validated as a whole,
/// so e.g. deleting a required field, or setting `nic_driver` on a
/// zone-dataset, is refused.
///
/// # Errors
/// `NotAllowed` for each field that may not be updated, plus [`validate`]'s
/// findings on the merged result. `changes` that is not an object, or is
/// empty, gives a single error on field `""`.
pub fn apply_update(current: &Manifest, changes: &Value) -> Result<Manifest, Vec<FieldError>> {
    let Some(changes) = changes.as_object() else {
        return Err(vec![FieldError::invalid(
            "",
            "update must be a JSON object".to_string(),
        )]);
    };
    if changes.is_empty() {
        return Err(vec![FieldError::missing(
            "",
            "update must change at least one field".to_string(),
        )]);
    }
    let mut m = current.clone();
    let mut errs = Vec::new();
    for (key, value) in changes {
        if !MUTABLE_FIELDS.contains(&key.as_str()) {
            errs.push(FieldError::not_allowed(
                key,
                format!("{key} cannot be changed with ?action=update"),
            ));
        } else if value.is_null() {
            m.remove(key);
        } else {
            m.insert(key.clone(), value.clone());
        }
    }
    finish(m, errs)
}

/// The body as an owned map with `null` members dropped, or the one error for
/// a body that is not an object.
fn body_object(body: &Value) -> Result<Manifest, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::invalid(
            "",
            "manifest must be a JSON object".to_string(),
        )]);
    };
    // null means "not set" in a body, as it means "delete" in an update.
    Ok(obj
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

fn apply_defaults(m: &mut Manifest) {
    let defaults = [
        ("v", Value::from(MANIFEST_VERSION)),
        ("owner", Value::from(NIL_UUID)),
        ("public", Value::Bool(false)),
        ("disabled", Value::Bool(false)),
    ];
    for (field, value) in defaults {
        m.entry(field).or_insert(value);
    }
}

/// Normalise, validate, and return the manifest in canonical order unless
/// `errs` (earlier findings) or validation found anything.
fn finish(mut m: Manifest, mut errs: Vec<FieldError>) -> Result<Manifest, Vec<FieldError>> {
    normalise(&mut m);
    errs.extend(validate(&m));
    if errs.is_empty() {
        Ok(canonical_order(m))
    } else {
        Err(errs)
    }
}

/// Input spellings IMGAPI accepts and stores as the proper JSON type.
fn normalise(m: &mut Manifest) {
    for &field in STRING_BOOL_FIELDS {
        let b = match m.get(field).and_then(Value::as_str) {
            Some("true") => true,
            Some("false") => false,
            _ => continue,
        };
        m.insert(field.into(), Value::Bool(b));
    }
    // IMGAPI-104: old zvol manifests carry image_size as a string.
    if let Some(n) = m
        .get("image_size")
        .and_then(Value::as_str)
        .and_then(parse_count)
    {
        m.insert("image_size".into(), Value::from(n));
    }
}

fn parse_count(s: &str) -> Option<u64> {
    if s.is_empty() || !all_digits(s.as_bytes()) {
        return None;
    }
    s.parse().ok()
}

/// Known fields in `FIELDS` order, then any others in their original order
/// (stable sort), so stored manifests and their ETags are deterministic.
fn canonical_order(m: Manifest) -> Manifest {
    let rank = |k: &str| FIELDS.iter().position(|f| *f == k).unwrap_or(FIELDS.len());
    let mut entries: Vec<(String, Value)> = m.into_iter().collect();
    entries.sort_by_key(|(k, _)| rank(k));
    entries.into_iter().collect()
}

// ---- v1 upgrade

/// Upgrade a v1 "dsmanifest" (DSAPI, no `v` or `v` < 2) to v2, as
/// imgmanifest's `upgradeManifest` does; anything else is returned unchanged.
///
/// - `creator_uuid` becomes `owner`; `vendor_uuid`, `creator_name`,
///   `cloud_name`, `creator_admin`, `owner_uuid`, `platform_type`,
///   `created_at`, `updated_at` and `_url` are dropped;
/// - `restricted_to_uuid` becomes `acl: [it]` with `public: false`, otherwise
///   `public: true`;
/// - `disabled` defaults to false and `state` becomes `disabled` or `active`
///   (DSAPI only listed published datasets);
/// - `published_at` defaults to `created_at`, and `YYYY-MM-DDTHH:MMZ` gains
///   `:00` seconds;
/// - each file without `compression` gets it from the extension of its `path`
///   (or `url`): `.gz` gzip, `.bz2` bzip2, `.xz` xz, `.zst` zstd, else none;
///   `path` and `url` are dropped;
/// - a decimal-string `image_size` becomes a number;
/// - `urn` and every other field are kept, and `v` becomes 2.
///
/// It never fails: whatever it cannot make sense of is left for [`validate`].
pub fn upgrade_v1(m: &Manifest) -> Manifest {
    if !is_v1(m) {
        return m.clone();
    }
    let mut m = m.clone();

    if let Some(creator) = m.remove("creator_uuid") {
        m.entry("owner").or_insert(creator);
    }
    for dropped in [
        "vendor_uuid",
        "creator_name",
        "cloud_name",
        // Bogus field in some datasets.joyent.com records (DATASET-629).
        "creator_admin",
        "owner_uuid",
        "platform_type",
        "updated_at",
        // Stashed by pre-v2 imgadm.
        "_url",
    ] {
        m.remove(dropped);
    }

    match m.remove("restricted_to_uuid") {
        Some(r) if truthy(&r) => {
            m.insert("public".into(), Value::Bool(false));
            m.insert("acl".into(), Value::Array(vec![r]));
        }
        _ => {
            m.insert("public".into(), Value::Bool(true));
        }
    }

    let disabled = m.get("disabled").is_some_and(truthy);
    m.insert("disabled".into(), Value::Bool(disabled));
    let state = if disabled { "disabled" } else { "active" };
    m.insert("state".into(), Value::from(state));

    let created_at = m.remove("created_at");
    if !m.get("published_at").is_some_and(truthy) {
        if let Some(created) = created_at.filter(truthy) {
            m.insert("published_at".into(), created);
        }
    }
    // IMGAPI requires seconds; early DSAPI dates had none.
    if let Some(p) = m.get("published_at").and_then(Value::as_str) {
        let b = p.as_bytes();
        if b.len() == 17 && b[10] == b'T' && b[13] == b':' && b[16] == b'Z' {
            let fixed = format!("{}:00Z", &p[..16]);
            m.insert("published_at".into(), Value::from(fixed));
        }
    }

    if let Some(Value::Array(files)) = m.get_mut("files") {
        for file in files.iter_mut().filter_map(Value::as_object_mut) {
            let path = file.remove("path");
            let url = file.remove("url");
            let source = path.filter(truthy).or(url);
            if !file.get("compression").is_some_and(truthy) {
                let name = source.as_ref().and_then(Value::as_str).unwrap_or_default();
                file.insert(
                    "compression".into(),
                    Value::from(compression_from_name(name)),
                );
            }
        }
    }

    if let Some(n) = m
        .get("image_size")
        .and_then(Value::as_str)
        .and_then(parse_count)
    {
        m.insert("image_size".into(), Value::from(n));
    }

    m.insert("v".into(), Value::from(MANIFEST_VERSION));
    canonical_order(m)
}

/// imgmanifest's test: no `v` but a `creator_uuid` (a v1-only field), or a
/// numeric `v` below 2.
fn is_v1(m: &Manifest) -> bool {
    match m.get("v") {
        None | Some(Value::Null) => m.contains_key("creator_uuid"),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|v| v < MANIFEST_VERSION as f64),
        Some(Value::String(s)) => s.parse::<f64>().is_ok_and(|v| v < MANIFEST_VERSION as f64),
        Some(_) => false,
    }
}

/// JavaScript truthiness, except that the string "false" is false: DSAPI
/// records sometimes stored booleans as strings.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty() && s != "false",
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Compression from a file name's last extension, ignoring any URL query.
fn compression_from_name(name: &str) -> &'static str {
    let name = name.split(['?', '#']).next().unwrap_or_default();
    let base = name.rsplit('/').next().unwrap_or_default();
    match base.rsplit_once('.').map(|(_, ext)| ext) {
        Some("gz") => "gzip",
        Some("bz2") => "bzip2",
        Some("xz") => "xz",
        Some("zst") => "zstd",
        _ => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const UUID: &str = "1f9b7958-289e-4ea3-8f88-5486a40d6823";
    const OWNER: &str = "930896af-bf8c-48d4-885c-6573a94b1853";
    const ORIGIN: &str = "f9f8d4e5-30d9-438e-88f7-ea745370049b";
    const SHA1: &str = "3dcf0d8695bf81a05a6272ccdc5048dd025acceb";

    fn obj(v: Value) -> Manifest {
        v.as_object().expect("test value is an object").clone()
    }

    /// The smallest valid stored manifest: freshly created, unactivated.
    fn minimal() -> Manifest {
        obj(json!({
            "v": 2, "uuid": UUID, "owner": OWNER, "name": "foo", "version": "1.2.3",
            "state": "unactivated", "disabled": false, "public": false,
            "type": "zone-dataset", "os": "smartos"
        }))
    }

    /// An active zone-dataset with (nearly) every optional field.
    fn active_zone() -> Manifest {
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
    fn zvol() -> Manifest {
        let mut m = minimal();
        m.extend(obj(json!({
            "type": "zvol", "os": "linux",
            "nic_driver": "virtio", "disk_driver": "virtio", "cpu_type": "host",
            "image_size": 10240,
            "requirements": { "brand": "bhyve", "bootrom": "uefi" }
        })));
        m
    }

    /// A create-from-vm placeholder that failed.
    fn placeholder() -> Manifest {
        let mut m = minimal();
        m.extend(obj(json!({
            "type": "null", "os": "null", "state": "failed",
            "expires_at": "2030-01-08T00:00:00.000Z",
            "error": { "message": "prepare-image failed", "code": "PrepareImageError" }
        })));
        m
    }

    /// `base` with `set` applied: `Some` inserts, `None` removes.
    fn with(base: Manifest, set: &[(&str, Option<Value>)]) -> Manifest {
        let mut m = base;
        for (k, v) in set {
            match v {
                Some(v) => m.insert(k.to_string(), v.clone()),
                None => m.remove(*k),
            };
        }
        m
    }

    fn codes(errs: &[FieldError]) -> Vec<(String, String)> {
        errs.iter()
            .map(|e| (e.field.clone(), e.code.clone()))
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(f, c)| (f.to_string(), c.to_string()))
            .collect()
    }

    /// Expected (field, code) pairs.
    type Expected<'a> = Vec<(&'a str, &'a str)>;

    /// `base` with `key` set to `value`.
    fn set(base: Manifest, key: &str, value: Value) -> Manifest {
        with(base, &[(key, Some(value))])
    }

    /// [`minimal`] with a single file entry.
    fn one_file(file: Value) -> Manifest {
        set(minimal(), "files", json!([file]))
    }

    /// The expected errors for a single `Invalid` field.
    fn inv(field: &str) -> [(&str, &str); 1] {
        [(field, "Invalid")]
    }

    fn accepts(case: &str, m: Manifest) {
        assert_eq!(validate(&m), vec![], "case {case:?} should be valid");
    }

    /// `validate(m)` reports exactly `expected` (field, code) pairs, in
    /// order, and the first message contains `msg`.
    fn rejects(case: &str, m: Manifest, expected: &[(&str, &str)], msg: &str) {
        let errs = validate(&m);
        assert_eq!(codes(&errs), pairs(expected), "case {case:?}: {errs:#?}");
        assert!(
            errs[0].message.contains(msg),
            "case {case:?}: message {:?} lacks {msg:?}",
            errs[0].message
        );
    }

    #[test]
    fn accepts_valid_manifests() {
        let m = minimal;
        accepts("minimal", m());
        accepts("active zone-dataset, every field", active_zone());
        let disabled = [
            ("state", Some(json!("disabled"))),
            ("disabled", Some(json!(true))),
        ];
        accepts("disabled", with(active_zone(), &disabled));
        accepts("bhyve zvol", zvol());
        let bios = json!({"brand": "bhyve", "bootrom": "bios"});
        accepts("bios bootrom", set(zvol(), "requirements", bios));
        accepts("failed placeholder", placeholder());
        let creating = [("state", Some(json!("creating"))), ("error", None)];
        accepts("creating placeholder", with(placeholder(), &creating));
        for t in TYPES.iter().filter(|t| **t != "zvol") {
            accepts(t, set(m(), "type", json!(t)));
        }
        for os in OSES {
            accepts(os, set(m(), "os", json!(os)));
        }
        for c in COMPRESSIONS {
            let file = json!({"sha1": SHA1, "size": 1, "compression": c});
            accepts(c, set(active_zone(), "files", json!([file])));
        }
        let stamp = json!("2012-11-02T22:46:45Z");
        accepts(
            "published_at without millis",
            set(m(), "published_at", stamp),
        );
        let unactivated = set(active_zone(), "state", json!("unactivated"));
        accepts("unactivated with file and date (import)", unactivated);
        accepts("unactivated, disabled", set(m(), "disabled", json!(true)));
        accepts("unactivated, no files", set(m(), "files", json!([])));
        let ram = json!({"min_ram": 0, "max_ram": 0});
        accepts("min_ram == max_ram == 0", set(m(), "requirements", ram));
        accepts("integral float", set(zvol(), "image_size", json!(16384.0)));
        accepts("name at limit", set(m(), "name", json!("n".repeat(1024))));
        accepts(
            "version at limit",
            set(m(), "version", json!("1".repeat(512))),
        );
        // The limit counts UTF-16 units, like IMGAPI's JavaScript.
        let long = json!("é".repeat(10240));
        accepts("description at limit", set(m(), "description", long));
        let url = json!("HTTPS://example.com/x");
        accepts("scheme in capitals", set(m(), "homepage", url));
        let empties = [("acl", Some(json!([]))), ("tags", Some(json!({})))];
        accepts("empty acl and tags", with(m(), &empties));
        let tag = json!(["b".repeat(128)]);
        accepts("billing tag at limit", set(m(), "billing_tags", tag));
    }

    #[test]
    fn rejects_missing_required_fields() {
        let m = minimal;
        rejects(
            "no v",
            with(m(), &[("v", None)]),
            &[("v", "Missing")],
            "v is required",
        );
        rejects(
            "no name, version",
            with(m(), &[("name", None), ("version", None)]),
            &[("name", "Missing"), ("version", "Missing")],
            "name is required",
        );
        rejects(
            "no owner, state, disabled, public",
            with(
                m(),
                &[
                    ("state", None),
                    ("disabled", None),
                    ("public", None),
                    ("owner", None),
                ],
            ),
            &[
                ("owner", "Missing"),
                ("state", "Missing"),
                ("disabled", "Missing"),
                ("public", "Missing"),
            ],
            "owner is required",
        );
        rejects(
            "no uuid, type, os",
            with(m(), &[("uuid", None), ("type", None), ("os", None)]),
            &[("uuid", "Missing"), ("type", "Missing"), ("os", "Missing")],
            "uuid is required",
        );
    }

    #[test]
    fn rejects_bad_version_and_uuids() {
        let m = minimal;
        rejects("v 1", set(m(), "v", json!(1)), &inv("v"), "v must be 2");
        let msg = "v must be a number, got string";
        rejects("v string", set(m(), "v", json!("2")), &inv("v"), msg);
        let upper = json!(UUID.to_uppercase());
        let msg = "uuid must be a lowercase UUID";
        rejects("uppercase uuid", set(m(), "uuid", upper), &inv("uuid"), msg);
        let short = json!("930896af-bf8c-48d4-885c");
        rejects(
            "short owner",
            set(m(), "owner", short),
            &inv("owner"),
            "owner must be",
        );
        let msg = "owner must be a string, got number";
        rejects(
            "owner number",
            set(m(), "owner", json!(7)),
            &inv("owner"),
            msg,
        );
        let dashless = json!("1f9b7958x289ex4ea3x8f88x5486a40d6823");
        rejects(
            "no dashes",
            set(m(), "uuid", dashless),
            &inv("uuid"),
            "uuid",
        );
        let msg = "origin must be a lowercase UUID";
        rejects(
            "bad origin",
            set(m(), "origin", json!("x")),
            &inv("origin"),
            msg,
        );
        let msg = "origin must not be the image's own uuid";
        rejects(
            "self origin",
            set(m(), "origin", json!(UUID)),
            &inv("origin"),
            msg,
        );
    }

    #[test]
    fn rejects_bad_text_fields() {
        let m = minimal;
        let name_msg = "name must match ^[A-Za-z0-9._/ -]+$ and be at most 1024 characters";
        let bad_names = [
            json!("foo:bar"),
            json!(""),
            json!("fóo"),
            json!("n".repeat(1025)),
        ];
        for name in bad_names {
            rejects("bad name", set(m(), "name", name), &inv("name"), name_msg);
        }
        let msg = "name must be a string, got null";
        rejects(
            "null name",
            set(m(), "name", Value::Null),
            &inv("name"),
            msg,
        );
        let version_msg = "version must match ^[A-Za-z0-9._/+-]+$ and be at most 512 characters";
        for version in [json!("1.0 beta"), json!("1".repeat(513)), json!("1:0")] {
            rejects(
                "bad version",
                set(m(), "version", version),
                &inv("version"),
                version_msg,
            );
        }
        let msg = "version must be a string, got number";
        rejects(
            "version number",
            set(m(), "version", json!(1.2)),
            &inv("version"),
            msg,
        );

        let long = json!("d".repeat(10241));
        let msg = "description must be at most 10240 characters";
        rejects(
            "description",
            set(m(), "description", long),
            &inv("description"),
            msg,
        );
        let msg = "description must be a string, got array";
        rejects(
            "description",
            set(m(), "description", json!([])),
            &inv("description"),
            msg,
        );

        let url_msg = "homepage must be an http:// or https:// URL of at most 1024 characters";
        for url in [
            "ftp://example.com",
            "http://",
            "example.com",
            "http://a b",
            "javascript:x",
        ] {
            rejects(
                url,
                set(m(), "homepage", json!(url)),
                &inv("homepage"),
                url_msg,
            );
        }
        let long = json!(format!("http://x/{}", "e".repeat(1020)));
        rejects(
            "eula too long",
            set(m(), "eula", long),
            &inv("eula"),
            "eula must be",
        );
        let msg = "urn must be a string";
        rejects("urn number", set(m(), "urn", json!(1)), &inv("urn"), msg);
    }

    #[test]
    fn rejects_bad_enums_and_booleans() {
        let m = minimal;
        let msg =
            r#"type must be one of zone-dataset, zvol, lx-dataset, lxd, docker, other (got "vm")"#;
        rejects("bad type", set(m(), "type", json!("vm")), &inv("type"), msg);
        rejects(
            "bad os",
            set(m(), "os", json!("my-os")),
            &inv("os"),
            r#"(got "my-os")"#,
        );
        let msg = "state must be one of active, unactivated, disabled, creating, failed";
        rejects(
            "bad state",
            set(m(), "state", json!("installed")),
            &inv("state"),
            msg,
        );
        let msg = r#"type "null" is only allowed while state is "creating" or "failed""#;
        rejects(
            "type null",
            set(m(), "type", json!("null")),
            &inv("type"),
            msg,
        );
        rejects(
            "os null",
            set(m(), "os", json!("null")),
            &inv("os"),
            r#"os "null""#,
        );
        let msg = "type must be a string, got null";
        rejects(
            "JSON null type",
            set(m(), "type", Value::Null),
            &inv("type"),
            msg,
        );

        for field in ["public", "disabled", "icon", "generate_passwords"] {
            let msg = format!("{field} must be a boolean, got string");
            rejects(field, set(m(), field, json!("true")), &inv(field), &msg);
            let msg = format!("{field} must be a boolean, got number");
            rejects(field, set(m(), field, json!(0)), &inv(field), &msg);
        }

        let msg = r#"state "active" requires disabled to be false"#;
        let m = set(active_zone(), "disabled", json!(true));
        rejects("active but disabled", m, &inv("state"), msg);
        let msg = r#"state "disabled" requires disabled to be true"#;
        let m = set(active_zone(), "state", json!("disabled"));
        rejects("disabled state, disabled false", m, &inv("state"), msg);
    }

    #[test]
    fn rejects_bad_timestamps_and_unpublished_activation() {
        rejects(
            "active without published_at, files",
            with(active_zone(), &[("published_at", None), ("files", None)]),
            &[("published_at", "Missing"), ("files", "Missing")],
            r#"published_at is required when state is "active""#,
        );
        rejects(
            "disabled without files",
            with(
                active_zone(),
                &[
                    ("state", Some(json!("disabled"))),
                    ("disabled", Some(json!(true))),
                    ("files", None),
                ],
            ),
            &[("files", "Missing")],
            r#"files is required when state is "disabled""#,
        );
        let m = set(active_zone(), "files", json!([]));
        let msg = r#"files must have an entry when state is "active""#;
        rejects("active, empty files", m, &inv("files"), msg);

        let bad = [
            "2012-11-02T22:46:45.992",
            "2012-11-02T22:46Z",
            "2012-11-02T22:46:45.99Z",
            "2012-13-02T22:46:45Z",
            "2013-02-30T00:00:00Z",
            "2012-11-02T22:46:45+00:00",
            "2012-11-02 22:46:45Z",
        ];
        let msg = "published_at must be a UTC timestamp YYYY-MM-DDTHH:MM:SS(.sss)Z";
        for stamp in bad {
            let m = set(minimal(), "published_at", json!(stamp));
            rejects(stamp, m, &inv("published_at"), msg);
        }
        let m = set(minimal(), "published_at", json!(1351896405));
        rejects(
            "number",
            m,
            &inv("published_at"),
            "must be a string, got number",
        );
        let m = set(minimal(), "expires_at", json!("tomorrow"));
        let msg = "expires_at must be a UTC timestamp";
        rejects("expires_at", m, &inv("expires_at"), msg);
    }

    #[test]
    fn rejects_bad_files() {
        let file = |k: &str, v: Value| {
            let mut f = json!({"sha1": SHA1, "size": 1, "compression": "none"});
            f[k] = v;
            one_file(f)
        };
        let m = set(minimal(), "files", json!({"sha1": SHA1}));
        rejects(
            "object",
            m,
            &inv("files"),
            "files must be an array, got object",
        );
        let entry = json!({"sha1": SHA1, "size": 1, "compression": "gzip"});
        let m = set(active_zone(), "files", json!([entry, entry]));
        rejects(
            "two files",
            m,
            &inv("files"),
            "files must have at most 1 entry, got 2",
        );
        let m = one_file(json!("file0"));
        rejects(
            "entry string",
            m,
            &inv("files.0"),
            "files.0 must be an object",
        );
        rejects(
            "empty entry",
            one_file(json!({})),
            &[
                ("files.0.sha1", "Missing"),
                ("files.0.size", "Missing"),
                ("files.0.compression", "Missing"),
            ],
            "files.0.sha1 is required",
        );
        let msg = "files.0.sha1 must be 40 lowercase hex characters";
        for sha1 in [
            json!(SHA1.to_uppercase()),
            json!("abc"),
            json!(1),
            json!(format!("{SHA1}0")),
        ] {
            rejects("sha1", file("sha1", sha1), &inv("files.0.sha1"), msg);
        }
        let msg = "files.0.size must be a positive integer";
        for size in [json!(0), json!(-1), json!("12"), json!(1.5), Value::Null] {
            rejects("size", file("size", size), &inv("files.0.size"), msg);
        }
        let msg = "files.0.compression must be one of none, gzip, bzip2, xz, zstd";
        for c in [json!("lz4"), json!("GZIP"), json!(true)] {
            rejects(
                "compression",
                file("compression", c),
                &inv("files.0.compression"),
                msg,
            );
        }
        let msg = r#"files.0.digest must be "sha256:" followed by 64 lowercase hex characters"#;
        for d in [json!("sha1:abc"), json!(format!("sha256:{SHA1}")), json!(5)] {
            rejects("digest", file("digest", d), &inv("files.0.digest"), msg);
        }
        let msg = "files.0.dataset_guid must be a string";
        let m = file("dataset_guid", json!(12));
        rejects("dataset_guid", m, &inv("files.0.dataset_guid"), msg);
        let msg = "files.0.url is an unsupported file field";
        rejects(
            "unknown",
            file("url", json!("http://x")),
            &inv("files.0.url"),
            msg,
        );
    }

    #[test]
    fn rejects_bad_requirements() {
        let reqs = |r: Value| set(minimal(), "requirements", r);
        let msg = "requirements must be an object, got array";
        rejects("array", reqs(json!([])), &inv("requirements"), msg);
        let msg = "requirements.cpu is an unsupported requirement";
        rejects(
            "unknown",
            reqs(json!({"cpu": 4})),
            &inv("requirements.cpu"),
            msg,
        );

        let path = "requirements.networks";
        let msg = "requirements.networks must be an array";
        rejects(
            "networks",
            reqs(json!({"networks": "net0"})),
            &inv(path),
            msg,
        );
        let msg = r#"requirements.networks.0 must be {"name": string, "description": string}"#;
        let bad = [
            json!({"name": "net0"}),
            json!({"name": "a", "description": "b", "c": 1}),
            json!({"name": 1, "description": "b"}),
            json!("net0"),
        ];
        for net in bad {
            let m = reqs(json!({ "networks": [net] }));
            rejects("network", m, &inv("requirements.networks.0"), msg);
        }

        let msg = "requirements.brand must be a string";
        rejects(
            "brand",
            reqs(json!({"brand": 1})),
            &inv("requirements.brand"),
            msg,
        );
        let msg = "requirements.ssh_key must be a boolean";
        let m = reqs(json!({"ssh_key": "yes"}));
        rejects("ssh_key", m, &inv("requirements.ssh_key"), msg);
        for key in ["min_ram", "max_ram"] {
            let path = format!("requirements.{key}");
            let msg = format!("{path} must be a non-negative integer (MiB)");
            for v in [json!(-1), json!("1024"), json!(1.5)] {
                rejects(key, reqs(json!({ key: v })), &inv(&path), &msg);
            }
        }
        let m = reqs(json!({"min_ram": 2048, "max_ram": 1024}));
        let msg = "requirements.max_ram (1024) must not be less than min_ram (2048)";
        rejects("min > max", m, &inv("requirements.max_ram"), msg);

        for key in ["min_platform", "max_platform"] {
            let path = format!("requirements.{key}");
            let msg = format!("{path} must be an object");
            rejects(
                key,
                reqs(json!({ key: "20130729T063445Z" })),
                &inv(&path),
                &msg,
            );
            let msg = format!("{path} must not be empty");
            rejects(key, reqs(json!({ key: {} })), &inv(&path), &msg);
        }
        let stamps = json!({
            "a": "20111231T000000Z",
            "b": "20131301T000000Z",
            "c": "20130100T000000Z",
            "d": "20130101T240000Z",
            "e": "20130101T006000Z",
            "f": "2013-01-01T00:00Z",
            "g": "2013010xT000000Z",
            "h": 20130101
        });
        let msg = r#"min_platform entry "a" must be a platform build stamp YYYYMMDDTHHMMSSZ"#;
        let m = reqs(json!({ "min_platform": stamps }));
        rejects(
            "stamps",
            m,
            &[("requirements.min_platform", "Invalid"); 8],
            msg,
        );

        let path = "requirements.bootrom";
        let bootrom = |r: Value| set(zvol(), "requirements", r);
        let msg = "requirements.bootrom must be one of bios, uefi";
        let m = bootrom(json!({"brand": "bhyve", "bootrom": "/some/path"}));
        rejects("bootrom value", m, &inv(path), msg);
        let msg = r#"requirements.bootrom requires requirements.brand to be "bhyve""#;
        let m = bootrom(json!({"bootrom": "uefi"}));
        rejects("no brand", m, &[(path, "Missing")], msg);
        let msg = r#"requirements.bootrom is not supported with brand "kvm""#;
        let m = bootrom(json!({"brand": "kvm", "bootrom": "uefi"}));
        rejects("kvm", m, &inv(path), msg);
        let m = bootrom(json!({"brand": "kvm", "bootrom": "bad"}));
        rejects(
            "both",
            m,
            &[(path, "Invalid"), (path, "Invalid")],
            "must be one of",
        );
    }

    #[test]
    fn rejects_bad_collections() {
        let m = minimal;
        let msg = "acl must be an array, got string";
        rejects("acl", set(m(), "acl", json!(OWNER)), &inv("acl"), msg);
        rejects(
            "acl items",
            set(m(), "acl", json!([OWNER, "x", 3])),
            &[("acl.1", "Invalid"), ("acl.2", "Invalid")],
            "acl.1 must be a lowercase UUID",
        );

        let msg = "users must be an array, got object";
        rejects(
            "users",
            set(m(), "users", json!({"name": "root"})),
            &inv("users"),
            msg,
        );
        rejects(
            "users items",
            set(
                m(),
                "users",
                json!([{"name": "root"}, "x", {"name": "x", "uid": 1}, {"name": 5}]),
            ),
            &[
                ("users.1", "Invalid"),
                ("users.2", "Invalid"),
                ("users.3", "Invalid"),
            ],
            r#"users.1 must be {"name": string}"#,
        );

        let tags = json!(["ok", "b".repeat(129), 1]);
        rejects(
            "billing_tags",
            set(m(), "billing_tags", tags),
            &[("billing_tags.1", "Invalid"), ("billing_tags.2", "Invalid")],
            "billing_tags.1 must be at most 128 characters",
        );

        let msg = "traits must be an object, got array";
        rejects(
            "traits",
            set(m(), "traits", json!(["a"])),
            &inv("traits"),
            msg,
        );
        rejects(
            "trait values",
            set(m(), "traits", json!({"n": 1, "o": {}, "ok": "s"})),
            &[("traits", "Invalid"), ("traits", "Invalid")],
            r#"traits value for "n" must be a string, boolean or array, got number"#,
        );

        let msg = "tags must be an object, got array";
        rejects("tags", set(m(), "tags", json!(["a=b"])), &inv("tags"), msg);
        let big = json!({"big": "t".repeat(100 * 1024)});
        let msg = "tags must serialize to at most 102400 characters of JSON, got 102410";
        rejects("tags too big", set(m(), "tags", big), &inv("tags"), msg);

        let msg = "channels must be an array";
        rejects(
            "channels",
            set(m(), "channels", json!("dev")),
            &inv("channels"),
            msg,
        );
        let msg = "channels.1 must be a string, got null";
        let m = set(minimal(), "channels", json!(["dev", null]));
        rejects("channel item", m, &inv("channels.1"), msg);

        let msg = "error must be an object, got string";
        let m = set(placeholder(), "error", json!("boom"));
        rejects("error", m, &inv("error"), msg);
        rejects(
            "error shape",
            set(placeholder(), "error", json!({"code": 1, "extra": "x"})),
            &[
                ("error.message", "Missing"),
                ("error.code", "Invalid"),
                ("error.extra", "Invalid"),
            ],
            "error.message is required",
        );
    }

    #[test]
    fn rejects_fields_that_do_not_fit_the_type() {
        let m = set(zvol(), "inherited_directories", json!(["/opt"]));
        let msg = r#"inherited_directories is only allowed when type is "zone-dataset""#;
        rejects(
            "dirs on zvol",
            m,
            &[("inherited_directories", "NotAllowed")],
            msg,
        );
        let m = set(minimal(), "inherited_directories", json!(["/opt", 1]));
        let msg = "inherited_directories.1 must be a string";
        rejects(
            "dirs items",
            m,
            &[("inherited_directories.1", "Invalid")],
            msg,
        );

        let m = with(
            zvol(),
            &[
                ("nic_driver", None),
                ("disk_driver", None),
                ("cpu_type", None),
                ("image_size", None),
            ],
        );
        let expected: Vec<(&str, &str)> = ZVOL_FIELDS.iter().map(|f| (*f, "Missing")).collect();
        let msg = r#"nic_driver is required when type is "zvol""#;
        rejects("zvol without drivers", m, &expected, msg);

        for t in TYPES.iter().filter(|t| **t != "zvol") {
            let mut m = set(minimal(), "type", json!(t));
            m.extend(obj(json!({"nic_driver": "virtio", "disk_driver": "virtio",
                                "cpu_type": "host", "image_size": 10})));
            let expected: Vec<(&str, &str)> =
                ZVOL_FIELDS.iter().map(|f| (*f, "NotAllowed")).collect();
            let msg = r#"nic_driver is only allowed when type is "zvol""#;
            rejects(t, m, &expected, msg);
        }

        let msg = "disk_driver must be a non-empty string";
        let m = set(zvol(), "disk_driver", json!(""));
        rejects("empty driver", m, &inv("disk_driver"), msg);
        let msg = "cpu_type must be a non-empty string, got number";
        rejects(
            "cpu number",
            set(zvol(), "cpu_type", json!(1)),
            &inv("cpu_type"),
            msg,
        );
        let msg = "image_size must be a non-negative integer (MiB), got";
        for size in [json!("16384"), json!(-5), json!(1.5)] {
            let m = set(zvol(), "image_size", size);
            rejects("image_size", m, &inv("image_size"), msg);
        }
    }

    #[test]
    fn rejects_unknown_top_level_fields() {
        let m = with(
            minimal(),
            &[
                ("activated", Some(json!(true))),
                ("creator_uuid", Some(json!(OWNER))),
            ],
        );
        rejects(
            "unknown",
            m,
            &[("activated", "Invalid"), ("creator_uuid", "Invalid")],
            "activated is an unsupported field",
        );
    }

    /// Cases ported from node-imgmanifest `test/basics.test.js`, translated
    /// to our stored form (`activated` becomes `state`), with the expected
    /// errors IMGAPI gives (`MissingParameter` is our `Missing`).
    #[test]
    fn imgmanifest_corpus() {
        let dc = || {
            obj(json!({
                "v": 2, "uuid": UUID, "urn": "booga:booga", "name": "foo",
                "version": "1.2.3", "public": true, "type": "zone-dataset",
                "os": "smartos", "owner": OWNER, "disabled": false, "state": "unactivated"
            }))
        };
        accepts("good, dc", dc());
        let v = set(
            dc(),
            "version",
            json!("1.2.3+master-20131204T013417Z-gcafebab"),
        );
        accepts("good, + in version", v);
        let reqs = json!({"min_platform": {"7.0": "20130729T063445Z", "6.5": "20120614T001014Z"}});
        accepts("good, min_platform", set(dc(), "requirements", reqs));
        rejects(
            "no state or disabled",
            with(dc(), &[("state", None), ("disabled", None)]),
            &[("state", "Missing"), ("disabled", "Missing")],
            "state is required",
        );
        let m = set(dc(), "state", json!("installed"));
        rejects("bad state", m, &[("state", "Invalid")], "installed");
        let m = set(dc(), "public", json!("proto"));
        rejects("bad public", m, &[("public", "Invalid")], "public");
        let file = json!({"sha1": SHA1, "size": 121737890, "compression": "gzip"});
        let active = [
            ("state", Some(json!("active"))),
            ("files", Some(json!([file]))),
        ];
        rejects(
            "missing published_at",
            with(dc(), &active),
            &[("published_at", "Missing")],
            "published_at is required",
        );
        let m = with(zvol(), &[("nic_driver", None), ("disk_driver", None)]);
        rejects(
            "bad zvol, no drivers",
            m,
            &[("nic_driver", "Missing"), ("disk_driver", "Missing")],
            "nic_driver",
        );
    }

    #[test]
    fn every_message_names_its_field() {
        let bad = obj(json!({
            "v": "x", "uuid": 1, "name": [], "version": {}, "state": "nope", "disabled": "no",
            "public": 1, "type": "vm", "os": 2,
            "files": [{"sha1": 1, "size": "x", "compression": 3}],
            "requirements": {"min_ram": "a", "networks": [1]}, "tags": 1, "traits": 1,
            "users": [1], "billing_tags": 1, "acl": [1], "homepage": "x", "bogus": 1
        }));
        let errs = validate(&bad);
        assert!(errs.len() >= 20, "{errs:#?}");
        for e in errs {
            assert!(e.message.starts_with(&e.field), "{e:?}");
        }
    }

    #[test]
    fn several_errors_reported_at_once_in_field_order() {
        let m = with(
            active_zone(),
            &[
                ("name", Some(json!("bad:name"))),
                ("published_at", None),
                ("os", Some(json!("plan9"))),
                (
                    "requirements",
                    Some(json!({"min_ram": 4, "max_ram": 2, "cpu": 1})),
                ),
                ("zzz", Some(json!(1))),
            ],
        );
        assert_eq!(
            codes(&validate(&m)),
            pairs(&[
                ("name", "Invalid"),
                ("published_at", "Missing"),
                ("os", "Invalid"),
                ("requirements.cpu", "Invalid"),
                ("requirements.max_ram", "Invalid"),
                ("zzz", "Invalid"),
            ])
        );
    }

    #[test]
    fn dependent_rules_do_not_cascade_from_an_invalid_value() {
        // A bad type neither requires the zvol fields nor forbids them.
        let m = with(zvol(), &[("type", Some(json!("zvl")))]);
        assert_eq!(codes(&validate(&m)), pairs(&[("type", "Invalid")]));
        let m = with(minimal(), &[("type", Some(json!("zvl")))]);
        assert_eq!(codes(&validate(&m)), pairs(&[("type", "Invalid")]));
        // A bad state does not require files.
        let m = with(minimal(), &[("state", Some(json!(1)))]);
        assert_eq!(codes(&validate(&m)), pairs(&[("state", "Invalid")]));
    }

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

    // ---- CreateImage

    fn create_body() -> Value {
        json!({"name": "foo", "version": "1.0", "type": "zone-dataset", "os": "smartos"})
    }

    #[test]
    fn create_fills_defaults_and_server_fields() {
        let m = prepare_create(&create_body(), UUID).unwrap();
        assert_eq!(
            Value::Object(m.clone()),
            json!({
                "v": 2, "uuid": UUID, "owner": NIL_UUID, "name": "foo", "version": "1.0",
                "state": "unactivated", "disabled": false, "public": false,
                "type": "zone-dataset", "os": "smartos"
            })
        );
        // Canonical order, whatever the body's order.
        let keys: Vec<&str> = m.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "v", "uuid", "owner", "name", "version", "state", "disabled", "public", "type",
                "os"
            ]
        );
        assert_eq!(validate(&m), vec![]);
    }

    #[test]
    fn create_keeps_client_fields_and_normalises() {
        let mut body = create_body();
        let extra = json!({
            "owner": OWNER, "public": "true", "disabled": "false", "generate_passwords": "false",
            "description": null, "origin": ORIGIN, "acl": [OWNER], "tags": {"a": "b"},
            "requirements": {"min_ram": 512}, "v": 2
        });
        body.as_object_mut().unwrap().extend(obj(extra));
        let m = prepare_create(&body, UUID).unwrap();
        assert_eq!(m["owner"], json!(OWNER));
        assert_eq!(m["public"], json!(true));
        assert_eq!(m["disabled"], json!(false));
        assert_eq!(m["generate_passwords"], json!(false));
        assert_eq!(m["origin"], json!(ORIGIN));
        assert_eq!(m["tags"], json!({"a": "b"}));
        assert!(!m.contains_key("description"), "null means absent");

        let zvol_body = json!({"name": "z", "version": "1", "type": "zvol", "os": "linux",
            "nic_driver": "virtio", "disk_driver": "virtio", "cpu_type": "host",
            "image_size": "16384"});
        let m = prepare_create(&zvol_body, UUID).unwrap();
        assert_eq!(m["image_size"], json!(16384));
    }

    #[test]
    fn create_refuses_server_owned_fields() {
        let mut body = create_body();
        body.as_object_mut().unwrap().extend(obj(json!({
            "uuid": ORIGIN, "state": "active", "published_at": "2012-11-02T22:46:45Z",
            "files": [], "activated": true, "icon": true, "expires_at": "2030-01-01T00:00:00Z",
            "urn": "sdc:x"
        })));
        let errs = prepare_create(&body, UUID).unwrap_err();
        let expected: Vec<(&str, &str)> = CREATE_NOT_ALLOWED
            .iter()
            .map(|f| (*f, "NotAllowed"))
            .collect();
        assert_eq!(codes(&errs), pairs(&expected));
        assert!(
            errs[1].message.contains("state is set by the server"),
            "{errs:?}"
        );
    }

    #[test]
    fn create_reports_every_error_together() {
        let body = json!({"state": "active", "name": "a:b", "type": "vm", "os": "smartos",
                          "public": "maybe", "frob": 1});
        let errs = prepare_create(&body, "NOT-A-UUID").unwrap_err();
        assert_eq!(
            codes(&errs),
            pairs(&[
                ("state", "NotAllowed"),
                ("uuid", "Invalid"),
                ("name", "Invalid"),
                ("version", "Missing"),
                ("public", "Invalid"),
                ("type", "Invalid"),
                ("frob", "Invalid"),
            ])
        );
    }

    #[test]
    fn bodies_must_be_objects() {
        let expected = vec![FieldError {
            field: String::new(),
            code: "Invalid".into(),
            message: "manifest must be a JSON object".into(),
        }];
        for body in [json!([]), json!("x"), Value::Null, json!(1)] {
            assert_eq!(prepare_create(&body, UUID).unwrap_err(), expected);
            assert_eq!(prepare_import(&body, UUID).unwrap_err(), expected);
        }
    }

    // ---- AdminImportImage

    /// What another IMGAPI's GetImage returns for an active image.
    fn export() -> Value {
        let mut m = active_zone();
        m.remove("channels");
        Value::Object(m)
    }

    #[test]
    fn import_keeps_published_at_and_origin_and_resets_state() {
        let mut body = export();
        body["disabled"] = json!(true);
        body["state"] = json!("disabled");
        body["activated"] = json!(true);
        let m = prepare_import(&body, UUID).unwrap();
        assert_eq!(m["state"], json!("unactivated"));
        assert_eq!(m["disabled"], json!(false));
        assert_eq!(m["published_at"], body["published_at"]);
        assert_eq!(m["origin"], json!(ORIGIN));
        assert_eq!(m["urn"], body["urn"]);
        assert_eq!(m["owner"], json!(OWNER));
        // The file and icon are uploaded to this server later.
        for dropped in ["files", "activated", "icon"] {
            assert!(!m.contains_key(dropped), "{dropped}");
        }
        assert_eq!(validate(&m), vec![]);
    }

    #[test]
    fn import_defaults_like_create() {
        let body = json!({"uuid": UUID, "name": "foo", "version": "1.0", "type": "zone-dataset",
                          "os": "smartos", "public": "true"});
        let m = prepare_import(&body, UUID).unwrap();
        assert_eq!(m["v"], json!(2));
        assert_eq!(m["owner"], json!(NIL_UUID));
        assert_eq!(m["public"], json!(true));
        assert_eq!(m["state"], json!("unactivated"));
    }

    #[test]
    fn import_checks_uuid_against_path() {
        let cases: Vec<(Value, &str, Expected)> = vec![
            (json!(ORIGIN), UUID, vec![("uuid", "Invalid")]),
            (json!(5), UUID, vec![("uuid", "Invalid")]),
            (json!("NOPE"), "NOPE", vec![("uuid", "Invalid")]),
        ];
        for (uuid, path, expected) in cases {
            let mut body = export();
            body["uuid"] = uuid;
            let errs = prepare_import(&body, path).unwrap_err();
            assert_eq!(codes(&errs), pairs(&expected), "{errs:?}");
        }
        let mut body = export();
        body.as_object_mut().unwrap().remove("uuid");
        let errs = prepare_import(&body, UUID).unwrap_err();
        assert_eq!(codes(&errs), pairs(&[("uuid", "Missing")]));
        assert!(errs[0].message.contains(UUID));

        let mut body = export();
        body["uuid"] = json!(ORIGIN);
        let errs = prepare_import(&body, UUID).unwrap_err();
        assert!(errs[0].message.contains("does not match"), "{errs:?}");
    }

    #[test]
    fn import_refuses_placeholder_fields_and_validates() {
        let mut body = export();
        body["expires_at"] = json!("2030-01-01T00:00:00Z");
        body["name"] = json!("a:b");
        // Dropped, so never judged.
        body["files"] = json!([{"sha1": "x"}]);
        let errs = prepare_import(&body, UUID).unwrap_err();
        assert_eq!(
            codes(&errs),
            pairs(&[("expires_at", "NotAllowed"), ("name", "Invalid")])
        );
    }

    #[test]
    fn import_upgrades_v1_manifests() {
        let body = json!({
            "uuid": UUID, "creator_uuid": OWNER, "vendor_uuid": OWNER, "name": "foo",
            "version": "1.0", "type": "zone-dataset", "os": "smartos",
            "created_at": "2012-10-11T14:40:57.936Z", "urn": "sdc:sdc:foo:1.0",
            "files": [{"path": "foo.zfs.gz", "sha1": SHA1, "size": 10,
                       "url": "https://x/foo.zfs.gz"}]
        });
        let m = prepare_import(&body, UUID).unwrap();
        assert_eq!(m["owner"], json!(OWNER));
        assert_eq!(m["public"], json!(true));
        assert_eq!(m["state"], json!("unactivated"));
        assert_eq!(m["published_at"], json!("2012-10-11T14:40:57.936Z"));
        assert_eq!(m["urn"], json!("sdc:sdc:foo:1.0"));
        for gone in ["creator_uuid", "vendor_uuid", "created_at", "files"] {
            assert!(!m.contains_key(gone), "{gone}");
        }
    }

    // ---- update

    #[test]
    fn update_sets_and_deletes_fields() {
        let current = active_zone();
        let changes = json!({"description": "new", "homepage": null, "tags": {"x": 1},
                             "name": "renamed", "public": "false"});
        let m = apply_update(&current, &changes).unwrap();
        assert_eq!(m["description"], json!("new"));
        assert!(!m.contains_key("homepage"));
        assert_eq!(m["tags"], json!({"x": 1}));
        assert_eq!(m["name"], json!("renamed"));
        assert_eq!(m["public"], json!(false));
        // Untouched fields stay, and order stays canonical.
        assert_eq!(m["files"], current["files"]);
        let keys: Vec<&String> = m.keys().collect();
        let mut expected: Vec<&String> = current.keys().filter(|k| *k != "homepage").collect();
        expected.sort_by_key(|k| FIELDS.iter().position(|f| f == k));
        assert_eq!(keys, expected);
    }

    #[test]
    fn update_refuses_immutable_fields() {
        for field in [
            "uuid",
            "type",
            "state",
            "files",
            "published_at",
            "v",
            "disabled",
            "icon",
            "origin",
            "urn",
            "channels",
            "error",
            "activated",
            "bogus",
        ] {
            let errs = apply_update(&minimal(), &json!({ field: null })).unwrap_err();
            assert_eq!(codes(&errs), pairs(&[(field, "NotAllowed")]), "{field}");
            assert!(errs[0].message.contains("cannot be changed"), "{errs:?}");
        }
        // Mixed: the refused field and the validation failure are both reported.
        let errs = apply_update(&minimal(), &json!({"uuid": ORIGIN, "name": "a:b"})).unwrap_err();
        assert_eq!(
            codes(&errs),
            pairs(&[("uuid", "NotAllowed"), ("name", "Invalid")])
        );
    }

    #[test]
    fn update_result_is_revalidated() {
        let cases: Vec<(Manifest, Value, Expected)> = vec![
            (
                minimal(),
                json!({"owner": null}),
                vec![("owner", "Missing")],
            ),
            (
                minimal(),
                json!({"nic_driver": "virtio"}),
                vec![("nic_driver", "NotAllowed")],
            ),
            (
                zvol(),
                json!({"cpu_type": null}),
                vec![("cpu_type", "Missing")],
            ),
            (
                zvol(),
                json!({"requirements": {"brand": "kvm", "bootrom": "bios"}}),
                vec![("requirements.bootrom", "Invalid")],
            ),
            (minimal(), json!({"acl": ["x"]}), vec![("acl.0", "Invalid")]),
            (
                minimal(),
                json!({"public": "yes"}),
                vec![("public", "Invalid")],
            ),
        ];
        for (current, changes, expected) in cases {
            let errs = apply_update(&current, &changes).unwrap_err();
            assert_eq!(codes(&errs), pairs(&expected), "{changes}");
        }
        // Deleting an optional field and fixing a zvol are fine.
        assert!(apply_update(&zvol(), &json!({"requirements": null})).is_ok());
        let m = apply_update(&zvol(), &json!({"image_size": "20480"})).unwrap();
        assert_eq!(m["image_size"], json!(20480));
    }

    #[test]
    fn update_needs_a_nonempty_object() {
        let errs = apply_update(&minimal(), &json!([])).unwrap_err();
        assert_eq!(codes(&errs), pairs(&[("", "Invalid")]));
        assert_eq!(errs[0].message, "update must be a JSON object");
        let errs = apply_update(&minimal(), &json!({})).unwrap_err();
        assert_eq!(codes(&errs), pairs(&[("", "Missing")]));
    }

    // ---- v1 upgrade

    /// A DSAPI-era zvol record in the shape datasets.joyent.com served.
    fn v1_zvol() -> Manifest {
        obj(json!({
            "name": "ubuntu", "version": "2.0.0", "type": "zvol", "cpu_type": "qemu64",
            "description": "Ubuntu", "created_at": "2012-11-30T11:40Z",
            "updated_at": "2012-11-30T11:40:03.494Z", "os": "linux", "image_size": "16384",
            "files": [{"path": "ubuntu-2.0.0.zfs.bz2", "sha1": SHA1, "size": 12,
                       "url": "https://ds.example/ubuntu-2.0.0.zfs.bz2"}],
            "requirements": {"networks": [{"name": "net0", "description": "public"}]},
            "disk_driver": "virtio", "nic_driver": "virtio", "uuid": UUID,
            "creator_uuid": OWNER, "vendor_uuid": OWNER, "creator_name": "sdc",
            "platform_type": "smartos", "cloud_name": "sdc", "urn": "sdc:sdc:ubuntu:2.0.0",
            "restricted_to_uuid": "df6ea68c-6549-486c-9479-1d48d54ae066",
            "_url": "https://ds.example"
        }))
    }

    #[test]
    fn upgrade_v1_maps_fields() {
        let m = upgrade_v1(&v1_zvol());
        assert_eq!(
            Value::Object(m.clone()),
            json!({
                "v": 2, "uuid": UUID, "owner": OWNER, "name": "ubuntu", "version": "2.0.0",
                "state": "active", "disabled": false, "public": false,
                "published_at": "2012-11-30T11:40:00Z", "type": "zvol", "os": "linux",
                "files": [{"sha1": SHA1, "size": 12, "compression": "bzip2"}],
                "acl": ["df6ea68c-6549-486c-9479-1d48d54ae066"],
                "description": "Ubuntu", "urn": "sdc:sdc:ubuntu:2.0.0",
                "requirements": {"networks": [{"name": "net0", "description": "public"}]},
                "nic_driver": "virtio", "disk_driver": "virtio", "cpu_type": "qemu64",
                "image_size": 16384
            })
        );
        assert_eq!(validate(&m), vec![]);
    }

    #[test]
    fn upgrade_v1_details() {
        // Unrestricted → public; disabled → state disabled; published_at wins
        // over created_at; compression kept when given, inferred otherwise.
        let m = upgrade_v1(&obj(json!({
            "uuid": UUID, "creator_uuid": OWNER, "disabled": true, "owner_uuid": OWNER,
            "published_at": "2013-01-01T00:00:00Z", "created_at": "2012-01-01T00:00:00Z",
            "creator_admin": false,
            "files": [{"path": "a.zfs", "compression": "xz"}, {"url": "https://h/b.zfs.gz?sig=1"},
                      {"path": "c.zfs.zst"}, {}]
        })));
        assert_eq!(m["public"], json!(true));
        assert_eq!(m["disabled"], json!(true));
        assert_eq!(m["state"], json!("disabled"));
        assert_eq!(m["published_at"], json!("2013-01-01T00:00:00Z"));
        assert_eq!(
            m["files"],
            json!([
                {"compression": "xz"},
                {"compression": "gzip"},
                {"compression": "zstd"},
                {"compression": "none"}
            ])
        );
        for gone in ["creator_uuid", "owner_uuid", "created_at", "creator_admin"] {
            assert!(!m.contains_key(gone), "{gone}");
        }
        // String "false" is not truthy for disabled.
        let m = upgrade_v1(&obj(json!({"creator_uuid": OWNER, "disabled": "false"})));
        assert_eq!(m["state"], json!("active"));
        // An explicit v below 2 also upgrades.
        let m = upgrade_v1(&obj(json!({"v": 1, "uuid": UUID})));
        assert_eq!(m["v"], json!(2));
        assert_eq!(m["state"], json!("active"));
    }

    #[test]
    fn upgrade_leaves_v2_and_unrecognisable_manifests_alone() {
        for m in [
            active_zone(),
            minimal(),
            obj(json!({"name": "no v, no creator"})),
            obj(json!({"v": "3"})),
        ] {
            assert_eq!(upgrade_v1(&m), m);
        }
        assert_eq!(compression_from_name("dir.gz/file"), "none");
        assert_eq!(compression_from_name(""), "none");
    }
}
