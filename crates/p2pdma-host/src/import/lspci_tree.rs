//! `lspci -t`/`-tv`/`-tvnn` trees: root buses (`-+-[0000:00]-+-`, ` +-[0000:20]-+-`,
//! ` \-[0000:e0]-+-`), branches (`|`, `+-`, `\-`), bridges with bus ranges (`-[01-13]--`,
//! `-[05]----00.0`) and empty ones (`-[12]--`).
//!
//! A branch drawn on a later line hangs from the bus opened at the same column on an earlier
//! line (the drawing is depth-first), so one map from column to bus places every device.

use std::collections::HashMap;

use p2pdma_core::Bdf;
use serde::Serialize;

use crate::import::names;
use crate::Error;

/// The tree: root buses and every function with the bridge above it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tree {
    /// (domain, bus) of each root bus, in order.
    pub roots: Vec<(u32, u8)>,
    pub nodes: Vec<TreeNode>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TreeNode {
    pub bdf: Bdf,
    /// The bridge whose secondary bus this function sits on; None on a root bus.
    pub parent: Option<Bdf>,
    /// A bridge's bus range (secondary, subordinate).
    pub range: Option<(u8, u8)>,
    /// The name (`-tv`), if shown.
    pub name: Option<String>,
    /// IDs: printed (`-tvnn`) or from the name (`from_names`).
    pub vendor: Option<u16>,
    pub device: Option<u16>,
    pub ids_from_names: bool,
    /// 1-based line in the section.
    pub line: usize,
}

