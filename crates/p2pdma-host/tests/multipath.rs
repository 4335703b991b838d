//! NVMe native multipath on sysfs fixture trees shaped as the kernel shows them
//! (`nvme_core.multipath=Y`): a visible head `nvme<s>n<h>` under
//! `devices/virtual/nvme-subsystem/`, one hidden path disk `nvme<s>c<c>n<h>` per controller,
//! and, since 6.15, the head's `multipath/` links to its paths.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::{write_tree, Privilege};
use p2pdma_core::copy_plan::{choose_route, EndReport, Route, Via};
use p2pdma_core::model::{Alias, MultipathPath};
use p2pdma_core::transfer::{End, EndKind};
use p2pdma_core::{analysis, kernel, spec, Bdf, Engine, MapType, Topology};
use p2pdma_host::machine;
use p2pdma_host::roots::Roots;

/// nvme-a (with a CMB) and nvme-b behind one switch, nvme-c on a second root port: the
/// host bridge (not whitelisted) refuses nvme-a <-> nvme-c.
const MACHINE: &str = r#"
[machine]
cpu = "qemu64"
kernel_release = "7.2.13+deb14-amd64"
[[root_port]]
name = "rp0"
[[root_port]]
name = "rp1"
[[switch]]
name = "sw"
parent = "rp0"
ports = 2
[[endpoint]]
name = "nvme-a"
kind = "nvme"
parent = "sw.0"
cmb_mib = 16
[[endpoint]]
name = "nvme-b"
kind = "nvme"
parent = "sw.1"
[[endpoint]]
name = "nvme-c"
kind = "nvme"
parent = "rp1"
"#;

/// A head `nvme<subsys>n1` and its paths: (topology name of the controller's PCI device,
/// controller instance).
struct Head<'a> {
    subsys: u32,
    paths: &'a [(&'a str, u32)],
}

