//! What changed between two snapshots of a machine, and which P2P pairs it changed.
//!
//! Two passes. Facts first: the machine (kernel, command line, IOMMU, CPU), each host
//! bridge's whitelist verdict, and every device field by field (added and removed devices
//! too). Fields are compared through their JSON form, so a field added to the model later
//! (BARs, IOMMU groups, kernel capabilities) is compared without touching this module; only
//! what never moves a verdict or a path is left out (`IGNORED_DEVICE_FIELDS`). Verdicts
//! second, without visiting every pair: each side's devices are grouped as the kernel cannot
//! tell them apart ([`crate::group`]), and the two groupings are refined into joint groups
//! (a device's group before and its group after). Both verdicts are constant over the member
//! pairs of two joint groups, so one representative pair answers for all of them, and the
//! flipped pairs are counted per group pair ([`Flip`]). Each fact is then given the flips
//! whose members it is or whose path (before or after) runs through it; machine-wide facts
//! are given every flip.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::analysis::MatrixFilter;
use crate::bdf::Bdf;
use crate::config::acs_bits;
use crate::group::{GroupedMatrix, Grouping};
use crate::model::{Device, Topology};
use crate::verdict::{Engine, MapType, PairResult};
use crate::Error;

/// Device fields that never move a verdict or a path: names (from the PCI ID database or a
/// topology file), the raw config bytes (their meaning is compared as `acs`, `port_type`,
/// ...), the class devices' aliases, and how much P2P memory happens to be in use.
pub const IGNORED_DEVICE_FIELDS: &[&str] =
    &["name", "vendor_name", "device_name", "class_name", "config_hex", "p2pmem.available"];

/// `p2pdma diff A B`.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// No change of fact and no change of verdict.
    pub same: bool,
    /// How many devices were added, removed, or changed in some field.
    pub devices: DeviceCounts,
    pub changes: Vec<Change>,
    /// The devices of `flips`, grouped: every member has one group before and one after.
    pub groups: Vec<DiffGroup>,
    /// Flipped pairs by group pair: every member pair (provider ≠ client) of the two groups
    /// went from `before` to `after`.
    pub flips: Vec<Flip>,
    /// Every pair whose verdict or distance differs, or that exists on one side only.
    pub pairs: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DeviceCounts {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
}

/// Devices that are one group on each side.
#[derive(Debug, Clone, Serialize)]
pub struct DiffGroup {
    /// The first member (lowest address): the group's name.
    pub device: Bdf,
    pub label: Option<String>,
    /// Every member, the representative first.
    pub members: Vec<Bdf>,
}

/// The member pairs of two groups, all flipped alike.
#[derive(Debug, Clone, Serialize)]
pub struct Flip {
    /// Indices into [`Diff::groups`].
    pub provider: usize,
    pub client: usize,
    /// How many member pairs: the product of the group sizes, or n(n-1) within one group.
    pub pairs: u64,
    /// None: the pair does not exist on that side.
    pub before: Option<PairResult>,
    pub after: Option<PairResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Machine,
    HostBridge,
    Device,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// One changed fact.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub scope: Scope,
    /// `machine`, a host bridge's name or a device's address.
    pub subject: String,
    /// A device's topology-file name or PCI ID name, for people.
    pub label: Option<String>,
    pub kind: ChangeKind,
    /// The field, dotted (`acs.ctrl`, `link.current_width`); None for added/removed.
    pub field: Option<String>,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// One line for people, e.g. `ACS control 0x001d [SV RR CR UF] -> 0x0000 [-]`.
    pub summary: String,
    /// Indices into [`Diff::flips`]: the flips whose members this is or whose path runs
    /// through it (all of them for machine-wide facts).
    pub flips: Vec<usize>,
    /// The member pairs of those flips.
    pub pairs: u64,
    /// Those pairs by verdict before and after, the most pairs first.
    pub transitions: Vec<Transition>,
}

/// How many pairs went from one verdict to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Transition {
    pub before: Option<PairResult>,
    pub after: Option<PairResult>,
    pub pairs: u64,
}

/// One flipped pair, as `--all` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PairKey {
    pub provider: Bdf,
    pub client: Bdf,
}

