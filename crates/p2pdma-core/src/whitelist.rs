//! The kernel's host bridge whitelist (`pci_p2pdma_whitelist` in drivers/pci/p2pdma.c),
//! as of the PCI tree described in kernel-p2pdma.md section 1.4.

use serde::Serialize;

/// Matches any device ID of the vendor (`PCI_ANY_ID`).
pub const ANY_DEVICE: u16 = 0xffff;

/// One whitelist entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub vendor: u16,
    /// [`ANY_DEVICE`] for every device of the vendor.
    pub device: u16,
    /// `REQ_SAME_HOST_BRIDGE`: P2P only between devices under this very host bridge.
    pub same_host_bridge_only: bool,
    pub label: &'static str,
}

const fn e(vendor: u16, device: u16, same: bool, label: &'static str) -> Entry {
    Entry { vendor, device, same_host_bridge_only: same, label }
}

const INTEL: u16 = 0x8086;

/// In the kernel's order: the first matching entry decides.
pub const WHITELIST: &[Entry] = &[
    e(INTEL, 0x3c00, true, "Intel Sandy Bridge-EP"),
    e(INTEL, 0x3c01, true, "Intel Sandy Bridge-EP"),
    e(INTEL, 0x2f00, true, "Intel Haswell-EP"),
    e(INTEL, 0x2f01, true, "Intel Haswell-EP"),
    e(INTEL, 0x2030, false, "Intel Skylake-SP"),
    e(INTEL, 0x2031, false, "Intel Skylake-SP"),
    e(INTEL, 0x2032, false, "Intel Skylake-SP"),
    e(INTEL, 0x2033, false, "Intel Skylake-SP"),
    e(INTEL, 0x2020, false, "Intel Skylake-SP"),
    e(INTEL, 0x09a2, false, "Intel Ice Lake-SP"),
    e(INTEL, 0x0b25, false, "Intel DSA (Sapphire Rapids)"),
    e(INTEL, 0x11fb, false, "Intel DSA (Granite Rapids-D)"),
    e(INTEL, 0x1212, false, "Intel DSA (Diamond Rapids)"),
    e(INTEL, 0x0cfe, false, "Intel IAA (Sapphire Rapids)"),
    e(INTEL, 0x1216, false, "Intel IAA (Diamond Rapids)"),
    e(INTEL, 0x4940, false, "Intel QAT 4xxx"),
    e(INTEL, 0x4942, false, "Intel QAT 401xx"),
    e(INTEL, 0x4944, false, "Intel QAT 402xx"),
    e(INTEL, 0x4946, false, "Intel QAT 420xx"),
    e(INTEL, 0x4948, false, "Intel QAT 6xxx"),
    e(0x1ae0, ANY_DEVICE, false, "Google (any device)"),
    e(0x10de, 0x2f95, false, "NVIDIA"),
    e(0x10de, 0x2f96, false, "NVIDIA"),
    e(0x10de, 0x2f97, false, "NVIDIA"),
    e(0x10de, 0x2f98, false, "NVIDIA"),
    e(0x1d17, 0x1003, false, "Zhaoxin"),
    e(0x1d17, 0x1005, true, "Zhaoxin"),
    e(0x1d17, 0x1006, true, "Zhaoxin"),
    e(0x1d17, 0x1007, true, "Zhaoxin"),
    e(0x1d17, 0x1008, false, "Zhaoxin"),
];

/// The first entry matching vendor:device, as `__host_bridge_whitelist` scans.
pub fn lookup(vendor: u16, device: u16) -> Option<&'static Entry> {
    WHITELIST.iter().find(|e| e.vendor == vendor && (e.device == ANY_DEVICE || e.device == device))
}

/// The CPU rule (`cpu_supports_p2pdma`): x86, vendor AMD (not Hygon), family 0x17 (Zen) or newer.
pub fn cpu_allows_p2pdma(arch: Option<&str>, vendor: Option<&str>, family: Option<u32>) -> bool {
    let x86 = matches!(arch, None | Some("x86_64") | Some("i686") | Some("i386") | Some("x86"));
    x86 && vendor == Some("AuthenticAMD") && family.is_some_and(|f| f >= 0x17)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whitelist_lookup_follows_kernel_order() {
        assert!(lookup(0x8086, 0x2030).is_some_and(|e| !e.same_host_bridge_only));
        assert!(lookup(0x8086, 0x3c00).is_some_and(|e| e.same_host_bridge_only));
        assert!(lookup(0x1ae0, 0x1234).is_some());
        assert!(lookup(0x8086, 0x29c0).is_none(), "q35's host bridge is not listed");
        assert!(lookup(0x1022, 0x1480).is_none(), "AMD relies on the CPU rule");
    }

    #[test]
    fn cpu_rule_is_amd_zen_on_x86_only() {
        assert!(cpu_allows_p2pdma(Some("x86_64"), Some("AuthenticAMD"), Some(0x17)));
        assert!(cpu_allows_p2pdma(Some("x86_64"), Some("AuthenticAMD"), Some(0x19)));
        assert!(!cpu_allows_p2pdma(Some("x86_64"), Some("AuthenticAMD"), Some(0x15)));
        assert!(!cpu_allows_p2pdma(Some("x86_64"), Some("HygonGenuine"), Some(0x18)));
        assert!(!cpu_allows_p2pdma(Some("x86_64"), Some("GenuineIntel"), Some(6)));
        assert!(!cpu_allows_p2pdma(Some("aarch64"), Some("AuthenticAMD"), Some(0x19)));
    }
}
