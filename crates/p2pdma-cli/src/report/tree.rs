//! The PCIe tree as SVG, laid out here (server side) so that `topo --svg` and the HTML
//! report draw the same picture.
//!
//! The layout is an indented tree: one card per host bridge and PCI function, children
//! below their bridge and indented, connectors from the bridge to each child, and every
//! switch (an upstream port with its downstream ports and all below them) inside a dashed
//! box, because "below a common switch" is what decides bus-address P2P. An indented tree
//! grows downwards only, so a thousand devices stay readable in a scrolling column.
//!
//! Ids the report's script relies on: `n<i>` is device `i` (index into
//! `Topology::devices`), `h<i>` host bridge `i`; `e<id>` is the connector from a node's
//! parent to it, with the parent's id in `data-p`.

use std::collections::HashMap;
use std::fmt::Write;

use p2pdma_core::config::{acs_bits, Acs, PortType};
use p2pdma_core::group::Grouping;
use p2pdma_core::model::{Device, Link};
use p2pdma_core::verdict::BridgeVerdict;
use p2pdma_core::Engine;

use super::esc;
use crate::render::bytes;

const MARGIN: f64 = 14.0;
const INDENT: f64 = 26.0;
/// The narrowest card (the deepest, most nested one).
const CARD_MIN: f64 = 520.0;
/// How far a switch box's right edge steps in per level of nesting.
const NEST: f64 = 10.0;
const PAD: f64 = 9.0;
const TITLE_ROW: f64 = 25.0;
const BADGE_H: f64 = 16.0;
const BADGE_GAP: f64 = 5.0;
const ROW_GAP: f64 = 8.0;
/// Room above a switch's upstream port for the switch box's label.
const SWITCH_TOP: f64 = 20.0;
const SWITCH_BOTTOM: f64 = 8.0;
/// Where a connector leaves its parent card.
const STEM_X: f64 = 13.0;
/// Caption height of a standalone SVG.
const CAPTION: f64 = 46.0;

/// Font sizes (px), kept in step with tree.css.
const NAME_PX: f64 = 12.5;
const BDF_PX: f64 = 11.0;
const KIND_PX: f64 = 11.5;
const BADGE_PX: f64 = 10.0;

/// The tree's stylesheet, shared by the report page and standalone SVGs.
pub const CSS: &str = include_str!("assets/tree.css");

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum NodeRef {
    Bridge(usize),
    Device(usize),
}

impl NodeRef {
    fn id(self) -> String {
        match self {
            NodeRef::Bridge(h) => format!("h{h}"),
            NodeRef::Device(i) => format!("n{i}"),
        }
    }
}

/// One badge: a CSS class and its text.
#[derive(Debug, Clone, PartialEq)]
struct Badge {
    class: &'static str,
    text: String,
}

/// What a card shows.
#[derive(Debug, Clone, PartialEq)]
struct Card {
    class: String,
    name: String,
    bdf: Option<String>,
    kind: String,
    badges: Vec<Badge>,
    tooltip: String,
}

/// A laid-out card.
#[derive(Debug, Clone, PartialEq)]
struct Placed {
    node: NodeRef,
    parent: Option<NodeRef>,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    card: Card,
    /// Badge rows: (x, row) per badge, relative to the card.
    badge_pos: Vec<(f64, usize)>,
}

/// A switch's dashed box.
#[derive(Debug, Clone, PartialEq)]
struct SwitchBox {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    label: String,
}

/// The whole tree, positioned.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    cards: Vec<Placed>,
    switches: Vec<SwitchBox>,
    pub width: f64,
    pub height: f64,
}

/// Approximate advance widths (in em) of DejaVu Sans-like fonts, for truncation only.
fn sans_width(s: &str, px: f64, bold: bool) -> f64 {
    let em: f64 = s
        .chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '|' | '!' | '\'' | ' ' | 'I' | 'f' | 't' | 'r' | '(' | ')'
            | '[' | ']' => 0.36,
            'm' | 'w' | 'M' | 'W' => 0.92,
            'A'..='Z' => 0.7,
            '0'..='9' => 0.64,
            _ => 0.6,
        })
        .sum();
    em * px * if bold { 1.1 } else { 1.0 }
}

