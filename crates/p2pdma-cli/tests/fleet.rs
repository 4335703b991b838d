//! `diff`, `metrics`, `completions` and `manpages`: exit codes, JSON, and the metrics read
//! by the Prometheus project's own text-format parser (prometheus_client, installed by
//! scripts/install-prometheus-parser into a cached virtualenv).

mod common;

use std::process::Command;

use common::{p2pdma, prometheus_parse, scenarios, SWITCH};

const IOMMU_ACS: &str = "examples/topologies/iommu-acs.toml";
const IOMMU_ACS_DISABLED: &str = "examples/topologies/iommu-acs-disabled.toml";

#[test]
fn diff_of_a_file_with_itself_is_the_same_exit_0() {
    let (code, out, _) = p2pdma(&["diff", SWITCH, SWITCH]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("same"), "{out}");
}

#[test]
fn diff_names_the_acs_change_and_the_pair_it_flips_exit_1() {
    let (code, out, _) = p2pdma(&["diff", IOMMU_ACS, IOMMU_ACS_DISABLED]);
    assert_eq!(code, 1, "{out}");
    // The command line, the port's ACS and the IOMMU group it merged flip the same pairs:
    // one list under the three.
    assert!(
        out.contains(
            "0000:00:11.0 (rp0): ACS control 0x001d [SV RR CR UF] -> 0x0000 [-]\n0000:01:00.0 (nvme-a): iommu_group 2 -> 1\n  and 1 more device(s) alike, to 0000:01:00.1\n  2 pair(s) NO -> BUS2\n    nvme-a (0000:01:00.0) -> nvme-b (0000:01:00.1)\n"
        ),
        "{out}"
    );
    assert!(out.ends_with("4 change(s), 2 pair(s) changed\n"), "{out}");

    let (code, out, _) = p2pdma(&["diff", IOMMU_ACS, IOMMU_ACS_DISABLED, "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((&v["same"], &v["pairs"]), (&false.into(), &2.into()));
    let flip = &v["flips"][0];
    assert_eq!(
        (flip["before"]["map_type"].as_str(), flip["after"]["map_type"].as_str(), flip["pairs"].as_u64()),
        (Some("not_supported"), Some("bus_addr"), Some(1))
    );
    assert_eq!(v["groups"][flip["client"].as_u64().unwrap() as usize]["members"][0], "0000:01:00.1");
    let acs = v["changes"].as_array().unwrap().iter().find(|c| c["field"] == "acs.ctrl").expect("an ACS change");
    assert_eq!(acs["subject"], "0000:00:11.0");
    assert_eq!((acs["pairs"].as_u64(), acs["flips"].as_array().map(Vec::len)), (Some(2), Some(2)));
    assert_eq!(acs["transitions"][0]["pairs"], 2);
}

#[test]
fn diff_all_lists_every_pair_in_text_and_json_lines() {
    let (code, out, _) = p2pdma(&["diff", IOMMU_ACS, IOMMU_ACS_DISABLED, "--all"]);
    assert_eq!(code, 1, "{out}");
    // After the summary, every flipped pair once.
    assert!(out.contains("every flipped pair:\n  2 pair(s) NO -> BUS2\n"), "{out}");
    assert!(out.contains("  2 pair(s) NO -> BUS2\n    nvme-a (0000:01:00.0) -> nvme-b (0000:01:00.1)\n    nvme-b (0000:01:00.1) -> nvme-a (0000:01:00.0)\n"), "{out}");
    let (code, out, _) = p2pdma(&["diff", IOMMU_ACS, IOMMU_ACS_DISABLED, "--all", "--json"]);
    assert_eq!(code, 1);
    let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["pairs"], 2);
    assert_eq!(lines.len(), 3, "the diff, then one line per pair");
    assert_eq!(lines[1]["provider"], "0000:01:00.0");
    assert_eq!(lines[1]["after"]["map_type"], "bus_addr");
}

#[test]
fn diff_of_snapshots_sees_a_removed_device() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    let (code, _, err) = p2pdma(&["snapshot", "--spec", SWITCH, "-o", a.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let mut snap: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&a).unwrap()).unwrap();
    let devices = snap["topology"]["devices"].as_array_mut().unwrap();
    devices.retain(|d| d["name"] != "nvme-b");
    let b = dir.path().join("b.json");
    std::fs::write(&b, snap.to_string()).unwrap();
    let (code, out, _) = p2pdma(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("devices: 0 added, 1 removed, 0 changed\n"), "{out}");
    assert!(out.contains("0000:04:00.0 (nvme-b) gone\n  2 pair(s) BUS4 -> absent\n    nvme-a (0000:03:00.0) -> nvme-b (0000:04:00.0)\n"), "{out}");
}

