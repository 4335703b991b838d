//! `p2pdma alloc`: the provider named, its size checked against the pool, then
//! `p2pdma_mem::alloc` does the work.

use std::path::{Path, PathBuf};

use p2pdma_core::{resolve, Bdf, Engine, Target};
use p2pdma_mem::alloc::AllocReport;
use p2pdma_mem::MemError;

/// The report, or the allocation's failure with the provider (exit 1, not bad input).
pub fn run(
    engine: &Engine<'_>,
    sysfs: &Path,
    provider: &str,
    size: usize,
    read: Option<(PathBuf, u64)>,
) -> anyhow::Result<Result<AllocReport, (MemError, Bdf)>> {
    let topo = engine.topo;
    let Target::Pci(i) = resolve(engine, provider)? else {
        anyhow::bail!("{provider} is not a PCI device and cannot provide P2P memory");
    };
    let dev = &topo.devices[i];
    if let Some(m) = dev.p2pmem.as_ref().filter(|m| size as u64 > m.size) {
        anyhow::bail!("{provider}: {size} bytes is more than its {} of P2P memory", crate::render::bytes(m.size));
    }
    let dir = p2pdma_host::sysfs::pci_device_dir(sysfs, dev.bdf);
    match p2pdma_mem::alloc::allocate(&dir, dev.bdf, dev.name.clone(), size, read) {
        Ok(report) => Ok(Ok(report)),
        Err(e @ (MemError::BadSize { .. } | MemError::NotProvider { .. })) => Err(e.into()),
        Err(e) => Ok(Err((e, dev.bdf))),
    }
}
