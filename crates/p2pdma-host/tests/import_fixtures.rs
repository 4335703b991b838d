//! `import` on the real machines of fixtures/machines/: the facts each SOURCE.md states,
//! nvidia-smi's cells and the kernel's refusal against p2pdma, and no panic on any fixture
//! cut at any line.

use std::path::PathBuf;

use p2pdma_core::config::{Acs, PortType};
use p2pdma_core::pathclass::PathClass;
use p2pdma_core::verdict::MapType;
use p2pdma_core::{Bdf, Engine, Topology};
use p2pdma_host::import::report::Outcome;
use p2pdma_host::import::{self, Format, Input};

const FIXTURES: &[&str] = &[
    "threadripper-pro-wrx90-2xrtx6000ada-stelline/paste.md",
    "xeon-e5-2s-cisco-vic-manyvfs-hwloc/lstopo.xml",
    "power8-minsky-4xp100-multidomain-hwloc/lstopo.xml",
    "intel-client-2xarc-b70-xe-refusal/dmesg-excerpt.txt",
    "epyc-9374f-2s-4xrtx6000ada-stelline/lspci-tree-numactl.md",
    "epyc-9374f-2s-4xrtx6000ada-stelline/lspci-vvv-gpu3-nics.md",
    "epyc-9374f-2s-4xrtx6000ada-stelline/nvidia-smi-topo.md",
    "epyc-9374f-2s-4xrtx6000ada-stelline/lscpu.md",
    "amd-am5-ryzen9950x-2xarc-b70-tree/p2p-probe.log",
    "xeon-x5600-2s-hp-sl390s-3xtesla-hwloc/lstopo.xml",
    "xeon-8174-2s-dgx2-16xv100-plx-hwloc/lstopo.xml",
    "xeon-5500-2s-dell-r410-hwloc-v1/lstopo.xml",
    "xeon-e5-2680-2s-dell-dcs8000z-mic-nvme-hwloc/lstopo.xml",
    "xeon-e7-4870-4s-dell-r910-groups-hwloc/lstopo.xml",
    "amd-2xmi50-gfx906-p2pdma-added/devlog-finding3-excerpt.md",
    "server-connectx5ex-nonroot-theseus/lspci-vnn-nonroot-excerpt.md",
];

#[path = "../../../tests/support/corpus.rs"]
mod corpus;
use corpus::MACHINES;

fn machine(files: &[&str]) -> import::Assembled {
    assemble(&files.iter().map(|f| fixture(f)).collect::<Vec<_>>())
}

fn fixture(rel: &str) -> Input {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/machines").join(rel);
    Input { name: rel.to_string(), text: std::fs::read_to_string(&path).unwrap() }
}

fn bdf(s: &str) -> Bdf {
    s.parse().unwrap()
}

fn assemble(inputs: &[Input]) -> import::Assembled {
    import::assemble(&import::parse_inputs(inputs).unwrap()).unwrap()
}

fn idx(e: &Engine<'_>, s: &str) -> usize {
    e.index_of(bdf(s)).unwrap_or_else(|| panic!("{s} not in the machine"))
}

fn dev<'t>(t: &'t Topology, s: &str) -> &'t p2pdma_core::model::Device {
    t.devices.iter().find(|d| d.bdf == bdf(s)).unwrap_or_else(|| panic!("{s} not in the machine"))
}

#[test]
fn threadripper_paste_gives_the_tree_gpus_nic_and_cpu() {
    let a = assemble(&[fixture(FIXTURES[0])]);
    let formats: Vec<Format> = a.report.inputs[0].sections.iter().map(|s| s.format).collect();
    for f in
        [Format::LspciTree, Format::LspciVerbose, Format::NvidiaSmiTopo, Format::Lscpu, Format::Numactl, Format::Grub]
    {
        assert!(formats.contains(&f), "{f:?} not found in {formats:?}");
    }
    assert_eq!(formats.iter().filter(|f| **f == Format::LspciVerbose).count(), 4, "four sudo lspci -vvv -s outputs");
    assert!(a.report.inputs[0].skipped_lines > 100, "prose, prompts, other outputs skipped and counted");
    let t = &a.topology;
    assert_eq!(a.report.host_bridges, ["pci0000:00", "pci0000:20", "pci0000:c0", "pci0000:e0"]);
    assert_eq!(dev(t, "c1:00.0").upstream, Some(bdf("c0:01.1")));
    assert_eq!(dev(t, "c2:00.0").upstream, Some(bdf("c0:03.1")));
    assert_eq!(dev(t, "21:00.0").upstream, Some(bdf("20:01.1")));
    assert_eq!((dev(t, "c1:00.0").vendor, dev(t, "c1:00.0").class >> 8), (0x10de, 0x0300));
    assert_eq!(dev(t, "21:00.1").class >> 8, 0x0200, "class taken from 21:00.0, same IDs");
    // Root, all ACSCtl minus: the ConnectX-7's ACS present and off; the GPU has none.
    assert!(matches!(dev(t, "21:00.0").acs, Acs::Present { offset: 0x230, ctrl: 0, .. }));
    assert_eq!(dev(t, "c1:00.0").acs, Acs::Absent);
    assert_eq!(dev(t, "c0:01.1").acs, Acs::Unknown, "no lspci -vvv of the root port");
    assert_eq!(dev(t, "00:03.1").port_type, Some(PortType::RootPort));
    assert_eq!(dev(t, "01:00.0").port_type, Some(PortType::SwitchUpstream));
    assert_eq!(dev(t, "02:00.0").port_type, Some(PortType::SwitchDownstream));
    let m = &t.machine;
    assert_eq!(
        (m.cpu_vendor.as_deref(), m.cpu_family, m.arch.as_deref()),
        (Some("AuthenticAMD"), Some(25), Some("x86_64"))
    );
    assert_eq!(a.report.numa_nodes, Some(1));
    assert!(m.cmdline.as_deref().unwrap().starts_with("amd_iommu=off iommu=pt"));
    assert_eq!(m.iommu, Some(false));
    assert_eq!(m.kernel_release, None, "no uname or dmesg in the paste: unknown, not guessed");
    assert!(a.report.unknown.iter().any(|u| u.fact == "kernel_release" && u.reveal == "uname -a"));
    assert!(a.report.disagreements.is_empty(), "{:?}", a.report.disagreements);

    let e = Engine::new(t).unwrap();
    // NVMe behind the HighPoint carrier: one inner switch (PIX), across the outer one (PXB).
    let (n5, n6, nb) = (idx(&e, "05:00.0"), idx(&e, "06:00.0"), idx(&e, "0b:00.0"));
    assert_eq!(e.path_class(n5, n6), PathClass::PIX);
    assert_eq!(e.path_class(n5, nb), PathClass::PXB);
    assert_eq!(e.pair(n5, nb).map_type, MapType::BusAddr, "no host bridge on the path");
    assert!(!e.certain(n5, nb), "the switch ports' ACS was not readable: uncertain");
    // The ConnectX-7's two ports: below root port 20:01.1, whose ACS is unknown.
    let (x0, x1) = (idx(&e, "21:00.0"), idx(&e, "21:00.1"));
    assert!(!e.certain(x0, x1));
    // The two GPUs: through host bridge c0, allowed for an AMD Zen CPU whatever ACS says.
    let (g0, g1) = (idx(&e, "c1:00.0"), idx(&e, "c2:00.0"));
    assert_eq!(e.pair(g0, g1).map_type, MapType::ThruHostBridge);
    assert!(e.certain(g0, g1));
}

