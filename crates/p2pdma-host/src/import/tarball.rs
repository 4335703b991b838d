//! A tarball of a sysfs tree (`hwloc-gather-topology`'s `NAME.tar.bz2`; plain, gzip, bzip2
//! or xz), recognised by its magic bytes, extracted into a private temporary directory and
//! read by the live reader ([`crate::machine::read`]): the same code that decodes live
//! config space decodes the archive's, so a 64-byte `config` (gathered without root) leaves
//! ACS unknown exactly as a live read without root does.
//!
//! Extraction refuses what could write or read outside its directory: absolute paths, `..`
//! components, symlinks whose target leaves the tree (checked lexically, then once more after
//! every link exists, on the resolved path), and more than [`MAX_ENTRIES`] entries or
//! [`MAX_BYTES`] bytes. Device files, fifos and hard links are skipped (sysfs has none that
//! the reader needs).

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use p2pdma_core::config::Acs;
use p2pdma_core::Topology;

use crate::import::assemble::Assembled;
use crate::import::report::{Fact, ImportReport, InputSummary, SectionSummary, Unknown};
use crate::import::{Format, Origin};
use crate::roots::Roots;
use crate::Error;

/// The most bytes the files of one archive may hold once extracted.
pub const MAX_BYTES: u64 = 256 << 20;
/// The most entries one archive may have.
pub const MAX_ENTRIES: usize = 1_000_000;

/// The caps extraction enforces (tests shrink them).
#[derive(Debug, Clone, Copy)]
struct Limits {
    entries: usize,
    bytes: u64,
}

const LIMITS: Limits = Limits { entries: MAX_ENTRIES, bytes: MAX_BYTES };

/// How an archive is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
}

/// The archive's compression when `head` starts a tarball (gzip, bzip2 and xz magic; a
/// plain tar's `ustar` at offset 257), else None: text inputs stay text.
pub fn sniff(head: &[u8]) -> Option<Compression> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if head.starts_with(b"BZh") && head.get(3).is_some_and(|d| (b'1'..=b'9').contains(d)) {
        Some(Compression::Bzip2)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Some(Compression::Xz)
    } else if head.get(257..262) == Some(b"ustar") {
        Some(Compression::None)
    } else {
        None
    }
}

/// Reads the tarball `bytes` (named `name` in facts and errors) as a machine: its topology and
/// `import`'s summary of it.
pub fn read(name: &str, bytes: &[u8], compression: Compression) -> Result<Assembled, Error> {
    let dir = tempfile::Builder::new().prefix("p2pdma-sysfs-").tempdir().map_err(|e| Error::io(name, e))?;
    let stats = extract(name, decoder(bytes, compression), dir.path(), LIMITS)?;
    let sys = find_sysfs(dir.path())
        .ok_or_else(|| Error::invalid(name, "holds no sysfs tree (no sys/bus/pci/devices in the archive)"))?;
    // The archive of a bare sys/ tree has no proc/ beside it: none is read (never the
    // temp dir's parent's).
    let top =
        if sys == dir.path() { dir.path().join(".none") } else { sys.parent().unwrap_or(dir.path()).to_path_buf() };
    let proc = top.join("proc");
    // hwloc-gather-topology saves no kernel image; one in the archive is not read (the live
    // reader would cache its whitelist outside the temp dir).
    let boot = top.join("boot");
    if fs::symlink_metadata(&boot).is_ok() {
        fs::remove_dir_all(&boot).or_else(|_| fs::remove_file(&boot)).map_err(|e| Error::io(name, e))?;
    }
    let topology = crate::machine::read(&Roots { sys, proc }, None)
        .map_err(|e| Error::invalid(name, format!("its sysfs tree: {}", strip_dir(&e.to_string(), dir.path()))))?;
    let report = summarize(name, &stats, &topology);
    Ok(Assembled { topology, report })
}

fn decoder<'a>(bytes: &'a [u8], compression: Compression) -> Box<dyn Read + 'a> {
    match compression {
        Compression::None => Box::new(bytes),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(bytes)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(bytes)),
        Compression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(bytes)),
    }
}

/// Errors name paths inside the archive, not the temporary directory.
fn strip_dir(msg: &str, dir: &Path) -> String {
    msg.replace(&format!("{}/", dir.display()), "")
}

/// What extraction kept and skipped.
#[derive(Debug, Default)]
struct Stats {
    entries: usize,
    files: usize,
    skipped: usize,
}

