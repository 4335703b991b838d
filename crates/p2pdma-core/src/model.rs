//! The topology model: one shape for live sysfs, snapshots and topology files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bdf::Bdf;
use crate::config::{Acs, PortType};
use crate::pciids::{self, Names};
use crate::release::NamedRelease;

/// A machine's PCI devices and the facts outside /sys that the kernel's verdict rests on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub machine: Machine,
    /// Host bridges (PCI roots), e.g. `pci0000:00`.
    pub host_bridges: Vec<HostBridge>,
    /// Every PCI function, sorted by address.
    pub devices: Vec<Device>,
    /// Non-PCI devices a user may name as a client (block devices, NVMe controllers, RDMA
    /// and network devices) and the PCI device the kernel would walk up to, if any.
    #[serde(default)]
    pub aliases: BTreeMap<String, Alias>,
    /// Where the devices' `iommu_group` came from (the kernel, or predicted), and doubts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu_groups: Option<GroupInfo>,
}

/// Facts about the whole machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `uname -m`, e.g. `x86_64`. The CPU rule only exists on x86.
    pub arch: Option<String>,
    /// `vendor_id` from /proc/cpuinfo, e.g. `AuthenticAMD`.
    pub cpu_vendor: Option<String>,
    /// `cpu family` from /proc/cpuinfo (decimal there; 0x17 = 23 is Zen).
    pub cpu_family: Option<u32>,
    pub cpu_model_name: Option<String>,
    /// `uname -r`.
    pub kernel_release: Option<String>,
    /// The kernel command line (ACS parameters live here).
    pub cmdline: Option<String>,
    /// Whether an IOMMU is active (`/sys/class/iommu` non-empty); None when unknown.
    pub iommu: Option<bool>,
    /// What the kernel has for P2P (build, whitelist image, IOMMU mode); unknown in older snapshots.
    #[serde(default)]
    pub kernel: KernelFacts,
    /// The NCCL job's environment (`NCCL_P2P_LEVEL`, `NCCL_NET_GDR_LEVEL`, ...): a topology
    /// file's `[machine] nccl_env` or `check --nccl-env`. Never p2pdma's own environment,
    /// which is not the job's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nccl_env: BTreeMap<String, String>,
    /// Loaded kernel modules (/proc/modules, `[machine] modules`); None when unknown.
    /// Built-in drivers are not listed there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<Vec<String>>,
    /// NVIDIA registry keys (/proc/driver/nvidia/params, `[machine] nvidia_registry`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nvidia_registry: BTreeMap<String, String>,
}

/// A PCI host bridge: the root of one PCI hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostBridge {
    /// The kernel's name, e.g. `pci0000:00`; topology files may use their own.
    pub name: String,
    pub domain: u32,
    /// The root bus number.
    pub bus: u8,
}

/// One PCI function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub bdf: Bdf,
    /// The topology file's own name for this device, if it came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub vendor: u16,
    pub device: u16,
    /// 24-bit class code (class, subclass, prog-if).
    pub class: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem: Option<(u16, u16)>,
    /// Names from the PCI ID database, where one was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// The class as lspci names it (subclass name, else class name), e.g.
    /// `Non-Volatile memory controller`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
    pub driver: Option<String>,
    /// The bridge above this function (`bus->self`); None on a root bus.
    pub upstream: Option<Bdf>,
    /// The host bridge this function sits under (its `name`).
    pub host_bridge: String,
    /// For an SR-IOV virtual function: its physical function.
    pub physfn: Option<Bdf>,
    /// Header type 1 (a bridge: root ports and switch ports are bridges).
    pub is_bridge: bool,
    pub port_type: Option<PortType>,
    pub link: Option<Link>,
    pub acs: Acs,
    #[serde(default)]
    pub bars: Vec<Bar>,
    pub iommu_group: Option<u32>,
    pub numa_node: Option<i32>,
    /// `local_cpulist`: the CPUs nearest the device (like nvidia-smi's CPU affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_cpus: Option<String>,
    /// The `p2pmem/` directory: present only on providers.
    pub p2pmem: Option<P2pMem>,
    /// An NVMe Controller Memory Buffer's size in bytes (the nvme driver's `cmbsz`), present
    /// whether or not the kernel could publish it: a provider on a kernel with P2PDMA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmb: Option<u64>,
    /// Raw config space as read (hex), kept in snapshots so they can be re-decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hex: Option<String>,
}

/// PCIe link state from sysfs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// e.g. `8.0 GT/s PCIe`.
    pub current_speed: Option<String>,
    pub current_width: Option<u32>,
    pub max_speed: Option<String>,
    pub max_width: Option<u32>,
}

