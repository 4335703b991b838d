//! Generated machines for scale benchmarks and tests: HGX-style servers as topology files
//! (the text `spec` parses), deterministic, sized by their number of PCI functions.
//!
//! A server is sockets × root buses (host bridges, AMD- or Intel-style). Below each host
//! bridge one root port leads to a PCIe switch carrying GPUs, NICs and DPUs (their SR-IOV
//! VFs on the PF's bus) and one port to a nested switch of NVMe drives. Every other GPU
//! switch has ACS (with the IOMMU on, the kernel enables it, so its peers redirect); half
//! the GPUs publish a BAR and half the drives a CMB as P2P memory (by pairs of indices, so
//! that switches with and without ACS have providers).
//! Also the grid of `examples/bench_matrix.rs` (`matrix_grid`), the verdict engine's yardstick.

use std::fmt::Write;

/// Whose host bridges: the P2P rule differs (AMD Zen passes any pair through the host
/// bridge by CPU; Intel by the host bridge whitelist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// EPYC Milan: root complexes 1022:1480, root ports 1022:1483.
    Amd,
    /// Ice Lake-SP: host bridges 8086:09a2 (on the whitelist), root ports 8086:347a.
    Intel,
}

/// The shape of a generated server. Devices of each kind are dealt round-robin over the
/// host bridges, socket by socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerShape {
    pub name: String,
    pub platform: Platform,
    pub sockets: u16,
    /// Host bridges (root buses) per socket.
    pub root_buses_per_socket: u16,
    pub gpus: u16,
    pub nics: u16,
    /// DPUs (BlueField-style): NIC functions with VFs of their own.
    pub dpus: u16,
    /// SR-IOV VFs of every NIC and DPU.
    pub vfs: u8,
    pub nvme: u16,
    pub iommu: bool,
    /// The GPU switch (by host bridge index) whose ACS is inverted: the "after" machine of
    /// a `diff` benchmark.
    pub flip_acs: Option<u16>,
}

/// The nominal sizes of the presets (`preset`), the last the acceptance machine of issue 24.
pub const PRESET_SIZES: [usize; 4] = [100, 1_000, 3_000, 10_000];

impl ServerShape {
    /// The acceptance machine of issue 24: 4 sockets, 16 GPUs, NICs and DPUs with 255 VFs,
    /// about 10,000 functions (9,942).
    pub fn acceptance() -> ServerShape {
        ServerShape { name: "hgx-10k".into(), nics: 30, dpus: 8, vfs: 255, ..template(10_000) }
    }

    /// The preset of that nominal size (`PRESET_SIZES`), else `near(functions)`.
    pub fn preset(functions: usize) -> ServerShape {
        if functions == 10_000 {
            return ServerShape::acceptance();
        }
        ServerShape::near(functions)
    }

    /// A server of about `functions` PCI functions: the template for its size, with the
    /// VFs per NIC (and, past 255, more NICs) chosen to come closest.
    pub fn near(functions: usize) -> ServerShape {
        let mut shape = template(functions);
        shape.name = format!("hgx-{functions}");
        loop {
            let best = (0..=255u8)
                .min_by_key(|&v| ServerShape { vfs: v, ..shape.clone() }.functions().abs_diff(functions))
                .unwrap_or(0);
            shape.vfs = best;
            // Past 255 VFs a function more per NIC is impossible: add a NIC.
            if best < 255 || shape.functions() >= functions || shape.nics >= 4096 {
                return shape;
            }
            shape.nics += 1;
        }
    }

    fn host_bridges(&self) -> usize {
        usize::from(self.sockets.max(1)) * usize::from(self.root_buses_per_socket.max(1))
    }

    /// What is below host bridge `h`: the kinds dealt to it.
    fn unit(&self, h: usize) -> Unit {
        let n = self.host_bridges();
        let share = |count: u16| (0..usize::from(count)).filter(|i| i % n == h).count();
        Unit { gpus: share(self.gpus), nics: share(self.nics), dpus: share(self.dpus), nvme: share(self.nvme) }
    }