#[test]
fn diff_refuses_bad_input_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{\"schema\": \"something else\"}").unwrap();
    let (code, _, err) = p2pdma(&["diff", SWITCH, junk.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("not a p2pdma snapshot") && err.lines().count() == 1, "{err}");
    let (code, _, _) = p2pdma(&["diff", SWITCH, "no/such/file.json"]);
    assert_eq!(code, 2);
}

#[test]
fn metrics_of_every_scenario_pass_the_prometheus_parser() {
    for spec in scenarios() {
        let (code, text, err) = p2pdma(&["metrics", "--spec", spec.to_str().unwrap()]);
        assert_eq!(code, 0, "{}: {err}", spec.display());
        let families = prometheus_parse(&text);
        assert!(families.get("p2pdma_pair_supported").is_none(), "pairs only with --pairs");
        for name in
            ["p2pdma_peers", "p2pdma_acs_redirect", "p2pdma_p2pmem_free_bytes", "p2pdma_kernel_p2pdma_supported"]
        {
            assert!(families.get(name).is_some(), "{}: no {name}", spec.display());
        }
    }
    let families = prometheus_parse(&p2pdma(&["metrics", "--spec", IOMMU_ACS]).1);
    // rp0's ACS redirects: nvme-a cannot reach nvme-b's memory, one NVMe peer not supported.
    let peers = families["p2pdma_peers"].as_array().unwrap();
    let of = |device: &str, via: &str| {
        let s = peers.iter().find(|s| s[1]["device"] == device && s[1]["via"] == via && s[1]["peer_class"] == "nvme");
        s.unwrap()[2].as_f64()
    };
    assert_eq!((of("0000:01:00.0", "not_supported"), of("0000:01:00.0", "bus_address")), (Some(1.0), Some(0.0)));
    assert_eq!(peers[0][1]["members"], "1");
    let families = prometheus_parse(&p2pdma(&["metrics", "--spec", IOMMU_ACS, "--pairs", "--class", "nvme"]).1);
    let pair = &families["p2pdma_pair_supported"][0];
    assert_eq!(pair[1]["provider_name"], "nvme-a");
    assert_eq!(pair[1]["client"], "0000:01:00.1");
    assert_eq!(pair[2], 0.0);
    let acs = &families["p2pdma_acs_redirect"][0];
    assert_eq!((acs[1]["device"].as_str(), acs[2].as_f64()), (Some("0000:00:11.0"), Some(1.0)));
}

#[test]
fn metrics_labels_survive_hostile_names() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.json");
    p2pdma(&["snapshot", "--spec", SWITCH, "-o", a.to_str().unwrap()]);
    let mut snap: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&a).unwrap()).unwrap();
    let hostile = "quote\" back\\slash\nnewline } ,x=\"y";
    for d in snap["topology"]["devices"].as_array_mut().unwrap() {
        if d["name"] == "nvme-b" {
            d["name"] = hostile.into();
        }
    }
    std::fs::write(&a, snap.to_string()).unwrap();
    let (code, text, err) = p2pdma(&["metrics", "--snapshot", a.to_str().unwrap(), "--pairs", "--class", "nvme"]);
    assert_eq!(code, 0, "{err}");
    let families = prometheus_parse(&text);
    let names: Vec<&str> = families["p2pdma_pair_supported"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| [s[1]["provider_name"].as_str().unwrap(), s[1]["client_name"].as_str().unwrap()])
        .collect();
    assert!(names.contains(&hostile), "{names:?}");
}

