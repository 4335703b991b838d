//! Human output, written from the same structs that `--json` prints.

use std::collections::HashMap;
use std::fmt::Write;

use p2pdma_core::analysis::{self, CheckReport, FindReport, Matrix, ProviderRow};
use p2pdma_core::config::{acs_bits, Acs};
use p2pdma_core::iommu_groups::{self, GroupInfo, GroupSource};
use p2pdma_core::kernel::{self, Built, KernelCapabilities};
use p2pdma_core::model::{Device, HostBridge, Machine};
use p2pdma_core::verdict::{BridgeVerdict, MapType, PairResult};
use p2pdma_core::{Bdf, Engine};
use serde::Serialize;

/// `p2pdma topo --json`.
#[derive(Serialize)]
pub struct TopoReport<'t> {
    pub machine: &'t Machine,
    /// The kernel as judged: P2PDMA built, release, features, IOMMU mode, whitelist in force.
    pub kernel: KernelCapabilities,
    /// The CPU rule: AMD Zen or newer lets P2P through any host bridge.
    pub cpu_allows_p2pdma: bool,
    pub host_bridges: Vec<BridgeReport<'t>>,
    pub devices: &'t [Device],
    /// Where `iommu_group` came from (kernel or predicted) and what the prediction doubts.
    pub iommu_groups: Option<&'t GroupInfo>,
    pub providers: Vec<ProviderRow>,
    pub matrix: Matrix,
}

#[derive(Serialize)]
pub struct BridgeReport<'t> {
    #[serde(flatten)]
    pub bridge: &'t HostBridge,
    pub whitelist: BridgeVerdict,
}

impl<'t> TopoReport<'t> {
    pub fn new(engine: &Engine<'t>) -> Self {
        let topo = engine.topo;
        TopoReport {
            machine: &topo.machine,
            kernel: kernel::capabilities(&topo.machine),
            cpu_allows_p2pdma: engine.cpu_allows(),
            host_bridges: topo
                .host_bridges
                .iter()
                .zip(engine.host_bridge_info())
                .map(|(bridge, whitelist)| BridgeReport { bridge, whitelist })
                .collect(),
            devices: &topo.devices,
            iommu_groups: topo.iommu_groups.as_ref(),
            providers: analysis::providers(topo),
            matrix: analysis::matrix(engine),
        }
    }
}

pub fn bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn machine_line(m: &Machine, cpu_allows: bool) -> String {
    let cpu = format!(
        "{} family {}",
        m.cpu_vendor.as_deref().unwrap_or("unknown CPU"),
        m.cpu_family.map(|f| format!("{f:#x}")).unwrap_or_else(|| "?".into())
    );
    format!(
        "machine: {} {cpu} ({}), kernel {}, IOMMU {}\n  cmdline: {}\n",
        m.arch.as_deref().unwrap_or("?"),
        if cpu_allows { "AMD Zen: P2P allowed through any host bridge" } else { "CPU rule does not apply" },
        m.kernel_release.as_deref().unwrap_or("?"),
        match m.iommu {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown",
        },
        m.cmdline.as_deref().unwrap_or("-")
    )
}

/// The kernel first: a kernel without P2PDMA decides everything below.
fn kernel_lines(k: &KernelCapabilities) -> String {
    let mut out = String::new();
    let evidence = k.p2pdma.evidence.as_deref().unwrap_or("no evidence");
    match k.p2pdma.built {
        Built::No => {
            writeln!(out, "KERNEL WITHOUT P2PDMA: CONFIG_PCI_P2PDMA is not built ({evidence}).").unwrap();
            writeln!(out, "  Every P2P verdict is not_supported and no device publishes P2P memory.").unwrap();
            writeln!(out, "  Fix: {}.", kernel::ABSENT_FIX).unwrap();
        }
        Built::Yes => writeln!(out, "kernel: CONFIG_PCI_P2PDMA=y ({evidence})").unwrap(),
        Built::Unknown => writeln!(out, "kernel: CONFIG_PCI_P2PDMA unknown ({evidence}); judged as built").unwrap(),
    }
    let ids: Vec<String> = k.whitelist.iter().map(|e| e.id()).collect();
    writeln!(out, "  whitelist ({} entries, {}): {}", ids.len(), k.whitelist_source.describe(), ids.join(" ")).unwrap();
    let have: Vec<String> = k
        .features
        .iter()
        .map(|f| {
            let mark = match f.available {
                Some(true) => "yes",
                Some(false) => "no",
                None => "?",
            };
            format!("{} {mark} (since {})", f.name, f.since)
        })
        .collect();
    writeln!(out, "  features: {}", have.join(", ")).unwrap();
    if let (Some(mode), Some(meaning)) = (k.iommu_mode, k.iommu_meaning) {
        writeln!(
            out,
            "  IOMMU {}: {meaning}",
            serde_json::to_value(mode).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
        )
        .unwrap();
    }
    out
}

