//! nvmetcli's `config.json` (`nvmetcli save` / `nvmetcli restore`): the whole nvmet tree as
//! JSON, read from configfs ([`read`]) and planned back onto it ([`plan_restore`]).
//!
//! The format, as nvmetcli's `nvmet/nvme.py` writes it (`dump()`): every object has one map
//! per attribute group, holding the group's *writable* files without the group prefix
//! (`attr_serial` → `"attr": {"serial": ...}`), values as the kernel shows them, plus
//! `enable` (an integer) where the object has an `enable` file:
//!
//! - `hosts`: `[{"nqn"}]`
//! - `subsystems`: `[{"nqn", "attr": {...}, "allowed_hosts": [nqn], "namespaces": [...],
//!   "passthru": [{"device": {...}, "enable", "clear_ids", "admin_timeout", "io_timeout"}]}]`
//! - namespaces: `{"nsid", "enable", "device": {"path", "uuid", "nguid"}, "ana": {"grpid"},
//!   "resv": {...}, "ana_grpid"}`
//! - `ports`: `[{"portid", "addr": {"trtype", "adrfam", "traddr", "trsvcid", "treq", ...},
//!   "param": {...}, "subsystems": [nqn], "ana_groups": [{"grpid", "ana": {"state"}}],
//!   "referrals": [{"name", "enable", "addr": {...}}]}]`
//!
//! p2pdma adds one key nvmetcli does not write: a namespace's `"p2pmem"` (the kernel's
//! `p2pmem` attribute, which has no group prefix). At that level nvmetcli's restore ignores
//! unknown keys, so a file p2pdma saved still restores with nvmetcli (without P2P memory).
//! Keys are written sorted and indented by two, as nvmetcli does.
//!
//! Restore only adds: a subsystem or port that already exists refuses the restore; host
//! entries that exist are used as they are. Each enabled namespace is checked by the export
//! planner ([`plan_export`]): in-use and already-exported refusals, the provider's verdict,
//! `p2pmem 1` without a provider (the kernel's enable would fail).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use p2pdma_core::Engine;
use serde::{Deserialize, Serialize};

use crate::plan::{check_name, check_nqn, plan_export, Access, ExportPlan, ExportRequest, NamespaceDevice, Outcome};
use crate::plan::{P2pmemRequest, Step, Transport};
use crate::state::{entries, parse_port_id, NvmetState};
use crate::NvmetError;

/// An attribute group: file names without the group prefix → values.
pub type Attrs = BTreeMap<String, String>;

/// The whole file. Fields in the order nvmetcli writes them (sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NvmetConfig {
    #[serde(default)]
    pub hosts: Vec<HostConfig>,
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    #[serde(default)]
    pub subsystems: Vec<SubsystemConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    pub nqn: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    #[serde(default)]
    pub addr: Attrs,
    #[serde(default)]
    pub ana_groups: Vec<AnaGroupConfig>,
    #[serde(default)]
    pub param: Attrs,
    pub portid: u16,
    #[serde(default)]
    pub referrals: Vec<ReferralConfig>,
    #[serde(default)]
    pub subsystems: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnaGroupConfig {
    #[serde(default)]
    pub ana: Attrs,
    pub grpid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralConfig {
    #[serde(default)]
    pub addr: Attrs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<u8>,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsystemConfig {
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub attr: Attrs,
    #[serde(default)]
    pub namespaces: Vec<NamespaceConfig>,
    pub nqn: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passthru: Vec<PassthruConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceConfig {
    #[serde(default)]
    pub ana: Attrs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ana_grpid: Option<u32>,
    #[serde(default)]
    pub device: Attrs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<u8>,
    pub nsid: u32,
    /// p2pdma's addition: the kernel's `p2pmem` (`0`, `1` or a provider's PCI name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p2pmem: Option<String>,
    #[serde(default)]
    pub resv: Attrs,
}

/// A subsystem's `passthru/` (a whole NVMe controller passed through). Saved as nvmetcli
/// does; restored only while disabled (p2pdma exports block devices).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassthruConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_ids: Option<u32>,
    #[serde(default)]
    pub device: Attrs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_timeout: Option<u32>,
}

/// `FILE: field PATH: what` for a file that is not the config it should be.
fn bad_field(file: &str, field: &str, why: impl std::fmt::Display) -> NvmetError {
    NvmetError::BadInput(format!("{file}: field {field}: {why}"))
}

/// Parses `text` (the contents of `file`, named in errors): not JSON, a wrong shape or an
/// unknown field is one line naming the file and the field.
pub fn parse(text: &str, file: &str) -> Result<NvmetConfig, NvmetError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| NvmetError::BadInput(format!("{file}: not JSON: {e}")))?;
    if !value.is_object() {
        return Err(NvmetError::BadInput(format!(
            "{file}: not an nvmetcli config (an object with hosts, ports, subsystems)"
        )));
    }
    objects_where_expected(&value).map_err(|field| bad_field(file, &field, "not an object"))?;
    let config: NvmetConfig =
        serde_path_to_error::deserialize(&value).map_err(|e| bad_field(file, &e.path().to_string(), e.into_inner()))?;
    validate(&config, file)?;
    Ok(config)
}

/// serde also reads a struct from an array of its fields; nvmetcli's objects are objects.
fn objects_where_expected(v: &serde_json::Value) -> Result<(), String> {
    fn each(v: &serde_json::Value, at: &str, key: &str, inner: &[&str]) -> Result<(), String> {
        let Some(items) = v.get(key).and_then(|x| x.as_array()) else { return Ok(()) };
        for (i, item) in items.iter().enumerate() {
            let here = if at.is_empty() { format!("{key}[{i}]") } else { format!("{at}.{key}[{i}]") };
            if !item.is_object() {
                return Err(here);
            }
            for k in inner {
                each(item, &here, k, &[])?;
            }
        }
        Ok(())
    }
    each(v, "", "hosts", &[])?;
    each(v, "", "ports", &["ana_groups", "referrals"])?;
    each(v, "", "subsystems", &["namespaces", "passthru"])
}