/// Two topologies with their devices as JSON values, compared step by step.
struct Sides<'a> {
    ea: Engine<'a>,
    eb: Engine<'a>,
    da: BTreeMap<Bdf, (&'a Device, Value)>,
    db: BTreeMap<Bdf, (&'a Device, Value)>,
}

/// Compares two topologies (`a` before, `b` after): the machine, host bridges and devices
/// field by field, then the verdicts by joint group; each change gets the flips whose
/// members it is or whose path runs through it.
pub fn diff(a: &Topology, b: &Topology) -> Result<Diff, Error> {
    let sides = Sides { ea: Engine::new(a)?, eb: Engine::new(b)?, da: device_values(a), db: device_values(b) };
    let mut changes = machine_changes(a, b, &sides);
    changes.extend(host_bridge_changes(&sides));
    changes.extend(device_changes(&sides));
    let (groups, flips) = flips(&sides);
    attribute(&mut changes, &groups, &flips, &sides);
    let pairs = flips.iter().map(|f| f.pairs).sum();
    let mut devices = DeviceCounts::default();
    let mut changed = BTreeSet::new();
    for c in changes.iter().filter(|c| c.scope == Scope::Device) {
        match c.kind {
            ChangeKind::Added => devices.added += 1,
            ChangeKind::Removed => devices.removed += 1,
            ChangeKind::Changed => {
                changed.insert(c.subject.as_str());
            }
        }
    }
    devices.changed = changed.len();
    Ok(Diff { same: changes.is_empty() && flips.is_empty(), devices, changes, groups, flips, pairs })
}

impl Diff {
    /// Every member pair of a flip (provider ≠ client), without storing them.
    pub fn pairs_of<'d>(&'d self, flip: &'d Flip) -> impl Iterator<Item = PairKey> + 'd {
        let (p, c) = (&self.groups[flip.provider].members, &self.groups[flip.client].members);
        p.iter().flat_map(move |&provider| {
            c.iter().filter(move |&&client| client != provider).map(move |&client| PairKey { provider, client })
        })
    }
}

/// Machine-wide facts, field by field, and the CPU rule.
fn machine_changes(a: &Topology, b: &Topology, sides: &Sides<'_>) -> Vec<Change> {
    let (ea, eb) = (&sides.ea, &sides.eb);
    let mut changes = Vec::new();
    for (field, before, after) in value_diff(&to_value(&a.machine), &to_value(&b.machine), &[]) {
        changes.push(change(Scope::Machine, "machine".into(), None, ChangeKind::Changed, Some(field), before, after));
    }
    if ea.cpu_allows() != eb.cpu_allows() {
        let (before, after) = (Value::Bool(ea.cpu_allows()), Value::Bool(eb.cpu_allows()));
        changes.push(change(
            Scope::Machine,
            "machine".into(),
            None,
            ChangeKind::Changed,
            Some("cpu_allows_p2pdma".into()),
            Some(before),
            Some(after),
        ));
    }
    changes
}

/// Host bridges and their whitelist verdicts.
fn host_bridge_changes(sides: &Sides<'_>) -> Vec<Change> {
    let (ea, eb) = (&sides.ea, &sides.eb);
    let mut changes = Vec::new();
    let bridges = |e: &Engine<'_>| -> BTreeMap<String, Value> {
        e.host_bridge_info().into_iter().map(|v| (v.host_bridge.clone(), to_value(&v))).collect()
    };
    let (ba, bb) = (bridges(ea), bridges(eb));
    for (name, kind, before, after) in keyed_diff(&ba, &bb) {
        match kind {
            ChangeKind::Changed => {
                for (field, x, y) in value_diff(before.unwrap(), after.unwrap(), &[]) {
                    changes.push(change(Scope::HostBridge, name.clone(), None, kind, Some(field), x, y));
                }
            }
            _ => changes.push(change(Scope::HostBridge, name, None, kind, None, before.cloned(), after.cloned())),
        }
    }
    changes
}

