//! What nvmet's configfs tree holds now, as plain data: subsystems with their namespaces and
//! ports with the subsystems they export. The planner and `list` work on this struct only;
//! [`read`] fills it from a configfs root (`/sys/kernel/config` or a test tree).

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::NvmetError;

/// `nvmet/` under a configfs root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmetState {
    /// False when `nvmet/` does not exist (module not loaded, or configfs not mounted).
    pub loaded: bool,
    pub subsystems: Vec<Subsystem>,
    pub ports: Vec<Port>,
    /// Host entries (`nvmet/hosts/<hostnqn>`), the targets of `allowed_hosts` links.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// `nvmet/subsystems/<nqn>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subsystem {
    pub nqn: String,
    /// `attr_allow_any_host`.
    pub allow_any_host: bool,
    /// Links in `allowed_hosts/` (host NQNs).
    pub allowed_hosts: Vec<String>,
    pub namespaces: Vec<Namespace>,
}

/// `nvmet/subsystems/<nqn>/namespaces/<nsid>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    pub nsid: u32,
    /// `device_path`; empty when never set.
    pub device_path: String,
    pub enabled: bool,
    /// `p2pmem` as the kernel shows it: `0`, `1` (find a provider) or a PCI device name;
    /// None when the attribute does not exist (a kernel without CONFIG_PCI_P2PDMA).
    pub p2pmem: Option<String>,
    /// The block device `device_path` names (`nvme0n1`), when the caller looked it up
    /// (a live machine): two paths to one device are one device.
    #[serde(default)]
    pub block_device: Option<String>,
}

/// `nvmet/ports/<id>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    /// The directory name; the kernel parses it as the port id (`kstrtou16`, any base).
    pub name: String,
    pub id: Option<u16>,
    pub trtype: Option<String>,
    pub adrfam: Option<String>,
    pub traddr: Option<String>,
    pub trsvcid: Option<String>,
    /// NQNs linked in `subsystems/`.
    pub subsystems: Vec<String>,
    /// Entries in `referrals/`.
    pub referrals: usize,
    /// ANA groups other than the default group 1 (`ana_groups/`).
    pub extra_ana_groups: usize,
}

impl NvmetState {
    pub fn subsystem(&self, nqn: &str) -> Option<&Subsystem> {
        self.subsystems.iter().find(|s| s.nqn == nqn)
    }

    /// Ports that export `nqn`.
    pub fn ports_of<'a>(&'a self, nqn: &'a str) -> impl Iterator<Item = &'a Port> + 'a {
        self.ports.iter().filter(move |p| p.subsystems.iter().any(|s| s == nqn))
    }
}

impl Port {
    /// Same transport address: the kernel cannot listen twice on it.
    pub fn same_address(&self, trtype: &str, traddr: Option<&str>, trsvcid: Option<&str>) -> bool {
        self.trtype.as_deref() == Some(trtype) && self.traddr.as_deref() == traddr && self.trsvcid.as_deref() == trsvcid
    }

    /// `tcp 127.0.0.1:4420`.
    pub fn address(&self) -> String {
        let mut s = self.trtype.clone().unwrap_or_else(|| "(no transport)".into());
        if let Some(a) = &self.traddr {
            s.push(' ');
            s.push_str(a);
            if let Some(p) = &self.trsvcid {
                s.push(':');
                s.push_str(p);
            }
        }
        s
    }
}

/// `kstrtou16(name, 0)`: decimal, `0x` hex or leading-zero octal.
pub fn parse_port_id(name: &str) -> Option<u16> {
    if let Some(hex) = name.strip_prefix("0x").or_else(|| name.strip_prefix("0X")) {
        u16::from_str_radix(hex, 16).ok()
    } else if name.len() > 1 && name.starts_with('0') {
        u16::from_str_radix(&name[1..], 8).ok()
    } else {
        name.parse().ok()
    }
}

/// Directory entries, sorted; none when the directory is absent.
pub(crate) fn entries(dir: &Path) -> Result<Vec<String>, NvmetError> {
    let mut names: Vec<String> = match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| NvmetError::io(dir, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(NvmetError::io(dir, e)),
    };
    names.sort();
    Ok(names)
}