/// Extracts `reader`'s archive under `dest`: files and directories first, then the symlinks
/// (so no file is ever written through a link), each checked to stay inside `dest`.
fn extract(name: &str, reader: impl Read, dest: &Path, limits: Limits) -> Result<Stats, Error> {
    let bad = |msg: String| Error::invalid(name, msg);
    let mut archive = tar::Archive::new(reader);
    let mut stats = Stats::default();
    let mut bytes = 0u64;
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    for entry in archive.entries().map_err(|e| bad(format!("not a readable tar archive: {e}")))? {
        let mut entry = entry.map_err(|e| bad(format!("not a readable tar archive: {e}")))?;
        stats.entries += 1;
        if stats.entries > limits.entries {
            return Err(bad(format!("has more than {} entries (the cap for a sysfs tarball)", limits.entries)));
        }
        let raw = entry.path().map_err(|e| bad(format!("an entry's path is unreadable: {e}")))?.into_owned();
        let Some(rel) = safe_relative(&raw).map_err(bad)? else { continue };
        let kind = entry.header().entry_type();
        let target = dest.join(&rel);
        if kind.is_dir() {
            fs::create_dir_all(&target).map_err(|e| Error::io(&raw, e))?;
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            let size = entry.header().size().unwrap_or(0);
            bytes = bytes.saturating_add(size);
            if bytes > limits.bytes {
                return Err(bad(format!(
                    "holds more than {} of files (the cap for a sysfs tarball)",
                    size_words(limits.bytes)
                )));
            }
            make_parent(&target, &raw)?;
            let mut file = fs::File::create(&target).map_err(|e| Error::io(&raw, e))?;
            io::copy(&mut (&mut entry).take(size), &mut file).map_err(|e| Error::io(&raw, e))?;
            stats.files += 1;
        } else if kind.is_symlink() {
            let to = entry.link_name().ok().flatten().map(|l| l.into_owned()).unwrap_or_default();
            check_link_lexically(&rel, &to).map_err(bad)?;
            make_parent(&target, &raw)?;
            links.push((rel, to));
        } else {
            // Device files, fifos, hard links: nothing the reader needs.
            stats.skipped += 1;
        }
    }
    make_links(name, dest, &links)?;
    Ok(stats)
}

fn size_words(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

fn make_parent(target: &Path, raw: &Path) -> Result<(), Error> {
    match target.parent() {
        Some(p) => fs::create_dir_all(p).map_err(|e| Error::io(raw, e)),
        None => Ok(()),
    }
}

/// The entry's path as plain components; Err for an absolute path or a `..`, Ok(None) for
/// the archive's `.` itself.
fn safe_relative(raw: &Path) -> Result<Option<PathBuf>, String> {
    let mut rel = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => rel.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "entry {} has an absolute path (refused)",
                    crate::import::printable(&raw.display().to_string())
                ))
            }
            Component::ParentDir => {
                return Err(format!(
                    "entry {} has a `..` component (refused)",
                    crate::import::printable(&raw.display().to_string())
                ))
            }
        }
    }
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
}

/// A link at `rel` to `to` must be relative and, resolved by its words alone, stay inside.
fn check_link_lexically(rel: &Path, to: &Path) -> Result<(), String> {
    let escapes = || {
        format!(
            "symlink {} -> {} points outside the archive (refused)",
            crate::import::printable(&rel.display().to_string()),
            crate::import::printable(&to.display().to_string())
        )
    };
    let mut depth: Vec<&std::ffi::OsStr> =
        rel.parent().map(|p| p.components().map(|c| c.as_os_str()).collect()).unwrap_or_default();
    for c in to.components() {
        match c {
            Component::Normal(n) => depth.push(n),
            Component::CurDir => {}
            Component::ParentDir => {
                depth.pop().ok_or_else(escapes)?;
            }
            Component::RootDir | Component::Prefix(_) => return Err(escapes()),
        }
    }
    if to.as_os_str().is_empty() {
        return Err(escapes());
    }
    Ok(())
}

