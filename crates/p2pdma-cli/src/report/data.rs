//! The JSON embedded in the report: `topo --json`'s structs (machine, host bridges,
//! devices, providers), with the matrix in a compact form that still carries every cell's
//! full explanation (`check --json`'s `PairVerdict`), deduplicated so that a thousand
//! devices fit in a few megabytes.
//!
//! Compact matrix: `providers` and `clients` are device indices; `cells[p][c]` indexes
//! `verdicts`. In the JSON each row of `cells` is run-length encoded, `[verdict, count,
//! verdict, count, ...]` (rows of one verdict are the rule: 768 × 768 cells took 2.4 MB as
//! plain indices), and report.js expands it once on load. A verdict is a `PairVerdict` without the pair-specific fields (provider,
//! client, path), its texts replaced by indices into `texts`; in a text, U+0001 stands for
//! the provider's address and U+0002 for the client's, so that one text serves every pair
//! it fits. The path is not stored per cell (it was 40% of the file): it follows from
//! `walk_up` (the device the kernel's walk goes to next: the upstream bridge, through the
//! PF for a VF; -1 on a root bus), `host_bridge` (each device's host bridge index) and the
//! verdict's common device, exactly as [`path`] builds it (and report.js, in the same way):
//! the provider up to the common device, then down to the client; without a common device,
//! up to the root bus, through the host bridge(s), down to the client. Path nodes are device
//! indices `i >= 0` and host bridges `h` as `-1 - h`.

use std::collections::HashMap;

use p2pdma_core::analysis::{self, ProviderRow};
use p2pdma_core::kernel_params::AcsParams;
use p2pdma_core::model::{Device, Machine};
use p2pdma_core::verdict::{AcsRedirect, HostBridgeCheck, MapType, PairVerdict};
use p2pdma_core::{Bdf, Engine};
use serde::Serialize;

use crate::render::BridgeReport;

pub const SCHEMA: &str = "p2pdma-report";
pub const VERSION: u32 = 1;

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
    /// `Topology::devices` without raw config space (the verdicts are already decoded).
    pub devices: Vec<Device>,
    pub providers: Vec<ProviderRow>,
    pub matrix: CompactMatrix,
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

/// How many cells of each kind (`SELF` cells are counted apart).
#[derive(Serialize, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
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

/// The compact matrix: every provider against every DMA-capable endpoint, explained.
pub fn matrix(engine: &Engine<'_>) -> CompactMatrix {
    let topo = engine.topo;
    let m = analysis::matrix(engine);
    let providers: Vec<usize> = m.providers.iter().filter_map(|&b| engine.index_of(b)).collect();
    let clients: Vec<usize> = m.clients.iter().filter_map(|&b| engine.index_of(b)).collect();
    let hb: HashMap<&str, usize> = topo.host_bridges.iter().enumerate().map(|(i, h)| (h.name.as_str(), i)).collect();
    let host_bridge: Vec<usize> =
        topo.devices.iter().map(|d| hb.get(d.host_bridge.as_str()).copied().unwrap_or(0)).collect();
    let mut texts = Texts::default();
    let mut verdicts: Vec<CompactVerdict> = Vec::new();
    let mut verdict_index: HashMap<String, usize> = HashMap::new();
    let mut counts = Counts::default();
    let mut cells = Vec::with_capacity(providers.len());
    for &p in &providers {
        let pbdf = topo.devices[p].bdf.to_string();
        let mut row = Vec::with_capacity(clients.len());
        for &c in &clients {
            let v: PairVerdict = engine.explain(p, c);
            let cbdf = topo.devices[c].bdf.to_string();
            match v.map_type {
                _ if p == c => counts.own += 1,
                MapType::BusAddr => counts.bus_addr += 1,
                MapType::ThruHostBridge => counts.thru_host_bridge += 1,
                MapType::NotSupported => counts.not_supported += 1,
            }
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
            let vi = *verdict_index.entry(key).or_insert_with(|| {
                verdicts.push(compact);
                verdicts.len() - 1
            });
            row.push(vi as u32);
        }
        cells.push(row);
    }
    CompactMatrix {
        providers,
        clients,
        walk_up: walk_up(engine),
        host_bridge,
        texts: texts.list,
        verdicts,
        cells,
        counts,
    }
}

/// The whole data block.
pub fn build<'t>(engine: &Engine<'t>, title: &str, source: &str) -> ReportData<'t> {
    let topo = engine.topo;
    let acs = AcsParams::from_cmdline(topo.machine.cmdline.as_deref().unwrap_or(""));
    ReportData {
        schema: SCHEMA,
        version: VERSION,
        created_by: format!("p2pdma {}", env!("CARGO_PKG_VERSION")),
        title: title.to_string(),
        source: source.to_string(),
        machine: &topo.machine,
        cpu_allows_p2pdma: engine.cpu_allows(),
        acs_params: AcsParamsView { disable_acs_redir: acs.disable_acs_redir, config_acs: acs.config_acs },
        host_bridges: topo
            .host_bridges
            .iter()
            .zip(engine.host_bridge_info())
            .map(|(bridge, whitelist)| BridgeReport { bridge, whitelist })
            .collect(),
        devices: topo.devices.iter().map(|d| Device { config_hex: None, ..d.clone() }).collect(),
        providers: analysis::providers(topo),
        matrix: matrix(engine),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(m.counts, Counts { bus_addr: 2, thru_host_bridge: 0, not_supported: 0, own: 2 });
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
