//! The pure planner: a request, the verdict engine and configfs's current state in; a plan
//! out: the checks and their answers, what the kernel will do with P2P memory, and the
//! configfs steps in the order the kernel needs them. Nothing here touches the machine.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use p2pdma_core::analysis::{self, CheckReport, FindReport};
use p2pdma_core::{Bdf, Engine, MapType};
use serde::Serialize;

use crate::state::{NvmetState, Port, Subsystem};
use crate::NvmetError;

/// The transports p2pdma exports over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Rdma,
    Loop,
}

impl Transport {
    /// `addr_trtype` as the kernel spells it.
    pub fn trtype(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Rdma => "rdma",
            Transport::Loop => "loop",
        }
    }

    /// The target-side module that implements it.
    pub fn module(self) -> &'static str {
        match self {
            Transport::Tcp => "nvmet-tcp",
            Transport::Rdma => "nvmet-rdma",
            Transport::Loop => "nvme-loop",
        }
    }

    pub fn from_trtype(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(Transport::Tcp),
            "rdma" => Some(Transport::Rdma),
            "loop" => Some(Transport::Loop),
            _ => None,
        }
    }
}

impl FromStr for Transport {
    type Err = NvmetError;
    fn from_str(s: &str) -> Result<Self, NvmetError> {
        Transport::from_trtype(s).ok_or_else(|| {
            NvmetError::BadInput(format!("`{s}` is not a transport p2pdma exports over (tcp, rdma, loop)"))
        })
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.trtype())
    }
}

/// `--p2pmem off|auto|PROVIDER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum P2pmemRequest {
    Off,
    Auto,
    Provider(String),
}

impl FromStr for P2pmemRequest {
    type Err = NvmetError;
    fn from_str(s: &str) -> Result<Self, NvmetError> {
        let bad = |msg: String| Err(NvmetError::BadInput(msg));
        match s {
            "off" => Ok(P2pmemRequest::Off),
            "auto" => Ok(P2pmemRequest::Auto),
            "" => bad("--p2pmem wants off, auto or a provider (BDF or name)".into()),
            "1" | "on" | "y" | "yes" | "true" => {
                bad(format!("--p2pmem {s}: say auto (p2pdma writes the kernel's 1 for it)"))
            }
            "0" | "n" | "no" | "false" | "none" => bad(format!("--p2pmem {s}: say off")),
            p => Ok(P2pmemRequest::Provider(p.to_string())),
        }
    }
}

impl fmt::Display for P2pmemRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            P2pmemRequest::Off => f.write_str("off"),
            P2pmemRequest::Auto => f.write_str("auto"),
            P2pmemRequest::Provider(p) => f.write_str(p),
        }
    }
}

/// What the namespace path is, as the OS layer found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "what")]
pub enum PathKind {
    Block,
    /// Exists but is something else (`regular file`, `character device`, `directory`).
    NotBlock(String),
    Missing,
    /// Not looked at: planning against a topology file or snapshot.
    Unchecked,
}

/// The namespace to export: the path written to `device_path` and what is behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceDevice {
    pub path: String,
    pub kind: PathKind,
    /// The kernel's block device name (`nvme0n1`), when known.
    pub block_name: Option<String>,
    /// The PCI device the kernel walks up to from the disk (`find_parent_pci_dev`).
    pub pci_device: Option<Bdf>,
    /// Who else uses the device, as the OS layer found it (`p2pdma_mem::ends`: mounts,
    /// holders, swap; the same checks as `copy`): `nvme0n1p1 is mounted at /data`.
    pub users: Vec<String>,
}

/// Who may connect to the subsystem: closed by default, so one of the first two must be
/// chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Only these host NQNs (`allowed_hosts`); empty: nobody until a host is linked (restore).
    Hosts(Vec<String>),
    /// `attr_allow_any_host = 1`: anyone who reaches the port.
    AnyHost,
    /// Neither `--host` nor `--allow-any-host`: refused as bad input.
    Unchosen,
}

#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub nqn: String,
    pub namespace: NamespaceDevice,
    pub nsid: Option<u32>,
    pub transport: Transport,
    pub traddr: Option<String>,
    pub trsvcid: Option<String>,
    pub p2pmem: P2pmemRequest,
    pub access: Access,
    /// Export although the device is in use or already exported (`--force`).
    pub force: bool,
}

/// One change to configfs; paths are relative to the configfs root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Step {
    Mkdir {
        path: String,
    },
    Write {
        path: String,
        value: String,
    },
    /// Write `value` unless the attribute already reads so: restore sets every saved
    /// attribute, and a kernel may refuse a write of a default it shows (`addr_tsas` of a
    /// loop port) or ignore none of them.
    Set {
        path: String,
        value: String,
    },
    /// A link at `link` to the item at `target`.
    Symlink {
        target: String,
        link: String,
    },
    Unlink {
        path: String,
    },
    Rmdir {
        path: String,
    },
}

impl Step {
    /// What undoes this step during a rollback. Writes into a directory the plan created go
    /// with the directory; only `enable` is switched off explicitly.
    pub fn undo(&self) -> Option<Step> {
        match self {
            Step::Mkdir { path } => Some(Step::Rmdir { path: path.clone() }),
            Step::Symlink { link, .. } => Some(Step::Unlink { path: link.clone() }),
            Step::Write { path, value } if path.ends_with("/enable") && value == "1" => {
                Some(Step::Write { path: path.clone(), value: "0".into() })
            }
            _ => None,
        }
    }

    /// The path the step changes.
    pub fn path(&self) -> &str {
        match self {
            Step::Mkdir { path }
            | Step::Write { path, .. }
            | Step::Set { path, .. }
            | Step::Unlink { path }
            | Step::Rmdir { path } => path,
            Step::Symlink { link, .. } => link,
        }
    }
}

/// A step as a shell command run in the configfs root, every word quoted for a POSIX
/// shell (`text::shell_quote`): a dry run's steps can be pasted into `sh` and no value
/// from a config file is ever expanded or run.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use p2pdma_core::text::shell_quote as q;
        match self {
            Step::Mkdir { path } => write!(f, "mkdir {}", q(path)),
            Step::Write { path, value } => write!(f, "echo {} > {}", q(value), q(path)),
            Step::Set { path, value } => {
                write!(f, "echo {} > {}  # unless it reads {}", q(value), q(path), q(value))
            }
            Step::Symlink { target, link } => write!(f, "ln -s {} {}", q(target), q(link)),
            Step::Unlink { path } => write!(f, "rm {}", q(path)),
            Step::Rmdir { path } => write!(f, "rmdir {}", q(path)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Apply the steps.
    Proceed,
    /// The same export exists: nothing to do.
    AlreadyExported,
    /// `remove` of an NQN that is not there: nothing to do.
    NotExported,
    /// Refused before configfs is touched; `reasons` say why.
    Refused,
}

/// One thing checked before anything is written.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: &'static str,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamespaceInfo {
    pub path: String,
    pub path_kind: PathKind,
    pub block_device: Option<String>,
    pub pci_device: Option<Bdf>,
    pub pci_name: Option<String>,
    pub driver: Option<String>,
}

/// The port the export goes through: an existing one with the same address, or a new one.
#[derive(Debug, Clone, Serialize)]
pub struct PortPlan {
    pub id: String,
    pub existing: bool,
    pub trtype: String,
    pub adrfam: Option<String>,
    pub traddr: Option<String>,
    pub trsvcid: Option<String>,
}

/// An RDMA device a controller may arrive on, and what nvmet-rdma does with P2P for it.
#[derive(Debug, Clone, Serialize)]
pub struct RdmaClient {
    pub device: String,
    /// Its PCI device; None for software devices (rxe, siw).
    pub pci_device: Option<Bdf>,
    /// The provider the kernel would use for controllers on this device.
    pub provider: Option<Bdf>,
    pub map_type: Option<MapType>,
    pub distance: Option<u32>,
    pub uses_p2p: bool,
    pub why: String,
}

