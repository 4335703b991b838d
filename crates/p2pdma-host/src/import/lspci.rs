//! `lspci -v`/`-vv`/`-vvv` (with or without `-nn`, `-D`, `-k`; as root or not) and the
//! config-space dumps of `lspci -x`/`-xxx`/`-xxxx`.
//!
//! Without root lspci prints `Capabilities: <access denied>`: ACS and the port type are
//! then UNKNOWN, not absent. Dumps are decoded by p2pdma-core's `config::decode`, the
//! decoder of live config space; `-xxx` shows 256 bytes, which never reach the extended
//! capabilities, so ACS stays unknown there (the live reader's "256 bytes = no extended
//! space" holds for sysfs, not for lspci's choice of length).

use p2pdma_core::config::{self, acs_bits, Acs, PortType};
use p2pdma_core::model::{Bar, Link};
use p2pdma_core::Bdf;
use serde::Serialize;

use crate::import::names;
use crate::Error;

/// The devices of one listing, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Listing {
    pub devices: Vec<LspciDevice>,
}

/// Whether lspci could read the capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Caps {
    /// Listed: lspci ran as root (or the capability list was readable).
    Readable,
    /// `Capabilities: <access denied>`: not root; ACS and port type unknown.
    Denied,
    /// No capability lines at all (`lspci` without `-v`, or a cut paste).
    NotShown,
}

/// One device as lspci shows it; what it does not show is None.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LspciDevice {
    pub bdf: Bdf,
    /// The address had a domain (`-D`, or a machine with several domains).
    pub has_domain: bool,
    /// 1-based line of the header in the section.
    pub line: usize,
    pub class_name: String,
    /// Class and subclass (`[0300]` with `-nn`, else from the class name).
    pub class: Option<u16>,
    pub prog_if: Option<u8>,
    pub name: String,
    pub vendor: Option<u16>,
    pub device: Option<u16>,
    /// The IDs were looked up from names (no `-nn`), not printed.
    pub ids_from_names: bool,
    pub subsystem: Option<(u16, u16)>,
    pub caps: Caps,
    pub port_type: Option<PortType>,
    /// Derived from the capability lines (or the dump): None when unknown.
    pub acs: Option<Acs>,
    pub bars: Vec<Bar>,
    /// The BARs came from `lspci -v` lines (`Memory at ...`), which print no register
    /// number: the numbers are counted in order (a 64-bit BAR takes two registers).
    pub bar_numbers_counted: bool,
    /// `Bus: primary=00, secondary=01, subordinate=13`: (secondary, subordinate).
    pub bus_range: Option<(u8, u8)>,
    pub driver: Option<String>,
    pub numa_node: Option<i32>,
    pub iommu_group: Option<u32>,
    pub link: Option<Link>,
    /// The dump's bytes (`-x`: 64, `-xxx`: 256, `-xxxx`: 4096), empty without one.
    #[serde(skip)]
    pub config: Vec<u8>,
    /// SR-IOV: `Number of VFs`, `VF offset`, `stride`.
    pub sriov: Option<(u16, u16, u16)>,
}

/// Parses a listing. Never panics; lines it does not know are ignored.
pub fn parse(text: &str) -> Result<Listing, Error> {
    let text = crate::import::bounded(text, "lspci")?;
    let mut listing = Listing::default();
    let mut cur: Option<Builder> = None;
    for (i, line) in text.lines().enumerate() {
        if crate::import::sections::is_lspci_header(line) {
            if let Some(b) = cur.take() {
                listing.devices.push(b.finish());
            }
            cur = header(line, i + 1).map(Builder::new);
            continue;
        }
        if let Some(b) = cur.as_mut() {
            b.line(line);
        }
    }
    if let Some(b) = cur.take() {
        listing.devices.push(b.finish());
    }
    if listing.devices.is_empty() {
        return Err(Error::invalid("lspci", "no device lines"));
    }
    Ok(listing)
}

