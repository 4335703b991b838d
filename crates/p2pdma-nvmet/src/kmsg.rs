//! The kernel log through `/dev/kmsg`: one record per read, non-blocking. nvmet's configfs
//! handlers print (pr_err, pci_err) before the write returns, so the lines a step caused are
//! in the buffer when the step is done; reading right after each step attributes them.

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, SeekFrom};
use rustix::io::Errno;

use crate::apply::KernelLog;

pub const DEV_KMSG: &str = "/dev/kmsg";

/// An open `/dev/kmsg`.
pub struct Kmsg {
    fd: OwnedFd,
}

impl Kmsg {
    /// Opens the log after its last record, so [`KernelLog::drain`] returns only new lines.
    /// Fails without the right to read it (root, or `kernel.dmesg_restrict = 0`).
    pub fn open_at_end(path: &Path) -> std::io::Result<Self> {
        let k = Self::open(path)?;
        rustix::fs::seek(&k.fd, SeekFrom::End(0))?;
        Ok(k)
    }

    /// Opens the log at its oldest record still in the buffer.
    pub fn open_at_start(path: &Path) -> std::io::Result<Self> {
        Self::open(path)
    }

    fn open(path: &Path) -> std::io::Result<Self> {
        let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())?;
        Ok(Kmsg { fd })
    }
}

impl KernelLog for Kmsg {
    fn drain(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match rustix::io::read(&self.fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend(parse_record(&String::from_utf8_lossy(&buf[..n]))),
                // EPIPE: records were overwritten before we read them; the next read goes on.
                Err(Errno::PIPE) | Err(Errno::INTR) => continue,
                Err(_) => break, // EAGAIN: nothing more
            }
        }
        out
    }
}

/// `6,1234,4755694,-;nvmet: adding nsid 1 to subsystem x\n SUBSYSTEM=...` → the message, with
/// the kernel's `\xNN` escapes undone and trailing newlines dropped.
pub fn parse_record(record: &str) -> Option<String> {
    let (_, rest) = record.split_once(';')?;
    let msg = rest.lines().next().unwrap_or("");
    let mut out = String::new();
    let mut chars = msg.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'x') {
            let hex: String = chars.clone().skip(1).take(2).collect();
            if let Ok(b) = u8::from_str_radix(&hex, 16) {
                chars.nth(2);
                out.push(b as char);
                continue;
            }
        }
        out.push(c);
    }
    Some(out.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_with_escapes_and_continuations() {
        assert_eq!(
            parse_record("6,812,4724387,-;nvmet: adding nsid 1 to subsystem nqn.test\n").as_deref(),
            Some("nvmet: adding nsid 1 to subsystem nqn.test")
        );
        assert_eq!(
            parse_record(
                "3,820,4755694,-;nvme 0000:04:00.0: PCI device has no peer-to-peer memory: 0000:04:00.0\\x0a\n SUBSYSTEM=pci\n DEVICE=+pci:0000:04:00.0\n"
            )
            .as_deref(),
            Some("nvme 0000:04:00.0: PCI device has no peer-to-peer memory: 0000:04:00.0")
        );
        assert_eq!(parse_record("garbage"), None);
    }
}
