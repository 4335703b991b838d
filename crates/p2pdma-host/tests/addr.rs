//! `addr` on sysfs fixture trees whose BAR registers (bus addresses) and `resource` (CPU
//! addresses) differ by a host bridge window offset, as on many arm64 and POWER machines.

mod common;

use std::path::Path;

use common::{write_tree, Privilege};
use p2pdma_core::addr::{addr, Route, TargetSpec};
use p2pdma_core::{spec, Engine, Error, Topology};
use p2pdma_host::input::read_spec;
use p2pdma_host::machine;
use p2pdma_host::roots::Roots;

/// The host bridge maps bus address B at CPU address B + OFFSET.
const OFFSET: u64 = 0x40_0000_0000;

fn shifted_live(name: &str, dir: &Path) -> Topology {
    let (_, mut t) = read_spec(Path::new(&format!("../../examples/topologies/{name}.toml"))).unwrap();
    for d in &mut t.devices {
        for b in &mut d.bars {
            b.bus_start = Some(b.start);
            b.start += OFFSET;
        }
    }
    let (sys, proc) = write_tree(&t, dir, Privilege::User);
    machine::read(&Roots { sys, proc }, None).unwrap()
}

fn target(s: &str) -> TargetSpec {
    TargetSpec::parse(s).unwrap()
}

#[test]
fn addr_gives_the_bar_register_not_the_cpu_address() {
    let dir = tempfile::tempdir().unwrap();
    let live = shifted_live("capture-box", dir.path());
    let e = Engine::new(&live).unwrap();
    // gpu1 and nvme0 share sw2 without ACS: by bus address; the 64-bit BAR register (read
    // from the first 64 bytes of config space, which need no root) gives the address.
    let gpu1 = live.devices.iter().find(|d| d.bdf.to_string() == "0000:09:00.0").unwrap();
    let bar1 = gpu1.bars.iter().find(|b| b.index == 1).unwrap();
    assert!(bar1.is_64 && bar1.prefetchable);
    let bus = bar1.bus_start.unwrap();
    assert_eq!(bar1.start, bus + OFFSET, "resource is the CPU address");
    let r = addr(&e, "0000:0a:00.0", &target("0000:09:00.0:1+0x1000")).unwrap();
    assert_eq!(r.route, Route::BusAddress);
    assert_eq!(r.bus_address, Some(bus + 0x1000));
    assert_eq!(r.dma_address, Some(bus + 0x1000));
    assert_eq!(r.cpu_address, bus + OFFSET + 0x1000);
    assert_eq!(r.host_bridge_offset, Some(OFFSET as i128));
    assert!(r.advice.iter().any(|a| a.contains("never program the CPU address")));
    assert!(r.advice.iter().any(|a| a.contains("posted writes")));
    // Without root ACS is unknown: the route may change, and the report says so.
    assert!(!r.certain);
}

#[test]
fn addr_defaults_to_the_p2p_memory_bar_and_through_the_iommu_has_no_fixed_address() {
    let dir = tempfile::tempdir().unwrap();
    let live = shifted_live("capture-box", dir.path());
    let e = Engine::new(&live).unwrap();
    // fpga0 publishes 256 MiB in BAR 2; nic1 reaches it through the host bridge, IOMMU on.
    let r = addr(&e, "0000:0b:00.0", &target("0000:0c:00.0")).unwrap();
    assert_eq!((r.bar.index, r.bar_holds_p2pmem), (2, true));
    assert_eq!(r.route, Route::ThroughHostBridge);
    assert_eq!(r.dma_address, None);
    assert!(r.advice[0].contains("VFIO") && r.advice[0].contains("dma-buf"), "{:?}", r.advice);
}

