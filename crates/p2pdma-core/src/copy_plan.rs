//! The plan of a copy, before anything is opened for writing: both ends measured by the OS
//! layer ([`End`]) and placed on the topology, the ranges and chunk checked
//! ([`crate::transfer`]), the memory the data goes through chosen by the kernel's verdict
//! ([`Route`]), and the refusals (a destination in use, `--require-p2p` without P2P). Pure:
//! `p2pdma_mem::session` carries a plan out and fills in the [`CopyReport`].

use serde::Serialize;

use crate::analysis::{self, CheckReport};
use crate::transfer::{self, End, RangeError};
use crate::{Bdf, Engine, Error, MapType};

/// How the caller asked for the memory: `--via auto|host|PROVIDER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Auto,
    Host,
    Provider(String),
}

impl std::str::FromStr for Via {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Via::Auto,
            "host" => Via::Host,
            other => Via::Provider(other.to_string()),
        })
    }
}

/// What a copy operand names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Path(std::path::PathBuf),
    /// A device or topology name (`nvme-a`, `0000:03:00.0`, `nvme0n1`), to be turned into
    /// its block device.
    Device(String),
}

/// Reads an operand so it cannot be mistaken: a path when it has a `/` or names an existing
/// file (`is_file`), otherwise a device name (`is_device`: the topology knows it); a bare
/// word that is both is refused. A word that is neither is a new file when it may be
/// created (a destination), else unknown.
pub fn operand(word: &str, is_file: bool, is_device: bool, may_create: bool) -> Result<Operand, Error> {
    if word.contains('/') {
        return Ok(Operand::Path(word.into()));
    }
    match (is_file, is_device) {
        (true, true) => Err(Error::AmbiguousOperand(word.into())),
        (true, false) => Ok(Operand::Path(word.into())),
        (false, true) => Ok(Operand::Device(word.into())),
        (false, false) if may_create && !word.is_empty() => Ok(Operand::Path(word.into())),
        (false, false) => Err(Error::UnknownOperand(word.into())),
    }
}

/// Where a copy's data goes through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "memory", rename_all = "snake_case")]
pub enum Route {
    /// P2P memory of `provider`, with the kernel's verdict for it and both ends.
    P2p { provider: Bdf, provider_name: Option<String>, map_type: MapType, distance: u32 },
    /// Host memory, and why not P2P memory.
    Host { reasons: Vec<String> },
}

impl Route {
    /// "P2P, bus address, distance 4, via 0000:03:00.0 (nvme-a)" or "host memory".
    pub fn summary(&self) -> String {
        match self {
            Route::P2p { provider, provider_name, map_type, distance } => {
                let how = match map_type {
                    MapType::BusAddr => "bus address",
                    MapType::ThruHostBridge => "through the host bridge",
                    MapType::NotSupported => "not supported",
                };
                let name = provider_name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
                format!("P2P, {how}, distance {distance}, via {provider}{name}")
            }
            Route::Host { .. } => "host memory".into(),
        }
    }

    pub fn is_p2p(&self) -> bool {
        matches!(self, Route::P2p { .. })
    }
}

/// One end of a copy as the plan and the report see it: what was measured, where in it,
/// and the block device and PCI device the data is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndReport {
    #[serde(flatten)]
    pub end: End,
    pub offset: u64,
    /// The block device the data is on and its PCI device, when there are such.
    pub block_device: Option<String>,
    pub pci: Option<Bdf>,
    /// That PCI device's NUMA node, where the machine has nodes.
    pub numa_node: Option<i32>,
}

