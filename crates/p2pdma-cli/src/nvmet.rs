//! `p2pdma nvmet export|list|remove|save|restore`: NVMe-oF exports through the kernel's
//! nvmet, with the P2P memory decision and the device's users checked first, closed to
//! hosts unless they are named. The planning is in p2pdma-nvmet; this is flags, the OS glue
//! (namespace path and users, modules, kernel log, the config file) and printing.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use p2pdma_core::{resolve, Engine, Target};
use p2pdma_mem::ends;
use p2pdma_nvmet::apply::{apply, ApplyReport, DirConfigFs, KernelLog, NoLog};
use p2pdma_nvmet::config::{self, RestorePlan};
use p2pdma_nvmet::kmsg::{Kmsg, DEV_KMSG};
use p2pdma_nvmet::list::{list, ListReport};
use p2pdma_nvmet::plan::{NamespaceDevice, PathKind};
use p2pdma_nvmet::{
    plan_export, plan_remove, state, system, Access, ExportPlan, ExportRequest, NvmetError, NvmetState, Outcome,
    P2pmemRequest, RemovePlan, Transport,
};
use serde::Serialize;

use crate::source::SourceArgs;

#[derive(Subcommand)]
#[command(defer = true)] // as `Command` in main.rs
pub enum NvmetCommand {
    /// Export a block device over NVMe-oF through the kernel's target, P2P memory checked
    /// first: refused before configfs is touched if the kernel would refuse, rolled back
    /// with the kernel's reason if a step fails. Running it again changes nothing.
    Export(ExportArgs),
    /// Subsystems, namespaces (p2pmem, P2P in use?) and ports in nvmet's configfs.
    List {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        configfs: ConfigfsArgs,
        #[arg(long)]
        json: bool,
    },
    /// Tear an export down: unlink it from its ports, disable and remove its namespaces,
    /// remove it, and remove the ports that exported only it.
    Remove {
        #[arg(long)]
        nqn: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Write nvmet's configuration to FILE in nvmetcli's config.json format (`nvmetcli
    /// save`), plus each namespace's p2pmem. Written whole or not at all (a temporary file
    /// renamed); `-` for standard output.
    Save {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        configfs: ConfigfsArgs,
    },
    /// Recreate a configuration from FILE (nvmetcli's config.json, `-` for standard input),
    /// checked like `export` (P2P verdicts, devices in use, hosts) before configfs is
    /// touched, rolled back if a step fails. Only adds: refuses subsystems or ports that
    /// exist.
    Restore {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        source: SourceArgs,
        /// Restore namespaces although their devices are in use or exported twice.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Lab helper: create a soft-RoCE device on a network interface, as `rdma link add NAME
    /// type rxe netdev NETDEV` does (the lab's busybox guest has no iproute2). Controllers on
    /// soft RoCE never use P2P memory: it DMAs through the CPU.
    #[command(hide = true)]
    SoftRoce {
        #[arg(long, default_value = "rxe0")]
        name: String,
        #[arg(long)]
        netdev: String,
    },
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The subsystem's NVMe Qualified Name (e.g. nqn.2026-11.io.example:disk1).
    #[arg(long)]
    nqn: String,
    /// The block device to export: a path (/dev/nvme0n1) or a device name (nvme0n1, nvme-b).
    #[arg(long, value_name = "BLOCKDEV")]
    ns: String,
    /// Namespace id (default 1).
    #[arg(long)]
    nsid: Option<u32>,
    /// tcp, rdma or loop.
    #[arg(long)]
    transport: Transport,
    /// The address to listen on (tcp, rdma: an IP address; loop: optional).
    #[arg(long)]
    addr: Option<String>,
    /// The transport service id: the TCP/RDMA port (default 4420).
    #[arg(long)]
    port: Option<String>,
    /// P2P memory for the namespace's I/O: off, auto (the kernel finds a provider, if one
    /// reaches the device), or a provider (BDF or name) checked with the kernel's rules.
    #[arg(long, default_value = "off", value_name = "off|auto|PROVIDER")]
    p2pmem: P2pmemRequest,
    /// A host allowed to connect (its NQN, from the host's /etc/nvme/hostnqn); repeatable.
    /// Exports are closed: without --host or --allow-any-host, nothing is exported.
    #[arg(long = "host", value_name = "NQN")]
    hosts: Vec<String>,
    /// Admit any host that reaches the port (attr_allow_any_host = 1), with a warning.
    #[arg(long, conflicts_with = "hosts")]
    allow_any_host: bool,
    /// Export although the device is mounted, has mounted partitions or holders, is swap,
    /// or is already exported.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    change: ChangeArgs,
}

// What every command that changes configfs takes (a plain comment: see `copy::CopyArgs`).
#[derive(Args, Clone)]
pub struct ChangeArgs {
    /// Plan and show the steps; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    configfs: ConfigfsArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Clone)]
pub struct ConfigfsArgs {
    /// The configfs root. Modules are loaded and the kernel log is read only for the
    /// machine's own (/sys/kernel/config); other roots are for tests and chroots.
    #[arg(long, value_name = "DIR", env = "P2PDMA_CONFIGFS_ROOT", default_value = system::CONFIGFS)]
    configfs_root: PathBuf,
}

impl ConfigfsArgs {
    fn is_machine(&self) -> bool {
        self.configfs_root == Path::new(system::CONFIGFS)
    }

    /// The root to read: the machine's even when configfs is not mounted (nvmet is then
    /// simply not loaded), any other only if it is a directory (a mistyped root is not an
    /// empty configuration).
    fn root(&self) -> anyhow::Result<&Path> {
        if !self.is_machine() && !self.configfs_root.is_dir() {
            anyhow::bail!(
                "--configfs-root {}: no such directory (the machine's configfs is {})",
                self.configfs_root.display(),
                system::CONFIGFS
            );
        }
        Ok(&self.configfs_root)
    }

    /// The kernel log from now on, if it belongs to this configfs and can be read.
    fn kernel_log(&self) -> Box<dyn KernelLog> {
        if self.is_machine() {
            if let Ok(k) = Kmsg::open_at_end(Path::new(DEV_KMSG)) {
                return Box::new(k);
            }
        }
        Box::new(NoLog)
    }
}

/// `export --json`.
#[derive(Serialize)]
struct ExportReport {
    #[serde(flatten)]
    plan: ExportPlan,
    configfs_root: PathBuf,
    dry_run: bool,
    /// Module loads and mounts done first.
    setup: Vec<String>,
    applied: Option<ApplyReport>,
    ok: bool,
}

/// `remove --json`.
#[derive(Serialize)]
struct RemoveReport {
    #[serde(flatten)]
    plan: RemovePlan,
    configfs_root: PathBuf,
    dry_run: bool,
    applied: Option<ApplyReport>,
    ok: bool,
}

fn bad(e: NvmetError) -> anyhow::Error {
    anyhow::Error::new(e)
}

pub fn run(command: NvmetCommand) -> anyhow::Result<ExitCode> {
    match command {
        NvmetCommand::Export(args) => export(args),
        NvmetCommand::Save { file, configfs } => save(&file, &configfs),
        NvmetCommand::Restore { file, source, force, change } => restore(&file, &source, force, &change),
        NvmetCommand::List { source, configfs, json } => {
            let loaded = source.load()?;
            let engine = Engine::new(&loaded.topology)?;
            let st = read_state(&configfs, Some(&source))?;
            let mut log = Vec::new();
            if configfs.is_machine() {
                if let Ok(mut k) = Kmsg::open_at_start(Path::new(DEV_KMSG)) {
                    log = k.drain();
                }
            }
            let live = source.snapshot.is_none() && source.spec.is_none();
            let sysfs = source.sysfs_root.clone();
            let block_of = move |p: &str| -> Option<String> {
                if live {
                    if let (PathKind::Block, Some(n)) = system::inspect_path(Path::new(p), &sysfs) {
                        return Some(n);
                    }
                }
                Path::new(p).file_name().map(|n| n.to_string_lossy().into_owned())
            };
            let report = list(&engine, &st, &log, &block_of);
            if json {
                crate::print_json(&report)?;
            } else {
                crate::out::text(&render_list(&report))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        NvmetCommand::SoftRoce { name, netdev } => match system::add_soft_roce(&name, &netdev) {
            Ok(()) => {
                crate::out::text(&format!("{name}: soft-RoCE device on {netdev}\n"))?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                crate::out::note(&e.to_string());
                Ok(ExitCode::from(1))
            }
        },
        NvmetCommand::Remove { nqn, change: ChangeArgs { dry_run, configfs, json } } => {
            let st = state::read(configfs.root()?).map_err(bad)?;
            let plan = plan_remove(&st, &nqn).map_err(bad)?;
            let applied = (plan.outcome == Outcome::Proceed && !dry_run).then(|| {
                let mut fs = DirConfigFs { root: configfs.configfs_root.clone() };
                apply(&mut fs, configfs.kernel_log().as_mut(), &plan.steps, false)
            });
            let ok = applied.as_ref().is_none_or(ApplyReport::ok);
            let report = RemoveReport { plan, configfs_root: configfs.configfs_root, dry_run, applied, ok };
            if json {
                crate::print_json(&report)?;
            } else {
                crate::out::text(&render_remove(&report))?;
            }
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}

/// A plan made from a topology file or snapshot describes a model, not this machine: it is
/// shown (`--dry-run`), never applied.
fn model_plans_are_dry_runs(source: &SourceArgs, dry_run: bool) -> anyhow::Result<()> {
    if !dry_run && !is_live(source) {
        anyhow::bail!(
            "--spec/--snapshot plan against a model, not this machine: add --dry-run (such a plan is never applied to configfs)"
        );
    }
    Ok(())
}

fn is_live(source: &SourceArgs) -> bool {
    source.snapshot.is_none() && source.spec.is_none()
}

/// Who uses a block device: mounts, holders and swap, from `p2pdma_mem::ends` (what `copy`
/// refuses on).
fn users_of(path: &Path, source: &SourceArgs) -> Vec<String> {
    match ends::measure(path, &source.sysfs_root, false) {
        Ok(m) => ends::in_use_or_swap(&m, &source.proc_root.join("self/mountinfo"), &source.proc_root.join("swaps")),
        Err(e) => vec![format!("who uses {} cannot be told ({e})", path.display())],
    }
}

/// A namespace path on this machine: what it is, its block device, the PCI device above
/// it, and its users.
fn device_at(path: &Path, source: &SourceArgs, engine: &Engine<'_>) -> NamespaceDevice {
    let (kind, block_name) = system::inspect_path(path, &source.sysfs_root);
    let pci_device = block_name.as_ref().and_then(|b| engine.topo.aliases.get(b)).and_then(|a| a.pci_parent);
    let users = if kind == PathKind::Block { users_of(path, source) } else { Vec::new() };
    NamespaceDevice { path: path.to_string_lossy().into_owned(), kind, block_name, pci_device, users }
}

/// A device in a model (topology file or snapshot): no block devices, so the PCI device
/// named by `name` (or by its last path component).
fn model_device(name: &str, engine: &Engine<'_>) -> anyhow::Result<NamespaceDevice> {
    let pci = match resolve(engine, name)? {
        Target::Pci(i) => Some(engine.device(i).bdf),
        Target::NotPci { pci_parent, .. } => pci_parent.map(|i| engine.device(i).bdf),
    };
    Ok(NamespaceDevice {
        path: name.to_string(),
        kind: PathKind::Unchecked,
        block_name: None,
        pci_device: pci,
        users: Vec::new(),
    })
}

/// configfs as it is, with each namespace's block device where the machine can tell.
fn read_state(configfs: &ConfigfsArgs, source: Option<&SourceArgs>) -> anyhow::Result<NvmetState> {
    let mut st = state::read(configfs.root()?).map_err(bad)?;
    if let Some(source) = source.filter(|s| is_live(s)) {
        for n in st.subsystems.iter_mut().flat_map(|s| s.namespaces.iter_mut()) {
            if let (PathKind::Block, Some(b)) = system::inspect_path(Path::new(&n.device_path), &source.sysfs_root) {
                n.block_device = Some(b);
            }
        }
    }
    Ok(st)
}

/// The namespace as the planner needs it: the path for `device_path`, what it is, the PCI
/// device above it and who uses it.
fn namespace(args: &ExportArgs, engine: &Engine<'_>) -> anyhow::Result<NamespaceDevice> {
    if !is_live(&args.source) {
        return model_device(&args.ns, engine);
    }
    let path = p2pdma_core::block_device::block_device(engine, &args.ns)?;
    Ok(device_at(&path, &args.source, engine))
}

fn print_warnings(warnings: &[String]) {
    for w in warnings {
        crate::out::note(&format!("warning: {w}"));
    }
}

fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    model_plans_are_dry_runs(&args.source, args.change.dry_run)?;
    let loaded = args.source.load()?;
    let engine = Engine::new(&loaded.topology)?;
    let access = if args.allow_any_host {
        Access::AnyHost
    } else if args.hosts.is_empty() {
        Access::Unchosen
    } else {
        Access::Hosts(args.hosts.clone())
    };
    let request = ExportRequest {
        nqn: args.nqn.clone(),
        namespace: namespace(&args, &engine)?,
        nsid: args.nsid,
        transport: args.transport,
        traddr: args.addr.clone(),
        trsvcid: args.port.clone(),
        p2pmem: args.p2pmem.clone(),
        access,
        force: args.force,
    };
    let root = &args.change.configfs.configfs_root;
    let mut plan =
        plan_export(&engine, &request, &read_state(&args.change.configfs, Some(&args.source))?).map_err(bad)?;
    let mut setup = Vec::new();
    let mut applied = None;
    if plan.outcome == Outcome::Proceed && !args.change.dry_run {
        if args.change.configfs.is_machine() {
            match system::prepare(Some(args.transport)) {
                Ok(done) => setup = done,
                Err(e) => {
                    crate::out::note(&e.to_string());
                    return Ok(ExitCode::from(1));
                }
            }
            // Loading nvmet creates its tree: plan again against what is there now.
            plan =
                plan_export(&engine, &request, &read_state(&args.change.configfs, Some(&args.source))?).map_err(bad)?;
        }
        if plan.outcome == Outcome::Proceed {
            let mut fs = DirConfigFs { root: root.clone() };
            applied = Some(apply(&mut fs, args.change.configfs.kernel_log().as_mut(), &plan.steps, true));
        }
    }
    print_warnings(&plan.warnings);
    let ok = plan.outcome != Outcome::Refused && applied.as_ref().is_none_or(ApplyReport::ok);
    let report = ExportReport { plan, configfs_root: root.clone(), dry_run: args.change.dry_run, setup, applied, ok };
    if args.change.json {
        crate::print_json(&report)?;
    } else {
        crate::out::text(&render_export(&report))?;
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `save`: the config as nvmetcli writes it, to a file (whole or not at all) or stdout.
fn save(file: &Path, configfs: &ConfigfsArgs) -> anyhow::Result<ExitCode> {
    let c = config::read(configfs.root()?).map_err(bad)?;
    crate::out::write_file(file, config::to_json(&c).as_bytes(), "the nvmet configuration")?;
    if file != Path::new("-") {
        crate::out::text(&format!(
            "saved {} subsystem(s), {} port(s), {} host(s) to {}\n",
            c.subsystems.len(),
            c.ports.len(),
            c.hosts.len(),
            file.display()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `restore --json`.
#[derive(Serialize)]
struct RestoreReport {
    #[serde(flatten)]
    plan: RestorePlan,
    configfs_root: PathBuf,
    dry_run: bool,
    setup: Vec<String>,
    applied: Option<ApplyReport>,
    ok: bool,
}

fn restore(file: &Path, source: &SourceArgs, force: bool, a: &ChangeArgs) -> anyhow::Result<ExitCode> {
    model_plans_are_dry_runs(source, a.dry_run)?;
    let shown = file.display().to_string();
    // The shared reader: no directories or devices (`/dev/zero` would never end), no binary,
    // empty or oversized files.
    let text = if file == Path::new("-") {
        p2pdma_host::input::read_text_from(std::io::stdin(), Path::new("standard input"))?
    } else {
        p2pdma_host::input::read_text(file)?
    };
    let c = config::parse(&text, &shown).map_err(bad)?;
    let loaded = source.load()?;
    let engine = Engine::new(&loaded.topology)?;
    let live = is_live(source);
    let device = |path: &str| -> NamespaceDevice {
        if live {
            device_at(Path::new(path), source, &engine)
        } else {
            let name = Path::new(path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            model_device(path, &engine).or_else(|_| model_device(&name, &engine)).unwrap_or(NamespaceDevice {
                path: path.to_string(),
                kind: PathKind::Unchecked,
                block_name: None,
                pci_device: None,
                users: Vec::new(),
            })
        }
    };
    let plan_now = || -> anyhow::Result<RestorePlan> {
        let st = read_state(&a.configfs, Some(source))?;
        config::plan_restore(&engine, &c, &shown, &st, &device, force).map_err(bad)
    };
    let mut plan = plan_now()?;
    let mut setup = Vec::new();
    let mut applied = None;
    if plan.outcome == Outcome::Proceed && !a.dry_run {
        if a.configfs.is_machine() {
            let mut transports: Vec<Transport> =
                c.ports.iter().filter_map(|p| p.addr.get("trtype").and_then(|t| Transport::from_trtype(t))).collect();
            transports.dedup();
            let needs: Vec<Option<Transport>> =
                if transports.is_empty() { vec![None] } else { transports.into_iter().map(Some).collect() };
            for t in needs {
                match system::prepare(t) {
                    Ok(done) => setup.extend(done),
                    Err(e) => {
                        crate::out::note(&e.to_string());
                        return Ok(ExitCode::from(1));
                    }
                }
            }
            plan = plan_now()?;
        }
        if plan.outcome == Outcome::Proceed {
            let mut fs = DirConfigFs { root: a.configfs.configfs_root.clone() };
            applied = Some(apply(&mut fs, a.configfs.kernel_log().as_mut(), &plan.steps, true));
        }
    }
    print_warnings(&plan.warnings);
    let ok = plan.outcome != Outcome::Refused && applied.as_ref().is_none_or(ApplyReport::ok);
    let report =
        RestoreReport { plan, configfs_root: a.configfs.configfs_root.clone(), dry_run: a.dry_run, setup, applied, ok };
    if a.json {
        crate::print_json(&report)?;
    } else {
        crate::out::text(&render_restore(&report))?;
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn render_restore(r: &RestoreReport) -> String {
    let p = &r.plan;
    let mut out = String::new();
    writeln!(
        out,
        "restore {}: {} subsystem(s), port(s) {}, {} new host entr{}",
        p.file,
        p.subsystems.len(),
        list_or_none(&p.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>()),
        p.hosts_created.len(),
        if p.hosts_created.len() == 1 { "y" } else { "ies" }
    )
    .unwrap();
    for s in &p.subsystems {
        let who = if s.allow_any_host {
            "any host".to_string()
        } else if s.allowed_hosts.is_empty() {
            "no host".to_string()
        } else {
            format!("hosts {}", s.allowed_hosts.join(", "))
        };
        writeln!(
            out,
            "  subsystem {}  ({who})  ports: {}",
            s.nqn,
            list_or_none(&s.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        )
        .unwrap();
        for n in &s.namespaces {
            writeln!(out, "    nsid {}  {}", n.nsid, n.namespace.path).unwrap();
            for c in &n.checks {
                writeln!(out, "      {}  {}: {}", if c.ok { "ok  " } else { "FAIL" }, c.what, c.detail).unwrap();
            }
            for l in &n.p2p.summary {
                writeln!(out, "      P2P: {l}").unwrap();
            }
        }
        for n in &s.disabled_namespaces {
            writeln!(out, "    nsid {n}  disabled (restored as it is, not checked)").unwrap();
        }
    }
    match p.outcome {
        Outcome::Refused => {
            writeln!(out, "REFUSED (configfs not touched):").unwrap();
            for why in &p.reasons {
                writeln!(out, "  why: {why}").unwrap();
            }
        }
        _ if r.dry_run => {
            writeln!(out, "steps (dry run, nothing changed):").unwrap();
            for s in &p.steps {
                writeln!(out, "  {s}").unwrap();
            }
        }
        _ => {
            for s in &r.setup {
                writeln!(out, "setup: {s}").unwrap();
            }
            if let Some(a) = &r.applied {
                render_applied(&mut out, a, &r.configfs_root);
                if a.ok() {
                    writeln!(out, "restored").unwrap();
                } else if a.rollback_failed.is_empty() {
                    writeln!(out, "NOT restored: everything it did was undone; configfs is as it was").unwrap();
                } else {
                    writeln!(out, "NOT restored, and the rollback was incomplete: see UNDO FAILED above").unwrap();
                }
            }
        }
    }
    out
}

fn render_applied(out: &mut String, a: &ApplyReport, root: &Path) {
    writeln!(out, "configfs ({}):", root.display()).unwrap();
    for s in &a.done {
        writeln!(out, "  done    {}", s.step).unwrap();
        for l in &s.kernel_log {
            writeln!(out, "          kernel: {l}").unwrap();
        }
    }
    if let Some(f) = &a.failed {
        writeln!(out, "  FAILED  {}: {}", f.step, f.error).unwrap();
        if let Some(h) = &f.hint {
            writeln!(out, "          {h}").unwrap();
        }
        for l in &f.kernel_log {
            writeln!(out, "          kernel: {l}").unwrap();
        }
        if f.kernel_log.is_empty() {
            writeln!(out, "          (no kernel log line seen)").unwrap();
        }
    }
    for s in &a.rolled_back {
        writeln!(out, "  undone  {}", s.step).unwrap();
    }
    for f in &a.rollback_failed {
        writeln!(out, "  UNDO FAILED  {}: {}", f.step, f.error).unwrap();
    }
}

fn render_export(r: &ExportReport) -> String {
    let p = &r.plan;
    let mut out = String::new();
    let ns = &p.namespace;
    let dev = match (&ns.pci_name, ns.pci_device) {
        (Some(n), Some(b)) => format!(" ({n}, {b})"),
        (None, Some(b)) => format!(" ({b})"),
        _ => String::new(),
    };
    writeln!(
        out,
        "export {}: {}{dev} as nsid {} over {} port {}{}",
        p.nqn,
        ns.path,
        p.nsid,
        port_text(&p.port),
        p.port.id,
        if p.port.existing { " (existing)" } else { " (new)" }
    )
    .unwrap();
    for c in &p.checks {
        writeln!(out, "  {}  {}: {}", if c.ok { "ok  " } else { "FAIL" }, c.what, c.detail).unwrap();
    }
    writeln!(out, "who may connect: {}", who_may_connect(p.allow_any_host, &p.allowed_hosts)).unwrap();
    writeln!(out, "P2P:").unwrap();
    for s in &p.p2p.summary {
        writeln!(out, "  {s}").unwrap();
    }
    for l in &p.p2p.kernel_log {
        writeln!(out, "  expected kernel log: {l}").unwrap();
    }
    match p.outcome {
        Outcome::Refused => {
            writeln!(out, "REFUSED (configfs not touched):").unwrap();
            for why in &p.reasons {
                writeln!(out, "  why: {why}").unwrap();
            }
            if let Some(c) = &p.p2p.check {
                for v in &c.clients {
                    for f in &v.fixes {
                        writeln!(out, "  fix: {f}").unwrap();
                    }
                    for l in &v.kernel_log {
                        writeln!(out, "  kernel log: {l}").unwrap();
                    }
                }
            }
        }
        Outcome::AlreadyExported | Outcome::NotExported => {
            writeln!(out, "{}", p.reasons.join("; ")).unwrap();
        }
        Outcome::Proceed if r.dry_run => {
            writeln!(out, "steps (dry run, nothing changed):").unwrap();
            for s in &p.steps {
                writeln!(out, "  {s}").unwrap();
            }
        }
        Outcome::Proceed => {
            for s in &r.setup {
                writeln!(out, "setup: {s}").unwrap();
            }
            if let Some(a) = &r.applied {
                render_applied(&mut out, a, &r.configfs_root);
                if a.ok() {
                    writeln!(out, "exported. Connect with: {}", connect_hint(p)).unwrap();
                } else if a.rollback_failed.is_empty() {
                    writeln!(out, "NOT exported: everything it did was undone; configfs is as it was").unwrap();
                } else {
                    writeln!(out, "NOT exported, and the rollback was incomplete: see UNDO FAILED above").unwrap();
                }
            }
        }
    }
    out
}

fn port_text(p: &p2pdma_nvmet::plan::PortPlan) -> String {
    let mut s = p.trtype.clone();
    if let Some(a) = &p.traddr {
        write!(s, " {a}").unwrap();
    }
    if let Some(v) = &p.trsvcid {
        write!(s, ":{v}").unwrap();
    }
    s
}

/// `nvme connect ...` for the host, every word quoted for a POSIX shell.
fn connect_hint(p: &ExportPlan) -> String {
    use p2pdma_core::text::shell_quote as q;
    let mut opts = vec![format!("transport={}", p.transport)];
    if let Some(a) = &p.port.traddr {
        opts.push(format!("traddr={a}"));
    }
    if let Some(s) = &p.port.trsvcid {
        opts.push(format!("trsvcid={s}"));
    }
    opts.push(format!("nqn={}", p.nqn));
    let mut nvme = format!("nvme connect -t {} -n {}", p.transport, q(&p.nqn));
    if let Some(h) = p.allowed_hosts.first() {
        opts.push(format!("hostnqn={h}"));
        write!(nvme, " -q {}", q(h)).unwrap();
        // The kernel's host refuses a host NQN with its default host's id ("found same
        // hostid ... but different hostnqn"): a UUID NQN gives its own id.
        if let Some(id) = uuid_of(h) {
            opts.push(format!("hostid={id}"));
            write!(nvme, " -I {}", q(id)).unwrap();
        }
    }
    if let Some(a) = &p.port.traddr {
        write!(nvme, " -a {}", q(a)).unwrap();
    }
    if let Some(s) = &p.port.trsvcid {
        write!(nvme, " -s {}", q(s)).unwrap();
    }
    // The option string is one word; quoted only when a value needs it, so the usual one
    // reads as the kernel documents it.
    let opts = opts.join(",");
    let plain = opts.split([',', '=']).all(|w| matches!(q(w), std::borrow::Cow::Borrowed(_)));
    let opts = if plain { opts } else { q(&opts).into_owned() };
    format!("{nvme}  (or: echo {opts} > /dev/nvme-fabrics)")
}

fn render_remove(r: &RemoveReport) -> String {
    let p = &r.plan;
    let mut out = String::new();
    if p.outcome == Outcome::NotExported {
        writeln!(out, "{}", p.reasons.join("; ")).unwrap();
        return out;
    }
    writeln!(
        out,
        "remove {}: namespace(s) {}; unlink from port(s) {}; remove port(s) {}",
        p.nqn,
        list_or_none(&p.namespaces.iter().map(|n| n.to_string()).collect::<Vec<_>>()),
        list_or_none(&p.ports_unlinked),
        list_or_none(&p.ports_removed)
    )
    .unwrap();
    for k in &p.ports_kept {
        writeln!(out, "  port {} stays: {}", k.port, k.why).unwrap();
    }
    if !p.hosts_removed.is_empty() {
        writeln!(out, "  host entries removed (no other subsystem allows them): {}", p.hosts_removed.join(", "))
            .unwrap();
    }
    match &r.applied {
        None => {
            writeln!(out, "steps (dry run, nothing changed):").unwrap();
            for s in &p.steps {
                writeln!(out, "  {s}").unwrap();
            }
        }
        Some(a) => {
            render_applied(&mut out, a, &r.configfs_root);
            writeln!(
                out,
                "{}",
                if a.ok() { "removed" } else { "NOT fully removed: the steps above stopped at FAILED" }
            )
            .unwrap();
        }
    }
    out
}

/// The UUID of an `nqn.2014-08.org.nvmexpress:uuid:UUID` host NQN.
fn uuid_of(nqn: &str) -> Option<&str> {
    let id = nqn.strip_prefix("nqn.2014-08.org.nvmexpress:uuid:")?;
    let shape = id.len() == 36
        && id.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
    shape.then_some(id)
}

/// `any host`, `nqn.a, nqn.b`, or `no host`.
fn who_may_connect(any: bool, hosts: &[String]) -> String {
    if any {
        "any host (attr_allow_any_host = 1)".into()
    } else if hosts.is_empty() {
        "no host (allowed_hosts is empty)".into()
    } else {
        hosts.join(", ")
    }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn render_list(r: &ListReport) -> String {
    let mut out = String::new();
    if !r.loaded {
        return "nvmet is not loaded (no nvmet/ in configfs): nothing is exported\n".into();
    }
    if r.subsystems.is_empty() && r.ports.is_empty() {
        return "nothing is exported (no subsystems, no ports)\n".into();
    }
    for s in &r.subsystems {
        writeln!(
            out,
            "subsystem {}  (may connect: {})  ports: {}",
            s.nqn,
            who_may_connect(s.allow_any_host, &s.allowed_hosts),
            list_or_none(&s.ports)
        )
        .unwrap();
        for n in &s.namespaces {
            let dev = match (&n.block_device, &n.pci_name, n.pci_device) {
                (_, Some(name), Some(b)) => format!(" ({name}, {b})"),
                (_, None, Some(b)) => format!(" ({b})"),
                _ => String::new(),
            };
            writeln!(
                out,
                "  nsid {}  {}{dev}  {}  p2pmem {}  P2P in use: {} ({})",
                n.nsid,
                n.device_path,
                if n.enabled { "enabled" } else { "disabled" },
                n.p2pmem.as_deref().unwrap_or("(no attribute)"),
                if n.p2p_in_use { "yes" } else { "no" },
                n.evidence
            )
            .unwrap();
            for w in &n.why {
                writeln!(out, "      {w}").unwrap();
            }
            for l in &n.kernel_log {
                writeln!(out, "      kernel: {l}").unwrap();
            }
        }
    }
    for p in &r.ports {
        writeln!(
            out,
            "port {}  {}{}  subsystems: {}",
            p.name,
            p.address(),
            p.adrfam.as_ref().map(|f| format!(" ({f})")).unwrap_or_default(),
            list_or_none(&p.subsystems)
        )
        .unwrap();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_host_nqns_give_their_host_id() {
        let id = "11111111-2222-3333-4444-555555555555";
        assert_eq!(uuid_of(&format!("nqn.2014-08.org.nvmexpress:uuid:{id}")), Some(id));
        assert_eq!(uuid_of("nqn.2014-08.org.nvmexpress:uuid:1111"), None);
        assert_eq!(uuid_of("nqn.2026-11.io.example:host-a"), None);
        assert_eq!(uuid_of(&format!("nqn.2014-08.org.nvmexpress:uuid:{}", id.replace('-', "x"))), None);
    }
}
