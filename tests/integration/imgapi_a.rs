//! Issue #13, slice A: images a SmartOS node can install (gzip by default,
//! installable with imgadm's own `gzip -cdfq | zfs receive`), installed
//! zone images left mounted as imgadm leaves them, and IMGAPI's manifest
//! validation modes (`[imgapi] mode`), each on the real daemon (and the
//! real pool where ZFS is involved).

use crate::common::zfs::*;
use crate::common::*;
use serde_json::json;
use std::process::{Command, Stdio};

/// `zfs get -H -o value PROP DS`, trimmed.
fn prop(ds: &str, name: &str) -> String {
    zfs(&["get", "-H", "-o", "value", name, ds])
        .trim()
        .to_string()
}

// ---- item 1: gzip by default ------------------------------------------------

/// An image made by create-from-dataset with no options at all is gzip, and
/// its file installs with exactly the reference imgadm's pipeline
/// (`_installZfsImage`: `/usr/bin/gzip -cdfq` piped into `zfs receive`),
/// giving the same files as the source dataset.
#[test]
fn default_create_is_gzip_and_installs_with_imgadms_pipeline() {
    let d = Daemon::start();
    let src = make_source("gzdef");
    let want = tree(&mountpoint(&src));
    // Default options: no compression, no incremental, no send_compressed.
    let task = d
        .post_json(
            "/images?action=create-from-dataset",
            &json!({"dataset": src, "manifest": {"name": "gzdef", "version": "1.0.0",
                    "type": "zone-dataset", "os": "smartos"}}),
        )
        .expect(202, None);
    assert_eq!(task["input"]["compression"], "gzip", "{task}");
    let t = expect_success(&d, &task);
    let uuid = t["result"]["image_uuid"].as_str().unwrap().to_string();
    let m = d.get(&format!("/images/{uuid}")).expect(200, None);
    assert_eq!(m["files"][0]["compression"], "gzip", "{m}");

    let file = d.get(&format!("/images/{uuid}/file"));
    assert_eq!(file.status, 200);
    assert_eq!(
        file.body.len() as u64,
        m["files"][0]["size"].as_u64().unwrap()
    );
    assert_eq!(
        sha1_hex(&file.body),
        m["files"][0]["sha1"].as_str().unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{uuid}.file"));
    std::fs::write(&path, &file.body).unwrap();

    // imgadm's pipeline, argv and pipes: gzip -cdfq < FILE | zfs receive DS.
    let fresh = format!("{}/{}", pool(), uniq("gzrecv"));
    let mut gunzip = Command::new("gzip")
        .arg("-cdfq")
        .stdin(std::fs::File::open(&path).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running gzip");
    let recv = Command::new("zfs")
        .args(["receive", &fresh])
        .stdin(Stdio::from(gunzip.stdout.take().unwrap()))
        .output()
        .expect("running zfs receive");
    let gz = gunzip.wait_with_output().unwrap();
    assert!(
        gz.status.success(),
        "gzip -cdfq failed: {}",
        String::from_utf8_lossy(&gz.stderr)
    );
    assert!(
        recv.status.success(),
        "zfs receive {fresh} failed: {}",
        String::from_utf8_lossy(&recv.stderr)
    );
    assert_eq!(tree(&mountpoint(&fresh)), want, "received files differ");
    destroy(&fresh);
    destroy(&src);
}

/// The CLI's create has no compression default of its own (the daemon's
/// gzip applies) and its help marks zstd as imgstore-to-imgstore only.
#[test]
fn create_help_marks_zstd_imgstore_only() {
    let out = Command::new(BIN)
        .args(["create", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{help}");
    assert!(help.contains("default: gzip"), "{help}");
    assert!(
        help.contains("zstd") && help.contains("imgstore-to-imgstore only"),
        "{help}"
    );
}

// ---- item 9: installed filesystems are mounted --------------------------------

/// After install, a zone-dataset image's dataset is mounted at its
/// mountpoint with the image's files visible there, as imgadm's plain
/// `zfs receive` leaves it (`/zones/UUID` is where operators look).
#[test]
fn installed_zone_image_is_mounted_with_its_files() {
    let d = Daemon::start();
    let src = make_source("mnt");
    let want = tree(&mountpoint(&src));
    let uuid = create_image(&d, &src, "mnt", "gzip", false);
    install(&d, &uuid);
    let ds = format!("{}/{uuid}", pool());
    // Read before anything in the test could mount it.
    assert_eq!(prop(&ds, "mounted"), "yes", "{ds} is not mounted");
    let mp = std::path::PathBuf::from(prop(&ds, "mountpoint"));
    assert_eq!(tree(&mp), want, "files at {} differ", mp.display());
    // The receive was still done with -u: no -partial was ever mounted, and
    // uninstall and reinstall work on a mounted dataset.
    d.delete(&format!("/pools/{}/images/{uuid}", pool()))
        .expect(204, None);
    assert!(!exists(&ds));
    install(&d, &uuid);
    assert_eq!(prop(&ds, "mounted"), "yes");
    destroy(&ds);
    destroy(&src);
}

/// A mount that fails fails the install with MountFailed naming the
/// dataset, and undoes it: nothing is left in the pool. The failure is
/// made the same way on every ZFS: the pool's mountpoint holds a regular
/// file where the image's mountpoint directory must go.
#[test]
fn failed_mount_fails_the_install_and_undoes_it() {
    let d = Daemon::start();
    let src = make_source("mntfail");
    let uuid = create_image(&d, &src, "mntfail", "none", false);
    let dir = tempfile::tempdir().unwrap();
    let small = SmallPool::create(dir.path(), 128);
    let root = dir.path().join("root");
    zfs(&[
        "set",
        &format!("mountpoint={}", root.display()),
        &small.name,
    ]);
    assert_eq!(prop(&small.name, "mounted"), "yes");
    std::fs::write(root.join(&uuid), b"in the way").unwrap();

    let task = d
        .post(&format!(
            "/images/{uuid}?action=install&pool={}",
            small.name
        ))
        .expect(202, None);
    let t = wait_task(&d, &task);
    assert_eq!(t["status"], "failure", "{t}");
    let err = &t["error"];
    assert_eq!(err["code"], "MountFailed", "{t}");
    let ds = format!("{}/{uuid}", small.name);
    assert!(
        err["message"].as_str().unwrap().contains(&ds),
        "the error names {ds}: {err}"
    );
    assert!(!exists(&ds), "{ds} left behind");
    assert!(!exists(&format!("{ds}-partial")));
    std::fs::remove_file(root.join(&uuid)).unwrap();
    zfs(&["set", "mountpoint=none", &small.name]);
    drop(d);
    destroy(&src);
}

/// A zvol image is installed and never mounted (`mounted` is `-` on a
/// volume). zfs-fuse has no volumes at all (`zfs create -V` fails with
/// "Function not implemented"), so there this half runs on OpenZFS (CI's
/// guest, scripts/zfs-vm-test) and the decision is pinned by the unit test
/// `zfs::tests::mounts_received_filesystems_only`.
#[test]
fn installed_zvol_image_is_not_mounted() {
    let vol = format!("{}/{}", pool(), uniq("zv"));
    let made = Command::new("zfs")
        .args(["create", "-V", "16M", &vol])
        .output()
        .unwrap();
    if !made.status.success() {
        let err = String::from_utf8_lossy(&made.stderr);
        assert!(
            err.contains("Function not implemented") || made.status.code().is_none(),
            "zfs create -V failed for another reason than zfs-fuse's missing volumes: {err}"
        );
        eprintln!("NOTE: this ZFS (zfs-fuse) has no volumes; the zvol install runs on OpenZFS");
        return;
    }
    let d = Daemon::start();
    let task = d
        .post_json(
            "/images?action=create-from-dataset",
            &json!({"dataset": vol, "manifest": {"name": "zv", "version": "1.0.0",
                    "type": "zvol", "os": "linux", "nic_driver": "virtio",
                    "disk_driver": "virtio", "cpu_type": "host", "image_size": 16}}),
        )
        .expect(202, None);
    let t = expect_success(&d, &task);
    let uuid = t["result"]["image_uuid"].as_str().unwrap().to_string();
    install(&d, &uuid);
    let ds = format!("{}/{uuid}", pool());
    assert_eq!(prop(&ds, "type"), "volume");
    assert_eq!(prop(&ds, "mounted"), "-");
    destroy(&ds);
    destroy(&vol);
}

// ---- item 10: IMGAPI's validation modes ----------------------------------------

/// The errors[] of a ValidationFailed answer as (field, code) pairs.
fn field_codes(v: &serde_json::Value) -> Vec<(String, String)> {
    v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors[] in {v}"))
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_string(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn manifest(extra: serde_json::Value) -> serde_json::Value {
    let mut m =
        json!({"name": "modes", "version": "1.0.0", "type": "zone-dataset", "os": "smartos"});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

/// The default mode is dc: private and public images side by side.
#[test]
fn dc_mode_is_the_default_and_takes_private_and_public_images() {
    let d = Daemon::start();
    let private = d
        .post_json("/images", &manifest(json!({})))
        .expect(200, None);
    assert_eq!(private["public"], false);
    let public = d
        .post_json("/images", &manifest(json!({"public": true})))
        .expect(200, None);
    assert_eq!(public["public"], true);
    // An imported image keeps its owner in dc mode.
    let uuid = "4c9a2b6e-5e6a-4b8e-9d43-2d0f1c3a7b11";
    let owner = "930896af-bf8c-48d4-885c-6573a94b1853";
    let m = d
        .post_json(
            &format!("/images/{uuid}?action=import"),
            &manifest(json!({"uuid": uuid, "owner": owner})),
        )
        .expect(200, None);
    assert_eq!(m["owner"], owner);
}

/// `[imgapi] mode = "public"`: every image must be public (IMGAPI answers
/// 422 ValidationFailed, `public` Invalid, "private images are not allowed
/// on a public Images API"), and imports lose their owner.
#[test]
fn public_mode_refuses_private_images() {
    let d = Daemon::start_config("[imgapi]\nmode = \"public\"\n");
    let e = d
        .post_json("/images", &manifest(json!({})))
        .expect(422, Some("ValidationFailed"));
    assert_eq!(field_codes(&e), [("public".into(), "Invalid".into())]);
    assert!(
        e["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("private images are not allowed on a public Images API"),
        "{e}"
    );
    let img = d
        .post_json("/images", &manifest(json!({"public": true})))
        .expect(200, None);
    let uuid = img["uuid"].as_str().unwrap();
    // Nothing was stored by the refused request.
    let list = d.get("/images?state=all").expect(200, None);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    // An update cannot make it private.
    let e = d
        .post_json(
            &format!("/images/{uuid}?action=update"),
            &json!({"public": false}),
        )
        .expect(422, Some("ValidationFailed"));
    assert_eq!(field_codes(&e), [("public".into(), "Invalid".into())]);
    // Import: the owner is reset to IMGAPI's unset owner.
    let other = "5d0b3c7f-6f7b-4c9f-8e54-3e1f2d4b8c22";
    let m = d
        .post_json(
            &format!("/images/{other}?action=import"),
            &manifest(json!({"uuid": other, "public": true,
                             "owner": "930896af-bf8c-48d4-885c-6573a94b1853"})),
        )
        .expect(200, None);
    assert_eq!(m["owner"], "00000000-0000-0000-0000-000000000000");
}

/// `[imgapi] mode = "private"`: no image may be public.
#[test]
fn private_mode_refuses_public_images() {
    let d = Daemon::start_config("[imgapi]\nmode = \"private\"\n");
    let e = d
        .post_json("/images", &manifest(json!({"public": true})))
        .expect(422, Some("ValidationFailed"));
    assert_eq!(field_codes(&e), [("public".into(), "Invalid".into())]);
    assert!(
        e["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("public images are not allowed on a private Images API"),
        "{e}"
    );
    d.post_json("/images", &manifest(json!({})))
        .expect(200, None);
}

/// A mode that is none of IMGAPI's three stops the daemon at start, naming
/// the value.
#[test]
fn unknown_mode_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[imgapi]\nmode = \"open\"\n").unwrap();
    let out = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("open") && err.contains("mode"), "{err}");
}
