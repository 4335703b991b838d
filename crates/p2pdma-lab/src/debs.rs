//! Debian packages in the lab's cache, never installed: apt with a private configuration
//! (its own sources list, lists and downloads under `<cache>/apt-<suite>/`; the machine's
//! apt sources are never touched), `dpkg-deb -x` into a staging directory renamed into
//! place. The kernels, the private QEMU and busybox come this way.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use crate::cache::{self, Freshness};
use crate::error::{LabError, Result};

/// Environment variable overriding the Debian mirror URI (default: the machine's apt sources).
pub const MIRROR_ENV: &str = "P2PDMA_DEBIAN_MIRROR";
const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// The machine's dpkg database, read (never written) to see which packages it has.
const MACHINE_DPKG_STATUS: &str = "/var/lib/dpkg/status";
/// Inside an unpacked entry once it is whole (and checked); holds the package version.
pub(crate) const COMPLETE_MARKER: &str = ".complete";

/// What to unpack into the cache: `packages` of `suite` (the first names the version),
/// into `<cache>/<kind>/<suite>/<version>/`.
pub(crate) struct Unpack<'a> {
    pub kind: &'a str,
    pub suite: &'a str,
    pub packages: &'a [&'a str],
    /// Also unpack every dependency the machine's dpkg database lacks (libraries a program
    /// links against).
    pub with_missing_dependencies: bool,
}

/// A fetch into the cache under one suite's private apt configuration (`<cache>/<apt_name>/`).
pub(crate) struct Fetch<'a> {
    /// The apt state directory's name in the cache, and the name of its lock.
    pub apt_name: &'a str,
    pub suite: &'a str,
    /// What is fetched, for the note when a refresh falls back on the cache.
    pub what: &'a str,
    /// How to do without apt, when it is missing.
    pub no_apt_hint: &'a str,
}

/// The one way a cache entry is fetched: `cached` (the newest usable entry, read without the
/// network) answers unless `freshness` asks the mirror; otherwise, under the apt directory's
/// lock, `cached` is asked again (another process may have fetched it while this one waited),
/// then `fetch` runs with the private apt configuration updated. When the update fails, the
/// cached entry answers with a note, and without one the error does.
pub(crate) fn fetch_locked<T>(
    cache: &Path,
    how: &Fetch<'_>,
    freshness: Freshness,
    cached: impl Fn() -> Option<T>,
    fetch: impl FnOnce(&PrivateApt, &Path) -> Result<T>,
) -> Result<T> {
    if freshness == Freshness::Cached {
        if let Some(found) = cached() {
            return Ok(found);
        }
    }
    for tool in ["apt-get", "dpkg-deb"] {
        require_tool(tool, how.no_apt_hint)?;
    }
    let _lock = cache::lock(cache, how.apt_name)?;
    if freshness == Freshness::Cached {
        if let Some(found) = cached() {
            return Ok(found);
        }
    }
    let apt_dir = cache.join(how.apt_name);
    let apt = PrivateApt::new(&apt_dir, how.suite)?;
    if let Err(err) = apt.update() {
        return match cached() {
            Some(found) => {
                crate::stderr_line(&format!(
                    "p2pdma-lab: cannot refresh the Debian {} package lists ({err}); using the cached {}",
                    how.suite, how.what
                ));
                Ok(found)
            }
            None => Err(err),
        };
    }
    fetch(&apt, &apt_dir)
}

/// The newest whole entry of `kind` for `suite` in the cache, without the network, checked
/// by `check`; else (or with [`Freshness::Refresh`]) fetched by [`fetch_locked`] and kept
/// only if `check` accepts it.
pub(crate) fn unpacked_in_cache<T>(
    cache: &Path,
    what: &Unpack<'_>,
    freshness: Freshness,
    check: impl Fn(&Path) -> Result<T>,
) -> Result<T> {
    let root = cache.join(what.kind).join(what.suite);
    let apt_name = format!("apt-{}", what.suite);
    let how = Fetch {
        apt_name: &apt_name,
        suite: what.suite,
        what: what.packages[0],
        no_apt_hint: "the lab fetches Debian's packages with apt: install apt and dpkg (Debian/Ubuntu)",
    };
    let cached = || newest_complete(&root, |dir| check(dir).ok());
    fetch_locked(cache, &how, freshness, cached, |apt, apt_dir| unpack(apt, apt_dir, &root, what, &check))
}

