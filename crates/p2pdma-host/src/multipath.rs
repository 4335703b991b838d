//! NVMe multipath heads' paths as sysfs shows them (the names and the rules are
//! `p2pdma_core::multipath`). Since 6.15 (4dbd2b2ebe4c) the head lists its paths in
//! `/sys/block/<head>/multipath/`; before, the paths are found by the name rule under
//! `/sys/class/nvme/<ctrl>/`.

use std::fs;
use std::path::{Path, PathBuf};

use p2pdma_core::model::MultipathPath;
use p2pdma_core::multipath::{parse_disk_name, NvmeDiskName};
use p2pdma_core::Bdf;

/// The PCI device a sysfs directory hangs from: the last PCI address in its canonical path,
/// `.../0000:03:00.0/nvme/nvme0/nvme0c0n1` → `0000:03:00.0`; None for virtual devices.
pub fn pci_above(dir: &Path) -> Option<Bdf> {
    dir.ancestors().find_map(|d| d.file_name()?.to_str()?.parse::<Bdf>().ok())
}

/// One path of a head as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathDir {
    pub disk: String,
    /// The controller the path disk sits under (`nvme1`).
    pub controller: String,
    /// Its canonical sysfs directory.
    pub dir: PathBuf,
}

/// The paths of the block device `disk` (empty when it is no multipath head): from the
/// head's `multipath/` links, else by the name rule (`nvme<s>c<c>n<h>` under each
/// `/sys/class/nvme/nvme<c>/`).
pub fn head_paths(sys: &Path, disk: &str) -> Vec<PathDir> {
    let path_dir = |dir: PathBuf| -> Option<PathDir> {
        let dir = fs::canonicalize(dir).ok()?;
        let disk = dir.file_name()?.to_str()?.to_string();
        let controller = dir.parent()?.file_name()?.to_str()?.to_string();
        Some(PathDir { disk, controller, dir })
    };
    let mut paths: Vec<PathDir> = match fs::read_dir(sys.join("class/block").join(disk).join("multipath")) {
        Ok(entries) => entries.flatten().filter_map(|e| path_dir(e.path())).collect(),
        Err(_) => {
            let Some(NvmeDiskName::Namespace { instance, ns }) = parse_disk_name(disk) else { return Vec::new() };
            let Ok(ctrls) = fs::read_dir(sys.join("class/nvme")) else { return Vec::new() };
            ctrls
                .flatten()
                .filter_map(|c| {
                    let ctrl: u32 = c.file_name().to_str()?.strip_prefix("nvme")?.parse().ok()?;
                    let candidate = c.path().join(format!("nvme{instance}c{ctrl}n{ns}"));
                    candidate.is_dir().then(|| path_dir(candidate))?
                })
                .collect()
        }
    };
    paths.sort_by(|a, b| a.disk.cmp(&b.disk));
    paths
}

/// The paths of `disk` with their PCI devices (for the model).
pub fn read_paths(sys: &Path, disk: &str) -> Vec<MultipathPath> {
    head_paths(sys, disk)
        .into_iter()
        .map(|p| MultipathPath { pci: pci_above(&p.dir), disk: p.disk, controller: p.controller })
        .collect()
}

/// Whether `disk` is hidden (`<sys>/class/block/<disk>/hidden` reads 1): a multipath path.
pub fn is_hidden(sys: &Path, disk: &str) -> bool {
    crate::bounded::attribute(&sys.join("class/block").join(disk).join("hidden")).is_some_and(|s| s == "1")
}