#[test]
fn threadripper_nvidia_smi_cells_all_agree() {
    let a = assemble(&[fixture(FIXTURES[0])]);
    let cc = &a.report.crosscheck;
    assert_eq!((cc.path_classes.agree, cc.path_classes.disagree, cc.path_classes.not_compared), (16, 0, 0));
    let cell = |r: &str, c: &str| cc.cells.iter().find(|x| x.row == r && x.column == c).unwrap();
    assert_eq!(cell("GPU0", "GPU1").nvidia_smi, "PHB");
    assert_eq!(cell("GPU0", "GPU1").row_device, Some(bdf("c1:00.0")));
    assert_eq!(cell("GPU1", "NIC0").column_device, Some(bdf("21:00.0")));
    assert_eq!(cell("GPU1", "NIC0").nvidia_smi, "NODE");
    assert_eq!(cell("NIC0", "NIC1").column_device, Some(bdf("21:00.1")));
    assert_eq!(cell("NIC0", "NIC1").p2pdma.as_deref(), Some("PIX"));
    assert!(!cc.disagrees());
}

#[test]
fn xeon_hwloc_gives_two_sockets_and_the_vic_switch_chain() {
    let a = assemble(&[fixture(FIXTURES[1])]);
    let t = &a.topology;
    assert_eq!(a.report.host_bridges, ["pci0000:00", "pci0000:80"]);
    assert_eq!(a.report.numa_nodes, Some(2));
    for (child, up) in [
        ("06:00.0", "00:03.0"),
        ("07:01.0", "06:00.0"),
        ("09:00.0", "07:01.0"),
        ("0a:00.0", "09:00.0"),
        ("0b:00.0", "0a:00.0"),
        ("0c:00.0", "0a:01.0"),
    ] {
        assert_eq!(dev(t, child).upstream, Some(bdf(up)), "{child}");
    }
    let ports = [
        ("00:03.0", PortType::RootPort),
        ("06:00.0", PortType::SwitchUpstream),
        ("07:01.0", PortType::SwitchDownstream),
        ("09:00.0", PortType::SwitchUpstream),
        ("0a:00.0", PortType::SwitchDownstream),
    ];
    for (b, p) in ports {
        assert_eq!(dev(t, b).port_type, Some(p), "{b}");
    }
    assert_eq!(dev(t, "0c:00.2").vendor, 0x1138, "the quirk kept as found");
    assert_eq!(dev(t, "0b:00.0").numa_node, Some(0));
    assert_eq!(dev(t, "88:00.0").numa_node, Some(1));
    assert!(t.devices.iter().all(|d| d.acs == Acs::Unknown), "hwloc has no config space");
    assert_eq!(t.machine.arch.as_deref(), Some("x86_64"));
    let e = Engine::new(t).unwrap();
    let (b0, b1, c0, x88, n02) =
        (idx(&e, "0b:00.0"), idx(&e, "0b:00.1"), idx(&e, "0c:00.0"), idx(&e, "88:00.0"), idx(&e, "02:00.0"));
    assert_eq!(e.path_class(b0, b1), PathClass::PIX);
    assert_eq!(e.path_class(b0, x88), PathClass::SYS);
    assert_eq!(e.path_class(b0, n02), PathClass::PHB);
    assert_eq!(e.pair(b0, c0).map_type, MapType::BusAddr, "common upstream bridge 09:00.0");
    assert!(!e.certain(b0, c0));
    assert!(a.report.unknown.iter().any(|u| u.fact == "cpu" && u.reveal == "lscpu"), "no CPU vendor in this XML");
}

