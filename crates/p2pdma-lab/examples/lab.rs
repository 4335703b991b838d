//! Drives the lab by hand and proves it works.
//!
//! ```text
//! cargo run -p p2pdma-lab --example lab -- fetch
//! cargo run -p p2pdma-lab --example lab -- run SCENARIO [--share DIR] [--timeout SECS] [--console] -- COMMAND...
//! cargo run -p p2pdma-lab --example lab -- args SCENARIO
//! cargo run -p p2pdma-lab --example lab -- shell SCENARIO
//! ```
//! Scenarios: switch, switch-iommu, root-ports, root-ports-epyc, multifunction-iommu, pxb, plain.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use p2pdma_lab::{LabAssets, LabDevice, LabDeviceKind, LabMachine, LabOptions};

fn dev(id: &str, bus: &str, addr: Option<(u8, u8)>, kind: LabDeviceKind) -> LabDevice {
    LabDevice { id: id.into(), bus: bus.into(), addr, multifunction: false, kind }
}

fn nvme(serial: &str, cmb_mib: Option<u32>) -> LabDeviceKind {
    LabDeviceKind::Nvme { serial: serial.into(), size_mib: 64, cmb_mib }
}

fn scenario(name: &str) -> Option<LabMachine> {
    let root_port = |id: &str, slot: u8, chassis: u8| {
        dev(id, "pcie.0", Some((slot, 0)), LabDeviceKind::RootPort { chassis, slot: 0 })
    };
    let switch = || {
        vec![
            root_port("rp0", 0x11, 1),
            dev("up0", "rp0", None, LabDeviceKind::SwitchUpstream),
            dev("dp0", "up0", Some((0, 0)), LabDeviceKind::SwitchDownstream { chassis: 2, slot: 0 }),
            dev("dp1", "up0", Some((1, 0)), LabDeviceKind::SwitchDownstream { chassis: 2, slot: 1 }),
            dev("nvme-a", "dp0", None, nvme("nvme-a", Some(16))),
            dev("nvme-b", "dp1", None, nvme("nvme-b", None)),
        ]
    };
    let root_ports = || {
        vec![
            root_port("rp0", 0x11, 1),
            root_port("rp1", 0x12, 2),
            dev("nvme-a", "rp0", None, nvme("nvme-a", Some(16))),
            dev("nvme-b", "rp1", None, nvme("nvme-b", Some(16))),
        ]
    };
    let machine = match name {
        "plain" => LabMachine::default(),
        "switch" => LabMachine { devices: switch(), ..LabMachine::default() },
        "switch-iommu" => LabMachine { iommu: true, devices: switch(), ..LabMachine::default() },
        "root-ports" => LabMachine { devices: root_ports(), ..LabMachine::default() },
        "root-ports-epyc" => LabMachine { cpu: "EPYC".into(), devices: root_ports(), ..LabMachine::default() },
        "multifunction-iommu" => {
            let mut devices = vec![
                root_port("rp0", 0x11, 1),
                dev("nvme-a", "rp0", Some((0, 0)), nvme("nvme-a", Some(16))),
                dev("nvme-b", "rp0", Some((0, 1)), nvme("nvme-b", None)),
            ];
            devices[1].multifunction = true;
            LabMachine { iommu: true, devices, ..LabMachine::default() }
        }
        "pxb" => LabMachine {
            devices: vec![
                dev("pxb1", "pcie.0", None, LabDeviceKind::PxbPcie { bus_nr: 0x80, numa_node: Some(1) }),
                root_port("rp0", 0x11, 1),
                dev("rp1", "pxb1", None, LabDeviceKind::RootPort { chassis: 3, slot: 0 }),
                dev("nvme-a", "rp0", None, nvme("nvme-a", Some(16))),
                dev("nvme-b", "rp1", None, nvme("nvme-b", None)),
                dev("nic0", "pcie.0", Some((0x13, 0)), LabDeviceKind::Nic),
            ],
            ..LabMachine::default()
        },
        _ => return None,
    };
    Some(machine)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (ours, command) = match args.iter().position(|a| a == "--") {
        Some(pos) => (&args[..pos], args[pos + 1..].join(" ")),
        None => (&args[..], String::new()),
    };
    let cache = p2pdma_lab::default_cache_dir();
    let usage = || {
        eprintln!("usage: lab fetch | lab args SCENARIO | lab shell SCENARIO | lab run SCENARIO [--share DIR] [--timeout SECS] [--console] [--kernel-log] [--p2pdma BIN] -- COMMAND");
        ExitCode::from(2)
    };
    match ours.first().map(String::as_str) {
        Some("fetch") => {
            let started = Instant::now();
            match p2pdma_lab::fetch_kernel(&cache, p2pdma_lab::Freshness::Cached) {
                Ok(kernel) => {
                    println!(
                        "{} ({:?}) in {}: {:.1} s",
                        kernel.release,
                        kernel.package_version,
                        kernel.dir.display(),
                        started.elapsed().as_secs_f64()
                    );
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("error: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Some(verb @ ("args" | "run" | "shell")) => {
            let Some(machine) = ours.get(1).and_then(|name| scenario(name)) else {
                return usage();
            };
            let mut opts = LabOptions::default();
            let mut rest = ours[2..].iter();
            while let Some(flag) = rest.next() {
                match flag.as_str() {
                    "--share" => opts.share_dir = rest.next().map(PathBuf::from),
                    "--timeout" => {
                        opts.timeout = Duration::from_secs(rest.next().and_then(|s| s.parse().ok()).unwrap_or(300))
                    }
                    "--console" => opts.echo_console = true,
                    "--kernel-log" => opts.kernel_log = true,
                    "--p2pdma" => opts.p2pdma_binary = rest.next().map(PathBuf::from),
                    "--file" => {
                        if let Some((host, guest)) = rest.next().and_then(|s| s.split_once(':')) {
                            opts.extra_files.push((host.into(), guest.into()));
                        }
                    }
                    _ => return usage(),
                }
            }
            let result = match verb {
                "args" => p2pdma_lab::qemu_args(&machine, &LabAssets::placeholder()).map(|args| {
                    println!("{}", args.join(" "));
                    0
                }),
                "shell" => p2pdma_lab::shell(&machine, &opts),
                _ => p2pdma_lab::run(&machine, &command, &opts).map(|outcome| {
                    eprintln!(
                        "[lab] exit {} | prepare {:.2} s, boot {:.2} s, command {:.2} s, total {:.2} s",
                        outcome.exit_status,
                        outcome.prepare_time.as_secs_f64(),
                        outcome.boot_time.as_secs_f64(),
                        outcome.command_time.as_secs_f64(),
                        outcome.total_time.as_secs_f64()
                    );
                    eprintln!("[lab] qemu: {}", outcome.qemu_args.join(" "));
                    outcome.exit_status
                }),
            };
            match result {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
                Err(err) => {
                    eprintln!("error: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => usage(),
    }
}
