//! `topo`'s readable text (short names, one matrix, folded VFs), its filters, and the
//! grouped JSON and `--pairs all` against the full pairwise engine.

mod common;

use std::path::Path;

use common::p2pdma;
use p2pdma_core::{spec, Engine};
use serde_json::Value;

const GPU_SERVER: &str = "examples/topologies/gpu-server.toml";

/// A switch with a GPU, an NVMe drive with a CMB and a NIC with 8 VFs; a second root port
/// with a NIC of 3 VFs: VFs below a switch and below a root port.
const WITH_VFS: &str = r#"
[machine]
cpu = "intel"
[[root_port]]
name = "rp0"
[[switch]]
name = "sw0"
parent = "rp0"
ports = 3
acs = 0x1f
[[endpoint]]
name = "gpu0"
kind = "gpu"
parent = "sw0.0"
[[endpoint]]
name = "nvme0"
kind = "nvme"
parent = "sw0.1"
cmb_mib = 16
[[endpoint]]
name = "nic0"
kind = "nic"
parent = "sw0.2"
vfs = 8
[[root_port]]
name = "rp1"
[[endpoint]]
name = "nic1"
kind = "nic"
parent = "rp1"
vfs = 3
"#;

fn with_vfs(dir: &Path) -> String {
    let path = dir.join("vfs.toml");
    std::fs::write(&path, WITH_VFS).unwrap();
    path.to_str().unwrap().to_string()
}

fn ok(args: &[&str]) -> String {
    let (code, out, err) = p2pdma(args);
    assert_eq!(code, 0, "{args:?}: {err}");
    out
}

/// The matrix's header line: the column names.
fn columns(out: &str) -> Vec<String> {
    let at = out.lines().position(|l| l.starts_with("P2P matrix")).expect("a matrix");
    let mut cols: Vec<String> = Vec::new();
    let words: Vec<&str> = out.lines().nth(at + 1).unwrap().split_whitespace().collect();
    let mut k = 0;
    while k < words.len() {
        // A folded group is one column of three words: `NIC0 +8 VFs`.
        if words.get(k + 2) == Some(&"VFs") && words[k + 1].starts_with('+') {
            cols.push(words[k..k + 3].join(" "));
            k += 3;
        } else {
            cols.push(words[k].to_string());
            k += 1;
        }
    }
    cols
}

fn row<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    let at = out.lines().position(|l| l.starts_with("P2P matrix")).unwrap();
    let line = out.lines().skip(at + 2).find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{out}"));
    line[name.len()..].split_whitespace().collect()
}

#[test]
fn the_default_matrix_names_gpus_nics_and_nvme_like_nvidia_smi() {
    let out = ok(&["topo", "--spec", GPU_SERVER]);
    let mut want: Vec<String> = (0..8).map(|n| format!("GPU{n}")).collect();
    want.extend((0..4).map(|n| format!("NIC{n}")));
    want.extend((0..4).map(|n| format!("NVME{n}")));
    assert_eq!(columns(&out), want, "GPUs, then NICs, then NVMe, bus order within");
    // GPU0 and GPU1 share sw0; GPU4 is on the other socket; a device with itself is X.
    let gpu0 = row(&out, "GPU0");
    assert_eq!((gpu0[0], gpu0[1], gpu0[4]), ("X", "PIX/BUS4", "SYS/HB8"), "{out}");
    assert!(out.contains("  GPU0   0000:03:00.0  gpu0  NVIDIA Corporation"), "the legend: {out}");
    assert!(out.contains("└─ 0000:03:00.0  GPU0  gpu0  3D controller 10de:2330"), "the tree line: {out}");
    assert!(!out.contains("ACSCap") && !out.contains("BARs"), "details only with -v");
    let verbose = ok(&["topo", "--spec", GPU_SERVER, "-v"]);
    assert!(verbose.contains("ACSCap:") && verbose.contains("BARs BAR0 16.0 MiB"), "{verbose}");
    assert!(out.contains("IOMMU") && out.starts_with("kernel: "), "the kernel lines stay");
}

