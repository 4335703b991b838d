//! Single sysfs facts of a PCI device, for callers that need no whole topology (a copy's
//! provider, `alloc`); the whole machine is `machine::read`.

use std::path::{Path, PathBuf};

use p2pdma_core::Bdf;

/// A PCI device's sysfs directory (`<sys>/bus/pci/devices/0000:03:00.0`): the one place
/// that path is built.
pub fn pci_device_dir(sys: &Path, bdf: Bdf) -> PathBuf {
    sys.join("bus/pci/devices").join(bdf.to_string())
}

/// A provider's free P2P memory now (`p2pmem/available` in its device directory).
pub fn p2pmem_available(device_dir: &Path) -> Option<u64> {
    crate::bounded::attribute(&device_dir.join("p2pmem/available"))?.parse().ok()
}

/// Whether kernel module `name` is loaded or built in (`<sys>/module/<name>`, with `-`
/// written `_` as the kernel does).
pub fn module_loaded(sys: &Path, name: &str) -> bool {
    sys.join("module").join(name.replace('-', "_")).exists()
}