/// Devices, field by field (added and removed ones whole).
fn device_changes(sides: &Sides<'_>) -> Vec<Change> {
    let (da, db) = (&sides.da, &sides.db);
    let iommu = [iommu_members(da), iommu_members(db)];
    let mut changes = Vec::new();
    for bdf in da.keys().chain(db.keys()).collect::<BTreeSet<_>>() {
        let label = db.get(bdf).or(da.get(bdf)).and_then(|(d, _)| label(d));
        match (da.get(bdf), db.get(bdf)) {
            (Some((_, x)), Some((_, y))) => {
                for (field, before, after) in value_diff(x, y, IGNORED_DEVICE_FIELDS) {
                    if field == "iommu_group" && same_iommu_peers(&iommu, sides, bdf) {
                        continue;
                    }
                    changes.push(change(
                        Scope::Device,
                        bdf.to_string(),
                        label.clone(),
                        ChangeKind::Changed,
                        Some(field),
                        before,
                        after,
                    ));
                }
            }
            (Some(_), None) => {
                changes.push(change(Scope::Device, bdf.to_string(), label, ChangeKind::Removed, None, None, None))
            }
            (None, Some(_)) => {
                changes.push(change(Scope::Device, bdf.to_string(), label, ChangeKind::Added, None, None, None))
            }
            (None, None) => unreachable!("the key came from one of the maps"),
        }
    }
    changes
}

/// Devices by their group on each side (None: absent there), in address order.
struct Joint {
    members: Vec<Vec<Bdf>>,
}

fn joint_groups(sides: &Sides<'_>, ga: &Grouping, gb: &Grouping) -> Joint {
    let group = |e: &Engine<'_>, g: &Grouping, bdf: Bdf| e.index_of(bdf).map(|i| g.group_of(i));
    let mut by_key: HashMap<(Option<usize>, Option<usize>), usize> = HashMap::new();
    let mut members: Vec<Vec<Bdf>> = Vec::new();
    let all: BTreeSet<Bdf> = sides.da.keys().chain(sides.db.keys()).copied().collect();
    for bdf in all {
        let key = (group(&sides.ea, ga, bdf), group(&sides.eb, gb, bdf));
        let next = members.len();
        let at = *by_key.entry(key).or_insert(next);
        if at == next {
            members.push(Vec::new());
        }
        members[at].push(bdf);
    }
    Joint { members }
}

/// Whether a device shares its IOMMU group with the same devices on both sides: then a new
/// group number is the kernel numbering groups in another order (a group formed or split
/// elsewhere), not a change of this device.
fn same_iommu_peers(groups: &[HashMap<u32, Vec<Bdf>>; 2], sides: &Sides<'_>, bdf: &Bdf) -> bool {
    fn peers<'g>(
        g: &'g HashMap<u32, Vec<Bdf>>,
        d: &BTreeMap<Bdf, (&Device, Value)>,
        bdf: &Bdf,
    ) -> Option<&'g Vec<Bdf>> {
        d.get(bdf).and_then(|(dev, _)| dev.iommu_group).and_then(|n| g.get(&n))
    }
    let (a, b) = (peers(&groups[0], &sides.da, bdf), peers(&groups[1], &sides.db, bdf));
    a.is_some() && a == b
}

/// Each IOMMU group's members, in address order.
fn iommu_members(d: &BTreeMap<Bdf, (&Device, Value)>) -> HashMap<u32, Vec<Bdf>> {
    let mut out: HashMap<u32, Vec<Bdf>> = HashMap::new();
    for (bdf, (dev, _)) in d {
        if let Some(n) = dev.iommu_group {
            out.entry(n).or_default().push(*bdf);
        }
    }
    out
}

