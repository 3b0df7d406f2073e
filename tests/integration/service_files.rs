//! The service definitions: `smf/imgstore.xml` against the structure of an
//! SMF service bundle (`service_bundle.dtd.1`), and `smf/imgstore.service`
//! through `systemd-analyze verify`, plus the daemon's side of `Type=notify`.
//!
//! A test that needs a tool (xmllint, systemd-analyze) fails when the tool
//! is missing and `CI` is set; elsewhere it says loudly that it skipped.

use crate::common::*;
// Lives in common/mod.rs; re-exported for `crate::service_files::tool`.
pub use crate::common::tool;
use roxmltree::{Document, Node};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

// ---- SMF

/// The children of `<service>` in the order the DTD requires, and how many
/// of each it allows (`true`: at most one).
const SERVICE_CHILDREN: &[(&str, bool)] = &[
    ("create_default_instance", true),
    ("single_instance", true),
    ("restarter", true),
    ("dependency", false),
    ("dependent", false),
    ("method_context", true),
    ("exec_method", false),
    ("property_group", false),
    ("instance", false),
    ("stability", true),
    ("template", true),
];

fn elements<'a, 'i>(n: Node<'a, 'i>) -> impl Iterator<Item = Node<'a, 'i>> {
    n.children().filter(|c| c.is_element())
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    elements(n).find(|c| c.has_tag_name(name))
}

#[track_caller]
fn attr<'a>(n: Node<'a, '_>, name: &str) -> &'a str {
    n.attribute(name)
        .unwrap_or_else(|| panic!("<{}> lacks the attribute {name}", n.tag_name().name()))
}

fn one_of(what: &str, v: &str, allowed: &[&str]) {
    assert!(
        allowed.contains(&v),
        "{what} = {v:?}, not one of {allowed:?}"
    );
}