/// `copy`'s chunks in flight when the caller names none ([`CopyRequest::depth`]). With
/// [`DEFAULT_READS`] and [`DEFAULT_CHUNK`], the best configuration of three side-by-side lab
/// runs against p2pmem-test (BENCHMARKS.md, 2026-12-07: 32 and 64 MiB through a CMB, and
/// through host memory), so that a user who passes no flag gets it. A provider short of P2P
/// memory lowers the depth with a note (the lab's 16 MiB CMB holds 15 such chunks).
pub const DEFAULT_DEPTH: usize = 16;
/// At most this many of the chunks in flight are reads ([`CopyRequest::reads`]); see
/// [`DEFAULT_DEPTH`] for where the value comes from.
pub const DEFAULT_READS: usize = 4;
/// Bytes per I/O ([`CopyRequest::chunk`]); see [`DEFAULT_DEPTH`].
pub const DEFAULT_CHUNK: usize = 1 << 20;

/// What the caller asked for, flags already parsed.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    pub src_offset: u64,
    pub dst_offset: u64,
    /// Bytes to copy; None: the rest of the source.
    pub length: Option<u64>,
    pub via: Via,
    /// Chunks in flight at once (one buffer each).
    pub depth: usize,
    /// Bytes per I/O.
    pub chunk: usize,
    /// At most this many reads in flight (0: up to `depth`).
    pub reads: usize,
    /// The machine's page size (buffers are whole pages).
    pub page_size: usize,
    /// Refuse rather than fall back to host memory.
    pub require_p2p: bool,
    /// Write to a destination others use.
    pub force: bool,
    /// Why no device can have P2P memory when the kernel is built without CONFIG_PCI_P2PDMA
    /// ([`crate::kernel::absent_reason`]); read by the caller when no topology is.
    pub p2pdma_absent: Option<String>,
}

/// A copy decided: carried out unless `refused` says why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyPlan {
    pub src: EndReport,
    pub dst: EndReport,
    pub length: u64,
    /// Bytes per I/O (no larger than the copy needs).
    pub chunk: usize,
    /// Chunks in flight (no more than there are chunks).
    pub depth: usize,
    /// Reads among them at once (0: no limit below `depth`).
    pub max_reads: usize,
    pub route: Route,
    /// The NUMA node host-memory buffers belong on: the ends' PCI devices' node.
    pub numa_node: Option<i32>,
    pub require_p2p: bool,
    /// Why the copy must not start; empty when it may.
    pub refused: Vec<String>,
    /// Anything the user should know (fallbacks, forced writes).
    pub notes: Vec<String>,
}

/// Plans a copy from `src` to `dst` (`dst_users`: who else uses the destination, from the
/// OS layer). `engine`: the verdict over the machine's topology; None when the machine has
/// no P2P memory at all (no topology read: the route is host memory). `Err` is bad input,
/// never to be carried out (exit 2); a refusal is a plan.
pub fn plan_copy(
    engine: Option<&Engine<'_>>,
    src: EndReport,
    dst: EndReport,
    dst_users: Vec<String>,
    req: &CopyRequest,
) -> Result<CopyPlan, Error> {
    let ranges = transfer::plan_ranges(&src.end, &dst.end, req.src_offset, req.dst_offset, req.length)?;
    let chunk = transfer::check_chunk(req.chunk, req.page_size, &[&src.end, &dst.end], ranges.length)?;
    if req.depth == 0 {
        return Err(RangeError::NoDepth.into());
    }
    let route = match engine {
        Some(engine) => choose_route(engine, &req.via, &[&src, &dst])?,
        None => no_providers_route(&req.via, req.p2pdma_absent.as_deref())?,
    };
    let chunks = usize::try_from(ranges.length.div_ceil(chunk as u64)).unwrap_or(usize::MAX);
    let mut plan = CopyPlan {
        numa_node: numa_node(&[&src, &dst]),
        src,
        dst,
        length: ranges.length,
        chunk,
        depth: req.depth.min(chunks),
        max_reads: req.reads,
        route,
        require_p2p: req.require_p2p,
        refused: Vec::new(),
        notes: Vec::new(),
    };
    if !dst_users.is_empty() {
        if req.force {
            plan.notes.extend(dst_users.into_iter().map(|u| format!("--force: writing although {u}")));
        } else {
            plan.refused = dst_users;
            plan.refused.push(format!("{} is in use: refusing to write to it (--force overrides)", plan.dst.end.path));
            return Ok(plan);
        }
    }
    if let (Route::Host { reasons }, true) = (&plan.route, req.require_p2p) {
        plan.refused = reasons.clone();
        plan.refused.push("--require-p2p: refusing to copy through host memory".into());
    }
    Ok(plan)
}

