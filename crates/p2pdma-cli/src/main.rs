//! `p2pdma`: the command-line front end. Parsing and printing only; the work is in the
//! library crates. Exit codes: 0 success / P2P supported, 1 not supported or refused,
//! 2 bad input (unreadable or malformed files, unknown devices, wrong roles, bad flags),
//! 130/143 `copy` or `bench` interrupted by SIGINT/SIGTERM.

mod alloc;
mod bench;
mod copy;
mod interrupt;
mod lab;
mod nvmet;
mod render;
mod report;
mod source;

use std::io::Write;
use std::path::PathBuf;
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

#[derive(Subcommand)]
enum Command {
    /// Show the PCIe tree, providers and the P2P matrix of providers × DMA-capable endpoints.
    Topo {
        #[command(flatten)]
        source: SourceArgs,
        #[arg(long)]
        json: bool,
        /// Write the tree as a standalone SVG picture to FILE (`-` for standard output) instead.
        #[arg(long, value_name = "FILE", conflicts_with = "json")]
        svg: Option<PathBuf>,
    },
    /// The kernel's verdict for a provider and clients: exit 0 supported, 1 not, 2 bad input.
    Check {
        #[command(flatten)]
        source: SourceArgs,
        /// The device whose P2P memory is used (`0000:03:00.0`, `03:00.0` or a topology name).
        provider: String,
        /// Devices that would DMA to or from it (PCI devices, or block/net/rdma device names).
        #[arg(required = true)]
        clients: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// The provider the kernel would choose for a set of clients (`pci_p2pmem_find_many`).
    Find {
        #[command(flatten)]
        source: SourceArgs,
        #[arg(required = true)]
        clients: Vec<String>,
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
        /// Bytes, a multiple of the page size; suffixes K, M, G (powers of 1024).
        #[arg(value_parser = parse_size)]
        size: usize,
        /// A block device (path, or a device name such as nvme-b) to read into the buffer with O_DIRECT.
        #[arg(long, value_name = "DEVICE")]
        read: Option<String>,
        /// Byte offset of the read on the device.
        #[arg(long, default_value_t = 0)]
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
    /// Throughput and latency (p50, p99) of reads into P2P memory, writes out of it and
    /// copies through it, each beside the same through host memory, over depths and chunks.
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
    /// The lab: a real P2PDMA kernel on emulated PCIe hardware described by a topology file.
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
    /// NVMe-oF exports through the kernel's target (nvmet) with P2P memory, checked first.
    Nvmet {
        #[command(subcommand)]
        command: nvmet::NvmetCommand,
    },
    /// Write everything the verdict needs (raw config space included) to one JSON file.
    Snapshot {
        #[command(flatten)]
        source: SourceArgs,
        /// Output file (`-` for standard output).
        #[arg(short, long)]
        output: PathBuf,
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

#[derive(Subcommand)]
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
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Boot TOPOLOGY with an interactive console (power off or Ctrl-A X to leave).
    Shell { topology: PathBuf },
    /// Print the QEMU command line for TOPOLOGY.
    QemuArgs { topology: PathBuf },
    /// Download (or find in the cache) the Debian unstable kernel the lab boots.
    Fetch,
}

/// `lab run` exits with this when the lab, not the guest command, failed.
const LAB_FAILED: u8 = 125;

fn lab(command: LabCommand) -> anyhow::Result<ExitCode> {
    match command {
        LabCommand::Run { topology, timeout, share, console, kernel_log, fault, command } => {
            let (_, _, mut machine) = lab::load(&topology)?;
            machine.disk_faults = fault;
            let mut opts = lab::options(&topology, timeout)?;
            opts.share_dir = share;
            opts.echo_console = console;
            opts.kernel_log = kernel_log;
            match p2pdma_lab::run(&machine, &lab::guest_command(&command), &opts) {
                Ok(outcome) => Ok(ExitCode::from(outcome.exit_status.clamp(0, 255) as u8)),
                Err(e) => {
                    eprintln!("p2pdma: lab: {e}");
                    Ok(ExitCode::from(LAB_FAILED))
                }
            }
        }
        LabCommand::Shell { topology } => {
            let (_, _, machine) = lab::load(&topology)?;
            let opts = lab::options(&topology, 24 * 3600)?;
            let status = p2pdma_lab::shell(&machine, &opts)?;
            Ok(ExitCode::from(status.clamp(0, 255) as u8))
        }
        LabCommand::QemuArgs { topology } => {
            let (_, _, machine) = lab::load(&topology)?;
            let args = p2pdma_lab::qemu_args(&machine, &p2pdma_lab::LabAssets::placeholder())?;
            println!("{}", args.join(" "));
            Ok(ExitCode::SUCCESS)
        }
        LabCommand::Fetch => {
            let kernel = p2pdma_lab::fetch_kernel(&p2pdma_lab::default_cache_dir())?;
            println!("kernel {} in {}", kernel.release, kernel.dir.display());
            Ok(ExitCode::SUCCESS)
        }
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
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: the cause chain joined, for humans and scripts alike.
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("p2pdma: {}", msg.join(": "));
            ExitCode::from(2)
        }
    }
}

/// `4096`, `64K`, `1M`, `2G`.
pub(crate) fn parse_size(s: &str) -> Result<usize, String> {
    let (num, mult) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1usize << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("`{s}` is not a size (bytes, or with K, M, G)"))
}

/// A byte count or offset: `parse_size` as u64.
pub(crate) fn parse_bytes(s: &str) -> Result<u64, String> {
    parse_size(s).map(|n| n as u64)
}

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Topo { source, json, svg } => {
            let loaded = source.load()?;
            let engine = Engine::new(&loaded.topology)?;
            let report = render::TopoReport::new(&engine);
            if let Some(path) = svg {
                report::write_svg(&engine, &source, &path)?;
            } else if json {
                print_json(&report)?;
            } else {
                print!("{}", render::topo(&engine, &report));
            }
            loaded.warn_unknown_acs();
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { source, provider, clients, json } => {
            let loaded = source.load()?;
            let engine = Engine::new(&loaded.topology)?;
            let report = analysis::check(&engine, &provider, &clients)?;
            if json {
                print_json(&report)?;
            } else {
                print!("{}", render::check(&report));
            }
            Ok(if report.map_type.supported() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Find { source, clients, json } => {
            let loaded = source.load()?;
            let engine = Engine::new(&loaded.topology)?;
            let report = analysis::find(&engine, &clients)?;
            if json {
                print_json(&report)?;
            } else {
                print!("{}", render::find(&report));
            }
            Ok(if report.provider.is_some() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Providers { source, json } => {
            let loaded = source.load()?;
            let rows = analysis::providers(&loaded.topology);
            if json {
                print_json(&rows)?;
            } else {
                print!("{}", render::providers(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Alloc { source, provider, size, read, offset, json } => {
            let loaded = source.load()?;
            let engine = Engine::new(&loaded.topology)?;
            let read = read.map(|r| alloc::block_device(&engine, &r).map(|p| (p, offset))).transpose()?;
            match alloc::run(&engine, &source.sysfs_root, &provider, size, read)? {
                Ok(report) => {
                    let failed = report.read.as_ref().is_some_and(|r| !r.ok);
                    if json {
                        print_json(&report)?;
                    } else {
                        print!("{}", render::alloc(&report));
                    }
                    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
                }
                Err((e, bdf)) => {
                    if json {
                        print_json(
                            &serde_json::json!({ "provider": bdf, "size": size, "error": e.to_string(), "errno": e.errno() }),
                        )?;
                    }
                    eprintln!("p2pdma: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
        Command::Copy { source, args, json } => copy::command(&source, &args, json),
        Command::Bench { source, args, json } => bench::command(&source, &args, json),
        Command::Lab { command } => lab(command),
        Command::Nvmet { command } => nvmet::run(command),
        Command::Report { source, output } => report::run(&source, &output),
        Command::Resolve { source, devices, block, json } => {
            let loaded = source.load()?;
            let engine = Engine::new(&loaded.topology)?;
            let mut rows = Vec::new();
            for name in &devices {
                let bdf = match p2pdma_core::resolve(&engine, name)? {
                    p2pdma_core::Target::Pci(i) => Some(loaded.topology.devices[i].bdf),
                    p2pdma_core::Target::NotPci { pci_parent, .. } => {
                        pci_parent.map(|i| loaded.topology.devices[i].bdf)
                    }
                };
                let block_device = alloc::block_device(&engine, name).ok();
                if block && block_device.is_none() {
                    anyhow::bail!("{name} has no block device");
                }
                rows.push(serde_json::json!({ "name": name, "pci": bdf, "block_device": block_device }));
            }
            if json {
                print_json(&rows)?;
            } else {
                for r in &rows {
                    if block {
                        println!("{}", r["block_device"].as_str().unwrap_or_default());
                    } else {
                        println!(
                            "{}  pci {}  block {}",
                            r["name"].as_str().unwrap_or_default(),
                            r["pci"].as_str().unwrap_or("-"),
                            r["block_device"].as_str().unwrap_or("-")
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Snapshot { source, output } => {
            let loaded = source.load()?;
            let text = snapshot::to_json(&loaded.topology);
            if output.as_os_str() == "-" {
                println!("{text}");
            } else {
                std::fs::write(&output, text + "\n").map_err(|e| anyhow::anyhow!("{}: {e}", output.display()))?;
                eprintln!("p2pdma: wrote {} ({} devices)", output.display(), loaded.topology.devices.len());
            }
            loaded.warn_unknown_acs();
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
