//! The three sources agree: a topology file, the sysfs tree the kernel would show for it,
//! and a snapshot of that tree give the same verdicts.

mod common;

use std::path::Path;

use common::{scenarios, write_tree, Privilege};
use p2pdma_core::analysis::{check, check_memory, find, matrix};
use p2pdma_core::config::Acs;
use p2pdma_core::verdict::MapType;
use p2pdma_core::{snapshot, Engine, Error, Topology};
use p2pdma_host::input::{read_snapshot, read_spec};
use p2pdma_host::machine;
use p2pdma_host::roots::Roots;

fn live(topo: &Topology, dir: &Path, privilege: Privilege) -> Topology {
    let (sys, proc) = write_tree(topo, dir, privilege);
    machine::read(&Roots { sys, proc }, None).unwrap()
}

/// Every verdict in JSON form: the contract is what must match.
fn all_verdicts(t: &Topology) -> String {
    let e = Engine::new(t).unwrap();
    let m = matrix(&e);
    let mut out = serde_json::to_string(&m).unwrap();
    for p in &m.providers {
        for c in &m.clients {
            let r = check_memory(&e, &p.to_string(), &[c.to_string()]).unwrap();
            out.push_str(&serde_json::to_string(&r).unwrap());
        }
    }
    for c in &m.clients {
        out.push_str(&serde_json::to_string(&find(&e, &[c.to_string()]).unwrap()).unwrap());
    }
    out
}

#[test]
fn sysfs_fixture_reads_back_like_its_topology_file() {
    for path in scenarios() {
        let (_, from_spec) = read_spec(&path).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let from_sysfs = live(&from_spec, dir.path(), Privilege::Root);
        assert_eq!(from_sysfs.devices.len(), from_spec.devices.len(), "{}", path.display());
        for (a, b) in from_spec.devices.iter().zip(&from_sysfs.devices) {
            assert_eq!(
                (a.bdf, a.upstream, a.acs, a.port_type, &a.p2pmem, &a.bars),
                (b.bdf, b.upstream, b.acs, b.port_type, &b.p2pmem, &b.bars),
                "{}",
                path.display()
            );
        }
        let (ms, ml) = (matrix(&Engine::new(&from_spec).unwrap()), matrix(&Engine::new(&from_sysfs).unwrap()));
        assert_eq!(serde_json::to_string(&ms).unwrap(), serde_json::to_string(&ml).unwrap(), "{}", path.display());
        assert_eq!(from_sysfs.machine.cpu_vendor, from_spec.machine.cpu_vendor);
        assert_eq!(from_sysfs.machine.iommu, from_spec.machine.iommu);
    }
}

#[test]
fn snapshot_round_trip_gives_identical_analysis() {
    for path in scenarios() {
        let (_, from_spec) = read_spec(&path).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let from_sysfs = live(&from_spec, dir.path(), Privilege::Root);
        let file = dir.path().join("snap.json");
        std::fs::write(&file, snapshot::to_json(&from_sysfs)).unwrap();
        let back = read_snapshot(&file).unwrap();
        assert_eq!(back, from_sysfs, "{}", path.display());
        assert_eq!(all_verdicts(&back), all_verdicts(&from_sysfs), "{}", path.display());
    }
}