/// GPUn is nvidia-smi's GPUn, as the importer's cross-check numbers them.
#[test]
fn gpu_short_names_agree_with_the_importers_nvidia_smi_cross_check() {
    let text = std::fs::read_to_string(Path::new("../..").join(GPU_SERVER)).unwrap();
    let (_, topo) = spec::from_text(&text, Path::new("g.toml")).unwrap();
    let names = p2pdma_core::alias::ShortNames::new(&topo);
    for (n, i) in p2pdma_host::import::crosscheck::gpus(&topo).into_iter().enumerate() {
        assert_eq!(names.get(i), Some(format!("GPU{n}").as_str()));
    }
}

#[test]
fn filters_compose_with_comma_lists_globs_and_short_names() {
    let out = ok(&["topo", "--spec", GPU_SERVER, "--no-tree", "--device", "nvme*,gpu0"]);
    assert_eq!(columns(&out), ["GPU0", "NVME0", "NVME1", "NVME2", "NVME3"]);
    assert!(!out.contains("pci0000:00") && !out.contains("└─"), "--no-tree: {out}");
    let out = ok(&["topo", "--spec", GPU_SERVER, "--no-tree", "--device", "GPU3", "--device", "0000:c5:00.0"]);
    assert_eq!(columns(&out), ["GPU3", "NIC3"]);
    let out = ok(&["topo", "--spec", GPU_SERVER, "--no-tree", "--class", "nic,nvme"]);
    assert_eq!(columns(&out).len(), 8);
    let out = ok(&["topo", "--spec", GPU_SERVER, "--no-tree", "--class", "gpu", "--device", "0000:0?:00.0,nic*"]);
    assert_eq!(columns(&out), ["GPU0", "GPU1"], "class and devices both apply");
    let v: Value = serde_json::from_str(&ok(&["topo", "--spec", GPU_SERVER, "--json", "--device", "gpu*"])).unwrap();
    assert_eq!(v["matrix"]["clients"].as_array().unwrap().len(), 8);
    let (code, out, err) = p2pdma(&["topo", "--spec", GPU_SERVER, "--device", "fpga*"]);
    assert_eq!(code, 2);
    assert!(out.is_empty() && err.contains("unknown device `fpga*`") && err.trim_end().lines().count() == 1, "{err}");
}

#[test]
fn vfs_fold_into_one_line_and_one_row_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let spec = with_vfs(dir.path());
    let out = ok(&["topo", "--spec", &spec]);
    assert!(out.contains("+8 VFs (0000:05:00.1-0000:05:01.0)") && out.contains("+3 VFs ("), "{out}");
    assert!(!out.contains("VF of"), "no VF line: {out}");
    assert_eq!(columns(&out), ["GPU0", "NIC0", "NIC1", "NVME0"], "physical functions only");
    let out = ok(&["topo", "--spec", &spec, "--vfs"]);
    assert_eq!(out.matches("VF of 0000:05:00.0").count(), 8, "{out}");
    assert_eq!(columns(&out).len(), 4, "the default matrix stays physical functions");
    let out = ok(&["topo", "--spec", &spec, "--vfs", "--all", "--no-tree"]);
    assert_eq!(columns(&out).len(), 4 + 8 + 3, "every VF its own column");
    let out = ok(&["topo", "--spec", &spec, "--all", "--no-tree"]);
    let cols = columns(&out).join(" ");
    assert!(cols.contains("NIC0 +8 VFs") && cols.contains("NIC1 +3 VFs"), "{cols}");
    // Two VFs of one group: by bus address below the switch they share (distance 2).
    let at = columns(&out).iter().position(|c| c == "NIC0 +8 VFs").unwrap();
    assert_eq!(row(&out, "NIC0 +8 VFs")[at], "PIX/BUS2", "{out}");
    assert!(out.contains("0000:05:00.1-0000:05:01.0  VFs of 0000:05:00.0"), "the legend: {out}");
}