    /// The number of PCI functions the topology file makes (bridges and VFs included).
    pub fn functions(&self) -> usize {
        (0..self.host_bridges()).map(|h| self.unit(h).functions(self.vfs)).sum()
    }
}

/// The base shape for a size; `near` sets its VFs (and NICs).
fn template(functions: usize) -> ServerShape {
    let base = |platform, sockets, root_buses_per_socket, gpus, nics, dpus, nvme| ServerShape {
        name: String::new(),
        platform,
        sockets,
        root_buses_per_socket,
        gpus,
        nics,
        dpus,
        vfs: 0,
        nvme,
        iommu: true,
        flip_acs: None,
    };
    match functions {
        0..400 => base(Platform::Amd, 1, 2, 4, 2, 0, 4),
        400..2_000 => base(Platform::Amd, 2, 4, 8, 4, 2, 8),
        2_000..6_000 => base(Platform::Intel, 2, 4, 8, 8, 2, 16),
        _ => base(Platform::Intel, 4, 4, 16, 16, 8, 32),
    }
}

/// The devices below one host bridge.
struct Unit {
    gpus: usize,
    nics: usize,
    dpus: usize,
    nvme: usize,
}

impl Unit {
    /// Downstream ports of the GPU switch: one per GPU, NIC, DPU, and one for the NVMe switch.
    fn ports(&self) -> usize {
        (self.gpus + self.nics + self.dpus + usize::from(self.nvme > 0)).max(1)
    }

    /// Buses: the root bus, the root port's, the switch's internal one, one per port; the
    /// NVMe switch's internal bus and its ports.
    fn buses(&self) -> usize {
        3 + self.ports() + if self.nvme > 0 { 1 + self.nvme } else { 0 }
    }

    fn functions(&self, vfs: u8) -> usize {
        // Host bridge 00.0, root port, switch upstream port and its downstream ports.
        let bridges = 3 + self.ports() + if self.nvme > 0 { 1 + self.nvme } else { 0 };
        bridges + self.gpus + (self.nics + self.dpus) * (1 + usize::from(vfs)) + self.nvme
    }
}

/// The topology file of a generated server. Root buses are packed in order into domain 0,
/// a new domain when 256 buses are used up.
pub fn server(shape: &ServerShape) -> String {
    let mut t = String::new();
    let (cpu, hb_id) = match shape.platform {
        Platform::Amd => ("epyc-milan", "1022:1480"),
        Platform::Intel => ("intel", "8086:09a2"),
    };
    let _ = writeln!(
        t,
        "# Generated by p2pdma_core::synthetic ({} functions).\nname = \"{}\"\ndescription = \"{} sockets, {} GPUs, {} NICs, {} DPUs ({} VFs each), {} NVMe\"\n\n[machine]\ncpu = \"{cpu}\"\niommu = {}\n",
        shape.functions(),
        shape.name,
        shape.sockets,
        shape.gpus,
        shape.nics,
        shape.dpus,
        shape.vfs,
        shape.nvme,
        shape.iommu
    );
    let (mut domain, mut bus) = (0u32, 0usize);
    let per_socket = usize::from(shape.root_buses_per_socket.max(1));
    for h in 0..shape.host_bridges() {
        let unit = shape.unit(h);
        if bus + unit.buses() > 256 {
            (domain, bus) = (domain + 1, 0);
        }
        let _ = writeln!(
            t,
            "[[host_bridge]]\nname = \"hb{h}\"\nid = \"{hb_id}\"\ndomain = {domain}\nbus = {bus:#04x}\nnuma_node = {}\n",
            h / per_socket
        );
        bus += unit.buses();
        write_unit(&mut t, shape, h, &unit);
    }
    t
}

/// Global index of the `k`-th device of a kind dealt to host bridge `h` of `n`.
fn global(h: usize, n: usize, k: usize) -> usize {
    k * n + h
}

