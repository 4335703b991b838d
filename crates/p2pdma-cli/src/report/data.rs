//! The JSON embedded in the report: `topo --json`'s structs (machine, host bridges,
//! devices, providers), with the matrix in a compact form that still carries every cell's
//! full explanation (`check --json`'s `PairVerdict`), deduplicated so that a thousand
//! devices fit in a few megabytes.
//!
//! Compact matrix: rows and columns are groups of devices the kernel cannot tell apart
//! (`p2pdma_core::group`: the VFs of one PF with the same walk; every other function alone),
//! so that a PF's 255 VFs are one row, not 255. `providers` and `clients` are the device
//! indices of each group's representative (its lowest address), `group_of` maps every device
//! to its group's representative; `cells[p][c]` indexes `verdicts`, explained for the
//! representative pair (a group against itself: its first two members), and `own[p]` is a
//! member with itself where that differs. A verdict stands for every member pair: its texts
//! name the pair through the marks below, and an address in it that is the explained pair's
//! own (`common_upstream` of a device with itself, a VF's own ACS) stands for the member's
//! (report.js `pairAt`). A folded VF's entry in `devices` carries only what the page reads.
//!
//! In the JSON each row of `cells` is run-length encoded, `[verdict, count, verdict, count,
//! ...]` (rows of one verdict are the rule: 768 × 768 cells took 2.4 MB as plain indices),
//! and report.js expands it once on load. A verdict is a `PairVerdict` without the
//! pair-specific fields (provider, client, path), its texts replaced by indices into
//! `texts`; in a text, U+0001 stands for
//! the provider's address and U+0002 for the client's, so that one text serves every pair
//! it fits. The path is not stored per cell (it was 40% of the file): it follows from
//! `walk_up` (the device the kernel's walk goes to next: the upstream bridge, through the
//! PF for a VF; -1 on a root bus), `host_bridge` (each device's host bridge index) and the
//! verdict's common device, exactly as [`path`] builds it (and report.js, in the same way):
//! the provider up to the common device, then down to the client; without a common device,
//! up to the root bus, through the host bridge(s), down to the client. Path nodes are device
//! indices `i >= 0` and host bridges `h` as `-1 - h`.

use std::collections::HashMap;

use p2pdma_core::analysis::{self, MatrixFilter, ProviderRow};
use p2pdma_core::group::{GroupedMatrix, Grouping};
use p2pdma_core::kernel_params::AcsParams;
use p2pdma_core::model::{Device, Machine};
use p2pdma_core::verdict::{AcsRedirect, HostBridgeCheck, MapType, PairVerdict};
use p2pdma_core::{Bdf, Engine};
use serde::Serialize;

use crate::render::BridgeReport;

pub const SCHEMA: &str = "p2pdma-report";
/// 2: rows and columns are groups (`group_of`, `own`), folded VFs in `devices`.
pub const VERSION: u32 = 2;

const PROVIDER_MARK: char = '\u{1}';
const CLIENT_MARK: char = '\u{2}';

/// Everything the page shows, as JSON.
#[derive(Serialize)]
pub struct ReportData<'t> {
    pub schema: &'static str,
    pub version: u32,
    pub created_by: String,
    pub title: String,
    pub source: String,
    pub machine: &'t Machine,
    /// The CPU rule: AMD Zen or newer lets P2P through any host bridge.
    pub cpu_allows_p2pdma: bool,
    pub acs_params: AcsParamsView,
    pub host_bridges: Vec<BridgeReport<'t>>,
    /// `Topology::devices` without raw config space (the verdicts are already decoded); a VF
    /// folded into its group's row carries only what the page reads of it (`FoldedDevice`).
    pub devices: Vec<DeviceView>,
    pub providers: Vec<ProviderRow>,
    pub matrix: CompactMatrix,
}

/// A device as the page's data carries it.
#[derive(Serialize)]
#[serde(untagged)]
pub enum DeviceView {
    Full(Box<Device>),
    Folded(FoldedDevice),
}