#[test]
fn power8_hwloc_gives_four_domains_and_refuses_every_gpu_pair() {
    let a = assemble(&[fixture(FIXTURES[2])]);
    let t = &a.topology;
    assert_eq!(a.report.host_bridges, ["pci0002:00", "pci0003:00", "pci000a:00", "pci000b:00"]);
    let gpus = ["0002:01:00.0", "0003:01:00.0", "000a:01:00.0", "000b:01:00.0"];
    for g in gpus {
        let up = format!("{}:00:00.0", &g[..4]);
        assert_eq!(dev(t, g).upstream, Some(bdf(&up)));
        assert_eq!((dev(t, g).vendor, dev(t, g).device), (0x10de, 0x15f9));
    }
    assert_eq!(t.machine.arch.as_deref(), Some("ppc64le"));
    assert_eq!(t.machine.kernel_release.as_deref(), Some("4.19.0-14-powerpc64le"));
    let e = Engine::new(t).unwrap();
    for p in gpus {
        for c in gpus {
            if p != c {
                assert_eq!(e.pair(idx(&e, p), idx(&e, c)).map_type, MapType::NotSupported, "{p} {c}");
            }
        }
    }
    assert_eq!(e.path_class(idx(&e, gpus[0]), idx(&e, gpus[1])), PathClass::NODE);
    assert_eq!(e.path_class(idx(&e, gpus[0]), idx(&e, gpus[2])), PathClass::SYS);
}

/// The Arc B70 workstation's two root ports as its author describes them (SOURCE.md:
/// `00:06.0` → bus 03, `00:06.3` → bus 07), written as `lspci -tv` would print them.
const ARC_TREE: &str = "-[0000:00]-+-00.0  Intel Corporation Device [8086:7d1b]\n           +-06.0-[03]----00.0  Intel Corporation Device [8086:e223]\n           \\-06.3-[07]----00.0  Intel Corporation Device [8086:e223]\n";

#[test]
fn arc_refusal_line_is_read_and_left_out_without_a_tree() {
    let a = assemble(&[fixture(FIXTURES[3])]);
    let lines = &a.report.crosscheck.lines;
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0].event,
        import::dmesg::P2pEvent::Refused { client: bdf("0000:07:00.0"), provider: bdf("0000:03:00.0") }
    );
    assert_eq!(lines[0].outcome, Outcome::NotCompared);
    assert_eq!(lines[0].origin.line, 29);
    let left: Vec<Bdf> = a.report.left_out.iter().map(|l| l.device).collect();
    assert_eq!(left, [bdf("03:00.0"), bdf("07:00.0")]);
    assert_eq!(a.topology.machine.kernel.p2pdma.built, p2pdma_core::model::Built::Yes);
}

#[test]
fn arc_refusal_agrees_with_the_verdict_on_its_tree() {
    let lscpu =
        Input { name: "lscpu".into(), text: "Architecture: x86_64\nVendor ID: GenuineIntel\nCPU family: 6\n".into() };
    let tree = Input { name: "tree".into(), text: ARC_TREE.into() };
    let a = assemble(&[fixture(FIXTURES[3]), tree, lscpu]);
    let l = &a.report.crosscheck.lines[0];
    assert_eq!(l.outcome, Outcome::Agree, "{l:?}");
    assert!(!a.report.crosscheck.disagrees());
}

#[test]
fn arc_refusal_disagrees_with_a_tree_that_puts_both_under_one_switch() {
    let tree = "-[0000:00]-+-00.0  Intel Corporation Device [8086:7d1b]\n           \\-06.0-[01-07]----00.0-[02-07]--+-00.0-[03]----00.0  Intel Corporation Device [8086:e223]\n                                           \\-01.0-[07]----00.0  Intel Corporation Device [8086:e223]\n";
    let a = assemble(&[fixture(FIXTURES[3]), Input { name: "tree".into(), text: tree.into() }]);
    let l = &a.report.crosscheck.lines[0];
    assert_eq!(l.outcome, Outcome::Disagree, "{l:?}");
    assert!(a.report.crosscheck.disagrees());
}

#[test]
fn nvidia_smi_cell_disagreement_is_listed_cell_by_cell() {
    let mut paste = fixture(FIXTURES[0]);
    paste.text = paste.text.replace("GPU0     X      PHB", "GPU0     X      PIX");
    let a = assemble(&[paste]);
    let cc = &a.report.crosscheck;
    assert_eq!((cc.path_classes.agree, cc.path_classes.disagree), (15, 1));
    let bad: Vec<_> = cc.cells.iter().filter(|c| c.outcome == Outcome::Disagree).collect();
    assert_eq!((bad[0].row.as_str(), bad[0].column.as_str(), bad[0].nvidia_smi.as_str()), ("GPU0", "GPU1", "PIX"));
    assert_eq!(bad[0].p2pdma.as_deref(), Some("PHB"));
}

#[test]
fn every_fixture_cut_at_every_line_never_panics() {
    for rel in FIXTURES {
        let full = fixture(rel).text;
        let lines: Vec<&str> = full.split_inclusive('\n').collect();
        for k in 0..=lines.len() {
            for text in [lines[..k].concat(), lines[k..].concat()] {
                let input = Input { name: rel.to_string(), text };
                if let Ok(parsed) = import::parse_inputs(&[input]) {
                    let _ = import::assemble(&parsed);
                }
            }
        }
    }
}

