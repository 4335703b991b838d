//! Human output, written from the same structs that `--json` prints.

use std::fmt::Write;

use p2pdma_core::analysis::{self, CheckReport, FindReport, ProviderRow};
use p2pdma_core::config::{acs_bits, Acs};
use p2pdma_core::iommu_groups;
use p2pdma_core::kernel::{self, KernelCapabilities};
use p2pdma_core::model::Built;
use p2pdma_core::model::GroupSource;
use p2pdma_core::model::{Device, HostBridge, Machine};
use p2pdma_core::verdict::{BridgeVerdict, MapType};
use p2pdma_core::Engine;
use serde::Serialize;

#[derive(Serialize)]
pub struct BridgeReport<'t> {
    #[serde(flatten)]
    pub bridge: &'t HostBridge,
    pub whitelist: BridgeVerdict,
}

impl<'t> BridgeReport<'t> {
    /// Every host bridge with its whitelist verdict (`topo --json`, the report).
    pub fn all(engine: &Engine<'t>) -> Vec<BridgeReport<'t>> {
        engine
            .topo
            .host_bridges
            .iter()
            .zip(engine.host_bridge_info())
            .map(|(bridge, whitelist)| BridgeReport { bridge, whitelist })
            .collect()
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

pub fn machine_line(m: &Machine, cpu_allows: bool) -> String {
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
pub fn kernel_lines(k: &KernelCapabilities) -> String {
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
            match f.since {
                "never" => format!("{} {mark} (never)", f.name),
                since => format!("{} {mark} (since {since})", f.name),
            }
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

/// The short mark on a device's line; the ACS registers follow on their own lines.
fn acs_text(acs: Acs) -> Option<String> {
    match acs {
        Acs::Absent => None,
        Acs::Unknown => Some("ACS ?".into()),
        Acs::Present { ctrl, .. } if ctrl & acs_bits::REDIRECT != 0 => Some("ACS REDIRECT".into()),
        Acs::Present { .. } => Some("ACS".into()),
    }
}

pub fn device_line(d: &Device) -> String {
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
    let mem: Vec<String> = d.memory_bars().map(bar_text).collect();
    if !mem.is_empty() {
        write!(s, "  BARs {}", mem.join(", ")).unwrap();
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

/// A memory BAR in short: `BAR1 256.0 MiB 64-bit pref`.
pub fn bar_text(b: &p2pdma_core::model::Bar) -> String {
    format!(
        "BAR{} {}{}{}",
        b.index,
        bytes(b.size),
        if b.is_64 { " 64-bit" } else { "" },
        if b.prefetchable { " pref" } else { "" }
    )
}

/// The IOMMU groups with more than one device, where they came from, and the doubts; with
/// `fold_vfs` a PF's VFs in a group are one item (`+255 VFs of 0000:0f:00.0 (first-last)`).
pub fn write_iommu_groups(
    w: &mut dyn std::io::Write,
    topo: &p2pdma_core::Topology,
    fold_vfs: bool,
) -> std::io::Result<()> {
    let Some(info) = &topo.iommu_groups else { return Ok(()) };
    let source = match (info.source, &info.kernel_params) {
        (GroupSource::Kernel, _) => "read from the kernel".to_string(),
        (GroupSource::Predicted, Some(p)) => format!("predicted from the kernel's rules, after `{p}`"),
        (GroupSource::Predicted, None) => "predicted from the kernel's rules".to_string(),
    };
    let groups = iommu_groups::members(topo);
    let shared = groups.iter().filter(|(_, m)| m.len() > 1).count();
    writeln!(w, "\nIOMMU groups ({source}): {} groups, {shared} shared by several devices", groups.len())?;
    let physfn: std::collections::HashMap<_, _> =
        topo.devices.iter().filter_map(|d| d.physfn.filter(|_| fold_vfs).map(|pf| (d.bdf, pf))).collect();
    for (g, m) in groups.iter().filter(|(_, m)| m.len() > 1) {
        let mut items: Vec<String> = Vec::new();
        // Per PF: how many of its VFs, the first and the last (members are in address order).
        let mut folded: Vec<(p2pdma_core::Bdf, usize, p2pdma_core::Bdf, p2pdma_core::Bdf)> = Vec::new();
        for b in m {
            match physfn.get(b) {
                Some(&pf) => match folded.iter_mut().find(|f| f.0 == pf) {
                    Some(f) => (f.1, f.3) = (f.1 + 1, *b),
                    None => folded.push((pf, 1, *b, *b)),
                },
                None => items.push(b.to_string()),
            }
        }
        items.extend(folded.iter().map(|(pf, n, first, last)| format!("+{n} VFs of {pf} ({first}-{last})")));
        writeln!(w, "  group {g}: {}", items.join(", "))?;
    }
    for d in &info.uncertain {
        writeln!(w, "  uncertain: {}: {}", d.device, d.reason)?;
    }
    for n in &info.notes {
        writeln!(w, "  kernel parameters: {n}")?;
    }
    Ok(())
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
    let bars: Vec<String> = r.memory_bars.iter().map(bar_text).collect();
    writeln!(
        out,
        "  publishes P2P memory: {}; memory BARs: {}",
        if r.publishes { "yes" } else { "no" },
        if bars.is_empty() { "none".to_string() } else { bars.join(", ") }
    )
    .unwrap();
    if let Some(acs) = &r.acs {
        writeln!(out, "  {acs}").unwrap();
    }
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
        for a in &v.acs_redirect {
            writeln!(out, "  ACS {} ({:?} side): ACSCtl: {}", a.device, a.side, acs_bits::lspci(a.ctrl)).unwrap();
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
    stacks(&mut out, &r.stacks);
    out
}

/// `check`'s stacks block: one line per stack and pair, its reason, the line it would log.
fn stacks(out: &mut String, stacks: &[p2pdma_core::stacks::StackVerdict]) {
    if stacks.is_empty() {
        return;
    }
    writeln!(out, "\nstacks (who maps the pair, and what each decides):").unwrap();
    for s in stacks {
        let allowed = match s.allowed {
            Some(true) => "allowed",
            Some(false) => "refused",
            None => "unknown",
        };
        let route = s.route.map(|r| format!(", route {}", r.as_str())).unwrap_or_default();
        writeln!(
            out,
            "  {} for {}: {allowed}{route} (asks P2PDMA: {}; on refusal: {})",
            s.stack.as_str(),
            s.client,
            if s.consults_p2pdma { "yes" } else { "no" },
            s.on_refusal.as_str()
        )
        .unwrap();
        writeln!(out, "    why: {}", s.reason).unwrap();
        if let Some(log) = &s.log {
            writeln!(out, "    kernel log: {log}").unwrap();
        }
    }
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
            let memory =
                if c.publishes { format!("{} free", bytes(c.available)) } else { "memory BAR, not published".into() };
            writeln!(
                out,
                "  {}{}  {d}, {memory}{tie}",
                c.provider,
                c.name.as_ref().map(|n| format!(" {n}")).unwrap_or_default()
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

pub fn alloc(r: &p2pdma_mem::alloc::AllocReport) -> String {
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

pub fn addr(r: &p2pdma_core::addr::AddrReport) -> String {
    use p2pdma_core::addr::Route;
    let name = |n: &Option<String>| n.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
    let mut out = String::new();
    let b = &r.bar;
    writeln!(
        out,
        "target {}{} BAR {}: {}{}{}{}, offset {:#x}",
        r.target,
        name(&r.target_name),
        b.index,
        bytes(b.size),
        if b.is_64 { ", 64-bit" } else { ", 32-bit" },
        if b.prefetchable { ", prefetchable" } else { ", non-prefetchable" },
        if r.bar_holds_p2pmem { ", holds its P2P memory" } else { "" },
        r.offset
    )
    .unwrap();
    match r.bus_address {
        Some(a) => writeln!(out, "  bus address: {a:#x} (BAR register in config space)").unwrap(),
        None => writeln!(out, "  bus address: unknown (config space not read)").unwrap(),
    }
    writeln!(out, "  CPU address: {:#x} (sysfs resource; not for devices)", r.cpu_address).unwrap();
    if let Some(off) = r.host_bridge_offset.filter(|&o| o != 0) {
        writeln!(out, "  host bridge offset: {off:#x} (CPU minus bus)").unwrap();
    }
    let route = match r.route {
        Route::BusAddress => "by bus address below the common switch",
        Route::ThroughHostBridge => "through the host bridge (root complex)",
        Route::Refused => "REFUSED by the kernel",
    };
    writeln!(
        out,
        "client {}{}: {route} ({}{}){}",
        r.client,
        name(&r.client_name),
        r.map_type.as_str(),
        r.distance.map(|d| format!(", distance {d}")).unwrap_or_default(),
        if r.certain { "" } else { ", UNCERTAIN: ACS could not be read" }
    )
    .unwrap();
    match r.dma_address {
        Some(a) => writeln!(out, "  DMA address: {a:#x}").unwrap(),
        None => writeln!(out, "  DMA address: none fixed").unwrap(),
    }
    for a in &r.advice {
        writeln!(out, "  {a}").unwrap();
    }
    for reason in &r.reasons {
        writeln!(out, "  why: {reason}").unwrap();
    }
    out
}
