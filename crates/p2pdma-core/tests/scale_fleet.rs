//! `metrics` and `diff` on generated servers: exact against the full pairwise engine on the
//! presets, and sized for people and Prometheus on the 10k acceptance machine (issue 24).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use p2pdma_core::diff::{self, PairKey};
use p2pdma_core::group::Grouping;
use p2pdma_core::metrics::{exposition, Options};
use p2pdma_core::pathclass::DeviceClass;
use p2pdma_core::synthetic::{server, ServerShape};
use p2pdma_core::verdict::PairResult;
use p2pdma_core::{spec, Engine, MapType, Topology};

fn machine(shape: &ServerShape) -> Topology {
    spec::from_text(&server(shape), Path::new("gen.toml")).unwrap().1
}

fn flipped(shape: &ServerShape, host_bridge: u16) -> Topology {
    machine(&ServerShape { flip_acs: Some(host_bridge), ..shape.clone() })
}

/// Flipped pairs, pair by pair, with the full engine.
fn pairwise(a: &Topology, b: &Topology) -> BTreeMap<PairKey, (Option<PairResult>, Option<PairResult>)> {
    let every = |t: &Topology| {
        let e = Engine::new(t).unwrap();
        let n = t.devices.len();
        let mut out = BTreeMap::new();
        for p in (0..n).filter(|&p| t.devices[p].has_p2p_memory_side()) {
            for c in (0..n).filter(|&c| c != p && t.devices[c].is_dma_capable()) {
                out.insert(PairKey { provider: t.devices[p].bdf, client: t.devices[c].bdf }, e.pair(p, c));
            }
        }
        out
    };
    let (pa, pb) = (every(a), every(b));
    pa.keys()
        .chain(pb.keys())
        .filter_map(|k| {
            let (x, y) = (pa.get(k).copied(), pb.get(k).copied());
            (x != y).then_some((*k, (x, y)))
        })
        .collect()
}

#[test]
fn diff_counts_equal_the_pairwise_diff_on_generated_servers() {
    for size in [100, 1_000] {
        let shape = ServerShape::preset(size);
        let a = machine(&shape);
        for (b, what) in [(flipped(&shape, 0), "ACS flipped"), (flipped(&shape, 1), "ACS flipped")] {
            let d = diff::diff(&a, &b).unwrap();
            let mut got = BTreeMap::new();
            for f in &d.flips {
                for k in d.pairs_of(f) {
                    assert!(got.insert(k, (f.before, f.after)).is_none());
                }
            }
            let want = pairwise(&a, &b);
            assert!(!want.is_empty(), "{size}: {what} flips pairs");
            assert_eq!(got, want, "{size}: {what}");
            assert_eq!(d.pairs, want.len() as u64);
        }
    }
}

#[test]
fn one_switch_acs_flip_on_the_10k_machine_is_a_short_diff() {
    let shape = ServerShape::acceptance();
    let (a, b) = (machine(&shape), flipped(&shape, 0));
    let d = diff::diff(&a, &b).unwrap();
    assert!(!d.same && d.pairs > 0);
    // The switch's ports, and the IOMMU groups its ACS merged (VFs included).
    assert!(d.devices.changed < 1_000 && d.devices.added + d.devices.removed == 0, "{:?}", d.devices);
    assert!(d.flips.len() <= 400, "{} group pairs", d.flips.len());
    let json = serde_json::to_string(&d).unwrap();
    assert!(json.len() < 1 << 20, "{} bytes of JSON", json.len());
    // Every flip is explained by the ACS of the switch's ports.
    let mut explained = vec![false; d.flips.len()];
    for c in d.changes.iter().filter(|c| c.field.as_deref() == Some("acs.ctrl")) {
        assert!(c.label.as_deref().is_some_and(|l| l.starts_with("sw0.")), "{}", c.summary);
        for &f in &c.flips {
            explained[f] = true;
        }
    }
    assert!(explained.iter().all(|&e| e));
}

/// Peer series of every device equal the full engine's pairs, counted by class and verdict.
fn assert_peers_exact(topo: &Topology, text: &str) {
    let engine = Engine::new(topo).unwrap();
    let label = |line: &str, key: &str| -> String {
        let at = line.find(&format!("{key}=\"")).unwrap() + key.len() + 2;
        line[at..at + line[at..].find('"').unwrap()].to_string()
    };
    let mut series: HashMap<(String, String, String), u64> = HashMap::new();
    for line in text.lines().filter(|l| l.starts_with("p2pdma_peers{")) {
        let value = line.rsplit(' ').next().unwrap().parse().unwrap();
        series.insert((label(line, "device"), label(line, "peer_class"), label(line, "via")), value);
    }
    let grouping = Grouping::new(&engine);
    let n = topo.devices.len();
    let via = |m: MapType| match m {
        MapType::NotSupported => "not_supported",
        MapType::ThruHostBridge => "host_bridge",
        MapType::BusAddr => "bus_address",
    };
    for c in (0..n).filter(|&c| topo.devices[c].is_dma_capable()) {
        let rep = topo.devices[grouping.members(grouping.group_of(c))[0]].bdf.to_string();
        let mut want: HashMap<(String, String, String), u64> = HashMap::new();
        for p in (0..n).filter(|&p| p != c && topo.devices[p].has_p2p_memory_side()) {
            let key = (
                rep.clone(),
                DeviceClass::of(&topo.devices[p]).as_str().to_string(),
                via(engine.pair(p, c).map_type).to_string(),
            );
            *want.entry(key).or_default() += 1;
        }
        for (k, v) in &want {
            assert_eq!(series.get(k), Some(v), "{k:?}");
        }
    }
}

#[test]
fn peer_series_equal_the_full_engine_on_generated_servers() {
    for size in [100, 1_000] {
        let topo = machine(&ServerShape::preset(size));
        assert_peers_exact(&topo, &exposition(&Engine::new(&topo).unwrap(), &Options::default()));
    }
}

#[test]
fn metrics_of_the_10k_machine_stay_under_20000_series() {
    let topo = machine(&ServerShape::acceptance());
    let text = exposition(&Engine::new(&topo).unwrap(), &Options::default());
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    assert!(series < 20_000, "{series} series for {} functions", topo.devices.len());
}
