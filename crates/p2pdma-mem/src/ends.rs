//! What a copy's source or destination is, measured from stat, statx and sysfs: size, the
//! block size direct I/O needs, where its bytes live, the block device under it, and who
//! else uses it (mounts, holders). Reads files under caller-given roots, so fixtures work.

use std::fs;
use std::path::{Path, PathBuf};

use p2pdma_core::multipath::{self, pci_above};
use p2pdma_core::sysfs::pci_device_dir;
use p2pdma_core::transfer::{End, EndKind};
use p2pdma_core::Bdf;
use rustix::fs::{AtFlags, FileType, StatxFlags, CWD};
use rustix::io::Errno;

use crate::{IoCause, MemError};

/// One end of a copy, measured.
#[derive(Debug, Clone)]
pub struct Measured {
    pub end: End,
    /// The block device the data is on (`nvme0n1`: the disk itself, the disk of a partition,
    /// or the disk under a file's file system), to find its PCI device; None for file
    /// systems without one (tmpfs, overlay).
    pub disk: Option<String>,
    /// The PCI device above that disk (the nearest PCI address in its sysfs path) and that
    /// device's NUMA node: read here, so that a copy needs no topology to know them.
    pub pci: Option<Bdf>,
    pub numa_node: Option<i32>,
    /// The sysfs directories of the device itself and of the block devices sharing its
    /// storage (its partitions, or its disk), for [`in_use`]; empty for files.
    related: Vec<PathBuf>,
    /// False for a destination file that does not exist yet.
    pub exists: bool,
}

/// Measures `path` (`sys` is the sysfs root). A missing path is accepted only as a
/// destination file to be created (`may_create`).
pub fn measure(path: &Path, sys: &Path, may_create: bool) -> Result<Measured, MemError> {
    let unusable = |msg: String| MemError::Unusable { path: path.into(), msg };
    let stat = match rustix::fs::stat(path) {
        Ok(s) => s,
        Err(Errno::NOENT) if may_create => return measure_new_file(path, sys),
        Err(e) => return Err(unusable(IoCause(e).to_string())),
    };
    let shown = path.display().to_string();
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::BlockDevice => {
            let rdev = stat.st_rdev;
            let dev = format!("{}:{}", rustix::fs::major(rdev), rustix::fs::minor(rdev));
            let dir = fs::canonicalize(sys.join("dev/block").join(&dev))
                .map_err(|e| unusable(format!("block device {dev} has no sysfs entry: {e}")))?;
            let is_partition = dir.join("partition").exists();
            let disk_dir =
                if is_partition { dir.parent().map(Path::to_path_buf).unwrap_or_default() } else { dir.clone() };
            let sectors = read_u64(&dir.join("size")).ok_or_else(|| unusable("unreadable sysfs size".into()))?;
            let start = if is_partition { read_u64(&dir.join("start")).unwrap_or(0) } else { 0 };
            let block_size =
                logical_block_size(&disk_dir).ok_or_else(|| unusable("unreadable logical block size".into()))?;
            let mut related = vec![dir.clone()];
            if is_partition {
                related.push(disk_dir.clone());
            } else {
                related.extend(partitions(&dir));
            }
            let (disk, pci, numa_node) = placement(sys, Some(&disk_dir));
            Ok(Measured {
                end: End {
                    path: shown,
                    kind: EndKind::BlockDevice,
                    size: sectors * 512,
                    block_size,
                    extent_owner: format!("disk {}", read_trim(&disk_dir.join("dev")).unwrap_or(dev)),
                    extent_base: start * 512,
                },
                disk,
                pci,
                numa_node,
                related,
                exists: true,
            })
        }
        FileType::RegularFile => {
            let (disk_dir, fallback) = disk_of(sys, stat.st_dev);
            let block_size = dio_alignment(path)?.or(fallback).unwrap_or(512);
            let (disk, pci, numa_node) = placement(sys, disk_dir.as_deref());
            Ok(Measured {
                end: End {
                    path: shown,
                    kind: EndKind::File,
                    size: stat.st_size as u64,
                    block_size,
                    extent_owner: format!(
                        "file {}:{}:{}",
                        rustix::fs::major(stat.st_dev),
                        rustix::fs::minor(stat.st_dev),
                        stat.st_ino
                    ),
                    extent_base: 0,
                },
                disk,
                pci,
                numa_node,
                related: Vec::new(),
                exists: true,
            })
        }
        other => {
            let kind = match other {
                FileType::Directory => "a directory",
                FileType::CharacterDevice => "a character device",
                FileType::Fifo => "a pipe",
                FileType::Socket => "a socket",
                _ => "not a regular file",
            };
            Err(unusable(format!("is {kind}, not a block device or a regular file")))
        }
    }
}

