//! `p2pdma`: the command-line front end. Parsing and printing only; the work is in the
//! library crates. Exit codes: 0 success / P2P supported, 1 not supported or refused,
//! 2 bad input (unreadable or malformed files, unknown devices, wrong roles, bad flags).

mod render;
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
    /// Write everything the verdict needs (raw config space included) to one JSON file.
    Snapshot {
        #[command(flatten)]
        source: SourceArgs,
        /// Output file (`-` for standard output).
        #[arg(short, long)]
        output: PathBuf,
    },
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

fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Topo { source, json } => {
            let loaded = source.load()?;
            let engine = Engine::new(&loaded.topology)?;
            let report = render::TopoReport::new(&engine);
            if json {
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
