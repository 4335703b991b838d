//! Who maps a peer's memory, and what each of them decides for a provider/client pair.
//!
//! The kernel's P2PDMA verdict ([`crate::verdict`]) is what the block layer, nvmet and VFIO
//! follow; amdgpu and xe only ask it yes or no; NVIDIA's GPUDirect RDMA and dma-buf exporter
//! and io_uring's fixed buffers never ask it; NCCL decides by path type. One
//! [`StackVerdict`] per stack that could map the pair, from facts the engine already has.
//! Each rule names the kernel or library function it follows (docs/stacks.md).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::IommuMode;
use crate::nccl;
use crate::pathclass::PathClass;
use crate::stack_inputs;
use crate::verdict::{Engine, MapType, PairVerdict};
use crate::Error;

/// A software stack that can map one device's memory for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stack {
    Block,
    NvmetRdma,
    VfioDmabuf,
    Amdgpu,
    Xe,
    NvidiaPeermem,
    NvidiaDmabuf,
    GdsNvfs,
    GdsP2pdma,
    IoUringFixed,
    NcclP2p,
    NcclGdr,
}

impl Stack {
    pub const ALL: [Stack; 12] = [
        Stack::Block,
        Stack::NvmetRdma,
        Stack::VfioDmabuf,
        Stack::Amdgpu,
        Stack::Xe,
        Stack::NvidiaPeermem,
        Stack::NvidiaDmabuf,
        Stack::GdsNvfs,
        Stack::GdsP2pdma,
        Stack::IoUringFixed,
        Stack::NcclP2p,
        Stack::NcclGdr,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stack::Block => "block",
            Stack::NvmetRdma => "nvmet_rdma",
            Stack::VfioDmabuf => "vfio_dmabuf",
            Stack::Amdgpu => "amdgpu",
            Stack::Xe => "xe",
            Stack::NvidiaPeermem => "nvidia_peermem",
            Stack::NvidiaDmabuf => "nvidia_dmabuf",
            Stack::GdsNvfs => "gds_nvfs",
            Stack::GdsP2pdma => "gds_p2pdma",
            Stack::IoUringFixed => "io_uring_fixed",
            Stack::NcclP2p => "nccl_p2p",
            Stack::NcclGdr => "nccl_gdr",
        }
    }

    /// One stack by name (`block`, `nvidia_peermem`, ...).
    pub fn parse(s: &str) -> Result<Stack, Error> {
        Stack::ALL.into_iter().find(|k| k.as_str().eq_ignore_ascii_case(s.trim())).ok_or_else(|| {
            let names: Vec<&str> = Stack::ALL.iter().map(|k| k.as_str()).collect();
            Error::BadValue(format!("unknown stack `{s}` (one of {})", names.join(", ")))
        })
    }
}

/// Where the peer traffic goes when the stack maps the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Peer to peer by PCI bus address, below a common switch.
    BusAddress,
    /// Up through the root complex (host bridge, or an IOMMU-translated address).
    RootComplex,
    /// Not peer to peer: the data is staged in (or moved to) system memory.
    HostMemory,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::BusAddress => "bus_address",
            Route::RootComplex => "root_complex",
            Route::HostMemory => "host_memory",
        }
    }
}

/// What the stack does when P2PDMA says no.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRefusal {
    /// The I/O or the mapping fails.
    Error,
    /// It falls back to system memory.
    HostMemory,
    /// It never asks P2PDMA.
    NotAsked,
}

impl OnRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            OnRefusal::Error => "error",
            OnRefusal::HostMemory => "host_memory",
            OnRefusal::NotAsked => "not_asked",
        }
    }
}

/// One stack's decision for one pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StackVerdict {
    pub stack: Stack,
    /// The client of the pair, as the check names it.
    pub client: String,
    /// Whether the stack asks the kernel's P2PDMA (`pci_p2pdma_*`) at all.
    pub consults_p2pdma: bool,
    /// Whether it maps the pair peer to peer; None when unknown.
    pub allowed: Option<bool>,
    pub route: Option<Route>,
    pub on_refusal: OnRefusal,
    /// The kernel line it would print when it asks (None when it asks quietly or never).
    pub log: Option<String>,
    pub reason: String,
}

/// What a stack rule needs to know about one device.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceFacts {
    pub vendor: u16,
    /// 24-bit class code.
    pub class: u32,
    pub driver: Option<String>,
    /// It publishes P2P memory (`p2pmem/`): nvmet allocates from that pool.
    pub p2pmem: bool,
}

impl DeviceFacts {
    fn gpu(&self, vendor: u16) -> bool {
        self.vendor == vendor && self.class >> 16 == 0x03
    }
    fn nvidia_gpu(&self) -> bool {
        self.gpu(0x10de)
    }
    fn nic(&self) -> bool {
        self.class >> 16 == 0x02
    }
    fn nvme(&self) -> bool {
        self.class >> 8 == 0x0108
    }
}

/// Everything the rules read: the kernel's verdict for the pair and the machine around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairFacts {
    pub client_name: String,
    pub provider: DeviceFacts,
    pub client: DeviceFacts,
    /// `pci_p2pdma_map_type` for the pair.
    pub map_type: MapType,
    /// False when unreadable ACS could change the map type.
    pub certain: bool,
    /// Both below a common bridge (a switch): the hardware can route between them.
    pub below_common_switch: bool,
    /// ACS on the path redirects peer requests upstream.
    pub acs_redirects: bool,
    pub path_class: PathClass,
    pub iommu: Option<IommuMode>,
    /// The kernel's first line when it evaluates the pair verbosely.
    pub kernel_log: Option<String>,
    /// `NV_FLAG_PCI_P2P_UNSUPPORTED_CHIPSET`: TH500, Ampere Altra, AmpereOne host bridges.
    pub nvidia_unsupported_chipset: bool,
    /// x86 with an AMD CPU and at most two NVIDIA GPUs (NCCL's P2P level is then SYS).
    pub amd_cpu_few_gpus: bool,
    /// The NCCL job's environment (`NCCL_P2P_LEVEL`, ...), as given; never p2pdma's own.
    pub nccl_env: BTreeMap<String, String>,
    /// The release judged (`--kernel`, else `uname -r`); None when unknown.
    pub release: Option<(u32, u32)>,
    /// Loaded modules; None when unknown.
    pub modules: Option<Vec<String>>,
    /// `NVreg_GrdmaPciTopoCheckOverride`; None when the registry was not read.
    pub grdma_override: Option<i64>,
}