/// A `lspci -vvv` of `n` devices: switches of 8 NVMe drives under root ports, as root.
pub fn generated_lspci(n: usize) -> String {
    let mut s = String::new();
    let mut bus = 1u32;
    let mut count = 0;
    let mut rp = 0;
    while count < n && bus < 250 {
        rp += 1;
        s += &format!("00:{:02x}.0 PCI bridge [0604]: Intel Corporation Device [8086:2030]\n\tBus: primary=00, secondary={bus:02x}, subordinate={:02x}, sec-latency=0\n\tCapabilities: [40] Express (v2) Root Port (Slot+), MSI 00\n\t\tLnkCap:\tPort #0, Speed 8GT/s, Width x16\n\t\tLnkSta:\tSpeed 8GT/s, Width x16\n\tCapabilities: [148 v1] Access Control Services\n\t\tACSCap:\tSrcValid+ TransBlk+ ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-\n\t\tACSCtl:\tSrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-\n\tKernel driver in use: pcieport\n\n", rp % 32, bus + 9);
        let up = bus;
        s += &format!("{up:02x}:00.0 PCI bridge [0604]: PLX Technology, Inc. Device [10b5:9797]\n\tBus: primary={up:02x}, secondary={:02x}, subordinate={:02x}\n\tCapabilities: [68] Express (v2) Upstream Port, MSI 00\n\n", up + 1, up + 9);
        for k in 0..8u32 {
            let down = up + 1;
            let leaf = up + 2 + k;
            s += &format!("{down:02x}:{k:02x}.0 PCI bridge [0604]: PLX Technology, Inc. Device [10b5:9797]\n\tBus: primary={down:02x}, secondary={leaf:02x}, subordinate={leaf:02x}\n\tCapabilities: [68] Express (v2) Downstream Port (Slot+), MSI 00\n\tCapabilities: [f24 v1] Access Control Services\n\t\tACSCap:\tSrcValid+ TransBlk+ ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl+ DirectTrans+\n\t\tACSCtl:\tSrcValid- TransBlk- ReqRedir- CmpltRedir- UpstreamFwd- EgressCtrl- DirectTrans-\n\n");
            s += &format!("{leaf:02x}:00.0 Non-Volatile memory controller [0108]: Samsung Electronics Co Ltd NVMe SSD Controller PM9A1/PM9A3/980PRO [144d:a80a] (prog-if 02 [NVM Express])\n\tSubsystem: Samsung Electronics Co Ltd SSD 980 PRO [144d:a801]\n\tControl: I/O- Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR- FastB2B- DisINTx+\n\tStatus: Cap+ 66MHz- UDF- FastB2B- ParErr- DEVSEL=fast >TAbort- <TAbort- <MAbort- >SERR- <PERR- INTx-\n\tLatency: 0, Cache Line Size: 64 bytes\n\tNUMA node: 0\n\tIOMMU group: {count}\n\tRegion 0: Memory at fb{leaf:02x}0000 (64-bit, non-prefetchable) [size=16K]\n\tCapabilities: [40] Power Management version 3\n\t\tFlags: PMEClk- DSI- D1- D2- AuxCurrent=0mA PME(D0-,D1-,D2-,D3hot-,D3cold-)\n\t\tStatus: D0 NoSoftRst+ PME-Enable- DSel=0 DScale=0 PME-\n\tCapabilities: [70] Express (v2) Endpoint, MSI 00\n\t\tDevCap:\tMaxPayload 256 bytes, PhantFunc 0, Latency L0s unlimited, L1 unlimited\n\t\tLnkCap:\tPort #0, Speed 16GT/s, Width x4, ASPM L1, Exit Latency L1 <64us\n\t\tLnkSta:\tSpeed 16GT/s, Width x4\n\tCapabilities: [100 v2] Advanced Error Reporting\n\t\tUESta:\tDLP- SDES- TLP- FCP- CmpltTO- CmpltAbrt- UnxCmplt- RxOF- MalfTLP- ECRC- UnsupReq- ACSViol-\n\tKernel driver in use: nvme\n\tKernel modules: nvme\n\n");
            count += 2;
        }
        count += 2;
        bus += 10;
    }
    s
}

#[test]
fn a_generated_600_kb_lspci_parses_whole() {
    // Timing is measured, not asserted: `cargo test --release -p p2pdma-host --test
    // import_fixtures a_generated -- --nocapture` prints it (docs/import.md has the figure).
    let mut text = String::new();
    let mut copies = 0;
    while text.len() < 600_000 {
        // Each copy in a domain of its own, so every address stays unique.
        copies += 1;
        let block = generated_lspci(450);
        for l in block.lines() {
            if p2pdma_host::import::split_sections(l).sections.first().is_some_and(|s| s.format == Format::LspciVerbose)
            {
                text += &format!("{copies:04x}:{l}\n");
            } else {
                text += l;
                text.push('\n');
            }
        }
    }
    assert!(text.len() >= 600_000);
    let start = std::time::Instant::now();
    let a = assemble(&[Input { name: "big".into(), text: text.clone() }]);
    let elapsed = start.elapsed();
    eprintln!("import of {} bytes ({} devices): {:?}", text.len(), a.topology.devices.len(), elapsed);
    assert!(a.topology.devices.len() > 800);
    assert!(a.report.left_out.is_empty());
}

mod fuzz {
    use p2pdma_host::import::{self, Input};
    use proptest::prelude::*;

