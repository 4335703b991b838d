//! The OS layer of moving data: P2P memory from a provider's `p2pmem/allocate` (and host
//! memory) as owned buffers, block devices and files opened for direct I/O, what they are
//! and who uses them, and the io_uring engine that moves chunks through the buffers.
//!
//! The rules (ranges, alignment, overlap, which memory to use) are pure code in
//! `p2pdma_core::transfer` and the verdict engine; this crate only measures and acts.

pub mod alloc;
pub mod bench;
mod buffer;
mod direct;
pub mod ends;
pub mod engine;
mod ring;
pub mod session;
#[cfg(test)]
mod testing;
mod verify;

pub use buffer::{page_size, HostBuffer, IoBuffer, P2pBuffer};
pub use direct::{Access, DirectFile};
pub use engine::{Failure, IoEngine, Job, Stats};
pub use verify::compare;

use std::path::PathBuf;

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
    #[error("host memory: cannot map {size} bytes: {source}")]
    HostMemory { size: usize, source: std::io::Error },
    #[error("io_uring unavailable: {cause}")]
    Uring { cause: IoCause },
    #[error("{}: another writer holds it (a p2pdma copy or bench is writing it now); refusing to write at the same time", path.display())]
    Locked { path: PathBuf },
    #[error("interrupted by a signal: no new I/O was started, the I/O in flight finished")]
    Interrupted,
    /// A path that is not what a copy can use (a directory, a character device, no sysfs entry).
    #[error("{path}: {msg}")]
    Unusable { path: PathBuf, msg: String },
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
        } else if e == Errno::FAULT {
            write!(f, "{io} (EFAULT: the buffer's memory is gone: was the P2P provider removed or unbound?)")
        } else if e == Errno::NODATA {
            write!(f, "{io} (ENODATA: the device reported a media error)")
        } else if e == Errno::BUSY {
            write!(f, "{io} (EBUSY: in use: mounted, held by another driver, or opened exclusively)")
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
            MemError::Uring { cause } => Some(cause.0.raw_os_error()),
            _ => None,
        }
    }
}