/// A VF its group's representative stands for (`matrix.group_of[i] != i`): what names it and
/// what its pairs' path class reads; its other facts are the representative's but for its
/// own addresses (BARs, IOMMU group), which `topo --json` has. 10,000 VFs in full took 5 MB.
#[derive(Serialize)]
pub struct FoldedDevice {
    pub bdf: Bdf,
    pub name: Option<String>,
    pub physfn: Option<Bdf>,
    pub numa_node: Option<i32>,
}

/// The ACS parameters found on the kernel command line.
#[derive(Serialize)]
pub struct AcsParamsView {
    pub disable_acs_redir: Option<String>,
    pub config_acs: Option<String>,
}

#[derive(Serialize, Default)]
pub struct CompactMatrix {
    pub providers: Vec<usize>,
    pub clients: Vec<usize>,
    /// Each device's group as its representative's index (itself unless it is a VF folded
    /// into a group); rows and columns are groups, named by their representative.
    pub group_of: Vec<usize>,
    /// Per row: for a group of several members that is also a column, the verdict of a
    /// member with itself (the diagonal cell holds two distinct members); else null.
    pub own: Vec<Option<u32>>,
    pub walk_up: Vec<i64>,
    pub host_bridge: Vec<usize>,
    pub texts: Vec<String>,
    pub verdicts: Vec<CompactVerdict>,
    #[serde(serialize_with = "run_length_rows")]
    pub cells: Vec<Vec<u32>>,
    pub counts: Counts,
}

/// Each row as `[value, count, value, count, ...]`.
fn run_length_rows<S: serde::Serializer>(rows: &[Vec<u32>], s: S) -> Result<S::Ok, S::Error> {
    let encoded: Vec<Vec<u32>> = rows
        .iter()
        .map(|row| {
            let mut runs: Vec<u32> = Vec::new();
            for &v in row {
                match runs.len() {
                    n if n >= 2 && runs[n - 2] == v => runs[n - 1] += 1,
                    _ => runs.extend([v, 1]),
                }
            }
            runs
        })
        .collect();
    serde::Serialize::serialize(&encoded, s)
}

/// How many device pairs of each kind (`SELF` pairs are counted apart), and how many
/// devices are providers and clients (groups count every member).
#[derive(Serialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub providers: usize,
    pub clients: usize,
    pub bus_addr: usize,
    pub thru_host_bridge: usize,
    pub not_supported: usize,
    #[serde(rename = "self")]
    pub own: usize,
}

/// A `PairVerdict` without provider, client and path; texts as indices into `texts`.
#[derive(Serialize, Clone)]
pub struct CompactVerdict {
    pub map_type: MapType,
    pub distance: Option<u32>,
    pub hops: u32,
    pub common_upstream: Option<Bdf>,
    pub acs_redirect: Vec<AcsRedirect>,
    pub acs_unknown: Vec<Bdf>,
    pub host_bridge: Option<HostBridgeCheck>,
    pub certain: bool,
    pub reasons: Vec<u32>,
    pub fixes: Vec<u32>,
    pub kernel_log: Vec<u32>,
}

/// Interns texts with the pair's addresses replaced by marks.
#[derive(Default)]
struct Texts {
    list: Vec<String>,
    index: HashMap<String, u32>,
}

impl Texts {
    fn add(&mut self, text: &str, provider: &str, client: &str) -> u32 {
        // The marks are control characters no real text has; drop any that sneaked in.
        let clean: String =
            text.chars().map(|c| if c == PROVIDER_MARK || c == CLIENT_MARK { '\u{fffd}' } else { c }).collect();
        let t = clean.replace(provider, &PROVIDER_MARK.to_string()).replace(client, &CLIENT_MARK.to_string());
        if let Some(&i) = self.index.get(&t) {
            return i;
        }
        let i = self.list.len() as u32;
        self.index.insert(t.clone(), i);
        self.list.push(t);
        i
    }

    fn all(&mut self, texts: &[String], provider: &str, client: &str) -> Vec<u32> {
        texts.iter().map(|t| self.add(t, provider, client)).collect()
    }
}