    /// Text made of the characters the formats are built from, so the parsers' deeper
    /// branches are reached, not only their "unknown line" exits.
    fn pasteish() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                Just("-+-[0000:00]-+-".to_string()),
                Just(" |           +-".to_string()),
                Just("\\-".to_string()),
                Just("-[01-13]--".to_string()),
                Just("00.0".to_string()),
                Just("  Name [10de:26b1]".to_string()),
                Just("c1:00.0 VGA compatible controller: NVIDIA Corporation".to_string()),
                Just("\tCapabilities: [148 v1] Access Control Services".to_string()),
                Just("\t\tACSCtl:\tSrcValid+ ReqRedir+".to_string()),
                Just("\tBus: primary=00, secondary=01, subordinate=ff".to_string()),
                Just("\tRegion 0: Memory at ffffffffffffffff (64-bit, prefetchable) [size=99999999999T]".to_string()),
                Just("00: 86 80 b8 7a 07 04 10 00 11 00 04 06 00 00 81 00".to_string()),
                Just("GPU0\tGPU1\tNIC0\tCPU Affinity".to_string()),
                Just("GPU0 X NV4 PIX 0-3 N/A".to_string()),
                Just("NIC Legend:\n  NIC0: mlx5_0".to_string()),
                Just("[ 1.0] xe 0000:07:00.0: cannot be used for peer-to-peer DMA as the client and provider (0000:03:00.0)".to_string()),
                Just("<topology version=\"3.0\"><object type=\"Bridge\" bridge_pci=\"0000:[00-ff]\">".to_string()),
                Just("Architecture: x86_64\nVendor ID: AuthenticAMD".to_string()),
                Just("```".to_string()),
                Just("\n".to_string()),
                "[ -~\t]{0,12}".prop_map(|s| s),
                any::<char>().prop_map(|c| c.to_string()),
            ],
            0..40,
        )
        .prop_map(|parts| parts.join(""))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn import_never_panics_on_pasteish_text(text in pasteish()) {
            let input = Input { name: "fuzz".into(), text };
            if let Ok(parsed) = import::parse_inputs(&[input]) {
                let _ = import::assemble(&parsed);
            }
        }
    }
}

#[test]
fn epyc_two_sockets_eight_host_bridges_and_every_nvidia_smi_cell_agrees() {
    let a = machine(MACHINES[3]);
    let t = &a.topology;
    let hbs: Vec<String> =
        ["00", "20", "40", "60", "80", "a0", "c0", "e0"].iter().map(|b| format!("pci0000:{b}")).collect();
    assert_eq!(a.report.host_bridges, hbs);
    assert_eq!(a.report.numa_nodes, Some(2));
    let cc = &a.report.crosscheck;
    assert_eq!((cc.path_classes.agree, cc.path_classes.disagree, cc.path_classes.not_compared), (64, 0, 0));
    let cell = |r: &str, c: &str| cc.cells.iter().find(|x| x.row == r && x.column == c).unwrap();
    assert_eq!(
        (cell("GPU0", "GPU1").row_device, cell("GPU0", "GPU1").column_device),
        (Some(bdf("01:00.0")), Some(bdf("41:00.0")))
    );
    assert_eq!(
        (cell("GPU0", "NIC3").nvidia_smi.as_str(), cell("GPU0", "NIC3").column_device),
        ("SYS", Some(bdf("81:00.1")))
    );
    assert_eq!(cell("NIC2", "NIC3").p2pdma.as_deref(), Some("PIX"));
    // The second port's node: its host bridge's, from the first port's `NUMA node: 1`.
    assert_eq!(dev(t, "81:00.1").numa_node, Some(1));
    assert!(a.report.facts.iter().any(|f| f.subject == "0000:81:00.1" && f.fact == "numa_node" && f.derived.is_some()));
    for (child, up) in [("01:00.0", "00:01.1"), ("e1:00.0", "e0:01.1"), ("21:00.1", "20:03.1"), ("65:00.0", "64:10.0")]
    {
        assert_eq!(dev(t, child).upstream, Some(bdf(up)), "{child}");
    }
    for (b, p) in [
        ("60:01.1", PortType::RootPort),
        ("61:00.0", PortType::SwitchUpstream),
        ("62:00.0", PortType::SwitchDownstream),
        ("63:00.0", PortType::SwitchUpstream),
        ("64:10.0", PortType::SwitchDownstream),
    ] {
        assert_eq!(dev(t, b).port_type, Some(p), "{b}");
    }
    // Root, ACSCtl all minus on the ConnectX-7; nothing read of the ports.
    assert!(matches!(dev(t, "81:00.0").acs, Acs::Present { offset: 0x230, ctrl: 0, .. }));
    assert_eq!(dev(t, "60:01.1").acs, Acs::Unknown);
    let e = Engine::new(t).unwrap();
    let (n65, n66, n6b) = (idx(&e, "65:00.0"), idx(&e, "66:00.0"), idx(&e, "6b:00.0"));
    assert_eq!((e.path_class(n65, n66), e.path_class(n65, n6b)), (PathClass::PIX, PathClass::PXB));
    assert_eq!(e.pair(n65, n6b).map_type, MapType::BusAddr, "both below the carrier's outer switch");
    assert!(!e.certain(n65, n6b), "the switch ports' ACS was not readable");
    let (g0, g1, g2, g3) = (idx(&e, "01:00.0"), idx(&e, "41:00.0"), idx(&e, "c1:00.0"), idx(&e, "e1:00.0"));
    assert_eq!(
        (e.path_class(g0, g1), e.path_class(g2, g3), e.path_class(g0, g3)),
        (PathClass::NODE, PathClass::NODE, PathClass::SYS)
    );
    // AMD Zen (lscpu: AuthenticAMD family 25): through any host bridge, ACS or not.
    assert_eq!(e.pair(g3, g0).map_type, MapType::ThruHostBridge);
    assert!(e.certain(g3, g0));
}

