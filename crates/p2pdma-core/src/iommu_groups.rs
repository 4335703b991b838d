//! IOMMU groups as the kernel forms them for PCI devices, predicted over a [`Topology`].
//!
//! The rules, each from the kernel (v6.x–7.x, unchanged in substance since v3.x):
//! - `pci_device_group()` (drivers/iommu/iommu.c): devices are probed in the order they were
//!   added; a device joins the group of its DMA alias (`pci_for_each_dma_alias`), else of
//!   the first bridge above it whose path to the root is not isolated by ACS
//!   (`pci_acs_path_enabled(bus->self, NULL, REQ_ACS_FLAGS)`), else of a sibling function
//!   of a multifunction device that is not isolated (`get_pci_function_alias_group`), else
//!   it gets a new group, numbered by the lowest free id (`iommu_group_alloc`, an IDA).
//! - `REQ_ACS_FLAGS` = SV | RR | CR | UF.
//! - `pci_acs_enabled()` (drivers/pci/pci.c): conventional PCI never isolates; PCIe-to-PCI
//!   bridges and event collectors never do; root and downstream ports isolate when their ACS
//!   control has the flags; endpoints and upstream ports isolate unless they are part of a
//!   multifunction device without the flags. `pci_acs_flags_enabled()` counts flags the ACS
//!   capability lacks as hard-wired on (`acs_flags &= cap | EC`).
//! - `pci_for_each_dma_alias()` (drivers/pci/search.c): a PCIe-to-PCI bridge or a
//!   conventional bridge takes over the requester ID of everything below it.
//!
//! Not modelled, and said where they could apply: device-specific ACS quirks
//! (`pci_dev_specific_acs_enabled`, drivers/pci/quirks.c), DMA alias quirks
//! (`pci_add_dma_alias` users), ACS that could not be read.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::bdf::Bdf;
use crate::config::{acs_bits, Acs, PortType};
use crate::model::{Doubt, GroupInfo, GroupSource, Topology};

/// `REQ_ACS_FLAGS` in drivers/iommu/iommu.c: what a bridge must enforce to isolate.
pub const REQ_ACS_FLAGS: u16 = acs_bits::SV | acs_bits::RR | acs_bits::CR | acs_bits::UF;

/// Predicted groups: one id per device (same order as `Topology::devices`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    pub groups: Vec<u32>,
    pub uncertain: Vec<Doubt>,
}

/// Entries of `pci_dev_acs_enabled[]` (drivers/pci/quirks.c) by vendor, and the device IDs
/// where the table names them (None: any device of the vendor). The model does not run
/// them; a device that one may cover makes its group uncertain.
const ACS_QUIRKS: &[(u16, Option<&[u16]>, &str)] = &[
    (0x1002, Some(&[0x4385, 0x439c, 0x4383, 0x439d, 0x4384, 0x4399]), "pci_quirk_amd_sb_acs"),
    (0x1022, Some(&[0x780f, 0x7809]), "pci_quirk_amd_sb_acs"),
    (0x1924, Some(&[0x0903, 0x0923, 0x0a03]), "pci_quirk_mf_endpoint_acs"),
    (0x19a2, Some(&[0x0710]), "pci_quirk_mf_endpoint_acs"),
    (0x10df, Some(&[0x0720]), "pci_quirk_mf_endpoint_acs"),
    (0x17cb, None, "pci_quirk_qcom_rp_acs"),
    (0x1dbf, None, "pci_quirk_hxt_rp_acs"),
    (0x177d, None, "pci_quirk_cavium_acs"),
    (0x1def, None, "pci_quirk_xgene_acs"),
    (0x1d17, None, "pci_quirk_zhaoxin_pcie_ports_acs"),
    (0x1957, None, "pci_quirk_nxp_rp_acs"),
    (0x8088, None, "pci_quirk_wangxun_nic_acs"),
    (0x1c36, None, "pci_quirk_al_acs"),
    (0x0014, None, "pci_quirk_loongson_acs"),
    (0x19e5, None, "pci_quirk_hisi_acs"),
    (0x14e4, None, "pci_quirk_brcm_acs"),
    (0x1425, None, "pci_quirk_mf_endpoint_acs (Chelsio)"),
];

/// Vendors with DMA alias quirks (`quirk_dma_func0_alias`, `quirk_dma_func1_alias`,
/// `quirk_use_pcie_bridge_dma_alias`, ... in drivers/pci/quirks.c).
const DMA_ALIAS_QUIRK_VENDORS: &[u16] = &[0x1180, 0x1b4b, 0x197b, 0x9005, 0x1b21, 0x10e3, 0x1283, 0x111d];

