//! Reading a whole live machine into a `Topology`: `/sys` (PCI devices, p2pmem, IOMMU,
//! class devices) and `/proc` (CPU, kernel release, command line), with what the kernel
//! says about itself (`kernel_live`). Both roots are parameters so fixture trees work.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use p2pdma_core::config;
use p2pdma_core::model::{Alias, Bar, Device, HostBridge, Link, Machine, P2pMem, Topology};
use p2pdma_core::pciids::PciIds;
use p2pdma_core::Bdf;

use crate::bounded::{self, Bound};
use crate::roots::Roots;
use crate::Error;

/// The classes whose devices may be named as clients (`nvme0n1`, `nvme0`, `eth0`, `rxe0`).
const ALIAS_CLASSES: &[&str] = &["block", "nvme", "net", "infiniband"];

/// Reads the whole PCI topology and machine facts.
pub fn read(roots: &Roots, ids: Option<&PciIds>) -> Result<Topology, Error> {
    let bus_dir = roots.sys.join("bus/pci/devices");
    let entries = fs::read_dir(&bus_dir).map_err(|e| Error::io(&bus_dir, e))?;
    let mut devices = Vec::new();
    let mut host_bridges: BTreeMap<String, HostBridge> = BTreeMap::new();
    let sys_canon = fs::canonicalize(&roots.sys).map_err(|e| Error::io(&roots.sys, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&bus_dir, e))?;
        let link = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let bdf: Bdf = name.parse().map_err(|_| Error::invalid(&link, "not named like a PCI address"))?;
        let real = fs::canonicalize(&link).map_err(|e| Error::io(&link, e))?;
        let rel = real.strip_prefix(&sys_canon).unwrap_or(&real);
        let (host_bridge, upstream) = placement(rel, bdf)
            .ok_or_else(|| Error::invalid(&link, format!("cannot find its host bridge in {}", rel.display())))?;
        host_bridges.entry(host_bridge.name.clone()).or_insert(host_bridge.clone());
        devices.push(read_device(&real, bdf, upstream, host_bridge.name, ids)?);
    }
    devices.sort_by_key(|d| d.bdf);
    let aliases = read_aliases(roots, &sys_canon, &devices);
    let mut topo = Topology {
        machine: read_machine(roots, devices.iter().any(|d| d.p2pmem.is_some())),
        host_bridges: host_bridges.into_values().collect(),
        devices,
        aliases,
        iommu_groups: None,
    };
    p2pdma_core::iommu_groups::fill(&mut topo);
    Ok(topo)
}

/// From `devices/pci0000:00/0000:00:1c.0/0000:01:00.0`: the nearest host bridge above and
/// the bridge the device hangs from (None when it sits on the root bus).
fn placement(rel: &Path, bdf: Bdf) -> Option<(HostBridge, Option<Bdf>)> {
    let parts: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let me = parts.iter().rposition(|p| p.parse::<Bdf>() == Ok(bdf))?;
    let hb_pos = parts[..me].iter().rposition(|p| parse_host_bridge(p).is_some())?;
    let hb = parse_host_bridge(&parts[hb_pos])?;
    let upstream = if me > hb_pos + 1 { parts[me - 1].parse::<Bdf>().ok() } else { None };
    Some((hb, upstream))
}

/// `pci0000:00` → domain 0, bus 0.
fn parse_host_bridge(s: &str) -> Option<HostBridge> {
    let rest = s.strip_prefix("pci")?;
    let (dom, bus) = rest.split_once(':')?;
    Some(HostBridge {
        name: s.to_string(),
        domain: u32::from_str_radix(dom, 16).ok()?,
        bus: u8::from_str_radix(bus, 16).ok()?,
    })
}

fn read_trim(path: &Path) -> Option<String> {
    bounded::attribute(path)
}