/// What happens with P2P memory, from the namespace's enable check to every I/O.
#[derive(Debug, Clone, Serialize)]
pub struct P2pPlan {
    /// `off`, `auto` or the provider as given.
    pub requested: String,
    /// The value written to `namespaces/<nsid>/p2pmem`; null: nothing written (the kernel's 0).
    pub p2pmem: Option<String>,
    /// The explicit provider, or the one the kernel is expected to pick for `auto`.
    pub provider: Option<Bdf>,
    pub provider_name: Option<String>,
    /// Provider to the namespace's PCI device (the check the kernel makes at enable).
    pub distance: Option<u32>,
    pub map_type: Option<MapType>,
    /// `p2pdma check PROVIDER <namespace's PCI device>` for an explicit provider.
    pub check: Option<CheckReport>,
    /// `p2pdma find <namespace's PCI device>` for `auto`.
    pub find: Option<FindReport>,
    /// Which P2P client the transport gives nvmet for each controller.
    pub transport_client: String,
    pub rdma_devices: Vec<RdmaClient>,
    /// The prediction: controllers will stage I/O in P2P memory.
    pub used: bool,
    /// The story in order, for humans.
    pub summary: Vec<String>,
    /// Lines the kernel is expected to log when it acts on this (at connect for RDMA).
    pub kernel_log: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportPlan {
    pub nqn: String,
    pub nsid: u32,
    pub namespace: NamespaceInfo,
    pub transport: Transport,
    pub port: PortPlan,
    pub p2p: P2pPlan,
    pub checks: Vec<Check>,
    /// Host NQNs allowed to connect (`allowed_hosts`); empty with `allow_any_host`.
    pub allowed_hosts: Vec<String>,
    pub allow_any_host: bool,
    /// Said on stderr too: `--allow-any-host`, `--force`.
    pub warnings: Vec<String>,
    pub outcome: Outcome,
    pub reasons: Vec<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KeptPort {
    pub port: String,
    pub why: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RemovePlan {
    pub nqn: String,
    pub outcome: Outcome,
    pub namespaces: Vec<u32>,
    /// Ports the subsystem is unlinked from.
    pub ports_unlinked: Vec<String>,
    /// Ports removed because this subsystem was all they exported.
    pub ports_removed: Vec<String>,
    pub ports_kept: Vec<KeptPort>,
    /// Host entries (`nvmet/hosts/`) removed because this subsystem was the last to allow them.
    pub hosts_removed: Vec<String>,
    pub reasons: Vec<String>,
    pub steps: Vec<Step>,
}

/// The kernel's NQN field is 223 characters plus NUL (`NVMF_NQN_SIZE`).
const NQN_MAX: usize = 223;
const DISCOVERY_NQN: &str = "nqn.2014-08.org.nvmexpress.discovery";
/// The default NVMe/TCP and NVMe/RDMA service id.
pub const DEFAULT_TRSVCID: &str = "4420";

pub(crate) fn check_nqn(nqn: &str) -> Result<(), NvmetError> {
    check_name("NQN", nqn)?;
    if nqn == DISCOVERY_NQN {
        return Err(NvmetError::BadInput(format!(
            "NQN `{nqn}`: that is the discovery subsystem's NQN, which the kernel keeps for itself"
        )));
    }
    Ok(())
}

/// A name that becomes a configfs directory (an NQN, a host NQN, a referral).
pub(crate) fn check_name(what: &str, nqn: &str) -> Result<(), NvmetError> {
    let bad = |why: &str| Err(NvmetError::BadInput(format!("{what} `{nqn}`: {why}")));
    if nqn.is_empty() {
        return bad("empty");
    }
    if nqn.len() > NQN_MAX {
        return bad(&format!("{} bytes, the kernel's limit is {NQN_MAX}", nqn.len()));
    }
    if nqn == "." || nqn == ".." || nqn.contains('/') {
        return bad("it becomes a configfs directory name: no '/', '.' or '..'");
    }
    if nqn.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("no spaces or control characters");
    }
    Ok(())
}

/// The host NQNs to allow, checked and without repeats; Err for `Unchosen`.
fn check_access(access: &Access) -> Result<Option<Vec<String>>, NvmetError> {
    match access {
        Access::AnyHost => Ok(None),
        Access::Unchosen => Err(NvmetError::BadInput(
            "choose who may connect: --host NQN (repeatable) for named hosts (the host NQN is in the host's /etc/nvme/hostnqn), or --allow-any-host to admit any host that reaches the port".into(),
        )),
        Access::Hosts(hosts) => {
            let mut v: Vec<String> = Vec::new();
            for h in hosts {
                check_name("host NQN", h)?;
                if !v.contains(h) {
                    v.push(h.clone());
                }
            }
            Ok(Some(v))
        }
    }
}

/// A port's address fields: `addr_adrfam`, `addr_traddr`, `addr_trsvcid`.
struct Address {
    adrfam: Option<String>,
    traddr: Option<String>,
    trsvcid: Option<String>,
}

/// The port's address fields for the transport, `adrfam` from the address.
fn port_address(req: &ExportRequest) -> Result<Address, NvmetError> {
    match req.transport {
        Transport::Tcp | Transport::Rdma => {
            let addr = req.traddr.as_deref().ok_or_else(|| {
                NvmetError::BadInput(format!(
                    "--addr is needed for {}: the IP address to listen on (e.g. 127.0.0.1)",
                    req.transport
                ))
            })?;
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| NvmetError::BadInput(format!("--addr `{addr}` is not an IPv4 or IPv6 address")))?;
            let svc = req.trsvcid.clone().unwrap_or_else(|| DEFAULT_TRSVCID.into());
            if !matches!(svc.parse::<u16>(), Ok(p) if p > 0) {
                return Err(NvmetError::BadInput(format!("--port `{svc}` is not a TCP/UDP port number (1-65535)")));
            }
            let fam = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
            Ok(Address { adrfam: Some(fam.into()), traddr: Some(addr.into()), trsvcid: Some(svc) })
        }
        Transport::Loop => {
            if req.trsvcid.is_some() {
                return Err(NvmetError::BadInput("--port means nothing for loop (there is no network)".into()));
            }
            Ok(Address { adrfam: None, traddr: req.traddr.clone(), trsvcid: None })
        }
    }
}

/// Whether the namespace's queue will have `BLK_FEAT_PCI_P2PDMA` (only nvme-pci sets it, as far
/// as p2pdma knows); Err is the reason it will not.
fn namespace_p2p_capable(engine: &Engine<'_>, ns: &NamespaceDevice) -> Result<usize, String> {
    let what = ns.block_name.clone().unwrap_or_else(|| ns.path.clone());
    let kernel = format!("the kernel refuses: \"peer-to-peer DMA is not supported by the driver of {}\"", ns.path);
    if let Some(head) =
        ns.block_name.as_deref().filter(|b| engine.topo.aliases.get(*b).is_some_and(|a| a.is_multipath_head()))
    {
        // nvmet judges the namespace's own device; a head's is the virtual nvme-subsystem
        // device (seen on 7.2.13 in the lab: p2pdma-cli/tests/lab_multipath.rs).
        return Err(format!(
            "{head} is an NVMe multipath head, whose device is the virtual nvme-subsystem device, not a PCI \
             device: the kernel refuses (\"block {head}: cannot be used for peer-to-peer DMA as it is not a PCI \
             device\"); export without P2P memory (--p2pmem off), or boot with nvme_core.multipath=N"
        ));
    }
    let Some(i) = ns.pci_device.and_then(|b| engine.index_of(b)) else {
        return Err(format!(
            "{what} has no PCI device above it (a loop, fabric or virtual disk), so its queue cannot do P2P DMA: {kernel}"
        ));
    };
    let d = engine.device(i);
    let nvme = d.class >> 8 == 0x0108;
    match d.driver.as_deref() {
        Some("nvme") => Ok(i),
        None if nvme => Ok(i),
        other => Err(format!(
            "{what} is on {} driven by {}: only the NVMe PCI driver marks its queues P2P-capable (BLK_FEAT_PCI_P2PDMA); {kernel}",
            d.label(),
            other.unwrap_or("no driver")
        )),
    }
}

fn label_of(engine: &Engine<'_>, bdf: Bdf) -> String {
    engine.index_of(bdf).map(|i| engine.device(i).label()).unwrap_or_else(|| bdf.to_string())
}

/// What a transport does with P2P memory for a namespace whose `p2pmem` shows `p2pmem`
/// (`1` or a provider's name): the client it passes, each RDMA device's outcome, and
/// whether any controller will use P2P memory. Shared by the planner and `list`.
pub(crate) fn transport_p2p(
    engine: &Engine<'_>,
    transport: Transport,
    p2pmem: &str,
    ns_pci: Option<Bdf>,
    nsid: u32,
    device_path: &str,
) -> (String, Vec<RdmaClient>, bool) {
    match transport {
        Transport::Tcp => (
            "TCP does not use P2P memory: nvmet-tcp gives nvmet no PCI device as P2P client, so every I/O is staged in host memory (the namespace's p2pmem setting only changes the check at enable)".into(),
            Vec::new(),
            false,
        ),
        Transport::Loop => (
            "loop does not use P2P memory: nvme-loop gives nvmet no PCI device as P2P client, so every I/O goes through host memory".into(),
            Vec::new(),
            false,
        ),
        Transport::Rdma => {
            let mut devices = Vec::new();
            for (name, alias) in engine.topo.aliases.iter().filter(|(_, a)| a.class == "infiniband") {
                devices.push(rdma_client(engine, name, alias.pci_parent, p2pmem, ns_pci, nsid, device_path));
            }
            let used = devices.iter().any(|d| d.uses_p2p);
            let text = if devices.is_empty() {
                "no RDMA device on this machine: nvmet-rdma passes the RDMA device a connection arrives on as P2P client, and there is none yet".to_string()
            } else {
                "nvmet-rdma passes the RDMA device each connection arrives on as P2P client (only devices that DMA through the PCI bus: not rxe or siw); nvmet then checks the provider against it per controller and silently falls back to host memory if it fails".to_string()
            };
            (text, devices, used)
        }
    }
}

fn rdma_client(
    engine: &Engine<'_>,
    name: &str,
    pci: Option<Bdf>,
    p2pmem: &str,
    ns_pci: Option<Bdf>,
    nsid: u32,
    device_path: &str,
) -> RdmaClient {
    let mut c = RdmaClient {
        device: name.to_string(),
        pci_device: pci,
        provider: None,
        map_type: None,
        distance: None,
        uses_p2p: false,
        why: String::new(),
    };
    let Some(ci) = pci.and_then(|b| engine.index_of(b)) else {
        c.why = format!(
            "{name} has no PCI device (a software RDMA device such as rxe or siw, which DMA through the CPU): nvmet-rdma passes no P2P client for it (ib_dma_pci_p2p_dma_supported is false), so controllers on {name} never use P2P memory and the kernel logs nothing about it"
        );
        return c;
    };
    let client_label = engine.device(ci).label();
    if p2pmem == "1" {
        let Some(ns) = ns_pci else {
            c.why = "the namespace has no PCI device".into();
            return c;
        };
        match analysis::find(engine, &[engine.device(ci).bdf.to_string(), ns.to_string()]) {
            Ok(f) if f.provider.is_some() => {
                c.provider = f.provider;
                c.distance = f.distance;
                c.uses_p2p = true;
                c.why = format!(
                    "the kernel picks {} for controllers on {name} ({client_label}) and the namespace: total distance {}",
                    label_of(engine, f.provider.unwrap_or(ns)),
                    f.distance.unwrap_or(0)
                );
            }
            _ => {
                c.why = format!(
                    "no published provider reaches both {name} ({client_label}) and the namespace: the kernel logs \"no peer-to-peer memory is available that's supported by {name} and {device_path}\" and uses host memory"
                );
            }
        }
        return c;
    }
    let Some(pi) = p2pmem.parse::<Bdf>().ok().and_then(|b| engine.index_of(b)) else {
        c.why = format!("the provider {p2pmem} is not in this topology");
        return c;
    };
    let r = engine.pair(pi, ci);
    c.provider = Some(engine.device(pi).bdf);
    c.map_type = Some(r.map_type);
    c.distance = r.distance;
    if r.map_type.supported() {
        c.uses_p2p = true;
        c.why = format!(
            "{} reaches {name} ({client_label}): {}, distance {}; the kernel logs \"using p2pmem on {} for nsid {nsid}\" when a controller connects",
            engine.device(pi).label(),
            r.map_type.as_str(),
            r.distance.unwrap_or(0),
            engine.device(pi).bdf
        );
    } else {
        c.why = format!(
            "{} cannot reach {name} ({client_label}) (see `p2pdma check {} {}`): the kernel silently uses host memory for controllers on {name}",
            engine.device(pi).label(),
            engine.device(pi).bdf,
            engine.device(ci).bdf
        );
    }
    c
}

/// What the checks found, in the order they ran: every check, the warnings, the reasons
/// for a refusal, and whether anything refuses the export.
#[derive(Default)]
struct Findings {
    checks: Vec<Check>,
    warnings: Vec<String>,
    reasons: Vec<String>,
    refused: bool,
}

impl Findings {
    fn pass(&mut self, what: &'static str, detail: String) {
        self.checks.push(Check { what, ok: true, detail });
    }

