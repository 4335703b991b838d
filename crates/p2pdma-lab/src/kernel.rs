//! The guest kernel: Debian unstable's `linux-image-amd64`, fetched with a private apt
//! configuration (the machine's own apt sources are never touched) and cached by version.
//!
//! Other suites (`p2pdma lab run --kernel bookworm|trixie`) come the same way: their
//! kernels are built without CONFIG_PCI_P2PDMA, which the lab boots to prove the "absent"
//! verdict. They are kept apart so that the default (newest cached) stays unstable's.
//!
//! Layout of the cache (`default_cache_dir()`, usually `~/.cache/p2pdma`):
//! - `apt/`: private apt configuration, lists and downloads (unstable); `apt-<suite>/` others;
//! - `kernel/<release>/`: the unpacked `usr/lib/modules/<release>/` tree (`vmlinuz`,
//!   `config`, `kernel/**.ko.xz`, ...), plus `.complete` once verified (unstable);
//!   `kernel/<suite>/<release>/` for other suites;
//! - `ko/<release>/`: modules decompressed for the initramfs.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::cache::{self, Freshness};
use crate::debs::{
    dependency_names, fetch_locked, newest_complete, recreate_dir, unpack_debs, write, Fetch, PrivateApt,
    COMPLETE_MARKER,
};
use crate::elf;
use crate::error::{LabError, Result};

/// Environment variable naming a kernel directory to use instead of the cache: a
/// `/usr/lib/modules/<release>`-like tree with `vmlinuz`, `config` and `kernel/`.
pub const KERNEL_DIR_ENV: &str = "P2PDMA_KERNEL_DIR";
/// The Debian suite the default kernel comes from.
const SUITE: &str = "unstable";
/// The suites `--kernel` accepts: (name, Debian suite).
pub const SUITES: &[(&str, &str)] =
    &[("sid", "unstable"), ("unstable", "unstable"), ("trixie", "trixie"), ("bookworm", "bookworm")];
/// The meta package whose dependency names the current kernel.
const META_PACKAGE: &str = "linux-image-amd64";

/// A guest kernel on the host: its image, config and module tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// Kernel release (`uname -r` in the guest), e.g. "7.2.13+deb14-amd64".
    pub release: String,
    /// Debian package version, e.g. "7.2.13-1", when fetched from Debian.
    pub package_version: Option<String>,
    /// The module tree root (`/usr/lib/modules/<release>` layout).
    pub dir: PathBuf,
    /// The bootable image.
    pub vmlinuz: PathBuf,
    /// The kernel configuration.
    pub config: PathBuf,
    /// `CONFIG_PCI_P2PDMA=y`: the default lab kernel must have it; bookworm's and trixie's do not.
    pub p2pdma: bool,
}

/// A kernel module ready for the initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Module {
    /// Name with '_' (as the kernel reports it).
    pub name: String,
    /// Path in the guest relative to `/lib/modules/<release>/`, uncompressed (`kernel/.../x.ko`).
    pub guest_path: String,
    /// Decompressed module on the host.
    pub host_path: PathBuf,
    /// Names (with '_') of the modules it needs.
    pub depends: Vec<String>,
}

/// The lab's cache directory: `$P2PDMA_CACHE_DIR`, else `$XDG_CACHE_HOME/p2pdma`, else
/// `~/.cache/p2pdma`.
pub fn default_cache_dir() -> PathBuf {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = env("P2PDMA_CACHE_DIR") {
        return dir;
    }
    if let Some(dir) = env("XDG_CACHE_HOME") {
        return dir.join("p2pdma");
    }
    env("HOME").unwrap_or_else(std::env::temp_dir).join(".cache").join("p2pdma")
}

/// The kernel to boot without touching the network when possible: `$P2PDMA_KERNEL_DIR`,
/// else the most recently fetched cached kernel, else [`fetch_kernel`].
pub fn find_kernel(cache: &Path) -> Result<Kernel> {
    fetch_kernel(cache, Freshness::Cached)
}