/// The stacks that could map this pair, each with its decision.
pub fn judge(f: &PairFacts) -> Vec<StackVerdict> {
    applicable(f)
        .into_iter()
        .map(|s| match not_applicable(s, f) {
            Some(why) => StackVerdict {
                consults_p2pdma: false,
                on_refusal: OnRefusal::NotAsked,
                reason: format!("does not apply: {why}"),
                ..base(s, f)
            },
            None => with_presence(s, f, judge_one(s, f)),
        })
        .collect()
}

/// One stack's decision for one device pair, as `check --stack` gives it; None when that
/// stack cannot map this pair (its device classes do not take part in it). For matrices.
pub fn judge_pair(engine: &Engine<'_>, stack: Stack, provider: usize, client: usize) -> Option<StackVerdict> {
    let v = engine.explain(provider, client);
    judge(&facts(engine, &v, provider, client)).into_iter().find(|j| j.stack == stack)
}

/// The release before VFIO's dma-buf export (`VFIO_DEVICE_FEATURE_DMA_BUF`).
pub const VFIO_DMABUF_SINCE: (u32, u32) = (6, 19);
/// The release before userspace P2P pages with O_DIRECT (`FOLL_PCI_P2PDMA`), which NVIDIA
/// documents as GPUDirect Storage's P2PDMA mode's minimum.
pub const GDS_P2PDMA_SINCE: (u32, u32) = (6, 2);

/// A stack listed for the devices' classes that cannot map this pair on this machine.
fn not_applicable(s: Stack, f: &PairFacts) -> Option<String> {
    let before = |since: (u32, u32)| f.release.is_some_and(|r| r < since);
    match s {
        Stack::VfioDmabuf if before(VFIO_DMABUF_SINCE) => Some(format!(
            "VFIO exports BARs as dma-bufs from Linux {}.{} (vfio_pci_dma_buf_attach); this release has no such stack",
            VFIO_DMABUF_SINCE.0, VFIO_DMABUF_SINCE.1
        )),
        Stack::GdsP2pdma if before(GDS_P2PDMA_SINCE) => Some(format!(
            "GPUDirect Storage's P2PDMA mode needs Linux {}.{} or newer (O_DIRECT on P2P pages, FOLL_PCI_P2PDMA)",
            GDS_P2PDMA_SINCE.0, GDS_P2PDMA_SINCE.1
        )),
        Stack::NvmetRdma if !f.provider.p2pmem => Some(
            "nvmet takes a namespace's buffers from the provider's P2P memory pool (nvmet_p2pmem_ns_enable, pci_p2pmem_alloc_sgl), and this provider publishes none (no p2pmem/)".into(),
        ),
        _ => None,
    }
}

/// The module (or bound driver) a stack needs, and whether it is there: Some(true/false)
/// when known, None when neither the driver nor the module list says.
fn presence(s: Stack, f: &PairFacts) -> (Option<&'static str>, Option<bool>) {
    let m = |name: &'static str| (Some(name), stack_inputs::loaded(f.modules.as_deref(), name));
    let gpu = if f.provider.nvidia_gpu() || f.provider.gpu(0x1002) || f.provider.gpu(0x8086) {
        &f.provider
    } else {
        &f.client
    };
    let by_driver = |name: &'static str| match gpu.driver.as_deref() {
        Some(d) => (Some(name), Some(d == name)),
        None => m(name),
    };
    match s {
        Stack::NvidiaPeermem => m("nvidia_peermem"),
        Stack::GdsNvfs => m("nvidia_fs"),
        Stack::NvmetRdma => m("nvmet_rdma"),
        Stack::Amdgpu => by_driver("amdgpu"),
        Stack::Xe => by_driver("xe"),
        Stack::NvidiaDmabuf | Stack::GdsP2pdma | Stack::NcclP2p | Stack::NcclGdr => by_driver("nvidia"),
        Stack::Block | Stack::IoUringFixed | Stack::VfioDmabuf => (None, Some(true)),
    }
}

/// Says so when whether the stack's module is loaded is unknown.
fn with_presence(s: Stack, f: &PairFacts, mut v: StackVerdict) -> StackVerdict {
    if let (Some(module), None) = presence(s, f) {
        v.reason.push_str(&format!(
            "; whether {module} is loaded is unknown (no module list: /proc/modules or [machine] modules): this stack applies only if it is"
        ));
    }
    v
}

/// The stacks that apply to the pair's device classes (vendor, class, driver).
pub fn applicable(f: &PairFacts) -> Vec<Stack> {
    let (p, c) = (&f.provider, &f.client);
    let nvidia_nvme = (p.nvidia_gpu() && c.nvme()) || (p.nvme() && c.nvidia_gpu());
    let nvidia_nic = (p.nvidia_gpu() && c.nic()) || (p.nic() && c.nvidia_gpu());
    let xe = p.gpu(0x8086) && p.driver.as_deref().is_none_or(|d| d == "xe");
    Stack::ALL
        .into_iter()
        .filter(|&s| presence(s, f).1 != Some(false))
        .filter(|s| match s {
            Stack::Block | Stack::IoUringFixed => c.nvme(),
            Stack::NvmetRdma => c.nvme() || c.nic(),
            Stack::VfioDmabuf => true,
            Stack::Amdgpu => p.gpu(0x1002),
            Stack::Xe => xe,
            Stack::NvidiaPeermem => p.nvidia_gpu() && c.nic(),
            Stack::NvidiaDmabuf => p.nvidia_gpu(),
            Stack::GdsNvfs | Stack::GdsP2pdma => nvidia_nvme,
            Stack::NcclP2p => p.nvidia_gpu() && c.nvidia_gpu(),
            Stack::NcclGdr => nvidia_nic,
        })
        .collect()
}

