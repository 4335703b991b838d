//! The QEMU the lab runs: the machine's own (`qemu-system-x86_64` on PATH); Debian's, unpacked
//! into the cache with the libraries the machine lacks and never installed (the host's own
//! suite, or its backports suite for a newer one); or a program the user names. The default
//! is the machine's when it has one, else the host suite's, unpacked: installing Debian's
//! `qemu-system-x86` may replace packages the machine has (on Debian 12 it removes the
//! backports `qemu-utils` that such machines often carry).
//!
//! Why a newer QEMU: before 9.0, QEMU had one page-sized bounce buffer for the whole machine
//! for DMA into another device's MMIO (a peer's CMB: `address_space_map` in
//! system/physmem.c), which serialises every P2P transfer page by page; 9.0 gives each
//! device's address space its own, sized by `x-max-bounce-buffer-size`. Its NVMe drives also
//! show up as most enterprise drives do under Debian's `CONFIG_NVME_MULTIPATH=y`: a
//! multipath head (`nvme0n1`) over a hidden path disk (`nvme0c0n1`).
//!
//! Cache layout: `apt-<suite>/` (private apt state), `qemu/<suite>/<version>/` (the unpacked
//! packages, `.complete` once they started), `apt-<suite>.lock` (one fetch at a time).

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use crate::cache::Freshness;
use crate::debs::{find_in_path, run_checked, unpacked_in_cache, Unpack};
use crate::error::{LabError, Result};

/// Environment variable choosing the QEMU when no option does: `auto`, `system`, `suite`,
/// `backports` or a path.
pub const QEMU_ENV: &str = "P2PDMA_QEMU";
const SYSTEM_PROGRAM: &str = "qemu-system-x86_64";
/// Debian's packages of a private QEMU: the emulator, its firmware and option ROMs, and the
/// BIOS it expects (their libraries come with them when the machine lacks them).
const QEMU_PACKAGES: &[&str] = &["qemu-system-x86", "qemu-system-data", "seabios"];

/// Which QEMU to run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QemuChoice {
    /// The machine's (`system`) when it has one, else the host suite's (`suite`), said on stderr.
    #[default]
    Auto,
    /// `qemu-system-x86_64` on PATH.
    System,
    /// The host's Debian suite's QEMU (Debian 12: 7.2), unpacked into the cache.
    Suite,
    /// The host suite's backports (Debian 12: bookworm-backports, 10.0), unpacked into the cache.
    Backports,
    /// This program.
    Program(PathBuf),
}

impl FromStr for QemuChoice {
    type Err = LabError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(QemuChoice::Auto),
            "system" => Ok(QemuChoice::System),
            "suite" => Ok(QemuChoice::Suite),
            "backports" => Ok(QemuChoice::Backports),
            "" => Err(LabError::InvalidOption(
                "expected `auto`, `system`, `suite`, `backports` or a QEMU program path".into(),
            )),
            path => Ok(QemuChoice::Program(PathBuf::from(path))),
        }
    }
}

impl fmt::Display for QemuChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QemuChoice::Auto => f.write_str("auto"),
            QemuChoice::System => f.write_str("system"),
            QemuChoice::Suite => f.write_str("suite"),
            QemuChoice::Backports => f.write_str("backports"),
            QemuChoice::Program(p) => write!(f, "{}", p.display()),
        }
    }
}

