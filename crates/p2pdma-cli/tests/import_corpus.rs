//! The corpus of real machines (fixtures/machines/) through the binary: import → snapshot →
//! `topo --json` is stable, `check` says 3 where ACS was not readable, and `report`, `diff`
//! and `metrics` work on an imported machine as on a live one; `diff` of an import against
//! the live-style snapshot of the same machine shows only what an import cannot know.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::p2pdma;

const M: &str = "fixtures/machines";

#[path = "../../../tests/support/corpus.rs"]
mod corpus;
use corpus::MACHINES;

/// `p2pdma import FILES -o out`: the snapshot's text.
fn import(files: &[&str], out: &Path) -> String {
    let paths: Vec<String> = files.iter().map(|f| format!("{M}/{f}")).collect();
    let mut args: Vec<&str> = vec!["import"];
    args.extend(paths.iter().map(String::as_str));
    args.extend(["-o", out.to_str().unwrap()]);
    let (code, stdout, err) = p2pdma(&args);
    assert_eq!(code, 0, "{files:?}: {stdout}{err}");
    std::fs::read_to_string(out).unwrap()
}

#[test]
fn every_machine_imports_to_a_snapshot_whose_topo_json_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    for (k, files) in MACHINES.iter().enumerate() {
        let (a, b) = (dir.path().join(format!("{k}a.json")), dir.path().join(format!("{k}b.json")));
        assert_eq!(import(files, &a), import(files, &b), "{files:?}: two imports, one snapshot");
        let topo = |p: &Path| {
            let (code, out, err) = p2pdma(&["topo", "--snapshot", p.to_str().unwrap(), "--json"]);
            assert_eq!(code, 0, "{files:?}: {err}");
            serde_json::from_str::<serde_json::Value>(&out).unwrap()
        };
        let first = topo(&a);
        assert_eq!(first, topo(&a), "{files:?}: topo --json twice");
        assert_eq!(first, topo(&b), "{files:?}");
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&a).unwrap()).unwrap();
        let n = doc["topology"]["devices"].as_array().unwrap().len();
        assert!(n > 0, "{files:?}");
    }
}

#[test]
fn check_is_3_where_acs_was_not_read_and_0_through_an_amd_host_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("epyc.json");
    import(MACHINES[3], &snap);
    let s = snap.to_str().unwrap();
    // The ConnectX-7's two ports below root port 80:01.1, whose ACS no input shows.
    let (code, out, _) = p2pdma(&["check", "--snapshot", s, "81:00.0", "81:00.1"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("sudo lspci -vvv -s") || out.contains("ACS"), "{out}");
    // GPU3's BAR, GPU0 on the other socket: the AMD CPU rule, certain.
    let (code, out, _) = p2pdma(&["check", "--snapshot", s, "e1:00.0", "01:00.0"]);
    assert_eq!(code, 0, "{out}");
}

