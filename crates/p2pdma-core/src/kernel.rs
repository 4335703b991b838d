//! What the running (or named) kernel can do for P2P: whether P2PDMA is built at all, its
//! release and the features that came with each release, the IOMMU mode, and the host
//! bridge whitelist in force with the source that decided it. Pure decisions here; the
//! reads (config files, `/proc/kallsyms`, the kernel image) are in `kernel_live`.
//! Sources for every fact: docs/kernel.md.

use serde::Serialize;

use crate::model::{Built, IommuMode, Machine, P2pMem, P2pdmaBuild, Topology, WhitelistEntry};
use crate::release::{KernelRelease, NamedRelease};
use crate::whitelist::{self, Entry, ANY_DEVICE};

impl From<&Entry> for WhitelistEntry {
    fn from(e: &Entry) -> Self {
        WhitelistEntry {
            vendor: e.vendor,
            device: e.device,
            same_host_bridge_only: e.same_host_bridge_only,
            label: e.label.to_string(),
        }
    }
}

impl WhitelistEntry {
    pub fn matches(&self, vendor: u16, device: u16) -> bool {
        self.vendor == vendor && (self.device == ANY_DEVICE || self.device == device)
    }

    pub fn id(&self) -> String {
        if self.device == ANY_DEVICE {
            format!("{:04x}:*", self.vendor)
        } else {
            format!("{:04x}:{:04x}", self.vendor, self.device)
        }
    }
}

/// Which source decided the whitelist in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum WhitelistSource {
    /// Read out of the kernel image (exact, stable backports and vendor kernels included).
    Image { image: String },
    /// p2pdma's table of entries by the release that brought them.
    ReleaseTable { release: String },
    /// No image and no release known: the newest release p2pdma knows.
    NewestKnown { release: String },
}

impl WhitelistSource {
    pub fn describe(&self) -> String {
        match self {
            WhitelistSource::Image { image } => format!("read from the kernel image {image}"),
            WhitelistSource::ReleaseTable { release } => format!("p2pdma's table for release {release}"),
            WhitelistSource::NewestKnown { release } => {
                format!("no kernel image or release known: p2pdma's table for the newest known release {release}")
            }
        }
    }
}

/// A feature of the kernel's P2P support and the release that brought it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feature {
    pub name: &'static str,
    /// The first mainline release with it ("always" when P2PDMA always had it, "never" for a
    /// limitation no release lifts).
    pub since: &'static str,
    /// Whether this kernel has it; null when its release is unknown.
    pub available: Option<bool>,
    pub note: &'static str,
}

/// One feature row: (name, since (major, minor) or None for always, note).
type FeatureRow = (&'static str, Option<(u32, u32)>, &'static str, &'static str);

/// The first mainline release with P2PDMA (`CONFIG_PCI_P2PDMA`, drivers/pci/p2pdma.c).
pub const FIRST_P2PDMA: (u32, u32) = (4, 20);

/// The first release whose multipath heads take P2P buffers: fb0eeeed91f3 "nvme-multipath:
/// enable PCI P2PDMA for multipath devices" (for-7.2/block, 26 May 2026) sets
/// `BLK_FEAT_PCI_P2PDMA` on the head, and 7882834048f1 clears it in `blk_stack_limits()`
/// when a path's queue lacks it. Before, the head's queue never had it: O_DIRECT with P2P
/// pages through the head fails.
pub const MULTIPATH_P2PDMA_SINCE: (u32, u32) = (7, 2);

const FEATURES: &[FeatureRow] = &[
    ("nvmet_p2pmem", Some(FIRST_P2PDMA), "4.20", "nvmet namespaces can use P2P memory (configfs `p2pmem`)"),
    ("userspace_allocate", Some((6, 2)), "6.2", "userspace mmap of p2pmem/allocate, used with O_DIRECT on NVMe"),
    ("vfio_dmabuf_export", Some((6, 19)), "6.19", "VFIO exports device BARs as dma-bufs; such providers have no p2pmem/ directory"),
    ("multipath_and_md", Some(MULTIPATH_P2PDMA_SINCE), "7.2", "P2P buffers through NVMe multipath head nodes and md RAID (fb0eeeed91f3, 02666132403a); before, such a namespace rejects P2P buffers (use nvme_core.multipath=N)"),
    ("fixed_buffers", None, "never", "io_uring registered (fixed) buffers can never be P2P memory: io_pin_pages pins without FOLL_PCI_P2PDMA and GUP refuses P2P pages (try_grab_folio: EREMOTEIO)"),
];

/// The kernel as p2pdma judges it: shown by `topo`, the report and every `--json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelCapabilities {
    /// The release judged (named with `--kernel`, else `uname -r`).
    pub release: Option<String>,
    pub p2pdma: P2pdmaBuild,
    pub features: Vec<Feature>,
    pub iommu_mode: Option<IommuMode>,
    pub iommu_meaning: Option<&'static str>,
    pub whitelist: Vec<WhitelistEntry>,
    pub whitelist_source: WhitelistSource,
    pub warnings: Vec<String>,
}

