//! Packages (issue 8): every endpoint, every filter kind, the error cases,
//! durability, the bootstrap load (over HTTP and through the CLI) and the
//! fit queries.

use crate::common::*;
use serde_json::{json, Value};
use std::process::Command;

fn pkg(name: &str, version: &str, memory: u64) -> Value {
    json!({"name": name, "version": version, "memory": memory, "disk": 10240,
        "swap": 2 * memory, "vcpus": 1})
}

fn create(d: &Daemon, body: Value) -> String {
    let v = d.post_json("/packages", &body).expect(201, None);
    v["id"].as_str().unwrap().to_string()
}

fn put_json(d: &Daemon, path: &str, body: &Value) -> Resp {
    request(
        &d.sock,
        "PUT",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

fn fields(v: &Value) -> Vec<String> {
    v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors[]: {v}"))
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn package_crud_and_lookup_by_id_or_name() {
    let d = Daemon::start();
    let v = d
        .post_json(
            "/packages",
            &json!({"name": "g4-highcpu-1G", "version": "1.0.0", "memory": 1024, "disk": 25600,
                "swap": 4096, "lwps": 4000, "vcpus": 1, "group": "g4", "description": "1 GiB",
                "brand": "joyent", "default": true}),
        )
        .expect(201, None);
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(
        v,
        json!({"id": id, "name": "g4-highcpu-1G", "version": "1.0.0", "memory": 1024,
            "disk": 25600, "swap": 4096, "lwps": 4000, "vcpus": 1, "group": "g4",
            "description": "1 GiB", "brand": "joyent", "flexible_disk": false, "default": true})
    );
    assert_eq!(d.get(&format!("/packages/{id}")).expect(200, None), v);
    assert_eq!(
        d.get(&format!("/packages/{}", id.to_uppercase()))
            .expect(200, None)["id"],
        id.as_str()
    );
    assert_eq!(d.get("/packages/g4-highcpu-1G").expect(200, None), v);

    // A name finds its highest version (numerically: 1.10.0 > 1.9.0).
    let v10 = create(&d, pkg("g4-highcpu-1G", "1.10.0", 1024));
    create(&d, pkg("g4-highcpu-1G", "1.9.0", 1024));
    assert_eq!(
        d.get("/packages/g4-highcpu-1G").expect(200, None)["id"],
        v10.as_str()
    );

    d.get("/packages/nope")
        .expect(404, Some("ResourceNotFound"));
    d.get("/packages/33333333-3333-4333-8333-333333333333")
        .expect(404, Some("ResourceNotFound"));

    // PUT replaces the whole package.
    let mut body = pkg("g4-highcpu-1G", "1.0.0", 2048);
    body["description"] = json!("now 2 GiB");
    let v = put_json(&d, &format!("/packages/{id}"), &body).expect(200, None);
    assert_eq!(v["memory"], 2048);
    assert_eq!(v["id"], id.as_str());
    assert!(v.get("group").is_none(), "replaced, not merged: {v}");
    assert_eq!(d.get(&format!("/packages/{id}")).json(), v);
    body["id"] = json!("44444444-4444-4444-8444-444444444444");
    let e = put_json(&d, &format!("/packages/{id}"), &body).expect(422, Some("ValidationFailed"));
    assert_eq!(fields(&e), ["id"]);
    body["id"] = json!(id);
    body["version"] = json!("1.10.0");
    put_json(&d, &format!("/packages/{id}"), &body).expect(409, Some("PackageExists"));
    put_json(
        &d,
        "/packages/44444444-4444-4444-8444-444444444444",
        &pkg("x", "1", 1),
    )
    .expect(404, Some("ResourceNotFound"));
    put_json(&d, "/packages/g4-highcpu-1G", &pkg("x", "1", 1))
        .expect(404, Some("ResourceNotFound"));
    assert_eq!(
        d.get(&format!("/packages/{id}")).json(),
        v,
        "refused PUTs change nothing"
    );

    d.delete(&format!("/packages/{id}")).expect(204, None);
    d.get(&format!("/packages/{id}"))
        .expect(404, Some("ResourceNotFound"));
    d.delete(&format!("/packages/{id}"))
        .expect(404, Some("ResourceNotFound"));
    d.delete("/packages/g4-highcpu-1G")
        .expect(404, Some("ResourceNotFound"));
    assert_eq!(
        d.get("/packages")
            .expect(200, None)
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn package_routes_answer_405_with_the_allowed_methods() {
    let d = Daemon::start();
    let id = create(&d, pkg("a", "1", 1024));
    for (method, path, allow) in [
        ("DELETE", "/packages".to_string(), "GET, HEAD, POST"),
        ("POST", format!("/packages/{id}"), "GET, HEAD, PUT, DELETE"),
        ("PUT", format!("/packages/{id}/images"), "GET, HEAD"),
    ] {
        let r = request(&d.sock, method, &path, &[], b"");
        r.expect(405, Some("MethodNotAllowed"));
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
    }
    d.post_json("/packages?action=explode", &json!([]))
        .expect(422, Some("InvalidParameter"));
}

#[test]
fn invalid_packages_are_refused_listing_every_problem() {
    let d = Daemon::start();
    let v = d
        .post_json(
            "/packages",
            &json!({"name": "bad name", "memory": -1, "disk": "10", "swap": 1.5, "vcpus": 1,
                "disks": [{"size": 10}], "colour": "red"}),
        )
        .expect(422, Some("ValidationFailed"));
    let f = fields(&v);
    for want in [
        "colour", "version", "name", "memory", "disk", "swap", "disks",
    ] {
        assert!(f.contains(&want.to_string()), "{want} not in {f:?}");
    }
    let v = d
        .post_json("/packages", &json!({}))
        .expect(422, Some("ValidationFailed"));
    let mut f = fields(&v);
    f.sort();
    assert_eq!(f, ["disk", "memory", "name", "swap", "vcpus", "version"]);
    d.post_json("/packages", &json!([1]))
        .expect(422, Some("ValidationFailed"));
    let r = request(&d.sock, "POST", "/packages", &[], b"{\"name\":");
    r.expect(400, Some("InvalidContent"));

    // disks need flexible_disk, and must fit in disk.
    let mut p = pkg("flex", "1", 1024);
    p["disks"] = json!([{"size": "remaining"}]);
    assert_eq!(
        fields(&d.post_json("/packages", &p).expect(422, None)),
        ["disks"]
    );
    p["flexible_disk"] = json!(true);
    p["disks"] = json!([{"size": 8192}, {"size": 8192}]);
    assert_eq!(
        fields(&d.post_json("/packages", &p).expect(422, None)),
        ["disks"]
    );
    p["disks"] = json!([{}, {"size": 4096}, {"size": "remaining"}]);
    assert_eq!(
        d.post_json("/packages", &p).expect(201, None)["disks"],
        json!([{}, {"size": 4096}, {"size": "remaining"}])
    );

    // name + version is unique; so is a given id.
    let id = create(&d, pkg("dup", "1.0", 1024));
    let v = d
        .post_json("/packages", &pkg("dup", "1.0", 2048))
        .expect(409, Some("PackageExists"));
    assert!(v["message"].as_str().unwrap().contains(&id), "{v}");
    create(&d, pkg("dup", "1.1", 1024));
    let mut same_id = pkg("other", "1", 1);
    same_id["id"] = json!(id);
    d.post_json("/packages", &same_id)
        .expect(409, Some("PackageExists"));
    assert_eq!(
        names(&d.get("/packages").json()),
        ["dup", "dup", "flex"],
        "only the valid packages were stored"
    );
}

#[test]
fn package_list_filters() {
    let d = Daemon::start();
    let mut a = pkg("g4-highcpu-1G", "1.0.0", 1024);
    a["group"] = json!("g4");
    a["default"] = json!(true);
    create(&d, a);
    let mut b = pkg("g4-highcpu-4G", "1.0.0", 4096);
    b["group"] = json!("g4");
    b["brand"] = json!("bhyve");
    create(&d, b);
    let mut c = pkg("k4-bigdisk-1G", "2.0.0", 1024);
    c["flexible_disk"] = json!(true);
    c["disks"] = json!([{"size": "remaining"}]);
    let c_id = create(&d, c);
    let list = |q: &str| names(&d.get(&format!("/packages{q}")).expect(200, None));

    assert_eq!(
        list(""),
        ["g4-highcpu-1G", "g4-highcpu-4G", "k4-bigdisk-1G"]
    );
    // Wildcards on strings.
    assert_eq!(list("?name=g4-*"), ["g4-highcpu-1G", "g4-highcpu-4G"]);
    assert_eq!(list("?name=*-1G"), ["g4-highcpu-1G", "k4-bigdisk-1G"]);
    assert_eq!(list("?name=*big*"), ["k4-bigdisk-1G"]);
    assert_eq!(list("?name=g4-highcpu"), Vec::<String>::new());
    assert_eq!(list("?version=2.*"), ["k4-bigdisk-1G"]);
    assert_eq!(list("?group=g4"), ["g4-highcpu-1G", "g4-highcpu-4G"]);
    assert_eq!(list("?group=*"), ["g4-highcpu-1G", "g4-highcpu-4G"]);
    assert_eq!(list("?brand=bhyve"), ["g4-highcpu-4G"]);
    assert_eq!(list(&format!("?id={}", &c_id[..8])), Vec::<String>::new());
    assert_eq!(list(&format!("?id={}*", &c_id[..8])), ["k4-bigdisk-1G"]);
    // Exact numbers.
    assert_eq!(list("?memory=1024"), ["g4-highcpu-1G", "k4-bigdisk-1G"]);
    assert_eq!(list("?memory=102"), Vec::<String>::new());
    assert_eq!(list("?swap=8192"), ["g4-highcpu-4G"]);
    assert_eq!(list("?vcpus=1").len(), 3);
    // Booleans.
    assert_eq!(list("?default=true"), ["g4-highcpu-1G"]);
    assert_eq!(list("?flexible_disk=true"), ["k4-bigdisk-1G"]);
    assert_eq!(list("?flexible_disk=false").len(), 2);
    // JSON, for disks.
    assert_eq!(
        list("?disks=%5B%7B%22size%22%3A%22remaining%22%7D%5D"),
        ["k4-bigdisk-1G"]
    );
    // Several at once: all must match.
    assert_eq!(list("?name=g4-*&memory=1024"), ["g4-highcpu-1G"]);
    assert_eq!(
        list("?name=*-1G&memory=1024&flexible_disk=false"),
        ["g4-highcpu-1G"]
    );
    assert_eq!(
        list("?name=g4-*&memory=1024&default=false"),
        Vec::<String>::new()
    );

    for (q, field) in [
        ("memory=lots", "memory"),
        ("memory=-1", "memory"),
        ("vcpus=1.5", "vcpus"),
        ("default=yes", "default"),
        ("flexible_disk=1", "flexible_disk"),
        ("disks=%5B", "disks"),
        ("memroy=1024", "memroy"),
        ("name=a&name=b", "name"),
    ] {
        let v = d
            .get(&format!("/packages?{q}"))
            .expect(422, Some("InvalidParameter"));
        assert_eq!(fields(&v), [field], "{q}");
        assert!(v["message"].as_str().unwrap().contains(field), "{q}: {v}");
    }
}

#[test]
fn packages_survive_kill9_and_a_lost_database() {
    let mut d = Daemon::start();
    let id = create(&d, pkg("durable", "1", 1024));
    let mut loaded = pkg("loaded", "1", 512);
    loaded["group"] = json!("boot");
    d.post_json(
        "/packages?action=load",
        &json!([loaded, pkg("loaded", "2", 512)]),
    )
    .expect(200, None);
    let before = d.get("/packages").expect(200, None);
    assert_eq!(before.as_array().unwrap().len(), 3);
    d.kill9();
    d.spawn();
    assert_eq!(d.get("/packages").expect(200, None), before);
    assert!(d.data.join(format!("packages/{id}.json")).exists());
    d.stop();
    std::fs::remove_dir_all(d.data.join("db")).unwrap();
    d.spawn();
    assert_eq!(
        d.get("/packages").expect(200, None),
        before,
        "rebuilt from the package records"
    );
}

#[test]
fn load_is_all_or_nothing_and_idempotent() {
    let d = Daemon::start();
    let existing = create(&d, pkg("kept", "1", 256));
    let fixed = "55555555-5555-4555-8555-555555555555";
    let mut with_id = pkg("fixed", "1", 1024);
    with_id["id"] = json!(fixed);
    let set = json!([pkg("a", "1.0", 1024), pkg("b", "1.0", 2048), with_id]);

    let s = d.post_json("/packages?action=load", &set).expect(200, None);
    assert_eq!(s["created"].as_array().unwrap().len(), 3, "{s}");
    assert_eq!(s["updated"], json!([]));
    assert_eq!(s["unchanged"], json!([]));
    assert_eq!(s["packages"][2]["id"], fixed);
    let after_first = d.get("/packages").expect(200, None);
    assert_eq!(names(&after_first), ["a", "b", "fixed", "kept"]);

    // The same load again changes nothing, and keeps the ids.
    let s2 = d.post_json("/packages?action=load", &set).expect(200, None);
    assert_eq!(s2["created"], json!([]));
    assert_eq!(s2["unchanged"].as_array().unwrap().len(), 3);
    assert_eq!(s2["packages"], s["packages"]);
    assert_eq!(d.get("/packages").json(), after_first);

    // A changed entry (matched by name and version) is updated in place.
    let mut set2 = set.clone();
    set2[1]["memory"] = json!(4096);
    let s3 = d
        .post_json("/packages?action=load", &set2)
        .expect(200, None);
    assert_eq!(s3["updated"], json!([s["packages"][1]["id"]]));
    assert_eq!(s3["unchanged"].as_array().unwrap().len(), 2);
    assert_eq!(d.get("/packages/b").json()["memory"], 4096);
    let before_bad = d.get("/packages").json();

    // One invalid entry: nothing of the load is applied, every problem named.
    let mut bad = set2.clone();
    bad[0]["memory"] = json!(8192);
    bad.as_array_mut()
        .unwrap()
        .push(json!({"name": "c", "memory": "big"}));
    let v = d
        .post_json("/packages?action=load", &bad)
        .expect(422, Some("ValidationFailed"));
    let f = fields(&v);
    for want in ["3.memory", "3.version", "3.disk", "3.swap", "3.vcpus"] {
        assert!(f.contains(&want.to_string()), "{want} not in {f:?}");
    }
    // Duplicates within the file.
    let dup = json!([pkg("x", "1", 1), pkg("x", "1", 2)]);
    let v = d
        .post_json("/packages?action=load", &dup)
        .expect(422, Some("ValidationFailed"));
    assert_eq!(fields(&v), ["1.name"]);
    // An entry whose id is another stored package's name+version.
    let mut clash = pkg("kept", "1", 256);
    clash["id"] = json!("66666666-6666-4666-8666-666666666666");
    let v = d
        .post_json(
            "/packages?action=load",
            &json!([pkg("a", "1.0", 9999), clash]),
        )
        .expect(409, Some("PackageExists"));
    assert!(v["message"].as_str().unwrap().contains(&existing), "{v}");
    // An entry matched by name+version to a package another entry names by id.
    let mut renamed = pkg("renamed", "1", 256);
    renamed["id"] = json!(existing);
    let v = d
        .post_json(
            "/packages?action=load",
            &json!([pkg("kept", "1", 256), renamed]),
        )
        .expect(422, Some("ValidationFailed"));
    assert_eq!(fields(&v), ["1.id"]);
    d.post_json("/packages?action=load", &json!({"name": "a"}))
        .expect(422, Some("ValidationFailed"));
    assert_eq!(
        d.get("/packages").json(),
        before_bad,
        "refused loads change nothing"
    );
}

fn cli(d: &Daemon, args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN)
        .arg("packages")
        .args(args)
        .arg("--socket")
        .arg(&d.sock)
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "imgstore packages {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

fn stdout(out: &std::process::Output) -> String {
    assert!(out.status.success(), "command failed (see stderr above)");
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn cli_load_list_and_get() {
    let d = Daemon::start();
    let toml_file = d.dir.path().join("packages.toml");
    std::fs::write(
        &toml_file,
        r#"
[[packages]]
name = "sample-1G"
version = "1.0.0"
memory = 1024
disk = 25600
swap = 2048
vcpus = 1
group = "sample"

[[packages]]
name = "sample-4G"
version = "1.0.0"
memory = 4096
disk = 102400
swap = 8192
vcpus = 2
flexible_disk = true
disks = [{}, {size = "remaining"}]
"#,
    )
    .unwrap();
    let file = toml_file.to_str().unwrap();

    let first = stdout(&cli(&d, &["load", file]));
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines.len(), 3, "{first}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["ACTION", "ID", "NAME", "VERSION", "MEMORY", "DISK", "SWAP", "VCPUS"],
        "{first}"
    );
    assert!(
        lines[1].starts_with("created") && lines[1].contains("sample-1G"),
        "{first}"
    );
    let again = stdout(&cli(&d, &["load", file, "-j"]));
    let s: Value = serde_json::from_str(&again).unwrap();
    assert_eq!(s["created"], json!([]));
    assert_eq!(
        s["unchanged"].as_array().unwrap().len(),
        2,
        "idempotent: {s}"
    );
    assert_eq!(d.get("/packages").json().as_array().unwrap().len(), 2);

    // The same packages as a JSON array: matched by name and version.
    let json_file = d.dir.path().join("packages.json");
    let mut arr = json!([pkg("sample-1G", "1.0.0", 1024)]);
    arr[0]["disk"] = json!(25600);
    arr[0]["swap"] = json!(2048);
    arr[0]["group"] = json!("sample");
    std::fs::write(&json_file, arr.to_string()).unwrap();
    let out = stdout(&cli(
        &d,
        &[
            "load",
            json_file.to_str().unwrap(),
            "-H",
            "-o",
            "action,name",
        ],
    ));
    assert_eq!(out, "unchanged  sample-1G\n");

    let out = stdout(&cli(&d, &["list"]));
    assert!(out.starts_with("ID"), "{out}");
    assert_eq!(out.lines().count(), 3);
    let out = stdout(&cli(
        &d,
        &[
            "list",
            "-H",
            "-o",
            "name,memory,flexible_disk",
            "name=sample-*",
            "memory=4096",
        ],
    ));
    assert_eq!(out, "sample-4G  4096  true\n");
    let out = stdout(&cli(&d, &["list", "-j", "flexible_disk=false"]));
    assert_eq!(names(&serde_json::from_str(&out).unwrap()), ["sample-1G"]);
    let out = stdout(&cli(&d, &["get", "sample-4G", "-j"]));
    let p: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(p["disks"], json!([{}, {"size": "remaining"}]));
    let id = p["id"].as_str().unwrap();
    let out = stdout(&cli(&d, &["get", id, "-o", "name,disks"]));
    assert_eq!(
        out,
        "NAME       DISKS\nsample-4G  [{},{\"size\":\"remaining\"}]\n"
    );

    // Errors: exit 1, a message naming the problem, nothing changed.
    let before = d.get("/packages").json();
    std::fs::write(&toml_file, "[[packages]]\nname = \"bad\"\nmemory = -5\n").unwrap();
    let out = cli(&d, &["load", file]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ValidationFailed") && err.contains("0.memory"),
        "{err}"
    );
    std::fs::write(&toml_file, "[[packages]\n").unwrap();
    let err = String::from_utf8_lossy(&cli(&d, &["load", file]).stderr).into_owned();
    assert!(
        err.contains("packages.toml") && err.contains("TOML"),
        "{err}"
    );
    let out = cli(&d, &["get", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ResourceNotFound"));
    let out = cli(&d, &["list", "memory=x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("memory"));
    let out = cli(&d, &["list", "-o", "colour"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
    assert_eq!(d.get("/packages").json(), before);
}

#[test]
fn images_that_fit_a_package() {
    let d = Daemon::start();
    let any = d.create_active("any", b"any", json!({}));
    let big = d.create_active(
        "needs-2G",
        b"big",
        json!({"requirements": {"min_ram": 2048}}),
    );
    let small = d.create_active(
        "max-512",
        b"small",
        json!({"requirements": {"max_ram": 512}}),
    );
    let range = d.create_active(
        "range-1G-4G",
        b"range",
        json!({"requirements": {"min_ram": 1024, "max_ram": 4096}}),
    );
    let kvm = d.create_active(
        "kvm-only",
        b"kvm",
        json!({"requirements": {"brand": "kvm"}}),
    );
    let pending = d.create("pending", json!({"requirements": {"min_ram": 128}}));
    let _ = (any, big, small, range, kvm, pending);

    let p1g = create(&d, pkg("p-1G", "1", 1024));
    let mut bhyve = pkg("p-4G-bhyve", "1", 4096);
    bhyve["brand"] = json!("bhyve");
    let p4g = create(&d, bhyve);
    let p256 = create(&d, pkg("p-256M", "1", 256));

    let images = |q: &str| {
        let mut n = names(&d.get(q).expect(200, None));
        n.sort();
        n
    };
    assert_eq!(
        images(&format!("/images?package={p1g}")),
        ["any", "kvm-only", "range-1G-4G"]
    );
    assert_eq!(
        images("/images?package=p-1G"),
        ["any", "kvm-only", "range-1G-4G"]
    );
    assert_eq!(
        images(&format!("/images?package={p4g}")),
        ["any", "needs-2G", "range-1G-4G"],
        "a bhyve package does not fit an image that requires kvm"
    );
    assert_eq!(
        images(&format!("/images?package={p256}")),
        ["any", "kvm-only", "max-512"]
    );
    // Combined with the other ListImages filters.
    assert_eq!(
        images(&format!("/images?package={p256}&state=all")),
        ["any", "kvm-only", "max-512", "pending"]
    );
    assert_eq!(
        images("/images?package=p-1G&name=range-1G-4G"),
        ["range-1G-4G"]
    );

    // The same from the package side.
    assert_eq!(
        images(&format!("/packages/{p1g}/images")),
        ["any", "kvm-only", "range-1G-4G"]
    );
    assert_eq!(
        images("/packages/p-4G-bhyve/images"),
        ["any", "needs-2G", "range-1G-4G"]
    );
    assert_eq!(
        images(&format!("/packages/{p256}/images?state=all")),
        ["any", "kvm-only", "max-512", "pending"]
    );

    // Errors.
    let v = d
        .get("/images?package=nope")
        .expect(422, Some("InvalidParameter"));
    assert_eq!(fields(&v), ["package"]);
    d.get("/images?package=")
        .expect(422, Some("InvalidParameter"));
    d.get("/packages/nope/images")
        .expect(404, Some("ResourceNotFound"));
    d.get(&format!("/packages/{p1g}/images?package={p4g}"))
        .expect(422, Some("InvalidParameter"));
    d.get(&format!("/packages/{p1g}/images?state=bogus"))
        .expect(422, Some("InvalidParameter"));
}
