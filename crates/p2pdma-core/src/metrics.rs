//! The machine's P2P state in the Prometheus text exposition format (version 0.0.4), for
//! node_exporter's textfile collector: one file per machine, scraped with the rest.
//!
//! Every series is labelled with PCI addresses and names (the topology file's name, else the
//! PCI ID database's), so an alert reads on its own: `p2pdma_pair_supported == 0` is a pair
//! that lost P2P, `p2pdma_acs_redirect == 1` a port that sends peer traffic upstream,
//! `p2pdma_link_degraded == 1` a link that trained down.

use std::fmt::Write;

use crate::analysis;
use crate::config::{acs_bits, Acs};
use crate::model::{Device, Topology};
use crate::verdict::{Engine, MapType, PairResult};

/// Whether this kernel can do P2PDMA at all: `Some(true)` when it shows P2P memory providers
/// (`p2pmem/` exists only with CONFIG_PCI_P2PDMA), `Some(false)` when the kernel is known to
/// lack it (its config, `p2pdma = false`, `--kernel` before 4.20), `None` when nothing here
/// tells (no provider hardware).
pub fn kernel_p2pdma_support(topo: &Topology) -> Option<bool> {
    if crate::kernel::p2pdma_absent(&topo.machine) {
        return Some(false);
    }
    topo.devices.iter().any(|d| d.p2pmem.is_some()).then_some(true)
}

/// One metric family being written: HELP and TYPE once, then its samples.
struct Family<'o> {
    out: &'o mut String,
    name: &'static str,
}

impl<'o> Family<'o> {
    fn new(out: &'o mut String, name: &'static str, help: &str) -> Self {
        writeln!(out, "# HELP {name} {}", escape_help(help)).unwrap();
        writeln!(out, "# TYPE {name} gauge").unwrap();
        Family { out, name }
    }

    fn owned(&mut self, labels: &[(&str, String)], value: f64) {
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.sample(&labels, value);
    }

    fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape_label(v))).collect();
        let value = if value.is_nan() { "NaN".to_string() } else { format!("{value}") };
        if labels.is_empty() {
            writeln!(self.out, "{} {value}", self.name).unwrap();
        } else {
            writeln!(self.out, "{}{{{}}} {value}", self.name, labels.join(",")).unwrap();
        }
    }
}

/// Label values escape backslash, double quote and newline (the format's only escapes).
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            // Other controls shown as `text::inert` shows them, its backslash escaped, so a
            // scraper reads `\e` where a terminal would have met an ESC.
            c => match crate::text::inert(c.encode_utf8(&mut [0; 4])) {
                std::borrow::Cow::Borrowed(plain) => out.push_str(plain),
                std::borrow::Cow::Owned(shown) => out.push_str(&shown.replace('\\', "\\\\")),
            },
        }
    }
    out
}

