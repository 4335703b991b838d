//! P2P memory from userspace: a provider's `p2pmem/allocate` mapped as an owned buffer, and
//! direct (O_DIRECT) I/O between block devices or files and such buffers.
//!
//! The kernel makes a new contiguous allocation for every mmap of `allocate` (shared,
//! offset 0, page-multiple length) and frees it page by page on munmap; see
//! kernel-p2pdma.md section 4.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use memmap2::{MmapMut, MmapOptions};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

/// Everything that can go wrong, each naming the device or file, the offset and the cause.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    #[error("{provider}: not a P2P memory provider ({path} is missing: no p2pmem/, or a kernel before 6.2 without userspace allocation)")]
    NotProvider { provider: String, path: PathBuf },
    #[error("{provider}: cannot open {path}: {source} (needs root)")]
    Open { provider: String, path: PathBuf, source: std::io::Error },
    #[error("{provider}: size {size} is not a positive multiple of the page size ({page})")]
    BadSize { provider: String, size: usize, page: usize },
    #[error("{provider}: no contiguous {size} bytes of P2P memory free (ENOMEM; `available` may show more when the pool is fragmented)")]
    NoMemory { provider: String, size: usize },
    #[error("{provider}: the provider is going away or has no P2P memory (ENODEV)")]
    NoDevice { provider: String },
    #[error("{provider}: the kernel refused the mapping (EINVAL: it must be shared, at offset 0)")]
    Refused { provider: String },
    #[error("{provider}: mapping {size} bytes failed: {source}")]
    Map { provider: String, size: usize, source: std::io::Error },
    #[error("{path}: {op} failed at offset {offset}: {cause}")]
    Io { path: PathBuf, op: &'static str, offset: u64, cause: IoCause },
}

/// The cause of an I/O error: the errno, with the kernel's P2P meanings spelled out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoCause(pub Errno);

impl std::fmt::Display for IoCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = self.0;
        let io = std::io::Error::from_raw_os_error(e.raw_os_error());
        if e == Errno::REMOTEIO {
            write!(f, "{io} (EREMOTEIO: the kernel cannot map this P2P memory for the device)")
        } else if e == Errno::INVAL {
            write!(f, "{io} (EINVAL: unaligned I/O, or the block layer refused P2P memory for this device)")
        } else {
            write!(f, "{io}")
        }
    }
}

impl MemError {
    /// The errno behind an I/O error, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            MemError::Io { cause, .. } => Some(cause.0.raw_os_error()),
            MemError::NoMemory { .. } => Some(Errno::NOMEM.raw_os_error()),
            MemError::NoDevice { .. } => Some(Errno::NODEV.raw_os_error()),
            MemError::Refused { .. } => Some(Errno::INVAL.raw_os_error()),
            _ => None,
        }
    }
}

pub fn page_size() -> usize {
    rustix::param::page_size()
}

/// P2P memory allocated from one provider, unmapped (and so freed) on drop.
pub struct P2pBuffer {
    map: MmapMut,
    provider: String,
}

impl P2pBuffer {
    /// Allocates `size` bytes (a page multiple) from the provider whose sysfs directory is
    /// `device_dir` (e.g. `/sys/bus/pci/devices/0000:03:00.0`).
    pub fn allocate(device_dir: &Path, size: usize) -> Result<Self, MemError> {
        let provider = device_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let page = page_size();
        if size == 0 || !size.is_multiple_of(page) {
            return Err(MemError::BadSize { provider, size, page });
        }
        let path = device_dir.join("p2pmem/allocate");
        if !path.exists() {
            return Err(MemError::NotProvider { provider, path });
        }
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(|source| MemError::Open {
            provider: provider.clone(),
            path: path.clone(),
            source,
        })?;
        // SAFETY: this is the one place P2P memory is mapped. The mapping is shared, at offset
        // 0, with an explicit length, as the kernel requires; it is only reached through the
        // returned buffer and unmapped on drop. The memory is device memory: if the provider
        // is unbound or removed the kernel zaps the mapping and later access raises SIGBUS;
        // callers that must survive that touch it only through I/O syscalls (which then fail
        // with an errno), never by CPU loads and stores while a removal may be in progress.
        let map = unsafe { MmapOptions::new().len(size).offset(0).map_mut(&file) };
        match map {
            Ok(map) => Ok(P2pBuffer { map, provider }),
            Err(e) => Err(match e.raw_os_error().map(Errno::from_raw_os_error) {
                Some(Errno::NOMEM) => MemError::NoMemory { provider, size },
                Some(Errno::NODEV) => MemError::NoDevice { provider },
                Some(Errno::INVAL) => MemError::Refused { provider },
                _ => MemError::Map { provider, size, source: e },
            }),
        }
    }

    pub fn provider(&self) -> &str {
        &self.provider
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.map
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map
    }
}

/// A block device or file opened for direct I/O (O_DIRECT), so that the device DMAs
/// straight to or from the buffer, P2P memory included.
pub struct DirectFile {
    fd: OwnedFd,
    path: PathBuf,
}

impl DirectFile {
    pub fn open(path: &Path, write: bool) -> Result<Self, MemError> {
        let mode = if write { OFlags::RDWR } else { OFlags::RDONLY };
        let fd = rustix::fs::open(path, mode | OFlags::DIRECT | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| MemError::Io { path: path.into(), op: "open", offset: 0, cause: IoCause(e) })?;
        Ok(DirectFile { fd, path: path.into() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads exactly `buf.len()` bytes at `offset`; a short read is an error naming where.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), MemError> {
        let fd = self.fd.as_fd();
        self.until_done("read", buf.len(), offset, Errno::NXIO, |done, at| rustix::io::pread(fd, &mut buf[done..], at))
    }

    /// Writes all of `buf` at `offset`.
    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<(), MemError> {
        let fd = self.fd.as_fd();
        self.until_done("write", buf.len(), offset, Errno::NOSPC, |done, at| rustix::io::pwrite(fd, &buf[done..], at))
    }

    /// Repeats `step(bytes done, device offset)` until `len` bytes are transferred, retrying
    /// on EINTR; a zero-byte step is reported as `at_end` at the offset where it happened.
    fn until_done(
        &self,
        op: &'static str,
        len: usize,
        offset: u64,
        at_end: Errno,
        mut step: impl FnMut(usize, u64) -> Result<usize, Errno>,
    ) -> Result<(), MemError> {
        let mut done = 0usize;
        while done < len {
            let at = offset + done as u64;
            let error = |e| MemError::Io { path: self.path.clone(), op, offset: at, cause: IoCause(e) };
            match step(done, at) {
                Ok(0) => return Err(error(at_end)),
                Ok(n) => done += n,
                Err(Errno::INTR) => {}
                Err(e) => return Err(error(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_refuses_non_providers_and_bad_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let err = P2pBuffer::allocate(dir.path(), page_size()).err().unwrap();
        assert!(matches!(err, MemError::NotProvider { .. }), "{err}");
        let err = P2pBuffer::allocate(dir.path(), 1000).err().unwrap();
        assert!(err.to_string().contains("multiple of the page size"), "{err}");
    }

    #[test]
    fn direct_io_errors_name_path_and_offset() {
        let err = DirectFile::open(Path::new("/nonexistent/dev"), false).err().unwrap();
        assert_eq!(
            err.to_string(),
            "/nonexistent/dev: open failed at offset 0: No such file or directory (os error 2)"
        );
        assert_eq!(err.errno(), Some(2));
    }
}
