//! `p2pdma nvmet` without a kernel: plans against topology files (`--dry-run`), configfs
//! trees in temporary directories, exit codes, JSON fields and one-line errors.

mod common;

use common::{p2pdma, ROOT_PORTS, SWITCH};

use std::path::Path;

use serde_json::Value;

/// An nvmet tree as the kernel shows it right after `modprobe nvmet`.
fn configfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for sub in ["subsystems", "ports", "hosts"] {
        std::fs::create_dir_all(d.path().join("nvmet").join(sub)).unwrap();
    }
    d
}

fn export(spec: &str, root: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "nvmet",
        "export",
        "--spec",
        spec,
        "--configfs-root",
        root.to_str().unwrap(),
        "--nqn",
        "nqn.2026-11.io.p2pdma:t",
        "--ns",
        "nvme-b",
        "--transport",
        "tcp",
        "--addr",
        "127.0.0.1",
    ];
    args.extend_from_slice(extra);
    p2pdma(&args)
}

fn tree(root: &Path) -> Vec<String> {
    fn walk(p: &Path, root: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(p).unwrap() {
            let e = e.unwrap().path();
            out.push(e.strip_prefix(root).unwrap().display().to_string());
            if e.is_dir() && !e.is_symlink() {
                walk(&e, root, out);
            }
        }
    }
    let mut v = Vec::new();
    walk(root, root, &mut v);
    v.sort();
    v
}