#[test]
fn sysfs_reader_finds_drivers_links_vfs_and_class_devices() {
    let (_, t) = read_spec(Path::new("../../examples/topologies/switch.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let live = live(&t, dir.path(), Privilege::Root);
    let nvme = live.devices.iter().find(|d| d.bdf.to_string() == "0000:03:00.0").unwrap();
    assert_eq!(nvme.driver.as_deref(), Some("nvme"));
    assert!(nvme.link.as_ref().unwrap().degraded());
    let indices: Vec<u8> = nvme.bars.iter().map(|b| b.index).collect();
    assert_eq!(indices, [0, 2], "registers and the CMB");
    assert_eq!(live.machine.kernel_release.as_deref(), Some("7.2.0-test"));
    assert_eq!(live.machine.cpu_family, Some(15));
    assert_eq!(live.aliases["nvme1n1"].pci_parent.unwrap().to_string(), "0000:04:00.0");
    assert_eq!(live.aliases["rxe0"].pci_parent, None);
    let e = Engine::new(&live).unwrap();
    let r = check(&e, "03:00.0", &["nvme1n1".into()]).unwrap();
    assert_eq!((r.map_type, r.distance), (MapType::BusAddr, Some(4)));
    let r = check(&e, "03:00.0", &["rxe0".into()]).unwrap();
    assert_eq!(r.map_type, MapType::NotSupported);
}

#[test]
fn without_root_acs_is_unknown_and_verdicts_say_so() {
    let (_, t) = read_spec(Path::new("../../examples/topologies/iommu-acs.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let live = live(&t, dir.path(), Privilege::User);
    assert!(live.devices.iter().all(|d| d.acs == Acs::Unknown));
    let e = Engine::new(&live).unwrap();
    let v = &check(&e, "01:00.0", &["01:00.1".into()]).unwrap().clients[0];
    // Assumed not redirecting, and flagged: with root it would be refused.
    assert_eq!(v.map_type, MapType::BusAddr);
    assert!(!v.certain);
    assert!(v.reasons.iter().any(|r| r.contains("could not be read")));
}

#[test]
fn malformed_snapshots_are_clear_errors() {
    let p = Path::new("snap.json");
    let err = |text: &str| snapshot::from_json(text, p).unwrap_err().to_string();
    assert!(err("{").contains("snap.json: not valid JSON"));
    assert!(err("{\"schema\": \"other\"}").contains("not a p2pdma snapshot"));
    assert!(err("{\"schema\": \"p2pdma-snapshot\", \"version\": 99}").contains("newer than this p2pdma understands"));
    assert!(err("{\"schema\": \"p2pdma-snapshot\", \"version\": 1, \"created_by\": \"x\", \"topology\": {}}")
        .contains("malformed snapshot"));
    // A dangling upstream reference is refused, not followed.
    let (_, t) = read_spec(Path::new("../../examples/topologies/switch.toml")).unwrap();
    let mut broken = t.clone();
    broken.devices.retain(|d| d.bdf.to_string() != "0000:02:00.0");
    let e = err(&snapshot::to_json(&broken));
    assert!(e.contains("0000:02:00.0, which is not in the topology"), "{e}");
    let mut looped = t;
    let first = looped.devices[1].bdf;
    looped.devices[1].upstream = Some(looped.devices[2].bdf);
    looped.devices[2].upstream = Some(first);
    assert!(matches!(snapshot::from_json(&snapshot::to_json(&looped), p), Err(Error::Invalid { .. })));
}

/// Sysfs trees captured from the lab's real guest kernel (crates/p2pdma-lab/fixtures).
fn real_fixture(name: &str) -> Topology {
    let base = Path::new("../p2pdma-lab/fixtures").join(name);
    machine::read(&Roots { sys: base.join("sys"), proc: base.join("proc") }, None).unwrap()
}

#[test]
fn real_guest_switch_tree_gives_bus_address() {
    let t = real_fixture("switch");
    let e = Engine::new(&t).unwrap();
    let r = check(&e, "03:00.0", &["04:00.0".into()]).unwrap();
    assert_eq!((r.map_type, r.distance), (MapType::BusAddr, Some(4)));
    assert!(r.clients[0].certain);
    let m = r.p2pmem.unwrap();
    assert_eq!((m.size, m.available, m.published), (16 << 20, 16711680, true));
    assert_eq!(t.machine.kernel_release.as_deref(), Some("7.2.13+deb14-amd64"));
}

#[test]
fn real_guest_multifunction_iommu_tree_refuses_like_the_kernel() {
    let t = real_fixture("multifunction-iommu");
    assert_eq!(t.machine.iommu, Some(true));
    let rp = t.devices.iter().find(|d| d.bdf.to_string() == "0000:00:11.0").unwrap();
    assert_eq!(rp.acs, Acs::Present { offset: 0x148, cap: 0x5f, ctrl: 0x1d });
    let e = Engine::new(&t).unwrap();
    let v = &check(&e, "01:00.0", &["01:00.1".into()]).unwrap().clients[0];
    assert_eq!(v.map_type, MapType::NotSupported);
    assert!(v.kernel_log[1].ends_with("pci=disable_acs_redir=0000:00:11.0"));
    // (The lab's conformance suite checks these lines against the live kernel's log.)
}