fn acs_text(acs: Acs) -> Option<String> {
    match acs {
        Acs::Absent => None,
        Acs::Unknown => Some("ACS ?".into()),
        Acs::Present { cap, ctrl, .. } => {
            let on = acs_bits::names(ctrl);
            let redirect = if ctrl & acs_bits::REDIRECT != 0 { " REDIRECT" } else { "" };
            Some(format!(
                "ACS cap {cap:#04x} ctrl {ctrl:#06x} [{}]{redirect}",
                if on.is_empty() { "-".to_string() } else { on.join(" ") }
            ))
        }
    }
}

fn device_line(d: &Device) -> String {
    let mut s = format!("{}", d.bdf);
    if let Some(n) = &d.name {
        write!(s, "  {n}").unwrap();
    }
    // Bridges by their PCIe role; everything else by its class, as lspci names it.
    let kind = match d.port_type.filter(|_| d.is_pci_bridge()) {
        Some(t) => t.label(),
        None => d.class_name.as_deref().unwrap_or(d.kind()),
    };
    write!(s, "  {kind} {:04x}:{:04x}", d.vendor, d.device).unwrap();
    if let Some(names) = d.pci_name() {
        write!(s, " ({names})").unwrap();
    }
    if let Some(drv) = &d.driver {
        write!(s, " [{drv}]").unwrap();
    }
    if let Some(pf) = d.physfn {
        write!(s, " VF of {pf}").unwrap();
    }
    if let Some(l) = &d.link {
        if let (Some(speed), Some(width)) = (&l.current_speed, l.current_width) {
            write!(s, "  {speed} x{width}").unwrap();
            if l.degraded() {
                write!(s, " (degraded from {} x{})", l.max_speed.as_deref().unwrap_or("?"), l.max_width.unwrap_or(0))
                    .unwrap();
            }
        }
    }
    if let Some(a) = acs_text(d.acs) {
        write!(s, "  {a}").unwrap();
    }
    if let Some(g) = d.iommu_group {
        write!(s, "  iommu group {g}").unwrap();
    }
    if let Some(m) = &d.p2pmem {
        write!(
            s,
            "  ** P2P memory {} free of {}{}",
            bytes(m.available),
            bytes(m.size),
            if m.published { ", published" } else { ", NOT published" }
        )
        .unwrap();
    }
    s
}

/// `0000:03:00.0 Non-Volatile memory controller [0108]: Red Hat, Inc. QEMU NVM Express
/// Controller [1b36:0010]`, as `lspci -nn` writes it.
fn names_line(d: &analysis::DeviceNames) -> String {
    let unknown = |kind: &str, id: u16| format!("{kind} {id:04x}");
    format!(
        "{} {} [{:04x}]: {} {} [{:04x}:{:04x}]",
        d.bdf,
        d.class_name.clone().unwrap_or_else(|| format!("Class {:04x}", d.class >> 8)),
        d.class >> 8,
        d.vendor_name.clone().unwrap_or_else(|| unknown("Vendor", d.vendor)),
        d.device_name.clone().unwrap_or_else(|| unknown("Device", d.device)),
        d.vendor,
        d.device
    )
}

/// Labels for matrix rows/columns: topology names where there are any, else short BDFs.
fn short(bdf: Bdf, names: &HashMap<Bdf, String>) -> String {
    names.get(&bdf).cloned().unwrap_or_else(|| {
        if bdf.domain == 0 {
            format!("{:02x}:{:02x}.{}", bdf.bus, bdf.dev, bdf.func)
        } else {
            bdf.to_string()
        }
    })
}

pub fn cell(r: &PairResult, same: bool) -> String {
    match (r.map_type, r.distance) {
        _ if same => "SELF".into(),
        (MapType::BusAddr, Some(d)) => format!("BUS{d}"),
        (MapType::ThruHostBridge, Some(d)) => format!("HB{d}"),
        _ => "NO".into(),
    }
}

pub const LEGEND: &str = "  BUSn = by PCI bus address below a common bridge (distance n)\n  HBn  = through the host bridge / root complex (distance n)\n  NO   = the kernel refuses (map type not_supported)\n  SELF = the provider's own memory\n  (rows: providers; columns: DMA-capable endpoints; `p2pdma check P C` explains a cell)\n";

