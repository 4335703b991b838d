//! `p2pdma`: the command-line front end. Parsing and printing only; the work is in the
//! library crates. Exit codes: 0 success / P2P supported, 1 not supported or refused,
//! 2 bad input (unreadable or malformed files, unknown devices, wrong roles, bad flags,
//! sizes out of range) or output that cannot be written (a full disk, an unwritable `-o`),
//! 3 uncertain (`check`: the verdict depends on ACS registers that could not be read;
//! root reads them), 141 standard output closed by its reader (`p2pdma topo | head -1`:
//! quiet, the status a shell shows for `cat` there), 125 the lab itself failed (`lab run`),
//! 130/143 `copy` or `bench` interrupted by SIGINT/SIGTERM.
//! `diff`: 0 same, 1 different, 2 bad input.

// Every write goes through `out` (a closed pipe or a full disk must not panic): no
// `print!`/`eprint!` family anywhere in the binary.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod alloc;
mod bench;
mod copy;
mod fleet;
mod import;
mod interrupt;
mod lab;
mod nvmet;
mod out;
mod render;
mod report;
mod source;
mod topo;
mod topo_tree;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use p2pdma_core::{analysis, snapshot, Engine};

use source::SourceArgs;

#[derive(Parser)]
#[command(name = "p2pdma", version, about = "PCIe peer-to-peer DMA on Linux: know, move, serve, try")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `defer`: a command's arguments are built only when it runs (or for help, completions and
/// man pages, which build them all); the variants' names and descriptions stay eager for the
/// top-level help. Building every command's arguments at start cost each process in the lab's
/// emulated CPU some milliseconds (scripts/bench-startup); `LabCommand` and `NvmetCommand`
/// defer theirs likewise. An `Args` struct flattened into a deferred command must not have a
/// doc comment: clap would apply it as the command's description, over the variant's.
#[derive(Subcommand)]
#[command(defer = true)]
enum Command {
    /// Show the PCIe tree (a PF's VFs folded) and one matrix of GPUs, NICs, NVMe and
    /// accelerators named GPU0, NIC0, ... as nvidia-smi does: each cell the path class and the
    /// kernel's verdict (PIX/BUS4), a legend with NUMA and CPUs; --json the pairs per group.
    Topo {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        args: topo::TopoArgs,
    },
    /// The kernel's verdict for a provider and clients: exit 0 supported, 1 not, 2 bad input,
    /// 3 uncertain (it depends on ACS registers that could not be read: run as root).
    /// The provider is any endpoint with P2P memory or a memory BAR (a GPU, NIC, FPGA, NVMe).
    Check {
        #[command(flatten)]
        source: SourceArgs,
        /// The device whose memory is used: P2P memory it publishes, or a BAR it would offer
        /// (`0000:03:00.0`, `03:00.0` or a topology name).
        provider: String,
        /// Devices that would DMA to or from it (PCI devices, or block/net/rdma device names).
        #[arg(required = true)]
        clients: Vec<String>,
        /// Only this stack's decision in the stacks block (block, nvmet_rdma, vfio_dmabuf,
        /// amdgpu, xe, nvidia_peermem, nvidia_dmabuf, gds_nvfs, gds_p2pdma, io_uring_fixed,
        /// nccl_p2p, nccl_gdr).
        #[arg(long, value_name = "NAME")]
        stack: Option<String>,
        /// The NCCL job's environment for the nccl stacks, repeatable (`NCCL_P2P_LEVEL=SYS`,
        /// `NCCL_P2P_DISABLE=1`, `NCCL_NET_GDR_LEVEL=PHB`, `NCCL_NET_GDR_READ=0`); replaces a
        /// topology file's `nccl_env` key by key. p2pdma's own environment is never read.
        #[arg(long = "nccl-env", value_name = "KEY=VALUE")]
        nccl_env: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// The address CLIENT must put on the bus to reach TARGET's BAR (the PCI bus address from
    /// the BAR register, not the CPU address in sysfs), the BAR, and whether one fixed address
    /// exists (by bus address below a switch; through the host bridge a translating IOMMU
    /// needs a DMA mapping). Exit 0 an address or mapping path exists, 1 refused, 2 bad input.
    Addr {
        #[command(flatten)]
        source: SourceArgs,
        /// The device whose DMA engine writes or reads (a BDF or name).
        client: String,
        /// TARGET[:BAR][+OFFSET]: without BAR, the BAR holding its P2P memory, else its first
        /// memory BAR (e.g. `gpu0:1+0x1000`, `0000:03:00.0:2`, `nvme-a+64K`).
        target: String,
        #[arg(long)]
        json: bool,
    },
    /// The provider the kernel would choose for a set of clients (`pci_p2pmem_find_many`).
    /// Exit 0 a provider found, 1 none, 2 bad input.
    Find {
        #[command(flatten)]
        source: SourceArgs,
        #[arg(required = true)]
        clients: Vec<String>,
        /// Rank every device with P2P memory or a memory BAR (GPUs, FPGAs), not only published
        /// P2P memory: the closest memory, not the kernel's automatic choice.
        #[arg(long)]
        any_bar: bool,
        #[arg(long)]
        json: bool,
    },
    /// Every P2P memory provider with its size, free memory and whether it is published.
    Providers {
        #[command(flatten)]
        source: SourceArgs,
        #[arg(long)]
        json: bool,
    },
    /// Allocate P2P memory from a provider (sysfs p2pmem/allocate) and show what happened;
    /// with --read, fill it by a direct read from a block device (exit 1 if the kernel refuses).
    Alloc {
        #[command(flatten)]
        source: SourceArgs,
        /// The provider (BDF or name).
        provider: String,
        /// Bytes, a multiple of the page size, at most the provider's P2P memory; suffixes
        /// K, M, G, T (powers of 1024; KiB, MiB too) and decimals (1.5M).
        #[arg(value_parser = parse_size)]
        size: usize,
        /// A block device (path, or a device name such as nvme-b) to read into the buffer with O_DIRECT.
        #[arg(long, value_name = "DEVICE")]
        read: Option<String>,
        /// Byte offset of the read on the device (suffixes as for the size).
        #[arg(long, default_value = "0", value_parser = parse_bytes)]
        offset: u64,
        #[arg(long)]
        json: bool,
    },
    /// Copy a range between block devices or files through P2P memory (or host memory when
    /// P2P cannot serve both ends, saying why), with io_uring, and prove it with --verify.
    /// Exit 0 copied (and verified), 1 refused, failed or mismatched, 2 bad input,
    /// 130/143 interrupted by SIGINT/SIGTERM (the I/O in flight finished, the written prefix
    /// reported).
    Copy {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        args: copy::CopyArgs,
        #[arg(long)]
        json: bool,
    },
    /// IOPS, throughput and completion-latency percentiles of reads into P2P memory, writes
    /// out of it and copies through it, each beside the same through host memory, over
    /// depths and chunks; fio's option names and (--json) fio's JSON. Reads only without --dst.
    Bench {
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        args: bench::BenchArgs,
        #[arg(long)]
        json: bool,
    },
    /// What names refer to: the PCI address and block device of each (`nvme-a`, `03:00.0`,
    /// `nvme0n1`); with --block, only the block device paths, one per line.
    Resolve {
        #[command(flatten)]
        source: SourceArgs,
        #[arg(required = true, value_name = "NAME")]
        devices: Vec<String>,
        #[arg(long, conflicts_with = "json")]
        block: bool,
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Nested(Nested),
    /// Build a snapshot from pasted outputs (lspci -vvv/-x, lspci -tv, nvidia-smi topo -m,
    /// dmesg, hwloc XML, /proc/cmdline, uname -a, lscpu), each found by its content, in any
    /// mix; `-` reads standard input. Prints devices, host bridges, what is known and unknown,
    /// disagreements, and nvidia-smi cells and kernel P2PDMA lines checked against p2pdma.
    /// Exit 0, 1 a cross-check disagrees, 2 bad input.
    Import {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Write the snapshot to FILE (`-` for standard output); every command reads it with --snapshot.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Write everything the verdict needs (raw config space included) to one JSON file.
    Snapshot {
        #[command(flatten)]
        source: SourceArgs,
        /// Output file (`-` for standard output).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// What changed between two snapshots (or topology files) that moves a verdict or a path:
    /// devices added or gone, ACS, links, BARs, IOMMU, kernel, whitelist; each with the
    /// provider/client pairs it flips, counted by verdict and group of devices (every pair
    /// with --all). Exit 0 same, 1 different, 2 bad input.
    Diff {
        /// The earlier snapshot (`p2pdma snapshot`) or topology file (told apart by content).
        before: PathBuf,
        /// The later one.
        after: PathBuf,
        /// After the summary, list every flipped pair once (with --json: JSON lines, the diff
        /// first, then one line per pair).
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// The P2P state in Prometheus text format (node_exporter's textfile collector): per
    /// device (a VF group as one series) the peers it reaches by class and verdict and the
    /// worst verdict towards GPUs and NICs, ACS redirects, degraded links, free P2P memory,
    /// kernel support; per-pair verdicts only with --pairs and a filter.
    Metrics {
        #[command(flatten)]
        source: SourceArgs,
        /// Also a series per provider/client pair of the devices --device/--class keep
        /// (p2pdma_pair_supported, _bus_address, _distance): N² series, so a filter is required.
        #[arg(long)]
        pairs: bool,
        /// Only these kinds of device get peer and pair series: gpu, nic, nvme, storage, accel, other.
        #[arg(long, value_delimiter = ',')]
        class: Vec<String>,
        /// Only these devices get peer and pair series (a BDF or name; repeatable, or a comma list).
        #[arg(long = "device", value_name = "DEVICE", value_delimiter = ',')]
        devices: Vec<String>,
        /// Write to FILE atomically (temporary file, then rename) instead of standard output,
        /// e.g. /var/lib/prometheus/node-exporter/p2pdma.prom.
        #[arg(short, long, value_name = "FILE.prom")]
        output: Option<PathBuf>,
    },
    /// Print a shell completion script: `p2pdma completions bash > /etc/bash_completion.d/p2pdma`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (p2pdma.1 and one per command, p2pdma-topo.1, ...) into DIR
    /// (made, with its parents, if absent).
    Manpages {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Write a self-contained HTML report: the drawn tree, the P2P matrix (click a cell for
    /// its path, reasons and fixes) and the machine facts; no network, no external files.
    Report {
        #[command(flatten)]
        source: SourceArgs,
        /// Output file (`-` for standard output).
        #[arg(short, long, value_name = "FILE.html")]
        output: PathBuf,
    },
}

/// The commands with commands of their own, registered eagerly (flattened into `Command`,
/// where they were): clap's `help` command copies its parent's tree before deferred commands
/// are built, so deferred, `help lab run` and `help nvmet export` would be lost from the
/// completions. Their own commands' arguments are deferred (`LabCommand`, `NvmetCommand`).
#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // one value per process, as `Command`
enum Nested {
    /// The lab: a real P2PDMA kernel on emulated PCIe hardware described by a topology file.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// NVMe-oF exports through the kernel's target (nvmet) with P2P memory, checked first,
    /// closed to hosts not named; nvmetcli's config.json saved and restored.
    Nvmet {
        #[command(subcommand)]
        command: nvmet::NvmetCommand,
    },
}

#[derive(Subcommand)]
#[command(defer = true)]
enum LabCommand {
    /// Boot TOPOLOGY under QEMU, run COMMAND in the guest (p2pdma on PATH, device names from
    /// the file), stream its output and exit with its status (125 if the lab itself fails).
    Run {
        topology: PathBuf,
        /// Kill the guest after this many seconds (boot included).
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// A host directory shared with the guest at /lab/share.
        #[arg(long, value_name = "DIR")]
        share: Option<PathBuf>,
        /// Show the whole console (firmware, kernel) on stderr.
        #[arg(long)]
        console: bool,
        /// Let every kernel message reach the console.
        #[arg(long)]
        kernel_log: bool,
        /// Make QEMU fail I/O at a byte of an NVMe drive with EIO: NAME:OFFSET[:read|:write]
        /// (armed by the drive's first write; repeatable).
        #[arg(long, value_name = "FAULT", value_parser = lab::parse_fault)]
        fault: Vec<p2pdma_lab::DiskFault>,
        /// Boot this Debian suite's kernel: sid (the default, with CONFIG_PCI_P2PDMA),
        /// trixie or bookworm (both without it).
        #[arg(long, value_name = "SUITE")]
        kernel: Option<String>,
        /// The QEMU to run: `system` (qemu-system-x86_64 on PATH), `suite` (the host Debian's
        /// QEMU, 7.2 on Debian 12) or `backports` (10.0 on Debian 12), both unpacked into the
        /// lab's cache and never installed, `auto` (system when on PATH, else suite) or a
        /// program path [default: $P2PDMA_QEMU, else auto].
        #[arg(long, value_name = "QEMU")]
        qemu: Option<p2pdma_lab::QemuChoice>,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Boot TOPOLOGY with an interactive console (power off or Ctrl-A X to leave).
    Shell {
        topology: PathBuf,
        /// The Debian suite's kernel to boot (sid, trixie, bookworm).
        #[arg(long, value_name = "SUITE")]
        kernel: Option<String>,
        /// The QEMU to run: `system` (qemu-system-x86_64 on PATH), `suite` (the host Debian's
        /// QEMU, 7.2 on Debian 12) or `backports` (10.0 on Debian 12), both unpacked into the
        /// lab's cache and never installed, `auto` (system when on PATH, else suite) or a
        /// program path [default: $P2PDMA_QEMU, else auto].
        #[arg(long, value_name = "QEMU")]
        qemu: Option<p2pdma_lab::QemuChoice>,
    },
    /// Print the QEMU command line for TOPOLOGY.
    QemuArgs { topology: PathBuf },
    /// Download (or find in the cache) the Debian unstable kernel the lab boots (or, with
    /// --kernel, trixie's or bookworm's). One fetch at a time per cache entry: concurrent
    /// callers wait and share the result.
    Fetch {
        #[arg(long, value_name = "SUITE")]
        kernel: Option<String>,
        /// Fetch (or find in the cache) this QEMU instead of a kernel: `suite`, `backports`
        /// (or `auto`, `system`, a path: found, not fetched).
        #[arg(long, value_name = "QEMU", conflicts_with = "kernel")]
        qemu: Option<p2pdma_lab::QemuChoice>,
        /// Ask the Debian mirror for the current version even when the cache has one
        /// (without it, a cached kernel or QEMU is used without the network).
        #[arg(long)]
        refresh: bool,
    },
}

/// `lab run` exits with this when the lab, not the guest command, failed.
const LAB_FAILED: u8 = 125;

fn lab(command: LabCommand) -> anyhow::Result<ExitCode> {
    match command {
        LabCommand::Run { topology, timeout, share, console, kernel_log, fault, kernel, qemu, command } => {
            let (_, _, mut machine) = lab::load(&topology)?;
            machine.disk_faults = fault;
            let mut opts = lab::options(&topology, timeout)?;
            opts.kernel = kernel.map(|k| lab::suite_kernel(&k, p2pdma_lab::Freshness::Cached)).transpose()?;
            opts.share_dir = share;
            opts.echo_console = console;
            opts.kernel_log = kernel_log;
            opts.qemu = qemu;
            match p2pdma_lab::run(&machine, &lab::guest_command(&command), &opts) {
                Ok(outcome) => Ok(ExitCode::from(outcome.exit_status.clamp(0, 255) as u8)),
                Err(e) => {
                    out::note(&format!("lab: {e}"));
                    Ok(ExitCode::from(LAB_FAILED))
                }
            }
        }
        LabCommand::Shell { topology, kernel, qemu } => {
            let (_, _, machine) = lab::load(&topology)?;
            let mut opts = lab::options(&topology, 24 * 3600)?;
            opts.qemu = qemu;
            opts.kernel = kernel.map(|k| lab::suite_kernel(&k, p2pdma_lab::Freshness::Cached)).transpose()?;
            let status = p2pdma_lab::shell(&machine, &opts)?;
            Ok(ExitCode::from(status.clamp(0, 255) as u8))
        }
        LabCommand::QemuArgs { topology } => {
            let (_, _, machine) = lab::load(&topology)?;
            let args = p2pdma_lab::qemu_args(&machine, &p2pdma_lab::LabAssets::placeholder())?;
            out::text(&format!("{}\n", args.join(" ")))?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Fetch { qemu: Some(choice), refresh, .. } => {
            let qemu = p2pdma_lab::find_qemu(&choice, &p2pdma_lab::default_cache_dir(), freshness(refresh))?;
            out::text(&format!("QEMU {} at {}\n", qemu.version, qemu.program.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Fetch { kernel, qemu: None, refresh } => {
            let kernel = match kernel {
                Some(k) => lab::suite_kernel(&k, freshness(refresh))?,
                None => p2pdma_lab::fetch_kernel(&p2pdma_lab::default_cache_dir(), freshness(refresh))?,
            };
            let p2pdma = if kernel.p2pdma { "with" } else { "without" };
            out::text(&format!(
                "kernel {} ({p2pdma} CONFIG_PCI_P2PDMA) in {}\n",
                kernel.release,
                kernel.dir.display()
            ))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn freshness(refresh: bool) -> p2pdma_lab::Freshness {
    if refresh {
        p2pdma_lab::Freshness::Refresh
    } else {
        p2pdma_lab::Freshness::Cached
    }
}

/// When the process started (close enough: the first thing `main` does), for `copy`'s
/// `setup_seconds`.
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

fn started() -> std::time::Instant {
    *STARTED.get_or_init(std::time::Instant::now)
}

fn main() -> ExitCode {
    started();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return out::clap_exit(&e),
    };
    match run(cli) {
        Ok(code) => code,
        // One line on stderr and exit 2; a closed standard output ends quietly (141).
        Err(e) => out::fail(&e),
    }
}

/// A byte count from the command line: `4096`, `64K`, `1.5G`, `1T`, `1MiB`. K, M, G, T (and
/// KiB, MiB, ...) are powers of 1024; decimals are rounded to a whole byte. Every size and
/// offset flag of `alloc`, `copy` and `bench` parses through here (clap: exit 2).
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    let n = parse_bytes(s)?;
    usize::try_from(n).map_err(|_| format!("`{s}` is too large for this machine's address space"))
}

/// A byte count or offset as u64; see [`parse_size`]. Overflow and negative numbers are
/// their own errors, not "not a size".
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    use parse_size::Error;
    let trimmed = s.trim();
    if trimmed.starts_with('-') {
        return Err(format!("`{s}` is negative: a size or offset counts bytes from 0"));
    }
    parse_size::Config::new().with_binary().parse_size(trimmed).map_err(|e| match e {
        Error::PosOverflow => format!("`{s}` is too large: more than 16 EiB, the largest byte count"),
        Error::Empty => "an empty size: give bytes, or a number with K, M, G or T".to_string(),
        _ => format!("`{s}` is not a size: bytes, or a number with K, M, G or T (powers of 1024; KiB, MiB too), such as 4096, 64K, 1.5G"),
    })
}

/// `--json` output (through `out`, so a closed pipe or a full disk cannot panic).
fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    Ok(out::json(value)?)
}

/// `check`: 0 supported, 1 not, 3 uncertain (unreadable ACS could change the answer).
fn check_exit(report: &analysis::CheckReport) -> u8 {
    if !report.certain {
        UNCERTAIN
    } else if report.map_type.supported() {
        0
    } else {
        1
    }
}

/// `check`'s exit status when the verdict depends on ACS registers that could not be read.
const UNCERTAIN: u8 = 3;

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Topo { source, args } => topo::run(&source, &args),
        Command::Check { source, provider, clients, stack, nccl_env, json } => {
            check(&source, &provider, &clients, stack.as_deref(), &nccl_env, json)
        }
        Command::Addr { source, client, target, json } => addr(&source, &client, &target, json),
        Command::Find { source, clients, any_bar, json } => find(&source, &clients, any_bar, json),
        Command::Providers { source, json } => providers(&source, json),
        Command::Alloc { source, provider, size, read, offset, json } => {
            alloc_command(&source, &provider, size, read, offset, json)
        }
        Command::Copy { source, args, json } => copy::command(&source, &args, json),
        Command::Bench { source, args, json } => bench::command(&source, &args, json),
        Command::Nested(Nested::Lab { command }) => lab(command),
        Command::Nested(Nested::Nvmet { command }) => nvmet::run(command),
        Command::Report { source, output } => report::run(&source, &output),
        Command::Import { files, output, json } => import::run(&files, output.as_deref(), json),
        Command::Diff { before, after, all, json } => fleet::run_diff(&before, &after, json, all),
        Command::Metrics { source, output, pairs, class, devices } => {
            metrics(&source, output.as_ref(), pairs, &class, &devices)
        }
        Command::Completions { shell } => completions(shell),
        Command::Manpages { dir } => manpages(&dir),
        Command::Resolve { source, devices, block, json } => resolve_names(&source, &devices, block, json),
        Command::Snapshot { source, output } => snapshot_command(&source, &output),
    }
}

/// `check`: the verdict for a provider and clients.
fn check(
    source: &SourceArgs,
    provider: &str,
    clients: &[String],
    stack: Option<&str>,
    nccl_env: &[String],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let only = stack.map(p2pdma_core::stacks::Stack::parse).transpose()?;
    let env = nccl_env
        .iter()
        .map(|a| p2pdma_core::nccl::parse_assignment(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--nccl-env: {e}"))?;
    let mut loaded = source.load()?;
    loaded.topology.machine.nccl_env.extend(env);
    let engine = Engine::new(&loaded.topology)?;
    let mut report = analysis::check_memory(&engine, provider, clients)?;
    if let Some(only) = only {
        report.stacks.retain(|s| s.stack == only);
    }
    if json {
        print_json(&report)?;
    } else {
        out::text(&render::check(&report))?;
    }
    Ok(ExitCode::from(check_exit(&report)))
}

/// `addr`: the address a client uses for a target, and the route.
fn addr(source: &SourceArgs, client: &str, target: &str, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = source.load()?;
    let engine = Engine::new(&loaded.topology)?;
    let target = p2pdma_core::addr::TargetSpec::parse(target).map_err(anyhow::Error::msg)?;
    let report = p2pdma_core::addr::addr(&engine, client, &target)?;
    if json {
        print_json(&report)?;
    } else {
        out::text(&render::addr(&report))?;
    }
    let refused = report.route == p2pdma_core::addr::Route::Refused;
    Ok(if refused { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `find`: the provider the kernel would pick for the clients.
fn find(source: &SourceArgs, clients: &[String], any_bar: bool, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = source.load()?;
    let engine = Engine::new(&loaded.topology)?;
    let report = if any_bar { analysis::find_any_bar(&engine, clients)? } else { analysis::find(&engine, clients)? };
    if json {
        print_json(&report)?;
    } else {
        out::text(&render::find(&report))?;
    }
    Ok(if report.provider.is_some() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `providers`: the devices with P2P memory.
fn providers(source: &SourceArgs, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = source.load()?;
    let rows = analysis::providers(&loaded.topology);
    if json {
        print_json(&rows)?;
    } else {
        out::text(&render::providers(&rows))?;
        if p2pdma_core::kernel::p2pdma_absent(&loaded.topology.machine) {
            out::text(&format!("{}\n", p2pdma_core::kernel::absent_reason(&loaded.topology.machine)))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `alloc`: P2P memory from a provider, optionally read into.
fn alloc_command(
    source: &SourceArgs,
    provider: &str,
    size: usize,
    read: Option<String>,
    offset: u64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let loaded = source.load_live("alloc")?;
    let engine = Engine::new(&loaded.topology)?;
    let read = read.map(|r| p2pdma_core::block_device::block_device(&engine, &r).map(|p| (p, offset))).transpose()?;
    match alloc::run(&engine, &source.sysfs_root, provider, size, read)? {
        Ok(report) => {
            let failed = report.read.as_ref().is_some_and(|r| !r.ok);
            if json {
                print_json(&report)?;
            } else {
                out::text(&render::alloc(&report))?;
            }
            Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Err((e, bdf)) => {
            if json {
                print_json(
                    &serde_json::json!({ "provider": bdf, "size": size, "error": e.to_string(), "errno": e.errno() }),
                )?;
            }
            out::note(&e.to_string());
            Ok(ExitCode::from(1))
        }
    }
}

/// `metrics`: the Prometheus text.
fn metrics(
    source: &SourceArgs,
    output: Option<&PathBuf>,
    pairs: bool,
    class: &[String],
    devices: &[String],
) -> anyhow::Result<ExitCode> {
    if pairs && class.is_empty() && devices.is_empty() {
        anyhow::bail!("--pairs needs --device or --class: every pair of the machine is N² series");
    }
    let loaded = source.load()?;
    let engine = Engine::new(&loaded.topology)?;
    let filter = topo::matrix_filter(&engine, class, devices)?;
    let options = p2pdma_core::metrics::Options { pairs, filter };
    fleet::write_metrics(&p2pdma_core::metrics::exposition(&engine, &options), output)?;
    Ok(ExitCode::SUCCESS)
}

/// `completions`: the shell's completion script.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    // Into memory first: clap_complete panics on a failed write (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "p2pdma", &mut script);
    out::text(&String::from_utf8_lossy(&script))?;
    Ok(ExitCode::SUCCESS)
}

/// `manpages`: one man page per command into `dir`.
fn manpages(dir: &Path) -> anyhow::Result<ExitCode> {
    let written = fleet::write_manpages(<Cli as clap::CommandFactory>::command(), dir)?;
    out::note(&format!("wrote {written} man pages to {}", dir.display()));
    Ok(ExitCode::SUCCESS)
}

/// `resolve`: each name's PCI device and block device.
fn resolve_names(source: &SourceArgs, devices: &[String], block: bool, json: bool) -> anyhow::Result<ExitCode> {
    let loaded = source.load()?;
    let engine = Engine::new(&loaded.topology)?;
    let mut rows = Vec::new();
    for name in devices {
        let bdf = match p2pdma_core::resolve(&engine, name)? {
            p2pdma_core::Target::Pci(i) => Some(loaded.topology.devices[i].bdf),
            // A multipath head: the PCI device of its paths (when they share one).
            p2pdma_core::Target::NotPci { pci_parent, name } => pci_parent
                .map(|i| loaded.topology.devices[i].bdf)
                .or_else(|| loaded.topology.aliases.get(&name).and_then(|a| a.data_pci())),
        };
        // With --block, why there is none (a hidden multipath path says where to go).
        let block_device = match p2pdma_core::block_device::block_device(&engine, name) {
            Ok(path) => Some(path),
            Err(e) if block && engine.topo.aliases.get(name).is_some_and(|a| a.hidden) => return Err(e.into()),
            Err(_) if block => anyhow::bail!("{name} has no block device"),
            Err(_) => None,
        };
        rows.push(serde_json::json!({ "name": name, "pci": bdf, "block_device": block_device }));
    }
    if json {
        print_json(&rows)?;
    } else {
        let mut text = String::new();
        for r in &rows {
            if block {
                text += &format!("{}\n", r["block_device"].as_str().unwrap_or_default());
            } else {
                text += &format!(
                    "{}  pci {}  block {}\n",
                    r["name"].as_str().unwrap_or_default(),
                    r["pci"].as_str().unwrap_or("-"),
                    r["block_device"].as_str().unwrap_or("-")
                );
            }
        }
        out::text(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `snapshot`: the topology written as a snapshot file.
fn snapshot_command(source: &SourceArgs, output: &Path) -> anyhow::Result<ExitCode> {
    let loaded = source.load()?;
    let text = snapshot::to_json(&loaded.topology);
    out::write_file(output, (text + "\n").as_bytes(), "the snapshot")?;
    if output.as_os_str() != "-" {
        out::note(&format!("wrote {} ({} devices)", output.display(), loaded.topology.devices.len()));
    }
    loaded.warn_unknown_acs();
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn sizes_take_binary_units_decimals_and_say_why_they_fail() {
        use super::{parse_bytes, parse_size};
        for (text, want) in [
            ("4096", 4096u64),
            ("64K", 64 << 10),
            ("64k", 64 << 10),
            ("1M", 1 << 20),
            ("1MiB", 1 << 20),
            ("1.5G", 3 << 29),
            ("1T", 1 << 40),
            ("2TiB", 2 << 40),
            ("0", 0),
        ] {
            assert_eq!(parse_bytes(text), Ok(want), "{text}");
        }
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_bytes("99999999999G").unwrap_err().contains("too large"));
        assert!(parse_bytes("-1").unwrap_err().contains("negative"));
        assert!(parse_bytes("1X").unwrap_err().contains("not a size"));
        assert!(parse_bytes("").unwrap_err().contains("empty"));
    }

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// `defer`: a command's description in its parent's list (eager, from the variant) is the
    /// one it has once built (an `Args` struct's doc comment would replace it), at every level.
    #[test]
    fn deferred_commands_keep_their_descriptions_when_built() {
        fn walk(listed: &clap::Command, built: &clap::Command, path: &str) {
            for sub in listed.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                let b = built.find_subcommand(sub.get_name()).unwrap_or_else(|| panic!("{path} missing once built"));
                let text = |c: &clap::Command| {
                    (c.get_about().map(|a| a.to_string()), c.get_long_about().map(|a| a.to_string()))
                };
                assert_eq!(text(sub), text(b), "{path}");
                walk(sub, b, &path);
            }
        }
        let mut built = super::Cli::command();
        built.build();
        walk(&super::Cli::command(), &built, "p2pdma");
    }

    /// The `help` command knows the nested commands (`help lab run`), as the completions
    /// and man pages need: `lab` and `nvmet` are registered eagerly for it.
    #[test]
    fn help_knows_the_nested_commands() {
        let mut cmd = super::Cli::command();
        cmd.build();
        let help = cmd.find_subcommand("help").expect("a help command");
        for (parent, child) in [("lab", "run"), ("lab", "qemu-args"), ("nvmet", "export"), ("nvmet", "soft-roce")] {
            let nested = help.find_subcommand(parent).and_then(|p| p.find_subcommand(child));
            assert!(nested.is_some(), "help {parent} {child}");
        }
    }
}