/// The device the kernel's walk goes to from each device (`pci_upstream_bridge`: through
/// the PF for a VF), or -1 on a root bus.
fn walk_up(engine: &Engine<'_>) -> Vec<i64> {
    let topo = engine.topo;
    let up = |d: &Device| d.upstream.and_then(|b| engine.index_of(b)).map_or(-1, |i| i as i64);
    topo.devices
        .iter()
        .map(|d| match d.physfn.and_then(|pf| engine.index_of(pf)) {
            Some(pf) => up(&topo.devices[pf]),
            None => up(d),
        })
        .collect()
}

/// A pair's path from `walk_up`, `host_bridge` and the common device: see the module doc.
/// report.js does the same; the tests hold this one to `Engine::explain`'s path.
#[cfg_attr(not(test), allow(dead_code))]
pub fn path(walk_up: &[i64], host_bridge: &[usize], provider: usize, client: usize, common: Option<usize>) -> Vec<i64> {
    let chain = |from: usize, stop: Option<usize>| {
        let mut out = Vec::new();
        let mut n = from as i64;
        // Bounded: a looping snapshot is refused earlier, but never loop here either.
        while n >= 0 && out.len() <= walk_up.len() {
            out.push(n);
            if Some(n as usize) == stop {
                break;
            }
            n = walk_up.get(n as usize).copied().unwrap_or(-1);
        }
        out
    };
    let mut p = chain(provider, common);
    match common {
        Some(_) => {
            let mut down = chain(client, common);
            down.pop();
            down.reverse();
            p.extend(down);
        }
        None => {
            let (hp, hc) = (host_bridge[provider], host_bridge[client]);
            p.push(-1 - hp as i64);
            if hc != hp {
                p.push(-1 - hc as i64);
            }
            let mut down = chain(client, None);
            down.reverse();
            p.extend(down);
        }
    }
    p
}

/// Collects deduplicated verdicts and the texts they index.
#[derive(Default)]
struct Verdicts {
    texts: Texts,
    list: Vec<CompactVerdict>,
    index: HashMap<String, u32>,
}

impl Verdicts {
    /// The verdict of one explained pair, as an index into `list`.
    fn add(&mut self, engine: &Engine<'_>, p: usize, c: usize) -> (u32, MapType) {
        let topo = engine.topo;
        let v: PairVerdict = engine.explain(p, c);
        let (pbdf, cbdf) = (topo.devices[p].bdf.to_string(), topo.devices[c].bdf.to_string());
        let texts = &mut self.texts;
        let compact = CompactVerdict {
            map_type: v.map_type,
            distance: v.distance,
            hops: v.hops,
            common_upstream: v.common_upstream,
            acs_redirect: v.acs_redirect,
            acs_unknown: v.acs_unknown,
            host_bridge: v.host_bridge,
            certain: v.certain,
            reasons: texts.all(&v.reasons, &pbdf, &cbdf),
            fixes: texts.all(&v.fixes, &pbdf, &cbdf),
            kernel_log: texts.all(&v.kernel_log, &pbdf, &cbdf),
        };
        let key = serde_json::to_string(&compact).unwrap_or_default();
        let list = &mut self.list;
        let vi = *self.index.entry(key).or_insert_with(|| {
            list.push(compact);
            (list.len() - 1) as u32
        });
        (vi, v.map_type)
    }
}

impl Counts {
    /// Adds `n` pairs of one map type.
    fn add(&mut self, map_type: MapType, n: usize) {
        match map_type {
            MapType::BusAddr => self.bus_addr += n,
            MapType::ThruHostBridge => self.thru_host_bridge += n,
            MapType::NotSupported => self.not_supported += n,
        }
    }
}