impl CopyPlan {
    pub fn is_refused(&self) -> bool {
        !self.refused.is_empty()
    }

    /// P2P memory could not be had when the buffers were made (`why`: the allocation's
    /// error): host memory instead, or a refusal under `--require-p2p`.
    pub fn fall_back(&mut self, why: String) {
        if self.require_p2p {
            self.refused.push(why);
            self.refused.push("--require-p2p: refusing to copy through host memory".into());
        } else {
            self.notes.push(format!("{why}; copying through host memory instead"));
            self.route = Route::Host { reasons: vec![why] };
        }
    }
}

/// The NUMA node of the ends' PCI devices (the first one known): where host memory for
/// them is closest.
pub fn numa_node(ends: &[&EndReport]) -> Option<i32> {
    ends.iter().filter_map(|e| e.numa_node).find(|&n| n >= 0)
}

/// The route on a machine without any P2P memory provider (no topology needed); `absent`:
/// the kernel is built without CONFIG_PCI_P2PDMA, and why, when that is the cause.
pub fn no_providers_route(via: &Via, absent: Option<&str>) -> Result<Route, Error> {
    let why = match absent {
        Some(a) => format!("no PCI device on this machine has P2P memory: {a}"),
        None => "no PCI device on this machine has P2P memory (no p2pmem/ in sysfs)".to_string(),
    };
    match via {
        Via::Host => Ok(Route::Host { reasons: vec!["host memory was asked for (--via host)".into()] }),
        Via::Auto => Ok(Route::Host { reasons: vec![why] }),
        Via::Provider(p) => Err(Error::WrongRole(format!("{p} is not a P2P memory provider: {why}"))),
    }
}

/// The memory to use for data moving between `ends` (their PCI devices), by the verdict.
/// Errors are bad input (an unknown or non-provider `--via`).
pub fn choose_route(engine: &Engine<'_>, via: &Via, ends: &[&EndReport]) -> Result<Route, Error> {
    let asked = match via {
        Via::Host => return Ok(Route::Host { reasons: vec!["host memory was asked for (--via host)".into()] }),
        // A named provider that is none is refused whatever the ends are.
        Via::Provider(p) => Some(analysis::provider_of(engine, p)?),
        Via::Auto => None,
    };
    let clients = match route_clients(engine, ends) {
        Ok(c) => c,
        Err(reasons) => return Ok(Route::Host { reasons }),
    };
    let provider = match asked.map_or_else(|| auto_provider(engine, &clients), Ok) {
        Ok(p) => p,
        Err(reasons) => return Ok(Route::Host { reasons }),
    };
    Ok(route_through(engine, provider, &clients))
}

/// The PCI devices a route must serve, and the names of multipath paths among them.
struct RouteClients {
    devices: Vec<usize>,
    /// The paths of NVMe multipath heads among the ends: the head's I/O may take any of
    /// them, so each path's controller is a client, named in the reasons by its path.
    path_names: Vec<(Bdf, String)>,
}

