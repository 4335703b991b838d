//! Lowers a topology file onto the lab's QEMU machine, refusing what QEMU cannot emulate
//! (with the part named), so that the lab boots exactly what `--spec` predicts for.

use std::collections::HashMap;

use p2pdma_core::spec::{AcsSpec, EndpointKind, Spec};
use p2pdma_core::Topology;
use p2pdma_lab::{LabDevice, LabDeviceKind, LabMachine};

/// The q35 host bridge's identity, the only main bridge QEMU's q35 has.
const Q35_HOST_BRIDGE: &str = "8086:29c0";

fn qemu_id(name: &str) -> Result<String, String> {
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
pub fn lab_machine(spec: &Spec, topo: &Topology) -> Result<LabMachine, String> {
    let (_, _, qemu_cpu) = spec.machine.cpu.resolve()?;
    let cpu = qemu_cpu.ok_or("machine.cpu: a custom { vendor, family } has no QEMU model; use a preset")?.to_string();
    let mut devices = Vec::new();
    let mut bus_of: HashMap<&str, String> = HashMap::new();
    let mut chassis = 0u8;
    let mut next_chassis = || -> Result<u8, String> {
        chassis = chassis.checked_add(1).ok_or("more than 255 PCIe ports: the lab runs out of chassis numbers")?;
        Ok(chassis)
    };

    for (i, hb) in spec.host_bridges.iter().enumerate() {
        let what = format!("host bridge {}", hb.name);
        if hb.domain != 0 {
            return Err(format!("{what}: the lab emulates PCI domain 0 only"));
        }
        if i == 0 {
            if hb.id.as_deref().is_some_and(|id| id != Q35_HOST_BRIDGE) || hb.bus.is_some_and(|b| b != 0) {
                return Err(format!("{what}: the lab's main host bridge is q35's ({Q35_HOST_BRIDGE}, bus 0)"));
            }
            bus_of.insert(&hb.name, "pcie.0".into());
            continue;
        }
        if hb.id.is_some() {
            return Err(format!(
                "{what}: an extra host bridge in the lab is a pxb-pcie, which has no 00.0 function (drop `id`)"
            ));
        }
        let bus_nr = topo.host_bridges[i].bus;
        let id = qemu_id(&hb.name)?;
        devices.push(LabDevice {
            id: id.clone(),
            bus: "pcie.0".into(),
            addr: None,
            multifunction: false,
            kind: LabDeviceKind::PxbPcie { bus_nr, numa_node: hb.numa_node.map(|n| n as u32) },
        });
        bus_of.insert(&hb.name, id);
    }

    // Addresses come from the lowered topology, so the lab places devices exactly where
    // `--spec` predicts them.
    let address: HashMap<&str, p2pdma_core::Bdf> =
        topo.devices.iter().filter_map(|d| d.name.as_deref().map(|n| (n, d.bdf))).collect();
    for rp in &spec.root_ports {
        let what = format!("root port {}", rp.name);
        if !default_acs(&rp.acs) || rp.acs_ctrl != 0 || rp.id.as_deref().is_some_and(|id| id != "1b36:000c") {
            return Err(format!("{what}: QEMU's pcie-root-port (1b36:000c) always has ACS capability 0x5f and firmware leaves control at 0"));
        }
        let bus = match &rp.host_bridge {
            Some(h) => bus_of.get(h.as_str()).cloned().ok_or_else(|| format!("{what}: no host bridge named `{h}`"))?,
            None => "pcie.0".into(), // the first host bridge is always q35's own
        };
        let c = next_chassis()?;
        devices.push(LabDevice {
            id: qemu_id(&rp.name)?,
            bus,
            addr: Some((address[rp.name.as_str()].dev, 0)),
            multifunction: false,
            kind: LabDeviceKind::RootPort { chassis: c, slot: 0 },
        });
    }

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
        let up = qemu_id(&sw.name)?;
        devices.push(LabDevice {
            id: up.clone(),
            bus: qemu_id(&sw.parent)?,
            addr: None,
            multifunction: false,
            kind: LabDeviceKind::SwitchUpstream,
        });
        for i in 0..sw.ports {
            let c = next_chassis()?;
            devices.push(LabDevice {
                id: qemu_id(&format!("{}.{i}", sw.name))?,
                bus: up.clone(),
                addr: Some((i, 0)),
                multifunction: false,
                kind: LabDeviceKind::SwitchDownstream { chassis: c, slot: 0 },
            });
        }
    }

    let functions_per_parent = spec.endpoints.iter().fold(HashMap::<&str, usize>::new(), |mut m, e| {
        *m.entry(e.parent.as_str()).or_default() += 1;
        m
    });
    for ep in &spec.endpoints {
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
        let kind = match ep.kind {
            EndpointKind::Nvme => {
                if ep.name.len() > 20 {
                    return Err(format!("{what}: the name is the NVMe serial number, at most 20 characters"));
                }
                let cmb_mib = ep
                    .cmb_mib
                    .map(|m| u32::try_from(m).map_err(|_| format!("{what}: cmb_mib is too large")))
                    .transpose()?;
                LabDeviceKind::Nvme { serial: ep.name.clone(), size_mib: ep.size_mib.unwrap_or(64), cmb_mib }
            }
            EndpointKind::Nic => LabDeviceKind::Nic,
            EndpointKind::Gpu => LabDeviceKind::Display,
            other => {
                return Err(format!("{what}: the lab cannot emulate a {other:?} endpoint (nvme, nic and gpu only)"))
            }
        };
        let (bus, slot) = match bus_of.get(ep.parent.as_str()) {
            Some(host_bus) => (host_bus.clone(), address[ep.name.as_str()].dev),
            None => (qemu_id(&ep.parent)?, 0),
        };
        devices.push(LabDevice {
            id: qemu_id(&ep.name)?,
            bus,
            addr: Some((slot, ep.function)),
            multifunction: ep.function == 0 && functions_per_parent[ep.parent.as_str()] > 1,
            kind,
        });
    }
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

/// QEMU's bochs-display, the lab's GPU-like BAR device.
const BOCHS_DISPLAY_ID: &str = "1234:1111";

fn order_parents_first(devices: &mut Vec<LabDevice>) {
    let mut placed: std::collections::HashSet<String> = ["pcie.0".to_string()].into();
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

/// `NAME:OFFSET[:read|:write]`: an EIO injected by QEMU at byte OFFSET of the NVMe drive
/// NAME (see `p2pdma_lab::DiskFault`).
pub fn parse_fault(s: &str) -> Result<p2pdma_lab::DiskFault, String> {
    let mut parts = s.split(':');
    let (Some(name), Some(offset)) = (parts.next(), parts.next()) else {
        return Err(format!("`{s}`: a fault is NAME:OFFSET[:read|:write], e.g. nvme-b:8M:write"));
    };
    let only = match parts.next() {
        None => None,
        Some("read") => Some(p2pdma_lab::FaultOp::Read),
        Some("write") => Some(p2pdma_lab::FaultOp::Write),
        Some(other) => return Err(format!("`{s}`: `{other}` is neither read nor write")),
    };
    if parts.next().is_some() {
        return Err(format!("`{s}`: a fault is NAME:OFFSET[:read|:write]"));
    }
    let offset = crate::parse_bytes(offset)?;
    Ok(p2pdma_lab::DiskFault { device: qemu_id(name)?, offset, only, errno: 5 })
}

/// Where the topology file is inside the guest; `P2PDMA_NAMES` points there.
pub const GUEST_TOPOLOGY: &str = "/lab/topology.toml";

/// Loads a topology file and its lab machine, with errors naming the file.
pub fn load(path: &std::path::Path) -> anyhow::Result<(Spec, Topology, LabMachine)> {
    let (spec, topo) = p2pdma_host::input::read_spec(path)?;
    let machine = lab_machine(&spec, &topo)
        .map_err(|e| anyhow::anyhow!("{}: the lab cannot emulate this: {e}", path.display()))?;
    Ok((spec, topo, machine))
}

/// Names the static p2pdma to put into the guest, when the running one is not static.
pub const GUEST_BINARY_ENV: &str = "P2PDMA_GUEST_BINARY";

/// The p2pdma the guest runs: `$P2PDMA_GUEST_BINARY`, else this very binary. The guest is a
/// busybox initramfs without a C library, so it must be a static executable: checked here,
/// before any boot, with the way to build one in the error.
pub fn guest_binary() -> anyhow::Result<std::path::PathBuf> {
    let (path, from_env) = match std::env::var_os(GUEST_BINARY_ENV) {
        Some(p) if !p.is_empty() => (std::path::PathBuf::from(p), true),
        _ => (std::env::current_exe()?, false),
    };
    let bytes = std::fs::read(&path).map_err(|e| anyhow::anyhow!("{GUEST_BINARY_ENV}: {}: {e}", path.display()))?;
    match p2pdma_lab::is_static_executable(&bytes) {
        Some(true) => Ok(path),
        Some(false) => anyhow::bail!(
            "{} is dynamically linked and cannot run in the lab's busybox guest: build a static one \
             with scripts/build-static (or `cargo build-static`) and run that, or set {GUEST_BINARY_ENV} to it{}",
            path.display(),
            if from_env { "" } else { " (this p2pdma runs on the host, that one in the guest)" }
        ),
        None => anyhow::bail!("{}: not an ELF64 executable (from {GUEST_BINARY_ENV})", path.display()),
    }
}

/// Lab options that put the guest's p2pdma (`guest_binary`) and the topology file into the guest.
pub fn options(topology: &std::path::Path, timeout_secs: u64) -> anyhow::Result<p2pdma_lab::LabOptions> {
    Ok(p2pdma_lab::LabOptions {
        timeout: std::time::Duration::from_secs(timeout_secs),
        p2pdma_binary: Some(guest_binary()?),
        extra_files: vec![(topology.to_path_buf(), GUEST_TOPOLOGY.to_string())],
        ..p2pdma_lab::LabOptions::default()
    })
}

/// `--kernel SUITE`: the suite's kernel from the cache, fetched when missing.
pub fn suite_kernel(name: &str) -> anyhow::Result<p2pdma_lab::Kernel> {
    if !p2pdma_lab::SUITES.iter().any(|(n, _)| *n == name) {
        let names: Vec<&str> = p2pdma_lab::SUITES.iter().map(|(n, _)| *n).collect();
        anyhow::bail!("--kernel: unknown kernel `{name}` (one of {})", names.join(", "));
    }
    Ok(p2pdma_lab::suite_kernel(&p2pdma_lab::default_cache_dir(), name)?)
}

/// The guest command line: names from the topology file, then the user's command.
pub fn guest_command(command: &[String]) -> String {
    format!("export P2PDMA_NAMES={GUEST_TOPOLOGY}; {}", command.join(" "))
}
