//! A topology file lowered onto the lab's QEMU machine, refusing what QEMU cannot emulate
//! (with the part named), so that the lab boots exactly what `--spec` predicts for. In
//! steps: host bridges, root ports, switches, endpoints, each placing its QEMU devices;
//! addresses come from the lowered topology.

use std::collections::{HashMap, HashSet};

use p2pdma_core::spec::{AcsSpec, EndpointKind, Spec, SpecEndpoint};
use p2pdma_core::{Bdf, Topology};

use crate::{LabDevice, LabDeviceKind, LabError, LabMachine};

/// The q35 host bridge's identity, the only main bridge QEMU's q35 has.
const Q35_HOST_BRIDGE: &str = "8086:29c0";

/// QEMU's bochs-display, the lab's GPU-like BAR device.
const BOCHS_DISPLAY_ID: &str = "1234:1111";

/// A topology-file name as a QEMU device id, or why it cannot be one.
pub fn qemu_id(name: &str) -> Result<String, LabError> {
    id_of(name).map_err(LabError::InvalidOption)
}

fn id_of(name: &str) -> Result<String, String> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
    if ok {
        Ok(name.to_string())
    } else {
        Err(format!("`{name}`: the lab needs names that start with a letter and use letters, digits, '-', '.', '_'"))
    }
}

fn default_acs(acs: &Option<AcsSpec>) -> bool {
    match acs {
        None | Some(AcsSpec::Flag(true)) => true,
        Some(AcsSpec::Bits(b)) => *b == 0x5f,
        Some(AcsSpec::Text(t)) => u16::from_str_radix(t.trim_start_matches("0x"), 16) == Ok(0x5f),
        Some(AcsSpec::Flag(false)) => false,
    }
}

/// The lab machine for a topology file (and the model it lowers to, for bus numbers), or
/// what in it cannot be emulated.
pub fn lab_machine(spec: &Spec, topo: &Topology) -> Result<LabMachine, LabError> {
    lower(spec, topo).map_err(LabError::CannotEmulate)
}

fn lower(spec: &Spec, topo: &Topology) -> Result<LabMachine, String> {
    let (_, _, qemu_cpu) = spec.machine.cpu.resolve().map_err(|e| e.to_string())?;
    let cpu = qemu_cpu.ok_or("machine.cpu: a custom { vendor, family } has no QEMU model; use a preset")?.to_string();
    // Addresses come from the lowered topology, so the lab places devices exactly where
    // `--spec` predicts them.
    let address: HashMap<&str, Bdf> =
        topo.devices.iter().filter_map(|d| d.name.as_deref().map(|n| (n, d.bdf))).collect();
    let mut placed = Placed::default();
    placed.host_bridges(spec, topo)?;
    placed.root_ports(spec, &address)?;
    placed.switches(spec)?;
    placed.endpoints(spec, &address)?;
    let mut devices = placed.devices;
    // QEMU wants parents before children; switches listed before their parent switch break that.
    order_parents_first(&mut devices);
    Ok(LabMachine {
        cpu,
        iommu: spec.machine.iommu,
        kernel_params: spec.machine.kernel_params.split_whitespace().map(str::to_string).collect(),
        devices,
        ..LabMachine::default()
    })
}

/// The QEMU devices placed so far, the bus each host bridge's children go on, and the
/// chassis numbers given out (one per PCIe port).
#[derive(Default)]
struct Placed<'a> {
    devices: Vec<LabDevice>,
    bus_of: HashMap<&'a str, String>,
    chassis: u8,
}

impl<'a> Placed<'a> {
    fn next_chassis(&mut self) -> Result<u8, String> {
        self.chassis =
            self.chassis.checked_add(1).ok_or("more than 255 PCIe ports: the lab runs out of chassis numbers")?;
        Ok(self.chassis)
    }