/// Monospace advance: 0.6 em (DejaVu Sans Mono, Menlo, Consolas all are close).
fn mono_width(s: &str, px: f64) -> f64 {
    s.chars().count() as f64 * 0.602 * px
}

/// Cuts `s` to fit `budget` px, ending in an ellipsis when cut.
fn fit(s: &str, budget: f64, width: impl Fn(&str) -> f64) -> String {
    if width(s) <= budget {
        return s.to_string();
    }
    let mut out = String::new();
    for c in s.chars() {
        out.push(c);
        if width(&out) + width("…") > budget {
            out.pop();
            break;
        }
    }
    out.push('…');
    out
}

/// `8.0 GT/s PCIe` → `8GT/s`.
fn short_speed(s: &str) -> String {
    match s.split_whitespace().next().and_then(|n| n.parse::<f64>().ok()) {
        Some(v) => format!("{v}GT/s"),
        None => s.to_string(),
    }
}

fn link_badge(l: &Link) -> Option<Badge> {
    let cur = match (&l.current_speed, l.current_width) {
        (Some(s), Some(w)) => format!("{} x{w}", short_speed(s)),
        (Some(s), None) => short_speed(s),
        (None, Some(w)) => format!("x{w}"),
        (None, None) => return None,
    };
    if l.degraded() {
        let max = format!(
            "{} x{}",
            l.max_speed.as_deref().map(short_speed).unwrap_or_else(|| "?".into()),
            l.max_width.map(|w| w.to_string()).unwrap_or_else(|| "?".into())
        );
        Some(Badge { class: "b warn", text: format!("{cur} (max {max})") })
    } else {
        Some(Badge { class: "b link", text: cur })
    }
}

/// The ACS badge for a device that has the capability (or whose ACS is unknown).
fn acs_badge(acs: Acs) -> Option<Badge> {
    match acs {
        Acs::Absent => None,
        Acs::Unknown => Some(Badge { class: "b unk", text: "ACS ?".into() }),
        Acs::Present { ctrl, .. } => {
            let on = acs_bits::names(ctrl);
            let text = if on.is_empty() { "ACS: none set".to_string() } else { format!("ACS {}", on.join(" ")) };
            let class = if ctrl & acs_bits::REDIRECT != 0 { "b redir" } else { "b acs" };
            Some(Badge { class, text })
        }
    }
}

fn device_class(d: &Device) -> String {
    let role = match d.port_type {
        Some(PortType::RootPort) => "rp",
        Some(PortType::SwitchUpstream) => "up",
        Some(PortType::SwitchDownstream) => "dn",
        _ if d.is_pci_bridge() || !d.is_dma_capable() => "br",
        _ => "ep",
    };
    let mut c = format!("node {role}");
    if d.p2pmem.is_some() {
        c.push_str(" prov");
    }
    if d.physfn.is_some() {
        c.push_str(" vf");
    }
    c
}

/// The label people know a device by: the topology file's name, else its kind.
pub fn kind_of(d: &Device) -> &'static str {
    d.port_type.filter(|_| d.is_pci_bridge()).map(|t| t.label()).unwrap_or(d.kind())
}

