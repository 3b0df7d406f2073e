//! IMGAPI fidelity, slice C (issue #13 items 5 to 8), on the real daemon:
//! ETags and conditional requests, the reference's error codes, the fields
//! IMGAPI drops, refuses or normalises, and the smaller differences
//! (`billing_tag`, `owner=`, `Accept-Version`, `ping?error=`, `Server`,
//! `?index=`, `GET /state`). Each test names the reference behaviour it
//! pins (sdc-imgapi `lib/images.js`, `lib/app.js`, `lib/errors.js`, and
//! restify's `conditionalRequest`).

use crate::common::*;
use serde_json::json;

const DATA: &[u8] = b"an image file for slice C";

fn with(d: &Daemon, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    request(&d.sock, method, path, headers, body)
}

fn etag(r: &Resp) -> String {
    r.header("etag")
        .unwrap_or_else(|| panic!("no ETag on {} {:?}", r.status, r.headers))
        .to_string()
}

/// Item 5: GetImage and every image write carry the same `ETag` for the
/// same manifest; `If-Match` with a stale tag is 412 `PreconditionFailed`
/// on update, activate, enable/disable, AddImageFile, PATCH and delete, and
/// changes nothing; `If-None-Match` on GetImage is 304.
#[test]
fn etag_and_if_match_guard_every_write() {
    let d = Daemon::start();
    let uuid = d.create("cond", json!({}));
    let img = format!("/images/{uuid}");
    let got = d.get(&img);
    let t0 = etag(&got);
    assert_eq!(t0.len(), 40, "a SHA-1 hex: {t0}");
    // The tag is stable across reads.
    assert_eq!(etag(&d.get(&img)), t0);

    // 304 with the tag; 412 for a tag that does not match on a read.
    let r = with(&d, "GET", &img, &[("If-None-Match", &t0)], b"");
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(etag(&r), t0);
    let quoted = format!("\"{t0}\"");
    assert_eq!(
        with(&d, "GET", &img, &[("If-None-Match", &quoted)], b"").status,
        304
    );
    with(&d, "GET", &img, &[("If-None-Match", "other")], b"").expect(200, None);
    with(&d, "GET", &img, &[("If-Match", "other")], b"").expect(412, Some("PreconditionFailed"));

    // A write with the current tag succeeds, and answers the new tag,
    // which is the one GetImage then gives.
    let body = json!({"description": "one"}).to_string();
    let r = with(
        &d,
        "POST",
        &format!("{img}?action=update"),
        &[("If-Match", &t0), ("Content-Type", "application/json")],
        body.as_bytes(),
    );
    r.expect(200, None);
    let t1 = etag(&r);
    assert_ne!(t1, t0);
    assert_eq!(etag(&d.get(&img)), t1);

    // The lost update: a second writer still holding t0 is refused, with
    // restify's message, and the image is unchanged.
    let body = json!({"description": "two"}).to_string();
    let v = with(
        &d,
        "POST",
        &format!("{img}?action=update"),
        &[("If-Match", &t0), ("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .expect(412, Some("PreconditionFailed"));
    assert_eq!(
        v["message"],
        format!("if-match '{t0}' didn't match etag '{t1}'")
    );
    assert_eq!(d.get(&img).json()["description"], "one");

    // AddImageFile: stale tag refused, nothing stored; current tag works.
    let file = format!("{img}/file?compression=none");
    with(&d, "PUT", &file, &[("If-Match", &t0)], DATA).expect(412, Some("PreconditionFailed"));
    assert!(d.get(&img).json()["files"].as_array().unwrap().is_empty());
    let r = with(&d, "PUT", &file, &[("If-Match", &t1)], DATA);
    r.expect(200, None);
    let t2 = etag(&r);

    // Activate, disable, enable: each guarded, each answering its tag.
    let act = format!("{img}?action=activate");
    with(&d, "POST", &act, &[("If-Match", &t1)], b"").expect(412, Some("PreconditionFailed"));
    assert_eq!(d.get(&img).json()["state"], "unactivated");
    let r = with(&d, "POST", &act, &[("If-Match", &t2)], b"");
    r.expect(200, None);
    let t3 = etag(&r);
    let dis = format!("{img}?action=disable");
    with(&d, "POST", &dis, &[("If-Match", &t2)], b"").expect(412, Some("PreconditionFailed"));
    let r = with(&d, "POST", &dis, &[("If-Match", &t3)], b"");
    assert_eq!(r.expect(200, None)["state"], "disabled");
    let t4 = etag(&r);
    let en = format!("{img}?action=enable");
    let r = with(&d, "POST", &en, &[("If-Match", "*")], b"");
    assert_eq!(r.expect(200, None)["state"], "active");
    let t5 = etag(&r);
    assert_ne!(t4, t5);

    // PATCH (our JSON Patch) is guarded the same way.
    let patch = json!([{"op": "replace", "path": "/description", "value": "p"}]).to_string();
    with(
        &d,
        "PATCH",
        &img,
        &[
            ("If-Match", &t4),
            ("Content-Type", "application/json-patch+json"),
        ],
        patch.as_bytes(),
    )
    .expect(412, Some("PreconditionFailed"));

    // Delete: stale tag refused and the image kept; current tag deletes.
    with(&d, "DELETE", &img, &[("If-Match", &t4)], b"").expect(412, Some("PreconditionFailed"));
    d.get(&img).expect(200, None);
    let r = with(&d, "DELETE", &img, &[("If-Match", &t5)], b"");
    assert_eq!(r.status, 204);
    d.get(&img).expect(404, Some("ResourceNotFound"));
}

/// Item 5: GetImageFile carries `ETag` (the file's SHA-1) and
/// `Last-Modified`, answers 304 to `If-None-Match` and to an
/// `If-Modified-Since` at or after it, 412 to a stale `If-Match` or an
/// `If-Unmodified-Since` before it. Item 8: `?index=1` is 404.
#[test]
fn downloads_are_conditional_and_index_zero_only() {
    let d = Daemon::start();
    let uuid = d.create_active("dl", DATA, json!({}));
    let file = format!("/images/{uuid}/file");
    let r = d.get(&file);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, DATA);
    let sha1 = sha1_hex(DATA);
    assert_eq!(etag(&r), sha1);
    let lm = r
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    assert!(lm.ends_with(" GMT"), "{lm}");

    let r = with(&d, "GET", &file, &[("If-None-Match", &sha1)], b"");
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = with(&d, "HEAD", &file, &[("If-None-Match", &sha1)], b"");
    assert_eq!(r.status, 304);
    let r = with(&d, "GET", &file, &[("If-Modified-Since", &lm)], b"");
    assert_eq!(r.status, 304);
    let r = with(
        &d,
        "GET",
        &file,
        &[("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, DATA);
    with(&d, "GET", &file, &[("If-Match", "0000")], b"").expect(412, Some("PreconditionFailed"));
    with(
        &d,
        "GET",
        &file,
        &[("If-Unmodified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")],
        b"",
    )
    .expect(412, Some("PreconditionFailed"));
    assert_eq!(
        with(&d, "GET", &file, &[("If-Match", &sha1)], b"").status,
        200
    );

    // Only file 0 exists; `index` is read as parseInt (garbage is 0).
    d.get(&format!("{file}?index=1"))
        .expect(404, Some("ResourceNotFound"));
    assert_eq!(d.get(&format!("{file}?index=0")).status, 200);
    assert_eq!(d.get(&format!("{file}?index=x")).status, 200);
    d.get(&format!("{file}?index=-1"))
        .expect(404, Some("ResourceNotFound"));
}

/// Item 6: the codes clients branch on, as the reference answers them.
#[test]
fn error_codes_are_the_references() {
    let d = Daemon::start();
    // A manifest missing required fields: ValidationFailed, each error
    // `MissingParameter` (node-imgmanifest).
    let v = d
        .post_json("/images", &json!({"type": "zone-dataset"}))
        .expect(422, Some("ValidationFailed"));
    let errs = v["errors"].as_array().unwrap();
    assert!(!errs.is_empty());
    for f in ["name", "version", "os"] {
        let e = errs
            .iter()
            .find(|e| e["field"] == f)
            .unwrap_or_else(|| panic!("{f}: {v}"));
        assert_eq!(e["code"], "MissingParameter", "{v}");
    }
    // Invalid JSON: 400 InvalidContent (restify's bodyParser).
    request(&d.sock, "POST", "/images", &[], b"{not json").expect(400, Some("InvalidContent"));
    let uuid = d.create("codes", json!({}));
    let img = format!("/images/{uuid}");
    // No action: InvalidParameter, its error `MissingParameter`.
    let v = d.post(&img).expect(422, Some("InvalidParameter"));
    assert_eq!(v["errors"][0]["field"], "action");
    assert_eq!(v["errors"][0]["code"], "MissingParameter");
    let v = d
        .post(&format!("{img}?action=bogus"))
        .expect(422, Some("InvalidParameter"));
    assert_eq!(v["errors"][0]["code"], "Invalid");

    // AdminImportImage with a body uuid that is not the path's: one
    // InvalidParameter error on `uuid`.
    let other = "11111111-1111-4111-8111-111111111111";
    let v = d
        .post_json(
            &format!("/images/{other}?action=import"),
            &json!({"uuid": uuid, "name": "x", "version": "1", "type": "zone-dataset", "os": "smartos"}),
        )
        .expect(422, Some("InvalidParameter"));
    assert_eq!(v["errors"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["errors"][0]["field"], "uuid");
    assert!(
        v["message"].as_str().unwrap().contains("do not match"),
        "{v}"
    );

    // A file whose sha1 or size is wrong, or that is empty: 400 Download
    // (AddImageFile's DownloadError); nothing stored.
    let wrong = "0".repeat(40);
    d.put(&format!("{img}/file?compression=none&sha1={wrong}"), DATA)
        .expect(400, Some("Download"));
    d.put(&format!("{img}/file?compression=none&size=3"), DATA)
        .expect(400, Some("Download"));
    d.put(&format!("{img}/file?compression=none"), b"")
        .expect(400, Some("Download"));
    assert!(d.get(&img).json()["files"].as_array().unwrap().is_empty());
    // A missing compression: InvalidParameter whose error says `Missing`
    // (the reference's own word there).
    let v = d
        .put(&format!("{img}/file"), DATA)
        .expect(422, Some("InvalidParameter"));
    assert_eq!(v["errors"][0]["field"], "compression");
    assert_eq!(v["errors"][0]["code"], "Missing");
}

/// Item 7: what CreateImage, AdminImportImage, UpdateImage and
/// AddImageFile drop, refuse or normalise.
#[test]
fn fields_dropped_refused_and_normalised() {
    let d = Daemon::start();
    let owner = "930896af-bf8c-48d4-885c-6573a94b1853";
    // String acl and billing_tags become arrays; files in the body are
    // dropped; an unactivated image shows `files: []`.
    let v = d
        .post_json(
            "/images",
            &json!({"name": "n", "version": "1", "type": "zone-dataset", "os": "smartos",
                "acl": owner, "billing_tags": "small", "files": [{"sha1": "x", "size": 1, "compression": "none"}]}),
        )
        .expect(200, None);
    assert_eq!(v["acl"], json!([owner]));
    assert_eq!(v["billing_tags"], json!(["small"]));
    assert_eq!(v["files"], json!([]));
    let uuid = v["uuid"].as_str().unwrap().to_string();
    let img = format!("/images/{uuid}");
    assert_eq!(d.get(&img).json()["files"], json!([]));
    // `state` on CreateImage stays refused, as the reference's
    // apiCreateImage refuses it: one NotAllowed error, whatever else.
    let v = d
        .post_json(
            "/images",
            &json!({"name": "n", "version": "1", "type": "zone-dataset", "os": "smartos",
                "state": "active", "frob": 1}),
        )
        .expect(422, Some("ValidationFailed"));
    assert_eq!(
        v["errors"],
        json!([{"field": "state", "code": "NotAllowed", "message": "Parameter cannot be set"}])
    );
    // Keys CreateImage does not take are IMGAPI's "invalid extra
    // parameters" (uuid and published_at only go with an import).
    let v = d
        .post_json(
            "/images",
            &json!({"name": "n", "version": "1", "type": "zone-dataset", "os": "smartos",
                "uuid": owner, "published_at": "2020-01-02T03:04:05Z", "frob": 1}),
        )
        .expect(422, Some("InvalidParameter"));
    assert_eq!(
        v["message"],
        "invalid extra parameters: \"uuid\", \"published_at\", \"frob\""
    );

    // AddImageFile keeps dataset_guid in files[0]; inclAdminFields shows
    // where the file is kept.
    let v = d
        .put(
            &format!("{img}/file?compression=none&dataset_guid=1234567890"),
            DATA,
        )
        .expect(200, None);
    assert_eq!(v["files"][0]["dataset_guid"], "1234567890");
    assert!(v["files"][0].get("stor").is_none());
    let v = d
        .get(&format!("{img}?inclAdminFields=true"))
        .expect(200, None);
    assert_eq!(v["files"][0]["stor"], "local");
    assert_eq!(v["files"][0]["dataset_guid"], "1234567890");
    let list = d
        .get("/images?state=all&inclAdminFields=true")
        .expect(200, None);
    assert_eq!(list[0]["files"][0]["stor"], "local");
    assert!(d.get(&img).json()["files"][0].get("stor").is_none());

    // An operator marks the image failed with an error (UpdateImage's
    // operator fields); other states are not set by hand.
    let v = d
        .post_json(
            &format!("{img}?action=update"),
            &json!({"state": "failed", "error": {"message": "prepare-image failed", "code": "PrepareImageError"}}),
        )
        .expect(200, None);
    assert_eq!(v["state"], "failed");
    assert_eq!(v["error"]["code"], "PrepareImageError");
    d.post_json(&format!("{img}?action=update"), &json!({"state": "active"}))
        .expect(422, Some("ValidationFailed"));

    // AdminImportImage: read-only or unknown keys are "invalid extra
    // parameters" (InvalidParameter, one error each); `state` and `files`
    // are dropped so GetImage output can be imported.
    let new = "22222222-2222-4222-8222-222222222222";
    let base = json!({"uuid": new, "name": "imp", "version": "1", "type": "zone-dataset",
        "os": "smartos", "owner": owner});
    let mut extra = base.clone();
    extra["activated"] = json!(true);
    extra["frob"] = json!(1);
    let v = d
        .post_json(&format!("/images/{new}?action=import"), &extra)
        .expect(422, Some("InvalidParameter"));
    assert_eq!(
        v["message"], "invalid extra parameters: \"activated\", \"frob\"",
        "{v}"
    );
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["activated", "frob"]);
    d.get(&format!("/images/{new}"))
        .expect(404, Some("ResourceNotFound"));
    let mut posted_back = base.clone();
    posted_back["state"] = json!("active");
    posted_back["files"] = json!([{"sha1": "x", "size": 1, "compression": "none"}]);
    posted_back["published_at"] = json!("2020-01-02T03:04:05.000Z");
    let v = d
        .post_json(&format!("/images/{new}?action=import"), &posted_back)
        .expect(200, None);
    assert_eq!(v["state"], "unactivated");
    assert_eq!(v["files"], json!([]));
}

/// Item 8: `billing_tag`, `owner=` that is not a UUID, `Accept-Version`,
/// `ping?error=`, the `Server` header and `GET /state`'s shape.
#[test]
fn smaller_differences() {
    let d = Daemon::start();
    let a = d.create_active("bt-a", DATA, json!({"billing_tags": ["small", "ssd"]}));
    let b = d.create_active("bt-b", DATA, json!({"billing_tags": ["small"]}));
    let uuids = |q: &str| -> Vec<String> {
        let mut v: Vec<String> = d
            .get(&format!("/images{q}"))
            .expect(200, None)
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["uuid"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(uuids("?billing_tag=small"), both);
    assert_eq!(uuids("?billing_tag=ssd"), vec![a.clone()]);
    assert_eq!(uuids("?billing_tag=small&billing_tag=ssd"), vec![a.clone()]);
    assert!(uuids("?billing_tag=none").is_empty());
    // An owner that is not a UUID owns nothing: an empty list, not 422.
    assert!(uuids("?owner=not-a-uuid").is_empty());

    // Accept-Version: ~1 has no channels; an unknown range is 400
    // InvalidVersion; `*` and ~2 are the latest.
    let img = format!("/images/{a}");
    for v in ["*", "~2", "~1", "1.0.0"] {
        with(&d, "GET", &img, &[("Accept-Version", v)], b"").expect(200, None);
    }
    let v = with(&d, "GET", &img, &[("Accept-Version", "~99")], b"")
        .expect(400, Some("InvalidVersion"));
    assert!(v["message"].as_str().unwrap().contains("~99"), "{v}");
    with(&d, "GET", "/images", &[("Accept-Version", "~99")], b"")
        .expect(400, Some("InvalidVersion"));

    // ping?error=NAME answers that error, as IMGAPI's ping does.
    let r = d.get("/ping?error=ValidationFailed");
    r.expect(422, Some("ValidationFailed"));
    assert!(r.header("server").is_some());
    d.get("/ping?error=OperatorOnly")
        .expect(403, Some("OperatorOnly"));
    d.get("/ping?error=ImageUuidAlreadyExists")
        .expect(409, Some("ImageUuidAlreadyExists"));
    d.get("/ping?error=").expect(500, Some("InternalError"));
    let v = d
        .get("/ping?error=NoSuch")
        .expect(422, Some("InvalidParameter"));
    assert_eq!(v["errors"][0]["field"], "error");
    let pong = d.get("/ping").expect(200, None);
    assert_eq!(pong["ping"], "pong");
    assert_eq!(pong["imgapi"], true);

    // A Server header on every response, success or error.
    for r in [d.get("/ping"), d.get("/nope"), d.get(&img)] {
        let s = r
            .header("server")
            .unwrap_or_else(|| panic!("no Server: {:?}", r.headers));
        assert!(s.starts_with("imgstore/"), "{s}");
    }

    // GET /state has IMGAPI's AdminGetState fields.
    let st = d.get("/state").expect(200, None);
    assert!(st["cache"].is_object(), "{st}");
    assert!(st["log"]["level"].is_number(), "{st}");
    assert_eq!(st["storageTypes"], json!(["local"]));
    assert_eq!(st["ok"], true, "the store's own report is kept: {st}");
}

/// Item 8: `Accept-Version: ~1` hides `channels`, the latest shows them.
/// The manifest gets `channels` through an import here (the body's
/// `channels` are kept when the store has no channel configuration).
#[test]
fn version_one_has_no_channels() {
    // With channels configured, AdminImportImage puts the image in the
    // default channel (whatever the body says), as IMGAPI does.
    let d = Daemon::start_config(
        "[[channels]]\nname = \"dev\"\ndescription = \"development\"\ndefault = true\n",
    );
    let uuid = "33333333-3333-4333-8333-333333333333";
    let body = json!({"uuid": uuid, "name": "ch", "version": "1", "type": "zone-dataset",
        "os": "smartos", "channels": ["release"]});
    d.post_json(&format!("/images/{uuid}?action=import"), &body)
        .expect(200, None);
    let img = format!("/images/{uuid}");
    let latest = with(&d, "GET", &img, &[("Accept-Version", "~2")], b"").expect(200, None);
    assert_eq!(latest["channels"], json!(["dev"]));
    let v1 = with(&d, "GET", &img, &[("Accept-Version", "~1")], b"").expect(200, None);
    assert!(v1.get("channels").is_none(), "{v1}");
    let list = with(
        &d,
        "GET",
        "/images?state=all",
        &[("Accept-Version", "~1")],
        b"",
    )
    .expect(200, None);
    assert!(list[0].get("channels").is_none(), "{list}");
}
