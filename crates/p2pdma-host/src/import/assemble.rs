//! From any mix of parsed inputs to the `Topology` a snapshot holds. Each fact is a claim
//! by one input; claims are ranked by format (`lspci -vvv`, then hwloc XML, then the
//! `lspci -tv` tree, then the kernel log, then `nvidia-smi`), the first is kept, every other
//! value is a disagreement. What no input gives stays unknown (ACS: `Acs::Unknown`; the
//! machine's CPU, release, command line, IOMMU: None) and is listed with the command that
//! would tell. A device whose place in the tree no input gives is left out, named.
//! A port type the inputs do not print is inferred from the tree's shape (a bridge on a
//! root bus is a root port, ...), and said so.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;

use p2pdma_core::config::{Acs, PortType};
use p2pdma_core::model::{Bar, Device, HostBridge, Link, Machine, Topology};
use p2pdma_core::model::{Built, IommuMode, P2pdmaBuild};
use p2pdma_core::Bdf;

use crate::import::crosscheck;
use crate::import::dmesg::P2pEvent;
use crate::import::report::{Disagreement, Fact, ImportReport, InputSummary, LeftOut, SectionSummary, Unknown};
use crate::import::{Format, Origin, ParsedData, ParsedInput};
use crate::Error;

/// The machine and what `import` says about it.
#[derive(Debug, Clone)]
pub struct Assembled {
    pub topology: Topology,
    pub report: ImportReport,
}

/// One input's claim of a value.
#[derive(Debug, Clone)]
struct Claim<T> {
    value: T,
    origin: Origin,
    derived: Option<String>,
}

type Claims<T> = Vec<Claim<T>>;

fn claim<T>(v: &mut Claims<T>, value: T, origin: &Origin, line: usize, derived: Option<String>) {
    let mut o = origin.clone();
    o.line = origin.line + line.saturating_sub(1);
    v.push(Claim { value, origin: o, derived });
}

/// The rank of a format: lower wins.
fn rank(f: Format) -> u8 {
    match f {
        Format::LspciVerbose => 0,
        Format::HwlocXml => 1,
        Format::LspciTree => 2,
        Format::KernelLog => 3,
        Format::Cmdline => 4,
        Format::Uname | Format::Lscpu | Format::Numactl => 5,
        Format::NvidiaSmiTopo => 6,
        Format::Grub => 7,
        Format::SysfsTarball => 8,
    }
}

/// Keeps the best-ranked claim; records it as a fact and every other value as a disagreement.
fn pick<T: Clone + PartialEq>(
    report: &mut ImportReport,
    subject: &str,
    fact: &'static str,
    mut claims: Claims<T>,
    show: impl Fn(&T) -> String,
) -> Option<T> {
    claims.sort_by_key(|c| rank(c.origin.format));
    let first = claims.first()?.clone();
    let mut distinct: Vec<&Claim<T>> = vec![&claims[0]];
    for c in &claims[1..] {
        if !distinct.iter().any(|d| d.value == c.value) {
            distinct.push(c);
        }
    }
    if distinct.len() > 1 {
        report.disagreements.push(Disagreement {
            subject: subject.to_string(),
            fact,
            values: distinct.iter().map(|c| (show(&c.value), c.origin.clone())).collect(),
        });
    }
    report.facts.push(Fact {
        subject: subject.to_string(),
        fact,
        value: show(&first.value),
        origin: first.origin.clone(),
        derived: first.derived.clone(),
    });
    Some(first.value)
}

#[derive(Default)]
struct DevClaims {
    vendor: Claims<u16>,
    device: Claims<u16>,
    class: Claims<u32>,
    subsystem: Claims<(u16, u16)>,
    parent: Claims<Option<Bdf>>,
    range: Claims<(u8, u8)>,
    port_type: Claims<PortType>,
    acs: Claims<Acs>,
    bars: Claims<Vec<Bar>>,
    driver: Claims<String>,
    numa: Claims<i32>,
    iommu_group: Claims<u32>,
    link: Claims<Link>,
    config: Option<Vec<u8>>,
    name: Option<String>,
    /// Where it was first seen (for `left_out`).
    seen: Option<Origin>,
}

#[derive(Default)]
struct MachineClaims {
    arch: Claims<String>,
    cpu_vendor: Claims<String>,
    cpu_family: Claims<u32>,
    cpu_model_name: Claims<String>,
    kernel_release: Claims<String>,
    cmdline: Claims<String>,
    iommu_mode: Claims<IommuMode>,
    numa_nodes: Claims<u32>,
    sockets: Claims<u32>,
    p2pdma: Option<Origin>,
}