/// The current version of `what` downloaded, unpacked into a staging directory, checked,
/// marked complete and renamed into `<root>/<version>/`.
fn unpack<T>(
    apt: &PrivateApt,
    apt_dir: &Path,
    root: &Path,
    what: &Unpack<'_>,
    check: &impl Fn(&Path) -> Result<T>,
) -> Result<T> {
    let version = apt.show(what.packages[0])?.remove("Version").ok_or_else(|| LabError::CommandFailed {
        command: format!("apt-cache show {} ({}, private lab configuration)", what.packages[0], what.suite),
        detail: "no Version field".into(),
        hint: "the Debian packaging changed: report it".into(),
    })?;
    let dir_name = version.replace([':', '/'], "_");
    let dest = root.join(&dir_name);
    if dest.join(COMPLETE_MARKER).exists() {
        return check(&dest);
    }
    let mut packages: Vec<String> = what.packages.iter().map(|p| p.to_string()).collect();
    if what.with_missing_dependencies {
        for name in apt.missing_on_this_machine(what.packages)? {
            if !packages.contains(&name) {
                packages.push(name);
            }
        }
    }
    crate::stderr_line(&format!(
        "p2pdma-lab: unpacking Debian {}'s {} {version} into {} (nothing is installed): {}",
        what.suite,
        what.packages[0],
        dest.display(),
        packages.join(" ")
    ));
    let downloads = apt_dir.join("downloads").join(what.kind);
    recreate_dir(&downloads)?;
    apt.download(&packages, &downloads)?;
    let staging = root.join(format!(".{dir_name}.partial"));
    unpack_debs(&downloads, &staging)?;
    check(&staging)?;
    write(&staging.join(COMPLETE_MARKER), version.as_bytes())?;
    if dest.exists() {
        fs::remove_dir_all(&dest).map_err(|e| LabError::io(format!("removing stale {}", dest.display()), e))?;
    }
    fs::rename(&staging, &dest)
        .map_err(|e| LabError::io(format!("moving {} into {}", what.packages[0], dest.display()), e))?;
    let _ = fs::remove_dir_all(&downloads);
    check(&dest)
}

/// Of the completed entries below `root` that `accept` takes, the one completed last.
pub(crate) fn newest_complete<T>(root: &Path, accept: impl Fn(&Path) -> Option<T>) -> Option<T> {
    let mut best: Option<(SystemTime, T)> = None;
    for dir in read_dir_sorted(root).ok()? {
        let Ok(modified) = fs::metadata(dir.join(COMPLETE_MARKER)).and_then(|m| m.modified()) else { continue };
        if best.as_ref().is_some_and(|(t, _)| modified <= *t) {
            continue;
        }
        if let Some(found) = accept(&dir) {
            best = Some((modified, found));
        }
    }
    best.map(|(_, found)| found)
}

/// apt-get/apt-cache with their own sources list, state and cache under `root`.
pub(crate) struct PrivateApt {
    root: PathBuf,
    suite: String,
}

