//! p2pdma-core: the PCIe topology model, config-space decoding and the Linux kernel's
//! peer-to-peer DMA verdict, as pure code: no filesystem call (a clippy lint in this
//! crate's `clippy.toml` refuses one). Reading the machine and files is p2pdma-host's;
//! here text and bytes come in, judgements go out, so everything runs on fixtures.

// Unit tests build fixture trees and read example files; the crate itself may not.
#![cfg_attr(test, allow(clippy::disallowed_methods, clippy::disallowed_types))]

pub mod addr;
pub mod alias;
pub mod analysis;
pub mod bdf;
pub mod block_device;
pub mod config;
pub mod copy_plan;
pub mod diff;
mod error;
mod explain;
pub mod fio;
pub mod group;
pub mod iommu_groups;
pub mod kernel;
pub mod kernel_params;
pub mod metrics;
pub mod model;
pub mod multipath;
pub mod nccl;
pub mod pathclass;
pub mod pciids;
pub mod release;
pub mod snapshot;
pub mod spec;
pub mod stack_inputs;
pub mod stacks;
pub mod synthetic;
pub mod text;
pub mod transfer;
pub mod verdict;
pub mod what_if;
pub mod whitelist;

pub use bdf::Bdf;
pub use error::Error;
pub use model::Topology;
pub use verdict::{Engine, MapType};

use std::collections::HashSet;

/// Refuses a topology whose references dangle (a snapshot edited by hand, a fuzzed file).
pub fn check_consistent(topo: &Topology) -> Result<(), Error> {
    let mut seen = HashSet::new();
    for d in &topo.devices {
        if !seen.insert(d.bdf) {
            return Err(Error::Inconsistent(format!("device {} appears twice", d.bdf)));
        }
    }
    // Engine::new checks upstream, physfn and host bridge references.
    let engine = Engine::new(topo)?;
    for (i, d) in topo.devices.iter().enumerate() {
        // A cycle in upstream links would make the kernel walk loop forever: refuse it.
        let mut n = Some(d.bdf);
        for _ in 0..=topo.devices.len() {
            n = n.and_then(|b| engine.index_of(b)).and_then(|j| topo.devices[j].upstream);
            if n.is_none() {
                break;
            }
        }
        if n.is_some() {
            return Err(Error::Inconsistent(format!("the upstream links of {} form a loop", d.bdf)));
        }
        if let Some(pf) = d.physfn {
            let pf_dev = &topo.devices[engine.index_of(pf).expect("checked by Engine::new")];
            if pf_dev.physfn.is_some() || pf == d.bdf {
                return Err(Error::Inconsistent(format!(
                    "{}: its physical function {pf} is itself a VF",
                    topo.devices[i].bdf
                )));
            }
        }
    }
    Ok(())
}

/// What a name on the command line refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A PCI function (index into `Topology::devices`).
    Pci(usize),
    /// A non-PCI device; `pci_parent` is the PCI device above it, if any.
    NotPci { name: String, pci_parent: Option<usize> },
}

/// Resolves `0000:03:00.0`, `03:00.0`, a topology-file name, or a class device (`nvme0n1`,
/// also as `/dev/nvme0n1`).
pub fn resolve(engine: &Engine<'_>, name: &str) -> Result<Target, Error> {
    if let Some(dev) = name.strip_prefix("/dev/").filter(|d| engine.topo.aliases.contains_key(*d)) {
        return resolve(engine, dev);
    }
    if let Ok(bdf) = name.parse::<Bdf>() {
        return engine.index_of(bdf).map(Target::Pci).ok_or_else(|| Error::AbsentAddress { name: name.into(), bdf });
    }
    // Device and topology names never hold a `:`; a name with one was meant as an address.
    if name.contains(':') {
        return Err(Error::BadAddress(name.into()));
    }
    let topo = engine.topo;
    if let Some(i) = topo.devices.iter().position(|d| d.name.as_deref() == Some(name)) {
        return Ok(Target::Pci(i));
    }
    if let Some(alias) = topo.aliases.get(name) {
        return Ok(Target::NotPci { name: name.into(), pci_parent: alias.pci_parent.and_then(|b| engine.index_of(b)) });
    }
    Err(Error::UnknownDevice(name.into()))
}
