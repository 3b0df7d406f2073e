//! [`validate`]: whether a complete manifest, as stored and output by the
//! server, obeys the field schema: each field's JSON type, limits and
//! format, and the cross-field rules (zvol-only fields, `published_at` and
//! `files` once activated, `type:"null"` only for placeholders, `state` and
//! `disabled` agreeing, ...).
//!
//! Every problem is reported, in field order, each naming its field with a
//! dotted path; see the module doc of [`crate::manifest`] for where the
//! rules come from and where they are deliberately stricter than IMGAPI.

use super::text::{
    as_count, clip, is_http_url, is_lower_hex, is_name_char, is_platform_stamp, is_sha256_digest,
    is_timestamp, is_uuid, is_version_char, js_len, MIN_PLATFORM_YEAR,
};
use super::{FieldError, Manifest, COMPRESSIONS, FIELDS, MANIFEST_VERSION, OSES, STATES, TYPES};
use serde_json::Value;

/// Always required in a stored manifest (every mode but [`Mode::Minimal`]).
pub(super) const REQUIRED_FIELDS: &[&str] = &[
    "v", "uuid", "owner", "name", "version", "type", "os", "state", "disabled", "public",
];

/// Required in [`Mode::Minimal`] (node-imgmanifest `validateMinimalManifest`:
/// what `imgadm install` and `imgadm create` need).
pub(super) const MINIMAL_FIELDS: &[&str] = &["v", "uuid", "name", "version", "type", "os"];

/// IMGAPI's raw `activated` flag. The stored form carries it in `state`
/// (`active` and `disabled` are activated), so it is never stored; a
/// manifest in IMGAPI's raw form (as node-imgmanifest validates it) may
/// carry it, a boolean or `"true"`/`"false"`.
const ACTIVATED: &str = "activated";

/// The rule sets of node-imgmanifest, chosen as IMGAPI chooses them from
/// its config `mode` (sdc-imgapi `lib/images.js` `validateAndNormalize`):
/// `public` and `private` validate every image with their own rules, `dc`
/// with the DC rules except `state: "creating"` placeholders, which get the
/// minimal ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `validateMinimalManifest`: only `v`, `uuid`, `name`, `version`,
    /// `type`, `os` are required; nothing depends on activation or on
    /// `type: "zvol"`.
    Minimal,
    /// `validateDcManifest`: also `owner`, `state`, `disabled`, `public`,
    /// `activated` (or a `state` implying it) required; `published_at` and
    /// `files` once activated; the zvol fields for zvol images.
    Dc,
    /// `validatePublicManifest`: the DC rules, and `public` must be true.
    Public,
    /// `validatePrivateManifest`: the DC rules, and `public` must be false.
    Private,
}

/// Required when `type` is `zvol` and refused otherwise: they describe the
/// virtual hardware a zvol image boots on, meaningless for a zone dataset.
pub(super) const ZVOL_FIELDS: &[&str] = &["nic_driver", "disk_driver", "cpu_type", "image_size"];

const MAX_NAME_LEN: usize = 1024;
const MAX_VERSION_LEN: usize = 512;
const MAX_DESCRIPTION_LEN: usize = 10 * 1024;
const MAX_URL_LEN: usize = 1024;
const MAX_BILLING_TAG_LEN: usize = 128;
const MAX_TAGS_JSON_LEN: usize = 100 * 1024;
const MAX_FILES: usize = 1;

/// Validate a complete manifest as stored and output by the server, with
/// the DC rules ([`Mode::Dc`]); see [`validate_as`].
pub fn validate(m: &Manifest) -> Vec<FieldError> {
    validate_as(m, Mode::Dc)
}