#[test]
fn metrics_output_file_is_written_whole_and_bad_paths_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("p2pdma.prom");
    let (code, out, err) = p2pdma(&["metrics", "--spec", SWITCH, "-o", prom.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty());
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(text.ends_with('\n') && text.contains("p2pdma_peer_worst_verdict"));
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, [std::ffi::OsString::from("p2pdma.prom")], "no temporary file left behind");
    let (code, _, err) = p2pdma(&["metrics", "--spec", SWITCH, "-o", "/no/such/dir/p2pdma.prom"]);
    assert_eq!(code, 2);
    assert!(err.contains("/no/such/dir/p2pdma.prom"), "{err}");
}

/// The 10k acceptance machine of issue 24 and the same with one switch's ACS flipped.
fn acceptance_files(dir: &std::path::Path) -> (String, String) {
    use p2pdma_core::synthetic::{server, ServerShape};
    let shape = ServerShape::acceptance();
    let (a, b) = (dir.join("a.toml"), dir.join("b.toml"));
    std::fs::write(&a, server(&shape)).unwrap();
    std::fs::write(&b, server(&ServerShape { flip_acs: Some(0), ..shape })).unwrap();
    (a.to_str().unwrap().into(), b.to_str().unwrap().into())
}

#[test]
fn one_switch_acs_flip_on_the_10k_machine_reads_in_a_page_or_two() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = acceptance_files(dir.path());
    let (code, out, err) = p2pdma(&["diff", &a, &b]);
    assert_eq!(code, 1, "{err}");
    assert!(out.lines().count() < 200, "{} lines:\n{out}", out.lines().count());
    assert!(out.contains("pair(s) HB4 -> BUS4\n"), "{out}");
    assert!(out.contains(" +254: 65,025 pairs\n"), "a VF group against a VF group, counted: {out}");
    let (_, json, _) = p2pdma(&["diff", &a, &b, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let total: u64 = v["flips"].as_array().unwrap().iter().map(|f| f["pairs"].as_u64().unwrap()).sum();
    assert_eq!(v["pairs"].as_u64(), Some(total));
    assert!(out.ends_with(&format!("{} pair(s) changed\n", thousands(total))), "{out}");
}

#[test]
fn metrics_of_the_10k_machine_parse_and_stay_under_20000_series() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = acceptance_files(dir.path());
    let (code, text, err) = p2pdma(&["metrics", "--spec", &a]);
    assert_eq!(code, 0, "{err}");
    let families = prometheus_parse(&text);
    let series: usize = families.as_object().unwrap().values().map(|f| f.as_array().unwrap().len()).sum();
    assert!(series < 20_000, "{series} series");
    assert!(
        families["p2pdma_peers"].as_array().unwrap().iter().any(|s| s[1]["members"] == "255"),
        "a VF group is one series"
    );
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[test]
fn metrics_pairs_need_a_filter_exit_2() {
    let (code, out, err) = p2pdma(&["metrics", "--spec", SWITCH, "--pairs"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(err.contains("--pairs needs --device or --class") && err.lines().count() == 1, "{err}");
    let (code, text, err) = p2pdma(&["metrics", "--spec", SWITCH, "--pairs", "--device", "nvme-a,nvme-b"]);
    assert_eq!(code, 0, "{err}");
    let families = prometheus_parse(&text);
    assert_eq!(families["p2pdma_pair_supported"].as_array().unwrap().len(), 2, "{text}");
    let (code, _, err) = p2pdma(&["metrics", "--spec", SWITCH, "--class", "fridge"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn completions_for_bash_zsh_and_fish_know_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = p2pdma(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains("diff") && out.contains("metrics") && out.contains("snapshot"), "{shell}");
    }
    let (_, bash, _) = p2pdma(&["completions", "bash"]);
    let check = Command::new("bash").args(["-n", "-c", &bash]).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
    let (code, _, _) = p2pdma(&["completions", "tcsh"]);
    assert_eq!(code, 2);
}

#[test]
fn manpages_cover_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = p2pdma(&["manpages", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for page in
        ["p2pdma.1", "p2pdma-topo.1", "p2pdma-diff.1", "p2pdma-metrics.1", "p2pdma-lab-run.1", "p2pdma-nvmet-export.1"]
    {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.starts_with(".ie \\n(.g .ds Aq") || text.contains(".TH"), "{page} is not roff");
    }
    let main = std::fs::read_to_string(dir.path().join("p2pdma.1")).unwrap();
    assert!(main.contains(".TH p2pdma 1") && main.contains("metrics"), "{main}");
}
