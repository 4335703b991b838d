//! Block devices as sysfs and procfs show them, for measuring a copy's ends
//! (`p2pdma_mem::ends` does the stat and statx): a device number's sysfs directory, sizes,
//! partitions, the disk's PCI device and NUMA node, and who uses it (mounts, holders,
//! swap). Every function takes the directories or roots it reads, so fixtures work.

use std::fs;
use std::path::{Path, PathBuf};

use p2pdma_core::{model, Bdf};

use crate::bounded::{self, Bound};
use crate::multipath::{pci_above, read_paths};
use crate::sysfs::pci_device_dir;

/// The sysfs directory of block device `major:minor` (`<sys>/dev/block/259:0`, canonical).
pub fn dev_dir(sys: &Path, major: u32, minor: u32) -> std::io::Result<PathBuf> {
    fs::canonicalize(sys.join("dev/block").join(format!("{major}:{minor}")))
}

/// Whether a block device's directory is a partition's (it has a `partition` file).
pub fn is_partition(dir: &Path) -> bool {
    dir.join("partition").exists()
}

/// The size in 512-byte sectors (`size`).
pub fn sectors(dir: &Path) -> Option<u64> {
    read_u64(&dir.join("size"))
}

/// A partition's first sector on its disk (`start`).
pub fn partition_start(dir: &Path) -> Option<u64> {
    read_u64(&dir.join("start"))
}

/// The device number as the kernel writes it (`dev`: `259:1`).
pub fn dev_number(dir: &Path) -> Option<String> {
    read_trim(&dir.join("dev"))
}

/// A disk's logical block size (`queue/logical_block_size`).
pub fn logical_block_size(disk_dir: &Path) -> Option<u32> {
    read_u64(&disk_dir.join("queue/logical_block_size")).and_then(|n| u32::try_from(n).ok())
}

/// The disk holding a file system on `major:minor` (through its partition) and that disk's
/// logical block size.
pub fn disk_of(sys: &Path, major: u32, minor: u32) -> (Option<PathBuf>, Option<u32>) {
    let Ok(dir) = dev_dir(sys, major, minor) else { return (None, None) };
    let disk = if is_partition(&dir) { dir.parent().map(Path::to_path_buf) } else { Some(dir) };
    let bs = disk.as_deref().and_then(logical_block_size);
    (disk, bs)
}

/// Where a disk sits, each part looked up once (a multipath head's PCI device costs sysfs
/// reads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// The disk's name (`nvme0n1`).
    pub disk: Option<String>,
    pub pci: Option<Bdf>,
    /// The PCI device's NUMA node (None for -1: no node, or a machine without NUMA).
    pub numa_node: Option<i32>,
}

/// The placement of the disk whose sysfs directory is `disk_dir` (nothing without one).
pub fn placement(sys: &Path, disk_dir: Option<&Path>) -> Placement {
    let Some(disk_dir) = disk_dir else { return Placement::default() };
    let pci = pci_of_disk(sys, disk_dir);
    Placement { disk: file_name(disk_dir), pci, numa_node: pci.and_then(|b| numa_node(sys, b)) }
}

/// The PCI device a block device hangs from: the last PCI address in its (canonical) sysfs
/// path, `.../0000:03:00.0/nvme/nvme0/nvme0n1` → `0000:03:00.0`; for an NVMe multipath
/// head, the one PCI device all its paths are on; None for virtual disks (and heads whose
/// paths are on several devices: the plan judges each path through the topology).
pub fn pci_of_disk(sys: &Path, disk_dir: &Path) -> Option<Bdf> {
    pci_above(disk_dir).or_else(|| {
        let paths = read_paths(sys, &file_name(disk_dir)?);
        model::shared_pci(&paths)
    })
}

/// A PCI device's NUMA node (None for -1: no node, or a machine without NUMA).
pub fn numa_node(sys: &Path, bdf: Bdf) -> Option<i32> {
    read_trim(&pci_device_dir(sys, bdf).join("numa_node"))?.parse().ok().filter(|&n: &i32| n >= 0)
}

/// Whether any PCI device here has P2P memory (`p2pmem/`): when none has, a copy goes
/// through host memory and needs no topology to say so.
pub fn any_p2p_provider(sys: &Path) -> bool {
    let Ok(entries) = fs::read_dir(sys.join("bus/pci/devices")) else { return false };
    entries.flatten().any(|e| e.path().join("p2pmem").exists())
}

