//! NVMe native multipath (`CONFIG_NVME_MULTIPATH=y`, `nvme_core.multipath=Y`, Debian's
//! default): every namespace gets a visible *head* disk `nvme<subsys>n<head>`, a child of the
//! virtual `nvme-subsystem` device (drivers/nvme/host/multipath.c, `nvme_mpath_alloc_disk`),
//! above one hidden *path* disk per controller, `nvme<subsys>c<ctrl>n<head>` with
//! `GENHD_FL_HIDDEN` and no `/dev` node (drivers/nvme/host/core.c, `nvme_alloc_ns`).
//! I/O to the head goes down any live path, so the head is where data moves, and a P2P
//! verdict for it must hold for every path's controller.
//!
//! The names and the rules; reading a head's paths out of sysfs is p2pdma-host's
//! `multipath`.

use crate::kernel;
use crate::model::{Machine, MultipathPath};
use crate::release::KernelRelease;

/// What an NVMe block device name says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NvmeDiskName {
    /// `nvme<a>n<b>`: a multipath head (`a` the subsystem) or, without multipath, a
    /// controller's namespace (`a` the controller).
    Namespace { instance: u32, ns: u32 },
    /// `nvme<subsys>c<ctrl>n<head>`: a multipath path disk.
    Path { subsys: u32, ctrl: u32, ns: u32 },
}

/// Parses `nvme0n1` and `nvme0c1n1`; partitions (`nvme0n1p1`) and anything else are None.
pub fn parse_disk_name(name: &str) -> Option<NvmeDiskName> {
    let rest = name.strip_prefix("nvme")?;
    let number = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let (first, ns) = rest.split_once('n')?;
    let ns = number(ns)?;
    match first.split_once('c') {
        Some((subsys, ctrl)) => Some(NvmeDiskName::Path { subsys: number(subsys)?, ctrl: number(ctrl)?, ns }),
        None => Some(NvmeDiskName::Namespace { instance: number(first)?, ns }),
    }
}

/// Why P2P through the head `head` cannot work on the kernel judged, None when it can (or
/// the release is unknown).
pub fn head_refusal(machine: &Machine, head: &str, paths: &[MultipathPath]) -> Option<String> {
    let release: KernelRelease = kernel::release(machine)?;
    if release.at_least(kernel::MULTIPATH_P2PDMA_SINCE) {
        return None;
    }
    let names: Vec<&str> = paths.iter().map(|p| p.disk.as_str()).collect();
    Some(format!(
        "{head} is an NVMe multipath head (paths {}): kernel {release} rejects P2P buffers through multipath heads \
         (their queues got BLK_FEAT_PCI_P2PDMA in {}.{}, fb0eeeed91f3); boot with nvme_core.multipath=N, \
         or a kernel {}.{} or newer",
        names.join(", "),
        kernel::MULTIPATH_P2PDMA_SINCE.0,
        kernel::MULTIPATH_P2PDMA_SINCE.1,
        kernel::MULTIPATH_P2PDMA_SINCE.0,
        kernel::MULTIPATH_P2PDMA_SINCE.1
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_kernels_rule() {
        assert_eq!(parse_disk_name("nvme0n1"), Some(NvmeDiskName::Namespace { instance: 0, ns: 1 }));
        assert_eq!(parse_disk_name("nvme1c12n3"), Some(NvmeDiskName::Path { subsys: 1, ctrl: 12, ns: 3 }));
        for other in ["nvme0n1p1", "nvme0", "nvme", "nvmen1", "nvme0c1", "nvmeXn1", "sda", "nvme0c0n1p2"] {
            assert_eq!(parse_disk_name(other), None, "{other}");
        }
    }
}
