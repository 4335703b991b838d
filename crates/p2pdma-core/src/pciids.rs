//! Vendor, device and class names from the PCI ID database, the way lspci names devices.
//!
//! Two sources: the machine's `pci.ids` when it has one (distributions update it, so it is
//! usually the newer), and the database built into the binary by the `pci-ids` crate (static
//! tables: nothing to load, so the lab's guest and machines without `pci.ids` get names too).
//! Each lookup asks the machine's file first and the built-in tables second, so an entry
//! missing from an older file is still found. Finding and reading the machine's file is
//! p2pdma-host's `pciids`; only the commands that print devices ask for it, so `copy` does
//! not pay for it.

use std::collections::HashMap;

/// Names parsed from one `pci.ids` file.
#[derive(Debug, Default)]
pub struct PciIds {
    vendors: HashMap<u16, String>,
    devices: HashMap<(u16, u16), String>,
    /// Keyed by (class, subclass); subclass `None` is the class's own name.
    classes: HashMap<(u8, Option<u8>), String>,
}

impl PciIds {
    /// Vendor lines `vvvv  Name`, device lines `\tdddd  Name`, then the class section:
    /// `C cc  Name`, `\tss  Name`, `\t\tpp  Name` (programming interfaces, not kept).
    pub fn parse(text: &str) -> Self {
        Self::parse_vendors(text, |_| true)
    }

    /// Like `parse`, keeping only the vendors `keep` wants (and every class): a machine has a
    /// handful of vendors, and skipping the other ~2,500 makes reading the file 5x cheaper.
    pub fn parse_vendors(text: &str, keep: impl Fn(u16) -> bool) -> Self {
        let mut ids = PciIds::default();
        let mut vendor: Option<u16> = None;
        let mut class: Option<u8> = None;
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("C ") {
                vendor = None;
                class = rest.split_once("  ").and_then(|(id, name)| {
                    let id = u8::from_str_radix(id.trim(), 16).ok()?;
                    ids.classes.insert((id, None), name.trim().to_string());
                    Some(id)
                });
                continue;
            }
            let (depth, rest) = match (line.starts_with("\t\t"), line.starts_with('\t')) {
                (true, _) => (2, &line[2..]),
                (false, true) => (1, &line[1..]),
                _ => (0, line),
            };
            // Lines of a vendor not kept: skipped before any allocation.
            if depth > 0 && class.is_none() && vendor.is_none() {
                continue;
            }
            let Some((id, name)) = rest.split_once("  ") else { continue };
            let name = name.trim().to_string();
            match (depth, class, vendor) {
                (0, _, _) if class.is_none() => {
                    vendor = u16::from_str_radix(id.trim(), 16).ok().filter(|&v| keep(v));
                    if let Some(v) = vendor {
                        ids.vendors.insert(v, name);
                    }
                }
                (1, None, Some(v)) => {
                    if let Ok(d) = u16::from_str_radix(id.trim(), 16) {
                        ids.devices.insert((v, d), name);
                    }
                }
                (1, Some(c), _) => {
                    if let Ok(s) = u8::from_str_radix(id.trim(), 16) {
                        ids.classes.insert((c, Some(s)), name);
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

    /// The subclass name (`Non-Volatile memory controller`), else the class name.
    pub fn class(&self, class_code: u32) -> Option<&str> {
        let (c, s) = ((class_code >> 16) as u8, (class_code >> 8) as u8);
        self.classes.get(&(c, Some(s))).or_else(|| self.classes.get(&(c, None))).map(String::as_str)
    }
}

/// The database built into the binary (the `pci-ids` crate's copy of `pci.ids`).
pub mod builtin {
    use pci_ids::FromId;

    pub fn vendor(vendor: u16) -> Option<&'static str> {
        pci_ids::Vendor::from_id(vendor).map(|v| v.name())
    }

    pub fn device(vendor: u16, device: u16) -> Option<&'static str> {
        pci_ids::Device::from_vid_pid(vendor, device).map(|d| d.name())
    }

    /// The subclass name, else the class name, as lspci prints them.
    pub fn class(class_code: u32) -> Option<&'static str> {
        let (c, s) = ((class_code >> 16) as u8, (class_code >> 8) as u8);
        pci_ids::Subclass::from_cid_sid(c, s)
            .map(|sub| sub.name())
            .or_else(|| pci_ids::Class::from_id(c).map(|class| class.name()))
    }
}

/// The machine's `pci.ids` (if any) in front of the built-in database.
#[derive(Debug, Default)]
pub struct Names {
    system: Option<PciIds>,
}

impl Names {
    /// The built-in database alone.
    pub fn builtin() -> Self {
        Names { system: None }
    }

