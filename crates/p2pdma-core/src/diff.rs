//! What changed between two snapshots of a machine, and which P2P pairs it changed.
//!
//! Two passes. Facts first: the machine (kernel, command line, IOMMU, CPU), each host
//! bridge's whitelist verdict, and every device field by field (added and removed devices
//! too). Fields are compared through their JSON form, so a field added to the model later
//! (BARs, IOMMU groups, kernel capabilities) is compared without touching this module; only
//! what never moves a verdict or a path is left out (`IGNORED_DEVICE_FIELDS`). Verdicts
//! second: every provider × client pair of `analysis::matrix` on both sides. The pairs whose
//! verdict or distance differ are the truth; each fact is then given the flipped pairs whose
//! path (before or after) runs through it, and machine-wide facts are given every flip.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::analysis;
use crate::bdf::Bdf;
use crate::config::acs_bits;
use crate::model::{Device, Topology};
use crate::verdict::{Engine, PairResult};
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
    pub changes: Vec<Change>,
    /// Every pair whose verdict or distance differs, or that exists on one side only.
    pub pairs: Vec<PairChange>,
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
    /// The flipped pairs whose path runs through this fact (all of them for machine-wide facts).
    pub pairs: Vec<PairKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct PairKey {
    pub provider: Bdf,
    pub client: Bdf,
}

/// One pair's verdict on both sides (None: the pair does not exist on that side).
#[derive(Debug, Clone, Serialize)]
pub struct PairChange {
    pub provider: Bdf,
    pub client: Bdf,
    pub provider_label: Option<String>,
    pub client_label: Option<String>,
    pub before: Option<PairResult>,
    pub after: Option<PairResult>,
    /// The path on each side (addresses, and host bridge names when the path crosses one).
    pub path_before: Vec<String>,
    pub path_after: Vec<String>,
}