fn judge_one(s: Stack, f: &PairFacts) -> StackVerdict {
    match s {
        Stack::Block => follow_map_type(s, f, OnRefusal::Error, "blk_dma_map_iter_start → pci_p2pdma_state → pci_p2pdma_map_type; a refusal is BLK_STS_INVAL (an I/O error)"),
        Stack::NvmetRdma => follow_map_type(s, f, OnRefusal::HostMemory, "nvmet_p2pmem_ns_enable; only nvmet-rdma sets a P2P client (nvmet_rdma_alloc_rsp), tcp, loop and pci-epf never; refused → sgl_alloc in host memory"),
        Stack::VfioDmabuf => follow_map_type(s, f, OnRefusal::Error, "vfio_pci_dma_buf_attach (Linux 6.19+, device bound to vfio-pci) needs peer2peer; dma_buf_phys_vec_to_sgt → pci_p2pdma_map_type; refused → -EINVAL"),
        Stack::GdsP2pdma => follow_map_type(s, f, OnRefusal::Error, "GPUDirect Storage in P2PDMA mode: nvidia-uvm registers BAR1 with pci_p2pdma_add_resource and NVMe I/O follows pci_p2pdma_map_type (NVIDIA documents static BAR1, kernel ≥ 6.2, nvme_core.multipath=N)"),
        Stack::Amdgpu | Stack::Xe => gpu_dma_buf(s, f),
        Stack::NvidiaPeermem | Stack::NvidiaDmabuf => nvidia(s, f),
        Stack::GdsNvfs => StackVerdict {
            consults_p2pdma: false,
            allowed: None,
            route: None,
            on_refusal: OnRefusal::NotAsked,
            log: None,
            reason: "GPUDirect Storage in nvidia-fs mode: nvidia-fs maps the GPU's memory itself and never asks P2PDMA; its own rules are not modelled here".into(),
            ..base(s, f)
        },
        Stack::IoUringFixed => StackVerdict {
            consults_p2pdma: false,
            allowed: Some(false),
            route: None,
            on_refusal: OnRefusal::Error,
            log: None,
            reason: "io_sqe_buffer_register → io_pin_pages pins registered (fixed) buffers with FOLL_WRITE | FOLL_LONGTERM and without FOLL_PCI_P2PDMA: GUP refuses a P2P page (try_grab_folio: -EREMOTEIO, or -EFAULT when pages before it were pinned), so IORING_REGISTER_BUFFERS fails; plain O_DIRECT reads and writes follow the block rule".into(),
            ..base(s, f)
        },
        Stack::NcclP2p => nccl_p2p(f),
        Stack::NcclGdr => nccl_gdr(f),
    }
}

fn base(stack: Stack, f: &PairFacts) -> StackVerdict {
    StackVerdict {
        stack,
        client: f.client_name.clone(),
        consults_p2pdma: true,
        allowed: None,
        route: None,
        on_refusal: OnRefusal::Error,
        log: None,
        reason: String::new(),
    }
}

/// `pci_p2pdma_map_type` in words, for reasons.
fn map_type_words(m: MapType) -> &'static str {
    match m {
        MapType::BusAddr => "maps by bus address below a common switch",
        MapType::ThruHostBridge => "maps through the host bridge (root complex)",
        MapType::NotSupported => "refuses the pair",
    }
}

/// block, nvmet-rdma, VFIO dma-buf and GDS's P2PDMA mode: the map type decides the route,
/// a refusal is an error (nvmet: host memory); the kernel asks verbosely, so it logs.
fn follow_map_type(stack: Stack, f: &PairFacts, on_refusal: OnRefusal, source: &str) -> StackVerdict {
    let route = match f.map_type {
        MapType::BusAddr => Some(Route::BusAddress),
        MapType::ThruHostBridge => Some(Route::RootComplex),
        MapType::NotSupported if on_refusal == OnRefusal::HostMemory => Some(Route::HostMemory),
        MapType::NotSupported => None,
    };
    StackVerdict {
        allowed: f.certain.then_some(f.map_type.supported()),
        route,
        on_refusal,
        log: if f.map_type.supported() { None } else { f.kernel_log.clone() },
        reason: format!("P2PDMA {} ({source})", map_type_words(f.map_type)),
        ..base(stack, f)
    }
}

/// The route of a yes from a driver that maps the peer BAR with `dma_map_resource`: an
/// IOVA through the root complex under a translating IOMMU, else the bus path.
fn dma_map_resource_route(f: &PairFacts, below_switch_direct: bool) -> Option<Route> {
    match f.iommu {
        Some(IommuMode::Translated) => Some(Route::RootComplex),
        _ if !below_switch_direct => Some(Route::RootComplex),
        Some(IommuMode::Off | IommuMode::Passthrough) => Some(Route::BusAddress),
        None => None,
    }
}

/// amdgpu (`amdgpu_dma_buf_attach`) and xe (`xe_dma_buf_attach`): `pci_p2pdma_distance(...,
/// false) < 0` turns peer2peer off and the buffer moves to system memory; quiet (no log).
fn gpu_dma_buf(stack: Stack, f: &PairFacts) -> StackVerdict {
    let (func, moved) = match stack {
        Stack::Amdgpu => ("amdgpu_dma_buf_attach", "the buffer object moves to GTT (system memory); a buffer that cannot leave VRAM fails the mapping (amdgpu_dma_buf_map: ttm_bo_validate's error; -EBUSY for one pinned there in older releases); with XGMI peers the check is skipped"),
        _ => ("xe_dma_buf_attach", "the buffer object moves to TT (system memory); a VRAM-only buffer cannot move and the attach fails with -EOPNOTSUPP"),
    };
    let yes = f.map_type.supported();
    let route = if yes { dma_map_resource_route(f, f.map_type == MapType::BusAddr) } else { Some(Route::HostMemory) };
    let how = if yes {
        let iommu = if f.iommu == Some(IommuMode::Translated) {
            "; the IOMMU translates, so the peer is reached through the root complex even below one switch"
        } else {
            ""
        };
        format!("P2PDMA says yes: VRAM is mapped with dma_map_resource{iommu}")
    } else {
        format!("P2PDMA says no: {moved}")
    };
    StackVerdict {
        allowed: f.certain.then_some(yes),
        route,
        on_refusal: OnRefusal::HostMemory,
        log: None,
        reason: format!("{func} asks pci_p2pdma_distance (yes/no, quietly): {how}"),
        ..base(stack, f)
    }
}

