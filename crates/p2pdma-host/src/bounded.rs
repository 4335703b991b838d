//! The one way a file of the machine or of the user is read: bounded. A tree p2pdma did not
//! make (`--sysfs-root`, a chroot, a hostile fixture) may hold a FIFO where `config`
//! belongs (an open would wait for a writer forever), `/dev/zero` linked in as an attribute
//! (a read would never end), or a sparse file of gigabytes (a read would take the memory).
//! So every read here:
//!
//! - opens with `O_NONBLOCK | O_CLOEXEC`, and `O_NOFOLLOW` where the file itself is never a
//!   link (sysfs attributes: the kernel never makes one a symbolic link);
//! - checks with `fstat` on the open file that it is a regular file (sysfs and procfs files
//!   are), or a pipe where one is welcome (`--spec <(...)`), before reading a byte;
//! - reads at most [`Bound::limit`] + 1 bytes, so an over-limit file is detected and refused
//!   whole, never parsed in part. /proc and sysfs files report size 0 to `stat`: the
//!   limit is on the bytes read, not on `st_size`.
//!
//! A refused file is an error naming the file and the limit; readers of optional facts turn
//! it into "unknown".

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::Error;

/// How much of which kind of file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    /// The most bytes the file may hold; one more and it is refused.
    pub limit: u64,
    /// What the limit is for, in errors ("config space").
    pub what: &'static str,
    /// Whether the path itself may be a symbolic link (`/proc/mounts` is; a sysfs attribute is not).
    pub follow: bool,
    /// Whether a pipe is read too (a file a person names: `--spec <(...)`, `restore -`).
    pub pipe: bool,
}

impl Bound {
    /// PCI config space: 4 KiB for PCIe (256 bytes for conventional PCI).
    pub const CONFIG_SPACE: Bound = Bound { limit: 4 << 10, what: "config space", follow: false, pipe: false };
    /// A sysfs or configfs attribute (`vendor`, `resource`, `local_cpulist`, `current_link_speed`,
    /// nvmet's `device_path`): the kernel prints one into a page; 64 KiB leaves room.
    pub const ATTRIBUTE: Bound = Bound { limit: 64 << 10, what: "an attribute file", follow: false, pipe: false };
    /// A table in /proc (`cpuinfo`, `mountinfo`, `mounts`, `swaps`): grows with the machine
    /// (`cpuinfo` is about 1.5 KiB per CPU); `/proc/mounts` is itself a link.
    pub const PROC_TABLE: Bound = Bound { limit: 16 << 20, what: "a /proc table", follow: true, pipe: false };
    /// What the kernel and the distribution ship: a kernel image, its config, BTF, kallsyms,
    /// `pci.ids`. The largest, kallsyms with modules, is some 20 MiB.
    pub const KERNEL_FILE: Bound =
        Bound { limit: 64 << 20, what: "a kernel or system file", follow: true, pipe: false };
    /// A file a person names: a topology file, a snapshot, `diff`'s files, an nvmetcli
    /// config. A 1,000-device snapshot is a few MiB.
    pub const INPUT: Bound = Bound { limit: 64 << 20, what: "a p2pdma input", follow: true, pipe: true };
}

/// The whole of `path`, at most `bound.limit` bytes, or an error naming the file: not
/// found (an [`Error::Io`] whose kind says so), not a regular file, a symbolic link where
/// none belongs, or over the limit.
pub fn read_bytes(path: &Path, bound: Bound) -> Result<Vec<u8>, Error> {
    let file = open(path, bound)?;
    read_from(file, path, bound)
}

/// [`read_bytes`] as UTF-8 text; other bytes are an error naming the file.
pub fn read_string(path: &Path, bound: Bound) -> Result<String, Error> {
    String::from_utf8(read_bytes(path, bound)?).map_err(|_| Error::invalid(path, "is not text (not UTF-8)"))
}

/// A sysfs attribute's value, trimmed; None when it is absent, unreadable, not a regular
/// file or over [`Bound::ATTRIBUTE`]: the fact is unknown.
pub fn attribute(path: &Path) -> Option<String> {
    read_string(path, Bound::ATTRIBUTE).ok().map(|s| s.trim().to_string())
}

