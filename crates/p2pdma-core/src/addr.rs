//! `p2pdma addr CLIENT TARGET[:BAR][+OFFSET]`: the address a client's DMA engine must put
//! on the bus to reach a peer's BAR, and whether such an address exists at all.
//!
//! A BAR has two addresses. The CPU's (sysfs `resource`, `/proc/iomem`, the kernel's "added
//! peer-to-peer DMA memory" line) is a CPU physical address; the one a peer must use is the
//! PCI bus address, what the BAR register in config space holds. They differ by the host
//! bridge's window offset (zero on most x86 machines, not on many arm64 and POWER ones).
//! The kernel itself maps P2P by bus address (`pci_p2pdma_bus_addr_map`: CPU address minus
//! the bus offset) only when the pair shares a switch without ACS redirection; through the
//! host bridge it maps like host memory, through the IOMMU when one translates.

use serde::Serialize;

use crate::analysis::{client_index, provider_index};
use crate::model::{Bar, Device};
use crate::verdict::{Engine, MapType};
use crate::{Bdf, Error};

/// `TARGET[:BAR][+OFFSET]` as typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub device: String,
    pub bar: Option<u8>,
    pub offset: u64,
}

impl TargetSpec {
    /// `gpu0`, `gpu0:1`, `0000:03:00.0:2+0x1000`, `nvme-a+64K`.
    pub fn parse(s: &str) -> Result<TargetSpec, Error> {
        Self::parse_text(s).map_err(Error::BadValue)
    }

    fn parse_text(s: &str) -> Result<TargetSpec, String> {
        let (rest, offset) = match s.rsplit_once('+') {
            Some((r, o)) => (r, parse_offset(o).map_err(|e| format!("{s}: {e}"))?),
            None => (s, 0),
        };
        // After the last `:` a BDF has `DEVICE.FUNCTION`; anything without a `.` is a BAR.
        let (device, bar) = match rest.rsplit_once(':') {
            Some((d, b)) if !b.contains('.') => {
                let bar: u8 =
                    b.parse().ok().filter(|&n| n <= 5).ok_or_else(|| format!("{s}: BAR `{b}` is not 0 to 5"))?;
                (d, Some(bar))
            }
            _ => (rest, None),
        };
        if device.is_empty() {
            return Err(format!("`{s}` names no device (TARGET[:BAR][+OFFSET], e.g. gpu0:1+0x1000)"));
        }
        Ok(TargetSpec { device: device.to_string(), bar, offset })
    }
}

/// `4096`, `0x1000`, `64K`, `2M`, `1G`.
fn parse_offset(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => crate::spec::suffixed_bytes(t),
    };
    parsed.ok_or_else(|| {
        let well_formed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(hex) => !hex.is_empty() && hex.bytes().all(|c| c.is_ascii_hexdigit()),
            None => {
                let digits = t.trim_end_matches(['K', 'k', 'M', 'm', 'G', 'g', 'T', 't']);
                !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())
            }
        };
        if t.starts_with('-') {
            format!("offset `{s}` is negative")
        } else if well_formed {
            format!("offset `{s}` is too large: more than 16 EiB")
        } else {
            format!("offset `{s}` is not a number (4096, 0x1000, 64K)")
        }
    })
}

/// How the client reaches the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// Below a common switch, no ACS redirect: the bus address is what the client uses.
    BusAddress,
    /// Through the host bridge (root complex); with a translating IOMMU no fixed address.
    ThroughHostBridge,
    /// The kernel refuses the pair.
    Refused,
}

/// `p2pdma addr --json`.
#[derive(Debug, Clone, Serialize)]
pub struct AddrReport {
    pub client: Bdf,
    pub client_name: Option<String>,
    pub target: Bdf,
    pub target_name: Option<String>,
    pub bar: Bar,
    /// Whether the BAR was chosen because it holds the target's P2P memory.
    pub bar_holds_p2pmem: bool,
    pub offset: u64,
    /// The PCI bus address at the offset: BAR register + offset. None when config space
    /// was not read (a snapshot of an older p2pdma).
    pub bus_address: Option<u64>,
    /// The CPU physical address at the offset (`resource` + offset): not for the client.
    pub cpu_address: u64,
    /// CPU address minus bus address: the host bridge's window offset.
    pub host_bridge_offset: Option<i128>,
    pub route: Route,
    pub map_type: MapType,
    pub distance: Option<u32>,
    /// False when ACS that could not be read could change the route.
    pub certain: bool,
    pub iommu: Option<bool>,
    /// The address to program into the client's DMA engine, when one fixed address exists.
    pub dma_address: Option<u64>,
    /// What to do, in order.
    pub advice: Vec<String>,
    /// Why, from the verdict.
    pub reasons: Vec<String>,
}