/// Debian unstable's `linux-image-amd64`: its binary, modules and base packages, downloaded
/// with a private apt configuration under `<cache>/apt` and unpacked to
/// `<cache>/kernel/<release>/`, which must have `CONFIG_PCI_P2PDMA=y`. With
/// [`Freshness::Cached`] the newest cached kernel answers without the network;
/// `$P2PDMA_KERNEL_DIR` overrides all of this. If the mirror cannot be reached on a refresh,
/// the newest cached kernel is used (with a note on stderr).
pub fn fetch_kernel(cache: &Path, freshness: Freshness) -> Result<Kernel> {
    if let Some(dir) = std::env::var_os(KERNEL_DIR_ENV).filter(|v| !v.is_empty()) {
        return Kernel::from_dir(Path::new(&dir), None);
    }
    let kernel = fetch_suite_kernel(cache, SUITE, freshness)?;
    if !kernel.p2pdma {
        return Err(LabError::KernelConfig {
            version: kernel.release.clone(),
            option: "CONFIG_PCI_P2PDMA".into(),
            config: kernel.config.clone(),
        });
    }
    Ok(kernel)
}

/// The kernel of a suite by `--kernel` name (`sid`, `trixie`, `bookworm`), fetched with the
/// private apt configuration and cached by release; with P2PDMA or without.
pub fn suite_kernel(cache: &Path, name: &str, freshness: Freshness) -> Result<Kernel> {
    let suite = SUITES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s).ok_or_else(|| {
        let names: Vec<&str> = SUITES.iter().map(|(n, _)| *n).collect();
        LabError::Kernel(format!("unknown kernel `{name}`: one of {}", names.join(", ")))
    })?;
    fetch_suite_kernel(cache, suite, freshness)
}

/// Where a suite's apt state and kernels live in the cache.
fn suite_dirs(cache: &Path, suite: &str) -> (String, PathBuf) {
    if suite == SUITE {
        ("apt".into(), cache.join("kernel"))
    } else {
        (format!("apt-{suite}"), cache.join("kernel").join(suite))
    }
}

fn fetch_suite_kernel(cache: &Path, suite: &str, freshness: Freshness) -> Result<Kernel> {
    let (apt_name, kernel_root) = suite_dirs(cache, suite);
    let need_p2pdma = suite == SUITE;
    let how = Fetch {
        apt_name: &apt_name,
        suite,
        what: "kernel",
        no_apt_hint: "install apt and dpkg (Debian/Ubuntu hosts only) or set P2PDMA_KERNEL_DIR to an unpacked kernel",
    };
    let cached = || {
        newest_complete(&kernel_root, |dir| {
            Kernel::from_dir(dir, None).ok().filter(|kernel| kernel.p2pdma || !need_p2pdma)
        })
    };
    fetch_locked(cache, &how, freshness, cached, |apt, apt_dir| fetch_current_kernel(apt, apt_dir, &kernel_root, suite))
}

/// The suite's current kernel into `<kernel_root>/<release>/`, unless it is there already.
fn fetch_current_kernel(apt: &PrivateApt, apt_dir: &Path, kernel_root: &Path, suite: &str) -> Result<Kernel> {
    let (image, release, package_version) = current_kernel(apt, suite)?;
    let dest = kernel_root.join(&release);
    if dest.join(COMPLETE_MARKER).exists() {
        return Kernel::from_dir(&dest, package_version);
    }
    let packages = kernel_packages(apt, &image, &release)?;
    crate::stderr_line(&format!(
        "p2pdma-lab: fetching Debian {suite}'s kernel {release} ({}) into {}",
        packages.join(" "),
        kernel_root.display()
    ));
    let downloads = apt_dir.join("downloads").join(&release);
    recreate_dir(&downloads)?;
    apt.download(&packages, &downloads)?;
    let staging = kernel_root.join(format!(".{release}.partial"));
    let installed = install_kernel(&downloads, &staging, &dest, &release, package_version);
    // The .debs (about 125 MB) and the rest of the packages are not needed any more.
    let _ = fs::remove_dir_all(&staging);
    let _ = fs::remove_dir_all(&downloads);
    installed
}