/// Two topologies with their devices as JSON values, compared step by step.
struct Sides<'a> {
    ea: Engine<'a>,
    eb: Engine<'a>,
    da: BTreeMap<Bdf, (&'a Device, Value)>,
    db: BTreeMap<Bdf, (&'a Device, Value)>,
}

/// Compares two topologies (`a` before, `b` after): the machine, host bridges and devices
/// field by field, then every pair's verdict; each change gets the flipped pairs whose
/// path runs through it.
pub fn diff(a: &Topology, b: &Topology) -> Result<Diff, Error> {
    let sides = Sides { ea: Engine::new(a)?, eb: Engine::new(b)?, da: device_values(a), db: device_values(b) };
    let mut changes = machine_changes(a, b, &sides);
    changes.extend(host_bridge_changes(&sides));
    changes.extend(device_changes(&sides));
    let pairs = pair_changes(&sides);
    attribute(&mut changes, &pairs);
    Ok(Diff { same: changes.is_empty() && pairs.is_empty(), changes, pairs })
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
    let mut changes = Vec::new();
    for bdf in da.keys().chain(db.keys()).collect::<BTreeSet<_>>() {
        let label = db.get(bdf).or(da.get(bdf)).and_then(|(d, _)| label(d));
        match (da.get(bdf), db.get(bdf)) {
            (Some((_, x)), Some((_, y))) => {
                for (field, before, after) in value_diff(x, y, IGNORED_DEVICE_FIELDS) {
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

/// Verdicts, pair by pair: every pair whose verdict differs, with its path on each side.
fn pair_changes(sides: &Sides<'_>) -> Vec<PairChange> {
    let (ea, eb, da, db) = (&sides.ea, &sides.eb, &sides.da, &sides.db);
    let cells = |e: &Engine<'_>| -> BTreeMap<PairKey, PairResult> {
        let m = analysis::matrix(e);
        let mut out = BTreeMap::new();
        for (p, row) in m.providers.iter().zip(&m.cells) {
            for (c, cell) in m.clients.iter().zip(row) {
                if p != c {
                    out.insert(PairKey { provider: *p, client: *c }, *cell);
                }
            }
        }
        out
    };
    let (ca, cb) = (cells(ea), cells(eb));
    let path = |e: &Engine<'_>, k: &PairKey, present: bool| -> Vec<String> {
        match (present, e.index_of(k.provider), e.index_of(k.client)) {
            (true, Some(p), Some(c)) => e.explain(p, c).path,
            _ => Vec::new(),
        }
    };
    let mut pairs = Vec::new();
    for key in ca.keys().chain(cb.keys()).collect::<BTreeSet<_>>() {
        let (before, after) = (ca.get(key).copied(), cb.get(key).copied());
        if before == after {
            continue;
        }
        let label_of = |bdf: Bdf| db.get(&bdf).or(da.get(&bdf)).and_then(|(d, _)| label(d));
        pairs.push(PairChange {
            provider: key.provider,
            client: key.client,
            provider_label: label_of(key.provider),
            client_label: label_of(key.client),
            before,
            after,
            path_before: path(ea, key, before.is_some()),
            path_after: path(eb, key, after.is_some()),
        });
    }
    pairs
}

/// Each fact gets the flipped pairs whose path runs through it (all of them for
/// machine-wide facts).
fn attribute(changes: &mut [Change], pairs: &[PairChange]) {
    for c in changes.iter_mut() {
        c.pairs = pairs
            .iter()
            .filter(|p| {
                c.scope == Scope::Machine
                    || [p.provider.to_string(), p.client.to_string()].contains(&c.subject)
                    || p.path_before.contains(&c.subject)
                    || p.path_after.contains(&c.subject)
            })
            .map(|p| PairKey { provider: p.provider, client: p.client })
            .collect();
    }
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
    Change { scope, subject, label, kind, field, before, after, summary, pairs: Vec::new() }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "none".into(),
        Some(Value::String(s)) => format!("\"{s}\""),
        Some(other) => other.to_string(),
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

    #[test]
    fn identical_topologies_are_the_same() {
        let t = topo(SWITCH);
        let d = diff(&t, &t).unwrap();
        assert!(d.same && d.changes.is_empty() && d.pairs.is_empty());
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
        let d = diff(&a, &b).unwrap();
        assert!(!d.same);
        // Both drives have memory BARs, so both directions are matrix pairs, and both flip.
        assert_eq!(d.pairs.len(), 2, "{d:#?}");
        for pair in &d.pairs {
            assert_eq!(verdict_text(pair.before.as_ref()), "bus_addr 4");
            assert_eq!(pair.after.unwrap().map_type, crate::MapType::NotSupported);
        }
        let keys: Vec<PairKey> = d.pairs.iter().map(|p| PairKey { provider: p.provider, client: p.client }).collect();
        let acs: Vec<&Change> = d.changes.iter().filter(|c| c.subject == bdf.to_string()).collect();
        assert!(
            acs.iter().any(|c| c.field.as_deref() == Some("acs.ctrl") && c.summary.contains("[RR CR]")),
            "{acs:#?}"
        );
        assert!(acs.iter().all(|c| c.pairs == keys), "{acs:#?}");
    }

    #[test]
    fn a_removed_device_is_gone_with_its_pairs() {
        let a = topo(SWITCH);
        let mut b = a.clone();
        let gone = b.devices.iter().position(|d| d.name.as_deref() == Some("nvme-b")).unwrap();
        let bdf = b.devices.remove(gone).bdf;
        let d = diff(&a, &b).unwrap();
        let c = d.changes.iter().find(|c| c.subject == bdf.to_string()).unwrap();
        assert_eq!(c.kind, ChangeKind::Removed);
        // nvme-a → nvme-b and nvme-b → nvme-a (its registers BAR makes it a row too).
        assert_eq!(c.pairs.len(), 2);
        assert!(d.pairs.iter().all(|p| p.after.is_none() && p.before.is_some()));
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
        assert!(!d.same && d.pairs.is_empty());
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