/// The machine as sysfs shows it with multipath: the fixture writer's plain `nvme<i>n1`
/// disks replaced by heads and hidden path disks; `group`: the head's `multipath/` links
/// (6.15 and later).
fn read_machine(dir: &Path, heads: &[Head<'_>], group: bool) -> Topology {
    let model = spec::parse(MACHINE, Path::new("test.toml")).unwrap().to_topology().unwrap();
    let (sys, proc) = write_tree(&model, dir, Privilege::Root);
    for e in fs::read_dir(sys.join("class/block")).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    fs::create_dir_all(sys.join("class/nvme")).unwrap();
    for head in heads {
        let name = format!("nvme{}n1", head.subsys);
        let head_dir = sys.join(format!("devices/virtual/nvme-subsystem/nvme-subsys{}/{name}", head.subsys));
        fs::create_dir_all(&head_dir).unwrap();
        symlink(&head_dir, sys.join("class/block").join(&name)).unwrap();
        for &(device, ctrl) in head.paths {
            let bdf = model.devices.iter().find(|d| d.name.as_deref() == Some(device)).unwrap().bdf;
            let pci_dir = fs::canonicalize(sys.join("bus/pci/devices").join(bdf.to_string())).unwrap();
            let ctrl_dir = pci_dir.join(format!("nvme/nvme{ctrl}"));
            let path = format!("nvme{}c{ctrl}n1", head.subsys);
            fs::create_dir_all(ctrl_dir.join(&path)).unwrap();
            fs::write(ctrl_dir.join(&path).join("hidden"), "1\n").unwrap();
            let _ = symlink(&ctrl_dir, sys.join(format!("class/nvme/nvme{ctrl}")));
            symlink(ctrl_dir.join(&path), sys.join("class/block").join(&path)).unwrap();
            if group {
                fs::create_dir_all(head_dir.join("multipath")).unwrap();
                symlink(ctrl_dir.join(&path), head_dir.join("multipath").join(&path)).unwrap();
            }
        }
    }
    machine::read(&Roots { sys, proc }, None).unwrap()
}

/// A device's address by its topology-file name (a live read has no names).
fn bdf(name: &str) -> Bdf {
    let model = spec::parse(MACHINE, Path::new("test.toml")).unwrap().to_topology().unwrap();
    model.devices.iter().find(|d| d.name.as_deref() == Some(name)).unwrap().bdf
}

/// A copy end on the block device `disk`, as measuring it would give.
fn end(topo: &Topology, disk: &str) -> EndReport {
    let alias = &topo.aliases[disk];
    EndReport {
        end: End {
            path: format!("/dev/{disk}"),
            kind: EndKind::BlockDevice,
            size: 64 << 20,
            block_size: 512,
            extent_owner: format!("disk {disk}"),
            extent_base: 0,
        },
        offset: 0,
        block_device: Some(disk.into()),
        pci: alias.data_pci(),
        numa_node: None,
    }
}

fn route(topo: &Topology, src: &str, dst: &str, via: &str) -> Route {
    let engine = Engine::new(topo).unwrap();
    let (s, d) = (end(topo, src), end(topo, dst));
    let via = if via == "auto" { Via::Auto } else { Via::Provider(bdf(via).to_string()) };
    choose_route(&engine, &via, &[&s, &d]).unwrap()
}

fn one_path_each(group: bool) -> (tempfile::TempDir, Topology) {
    let dir = tempfile::tempdir().unwrap();
    let heads = [Head { subsys: 0, paths: &[("nvme-a", 0)] }, Head { subsys: 1, paths: &[("nvme-b", 1)] }];
    let topo = read_machine(dir.path(), &heads, group);
    (dir, topo)
}

/// nvme0n1 on nvme-a; nvme1n1 on two controllers, nvme-b (which reaches nvme-a below the
/// switch) and nvme-c (which does not).
fn two_controllers() -> (tempfile::TempDir, Topology) {
    let dir = tempfile::tempdir().unwrap();
    let heads =
        [Head { subsys: 0, paths: &[("nvme-a", 0)] }, Head { subsys: 1, paths: &[("nvme-b", 1), ("nvme-c", 2)] }];
    let topo = read_machine(dir.path(), &heads, true);
    (dir, topo)
}

#[test]
fn a_head_with_one_path_is_on_that_controller_and_the_path_is_hidden() {
    let (_dir, topo) = one_path_each(true);
    let a = bdf("nvme-a");
    let head = &topo.aliases["nvme0n1"];
    assert_eq!((head.pci_parent, head.data_pci()), (None, Some(a)), "the kernel's walk ends at the subsystem");
    assert!(!head.hidden);
    assert_eq!(head.paths, [MultipathPath { disk: "nvme0c0n1".into(), controller: "nvme0".into(), pci: Some(a) }]);
    let path = &topo.aliases["nvme0c0n1"];
    assert!(path.hidden && path.paths.is_empty());
    assert_eq!(path.pci_parent, Some(a));
    // A copy between the heads goes through nvme-a's CMB, as between the plain disks.
    assert!(matches!(route(&topo, "nvme1n1", "nvme0n1", "nvme-a"), Route::P2p { .. }));
    assert!(matches!(route(&topo, "nvme1n1", "nvme0n1", "auto"), Route::P2p { .. }));
}

#[test]
fn without_the_multipath_group_the_paths_are_found_by_name_under_their_controllers() {
    let (_d1, old) = one_path_each(false);
    let (_d2, new) = one_path_each(true);
    assert!(!old.aliases["nvme0n1"].paths.is_empty());
    assert_eq!(old.aliases, new.aliases);
}

#[test]
fn a_head_on_two_controllers_needs_every_path_to_allow_p2p_and_names_the_refused_one() {
    let (_dir, topo) = two_controllers();
    let (b, c) = (bdf("nvme-b"), bdf("nvme-c"));
    let head = &topo.aliases["nvme1n1"];
    assert_eq!((head.pci_parent, head.data_pci()), (None, None), "two controllers: no single PCI device");
    let pcis: Vec<_> = head.paths.iter().map(|p| (p.disk.as_str(), p.pci)).collect();
    assert_eq!(pcis, [("nvme1c1n1", Some(b)), ("nvme1c2n1", Some(c))]);
    for via in ["nvme-a", "auto"] {
        let Route::Host { reasons } = route(&topo, "nvme1n1", "nvme0n1", via) else {
            panic!("{via}: P2P although nvme-c cannot reach nvme-a")
        };
        let text = reasons.join("\n");
        assert!(text.contains(&format!("nvme1n1 path nvme1c2n1 (controller nvme2, {c}): ")), "{via}: {text}");
        assert!(!text.contains("nvme1c1n1"), "{via}: the path that can do P2P is no reason: {text}");
    }
}

#[test]
fn check_and_find_judge_a_head_by_every_path() {
    let (_dir, topo) = two_controllers();
    let engine = Engine::new(&topo).unwrap();
    let a = bdf("nvme-a").to_string();
    let r = analysis::check(&engine, &a, &["nvme1n1".into()]).unwrap();
    assert_eq!(r.map_type, MapType::NotSupported);
    let verdicts: Vec<_> = r.clients.iter().map(|v| (v.client_bdf, v.map_type)).collect();
    assert_eq!(verdicts, [(Some(bdf("nvme-b")), MapType::BusAddr), (Some(bdf("nvme-c")), MapType::NotSupported)]);
    assert!(r.clients[1].reasons[0].contains("down path nvme1c2n1 (controller nvme2"), "{:?}", r.clients[1].reasons);
    assert_eq!(analysis::find(&engine, &["nvme1n1".into()]).unwrap().provider, None);
    // The one-path head is its controller.
    let r = analysis::check(&engine, &a, &["/dev/nvme0n1".into()]).unwrap();
    assert_eq!(r.map_type, MapType::BusAddr);
}

#[test]
fn before_7_2_a_p2p_copy_through_a_head_is_refused_naming_multipath_and_the_fix() {
    let (_dir, observed) = one_path_each(true);
    let topo = kernel::as_release(&observed, &"7.1".parse().unwrap());
    let Route::Host { reasons } = route(&topo, "nvme1n1", "nvme0n1", "nvme-a") else { panic!("P2P on 7.1") };
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    for part in
        ["nvme1n1 is an NVMe multipath head (paths nvme1c1n1)", "kernel 7.1.0", "nvme_core.multipath=N", "7.2 or newer"]
    {
        assert!(reasons[0].contains(part), "{part}: {}", reasons[0]);
    }
    let topo = kernel::as_release(&observed, &"7.2".parse().unwrap());
    assert!(matches!(route(&topo, "nvme1n1", "nvme0n1", "nvme-a"), Route::P2p { .. }));
}

#[test]
fn aliases_from_older_snapshots_load_without_the_multipath_fields() {
    let old: Alias = serde_json::from_str(r#"{"class":"block","pci_parent":"0000:03:00.0"}"#).unwrap();
    assert_eq!(old, Alias::new("block", Some("0000:03:00.0".parse().unwrap())));
    // And plain disks are written as before.
    assert_eq!(serde_json::to_string(&old).unwrap(), r#"{"class":"block","pci_parent":"0000:03:00.0"}"#);
}