/// `p2pdma import` of one fixture plus a tree written for the test (the fixture shows no tree).
fn import_with_tree(fixture: &str, tree: &str, dir: &Path) -> String {
    let t = dir.join("tree.txt");
    std::fs::write(&t, tree).unwrap();
    let out = dir.join("machine.json");
    let f = format!("{M}/{fixture}");
    let (code, stdout, err) = p2pdma(&["import", &f, t.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{fixture}: {stdout}{err}");
    out.to_str().unwrap().to_string()
}

#[test]
fn check_is_3_for_the_pair_below_a_nonroot_lspci_nic() {
    // The Theseus book's non-root `lspci -vnn` of a ConnectX-5 Ex; the root port and the
    // second function are ours (SOURCE.md).
    let tree = "-[0000:58]---00.0-[59]--+-00.0  Mellanox Technologies MT28800 Family [ConnectX-5 Ex] [15b3:1019]\n                        \\-00.1  Mellanox Technologies MT28800 Family [ConnectX-5 Ex] [15b3:1019]\n";
    let dir = tempfile::tempdir().unwrap();
    let s = import_with_tree("server-connectx5ex-nonroot-theseus/lspci-vnn-nonroot-excerpt.md", tree, dir.path());
    let (code, out, err) = p2pdma(&["check", "--snapshot", &s, "59:00.0", "59:00.1"]);
    assert_eq!(code, 3, "{out}{err}");
    let (code, json, _) = p2pdma(&["topo", "--snapshot", &s, "--json"]);
    assert_eq!(code, 0);
    assert!(json.contains("\"numa_node\": 1") || json.contains("\"numa_node\":1"), "{json}");
}

#[test]
fn the_mi50_added_lines_import_and_cross_check_on_their_tree() {
    let tree = "-[0000:00]-+-00.0  Host bridge [1022:1480]\n           +-03.1-[02-04]----00.0-[03-04]----00.0-[04]----00.0  Advanced Micro Devices, Inc. [AMD/ATI] Vega 20 [1002:66a1]\n           \\-03.2-[05-07]----00.0-[06-07]----00.0-[07]----00.0  Advanced Micro Devices, Inc. [AMD/ATI] Vega 20 [1002:66a1]\n";
    let dir = tempfile::tempdir().unwrap();
    let s = import_with_tree("amd-2xmi50-gfx906-p2pdma-added/devlog-finding3-excerpt.md", tree, dir.path());
    let (code, json, err) = p2pdma(&["topo", "--snapshot", &s, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(json.contains("0000:04:00.0") && json.contains("0000:07:00.0"), "{json}");
}

#[test]
fn report_and_metrics_work_on_an_imported_machine() {
    let dir = tempfile::tempdir().unwrap();
    for (k, files) in [MACHINES[3], MACHINES[6]].iter().enumerate() {
        let snap = dir.path().join(format!("{k}.json"));
        import(files, &snap);
        let s = snap.to_str().unwrap();
        let (code, html, err) = p2pdma(&["report", "--snapshot", s, "-o", "-"]);
        assert_eq!(code, 0, "{files:?}: {err}");
        assert!(html.starts_with("<!DOCTYPE html>") || html.contains("<html"), "{files:?}");
        let (code, prom, err) = p2pdma(&["metrics", "--snapshot", s]);
        assert_eq!(code, 0, "{files:?}: {err}");
        assert!(prom.contains("p2pdma_machine_info"), "{prom}");
        assert!(prom.contains("p2pdma_host_bridge_whitelisted{host_bridge="), "{files:?}");
    }
    // DGX-2: the Sky Lake-E root ports 8086:2030 are whitelisted host bridges.
    let (_, prom, _) = p2pdma(&["metrics", "--snapshot", dir.path().join("1.json").to_str().unwrap()]);
    assert!(prom.contains("p2pdma_host_bridge_whitelisted{host_bridge=\"pci0000:2b\",id=\"8086:2030\"} 1"), "{prom}");
}

#[test]
fn diff_of_two_imports_of_one_machine_is_empty_and_of_two_machines_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (dir.path().join("a.json"), dir.path().join("b.json"), dir.path().join("c.json"));
    import(MACHINES[5], &a);
    import(MACHINES[5], &b);
    import(MACHINES[6], &c);
    let (code, out, err) = p2pdma(&["diff", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, _) = p2pdma(&["diff", a.to_str().unwrap(), c.to_str().unwrap()]);
    assert_eq!(code, 1);
}

/// The live-style snapshot's machine written as `lstopo --of xml` would: host bridges under
/// a package of their NUMA node, bridges with their bus ranges, devices with class and IDs.
/// hwloc has no config space, so ACS, BARs, port types and the kernel stay out of it.
fn hwloc_of(topo: &serde_json::Value) -> String {
    let devs: BTreeMap<&str, &serde_json::Value> =
        topo["devices"].as_array().unwrap().iter().map(|d| (d["bdf"].as_str().unwrap(), d)).collect();
    let mut kids: BTreeMap<Option<&str>, Vec<&str>> = BTreeMap::new();
    for (b, d) in &devs {
        kids.entry(d["upstream"].as_str()).or_default().push(b);
    }
    let bus = |b: &str| u8::from_str_radix(&b[5..7], 16).unwrap();
    fn last(b: &str, kids: &BTreeMap<Option<&str>, Vec<&str>>, bus: &dyn Fn(&str) -> u8) -> u8 {
        kids.get(&Some(b)).into_iter().flatten().map(|c| last(c, kids, bus)).fold(bus(b), u8::max)
    }
    fn object(b: &str, x: &mut String, ctx: &Ctx) {
        let d = ctx.devs[b];
        let sub = d["subsystem"]
            .as_array()
            .map_or(String::new(), |s| format!(" [{:04x}:{:04x}]", s[0].as_u64().unwrap(), s[1].as_u64().unwrap()));
        let ty = format!(
            "{:04x} [{:04x}:{:04x}]{sub}",
            d["class"].as_u64().unwrap() >> 8,
            d["vendor"].as_u64().unwrap(),
            d["device"].as_u64().unwrap()
        );
        let children = ctx.kids.get(&Some(b)).cloned().unwrap_or_default();
        if d["is_bridge"].as_bool().unwrap() {
            let range = match (
                children.iter().map(|c| (ctx.bus)(c)).min(),
                children.iter().map(|c| last(c, ctx.kids, ctx.bus)).max(),
            ) {
                (Some(s), Some(e)) => format!(" bridge_pci=\"{}:[{s:02x}-{e:02x}]\"", &b[..4]),
                _ => String::new(),
            };
            x.push_str(&format!(
                "<object type=\"Bridge\" bridge_type=\"1-1\"{range} pci_busid=\"{b}\" pci_type=\"{ty}\">\n"
            ));
            for c in children {
                object(c, x, ctx);
            }
            x.push_str("</object>\n");
        } else {
            x.push_str(&format!("<object type=\"PCIDev\" pci_busid=\"{b}\" pci_type=\"{ty}\"/>\n"));
        }
    }
    struct Ctx<'a> {
        devs: &'a BTreeMap<&'a str, &'a serde_json::Value>,
        kids: &'a BTreeMap<Option<&'a str>, Vec<&'a str>>,
        bus: &'a dyn Fn(&str) -> u8,
    }
    let ctx = Ctx { devs: &devs, kids: &kids, bus: &bus };
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<topology version=\"2.0\">\n<object type=\"Machine\" os_index=\"0\">\n");
    for hb in topo["host_bridges"].as_array().unwrap() {
        let roots: Vec<&str> = kids[&None].iter().copied().filter(|b| devs[b]["host_bridge"] == hb["name"]).collect();
        let node = devs[roots[0]]["numa_node"].as_u64().unwrap();
        let end = roots.iter().map(|r| last(r, &kids, &bus)).max().unwrap();
        x.push_str(&format!("<object type=\"Package\" os_index=\"{node}\" nodeset=\"0x{:08x}\">\n", 1u32 << node));
        let (dom, first) = (hb["domain"].as_u64().unwrap(), hb["bus"].as_u64().unwrap());
        x.push_str(&format!(
            "<object type=\"Bridge\" bridge_type=\"0-1\" bridge_pci=\"{dom:04x}:[{first:02x}-{end:02x}]\">\n"
        ));
        for r in roots {
            object(r, &mut x, &ctx);
        }
        x.push_str("</object>\n</object>\n");
    }
    x + "</object>\n</topology>\n"
}

#[test]
fn diff_of_an_import_against_the_live_snapshot_shows_only_what_the_import_cannot_know() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.json");
    let (code, _, err) =
        p2pdma(&["snapshot", "--spec", "examples/topologies/gpu-server.toml", "-o", live.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&live).unwrap()).unwrap();
    let xml = dir.path().join("lstopo.xml");
    std::fs::write(&xml, hwloc_of(&doc["topology"])).unwrap();
    let imported = dir.path().join("imported.json");
    let (code, out, err) = p2pdma(&["import", xml.to_str().unwrap(), "-o", imported.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = p2pdma(&["diff", "--json", imported.to_str().unwrap(), live.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let diff: serde_json::Value = serde_json::from_str(&out).unwrap();
    let changes = diff["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    // hwloc carries no config space, no kernel and no P2P memory: those may differ, and
    // the class's programming interface (hwloc keeps the 16-bit class). Nothing else.
    let unknowable = |f: &str| {
        f.starts_with("acs.")
            || f.starts_with("kernel.")
            || f.starts_with("p2pmem.")
            || [
                "bars",
                "port_type",
                "cmb",
                "link",
                "driver",
                "iommu",
                "iommu_group",
                "arch",
                "cpu_vendor",
                "cpu_family",
            ]
            .contains(&f)
    };
    for c in changes {
        let field = c["field"].as_str().unwrap_or("");
        assert_eq!(c["kind"], "changed", "{c}");
        assert!(
            unknowable(field)
                || (field == "class" && c["before"].as_u64().unwrap() >> 8 == c["after"].as_u64().unwrap() >> 8),
            "{}",
            c["summary"]
        );
    }
    // What an import knows stands: every device, its place, its IDs and its NUMA node.
    for c in changes {
        let f = c["field"].as_str().unwrap_or("");
        assert!(!["upstream", "host_bridge", "vendor", "device", "numa_node", "is_bridge"].contains(&f), "{c}");
    }
}