/// nvmetcli's layout: sorted keys, two-space indent, a final newline.
pub fn to_json(config: &NvmetConfig) -> String {
    let mut s = serde_json::to_string_pretty(config).unwrap_or_default();
    s.push('\n');
    s
}

fn check_attrs(file: &str, field: &str, attrs: &Attrs) -> Result<(), NvmetError> {
    for (name, value) in attrs {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(bad_field(file, &format!("{field}.{name}"), "not an attribute name (a-z, 0-9, _)"));
        }
        if value.contains('\n') {
            return Err(bad_field(file, &format!("{field}.{name}"), "a value is one line"));
        }
    }
    Ok(())
}

fn check_enable(file: &str, field: &str, enable: Option<u8>) -> Result<(), NvmetError> {
    match enable {
        None | Some(0 | 1) => Ok(()),
        Some(n) => Err(bad_field(file, field, format!("{n}: enable is 0 or 1"))),
    }
}

/// What the file may not say, whatever configfs holds: names, repeats, values.
fn validate(c: &NvmetConfig, file: &str) -> Result<(), NvmetError> {
    let named = |field: String, r: Result<(), NvmetError>| r.map_err(|e| bad_field(file, &field, e));
    for (i, h) in c.hosts.iter().enumerate() {
        named(format!("hosts[{i}].nqn"), check_name("host NQN", &h.nqn))?;
    }
    for (i, s) in c.subsystems.iter().enumerate() {
        let at = format!("subsystems[{i}]");
        named(format!("{at}.nqn"), check_nqn(&s.nqn))?;
        if c.subsystems[..i].iter().any(|o| o.nqn == s.nqn) {
            return Err(bad_field(file, &format!("{at}.nqn"), format!("{} appears twice", s.nqn)));
        }
        check_attrs(file, &format!("{at}.attr"), &s.attr)?;
        for (j, h) in s.allowed_hosts.iter().enumerate() {
            named(format!("{at}.allowed_hosts[{j}]"), check_name("host NQN", h))?;
        }
        if s.attr.get("allow_any_host").map(String::as_str) == Some("1") && !s.allowed_hosts.is_empty() {
            return Err(bad_field(
                file,
                &format!("{at}.attr.allow_any_host"),
                "1 with allowed_hosts listed: the kernel refuses one while the other is set",
            ));
        }
        for (j, n) in s.namespaces.iter().enumerate() {
            let at = format!("{at}.namespaces[{j}]");
            if n.nsid == 0 || n.nsid == u32::MAX {
                return Err(bad_field(
                    file,
                    &format!("{at}.nsid"),
                    format!("{}: namespace ids run from 1 to 4294967294", n.nsid),
                ));
            }
            if s.namespaces[..j].iter().any(|o| o.nsid == n.nsid) {
                return Err(bad_field(file, &format!("{at}.nsid"), format!("{} appears twice", n.nsid)));
            }
            for (group, attrs) in [("ana", &n.ana), ("device", &n.device), ("resv", &n.resv)] {
                check_attrs(file, &format!("{at}.{group}"), attrs)?;
            }
            check_enable(file, &format!("{at}.enable"), n.enable)?;
            if n.enable == Some(1) && n.device.get("path").is_none_or(|p| p.is_empty()) {
                return Err(bad_field(file, &format!("{at}.device.path"), "missing, and the namespace is enabled"));
            }
            if n.p2pmem.as_deref().is_some_and(|p| p.is_empty() || p.contains('\n')) {
                return Err(bad_field(file, &format!("{at}.p2pmem"), "0, 1 or a provider's PCI name"));
            }
        }
        for (j, p) in s.passthru.iter().enumerate() {
            check_attrs(file, &format!("{at}.passthru[{j}].device"), &p.device)?;
            check_enable(file, &format!("{at}.passthru[{j}].enable"), p.enable)?;
        }
    }
    for (i, p) in c.ports.iter().enumerate() {
        let at = format!("ports[{i}]");
        if c.ports[..i].iter().any(|o| o.portid == p.portid) {
            return Err(bad_field(file, &format!("{at}.portid"), format!("{} appears twice", p.portid)));
        }
        check_attrs(file, &format!("{at}.addr"), &p.addr)?;
        check_attrs(file, &format!("{at}.param"), &p.param)?;
        for (j, g) in p.ana_groups.iter().enumerate() {
            if g.grpid == 0 {
                return Err(bad_field(file, &format!("{at}.ana_groups[{j}].grpid"), "ANA group ids start at 1"));
            }
            check_attrs(file, &format!("{at}.ana_groups[{j}].ana"), &g.ana)?;
        }
        for (j, r) in p.referrals.iter().enumerate() {
            named(format!("{at}.referrals[{j}].name"), check_name("referral", &r.name))?;
            check_attrs(file, &format!("{at}.referrals[{j}].addr"), &r.addr)?;
            check_enable(file, &format!("{at}.referrals[{j}].enable"), r.enable)?;
        }
        for (j, s) in p.subsystems.iter().enumerate() {
            named(format!("{at}.subsystems[{j}]"), check_nqn(s))?;
        }
    }
    Ok(())
}

// ---- save: configfs → config ----

fn value(path: &Path) -> Result<String, NvmetError> {
    let text = p2pdma_host::bounded::read_string(path, p2pdma_host::bounded::Bound::ATTRIBUTE)?;
    Ok(text.trim().to_string())
}