/// The kernel a verdict was judged for, carried by every report (`check`, `find`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelSummary {
    pub release: Option<String>,
    pub p2pdma: P2pdmaBuild,
    pub whitelist_source: WhitelistSource,
}

pub fn summary(machine: &Machine) -> KernelSummary {
    KernelSummary {
        release: release_text(machine),
        p2pdma: machine.kernel.p2pdma.clone(),
        whitelist_source: whitelist_in_force(machine).1,
    }
}

/// What the kernel's P2PDMA build means for verdicts.
pub fn p2pdma_absent(machine: &Machine) -> bool {
    machine.kernel.p2pdma.built == Built::No
}

/// The release being judged: `--kernel`, else the machine's, parsed.
pub fn release(machine: &Machine) -> Option<KernelRelease> {
    match &machine.kernel.named_release {
        Some(named) => Some(named.release),
        None => machine.kernel_release.as_deref().and_then(|r| r.parse().ok()),
    }
}

/// The release as reports show it: `--kernel`'s words, else `uname -r`.
fn release_text(machine: &Machine) -> Option<String> {
    machine.kernel.named_release.as_ref().map(|n| n.text.clone()).or_else(|| machine.kernel_release.clone())
}

/// The whitelist in force and the source that decided it: the image beats a release, a
/// release beats the newest known table.
pub fn whitelist_in_force(machine: &Machine) -> (Vec<WhitelistEntry>, WhitelistSource) {
    if machine.kernel.named_release.is_none() {
        if let Some(img) = &machine.kernel.image_whitelist {
            return (img.entries.clone(), WhitelistSource::Image { image: img.image.clone() });
        }
    }
    match release(machine) {
        Some(r) => (
            whitelist::for_release(r.major, r.minor, r.patch).iter().map(WhitelistEntry::from).collect(),
            WhitelistSource::ReleaseTable { release: r.to_string() },
        ),
        None => {
            let r = KernelRelease::newest_known();
            (
                whitelist::for_release(r.major, r.minor, r.patch).iter().map(WhitelistEntry::from).collect(),
                WhitelistSource::NewestKnown { release: format!("{}.{}", r.major, r.minor) },
            )
        }
    }
}

/// Everything about the kernel, from what was recorded.
pub fn capabilities(machine: &Machine) -> KernelCapabilities {
    let rel = release(machine);
    let (whitelist, whitelist_source) = whitelist_in_force(machine);
    let built = machine.kernel.p2pdma.built;
    let features = FEATURES
        .iter()
        .map(|&(name, since, since_text, note)| Feature {
            name,
            since: since_text,
            available: match since {
                None => Some(false),
                Some(_) if built == Built::No => Some(false),
                Some(s) => rel.map(|r| r.at_least(s)),
            },
            note,
        })
        .collect();
    let iommu_mode = machine.kernel.iommu_mode.or(match machine.iommu {
        Some(false) => Some(IommuMode::Off),
        _ => None,
    });
    KernelCapabilities {
        release: release_text(machine),
        p2pdma: machine.kernel.p2pdma.clone(),
        features,
        iommu_mode,
        iommu_meaning: iommu_mode.map(IommuMode::meaning),
        whitelist,
        whitelist_source,
        warnings: machine.kernel.warnings.clone(),
    }
}

