//! The reports behind the commands (`check`, `find`, `providers`, `topo`): plain structs that
//! serialize to the JSON contract and from which the human output is written.

use serde::Serialize;

use crate::bdf::Bdf;
use crate::model::{Bar, P2pMem, Topology};
use crate::pathclass::{DeviceClass, PathClass};
use crate::stacks::StackVerdict;
use crate::verdict::{Engine, MapType, PairResult, PairVerdict};
use crate::{resolve, Error, Target};

/// `p2pdma check PROVIDER CLIENT...`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub provider: Bdf,
    pub provider_name: Option<String>,
    pub p2pmem: Option<P2pMem>,
    /// Whether it publishes P2P memory now (`p2pmem/published`); false when its memory would
    /// be offered otherwise (a dma-buf export, a driver registering the BAR).
    pub publishes: bool,
    /// Its memory BARs (index, size, 64-bit, prefetchable, CPU and bus addresses).
    pub memory_bars: Vec<Bar>,
    /// `lspci -vv`'s ACS lines of the provider, where it has the capability.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acs: Option<String>,
    /// Overall: not_supported if any client is, else thru_host_bridge if any client is.
    pub map_type: MapType,
    /// `pci_p2pdma_distance_many`: the sum over clients; null when not supported.
    pub distance: Option<u32>,
    pub clients: Vec<PairVerdict>,
    pub notes: Vec<String>,
    /// False when unreadable ACS could change the answer: no client is refused for certain
    /// and some client's verdict rests on ACS that could not be read (`check` exits 3).
    pub certain: bool,
    /// The kernel judged: release, P2PDMA build and evidence, whitelist source.
    pub kernel: crate::kernel::KernelSummary,
    /// What the PCI devices above are (provider first, then each client's function), as
    /// lspci names them; empty names where the database has none.
    #[serde(default)]
    pub devices: Vec<DeviceNames>,
    /// Who would map each PCI client's pair, and what each stack decides (`crate::stacks`).
    pub stacks: Vec<StackVerdict>,
}

/// A PCI function's IDs and names from the PCI ID database.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceNames {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    pub class: u32,
    pub vendor_name: Option<String>,
    pub device_name: Option<String>,
    pub class_name: Option<String>,
}

impl DeviceNames {
    pub fn of(d: &crate::model::Device) -> Self {
        DeviceNames {
            bdf: d.bdf,
            vendor: d.vendor,
            device: d.device,
            class: d.class,
            vendor_name: d.vendor_name.clone(),
            device_name: d.device_name.clone(),
            class_name: d.class_name.clone(),
        }
    }
}

/// `p2pdma find CLIENT...`.
#[derive(Debug, Clone, Serialize)]
pub struct FindReport {
    /// The provider p2pdma shows for the kernel's choice: the closest published provider,
    /// the lowest address among ties (the kernel picks among ties at random).
    pub provider: Option<Bdf>,
    pub distance: Option<u32>,
    /// Every published provider with its total distance (null when unusable).
    pub candidates: Vec<Candidate>,
    /// The providers tied at the smallest distance.
    pub tied: Vec<Bdf>,
    pub reasons: Vec<String>,
    /// The kernel judged: release, P2PDMA build and evidence, whitelist source.
    pub kernel: crate::kernel::KernelSummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub provider: Bdf,
    pub name: Option<String>,
    pub distance: Option<u32>,
    pub available: u64,
    /// Whether it publishes P2P memory (false: a memory BAR, with `find --any-bar`).
    pub publishes: bool,
}

/// `p2pdma providers`: one row per device with a `p2pmem/` directory.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderRow {
    pub provider: Bdf,
    pub name: Option<String>,
    pub driver: Option<String>,
    pub size: u64,
    pub available: u64,
    pub published: bool,
    pub numa_node: Option<i32>,
}

/// Devices with memory (rows) × DMA-capable endpoints (columns), compact.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    /// Every DMA-capable endpoint whose memory can be offered: P2P memory or a memory BAR.
    pub providers: Vec<Bdf>,
    pub clients: Vec<Bdf>,
    /// `cells[p][c]`.
    pub cells: Vec<Vec<PairResult>>,
    /// The hardware layer, `path_classes[p][c]` (`nvidia-smi topo -m`'s meaning).
    pub path_classes: Vec<Vec<PathClass>>,
    /// Cells whose verdict rests on ACS that could not be read: `[p, c]` indices.
    pub uncertain: Vec<[usize; 2]>,
}