/// The root port, GPU switch and everything below host bridge `h`.
fn write_unit(t: &mut String, shape: &ServerShape, h: usize, unit: &Unit) {
    let (rp_id, sw_id) = match shape.platform {
        Platform::Amd => ("1022:1483", "1000:c030"),
        Platform::Intel => ("8086:347a", "1000:c030"),
    };
    let n = shape.host_bridges();
    let acs = h.is_multiple_of(2) != (shape.flip_acs == Some(h as u16));
    let _ = writeln!(t, "[[root_port]]\nname = \"rp{h}\"\nhost_bridge = \"hb{h}\"\nid = \"{rp_id}\"\n");
    let _ = writeln!(
        t,
        "[[switch]]\nname = \"sw{h}\"\nparent = \"rp{h}\"\nports = {}\nacs = {acs}\nid = \"{sw_id}\"\ndownstream_id = \"{sw_id}\"\n",
        unit.ports()
    );
    let mut port = 0;
    let mut next = || {
        port += 1;
        format!("sw{h}.{}", port - 1)
    };
    for k in 0..unit.gpus {
        let g = global(h, n, k);
        let mem = if (g / 2).is_multiple_of(2) { "\np2pmem_mib = 256" } else { "" };
        let _ = writeln!(t, "[[endpoint]]\nname = \"gpu{g}\"\nkind = \"gpu\"\nparent = \"{}\"{mem}\n", next());
    }
    for (kind, id, count) in [("nic", "15b3:1021", unit.nics), ("dpu", "15b3:a2dc", unit.dpus)] {
        for k in 0..count {
            let _ = writeln!(
                t,
                "[[endpoint]]\nname = \"{kind}{}\"\nkind = \"nic\"\nid = \"{id}\"\nparent = \"{}\"\nvfs = {}\n",
                global(h, n, k),
                next(),
                shape.vfs
            );
        }
    }
    if unit.nvme > 0 {
        let _ = writeln!(
            t,
            "[[switch]]\nname = \"nvsw{h}\"\nparent = \"{}\"\nports = {}\nid = \"11f8:4052\"\ndownstream_id = \"11f8:4052\"\n",
            next(),
            unit.nvme
        );
        for k in 0..unit.nvme {
            let d = global(h, n, k);
            let cmb = if (d / 2).is_multiple_of(2) { "\ncmb_mib = 64" } else { "" };
            let _ = writeln!(
                t,
                "[[endpoint]]\nname = \"nvme{d}\"\nkind = \"nvme\"\nid = \"144d:a824\"\nparent = \"nvsw{h}.{k}\"{cmb}\n"
            );
        }
    }
}

