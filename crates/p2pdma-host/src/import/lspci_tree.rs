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
    let mut drawing = Drawing::default();
    for (n, line) in text.lines().enumerate() {
        drawing.scan_line(line, n + 1);
    }
    let tree = drawing.tree;
    if tree.roots.is_empty() {
        return Err(Error::invalid("lspci -t", "no root bus line ([0000:00])"));
    }
    Ok(tree)
}

/// The lines read so far: the tree, and what later lines hang from.
#[derive(Default)]
struct Drawing {
    tree: Tree,
    /// The bus a branch drawn at this column on a later line hangs from.
    branch: HashMap<usize, Option<(u32, u8)>>,
    /// Each bus's bridge; None for a root bus.
    bus_parent: HashMap<(u32, u8), Option<Bdf>>,
}

/// Where the scan of one line stands.
struct Cursor {
    /// The byte looked at.
    i: usize,
    /// Nothing but spaces and `|` seen yet on this line.
    first: bool,
    /// The bus the next device token sits on.
    bus: Option<(u32, u8)>,
    /// Index into nodes of the last device on this line.
    last: Option<usize>,
}

/// After a token: scan on, or the rest of the line says nothing more.
enum Step {
    Next,
    EndOfLine,
}

impl Drawing {
    fn scan_line(&mut self, line: &str, n: usize) {
        let b = line.as_bytes();
        let mut at = Cursor { i: 0, first: true, bus: None, last: None };
        while at.i < b.len() {
            let step = match b[at.i] {
                b' ' | b'|' if at.last.is_none() || at.first => {
                    at.i += 1;
                    Step::Next
                }
                b'+' | b'\\' => self.branch_mark(&mut at),
                b'-' => {
                    at.first = false;
                    at.i += 1;
                    Step::Next
                }
                b'[' => self.bracket(line, &mut at),
                c if c.is_ascii_hexdigit() => self.device(line, n, &mut at),
                _ => Step::EndOfLine,
            };
            if let Step::EndOfLine = step {
                break;
            }
        }
    }

    /// `+-` or `\-`: first on a line, it continues the branch opened at its column; after a
    /// device, it opens one there.
    fn branch_mark(&mut self, at: &mut Cursor) -> Step {
        if at.first {
            at.bus = self.branch.get(&at.i).copied().flatten();
        } else {
            self.branch.insert(at.i, at.bus);
        }
        at.first = false;
        at.i += 1;
        Step::Next
    }

    /// `[0000:00]` (a root bus) or `[01-13]`/`[05]` (the range of the bridge before it).
    fn bracket(&mut self, line: &str, at: &mut Cursor) -> Step {
        at.first = false;
        let Some(close) = line[at.i..].find(']') else { return Step::EndOfLine };
        let inner = &line[at.i + 1..at.i + close];
        let bus = match inner.split_once(':') {
            Some((d, bb)) => self.root_bus(d, bb),
            None => self.bridge_range(inner, at.last),
        };
        let Some(bus) = bus else { return Step::EndOfLine };
        at.bus = Some(bus);
        at.i += close + 1;
        Step::Next
    }

    /// A root bus `[0000:00]`: the bus the devices after it sit on.
    fn root_bus(&mut self, d: &str, bb: &str) -> Option<(u32, u8)> {
        let (Ok(d), Ok(bb)) = (u32::from_str_radix(d, 16), u8::from_str_radix(bb, 16)) else { return None };
        self.tree.roots.push((d, bb));
        self.bus_parent.insert((d, bb), None);
        Some((d, bb))
    }

    /// A bridge's range `[01-13]` or `[05]`, given to the line's last device: its secondary
    /// bus is the one the devices after it sit on.
    fn bridge_range(&mut self, inner: &str, last: Option<usize>) -> Option<(u32, u8)> {
        let (s, e) = inner.split_once('-').unwrap_or((inner, inner));
        let (Ok(s), Ok(e)) = (u8::from_str_radix(s, 16), u8::from_str_radix(e, 16)) else { return None };
        let node = &mut self.tree.nodes[last?];
        node.range = Some((s, e));
        let dom = node.bdf.domain;
        self.bus_parent.insert((dom, s), Some(node.bdf));
        Some((dom, s))
    }

    /// A device `dd.f` on the cursor's bus, and its name if the line goes on with one.
    fn device(&mut self, line: &str, n: usize, at: &mut Cursor) -> Step {
        at.first = false;
        // `dd.f`
        let tok = line.get(at.i..at.i + 4).unwrap_or("");
        let (Some((dom, busnr)), Some((dev, func))) = (at.bus, dev_fn(tok)) else { return Step::EndOfLine };
        let bdf = Bdf::new(dom, busnr, dev, func);
        let parent = self.bus_parent.get(&(dom, busnr)).copied().flatten();
        self.tree.nodes.push(TreeNode {
            bdf,
            parent,
            range: None,
            name: None,
            vendor: None,
            device: None,
            ids_from_names: false,
            line: n,
        });
        let k = self.tree.nodes.len() - 1;
        at.last = Some(k);
        at.i += 4;
        // `  Name` follows a device: the rest of the line.
        if line.as_bytes().get(at.i) != Some(&b' ') {
            return Step::Next;
        }
        let name = line[at.i..].trim();
        if !name.is_empty() {
            name_node(&mut self.tree.nodes[k], name);
        }
        Step::EndOfLine
    }
}

/// `1c.0` → (device, function), None unless both are in range.
fn dev_fn(tok: &str) -> Option<(u8, u8)> {
    let (dev, func) = tok.split_once('.')?;
    let (Ok(dev), Ok(func)) = (u8::from_str_radix(dev, 16), u8::from_str_radix(func, 16)) else { return None };
    if dev > 0x1f || func > 7 {
        return None;
    }
    Some((dev, func))
}

/// The name (`-tv`) and the IDs: printed (`-tvnn`) or looked up from the name.
fn name_node(node: &mut TreeNode, name: &str) {
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