impl QemuChoice {
    /// `$P2PDMA_QEMU` when set and not empty, else [`QemuChoice::Auto`].
    pub fn from_env() -> Result<Self> {
        match std::env::var(QEMU_ENV) {
            Ok(v) if !v.trim().is_empty() => v.trim().parse(),
            _ => Ok(QemuChoice::Auto),
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
    /// Libraries unpacked beside a private QEMU, searched before the machine's
    /// (`LD_LIBRARY_PATH`); empty for the machine's own.
    pub library_dirs: Vec<PathBuf>,
    pub version: QemuVersion,
}

impl Qemu {
    /// The environment the program runs in: its private libraries, if any.
    pub fn env(&self) -> Vec<(OsString, OsString)> {
        library_env(&self.library_dirs).into_iter().collect()
    }
}

/// The QEMU `choice` names; a private one is unpacked into `cache` when it is not there yet
/// (or, with [`Freshness::Refresh`], when the mirror has a newer one).
pub fn find_qemu(choice: &QemuChoice, cache: &Path, freshness: Freshness) -> Result<Qemu> {
    let wanted = match choice {
        QemuChoice::Auto => match find_in_path(SYSTEM_PROGRAM) {
            Some(program) => return system_qemu(program),
            None => {
                let suite = host_codename()?;
                let qemu = private_qemu(cache, &suite, freshness)?;
                crate::stderr_line(&format!(
                    "p2pdma-lab: no {SYSTEM_PROGRAM} on PATH: running Debian {}'s QEMU {} from {} \
                     (--qemu system|suite|backports|PATH chooses)",
                    suite,
                    qemu.version,
                    qemu.program.display()
                ));
                return Ok(qemu);
            }
        },
        QemuChoice::Suite => return private_qemu(cache, &host_codename()?, freshness),
        QemuChoice::Backports => return private_qemu(cache, &format!("{}-backports", host_codename()?), freshness),
        QemuChoice::System => SYSTEM_PROGRAM.to_string(),
        QemuChoice::Program(p) => p.display().to_string(),
    };
    let program = find_in_path(&wanted).ok_or_else(|| LabError::MissingTool {
        tool: wanted,
        hint: format!(
            "install it, or let the lab unpack Debian's QEMU into its cache without installing anything \
             (`--qemu suite` or `--qemu backports`, or {QEMU_ENV}=suite)"
        ),
    })?;
    system_qemu(program)
}

fn system_qemu(program: PathBuf) -> Result<Qemu> {
    let version = version_of(&program, &[])?;
    Ok(Qemu { program, data_dirs: Vec::new(), library_dirs: Vec::new(), version })
}

fn version_of(program: &Path, library_dirs: &[PathBuf]) -> Result<QemuVersion> {
    let mut cmd = Command::new(program);
    cmd.arg("--version").envs(library_env(library_dirs));
    let out = run_checked(
        &mut cmd,
        "the QEMU program does not start: for an unpacked QEMU, delete its directory in the cache \
         and run `p2pdma lab fetch --qemu ...` again (it brings the libraries this machine lacks)",
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    QemuVersion::parse(&text).ok_or_else(|| LabError::CommandFailed {
        command: format!("{} --version", program.display()),
        detail: format!("no QEMU version in {:?}", text.lines().next().unwrap_or("")),
        hint: "name a qemu-system-x86_64 program".into(),
    })
}

fn library_env(library_dirs: &[PathBuf]) -> Option<(OsString, OsString)> {
    let joined = std::env::join_paths(library_dirs).ok().filter(|p| !p.is_empty())?;
    Some(("LD_LIBRARY_PATH".into(), joined))
}

/// The host's Debian codename (`VERSION_CODENAME` in os-release), whose suite (and its
/// backports) are built against the libraries the host has.
pub(crate) fn host_codename() -> Result<String> {
    let text = fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|v| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| LabError::MissingTool {
            tool: "Debian's QEMU".into(),
            hint: "/etc/os-release names no Debian release (VERSION_CODENAME): install qemu-system-x86_64 \
                   and use `--qemu system` or a program path"
                .into(),
        })
}

/// Debian `suite`'s QEMU, with the libraries this machine lacks, unpacked into
/// `<cache>/qemu/<suite>/<version>/` and kept only if it starts.
fn private_qemu(cache: &Path, suite: &str, freshness: Freshness) -> Result<Qemu> {
    let what = Unpack { kind: "qemu", suite, packages: QEMU_PACKAGES, with_missing_dependencies: true };
    unpacked_in_cache(cache, &what, freshness, unpacked)
}

/// An unpacked QEMU: its own firmware first (BIOS, and the NICs' option ROMs from its
/// ipxe-qemu), then the machine's; its own libraries before the machine's.
fn unpacked(dir: &Path) -> Result<Qemu> {
    let program = dir.join("usr/bin").join(SYSTEM_PROGRAM);
    let library_dirs: Vec<PathBuf> = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib", "lib"]
        .iter()
        .map(|sub| dir.join(sub))
        .filter(|d| d.is_dir())
        .collect();
    let version = version_of(&program, &library_dirs)?;
    // Debian builds QEMU with this firmware path; `-L` replaces it, so every part is named.
    let firmware = ["usr/share/qemu", "usr/share/seabios", "usr/lib/ipxe/qemu"];
    let data_dirs = firmware
        .iter()
        .map(|sub| dir.join(sub))
        .chain(firmware.iter().map(|sub| Path::new("/").join(sub)))
        .filter(|d| d.is_dir())
        .collect();
    Ok(Qemu { program, data_dirs, library_dirs, version })
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
        assert_eq!("auto".parse::<QemuChoice>().unwrap(), QemuChoice::Auto);
        assert_eq!(QemuChoice::default(), QemuChoice::Auto);
        assert_eq!("system".parse::<QemuChoice>().unwrap(), QemuChoice::System);
        assert_eq!("suite".parse::<QemuChoice>().unwrap(), QemuChoice::Suite);
        assert_eq!("backports".parse::<QemuChoice>().unwrap(), QemuChoice::Backports);
        assert_eq!(
            "/opt/qemu/bin/qemu-system-x86_64".parse::<QemuChoice>().unwrap(),
            QemuChoice::Program("/opt/qemu/bin/qemu-system-x86_64".into())
        );
        assert!("".parse::<QemuChoice>().is_err());
    }
}
