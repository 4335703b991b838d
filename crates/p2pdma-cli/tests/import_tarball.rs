//! `p2pdma import` of a sysfs tarball (hwloc-gather-topology's `NAME.tar.bz2`): plain, gzip
//! and bzip2 archives of the lab's real sysfs trees read exactly like the trees themselves;
//! a 64-byte `config` (gathered without root) leaves ACS unknown and `check` exits 3;
//! hostile archives are one-line errors, exit 2, and write nothing outside the temp dir.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::p2pdma;
use p2pdma_core::Topology;
use p2pdma_host::import::tarball::{self, Compression};
use p2pdma_host::machine;
use p2pdma_host::roots::Roots;

const FIXTURES: [&str; 2] = ["switch", "multifunction-iommu"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../p2pdma-lab/fixtures").join(name)
}

/// `dir`'s `sys` and `proc` under `top/`, as hwloc-gather-topology lays them out.
fn tar_of(dir: &Path, top: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    for sub in ["sys", "proc"] {
        b.append_dir_all(format!("{top}/{sub}"), dir.join(sub)).unwrap();
    }
    b.into_inner().unwrap()
}

fn compress(plain: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => plain.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        }
        Compression::Bzip2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        }
        Compression::Xz => unreachable!("not built by these tests"),
    }
}

fn live(dir: &Path) -> Topology {
    machine::read(&Roots { sys: dir.join("sys"), proc: dir.join("proc") }, None).unwrap()
}

#[test]
fn plain_gzip_and_bzip2_archives_read_like_the_tree() {
    for name in FIXTURES {
        let dir = fixture(name);
        let want = live(&dir);
        let plain = tar_of(&dir, "gather");
        for c in [Compression::None, Compression::Gzip, Compression::Bzip2] {
            let bytes = compress(&plain, c);
            assert_eq!(tarball::sniff(&bytes), Some(c), "{name} {c:?}");
            let got = tarball::read("t.tar", &bytes, c).unwrap();
            let t = &got.topology;
            assert_eq!(t.devices.len(), want.devices.len(), "{name} {c:?}");
            for (a, b) in want.devices.iter().zip(&t.devices) {
                assert_eq!(
                    (a.bdf, a.upstream, a.acs, a.port_type, &a.bars, &a.p2pmem, a.numa_node),
                    (b.bdf, b.upstream, b.acs, b.port_type, &b.bars, &b.p2pmem, b.numa_node),
                    "{name} {c:?}"
                );
            }
            assert_eq!(t.host_bridges, want.host_bridges);
            assert_eq!(t.iommu_groups, want.iommu_groups, "{name} {c:?}");
            assert_eq!((&t.machine.cpu_vendor, &t.machine.cmdline), (&want.machine.cpu_vendor, &want.machine.cmdline));
            assert_eq!(got.report.devices, want.devices.len());
            assert!(got.report.facts.iter().all(|f| f.origin.input == "t.tar"));
        }
    }
}

#[test]
fn import_of_a_tar_bz2_writes_a_snapshot_check_reads() {
    let work = tempfile::tempdir().unwrap();
    let tb = work.path().join("node1.tar.bz2");
    std::fs::write(&tb, compress(&tar_of(&fixture("switch"), "node1"), Compression::Bzip2)).unwrap();
    let snap = work.path().join("m.json");
    let (code, out, err) = p2pdma(&["import", tb.to_str().unwrap(), "-o", snap.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("node1.tar.bz2: sysfs tarball, 179 entries (140 files)"), "{out}");
    assert!(out.contains("machine: 11 devices, 1 host bridge(s) (pci0000:00)"), "{out}");
    let (code, out, err) = p2pdma(&["check", "--snapshot", snap.to_str().unwrap(), "03:00.0", "04:00.0"]);
    assert_eq!(code, 0, "{out}{err}");
    // Mixed with another input: one line, exit 2.
    let dmesg = fixture("switch").join("dmesg.txt");
    let (code, out, err) = p2pdma(&["import", tb.to_str().unwrap(), dmesg.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (2, ""), "{err}");
    assert!(err.contains("a sysfs tarball is read alone") && err.trim().lines().count() == 1, "{err}");
}

/// Copies `src` to `dst` keeping symlinks, cutting every `config` to 64 bytes as a read
/// without root gives.
fn copy_cut(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let (from, to) = (e.path(), dst.join(e.file_name()));
        let t = std::fs::symlink_metadata(&from).unwrap().file_type();
        if t.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from).unwrap(), &to).unwrap();
        } else if t.is_dir() {
            copy_cut(&from, &to);
        } else {
            let mut bytes = std::fs::read(&from).unwrap();
            if e.file_name() == "config" {
                bytes.truncate(64);
            }
            std::fs::write(&to, bytes).unwrap();
        }
    }
}