/// The `linux-image-<release>` package the suite's meta package depends on, its release
/// and the meta package's version.
fn current_kernel(apt: &PrivateApt, suite: &str) -> Result<(String, String, Option<String>)> {
    let meta = apt.show(META_PACKAGE)?;
    let image = dependency_names(meta.get("Depends").map_or("", String::as_str))
        .into_iter()
        .find(|name| name.starts_with("linux-image-") && name.as_str() != META_PACKAGE)
        .ok_or_else(|| LabError::Kernel(format!("{META_PACKAGE} in {suite} names no linux-image-<release> package; the Debian packaging changed: set {KERNEL_DIR_ENV} to an unpacked kernel")))?;
    let release = image.trim_start_matches("linux-image-").to_string();
    Ok((image, release, meta.get("Version").cloned()))
}

/// The packages that make up the kernel: `linux-image-<release>` is empty in the split
/// layout and depends on linux-{binary,modules,base}-<release>, so it and every dependency
/// named `*-<release>`.
fn kernel_packages(apt: &PrivateApt, image: &str, release: &str) -> Result<Vec<String>> {
    let image_fields = apt.show(image)?;
    let mut packages = vec![image.to_string()];
    packages.extend(
        dependency_names(image_fields.get("Depends").map_or("", String::as_str))
            .into_iter()
            .filter(|name| name.ends_with(&format!("-{release}"))),
    );
    Ok(packages)
}

/// The downloaded packages unpacked into `staging`, their module tree checked (vmlinuz,
/// config), marked complete and renamed to `dest` in one step.
fn install_kernel(
    downloads: &Path,
    staging: &Path,
    dest: &Path,
    release: &str,
    package_version: Option<String>,
) -> Result<Kernel> {
    unpack_debs(downloads, staging)?;
    let tree = ["usr/lib/modules", "lib/modules"]
        .iter()
        .map(|base| staging.join(base).join(release))
        .find(|p| p.is_dir())
        .ok_or_else(|| LabError::Kernel(format!("the packages in {} hold no usr/lib/modules/{release}/; the Debian packaging changed: set {KERNEL_DIR_ENV} to an unpacked kernel", downloads.display())))?;
    // Older layouts keep the image and config in /boot.
    for (name, boot) in [("vmlinuz", format!("boot/vmlinuz-{release}")), ("config", format!("boot/config-{release}"))] {
        let boot = staging.join(boot);
        if !tree.join(name).exists() && boot.exists() {
            fs::rename(&boot, tree.join(name)).map_err(|e| LabError::io(format!("moving {}", boot.display()), e))?;
        }
    }
    Kernel::from_dir(&tree, package_version.clone())?;
    if let Some(version) = &package_version {
        write(&tree.join(".package-version"), version.as_bytes())?;
    }
    write(&tree.join(COMPLETE_MARKER), b"")?;
    if dest.exists() {
        fs::remove_dir_all(dest).map_err(|e| LabError::io(format!("removing stale {}", dest.display()), e))?;
    }
    fs::rename(&tree, dest).map_err(|e| LabError::io(format!("moving the kernel to {}", dest.display()), e))?;
    Kernel::from_dir(dest, package_version)
}