/// Checks the manifest against the service bundle DTD's structure and our
/// own requirements; returns the start method's command line.
fn check_smf(text: &str) -> String {
    assert!(
        text.contains(
            "<!DOCTYPE service_bundle SYSTEM \"/usr/share/lib/xml/dtd/service_bundle.dtd.1\">"
        ),
        "the DOCTYPE svccfg expects"
    );
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = Document::parse_with_options(text, opts).expect("well-formed XML");
    let root = doc.root_element();
    assert!(root.has_tag_name("service_bundle"));
    assert_eq!(attr(root, "type"), "manifest");
    assert!(!attr(root, "name").is_empty());
    let services: Vec<_> = elements(root).collect();
    assert_eq!(services.len(), 1, "one service");
    let svc = services[0];
    assert!(svc.has_tag_name("service"));
    assert!(attr(svc, "name").contains("imgstore"));
    one_of(
        "service type",
        attr(svc, "type"),
        &["service", "restarter", "milestone"],
    );
    assert!(
        attr(svc, "version").parse::<u32>().is_ok(),
        "version is an integer"
    );

    // Children: only known ones, in the DTD's order, singletons once.
    let mut last = 0;
    for c in elements(svc) {
        let name = c.tag_name().name();
        let idx = SERVICE_CHILDREN
            .iter()
            .position(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("<{name}> is not allowed in <service>"));
        assert!(idx >= last, "<{name}> is out of the DTD's order");
        if SERVICE_CHILDREN[idx].1 {
            assert_eq!(
                elements(svc).filter(|x| x.has_tag_name(name)).count(),
                1,
                "<{name}> may appear once"
            );
        }
        last = idx;
    }

    // Dependencies: local filesystems and the network.
    let mut fmris = Vec::new();
    for dep in elements(svc).filter(|c| c.has_tag_name("dependency")) {
        assert!(!attr(dep, "name").is_empty());
        one_of(
            "grouping",
            attr(dep, "grouping"),
            &["require_all", "require_any", "exclude_all", "optional_all"],
        );
        one_of(
            "restart_on",
            attr(dep, "restart_on"),
            &["error", "restart", "refresh", "none"],
        );
        assert_eq!(attr(dep, "type"), "service");
        for f in elements(dep).filter(|c| c.has_tag_name("service_fmri")) {
            let v = attr(f, "value");
            assert!(v.starts_with("svc:/"), "{v}");
            fmris.push(v.to_string());
        }
    }
    assert!(
        fmris
            .iter()
            .any(|f| f.starts_with("svc:/system/filesystem/local")),
        "{fmris:?}"
    );
    assert!(
        fmris
            .iter()
            .any(|f| f.starts_with("svc:/milestone/network")),
        "{fmris:?}"
    );

    // method_context: (method_profile | method_credential)?, method_environment?
    if let Some(mc) = child(svc, "method_context") {
        let names: Vec<_> = elements(mc).map(|c| c.tag_name().name()).collect();
        assert!(
            matches!(
                names.as_slice(),
                [] | ["method_credential"]
                    | ["method_profile"]
                    | ["method_environment"]
                    | ["method_credential" | "method_profile", "method_environment"]
            ),
            "method_context children {names:?}"
        );
        if let Some(cred) = child(mc, "method_credential") {
            assert_eq!(attr(cred, "user"), "root", "ZFS administration needs root");
        }
        if let Some(env) = child(mc, "method_environment") {
            for e in elements(env) {
                assert!(e.has_tag_name("envvar"));
                attr(e, "name");
                attr(e, "value");
            }
        }
    }

    // exec_method: start, stop (:kill), refresh (SIGHUP).
    let method = |name: &str| {
        elements(svc)
            .find(|c| c.has_tag_name("exec_method") && c.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no exec_method {name}"))
    };
    for m in elements(svc).filter(|c| c.has_tag_name("exec_method")) {
        one_of("exec_method type", attr(m, "type"), &["method", "monitor"]);
        let t: i64 = attr(m, "timeout_seconds").parse().expect("integer timeout");
        assert!(t > 0, "a finite timeout");
    }
    let start = attr(method("start"), "exec").to_string();
    assert_eq!(attr(method("stop"), "exec"), ":kill");
    assert_eq!(attr(method("refresh"), "exec"), ":kill -HUP");

    // Property groups: the config path, and a foreground daemon.
    let pg = |name: &str| {
        elements(svc)
            .find(|c| c.has_tag_name("property_group") && c.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("no property_group {name}"))
    };
    let propval = |g: Node, name: &str| {
        elements(g)
            .find(|c| c.has_tag_name("propval") && c.attribute("name") == Some(name))
            .map(|p| (attr(p, "type").to_string(), attr(p, "value").to_string()))
            .unwrap_or_else(|| panic!("no propval {name}"))
    };
    let config = pg("config");
    assert_eq!(attr(config, "type"), "application");
    let (ty, path) = propval(config, "file");
    assert_eq!(ty, "astring");
    assert!(path.starts_with('/') && path.ends_with(".toml"), "{path}");
    assert!(
        start.contains("serve --config %{config/file}"),
        "start uses the property: {start}"
    );
    let startd = pg("startd");
    assert_eq!(attr(startd, "type"), "framework");
    let (_, duration) = propval(startd, "duration");
    one_of(
        "startd/duration",
        &duration,
        &["contract", "child", "transient"],
    );
    assert_eq!(duration, "child", "imgstore serve runs in the foreground");
    for g in elements(svc).filter(|c| c.has_tag_name("property_group")) {
        for p in elements(g) {
            one_of(
                "property_group child",
                p.tag_name().name(),
                &["stability", "propval", "property"],
            );
        }
    }

    let stability = child(svc, "stability").expect("stability");
    one_of(
        "stability",
        attr(stability, "value"),
        &[
            "Standard", "Stable", "Evolving", "Unstable", "External", "Obsolete",
        ],
    );

    // template: common_name, description?, documentation?, pg_pattern*
    let template = child(svc, "template").expect("template");
    let names: Vec<_> = elements(template).map(|c| c.tag_name().name()).collect();
    assert_eq!(names.first(), Some(&"common_name"), "{names:?}");
    let common = child(template, "common_name").unwrap();
    let loctext = child(common, "loctext").expect("loctext");
    assert_eq!(
        loctext.attribute(("http://www.w3.org/XML/1998/namespace", "lang")),
        Some("C")
    );
    assert!(loctext.text().is_some_and(|t| t.contains("imgstore")));
    start
}

#[test]
fn smf_manifest_is_a_valid_service_bundle() {
    let path = repo_file("smf/imgstore.xml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = check_smf(&text);
    let bin = start.split_whitespace().next().unwrap();
    assert!(
        bin.starts_with('/') && bin.ends_with("/imgstore"),
        "{start}"
    );

    // The checker catches what it is for.
    let swapped = text.replace("<single_instance/>", "").replace(
        "<stability value=\"Unstable\"/>",
        "<stability value=\"Unstable\"/><single_instance/>",
    );
    assert!(std::panic::catch_unwind(|| check_smf(&swapped)).is_err());
    let no_refresh = text.replace("name=\"refresh\"", "name=\"refreshh\"");
    assert!(std::panic::catch_unwind(|| check_smf(&no_refresh)).is_err());
    assert!(std::panic::catch_unwind(|| check_smf(&text.replace("</service>", ""))).is_err());

    if let Some(xmllint) = tool("xmllint", "libxml2-utils") {
        let out = Command::new(xmllint)
            .args(["--noout", "--nonet"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "xmllint: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// ---- systemd

fn unit_keys(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').expect("key=value");
        keys.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    keys
}

#[test]
fn systemd_unit_is_valid_and_keeps_zfs_working() {
    let path = repo_file("smf/imgstore.service");
    let text = std::fs::read_to_string(&path).unwrap();
    let keys = unit_keys(&text);
    let get = |s: &str, k: &str| {
        keys.iter()
            .find(|(sec, key, _)| sec == s && key == k)
            .map(|(_, _, v)| v.as_str())
    };
    assert_eq!(get("Service", "Type"), Some("notify"));
    assert_eq!(
        get("Service", "ExecReload"),
        Some("/bin/kill -HUP $MAINPID")
    );
    assert_eq!(get("Service", "Restart"), Some("on-failure"));
    let exec = get("Service", "ExecStart").expect("ExecStart");
    assert!(exec.contains(" serve --config /"), "{exec}");
    assert_eq!(get("Install", "WantedBy"), Some("multi-user.target"));
    for needed in ["local-fs.target", "network"] {
        assert!(
            get("Unit", "After").is_some_and(|a| a.contains(needed)),
            "After= {needed}"
        );
    }
    // Options that would break ZFS administration: a private mount
    // namespace hides zfs mounts from the host; device policies hide
    // /dev/zfs; a user other than root cannot administer pools.
    for (_, k, v) in &keys {
        assert!(
            !matches!(
                k.as_str(),
                "ProtectSystem"
                    | "ProtectHome"
                    | "PrivateTmp"
                    | "PrivateDevices"
                    | "PrivateMounts"
                    | "DevicePolicy"
                    | "DeviceAllow"
                    | "ReadOnlyPaths"
                    | "ReadWritePaths"
                    | "InaccessiblePaths"
                    | "ProtectKernelModules"
                    | "ProtectKernelTunables"
                    | "ProtectKernelLogs"
                    | "ProtectControlGroups"
                    | "ProtectClock"
                    | "MountFlags"
                    | "DynamicUser"
                    | "User"
            ),
            "{k}={v} gets in the way of ZFS administration"
        );
    }
    let caps = get("Service", "CapabilityBoundingSet").unwrap_or("");
    assert!(
        caps.contains("CAP_SYS_ADMIN"),
        "zfs needs CAP_SYS_ADMIN: {caps}"
    );
    assert!(
        get("Service", "SystemCallFilter").is_some_and(|f| f.contains("@mount")),
        "zfs mounts datasets"
    );
    assert_eq!(get("Service", "NoNewPrivileges"), Some("yes"));

    let Some(analyze) = tool("systemd-analyze", "systemd") else {
        return;
    };
    // verify checks that ExecStart's binary exists: point it at the one
    // just built, in a copy that differs only there.
    let dir = tempfile::tempdir().unwrap();
    let installed = exec.split_whitespace().next().unwrap();
    let copy = dir.path().join("imgstore.service");
    std::fs::write(&copy, text.replace(installed, BIN)).unwrap();
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&copy)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    // verify exits 0 even after "Failed to parse ..., ignoring" lines, so
    // any output is a failure.
    assert!(
        out.status.success() && out.stderr.is_empty() && out.stdout.is_empty(),
        "systemd-analyze verify:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it does catch mistakes.
    std::fs::write(
        &copy,
        text.replace(installed, BIN)
            .replace("Type=notify", "Type=notfy"),
    )
    .unwrap();
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(!out.stderr.is_empty(), "a bad Type= went unnoticed");
}

/// `Type=notify`: READY=1 arrives once the socket answers, STOPPING=1 at
/// SIGTERM.
#[test]
fn daemon_notifies_systemd_when_its_socket_answers() {
    use std::os::unix::net::UnixDatagram;
    let mut d = Daemon::start();
    d.stop();
    let notify = d.dir.path().join("notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut child = d
        .command()
        .env("NOTIFY_SOCKET", &notify)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = listener.recv(&mut buf).expect("READY=1 within 30 s");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means ready: the socket answers right away.
    let r = request(&d.sock, "GET", "/ping", &[], b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["pid"], child.id());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let n = listener.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    assert!(wait_timeout(&mut child, Duration::from_secs(30)).success());
}