impl PrivateApt {
    pub(crate) fn new(root: &Path, suite: &str) -> Result<Self> {
        let (uri, keyring) = debian_mirror()?;
        for sub in [
            "etc/sources.list.d",
            "etc/preferences.d",
            "etc/apt.conf.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        }
        let status = root.join("state/status");
        if !status.exists() {
            write(&status, b"")?;
        }
        // A backports suite holds only what it backports: the rest of its dependencies come
        // from the suite it extends (and `APT::Default-Release` prefers the backports).
        let mut sources = String::new();
        if let Some(base) = suite.strip_suffix("-backports") {
            sources.push_str(&format!("deb [signed-by={keyring}] {uri} {base} main\n"));
        }
        sources.push_str(&format!("deb [signed-by={keyring}] {uri} {suite} main\n"));
        write(&root.join("etc/sources.list"), sources.as_bytes())?;
        Ok(PrivateApt { root: root.to_path_buf(), suite: suite.to_string() })
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        let r = |sub: &str| self.root.join(sub).display().to_string();
        for (key, value) in [
            ("Dir::Etc::SourceList", r("etc/sources.list")),
            ("Dir::Etc::SourceParts", r("etc/sources.list.d")),
            ("Dir::Etc::Preferences", r("etc/preferences")),
            ("Dir::Etc::PreferencesParts", r("etc/preferences.d")),
            ("Dir::State", r("state")),
            ("Dir::State::status", r("state/status")),
            ("Dir::Cache", r("cache")),
            ("APT::Architecture", "amd64".into()),
            ("APT::Architectures::", "amd64".into()),
            ("Acquire::Languages", "none".into()),
            ("Acquire::IndexTargets::deb::DEP-11::DefaultEnabled", "false".into()),
            ("Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled", "false".into()),
            ("Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled", "false".into()),
            ("Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled", "false".into()),
            ("APT::Sandbox::User", current_user()),
            ("Debug::NoLocking", "1".into()),
            ("APT::Default-Release", self.suite.clone()),
        ] {
            cmd.arg("-o").arg(format!("{key}={value}"));
        }
        cmd.env("LC_ALL", "C");
        cmd
    }

    pub(crate) fn update(&self) -> Result<()> {
        let mut cmd = self.command("apt-get");
        cmd.args(["-q", "update"]);
        let out = run_checked(&mut cmd, "check that the Debian mirror is reachable, or set P2PDMA_DEBIAN_MIRROR")?;
        // apt-get update exits 0 on some fetch failures; it says so with "W:"/"E:" lines.
        let stderr = String::from_utf8_lossy(&out.stderr);
        if let Some(line) = stderr.lines().find(|l| l.starts_with("E:") || l.contains("Failed to fetch")) {
            return Err(LabError::CommandFailed {
                command: "apt-get update (private lab configuration)".into(),
                detail: line.to_string(),
                hint: "check that the Debian mirror is reachable, or set P2PDMA_DEBIAN_MIRROR".into(),
            });
        }
        Ok(())
    }

    /// The control fields of the candidate version of `package`.
    pub(crate) fn show(&self, package: &str) -> Result<BTreeMap<String, String>> {
        let mut cmd = self.command("apt-cache");
        cmd.args(["show", "--no-all-versions", package]);
        let hint = format!("{package} is not in Debian {} (any more): try again later", self.suite);
        let out = run_checked(&mut cmd, &hint)?;
        Ok(parse_control(&String::from_utf8_lossy(&out.stdout)))
    }

    /// What installing `packages` (without recommends) would add to this machine: the
    /// packages themselves and every dependency the machine's dpkg database lacks, in the
    /// versions this configuration's suite has. A simulation (`apt-get -s`): nothing is
    /// installed, and the machine's database is only read.
    pub(crate) fn missing_on_this_machine(&self, packages: &[&str]) -> Result<Vec<String>> {
        let mut cmd = self.command("apt-get");
        cmd.args(["-o", &format!("Dir::State::status={MACHINE_DPKG_STATUS}")]);
        cmd.args(["-s", "-q", "install", "--no-install-recommends"]).args(packages);
        let hint = format!("the packages {} cannot be resolved in Debian {}", packages.join(" "), self.suite);
        let out = run_checked(&mut cmd, &hint)?;
        Ok(simulated_installs(&String::from_utf8_lossy(&out.stdout)))
    }

    pub(crate) fn download(&self, packages: &[String], into: &Path) -> Result<()> {
        let mut cmd = self.command("apt-get");
        cmd.args(["-q", "download"]).args(packages).current_dir(into);
        run_checked(&mut cmd, "check the network and free disk space, then retry").map(drop)
    }
}

fn current_user() -> String {
    if rustix::process::geteuid().is_root() {
        "root".into()
    } else {
        std::env::var("USER").unwrap_or_else(|_| "root".into())
    }
}

/// The first stanza of a deb822 control text, continuation lines joined.
fn parse_control(text: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        if line.is_empty() {
            if fields.is_empty() {
                continue;
            }
            break;
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(key) = &last {
                if let Some(value) = fields.get_mut(key) {
                    let value: &mut String = value;
                    value.push('\n');
                    value.push_str(line.trim());
                }
            }
        } else if let Some((key, value)) = line.split_once(':') {
            fields.insert(key.trim().to_string(), value.trim().to_string());
            last = Some(key.trim().to_string());
        }
    }
    fields
}

