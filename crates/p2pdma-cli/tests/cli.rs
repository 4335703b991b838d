//! The binary's contract: exit codes, JSON fields, one-line errors on bad input.

mod common;

use common::{p2pdma, ROOT_PORTS, SWITCH};

#[test]
fn check_exit_codes_follow_the_verdict() {
    let (code, out, _) = p2pdma(&["check", "--spec", SWITCH, "nvme-a", "nvme-b", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["map_type"], "bus_addr");
    assert_eq!(v["distance"], 4);
    let c = &v["clients"][0];
    assert_eq!(c["client"], "0000:04:00.0");
    assert_eq!(c["map_type"], "bus_addr");
    assert_eq!(c["common_upstream"], "0000:01:00.0");
    assert!(c["acs_redirect"].as_array().unwrap().is_empty());
    assert!(c["reasons"].as_array().unwrap().len() == 1 && c["fixes"].is_array());

    let (code, out, _) = p2pdma(&["check", "--spec", ROOT_PORTS, "0000:01:00.0", "02:00.0", "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["map_type"], "not_supported");
    assert!(
        v["distance"].is_null()
            && v["clients"][0]["distance"].is_null()
            && v["clients"][0]["common_upstream"].is_null()
    );

    let (code, out, _) = p2pdma(&["check", "--spec", "examples/topologies/iommu-acs.toml", "nvme-a", "nvme-b"]);
    assert_eq!(code, 1);
    assert!(out.contains("pci=disable_acs_redir=0000:00:11.0"), "{out}");
}

#[test]
fn find_and_providers_report_json() {
    let (code, out, _) = p2pdma(&["find", "--spec", "examples/topologies/nested-switches.toml", "nvme-c", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["provider"], "0000:06:00.0");
    assert_eq!(v["candidates"][1]["distance"], 6);
    let (code, out, _) = p2pdma(&["find", "--spec", "examples/topologies/no-provider.toml", "nvme-a", "--json"]);
    assert_eq!(code, 1);
    assert!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["provider"].is_null());
    let (code, out, _) = p2pdma(&["providers", "--spec", SWITCH, "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["size"], 16 << 20);
}

#[test]
fn topo_prints_tree_and_matrix() {
    let (code, out, _) = p2pdma(&["topo", "--spec", SWITCH]);
    assert_eq!(code, 0);
    assert!(out.contains("nvme-a") && out.contains("BUS4") && out.contains("P2P memory 16.0 MiB"), "{out}");
    let (code, out, _) = p2pdma(&["topo", "--spec", SWITCH, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["matrix"]["cells"][0][1]["map_type"], "bus_addr");
}

#[test]
fn snapshot_of_a_spec_analyses_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("s.json");
    let (code, _, _) = p2pdma(&["snapshot", "--spec", ROOT_PORTS, "-o", snap.to_str().unwrap()]);
    assert_eq!(code, 0);
    let a = p2pdma(&["check", "--spec", ROOT_PORTS, "nvme-a", "nvme-b", "--json"]);
    let b = p2pdma(&["check", "--snapshot", snap.to_str().unwrap(), "nvme-a", "nvme-b", "--json"]);
    assert_eq!(a, b);
}

#[test]
fn bad_input_is_one_line_and_exit_two() {
    let dir = tempfile::tempdir().unwrap();
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "[[root_port]\nname=").unwrap();
    let truncated = dir.path().join("t.json");
    std::fs::write(&truncated, "{\"schema\": \"p2pdma-snapshot\", \"version\": 1, \"topo").unwrap();
    let newer = dir.path().join("n.json");
    std::fs::write(&newer, "{\"schema\": \"p2pdma-snapshot\", \"version\": 7}").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["check", "--spec", SWITCH, "nvme-a", "nvme-zz"], "unknown device `nvme-zz`"),
        (vec!["check", "--spec", SWITCH, "nvme-b", "nvme-a"], "not a P2P memory provider"),
        (vec!["check", "--spec", SWITCH, "nvme-a", "sw0.1"], "not a DMA client"),
        (vec!["check", "--spec", SWITCH, "nvme-a", "0000:0g:00.0"], "unknown device"),
        (vec!["topo", "--spec", bad_toml.to_str().unwrap()], "bad.toml: line 1"),
        (vec!["topo", "--spec", "/nonexistent.toml"], "/nonexistent.toml: No such file"),
        (vec!["topo", "--snapshot", truncated.to_str().unwrap()], "t.json: not valid JSON"),
        (vec!["topo", "--snapshot", newer.to_str().unwrap()], "newer than this p2pdma understands"),
        (vec!["topo", "--sysfs-root", "/nonexistent"], "/nonexistent/bus/pci/devices"),
    ];
    for (args, want) in cases {
        let (code, out, err) = p2pdma(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
}

/// `copy` and `bench` on regular files of this machine (host memory; the lab tests cover P2P).
#[test]
fn copy_on_files_verifies_and_refuses_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let (s, d) = (src.to_str().unwrap(), dst.to_str().unwrap());

    let (code, out, err) =
        p2pdma(&["copy", s, d, "--src-offset", "4K", "--length", "20K", "--chunk", "8K", "--verify", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((v["outcome"].as_str(), v["bytes"].as_u64()), (Some("copied"), Some(20480)));
    assert_eq!(v["route"]["memory"], "host");
    assert_eq!(v["verify"]["equal"], true);
    assert_eq!(std::fs::read(&dst).unwrap(), &data[4096..4096 + 20480], "a new file holds exactly the range");

    // Bad input: exit 2 with one line naming the file and the rule.
    for (args, needle) in [
        (vec!["--src-offset", "100"], "not a multiple of its logical block size"),
        (vec!["--length", "2M"], "run past its end"),
        (vec!["--chunk", "1000"], "--chunk 1000 must be a positive multiple"),
        (vec!["--via", "0000:99:00.0"], "unknown device"),
    ] {
        let mut all = vec!["copy", s, d];
        all.extend(args);
        let (code, _, err) = p2pdma(&all);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(needle) && err.lines().count() == 1, "{err}");
    }
    let (code, _, err) = p2pdma(&["copy", s, s, "--dst-offset", "4K"]);
    assert!(code == 2 && err.contains("are the same storage"), "{err}");
    let (code, _, err) = p2pdma(&["copy", "/nonexistent", d]);
    assert!(code == 2 && err.contains("/nonexistent"), "{err}");

    // No P2P memory here: --require-p2p refuses (exit 1) and writes nothing.
    std::fs::remove_file(&dst).unwrap();
    let (code, out, _) = p2pdma(&["copy", s, d, "--require-p2p", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((code, v["outcome"].as_str()), (1, Some("refused")));
    assert!(!dst.exists(), "a refused copy creates nothing");

    let (code, out, err) =
        p2pdma(&["bench", s, "--ops", "read", "--depth", "1,4", "--chunk", "64K", "--size", "1M", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs
        .iter()
        .all(|r| r["bytes"] == 1 << 20 && r["read_p99_us"].as_f64().unwrap() >= r["read_p50_us"].as_f64().unwrap()));
    let (code, _, err) = p2pdma(&["bench", s, "--ops", "write"]);
    assert!(code == 2 && err.contains("need --dst"), "{err}");
}

/// Runs the binary in `dir`: exit status, stdout, stderr.
fn p2pdma_in(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_p2pdma")).args(args).current_dir(dir).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Issue 12: operands that cannot be mistaken, requests that create nothing when refused,
/// one writer per file, the route before the first byte, `setup_seconds`.
#[test]
fn copy_operands_ranges_and_locks() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.path().join("src.bin"), &data).unwrap();

    // Bare words: an existing file, and a new destination file, both in the current directory.
    let (code, out, err) = p2pdma_in(dir.path(), &["copy", "src.bin", "dst.bin", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(dir.path().join("dst.bin")).unwrap(), data);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (setup, seconds) = (v["setup_seconds"].as_f64().unwrap(), v["seconds"].as_f64().unwrap());
    assert!(setup > 0.0 && seconds > 0.0, "{out}");

    // Text output says the route before the outcome.
    let (code, out, err) = p2pdma_in(dir.path(), &["copy", "src.bin", "dst2.bin"]);
    assert_eq!(code, 0, "{err}");
    let (path, copied) = (out.find("path: host memory").unwrap(), out.find("copied 1048576 bytes").unwrap());
    assert!(path < copied, "{out}");

    // A file named like a device of this machine (a PCI address) is ambiguous: exit 2,
    // both spellings named, nothing written.
    if let Some(bdf) = std::fs::read_dir("/sys/bus/pci/devices").ok().and_then(|mut d| d.next()).and_then(|e| e.ok()) {
        let name = bdf.file_name().to_string_lossy().into_owned();
        std::fs::write(dir.path().join(&name), b"").unwrap();
        let (code, _, err) = p2pdma_in(dir.path(), &["copy", "src.bin", &name]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("ambiguous") && err.contains(&format!("`./{name}`")), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert_eq!(std::fs::metadata(dir.path().join(&name)).unwrap().len(), 0, "nothing written");
    }
    let (code, _, err) = p2pdma_in(dir.path(), &["copy", "no-such-source", "x.bin"]);
    assert!(code == 2 && err.contains("no such file here and no such device"), "{err}");
    assert!(!dir.path().join("x.bin").exists());

    // Offsets far past an end, unaligned or overflowing requests: exit 2, nothing created.
    for args in [
        vec!["--src-offset", "1G"],
        vec!["--dst-offset", "1G"],
        vec!["--dst-offset", "100"],
        vec!["--length", "1000"],
        vec!["--length", "0"],
        vec!["--depth", "0"],
        vec!["--chunk", "4097"],
    ] {
        let mut all = vec!["copy", "src.bin", "new.bin"];
        all.extend(&args);
        let (code, _, err) = p2pdma_in(dir.path(), &all);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(!dir.path().join("new.bin").exists(), "{args:?} created the destination");
    }
    // An existing destination file may not get a hole either.
    let (code, _, err) = p2pdma_in(dir.path(), &["copy", "src.bin", "dst.bin", "--dst-offset", "2M"]);
    assert!(code == 2 && err.contains("hole"), "{err}");
}

/// A second writer of the same file is refused while the first copies; SIGTERM during a
/// copy stops it with exit 143, the outcome `interrupted` and a destination prefix equal to
/// the source.
#[test]
fn copy_is_locked_and_interruptible() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let len = 128usize << 20;
    let src = dir.path().join("src.bin");
    let data: Vec<u8> = (0..len / 4096).flat_map(|i| [(i % 251) as u8; 4096]).collect();
    std::fs::write(&src, &data).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_p2pdma"))
        .args(["copy", "src.bin", "dst.bin", "--sync", "--chunk", "4K"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The route is printed before the first byte: the copy is under way once it is here.
    let route = lines.by_ref().map(|l| l.unwrap()).find(|l| l.starts_with("path: ")).expect("the route first");
    assert_eq!(route, "path: host memory");
    let (code, out, err) = p2pdma_in(dir.path(), &["copy", "src.bin", "dst.bin", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    assert_eq!((code, v["outcome"].as_str()), (1, Some("refused")), "{out}{err}");
    assert!(v["refused"][0].as_str().unwrap().contains("another writer holds it"), "{out}");

    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{rest:?}");
    let text = rest.join("\n");
    assert!(text.contains("INTERRUPTED after") && text.contains("stopped by SIGTERM"), "{text}");
    let written: u64 = text
        .split("destination written up to offset ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(written < len as u64, "interrupted before the end: {text}");
    let dst = std::fs::read(dir.path().join("dst.bin")).unwrap();
    assert_eq!(&dst[..written as usize], &data[..written as usize], "the written prefix is the source's");
}

/// SIGTERM during `bench`: the run under way drains and is marked, later runs are not
/// started, exit 143 with the signal in the JSON.
#[test]
fn bench_is_interruptible() {
    let dir = tempfile::tempdir().unwrap();
    let len = 64usize << 20;
    std::fs::write(dir.path().join("src.bin"), vec![7u8; len]).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_p2pdma"))
        .args(["bench", "src.bin", "--dst", "dst.bin", "--ops", "read,write,copy", "--depth", "1,2"])
        .args(["--chunk", "4K", "--size", "64M", "--json"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let kill = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(143), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["signal"], "SIGTERM", "{text}");
    let runs = v["runs"].as_array().unwrap();
    assert!(runs.len() < 6, "later runs were not started: {text}");
}
