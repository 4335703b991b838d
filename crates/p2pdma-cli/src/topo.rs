//! `topo`: the PCIe tree in short lines, then one matrix of the devices people ask about
//! (GPUs, NICs, NVMe, accelerators; physical functions) with short names and a legend, as
//! `nvidia-smi topo -m` and `lspci -tv` stay readable; `--json` with the pairs per group of
//! devices the kernel cannot tell apart (`p2pdma_core::group`), `--pairs all` every member
//! pair as JSON lines. Everything is written as it is produced: a 10,000-function machine
//! never becomes one string.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use p2pdma_core::alias::ShortNames;
use p2pdma_core::analysis::{self, Affinity, Matrix, MatrixFilter, ProviderRow};
use p2pdma_core::group::{Cell, GroupRow, GroupedMatrix, Grouping};
use p2pdma_core::kernel::{self, KernelCapabilities};
use p2pdma_core::model::{Device, GroupInfo, Machine};
use p2pdma_core::pathclass::DeviceClass;
use p2pdma_core::stacks::{self, OnRefusal, Route, Stack};
use p2pdma_core::verdict::MapType;
use p2pdma_core::{Bdf, Engine};
use serde::{Serialize, Serializer};

use crate::out;
use crate::render::BridgeReport;
use crate::source::SourceArgs;