#[test]
fn epyc_without_lscpu_cannot_decide_the_host_bridge() {
    let a = machine(&MACHINES[3][..3]);
    let e = Engine::new(&a.topology).unwrap();
    let (g0, g3) = (idx(&e, "01:00.0"), idx(&e, "e1:00.0"));
    assert!(!e.certain(g3, g0), "no CPU vendor: the kernel's CPU rule cannot be applied");
    assert!(a.report.unknown.iter().any(|u| u.fact == "cpu" && u.reveal == "lscpu"));
    assert_eq!(a.report.crosscheck.path_classes.agree, 64, "path classes do not rest on the CPU");
}

#[test]
fn am5_tree_inside_a_probe_log_places_both_cards_switches() {
    let a = machine(MACHINES[4]);
    let t = &a.topology;
    assert_eq!(a.report.inputs[0].sections.iter().map(|s| s.format).collect::<Vec<_>>(), [Format::LspciTree]);
    assert!(a.report.inputs[0].skipped_lines > 30, "the prose around the tree is skipped");
    assert_eq!(t.devices.len(), 9);
    assert_eq!(a.report.host_bridges, ["pci0000:00"]);
    for (child, up) in [("03:00.0", "02:01.0"), ("02:01.0", "01:00.0"), ("01:00.0", "00:01.1"), ("08:00.0", "07:01.0")]
    {
        assert_eq!(dev(t, child).upstream, Some(bdf(up)), "{child}");
    }
    assert_eq!(dev(t, "06:00.0").port_type, Some(PortType::SwitchUpstream));
    assert_eq!(dev(t, "07:01.0").port_type, Some(PortType::SwitchDownstream));
    let e = Engine::new(t).unwrap();
    let (g0, g1) = (idx(&e, "03:00.0"), idx(&e, "08:00.0"));
    assert_eq!(e.path_class(g0, g1), PathClass::PHB);
    // The log's `CPU : AMD Ryzen 9 9950X` is prose, not lscpu: the CPU stays unknown.
    assert!(!e.certain(g0, g1));
    assert!(a.report.unknown.iter().any(|u| u.fact == "cpu" && u.reveal == "lscpu"));
    // What `lscpu` on that machine says settles it: AMD family 0x1a goes through the host bridge.
    let lscpu = Input {
        name: "lscpu".into(),
        text: "Architecture: x86_64\nVendor ID: AuthenticAMD\nModel name: AMD Ryzen 9 9950X 16-Core Processor\nCPU family: 26\n".into(),
    };
    let a = assemble(&[fixture(MACHINES[4][0]), lscpu]);
    let e = Engine::new(&a.topology).unwrap();
    let (g0, g1) = (idx(&e, "03:00.0"), idx(&e, "08:00.0"));
    assert_eq!(e.pair(g0, g1).map_type, MapType::ThruHostBridge);
    assert!(e.certain(g0, g1));
}

#[test]
fn sl390s_hwloc_gives_two_io_hubs_and_three_teslas() {
    let a = machine(MACHINES[5]);
    let t = &a.topology;
    assert_eq!(a.report.host_bridges, ["pci0000:00", "pci0000:10"]);
    assert_eq!(a.report.numa_nodes, Some(2));
    assert_eq!(t.machine.kernel_release.as_deref(), Some("2.6.27.39-0.3-perfctr"));
    for (g, node, up) in [("06:00.0", 0, "00:07.0"), ("14:00.0", 1, "10:03.0"), ("11:00.0", 1, "10:07.0")] {
        assert_eq!((dev(t, g).vendor, dev(t, g).class >> 8), (0x10de, 0x0302), "{g}");
        assert_eq!((dev(t, g).numa_node, dev(t, g).upstream), (Some(node), Some(bdf(up))), "{g}");
    }
    let e = Engine::new(t).unwrap();
    let (g06, g14, g11, nic) = (idx(&e, "06:00.0"), idx(&e, "14:00.0"), idx(&e, "11:00.0"), idx(&e, "05:00.0"));
    assert_eq!(e.path_class(g14, g11), PathClass::PHB);
    assert_eq!(e.path_class(g06, g14), PathClass::SYS);
    assert_eq!(e.path_class(g06, nic), PathClass::PHB);
    assert!(!e.certain(g14, g11), "no CPU in the XML: the host-bridge decision is open");
}

#[test]
fn dgx2_hwloc_gives_three_deep_plx_switches_and_whitelisted_skylake_root_ports() {
    let a = machine(MACHINES[6]);
    let t = &a.topology;
    assert_eq!(a.report.host_bridges, ["pci0000:2b", "pci0000:4e", "pci0000:ae", "pci0000:d7"]);
    assert_eq!(a.report.numa_nodes, Some(2));
    assert_eq!(t.devices.iter().filter(|d| d.vendor == 0x10de && d.class >> 8 == 0x0302).count(), 16);
    let chain = [
        ("2b:00.0", PortType::RootPort),
        ("2c:00.0", PortType::SwitchUpstream),
        ("2d:04.0", PortType::SwitchDownstream),
        ("32:00.0", PortType::SwitchUpstream),
        ("33:00.0", PortType::SwitchDownstream),
    ];
    for (b, p) in chain {
        assert_eq!(dev(t, b).port_type, Some(p), "{b}");
    }
    assert_eq!(dev(t, "34:00.0").upstream, Some(bdf("33:00.0")));
    assert_eq!(dev(t, "b7:00.0").numa_node, Some(1));
    assert!(a.report.unknown.iter().any(|u| u.subject == "0000:66:00.0" && u.fact == "class"), "all-zero pci_type");
    // hwloc carries no BARs: the V100s' memory is unknown, said, and never made up.
    assert!(dev(t, "34:00.0").bars.is_empty());
    assert!(a.report.unknown.iter().any(|u| u.subject == "0000:34:00.0" && u.fact == "bars"), "BARs said unknown");
    let e = Engine::new(t).unwrap();
    let (a34, a36, a39, a57, ab7) =
        (idx(&e, "34:00.0"), idx(&e, "36:00.0"), idx(&e, "39:00.0"), idx(&e, "57:00.0"), idx(&e, "b7:00.0"));
    assert_eq!(e.path_class(a34, a36), PathClass::PIX);
    assert_eq!(e.path_class(a34, a39), PathClass::PXB);
    assert_eq!(e.path_class(a34, a57), PathClass::NODE);
    assert_eq!(e.path_class(a34, ab7), PathClass::SYS);
    assert_eq!(e.pair(a34, a36).map_type, MapType::BusAddr);
    assert!(!e.certain(a34, a36), "PLX ports' ACS not in hwloc");
    // Each host bridge's 00.0 is a Sky Lake-E root port 8086:2030, on the kernel's whitelist.
    assert_eq!(e.pair(a34, a57).map_type, MapType::ThruHostBridge);
    assert_eq!(e.pair(a34, ab7).map_type, MapType::ThruHostBridge);
    assert!(e.certain(a34, ab7), "across host bridges ACS does not matter; the CPU is in the XML");
}

