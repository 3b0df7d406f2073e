//! The IMGAPI image endpoints over the socket: happy paths and every error
//! case the core issue names.

use crate::common::*;
use serde_json::json;

const NIL: &str = "00000000-0000-0000-0000-000000000000";

#[test]
fn ping_answers_imgapi_shape() {
    let d = Daemon::start();
    let v = d.get("/ping").expect(200, None);
    assert_eq!(v["ping"], "pong");
    assert_eq!(v["imgapi"], true);
    assert_eq!(v["pid"], d.pid());
    assert!(v["version"].is_string());
}

#[test]
fn full_lifecycle_create_upload_activate_download_disable_delete() {
    let d = Daemon::start();
    let m = d
        .post_json("/images", &json!({"name": "base-64", "version": "1.2.3", "type": "zone-dataset", "os": "smartos", "description": "a base"}))
        .expect(200, None);
    let uuid = m["uuid"].as_str().unwrap().to_string();
    assert_eq!(m["state"], "unactivated");
    assert_eq!(m["owner"], NIL);
    assert_eq!(m["v"], 2);
    assert!(m.get("published_at").is_none());

    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let sha1 = sha1_hex(&data);
    let m = d
        .put(
            &format!(
                "/images/{uuid}/file?compression=none&sha1={sha1}&size={}",
                data.len()
            ),
            &data,
        )
        .expect(200, None);
    let f = &m["files"][0];
    assert_eq!(f["sha1"], sha1);
    assert_eq!(f["size"], data.len());
    assert_eq!(f["compression"], "none");
    let digest = f["digest"].as_str().unwrap();
    use sha2::Digest;
    assert_eq!(
        digest,
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&data)))
    );
    // The blob is stored under its SHA-256.
    assert!(d.data.join("blobs/sha256").join(&digest[7..]).exists());

    // Activating an image twice, and adding a file afterwards, are refused.
    let m = d
        .post(&format!("/images/{uuid}?action=activate"))
        .expect(200, None);
    assert_eq!(m["state"], "active");
    let published = m["published_at"].as_str().unwrap().to_string();
    assert!(
        published.ends_with('Z') && published.len() == 24,
        "{published}"
    );
    d.post(&format!("/images/{uuid}?action=activate"))
        .expect(422, Some("ImageAlreadyActivated"));
    d.put(&format!("/images/{uuid}/file?compression=none"), b"new")
        .expect(422, Some("ImageFilesImmutable"));

    // Download: whole, and ranges.
    let r = d.get(&format!("/images/{uuid}/file"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, data);
    assert_eq!(r.header("content-length"), Some("3000000"));
    assert_eq!(r.header("etag"), Some(sha1.as_str()));
    use base64::Engine;
    let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(&data));
    assert_eq!(r.header("content-md5"), Some(md5.as_str()));
    let r = request(
        &d.sock,
        "GET",
        &format!("/images/{uuid}/file"),
        &[("Range", "bytes=100-199")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &data[100..200]);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/3000000"));
    let r = request(
        &d.sock,
        "GET",
        &format!("/images/{uuid}/file"),
        &[("Range", "bytes=-10")],
        b"",
    );
    assert_eq!(r.body, &data[data.len() - 10..]);
    let r = request(
        &d.sock,
        "GET",
        &format!("/images/{uuid}/file"),
        &[("Range", "bytes=3000000-")],
        b"",
    );
    r.expect(416, Some("RequestedRangeNotSatisfiable"));
    assert_eq!(r.header("content-range"), Some("bytes */3000000"));

    // Disable / enable.
    assert_eq!(
        d.post(&format!("/images/{uuid}?action=disable"))
            .expect(200, None)["state"],
        "disabled"
    );
    assert_eq!(
        d.get("/images").json().as_array().unwrap().len(),
        0,
        "default list shows only active"
    );
    assert_eq!(
        d.post(&format!("/images/{uuid}?action=enable"))
            .expect(200, None)["state"],
        "active"
    );

    // Update: mutable fields only, validated.
    let m = d
        .post_json(
            &format!("/images/{uuid}?action=update"),
            &json!({"description": "changed", "tags": {"role": "db"}}),
        )
        .expect(200, None);
    assert_eq!(m["description"], "changed");
    assert_eq!(m["published_at"], published.as_str());
    d.post_json(
        &format!("/images/{uuid}?action=update"),
        &json!({"uuid": NIL}),
    )
    .expect(422, Some("ValidationFailed"));
    d.post_json(
        &format!("/images/{uuid}?action=update"),
        &json!({"name": "bad name!"}),
    )
    .expect(422, Some("ValidationFailed"));
    assert_eq!(
        d.get(&format!("/images/{uuid}")).json()["name"],
        "base-64",
        "a refused update changes nothing"
    );
    let m = d
        .post_json(
            &format!("/images/{uuid}?action=update"),
            &json!({"description": null}),
        )
        .expect(200, None);
    assert!(m.get("description").is_none(), "null deletes a field");

    // Delete.
    d.delete(&format!("/images/{uuid}")).expect(204, None);
    d.get(&format!("/images/{uuid}"))
        .expect(404, Some("ResourceNotFound"));
    d.get(&format!("/images/{uuid}/file"))
        .expect(404, Some("ResourceNotFound"));
    assert!(
        !d.data.join("blobs/sha256").join(&digest[7..]).exists(),
        "unreferenced blob removed"
    );
}

