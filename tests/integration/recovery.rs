//! Recovery and checking: `imgstore fsck [--repair]` on a stopped daemon's
//! data dir, `GET /state` and `POST /vacuum` on a running one, a lost or
//! corrupt sled database rebuilt from the records, and vacuum's uninstall
//! of unused images racing a concurrent install.

use crate::common::*;
use serde_json::{json, Value};
use std::process::Command;

/// A client verb against the running daemon.
fn client(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--socket")
        .arg(&d.sock)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cli(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(d.config_path())
        .arg("--data-dir")
        .arg(&d.data)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn listing(d: &Daemon) -> Value {
    d.get("/images?state=all").expect(200, None)
}

#[test]
fn fsck_repair_rebuilds_a_lost_or_corrupt_database() {
    let mut d = Daemon::start();
    let mut files = Vec::new();
    for i in 0..5u8 {
        let data = vec![i; 10_000 + i as usize];
        let u = d.create_active(&format!("img-{i}"), &data, json!({"tags": {"i": i}}));
        files.push((u, data));
    }
    let pending = d.create("pending", json!({}));
    let before = listing(&d);

    // While the daemon runs, the offline check refuses and says why.
    let (code, _, err) = cli(&d, &["fsck"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("pid {}", d.pid())) && err.contains("GET /state"),
        "{err}"
    );
    d.stop();

    // The clean stop's marker sits among the records; it is not one.
    let marker = d.data.join("manifests/.clean");
    assert!(marker.exists());
    let (code, out, err) = cli(&d, &["fsck"]);
    assert_eq!(code, 0, "clean store: {out}{err}");
    assert!(
        out.contains("6 images, 5 blobs") && out.contains("0 errors"),
        "{out}"
    );
    assert!(!out.contains(".clean"), "{out}");
    let (_, out, _) = cli(&d, &["fsck", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["findings"], json!([]), "{v}");
    assert!(marker.exists(), "a check changes nothing");

    for damage in ["corrupt", "delete"] {
        let db = d.data.join("db");
        if damage == "corrupt" {
            for e in std::fs::read_dir(&db).unwrap().flatten() {
                if e.path().is_file() {
                    let len = std::fs::metadata(e.path()).unwrap().len().max(4096);
                    std::fs::write(e.path(), vec![0xa5u8; len as usize]).unwrap();
                }
            }
        } else {
            std::fs::remove_dir_all(&db).unwrap();
        }
        let (code, out, _) = cli(&d, &["fsck"]);
        assert_eq!(code, 2, "{damage}: damage not reported: {out}");
        assert!(out.contains("IndexUnreadable"), "{out}");
        let (code, out, err) = cli(&d, &["fsck", "--repair"]);
        assert_eq!(code, 0, "{damage}: repair failed: {out}{err}");
        assert!(out.contains("[repaired]"), "{out}");
        let (code, out, _) = cli(&d, &["fsck", "--json"]);
        assert_eq!(code, 0, "{out}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(v["images"], 6, "{v}");
        println!("fsck after a {damage}d database: {}", out.trim());
    }
    d.spawn();
    assert_eq!(listing(&d), before, "every image is back");
    for (u, data) in &files {
        assert_eq!(&d.get(&format!("/images/{u}/file")).body, data);
    }
    d.get(&format!("/images/{pending}")).expect(200, None);
    let state = d.get("/state?verify=true").expect(200, None);
    assert_eq!(state["ok"], true, "{state}");
    assert_eq!(state["verified"], true);
}

#[test]
fn state_reports_and_vacuum_reclaims_garbage() {
    let d = Daemon::start();
    let keep = d.create_active("keep", b"kept bytes", json!({}));
    let state = d.get("/state").expect(200, None);
    assert_eq!(state["ok"], true, "{state}");
    assert_eq!(state["findings"], json!([]));
    // A crash between committing a blob and recording it leaves an
    // unreferenced blob; a failed removal a temp file.
    let orphan = "c".repeat(64);
    std::fs::write(d.data.join("blobs/sha256").join(&orphan), b"orphan").unwrap();
    std::fs::write(d.data.join("ingest/leftover.tmp"), b"tmp").unwrap();
    let state = d.get("/state").expect(200, None);
    assert_eq!(state["ok"], true, "garbage is not an error: {state}");
    assert_eq!(state["counts"]["UnreferencedBlob"], 1, "{state}");
    assert_eq!(state["counts"]["TempFile"], 1, "{state}");
    let dry = d.post("/vacuum?dry_run=true").expect(200, None);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["removed"].as_array().unwrap().len(), 2, "{dry}");
    assert!(
        d.data.join("blobs/sha256").join(&orphan).exists(),
        "dry run removed something"
    );
    let real = d.post("/vacuum").expect(200, None);
    assert_eq!(real["removed"].as_array().unwrap().len(), 2, "{real}");
    assert_eq!(real["bytes"], 6 + 3);
    assert!(!d.data.join("blobs/sha256").join(&orphan).exists());
    assert_eq!(d.get(&format!("/images/{keep}/file")).body, b"kept bytes");
    assert_eq!(d.get("/state").json()["findings"], json!([]));
    // Through the CLI.
    std::fs::write(d.data.join("blobs/sha256").join(&orphan), b"orphan").unwrap();
    let (code, out, err) = client(&d, &["vacuum", "-n"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("would remove blob") && out.contains("dry run"),
        "{out}"
    );
    let (code, out, _) = client(&d, &["vacuum"]);
    assert_eq!(code, 0);
    assert!(out.contains("removed blob"), "{out}");
    assert!(!d.data.join("blobs/sha256").join(&orphan).exists());
    d.post("/vacuum?pool=zones")
        .expect(422, Some("InvalidParameter"));
}

/// vacuum's uninstall of unused images: only images without clones and
/// unused for the given days go, and never an origin a concurrent install
/// is receiving onto.
#[test]
fn vacuum_uninstalls_only_unused_images_and_is_safe_against_installs() {
    use crate::zfs::{
        create_image, destroy, exists, expect_success, mountpoint, pool, wait_task, zfs,
    };
    // Sources in the test pool, installs in a pool of the test's own.
    let src = format!("{}/vac-{}", pool(), &uuid::Uuid::new_v4().to_string()[..8]);
    let scratch = tempfile::tempdir().unwrap();
    let own = crate::fullness::SmallPool::create(scratch.path(), 256);
    let pool = own.name.as_str();
    let d = Daemon::start_configured(&format!("default_pool = \"{pool}\"\n"));
    zfs(&["create", &src]);
    std::fs::write(mountpoint(&src).join("f"), vec![1u8; 100_000]).unwrap();
    let old = create_image(&d, &src, "vac-old", "none", false);
    let used = create_image(&d, &src, "vac-used", "none", false);
    let fresh = create_image(&d, &src, "vac-fresh", "none", false);
    // Installed snapshots keep the guid of the source's: with the source
    // gone, a received child can only be a clone of the installed origin.
    destroy(&src);
    let install = |u: &str| {
        let t = d
            .post(&format!("/images/{u}?action=install&pool={pool}"))
            .expect(202, None);
        expect_success(&d, &t);
    };
    for u in [&old, &used, &fresh] {
        install(u);
    }
    let ten_days_ago = (chrono::Utc::now().timestamp() - 10 * 86_400).to_string();
    for u in [&old, &used] {
        zfs(&[
            "set",
            &format!("imgstore:last_used={ten_days_ago}"),
            &format!("{pool}/{u}"),
        ]);
    }
    let vm = format!("{pool}/vac-vm-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    zfs(&["clone", &format!("{pool}/{used}@final"), &vm]);
    let q = format!("/vacuum?uninstall_unused_days=1&pool={pool}");
    let dry = d.post(&format!("{q}&dry_run=true")).expect(200, None);
    let names = |v: &Value| -> Vec<String> {
        v["removed"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "installed")
            .map(|r| r["subject"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&dry), [format!("{pool}/{old}")], "{dry}");
    assert!(exists(&format!("{pool}/{old}")));
    let real = d.post(&q).expect(200, None);
    assert_eq!(names(&real), [format!("{pool}/{old}")], "{real}");
    assert!(!exists(&format!("{pool}/{old}")));
    assert!(exists(&format!("{pool}/{used}")) && exists(&format!("{pool}/{fresh}")));
    let seen = zfs(&[
        "get",
        "-H",
        "-p",
        "-o",
        "value",
        "imgstore:last_used",
        &format!("{pool}/{used}"),
    ]);
    assert!(
        seen.trim() > ten_days_ago.as_str(),
        "clone seen: last_used refreshed ({seen})"
    );
    destroy(&vm);

    // Race: an incremental child installs onto an old, unused origin while
    // vacuum runs; the install must succeed either way.
    let vm = format!("{pool}/vac-vm2-{}", &uuid::Uuid::new_v4().to_string()[..8]);
    let mnt = scratch.path().join("vm2");
    zfs(&[
        "clone",
        "-o",
        &format!("mountpoint={}", mnt.display()),
        &format!("{pool}/{fresh}@final"),
        &vm,
    ]);
    std::fs::write(mountpoint(&vm).join("g"), b"child").unwrap();
    let child = create_image(&d, &vm, "vac-child", "none", true);
    destroy(&vm);
    install(&child);
    assert_eq!(
        zfs(&[
            "get",
            "-H",
            "-o",
            "value",
            "origin",
            &format!("{pool}/{child}")
        ])
        .trim(),
        format!("{pool}/{fresh}@final"),
        "the child is a clone of its installed origin"
    );
    d.delete(&format!("/pools/{pool}/images/{child}"))
        .expect(204, None);
    for round in 0..3 {
        zfs(&[
            "set",
            &format!("imgstore:last_used={ten_days_ago}"),
            &format!("{pool}/{fresh}"),
        ]);
        let t = d
            .post(&format!("/images/{child}?action=install&pool={pool}"))
            .expect(202, None);
        let v = request(&d.sock, "POST", &q, &[], b"");
        assert_eq!(
            v.status,
            200,
            "round {round}: {}",
            String::from_utf8_lossy(&v.body)
        );
        let t = wait_task(&d, &t);
        assert_eq!(
            t["status"], "success",
            "round {round}: install lost its origin: {t}"
        );
        for ds in [&child, &fresh] {
            let snap = format!("{pool}/{ds}@final");
            assert!(
                exists(&snap),
                "round {round}: {snap} missing; vacuum: {}; task: {t}; datasets:\n{}",
                String::from_utf8_lossy(&v.body),
                zfs(&["list", "-H", "-o", "name", "-t", "all", "-r", pool])
            );
        }
        d.delete(&format!("/pools/{pool}/images/{child}"))
            .expect(204, None);
    }
    drop(d);
}
