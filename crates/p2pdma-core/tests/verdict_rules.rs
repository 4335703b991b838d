//! Every rule of kernel-p2pdma.md sections 1, 2 and 8, each on a small topology file.

// Tests and examples read files; the crate itself may not touch the filesystem.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::Path;

use p2pdma_core::analysis::{check, check_memory, find};
use p2pdma_core::spec;
use p2pdma_core::verdict::{MapType, Side};
use p2pdma_core::{Engine, Error, Topology};

fn topo(toml: &str) -> Topology {
    spec::parse(toml, Path::new("test.toml")).unwrap().to_topology().unwrap()
}

/// (map type, distance) for provider → client, by topology names.
fn verdict(t: &Topology, provider: &str, client: &str) -> (MapType, Option<u32>) {
    let e = Engine::new(t).unwrap();
    let r = check(&e, provider, &[client.to_string()]).unwrap();
    (r.map_type, r.distance)
}

const SWITCH: &str = r#"
[[root_port]]
name = "rp"
[[switch]]
name = "sw"
parent = "rp"
ports = 3
[[endpoint]]
name = "a"
kind = "nvme"
parent = "sw.0"
cmb_mib = 16
[[endpoint]]
name = "b"
kind = "nvme"
parent = "sw.1"
"#;

#[test]
fn same_function_is_distance_zero() {
    let t = topo(SWITCH);
    assert_eq!(verdict(&t, "a", "a"), (MapType::BusAddr, Some(0)));
}

#[test]
fn two_functions_on_one_bus_are_distance_two() {
    let t = topo(
        r#"
[[root_port]]
name = "rp"
[[endpoint]]
name = "a"
kind = "nvme"
parent = "rp"
cmb_mib = 16
[[endpoint]]
name = "b"
kind = "nvme"
parent = "rp"
function = 1
"#,
    );
    assert_eq!(verdict(&t, "a", "b"), (MapType::BusAddr, Some(2)));
    let e = Engine::new(&t).unwrap();
    let r = check(&e, "a", &["b".into()]).unwrap();
    assert_eq!(r.clients[0].common_upstream.unwrap().to_string(), "0000:00:10.0");
}

#[test]
fn one_switch_is_distance_four_by_bus_address() {
    let t = topo(SWITCH);
    assert_eq!(verdict(&t, "a", "b"), (MapType::BusAddr, Some(4)));
    let e = Engine::new(&t).unwrap();
    let v = &check(&e, "a", &["b".into()]).unwrap().clients[0];
    assert_eq!(v.common_upstream.unwrap().to_string(), "0000:01:00.0");
    assert_eq!(v.path, ["0000:03:00.0", "0000:02:00.0", "0000:01:00.0", "0000:02:01.0", "0000:04:00.0"]);
    assert!(v.acs_redirect.is_empty() && v.fixes.is_empty() && v.kernel_log.is_empty());
}

#[test]
fn nested_switches_add_two_per_level() {
    let t = topo(&std::fs::read_to_string("../../examples/topologies/nested-switches.toml").unwrap());
    assert_eq!(verdict(&t, "nvme-near", "nvme-c"), (MapType::BusAddr, Some(4)));
    assert_eq!(verdict(&t, "nvme-far", "nvme-c"), (MapType::BusAddr, Some(6)));
}

const TWO_ROOT_PORTS: &str = r#"
[machine]
cpu = "CPU"
[[host_bridge]]
name = "hb0"
id = "HBID"
[[root_port]]
name = "rp0"
[[root_port]]
name = "rp1"
[[endpoint]]
name = "a"
kind = "nvme"
parent = "rp0"
cmb_mib = 16
[[endpoint]]
name = "b"
kind = "nvme"
parent = "rp1"
"#;

fn two_root_ports(cpu: &str, hb: &str) -> Topology {
    topo(&TWO_ROOT_PORTS.replace("CPU", cpu).replace("HBID", hb))
}