#[derive(clap::Args)]
pub struct TopoArgs {
    #[arg(long)]
    json: bool,
    /// Only these kinds of device in the matrix: gpu, nic, nvme, storage, accel, other
    /// (a comma list). Without it the text matrix shows gpu, nic, nvme and accel.
    #[arg(long, value_delimiter = ',')]
    class: Vec<String>,
    /// Only these devices in the matrix: names, short names (GPU0, NIC1), addresses or globs
    /// (`--device 'nvme*,gpu0'`); a comma list, repeatable.
    #[arg(long = "device", value_name = "DEVICE", value_delimiter = ',')]
    devices: Vec<String>,
    /// Every function in the text matrix, not only GPUs, NICs, NVMe and accelerators; a PF's
    /// VFs as one row (`NIC0 +127 VFs`).
    #[arg(long)]
    all: bool,
    /// Every virtual function on its own line in the tree, and with `--all` its own row in
    /// the matrix.
    #[arg(long)]
    vfs: bool,
    /// The matrix only, without the tree.
    #[arg(long)]
    no_tree: bool,
    /// ACS registers, BARs, IOMMU group and PCI names on every device line of the tree.
    #[arg(short, long)]
    verbose: bool,
    /// `grouped` (default): `--json`'s pairs one per group pair with the number of member
    /// pairs; `all`: every member pair as JSON lines, one object per line, nothing else.
    #[arg(long, value_enum, default_value = "grouped")]
    pairs: PairsMode,
    /// One stack's decision in each matrix cell instead of P2PDMA's map type (block,
    /// nvmet_rdma, vfio_dmabuf, amdgpu, xe, nvidia_peermem, nvidia_dmabuf, gds_nvfs,
    /// gds_p2pdma, io_uring_fixed, nccl_p2p, nccl_gdr; as `check --stack`): yes, no, `?`
    /// unknown, `-` where that stack cannot map the pair. `--json` adds `stack_cells`.
    #[arg(long, value_name = "NAME")]
    stack: Option<String>,
    /// Write the tree as a standalone SVG picture to FILE (`-` for standard output) instead.
    #[arg(long, value_name = "FILE", conflicts_with = "json")]
    svg: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PairsMode {
    Grouped,
    All,
}

/// The classes the text matrix shows by default: what people ask nvidia-smi about.
const ASKED_ABOUT: [DeviceClass; 4] = [DeviceClass::Gpu, DeviceClass::Nic, DeviceClass::Nvme, DeviceClass::Accel];

/// `--class` and `--device` (comma lists, short names, globs), as `topo` and `metrics` read them.
pub(crate) fn matrix_filter(engine: &Engine<'_>, class: &[String], devices: &[String]) -> anyhow::Result<MatrixFilter> {
    let classes = class
        .iter()
        .map(|c| DeviceClass::parse(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--class: {e}"))?;
    Ok(MatrixFilter::new(engine, classes, devices)?)
}

pub fn run(source: &SourceArgs, args: &TopoArgs) -> anyhow::Result<ExitCode> {
    let loaded = source.load()?;
    let engine = Engine::new(&loaded.topology)?;
    let mut filter = matrix_filter(&engine, &args.class, &args.devices)?;
    let stack = args.stack.as_deref().map(Stack::parse).transpose()?;
    let grouping = Grouping::new(&engine);
    if let Some(path) = &args.svg {
        crate::report::write_svg(&engine, source, path)?;
    } else if args.pairs == PairsMode::All {
        let m = GroupedMatrix::new(&engine, &grouping, &filter);
        out::json_lines(m.member_pairs())?;
    } else if args.json {
        let m = GroupedMatrix::new(&engine, &grouping, &filter);
        let mut report = TopoReport::new(&engine, &m);
        report.stack_cells = stack.map(|s| StackCells::new(&engine, &m, s));
        out::json_stream(&report)?;
    } else {
        // Without --all: what people ask about, physical functions only (--vfs then lists
        // the VFs in the tree alone); devices named with --device are shown as named.
        if !args.all && filter.devices.is_empty() {
            if filter.classes.is_empty() {
                filter.classes = ASKED_ABOUT.to_vec();
            }
            filter.pfs_only = true;
        }
        let m = GroupedMatrix::new(&engine, &grouping, &filter);
        let mut w = out::InertLines::new(out::stdout_stream());
        text(&mut w, &engine, &m, args, stack).map_err(out::OutputError::from)?;
        w.flush().map_err(out::OutputError::from)?;
    }
    loaded.warn_unknown_acs();
    Ok(ExitCode::SUCCESS)
}

/// `p2pdma topo --json`: the machine, then the matrix per group, streamed.
#[derive(Serialize)]
pub struct TopoReport<'t> {
    pub machine: &'t Machine,
    /// The kernel as judged: P2PDMA built, release, features, IOMMU mode, whitelist in force.
    pub kernel: KernelCapabilities,
    /// The CPU rule: AMD Zen or newer lets P2P through any host bridge.
    pub cpu_allows_p2pdma: bool,
    pub host_bridges: Vec<BridgeReport<'t>>,
    /// Every function, without the raw config space (snapshots keep it).
    pub devices: Devices<'t>,
    /// Where `iommu_group` came from (kernel or predicted) and what the prediction doubts.
    pub iommu_groups: Option<&'t GroupInfo>,
    pub providers: Vec<ProviderRow>,
    /// Devices the kernel cannot tell apart (a PF's VFs), each with its members; every other
    /// function is a group of one. `pairs` and `matrix` index this list.
    pub groups: &'t [GroupRow],
    /// Provider groups × client groups, named by each group's first member.
    pub matrix: Matrix,
    /// One entry per group pair with both layers, its groups and the member pairs it answers.
    pub pairs: GroupPairs<'t>,
    /// NUMA node and CPU affinity of each group in the matrix (its first member).
    pub affinity: Vec<Affinity>,
    /// With `--stack`: that stack's decision for each cell of `matrix`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_cells: Option<StackCells>,
}

/// One stack's decision per grouped cell (`cells[p][c]`, as `matrix`); null where the stack
/// cannot map that pair. `check --stack` gives the reason and log line of one pair.
#[derive(Serialize)]
pub struct StackCells {
    pub stack: Stack,
    pub cells: Vec<Vec<Option<StackCell>>>,
}

#[derive(Serialize)]
pub struct StackCell {
    pub consults_p2pdma: bool,
    pub allowed: Option<bool>,
    pub route: Option<Route>,
    pub on_refusal: OnRefusal,
}

impl StackCells {
    fn new(engine: &Engine<'_>, m: &GroupedMatrix, stack: Stack) -> StackCells {
        let index = |b: Bdf| engine.index_of(b).expect("a matrix device is in the topology");
        let cells = (0..m.providers.len())
            .map(|p| {
                (0..m.clients.len())
                    .map(|c| {
                        let (provider, client) = m.representatives(p, c);
                        stacks::judge_pair(engine, stack, index(provider), index(client)).map(|v| StackCell {
                            consults_p2pdma: v.consults_p2pdma,
                            allowed: v.allowed,
                            route: v.route,
                            on_refusal: v.on_refusal,
                        })
                    })
                    .collect()
            })
            .collect();
        StackCells { stack, cells }
    }
}

impl<'t> TopoReport<'t> {
    pub fn new(engine: &Engine<'t>, m: &'t GroupedMatrix) -> Self {
        let topo = engine.topo;
        TopoReport {
            machine: &topo.machine,
            kernel: kernel::capabilities(&topo.machine),
            cpu_allows_p2pdma: engine.cpu_allows(),
            host_bridges: BridgeReport::all(engine),
            devices: Devices(&topo.devices),
            iommu_groups: topo.iommu_groups.as_ref(),
            providers: analysis::providers(topo),
            groups: &m.groups,
            matrix: matrix_of(m),
            pairs: GroupPairs(m),
            affinity: affinity(engine, m),
            stack_cells: None,
        }
    }
}

/// The devices as the model serializes them, `config_hex` left out.
pub struct Devices<'t>(&'t [Device]);

impl Serialize for Devices<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|d| Device { config_hex: None, ..d.clone() }))
    }
}

