//! The v1 ("dsmanifest", DSAPI) to v2 upgrade, [`upgrade_v1`], after
//! imgmanifest's `upgradeManifest`: images published before IMGAPI still
//! come from DSAPI sources and old export files. The rules are listed on
//! [`upgrade_v1`] itself. And its inverse, [`downgrade_v1`], for the DSAPI
//! view (`GET /datasets`) that legacy `dsapi` sources read.

use super::text::parse_count;
use super::{canonical_order, Manifest, MANIFEST_VERSION};
use serde_json::Value;

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
/// It never fails: whatever it cannot make sense of is left for
/// [`validate`](super::validate()).
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

/// A v2 manifest as a v1 "dsmanifest", the shape DSAPI served and that
/// imgadm's `dsapi` source (sdc-clients `dsapi.js`) and
/// [`upgrade_v1`] read; `upgrade_v1(downgrade_v1(m))` gives `m` back (but
/// `state` of an unactivated image, which DSAPI could not express).
///
/// - `owner` becomes `creator_uuid` and `vendor_uuid`; `creator_name` and
///   `cloud_name` are `sdc`, `platform_type` is `smartos`;
/// - a private image names the first `acl` entry as `restricted_to_uuid`;
///   `public`, `acl`, `state` and `v` are dropped;
/// - `created_at` and `updated_at` are `published_at`;
/// - `urn` defaults to `sdc:sdc:NAME:VERSION`;
/// - each file gets `path` (`UUID.zfs[.EXT]`, by its compression) and `url`
///   (`BASE/UUID/PATH`: where the DSAPI view serves it).
pub fn downgrade_v1(m: &Manifest, base_url: &str) -> Manifest {
    let mut m = m.clone();
    let uuid = m
        .get("uuid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    for dropped in ["v", "state"] {
        m.remove(dropped);
    }
    if let Some(owner) = m.remove("owner") {
        m.insert("creator_uuid".into(), owner.clone());
        m.insert("vendor_uuid".into(), owner);
    }
    m.insert("creator_name".into(), Value::from("sdc"));
    m.insert("cloud_name".into(), Value::from("sdc"));
    m.insert("platform_type".into(), Value::from("smartos"));
    let public = m.remove("public").is_none_or(|p| truthy(&p));
    let acl = m.remove("acl");
    if !public {
        if let Some(first) = acl
            .as_ref()
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            m.insert("restricted_to_uuid".into(), first.clone());
        }
    }
    if let Some(p) = m.get("published_at").cloned() {
        m.insert("created_at".into(), p.clone());
        m.insert("updated_at".into(), p);
    }
    if !m.contains_key("urn") {
        let field = |k: &str| {
            m.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let urn = format!("sdc:sdc:{}:{}", field("name"), field("version"));
        m.insert("urn".into(), Value::from(urn));
    }
    if let Some(Value::Array(files)) = m.get_mut("files") {
        for file in files.iter_mut().filter_map(Value::as_object_mut) {
            let compression = file
                .get("compression")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let path = format!("{uuid}.zfs{}", crate::codec::extension(compression));
            file.insert(
                "url".into(),
                Value::from(format!("{base_url}/{uuid}/{path}")),
            );
            file.insert("path".into(), Value::from(path));
        }
    }
    m
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
    base.rsplit_once('.')
        .and_then(|(_, ext)| crate::codec::from_extension(ext))
        .unwrap_or("none")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::fixtures::*;
    use crate::manifest::validate;
    use serde_json::json;

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

    /// The DSAPI view's shape, and the upgrade reads it back unchanged.
    #[test]
    fn downgrade_v1_is_undone_by_upgrade() {
        let v2 = upgrade_v1(&v1_zvol());
        let d = downgrade_v1(&v2, "http://peer:80/datasets");
        assert_eq!(d["creator_uuid"], OWNER);
        assert_eq!(d["vendor_uuid"], OWNER);
        assert_eq!(
            d["restricted_to_uuid"],
            "df6ea68c-6549-486c-9479-1d48d54ae066"
        );
        assert_eq!(d["created_at"], v2["published_at"]);
        for gone in ["v", "owner", "public", "acl", "state"] {
            assert!(!d.contains_key(gone), "{gone}");
        }
        let file = &d["files"][0];
        assert_eq!(file["path"], format!("{UUID}.zfs.bz2"));
        assert_eq!(
            file["url"],
            format!("http://peer:80/datasets/{UUID}/{UUID}.zfs.bz2")
        );
        assert_eq!(upgrade_v1(&d), v2);
        // A public image without urn gets one, and no restricted_to_uuid.
        let mut public = v2.clone();
        public.insert("public".into(), json!(true));
        public.remove("urn");
        let d = downgrade_v1(&public, "/datasets");
        assert_eq!(d["urn"], "sdc:sdc:ubuntu:2.0.0");
        assert!(!d.contains_key("restricted_to_uuid"));
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