/// Verdicts by joint group pair: one representative pair of distinct members answers for
/// every member pair on both sides; the pairs that differ are counted, not listed.
fn flips(sides: &Sides<'_>) -> (Vec<DiffGroup>, Vec<Flip>) {
    let (ga, gb) = (Grouping::new(&sides.ea), Grouping::new(&sides.eb));
    let all = MatrixFilter::default();
    let (ma, mb) = (GroupedMatrix::new(&sides.ea, &ga, &all), GroupedMatrix::new(&sides.eb, &gb, &all));
    let joint = joint_groups(sides, &ga, &gb);
    let role = |bdf: &Bdf, provider: bool| {
        [&sides.da, &sides.db].iter().any(|d| {
            d.get(bdf).is_some_and(|(dev, _)| if provider { dev.has_p2p_memory_side() } else { dev.is_dma_capable() })
        })
    };
    let providers: Vec<usize> = (0..joint.members.len()).filter(|&j| role(&joint.members[j][0], true)).collect();
    let clients: Vec<usize> = (0..joint.members.len()).filter(|&j| role(&joint.members[j][0], false)).collect();
    let mut flips = Vec::new();
    for &p in &providers {
        for &c in &clients {
            let (mp, mc) = (&joint.members[p], &joint.members[c]);
            let (n, client) =
                if p == c { (mp.len() * (mp.len() - 1), mc.get(1)) } else { (mp.len() * mc.len(), mc.first()) };
            let Some(&client) = client else { continue };
            let verdict = |m: &GroupedMatrix| m.cell(mp[0], client).map(|cell| cell.verdict);
            let (before, after) = (verdict(&ma), verdict(&mb));
            if before != after {
                flips.push(Flip { provider: p, client: c, pairs: n as u64, before, after });
            }
        }
    }
    compact(sides, joint, flips)
}

/// Only the groups some flip names, renumbered in address order.
fn compact(sides: &Sides<'_>, joint: Joint, mut flips: Vec<Flip>) -> (Vec<DiffGroup>, Vec<Flip>) {
    let mut renumber: Vec<Option<usize>> = vec![None; joint.members.len()];
    for f in &flips {
        renumber[f.provider] = Some(0);
        renumber[f.client] = Some(0);
    }
    let mut groups = Vec::new();
    for (j, members) in joint.members.into_iter().enumerate() {
        if renumber[j].is_some() {
            renumber[j] = Some(groups.len());
            let label = sides.db.get(&members[0]).or(sides.da.get(&members[0])).and_then(|(d, _)| label(d));
            groups.push(DiffGroup { device: members[0], label, members });
        }
    }
    for f in &mut flips {
        f.provider = renumber[f.provider].expect("numbered above");
        f.client = renumber[f.client].expect("numbered above");
    }
    (groups, flips)
}

/// The path of a pair on one side, if both ends are there.
fn path_on(e: &Engine<'_>, provider: Bdf, client: Bdf) -> Vec<String> {
    match (e.index_of(provider), e.index_of(client)) {
        (Some(p), Some(c)) => {
            let (_, common) = e.walk(p as u32, c as u32, |_, _| {});
            e.path(p as u32, c as u32, common)
        }
        _ => Vec::new(),
    }
}

/// Each fact gets the flips whose groups hold it or whose path (before or after) runs
/// through it: the bridges on the path are the same for every member pair of a flip, the
/// ends are the members. Machine-wide facts get every flip.
fn attribute(changes: &mut [Change], groups: &[DiffGroup], flips: &[Flip], sides: &Sides<'_>) {
    let mut by_subject: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, c) in changes.iter().enumerate().filter(|(_, c)| c.scope != Scope::Machine) {
        by_subject.entry(c.subject.as_str()).or_default().push(i);
    }
    let mut found: Vec<Vec<usize>> = vec![Vec::new(); changes.len()];
    if !by_subject.is_empty() {
        let of_group: Vec<BTreeSet<usize>> = groups
            .iter()
            .map(|g| {
                g.members
                    .iter()
                    .flat_map(|b| by_subject.get(b.to_string().as_str()).into_iter().flatten().copied())
                    .collect()
            })
            .collect();
        for (fi, f) in flips.iter().enumerate() {
            let (p, c) = (
                groups[f.provider].device,
                groups[f.client].members.iter().copied().find(|&b| b != groups[f.provider].device),
            );
            let Some(c) = c else { continue };
            let mut hit: BTreeSet<usize> = &of_group[f.provider] | &of_group[f.client];
            for (e, present) in [(&sides.ea, f.before.is_some()), (&sides.eb, f.after.is_some())] {
                if present {
                    hit.extend(path_on(e, p, c).iter().flat_map(|n| by_subject.get(n.as_str()).into_iter().flatten()));
                }
            }
            for i in hit {
                found[i].push(fi);
            }
        }
    }
    for (i, c) in changes.iter_mut().enumerate() {
        c.flips = if c.scope == Scope::Machine { (0..flips.len()).collect() } else { std::mem::take(&mut found[i]) };
        c.pairs = c.flips.iter().map(|&f| flips[f].pairs).sum();
        c.transitions = transitions(c.flips.iter().map(|&f| &flips[f]));
    }
}