/// nvidia-peermem and NVIDIA's dma-buf exporter: `nv_grdma_pci_topology_supported` (nv-pci.c)
/// never asks P2PDMA; it refuses only on flagged chipsets without a common switch.
fn nvidia(stack: Stack, f: &PairFacts) -> StackVerdict {
    match f.grdma_override {
        Some(1) => return nvidia_forced(stack, f, true),
        Some(2) => return nvidia_forced(stack, f, false),
        _ => {}
    }
    let allowed = !f.nvidia_unsupported_chipset || f.below_common_switch;
    let direct = f.below_common_switch && !f.acs_redirects;
    let mut reason = if f.nvidia_unsupported_chipset {
        format!(
            "nv_grdma_pci_topology_supported: this host bridge is flagged NV_FLAG_PCI_P2P_UNSUPPORTED_CHIPSET (_checkP2pChipsetSupport): {}",
            if allowed { "allowed below the common switch" } else { "refused without a common switch" }
        )
    } else {
        format!(
            "nv_grdma_pci_topology_supported allows: it never asks P2PDMA (no ACS, IOMMU, host bridge whitelist or CONFIG_PCI_P2PDMA check); {}",
            if f.grdma_override.is_none() {
                "the registry was not read: NVreg_GrdmaPciTopoCheckOverride=1 or 2 (/proc/driver/nvidia/params) would force allow or deny"
            } else {
                "NVreg_GrdmaPciTopoCheckOverride is 0: the driver's own check"
            }
        )
    };
    if f.acs_redirects {
        reason.push_str("; WARNING: ACS redirects this path, so peer traffic goes up through the root complex");
    }
    match f.iommu {
        Some(IommuMode::Translated) => reason.push_str("; WARNING: the IOMMU translates: the peer BAR is mapped with dma_map_resource as an IOVA, through the root complex"),
        None => reason.push_str("; the IOMMU mode is unknown: with a translating IOMMU the route is through the root complex"),
        _ => {}
    }
    if !f.below_common_switch {
        reason.push_str("; WARNING: no common switch: peer traffic crosses the root complex, whether or not it forwards peer traffic well");
    } else if direct && f.iommu != Some(IommuMode::Translated) {
        reason.push_str("; an ACS redirect or a translating IOMMU would send it through the root complex");
    }
    if !f.map_type.supported() {
        reason.push_str(&format!("; the kernel's P2PDMA {} but is not asked", map_type_words(f.map_type)));
    }
    StackVerdict {
        consults_p2pdma: false,
        allowed: Some(allowed),
        route: if allowed { dma_map_resource_route(f, direct) } else { None },
        on_refusal: OnRefusal::NotAsked,
        log: None,
        reason,
        ..base(stack, f)
    }
}

/// `NVreg_GrdmaPciTopoCheckOverride` 1 (allow) or 2 (deny): nv_grdma_pci_topology_supported
/// returns it before any topology check (only a coherent platform is decided earlier).
fn nvidia_forced(stack: Stack, f: &PairFacts, allow: bool) -> StackVerdict {
    let direct = f.below_common_switch && !f.acs_redirects;
    let mut reason = format!(
        "nv_grdma_pci_topology_supported: NVreg_GrdmaPciTopoCheckOverride={} forces {} whatever the topology; it never asks P2PDMA",
        if allow { 1 } else { 2 },
        if allow { "allow" } else { "deny" }
    );
    if allow && !direct {
        reason.push_str("; WARNING: no common switch or an ACS redirect: peer traffic goes through the root complex");
    }
    StackVerdict {
        consults_p2pdma: false,
        allowed: Some(allow),
        route: if allow { dma_map_resource_route(f, direct) } else { None },
        on_refusal: OnRefusal::NotAsked,
        log: None,
        reason,
        ..base(stack, f)
    }
}

/// NCCL's path types, in its order (graph.h), for the classes nvidia-smi prints: NCCL has one
/// CPU node per NUMA node, so its PHB covers nvidia-smi's PHB and NODE.
fn nccl_path(c: PathClass) -> (u8, &'static str) {
    match c {
        PathClass::X => (0, "LOC"),
        PathClass::PIX => (4, "PIX"),
        PathClass::PXB => (5, "PXB"),
        PathClass::PHB | PathClass::NODE => (8, "PHB"),
        PathClass::SYS => (9, "SYS"),
    }
}

/// `ncclTopoCheckP2p`: default level PXB; SYS on x86 AMD with at most two GPUs;
/// `NCCL_P2P_DISABLE=1` or `NCCL_P2P_LEVEL` override (`ncclGetUserP2pLevel`).
fn nccl_p2p(f: &PairFacts) -> StackVerdict {
    let (path, name) = nccl_path(f.path_class);
    let (level, level_words) = nccl::p2p_level(&f.nccl_env, f.amd_cpu_few_gpus);
    let yes = path <= level;
    let ignored = nccl::ignored(&f.nccl_env, "NCCL_P2P_LEVEL").map(|i| format!("; {i}")).unwrap_or_default();
    StackVerdict {
        consults_p2pdma: false,
        allowed: Some(yes),
        route: if yes { None } else { Some(Route::HostMemory) },
        on_refusal: OnRefusal::HostMemory,
        log: None,
        reason: format!(
            "ncclTopoCheckP2p: path {name} (nvidia-smi {}), NCCL_P2P_LEVEL {level_words}: {}; NVML must also report P2P read/write OK{ignored}",
            f.path_class.as_str(),
            if yes { "P2P transport" } else { "no P2P, NCCL uses shared host memory" }
        ),
        ..base(Stack::NcclP2p, f)
    }
}

