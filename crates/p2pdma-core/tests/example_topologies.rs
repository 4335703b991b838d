//! Golden tests of the example GPU machines: every cell of the all-pairs matrix, both the
//! kernel's verdict and the hardware path class, derived by hand here with the reason.

// Tests read the example files; the crate itself may not touch the filesystem.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::Path;

use p2pdma_core::analysis::{check, check_memory, matrix};
use p2pdma_core::{spec, Engine, MapType, Topology};

fn load(name: &str) -> Topology {
    let path = format!("../../examples/topologies/{name}.toml");
    spec::from_text(&std::fs::read_to_string(&path).unwrap(), Path::new(&path)).unwrap().1
}

/// Rows and columns by name, and every cell as (verdict text, path class).
type Cells = (Vec<String>, Vec<String>, Vec<Vec<(String, String)>>);

/// The matrix as text cells.
fn cells(t: &Topology) -> Cells {
    let e = Engine::new(t).unwrap();
    let m = matrix(&e);
    let name = |b| t.devices.iter().find(|d| d.bdf == b).unwrap().name.clone().unwrap();
    let rows = m.providers.iter().map(|&b| name(b)).collect();
    let cols = m.clients.iter().map(|&b| name(b)).collect();
    let cells = m
        .cells
        .iter()
        .enumerate()
        .map(|(pi, row)| {
            row.iter()
                .enumerate()
                .map(|(ci, c)| {
                    let v = match (c.map_type, c.distance) {
                        _ if m.providers[pi] == m.clients[ci] => "SELF".to_string(),
                        (MapType::BusAddr, Some(d)) => format!("BUS{d}"),
                        (MapType::ThruHostBridge, Some(d)) => format!("HB{d}"),
                        _ => "NO".to_string(),
                    };
                    assert!(m.certain(pi, ci), "a topology file's ACS is always known");
                    (v, m.path_classes[pi][ci].as_str().to_string())
                })
                .collect()
        })
        .collect();
    (rows, cols, cells)
}

#[test]
fn gpu_server_every_cell_by_hand() {
    let t = load("gpu-server");
    let (rows, cols, cells) = cells(&t);
    // Every endpoint has a memory BAR (GPUs: registers and aperture; NICs: the BAR the file
    // gives; NVMe: registers, nvme0 also its CMB): all 16 are rows and columns, in address
    // order: per switch gpu, gpu, nic, nvme.
    let order: Vec<String> = (0..4)
        .flat_map(|s| [format!("gpu{}", 2 * s), format!("gpu{}", 2 * s + 1), format!("nic{s}"), format!("nvme{s}")])
        .collect();
    assert_eq!(rows, order);
    assert_eq!(cols, order);
    let switch = |name: &str| order.iter().position(|n| n == name).unwrap() / 4;
    for (pi, p) in rows.iter().enumerate() {
        for (ci, c) in cols.iter().enumerate() {
            let (sp, sc) = (switch(p), switch(c));
            let want = if p == c {
                ("SELF", "X")
            } else if sp == sc {
                // endpoint -> downstream port -> switch upstream port (common) -> downstream
                // port -> endpoint: 2 + 2 hops; no IOMMU, so the switch's ACS is not enabled.
                ("BUS4", "PIX")
            } else if sp / 2 == sc / 2 {
                // No common bridge: both chains are 4 deep (endpoint, downstream port,
                // upstream port, root port), 4 + 4; both host bridges are Skylake-SP
                // (8086:2020), whitelisted across bridges. Two host bridges of one socket.
                ("HB8", "NODE")
            } else {
                // The same verdict; the host bridges sit on different NUMA nodes.
                ("HB8", "SYS")
            };
            assert_eq!((cells[pi][ci].0.as_str(), cells[pi][ci].1.as_str()), want, "{p} -> {c}");
        }
    }
}

