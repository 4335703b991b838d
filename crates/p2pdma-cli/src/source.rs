//! Where a topology comes from: the live machine, a snapshot or a topology file.

use std::path::PathBuf;

use clap::Args;
use p2pdma_core::config::Acs;
use p2pdma_core::pciids::PciIds;
use p2pdma_core::{snapshot, spec, sysfs, Topology};

#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// Read a snapshot written by `p2pdma snapshot` instead of the live machine.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["spec", "sysfs_root", "proc_root"])]
    pub snapshot: Option<PathBuf>,
    /// Read a topology file (TOML) instead of the live machine.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["sysfs_root", "proc_root"])]
    pub spec: Option<PathBuf>,
    /// Root of the sysfs tree to read (for fixtures and chroots).
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    pub sysfs_root: PathBuf,
    /// Root of the procfs tree to read (CPU, kernel release, command line).
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// Name the live machine's devices after this topology file (the lab sets it), so
    /// that `nvme-a` works; every named device must be where the file predicts.
    #[arg(long, value_name = "FILE", env = "P2PDMA_NAMES", conflicts_with = "spec")]
    pub names: Option<PathBuf>,
}

pub struct Loaded {
    pub topology: Topology,
    /// Live reads can lack ACS (no root); snapshots carry that over.
    pub live_or_snapshot: bool,
}

impl SourceArgs {
    pub fn load(&self) -> anyhow::Result<Loaded> {
        self.load_from(true)
    }

    /// `pci_names`: look device names up in the PCI ID database.
    fn load_from(&self, pci_names: bool) -> anyhow::Result<Loaded> {
        if let Some(path) = &self.spec {
            let (_, topology) = spec::load(path)?;
            return Ok(Loaded { topology, live_or_snapshot: false });
        }
        let mut topology = match &self.snapshot {
            Some(path) => snapshot::load(path)?,
            None => sysfs::read(&self.roots(), pci_names.then(PciIds::load_default).flatten().as_ref())?,
        };
        if let Some(path) = &self.names {
            let (_, predicted) = spec::load(path)?;
            let missing = spec::apply_names(&mut topology, &predicted);
            if !missing.is_empty() {
                anyhow::bail!("{}: this machine is not the one described: {}", path.display(), missing.join("; "));
            }
        }
        Ok(Loaded { topology, live_or_snapshot: true })
    }
}

impl SourceArgs {
    /// The live machine only: `command` acts on real devices, so a file cannot stand in.
    /// Without the PCI ID database: the commands that move data never print its names, and
    /// parsing it costs time before the first I/O.
    pub fn load_live(&self, command: &str) -> anyhow::Result<Loaded> {
        self.require_live(command)?;
        self.load_from(false)
    }

    /// Refuses `--spec` and `--snapshot` for a command that acts on this machine.
    pub fn require_live(&self, command: &str) -> anyhow::Result<()> {
        if self.spec.is_some() || self.snapshot.is_some() {
            anyhow::bail!("{command} acts on this machine's devices: --spec and --snapshot do not apply");
        }
        Ok(())
    }

    pub fn roots(&self) -> sysfs::Roots {
        sysfs::Roots { sys: self.sysfs_root.clone(), proc: self.proc_root.clone() }
    }
}

impl Loaded {
    /// Tells on stderr, once, when ACS could not be read, so nobody mistakes a guess for a fact.
    pub fn warn_unknown_acs(&self) {
        let unknown = self.topology.devices.iter().filter(|d| d.acs == Acs::Unknown).count();
        if self.live_or_snapshot && unknown > 0 {
            eprintln!(
                "p2pdma: note: ACS of {unknown} device(s) is unknown (config space past 64 bytes needs root); verdicts that depend on it say so"
            );
        }
    }
}
