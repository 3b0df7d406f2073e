//! The three ways a manifest is built from a request body: CreateImage
//! ([`prepare_create`]), AdminImportImage ([`prepare_import`]) and
//! `?action=update` ([`apply_update`]). This is where it is decided which
//! fields a client may set and which the server owns, what the defaults
//! are, and which input spellings IMGAPI accepts are stored as the proper
//! JSON type. Each ends in [`validate`], so what they return may be stored
//! as it is.

use super::text::{clip, parse_count};
use super::v1::upgrade_v1;
use super::validate::{validate_as, Mode};
use super::{canonical_order, FieldError, Manifest, MANIFEST_VERSION, MUTABLE_FIELDS, NIL_UUID};
use serde_json::Value;

/// Server-owned fields a CreateImage body may not carry: the uuid is assigned,
/// the state and `published_at` come from activation, files and icon from their
/// uploads, `expires_at` only exists on placeholders, and `urn` is a legacy
/// field that is only ever carried over by an import.
pub(super) const CREATE_NOT_ALLOWED: &[&str] = &[
    "uuid",
    "state",
    "published_at",
    "activated",
    "icon",
    "expires_at",
    "urn",
];

/// Boolean fields for which the strings `"true"`/`"false"` are accepted on
/// input (as IMGAPI's `boolFromString` does) and stored as real booleans.
const STRING_BOOL_FIELDS: &[&str] = &["public", "disabled", "generate_passwords"];