fn optional_int<T: std::str::FromStr>(path: &Path) -> Result<Option<T>, NvmetError> {
    if !path.is_file() {
        return Ok(None);
    }
    Ok(value(path)?.parse().ok())
}

/// The writable files `GROUP_*` of `dir`, as nvmetcli's `list_attrs(group, writable=True)`.
fn group(dir: &Path, group: &str) -> Result<Attrs, NvmetError> {
    use std::os::unix::fs::PermissionsExt;
    let mut attrs = Attrs::new();
    let prefix = format!("{group}_");
    for name in entries(dir)? {
        let Some(short) = name.strip_prefix(&prefix) else { continue };
        let path = dir.join(&name);
        let Ok(meta) = fs::metadata(&path) else { continue };
        if meta.is_file() && meta.permissions().mode() & 0o200 != 0 {
            attrs.insert(short.to_string(), value(&path)?);
        }
    }
    Ok(attrs)
}

/// Reads `<root>/nvmet` as nvmetcli's `save` does (and the namespace's `p2pmem`). Without
/// `nvmet/`, the config is empty.
pub fn read(root: &Path) -> Result<NvmetConfig, NvmetError> {
    let nvmet = root.join("nvmet");
    let mut c = NvmetConfig::default();
    if !nvmet.is_dir() {
        return Ok(c);
    }
    for nqn in entries(&nvmet.join("hosts"))? {
        c.hosts.push(HostConfig { nqn });
    }
    for nqn in entries(&nvmet.join("subsystems"))? {
        let dir = nvmet.join("subsystems").join(&nqn);
        let mut namespaces = Vec::new();
        for n in entries(&dir.join("namespaces"))? {
            let Ok(nsid) = n.parse::<u32>() else { continue };
            let d = dir.join("namespaces").join(&n);
            namespaces.push(NamespaceConfig {
                ana: group(&d, "ana")?,
                ana_grpid: optional_int(&d.join("ana_grpid"))?,
                device: group(&d, "device")?,
                enable: optional_int(&d.join("enable"))?,
                nsid,
                p2pmem: d.join("p2pmem").is_file().then(|| value(&d.join("p2pmem"))).transpose()?,
                resv: group(&d, "resv")?,
            });
        }
        namespaces.sort_by_key(|n| n.nsid);
        let pt = dir.join("passthru");
        let passthru = if pt.is_dir() {
            vec![PassthruConfig {
                admin_timeout: optional_int(&pt.join("admin_timeout"))?,
                clear_ids: optional_int(&pt.join("clear_ids"))?,
                device: group(&pt, "device")?,
                enable: optional_int(&pt.join("enable"))?,
                io_timeout: optional_int(&pt.join("io_timeout"))?,
            }]
        } else {
            Vec::new()
        };
        c.subsystems.push(SubsystemConfig {
            allowed_hosts: entries(&dir.join("allowed_hosts"))?,
            attr: group(&dir, "attr")?,
            namespaces,
            nqn,
            passthru,
        });
    }
    for name in entries(&nvmet.join("ports"))? {
        let dir = nvmet.join("ports").join(&name);
        let Some(portid) = parse_port_id(&name) else { continue };
        let mut ana_groups = Vec::new();
        for g in entries(&dir.join("ana_groups"))? {
            let Ok(grpid) = g.parse() else { continue };
            ana_groups.push(AnaGroupConfig { ana: group(&dir.join("ana_groups").join(&g), "ana")?, grpid });
        }
        ana_groups.sort_by_key(|g| g.grpid);
        let mut referrals = Vec::new();
        for r in entries(&dir.join("referrals"))? {
            let d = dir.join("referrals").join(&r);
            referrals.push(ReferralConfig {
                addr: group(&d, "addr")?,
                enable: optional_int(&d.join("enable"))?,
                name: r,
            });
        }
        c.ports.push(PortConfig {
            addr: group(&dir, "addr")?,
            ana_groups,
            param: group(&dir, "param")?,
            portid,
            referrals,
            subsystems: entries(&dir.join("subsystems"))?,
        });
    }
    c.ports.sort_by_key(|p| p.portid);
    Ok(c)
}

// ---- restore: config → plan ----

/// One restored subsystem: who may connect, its ports, and the export planner's answer
/// for each enabled namespace (its checks and P2P story; its own steps are not used).
#[derive(Debug, Clone, Serialize)]
pub struct RestoredSubsystem {
    pub nqn: String,
    pub allow_any_host: bool,
    pub allowed_hosts: Vec<String>,
    pub ports: Vec<u16>,
    pub namespaces: Vec<ExportPlan>,
    /// Namespaces restored disabled (not checked: the kernel opens nothing until enabled).
    pub disabled_namespaces: Vec<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    pub file: String,
    pub subsystems: Vec<RestoredSubsystem>,
    pub ports: Vec<u16>,
    /// Host entries the restore creates (existing ones are used, and kept on rollback).
    pub hosts_created: Vec<String>,
    pub warnings: Vec<String>,
    pub outcome: Outcome,
    pub reasons: Vec<String>,
    pub steps: Vec<Step>,
}

/// `p2pmem` as the file says it → the export request's.
fn p2pmem_request(v: Option<&str>) -> P2pmemRequest {
    match v {
        None | Some("0") => P2pmemRequest::Off,
        Some("1") => P2pmemRequest::Auto,
        Some(p) => P2pmemRequest::Provider(p.to_string()),
    }
}

/// Attribute writes for one group, in an order the kernel accepts: names in `first` (in
/// that order), then the rest sorted.
fn set_group(steps: &mut Vec<Step>, dir: &str, group: &str, attrs: &Attrs, first: &[&str]) {
    let mut names: Vec<&String> = attrs.keys().collect();
    names.sort_by_key(|n| (first.iter().position(|f| f == n).unwrap_or(first.len()), n.as_str()));
    for n in names {
        steps.push(Step::Set { path: format!("{dir}/{group}_{n}"), value: attrs[n].clone() });
    }
}

