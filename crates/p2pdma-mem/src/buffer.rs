//! Buffers the devices DMA into: P2P memory from a provider, or page-aligned host memory.

use std::fs::OpenOptions;
use std::path::Path;

use memmap2::{MmapMut, MmapOptions};
use rustix::io::Errno;

use crate::MemError;

pub fn page_size() -> usize {
    rustix::param::page_size()
}

/// P2P memory allocated from one provider, unmapped (and so freed) on drop.
///
/// The kernel makes a new contiguous allocation for every mmap of `p2pmem/allocate`
/// (shared, offset 0, page-multiple length) and frees it page by page on munmap;
/// kernel-p2pdma.md section 4.
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
        // is unbound or removed the kernel zaps the mapping and later CPU access raises
        // SIGBUS (no memory-safety issue, but fatal); the copy engine therefore never touches
        // it with the CPU, only through I/O syscalls, which then fail with EFAULT.
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

    /// CPU access to device memory: fine while the provider stays, SIGBUS once it is removed.
    pub fn as_slice(&self) -> &[u8] {
        &self.map
    }

    /// See [`P2pBuffer::as_slice`].
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map
    }
}

/// Page-aligned anonymous host memory (what O_DIRECT needs), freed on drop.
pub struct HostBuffer {
    map: MmapMut,
}

impl HostBuffer {
    pub fn new(size: usize) -> Result<Self, MemError> {
        MmapMut::map_anon(size).map(|map| HostBuffer { map }).map_err(|source| MemError::HostMemory { size, source })
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.map
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.map
    }
}

/// A buffer of either kind, as the copy engine sees it: an address and a length that
/// devices DMA to and from.
pub enum IoBuffer {
    P2p(P2pBuffer),
    Host(HostBuffer),
}

impl IoBuffer {
    pub fn len(&self) -> usize {
        match self {
            IoBuffer::P2p(b) => b.len(),
            IoBuffer::Host(b) => b.map.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_p2p(&self) -> bool {
        matches!(self, IoBuffer::P2p(_))
    }

    /// The whole buffer, to hand to read/write syscalls (the CPU does not touch it).
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            IoBuffer::P2p(b) => b.as_mut_slice(),
            IoBuffer::Host(b) => b.as_mut_slice(),
        }
    }

    /// The start of the buffer, for I/O requests only: taking it does not touch the memory.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        match self {
            IoBuffer::P2p(b) => b.map.as_mut_ptr(),
            IoBuffer::Host(b) => b.map.as_mut_ptr(),
        }
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
}
