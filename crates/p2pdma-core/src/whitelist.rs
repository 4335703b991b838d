//! The kernel's host bridge whitelist (`pci_p2pdma_whitelist` in drivers/pci/p2pdma.c),
//! every entry with the mainline (and stable) release that brought it; docs/kernel.md
//! names the commits. Which list is in force is decided in `kernel`.

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

/// An entry of the table with the releases that brought it (docs/kernel.md has the sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub entry: Entry,
    /// The first mainline release with the entry.
    pub mainline: (u32, u32),
    /// A stable series that got it by backport, and its first point release there.
    pub stable: Option<(u32, u32, u32)>,
    /// The upstream commit that added it.
    pub commit: &'static str,
    /// The first mainline release without it again (the AMD Zen entries: the CPU rule
    /// replaced them in 5.9).
    pub dropped: Option<(u32, u32)>,
}

const fn e(vendor: u16, device: u16, same: bool, label: &'static str) -> Entry {
    Entry { vendor, device, same_host_bridge_only: same, label }
}

const fn k(entry: Entry, mainline: (u32, u32), stable: Option<(u32, u32, u32)>, commit: &'static str) -> Known {
    Known { entry, mainline, stable, commit, dropped: None }
}

/// An AMD Zen root complex entry: listed from `mainline`, dropped in [`CPU_RULE_SINCE`].
const fn amd(device: u16, mainline: (u32, u32), commit: &'static str) -> Known {
    Known {
        entry: e(AMD, device, false, "AMD Zen root complex"),
        mainline,
        stable: None,
        commit,
        dropped: Some(CPU_RULE_SINCE),
    }
}

const AMD: u16 = 0x1022;
const INTEL: u16 = 0x8086;
const NVIDIA: u16 = 0x10de;
const ZHAOXIN: u16 = 0x1d17;
const GOOGLE: u16 = 0x1ae0;

const AMD_ZEN_ROOT_COMPLEX: &str = "0f97da831026";
const AMD_RAVEN_RENOIR: &str = "7d5b10fcb81e";
const INTEL_HOST_BRIDGES: &str = "494d63b0d5d0";
const SKYLAKE_E: &str = "bc123a515cb7";
const SKYLAKE_E_BCD: &str = "7b94b53db34f";
const ICE_LAKE: &str = "feaea1fe8b36";
const INTEL_ACCEL: &str = "0ba76b19fd4c";
const GOOGLE_SOCS: &str = "70cf146a674c";
const VERA_RUBIN: &str = "894a78088fc3";
const ZHAOXIN_HB: &str = "f7c220404700";

