//! `p2pdma lab`'s flags: `--fault` parsed, the topology file read and handed to
//! `p2pdma_lab::from_spec`, this binary and the file put into the guest.

use p2pdma_core::spec::Spec;
use p2pdma_core::Topology;
use p2pdma_lab::from_spec::{lab_machine, qemu_id};
use p2pdma_lab::LabMachine;

/// `NAME:OFFSET[:read|:write]`: an EIO injected by QEMU at byte OFFSET of the NVMe drive
/// NAME (see `p2pdma_lab::DiskFault`).
pub fn parse_fault(s: &str) -> Result<p2pdma_lab::DiskFault, String> {
    let mut parts = s.split(':');
    let (Some(name), Some(offset)) = (parts.next(), parts.next()) else {
        return Err(format!("`{s}`: a fault is NAME:OFFSET[:read|:write], e.g. nvme-b:8M:write"));
    };
    let only = match parts.next() {
        None => None,
        Some("read") => Some(p2pdma_lab::FaultOp::Read),
        Some("write") => Some(p2pdma_lab::FaultOp::Write),
        Some(other) => return Err(format!("`{s}`: `{other}` is neither read nor write")),
    };
    if parts.next().is_some() {
        return Err(format!("`{s}`: a fault is NAME:OFFSET[:read|:write]"));
    }
    let offset = crate::parse_bytes(offset)?;
    Ok(p2pdma_lab::DiskFault { device: qemu_id(name).map_err(|e| e.to_string())?, offset, only, errno: 5 })
}

/// Where the topology file is inside the guest; `P2PDMA_NAMES` points there.
pub const GUEST_TOPOLOGY: &str = "/lab/topology.toml";

/// Loads a topology file and its lab machine, with errors naming the file.
pub fn load(path: &std::path::Path) -> anyhow::Result<(Spec, Topology, LabMachine)> {
    let (spec, topo) = p2pdma_host::input::read_spec(path)?;
    let machine = lab_machine(&spec, &topo).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok((spec, topo, machine))
}

/// Names the static p2pdma to put into the guest, when the running one is not static.
pub const GUEST_BINARY_ENV: &str = "P2PDMA_GUEST_BINARY";

/// The p2pdma the guest runs: `$P2PDMA_GUEST_BINARY`, else this very binary. The guest is a
/// busybox initramfs without a C library, so it must be a static executable: checked here,
/// before any boot, with the way to build one in the error.
pub fn guest_binary() -> anyhow::Result<std::path::PathBuf> {
    let (path, from_env) = match std::env::var_os(GUEST_BINARY_ENV) {
        Some(p) if !p.is_empty() => (std::path::PathBuf::from(p), true),
        _ => (std::env::current_exe()?, false),
    };
    let bytes = std::fs::read(&path).map_err(|e| anyhow::anyhow!("{GUEST_BINARY_ENV}: {}: {e}", path.display()))?;
    match p2pdma_lab::is_static_executable(&bytes) {
        Some(true) => Ok(path),
        Some(false) => anyhow::bail!(
            "{} is dynamically linked and cannot run in the lab's busybox guest: build a static one \
             with scripts/build-static (or `cargo build-static`) and run that, or set {GUEST_BINARY_ENV} to it{}",
            path.display(),
            if from_env { "" } else { " (this p2pdma runs on the host, that one in the guest)" }
        ),
        None => anyhow::bail!("{}: not an ELF64 executable (from {GUEST_BINARY_ENV})", path.display()),
    }
}

/// Lab options that put the guest's p2pdma (`guest_binary`) and the topology file into the guest.
pub fn options(topology: &std::path::Path, timeout_secs: u64) -> anyhow::Result<p2pdma_lab::LabOptions> {
    Ok(p2pdma_lab::LabOptions {
        timeout: std::time::Duration::from_secs(timeout_secs),
        p2pdma_binary: Some(guest_binary()?),
        extra_files: vec![(topology.to_path_buf(), GUEST_TOPOLOGY.to_string())],
        ..p2pdma_lab::LabOptions::default()
    })
}

/// `--kernel SUITE`: the suite's kernel from the cache, fetched when missing (or on a refresh).
pub fn suite_kernel(name: &str, freshness: p2pdma_lab::Freshness) -> anyhow::Result<p2pdma_lab::Kernel> {
    if !p2pdma_lab::SUITES.iter().any(|(n, _)| *n == name) {
        let names: Vec<&str> = p2pdma_lab::SUITES.iter().map(|(n, _)| *n).collect();
        anyhow::bail!("--kernel: unknown kernel `{name}` (one of {})", names.join(", "));
    }
    Ok(p2pdma_lab::suite_kernel(&p2pdma_lab::default_cache_dir(), name, freshness)?)
}

/// The guest command line: names from the topology file, then the user's command.
pub fn guest_command(command: &[String]) -> String {
    format!("export P2PDMA_NAMES={GUEST_TOPOLOGY}; {}", command.join(" "))
}