/// A device's card; `members` > 1 when it stands for a group of VFs.
fn device_card(d: &Device, members: usize) -> Card {
    let kind = kind_of(d);
    let mut kind_text = match (&d.name, &d.device_name) {
        (Some(_), Some(n)) => format!("{kind} · {n}"),
        (Some(_), None) => kind.to_string(),
        (None, Some(n)) => n.clone(),
        (None, None) => String::new(),
    };
    if !kind_text.is_empty() {
        kind_text.push_str(" · ");
    }
    write!(kind_text, "{:04x}:{:04x}", d.vendor, d.device).unwrap();
    if let Some(drv) = &d.driver {
        write!(kind_text, " · {drv}").unwrap();
    }
    let mut badges = Vec::new();
    match d.physfn {
        Some(pf) if members > 1 => badges.push(Badge { class: "b vf", text: format!("{members} VFs of {pf}") }),
        Some(pf) => badges.push(Badge { class: "b vf", text: format!("VF of {pf}") }),
        None => {}
    }
    if let Some(b) = d.link.as_ref().and_then(link_badge) {
        badges.push(b);
    }
    if let Some(b) = acs_badge(d.acs) {
        badges.push(b);
    }
    if let Some(g) = d.iommu_group {
        badges.push(Badge { class: "b grp", text: format!("IOMMU group {g}") });
    }
    if let Some(m) = &d.p2pmem {
        badges.push(Badge {
            class: if m.published { "b mem" } else { "b mem unpub" },
            text: format!(
                "P2P memory {} free of {}{}",
                bytes(m.available),
                bytes(m.size),
                if m.published { "" } else { ", not published" }
            ),
        });
    }
    let mut name = d.name.clone().unwrap_or_else(|| kind.to_string());
    let mut tooltip = device_tooltip(d);
    if members > 1 {
        write!(name, " +{} VFs", members - 1).unwrap();
        write!(tooltip, "\none card for {members} VFs the kernel cannot tell apart (same PF, path, ACS)").unwrap();
    }
    Card { class: device_class(d), name, bdf: Some(d.bdf.to_string()), kind: kind_text, badges, tooltip }
}

fn device_tooltip(d: &Device) -> String {
    let mut t = format!("{}  {}", d.bdf, kind_of(d));
    if let Some(n) = &d.name {
        write!(t, "  ({n})").unwrap();
    }
    write!(t, "\nID {:04x}:{:04x}  class {:06x}", d.vendor, d.device, d.class).unwrap();
    if let Some(c) = &d.class_name {
        write!(t, " ({c})").unwrap();
    }
    if let Some(v) = &d.vendor_name {
        write!(t, "\n{v}").unwrap();
        if let Some(n) = &d.device_name {
            write!(t, " {n}").unwrap();
        }
    }
    if let Some(drv) = &d.driver {
        write!(t, "\ndriver {drv}").unwrap();
    }
    if let Some(l) = &d.link {
        write!(
            t,
            "\nlink {} x{} (max {} x{})",
            l.current_speed.as_deref().unwrap_or("?"),
            l.current_width.map(|w| w.to_string()).unwrap_or_else(|| "?".into()),
            l.max_speed.as_deref().unwrap_or("?"),
            l.max_width.map(|w| w.to_string()).unwrap_or_else(|| "?".into())
        )
        .unwrap();
    }
    match d.acs {
        Acs::Absent => {}
        Acs::Unknown => t.push_str("\nACS unknown (config space past 64 bytes needs root)"),
        Acs::Present { offset, cap, ctrl } => {
            write!(t, "\nACS at {offset:#x}: cap {cap:#06x}, ctrl {ctrl:#06x}").unwrap();
            if ctrl & acs_bits::REDIRECT != 0 {
                t.push_str(" (redirects peer traffic: RR/CR/EC)");
            }
        }
    }
    if let Some(n) = d.numa_node {
        write!(t, "\nNUMA node {n}").unwrap();
    }
    t
}

fn bridge_card(name: &str, domain: u32, bus: u8, v: &BridgeVerdict) -> Card {
    let (badge, status) = match (&v.id, &v.entry) {
        (None, _) => (
            Badge { class: "b hbno", text: "not identifiable: never whitelisted".into() },
            "no 00.0 or root port device to identify it".to_string(),
        ),
        (Some(id), None) => (
            Badge { class: "b hbno", text: "not on the P2PDMA whitelist".into() },
            format!("{id}: not on the kernel's P2PDMA whitelist"),
        ),
        (Some(id), Some(e)) => (
            Badge {
                class: "b hbok",
                text: format!("whitelisted{}", if v.same_host_bridge_only { " (same bridge only)" } else { "" }),
            },
            format!("{id}: whitelisted ({e})"),
        ),
    };
    Card {
        class: "node hb".into(),
        name: name.to_string(),
        bdf: None,
        kind: format!(
            "host bridge{} · domain {domain:04x} bus {bus:02x}",
            v.id.as_deref().map(|i| format!(" {i}")).unwrap_or_default()
        ),
        badges: vec![badge],
        tooltip: format!("host bridge {name}\n{status}"),
    }
}

