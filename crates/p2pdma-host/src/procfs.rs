//! Single procfs facts, for callers that need no whole machine.

use std::path::Path;

/// The machine's host name (`<proc>/sys/kernel/hostname`), None when unreadable or empty.
pub fn hostname(proc: &Path) -> Option<String> {
    let text = std::fs::read_to_string(proc.join("sys/kernel/hostname")).ok()?;
    Some(text.trim().to_string()).filter(|h| !h.is_empty())
}
