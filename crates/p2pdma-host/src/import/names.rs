//! IDs back from the names `lspci` prints without `-nn`: `NVIDIA Corporation AD102GL [RTX
//! 6000 Ada Generation]` → 10de:26b1, `VGA compatible controller` → class 03 00, through the
//! PCI ID database built into the binary. A name the database does not hold stays unknown;
//! a pci.ids newer or older than lspci's may name a device differently (the facts say
//! `from names`, so a reader knows to prefer `-nn`).

use std::collections::HashMap;
use std::sync::OnceLock;

/// `[10de:26b1]` at the end of a `-nn` name.
pub fn bracket_ids(text: &str) -> Option<(u16, u16)> {
    let mut found = None;
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let tail = &rest[open + 1..];
        let Some(close) = tail.find(']') else { break };
        let inner = &tail[..close];
        if let Some((v, d)) = inner.split_once(':') {
            if v.len() == 4 && d.len() == 4 {
                if let (Ok(v), Ok(d)) = (u16::from_str_radix(v, 16), u16::from_str_radix(d, 16)) {
                    found = Some((v, d));
                }
            }
        }
        rest = &tail[close + 1..];
    }
    found
}

/// `[0300]` in an `-nn` class: the class and subclass.
pub fn bracket_class(text: &str) -> Option<u16> {
    let open = text.rfind('[')?;
    let inner = text[open + 1..].split_once(']')?.0;
    (inner.len() == 4).then(|| u16::from_str_radix(inner, 16).ok()).flatten()
}

fn vendors_by_first_word() -> &'static HashMap<&'static str, Vec<&'static pci_ids::Vendor>> {
    static MAP: OnceLock<HashMap<&'static str, Vec<&'static pci_ids::Vendor>>> = OnceLock::new();
    MAP.get_or_init(|| {
        let mut map: HashMap<&'static str, Vec<&'static pci_ids::Vendor>> = HashMap::new();
        for v in pci_ids::Vendors::iter() {
            if let Some(w) = v.name().split_whitespace().next() {
                map.entry(w).or_default().push(v);
            }
        }
        map
    })
}

/// Vendor and device IDs from `Vendor Name Device Name` (either may stay unknown).
pub fn ids_from_name(name: &str) -> (Option<u16>, Option<u16>) {
    let name = name.trim();
    let Some(first) = name.split_whitespace().next() else { return (None, None) };
    let Some(candidates) = vendors_by_first_word().get(first) else { return (None, None) };
    let vendor = candidates
        .iter()
        .filter(|v| name.starts_with(v.name()) && name[v.name().len()..].chars().next().is_none_or(|c| c == ' '))
        .max_by_key(|v| v.name().len());
    let Some(vendor) = vendor else { return (None, None) };
    let rest = name[vendor.name().len()..].trim();
    if let Some(hex) = rest.strip_prefix("Device ") {
        let id = hex.split_whitespace().next().filter(|h| h.len() == 4).and_then(|h| u16::from_str_radix(h, 16).ok());
        return (Some(vendor.id()), id);
    }
    let device = vendor.devices().find(|d| d.name() == rest).map(|d| d.id());
    (Some(vendor.id()), device)
}

/// The class code (class, subclass) from lspci's class name (`Non-Volatile memory controller`).
pub fn class_from_name(name: &str) -> Option<u16> {
    let name = name.trim();
    for class in pci_ids::Classes::iter() {
        for sub in class.subclasses() {
            if sub.name() == name {
                return Some(u16::from(class.id()) << 8 | u16::from(sub.id()));
            }
        }
    }
    pci_ids::Classes::iter().find(|c| c.name() == name).map(|c| u16::from(c.id()) << 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_ids_back() {
        assert_eq!(ids_from_name("NVIDIA Corporation AD102GL [RTX 6000 Ada Generation]"), (Some(0x10de), Some(0x26b1)));
        assert_eq!(ids_from_name("Advanced Micro Devices, Inc. [AMD] Device 14a4"), (Some(0x1022), Some(0x14a4)));
        assert_eq!(ids_from_name("Mellanox Technologies MT2910 Family [ConnectX-7]"), (Some(0x15b3), Some(0x1021)));
        assert_eq!(ids_from_name("Nobody Knows This Vendor"), (None, None));
        assert_eq!(class_from_name("VGA compatible controller"), Some(0x0300));
        assert_eq!(class_from_name("Ethernet controller"), Some(0x0200));
        assert_eq!(class_from_name("Non-Volatile memory controller"), Some(0x0108));
        assert_eq!(
            bracket_ids("NVIDIA Corporation AD102GL [RTX 6000 Ada Generation] [10de:26b1]"),
            Some((0x10de, 0x26b1))
        );
        assert_eq!(bracket_class("VGA compatible controller [0300]"), Some(0x0300));
    }
}