/// Makes the links, each in a directory that is no link itself, then resolves every one:
/// a chain of links that leaves `dest` is refused (a dangling link stays: sysfs copies
/// have them).
fn make_links(name: &str, dest: &Path, links: &[(PathBuf, PathBuf)]) -> Result<(), Error> {
    let root = fs::canonicalize(dest).map_err(|e| Error::io(name, e))?;
    for (rel, to) in links {
        let parent = rel.parent().map_or_else(|| root.clone(), |p| root.join(p));
        if fs::canonicalize(&parent).ok().as_ref() != Some(&parent) {
            return Err(Error::invalid(
                name,
                format!(
                    "symlink {} lies below another symlink (refused)",
                    crate::import::printable(&rel.display().to_string())
                ),
            ));
        }
        let at = root.join(rel);
        if fs::symlink_metadata(&at).is_ok() {
            continue; // the first entry of a path wins, as for files already written
        }
        std::os::unix::fs::symlink(to, &at).map_err(|e| Error::io(rel, e))?;
    }
    for (rel, to) in links {
        if let Ok(real) = fs::canonicalize(root.join(rel)) {
            if !real.starts_with(&root) {
                return Err(Error::invalid(
                    name,
                    format!(
                        "symlink {} -> {} leads outside the archive (refused)",
                        crate::import::printable(&rel.display().to_string()),
                        crate::import::printable(&to.display().to_string())
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The directory that holds `bus/pci/devices`: `dest` itself, or up to three levels below
/// (hwloc-gather-topology writes `NAME/sys/...`), the first in name order.
fn find_sysfs(dest: &Path) -> Option<PathBuf> {
    let mut level = vec![dest.to_path_buf()];
    for _ in 0..4 {
        level.sort();
        if let Some(d) = level.iter().find(|d| is_real_dir(&d.join("bus/pci/devices"))) {
            return Some(d.clone());
        }
        let mut next = Vec::new();
        for d in &level {
            let Ok(rd) = fs::read_dir(d) else { continue };
            next.extend(rd.flatten().map(|e| e.path()).filter(|p| is_real_dir(p)).take(64));
        }
        level = next;
    }
    None
}

fn is_real_dir(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.is_dir())
}

/// `import`'s summary of a tarball: the input, what the sysfs tree gave, and the ACS it
/// could not (config space past 64 bytes needs root when gathering).
fn summarize(name: &str, stats: &Stats, t: &Topology) -> ImportReport {
    let origin = Origin { input: name.to_string(), line: 0, format: Format::SysfsTarball };
    let mut r = ImportReport {
        inputs: vec![InputSummary {
            name: name.to_string(),
            lines: stats.entries,
            skipped_lines: stats.skipped,
            sections: vec![SectionSummary { format: Format::SysfsTarball, first_line: 0, lines: stats.files }],
        }],
        devices: t.devices.len(),
        host_bridges: t.host_bridges.iter().map(|h| h.name.clone()).collect(),
        ..Default::default()
    };
    let nodes: BTreeSet<i32> = t.devices.iter().filter_map(|d| d.numa_node).filter(|n| *n >= 0).collect();
    r.numa_nodes = (!nodes.is_empty()).then_some(nodes.len() as u32);
    let m = &t.machine;
    for (fact, value) in [("kernel_release", &m.kernel_release), ("cmdline", &m.cmdline), ("cpu_vendor", &m.cpu_vendor)]
    {
        match value {
            Some(v) => r.facts.push(fact_of("machine", fact, v.clone(), &origin)),
            None => r.unknown.push(Unknown {
                subject: "machine".into(),
                fact,
                consequence: "the archive has no proc/ file that gives it".into(),
                reveal: "hwloc-gather-topology (it saves /proc/cpuinfo)".into(),
            }),
        }
    }
    for d in &t.devices {
        let s = d.bdf.to_string();
        if d.acs == Acs::Unknown {
            if d.is_bridge || d.is_dma_capable() {
                r.unknown.push(Unknown {
                    subject: s,
                    fact: "acs",
                    consequence: "verdicts through it are uncertain (check exit 3, BUSn? in matrices)".into(),
                    reveal: format!("sudo lspci -vvv -s {} (or gather as root: config past 64 bytes needs it)", d.bdf),
                });
            }
        } else {
            r.facts.push(fact_of(&s, "acs", format!("{:?}", d.acs), &origin));
        }
        if !d.bars.is_empty() {
            r.facts.push(fact_of(&d.bdf.to_string(), "bars", d.bars.len().to_string(), &origin));
        }
    }
    r
}

fn fact_of(subject: &str, fact: &'static str, value: String, origin: &Origin) -> Fact {
    Fact { subject: subject.to_string(), fact, value, origin: origin.clone(), derived: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_magic_bytes_only() {
        assert_eq!(sniff(b"\x1f\x8b\x08"), Some(Compression::Gzip));
        assert_eq!(sniff(b"BZh91AY"), Some(Compression::Bzip2));
        assert_eq!(sniff(b"BZh is text"), None);
        assert_eq!(sniff(b"\xfd7zXZ\0"), Some(Compression::Xz));
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(&tar), Some(Compression::None));
        assert_eq!(sniff(b"00:00.0 Host bridge: Intel"), None);
    }

    #[test]
    fn paths_and_links_that_leave_are_refused() {
        assert!(safe_relative(Path::new("/etc/passwd")).is_err());
        assert!(safe_relative(Path::new("a/../../b")).is_err());
        assert_eq!(safe_relative(Path::new("./a/b")).unwrap(), Some(PathBuf::from("a/b")));
        assert_eq!(safe_relative(Path::new(".")).unwrap(), None);
        let link = Path::new("n/sys/bus/pci/devices/0000:00:00.0");
        assert!(check_link_lexically(link, Path::new("../../../devices/pci0000:00/0000:00:00.0")).is_ok());
        assert!(check_link_lexically(link, Path::new("../../../../../../etc")).is_err());
        assert!(check_link_lexically(link, Path::new("/sys/devices")).is_err());
    }

    fn archive(entries: usize, size: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(size as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("t/f{i}"), &vec![b'x'; size][..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn caps_on_entries_and_bytes_are_one_line_errors_naming_the_cap() {
        let small = Limits { entries: 10, bytes: 1000 };
        let dir = tempfile::tempdir().unwrap();
        let e = extract("x.tar", &archive(11, 1)[..], dir.path(), small).unwrap_err().to_string();
        assert_eq!(e, "x.tar: has more than 10 entries (the cap for a sysfs tarball)");
        let dir = tempfile::tempdir().unwrap();
        let e = extract("x.tar", &archive(3, 400)[..], dir.path(), small).unwrap_err().to_string();
        assert_eq!(e, "x.tar: holds more than 1000 bytes of files (the cap for a sysfs tarball)");
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(extract("x.tar", &archive(10, 100)[..], dir.path(), small).unwrap().files, 10);
        assert!(!e.contains('\n'));
    }
}
