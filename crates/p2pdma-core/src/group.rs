//! Devices the kernel cannot tell apart, so whole-machine answers cost per group, not per
//! function.
//!
//! The kernel's walk (`calc_map_type_and_dist`) sees a function only through its upstream
//! bridge (a VF's is its PF's, `pci_upstream_bridge`), its own ACS redirect bits, its host
//! bridge, and, for the path class, its NUMA node and port type. Two VFs of one PF that agree
//! on all of these get the same verdict against every third device, and any two distinct
//! members of such a group get the same verdict between themselves. So a machine with eight
//! NICs of 255 VFs is 16 groups there, not 2,040 rows. Only VFs are grouped: physical
//! functions stay rows of their own, as `nvidia-smi topo -m` and an operator name them.
//!
//! [`GroupedMatrix::cell`] answers any device pair from the groups; a test compares it with
//! the full pairwise engine on every example and generated machine.

use std::collections::HashMap;

use serde::Serialize;

use crate::analysis::MatrixFilter;
use crate::bdf::Bdf;
use crate::pathclass::PathClass;
use crate::verdict::{Engine, PairResult};

/// Every device's group. Group 0.. in device order of their first member.
#[derive(Debug, Clone)]
pub struct Grouping {
    of_device: Vec<u32>,
    members: Vec<Vec<usize>>,
}

/// What the walk and the path class read of a VF, plus the PF that names the group.
#[derive(Hash, PartialEq, Eq)]
struct VfKey {
    physfn: Bdf,
    upstream: u32,
    redirect: Option<u16>,
    host_bridge: u32,
    numa_node: Option<i32>,
    provides: bool,
    published: Option<bool>,
    dma_capable: bool,
    /// The class code: a VF's is its own (counted by class in `metrics`), in practice its PF's.
    class: u32,
    /// The bound driver: the stacks that map a pair follow it (vfio-pci against mlx5_core).
    driver: Option<String>,
}

impl Grouping {
    /// Groups an engine's devices: VFs of one PF with the same walk-visible facts together,
    /// every other function alone.
    pub fn new(engine: &Engine<'_>) -> Grouping {
        let topo = engine.topo;
        let mut by_key: HashMap<VfKey, u32> = HashMap::new();
        let mut of_device = Vec::with_capacity(topo.devices.len());
        let mut members: Vec<Vec<usize>> = Vec::new();
        for (i, d) in topo.devices.iter().enumerate() {
            let group = match d.physfn {
                Some(physfn) if !d.is_pci_bridge() => {
                    let key = VfKey {
                        physfn,
                        upstream: engine.upstream_of(i),
                        redirect: d.acs.redirect_bits(),
                        host_bridge: engine.host_bridge_of(i),
                        numa_node: d.numa_node,
                        provides: d.has_p2p_memory_side(),
                        published: d.p2pmem.as_ref().map(|p| p.published),
                        dma_capable: d.is_dma_capable(),
                        class: d.class,
                        driver: d.driver.clone(),
                    };
                    let next = members.len() as u32;
                    *by_key.entry(key).or_insert(next)
                }
                _ => members.len() as u32,
            };
            if group as usize == members.len() {
                members.push(Vec::new());
            }
            members[group as usize].push(i);
            of_device.push(group);
        }
        Grouping { of_device, members }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn group_of(&self, device: usize) -> usize {
        self.of_device[device] as usize
    }

    /// A group's devices, the representative first (the lowest address).
    pub fn members(&self, group: usize) -> &[usize] {
        &self.members[group]
    }
}

/// The pair that answers for two groups (their members, representative first): the
/// representatives; for a group against itself two distinct members (a group of one: the
/// member with itself), since a member with itself is a cell of its own (`self_cell`).
pub fn representative_pair<T: Copy>(provider: &[T], client: &[T], same_group: bool) -> (T, T) {
    let other = if same_group { client.get(1) } else { None };
    (provider[0], *other.unwrap_or(&client[0]))
}

/// One cell: both layers of the pair and whether unreadable ACS or an unknown CPU could
/// change the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cell {
    #[serde(flatten)]
    pub verdict: PairResult,
    pub path_class: PathClass,
    pub certain: bool,
}

impl Cell {
    fn of(engine: &Engine<'_>, provider: usize, client: usize) -> Cell {
        Cell {
            verdict: engine.pair(provider, client),
            path_class: engine.path_class(provider, client),
            certain: provider == client || engine.certain(provider, client),
        }
    }
}

/// A group as rows and columns show it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    /// The representative's address; the group's name in JSON.
    pub device: Bdf,
    /// Every member's address (the representative first), only the ones the filter keeps.
    pub members: Vec<Bdf>,
    /// For a group of VFs, their PF.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physfn: Option<Bdf>,
    /// The verdict of a member with itself, where the group is both a row and a column and
    /// has more than one member (the diagonal cell holds two distinct members).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_cell: Option<Cell>,
}