/// The grouped pairs, serialized as they are produced.
pub struct GroupPairs<'t>(&'t GroupedMatrix);

impl Serialize for GroupPairs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.grouped_pairs())
    }
}

/// The grouped cells in the matrix's layout: verdicts, path classes, uncertain cells.
fn matrix_of(m: &GroupedMatrix) -> Matrix {
    let mut uncertain = Vec::new();
    for (p, row) in m.cells.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            if !cell.certain {
                uncertain.push([p, c]);
            }
        }
    }
    Matrix {
        providers: m.providers.iter().map(|&g| m.groups[g].device).collect(),
        clients: m.clients.iter().map(|&g| m.groups[g].device).collect(),
        cells: m.cells.iter().map(|row| row.iter().map(|c| c.verdict).collect()).collect(),
        path_classes: m.cells.iter().map(|row| row.iter().map(|c| c.path_class).collect()).collect(),
        uncertain,
    }
}

fn affinity(engine: &Engine<'_>, m: &GroupedMatrix) -> Vec<Affinity> {
    let mut groups: Vec<usize> = m.providers.iter().chain(&m.clients).copied().collect();
    groups.sort_unstable();
    groups.dedup();
    groups
        .into_iter()
        .filter_map(|g| engine.index_of(m.groups[g].device))
        .map(|i| Affinity::of(engine.device(i)))
        .collect()
}

/// The text: kernel and machine, the tree, IOMMU groups, the matrix and its legend.
fn text(
    w: &mut dyn Write,
    engine: &Engine<'_>,
    m: &GroupedMatrix,
    args: &TopoArgs,
    stack: Option<Stack>,
) -> std::io::Result<()> {
    let topo = engine.topo;
    let caps = kernel::capabilities(&topo.machine);
    w.write_all(crate::render::kernel_lines(&caps).as_bytes())?;
    w.write_all(crate::render::machine_line(&topo.machine, engine.cpu_allows()).as_bytes())?;
    let short = ShortNames::new(topo);
    if !args.no_tree {
        crate::topo_tree::write(w, engine, &short, args.vfs, args.verbose)?;
    }
    crate::render::write_iommu_groups(w, topo, !args.vfs)?;
    matrix(w, engine, m, &short, args.vfs, caps.p2pdma.built, stack)
}

/// A row or column of the text matrix: one device, or a group of VFs shown as one.
struct Line {
    label: String,
    device: Bdf,
    /// The group's other member, for a collapsed group against itself.
    other: Option<Bdf>,
    group: usize,
}