/// Plans `p2pdma nvmet restore`. `device` tells what a namespace's `device.path` is on this
/// machine (the OS layer's findings, users included). Errors are bad input (exit 2), named
/// by field; refusals are a plan with `outcome: refused`.
pub fn plan_restore(
    engine: &Engine<'_>,
    config: &NvmetConfig,
    file: &str,
    state: &NvmetState,
    device: &dyn Fn(&str) -> NamespaceDevice,
    force: bool,
) -> Result<RestorePlan, NvmetError> {
    let mut plan = RestorePlan {
        file: file.to_string(),
        subsystems: Vec::new(),
        ports: config.ports.iter().map(|p| p.portid).collect(),
        hosts_created: Vec::new(),
        warnings: Vec::new(),
        outcome: Outcome::Proceed,
        reasons: Vec::new(),
        steps: Vec::new(),
    };
    check_references(config, file, state)?;
    for p in config.ports.iter().filter(|p| state.ports.iter().any(|sp| sp.id == Some(p.portid))) {
        plan.reasons.push(format!(
            "port {} exists in configfs: restore only adds (remove what is there first, or restore onto a fresh configfs)",
            p.portid
        ));
    }
    let restore = Restore { engine, config, file, state, device, force };
    let mut devices_seen = Vec::new();
    for (i, s) in config.subsystems.iter().enumerate() {
        restore.subsystem(i, s, &mut plan, &mut devices_seen)?;
    }
    if !plan.reasons.is_empty() {
        plan.outcome = Outcome::Refused;
        return Ok(plan);
    }
    plan.steps = restore_steps(config, state, &mut plan.hosts_created);
    Ok(plan)
}

/// Every allowed host and every port's subsystem is in the file or in configfs (bad input
/// otherwise, named by field).
fn check_references(config: &NvmetConfig, file: &str, state: &NvmetState) -> Result<(), NvmetError> {
    let known_host = |h: &str| config.hosts.iter().any(|c| c.nqn == h) || state.hosts.iter().any(|s| s == h);
    for (i, s) in config.subsystems.iter().enumerate() {
        for (j, h) in s.allowed_hosts.iter().enumerate() {
            if !known_host(h) {
                return Err(bad_field(
                    file,
                    &format!("subsystems[{i}].allowed_hosts[{j}]"),
                    format!("host {h} is neither in the file's hosts nor in configfs"),
                ));
            }
        }
    }
    for (i, p) in config.ports.iter().enumerate() {
        for (j, nqn) in p.subsystems.iter().enumerate() {
            if !config.subsystems.iter().any(|s| &s.nqn == nqn) && state.subsystem(nqn).is_none() {
                return Err(bad_field(
                    file,
                    &format!("ports[{i}].subsystems[{j}]"),
                    format!("subsystem {nqn} is neither in the file nor in configfs"),
                ));
            }
        }
    }
    Ok(())
}

/// A device already restored: its path, its block device name, and `NQN nsid N`.
type SeenDevice = (String, Option<String>, String);

/// What every subsystem's plan is made against.
struct Restore<'a, 'e> {
    engine: &'a Engine<'e>,
    config: &'a NvmetConfig,
    file: &'a str,
    state: &'a NvmetState,
    device: &'a dyn Fn(&str) -> NamespaceDevice,
    force: bool,
}

impl Restore<'_, '_> {
    /// One subsystem (index `i` in the file): refused when configfs has it, its hosts and
    /// passthru judged, each enabled namespace through the export planner.
    fn subsystem(
        &self,
        i: usize,
        s: &SubsystemConfig,
        plan: &mut RestorePlan,
        devices_seen: &mut Vec<SeenDevice>,
    ) -> Result<(), NvmetError> {
        if self.state.subsystem(&s.nqn).is_some() {
            plan.reasons.push(format!(
                "subsystem {} exists in configfs: restore only adds (p2pdma nvmet remove --nqn {} first)",
                s.nqn, s.nqn
            ));
            return Ok(());
        }
        let any = s.attr.get("allow_any_host").map(String::as_str) == Some("1");
        let ports: Vec<&PortConfig> = self.config.ports.iter().filter(|p| p.subsystems.contains(&s.nqn)).collect();
        if any {
            plan.warnings.push(format!(
                "{}: attr_allow_any_host = 1 (as the file says): any host that reaches its port(s) may connect",
                s.nqn
            ));
        } else if s.allowed_hosts.is_empty() {
            plan.warnings.push(format!("{}: no allowed hosts: no host may connect until one is linked", s.nqn));
        }
        if s.passthru.iter().any(|p| p.enable == Some(1)) {
            plan.reasons.push(format!(
                "{}: its passthru is enabled: p2pdma restores block-device namespaces, not passed-through controllers",
                s.nqn
            ));
        }
        let mut restored = RestoredSubsystem {
            nqn: s.nqn.clone(),
            allow_any_host: any,
            allowed_hosts: s.allowed_hosts.clone(),
            ports: ports.iter().map(|p| p.portid).collect(),
            namespaces: Vec::new(),
            disabled_namespaces: Vec::new(),
        };
        // The port the checks assume: the first that exports it (P2P use depends on it).
        let port = ports.first().copied();
        for (j, n) in s.namespaces.iter().enumerate() {
            if n.enable != Some(1) {
                restored.disabled_namespaces.push(n.nsid);
                continue;
            }
            let at = format!("subsystems[{i}].namespaces[{j}]");
            restored.namespaces.push(self.namespace(s, n, port, any, &at, plan, devices_seen)?);
        }
        plan.subsystems.push(restored);
        Ok(())
    }

