//! Cross-checks: p2pdma's path classes against every `nvidia-smi topo -m` cell, and its
//! verdicts against every P2PDMA line of the kernel log. GPUn is the n-th NVIDIA GPU
//! (vendor 10de, class 03xx) in PCI bus order, as nvidia-smi numbers them by default
//! (`CUDA_DEVICE_ORDER=PCI_BUS_ID` order); NICn is the n-th entry of the `NIC Legend:`,
//! matched to the RDMA-capable NIC functions of its driver's vendor in bus order (`mlx5_*`:
//! Mellanox/NVIDIA 15b3).

use p2pdma_core::pathclass::PathClass;
use p2pdma_core::verdict::MapType;
use p2pdma_core::{Engine, Topology};

use crate::import::dmesg::P2pEvent;
use crate::import::nvsmi::TopoMatrix;
use crate::import::report::{CellCheck, Counts, CrossCheck, Disagreement, Fact, ImportReport, LineCheck, Outcome};
use crate::import::{Origin, ParsedData, ParsedInput};
use crate::Error;

/// NVIDIA GPUs in bus order (indices into `topo.devices`, which is sorted by address).
pub fn gpus(topo: &Topology) -> Vec<usize> {
    topo.devices
        .iter()
        .enumerate()
        .filter(|(_, d)| d.vendor == 0x10de && d.class >> 16 == 0x03)
        .map(|(i, _)| i)
        .collect()
}

/// The vendor behind an RDMA device name (`mlx5_0` → 15b3), when p2pdma knows it.
fn rdma_vendor(name: &str) -> Option<u16> {
    let driver = name.rsplit_once('_').map_or(name, |(d, _)| d);
    match driver {
        d if d.starts_with("mlx") => Some(0x15b3),
        "bnxt_re" => Some(0x14e4),
        "irdma" | "i40iw" => Some(0x8086),
        "qedr" => Some(0x1077),
        "efa" => Some(0x1d0f),
        "erdma" => Some(0x1ded),
        _ => None,
    }
}

/// Each row/column label of the matrix and the device it stands for.
pub fn map_labels(topo: &Topology, m: &TopoMatrix) -> Vec<(String, Option<usize>)> {
    let gpus = gpus(topo);
    let mut labels: Vec<String> = m.labels.clone();
    for r in &m.rows {
        if !labels.contains(&r.label) {
            labels.push(r.label.clone());
        }
    }
    // NIC names in legend order, then the NICs of each vendor in bus order.
    let nic_name = |label: &str| -> Option<String> {
        if label.starts_with("NIC") {
            m.nic_legend.iter().find(|(k, _)| k == label).map(|(_, v)| v.clone())
        } else {
            Some(label.to_string())
        }
    };
    let mut nic_names: Vec<String> = Vec::new();
    for l in &labels {
        if !l.starts_with("GPU") {
            if let Some(n) = nic_name(l) {
                nic_names.push(n);
            }
        }
    }
    labels
        .into_iter()
        .map(|l| {
            let dev = if let Some(n) = l.strip_prefix("GPU") {
                n.parse::<usize>().ok().and_then(|n| gpus.get(n).copied())
            } else {
                nic_name(&l).and_then(|name| {
                    let vendor = rdma_vendor(&name)?;
                    let rank = nic_names.iter().filter(|x| rdma_vendor(x) == Some(vendor)).position(|x| *x == name)?;
                    topo.devices
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| d.vendor == vendor && d.class >> 16 == 0x02 && d.physfn.is_none())
                        .nth(rank)
                        .map(|(i, _)| i)
                })
            };
            (l, dev)
        })
        .collect()
}

/// GPUs' NUMA node from the `NUMA Affinity` column where no other input gave one.
pub fn fill_numa_from_topo(topo: &mut Topology, m: &TopoMatrix, origin: &Origin, report: &mut ImportReport) {
    let map = map_labels(topo, m);
    for row in &m.rows {
        let (Some(node), Some(Some(i))) = (row.numa_affinity, map.iter().find(|(l, _)| *l == row.label).map(|x| x.1))
        else {
            continue;
        };
        let mut o = origin.clone();
        o.line = origin.line + row.line - 1;
        let d = &mut topo.devices[i];
        match d.numa_node {
            None => {
                d.numa_node = Some(node);
                report.facts.push(Fact {
                    subject: d.bdf.to_string(),
                    fact: "numa_node",
                    value: node.to_string(),
                    origin: o,
                    derived: Some(format!("{}'s NUMA Affinity", row.label)),
                });
            }
            Some(n) if n != node && n >= 0 => report.disagreements.push(Disagreement {
                subject: d.bdf.to_string(),
                fact: "numa_node",
                values: vec![
                    (
                        n.to_string(),
                        report
                            .facts
                            .iter()
                            .find(|f| f.subject == d.bdf.to_string() && f.fact == "numa_node")
                            .map_or_else(|| o.clone(), |f| f.origin.clone()),
                    ),
                    (node.to_string(), o),
                ],
            }),
            _ => {}
        }
    }
}

