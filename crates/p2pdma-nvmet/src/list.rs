//! `p2pdma nvmet list`: configfs's state joined with the verdict engine, per namespace: the
//! p2pmem setting, the provider, and whether controllers use P2P memory (from the kernel's
//! "using p2pmem" line when it is in the log, otherwise predicted from each port's transport).

use p2pdma_core::{analysis, Bdf, Engine};
use serde::Serialize;

use crate::plan::{transport_p2p, Transport};
use crate::state::{Namespace, NvmetState, Port};

#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    /// False when nvmet is not loaded (no `nvmet/` in configfs).
    pub loaded: bool,
    pub subsystems: Vec<SubsystemReport>,
    pub ports: Vec<Port>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubsystemReport {
    pub nqn: String,
    pub allow_any_host: bool,
    pub allowed_hosts: Vec<String>,
    /// `port id: transport address` of every port exporting it.
    pub ports: Vec<String>,
    pub namespaces: Vec<NamespaceReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamespaceReport {
    pub nsid: u32,
    pub device_path: String,
    pub enabled: bool,
    pub p2pmem: Option<String>,
    pub block_device: Option<String>,
    pub pci_device: Option<Bdf>,
    pub pci_name: Option<String>,
    /// The explicit provider, or the one the kernel finds for `1`.
    pub provider: Option<Bdf>,
    pub p2p_in_use: bool,
    /// `kernel log` (the kernel said so) or `prediction`.
    pub evidence: &'static str,
    pub why: Vec<String>,
    /// The kernel's "using p2pmem on ... for nsid N" lines for this nsid.
    pub kernel_log: Vec<String>,
}

/// Builds the listing. `block_of` maps a `device_path` to its block device name (`nvme0n1`);
/// `kernel_log` is the kernel log as far as it can be read.
pub fn list(
    engine: &Engine<'_>,
    state: &NvmetState,
    kernel_log: &[String],
    block_of: &dyn Fn(&str) -> Option<String>,
) -> ListReport {
    let mut subsystems = Vec::new();
    for s in &state.subsystems {
        let ports: Vec<&Port> = state.ports_of(&s.nqn).collect();
        let namespaces =
            s.namespaces.iter().map(|n| namespace(engine, state, kernel_log, block_of, &ports, n)).collect();
        subsystems.push(SubsystemReport {
            nqn: s.nqn.clone(),
            allow_any_host: s.allow_any_host,
            allowed_hosts: s.allowed_hosts.clone(),
            ports: ports.iter().map(|p| format!("{}: {}", p.name, p.address())).collect(),
            namespaces,
        });
    }
    ListReport { loaded: state.loaded, subsystems, ports: state.ports.clone() }
}

/// One namespace: its device, the provider its `p2pmem` names, whether P2P is in use
/// (the kernel's log line, else predicted from each port's transport).
fn namespace(
    engine: &Engine<'_>,
    state: &NvmetState,
    kernel_log: &[String],
    block_of: &dyn Fn(&str) -> Option<String>,
    ports: &[&Port],
    n: &Namespace,
) -> NamespaceReport {
    let block = block_of(&n.device_path);
    let pci = block.as_ref().and_then(|b| engine.topo.aliases.get(b)).and_then(|a| a.pci_parent);
    let dev = pci.and_then(|b| engine.index_of(b)).map(|i| engine.device(i));
    let mut r = NamespaceReport {
        nsid: n.nsid,
        device_path: n.device_path.clone(),
        enabled: n.enabled,
        p2pmem: n.p2pmem.clone(),
        block_device: block,
        pci_device: pci,
        pci_name: dev.and_then(|d| d.name.clone()),
        provider: None,
        p2p_in_use: false,
        evidence: "prediction",
        why: Vec::new(),
        kernel_log: kernel_log
            .iter()
            .filter(|l| l.contains("using p2pmem on ") && l.ends_with(&format!(" for nsid {}", n.nsid)))
            .cloned()
            .collect(),
    };
    let p2pmem = n.p2pmem.as_deref().unwrap_or("0");
    match p2pmem {
        "0" | "none" | "" => r.why.push("p2pmem off: I/O is staged in host memory".into()),
        "1" => {
            if let Some(b) = pci {
                if let Ok(f) = analysis::find(engine, &[b.to_string()]) {
                    r.provider = f.provider;
                }
            }
            r.why.push(format!(
                "p2pmem 1: the kernel finds a provider{}",
                r.provider.map(|p| format!(" ({p} for the namespace alone)")).unwrap_or_default()
            ));
        }
        name => {
            r.provider = name.parse().ok();
            r.why.push(format!("p2pmem {name}"));
        }
    }
    if !matches!(p2pmem, "0" | "none" | "") {
        predict_use(engine, ports, n, p2pmem, pci, &mut r);
    }
    if !r.kernel_log.is_empty() {
        r.p2p_in_use = true;
        r.evidence = "kernel log";
        if state.subsystems.iter().flat_map(|s| &s.namespaces).filter(|m| m.nsid == n.nsid).count() > 1 {
            r.why.push(format!("the kernel's line names only the nsid, and several subsystems have nsid {}", n.nsid));
        }
    }
    r
}

/// With `p2pmem` on: whether each port's transport would use it.
fn predict_use(
    engine: &Engine<'_>,
    ports: &[&Port],
    n: &Namespace,
    p2pmem: &str,
    pci: Option<Bdf>,
    r: &mut NamespaceReport,
) {
    if !n.enabled {
        r.why.push("the namespace is disabled".into());
    } else if ports.is_empty() {
        r.why.push("the subsystem is on no port".into());
    } else {
        for p in ports {
            let t = p.trtype.as_deref().unwrap_or("?");
            match Transport::from_trtype(t) {
                Some(t) => {
                    let (client, devices, used) = transport_p2p(engine, t, p2pmem, pci, n.nsid, &n.device_path);
                    r.why.push(format!("port {}: {client}", p.name));
                    r.why.extend(devices.into_iter().map(|d| d.why));
                    r.p2p_in_use |= used;
                }
                None => r
                    .why
                    .push(format!("port {}: p2pdma does not know which P2P client the {t} transport passes", p.name)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use p2pdma_core::model::Alias;

    use super::*;
    use crate::state::{Namespace, Subsystem};

    fn state(p2pmem: &str, trtype: &str) -> NvmetState {
        NvmetState {
            loaded: true,
            subsystems: vec![Subsystem {
                nqn: "nqn.t".into(),
                allow_any_host: true,
                allowed_hosts: Vec::new(),
                namespaces: vec![Namespace {
                    nsid: 1,
                    device_path: "/dev/nvme0n1".into(),
                    enabled: true,
                    p2pmem: Some(p2pmem.into()),
                    block_device: None,
                }],
            }],
            ports: vec![Port {
                name: "1".into(),
                id: Some(1),
                trtype: Some(trtype.into()),
                adrfam: Some("ipv4".into()),
                traddr: Some("127.0.0.1".into()),
                trsvcid: Some("4420".into()),
                subsystems: vec!["nqn.t".into()],
                referrals: 0,
                extra_ana_groups: 0,
            }],
            hosts: Vec::new(),
        }
    }

    fn topology() -> p2pdma_core::Topology {
        let mut t =
            p2pdma_host::input::read_spec(std::path::Path::new("../../examples/topologies/switch.toml")).unwrap().1;
        t.aliases.insert("nvme0n1".into(), Alias::new("block", Some("0000:04:00.0".parse().unwrap())));
        t
    }

    fn name_of(p: &str) -> Option<String> {
        p.rsplit('/').next().map(str::to_string)
    }

    #[test]
    fn tcp_never_uses_p2p_but_the_kernel_log_overrules_a_prediction() {
        let t = topology();
        let e = Engine::new(&t).unwrap();
        let r = list(&e, &state("0000:03:00.0", "tcp"), &[], &name_of);
        let ns = &r.subsystems[0].namespaces[0];
        assert_eq!((ns.pci_name.as_deref(), ns.p2p_in_use, ns.evidence), (Some("nvme-b"), false, "prediction"));
        assert!(ns.why.iter().any(|w| w.contains("TCP does not use P2P memory")));
        assert_eq!(r.subsystems[0].ports, vec!["1: tcp 127.0.0.1:4420".to_string()]);

        let log = vec!["nvmet: using p2pmem on 0000:03:00.0 for nsid 1".to_string()];
        let r = list(&e, &state("0000:03:00.0", "rdma"), &log, &name_of);
        let ns = &r.subsystems[0].namespaces[0];
        assert_eq!((ns.p2p_in_use, ns.evidence), (true, "kernel log"));
        assert_eq!(ns.kernel_log, log);
    }

    #[test]
    fn auto_shows_the_provider_the_kernel_finds_and_off_says_so() {
        let t = topology();
        let e = Engine::new(&t).unwrap();
        let r = list(&e, &state("1", "loop"), &[], &name_of);
        let ns = &r.subsystems[0].namespaces[0];
        assert_eq!(ns.provider, Some("0000:03:00.0".parse().unwrap()));
        assert!(!ns.p2p_in_use);
        let r = list(&e, &state("0", "tcp"), &[], &name_of);
        assert_eq!(r.subsystems[0].namespaces[0].why, vec!["p2pmem off: I/O is staged in host memory".to_string()]);
    }
}
