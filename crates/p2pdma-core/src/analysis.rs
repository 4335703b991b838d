//! The reports behind the commands (`check`, `find`, `providers`, `topo`): plain structs that
//! serialize to the JSON contract and from which the human output is written.

use serde::Serialize;

use crate::bdf::Bdf;
use crate::model::{P2pMem, Topology};
use crate::verdict::{Engine, MapType, PairResult, PairVerdict};
use crate::{resolve, Error, Target};

/// `p2pdma check PROVIDER CLIENT...`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub provider: Bdf,
    pub provider_name: Option<String>,
    pub p2pmem: Option<P2pMem>,
    /// Overall: not_supported if any client is, else thru_host_bridge if any client is.
    pub map_type: MapType,
    /// `pci_p2pdma_distance_many`: the sum over clients; null when not supported.
    pub distance: Option<u32>,
    pub clients: Vec<PairVerdict>,
    pub notes: Vec<String>,
}

/// `p2pdma find CLIENT...`.
#[derive(Debug, Clone, Serialize)]
pub struct FindReport {
    /// The provider p2pdma shows for the kernel's choice: the closest published provider,
    /// the lowest address among ties (the kernel picks among ties at random).
    pub provider: Option<Bdf>,
    pub distance: Option<u32>,
    /// Every published provider with its total distance (null when unusable).
    pub candidates: Vec<Candidate>,
    /// The providers tied at the smallest distance.
    pub tied: Vec<Bdf>,
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub provider: Bdf,
    pub name: Option<String>,
    pub distance: Option<u32>,
    pub available: u64,
}

/// `p2pdma providers`: one row per device with a `p2pmem/` directory.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderRow {
    pub provider: Bdf,
    pub name: Option<String>,
    pub driver: Option<String>,
    pub size: u64,
    pub available: u64,
    pub published: bool,
    pub numa_node: Option<i32>,
}

/// Providers × DMA-capable endpoints, compact.
#[derive(Debug, Clone, Serialize)]
pub struct Matrix {
    pub providers: Vec<Bdf>,
    pub clients: Vec<Bdf>,
    /// `cells[p][c]`.
    pub cells: Vec<Vec<PairResult>>,
}

/// Which PCI function the kernel evaluates for a client, and what to tell the user.
enum ClientRef {
    Pci { index: usize, note: Option<String> },
    NotPci(String),
}

fn client_ref(engine: &Engine<'_>, name: &str) -> Result<ClientRef, Error> {
    match resolve(engine, name)? {
        Target::Pci(i) => {
            let d = engine.device(i);
            if !d.is_dma_capable() {
                return Err(Error::WrongRole(format!(
                    "{} is a {}, not a DMA client: name the endpoint below it",
                    d.label(),
                    d.port_type.map(|t| t.label()).unwrap_or(d.kind())
                )));
            }
            Ok(ClientRef::Pci { index: i, note: None })
        }
        Target::NotPci { name, pci_parent: Some(p) } => Ok(ClientRef::Pci {
            index: p,
            note: Some(format!(
                "{name} is not a PCI device; the kernel walks up to its PCI device {}",
                engine.device(p).bdf
            )),
        }),
        Target::NotPci { name, pci_parent: None } => Ok(ClientRef::NotPci(name)),
    }
}

fn provider_index(engine: &Engine<'_>, name: &str) -> Result<usize, Error> {
    let i = match resolve(engine, name)? {
        Target::Pci(i) => i,
        Target::NotPci { name, .. } => {
            return Err(Error::WrongRole(format!("{name} is not a PCI device and cannot provide P2P memory")))
        }
    };
    let d = engine.device(i);
    if d.p2pmem.is_none() {
        let providers: Vec<String> = providers(engine.topo).iter().map(|p| p.provider.to_string()).collect();
        return Err(Error::WrongRole(format!(
            "{} is not a P2P memory provider (it has no p2pmem/); providers here: {}",
            d.label(),
            if providers.is_empty() { "none".to_string() } else { providers.join(", ") }
        )));
    }
    Ok(i)
}

/// The kernel's verdict for one provider and a set of clients, named on the command line.
pub fn check(engine: &Engine<'_>, provider: &str, clients: &[String]) -> Result<CheckReport, Error> {
    let p = provider_index(engine, provider)?;
    let refs =
        clients.iter().map(|name| Ok((name.clone(), client_ref(engine, name)?))).collect::<Result<_, Error>>()?;
    Ok(check_refs(engine, p, refs))
}

/// [`check`] for devices already resolved: a provider (index into the topology's devices,
/// see [`provider_of`]) and PCI clients, taken as they are (a copy's ends: the PCI devices
/// of its block devices).
pub fn check_devices(engine: &Engine<'_>, provider: usize, clients: &[usize]) -> CheckReport {
    let refs = clients
        .iter()
        .map(|&index| (engine.device(index).bdf.to_string(), ClientRef::Pci { index, note: None }))
        .collect();
    check_refs(engine, provider, refs)
}

/// The provider a name refers to, refused when it is no provider.
pub fn provider_of(engine: &Engine<'_>, name: &str) -> Result<usize, Error> {
    provider_index(engine, name)
}

