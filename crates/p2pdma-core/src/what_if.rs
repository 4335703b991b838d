//! What-if: a topology as it would be after booting with more kernel parameters (the ACS
//! control values `pci_enable_acs` would program, then the IOMMU groups), and what the
//! kernel would say about those parameters: it never refuses them, it ignores or warns.

use std::collections::HashMap;

use serde::Serialize;

use crate::bdf::Bdf;
use crate::config::{acs_bits, Acs};
use crate::iommu_groups::{self, GroupMerge};
use crate::kernel_params::{estimate_firmware_ctrl, predict_acs_ctrl, spec_matches, AcsParams, DeviceIdentity};
use crate::model::{Device, Topology};
use crate::model::{GroupInfo, GroupSource};

/// The bridges above each device, nearest first: what `pci_dev_str_match`'s path form walks.
fn chains(topo: &Topology) -> Vec<Vec<Bdf>> {
    let up: HashMap<Bdf, Option<Bdf>> = topo.devices.iter().map(|d| (d.bdf, d.upstream)).collect();
    topo.devices
        .iter()
        .map(|d| {
            let mut chain = Vec::new();
            let mut cur = d.upstream;
            while let Some(b) = cur {
                if chain.len() > topo.devices.len() {
                    break; // a loop; check_consistent refuses those, never spin here
                }
                chain.push(b);
                cur = up.get(&b).copied().flatten();
            }
            chain
        })
        .collect()
}

fn identity<'a>(d: &Device, chain: &'a [Bdf]) -> DeviceIdentity<'a> {
    DeviceIdentity { bdf: d.bdf, vendor: d.vendor, device: d.device, subsystem: d.subsystem, upstream_chain: chain }
}

/// Boots `topo` again in thought with `extra` appended to its command line: every ACS
/// control value is predicted anew and, with the IOMMU on, the groups too. Returns what the
/// kernel would log or silently do about the parameters (also kept in `iommu_groups.notes`).
///
/// The firmware's ACS value is not in sysfs; it is taken as what the kernel's own settings
/// leave explainable (`estimate_firmware_ctrl`), which is exact for firmware that leaves ACS
/// off, as QEMU's does.
pub fn apply(topo: &mut Topology, extra: &str) -> Vec<String> {
    let old_cmdline = topo.machine.cmdline.clone().unwrap_or_default();
    let old = AcsParams::from_cmdline(&old_cmdline);
    let new_cmdline = format!("{old_cmdline} {extra}").trim().to_string();
    let new = AcsParams::from_cmdline(&new_cmdline);
    let iommu = topo.machine.iommu == Some(true);
    let chains = chains(topo);
    let mut unknown = Vec::new();
    for (d, chain) in topo.devices.iter_mut().zip(&chains) {
        let ident = identity(d, chain);
        match &mut d.acs {
            Acs::Present { cap, ctrl, .. } => {
                let fw = estimate_firmware_ctrl(*cap, *ctrl, iommu, &old, &ident);
                *ctrl = predict_acs_ctrl(*cap, fw, iommu, &new, &ident);
            }
            Acs::Unknown => unknown.push(d.bdf.to_string()),
            Acs::Absent => {}
        }
    }
    topo.machine.cmdline = Some(new_cmdline);
    let mut notes = param_notes(topo, extra);
    if !unknown.is_empty() {
        notes.push(format!(
            "the ACS of {} could not be read (needs root): its control after the change is unknown",
            unknown.join(", ")
        ));
    }
    annotate(topo, extra, notes.clone());
    notes
}

/// Records the what-if on the topology: predicted groups (IOMMU on) with the parameters and
/// the kernel's notes. For a topology file, whose firmware values are known, the caller
/// lowers the file with the parameters and calls this instead of [`apply`].
pub fn annotate(topo: &mut Topology, extra: &str, notes: Vec<String>) {
    if topo.machine.iommu == Some(true) {
        topo.iommu_groups = Some(GroupInfo {
            source: GroupSource::Predicted,
            uncertain: Vec::new(),
            kernel_params: Some(extra.to_string()),
            notes,
        });
        iommu_groups::repredict(topo);
    }
}

