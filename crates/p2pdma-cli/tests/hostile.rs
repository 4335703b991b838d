//! Hostile input, as a careless or unlucky user gives it: empty, binary and truncated
//! files, directories and character devices where a file belongs, the wrong JSON, huge and
//! negative numbers, outputs that cannot be written, a closed or full standard output.
//! Every case: the documented exit code, one line on stderr (no panic, no Rust Debug form,
//! no cause said twice) and nothing created or changed. `copy`/`bench` internals and
//! `nvmet` apply have their own suites; here their flags are tried at the argument level.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{p2pdma, ROOT_PORTS, SWITCH};

/// A scratch directory holding one file of each hostile kind.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, data: &[u8]| std::fs::write(dir.path().join(name), data).unwrap();
        w("empty", b"");
        w("blank", b"  \n\n");
        w("binary", &[0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0, 0, 0x80, 0x81]);
        w("truncated.json", br#"{"schema": "p2pdma-snapshot", "version": 1, "topology": {"machine": {"#);
        w("truncated.toml", b"[[root_port]]\nname = \"rp0\"\n[[endpoint]]\nname = \"nvme-a\"\nkind = ");
        w("array.json", b"[1, 2, 3]\n");
        w("report.html", b"<!doctype html><html><body>report</body></html>\n");
        w("other-schema.json", br#"{"schema": "p2pdma-report", "version": 1}"#);
        w("negative-version.json", br#"{"schema": "p2pdma-snapshot", "version": -1}"#);
        std::fs::create_dir(dir.path().join("a-directory")).unwrap();
        Files { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

/// Every file under `dir` with its content: compared before and after to prove nothing
/// was created or changed.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.insert(p.clone(), Vec::new());
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The contract for a refused command: `code`, nothing on stdout, one line on stderr that
/// contains `needle`, in the words of a person, not of Rust.
fn refused(args: &[&str], code: i32, needle: &str) {
    refused_saying(args, code, &[needle]);
}

fn refused_saying(args: &[&str], code: i32, needles: &[&str]) {
    let (got, out, err) = p2pdma(args);
    assert_eq!(got, code, "{args:?}: {err}");
    assert!(out.is_empty(), "{args:?} printed {out}");
    assert_one_line(args, &err);
    for needle in needles {
        assert!(err.contains(needle), "{args:?}: want {needle:?} in {err}");
    }
}

fn assert_one_line(args: &[&str], err: &str) {
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("p2pdma: "), "{args:?}: {err}");
    for rust in ["panicked", "RUST_BACKTRACE", "Some(", "None", "Os {", "kind:", "Error {", "CharacterDevice"] {
        assert!(!err.contains(rust), "{args:?}: Rust internals ({rust}) in {err}");
    }
    // No cause said twice ("... (os error 2): No such file or directory (os error 2)").
    let parts: Vec<&str> = err.trim_end().split(": ").collect();
    for (i, a) in parts.iter().enumerate() {
        assert!(parts[i + 1..].iter().all(|b| b != a) || a.len() < 8, "{args:?}: `{a}` twice in {err}");
    }
}

/// A clap usage error: exit 2 before any work, the value named, no panic.
fn rejected_flag(args: &[&str], needle: &str) {
    let (code, out, err) = p2pdma(args);
    assert_eq!(code, 2, "{args:?}: {err}");
    assert!(out.is_empty(), "{args:?}");
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: ") && first.contains(needle), "{args:?}: want {needle:?} in {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn wrong_files_as_topology_files_and_snapshots_are_one_line_exit_two() {
    let f = Files::new();
    let before = tree(f.dir.path());
    let snapshot = f.dir.path().join("good.json");
    let (code, _, err) = p2pdma(&["snapshot", "--spec", SWITCH, "-o", snapshot.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let snapshot = snapshot.to_str().unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("--spec", f.path("empty"), "empty: is empty"),
        ("--spec", f.path("blank"), "blank: is empty"),
        ("--spec", f.path("binary"), "binary: is not a text file"),
        ("--spec", f.path("truncated.toml"), "truncated.toml: line "),
        ("--spec", f.path("a-directory"), "a-directory: is a directory, not a file"),
        ("--spec", "/dev/null".into(), "/dev/null: is a character device, not a file"),
        ("--spec", "/dev/zero".into(), "/dev/zero: is a character device, not a file"),
        ("--spec", f.path("missing.toml"), "missing.toml: No such file or directory (os error 2)"),
        ("--spec", snapshot.into(), "good.json: line 1"),
        ("--snapshot", f.path("empty"), "empty: is empty"),
        ("--snapshot", f.path("binary"), "binary: is not a text file"),
        ("--snapshot", f.path("truncated.json"), "truncated.json: not valid JSON"),
        ("--snapshot", f.path("a-directory"), "a-directory: is a directory, not a file"),
        ("--snapshot", "/dev/zero".into(), "/dev/zero: is a character device, not a file"),
        ("--snapshot", f.path("missing.json"), "missing.json: No such file or directory (os error 2)"),
        ("--snapshot", f.path("array.json"), "not a p2pdma snapshot (JSON without a `schema` field"),
        ("--snapshot", f.path("report.html"), "report.html: not valid JSON"),
        ("--snapshot", f.path("other-schema.json"), "its schema is `p2pdma-report`"),
        ("--snapshot", f.path("negative-version.json"), "no numeric `version`"),
        ("--snapshot", SWITCH.into(), "switch.toml: not valid JSON"),
        ("--names", f.path("binary"), "binary: is not a text file"),
    ];
    for (flag, path, needle) in &cases {
        for command in [&["topo"][..], &["providers"], &["check", "nvme-a", "nvme-b"], &["find", "nvme-b"]] {
            let mut args = vec![command[0], flag, path];
            args.extend(&command[1..]);
            refused(&args, 2, needle);
        }
    }
    // Huge and negative numbers inside the files.
    let spec = |name: &str, body: &str| {
        let p = f.dir.path().join(name);
        std::fs::write(&p, format!("[[root_port]]\nname = \"rp0\"\n{body}\n")).unwrap();
        p.to_str().unwrap().to_string()
    };
    let nvme = "[[endpoint]]\nname = \"a\"\nkind = \"nvme\"\nparent = \"rp0\"\n";
    let numbers = [
        (spec("slot.toml", "slot = 999"), "slot.toml: line 3: invalid value: integer `999`"),
        (spec("huge.toml", &format!("{nvme}cmb_mib = 99999999999999999999999")), "huge.toml: line 7: number too large"),
        (spec("negative.toml", &format!("{nvme}cmb_mib = -4")), "negative.toml: line 7: invalid value: integer `-4`"),
    ];
    for (path, needle) in &numbers {
        refused(&["topo", "--spec", path], 2, needle);
        std::fs::remove_file(path).unwrap();
    }
    let good: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(snapshot).unwrap()).unwrap();
    let edited = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        edit(&mut v);
        let p = f.dir.path().join(name);
        std::fs::write(&p, serde_json::to_string_pretty(&v).unwrap()).unwrap();
        p.to_str().unwrap().to_string()
    };
    let snapshots = [
        (
            edited("bdf.json", &|v| v["topology"]["devices"][1]["bdf"] = "0000:999:00.0".into()),
            "`0000:999:00.0` is not a PCI address",
        ),
        (
            edited("negative.json", &|v| v["topology"]["devices"][1]["vendor"] = (-1).into()),
            "invalid value: integer `-1`",
        ),
        (
            edited("huge.json", &|v| v["topology"]["devices"][1]["vendor"] = 1e300.into()),
            "invalid type: floating point",
        ),
    ];
    for (path, needle) in &snapshots {
        refused_saying(&["topo", "--snapshot", path], 2, &["malformed snapshot: ", needle, " at line "]);
        std::fs::remove_file(path).unwrap();
    }
    let newer = edited("newer.json", &|v| v["version"] = 99.into());
    refused(&["topo", "--snapshot", &newer], 2, "version 99 is newer than this p2pdma understands");
    std::fs::remove_file(&newer).unwrap();
    // `topo --json` output is JSON, but not a snapshot.
    let (_, topo_json, _) = p2pdma(&["topo", "--spec", SWITCH, "--json"]);
    let topo_json_file = f.dir.path().join("topo.json");
    std::fs::write(&topo_json_file, topo_json).unwrap();
    refused(&["topo", "--snapshot", topo_json_file.to_str().unwrap()], 2, "without a `schema` field");
    std::fs::remove_file(&topo_json_file).unwrap();
    std::fs::remove_file(snapshot).unwrap();
    assert_eq!(tree(f.dir.path()), before, "reading hostile files changed them");
}

#[test]
fn every_reading_command_refuses_a_bad_source_the_same_way() {
    let f = Files::new();
    let out = f.dir.path().join("out");
    let out = out.to_str().unwrap();
    let bin = f.path("binary");
    let commands: Vec<Vec<&str>> = vec![
        vec!["topo", "--spec", &bin],
        vec!["topo", "--spec", &bin, "--json"],
        vec!["topo", "--spec", &bin, "--svg", out],
        vec!["check", "--spec", &bin, "a", "b", "--json"],
        vec!["find", "--spec", &bin, "a"],
        vec!["providers", "--spec", &bin, "--json"],
        vec!["resolve", "--spec", &bin, "a"],
        vec!["snapshot", "--spec", &bin, "-o", out],
        vec!["report", "--spec", &bin, "-o", out],
        vec!["lab", "qemu-args", &bin],
        vec![
            "nvmet",
            "export",
            "--spec",
            &bin,
            "--dry-run",
            "--nqn",
            "nqn.2026-11.io.p2pdma:t",
            "--ns",
            "nvme-b",
            "--transport",
            "loop",
        ],
    ];
    for args in &commands {
        refused(args, 2, "binary: is not a text file");
    }
    assert!(!Path::new(out).exists(), "a failed command created its output");
}

#[test]
fn absent_and_malformed_addresses_are_told_apart() {
    for command in [&["check", "nvme-a"][..], &["find"], &["resolve"]] {
        let run = |name: &str, needle: &str| {
            let mut args = vec![command[0], "--spec", SWITCH];
            args.extend(&command[1..]);
            args.push(name);
            refused(&args, 2, needle);
        };
        run("00:1f.7", "no PCI device at 0000:00:1f.7 in this topology");
        run("0000:99:00.0", "no PCI device at 0000:99:00.0");
        run("0000:0g:00.0", "not a valid PCI address");
        run("00:20.0", "not a valid PCI address");
        run("03:00.8", "not a valid PCI address");
        run("nvme-zz", "no topology name or device name `nvme-zz`");
    }
    refused(&["check", "--spec", SWITCH, "0000:77:00.0", "nvme-b"], 2, "no PCI device at 0000:77:00.0");
}

#[test]
fn unwritable_outputs_create_nothing_and_keep_what_was_there() {
    let f = Files::new();
    let existing = f.dir.path().join("kept.json");
    std::fs::write(&existing, "the old snapshot\n").unwrap();
    let before = tree(f.dir.path());
    let missing_dir = f.path("no/such/dir/out");
    let under_a_file = format!("{}/out", f.path("empty"));
    let dir = f.path("a-directory");
    let truncated = f.path("truncated.toml");
    for (flag_args, what) in [
        (vec!["snapshot", "--spec", SWITCH, "-o"], "the snapshot"),
        (vec!["report", "--spec", SWITCH, "-o"], "the report"),
        (vec!["topo", "--spec", SWITCH, "--svg"], "the SVG"),
    ] {
        for (target, needle) in [
            (missing_dir.as_str(), "does not exist"),
            (under_a_file.as_str(), "empty is not a directory"),
            (dir.as_str(), "it is a directory"),
            ("/dev/full", "No space left on device"),
        ] {
            let mut args = flag_args.clone();
            args.push(target);
            refused_saying(&args, 2, &[&format!("cannot write {what} to {target}: "), needle]);
        }
        // A bad source leaves an existing output as it was.
        let mut args = vec![flag_args[0], "--spec", &truncated];
        args.extend(&flag_args[3..]);
        args.push(existing.to_str().unwrap());
        refused(&args, 2, "truncated.toml");
    }
    assert_eq!(tree(f.dir.path()), before, "a failed write left something behind");
}

#[test]
fn output_files_are_replaced_whole_and_keep_their_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let f = Files::new();
    let out = f.dir.path().join("snap.json");
    std::fs::write(&out, "old").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, _, err) = p2pdma(&["snapshot", "--spec", SWITCH, "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read_to_string(&out).unwrap().contains("\"p2pdma-snapshot\""));
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o640);
    let names: Vec<String> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(names.is_empty(), "temporary files left: {names:?}");
    // A link is followed: the file it names is replaced, the link stays.
    let link = f.dir.path().join("link.svg");
    let target = f.dir.path().join("target.svg");
    std::fs::write(&target, "old").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let (code, _, err) = p2pdma(&["topo", "--spec", SWITCH, "--svg", link.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(std::fs::read_to_string(&target).unwrap().starts_with("<svg"));
    // A device stays a device.
    let (code, _, err) = p2pdma(&["report", "--spec", SWITCH, "-o", "/dev/null"]);
    assert_eq!(code, 0, "{err}");
}

/// Runs the binary with standard output connected to `stdout`.
fn run_with_stdout(args: &[&str], stdout: Stdio) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_p2pdma"))
        .args(args)
        .current_dir("../..")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_full_disk_is_one_line() {
    let commands: Vec<Vec<&str>> = vec![
        vec!["topo", "--spec", SWITCH],
        vec!["topo", "--spec", SWITCH, "--json"],
        vec!["topo", "--spec", SWITCH, "--pairs", "all"],
        vec!["topo", "--spec", SWITCH, "--svg", "-"],
        vec!["check", "--spec", SWITCH, "nvme-a", "nvme-b"],
        vec!["find", "--spec", SWITCH, "nvme-b", "--json"],
        vec!["providers", "--spec", SWITCH],
        vec!["resolve", "--spec", SWITCH, "nvme-a"],
        vec!["snapshot", "--spec", SWITCH, "-o", "-"],
        vec!["report", "--spec", SWITCH, "-o", "-"],
        vec!["lab", "qemu-args", ROOT_PORTS],
        vec!["addr", "--spec", SWITCH, "nvme-a", "nvme-b"],
        vec!["diff", SWITCH, ROOT_PORTS],
        vec!["metrics", "--spec", SWITCH],
        vec!["completions", "bash"],
    ];
    for args in &commands {
        // The reader is gone before the first byte: every write is EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let (code, err) = run_with_stdout(args, Stdio::from(writer));
        assert_eq!(code, 141, "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: a closed pipe is not worth a word: {err}");

        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let (code, err) = run_with_stdout(args, Stdio::from(full));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_one_line(args, &err);
        assert!(err.contains("cannot write to standard output: No space left on device"), "{args:?}: {err}");
    }
}

#[test]
fn sizes_out_of_range_are_refused_before_any_work() {
    let f = Files::new();
    let dst = f.path("dst");
    let src = f.path("binary");
    let before = tree(f.dir.path());
    for (value, needle) in [
        ("99999999999G", "is too large: more than 16 EiB"),
        ("18446744073709551616", "is too large"),
        ("1e30", "is too large"),
        ("-1", "is negative"),
        ("-4K", "is negative"),
        ("12Q", "is not a size"),
        ("4K4", "is not a size"),
        ("0x1000", "is not a size"),
        ("", "an empty size"),
    ] {
        let eq = |flag: &str| format!("{flag}={value}");
        rejected_flag(&["alloc", "nvme-a", &format!("--offset={value}"), "4K"], needle);
        rejected_flag(&["alloc", "nvme-a", "--", value], needle);
        for flag in ["--length", "--src-offset", "--dst-offset", "--chunk"] {
            rejected_flag(&["copy", &src, &dst, &eq(flag)], needle);
        }
        rejected_flag(&["bench", &src, &eq("--size")], needle);
        rejected_flag(&["bench", &src, &eq("--chunk")], needle);
    }
    assert_eq!(tree(f.dir.path()), before, "a refused size created or changed a file");
}

#[test]
fn alloc_acts_on_this_machine_only() {
    refused(&["alloc", "--spec", SWITCH, "nvme-a", "4K"], 2, "alloc acts on this machine's devices");
    refused(&["alloc", "--snapshot", "/nonexistent", "nvme-a", "4K"], 2, "alloc acts on this machine's devices");
}

#[test]
fn a_sysfs_root_that_is_not_a_tree_is_one_line() {
    let f = Files::new();
    refused(&["topo", "--sysfs-root", "/dev/null"], 2, "/dev/null/bus/pci/devices: Not a directory");
    refused(&["topo", "--sysfs-root", &f.path("a-directory")], 2, "a-directory/bus/pci/devices");
    refused(&["topo", "--sysfs-root", &f.path("missing")], 2, "missing/bus/pci/devices: No such file");
    refused(&["topo", "--proc-root", "/dev/null"], 2, "--proc-root /dev/null: is not a directory");
    refused(&["topo", "--proc-root", &f.path("missing")], 2, "missing: does not exist");
}

#[test]
fn addr_targets_name_what_is_wrong_with_them() {
    for (target, needle) in [
        ("nvme-b:7", "nvme-b:7: BAR `7` is not 0 to 5"),
        ("nvme-b:-1", "BAR `-1` is not 0 to 5"),
        ("nvme-b:bar1", "BAR `bar1` is not 0 to 5"),
        ("nvme-b:", "BAR `` is not 0 to 5"),
        ("nvme-b:99999999999999999999", "is not 0 to 5"),
        ("nvme-b:2+-5", "offset `-5` is negative"),
        ("nvme-b:2+99999999999G", "offset `99999999999G` is too large: more than 16 EiB"),
        ("nvme-b+0xfffffffffffffffffff", "is too large"),
        ("nvme-b+lots", "offset `lots` is not a number"),
        ("nvme-b+0x100000000000", "is past the BAR's end"),
        (":1", "`:1` names no device"),
        ("", "`` names no device"),
        ("absent:1", "unknown device `absent`"),
        ("00:1f.7:1", "no PCI device at 0000:00:1f.7"),
    ] {
        refused(&["addr", "--spec", SWITCH, "nvme-a", target], 2, needle);
    }
}

#[test]
fn diff_metrics_and_kernel_flags_refuse_bad_input_in_one_line() {
    let f = Files::new();
    let before = tree(f.dir.path());
    for (path, needle) in [
        (f.path("missing.json"), "missing.json: No such file or directory"),
        (f.path("report.html"), "report.html: HTML or XML (a report?), not a snapshot or a topology file"),
        (f.path("binary"), "binary: is not a text file"),
        (f.path("empty"), "empty: is empty"),
        (f.path("truncated.json"), "truncated.json: not valid JSON"),
        (f.path("truncated.toml"), "truncated.toml: line "),
        (f.path("array.json"), "not a p2pdma snapshot"),
        (f.path("a-directory"), "a-directory: is a directory, not a file"),
        ("/dev/zero".into(), "/dev/zero: is a character device, not a file"),
    ] {
        refused(&["diff", SWITCH, &path], 2, needle);
        refused(&["diff", &path, SWITCH], 2, needle);
    }
    // The same machine as a topology file and as its snapshot: no difference, whatever
    // the files are called (told apart by content).
    let snapshot = f.dir.path().join("s.toml");
    assert_eq!(p2pdma(&["snapshot", "--spec", SWITCH, "-o", snapshot.to_str().unwrap()]).0, 0);
    assert_eq!(p2pdma(&["diff", SWITCH, snapshot.to_str().unwrap()]).0, 0);
    std::fs::remove_file(&snapshot).unwrap();
    for version in ["", "6", "abc", "6.6 extra", "99999999999999999999.1"] {
        refused(&["topo", "--spec", SWITCH, "--kernel", version], 2, "is not a kernel release");
    }
    refused(&["topo", "--spec", SWITCH, "--class", "bogus"], 2, "--class: unknown device class `bogus`");
    refused(&["topo", "--spec", SWITCH, "--class", "nvme,,"], 2, "unknown device class ``");
    refused(&["topo", "--spec", SWITCH, "--device", "absent"], 2, "unknown device `absent`");
    refused(&["topo", "--spec", SWITCH, "--device", "00:1f.7"], 2, "no PCI device at 0000:00:1f.7");
    refused(&["find", "--spec", SWITCH, "--any-bar", "absent"], 2, "unknown device `absent`");
    for (target, needle) in [
        (f.path("no/such/x.prom"), "does not exist"),
        (f.path("a-directory"), "it is a directory"),
        ("/dev/full".into(), "No space left on device"),
    ] {
        refused_saying(&["metrics", "--spec", SWITCH, "-o", &target], 2, &["cannot write the metrics to ", needle]);
    }
    // Man pages go into a directory: not over a file or a device, not below a file.
    for (dir, needle) in [
        (f.path("empty"), "empty: it is not a directory"),
        ("/dev/null".into(), "/dev/null: it is not a directory"),
        (format!("{}/man", f.path("empty")), "Not a directory"),
    ] {
        refused(&["manpages", &dir], 2, needle);
    }
    assert_eq!(tree(f.dir.path()), before, "a refused command created or changed a file");
}

#[test]
fn nvmet_save_and_restore_refuse_bad_files_and_touch_nothing() {
    let f = Files::new();
    let cfs = tempfile::tempdir().unwrap();
    std::fs::create_dir(cfs.path().join("nvmet")).unwrap();
    let root = cfs.path().to_str().unwrap();
    let before = (tree(f.dir.path()), tree(cfs.path()));
    for (target, needle) in [
        ("/dev/full".to_string(), "No space left on device"),
        (f.path("no/such/config.json"), "does not exist"),
        (f.path("a-directory"), "it is a directory"),
    ] {
        refused_saying(
            &["nvmet", "save", "--configfs-root", root, &target],
            2,
            &["cannot write the nvmet configuration to ", needle],
        );
    }
    for (file, needle) in [
        ("/dev/zero".to_string(), "/dev/zero: is a character device, not a file"),
        (f.path("a-directory"), "a-directory: is a directory, not a file"),
        (f.path("binary"), "binary: is not a text file"),
        (f.path("empty"), "empty: is empty"),
        (f.path("truncated.json"), "truncated.json: not JSON"),
        (f.path("array.json"), "not an nvmetcli config"),
        (f.path("missing.json"), "missing.json: No such file or directory"),
    ] {
        refused(&["nvmet", "restore", "--spec", SWITCH, "--dry-run", "--configfs-root", root, &file], 2, needle);
    }
    // Standard input is read with the same bound: an endless stream ends in an error.
    let out = Command::new(env!("CARGO_BIN_EXE_p2pdma"))
        .args(["nvmet", "restore", "--spec", SWITCH, "--dry-run", "--configfs-root", root, "-"])
        .current_dir("../..")
        .stdin(std::fs::File::open("/dev/zero").unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_one_line(&["nvmet", "restore", "-"], &err);
    assert!(err.contains("standard input: is larger than"), "{err}");
    // A mistyped configfs root is not an empty configuration.
    let typo = f.path("no-such-configfs");
    for args in [
        vec!["nvmet", "list", "--configfs-root", &typo],
        vec!["nvmet", "save", "--configfs-root", &typo, "-"],
        vec!["nvmet", "remove", "--nqn", "nqn.2014-08.org.example:x", "--configfs-root", &typo],
    ] {
        refused(&args, 2, "no-such-configfs: no such directory");
    }
    assert_eq!((tree(f.dir.path()), tree(cfs.path())), before, "a refused nvmet command changed something");
}

#[test]
fn copy_operands_that_are_not_files_or_devices_are_named_and_nothing_is_created() {
    let f = Files::new();
    let src = f.dir.path().join("src.bin");
    std::fs::write(&src, vec![7u8; 64 << 10]).unwrap();
    let fifo = f.dir.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let before = tree_without_fifo(f.dir.path());
    let (src, dst) = (src.to_str().unwrap(), f.path("dst.bin"));
    let dir = f.path("a-directory");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![src, &dir], "a-directory: is a directory, not a block device or a regular file"),
        (vec![&dir, &dst], "a-directory: is a directory, not a block device or a regular file"),
        (vec!["/dev/null", &dst], "/dev/null: is a character device, not a block device or a regular file"),
        (vec![src, "/dev/full"], "/dev/full: is a character device"),
        (vec![fifo.to_str().unwrap(), &dst], "fifo: is a pipe"),
        (vec![src, "/nonexistent/x.bin"], "/nonexistent/x.bin: cannot create it: /nonexistent: No such file"),
        // A mistyped device is not a new file in /dev.
        (vec![src, "/dev/p2pdma-test-no-such-disk"], "/dev/p2pdma-test-no-such-disk: no such device"),
        (vec![src, src], "are the same storage"),
        (vec![src, &dst, "--length", "0"], "nothing to copy: the length is 0"),
        (vec![src, &dst, "--length", "1M"], "run past its end"),
        (vec![src, &dst, "--chunk", "3"], "--chunk 3 must be a positive multiple of 4096"),
    ];
    for (operands, needle) in cases {
        let mut args = vec!["copy"];
        args.extend(operands);
        refused(&args, 2, needle);
    }
    assert_eq!(tree_without_fifo(f.dir.path()), before, "a refused copy created or changed a file");
    assert!(!Path::new("/dev/p2pdma-test-no-such-disk").exists(), "a file was created in /dev");
}

/// [`tree`] without reading named pipes (a read would block).
fn tree_without_fifo(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    use std::os::unix::fs::FileTypeExt;
    let fifos: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_fifo())
        .map(|e| e.path())
        .collect();
    let hidden = tempfile::tempdir().unwrap();
    for f in &fifos {
        std::fs::rename(f, hidden.path().join(f.file_name().unwrap())).unwrap();
    }
    let t = tree(dir);
    for f in &fifos {
        std::fs::rename(hidden.path().join(f.file_name().unwrap()), f).unwrap();
    }
    t
}

/// A character a terminal acts on, as it may show up in output: C0 controls other than line
/// feed and tab, DEL, the C1 controls (U+009B is a CSI), and the bidi overrides.
fn raw_control(text: &str) -> Option<char> {
    text.chars().find(|&c| {
        matches!(c, '\0'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

fn assert_inert(args: &[&str], out: &str, err: &str) {
    for (stream, text) in [("stdout", out), ("stderr", err)] {
        if let Some(c) = raw_control(text) {
            panic!("{args:?}: raw {c:?} on {stream}: {text:?}");
        }
    }
}

/// A topology file whose names, description and parents carry terminal escapes: OSC 52 (write
/// the clipboard), OSC 0 (set the title), a C1 CSI and a bidi override.
const HOSTILE_NAMES: &str = r#"
name = "evil\u001b]0;title\u0007"
description = "clip\u001b]52;c;cHduZWQ=\u0007 and \u009b2J"

[machine]
cpu = "qemu64"

[[root_port]]
name = "rp\u001b[31m"
slot = 0x10

[[switch]]
name = "sw\u001b]0;title\u0007"
parent = "rp\u001b[31m"
ports = 2

[[endpoint]]
name = "a\u001b]52;c;cHduZWQ=\u0007"
kind = "nvme"
parent = "sw\u001b]0;title\u0007.0"
cmb_mib = 16

[[endpoint]]
name = "b\u009b31m\u202efdp"
kind = "nvme"
parent = "sw\u001b]0;title\u0007.1"
"#;

#[test]
fn test_names_with_terminal_escapes_reach_no_terminal_raw() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("evil.toml");
    std::fs::write(&spec, HOSTILE_NAMES).unwrap();
    let other = dir.path().join("other.toml");
    std::fs::write(&other, HOSTILE_NAMES.replace("cmb_mib = 16", "cmb_mib = 32").replace("ports = 2", "ports = 3"))
        .unwrap();
    let snap = dir.path().join("snap.json");
    let spec = spec.to_str().unwrap();
    let (other, snap_s) = (other.to_str().unwrap(), snap.to_str().unwrap());
    let (a, b) = ("a\u{1b}]52;c;cHduZWQ=\u{7}", "b\u{9b}31m\u{202e}fdp");
    let missing = format!("{}/gone\u{1b}]0;title\u{7}.toml", dir.path().display());
    let configfs = dir.path().join("configfs");
    std::fs::create_dir_all(configfs.join("nvmet/subsystems")).unwrap();
    let configfs = configfs.to_str().unwrap();
    let (code, _, err) = p2pdma(&["snapshot", "--spec", spec, "-o", snap_s]);
    assert_eq!(code, 0, "{err}");
    let runs: Vec<Vec<&str>> = vec![
        vec!["topo", "--spec", spec],
        vec!["topo", "--snapshot", snap_s],
        vec!["check", "--spec", spec, a, b],
        vec!["check", "--snapshot", snap_s, b, a],
        vec!["check", "--spec", spec, "zz\u{1b}]0;title\u{7}", b],
        vec!["find", "--spec", spec, b],
        vec!["find", "--spec", spec, "\u{1b}]52;c;eA==\u{7}"],
        vec!["addr", "--spec", spec, b, a],
        vec!["addr", "--spec", spec, b, "a\u{1b}[2J:7"],
        vec!["resolve", "--spec", spec, a, b],
        vec!["resolve", "--spec", spec, "\u{9b}6n"],
        vec!["providers", "--spec", spec],
        vec!["metrics", "--spec", spec],
        vec!["diff", spec, other],
        vec!["diff", spec, snap_s],
        vec!["nvmet", "list", "--spec", spec, "--configfs-root", configfs],
        vec!["topo", "--spec", &missing],
        vec!["topo", "--spec", spec, "--class", "\u{1b}]0;title\u{7}"],
        vec!["copy", "--depth", "x\u{1}\u{9b}2J\u{1b}[31m", "a", "b"],
        vec!["topo", "--snapshot", &missing],
    ];
    for args in &runs {
        let (code, out, err) = p2pdma(args);
        assert!((0..=3).contains(&code), "{args:?}: exit {code}: {err}");
        assert_inert(args, &out, &err);
    }
    // The names are there, shown, not dropped.
    let (_, out, _) = p2pdma(&["topo", "--spec", spec]);
    assert!(out.contains("a\\e]52;c;cHduZWQ=\\x07"), "{out}");
    assert!(out.contains("b\\x9b31m\\u{202e}fdp"), "{out}");
    // JSON stays exact: serde's escapes, the name read back unchanged.
    let (_, json, _) = p2pdma(&["topo", "--spec", spec, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let names: Vec<&str> = v["devices"].as_array().unwrap().iter().filter_map(|d| d["name"].as_str()).collect();
    assert!(names.contains(&a) && names.contains(&b), "{names:?}");
}

/// Issue 23's acceptance for writers: in a sticky, world-writable directory (as `/tmp`), a
/// symbolic link planted by another user (uid 65534) is refused by every writer, as the
/// kernel's `fs.protected_symlinks` refuses to follow it, and the file it points to is left
/// unchanged; the caller's own link there is written through. Needs root (lchown).
#[test]
fn test_writers_refuse_another_users_link_in_a_sticky_directory() {
    use std::os::unix::fs::PermissionsExt;
    if !euid_is_root() {
        eprintln!("skipped: needs root to chown a link to another user");
        return;
    }
    let sticky = tempfile::tempdir().unwrap();
    std::fs::set_permissions(sticky.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("shadow");
    std::fs::write(&victim, "root:secret\n").unwrap();
    let cfs = tempfile::tempdir().unwrap();
    std::fs::create_dir(cfs.path().join("nvmet")).unwrap();
    let cfs = cfs.path().to_str().unwrap().to_string();
    let plant = |name: &str| {
        let link = sticky.path().join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
        link.to_str().unwrap().to_string()
    };
    // Each writer's arguments; the output file comes last.
    let writers: [(&str, Vec<&str>); 5] = [
        ("snapshot", vec!["snapshot", "--spec", SWITCH, "-o"]),
        ("report", vec!["report", "--spec", SWITCH, "-o"]),
        ("metrics", vec!["metrics", "--spec", SWITCH, "-o"]),
        ("svg", vec!["topo", "--spec", SWITCH, "--svg"]),
        ("nvmet", vec!["nvmet", "save", "--configfs-root", &cfs]),
    ];
    for (name, args) in &writers {
        let link = plant(name);
        let mut args = args.clone();
        args.push(&link);
        refused_saying(&args, 2, &["refused: a symbolic link owned by uid 65534", "fs.protected_symlinks"]);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:secret\n", "{name} wrote through the link");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "{name} removed the link");
    }
    // manpages: a page name planted in a sticky man directory.
    plant("p2pdma.1");
    refused_saying(&["manpages", sticky.path().to_str().unwrap()], 2, &["fs.protected_symlinks"]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root:secret\n", "manpages wrote through the link");
    // The caller's own link in the same directory is written through.
    let own = sticky.path().join("own.json");
    let target = victim_dir.path().join("mine.json");
    std::fs::write(&target, "old").unwrap();
    std::os::unix::fs::symlink(&target, &own).unwrap();
    let (code, _, err) = p2pdma(&["snapshot", "--spec", SWITCH, "-o", own.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read_to_string(&target).unwrap().contains("p2pdma-snapshot"));
}

fn euid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// The lines under "steps (dry run, nothing changed):", as a shell script.
fn dry_run_steps(out: &str) -> String {
    let steps = out.split("steps (dry run, nothing changed):\n").nth(1).unwrap_or_else(|| panic!("no steps: {out}"));
    steps.lines().take_while(|l| l.starts_with("  ")).map(|l| format!("{}\n", l.trim_start())).collect()
}

/// Pastes `script` into `sh -n`, then runs it with `sh` in `cwd` (a plain directory standing
/// for configfs): exit status of the check.
fn paste_into_sh(script: &str, cwd: &Path) {
    let file = cwd.join("steps.sh");
    std::fs::write(&file, script).unwrap();
    let check = Command::new("sh").arg("-n").arg(&file).output().unwrap();
    assert!(check.status.success(), "sh -n: {}\n{script}", String::from_utf8_lossy(&check.stderr));
    // Errors are expected (ana_groups/1 is the kernel's, absent here); substitutions are not.
    Command::new("sh").arg(&file).current_dir(cwd).output().unwrap();
}

/// Issue 23: values in an nvmetcli config (and export flags) that are shell code stay data
/// in every printed step: `sh -n` parses the dry run, and running it in a scratch directory
/// creates the directories with those very names and runs nothing.
#[test]
fn test_dry_run_steps_are_shell_quoted_and_run_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let marker = scratch.path().join("pwned");
    let touch = format!("a;touch${{IFS}}{};$(id)`touch {}`", marker.display(), marker.display());
    let sample: serde_json::Value =
        serde_json::from_str(include_str!("../../p2pdma-nvmet/fixtures/nvmetcli-config.json")).unwrap();
    let mut c = sample.clone();
    let nqn = "nqn.2026-11.io.p2pdma:t;$(id)";
    c["subsystems"][0]["attr"]["model"] = touch.clone().into();
    c["subsystems"][0]["attr"]["serial"] = "'\"$(id)\"'x".into();
    c["subsystems"][0]["attr"]["firmware"] = "f|id>x&".into();
    c["subsystems"][0]["nqn"] = nqn.into();
    c["subsystems"][0]["namespaces"][0]["device"]["path"] = "nvme-b".into();
    c["ports"][0]["subsystems"][0] = nqn.into();
    c["ports"][0]["referrals"][0]["name"] = "p;$(id)".into();
    let file = scratch.path().join("c.json");
    std::fs::write(&file, serde_json::to_string_pretty(&c).unwrap()).unwrap();

    let cfs = tempfile::tempdir().unwrap();
    for sub in ["subsystems", "ports", "hosts"] {
        std::fs::create_dir_all(cfs.path().join("nvmet").join(sub)).unwrap();
    }
    let root = cfs.path().to_str().unwrap();
    let args = ["nvmet", "restore", file.to_str().unwrap(), "--spec", SWITCH, "--configfs-root", root, "--dry-run"];
    let (code, out, err) = p2pdma(&args);
    assert_eq!(code, 0, "{err}");
    let script = dry_run_steps(&out);
    assert!(script.contains("attr_model"), "{script}");
    paste_into_sh(&script, cfs.path());
    assert!(!marker.exists(), "a command in a value ran");
    assert!(cfs.path().join("nvmet/subsystems").join(nqn).is_dir(), "the NQN is one literal name");
    let model = std::fs::read_to_string(cfs.path().join("nvmet/subsystems").join(nqn).join("attr_model")).unwrap();
    assert_eq!(model, format!("{touch}\n"), "the value written as it is");

    let export_nqn = format!("nqn.x:a;touch${{IFS}}{};$(id)", marker.display()).replace('/', "_");
    let cfs2 = tempfile::tempdir().unwrap();
    for sub in ["subsystems", "ports", "hosts"] {
        std::fs::create_dir_all(cfs2.path().join("nvmet").join(sub)).unwrap();
    }
    let root2 = cfs2.path().to_str().unwrap();
    let args = [
        "nvmet",
        "export",
        "--spec",
        SWITCH,
        "--configfs-root",
        root2,
        "--dry-run",
        "--nqn",
        &export_nqn,
        "--ns",
        "nvme-b",
        "--transport",
        "tcp",
        "--addr",
        "127.0.0.1",
        "--host",
        "nqn.h:`id`$(id)",
    ];
    let (code, out, err) = p2pdma(&args);
    assert_eq!(code, 0, "{err}");
    paste_into_sh(&dry_run_steps(&out), cfs2.path());
    assert!(cfs2.path().join("nvmet/subsystems").join(&export_nqn).is_dir(), "{out}");
    assert!(cfs2.path().join("nvmet/hosts/nqn.h:`id`$(id)").is_dir(), "{out}");
    assert!(!marker.exists());
}

/// A copy of the real guest's `switch` tree (`sys`, `proc`), links kept as links.
fn guest_tree() -> tempfile::TempDir {
    fn copy(src: &Path, dst: &Path) {
        std::fs::create_dir_all(dst).unwrap();
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            let (from, to) = (e.path(), dst.join(e.file_name()));
            let t = e.file_type().unwrap();
            if t.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(&from).unwrap(), &to).unwrap();
            } else if t.is_dir() {
                copy(&from, &to);
            } else {
                std::fs::copy(&from, &to).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    for part in ["sys", "proc"] {
        copy(&Path::new("../p2pdma-lab/fixtures/switch").join(part), &dir.path().join(part));
    }
    dir
}

/// The device directory of `bdf` in a tree (what its `bus/pci/devices` link names).
fn device_dir(sys: &Path, bdf: &str) -> PathBuf {
    std::fs::canonicalize(sys.join("bus/pci/devices").join(bdf)).unwrap()
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

fn sparse(path: &Path, len: u64) {
    let _ = std::fs::remove_file(path);
    std::fs::File::create(path).unwrap().set_len(len).unwrap();
}

fn relink(path: &Path, target: &str) {
    let _ = std::fs::remove_file(path);
    std::os::unix::fs::symlink(target, path).unwrap();
}

/// One run under issue 23's limits: killed after 5 s (`timeout`), 1 GiB of address space
/// (`prlimit --as`), wall time and peak RSS measured by GNU time when it is there.
/// Returns exit status, stdout, stderr, seconds, peak RSS in KiB.
fn run_limited(args: &[&str]) -> (i32, String, String, f64, u64) {
    let measured = tempfile::NamedTempFile::new().unwrap();
    let have_time = Path::new("/usr/bin/time").exists();
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", "5", "prlimit", "--as=1073741824", "--"]);
    if have_time {
        cmd.args(["/usr/bin/time", "-f", "%e %M", "-o"]).arg(measured.path());
    }
    let started = std::time::Instant::now();
    let out = cmd.arg(env!("CARGO_BIN_EXE_p2pdma")).args(args).current_dir("../..").output().unwrap();
    let mut secs = started.elapsed().as_secs_f64();
    let mut rss = 0;
    let stats = std::fs::read_to_string(measured.path()).unwrap_or_default();
    // GNU time writes "Command exited with non-zero status N" first when it is not 0.
    if let Some(last) = stats.lines().last() {
        let mut it = last.split_whitespace();
        secs = it.next().and_then(|s| s.parse().ok()).unwrap_or(secs);
        rss = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    }
    let code = out.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into(), secs, rss)
}

/// Issue 23's hostile machines: sysfs trees as an attacker (or a broken kernel, or a
/// careless `--sysfs-root`) leaves them. Every case, for `topo`, `check` and `snapshot`:
/// done within 5 s and 1 GiB of address space, exit 0-3, at most one line on stderr (the
/// error, or a note), and no raw control character from the tree on stdout or stderr.
#[test]
fn test_hostile_sysfs_trees_end_fast_small_and_in_one_line() {
    type Plant = fn(&Path, &Path);
    let cases: Vec<(&str, Plant)> = vec![
        ("a FIFO as config", |_, dev| mkfifo(&dev.join("config"))),
        ("a FIFO as vendor", |_, dev| mkfifo(&dev.join("vendor"))),
        ("a sparse 1 GiB config", |_, dev| sparse(&dev.join("config"), 1 << 30)),
        ("a 1 GiB local_cpulist", |_, dev| sparse(&dev.join("local_cpulist"), 1 << 30)),
        ("a 1 GiB resource", |_, dev| sparse(&dev.join("resource"), 1 << 30)),
        ("/dev/zero as current_link_speed", |_, dev| relink(&dev.join("current_link_speed"), "/dev/zero")),
        ("/dev/zero as vendor", |_, dev| relink(&dev.join("vendor"), "/dev/zero")),
        ("/dev/zero as config", |_, dev| relink(&dev.join("config"), "/dev/zero")),
        ("a link loop as resource", |_, dev| relink(&dev.join("resource"), "resource")),
        ("a link loop as a device", |sys, _| {
            relink(&sys.join("bus/pci/devices/0000:03:00.0"), "0000:03:00.0");
        }),
        ("a directory as config", |_, dev| {
            std::fs::remove_file(dev.join("config")).unwrap();
            std::fs::create_dir(dev.join("config")).unwrap();
        }),
        ("an unreadable config (mode 000)", |_, dev| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dev.join("config"), std::fs::Permissions::from_mode(0o000)).unwrap();
        }),
        ("an unreadable vendor (a socket: open fails even for root)", |_, dev| {
            std::fs::remove_file(dev.join("vendor")).unwrap();
            std::mem::forget(std::os::unix::net::UnixListener::bind(dev.join("vendor")).unwrap());
        }),
        ("escapes in a driver name", |_, dev| {
            relink(&dev.join("driver"), "../drivers/nv\u{1b}]52;c;eA==\u{7}me\u{9b}2J")
        }),
        ("escapes in a link speed", |_, dev| {
            std::fs::write(dev.join("current_link_speed"), "8.0 GT/s\u{1b}]0;title\u{7} PCIe\n").unwrap();
        }),
        ("escapes in an entry name", |sys, _| {
            relink(&sys.join("bus/pci/devices/0000:09:00.0\u{1b}]0;title\u{7}"), "../../../devices/pci0000:00");
        }),
        ("escapes in the kernel release", |sys, _| {
            let proc = sys.parent().unwrap().join("proc");
            std::fs::write(proc.join("sys/kernel/osrelease"), "7.2\u{1b}]52;c;eA==\u{7}\n").unwrap();
        }),
    ];
    let mut worst = (0.0f64, 0u64, String::new());
    for (name, plant) in &cases {
        let tree = guest_tree();
        let (sys, proc) = (tree.path().join("sys"), tree.path().join("proc"));
        let dev = device_dir(&sys, "0000:03:00.0");
        plant(&sys, &dev);
        let snap = tree.path().join("snap.json");
        let (s, p, o) = (sys.to_str().unwrap(), proc.to_str().unwrap(), snap.to_str().unwrap());
        let roots = ["--sysfs-root", s, "--proc-root", p];
        let runs: [Vec<&str>; 3] = [
            [&["topo"][..], &roots].concat(),
            [&["check"][..], &roots, &["03:00.0", "04:00.0"]].concat(),
            [&["snapshot"][..], &roots, &["-o", o]].concat(),
        ];
        for args in &runs {
            let (code, out, err, secs, rss) = run_limited(args);
            let what = format!("{name}: {}", args[0]);
            assert!((0..=3).contains(&code), "{what}: exit {code}: {err}");
            assert!(secs < 5.0, "{what}: {secs} s");
            // `snapshot` says what it wrote; beside that, one line at most tells the problem.
            let told: Vec<&str> = err.lines().filter(|l| !l.starts_with("p2pdma: wrote ")).collect();
            assert!(told.len() <= 1, "{what}: more than one line: {err}");
            assert!(err.lines().all(|l| l.starts_with("p2pdma: ")), "{what}: {err}");
            if code == 2 {
                assert_eq!(err.lines().count(), 1, "{what}: an error without its line");
            }
            assert_inert(&[&what], &out, &err);
            if secs > worst.0 || rss > worst.1 {
                worst = (worst.0.max(secs), worst.1.max(rss), what.clone());
            }
            eprintln!("{what}: exit {code}, {secs:.2} s, {rss} KiB; {}", err.trim_end());
        }
    }
    eprintln!("worst: {:.2} s, {} KiB peak RSS ({})", worst.0, worst.1, worst.2);
}