fn check_refs(engine: &Engine<'_>, p: usize, refs: Vec<(String, ClientRef)>) -> CheckReport {
    let pd = engine.device(p);
    let mut notes = Vec::new();
    if pd.p2pmem.as_ref().is_some_and(|m| !m.published) {
        notes.push(format!(
            "{} has P2P memory but does not publish it: `find` and nvmet's automatic choice will not use it",
            pd.bdf
        ));
    }
    let mut verdicts = Vec::new();
    for (name, client) in refs {
        let v = match client {
            ClientRef::Pci { index, note } => {
                let mut v = engine.explain(p, index);
                if let Some(note) = note {
                    v.client_name = Some(name);
                    v.reasons.insert(0, note);
                }
                v
            }
            ClientRef::NotPci(n) => engine.explain_not_pci(p, &n),
        };
        verdicts.push(v);
    }
    let map_type = verdicts.iter().map(|v| v.map_type).max().unwrap_or(MapType::NotSupported);
    let distance = verdicts.iter().try_fold(0u32, |s, v| v.distance.map(|d| s + d)).filter(|_| !verdicts.is_empty());
    CheckReport {
        provider: pd.bdf,
        provider_name: pd.name.clone(),
        p2pmem: pd.p2pmem.clone(),
        map_type,
        distance,
        clients: verdicts,
        notes,
    }
}

/// `pci_p2pmem_find_many`: the closest published provider for all clients.
pub fn find(engine: &Engine<'_>, clients: &[String]) -> Result<FindReport, Error> {
    let refs = clients.iter().map(|name| client_ref(engine, name)).collect::<Result<_, Error>>()?;
    Ok(find_refs(engine, refs))
}

/// [`find`] for PCI clients already resolved (indices into the topology's devices).
pub fn find_devices(engine: &Engine<'_>, clients: &[usize]) -> FindReport {
    find_refs(engine, clients.iter().map(|&index| ClientRef::Pci { index, note: None }).collect())
}

fn find_refs(engine: &Engine<'_>, refs: Vec<ClientRef>) -> FindReport {
    let mut indices = Vec::new();
    let mut reasons = Vec::new();
    let mut not_pci = None;
    for client in refs {
        match client {
            ClientRef::Pci { index, note } => {
                indices.push(index);
                reasons.extend(note);
            }
            ClientRef::NotPci(n) => not_pci = Some(n),
        }
    }
    let mut candidates: Vec<Candidate> = engine
        .published_providers()
        .map(|p| {
            let d = engine.device(p);
            Candidate {
                provider: d.bdf,
                name: d.name.clone(),
                distance: if not_pci.is_some() { None } else { engine.distance_many(p, &indices) },
                available: d.p2pmem.as_ref().map_or(0, |m| m.available),
            }
        })
        .collect();
    candidates.sort_by_key(|c| (c.distance.is_none(), c.distance, c.provider));
    let best = candidates.iter().filter_map(|c| c.distance).min();
    let tied: Vec<Bdf> =
        candidates.iter().filter(|c| c.distance.is_some() && c.distance == best).map(|c| c.provider).collect();
    if let Some(n) = &not_pci {
        reasons.push(format!("{n} is not a PCI device: the kernel finds no provider for a set that includes it"));
    } else if candidates.is_empty() {
        reasons.push("no device publishes P2P memory (no p2pmem/ with published = 1)".into());
    } else if tied.is_empty() {
        reasons.push("no published provider can reach every client (see `p2pdma check` for why)".into());
    } else if tied.len() > 1 {
        reasons.push(format!(
            "{} providers tie at distance {}: the kernel picks one at random each time; shown is the lowest address",
            tied.len(),
            best.unwrap_or(0)
        ));
        if tied.len() > 512 {
            reasons.push(
                "the kernel keeps only the first 512 tied providers (one page of pointers) and ignores the rest".into(),
            );
        }
    } else {
        reasons.push(format!("{} is the closest published provider (distance {})", tied[0], best.unwrap_or(0)));
    }
    FindReport { provider: tied.first().copied(), distance: best, candidates, tied, reasons }
}

/// Every device with a `p2pmem/` directory.
pub fn providers(topo: &Topology) -> Vec<ProviderRow> {
    topo.devices
        .iter()
        .filter_map(|d| {
            d.p2pmem.as_ref().map(|m| ProviderRow {
                provider: d.bdf,
                name: d.name.clone(),
                driver: d.driver.clone(),
                size: m.size,
                available: m.available,
                published: m.published,
                numa_node: d.numa_node,
            })
        })
        .collect()
}

/// Providers against every DMA-capable endpoint.
pub fn matrix(engine: &Engine<'_>) -> Matrix {
    let topo = engine.topo;
    let providers: Vec<usize> = (0..topo.devices.len()).filter(|&i| topo.devices[i].p2pmem.is_some()).collect();
    let clients: Vec<usize> = (0..topo.devices.len()).filter(|&i| topo.devices[i].is_dma_capable()).collect();
    Matrix {
        providers: providers.iter().map(|&i| topo.devices[i].bdf).collect(),
        clients: clients.iter().map(|&i| topo.devices[i].bdf).collect(),
        cells: engine.matrix(&providers, &clients),
    }
}