#[test]
fn r410_hwloc_v1_reads_sockets_commas_and_a_wrapped_attribute() {
    let a = machine(MACHINES[7]);
    let t = &a.topology;
    assert_eq!(t.devices.len(), 9);
    assert_eq!(a.report.numa_nodes, Some(2));
    assert_eq!((dev(t, "01:00.1").upstream, dev(t, "01:00.1").numa_node), (Some(bdf("00:01.0")), Some(0)));
    assert_eq!((dev(t, "04:03.0").vendor, dev(t, "04:03.0").class >> 8), (0x102b, 0x0300));
    // The Mellanox HCA the XML hangs directly from host bridge 0000:[00-04] although its bus
    // (51) is outside that range: kept, on a root bus of its own.
    assert_eq!((dev(t, "51:00.0").vendor, dev(t, "51:00.0").upstream), (0x15b3, None));
}

#[test]
fn every_machine_survives_snapshot_round_trip_unchanged() {
    use p2pdma_core::snapshot;
    for files in MACHINES {
        let first = snapshot::to_json(&machine(files).topology);
        let again = snapshot::to_json(&machine(files).topology);
        assert_eq!(first, again, "{files:?}: import is deterministic");
        let back = snapshot::from_json(&first, std::path::Path::new("machine.json")).unwrap();
        assert_eq!(snapshot::to_json(&back), first, "{files:?}: snapshot → topology → snapshot");
        let fresh = machine(files).topology;
        let (e1, e2) = (Engine::new(&fresh).unwrap(), Engine::new(&back).unwrap());
        for p in 0..back.devices.len() {
            for c in 0..back.devices.len() {
                if p != c {
                    assert_eq!(e1.path_class(p, c), e2.path_class(p, c), "{files:?}");
                    assert_eq!(e1.pair(p, c).map_type, e2.pair(p, c).map_type, "{files:?}");
                }
            }
        }
    }
}

#[test]
fn dcs8000z_hwloc_gives_a_xeon_phi_a_connectx3_and_uncore_host_bridges() {
    let a = machine(MACHINES[8]);
    let t = &a.topology;
    assert_eq!(a.report.host_bridges, ["pci0000:00", "pci0000:7f", "pci0000:80", "pci0000:ff"]);
    assert_eq!((a.report.numa_nodes, t.devices.len()), (Some(2), 136));
    let facts = |b: &str| (dev(t, b).class >> 8, dev(t, b).upstream, dev(t, b).numa_node);
    assert_eq!(facts("83:00.0"), (0x0b40, Some(bdf("80:03.0")), Some(1)), "Xeon Phi coprocessor");
    assert_eq!(facts("82:00.0"), (0x0280, Some(bdf("80:02.2")), Some(1)), "ConnectX-3");
    assert_eq!(facts("00:02.0"), (0x0108, None, Some(0)), "NVMe straight on the root bus");
    assert_eq!(dev(t, "7f:08.0").numa_node, None, "uncore bus outside every package");
    let e = Engine::new(t).unwrap();
    let (ib, mic, eth, nvme) = (idx(&e, "82:00.0"), idx(&e, "83:00.0"), idx(&e, "02:00.0"), idx(&e, "00:02.0"));
    assert_eq!(e.path_class(ib, mic), PathClass::PHB);
    assert_eq!(e.path_class(eth, nvme), PathClass::PHB);
    assert_eq!(e.path_class(eth, ib), PathClass::SYS);
    assert!(!e.certain(ib, mic), "no CPU vendor in the XML, no ACS");
}

#[test]
fn r910_hwloc_io_hubs_hang_from_two_node_groups_so_their_node_is_unknown() {
    let a = machine(MACHINES[9]);
    let t = &a.topology;
    assert_eq!(a.report.host_bridges, ["pci0000:00", "pci0000:40"]);
    assert_eq!((a.report.numa_nodes, t.devices.len()), (Some(4), 37));
    assert_eq!((dev(t, "43:00.0").vendor, dev(t, "43:00.0").upstream), (0x1077, Some(bdf("40:03.0"))));
    assert_eq!(dev(t, "43:00.0").numa_node, None, "locality is a group of nodes 1 and 3, not one node");
    assert!(a.report.unknown.iter().any(|u| u.subject == "0000:43:00.0" && u.fact == "numa_node"));
    assert!(a.report.unknown.iter().any(|u| u.subject == "0000:02:00.0" && u.fact == "numa_node"));
}