/// The compact matrix: every provider group against every DMA-capable group, each cell
/// explained once for its representative pair (`GroupedMatrix`: exact for every member).
pub fn matrix(engine: &Engine<'_>) -> CompactMatrix {
    let topo = engine.topo;
    let grouping = Grouping::new(engine);
    let g = GroupedMatrix::new(engine, &grouping, &MatrixFilter::default());
    let members: Vec<Vec<usize>> =
        g.groups.iter().map(|r| r.members.iter().filter_map(|&b| engine.index_of(b)).collect()).collect();
    let mut group_of: Vec<usize> = (0..topo.devices.len()).collect();
    for m in &members {
        m.iter().for_each(|&i| group_of[i] = m[0]);
    }
    let hb: HashMap<&str, usize> = topo.host_bridges.iter().enumerate().map(|(i, h)| (h.name.as_str(), i)).collect();
    let host_bridge: Vec<usize> =
        topo.devices.iter().map(|d| hb.get(d.host_bridge.as_str()).copied().unwrap_or(0)).collect();
    let mut verdicts = Verdicts::default();
    let mut counts = Counts {
        providers: g.providers.iter().map(|&p| members[p].len()).sum(),
        clients: g.clients.iter().map(|&c| members[c].len()).sum(),
        ..Counts::default()
    };
    let mut own = Vec::with_capacity(g.providers.len());
    let mut cells = Vec::with_capacity(g.providers.len());
    for &pg in &g.providers {
        let mp = &members[pg];
        let mut row = Vec::with_capacity(g.clients.len());
        for &cg in &g.clients {
            let mc = &members[cg];
            // A group against itself: two distinct members; each member with itself is `own`.
            let (p, c) = p2pdma_core::group::representative_pair(mp, mc, pg == cg);
            let (vi, map_type) = verdicts.add(engine, p, c);
            match (pg == cg, mp.len()) {
                (true, 1) => counts.own += 1,
                (true, n) => {
                    counts.own += n;
                    counts.add(map_type, n * (n - 1));
                }
                _ => counts.add(map_type, mp.len() * mc.len()),
            }
            row.push(vi);
        }
        let both = mp.len() > 1 && g.clients.contains(&pg);
        own.push(both.then(|| verdicts.add(engine, mp[0], mp[0]).0));
        cells.push(row);
    }
    CompactMatrix {
        providers: g.providers.iter().map(|&p| members[p][0]).collect(),
        clients: g.clients.iter().map(|&c| members[c][0]).collect(),
        group_of,
        own,
        walk_up: walk_up(engine),
        host_bridge,
        texts: verdicts.texts.list,
        verdicts: verdicts.list,
        cells,
        counts,
    }
}