fn header(line: &str, n: usize) -> Option<LspciDevice> {
    let (addr, rest) = line.split_once(' ')?;
    let bdf: Bdf = addr.parse().ok()?;
    let (class_part, name_part) = rest.split_once(": ")?;
    let mut name = name_part.trim();
    let mut prog_if = None;
    if let Some(pos) = name.find(" (prog-if ") {
        prog_if = name[pos + 10..].get(..2).and_then(|h| u8::from_str_radix(h, 16).ok());
        name = &name[..pos];
    }
    if let Some(pos) = name.find(" (rev ") {
        name = &name[..pos];
    }
    let class = names::bracket_class(class_part).or_else(|| names::class_from_name(class_part));
    let class_name = match class_part.rfind(" [") {
        Some(p) if names::bracket_class(class_part).is_some() => &class_part[..p],
        _ => class_part,
    };
    let (vendor, device, from_names) = match names::bracket_ids(name) {
        Some((v, d)) => (Some(v), Some(d), false),
        None => {
            let (v, d) = names::ids_from_name(name);
            (v, d, true)
        }
    };
    let clean_name = match (names::bracket_ids(name), name.rfind(" [")) {
        (Some(_), Some(p)) => &name[..p],
        _ => name,
    };
    Some(LspciDevice {
        bdf,
        has_domain: addr.matches(':').count() == 2,
        line: n,
        class_name: class_name.to_string(),
        class,
        prog_if,
        name: clean_name.to_string(),
        vendor,
        device,
        ids_from_names: from_names,
        subsystem: None,
        caps: Caps::NotShown,
        port_type: None,
        acs: None,
        bars: Vec::new(),
        bar_numbers_counted: false,
        bus_range: None,
        driver: None,
        numa_node: None,
        iommu_group: None,
        link: None,
        config: Vec::new(),
        sriov: None,
    })
}

struct Builder {
    d: LspciDevice,
    base_indent: Option<usize>,
    acs_offset: Option<u16>,
    acs_cap: Option<u16>,
    acs_ctrl: Option<u16>,
    /// Inside the ACS capability's lines.
    in_acs: bool,
    dump: Vec<(usize, [u8; 16])>,
}

fn indent(line: &str) -> usize {
    let mut w = 0;
    for c in line.chars() {
        match c {
            ' ' => w += 1,
            '\t' => w += 8,
            _ => break,
        }
    }
    w
}

/// `16M` → bytes.
fn size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' => (&s[..s.len() - 1], 1u64 << 10),
        'M' => (&s[..s.len() - 1], 1 << 20),
        'G' => (&s[..s.len() - 1], 1 << 30),
        'T' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// `16GT/s` → `16.0 GT/s PCIe` (sysfs's spelling).
fn speed(s: &str) -> Option<String> {
    let n: f64 = s.trim().strip_suffix("GT/s")?.parse().ok()?;
    Some(format!("{n:.1} GT/s PCIe"))
}

/// `Speed 16GT/s, Width x16` → (speed, width).
fn link_fields(t: &str) -> (Option<String>, Option<u32>) {
    let mut sp = None;
    let mut w = None;
    for part in t.split(',') {
        let p = part.trim();
        if let Some(s) = p.strip_prefix("Speed ") {
            sp = speed(s.split_whitespace().next().unwrap_or(""));
        } else if let Some(x) = p.strip_prefix("Width x") {
            w = x.split_whitespace().next().and_then(|x| x.parse().ok());
        }
    }
    (sp, w)
}

/// `SrcValid+ TransBlk- ...` → bits.
fn acs_flags(t: &str) -> u16 {
    let mut bits = 0;
    for (name, bit) in [
        ("SrcValid+", acs_bits::SV),
        ("TransBlk+", acs_bits::TB),
        ("ReqRedir+", acs_bits::RR),
        ("CmpltRedir+", acs_bits::CR),
        ("UpstreamFwd+", acs_bits::UF),
        ("EgressCtrl+", acs_bits::EC),
        ("DirectTrans+", acs_bits::DT),
    ] {
        if t.split_whitespace().any(|w| w == name) {
            bits |= bit;
        }
    }
    bits
}