#[test]
fn two_root_ports_need_the_host_bridge() {
    // Not whitelisted, not Zen: refused, hops are the two depths (2 + 2).
    let t = two_root_ports("qemu64", "8086:29c0");
    assert_eq!(verdict(&t, "a", "b"), (MapType::NotSupported, None));
    let e = Engine::new(&t).unwrap();
    let v = &check(&e, "a", &["b".into()]).unwrap().clients[0];
    assert_eq!(v.hops, 4);
    assert_eq!(v.common_upstream, None);
    assert!(v.fixes.iter().any(|f| f.contains("one PCIe switch")));
    // No ACS redirect led here, so the kernel does not warn about the whitelist.
    assert!(!v.kernel_log.iter().any(|l| l.contains("whitelist:")));
    assert!(v.kernel_log.iter().any(|l| l.contains("do not share an upstream bridge or whitelisted host bridge")));
}

#[test]
fn whitelisted_host_bridge_routes_through_it() {
    let t = two_root_ports("qemu64", "8086:2030");
    assert_eq!(verdict(&t, "a", "b"), (MapType::ThruHostBridge, Some(4)));
    let google = two_root_ports("intel", "1ae0:abcd");
    assert_eq!(verdict(&google, "a", "b").0, MapType::ThruHostBridge, "Google matches any device");
}

#[test]
fn same_host_bridge_entry_allows_within_one_bridge() {
    let t = two_root_ports("intel", "8086:3c00");
    assert_eq!(verdict(&t, "a", "b").0, MapType::ThruHostBridge);
}

fn two_host_bridges(cpu: &str, id0: &str, id1: &str) -> Topology {
    topo(&format!(
        r#"
[machine]
cpu = "{cpu}"
[[host_bridge]]
name = "hb0"
id = "{id0}"
[[host_bridge]]
name = "hb1"
bus = 0x80
{id1}
[[root_port]]
name = "rp0"
[[root_port]]
name = "rp1"
host_bridge = "hb1"
[[endpoint]]
name = "a"
kind = "nvme"
parent = "rp0"
cmb_mib = 16
[[endpoint]]
name = "b"
kind = "nvme"
parent = "rp1"
"#
    ))
}

#[test]
fn two_host_bridges_both_must_be_whitelisted() {
    // Like pxb-pcie: the second bridge's first device is a QEMU root port, not listed.
    let t = two_host_bridges("qemu64", "8086:2030", "");
    assert_eq!(verdict(&t, "a", "b").0, MapType::NotSupported);
    let e = Engine::new(&t).unwrap();
    let v = &check(&e, "a", &["b".into()]).unwrap().clients[0];
    assert_eq!(v.path.iter().filter(|p| p.starts_with("pci")).count(), 2, "{:?}", v.path);
    let hb = v.host_bridge.as_ref().unwrap();
    assert!(!hb.same_host_bridge);
    assert_eq!(hb.bridges[1].root_device.unwrap().to_string(), "0000:80:00.0");
    assert_eq!(hb.bridges[1].id.as_deref(), Some("1b36:000c"));

    let both = two_host_bridges("qemu64", "8086:2030", "id = \"8086:2031\"");
    assert_eq!(verdict(&both, "a", "b").0, MapType::ThruHostBridge);
}

#[test]
fn same_host_bridge_flag_refuses_across_bridges() {
    let t = two_host_bridges("intel", "8086:3c00", "id = \"8086:3c01\"");
    assert_eq!(verdict(&t, "a", "b").0, MapType::NotSupported);
    let e = Engine::new(&t).unwrap();
    let v = &check(&e, "a", &["b".into()]).unwrap().clients[0];
    assert!(v.reasons.iter().any(|r| r.contains("only for devices under the same host bridge")), "{:?}", v.reasons);
    assert!(v.fixes.iter().any(|f| f.contains("same host bridge")));
}

