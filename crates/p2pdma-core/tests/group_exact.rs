//! Grouping is exact on generated servers: every provider × client pair answered from the
//! groups equals the full pairwise engine's verdict, path class and certainty. The 10k
//! acceptance machine (about 10^8 pairs) runs in release by scripts/test
//! (`--include-ignored`); debug builds take the smaller presets.

use std::path::Path;

use p2pdma_core::analysis::MatrixFilter;
use p2pdma_core::group::{Cell, GroupedMatrix, Grouping};
use p2pdma_core::synthetic::{server, ServerShape};
use p2pdma_core::{spec, Engine};

/// Checks every pair; returns (functions, groups).
fn assert_exact(shape: &ServerShape) -> (usize, usize) {
    let (_, topo) = spec::from_text(&server(shape), Path::new("gen.toml")).unwrap();
    let engine = Engine::new(&topo).unwrap();
    let grouping = Grouping::new(&engine);
    let m = GroupedMatrix::new(&engine, &grouping, &MatrixFilter::default());
    let providers: Vec<usize> = (0..topo.devices.len()).filter(|&i| topo.devices[i].has_p2p_memory_side()).collect();
    let clients: Vec<usize> = (0..topo.devices.len()).filter(|&i| topo.devices[i].is_dma_capable()).collect();
    let mut checked = 0u64;
    for &p in &providers {
        for &c in &clients {
            let full = Cell {
                verdict: engine.pair(p, c),
                path_class: engine.path_class(p, c),
                certain: p == c || engine.certain(p, c),
            };
            let (bp, bc) = (topo.devices[p].bdf, topo.devices[c].bdf);
            assert_eq!(m.cell(bp, bc), Some(full), "{}: {bp} -> {bc}", shape.name);
            checked += 1;
        }
    }
    let represented: u64 = (0..m.providers.len())
        .flat_map(|p| (0..m.clients.len()).map(move |c| (p, c)))
        .map(|(p, c)| m.pairs_in(p, c))
        .sum();
    assert_eq!(represented, checked, "the grouped cells stand for every pair once");
    (topo.devices.len(), grouping.len())
}

#[test]
fn grouped_equals_full_on_generated_servers() {
    for size in [100, 1_000] {
        let (functions, groups) = assert_exact(&ServerShape::preset(size));
        assert!(groups < functions, "{size}: VFs fold ({groups} groups of {functions})");
    }
}

#[test]
#[ignore = "3,000 and 10,000 functions, 10^8 pairs: run in release (scripts/test does)"]
fn grouped_equals_full_on_the_large_servers() {
    assert_exact(&ServerShape::preset(3_000));
    let (functions, groups) = assert_exact(&ServerShape::acceptance());
    assert_eq!(functions, 9_942);
    assert!(groups < 600, "{groups} groups");
}