impl MachineClaims {
    /// The system facts hwloc and the system outputs (`uname`, `lscpu`) both give, each
    /// claimed where the input has it (line 1: the input as a whole).
    fn claim_system(
        &mut self,
        release: &Option<String>,
        arch: &Option<String>,
        cpu_vendor: &Option<String>,
        cpu_family: Option<u32>,
        cpu_model_name: &Option<String>,
        o: &Origin,
    ) {
        let text = |claims: &mut Claims<String>, v: &Option<String>| {
            if let Some(v) = v {
                claim(claims, v.clone(), o, 1, None);
            }
        };
        text(&mut self.kernel_release, release);
        text(&mut self.arch, arch);
        text(&mut self.cpu_vendor, cpu_vendor);
        if let Some(v) = cpu_family {
            claim(&mut self.cpu_family, v, o, 1, None);
        }
        text(&mut self.cpu_model_name, cpu_model_name);
    }
}

fn hex4(v: &u16) -> String {
    format!("{v:04x}")
}

/// Every input's claims, before any is chosen.
#[derive(Default)]
struct Collected {
    devs: BTreeMap<Bdf, DevClaims>,
    roots: BTreeMap<(u32, u8), Vec<Origin>>,
    m: MachineClaims,
    /// An `lspci -vvv` listed bridges with their bus lines (a full listing, not `-s`).
    lspci_bridges: bool,
}

/// The devices once each fact is chosen.
struct Resolved {
    devices: BTreeMap<Bdf, Device>,
    /// Bridges without a printed port type.
    inferred_ports: Vec<Bdf>,
    classes_by_id: HashMap<(u16, u16), u32>,
}

/// Builds the machine from every parsed input. Fails only when the result would not be a
/// consistent topology (inputs of two different machines can make one).
pub fn assemble(inputs: &[ParsedInput]) -> Result<Assembled, Error> {
    let mut report = ImportReport::default();
    let mut col = Collected::default();
    for input in inputs {
        report.inputs.push(InputSummary {
            name: input.name.clone(),
            lines: input.lines,
            skipped_lines: input.skipped_lines,
            sections: input
                .parts
                .iter()
                .map(|p| SectionSummary { format: p.origin.format, first_line: p.origin.line, lines: p.lines })
                .collect(),
        });
        for part in &input.parts {
            let o = &part.origin;
            match &part.data {
                ParsedData::Lspci(l) => col.lspci(l, o),
                ParsedData::Tree(t) => col.tree(t, o),
                ParsedData::Hwloc(h) => col.hwloc(h, o),
                ParsedData::Dmesg(k) => col.dmesg(k, o),
                ParsedData::Sys(s) => col.sys(s, o),
                ParsedData::Topo(_) => {}
            }
        }
    }
    col.place();
    let Collected { devs, m, .. } = col;
    let mut claims_of = devs;
    let machine = resolve_machine(&mut report, m);
    let Resolved { devices: mut resolved, inferred_ports, classes_by_id } =
        resolve_devices(&mut report, &mut claims_of);
    fill_classes(&mut report, &mut resolved, &claims_of, &classes_by_id);
    drop_orphans(&mut report, &mut resolved, &claims_of);
    let host_bridges = place_under_host_bridges(&mut report, &mut resolved, &claims_of, &inferred_ports);
    acs_unknowns(&mut report, &resolved);
    let topology = Topology {
        machine,
        host_bridges: host_bridges
            .iter()
            .map(|&(domain, bus)| HostBridge { name: format!("pci{domain:04x}:{bus:02x}"), domain, bus })
            .collect(),
        devices: resolved.into_values().collect(),
        aliases: BTreeMap::new(),
        iommu_groups: None,
    };
    let mut topology = topology;
    p2pdma_core::check_consistent(&topology)
        .map_err(|e| Error::invalid("import", format!("the inputs do not make one machine: {e}")))?;
    report.devices = topology.devices.len();
    report.host_bridges = topology.host_bridges.iter().map(|h| h.name.clone()).collect();
    // nvidia-smi's NUMA affinity for GPUs whose node no other input gives.
    for input in inputs {
        for part in &input.parts {
            if let ParsedData::Topo(t) = &part.data {
                crosscheck::fill_numa_from_topo(&mut topology, t, &part.origin, &mut report);
            }
        }
    }
    fill_numa_by_host_bridge(&mut topology, &mut report);
    numa_unknowns(&topology, &mut report);
    p2pdma_core::iommu_groups::fill(&mut topology);
    report.crosscheck = crosscheck::run(&topology, inputs)?;
    Ok(Assembled { topology, report })
}