impl Matrix {
    pub fn certain(&self, p: usize, c: usize) -> bool {
        !self.uncertain.contains(&[p, c])
    }
}

/// One cell of the matrix, both layers (`topo --json`'s `pairs`).
#[derive(Debug, Clone, Serialize)]
pub struct PairRow {
    pub provider: Bdf,
    pub client: Bdf,
    pub map_type: MapType,
    pub distance: Option<u32>,
    pub path_class: PathClass,
    /// False when ACS that could not be read could change the verdict.
    pub certain: bool,
}

/// Which devices a matrix shows (`--class`, `--device`); empty lists keep everything.
#[derive(Debug, Clone, Default)]
pub struct MatrixFilter {
    pub classes: Vec<DeviceClass>,
    /// Device indices, sorted, without repeats.
    pub devices: Vec<usize>,
    /// Leave SR-IOV virtual functions out (`topo`'s default matrix: physical functions).
    pub pfs_only: bool,
}

impl MatrixFilter {
    /// Resolves device names (as `check` takes them, or a short name such as `GPU0`) and glob
    /// patterns (`nvme*`, matched against names, short names and addresses) into a filter.
    pub fn new(engine: &Engine<'_>, classes: Vec<DeviceClass>, devices: &[String]) -> Result<Self, Error> {
        let short = crate::alias::ShortNames::new(engine.topo);
        let mut indices = Vec::new();
        for name in devices {
            if crate::alias::is_glob(name) {
                let before = indices.len();
                indices.extend((0..engine.topo.devices.len()).filter(|&i| glob_keeps(engine, &short, name, i)));
                if indices.len() == before {
                    return Err(Error::UnknownDevice(name.clone()));
                }
                continue;
            }
            match client_index(engine, name) {
                Ok(i) => indices.push(i),
                Err(e) => indices.push(short.find(name).ok_or(e)?),
            }
        }
        indices.sort_unstable();
        indices.dedup();
        Ok(MatrixFilter { classes, devices: indices, pfs_only: false })
    }

    pub(crate) fn keeps(&self, engine: &Engine<'_>, i: usize) -> bool {
        let d = engine.device(i);
        (self.classes.is_empty() || self.classes.contains(&DeviceClass::of(d)))
            && (self.devices.is_empty() || self.devices.binary_search(&i).is_ok())
            && !(self.pfs_only && d.physfn.is_some())
    }
}

/// A DMA-capable device whose name, short name or address (`0000:03:00.0`, `03:00.0`) a
/// pattern matches.
fn glob_keeps(engine: &Engine<'_>, short: &crate::alias::ShortNames, pattern: &str, i: usize) -> bool {
    use crate::alias::glob_match;
    let d = engine.device(i);
    let full = d.bdf.to_string();
    d.is_dma_capable()
        && (d.name.as_deref().is_some_and(|n| glob_match(pattern, n))
            || short.get(i).is_some_and(|n| glob_match(pattern, n))
            || glob_match(pattern, &full)
            || glob_match(pattern, full.get(5..).unwrap_or_default()))
}

/// NUMA node and CPU affinity of a matrix device (nvidia-smi's last columns).
#[derive(Debug, Clone, Serialize)]
pub struct Affinity {
    pub device: Bdf,
    pub name: Option<String>,
    pub class: DeviceClass,
    pub numa_node: Option<i32>,
    pub cpus: Option<String>,
}

impl Affinity {
    pub fn of(d: &crate::model::Device) -> Affinity {
        Affinity {
            device: d.bdf,
            name: d.name.clone(),
            class: DeviceClass::of(d),
            numa_node: d.numa_node,
            cpus: d.local_cpus.clone(),
        }
    }
}

/// Which PCI function the kernel evaluates for a client, and what to tell the user.
enum ClientRef {
    Pci { index: usize, note: Option<String> },
    NotPci(String),
}

fn client_ref(engine: &Engine<'_>, name: &str) -> Result<ClientRef, Error> {
    match resolve(engine, name)? {
        Target::Pci(i) => {
            let d = engine.device(i);
            if !d.is_dma_capable() {
                return Err(Error::WrongRole(format!(
                    "{} is a {}, not a DMA client: name the endpoint below it",
                    d.label(),
                    d.port_type.map(|t| t.label()).unwrap_or(d.kind())
                )));
            }
            Ok(ClientRef::Pci { index: i, note: None })
        }
        Target::NotPci { name, pci_parent: Some(p) } => Ok(ClientRef::Pci {
            index: p,
            note: Some(format!(
                "{name} is not a PCI device; the kernel walks up to its PCI device {}",
                engine.device(p).bdf
            )),
        }),
        Target::NotPci { name, pci_parent: None } => Ok(ClientRef::NotPci(name)),
    }
}