const MI50: &str = "amd-2xmi50-gfx906-p2pdma-added/devlog-finding3-excerpt.md";

/// The two MI50s as the devlog describes them (SOURCE.md: root ports `00:03.1` and `00:03.2`,
/// two switch hops to each GPU, GPUs at `04:00.0` and `07:00.0`), written as `lspci -tv` would
/// print them. The switch ports' bus numbers are ours (three buses per card), not the devlog's.
const MI50_TREE: &str = "-[0000:00]-+-00.0  Host bridge [1022:1480]\n           +-03.1-[02-04]----00.0-[03-04]----00.0-[04]----00.0  Advanced Micro Devices, Inc. [AMD/ATI] Vega 20 [1002:66a1]\n           \\-03.2-[05-07]----00.0-[06-07]----00.0-[07]----00.0  Advanced Micro Devices, Inc. [AMD/ATI] Vega 20 [1002:66a1]\n";

fn mi50_added(a: &import::Assembled) -> Vec<(Bdf, Option<u64>, Option<u64>, usize)> {
    a.report
        .crosscheck
        .lines
        .iter()
        .map(|l| match l.event {
            import::dmesg::P2pEvent::Added { provider, start, size } => (provider, start, size, l.origin.line),
            ref other => panic!("only `added` lines in the excerpt, got {other:?}"),
        })
        .collect()
}

#[test]
fn mi50_added_lines_record_each_provider_with_its_range() {
    let a = assemble(&[fixture(MI50)]);
    assert_eq!(
        mi50_added(&a),
        [
            (bdf("0000:04:00.0"), Some(0x100_0000_0000), Some(32 << 30), 7),
            (bdf("0000:07:00.0"), Some(0x110_0000_0000), Some(32 << 30), 8),
        ]
    );
    for l in &a.report.crosscheck.lines {
        assert_eq!(l.outcome, Outcome::NotCompared);
        assert!(l.note.as_deref().unwrap_or("").contains("not in the assembled machine"), "{l:?}");
    }
    assert!(!a.report.crosscheck.disagrees());
}

#[test]
fn mi50_added_lines_pass_the_cross_check_on_the_described_tree() {
    let tree = Input { name: "tree".into(), text: MI50_TREE.into() };
    let a = assemble(&[fixture(MI50), tree]);
    assert_eq!(mi50_added(&a).len(), 2);
    for l in &a.report.crosscheck.lines {
        assert_eq!((l.outcome, l.note.as_deref()), (Outcome::NotCompared, Some("not a verdict")), "{l:?}");
    }
    assert!(!a.report.crosscheck.disagrees());
    let e = Engine::new(&a.topology).unwrap();
    let (g0, g1) = (idx(&e, "04:00.0"), idx(&e, "07:00.0"));
    assert_eq!(e.path_class(g0, g1), PathClass::PHB, "two root ports of one host bridge");
}

const CX5: &str = "server-connectx5ex-nonroot-theseus/lspci-vnn-nonroot-excerpt.md";

/// A tree for the ConnectX-5 Ex of the non-root excerpt, written as `lspci -tv` would print it.
/// Ours, not the source's: the root port `58:00.0` and the second port `59:00.1` are assumed
/// (the excerpt shows one function and no bridge), to give the pair a common root port.
pub const CX5_TREE: &str = "-[0000:58]---00.0-[59]--+-00.0  Mellanox Technologies MT28800 Family [ConnectX-5 Ex] [15b3:1019]\n                        \\-00.1  Mellanox Technologies MT28800 Family [ConnectX-5 Ex] [15b3:1019]\n";

#[test]
fn nonroot_lspci_is_read_but_its_device_needs_a_tree() {
    let parsed = import::lspci::parse(&fixture(CX5).text).unwrap();
    let d = &parsed.devices[0];
    assert_eq!((parsed.devices.len(), d.bdf, d.line), (1, bdf("59:00.0"), 2));
    assert_eq!((d.caps, d.acs, d.port_type), (import::lspci::Caps::Denied, Some(Acs::Unknown), None));
    assert_eq!((d.vendor, d.device, d.subsystem), (Some(0x15b3), Some(0x1019), Some((0x15b3, 0x0008))));
    assert_eq!((d.numa_node, d.driver.as_deref()), (Some(1), Some("mlx5_core")));
    let bar = &d.bars[..];
    assert_eq!(bar.len(), 1, "the expansion ROM is not a BAR");
    assert_eq!((bar[0].index, bar[0].start, bar[0].size), (0, 0x39bf_fe00_0000, 32 << 20));
    assert!(bar[0].memory && bar[0].prefetchable && bar[0].is_64 && d.bar_numbers_counted);
    let a = assemble(&[fixture(CX5)]);
    assert!(a.topology.devices.is_empty());
    assert_eq!(a.report.left_out.iter().map(|l| l.device).collect::<Vec<_>>(), [bdf("59:00.0")]);
}

#[test]
fn nonroot_lspci_on_a_tree_leaves_the_pair_uncertain_not_allowed() {
    let tree = Input { name: "tree".into(), text: CX5_TREE.into() };
    let a = assemble(&[fixture(CX5), tree]);
    let t = &a.topology;
    let nic = dev(t, "59:00.0");
    assert_eq!((nic.vendor, nic.device, nic.numa_node), (0x15b3, 0x1019, Some(1)));
    let e = Engine::new(t).unwrap();
    let (p0, p1) = (idx(&e, "59:00.0"), idx(&e, "59:00.1"));
    assert_eq!(e.path_class(p0, p1), PathClass::PIX);
    assert!(!e.certain(p0, p1), "ACS of the root port and the NIC was not readable");
}
