//! Single procfs facts, for callers that need no whole machine; each read bounded
//! (`bounded`).

use std::path::Path;

use crate::bounded::{self, Bound};

/// The machine's host name (`<proc>/sys/kernel/hostname`), None when unreadable or empty.
pub fn hostname(proc: &Path) -> Option<String> {
    bounded::attribute(&proc.join("sys/kernel/hostname")).filter(|h| !h.is_empty())
}

/// Whether `<proc>/mounts` lists a file system of type `fstype` mounted at `mount_point`.
pub fn mounted(proc: &Path, mount_point: &str, fstype: &str) -> bool {
    let Ok(mounts) = bounded::read_string(&proc.join("mounts"), Bound::PROC_TABLE) else { return false };
    let kind = format!(" {fstype} ");
    mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(mount_point) && l.contains(&kind))
}

/// Whether the kernel knows file system `name` already (`<proc>/filesystems`): built in or
/// loaded.
pub fn filesystem_known(proc: &Path, name: &str) -> bool {
    bounded::read_string(&proc.join("filesystems"), Bound::PROC_TABLE).is_ok_and(|f| f.contains(name))
}