impl Kernel {
    /// Uses an unpacked kernel tree (`vmlinuz`, `config`, `kernel/`); the release is the
    /// directory's name. Whether it has `CONFIG_PCI_P2PDMA=y` is recorded in `p2pdma`.
    pub fn from_dir(dir: &Path, package_version: Option<String>) -> Result<Kernel> {
        let dir = dir.canonicalize().map_err(|e| {
            LabError::io(
                format!("kernel directory {} (check {KERNEL_DIR_ENV} or run `p2pdma lab fetch`)", dir.display()),
                e,
            )
        })?;
        let release = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| {
                LabError::Kernel(format!("{}: the directory name must be the kernel release", dir.display()))
            })?
            .to_string();
        let kernel = Kernel {
            package_version: package_version.or_else(|| fs::read_to_string(dir.join(".package-version")).ok()),
            vmlinuz: dir.join("vmlinuz"),
            config: dir.join("config"),
            dir,
            release,
            p2pdma: false,
        };
        for file in [&kernel.vmlinuz, &kernel.config] {
            if !file.is_file() {
                return Err(LabError::Kernel(format!(
                    "{} is missing; a kernel directory needs vmlinuz, config and kernel/ (remove it and run `p2pdma lab fetch`)",
                    file.display()
                )));
            }
        }
        let p2pdma = kernel.config_value("CONFIG_PCI_P2PDMA")?.as_deref() == Some("y");
        Ok(Kernel { p2pdma, ..kernel })
    }

    /// The value of a config option (`y`, `m`, a string...), `None` if unset.
    pub fn config_value(&self, option: &str) -> Result<Option<String>> {
        let text = fs::read_to_string(&self.config)
            .map_err(|e| LabError::io(format!("reading {}", self.config.display()), e))?;
        Ok(text.lines().find_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key == option).then(|| value.to_string())
        }))
    }

    /// Whether a module (name with '-' or '_') exists as a loadable module in this kernel.
    pub fn has_module(&self, name: &str) -> bool {
        self.module_index().map(|index| index.files.contains_key(&normalize(name))).unwrap_or(false)
    }

    /// Resolves `names` and their `depends=` closure, decompressing them into
    /// `<ko_cache>/<release>/`. Returns dependencies before dependents. Built-in modules are
    /// skipped; `optional` names that do not exist are skipped too.
    pub(crate) fn resolve_modules(
        &self,
        names: &[String],
        optional: &[String],
        ko_cache: &Path,
    ) -> Result<Vec<Module>> {
        let index = self.module_index()?;
        let out_dir = ko_cache.join(&self.release);
        let mut resolved: Vec<Module> = Vec::new();
        let mut done: HashSet<String> = HashSet::new();
        let requests = names.iter().map(|n| (n, true)).chain(optional.iter().map(|n| (n, false)));
        for (name, required) in requests {
            let key = normalize(name);
            if !index.files.contains_key(&key) {
                if required && !index.builtin.contains(&key) {
                    return Err(LabError::MissingModule { module: name.clone(), dir: self.dir.join("kernel") });
                }
                continue;
            }
            self.visit(&key, &index, &out_dir, &mut done, &mut Vec::new(), &mut resolved)?;
        }
        Ok(resolved)
    }

    fn visit(
        &self,
        key: &str,
        index: &ModuleIndex,
        out_dir: &Path,
        done: &mut HashSet<String>,
        stack: &mut Vec<String>,
        out: &mut Vec<Module>,
    ) -> Result<()> {
        if done.contains(key) {
            return Ok(());
        }
        if stack.iter().any(|k| k == key) {
            return Err(LabError::Kernel(format!("module dependency cycle: {} -> {key}", stack.join(" -> "))));
        }
        let Some(rel) = index.files.get(key) else {
            if index.builtin.contains(key) {
                return Ok(());
            }
            return Err(LabError::MissingModule { module: key.to_string(), dir: self.dir.join("kernel") });
        };
        let guest_path = strip_compression(rel);
        let host_path = out_dir.join(&guest_path);
        decompress_module(&self.dir.join(rel), &host_path)?;
        let bytes = fs::read(&host_path).map_err(|e| LabError::io(format!("reading {}", host_path.display()), e))?;
        let info = elf::modinfo(&bytes).ok_or_else(|| {
            LabError::Kernel(format!(
                "{} has no readable .modinfo section; delete {} and retry",
                host_path.display(),
                out_dir.display()
            ))
        })?;
        let depends: Vec<String> = info
            .iter()
            .filter(|(k, _)| k == "depends")
            .flat_map(|(_, v)| v.split(',').filter(|d| !d.is_empty()).map(normalize))
            .collect();
        stack.push(key.to_string());
        for dep in &depends {
            self.visit(dep, index, out_dir, done, stack, out)?;
        }
        stack.pop();
        done.insert(key.to_string());
        out.push(Module { name: key.to_string(), guest_path, host_path, depends });
        Ok(())
    }

    fn module_index(&self) -> Result<ModuleIndex> {
        let mut files = HashMap::new();
        let root = self.dir.join("kernel");
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = fs::read_dir(&dir)
                .map_err(|e| LabError::io(format!("reading the module tree {}", dir.display()), e))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path);
                } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                    if let Some(stem) = module_stem(name) {
                        if let Ok(rel) = path.strip_prefix(&self.dir) {
                            files.insert(normalize(stem), rel.to_string_lossy().into_owned());
                        }
                    }
                }
            }
        }
        let builtin = fs::read_to_string(self.dir.join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.rsplit('/').next().and_then(module_stem).map(normalize))
            .collect();
        Ok(ModuleIndex { files, builtin })
    }
}