/// The whole data block.
pub fn build<'t>(engine: &Engine<'t>, title: &str, source: &str) -> ReportData<'t> {
    let topo = engine.topo;
    let acs = AcsParams::from_cmdline(topo.machine.cmdline.as_deref().unwrap_or(""));
    let matrix = matrix(engine);
    let devices = topo
        .devices
        .iter()
        .zip(&matrix.group_of)
        .enumerate()
        .map(|(i, (d, &g))| match g == i {
            true => DeviceView::Full(Box::new(Device { config_hex: None, ..d.clone() })),
            false => DeviceView::Folded(FoldedDevice {
                bdf: d.bdf,
                name: d.name.clone(),
                physfn: d.physfn,
                numa_node: d.numa_node,
            }),
        })
        .collect();
    ReportData {
        schema: SCHEMA,
        version: VERSION,
        created_by: format!("p2pdma {}", env!("CARGO_PKG_VERSION")),
        title: title.to_string(),
        source: source.to_string(),
        machine: &topo.machine,
        cpu_allows_p2pdma: engine.cpu_allows(),
        acs_params: AcsParamsView { disable_acs_redir: acs.disable_acs_redir, config_acs: acs.config_acs },
        host_bridges: BridgeReport::all(engine),
        devices,
        providers: analysis::providers(topo),
        matrix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pdma_core::spec;
    use std::path::Path;

    fn load(name: &str) -> p2pdma_core::Topology {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/topologies").join(name);
        p2pdma_host::input::read_spec(&path).unwrap().1
    }

    /// The path `explain` gives, as path nodes.
    fn explained_path(engine: &Engine<'_>, p: usize, c: usize) -> Vec<i64> {
        let topo = engine.topo;
        engine
            .explain(p, c)
            .path
            .iter()
            .map(|s| match topo.host_bridges.iter().position(|h| &h.name == s) {
                Some(h) => -1 - h as i64,
                None => engine.index_of(s.parse().unwrap()).unwrap() as i64,
            })
            .collect()
    }

    #[test]
    fn compact_matrix_switch_keeps_the_verdict() {
        let t = load("switch.toml");
        let e = Engine::new(&t).unwrap();
        let m = matrix(&e);
        // Both NVMe are rows: nvme-a has its CMB, nvme-b a registers BAR.
        assert_eq!((m.providers.len(), m.clients.len()), (2, 2));
        let b = t.devices.iter().position(|d| d.name.as_deref() == Some("nvme-b")).unwrap();
        let col = m.clients.iter().position(|&c| c == b).unwrap();
        let v = &m.verdicts[m.cells[0][col] as usize];
        assert_eq!((v.map_type, v.distance), (MapType::BusAddr, Some(4)));
        assert_eq!(
            m.counts,
            Counts { providers: 2, clients: 2, bus_addr: 2, thru_host_bridge: 0, not_supported: 0, own: 2 }
        );
    }

    #[test]
    fn compact_paths_equal_explain_for_every_cell_of_every_scenario() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/topologies");
        let mut scenarios: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        scenarios.sort();
        assert!(scenarios.len() >= 12, "examples/topologies holds 12 scenarios today: {scenarios:?}");
        let mut crossing = 0;
        for file in scenarios {
            let t = p2pdma_host::input::read_spec(&file).unwrap().1;
            let e = Engine::new(&t).unwrap();
            let m = matrix(&e);
            for (pi, &p) in m.providers.iter().enumerate() {
                for (ci, &c) in m.clients.iter().enumerate() {
                    let v = &m.verdicts[m.cells[pi][ci] as usize];
                    let common = v.common_upstream.and_then(|b| e.index_of(b));
                    let got = path(&m.walk_up, &m.host_bridge, p, c, common);
                    assert_eq!(got, explained_path(&e, p, c), "{} {p} {c}", file.display());
                    crossing += usize::from(got.iter().any(|&n| n < 0));
                }
            }
        }
        assert!(crossing > 0, "some scenario crosses a host bridge");
    }

    /// Two NICs with 4 VFs each below one switch with ACS, and an NVMe with a CMB: the VFs
    /// of each NIC fold into one group.
    const VFS: &str = r#"