/// Every cell and every kernel line, compared.
pub fn run(topo: &Topology, inputs: &[ParsedInput]) -> Result<CrossCheck, Error> {
    let engine = Engine::new(topo)?;
    let mut cc = CrossCheck::default();
    for input in inputs {
        for part in &input.parts {
            match &part.data {
                ParsedData::Topo(m) => cells(&engine, m, &part.origin, &mut cc),
                ParsedData::Dmesg(k) => {
                    for l in &k.p2p {
                        let mut o = part.origin.clone();
                        o.line = part.origin.line + l.line - 1;
                        let check = line(&engine, &l.event, o);
                        bump(&mut cc.kernel_lines, check.outcome);
                        cc.lines.push(check);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(cc)
}

fn bump(c: &mut Counts, o: Outcome) {
    match o {
        Outcome::Agree => c.agree += 1,
        Outcome::Disagree => c.disagree += 1,
        Outcome::NotCompared => c.not_compared += 1,
    }
}

fn cells(engine: &Engine<'_>, m: &TopoMatrix, origin: &Origin, cc: &mut CrossCheck) {
    let map = map_labels(engine.topo, m);
    let dev = |label: &str| map.iter().find(|(l, _)| l == label).and_then(|x| x.1);
    for row in &m.rows {
        for (k, cell) in row.cells.iter().enumerate() {
            let Some(col) = m.labels.get(k) else { continue };
            let (r, c) = (dev(&row.label), dev(col));
            let mut o = origin.clone();
            o.line = origin.line + row.line - 1;
            let bdf = |i: Option<usize>| i.map(|i| engine.topo.devices[i].bdf);
            let (ours, outcome, note) = match (r, c) {
                (Some(r), Some(c)) if cell.starts_with("NV") => (
                    Some(engine.path_class(r, c).as_str().to_string()),
                    Outcome::NotCompared,
                    Some("NVLink: not a PCIe path".to_string()),
                ),
                (Some(r), Some(c)) => {
                    let ours = engine.path_class(r, c);
                    let want = if cell == "SOC" { "SYS" } else { cell.as_str() };
                    let outcome = if ours.as_str() == want { Outcome::Agree } else { Outcome::Disagree };
                    let note = (outcome == Outcome::Disagree && ours == PathClass::NODE && want == "SYS")
                        .then(|| "the NUMA nodes of the two devices are not both known (add lscpu/hwloc or lspci -vvv as root)".to_string());
                    (Some(ours.as_str().to_string()), outcome, note)
                }
                _ => {
                    let missing = if r.is_none() { &row.label } else { col };
                    (None, Outcome::NotCompared, Some(format!("{missing}: no such device in the inputs")))
                }
            };
            bump(&mut cc.path_classes, outcome);
            cc.cells.push(CellCheck {
                row: row.label.clone(),
                column: col.clone(),
                row_device: bdf(r),
                column_device: bdf(c),
                nvidia_smi: cell.clone(),
                p2pdma: ours,
                outcome,
                note,
                origin: o,
            });
        }
    }
}

fn line(engine: &Engine<'_>, event: &P2pEvent, origin: Origin) -> LineCheck {
    let (client, provider, kernel) = match *event {
        P2pEvent::Added { provider, .. } => {
            let found = engine.index_of(provider).is_some();
            return LineCheck {
                event: event.clone(),
                kernel: "the provider registered P2P memory".into(),
                p2pdma: None,
                outcome: Outcome::NotCompared,
                note: Some(if found {
                    "not a verdict".into()
                } else {
                    format!("{provider} is not in the assembled machine")
                }),
                origin,
            };
        }
        P2pEvent::Refused { client, provider } => (client, provider, "not supported"),
        P2pEvent::AcsRedirect { client, provider } => (client, provider, "ACS redirects: not by bus address"),
    };
    let (Some(c), Some(p)) = (engine.index_of(client), engine.index_of(provider)) else {
        let missing = if engine.index_of(client).is_none() { client } else { provider };
        return LineCheck {
            event: event.clone(),
            kernel: kernel.into(),
            p2pdma: None,
            outcome: Outcome::NotCompared,
            note: Some(format!("{missing} is not in the assembled machine (its place in the tree is unknown)")),
            origin,
        };
    };
    let ours = engine.pair(p, c).map_type;
    let certain = engine.certain(p, c);
    let (outcome, note) = match event {
        P2pEvent::Refused { .. } if ours == MapType::NotSupported => (Outcome::Agree, None),
        P2pEvent::Refused { .. } => {
            (Outcome::Disagree, (!certain).then(|| "p2pdma's verdict rests on ACS it could not read".to_string()))
        }
        _ if ours != MapType::BusAddr => (Outcome::Agree, None),
        _ if !certain => (Outcome::Agree, Some("the kernel's line settles ACS p2pdma could not read".to_string())),
        _ => (Outcome::Disagree, None),
    };
    LineCheck {
        event: event.clone(),
        kernel: kernel.into(),
        p2pdma: Some(format!("{}{}", ours.as_str(), if certain { "" } else { " (uncertain)" })),
        outcome,
        note,
        origin,
    }
}