/// A disk's partitions: the entries of its sysfs directory named after it (the kernel names a
/// partition `<disk><n>` or `<disk>p<n>`: `add_partition` in block/partitions/core.c) that
/// have a `partition` file. The name comes first: a disk's directory has some 35 other
/// entries, and a lookup of each one's `partition` cost the lab's emulated CPU about 1 ms
/// per copy end.
pub fn partitions(disk_dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(entries) = fs::read_dir(disk_dir) else { return Vec::new() };
    let disk = disk_dir.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
    let named_after_disk = |e: &fs::DirEntry| {
        let name = e.file_name();
        name.as_bytes().len() > disk.len() && name.as_bytes().starts_with(disk)
    };
    let mut parts: Vec<PathBuf> =
        entries.flatten().filter(named_after_disk).map(|e| e.path()).filter(|p| is_partition(p)).collect();
    parts.sort();
    parts
}

/// Who uses the block devices whose sysfs directories are `dirs`: mounts (from
/// `mountinfo`, e.g. `/proc/self/mountinfo`) and holders (device mapper, md, bcache).
pub fn users(dirs: &[PathBuf], mountinfo: &Path) -> Vec<String> {
    let mounts = bounded::read_string(mountinfo, Bound::PROC_TABLE).unwrap_or_default();
    let mut reasons = Vec::new();
    for dir in dirs {
        let name = file_name(dir).unwrap_or_default();
        if let Some(dev) = dev_number(dir) {
            for line in mounts.lines() {
                let fields: Vec<&str> = line.split(' ').collect();
                if fields.get(2) == Some(&dev.as_str()) {
                    reasons.push(format!("{name} is mounted at {}", fields.get(4).unwrap_or(&"?")));
                }
            }
        }
        if let Ok(holders) = fs::read_dir(dir.join("holders")) {
            for h in holders.flatten() {
                reasons.push(format!("{name} is held by {}", h.file_name().to_string_lossy()));
            }
        }
    }
    reasons
}

/// The files `swaps` (`/proc/swaps`) lists, in its order (the caller tells block devices
/// from files).
pub fn swap_files(swaps: &Path) -> Vec<String> {
    let text = bounded::read_string(swaps, Bound::PROC_TABLE).unwrap_or_default();
    text.lines().skip(1).filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

/// What a path a person names is (following symlinks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    Missing,
    /// It exists but cannot be examined (the OS's words).
    Unexaminable(String),
    /// A block device, with its kernel name (`nvme0n1`) from `<sys>/dev/block/<major>:<minor>`
    /// (so `/dev/disk/by-id/...` works too), else the path's own file name.
    Block(Option<String>),
    /// Anything else: `regular file`, `directory`, `character device`, `FIFO`, `socket`,
    /// `special file`.
    Other(&'static str),
}

/// What `path` is, and for a block device its kernel name.
pub fn inspect(path: &Path, sys: &Path) -> PathKind {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    let m = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return PathKind::Missing,
        Err(e) => return PathKind::Unexaminable(e.to_string()),
    };
    let t = m.file_type();
    if t.is_block_device() {
        let dev = m.rdev();
        let link = sys.join(format!("dev/block/{}:{}", rustix::fs::major(dev), rustix::fs::minor(dev)));
        let name = fs::read_link(&link)
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
            .or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()));
        return PathKind::Block(name);
    }
    PathKind::Other(if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    })
}

/// The last component of a path, as text.
pub fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

fn read_trim(path: &Path) -> Option<String> {
    bounded::attribute(path)
}