/// CreateImage (`POST /images`): build the manifest to store from a client's
/// body and the uuid the server assigned.
///
/// Server-owned fields in the body (`uuid`, `state`, `published_at`,
/// `activated`, `icon`, `expires_at`, `urn`) are refused with `NotAllowed`;
/// `files` is dropped, as IMGAPI's `Image.create` drops it. A `null` value
/// counts as absent. Defaults: `v` 2, `owner` [`NIL_UUID`],
/// `public` and `disabled` false; `state` is always `unactivated`. The strings
/// `"true"`/`"false"` become booleans for `public`, `disabled` and
/// `generate_passwords`, and a decimal string `image_size` a number (as
/// IMGAPI's `Image.create` does). The result is in canonical field order.
///
/// # Errors
/// Every problem found: the `NotAllowed` fields first, then [`validate`]'s
/// findings on the rest. A body that is not an object gives the single error
/// `{field: "", code: "Invalid", message: "manifest must be a JSON object"}`.
pub fn prepare_create(body: &Value, uuid: &str, mode: Mode) -> Result<Manifest, Vec<FieldError>> {
    let mut m = body_object(body)?;
    // IMGAPI's Image.create drops `files`: they come from AddImageFile.
    m.remove("files");
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
    finish(m, errs, mode)
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
/// Outside [`Mode::Dc`] the owner becomes [`NIL_UUID`] whatever the body
/// says, as IMGAPI's import does where it has no user database
/// (sdc-imgapi `apiAdminImportImage` `handleOwner`, IMGAPI-408).
///
/// # Errors
/// Every problem found, including a `Missing`/`Invalid` `uuid` for a missing
/// or mismatched body uuid (validation then proceeds with `path_uuid`).
pub fn prepare_import(
    body: &Value,
    path_uuid: &str,
    mode: Mode,
) -> Result<Manifest, Vec<FieldError>> {
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
    if matches!(mode, Mode::Public | Mode::Private) {
        m.insert("owner".into(), Value::from(NIL_UUID));
    }
    apply_defaults(&mut m);
    finish(m, errs, mode)
}

/// `?action=update`: apply `changes` (a JSON object) to `current`.
///
/// Only [`MUTABLE_FIELDS`] may appear, and the operator fields `state`
/// (only to `failed`) and `error`; a `null` value deletes the field. The
/// merged manifest is normalised like a create body and validated as a whole,
/// so e.g. deleting a required field, or setting `nic_driver` on a
/// zone-dataset, is refused.
///
/// # Errors
/// `NotAllowed` for each field that may not be updated, plus [`validate`]'s
/// findings on the merged result. `changes` that is not an object, or is
/// empty, gives a single error on field `""`.
pub fn apply_update(
    current: &Manifest,
    changes: &Value,
    mode: Mode,
) -> Result<Manifest, Vec<FieldError>> {
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
        if key == "state" && !value.is_null() {
            // An operator marks a placeholder, or any image, failed (with
            // `error`), as IMGAPI's workflows do; the other states follow
            // from activation and `disabled` and are not set by hand.
            let same = current.get("state") == Some(value);
            if value == "failed" || same {
                m.insert(key.clone(), value.clone());
            } else {
                errs.push(FieldError::not_allowed(
                    key,
                    format!(
                        "state can only be set to \"failed\" with ?action=update (it is {}); the others follow from activate, enable and disable",
                        clip(&value.to_string())
                    ),
                ));
            }
        } else if key == "error" {
            if value.is_null() {
                m.remove(key);
            } else {
                m.insert(key.clone(), value.clone());
            }
        } else if !MUTABLE_FIELDS.contains(&key.as_str()) {
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
    finish(m, errs, mode)
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

/// Normalise, validate with `mode`'s rules, and return the manifest in
/// canonical order unless `errs` (earlier findings) or validation found
/// anything.
fn finish(
    mut m: Manifest,
    mut errs: Vec<FieldError>,
    mode: Mode,
) -> Result<Manifest, Vec<FieldError>> {
    normalise(&mut m);
    errs.extend(validate_as(&m, mode));
    if errs.is_empty() {
        Ok(canonical_order(m))
    } else {
        Err(errs)
    }
}

/// The top-level keys an AdminImportImage body may carry (IMGAPI's
/// `Image.create` with `isImport`: the fields it copies, `uuid`,
/// `published_at`, `urn`, and the dropped `files` and `state`). Any other
/// key is refused as an "invalid extra parameter".
pub const IMPORT_FIELDS: &[&str] = &[
    "v",
    "uuid",
    "owner",
    "name",
    "version",
    "description",
    "homepage",
    "eula",
    "icon",
    "type",
    "os",
    "origin",
    "public",
    "disabled",
    "acl",
    "error",
    "requirements",
    "users",
    "billing_tags",
    "traits",
    "tags",
    "generate_passwords",
    "inherited_directories",
    "channels",
    "nic_driver",
    "disk_driver",
    "cpu_type",
    "image_size",
    "published_at",
    "urn",
    "files",
    "state",
];

/// The keys only an import may carry: CreateImage refuses them as extra.
const IMPORT_ONLY_FIELDS: &[&str] = &["uuid", "published_at", "urn"];

/// The keys of an AdminImportImage (`import`) or CreateImage body that
/// IMGAPI's `Image.create` refuses as "invalid extra parameters": those
/// not in [`IMPORT_FIELDS`] (less `uuid`, `published_at` and `urn` for a
/// create), and the zvol fields on an image that is not a zvol. A v1
/// manifest is judged after its upgrade; `null` members count as absent.
pub fn extra_fields(body: &Value, import: bool) -> Vec<String> {
    let Some(obj) = body.as_object() else {
        return vec![];
    };
    let m = upgrade_v1(obj);
    let zvol = m.get("type").and_then(Value::as_str) == Some("zvol");
    m.iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, _)| k.as_str())
        .filter(|k| {
            !IMPORT_FIELDS.contains(k)
                || (!import && IMPORT_ONLY_FIELDS.contains(k))
                || (!zvol && ["nic_driver", "disk_driver", "cpu_type", "image_size"].contains(k))
        })
        .map(str::to_string)
        .collect()
}

/// Input spellings IMGAPI accepts and stores as the proper JSON type.
fn normalise(m: &mut Manifest) {
    // A single string is a list of one (Image.validateAndNormalize).
    for field in ["acl", "billing_tags"] {
        if let Some(Value::String(s)) = m.get(field) {
            let one = Value::Array(vec![Value::String(s.clone())]);
            m.insert(field.into(), one);
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::fixtures::*;
    use crate::manifest::{validate, FIELDS};
    use serde_json::json;

    #[test]
    fn public_and_private_modes_judge_public_and_reset_imported_owners() {
        let body = create_body();
        let errs = prepare_create(&body, UUID, Mode::Public).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            (errs[0].field.as_str(), errs[0].code.as_str()),
            ("public", "Invalid")
        );
        assert!(errs[0]
            .message
            .contains("private images are not allowed on a public Images API"));
        let mut public = body.clone();
        public["public"] = json!(true);
        prepare_create(&public, UUID, Mode::Public).unwrap();
        prepare_create(&body, UUID, Mode::Private).unwrap();
        let errs = prepare_create(&public, UUID, Mode::Private).unwrap_err();
        assert!(errs[0]
            .message
            .contains("public images are not allowed on a private Images API"));
        // Import: the owner is the source's in dc mode, unset otherwise.
        let mut import = public.clone();
        import["uuid"] = json!(UUID);
        import["owner"] = json!(OWNER);
        let m = prepare_import(&import, UUID, Mode::Dc).unwrap();
        assert_eq!(m["owner"], OWNER);
        let m = prepare_import(&import, UUID, Mode::Public).unwrap();
        assert_eq!(m["owner"], NIL_UUID);
        // An update may not make an image what the mode refuses.
        let errs = apply_update(&m, &json!({"public": false}), Mode::Public).unwrap_err();
        assert_eq!(errs[0].field, "public");
    }

    // ---- CreateImage

    fn create_body() -> Value {
        json!({"name": "foo", "version": "1.0", "type": "zone-dataset", "os": "smartos"})
    }

    #[test]
    fn create_fills_defaults_and_server_fields() {
        let m = prepare_create(&create_body(), UUID, Mode::Dc).unwrap();
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
        let m = prepare_create(&body, UUID, Mode::Dc).unwrap();
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
        let m = prepare_create(&zvol_body, UUID, Mode::Dc).unwrap();
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
        let errs = prepare_create(&body, UUID, Mode::Dc).unwrap_err();
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
        let errs = prepare_create(&body, "NOT-A-UUID", Mode::Dc).unwrap_err();
        assert_eq!(
            codes(&errs),
            pairs(&[
                ("state", "NotAllowed"),
                ("uuid", "Invalid"),
                ("name", "Invalid"),
                ("version", "MissingParameter"),
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
            assert_eq!(prepare_create(&body, UUID, Mode::Dc).unwrap_err(), expected);
            assert_eq!(prepare_import(&body, UUID, Mode::Dc).unwrap_err(), expected);
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
        let m = prepare_import(&body, UUID, Mode::Dc).unwrap();
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
        let m = prepare_import(&body, UUID, Mode::Dc).unwrap();
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
            let errs = prepare_import(&body, path, Mode::Dc).unwrap_err();
            assert_eq!(codes(&errs), pairs(&expected), "{errs:?}");
        }
        let mut body = export();
        body.as_object_mut().unwrap().remove("uuid");
        let errs = prepare_import(&body, UUID, Mode::Dc).unwrap_err();
        assert_eq!(codes(&errs), pairs(&[("uuid", "MissingParameter")]));
        assert!(errs[0].message.contains(UUID));

        let mut body = export();
        body["uuid"] = json!(ORIGIN);
        let errs = prepare_import(&body, UUID, Mode::Dc).unwrap_err();
        assert!(errs[0].message.contains("does not match"), "{errs:?}");
    }

    #[test]
    fn import_refuses_placeholder_fields_and_validates() {
        let mut body = export();
        body["expires_at"] = json!("2030-01-01T00:00:00Z");
        body["name"] = json!("a:b");
        // Dropped, so never judged.
        body["files"] = json!([{"sha1": "x"}]);
        let errs = prepare_import(&body, UUID, Mode::Dc).unwrap_err();
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
        let m = prepare_import(&body, UUID, Mode::Dc).unwrap();
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
        let m = apply_update(&current, &changes, Mode::Dc).unwrap();
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
            "activated",
            "bogus",
        ] {
            let errs = apply_update(&minimal(), &json!({ field: null }), Mode::Dc).unwrap_err();
            assert_eq!(codes(&errs), pairs(&[(field, "NotAllowed")]), "{field}");
            assert!(errs[0].message.contains("cannot be changed"), "{errs:?}");
        }
        // Mixed: the refused field and the validation failure are both reported.
        let errs = apply_update(
            &minimal(),
            &json!({"uuid": ORIGIN, "name": "a:b"}),
            Mode::Dc,
        )
        .unwrap_err();
        assert_eq!(
            codes(&errs),
            pairs(&[("uuid", "NotAllowed"), ("name", "Invalid")])
        );
    }

    /// An operator marks an image failed with an `error`, as IMGAPI's
    /// workflows do; `state` takes no other value by hand.
    #[test]
    fn update_sets_failed_with_error() {
        let m = apply_update(
            &minimal(),
            &json!({"state": "failed", "error": {"message": "boom", "code": "PrepareImageError"}}),
            Mode::Dc,
        )
        .unwrap();
        assert_eq!(m["state"], json!("failed"));
        assert_eq!(m["error"]["message"], json!("boom"));
        let errs = apply_update(&minimal(), &json!({"state": "active"}), Mode::Dc).unwrap_err();
        assert_eq!(codes(&errs), pairs(&[("state", "NotAllowed")]));
        // Posting the current state back is no change.
        assert!(apply_update(
            &minimal(),
            &json!({"state": "unactivated", "name": "x"}),
            Mode::Dc
        )
        .is_ok());
    }

    /// A single string `acl` or `billing_tags` is a list of one.
    #[test]
    fn string_lists_become_arrays() {
        let mut body = create_body();
        body["acl"] = json!(OWNER);
        body["billing_tags"] = json!("small");
        let m = prepare_create(&body, UUID, Mode::Dc).unwrap();
        assert_eq!(m["acl"], json!([OWNER]));
        assert_eq!(m["billing_tags"], json!(["small"]));
        // CreateImage drops `files`, as IMGAPI's Image.create does.
        body["files"] = json!([{"sha1": "x"}]);
        assert!(!prepare_create(&body, UUID, Mode::Dc)
            .unwrap()
            .contains_key("files"));
    }

    /// The keys AdminImportImage refuses as extra parameters.
    #[test]
    fn import_extra_keys() {
        let body = json!({"uuid": UUID, "name": "a", "activated": true, "expires_at": "x",
            "state": "active", "files": [], "published_at": "2020-01-01T00:00:00Z",
            "nic_driver": "virtio", "type": "zone-dataset", "description": null});
        assert_eq!(
            extra_fields(&body, true),
            vec!["activated", "expires_at", "nic_driver"]
        );
        assert_eq!(
            extra_fields(&body, false),
            vec![
                "uuid",
                "activated",
                "expires_at",
                "published_at",
                "nic_driver"
            ]
        );
    }

    #[test]
    fn update_result_is_revalidated() {
        let cases: Vec<(Manifest, Value, Expected)> = vec![
            (
                minimal(),
                json!({"owner": null}),
                vec![("owner", "MissingParameter")],
            ),
            (
                minimal(),
                json!({"nic_driver": "virtio"}),
                vec![("nic_driver", "NotAllowed")],
            ),
            (
                zvol(),
                json!({"cpu_type": null}),
                vec![("cpu_type", "MissingParameter")],
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
            let errs = apply_update(&current, &changes, Mode::Dc).unwrap_err();
            assert_eq!(codes(&errs), pairs(&expected), "{changes}");
        }
        // Deleting an optional field and fixing a zvol are fine.
        assert!(apply_update(&zvol(), &json!({"requirements": null}), Mode::Dc).is_ok());
        let m = apply_update(&zvol(), &json!({"image_size": "20480"}), Mode::Dc).unwrap();
        assert_eq!(m["image_size"], json!(20480));
    }

    #[test]
    fn update_needs_a_nonempty_object() {
        let errs = apply_update(&minimal(), &json!([]), Mode::Dc).unwrap_err();
        assert_eq!(codes(&errs), pairs(&[("", "Invalid")]));
        assert_eq!(errs[0].message, "update must be a JSON object");
        let errs = apply_update(&minimal(), &json!({}), Mode::Dc).unwrap_err();
        assert_eq!(codes(&errs), pairs(&[("", "MissingParameter")]));
    }
}