/// The address `client` must use to reach `target`: the BAR chosen, the route the
/// verdict gives, then the address and what to do with it.
pub fn addr(engine: &Engine<'_>, client: &str, target: &TargetSpec) -> Result<AddrReport, Error> {
    let c = client_index(engine, client)?;
    let t = provider_index(engine, &target.device, true)?;
    let (cd, td) = (engine.device(c), engine.device(t));
    let p2p_bar = td.p2pmem.as_ref().and_then(|m| crate::spec::p2pmem_bar(&td.bars, m.size)).map(|b| b.index);
    let bar = target_bar(td, target, p2p_bar)?;
    let v = engine.explain(t, c);
    let route = match v.map_type {
        MapType::BusAddr => Route::BusAddress,
        MapType::ThruHostBridge => Route::ThroughHostBridge,
        MapType::NotSupported => Route::Refused,
    };
    // Snapshots from before BAR registers were recorded still carry raw config space.
    let bus_start = bar.bus_start.or_else(|| {
        let bytes = td.config_hex.as_deref().and_then(unhex)?;
        crate::config::bar_bus_address(&bytes, bar.index, td.is_pci_bridge())
    });
    let bar = &Bar { bus_start, ..bar.clone() };
    let bus_address = bar.bus_start.map(|b| b + target.offset);
    let iommu = engine.topo.machine.iommu;
    let (dma_address, advice) = advise(cd.bdf, bar, route, bus_address, iommu);
    Ok(AddrReport {
        client: cd.bdf,
        client_name: cd.name.clone(),
        target: td.bdf,
        target_name: td.name.clone(),
        bar: bar.clone(),
        bar_holds_p2pmem: p2p_bar == Some(bar.index),
        offset: target.offset,
        bus_address,
        cpu_address: bar.start + target.offset,
        host_bridge_offset: bar.bus_start.map(|b| bar.start as i128 - b as i128),
        route,
        map_type: v.map_type,
        distance: v.distance,
        certain: v.certain,
        iommu,
        dma_address,
        advice,
        reasons: v.reasons,
    })
}

/// The memory BAR asked for (else the one holding P2P memory, else the first), with the
/// offset inside it.
fn target_bar<'d>(td: &'d Device, target: &TargetSpec, p2p_bar: Option<u8>) -> Result<&'d Bar, Error> {
    let memory: Vec<&Bar> = td.memory_bars().collect();
    if memory.is_empty() {
        return Err(Error::WrongRole(format!("{} has no memory BAR to address", td.label())));
    }
    let list = || memory.iter().map(|b| b.index.to_string()).collect::<Vec<_>>().join(", ");
    let bar = match target.bar {
        Some(i) => match td.bars.iter().find(|b| b.index == i) {
            Some(b) if b.memory => b,
            Some(_) => {
                return Err(Error::WrongRole(format!(
                    "{} BAR {i} is an I/O BAR, not memory (memory BARs: {})",
                    td.label(),
                    list()
                )))
            }
            None => return Err(Error::WrongRole(format!("{} has no BAR {i} (memory BARs: {})", td.label(), list()))),
        },
        None => p2p_bar.and_then(|i| memory.iter().copied().find(|b| b.index == i)).unwrap_or(memory[0]),
    };
    if target.offset >= bar.size {
        return Err(Error::WrongRole(format!(
            "{} BAR {}: offset {:#x} is past the BAR's end (size {:#x})",
            td.label(),
            bar.index,
            target.offset,
            bar.size
        )));
    }
    Ok(bar)
}