#[test]
fn zen_cpu_allows_everything_through_the_host_bridge() {
    assert_eq!(verdict(&two_root_ports("epyc", "8086:29c0"), "a", "b"), (MapType::ThruHostBridge, Some(4)));
    assert_eq!(verdict(&two_host_bridges("epyc-milan", "8086:29c0", ""), "a", "b").0, MapType::ThruHostBridge);
    // Hygon is not X86_VENDOR_AMD, and pre-Zen AMD does not count.
    assert_eq!(verdict(&two_root_ports("hygon", "8086:29c0"), "a", "b").0, MapType::NotSupported);
    let old_amd = topo(
        &TWO_ROOT_PORTS.replace("\"CPU\"", "{ vendor = \"AuthenticAMD\", family = 0x16 }").replace("HBID", "8086:29c0"),
    );
    assert_eq!(verdict(&old_amd, "a", "b").0, MapType::NotSupported);
}

/// SWITCH with ACS on its downstream ports, the IOMMU on or off.
fn acs_switch(iommu: bool, params: &str) -> Topology {
    let switch_with_acs = SWITCH.replace("ports = 3", "ports = 3\nacs = \"0x5f\"");
    topo(&format!("[machine]\niommu = {iommu}\nkernel_params = \"{params}\"\n{switch_with_acs}"))
}

#[test]
fn acs_on_both_sides_of_the_common_device_redirects() {
    let t = acs_switch(true, "");
    let e = Engine::new(&t).unwrap();
    let v = &check(&e, "a", &["b".into()]).unwrap().clients[0];
    assert_eq!(v.map_type, MapType::NotSupported);
    let found: Vec<(String, Side)> = v.acs_redirect.iter().map(|r| (r.device.to_string(), r.side)).collect();
    assert_eq!(found, [("0000:02:00.0".to_string(), Side::Provider), ("0000:02:01.0".to_string(), Side::Client)]);
    assert_eq!(v.acs_redirect[0].bits, ["RR", "CR"]);
    assert!(
        v.kernel_log.iter().any(|l| l.ends_with("pci=disable_acs_redir=0000:02:00.0;0000:02:01.0")),
        "{:?}",
        v.kernel_log
    );
    assert!(v.kernel_log.iter().any(|l| l.contains("Host bridge not in P2PDMA whitelist: 8086:29c0")));
    assert!(v.fixes[0].contains("pci=disable_acs_redir=0000:02:00.0;0000:02:01.0"));
    assert!(v.fixes[1].contains("setpci -s 0000:02:00.0 0x14e.w=0000:002c"));
}

#[test]
fn acs_only_on_the_provider_side_still_redirects() {
    // The client's port has redirect disabled on the command line; the provider's keeps it.
    let t = acs_switch(true, "pci=disable_acs_redir=0000:02:01.0");
    let e = Engine::new(&t).unwrap();
    let v = &check(&e, "a", &["b".into()]).unwrap().clients[0];
    assert_eq!(v.acs_redirect.len(), 1);
    assert_eq!(v.acs_redirect[0].side, Side::Provider);
    // And the other way round: only the client side.
    let t = acs_switch(true, "pci=disable_acs_redir=0000:02:00.0");
    let e = Engine::new(&t).unwrap();
    let v = &check(&e, "a", &["b".into()]).unwrap().clients[0];
    assert_eq!(v.acs_redirect.len(), 1);
    assert_eq!(v.acs_redirect[0].side, Side::Client);
    // Both disabled: bus address again.
    let t = acs_switch(true, "pci=disable_acs_redir=0000:02:00.0;0000:02:01.0");
    assert_eq!(verdict(&t, "a", "b"), (MapType::BusAddr, Some(4)));
}

#[test]
fn acs_without_iommu_is_not_enabled() {
    assert_eq!(verdict(&acs_switch(false, ""), "a", "b"), (MapType::BusAddr, Some(4)));
}