/// Places badges left to right, wrapping at `width`; returns positions and the row count.
fn place_badges(badges: &[Badge], width: f64) -> (Vec<(f64, usize)>, usize) {
    let mut pos = Vec::with_capacity(badges.len());
    let (mut x, mut row) = (PAD, 0usize);
    for b in badges {
        let w = badge_width(&b.text);
        if x > PAD && x + w > width - PAD {
            x = PAD;
            row += 1;
        }
        pos.push((x, row));
        x += w + BADGE_GAP;
    }
    (pos, if badges.is_empty() { 0 } else { row + 1 })
}

fn badge_width(text: &str) -> f64 {
    (mono_width(text, BADGE_PX) + 10.0).round()
}

/// Lays the topology out: pure, deterministic, no panics on any topology the engine took.
/// The tree (children by parent), a depth-first walk, then cards placed top to bottom.
/// A group of VFs is one card (its representative's, saying how many it stands for).
pub fn layout(engine: &Engine<'_>, bridges: &[BridgeVerdict], grouping: &Grouping) -> Layout {
    let folded = Folded::new(engine, grouping);
    let children = children_of(engine, &folded);
    let (order, events) = walk(engine, &children, &folded);
    place(engine, bridges, &order, events, &folded)
}

/// Which devices are drawn: each group's representative, with its number of members.
struct Folded {
    /// Per device: `Some(members)` if its card is drawn, `None` if a representative stands for it.
    drawn: Vec<Option<usize>>,
}

impl Folded {
    fn new(engine: &Engine<'_>, grouping: &Grouping) -> Folded {
        let mut drawn = vec![None; engine.topo.devices.len()];
        for g in 0..grouping.len() {
            let m = grouping.members(g);
            drawn[m[0]] = Some(m.len());
        }
        Folded { drawn }
    }
}

/// Children in address order; devices on a root bus hang off their host bridge.
fn children_of(engine: &Engine<'_>, folded: &Folded) -> HashMap<NodeRef, Vec<NodeRef>> {
    let topo = engine.topo;
    let hb_index: HashMap<&str, usize> =
        topo.host_bridges.iter().enumerate().map(|(i, h)| (h.name.as_str(), i)).collect();
    let mut children: HashMap<NodeRef, Vec<NodeRef>> = HashMap::new();
    let parent_of = |d: &Device| -> Option<NodeRef> {
        match d.upstream {
            Some(b) => engine.index_of(b).map(NodeRef::Device),
            None => hb_index.get(d.host_bridge.as_str()).map(|&h| NodeRef::Bridge(h)),
        }
    };
    for (i, d) in topo.devices.iter().enumerate().filter(|&(i, _)| folded.drawn[i].is_some()) {
        if let Some(p) = parent_of(d) {
            children.entry(p).or_default().push(NodeRef::Device(i));
        }
    }
    children
}

/// A node as the walk met it: the node, its parent, its depth and how many switch boxes
/// it sits in.
type Visit = (NodeRef, Option<NodeRef>, usize, usize);

