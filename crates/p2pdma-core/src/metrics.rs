//! The machine's P2P state in the Prometheus text exposition format (version 0.0.4), for
//! node_exporter's textfile collector: one file per machine, scraped with the rest.
//!
//! Every series is labelled with PCI addresses and names (the topology file's name, else the
//! PCI ID database's), so an alert reads on its own: `p2pdma_peer_worst_verdict == 0` is a
//! device that cannot reach some GPU or NIC, `p2pdma_acs_redirect == 1` a port that sends
//! peer traffic upstream, `p2pdma_link_degraded == 1` a link that trained down.
//!
//! Sized for a scrape: every family is per device, and VFs the kernel cannot tell apart
//! ([`crate::group`]) are one series with a `members` count, so a 10,000-function server
//! stays in a few thousand series. Pair series (N² of them) only with [`Options::pairs`],
//! over the devices a filter keeps.

use std::fmt::Write;

use crate::analysis::MatrixFilter;
use crate::bdf::Bdf;
use crate::config::{acs_bits, Acs};
use crate::group::{GroupedMatrix, Grouping};
use crate::model::{Device, Topology};
use crate::pathclass::DeviceClass;
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

/// What `metrics` writes beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Pair series (provider × client) over the devices `filter` keeps: N² series over the
    /// whole machine, so only asked for.
    pub pairs: bool,
    /// The devices that get peer (and pair) series; peers are counted over the whole machine.
    pub filter: MatrixFilter,
}

/// The exposition of everything the verdicts rest on, and the verdicts: per device (a group
/// of VFs the kernel cannot tell apart is one series), pairs only on request.
pub fn exposition(engine: &Engine<'_>, options: &Options) -> String {
    let mut out = String::new();
    let grouping = Grouping::new(engine);
    machine_families(&mut out, engine);
    peer_families(&mut out, engine, &grouping, &options.filter);
    if options.pairs {
        pair_families(&mut out, engine, &grouping, &options.filter);
    }
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

/// The `via` label by a verdict's rank; the rank is `p2pdma_peer_worst_verdict`'s value.
const VIAS: [&str; 3] = ["not_supported", "host_bridge", "bus_address"];

fn via(m: MapType) -> usize {
    match m {
        MapType::NotSupported => 0,
        MapType::ThruHostBridge => 1,
        MapType::BusAddr => 2,
    }
}

/// One device's (or VF group's) peers: counts by peer class and verdict, each member's own.
struct Peers {
    labels: Vec<(&'static str, String)>,
    counts: [[u64; 3]; DeviceClass::ALL.len()],
}

/// Every DMA-capable group the filter keeps, with the P2P memory of every other device it
/// reaches, counted from the grouped matrix: a cell's verdict holds for every member pair.
fn peer_counts(engine: &Engine<'_>, grouping: &Grouping, filter: &MatrixFilter) -> Vec<Peers> {
    let m = GroupedMatrix::new(engine, grouping, &MatrixFilter::default());
    let class_of = |g: usize| DeviceClass::of(device_of(engine, m.groups[g].device));
    let class_index = |c: DeviceClass| DeviceClass::ALL.iter().position(|&k| k == c).unwrap_or(0);
    let mut rows = Vec::new();
    for (ci, &gc) in m.clients.iter().enumerate() {
        let kept: Vec<Bdf> = m.groups[gc]
            .members
            .iter()
            .copied()
            .filter(|&b| engine.index_of(b).is_some_and(|i| filter.keeps(engine, i)))
            .collect();
        let Some(&first) = kept.first() else { continue };
        let mut counts = [[0u64; 3]; DeviceClass::ALL.len()];
        for (pi, &gp) in m.providers.iter().enumerate() {
            // A member is no peer of itself; the diagonal cell is two distinct members.
            let n = m.groups[gp].members.len() as u64 - u64::from(gp == gc);
            counts[class_index(class_of(gp))][via(m.cells[pi][ci].verdict.map_type)] += n;
        }
        let labels = vec![
            ("device", first.to_string()),
            ("name", name(device_of(engine, first))),
            ("members", kept.len().to_string()),
        ];
        rows.push(Peers { labels, counts });
    }
    rows
}

fn device_of<'t>(engine: &Engine<'t>, bdf: Bdf) -> &'t Device {
    engine.device(engine.index_of(bdf).expect("the matrix holds the engine's devices"))
}

