//! The one-screen outputs: `/proc/cmdline`, `uname -a`, `lscpu`, `numactl --hardware`, and
//! `GRUB_CMDLINE_LINUX[_DEFAULT]=` lines (the next boot's parameters, not proof of this one's).

use serde::Serialize;

use crate::import::sections::Format;
use crate::Error;

/// What one of those outputs says; fields it does not give stay None.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SysInfo {
    pub cmdline: Option<String>,
    pub kernel_release: Option<String>,
    pub arch: Option<String>,
    pub cpu_vendor: Option<String>,
    pub cpu_family: Option<u32>,
    pub cpu_model: Option<u32>,
    pub cpu_model_name: Option<String>,
    pub sockets: Option<u32>,
    pub numa_nodes: Option<u32>,
}

const ARCHES: &[&str] =
    &["x86_64", "aarch64", "ppc64le", "ppc64", "s390x", "riscv64", "i686", "i386", "armv7l", "loongarch64"];

/// Parses one section of `format` (one of the formats above).
pub fn parse(format: Format, text: &str) -> Result<SysInfo, Error> {
    let text = crate::import::bounded(text, format.as_str())?;
    let mut s = SysInfo::default();
    match format {
        Format::Cmdline => s.cmdline = Some(text.trim().to_string()),
        Format::Grub => {
            let value = text.split_once('=').map(|(_, v)| v.trim().trim_matches(['"', '\''])).unwrap_or("");
            s.cmdline = (!value.is_empty()).then(|| value.to_string());
        }
        Format::Uname => {
            let words: Vec<&str> = text.split_whitespace().collect();
            s.kernel_release = words.get(2).map(|r| r.to_string());
            s.arch = words.iter().rev().find(|w| ARCHES.contains(w)).map(|w| w.to_string());
        }
        Format::Lscpu => {
            for line in text.lines() {
                let Some((k, v)) = line.split_once(':') else { continue };
                let (k, v) = (k.trim(), v.trim());
                let num = || v.parse::<u32>().ok();
                match k {
                    "Architecture" => s.arch = Some(v.to_string()),
                    "Vendor ID" => s.cpu_vendor = Some(v.to_string()),
                    "CPU family" => s.cpu_family = num(),
                    "Model" => s.cpu_model = num(),
                    "Model name" => s.cpu_model_name = Some(v.to_string()),
                    "Socket(s)" => s.sockets = num(),
                    "NUMA node(s)" => s.numa_nodes = num(),
                    _ => {}
                }
            }
        }
        Format::Numactl => {
            // `available: 2 nodes (0-1)`
            s.numa_nodes = text
                .lines()
                .find_map(|l| l.trim().strip_prefix("available:"))
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok());
        }
        _ => return Err(Error::invalid(format.as_str(), "not a system information format")),
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lscpu_gives_vendor_family_model_sockets_and_nodes() {
        let s = parse(
            Format::Lscpu,
            "Architecture:             x86_64\nVendor ID:                AuthenticAMD\n  Model name:             AMD Ryzen Threadripper PRO 7965WX 24-Cores\n    CPU family:           25\n    Model:                24\n    Socket(s):            1\nNUMA:\n  NUMA node(s):           1\n  NUMA node0 CPU(s):      0-23",
        )
        .unwrap();
        assert_eq!(s.arch.as_deref(), Some("x86_64"));
        assert_eq!(s.cpu_vendor.as_deref(), Some("AuthenticAMD"));
        assert_eq!((s.cpu_family, s.cpu_model, s.sockets, s.numa_nodes), (Some(25), Some(24), Some(1), Some(1)));
    }

    #[test]
    fn uname_cmdline_grub_and_numactl() {
        let u = parse(
            Format::Uname,
            "Linux box 6.8.0-60-generic #63-Ubuntu SMP PREEMPT_DYNAMIC Fri May 2 x86_64 x86_64 x86_64 GNU/Linux",
        )
        .unwrap();
        assert_eq!((u.kernel_release.as_deref(), u.arch.as_deref()), (Some("6.8.0-60-generic"), Some("x86_64")));
        let g = parse(Format::Grub, "GRUB_CMDLINE_LINUX_DEFAULT=\"amd_iommu=off iommu=pt\"").unwrap();
        assert_eq!(g.cmdline.as_deref(), Some("amd_iommu=off iommu=pt"));
        let n = parse(Format::Numactl, "available: 2 nodes (0-1)\nnode 0 cpus: 0 1").unwrap();
        assert_eq!(n.numa_nodes, Some(2));
    }
}