impl Link {
    /// True when the link trained below what both ends can do.
    pub fn degraded(&self) -> bool {
        let speed = |s: &Option<String>| {
            s.as_deref().and_then(|s| s.split_whitespace().next()).and_then(|n| n.parse::<f64>().ok())
        };
        let slower = matches!((speed(&self.current_speed), speed(&self.max_speed)), (Some(c), Some(m)) if c < m);
        let narrower = matches!((self.current_width, self.max_width), (Some(c), Some(m)) if c < m);
        slower || narrower
    }
}

/// A base address register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    pub index: u8,
    /// Where the CPU sees it (sysfs `resource`): a CPU physical address.
    pub start: u64,
    pub size: u64,
    pub memory: bool,
    pub prefetchable: bool,
    /// A 64-bit memory BAR (it takes this register and the next).
    #[serde(default)]
    pub is_64: bool,
    /// What the BAR register in config space holds: the address on the PCI bus, which
    /// differs from `start` by the host bridge's window offset. None when not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus_start: Option<u64>,
}

/// A provider's P2P memory pool (`p2pmem/size`, `available`, `published`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct P2pMem {
    pub size: u64,
    pub available: u64,
    pub published: bool,
}

/// A non-PCI device name and the PCI device above it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    /// The class it was found in (`block`, `nvme`, `net`, `infiniband`) or `spec`.
    pub class: String,
    /// The first PCI device found walking up its parents; None when there is none (rxe, loop,
    /// an NVMe multipath head: its parent is the virtual nvme-subsystem device).
    pub pci_parent: Option<Bdf>,
    /// A hidden disk (`/sys/block/<name>/hidden` is 1): an NVMe multipath path such as
    /// `nvme0c0n1`, with no `/dev` node; I/O goes through its head.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hidden: bool,
    /// An NVMe multipath head (`nvme0n1` above `nvme0c0n1`, ...): its paths, each on its
    /// controller. The kernel may send the head's I/O down any of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<MultipathPath>,
}

/// One path of an NVMe multipath head: the hidden path disk, its controller, and the PCI
/// device above that controller (None for fabrics controllers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultipathPath {
    pub disk: String,
    pub controller: String,
    pub pci: Option<Bdf>,
}

impl Alias {
    /// An alias found in `class` below `pci_parent`.
    pub fn new(class: &str, pci_parent: Option<Bdf>) -> Self {
        Alias { class: class.into(), pci_parent, ..Default::default() }
    }

    /// Whether this is an NVMe multipath head.
    pub fn is_multipath_head(&self) -> bool {
        !self.paths.is_empty()
    }

    /// The PCI device its data moves through: its PCI parent, else (a multipath head) the
    /// one PCI device all its paths are on. The kernel's own walk (nvmet's P2P check) sees
    /// only `pci_parent`.
    pub fn data_pci(&self) -> Option<Bdf> {
        self.pci_parent.or_else(|| shared_pci(&self.paths))
    }
}

impl Device {
    /// A readable label: the topology file's name, else the BDF.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.bdf),
            None => self.bdf.to_string(),
        }
    }

    /// `Red Hat, Inc. QEMU NVM Express Controller`, as lspci names a device from the PCI ID
    /// database (`Device 0010` when only the vendor is known); None without names.
    pub fn pci_name(&self) -> Option<String> {
        match (&self.vendor_name, &self.device_name) {
            (Some(v), Some(n)) => Some(format!("{v} {n}")),
            (Some(v), None) => Some(format!("{v} Device {:04x}", self.device)),
            (None, Some(n)) => Some(n.clone()),
            (None, None) => None,
        }
    }

    /// Its memory BARs (I/O BARs left out).
    pub fn memory_bars(&self) -> impl Iterator<Item = &Bar> {
        self.bars.iter().filter(|b| b.memory)
    }

    /// Whether its memory can be offered for P2P (published `p2pmem`, a dma-buf export, a
    /// BAR a driver registers): a DMA-capable endpoint with P2P memory or a memory BAR.
    pub fn has_p2p_memory_side(&self) -> bool {
        self.is_dma_capable() && (self.p2pmem.is_some() || self.memory_bars().next().is_some())
    }

    /// Class code 0x0604 / 0x0609 or a type-1 header.
    pub fn is_pci_bridge(&self) -> bool {
        self.is_bridge || self.class >> 8 == 0x0604 || self.class >> 8 == 0x0609
    }

    /// Endpoints that can master DMA and so be P2P clients: not bridges of any kind (class
    /// 0x06: host, ISA, PCI bridges; or a type-1 header).
    pub fn is_dma_capable(&self) -> bool {
        !self.is_pci_bridge() && self.class >> 16 != 0x06
    }

    /// A short description, e.g. `NVMe controller`.
    pub fn kind(&self) -> &'static str {
        match self.class >> 8 {
            0x0108 => "NVMe controller",
            0x0106 => "SATA controller",
            0x0200 => "Ethernet controller",
            0x0207 => "InfiniBand controller",
            0x0300 | 0x0302 => "display controller",
            0x0600 => "host bridge",
            0x0601 => "ISA bridge",
            0x0604 => "PCI bridge",
            0x0c05 => "SMBus",
            0x1200 => "processing accelerator",
            0x0b40 => "co-processor",
            _ if self.is_pci_bridge() => "PCI bridge",
            // Any other class: its name in the built-in PCI ID database, as lspci prints it.
            _ => pciids::builtin::class(self.class).unwrap_or("device"),
        }
    }
}

