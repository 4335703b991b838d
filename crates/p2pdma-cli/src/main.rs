//! `p2pdma`: the command-line front end. Parsing and printing only; the work is in the
//! library crates. Exit codes: 0 success / P2P supported, 1 not supported or refused,
//! 2 bad input (unreadable or malformed files, unknown devices, wrong roles, bad flags).

mod alloc;
mod bench;
mod copy;
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
    /// Show the PCIe tree, providers and the all-pairs matrix (devices with memory × DMA-capable
    /// endpoints): the kernel's verdict and the path class (nvidia-smi topo -m), NUMA and CPUs.
    Topo {
        #[command(flatten)]
        source: SourceArgs,
        #[arg(long)]
        json: bool,
        /// Only these kinds of device in the matrix: gpu, nic, nvme, storage, accel, other.
        #[arg(long, value_delimiter = ',')]
        class: Vec<String>,
        /// Only these devices in the matrix (a BDF or name; repeatable).
        #[arg(long = "device", value_name = "DEVICE")]
        devices: Vec<String>,
        /// Write the tree as a standalone SVG picture to FILE (`-` for standard output) instead.
        #[arg(long, value_name = "FILE", conflicts_with = "json")]
        svg: Option<PathBuf>,
    },
    /// The kernel's verdict for a provider and clients: exit 0 supported, 1 not, 2 bad input.
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
    /// Exit 0 copied (and verified), 1 refused, failed or mismatched, 2 bad input.
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

fn main() -> ExitCode {
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
        Command::Topo { source, json, svg, class, devices } => {
            let loaded = source.load()?;
            let engine = Engine::new(&loaded.topology)?;
            let class = class
                .iter()
                .map(|c| p2pdma_core::pathclass::DeviceClass::parse(c))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("--class: {e}"))?;
            let filter = analysis::MatrixFilter::new(&engine, class, &devices)?;
            let report = render::TopoReport::filtered(&engine, &filter);
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
            let report = analysis::check_memory(&engine, &provider, &clients)?;
            if json {
                print_json(&report)?;
            } else {
                print!("{}", render::check(&report));
            }
            Ok(if report.map_type.supported() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Addr { source, client, target, json } => {
            let loaded = source.load()?;
            let engine = Engine::new(&loaded.topology)?;
            let target = p2pdma_core::addr::TargetSpec::parse(&target).map_err(anyhow::Error::msg)?;
            let report = p2pdma_core::addr::addr(&engine, &client, &target)?;
            if json {
                print_json(&report)?;
            } else {
                print!("{}", render::addr(&report));
            }
            let refused = report.route == p2pdma_core::addr::Route::Refused;
            Ok(if refused { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Find { source, clients, any_bar, json } => {
            let loaded = source.load()?;
            let engine = Engine::new(&loaded.topology)?;
            let report =
                if any_bar { analysis::find_any_bar(&engine, &clients)? } else { analysis::find(&engine, &clients)? };
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
        Command::Copy { source, args, json } => {
            let loaded = source.load_live("copy")?;
            let engine = Engine::new(&loaded.topology)?;
            let mountinfo = source.proc_root.join("self/mountinfo");
            let machine = copy::Machine { engine: &engine, sysfs: &source.sysfs_root, mountinfo: &mountinfo };
            let report = copy::run(&machine, &args, copy::wants_progress(json))?;
            if json {
                print_json(&report)?;
            } else {
                print!("{}", copy::render(&report));
            }
            Ok(if report.outcome == copy::Outcome::Copied { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Bench { source, args, json } => {
            let loaded = source.load_live("bench")?;
            let engine = Engine::new(&loaded.topology)?;
            let mountinfo = source.proc_root.join("self/mountinfo");
            let machine = copy::Machine { engine: &engine, sysfs: &source.sysfs_root, mountinfo: &mountinfo };
            let report = bench::run(&machine, &args)?;
            if json {
                print_json(&report)?;
            } else {
                print!("{}", bench::render(&report));
            }
            let failed = report.runs.iter().any(|r| r.error.is_some());
            Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
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