/// For a host bridge `vvvv:dddd` missing from the list in force: the releases that list
/// it ("7.2 or newer (7.1.3 or newer in 7.1)"), None when no release does.
pub fn whitelisted_from(id: &str) -> Option<String> {
    let (v, d) = id.split_once(':')?;
    let (v, d) = (u16::from_str_radix(v, 16).ok()?, u16::from_str_radix(d, 16).ok()?);
    let k = whitelist::TABLE.iter().find(|k| {
        k.dropped.is_none() && k.entry.vendor == v && (k.entry.device == ANY_DEVICE || k.entry.device == d)
    })?;
    let (ma, mi) = k.mainline;
    let pending = if (ma, mi) > whitelist::NEWEST_KNOWN { ", not yet released: in the PCI tree" } else { "" };
    Some(match k.stable {
        Some((sa, si, sp)) => format!("{ma}.{mi} or newer (or {sa}.{si}.{sp} or newer in {sa}.{si}){pending}"),
        None => format!("{ma}.{mi} or newer{pending}"),
    })
}

/// The reason every verdict carries on a kernel without P2PDMA.
pub fn absent_reason(machine: &Machine) -> String {
    let release = machine.kernel_release.as_deref().map(|r| format!(" {r}")).unwrap_or_default();
    let evidence = machine.kernel.p2pdma.evidence.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
    format!(
        "this kernel{release} is built without CONFIG_PCI_P2PDMA{evidence}: no device publishes P2P memory and the kernel refuses every P2P mapping, whatever the topology"
    )
}

/// The fix for a kernel without P2PDMA.
pub const ABSENT_FIX: &str = "boot a kernel built with CONFIG_PCI_P2PDMA=y: Debian unstable (7.2) and Ubuntu's generic kernels have it; Debian 12 (6.1) and 13 (6.12) do not, nor their backports kernels; or build your own with it";

/// `CONFIG_PCI_P2PDMA` in a kernel config (`/boot/config-*`, `/proc/config.gz`).
pub fn p2pdma_in_config(config: &str) -> Option<bool> {
    config.lines().find_map(|l| {
        let l = l.trim();
        if l == "# CONFIG_PCI_P2PDMA is not set" {
            Some(false)
        } else {
            l.strip_prefix("CONFIG_PCI_P2PDMA=").map(|v| v == "y")
        }
    })
}

/// The symbol only a P2PDMA kernel has (drivers/pci/p2pdma.c, exported).
pub const P2PDMA_SYMBOL: &str = "pci_p2pdma_distance_many";

/// Whether `/proc/kallsyms` lists the P2PDMA symbol; None when the text holds no symbols.
/// (A plain substring search: the file is 9 MB and every command reads it.)
pub fn p2pdma_in_kallsyms(kallsyms: &str) -> Option<bool> {
    if kallsyms.trim().is_empty() {
        return None;
    }
    let line_end = format!(" {P2PDMA_SYMBOL}\n");
    let module_tag = format!(" {P2PDMA_SYMBOL}\t");
    Some(
        kallsyms.contains(&line_end)
            || kallsyms.contains(&module_tag)
            || kallsyms.ends_with(&line_end[..line_end.len() - 1]),
    )
}

/// The IOMMU mode from the first IOMMU group's `type` (`identity`, `DMA`, `DMA-FQ`).
pub fn iommu_mode_from_group_type(kind: &str) -> Option<IommuMode> {
    match kind.trim() {
        "identity" => Some(IommuMode::Passthrough),
        "DMA" | "DMA-FQ" | "unmanaged" => Some(IommuMode::Translated),
        _ => None,
    }
}

