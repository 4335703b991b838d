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
        "--host",
        HOST,
    ];
    args.extend_from_slice(extra);
    p2pdma(&args)
}

const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:host-a";

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
    let (code, out, _) = export(ROOT_PORTS, cfs.path(), &["--p2pmem", "nvme-a", "--dry-run", "--json"]);
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
        (vec!["--host", "a/b"], "host NQN `a/b`: it becomes a configfs directory name"),
    ];
    for (mut extra, want) in cases {
        extra.push("--dry-run");
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
        "--host",
        HOST,
        "--dry-run",
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
        "--host",
        HOST,
        "--dry-run",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown device `nvme-zz`"), "{err}");
    let (code, _, err) =
        p2pdma(&["nvmet", "export", "--spec", SWITCH, "--nqn", "x", "--ns", "nvme-b", "--transport", "fc"]);
    assert_eq!(code, 2);
    assert!(err.contains("is not a transport p2pdma exports over"), "{err}");
    assert_eq!(tree(cfs.path()).len(), 4);
}

/// A plan made from a topology file or a snapshot is for a model: never applied.
#[test]
fn nvmet_model_plans_are_dry_runs_only() {
    let cfs = configfs();
    let before = tree(cfs.path());
    let (code, out, err) = export(SWITCH, cfs.path(), &["--json"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert_eq!(
        err.trim_end(),
        "p2pdma: --spec/--snapshot plan against a model, not this machine: add --dry-run (such a plan is never applied to configfs)"
    );
    let root = cfs.path().to_str().unwrap();
    let file = cfs.path().join("c.json");
    std::fs::write(&file, "{}").unwrap();
    let (code, _, err) =
        p2pdma(&["nvmet", "restore", file.to_str().unwrap(), "--spec", SWITCH, "--configfs-root", root]);
    assert_eq!(code, 2);
    assert!(err.contains("add --dry-run"), "{err}");
    std::fs::remove_file(&file).unwrap();
    assert_eq!(tree(cfs.path()), before);
}

/// Closed by default: neither --host nor --allow-any-host is refused with the way to
/// choose; --allow-any-host writes attr_allow_any_host = 1 and warns; --host never does.
#[test]
fn nvmet_export_is_closed_unless_hosts_are_chosen() {
    let cfs = configfs();
    let root = cfs.path().to_str().unwrap();
    let base = [
        "nvmet",
        "export",
        "--spec",
        SWITCH,
        "--configfs-root",
        root,
        "--nqn",
        "nqn.t",
        "--ns",
        "nvme-b",
        "--transport",
        "tcp",
        "--addr",
        "127.0.0.1",
        "--dry-run",
        "--json",
    ];
    let (code, out, err) = p2pdma(&base);
    assert_eq!(code, 2, "{out}");
    assert!(out.is_empty());
    assert!(err.starts_with("p2pdma: choose who may connect: --host NQN (repeatable)"), "{err}");
    assert!(err.contains("--allow-any-host"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1);

    let (code, out, err) = p2pdma(&[&base[..], &["--allow-any-host"]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(err.starts_with("p2pdma: warning: --allow-any-host: any host that reaches tcp 127.0.0.1:4420"), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["allow_any_host"], true);
    assert!(v["steps"].to_string().contains("attr_allow_any_host"));

    let (code, out, err) = p2pdma(&[&base[..], &["--host", HOST, "--host", "nqn.b"]].concat());
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["allowed_hosts"], serde_json::json!([HOST, "nqn.b"]));
    let steps = v["steps"].to_string();
    assert!(!steps.contains("attr_allow_any_host"), "{steps}");
    assert!(steps.contains(&format!("\"link\":\"nvmet/subsystems/nqn.t/allowed_hosts/{HOST}\"")), "{steps}");
    assert!(steps.contains(&format!("\"path\":\"nvmet/hosts/{HOST}\"")), "{steps}");

    let (code, _, err) = p2pdma(&[&base[..], &["--host", HOST, "--allow-any-host"]].concat());
    assert_eq!(code, 2);
    assert!(err.contains("cannot be used with"), "{err}");
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
    assert!(
        out.contains(
            "subsystem nqn.t  (may connect: any host (attr_allow_any_host = 1))  ports: 1: tcp 127.0.0.1:4420"
        ),
        "{out}"
    );
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

const SAMPLE: &str = include_str!("../../p2pdma-nvmet/fixtures/nvmetcli-config.json");

/// `nvmet restore FILE --spec SPEC --configfs-root ROOT --dry-run EXTRA...`.
fn restore_dry_run(file: &Path, spec: &str, root: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args =
        vec!["nvmet", "restore", file.to_str().unwrap(), "--spec", spec, "--configfs-root", root, "--dry-run"];
    args.extend_from_slice(extra);
    p2pdma(&args)
}

/// A small exported tree by hand: one host, a subsystem allowing it, a namespace, a port.
fn exported_tree(root: &Path) {
    let sub = root.join("nvmet/subsystems/nqn.t");
    let ns = sub.join("namespaces/1");
    std::fs::create_dir_all(&ns).unwrap();
    std::fs::create_dir_all(sub.join("allowed_hosts")).unwrap();
    std::fs::create_dir_all(root.join("nvmet/hosts").join(HOST)).unwrap();
    std::os::unix::fs::symlink(root.join("nvmet/hosts").join(HOST), sub.join("allowed_hosts").join(HOST)).unwrap();
    for (f, v) in [("attr_allow_any_host", "0"), ("attr_serial", "abc123"), ("attr_model", "Linux")] {
        std::fs::write(sub.join(f), format!("{v}\n")).unwrap();
    }
    for (f, v) in
        [("device_path", "/dev/nvme0n1"), ("device_uuid", "u-1"), ("enable", "1"), ("p2pmem", "0"), ("ana_grpid", "1")]
    {
        std::fs::write(ns.join(f), format!("{v}\n")).unwrap();
    }
    let port = root.join("nvmet/ports/1");
    std::fs::create_dir_all(port.join("subsystems")).unwrap();
    std::fs::create_dir_all(port.join("referrals")).unwrap();
    std::fs::create_dir_all(port.join("ana_groups/1")).unwrap();
    std::fs::write(port.join("ana_groups/1/ana_state"), "optimized\n").unwrap();
    for (f, v) in
        [("addr_trtype", "tcp"), ("addr_traddr", "127.0.0.1"), ("addr_trsvcid", "4420"), ("addr_adrfam", "ipv4")]
    {
        std::fs::write(port.join(f), format!("{v}\n")).unwrap();
    }
    std::os::unix::fs::symlink(&sub, port.join("subsystems/nqn.t")).unwrap();
}

#[test]
fn nvmet_save_writes_nvmetcli_json_whole_or_to_stdout() {
    let cfs = configfs();
    exported_tree(cfs.path());
    let root = cfs.path().to_str().unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("config.json");
    let (code, out, err) = p2pdma(&["nvmet", "save", file.to_str().unwrap(), "--configfs-root", root]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("saved 1 subsystem(s), 1 port(s), 1 host(s) to "), "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["hosts"][0]["nqn"], HOST);
    let s = &v["subsystems"][0];
    assert_eq!((s["nqn"].as_str(), s["attr"]["serial"].as_str()), (Some("nqn.t"), Some("abc123")));
    assert_eq!(s["allowed_hosts"][0], HOST);
    let ns = &s["namespaces"][0];
    assert_eq!(
        (ns["device"]["path"].as_str(), ns["enable"].as_u64(), ns["p2pmem"].as_str()),
        (Some("/dev/nvme0n1"), Some(1), Some("0"))
    );
    assert_eq!((ns["ana"]["grpid"].as_str(), ns["ana_grpid"].as_u64()), (Some("1"), Some(1)));
    let p = &v["ports"][0];
    assert_eq!((p["portid"].as_u64(), p["addr"]["trtype"].as_str()), (Some(1), Some("tcp")));
    assert_eq!(p["ana_groups"][0]["ana"]["state"], "optimized");
    assert_eq!(p["subsystems"][0], "nqn.t");
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 1, "a temporary file was left");

    let (code, out, _) = p2pdma(&["nvmet", "save", "-", "--configfs-root", root]);
    assert_eq!(code, 0);
    assert_eq!(out, text);

    // An unwritable place: one line, exit 2 (as for every output file), nothing created.
    let missing = out_dir.path().join("no/such/dir/c.json");
    let (code, out, err) = p2pdma(&["nvmet", "save", missing.to_str().unwrap(), "--configfs-root", root]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(err.contains("no/such/dir/c.json") && err.contains("does not exist"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1);
}

#[test]
fn nvmet_restore_dry_run_checks_like_export() {
    let cfs = configfs();
    let root = cfs.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // In a topology file the namespace is named by its device.
    let file = dir.path().join("c.json");
    std::fs::write(&file, SAMPLE.replace("/dev/nvme0n1", "nvme-b")).unwrap();
    let (code, out, err) = restore_dry_run(&file, SWITCH, root, &["--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["outcome"], "proceed");
    let ns = &v["subsystems"][0]["namespaces"][0];
    assert_eq!((ns["p2p"]["p2pmem"].as_str(), ns["p2p"]["distance"].as_u64()), (Some("0000:03:00.0"), Some(4)));
    assert_eq!(v["hosts_created"][0], "nqn.2014-08.org.nvmexpress:uuid:host-a");
    assert!(v["steps"].as_array().unwrap().len() > 20);
    assert_eq!(tree(cfs.path()).len(), 4, "a dry run wrote something");
    let (code, text, _) = restore_dry_run(&file, SWITCH, root, &[]);
    assert_eq!(code, 0);
    assert!(
        text.contains("subsystem nqn.2026-11.io.p2pdma:t  (hosts nqn.2014-08.org.nvmexpress:uuid:host-a)"),
        "{text}"
    );
    assert!(text.contains("steps (dry run, nothing changed):"), "{text}");

    // The same verdict as export: nvme-a's CMB cannot serve nvme-b behind root ports.
    std::fs::write(&file, SAMPLE.replace("/dev/nvme0n1", "nvme-b").replace("0000:03:00.0", "0000:01:00.0")).unwrap();
    let (code, out, _) = restore_dry_run(&file, ROOT_PORTS, root, &["--json"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["outcome"].as_str(), v["steps"].as_array().unwrap().len()), (Some("refused"), 0));
    assert!(v["reasons"].to_string().contains("the kernel refuses P2P between"), "{}", v["reasons"]);
}

#[test]
fn nvmet_restore_bad_files_are_one_line_and_exit_two() {
    let cfs = configfs();
    let root = cfs.path().to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("notjson.json", "hosts: []".to_string(), "notjson.json: not JSON: expected value at line 1 column 1"),
        (
            "field.json",
            SAMPLE.replace("\"nsid\": 1", "\"nsid\": 1, \"size\": 5"),
            "field.json: field subsystems[0].namespaces[0].size: unknown field `size`",
        ),
        (
            "shape.json",
            "{\"ports\": {}}".to_string(),
            "shape.json: field ports: invalid type: map, expected a sequence",
        ),
        ("array.json", "[]".to_string(), "array.json: not an nvmetcli config"),
    ];
    for (name, text, want) in cases {
        let file = dir.path().join(name);
        std::fs::write(&file, text).unwrap();
        let (code, out, err) = restore_dry_run(&file, SWITCH, root, &[]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(out.is_empty(), "{name}");
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
    }
    let missing = dir.path().join("none.json");
    let (code, _, err) = restore_dry_run(&missing, SWITCH, root, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("none.json: No such file or directory"), "{err}");
    assert_eq!(tree(cfs.path()).len(), 4);
}

/// On this machine (live), onto a plain directory: the port's first attribute does not exist
/// (a directory is not configfs), and everything made is undone, the host entry included.
#[test]
fn nvmet_restore_failure_rolls_back_what_it_did() {
    let cfs = configfs();
    let root = cfs.path().to_str().unwrap();
    let before = tree(cfs.path());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.json");
    std::fs::write(
        &file,
        r#"{"hosts": [{"nqn": "nqn.h"}], "ports": [{"addr": {"trtype": "tcp"}, "portid": 7, "subsystems": []}]}"#,
    )
    .unwrap();
    let (code, out, err) = p2pdma(&["nvmet", "restore", file.to_str().unwrap(), "--configfs-root", root, "--json"]);
    assert_eq!(code, 1, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let a = &v["applied"];
    assert_eq!(a["failed"]["errno"], 2, "{a}");
    assert_eq!(a["failed"]["step"]["path"], "nvmet/ports/7/addr_trtype");
    let undone: Vec<String> =
        a["rolled_back"].as_array().unwrap().iter().map(|s| s["step"]["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(undone, ["nvmet/ports/7", "nvmet/hosts/nqn.h"]);
    assert!(v["setup"].as_array().unwrap().is_empty(), "modules loaded for a test tree");
    assert_eq!(tree(cfs.path()), before);
}