/// The verdict engine's benchmark machine (`examples/bench_matrix.rs`): per domain, root
/// port → switch with `outer` ports → switches with `inner` ports (ACS on every other one)
/// → `functions` GPU functions each; every 40th function publishes 64 MiB, up to
/// `providers`. Intel, IOMMU on; half the domains' host bridges whitelisted.
pub fn matrix_grid(domains: u32, outer: u32, inner: u32, functions: u32, providers: u32) -> String {
    let mut t = String::from("[machine]\ncpu = \"intel\"\niommu = true\n");
    let mut published = 0;
    for d in 0..domains {
        let id = if d % 2 == 0 { "8086:2030" } else { "8086:29c0" };
        let _ = writeln!(t, "[[host_bridge]]\nname = \"hb{d}\"\ndomain = {d}\nbus = 0\nid = \"{id}\"");
        let _ = writeln!(t, "[[root_port]]\nname = \"rp{d}\"\nhost_bridge = \"hb{d}\"");
        let _ = writeln!(t, "[[switch]]\nname = \"o{d}\"\nparent = \"rp{d}\"\nports = {outer}");
        for o in 0..outer {
            let acs = if o % 2 == 0 { "\nacs = true" } else { "" };
            let _ = writeln!(t, "[[switch]]\nname = \"i{d}.{o}\"\nparent = \"o{d}.{o}\"\nports = {inner}{acs}");
            for i in 0..inner {
                for f in 0..functions {
                    let n = ((d * outer + o) * inner + i) * functions + f;
                    let mem = if n.is_multiple_of(40) && published < providers {
                        published += 1;
                        "\np2pmem_mib = 64"
                    } else {
                        ""
                    };
                    let _ = writeln!(
                        t,
                        "[[endpoint]]\nname = \"e{n}\"\nkind = \"gpu\"\nparent = \"i{d}.{o}.{i}\"\nfunction = {f}{mem}"
                    );
                }
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{check_consistent, spec, Topology};
    use std::path::Path;

    fn load(shape: &ServerShape) -> Topology {
        let text = server(shape);
        spec::parse(&text, Path::new("generated.toml"))
            .and_then(|s| s.to_topology())
            .unwrap_or_else(|e| panic!("{}: {e}", shape.name))
    }

    /// Every device's upstream chain ends on a host bridge's root bus, in a consistent
    /// topology (no duplicate address, no loop, every VF's PF present).
    fn assert_reachable(topo: &Topology) {
        check_consistent(topo).unwrap();
        let roots: Vec<(u32, u8)> = topo.host_bridges.iter().map(|hb| (hb.domain, hb.bus)).collect();
        let by_bdf: std::collections::HashMap<_, _> = topo.devices.iter().map(|d| (d.bdf, d)).collect();
        for d in &topo.devices {
            let mut top = d;
            while let Some(up) = top.upstream {
                top = by_bdf[&up];
            }
            assert!(roots.contains(&(top.bdf.domain, top.bdf.bus)), "{} does not reach a host bridge", d.bdf);
        }
    }

    #[test]
    fn presets_parse_with_the_counted_functions() {
        for size in PRESET_SIZES {
            let shape = ServerShape::preset(size);
            let topo = load(&shape);
            assert_eq!(topo.devices.len(), shape.functions(), "{}", shape.name);
            // Within one NIC's VF step of the nominal size.
            assert!(shape.functions().abs_diff(size) <= size / 20 + 10, "{}: {}", shape.name, shape.functions());
            assert_reachable(&topo);
        }
    }

    #[test]
    fn acceptance_machine_is_issue_24s() {
        let shape = ServerShape::acceptance();
        assert_eq!((shape.sockets, shape.gpus, shape.vfs), (4, 16, 255));
        let topo = load(&shape);
        assert_eq!(topo.devices.len(), 9_942);
        let vfs = topo.devices.iter().filter(|d| d.physfn.is_some()).count();
        assert_eq!(vfs, 38 * 255);
        let numa: std::collections::BTreeSet<_> = topo.devices.iter().filter_map(|d| d.numa_node).collect();
        assert_eq!(numa.len(), 4, "one NUMA node per socket");
        assert!(topo.devices.iter().any(|d| d.p2pmem.is_some()));
    }

    #[test]
    fn odd_sizes_and_both_platforms_parse() {
        for size in [1, 40, 250, 777, 1_500, 4_200, 20_000] {
            let shape = ServerShape::near(size);
            let topo = load(&shape);
            assert_eq!(topo.devices.len(), shape.functions(), "{size}");
            assert_reachable(&topo);
        }
    }

    #[test]
    fn generation_is_deterministic_and_flip_changes_one_switch() {
        let shape = ServerShape::preset(1_000);
        assert_eq!(server(&shape), server(&shape));
        let flipped = server(&ServerShape { flip_acs: Some(0), ..shape.clone() });
        let plain = server(&shape);
        let diff: Vec<_> = plain.lines().zip(flipped.lines()).filter(|(a, b)| a != b).collect();
        assert_eq!(diff, [("acs = true", "acs = false")]);
    }

    #[test]
    fn matrix_grid_parses() {
        let topo = spec::parse(&matrix_grid(2, 2, 2, 2, 4), Path::new("grid.toml")).unwrap().to_topology().unwrap();
        // Per domain: host bridge, root port, outer switch (1 + 2 ports), 2 × (1 + 2 ports), 8 functions.
        assert_eq!(topo.devices.len(), 2 * (1 + 1 + 3 + 6 + 8));
        assert_eq!(topo.devices.iter().filter(|d| d.p2pmem.is_some()).count(), 1);
    }
}