/// The clients a name stands for: an NVMe multipath head is every path's controller (the
/// kernel may send the head's I/O down any of them), anything else its [`client_ref`].
fn client_refs(engine: &Engine<'_>, name: &str) -> Result<Vec<ClientRef>, Error> {
    let head = engine.topo.aliases.get(name.strip_prefix("/dev/").unwrap_or(name)).filter(|a| a.is_multipath_head());
    let Some(head) = head else { return Ok(vec![client_ref(engine, name)?]) };
    let refusal = crate::multipath::head_refusal(&engine.topo.machine, name, &head.paths);
    head.paths
        .iter()
        .map(|path| match path.pci.and_then(|b| engine.index_of(b)) {
            Some(index) => Ok(ClientRef::Pci {
                index,
                note: Some(format!(
                    "{name} is an NVMe multipath head: the kernel may send its I/O down path {} (controller {}, {}){}",
                    path.disk,
                    path.controller,
                    engine.device(index).bdf,
                    refusal.as_deref().map(|r| format!("; {r}")).unwrap_or_default()
                )),
            }),
            None => Ok(ClientRef::NotPci(format!("{name} path {} (controller {})", path.disk, path.controller))),
        })
        .collect()
}

/// The PCI function the kernel evaluates for a client name; a name without one is refused.
pub(crate) fn client_index(engine: &Engine<'_>, name: &str) -> Result<usize, Error> {
    match client_ref(engine, name)? {
        ClientRef::Pci { index, .. } => Ok(index),
        ClientRef::NotPci(n) if engine.topo.aliases.get(&n).is_some_and(|a| a.is_multipath_head()) => {
            Err(Error::WrongRole(format!(
                "{n} is an NVMe multipath head, not a PCI device: name the controller of one of its paths ({})",
                engine.topo.aliases[&n].paths.iter().map(|p| p.controller.as_str()).collect::<Vec<_>>().join(", ")
            )))
        }
        ClientRef::NotPci(n) => Err(Error::WrongRole(format!("{n} is not a PCI device and has no PCI parent"))),
    }
}

/// A device that can be the provider side: with `any_memory`, P2P memory or a memory BAR;
/// else P2P memory only (`p2pmem/`), what allocating from it needs.
pub(crate) fn provider_index(engine: &Engine<'_>, name: &str, any_memory: bool) -> Result<usize, Error> {
    let i = match resolve(engine, name)? {
        Target::Pci(i) => i,
        Target::NotPci { name, .. } => {
            return Err(Error::WrongRole(format!("{name} is not a PCI device and cannot provide P2P memory")))
        }
    };
    let d = engine.device(i);
    if !any_memory && d.p2pmem.is_none() && engine.p2pdma_absent() && d.cmb.is_some() {
        // A provider on a kernel without P2PDMA: answer for it (not supported, and why).
        return Ok(i);
    }
    if !any_memory && d.p2pmem.is_none() {
        if engine.p2pdma_absent() {
            return Err(Error::WrongRole(format!(
                "{} is not a P2P memory provider, and none can be here: {}",
                d.label(),
                crate::kernel::absent_reason(&engine.topo.machine)
            )));
        }
        let providers: Vec<String> = providers(engine.topo).iter().map(|p| p.provider.to_string()).collect();
        return Err(Error::WrongRole(format!(
            "{} is not a P2P memory provider (it has no p2pmem/); providers here: {}",
            d.label(),
            if providers.is_empty() { "none".to_string() } else { providers.join(", ") }
        )));
    }
    if !d.has_p2p_memory_side() {
        let what = if d.is_dma_capable() {
            "has no memory BAR and no P2P memory".to_string()
        } else {
            format!("is a {}, not an endpoint with memory", d.port_type.map(|t| t.label()).unwrap_or(d.kind()))
        };
        let providers: Vec<String> = providers(engine.topo).iter().map(|p| p.provider.to_string()).collect();
        return Err(Error::WrongRole(format!(
            "{} {what}: it cannot be the provider side; P2P memory providers here: {}",
            d.label(),
            if providers.is_empty() { "none".to_string() } else { providers.join(", ") }
        )));
    }
    Ok(i)
}

