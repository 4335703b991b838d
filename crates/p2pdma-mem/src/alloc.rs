//! `p2pdma alloc`'s work: P2P memory from a provider, optionally filled by a direct read
//! from a block device, and exactly what the kernel did (the pool's `available` before and
//! while mapped, the read's outcome, a hash of what arrived).

use std::path::{Path, PathBuf};

use p2pdma_core::Bdf;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{Access, DirectFile, IoBuffer, MemError, P2pBuffer};

/// Written into the buffer before a read, to tell data that arrived from data that did not.
pub const FILL: u8 = 0xa5;

#[derive(Debug, Serialize)]
pub struct AllocReport {
    pub provider: Bdf,
    pub provider_name: Option<String>,
    pub size: usize,
    /// `p2pmem/available` before and while the buffer is mapped.
    pub available_before: u64,
    pub available_mapped: u64,
    pub read: Option<ReadReport>,
}

#[derive(Debug, Serialize)]
pub struct ReadReport {
    pub device: PathBuf,
    pub offset: u64,
    pub length: usize,
    pub ok: bool,
    pub errno: Option<i32>,
    pub error: Option<String>,
    /// SHA-256 of the buffer after the read.
    pub sha256: String,
    /// The buffer still holds only the fill pattern: nothing arrived, whatever the read said.
    pub unchanged: bool,
}

/// Allocates `size` bytes from the provider whose sysfs directory is `dir` and, with
/// `read` (device, offset), reads that many bytes into it. A failed read is part of the
/// report; a failed allocation is the error.
pub fn allocate(
    dir: &Path,
    provider: Bdf,
    provider_name: Option<String>,
    size: usize,
    read: Option<(PathBuf, u64)>,
) -> Result<AllocReport, MemError> {
    let available = || p2pdma_host::sysfs::p2pmem_available(dir).unwrap_or(0);
    let available_before = available();
    let mut buf = P2pBuffer::allocate(dir, size)?;
    let available_mapped = available();
    let read = read.map(|(path, offset)| {
        buf.fill(FILL);
        let mut io = IoBuffer::P2p(buf);
        let result = DirectFile::open(&path, Access::Read).and_then(|f| f.read_exact_into(&mut io, size, offset));
        // Hashed from a copy: device memory is read with volatile reads, never as a slice.
        let data = &io.copy_out(size)[..];
        ReadReport {
            device: path,
            offset,
            length: size,
            ok: result.is_ok(),
            errno: result.as_ref().err().and_then(|e| e.errno()),
            error: result.as_ref().err().map(|e| e.to_string()),
            sha256: format!("{:x}", Sha256::digest(data)),
            unchanged: data.iter().all(|&b| b == FILL),
        }
    });
    Ok(AllocReport { provider, provider_name, size, available_before, available_mapped, read })
}
