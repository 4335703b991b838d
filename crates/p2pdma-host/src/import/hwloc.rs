//! hwloc XML (`lstopo machine.xml`; v1, v2 and the 3.0 of hwloc 3.x): PCI devices
//! (`pci_busid`, `pci_type`), bridges with their bus ranges (`bridge_pci="0000:[00-15]"`;
//! a host bridge is `bridge_type="0-..."` without `pci_busid`), NUMA nodes, and the machine's
//! `info` (OS release, architecture, CPU vendor and family). hwloc exports no config space:
//! ACS and port types are not in it.

use p2pdma_core::Bdf;
use serde::Serialize;

use crate::Error;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HwlocTopology {
    /// The `version` attribute of `<topology>` (`3.0`; absent in v1 files).
    pub version: Option<String>,
    /// Host bridges: (domain, first bus, last bus, NUMA node).
    pub host_bridges: Vec<(u32, u8, u8, Option<i32>)>,
    pub devices: Vec<HwlocPci>,
    /// `os_index` of every NUMA node.
    pub numa_nodes: Vec<u32>,
    pub os_release: Option<String>,
    pub arch: Option<String>,
    pub cpu_vendor: Option<String>,
    pub cpu_family: Option<u32>,
    pub cpu_model_name: Option<String>,
    pub packages: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HwlocPci {
    pub bdf: Bdf,
    /// The bridge above (a `Bridge` object with a `pci_busid`); None under a host bridge.
    pub parent: Option<Bdf>,
    pub class: Option<u16>,
    pub vendor: Option<u16>,
    pub device: Option<u16>,
    pub subsystem: Option<(u16, u16)>,
    /// A bridge's secondary and subordinate bus.
    pub range: Option<(u8, u8)>,
    pub numa_node: Option<i32>,
    pub name: Option<String>,
    /// The line of the object in the document.
    pub line: usize,
}

/// `0000:[00-15]` → (domain, first, last).
fn bridge_pci(s: &str) -> Option<(u32, u8, u8)> {
    let (dom, rest) = s.split_once(':')?;
    let inner = rest.strip_prefix('[')?.strip_suffix(']')?;
    let (a, b) = inner.split_once('-')?;
    Some((u32::from_str_radix(dom, 16).ok()?, u8::from_str_radix(a, 16).ok()?, u8::from_str_radix(b, 16).ok()?))
}

/// `0200 [8086:1521] [1137:008b] 01 00` → (class, ids, subsystem ids).
/// Class, IDs and subsystem IDs.
type PciType = (Option<u16>, Option<(u16, u16)>, Option<(u16, u16)>);

fn pci_type(s: &str) -> PciType {
    let mut words = s.split_whitespace();
    let class = words.next().and_then(|c| u16::from_str_radix(c, 16).ok());
    let ids = |w: Option<&str>| {
        let (v, d) = w?.strip_prefix('[')?.strip_suffix(']')?.split_once(':')?;
        Some((u16::from_str_radix(v, 16).ok()?, u16::from_str_radix(d, 16).ok()?))
    };
    let id = ids(words.next());
    let sub = ids(words.next());
    (class, id, sub)
}

/// A nodeset bitmap (`0x00000003`, `0x00000001,0x00000000`): the only node, if one.
fn single_node(nodeset: &str) -> Option<i32> {
    let mut bits = Vec::new();
    // Comma-separated 32-bit words, most significant first.
    let words: Vec<&str> = nodeset.split(',').collect();
    for (k, w) in words.iter().rev().enumerate() {
        let v = u32::from_str_radix(w.trim().trim_start_matches("0x"), 16).ok()?;
        for bit in 0..32 {
            if v & (1 << bit) != 0 {
                bits.push(k * 32 + bit);
            }
        }
    }
    match bits.as_slice() {
        [one] => i32::try_from(*one).ok(),
        _ => None,
    }
}

fn info<'a>(node: roxmltree::Node<'a, 'a>, name: &str) -> Option<&'a str> {
    node.children()
        .find(|c| c.has_tag_name("info") && c.attribute("name") == Some(name))
        .and_then(|c| c.attribute("value"))
}

/// The NUMA node of an I/O object: its nearest ancestor that is a NUMA node (v1) or has a
/// nodeset naming one node (v2/v3: I/O objects hang from packages or groups).
fn numa_of(node: roxmltree::Node<'_, '_>) -> Option<i32> {
    for a in node.ancestors().skip(1) {
        if !a.has_tag_name("object") {
            continue;
        }
        if a.attribute("type") == Some("NUMANode") {
            return a.attribute("os_index").and_then(|i| i.parse().ok());
        }
        if let Some(ns) = a.attribute("nodeset") {
            return single_node(ns);
        }
    }
    None
}

/// Parses a document. Never panics; malformed XML or no `<topology>` is an error.
pub fn parse(bytes: &[u8]) -> Result<HwlocTopology, Error> {
    if bytes.len() > crate::import::MAX_INPUT_BYTES {
        return Err(Error::invalid("hwloc XML", "larger than 16 MiB"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| Error::invalid("hwloc XML", "not UTF-8"))?;
    let opts = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(text, opts)
        .map_err(|e| Error::invalid("hwloc XML", format!("not well-formed XML ({e})")))?;
    let root = doc.root_element();
    if !root.has_tag_name("topology") {
        return Err(Error::invalid("hwloc XML", "the root element is not <topology>"));
    }
    let mut t = HwlocTopology { version: root.attribute("version").map(str::to_string), ..Default::default() };
    // hwloc 3 writes the machine's `info` under `<topology>` itself.
    t.os_release = info(root, "OSRelease").map(str::to_string);
    t.arch = info(root, "Architecture").map(str::to_string);
    for node in root.descendants().filter(|n| n.has_tag_name("object")) {
        let line = doc.text_pos_at(node.range().start).row as usize;
        match node.attribute("type") {
            Some("Machine") => {
                t.os_release = t.os_release.take().or_else(|| info(node, "OSRelease").map(str::to_string));
                t.arch = t.arch.take().or_else(|| info(node, "Architecture").map(str::to_string));
            }
            Some("Package") => {
                t.packages += 1;
                t.cpu_vendor = t.cpu_vendor.take().or_else(|| info(node, "CPUVendor").map(str::to_string));
                t.cpu_family = t.cpu_family.or_else(|| info(node, "CPUFamilyNumber").and_then(|f| f.parse().ok()));
                t.cpu_model_name = t.cpu_model_name.take().or_else(|| info(node, "CPUModel").map(str::to_string));
            }
            Some("NUMANode") => {
                if let Some(i) = node.attribute("os_index").and_then(|i| i.parse().ok()) {
                    t.numa_nodes.push(i);
                }
            }
            Some(kind @ ("PCIDev" | "Bridge")) => {
                let range = node.attribute("bridge_pci").and_then(bridge_pci);
                let Some(busid) = node.attribute("pci_busid") else {
                    // A host bridge: no address of its own.
                    if kind == "Bridge" {
                        if let Some((d, a, b)) = range {
                            t.host_bridges.push((d, a, b, numa_of(node)));
                        }
                    }
                    continue;
                };
                let Ok(bdf) = busid.parse::<Bdf>() else { continue };
                let parent = node
                    .ancestors()
                    .skip(1)
                    .find(|a| a.has_tag_name("object"))
                    .filter(|a| a.attribute("type") == Some("Bridge"))
                    .and_then(|a| a.attribute("pci_busid"))
                    .and_then(|b| b.parse::<Bdf>().ok());
                let (class, ids, sub) = node.attribute("pci_type").map(pci_type).unwrap_or((None, None, None));
                let name = match (info(node, "PCIVendor"), info(node, "PCIDevice")) {
                    (Some(v), Some(d)) => Some(format!("{v} {d}")),
                    _ => None,
                };
                t.devices.push(HwlocPci {
                    bdf,
                    parent,
                    class,
                    vendor: ids.map(|i| i.0),
                    device: ids.map(|i| i.1),
                    subsystem: sub,
                    range: range.map(|(_, a, b)| (a, b)),
                    numa_node: numa_of(node),
                    name,
                    line,
                });
            }
            _ => {}
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hwloc_v2_bridges_devices_numa() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE topology SYSTEM "hwloc2.dtd">
<topology version="2.0">
  <object type="Machine" os_index="0" nodeset="0x00000003">
    <info name="Architecture" value="x86_64"/>
    <object type="Package" os_index="1" nodeset="0x00000002">
      <info name="CPUVendor" value="GenuineIntel"/>
      <info name="CPUFamilyNumber" value="6"/>
      <object type="NUMANode" os_index="1" nodeset="0x00000002"/>
      <object type="Bridge" bridge_type="0-1" depth="0" bridge_pci="000a:[00-01]">
        <object type="Bridge" bridge_type="1-1" depth="1" bridge_pci="000a:[01-01]" pci_busid="000a:00:00.0" pci_type="0604 [1014:03dc] [0000:0000] 00 00">
          <object type="PCIDev" pci_busid="000a:01:00.0" pci_type="0302 [10de:15f9] [10de:116b] a1 00"/>
        </object>
      </object>
    </object>
  </object>
</topology>"#;
        let t = parse(xml.as_bytes()).unwrap();
        assert_eq!(t.version.as_deref(), Some("2.0"));
        assert_eq!(t.host_bridges, [(0xa, 0, 1, Some(1))]);
        assert_eq!(t.devices.len(), 2);
        let gpu = &t.devices[1];
        assert_eq!(gpu.bdf, "000a:01:00.0".parse().unwrap());
        assert_eq!(gpu.parent, Some("000a:00:00.0".parse().unwrap()));
        assert_eq!((gpu.class, gpu.vendor, gpu.device), (Some(0x0302), Some(0x10de), Some(0x15f9)));
        assert_eq!(gpu.numa_node, Some(1));
        assert_eq!(t.devices[0].range, Some((1, 1)));
        assert_eq!(
            (t.arch.as_deref(), t.cpu_vendor.as_deref(), t.cpu_family),
            (Some("x86_64"), Some("GenuineIntel"), Some(6))
        );
    }

    #[test]
    fn hwloc_refuses_cut_documents() {
        assert!(parse(b"<topology version=\"3.0\"><object type=\"Machine\">").is_err());
        assert!(parse(b"<other/>").is_err());
    }

    #[test]
    fn hwloc_v1_numa_nodes_are_parents() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE topology SYSTEM "hwloc.dtd">
<topology>
  <object type="Machine" os_index="0" cpuset="0x0000000f" nodeset="0x00000003">
    <object type="NUMANode" os_index="1" cpuset="0x0000000c" nodeset="0x00000002" local_memory="1">
      <object type="Bridge" os_index="0" bridge_type="0-1" depth="0" bridge_pci="0000:[80-81]">
        <object type="Bridge" os_index="1" bridge_type="1-1" depth="1" bridge_pci="0000:[81-81]" pci_busid="0000:80:02.0" pci_type="0604 [8086:3c04] [0000:0000] 07 00" pci_link_speed="0.000000">
          <object type="PCIDev" os_index="2" pci_busid="0000:81:00.0" pci_type="0207 [15b3:1003] [15b3:0050] 00 00" pci_link_speed="7.876923"/>
        </object>
      </object>
    </object>
  </object>
</topology>"#;
        let t = parse(xml.as_bytes()).unwrap();
        assert_eq!(t.version, None);
        assert_eq!(t.host_bridges, [(0, 0x80, 0x81, Some(1))]);
        assert_eq!(t.devices[1].numa_node, Some(1));
        assert_eq!(t.devices[1].parent, Some("0000:80:02.0".parse().unwrap()));
        assert_eq!(t.devices[1].class, Some(0x0207));
    }
}