/// The address to program into the client (when one fixed address exists) and what to
/// do, in order, for the route.
fn advise(
    client: Bdf,
    bar: &Bar,
    route: Route,
    bus_address: Option<u64>,
    iommu: Option<bool>,
) -> (Option<u64>, Vec<String>) {
    let mut advice = Vec::new();
    let dma_address = match route {
        Route::BusAddress => {
            match bus_address {
                Some(a) => advice.push(format!(
                    "program {a:#x} into {client}'s DMA engine: the pair shares a switch without ACS redirection, so the switch routes it by PCI bus address (no IOMMU on the way)"
                )),
                None => advice.push("the BAR register was not read (config space): take a new snapshot, or read it with `setpci -s BDF BASE_ADDRESS_n`".into()),
            }
            bus_address
        }
        Route::ThroughHostBridge if iommu != Some(false) => {
            advice.push(format!(
                "no fixed address: the traffic goes up to the root complex and {}, so the client needs a DMA mapping of the BAR: with VFIO, map the BAR's mmap into the client's IOMMU domain (VFIO_IOMMU_MAP_DMA) and use that IOVA; with kernel drivers, a dma-buf export of the BAR that the client's driver imports (dma_buf_map_attachment gives the address)",
                if iommu == Some(true) { "the IOMMU translates every address the client uses" } else { "an IOMMU may translate it (unknown here)" }
            ));
            None
        }
        Route::ThroughHostBridge => {
            advice.push(format!(
                "through the root complex without an IOMMU: {client} reaches the BAR at its bus address{}",
                bus_address.map(|a| format!(" {a:#x}")).unwrap_or_default()
            ));
            bus_address
        }
        Route::Refused => {
            advice.push(
                "the kernel refuses this pair: no address will work through its DMA API (see the reasons)".into(),
            );
            None
        }
    };
    if route != Route::Refused {
        advice.push(format!(
            "test with posted writes first ({client} writing into the BAR): writes need no completion, while reads need completions routed back, which root complexes drop more often"
        ));
    }
    if let (Some(b), true) = (bar.bus_start, bar.bus_start != Some(bar.start)) {
        advice.push(format!(
            "the CPU address {:#x} (sysfs resource) is not the bus address {:#x}: never program the CPU address into a device",
            bar.start, b
        ));
    }
    (dma_address, advice)
}

/// The hex of `config_hex` back to bytes; None if it is not hex.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_specs_parse_bdf_bar_and_offset() {
        let t = |s: &str| TargetSpec::parse(s).unwrap();
        assert_eq!(t("gpu0"), TargetSpec { device: "gpu0".into(), bar: None, offset: 0 });
        assert_eq!(t("gpu0:1+0x1000"), TargetSpec { device: "gpu0".into(), bar: Some(1), offset: 0x1000 });
        assert_eq!(t("0000:03:00.0:2+64K"), TargetSpec { device: "0000:03:00.0".into(), bar: Some(2), offset: 65536 });
        assert_eq!(t("03:00.0"), TargetSpec { device: "03:00.0".into(), bar: None, offset: 0 });
        assert!(TargetSpec::parse("gpu0:7").unwrap_err().to_string().contains("not 0 to 5"));
        assert!(TargetSpec::parse("gpu0+lots").unwrap_err().to_string().contains("not a number"));
        assert!(TargetSpec::parse(":1").is_err());
        assert!(TargetSpec::parse("gpu0:-1").unwrap_err().to_string().contains("BAR `-1` is not 0 to 5"));
        assert!(TargetSpec::parse("gpu0:bar1").unwrap_err().to_string().contains("BAR `bar1`"));
        assert!(TargetSpec::parse("gpu0:").unwrap_err().to_string().contains("BAR ``"));
        assert!(TargetSpec::parse("gpu0:1+-5").unwrap_err().to_string().contains("is negative"));
        assert!(TargetSpec::parse("gpu0:1+99999999999G").unwrap_err().to_string().contains("too large"));
        assert!(TargetSpec::parse("gpu0+0xffffffffffffffffff").unwrap_err().to_string().contains("too large"));
        assert_eq!(t("0000:03:00.0:2+0x1000").device, "0000:03:00.0");
        assert_eq!(t("03:00.0").bar, None);
    }

    #[test]
    fn unhex_reads_config_hex_and_refuses_garbage() {
        assert_eq!(unhex("00fe10"), Some(vec![0, 0xfe, 0x10]));
        assert_eq!(unhex("0"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }
}