/// An attribute's value without the trailing newline; None if it does not exist, "" if empty.
fn attr(path: &Path) -> Result<Option<String>, NvmetError> {
    match p2pdma_host::bounded::read_string(path, p2pdma_host::bounded::Bound::ATTRIBUTE) {
        Ok(s) => Ok(Some(s.trim_end_matches('\n').trim().to_string())),
        Err(p2pdma_host::Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// Reads `<root>/nvmet`. A missing `nvmet/` is not an error: nothing is exported.
pub fn read(root: &Path) -> Result<NvmetState, NvmetError> {
    let nvmet = root.join("nvmet");
    if !nvmet.is_dir() {
        return Ok(NvmetState::default());
    }
    let mut state = NvmetState { loaded: true, ..NvmetState::default() };
    let subs = nvmet.join("subsystems");
    for nqn in entries(&subs)? {
        let dir = subs.join(&nqn);
        let mut namespaces = Vec::new();
        for n in entries(&dir.join("namespaces"))? {
            let Ok(nsid) = n.parse::<u32>() else { continue };
            let ns = dir.join("namespaces").join(&n);
            namespaces.push(Namespace {
                nsid,
                device_path: attr(&ns.join("device_path"))?.unwrap_or_default(),
                enabled: attr(&ns.join("enable"))?.as_deref() == Some("1"),
                p2pmem: attr(&ns.join("p2pmem"))?,
                block_device: None,
            });
        }
        namespaces.sort_by_key(|n| n.nsid);
        state.subsystems.push(Subsystem {
            allow_any_host: attr(&dir.join("attr_allow_any_host"))?.as_deref() == Some("1"),
            allowed_hosts: entries(&dir.join("allowed_hosts"))?,
            namespaces,
            nqn,
        });
    }
    let ports = nvmet.join("ports");
    for name in entries(&ports)? {
        let dir = ports.join(&name);
        state.ports.push(Port {
            id: parse_port_id(&name),
            trtype: nonempty(attr(&dir.join("addr_trtype"))?),
            adrfam: nonempty(attr(&dir.join("addr_adrfam"))?),
            traddr: nonempty(attr(&dir.join("addr_traddr"))?),
            trsvcid: nonempty(attr(&dir.join("addr_trsvcid"))?),
            subsystems: entries(&dir.join("subsystems"))?,
            referrals: entries(&dir.join("referrals"))?.len(),
            extra_ana_groups: entries(&dir.join("ana_groups"))?.iter().filter(|g| g.as_str() != "1").count(),
            name,
        });
    }
    state.ports.sort_by_key(|p| (p.id.is_none(), p.id, p.name.clone()));
    state.hosts = entries(&nvmet.join("hosts"))?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ids_parse_like_kstrtou16() {
        assert_eq!(parse_port_id("1"), Some(1));
        assert_eq!(parse_port_id("0x10"), Some(16));
        assert_eq!(parse_port_id("010"), Some(8));
        assert_eq!(parse_port_id("0"), Some(0));
        assert_eq!(parse_port_id("70000"), None);
        assert_eq!(parse_port_id("tcp"), None);
    }

    #[test]
    fn reading_a_tree_gives_subsystems_namespaces_and_ports() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(read(root).unwrap(), NvmetState::default());
        let ns = root.join("nvmet/subsystems/nqn.a/namespaces/1");
        fs::create_dir_all(&ns).unwrap();
        fs::create_dir_all(root.join("nvmet/subsystems/nqn.a/allowed_hosts")).unwrap();
        fs::write(root.join("nvmet/subsystems/nqn.a/attr_allow_any_host"), "1\n").unwrap();
        fs::write(ns.join("device_path"), "/dev/nvme0n1\n").unwrap();
        fs::write(ns.join("enable"), "1\n").unwrap();
        fs::write(ns.join("p2pmem"), "0000:03:00.0\n").unwrap();
        let port = root.join("nvmet/ports/2");
        fs::create_dir_all(port.join("subsystems")).unwrap();
        fs::create_dir_all(port.join("ana_groups/1")).unwrap();
        fs::write(port.join("addr_trtype"), "tcp\n").unwrap();
        fs::write(port.join("addr_traddr"), "127.0.0.1\n").unwrap();
        fs::write(port.join("addr_trsvcid"), "4420\n").unwrap();
        fs::write(port.join("addr_adrfam"), "\n").unwrap();
        std::os::unix::fs::symlink(root.join("nvmet/subsystems/nqn.a"), port.join("subsystems/nqn.a")).unwrap();
        let s = read(root).unwrap();
        assert!(s.loaded);
        let sub = s.subsystem("nqn.a").unwrap();
        assert!(sub.allow_any_host);
        assert_eq!(
            sub.namespaces,
            vec![Namespace {
                nsid: 1,
                device_path: "/dev/nvme0n1".into(),
                enabled: true,
                p2pmem: Some("0000:03:00.0".into()),
                block_device: None,
            }]
        );
        let p = &s.ports[0];
        assert_eq!((p.id, p.adrfam.as_deref(), p.extra_ana_groups), (Some(2), None, 0));
        assert!(p.same_address("tcp", Some("127.0.0.1"), Some("4420")));
        assert_eq!(p.address(), "tcp 127.0.0.1:4420");
        assert_eq!(s.ports_of("nqn.a").count(), 1);
    }
}