/// Fills `iommu_group` where the kernel did not: a topology that has groups (read live, or a
/// snapshot of it) keeps them; one with the IOMMU on and no groups (a topology file, a
/// snapshot taken elsewhere) gets the predicted ones; with the IOMMU off there are none.
pub fn fill(topo: &mut Topology) {
    if topo.devices.iter().any(|d| d.iommu_group.is_some()) {
        if topo.iommu_groups.is_none() {
            topo.iommu_groups = Some(GroupInfo {
                source: GroupSource::Kernel,
                uncertain: Vec::new(),
                kernel_params: None,
                notes: Vec::new(),
            });
        }
        return;
    }
    if topo.machine.iommu == Some(true) {
        repredict(topo);
    } else {
        topo.iommu_groups = None;
    }
}

/// Replaces every device's group with the predicted one (the IOMMU assumed on).
pub fn repredict(topo: &mut Topology) {
    let p = predict(topo);
    for (d, g) in topo.devices.iter_mut().zip(&p.groups) {
        d.iommu_group = Some(*g);
    }
    let (kernel_params, notes) = match topo.iommu_groups.take() {
        Some(old) => (old.kernel_params, old.notes),
        None => (None, Vec::new()),
    };
    topo.iommu_groups =
        Some(GroupInfo { source: GroupSource::Predicted, uncertain: p.uncertain, kernel_params, notes });
}

/// Group id → its devices, for the devices that have a group.
pub fn members(topo: &Topology) -> BTreeMap<u32, Vec<Bdf>> {
    let mut m: BTreeMap<u32, Vec<Bdf>> = BTreeMap::new();
    for d in &topo.devices {
        if let Some(g) = d.iommu_group {
            m.entry(g).or_default().push(d.bdf);
        }
    }
    m
}

/// The kernel's groups for `topo`, as if its IOMMU were on.
pub fn predict(topo: &Topology) -> Prediction {
    let mut m = Model::new(topo);
    let order = probe_order(topo, &m.index);
    let mut groups: Vec<Option<u32>> = vec![None; topo.devices.len()];
    let mut next = 0u32;
    for i in order {
        let g = m.device_group(i, &groups).unwrap_or_else(|| {
            next += 1;
            next - 1
        });
        groups[i] = Some(g);
    }
    Prediction {
        groups: groups.into_iter().map(|g| g.expect("every device is probed once")).collect(),
        uncertain: m.doubts.into_iter().collect(),
    }
}

struct Model<'t> {
    topo: &'t Topology,
    index: HashMap<Bdf, usize>,
    multifunction: Vec<bool>,
    doubts: BTreeSet<Doubt>,
}

impl<'t> Model<'t> {
    fn new(topo: &'t Topology) -> Self {
        let index: HashMap<Bdf, usize> = topo.devices.iter().enumerate().map(|(i, d)| (d.bdf, i)).collect();
        let multifunction = (0..topo.devices.len()).map(|i| multifunction(topo, i)).collect();
        Model { topo, index, multifunction, doubts: BTreeSet::new() }
    }

    /// `bus->self`: the bridge above; a VF on its PF's bus has the PF's.
    fn upstream(&self, i: usize) -> Option<usize> {
        let d = &self.topo.devices[i];
        let up = match (d.upstream, d.physfn) {
            (Some(u), _) => Some(u),
            (None, Some(pf)) => self.index.get(&pf).and_then(|&p| self.topo.devices[p].upstream),
            (None, None) => None,
        };
        up.and_then(|b| self.index.get(&b).copied())
    }

    fn doubt(&mut self, i: usize, reason: String) {
        self.doubts.insert(Doubt { device: self.topo.devices[i].bdf, reason });
    }