/// Each end's PCI device (every path's controller for a multipath head); Err: why host
/// memory it must be (an end on no PCI device, a head the kernel refuses).
fn route_clients(engine: &Engine<'_>, ends: &[&EndReport]) -> Result<RouteClients, Vec<String>> {
    let mut clients = RouteClients { devices: Vec::new(), path_names: Vec::new() };
    for end in ends {
        let head = end.block_device.as_deref().and_then(|d| Some(d).zip(engine.topo.aliases.get(d)));
        if let Some((name, alias)) = head.filter(|(_, a)| a.is_multipath_head()) {
            if let Some(why) = crate::multipath::head_refusal(&engine.topo.machine, name, &alias.paths) {
                return Err(vec![why]);
            }
            for path in &alias.paths {
                let Some((bdf, i)) = path.pci.and_then(|b| engine.index_of(b).map(|i| (b, i))) else {
                    return Err(vec![format!(
                        "{} (on {name}): its multipath path {} (controller {}) is not on a PCI device, so no P2P memory can serve it",
                        end.end.path, path.disk, path.controller
                    )]);
                };
                clients.devices.push(i);
                clients
                    .path_names
                    .push((bdf, format!("{name} path {} (controller {}, {bdf})", path.disk, path.controller)));
            }
            continue;
        }
        match end.pci.and_then(|b| engine.index_of(b)) {
            Some(i) => clients.devices.push(i),
            None => {
                let on = end.block_device.as_deref().map(|d| format!(" (on {d})")).unwrap_or_default();
                return Err(vec![format!(
                    "{}{on} is not on a PCI device, so no P2P memory can serve it",
                    end.end.path
                )]);
            }
        }
    }
    Ok(clients)
}

/// The provider `find` picks for the clients; Err: why none (the best candidates' reasons).
fn auto_provider(engine: &Engine<'_>, clients: &RouteClients) -> Result<usize, Vec<String>> {
    let found = analysis::find_devices(engine, &clients.devices);
    if let Some(p) = found.provider.and_then(|b| engine.index_of(b)) {
        return Ok(p);
    }
    let mut reasons = found.reasons;
    for c in found.candidates.iter().take(3) {
        if let Some(p) = engine.index_of(c.provider) {
            reasons.extend(why_not(&analysis::check_devices(engine, p, &clients.devices), &clients.path_names));
        }
    }
    reasons.dedup();
    Err(reasons)
}

/// P2P through `provider` when the verdict allows it and it has memory to lend, else host
/// memory with the reasons.
fn route_through(engine: &Engine<'_>, provider: usize, clients: &RouteClients) -> Route {
    let check = analysis::check_devices(engine, provider, &clients.devices);
    if let (true, Some(distance)) = (check.map_type.supported(), check.distance) {
        if check.p2pmem.as_ref().is_some_and(|m| m.size > 0) {
            return Route::P2p {
                provider: check.provider,
                provider_name: check.provider_name,
                map_type: check.map_type,
                distance,
            };
        }
    }
    let mut reasons: Vec<String> = check.notes.clone();
    reasons.extend(why_not(&check, &clients.path_names));
    reasons.dedup();
    if reasons.is_empty() {
        reasons.push(format!("{} has no P2P memory to lend (p2pmem/size is 0)", check.provider));
    }
    Route::Host { reasons }
}

/// The reasons of the clients the provider cannot serve (not those of the ones it can),
/// a multipath path's led by the path's name.
fn why_not<'a>(check: &'a CheckReport, path_names: &'a [(Bdf, String)]) -> impl Iterator<Item = String> + 'a {
    check.clients.iter().filter(|v| !v.map_type.supported()).flat_map(move |v| {
        let path = path_names.iter().find(|(b, _)| Some(*b) == v.client_bdf).map(|(_, n)| n);
        v.reasons.iter().map(move |r| match path {
            Some(p) => format!("{p}: {r}"),
            None => r.clone(),
        })
    })
}

/// How a copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Copied,
    /// Not started: a safety rule or `--require-p2p` said no.
    Refused,
    /// Stopped by an I/O error.
    Failed,
    /// Copied without an error, but the read-back differs: the data did not arrive.
    Mismatch,
    /// Stopped by SIGINT or SIGTERM: no new I/O, the I/O in flight finished.
    Interrupted,
}