#[test]
fn a_64_byte_config_leaves_acs_unknown_and_check_exit_3() {
    let work = tempfile::tempdir().unwrap();
    let cut = work.path().join("cut");
    copy_cut(&fixture("switch"), &cut);
    let tb = work.path().join("user.tar.gz");
    std::fs::write(&tb, compress(&tar_of(&cut, "user"), Compression::Gzip)).unwrap();
    let snap = work.path().join("m.json");
    let (code, out, err) = p2pdma(&["import", tb.to_str().unwrap(), "-o", snap.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["unknown"].as_array().unwrap().iter().any(|u| u["fact"] == "acs"), "{v}");
    let (code, out, err) = p2pdma(&["check", "--snapshot", snap.to_str().unwrap(), "03:00.0", "04:00.0"]);
    assert_eq!(code, 3, "{out}{err}");
}

/// A tar whose one entry has the raw `path` (and, for a link, `link`), past the tar crate's
/// own checks, as a hostile archive would be.
fn raw_entry(b: &mut tar::Builder<Vec<u8>>, path: &str, link: Option<&str>) {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_mode(0o644);
    match link {
        Some(l) => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.as_gnu_mut().unwrap().linkname[..l.len()].copy_from_slice(l.as_bytes());
            h.set_size(0);
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        }
        None => {
            h.set_size(4);
            h.set_cksum();
            b.append(&h, &b"evil"[..]).unwrap();
        }
    }
}

/// A raw entry: its path, and its target when it is a symlink.
type Entry = (String, Option<&'static str>);

#[test]
fn hostile_archives_are_one_line_exit_2_and_write_nothing_outside() {
    let work = tempfile::tempdir().unwrap();
    let tmp = std::env::temp_dir();
    let unique = format!("p2pdma-escaped-{}", std::process::id());
    let abs = work.path().join("abs-escaped");
    let cases: Vec<(&str, Vec<Entry>, &str)> = vec![
        ("dotdot", vec![(format!("../{unique}"), None)], "has a `..` component"),
        ("absolute", vec![(abs.display().to_string(), None)], "has an absolute path"),
        ("link-out", vec![("g/sys/x".into(), Some("../../../../etc"))], "points outside the archive"),
        ("link-abs", vec![("g/sys/x".into(), Some("/etc"))], "points outside the archive"),
        // Each link stays inside by its words; resolved, the second leaves.
        ("link-chain", vec![("g/a".into(), Some("..")), ("g/b".into(), Some("a/.."))], "leads outside the archive"),
        ("not-sysfs", vec![("g/readme".into(), None)], "holds no sysfs tree"),
    ];
    for (what, entries, says) in cases {
        let mut b = tar::Builder::new(Vec::new());
        for (p, l) in &entries {
            raw_entry(&mut b, p, *l);
        }
        let f = work.path().join(format!("{what}.tar"));
        std::fs::write(&f, b.into_inner().unwrap()).unwrap();
        let (code, out, err) = p2pdma(&["import", f.to_str().unwrap()]);
        assert_eq!((code, out.as_str()), (2, ""), "{what}: {err}");
        assert!(err.contains(says) && err.trim().lines().count() == 1, "{what}: {err}");
    }
    assert!(!tmp.join(&unique).exists() && !abs.exists());
    // Not a tar at all behind a gzip header: one line too.
    let f = work.path().join("junk.gz");
    std::fs::write(&f, compress(b"just text", Compression::Gzip)).unwrap();
    let (code, _, err) = p2pdma(&["import", f.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn a_bare_sys_tree_reads_without_proc_and_a_kernel_image_in_the_archive_is_not_read() {
    let dir = fixture("switch");
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", dir.join("sys")).unwrap();
    let got = tarball::read("bare.tar", &b.into_inner().unwrap(), Compression::None).unwrap();
    assert_eq!(got.topology.devices.len(), 11);
    assert_eq!(got.topology.machine.cpu_vendor, None);
    assert!(got.report.unknown.iter().any(|u| u.subject == "machine" && u.fact == "cpu_vendor"));
    // A boot/ beside sys/ and proc/ is dropped before the read: no image is opened.
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    for sub in ["sys", "proc"] {
        b.append_dir_all(format!("g/{sub}"), dir.join(sub)).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    b.append_data(&mut h, "g/boot/vmlinuz-7.2.13+deb14-amd64", &b"junk"[..]).unwrap();
    let got = tarball::read("boot.tar", &b.into_inner().unwrap(), Compression::None).unwrap();
    assert!(got.topology.machine.kernel.image_whitelist.is_none());
    assert!(
        got.topology.machine.kernel.warnings.iter().all(|w| !w.contains("vmlinuz")),
        "{:?}",
        got.topology.machine.kernel.warnings
    );
}