#[test]
fn addr_bad_input_names_device_and_bar() {
    let (_, t) = read_spec(Path::new("../../examples/topologies/capture-box.toml")).unwrap();
    let e = Engine::new(&t).unwrap();
    let err = |c: &str, s: &str| {
        let e: Error = addr(&e, c, &target(s)).unwrap_err();
        assert!(matches!(e, Error::WrongRole(_) | Error::UnknownDevice(_)));
        e.to_string()
    };
    assert_eq!(err("gpu1", "gpu0:2"), "gpu0 (0000:03:00.0) has no BAR 2 (memory BARs: 0, 1, 3)");
    assert_eq!(
        err("gpu1", "gpu0:1+0x10000000"),
        "gpu0 (0000:03:00.0) BAR 1: offset 0x10000000 is past the BAR's end (size 0x10000000)"
    );
    assert!(err("sw0", "gpu0").contains("not a DMA client"));
    assert!(err("gpu0", "sw0").contains("not an endpoint with memory"));
    // An I/O BAR, and a device with no memory BAR at all.
    let io = "[[root_port]]\nname = \"rp0\"\n[[root_port]]\nname = \"rp1\"\n\
              [[endpoint]]\nname = \"a\"\nkind = \"device\"\nparent = \"rp0\"\nbars = [{ index = 0, size = 4096 }, { index = 1, size = 32, io = true }]\n\
              [[endpoint]]\nname = \"b\"\nkind = \"device\"\nparent = \"rp1\"\nbars = [{ index = 0, size = 32, io = true }]\n";
    let t = spec::parse(io, Path::new("io.toml")).unwrap().to_topology().unwrap();
    let e = Engine::new(&t).unwrap();
    let msg = addr(&e, "b", &target("a:1")).unwrap_err().to_string();
    assert_eq!(msg, "a (0000:01:00.0) BAR 1 is an I/O BAR, not memory (memory BARs: 0)");
    let msg = addr(&e, "a", &target("b")).unwrap_err().to_string();
    assert!(msg.starts_with("b (0000:02:00.0) has no memory BAR"), "{msg}");
}

/// The real guest's sysfs trees (captured by the lab): the address `addr` gives for each
/// CMB is the one the kernel logged when it registered it ("added peer-to-peer DMA memory
/// START-END"); on q35 the host bridge has no offset, so bus and CPU addresses agree.
#[test]
fn addr_of_the_cmb_is_what_the_kernel_logged_in_the_real_guest() {
    for fixture in ["switch", "multifunction-iommu"] {
        let root = Path::new("../p2pdma-lab/fixtures").join(fixture);
        let topo = machine::read(&Roots { sys: root.join("sys"), proc: root.join("proc") }, None).unwrap();
        let e = Engine::new(&topo).unwrap();
        let dmesg = std::fs::read_to_string(root.join("dmesg.txt")).unwrap();
        let mut seen = 0;
        for line in dmesg.lines().filter(|l| l.contains("added peer-to-peer DMA memory")) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let bdf =
                words.iter().map(|w| w.trim_end_matches(':')).find(|w| w.parse::<p2pdma_core::Bdf>().is_ok()).unwrap();
            let (start, end) = words.last().unwrap().split_once('-').unwrap();
            let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap();
            let (start, end) = (hex(start), hex(end));
            let r = addr(&e, bdf, &target(bdf)).unwrap();
            assert!(r.bar_holds_p2pmem, "{fixture}: {bdf}");
            assert_eq!(r.cpu_address, start, "{fixture}: {bdf}: the kernel's CPU address");
            assert_eq!(r.bus_address, Some(start), "{fixture}: {bdf}: the BAR register");
            assert!(r.bar.size > end - start, "{fixture}: {bdf}: the BAR holds the whole pool");
            // A snapshot from before BAR registers were recorded: raw config space still says.
            let mut old = topo.clone();
            old.devices.iter_mut().flat_map(|d| d.bars.iter_mut()).for_each(|b| b.bus_start = None);
            let r = addr(&Engine::new(&old).unwrap(), bdf, &target(bdf)).unwrap();
            assert_eq!(r.bus_address, Some(start), "{fixture}: {bdf}: decoded from config_hex");
            seen += 1;
        }
        assert!(seen > 0, "{fixture}: the kernel logged a CMB");
    }
}
