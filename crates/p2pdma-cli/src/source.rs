//! Where a topology comes from: the live machine, a snapshot or a topology file.

use std::path::PathBuf;

use clap::Args;
use p2pdma_core::config::Acs;
use p2pdma_core::release::NamedRelease;
use p2pdma_core::{kernel, spec, what_if, Topology};
use p2pdma_host::input::{read_snapshot, read_spec};
use p2pdma_host::roots::Roots;
use p2pdma_host::{machine, pciids};

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
    /// What-if: analyse as if booted with these kernel parameters added to the command line
    /// (e.g. "pci=disable_acs_redir=0000:00:10.0"): ACS control, verdicts and IOMMU groups
    /// after the change. Parameters the kernel would ignore are ignored and said.
    #[arg(long, value_name = "PARAMS")]
    pub kernel_params: Option<String>,
    /// Judge as kernel release VERSION would (its host bridge whitelist and features, built
    /// with CONFIG_PCI_P2PDMA; before 4.20, without P2PDMA), e.g. 6.6 or 7.2.13: for
    /// planning an upgrade.
    #[arg(long, value_name = "VERSION")]
    pub kernel: Option<String>,
}

pub struct Loaded {
    pub topology: Topology,
    /// Live reads can lack ACS (no root); snapshots carry that over.
    pub live_or_snapshot: bool,
}

impl SourceArgs {
    /// The topology with vendor, device and class names (the machine's `pci.ids`, then the
    /// built-in database), for the commands that print devices.
    pub fn load(&self) -> anyhow::Result<Loaded> {
        let mut loaded = self.load_unnamed()?;
        let names = pciids::names_for(&loaded.topology);
        loaded.topology.annotate_names(&names);
        Ok(loaded)
    }

    /// The topology without looking names up (no `pci.ids` read: `copy` starts fast).
    pub fn load_unnamed(&self) -> anyhow::Result<Loaded> {
        // Parsed before anything is read: a malformed value is a one-line error (exit 2).
        let named = self.named_release()?;
        if let Some(path) = &self.spec {
            let (mut file, mut topology) = read_spec(path)?;
            if let Some(extra) = &self.kernel_params {
                // A topology file knows its firmware ACS values: lower it again, exactly.
                file.machine.kernel_params = format!("{} {extra}", file.machine.kernel_params);
                topology = file.to_topology().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                let notes = what_if::param_notes(&topology, extra);
                warn_params(&notes);
                what_if::annotate(&mut topology, extra, notes);
            }
            return Ok(with_kernel(Loaded { topology, live_or_snapshot: false }, named.as_ref()));
        }
        let mut topology = match &self.snapshot {
            Some(path) => read_snapshot(path)?,
            None => {
                // A mistyped --proc-root would otherwise read as "kernel ?, CPU unknown".
                if !self.proc_root.is_dir() {
                    let why = if self.proc_root.exists() { "is not a directory" } else { "does not exist" };
                    anyhow::bail!("--proc-root {}: {why}", self.proc_root.display());
                }
                machine::read(&self.roots(), None)?
            }
        };
        if let Some(path) = &self.names {
            let (_, predicted) = read_spec(path)?;
            let missing = spec::apply_names(&mut topology, &predicted);
            if !missing.is_empty() {
                anyhow::bail!("{}: this machine is not the one described: {}", path.display(), missing.join("; "));
            }
        }
        if let Some(extra) = &self.kernel_params {
            warn_params(&what_if::apply(&mut topology, extra));
        }
        Ok(with_kernel(Loaded { topology, live_or_snapshot: true }, named.as_ref()))
    }

    /// `--kernel`, parsed: the one place its text becomes a release.
    fn named_release(&self) -> anyhow::Result<Option<NamedRelease>> {
        self.kernel.as_deref().map(|v| v.parse().map_err(|e| anyhow::anyhow!("--kernel: {e}"))).transpose()
    }
}

/// The machine as `--kernel`'s release would see it, then the kernel's warnings
/// (unreadable image, /boot), once, on stderr.
fn with_kernel(mut loaded: Loaded, named: Option<&NamedRelease>) -> Loaded {
    if let Some(named) = named {
        loaded.topology = kernel::as_release(&loaded.topology, named);
    }
    for w in &loaded.topology.machine.kernel.warnings {
        crate::out::note(&format!("warning: {w}"));
    }
    loaded
}

/// What the kernel would do with `--kernel-params` that it ignores: said once, on stderr
/// (and in `iommu_groups.notes` of the JSON when the IOMMU is on).
fn warn_params(notes: &[String]) {
    for n in notes {
        crate::out::note(&format!("note: --kernel-params: {n}"));
    }
}

impl SourceArgs {
    /// The live machine only: `command` acts on real devices, so a file cannot stand in.
    /// Without the PCI ID database: the commands that move data never print its names, and
    /// parsing it costs time before the first I/O.
    pub fn load_live(&self, command: &str) -> anyhow::Result<Loaded> {
        self.require_live(command)?;
        self.load_unnamed()
    }

    /// Refuses `--spec` and `--snapshot` for a command that acts on this machine.
    pub fn require_live(&self, command: &str) -> anyhow::Result<()> {
        if self.spec.is_some() || self.snapshot.is_some() {
            anyhow::bail!("{command} acts on this machine's devices: --spec and --snapshot do not apply");
        }
        if self.kernel_params.is_some() {
            anyhow::bail!("{command} acts on this machine as booted: --kernel-params (a what-if) does not apply");
        }
        Ok(())
    }

    pub fn roots(&self) -> Roots {
        Roots { sys: self.sysfs_root.clone(), proc: self.proc_root.clone() }
    }
}

impl Loaded {
    /// Tells on stderr, once, when ACS could not be read, so nobody mistakes a guess for a fact.
    pub fn warn_unknown_acs(&self) {
        let unknown = self.topology.devices.iter().filter(|d| d.acs == Acs::Unknown).count();
        if self.live_or_snapshot && unknown > 0 {
            crate::out::note(&format!(
                "note: ACS of {unknown} device(s) is unknown (config space past 64 bytes needs root); verdicts that depend on it say so"
            ));
        }
    }
}
