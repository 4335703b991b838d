//! What a copy's source or destination is, measured from stat and statx here and sysfs
//! through `p2pdma_host::block`: size, the block size direct I/O needs, where its bytes
//! live, the block device under it, and who else uses it (mounts, holders). Reads under
//! caller-given roots, so fixtures work.

use std::path::{Path, PathBuf};

use p2pdma_core::transfer::{End, EndKind};
use p2pdma_core::Bdf;
use p2pdma_host::block::{self, Placement};
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
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::BlockDevice => measure_block_device(path, sys, &stat),
        FileType::RegularFile => measure_file(path, sys, &stat),
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

/// A block device (a disk or a partition): its size and logical block size from sysfs,
/// where its bytes sit on the disk, and the devices sharing its storage.
fn measure_block_device(path: &Path, sys: &Path, stat: &rustix::fs::Stat) -> Result<Measured, MemError> {
    let unusable = |msg: String| MemError::Unusable { path: path.into(), msg };
    let shown = path.display().to_string();
    let (major, minor) = (rustix::fs::major(stat.st_rdev), rustix::fs::minor(stat.st_rdev));
    let dev = format!("{major}:{minor}");
    let dir = block::dev_dir(sys, major, minor)
        .map_err(|e| unusable(format!("block device {dev} has no sysfs entry: {e}")))?;
    let is_partition = block::is_partition(&dir);
    let disk_dir = if is_partition { dir.parent().map(Path::to_path_buf).unwrap_or_default() } else { dir.clone() };
    let sectors = block::sectors(&dir).ok_or_else(|| unusable("unreadable sysfs size".into()))?;
    let start = if is_partition { block::partition_start(&dir).unwrap_or(0) } else { 0 };
    let block_size =
        block::logical_block_size(&disk_dir).ok_or_else(|| unusable("unreadable logical block size".into()))?;
    let mut related = vec![dir.clone()];
    if is_partition {
        related.push(disk_dir.clone());
    } else {
        related.extend(block::partitions(&dir));
    }
    let Placement { disk, pci, numa_node } = block::placement(sys, Some(&disk_dir));
    Ok(Measured {
        end: End {
            path: shown,
            kind: EndKind::BlockDevice,
            size: sectors * 512,
            block_size,
            extent_owner: format!("disk {}", block::dev_number(&disk_dir).unwrap_or(dev)),
            extent_base: start * 512,
        },
        disk,
        pci,
        numa_node,
        related,
        exists: true,
    })
}

/// A regular file: its size, the alignment direct I/O needs, the disk under its file system.
fn measure_file(path: &Path, sys: &Path, stat: &rustix::fs::Stat) -> Result<Measured, MemError> {
    let shown = path.display().to_string();
    let (disk_dir, fallback) = disk_of(sys, stat.st_dev);
    let block_size = dio_alignment(path)?.or(fallback).unwrap_or(512);
    let Placement { disk, pci, numa_node } = block::placement(sys, disk_dir.as_deref());
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
    let Placement { disk, pci, numa_node } = block::placement(sys, disk_dir.as_deref());
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

/// The disk holding a file system on device `st_dev` and that disk's logical block size.
fn disk_of(sys: &Path, st_dev: u64) -> (Option<PathBuf>, Option<u32>) {
    block::disk_of(sys, rustix::fs::major(st_dev), rustix::fs::minor(st_dev))
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

/// Why writing to `m` would hurt someone: mounts (from `mountinfo`, e.g.
/// `/proc/self/mountinfo`) and holders (device mapper, md, bcache) of the device, of its
/// partitions, or of its disk. Empty when nobody is seen; an exclusive open is still the
/// final word (it also catches btrfs, swap and other exclusive users).
pub fn in_use(m: &Measured, mountinfo: &Path) -> Vec<String> {
    block::users(&m.related, mountinfo)
}

/// [`in_use`], and swap: the block devices listed in `swaps` (`/proc/swaps`) that are the
/// device, one of its partitions or its disk. For callers that have no exclusive open to
/// ask (`nvmet export`: the kernel's target opens the device without one).
pub fn in_use_or_swap(m: &Measured, mountinfo: &Path, swaps: &Path) -> Vec<String> {
    let mut reasons = in_use(m, mountinfo);
    for file in block::swap_files(swaps) {
        let Ok(st) = rustix::fs::stat(&file) else { continue };
        if FileType::from_raw_mode(st.st_mode) != FileType::BlockDevice {
            continue;
        }
        let dev = format!("{}:{}", rustix::fs::major(st.st_rdev), rustix::fs::minor(st.st_rdev));
        for dir in &m.related {
            if block::dev_number(dir).as_deref() == Some(dev.as_str()) {
                reasons.push(format!("{} is swap ({file})", block::file_name(dir).unwrap_or_default()));
            }
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

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
}
