//! IMGAPI compatibility: the official IMGAPI Node client (npm
//! `sdc-clients`, `new IMGAPI({url, socketPath})`) drives the real daemon
//! through tests/compat/imgapi-client.test.js (node's built-in test runner).

use crate::common::*;
use std::path::Path;
use std::process::Command;

#[test]
fn official_imgapi_node_client_works_unchanged() {
    let compat = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    assert!(
        compat.join("node_modules/sdc-clients").exists(),
        "sdc-clients is not installed: run `npm ci` in {} (scripts/test does it)",
        compat.display()
    );
    let d = Daemon::start();
    let out = Command::new("node")
        .arg("--test")
        .arg("imgapi-client.test.js")
        .current_dir(&compat)
        .env("IMGSTORE_SOCKET", &d.sock)
        .output()
        .expect("running node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the IMGAPI node client tests failed:\n{stdout}\n{stderr}\ndaemon log:\n{}",
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
        passed >= 10,
        "expected at least 10 client tests to pass, got {passed}:\n{stdout}"
    );
}

/// Issue #13 slice C: conditional updates (`If-Match` passed in
/// `options.headers`, as Triton tooling passes it) and the reference's
/// error codes as the client surfaces them (`err.restCode`,
/// `err.body.code`), through tests/compat/imgapi-conditional.test.js.
#[test]
fn official_imgapi_node_client_conditional_updates_and_codes() {
    let compat = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    assert!(
        compat.join("node_modules/sdc-clients").exists(),
        "sdc-clients is not installed: run `npm ci` in {}",
        compat.display()
    );
    let d = Daemon::start();
    let out = Command::new("node")
        .arg("--test")
        .arg("imgapi-conditional.test.js")
        .current_dir(&compat)
        .env("IMGSTORE_SOCKET", &d.sock)
        .output()
        .expect("running node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("# fail 0"),
        "the conditional-update client tests failed:\n{stdout}\n{stderr}\ndaemon log:\n{}",
        d.log_text()
    );
    let passed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("# pass "))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .unwrap_or(0);
    assert!(
        passed >= 12,
        "expected the 12 steps to pass, got {passed}:\n{stdout}"
    );
}