pub fn topo(engine: &Engine<'_>, r: &TopoReport<'_>) -> String {
    let topo = engine.topo;
    let mut out = kernel_lines(&r.kernel);
    out.push_str(&machine_line(r.machine, r.cpu_allows_p2pdma));
    let mut children: HashMap<Option<Bdf>, Vec<&Device>> = HashMap::new();
    for d in &topo.devices {
        children.entry(d.upstream).or_default().push(d);
    }
    fn walk(out: &mut String, list: &[&Device], prefix: &str, children: &HashMap<Option<Bdf>, Vec<&Device>>) {
        for (i, d) in list.iter().enumerate() {
            let last = i + 1 == list.len();
            writeln!(out, "{prefix}{}{}", if last { "└─ " } else { "├─ " }, device_line(d)).unwrap();
            if let Some(kids) = children.get(&Some(d.bdf)) {
                let next = format!("{prefix}{}", if last { "   " } else { "│  " });
                walk(out, kids, &next, children);
            }
        }
    }
    for (hb, info) in topo.host_bridges.iter().zip(&r.host_bridges) {
        let w = &info.whitelist;
        let status = match (&w.id, &w.entry) {
            (None, _) => "no 00.0/root port device to identify it: never whitelisted".to_string(),
            (Some(id), None) => format!("{id}, not on the P2PDMA whitelist"),
            (Some(id), Some(e)) => format!(
                "{id}, whitelisted ({e}{})",
                if w.same_host_bridge_only { ", same host bridge only" } else { "" }
            ),
        };
        writeln!(out, "\n{}  host bridge ({status})", hb.name).unwrap();
        let roots: Vec<&Device> = children
            .get(&None)
            .map(|v| v.iter().copied().filter(|d| d.host_bridge == hb.name).collect())
            .unwrap_or_default();
        walk(&mut out, &roots, "", &children);
    }
    out.push_str(&groups_text(topo));
    let m = &r.matrix;
    if m.providers.is_empty() {
        if r.kernel.p2pdma.built == Built::No {
            out.push_str(
                "\nNo P2P memory providers: this kernel is built without CONFIG_PCI_P2PDMA (see the first lines).\n",
            );
        } else {
            out.push_str("\nNo P2P memory providers (no device has p2pmem/).\n");
        }
        return out;
    }
    let names: HashMap<Bdf, String> = topo.devices.iter().filter_map(|d| d.name.clone().map(|n| (d.bdf, n))).collect();
    let cols: Vec<String> = m.clients.iter().map(|&c| short(c, &names)).collect();
    let rows: Vec<String> = m.providers.iter().map(|&p| short(p, &names)).collect();
    let w0 = rows.iter().map(String::len).max().unwrap_or(0);
    let widths: Vec<usize> = cols.iter().map(|c| c.len().max(5)).collect();
    writeln!(out, "\nP2P matrix (the kernel's verdict):").unwrap();
    write!(out, "{:w0$}", "").unwrap();
    for (c, w) in cols.iter().zip(&widths) {
        write!(out, "  {c:>w$}").unwrap();
    }
    out.push('\n');
    for (pi, row) in rows.iter().enumerate() {
        write!(out, "{row:w0$}").unwrap();
        for (ci, w) in widths.iter().enumerate() {
            let same = m.providers[pi] == m.clients[ci];
            write!(out, "  {:>w$}", cell(&m.cells[pi][ci], same)).unwrap();
        }
        out.push('\n');
    }
    out.push_str(LEGEND);
    out
}

/// The IOMMU groups with more than one device, where they came from, and the doubts.
fn groups_text(topo: &p2pdma_core::Topology) -> String {
    let Some(info) = &topo.iommu_groups else { return String::new() };
    let mut out = String::new();
    let source = match (info.source, &info.kernel_params) {
        (GroupSource::Kernel, _) => "read from the kernel".to_string(),
        (GroupSource::Predicted, Some(p)) => format!("predicted from the kernel's rules, after `{p}`"),
        (GroupSource::Predicted, None) => "predicted from the kernel's rules".to_string(),
    };
    let groups = iommu_groups::members(topo);
    let shared: Vec<String> = groups
        .iter()
        .filter(|(_, m)| m.len() > 1)
        .map(|(g, m)| format!("  group {g}: {}", m.iter().map(Bdf::to_string).collect::<Vec<_>>().join(", ")))
        .collect();
    writeln!(
        out,
        "
IOMMU groups ({source}): {} groups, {} shared by several devices",
        groups.len(),
        shared.len()
    )
    .unwrap();
    for line in shared {
        writeln!(out, "{line}").unwrap();
    }
    for d in &info.uncertain {
        writeln!(out, "  uncertain: {}: {}", d.device, d.reason).unwrap();
    }
    for n in &info.notes {
        writeln!(out, "  kernel parameters: {n}").unwrap();
    }
    out
}