/// The packages an `apt-get -s install` would unpack: `Inst NAME [old] (new ...)` lines.
fn simulated_installs(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("Inst "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|name| name.split(':').next().unwrap_or(name).to_string())
        .collect()
}

/// Package names in a Depends field (all alternatives, version constraints dropped).
pub(crate) fn dependency_names(depends: &str) -> Vec<String> {
    depends
        .split([',', '|'])
        .filter_map(|item| item.split_whitespace().next())
        .map(|name| name.split(':').next().unwrap_or(name).to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The machine's Debian mirror URI (and keyring) from its apt sources, or `$P2PDMA_DEBIAN_MIRROR`.
fn debian_mirror() -> Result<(String, String)> {
    if let Ok(uri) = std::env::var(MIRROR_ENV) {
        if !uri.trim().is_empty() {
            return Ok((uri.trim().to_string(), DEFAULT_KEYRING.to_string()));
        }
    }
    let mut candidates = Vec::new();
    if let Ok(entries) = read_dir_sorted(Path::new("/etc/apt/sources.list.d")) {
        for path in entries {
            let text = fs::read_to_string(&path).unwrap_or_default();
            match path.extension().and_then(|e| e.to_str()) {
                Some("sources") => candidates.extend(deb822_mirrors(&text)),
                Some("list") => candidates.extend(one_line_mirrors(&text)),
                _ => {}
            }
        }
    }
    candidates.extend(one_line_mirrors(&fs::read_to_string("/etc/apt/sources.list").unwrap_or_default()));
    candidates.into_iter().next().ok_or_else(|| {
        LabError::Kernel(format!(
            "no Debian mirror found in /etc/apt/sources.list(.d); set {MIRROR_ENV} to a Debian mirror URI (e.g. the one your apt uses)"
        ))
    })
}

/// Main-archive mirrors (not security/updates/backports suites) in deb822 stanzas.
fn deb822_mirrors(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for stanza in text.split("\n\n") {
        let fields = parse_control(stanza);
        if fields.get("Enabled").is_some_and(|v| v == "no")
            || !fields.get("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"))
        {
            continue;
        }
        let suites = fields.get("Suites").map_or("", String::as_str);
        if !suites.split_whitespace().any(is_main_suite) {
            continue;
        }
        let keyring =
            fields.get("Signed-By").filter(|k| k.starts_with('/')).cloned().unwrap_or_else(|| DEFAULT_KEYRING.into());
        for uri in fields.get("URIs").map_or("", String::as_str).split_whitespace() {
            if uri.contains("debian") && !uri.contains("security") {
                found.push((uri.to_string(), keyring.clone()));
            }
        }
    }
    found
}

fn one_line_mirrors(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let rest = line.strip_prefix("deb ")?.trim();
            // Skip "[options]".
            let rest = if rest.starts_with('[') { rest.split_once(']')?.1.trim() } else { rest };
            let mut words = rest.split_whitespace();
            let uri = words.next()?;
            let suite = words.next()?;
            (is_main_suite(suite) && uri.contains("debian") && !uri.contains("security"))
                .then(|| (uri.to_string(), DEFAULT_KEYRING.to_string()))
        })
        .collect()
}

fn is_main_suite(suite: &str) -> bool {
    !suite.contains('-') && !suite.contains('/')
}

