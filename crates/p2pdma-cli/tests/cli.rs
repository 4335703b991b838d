//! The binary's contract: exit codes, JSON fields, one-line errors on bad input.

mod common;

use common::{p2pdma, ROOT_PORTS, SWITCH};

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

/// Without root, ACS past config offset 64 is unreadable: a verdict that rests on it is not
/// a yes. A snapshot whose switch ports have unknown ACS stands in for such a machine.
#[test]
fn check_exits_three_when_unreadable_acs_could_change_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    // The snapshot of a topology file with every device's ACS unknown, as read without root.
    let unreadable = |spec: &str| {
        let snap = dir.path().join(format!("{}.json", spec.len()));
        let (code, _, _) = p2pdma(&["snapshot", "--spec", spec, "-o", snap.to_str().unwrap()]);
        assert_eq!(code, 0);
        let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&snap).unwrap()).unwrap();
        for d in v["topology"]["devices"].as_array_mut().unwrap() {
            d["acs"] = serde_json::json!({ "state": "unknown" });
        }
        std::fs::write(&snap, v.to_string()).unwrap();
        snap.to_str().unwrap().to_string()
    };
    let snap = unreadable(SWITCH);
    let (code, out, _) = p2pdma(&["check", "--snapshot", &snap, "nvme-a", "nvme-b", "--json"]);
    assert_eq!(code, 3, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["map_type"].as_str(), v["certain"].as_bool()), (Some("bus_addr"), Some(false)));
    let (code, out, _) = p2pdma(&["check", "--snapshot", &snap, "nvme-a", "nvme-b"]);
    assert_eq!(code, 3);
    assert!(out.contains("UNCERTAIN") && out.contains("0000:01:00.0") && out.contains("run as root"), "{out}");
    // Unreadable ACS that cannot change the answer leaves it certain: across root ports, no.
    let snap = unreadable(ROOT_PORTS);
    let (code, out, _) = p2pdma(&["check", "--snapshot", &snap, "nvme-a", "nvme-b", "--json"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["certain"], true);
    // ACS read: certain, exit 0.
    let (code, out, _) = p2pdma(&["check", "--spec", SWITCH, "nvme-a", "nvme-b", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["certain"], true);
}

/// A copy of `from` at `to`, symbolic links kept as links.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let t = std::fs::symlink_metadata(&src).unwrap().file_type();
        if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if t.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The real guest's sysfs as a user reads it: the kernel gives the first 64 bytes of
/// `config` to anyone but root, so ACS is unknown and the switch verdict is uncertain.
#[test]
fn check_of_the_real_guest_tree_read_without_root_exits_three() {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(std::path::Path::new("../p2pdma-lab/fixtures/switch"), dir.path());
    let mut stack = vec![dir.path().join("sys/devices")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let t = std::fs::symlink_metadata(&p).unwrap().file_type();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_file() && p.file_name().unwrap() == "config" {
                let head = std::fs::read(&p).unwrap()[..64].to_vec();
                std::fs::write(&p, head).unwrap();
            }
        }
    }
    let (sys, proc) = (dir.path().join("sys"), dir.path().join("proc"));
    let base = ["check", "--sysfs-root", sys.to_str().unwrap(), "--proc-root", proc.to_str().unwrap()];
    let mut args = base.to_vec();
    args.extend(["03:00.0", "04:00.0", "--json"]);
    let (code, out, err) = p2pdma(&args);
    assert_eq!(code, 3, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["map_type"].as_str(), v["certain"].as_bool()), (Some("bus_addr"), Some(false)));
    assert!(v["notes"][0].as_str().unwrap().contains("run as root"), "{v}");
    // The untouched tree (read as root when captured): certain, exit 0.
    let root = std::path::Path::new("crates/p2pdma-lab/fixtures/switch");
    let (code, out, err) = p2pdma(&[
        "check",
        "--sysfs-root",
        root.join("sys").to_str().unwrap(),
        "--proc-root",
        root.join("proc").to_str().unwrap(),
        "03:00.0",
        "04:00.0",
    ]);
    assert_eq!(code, 0, "{out}{err}");
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
        (vec!["check", "--spec", SWITCH, "sw0.1", "nvme-a"], "switch downstream port, not an endpoint with memory"),
        (vec!["topo", "--spec", SWITCH, "--class", "fpga"], "--class: unknown device class `fpga`"),
        (vec!["topo", "--spec", SWITCH, "--device", "nvme-zz"], "unknown device `nvme-zz`"),
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