impl Collected {
    fn lspci(&mut self, l: &crate::import::lspci::Listing, o: &Origin) {
        let Collected { devs, lspci_bridges, .. } = self;
        for d in &l.devices {
            let c = devs.entry(d.bdf).or_default();
            let at = |n: usize| {
                let mut x = o.clone();
                x.line = o.line + n.saturating_sub(1);
                x
            };
            c.seen.get_or_insert(at(d.line));
            let names = d.ids_from_names.then(|| "from the printed names (no -nn)".to_string());
            if let Some(v) = d.vendor {
                claim(&mut c.vendor, v, o, d.line, names.clone());
            }
            if let Some(v) = d.device {
                claim(&mut c.device, v, o, d.line, names.clone());
            }
            if let Some(cl) = d.class {
                let derived = d.prog_if.is_none().then(|| "programming interface not shown: 00".to_string());
                claim(&mut c.class, u32::from(cl) << 8 | u32::from(d.prog_if.unwrap_or(0)), o, d.line, derived);
            }
            if let Some(s) = d.subsystem {
                claim(&mut c.subsystem, s, o, d.line, None);
            }
            if let Some(r) = d.bus_range {
                *lspci_bridges = true;
                claim(&mut c.range, r, o, d.line, None);
            }
            if let Some(p) = d.port_type {
                claim(&mut c.port_type, p, o, d.line, None);
            }
            if let Some(a) = d.acs {
                let how = match d.caps {
                    crate::import::lspci::Caps::Denied => Some("Capabilities: <access denied> (not root)".into()),
                    _ if !d.config.is_empty() => Some("decoded from the config-space dump".into()),
                    _ => None,
                };
                claim(&mut c.acs, a, o, d.line, how);
            }
            if !d.bars.is_empty() {
                let how =
                    d.bar_numbers_counted.then(|| "lspci -v prints no register numbers: counted in order".to_string());
                claim(&mut c.bars, d.bars.clone(), o, d.line, how);
            }
            if let Some(x) = &d.driver {
                claim(&mut c.driver, x.clone(), o, d.line, None);
            }
            if let Some(x) = d.numa_node {
                claim(&mut c.numa, x, o, d.line, None);
            }
            if let Some(x) = d.iommu_group {
                claim(&mut c.iommu_group, x, o, d.line, None);
            }
            if let Some(x) = &d.link {
                claim(&mut c.link, x.clone(), o, d.line, None);
            }
            if !d.config.is_empty() {
                c.config = Some(d.config.clone());
            }
            c.name.get_or_insert_with(|| format!("{}: {}", d.class_name, d.name));
        }
    }

    fn tree(&mut self, t: &crate::import::lspci_tree::Tree, o: &Origin) {
        let Collected { devs, roots, .. } = self;
        for &(d, b) in &t.roots {
            roots.entry((d, b)).or_default().push(o.clone());
        }
        for n in &t.nodes {
            let c = devs.entry(n.bdf).or_default();
            let mut at = o.clone();
            at.line = o.line + n.line.saturating_sub(1);
            c.seen.get_or_insert(at);
            claim(&mut c.parent, n.parent, o, n.line, None);
            if let Some(r) = n.range {
                claim(&mut c.range, r, o, n.line, None);
            }
            let names = n.ids_from_names.then(|| "from the printed names (no -nn)".to_string());
            if let Some(v) = n.vendor {
                claim(&mut c.vendor, v, o, n.line, names.clone());
            }
            if let Some(v) = n.device {
                claim(&mut c.device, v, o, n.line, names);
            }
            if let Some(name) = &n.name {
                c.name.get_or_insert_with(|| name.clone());
            }
        }
    }

    fn hwloc(&mut self, h: &crate::import::hwloc::HwlocTopology, o: &Origin) {
        let Collected { devs, roots, m, .. } = self;
        for &(d, first, _, _) in &h.host_bridges {
            roots.entry((d, first)).or_default().push(o.clone());
        }
        for p in &h.devices {
            let c = devs.entry(p.bdf).or_default();
            let mut at = o.clone();
            at.line = o.line + p.line.saturating_sub(1);
            c.seen.get_or_insert(at);
            let line = p.line;
            claim(&mut c.parent, p.parent, o, line, None);
            if let Some(r) = p.range {
                claim(&mut c.range, r, o, line, None);
            }
            if let Some(v) = p.vendor {
                claim(&mut c.vendor, v, o, line, None);
            }
            if let Some(v) = p.device {
                claim(&mut c.device, v, o, line, None);
            }
            if let Some(cl) = p.class {
                claim(
                    &mut c.class,
                    u32::from(cl) << 8,
                    o,
                    line,
                    Some("hwloc gives no programming interface: 00".into()),
                );
            }
            if let Some(s) = p.subsystem {
                claim(&mut c.subsystem, s, o, line, None);
            }
            if let Some(n) = p.numa_node {
                claim(&mut c.numa, n, o, line, Some("the hwloc object it hangs from".into()));
            }
            if let Some(name) = &p.name {
                c.name.get_or_insert_with(|| name.clone());
            }
        }
        m.claim_system(&h.os_release, &h.arch, &h.cpu_vendor, h.cpu_family, &h.cpu_model_name, o);
        if !h.numa_nodes.is_empty() {
            claim(&mut m.numa_nodes, h.numa_nodes.len() as u32, o, 1, None);
        }
        if h.packages > 0 {
            claim(&mut m.sockets, h.packages, o, 1, None);
        }
    }