/// Parses a tree. Never panics; characters it does not expect end the line's scan.
pub fn parse(text: &str) -> Result<Tree, Error> {
    let text = crate::import::bounded(text, "lspci -t")?;
    let mut tree = Tree::default();
    let mut branch: HashMap<usize, Option<(u32, u8)>> = HashMap::new();
    let mut bus_parent: HashMap<(u32, u8), Option<Bdf>> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let b = line.as_bytes();
        let mut i = 0;
        let mut first = true;
        // The bus the next device token sits on.
        let mut bus: Option<(u32, u8)> = None;
        let mut last: Option<usize> = None; // index into nodes of the last device on this line
        while i < b.len() {
            match b[i] {
                b' ' | b'|' if last.is_none() || first => i += 1,
                b'+' | b'\\' => {
                    if first {
                        bus = branch.get(&i).copied().flatten();
                    } else {
                        branch.insert(i, bus);
                    }
                    first = false;
                    i += 1;
                }
                b'-' => {
                    first = false;
                    i += 1;
                }
                b'[' => {
                    first = false;
                    let Some(close) = line[i..].find(']') else { break };
                    let inner = &line[i + 1..i + close];
                    if let Some((d, bb)) = inner.split_once(':') {
                        // A root bus `[0000:00]`.
                        let (Ok(d), Ok(bb)) = (u32::from_str_radix(d, 16), u8::from_str_radix(bb, 16)) else { break };
                        tree.roots.push((d, bb));
                        bus_parent.insert((d, bb), None);
                        bus = Some((d, bb));
                    } else {
                        // A bridge's range `[01-13]` or `[05]`.
                        let (s, e) = inner.split_once('-').unwrap_or((inner, inner));
                        let (Ok(s), Ok(e)) = (u8::from_str_radix(s, 16), u8::from_str_radix(e, 16)) else { break };
                        let Some(k) = last else { break };
                        let node = &mut tree.nodes[k];
                        node.range = Some((s, e));
                        let dom = node.bdf.domain;
                        bus_parent.insert((dom, s), Some(node.bdf));
                        bus = Some((dom, s));
                    }
                    i += close + 1;
                }
                c if c.is_ascii_hexdigit() => {
                    first = false;
                    // `dd.f`
                    let tok = line.get(i..i + 4).unwrap_or("");
                    let (Some((dom, busnr)), Some((dev, func))) = (bus, tok.split_once('.')) else { break };
                    let (Ok(dev), Ok(func)) = (u8::from_str_radix(dev, 16), u8::from_str_radix(func, 16)) else {
                        break;
                    };
                    if dev > 0x1f || func > 7 {
                        break;
                    }
                    let bdf = Bdf::new(dom, busnr, dev, func);
                    let parent = bus_parent.get(&(dom, busnr)).copied().flatten();
                    tree.nodes.push(TreeNode {
                        bdf,
                        parent,
                        range: None,
                        name: None,
                        vendor: None,
                        device: None,
                        ids_from_names: false,
                        line: n + 1,
                    });
                    last = Some(tree.nodes.len() - 1);
                    i += 4;
                    // `  Name` follows a device: the rest of the line.
                    if b.get(i) == Some(&b' ') {
                        let name = line[i..].trim();
                        if !name.is_empty() {
                            let k = tree.nodes.len() - 1;
                            let node = &mut tree.nodes[k];
                            match names::bracket_ids(name) {
                                Some((v, d)) => {
                                    node.vendor = Some(v);
                                    node.device = Some(d);
                                }
                                None => {
                                    let (v, d) = names::ids_from_name(name);
                                    (node.vendor, node.device, node.ids_from_names) = (v, d, true);
                                }
                            }
                            node.name = Some(name.to_string());
                        }
                        break;
                    }
                }
                _ => break,
            }
        }
    }
    if tree.roots.is_empty() {
        return Err(Error::invalid("lspci -t", "no root bus line ([0000:00])"));
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bdf(s: &str) -> Bdf {
        s.parse().unwrap()
    }

    const TREE: &str = r"-+-[0000:00]-+-00.0  Advanced Micro Devices, Inc. [AMD] Device 14a4
 |           +-03.1-[01-13]----00.0-[02-13]--+-00.0-[03-08]----00.0-[04-08]--+-10.0-[05]----00.0  Samsung Electronics Co Ltd NVMe SSD Controller S4LV008[Pascal]
 |           |                               |                               \-1c.0-[08]----00.0  Samsung Electronics Co Ltd NVMe SSD Controller S4LV008[Pascal]
 |           |                               +-0c.0-[0f-12]----00.0-[10-12]--+-14.0-[11]----00.0  HighPoint
 |           |                               |                               \-15.0-[12]--
 |           |                               \-1c.0-[13]--
 |           \-18.7  Advanced Micro Devices, Inc. [AMD] Device 14b4
 \-[0000:c0]-+-00.0  Advanced Micro Devices, Inc. [AMD] Device 14a4
             +-01.1-[c1]--+-00.0  NVIDIA Corporation AD102GL [RTX 6000 Ada Generation]
             |            \-00.1  NVIDIA Corporation AD102 High Definition Audio Controller
             \-03.1-[c2]--+-00.0  NVIDIA Corporation AD102GL [RTX 6000 Ada Generation] [10de:26b1]";

    #[test]
    fn lspci_tree_places_every_function_under_its_bridge() {
        let t = parse(TREE).unwrap();
        assert_eq!(t.roots, [(0, 0), (0, 0xc0)]);
        let find = |s: &str| t.nodes.iter().find(|n| n.bdf == bdf(s)).unwrap_or_else(|| panic!("{s} missing"));
        assert_eq!(find("0000:00:03.1").range, Some((0x01, 0x13)));
        assert_eq!(find("0000:00:03.1").parent, None);
        assert_eq!(find("0000:01:00.0").parent, Some(bdf("0000:00:03.1")));
        assert_eq!(find("0000:02:00.0").parent, Some(bdf("0000:01:00.0")));
        assert_eq!(find("0000:04:10.0").parent, Some(bdf("0000:03:00.0")));
        assert_eq!(find("0000:05:00.0").parent, Some(bdf("0000:04:10.0")));
        assert_eq!(find("0000:04:1c.0").parent, Some(bdf("0000:03:00.0")));
        assert_eq!(find("0000:02:0c.0").parent, Some(bdf("0000:01:00.0")));
        assert_eq!(find("0000:10:15.0").range, Some((0x12, 0x12)));
        assert_eq!(find("0000:02:1c.0").range, Some((0x13, 0x13)));
        assert_eq!(find("0000:00:18.7").parent, None);
        assert_eq!(find("0000:c1:00.1").parent, Some(bdf("0000:c0:01.1")));
        assert_eq!(find("0000:c2:00.0").parent, Some(bdf("0000:c0:03.1")));
        let gpu = find("0000:c1:00.0");
        assert_eq!((gpu.vendor, gpu.device, gpu.ids_from_names), (Some(0x10de), Some(0x26b1), true));
        assert!(!find("0000:c2:00.0").ids_from_names);
    }
}