/// Depth-first, iteratively (a hostile snapshot may nest deeply): the nodes in order, and
/// the entering and leaving events (true: entering) by index into that order.
fn walk(
    engine: &Engine<'_>,
    children: &HashMap<NodeRef, Vec<NodeRef>>,
    folded: &Folded,
) -> (Vec<Visit>, Vec<(bool, usize)>) {
    let topo = engine.topo;
    #[derive(Clone, Copy)]
    enum Step {
        Enter(NodeRef, Option<NodeRef>, usize, usize),
        Leave(usize),
    }
    let mut order: Vec<Visit> = Vec::new();
    // Folded members count as visited: their representative's card stands for them.
    let mut visited: Vec<bool> = folded.drawn.iter().map(Option::is_none).collect();
    debug_assert_eq!(visited.len(), topo.devices.len());
    let mut stack: Vec<Step> = Vec::new();
    let roots: Vec<NodeRef> = (0..topo.host_bridges.len()).rev().map(NodeRef::Bridge).collect();
    // Devices not reachable from a host bridge (only upstream links that loop leave any) go
    // last, at the top level: drawn, never walked forever.
    let mut pending_roots = roots;
    let mut events: Vec<(bool, usize)> = Vec::new(); // (enter?, index into order)
    loop {
        let Some(root) = pending_roots.pop() else {
            match visited.iter().position(|v| !v) {
                Some(i) => {
                    pending_roots.push(NodeRef::Device(i));
                    continue;
                }
                None => break,
            }
        };
        stack.push(Step::Enter(root, None, 0, 0));
        while let Some(step) = stack.pop() {
            match step {
                Step::Enter(node, parent, depth, nest) => {
                    if let NodeRef::Device(i) = node {
                        if visited[i] {
                            continue;
                        }
                        visited[i] = true;
                    }
                    let is_switch = matches!(node, NodeRef::Device(i) if is_switch_upstream(engine, i));
                    let nest = nest + usize::from(is_switch);
                    let k = order.len();
                    order.push((node, parent, depth, nest));
                    events.push((true, k));
                    stack.push(Step::Leave(k));
                    if let Some(kids) = children.get(&node) {
                        for &c in kids.iter().rev() {
                            stack.push(Step::Enter(c, Some(node), depth + 1, nest));
                        }
                    }
                }
                Step::Leave(k) => events.push((false, k)),
            }
        }
    }
    (order, events)
}

/// Cards top to bottom, indented by depth, switch boxes around their ports.
fn place(
    engine: &Engine<'_>,
    bridges: &[BridgeVerdict],
    order: &[Visit],
    events: Vec<(bool, usize)>,
    folded: &Folded,
) -> Layout {
    let max_depth = order.iter().map(|o| o.2).max().unwrap_or(0) as f64;
    let max_nest = order.iter().map(|o| o.3).max().unwrap_or(0) as f64;
    let right = MARGIN + max_depth * INDENT + max_nest * NEST + CARD_MIN;
    let width = right + MARGIN;

    let mut cards: Vec<Placed> = Vec::with_capacity(order.len());
    let mut switches = Vec::new();
    let mut open_switch: HashMap<usize, usize> = HashMap::new();
    let mut y = MARGIN;
    let mut after_first_bridge = false;
    for (enter, k) in events {
        let (node, parent, depth, nest) = order[k];
        let x = MARGIN + depth as f64 * INDENT;
        if !enter {
            if let Some(si) = open_switch.remove(&k) {
                // Boxes are pushed when entered, so outer boxes are drawn below inner ones.
                y += SWITCH_BOTTOM - ROW_GAP;
                let s: &mut SwitchBox = &mut switches[si];
                s.h = y - s.y;
                y += ROW_GAP;
            }
            continue;
        }
        let card = node_card(engine, bridges, node, &mut y, &mut after_first_bridge, folded);
        if let NodeRef::Device(i) = node {
            if is_switch_upstream(engine, i) {
                let sx = x - 6.0;
                let sw_right = right - (nest as f64 - 1.0) * NEST;
                open_switch.insert(k, switches.len());
                switches.push(SwitchBox { x: sx, y, w: sw_right - sx, h: 0.0, label: switch_label(engine.device(i)) });
                y += SWITCH_TOP;
            }
        }
        let w = right - nest as f64 * NEST - x;
        let (badge_pos, rows) = place_badges(&card.badges, w);
        let h = TITLE_ROW + rows as f64 * (BADGE_H + 4.0) + if rows > 0 { 3.0 } else { -3.0 };
        cards.push(Placed { node, parent, x, y, w, h, card, badge_pos });
        y += h + ROW_GAP;
    }
    Layout { cards, switches, width: width.ceil(), height: (y - ROW_GAP + MARGIN).ceil() }
}