#[test]
fn invalid_manifest_lists_every_problem() {
    let d = Daemon::start();
    let v = d
        .post_json(
            "/images",
            &json!({"name": "bad name!", "version": "", "type": "vm", "os": "plan9"}),
        )
        .expect(422, Some("ValidationFailed"));
    let fields: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in ["name", "version", "type", "os"] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
    // A key CreateImage does not take is refused first, as IMGAPI's
    // Image.create refuses "invalid extra parameters".
    let v = d
        .post_json(
            "/images",
            &json!({"name": "bad name!", "version": "", "type": "vm", "os": "plan9", "bogus": 1}),
        )
        .expect(422, Some("InvalidParameter"));
    assert_eq!(v["errors"][0]["field"], "bogus", "{v}");
    for e in v["errors"].as_array().unwrap() {
        assert!(e["code"].is_string() && e["message"].is_string(), "{e}");
    }
    let v = d
        .post_json("/images", &json!({"version": "1"}))
        .expect(422, Some("ValidationFailed"));
    let missing: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["code"] == "MissingParameter")
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for f in ["name", "type", "os"] {
        assert!(missing.contains(&f), "{f} not reported Missing: {v}");
    }
    d.post_json("/images", &json!({"name": "x", "version": "1", "type": "zone-dataset", "os": "smartos", "state": "active"}))
        .expect(422, Some("ValidationFailed"));
    d.post_json("/images", &json!(["not", "an", "object"]))
        .expect(422, Some("ValidationFailed"));
    // Nothing was stored by any of these.
    assert_eq!(d.get("/images?state=all").json(), json!([]));
}

#[test]
fn malformed_requests_get_json_errors() {
    let d = Daemon::start();
    let r = request(
        &d.sock,
        "POST",
        "/images",
        &[("Content-Type", "application/json")],
        b"{\"name\": ",
    );
    r.expect(400, Some("InvalidContent"));
    d.get("/no/such/route")
        .expect(404, Some("ResourceNotFound"));
    let r = request(&d.sock, "PATCH", "/images", &[], b"");
    r.expect(405, Some("MethodNotAllowed"));
    assert!(r.header("allow").unwrap().contains("POST"));
    request(&d.sock, "PUT", "/ping", &[], b"").expect(405, Some("MethodNotAllowed"));
    d.get("/images/not-a-uuid")
        .expect(404, Some("ResourceNotFound"));
    d.get("/images/AAAAAAAA-0000-4000-8000-000000000000")
        .expect(404, Some("ResourceNotFound"));
    d.get("/images/%2e%2e")
        .expect(422, Some("InvalidParameter"));
    let u = d.create("x", json!({}));
    d.post(&format!("/images/{u}"))
        .expect(422, Some("InvalidParameter"));
    d.post(&format!("/images/{u}?action=explode"))
        .expect(422, Some("InvalidParameter"));
    d.post("/images?action=explode")
        .expect(422, Some("InvalidParameter"));
    // A body over the configured limit.
    let big = vec![b' '; 2 * 1024 * 1024];
    request(&d.sock, "POST", "/images", &[], &big).expect(413, Some("PayloadTooLarge"));
    // Still serving.
    d.get("/ping").expect(200, None);
}