    /// A failed check that refuses the export, with `reason` said for it.
    fn refuse(&mut self, what: &'static str, detail: String, reason: String) {
        self.refused = true;
        self.checks.push(Check { what, ok: false, detail });
        self.reasons.push(reason);
    }

    /// A finding `--force` lets pass: a warning with it, a refusal without.
    fn forced_or_refused(&mut self, what: &'static str, finding: String, force: bool, reason: String) {
        if force {
            let w = format!("--force: exporting although {finding}");
            self.pass(what, w.clone());
            self.warnings.push(w);
        } else {
            self.refuse(what, finding, reason);
        }
    }
}

/// Plans `p2pdma nvmet export`. Errors are bad input (exit 2); refusals come back as a plan
/// with `outcome: refused` and nothing to do.
pub fn plan_export(engine: &Engine<'_>, req: &ExportRequest, state: &NvmetState) -> Result<ExportPlan, NvmetError> {
    let (address, hosts) = check_request(req)?;
    let ns = &req.namespace;
    let existing = state.subsystem(&req.nqn);
    let nsid = req
        .nsid
        .or_else(|| existing.and_then(|s| s.namespaces.iter().find(|n| n.device_path == ns.path)).map(|n| n.nsid))
        .unwrap_or(1);
    let mut found = Findings::default();
    let info = check_namespace(engine, ns, &mut found);
    check_users(ns, req.force, &mut found);
    let mut p2p = plan_p2pmem(engine, &req.p2pmem, ns, &mut found)?;
    plan_transport(engine, req.transport, ns, nsid, &mut p2p);
    let port = plan_port(state, req.transport, address);
    check_hosts(hosts.as_deref(), &port, ns, state, &mut found);
    found.pass(
        "port",
        if port.existing {
            format!("reuse port {} ({})", port.id, port_text(&port))
        } else {
            format!("new port {} ({})", port.id, port_text(&port))
        },
    );
    let want_p2pmem = p2p.p2pmem.clone().unwrap_or_else(|| "0".into());
    let already = check_nqn_free(req, existing, nsid, &want_p2pmem, hosts.as_deref(), state, &port, &mut found);
    check_other_exports(req, state, &mut found);

    let outcome = match (found.refused, already) {
        (true, _) => Outcome::Refused,
        (false, true) => Outcome::AlreadyExported,
        (false, false) => Outcome::Proceed,
    };
    let steps = if outcome == Outcome::Proceed {
        export_steps(&req.nqn, nsid, &ns.path, p2p.p2pmem.as_deref(), hosts.as_deref(), state, &port)
    } else {
        Vec::new()
    };
    Ok(ExportPlan {
        nqn: req.nqn.clone(),
        nsid,
        namespace: info,
        transport: req.transport,
        port,
        p2p,
        checks: found.checks,
        allow_any_host: hosts.is_none(),
        allowed_hosts: hosts.unwrap_or_default(),
        warnings: found.warnings,
        outcome,
        reasons: found.reasons,
        steps,
    })
}

/// The request's own checks (NQN, nsid, what the path is, the port address, who may
/// connect): all bad input. The address, and the hosts (None: any host).
fn check_request(req: &ExportRequest) -> Result<(Address, Option<Vec<String>>), NvmetError> {
    check_nqn(&req.nqn)?;
    if let Some(n) = req.nsid {
        if n == 0 || n == u32::MAX {
            return Err(NvmetError::BadInput(format!("--nsid {n}: namespace ids run from 1 to 4294967294")));
        }
    }
    let ns = &req.namespace;
    match &ns.kind {
        PathKind::Missing => return Err(NvmetError::BadInput(format!("{}: no such file or device", ns.path))),
        PathKind::NotBlock(what) => {
            return Err(NvmetError::BadInput(format!(
                "{} is a {what}, not a block device: p2pdma exports block devices (nvmet would serve a file through the page cache, and the kernel refuses P2P memory for it: \"peer-to-peer DMA is not supported by non-block device namespaces\")",
                ns.path
            )))
        }
        PathKind::Block | PathKind::Unchecked => {}
    }
    Ok((port_address(req)?, check_access(&req.access)?))
}

/// The namespace as the plan shows it, and its check.
fn check_namespace(engine: &Engine<'_>, ns: &NamespaceDevice, found: &mut Findings) -> NamespaceInfo {
    let ns_dev = ns.pci_device.and_then(|b| engine.index_of(b)).map(|i| engine.device(i));
    found.pass(
        "namespace",
        format!(
            "{}{} on {}",
            ns.path,
            match &ns.kind {
                PathKind::Block => " is a block device",
                _ => "",
            },
            ns_dev.map(|d| d.label()).unwrap_or_else(|| "no PCI device".into())
        ),
    );
    NamespaceInfo {
        path: ns.path.clone(),
        path_kind: ns.kind.clone(),
        block_device: ns.block_name.clone(),
        pci_device: ns.pci_device,
        pci_name: ns_dev.and_then(|d| d.name.clone()),
        driver: ns_dev.and_then(|d| d.driver.clone()),
    }
}

/// Who else uses the device: the same findings as `copy` refuses on (`--force` overrides).
fn check_users(ns: &NamespaceDevice, force: bool, found: &mut Findings) {
    if ns.users.is_empty() {
        if ns.kind == PathKind::Block {
            found.pass("in use", format!("nobody mounts, holds or swaps on {}", ns.path));
        }
    } else if force {
        for u in &ns.users {
            found.forced_or_refused("in use", u.clone(), true, String::new());
        }
    } else {
        for u in &ns.users {
            found.refuse("in use", u.clone(), u.clone());
        }
        found.reasons.push(format!(
            "{} is in use: refusing to export it (a host writing under a mounted file system or a holder corrupts it; --force overrides)",
            ns.path
        ));
    }
}

/// The P2P part: what is written to `p2pmem`, and what the kernel will do with it.
fn plan_p2pmem(
    engine: &Engine<'_>,
    request: &P2pmemRequest,
    ns: &NamespaceDevice,
    found: &mut Findings,
) -> Result<P2pPlan, NvmetError> {
    let mut p2p = P2pPlan {
        requested: request.to_string(),
        p2pmem: None,
        provider: None,
        provider_name: None,
        distance: None,
        map_type: None,
        check: None,
        find: None,
        transport_client: String::new(),
        rdma_devices: Vec::new(),
        used: false,
        summary: Vec::new(),
        kernel_log: Vec::new(),
    };
    let capable = namespace_p2p_capable(engine, ns);
    match (request, capable) {
        (P2pmemRequest::Off, _) => p2p.summary.push("p2pmem off: nvmet stages every I/O in host memory".into()),
        (P2pmemRequest::Provider(name), Err(why)) => {
            // The provider must still be one: bad input comes before a refusal.
            analysis::check(engine, name, &[])?;
            found.refuse("namespace driver", why.clone(), why);
        }
        (P2pmemRequest::Provider(name), Ok(ns_index)) => {
            p2p_from_provider(engine, name, engine.device(ns_index).bdf, &mut p2p, found)?
        }
        (P2pmemRequest::Auto, Ok(ns_index)) => p2p_auto(engine, engine.device(ns_index).bdf, &mut p2p, found)?,
        (P2pmemRequest::Auto, Err(why)) => {
            p2p.summary.push(format!("p2pmem off (auto): {why}; P2P will not be used"));
            found.pass("provider", format!("auto: none ({why})"));
        }
    }
    Ok(p2p)
}

/// `--p2pmem PROVIDER`: the provider must publish P2P memory the namespace's device
/// reaches, as the kernel checks when the namespace is enabled.
fn p2p_from_provider(
    engine: &Engine<'_>,
    name: &str,
    ns_pci: Bdf,
    p2p: &mut P2pPlan,
    found: &mut Findings,
) -> Result<(), NvmetError> {
    let report = analysis::check(engine, name, &[ns_pci.to_string()])?;
    p2p.provider = Some(report.provider);
    p2p.provider_name = report.provider_name.clone();
    p2p.map_type = Some(report.map_type);
    p2p.distance = report.distance;
    let plabel = label_of(engine, report.provider);
    let nlabel = label_of(engine, ns_pci);
    match report.p2pmem.as_ref().filter(|m| m.published) {
        Some(m) => {
            found.pass("provider", format!("{plabel} publishes P2P memory ({} of {} bytes free)", m.available, m.size))
        }
        None => {
            let why = format!(
                "{plabel} has P2P memory but does not publish it: the kernel refuses it for nvmet (\"PCI device has no peer-to-peer memory: {}\", ENODEV)",
                report.provider
            );
            found.refuse("provider", why.clone(), why);
        }
    }
    if report.clients.iter().any(|v| !v.certain) {
        found.pass("verdict", "uncertain: ACS on the path could not be read (needs root); see `p2pdma check`".into());
    }
    if report.map_type.supported() {
        found.pass(
            "verdict",
            format!(
                "{plabel} -> {nlabel}: {}, distance {} (the kernel's check when the namespace is enabled)",
                report.map_type.as_str(),
                report.distance.unwrap_or(0)
            ),
        );
    } else {
        found.refuse(
            "verdict",
            format!("{plabel} -> {nlabel}: not supported: enabling the namespace would fail (EINVAL)"),
            format!(
                "the kernel refuses P2P between {plabel} and {nlabel} (the namespace's device): enabling the namespace would fail with EINVAL"
            ),
        );
        found.reasons.extend(report.clients.iter().flat_map(|v| v.reasons.iter().cloned()));
        p2p.summary.push(format!("p2pmem {}: refused, nothing written", report.provider));
    }
    if !found.refused {
        p2p.p2pmem = Some(report.provider.to_string());
        p2p.summary.push(format!(
            "p2pmem = {}: the kernel checks it against {nlabel} when the namespace is enabled: {}, distance {} (passes)",
            report.provider,
            report.map_type.as_str(),
            report.distance.unwrap_or(0)
        ));
    }
    p2p.check = Some(report);
    Ok(())
}

/// `--p2pmem auto`: the provider `find` picks for the namespace's device, if any.
fn p2p_auto(engine: &Engine<'_>, ns_pci: Bdf, p2p: &mut P2pPlan, found: &mut Findings) -> Result<(), NvmetError> {
    let f = analysis::find(engine, &[ns_pci.to_string()])?;
    match f.provider {
        Some(pb) => {
            // "1", not the name: nvmet then chooses per controller with the transport's
            // client included (pci_p2pmem_find_many), which a fixed provider cannot do,
            // and the choice survives renumbering.
            p2p.p2pmem = Some("1".into());
            p2p.provider = Some(pb);
            p2p.provider_name = engine.index_of(pb).and_then(|i| engine.device(i).name.clone());
            p2p.distance = f.distance;
            p2p.map_type = engine.index_of(pb).zip(engine.index_of(ns_pci)).map(|(p, c)| engine.pair(p, c).map_type);
            p2p.summary.push(format!(
                "p2pmem = 1 (auto): a published provider reaches {}: the kernel's enable check finds {} (distance {}); p2pdma writes 1 rather than the name so that nvmet picks per controller a provider that also reaches the transport's device",
                label_of(engine, ns_pci),
                label_of(engine, pb),
                f.distance.unwrap_or(0)
            ));
            if f.tied.len() > 1 {
                p2p.summary.push(format!("{} providers tie: the kernel picks one at random each time", f.tied.len()));
            }
            found.pass("provider", format!("auto: {} (distance {})", label_of(engine, pb), f.distance.unwrap_or(0)));
        }
        None => {
            let why = f.reasons.join("; ");
            p2p.summary.push(format!(
                "p2pmem off (auto found no provider for {}): {why}; P2P will not be used",
                label_of(engine, ns_pci)
            ));
            found.pass("provider", format!("auto: none ({why})"));
        }
    }
    p2p.find = Some(f);
    Ok(())
}

/// What the transport's own device does with the P2P memory, and the summary's last line.
fn plan_transport(engine: &Engine<'_>, transport: Transport, ns: &NamespaceDevice, nsid: u32, p2p: &mut P2pPlan) {
    if let Some(value) = &p2p.p2pmem {
        let (client, devices, used) = transport_p2p(engine, transport, value, ns.pci_device, nsid, &ns.path);
        p2p.transport_client = client.clone();
        p2p.summary.push(client);
        for d in &devices {
            p2p.summary.push(d.why.clone());
            if d.uses_p2p {
                if let Some(pb) = d.provider {
                    p2p.kernel_log.push(format!("nvmet: using p2pmem on {pb} for nsid {nsid}"));
                }
            }
        }
        p2p.rdma_devices = devices;
        p2p.used = used;
    } else {
        p2p.transport_client = match transport {
            Transport::Tcp => "TCP does not use P2P memory".into(),
            Transport::Loop => "loop does not use P2P memory".into(),
            Transport::Rdma => "RDMA could use P2P memory, but p2pmem is off".into(),
        };
    }
    p2p.summary.push(if p2p.used {
        let via: Vec<String> = p2p
            .rdma_devices
            .iter()
            .filter(|d| d.uses_p2p)
            .map(|d| {
                format!(
                    "via {} on {} (distance {})",
                    d.provider.map(|b| label_of(engine, b)).unwrap_or_default(),
                    d.device,
                    d.distance.unwrap_or(0)
                )
            })
            .collect();
        format!("P2P will be used: {}", via.join(", "))
    } else {
        "P2P will not be used: data goes through host memory".into()
    });
}

/// The port with this transport and address if configfs has one, else the next new one.
fn plan_port(state: &NvmetState, transport: Transport, address: Address) -> PortPlan {
    let Address { adrfam, traddr, trsvcid } = address;
    match state.ports.iter().find(|p| p.same_address(transport.trtype(), traddr.as_deref(), trsvcid.as_deref())) {
        Some(p) => PortPlan {
            id: p.name.clone(),
            existing: true,
            trtype: transport.trtype().into(),
            adrfam: p.adrfam.clone(),
            traddr,
            trsvcid,
        },
        None => PortPlan {
            id: next_port_id(&state.ports).to_string(),
            existing: false,
            trtype: transport.trtype().into(),
            adrfam,
            traddr,
            trsvcid,
        },
    }
}

/// Who may connect (None: any host, said as a warning).
fn check_hosts(
    hosts: Option<&[String]>,
    port: &PortPlan,
    ns: &NamespaceDevice,
    state: &NvmetState,
    found: &mut Findings,
) {
    match hosts {
        None => {
            found.pass("hosts", "any host (attr_allow_any_host = 1)".into());
            found.warnings.push(format!(
                "--allow-any-host: any host that reaches {} may connect and read and write {}",
                port_text(port),
                ns.path
            ));
        }
        Some([]) => found.pass("hosts", "no host may connect until one is linked into allowed_hosts".into()),
        Some(h) => found.pass(
            "hosts",
            format!(
                "only {} (allowed_hosts; attr_allow_any_host stays 0){}",
                h.join(", "),
                match h.iter().filter(|h| state.hosts.contains(h)).count() {
                    0 => String::new(),
                    n => format!("; {n} host entr{} already exist", if n == 1 { "y" } else { "ies" }),
                }
            ),
        ),
    }
}

/// The NQN: free, or already exporting exactly this (true: nothing to do), or in use by
/// another export (refused).
#[allow(clippy::too_many_arguments)]
fn check_nqn_free(
    req: &ExportRequest,
    existing: Option<&crate::state::Subsystem>,
    nsid: u32,
    want_p2pmem: &str,
    hosts: Option<&[String]>,
    state: &NvmetState,
    port: &PortPlan,
    found: &mut Findings,
) -> bool {
    let ns = &req.namespace;
    let Some(s) = existing else {
        found.pass("nqn", format!("{} is free", req.nqn));
        return false;
    };
    let diffs = differences(s, nsid, &ns.path, want_p2pmem, hosts, state, port);
    if diffs.is_empty() {
        found.pass("nqn", format!("{} already exports {} as nsid {nsid} on port {}", req.nqn, ns.path, port.id));
        found.reasons.push("already exported, nothing changed".into());
        return true;
    }
    let why = format!(
        "NQN already in use: {} exists with a different export ({}); remove it first (p2pdma nvmet remove --nqn {}) or choose another NQN",
        req.nqn,
        diffs.join("; "),
        req.nqn
    );
    found.refuse("nqn", why.clone(), why);
    false
}

/// The same device exported by another subsystem (`--force` overrides).
fn check_other_exports(req: &ExportRequest, state: &NvmetState, found: &mut Findings) {
    let ns = &req.namespace;
    for other in state.subsystems.iter().filter(|s| s.nqn != req.nqn) {
        let same = |n: &&crate::state::Namespace| {
            n.device_path == ns.path
                || (ns.block_name.is_some() && n.block_device.is_some() && n.block_device == ns.block_name)
        };
        for n in other.namespaces.iter().filter(same) {
            let what = format!(
                "{} is already exported: namespace {} of {} ({}); two subsystems writing one device do not coordinate",
                ns.path, n.nsid, other.nqn, n.device_path
            );
            found.forced_or_refused("exported", what.clone(), req.force, format!("{what} (--force overrides)"));
        }
    }
}

fn port_text(p: &PortPlan) -> String {
    let mut s = p.trtype.clone();
    if let Some(a) = &p.traddr {
        s.push(' ');
        s.push_str(a);
    }
    if let Some(svc) = &p.trsvcid {
        s.push(':');
        s.push_str(svc);
    }
    s
}

/// The smallest port id from 1 up that no port directory uses.
fn next_port_id(ports: &[Port]) -> u16 {
    (1..=u16::MAX).find(|id| !ports.iter().any(|p| p.id == Some(*id) || p.name == id.to_string())).unwrap_or(0)
}

/// How an existing subsystem differs from the requested export (empty: it is that export).
fn differences(
    s: &Subsystem,
    nsid: u32,
    path: &str,
    p2pmem: &str,
    hosts: Option<&[String]>,
    state: &NvmetState,
    port: &PortPlan,
) -> Vec<String> {
    let mut d = Vec::new();
    match s.namespaces.iter().find(|n| n.nsid == nsid) {
        None => d.push(format!("it has no namespace {nsid}")),
        Some(n) => {
            if n.device_path != path {
                d.push(format!(
                    "namespace {nsid} is {}",
                    if n.device_path.is_empty() { "unset" } else { &n.device_path }
                ));
            }
            if !n.enabled {
                d.push(format!("namespace {nsid} is disabled"));
            }
            let have = n.p2pmem.as_deref().unwrap_or("0");
            if have != p2pmem {
                d.push(format!("namespace {nsid} has p2pmem {have}, not {p2pmem}"));
            }
        }
    }
    let others: Vec<String> = s.namespaces.iter().filter(|n| n.nsid != nsid).map(|n| n.nsid.to_string()).collect();
    if !others.is_empty() {
        d.push(format!("it also has namespace(s) {}", others.join(", ")));
    }
    match hosts {
        None if !s.allow_any_host => d.push(format!(
            "it admits only listed hosts ({})",
            if s.allowed_hosts.is_empty() { "none".to_string() } else { s.allowed_hosts.join(", ") }
        )),
        Some(_) if s.allow_any_host => d.push("it admits any host".into()),
        Some(want) => {
            let mut have = s.allowed_hosts.clone();
            let mut want = want.to_vec();
            have.sort();
            want.sort();
            if have != want {
                d.push(format!(
                    "it admits {}, not {}",
                    if have.is_empty() { "no host".to_string() } else { have.join(", ") },
                    want.join(", ")
                ));
            }
        }
        None => {}
    }
    if !port.existing || !state.ports_of(&s.nqn).any(|p| p.name == port.id) {
        let on: Vec<String> = state.ports_of(&s.nqn).map(|p| format!("port {} ({})", p.name, p.address())).collect();
        d.push(if on.is_empty() {
            "it is on no port".to_string()
        } else {
            format!("it is exported on {}, not on {}", on.join(", "), port_text(port))
        });
    }
    d
}

/// The kernel's order: host entries that do not exist yet; the subsystem and its host policy
/// (`attr_allow_any_host = 1` only when chosen, otherwise each host linked into
/// `allowed_hosts`, before any port can reach it); the namespace with its device and
/// P2P setting (p2pmem must be written before enable: the kernel answers EBUSY after);
/// enable (the P2P check runs here); the port's address; and last the link that makes the
/// port listen (the transport's add_port runs on the first link).
fn export_steps(
    nqn: &str,
    nsid: u32,
    path: &str,
    p2pmem: Option<&str>,
    hosts: Option<&[String]>,
    state: &NvmetState,
    port: &PortPlan,
) -> Vec<Step> {
    let sub = format!("nvmet/subsystems/{nqn}");
    let ns = format!("{sub}/namespaces/{nsid}");
    let p = format!("nvmet/ports/{}", port.id);
    let w = |path: String, value: &str| Step::Write { path, value: value.to_string() };
    let mut steps = Vec::new();
    for h in hosts.unwrap_or_default().iter().filter(|h| !state.hosts.contains(h)) {
        steps.push(Step::Mkdir { path: format!("nvmet/hosts/{h}") });
    }
    steps.push(Step::Mkdir { path: sub.clone() });
    match hosts {
        None => steps.push(w(format!("{sub}/attr_allow_any_host"), "1")),
        Some(hosts) => {
            steps.extend(hosts.iter().map(|h| Step::Symlink {
                target: format!("nvmet/hosts/{h}"),
                link: format!("{sub}/allowed_hosts/{h}"),
            }))
        }
    }
    steps.push(Step::Mkdir { path: ns.clone() });
    steps.push(w(format!("{ns}/device_path"), path));
    if let Some(v) = p2pmem {
        steps.push(w(format!("{ns}/p2pmem"), v));
    }
    steps.push(w(format!("{ns}/enable"), "1"));
    if !port.existing {
        steps.push(Step::Mkdir { path: p.clone() });
        steps.push(w(format!("{p}/addr_trtype"), &port.trtype));
        if let Some(f) = &port.adrfam {
            steps.push(w(format!("{p}/addr_adrfam"), f));
        }
        if let Some(a) = &port.traddr {
            steps.push(w(format!("{p}/addr_traddr"), a));
        }
        if let Some(s) = &port.trsvcid {
            steps.push(w(format!("{p}/addr_trsvcid"), s));
        }
    }
    steps.push(Step::Symlink { target: sub, link: format!("{p}/subsystems/{nqn}") });
    steps
}

/// Plans `p2pdma nvmet remove`: unlink the subsystem from its ports, disable and remove its
/// namespaces, remove it, and remove the ports it alone used. A port that still exports
/// another subsystem, or carries referrals or ANA groups someone made, stays.
pub fn plan_remove(state: &NvmetState, nqn: &str) -> Result<RemovePlan, NvmetError> {
    check_nqn(nqn)?;
    let mut plan = RemovePlan {
        nqn: nqn.to_string(),
        outcome: Outcome::Proceed,
        namespaces: Vec::new(),
        ports_unlinked: Vec::new(),
        ports_removed: Vec::new(),
        ports_kept: Vec::new(),
        hosts_removed: Vec::new(),
        reasons: Vec::new(),
        steps: Vec::new(),
    };
    let Some(s) = state.subsystem(nqn) else {
        plan.outcome = Outcome::NotExported;
        plan.reasons.push(format!("{nqn} is not exported: nothing changed"));
        return Ok(plan);
    };
    let sub = format!("nvmet/subsystems/{nqn}");
    let mut removed = Vec::new();
    for p in state.ports_of(nqn) {
        plan.steps.push(Step::Unlink { path: format!("nvmet/ports/{}/subsystems/{nqn}", p.name) });
        plan.ports_unlinked.push(p.name.clone());
        let others: Vec<&String> = p.subsystems.iter().filter(|n| n.as_str() != nqn).collect();
        let why = if !others.is_empty() {
            Some(format!("still exports {}", others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")))
        } else if p.referrals > 0 {
            Some(format!("has {} referral(s)", p.referrals))
        } else if p.extra_ana_groups > 0 {
            Some(format!("has {} ANA group(s) besides the default", p.extra_ana_groups))
        } else {
            None
        };
        match why {
            Some(why) => plan.ports_kept.push(KeptPort { port: p.name.clone(), why }),
            None => removed.push(p.name.clone()),
        }
    }
    for n in &s.namespaces {
        let ns = format!("{sub}/namespaces/{}", n.nsid);
        if n.enabled {
            plan.steps.push(Step::Write { path: format!("{ns}/enable"), value: "0".into() });
        }
        plan.steps.push(Step::Rmdir { path: ns });
        plan.namespaces.push(n.nsid);
    }
    for h in &s.allowed_hosts {
        plan.steps.push(Step::Unlink { path: format!("{sub}/allowed_hosts/{h}") });
    }
    plan.steps.push(Step::Rmdir { path: sub });
    for p in removed {
        plan.steps.push(Step::Rmdir { path: format!("nvmet/ports/{p}") });
        plan.ports_removed.push(p);
    }
    // A host entry no other subsystem allows grants nothing: it goes with its last link,
    // as an empty port does.
    for h in &s.allowed_hosts {
        let elsewhere = state.subsystems.iter().any(|o| o.nqn != nqn && o.allowed_hosts.contains(h));
        if !elsewhere && state.hosts.contains(h) {
            plan.steps.push(Step::Rmdir { path: format!("nvmet/hosts/{h}") });
            plan.hosts_removed.push(h.clone());
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use p2pdma_core::model::Alias;
    use p2pdma_core::Topology;

    use super::*;
    use crate::apply::fake::FakeConfigFs;
    use crate::apply::{apply, ConfigFs, NoLog};
    use crate::state::Namespace;

    fn topo(name: &str) -> Topology {
        p2pdma_host::input::read_spec(std::path::Path::new(&format!("../../examples/topologies/{name}.toml")))
            .unwrap()
            .1
    }

    fn bdf(s: &str) -> Bdf {
        s.parse().unwrap()
    }

    fn request(ns_pci: &str, p2pmem: &str) -> ExportRequest {
        ExportRequest {
            nqn: "nqn.2026-11.io.p2pdma:test".into(),
            namespace: NamespaceDevice {
                path: "/dev/nvme0n1".into(),
                kind: PathKind::Block,
                block_name: Some("nvme0n1".into()),
                pci_device: Some(bdf(ns_pci)),
                users: Vec::new(),
            },
            nsid: None,
            transport: Transport::Tcp,
            traddr: Some("127.0.0.1".into()),
            trsvcid: None,
            p2pmem: p2pmem.parse().unwrap(),
            access: Access::AnyHost,
            force: false,
        }
    }

    fn empty() -> NvmetState {
        NvmetState { loaded: true, ..NvmetState::default() }
    }

    #[test]
    fn switch_export_with_provider_over_tcp_plans_the_kernel_order() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let p = plan_export(&e, &request("0000:04:00.0", "nvme-a"), &empty()).unwrap();
        assert_eq!(p.outcome, Outcome::Proceed);
        assert_eq!(p.p2p.p2pmem.as_deref(), Some("0000:03:00.0"));
        assert_eq!((p.p2p.map_type, p.p2p.distance), (Some(MapType::BusAddr), Some(4)));
        assert!(!p.p2p.used);
        assert!(p.p2p.transport_client.starts_with("TCP does not use P2P memory"));
        assert!(p.p2p.summary.last().unwrap().starts_with("P2P will not be used"));
        let steps: Vec<String> = p.steps.iter().map(|s| s.to_string()).collect();
        let s = "nvmet/subsystems/nqn.2026-11.io.p2pdma:test";
        assert_eq!(
            steps,
            vec![
                format!("mkdir {s}"),
                format!("echo 1 > {s}/attr_allow_any_host"),
                format!("mkdir {s}/namespaces/1"),
                format!("echo /dev/nvme0n1 > {s}/namespaces/1/device_path"),
                format!("echo 0000:03:00.0 > {s}/namespaces/1/p2pmem"),
                format!("echo 1 > {s}/namespaces/1/enable"),
                "mkdir nvmet/ports/1".into(),
                "echo tcp > nvmet/ports/1/addr_trtype".into(),
                "echo ipv4 > nvmet/ports/1/addr_adrfam".into(),
                "echo 127.0.0.1 > nvmet/ports/1/addr_traddr".into(),
                "echo 4420 > nvmet/ports/1/addr_trsvcid".into(),
                format!("ln -s {s} nvmet/ports/1/subsystems/nqn.2026-11.io.p2pdma:test"),
            ]
        );
    }

    #[test]
    fn root_ports_explicit_provider_is_refused_with_the_check_reasons() {
        let t = topo("root-ports");
        let e = Engine::new(&t).unwrap();
        let p = plan_export(&e, &request("0000:02:00.0", "nvme-a"), &empty()).unwrap();
        assert_eq!(p.outcome, Outcome::Refused);
        assert!(p.steps.is_empty());
        let check = analysis::check(&e, "nvme-a", &["0000:02:00.0".into()]).unwrap();
        for r in &check.clients[0].reasons {
            assert!(p.reasons.contains(r), "missing {r}");
        }
        assert!(p.checks.iter().any(|c| c.what == "verdict" && !c.ok));
    }

    #[test]
    fn root_ports_auto_proceeds_without_p2p_and_says_why() {
        let t = topo("root-ports");
        let e = Engine::new(&t).unwrap();
        let p = plan_export(&e, &request("0000:02:00.0", "auto"), &empty()).unwrap();
        assert_eq!(p.outcome, Outcome::Proceed);
        // nvme-a's CMB is the only provider, and the kernel refuses it for nvme-b.
        assert_eq!(p.p2p.p2pmem, None);
        assert!(p.p2p.summary[0].starts_with("p2pmem off (auto found no provider"), "{:?}", p.p2p.summary);
        assert!(p.p2p.summary[0].contains("no published provider can reach every client"));
        assert!(p.p2p.summary.last().unwrap().starts_with("P2P will not be used"));
        assert!(!p.p2p.used);
        // The same request for nvme-a finds its own CMB (distance 0): "1" is written.
        let p = plan_export(&e, &request("0000:01:00.0", "auto"), &empty()).unwrap();
        assert_eq!((p.p2p.p2pmem.as_deref(), p.p2p.distance), (Some("1"), Some(0)));
        assert!(p.p2p.summary.iter().any(|s| s.starts_with("TCP does not use P2P memory")));
    }

    #[test]
    fn auto_without_a_provider_writes_nothing_and_says_why() {
        let t = topo("no-provider");
        let e = Engine::new(&t).unwrap();
        let ns = t.devices.iter().find(|d| d.name.as_deref() == Some("nvme-a")).unwrap().bdf.to_string();
        let p = plan_export(&e, &request(&ns, "auto"), &empty()).unwrap();
        assert_eq!(p.outcome, Outcome::Proceed);
        assert_eq!(p.p2p.p2pmem, None);
        assert!(p.p2p.summary[0].contains("no device publishes P2P memory"), "{:?}", p.p2p.summary);
        assert!(!p.steps.iter().any(|s| s.path().ends_with("/p2pmem")));
    }

    #[test]
    fn bad_input_is_an_error_not_a_plan() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let err = |r: ExportRequest| plan_export(&e, &r, &empty()).unwrap_err().to_string();
        assert!(err(request("0000:04:00.0", "nvme-b")).contains("not a P2P memory provider"));
        assert!(err(request("0000:04:00.0", "nvme-zz")).contains("unknown device `nvme-zz`"));
        let mut r = request("0000:04:00.0", "off");
        r.namespace.kind = PathKind::NotBlock("regular file".into());
        assert!(err(r.clone()).contains("is a regular file, not a block device"));
        r.namespace.kind = PathKind::Missing;
        assert!(err(r).contains("no such file"));
        let mut r = request("0000:04:00.0", "off");
        r.nqn = "a/b".into();
        assert!(err(r).contains("no '/'"));
        let mut r = request("0000:04:00.0", "off");
        r.traddr = None;
        assert!(err(r.clone()).contains("--addr is needed"));
        r.traddr = Some("localhost".into());
        assert!(err(r).contains("not an IPv4 or IPv6 address"));
        let mut r = request("0000:04:00.0", "off");
        r.nsid = Some(0);
        assert!(err(r).contains("--nsid 0"));
    }

    #[test]
    fn a_namespace_without_a_p2p_capable_driver_refuses_a_provider_and_auto_turns_off() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let mut r = request("0000:04:00.0", "nvme-a");
        r.namespace.pci_device = None; // a loop device or a fabric namespace
        let p = plan_export(&e, &r, &empty()).unwrap();
        assert_eq!(p.outcome, Outcome::Refused);
        assert!(p.reasons[0].contains("peer-to-peer DMA is not supported by the driver of /dev/nvme0n1"));
        r.p2pmem = P2pmemRequest::Auto;
        let p = plan_export(&e, &r, &empty()).unwrap();
        assert_eq!((p.outcome, p.p2p.p2pmem.clone()), (Outcome::Proceed, None));
    }

    #[test]
    fn a_multipath_head_namespace_refuses_a_provider_and_auto_turns_off() {
        // nvme0n1 as a head above nvme-b's path disk: nvmet judges the head's own device.
        let mut t = topo("switch");
        let mut head = Alias::new("block", None);
        head.paths.push(p2pdma_core::model::MultipathPath {
            disk: "nvme0c1n1".into(),
            controller: "nvme1".into(),
            pci: Some(bdf("0000:04:00.0")),
        });
        t.aliases.insert("nvme0n1".into(), head);
        let e = Engine::new(&t).unwrap();
        let mut r = request("0000:04:00.0", "nvme-a");
        r.namespace.pci_device = None;
        let p = plan_export(&e, &r, &empty()).unwrap();
        assert_eq!(p.outcome, Outcome::Refused);
        assert!(p.reasons[0].contains("nvme0n1 is an NVMe multipath head"), "{:?}", p.reasons);
        assert!(p.reasons[0].contains("nvme_core.multipath=N"), "{:?}", p.reasons);
        r.p2pmem = P2pmemRequest::Auto;
        let p = plan_export(&e, &r, &empty()).unwrap();
        assert_eq!((p.outcome, p.p2p.p2pmem.clone()), (Outcome::Proceed, None));
    }

    #[test]
    fn exporting_twice_changes_nothing_and_a_different_export_is_nqn_in_use() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let mut fs = FakeConfigFs::nvmet();
        let req = request("0000:04:00.0", "nvme-a");
        let p = plan_export(&e, &req, &fs.state()).unwrap();
        assert!(apply(&mut fs, &mut NoLog, &p.steps, true).ok());
        let again = plan_export(&e, &req, &fs.state()).unwrap();
        assert_eq!(again.outcome, Outcome::AlreadyExported);
        assert!(again.steps.is_empty());
        assert_eq!(again.reasons, vec!["already exported, nothing changed".to_string()]);

        let mut other = req.clone();
        other.namespace.path = "/dev/nvme1n1".into();
        let p = plan_export(&e, &other, &fs.state()).unwrap();
        assert_eq!(p.outcome, Outcome::Refused);
        assert!(p.reasons[0].starts_with("NQN already in use"), "{:?}", p.reasons);
        assert!(p.reasons[0].contains("namespace 1 is /dev/nvme0n1"));
        let mut other = req.clone();
        other.p2pmem = P2pmemRequest::Off;
        let p = plan_export(&e, &other, &fs.state()).unwrap();
        assert!(p.reasons[0].contains("p2pmem 0000:03:00.0, not 0"), "{:?}", p.reasons);
        let mut other = req.clone();
        other.trsvcid = Some("4421".into());
        let p = plan_export(&e, &other, &fs.state()).unwrap();
        assert!(p.reasons[0].contains("exported on port 1 (tcp 127.0.0.1:4420), not on tcp 127.0.0.1:4421"));
    }

    #[test]
    fn ports_are_reused_by_address_or_take_the_next_free_id() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let mut st = empty();
        for (name, svc) in [("1", "4420"), ("3", "4430")] {
            st.ports.push(Port {
                name: name.into(),
                id: name.parse().ok(),
                trtype: Some("tcp".into()),
                adrfam: Some("ipv4".into()),
                traddr: Some("127.0.0.1".into()),
                trsvcid: Some(svc.into()),
                subsystems: vec!["nqn.other".into()],
                referrals: 0,
                extra_ana_groups: 0,
            });
        }
        let p = plan_export(&e, &request("0000:04:00.0", "off"), &st).unwrap();
        assert_eq!((p.port.id.as_str(), p.port.existing), ("1", true));
        assert!(!p.steps.iter().any(|s| matches!(s, Step::Mkdir { path } if path.starts_with("nvmet/ports"))));
        assert!(p.steps.last().unwrap().path().starts_with("nvmet/ports/1/subsystems/"));
        let mut r = request("0000:04:00.0", "off");
        r.trsvcid = Some("4421".into());
        let p = plan_export(&e, &r, &st).unwrap();
        assert_eq!((p.port.id.as_str(), p.port.existing), ("2", false));
    }