/// A node's card; a host bridge after the first one starts with a gap.
fn node_card(
    engine: &Engine<'_>,
    bridges: &[BridgeVerdict],
    node: NodeRef,
    y: &mut f64,
    after_first_bridge: &mut bool,
    folded: &Folded,
) -> Card {
    match node {
        NodeRef::Bridge(h) => {
            if *after_first_bridge {
                *y += ROW_GAP * 2.0;
            }
            *after_first_bridge = true;
            let hb = &engine.topo.host_bridges[h];
            match bridges.get(h) {
                Some(v) => bridge_card(&hb.name, hb.domain, hb.bus, v),
                None => bridge_card(
                    &hb.name,
                    hb.domain,
                    hb.bus,
                    &BridgeVerdict {
                        host_bridge: hb.name.clone(),
                        root_device: None,
                        id: None,
                        entry: None,
                        same_host_bridge_only: false,
                    },
                ),
            }
        }
        NodeRef::Device(i) => device_card(engine.device(i), folded.drawn[i].unwrap_or(1)),
    }
}

fn is_switch_upstream(engine: &Engine<'_>, i: usize) -> bool {
    engine.device(i).port_type == Some(PortType::SwitchUpstream)
}

fn switch_label(d: &Device) -> String {
    match &d.name {
        Some(n) => format!("switch {n} · {:04x}:{:04x}", d.vendor, d.device),
        None => format!("switch {:04x}:{:04x}", d.vendor, d.device),
    }
}

/// `12`, `12.5`: short numbers for SVG attributes.
fn num(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// How the SVG is used.
pub enum Mode<'a> {
    /// Inside the report page: styled by the page, no caption.
    Embedded,
    /// A file of its own (`topo --svg`): its own style and a caption (title, machine line).
    Standalone { title: &'a str, subtitle: &'a str },
}