/// Per device or VF group: peers reachable by class and verdict, and the worst verdict
/// towards GPUs and NICs. Bounded by the number of groups, not its square.
fn peer_families(out: &mut String, engine: &Engine<'_>, grouping: &Grouping, filter: &MatrixFilter) {
    let rows = peer_counts(engine, grouping, filter);
    // Only the classes the machine has peers of: no series that are always 0.
    let present: Vec<usize> =
        (0..DeviceClass::ALL.len()).filter(|&k| rows.iter().any(|r| r.counts[k].iter().any(|&n| n > 0))).collect();
    let mut f = Family::new(
        out,
        "p2pdma_peers",
        "Devices of peer_class whose P2P memory or memory BAR this device (each member of the group) can DMA to, by the kernel's verdict (via).",
    );
    for r in &rows {
        for &k in &present {
            for (v, n) in r.counts[k].iter().enumerate() {
                let mut labels = r.labels.clone();
                labels.push(("peer_class", DeviceClass::ALL[k].as_str().to_string()));
                labels.push(("via", VIAS[v].to_string()));
                f.owned(&labels, *n as f64);
            }
        }
    }
    let mut f = Family::new(
        out,
        "p2pdma_peer_worst_verdict",
        "The worst verdict from this device to any GPU or NIC (peer_class): 0 not supported, 1 through the host bridge, 2 by bus address; absent without such peers.",
    );
    for r in &rows {
        for k in [DeviceClass::Gpu, DeviceClass::Nic] {
            let c = r.counts[DeviceClass::ALL.iter().position(|&x| x == k).unwrap_or(0)];
            if let Some(worst) = (0..3).find(|&v| c[v] > 0) {
                let mut labels = r.labels.clone();
                labels.push(("peer_class", k.as_str().to_string()));
                f.owned(&labels, worst as f64);
            }
        }
    }
}