#[test]
fn acs_on_the_common_device_counts_once_and_above_it_not_at_all() {
    // Multifunction behind a root port: the root port is the common device.
    let t = topo(&std::fs::read_to_string("../../examples/topologies/iommu-acs.toml").unwrap());
    let e = Engine::new(&t).unwrap();
    let v = &check(&e, "nvme-a", &["nvme-b".into()]).unwrap().clients[0];
    assert_eq!(v.acs_redirect.len(), 1);
    assert_eq!(v.acs_redirect[0].side, Side::Common);
    assert_eq!(v.acs_redirect[0].device.to_string(), "0000:00:11.0");
    assert!(v.kernel_log[1].ends_with("pci=disable_acs_redir=0000:00:11.0"));
    // The switch scenario with the IOMMU on: the root port above the switch redirects, but
    // it is above the common device, so the pair stays bus-address (lab-facts.md, 3).
    let sw = std::fs::read_to_string("../../examples/topologies/switch.toml")
        .unwrap()
        .replace("cpu = \"qemu64\"", "cpu = \"qemu64\"\niommu = true");
    let t = topo(&sw);
    assert_eq!(verdict(&t, "nvme-a", "nvme-b"), (MapType::BusAddr, Some(4)));
    let rp = t.devices.iter().find(|d| d.name.as_deref() == Some("rp0")).unwrap();
    assert_eq!(rp.acs.redirect_bits(), Some(0x0c));
}

#[test]
fn disable_acs_redir_parameter_restores_bus_address() {
    let t = topo(&std::fs::read_to_string("../../examples/topologies/iommu-acs-disabled.toml").unwrap());
    assert_eq!(verdict(&t, "nvme-a", "nvme-b"), (MapType::BusAddr, Some(2)));
    let t = topo(
        &std::fs::read_to_string("../../examples/topologies/iommu-acs.toml")
            .unwrap()
            .replace("iommu = true", "iommu = true\nkernel_params = \"pci=config_acs=xx0x00x@0000:00:11.0\""),
    );
    assert_eq!(verdict(&t, "nvme-a", "nvme-b").0, MapType::BusAddr, "config_acs clears RR/CR");
}

#[test]
fn vf_walks_up_through_its_pf() {
    let t = topo(
        r#"
[[root_port]]
name = "rp"
[[switch]]
name = "sw"
parent = "rp"
[[endpoint]]
name = "nic"
kind = "nic"
parent = "sw.0"
vfs = 2
[[endpoint]]
name = "gpu"
kind = "gpu"
parent = "sw.1"
p2pmem_mib = 256
"#,
    );
    let e = Engine::new(&t).unwrap();
    let vf = t.devices.iter().find(|d| d.name.as_deref() == Some("nic-vf1")).unwrap();
    assert_eq!(vf.bdf.to_string(), "0000:03:00.2");
    assert_eq!(vf.physfn.unwrap().to_string(), "0000:03:00.0");
    assert_eq!(verdict(&t, "gpu", "nic-vf1"), (MapType::BusAddr, Some(4)));
    assert_eq!(verdict(&t, "gpu", "nic"), (MapType::BusAddr, Some(4)));
    // VF to its own PF: both step up to the PF's bridge: 1 + 1.
    let pf_as_provider = t.devices.iter().position(|d| d.name.as_deref() == Some("nic")).unwrap();
    let vf_index = t.devices.iter().position(|d| d.name.as_deref() == Some("nic-vf0")).unwrap();
    assert_eq!(e.pair(pf_as_provider, vf_index).distance, Some(2));
}

#[test]
fn ties_list_every_candidate_and_pick_the_lowest_address() {
    let t = topo(
        r#"
[[root_port]]
name = "rp"
[[switch]]
name = "sw"
parent = "rp"
ports = 3
[[endpoint]]
name = "c"
kind = "nic"
parent = "sw.0"
[[endpoint]]
name = "p2"
kind = "nvme"
parent = "sw.2"
cmb_mib = 16
[[endpoint]]
name = "p1"
kind = "nvme"
parent = "sw.1"
cmb_mib = 16
[[endpoint]]
name = "hidden"
kind = "gpu"
parent = "rp"
function = 1
p2pmem_mib = 64
published = false
"#,
    );
    let e = Engine::new(&t).unwrap();
    let r = find(&e, &["c".into()]).unwrap();
    assert_eq!(r.tied.len(), 2);
    assert_eq!(r.provider.unwrap().to_string(), "0000:04:00.0", "lowest address among ties");
    assert_eq!(r.distance, Some(4));
    assert!(r.reasons[0].contains("at random"));
    assert_eq!(r.candidates.len(), 2, "unpublished providers are not candidates");
    // `check` still works with an unpublished provider, and says so.
    let c = check(&e, "hidden", &["c".into()]).unwrap();
    assert!(c.notes[0].contains("does not publish"));
}