/// The SVG document (or element) for a layout.
pub fn svg(l: &Layout, mode: Mode<'_>) -> String {
    let mut out = String::with_capacity(l.cards.len() * 700 + 4096);
    let top = match mode {
        Mode::Embedded => 0.0,
        Mode::Standalone { .. } => CAPTION,
    };
    let (w, h) = (num(l.width), num(l.height + top));
    match mode {
        Mode::Embedded => {
            write!(
                out,
                r#"<svg id="tree" class="p2p-tree" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="PCIe topology">"#
            )
            .unwrap();
        }
        Mode::Standalone { title, subtitle } => {
            write!(
                out,
                r#"<svg xmlns="http://www.w3.org/2000/svg" class="p2p-tree" width="{w}" height="{h}" viewBox="0 0 {w} {h}"><style>{}</style><rect class="bg" width="100%" height="100%"/><text class="cap" x="{m}" y="22">{}</text><text class="sub" x="{m}" y="38">{}</text><g transform="translate(0,{top})">"#,
                CSS,
                esc(title),
                esc(subtitle),
                m = num(MARGIN),
                top = num(top)
            )
            .unwrap();
        }
    }
    out.push_str(r#"<g class="switches">"#);
    for s in &l.switches {
        write!(
            out,
            r#"<g class="sw"><rect x="{}" y="{}" width="{}" height="{}" rx="9"/><text x="{}" y="{}">{}</text></g>"#,
            num(s.x),
            num(s.y),
            num(s.w),
            num(s.h),
            num(s.x + 9.0),
            num(s.y + 14.0),
            esc(&s.label)
        )
        .unwrap();
    }
    out.push_str(r#"</g><g class="edges">"#);
    let pos: HashMap<NodeRef, (f64, f64)> = l.cards.iter().map(|c| (c.node, (c.x, c.y + c.h))).collect();
    for c in &l.cards {
        let Some(p) = c.parent else { continue };
        let Some(&(px, bottom)) = pos.get(&p) else { continue };
        write!(
            out,
            r#"<path id="e{}" data-p="{}" class="edge" d="M{} {}V{}H{}"/>"#,
            c.node.id(),
            p.id(),
            num(px + STEM_X),
            num(bottom),
            num(c.y + TITLE_ROW / 2.0 + 1.0),
            num(c.x)
        )
        .unwrap();
    }
    out.push_str(r#"</g><g class="nodes">"#);
    for c in &l.cards {
        card_svg(&mut out, c);
    }
    out.push_str("</g>");
    if let Mode::Standalone { .. } = mode {
        out.push_str("</g>");
    }
    out.push_str("</svg>");
    out
}

fn card_svg(out: &mut String, c: &Placed) {
    let card = &c.card;
    write!(
        out,
        r#"<g id="{}" class="{}" transform="translate({},{})"><title>{}</title><rect class="box" width="{}" height="{}" rx="6"/>"#,
        c.node.id(),
        card.class,
        num(c.x),
        num(c.y),
        esc(&card.tooltip),
        num(c.w),
        num(c.h)
    )
    .unwrap();
    // Title row: name, address, kind; the kind (then the name) gives way when space is short.
    let budget = c.w - 2.0 * PAD;
    let name = fit(&card.name, budget * 0.6, |s| sans_width(s, NAME_PX, true));
    let mut used = sans_width(&name, NAME_PX, true);
    write!(out, r#"<text class="t" x="{}" y="17"><tspan class="nm">{}</tspan>"#, num(PAD), esc(&name)).unwrap();
    if let Some(bdf) = &card.bdf {
        used += 9.0 + mono_width(bdf, BDF_PX);
        write!(out, r#"<tspan class="bdf" dx="9">{}</tspan>"#, esc(bdf)).unwrap();
    }
    if !card.kind.is_empty() && budget - used - 9.0 > 24.0 {
        let kind = fit(&card.kind, budget - used - 9.0, |s| sans_width(s, KIND_PX, false));
        write!(out, r#"<tspan class="kd" dx="9">{}</tspan>"#, esc(&kind)).unwrap();
    }
    out.push_str("</text>");
    for (b, &(bx, row)) in card.badges.iter().zip(&c.badge_pos) {
        let by = TITLE_ROW + row as f64 * (BADGE_H + 4.0);
        let text = fit(&b.text, c.w - 2.0 * PAD - 10.0, |s| mono_width(s, BADGE_PX));
        write!(
            out,
            r#"<g class="{}" transform="translate({},{})"><rect width="{}" height="{}" rx="3"/><text x="5" y="11.5">{}</text></g>"#,
            b.class,
            num(bx),
            num(by),
            num(badge_width(&text)),
            num(BADGE_H),
            esc(&text)
        )
        .unwrap();
    }
    out.push_str("</g>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pdma_core::spec;
    use std::path::Path;

    fn topo(text: &str) -> p2pdma_core::Topology {
        spec::parse(text, Path::new("t.toml")).unwrap().to_topology().unwrap()
    }

    const NESTED: &str = r#"
[[root_port]]
name = "rp0"
[[switch]]
name = "outer"
parent = "rp0"
[[switch]]
name = "inner"
parent = "outer.0"
[[endpoint]]
name = "a"
kind = "nvme"
parent = "inner.0"
cmb_mib = 16
[[endpoint]]
name = "b"
kind = "nvme"
parent = "outer.1"
"#;

    #[test]
    fn layout_nested_switches_boxes_contain_their_subtree() {
        let t = topo(NESTED);
        let e = Engine::new(&t).unwrap();
        let l = layout(&e, &e.host_bridge_info(), &Grouping::new(&e));
        assert_eq!(l.cards.len(), t.devices.len() + t.host_bridges.len());
        assert_eq!(l.switches.len(), 2);
        // Every card below a switch's upstream port lies inside that switch's box.
        let inner_at = l.switches.iter().position(|s| s.label.starts_with("switch inner")).unwrap();
        let outer_at = l.switches.iter().position(|s| s.label.starts_with("switch outer")).unwrap();
        assert!(outer_at < inner_at, "the outer box is drawn first, below the inner one");
        let inner = &l.switches[inner_at];
        let a = l.cards.iter().find(|c| c.card.name == "a").unwrap();
        assert!(a.x >= inner.x && a.x + a.w <= inner.x + inner.w, "{a:?} {inner:?}");
        assert!(a.y >= inner.y && a.y + a.h <= inner.y + inner.h);
        let b = l.cards.iter().find(|c| c.card.name == "b").unwrap();
        assert!(b.y >= inner.y + inner.h, "b comes after the inner switch");
        // Cards never overlap vertically.
        let mut ys: Vec<(f64, f64)> = l.cards.iter().map(|c| (c.y, c.y + c.h)).collect();
        ys.sort_by(|p, q| p.0.total_cmp(&q.0));
        assert!(ys.windows(2).all(|w| w[0].1 <= w[1].0));
        assert!(l.cards.iter().all(|c| c.x + c.w <= l.width && c.y + c.h <= l.height));
    }

    #[test]
    fn layout_folds_a_group_of_vfs_into_one_card() {
        let t = topo(&format!(
            "{NESTED}[[endpoint]]\nname = \"nic\"\nkind = \"nic\"\nparent = \"outer.1\"\nfunction = 1\nvfs = 6\n"
        ));
        let e = Engine::new(&t).unwrap();
        let l = layout(&e, &e.host_bridge_info(), &Grouping::new(&e));
        assert_eq!(l.cards.len(), t.devices.len() + t.host_bridges.len() - 5, "6 VFs, one card");
        let card = l.cards.iter().find(|c| c.card.name == "nic-vf0 +5 VFs").expect("the group's card");
        assert!(card.card.badges.iter().any(|b| b.text.starts_with("6 VFs of ")), "{card:?}");
        let s = svg(&l, Mode::Embedded);
        assert!(!s.contains("nic-vf1"), "folded members have no card");
    }

    #[test]
    fn svg_escapes_names_and_marks_ids() {
        let mut t = topo(NESTED);
        t.devices[3].name = Some("<script>&\"x\u{1}".into());
        let e = Engine::new(&t).unwrap();
        let s = svg(
            &layout(&e, &e.host_bridge_info(), &Grouping::new(&e)),
            Mode::Standalone { title: "a<b", subtitle: "" },
        );
        assert!(!s.contains("<script>") && s.contains("&lt;script&gt;&amp;&quot;x\u{fffd}"), "{s}");
        assert!(s.contains(r#"id="n0""#) && s.contains(r#"id="h0""#) && s.contains(r#"data-p="h0""#));
        assert!(s.starts_with("<svg xmlns=") && s.contains("a&lt;b"));
    }

    #[test]
    fn badges_show_degraded_links_and_redirect() {
        let l = Link {
            current_speed: Some("2.5 GT/s PCIe".into()),
            current_width: Some(1),
            max_speed: Some("16.0 GT/s PCIe".into()),
            max_width: Some(32),
        };
        assert_eq!(link_badge(&l).unwrap(), Badge { class: "b warn", text: "2.5GT/s x1 (max 16GT/s x32)".into() });
        let b = acs_badge(Acs::Present { offset: 0x148, cap: 0x5f, ctrl: 0x1d }).unwrap();
        assert_eq!((b.class, b.text.as_str()), ("b redir", "ACS SV RR CR UF"));
        assert_eq!(acs_badge(Acs::Present { offset: 0x148, cap: 0x5f, ctrl: 0 }).unwrap().class, "b acs");
        assert!(acs_badge(Acs::Absent).is_none());
    }

    #[test]
    fn layout_of_looping_upstream_links_terminates_and_places_everything() {
        let mut t = topo(NESTED);
        let (a, b) = (t.devices[1].bdf, t.devices[2].bdf);
        t.devices[1].upstream = Some(b);
        t.devices[2].upstream = Some(a);
        let e = Engine::new(&t).unwrap();
        let l = layout(&e, &e.host_bridge_info(), &Grouping::new(&e));
        assert_eq!(l.cards.len(), t.devices.len() + t.host_bridges.len());
        assert!(svg(&l, Mode::Embedded).ends_with("</svg>"));
    }

    #[test]
    fn fit_truncates_with_ellipsis() {
        assert_eq!(fit("abc", 100.0, |s| mono_width(s, 10.0)), "abc");
        let cut = fit("abcdefghijklmnopqrstuvwxyz", 60.0, |s| mono_width(s, 10.0));
        assert!(cut.ends_with('…') && mono_width(&cut, 10.0) <= 60.0, "{cut}");
    }
}