    #[test]
    fn rdma_predicts_per_device_soft_roce_never_uses_p2p() {
        let spec = r#"
            [[root_port]]
            name = "rp0"
            [[switch]]
            name = "sw0"
            parent = "rp0"
            ports = 3
            [[endpoint]]
            name = "nvme-a"
            kind = "nvme"
            parent = "sw0.0"
            cmb_mib = 16
            [[endpoint]]
            name = "nvme-b"
            kind = "nvme"
            parent = "sw0.1"
            [[endpoint]]
            name = "rnic"
            kind = "nic"
            parent = "sw0.2"
        "#;
        let mut t = p2pdma_core::spec::parse(spec, std::path::Path::new("t.toml")).unwrap().to_topology().unwrap();
        let e0 = Engine::new(&t).unwrap();
        let ns = e0.device(e0.topo.devices.iter().position(|d| d.name.as_deref() == Some("nvme-b")).unwrap()).bdf;
        let nic = t.devices.iter().find(|d| d.name.as_deref() == Some("rnic")).unwrap().bdf;
        t.aliases.insert("rxe0".into(), Alias::new("infiniband", None));
        let e = Engine::new(&t).unwrap();
        let mut r = request(&ns.to_string(), "nvme-a");
        r.transport = Transport::Rdma;
        let p = plan_export(&e, &r, &empty()).unwrap();
        assert_eq!(p.outcome, Outcome::Proceed);
        assert!(!p.p2p.used);
        assert!(p.p2p.rdma_devices[0].why.contains("rxe0 has no PCI device"));
        assert!(p.p2p.kernel_log.is_empty());

        t.aliases.insert("mlx5_0".into(), Alias::new("infiniband", Some(nic)));
        let e = Engine::new(&t).unwrap();
        let p = plan_export(&e, &r, &empty()).unwrap();
        assert!(p.p2p.used);
        let mlx = p.p2p.rdma_devices.iter().find(|d| d.device == "mlx5_0").unwrap();
        assert_eq!((mlx.map_type, mlx.distance), (Some(MapType::BusAddr), Some(4)));
        assert_eq!(p.p2p.kernel_log, vec!["nvmet: using p2pmem on 0000:03:00.0 for nsid 1".to_string()]);
        r.p2pmem = P2pmemRequest::Auto;
        let p = plan_export(&e, &r, &empty()).unwrap();
        let mlx = p.p2p.rdma_devices.iter().find(|d| d.device == "mlx5_0").unwrap();
        assert_eq!(mlx.provider, Some(bdf("0000:03:00.0")));
        assert!(p.p2p.used);
    }