    /// One enabled namespace: a device in the file twice, then the export planner's checks
    /// (its port steps and any-host warning left out: the file's port is used, and the
    /// restore warned once), its refusals and warnings named by subsystem and nsid.
    #[allow(clippy::too_many_arguments)]
    fn namespace(
        &self,
        s: &SubsystemConfig,
        n: &NamespaceConfig,
        port: Option<&PortConfig>,
        any: bool,
        at: &str,
        plan: &mut RestorePlan,
        devices_seen: &mut Vec<SeenDevice>,
    ) -> Result<ExportPlan, NvmetError> {
        let path = n.device.get("path").cloned().unwrap_or_default();
        let dev = (self.device)(&path);
        for (other_path, other_block, other) in devices_seen.iter() {
            let same = *other_path == path || (dev.block_name.is_some() && *other_block == dev.block_name);
            if same {
                let what = format!("{path} is in the file twice ({other} and {} nsid {})", s.nqn, n.nsid);
                if self.force {
                    plan.warnings.push(format!("--force: restoring although {what}"));
                } else {
                    plan.reasons.push(format!(
                        "{what}: two subsystems writing one device do not coordinate (--force overrides)"
                    ));
                }
            }
        }
        devices_seen.push((path.clone(), dev.block_name.clone(), format!("{} nsid {}", s.nqn, n.nsid)));
        let trtype = port.and_then(|p| p.addr.get("trtype")).and_then(|t| Transport::from_trtype(t));
        let (transport, traddr, trsvcid) = match (trtype, port) {
            (Some(t @ (Transport::Tcp | Transport::Rdma)), Some(p)) => {
                (t, p.addr.get("traddr").cloned(), p.addr.get("trsvcid").cloned())
            }
            _ => (Transport::Loop, None, None),
        };
        let request = ExportRequest {
            nqn: s.nqn.clone(),
            namespace: dev,
            nsid: Some(n.nsid),
            transport,
            traddr,
            trsvcid,
            p2pmem: p2pmem_request(n.p2pmem.as_deref()),
            access: if any { Access::AnyHost } else { Access::Hosts(s.allowed_hosts.clone()) },
            force: self.force,
        };
        let file = self.file;
        let mut checked = plan_export(self.engine, &request, self.state)
            .map_err(|e| NvmetError::BadInput(format!("{file}: {at}: {e}")))?;
        checked.steps.clear();
        // The port is the file's, not the one an export would pick.
        checked.checks.retain(|c| c.what != "port");
        // The export planner warns about any-host itself; the restore said it once above.
        checked.warnings.retain(|w| !w.starts_with("--allow-any-host"));
        if checked.outcome == Outcome::Refused {
            plan.reasons.extend(checked.reasons.iter().map(|r| format!("{} nsid {}: {r}", s.nqn, n.nsid)));
        }
        if n.p2pmem.as_deref() == Some("1") && checked.p2p.p2pmem.is_none() && checked.outcome != Outcome::Refused {
            plan.reasons.push(format!(
                "{} nsid {}: p2pmem 1, and no published provider reaches {path}: the kernel's enable would fail (EINVAL, \"no peer-to-peer memory is available for {path}\"): {}",
                s.nqn,
                n.nsid,
                checked.p2p.summary.first().cloned().unwrap_or_default()
            ));
        }
        plan.warnings.extend(checked.warnings.iter().map(|w| format!("{} nsid {}: {w}", s.nqn, n.nsid)));
        Ok(checked)
    }
}

/// The steps, in an order the kernel accepts: hosts (subsystems link to them); ports with
/// their addresses, parameters, ANA groups and referrals (namespaces name ANA groups);
/// subsystems with their attributes, allowed hosts and namespaces (device, ANA group,
/// reservations, p2pmem, then enable); last the links that make each port listen.
fn restore_steps(c: &NvmetConfig, state: &NvmetState, hosts_created: &mut Vec<String>) -> Vec<Step> {
    let mut steps = Vec::new();
    for h in &c.hosts {
        if !state.hosts.contains(&h.nqn) && !hosts_created.contains(&h.nqn) {
            steps.push(Step::Mkdir { path: format!("nvmet/hosts/{}", h.nqn) });
            hosts_created.push(h.nqn.clone());
        }
    }
    for p in &c.ports {
        port_steps(&mut steps, p);
    }
    for s in &c.subsystems {
        subsystem_steps(&mut steps, s);
    }
    for p in &c.ports {
        for nqn in &p.subsystems {
            steps.push(Step::Symlink {
                target: format!("nvmet/subsystems/{nqn}"),
                link: format!("nvmet/ports/{}/subsystems/{nqn}", p.portid),
            });
        }
    }
    steps
}

/// A port's transport type first (the other fields are checked against it), treq after
/// tsas (writing tsas changes treq).
const ADDR_ORDER: &[&str] = &["trtype", "adrfam", "traddr", "trsvcid", "tsas", "treq"];

/// A port with its address, parameters, ANA groups and referrals (not yet listening).
fn port_steps(steps: &mut Vec<Step>, p: &PortConfig) {
    let dir = format!("nvmet/ports/{}", p.portid);
    steps.push(Step::Mkdir { path: dir.clone() });
    set_group(steps, &dir, "addr", &p.addr, ADDR_ORDER);
    set_group(steps, &dir, "param", &p.param, &[]);
    for g in &p.ana_groups {
        let gdir = format!("{dir}/ana_groups/{}", g.grpid);
        // Group 1 comes with the port.
        if g.grpid != 1 {
            steps.push(Step::Mkdir { path: gdir.clone() });
        }
        set_group(steps, &gdir, "ana", &g.ana, &[]);
    }
    for r in &p.referrals {
        let rdir = format!("{dir}/referrals/{}", r.name);
        steps.push(Step::Mkdir { path: rdir.clone() });
        set_group(steps, &rdir, "addr", &r.addr, ADDR_ORDER);
        if r.enable == Some(1) {
            steps.push(Step::Write { path: format!("{rdir}/enable"), value: "1".into() });
        }
    }
}