    /// `pci_device_group()`: the group this device joins, or None for a new one.
    fn device_group(&mut self, i: usize, groups: &[Option<u32>]) -> Option<u32> {
        let d = &self.topo.devices[i];
        if DMA_ALIAS_QUIRK_VENDORS.contains(&d.vendor) {
            self.doubt(
                i,
                format!(
                    "{:04x}:{:04x} may have a DMA alias quirk (drivers/pci/quirks.c) that the model does not apply",
                    d.vendor, d.device
                ),
            );
        }
        // pci_for_each_dma_alias: the nearest aliasing bridge above already has a group.
        let mut pdev = i;
        let mut cur = i;
        while let Some(u) = self.upstream(cur) {
            if aliases_below(self.topo.devices[u].port_type, self.topo.devices[u].is_pci_bridge()) {
                if let Some(g) = groups[u] {
                    return Some(g);
                }
                pdev = u;
            }
            cur = u;
        }
        // Upstream until ACS isolates the path to the root.
        let mut cur = pdev;
        while let Some(u) = self.upstream(cur) {
            if self.acs_path_enabled(u) {
                break;
            }
            pdev = u;
            if let Some(g) = groups[u] {
                return Some(g);
            }
            cur = u;
        }
        // get_pci_function_alias_group: non-isolated functions of one multifunction device.
        if self.multifunction[pdev] && !self.acs_enabled(pdev) {
            let me = self.topo.devices[pdev].bdf;
            let topo = self.topo;
            for (j, group) in groups.iter().enumerate() {
                let o = topo.devices[j].bdf;
                if j == pdev || (o.domain, o.bus, o.dev) != (me.domain, me.bus, me.dev) {
                    continue;
                }
                if !self.acs_enabled(j) {
                    if let Some(g) = group {
                        return Some(*g);
                    }
                }
            }
        }
        None
    }

    /// `pci_acs_path_enabled(start, NULL, REQ_ACS_FLAGS)`: every device from `start` up to
    /// the root bus isolates.
    fn acs_path_enabled(&mut self, start: usize) -> bool {
        let mut cur = start;
        loop {
            if !self.acs_enabled(cur) {
                return false;
            }
            match self.upstream(cur) {
                Some(u) => cur = u,
                None => return true,
            }
        }
    }

    /// `pci_acs_enabled(pdev, REQ_ACS_FLAGS)`.
    fn acs_enabled(&mut self, i: usize) -> bool {
        let d = &self.topo.devices[i];
        if let Some(quirk) = acs_quirk(d.vendor, d.device, d.port_type) {
            self.doubt(
                i,
                format!(
                    "{:04x}:{:04x} may have an ACS quirk ({quirk}, drivers/pci/quirks.c) that the model does not apply",
                    d.vendor, d.device
                ),
            );
        }
        match d.port_type {
            None => false, // conventional PCI: a shared bus, never isolated
            Some(PortType::PcieToPciBridge | PortType::PciToPcieBridge | PortType::RootComplexEventCollector) => false,
            Some(PortType::RootPort | PortType::SwitchDownstream) => self.acs_flags_enabled(i),
            Some(
                PortType::Endpoint
                | PortType::LegacyEndpoint
                | PortType::SwitchUpstream
                | PortType::RootComplexIntegratedEndpoint,
            ) => !self.multifunction[i] || self.acs_flags_enabled(i),
            Some(PortType::Other(_)) => true,
        }
    }

    /// `pci_acs_flags_enabled()`: flags missing from the capability count as hard-wired.
    fn acs_flags_enabled(&mut self, i: usize) -> bool {
        match self.topo.devices[i].acs {
            Acs::Absent => false,
            Acs::Present { cap, ctrl, .. } => {
                let flags = REQ_ACS_FLAGS & (cap | acs_bits::EC);
                ctrl & flags == flags
            }
            Acs::Unknown => {
                self.doubt(
                    i,
                    "its ACS could not be read (config space past 64 bytes needs root): assumed to isolate".into(),
                );
                true
            }
        }
    }
}

/// `pci_for_each_dma_alias`: which bridges take over the requester ID of devices below.
fn aliases_below(port_type: Option<PortType>, is_bridge: bool) -> bool {
    match port_type {
        Some(PortType::PcieToPciBridge | PortType::PciToPcieBridge) => true,
        Some(_) => false,
        None => is_bridge, // a conventional PCI-to-PCI bridge
    }
}