#[test]
fn bad_list_query_values_are_rejected() {
    let d = Daemon::start();
    for q in [
        "limit=0",
        "limit=x",
        "state=nope",
        "public=maybe",
        "sort=name",
        "marker=notadate",
        "name=a&name=b",
    ] {
        let v = d
            .get(&format!("/images?{q}"))
            .expect(422, Some("InvalidParameter"));
        assert!(v["errors"][0]["field"].is_string(), "{q}: {v}");
    }
}

#[test]
fn list_filters() {
    let d = Daemon::start();
    let owner = "11111111-1111-4111-8111-111111111111";
    let a = d.create_active(
        "base-64",
        b"aaaa",
        json!({"tags": {"role": "db", "tier": "1"}, "owner": owner}),
    );
    let b = d.create_active(
        "minimal-64",
        b"bbbb",
        json!({"os": "linux", "type": "lx-dataset", "version": "2.0.0", "public": true}),
    );
    let c = d.create("pending", json!({}));
    let names = |q: &str| -> Vec<String> {
        d.get(&format!("/images{q}"))
            .expect(200, None)
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(""), ["base-64", "minimal-64"]);
    assert_eq!(names("?state=all").len(), 3);
    assert_eq!(names("?state=unactivated"), ["pending"]);
    assert_eq!(names("?name=~64"), ["base-64", "minimal-64"]);
    assert_eq!(names("?name=base-64"), ["base-64"]);
    assert_eq!(names("?name=base"), Vec::<String>::new());
    assert_eq!(names("?version=~2."), ["minimal-64"]);
    assert_eq!(names("?os=linux"), ["minimal-64"]);
    assert_eq!(names("?type=!lx-dataset"), ["base-64"]);
    assert_eq!(names(&format!("?owner={owner}")), ["base-64"]);
    assert_eq!(names("?public=true"), ["minimal-64"]);
    assert_eq!(names("?tag.role=db"), ["base-64"]);
    assert_eq!(names("?tag.role=db&tag.tier=1"), ["base-64"]);
    assert_eq!(names("?tag.role=db&tag.tier=2"), Vec::<String>::new());
    assert_eq!(names("?sort=published_at.desc"), ["minimal-64", "base-64"]);
    assert_eq!(names("?limit=1"), ["base-64"]);
    assert_eq!(names(&format!("?marker={b}")), ["minimal-64"]);
    let _ = (a, c);
}

