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

    /// Copies the buffer out into host memory, with volatile reads: device memory is never
    /// handed out as a Rust slice (the kernel may zap the mapping when the provider goes
    /// away, and the CPU then gets SIGBUS, which no slice can promise against).
    pub fn copy_to(&self, out: &mut [u8]) {
        let len = out.len().min(self.map.len());
        let src = self.map.as_ptr();
        for (i, byte) in out[..len].iter_mut().enumerate() {
            // SAFETY: `i < len <= self.map.len()`, so the read is inside the mapping, which
            // lives as long as `self`; a volatile read keeps the compiler from inventing or
            // merging accesses to device memory.
            *byte = unsafe { src.add(i).read_volatile() };
        }
    }

    /// Fills the buffer with `byte`, with volatile writes (see [`P2pBuffer::copy_to`]).
    pub fn fill(&mut self, byte: u8) {
        let dst = self.map.as_mut_ptr();
        for i in 0..self.map.len() {
            // SAFETY: `i` is inside the mapping, which `&mut self` holds exclusively.
            unsafe { dst.add(i).write_volatile(byte) };
        }
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

    /// Host memory preferably on NUMA node `node` (the devices' node, so their DMA does not
    /// cross sockets): the policy is set before the first touch, so the pages come from
    /// that node while it has free memory. Whether the kernel took the policy is returned
    /// (false without NUMA support); the buffer is usable either way.
    pub fn on_node(size: usize, node: Option<i32>) -> Result<(Self, bool), MemError> {
        let buf = HostBuffer::new(size)?;
        let bound = match node.and_then(|n| u32::try_from(n).ok()).filter(|&n| n < 1024) {
            Some(node) => {
                let mut mask = [0u64; 16];
                mask[node as usize / 64] |= 1 << (node % 64);
                // SAFETY: mbind only changes the policy of the range, which is exactly our
                // fresh, untouched mapping; the mask outlives the call and holds
                // 16 * 64 = 1024 bits, the `maxnode` passed.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_mbind,
                        buf.map.as_ptr(),
                        buf.map.len(),
                        libc::MPOL_PREFERRED,
                        mask.as_ptr(),
                        1024usize,
                        0u32,
                    )
                };
                r == 0
            }
            None => false,
        };
        Ok((buf, bound))
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

    /// A copy of the first `len` bytes in host memory (volatile reads for P2P memory).
    pub fn copy_out(&self, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len.min(self.len())];
        match self {
            IoBuffer::P2p(b) => b.copy_to(&mut out),
            IoBuffer::Host(b) => {
                let n = out.len();
                out.copy_from_slice(&b.map[..n])
            }
        }
        out
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

    #[test]
    fn host_buffers_on_a_node_are_usable_whether_or_not_numa_is_there() {
        // Node 0 exists on every NUMA kernel; a node that does not exist is refused by the
        // kernel and the buffer is still good.
        for node in [Some(0), Some(1000), None, Some(-1)] {
            let (buf, _) = HostBuffer::on_node(8192, node).unwrap();
            let io = IoBuffer::Host(buf);
            assert_eq!(io.copy_out(8192), vec![0u8; 8192]);
        }
        let (_, bound) = HostBuffer::on_node(4096, None).unwrap();
        assert!(!bound);
    }
}