/// The JSON contract of `copy --json`; the text output is made from it.
#[derive(Debug, Clone, Serialize)]
pub struct CopyReport {
    pub outcome: Outcome,
    pub src: EndReport,
    pub dst: EndReport,
    pub length: u64,
    pub route: Route,
    /// Human summary of the route, as printed.
    pub path: String,
    pub engine: String,
    pub depth: usize,
    /// The most reads in flight at once (`--reads`, no more than `depth`).
    pub reads: usize,
    pub chunk: usize,
    /// Bytes copied (whole chunks), the time of the data phase (first I/O to last
    /// completion, the read-back excluded) and the rate.
    pub bytes: u64,
    pub seconds: f64,
    pub mib_per_s: f64,
    /// From the process start to the first I/O: reading the machine, measuring, planning,
    /// buffers, opens.
    pub setup_seconds: f64,
    /// The flush after the data phase (fsync: the data on stable storage, as the devices'
    /// volatile caches would otherwise hold it).
    pub flush_seconds: f64,
    pub verify: Option<VerifyReport>,
    pub error: Option<ErrorReport>,
    /// The signal that stopped the copy (`SIGINT`, `SIGTERM`), with `outcome: interrupted`.
    pub signal: Option<String>,
    /// Why the copy was refused.
    pub refused: Vec<String>,
    /// Anything the user should know (fallbacks, reduced depth).
    pub notes: Vec<String>,
}

impl CopyReport {
    /// The report of a plan not (yet) carried out.
    pub fn planned(plan: &CopyPlan) -> Self {
        CopyReport {
            outcome: Outcome::Refused,
            src: plan.src.clone(),
            dst: plan.dst.clone(),
            length: plan.length,
            path: plan.route.summary(),
            route: plan.route.clone(),
            engine: String::new(),
            depth: plan.depth,
            reads: reads_in_flight(plan.max_reads, plan.depth),
            chunk: plan.chunk,
            bytes: 0,
            seconds: 0.0,
            mib_per_s: 0.0,
            setup_seconds: 0.0,
            flush_seconds: 0.0,
            verify: None,
            error: None,
            signal: None,
            refused: plan.refused.clone(),
            notes: plan.notes.clone(),
        }
    }
}

/// The most reads a copy keeps in flight: the `max_reads` limit (0: none) within `depth`.
pub fn reads_in_flight(max_reads: usize, depth: usize) -> usize {
    if max_reads == 0 {
        depth
    } else {
        max_reads.min(depth)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub equal: bool,
    pub bytes_compared: u64,
    /// The first differing byte, relative to the start of the range.
    pub first_difference: Option<u64>,
    /// Time of the read-back after the copy (0 when it ran in flight, inside the copy's
    /// `seconds`).
    #[serde(default)]
    pub seconds: f64,
    pub read_back: ReadBack,
}

/// How a copy was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadBack {
    /// Through host memory: each chunk read back from the destination as soon as it was
    /// written and compared with the buffer it was written from, before the buffer took the
    /// next chunk (one more read of the destination, in flight with the copy).
    InFlight,
    /// After the copy, both ranges read again into host memory and compared: the route
    /// through P2P memory (a DMA into it can be lost silently, e.g. under an IOMMU, so the
    /// source is read again rather than trusted), or the synchronous engine.
    AfterCopy,
}

/// An I/O error (or an interruption) and how far the copy got.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorReport {
    pub message: String,
    pub device: Option<std::path::PathBuf>,
    pub op: Option<&'static str>,
    /// The device's own offset where it failed.
    pub offset: Option<u64>,
    pub errno: Option<i32>,
    /// Every destination byte before `dst offset + written_prefix` was written.
    pub written_prefix: u64,
    pub completed: u64,
}

