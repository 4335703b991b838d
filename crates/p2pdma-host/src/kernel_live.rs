//! Reads what the running kernel says about itself, under the reader's roots: `/boot` is
//! taken beside the proc root (`/proc` → `/boot`, `<fixture>/proc` → `<fixture>/boot`).
//! Evidence for P2PDMA, best first: `/boot/config-<release>`, `/proc/config.gz`, the BTF
//! names in `/sys/kernel/btf/vmlinux`, the symbols in `/proc/kallsyms`. BTF comes before
//! kallsyms for speed only (both are the running kernel's own): it is a 5 MB copy, while the
//! kernel formats kallsyms' 9 MB symbol by symbol (0.26 s in the lab, on every command). The whitelist
//! comes from `/boot/vmlinuz-<release>`. Nothing readable means unknown, said, never guessed.

use std::fs;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use p2pdma_core::kernel;
use p2pdma_core::model::{Built, ImageWhitelist, IommuMode, KernelFacts, P2pdmaBuild, WhitelistEntry};

use crate::bounded::{self, Bound};
use crate::kernel_image;
use crate::roots::Roots;

/// The `/boot` that goes with these roots.
pub fn boot_dir(roots: &Roots) -> PathBuf {
    roots.proc.parent().map_or_else(|| PathBuf::from("/boot"), |p| p.join("boot"))
}

/// A file's bytes; Ok(None) when it does not exist, Err(one line) when it cannot be read.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match bounded::read_bytes(path, Bound::KERNEL_FILE) {
        Ok(b) => Ok(Some(b)),
        Err(crate::Error::Io { source, .. })
            if matches!(source.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.to_string()),
    }
}

fn gunzip(bytes: &[u8], path: &Path) -> Result<String, String> {
    let mut s = String::new();
    flate2::read::GzDecoder::new(bytes)
        .take(64 << 20)
        .read_to_string(&mut s)
        .map_err(|e| format!("{}: cannot decompress ({e})", path.display()))?;
    Ok(s)
}

/// Everything the live kernel says; `release` is `uname -r`; `p2pmem_seen`: some device
/// has a `p2pmem/` directory.
pub fn read(roots: &Roots, release: Option<&str>, p2pmem_seen: bool) -> KernelFacts {
    let mut facts = KernelFacts::default();
    let boot = boot_dir(roots);
    facts.p2pdma = if p2pmem_seen {
        // Only pci_p2pdma_add_resource() makes p2pmem/: proof enough, and free, where the
        // other evidence costs a read of the config or of megabytes of BTF (about 60 ms of a
        // copy's start in the lab's emulated CPU).
        P2pdmaBuild {
            built: Built::Yes,
            evidence: Some("a device has p2pmem/, which only a kernel with CONFIG_PCI_P2PDMA makes".into()),
        }
    } else {
        read_build(roots, &boot, release, &mut facts.warnings)
    };
    if facts.p2pdma.built != Built::No {
        if let Some(r) = release {
            let image = boot.join(format!("vmlinuz-{r}"));
            if let Some(entries) = cached_whitelist(&image) {
                facts.image_whitelist = Some(ImageWhitelist { image: image.display().to_string(), entries });
            } else {
                match read_optional(&image) {
                    Ok(Some(bytes)) => match kernel_image::whitelist_from_image(&bytes) {
                        Ok(entries) => {
                            store_whitelist(&image, &entries);
                            facts.image_whitelist = Some(ImageWhitelist { image: image.display().to_string(), entries })
                        }
                        Err(e) => facts
                            .warnings
                            .push(format!("{}: {e}; the whitelist comes from p2pdma's release table", image.display())),
                    },
                    Ok(None) => {}
                    Err(e) => facts.warnings.push(format!("{e}; the whitelist comes from p2pdma's release table")),
                }
            }
        }
    }
    facts.iommu_mode = read_iommu_mode(&roots.sys);
    facts
}