/// The matrix over groups: provider groups × client groups, exact for every member pair.
#[derive(Debug, Clone, Serialize)]
pub struct GroupedMatrix {
    pub groups: Vec<GroupRow>,
    /// Indices into `groups`.
    pub providers: Vec<usize>,
    pub clients: Vec<usize>,
    /// `cells[p][c]`: a representative pair; on the diagonal of a group of several members,
    /// two distinct members.
    pub cells: Vec<Vec<Cell>>,
    #[serde(skip)]
    index: HashMap<Bdf, usize>,
    #[serde(skip)]
    provider_pos: Vec<Option<usize>>,
    #[serde(skip)]
    client_pos: Vec<Option<usize>>,
}

impl GroupedMatrix {
    /// Rows are groups with memory to offer, columns DMA-capable groups, as in
    /// [`crate::analysis::matrix`]; the filter keeps members one by one.
    pub fn new(engine: &Engine<'_>, grouping: &Grouping, filter: &MatrixFilter) -> GroupedMatrix {
        let topo = engine.topo;
        let mut groups = Vec::new();
        let (mut providers, mut clients) = (Vec::new(), Vec::new());
        let mut kept_members: Vec<Vec<usize>> = Vec::new();
        for g in 0..grouping.len() {
            let kept: Vec<usize> = grouping.members(g).iter().copied().filter(|&i| filter.keeps(engine, i)).collect();
            let Some(&rep) = kept.first() else { continue };
            let d = &topo.devices[rep];
            let at = groups.len();
            if d.has_p2p_memory_side() {
                providers.push(at);
            }
            if d.is_dma_capable() {
                clients.push(at);
            }
            let both = d.has_p2p_memory_side() && d.is_dma_capable();
            groups.push(GroupRow {
                device: d.bdf,
                members: kept.iter().map(|&i| topo.devices[i].bdf).collect(),
                physfn: d.physfn,
                self_cell: (both && kept.len() > 1).then(|| Cell::of(engine, rep, rep)),
            });
            kept_members.push(kept);
        }
        let pair = |p: usize, c: usize| {
            let (provider, client) = representative_pair(&kept_members[p], &kept_members[c], p == c);
            Cell::of(engine, provider, client)
        };
        let cells = providers.iter().map(|&p| clients.iter().map(|&c| pair(p, c)).collect()).collect();
        let mut m = GroupedMatrix {
            groups,
            providers,
            clients,
            cells,
            index: HashMap::new(),
            provider_pos: Vec::new(),
            client_pos: Vec::new(),
        };
        m.build_index();
        m
    }

    fn build_index(&mut self) {
        for (g, row) in self.groups.iter().enumerate() {
            for &b in &row.members {
                self.index.insert(b, g);
            }
        }
        self.provider_pos = vec![None; self.groups.len()];
        self.client_pos = vec![None; self.groups.len()];
        for (i, &g) in self.providers.iter().enumerate() {
            self.provider_pos[g] = Some(i);
        }
        for (i, &g) in self.clients.iter().enumerate() {
            self.client_pos[g] = Some(i);
        }
    }

    /// The group a device is in, if the matrix keeps it.
    pub fn group_of(&self, device: Bdf) -> Option<usize> {
        self.index.get(&device).copied()
    }

    /// The cell of any kept provider and client, answered from the groups.
    pub fn cell(&self, provider: Bdf, client: Bdf) -> Option<Cell> {
        let (gp, gc) = (self.group_of(provider)?, self.group_of(client)?);
        let (p, c) = (self.provider_pos[gp]?, self.client_pos[gc]?);
        if provider == client {
            if let Some(own) = self.groups[gp].self_cell {
                return Some(own);
            }
        }
        Some(self.cells[p][c])
    }

    /// The device pair that answers for cell `[p][c]`.
    pub fn representatives(&self, p: usize, c: usize) -> (Bdf, Bdf) {
        let (gp, gc) = (self.providers[p], self.clients[c]);
        representative_pair(&self.groups[gp].members, &self.groups[gc].members, gp == gc)
    }

    /// Every member pair a cell stands for, without building them.
    pub fn pairs_in(&self, p: usize, c: usize) -> u64 {
        let (a, b) =
            (self.groups[self.providers[p]].members.len() as u64, self.groups[self.clients[c]].members.len() as u64);
        a * b
    }
}

/// One entry of the grouped pair list (`topo --json`'s `pairs`): a cell, the groups it
/// stands for and how many member pairs that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GroupPair {
    pub provider: Bdf,
    pub client: Bdf,
    #[serde(flatten)]
    pub cell: Cell,
    /// Indices into [`GroupedMatrix::groups`].
    pub provider_group: usize,
    pub client_group: usize,
    /// The member pairs this entry answers for.
    pub pairs: u64,
}

