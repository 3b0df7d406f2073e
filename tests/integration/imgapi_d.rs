//! IMGAPI fidelity, slice D (issue #13 item 4): the icon endpoints,
//! ListImageJobs, AdminImportImage and AddImageFile from another IMGAPI,
//! AddImageFileFromUrl, the DSAPI views, and the actions a single node
//! answers with `NotImplemented`. Each test runs the real daemon and checks
//! the reference's status, code and body shape (sdc-imgapi `lib/images.js`).

use crate::common::daemon::{expect_success, Daemon};
use crate::common::http::{pattern, request, sha1_hex, Resp};
use crate::common::nginx::{free_port, Nginx, NginxOpts};
use base64::Engine;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    pattern(&mut v, seed << 40);
    v
}

fn put_icon(d: &Daemon, uuid: &str, query: &str, content_type: &str, body: &[u8]) -> Resp {
    request(
        &d.sock,
        "PUT",
        &format!("/images/{uuid}/icon{query}"),
        &[("Content-Type", content_type)],
        body,
    )
}

/// The blobs in the store (image files and icons alike).
fn blobs(d: &Daemon) -> usize {
    std::fs::read_dir(d.data.join("blobs/sha256"))
        .map(|r| r.count())
        .unwrap_or(0)
}

fn md5_b64(data: &[u8]) -> String {
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(data))
}

/// A HEAD request's status line and headers, lowercased (the `request`
/// helper would wait for a body).
fn head_text(d: &Daemon, path: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "HEAD {path} HTTP/1.1\r\nHost: imgstore\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).unwrap();
    text.to_lowercase().replace("http/1.1", "HTTP/1.1")
}

/// A CA and a server certificate for 127.0.0.1 signed by it (rustls, with
/// the CA as its only root through `SSL_CERT_FILE`, refuses a self-signed
/// certificate used as its own end entity): `(ca, cert, key)`.
fn ca_and_server_cert(dir: &std::path::Path) -> (PathBuf, PathBuf, PathBuf) {
    let p = |n: &str| dir.join(n);
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=imgstore test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        p("ext.cnf"),
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.pem",
    ]);
    (p("ca.pem"), p("server.pem"), p("server.key"))
}