/// ListImages paging: every combination of marker (uuid, date, none),
/// limit and sort gives the page the documented rules give (sorted by
/// `published_at`, unset first, then uuid; a page starts at the marker,
/// descending pages end at it and take the marker's whole date), computed
/// here from the unpaged listing; the same after a clean restart (index
/// from sled) and after a kill -9 (index from the records). The answer's
/// bytes are those of `serde_json` for the array of manifests.
#[test]
fn list_paging_with_marker_limit_and_sort() {
    let mut d = Daemon::start();
    let dates = [
        "2020-01-02T00:00:00.000Z",
        "2020-01-02T00:00:00.000Z",
        "2020-01-02T00:00:00.000Z",
        "2020-01-01T00:00:00.000Z",
        "2020-01-03T12:00:00.000Z",
        "2020-01-02T00:00:00.001Z",
    ];
    for (i, date) in dates.iter().enumerate() {
        let uuid = uuid::Uuid::new_v4().to_string();
        let m = json!({"uuid": uuid, "name": format!("imported-{i}"), "version": "1",
            "type": "zone-dataset", "os": "smartos", "published_at": date, "owner": NIL,
            "public": i % 2 == 0, "v": 2});
        d.post_json(&format!("/images/{uuid}?action=import"), &m)
            .expect(200, None);
    }
    for i in 0..3 {
        d.create(&format!("unpublished-{i}"), json!({}));
    }
    for i in 0..3 {
        d.create_active(&format!("active-{i}"), format!("{i}").as_bytes(), json!({}));
    }
    // (published_at or "", uuid) of each image, in list order.
    let keyed = |all: &serde_json::Value| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["published_at"].as_str().unwrap_or_default().to_string(),
                    m["uuid"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let listed = |d: &Daemon, q: &str| -> Vec<String> {
        d.get(&format!("/images?{q}"))
            .expect(200, None)
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["uuid"].as_str().unwrap().to_string())
            .collect()
    };
    let all = d.get("/images?state=all").expect(200, None);
    let active = d.get("/images").expect(200, None);
    assert_eq!(all.as_array().unwrap().len(), 12);
    assert_eq!(active.as_array().unwrap().len(), 3);
    let mut runs = 0;
    let mut check = |d: &Daemon| {
        let all_now = d.get("/images?state=all");
        // The body is exactly what serde_json writes for the array.
        let mut want = serde_json::to_vec(&all_now.json()).unwrap();
        want.push(b'\n');
        assert_eq!(all_now.body, want);
        let one = &all.as_array().unwrap()[4];
        let r = d.get(&format!("/images/{}", one["uuid"].as_str().unwrap()));
        let mut want = serde_json::to_vec(one).unwrap();
        want.push(b'\n');
        assert_eq!(r.body, want);
        assert_eq!(r.header("content-type"), Some("application/json"));
        for (state, set) in [("state=all", &all), ("", &active)] {
            let keys = keyed(set);
            // (query, start key) for each marker.
            let mut markers: Vec<(String, Option<(String, String)>)> = vec![
                (String::new(), None),
                (
                    "&marker=2020-01-02T00:00:00Z".into(),
                    Some(("2020-01-02T00:00:00.000Z".into(), String::new())),
                ),
                (
                    "&marker=2020-01-02T01:00:00%2B01:00".into(),
                    Some(("2020-01-02T00:00:00.000Z".into(), String::new())),
                ),
                (
                    "&marker=2020-01-02T06:00:00.000Z".into(),
                    Some(("2020-01-02T06:00:00.000Z".into(), String::new())),
                ),
                (
                    "&marker=2019-01-01T00:00:00Z".into(),
                    Some(("2019-01-01T00:00:00.000Z".into(), String::new())),
                ),
            ];
            // Markers name any image, listed in this state or not.
            for k in keyed(&all) {
                markers.push((format!("&marker={}", k.1), Some(k.clone())));
            }
            for sort in ["", "&sort=published_at", "&sort=published_at.desc"] {
                let desc = sort.ends_with("desc");
                for limit in [None, Some(1), Some(2), Some(5)] {
                    for (mq, start) in &markers {
                        let mut want: Vec<&(String, String)> = keys.iter().collect();
                        if desc {
                            want.reverse();
                        }
                        if let Some(s) = start {
                            want.retain(|k| {
                                if desc {
                                    *k <= s || (k.0 == s.0 && s.1.is_empty())
                                } else {
                                    *k >= s
                                }
                            });
                        }
                        want.truncate(limit.unwrap_or(1000));
                        let want: Vec<String> = want.into_iter().map(|k| k.1.clone()).collect();
                        let lq = limit.map(|n| format!("&limit={n}")).unwrap_or_default();
                        let q = format!("{state}{sort}{lq}{mq}");
                        assert_eq!(listed(d, &q), want, "GET /images?{q}");
                        runs += 1;
                    }
                }
            }
        }
        // A uuid marker that names no image is refused, as before.
        d.get("/images?marker=99999999-0000-4000-8000-000000000000")
            .expect(422, Some("InvalidParameter"));
    };
    check(&d);
    d.stop();
    assert!(d.data.join("manifests/.clean").exists());
    d.spawn();
    check(&d);
    d.kill9();
    d.spawn();
    check(&d);
    assert!(runs > 500, "{runs}");
}