/// "What if this kernel": the observed machine as kernel release `named` would see it (its
/// whitelist, its features), built with P2PDMA (a release is not a build), so a drive whose
/// CMB this kernel leaves unused is judged as the provider it would be. A new topology for
/// the verdicts; the observed one is left as it was read.
pub fn as_release(observed: &Topology, named: &NamedRelease) -> Topology {
    let mut view = observed.clone();
    let r = named.release;
    view.machine.kernel.named_release = Some(named.clone());
    if !r.at_least(FIRST_P2PDMA) {
        // No build of such a release has P2PDMA: judging it "as built" would say yes to
        // pairs its kernel cannot serve.
        view.machine.kernel.p2pdma = P2pdmaBuild {
            built: Built::No,
            evidence: Some(format!(
                "--kernel {r}: P2PDMA (drivers/pci/p2pdma.c) came in {}.{}",
                FIRST_P2PDMA.0, FIRST_P2PDMA.1
            )),
        };
        // Nothing publishes P2P memory there (as a topology file with `p2pdma = false`).
        for d in &mut view.devices {
            d.p2pmem = None;
        }
        return view;
    }
    view.machine.kernel.p2pdma = P2pdmaBuild {
        built: Built::Unknown,
        evidence: Some(format!("--kernel {r}: a release, not a build; judged as built with CONFIG_PCI_P2PDMA")),
    };
    for d in &mut view.devices {
        if let (None, Some(size)) = (&d.p2pmem, d.cmb) {
            d.p2pmem = Some(P2pMem { size, available: size, published: true });
        }
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ImageWhitelist;
    use crate::verdict::MapType;

    #[test]
    fn config_and_kallsyms_say_yes_no_or_nothing() {
        assert_eq!(p2pdma_in_config("CONFIG_PCI=y\nCONFIG_PCI_P2PDMA=y\n"), Some(true));
        assert_eq!(p2pdma_in_config("# CONFIG_PCI_P2PDMA is not set\n"), Some(false));
        assert_eq!(p2pdma_in_config("CONFIG_PCI=y\n"), None);
        assert_eq!(p2pdma_in_kallsyms("0 T pci_p2pdma_distance_many\n"), Some(true));
        assert_eq!(p2pdma_in_kallsyms("0 T pci_enable_device\n"), Some(false));
        assert_eq!(p2pdma_in_kallsyms(""), None);
    }

    #[test]
    fn whitelist_source_prefers_image_then_release_then_newest() {
        let mut m = Machine::default();
        let (wl, src) = whitelist_in_force(&m);
        assert!(matches!(src, WhitelistSource::NewestKnown { .. }));
        assert!(wl.iter().any(|e| e.vendor == 0x10de));
        m.kernel_release = Some("6.6.0-1-amd64".into());
        let (wl, src) = whitelist_in_force(&m);
        assert_eq!(src, WhitelistSource::ReleaseTable { release: "6.6.0".into() });
        assert!(!wl.iter().any(|e| e.device == 0x0b25));
        m.kernel.image_whitelist = Some(ImageWhitelist {
            image: "/boot/vmlinuz".into(),
            entries: vec![WhitelistEntry {
                vendor: 0x8086,
                device: 0x0b25,
                same_host_bridge_only: false,
                label: String::new(),
            }],
        });
        let (wl, src) = whitelist_in_force(&m);
        assert!(matches!(src, WhitelistSource::Image { .. }));
        assert_eq!(wl.len(), 1);
        let observed = Topology {
            machine: m,
            host_bridges: vec![],
            devices: vec![],
            aliases: Default::default(),
            iommu_groups: None,
        };
        let named = |v: &str| v.parse::<NamedRelease>().unwrap();
        let t = as_release(&observed, &named("7.3"));
        assert!(
            matches!(whitelist_in_force(&t.machine).1, WhitelistSource::ReleaseTable { .. }),
            "--kernel beats the image"
        );
        assert!(
            matches!(whitelist_in_force(&observed.machine).1, WhitelistSource::Image { .. }),
            "a view, not an edit"
        );
        assert!("seven".parse::<NamedRelease>().is_err());
        let t = as_release(&observed, &named("4.19"));
        assert!(p2pdma_absent(&t.machine), "a release before 4.20 has no P2PDMA to build");
        assert!(crate::metrics::kernel_p2pdma_support(&t) == Some(false));
        let t = as_release(&t, &named("4.20"));
        assert!(!p2pdma_absent(&t.machine));
    }

    /// Two NVMe drives on two root ports of an AMD host bridge no list names, a Zen 3 CPU.
    const ZEN_HOST_BRIDGE: &str = r#"name = "zen"
[machine]
cpu = "epyc-milan"
[[host_bridge]]
name = "pci0000:00"
id = "1022:1480"
[[root_port]]
name = "rp0"
slot = 0x10
[[root_port]]
name = "rp1"
slot = 0x11
[[endpoint]]
name = "nvme-a"
kind = "nvme"
parent = "rp0"
cmb_mib = 16
[[endpoint]]
name = "nvme-b"
kind = "nvme"
parent = "rp1"
"#;

    #[test]
    fn cpu_supports_p2pdma_applies_from_5_9_only() {
        // drivers/pci/p2pdma.c cpu_supports_p2pdma(), dea286bb71ba (5.9)
        let (_, observed) = crate::spec::from_text(ZEN_HOST_BRIDGE, std::path::Path::new("zen.toml")).unwrap();
        let idx = |t: &Topology, n: &str| t.devices.iter().position(|d| d.name.as_deref() == Some(n)).unwrap();
        let map_type = |kernel: &str| {
            let t = as_release(&observed, &kernel.parse().unwrap());
            let e = crate::verdict::Engine::new(&t).unwrap();
            (e.pair(idx(&t, "nvme-a"), idx(&t, "nvme-b")).map_type, e.cpu_allows())
        };
        assert_eq!(map_type("7.2"), (MapType::ThruHostBridge, true));
        assert_eq!(map_type("5.9"), (MapType::ThruHostBridge, true));
        assert_eq!(map_type("5.8"), (MapType::NotSupported, false), "no CPU rule before 5.9");
        assert_eq!(map_type("5.4"), (MapType::NotSupported, false));
        let e = crate::verdict::Engine::new(&observed).unwrap();
        assert!(e.cpu_allows(), "no release known: the newest rules");
    }

    #[test]
    fn amd_zen_root_complex_entry_allows_before_the_cpu_rule() {
        // 0f97da831026 (5.2, root_complex_whitelist) .. dea286bb71ba (5.9) dropped it
        let text = ZEN_HOST_BRIDGE.replace("1022:1480", "1022:1450").replace("epyc-milan", "epyc");
        let (_, observed) = crate::spec::from_text(&text, std::path::Path::new("zen1.toml")).unwrap();
        let idx = |t: &Topology, n: &str| t.devices.iter().position(|d| d.name.as_deref() == Some(n)).unwrap();
        for (kernel, want) in [
            ("5.1", MapType::NotSupported),
            ("5.2", MapType::ThruHostBridge),
            ("5.8", MapType::ThruHostBridge),
            ("5.9", MapType::ThruHostBridge),
        ] {
            let t = as_release(&observed, &kernel.parse().unwrap());
            let e = crate::verdict::Engine::new(&t).unwrap();
            assert_eq!(e.pair(idx(&t, "nvme-a"), idx(&t, "nvme-b")).map_type, want, "{kernel}");
        }
    }

    #[test]
    fn features_follow_the_release_and_the_build() {
        let mut m = Machine { kernel_release: Some("6.1.0-28-amd64".into()), ..Machine::default() };
        let f = |m: &Machine, n: &str| capabilities(m).features.into_iter().find(|f| f.name == n).unwrap().available;
        assert_eq!(f(&m, "userspace_allocate"), Some(false));
        m.kernel_release = Some("6.12.117".into());
        assert_eq!(f(&m, "userspace_allocate"), Some(true));
        assert_eq!(f(&m, "multipath_and_md"), Some(false));
        m.kernel.p2pdma.built = Built::No;
        assert_eq!(f(&m, "userspace_allocate"), Some(false));
        m.kernel_release = None;
        m.kernel.p2pdma.built = Built::Unknown;
        assert_eq!(f(&m, "userspace_allocate"), None);
        assert_eq!(f(&m, "fixed_buffers"), Some(false));
    }
}