    /// The first host bridge is q35's own (bus `pcie.0`); each other one a pxb-pcie.
    fn host_bridges(&mut self, spec: &'a Spec, topo: &Topology) -> Result<(), String> {
        for (i, hb) in spec.host_bridges.iter().enumerate() {
            let what = format!("host bridge {}", hb.name);
            if hb.domain != 0 {
                return Err(format!("{what}: the lab emulates PCI domain 0 only"));
            }
            if i == 0 {
                if hb.id.as_deref().is_some_and(|id| id != Q35_HOST_BRIDGE) || hb.bus.is_some_and(|b| b != 0) {
                    return Err(format!("{what}: the lab's main host bridge is q35's ({Q35_HOST_BRIDGE}, bus 0)"));
                }
                self.bus_of.insert(&hb.name, "pcie.0".into());
                continue;
            }
            if hb.id.is_some() {
                return Err(format!(
                    "{what}: an extra host bridge in the lab is a pxb-pcie, which has no 00.0 function (drop `id`)"
                ));
            }
            let bus_nr = topo.host_bridges[i].bus;
            let id = id_of(&hb.name)?;
            self.devices.push(LabDevice {
                id: id.clone(),
                bus: "pcie.0".into(),
                addr: None,
                multifunction: false,
                kind: LabDeviceKind::PxbPcie { bus_nr, numa_node: hb.numa_node.map(|n| n as u32) },
            });
            self.bus_of.insert(&hb.name, id);
        }
        Ok(())
    }

    /// QEMU's pcie-root-port, at the slot the topology gives it.
    fn root_ports(&mut self, spec: &Spec, address: &HashMap<&str, Bdf>) -> Result<(), String> {
        for rp in &spec.root_ports {
            let what = format!("root port {}", rp.name);
            if !default_acs(&rp.acs) || rp.acs_ctrl != 0 || rp.id.as_deref().is_some_and(|id| id != "1b36:000c") {
                return Err(format!("{what}: QEMU's pcie-root-port (1b36:000c) always has ACS capability 0x5f and firmware leaves control at 0"));
            }
            let bus = match &rp.host_bridge {
                Some(h) => {
                    self.bus_of.get(h.as_str()).cloned().ok_or_else(|| format!("{what}: no host bridge named `{h}`"))?
                }
                None => "pcie.0".into(), // the first host bridge is always q35's own
            };
            let c = self.next_chassis()?;
            self.devices.push(LabDevice {
                id: id_of(&rp.name)?,
                bus,
                addr: Some((address[rp.name.as_str()].dev, 0)),
                multifunction: false,
                kind: LabDeviceKind::RootPort { chassis: c, slot: 0 },
            });
        }
        Ok(())
    }

    /// QEMU's x3130: an upstream port and its downstream ports.
    fn switches(&mut self, spec: &Spec) -> Result<(), String> {
        for sw in &spec.switches {
            let what = format!("switch {}", sw.name);
            if sw.acs.as_ref().is_some_and(|a| !matches!(a, AcsSpec::Flag(false))) || sw.acs_ctrl != 0 {
                return Err(format!("{what}: QEMU's xio3130 switch ports have no ACS capability"));
            }
            if sw.id.as_deref().is_some_and(|id| id != "104c:8232")
                || sw.downstream_id.as_deref().is_some_and(|id| id != "104c:8233")
            {
                return Err(format!("{what}: the lab's switch is QEMU's x3130 (104c:8232/104c:8233)"));
            }
            let up = id_of(&sw.name)?;
            self.devices.push(LabDevice {
                id: up.clone(),
                bus: id_of(&sw.parent)?,
                addr: None,
                multifunction: false,
                kind: LabDeviceKind::SwitchUpstream,
            });
            for i in 0..sw.ports {
                let c = self.next_chassis()?;
                self.devices.push(LabDevice {
                    id: id_of(&format!("{}.{i}", sw.name))?,
                    bus: up.clone(),
                    addr: Some((i, 0)),
                    multifunction: false,
                    kind: LabDeviceKind::SwitchDownstream { chassis: c, slot: 0 },
                });
            }
        }
        Ok(())
    }