[machine]
cpu = "intel"
iommu = true
[[root_port]]
name = "rp0"
[[switch]]
name = "sw0"
parent = "rp0"
ports = 3
acs = true
[[endpoint]]
name = "nic0"
kind = "nic"
parent = "sw0.0"
vfs = 4
[[endpoint]]
name = "nic1"
kind = "nic"
parent = "sw0.1"
vfs = 4
[[endpoint]]
name = "nvme0"
kind = "nvme"
parent = "sw0.2"
cmb_mib = 16
"#;

    /// The verdict a cell of the page stands for, as report.js `pairAt` reads it: the
    /// groups' cell (a member with itself: `own`), and the explained pair's own addresses
    /// standing for this pair's.
    fn resolve(m: &CompactMatrix, p: usize, c: usize) -> (&CompactVerdict, usize, usize) {
        let row = m.providers.iter().position(|&r| r == m.group_of[p]).unwrap();
        let col = m.clients.iter().position(|&r| r == m.group_of[c]).unwrap();
        let (rp, rc) = (m.providers[row], m.clients[col]);
        let mine: Vec<usize> = (0..m.group_of.len()).filter(|&i| m.group_of[i] == rc).collect();
        match m.own[row] {
            Some(v) if p == c => (&m.verdicts[v as usize], rp, rp),
            _ if rp == rc && p != c => (&m.verdicts[m.cells[row][col] as usize], mine[0], mine[1]),
            _ => (&m.verdicts[m.cells[row][col] as usize], rp, rc),
        }
    }

    #[test]
    fn grouped_matrix_restores_every_member_pair_exactly() {
        let t = spec::from_text(VFS, Path::new("vfs.toml")).unwrap().1;
        let e = Engine::new(&t).unwrap();
        let m = matrix(&e);
        let n = t.devices.len();
        assert_eq!(m.group_of.iter().enumerate().filter(|&(i, &g)| g != i).count(), 6, "3 of each NIC's 4 VFs fold");
        let full = analysis::matrix(&e);
        let (mut pairs, mut seen) = (0, Counts::default());
        for p in (0..n).filter(|&p| full.providers.contains(&t.devices[p].bdf)) {
            for c in (0..n).filter(|&c| full.clients.contains(&t.devices[c].bdf)) {
                let (v, ep, ec) = resolve(&m, p, c);
                let who = |i: usize| {
                    if i == ep {
                        p
                    } else if i == ec {
                        c
                    } else {
                        i
                    }
                };
                let want = e.explain(p, c);
                let (pb, cb) = (t.devices[p].bdf.to_string(), t.devices[c].bdf.to_string());
                let restore = |ids: &[u32]| -> Vec<String> {
                    ids.iter().map(|&i| m.texts[i as usize].replace('\u{1}', &pb).replace('\u{2}', &cb)).collect()
                };
                let at = format!("{pb} -> {cb}");
                assert_eq!(
                    (v.map_type, v.distance, v.hops, v.certain),
                    (want.map_type, want.distance, want.hops, want.certain),
                    "{at}"
                );
                assert_eq!((restore(&v.reasons), restore(&v.fixes)), (want.reasons, want.fixes), "{at}");
                assert_eq!(restore(&v.kernel_log), want.kernel_log, "{at}");
                let common = v.common_upstream.and_then(|b| e.index_of(b)).map(who);
                assert_eq!(common.map(|i| t.devices[i].bdf), want.common_upstream, "{at}");
                let redirect: Vec<Bdf> =
                    v.acs_redirect.iter().map(|r| t.devices[who(e.index_of(r.device).unwrap())].bdf).collect();
                assert_eq!(redirect, want.acs_redirect.iter().map(|r| r.device).collect::<Vec<_>>(), "{at}");
                let path: Vec<i64> = path(&m.walk_up, &m.host_bridge, p, c, common);
                assert_eq!(path, explained_path(&e, p, c), "{at}");
                match want.map_type {
                    _ if p == c => seen.own += 1,
                    t => seen.add(t, 1),
                }
                pairs += 1;
            }
        }
        assert_eq!(pairs, m.counts.providers * m.counts.clients);
        assert_eq!(
            (seen.own, seen.bus_addr, seen.thru_host_bridge, seen.not_supported),
            (m.counts.own, m.counts.bus_addr, m.counts.thru_host_bridge, m.counts.not_supported)
        );
        assert!(m.providers.len() < m.counts.providers, "rows are groups");
    }

    #[test]
    fn compact_texts_restore_to_the_full_explanation() {
        let t = load("iommu-acs.toml");
        let e = Engine::new(&t).unwrap();
        let m = matrix(&e);
        let (p, c) = (m.providers[0], m.clients[1]);
        let full = e.explain(p, c);
        let v = &m.verdicts[m.cells[0][1] as usize];
        let (pb, cb) = (t.devices[p].bdf.to_string(), t.devices[c].bdf.to_string());
        let restore = |ids: &[u32]| -> Vec<String> {
            ids.iter().map(|&i| m.texts[i as usize].replace('\u{1}', &pb).replace('\u{2}', &cb)).collect()
        };
        assert_eq!(restore(&v.reasons), full.reasons);
        assert_eq!(restore(&v.fixes), full.fixes);
        assert_eq!(restore(&v.kernel_log), full.kernel_log);
        assert_eq!(v.map_type, MapType::NotSupported);
        assert_eq!(v.acs_redirect.len(), 1);
    }
}