/// The running kernel's release and whether it has CONFIG_PCI_P2PDMA, alone (no image, no
/// whitelist): what a command needs to name the cause when no device has P2P memory.
pub fn p2pdma_build(roots: &Roots) -> (Option<String>, P2pdmaBuild) {
    let release = read_optional(&roots.proc.join("sys/kernel/osrelease"))
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|r| !r.is_empty());
    let build = read_build(roots, &boot_dir(roots), release.as_deref(), &mut Vec::new());
    (release, build)
}

/// Decompressing an image costs about 0.3 s on every command, so the table read from it is
/// kept in the cache directory, keyed by the image's path, size and modification time.
/// The cache is optional: any failure just means reading the image again.
fn cache_file(image: &Path) -> Option<(PathBuf, String)> {
    let env = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty()).map(PathBuf::from);
    let dir = env("P2PDMA_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("p2pdma")))
        .or_else(|| env("HOME").map(|h| h.join(".cache/p2pdma")))?
        .join("image-whitelist");
    let meta = fs::metadata(image).ok()?;
    let mtime = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    let canon = fs::canonicalize(image).ok()?;
    let key = format!("{}\n{}\n{mtime}", canon.display(), meta.len());
    // A file name from the key: FNV-1a, enough to tell images apart; the key is checked too.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    Some((dir.join(format!("{hash:016x}.json")), key))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CachedWhitelist {
    key: String,
    entries: Vec<WhitelistEntry>,
}

fn cached_whitelist(image: &Path) -> Option<Vec<WhitelistEntry>> {
    let (file, key) = cache_file(image)?;
    let cached: CachedWhitelist = serde_json::from_slice(&bounded::read_bytes(&file, Bound::ATTRIBUTE).ok()?).ok()?;
    (cached.key == key && !cached.entries.is_empty()).then_some(cached.entries)
}

fn store_whitelist(image: &Path, entries: &[WhitelistEntry]) {
    let Some((file, key)) = cache_file(image) else { return };
    let Some(dir) = file.parent() else { return };
    let Ok(text) = serde_json::to_vec(&CachedWhitelist { key, entries: entries.to_vec() }) else { return };
    // A private directory, and the one writer: a temporary file made with O_EXCL beside
    // the name, renamed onto it; a link planted there by another user is refused.
    if crate::output::create_private_dir(dir).is_ok() {
        let _ = crate::output::write_file(&file, &text, 0o600);
    }
}

fn read_build(roots: &Roots, boot: &Path, release: Option<&str>, warnings: &mut Vec<String>) -> P2pdmaBuild {
    let mut tried = Vec::new();
    let found = |built: bool, evidence: String| P2pdmaBuild {
        built: if built { Built::Yes } else { Built::No },
        evidence: Some(evidence),
    };
    if let Some(r) = release {
        let path = boot.join(format!("config-{r}"));
        match read_optional(&path) {
            Ok(Some(b)) => match kernel::p2pdma_in_config(&String::from_utf8_lossy(&b)) {
                Some(v) => return found(v, config_evidence(&path, v)),
                None => tried.push(format!("{} does not mention it", path.display())),
            },
            Ok(None) => tried.push(format!("no {}", path.display())),
            Err(e) => {
                warnings.push(e.clone());
                tried.push(e);
            }
        }
    }
    let gz = roots.proc.join("config.gz");
    match read_optional(&gz) {
        Ok(Some(b)) => match gunzip(&b, &gz).map(|t| kernel::p2pdma_in_config(&t)) {
            Ok(Some(v)) => return found(v, config_evidence(&gz, v)),
            Ok(None) => tried.push(format!("{} does not mention it", gz.display())),
            Err(e) => {
                warnings.push(e.clone());
                tried.push(e);
            }
        },
        Ok(None) => tried.push(format!("no {}", gz.display())),
        Err(e) => tried.push(e),
    }
    let btf = roots.sys.join("kernel/btf/vmlinux");
    match read_optional(&btf) {
        Ok(Some(b)) => {
            let has = String::from_utf8_lossy(&b).contains(kernel::P2PDMA_SYMBOL);
            let verb = if has { "names" } else { "does not name" };
            return found(has, format!("{} {verb} {}", btf.display(), kernel::P2PDMA_SYMBOL));
        }
        Ok(None) => tried.push(format!("no {}", btf.display())),
        Err(e) => tried.push(e),
    }
    let kallsyms = roots.proc.join("kallsyms");
    match read_optional(&kallsyms) {
        Ok(Some(b)) => match kernel::p2pdma_in_kallsyms(&String::from_utf8_lossy(&b)) {
            Some(true) => return found(true, format!("{} lists {}", kallsyms.display(), kernel::P2PDMA_SYMBOL)),
            Some(false) => {
                return found(false, format!("{} does not list {}", kallsyms.display(), kernel::P2PDMA_SYMBOL))
            }
            None => tried.push(format!("{} lists no symbols", kallsyms.display())),
        },
        Ok(None) => tried.push(format!("no {}", kallsyms.display())),
        Err(e) => tried.push(e),
    }
    P2pdmaBuild { built: Built::Unknown, evidence: Some(format!("nothing readable says: {}", tried.join("; "))) }
}

