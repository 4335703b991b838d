//! The fleet commands against the real kernel, in one boot of a machine with two NVMe
//! functions behind one root port (no IOMMU): `topo -v` names devices from the built-in PCI ID
//! database (the guest has no pci.ids); a snapshot is taken, then the root port's ACS
//! control is written through sysfs `config` as a firmware update would leave it (RR and CR
//! on), then the second drive is removed (`remove` in sysfs), with a snapshot after each;
//! `diff` must name each change and the pair it flips, and `metrics` from the guest must
//! pass the Prometheus parser. The kernel's own answer after the ACS write is checked too.

mod common;

use common::{p2pdma, prometheus_parse, skip_lab};

const TOPOLOGY: &str = r#"
name = "fleet"
description = "two NVMe functions behind one root port, no IOMMU: bus address until ACS redirects"
[machine]
cpu = "qemu64"
[[root_port]]
name = "rp0"
slot = 0x11
[[endpoint]]
name = "nvme-a"
kind = "nvme"
parent = "rp0"
function = 0
cmb_mib = 16
[[endpoint]]
name = "nvme-b"
kind = "nvme"
parent = "rp0"
function = 1
"#;

/// The guest: names, three snapshots, metrics; the ACS control register of 00:11.0 is at
/// the capability (0x148 on QEMU's root ports, checked in the snapshot) + 6.
const SCRIPT: &str = r#"cd /lab/share
p2pdma topo -v > topo.txt
p2pdma snapshot -o before.json 2>/dev/null
p2pdma metrics --pairs --class nvme -o p2pdma.prom
printf '\014\000' | dd of=/sys/bus/pci/devices/0000:00:11.0/config bs=1 seek=334 conv=notrunc 2>/dev/null
p2pdma snapshot -o acs.json 2>/dev/null
B=$(p2pdma resolve --block nvme-b)
dd if=/dev/urandom of=$B bs=4k count=1 conv=fsync 2>/dev/null
p2pdma alloc nvme-a 4096 --read nvme-b --json > alloc-acs.json 2>/dev/null; echo $? > alloc-acs.rc
echo 1 > /sys/bus/pci/devices/0000:01:00.1/remove
unset P2PDMA_NAMES
p2pdma snapshot -o removed.json 2>/dev/null
echo done"#;

#[test]
fn lab_names_diff_and_metrics() {
    if skip_lab() {
        return;
    }
    let share = tempfile::tempdir().unwrap();
    let topology = share.path().join("fleet.toml");
    std::fs::write(&topology, TOPOLOGY).unwrap();
    let (code, out, err) = p2pdma(&[
        "lab",
        "run",
        topology.to_str().unwrap(),
        "--timeout",
        "240",
        "--share",
        share.path().to_str().unwrap(),
        "--",
        SCRIPT,
    ]);
    assert_eq!(code, 0, "the lab run failed: {out}{err}");
    let file = |name: &str| share.path().join(name).to_str().unwrap().to_string();
    let read = |name: &str| std::fs::read_to_string(file(name)).unwrap_or_else(|e| panic!("{name}: {e}"));

    // Names from the built-in database, inside the guest.
    let topo = read("topo.txt");
    for expected in [
        "Non-Volatile memory controller 1b36:0010 (Red Hat, Inc. QEMU NVM Express Controller)",
        "root port 1b36:000c (Red Hat, Inc. QEMU PCIe Root port)",
        "Host bridge 8086:29c0 (Intel Corporation 82G33/G31/P35/P31 Express DRAM Controller)",
    ] {
        assert!(topo.contains(expected), "topo in the guest lacks `{expected}`:\n{topo}");
    }
    let snap: serde_json::Value = serde_json::from_str(&read("before.json")).unwrap();
    let rp = snap["topology"]["devices"].as_array().unwrap().iter().find(|d| d["bdf"] == "0000:00:11.0").unwrap();
    assert_eq!(rp["acs"]["offset"], 0x148, "the script writes ACS control at 0x148 + 6");
    assert_eq!(rp["class_name"], "PCI bridge");

    // ACS turned on: the port and the pair it flips.
    let (code, diff, _) = p2pdma(&["diff", &file("before.json"), &file("acs.json")]);
    assert_eq!(code, 1, "{diff}");
    assert!(diff.contains("0000:00:11.0 (rp0): ACS control 0x0000 [-] -> 0x000c [RR CR]"), "{diff}");
    assert!(diff.contains("pair(s) BUS2 -> NO\n    nvme-a (0000:01:00.0) -> nvme-b (0000:01:00.1)\n"), "{diff}");
    // The kernel agrees: it refuses the same read now.
    assert_ne!(
        read("alloc-acs.rc").trim(),
        "0",
        "the kernel still allowed P2P after RR/CR: {}",
        read("alloc-acs.json")
    );

    // A device removed.
    let (code, diff, _) = p2pdma(&["diff", &file("acs.json"), &file("removed.json"), "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&diff).unwrap();
    let gone = v["changes"].as_array().unwrap().iter().find(|c| c["kind"] == "removed").expect("a removed device");
    assert_eq!(gone["subject"], "0000:01:00.1");
    // Both directions: nvme-b's registers BAR makes it a matrix row as well.
    let group = |i: &serde_json::Value| v["groups"][i.as_u64().unwrap() as usize]["device"].as_str().unwrap();
    let keys: Vec<(&str, &str)> = gone["flips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &v["flips"][f.as_u64().unwrap() as usize])
        .map(|f| (group(&f["provider"]), group(&f["client"])))
        .collect();
    assert!(keys.contains(&("0000:01:00.0", "0000:01:00.1")), "{keys:?}");
    assert!(v["flips"].as_array().unwrap().iter().all(|f| f["after"].is_null()), "{diff}");

    let (code, _, _) = p2pdma(&["diff", &file("before.json"), &file("before.json")]);
    assert_eq!(code, 0);

    // The guest's metrics, parsed.
    let families = prometheus_parse(&read("p2pdma.prom"));
    let pair = families["p2pdma_pair_supported"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s[1]["provider"] == "0000:01:00.0" && s[1]["client"] == "0000:01:00.1")
        .expect("a series for nvme-a -> nvme-b");
    assert_eq!((pair[1]["provider_name"].as_str(), pair[2].as_f64()), (Some("nvme-a"), Some(1.0)));
    assert_eq!(families["p2pdma_kernel_p2pdma_supported"][0][2], 1.0);
    let free = &families["p2pdma_p2pmem_free_bytes"][0];
    // What sysfs said (the kernel keeps a little of the CMB for itself).
    let available =
        snap["topology"]["devices"].as_array().unwrap().iter().find_map(|d| d["p2pmem"]["available"].as_f64());
    assert_eq!((free[1]["name"].as_str(), free[2].as_f64()), (Some("nvme-a"), available));
}