#[test]
fn file_upload_errors_store_nothing() {
    let d = Daemon::start();
    let uuid = d.create("up", json!({}));
    let data = vec![7u8; 100_000];
    let blobs = || {
        std::fs::read_dir(d.data.join("blobs/sha256"))
            .unwrap()
            .count()
    };
    let ingest = || std::fs::read_dir(d.data.join("ingest")).unwrap().count();

    // Wrong SHA-1: expected and actual both named.
    let wrong = "0".repeat(40);
    let v = d
        .put(
            &format!("/images/{uuid}/file?compression=none&sha1={wrong}"),
            &data,
        )
        .expect(400, Some("Download"));
    let msg = v["message"].as_str().unwrap();
    assert!(
        msg.contains(&wrong) && msg.contains(&sha1_hex(&data)),
        "{msg}"
    );
    // Wrong size.
    let v = d
        .put(
            &format!("/images/{uuid}/file?compression=none&size=5"),
            &data,
        )
        .expect(400, Some("Download"));
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("expected 5, got 100000"),
        "{v}"
    );
    // Empty file.
    d.put(&format!("/images/{uuid}/file?compression=none"), b"")
        .expect(400, Some("Download"));
    // Bad parameters.
    d.put(&format!("/images/{uuid}/file"), &data)
        .expect(422, Some("InvalidParameter"));
    d.put(&format!("/images/{uuid}/file?compression=rar"), &data)
        .expect(422, Some("InvalidParameter"));
    d.put(
        &format!("/images/{uuid}/file?compression=none&sha1=xyz"),
        &data,
    )
    .expect(422, Some("InvalidParameter"));
    d.put(
        &format!("/images/{uuid}/file?compression=none&size=-1"),
        &data,
    )
    .expect(422, Some("InvalidParameter"));
    // Unknown image.
    d.put(
        "/images/22222222-2222-4222-8222-222222222222/file?compression=none",
        &data,
    )
    .expect(404, Some("ResourceNotFound"));

    // Truncated body: Content-Length promises more than arrives.
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    use std::io::Write;
    write!(s, "PUT /images/{uuid}/file?compression=none HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n").unwrap();
    s.write_all(&data[..50_000]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let r = read_response(&mut std::io::BufReader::new(s)).unwrap();
    let v = r.expect(400, Some("Upload"));
    assert!(v["message"].as_str().unwrap().contains("50000"), "{v}");
    assert!(v["message"].as_str().unwrap().contains("1000000"), "{v}");

    assert_eq!(blobs(), 0, "nothing stored");
    assert_eq!(ingest(), 0, "no temp file left");
    let m = d.get(&format!("/images/{uuid}")).expect(200, None);
    assert_eq!(m["files"], json!([]), "image unchanged: {m}");
    d.post(&format!("/images/{uuid}?action=activate"))
        .expect(422, Some("NoActivationNoFile"));
}

#[test]
fn identical_content_is_stored_once_and_freed_with_its_last_image() {
    let d = Daemon::start();
    let data = b"the same bytes".to_vec();
    let a = d.create_active("a", &data, json!({}));
    let b = d.create_active("b", &data, json!({}));
    let blobs = || {
        std::fs::read_dir(d.data.join("blobs/sha256"))
            .unwrap()
            .count()
    };
    assert_eq!(blobs(), 1);
    d.delete(&format!("/images/{a}")).expect(204, None);
    assert_eq!(blobs(), 1, "still used by b");
    assert_eq!(d.get(&format!("/images/{b}/file")).body, data);
    d.delete(&format!("/images/{b}")).expect(204, None);
    assert_eq!(blobs(), 0);
}