    pub fn with_file(ids: PciIds) -> Self {
        Names { system: Some(ids) }
    }

    pub fn vendor(&self, vendor: u16) -> Option<&str> {
        self.system.as_ref().and_then(|s| s.vendor(vendor)).or_else(|| builtin::vendor(vendor))
    }

    pub fn device(&self, vendor: u16, device: u16) -> Option<&str> {
        self.system.as_ref().and_then(|s| s.device(vendor, device)).or_else(|| builtin::device(vendor, device))
    }

    pub fn class(&self, class_code: u32) -> Option<&str> {
        self.system.as_ref().and_then(|s| s.class(class_code)).or_else(|| builtin::class(class_code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# c\n1b36  Red Hat, Inc. (file)\n\t000c  QEMU PCIe Root port\n\t0010  QEMU NVM Express Controller (file)\n\t\t1af4 1100  sub\nC 01  Mass storage controller\n\t08  Non-Volatile memory controller (file)\n\t\t02  NVM Express\nC 06  Bridge\n";

    #[test]
    fn pciids_parses_vendors_devices_and_classes() {
        let ids = PciIds::parse(FILE);
        assert_eq!(ids.vendor(0x1b36), Some("Red Hat, Inc. (file)"));
        assert_eq!(ids.device(0x1b36, 0x0010), Some("QEMU NVM Express Controller (file)"));
        assert_eq!(ids.vendor(0x01), None);
        assert_eq!(ids.class(0x010802), Some("Non-Volatile memory controller (file)"));
        assert_eq!(ids.class(0x060400), Some("Bridge"), "no subclass line: the class name");
        assert_eq!(ids.class(0x020000), None);
    }

    #[test]
    fn filtered_parse_keeps_only_the_wanted_vendors_and_every_class() {
        let ids = PciIds::parse_vendors(&format!("8086  Intel\n\t29c0  DRAM\n{FILE}"), |v| v == 0x8086);
        assert_eq!(ids.device(0x8086, 0x29c0), Some("DRAM"));
        assert_eq!((ids.vendor(0x1b36), ids.device(0x1b36, 0x0010)), (None, None));
        assert_eq!(ids.class(0x010802), Some("Non-Volatile memory controller (file)"));
    }

    #[test]
    fn builtin_database_names_qemu_devices_and_classes() {
        assert_eq!(builtin::vendor(0x1b36), Some("Red Hat, Inc."));
        assert_eq!(builtin::device(0x1b36, 0x0010), Some("QEMU NVM Express Controller"));
        assert_eq!(builtin::device(0x8086, 0x29c0), Some("82G33/G31/P35/P31 Express DRAM Controller"));
        assert_eq!(builtin::class(0x010802), Some("Non-Volatile memory controller"));
        assert_eq!(builtin::class(0x018000), Some("Mass storage controller"));
        assert_eq!(builtin::class(0x060400), Some("PCI bridge"));
        assert_eq!(builtin::vendor(0x0002), None);
    }

    #[test]
    fn system_file_comes_first_and_builtin_fills_its_gaps() {
        let names = Names::with_file(PciIds::parse(FILE));
        assert_eq!(names.vendor(0x1b36), Some("Red Hat, Inc. (file)"));
        assert_eq!(names.device(0x1b36, 0x0010), Some("QEMU NVM Express Controller (file)"));
        assert_eq!(names.device(0x8086, 0x29c0), Some("82G33/G31/P35/P31 Express DRAM Controller"));
        assert_eq!(names.class(0x060400), Some("Bridge"));
        assert_eq!(names.class(0x020000), Some("Ethernet controller"));
    }
}