fn read_hex<T: TryFrom<u64>>(path: &Path) -> Result<T, Error> {
    let text = bounded::read_string(path, Bound::ATTRIBUTE)?;
    let t = text.trim();
    let v = u64::from_str_radix(t.trim_start_matches("0x"), 16)
        .map_err(|_| Error::invalid(path, format!("expected a hex number, found `{t}`")))?;
    T::try_from(v).map_err(|_| Error::invalid(path, format!("`{t}` is out of range")))
}

fn link_name(path: &Path) -> Option<String> {
    fs::read_link(path).ok().and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn read_device(
    dir: &Path,
    bdf: Bdf,
    upstream: Option<Bdf>,
    host_bridge: String,
    ids: Option<&PciIds>,
) -> Result<Device, Error> {
    let vendor: u16 = read_hex(&dir.join("vendor"))?;
    let device: u16 = read_hex(&dir.join("device"))?;
    let class: u32 = read_hex(&dir.join("class"))?;
    let subsystem =
        match (read_hex::<u16>(&dir.join("subsystem_vendor")), read_hex::<u16>(&dir.join("subsystem_device"))) {
            (Ok(v), Ok(d)) => Some((v, d)),
            _ => None,
        };
    // Without root the kernel returns only the first 64 bytes: decode() then says unknown.
    let config_bytes = bounded::read_bytes(&dir.join("config"), Bound::CONFIG_SPACE).ok();
    let decoded = config_bytes.as_deref().map(config::decode);
    let num = |name: &str| read_trim(&dir.join(name)).and_then(|s| s.parse::<u32>().ok());
    let link = {
        let l = Link {
            current_speed: read_trim(&dir.join("current_link_speed")).filter(|s| !s.starts_with("Unknown")),
            current_width: num("current_link_width").filter(|w| *w > 0),
            max_speed: read_trim(&dir.join("max_link_speed")).filter(|s| !s.starts_with("Unknown")),
            max_width: num("max_link_width").filter(|w| *w > 0),
        };
        (l.current_speed.is_some() || l.max_speed.is_some() || l.max_width.is_some()).then_some(l)
    };
    let p2pdir = dir.join("p2pmem");
    let p2pmem = if p2pdir.is_dir() {
        let n = |f: &str| -> Result<u64, Error> {
            let p = p2pdir.join(f);
            let t = bounded::read_string(&p, Bound::ATTRIBUTE)?;
            t.trim().parse().map_err(|_| Error::invalid(&p, format!("expected a number, found `{}`", t.trim())))
        };
        Some(P2pMem { size: n("size")?, available: n("available")?, published: n("published")? != 0 })
    } else {
        None
    };
    let is_bridge = decoded.as_ref().map(|d| d.is_bridge).unwrap_or(class >> 8 == 0x0604);
    let bars = read_bars(&dir.join("resource"), config_bytes.as_deref(), is_bridge);
    let cmb = read_nvme_cmb(dir).or_else(|| cmb_bar(class, &bars));
    Ok(Device {
        bdf,
        name: None,
        vendor,
        device,
        class,
        subsystem,
        vendor_name: ids.and_then(|i| i.vendor(vendor)).map(str::to_string),
        device_name: ids.and_then(|i| i.device(vendor, device)).map(str::to_string),
        class_name: ids.and_then(|i| i.class(class)).map(str::to_string),
        driver: link_name(&dir.join("driver")),
        upstream,
        host_bridge,
        physfn: link_name(&dir.join("physfn")).and_then(|n| n.parse().ok()),
        is_bridge,
        port_type: decoded.as_ref().and_then(|d| d.port_type),
        link,
        acs: decoded.as_ref().map(|d| d.acs).unwrap_or(config::Acs::Unknown),
        bars,
        iommu_group: link_name(&dir.join("iommu_group")).and_then(|n| n.parse().ok()),
        numa_node: read_trim(&dir.join("numa_node")).and_then(|s| s.parse().ok()),
        local_cpus: read_trim(&dir.join("local_cpulist")).filter(|s| !s.is_empty()),
        p2pmem,
        cmb,
        config_hex: config_bytes.map(|b| hex(&b)),
    })
}

/// Without the driver's `cmbsz` (6.1 does not show it): an NVMe controller's prefetchable
/// memory BAR other than BAR 0 (the registers) holds its CMB, as QEMU's does (BAR 2).
fn cmb_bar(class: u32, bars: &[Bar]) -> Option<u64> {
    (class == 0x010802)
        .then(|| bars.iter().find(|b| b.index >= 2 && b.memory && b.prefetchable && b.size > 0).map(|b| b.size))
        .flatten()
}

/// An NVMe controller's CMB size from the driver's `cmbsz` (visible whenever the drive has
/// one, P2PDMA or not): SZ (bits 31:12) units of 4 KiB × 16^SZU (bits 11:8).
fn read_nvme_cmb(dir: &Path) -> Option<u64> {
    let ctrl = fs::read_dir(dir.join("nvme")).ok()?.flatten().next()?;
    let cmbsz: u32 = read_hex(&ctrl.path().join("cmbsz")).ok()?;
    let unit = 1u64 << (12 + 4 * ((cmbsz >> 8) & 0xf).min(6));
    let size = u64::from(cmbsz >> 12) * unit;
    (size > 0).then_some(size)
}

/// The first six lines of `resource`: `start end flags` per BAR (CPU addresses), and the
/// bus address from each BAR register in config space.
fn read_bars(path: &Path, config: Option<&[u8]>, is_bridge: bool) -> Vec<Bar> {
    const IORESOURCE_MEM: u64 = 0x200;
    const IORESOURCE_PREFETCH: u64 = 0x2000;
    const IORESOURCE_MEM_64: u64 = 0x0010_0000;
    let Ok(text) = bounded::read_string(path, Bound::ATTRIBUTE) else { return Vec::new() };
    text.lines()
        .take(6)
        .enumerate()
        .filter_map(|(i, line)| {
            let v: Vec<u64> = line
                .split_whitespace()
                .filter_map(|t| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok())
                .collect();
            match v.as_slice() {
                [start, end, flags] if *end > *start => Some(Bar {
                    index: i as u8,
                    start: *start,
                    size: end - start + 1,
                    memory: flags & IORESOURCE_MEM != 0,
                    prefetchable: flags & IORESOURCE_PREFETCH != 0,
                    is_64: flags & IORESOURCE_MEM_64 != 0,
                    bus_start: config
                        .filter(|_| flags & IORESOURCE_MEM != 0)
                        .and_then(|c| config::bar_bus_address(c, i as u8, is_bridge)),
                }),
                _ => None,
            }
        })
        .collect()
}

/// `p2pmem_seen`: some device has `p2pmem/`, which only a P2PDMA kernel makes.
fn read_machine(roots: &Roots, p2pmem_seen: bool) -> Machine {
    let cpuinfo = bounded::read_string(&roots.proc.join("cpuinfo"), Bound::PROC_TABLE).unwrap_or_default();
    let field = |key: &str| {
        cpuinfo
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == key).map(|(_, v)| v.trim().to_string()))
    };
    let cpu_vendor = field("vendor_id");
    let arch =
        read_trim(&roots.proc.join("sys/kernel/arch")).or_else(|| cpu_vendor.as_ref().map(|_| "x86_64".to_string()));
    let iommu_dir = roots.sys.join("class/iommu");
    let iommu = match fs::read_dir(&iommu_dir) {
        Ok(mut d) => Some(d.next().is_some()),
        Err(_) if roots.sys.join("class").is_dir() => Some(false),
        Err(_) => None,
    };
    let release = read_trim(&roots.proc.join("sys/kernel/osrelease"));
    Machine {
        arch,
        cpu_family: field("cpu family").and_then(|f| f.parse().ok()),
        cpu_model_name: field("model name"),
        cpu_vendor,
        cmdline: read_trim(&roots.proc.join("cmdline")),
        kernel: crate::kernel_live::read(roots, release.as_deref(), p2pmem_seen),
        kernel_release: release,
        iommu,
        // NCCL's environment is the job's, not this process's: never read here.
        nccl_env: Default::default(),
        modules: read_modules(roots),
        nvidia_registry: read_nvidia_params(roots),
    }
}

