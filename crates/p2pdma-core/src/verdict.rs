//! The kernel's P2PDMA verdict (`calc_map_type_and_dist`, `pci_p2pdma_distance_many`,
//! `pci_p2pmem_find_many`), reproduced over a [`Topology`], with the reasons and fixes.
//!
//! Two levels: [`Engine::pair`] is allocation-free (map type and distance, for matrices of
//! millions of pairs); [`Engine::explain`] walks the same rules again and records everything.

use std::collections::HashMap;

use serde::Serialize;

use crate::bdf::Bdf;
use crate::kernel;
use crate::model::WhitelistEntry;
use crate::model::{Device, Topology};
use crate::whitelist;
use crate::Error;

/// `enum pci_p2pdma_map_type`, the outcomes a caller can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MapType {
    /// `PCI_P2PDMA_MAP_BUS_ADDR`: below a common bridge, by PCI bus address.
    BusAddr,
    /// `PCI_P2PDMA_MAP_THRU_HOST_BRIDGE`: routed through the root complex.
    ThruHostBridge,
    /// `PCI_P2PDMA_MAP_NOT_SUPPORTED`: mapping fails (EREMOTEIO / EINVAL).
    NotSupported,
}

impl MapType {
    pub fn as_str(self) -> &'static str {
        match self {
            MapType::BusAddr => "bus_addr",
            MapType::ThruHostBridge => "thru_host_bridge",
            MapType::NotSupported => "not_supported",
        }
    }

    pub fn supported(self) -> bool {
        self != MapType::NotSupported
    }
}

/// What the fast path returns for one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PairResult {
    pub map_type: MapType,
    /// The kernel's distance; None when not supported.
    pub distance: Option<u32>,
}

const NONE: u32 = u32::MAX;

/// How a host bridge fares against the whitelist.
#[derive(Debug, Clone, Copy)]
enum BridgeLookup {
    /// No function at 00.0 nor a root port first on the root bus: the kernel finds nothing.
    NoRootDevice,
    NotListed {
        vendor: u16,
        device: u16,
    },
    Listed {
        vendor: u16,
        device: u16,
        /// Index into the whitelist in force.
        entry: u32,
    },
}

/// Precomputed indexes over a topology; cheap to build, shared by every verdict.
pub struct Engine<'t> {
    pub topo: &'t Topology,
    index: HashMap<Bdf, u32>,
    /// `pci_upstream_bridge()`: through the PF for a VF; NONE on a root bus.
    up: Vec<u32>,
    /// ACS redirect bits per device; `None` when unknown.
    redirect: Vec<Option<u16>>,
    host_bridge: Vec<u32>,
    bridges: Vec<BridgeLookup>,
    bridge_root: Vec<Option<u32>>,
    cpu_allows: bool,
    /// The release judged predates `cpu_supports_p2pdma` (5.9): a Zen CPU is no help.
    cpu_rule_absent: bool,
    /// No input said which CPU this is (an import without cpuinfo or lscpu): the kernel's
    /// CPU rule (`cpu_supports_p2pdma`) could allow what the rest refuses.
    cpu_unknown: bool,
    /// The host bridge whitelist of the kernel being judged.
    whitelist: Vec<WhitelistEntry>,
    /// The kernel is built without CONFIG_PCI_P2PDMA: nothing is ever supported.
    p2pdma_absent: bool,
}