/// Every line of `--pairs all` is the full engine's answer for its pair, and there is one
/// line per pair; the grouped JSON's counts add up to the same number.
#[test]
fn pairs_all_streams_every_member_pair_as_the_full_engine_answers() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = with_vfs(dir.path());
    let (_, topo) = spec::from_text(WITH_VFS, Path::new("vfs.toml")).unwrap();
    let engine = Engine::new(&topo).unwrap();
    let n = topo.devices.len();
    let providers: Vec<usize> = (0..n).filter(|&i| topo.devices[i].has_p2p_memory_side()).collect();
    let clients: Vec<usize> = (0..n).filter(|&i| topo.devices[i].is_dma_capable()).collect();
    let out = ok(&["topo", "--spec", &spec_path, "--pairs", "all"]);
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), providers.len() * clients.len());
    let mut seen = std::collections::HashSet::new();
    for l in &lines {
        let bdf = |k: &str| engine.index_of(l[k].as_str().unwrap().parse().unwrap()).unwrap();
        let (p, c) = (bdf("provider"), bdf("client"));
        assert!(seen.insert((p, c)), "{l}");
        let want = engine.pair(p, c);
        assert_eq!(l["map_type"], serde_json::to_value(want.map_type).unwrap(), "{l}");
        assert_eq!(l["distance"], serde_json::to_value(want.distance).unwrap(), "{l}");
        assert_eq!(l["path_class"], engine.path_class(p, c).as_str(), "{l}");
        assert_eq!(l["certain"], p == c || engine.certain(p, c), "{l}");
    }
    let v: Value = serde_json::from_str(&ok(&["topo", "--spec", &spec_path, "--json"])).unwrap();
    let pairs = v["pairs"].as_array().unwrap();
    let counted: u64 = pairs.iter().map(|p| p["pairs"].as_u64().unwrap()).sum();
    assert_eq!(counted, lines.len() as u64);
    assert!(pairs.len() < lines.len() / 4, "grouped: {} entries for {} pairs", pairs.len(), lines.len());
    let groups = v["groups"].as_array().unwrap();
    let vf_group = groups.iter().position(|g| g["members"].as_array().unwrap().len() == 8).unwrap();
    assert_eq!(groups[vf_group]["physfn"], "0000:05:00.0");
    assert!(pairs.iter().any(|p| p["provider_group"] == vf_group && p["pairs"] == 8 * 8 - 8));
    assert!(v["devices"].as_array().unwrap().iter().all(|d| d.get("config_hex").is_none()));
}

/// `--pairs all` on a generated server with VFs, ACS switches and two sockets: one line per
/// pair, each the full engine's answer.
#[test]
fn pairs_all_on_a_generated_server_equals_the_full_engine() {
    let dir = tempfile::tempdir().unwrap();
    let text = p2pdma_core::synthetic::server(&p2pdma_core::synthetic::ServerShape::preset(100));
    let path = dir.path().join("hgx-100.toml");
    std::fs::write(&path, &text).unwrap();
    let (_, topo) = spec::from_text(&text, &path).unwrap();
    assert!(topo.devices.iter().any(|d| d.physfn.is_some()), "the preset has VFs");
    let engine = Engine::new(&topo).unwrap();
    let n = topo.devices.len();
    let providers = (0..n).filter(|&i| topo.devices[i].has_p2p_memory_side()).count();
    let clients = (0..n).filter(|&i| topo.devices[i].is_dma_capable()).count();
    let out = ok(&["topo", "--spec", path.to_str().unwrap(), "--pairs", "all"]);
    let mut count = 0;
    for line in out.lines() {
        let l: Value = serde_json::from_str(line).unwrap();
        let bdf = |k: &str| engine.index_of(l[k].as_str().unwrap().parse().unwrap()).unwrap();
        let (p, c) = (bdf("provider"), bdf("client"));
        let want = engine.pair(p, c);
        let got = (&l["map_type"], &l["distance"], &l["path_class"], &l["certain"]);
        assert_eq!(
            got,
            (
                &serde_json::to_value(want.map_type).unwrap(),
                &serde_json::to_value(want.distance).unwrap(),
                &Value::from(engine.path_class(p, c).as_str()),
                &Value::from(p == c || engine.certain(p, c))
            ),
            "{line}"
        );
        count += 1;
    }
    assert_eq!(count, providers * clients);
}