/// Every entry the kernel has had, in the order of the newest `pci_p2pdma_whitelist` (the
/// first matching entry decides), each with the release that brought it.
pub const TABLE: &[Known] = &[
    // 5.2's `root_complex_whitelist()` (1450 only, both devices under it); 5.4 turned it
    // into the first entry of `pci_p2pdma_whitelist`; dea286bb71ba (5.9) dropped all three.
    amd(0x1450, (5, 2), AMD_ZEN_ROOT_COMPLEX),
    amd(0x15d0, (5, 8), AMD_RAVEN_RENOIR),
    amd(0x1630, (5, 8), AMD_RAVEN_RENOIR),
    k(e(INTEL, 0x3c00, true, "Intel Sandy Bridge-EP"), (5, 4), None, INTEL_HOST_BRIDGES),
    k(e(INTEL, 0x3c01, true, "Intel Sandy Bridge-EP"), (5, 4), None, INTEL_HOST_BRIDGES),
    k(e(INTEL, 0x2f00, true, "Intel Haswell-EP"), (5, 4), None, INTEL_HOST_BRIDGES),
    k(e(INTEL, 0x2f01, true, "Intel Haswell-EP"), (5, 4), None, INTEL_HOST_BRIDGES),
    k(e(INTEL, 0x2030, false, "Intel Skylake-SP"), (5, 5), None, SKYLAKE_E),
    k(e(INTEL, 0x2031, false, "Intel Skylake-SP"), (5, 7), None, SKYLAKE_E_BCD),
    k(e(INTEL, 0x2032, false, "Intel Skylake-SP"), (5, 7), None, SKYLAKE_E_BCD),
    k(e(INTEL, 0x2033, false, "Intel Skylake-SP"), (5, 7), None, SKYLAKE_E_BCD),
    k(e(INTEL, 0x2020, false, "Intel Skylake-SP"), (5, 5), None, SKYLAKE_E),
    k(e(INTEL, 0x09a2, false, "Intel Ice Lake-SP"), (5, 18), None, ICE_LAKE),
    k(e(INTEL, 0x0b25, false, "Intel DSA (Sapphire Rapids)"), (7, 2), Some((7, 1, 3)), INTEL_ACCEL),
    k(e(INTEL, 0x0cfe, false, "Intel IAA (Sapphire Rapids)"), (7, 2), Some((7, 1, 3)), INTEL_ACCEL),
    k(e(INTEL, 0x11fb, false, "Intel DSA (Granite Rapids-D)"), (7, 2), Some((7, 1, 3)), INTEL_ACCEL),
    k(e(INTEL, 0x1212, false, "Intel DSA (Diamond Rapids)"), (7, 2), Some((7, 1, 3)), INTEL_ACCEL),
    k(e(INTEL, 0x1216, false, "Intel IAA (Diamond Rapids)"), (7, 2), Some((7, 1, 3)), INTEL_ACCEL),
    k(e(INTEL, 0x4940, false, "Intel QAT 4xxx"), (7, 2), Some((7, 1, 3)), INTEL_ACCEL),
    k(e(INTEL, 0x4942, false, "Intel QAT 401xx"), (7, 2), Some((7, 1, 3)), INTEL_ACCEL),
    k(e(INTEL, 0x4944, false, "Intel QAT 402xx"), (7, 2), Some((7, 1, 3)), INTEL_ACCEL),
    k(e(INTEL, 0x4946, false, "Intel QAT 420xx"), (7, 2), Some((7, 1, 3)), INTEL_ACCEL),
    k(e(INTEL, 0x4948, false, "Intel QAT 6xxx"), (7, 2), Some((7, 1, 3)), INTEL_ACCEL),
    k(e(GOOGLE, ANY_DEVICE, false, "Google (any device)"), (7, 1), None, GOOGLE_SOCS),
    k(e(NVIDIA, 0x2f95, false, "NVIDIA Vera Rubin"), (7, 3), None, VERA_RUBIN),
    k(e(NVIDIA, 0x2f96, false, "NVIDIA Vera Rubin"), (7, 3), None, VERA_RUBIN),
    k(e(NVIDIA, 0x2f97, false, "NVIDIA Vera Rubin"), (7, 3), None, VERA_RUBIN),
    k(e(NVIDIA, 0x2f98, false, "NVIDIA Vera Rubin"), (7, 3), None, VERA_RUBIN),
    k(e(ZHAOXIN, 0x1003, true, "Zhaoxin"), (7, 4), None, ZHAOXIN_HB),
    k(e(ZHAOXIN, 0x1005, true, "Zhaoxin"), (7, 4), None, ZHAOXIN_HB),
    k(e(ZHAOXIN, 0x1006, true, "Zhaoxin"), (7, 4), None, ZHAOXIN_HB),
    k(e(ZHAOXIN, 0x1007, true, "Zhaoxin"), (7, 4), None, ZHAOXIN_HB),
    k(e(ZHAOXIN, 0x1008, false, "Zhaoxin"), (7, 4), None, ZHAOXIN_HB),
];

/// The newest release whose whitelist is known from a released kernel; entries with a
/// later `mainline` are in the PCI tree only (Zhaoxin, for 7.4).
pub const NEWEST_KNOWN: (u32, u32) = (7, 3);

/// The first release with a host bridge list at all: 5.2's `root_complex_whitelist()`
/// (0f97da831026, AMD 1022:1450 only). Before, only a common upstream bridge allowed a pair.
pub const FIRST_WHITELIST: (u32, u32) = (5, 2);