/// Loaded modules (`/proc/modules`), None when unreadable: which stacks apply.
fn read_modules(roots: &Roots) -> Option<Vec<String>> {
    let text = bounded::read_string(&roots.proc.join("modules"), Bound::PROC_TABLE).ok()?;
    Some(p2pdma_core::stack_inputs::parse_proc_modules(&text))
}

/// NVIDIA's registry keys (`/proc/driver/nvidia/params`, present while nvidia is loaded);
/// empty when absent or unreadable.
fn read_nvidia_params(roots: &Roots) -> BTreeMap<String, String> {
    bounded::read_string(&roots.proc.join("driver/nvidia/params"), Bound::ATTRIBUTE)
        .map(|t| p2pdma_core::stack_inputs::parse_nvidia_params(&t))
        .unwrap_or_default()
}

/// Class devices and the first PCI device above each (what `find_parent_pci_dev` finds).
fn read_aliases(roots: &Roots, sys_canon: &Path, devices: &[Device]) -> BTreeMap<String, Alias> {
    let known: std::collections::HashSet<Bdf> = devices.iter().map(|d| d.bdf).collect();
    let mut out = BTreeMap::new();
    for class in ALIAS_CLASSES {
        let Ok(entries) = fs::read_dir(roots.sys.join("class").join(class)) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(real) = fs::canonicalize(entry.path()) else { continue };
            let rel = real.strip_prefix(sys_canon).unwrap_or(&real);
            let pci_parent = rel
                .components()
                .rev()
                .filter_map(|c| c.as_os_str().to_str().and_then(|s| s.parse::<Bdf>().ok()))
                .find(|b| known.contains(b));
            out.insert(name, Alias::new(class, pci_parent));
        }
    }
    // NVMe multipath: hidden path disks, and heads (no PCI parent of their own: the kernel
    // walks up to the virtual nvme-subsystem device) with the PCI devices of their paths.
    for (name, alias) in out.iter_mut().filter(|(_, a)| a.class == "block") {
        alias.hidden = crate::multipath::is_hidden(&roots.sys, name);
        if alias.pci_parent.is_none() {
            alias.paths = crate::multipath::read_paths(&roots.sys, name);
            for path in &mut alias.paths {
                path.pci = path.pci.filter(|b| known.contains(b));
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    // One string, no formatting per byte: every device's 4 KiB of config space passes
    // here before a copy's first I/O, and the lab's emulated CPU made the per-byte
    // `format!` cost tens of milliseconds.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_and_nvidia_params_are_read_from_proc_or_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots { sys: dir.path().join("sys"), proc: dir.path().join("proc") };
        assert_eq!(read_modules(&roots), None, "no /proc/modules: unknown");
        assert!(read_nvidia_params(&roots).is_empty());
        fs::create_dir_all(roots.proc.join("driver/nvidia")).unwrap();
        fs::write(roots.proc.join("modules"), "nvidia_peermem 16384 0 - Live 0x0 (POE)\nnvidia 1 1 - Live 0x0\n")
            .unwrap();
        fs::write(roots.proc.join("driver/nvidia/params"), "GrdmaPciTopoCheckOverride: 2\n").unwrap();
        assert_eq!(read_modules(&roots).unwrap(), ["nvidia_peermem", "nvidia"]);
        let reg = read_nvidia_params(&roots);
        assert_eq!(p2pdma_core::stack_inputs::grdma_override(&reg), Some(2));
    }
}
