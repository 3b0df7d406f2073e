//! IMGAPI compatibility: the official IMGAPI Node client (npm
//! `sdc-clients`, `new IMGAPI({url, socketPath})`) drives the real daemon
//! through tests/compat/imgapi-client.test.js, and through
//! tests/compat/imgapi-acl-channels.test.js on a daemon with channels
//! (node's built-in test runner).

use crate::common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn official_imgapi_node_client_works_unchanged() {
    run_node_tests(&Daemon::start(), "imgapi-client.test.js", 10);
}

/// ACLs, accounts, clone and channels through the client's own methods.
#[test]
fn official_imgapi_node_client_acl_and_channels() {
    let d = Daemon::start_config(
        "[[channels]]\nname = \"dev\"\ndescription = \"development builds\"\n\
         [[channels]]\nname = \"release\"\ndescription = \"release builds\"\ndefault = true\n",
    );
    run_node_tests(&d, "imgapi-acl-channels.test.js", 12);
}

/// Runs one test file of tests/compat against `d`; at least `min` tests
/// must pass and none fail.
fn run_node_tests(d: &Daemon, file: &str, min: u32) {
    run_node_tests_with(d, file, min, &[]);
}

/// [`run_node_tests`] with extra environment for the test file.
fn run_node_tests_with(d: &Daemon, file: &str, min: u32, env: &[(&str, String)]) {
    let compat = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    assert!(
        compat.join("node_modules/sdc-clients").exists(),
        "sdc-clients is not installed: run `npm ci` in {} (scripts/test does it)",
        compat.display()
    );
    let out = Command::new("node")
        .arg("--test")
        .arg(file)
        .current_dir(&compat)
        .env("IMGSTORE_SOCKET", &d.sock)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("running node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the IMGAPI node client tests of {file} failed:\n{stdout}\n{stderr}\ndaemon log:\n{}",
        d.log_text()
    );
    // The runner's summary: no failures, and it really ran tests.
    assert!(stdout.contains("# fail 0"), "{stdout}");
    let passed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("# pass "))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    assert!(
        passed >= min,
        "expected at least {min} client tests of {file} to pass, got {passed}:\n{stdout}"
    );
}

/// Issue #13 slice D: the same client on icons (add, get with its
/// Content-MD5 check, delete, refusals) and on the operator imports from
/// another IMGAPI (adminImportImage and addImageFile with `source`), the
/// source being a second daemon's peer listener
/// (tests/compat/imgapi-icons.test.js).
#[test]
fn official_imgapi_node_client_icons_and_imports_from_a_source() {
    let port = crate::common::nginx::free_port();
    let source = Daemon::start_config(&format!("[peer]\nlisten = \"127.0.0.1:{port}\"\n"));
    let data: Vec<u8> = (0..500_000u32).map(|i| (i % 251) as u8).collect();
    let src_uuid = source.create_active("compat-source", &data, serde_json::json!({}));
    let d = Daemon::start();
    let env = [
        ("IMGSTORE_SOURCE_URL", format!("http://127.0.0.1:{port}")),
        ("IMGSTORE_SOURCE_IMAGE", src_uuid),
        ("IMGSTORE_SOURCE_SHA1", sha1_hex(&data)),
    ];
    run_node_tests_with(&d, "imgapi-icons.test.js", 7, &env);
}

/// Issue #13 slice C: conditional updates (`If-Match` passed in
/// `options.headers`, as Triton tooling passes it) and the reference's
/// error codes as the client surfaces them (`err.restCode`,
/// `err.body.code`), through tests/compat/imgapi-conditional.test.js.
#[test]
fn official_imgapi_node_client_conditional_updates_and_codes() {
    let d = Daemon::start();
    run_node_tests(&d, "imgapi-conditional.test.js", 12);
}