    fn dmesg(&mut self, k: &crate::import::dmesg::KernelLog, o: &Origin) {
        let Collected { devs, roots, m, .. } = self;
        if let Some((r, n)) = &k.release {
            claim(&mut m.kernel_release, r.clone(), o, *n, None);
        }
        if let Some((c, n)) = &k.cmdline {
            claim(&mut m.cmdline, c.clone(), o, *n, None);
        }
        if let Some((mode, n)) = k.iommu {
            claim(&mut m.iommu_mode, mode, o, n, None);
        }
        for &(d, b, n) in &k.host_bridges {
            let mut at = o.clone();
            at.line = o.line + n - 1;
            roots.entry((d, b)).or_default().push(at);
        }
        if let Some(first) = k.p2p.first() {
            let mut at = o.clone();
            at.line = o.line + first.line - 1;
            m.p2pdma.get_or_insert(at);
        }
        for l in &k.p2p {
            let mut at = o.clone();
            at.line = o.line + l.line - 1;
            let named = match l.event {
                P2pEvent::Added { provider, .. } => vec![provider],
                P2pEvent::Refused { client, provider } | P2pEvent::AcsRedirect { client, provider } => {
                    vec![client, provider]
                }
            };
            for b in named {
                devs.entry(b).or_default().seen.get_or_insert(at.clone());
            }
        }
    }

    fn sys(&mut self, s: &crate::import::sysinfo::SysInfo, o: &Origin) {
        let m = &mut self.m;
        let derived = (o.format == Format::Grub)
            .then(|| "GRUB's setting: the next boot's parameters, maybe not the running kernel's".to_string());
        match (&s.cmdline, o.format) {
            // `GRUB_CMDLINE_LINUX` and `GRUB_CMDLINE_LINUX_DEFAULT` both go on the command line.
            (Some(v), Format::Grub) => match m.cmdline.iter_mut().find(|c| c.origin.format == Format::Grub) {
                Some(c) => c.value = format!("{} {v}", c.value),
                None => claim(&mut m.cmdline, v.clone(), o, 1, derived),
            },
            (Some(v), _) => claim(&mut m.cmdline, v.clone(), o, 1, derived),
            _ => {}
        }
        m.claim_system(&s.kernel_release, &s.arch, &s.cpu_vendor, s.cpu_family, &s.cpu_model_name, o);
        if let Some(v) = s.numa_nodes {
            claim(&mut m.numa_nodes, v, o, 1, None);
        }
        if let Some(v) = s.sockets {
            claim(&mut m.sockets, v, o, 1, None);
        }
    }

    /// Bus ranges and root buses give each device a parent claim.
    fn place(&mut self) {
        let Collected { devs, roots, lspci_bridges, .. } = self;
        // Bus ranges place devices: the bridge whose secondary bus a device sits on.
        let mut secondary: HashMap<(u32, u8), Bdf> = HashMap::new();
        for (bdf, c) in devs.iter() {
            if let Some(r) = c.range.first() {
                secondary.entry((bdf.domain, r.value.0)).or_insert(*bdf);
            }
        }
        // A full `lspci -vvv` (it shows bridges' bus lines) names root buses by omission: a bus
        // with devices that no bridge leads to.
        if *lspci_bridges {
            let mut inferred = Vec::new();
            for (bdf, c) in devs.iter() {
                let key = (bdf.domain, bdf.bus);
                if c.parent.is_empty() && !secondary.contains_key(&key) && !roots.contains_key(&key) {
                    if let Some(o) = c.seen.clone().filter(|o| o.format == Format::LspciVerbose) {
                        inferred.push((key, o));
                    }
                }
            }
            for (key, o) in inferred {
                roots.entry(key).or_insert_with(|| vec![o]);
            }
        }
        let seen: HashMap<Bdf, Origin> = devs.iter().filter_map(|(b, c)| Some((*b, c.seen.clone()?))).collect();
        for (bdf, c) in devs.iter_mut() {
            let key = (bdf.domain, bdf.bus);
            if roots.contains_key(&key) {
                let o = roots[&key][0].clone();
                c.parent.push(Claim { value: None, origin: o, derived: Some("its bus is a root bus".into()) });
            } else if let Some(&bridge) = secondary.get(&key) {
                if bridge != *bdf {
                    let o = seen.get(&bridge).cloned().unwrap_or_else(devs_origin_placeholder);
                    c.parent.push(Claim {
                        value: Some(bridge),
                        origin: o,
                        derived: Some(format!("on the secondary bus of {bridge}")),
                    });
                }
            }
        }
    }
}