/// What the kernel does with the ACS parameters in `extra` on this machine, in its words
/// where it has any (`__pci_config_acs` in drivers/pci/pci.c). Empty when all is well.
pub fn param_notes(topo: &Topology, extra: &str) -> Vec<String> {
    let chains = chains(topo);
    let mut notes = Vec::new();
    for token in extra.split_whitespace() {
        let token = token.trim_matches('"');
        if token.starts_with("pcie_acs_override") {
            notes.push(format!(
                "`{token}` comes from an out-of-tree patch: a mainline kernel ignores it, ACS and groups stay as they are"
            ));
        }
    }
    let params = AcsParams::from_cmdline(extra);
    for (name, value) in [("disable_acs_redir", &params.disable_acs_redir), ("config_acs", &params.config_acs)] {
        let Some(value) = value else { continue };
        if value.is_empty() {
            notes.push(format!("pci={name}= names no device: the kernel does nothing with it"));
            continue;
        }
        // `__pci_config_acs` steps over a `;` and stops at the end of the string: one
        // trailing `;` is harmless (a second is an empty entry it cannot parse).
        for entry in value.strip_suffix(';').unwrap_or(value).split(';') {
            let device = if name == "config_acs" {
                let Some((bits, device)) = entry.split_once('@') else {
                    notes.push(format!(
                        "pci=config_acs: `{entry}` has no flags@device: the kernel logs \"ACS Flags missing\" for every device with ACS and applies nothing"
                    ));
                    break;
                };
                if !bits.chars().all(|c| matches!(c, '0' | '1' | 'x' | 'X')) {
                    notes.push(format!(
                        "pci=config_acs: flags `{bits}` are not 0, 1 or x: the kernel logs \"Invalid ACS flags... Ignoring\" and applies nothing"
                    ));
                    break;
                }
                if bits.len() > 7 && bits[..bits.len() - 7].chars().any(|c| c != 'x' && c != 'X') {
                    notes.push(format!(
                        "pci=config_acs: flags `{bits}` reach past the 7 ACS control bits: the kernel logs \"Invalid ACS flags specified\" and applies nothing"
                    ));
                    break;
                }
                device
            } else {
                entry
            };
            let mut matched = Vec::new();
            let mut unparsable = false;
            for (d, chain) in topo.devices.iter().zip(&chains) {
                match spec_matches(device, &identity(d, chain)) {
                    Some(true) => matched.push(d),
                    Some(false) => {}
                    None => {
                        unparsable = true;
                        break;
                    }
                }
            }
            if unparsable {
                notes.push(format!(
                    "pci={name}: `{device}` is not a device the kernel can parse: it logs \"PCI: Can't parse ACS command line parameter\" and ignores this entry and every one after it"
                ));
                break;
            }
            if matched.is_empty() {
                notes.push(format!(
                    "pci={name}: `{device}` matches no device on this machine: the kernel ignores it silently"
                ));
            }
            for d in matched {
                if d.acs == Acs::Absent {
                    notes.push(format!(
                        "pci={name}: {} has no ACS capability: the parameter changes nothing there",
                        d.label()
                    ));
                }
            }
        }
    }
    notes
}

/// What one ACS fix costs in IOMMU isolation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FixCost {
    /// The fix as proposed: a kernel parameter or a setpci command.
    pub fix: String,
    /// Groups (numbered as now) that would become one, with every device of the result.
    pub merges: Vec<GroupMerge>,
    /// One sentence for humans, made from the fields above.
    pub summary: String,
}

/// The price of each way of turning ACS redirect off on `devices`: the kernel parameters
/// (`param` for `pci=disable_acs_redir=`, `config_acs` for `pci=config_acs=`) and setpci.
pub fn fix_costs(topo: &Topology, devices: &[Bdf], param: &str, config_acs: &str, setpci: &str) -> Vec<FixCost> {
    let mut out = Vec::new();
    for fix in [format!("pci=disable_acs_redir={param}"), format!("pci=config_acs={config_acs}")] {
        let mut after = topo.clone();
        apply(&mut after, &fix);
        out.push(cost(topo, &after, fix, false));
    }
    let mut after = topo.clone();
    for d in after.devices.iter_mut().filter(|d| devices.contains(&d.bdf)) {
        if let Acs::Present { ctrl, .. } = &mut d.acs {
            *ctrl &= !acs_bits::REDIRECT;
        }
    }
    if after.machine.iommu == Some(true) {
        iommu_groups::repredict(&mut after);
    }
    out.push(cost(topo, &after, setpci.to_string(), true));
    out
}