/// MiB per second, 0 for no time.
pub fn mib_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / (1 << 20) as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Alias, P2pMem};
    use crate::transfer::EndKind;
    use crate::Topology;

    const MIB: u64 = 1 << 20;

    /// The `switch` scenario: nvme-a (with a CMB) and nvme-b under one switch.
    fn switch() -> Topology {
        let text = include_str!("../../../examples/topologies/switch.toml");
        let (_, mut topo) = crate::spec::from_text(text, std::path::Path::new("switch.toml")).unwrap();
        for (name, dev) in [("nvme0n1", "nvme-a"), ("nvme1n1", "nvme-b")] {
            let bdf = topo.devices.iter().find(|d| d.name.as_deref() == Some(dev)).unwrap().bdf;
            topo.aliases.insert(name.into(), Alias::new("block", Some(bdf)));
        }
        topo.aliases.insert("vda".into(), Alias::new("block", None));
        topo
    }

    fn end(engine: &Engine<'_>, disk: &str, size: u64) -> EndReport {
        let e = End {
            path: format!("/dev/{disk}"),
            kind: EndKind::BlockDevice,
            size,
            block_size: 512,
            extent_owner: format!("disk {disk}"),
            extent_base: 0,
        };
        let pci = engine.topo.aliases.get(disk).and_then(|a| a.pci_parent);
        let numa_node = pci.and_then(|b| engine.index_of(b)).and_then(|i| engine.device(i).numa_node);
        EndReport { end: e, offset: 0, block_device: Some(disk.into()), pci, numa_node }
    }

    fn request(via: &str) -> CopyRequest {
        CopyRequest {
            src_offset: 0,
            dst_offset: 0,
            length: Some(32 * MIB),
            via: via.parse().unwrap(),
            depth: DEFAULT_DEPTH,
            chunk: DEFAULT_CHUNK,
            reads: DEFAULT_READS,
            page_size: 4096,
            require_p2p: false,
            force: false,
            p2pdma_absent: None,
        }
    }

    fn plan(topo: &Topology, src: &str, dst: &str, users: &[&str], req: &CopyRequest) -> Result<CopyPlan, Error> {
        let engine = Engine::new(topo).unwrap();
        let (s, d) = (end(&engine, src, 64 * MIB), end(&engine, dst, 64 * MIB));
        plan_copy(Some(&engine), s, d, users.iter().map(|u| u.to_string()).collect(), req)
    }

    #[test]
    fn operands_cannot_be_mistaken() {
        let path = |p: &str| Operand::Path(p.into());
        assert_eq!(operand("/dev/vda", false, false, false).unwrap(), path("/dev/vda"));
        assert_eq!(operand("./vda", true, true, true).unwrap(), path("./vda"));
        assert_eq!(operand("dst.bin", false, false, true).unwrap(), path("dst.bin"), "a new destination file");
        assert_eq!(operand("src.bin", true, false, false).unwrap(), path("src.bin"));
        assert_eq!(operand("nvme-a", false, true, true).unwrap(), Operand::Device("nvme-a".into()));
        let e = operand("vda", true, true, true).unwrap_err();
        assert!(e.to_string().contains("`./vda`") && e.to_string().contains("`/dev/vda`"), "{e}");
        assert!(matches!(operand("nvme-x", false, false, false), Err(Error::UnknownOperand(_))));
        assert!(matches!(operand("", false, false, true), Err(Error::UnknownOperand(_))));
    }

    #[test]
    fn dev_paths_name_the_devices_they_are() {
        let topo = switch();
        let engine = Engine::new(&topo).unwrap();
        assert_eq!(crate::resolve(&engine, "/dev/nvme0n1").unwrap(), crate::resolve(&engine, "nvme0n1").unwrap());
        assert!(crate::resolve(&engine, "/dev/nope").is_err());
    }

    #[test]
    fn p2p_through_the_provider_the_kernel_would_pick() {
        let p = plan(&switch(), "nvme1n1", "nvme0n1", &[], &request("auto")).unwrap();
        assert!(!p.is_refused(), "{:?}", p.refused);
        match &p.route {
            Route::P2p { provider_name, map_type, .. } => {
                assert_eq!(provider_name.as_deref(), Some("nvme-a"));
                assert_eq!(*map_type, MapType::BusAddr);
            }
            other => panic!("{other:?}"),
        }
        assert!(p.route.summary().starts_with("P2P, bus address"), "{}", p.route.summary());
        assert_eq!((p.length, p.chunk, p.depth, p.max_reads), (32 * MIB, DEFAULT_CHUNK, DEFAULT_DEPTH, DEFAULT_READS));
    }

    #[test]
    fn a_named_provider_is_used_and_a_non_provider_refused_as_bad_input() {
        let p = plan(&switch(), "nvme1n1", "nvme0n1", &[], &request("nvme-a")).unwrap();
        assert!(p.route.is_p2p());
        let e = plan(&switch(), "nvme1n1", "nvme0n1", &[], &request("nvme-b")).unwrap_err();
        assert!(e.to_string().contains("is not a P2P memory provider"), "{e}");
        let e = plan(&switch(), "nvme1n1", "nvme0n1", &[], &request("nope")).unwrap_err();
        assert!(matches!(e, Error::UnknownDevice(_)), "{e}");
    }

    #[test]
    fn host_memory_when_asked_or_when_an_end_is_not_on_pci() {
        let p = plan(&switch(), "nvme1n1", "nvme0n1", &[], &request("host")).unwrap();
        assert_eq!(p.route, Route::Host { reasons: vec!["host memory was asked for (--via host)".into()] });
        let p = plan(&switch(), "vda", "nvme0n1", &[], &request("auto")).unwrap();
        let Route::Host { reasons } = &p.route else { panic!("{:?}", p.route) };
        assert!(reasons[0].contains("/dev/vda (on vda) is not on a PCI device"), "{reasons:?}");
        assert!(!p.is_refused());
    }

    #[test]
    fn host_memory_with_the_verdicts_reasons_when_no_provider_serves_both() {
        let mut topo = switch();
        for d in &mut topo.devices {
            if let Some(m) = &mut d.p2pmem {
                m.published = false;
            }
        }
        let p = plan(&topo, "nvme1n1", "nvme0n1", &[], &request("auto")).unwrap();
        let Route::Host { reasons } = &p.route else { panic!("{:?}", p.route) };
        assert!(reasons.iter().any(|r| r.contains("no device publishes P2P memory")), "{reasons:?}");
        // A provider with no memory to lend.
        for d in &mut topo.devices {
            if let Some(m) = &mut d.p2pmem {
                *m = P2pMem { size: 0, ..m.clone() };
            }
        }
        let p = plan(&topo, "nvme1n1", "nvme0n1", &[], &request("nvme-a")).unwrap();
        assert!(!p.route.is_p2p(), "{:?}", p.route);
    }

    #[test]
    fn require_p2p_refuses_host_memory_and_a_failed_allocation() {
        let mut req = request("host");
        req.require_p2p = true;
        let p = plan(&switch(), "nvme1n1", "nvme0n1", &[], &req).unwrap();
        assert!(p.refused.last().unwrap().contains("--require-p2p"), "{:?}", p.refused);
        req.via = Via::Auto;
        let mut p = plan(&switch(), "nvme1n1", "nvme0n1", &[], &req).unwrap();
        assert!(!p.is_refused());
        p.fall_back("no contiguous memory".into());
        assert!(p.is_refused() && p.route.is_p2p());
    }

    #[test]
    fn a_failed_allocation_falls_back_to_host_memory_with_a_note() {
        let mut p = plan(&switch(), "nvme1n1", "nvme0n1", &[], &request("auto")).unwrap();
        p.fall_back("nvme-a: ENOMEM".into());
        assert_eq!(p.route, Route::Host { reasons: vec!["nvme-a: ENOMEM".into()] });
        assert!(p.notes[0].ends_with("copying through host memory instead"), "{:?}", p.notes);
        assert!(!p.is_refused());
    }

    #[test]
    fn a_destination_in_use_is_refused_unless_forced() {
        let users = ["nvme0n1p1 is mounted at /data"];
        let p = plan(&switch(), "nvme1n1", "nvme0n1", &users, &request("auto")).unwrap();
        assert_eq!(p.refused[0], users[0]);
        assert!(p.refused[1].contains("is in use"), "{:?}", p.refused);
        let mut req = request("auto");
        req.force = true;
        let p = plan(&switch(), "nvme1n1", "nvme0n1", &users, &req).unwrap();
        assert!(!p.is_refused());
        assert_eq!(p.notes, ["--force: writing although nvme0n1p1 is mounted at /data"]);
    }

    #[test]
    fn bad_requests_are_errors_not_plans() {
        let mut req = request("auto");
        req.depth = 0;
        assert!(matches!(plan(&switch(), "nvme1n1", "nvme0n1", &[], &req), Err(Error::Range(RangeError::NoDepth))));
        let mut req = request("auto");
        req.length = Some(128 * MIB);
        assert!(matches!(
            plan(&switch(), "nvme1n1", "nvme0n1", &[], &req),
            Err(Error::Range(RangeError::PastEnd { .. }))
        ));
        let mut req = request("auto");
        req.chunk = 1000;
        assert!(matches!(
            plan(&switch(), "nvme1n1", "nvme0n1", &[], &req),
            Err(Error::Range(RangeError::BadChunk { .. }))
        ));
        let mut req = request("auto");
        req.src_offset = 512 * MIB;
        assert!(matches!(
            plan(&switch(), "nvme1n1", "nvme0n1", &[], &req),
            Err(Error::Range(RangeError::OffsetPastEnd { .. }))
        ));
    }

    #[test]
    fn depth_is_capped_by_the_chunks_and_host_buffers_follow_the_devices_node() {
        let mut topo = switch();
        for d in &mut topo.devices {
            d.numa_node = Some(1);
        }
        let mut req = request("auto");
        req.length = Some(3 * MIB);
        let p = plan(&topo, "nvme1n1", "nvme0n1", &[], &req).unwrap();
        assert_eq!(p.depth, 3);
        assert_eq!(p.numa_node, Some(1));
        let p = plan(&switch(), "vda", "nvme0n1", &[], &req).unwrap();
        assert_eq!(p.numa_node, None, "the lab's devices have no node");
    }

    #[test]
    fn without_providers_no_topology_is_needed() {
        let engine_less = |via: &str| {
            let topo = switch();
            let engine = Engine::new(&topo).unwrap();
            let (s, d) = (end(&engine, "nvme1n1", 64 * MIB), end(&engine, "nvme0n1", 64 * MIB));
            plan_copy(None, s, d, Vec::new(), &request(via))
        };
        let p = engine_less("auto").unwrap();
        let Route::Host { reasons } = &p.route else { panic!("{:?}", p.route) };
        assert!(reasons[0].contains("no PCI device on this machine has P2P memory"), "{reasons:?}");
        assert!(engine_less("host").is_ok());
        assert!(matches!(engine_less("nvme-a"), Err(Error::WrongRole(_))));
    }

    #[test]
    fn without_providers_on_a_kernel_without_p2pdma_the_cause_is_named() {
        let topo = switch();
        let engine = Engine::new(&topo).unwrap();
        let (s, d) = (end(&engine, "nvme1n1", 64 * MIB), end(&engine, "nvme0n1", 64 * MIB));
        let mut machine = topo.machine.clone();
        machine.kernel_release = Some("6.8.0-test".into());
        machine.kernel.p2pdma.built = crate::model::Built::No;
        let req = CopyRequest {
            require_p2p: true,
            p2pdma_absent: Some(crate::kernel::absent_reason(&machine)),
            ..request("auto")
        };
        let p = plan_copy(None, s, d, Vec::new(), &req).unwrap();
        assert!(p.refused[0].contains("6.8.0-test is built without CONFIG_PCI_P2PDMA"), "{:?}", p.refused);
        assert!(!p.refused[0].contains("no p2pmem/ in sysfs"), "{:?}", p.refused);
        assert!(p.refused[1].contains("--require-p2p"));
    }
}