/// One line of a device's section, by what it holds.
enum LineKind<'a> {
    Blank,
    /// A row of an `-x` dump.
    DumpRow(&'a str),
    /// The text after `Capabilities: `.
    Capability(&'a str),
    /// A line inside the ACS capability.
    AcsField(&'a str),
    /// A line inside another capability (indented below the device's own lines).
    Nested(&'a str),
    /// A line of the device itself.
    Top(&'a str),
}

/// The link, made empty the first time one of its lines is seen.
fn link_of(link: &mut Option<Link>) -> &mut Link {
    link.get_or_insert(Link { current_speed: None, current_width: None, max_speed: None, max_width: None })
}

/// `Initial VFs: 16, Total VFs: 16, Number of VFs: 0, ...` → the number of VFs.
fn vf_count(t: &str) -> Option<u16> {
    t.split(',').find_map(|p| p.trim().strip_prefix("Number of VFs:")).and_then(|n| n.trim().parse::<u16>().ok())
}

/// ` 2, stride: 1, Device ID: 101e` (after `VF offset:`) → (offset, stride).
fn vf_offset_stride(r: &str) -> Option<(u16, u16)> {
    let mut it = r.split(',');
    let off = it.next().and_then(|o| o.trim().parse::<u16>().ok());
    let stride = it.next().and_then(|s| s.trim().strip_prefix("stride:")).and_then(|s| s.trim().parse::<u16>().ok());
    Some((off?, stride?))
}

/// `primary=00, secondary=01, subordinate=13, ...` → (secondary, subordinate).
fn bus_range(r: &str) -> Option<(u8, u8)> {
    let field = |k: &str| {
        r.split(',').find_map(|p| p.trim().strip_prefix(k)).and_then(|v| u8::from_str_radix(v.trim(), 16).ok())
    };
    Some((field("secondary=")?, field("subordinate=")?))
}

impl Builder {
    fn new(d: LspciDevice) -> Self {
        Builder {
            d,
            base_indent: None,
            acs_offset: None,
            acs_cap: None,
            acs_ctrl: None,
            in_acs: false,
            dump: Vec::new(),
        }
    }

    fn line(&mut self, line: &str) {
        match self.kind(line) {
            LineKind::Blank => {}
            LineKind::DumpRow(t) => self.dump_row(t),
            LineKind::Capability(rest) => self.capability(rest),
            LineKind::AcsField(t) => self.acs_field(t),
            LineKind::Nested(t) => self.nested_field(t),
            LineKind::Top(t) => {
                self.in_acs = false;
                self.top_field(t);
            }
        }
    }

    /// What a line is; the first indented line sets the indent of the device's own lines.
    fn kind<'a>(&mut self, line: &'a str) -> LineKind<'a> {
        let t = line.trim();
        if t.is_empty() {
            return LineKind::Blank;
        }
        if crate::import::sections::is_hex_dump(t) {
            return LineKind::DumpRow(t);
        }
        let ind = indent(line);
        let base = *self.base_indent.get_or_insert(ind);
        let top = ind <= base;
        if let Some(rest) = t.strip_prefix("Capabilities: ") {
            LineKind::Capability(rest)
        } else if self.in_acs && !top {
            LineKind::AcsField(t)
        } else if !top {
            LineKind::Nested(t)
        } else {
            LineKind::Top(t)
        }
    }

    /// `00: 86 80 b8 7a ...`: one row of the config-space dump.
    fn dump_row(&mut self, t: &str) {
        if let Some((off, rest)) = t.split_once(": ") {
            let off = usize::from_str_radix(off, 16).unwrap_or(usize::MAX);
            let mut row = [0u8; 16];
            for (k, b) in rest.split_whitespace().take(16).enumerate() {
                row[k] = u8::from_str_radix(b, 16).unwrap_or(0);
            }
            if off < 0x1000 && off % 16 == 0 {
                self.dump.push((off, row));
            }
        }
    }

    /// `Capabilities: [2a0 v1] Access Control Services`, `... Express (v2) Root Port`, or
    /// `<access denied>`.
    fn capability(&mut self, rest: &str) {
        self.in_acs = false;
        let d = &mut self.d;
        if rest.starts_with("<access denied>") {
            d.caps = Caps::Denied;
            return;
        }
        if d.caps != Caps::Denied {
            d.caps = Caps::Readable;
        }
        let off = rest
            .strip_prefix('[')
            .and_then(|r| r.split([' ', ']']).next())
            .and_then(|h| u16::from_str_radix(h, 16).ok());
        if rest.contains("Access Control Services") {
            self.acs_offset = off;
            self.in_acs = true;
        } else if let Some(x) = rest.split_once("] Express").map(|(_, r)| r) {
            d.port_type = port_type(x);
        }
    }

    /// `ACSCap:`/`ACSCtl:` inside the ACS capability.
    fn acs_field(&mut self, t: &str) {
        if let Some(f) = t.strip_prefix("ACSCap:") {
            self.acs_cap = Some(acs_flags(f));
        } else if let Some(f) = t.strip_prefix("ACSCtl:") {
            self.acs_ctrl = Some(acs_flags(f));
        }
    }

    /// A line inside a capability: the link and SR-IOV's VFs.
    fn nested_field(&mut self, t: &str) {
        let d = &mut self.d;
        if let Some(f) = t.strip_prefix("LnkCap:") {
            let (s, w) = link_fields(f);
            let l = link_of(&mut d.link);
            l.max_speed = s;
            l.max_width = w;
        } else if let Some(f) = t.strip_prefix("LnkSta:") {
            let (s, w) = link_fields(f);
            let l = link_of(&mut d.link);
            l.current_speed = s;
            l.current_width = w;
        } else if t.starts_with("Initial VFs:") {
            if let Some(n) = vf_count(t) {
                d.sriov = Some((n, 0, 0));
            }
        } else if let Some(r) = t.strip_prefix("VF offset:") {
            if let (Some((n, _, _)), Some((o, s))) = (d.sriov, vf_offset_stride(r)) {
                d.sriov = Some((n, o, s));
            }
        }
    }

    /// A line of the device itself: regions, bus numbers, driver, NUMA node, IOMMU group,
    /// subsystem.
    fn top_field(&mut self, t: &str) {
        let d = &mut self.d;
        if let Some(r) = t.strip_prefix("Region ") {
            if let Some(bar) = region(r) {
                d.bars.push(bar);
            }
        } else if t.starts_with("Memory at ") || t.starts_with("I/O ports at ") {
            // `lspci -v`: no `Region N:`; the next register after the last BAR.
            let next = d.bars.last().map_or(0, |b| b.index + if b.is_64 { 2 } else { 1 });
            if let Some(bar) = region(&format!("{next}: {t}")) {
                d.bars.push(bar);
                d.bar_numbers_counted = true;
            }
        } else if let Some(r) = t.strip_prefix("Bus: ") {
            if let Some(range) = bus_range(r) {
                d.bus_range = Some(range);
            }
        } else if let Some(r) = t.strip_prefix("Kernel driver in use:") {
            d.driver = Some(r.trim().to_string());
        } else if let Some(r) = t.strip_prefix("NUMA node:") {
            d.numa_node = r.trim().parse().ok();
        } else if let Some(r) = t.strip_prefix("IOMMU group:") {
            d.iommu_group = r.trim().parse().ok();
        } else if let Some(r) = t.strip_prefix("Flags:") {
            // `lspci -v` prints them in the flags (`..., IRQ 719, NUMA node 1, IOMMU group 74`).
            for item in r.split(',').map(str::trim) {
                if let Some(n) = item.strip_prefix("NUMA node ") {
                    d.numa_node = n.parse().ok().or(d.numa_node);
                } else if let Some(n) = item.strip_prefix("IOMMU group ") {
                    d.iommu_group = n.parse().ok().or(d.iommu_group);
                }
            }
        } else if let Some(r) = t.strip_prefix("Subsystem:") {
            d.subsystem = names::bracket_ids(r);
        }
    }

    fn finish(mut self) -> LspciDevice {
        let d = &mut self.d;
        // The dump, decoded by the live reader's decoder.
        if !self.dump.is_empty() {
            let len = self.dump.iter().map(|(o, _)| o + 16).max().unwrap_or(0);
            let mut bytes = vec![0u8; len];
            let mut contiguous = true;
            for (k, (off, row)) in self.dump.iter().enumerate() {
                contiguous &= *off == k * 16;
                bytes[*off..off + 16].copy_from_slice(row);
            }
            if contiguous && len >= 64 {
                let dec = config::decode(&bytes);
                if d.vendor.is_none() || d.ids_from_names {
                    d.vendor = Some(u16::from_le_bytes([bytes[0], bytes[1]]));
                    d.device = Some(u16::from_le_bytes([bytes[2], bytes[3]]));
                    d.ids_from_names = false;
                }
                d.class.get_or_insert(u16::from_le_bytes([bytes[0x0a], bytes[0x0b]]));
                d.prog_if.get_or_insert(bytes[0x09]);
                if dec.is_bridge && d.bus_range.is_none() {
                    d.bus_range = Some((bytes[0x19], bytes[0x1a]));
                }
                if d.port_type.is_none() {
                    d.port_type = dec.port_type;
                }
                // -xxx stops at 256 bytes whatever the device has: not "no extended space".
                if len >= 0x1000 && d.acs.is_none() {
                    d.acs = Some(dec.acs);
                }
                d.config = bytes;
            }
        }
        if d.acs.is_none() {
            d.acs = match (d.caps, self.acs_offset, self.acs_ctrl) {
                (Caps::Readable, Some(offset), Some(ctrl)) => {
                    Some(Acs::Present { offset, cap: self.acs_cap.unwrap_or(0), ctrl })
                }
                // The capability is there but its control line was cut off.
                (Caps::Readable, Some(_), None) => Some(Acs::Unknown),
                (Caps::Readable, None, _) => Some(Acs::Absent),
                (Caps::Denied, _, _) => Some(Acs::Unknown),
                (Caps::NotShown, _, _) => None,
            };
        }
        self.d
    }
}

fn port_type(x: &str) -> Option<PortType> {
    // ` (v2) Root Port (Slot+), MSI 00`
    let x = x.split_once(')').map(|(_, r)| r).unwrap_or(x);
    Some(match () {
        _ if x.contains("Root Port") => PortType::RootPort,
        _ if x.contains("Upstream Port") => PortType::SwitchUpstream,
        _ if x.contains("Downstream Port") => PortType::SwitchDownstream,
        _ if x.contains("Legacy Endpoint") => PortType::LegacyEndpoint,
        _ if x.contains("Root Complex Integrated Endpoint") => PortType::RootComplexIntegratedEndpoint,
        _ if x.contains("Root Complex Event Collector") => PortType::RootComplexEventCollector,
        _ if x.contains("Endpoint") => PortType::Endpoint,
        _ if x.contains("PCI-Express to PCI") => PortType::PcieToPciBridge,
        _ if x.contains("to PCI-Express") => PortType::PciToPcieBridge,
        _ => return None,
    })
}

/// `0: Memory at b4000000 (32-bit, non-prefetchable) [size=16M]`.
fn region(r: &str) -> Option<Bar> {
    let (idx, rest) = r.split_once(':')?;
    let index: u8 = idx.trim().parse().ok().filter(|i| *i < 6)?;
    let rest = rest.trim();
    let memory = rest.starts_with("Memory at ");
    let addr_text = rest.strip_prefix("Memory at ").or_else(|| rest.strip_prefix("I/O ports at "))?;
    let start = u64::from_str_radix(addr_text.split_whitespace().next()?, 16).ok()?;
    let size = rest.split_once("[size=").and_then(|(_, s)| s.split(']').next()).and_then(size)?;
    Some(Bar {
        index,
        start,
        size,
        memory,
        prefetchable: memory && rest.contains(", prefetchable"),
        is_64: rest.contains("(64-bit"),
        bus_start: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "0000:c0:01.1 PCI bridge [0604]: Advanced Micro Devices, Inc. [AMD] Device [1022:14ab] (prog-if 00 [Normal decode])
\tControl: I/O+ Mem+ BusMaster+
\tBus: primary=c0, secondary=c1, subordinate=c1, sec-latency=0
\tCapabilities: [58] Express (v2) Root Port (Slot+), MSI 00
\t\tLnkCap:\tPort #0, Speed 16GT/s, Width x16, ASPM L1
\t\tLnkSta:\tSpeed 2.5GT/s (downgraded), Width x16
\tCapabilities: [2a0 v1] Access Control Services
\t\tACSCap:\tSrcValid+ TransBlk+ ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans+
\t\tACSCtl:\tSrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-
\tKernel driver in use: pcieport

c1:00.0 VGA compatible controller: NVIDIA Corporation AD102GL [RTX 6000 Ada Generation] (rev a1) (prog-if 00 [VGA controller])
\tRegion 0: Memory at b4000000 (32-bit, non-prefetchable) [size=16M]
\tRegion 1: Memory at 13000000000 (64-bit, prefetchable) [size=64G]
\tRegion 5: I/O ports at 5000 [size=128]
\tCapabilities: [78] Express (v2) Legacy Endpoint, MSI 00
\tCapabilities: [180 v1] Single Root I/O Virtualization (SR-IOV)
\t\tInitial VFs: 16, Total VFs: 16, Number of VFs: 0, Function Dependency Link: 00
\t\tVF offset: 2, stride: 1, Device ID: 101e
\t\tRegion 0: Memory at 0000018806000000 (64-bit, prefetchable)
\tKernel driver in use: nvidia
";

    #[test]
    fn lspci_vvv_as_root_gives_port_type_acs_bars_link() {
        let l = parse(ROOT).unwrap();
        let rp = &l.devices[0];
        assert_eq!(rp.bdf, "0000:c0:01.1".parse().unwrap());
        assert!(rp.has_domain);
        assert_eq!(
            (rp.vendor, rp.device, rp.class, rp.ids_from_names),
            (Some(0x1022), Some(0x14ab), Some(0x0604), false)
        );
        assert_eq!(rp.port_type, Some(PortType::RootPort));
        assert_eq!(rp.bus_range, Some((0xc1, 0xc1)));
        assert_eq!(rp.acs, Some(Acs::Present { offset: 0x2a0, cap: 0x5f, ctrl: 0x1d }));
        let link = rp.link.as_ref().unwrap();
        assert_eq!(link.max_speed.as_deref(), Some("16.0 GT/s PCIe"));
        assert_eq!(link.current_speed.as_deref(), Some("2.5 GT/s PCIe"));
        assert_eq!(rp.driver.as_deref(), Some("pcieport"));
        let gpu = &l.devices[1];
        assert!(!gpu.has_domain);
        assert_eq!(
            (gpu.vendor, gpu.device, gpu.class, gpu.ids_from_names),
            (Some(0x10de), Some(0x26b1), Some(0x0300), true)
        );
        assert_eq!(gpu.port_type, Some(PortType::LegacyEndpoint));
        assert_eq!(gpu.acs, Some(Acs::Absent), "capabilities listed as root, no ACS");
        assert_eq!(gpu.bars.len(), 3, "the SR-IOV capability's VF region is not a BAR of the device");
        assert_eq!(gpu.bars[1].size, 64 << 30);
        assert!(gpu.bars[1].prefetchable && gpu.bars[1].is_64);
        assert!(!gpu.bars[2].memory);
        assert_eq!(gpu.sriov, Some((0, 2, 1)));
    }

    #[test]
    fn lspci_without_root_leaves_acs_unknown() {
        let l = parse("00:1c.0 PCI bridge: Intel Corporation Device 7ab8 (rev 11)\n\tCapabilities: <access denied>\n\tKernel driver in use: pcieport\n").unwrap();
        assert_eq!(l.devices[0].caps, Caps::Denied);
        assert_eq!(l.devices[0].acs, Some(Acs::Unknown));
        assert_eq!(l.devices[0].port_type, None);
    }

    #[test]
    fn lspci_v_flags_give_the_numa_node_and_iommu_group() {
        let l = parse("59:00.0 Ethernet controller: Mellanox Technologies MT28800 Family [ConnectX-5 Ex]\n\tFlags: bus master, fast devsel, latency 0, IRQ 719, NUMA node 1, IOMMU group 74\n").unwrap();
        assert_eq!((l.devices[0].numa_node, l.devices[0].iommu_group), (Some(1), Some(74)));
    }

    #[test]
    fn lspci_v_bars_without_register_numbers_are_counted_in_order() {
        let l = parse("01:00.0 VGA compatible controller: NVIDIA Corporation GT216\n\tMemory at d2000000 (32-bit, non-prefetchable) [size=16M]\n\tMemory at c0000000 (64-bit, prefetchable) [size=256M]\n\tMemory at d0000000 (64-bit, prefetchable) [size=32M]\n\tI/O ports at 6000 [size=128]\n\t[virtual] Expansion ROM at d3080000 [disabled] [size=512K]\n").unwrap();
        let d = &l.devices[0];
        let got: Vec<(u8, u64, bool, bool)> =
            d.bars.iter().map(|b| (b.index, b.start, b.memory, b.prefetchable)).collect();
        assert_eq!(
            got,
            [
                (0, 0xd200_0000, true, false),
                (1, 0xc000_0000, true, true),
                (3, 0xd000_0000, true, true),
                (5, 0x6000, false, false)
            ]
        );
        assert!(d.bar_numbers_counted);
    }

    #[test]
    fn lspci_hex_dump_is_decoded_by_the_config_decoder() {
        // A root port's first 64 bytes as `lspci -x` prints them.
        let text = "00:1c.0 PCI bridge: Intel Corporation Device 7ab8 (rev 11)\n\
00: 86 80 b8 7a 07 04 10 00 11 00 04 06 00 00 81 00\n\
10: 00 00 00 00 00 00 00 00 00 01 01 00 f0 00 00 20\n\
20: 00 fe 00 fe f1 ff 01 00 00 00 00 00 00 00 00 00\n\
30: 00 00 00 00 40 00 00 00 00 00 00 00 ff 01 12 00\n";
        let d = &parse(text).unwrap().devices[0];
        assert_eq!((d.vendor, d.device, d.class), (Some(0x8086), Some(0x7ab8), Some(0x0604)));
        assert_eq!(d.bus_range, Some((1, 1)));
        assert_eq!(d.config.len(), 64);
        assert_eq!(d.acs, None, "64 bytes say nothing of ACS");
    }
}