fn measure_new_file(path: &Path, sys: &Path) -> Result<Measured, MemError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let stat = rustix::fs::stat(parent).map_err(|e| MemError::Unusable {
        path: path.into(),
        msg: format!("cannot create it: {}: {}", parent.display(), IoCause(e)),
    })?;
    // A mistyped device (`/dev/nvme9n1`) must not become a regular file in the device file
    // system (memory, not a disk; the copy would "succeed"). /dev/shm is another mount.
    if rustix::fs::stat("/dev").is_ok_and(|dev| dev.st_dev == stat.st_dev) {
        return Err(MemError::Unusable {
            path: path.into(),
            msg: format!(
                "no such device (a new file there would be a regular file in {}, the device file system, not on a disk): check the device name",
                parent.display()
            ),
        });
    }
    let (disk_dir, block_size) = disk_of(sys, stat.st_dev);
    let (disk, pci, numa_node) = placement(sys, disk_dir.as_deref());
    Ok(Measured {
        end: End {
            path: path.display().to_string(),
            kind: EndKind::File,
            size: 0,
            block_size: block_size.unwrap_or(512),
            extent_owner: format!("new file {}", path.display()),
            extent_base: 0,
        },
        disk,
        pci,
        numa_node,
        related: Vec::new(),
        exists: false,
    })
}

/// The disk holding a file system (through its partition) and that disk's logical block size.
fn disk_of(sys: &Path, st_dev: u64) -> (Option<PathBuf>, Option<u32>) {
    let dev = format!("{}:{}", rustix::fs::major(st_dev), rustix::fs::minor(st_dev));
    let Ok(dir) = fs::canonicalize(sys.join("dev/block").join(dev)) else { return (None, None) };
    let disk = if dir.join("partition").exists() { dir.parent().map(Path::to_path_buf) } else { Some(dir) };
    let bs = disk.as_deref().and_then(logical_block_size);
    (disk, bs)
}

/// The file offset alignment O_DIRECT needs on this file (statx DIOALIGN, Linux 6.1+);
/// None when the kernel does not say. A file system that says 0 cannot do direct I/O.
fn dio_alignment(path: &Path) -> Result<Option<u32>, MemError> {
    let Ok(stx) = rustix::fs::statx(CWD, path, AtFlags::empty(), StatxFlags::DIOALIGN) else { return Ok(None) };
    if !StatxFlags::from_bits_retain(stx.stx_mask).contains(StatxFlags::DIOALIGN) {
        return Ok(None);
    }
    match stx.stx_dio_offset_align {
        0 => Err(MemError::Unusable {
            path: path.into(),
            msg: "its file system does not support direct I/O (O_DIRECT), which copies need".into(),
        }),
        n => Ok(Some(n)),
    }
}

/// Where a disk sits: its name, its PCI device and that device's NUMA node, each looked up
/// once (a multipath head's PCI device costs sysfs reads).
fn placement(sys: &Path, disk_dir: Option<&Path>) -> (Option<String>, Option<Bdf>, Option<i32>) {
    let Some(disk_dir) = disk_dir else { return (None, None, None) };
    let pci = pci_of_disk(sys, disk_dir);
    (file_name(disk_dir), pci, pci.and_then(|b| numa_node(sys, b)))
}

/// The PCI device a block device hangs from: the last PCI address in its (canonical) sysfs
/// path, `.../0000:03:00.0/nvme/nvme0/nvme0n1` → `0000:03:00.0`; for an NVMe multipath
/// head, the one PCI device all its paths are on; None for virtual disks (and heads whose
/// paths are on several devices: the plan judges each path through the topology).
fn pci_of_disk(sys: &Path, disk_dir: &Path) -> Option<Bdf> {
    pci_above(disk_dir).or_else(|| {
        let paths = multipath::read_paths(sys, &file_name(disk_dir)?);
        multipath::shared_pci(&paths)
    })
}

/// A PCI device's NUMA node (None for -1: no node, or a machine without NUMA).
fn numa_node(sys: &Path, bdf: Bdf) -> Option<i32> {
    read_trim(&pci_device_dir(sys, bdf).join("numa_node"))?.parse().ok().filter(|&n: &i32| n >= 0)
}

/// Whether any PCI device here has P2P memory (`p2pmem/`): when none has, a copy goes
/// through host memory and needs no topology to say so.
pub fn any_p2p_provider(sys: &Path) -> bool {
    let Ok(entries) = fs::read_dir(sys.join("bus/pci/devices")) else { return false };
    entries.flatten().any(|e| e.path().join("p2pmem").exists())
}