fn acs_quirk(vendor: u16, device: u16, port_type: Option<PortType>) -> Option<&'static str> {
    // Intel's entry is PCI_ANY_ID, but its quirks (pci_quirk_intel_pch_acs,
    // pci_quirk_intel_spt_pch_acs) only answer for PCH root ports; its multifunction NICs
    // (pci_quirk_mf_endpoint_acs) are listed by device ID.
    const INTEL_MF: &[u16] = &[
        0x10c6, 0x10db, 0x10dd, 0x10e1, 0x10f1, 0x10f7, 0x10f8, 0x10f9, 0x10fa, 0x10fb, 0x10fc, 0x1507, 0x1514, 0x151c,
        0x1529, 0x152a, 0x154d, 0x154f, 0x1551, 0x1558, 0x1509, 0x150e, 0x150f, 0x1510, 0x1511, 0x1516, 0x1527, 0x10c9,
        0x10e6, 0x10e7, 0x10e8, 0x150a, 0x150d, 0x1518, 0x1526, 0x10a7, 0x10a9, 0x10d6, 0x1521, 0x1522, 0x1523, 0x1524,
        0x105e, 0x105f, 0x1060, 0x10d9, 0x15b7, 0x15b8,
    ];
    if vendor == 0x8086 {
        return match port_type {
            Some(PortType::RootPort) => Some("pci_quirk_intel_pch_acs"),
            _ if INTEL_MF.contains(&device) => Some("pci_quirk_mf_endpoint_acs"),
            _ => None,
        };
    }
    ACS_QUIRKS
        .iter()
        .find(|(v, ids, _)| *v == vendor && ids.is_none_or(|ids| ids.contains(&device)))
        .map(|(_, _, name)| *name)
}

/// `pdev->multifunction`: the header's bit 7 (`pci_setup_device`), and always for functions
/// past 0 (`pci_scan_slot`); never for VFs. Without raw config, function 0 counts when a
/// sibling function exists (the kernel scans past function 0 only when the bit is set).
fn multifunction(topo: &Topology, i: usize) -> bool {
    let d = &topo.devices[i];
    if d.physfn.is_some() {
        return false;
    }
    if d.bdf.func > 0 {
        return true;
    }
    if let Some(header) =
        d.config_hex.as_deref().and_then(|h| h.get(28..30)).and_then(|b| u8::from_str_radix(b, 16).ok())
    {
        return header & 0x80 != 0;
    }
    topo.devices.iter().any(|o| {
        o.physfn.is_none()
            && o.bdf.func > 0
            && (o.bdf.domain, o.bdf.bus, o.bdf.dev) == (d.bdf.domain, d.bdf.bus, d.bdf.dev)
    })
}

/// The order the kernel adds PCI devices (and so probes them for groups): root bus by root
/// bus, each bus's functions in devfn order, then the buses below each bridge, depth first
/// (`pci_scan_child_bus_extend`); VFs come later, when their PF's driver enables SR-IOV.
fn probe_order(topo: &Topology, index: &HashMap<Bdf, usize>) -> Vec<usize> {
    let mut children: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
    let mut vfs = Vec::new();
    for (i, d) in topo.devices.iter().enumerate() {
        if d.physfn.is_some() {
            vfs.push(i);
            continue;
        }
        let parent = d.upstream.and_then(|u| index.get(&u).copied());
        children.entry(parent).or_default().push(i);
    }
    for list in children.values_mut() {
        list.sort_by_key(|&i| topo.devices[i].bdf);
    }
    fn visit(bus: &[usize], children: &HashMap<Option<usize>, Vec<usize>>, out: &mut Vec<usize>) {
        out.extend_from_slice(bus);
        for &b in bus {
            if let Some(kids) = children.get(&Some(b)) {
                visit(kids, children, out);
            }
        }
    }
    let mut out = Vec::with_capacity(topo.devices.len());
    let roots = children.get(&None).cloned().unwrap_or_default();
    let mut start = 0;
    while start < roots.len() {
        let key = |i: usize| (topo.devices[i].bdf.domain, topo.devices[i].bdf.bus);
        let end = roots[start..].iter().position(|&i| key(i) != key(roots[start])).map_or(roots.len(), |n| start + n);
        visit(&roots[start..end], &children, &mut out);
        start = end;
    }
    vfs.sort_by_key(|&i| topo.devices[i].bdf);
    out.extend(vfs);
    // Anything no bus walk reached (a device hung below a VF in a hand-edited snapshot).
    let mut seen = vec![false; topo.devices.len()];
    for &i in &out {
        seen[i] = true;
    }
    out.extend((0..topo.devices.len()).filter(|&i| !seen[i]));
    out
}

/// Groups that become one when `before` turns into `after` (same devices, other groups).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupMerge {
    /// The groups (numbered as before) that would be one.
    pub groups: Vec<u32>,
    /// Every device of the merged group.
    pub devices: Vec<Bdf>,
}