fn read_u64(path: &Path) -> Option<u64> {
    read_trim(path)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sysfs fixture: disk 259:0 with partition 259:1 mounted and 259:0 held by dm-0.
    #[test]
    fn mounts_and_holders_of_partitions_count() {
        let root = tempfile::tempdir().unwrap();
        let disk = root.path().join("devices/pci0000:00/0000:00:10.0/nvme/nvme0/nvme0n1");
        let part = disk.join("nvme0n1p1");
        fs::create_dir_all(disk.join("holders/dm-0")).unwrap();
        fs::create_dir_all(part.join("holders")).unwrap();
        fs::write(disk.join("dev"), "259:0\n").unwrap();
        fs::write(part.join("dev"), "259:1\n").unwrap();
        fs::write(part.join("partition"), "1\n").unwrap();
        let mountinfo = root.path().join("mountinfo");
        fs::write(&mountinfo, "22 1 259:1 / /data rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw\n").unwrap();
        let related: Vec<PathBuf> = std::iter::once(disk.clone()).chain(partitions(&disk)).collect();
        assert_eq!(users(&related, &mountinfo), ["nvme0n1 is held by dm-0", "nvme0n1p1 is mounted at /data"]);
    }

    #[test]
    fn partitions_are_the_entries_named_after_the_disk_with_a_partition_file() {
        let root = tempfile::tempdir().unwrap();
        for (disk, parts) in [("sda", &["sda1", "sda2"][..]), ("nvme0n1", &["nvme0n1p1"][..])] {
            let dir = root.path().join(disk);
            for entry in ["queue", "holders", "power"] {
                fs::create_dir_all(dir.join(entry)).unwrap();
            }
            for part in parts {
                fs::create_dir_all(dir.join(part)).unwrap();
                fs::write(dir.join(part).join("partition"), "1\n").unwrap();
            }
            fs::create_dir_all(dir.join(format!("{disk}9"))).unwrap(); // no `partition` file
            let found: Vec<PathBuf> = partitions(&dir);
            assert_eq!(found, parts.iter().map(|p| dir.join(p)).collect::<Vec<_>>(), "{disk}");
        }
    }

    /// A sysfs fixture: a disk under PCI device 0000:81:00.0 on NUMA node 1, and a virtual
    /// disk; the copy learns device and node without a topology.
    #[test]
    fn the_pci_device_and_numa_node_of_a_disk_come_from_sysfs() {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path();
        let pci = sys.join("devices/pci0000:80/0000:80:01.0/0000:81:00.0");
        let disk = pci.join("nvme/nvme0/nvme0n1");
        fs::create_dir_all(disk.join("queue")).unwrap();
        fs::write(disk.join("size"), "2048\n").unwrap();
        fs::write(disk.join("dev"), "259:0\n").unwrap();
        fs::write(disk.join("queue/logical_block_size"), "512\n").unwrap();
        fs::write(pci.join("numa_node"), "1\n").unwrap();
        fs::create_dir_all(sys.join("bus/pci/devices")).unwrap();
        std::os::unix::fs::symlink(&pci, sys.join("bus/pci/devices/0000:81:00.0")).unwrap();
        let canonical = fs::canonicalize(&disk).unwrap();
        assert_eq!(pci_above(&canonical), Some("0000:81:00.0".parse().unwrap()));
        assert_eq!(numa_node(sys, "0000:81:00.0".parse().unwrap()), Some(1));
        fs::write(pci.join("numa_node"), "-1\n").unwrap();
        assert_eq!(numa_node(sys, "0000:81:00.0".parse().unwrap()), None);
        assert_eq!(pci_above(Path::new("/sys/devices/virtual/block/loop0")), None);
        assert!(!any_p2p_provider(sys));
        fs::create_dir_all(pci.join("p2pmem")).unwrap();
        assert!(any_p2p_provider(sys));
    }

    /// An NVMe multipath head sits under the virtual nvme-subsystem device: its PCI device
    /// is its path's controller's (from `multipath/`, else by the path's name).
    #[test]
    fn a_multipath_heads_pci_device_is_its_paths() {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path();
        let ctrl = sys.join("devices/pci0000:00/0000:00:10.0/0000:03:00.0/nvme/nvme0");
        let head = sys.join("devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1");
        fs::create_dir_all(ctrl.join("nvme0c0n1")).unwrap();
        fs::create_dir_all(&head).unwrap();
        fs::create_dir_all(sys.join("class/block")).unwrap();
        fs::create_dir_all(sys.join("class/nvme")).unwrap();
        std::os::unix::fs::symlink(&head, sys.join("class/block/nvme0n1")).unwrap();
        std::os::unix::fs::symlink(&ctrl, sys.join("class/nvme/nvme0")).unwrap();
        let a = Some("0000:03:00.0".parse().unwrap());
        assert_eq!(pci_above(&head), None);
        assert_eq!(pci_of_disk(sys, &head), a, "by the name rule");
        fs::create_dir_all(head.join("multipath")).unwrap();
        std::os::unix::fs::symlink(ctrl.join("nvme0c0n1"), head.join("multipath/nvme0c0n1")).unwrap();
        fs::remove_file(sys.join("class/nvme/nvme0")).unwrap();
        assert_eq!(pci_of_disk(sys, &head), a, "by multipath/");
    }
}