fn logical_block_size(disk_dir: &Path) -> Option<u32> {
    read_u64(&disk_dir.join("queue/logical_block_size")).and_then(|n| u32::try_from(n).ok())
}

/// A disk's partitions: the entries of its sysfs directory named after it (the kernel names a
/// partition `<disk><n>` or `<disk>p<n>`: `add_partition` in block/partitions/core.c) that
/// have a `partition` file. The name comes first: a disk's directory has some 35 other
/// entries, and a lookup of each one's `partition` cost the lab's emulated CPU about 1 ms
/// per copy end.
fn partitions(disk_dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let Ok(entries) = fs::read_dir(disk_dir) else { return Vec::new() };
    let disk = disk_dir.file_name().map(OsStrExt::as_bytes).unwrap_or_default();
    let named_after_disk = |e: &fs::DirEntry| {
        let name = e.file_name();
        name.as_bytes().len() > disk.len() && name.as_bytes().starts_with(disk)
    };
    let mut parts: Vec<PathBuf> =
        entries.flatten().filter(named_after_disk).map(|e| e.path()).filter(|p| p.join("partition").exists()).collect();
    parts.sort();
    parts
}

fn read_trim(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn read_u64(path: &Path) -> Option<u64> {
    read_trim(path)?.parse().ok()
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name().map(|n| n.to_string_lossy().into_owned())
}

/// Why writing to `m` would hurt someone: mounts (from `mountinfo`, e.g.
/// `/proc/self/mountinfo`) and holders (device mapper, md, bcache) of the device, of its
/// partitions, or of its disk. Empty when nobody is seen; an exclusive open is still the
/// final word (it also catches btrfs, swap and other exclusive users).
pub fn in_use(m: &Measured, mountinfo: &Path) -> Vec<String> {
    let mounts = fs::read_to_string(mountinfo).unwrap_or_default();
    let mut reasons = Vec::new();
    for dir in &m.related {
        let name = file_name(dir).unwrap_or_default();
        if let Some(dev) = read_trim(&dir.join("dev")) {
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

/// [`in_use`], and swap: the block devices listed in `swaps` (`/proc/swaps`) that are the
/// device, one of its partitions or its disk. For callers that have no exclusive open to
/// ask (`nvmet export`: the kernel's target opens the device without one).
pub fn in_use_or_swap(m: &Measured, mountinfo: &Path, swaps: &Path) -> Vec<String> {
    let mut reasons = in_use(m, mountinfo);
    let swaps = fs::read_to_string(swaps).unwrap_or_default();
    for line in swaps.lines().skip(1) {
        let Some(file) = line.split_whitespace().next() else { continue };
        let Ok(st) = rustix::fs::stat(file) else { continue };
        if FileType::from_raw_mode(st.st_mode) != FileType::BlockDevice {
            continue;
        }
        let dev = format!("{}:{}", rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
        for dir in &m.related {
            if read_trim(&dir.join("dev")).as_deref() == Some(dev.as_str()) {
                reasons.push(format!("{} is swap ({file})", file_name(dir).unwrap_or_default()));
            }
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_measured_and_new_files_accepted_as_destinations() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("data");
        fs::write(&f, vec![1u8; 8192]).unwrap();
        let m = measure(&f, Path::new("/sys"), false).unwrap();
        assert_eq!((m.end.kind, m.end.size), (EndKind::File, 8192));
        assert!(m.end.block_size.is_power_of_two(), "{}", m.end.block_size);
        let new = dir.path().join("new");
        assert!(measure(&new, Path::new("/sys"), false).is_err());
        let n = measure(&new, Path::new("/sys"), true).unwrap();
        assert!(!n.exists && n.end.size == 0);
        let e = measure(dir.path(), Path::new("/sys"), false).unwrap_err();
        assert!(e.to_string().ends_with(": is a directory, not a block device or a regular file"), "{e}");
        let e = measure(&dir.path().join("no/such"), Path::new("/sys"), true).unwrap_err();
        assert!(e.to_string().contains("no/such: cannot create it: "), "{e}");
        assert!(!e.to_string().contains("offset"), "{e}");
    }

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
        let m = Measured {
            end: End {
                path: "/dev/nvme0n1".into(),
                kind: EndKind::BlockDevice,
                size: 0,
                block_size: 512,
                extent_owner: "disk 259:0".into(),
                extent_base: 0,
            },
            disk: Some("nvme0n1".into()),
            pci: None,
            numa_node: None,
            related: std::iter::once(disk.clone()).chain(partitions(&disk)).collect(),
            exists: true,
        };
        assert_eq!(in_use(&m, &mountinfo), ["nvme0n1 is held by dm-0", "nvme0n1p1 is mounted at /data"]);
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
