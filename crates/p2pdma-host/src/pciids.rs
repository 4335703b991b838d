//! The machine's `pci.ids`: where it is and reading it (parsing and the built-in database
//! behind it are `p2pdma_core::pciids`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use p2pdma_core::pciids::{Names, PciIds};
use p2pdma_core::Topology;

/// Where distributions install `pci.ids` (Debian: package `pci.ids`).
pub const DEFAULT_PATHS: &[&str] = &["/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids"];

/// `P2PDMA_PCI_IDS=FILE` uses that file (then the built-in database); `P2PDMA_PCI_IDS=builtin`
/// uses the built-in database alone.
pub const ENV: &str = "P2PDMA_PCI_IDS";

/// The first database found (`P2PDMA_PCI_IDS` first), keeping only the vendors `keep`
/// wants, or None: names are a nicety.
pub fn load_default_vendors(keep: impl Fn(u16) -> bool) -> Option<PciIds> {
    let env = std::env::var_os(ENV).map(PathBuf::from);
    if env.as_deref() == Some(Path::new("builtin")) {
        return None;
    }
    env.into_iter().chain(DEFAULT_PATHS.iter().map(PathBuf::from)).find_map(|p| load_vendors(&p, &keep))
}

/// One `pci.ids` file, keeping only the vendors `keep` wants (and every class); None when
/// it cannot be read.
pub fn load_vendors(path: &Path, keep: impl Fn(u16) -> bool) -> Option<PciIds> {
    let bytes = crate::bounded::read_bytes(path, crate::bounded::Bound::KERNEL_FILE).ok()?;
    Some(PciIds::parse_vendors(&String::from_utf8_lossy(&bytes), keep))
}

/// The machine's file (only the vendors in `topo`, what `Names::annotate` needs) in front
/// of the built-in database.
pub fn names_for(topo: &Topology) -> Names {
    let vendors: HashSet<u16> = topo.devices.iter().map(|d| d.vendor).collect();
    match load_default_vendors(|v| vendors.contains(&v)) {
        Some(ids) => Names::with_file(ids),
        None => Names::builtin(),
    }
}