#[test]
fn sets_of_clients_sum_and_fail_together() {
    let t = topo(&format!("{SWITCH}\n[[endpoint]]\nname = \"x\"\nkind = \"nic\"\nparent = \"sw.2\"\n"));
    let e = Engine::new(&t).unwrap();
    let r = check(&e, "a", &["b".into(), "x".into()]).unwrap();
    assert_eq!((r.map_type, r.distance), (MapType::BusAddr, Some(8)));
    // Provider selection for a set that includes the provider itself (nvmet's case).
    let f = find(&e, &["a".into(), "b".into()]).unwrap();
    assert_eq!((f.provider.unwrap().to_string().as_str(), f.distance), ("0000:03:00.0", Some(4)));
}

#[test]
fn non_pci_clients_are_refused_or_walked_up() {
    let t = topo(&format!("{SWITCH}\n[[virtual]]\nname = \"rxe0\"\n[[virtual]]\nname = \"nvme1n1\"\nparent = \"b\"\n"));
    let e = Engine::new(&t).unwrap();
    let r = check(&e, "a", &["rxe0".into()]).unwrap();
    assert_eq!(r.map_type, MapType::NotSupported);
    assert!(r.clients[0].kernel_log[0].contains("it is not a PCI device"));
    let r = check(&e, "a", &["nvme1n1".into()]).unwrap();
    assert_eq!((r.map_type, r.distance), (MapType::BusAddr, Some(4)));
    assert_eq!(r.clients[0].client_name.as_deref(), Some("nvme1n1"));
    let f = find(&e, &["b".into(), "rxe0".into()]).unwrap();
    assert_eq!(f.provider, None);
}

#[test]
fn wrong_roles_and_unknown_devices_are_errors() {
    let t = topo(SWITCH);
    let e = Engine::new(&t).unwrap();
    // Allocating needs p2pmem/ (`check`); the verdict for any endpoint with a memory BAR
    // (`check_memory`: b has NVMe registers) does not; a bridge is neither.
    let err = check(&e, "b", &["a".into()]).unwrap_err();
    assert!(matches!(err, Error::WrongRole(_)) && err.to_string().contains("not a P2P memory provider"), "{err}");
    assert!(check_memory(&e, "b", &["a".into()]).is_ok());
    let err = check_memory(&e, "sw.1", &["a".into()]).unwrap_err();
    assert!(matches!(err, Error::WrongRole(_)) && err.to_string().contains("not an endpoint with memory"), "{err}");
    let mut no_bars = t.clone();
    no_bars.devices.iter_mut().filter(|d| d.name.as_deref() == Some("b")).for_each(|d| d.bars.clear());
    let err = check_memory(&Engine::new(&no_bars).unwrap(), "b", &["a".into()]).unwrap_err();
    assert!(err.to_string().contains("has no memory BAR and no P2P memory"), "{err}");
    let err = check(&e, "a", &["sw.1".into()]).unwrap_err();
    assert!(err.to_string().contains("not a DMA client"), "{err}");
    let err = check(&e, "a", &["0000:09:00.0".into()]).unwrap_err();
    assert!(matches!(err, Error::AbsentAddress { .. }), "{err}");
    assert!(err.to_string().contains("no PCI device at 0000:09:00.0"), "{err}");
    let err = check(&e, "a", &["0000:0g:00.0".into()]).unwrap_err();
    assert!(matches!(err, Error::BadAddress(_)) && err.to_string().contains("not a valid PCI address"), "{err}");
    let err = check(&e, "a", &["nvme-zz".into()]).unwrap_err();
    assert!(matches!(err, Error::UnknownDevice(_)) && !err.to_string().contains("address"), "{err}");
    assert!(check(&e, "03:00.0", &["04:00.0".into()]).is_ok(), "short BDFs resolve");
}