/// HELP text escapes backslash and newline.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A device's name for labels: the topology file's name, else vendor and device names.
fn name(d: &Device) -> String {
    d.name.clone().or_else(|| d.pci_name()).unwrap_or_default()
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Link speed in GT/s from sysfs text (`8.0 GT/s PCIe`).
fn gts(s: &Option<String>) -> Option<f64> {
    s.as_deref()?.split_whitespace().next()?.parse().ok()
}

/// The exposition of everything the verdicts rest on, and the verdicts.
pub fn exposition(engine: &Engine<'_>) -> String {
    let mut out = String::new();
    machine_families(&mut out, engine);
    pair_families(&mut out, engine);
    acs_families(&mut out, engine.topo);
    link_families(&mut out, engine.topo);
    provider_families(&mut out, engine.topo);
    out
}

/// The machine, the kernel, the IOMMU, the CPU rule and each host bridge's whitelisting.
fn machine_families(out: &mut String, engine: &Engine<'_>) {
    let topo = engine.topo;
    let m = &topo.machine;
    let mut f = Family::new(out, "p2pdma_machine_info", "The machine p2pdma read (value always 1).");
    f.sample(
        &[
            ("kernel_release", m.kernel_release.as_deref().unwrap_or("")),
            ("arch", m.arch.as_deref().unwrap_or("")),
            ("cpu_vendor", m.cpu_vendor.as_deref().unwrap_or("")),
        ],
        1.0,
    );
    let mut f = Family::new(
        out,
        "p2pdma_kernel_p2pdma_supported",
        "1 when the kernel supports P2PDMA (it shows P2P memory providers); 0 when it is known to lack it; NaN when this machine cannot tell.",
    );
    f.sample(&[], kernel_p2pdma_support(topo).map(flag).unwrap_or(f64::NAN));
    let mut f = Family::new(out, "p2pdma_iommu_enabled", "1 when an IOMMU is active; NaN when unknown.");
    f.sample(&[], m.iommu.map(flag).unwrap_or(f64::NAN));
    let mut f = Family::new(
        out,
        "p2pdma_cpu_allows_p2pdma",
        "1 when the CPU rule (AMD Zen or newer) lets P2P through any host bridge.",
    );
    f.sample(&[], flag(engine.cpu_allows()));

    let mut f = Family::new(
        out,
        "p2pdma_host_bridge_whitelisted",
        "1 when the host bridge's root device is on the kernel's P2PDMA whitelist.",
    );
    for b in engine.host_bridge_info() {
        f.sample(&[("host_bridge", &b.host_bridge), ("id", b.id.as_deref().unwrap_or(""))], flag(b.entry.is_some()));
    }
}

/// Per pair: the matrix the `topo` command shows.
fn pair_families(out: &mut String, engine: &Engine<'_>) {
    let matrix = analysis::matrix(engine);
    let device = |bdf| engine.index_of(bdf).map(|i| engine.device(i));
    let mut pairs: Vec<(Vec<(&str, String)>, PairResult)> = Vec::new();
    for (p, row) in matrix.providers.iter().zip(&matrix.cells) {
        for (c, cell) in matrix.clients.iter().zip(row) {
            if p != c {
                let (pn, cn) = (device(*p).map(name).unwrap_or_default(), device(*c).map(name).unwrap_or_default());
                let labels = vec![
                    ("provider", p.to_string()),
                    ("provider_name", pn),
                    ("client", c.to_string()),
                    ("client_name", cn),
                ];
                pairs.push((labels, *cell));
            }
        }
    }
    let mut f = Family::new(
        out,
        "p2pdma_pair_supported",
        "1 when the kernel allows P2PDMA between provider and client (bus address or through the host bridge).",
    );
    for (labels, cell) in &pairs {
        f.owned(labels, flag(cell.map_type.supported()));
    }
    let mut f = Family::new(
        out,
        "p2pdma_pair_bus_address",
        "1 when the kernel maps the pair by PCI bus address (peer traffic stays below a common bridge).",
    );
    for (labels, cell) in &pairs {
        f.owned(labels, flag(cell.map_type == MapType::BusAddr));
    }
    let mut f = Family::new(
        out,
        "p2pdma_pair_distance",
        "The kernel's P2PDMA distance of the pair (absent when not supported).",
    );
    for (labels, cell) in &pairs {
        if let Some(d) = cell.distance {
            f.owned(labels, f64::from(d));
        }
    }
}

/// Per port: ACS redirects (only devices with the capability; unreadable ACS is NaN).
fn acs_families(out: &mut String, topo: &Topology) {
    let mut f = Family::new(
        out,
        "p2pdma_acs_redirect",
        "1 when the device's ACS control redirects peer traffic upstream (RR, CR or EC set); NaN when unreadable.",
    );
    for d in &topo.devices {
        let (value, bits) = match d.acs {
            Acs::Absent => continue,
            Acs::Unknown => (f64::NAN, String::new()),
            Acs::Present { ctrl, .. } => (flag(ctrl & acs_bits::REDIRECT != 0), acs_bits::names(ctrl).join(" ")),
        };
        f.sample(&[("device", &d.bdf.to_string()), ("name", &name(d)), ("acs_ctrl", &bits)], value);
    }
}

/// Per link: degraded, speed, width.
fn link_families(out: &mut String, topo: &Topology) {
    let links: Vec<(&Device, &crate::model::Link)> =
        topo.devices.iter().filter_map(|d| d.link.as_ref().map(|l| (d, l))).collect();
    let mut f = Family::new(
        out,
        "p2pdma_link_degraded",
        "1 when the PCIe link trained below the speed or width both ends can do.",
    );
    for (d, l) in &links {
        f.sample(&[("device", &d.bdf.to_string()), ("name", &name(d))], flag(l.degraded()));
    }
    let mut f = Family::new(out, "p2pdma_link_speed_gts", "Current PCIe link speed in GT/s.");
    for (d, l) in &links {
        if let Some(s) = gts(&l.current_speed) {
            f.sample(&[("device", &d.bdf.to_string()), ("name", &name(d))], s);
        }
    }
    let mut f = Family::new(out, "p2pdma_link_width", "Current PCIe link width in lanes.");
    for (d, l) in &links {
        if let Some(w) = l.current_width {
            f.sample(&[("device", &d.bdf.to_string()), ("name", &name(d))], f64::from(w));
        }
    }
}

/// Per provider: free and total P2P memory, published.
fn provider_families(out: &mut String, topo: &Topology) {
    let providers: Vec<&Device> = topo.devices.iter().filter(|d| d.p2pmem.is_some()).collect();
    let mem = |d: &Device| d.p2pmem.clone().expect("filtered on p2pmem");
    let mut f = Family::new(out, "p2pdma_p2pmem_free_bytes", "P2P memory not yet allocated, per provider.");
    for d in &providers {
        f.sample(&[("provider", &d.bdf.to_string()), ("name", &name(d))], mem(d).available as f64);
    }
    let mut f = Family::new(out, "p2pdma_p2pmem_size_bytes", "P2P memory a provider offers in total.");
    for d in &providers {
        f.sample(&[("provider", &d.bdf.to_string()), ("name", &name(d))], mem(d).size as f64);
    }
    let mut f = Family::new(
        out,
        "p2pdma_p2pmem_published",
        "1 when the provider publishes its P2P memory (usable by pci_p2pmem_find and nvmet's automatic choice).",
    );
    for d in &providers {
        f.sample(&[("provider", &d.bdf.to_string()), ("name", &name(d))], flag(mem(d).published));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_escape_quotes_backslashes_and_newlines() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(escape_label("t\u{1b}]0;x\u{7}"), "t\\\\e]0;x\\\\x07");
    }

    #[test]
    fn switch_scenario_has_a_supported_pair_and_a_provider() {
        let (_, topo) = crate::spec::parse(include_str!("../../../examples/topologies/switch.toml"), "s".as_ref())
            .map(|s| ((), s.to_topology().unwrap()))
            .unwrap();
        let text = exposition(&Engine::new(&topo).unwrap());
        assert!(text.contains(
            "p2pdma_pair_supported{provider=\"0000:03:00.0\",provider_name=\"nvme-a\",client=\"0000:04:00.0\",client_name=\"nvme-b\"} 1"
        ), "{text}");
        assert!(text.contains("p2pdma_pair_distance{provider=\"0000:03:00.0\",provider_name=\"nvme-a\",client=\"0000:04:00.0\",client_name=\"nvme-b\"} 4"));
        assert!(text.contains("p2pdma_p2pmem_free_bytes{provider=\"0000:03:00.0\",name=\"nvme-a\"} 16777216"));
        assert!(text.contains("p2pdma_kernel_p2pdma_supported 1"));
        // Every family is announced once, before its samples.
        let types = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(types, text.lines().filter(|l| l.starts_with("# HELP")).count());
    }
}
