//! Topology files: a machine described by hand in TOML (see docs/topology-files.md).
//!
//! Devices get the addresses firmware would give them (buses numbered depth-first in slot
//! order), and ACS control values are predicted as the kernel programs them at boot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;

use crate::bdf::Bdf;
use crate::config::{Acs, PortType};
use crate::kernel_params::{predict_acs_ctrl, AcsParams, DeviceIdentity};
use crate::model::{Alias, Bar, Device, HostBridge, Machine, P2pMem, Topology};
use crate::model::{Built, IommuMode, KernelFacts, P2pdmaBuild};
use crate::Error;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub machine: SpecMachine,
    #[serde(default, rename = "host_bridge")]
    pub host_bridges: Vec<SpecHostBridge>,
    #[serde(default, rename = "root_port")]
    pub root_ports: Vec<SpecRootPort>,
    #[serde(default, rename = "switch")]
    pub switches: Vec<SpecSwitch>,
    #[serde(default, rename = "endpoint")]
    pub endpoints: Vec<SpecEndpoint>,
    /// Non-PCI devices that can be named as clients (soft RoCE and the like).
    #[serde(default, rename = "virtual")]
    pub virtual_devices: Vec<SpecVirtual>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecMachine {
    /// A preset (`qemu64`, `epyc`, `epyc-milan`, `intel`, `hygon`) or `{ vendor, family }`.
    #[serde(default)]
    pub cpu: CpuSpec,
    /// An IOMMU is active (the kernel then asks for ACS on every port that has it).
    #[serde(default)]
    pub iommu: bool,
    /// Extra kernel command line, e.g. `pci=disable_acs_redir=0000:00:11.0`.
    #[serde(default)]
    pub kernel_params: String,
    pub kernel_release: Option<String>,
    /// Whether the kernel is built with CONFIG_PCI_P2PDMA (default true); false describes a
    /// kernel without it: no device publishes P2P memory, a drive's CMB stays unused.
    pub p2pdma: Option<bool>,
    /// The NCCL job's environment, e.g. `{ NCCL_P2P_LEVEL = "SYS" }` (`check`'s nccl stacks).
    #[serde(default)]
    pub nccl_env: BTreeMap<String, String>,
    /// Loaded kernel modules, as /proc/modules names them (`nvidia_peermem`, `nvidia_fs`,
    /// `nvmet_rdma`): which stacks apply. Unset: unknown.
    pub modules: Option<Vec<String>>,
    /// NVIDIA registry keys as /proc/driver/nvidia/params has them, e.g.
    /// `{ GrdmaPciTopoCheckOverride = 1 }`.
    #[serde(default)]
    pub nvidia_registry: BTreeMap<String, RegistryValue>,
}

/// A registry value: a number or a string, kept as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RegistryValue {
    Number(i64),
    Text(String),
}

