//! The QEMU the lab runs: the machine's own (`qemu-system-x86_64` on PATH), the newer one
//! in the host's Debian backports suite (fetched with the lab's private apt configuration
//! and unpacked into the cache, never installed), or a program the user names.
//!
//! Why a second QEMU: before 9.0, QEMU had one page-sized bounce buffer for the whole machine
//! for DMA into another device's MMIO (a peer's CMB: `address_space_map` in
//! system/physmem.c), which serialises every P2P transfer page by page; 9.0 gives each
//! device's address space its own, sized by `x-max-bounce-buffer-size`. Its NVMe drives also
//! show up as most enterprise drives do under Debian's `CONFIG_NVME_MULTIPATH=y`: a
//! multipath head (`nvme0n1`) over a hidden path disk (`nvme0c0n1`).
//!
//! Cache layout: `apt-<codename>-backports/` (private apt state), `qemu/<version>/` (the
//! unpacked packages, `.complete` once they started).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use crate::error::{LabError, Result};
use crate::kernel::{
    find_in_path, read_dir_sorted, recreate_dir, require_tool, run_checked, unpack_debs, write, PrivateApt,
};

/// Environment variable choosing the QEMU when no option does: `system`, `backports` or a path.
pub const QEMU_ENV: &str = "P2PDMA_QEMU";
const SYSTEM_PROGRAM: &str = "qemu-system-x86_64";
/// The backports packages: the emulator, its firmware and option ROMs, and the BIOS it expects.
const BACKPORTS_PACKAGES: &[&str] = &["qemu-system-x86", "qemu-system-data", "seabios"];
const COMPLETE_MARKER: &str = ".complete";

/// Which QEMU to run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QemuChoice {
    /// `qemu-system-x86_64` on PATH (Debian 12: 7.2).
    #[default]
    System,
    /// The host suite's backports (Debian 12: bookworm-backports, 10.0).
    Backports,
    /// This program.
    Program(PathBuf),
}

impl FromStr for QemuChoice {
    type Err = LabError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "system" => Ok(QemuChoice::System),
            "backports" => Ok(QemuChoice::Backports),
            "" => Err(LabError::InvalidOption("expected `system`, `backports` or a QEMU program path".into())),
            path => Ok(QemuChoice::Program(PathBuf::from(path))),
        }
    }
}

impl fmt::Display for QemuChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QemuChoice::System => f.write_str("system"),
            QemuChoice::Backports => f.write_str("backports"),
            QemuChoice::Program(p) => write!(f, "{}", p.display()),
        }
    }
}

impl QemuChoice {
    /// `$P2PDMA_QEMU` when set and not empty, else [`QemuChoice::System`].
    pub fn from_env() -> Result<Self> {
        match std::env::var(QEMU_ENV) {
            Ok(v) if !v.trim().is_empty() => v.trim().parse(),
            _ => Ok(QemuChoice::System),
        }
    }
}

/// A QEMU release, from `--version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct QemuVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl QemuVersion {
    /// From `QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)`.
    pub fn parse(version_output: &str) -> Option<Self> {
        let rest = version_output.lines().next()?.split("version ").nth(1)?;
        let number = rest.split_whitespace().next()?;
        let mut parts = number.split('.').map(|p| p.parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next().unwrap_or(Ok(0)).ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        Some(QemuVersion { major, minor, patch })
    }

    /// Each device's DMA has its own bounce buffer, sized by `x-max-bounce-buffer-size`
    /// (QEMU 9.0, "system/physmem: Per-AddressSpace bounce buffering").
    pub fn has_device_bounce_buffers(self) -> bool {
        self >= QemuVersion { major: 9, minor: 0, patch: 0 }
    }
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// A QEMU ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qemu {
    pub program: PathBuf,
    /// Firmware directories (`-L`), searched in this order; empty for the machine's own.
    pub data_dirs: Vec<PathBuf>,
    pub version: QemuVersion,
}

/// The QEMU `choice` names, fetched into `cache` for [`QemuChoice::Backports`].
pub fn find_qemu(choice: &QemuChoice, cache: &Path) -> Result<Qemu> {
    let wanted = match choice {
        QemuChoice::Backports => return backports_qemu(cache),
        QemuChoice::System => SYSTEM_PROGRAM.to_string(),
        QemuChoice::Program(p) => p.display().to_string(),
    };
    let program = find_in_path(&wanted).ok_or_else(|| LabError::MissingTool {
        tool: wanted,
        hint: format!(
            "install it with `apt-get install qemu-system-x86`, or use the backports QEMU \
             (`--qemu backports` or {QEMU_ENV}=backports)"
        ),
    })?;
    let version = version_of(&program)?;
    Ok(Qemu { program, data_dirs: Vec::new(), version })
}