/// `copy` and `bench` on regular files of this machine (host memory; the lab tests cover P2P).
#[test]
fn copy_on_files_verifies_and_refuses_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let (s, d) = (src.to_str().unwrap(), dst.to_str().unwrap());

    let (code, out, err) =
        p2pdma(&["copy", s, d, "--src-offset", "4K", "--length", "20K", "--chunk", "8K", "--verify", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["outcome"].as_str(), v["bytes"].as_u64()), (Some("copied"), Some(20480)));
    assert_eq!(v["route"]["memory"], "host");
    assert_eq!(v["verify"]["equal"], true);
    assert_eq!(v["verify"]["read_back"], "in_flight", "through host memory each chunk is read back as written");
    assert_eq!(std::fs::read(&dst).unwrap(), &data[4096..4096 + 20480], "a new file holds exactly the range");

    // Bad input: exit 2 with one line naming the file and the rule.
    for (args, needle) in [
        (vec!["--src-offset", "100"], "not a multiple of its logical block size"),
        (vec!["--length", "2M"], "run past its end"),
        (vec!["--chunk", "1000"], "--chunk 1000 must be a positive multiple"),
        (vec!["--via", "0000:99:00.0"], "unknown device"),
    ] {
        let mut all = vec!["copy", s, d];
        all.extend(args);
        let (code, _, err) = p2pdma(&all);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(needle) && err.lines().count() == 1, "{err}");
    }
    let (code, _, err) = p2pdma(&["copy", s, s, "--dst-offset", "4K"]);
    assert!(code == 2 && err.contains("are the same storage"), "{err}");
    let (code, _, err) = p2pdma(&["copy", "/nonexistent", d]);
    assert!(code == 2 && err.contains("/nonexistent"), "{err}");

    // No P2P memory here: --require-p2p refuses (exit 1) and writes nothing.
    std::fs::remove_file(&dst).unwrap();
    let (code, out, _) = p2pdma(&["copy", s, d, "--require-p2p", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((code, v["outcome"].as_str()), (1, Some("refused")));
    assert!(!dst.exists(), "a refused copy creates nothing");

    // Issue 22 item 7: on a kernel without P2PDMA the refusal names the cause.
    let root = tempfile::tempdir().unwrap();
    let proc = root.path().join("proc");
    std::fs::create_dir_all(proc.join("sys/kernel")).unwrap();
    std::fs::create_dir_all(root.path().join("boot")).unwrap();
    std::fs::write(proc.join("sys/kernel/osrelease"), "6.1.0-nop2p\n").unwrap();
    std::fs::write(root.path().join("boot/config-6.1.0-nop2p"), "# CONFIG_PCI_P2PDMA is not set\n").unwrap();
    let (code, out, _) = p2pdma(&["copy", "--proc-root", proc.to_str().unwrap(), s, d, "--require-p2p", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((code, v["outcome"].as_str()), (1, Some("refused")));
    let why = v["refused"][0].as_str().unwrap_or_default();
    assert!(why.contains("6.1.0-nop2p is built without CONFIG_PCI_P2PDMA"), "{v}");
    assert!(!dst.exists(), "a refused copy creates nothing");

    let (code, out, err) =
        p2pdma(&["bench", s, "--ops", "read", "--depth", "1,4", "--chunk", "64K", "--size", "1M", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j["p2pdma"]["bytes"] == 1 << 20
        && j["read"]["clat_ns"]["N"] == 16
        && j["read"]["clat_ns"]["percentile"]["90.000000"].as_u64().unwrap()
            >= j["read"]["clat_ns"]["percentile"]["50.000000"].as_u64().unwrap()));
    let (code, _, err) = p2pdma(&["bench", s, "--ops", "write"]);
    assert!(code == 2 && err.contains("need --dst"), "{err}");
}

const GROUPS: &str = "examples/topologies/iommu-groups.toml";

#[test]
fn topo_json_fills_iommu_groups_and_says_they_are_predicted() {
    let (code, out, _) = p2pdma(&["topo", "--spec", GROUPS, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["devices"].as_array().unwrap().iter().all(|d| d["iommu_group"].is_u64()), "{out}");
    assert_eq!(v["iommu_groups"]["source"], "predicted");
    assert!(v["iommu_groups"]["uncertain"].as_array().unwrap().is_empty());
    // IOMMU off: no groups, and nothing claims otherwise.
    let v: serde_json::Value = serde_json::from_str(&p2pdma(&["topo", "--spec", SWITCH, "--json"]).1).unwrap();
    assert!(v["devices"].as_array().unwrap().iter().all(|d| d["iommu_group"].is_null()) && v["iommu_groups"].is_null());
    let (_, text, _) = p2pdma(&["topo", "--spec", GROUPS]);
    assert!(text.contains("IOMMU groups (predicted from the kernel's rules): 7 groups, 3 shared"), "{text}");
}

#[test]
fn check_names_the_devices_each_acs_fix_puts_in_one_group() {
    let (code, out, _) = p2pdma(&["check", "--spec", GROUPS, "nvme-a", "nvme-b", "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = &v["clients"][0];
    let fixes: Vec<&str> = c["fix_costs"].as_array().unwrap().iter().map(|f| f["fix"].as_str().unwrap()).collect();
    assert_eq!(
        fixes,
        [
            "pci=disable_acs_redir=0000:00:10.0",
            "pci=config_acs=x0100x1@0000:00:10.0",
            "setpci -s 0000:00:10.0 0x14e.w=0000:002c"
        ]
    );
    for f in c["fix_costs"].as_array().unwrap() {
        assert_eq!(f["merges"][0]["groups"], serde_json::json!([1, 3]));
        assert_eq!(f["merges"][0]["devices"], serde_json::json!(["0000:00:10.0", "0000:01:00.0", "0000:01:00.1"]));
    }
    assert!(c["fix_costs_note"].as_str().unwrap().starts_with("no fix keeps these groups apart"));
    let (_, text, _) = p2pdma(&["check", "--spec", GROUPS, "nvme-a", "nvme-b"]);
    assert!(
        text.contains("cost of pci=disable_acs_redir=0000:00:10.0: IOMMU groups 1 + 3 become one (0000:00:10.0, 0000:01:00.0, 0000:01:00.1)"),
        "{text}"
    );
    // IOMMU off: the fix costs no groups, and says so.
    let (_, out, _) = p2pdma(&["check", "--spec", "examples/topologies/root-ports.toml", "nvme-a", "nvme-b"]);
    assert!(!out.contains("cost of"), "no ACS redirect, no ACS fix: {out}");
}

#[test]
fn kernel_params_show_verdicts_acs_and_groups_after_the_change() {
    let fix = "pci=disable_acs_redir=0000:00:10.0;0000:00:11.0";
    let (code, out, err) = p2pdma(&["check", "--spec", GROUPS, "nvme-a", "nvme-b", "--kernel-params", fix, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["map_type"], "bus_addr");
    let (_, out, _) = p2pdma(&["topo", "--spec", GROUPS, "--kernel-params", fix, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["iommu_groups"]["kernel_params"], fix);
    let rp = v["devices"].as_array().unwrap().iter().find(|d| d["bdf"] == "0000:00:11.0").unwrap();
    assert_eq!(rp["acs"]["ctrl"], 0, "Configured ACS to 0x0000, as the lab's kernel logs");
    let in_rp_group = v["devices"].as_array().unwrap().iter().filter(|d| d["iommu_group"] == rp["iommu_group"]).count();
    assert_eq!(in_rp_group, 6, "the root port joins the whole switch subtree");
    // The same what-if from a snapshot of the machine as booted.
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("s.json");
    assert_eq!(p2pdma(&["snapshot", "--spec", GROUPS, "-o", snap.to_str().unwrap()]).0, 0);
    let (_, from_snap, _) = p2pdma(&["topo", "--snapshot", snap.to_str().unwrap(), "--kernel-params", fix, "--json"]);
    let s: serde_json::Value = serde_json::from_str(&from_snap).unwrap();
    assert_eq!(s["devices"], v["devices"]);
}

#[test]
fn kernel_params_the_kernel_ignores_are_ignored_and_said_never_fatal() {
    let before: serde_json::Value = serde_json::from_str(&p2pdma(&["topo", "--spec", GROUPS, "--json"]).1).unwrap();
    for (params, said) in [
        ("pci=disable_acs_redir=0000:00:1e.0", "matches no device on this machine: the kernel ignores it silently"),
        ("pci=disable_acs_redir=zz;0000:00:10.0", "PCI: Can't parse ACS command line parameter"),
        ("pci=config_acs=10z@0000:00:10.0", "Invalid ACS flags... Ignoring"),
        ("pci=config_acs=0000:00:10.0", "ACS Flags missing"),
        ("pci=config_acs=1000000000@0000:00:10.0", "Invalid ACS flags specified"),
        ("pcie_acs_override=downstream,multifunction", "out-of-tree patch"),
        ("pci=disable_acs_redir=pci:1b36:0010", "has no ACS capability"),
    ] {
        let (code, out, err) = p2pdma(&["topo", "--spec", GROUPS, "--kernel-params", params, "--json"]);
        assert_eq!(code, 0, "{params}: {err}");
        assert!(err.contains(said) && err.starts_with("p2pdma: note: --kernel-params: "), "{params}: {err}");
        assert!(!err.contains("panicked"));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["devices"], before["devices"], "{params}: nothing changes");
        assert!(v["iommu_groups"]["notes"][0].as_str().unwrap().contains(said), "{params}");
    }
    let (code, _, err) = p2pdma(&["copy", "--kernel-params", "pci=noats", "a", "b"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--kernel-params (a what-if) does not apply"), "{err}");
}

#[test]
fn lab_refuses_a_dynamic_guest_binary_before_booting() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_p2pdma"))
        .env("P2PDMA_GUEST_BINARY", "/bin/sh")
        .args(["lab", "run", SWITCH, "--", "true"])
        .current_dir("../..")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/bin/sh is dynamically linked") && err.contains("scripts/build-static"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

const GPU_SERVER: &str = "examples/topologies/gpu-server.toml";
const CAPTURE_BOX: &str = "examples/topologies/capture-box.toml";

/// GPUs publish no P2P memory, yet `check GPU NIC` answers with the verdict: 0 or 1, never 2.
#[test]
fn check_gpu_nic_on_the_gpu_machines_answers_with_the_verdict() {
    for (spec, gpu, nic, code) in
        [(GPU_SERVER, "gpu0", "nic0", 0), (GPU_SERVER, "gpu7", "nic0", 0), (CAPTURE_BOX, "gpu0", "nic0", 0)]
    {
        let (got, out, err) = p2pdma(&["check", "--spec", spec, gpu, nic, "--json"]);
        assert_eq!(got, code, "{spec} {gpu} {nic}: {err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["publishes"], false);
        assert_eq!(v["memory_bars"][1]["index"], 1);
        assert_eq!(v["memory_bars"][1]["is_64"], true);
        assert_eq!(v["memory_bars"][1]["prefetchable"], true);
    }
    let (code, out, _) = p2pdma(&["check", "--spec", CAPTURE_BOX, "gpu0", "nic0"]);
    assert_eq!(code, 0);
    assert!(out.contains("publishes P2P memory: no; memory BARs: BAR0 16.0 MiB, BAR1 256.0 MiB 64-bit pref"), "{out}");
}

#[test]
fn topo_json_has_every_pair_with_both_layers_and_filters() {
    let (code, out, _) = p2pdma(&["topo", "--spec", GPU_SERVER, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let pairs = v["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 16 * 16);
    let first = &pairs[1];
    for key in ["provider", "client", "map_type", "distance", "path_class", "certain"] {
        assert!(!first[key].is_null(), "{key}: {first}");
    }
    assert_eq!(v["affinity"][0]["numa_node"], 0);
    let (code, out, _) = p2pdma(&["topo", "--spec", GPU_SERVER, "--json", "--class", "gpu,nic"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["matrix"]["clients"].as_array().unwrap().len(), 12);
    let (code, out, _) = p2pdma(&["topo", "--spec", GPU_SERVER, "--device", "gpu0", "--device", "nic3"]);
    assert_eq!(code, 0);
    // One matrix: path class / verdict, the short names GPU0 and NIC3.
    assert!(out.contains("\nGPU0         X   SYS/HB8\n") && out.contains("\nNIC3   SYS/HB8         X\n"), "{out}");
}

#[test]
fn find_any_bar_ranks_memory_bars_beside_published_memory() {
    let (code, out, _) = p2pdma(&["find", "--spec", CAPTURE_BOX, "nic0", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["provider"].as_str(), v["candidates"].as_array().unwrap().len()), (Some("0000:0c:00.0"), 1));
    let (code, out, _) = p2pdma(&["find", "--spec", CAPTURE_BOX, "nic0", "gpu0", "--any-bar", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // nic0 and gpu0 share sw0 (redirected by ACS: through the host bridge, distance 4 each).
    assert_eq!(v["candidates"][0]["distance"], 4);
    assert_eq!(v["candidates"][0]["publishes"], false);
    assert_eq!(v["tied"].as_array().unwrap().len(), 2, "nic0 and gpu0 tie");
    assert!(
        v["reasons"][1].as_str().unwrap_or_default().contains("only sees published")
            || out.contains("only sees published")
    );
}

#[test]
fn addr_prints_the_bus_address_and_refuses_bad_bars() {
    let (code, out, _) = p2pdma(&["addr", "--spec", CAPTURE_BOX, "gpu1", "nvme0", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["route"], "bus_address");
    assert_eq!(v["dma_address"], v["bus_address"]);
    let (code, out, _) = p2pdma(&["addr", "--spec", CAPTURE_BOX, "nic1", "fpga0"]);
    assert_eq!(code, 0);
    assert!(out.contains("DMA address: none fixed") && out.contains("VFIO"), "{out}");
    for (args, want) in [
        (vec!["gpu1", "gpu0:2"], "gpu0 (0000:03:00.0) has no BAR 2"),
        (vec!["gpu1", "gpu0:1+1G"], "offset 0x40000000 is past the BAR's end"),
        (vec!["sw0", "gpu0"], "not a DMA client"),
        (vec!["gpu1", "gpu0:9"], "BAR `9` is not 0 to 5"),
    ] {
        let mut a = vec!["addr", "--spec", CAPTURE_BOX];
        a.extend(args);
        let (code, out, err) = p2pdma(&a);
        assert_eq!(code, 2, "{a:?}");
        assert!(out.is_empty() && err.contains(want) && err.trim_end().lines().count() == 1, "{a:?}: {err}");
    }
}

/// ACS that could not be read (a snapshot taken without root): the cells whose verdict
/// rests on it are marked, `BUS2?` in the text, `certain: false` in `pairs`.
#[test]
fn topo_marks_cells_that_rest_on_unreadable_acs() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("s.json");
    let (code, _, _) =
        p2pdma(&["snapshot", "--spec", "examples/topologies/iommu-acs.toml", "-o", snap.to_str().unwrap()]);
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&snap).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    for d in v["topology"]["devices"].as_array_mut().unwrap() {
        d["acs"] = serde_json::json!({ "state": "unknown" });
    }
    std::fs::write(&snap, v.to_string()).unwrap();
    let (code, out, err) = p2pdma(&["topo", "--snapshot", snap.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("BUS2?"), "{out}");
    let (_, out, _) = p2pdma(&["topo", "--snapshot", snap.to_str().unwrap(), "--json"]);
    let t: serde_json::Value = serde_json::from_str(&out).unwrap();
    let uncertain: Vec<&serde_json::Value> =
        t["pairs"].as_array().unwrap().iter().filter(|p| p["certain"] == false).collect();
    assert_eq!(uncertain.len(), 2, "nvme-a/nvme-b both ways: {uncertain:?}");
    assert_eq!(t["matrix"]["uncertain"].as_array().unwrap().len(), 2);
}

/// Runs the binary in `dir`: exit status, stdout, stderr.
fn p2pdma_in(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_p2pdma")).args(args).current_dir(dir).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Issue 12: operands that cannot be mistaken, requests that create nothing when refused,
/// one writer per file, the route before the first byte, `setup_seconds`.
#[test]
fn copy_operands_ranges_and_locks() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.path().join("src.bin"), &data).unwrap();

    // Bare words: an existing file, and a new destination file, both in the current directory.
    let (code, out, err) = p2pdma_in(dir.path(), &["copy", "src.bin", "dst.bin", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(dir.path().join("dst.bin")).unwrap(), data);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (setup, seconds) = (v["setup_seconds"].as_f64().unwrap(), v["seconds"].as_f64().unwrap());
    assert!(setup > 0.0 && seconds > 0.0, "{out}");

    // Text output says the route before the outcome.
    let (code, out, err) = p2pdma_in(dir.path(), &["copy", "src.bin", "dst2.bin"]);
    assert_eq!(code, 0, "{err}");
    let (path, copied) = (out.find("path: host memory").unwrap(), out.find("copied 1048576 bytes").unwrap());
    assert!(path < copied, "{out}");

    // A file named like a device of this machine (a PCI address) is ambiguous: exit 2,
    // both spellings named, nothing written.
    if let Some(bdf) = std::fs::read_dir("/sys/bus/pci/devices").ok().and_then(|mut d| d.next()).and_then(|e| e.ok()) {
        let name = bdf.file_name().to_string_lossy().into_owned();
        std::fs::write(dir.path().join(&name), b"").unwrap();
        let (code, _, err) = p2pdma_in(dir.path(), &["copy", "src.bin", &name]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("ambiguous") && err.contains(&format!("`./{name}`")), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(std::fs::metadata(dir.path().join(&name)).unwrap().len(), 0, "nothing written");
    }
    let (code, _, err) = p2pdma_in(dir.path(), &["copy", "no-such-source", "x.bin"]);
    assert!(code == 2 && err.contains("no such file here and no such device"), "{err}");
    assert!(!dir.path().join("x.bin").exists());

    // Offsets far past an end, unaligned or overflowing requests: exit 2, nothing created.
    for args in [
        vec!["--src-offset", "1G"],
        vec!["--dst-offset", "1G"],
        vec!["--dst-offset", "100"],
        vec!["--length", "1000"],
        vec!["--length", "0"],
        vec!["--depth", "0"],
        vec!["--chunk", "4097"],
    ] {
        let mut all = vec!["copy", "src.bin", "new.bin"];
        all.extend(&args);
        let (code, _, err) = p2pdma_in(dir.path(), &all);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(!dir.path().join("new.bin").exists(), "{args:?} created the destination");
    }
    // An existing destination file may not get a hole either.
    let (code, _, err) = p2pdma_in(dir.path(), &["copy", "src.bin", "dst.bin", "--dst-offset", "2M"]);
    assert!(code == 2 && err.contains("hole"), "{err}");
}

/// Issue 24: a copy without flags runs at the benchmarked defaults (one place:
/// `copy_plan::DEFAULT_*`), `--help` says them, and each flag still overrides its own.
#[test]
fn copy_without_flags_runs_the_benchmarked_defaults() {
    use p2pdma_core::copy_plan::{DEFAULT_CHUNK, DEFAULT_DEPTH, DEFAULT_READS};
    let dir = tempfile::tempdir().unwrap();
    // Enough chunks for the whole default depth (sparse: the test copies holes).
    let src = std::fs::File::create(dir.path().join("src.bin")).unwrap();
    src.set_len((DEFAULT_DEPTH * DEFAULT_CHUNK) as u64).unwrap();
    let report = |args: &[&str]| {
        let (code, out, err) = p2pdma_in(dir.path(), &[&["copy", "src.bin", "dst.bin", "--json"], args].concat());
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        [&v["depth"], &v["reads"], &v["chunk"]].map(|n| n.as_u64().unwrap() as usize)
    };
    assert_eq!(report(&[]), [DEFAULT_DEPTH, DEFAULT_READS, DEFAULT_CHUNK]);
    assert_eq!(report(&["--depth", "3", "--reads", "0", "--chunk", "64K"]), [3, 3, 65536], "reads 0: up to the depth");

    let (code, help, err) = p2pdma(&["copy", "--help"]);
    assert_eq!(code, 0, "{err}");
    for (flag, default) in [("--depth", DEFAULT_DEPTH), ("--reads", DEFAULT_READS), ("--chunk", DEFAULT_CHUNK)] {
        let from = help.find(&format!("{flag} <")).unwrap_or_else(|| panic!("{flag} in {help}"));
        let shown = help[from..].find("[default: ").map(|i| &help[from + i + 10..]).unwrap();
        assert!(shown.starts_with(&format!("{default}]")), "{flag}: {}", &shown[..20.min(shown.len())]);
    }
}

/// A second writer of the same file is refused while the first copies; SIGTERM during a
/// copy stops it with exit 143, the outcome `interrupted` and a destination prefix equal to
/// the source.
#[test]
fn copy_is_locked_and_interruptible() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let len = 128usize << 20;
    let src = dir.path().join("src.bin");
    let data: Vec<u8> = (0..len / 4096).flat_map(|i| [(i % 251) as u8; 4096]).collect();
    std::fs::write(&src, &data).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_p2pdma"))
        .args(["copy", "src.bin", "dst.bin", "--sync", "--chunk", "4K"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The route is printed before the first byte: the copy is under way once it is here.
    let route = lines.by_ref().map(|l| l.unwrap()).find(|l| l.starts_with("path: ")).expect("the route first");
    assert_eq!(route, "path: host memory");
    let (code, out, err) = p2pdma_in(dir.path(), &["copy", "src.bin", "dst.bin", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    assert_eq!((code, v["outcome"].as_str()), (1, Some("refused")), "{out}{err}");
    assert!(v["refused"][0].as_str().unwrap().contains("another writer holds it"), "{out}");

    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{rest:?}");
    let text = rest.join("\n");
    assert!(text.contains("INTERRUPTED after") && text.contains("stopped by SIGTERM"), "{text}");
    let written: u64 = text
        .split("destination written up to offset ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(written < len as u64, "interrupted before the end: {text}");
    let dst = std::fs::read(dir.path().join("dst.bin")).unwrap();
    assert_eq!(&dst[..written as usize], &data[..written as usize], "the written prefix is the source's");
}

/// SIGTERM during `bench`: the run under way drains and is marked, later runs are not
/// started, exit 143 with the signal in the JSON.
#[test]
fn bench_is_interruptible() {
    let dir = tempfile::tempdir().unwrap();
    let len = 64usize << 20;
    std::fs::write(dir.path().join("src.bin"), vec![7u8; len]).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_p2pdma"))
        .args(["bench", "src.bin", "--dst", "dst.bin", "--ops", "read,write,copy", "--depth", "1,2"])
        .args(["--chunk", "4K", "--size", "64M", "--json"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(143), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["p2pdma"]["signal"], "SIGTERM", "{text}");
    let jobs = v["jobs"].as_array().unwrap();
    assert!(jobs.len() < 6, "later runs were not started: {text}");
    let last = &jobs[jobs.len() - 1];
    assert_eq!((last["error"].as_i64(), last["p2pdma"]["interrupted"].as_bool()), (Some(4), Some(true)), "{text}");
}

/// Issue 22's machine: a two-socket Intel server, host bridges not on the whitelist, the GPU
/// and the NIC (and an NVMe drive) on root ports of one host bridge.
fn two_socket_intel(gpu_id: &str, iommu: bool, switch: bool) -> String {
    let parent = |i: u32| if switch { format!("sw0.{i}") } else { format!("rp{i}") };
    let mut s = format!(
        "name = \"two-socket-intel\"\n[machine]\ncpu = \"intel\"\niommu = {iommu}\n\
         [[host_bridge]]\nname = \"hb0\"\nid = \"8086:0998\"\nbus = 0x00\nnuma_node = 0\n\
         [[host_bridge]]\nname = \"hb1\"\nid = \"8086:0998\"\nbus = 0x80\nnuma_node = 1\n"
    );
    for i in 0..4 {
        s += &format!("[[root_port]]\nname = \"rp{i}\"\nhost_bridge = \"hb0\"\nslot = 0x{:x}\n", 0x10 + i);
    }
    if switch {
        s += "[[switch]]\nname = \"sw0\"\nparent = \"rp0\"\nports = 4\nacs = false\n";
    }
    s += &format!("[[endpoint]]\nname = \"gpu0\"\nkind = \"gpu\"\nid = \"{gpu_id}\"\nparent = \"{}\"\n", parent(0));
    s += &format!("[[endpoint]]\nname = \"nic0\"\nkind = \"nic\"\nid = \"15b3:1021\"\nparent = \"{}\"\n", parent(1));
    s += &format!("[[endpoint]]\nname = \"nvme0\"\nkind = \"nvme\"\ncmb_mib = 16\nparent = \"{}\"\n", parent(2));
    s += &format!("[[endpoint]]\nname = \"nvme1\"\nkind = \"nvme\"\nparent = \"{}\"\n", parent(3));
    s
}

fn stacks_of(spec: &str, provider: &str, clients: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, spec).unwrap();
    let mut args = vec!["check", "--spec", path.to_str().unwrap(), provider];
    args.extend(clients);
    args.push("--json");
    let (code, out, err) = p2pdma(&args);
    assert!(code <= 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["stacks"].as_array().unwrap().clone()
}

fn stack<'a>(stacks: &'a [serde_json::Value], name: &str, client: &str) -> &'a serde_json::Value {
    stacks
        .iter()
        .find(|s| s["stack"] == name && s["client"].as_str().unwrap().ends_with(client))
        .unwrap_or_else(|| panic!("{name} for {client} missing: {stacks:?}"))
}

#[test]
fn check_stacks_nvidia_allows_what_p2pdma_refuses_on_root_ports() {
    // Issue 22's acceptance: nvidia and nvidia_peermem loaded (and nvmet_rdma).
    let spec = two_socket_intel("10de:2330", false, false)
        .replace("iommu = false\n", "iommu = false\nmodules = [\"nvidia\", \"nvidia_peermem\", \"nvmet_rdma\"]\n");
    let s = stacks_of(&spec, "gpu0", &["nic0", "nvme0"]);
    let (nic, nvme) = (":02:00.0", ":03:00.0");
    for (name, client) in [("block", nvme), ("vfio_dmabuf", nic)] {
        assert_eq!(stack(&s, name, client)["allowed"], false, "{name}");
        assert!(stack(&s, name, client)["log"].as_str().unwrap().contains("cannot be used for peer-to-peer DMA"));
    }
    // nvmet serves from the provider's p2pmem pool: a GPU without one is not its provider.
    let n = stack(&s, "nvmet_rdma", nic);
    assert_eq!((&n["allowed"], &n["log"]), (&serde_json::Value::Null, &serde_json::Value::Null));
    assert!(n["reason"].as_str().unwrap().starts_with("does not apply"), "{n}");
    let s2 = stacks_of(&spec, "nvme0", &["nic0"]);
    let n = stack(&s2, "nvmet_rdma", nic);
    assert_eq!((&n["allowed"], &n["route"]), (&false.into(), &"host_memory".into()), "the drive's CMB pool: refused");
    assert!(n["log"].as_str().unwrap().contains("cannot be used for peer-to-peer DMA"));
    let n = stack(&s, "nvidia_peermem", nic);
    assert_eq!(
        (&n["allowed"], &n["consults_p2pdma"], &n["log"], &n["route"]),
        (&true.into(), &false.into(), &serde_json::Value::Null, &"root_complex".into())
    );
    let why = n["reason"].as_str().unwrap();
    assert!(why.contains("ACS") && why.contains("IOMMU") && why.contains("root complex"), "{why}");
    let g = stack(&s, "nccl_gdr", nic);
    assert_eq!(g["allowed"], false);
    assert!(g["reason"].as_str().unwrap().contains("path PHB"), "{g}");
    assert_eq!(stack(&s, "io_uring_fixed", nvme)["allowed"], false);
}

#[test]
fn check_stacks_amdgpu_moves_the_buffer_to_system_memory() {
    let s = stacks_of(&two_socket_intel("1002:740f", false, false), "gpu0", &["nic0"]);
    let a = stack(&s, "amdgpu", ":02:00.0");
    assert_eq!(
        (&a["allowed"], &a["route"], &a["on_refusal"]),
        (&false.into(), &"host_memory".into(), &"host_memory".into())
    );
    assert!(a["reason"].as_str().unwrap().contains("system memory"));
    assert!(s.iter().all(|x| !x["stack"].as_str().unwrap().starts_with("nvidia")));
}

#[test]
fn check_stacks_translating_iommu_sends_gpus_through_the_root_complex_below_one_switch() {
    let spec = two_socket_intel("1002:740f", true, true);
    let s = stacks_of(&spec, "gpu0", &["nic0"]);
    assert_eq!(stack(&s, "amdgpu", ":00.0")["allowed"], true);
    assert_eq!(stack(&s, "amdgpu", ":00.0")["route"], "root_complex");
    let s = stacks_of(&spec, "nvme0", &["nvme1"]);
    assert_eq!(stack(&s, "block", ":00.0")["route"], "bus_address");
    let s = stacks_of(&two_socket_intel("10de:2330", true, true), "gpu0", &["nic0"]);
    assert_eq!(stack(&s, "nvidia_peermem", ":00.0")["route"], "root_complex");
    let s = stacks_of(&two_socket_intel("10de:2330", false, true), "gpu0", &["nic0"]);
    assert_eq!(stack(&s, "nvidia_peermem", ":00.0")["route"], "bus_address");
    assert_eq!(stack(&s, "nccl_gdr", ":00.0")["allowed"], true);
}

#[test]
fn check_stack_narrows_the_block_and_refuses_unknown_names() {
    let (code, out, _) = p2pdma(&["check", "--spec", GPU_SERVER, "gpu0", "nic0", "--stack", "nvidia_peermem"]);
    assert_eq!(code, 0);
    assert!(out.contains("\nstacks (who maps the pair") && out.contains("  nvidia_peermem for "), "{out}");
    assert!(!out.contains("  nccl_gdr for "), "{out}");
    let (code, out, err) = p2pdma(&["check", "--spec", GPU_SERVER, "gpu0", "nic0", "--stack", "rdma", "--json"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("unknown stack `rdma`") && err.contains("nccl_gdr"), "{err}");
}

fn stacks_with(spec: &str, provider: &str, clients: &[&str], extra: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, spec).unwrap();
    let mut args = vec!["check", "--spec", path.to_str().unwrap(), provider];
    args.extend(clients);
    args.extend(extra);
    p2pdma(&args)
}

#[test]
fn check_stacks_nccl_env_from_the_flag_and_the_topology_file() {
    // ncclTopoCheckGdr / ncclGetLevel: NCCL_NET_GDR_LEVEL=PHB allows the PHB path
    let spec = two_socket_intel("10de:2330", false, false);
    let gdr = |spec: &str, extra: &[&str]| {
        let mut args = vec!["--json"];
        args.extend(extra);
        let (code, out, err) = stacks_with(spec, "gpu0", &["nic0"], &args);
        assert!(code <= 1, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        stack(v["stacks"].as_array().unwrap(), "nccl_gdr", ":02:00.0").clone()
    };
    assert_eq!(gdr(&spec, &[])["allowed"], false);
    let g = gdr(&spec, &["--nccl-env", "NCCL_NET_GDR_LEVEL=PHB"]);
    assert_eq!((&g["allowed"], &g["route"]), (&true.into(), &"root_complex".into()));
    assert!(g["reason"].as_str().unwrap().contains("set: NCCL_NET_GDR_LEVEL=PHB"), "{g}");
    let file = spec.replace("iommu = false\n", "iommu = false\nnccl_env = { NCCL_NET_GDR_LEVEL = \"SYS\" }\n");
    assert_eq!(gdr(&file, &[])["allowed"], true, "the topology file's nccl_env");
    assert_eq!(gdr(&file, &["--nccl-env", "NCCL_NET_GDR_LEVEL=PIX"])["allowed"], false, "the flag wins");
    let bad_file = spec.replace("iommu = false\n", "iommu = false\nnccl_env = { P2P_LEVEL = \"SYS\" }\n");
    let (code, _, err) = stacks_with(&bad_file, "gpu0", &["nic0"], &["--json"]);
    assert_eq!((code, err.lines().count()), (2, 1), "{err}");
    assert!(err.contains("machine.nccl_env"), "{err}");
    let (code, out, err) = stacks_with(&spec, "gpu0", &["nic0"], &["--nccl-env", "P2P_LEVEL=SYS", "--json"]);
    assert_eq!((code, out.as_str(), err.lines().count()), (2, "", 1), "{err}");
    assert!(err.contains("--nccl-env") && err.contains("not an NCCL_ variable name"), "{err}");
}

#[test]
fn check_stacks_registry_drivers_and_release_from_the_topology_file() {
    let spec = two_socket_intel("10de:2330", false, false);
    // nv_grdma_pci_topology_supported: NVreg_GrdmaPciTopoCheckOverride=2 denies
    let deny = spec.replace("iommu = false\n", "iommu = false\nnvidia_registry = { GrdmaPciTopoCheckOverride = 2 }\n");
    let s = stacks_of(&deny, "gpu0", &["nic0"]);
    let n = stack(&s, "nvidia_peermem", ":02:00.0");
    assert_eq!(n["allowed"], false);
    assert!(n["reason"].as_str().unwrap().contains("GrdmaPciTopoCheckOverride=2"), "{n}");
    // A GPU bound to vfio-pci: NVIDIA's exporter and NCCL are not its stacks.
    let vfio = spec.replace("id = \"10de:2330\"\n", "id = \"10de:2330\"\ndriver = \"vfio-pci\"\n");
    let s = stacks_of(&vfio, "gpu0", &["nic0"]);
    let names: Vec<&str> = s.iter().map(|x| x["stack"].as_str().unwrap()).collect();
    assert!(!names.contains(&"nvidia_dmabuf") && !names.contains(&"nccl_gdr") && names.contains(&"vfio_dmabuf"));
    // Before 6.19 there is no VFIO dma-buf export.
    let (code, out, err) = stacks_with(&spec, "gpu0", &["nic0"], &["--kernel", "6.18", "--json"]);
    assert!(code <= 1, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let x = stack(v["stacks"].as_array().unwrap(), "vfio_dmabuf", ":02:00.0");
    assert_eq!((&x["allowed"], &x["on_refusal"]), (&serde_json::Value::Null, &"not_asked".into()));
    assert!(x["reason"].as_str().unwrap().contains("6.19"), "{x}");
}
