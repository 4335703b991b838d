//! Decoding PCI configuration space: the PCIe port type and the ACS extended capability.
//!
//! Input is whatever `/sys/bus/pci/devices/*/config` gave: 64 bytes without root; with
//! root, the kernel's own config size (256 without extended space, else 4096). What 64
//! bytes do not reach is reported as unknown, never guessed.

use serde::{Deserialize, Serialize};

/// `PCI_EXT_CAP_ID_ACS`.
const EXT_CAP_ID_ACS: u16 = 0x0d;
/// `PCI_CAP_ID_EXP`.
const CAP_ID_EXP: u8 = 0x10;

/// ACS control bits (`PCI_ACS_*`).
pub mod acs_bits {
    pub const SV: u16 = 0x0001;
    pub const TB: u16 = 0x0002;
    pub const RR: u16 = 0x0004;
    pub const CR: u16 = 0x0008;
    pub const UF: u16 = 0x0010;
    pub const EC: u16 = 0x0020;
    pub const DT: u16 = 0x0040;
    /// The bits `pci_bridge_has_acs_redir()` treats as redirecting peer traffic.
    pub const REDIRECT: u16 = RR | CR | EC;
    /// The bits `pci_std_enable_acs()` turns on when an IOMMU asked for ACS.
    pub const IOMMU_DEFAULT: u16 = SV | RR | CR | UF;
    /// Every bit the ACS control register defines.
    pub const ALL: u16 = SV | TB | RR | CR | UF | EC | DT;

    /// The bits as `lspci -vv` prints them (`ACSCap:` / `ACSCtl:`), every bit with + or -:
    /// `SrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-`.
    pub fn lspci(bits: u16) -> String {
        [
            (SV, "SrcValid"),
            (TB, "TransBlk"),
            (RR, "ReqRedir"),
            (CR, "CmpltRedir"),
            (UF, "UpstreamFwd"),
            (EC, "EgressCtrl"),
            (DT, "DirectTrans"),
        ]
        .iter()
        .map(|(b, n)| format!("{n}{}", if bits & b != 0 { '+' } else { '-' }))
        .collect::<Vec<_>>()
        .join(" ")
    }

    /// Short names of the set bits, e.g. `["RR", "CR"]`.
    pub fn names(bits: u16) -> Vec<&'static str> {
        [(SV, "SV"), (TB, "TB"), (RR, "RR"), (CR, "CR"), (UF, "UF"), (EC, "EC"), (DT, "DT")]
            .into_iter()
            .filter(|(b, _)| bits & b != 0)
            .map(|(_, n)| n)
            .collect()
    }
}

/// The device/port type from the PCI Express capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortType {
    Endpoint,
    LegacyEndpoint,
    RootPort,
    SwitchUpstream,
    SwitchDownstream,
    PcieToPciBridge,
    PciToPcieBridge,
    RootComplexIntegratedEndpoint,
    RootComplexEventCollector,
    Other(u8),
}

impl PortType {
    pub fn from_raw(v: u8) -> Self {
        match v {
            0x0 => PortType::Endpoint,
            0x1 => PortType::LegacyEndpoint,
            0x4 => PortType::RootPort,
            0x5 => PortType::SwitchUpstream,
            0x6 => PortType::SwitchDownstream,
            0x7 => PortType::PcieToPciBridge,
            0x8 => PortType::PciToPcieBridge,
            0x9 => PortType::RootComplexIntegratedEndpoint,
            0xa => PortType::RootComplexEventCollector,
            other => PortType::Other(other),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            PortType::Endpoint | PortType::LegacyEndpoint => "endpoint",
            PortType::RootPort => "root port",
            PortType::SwitchUpstream => "switch upstream port",
            PortType::SwitchDownstream => "switch downstream port",
            PortType::PcieToPciBridge | PortType::PciToPcieBridge => "PCIe/PCI bridge",
            PortType::RootComplexIntegratedEndpoint => "integrated endpoint",
            PortType::RootComplexEventCollector => "event collector",
            PortType::Other(_) => "other",
        }
    }
}

/// What is known of a device's ACS capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Acs {
    /// The device has no ACS capability: it never redirects.
    Absent,
    /// Extended config space could not be read (needs root): nobody can tell.
    Unknown,
    /// The capability at `offset`, its capability and control registers.
    Present { offset: u16, cap: u16, ctrl: u16 },
}

impl Acs {
    /// Redirect bits set in the control register (`Some(0)` when none, `None` when unknown).
    pub fn redirect_bits(self) -> Option<u16> {
        match self {
            Acs::Absent => Some(0),
            Acs::Unknown => None,
            Acs::Present { ctrl, .. } => Some(ctrl & acs_bits::REDIRECT),
        }
    }
}