/// The kernel's verdict for one provider with P2P memory (`p2pmem/`: what `alloc`, `copy`
/// and nvmet use) and a set of clients, named on the command line.
pub fn check(engine: &Engine<'_>, provider: &str, clients: &[String]) -> Result<CheckReport, Error> {
    check_named(engine, provider_index(engine, provider, false)?, clients)
}

/// `p2pdma check`: the verdict for any endpoint with P2P memory or a memory BAR as the
/// provider side (what the kernel decides when that memory is offered: published `p2pmem`,
/// a dma-buf export, a registered BAR).
pub fn check_memory(engine: &Engine<'_>, provider: &str, clients: &[String]) -> Result<CheckReport, Error> {
    check_named(engine, provider_index(engine, provider, true)?, clients)
}

fn check_named(engine: &Engine<'_>, p: usize, clients: &[String]) -> Result<CheckReport, Error> {
    let mut refs = Vec::new();
    for name in clients {
        refs.extend(client_refs(engine, name)?.into_iter().map(|r| (name.clone(), r)));
    }
    Ok(check_refs(engine, p, refs))
}

/// [`check`] for devices already resolved: a provider (index into the topology's devices,
/// see [`provider_of`]) and PCI clients, taken as they are (a copy's ends: the PCI devices
/// of its block devices).
pub fn check_devices(engine: &Engine<'_>, provider: usize, clients: &[usize]) -> CheckReport {
    let refs = clients
        .iter()
        .map(|&index| (engine.device(index).bdf.to_string(), ClientRef::Pci { index, note: None }))
        .collect();
    check_refs(engine, provider, refs)
}

/// The provider with P2P memory (`p2pmem/`) a name refers to, refused when it is no provider.
pub fn provider_of(engine: &Engine<'_>, name: &str) -> Result<usize, Error> {
    provider_index(engine, name, false)
}

/// What `check` notes about the provider's memory before any client.
fn provider_notes(pd: &crate::model::Device) -> Vec<String> {
    let mut notes = Vec::new();
    if pd.p2pmem.is_none() {
        if let Some(cmb) = pd.cmb {
            notes.push(format!(
                "{} has a {} MiB Controller Memory Buffer that a kernel with CONFIG_PCI_P2PDMA would publish as P2P memory",
                pd.bdf,
                cmb >> 20
            ));
        }
    }
    if pd.p2pmem.as_ref().is_some_and(|m| !m.published) {
        notes.push(format!(
            "{} has P2P memory but does not publish it: `find` and nvmet's automatic choice will not use it",
            pd.bdf
        ));
    }
    if pd.p2pmem.is_none() {
        notes.push(format!(
            "{} publishes no P2P memory: this is the kernel's verdict when its BAR memory is offered \
             (a dma-buf export, or a driver registering the BAR with pci_p2pdma_add_resource)",
            pd.bdf
        ));
    }
    notes
}

fn check_refs(engine: &Engine<'_>, p: usize, refs: Vec<(String, ClientRef)>) -> CheckReport {
    let pd = engine.device(p);
    let mut notes = provider_notes(pd);
    let mut verdicts = Vec::new();
    let mut stacks = Vec::new();
    for (name, client) in refs {
        let v = match client {
            ClientRef::Pci { index, note } => {
                let mut v = engine.explain(p, index);
                crate::explain::fix_costs(engine, &mut v);
                stacks.extend(crate::stacks::judge(&crate::stacks::facts(engine, &v, p, index)));
                if let Some(note) = note {
                    v.client_name = Some(name);
                    v.reasons.insert(0, note);
                }
                v
            }
            ClientRef::NotPci(n) => engine.explain_not_pci(p, &n),
        };
        verdicts.push(v);
    }
    let map_type = verdicts.iter().map(|v| v.map_type).max().unwrap_or(MapType::NotSupported);
    let distance = verdicts.iter().try_fold(0u32, |s, v| v.distance.map(|d| s + d)).filter(|_| !verdicts.is_empty());
    let refused_for_certain = verdicts.iter().any(|v| v.certain && !v.map_type.supported());
    let certain = refused_for_certain || verdicts.iter().all(|v| v.certain);
    if !certain {
        notes.extend(uncertainty_notes(engine, &verdicts));
    }
    let mut devices = vec![DeviceNames::of(pd)];
    for bdf in verdicts.iter().filter_map(|v| v.client_bdf) {
        if let Some(d) =
            engine.index_of(bdf).map(|i| engine.device(i)).filter(|d| devices.iter().all(|n| n.bdf != d.bdf))
        {
            devices.push(DeviceNames::of(d));
        }
    }
    CheckReport {
        provider: pd.bdf,
        provider_name: pd.name.clone(),
        p2pmem: pd.p2pmem.clone(),
        publishes: pd.p2pmem.as_ref().is_some_and(|m| m.published),
        memory_bars: pd.memory_bars().cloned().collect(),
        acs: pd.acs.lspci(),
        map_type,
        distance,
        clients: verdicts,
        notes,
        certain,
        kernel: crate::kernel::summary(&engine.topo.machine),
        devices,
        stacks,
    }
}

