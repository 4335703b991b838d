//! `p2pdma nvmet` against the real kernel's NVMe target, in the lab (one boot per scenario):
//!
//! - switch: nvme-b's namespace exported over NVMe/TCP on loopback with `--p2pmem nvme-a`
//!   (the CMB provider) to one named host (`--host`), connected from the same guest through
//!   the kernel's NVMe/TCP host as that host, written and read back byte-exact through the
//!   fabric (and on the backing drive), while a second host NQN is turned away by the
//!   kernel; the same over nvme-loop with `--p2pmem auto` and `--allow-any-host`; exporting
//!   twice changes nothing; every error case (no host choice, a mounted or swap namespace,
//!   one already exported, provider without P2P memory, unknown device, a namespace that is
//!   not a block device, an NQN in use, a port the kernel cannot bind) leaves configfs
//!   exactly as it was; `list` shows the state and who may connect; `save`, `remove`,
//!   `restore` gives the same tree (every attribute) and the same file; `remove` leaves
//!   configfs empty.
//! - root-ports: `--p2pmem nvme-a` refused before configfs is touched with the reasons
//!   `p2pdma check` gives (and the kernel, asked directly, refuses the same way); `--p2pmem
//!   auto` proceeds without P2P and says so.
//!
//! Needs QEMU and the lab kernel (scripts/test installs them); P2PDMA_SKIP_LAB=1 skips.

use std::path::Path;

use serde_json::Value;

mod common;

use common::{p2pdma, skip_lab};

/// Boots `scenario` with a share, runs `script` in the guest, returns the share.
fn boot(scenario: &str, script: &str) -> tempfile::TempDir {
    let share = tempfile::tempdir().unwrap();
    let spec = format!("examples/topologies/{scenario}.toml");
    let t = std::time::Instant::now();
    let (code, out, err) =
        p2pdma(&["lab", "run", &spec, "--timeout", "240", "--share", share.path().to_str().unwrap(), "--", script]);
    eprintln!("{scenario}: lab run took {:.1} s", t.elapsed().as_secs_f64());
    assert_eq!(code, 0, "{scenario}: the lab run failed: {out}{err}");
    share
}