/// Pairs counted by (before, after), the most first.
pub fn transitions<'f>(flips: impl Iterator<Item = &'f Flip>) -> Vec<Transition> {
    let mut out: Vec<Transition> = Vec::new();
    for f in flips {
        match out.iter_mut().find(|t| t.before == f.before && t.after == f.after) {
            Some(t) => t.pairs += f.pairs,
            None => out.push(Transition { before: f.before, after: f.after, pairs: f.pairs }),
        }
    }
    out.sort_by_key(|t| std::cmp::Reverse(t.pairs));
    out
}

fn device_values(t: &Topology) -> BTreeMap<Bdf, (&Device, Value)> {
    t.devices.iter().map(|d| (d.bdf, (d, to_value(d)))).collect()
}

/// A device's name for people: its topology-file name, else its PCI ID name.
fn label(d: &Device) -> Option<String> {
    d.name.clone().or_else(|| d.pci_name())
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Differences between two JSON values: objects are walked key by key (dotted paths), any
/// other value is compared whole. A key missing on one side counts as null, so a field that
/// older snapshots lack is not a change while it is unset.
fn value_diff(a: &Value, b: &Value, ignored: &[&str]) -> Vec<(String, Option<Value>, Option<Value>)> {
    fn walk(
        prefix: &str,
        a: &Value,
        b: &Value,
        ignored: &[&str],
        out: &mut Vec<(String, Option<Value>, Option<Value>)>,
    ) {
        if ignored.contains(&prefix) {
            return;
        }
        let empty = serde_json::Map::new();
        let object = |v: &'_ Value| match v {
            Value::Object(m) => Some(m.clone()),
            Value::Null => Some(empty.clone()),
            _ => None,
        };
        // An object on one side and null (absent) on the other is walked too, so that a link
        // that appears says which fields it brings.
        let pair = match (a, b) {
            (Value::Object(_), _) | (_, Value::Object(_)) => object(a).zip(object(b)),
            _ => None,
        };
        match pair {
            Some((x, y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    let (vx, vy) = (x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null));
                    walk(&path, vx, vy, ignored, out);
                }
            }
            None if a != b => out.push((prefix.to_string(), Some(a.clone()), Some(b.clone()))),
            None => {}
        }
    }
    let mut out = Vec::new();
    walk("", a, b, ignored, &mut out);
    out
}

type Keyed<'v> = (String, ChangeKind, Option<&'v Value>, Option<&'v Value>);

fn keyed_diff<'v>(a: &'v BTreeMap<String, Value>, b: &'v BTreeMap<String, Value>) -> Vec<Keyed<'v>> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x != y => Some((k.clone(), ChangeKind::Changed, Some(x), Some(y))),
            (Some(x), None) => Some((k.clone(), ChangeKind::Removed, Some(x), None)),
            (None, Some(y)) => Some((k.clone(), ChangeKind::Added, None, Some(y))),
            _ => None,
        })
        .collect()
}

fn change(
    scope: Scope,
    subject: String,
    label: Option<String>,
    kind: ChangeKind,
    field: Option<String>,
    before: Option<Value>,
    after: Option<Value>,
) -> Change {
    let who = match &label {
        Some(l) => format!("{subject} ({l})"),
        None => subject.clone(),
    };
    let summary = match (kind, field.as_deref()) {
        (ChangeKind::Added, _) => format!("{who} added"),
        (ChangeKind::Removed, _) => format!("{who} gone"),
        (ChangeKind::Changed, Some("acs.ctrl")) => {
            let acs = |v: &Option<Value>| {
                let ctrl = v.as_ref().and_then(Value::as_u64).unwrap_or(0) as u16;
                let names = acs_bits::names(ctrl);
                format!("{ctrl:#06x} [{}]", if names.is_empty() { "-".to_string() } else { names.join(" ") })
            };
            format!("{who}: ACS control {} -> {}", acs(&before), acs(&after))
        }
        (ChangeKind::Changed, Some(f)) => {
            format!("{who}: {f} {} -> {}", show(before.as_ref()), show(after.as_ref()))
        }
        (ChangeKind::Changed, None) => format!("{who} changed"),
    };
    Change {
        scope,
        subject,
        label,
        kind,
        field,
        before,
        after,
        summary,
        flips: Vec::new(),
        pairs: 0,
        transitions: Vec::new(),
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "none".into(),
        Some(Value::String(s)) => format!("\"{s}\""),
        Some(other) => other.to_string(),
    }
}