#[test]
fn icons_are_added_served_replaced_and_deleted_like_imgapi() {
    let d = Daemon::start();
    let uuid = d.create("icon-img", json!({}));
    let png = bytes(1, 3000);

    // No icon yet.
    d.get(&format!("/images/{uuid}/icon"))
        .expect(404, Some("ResourceNotFound"));
    d.delete(&format!("/images/{uuid}/icon"))
        .expect(404, Some("ResourceNotFound"));

    // IMGAPI's refusals, all 400 Upload, and none stores anything.
    put_icon(&d, &uuid, "", "text/plain", &png).expect(400, Some("Upload"));
    put_icon(&d, &uuid, "", "application/octet-stream", &png).expect(400, Some("Upload"));
    let big = bytes(2, 128 * 1024 + 1);
    let v = put_icon(&d, &uuid, "", "image/png", &big).expect(400, Some("Upload"));
    assert!(v["message"].as_str().unwrap().contains("128 KiB"), "{v}");
    let v = put_icon(
        &d,
        &uuid,
        &format!("?sha1={}", "0".repeat(40)),
        "image/png",
        &png,
    )
    .expect(400, Some("Upload"));
    assert!(v["message"].as_str().unwrap().contains("sha1"), "{v}");
    put_icon(&d, &uuid, "", "image/png", b"").expect(400, Some("Upload"));
    let m = d.get(&format!("/images/{uuid}")).expect(200, None);
    assert!(m.get("icon").is_none(), "{m}");
    assert_eq!(blobs(&d), 0, "a refused icon left a blob");
    put_icon(
        &d,
        "00000000-0000-4000-8000-000000000009",
        "",
        "image/png",
        &png,
    )
    .expect(404, Some("ResourceNotFound"));

    // Exactly 128 KiB is allowed; the answer is the manifest, icon: true.
    let max = bytes(3, 128 * 1024);
    let m = put_icon(&d, &uuid, "", "image/gif", &max).expect(200, None);
    assert_eq!(m["icon"], true, "{m}");
    assert_eq!(m["uuid"], uuid.as_str());

    // Replaced by a PNG, with its sha1 given.
    let m = put_icon(
        &d,
        &uuid,
        &format!("?sha1={}", sha1_hex(&png)),
        "image/png",
        &png,
    )
    .expect(200, None);
    assert_eq!(m["icon"], true);
    assert_eq!(blobs(&d), 1, "the replaced icon's blob is released");
    let m = d.get(&format!("/images/{uuid}")).expect(200, None);
    assert_eq!(m["icon"], true);
    let listed = d.get("/images?state=all&name=icon-img").expect(200, None);
    assert_eq!(listed[0]["icon"], true);

    // Served with IMGAPI's headers.
    let r = d.get(&format!("/images/{uuid}/icon"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, png);
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.header("etag"), Some(sha1_hex(&png).as_str()));
    assert_eq!(r.header("content-md5"), Some(md5_b64(&png).as_str()));
    assert_eq!(r.header("content-length"), Some("3000"));
    let lm = r.header("last-modified").expect("Last-Modified");
    assert!(lm.ends_with(" GMT"), "{lm}");
    let etag = sha1_hex(&png);
    let r = request(
        &d.sock,
        "GET",
        &format!("/images/{uuid}/icon"),
        &[("If-None-Match", &format!("\"{etag}\""))],
        b"",
    );
    assert_eq!((r.status, r.body.len()), (304, 0));
    let r = request(
        &d.sock,
        "GET",
        &format!("/images/{uuid}/icon"),
        &[("If-None-Match", "\"0000\"")],
        b"",
    );
    assert_eq!((r.status, r.body.len()), (200, png.len()));
    let head = head_text(&d, &format!("/images/{uuid}/icon"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("content-type: image/png"), "{head}");
    assert!(head.contains("content-length: 3000"), "{head}");

    // fsck counts the icon's blob as referenced.
    let state = d.get("/state?verify=true").expect(200, None);
    assert_eq!(state["findings"], json!([]), "{state}");
    // vacuum keeps the icon: it is referenced.
    d.post("/vacuum").expect(200, None);
    assert_eq!(d.get(&format!("/images/{uuid}/icon")).body, png);

    // Deleted: 200 with the manifest, no icon, no blob left behind.
    let m = d.delete(&format!("/images/{uuid}/icon")).expect(200, None);
    assert!(m.get("icon").is_none(), "{m}");
    assert!(d
        .get(&format!("/images/{uuid}"))
        .expect(200, None)
        .get("icon")
        .is_none());
    d.get(&format!("/images/{uuid}/icon"))
        .expect(404, Some("ResourceNotFound"));
    assert_eq!(blobs(&d), 0, "the deleted icon's blob is released");

    // An icon survives a restart, and goes with its image.
    let jpeg = bytes(4, 1000);
    put_icon(&d, &uuid, "", "image/jpeg", &jpeg).expect(200, None);
    let mut d = d;
    d.stop();
    d.spawn();
    let r = d.get(&format!("/images/{uuid}/icon"));
    assert_eq!((r.status, r.body.as_slice()), (200, jpeg.as_slice()));
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    // fsck reports an icon whose blob is gone.
    let blob = std::fs::read_dir(d.data.join("blobs/sha256"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let saved = std::fs::read(&blob).unwrap();
    std::fs::remove_file(&blob).unwrap();
    let state = d.get("/state").expect(200, None);
    let codes: Vec<&str> = state["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["code"].as_str())
        .collect();
    assert_eq!(codes, ["IconBlobMissing"], "{state}");
    std::fs::write(&blob, saved).unwrap();
    d.delete(&format!("/images/{uuid}")).expect(204, None);
    assert_eq!(blobs(&d), 0, "deleting the image deletes its icon");
}

#[test]
fn list_image_jobs_answers_the_image_tasks_as_workflow_jobs() {
    let d = Daemon::start();
    let data = bytes(5, 10_000);
    let uuid = d.create_active("jobs-img", &data, json!({}));
    let other = d.create_active("jobs-other", &bytes(6, 100), json!({}));
    assert_eq!(
        d.get(&format!("/images/{uuid}/jobs")).expect(200, None),
        json!([])
    );
    let out = tempfile::tempdir().unwrap();
    let t = d
        .post(&format!(
            "/images/{uuid}?action=export&path={}",
            out.path().display()
        ))
        .expect(202, None);
    expect_success(&d, &t);
    let out2 = tempfile::tempdir().unwrap();
    let t2 = d
        .post(&format!(
            "/images/{other}?action=export&path={}",
            out2.path().display()
        ))
        .expect(202, None);
    expect_success(&d, &t2);

    let jobs = d.get(&format!("/images/{uuid}/jobs")).expect(200, None);
    let jobs = jobs.as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let j = &jobs[0];
    assert_eq!(j["uuid"], t["id"]);
    assert_eq!(j["name"], "export");
    assert_eq!(j["task"], "export");
    assert_eq!(j["execution"], "succeeded");
    assert_eq!(j["params"]["image_uuid"], uuid.as_str());
    assert_eq!(j["params"]["task"], "export");
    assert!(j["created_at"].is_string(), "{j}");
    for (q, n) in [
        ("?task=export", 1),
        ("?task=install", 0),
        ("?execution=succeeded", 1),
        ("?execution=failed", 0),
    ] {
        let v = d.get(&format!("/images/{uuid}/jobs{q}")).expect(200, None);
        assert_eq!(v.as_array().unwrap().len(), n, "{q}: {v}");
    }
    d.get("/images/00000000-0000-4000-8000-000000000009/jobs")
        .expect(404, Some("ResourceNotFound"));
    d.get("/images/not-a-uuid/jobs")
        .expect(404, Some("ResourceNotFound"));
}

#[test]
fn actions_a_node_cannot_do_are_not_implemented() {
    let d = Daemon::start();
    let uuid = d.create_active("na-img", &bytes(7, 100), json!({}));
    for (path, action) in [
        (
            "/images".to_string(),
            "create-from-vm&vm_uuid=00000000-0000-4000-8000-000000000001",
        ),
        (
            "/images".to_string(),
            "import-docker-image&repo=busybox&tag=latest",
        ),
        ("/images".to_string(), "import-lxd-image&alias=x"),
        (format!("/images/{uuid}"), "export&manta_path=/admin/stor/x"),
        (format!("/images/{uuid}"), "change-stor&stor=manta"),
        (
            format!("/images/{uuid}"),
            "import-from-datacenter&datacenter=dc2",
        ),
    ] {
        let v = d
            .post_json(&format!("{path}?action={action}"), &json!({}))
            .expect(400, Some("NotImplemented"));
        let msg = v["message"].as_str().unwrap();
        assert!(msg.contains("single-node"), "{action}: {msg}");
    }
    // Nothing changed.
    let m = d.get(&format!("/images/{uuid}")).expect(200, None);
    assert_eq!(m["state"], "active");
    assert_eq!(
        d.get("/images?state=all")
            .expect(200, None)
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

fn peer_config(port: u16) -> String {
    format!("[peer]\nlisten = \"127.0.0.1:{port}\"\n")
}

/// One GET over TCP (the peer listener), read whole.
fn tcp_get(port: u16, path: &str) -> Resp {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    crate::common::http::read_response(&mut std::io::BufReader::new(s)).unwrap()
}

#[test]
fn dsapi_views_serve_v1_manifests_that_a_dsapi_source_imports() {
    let port = free_port();
    let a = Daemon::start_config(&peer_config(port));
    let data = bytes(8, 200_000);
    let owner = "930896af-bf8c-48d4-885c-6573a94b1853";
    let uuid = a.create_active(
        "ds-img",
        &data,
        json!({"owner": owner, "public": false, "acl": ["b5d3c2a1-0f4e-4c5d-9e8f-0a1b2c3d4e5f"]}),
    );
    a.create("ds-unactivated", json!({}));

    // The list: active images only, v1-shaped.
    let list = a.get("/datasets").expect(200, None);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    let v1 = &list[0];
    assert_eq!(v1["uuid"], uuid.as_str());
    assert_eq!(v1["creator_uuid"], owner);
    assert_eq!(v1["vendor_uuid"], owner);
    assert_eq!(
        v1["restricted_to_uuid"],
        "b5d3c2a1-0f4e-4c5d-9e8f-0a1b2c3d4e5f"
    );
    assert_eq!(v1["urn"], "sdc:sdc:ds-img:1.0.0");
    assert_eq!(v1["platform_type"], "smartos");
    for gone in ["v", "owner", "public", "acl", "state"] {
        assert!(v1.get(gone).is_none(), "{gone} in {v1}");
    }
    let m = a.get(&format!("/images/{uuid}")).expect(200, None);
    assert_eq!(v1["created_at"], m["published_at"]);
    assert_eq!(v1["files"][0]["sha1"], sha1_hex(&data).as_str());
    assert_eq!(v1["files"][0]["path"], format!("{uuid}.zfs"));

    // DSAPI's filters: creator_uuid is the owner.
    let by_creator = a
        .get(&format!("/datasets?creator_uuid={owner}"))
        .expect(200, None);
    assert_eq!(by_creator.as_array().unwrap().len(), 1);
    let other = a
        .get("/datasets?creator_uuid=11111111-1111-4111-8111-111111111111")
        .expect(200, None);
    assert_eq!(other, json!([]));

    // One dataset over TCP: its url is where this server serves the file.
    let one = tcp_get(port, &format!("/datasets/{uuid}")).expect(200, None);
    let url = one["files"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(
        url,
        format!("http://127.0.0.1:{port}/datasets/{uuid}/{uuid}.zfs")
    );
    let path = url
        .strip_prefix(&format!("http://127.0.0.1:{port}"))
        .unwrap();
    let file = tcp_get(port, path);
    assert_eq!((file.status, sha1_hex(&file.body)), (200, sha1_hex(&data)));
    tcp_get(port, "/datasets/00000000-0000-4000-8000-000000000009")
        .expect(404, Some("ResourceNotFound"));

    // Another node imports it through a `dsapi` source pointing here.
    let b = Daemon::start();
    b.post_json(
        "/sources",
        &json!({"url": format!("http://127.0.0.1:{port}/datasets"), "type": "dsapi"}),
    )
    .expect(201, None);
    let t = b
        .post(&format!("/images/{uuid}?action=import-remote"))
        .expect(202, None);
    expect_success(&b, &t);
    let got = b.get(&format!("/images/{uuid}")).expect(200, None);
    for k in [
        "name",
        "version",
        "owner",
        "public",
        "acl",
        "type",
        "os",
        "published_at",
    ] {
        assert_eq!(got[k], m[k], "{k}");
    }
    assert_eq!(got["state"], "active");
    let f = b.get(&format!("/images/{uuid}/file"));
    assert_eq!(sha1_hex(&f.body), sha1_hex(&data));
}

#[test]
fn admin_import_and_add_file_from_another_imgapi() {
    let port = free_port();
    let a = Daemon::start_config(&peer_config(port));
    let data = bytes(9, 300_000);
    let base = a.create_active("src-base", &data, json!({"description": "from a"}));
    let src = format!("http://127.0.0.1:{port}");
    let b = Daemon::start();

    // Refusals first; none creates anything.
    b.post(&format!(
        "/images/{base}?action=import&source={src}&account=930896af-bf8c-48d4-885c-6573a94b1853"
    ))
    .expect(403, Some("OperatorOnly"));
    b.post(&format!(
        "/images/{base}?action=import&source={src}&skip_owner_check=maybe"
    ))
    .expect(422, Some("InvalidParameter"));
    b.post(&format!(
        "/images/{base}?action=import&source=http://127.0.0.1:9"
    ))
    .expect(503, Some("RemoteSourceError"));
    b.post(&format!("/images/{base}?action=import&source=ftp://x"))
        .expect(422, Some("InvalidParameter"));
    b.post(&format!(
        "/images/00000000-0000-4000-8000-000000000009?action=import&source={src}"
    ))
    .expect(503, Some("RemoteSourceError"));
    b.get(&format!("/images/{base}"))
        .expect(404, Some("ResourceNotFound"));

    // The manifest: unactivated, no file yet, the source's fields kept.
    let m = b
        .post(&format!(
            "/images/{base}?action=import&source={src}&skip_owner_check=true"
        ))
        .expect(200, None);
    let am = a.get(&format!("/images/{base}")).expect(200, None);
    assert_eq!(m["uuid"], base.as_str());
    assert_eq!(m["state"], "unactivated");
    for k in ["name", "version", "owner", "description", "published_at"] {
        assert_eq!(m[k], am[k], "{k}");
    }
    assert!(
        m.get("files").is_none_or(|f| f == &json!([])),
        "no file yet: {m}"
    );
    b.post(&format!("/images/{base}?action=import&source={src}"))
        .expect(409, Some("ImageUuidAlreadyExists"));

    // The file, from the same source: verified against its manifest there.
    b.put(
        &format!("/images/{base}/file?source=http://127.0.0.1:9"),
        b"",
    )
    .expect(503, Some("RemoteSourceError"));
    let m = b
        .put(&format!("/images/{base}/file?source={src}"), b"")
        .expect(200, None);
    assert_eq!(m["files"][0]["sha1"], am["files"][0]["sha1"]);
    assert_eq!(m["files"][0]["size"], am["files"][0]["size"]);
    assert_eq!(m["files"][0]["compression"], "none");
    let m = b
        .post(&format!("/images/{base}?action=activate"))
        .expect(200, None);
    assert_eq!(m["state"], "active");
    assert_eq!(
        sha1_hex(&b.get(&format!("/images/{base}/file")).body),
        sha1_hex(&data)
    );
    b.put(&format!("/images/{base}/file?source={src}"), b"")
        .expect(422, Some("ImageFilesImmutable"));
    b.put(
        &format!("/images/00000000-0000-4000-8000-000000000009/file?source={src}"),
        b"",
    )
    .expect(404, Some("ResourceNotFound"));
}

#[test]
fn add_image_file_from_url_is_https_only_and_verified() {
    let root = tempfile::tempdir().unwrap();
    let data = bytes(10, 150_000);
    std::fs::create_dir_all(root.path().join("f")).unwrap();
    std::fs::write(root.path().join("f/data.zfs"), &data).unwrap();
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_server_cert(certs.path());
    let nginx = Nginx::start(
        root.path(),
        NginxOpts {
            tls: Some((cert, key)),
            ..Default::default()
        },
    );
    let mut d = Daemon::new(&[]);
    d.env
        .push(("SSL_CERT_FILE".into(), ca.display().to_string()));
    d.spawn();
    let uuid = d.create("from-url", json!({}));
    let from_url = |query: &str, body: Value| {
        d.post_json(&format!("/images/{uuid}/file/from-url{query}"), &body)
    };
    let url = nginx.url("/f/data.zfs");

    from_url("", json!({"file_url": url})).expect(422, Some("InvalidParameter"));
    from_url("?compression=lzma", json!({"file_url": url})).expect(422, Some("InvalidParameter"));
    from_url("?compression=none", json!({})).expect(422, Some("InvalidParameter"));
    let v = from_url(
        "?compression=none",
        json!({"file_url": format!("http://127.0.0.1:{}/f/data.zfs", nginx.port)}),
    )
    .expect(422, Some("InvalidParameter"));
    assert!(v["message"].as_str().unwrap().contains("https"), "{v}");
    from_url(
        "?compression=none",
        json!({"file_url": nginx.url("/f/missing.zfs")}),
    )
    .expect(503, Some("RemoteSourceError"));
    let v = from_url(
        &format!("?compression=none&sha1={}", "0".repeat(40)),
        json!({"file_url": url}),
    )
    .expect(400, Some("Download"));
    assert!(v["message"].as_str().unwrap().contains("sha1"), "{v}");
    assert_eq!(blobs(&d), 0, "a refused download left a blob");
    assert!(d
        .get(&format!("/images/{uuid}"))
        .expect(200, None)
        .get("files")
        .is_none_or(|f| f == &json!([])));

    let m = from_url(
        &format!("?compression=none&sha1={}", sha1_hex(&data)),
        json!({"file_url": url}),
    )
    .expect(200, None);
    assert_eq!(m["files"][0]["sha1"], sha1_hex(&data).as_str());
    assert_eq!(m["files"][0]["size"], data.len());
    d.post(&format!("/images/{uuid}?action=activate"))
        .expect(200, None);
    from_url("?compression=none", json!({"file_url": url}))
        .expect(422, Some("ImageFilesImmutable"));
}
