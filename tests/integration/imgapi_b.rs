//! IMGAPI fidelity, slice B (issue #13 items 2, 3 and part of 4): channels,
//! per-account visibility, AddImageAcl/RemoveImageAcl and CloneImage, each
//! asserting sdc-imgapi's status, code and body shape (lib/images.js,
//! lib/channels.js, lib/errors.js).

use crate::common::nginx::free_port;
use crate::common::*;
use serde_json::{json, Value};

const NIL: &str = "00000000-0000-0000-0000-000000000000";
const A: &str = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
const B: &str = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
const C: &str = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";

const CHANNELS: &str = r#"
[[channels]]
name = "dev"
description = "all development builds"
[[channels]]
name = "staging"
description = "builds for testing in staging"
[[channels]]
name = "release"
description = "release builds"
default = true
"#;

fn uuids(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("expected an array: {v}"))
        .iter()
        .map(|m| m["uuid"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

fn sorted(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Asserts a single `errors[]` entry with this field and code.
fn field_error(v: &Value, field: &str, code: &str) {
    let errs = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors[]: {v}"));
    assert_eq!(errs.len(), 1, "{v}");
    assert_eq!(errs[0]["field"], field, "{v}");
    assert_eq!(errs[0]["code"], code, "{v}");
}

/// Creates, uploads and activates an image, every request carrying
/// `query` (`""` or `channel=NAME`); returns its uuid.
fn create_in(d: &Daemon, name: &str, query: &str, data: &[u8]) -> String {
    let amp = if query.is_empty() { "" } else { "&" };
    let m = d
        .post_json(
            &format!("/images?{query}"),
            &json!({"name": name, "version": "1.0.0", "type": "zone-dataset", "os": "smartos"}),
        )
        .expect(200, None);
    let uuid = m["uuid"].as_str().unwrap().to_string();
    d.put(
        &format!(
            "/images/{uuid}/file?compression=none&sha1={}{amp}{query}",
            sha1_hex(data)
        ),
        data,
    )
    .expect(200, None);
    d.post(&format!("/images/{uuid}?action=activate{amp}{query}"))
        .expect(200, None);
    uuid
}

/// ListChannels, `?channel=` on CreateImage, ListImages, GetImage and
/// GetImageFile, ChannelAddImage, and DeleteImage from one channel.
#[test]
fn channels_scope_every_image_endpoint() {
    let d = Daemon::start_config(CHANNELS);
    // ListChannels: the configured list, `default` only on the default.
    let v = d.get("/channels").expect(200, None);
    assert_eq!(
        v,
        json!([
            {"name": "dev", "description": "all development builds"},
            {"name": "staging", "description": "builds for testing in staging"},
            {"name": "release", "description": "release builds", "default": true},
        ])
    );

    // CreateImage goes into the default channel, or ?channel=; a body's
    // `channels` is replaced.
    let rel = create_in(&d, "rel", "", b"release bits");
    let dev = create_in(&d, "dev", "channel=dev", b"dev bits");
    let m = d
        .post_json(
            "/images",
            &json!({"name": "c", "version": "1", "type": "other", "os": "other", "channels": ["staging"]}),
        )
        .expect(200, None);
    assert_eq!(m["channels"], json!(["release"]));
    let unact = m["uuid"].as_str().unwrap().to_string();
    assert_eq!(
        d.get(&format!("/images/{rel}")).expect(200, None)["channels"],
        json!(["release"])
    );
    assert_eq!(
        d.get(&format!("/images/{dev}?channel=dev"))
            .expect(200, None)["channels"],
        json!(["dev"])
    );

    // An unknown channel is 422 ValidationFailed on channel, and creates
    // nothing.
    let before = uuids(&d.get("/images?state=all&channel=*").expect(200, None));
    let e = d
        .post_json(
            "/images?channel=nope",
            &json!({"name": "x", "version": "1", "type": "other", "os": "other"}),
        )
        .expect(422, Some("ValidationFailed"));
    field_error(&e, "channel", "Invalid");
    assert_eq!(e["message"], "unknown channel: nope");
    assert_eq!(
        uuids(&d.get("/images?state=all&channel=*").expect(200, None)),
        before
    );
    for path in [
        "/images?channel=nope".to_string(),
        format!("/images/{rel}?channel=nope"),
        format!("/images/{rel}/file?channel=nope"),
    ] {
        let e = d.get(&path).expect(422, Some("ValidationFailed"));
        field_error(&e, "channel", "Invalid");
    }

    // ListImages: the default channel, one channel, or all with `*`.
    assert_eq!(uuids(&d.get("/images").expect(200, None)), sorted(&[&rel]));
    assert_eq!(
        uuids(&d.get("/images?channel=dev").expect(200, None)),
        sorted(&[&dev])
    );
    assert_eq!(
        uuids(&d.get("/images?channel=*").expect(200, None)),
        sorted(&[&rel, &dev])
    );
    assert_eq!(
        uuids(&d.get("/images?channel=*&state=all").expect(200, None)),
        sorted(&[&rel, &dev, &unact])
    );

    // GetImage and GetImageFile: an image outside the channel is 404, with
    // the body of a missing image.
    let e = d
        .get(&format!("/images/{dev}"))
        .expect(404, Some("ResourceNotFound"));
    assert_eq!(
        e,
        json!({"code": "ResourceNotFound", "message": format!("image {dev} not found")})
    );
    d.get(&format!("/images/{dev}/file"))
        .expect(404, Some("ResourceNotFound"));
    d.get(&format!("/images/{dev}?channel=*")).expect(200, None);
    let f = d.get(&format!("/images/{dev}/file?channel=dev"));
    assert_eq!(f.status, 200);
    assert_eq!(f.body, b"dev bits");
    // Writes look in one channel: `*` is not a channel there.
    let e = d
        .post_json(
            &format!("/images/{dev}?action=update&channel=*"),
            &json!({"description": "x"}),
        )
        .expect(422, Some("ValidationFailed"));
    field_error(&e, "channel", "Invalid");

    // ChannelAddImage: the body names the channel to add; the query's
    // channel is where the image is looked up.
    let e = d
        .post_json(
            &format!("/images/{dev}?action=channel-add"),
            &json!({"channel": "release"}),
        )
        .expect(404, Some("ResourceNotFound"));
    assert_eq!(e["message"], format!("image {dev} not found"));
    let e = d
        .post_json(
            &format!("/images/{dev}?action=channel-add&channel=dev"),
            &json!({"channel": "bogus"}),
        )
        .expect(422, Some("ValidationFailed"));
    field_error(&e, "channel", "Invalid");
    assert_eq!(e["message"], "unknown channel: bogus");
    let m = d
        .post_json(
            &format!("/images/{dev}?action=channel-add&channel=dev"),
            &json!({"channel": "release"}),
        )
        .expect(200, None);
    assert_eq!(m["channels"], json!(["dev", "release"]));
    assert_eq!(m["uuid"], dev.as_str());
    // Adding again changes nothing.
    let m = d
        .post_json(
            &format!("/images/{dev}?action=channel-add&channel=dev"),
            &json!({"channel": "release"}),
        )
        .expect(200, None);
    assert_eq!(m["channels"], json!(["dev", "release"]));
    assert_eq!(
        uuids(&d.get("/images").expect(200, None)),
        sorted(&[&rel, &dev])
    );

    // DeleteImage in a channel: only removed from it while it is in others.
    assert_eq!(d.delete(&format!("/images/{dev}?channel=dev")).status, 204);
    d.get(&format!("/images/{dev}?channel=dev"))
        .expect(404, Some("ResourceNotFound"));
    let m = d.get(&format!("/images/{dev}")).expect(200, None);
    assert_eq!(m["channels"], json!(["release"]));
    let f = d.get(&format!("/images/{dev}/file"));
    assert_eq!(f.body, b"dev bits");
    // The last channel: the image is deleted.
    assert_eq!(d.delete(&format!("/images/{dev}")).status, 204);
    d.get(&format!("/images/{dev}?channel=*"))
        .expect(404, Some("ResourceNotFound"));

    // force_all_channels deletes from every channel at once.
    d.post_json(
        &format!("/images/{rel}?action=channel-add"),
        &json!({"channel": "staging"}),
    )
    .expect(200, None);
    let e = d
        .delete(&format!(
            "/images/{rel}?channel=staging&force_all_channels=maybe"
        ))
        .expect(422, Some("InvalidParameter"));
    field_error(&e, "force_all_channels", "Invalid");
    assert_eq!(
        d.delete(&format!(
            "/images/{rel}?channel=staging&force_all_channels=true"
        ))
        .status,
        204
    );
    d.get(&format!("/images/{rel}?channel=*"))
        .expect(404, Some("ResourceNotFound"));
    let e = d
        .delete(&format!("/images/{unact}?channel=bogus"))
        .expect(422, Some("ValidationFailed"));
    field_error(&e, "channel", "Invalid");
    d.get(&format!("/images/{unact}")).expect(200, None);
}

/// Without `[[channels]]`, as an IMGAPI configured without channels: no
/// ListChannels, `?channel=` ignored, no `channels` in manifests.
#[test]
fn without_channels_the_parameter_is_ignored() {
    let d = Daemon::start();
    let e = d.get("/channels").expect(404, Some("ResourceNotFound"));
    assert!(e["message"].as_str().unwrap().contains("/channels"), "{e}");
    let m = d
        .post_json(
            "/images?channel=whatever",
            &json!({"name": "n", "version": "1", "type": "other", "os": "other", "channels": ["dev"]}),
        )
        .expect(200, None);
    assert!(m.get("channels").is_none(), "{m}");
    let u = m["uuid"].as_str().unwrap();
    d.get(&format!("/images/{u}?channel=whatever"))
        .expect(200, None);
    assert_eq!(
        uuids(&d.get("/images?state=all&channel=x").expect(200, None)),
        [u.to_string()]
    );
    let e = d
        .post_json(
            &format!("/images/{u}?action=channel-add"),
            &json!({"channel": "dev"}),
        )
        .expect(422, Some("InvalidParameter"));
    field_error(&e, "action", "Invalid");
    assert_eq!(d.delete(&format!("/images/{u}?channel=dev")).status, 204);
    d.get(&format!("/images/{u}"))
        .expect(404, Some("ResourceNotFound"));
}

/// `?account=`: what an account sees (lists, GetImage, GetImageFile) and
/// may change; AdminImportImage is operator-only.
#[test]
fn account_sees_public_own_and_shared_images_only() {
    let d = Daemon::start();
    let public = d.create_active("pub", b"p", json!({"owner": A, "public": true}));
    let shared = d.create_active("shared", b"s", json!({"owner": A, "acl": [B]}));
    let private = d.create_active("private", b"q", json!({"owner": A}));
    let unact_public = d.create("unact-pub", json!({"owner": A, "public": true, "acl": [B]}));
    let disabled_public = d.create_active("dis-pub", b"d", json!({"owner": A, "public": true}));
    d.post(&format!("/images/{disabled_public}?action=disable"))
        .expect(200, None);
    let own = d.create("own", json!({"owner": B}));
    let missing = "dddddddd-dddd-4ddd-8ddd-dddddddddddd";

    // ListImages.
    let list = |q: &str| uuids(&d.get(&format!("/images?{q}")).expect(200, None));
    assert_eq!(list(&format!("account={B}")), sorted(&[&public, &shared]));
    assert_eq!(
        list(&format!("account={B}&state=all")),
        sorted(&[&public, &shared, &disabled_public, &own])
    );
    assert_eq!(
        list(&format!("account={B}&state=unactivated")),
        sorted(&[&own])
    );
    assert_eq!(
        list(&format!("account={B}&state=disabled")),
        Vec::<String>::new()
    );
    assert_eq!(
        list(&format!("account={B}&state=all&owner={A}")),
        sorted(&[&public, &shared, &disabled_public])
    );
    assert_eq!(
        list(&format!("account={B}&state=all&public=false")),
        sorted(&[&shared, &own])
    );
    assert_eq!(
        list(&format!("account={C}&state=all")),
        sorted(&[&public, &disabled_public])
    );
    assert_eq!(
        list(&format!("account={A}&state=unactivated")),
        sorted(&[&unact_public])
    );
    // Without an account, an operator sees everything.
    assert_eq!(list("state=all").len(), 6);

    // GetImage, GetImageFile: what is hidden answers as a missing image.
    for u in [&public, &shared, &disabled_public, &own] {
        d.get(&format!("/images/{u}?account={B}")).expect(200, None);
    }
    let f = d.get(&format!("/images/{shared}/file?account={B}"));
    assert_eq!((f.status, f.body.as_slice()), (200, &b"s"[..]));
    for u in [private.as_str(), unact_public.as_str(), missing] {
        for path in [
            format!("/images/{u}?account={B}"),
            format!("/images/{u}/file?account={B}"),
        ] {
            let e = d.get(&path).expect(404, Some("ResourceNotFound"));
            assert_eq!(
                e,
                json!({"code": "ResourceNotFound", "message": format!("image {u} not found")}),
                "{path}"
            );
        }
    }
    let e = d
        .get(&format!("/images/{public}?account=nobody"))
        .expect(422, Some("InvalidParameter"));
    field_error(&e, "account", "Invalid");
    assert_eq!(e["message"], "invalid \"account\": not a UUID: \"nobody\"");

    // Writes: another account that sees the image is NotImageOwner (422),
    // one that does not see it 404; nothing changes either way.
    let before = d.get(&format!("/images/{public}")).expect(200, None);
    let writes: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            format!("/images/{public}?action=update"),
            json!({"description": "x"}),
        ),
        (
            "POST",
            format!("/images/{public}?action=disable"),
            json!({}),
        ),
        (
            "POST",
            format!("/images/{public}/acl?action=add"),
            json!([C]),
        ),
        ("DELETE", format!("/images/{public}"), Value::Null),
    ];
    for (method, path, body) in &writes {
        let path = format!(
            "{path}{}account={B}",
            if path.contains('?') { "&" } else { "?" }
        );
        let r = if *method == "DELETE" {
            d.delete(&path)
        } else {
            d.post_json(&path, body)
        };
        let e = r.expect(422, Some("NotImageOwner"));
        assert_eq!(
            e["message"],
            format!("account {B} is not the owner of image {public}")
        );
    }
    d.put(
        &format!("/images/{unact_public}/file?compression=none&account={B}"),
        b"x",
    )
    .expect(404, Some("ResourceNotFound"));
    d.post(&format!(
        "/images/{unact_public}?action=activate&account={B}"
    ))
    .expect(404, Some("ResourceNotFound"));
    d.post(&format!("/images/{private}?action=disable&account={B}"))
        .expect(404, Some("ResourceNotFound"));
    assert_eq!(
        d.get(&format!("/images/{public}")).expect(200, None),
        before
    );
    assert_eq!(
        d.get(&format!("/images/{unact_public}")).expect(200, None)["state"],
        "unactivated"
    );

    // The owner may.
    let m = d
        .post_json(
            &format!("/images/{public}?action=update&account={A}"),
            &json!({"description": "mine"}),
        )
        .expect(200, None);
    assert_eq!(m["description"], "mine");
    d.post(&format!("/images/{own}?action=disable&account={B}"))
        .expect(200, None);

    // CreateImage: the account is the owner, and may not name another.
    let m = d
        .post_json(
            &format!("/images?account={B}"),
            &json!({"name": "mine", "version": "1", "type": "other", "os": "other"}),
        )
        .expect(200, None);
    assert_eq!(m["owner"], B);
    let e = d
        .post_json(
            &format!("/images?account={B}"),
            &json!({"name": "x", "version": "1", "type": "other", "os": "other", "owner": A}),
        )
        .expect(422, Some("InvalidParameter"));
    field_error(&e, "owner", "Invalid");

    // AdminImportImage and import-remote are operator-only.
    let new = "eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee";
    let e = d
        .post_json(
            &format!("/images/{new}?action=import&account={B}"),
            &json!({"uuid": new, "name": "i", "version": "1", "type": "other", "os": "other", "owner": B}),
        )
        .expect(403, Some("OperatorOnly"));
    assert!(e.get("errors").is_none(), "{e}");
    d.post(&format!("/images/{new}?action=import-remote&account={B}"))
        .expect(403, Some("OperatorOnly"));
    d.get(&format!("/images/{new}"))
        .expect(404, Some("ResourceNotFound"));
}

/// AddImageAcl / RemoveImageAcl: a JSON array of uuids; no action is add.
#[test]
fn acl_add_and_remove() {
    let d = Daemon::start();
    let u = d.create_active("acl", b"a", json!({"owner": A}));
    let acl = format!("/images/{u}/acl");
    let m = d.post_json(&acl, &json!([B, C])).expect(200, None);
    assert_eq!(m["acl"], json!([B, C]));
    assert_eq!(m["uuid"], u.as_str());
    let m = d
        .post_json(&format!("{acl}?action=add"), &json!([B]))
        .expect(200, None);
    assert_eq!(m["acl"], json!([B, C]));
    // B now sees the private image.
    d.get(&format!("/images/{u}?account={B}")).expect(200, None);
    let m = d
        .post_json(&format!("{acl}?action=remove"), &json!([B, A]))
        .expect(200, None);
    assert_eq!(m["acl"], json!([C]));
    d.get(&format!("/images/{u}?account={B}"))
        .expect(404, Some("ResourceNotFound"));
    // An empty ACL is not shown (as IMGAPI serialises it).
    let m = d
        .post_json(&format!("{acl}?action=remove&account={A}"), &json!([C]))
        .expect(200, None);
    assert!(m.get("acl").is_none(), "{m}");

    // Bad bodies and actions change nothing.
    let e = d
        .post_json(&acl, &json!({"acl": [B]}))
        .expect(422, Some("InvalidParameter"));
    field_error(&e, "acl", "Invalid");
    assert_eq!(e["message"], "invalid image \"acl\" (not an array)");
    let e = d
        .post_json(&acl, &json!([B, "nope"]))
        .expect(422, Some("InvalidParameter"));
    field_error(&e, "acl", "Invalid");
    let e = d
        .post_json(&format!("{acl}?action=grant"), &json!([B]))
        .expect(422, Some("InvalidParameter"));
    field_error(&e, "action", "Invalid");
    assert!(d.get(&format!("/images/{u}")).json().get("acl").is_none());
    let r = d.get(&acl);
    r.expect(405, Some("MethodNotAllowed"));
    assert_eq!(r.header("allow"), Some("POST"));
    d.post_json(
        "/images/dddddddd-dddd-4ddd-8ddd-dddddddddddd/acl",
        &json!([B]),
    )
    .expect(404, Some("ResourceNotFound"));
    // The image is looked up (and its owner checked) before the action.
    d.post_json(
        "/images/dddddddd-dddd-4ddd-8ddd-dddddddddddd/acl?action=grant",
        &json!([B]),
    )
    .expect(404, Some("ResourceNotFound"));
    d.post_json(&format!("{acl}?action=grant&account={B}"), &json!([B]))
        .expect(404, Some("ResourceNotFound"));
    d.post_json(&format!("{acl}?action=grant&account={A}"), &json!([B]))
        .expect(422, Some("InvalidParameter"));
}

/// CloneImage: only an account on the ACL; the clone is the account's,
/// private, active, same file; origins owned by others are cloned too
/// (disabled), up to an origin of the unset owner.
#[test]
fn clone_image_copies_for_an_account_on_the_acl() {
    let d = Daemon::start();
    let base = d.create_active("base", b"base", json!({"owner": NIL, "public": true}));
    let mid = d.create_active("mid", b"mid", json!({"owner": A, "origin": base}));
    let leaf = d.create_active(
        "leaf",
        b"leaf",
        json!({"owner": A, "origin": mid, "acl": [B], "description": "d"}),
    );
    let orig = d.get(&format!("/images/{leaf}")).expect(200, None);

    let m = d
        .post(&format!("/images/{leaf}/clone?account={B}"))
        .expect(200, None);
    let clone = m["uuid"].as_str().unwrap().to_string();
    assert_ne!(clone, leaf);
    assert_eq!(m["owner"], B);
    assert_eq!(m["state"], "active");
    assert_eq!(m["disabled"], false);
    assert_eq!(m["public"], false);
    assert!(m.get("acl").is_none(), "{m}");
    assert!(m["published_at"].is_string());
    assert_eq!(m["name"], "leaf");
    assert_eq!(m["description"], "d");
    assert_eq!(m["files"][0]["sha1"], orig["files"][0]["sha1"]);
    // Its origin is a clone of `mid`, B's and disabled, on the admin base.
    let cmid = m["origin"].as_str().unwrap().to_string();
    assert_ne!(cmid, mid);
    let c = d.get(&format!("/images/{cmid}")).expect(200, None);
    assert_eq!(c["owner"], B);
    assert_eq!(c["name"], "mid");
    assert_eq!(c["state"], "disabled");
    assert_eq!(c["origin"], base.as_str());
    // B lists its clone; the file is the same bytes.
    let listed = uuids(
        &d.get(&format!("/images?account={B}&owner={B}"))
            .expect(200, None),
    );
    assert_eq!(listed, vec![clone.as_str()]);
    let f = d.get(&format!("/images/{clone}/file?account={B}"));
    assert_eq!(f.body, b"leaf");
    // The original is unchanged, and deleting it leaves the clone whole.
    assert_eq!(d.get(&format!("/images/{leaf}")).expect(200, None), orig);
    assert_eq!(d.delete(&format!("/images/{leaf}")).status, 204);
    assert_eq!(d.get(&format!("/images/{clone}/file")).body, b"leaf");

    // The refusals.
    let public = d.create_active("pub", b"p", json!({"owner": A, "public": true}));
    let e = d
        .post(&format!("/images/{public}/clone?account={B}"))
        .expect(422, Some("ImageNotShared"));
    assert!(e["message"].as_str().unwrap().contains(B), "{e}");
    let e = d
        .post(&format!("/images/{public}/clone"))
        .expect(422, Some("InvalidParameter"));
    field_error(&e, "account", "Invalid");
    let private = d.create_active("priv", b"q", json!({"owner": A, "acl": [C]}));
    d.post(&format!("/images/{private}/clone?account={B}"))
        .expect(404, Some("ResourceNotFound"));
    let unact = d.create("unact", json!({"owner": B, "acl": [B]}));
    let e = d
        .post(&format!("/images/{unact}/clone?account={B}"))
        .expect(422, Some("ValidationFailed"));
    field_error(&e, "active", "Invalid");
    let e = d.get(&format!("/images/{public}/clone"));
    e.expect(405, Some("MethodNotAllowed"));
    // Nothing else was created: B owns exactly the two clones and `unact`.
    assert_eq!(
        uuids(
            &d.get(&format!("/images?owner={B}&state=all"))
                .expect(200, None)
        ),
        sorted(&[&clone, &cmid, &unact])
    );
}

/// A source URL's `?channel=` is sent on every request to that IMGAPI
/// (list, get, file): another imgstore with channels, through its peer
/// listener, answers only from that channel.
#[test]
fn source_channel_is_passed_on_to_remote_imgapi() {
    let port = free_port();
    let a = Daemon::start_config(&format!(
        "{CHANNELS}\n[peer]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    let rel = create_in(&a, "chan-rel", "", b"release bits");
    let dev = create_in(&a, "chan-dev", "channel=dev", b"dev bits");

    let b = Daemon::start_config(CHANNELS);
    for (url, expect) in [
        (format!("http://127.0.0.1:{port}?channel=dev"), &dev),
        (format!("http://127.0.0.1:{port}"), &rel),
    ] {
        b.post_json("/sources", &json!({"url": url, "type": "imgapi"}))
            .expect(201, None);
        let v = b.get("/sources/images?name=~chan-").expect(200, None);
        let got: Vec<&str> = v["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["manifest"]["uuid"].as_str().unwrap())
            .collect();
        assert_eq!(got, [expect.as_str()], "{url}: {v}");
        b.get(&format!("/sources/images/{expect}"))
            .expect(200, None);
        assert_eq!(
            b.delete(&format!("/sources?url={}", urlencode(&url)))
                .status,
            204
        );
    }
    // The dev image is imported through the dev channel: its GetImage and
    // GetImageFile are 404 in A's default channel.
    b.post_json(
        "/sources",
        &json!({"url": format!("http://127.0.0.1:{port}?channel=dev"), "type": "imgapi"}),
    )
    .expect(201, None);
    // The copy goes into the request's channel on B (not A's channels).
    let e = b
        .post(&format!("/images/{dev}?action=import-remote&channel=bogus"))
        .expect(422, Some("ValidationFailed"));
    field_error(&e, "channel", "Invalid");
    let t = b
        .post(&format!(
            "/images/{dev}?action=import-remote&channel=staging"
        ))
        .expect(202, None);
    expect_success(&b, &t);
    let m = b
        .get(&format!("/images/{dev}?channel=staging"))
        .expect(200, None);
    assert_eq!(m["channels"], json!(["staging"]));
    b.get(&format!("/images/{dev}"))
        .expect(404, Some("ResourceNotFound"));
    assert_eq!(
        b.get(&format!("/images/{dev}/file?channel=staging")).body,
        b"dev bits"
    );
    // Without ?channel=, B's default channel.
    let t = b
        .post(&format!(
            "/images/{rel}?action=import-remote&source={}",
            urlencode(&format!("http://127.0.0.1:{port}"))
        ))
        .expect(202, None);
    expect_success(&b, &t);
    assert_eq!(
        b.get(&format!("/images/{rel}")).expect(200, None)["channels"],
        json!(["release"])
    );
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