/// How the matrix names a device: its short name, else its topology name, else its address.
fn label(topo: &p2pdma_core::Topology, short: &ShortNames, i: usize) -> String {
    let d = &topo.devices[i];
    match (short.get(i), &d.name) {
        (Some(s), _) => s.to_string(),
        (None, Some(n)) => n.clone(),
        (None, None) if d.bdf.domain == 0 => format!("{:02x}:{:02x}.{}", d.bdf.bus, d.bdf.dev, d.bdf.func),
        (None, None) => d.bdf.to_string(),
    }
}

fn lines(engine: &Engine<'_>, m: &GroupedMatrix, short: &ShortNames, groups: &[usize], vfs: bool) -> Vec<Line> {
    let topo = engine.topo;
    let index = |b: Bdf| engine.index_of(b).unwrap_or(0);
    let mut out = Vec::new();
    for &g in groups {
        let row = &m.groups[g];
        if vfs || row.members.len() == 1 {
            for &b in &row.members {
                out.push(Line { label: label(topo, short, index(b)), device: b, other: None, group: g });
            }
            continue;
        }
        let pf = row.physfn.and_then(|p| engine.index_of(p)).map(|p| label(topo, short, p));
        out.push(Line {
            label: format!(
                "{} +{} VFs",
                pf.unwrap_or_else(|| label(topo, short, index(row.device))),
                row.members.len()
            ),
            device: row.device,
            other: row.members.get(1).copied(),
            group: g,
        });
    }
    // nvidia-smi's order: GPUs, then NICs, NVMe, accelerators, the rest; bus order within.
    out.sort_by_cached_key(|l| {
        let d = &topo.devices[index(l.device)];
        let pf = d.physfn.and_then(|p| engine.index_of(p)).unwrap_or(index(l.device));
        let rank = ASKED_ABOUT.iter().position(|&c| c == DeviceClass::of(d)).unwrap_or(ASKED_ABOUT.len());
        let number = short.get(pf).and_then(|s| s.trim_start_matches(char::is_alphabetic).parse::<usize>().ok());
        (rank, number.unwrap_or(usize::MAX), topo.devices[pf].bdf, l.device)
    });
    out
}

/// The cell text: `X` for the device itself, else `PATH/VERDICT` (`PIX/BUS4`, `SYS/NO`),
/// `?` when unreadable ACS could change the verdict.
fn cell_text(cell: &Cell, same: bool) -> String {
    if same {
        return "X".into();
    }
    let verdict = match (cell.verdict.map_type, cell.verdict.distance) {
        (MapType::BusAddr, Some(d)) => format!("BUS{d}"),
        (MapType::ThruHostBridge, Some(d)) => format!("HB{d}"),
        _ => "NO".into(),
    };
    format!("{}/{verdict}{}", cell.path_class.as_str(), if cell.certain { "" } else { "?" })
}

/// With `--stack`: the path class and that stack's decision (`PIX/yes`, `SYS/no`, `PHB/?`,
/// `PIX/-` where the stack cannot map the pair).
fn stack_text(engine: &Engine<'_>, stack: Stack, cell: &Cell, provider: Bdf, client: Bdf) -> String {
    let index = |b: Bdf| engine.index_of(b).expect("a matrix device is in the topology");
    let decision = match stacks::judge_pair(engine, stack, index(provider), index(client)) {
        None => "-",
        Some(v) => match v.allowed {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        },
    };
    format!("{}/{decision}", cell.path_class.as_str())
}

pub const LEGEND: &str = "  cell = path class / the kernel's verdict; `p2pdma check P C` explains one\n  X    = the device itself\n  PIX  = at most one PCIe switch between them; PXB = several switches, no host bridge\n  PHB  = through a host bridge (root complex); NODE = between host bridges of one NUMA node\n  SYS  = across NUMA nodes (the socket interconnect)\n  BUSn = by PCI bus address below a common bridge (distance n)\n  HBn  = through the host bridge / root complex (distance n)\n  NO   = the kernel refuses (map type not_supported)\n";