/// Reads an open stream (standard input, a pipe) the same way: at most `bound.limit`
/// bytes, one more is an error; `shown` names it.
pub fn read_from(stream: impl Read, shown: &Path, bound: Bound) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::new();
    stream.take(bound.limit + 1).read_to_end(&mut bytes).map_err(|e| Error::io(shown, e))?;
    if bytes.len() as u64 > bound.limit {
        return Err(Error::invalid(shown, format!("is larger than {} ({}): not read", size(bound.limit), bound.what)));
    }
    Ok(bytes)
}

/// Opens `path` for a bounded read: refused before the open when `stat` already says it is
/// no regular file (opening some devices acts: a tape rewinds), and after it by `fstat` on
/// what was really opened.
fn open(path: &Path, bound: Bound) -> Result<File, Error> {
    let meta = if bound.follow { std::fs::metadata(path) } else { std::fs::symlink_metadata(path) };
    let meta = meta.map_err(|e| Error::io(path, e))?;
    check_kind(path, &meta, bound)?;
    let mut flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    if !bound.follow {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::LOOP if !bound.follow => Error::invalid(path, "is a symbolic link, not a file: not read"),
        e => Error::io(path, e.into()),
    })?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    check_kind(path, &meta, bound)?;
    if meta.file_type().is_fifo() {
        // A pipe a person named is read as it comes: blocking again, still bounded.
        let flags = rustix::fs::fcntl_getfl(&file).map_err(|e| Error::io(path, e.into()))?;
        rustix::fs::fcntl_setfl(&file, flags - OFlags::NONBLOCK).map_err(|e| Error::io(path, e.into()))?;
    }
    Ok(file)
}

fn check_kind(path: &Path, meta: &std::fs::Metadata, bound: Bound) -> Result<(), Error> {
    let t = meta.file_type();
    let kind = if t.is_file() || (bound.pipe && t.is_fifo()) {
        return Ok(());
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_fifo() {
        "a named pipe"
    } else {
        "not a regular file"
    };
    Err(Error::invalid(path, format!("is {kind}, not a file: not read")))
}

/// `4 KiB`, `64 MiB`.
fn size(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_bounded_read_refuses_what_is_no_regular_file_or_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("vendor"), "0x1b36\n").unwrap();
        assert_eq!(attribute(&p("vendor")).as_deref(), Some("0x1b36"));

        let big = File::create(p("config")).unwrap();
        big.set_len(1 << 30).unwrap();
        let e = read_bytes(&p("config"), Bound::CONFIG_SPACE).unwrap_err().to_string();
        assert!(e.ends_with("is larger than 4 KiB (config space): not read"), "{e}");
        std::fs::write(p("config"), [0u8; 4096]).unwrap();
        assert_eq!(read_bytes(&p("config"), Bound::CONFIG_SPACE).unwrap().len(), 4096);

        rustix::fs::mknodat(rustix::fs::CWD, p("fifo"), rustix::fs::FileType::Fifo, Mode::RUSR | Mode::WUSR, 0)
            .unwrap();
        let e = read_bytes(&p("fifo"), Bound::ATTRIBUTE).unwrap_err().to_string();
        assert!(e.ends_with("is a named pipe, not a file: not read"), "{e}");

        std::os::unix::fs::symlink("/dev/zero", p("zero")).unwrap();
        let e = read_bytes(&p("zero"), Bound::ATTRIBUTE).unwrap_err().to_string();
        assert!(e.ends_with("is a symbolic link, not a file: not read"), "{e}");
        let e = read_bytes(&p("zero"), Bound::INPUT).unwrap_err().to_string();
        assert!(e.ends_with("is a character device, not a file: not read"), "{e}");

        std::os::unix::fs::symlink("loop", p("loop")).unwrap();
        assert!(read_bytes(&p("loop"), Bound::INPUT).is_err() && attribute(&p("loop")).is_none());
        assert!(attribute(dir.path()).is_none());
    }
}
