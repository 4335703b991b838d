//! Benchmark (not a test): the full P2P matrix of 256 providers × 10,240 endpoints under
//! nested switches in ten PCI domains, timed, with the process's memory peak.
//!
//! Run: `cargo run --release -p p2pdma-core --example bench_matrix`

// Tests and examples read files; the crate itself may not touch the filesystem.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::Path;
use std::time::Instant;

use p2pdma_core::{spec, synthetic, Engine, MapType};

/// Per domain: root port → switch (16 ports) → switches (8 ports) → 8 functions each; every
/// 40th endpoint has P2P memory, up to 256 (`synthetic::matrix_grid`).
fn generate() -> String {
    synthetic::matrix_grid(10, 16, 8, 8, 256)
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn main() {
    let text = generate();
    let t0 = Instant::now();
    let topo = spec::parse(&text, Path::new("generated.toml")).unwrap().to_topology().unwrap();
    let load = t0.elapsed();

    let t1 = Instant::now();
    let engine = Engine::new(&topo).unwrap();
    let providers: Vec<usize> = (0..topo.devices.len()).filter(|&i| topo.devices[i].p2pmem.is_some()).collect();
    let clients: Vec<usize> = (0..topo.devices.len()).filter(|&i| topo.devices[i].is_dma_capable()).collect();
    let index = t1.elapsed();

    // Best of three, each the full matrix.
    let mut best = f64::MAX;
    let mut counts = [0usize; 3];
    for _ in 0..3 {
        let t = Instant::now();
        let m = engine.matrix(&providers, &clients);
        best = best.min(t.elapsed().as_secs_f64());
        counts = [0; 3];
        for cell in m.iter().flatten() {
            counts[match cell.map_type {
                MapType::BusAddr => 0,
                MapType::ThruHostBridge => 1,
                MapType::NotSupported => 2,
            }] += 1;
        }
    }
    // The hardware layer (path class) over the same pairs, also allocation-free.
    let mut best_class = f64::MAX;
    let mut pix = 0usize;
    for _ in 0..3 {
        let t = Instant::now();
        pix = 0;
        for &p in &providers {
            for &c in &clients {
                pix += usize::from(engine.path_class(p, c) == p2pdma_core::pathclass::PathClass::PIX);
            }
        }
        best_class = best_class.min(t.elapsed().as_secs_f64());
    }
    let pairs = providers.len() * clients.len();
    println!(
        "devices: {} ({} providers × {} DMA-capable endpoints = {} pairs)",
        topo.devices.len(),
        providers.len(),
        clients.len(),
        pairs
    );
    println!("verdicts: {} bus_addr, {} thru_host_bridge, {} not_supported", counts[0], counts[1], counts[2]);
    println!("topology file parse + lowering: {:.3} s; engine index: {:.3} s", load.as_secs_f64(), index.as_secs_f64());
    println!("full matrix: {:.3} s (best of 3), {:.0} ns per pair", best, best * 1e9 / pairs as f64);
    println!(
        "path classes: {:.3} s (best of 3), {:.0} ns per pair ({pix} PIX)",
        best_class,
        best_class * 1e9 / pairs as f64
    );
    println!("peak memory (VmHWM): {} MiB", peak_rss_kib().unwrap_or(0) / 1024);
}