pub(crate) fn require_tool(tool: &str, hint: &str) -> Result<PathBuf> {
    find_in_path(tool).ok_or_else(|| LabError::MissingTool { tool: tool.into(), hint: hint.into() })
}

pub(crate) fn find_in_path(tool: &str) -> Option<PathBuf> {
    if tool.contains('/') {
        return Path::new(tool).is_file().then(|| PathBuf::from(tool));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(tool)).find(|p| p.is_file())
}

/// Runs a command, capturing output; a non-zero exit becomes `CommandFailed` with its stderr tail.
pub(crate) fn run_checked(cmd: &mut Command, hint: &str) -> Result<Output> {
    let shown = format!("{cmd:?}");
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| LabError::io(format!("running {shown}"), e))?;
    if out.status.success() {
        return Ok(out);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
    Err(LabError::CommandFailed {
        command: shown,
        detail: format!("{}: {}", out.status, tail.into_iter().rev().collect::<Vec<_>>().join("\n")),
        hint: hint.into(),
    })
}

/// Every `.deb` in `downloads` unpacked (`dpkg-deb -x`, nothing installed) into a fresh `staging`.
pub(crate) fn unpack_debs(downloads: &Path, staging: &Path) -> Result<()> {
    recreate_dir(staging)?;
    for deb in read_dir_sorted(downloads)? {
        if deb.extension().is_some_and(|e| e == "deb") {
            run_checked(
                Command::new("dpkg-deb").arg("-x").arg(&deb).arg(staging),
                "check free disk space in the cache directory",
            )?;
        }
    }
    Ok(())
}

pub(crate) fn recreate_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(|e| LabError::io(format!("removing {}", dir.display()), e))?;
    }
    fs::create_dir_all(dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))
}

pub(crate) fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| LabError::io(format!("reading {}", dir.display()), e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    Ok(entries)
}

pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(|e| LabError::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_image_package_in_depends() {
        let depends = "linux-base-amd64 (= 7.2.13-1), linux-image-7.2.13+deb14-amd64 (= 7.2.13-1)";
        let names = dependency_names(depends);
        assert_eq!(names, ["linux-base-amd64", "linux-image-7.2.13+deb14-amd64"]);
        let image_deps = "dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.2.13+deb14-amd64 (= 7.2.13-1), linux-binary-7.2.13+deb14-amd64 (= 7.2.13-1)";
        let wanted: Vec<_> =
            dependency_names(image_deps).into_iter().filter(|n| n.ends_with("-7.2.13+deb14-amd64")).collect();
        assert_eq!(wanted, ["linux-base-7.2.13+deb14-amd64", "linux-binary-7.2.13+deb14-amd64"]);
    }

    #[test]
    fn parses_control_and_sources() {
        let fields = parse_control("\nPackage: a\nDepends: b,\n c\nVersion: 1\n\nPackage: other\n");
        assert_eq!(fields["Package"], "a");
        assert_eq!(fields["Depends"], "b,\nc");
        assert_eq!(dependency_names(&fields["Depends"]), ["b", "c"]);

        let deb822 = "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/k.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            deb822_mirrors(deb822),
            [("http://mirror.example/debian".to_string(), "/usr/share/keyrings/k.gpg".to_string())]
        );
        let list = "deb [arch=amd64] http://m.example/debian bookworm main\ndeb http://m.example/debian-security bookworm-security main\n";
        assert_eq!(one_line_mirrors(list)[0].0, "http://m.example/debian");
        assert_eq!(one_line_mirrors(list).len(), 1);
    }

    #[test]
    fn reads_the_packages_a_simulated_install_adds() {
        let text = "Reading package lists...\nRemv qemu-utils [1:10.0.2+ds-2]\nInst libfdt1 (1.6.1-4+b1 Debian:12.15/oldstable [amd64])\nInst liblzma5:amd64 [5.4.1-1] (5.4.1-1+deb12u2 Debian-Security:12/oldstable-security [amd64])\nConf libfdt1 (1.6.1-4+b1 Debian:12.15/oldstable [amd64])\n";
        assert_eq!(simulated_installs(text), ["libfdt1", "liblzma5"]);
    }
}