#[test]
fn nvmet_export_dry_run_plans_the_kernel_order() {
    let cfs = configfs();
    let (code, out, err) = export(SWITCH, cfs.path(), &["--p2pmem", "nvme-a", "--dry-run", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["outcome"], "proceed");
    assert_eq!(v["dry_run"], true);
    assert!(v["applied"].is_null());
    assert_eq!(v["p2p"]["p2pmem"], "0000:03:00.0");
    assert_eq!(v["p2p"]["distance"], 4);
    let ops: Vec<&str> = v["steps"].as_array().unwrap().iter().map(|s| s["op"].as_str().unwrap()).collect();
    assert_eq!(ops.first(), Some(&"mkdir"));
    assert_eq!(ops.last(), Some(&"symlink"));
    let paths: Vec<&str> =
        v["steps"].as_array().unwrap().iter().map(|s| s["path"].as_str().or(s["link"].as_str()).unwrap()).collect();
    let pos = |suffix: &str| paths.iter().position(|p| p.ends_with(suffix)).unwrap();
    assert!(pos("/p2pmem") < pos("/enable") && pos("/enable") < pos("/addr_trtype"));
    assert_eq!(tree(cfs.path()).len(), 4, "a dry run wrote something");
    let (_, text, _) = export(SWITCH, cfs.path(), &["--p2pmem", "nvme-a", "--dry-run"]);
    assert!(text.contains("TCP does not use P2P memory"), "{text}");
    assert!(text.contains("steps (dry run, nothing changed):"), "{text}");
}

#[test]
fn nvmet_export_refused_gives_check_reasons_and_exit_one() {
    let cfs = configfs();
    let (code, out, _) = export(ROOT_PORTS, cfs.path(), &["--p2pmem", "nvme-a", "--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["outcome"], "refused");
    assert!(v["steps"].as_array().unwrap().is_empty() && v["applied"].is_null());
    let (_, check, _) = p2pdma(&["check", "--spec", ROOT_PORTS, "nvme-a", "nvme-b", "--json"]);
    let check: Value = serde_json::from_str(&check).unwrap();
    for why in check["clients"][0]["reasons"].as_array().unwrap() {
        assert!(v["reasons"].as_array().unwrap().contains(why), "missing {why}");
    }
    assert_eq!(tree(cfs.path()).len(), 4);
    // auto: proceeds without P2P.
    let (code, out, _) = export(ROOT_PORTS, cfs.path(), &["--p2pmem", "auto", "--dry-run", "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(v["p2p"]["p2pmem"].is_null());
    assert!(v["p2p"]["summary"][0].as_str().unwrap().starts_with("p2pmem off (auto found no provider"));
}

#[test]
fn nvmet_bad_input_is_one_line_and_exit_two() {
    let cfs = configfs();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--p2pmem", "nvme-b"], "is not a P2P memory provider"),
        (vec!["--p2pmem", "nvme-zz"], "unknown device `nvme-zz`"),
        (vec!["--nsid", "0"], "--nsid 0"),
        (vec!["--port", "http"], "is not a TCP/UDP port number"),
    ];
    for (extra, want) in cases {
        let (code, out, err) = export(SWITCH, cfs.path(), &extra);
        assert_eq!(code, 2, "{extra:?}: {err}");
        assert!(out.is_empty(), "{extra:?}");
        assert!(err.contains(want), "{extra:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{extra:?}: {err}");
    }
    // clap's own errors (bad values) also exit 2.
    let (code, _, err) = export(SWITCH, cfs.path(), &["--p2pmem", ""]);
    assert_eq!(code, 2);
    assert!(err.contains("--p2pmem wants off, auto or a provider"), "{err}");
    let root = cfs.path().to_str().unwrap();
    let (code, _, err) = p2pdma(&[
        "nvmet",
        "export",
        "--spec",
        SWITCH,
        "--configfs-root",
        root,
        "--nqn",
        "a/b",
        "--ns",
        "nvme-b",
        "--transport",
        "tcp",
        "--addr",
        "127.0.0.1",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no '/'"), "{err}");
    let (code, _, err) = p2pdma(&[
        "nvmet",
        "export",
        "--spec",
        SWITCH,
        "--configfs-root",
        root,
        "--nqn",
        "x",
        "--ns",
        "nvme-zz",
        "--transport",
        "tcp",
        "--addr",
        "127.0.0.1",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown device `nvme-zz`"), "{err}");
    let (code, _, err) =
        p2pdma(&["nvmet", "export", "--spec", SWITCH, "--nqn", "x", "--ns", "nvme-b", "--transport", "fc"]);
    assert_eq!(code, 2);
    assert!(err.contains("is not a transport p2pdma exports over"), "{err}");
    assert_eq!(tree(cfs.path()).len(), 4);
}

/// A plain directory is not configfs: the first attribute write fails (ENOENT), and the
/// applier undoes the mkdir it did, leaving the tree as it was.
#[test]
fn nvmet_export_failure_rolls_back_what_it_did() {
    let cfs = configfs();
    let before = tree(cfs.path());
    let (code, out, _) = export(SWITCH, cfs.path(), &["--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    let a = &v["applied"];
    assert_eq!(a["failed"]["errno"], 2);
    assert!(a["failed"]["step"]["path"].as_str().unwrap().ends_with("/attr_allow_any_host"));
    assert_eq!(a["rolled_back"].as_array().unwrap().len(), 1);
    assert_eq!(v["ok"], false);
    assert!(v["setup"].as_array().unwrap().is_empty(), "modules loaded for a test tree");
    assert_eq!(tree(cfs.path()), before);
}

#[test]
fn nvmet_list_and_remove_read_the_tree() {
    let cfs = configfs();
    let root = cfs.path();
    let (code, out, _) =
        p2pdma(&["nvmet", "list", "--spec", SWITCH, "--configfs-root", root.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["loaded"].as_bool(), v["subsystems"].as_array().unwrap().len()), (Some(true), 0));

    let ns = root.join("nvmet/subsystems/nqn.t/namespaces/1");
    std::fs::create_dir_all(&ns).unwrap();
    std::fs::create_dir_all(root.join("nvmet/subsystems/nqn.t/allowed_hosts")).unwrap();
    std::fs::write(root.join("nvmet/subsystems/nqn.t/attr_allow_any_host"), "1\n").unwrap();
    std::fs::write(ns.join("device_path"), "/dev/nvme0n1\n").unwrap();
    std::fs::write(ns.join("enable"), "1\n").unwrap();
    std::fs::write(ns.join("p2pmem"), "0000:03:00.0\n").unwrap();
    let port = root.join("nvmet/ports/1");
    std::fs::create_dir_all(port.join("subsystems")).unwrap();
    std::fs::write(port.join("addr_trtype"), "tcp\n").unwrap();
    std::fs::write(port.join("addr_traddr"), "127.0.0.1\n").unwrap();
    std::fs::write(port.join("addr_trsvcid"), "4420\n").unwrap();
    std::os::unix::fs::symlink(root.join("nvmet/subsystems/nqn.t"), port.join("subsystems/nqn.t")).unwrap();

    let (code, out, _) = p2pdma(&["nvmet", "list", "--spec", SWITCH, "--configfs-root", root.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("subsystem nqn.t  (any host)  ports: 1: tcp 127.0.0.1:4420"), "{out}");
    assert!(out.contains("p2pmem 0000:03:00.0  P2P in use: no (prediction)"), "{out}");
    assert!(out.contains("TCP does not use P2P memory"), "{out}");

    let (code, out, _) = p2pdma(&[
        "nvmet",
        "remove",
        "--nqn",
        "nqn.t",
        "--dry-run",
        "--configfs-root",
        root.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    let steps: Vec<String> = v["steps"].as_array().unwrap().iter().map(|s| s.to_string()).collect();
    assert_eq!(steps.len(), 5, "{steps:?}");
    assert_eq!(v["ports_removed"][0], "1");
    let (code, out, _) = p2pdma(&["nvmet", "remove", "--nqn", "nqn.none", "--configfs-root", root.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("nqn.none is not exported: nothing changed"));
}