/// Per pair of the devices the filter keeps (`--pairs`), answered from the groups.
fn pair_families(out: &mut String, engine: &Engine<'_>, grouping: &Grouping, filter: &MatrixFilter) {
    let m = GroupedMatrix::new(engine, grouping, filter);
    let mut pairs: Vec<(Vec<(&str, String)>, PairResult)> = Vec::new();
    for (pi, &gp) in m.providers.iter().enumerate() {
        for (ci, &gc) in m.clients.iter().enumerate() {
            for &p in &m.groups[gp].members {
                for &c in m.groups[gc].members.iter().filter(|&&c| c != p) {
                    let labels = vec![
                        ("provider", p.to_string()),
                        ("provider_name", name(device_of(engine, p))),
                        ("client", c.to_string()),
                        ("client_name", name(device_of(engine, c))),
                    ];
                    pairs.push((labels, m.cells[pi][ci].verdict));
                }
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

/// Per link: degraded, speed, width. A VF has no link of its own (SR-IOV: its PF's link
/// carries it), so a NIC with 255 VFs is one link, not 256.
fn link_families(out: &mut String, topo: &Topology) {
    let links: Vec<(&Device, &crate::model::Link)> =
        topo.devices.iter().filter(|d| d.physfn.is_none()).filter_map(|d| d.link.as_ref().map(|l| (d, l))).collect();
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
    use std::collections::HashMap;

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
        let engine = Engine::new(&topo).unwrap();
        let text = exposition(&engine, &Options::default());
        assert!(!text.contains("p2pdma_pair_"), "pairs only on request");
        let text = exposition(&engine, &Options { pairs: true, filter: MatrixFilter::default() });
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

    /// A label's value in one exposition line (the test machines' names need no escapes).
    fn label<'l>(line: &'l str, key: &str) -> &'l str {
        let at = line.find(&format!("{key}=\"")).unwrap_or_else(|| panic!("{key} in {line}")) + key.len() + 2;
        &line[at..at + line[at..].find('"').unwrap()]
    }

    /// Every DMA-capable device's peers, counted pair by pair with the full engine, equal its
    /// group's series; the worst verdict follows from them.
    fn assert_peers_exact(topo: &Topology) -> usize {
        let engine = Engine::new(topo).unwrap();
        let text = exposition(&engine, &Options::default());
        let mut series: HashMap<(String, &str, &str), f64> = HashMap::new();
        for line in text.lines().filter(|l| l.starts_with("p2pdma_peers{")) {
            let value: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            series.insert((label(line, "device").to_string(), label(line, "peer_class"), label(line, "via")), value);
        }
        let grouping = Grouping::new(&engine);
        let n = topo.devices.len();
        for c in (0..n).filter(|&c| topo.devices[c].is_dma_capable()) {
            let rep = topo.devices[grouping.members(grouping.group_of(c))[0]].bdf.to_string();
            let mut want: HashMap<(&str, &str), f64> = HashMap::new();
            for p in (0..n).filter(|&p| p != c && topo.devices[p].has_p2p_memory_side()) {
                let class = DeviceClass::of(&topo.devices[p]).as_str();
                *want.entry((class, VIAS[via(engine.pair(p, c).map_type)])).or_default() += 1.0;
            }
            for ((class, v), count) in &want {
                assert_eq!(series.get(&(rep.clone(), *class, *v)), Some(count), "{rep} {class} {v}\n{text}");
            }
            let listed: f64 = series.iter().filter(|((d, _, _), _)| *d == rep).map(|(_, v)| v).sum();
            assert_eq!(listed, want.values().sum::<f64>(), "{rep}: no other peers");
        }
        text.lines().filter(|l| !l.starts_with('#')).count()
    }

    #[test]
    fn peer_series_equal_the_full_engine_on_every_example_and_vfs() {
        for entry in std::fs::read_dir("../../examples/topologies").unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert_peers_exact(&crate::spec::parse(&text, "t.toml".as_ref()).unwrap().to_topology().unwrap());
        }
        let vfs = |n: u32| {
            format!(
                "[machine]\ncpu = \"intel\"\n[[root_port]]\nname = \"rp0\"\n[[switch]]\nname = \"sw0\"\nparent = \"rp0\"\nports = 3\nacs = 0x1f\n\
                 [[endpoint]]\nname = \"nic0\"\nkind = \"nic\"\nparent = \"sw0.0\"\nvfs = {n}\n\
                 [[endpoint]]\nname = \"gpu0\"\nkind = \"gpu\"\nparent = \"sw0.1\"\np2pmem_mib = 256\n\
                 [[endpoint]]\nname = \"nic1\"\nkind = \"nic\"\nparent = \"sw0.2\"\nvfs = {n}\n"
            )
        };
        let topo = |n| crate::spec::parse(&vfs(n), "t.toml".as_ref()).unwrap().to_topology().unwrap();
        // Series do not grow with the VFs: a VF group is one device of the peer families.
        let (small, big) = (assert_peers_exact(&topo(2)), assert_peers_exact(&topo(60)));
        let peers = |t: &Topology| {
            exposition(&Engine::new(t).unwrap(), &Options::default())
                .lines()
                .filter(|l| l.starts_with("p2pdma_peer"))
                .count()
        };
        assert_eq!(peers(&topo(2)), peers(&topo(60)));
        assert!(big < small + 2 * 58 * 4, "{small} {big}: per-VF families only");
    }
}