fn read(share: &Path, name: &str) -> String {
    std::fs::read_to_string(share.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn json(share: &Path, name: &str) -> Value {
    let text = read(share, name);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {text}"))
}

fn rc(share: &Path, name: &str) -> i32 {
    read(share, &format!("{name}.rc")).trim().parse().unwrap()
}

/// Guest shell helpers: `snap` lists nvmet's configfs (paths, then the values that matter);
/// `run NAME CMD...` runs a p2pdma command with stdout, stderr and status into the share.
const HELPERS: &str = r#"cd /lab/share
snap() { find /sys/kernel/config/nvmet 2>/dev/null | sort; find /sys/kernel/config/nvmet \( -name enable -o -name p2pmem -o -name device_path -o -name 'addr_tr*' -o -name attr_allow_any_host \) -type f 2>/dev/null | sort | while read f; do echo "$f=$(cat $f)"; done; }
snapfull() { find /sys/kernel/config/nvmet 2>/dev/null | sort; find /sys/kernel/config/nvmet -type f 2>/dev/null | sort | while read f; do echo "$f=$(cat $f 2>/dev/null)"; done; }
HOSTA=nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555
HOSTB=nqn.2014-08.org.nvmexpress:uuid:99999999-8888-7777-6666-555555555555
HOSTIDA=11111111-2222-3333-4444-555555555555
HOSTIDB=99999999-8888-7777-6666-555555555555
run() { name=$1; shift; "$@" > $name.out 2> $name.err; echo $? > $name.rc; }
newdisk() { for i in $(seq 100); do ls /sys/block > blk-1.txt; new=$(grep -v -x -F -f blk-0.txt blk-1.txt | grep -v 'c[0-9]*n' | head -1); [ -n "$new" ] && break; sleep 0.1; done; echo $new; }
"#;

#[test]
fn lab_nvmet_switch() {
    if skip_lab() {
        return;
    }
    let script = format!(
        r#"{HELPERS}
NQN=nqn.2026-11.io.p2pdma:switch
LOOPNQN=nqn.2026-11.io.p2pdma:loop
A=$(p2pdma resolve --block nvme-a)
snap > cfs-0.txt
run closed p2pdma nvmet export --nqn $NQN --ns nvme-b --transport tcp --addr 127.0.0.1 --port 4420 --p2pmem nvme-a --json
snap > cfs-0b.txt
run export p2pdma nvmet export --nqn $NQN --ns nvme-b --transport tcp --addr 127.0.0.1 --port 4420 --p2pmem nvme-a --host $HOSTA --json
run again p2pdma nvmet export --nqn $NQN --ns nvme-b --transport tcp --addr 127.0.0.1 --port 4420 --p2pmem nvme-a --host $HOSTA --json
snap > cfs-1.txt
run noprov p2pdma nvmet export --nqn nqn.x --ns nvme-a --transport tcp --addr 127.0.0.1 --p2pmem nvme-b --host $HOSTA
run unknown p2pdma nvmet export --nqn nqn.x --ns nvme-zz --transport tcp --addr 127.0.0.1 --host $HOSTA
run unknownprov p2pdma nvmet export --nqn nqn.x --ns nvme-a --transport tcp --addr 127.0.0.1 --p2pmem nvme-zz --host $HOSTA
run devnull p2pdma nvmet export --nqn nqn.x --ns /dev/null --transport tcp --addr 127.0.0.1 --host $HOSTA
dd if=/dev/zero of=/tmp/file.img bs=1M count=1 2>/dev/null
run file p2pdma nvmet export --nqn nqn.x --ns /tmp/file.img --transport tcp --addr 127.0.0.1 --host $HOSTA
run inuse p2pdma nvmet export --nqn $NQN --ns nvme-a --transport tcp --addr 127.0.0.1 --port 4420 --host $HOSTA --json
run twice p2pdma nvmet export --nqn nqn.x --ns nvme-b --transport tcp --addr 127.0.0.1 --port 4421 --host $HOSTA --json
run bind p2pdma nvmet export --nqn nqn.x --ns nvme-a --transport tcp --addr 10.9.9.9 --p2pmem auto --allow-any-host --json
modprobe ext4; mke2fs -q $A && mkdir -p /mnt/a && mount $A /mnt/a
run mounted p2pdma nvmet export --nqn nqn.x --ns nvme-a --transport tcp --addr 127.0.0.1 --port 4421 --host $HOSTA --json
umount /mnt/a
mkswap $A >/dev/null && swapon $A
run swap p2pdma nvmet export --nqn nqn.x --ns nvme-a --transport tcp --addr 127.0.0.1 --port 4421 --host $HOSTA --json
swapoff $A
snap > cfs-2.txt
ls /sys/block > blk-0.txt
modprobe nvme-tcp
echo transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=$NQN,hostnqn=$HOSTB,hostid=$HOSTIDB > /dev/nvme-fabrics 2> denied.err; echo $? > denied.rc
sleep 1; ls /sys/block > blk-denied.txt
echo transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=$NQN,hostnqn=$HOSTA,hostid=$HOSTIDA > /dev/nvme-fabrics
disk=$(newdisk); echo $disk > tcp-disk.txt
dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
dd if=/tmp/pat of=/dev/$disk bs=1M oflag=direct 2>/dev/null
dd if=/dev/$disk of=/tmp/back bs=1M count=4 iflag=direct 2>/dev/null
dd if=$(p2pdma resolve --block nvme-b) of=/tmp/backing bs=1M count=4 iflag=direct 2>/dev/null
sha256sum /tmp/pat /tmp/back /tmp/backing > tcp.sha
run list p2pdma nvmet list --json
run listtext p2pdma nvmet list
run loop p2pdma nvmet export --nqn $LOOPNQN --ns nvme-a --transport loop --p2pmem auto --allow-any-host --json
ls /sys/block > blk-0.txt
echo transport=loop,nqn=$LOOPNQN > /dev/nvme-fabrics
disk=$(newdisk); echo $disk > loop-disk.txt
dd if=/dev/urandom of=/tmp/pat2 bs=1M count=2 2>/dev/null
dd if=/tmp/pat2 of=/dev/$disk bs=1M oflag=direct 2>/dev/null
dd if=/dev/$disk of=/tmp/back2 bs=1M count=2 iflag=direct 2>/dev/null
sha256sum /tmp/pat2 /tmp/back2 > loop.sha
run list2 p2pdma nvmet list --json
run save p2pdma nvmet save /lab/share/saved.json
snapfull > full-0.txt
for c in /sys/class/nvme/nvme*; do case "$(cat $c/subsysnqn)" in $NQN|$LOOPNQN) echo 1 > $c/delete_controller;; esac; done
run remove p2pdma nvmet remove --nqn $NQN --json
run removeloop p2pdma nvmet remove --nqn $LOOPNQN --json
run removeagain p2pdma nvmet remove --nqn $NQN
snap > cfs-3.txt
modprobe -r nvme-loop nvmet-tcp nvmet 2> unload.err; echo $? > unload.rc
run restore p2pdma nvmet restore /lab/share/saved.json --json
snapfull > full-1.txt
run save2 p2pdma nvmet save /lab/share/saved2.json
run restoreagain p2pdma nvmet restore /lab/share/saved.json --json
run remove2 p2pdma nvmet remove --nqn $NQN
run removeloop2 p2pdma nvmet remove --nqn $LOOPNQN
snap > cfs-4.txt
dmesg > dmesg.txt
echo done"#
    );
    let share = boot("switch", &script);
    let s = share.path();

    // The export: checked, written in the kernel's order, TCP's P2P behaviour said.
    assert_eq!(rc(s, "export"), 0, "{}", read(s, "export.err"));
    let e = json(s, "export.out");
    assert_eq!(e["outcome"], "proceed");
    assert_eq!(e["ok"], true);
    assert_eq!(e["p2p"]["p2pmem"], "0000:03:00.0");
    assert_eq!((e["p2p"]["map_type"].as_str(), e["p2p"]["distance"].as_u64()), (Some("bus_addr"), Some(4)));
    assert_eq!(e["p2p"]["used"], false);
    assert!(e["p2p"]["transport_client"].as_str().unwrap().starts_with("TCP does not use P2P memory"));
    let setup: Vec<&str> = e["setup"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(setup, ["modprobe nvmet", "modprobe nvmet-tcp"]);
    assert!(e["applied"]["failed"].is_null());
    let logged: Vec<&str> = e["applied"]["done"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["kernel_log"].as_array().unwrap())
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(logged.contains(&"nvmet_tcp: enabling port 1 (127.0.0.1:4420)"), "{logged:?}");

    // Closed by default: no host choice is refused, configfs untouched; `--host` writes no
    // attr_allow_any_host = 1 and links exactly that host.
    assert_eq!(rc(s, "closed"), 2);
    let closed = read(s, "closed.err");
    assert!(closed.starts_with("p2pdma: choose who may connect: --host NQN"), "{closed}");
    assert!(read(s, "closed.out").is_empty());
    assert_eq!(read(s, "cfs-0.txt"), read(s, "cfs-0b.txt"), "a refusal changed configfs");
    assert_eq!(e["allowed_hosts"], serde_json::json!([HOSTA]));
    assert_eq!(e["allow_any_host"], false);
    let cfs1 = read(s, "cfs-1.txt");
    let sub = "/sys/kernel/config/nvmet/subsystems/nqn.2026-11.io.p2pdma:switch";
    assert!(cfs1.contains(&format!("{sub}/attr_allow_any_host=0\n")), "{cfs1}");
    let linked: Vec<&str> = cfs1.lines().filter(|l| l.starts_with(&format!("{sub}/allowed_hosts/"))).collect();
    assert_eq!(linked, [format!("{sub}/allowed_hosts/{HOSTA}")]);
    assert!(cfs1.contains(&format!("/sys/kernel/config/nvmet/hosts/{HOSTA}\n")));
    assert!(!cfs1.contains(HOSTB));

    // Twice: nothing changed.
    assert_eq!(rc(s, "again"), 0);
    let a = json(s, "again.out");
    assert_eq!((a["outcome"].as_str(), a["applied"].is_null()), (Some("already_exported"), true));
    assert_eq!(a["reasons"][0], "already exported, nothing changed");

    // Every error: a clear message, the right exit code, configfs exactly as it was.
    let cases = [
        ("noprov", 2, "nvme-b (0000:04:00.0) is not a P2P memory provider"),
        ("unknown", 2, "unknown device `nvme-zz`"),
        ("unknownprov", 2, "unknown device `nvme-zz`"),
        ("devnull", 2, "/dev/null is a character device, not a block device"),
        ("file", 2, "/tmp/file.img is a regular file, not a block device"),
    ];
    for (name, code, msg) in cases {
        let err = read(s, &format!("{name}.err"));
        assert_eq!(rc(s, name), code, "{name}: {err}");
        assert!(err.contains(msg), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
    }
    // In use or exported already: refused with the reason, configfs untouched.
    for (name, why) in [
        ("mounted", "is mounted at /mnt/a"),
        ("swap", "is swap ("),
        ("twice", "is already exported: namespace 1 of nqn.2026-11.io.p2pdma:switch"),
    ] {
        assert_eq!(rc(s, name), 1, "{name}: {}", read(s, &format!("{name}.err")));
        let r = json(s, &format!("{name}.out"));
        assert_eq!((r["outcome"].as_str(), r["applied"].is_null()), (Some("refused"), true), "{name}");
        assert!(r["reasons"].to_string().contains(why), "{name}: {}", r["reasons"]);
    }
    assert!(read(s, "bind.err").contains("p2pdma: warning: --allow-any-host: any host that reaches tcp 10.9.9.9:4420"));
    assert_eq!(rc(s, "inuse"), 1);
    let u = json(s, "inuse.out");
    assert_eq!(u["outcome"], "refused");
    assert!(u["reasons"][0].as_str().unwrap().starts_with("NQN already in use"), "{u}");
    assert_eq!(rc(s, "bind"), 1);
    let b = json(s, "bind.out");
    let f = &b["applied"]["failed"];
    assert_eq!(f["errno"], 99, "{b}");
    assert!(f["kernel_log"].to_string().contains("nvmet_tcp: failed to bind port socket -99"), "{f}");
    assert_eq!(b["applied"]["rolled_back"].as_array().unwrap().len(), 4);
    assert!(b["applied"]["rollback_failed"].as_array().unwrap().is_empty());
    assert_eq!(read(s, "cfs-1.txt"), read(s, "cfs-2.txt"), "an error case changed configfs");

    // The host not listed is turned away by the kernel; the listed one connects.
    assert_ne!(read(s, "denied.rc").trim(), "0", "an unlisted host connected");
    let dmesg = read(s, "dmesg.txt");
    assert!(
        dmesg.contains(&format!("connect by host {HOSTB} for subsystem nqn.2026-11.io.p2pdma:switch not allowed")),
        "{dmesg}"
    );

    // Through the fabric, byte-exact, and on the backing drive.
    for (what, file) in [("tcp", "tcp.sha"), ("loop", "loop.sha")] {
        let sums: Vec<String> =
            read(s, file).lines().map(|l| l.split_whitespace().next().unwrap().to_string()).collect();
        assert!(sums.len() >= 2 && sums.iter().all(|x| *x == sums[0]), "{what}: {sums:?}");
        assert!(!read(s, &format!("{what}-disk.txt")).trim().is_empty(), "{what}: no fabric disk appeared");
    }

    // list: the state, and P2P not in use over TCP (the kernel never logs "using p2pmem").
    assert_eq!(rc(s, "list"), 0);
    let l = json(s, "list.out");
    let sub = l["subsystems"].as_array().unwrap().iter().find(|x| x["nqn"] == "nqn.2026-11.io.p2pdma:switch").unwrap();
    let ns = &sub["namespaces"][0];
    assert_eq!((ns["p2pmem"].as_str(), ns["enabled"].as_bool()), (Some("0000:03:00.0"), Some(true)));
    assert_eq!((ns["pci_name"].as_str(), ns["p2p_in_use"].as_bool()), (Some("nvme-b"), Some(false)));
    assert_eq!(sub["ports"][0], "1: tcp 127.0.0.1:4420");
    assert_eq!((sub["allow_any_host"].as_bool(), &sub["allowed_hosts"]), (Some(false), &serde_json::json!([HOSTA])));
    let text = read(s, "listtext.out");
    assert!(text.contains("P2P in use: no"));
    assert!(text.contains(&format!("(may connect: {HOSTA})")), "{text}");
    let dmesg = read(s, "dmesg.txt");
    assert!(!dmesg.contains("using p2pmem"), "TCP used P2P memory?");

    // loop with auto: "1" written (nvme-a's own CMB), loop uses no P2P either.
    assert_eq!(rc(s, "loop"), 0, "{}", read(s, "loop.err"));
    let lp = json(s, "loop.out");
    assert_eq!((lp["p2p"]["p2pmem"].as_str(), lp["p2p"]["used"].as_bool()), (Some("1"), Some(false)));
    assert!(lp["p2p"]["transport_client"].as_str().unwrap().starts_with("loop does not use P2P memory"));
    let l2 = json(s, "list2.out");
    assert_eq!(l2["subsystems"].as_array().unwrap().len(), 2);

    // remove: clean, twice.
    assert_eq!(rc(s, "remove"), 0);
    let r = json(s, "remove.out");
    assert_eq!(r["ports_removed"][0], "1");
    assert_eq!(rc(s, "removeloop"), 0);
    assert_eq!(rc(s, "removeagain"), 0);
    assert!(read(s, "removeagain.out").contains("is not exported: nothing changed"));
    let end = read(s, "cfs-3.txt");
    assert!(!end.contains("nvmet/subsystems/") && !end.contains("nvmet/ports/"), "left behind:\n{end}");
    assert!(!end.contains("nvmet/hosts/"), "host entries left behind:\n{end}");

    // save, remove, restore: the same tree, every attribute, and the same file.
    assert_eq!(rc(s, "save"), 0, "{}", read(s, "save.err"));
    assert_eq!(rc(s, "restore"), 0, "{}{}", read(s, "restore.out"), read(s, "restore.err"));
    let r = json(s, "restore.out");
    assert!(r["applied"]["failed"].is_null(), "{}", r["applied"]);
    eprintln!(
        "unload: rc {} {}; restore setup: {}",
        read(s, "unload.rc").trim(),
        read(s, "unload.err").trim(),
        r["setup"]
    );
    assert!(read(s, "restore.err").contains("attr_allow_any_host = 1 (as the file says)"));
    let (full0, full1) = (read(s, "full-0.txt"), read(s, "full-1.txt"));
    assert!(full0.contains("p2pmem=0000:03:00.0") && full0.lines().count() > 60, "{full0}");
    assert_eq!(full0, full1, "restore gave another tree");
    assert_eq!(read(s, "saved.json"), read(s, "saved2.json"));
    let saved = json(s, "saved.json");
    let tcp =
        saved["subsystems"].as_array().unwrap().iter().find(|x| x["nqn"] == "nqn.2026-11.io.p2pdma:switch").unwrap();
    assert_eq!(
        (tcp["attr"]["allow_any_host"].as_str(), &tcp["allowed_hosts"]),
        (Some("0"), &serde_json::json!([HOSTA]))
    );
    assert_eq!(tcp["namespaces"][0]["p2pmem"], "0000:03:00.0");
    // Restore only adds: a second time it refuses, before touching anything.
    assert_eq!(rc(s, "restoreagain"), 1);
    let again = json(s, "restoreagain.out");
    assert_eq!((again["outcome"].as_str(), again["applied"].is_null()), (Some("refused"), true));
    assert_eq!((rc(s, "remove2"), rc(s, "removeloop2")), (0, 0));
    let end = read(s, "cfs-4.txt");
    assert!(
        !end.contains("nvmet/subsystems/") && !end.contains("nvmet/ports/") && !end.contains("nvmet/hosts/"),
        "{end}"
    );
}

const HOSTA: &str = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555";
const HOSTB: &str = "nqn.2014-08.org.nvmexpress:uuid:99999999-8888-7777-6666-555555555555";

#[test]
fn lab_nvmet_root_ports() {
    if skip_lab() {
        return;
    }
    let script = format!(
        r#"{HELPERS}
NQN=nqn.2026-11.io.p2pdma:root-ports
modprobe nvmet; modprobe nvmet-tcp
snap > cfs-0.txt
run check p2pdma check nvme-a nvme-b --json
run refused p2pdma nvmet export --nqn $NQN --ns nvme-b --transport tcp --addr 127.0.0.1 --p2pmem nvme-a --host $HOSTA --json
run refusedtext p2pdma nvmet export --nqn $NQN --ns nvme-b --transport tcp --addr 127.0.0.1 --p2pmem nvme-a --host $HOSTA
snap > cfs-1.txt
# The kernel, asked directly, refuses the same pair when the namespace is enabled.
S=/sys/kernel/config/nvmet/subsystems/nqn.kernel
mkdir $S; mkdir $S/namespaces/1
p2pdma resolve --block nvme-b > $S/namespaces/1/device_path
echo $(p2pdma resolve nvme-a --json | grep '"pci"' | cut -d'"' -f4) > $S/namespaces/1/p2pmem
echo 1 > $S/namespaces/1/enable 2> kernel-enable.err; echo $? > kernel-enable.rc
rmdir $S/namespaces/1; rmdir $S
run auto p2pdma nvmet export --nqn $NQN --ns nvme-b --transport tcp --addr 127.0.0.1 --p2pmem auto --host $HOSTA --json
run list p2pdma nvmet list --json
run remove p2pdma nvmet remove --nqn $NQN --json
snap > cfs-2.txt
dmesg > dmesg.txt
echo done"#
    );
    let share = boot("root-ports", &script);
    let s = share.path();

    // Refused before configfs is touched, with check's reasons.
    let check = json(s, "check.out");
    assert_eq!(rc(s, "check"), 1);
    assert_eq!(rc(s, "refused"), 1, "{}", read(s, "refused.err"));
    let r = json(s, "refused.out");
    assert_eq!((r["outcome"].as_str(), r["steps"].as_array().unwrap().len()), (Some("refused"), 0));
    assert!(r["applied"].is_null() && r["setup"].as_array().unwrap().is_empty());
    let reasons: Vec<&Value> = r["reasons"].as_array().unwrap().iter().collect();
    for why in check["clients"][0]["reasons"].as_array().unwrap() {
        assert!(reasons.contains(&why), "missing {why} in {reasons:?}");
    }
    assert!(read(s, "refusedtext.out").contains("REFUSED (configfs not touched)"));
    assert_eq!(read(s, "cfs-0.txt"), read(s, "cfs-1.txt"), "a refusal changed configfs");

    // The kernel agrees: EINVAL at enable, with the line check predicted.
    assert_eq!(read(s, "kernel-enable.rc").trim(), "1");
    let dmesg = read(s, "dmesg.txt");
    for line in check["clients"][0]["kernel_log"].as_array().unwrap() {
        let msg = line.as_str().unwrap().split_once(": ").unwrap().1;
        assert!(dmesg.contains(msg), "the kernel did not log: {msg}");
    }

    // auto: proceeds without P2P and says so.
    assert_eq!(rc(s, "auto"), 0, "{}", read(s, "auto.err"));
    let a = json(s, "auto.out");
    assert_eq!((a["outcome"].as_str(), a["ok"].as_bool()), (Some("proceed"), Some(true)));
    assert!(a["p2p"]["p2pmem"].is_null());
    assert_eq!(a["p2p"]["used"], false);
    let summary = a["p2p"]["summary"].to_string();
    assert!(summary.contains("p2pmem off (auto found no provider"), "{summary}");
    assert!(summary.contains("P2P will not be used"), "{summary}");
    let l = json(s, "list.out");
    assert_eq!(l["subsystems"][0]["namespaces"][0]["p2pmem"], "0");
    assert_eq!(rc(s, "remove"), 0);
    assert_eq!(read(s, "cfs-0.txt"), read(s, "cfs-2.txt"), "remove left configfs different");
}

/// NVMe/RDMA over soft RoCE (rxe on a dummy interface): rxe DMAs through the CPU, so
/// nvmet-rdma passes no P2P client and the kernel never uses P2P memory for its controllers,
/// with an explicit provider or with `1`, and says nothing. p2pdma predicts exactly that.
#[test]
fn lab_nvmet_rdma_soft_roce() {
    if skip_lab() {
        return;
    }
    let script = format!(
        r#"{HELPERS}
NQN=nqn.2026-11.io.p2pdma:rdma
AUTONQN=nqn.2026-11.io.p2pdma:rdma-auto
modprobe dummy; ip addr add 10.77.0.1/24 dev dummy0; ip link set dummy0 up
run rxe p2pdma nvmet soft-roce --netdev dummy0
run export p2pdma nvmet export --nqn $NQN --ns nvme-b --transport rdma --addr 10.77.0.1 --p2pmem nvme-a --allow-any-host --json
run auto p2pdma nvmet export --nqn $AUTONQN --ns nvme-a --transport rdma --addr 10.77.0.1 --p2pmem auto --allow-any-host --json
modprobe nvme-rdma
ls /sys/block > blk-0.txt
echo transport=rdma,traddr=10.77.0.1,trsvcid=4420,nqn=$NQN > /dev/nvme-fabrics
disk=$(newdisk); echo $disk > rdma-disk.txt
ls /sys/block > blk-0.txt
echo transport=rdma,traddr=10.77.0.1,trsvcid=4420,nqn=$AUTONQN > /dev/nvme-fabrics
disk2=$(newdisk); echo $disk2 > rdma-disk2.txt
dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
dd if=/tmp/pat of=/dev/$disk bs=1M oflag=direct 2>/dev/null
dd if=/dev/$disk of=/tmp/back bs=1M count=4 iflag=direct 2>/dev/null
dd if=/tmp/pat of=/dev/$disk2 bs=1M oflag=direct 2>/dev/null
dd if=/dev/$disk2 of=/tmp/back2 bs=1M count=4 iflag=direct 2>/dev/null
sha256sum /tmp/pat /tmp/back /tmp/back2 > rdma.sha
run list p2pdma nvmet list --json
for c in /sys/class/nvme/nvme*; do case "$(cat $c/transport)" in rdma) echo 1 > $c/delete_controller;; esac; done
run remove p2pdma nvmet remove --nqn $NQN --json
run remove2 p2pdma nvmet remove --nqn $AUTONQN --json
snap > cfs-end.txt
dmesg > dmesg.txt
echo done"#
    );
    let share = boot("switch", &script);
    let s = share.path();
    assert_eq!(rc(s, "rxe"), 0, "{}", read(s, "rxe.err"));
    for (name, p2pmem) in [("export", "0000:03:00.0"), ("auto", "1")] {
        assert_eq!(rc(s, name), 0, "{}", read(s, &format!("{name}.err")));
        let e = json(s, &format!("{name}.out"));
        assert_eq!(e["p2p"]["p2pmem"], p2pmem);
        assert_eq!(e["p2p"]["used"], false, "{name}");
        let rxe = &e["p2p"]["rdma_devices"][0];
        assert_eq!((rxe["device"].as_str(), rxe["pci_device"].is_null()), (Some("rxe0"), true));
        assert!(rxe["why"].as_str().unwrap().contains("never use P2P memory"));
        assert!(e["p2p"]["kernel_log"].as_array().unwrap().is_empty());
    }
    let sums: Vec<String> = read(s, "rdma.sha").lines().map(|l| l.split_whitespace().next().unwrap().into()).collect();
    assert!(sums.len() == 3 && sums.iter().all(|x| *x == sums[0]), "{sums:?}");
    let dmesg = read(s, "dmesg.txt");
    assert!(dmesg.contains("nvmet_rdma: enabling port 1 (10.77.0.1:4420)"), "{dmesg}");
    assert!(dmesg.matches("nvmet: Created nvm controller").count() >= 2, "no RDMA controllers: {dmesg}");
    // The kernel said nothing about P2P: not "using p2pmem", not "no peer-to-peer memory".
    assert!(!dmesg.contains("using p2pmem") && !dmesg.contains("no peer-to-peer memory"), "{dmesg}");
    let l = json(s, "list.out");
    for sub in l["subsystems"].as_array().unwrap() {
        assert_eq!(sub["namespaces"][0]["p2p_in_use"], false);
    }
    assert_eq!((rc(s, "remove"), rc(s, "remove2")), (0, 0));
    let end = read(s, "cfs-end.txt");
    assert!(!end.contains("nvmet/subsystems/") && !end.contains("nvmet/ports/"), "left behind:\n{end}");
}