fn map_type_text(t: MapType) -> &'static str {
    match t {
        MapType::BusAddr => "supported: bus address (P2P stays below the common bridge)",
        MapType::ThruHostBridge => "supported: through the host bridge",
        MapType::NotSupported => "NOT supported",
    }
}

pub fn check(r: &CheckReport) -> String {
    let mut out = String::new();
    let dist = r.distance.map(|d| format!(", distance {d}")).unwrap_or_default();
    writeln!(
        out,
        "provider {}{}: {}{dist}",
        r.provider,
        r.provider_name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
        map_type_text(r.map_type)
    )
    .unwrap();
    for n in &r.notes {
        writeln!(out, "  note: {n}").unwrap();
    }
    for d in &r.devices {
        writeln!(out, "  {}", names_line(d)).unwrap();
    }
    for v in &r.clients {
        writeln!(
            out,
            "\nclient {}{}: {} ({}{})",
            v.client,
            v.client_name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
            map_type_text(v.map_type),
            v.map_type.as_str(),
            v.distance.map(|d| format!(", distance {d}")).unwrap_or_default()
        )
        .unwrap();
        if !v.certain {
            writeln!(out, "  UNCERTAIN: depends on ACS that could not be read").unwrap();
        }
        if !v.path.is_empty() {
            writeln!(out, "  path: {}", v.path.join(" -> ")).unwrap();
        }
        for reason in &v.reasons {
            writeln!(out, "  why: {reason}").unwrap();
        }
        for fix in &v.fixes {
            writeln!(out, "  fix: {fix}").unwrap();
        }
        for c in &v.fix_costs {
            writeln!(out, "  cost of {}: {}", c.fix, c.summary).unwrap();
        }
        if let Some(note) = &v.fix_costs_note {
            writeln!(out, "  note: {note}").unwrap();
        }
        for line in &v.kernel_log {
            writeln!(out, "  kernel log: {line}").unwrap();
        }
    }
    out
}

pub fn find(r: &FindReport) -> String {
    let mut out = String::new();
    match r.provider {
        Some(p) => writeln!(out, "provider: {p} (distance {})", r.distance.unwrap_or(0)).unwrap(),
        None => writeln!(out, "provider: none").unwrap(),
    }
    for reason in &r.reasons {
        writeln!(out, "  {reason}").unwrap();
    }
    if !r.candidates.is_empty() {
        writeln!(out, "candidates:").unwrap();
        for c in &r.candidates {
            let d = c.distance.map(|d| format!("distance {d}")).unwrap_or_else(|| "unusable".into());
            let tie = if r.tied.len() > 1 && r.tied.contains(&c.provider) { "  (tied)" } else { "" };
            writeln!(
                out,
                "  {}{}  {d}, {} free{tie}",
                c.provider,
                c.name.as_ref().map(|n| format!(" {n}")).unwrap_or_default(),
                bytes(c.available)
            )
            .unwrap();
        }
    }
    out
}

pub fn providers(rows: &[ProviderRow]) -> String {
    if rows.is_empty() {
        return "no P2P memory providers (no device has p2pmem/)\n".into();
    }
    let mut out =
        format!("{:<14} {:<10} {:<8} {:>10} {:>10}  published\n", "provider", "name", "driver", "size", "available");
    for r in rows {
        writeln!(
            out,
            "{:<14} {:<10} {:<8} {:>10} {:>10}  {}",
            r.provider.to_string(),
            r.name.as_deref().unwrap_or("-"),
            r.driver.as_deref().unwrap_or("-"),
            bytes(r.size),
            bytes(r.available),
            if r.published { "yes" } else { "no" }
        )
        .unwrap();
    }
    out
}

pub fn alloc(r: &crate::alloc::AllocReport) -> String {
    let mut out = format!(
        "allocated {} of P2P memory from {}{} (available {} before, {} while mapped)\n",
        bytes(r.size as u64),
        r.provider,
        r.provider_name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
        bytes(r.available_before),
        bytes(r.available_mapped)
    );
    if let Some(read) = &r.read {
        match &read.error {
            None => writeln!(
                out,
                "read {} from {} at offset {} into it: ok, sha256 {}{}",
                bytes(read.length as u64),
                read.device.display(),
                read.offset,
                read.sha256,
                if read.unchanged { " (WARNING: the buffer is unchanged: no data arrived)" } else { "" }
            )
            .unwrap(),
            Some(e) => writeln!(out, "read into it failed: {e}").unwrap(),
        }
    }
    out
}