fn cost(before: &Topology, after: &Topology, fix: String, runtime: bool) -> FixCost {
    let merges = iommu_groups::merges(before, after);
    let summary = match before.machine.iommu {
        Some(true) if merges.is_empty() => "no IOMMU groups merge".to_string(),
        Some(true) => {
            let list: Vec<String> = merges
                .iter()
                .map(|m| {
                    let groups: Vec<String> = m.groups.iter().map(|g| g.to_string()).collect();
                    let devices: Vec<String> = m.devices.iter().map(|b| b.to_string()).collect();
                    format!("groups {} become one ({})", groups.join(" + "), devices.join(", "))
                })
                .collect();
            format!(
                "IOMMU {}: those devices can then only be assigned together (one VM, or the host){}",
                list.join("; "),
                if runtime {
                    "; the kernel keeps the groups it formed at boot, so sysfs will not show the lost isolation"
                } else {
                    ""
                }
            )
        }
        Some(false) => "the IOMMU is off: there are no IOMMU groups to merge".to_string(),
        None => "whether an IOMMU is on is unknown: the cost in IOMMU groups cannot be told".to_string(),
    };
    let doubts = after.iommu_groups.as_ref().map_or(0, |g| g.uncertain.len());
    let summary = if doubts > 0 {
        format!("{summary} (uncertain: a quirk or unreadable ACS could change the groups of {doubts} device(s), see topo --json)")
    } else {
        summary
    };
    FixCost { fix, merges, summary }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::iommu_groups::tests::{spec, MF_AND_SWITCH as TWO_PORTS};

    #[test]
    fn apply_equals_booting_the_file_with_the_parameters() {
        let params = "pci=disable_acs_redir=0000:00:10.0;0000:00:11.0";
        let mut live = spec(TWO_PORTS);
        let notes = apply(&mut live, params);
        assert!(notes.is_empty(), "{notes:?}");
        let booted = spec(&TWO_PORTS.replace("iommu = true", &format!("iommu = true\nkernel_params = \"{params}\"")));
        for (a, b) in live.devices.iter().zip(&booted.devices) {
            assert_eq!((a.bdf, a.acs, a.iommu_group), (b.bdf, b.acs, b.iommu_group));
        }
        assert_eq!(live.iommu_groups.unwrap().kernel_params.as_deref(), Some(params));
    }

    #[test]
    fn bad_parameters_are_ignored_like_the_kernel_does_and_said() {
        let mut t = spec(TWO_PORTS);
        let before = t.clone();
        let notes = apply(&mut t, "pci=disable_acs_redir=0000:00:1e.0;zz;0000:00:10.0 pcie_acs_override=downstream");
        assert!(notes.iter().any(|n| n.contains("matches no device")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("Can't parse ACS command line parameter")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("out-of-tree")), "{notes:?}");
        // 00:10.0 comes after the unparsable entry: the kernel never reaches it.
        assert_eq!(iommu_groups::members(&t), iommu_groups::members(&before));
        for bad in ["pci=config_acs=1x0", "pci=config_acs=1z0@00:10.0", "pci=config_acs=100000000@00:10.0"] {
            let mut t = spec(TWO_PORTS);
            let notes = apply(&mut t, bad);
            assert_eq!(notes.len(), 1, "{bad}: {notes:?}");
            assert_eq!(iommu_groups::members(&t), iommu_groups::members(&before), "{bad}");
        }
        // One trailing `;` is stepped over by the kernel: no note, the same effect.
        let (mut with, mut without) = (spec(TWO_PORTS), spec(TWO_PORTS));
        assert!(apply(&mut with, "pci=disable_acs_redir=0000:00:10.0;").is_empty());
        apply(&mut without, "pci=disable_acs_redir=0000:00:10.0");
        assert_eq!(iommu_groups::members(&with), iommu_groups::members(&without));
        let notes = apply(&mut spec(TWO_PORTS), "pci=disable_acs_redir=pci:1b36:0010");
        assert!(notes.iter().any(|n| n.contains("no ACS capability")), "{notes:?}");
    }

    #[test]
    fn every_fix_for_a_redirecting_root_port_merges_its_groups() {
        let t = spec(TWO_PORTS);
        let rp0: Bdf = "0000:00:10.0".parse().unwrap();
        let costs =
            fix_costs(&t, &[rp0], "0000:00:10.0", "x0100x1@0000:00:10.0", "setpci -s 0000:00:10.0 0x14e.w=0000:002c");
        assert_eq!(costs.len(), 3);
        for c in &costs {
            assert_eq!(c.merges.len(), 1, "{c:?}");
            assert_eq!(c.merges[0].devices.len(), 3, "root port and both functions: {c:?}");
            assert!(c.summary.contains("become one"), "{}", c.summary);
        }
        assert!(costs[2].summary.contains("formed at boot"));
    }
}