impl Acs {
    /// `ACSCap: ...` and `ACSCtl: ...` as `lspci -vv` prints them; None without the capability,
    /// `ACS: unknown (...)` when it could not be read.
    pub fn lspci(self) -> Option<String> {
        match self {
            Acs::Absent => None,
            Acs::Unknown => Some("ACS: unknown (extended config space not readable without root)".into()),
            Acs::Present { cap, ctrl, .. } => {
                Some(format!("ACSCap: {} ACSCtl: {}", acs_bits::lspci(cap), acs_bits::lspci(ctrl)))
            }
        }
    }
}

/// The PCI bus address a memory BAR register holds (`PCI_BASE_ADDRESS_n`, with the next
/// register for a 64-bit BAR): what a peer must put on the bus to reach the BAR. None for
/// an I/O BAR, a BAR beyond the header's registers, or bytes not read.
pub fn bar_bus_address(bytes: &[u8], index: u8, is_bridge: bool) -> Option<u64> {
    let count = if is_bridge { 2 } else { 6 };
    if index >= count {
        return None;
    }
    let off = 0x10 + 4 * index as usize;
    let low = u32_at(bytes, off)?;
    if low & 1 != 0 {
        return None; // I/O space
    }
    let base = (low & !0xf) as u64;
    if (low >> 1) & 3 == 2 {
        if index + 1 >= count {
            return None;
        }
        Some(base | (u32_at(bytes, off + 4)? as u64) << 32)
    } else {
        Some(base)
    }
}

/// What the config bytes say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Header type 1: a PCI-to-PCI bridge (ports are bridges).
    pub is_bridge: bool,
    pub multifunction: bool,
    /// None when the device is not PCIe or the capability lies beyond the bytes read.
    pub port_type: Option<PortType>,
    pub acs: Acs,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes([*b.get(off)?, *b.get(off + 1)?, *b.get(off + 2)?, *b.get(off + 3)?]))
}

/// Decodes raw config space. Never panics, whatever the bytes.
pub fn decode(bytes: &[u8]) -> Decoded {
    let header = bytes.get(0x0e).copied().unwrap_or(0);
    let port_type = find_cap(bytes, CAP_ID_EXP)
        .and_then(|off| u16_at(bytes, off + 2))
        .map(|flags| PortType::from_raw(((flags >> 4) & 0xf) as u8));
    Decoded { is_bridge: header & 0x7f == 1, multifunction: header & 0x80 != 0, port_type, acs: find_acs(bytes) }
}

/// Walks the standard capability list (bounded, loop-safe).
fn find_cap(bytes: &[u8], id: u8) -> Option<usize> {
    let status = u16_at(bytes, 0x06)?;
    if status & 0x10 == 0 {
        return None;
    }
    let mut pos = (*bytes.get(0x34)? & 0xfc) as usize;
    for _ in 0..48 {
        if pos < 0x40 {
            return None;
        }
        let cap_id = *bytes.get(pos)?;
        if cap_id == id {
            return Some(pos);
        }
        pos = (*bytes.get(pos + 1)? & 0xfc) as usize;
    }
    None
}

