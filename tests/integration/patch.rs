//! JSON Patch updates of image metadata (issue 8): `PATCH /images/:uuid`.

use crate::common::*;
use serde_json::{json, Value};

const JSON_PATCH: &str = "application/json-patch+json";
const GLANCE_PATCH: &str = "application/openstack-images-v2.1-json-patch";

fn patch_as(d: &Daemon, uuid: &str, content_type: &str, ops: &Value) -> Resp {
    request(
        &d.sock,
        "PATCH",
        &format!("/images/{uuid}"),
        &[("Content-Type", content_type)],
        ops.to_string().as_bytes(),
    )
}

fn patch(d: &Daemon, uuid: &str, ops: Value) -> Resp {
    patch_as(d, uuid, JSON_PATCH, &ops)
}

fn image(d: &Daemon, uuid: &str) -> Value {
    d.get(&format!("/images/{uuid}")).expect(200, None)
}

#[test]
fn each_operation_applies() {
    let d = Daemon::start();
    let u = d.create_active("base", b"data", json!({"description": "first"}));

    let m = patch(
        &d,
        &u,
        json!([{"op": "replace", "path": "/description", "value": "second"}]),
    )
    .expect(200, None);
    assert_eq!(m["description"], "second");

    let m = patch(
        &d,
        &u,
        json!([
            {"op": "add", "path": "/tags", "value": {}},
            {"op": "add", "path": "/tags/role", "value": "db"},
            {"op": "add", "path": "/tags/a~1b", "value": "slash"},
            {"op": "add", "path": "/tags/c~0d", "value": "tilde"}
        ]),
    )
    .expect(200, None);
    assert_eq!(
        m["tags"],
        json!({"role": "db", "a/b": "slash", "c~d": "tilde"})
    );

    let m = patch(&d, &u, json!([{"op": "remove", "path": "/description"}])).expect(200, None);
    assert!(m.get("description").is_none(), "{m}");

    let m = patch(
        &d,
        &u,
        json!([
            {"op": "test", "path": "/name", "value": "base"},
            {"op": "test", "path": "/state", "value": "active"},
            {"op": "move", "from": "/tags/role", "path": "/tags/tier"},
            {"op": "copy", "from": "/uuid", "path": "/description"},
            {"op": "add", "path": "/acl", "value": []},
            {"op": "add", "path": "/acl/-", "value": "11111111-1111-4111-8111-111111111111"}
        ]),
    )
    .expect(200, None);
    assert_eq!(m["tags"]["tier"], "db");
    assert!(m["tags"].get("role").is_none());
    assert_eq!(m["description"], u.as_str());
    assert_eq!(m["acl"], json!(["11111111-1111-4111-8111-111111111111"]));

    // Glance's media type, with a charset parameter, works the same.
    let m = patch_as(
        &d,
        &u,
        &format!("{GLANCE_PATCH}; charset=utf-8"),
        &json!([{"op": "replace", "path": "/name", "value": "renamed"}]),
    )
    .expect(200, None);
    assert_eq!(m["name"], "renamed");

    // An empty patch is valid and changes nothing.
    assert_eq!(patch(&d, &u, json!([])).expect(200, None), m);

    // The change is stored (and survives a crash, as every 2xx does).
    let mut d = d;
    d.kill9();
    d.spawn();
    assert_eq!(image(&d, &u), m);
}

#[test]
fn a_failing_test_leaves_the_image_unchanged() {
    let d = Daemon::start();
    let u = d.create("t", json!({"description": "keep"}));
    let before = image(&d, &u);
    let v = patch(
        &d,
        &u,
        json!([
            {"op": "replace", "path": "/description", "value": "changed"},
            {"op": "test", "path": "/version", "value": "9.9.9"}
        ]),
    )
    .expect(409, Some("PatchTestFailed"));
    assert!(v["message"].as_str().unwrap().contains("/version"), "{v}");
    patch(
        &d,
        &u,
        json!([{"op": "test", "path": "/homepage", "value": "x"}]),
    )
    .expect(409, Some("PatchTestFailed"));
    // A target that does not exist is a conflict too.
    let v = patch(
        &d,
        &u,
        json!([
            {"op": "replace", "path": "/description", "value": "changed"},
            {"op": "remove", "path": "/homepage"}
        ]),
    )
    .expect(409, Some("PatchConflict"));
    assert!(v["message"].as_str().unwrap().contains("/homepage"), "{v}");
    patch(
        &d,
        &u,
        json!([{"op": "add", "path": "/tags/x", "value": 1}]),
    )
    .expect(409, Some("PatchConflict"));
    assert_eq!(image(&d, &u), before);
}

