//! The hardware path between two devices, classed as `nvidia-smi topo -m` does (`X`, `PIX`,
//! `PXB`, `PHB`, `NODE`, `SYS`), and the device classes the matrix filters by.
//!
//! The path class is the wiring, not the kernel's decision: two GPUs below one switch are
//! `PIX` even when ACS redirects their traffic to the root complex (the verdict says `HB`).

use serde::Serialize;

use crate::model::Device;

/// `nvidia-smi topo -m`'s connection types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum PathClass {
    /// The device itself.
    X,
    /// At most one PCIe switch between them (or functions of one device).
    PIX,
    /// Several PCIe switches, no host bridge.
    PXB,
    /// Through a host bridge (root complex): no common bridge below it.
    PHB,
    /// Between host bridges of one NUMA node.
    NODE,
    /// Across NUMA nodes: the socket interconnect.
    SYS,
}

impl PathClass {
    pub fn as_str(self) -> &'static str {
        match self {
            PathClass::X => "X",
            PathClass::PIX => "PIX",
            PathClass::PXB => "PXB",
            PathClass::PHB => "PHB",
            PathClass::NODE => "NODE",
            PathClass::SYS => "SYS",
        }
    }

    /// The class from what the walk found: the number of switches crossed below the common
    /// device, whether there is one, whether both sit under one host bridge, and their NUMA
    /// nodes (`None` or negative: unknown, then taken as the same node).
    pub fn classify(
        same_device: bool,
        common: bool,
        switches: u32,
        same_host_bridge: bool,
        numa: (Option<i32>, Option<i32>),
    ) -> PathClass {
        let known = |n: Option<i32>| n.filter(|&n| n >= 0);
        match () {
            _ if same_device => PathClass::X,
            _ if common && switches <= 1 => PathClass::PIX,
            _ if common => PathClass::PXB,
            _ if same_host_bridge => PathClass::PHB,
            _ => match (known(numa.0), known(numa.1)) {
                (Some(a), Some(b)) if a != b => PathClass::SYS,
                _ => PathClass::NODE,
            },
        }
    }
}

pub const PATH_CLASS_LEGEND: &str = "  X    = self\n  PIX  = at most one PCIe switch between them\n  PXB  = several PCIe switches, no host bridge\n  PHB  = through a host bridge (root complex)\n  NODE = between host bridges of one NUMA node\n  SYS  = across NUMA nodes (the socket interconnect)\n";

/// The kinds of device the matrix can be narrowed to (`--class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    /// Display controllers and 3D controllers (class 0x03).
    Gpu,
    /// Network and InfiniBand controllers (class 0x02).
    Nic,
    /// NVMe controllers (0x0108).
    Nvme,
    /// Other mass storage (SATA, SAS, RAID).
    Storage,
    /// Processing accelerators (0x12) and co-processors (0x0b40): FPGAs, AI cards.
    Accel,
    /// Everything else.
    Other,
}

impl DeviceClass {
    pub const ALL: [DeviceClass; 6] = [
        DeviceClass::Gpu,
        DeviceClass::Nic,
        DeviceClass::Nvme,
        DeviceClass::Storage,
        DeviceClass::Accel,
        DeviceClass::Other,
    ];

    pub fn of(d: &Device) -> DeviceClass {
        match (d.class >> 16, d.class >> 8) {
            (_, 0x0108) => DeviceClass::Nvme,
            (0x01, _) => DeviceClass::Storage,
            (0x02, _) => DeviceClass::Nic,
            (0x03, _) => DeviceClass::Gpu,
            (0x12, _) | (_, 0x0b40) => DeviceClass::Accel,
            _ => DeviceClass::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Gpu => "gpu",
            DeviceClass::Nic => "nic",
            DeviceClass::Nvme => "nvme",
            DeviceClass::Storage => "storage",
            DeviceClass::Accel => "accel",
            DeviceClass::Other => "other",
        }
    }

    /// `gpu`, `nic`, ... (one name).
    pub fn parse(s: &str) -> Result<DeviceClass, crate::Error> {
        DeviceClass::ALL.into_iter().find(|c| c.as_str().eq_ignore_ascii_case(s.trim())).ok_or_else(|| {
            let names: Vec<&str> = DeviceClass::ALL.iter().map(|c| c.as_str()).collect();
            crate::Error::BadValue(format!("unknown device class `{s}` (one of {})", names.join(", ")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_follows_nvidia_smi_meaning() {
        let n = (Some(0), Some(0));
        assert_eq!(PathClass::classify(true, true, 0, true, n), PathClass::X);
        assert_eq!(PathClass::classify(false, true, 0, true, n), PathClass::PIX, "functions of one device");
        assert_eq!(PathClass::classify(false, true, 1, true, n), PathClass::PIX);
        assert_eq!(PathClass::classify(false, true, 2, true, n), PathClass::PXB);
        assert_eq!(PathClass::classify(false, false, 0, true, n), PathClass::PHB);
        assert_eq!(PathClass::classify(false, false, 0, false, n), PathClass::NODE);
        assert_eq!(PathClass::classify(false, false, 0, false, (Some(0), Some(1))), PathClass::SYS);
        assert_eq!(PathClass::classify(false, false, 0, false, (Some(-1), Some(1))), PathClass::NODE);
    }

    #[test]
    fn device_class_names_parse_back() {
        for c in DeviceClass::ALL {
            assert_eq!(DeviceClass::parse(c.as_str()).ok(), Some(c));
        }
        assert!(DeviceClass::parse("fpga").unwrap_err().to_string().contains("gpu, nic"));
    }
}