fn resolve_machine(report: &mut ImportReport, m: MachineClaims) -> Machine {
    // Machine facts.
    let s = |v: &String| v.clone();
    let arch = pick(report, "machine", "arch", m.arch, s);
    let cpu_vendor = pick(report, "machine", "cpu_vendor", m.cpu_vendor, s);
    let cpu_family = pick(report, "machine", "cpu_family", m.cpu_family, |v| v.to_string());
    let cpu_model_name = pick(report, "machine", "cpu_model_name", m.cpu_model_name, s);
    let kernel_release = pick(report, "machine", "kernel_release", m.kernel_release, s);
    let cmdline = pick(report, "machine", "cmdline", m.cmdline, s);
    let numa_nodes = pick(report, "machine", "numa_nodes", m.numa_nodes, |v| v.to_string());
    pick(report, "machine", "sockets", m.sockets, |v| v.to_string());
    let mut iommu_claims = m.iommu_mode;
    if let Some(c) = &cmdline {
        let off = match cpu_vendor.as_deref() {
            Some("AuthenticAMD") => c.split_whitespace().any(|w| w == "amd_iommu=off"),
            Some("GenuineIntel") => c.split_whitespace().any(|w| w == "intel_iommu=off"),
            _ => false,
        };
        if off {
            let origin = report.facts.iter().find(|f| f.fact == "cmdline").map(|f| f.origin.clone());
            if let Some(origin) = origin {
                iommu_claims.push(Claim {
                    value: IommuMode::Off,
                    origin,
                    derived: Some("the command line turns the CPU vendor's IOMMU off".into()),
                });
            }
        }
    }
    let iommu_mode = pick(report, "machine", "iommu_mode", iommu_claims, |v| format!("{v:?}").to_lowercase());
    let mut machine = Machine {
        arch,
        cpu_vendor,
        cpu_family,
        cpu_model_name,
        kernel_release,
        cmdline,
        iommu: iommu_mode.map(|m| m != IommuMode::Off),
        ..Default::default()
    };
    machine.kernel.iommu_mode = iommu_mode;
    if let Some(o) = &m.p2pdma {
        machine.kernel.p2pdma =
            P2pdmaBuild { built: Built::Yes, evidence: Some(format!("the kernel log's P2PDMA lines ({o})")) };
    }
    report.numa_nodes = numa_nodes;
    machine_unknowns(report, &machine);
    machine
}

fn resolve_devices(report: &mut ImportReport, claims_of: &mut BTreeMap<Bdf, DevClaims>) -> Resolved {
    // Devices.
    let mut resolved: BTreeMap<Bdf, Device> = BTreeMap::new();
    let mut inferred_ports: Vec<Bdf> = Vec::new();
    let mut classes_by_id: HashMap<(u16, u16), u32> = HashMap::new();
    for (bdf, c) in claims_of.iter_mut() {
        let Some(upstream) = pick_upstream(report, bdf, c) else { continue };
        let facts = pick_device_facts(report, &bdf.to_string(), c);
        if let (Some(v), Some(d), Some(cl)) = (facts.vendor, facts.device, facts.class) {
            classes_by_id.entry((v, d)).or_insert(cl);
        }
        let is_bridge = facts.is_bridge(c.config.as_deref());
        if facts.port_type.is_none() && is_bridge {
            inferred_ports.push(*bdf);
        }
        let ids_known = facts.vendor.is_some() && facts.device.is_some();
        resolved.insert(*bdf, device_from(*bdf, upstream, is_bridge, facts, c.config.as_deref()));
        if !ids_known {
            report.unknown.push(Unknown {
                subject: bdf.to_string(),
                fact: "ids",
                consequence: "the host bridge whitelist cannot be looked up for it, names are not shown".into(),
                reveal: format!("lspci -nn -s {bdf}"),
            });
        }
    }
    Resolved { devices: resolved, inferred_ports, classes_by_id }
}

/// A device's facts once each is chosen, its upstream bridge aside.
struct DeviceFacts {
    vendor: Option<u16>,
    device: Option<u16>,
    class: Option<u32>,
    subsystem: Option<(u16, u16)>,
    range: Option<(u8, u8)>,
    port_type: Option<PortType>,
    acs: Option<Acs>,
    bars: Option<Vec<Bar>>,
    driver: Option<String>,
    numa: Option<i32>,
    iommu_group: Option<u32>,
    link: Option<Link>,
}

impl DeviceFacts {
    /// A bus range, a bridge's class, or a type-1 config header.
    fn is_bridge(&self, config: Option<&[u8]>) -> bool {
        self.range.is_some()
            || self.class.is_some_and(|c| c >> 8 == 0x0604 || c >> 8 == 0x0609)
            || config.and_then(|b| b.get(0x0e)).is_some_and(|h| h & 0x7f == 1)
    }
}

