//! Single procfs facts, for callers that need no whole machine.

use std::path::Path;

/// The machine's host name (`<proc>/sys/kernel/hostname`), None when unreadable or empty.
pub fn hostname(proc: &Path) -> Option<String> {
    let text = std::fs::read_to_string(proc.join("sys/kernel/hostname")).ok()?;
    Some(text.trim().to_string()).filter(|h| !h.is_empty())
}

/// Whether `<proc>/mounts` lists a file system of type `fstype` mounted at `mount_point`.
pub fn mounted(proc: &Path, mount_point: &str, fstype: &str) -> bool {
    let Ok(mounts) = std::fs::read_to_string(proc.join("mounts")) else { return false };
    let kind = format!(" {fstype} ");
    mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(mount_point) && l.contains(&kind))
}

/// Whether the kernel knows file system `name` already (`<proc>/filesystems`): built in or
/// loaded.
pub fn filesystem_known(proc: &Path, name: &str) -> bool {
    std::fs::read_to_string(proc.join("filesystems")).is_ok_and(|f| f.contains(name))
}
