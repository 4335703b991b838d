//! Vendor and device names from the PCI ID database (`pci.ids`), where the machine has one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where distributions install `pci.ids` (Debian: package `pci.ids`).
pub const DEFAULT_PATHS: &[&str] = &["/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids", "/usr/share/pci.ids"];

/// Vendor and device names.
#[derive(Debug, Default)]
pub struct PciIds {
    vendors: HashMap<u16, String>,
    devices: HashMap<(u16, u16), String>,
}

impl PciIds {
    /// The first database found (`P2PDMA_PCI_IDS` first), or None: names are a nicety.
    pub fn load_default() -> Option<Self> {
        let env = std::env::var_os("P2PDMA_PCI_IDS").map(PathBuf::from);
        env.into_iter().chain(DEFAULT_PATHS.iter().map(PathBuf::from)).find_map(|p| Self::load(&p))
    }

    pub fn load(path: &Path) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        Some(Self::parse(&String::from_utf8_lossy(&bytes)))
    }

    /// Vendor lines `vvvv  Name`, device lines `\tdddd  Name`; stops at the class section.
    pub fn parse(text: &str) -> Self {
        let mut ids = PciIds::default();
        let mut vendor: Option<u16> = None;
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if line.starts_with("C ") {
                break;
            }
            let (depth, rest) = match (line.starts_with("\t\t"), line.starts_with('\t')) {
                (true, _) => (2, &line[2..]),
                (false, true) => (1, &line[1..]),
                _ => (0, line),
            };
            let Some((id, name)) = rest.split_once("  ") else { continue };
            let Ok(id) = u16::from_str_radix(id.trim(), 16) else { continue };
            match depth {
                0 => {
                    ids.vendors.insert(id, name.trim().to_string());
                    vendor = Some(id);
                }
                1 => {
                    if let Some(v) = vendor {
                        ids.devices.insert((v, id), name.trim().to_string());
                    }
                }
                _ => {}
            }
        }
        ids
    }

    pub fn vendor(&self, vendor: u16) -> Option<&str> {
        self.vendors.get(&vendor).map(String::as_str)
    }

    pub fn device(&self, vendor: u16, device: u16) -> Option<&str> {
        self.devices.get(&(vendor, device)).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pciids_parses_vendors_and_devices() {
        let ids = super::PciIds::parse("# c\n1b36  Red Hat, Inc.\n\t000c  QEMU PCIe Root port\n\t0010  QEMU NVM Express Controller\n\t\t1af4 1100  sub\nC 01  Mass storage\n\t08  NVM\n");
        assert_eq!(ids.vendor(0x1b36), Some("Red Hat, Inc."));
        assert_eq!(ids.device(0x1b36, 0x0010), Some("QEMU NVM Express Controller"));
        assert_eq!(ids.vendor(0x01), None);
    }
}