/// The device's upstream bridge (`Some(None)`: on a root bus); None when no input places it
/// in the tree, and it is then listed as left out.
fn pick_upstream(report: &mut ImportReport, bdf: &Bdf, c: &mut DevClaims) -> Option<Option<Bdf>> {
    let parent = pick(report, &bdf.to_string(), "upstream", std::mem::take(&mut c.parent), |p| match p {
        Some(b) => b.to_string(),
        None => "root bus".into(),
    });
    if parent.is_none() {
        let origin = c.seen.clone().unwrap_or_else(devs_origin_placeholder);
        let why = if origin.format == Format::KernelLog {
            "named only by the kernel log: no input places it in the tree (add `lspci -tv`)"
        } else {
            "no input places it in the tree: no bridge's bus range leads to its bus and it is not on a root bus (add `lspci -tv`)"
        };
        report.left_out.push(LeftOut { device: *bdf, why: why.into(), origin });
    }
    parent
}

/// Chooses each of the device's facts among the claims, in the report's order.
fn pick_device_facts(report: &mut ImportReport, subject: &str, c: &mut DevClaims) -> DeviceFacts {
    use std::mem::take;
    DeviceFacts {
        vendor: pick(report, subject, "vendor", take(&mut c.vendor), hex4),
        device: pick(report, subject, "device", take(&mut c.device), hex4),
        class: pick(report, subject, "class", take(&mut c.class), |v| format!("{v:06x}")),
        subsystem: pick(report, subject, "subsystem", take(&mut c.subsystem), |(v, d)| format!("{v:04x}:{d:04x}")),
        range: pick(report, subject, "bus_range", take(&mut c.range), |(a, b)| format!("{a:02x}-{b:02x}")),
        port_type: pick(report, subject, "port_type", take(&mut c.port_type), |p| p.label().into()),
        acs: pick(report, subject, "acs", take(&mut c.acs), |a| acs_text(*a)),
        bars: pick(report, subject, "bars", take(&mut c.bars), |b| format!("{} BARs", b.len())),
        driver: pick(report, subject, "driver", take(&mut c.driver), |v| v.clone()),
        numa: pick(report, subject, "numa_node", take(&mut c.numa), |v| v.to_string()),
        iommu_group: pick(report, subject, "iommu_group", take(&mut c.iommu_group), |v| v.to_string()),
        link: pick(report, subject, "link", take(&mut c.link), |l| {
            format!(
                "{} x{}",
                l.current_speed.as_deref().unwrap_or("?"),
                l.current_width.map_or("?".into(), |w| w.to_string())
            )
        }),
    }
}

/// The device as the snapshot holds it: what no input gave is zero, empty or None.
fn device_from(bdf: Bdf, upstream: Option<Bdf>, is_bridge: bool, f: DeviceFacts, config: Option<&[u8]>) -> Device {
    Device {
        bdf,
        name: None,
        vendor: f.vendor.unwrap_or(0),
        device: f.device.unwrap_or(0),
        class: f.class.unwrap_or(0),
        subsystem: f.subsystem,
        vendor_name: None,
        device_name: None,
        class_name: None,
        driver: f.driver,
        upstream,
        host_bridge: String::new(),
        physfn: None,
        is_bridge,
        port_type: f.port_type,
        link: f.link,
        acs: f.acs.unwrap_or(Acs::Unknown),
        bars: f.bars.unwrap_or_default(),
        iommu_group: f.iommu_group,
        numa_node: f.numa,
        local_cpus: None,
        p2pmem: None,
        cmb: None,
        config_hex: config.map(|b| b.iter().map(|x| format!("{x:02x}")).collect()),
    }
}

fn fill_classes(
    report: &mut ImportReport,
    resolved: &mut BTreeMap<Bdf, Device>,
    claims_of: &BTreeMap<Bdf, DevClaims>,
    classes_by_id: &HashMap<(u16, u16), u32>,
) {
    // Classes no input printed: a bridge's (it has a bus range), or that of a function with
    // the same vendor:device.
    for d in resolved.values_mut() {
        if d.class != 0 {
            continue;
        }
        let subject = d.bdf.to_string();
        let origin = claims_of.get(&d.bdf).and_then(|c| c.seen.clone()).unwrap_or_else(devs_origin_placeholder);
        let (class, how) = if d.is_bridge {
            (Some(0x060400), "a bridge: it has a bus range".to_string())
        } else if let Some(&c) = classes_by_id.get(&(d.vendor, d.device)).filter(|_| d.vendor != 0) {
            (Some(c), format!("as another function with the same IDs {:04x}:{:04x}", d.vendor, d.device))
        } else {
            (None, String::new())
        };
        match class {
            Some(c) => {
                d.class = c;
                report.facts.push(Fact {
                    subject,
                    fact: "class",
                    value: format!("{c:06x}"),
                    origin,
                    derived: Some(how),
                });
            }
            None => report.unknown.push(Unknown {
                subject,
                fact: "class",
                consequence: "its kind (GPU, NIC, NVMe, bridge) is unknown; it is taken as an endpoint".into(),
                reveal: format!("lspci -nn -s {}", d.bdf),
            }),
        }
    }
}

