//! A name from the command line (`nvme-a`, `0000:03:00.0`, `nvme0n1`, `/dev/sdb`) as the
//! block device to do I/O on: `copy`'s operands, `alloc --read`, `nvmet export`'s
//! namespace, `resolve --block`. Pure: the device node's path is built, never looked at.

use std::path::PathBuf;

use crate::model::Alias;
use crate::verdict::Engine;
use crate::{resolve, Error, Target};

/// A block device path as given, or the block device of a named device.
pub fn block_device(engine: &Engine<'_>, name: &str) -> Result<PathBuf, Error> {
    let topo = engine.topo;
    if name.starts_with('/') {
        return Ok(PathBuf::from(name));
    }
    if let Some(alias) = topo.aliases.get(name).filter(|a| a.class == "block") {
        if alias.hidden {
            return Err(Error::WrongRole(format!(
                "{name} is a hidden disk (an NVMe multipath path, with no /dev node): {}",
                head_hint(engine, name)
            )));
        }
        return Ok(PathBuf::from("/dev").join(name));
    }
    let Target::Pci(i) = resolve(engine, name)? else {
        return Err(Error::WrongRole(format!("{name} is not a block device or a PCI device with one")));
    };
    let bdf = topo.devices[i].bdf;
    // Namespaces (nvme0n1), not partitions (nvme0n1p1): the shortest name under the device.
    // With NVMe multipath the namespace is the head above the controller's hidden path disk.
    let on_device = |a: &Alias| a.pci_parent == Some(bdf) || a.paths.iter().any(|p| p.pci == Some(bdf));
    topo.aliases
        .iter()
        .filter(|(n, a)| a.class == "block" && !a.hidden && on_device(a) && !n.contains('p'))
        .map(|(n, _)| n)
        .min_by_key(|n| (n.len(), n.to_string()))
        .map(|n| PathBuf::from("/dev").join(n))
        .ok_or_else(|| Error::WrongRole(format!("{name} ({bdf}) has no block device")))
}

/// Where to do I/O instead of the hidden path disk `path`: its head.
fn head_hint(engine: &Engine<'_>, path: &str) -> String {
    match engine.topo.aliases.iter().find(|(_, a)| a.paths.iter().any(|p| p.disk == path)) {
        Some((head, _)) => format!("use its head /dev/{head}"),
        None => "use its multipath head".into(),
    }
}