#[test]
fn an_invalid_result_is_rejected_whole() {
    let d = Daemon::start();
    let u = d.create("v", json!({"description": "keep"}));
    let before = image(&d, &u);
    let v = patch(
        &d,
        &u,
        json!([
            {"op": "replace", "path": "/description", "value": "fine"},
            {"op": "replace", "path": "/name", "value": "bad name!"},
            {"op": "add", "path": "/requirements", "value": {"min_ram": 2048, "max_ram": 1024}}
        ]),
    )
    .expect(422, Some("ValidationFailed"));
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"name"), "{v}");
    assert!(fields.contains(&"requirements.max_ram"), "{v}");
    // Removing a required field, or nulling one, is invalid too.
    patch(&d, &u, json!([{"op": "remove", "path": "/name"}])).expect(422, Some("ValidationFailed"));
    let v = patch(
        &d,
        &u,
        json!([{"op": "replace", "path": "/description", "value": null}]),
    )
    .expect(422, Some("ValidationFailed"));
    assert_eq!(v["errors"][0]["field"], "description");
    // nic_driver is mutable, but only on zvols.
    patch(
        &d,
        &u,
        json!([{"op": "add", "path": "/nic_driver", "value": "virtio"}]),
    )
    .expect(422, Some("ValidationFailed"));
    assert_eq!(image(&d, &u), before);
}

#[test]
fn immutable_paths_are_refused_naming_the_path() {
    let d = Daemon::start();
    let u = d.create_active("i", b"data", json!({}));
    let before = image(&d, &u);
    let v = patch(
        &d,
        &u,
        json!([
            {"op": "replace", "path": "/description", "value": "fine"},
            {"op": "replace", "path": "/uuid", "value": "11111111-1111-4111-8111-111111111111"},
            {"op": "remove", "path": "/files/0"},
            {"op": "replace", "path": "/state", "value": "disabled"},
            {"op": "remove", "path": "/published_at"},
            {"op": "move", "from": "/type", "path": "/description"}
        ]),
    )
    .expect(422, Some("ValidationFailed"));
    let errors = v["errors"].as_array().unwrap();
    let fields: Vec<&str> = errors
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["uuid", "files.0", "state", "published_at", "type"]);
    assert!(errors.iter().all(|e| e["code"] == "NotAllowed"), "{v}");
    let msg = v["message"].as_str().unwrap();
    for path in ["/uuid", "/files/0", "/state", "/published_at", "/type"] {
        assert!(msg.contains(&format!("\"{path}\"")), "{path} not in {msg}");
    }
    // The whole document cannot be replaced either.
    patch(&d, &u, json!([{"op": "replace", "path": "", "value": {}}]))
        .expect(422, Some("ValidationFailed"));
    assert_eq!(image(&d, &u), before);
}

#[test]
fn wrong_media_type_and_malformed_patches() {
    let d = Daemon::start();
    let u = d.create("m", json!({}));
    let before = image(&d, &u);
    let ops = json!([{"op": "replace", "path": "/name", "value": "x"}]);
    for ct in [
        "application/json",
        "text/plain",
        "application/merge-patch+json",
    ] {
        let v = patch_as(&d, &u, ct, &ops).expect(415, Some("UnsupportedMediaType"));
        assert!(v["message"].as_str().unwrap().contains(JSON_PATCH), "{v}");
    }
    request(
        &d.sock,
        "PATCH",
        &format!("/images/{u}"),
        &[],
        ops.to_string().as_bytes(),
    )
    .expect(415, Some("UnsupportedMediaType"));

    for (body, want) in [
        (json!({"op": "add"}), "array"),
        (json!([{"op": "frob", "path": "/name"}]), "patch[0]"),
        (json!([{"op": "add", "path": "/name"}]), "value"),
        (json!([{"op": "remove", "path": "name"}]), "/"),
    ] {
        let v = patch(&d, &u, body).expect(400, Some("InvalidContent"));
        assert!(v["message"].as_str().unwrap().contains(want), "{want}: {v}");
    }
    let r = request(
        &d.sock,
        "PATCH",
        &format!("/images/{u}"),
        &[("Content-Type", JSON_PATCH)],
        b"[{\"op\":",
    );
    r.expect(400, Some("InvalidContent"));
    patch(&d, "33333333-3333-4333-8333-333333333333", ops.clone())
        .expect(404, Some("ResourceNotFound"));
    assert_eq!(image(&d, &u), before);

    let r = request(&d.sock, "PUT", &format!("/images/{u}"), &[], b"");
    r.expect(405, Some("MethodNotAllowed"));
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST, PATCH, DELETE"));
}