/// Walks the extended capability list from 0x100 looking for ACS.
fn find_acs(bytes: &[u8]) -> Acs {
    if bytes.len() < 0x100 {
        // Without root sysfs gives 64 bytes (128 for CardBus): nobody can tell.
        return Acs::Unknown;
    }
    if bytes.len() < 0x1000 {
        // Root reads the kernel's whole config size: 256 means no extended space at all
        // (no ECAM), so the kernel finds no ACS capability either.
        return Acs::Absent;
    }
    let mut pos = 0x100usize;
    for _ in 0..((0x1000 - 0x100) / 4) {
        let header = match u32_at(bytes, pos) {
            Some(h) => h,
            None => return Acs::Unknown,
        };
        if header == 0 || header == 0xffff_ffff {
            return Acs::Absent;
        }
        if (header & 0xffff) as u16 == EXT_CAP_ID_ACS {
            return match (u16_at(bytes, pos + 4), u16_at(bytes, pos + 6)) {
                (Some(cap), Some(ctrl)) => Acs::Present { offset: pos as u16, cap, ctrl },
                _ => Acs::Unknown,
            };
        }
        let next = ((header >> 20) & 0xffc) as usize;
        if next < 0x100 {
            return Acs::Absent;
        }
        pos = next;
    }
    Acs::Absent
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A 4 KiB config space for a root port with an ACS capability at 0x148, as QEMU builds it.
    pub(crate) fn root_port_config(acs_cap: u16, acs_ctrl: u16) -> Vec<u8> {
        let mut c = vec![0u8; 4096];
        c[0..2].copy_from_slice(&0x1b36u16.to_le_bytes());
        c[2..4].copy_from_slice(&0x000cu16.to_le_bytes());
        c[0x06] = 0x10; // capability list
        c[0x0e] = 0x01; // bridge header
        c[0x34] = 0x40;
        c[0x40] = CAP_ID_EXP;
        c[0x41] = 0x00;
        c[0x42] = 0x42; // version 2, type 4 = root port
                        // Extended: AER at 0x100 -> ACS at 0x148.
        c[0x100..0x104].copy_from_slice(&(0x0001u32 | (1 << 16) | (0x148 << 20)).to_le_bytes());
        c[0x148..0x14c].copy_from_slice(&(0x000du32 | (1 << 16)).to_le_bytes());
        c[0x14c..0x14e].copy_from_slice(&acs_cap.to_le_bytes());
        c[0x14e..0x150].copy_from_slice(&acs_ctrl.to_le_bytes());
        c
    }

    #[test]
    fn decode_root_port_with_acs() {
        let d = decode(&root_port_config(0x5f, 0x1d));
        assert!(d.is_bridge);
        assert_eq!(d.port_type, Some(PortType::RootPort));
        assert_eq!(d.acs, Acs::Present { offset: 0x148, cap: 0x5f, ctrl: 0x1d });
        assert_eq!(d.acs.redirect_bits(), Some(0x0c));
        assert_eq!(acs_bits::names(0x1d), ["SV", "RR", "CR", "UF"]);
    }

    #[test]
    fn acs_prints_like_lspci() {
        let acs = Acs::Present { offset: 0x148, cap: 0x5f, ctrl: 0x1d };
        assert_eq!(
            acs.lspci().unwrap(),
            "ACSCap: SrcValid+ TransBlk+ ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans+ \
             ACSCtl: SrcValid+ TransBlk- ReqRedir+ CmpltRedir+ UpstreamFwd+ EgressCtrl- DirectTrans-"
        );
        assert_eq!(Acs::Absent.lspci(), None);
        assert!(Acs::Unknown.lspci().unwrap().contains("unknown"));
    }

    #[test]
    fn bar_registers_give_bus_addresses_32_and_64_bit() {
        let mut c = vec![0u8; 64];
        c[0x10..0x14].copy_from_slice(&0xfe00_0000u32.to_le_bytes()); // BAR0: 32-bit memory
        c[0x14..0x18].copy_from_slice(&0x0000_c001u32.to_le_bytes()); // BAR1: I/O
        c[0x18..0x1c].copy_from_slice(&0x8000_000cu32.to_le_bytes()); // BAR2: 64-bit prefetchable
        c[0x1c..0x20].copy_from_slice(&0x0000_0038u32.to_le_bytes());
        assert_eq!(bar_bus_address(&c, 0, false), Some(0xfe00_0000));
        assert_eq!(bar_bus_address(&c, 1, false), None);
        assert_eq!(bar_bus_address(&c, 2, false), Some(0x38_8000_0000));
        assert_eq!(bar_bus_address(&c, 2, true), None, "a bridge has two BARs");
        assert_eq!(bar_bus_address(&c[..0x1c], 2, false), None, "high half not read");
        assert_eq!(bar_bus_address(&c, 9, false), None);
    }

    #[test]
    fn decode_short_config_leaves_acs_unknown() {
        let full = root_port_config(0x5f, 0x1d);
        assert_eq!(decode(&full[..64]).acs, Acs::Unknown);
        assert_eq!(decode(&full[..64]).port_type, None);
        assert_eq!(decode(&full[..256]).port_type, Some(PortType::RootPort));
        assert_eq!(decode(&full[..256]).acs, Acs::Absent, "256 bytes as root: no extended space");
    }

    #[test]
    fn decode_without_extended_caps_is_absent() {
        let mut c = root_port_config(0, 0);
        c[0x100..0x104].fill(0);
        assert_eq!(decode(&c).acs, Acs::Absent);
    }

    #[test]
    fn decode_survives_capability_loops() {
        let mut c = root_port_config(0, 0);
        c[0x41] = 0x40; // standard list points to itself
        c[0x148..0x14c].copy_from_slice(&(0x0002u32 | (0x148 << 20)).to_le_bytes()); // ext loop
        let d = decode(&c);
        assert_eq!(d.acs, Acs::Absent);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..4200), bar in any::<u8>()) {
            let _ = decode(&bytes);
            let _ = bar_bus_address(&bytes, bar, bar & 1 == 0);
        }

        #[test]
        fn decode_never_panics_on_mutated_real_config(pos in 0usize..4096, val in any::<u8>(), pos2 in 0usize..4096, val2 in any::<u8>()) {
            let mut c = root_port_config(0x5f, 0x1d);
            c[pos] = val;
            c[pos2] = val2;
            let _ = decode(&c);
        }
    }
}
