//! The binary's contract: exit codes, JSON fields, one-line errors on bad input.

use std::process::Command;

fn p2pdma(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_p2pdma")).args(args).current_dir("../..").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const SWITCH: &str = "examples/topologies/switch.toml";
const ROOT_PORTS: &str = "examples/topologies/root-ports.toml";

#[test]
fn check_exit_codes_follow_the_verdict() {
    let (code, out, _) = p2pdma(&["check", "--spec", SWITCH, "nvme-a", "nvme-b", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["map_type"], "bus_addr");
    assert_eq!(v["distance"], 4);
    let c = &v["clients"][0];
    assert_eq!(c["client"], "0000:04:00.0");
    assert_eq!(c["map_type"], "bus_addr");
    assert_eq!(c["common_upstream"], "0000:01:00.0");
    assert!(c["acs_redirect"].as_array().unwrap().is_empty());
    assert!(c["reasons"].as_array().unwrap().len() == 1 && c["fixes"].is_array());

    let (code, out, _) = p2pdma(&["check", "--spec", ROOT_PORTS, "0000:01:00.0", "02:00.0", "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["map_type"], "not_supported");
    assert!(
        v["distance"].is_null()
            && v["clients"][0]["distance"].is_null()
            && v["clients"][0]["common_upstream"].is_null()
    );

    let (code, out, _) = p2pdma(&["check", "--spec", "examples/topologies/iommu-acs.toml", "nvme-a", "nvme-b"]);
    assert_eq!(code, 1);
    assert!(out.contains("pci=disable_acs_redir=0000:00:11.0"), "{out}");
}

#[test]
fn find_and_providers_report_json() {
    let (code, out, _) = p2pdma(&["find", "--spec", "examples/topologies/nested-switches.toml", "nvme-c", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["provider"], "0000:06:00.0");
    assert_eq!(v["candidates"][1]["distance"], 6);
    let (code, out, _) = p2pdma(&["find", "--spec", "examples/topologies/no-provider.toml", "nvme-a", "--json"]);
    assert_eq!(code, 1);
    assert!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["provider"].is_null());
    let (code, out, _) = p2pdma(&["providers", "--spec", SWITCH, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["size"], 16 << 20);
}

#[test]
fn topo_prints_tree_and_matrix() {
    let (code, out, _) = p2pdma(&["topo", "--spec", SWITCH]);
    assert_eq!(code, 0);
    assert!(out.contains("nvme-a") && out.contains("BUS4") && out.contains("P2P memory 16.0 MiB"), "{out}");
    let (code, out, _) = p2pdma(&["topo", "--spec", SWITCH, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["matrix"]["cells"][0][1]["map_type"], "bus_addr");
}

#[test]
fn snapshot_of_a_spec_analyses_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("s.json");
    let (code, _, _) = p2pdma(&["snapshot", "--spec", ROOT_PORTS, "-o", snap.to_str().unwrap()]);
    assert_eq!(code, 0);
    let a = p2pdma(&["check", "--spec", ROOT_PORTS, "nvme-a", "nvme-b", "--json"]);
    let b = p2pdma(&["check", "--snapshot", snap.to_str().unwrap(), "nvme-a", "nvme-b", "--json"]);
    assert_eq!(a, b);
}

#[test]
fn bad_input_is_one_line_and_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "[[root_port]\nname=").unwrap();
    let truncated = dir.path().join("t.json");
    std::fs::write(&truncated, "{\"schema\": \"p2pdma-snapshot\", \"version\": 1, \"topo").unwrap();
    let newer = dir.path().join("n.json");
    std::fs::write(&newer, "{\"schema\": \"p2pdma-snapshot\", \"version\": 7}").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["check", "--spec", SWITCH, "nvme-a", "nvme-zz"], "unknown device `nvme-zz`"),
        (vec!["check", "--spec", SWITCH, "nvme-b", "nvme-a"], "not a P2P memory provider"),
        (vec!["check", "--spec", SWITCH, "nvme-a", "sw0.1"], "not a DMA client"),
        (vec!["check", "--spec", SWITCH, "nvme-a", "0000:0g:00.0"], "unknown device"),
        (vec!["topo", "--spec", bad_toml.to_str().unwrap()], "bad.toml: line 1"),
        (vec!["topo", "--spec", "/nonexistent.toml"], "/nonexistent.toml: No such file"),
        (vec!["topo", "--snapshot", truncated.to_str().unwrap()], "t.json: not valid JSON"),
        (vec!["topo", "--snapshot", newer.to_str().unwrap()], "newer than this p2pdma understands"),
        (vec!["topo", "--sysfs-root", "/nonexistent"], "/nonexistent/bus/pci/devices"),
    ];
    for (args, want) in cases {
        let (code, out, err) = p2pdma(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
}