fn matrix(
    w: &mut dyn Write,
    engine: &Engine<'_>,
    m: &GroupedMatrix,
    short: &ShortNames,
    vfs: bool,
    built: p2pdma_core::model::Built,
    stack: Option<Stack>,
) -> std::io::Result<()> {
    if m.providers.is_empty() {
        writeln!(w, "\nNo device with P2P memory or a memory BAR in the matrix (no row for a P2P matrix).")?;
        if built == p2pdma_core::model::Built::No {
            writeln!(w, "This kernel is built without CONFIG_PCI_P2PDMA besides (see the first lines).")?;
        }
        return Ok(());
    }
    let rows = lines(engine, m, short, &m.providers, vfs);
    let cols = lines(engine, m, short, &m.clients, vfs);
    let w0 = rows.iter().map(|r| r.label.len()).max().unwrap_or(0);
    let widths: Vec<usize> = cols.iter().map(|c| c.label.len().max(8)).collect();
    match stack {
        Some(s) => {
            writeln!(w, "\nP2P matrix (rows offer memory, columns do DMA; path class / what {} decides):", s.as_str())?
        }
        None => writeln!(w, "\nP2P matrix (rows offer memory, columns do DMA; path class / the kernel's verdict):")?,
    }
    write!(w, "{:w0$}", "")?;
    for (c, width) in cols.iter().zip(&widths) {
        write!(w, "  {:>width$}", c.label)?;
    }
    writeln!(w)?;
    let mut uncertain = false;
    for r in &rows {
        write!(w, "{:w0$}", r.label)?;
        for (c, width) in cols.iter().zip(&widths) {
            let client = if r.group == c.group { r.other.unwrap_or(c.device) } else { c.device };
            let text = match m.cell(r.device, client) {
                Some(cell) => {
                    uncertain |= !cell.certain;
                    match stack {
                        Some(s) if r.device != client => stack_text(engine, s, &cell, r.device, client),
                        _ => cell_text(&cell, r.device == client),
                    }
                }
                None => "-".into(),
            };
            write!(w, "  {text:>width$}")?;
        }
        writeln!(w)?;
    }
    w.write_all(LEGEND.as_bytes())?;
    if let Some(s) = stack {
        writeln!(
            w,
            "  with --stack {}: yes / no / ? (unknown) = that stack's decision, - = it cannot map the pair; `p2pdma check --stack {} P C` says why",
            s.as_str(),
            s.as_str()
        )?;
    }
    if uncertain {
        writeln!(w, "  ?    = uncertain: the verdict rests on ACS that could not be read (run as root)")?;
    }
    legend(w, engine, m, rows.iter().chain(&cols))
}

/// Each row's and column's name: address, topology name, PCI names, NUMA node and CPUs.
fn legend<'a>(
    w: &mut dyn Write,
    engine: &Engine<'_>,
    m: &GroupedMatrix,
    lines: impl Iterator<Item = &'a Line>,
) -> std::io::Result<()> {
    let mut seen = HashMap::new();
    let lines: Vec<&Line> = lines.filter(|l| seen.insert(l.label.clone(), ()).is_none()).collect();
    let wl = lines.iter().map(|l| l.label.len()).max().unwrap_or(0);
    writeln!(w, "\nLegend:")?;
    for l in lines {
        let Some(i) = engine.index_of(l.device) else { continue };
        let d = engine.device(i);
        let members = &m.groups[l.group].members;
        let what = match (l.other, members.last()) {
            (Some(_), Some(last)) => {
                format!("{}-{last}  VFs of {}", d.bdf, d.physfn.map(|p| p.to_string()).unwrap_or_default())
            }
            _ => {
                let mut s = d.bdf.to_string();
                for part in [d.name.clone(), d.pci_name().or_else(|| Some(d.kind().to_string()))].into_iter().flatten()
                {
                    s.push_str("  ");
                    s.push_str(&part);
                }
                s
            }
        };
        let numa = d.numa_node.filter(|&n| n >= 0).map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        writeln!(w, "  {:wl$}  {what}  numa {numa}  cpus {}", l.label, d.local_cpus.as_deref().unwrap_or("-"))?;
    }
    Ok(())
}