fn config_evidence(path: &Path, built: bool) -> String {
    if built {
        format!("{}: CONFIG_PCI_P2PDMA=y", path.display())
    } else {
        format!("{}: # CONFIG_PCI_P2PDMA is not set", path.display())
    }
}

/// Off when no IOMMU is registered, else the default domain type of the first group.
fn read_iommu_mode(sys: &Path) -> Option<IommuMode> {
    let class = fs::read_dir(sys.join("class/iommu")).ok()?.flatten().next();
    let mut groups: Vec<PathBuf> =
        fs::read_dir(sys.join("kernel/iommu_groups")).ok()?.flatten().map(|e| e.path().join("type")).collect();
    groups.sort();
    let kind = groups.iter().find_map(|p| bounded::attribute(p));
    match (class, kind) {
        (None, None) => Some(IommuMode::Off),
        (_, Some(k)) => kernel::iommu_mode_from_group_type(&k),
        (Some(_), None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(dir: &Path) -> Roots {
        Roots { sys: dir.join("sys"), proc: dir.join("proc") }
    }

    #[test]
    fn config_beats_kallsyms_and_nothing_is_unknown() {
        let t = tempfile::tempdir().unwrap();
        let r = roots(t.path());
        fs::create_dir_all(&r.proc).unwrap();
        fs::create_dir_all(&r.sys).unwrap();
        let facts = read(&r, Some("6.1.0-28-amd64"), false);
        assert_eq!(facts.p2pdma.built, Built::Unknown);
        assert!(facts.p2pdma.evidence.unwrap().contains("config-6.1.0-28-amd64"));
        fs::write(r.proc.join("kallsyms"), "ffff T pci_p2pdma_distance_many\n").unwrap();
        assert_eq!(read(&r, Some("6.1.0-28-amd64"), false).p2pdma.built, Built::Yes);
        fs::create_dir_all(t.path().join("boot")).unwrap();
        fs::write(t.path().join("boot/config-6.1.0-28-amd64"), "# CONFIG_PCI_P2PDMA is not set\n").unwrap();
        let facts = read(&r, Some("6.1.0-28-amd64"), false);
        assert_eq!(facts.p2pdma.built, Built::No);
        assert!(facts.p2pdma.evidence.unwrap().contains("is not set"));
    }

    #[test]
    fn an_unreadable_image_is_a_warning_naming_it() {
        let t = tempfile::tempdir().unwrap();
        let r = roots(t.path());
        fs::create_dir_all(t.path().join("boot")).unwrap();
        fs::write(t.path().join("boot/config-7.2.13"), "CONFIG_PCI_P2PDMA=y\n").unwrap();
        fs::write(t.path().join("boot/vmlinuz-7.2.13"), [0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]).unwrap();
        let facts = read(&r, Some("7.2.13"), false);
        assert_eq!(facts.p2pdma.built, Built::Yes);
        assert!(facts.image_whitelist.is_none());
        assert_eq!(facts.warnings.len(), 1);
        assert!(
            facts.warnings[0].contains("vmlinuz-7.2.13: cannot decompress its zstd payload"),
            "{:?}",
            facts.warnings
        );
    }
}