/// A subsystem with its attributes, passthru settings, allowed hosts and namespaces.
fn subsystem_steps(steps: &mut Vec<Step>, s: &SubsystemConfig) {
    let dir = format!("nvmet/subsystems/{}", s.nqn);
    steps.push(Step::Mkdir { path: dir.clone() });
    set_group(steps, &dir, "attr", &s.attr, &[]);
    // A disabled passthru's settings, as nvmetcli restores them (the kernel also sets
    // clear_ids by itself when a loop host connects); an enabled one was refused.
    for pt in &s.passthru {
        let pdir = format!("{dir}/passthru");
        let device: Attrs = pt
            .device
            .iter()
            .filter(|(_, v)| !matches!(v.as_str(), "" | "(null)"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        set_group(steps, &pdir, "device", &device, &[]);
        for (name, v) in
            [("clear_ids", pt.clear_ids), ("admin_timeout", pt.admin_timeout), ("io_timeout", pt.io_timeout)]
        {
            if let Some(v) = v {
                steps.push(Step::Set { path: format!("{pdir}/{name}"), value: v.to_string() });
            }
        }
    }
    for h in &s.allowed_hosts {
        steps.push(Step::Symlink { target: format!("nvmet/hosts/{h}"), link: format!("{dir}/allowed_hosts/{h}") });
    }
    for n in &s.namespaces {
        namespace_steps(steps, &dir, n);
    }
}

/// A namespace: device, ANA group, reservations, p2pmem, then enable.
fn namespace_steps(steps: &mut Vec<Step>, dir: &str, n: &NamespaceConfig) {
    let ndir = format!("{dir}/namespaces/{}", n.nsid);
    steps.push(Step::Mkdir { path: ndir.clone() });
    set_group(steps, &ndir, "device", &n.device, &["path"]);
    let mut ana = n.ana.clone();
    if let (Some(g), false) = (n.ana_grpid, ana.contains_key("grpid")) {
        if g != 0 {
            ana.insert("grpid".into(), g.to_string());
        }
    }
    set_group(steps, &ndir, "ana", &ana, &[]);
    set_group(steps, &ndir, "resv", &n.resv, &[]);
    if let Some(v) = &n.p2pmem {
        steps.push(Step::Set { path: format!("{ndir}/p2pmem"), value: v.clone() });
    }
    if n.enable == Some(1) {
        steps.push(Step::Write { path: format!("{ndir}/enable"), value: "1".into() });
    }
}

#[cfg(test)]
mod tests {
    use p2pdma_core::Topology;

    use super::*;
    use crate::apply::fake::{materialize, FakeConfigFs};
    use crate::apply::{apply, ConfigFs, NoLog};
    use crate::plan::PathKind;

    const SAMPLE: &str = include_str!("../fixtures/nvmetcli-config.json");

    fn topo(name: &str) -> Topology {
        p2pdma_host::input::read_spec(Path::new(&format!("../../examples/topologies/{name}.toml"))).unwrap().1
    }

    /// Every path is nvme-b's namespace (`0000:04:00.0` in `switch`, `0000:02:00.0` in
    /// `root-ports`), a block device nobody uses.
    fn device(bdf: &'static str) -> impl Fn(&str) -> NamespaceDevice {
        move |path: &str| NamespaceDevice {
            path: path.to_string(),
            kind: PathKind::Block,
            block_name: Some(path.rsplit('/').next().unwrap().to_string()),
            pci_device: Some(bdf.parse().unwrap()),
            users: Vec::new(),
        }
    }

    fn saved(fs: &FakeConfigFs) -> NvmetConfig {
        let dir = tempfile::tempdir().unwrap();
        materialize(fs, dir.path());
        read(dir.path()).unwrap()
    }

    #[test]
    fn nvmetcli_files_parse_and_print_back_byte_for_byte() {
        let c = parse(SAMPLE, "config.json").unwrap();
        assert_eq!(c.subsystems[0].namespaces[0].p2pmem.as_deref(), Some("0000:03:00.0"));
        assert_eq!(c.ports[0].referrals[0].name, "peer");
        assert_eq!(c.subsystems[0].passthru[0].enable, Some(0));
        assert_eq!(to_json(&c), SAMPLE);
    }

    #[test]
    fn bad_files_are_one_line_naming_the_file_and_the_field() {
        let err = |text: &str| parse(text, "cfg.json").unwrap_err().to_string();
        assert!(err("").starts_with("cfg.json: not JSON: EOF while parsing"), "{}", err(""));
        assert!(err("{\"subsystems\": [").starts_with("cfg.json: not JSON:"));
        assert!(err("[]").starts_with("cfg.json: not an nvmetcli config"), "{}", err("[]"));
        let e = err(&SAMPLE
            .replace("\"nguid\"", "\"nguid_typo\": \"x\", \"nguid\"")
            .replace("\"device\": {\n            \"nguid_typo\"", "\"devise\": {\n            \"nguid_typo\""));
        assert!(e.starts_with("cfg.json: field subsystems[0].namespaces[0].devise: unknown field `devise`"), "{e}");
        let e = err(&SAMPLE.replace("\"nsid\": 1", "\"nsid\": \"1\""));
        assert!(e.starts_with("cfg.json: field subsystems[0].namespaces[0].nsid: invalid type: string \"1\""), "{e}");
        let e = err(&SAMPLE.replace("\"portid\": 1", "\"portid\": 70000"));
        assert!(e.starts_with("cfg.json: field ports[0].portid:"), "{e}");
        let e = err(&SAMPLE.replace("\"enable\": 1,\n          \"nsid\"", "\"enable\": 2,\n          \"nsid\""));
        assert_eq!(e, "cfg.json: field subsystems[0].namespaces[0].enable: 2: enable is 0 or 1");
        let e = err(&SAMPLE.replace("\"allow_any_host\": \"0\"", "\"allow_any_host\": \"1\""));
        assert!(e.starts_with("cfg.json: field subsystems[0].attr.allow_any_host: 1 with allowed_hosts listed"), "{e}");
        let e = err(&SAMPLE.replace("\"model\": \"Linux\"", "\"../model\": \"Linux\""));
        assert_eq!(e, "cfg.json: field subsystems[0].attr.../model: not an attribute name (a-z, 0-9, _)");
        let e = err(&SAMPLE.replace("\"name\": \"peer\"", "\"name\": \"a/b\""));
        assert!(e.starts_with("cfg.json: field ports[0].referrals[0].name: referral `a/b`"), "{e}");
        for e in [err(""), err("{\"x\": 1}")] {
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn save_then_restore_on_a_fresh_tree_gives_the_same_tree() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        // An export with a host, and what else a target has: a changed attribute, a
        // referral, a second ANA group, a host entry no subsystem uses.
        let mut a = FakeConfigFs::nvmet();
        let mut c = parse(SAMPLE, "sample.json").unwrap();
        // The fake has fewer attributes than a kernel: keep those it has.
        c.subsystems[0].attr.retain(|k, _| ["allow_any_host", "serial", "model"].contains(&k.as_str()));
        c.subsystems[0].namespaces[0].device.retain(|k, _| k != "nguid");
        c.subsystems[0].namespaces[0].resv.clear();
        c.subsystems[0].passthru.clear();
        c.ports[0].addr.remove("tsas");
        c.ports[0].param.clear();
        c.ports[0].ana_groups.push(AnaGroupConfig { ana: [("state".into(), "inaccessible".into())].into(), grpid: 2 });
        c.hosts.push(HostConfig { nqn: "nqn.unused".into() });
        let p = plan_restore(&e, &c, "sample.json", &a.state(), &device("0000:04:00.0"), false).unwrap();
        assert_eq!(p.outcome, Outcome::Proceed, "{:?}", p.reasons);
        assert!(apply(&mut a, &mut NoLog, &p.steps, true).ok());
        let s = saved(&a);
        assert_eq!(s.subsystems[0].namespaces[0].p2pmem.as_deref(), Some("0000:03:00.0"));
        assert_eq!(s.subsystems[0].attr["serial"], "8a2b3c4d5e6f7a8b9c0d");
        assert_eq!(s.ports[0].ana_groups.len(), 2);

        // Through the file, onto a fresh tree: the same tree, the same file.
        let text = to_json(&s);
        let back = parse(&text, "saved.json").unwrap();
        assert_eq!(back, s);
        let mut b = FakeConfigFs::nvmet();
        let p = plan_restore(&e, &back, "saved.json", &b.state(), &device("0000:04:00.0"), false).unwrap();
        assert_eq!(p.outcome, Outcome::Proceed, "{:?}", p.reasons);
        assert_eq!(p.hosts_created, ["nqn.2014-08.org.nvmexpress:uuid:host-a", "nqn.unused"]);
        let r = apply(&mut b, &mut NoLog, &p.steps, true);
        assert!(r.ok(), "{:?}", r.failed);
        assert_eq!(b.listing(), a.listing());
        assert_eq!(to_json(&saved(&b)), text);
        // The checks were the export planner's: the provider's verdict to the namespace.
        let ns = &p.subsystems[0].namespaces[0];
        assert!(
            ns.checks.iter().any(|c| c.what == "verdict" && c.ok && c.detail.contains("bus_addr")),
            "{:?}",
            ns.checks
        );
        assert!(ns.steps.is_empty());
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn restore_order_is_hosts_ports_subsystems_then_links() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let c = parse(SAMPLE, "s.json").unwrap();
        let p = plan_restore(&e, &c, "s.json", &NvmetState::default(), &device("0000:04:00.0"), false).unwrap();
        let steps: Vec<String> = p.steps.iter().map(|s| s.to_string()).collect();
        let pos = |x: &str| steps.iter().position(|s| s.contains(x)).unwrap_or_else(|| panic!("{x}: {steps:#?}"));
        assert!(steps[0].starts_with("mkdir nvmet/hosts/"));
        assert!(pos("mkdir nvmet/ports/1") < pos("addr_trtype") && pos("addr_trtype") < pos("addr_adrfam"));
        assert!(pos("addr_tsas") < pos("ports/1/addr_treq"));
        assert!(pos("referrals/peer/enable") < pos("mkdir nvmet/subsystems/"));
        assert!(pos("device_path") < pos("device_nguid") && pos("/p2pmem") < pos("namespaces/1/enable"));
        assert!(steps
            .last()
            .unwrap()
            .starts_with("ln -s nvmet/subsystems/nqn.2026-11.io.p2pdma:t nvmet/ports/1/subsystems/"));
        assert!(pos("passthru/clear_ids") < pos("mkdir nvmet/subsystems/nqn.2026-11.io.p2pdma:t/namespaces/1"));
        assert!(!steps.iter().any(|s| s.contains("passthru/device_path")), "an unset path is not written");
        assert!(!steps.iter().any(|s| s.contains("passthru/enable")));
    }

    #[test]
    fn restore_refuses_what_export_refuses_and_what_exists() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let c = parse(SAMPLE, "s.json").unwrap();
        // A device in use.
        let busy = |path: &str| NamespaceDevice {
            users: vec!["nvme0n1 is mounted at /srv".into()],
            ..device("0000:04:00.0")(path)
        };
        let p = plan_restore(&e, &c, "s.json", &NvmetState::default(), &busy, false).unwrap();
        assert_eq!((p.outcome, p.steps.len()), (Outcome::Refused, 0));
        assert_eq!(p.reasons[0], "nqn.2026-11.io.p2pdma:t nsid 1: nvme0n1 is mounted at /srv");
        let p = plan_restore(&e, &c, "s.json", &NvmetState::default(), &busy, true).unwrap();
        assert_eq!(p.outcome, Outcome::Proceed);
        assert!(p.warnings[0].contains("--force: exporting although nvme0n1 is mounted at /srv"), "{:?}", p.warnings);

        // What exists stays: the subsystem and the port.
        let mut fs = FakeConfigFs::nvmet();
        let mut trimmed = c.clone();
        trimmed.subsystems[0].passthru.clear();
        trimmed.subsystems[0].attr.retain(|k, _| ["allow_any_host", "serial", "model"].contains(&k.as_str()));
        trimmed.subsystems[0].namespaces[0].device.retain(|k, _| k != "nguid");
        trimmed.subsystems[0].namespaces[0].resv.clear();
        trimmed.ports[0].addr.remove("tsas");
        trimmed.ports[0].param.clear();
        let p = plan_restore(&e, &trimmed, "s.json", &fs.state(), &device("0000:04:00.0"), false).unwrap();
        assert!(apply(&mut fs, &mut NoLog, &p.steps, true).ok());
        let again = plan_restore(&e, &trimmed, "s.json", &fs.state(), &device("0000:04:00.0"), false).unwrap();
        assert_eq!(again.outcome, Outcome::Refused);
        assert!(again.reasons.iter().any(|r| r.starts_with("port 1 exists in configfs")), "{:?}", again.reasons);
        assert!(again.reasons.iter().any(|r| r.starts_with("subsystem nqn.2026-11.io.p2pdma:t exists")));

        // The provider's verdict: nvme-a's CMB cannot serve nvme-b behind root ports.
        let rp = topo("root-ports");
        let e = Engine::new(&rp).unwrap();
        let mut c2 = c.clone();
        c2.subsystems[0].namespaces[0].p2pmem = Some("0000:01:00.0".into());
        let p = plan_restore(&e, &c2, "s.json", &NvmetState::default(), &device("0000:02:00.0"), false).unwrap();
        assert_eq!(p.outcome, Outcome::Refused);
        assert!(p.reasons.iter().any(|r| r.contains("the kernel refuses P2P between")), "{:?}", p.reasons);
        // p2pmem 1 and no provider reaches it: the kernel's enable would fail.
        c2.subsystems[0].namespaces[0].p2pmem = Some("1".into());
        let p = plan_restore(&e, &c2, "s.json", &NvmetState::default(), &device("0000:02:00.0"), false).unwrap();
        assert_eq!(p.outcome, Outcome::Refused);
        assert!(p.reasons[0].contains("p2pmem 1, and no published provider reaches /dev/nvme0n1"), "{:?}", p.reasons);
        // A provider this machine does not have: bad input, named.
        c2.subsystems[0].namespaces[0].p2pmem = Some("0000:77:00.0".into());
        let err = plan_restore(&e, &c2, "s.json", &NvmetState::default(), &device("0000:02:00.0"), false).unwrap_err();
        assert!(err.to_string().starts_with("s.json: subsystems[0].namespaces[0]: "), "{err}");
    }

    #[test]
    fn restore_warns_for_any_host_and_needs_known_hosts() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let mut c = parse(SAMPLE, "s.json").unwrap();
        c.subsystems[0].allowed_hosts.clear();
        c.subsystems[0].attr.insert("allow_any_host".into(), "1".into());
        let p = plan_restore(&e, &c, "s.json", &NvmetState::default(), &device("0000:04:00.0"), false).unwrap();
        assert_eq!(p.outcome, Outcome::Proceed);
        assert_eq!(p.warnings.len(), 1, "{:?}", p.warnings);
        assert!(p.warnings[0].contains("attr_allow_any_host = 1 (as the file says)"));
        c.subsystems[0].allowed_hosts.push("nqn.nobody".into());
        c.subsystems[0].attr.insert("allow_any_host".into(), "0".into());
        let err = plan_restore(&e, &c, "s.json", &NvmetState::default(), &device("0000:04:00.0"), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "s.json: field subsystems[0].allowed_hosts[0]: host nqn.nobody is neither in the file's hosts nor in configfs"
        );
    }

    #[test]
    fn a_failed_restore_rolls_back_to_the_tree_it_found() {
        let t = topo("switch");
        let e = Engine::new(&t).unwrap();
        let mut fs = FakeConfigFs::nvmet();
        fs.run(&Step::Mkdir { path: "nvmet/hosts/nqn.2014-08.org.nvmexpress:uuid:host-a".into() }).unwrap();
        let before = fs.listing();
        let mut c = parse(SAMPLE, "s.json").unwrap();
        c.subsystems[0].attr.retain(|k, _| k == "serial");
        c.subsystems[0].namespaces[0].device.retain(|k, _| k == "path");
        c.subsystems[0].namespaces[0].resv.clear();
        c.subsystems[0].passthru.clear();
        c.ports[0].addr.remove("tsas");
        c.ports[0].param.clear();
        let p = plan_restore(&e, &c, "s.json", &fs.state(), &device("0000:04:00.0"), false).unwrap();
        assert!(p.hosts_created.is_empty(), "an existing host is used, not created");
        fs.fail.push(("ports/1/subsystems/nqn.2026-11.io.p2pdma:t".into(), 98));
        let r = apply(&mut fs, &mut NoLog, &p.steps, true);
        assert_eq!(r.failed.as_ref().unwrap().errno, Some(98));
        assert!(r.rollback_failed.is_empty(), "{:?}", r.rollback_failed);
        assert_eq!(fs.listing(), before);
    }
}