/// The groups of `before` that share one group in `after`.
pub fn merges(before: &Topology, after: &Topology) -> Vec<GroupMerge> {
    let old: HashMap<Bdf, u32> = before.devices.iter().filter_map(|d| d.iommu_group.map(|g| (d.bdf, g))).collect();
    let mut out = Vec::new();
    for devices in members(after).into_values() {
        let groups: BTreeSet<u32> = devices.iter().filter_map(|b| old.get(b).copied()).collect();
        if groups.len() > 1 {
            out.push(GroupMerge { groups: groups.into_iter().collect(), devices });
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn spec(text: &str) -> Topology {
        crate::spec::parse(text, std::path::Path::new("t.toml")).unwrap().to_topology().unwrap()
    }

    /// Group id → names (or BDFs) of its members, in probe order of groups.
    fn named(topo: &Topology) -> Vec<Vec<String>> {
        members(topo)
            .into_values()
            .map(|m| {
                m.iter()
                    .map(|b| {
                        let d = topo.devices.iter().find(|d| d.bdf == *b).unwrap();
                        d.name.clone().unwrap_or_else(|| b.to_string())
                    })
                    .collect()
            })
            .collect()
    }

    pub(crate) const MF_AND_SWITCH: &str = r#"
        [machine]
        iommu = true
        [[root_port]]
        name = "rp0"
        slot = 0x10
        [[root_port]]
        name = "rp1"
        slot = 0x11
        [[endpoint]]
        name = "a"
        kind = "nvme"
        parent = "rp0"
        function = 0
        [[endpoint]]
        name = "b"
        kind = "nvme"
        parent = "rp0"
        function = 1
        [[switch]]
        name = "sw"
        parent = "rp1"
        [[endpoint]]
        name = "c"
        kind = "nvme"
        parent = "sw.0"
        [[endpoint]]
        name = "d"
        kind = "nvme"
        parent = "sw.1"
    "#;

    #[test]
    fn pci_device_group_as_the_lab_kernel_formed_them() {
        // The lab (sid, intel_iommu=on) gave these groups, numbered in probe order.
        let t = spec(MF_AND_SWITCH);
        assert_eq!(
            named(&t),
            vec![
                vec!["0000:00:00.0".to_string()],
                vec!["rp0".into()],
                vec!["rp1".into()],
                vec!["a".into(), "b".into()],
                vec!["sw".into()],
                vec!["sw.0".into(), "c".into()],
                vec!["sw.1".into(), "d".into()],
            ]
        );
        assert_eq!(t.iommu_groups.as_ref().unwrap().source, GroupSource::Predicted);
        assert!(t.iommu_groups.as_ref().unwrap().uncertain.is_empty());
    }

    #[test]
    fn get_pci_function_alias_group_joins_functions_without_acs() {
        let t = spec(MF_AND_SWITCH);
        let g = |n: &str| t.devices.iter().find(|d| d.name.as_deref() == Some(n)).unwrap().iommu_group;
        assert_eq!(g("a"), g("b"));
        assert_ne!(g("a"), g("rp0"));
    }

    #[test]
    fn pci_acs_path_enabled_fails_below_a_port_without_acs() {
        // The switch's downstream ports have no ACS: each shares a group with its device;
        // the upstream port (single function) is isolated by the root port above it.
        let t = spec(MF_AND_SWITCH);
        let g = |n: &str| t.devices.iter().find(|d| d.name.as_deref() == Some(n)).unwrap().iommu_group;
        assert_eq!(g("sw.0"), g("c"));
        assert_eq!(g("sw.1"), g("d"));
        assert_ne!(g("sw.0"), g("sw.1"));
        assert_ne!(g("sw"), g("sw.0"));
    }

    #[test]
    fn disable_acs_redir_puts_the_root_port_in_the_group_below_it() {
        // pci_acs_flags_enabled on the root port fails once RR/CR are off (ctrl 0x0000).
        let t = spec(&MF_AND_SWITCH.replace(
            "iommu = true",
            "iommu = true\nkernel_params = \"pci=disable_acs_redir=0000:00:10.0;0000:00:11.0\"",
        ));
        assert_eq!(
            named(&t),
            vec![
                vec!["0000:00:00.0".to_string()],
                vec!["rp0".into(), "a".into(), "b".into()],
                vec!["rp1".into(), "sw".into(), "sw.0".into(), "sw.1".into(), "c".into(), "d".into()],
            ]
        );
    }

    #[test]
    fn pci_acs_flags_enabled_counts_missing_capability_bits_as_hard_wired() {
        // A root port whose capability has only SV and RR, both on: CR and UF are not
        // controllable, so the kernel treats them as enforced and the port isolates.
        let t = spec(&MF_AND_SWITCH.replace("name = \"rp1\"\n", "name = \"rp1\"\nacs = 0x05\nacs_ctrl = 0x05\n"));
        let g = |n: &str| t.devices.iter().find(|d| d.name.as_deref() == Some(n)).unwrap().iommu_group;
        assert_ne!(g("rp1"), g("sw"));
        // Without the IOMMU default and with RR off: not isolated.
        let t = spec(
            &MF_AND_SWITCH
                .replace("name = \"rp1\"\n", "name = \"rp1\"\nacs = 0x05\nacs_ctrl = 0x01\n")
                .replace("iommu = true", "iommu = true\nkernel_params = \"pci=config_acs=0xx@00:11.0\""),
        );
        let g = |n: &str| t.devices.iter().find(|d| d.name.as_deref() == Some(n)).unwrap().iommu_group;
        assert_eq!(g("rp1"), g("sw"));
    }

    #[test]
    fn pci_acs_enabled_never_isolates_conventional_pci_or_pcie_to_pci_bridges() {
        let mut t = spec(MF_AND_SWITCH);
        let i = t.devices.iter().position(|d| d.name.as_deref() == Some("rp1")).unwrap();
        // pci_for_each_dma_alias: a PCIe-to-PCI bridge takes over every requester ID below it.
        t.devices[i].port_type = Some(PortType::PcieToPciBridge);
        repredict(&mut t);
        let g = |t: &Topology, n: &str| t.devices.iter().find(|d| d.name.as_deref() == Some(n)).unwrap().iommu_group;
        for n in ["sw", "sw.0", "sw.1", "c", "d"] {
            assert_eq!(g(&t, n), g(&t, "rp1"), "{n}");
        }
        // Conventional functions of one slot (no PCIe capability) share a group.
        for d in t.devices.iter_mut().filter(|d| d.name.as_deref() == Some("a") || d.name.as_deref() == Some("b")) {
            d.port_type = None;
        }
        repredict(&mut t);
        assert_eq!(g(&t, "a"), g(&t, "b"));
    }

    #[test]
    fn a_vf_gets_its_own_group_below_an_isolating_port() {
        let t = spec(
            r#"
            [machine]
            iommu = true
            [[root_port]]
            name = "rp0"
            [[endpoint]]
            name = "nic"
            kind = "nic"
            parent = "rp0"
            vfs = 2
        "#,
        );
        let groups: BTreeSet<Option<u32>> = t.devices.iter().map(|d| d.iommu_group).collect();
        assert_eq!(groups.len(), t.devices.len(), "one group each: {:?}", named(&t));
    }

    #[test]
    fn quirks_and_unreadable_acs_make_the_prediction_uncertain() {
        let t = spec(&MF_AND_SWITCH.replace("name = \"rp1\"\n", "name = \"rp1\"\nid = \"8086:a110\"\n"));
        let u = &t.iommu_groups.as_ref().unwrap().uncertain;
        assert!(u.iter().any(|d| d.reason.contains("pci_quirk_intel_pch_acs")), "{u:?}");
        let mut t = spec(MF_AND_SWITCH);
        for d in &mut t.devices {
            d.acs = Acs::Unknown;
        }
        repredict(&mut t);
        assert!(t.iommu_groups.unwrap().uncertain.iter().any(|d| d.reason.contains("could not be read")));
    }

    #[test]
    fn kernel_groups_are_kept_and_no_iommu_means_no_groups() {
        let mut t = spec(MF_AND_SWITCH);
        for d in &mut t.devices {
            d.iommu_group = Some(40);
        }
        t.iommu_groups = None;
        fill(&mut t);
        assert_eq!(t.iommu_groups.as_ref().unwrap().source, GroupSource::Kernel);
        assert!(t.devices.iter().all(|d| d.iommu_group == Some(40)));
        let t = spec(&MF_AND_SWITCH.replace("iommu = true", "iommu = false"));
        assert!(t.devices.iter().all(|d| d.iommu_group.is_none()) && t.iommu_groups.is_none());
    }

    #[test]
    fn merges_lists_the_groups_that_become_one() {
        let before = spec(MF_AND_SWITCH);
        let after = spec(
            &MF_AND_SWITCH
                .replace("iommu = true", "iommu = true\nkernel_params = \"pci=disable_acs_redir=0000:00:10.0\""),
        );
        let m = merges(&before, &after);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].groups, vec![1, 3]);
        assert_eq!(m[0].devices.len(), 3);
    }
}
