//! `p2pdma import`: the snapshot every command reads, the summary's JSON, exit codes (0,
//! 1 a cross-check disagrees, 2 bad input), standard input, and input text never reaching
//! the terminal raw.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::p2pdma;

const WRX90: &str = "fixtures/machines/threadripper-pro-wrx90-2xrtx6000ada-stelline/paste.md";
const ARC: &str = "fixtures/machines/intel-client-2xarc-b70-xe-refusal/dmesg-excerpt.txt";

#[test]
fn import_writes_a_snapshot_that_check_reads_with_exit_3_for_unread_acs() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("machine.json");
    let snap = snap.to_str().unwrap();
    let (code, out, err) = p2pdma(&["import", WRX90, "-o", snap]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("113 devices, 4 host bridge(s)"), "{out}");
    assert!(out.contains("nvidia-smi topo -m: 16 cell(s) agree, 0 disagree"), "{out}");
    assert!(out.contains("sudo lspci -vvv -s"), "{out}");
    // The ConnectX-7's ports: the root port's ACS was not read, so never 0.
    let (code, out, _) = p2pdma(&["check", "--snapshot", snap, "21:00.0", "21:00.1"]);
    assert_eq!(code, 3, "{out}");
    // The GPUs: through the host bridge, certain for an AMD Zen CPU.
    let (code, out, _) = p2pdma(&["check", "--snapshot", snap, "c1:00.0", "c2:00.0"]);
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = p2pdma(&["topo", "--snapshot", snap, "--class", "gpu,nic", "--json"]);
    assert_eq!(code, 0, "{out}");
    // Provenance rides along in the snapshot.
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(snap).unwrap()).unwrap();
    assert_eq!(doc["schema"], "p2pdma-snapshot");
    let facts = doc["import"]["facts"].as_array().unwrap();
    assert!(facts
        .iter()
        .any(|f| f["subject"] == "machine" && f["fact"] == "cpu_vendor" && f["origin"]["format"] == "lscpu"));
}

#[test]
fn import_json_is_the_report() {
    let (code, out, _) = p2pdma(&["import", WRX90, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["devices"], 113);
    assert_eq!(v["crosscheck"]["path_classes"]["agree"], 16);
    assert!(v["inputs"][0]["skipped_lines"].as_u64().unwrap() > 100);
    assert!(v["unknown"].as_array().unwrap().iter().any(|u| u["fact"] == "acs"));
}

#[test]
fn import_exits_1_when_the_kernel_log_disagrees() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree.txt");
    // Both GPUs below one switch: p2pdma says bus address, the kernel refused the pair.
    std::fs::write(
        &tree,
        "-[0000:00]-+-00.0  Intel Corporation Device [8086:7d1b]\n           \\-06.0-[01-07]----00.0-[02-07]--+-00.0-[03]----00.0  Intel Corporation Device [8086:e223]\n                                           \\-01.0-[07]----00.0  Intel Corporation Device [8086:e223]\n",
    )
    .unwrap();
    let (code, out, _) = p2pdma(&["import", ARC, tree.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("kernel P2PDMA lines: 0 agree, 1 disagree"), "{out}");
    assert!(out.contains("DISAGREE"), "{out}");
}

#[test]
fn import_reads_standard_input() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_p2pdma"))
        .args(["import", "-", "--json"])
        .current_dir("../..")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read("../../fixtures/machines/power8-minsky-4xp100-multidomain-hwloc/lstopo.xml").unwrap();
    child.stdin.take().unwrap().write_all(&text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["host_bridges"].as_array().unwrap().len(), 4);
}

#[test]
fn import_refuses_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let prose = dir.path().join("prose.txt");
    std::fs::write(&prose, "just some words\nand more\n").unwrap();
    let bin = dir.path().join("bin");
    std::fs::write(&bin, [0u8, 1, 2, 3]).unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    for (file, want) in [
        (prose.to_str().unwrap(), "no known output"),
        (bin.to_str().unwrap(), "binary"),
        (empty.to_str().unwrap(), "empty"),
        (dir.path().to_str().unwrap(), "directory"),
        ("/nonexistent/paste.md", "No such file"),
    ] {
        let (code, out, err) = p2pdma(&["import", file]);
        assert_eq!(code, 2, "{file}: {out}{err}");
        assert!(err.contains(want), "{file}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}

#[test]
fn import_escapes_control_characters_from_input() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("evil\x1b[31m.txt");
    std::fs::write(&f, "00:1f.0 Ethernet controller: Evil\x1b]0;pwned\x07 NIC\n\tCapabilities: <access denied>\n")
        .unwrap();
    let (code, out, err) = p2pdma(&["import", f.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
    assert!(out.contains("\\u{1b}"), "{out}");
}