#[test]
fn spec_errors_name_the_part() {
    let bad = |s: &str| {
        spec::parse(s, Path::new("t.toml"))
            .and_then(|sp| sp.to_topology().map_err(|m| Error::Invalid { path: "t.toml".into(), msg: m.to_string() }))
            .unwrap_err()
            .to_string()
    };
    assert!(bad("[[endpoint]]\nname = \"a\"\nkind = \"nvme\"\nparent = \"nowhere\"\n")
        .contains("endpoint a: no port or host bridge named `nowhere`"));
    assert!(bad("[[root_port]]\nname = \"a\"\n[[root_port]]\nname = \"a\"\n").contains("used twice"));
    let unknown_field = bad("[[root_port]]\nname = \"a\"\nbogus = 1\n");
    assert!(
        unknown_field.contains("t.toml: line ") && unknown_field.contains("unknown field `bogus`"),
        "{unknown_field}"
    );
    assert!(bad("[machine]\ncpu = \"z80\"\n").contains("unknown cpu preset"));
    assert!(bad("[[root_port]]\nname = \"r\"\n[[endpoint]]\nname = \"a\"\nkind = \"nvme\"\nparent = \"r\"\n[[endpoint]]\nname = \"b\"\nkind = \"nvme\"\nparent = \"r\"\n").contains("taken twice"));
    assert!(bad("[[switch]]\nname = \"s\"\nparent = \"s2.0\"\n[[switch]]\nname = \"s2\"\nparent = \"s.0\"\n")
        .contains("no root port or switch port"));
}

#[test]
fn odd_cmb_sizes_are_not_registered_like_the_driver() {
    let t =
        topo("[[root_port]]\nname = \"r\"\n[[endpoint]]\nname = \"a\"\nkind = \"nvme\"\nparent = \"r\"\ncmb_mib = 1\n");
    assert!(t.devices.iter().all(|d| d.p2pmem.is_none()));
}

#[test]
fn unknown_acs_makes_a_verdict_uncertain_only_when_it_matters() {
    let mut t = acs_switch(false, "");
    for d in &mut t.devices {
        if d.name.as_deref().is_some_and(|n| n.starts_with("sw.")) {
            d.acs = p2pdma_core::config::Acs::Unknown;
        }
    }
    let e = Engine::new(&t).unwrap();
    let v = &check(&e, "a", &["b".into()]).unwrap().clients[0];
    assert_eq!(v.map_type, MapType::BusAddr);
    assert!(!v.certain);
    assert_eq!(v.acs_unknown.len(), 2);
    assert!(v.reasons.iter().any(|r| r.contains("becomes not_supported")), "{:?}", v.reasons);
}

/// `cpu_supports_p2pdma` decides a path through a host bridge off the whitelist: when no
/// input named the CPU (an import without lscpu), the refusal is uncertain, says why, and
/// a path below one switch (bus address, no CPU rule) stays certain.
#[test]
fn an_unknown_cpu_makes_a_host_bridge_refusal_uncertain() {
    let mut t = two_root_ports("qemu64", "8086:29c0");
    t.machine.cpu_vendor = None;
    t.machine.cpu_family = None;
    let e = Engine::new(&t).unwrap();
    let r = check(&e, "a", &["b".to_string()]).unwrap();
    assert_eq!(r.map_type, MapType::NotSupported);
    assert!(!r.certain, "the CPU rule could allow it");
    assert!(r.notes.iter().any(|n| n.contains("no input named the CPU")), "{:?}", r.notes);
    assert!(r.clients[0].reasons.iter().any(|n| n.contains("lscpu")), "{:?}", r.clients[0].reasons);

    let known = two_root_ports("qemu64", "8086:29c0");
    let e = Engine::new(&known).unwrap();
    assert!(check(&e, "a", &["b".to_string()]).unwrap().certain);

    let mut below_switch = topo(SWITCH);
    below_switch.machine.cpu_vendor = None;
    let e = Engine::new(&below_switch).unwrap();
    let r = check(&e, "a", &["b".to_string()]).unwrap();
    assert_eq!(r.map_type, MapType::BusAddr);
    assert!(r.certain);
}