/// `BUS4`, `HB8`, `NO`, `absent`: a pair's verdict as `topo`'s matrix shows it.
pub fn verdict_short(r: Option<&PairResult>) -> String {
    match r {
        None => "absent".into(),
        Some(PairResult { map_type: MapType::BusAddr, distance }) => format!("BUS{}", distance.unwrap_or(0)),
        Some(PairResult { map_type: MapType::ThruHostBridge, distance }) => format!("HB{}", distance.unwrap_or(0)),
        Some(PairResult { map_type: MapType::NotSupported, .. }) => "NO".into(),
    }
}

/// `bus_addr 4`, `not_supported`, `absent`: a pair's verdict in a word or two.
pub fn verdict_text(r: Option<&PairResult>) -> String {
    match r {
        None => "absent".into(),
        Some(PairResult { map_type, distance: Some(d) }) => format!("{} {d}", map_type.as_str()),
        Some(PairResult { map_type, distance: None }) => map_type.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(text: &str) -> Topology {
        crate::spec::parse(text, std::path::Path::new("t.toml")).unwrap().to_topology().unwrap()
    }

    const SWITCH: &str = include_str!("../../../examples/topologies/switch.toml");

    type Pairs = BTreeMap<PairKey, PairResult>;

    /// Every provider × client pair (provider ≠ client) of one side, from the full engine.
    fn every_pair(t: &Topology) -> Pairs {
        let e = Engine::new(t).unwrap();
        let n = t.devices.len();
        let mut out = BTreeMap::new();
        for p in (0..n).filter(|&p| t.devices[p].has_p2p_memory_side()) {
            for c in (0..n).filter(|&c| c != p && t.devices[c].is_dma_capable()) {
                out.insert(PairKey { provider: t.devices[p].bdf, client: t.devices[c].bdf }, e.pair(p, c));
            }
        }
        out
    }

    /// The diff against the pairwise one it replaced: the same flipped pairs with the same
    /// verdicts, and each change given the pairs whose end's group it is in or whose path
    /// (explain's, before or after) runs through it.
    fn assert_exact(a: &Topology, b: &Topology) -> Diff {
        let d = diff(a, b).unwrap();
        let (pa, pb) = (every_pair(a), every_pair(b));
        let mut want: BTreeMap<PairKey, (Option<PairResult>, Option<PairResult>)> = BTreeMap::new();
        for k in pa.keys().chain(pb.keys()) {
            let (x, y) = (pa.get(k).copied(), pb.get(k).copied());
            if x != y {
                want.insert(*k, (x, y));
            }
        }
        let expand = |flips: &[usize]| -> BTreeMap<PairKey, (Option<PairResult>, Option<PairResult>)> {
            let mut got = BTreeMap::new();
            for &f in flips {
                for k in d.pairs_of(&d.flips[f]) {
                    assert!(got.insert(k, (d.flips[f].before, d.flips[f].after)).is_none(), "{k:?} twice");
                }
            }
            got
        };
        let got = expand(&(0..d.flips.len()).collect::<Vec<_>>());
        assert_eq!(got, want);
        assert_eq!(d.pairs, want.len() as u64);
        let (ea, eb) = (Engine::new(a).unwrap(), Engine::new(b).unwrap());
        let path = |e: &Engine<'_>, k: &PairKey| match (e.index_of(k.provider), e.index_of(k.client)) {
            (Some(p), Some(c)) => e.explain(p, c).path,
            _ => Vec::new(),
        };
        let group_of = |b: Bdf| d.groups.iter().find(|g| g.members.contains(&b)).expect("a flipped pair's end");
        for c in &d.changes {
            let mine: BTreeSet<PairKey> = expand(&c.flips).into_keys().collect();
            let theirs: BTreeSet<PairKey> = want
                .iter()
                .filter(|(k, (x, y))| {
                    c.scope == Scope::Machine
                        || [k.provider, k.client]
                            .iter()
                            .any(|&end| group_of(end).members.iter().any(|m| m.to_string() == c.subject))
                        || (x.is_some() && path(&ea, k).contains(&c.subject))
                        || (y.is_some() && path(&eb, k).contains(&c.subject))
                })
                .map(|(k, _)| *k)
                .collect();
            assert_eq!(mine, theirs, "{}", c.summary);
            assert_eq!(c.pairs, mine.len() as u64);
            assert_eq!(c.transitions.iter().map(|t| t.pairs).sum::<u64>(), c.pairs);
        }
        d
    }

    fn examples() -> Vec<(String, Topology)> {
        let mut out: Vec<(String, Topology)> = std::fs::read_dir("../../examples/topologies")
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (p.display().to_string(), topo(&std::fs::read_to_string(&p).unwrap())))
            .collect();
        out.sort_by(|x, y| x.0.cmp(&y.0));
        out
    }

    /// ACS redirects turned on where off and off where on, on one device.
    fn flip_acs(t: &Topology, i: usize) -> Option<Topology> {
        let mut b = t.clone();
        match &mut b.devices[i].acs {
            crate::config::Acs::Present { ctrl, .. } => *ctrl ^= acs_bits::RR | acs_bits::CR,
            _ => return None,
        }
        Some(b)
    }

    #[test]
    fn counts_equal_the_pairwise_diff_on_every_example() {
        let all = examples();
        for (name, t) in &all {
            assert!(assert_exact(t, t).same, "{name}");
            for i in 0..t.devices.len() {
                if let Some(b) = flip_acs(t, i) {
                    assert_exact(t, &b);
                }
                let mut gone = t.clone();
                gone.devices.remove(i);
                // A bridge with devices below is no machine without them.
                if Engine::new(&gone).is_ok() {
                    assert_exact(t, &gone);
                    assert_exact(&gone, t);
                }
            }
        }
        // Different machines: everything added, removed or moved at once.
        for w in all.windows(2) {
            assert_exact(&w[0].1, &w[1].1);
        }
    }

    const VFS: &str = r#"