fn drop_orphans(report: &mut ImportReport, resolved: &mut BTreeMap<Bdf, Device>, claims_of: &BTreeMap<Bdf, DevClaims>) {
    // Parents named but left out, or absent: their children cannot be placed either.
    let mut dropped = true;
    while dropped {
        dropped = false;
        let missing: Vec<Bdf> = resolved
            .values()
            .filter(|d| d.upstream.is_some_and(|u| !resolved.contains_key(&u)))
            .map(|d| d.bdf)
            .collect();
        for b in missing {
            let d = resolved.remove(&b).expect("listed above");
            let origin = claims_of.get(&b).and_then(|c| c.seen.clone()).unwrap_or_else(devs_origin_placeholder);
            report.left_out.push(LeftOut {
                device: b,
                why: format!(
                    "its upstream bridge {} is not in the inputs",
                    d.upstream.map_or("?".into(), |u| u.to_string())
                ),
                origin,
            });
            dropped = true;
        }
    }
}

/// Each device's host bridge (its top ancestor's bus) and the port types the shape gives.
fn place_under_host_bridges(
    report: &mut ImportReport,
    resolved: &mut BTreeMap<Bdf, Device>,
    claims_of: &BTreeMap<Bdf, DevClaims>,
    inferred_ports: &[Bdf],
) -> BTreeSet<(u32, u8)> {
    // Host bridges: each device's top ancestor's bus; port types from the shape.
    let order: Vec<Bdf> = {
        let depth = |b: Bdf| {
            let mut n = 0;
            let mut cur = resolved.get(&b).and_then(|d| d.upstream);
            while let Some(u) = cur {
                n += 1;
                if n > resolved.len() {
                    break;
                }
                cur = resolved.get(&u).and_then(|d| d.upstream);
            }
            n
        };
        let mut v: Vec<Bdf> = resolved.keys().copied().collect();
        v.sort_by_key(|b| (depth(*b), *b));
        v
    };
    let mut host_bridges: BTreeSet<(u32, u8)> = BTreeSet::new();
    for b in &order {
        let up = resolved[b].upstream;
        let (hb, parent_port) = match up {
            None => ((b.domain, b.bus), None),
            Some(u) => {
                let p = &resolved[&u];
                let hb = parse_hb_name(&p.host_bridge).unwrap_or((u.domain, u.bus));
                (hb, p.port_type)
            }
        };
        host_bridges.insert(hb);
        let inferred = inferred_ports.contains(b).then_some(match (up, parent_port) {
            (None, _) => Some(PortType::RootPort),
            (Some(_), Some(PortType::RootPort | PortType::SwitchDownstream)) => Some(PortType::SwitchUpstream),
            (Some(_), Some(PortType::SwitchUpstream)) => Some(PortType::SwitchDownstream),
            _ => None,
        });
        let d = resolved.get_mut(b).expect("ordered from the map");
        d.host_bridge = format!("pci{:04x}:{:02x}", hb.0, hb.1);
        if let Some(Some(p)) = inferred {
            d.port_type = Some(p);
            let origin = claims_of.get(b).and_then(|c| c.seen.clone()).unwrap_or_else(devs_origin_placeholder);
            report.facts.push(Fact {
                subject: b.to_string(),
                fact: "port_type",
                value: p.label().into(),
                origin,
                derived: Some("inferred from the tree's shape (no lspci -vvv of it)".into()),
            });
        }
    }
    host_bridges
}