#[test]
fn capture_box_every_cell_by_hand() {
    let t = load("capture-box");
    let (rows, cols, cells) = cells(&t);
    let order = ["gpu0", "nic0", "gpu1", "nvme0", "nic1", "fpga0"];
    assert_eq!(rows, order);
    assert_eq!(cols, order);
    // Chain depths (device up to its root port): gpu0, nic0: 4 (downstream port, sw0,
    // rp0); gpu1, nvme0: 6 (sw2.x, sw2, sw1.0, sw1, rp1); nic1: 4; fpga0: 2 (rp2).
    // Pairs without a common bridge: depth + depth through the host bridge, allowed by the
    // AMD Zen CPU rule; the hardware path is PHB (one host bridge, different root ports).
    let want: [[(&str, &str); 6]; 6] = [
        // gpu0: nic0 shares sw0, but the IOMMU enabled ACS redirect on sw0's downstream
        // ports: through the host bridge, distance still 4; the wire is PIX.
        [("SELF", "X"), ("HB4", "PIX"), ("HB10", "PHB"), ("HB10", "PHB"), ("HB8", "PHB"), ("HB6", "PHB")],
        [("HB4", "PIX"), ("SELF", "X"), ("HB10", "PHB"), ("HB10", "PHB"), ("HB8", "PHB"), ("HB6", "PHB")],
        // gpu1: nvme0 shares sw2 (no ACS): 2 + 2, one switch. nic1 shares sw1: 4 + 2, two
        // switches (sw2, sw1): PXB; rp1's ACS redirect is above the common device.
        [("HB10", "PHB"), ("HB10", "PHB"), ("SELF", "X"), ("BUS4", "PIX"), ("BUS6", "PXB"), ("HB8", "PHB")],
        [("HB10", "PHB"), ("HB10", "PHB"), ("BUS4", "PIX"), ("SELF", "X"), ("BUS6", "PXB"), ("HB8", "PHB")],
        [("HB8", "PHB"), ("HB8", "PHB"), ("BUS6", "PXB"), ("BUS6", "PXB"), ("SELF", "X"), ("HB6", "PHB")],
        // fpga0 alone on rp2: 2 + the other's depth, through the host bridge.
        [("HB6", "PHB"), ("HB6", "PHB"), ("HB8", "PHB"), ("HB8", "PHB"), ("HB6", "PHB"), ("SELF", "X")],
    ];
    for (pi, row) in want.iter().enumerate() {
        for (ci, &(v, class)) in row.iter().enumerate() {
            assert_eq!(
                (cells[pi][ci].0.as_str(), cells[pi][ci].1.as_str()),
                (v, class),
                "{} -> {}",
                order[pi],
                order[ci]
            );
        }
    }
}

#[test]
fn gpu_as_provider_has_a_verdict_and_its_bars() {
    let t = load("capture-box");
    let e = Engine::new(&t).unwrap();
    let err = check(&e, "gpu0", &["nic0".into()]).unwrap_err().to_string();
    assert!(err.contains("not a P2P memory provider"), "allocating needs p2pmem/: {err}");
    let r = check_memory(&e, "gpu0", &["nic0".into()]).unwrap();
    assert!(!r.publishes);
    assert_eq!(r.map_type, MapType::ThruHostBridge);
    let bars: Vec<(u8, u64, bool, bool)> =
        r.memory_bars.iter().map(|b| (b.index, b.size, b.is_64, b.prefetchable)).collect();
    assert_eq!(bars, [(0, 16 << 20, false, false), (1, 256 << 20, true, true), (3, 32 << 20, true, true)]);
    assert!(r.notes.iter().any(|n| n.contains("publishes no P2P memory")));
    let r = check_memory(&e, "fpga0", &["gpu1".into()]).unwrap();
    assert!(r.publishes);
    assert_eq!(r.memory_bars[1].size, 256 << 20, "the P2P memory's BAR");
}

#[test]
fn bars_in_topology_files_are_checked() {
    let base = "[[root_port]]\nname = \"rp0\"\n[[endpoint]]\nname = \"x\"\nkind = \"gpu\"\nparent = \"rp0\"\n";
    let err = |extra: &str| {
        spec::parse(&format!("{base}{extra}"), Path::new("t.toml")).unwrap().to_topology().unwrap_err().to_string()
    };
    assert!(err("bars = [{ index = 5, size = \"1M\", bits = 64 }]").contains("numbered 0 to 5"));
    assert!(err("bars = [{ index = 0, size = \"3M\" }]").contains("power of two"));
    assert!(err("bars = [{ index = 0, size = \"1M\", bits = 64 }, { index = 1, size = \"1M\" }]").contains("overlaps"));
    assert!(err("bars = [{ index = 0, size = \"1M\" }]\np2pmem_mib = 64").contains("prefetchable memory BAR"));
    assert!(err("bars = [{ index = 0, size = \"lots\" }]").contains("not a byte count"));
    let t = spec::parse(
        &format!("{base}bars = [{{ index = 2, size = \"64G\", prefetchable = true }}]"),
        Path::new("t.toml"),
    )
    .unwrap()
    .to_topology()
    .unwrap();
    let gpu = t.devices.iter().find(|d| d.name.as_deref() == Some("x")).unwrap();
    assert_eq!(gpu.bars.len(), 1);
    let b = &gpu.bars[0];
    assert_eq!((b.index, b.size, b.is_64, b.prefetchable), (2, 64 << 30, true, true));
    assert_eq!(b.start % b.size, 0, "aligned to its size");
    assert_eq!(b.bus_start, Some(b.start), "no host bridge offset in a topology file");
}