// What is recorded about the kernel (the rules over it are `kernel`).

/// Yes, no, or not known (never guessed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Built {
    Yes,
    No,
    #[default]
    Unknown,
}

/// Whether the kernel has `CONFIG_PCI_P2PDMA`, and what said so.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct P2pdmaBuild {
    pub built: Built,
    /// The file (and line) that decided, or why nothing could.
    #[serde(default)]
    pub evidence: Option<String>,
}

/// How the IOMMU treats DMA: what a P2P mapping has to go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IommuMode {
    /// No IOMMU: bus addresses are physical addresses.
    Off,
    /// Identity domains (`iommu=pt`): DMA is not translated.
    Passthrough,
    /// DMA domains: every DMA address is translated.
    Translated,
}

impl IommuMode {
    pub fn meaning(self) -> &'static str {
        match self {
            IommuMode::Off => "no IOMMU: peers are reached by bus address; ACS is not forced on by the IOMMU",
            IommuMode::Passthrough => "IOMMU in passthrough (identity): DMA is not translated, but the IOMMU still asks for ACS redirect on ports that have ACS",
            IommuMode::Translated => "IOMMU translates DMA: ACS redirect sends peer traffic to the root complex, and a pair through the host bridge is mapped through the IOMMU",
        }
    }
}

/// A whitelist entry as the kernel in force has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhitelistEntry {
    pub vendor: u16,
    /// 0xffff: every device of the vendor (`PCI_ANY_ID`).
    pub device: u16,
    pub same_host_bridge_only: bool,
    #[serde(default)]
    pub label: String,
}

/// `pci_p2pdma_whitelist` as read out of a kernel image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageWhitelist {
    /// The image it was read from.
    pub image: String,
    pub entries: Vec<WhitelistEntry>,
}

/// What is recorded about the kernel (live, in snapshots, from topology files). Everything
/// defaults to unknown so older snapshots load.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelFacts {
    #[serde(default)]
    pub p2pdma: P2pdmaBuild,
    /// The whitelist compiled into the kernel, when its image could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_whitelist: Option<ImageWhitelist>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu_mode: Option<IommuMode>,
    /// The release the user named with `--kernel` (it replaces what was read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named_release: Option<NamedRelease>,
    /// What could not be read, one line each (file and cause).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

// How the IOMMU groups were found (the kernel's grouping rules are `iommu_groups`).

/// Where the devices' `iommu_group` numbers came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupSource {
    /// Read from the kernel (`/sys/bus/pci/devices/*/iommu_group`), or a snapshot of it.
    Kernel,
    /// Computed by this module from the kernel's rules.
    Predicted,
}

/// How a topology's IOMMU groups were found, and what the model could not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub source: GroupSource,
    /// Devices whose group rests on something the model lacks (a quirk, unreadable ACS).
    #[serde(default)]
    pub uncertain: Vec<Doubt>,
    /// The what-if kernel parameters the groups (and ACS) were predicted under, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_params: Option<String>,
    /// What the kernel would say about those parameters (ignored, unparsable, no such device).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One device whose predicted group may be wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Doubt {
    pub device: Bdf,
    pub reason: String,
}

/// The one PCI device all `paths` are on, None when they are on several or none.
pub fn shared_pci(paths: &[MultipathPath]) -> Option<Bdf> {
    let first = paths.first()?.pci?;
    paths.iter().all(|p| p.pci == Some(first)).then_some(first)
}

impl Topology {
    /// Fills in the vendor, device and class names the devices lack (files and older
    /// snapshots have none; names already there, e.g. read by another machine, are kept).
    pub fn annotate_names(&mut self, names: &Names) {
        for d in &mut self.devices {
            if d.vendor_name.is_none() {
                d.vendor_name = names.vendor(d.vendor).map(str::to_string);
            }
            if d.device_name.is_none() {
                d.device_name = names.device(d.vendor, d.device).map(str::to_string);
            }
            if d.class_name.is_none() {
                d.class_name = names.class(d.class).map(str::to_string);
            }
        }
    }
}
