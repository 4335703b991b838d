//! `p2pdma alloc`: P2P memory from a provider, optionally filled by a direct read from a
//! block device, reporting exactly what the kernel did.

use std::path::PathBuf;

use p2pdma_core::{resolve, Bdf, Engine, Target};
use p2pdma_mem::{DirectFile, P2pBuffer};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Written into the buffer before a read, to tell data that arrived from data that did not.
pub const FILL: u8 = 0xa5;

#[derive(Serialize)]
pub struct AllocReport {
    pub provider: Bdf,
    pub provider_name: Option<String>,
    pub size: usize,
    /// `p2pmem/available` before and while the buffer is mapped.
    pub available_before: u64,
    pub available_mapped: u64,
    pub read: Option<ReadReport>,
}

#[derive(Serialize)]
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

/// A block device path, or the block device of a named device (`nvme-a`, `0000:03:00.0`).
pub fn block_device(engine: &Engine<'_>, name: &str) -> anyhow::Result<PathBuf> {
    let topo = engine.topo;
    if name.starts_with('/') {
        return Ok(PathBuf::from(name));
    }
    if let Some(alias) = topo.aliases.get(name).filter(|a| a.class == "block") {
        if alias.hidden {
            anyhow::bail!(
                "{name} is a hidden disk (an NVMe multipath path, with no /dev node): {}",
                head_hint(engine, name)
            );
        }
        return Ok(PathBuf::from("/dev").join(name));
    }
    let Target::Pci(i) = resolve(engine, name)? else {
        anyhow::bail!("{name} is not a block device or a PCI device with one");
    };
    let bdf = topo.devices[i].bdf;
    // Namespaces (nvme0n1), not partitions (nvme0n1p1): the shortest name under the device.
    // With NVMe multipath the namespace is the head above the controller's hidden path disk.
    let on_device =
        |a: &p2pdma_core::model::Alias| a.pci_parent == Some(bdf) || a.paths.iter().any(|p| p.pci == Some(bdf));
    topo.aliases
        .iter()
        .filter(|(n, a)| a.class == "block" && !a.hidden && on_device(a) && !n.contains('p'))
        .map(|(n, _)| n)
        .min_by_key(|n| (n.len(), n.to_string()))
        .map(|n| PathBuf::from("/dev").join(n))
        .ok_or_else(|| anyhow::anyhow!("{name} ({bdf}) has no block device"))
}

/// Where to do I/O instead of the hidden path disk `path`: its head.
fn head_hint(engine: &Engine<'_>, path: &str) -> String {
    match engine.topo.aliases.iter().find(|(_, a)| a.paths.iter().any(|p| p.disk == path)) {
        Some((head, _)) => format!("use its head /dev/{head}"),
        None => "use its multipath head".into(),
    }
}

fn available(dir: &std::path::Path) -> u64 {
    p2pdma_host::sysfs::p2pmem_available(dir).unwrap_or(0)
}

pub fn run(
    engine: &Engine<'_>,
    sysfs: &std::path::Path,
    provider: &str,
    size: usize,
    read: Option<(PathBuf, u64)>,
) -> anyhow::Result<Result<AllocReport, (p2pdma_mem::MemError, Bdf)>> {
    let topo = engine.topo;
    let Target::Pci(i) = resolve(engine, provider)? else {
        anyhow::bail!("{provider} is not a PCI device and cannot provide P2P memory");
    };
    let dev = &topo.devices[i];
    if let Some(m) = dev.p2pmem.as_ref().filter(|m| size as u64 > m.size) {
        anyhow::bail!("{provider}: {size} bytes is more than its {} of P2P memory", crate::render::bytes(m.size));
    }
    let dir = p2pdma_host::sysfs::pci_device_dir(sysfs, dev.bdf);
    let available_before = available(&dir);
    let mut buf = match P2pBuffer::allocate(&dir, size) {
        Ok(b) => b,
        Err(e @ (p2pdma_mem::MemError::BadSize { .. } | p2pdma_mem::MemError::NotProvider { .. })) => {
            return Err(e.into())
        }
        Err(e) => return Ok(Err((e, dev.bdf))),
    };
    let available_mapped = available(&dir);
    let read = read.map(|(path, offset)| {
        buf.fill(FILL);
        let mut io = p2pdma_mem::IoBuffer::P2p(buf);
        let result =
            DirectFile::open(&path, p2pdma_mem::Access::Read).and_then(|f| f.read_exact_into(&mut io, size, offset));
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
    Ok(Ok(AllocReport {
        provider: dev.bdf,
        provider_name: dev.name.clone(),
        size,
        available_before,
        available_mapped,
        read,
    }))
}