impl<'t> Engine<'t> {
    pub fn new(topo: &'t Topology) -> Result<Self, Error> {
        let index: HashMap<Bdf, u32> = topo.devices.iter().enumerate().map(|(i, d)| (d.bdf, i as u32)).collect();
        let lookup = |b: Option<Bdf>, what: &str, dev: &Device| -> Result<u32, Error> {
            match b {
                None => Ok(NONE),
                Some(b) => index.get(&b).copied().ok_or_else(|| {
                    Error::Inconsistent(format!("{} names {what} {b}, which is not in the topology", dev.bdf))
                }),
            }
        };
        let mut raw_up = Vec::with_capacity(topo.devices.len());
        let mut physfn = Vec::with_capacity(topo.devices.len());
        for d in &topo.devices {
            raw_up.push(lookup(d.upstream, "upstream bridge", d)?);
            physfn.push(lookup(d.physfn, "physical function", d)?);
        }
        let up: Vec<u32> = (0..topo.devices.len())
            .map(|i| if physfn[i] != NONE { raw_up[physfn[i] as usize] } else { raw_up[i] })
            .collect();
        let hb_index: HashMap<&str, u32> =
            topo.host_bridges.iter().enumerate().map(|(i, h)| (h.name.as_str(), i as u32)).collect();
        let host_bridge = topo
            .devices
            .iter()
            .map(|d| {
                hb_index.get(d.host_bridge.as_str()).copied().ok_or_else(|| {
                    Error::Inconsistent(format!("{} is under unknown host bridge {}", d.bdf, d.host_bridge))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // `pci_host_bridge_dev`: the first device on the root bus, if it is 00.0 or a root port.
        let mut bridge_root: Vec<Option<u32>> = vec![None; topo.host_bridges.len()];
        for (i, d) in topo.devices.iter().enumerate() {
            let hb = &topo.host_bridges[host_bridge[i] as usize];
            if d.upstream.is_some() || d.physfn.is_some() || d.bdf.bus != hb.bus || d.bdf.domain != hb.domain {
                continue;
            }
            let slot = &mut bridge_root[host_bridge[i] as usize];
            if slot.is_none_or(|j| topo.devices[j as usize].bdf.devfn() > d.bdf.devfn()) {
                *slot = Some(i as u32);
            }
        }
        let (whitelist, _) = kernel::whitelist_in_force(&topo.machine);
        let bridges = bridge_root
            .iter()
            .map(|root| match root.map(|r| &topo.devices[r as usize]) {
                Some(d) if d.bdf.devfn() == 0 || d.port_type == Some(crate::config::PortType::RootPort) => {
                    match whitelist.iter().position(|e| e.matches(d.vendor, d.device)) {
                        Some(i) => BridgeLookup::Listed { vendor: d.vendor, device: d.device, entry: i as u32 },
                        None => BridgeLookup::NotListed { vendor: d.vendor, device: d.device },
                    }
                }
                _ => BridgeLookup::NoRootDevice,
            })
            .collect();
        let m = &topo.machine;
        let rule = whitelist::cpu_rule_in_release(kernel::release(m).map(|r| (r.major, r.minor)));
        let zen = whitelist::cpu_allows_p2pdma(m.arch.as_deref(), m.cpu_vendor.as_deref(), m.cpu_family);
        Ok(Engine {
            topo,
            redirect: topo.devices.iter().map(|d| d.acs.redirect_bits()).collect(),
            index,
            up,
            host_bridge,
            bridges,
            bridge_root,
            cpu_allows: rule && zen,
            cpu_rule_absent: !rule && zen,
            cpu_unknown: rule && whitelist::cpu_rule_unknown(m.arch.as_deref(), m.cpu_vendor.as_deref(), m.cpu_family),
            whitelist,
            p2pdma_absent: kernel::p2pdma_absent(m),
        })
    }

    /// The index of a device by address.
    pub fn index_of(&self, bdf: Bdf) -> Option<usize> {
        self.index.get(&bdf).map(|&i| i as usize)
    }

    pub fn device(&self, i: usize) -> &'t Device {
        &self.topo.devices[i]
    }

    /// `pci_upstream_bridge()` of a device as an index (a VF's is its PF's); `u32::MAX` on a
    /// root bus. What grouping compares.
    pub(crate) fn upstream_of(&self, i: usize) -> u32 {
        self.up[i]
    }

    /// The index of a device's host bridge.
    pub(crate) fn host_bridge_of(&self, i: usize) -> u32 {
        self.host_bridge[i]
    }

    /// The kernel's walk. Calls `on_node(device, provider_side)` for every node whose ACS
    /// is checked on the way to a common device. Returns (distance, common device).
    #[inline]
    pub(crate) fn walk(&self, provider: u32, client: u32, mut on_node: impl FnMut(u32, bool)) -> (u32, Option<u32>) {
        let (mut a, mut dist_a, mut dist_b) = (provider, 0u32, 0u32);
        while a != NONE {
            dist_b = 0;
            on_node(a, true);
            let mut bb = client;
            while bb != NONE {
                if a == bb {
                    let mut c = client;
                    while c != a {
                        on_node(c, false);
                        c = self.up[c as usize];
                    }
                    return (dist_a + dist_b, Some(a));
                }
                bb = self.up[bb as usize];
                dist_b += 1;
            }
            a = self.up[a as usize];
            dist_a += 1;
        }
        (dist_a + dist_b, None)
    }

    /// Whether the host bridge(s) let the pair through (`host_bridge_whitelist`).
    fn bridges_allow(&self, provider: u32, client: u32) -> bool {
        let (ha, hb) = (self.host_bridge[provider as usize], self.host_bridge[client as usize]);
        let ok = |h: u32, same: bool| match self.bridges[h as usize] {
            BridgeLookup::Listed { entry, .. } => same || !self.whitelist[entry as usize].same_host_bridge_only,
            _ => false,
        };
        if ha == hb {
            ok(ha, true)
        } else {
            ok(ha, false) && ok(hb, false)
        }
    }

    /// Map type and distance for one provider/client pair, allocation-free.
    /// Unknown ACS is taken as no redirect here; [`Engine::explain`] says so.
    pub fn pair(&self, provider: usize, client: usize) -> PairResult {
        self.pair_assuming(provider, client, false, self.cpu_allows)
    }

    /// The map type if every device whose ACS is unknown did redirect.
    pub(crate) fn pair_if_redirected(&self, provider: usize, client: usize) -> MapType {
        self.pair_assuming(provider, client, true, self.cpu_allows).map_type
    }

    /// The map type if the unknown CPU were one the kernel's CPU rule allows; `None` when
    /// the CPU is known (the verdict does not rest on it).
    pub(crate) fn pair_if_cpu_allowed(&self, provider: usize, client: usize) -> Option<MapType> {
        self.cpu_unknown.then(|| self.pair_assuming(provider, client, false, true).map_type)
    }

    #[inline]
    fn pair_assuming(&self, provider: usize, client: usize, unknown_redirects: bool, cpu_allows: bool) -> PairResult {
        let mut redirects = false;
        let (dist, common) = self.walk(provider as u32, client as u32, |n, _| {
            redirects |= self.redirect[n as usize].map_or(unknown_redirects, |b| b != 0)
        });
        let map_type = if self.p2pdma_absent {
            MapType::NotSupported
        } else if common.is_some() && !redirects {
            MapType::BusAddr
        } else if cpu_allows || self.bridges_allow(provider as u32, client as u32) {
            MapType::ThruHostBridge
        } else {
            MapType::NotSupported
        };
        PairResult { map_type, distance: map_type.supported().then_some(dist) }
    }

    /// Whether the verdict holds whatever the ACS that could not be read says, and whatever
    /// the CPU no input named is.
    pub fn certain(&self, provider: usize, client: usize) -> bool {
        let map_type = self.pair(provider, client).map_type;
        map_type == self.pair_if_redirected(provider, client)
            && self.pair_if_cpu_allowed(provider, client).is_none_or(|alt| alt == map_type)
    }

    /// The hardware path class (`nvidia-smi topo -m`), allocation-free; see [`PathClass`].
    ///
    /// [`PathClass`]: crate::pathclass::PathClass
    pub fn path_class(&self, provider: usize, client: usize) -> crate::pathclass::PathClass {
        use crate::config::PortType;
        let mut switches = 0u32;
        let (_, common) = self.walk(provider as u32, client as u32, |n, _| {
            switches += u32::from(self.topo.devices[n as usize].port_type == Some(PortType::SwitchUpstream))
        });
        let (p, c) = (self.device(provider), self.device(client));
        crate::pathclass::PathClass::classify(
            provider == client,
            common.is_some(),
            switches,
            self.host_bridge[provider] == self.host_bridge[client],
            (p.numa_node, c.numa_node),
        )
    }

    /// `pci_p2pdma_distance_many`: the sum of distances, None if any client fails.
    pub fn distance_many(&self, provider: usize, clients: &[usize]) -> Option<u32> {
        if clients.is_empty() {
            return None;
        }
        clients.iter().try_fold(0u32, |sum, &c| self.pair(provider, c).distance.map(|d| sum + d))
    }

    /// Devices the kernel would offer as providers: a pool exists and it is published.
    pub fn published_providers(&self) -> impl Iterator<Item = usize> + '_ {
        self.topo
            .devices
            .iter()
            .enumerate()
            .filter(|(_, d)| d.p2pmem.as_ref().is_some_and(|p| p.published))
            .map(|(i, _)| i)
    }

    /// The kernel is built without CONFIG_PCI_P2PDMA: every verdict is not supported.
    pub fn p2pdma_absent(&self) -> bool {
        self.p2pdma_absent
    }

    /// A client that is not a PCI device and has no PCI parent: the kernel refuses it.
    pub fn explain_not_pci(&self, provider: usize, name: &str) -> PairVerdict {
        PairVerdict {
            provider: self.device(provider).bdf,
            client: name.to_string(),
            client_name: None,
            client_bdf: None,
            map_type: MapType::NotSupported,
            distance: None,
            hops: 0,
            common_upstream: None,
            path: Vec::new(),
            acs_redirect: Vec::new(),
            acs_unknown: Vec::new(),
            host_bridge: None,
            certain: true,
            reasons: vec![format!(
                "{}{name} is not a PCI device and has no PCI parent: the kernel refuses P2PDMA for it (software devices such as rxe or loop have no PCIe path)",
                if self.p2pdma_absent { format!("{}; and ", kernel::absent_reason(&self.topo.machine)) } else { String::new() }
            )],
            fixes: vec!["use a client that is a PCI device (for RDMA, a hardware RNIC rather than soft RoCE)".into()],
            kernel_log: vec![format!("{name}: cannot be used for peer-to-peer DMA as it is not a PCI device")],
            fix_costs: Vec::new(),
            fix_costs_note: None,
        }
    }

    pub(crate) fn path(&self, provider: u32, client: u32, common: Option<u32>) -> Vec<String> {
        let chain = |mut n: u32, stop: u32| {
            let mut out = Vec::new();
            while n != NONE {
                out.push(self.device(n as usize).bdf.to_string());
                if n == stop {
                    break;
                }
                n = self.up[n as usize];
            }
            out
        };
        match common {
            Some(c) => {
                let mut p = chain(provider, c);
                let mut down = chain(client, c);
                down.pop();
                down.reverse();
                p.extend(down);
                p
            }
            None => {
                let mut p = chain(provider, NONE);
                p.push(self.topo.host_bridges[self.host_bridge[provider as usize] as usize].name.clone());
                let hc = self.host_bridge[client as usize];
                if hc != self.host_bridge[provider as usize] {
                    p.push(self.topo.host_bridges[hc as usize].name.clone());
                }
                let mut down = chain(client, NONE);
                down.reverse();
                p.extend(down);
                p
            }
        }
    }

    pub(crate) fn host_bridge_check(&self, provider: usize, client: usize) -> HostBridgeCheck {
        let m = &self.topo.machine;
        let (ha, hb) = (self.host_bridge[provider], self.host_bridge[client]);
        let same = ha == hb;
        let bridges = if same {
            vec![self.describe_bridge(ha)]
        } else {
            vec![self.describe_bridge(ha), self.describe_bridge(hb)]
        };
        HostBridgeCheck {
            cpu_allows: self.cpu_allows,
            cpu_rule_absent: self.cpu_rule_absent,
            cpu: format!(
                "{} family {}",
                m.cpu_vendor.as_deref().unwrap_or("unknown vendor"),
                m.cpu_family.map(|f| format!("{f:#x}")).unwrap_or_else(|| "unknown".into())
            ),
            same_host_bridge: same,
            whitelist_allows: self.bridges_allow(provider as u32, client as u32),
            bridges,
        }
    }

    /// Every host bridge as the kernel identifies it for the whitelist.
    pub fn host_bridge_info(&self) -> Vec<BridgeVerdict> {
        (0..self.topo.host_bridges.len() as u32).map(|h| self.describe_bridge(h)).collect()
    }

    /// The CPU rule's answer for this machine.
    pub fn cpu_allows(&self) -> bool {
        self.cpu_allows
    }

    /// No input named the CPU: the CPU rule cannot be decided (see [`Engine::certain`]).
    pub fn cpu_unknown(&self) -> bool {
        self.cpu_unknown
    }

    fn describe_bridge(&self, h: u32) -> BridgeVerdict {
        let name = self.topo.host_bridges[h as usize].name.clone();
        let root_device = self.bridge_root[h as usize].map(|r| self.device(r as usize).bdf);
        let (id, entry, same) = match self.bridges[h as usize] {
            BridgeLookup::NoRootDevice => (None, None, false),
            BridgeLookup::NotListed { vendor, device } => (Some((vendor, device)), None, false),
            BridgeLookup::Listed { vendor, device, entry } => {
                let e = &self.whitelist[entry as usize];
                let label = if e.label.is_empty() { e.id() } else { e.label.clone() };
                (Some((vendor, device)), Some(label), e.same_host_bridge_only)
            }
        };
        BridgeVerdict {
            host_bridge: name,
            root_device,
            id: id.map(|(v, d)| format!("{v:04x}:{d:04x}")),
            entry,
            same_host_bridge_only: same,
        }
    }

    /// Providers × clients, compact cells (for `topo` and benchmarks).
    pub fn matrix(&self, providers: &[usize], clients: &[usize]) -> Vec<Vec<PairResult>> {
        providers.iter().map(|&p| clients.iter().map(|&c| self.pair(p, c)).collect()).collect()
    }
}

/// Which side of the common device an ACS finding sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Provider,
    Common,
    Client,
}

/// A device on the path whose ACS control redirects peer traffic upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcsRedirect {
    pub device: Bdf,
    /// The redirect bits that are set (of RR, CR, EC).
    pub bits: Vec<&'static str>,
    /// The whole ACS control register.
    pub ctrl: u16,
    /// Where the ACS capability sits in config space (for setpci).
    pub cap_offset: u16,
    pub side: Side,
}