/// A device whose NUMA node no input gives takes the node of the other devices under its
/// host bridge, when they all agree: the kernel gives a PCI device its bus's node
/// (drivers/pci/probe.c, pci_device_add: `set_dev_node(&dev->dev, pcibus_to_node(bus))`)
/// and a child bus shares its root bus's (pci_alloc_child_bus copies `sysdata`). This is
/// what lets a NIC's second port or a tree-only device meet nvidia-smi's SYS/NODE.
fn fill_numa_by_host_bridge(topology: &mut Topology, report: &mut ImportReport) {
    let mut nodes: BTreeMap<String, (BTreeSet<i32>, Bdf)> = BTreeMap::new();
    for d in &topology.devices {
        if let Some(n) = d.numa_node.filter(|n| *n >= 0) {
            nodes.entry(d.host_bridge.clone()).or_insert_with(|| (BTreeSet::new(), d.bdf)).0.insert(n);
        }
    }
    // One node, and the origin of the fact it came from, per host bridge: looked up once, not
    // once per device (a 900-device paste has thousands of facts).
    let mut agreed: BTreeMap<String, (i32, Bdf, Origin)> = BTreeMap::new();
    for (hb, (set, from)) in nodes.into_iter().filter(|(_, (set, _))| set.len() == 1) {
        let node = *set.iter().next().expect("one node");
        let subject = from.to_string();
        let origin = report
            .facts
            .iter()
            .find(|f| f.subject == subject && f.fact == "numa_node")
            .map_or_else(devs_origin_placeholder, |f| f.origin.clone());
        agreed.insert(hb, (node, from, origin));
    }
    for d in topology.devices.iter_mut().filter(|d| d.numa_node.is_none()) {
        let Some((node, from, origin)) = agreed.get(&d.host_bridge) else { continue };
        d.numa_node = Some(*node);
        report.facts.push(Fact {
            subject: d.bdf.to_string(),
            fact: "numa_node",
            value: node.to_string(),
            origin: origin.clone(),
            derived: Some(format!("as {from} and every other device of known node under {}", d.host_bridge)),
        });
    }
}

/// On a machine of several NUMA nodes (or of an unknown count), an endpoint whose node no
/// input gives: nvidia-smi's NODE and SYS cannot be told apart for it.
fn numa_unknowns(topology: &Topology, report: &mut ImportReport) {
    if report.numa_nodes == Some(1) {
        return;
    }
    for d in topology.devices.iter().filter(|d| d.numa_node.is_none() && d.is_dma_capable()) {
        report.unknown.push(Unknown {
            subject: d.bdf.to_string(),
            fact: "numa_node",
            consequence: "NODE and SYS path classes cannot be told apart for it".into(),
            reveal: format!("cat /sys/bus/pci/devices/{}/numa_node", d.bdf),
        });
    }
}

fn acs_unknowns(report: &mut ImportReport, resolved: &BTreeMap<Bdf, Device>) {
    for d in resolved.values() {
        // hwloc and `lspci -t` give no BARs: whether the device offers memory is not known,
        // and it is no provider (no matrix row; `check` refuses it as one) until an input says.
        if d.bars.is_empty() && d.config_hex.is_none() && d.is_dma_capable() {
            report.unknown.push(Unknown {
                subject: d.bdf.to_string(),
                fact: "bars",
                consequence: "its memory BARs are unknown: it is no provider here (no matrix row; `check` with it as provider refuses)".into(),
                reveal: format!("lspci -vvv -s {}", d.bdf),
            });
        }
        if d.acs == Acs::Unknown && (d.is_bridge || d.is_dma_capable()) {
            report.unknown.push(Unknown {
                subject: d.bdf.to_string(),
                fact: "acs",
                consequence: "verdicts through it are uncertain (check exit 3, BUSn? in matrices)".into(),
                reveal: format!("sudo lspci -vvv -s {}", d.bdf),
            });
        }
    }
}

fn parse_hb_name(name: &str) -> Option<(u32, u8)> {
    let (d, b) = name.strip_prefix("pci")?.split_once(':')?;
    Some((u32::from_str_radix(d, 16).ok()?, u8::from_str_radix(b, 16).ok()?))
}

/// A derived fact's origin when no input line stands behind it alone.
fn devs_origin_placeholder() -> Origin {
    Origin { input: "(derived)".into(), line: 0, format: Format::LspciTree }
}

fn acs_text(a: Acs) -> String {
    match a {
        Acs::Absent => "absent".into(),
        Acs::Unknown => "unknown".into(),
        Acs::Present { ctrl, .. } => format!("present, ACSCtl {}", p2pdma_core::config::acs_bits::lspci(ctrl)),
    }
}

fn machine_unknowns(report: &mut ImportReport, m: &Machine) {
    let mut add = |fact: &'static str, consequence: &str, reveal: &str| {
        report.unknown.push(Unknown {
            subject: "machine".into(),
            fact,
            consequence: consequence.into(),
            reveal: reveal.into(),
        })
    };
    if m.cpu_vendor.is_none() || m.arch.is_none() {
        add(
            "cpu",
            "the host-bridge decision is uncertain: the kernel lets AMD Zen CPUs through the host bridge, other CPUs only by the whitelist",
            "lscpu",
        );
    }
    if m.kernel_release.is_none() {
        add("kernel_release", "the whitelist in force is taken from the newest release p2pdma knows", "uname -a");
    }
    if m.cmdline.is_none() {
        add("cmdline", "ACS parameters (pci=disable_acs_redir=, pci=config_acs=) are unknown", "cat /proc/cmdline");
    }
    if m.kernel.iommu_mode.is_none() {
        add(
            "iommu",
            "whether the IOMMU forces ACS redirect on is unknown",
            "sudo dmesg | grep -i -e DMAR -e AMD-Vi -e iommu",
        );
    }
}