[machine]
cpu = "intel"
iommu = true
[[host_bridge]]
name = "hb0"
id = "8086:09a2"
[[host_bridge]]
name = "hb1"
id = "8086:09a2"
bus = 0x80
[[root_port]]
name = "rp0"
host_bridge = "hb0"
[[root_port]]
name = "rp1"
host_bridge = "hb1"
[[switch]]
name = "sw0"
parent = "rp0"
ports = 3
acs = 0x1f
[[endpoint]]
name = "nic0"
kind = "nic"
parent = "sw0.0"
vfs = VF0
[[endpoint]]
name = "gpu0"
kind = "gpu"
parent = "sw0.1"
p2pmem_mib = 256
[[endpoint]]
name = "nvme0"
kind = "nvme"
parent = "sw0.2"
cmb_mib = 16
[[endpoint]]
name = "nic1"
kind = "nic"
parent = "rp1"
vfs = VF1
"#;

    fn vf_machine(vf0: u8, vf1: u8) -> Topology {
        topo(&VFS.replace("VF0", &vf0.to_string()).replace("VF1", &vf1.to_string()))
    }

    #[test]
    fn counts_equal_the_pairwise_diff_on_a_machine_with_vfs() {
        let a = vf_machine(7, 5);
        for i in 0..a.devices.len() {
            if let Some(b) = flip_acs(&a, i) {
                let d = assert_exact(&a, &b);
                // A VF group is one group of the diff: never more group pairs than 7 groups allow.
                assert!(d.flips.len() <= 49, "{}", d.flips.len());
            }
        }
        // VFs added and removed: the groups split on each side.
        let d = assert_exact(&a, &vf_machine(3, 8));
        assert!(d.devices.added > 0 && d.devices.removed > 0, "{:?}", d.devices);
        assert_exact(&vf_machine(3, 8), &a);
        assert_exact(&a, &vf_machine(7, 0));
        // One VF's IOMMU setting apart: its group splits from its siblings on one side only.
        let mut b = a.clone();
        let vf = b.devices.iter().position(|d| d.name.as_deref() == Some("nic0-vf3")).unwrap();
        b.devices[vf].numa_node = Some(1);
        assert_exact(&a, &b);
    }

    #[test]
    fn identical_topologies_are_the_same() {
        let t = topo(SWITCH);
        let d = diff(&t, &t).unwrap();
        assert!(d.same && d.changes.is_empty() && d.flips.is_empty() && d.pairs == 0);
    }

    #[test]
    fn names_and_free_memory_are_not_changes() {
        let a = topo(SWITCH);
        let mut b = a.clone();
        for dev in &mut b.devices {
            dev.vendor_name = Some("Someone".into());
            dev.config_hex = Some("00".into());
            if let Some(m) = &mut dev.p2pmem {
                m.available /= 2;
            }
        }
        assert!(diff(&a, &b).unwrap().same);
    }

    #[test]
    fn acs_redirect_on_a_switch_port_names_the_port_and_the_flipped_pair() {
        let a = topo(SWITCH);
        let mut b = a.clone();
        let port = b.devices.iter_mut().find(|d| d.name.as_deref() == Some("sw0.0")).unwrap();
        let bdf = port.bdf;
        port.acs = crate::config::Acs::Present { offset: 0x100, cap: 0x5f, ctrl: acs_bits::RR | acs_bits::CR };
        let d = assert_exact(&a, &b);
        assert!(!d.same);
        // Both drives have memory BARs, so both directions are matrix pairs, and both flip.
        assert_eq!(d.pairs, 2, "{d:#?}");
        for flip in &d.flips {
            assert_eq!(verdict_text(flip.before.as_ref()), "bus_addr 4");
            assert_eq!(flip.after.unwrap().map_type, crate::MapType::NotSupported);
        }
        let acs: Vec<&Change> = d.changes.iter().filter(|c| c.subject == bdf.to_string()).collect();
        assert!(
            acs.iter().any(|c| c.field.as_deref() == Some("acs.ctrl") && c.summary.contains("[RR CR]")),
            "{acs:#?}"
        );
        assert!(acs.iter().all(|c| c.pairs == 2 && c.transitions.len() == 1), "{acs:#?}");
    }

    #[test]
    fn a_removed_device_is_gone_with_its_pairs() {
        let a = topo(SWITCH);
        let mut b = a.clone();
        let gone = b.devices.iter().position(|d| d.name.as_deref() == Some("nvme-b")).unwrap();
        let bdf = b.devices.remove(gone).bdf;
        let d = assert_exact(&a, &b);
        let c = d.changes.iter().find(|c| c.subject == bdf.to_string()).unwrap();
        assert_eq!(c.kind, ChangeKind::Removed);
        assert_eq!(d.devices, DeviceCounts { added: 0, removed: 1, changed: 0 });
        // nvme-a → nvme-b and nvme-b → nvme-a (its registers BAR makes it a row too).
        assert_eq!(c.pairs, 2);
        assert!(d.flips.iter().all(|f| f.after.is_none() && f.before.is_some()));
    }

    #[test]
    fn a_link_trained_down_is_a_change_without_flips() {
        let a = topo(SWITCH);
        let mut b = a.clone();
        let dev = b.devices.iter_mut().find(|d| d.name.as_deref() == Some("nvme-b")).unwrap();
        dev.link = Some(crate::model::Link {
            current_speed: Some("2.5 GT/s PCIe".into()),
            current_width: Some(1),
            max_speed: Some("8.0 GT/s PCIe".into()),
            max_width: Some(4),
        });
        let d = diff(&a, &b).unwrap();
        assert!(!d.same && d.flips.is_empty());
        assert!(d.changes.iter().any(|c| c.field.as_deref() == Some("link.current_width")), "{d:#?}");
    }

    #[test]
    fn a_kernel_change_is_machine_wide() {
        let a = topo(SWITCH);
        let mut b = a.clone();
        b.machine.kernel_release = Some("6.12.0".into());
        b.machine.cmdline = Some("pci=disable_acs_redir=0000:00:10.0".into());
        let d = diff(&a, &b).unwrap();
        let fields: Vec<_> = d.changes.iter().filter_map(|c| c.field.as_deref()).collect();
        assert_eq!(fields, ["cmdline", "kernel_release"]);
        assert!(d.changes.iter().all(|c| c.scope == Scope::Machine));
    }
}