/// `ncclTopoCheckGdr`: default level P2C (NCCL_NET_GDR_C2C=1), so PIX and PXB get GDR and
/// PHB and SYS do not; `NCCL_NET_GDR_LEVEL` overrides, `NCCL_NET_GDR_READ` decides sends.
/// The mapping itself is nvidia-peermem's or the dma-buf exporter's.
fn nccl_gdr(f: &PairFacts) -> StackVerdict {
    let (path, name) = nccl_path(f.path_class);
    let (level, level_words) = nccl::gdr_level(&f.nccl_env);
    let yes = path <= level;
    let direct = f.below_common_switch && !f.acs_redirects;
    let ignored = nccl::ignored(&f.nccl_env, "NCCL_NET_GDR_LEVEL").map(|i| format!("; {i}")).unwrap_or_default();
    let what = if yes {
        format!(
            "GPUDirect RDMA for receives (mapped by nvidia-peermem or the dma-buf exporter); {}",
            nccl::gdr_read(&f.nccl_env)
        )
    } else {
        "no GPUDirect RDMA, the NIC reads and writes through host memory (NCCL_NET_GDR_LEVEL overrides)".to_string()
    };
    StackVerdict {
        consults_p2pdma: false,
        allowed: Some(yes),
        route: if yes { dma_map_resource_route(f, direct) } else { Some(Route::HostMemory) },
        on_refusal: OnRefusal::HostMemory,
        log: None,
        reason: format!(
            "ncclTopoCheckGdr: path {name} (nvidia-smi {}), NCCL_NET_GDR_LEVEL {level_words}: {what}{ignored}",
            f.path_class.as_str()
        ),
        ..base(Stack::NcclGdr, f)
    }
}

