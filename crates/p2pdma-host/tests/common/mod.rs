//! Writes a topology out as a sysfs/procfs fixture tree, the way the kernel lays it out:
//! `sys/devices/pci0000:00/0000:00:10.0/0000:01:00.0/...` with `sys/bus/pci/devices/*`
//! symlinks, binary `config`, `p2pmem/`, and `proc/{cpuinfo,cmdline,sys/kernel/osrelease}`.
//! Also what a test does when something it needs from outside is missing ([`missing`]).

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use p2pdma_core::config::{Acs, PortType};
use p2pdma_core::model::Device;
use p2pdma_core::{Bdf, Topology};

/// How much config space a reader gets: 4096 as root, 64 without.
#[derive(Clone, Copy)]
pub enum Privilege {
    Root,
    User,
}

#[path = "../../../../tests/support/prereq.rs"]
mod prereq;
#[allow(unused_imports)] // each test crate uses its own part
pub use prereq::{missing, scenarios, under_ci, MIN_SCENARIOS};

fn port_type_raw(t: PortType) -> u8 {
    match t {
        PortType::Endpoint => 0,
        PortType::LegacyEndpoint => 1,
        PortType::RootPort => 4,
        PortType::SwitchUpstream => 5,
        PortType::SwitchDownstream => 6,
        PortType::PcieToPciBridge => 7,
        PortType::PciToPcieBridge => 8,
        PortType::RootComplexIntegratedEndpoint => 9,
        PortType::RootComplexEventCollector => 10,
        PortType::Other(v) => v,
    }
}

/// Config space as the device would present it.
pub fn config_bytes(d: &Device) -> Vec<u8> {
    let mut c = vec![0u8; 4096];
    c[0..2].copy_from_slice(&d.vendor.to_le_bytes());
    c[2..4].copy_from_slice(&d.device.to_le_bytes());
    c[0x09] = d.class as u8;
    c[0x0a] = (d.class >> 8) as u8;
    c[0x0b] = (d.class >> 16) as u8;
    c[0x0e] = if d.is_bridge { 1 } else { 0 };
    if let Some(t) = d.port_type {
        c[0x06] = 0x10;
        c[0x34] = 0x40;
        c[0x40] = 0x10;
        c[0x42] = 0x02 | (port_type_raw(t) << 4);
    }
    if let Acs::Present { offset, cap, ctrl } = d.acs {
        let o = offset as usize;
        c[0x100..0x104].copy_from_slice(&(0x0001u32 | (1 << 16) | ((offset as u32) << 20)).to_le_bytes());
        c[o..o + 4].copy_from_slice(&(0x000du32 | (1 << 16)).to_le_bytes());
        c[o + 4..o + 6].copy_from_slice(&cap.to_le_bytes());
        c[o + 6..o + 8].copy_from_slice(&ctrl.to_le_bytes());
    }
    // BAR registers hold bus addresses (`bus_start`), which may differ from `start`.
    for b in &d.bars {
        let off = 0x10 + 4 * b.index as usize;
        let addr = b.bus_start.unwrap_or(b.start);
        let low = if b.memory {
            (addr as u32 & !0xf) | if b.is_64 { 0x4 } else { 0 } | if b.prefetchable { 0x8 } else { 0 }
        } else {
            (addr as u32 & !0x3) | 1
        };
        c[off..off + 4].copy_from_slice(&low.to_le_bytes());
        if b.memory && b.is_64 {
            c[off + 4..off + 8].copy_from_slice(&((addr >> 32) as u32).to_le_bytes());
        }
    }
    c
}

