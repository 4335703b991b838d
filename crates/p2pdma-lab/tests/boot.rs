//! Boots the real lab (QEMU/TCG, Debian unstable kernel). Slow and needs the host tools
//! (lab/install-deps.sh) and a fetched or fetchable kernel, hence the lab tier:
//!
//!     cargo test -p p2pdma-lab --features lab-tests --test boot -- --test-threads=1

use std::time::Duration;

use p2pdma_lab::{LabDevice, LabDeviceKind, LabError, LabMachine, LabOptions};

fn dev(id: &str, bus: &str, addr: Option<(u8, u8)>, kind: LabDeviceKind) -> LabDevice {
    LabDevice { id: id.into(), bus: bus.into(), addr, multifunction: false, kind }
}

fn switch_machine() -> LabMachine {
    LabMachine {
        devices: vec![
            dev("rp0", "pcie.0", Some((0x11, 0)), LabDeviceKind::RootPort { chassis: 1, slot: 0 }),
            dev("up0", "rp0", None, LabDeviceKind::SwitchUpstream),
            dev("dp0", "up0", Some((0, 0)), LabDeviceKind::SwitchDownstream { chassis: 2, slot: 0 }),
            dev("dp1", "up0", Some((1, 0)), LabDeviceKind::SwitchDownstream { chassis: 2, slot: 1 }),
            dev(
                "nvme-a",
                "dp0",
                None,
                LabDeviceKind::Nvme { serial: "nvme-a".into(), size_mib: 64, cmb_mib: Some(16) },
            ),
            dev("nvme-b", "dp1", None, LabDeviceKind::Nvme { serial: "nvme-b".into(), size_mib: 64, cmb_mib: None }),
        ],
        ..LabMachine::default()
    }
}

fn opts(timeout_secs: u64) -> LabOptions {
    LabOptions { timeout: Duration::from_secs(timeout_secs), echo_output: false, ..LabOptions::default() }
}

fn qemu_processes() -> usize {
    std::process::Command::new("pgrep")
        .args(["-x", "qemu-system-x86"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0)
}

#[test]
fn exit_status_is_propagated() {
    let outcome = p2pdma_lab::run(&LabMachine::default(), "echo hello; exit 3", &opts(120)).unwrap();
    assert_eq!(outcome.exit_status, 3);
    assert_eq!(outcome.output, "hello\n");
}

#[test]
fn switch_has_a_published_cmb() {
    let command =
        "cat /sys/bus/pci/devices/0000:03:00.0/p2pmem/size /sys/bus/pci/devices/0000:03:00.0/p2pmem/published; \
                   cat /sys/class/nvme/*/serial | sort";
    let outcome = p2pdma_lab::run(&switch_machine(), command, &opts(180)).unwrap();
    assert_eq!(outcome.exit_status, 0, "{}", outcome.output);
    let lines: Vec<&str> = outcome.output.lines().map(str::trim).collect();
    assert_eq!(lines, ["16777216", "1", "nvme-a", "nvme-b"]);
}

#[test]
fn timeout_kills_qemu_and_shows_the_console() {
    let before = qemu_processes();
    let err = p2pdma_lab::run(&LabMachine::default(), "echo started; sleep 600", &opts(20)).unwrap_err();
    match err {
        LabError::Timeout { tail, .. } => assert!(tail.iter().any(|l| l == "started"), "{tail:?}"),
        other => panic!("expected a timeout, got {other}"),
    }
    assert_eq!(qemu_processes(), before, "a QEMU process was left behind");
}

#[test]
fn share_dir_brings_files_out() {
    let dir = std::env::temp_dir().join(format!("p2pdma-lab-test-share-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let options = LabOptions { share_dir: Some(dir.clone()), ..opts(120) };
    let outcome =
        p2pdma_lab::run(&LabMachine::default(), "echo '{\"ok\": true}' > /lab/share/snapshot.json", &options).unwrap();
    assert_eq!(outcome.exit_status, 0);
    assert_eq!(std::fs::read_to_string(dir.join("snapshot.json")).unwrap(), "{\"ok\": true}\n");
    std::fs::remove_dir_all(&dir).unwrap();
}