/// The facts for one pair from the engine and its verdict.
pub fn facts(engine: &Engine<'_>, v: &PairVerdict, provider: usize, client: usize) -> PairFacts {
    let m = &engine.topo.machine;
    let (p, c) = (engine.device(provider), engine.device(client));
    let dev = |d: &crate::model::Device| DeviceFacts {
        vendor: d.vendor,
        class: d.class,
        driver: d.driver.clone(),
        p2pmem: d.p2pmem.is_some(),
    };
    let iommu = m.kernel.iommu_mode.or(match m.iommu {
        Some(false) => Some(IommuMode::Off),
        _ => None,
    });
    let arm = m.arch.as_deref().is_some_and(|a| a == "aarch64" || a == "arm64");
    let flagged_bridge = |name: &str| {
        engine.host_bridge_info().iter().any(|b| {
            b.host_bridge == name
                && b.id.as_deref().is_some_and(|id| id.starts_with("1def:") || id.starts_with("10de:"))
        })
    };
    let nvidia_gpus = engine.topo.devices.iter().filter(|d| d.vendor == 0x10de && d.class >> 16 == 0x03).count();
    let x86 = m.arch.as_deref().is_none_or(|a| a == "x86_64");
    PairFacts {
        client_name: v.client.clone(),
        provider: dev(p),
        client: dev(c),
        map_type: v.map_type,
        certain: v.certain,
        below_common_switch: v.common_upstream.is_some(),
        acs_redirects: !v.acs_redirect.is_empty(),
        path_class: engine.path_class(provider, client),
        iommu,
        kernel_log: v.kernel_log.first().cloned(),
        nvidia_unsupported_chipset: arm && flagged_bridge(&p.host_bridge),
        amd_cpu_few_gpus: x86 && m.cpu_vendor.as_deref() == Some("AuthenticAMD") && nvidia_gpus <= 2,
        nccl_env: m.nccl_env.clone(),
        release: crate::kernel::release(m).map(|r| (r.major, r.minor)),
        modules: m.modules.clone(),
        grdma_override: stack_inputs::grdma_override(&m.nvidia_registry),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NVIDIA_GPU: DeviceFacts = DeviceFacts { vendor: 0x10de, class: 0x030200, driver: None, p2pmem: false };
    const AMD_GPU: DeviceFacts = DeviceFacts { vendor: 0x1002, class: 0x030000, driver: None, p2pmem: false };
    const INTEL_GPU: DeviceFacts = DeviceFacts { vendor: 0x8086, class: 0x030000, driver: None, p2pmem: false };
    const MLX5: DeviceFacts = DeviceFacts { vendor: 0x15b3, class: 0x020700, driver: None, p2pmem: false };
    const NVME: DeviceFacts = DeviceFacts { vendor: 0x144d, class: 0x010802, driver: None, p2pmem: true };

    /// Two root ports of a host bridge not on the whitelist (Intel, two sockets): refused.
    fn refused(provider: DeviceFacts, client: DeviceFacts) -> PairFacts {
        PairFacts {
            client_name: "0000:81:00.0".into(),
            provider,
            client,
            map_type: MapType::NotSupported,
            certain: true,
            below_common_switch: false,
            acs_redirects: false,
            path_class: PathClass::PHB,
            iommu: Some(IommuMode::Off),
            kernel_log: Some("0000:81:00.0: cannot be used for peer-to-peer DMA as the client and provider (0000:01:00.0) do not share an upstream bridge or whitelisted host bridge".into()),
            nvidia_unsupported_chipset: false,
            amd_cpu_few_gpus: false,
            nccl_env: BTreeMap::new(),
            release: None,
            modules: None,
            grdma_override: None,
        }
    }

    /// Below one switch, no ACS redirect.
    fn below_switch(provider: DeviceFacts, client: DeviceFacts, iommu: IommuMode) -> PairFacts {
        PairFacts {
            map_type: MapType::BusAddr,
            below_common_switch: true,
            path_class: PathClass::PIX,
            iommu: Some(iommu),
            kernel_log: None,
            ..refused(provider, client)
        }
    }

    fn get(v: &[StackVerdict], s: Stack) -> &StackVerdict {
        v.iter().find(|x| x.stack == s).unwrap_or_else(|| panic!("{} missing from {v:?}", s.as_str()))
    }

    #[test]
    fn stack_names_parse_back_and_unknown_is_refused() {
        for s in Stack::ALL {
            assert_eq!(Stack::parse(s.as_str()).ok(), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!(Stack::parse("rdma").unwrap_err().to_string().contains("block, nvmet_rdma"));
    }

    #[test]
    fn applicable_stacks_follow_device_classes() {
        let names = |f: &PairFacts| applicable(f).iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
        assert_eq!(names(&refused(NVIDIA_GPU, MLX5)), "nvmet_rdma,vfio_dmabuf,nvidia_peermem,nvidia_dmabuf,nccl_gdr");
        assert_eq!(
            names(&refused(NVIDIA_GPU, NVME)),
            "block,nvmet_rdma,vfio_dmabuf,nvidia_dmabuf,gds_nvfs,gds_p2pdma,io_uring_fixed"
        );
        assert_eq!(names(&refused(NVIDIA_GPU, NVIDIA_GPU)), "vfio_dmabuf,nvidia_dmabuf,nccl_p2p");
        assert_eq!(names(&refused(AMD_GPU, MLX5)), "nvmet_rdma,vfio_dmabuf,amdgpu");
        assert_eq!(names(&refused(INTEL_GPU, MLX5)), "nvmet_rdma,vfio_dmabuf,xe");
        let i915 = DeviceFacts { driver: Some("i915".into()), ..INTEL_GPU };
        assert_eq!(names(&refused(i915, MLX5)), "nvmet_rdma,vfio_dmabuf");
        assert_eq!(names(&refused(NVME, NVME)), "block,nvmet_rdma,vfio_dmabuf,io_uring_fixed");
    }

    #[test]
    fn pci_p2pdma_map_type_block_refused_is_an_error_with_the_kernel_line() {
        // blk_dma_map_iter_start → pci_p2pdma_state → pci_p2pdma_map_type
        let f = refused(NVME, NVME);
        let v = judge(&f);
        let b = get(&v, Stack::Block);
        assert!(b.consults_p2pdma);
        assert_eq!((b.allowed, b.route, b.on_refusal), (Some(false), None, OnRefusal::Error));
        assert_eq!(b.log, f.kernel_log);
        assert!(b.reason.contains("BLK_STS_INVAL"));
    }

    #[test]
    fn pci_p2pdma_map_type_block_keeps_bus_address_under_a_translating_iommu() {
        // pci_p2pdma_map_type: PCI_P2PDMA_MAP_BUS_ADDR whatever the IOMMU does
        let v = judge(&below_switch(NVME, NVME, IommuMode::Translated));
        let b = get(&v, Stack::Block);
        assert_eq!((b.allowed, b.route, b.log.as_deref()), (Some(true), Some(Route::BusAddress), None));
        let thru = PairFacts { map_type: MapType::ThruHostBridge, ..refused(NVME, NVME) };
        assert_eq!(get(&judge(&thru), Stack::Block).route, Some(Route::RootComplex));
    }

    #[test]
    fn pci_p2pdma_map_type_unknown_when_acs_unread() {
        // pci_p2pdma_map_type: the answer rests on ACS that could not be read
        let f = PairFacts { certain: false, ..below_switch(NVME, NVME, IommuMode::Off) };
        assert_eq!(get(&judge(&f), Stack::Block).allowed, None);
    }

    #[test]
    fn nvmet_p2pmem_ns_enable_refused_falls_back_to_host_memory() {
        let v = judge(&refused(NVME, MLX5));
        let n = get(&v, Stack::NvmetRdma);
        assert_eq!((n.allowed, n.route, n.on_refusal), (Some(false), Some(Route::HostMemory), OnRefusal::HostMemory));
        assert!(n.log.is_some() && n.reason.contains("nvmet_rdma_alloc_rsp"));
    }

    #[test]
    fn vfio_pci_dma_buf_attach_refused_is_einval() {
        let v = judge(&refused(NVIDIA_GPU, MLX5));
        let x = get(&v, Stack::VfioDmabuf);
        assert_eq!((x.allowed, x.on_refusal), (Some(false), OnRefusal::Error));
        assert!(x.reason.contains("-EINVAL"));
    }

    #[test]
    fn amdgpu_dma_buf_attach_no_moves_the_buffer_to_system_memory() {
        let v = judge(&refused(AMD_GPU, MLX5));
        let a = get(&v, Stack::Amdgpu);
        assert!(a.consults_p2pdma);
        assert_eq!((a.allowed, a.route, a.on_refusal), (Some(false), Some(Route::HostMemory), OnRefusal::HostMemory));
        assert_eq!(a.log, None, "pci_p2pdma_distance(..., false) is quiet");
        assert!(a.reason.contains("system memory"));
        assert!(a.reason.contains("cannot leave VRAM fails"), "a buffer that cannot move: the import fails");
    }

    #[test]
    fn amdgpu_dma_buf_attach_yes_goes_through_the_root_complex_under_a_translating_iommu() {
        // dma_map_resource: an IOVA, even below one switch
        let f = below_switch(AMD_GPU, MLX5, IommuMode::Translated);
        assert_eq!(get(&judge(&f), Stack::Amdgpu).route, Some(Route::RootComplex));
        let f = below_switch(AMD_GPU, MLX5, IommuMode::Passthrough);
        let a = judge(&f);
        assert_eq!(
            (get(&a, Stack::Amdgpu).allowed, get(&a, Stack::Amdgpu).route),
            (Some(true), Some(Route::BusAddress))
        );
    }

    #[test]
    fn xe_dma_buf_attach_no_moves_or_fails_vram_only() {
        let v = judge(&refused(INTEL_GPU, MLX5));
        let x = get(&v, Stack::Xe);
        assert_eq!((x.allowed, x.route), (Some(false), Some(Route::HostMemory)));
        assert!(x.reason.contains("-EOPNOTSUPP"));
        let f = below_switch(INTEL_GPU, MLX5, IommuMode::Translated);
        assert_eq!(get(&judge(&f), Stack::Xe).route, Some(Route::RootComplex));
    }

    #[test]
    fn nv_grdma_pci_topology_supported_allows_what_p2pdma_refuses() {
        let v = judge(&refused(NVIDIA_GPU, MLX5));
        for s in [Stack::NvidiaPeermem, Stack::NvidiaDmabuf] {
            let n = get(&v, s);
            assert!(!n.consults_p2pdma);
            assert_eq!(
                (n.allowed, n.route, n.on_refusal, n.log.as_deref()),
                (Some(true), Some(Route::RootComplex), OnRefusal::NotAsked, None)
            );
            assert!(n.reason.contains("never asks P2PDMA") && n.reason.contains("refuses the pair"), "{}", n.reason);
        }
    }

    #[test]
    fn nv_grdma_pci_topology_supported_route_by_bus_address_only_without_redirect_and_translation() {
        let f = below_switch(NVIDIA_GPU, MLX5, IommuMode::Off);
        assert_eq!(get(&judge(&f), Stack::NvidiaPeermem).route, Some(Route::BusAddress));
        let f = below_switch(NVIDIA_GPU, MLX5, IommuMode::Translated);
        let n = judge(&f);
        assert_eq!(get(&n, Stack::NvidiaPeermem).route, Some(Route::RootComplex));
        assert!(get(&n, Stack::NvidiaPeermem).reason.contains("IOMMU translates"));
        let f = PairFacts {
            acs_redirects: true,
            map_type: MapType::NotSupported,
            ..below_switch(NVIDIA_GPU, MLX5, IommuMode::Passthrough)
        };
        let n = judge(&f);
        assert_eq!(get(&n, Stack::NvidiaDmabuf).route, Some(Route::RootComplex));
        assert!(get(&n, Stack::NvidiaDmabuf).reason.contains("ACS redirects"));
    }

    #[test]
    fn nv_grdma_pci_topology_supported_flagged_chipset_needs_a_common_switch() {
        // _checkP2pChipsetSupport: TH500, Ampere Altra, AmpereOne
        let f = PairFacts { nvidia_unsupported_chipset: true, ..refused(NVIDIA_GPU, MLX5) };
        let n = judge(&f);
        assert_eq!((get(&n, Stack::NvidiaPeermem).allowed, get(&n, Stack::NvidiaPeermem).route), (Some(false), None));
        let f = PairFacts { nvidia_unsupported_chipset: true, ..below_switch(NVIDIA_GPU, MLX5, IommuMode::Off) };
        assert_eq!(get(&judge(&f), Stack::NvidiaPeermem).allowed, Some(true));
    }

    #[test]
    fn io_pin_pages_never_takes_p2p_pages() {
        let v = judge(&below_switch(NVME, NVME, IommuMode::Off));
        let u = get(&v, Stack::IoUringFixed);
        assert_eq!((u.consults_p2pdma, u.allowed, u.on_refusal), (false, Some(false), OnRefusal::Error));
        assert!(u.reason.contains("FOLL_PCI_P2PDMA"));
    }

    #[test]
    fn gds_nvfs_unknown_and_gds_p2pdma_follows_pci_p2pdma_map_type() {
        let v = judge(&refused(NVIDIA_GPU, NVME));
        let n = get(&v, Stack::GdsNvfs);
        assert_eq!((n.consults_p2pdma, n.allowed, n.on_refusal), (false, None, OnRefusal::NotAsked));
        let p = get(&v, Stack::GdsP2pdma);
        assert_eq!((p.consults_p2pdma, p.allowed), (true, Some(false)));
    }

    #[test]
    fn nccl_topo_check_p2p_default_level_pxb() {
        // ncclTopoCheckP2p (src/graph/paths.cc)
        for (class, yes) in [
            (PathClass::PIX, true),
            (PathClass::PXB, true),
            (PathClass::PHB, false),
            (PathClass::NODE, false),
            (PathClass::SYS, false),
        ] {
            let f = PairFacts { path_class: class, ..refused(NVIDIA_GPU, NVIDIA_GPU) };
            let p = &judge(&f)[2];
            assert_eq!((p.stack, p.allowed), (Stack::NcclP2p, Some(yes)), "{class:?}");
            assert_eq!(p.route == Some(Route::HostMemory), !yes);
        }
        let f = PairFacts { path_class: PathClass::SYS, amd_cpu_few_gpus: true, ..refused(NVIDIA_GPU, NVIDIA_GPU) };
        assert_eq!(get(&judge(&f), Stack::NcclP2p).allowed, Some(true), "x86 AMD with at most 2 GPUs: SYS");
    }

    #[test]
    fn nccl_topo_check_gdr_default_level_p2c() {
        // ncclTopoCheckGdr (src/graph/paths.cc)
        let f = refused(NVIDIA_GPU, MLX5);
        let g = judge(&f);
        let g = get(&g, Stack::NcclGdr);
        assert_eq!((g.allowed, g.route), (Some(false), Some(Route::HostMemory)));
        assert!(g.reason.contains("path PHB (nvidia-smi PHB)") && g.reason.contains("P2C (default"), "{}", g.reason);
        let f = PairFacts { path_class: PathClass::SYS, ..refused(MLX5, NVIDIA_GPU) };
        assert_eq!(get(&judge(&f), Stack::NcclGdr).allowed, Some(false));
        let f = below_switch(NVIDIA_GPU, MLX5, IommuMode::Off);
        let g = judge(&f);
        assert_eq!(
            (get(&g, Stack::NcclGdr).allowed, get(&g, Stack::NcclGdr).route),
            (Some(true), Some(Route::BusAddress))
        );
    }

    fn with_env(f: PairFacts, pairs: &[(&str, &str)]) -> PairFacts {
        PairFacts { nccl_env: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..f }
    }

    #[test]
    fn nccl_topo_check_p2p_follows_nccl_p2p_level_and_disable() {
        // ncclTopoCheckP2p → ncclGetUserP2pLevel → ncclGetLevel (src/graph/paths.cc)
        let phb = PairFacts { path_class: PathClass::PHB, ..refused(NVIDIA_GPU, NVIDIA_GPU) };
        let p2p = |f: &PairFacts| get(&judge(f), Stack::NcclP2p).clone();
        assert_eq!(p2p(&phb).allowed, Some(false));
        let sys = p2p(&with_env(phb.clone(), &[("NCCL_P2P_LEVEL", "SYS")]));
        assert_eq!((sys.allowed, sys.route), (Some(true), None));
        assert!(sys.reason.contains("set: NCCL_P2P_LEVEL=SYS"), "{}", sys.reason);
        assert_eq!(p2p(&with_env(phb.clone(), &[("NCCL_P2P_LEVEL", "3")])).allowed, Some(true), "old 3 = PHB");
        let pix = PairFacts { path_class: PathClass::PIX, ..phb.clone() };
        let off = p2p(&with_env(pix.clone(), &[("NCCL_P2P_DISABLE", "1"), ("NCCL_P2P_LEVEL", "SYS")]));
        assert_eq!((off.allowed, off.route), (Some(false), Some(Route::HostMemory)), "disable beats level");
        let bad = p2p(&with_env(pix, &[("NCCL_P2P_LEVEL", "sys")]));
        assert_eq!(bad.allowed, Some(true), "unknown name: the default PXB");
        assert!(bad.reason.contains("ignored"), "{}", bad.reason);
    }

    #[test]
    fn nccl_topo_check_gdr_follows_nccl_net_gdr_level_and_read() {
        // ncclTopoCheckGdr (src/graph/paths.cc): NCCL_NET_GDR_LEVEL, NCCL_NET_GDR_READ
        let phb = refused(NVIDIA_GPU, MLX5);
        let gdr = |f: &PairFacts| get(&judge(f), Stack::NcclGdr).clone();
        let g = gdr(&with_env(phb.clone(), &[("NCCL_NET_GDR_LEVEL", "PHB")]));
        assert_eq!((g.allowed, g.route), (Some(true), Some(Route::RootComplex)));
        assert!(g.reason.contains("set: NCCL_NET_GDR_LEVEL=PHB"), "{}", g.reason);
        let pix = below_switch(NVIDIA_GPU, MLX5, IommuMode::Off);
        assert_eq!(gdr(&with_env(pix.clone(), &[("NCCL_NET_GDR_LEVEL", "LOC")])).allowed, Some(false));
        assert_eq!(gdr(&with_env(pix.clone(), &[("NCCL_NET_GDR_LEVEL", "0")])).allowed, Some(false), "old 0 = LOC");
        let r = gdr(&with_env(pix.clone(), &[("NCCL_NET_GDR_READ", "0")]));
        assert_eq!(r.allowed, Some(true));
        assert!(r.reason.contains("NCCL_NET_GDR_READ=0"), "{}", r.reason);
        assert!(gdr(&pix).reason.contains("Ampere"), "the default read rule is said");
        let c2c_off = gdr(&with_env(pix, &[("NCCL_NET_GDR_C2C", "0")]));
        assert_eq!(c2c_off.allowed, Some(true), "PIX is within PXB too");
    }

    #[test]
    fn vfio_pci_dma_buf_attach_exists_from_6_19_and_gds_p2pdma_from_6_2() {
        let f = |release| PairFacts { release, ..refused(NVIDIA_GPU, NVME) };
        let v = judge(&f(Some((6, 18))));
        let x = get(&v, Stack::VfioDmabuf);
        assert_eq!((x.allowed, x.route, x.on_refusal, x.log.as_deref()), (None, None, OnRefusal::NotAsked, None));
        assert!(x.reason.starts_with("does not apply") && x.reason.contains("6.19"), "{}", x.reason);
        assert_eq!(get(&v, Stack::GdsP2pdma).allowed, Some(false), "6.18 has GDS's P2PDMA mode");
        assert!(get(&judge(&f(Some((6, 1)))), Stack::GdsP2pdma).reason.starts_with("does not apply"));
        assert_eq!(get(&judge(&f(Some((6, 19)))), Stack::VfioDmabuf).allowed, Some(false));
        assert_eq!(get(&judge(&f(None)), Stack::VfioDmabuf).allowed, Some(false), "unknown release: the newest");
    }

    #[test]
    fn nvmet_p2pmem_ns_enable_does_not_apply_without_the_providers_p2pmem() {
        let v = judge(&refused(NVIDIA_GPU, MLX5));
        let n = get(&v, Stack::NvmetRdma);
        assert_eq!((n.allowed, n.route, n.log.as_deref()), (None, None, None));
        assert!(n.reason.contains("does not apply") && n.reason.contains("p2pmem"), "{}", n.reason);
    }

    #[test]
    fn stacks_follow_loaded_modules_and_bound_drivers() {
        let names = |f: &PairFacts| judge(f).iter().map(|s| s.stack.as_str()).collect::<Vec<_>>().join(",");
        let modules = |m: &[&str]| Some(m.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let f = PairFacts { modules: modules(&["nvidia", "nvidia_peermem"]), ..refused(NVIDIA_GPU, MLX5) };
        assert_eq!(names(&f), "vfio_dmabuf,nvidia_peermem,nvidia_dmabuf,nccl_gdr");
        assert!(judge(&f).iter().all(|s| !s.reason.contains("is unknown")), "every module known");
        let f = PairFacts { modules: modules(&["nvidia"]), ..refused(NVIDIA_GPU, MLX5) };
        assert_eq!(names(&f), "vfio_dmabuf,nvidia_dmabuf,nccl_gdr", "no nvidia_peermem loaded");
        let f = refused(NVIDIA_GPU, MLX5);
        assert!(get(&judge(&f), Stack::NvidiaPeermem).reason.contains("whether nvidia_peermem is loaded is unknown"));
        let vfio = DeviceFacts { driver: Some("vfio-pci".into()), ..NVIDIA_GPU };
        assert_eq!(names(&refused(vfio, MLX5)), "nvmet_rdma,vfio_dmabuf,nvidia_peermem", "the GPU is not nvidia's");
        let amd = DeviceFacts { driver: Some("amdgpu".into()), ..AMD_GPU };
        let f = PairFacts { modules: modules(&[]), ..refused(amd, NVME) };
        assert_eq!(names(&f), "block,vfio_dmabuf,amdgpu,io_uring_fixed", "bound amdgpu, even built in");
    }

    #[test]
    fn nv_grdma_pci_topology_supported_registry_override_forces_allow_or_deny() {
        // NVreg_GrdmaPciTopoCheckOverride: 1 allow, 2 deny, before the chipset check
        let f = PairFacts { grdma_override: Some(2), ..below_switch(NVIDIA_GPU, MLX5, IommuMode::Off) };
        let n = judge(&f);
        let n = get(&n, Stack::NvidiaPeermem);
        assert_eq!((n.allowed, n.route), (Some(false), None));
        assert!(n.reason.contains("=2 forces deny"), "{}", n.reason);
        let f = PairFacts { grdma_override: Some(1), nvidia_unsupported_chipset: true, ..refused(NVIDIA_GPU, MLX5) };
        let n = judge(&f);
        assert_eq!(get(&n, Stack::NvidiaDmabuf).allowed, Some(true), "1 beats the flagged chipset");
        assert_eq!(get(&n, Stack::NvidiaDmabuf).route, Some(Route::RootComplex));
        let f = PairFacts { grdma_override: Some(0), ..refused(NVIDIA_GPU, MLX5) };
        assert!(get(&judge(&f), Stack::NvidiaPeermem).reason.contains("is 0: the driver's own check"));
    }
}