#[test]
fn replacing_the_file_of_an_unactivated_image_frees_the_old_blob() {
    let d = Daemon::start();
    let u = d.create("r", json!({}));
    d.put(&format!("/images/{u}/file?compression=none"), b"first")
        .expect(200, None);
    d.put(&format!("/images/{u}/file?compression=gzip"), b"second")
        .expect(200, None);
    let blobs = std::fs::read_dir(d.data.join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 1);
    assert_eq!(
        d.get(&format!("/images/{u}")).json()["files"][0]["compression"],
        "gzip"
    );
}

#[test]
fn origins_and_dependents() {
    let d = Daemon::start();
    let base = d.create_active("base", b"base", json!({}));
    let child = d.create("child", json!({"origin": base}));
    d.post_json("/images", &json!({"name": "orphan", "version": "1", "type": "zone-dataset", "os": "smartos", "origin": "33333333-3333-4333-8333-333333333333"}))
        .expect(422, Some("OriginDoesNotExist"));
    let v = d
        .delete(&format!("/images/{base}"))
        .expect(422, Some("ImageHasDependentImages"));
    assert!(v["message"].as_str().unwrap().contains(&child), "{v}");
    d.get(&format!("/images/{base}")).expect(200, None);
    d.delete(&format!("/images/{child}")).expect(204, None);
    d.delete(&format!("/images/{base}")).expect(204, None);
}

#[test]
fn admin_import_keeps_uuid_and_published_at() {
    let d = Daemon::start();
    let uuid = "44444444-4444-4444-8444-444444444444";
    let m = json!({"uuid": uuid, "name": "imported", "version": "1", "type": "zvol", "os": "linux",
        "published_at": "2020-01-02T03:04:05.000Z", "nic_driver": "virtio", "disk_driver": "virtio",
        "cpu_type": "host", "image_size": 10240, "v": 2, "owner": NIL, "public": true});
    let v = d
        .post_json(&format!("/images/{uuid}?action=import"), &m)
        .expect(200, None);
    assert_eq!(v["uuid"], uuid);
    assert_eq!(v["state"], "unactivated");
    d.post_json(&format!("/images/{uuid}?action=import"), &m)
        .expect(409, Some("ImageUuidAlreadyExists"));
    let other = "55555555-5555-4555-8555-555555555555";
    // A body uuid that is not the path's: IMGAPI's one InvalidParameter.
    d.post_json(&format!("/images/{other}?action=import"), &m)
        .expect(422, Some("InvalidParameter"));
    d.put(&format!("/images/{uuid}/file?compression=xz"), b"xzdata")
        .expect(200, None);
    let v = d
        .post(&format!("/images/{uuid}?action=activate"))
        .expect(200, None);
    assert_eq!(v["published_at"], "2020-01-02T03:04:05.000Z");
}

#[test]
fn without_zfs_the_zfs_endpoints_say_so_and_the_rest_works() {
    let d = Daemon::start();
    std::fs::write(
        d.config_path(),
        "[zfs]\nzfs_bin = \"/nonexistent/zfs\"\nzpool_bin = \"/nonexistent/zpool\"\n",
    )
    .unwrap();
    let mut d = d;
    d.stop();
    d.spawn();
    let u = d.create_active("laptop", b"bytes", json!({}));
    let v = d
        .post(&format!("/images/{u}?action=install&pool=zones"))
        .expect(503, Some("ZfsNotAvailable"));
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/zpool")
            || v["message"].as_str().unwrap().contains("not available"),
        "{v}"
    );
    d.get("/pools/zones/images")
        .expect(503, Some("ZfsNotAvailable"));
    d.post_json(
        "/images?action=create-from-dataset",
        &json!({"dataset": "zones/vm", "manifest": {"name": "n", "version": "1"}}),
    )
    .expect(503, Some("ZfsNotAvailable"));
    assert_eq!(d.get(&format!("/images/{u}/file")).body, b"bytes");
    assert_eq!(d.get("/tasks").expect(200, None), json!([]));
}