fn w(path: &Path, text: impl AsRef<[u8]>) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// Writes `topo` under `root` (creating `root/sys` and `root/proc`).
pub fn write_tree(topo: &Topology, root: &Path, privilege: Privilege) -> (PathBuf, PathBuf) {
    let sys = root.join("sys");
    let proc = root.join("proc");
    let by_bdf: HashMap<Bdf, &Device> = topo.devices.iter().map(|d| (d.bdf, d)).collect();
    let dir_of = |d: &Device| -> PathBuf {
        let mut chain = vec![d.bdf.to_string()];
        let mut up = d.upstream;
        while let Some(u) = up {
            chain.push(u.to_string());
            up = by_bdf[&u].upstream;
        }
        chain.reverse();
        let mut p = sys.join("devices").join(&d.host_bridge);
        p.extend(chain);
        p
    };
    fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
    fs::create_dir_all(sys.join("class/iommu")).unwrap();
    for d in &topo.devices {
        let dir = dir_of(d);
        w(&dir.join("vendor"), format!("0x{:04x}\n", d.vendor));
        w(&dir.join("device"), format!("0x{:04x}\n", d.device));
        w(&dir.join("class"), format!("0x{:06x}\n", d.class));
        w(&dir.join("subsystem_vendor"), "0x1af4\n");
        w(&dir.join("subsystem_device"), "0x1100\n");
        let config = config_bytes(d);
        w(
            &dir.join("config"),
            match privilege {
                Privilege::Root => &config[..],
                Privilege::User => &config[..64],
            },
        );
        w(&dir.join("numa_node"), format!("{}\n", d.numa_node.unwrap_or(-1)));
        w(&dir.join("current_link_speed"), "8.0 GT/s PCIe\n");
        w(&dir.join("current_link_width"), "4\n");
        w(&dir.join("max_link_speed"), "16.0 GT/s PCIe\n");
        w(&dir.join("max_link_width"), "4\n");
        let mut resource = String::new();
        for i in 0..6u8 {
            match d.bars.iter().find(|b| b.index == i) {
                Some(b) => resource.push_str(&format!(
                    "0x{:016x} 0x{:016x} 0x{:016x}\n",
                    b.start,
                    b.start + b.size - 1,
                    if b.memory {
                        0x0004_0200u64 | if b.prefetchable { 0x2000 } else { 0 } | if b.is_64 { 0x0010_0000 } else { 0 }
                    } else {
                        0x0004_0101
                    }
                )),
                None => resource.push_str("0x0000000000000000 0x0000000000000000 0x0000000000000000\n"),
            }
        }
        w(&dir.join("resource"), resource);
        if let Some(m) = &d.p2pmem {
            w(&dir.join("p2pmem/size"), format!("{}\n", m.size));
            w(&dir.join("p2pmem/available"), format!("{}\n", m.available));
            w(&dir.join("p2pmem/published"), format!("{}\n", m.published as u8));
            w(&dir.join("p2pmem/allocate"), "");
        }
        if let Some(pf) = d.physfn {
            symlink(format!("../{pf}"), dir.join("physfn")).unwrap();
        }
        if d.class >> 8 == 0x0108 {
            let drv = sys.join("bus/pci/drivers/nvme");
            fs::create_dir_all(&drv).unwrap();
            symlink(&drv, dir.join("driver")).unwrap();
        }
        let rel = Path::new("../../..").join(dir.strip_prefix(&sys).unwrap());
        symlink(rel, sys.join("bus/pci/devices").join(d.bdf.to_string())).unwrap();
    }
    // Class devices: a block device under each NVMe controller, an rxe device with no parent.
    for (i, d) in topo.devices.iter().filter(|d| d.class >> 8 == 0x0108).enumerate() {
        let blk = dir_of(d).join(format!("nvme/nvme{i}/nvme{i}n1"));
        fs::create_dir_all(&blk).unwrap();
        fs::create_dir_all(sys.join("class/block")).unwrap();
        symlink(&blk, sys.join(format!("class/block/nvme{i}n1"))).unwrap();
    }
    let rxe = sys.join("devices/virtual/infiniband/rxe0");
    fs::create_dir_all(&rxe).unwrap();
    fs::create_dir_all(sys.join("class/infiniband")).unwrap();
    symlink(&rxe, sys.join("class/infiniband/rxe0")).unwrap();
    if topo.machine.iommu == Some(true) {
        fs::create_dir_all(sys.join("class/iommu/dmar0")).unwrap();
    }
    let m = &topo.machine;
    w(
        &proc.join("cpuinfo"),
        format!(
            "processor\t: 0\nvendor_id\t: {}\ncpu family\t: {}\nmodel name\t: Test CPU\n\nprocessor\t: 1\nvendor_id\t: Other\n",
            m.cpu_vendor.as_deref().unwrap_or("GenuineIntel"),
            m.cpu_family.unwrap_or(6)
        ),
    );
    w(&proc.join("cmdline"), format!("BOOT_IMAGE=/vmlinuz {}\n", m.cmdline.as_deref().unwrap_or("")));
    w(&proc.join("sys/kernel/osrelease"), format!("{}\n", m.kernel_release.as_deref().unwrap_or("7.2.0-test")));
    w(&proc.join("sys/kernel/arch"), "x86_64\n");
    (sys, proc)
}