/// Validate a manifest with the rules of `mode`.
///
/// Returns every problem found, in field order (see `FIELDS`), then one
/// `Invalid` per unsupported field; an empty vector means the manifest is
/// valid. Rules that depend on another field (`state`, `type`) are only
/// applied when that field holds a known value, so a typo in `type` yields
/// one error rather than a cascade. The rules stricter than
/// node-imgmanifest (see the module doc of [`crate::manifest`]) apply in
/// every mode.
pub fn validate_as(m: &Manifest, mode: Mode) -> Vec<FieldError> {
    // IMGAPI's dc mode validates create-from-vm placeholders minimally.
    let mode = if mode == Mode::Dc && m.get("state").and_then(Value::as_str) == Some("creating") {
        Mode::Minimal
    } else {
        mode
    };
    let ctx = Ctx::of(m, mode);
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
        if field == "state" {
            check_activated(m, &ctx, &mut errs);
        }
    }
    for key in m.keys() {
        if !FIELDS.contains(&key.as_str()) && key != ACTIVATED {
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
    mode: Mode,
    state: Option<&'a str>,
    type_: Option<&'a str>,
    /// IMGAPI's raw `activated`, when given as a boolean (or its string).
    activated: Option<bool>,
}

impl<'a> Ctx<'a> {
    fn of(m: &'a Manifest, mode: Mode) -> Self {
        let known = |field: &str, allowed: &[&str]| {
            m.get(field)
                .and_then(Value::as_str)
                .filter(|s| allowed.contains(s))
        };
        Ctx {
            mode,
            state: known("state", STATES),
            type_: known("type", TYPES),
            activated: m.get(ACTIVATED).and_then(bool_of),
        }
    }

    /// Activated images must have a file and a publication date: IMGAPI's
    /// `activated: true` where the manifest carries it, else a `state` of
    /// `active` or `disabled` (the stored form).
    fn activated(&self) -> bool {
        self.activated
            .unwrap_or(matches!(self.state, Some("active" | "disabled")))
    }

    /// Why activation is named in a message.
    fn activation(&self) -> String {
        match self.activated {
            Some(true) => "activated is true".to_string(),
            _ => format!("state is \"{}\"", self.state.unwrap_or_default()),
        }
    }

    /// create-from-vm placeholders have no content yet.
    fn placeholder(&self) -> bool {
        matches!(self.state, Some("creating" | "failed"))
    }
}

/// A boolean as IMGAPI's `boolFromString` reads it.
fn bool_of(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// IMGAPI's raw `activated`: a boolean when given; required (outside
/// [`Mode::Minimal`]) unless `state`, which carries it in the stored form,
/// is there.
fn check_activated(m: &Manifest, ctx: &Ctx, errs: &mut Vec<FieldError>) {
    match m.get(ACTIVATED) {
        Some(v) if bool_of(v).is_none() => errs.push(wrong_type(ACTIVATED, "a boolean", v)),
        Some(_) => {}
        None if ctx.mode != Mode::Minimal && !m.contains_key("state") => {
            errs.push(FieldError::missing(
                ACTIVATED,
                "activated is required (or a state, which implies it)".to_string(),
            ));
        }
        None => {}
    }
}

/// Why `field` is required in this manifest, or `None` if it is optional.
fn required_because(field: &str, ctx: &Ctx) -> Option<String> {
    if ctx.mode == Mode::Minimal {
        // Nothing depends on activation or on the type in this mode.
        return MINIMAL_FIELDS
            .contains(&field)
            .then(|| format!("{field} is required"));
    }
    if REQUIRED_FIELDS.contains(&field) {
        return Some(format!("{field} is required"));
    }
    if matches!(field, "published_at" | "files") && ctx.activated() {
        return Some(format!("{field} is required when {}", ctx.activation()));
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
            } else if field == "public" {
                match (ctx.mode, value.as_bool()) {
                    (Mode::Public, Some(false)) => errs.push(FieldError::invalid(
                        field,
                        "public is false: private images are not allowed on a public Images API \
                         ([imgapi] mode = \"public\")"
                            .to_string(),
                    )),
                    (Mode::Private, Some(true)) => errs.push(FieldError::invalid(
                        field,
                        "public is true: public images are not allowed on a private Images API \
                         ([imgapi] mode = \"private\")"
                            .to_string(),
                    )),
                    _ => {}
                }
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
            format!("files must have an entry when {}", ctx.activation()),
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
                if let Some(b) = expect_str(&path, v, errs) {
                    if !matches!(b, "bios" | "uefi") {
                        errs.push(FieldError::invalid(
                            &path,
                            format!(
                                "{path} has an invalid entry \"{}\" (must be one of bios, uefi)",
                                clip(b)
                            ),
                        ));
                    }
                }
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
                            "{path} is not supported with \"{}\" brand; requirements.brand \
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
    let mut message = format!("{field} must be {expected}, got {}", type_name(value));
    if expected == "a boolean" {
        // IMGAPI's boolFromString: `invalid value for "public": "proto"`.
        message.push_str(&format!(" (invalid value {})", clip(&value.to_string())));
    }
    FieldError::invalid(field, message)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::fixtures::*;
    use serde_json::json;

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
            &[("v", "MissingParameter")],
            "v is required",
        );
        rejects(
            "no name, version",
            with(m(), &[("name", None), ("version", None)]),
            &[
                ("name", "MissingParameter"),
                ("version", "MissingParameter"),
            ],
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
                ("owner", "MissingParameter"),
                ("state", "MissingParameter"),
                // IMGAPI's raw flag, which the stored form keeps in state.
                ("activated", "MissingParameter"),
                ("disabled", "MissingParameter"),
                ("public", "MissingParameter"),
            ],
            "owner is required",
        );
        rejects(
            "no uuid, type, os",
            with(m(), &[("uuid", None), ("type", None), ("os", None)]),
            &[
                ("uuid", "MissingParameter"),
                ("type", "MissingParameter"),
                ("os", "MissingParameter"),
            ],
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
            &[
                ("published_at", "MissingParameter"),
                ("files", "MissingParameter"),
            ],
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
            &[("files", "MissingParameter")],
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
                ("files.0.sha1", "MissingParameter"),
                ("files.0.size", "MissingParameter"),
                ("files.0.compression", "MissingParameter"),
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
        let msg =
            r#"requirements.bootrom has an invalid entry "/some/path" (must be one of bios, uefi)"#;
        let m = bootrom(json!({"brand": "bhyve", "bootrom": "/some/path"}));
        rejects("bootrom value", m, &inv(path), msg);
        let msg = r#"requirements.bootrom requires requirements.brand to be "bhyve""#;
        let m = bootrom(json!({"bootrom": "uefi"}));
        rejects("no brand", m, &[(path, "MissingParameter")], msg);
        let msg = r#"requirements.bootrom is not supported with "kvm" brand"#;
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
                ("error.message", "MissingParameter"),
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
        let expected: Vec<(&str, &str)> = ZVOL_FIELDS
            .iter()
            .map(|f| (*f, "MissingParameter"))
            .collect();
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
                ("restricted_to_uuid", Some(json!(OWNER))),
                ("creator_uuid", Some(json!(OWNER))),
            ],
        );
        rejects(
            "unknown",
            m,
            &[
                ("restricted_to_uuid", "Invalid"),
                ("creator_uuid", "Invalid"),
            ],
            "restricted_to_uuid is an unsupported field",
        );
    }

    /// IMGAPI's raw `activated` (never stored: `state` carries it) is a
    /// boolean or its string, and once true asks for a file and a date.
    #[test]
    fn activated_is_imgapis_raw_flag() {
        accepts("activated false", set(minimal(), "activated", json!(false)));
        accepts(
            "activated \"false\"",
            set(minimal(), "activated", json!("false")),
        );
        rejects(
            "activated yes",
            set(minimal(), "activated", json!("yes")),
            &inv("activated"),
            "activated must be a boolean, got string (invalid value \"yes\")",
        );
        rejects(
            "activated, unpublished",
            set(minimal(), "activated", json!(true)),
            &[
                ("published_at", "MissingParameter"),
                ("files", "MissingParameter"),
            ],
            "published_at is required when activated is true",
        );
        // Minimal mode requires neither, nor the stored-form fields.
        let m = with(
            minimal(),
            &[
                ("activated", Some(json!(true))),
                ("owner", None),
                ("state", None),
            ],
        );
        assert_eq!(validate_as(&m, Mode::Minimal), vec![]);
        // A create-from-vm placeholder in dc mode is validated minimally.
        let m = with(
            minimal(),
            &[("state", Some(json!("creating"))), ("owner", None)],
        );
        assert_eq!(validate_as(&m, Mode::Dc), vec![]);
        assert_eq!(
            codes(&validate_as(&m, Mode::Private)),
            pairs(&[("owner", "MissingParameter")])
        );
    }

    /// node-imgmanifest's own table (`test/basics.test.js`: MINIMAL_,
    /// DC_, OPTIONAL_, PUBLIC_ and PRIVATE_VALIDATIONS, 29 cases), each run
    /// in the mode its reference function stands for, as given (IMGAPI's raw
    /// form, `activated` included). Each must get the reference's verdict and
    /// exactly its (field, code) errors, in any order, and a message with
    /// what the reference's message pattern asks for (`.` there is `"`).
    #[test]
    fn imgmanifest_corpus_agrees_in_every_mode() {
        let missing = FieldError::missing("", String::new()).code;
        let base = |extra: Value| {
            let mut m = obj(
                json!({"v": 2, "uuid": UUID, "name": "foo", "version": "1.2.3",
                                  "type": "zone-dataset", "os": "smartos"}),
            );
            for (k, v) in obj(extra) {
                if v.is_null() {
                    m.remove(&k);
                } else {
                    m.insert(k, v);
                }
            }
            m
        };
        let file = json!([{"sha1": SHA1, "size": 121737890, "compression": "gzip"}]);
        let reqs = json!({"min_platform": {"7.0": "20130729T063445Z", "6.5": "20120614T001014Z"}});
        let hecuba = json!({"uuid": "c153ced3-5978-cb4d-d068-e1c3b33c41ab", "urn": "booga:booga",
            "name": "Hecuba", "version": "20131204T013417Z", "tags": {"homeric": true},
            "owner": OWNER, "requirements": reqs, "origin": "f669428c-a939-11e2-a485-b790efc0f0c1"});
        let complete = json!({"description": "good manifest", "homepage": "http://imgapi.co",
            "eula": "http://imgapi.co/eula", "owner": OWNER, "disabled": false,
            "activated": true, "state": "unactivated", "origin": ORIGIN,
            "error": {"message": "no peers available"}, "files": file,
            "acl": ["df6ea68c-6549-486c-9479-1d48d54ae066"],
            "requirements": {"networks": [{"name": "net0", "description": "public"}], "ssh_key": true},
            "users": [{"name": "root"}, {"name": "admin"}, {"name": "mongodb"}],
            "billing_tags": ["xxl"], "traits": {"provisionable": true}, "tags": {"foo": "bar"},
            "generate_passwords": false});
        let with = |a: &Value, b: Value| {
            let mut m = obj(a.clone());
            m.extend(obj(b));
            Value::Object(m)
        };
        let bhyve = |os: &str, reqs: Value| json!({"urn": "booga:booga", "type": "zvol", "os": os, "requirements": reqs});
        let dc_fields = json!({"public": true, "owner": OWNER, "disabled": false,
                               "activated": false, "state": "unactivated"});
        let dc_m = |extra: Value| base(with(&dc_fields, extra));
        use Mode::*;
        type Errs<'a> = &'a [(&'a str, &'a str, &'a [&'a str])];
        let none: Errs = &[];
        let cases: Vec<(Mode, &str, Manifest, Errs)> = vec![
            // MINIMAL_VALIDATIONS (validateMinimalManifest)
            (
                Minimal,
                "good, minimal",
                base(json!({"urn": "booga:booga"})),
                none,
            ),
            (
                Minimal,
                "no version",
                base(json!({"urn": "booga:booga", "version": null})),
                &[("version", "MissingParameter", &[])],
            ),
            (
                Minimal,
                "no name or version",
                base(json!({"urn": "booga:booga", "name": null, "version": null})),
                &[
                    ("name", "MissingParameter", &[]),
                    ("version", "MissingParameter", &[]),
                ],
            ),
            (
                Minimal,
                "bad os",
                base(json!({"uuid": "938fa528-f055-b045-999a-e8c638df7fa0",
                "urn": "booga:booga", "os": "my-os"})),
                &[("os", "Invalid", &["my-os"])],
            ),
            (
                Minimal,
                "good minimal, requirements left alone?",
                base(hecuba.clone()),
                none,
            ),
            (
                Minimal,
                "good minimal, type=other",
                base(with(&hecuba, json!({"type": "other"}))),
                none,
            ),
            (
                Minimal,
                "good minimal, \"+\" in version",
                base(json!({
                "uuid": "ceca6018-ac4a-11e6-b7bd-8720e9a86711", "name": "withaplus",
                "version": "1.2.3+master-20131204T013417Z-gcafebab", "owner": OWNER})),
                none,
            ),
            (
                Minimal,
                "good minimal, requirements.bootrom=bios",
                base(bhyve("linux", json!({"brand": "bhyve", "bootrom": "bios"}))),
                none,
            ),
            (
                Minimal,
                "good minimal, requirements.bootrom=uefi",
                base(bhyve(
                    "windows",
                    json!({"brand": "bhyve", "bootrom": "uefi"}),
                )),
                none,
            ),
            (
                Minimal,
                "bad minimal, requirements.bootrom=/some/path",
                base(bhyve(
                    "linux",
                    json!({"brand": "bhyve", "bootrom": "/some/path"}),
                )),
                &[(
                    "requirements.bootrom",
                    "Invalid",
                    &["invalid entry \"/some/path"],
                )],
            ),
            (
                Minimal,
                "bad minimal, requirements.bootrom without requirements.brand",
                base(bhyve("linux", json!({"bootrom": "uefi"}))),
                &[(
                    "requirements.bootrom",
                    "MissingParameter",
                    &["requirements.brand"],
                )],
            ),
            (
                Minimal,
                "bad minimal, requirements.bootrom with requirements.brand=kvm",
                base(bhyve("linux", json!({"brand": "kvm", "bootrom": "uefi"}))),
                &[(
                    "requirements.bootrom",
                    "Invalid",
                    &["not supported with \"kvm\" brand"],
                )],
            ),
            // DC_VALIDATIONS (validateDcManifest)
            (Dc, "good, dc", dc_m(json!({"urn": "booga:booga"})), none),
            (
                Dc,
                "no version",
                dc_m(json!({"version": null})),
                &[("version", "MissingParameter", &[])],
            ),
            (
                Dc,
                "no name or version",
                dc_m(json!({"name": null, "version": null})),
                &[
                    ("name", "MissingParameter", &[]),
                    ("version", "MissingParameter", &[]),
                ],
            ),
            (
                Dc,
                "bad os",
                dc_m(json!({"uuid": "938fa528-f055-b045-999a-e8c638df7fa0", "os": "my-os"})),
                &[("os", "Invalid", &["my-os"])],
            ),
            (
                Dc,
                "no owner",
                dc_m(json!({"owner": null})),
                &[("owner", "MissingParameter", &[])],
            ),
            (
                Dc,
                "no state, activated or disabled",
                dc_m(json!({"state": null, "activated": null, "disabled": null})),
                &[
                    ("disabled", "MissingParameter", &[]),
                    ("activated", "MissingParameter", &[]),
                    ("state", "MissingParameter", &[]),
                ],
            ),
            (
                Dc,
                "bad state",
                dc_m(json!({"state": "installed"})),
                &[("state", "Invalid", &[])],
            ),
            (
                Dc,
                "bad public",
                dc_m(json!({"public": "proto"})),
                &[("public", "Invalid", &["invalid value"])],
            ),
            (
                Dc,
                "missing published_at",
                dc_m(json!({"activated": true, "state": "active", "files": file})),
                &[("published_at", "MissingParameter", &["acti"])],
            ),
            (
                Dc,
                "bad zvol, no drivers",
                dc_m(with(
                    &complete,
                    json!({"public": true, "type": "zvol",
                "published_at": "2012-11-02T22:46:45.992Z", "icon": false,
                "cpu_type": "qemu64", "image_size": 16384}),
                )),
                &[
                    ("nic_driver", "MissingParameter", &[]),
                    ("disk_driver", "MissingParameter", &[]),
                ],
            ),
            // OPTIONAL_VALIDATIONS (validateMinimalManifest)
            (
                Minimal,
                "good zvol, complete",
                base(with(
                    &complete,
                    json!({"type": "zvol", "icon": false,
                "nic_driver": "virtio", "disk_driver": "virtio", "cpu_type": "qemu64",
                "image_size": 16384}),
                )),
                none,
            ),
            (
                Minimal,
                "good zone-dataset, complete",
                base(with(
                    &complete,
                    json!({"icon": true,
                "inherited_directories": ["/usr/bin"]}),
                )),
                none,
            ),
            (
                Minimal,
                "good, xz compression",
                base(with(
                    &complete,
                    json!({"icon": true,
                "state": "active", "error": null,
                "files": [{"sha1": SHA1, "size": 121737890, "compression": "xz"}],
                "inherited_directories": ["/usr/bin"]}),
                )),
                none,
            ),
            // PUBLIC_VALIDATIONS, PRIVATE_VALIDATIONS
            (
                Public,
                "good, public",
                dc_m(json!({"urn": "booga:booga", "public": true})),
                none,
            ),
            (
                Public,
                "bad public",
                dc_m(json!({"urn": "booga:booga", "public": false})),
                &[("public", "Invalid", &["private"])],
            ),
            (
                Private,
                "good, private",
                dc_m(json!({"urn": "booga:booga", "public": false})),
                none,
            ),
            (
                Private,
                "bad private",
                dc_m(json!({"urn": "booga:booga", "public": true})),
                &[("public", "Invalid", &["public"])],
            ),
        ];
        assert_eq!(cases.len(), 29);
        let mut disagree = Vec::new();
        for (mode, name, m, want) in &cases {
            let errs = validate_as(m, *mode);
            let mut got: Vec<(String, String)> = errs
                .iter()
                .map(|e| (e.field.clone(), e.code.clone()))
                .collect();
            let mut expected: Vec<(String, String)> = want
                .iter()
                .map(|(f, c, _)| {
                    let c = if *c == "MissingParameter" {
                        missing.as_str()
                    } else {
                        c
                    };
                    (f.to_string(), c.to_string())
                })
                .collect();
            got.sort();
            expected.sort();
            let messages_ok = want.iter().all(|(f, _, pats)| {
                errs.iter()
                    .filter(|e| e.field == *f)
                    .any(|e| pats.iter().all(|p| e.message.contains(p)))
            });
            if got != expected || !messages_ok {
                disagree.push(format!(
                    "{mode:?} {name:?}: expected {expected:?}, got {errs:#?}"
                ));
            }
        }
        assert!(
            disagree.is_empty(),
            "{} of 29 disagree:\n{}",
            disagree.len(),
            disagree.join("\n")
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
                ("published_at", "MissingParameter"),
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
}