/// One member pair (`topo --pairs all`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemberPair {
    pub provider: Bdf,
    pub client: Bdf,
    #[serde(flatten)]
    pub cell: Cell,
}

impl GroupedMatrix {
    /// Every cell as a [`GroupPair`]; a group of several members against itself is two
    /// entries: distinct members (n·(n−1) pairs) and a member with itself (n pairs), so the
    /// counts add up to every member pair.
    pub fn grouped_pairs(&self) -> impl Iterator<Item = GroupPair> + '_ {
        (0..self.providers.len()).flat_map(move |p| (0..self.clients.len()).flat_map(move |c| self.entries(p, c)))
    }

    fn entries(&self, p: usize, c: usize) -> Vec<GroupPair> {
        let (gp, gc) = (self.providers[p], self.clients[c]);
        let (rp, rc) = (&self.groups[gp], &self.groups[gc]);
        let entry = |client: Bdf, cell: Cell, pairs: u64| GroupPair {
            provider: rp.device,
            client,
            cell,
            provider_group: gp,
            client_group: gc,
            pairs,
        };
        match rp.self_cell.filter(|_| gp == gc) {
            Some(own) => {
                let n = rp.members.len() as u64;
                vec![entry(rc.members[1], self.cells[p][c], n * (n - 1)), entry(rp.device, own, n)]
            }
            None => vec![entry(rc.device, self.cells[p][c], self.pairs_in(p, c))],
        }
    }

    /// Every member pair, answered from the groups without calling the engine again.
    pub fn member_pairs(&self) -> impl Iterator<Item = MemberPair> + '_ {
        (0..self.providers.len()).flat_map(move |p| {
            (0..self.clients.len()).flat_map(move |c| {
                let (gp, gc) = (&self.groups[self.providers[p]], &self.groups[self.clients[c]]);
                let cell = self.cells[p][c];
                gp.members.iter().flat_map(move |&provider| {
                    gc.members.iter().map(move |&client| {
                        let own = if provider == client { gp.self_cell } else { None };
                        MemberPair { provider, client, cell: own.unwrap_or(cell) }
                    })
                })
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;
    use std::path::Path;

    /// Every pair of every device, grouped against the full engine.
    pub(crate) fn assert_exact(text: &str) -> (usize, usize) {
        let (_, topo) = spec::from_text(text, Path::new("t.toml")).unwrap();
        let engine = Engine::new(&topo).unwrap();
        let grouping = Grouping::new(&engine);
        let m = GroupedMatrix::new(&engine, &grouping, &MatrixFilter::default());
        let n = topo.devices.len();
        for p in (0..n).filter(|&p| topo.devices[p].has_p2p_memory_side()) {
            for c in (0..n).filter(|&c| topo.devices[c].is_dma_capable()) {
                let (bp, bc) = (topo.devices[p].bdf, topo.devices[c].bdf);
                assert_eq!(m.cell(bp, bc), Some(Cell::of(&engine, p, c)), "{bp} -> {bc}");
            }
        }
        let members: Vec<MemberPair> = m.member_pairs().collect();
        let providers = (0..n).filter(|&p| topo.devices[p].has_p2p_memory_side()).count();
        let clients = (0..n).filter(|&c| topo.devices[c].is_dma_capable()).count();
        assert_eq!(members.len(), providers * clients, "every member pair once");
        for pair in &members {
            let (p, c) = (engine.index_of(pair.provider).unwrap(), engine.index_of(pair.client).unwrap());
            assert_eq!(pair.cell, Cell::of(&engine, p, c), "{} -> {}", pair.provider, pair.client);
        }
        let counted: u64 = m.grouped_pairs().map(|g| g.pairs).sum();
        assert_eq!(counted, members.len() as u64, "grouped pairs stand for every member pair");
        (n, grouping.len())
    }

    #[test]
    fn grouped_cells_equal_the_full_engine_on_every_example() {
        for entry in std::fs::read_dir("../../examples/topologies").unwrap() {
            let path = entry.unwrap().path();
            assert_exact(&std::fs::read_to_string(&path).unwrap());
        }
    }

    #[test]
    fn vfs_of_one_pf_are_one_group_and_exact() {
        let text = r#"
[machine]
cpu = "intel"
[[root_port]]
name = "rp0"
[[switch]]
name = "sw0"
parent = "rp0"
acs = 0x1f
[[endpoint]]
name = "nic0"
kind = "nic"
parent = "sw0.0"
vfs = 8
[[endpoint]]
name = "nvme0"
kind = "nvme"
parent = "sw0.1"
cmb_mib = 16
"#;
        let (devices, groups) = assert_exact(text);
        // Host bridge root, root port, switch up + 2 down, nic0 and 8 VFs, nvme0: the VFs fold.
        assert_eq!(devices - groups, 7, "8 VFs are one group");
    }
}