/// The first release with the CPU rule, `cpu_supports_p2pdma()`: dea286bb71ba "PCI/P2PDMA:
/// Allow P2PDMA on AMD Zen and newer CPUs" (applied "to pci/peer-to-peer for v5.9"; in the
/// 5.9 PCI pull), which also dropped the AMD entries of the list.
pub const CPU_RULE_SINCE: (u32, u32) = (5, 9);

impl Known {
    /// Whether release `major.minor.patch` has this entry (mainline, or a stable backport).
    pub fn in_release(&self, major: u32, minor: u32, patch: u32) -> bool {
        let added = (major, minor) >= self.mainline
            || self.stable.is_some_and(|(ma, mi, p)| (major, minor) == (ma, mi) && patch >= p);
        added && self.dropped.is_none_or(|d| (major, minor) < d)
    }
}

/// The whitelist of release `major.minor.patch`, in the kernel's order.
pub fn for_release(major: u32, minor: u32, patch: u32) -> Vec<Entry> {
    TABLE.iter().filter(|k| k.in_release(major, minor, patch)).map(|k| k.entry).collect()
}

/// The name of a vendor:device in the table (for entries read out of a kernel image).
pub fn label_of(vendor: u16, device: u16) -> Option<&'static str> {
    TABLE.iter().find(|k| k.entry.vendor == vendor && k.entry.device == device).map(|k| k.entry.label)
}

/// Every entry of every release, in the kernel's order.
pub const WHITELIST: &[Entry] = &{
    let mut out = [e(0, 0, false, ""); TABLE.len()];
    let mut i = 0;
    while i < TABLE.len() {
        out[i] = TABLE[i].entry;
        i += 1;
    }
    out
};

/// The first entry matching vendor:device in the union of all releases, as
/// `__host_bridge_whitelist` scans; the verdict uses the list in force instead.
pub fn lookup(vendor: u16, device: u16) -> Option<&'static Entry> {
    WHITELIST.iter().find(|e| e.vendor == vendor && (e.device == ANY_DEVICE || e.device == device))
}

/// Whether a release has the CPU rule; an unknown release is judged as the newest (it has).
pub fn cpu_rule_in_release(release: Option<(u32, u32)>) -> bool {
    release.is_none_or(|r| r >= CPU_RULE_SINCE)
}

/// The CPU rule (`cpu_supports_p2pdma`): x86, vendor AMD (not Hygon), family 0x17 (Zen) or newer.
/// Whether the release has the rule at all is [`cpu_rule_in_release`].
pub fn cpu_allows_p2pdma(arch: Option<&str>, vendor: Option<&str>, family: Option<u32>) -> bool {
    let x86 = matches!(arch, None | Some("x86_64") | Some("i686") | Some("i386") | Some("x86"));
    x86 && vendor == Some("AuthenticAMD") && family.is_some_and(|f| f >= 0x17)
}