/// The host bridge half of the verdict, when the kernel needed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostBridgeCheck {
    /// The CPU rule: AMD Zen (family 0x17) or newer passes everything through the host bridge.
    pub cpu_allows: bool,
    /// An AMD Zen CPU under a release before the CPU rule (5.9): the rule does not apply.
    pub cpu_rule_absent: bool,
    pub cpu: String,
    pub same_host_bridge: bool,
    pub whitelist_allows: bool,
    /// One entry per host bridge involved, in the kernel's order (provider's first).
    pub bridges: Vec<BridgeVerdict>,
}

/// One host bridge against the whitelist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BridgeVerdict {
    pub host_bridge: String,
    /// The device the kernel identifies the bridge by (first on the root bus).
    pub root_device: Option<Bdf>,
    /// Its vendor:device, None when the kernel finds no usable device.
    pub id: Option<String>,
    /// The whitelist entry that matched.
    pub entry: Option<String>,
    pub same_host_bridge_only: bool,
}

/// The full verdict for one provider/client pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairVerdict {
    pub provider: Bdf,
    /// The client as the kernel names it (BDF), or the name given for a non-PCI device.
    pub client: String,
    /// Its topology-file name, or the device name it was reached through (`nvme0n1`).
    pub client_name: Option<String>,
    pub client_bdf: Option<Bdf>,
    pub map_type: MapType,
    /// The kernel's distance; null when not supported.
    pub distance: Option<u32>,
    /// The hop count the kernel computed, even when the pair is refused.
    pub hops: u32,
    pub common_upstream: Option<Bdf>,
    /// Provider up to the common device (or host bridge) and down to the client.
    pub path: Vec<String>,
    pub acs_redirect: Vec<AcsRedirect>,
    /// Devices on the path whose ACS could not be read (needs root).
    pub acs_unknown: Vec<Bdf>,
    pub host_bridge: Option<HostBridgeCheck>,
    /// False when unreadable ACS could change the outcome.
    pub certain: bool,
    pub reasons: Vec<String>,
    pub fixes: Vec<String>,
    /// What the kernel logs when it evaluates this pair verbosely.
    pub kernel_log: Vec<String>,
    /// What each ACS fix costs in IOMMU groups (filled by `check`; empty elsewhere).
    pub fix_costs: Vec<crate::what_if::FixCost>,
    /// Whether any fix keeps the IOMMU groups apart, when fixes cost isolation.
    pub fix_costs_note: Option<String>,
}