/// Why an uncertain verdict is uncertain, and what input would settle it: ACS that could not
/// be read, a CPU no input named.
fn uncertainty_notes(engine: &Engine<'_>, verdicts: &[PairVerdict]) -> Vec<String> {
    let mut notes = Vec::new();
    let mut unread: Vec<String> =
        verdicts.iter().filter(|v| !v.certain).flat_map(|v| v.acs_unknown.iter().map(Bdf::to_string)).collect();
    unread.dedup();
    if !unread.is_empty() {
        notes.push(format!(
            "UNCERTAIN: this verdict rests on the ACS control of {}, which could not be read (config space past 64 bytes needs root); run as root, or check a snapshot taken as root, for the certain answer",
            unread.join(", ")
        ));
    }
    let cpu_decides = |v: &PairVerdict| v.reasons.iter().any(|r| r.starts_with("no input named the CPU"));
    if engine.cpu_unknown() && verdicts.iter().any(|v| !v.certain && cpu_decides(v)) {
        notes.push("UNCERTAIN: no input named the CPU, and the kernel's CPU rule (AMD Zen: any path through the host bridge) decides this verdict; give `lscpu` or /proc/cpuinfo for the certain answer".into());
    }
    notes
}

/// `pci_p2pmem_find_many`: the closest published provider for all clients.
pub fn find(engine: &Engine<'_>, clients: &[String]) -> Result<FindReport, Error> {
    find_among(engine, clients, false)
}

/// `find --any-bar`: the closest device whose memory the clients could use, published P2P
/// memory or a memory BAR (a dma-buf export, a registered BAR): not the kernel's automatic
/// choice, which only sees published memory.
pub fn find_any_bar(engine: &Engine<'_>, clients: &[String]) -> Result<FindReport, Error> {
    find_among(engine, clients, true)
}

fn find_among(engine: &Engine<'_>, clients: &[String], any_bar: bool) -> Result<FindReport, Error> {
    let mut refs = Vec::new();
    for name in clients {
        refs.extend(client_refs(engine, name)?);
    }
    Ok(find_refs(engine, refs, any_bar))
}

/// [`find`] for PCI clients already resolved (indices into the topology's devices).
pub fn find_devices(engine: &Engine<'_>, clients: &[usize]) -> FindReport {
    find_refs(engine, clients.iter().map(|&index| ClientRef::Pci { index, note: None }).collect(), false)
}

fn find_refs(engine: &Engine<'_>, refs: Vec<ClientRef>, any_bar: bool) -> FindReport {
    let mut indices = Vec::new();
    let mut reasons = Vec::new();
    let mut not_pci = None;
    for client in refs {
        match client {
            ClientRef::Pci { index, note } => {
                indices.push(index);
                reasons.extend(note);
            }
            ClientRef::NotPci(n) => not_pci = Some(n),
        }
    }
    let pool: Vec<usize> = if any_bar {
        (0..engine.topo.devices.len()).filter(|&i| engine.device(i).has_p2p_memory_side()).collect()
    } else {
        engine.published_providers().collect()
    };
    let mut candidates: Vec<Candidate> = pool
        .into_iter()
        .map(|p| {
            let d = engine.device(p);
            Candidate {
                provider: d.bdf,
                name: d.name.clone(),
                distance: if not_pci.is_some() { None } else { engine.distance_many(p, &indices) },
                available: d.p2pmem.as_ref().map_or(0, |m| m.available),
                publishes: d.p2pmem.as_ref().is_some_and(|m| m.published),
            }
        })
        .collect();
    candidates.sort_by_key(|c| (c.distance.is_none(), c.distance, c.provider));
    let best = candidates.iter().filter_map(|c| c.distance).min();
    let tied: Vec<Bdf> =
        candidates.iter().filter(|c| c.distance.is_some() && c.distance == best).map(|c| c.provider).collect();
    find_reasons(engine, &mut reasons, not_pci.as_deref(), &candidates, &tied, best, any_bar);
    FindReport {
        provider: tied.first().copied(),
        distance: best,
        candidates,
        tied,
        reasons,
        kernel: crate::kernel::summary(&engine.topo.machine),
    }
}