struct ModuleIndex {
    /// Normalized name -> path relative to the kernel dir (possibly compressed).
    files: HashMap<String, String>,
    builtin: HashSet<String>,
}

/// "nvme-core.ko.xz" -> "nvme-core".
fn module_stem(file_name: &str) -> Option<&str> {
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|ext| file_name.strip_suffix(ext))
}

fn strip_compression(rel: &str) -> String {
    for ext in [".xz", ".zst", ".gz"] {
        if let Some(stripped) = rel.strip_suffix(ext) {
            return stripped.to_string();
        }
    }
    rel.to_string()
}

/// Module names compare with '-' and '_' equal; the kernel uses '_'.
fn normalize(name: &str) -> String {
    name.trim().replace('-', "_")
}

/// A module decompressed into `dest` (xz, zstd or gzip, by its name; copied when plain),
/// through a temporary file in the same directory renamed into place, so that lab runs
/// sharing the cache never read half a module.
fn decompress_module(src: &Path, dest: &Path) -> Result<()> {
    if dest.exists() {
        return Ok(());
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    cache::create_private_dir(parent)?;
    let reading = |e| LabError::io(format!("reading {}", src.display()), e);
    let file = fs::File::open(src).map_err(reading)?;
    let mut input: Box<dyn Read> = match src.extension().and_then(|e| e.to_str()) {
        Some("xz") => Box::new(xz2::read::XzDecoder::new(file)),
        Some("zst") => Box::new(ruzstd::decoding::StreamingDecoder::new(file).map_err(|e| {
            LabError::Kernel(format!(
                "{}: not zstd ({e}): delete the cached kernel and run `p2pdma lab fetch`",
                src.display()
            ))
        })?),
        Some("gz") => Box::new(flate2::read::GzDecoder::new(file)),
        _ => Box::new(file),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(parent)
        .map_err(|e| LabError::io(format!("creating a temporary file in {}", parent.display()), e))?;
    std::io::copy(&mut input, &mut tmp).map_err(|e| {
        LabError::io(
            format!(
                "decompressing {} (delete the cached kernel and run `p2pdma lab fetch` if it is damaged)",
                src.display()
            ),
            e,
        )
    })?;
    tmp.persist(dest).map_err(|e| LabError::io(format!("writing {}", dest.display()), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names() {
        assert_eq!(module_stem("nvme-core.ko.xz"), Some("nvme-core"));
        assert_eq!(module_stem("README"), None);
        assert_eq!(normalize("nvme-core"), "nvme_core");
        assert_eq!(strip_compression("kernel/fs/9p/9p.ko.xz"), "kernel/fs/9p/9p.ko");
    }
}