/// Whether the CPU rule cannot be decided: an x86 (or unknown) machine whose CPU vendor, or
/// an AMD CPU's family, no input gave. A live read always knows it (`/proc/cpuinfo`); an
/// import of pasted outputs may not.
pub fn cpu_rule_unknown(arch: Option<&str>, vendor: Option<&str>, family: Option<u32>) -> bool {
    let x86 = matches!(arch, None | Some("x86_64") | Some("i686") | Some("i386") | Some("x86"));
    x86 && (vendor.is_none() || (vendor == Some("AuthenticAMD") && family.is_none()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_rule_is_unknown_only_without_the_cpu() {
        assert!(cpu_rule_unknown(None, None, None));
        assert!(cpu_rule_unknown(Some("x86_64"), Some("AuthenticAMD"), None));
        assert!(!cpu_rule_unknown(Some("x86_64"), Some("GenuineIntel"), None));
        assert!(!cpu_rule_unknown(Some("x86_64"), Some("AuthenticAMD"), Some(0x19)));
        assert!(!cpu_rule_unknown(Some("ppc64le"), None, None), "the rule is x86 only");
    }

    #[test]
    fn whitelist_lookup_follows_kernel_order() {
        assert!(lookup(0x8086, 0x2030).is_some_and(|e| !e.same_host_bridge_only));
        assert!(lookup(0x8086, 0x3c00).is_some_and(|e| e.same_host_bridge_only));
        assert!(lookup(0x1ae0, 0x1234).is_some());
        assert!(lookup(0x8086, 0x29c0).is_none(), "q35's host bridge is not listed");
        assert!(lookup(0x1022, 0x1480).is_none(), "AMD relies on the CPU rule");
    }

    #[test]
    fn every_entry_appears_in_its_first_release_and_not_before() {
        for known in TABLE {
            let (ma, mi) = known.mainline;
            let has = |v: &[Entry]| v.contains(&known.entry);
            assert!(
                has(&for_release(ma, mi, 0)),
                "{:04x}:{:04x} missing in {ma}.{mi}",
                known.entry.vendor,
                known.entry.device
            );
            let before = if mi == 0 { (ma - 1, 99) } else { (ma, mi - 1) };
            let backported = known.stable.is_some_and(|(sa, si, _)| (sa, si) == before);
            assert!(
                backported || !has(&for_release(before.0, before.1, 999)),
                "{:04x}:{:04x} already in {}.{}",
                known.entry.vendor,
                known.entry.device,
                before.0,
                before.1
            );
            if let Some((sa, si, sp)) = known.stable {
                assert!(has(&for_release(sa, si, sp)), "backport to {sa}.{si}.{sp}");
                assert!(!has(&for_release(sa, si, sp - 1)), "not before {sa}.{si}.{sp}");
            }
        }
    }

    #[test]
    fn release_lists_match_the_kernel_history() {
        let ids = |v: Vec<Entry>| v.iter().map(|e| (e.vendor, e.device)).collect::<Vec<_>>();
        assert!(for_release(5, 1, 0).is_empty(), "no host bridge list before 5.2");
        assert_eq!(ids(for_release(5, 3, 0)), [(0x1022, 0x1450)], "5.2: root_complex_whitelist");
        assert_eq!(
            ids(for_release(5, 4, 0)),
            [(0x1022, 0x1450), (0x8086, 0x3c00), (0x8086, 0x3c01), (0x8086, 0x2f00), (0x8086, 0x2f01)]
        );
        assert_eq!(for_release(6, 6, 0).len(), 10, "6.6: Sandy Bridge .. Ice Lake");
        assert!(!ids(for_release(6, 6, 0)).contains(&(0x8086, 0x0b25)));
        assert!(!ids(for_release(7, 1, 2)).contains(&(0x8086, 0x0b25)));
        assert!(ids(for_release(7, 1, 3)).contains(&(0x8086, 0x0b25)), "7.1.3 stable backport");
        let sid = for_release(7, 2, 13);
        assert_eq!(sid.len(), 21);
        assert!(ids(sid.clone()).contains(&(0x1ae0, ANY_DEVICE)));
        assert!(!ids(sid).contains(&(0x10de, 0x2f95)), "no NVIDIA in 7.2");
        assert!(ids(for_release(7, 3, 0)).contains(&(0x10de, 0x2f95)));
        assert!(!ids(for_release(7, 3, 0)).contains(&(0x1d17, 0x1003)));
        assert_eq!(for_release(7, 4, 0).len(), TABLE.len() - 3, "all but the three AMD entries");
    }

    #[test]
    fn amd_entries_came_in_5_2_and_5_8_and_left_with_the_cpu_rule_in_5_9() {
        // 0f97da831026 (5.2), 7d5b10fcb81e (5.8), dea286bb71ba (5.9) in drivers/pci/p2pdma.c
        let amd =
            |ma, mi| for_release(ma, mi, 0).iter().filter(|e| e.vendor == 0x1022).map(|e| e.device).collect::<Vec<_>>();
        assert!(amd(5, 1).is_empty());
        assert_eq!(amd(5, 2), [0x1450]);
        assert_eq!(amd(5, 7), [0x1450]);
        assert_eq!(amd(5, 8), [0x1450, 0x15d0, 0x1630]);
        assert!(amd(5, 9).is_empty() && amd(7, 2).is_empty());
        assert!(!cpu_rule_in_release(Some((5, 8))));
        assert!(cpu_rule_in_release(Some((5, 9))) && cpu_rule_in_release(None));
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