/// Issue 24's acceptance machine (about 10,000 functions, NICs and DPUs with 255 VFs): the
/// default text under 5 MB, the JSON under 50 MB (sizes, not times).
#[test]
fn the_10k_server_prints_text_under_5_mb_and_json_under_50_mb() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hgx-10k.toml");
    let server = p2pdma_core::synthetic::server(&p2pdma_core::synthetic::ServerShape::acceptance());
    std::fs::write(&path, &server).unwrap();
    let file = path.to_str().unwrap();
    let text = ok(&["topo", "--spec", file]);
    assert!(text.len() < 5 << 20, "text: {} bytes", text.len());
    assert!(text.contains("+255 VFs (") && text.contains(" VFs of 0000:"), "VFs folded in the tree and IOMMU groups");
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 2_000, "short lines: the longest is {longest} bytes");
    let cols = columns(&text);
    assert!(cols.iter().filter(|c| c.starts_with("GPU")).count() == 16, "{cols:?}");
    let json = ok(&["topo", "--spec", file, "--json"]);
    assert!(json.len() < 50 << 20, "JSON: {} bytes", json.len());
    let v: Value = serde_json::from_str(&json).unwrap();
    let counted: u64 = v["pairs"].as_array().unwrap().iter().map(|p| p["pairs"].as_u64().unwrap()).sum();
    let (_, topo) = spec::from_text(&server, &path).unwrap();
    let providers = topo.devices.iter().filter(|d| d.has_p2p_memory_side()).count() as u64;
    let clients = topo.devices.iter().filter(|d| d.is_dma_capable()).count() as u64;
    assert_eq!(counted, providers * clients, "the grouped pairs stand for every pair");
}

/// `--stack NAME` puts that stack's decision in each cell: NVIDIA's GPUDirect RDMA maps a GPU
/// and a NIC, never a GPU and a drive; `--json` carries the same per grouped cell.
#[test]
fn stack_puts_one_stacks_decision_in_every_cell() {
    let out = ok(&["topo", "--spec", GPU_SERVER, "--no-tree", "--stack", "nvidia_peermem"]);
    assert!(out.contains("path class / what nvidia_peermem decides"), "{out}");
    let cols = columns(&out);
    let at = |name: &str| cols.iter().position(|c| c == name).unwrap();
    let gpu0 = row(&out, "GPU0");
    assert_eq!(gpu0[at("NIC0")], "PIX/yes", "{out}");
    assert!(gpu0[at("NVME0")].ends_with("/-"), "peermem cannot map a drive: {out}");
    assert_eq!(gpu0[at("GPU0")], "X");

    let json: Value =
        serde_json::from_str(&ok(&["topo", "--spec", GPU_SERVER, "--json", "--stack", "nvidia_peermem"])).unwrap();
    let cells = json["stack_cells"]["cells"].as_array().unwrap();
    assert_eq!(json["stack_cells"]["stack"], "nvidia_peermem");
    assert_eq!(cells.len(), json["matrix"]["cells"].as_array().unwrap().len());
    let allowed: usize = cells.iter().flat_map(|r| r.as_array().unwrap()).filter(|c| c["allowed"] == true).count();
    assert!(allowed > 0, "some GPU–NIC pair is mapped: {cells:?}");

    let (code, _, err) = p2pdma(&["topo", "--spec", GPU_SERVER, "--stack", "bogus"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown stack `bogus`") && err.lines().count() == 1, "{err}");
}