impl RegistryValue {
    fn text(&self) -> String {
        match self {
            RegistryValue::Number(n) => n.to_string(),
            RegistryValue::Text(t) => t.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CpuSpec {
    Preset(String),
    Custom { vendor: String, family: u32, model_name: Option<String> },
}

impl Default for CpuSpec {
    fn default() -> Self {
        CpuSpec::Preset("qemu64".into())
    }
}

/// CPU presets: (name, /proc/cpuinfo vendor_id, family, QEMU -cpu model).
pub const CPU_PRESETS: &[(&str, &str, u32, &str)] = &[
    ("qemu64", "AuthenticAMD", 15, "qemu64"),
    ("epyc", "AuthenticAMD", 0x17, "EPYC"),
    ("epyc-milan", "AuthenticAMD", 0x19, "EPYC-Milan"),
    ("intel", "GenuineIntel", 6, "Skylake-Server"),
    ("hygon", "HygonGenuine", 0x18, "Dhyana"),
];

impl CpuSpec {
    /// (vendor_id, family, QEMU model if there is one).
    pub fn resolve(&self) -> Result<(String, u32, Option<&'static str>), Error> {
        match self {
            CpuSpec::Preset(p) => CPU_PRESETS
                .iter()
                .find(|(name, ..)| name.eq_ignore_ascii_case(p))
                .map(|(_, v, f, q)| (v.to_string(), *f, Some(*q)))
                .ok_or_else(|| {
                    let names: Vec<&str> = CPU_PRESETS.iter().map(|p| p.0).collect();
                    Error::BadValue(format!(
                        "unknown cpu preset `{p}` (one of {}, or {{ vendor = \"AuthenticAMD\", family = 25 }})",
                        names.join(", ")
                    ))
                }),
            CpuSpec::Custom { vendor, family, .. } => Ok((vendor.clone(), *family, None)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecHostBridge {
    pub name: String,
    /// vendor:device of the bridge's 00.0 function, the identity the whitelist checks.
    /// Default: q35's 8086:29c0 for the first bridge, none for the others (like pxb-pcie).
    pub id: Option<String>,
    /// Root bus number: 0 for the first bridge, 0x80, 0xa0, 0xc0 for the next by default.
    pub bus: Option<u8>,
    #[serde(default)]
    pub domain: u32,
    pub numa_node: Option<i32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecRootPort {
    pub name: String,
    /// The host bridge's name; default the first.
    pub host_bridge: Option<String>,
    /// Device number on the root bus; default the next free from 0x10.
    pub slot: Option<u8>,
    /// ACS capability bits; default 0x5f (QEMU's pcie-root-port). `false` for none.
    pub acs: Option<AcsSpec>,
    /// ACS control left by firmware; default 0.
    #[serde(default)]
    pub acs_ctrl: u16,
    /// vendor:device; default QEMU's 1b36:000c.
    pub id: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecSwitch {
    pub name: String,
    /// A root port or a switch downstream port (`<switch>.<n>`).
    pub parent: String,
    /// Number of downstream ports, named `<name>.0`, `<name>.1`, …; default 2.
    #[serde(default = "default_ports")]
    pub ports: u8,
    /// ACS capability of the downstream ports; default none (QEMU's xio3130 has none).
    pub acs: Option<AcsSpec>,
    #[serde(default)]
    pub acs_ctrl: u16,
    /// vendor:device of the upstream port; default QEMU's x3130 104c:8232.
    pub id: Option<String>,
    /// vendor:device of the downstream ports; default QEMU's xio3130 104c:8233.
    pub downstream_id: Option<String>,
}

fn default_ports() -> u8 {
    2
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointKind {
    Nvme,
    Nic,
    Gpu,
    Accelerator,
    Device,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecEndpoint {
    pub name: String,
    pub kind: EndpointKind,
    /// A root port, a switch downstream port, or a host bridge (integrated endpoint).
    pub parent: String,
    /// Function number (multifunction devices); default 0.
    #[serde(default)]
    pub function: u8,
    /// Device number, only for endpoints directly on a root bus.
    pub slot: Option<u8>,
    /// NVMe: Controller Memory Buffer size in MiB; the driver publishes it as P2P memory.
    pub cmb_mib: Option<u64>,
    /// NVMe: namespace size in MiB (the lab's backing image); default 64.
    pub size_mib: Option<u64>,
    /// Any device: BAR memory it publishes as P2P memory (GPU, FPGA), in MiB.
    pub p2pmem_mib: Option<u64>,
    /// Whether the P2P memory is published for others to find; default true.
    pub published: Option<bool>,
    /// SR-IOV virtual functions to create behind this physical function.
    #[serde(default)]
    pub vfs: u8,
    pub acs: Option<AcsSpec>,
    #[serde(default)]
    pub acs_ctrl: u16,
    /// vendor:device; defaults by kind.
    pub id: Option<String>,
    /// Its BARs, replacing the kind's defaults (see [`default_bars`]).
    pub bars: Option<Vec<SpecBar>>,
    /// The driver bound to it (`nvidia`, `amdgpu`, `xe`, `vfio-pci`): which stacks apply.
    pub driver: Option<String>,
}

/// One BAR of an endpoint: `{ index = 1, size = "32G", prefetchable = true }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecBar {
    /// 0 to 5; a 64-bit BAR also takes the next register.
    pub index: u8,
    /// Bytes, or a string with a K, M, G or T suffix (powers of 1024); a power of two.
    pub size: SpecSize,
    #[serde(default)]
    pub prefetchable: bool,
    /// 32 or 64; default 64 when prefetchable, else 32.
    pub bits: Option<u8>,
    /// An I/O BAR instead of memory.
    #[serde(default)]
    pub io: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SpecSize {
    Bytes(u64),
    Text(String),
}

impl SpecSize {
    fn bytes(&self) -> Result<u64, String> {
        match self {
            SpecSize::Bytes(b) => Ok(*b),
            SpecSize::Text(t) => {
                suffixed_bytes(t).ok_or_else(|| format!("size `{t}` is not a byte count (e.g. 16K, 256M, 32G)"))
            }
        }
    }
}

/// `4096`, `16K`, `256M`, `32G`, `1T` (powers of 1024); None when it is not one or overflows.
pub(crate) fn suffixed_bytes(t: &str) -> Option<u64> {
    let t = t.trim();
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    num.trim().parse::<u64>().ok().and_then(|n| n.checked_mul(1u64 << shift))
}

/// A BAR as the kind's default layout gives it: (index, size, prefetchable, 64-bit).
type BarLayout = (u8, u64, bool, bool);

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// Realistic BARs per endpoint kind, and the BAR that holds P2P memory when there is any:
/// NVMe: 16 KiB of 64-bit registers (QEMU's nvme), the CMB in BAR 2; NIC: e1000e's memory
/// BARs (128 KiB registers, 128 KiB flash, 16 KiB MSI-X table; its I/O BAR 2 left out); GPU: 16 MiB of registers, a 256 MiB 64-bit prefetchable
/// aperture (BAR 1, where P2P memory lives) and 32 MiB (BAR 3), as NVIDIA's cards lay them
/// out; accelerator (FPGA): 1 MiB of registers and a 256 MiB prefetchable BAR 2; any other
/// device: 4 KiB of registers.
pub fn default_bars(kind: EndpointKind) -> (&'static [BarLayout], u8) {
    match kind {
        EndpointKind::Nvme => (&[(0, 16 * KIB, false, true)], 2),
        EndpointKind::Nic => {
            (&[(0, 128 * KIB, false, false), (1, 128 * KIB, false, false), (3, 16 * KIB, false, false)], 4)
        }
        EndpointKind::Gpu => (&[(0, 16 * MIB, false, false), (1, 256 * MIB, true, true), (3, 32 * MIB, true, true)], 1),
        EndpointKind::Accelerator => (&[(0, MIB, false, false), (2, 256 * MIB, true, true)], 2),
        EndpointKind::Device => (&[(0, 4 * KIB, false, false)], 2),
    }
}

/// The endpoint's BARs: the file's `bars`, else the kind's defaults; with P2P memory of
/// `p2p_bytes`, the BAR that holds it (grown to fit in the defaults; in `bars`, the first
/// prefetchable memory BAR large enough).
fn endpoint_bars(ep: &SpecEndpoint, p2p_bytes: Option<u64>) -> Result<Vec<Bar>, String> {
    let what = format!("endpoint {}", ep.name);
    let bar = |index: u8, size: u64, prefetchable: bool, is_64: bool, memory: bool| Bar {
        index,
        start: 0,
        size,
        memory,
        prefetchable,
        is_64,
        bus_start: None,
    };
    let mut bars = Vec::new();
    match &ep.bars {
        Some(list) => {
            let mut taken = [false; 6];
            for b in list {
                let size = b.size.bytes().map_err(|e| format!("{what}: bar {}: {e}", b.index))?;
                let is_64 = match b.bits {
                    None => b.prefetchable && !b.io,
                    Some(32) => false,
                    Some(64) if !b.io => true,
                    Some(n) => {
                        return Err(format!(
                            "{what}: bar {}: bits must be 32 or 64 (64 for memory only), not {n}",
                            b.index
                        ))
                    }
                };
                let last = b.index as usize + usize::from(is_64);
                if last > 5 {
                    return Err(format!("{what}: bar {}: BARs are numbered 0 to 5 (a 64-bit BAR takes two)", b.index));
                }
                if !size.is_power_of_two() || !(16..=MAX_MIB * MIB).contains(&size) {
                    return Err(format!(
                        "{what}: bar {}: size {size} is not a power of two from 16 bytes to 16 TiB",
                        b.index
                    ));
                }
                if taken[b.index as usize] || taken[last] {
                    return Err(format!("{what}: bar {}: overlaps another BAR's registers", b.index));
                }
                taken[b.index as usize] = true;
                taken[last] = true;
                bars.push(bar(b.index, size, b.prefetchable, is_64, !b.io));
            }
            if let Some(p2p) = p2p_bytes {
                if !bars.iter().any(|b| b.memory && b.prefetchable && b.size >= p2p) {
                    return Err(format!(
                        "{what}: its P2P memory ({} MiB) needs a prefetchable memory BAR at least as large in `bars`",
                        p2p / MIB
                    ));
                }
            }
        }
        None => {
            let (layout, p2p_index) = default_bars(ep.kind);
            for &(index, size, prefetchable, is_64) in layout {
                bars.push(bar(index, size, prefetchable, is_64, true));
            }
            if let Some(p2p) = p2p_bytes {
                let size = p2p.next_power_of_two();
                match bars.iter_mut().find(|b| b.index == p2p_index) {
                    Some(b) => b.size = b.size.max(size),
                    None => bars.push(bar(p2p_index, size, true, true, true)),
                }
                bars.sort_by_key(|b| b.index);
            }
        }
    }
    Ok(bars)
}

/// The BAR a device's P2P memory lives in: the smallest prefetchable memory BAR that holds
/// it (not BAR 0, the registers, where another fits), else the smallest that holds it.
pub fn p2pmem_bar(bars: &[Bar], size: u64) -> Option<&Bar> {
    let fits = || bars.iter().filter(move |b| b.memory && b.size >= size);
    fits()
        .filter(|b| b.prefetchable && b.index != 0)
        .min_by_key(|b| b.size)
        .or_else(|| fits().filter(|b| b.index != 0).min_by_key(|b| b.size))
        .or_else(|| fits().min_by_key(|b| b.size))
}

/// Addresses as firmware would hand them out: 32-bit BARs from 0x8000_0000 (below the
/// 4 GiB hole's end), 64-bit BARs from 0x380_0000_0000, each aligned to its size, in
/// address order. A topology file has no host bridge offset: bus and CPU addresses match.
fn assign_bar_addresses(devices: &mut [Device]) {
    const MEM32_END: u64 = 0xfc00_0000;
    let (mut low, mut high) = (0x8000_0000u64, 0x380_0000_0000u64);
    let mut io = 0x1000u64;
    for d in devices.iter_mut() {
        for b in &mut d.bars {
            let place = |cursor: &mut u64| {
                let start = cursor.div_ceil(b.size).saturating_mul(b.size);
                *cursor = start.saturating_add(b.size);
                start
            };
            b.start = if !b.memory {
                place(&mut io)
            } else if !b.is_64 && low.div_ceil(b.size) * b.size + b.size <= MEM32_END {
                place(&mut low)
            } else {
                place(&mut high)
            };
            if b.memory {
                b.bus_start = Some(b.start);
            }
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecVirtual {
    pub name: String,
    /// A PCI device above it, if any (a block device on an NVMe drive); none for rxe.
    pub parent: Option<String>,
}

/// `acs = false`, `acs = true` (0x5f), `acs = 0x1f` or `acs = "0x1f"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AcsSpec {
    Flag(bool),
    Bits(u16),
    Text(String),
}

impl AcsSpec {
    fn cap(&self) -> Result<Option<u16>, String> {
        match self {
            AcsSpec::Flag(false) => Ok(None),
            AcsSpec::Flag(true) => Ok(Some(0x5f)),
            AcsSpec::Bits(b) => Ok(Some(*b)),
            AcsSpec::Text(t) => u16::from_str_radix(t.trim_start_matches("0x"), 16)
                .map(Some)
                .map_err(|_| format!("acs `{t}` is not a hex number, true or false")),
        }
    }
}

/// Sizes in MiB are capped at 16 TiB so that byte counts and BAR sizes cannot overflow.
const MAX_MIB: u64 = 1 << 24;

/// QEMU places the ACS capability here on its root ports; we use it for every spec device.
const SPEC_ACS_OFFSET: u16 = 0x148;

/// Parses and lowers a topology file's text; `path` names the file in errors.
pub fn from_text(text: &str, path: &Path) -> Result<(Spec, Topology), Error> {
    let spec = parse(text, path)?;
    let topo = spec.to_topology().map_err(|e| Error::invalid(path, e.to_string()))?;
    Ok((spec, topo))
}

/// Parses TOML into a [`Spec`], with a one-line error that gives the line.
pub fn parse(text: &str, path: &Path) -> Result<Spec, Error> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        let msg = e.message().lines().next().unwrap_or("invalid TOML").to_string();
        match line {
            Some(l) => Error::invalid(path, format!("line {l}: {msg}")),
            None => Error::invalid(path, msg),
        }
    })
}

fn parse_id(s: &str, what: &str) -> Result<(u16, u16), String> {
    let (v, d) = s.split_once(':').ok_or_else(|| format!("{what}: id `{s}` is not vendor:device (e.g. 8086:29c0)"))?;
    let h = |t: &str| u16::from_str_radix(t, 16).map_err(|_| format!("{what}: id `{s}` is not vendor:device in hex"));
    Ok((h(v)?, h(d)?))
}

/// A host bridge being placed: the file's name, the model's bridge, its 00.0 identity.
struct PlacedBridge {
    spec_name: String,
    bridge: HostBridge,
    id: Option<(u16, u16)>,
}

/// One function being placed.
struct Node {
    name: String,
    vendor: u16,
    device: u16,
    class: u32,
    port_type: PortType,
    is_bridge: bool,
    acs: Option<(u16, u16)>, // (cap, firmware ctrl)
    p2pmem: Option<P2pMem>,
    /// An NVMe CMB's size, whether or not the kernel registers it.
    cmb: Option<u64>,
    bars: Vec<Bar>,
    /// Where it sits: (parent node or host bridge, slot, function).
    parent: Parent,
    slot: u8,
    func: u8,
    vf_of: Option<usize>,
    /// The driver bound to it, when the file names one (`driver = "nvidia"`).
    driver: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Parent {
    HostBridge(usize),
    Bridge(usize),
}

impl Spec {
    /// The model the kernel would build for this machine.
    pub fn to_topology(&self) -> Result<Topology, Error> {
        self.lower().map_err(Error::BadValue)
    }

    /// In steps: host bridges, then the functions below them (each step places `Node`s
    /// in a `Tree`), then addresses, then the model's devices, aliases and machine.
    fn lower(&self) -> Result<Topology, String> {
        let (cpu_vendor, cpu_family, _) = self.machine.cpu.resolve().map_err(|e| e.to_string())?;
        let p2pdma_built = self.machine.p2pdma.unwrap_or(true);
        let specs: Vec<SpecHostBridge> = if self.host_bridges.is_empty() {
            vec![SpecHostBridge { name: "pci0000:00".into(), id: None, bus: None, domain: 0, numa_node: None }]
        } else {
            self.host_bridges.clone()
        };
        let mut tree = Tree::new(place_host_bridges(&specs)?);
        tree.host_functions()?;
        tree.root_ports(&self.root_ports)?;
        tree.switches(&self.switches)?;
        for ep in &self.endpoints {
            tree.endpoint(ep)?;
        }
        let bdfs = assign_addresses(&tree.nodes, &tree.bridges)?;
        let mut devices = self.devices(&tree, &bdfs, &specs, p2pdma_built)?;
        devices.sort_by_key(|d| d.bdf);
        assign_bar_addresses(&mut devices);
        let aliases = self.aliases(&tree, &bdfs)?;
        if let Some(r) = &self.machine.kernel_release {
            r.parse::<crate::release::KernelRelease>().map_err(|e| format!("machine.kernel_release: {e}"))?;
        }
        for (k, v) in &self.machine.nccl_env {
            crate::nccl::parse_assignment(&format!("{k}={v}")).map_err(|e| format!("machine.nccl_env: {e}"))?;
        }
        let mut topo = Topology {
            machine: self.lowered_machine(cpu_vendor, cpu_family, p2pdma_built),
            host_bridges: tree.bridges.into_iter().map(|b| b.bridge).collect(),
            devices,
            aliases,
            iommu_groups: None,
        };
        crate::iommu_groups::fill(&mut topo);
        Ok(topo)
    }

    /// The placed functions as the model's devices: addresses, upstream links, ACS as the
    /// kernel would program it under the file's command line, P2P memory if built.
    fn devices(
        &self,
        tree: &Tree,
        bdfs: &[Bdf],
        specs: &[SpecHostBridge],
        p2pdma_built: bool,
    ) -> Result<Vec<Device>, String> {
        let nodes = &tree.nodes;
        let params = AcsParams::from_cmdline(&self.machine.kernel_params);
        let mut devices = Vec::with_capacity(nodes.len());
        let mut seen = HashSet::new();
        for (i, n) in nodes.iter().enumerate() {
            let bdf = bdfs[i];
            if !seen.insert(bdf) {
                return Err(format!("{}: address {bdf} is taken twice (check slots and functions)", n.name));
            }
            let upstream = match n.parent {
                Parent::Bridge(p) => Some(bdfs[p]),
                Parent::HostBridge(_) => None,
            };
            let chain = chain_of(nodes, bdfs, i);
            let acs = match n.acs {
                None => Acs::Absent,
                Some((cap, fw)) => {
                    let ident = DeviceIdentity {
                        bdf,
                        vendor: n.vendor,
                        device: n.device,
                        subsystem: None,
                        upstream_chain: &chain,
                    };
                    let ctrl = predict_acs_ctrl(cap, fw, self.machine.iommu, &params, &ident);
                    Acs::Present { offset: SPEC_ACS_OFFSET, cap, ctrl }
                }
            };
            let hb = host_bridge_of(nodes, i);
            devices.push(Device {
                bdf,
                // The host bridge's own function carries the bridge's name, not one of its own.
                name: (n.class != 0x060000).then(|| n.name.clone()),
                vendor: n.vendor,
                device: n.device,
                class: n.class,
                subsystem: None,
                vendor_name: None,
                device_name: None,
                class_name: None,
                driver: n.driver.clone(),
                upstream,
                host_bridge: tree.bridges[hb].bridge.name.clone(),
                physfn: n.vf_of.map(|p| bdfs[p]),
                is_bridge: n.is_bridge,
                port_type: Some(n.port_type),
                link: None,
                acs,
                bars: n.bars.clone(),
                iommu_group: None,
                numa_node: specs[hb].numa_node,
                local_cpus: None,
                p2pmem: n.p2pmem.clone().filter(|_| p2pdma_built),
                cmb: n.cmb,
                config_hex: None,
            });
        }
        Ok(devices)
    }

    /// `[[virtual]]` devices: names for clients that are no PCI device, with their parent.
    fn aliases(&self, tree: &Tree, bdfs: &[Bdf]) -> Result<BTreeMap<String, Alias>, String> {
        let mut aliases = BTreeMap::new();
        for v in &self.virtual_devices {
            let pci_parent = match &v.parent {
                Some(p) => Some(
                    *tree
                        .by_name
                        .get(p)
                        .map(|&i| &bdfs[i])
                        .ok_or_else(|| format!("virtual {}: no device named `{p}`", v.name))?,
                ),
                None => None,
            };
            if tree.by_name.contains_key(&v.name) {
                return Err(format!("the name `{}` is used twice", v.name));
            }
            aliases.insert(v.name.clone(), Alias::new("spec", pci_parent));
        }
        Ok(aliases)
    }

    /// The machine the file describes: CPU, command line, IOMMU, whether P2PDMA is built.
    fn lowered_machine(&self, cpu_vendor: String, cpu_family: u32, p2pdma_built: bool) -> Machine {
        let cmdline = self.machine.kernel_params.trim();
        Machine {
            arch: Some("x86_64".into()),
            cpu_vendor: Some(cpu_vendor),
            cpu_family: Some(cpu_family),
            cpu_model_name: None,
            kernel_release: self.machine.kernel_release.clone(),
            cmdline: (!cmdline.is_empty()).then(|| cmdline.to_string()),
            iommu: Some(self.machine.iommu),
            kernel: KernelFacts {
                p2pdma: P2pdmaBuild {
                    built: if p2pdma_built { Built::Yes } else { Built::No },
                    evidence: Some(match self.machine.p2pdma {
                        Some(v) => format!("the topology file says machine.p2pdma = {v}"),
                        None => "the topology file (machine.p2pdma defaults to true)".into(),
                    }),
                },
                iommu_mode: Some(if self.machine.iommu { IommuMode::Translated } else { IommuMode::Off }),
                ..KernelFacts::default()
            },
            nccl_env: self.machine.nccl_env.clone(),
            modules: self.machine.modules.clone(),
            nvidia_registry: self.machine.nvidia_registry.iter().map(|(k, v)| (k.clone(), v.text())).collect(),
        }
    }
}

/// The host bridges with their root buses and 00.0 identities (the first one is q35's
/// 8086:29c0 unless the file says otherwise).
fn place_host_bridges(specs: &[SpecHostBridge]) -> Result<Vec<PlacedBridge>, String> {
    let mut bridges: Vec<PlacedBridge> = Vec::new();
    for (i, hb) in specs.iter().enumerate() {
        let bus = match hb.bus {
            Some(b) => b,
            None if i == 0 => 0,
            None => u8::try_from(0x60 + 0x20 * i)
                .map_err(|_| format!("host bridge {}: give it a root `bus` (no default left)", hb.name))?,
        };
        let id = match (&hb.id, i) {
            (Some(id), _) => Some(parse_id(id, &format!("host bridge {}", hb.name))?),
            (None, 0) => Some((0x8086, 0x29c0)),
            (None, _) => None,
        };
        let kernel_name = format!("pci{:04x}:{:02x}", hb.domain, bus);
        if bridges.iter().any(|b| b.bridge.name == kernel_name) {
            return Err(format!("host bridge {}: root bus {kernel_name} is used twice", hb.name));
        }
        bridges.push(PlacedBridge {
            spec_name: hb.name.clone(),
            bridge: HostBridge { name: kernel_name, domain: hb.domain, bus },
            id,
        });
    }
    Ok(bridges)
}

/// The functions placed so far under the host bridges, by name (names are unique across
/// functions and host bridges).
struct Tree {
    bridges: Vec<PlacedBridge>,
    hb_by_name: HashMap<String, usize>,
    nodes: Vec<Node>,
    by_name: HashMap<String, usize>,
}

impl Tree {
    fn new(bridges: Vec<PlacedBridge>) -> Tree {
        let hb_by_name = bridges.iter().enumerate().map(|(i, b)| (b.spec_name.clone(), i)).collect();
        Tree { bridges, hb_by_name, nodes: Vec::new(), by_name: HashMap::new() }
    }

    fn add(&mut self, n: Node) -> Result<usize, String> {
        if self.by_name.contains_key(&n.name) || self.hb_by_name.contains_key(n.name.as_str()) {
            return Err(format!("the name `{}` is used twice", n.name));
        }
        self.by_name.insert(n.name.clone(), self.nodes.len());
        self.nodes.push(n);
        Ok(self.nodes.len() - 1)
    }

    /// Each host bridge's own 00.0 function, when it has an identity.
    fn host_functions(&mut self) -> Result<(), String> {
        let functions: Vec<Node> = self
            .bridges
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let (vendor, device) = b.id?;
                let n = Node::plain(
                    format!("{}-host", b.bridge.name),
                    vendor,
                    device,
                    0x060000,
                    PortType::RootComplexIntegratedEndpoint,
                    Parent::HostBridge(i),
                    0,
                    0,
                );
                Some(Node { is_bridge: false, ..n })
            })
            .collect();
        for n in functions {
            self.add(n)?;
        }
        Ok(())
    }

    /// Root ports on their host bridges, slots given or counted up after the bridge's
    /// own function.
    fn root_ports(&mut self, ports: &[SpecRootPort]) -> Result<(), String> {
        let mut auto_slot: HashMap<usize, u8> = HashMap::new();
        for rp in ports {
            let hb = match &rp.host_bridge {
                Some(h) => *self
                    .hb_by_name
                    .get(h.as_str())
                    .ok_or_else(|| format!("root port {}: no host bridge named `{h}`", rp.name))?,
                None => 0,
            };
            let slot = match rp.slot {
                Some(s) => s,
                None => {
                    // After the bridge's own 00.0 function, if it has one (like q35), else from 0.
                    let first = if self.bridges[hb].id.is_some() { 0x10 } else { 0 };
                    let next = auto_slot.entry(hb).or_insert(first);
                    let s = *next;
                    *next = next
                        .checked_add(1)
                        .ok_or_else(|| format!("root port {}: no free slot left on its root bus", rp.name))?;
                    s
                }
            };
            let (vendor, device) =
                parse_id(rp.id.as_deref().unwrap_or("1b36:000c"), &format!("root port {}", rp.name))?;
            let acs = rp
                .acs
                .clone()
                .unwrap_or(AcsSpec::Flag(true))
                .cap()
                .map_err(|e| format!("root port {}: {e}", rp.name))?;
            let mut n = Node::port(rp.name.clone(), (vendor, device), PortType::RootPort, Parent::HostBridge(hb), slot);
            n.acs = acs.map(|c| (c, rp.acs_ctrl));
            self.add(n)?;
        }
        Ok(())
    }

    /// Switches may hang below other switches: each is placed once its parent exists.
    fn switches(&mut self, switches: &[SpecSwitch]) -> Result<(), String> {
        let mut pending: Vec<&SpecSwitch> = switches.iter().collect();
        while !pending.is_empty() {
            let before = pending.len();
            let mut still = Vec::new();
            for sw in pending {
                match self.by_name.get(&sw.parent) {
                    Some(&parent) => self.switch(sw, parent)?,
                    None => still.push(sw),
                }
            }
            if still.len() == before {
                let sw = still[0];
                return Err(format!("switch {}: no root port or switch port named `{}`", sw.name, sw.parent));
            }
            pending = still;
        }
        Ok(())
    }

    /// One switch below node `parent`: its upstream port and downstream ports.
    fn switch(&mut self, sw: &SpecSwitch, parent: usize) -> Result<(), String> {
        if !matches!(self.nodes[parent].port_type, PortType::RootPort | PortType::SwitchDownstream) {
            return Err(format!(
                "switch {}: parent `{}` is not a root port or switch downstream port",
                sw.name, sw.parent
            ));
        }
        let (uv, ud) = parse_id(sw.id.as_deref().unwrap_or("104c:8232"), &format!("switch {}", sw.name))?;
        let (dv, dd) = parse_id(sw.downstream_id.as_deref().unwrap_or("104c:8233"), &format!("switch {}", sw.name))?;
        let acs = match &sw.acs {
            Some(a) => a.cap().map_err(|e| format!("switch {}: {e}", sw.name))?,
            None => None,
        };
        if sw.ports == 0 || sw.ports > 32 {
            return Err(format!("switch {}: ports must be 1 to 32, not {}", sw.name, sw.ports));
        }
        let up =
            self.add(Node::port(sw.name.clone(), (uv, ud), PortType::SwitchUpstream, Parent::Bridge(parent), 0))?;
        for i in 0..sw.ports {
            let mut n =
                Node::port(format!("{}.{i}", sw.name), (dv, dd), PortType::SwitchDownstream, Parent::Bridge(up), i);
            n.acs = acs.map(|c| (c, sw.acs_ctrl));
            self.add(n)?;
        }
        Ok(())
    }

    /// Where an endpoint hangs: below a port (slot 0), or on a root bus at its `slot`.
    fn endpoint_place(&self, ep: &SpecEndpoint) -> Result<(Parent, u8), String> {
        let parent = match (self.by_name.get(&ep.parent), self.hb_by_name.get(ep.parent.as_str())) {
            (Some(&p), _) => {
                if !matches!(self.nodes[p].port_type, PortType::RootPort | PortType::SwitchDownstream) {
                    return Err(format!(
                        "endpoint {}: parent `{}` is not a root port, switch downstream port or host bridge",
                        ep.name, ep.parent
                    ));
                }
                if ep.slot.is_some_and(|s| s != 0) {
                    return Err(format!("endpoint {}: only slot 0 exists below a PCIe port", ep.name));
                }
                Parent::Bridge(p)
            }
            (None, Some(&h)) => Parent::HostBridge(h),
            (None, None) => return Err(format!("endpoint {}: no port or host bridge named `{}`", ep.name, ep.parent)),
        };
        if ep.function > 7 {
            return Err(format!("endpoint {}: function {} is out of range 0-7", ep.name, ep.function));
        }
        let slot = match parent {
            Parent::Bridge(_) => 0,
            Parent::HostBridge(_) => {
                ep.slot.ok_or_else(|| format!("endpoint {}: a device on a root bus needs a `slot`", ep.name))?
            }
        };
        Ok((parent, slot))
    }

    /// An endpoint (its identity, ACS, memory BAR and P2P memory) and its VFs.
    fn endpoint(&mut self, ep: &SpecEndpoint) -> Result<(), String> {
        let (parent, slot) = self.endpoint_place(ep)?;
        let (default_id, class) = match ep.kind {
            EndpointKind::Nvme => ("1b36:0010", 0x010802),
            EndpointKind::Nic => ("8086:10d3", 0x020000),
            EndpointKind::Gpu => ("10de:2330", 0x030200),
            EndpointKind::Accelerator => ("1de5:3000", 0x120000),
            EndpointKind::Device => ("1b36:0005", 0xff0000),
        };
        let (vendor, device) = parse_id(ep.id.as_deref().unwrap_or(default_id), &format!("endpoint {}", ep.name))?;
        let mut n = Node::plain(ep.name.clone(), vendor, device, class, PortType::Endpoint, parent, slot, ep.function);
        n.driver = ep.driver.clone();
        n.is_bridge = false;
        n.acs = match &ep.acs {
            Some(a) => a.cap().map_err(|e| format!("endpoint {}: {e}", ep.name))?.map(|c| (c, ep.acs_ctrl)),
            None => None,
        };
        let memory = endpoint_memory(ep, &mut n)?;
        n.bars = endpoint_bars(ep, memory)?;
        let vf_bars: Vec<Bar> = n.bars.iter().filter(|b| b.memory).take(1).cloned().collect();
        let pf = self.add(n)?;
        for i in 0..ep.vfs {
            let devfn = (slot as u16) * 8 + ep.function as u16 + 1 + i as u16;
            if devfn > 0xff {
                return Err(format!("endpoint {}: {} VFs do not fit on its bus", ep.name, ep.vfs));
            }
            let mut vf = Node::plain(
                format!("{}-vf{i}", ep.name),
                vendor,
                device,
                class,
                PortType::Endpoint,
                parent,
                (devfn >> 3) as u8,
                (devfn & 7) as u8,
            );
            vf.is_bridge = false;
            vf.vf_of = Some(pf);
            vf.bars = vf_bars.clone();
            self.add(vf)?;
        }
        Ok(())
    }
}

/// An endpoint's memory BAR size in bytes (the CMB's, or the one holding the P2P memory),
/// setting the node's P2P memory when the driver would register it and its CMB.
fn endpoint_memory(ep: &SpecEndpoint, n: &mut Node) -> Result<Option<u64>, String> {
    let published = ep.published.unwrap_or(true);
    let mib = 1u64 << 20;
    for (field, v) in [("cmb_mib", ep.cmb_mib), ("p2pmem_mib", ep.p2pmem_mib), ("size_mib", ep.size_mib)] {
        if v.is_some_and(|v| v > MAX_MIB) {
            return Err(format!("endpoint {}: {field} must be at most {MAX_MIB} (16 TiB)", ep.name));
        }
    }
    let memory_mib = match (ep.kind, ep.cmb_mib, ep.p2pmem_mib) {
        // nvme_map_cmb stops silently unless the CMB is 2 MiB aligned (memremap); QEMU's CMB is BAR 2.
        (EndpointKind::Nvme, Some(cmb), None) => {
            if cmb > 0 && cmb % 2 == 0 {
                n.p2pmem = Some(P2pMem { size: cmb * mib, available: cmb * mib, published });
            }
            n.cmb = (cmb > 0).then_some(cmb * mib);
            Some(cmb)
        }
        (kind, Some(_), _) if kind != EndpointKind::Nvme => {
            return Err(format!("endpoint {}: cmb_mib is for NVMe; use p2pmem_mib", ep.name))
        }
        (_, Some(_), Some(_)) => return Err(format!("endpoint {}: give cmb_mib or p2pmem_mib, not both", ep.name)),
        (_, None, Some(mem)) => {
            n.p2pmem = Some(P2pMem { size: mem * mib, available: mem * mib, published });
            Some(mem)
        }
        _ => None,
    };
    Ok(memory_mib.filter(|&m| m > 0).map(|m| m * mib))
}

impl Node {
    /// A bridge port (class 0x0604), function 0.
    fn port(name: String, (vendor, device): (u16, u16), port_type: PortType, parent: Parent, slot: u8) -> Node {
        Node::plain(name, vendor, device, 0x060400, port_type, parent, slot, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn plain(
        name: String,
        vendor: u16,
        device: u16,
        class: u32,
        port_type: PortType,
        parent: Parent,
        slot: u8,
        func: u8,
    ) -> Node {
        Node {
            name,
            vendor,
            device,
            class,
            port_type,
            is_bridge: true,
            acs: None,
            p2pmem: None,
            cmb: None,
            bars: Vec::new(),
            parent,
            slot,
            func,
            vf_of: None,
            driver: None,
        }
    }
}

fn host_bridge_of(nodes: &[Node], mut i: usize) -> usize {
    loop {
        match nodes[i].parent {
            Parent::HostBridge(h) => return h,
            Parent::Bridge(p) => i = p,
        }
    }
}

/// BDFs of the bridges above node `i`, nearest first (for `bus:dev.fn/dev.fn` matching).
fn chain_of(nodes: &[Node], bdfs: &[Bdf], mut i: usize) -> Vec<Bdf> {
    let mut out = Vec::new();
    while let Parent::Bridge(p) = nodes[i].parent {
        out.push(bdfs[p]);
        i = p;
    }
    out
}

/// Bus numbers as firmware assigns them: depth-first, children in slot/function order.
fn assign_addresses(nodes: &[Node], bridges: &[PlacedBridge]) -> Result<Vec<Bdf>, String> {
    let mut bdfs = vec![Bdf::new(0, 0, 0, 0); nodes.len()];
    let mut children: HashMap<Parent, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        children.entry(n.parent).or_default().push(i);
    }
    for list in children.values_mut() {
        list.sort_by_key(|&i| (nodes[i].slot, nodes[i].func));
    }
    fn visit(
        parent: Parent,
        bus: u8,
        domain: u32,
        next_bus: &mut u16,
        nodes: &[Node],
        children: &HashMap<Parent, Vec<usize>>,
        bdfs: &mut [Bdf],
    ) -> Result<(), String> {
        for &i in children.get(&parent).map(Vec::as_slice).unwrap_or(&[]) {
            let n = &nodes[i];
            if n.slot > 0x1f {
                return Err(format!("{}: slot {:#x} is out of range 0-0x1f", n.name, n.slot));
            }
            bdfs[i] = Bdf::new(domain, bus, n.slot, n.func);
            if n.is_bridge {
                if *next_bus > 0xff {
                    return Err(format!("{}: ran out of bus numbers", n.name));
                }
                let secondary = *next_bus as u8;
                *next_bus += 1;
                visit(Parent::Bridge(i), secondary, domain, next_bus, nodes, children, bdfs)?;
            }
        }
        Ok(())
    }
    for (h, PlacedBridge { bridge: hb, .. }) in bridges.iter().enumerate() {
        let mut next_bus = hb.bus as u16 + 1;
        visit(Parent::HostBridge(h), hb.bus, hb.domain, &mut next_bus, nodes, &children, &mut bdfs)?;
    }
    Ok(bdfs)
}

/// Gives a live (or snapshot) topology the names of the topology file it was built from,
/// matching by address and vendor:device. Returns the file's devices that did not match.
pub fn apply_names(live: &mut Topology, predicted: &Topology) -> Vec<String> {
    let mut missing = Vec::new();
    for want in predicted.devices.iter().filter(|d| d.name.is_some()) {
        match live.devices.iter_mut().find(|d| d.bdf == want.bdf) {
            Some(d) if (d.vendor, d.device) == (want.vendor, want.device) => d.name = want.name.clone(),
            Some(d) => missing.push(format!(
                "{} is predicted at {} as {:04x}:{:04x}, found {:04x}:{:04x}",
                want.name.as_deref().unwrap_or("?"),
                want.bdf,
                want.vendor,
                want.device,
                d.vendor,
                d.device
            )),
            None => missing.push(format!(
                "{} is predicted at {}, which does not exist",
                want.name.as_deref().unwrap_or("?"),
                want.bdf
            )),
        }
    }
    missing
}