    /// Each endpoint on its parent's bus (a host bridge's at the topology's slot).
    fn endpoints(&mut self, spec: &Spec, address: &HashMap<&str, Bdf>) -> Result<(), String> {
        let functions_per_parent = spec.endpoints.iter().fold(HashMap::<&str, usize>::new(), |mut m, e| {
            *m.entry(e.parent.as_str()).or_default() += 1;
            m
        });
        for ep in &spec.endpoints {
            let kind = endpoint_kind(ep)?;
            let (bus, slot) = match self.bus_of.get(ep.parent.as_str()) {
                Some(host_bus) => (host_bus.clone(), address[ep.name.as_str()].dev),
                None => (id_of(&ep.parent)?, 0),
            };
            self.devices.push(LabDevice {
                id: id_of(&ep.name)?,
                bus,
                addr: Some((slot, ep.function)),
                multifunction: ep.function == 0 && functions_per_parent[ep.parent.as_str()] > 1,
                kind,
            });
        }
        Ok(())
    }
}

/// The QEMU device an endpoint becomes: NVMe (with or without a CMB), e1000e, or
/// bochs-display as a GPU-like BAR.
fn endpoint_kind(ep: &SpecEndpoint) -> Result<LabDeviceKind, String> {
    let what = format!("endpoint {}", ep.name);
    // A GPU is emulated by bochs-display: the file names its identity so that the
    // offline answers describe the same device.
    let gpu_id_ok = ep.kind == EndpointKind::Gpu && ep.id.as_deref() == Some(BOCHS_DISPLAY_ID);
    if ep.vfs > 0
        || ep.acs.is_some()
        || (ep.id.is_some() && !gpu_id_ok)
        || ep.p2pmem_mib.is_some()
        || ep.published == Some(false)
        || ep.bars.is_some()
    {
        return Err(format!("{what}: the lab emulates plain NVMe (with or without a CMB), e1000e NICs and bochs-display as a GPU-like BAR; vfs, acs, id, p2pmem_mib, published and bars are not emulated"));
    }
    if ep.kind == EndpointKind::Gpu && !gpu_id_ok {
        return Err(format!(
            "{what}: the lab's GPU-like device is QEMU's bochs-display: set id = \"{BOCHS_DISPLAY_ID}\" so that offline answers describe it"
        ));
    }
    match ep.kind {
        EndpointKind::Nvme => {
            if ep.name.len() > 20 {
                return Err(format!("{what}: the name is the NVMe serial number, at most 20 characters"));
            }
            let cmb_mib = ep
                .cmb_mib
                .map(|m| u32::try_from(m).map_err(|_| format!("{what}: cmb_mib is too large")))
                .transpose()?;
            Ok(LabDeviceKind::Nvme { serial: ep.name.clone(), size_mib: ep.size_mib.unwrap_or(64), cmb_mib })
        }
        EndpointKind::Nic => Ok(LabDeviceKind::Nic),
        EndpointKind::Gpu => Ok(LabDeviceKind::Display),
        other => Err(format!("{what}: the lab cannot emulate a {other:?} endpoint (nvme, nic and gpu only)")),
    }
}

fn order_parents_first(devices: &mut Vec<LabDevice>) {
    let mut placed: HashSet<String> = ["pcie.0".to_string()].into();
    let mut out = Vec::with_capacity(devices.len());
    let mut rest = std::mem::take(devices);
    while !rest.is_empty() {
        let before = rest.len();
        let (ready, waiting): (Vec<_>, Vec<_>) = rest.into_iter().partition(|d| placed.contains(&d.bus));
        for d in ready {
            placed.insert(d.id.clone());
            out.push(d);
        }
        rest = waiting;
        if rest.len() == before {
            out.append(&mut rest); // dangling parents: let QEMU name the problem
        }
    }
    *devices = out;
}