fn version_of(program: &Path) -> Result<QemuVersion> {
    let out = run_checked(
        Command::new(program).arg("--version"),
        "the QEMU program does not start: for the backports QEMU, `apt-get install qemu-system-x86` \
         brings the libraries it links against",
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    QemuVersion::parse(&text).ok_or_else(|| LabError::CommandFailed {
        command: format!("{} --version", program.display()),
        detail: format!("no QEMU version in {:?}", text.lines().next().unwrap_or("")),
        hint: "name a qemu-system-x86_64 program".into(),
    })
}

/// The host's Debian codename (`VERSION_CODENAME` in os-release), whose backports suite is
/// built against the libraries the host has.
fn host_codename() -> Result<String> {
    let text = fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| LabError::MissingTool {
            tool: "backports QEMU".into(),
            hint: "/etc/os-release names no Debian release (VERSION_CODENAME): use `--qemu system` or a program path"
                .into(),
        })
}

/// QEMU from `<codename>-backports`, fetched once and cached by package version; the cached
/// one when the mirror cannot be reached.
fn backports_qemu(cache: &Path) -> Result<Qemu> {
    let suite = format!("{}-backports", host_codename()?);
    for tool in ["apt-get", "dpkg-deb"] {
        require_tool(tool, "the backports QEMU comes from Debian's apt: use `--qemu system` or a program path")?;
    }
    let root = cache.join("qemu");
    let apt = PrivateApt::new(&cache.join(format!("apt-{suite}")), &suite)?;
    if let Err(err) = apt.update() {
        if let Some(qemu) = newest_cached(&root) {
            crate::stderr_line(&format!(
                "p2pdma-lab: cannot refresh the {suite} package lists ({err}); using cached QEMU {}",
                qemu.version
            ));
            return Ok(qemu);
        }
        return Err(err);
    }
    let version = apt.show(BACKPORTS_PACKAGES[0])?.remove("Version").ok_or_else(|| LabError::CommandFailed {
        command: format!("apt-cache show qemu-system-x86 ({suite}, private lab configuration)"),
        detail: "no Version field".into(),
        hint: "use `--qemu system` or a program path".into(),
    })?;
    let dir_name = version.replace([':', '/'], "_");
    let dest = root.join(&dir_name);
    if dest.join(COMPLETE_MARKER).exists() {
        return unpacked(&dest);
    }
    let downloads = cache.join(format!("apt-{suite}")).join("downloads").join("qemu");
    recreate_dir(&downloads)?;
    let packages: Vec<String> = BACKPORTS_PACKAGES.iter().map(|p| p.to_string()).collect();
    apt.download(&packages, &downloads)?;
    let staging = root.join(format!(".{dir_name}.partial"));
    unpack_debs(&downloads, &staging)?;
    // It must start on this host's libraries before it is kept.
    unpacked(&staging)?;
    if dest.exists() {
        fs::remove_dir_all(&dest).map_err(|e| LabError::io(format!("removing stale {}", dest.display()), e))?;
    }
    fs::rename(&staging, &dest).map_err(|e| LabError::io(format!("moving QEMU to {}", dest.display()), e))?;
    write(&dest.join(COMPLETE_MARKER), version.as_bytes())?;
    let _ = fs::remove_dir_all(&downloads);
    unpacked(&dest)
}

/// An unpacked backports QEMU: its own firmware first, then the machine's (option ROMs of
/// the machine's ipxe-qemu, when installed).
fn unpacked(dir: &Path) -> Result<Qemu> {
    let program = dir.join("usr/bin").join(SYSTEM_PROGRAM);
    let version = version_of(&program)?;
    let data_dirs = [
        dir.join("usr/share/qemu"),
        dir.join("usr/share/seabios"),
        PathBuf::from("/usr/share/qemu"),
        PathBuf::from("/usr/share/seabios"),
    ]
    .into_iter()
    .filter(|d| d.is_dir())
    .collect();
    Ok(Qemu { program, data_dirs, version })
}

fn newest_cached(root: &Path) -> Option<Qemu> {
    read_dir_sorted(root)
        .ok()?
        .into_iter()
        .filter(|d| d.join(COMPLETE_MARKER).exists())
        .filter_map(|d| unpacked(&d).ok())
        .max_by_key(|q| q.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qemu_versions() {
        let v = QemuVersion::parse("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright")
            .unwrap();
        assert_eq!(v, QemuVersion { major: 10, minor: 0, patch: 2 });
        assert!(v.has_device_bounce_buffers());
        let old = QemuVersion::parse("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)").unwrap();
        assert_eq!(old.to_string(), "7.2.22");
        assert!(!old.has_device_bounce_buffers());
        assert!(QemuVersion::parse("qemu-img version x").is_none());
    }

    #[test]
    fn parses_qemu_choices() {
        assert_eq!("system".parse::<QemuChoice>().unwrap(), QemuChoice::System);
        assert_eq!("backports".parse::<QemuChoice>().unwrap(), QemuChoice::Backports);
        assert_eq!(
            "/opt/qemu/bin/qemu-system-x86_64".parse::<QemuChoice>().unwrap(),
            QemuChoice::Program("/opt/qemu/bin/qemu-system-x86_64".into())
        );
        assert!("".parse::<QemuChoice>().is_err());
    }
}