    #[test]
    fn remove_unlinks_disables_and_removes_only_ports_it_alone_used() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let mut fs = FakeConfigFs::nvmet();
        let before = fs.listing();
        let mut a = request("0000:04:00.0", "nvme-a");
        let p = plan_export(&e, &a, &fs.state()).unwrap();
        assert!(apply(&mut fs, &mut NoLog, &p.steps, true).ok());
        a.nqn = "nqn.b".into();
        a.namespace.path = "/dev/nvme1n1".into();
        a.trsvcid = Some("4421".into());
        a.p2pmem = P2pmemRequest::Off;
        let p = plan_export(&e, &a, &fs.state()).unwrap();
        assert!(apply(&mut fs, &mut NoLog, &p.steps, true).ok());
        let mut c = a.clone();
        c.nqn = "nqn.c".into();
        c.namespace.path = "/dev/nvme2n1".into();
        let p = plan_export(&e, &c, &fs.state()).unwrap();
        assert_eq!(p.port.id, "2");
        assert!(apply(&mut fs, &mut NoLog, &p.steps, true).ok());

        let r = plan_remove(&fs.state(), "nqn.b").unwrap();
        assert_eq!(r.ports_unlinked, vec!["2".to_string()]);
        assert!(r.ports_removed.is_empty());
        assert_eq!(r.ports_kept[0].why, "still exports nqn.c");
        assert!(apply(&mut fs, &mut NoLog, &r.steps, false).ok());
        for nqn in ["nqn.c", "nqn.2026-11.io.p2pdma:test"] {
            let r = plan_remove(&fs.state(), nqn).unwrap();
            assert_eq!(r.ports_removed.len(), 1);
            let steps: Vec<String> = r.steps.iter().map(|s| s.to_string()).collect();
            assert!(steps[0].starts_with("rm nvmet/ports/"), "{steps:?}");
            assert!(steps.last().unwrap().starts_with("rmdir nvmet/ports/"));
            assert!(apply(&mut fs, &mut NoLog, &r.steps, false).ok(), "{nqn}");
        }
        assert_eq!(fs.listing(), before);
        let r = plan_remove(&fs.state(), "nqn.c").unwrap();
        assert_eq!((r.outcome, r.steps.len()), (Outcome::NotExported, 0));
    }

    #[test]
    fn steps_undo_as_rollback_needs() {
        assert_eq!(Step::Mkdir { path: "a".into() }.undo(), Some(Step::Rmdir { path: "a".into() }));
        assert_eq!(
            Step::Write { path: "n/enable".into(), value: "1".into() }.undo(),
            Some(Step::Write { path: "n/enable".into(), value: "0".into() })
        );
        assert_eq!(Step::Write { path: "n/p2pmem".into(), value: "1".into() }.undo(), None);
        assert_eq!(
            Step::Symlink { target: "a".into(), link: "b".into() }.undo(),
            Some(Step::Unlink { path: "b".into() })
        );
    }

    #[test]
    fn a_subsystem_with_a_disabled_namespace_is_not_the_same_export() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let mut fs = FakeConfigFs::nvmet();
        let req = request("0000:04:00.0", "off");
        let p = plan_export(&e, &req, &fs.state()).unwrap();
        assert!(apply(&mut fs, &mut NoLog, &p.steps, true).ok());
        let mut st = fs.state();
        st.subsystems[0].namespaces[0] = Namespace {
            nsid: 1,
            device_path: "/dev/nvme0n1".into(),
            enabled: false,
            p2pmem: Some("0".into()),
            block_device: None,
        };
        let p = plan_export(&e, &req, &st).unwrap();
        assert!(p.reasons[0].contains("namespace 1 is disabled"));
    }

    #[test]
    fn a_namespace_in_use_is_refused_unless_forced() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let mut r = request("0000:04:00.0", "off");
        r.namespace.users = vec!["nvme0n1p1 is mounted at /data".into()];
        let p = plan_export(&e, &r, &empty()).unwrap();
        assert_eq!((p.outcome, p.steps.len()), (Outcome::Refused, 0));
        assert_eq!(p.reasons[0], "nvme0n1p1 is mounted at /data");
        assert!(p.reasons[1].contains("is in use: refusing to export it"), "{:?}", p.reasons);
        assert!(p.checks.iter().any(|c| c.what == "in use" && !c.ok));
        r.force = true;
        let p = plan_export(&e, &r, &empty()).unwrap();
        assert_eq!(p.outcome, Outcome::Proceed);
        assert_eq!(p.warnings[0], "--force: exporting although nvme0n1p1 is mounted at /data");
    }

    #[test]
    fn a_device_exported_by_another_subsystem_is_refused_by_path_or_block_device() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let mut fs = FakeConfigFs::nvmet();
        let p = plan_export(&e, &request("0000:04:00.0", "off"), &fs.state()).unwrap();
        assert!(apply(&mut fs, &mut NoLog, &p.steps, true).ok());
        let mut other = request("0000:04:00.0", "off");
        other.nqn = "nqn.other".into();
        other.trsvcid = Some("4421".into());
        let p = plan_export(&e, &other, &fs.state()).unwrap();
        assert_eq!(p.outcome, Outcome::Refused);
        assert!(p.reasons[0].starts_with("/dev/nvme0n1 is already exported: namespace 1 of nqn.2026-11.io.p2pdma:test"));
        // Another path to the same block device.
        other.namespace.path = "/dev/disk/by-id/nvme-x".into();
        let mut st = fs.state();
        assert_eq!(plan_export(&e, &other, &st).unwrap().outcome, Outcome::Proceed);
        st.subsystems[0].namespaces[0].block_device = Some("nvme0n1".into());
        assert_eq!(plan_export(&e, &other, &st).unwrap().outcome, Outcome::Refused);
        other.force = true;
        let p = plan_export(&e, &other, &st).unwrap();
        assert_eq!(p.outcome, Outcome::Proceed);
        assert!(p
            .warnings
            .iter()
            .any(|w| w.starts_with("--force: exporting although /dev/disk/by-id/nvme-x is already exported")));
    }

    #[test]
    fn hosts_are_created_and_linked_and_any_host_is_never_written() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let mut fs = FakeConfigFs::nvmet();
        fs.run(&Step::Mkdir { path: "nvmet/hosts/nqn.h.old".into() }).unwrap();
        let before = fs.listing();
        let mut r = request("0000:04:00.0", "off");
        r.access = Access::Hosts(vec!["nqn.h.new".into(), "nqn.h.old".into(), "nqn.h.new".into()]);
        let p = plan_export(&e, &r, &fs.state()).unwrap();
        assert_eq!(p.allowed_hosts, ["nqn.h.new", "nqn.h.old"]);
        assert!(!p.allow_any_host && p.warnings.is_empty());
        let steps: Vec<String> = p.steps.iter().map(|s| s.to_string()).collect();
        let s = "nvmet/subsystems/nqn.2026-11.io.p2pdma:test";
        assert_eq!(
            steps[..4],
            [
                "mkdir nvmet/hosts/nqn.h.new".to_string(),
                format!("mkdir {s}"),
                format!("ln -s nvmet/hosts/nqn.h.new {s}/allowed_hosts/nqn.h.new"),
                format!("ln -s nvmet/hosts/nqn.h.old {s}/allowed_hosts/nqn.h.old"),
            ]
        );
        assert!(!steps.iter().any(|s| s.contains("attr_allow_any_host")), "{steps:?}");

        // A failure at the port's link: the new host goes, the old one stays.
        fs.fail.push(("subsystems/nqn.2026-11.io.p2pdma:test".into(), 98));
        let a = apply(&mut fs, &mut NoLog, &p.steps, true);
        assert!(!a.ok() && a.rollback_failed.is_empty());
        assert_eq!(a.rolled_back.last().unwrap().step.to_string(), "rmdir nvmet/hosts/nqn.h.new");
        assert_eq!(fs.listing(), before);

        // Applied, then again: the same export; with other hosts: in use; remove takes the
        // host entries it alone used.
        assert!(apply(&mut fs, &mut NoLog, &p.steps, true).ok());
        let st = fs.state();
        assert_eq!(st.subsystems[0].allowed_hosts, ["nqn.h.new", "nqn.h.old"]);
        assert_eq!(fs.attrs[&format!("{s}/attr_allow_any_host")], "0");
        assert_eq!(plan_export(&e, &r, &st).unwrap().outcome, Outcome::AlreadyExported);
        let mut any = r.clone();
        any.access = Access::AnyHost;
        let p = plan_export(&e, &any, &st).unwrap();
        assert!(p.reasons[0].contains("it admits only listed hosts (nqn.h.new, nqn.h.old)"), "{:?}", p.reasons);
        let mut fewer = r.clone();
        fewer.access = Access::Hosts(vec!["nqn.h.new".into()]);
        let p = plan_export(&e, &fewer, &st).unwrap();
        assert!(p.reasons[0].contains("it admits nqn.h.new, nqn.h.old, not nqn.h.new"), "{:?}", p.reasons);
        let rm = plan_remove(&st, &r.nqn).unwrap();
        assert_eq!(rm.hosts_removed, ["nqn.h.new", "nqn.h.old"]);
        assert!(apply(&mut fs, &mut NoLog, &rm.steps, false).ok());
        assert!(fs.state().hosts.is_empty());
    }

    #[test]
    fn any_host_warns_and_no_choice_is_bad_input() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let p = plan_export(&e, &request("0000:04:00.0", "off"), &empty()).unwrap();
        assert!(p.allow_any_host);
        assert_eq!(
            p.warnings,
            ["--allow-any-host: any host that reaches tcp 127.0.0.1:4420 may connect and read and write /dev/nvme0n1"]
        );
        let mut r = request("0000:04:00.0", "off");
        r.access = Access::Unchosen;
        let e2 = plan_export(&e, &r, &empty()).unwrap_err();
        assert!(e2.is_bad_input());
        assert!(e2.to_string().starts_with("choose who may connect: --host NQN"), "{e2}");
        r.access = Access::Hosts(vec!["a/b".into()]);
        assert!(plan_export(&e, &r, &empty()).unwrap_err().to_string().contains("host NQN `a/b`"));
    }
}