/// Why `find` picked what it picked, or nothing: the kernel's view of the candidates.
fn find_reasons(
    engine: &Engine<'_>,
    reasons: &mut Vec<String>,
    not_pci: Option<&str>,
    candidates: &[Candidate],
    tied: &[Bdf],
    best: Option<u32>,
    any_bar: bool,
) {
    if let Some(n) = not_pci {
        reasons.push(format!("{n} is not a PCI device: the kernel finds no provider for a set that includes it"));
    } else if engine.p2pdma_absent() {
        reasons.push(crate::kernel::absent_reason(&engine.topo.machine));
        reasons.push(format!("fix: {}", crate::kernel::ABSENT_FIX));
    } else if candidates.is_empty() && any_bar {
        reasons.push("no device has P2P memory or a memory BAR".into());
    } else if candidates.is_empty() {
        reasons.push("no device publishes P2P memory (no p2pmem/ with published = 1); `find --any-bar` also ranks devices by their memory BARs".into());
    } else if tied.is_empty() {
        reasons.push("no published provider can reach every client (see `p2pdma check` for why)".into());
    } else if any_bar && tied.len() > 1 {
        reasons.push(format!(
            "{} devices tie at distance {}, shown is the lowest address; the kernel's automatic choice (`find` without --any-bar) only sees published P2P memory",
            tied.len(),
            best.unwrap_or(0)
        ));
    } else if tied.len() > 1 {
        reasons.push(format!(
            "{} providers tie at distance {}: the kernel picks one at random each time; shown is the lowest address",
            tied.len(),
            best.unwrap_or(0)
        ));
        if tied.len() > 512 {
            reasons.push(
                "the kernel keeps only the first 512 tied providers (one page of pointers) and ignores the rest".into(),
            );
        }
    } else if any_bar {
        reasons.push(format!(
            "{} is the closest device with memory (distance {}); the kernel's automatic choice (`find` without --any-bar) only sees published P2P memory",
            tied[0],
            best.unwrap_or(0)
        ));
    } else {
        reasons.push(format!("{} is the closest published provider (distance {})", tied[0], best.unwrap_or(0)));
    }
}

/// Every device with a `p2pmem/` directory.
pub fn providers(topo: &Topology) -> Vec<ProviderRow> {
    topo.devices
        .iter()
        .filter_map(|d| {
            d.p2pmem.as_ref().map(|m| ProviderRow {
                provider: d.bdf,
                name: d.name.clone(),
                driver: d.driver.clone(),
                size: m.size,
                available: m.available,
                published: m.published,
                numa_node: d.numa_node,
            })
        })
        .collect()
}

/// Every device with memory against every DMA-capable endpoint, pair by pair: the full
/// engine, which the grouped matrix (`group::GroupedMatrix`) is tested against.
pub fn matrix(engine: &Engine<'_>) -> Matrix {
    let topo = engine.topo;
    let providers: Vec<usize> = (0..topo.devices.len()).filter(|&i| topo.devices[i].has_p2p_memory_side()).collect();
    let clients: Vec<usize> = (0..topo.devices.len()).filter(|&i| topo.devices[i].is_dma_capable()).collect();
    let any_unknown = topo.devices.iter().any(|d| d.acs == crate::config::Acs::Unknown);
    let mut uncertain = Vec::new();
    if any_unknown {
        for (pi, &p) in providers.iter().enumerate() {
            for (ci, &c) in clients.iter().enumerate() {
                if p != c && !engine.certain(p, c) {
                    uncertain.push([pi, ci]);
                }
            }
        }
    }
    Matrix {
        providers: providers.iter().map(|&i| topo.devices[i].bdf).collect(),
        clients: clients.iter().map(|&i| topo.devices[i].bdf).collect(),
        cells: engine.matrix(&providers, &clients),
        path_classes: providers.iter().map(|&p| clients.iter().map(|&c| engine.path_class(p, c)).collect()).collect(),
        uncertain,
    }
}
