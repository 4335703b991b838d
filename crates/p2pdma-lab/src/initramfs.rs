//! The guest's initramfs: busybox-static, the kernel modules (dependencies resolved from
//! `depends=`), a generated `/init`, the static `p2pdma` binary, the command and extra files.

use std::fs;
use std::io::BufWriter;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cache::Freshness;
use crate::cpio::CpioWriter;
use crate::debs::{run_checked, unpacked_in_cache, Unpack};
use crate::elf;
use crate::error::{LabError, Result};
use crate::kernel::{Kernel, Module};

/// Modules loaded by `/init` at boot (with their dependencies).
pub const DEFAULT_BOOT_MODULES: &[&str] = &["nvme", "configfs"];
/// Modules packed into the initramfs (with dependencies) so the guest can `modprobe` them;
/// names the kernel lacks are skipped.
pub const DEFAULT_EXTRA_MODULES: &[&str] = &[
    "nvmet",
    "nvmet-tcp",
    "nvme-tcp",
    "nvme-fabrics",
    "nvme-loop",
    "rdma_rxe",
    "nvmet-rdma",
    "nvme-rdma",
    "dummy",
    "ext4",
    "null_blk",
];
/// Where the host's share directory is mounted in the guest.
pub const GUEST_SHARE_DIR: &str = "/lab/share";
/// Modules for the 9p share (added to the boot modules when a share is used); virtio_pci is
/// built in on trixie and sid, a module on bookworm.
pub(crate) const SHARE_MODULES: &[&str] = &["virtio_pci", "9pnet_virtio", "9p"];

/// What goes into one run's initramfs.
pub(crate) struct InitramfsSpec<'a> {
    pub kernel: &'a Kernel,
    pub ko_cache: PathBuf,
    pub boot_modules: Vec<String>,
    pub extra_modules: Vec<String>,
    pub busybox: PathBuf,
    pub p2pdma_binary: Option<PathBuf>,
    pub extra_files: &'a [(PathBuf, String)],
    /// Shell command to run, or `None` for an interactive shell.
    pub command: Option<&'a str>,
    pub nonce: &'a str,
    pub nvme_count: usize,
    pub share: bool,
}

/// Marker printed by `/init` just before the command starts: `P2PDMA-LAB-BEGIN:<nonce>`.
pub(crate) const BEGIN_MARKER: &str = "P2PDMA-LAB-BEGIN:";
/// Marker printed after the command: `P2PDMA-LAB-EXIT:<nonce>:<status>`.
pub(crate) const EXIT_MARKER: &str = "P2PDMA-LAB-EXIT:";

/// Writes the initramfs to `out`; returns its size in bytes.
pub(crate) fn build_initramfs(spec: &InitramfsSpec<'_>, out: &Path) -> Result<u64> {
    let file = fs::File::create(out).map_err(|e| LabError::io(format!("creating {}", out.display()), e))?;
    let mut cpio = CpioWriter::new(BufWriter::new(file));
    let io = |e: std::io::Error| LabError::io(format!("writing {}", out.display()), e);

    for dir in ["dev", "proc", "sys", "tmp", "run", "root", "etc", "mnt", "lab/share", "usr/local/bin"] {
        cpio.dir(dir, 0o755).map_err(io)?;
    }
    cpio.char_device("dev/console", 0o600, 5, 1).map_err(io)?;
    cpio.char_device("dev/null", 0o666, 1, 3).map_err(io)?;
    cpio.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n").map_err(io)?;
    cpio.file("etc/group", 0o644, b"root:x:0:\n").map_err(io)?;
    cpio.file("etc/hostname", 0o644, b"lab\n").map_err(io)?;

    // busybox and its applets as symlinks.
    let busybox = read(&spec.busybox)?;
    cpio.file("bin/busybox", 0o755, &busybox).map_err(io)?;
    for applet in busybox_applets(&spec.busybox)? {
        if applet != "bin/busybox" {
            cpio.symlink(&applet, "/bin/busybox").map_err(io)?;
        }
    }

    if let Some(binary) = &spec.p2pdma_binary {
        let bytes = read(binary)?;
        if elf::is_static_executable(&bytes) != Some(true) {
            return Err(LabError::NotStatic { path: binary.clone() });
        }
        cpio.file("usr/local/bin/p2pdma", 0o755, &bytes).map_err(io)?;
    }

    // Modules under /lib/modules/<release>/, with a modules.dep for busybox modprobe.
    let modules_root = format!("lib/modules/{}", spec.kernel.release);
    let mut boot = spec.boot_modules.clone();
    if spec.share {
        boot.extend(SHARE_MODULES.iter().map(|s| s.to_string()));
    }
    let boot_resolved = spec.kernel.resolve_modules(&boot, &[], &spec.ko_cache)?;
    let all = spec.kernel.resolve_modules(&boot, &spec.extra_modules, &spec.ko_cache)?;
    for module in &all {
        let bytes = read(&module.host_path)?;
        cpio.file(&format!("{modules_root}/{}", module.guest_path), 0o644, &bytes).map_err(io)?;
    }
    cpio.file(&format!("{modules_root}/modules.dep"), 0o644, modules_dep(&all).as_bytes()).map_err(io)?;
    let boot_list: String = boot_resolved.iter().map(|m| format!("{}\n", m.guest_path)).collect();
    cpio.file("lab/boot-modules", 0o644, boot_list.as_bytes()).map_err(io)?;

    // The run: environment, command, /init.
    let env = format!(
        "LAB_NONCE={}\nLAB_MODE={}\nLAB_NVME_COUNT={}\nLAB_SHARE={}\n",
        spec.nonce,
        if spec.command.is_some() { "run" } else { "shell" },
        spec.nvme_count,
        if spec.share { "1" } else { "" },
    );
    cpio.file("lab/env", 0o644, env.as_bytes()).map_err(io)?;
    if let Some(command) = spec.command {
        cpio.file("lab/command.sh", 0o755, format!("{command}\n").as_bytes()).map_err(io)?;
    }
    cpio.file("init", 0o755, INIT_SCRIPT.as_bytes()).map_err(io)?;

    for (host, guest) in spec.extra_files {
        let bytes = read(host)?;
        let mode = fs::metadata(host).map(|m| m.permissions().mode() & 0o777).unwrap_or(0o644);
        cpio.file(guest, mode, &bytes).map_err(|e| {
            LabError::io(
                format!("adding {} as {guest:?} (guest paths must be absolute, without ..)", host.display()),
                e,
            )
        })?;
    }

    let size = cpio.len();
    let mut writer = cpio.finish().map_err(io)?;
    std::io::Write::flush(&mut writer).map_err(io)?;
    Ok(size)
}

/// `kernel/a.ko: kernel/dep1.ko kernel/dep2.ko` with each module's full dependency closure,
/// nearest first (the kmod convention: load from the end of the list).
fn modules_dep(modules: &[Module]) -> String {
    let by_name = |name: &str| modules.iter().find(|m| m.name == name);
    let mut text = String::new();
    for module in modules {
        let mut closure: Vec<&Module> = Vec::new();
        let mut queue: Vec<&str> = module.depends.iter().map(String::as_str).collect();
        while !queue.is_empty() {
            let name = queue.remove(0);
            if let Some(dep) = by_name(name) {
                if !closure.iter().any(|m| m.name == dep.name) {
                    closure.push(dep);
                    queue.extend(dep.depends.iter().map(String::as_str));
                }
            }
        }
        text.push_str(&module.guest_path);
        text.push(':');
        for dep in closure {
            text.push(' ');
            text.push_str(&dep.guest_path);
        }
        text.push('\n');
    }
    text
}

/// Finds a static busybox: `$P2PDMA_BUSYBOX`, `/bin/busybox`, `/usr/bin/busybox`; installs
/// Debian's busybox-static when missing and running as root with apt-get.
/// A static busybox: `$P2PDMA_BUSYBOX`, else the machine's, else Debian's `busybox-static`
/// of the host's suite, unpacked into `<cache>/busybox/` (never installed: on Debian it
/// conflicts with the `busybox` package a machine may have).
pub(crate) fn find_busybox(cache: &Path) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("P2PDMA_BUSYBOX").filter(|v| !v.is_empty()) {
        return check_busybox(Path::new(&path));
    }
    let candidates = ["/bin/busybox", "/usr/bin/busybox", "/usr/lib/initramfs-tools/bin/busybox"];
    if let Some(found) = candidates.iter().map(Path::new).find(|p| is_static_file(p)) {
        return Ok(found.to_path_buf());
    }
    let suite = crate::qemu::host_codename().map_err(|_| LabError::MissingTool {
        tool: "static busybox".into(),
        hint: "set P2PDMA_BUSYBOX to a static busybox binary (this is no Debian machine: /etc/os-release names no codename)"
            .into(),
    })?;
    let what =
        Unpack { kind: "busybox", suite: &suite, packages: &["busybox-static"], with_missing_dependencies: false };
    unpacked_in_cache(cache, &what, Freshness::Cached, |dir| {
        let inside = ["bin/busybox", "usr/bin/busybox"].map(|p| dir.join(p));
        check_busybox(inside.iter().find(|p| p.exists()).unwrap_or(&inside[0]))
    })
}

fn check_busybox(path: &Path) -> Result<PathBuf> {
    if is_static_file(path) {
        Ok(path.to_path_buf())
    } else {
        Err(LabError::NotStatic { path: path.to_path_buf() })
    }
}

fn is_static_file(path: &Path) -> bool {
    fs::read(path).ok().and_then(|bytes| elf::is_static_executable(&bytes)) == Some(true)
}

/// The applet paths of a busybox (`bin/sh`, `sbin/insmod`, ...), from `busybox --list-full`.
fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let out = run_checked(
        Command::new(busybox).arg("--list-full"),
        "use a busybox built with --list-full support (Debian's busybox-static)",
    )?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && !l.contains(".."))
        .collect())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| LabError::io(format!("reading {}", path.display()), e))
}

/// The guest's /init (busybox sh). Reads /lab/env; in run mode prints the begin and exit
/// markers around /lab/command.sh, waits for the console to drain, and powers off.
const INIT_SCRIPT: &str = r#"#!/bin/sh
export PATH=/usr/local/bin:/usr/local/sbin:/bin:/sbin:/usr/bin:/usr/sbin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
. /lab/env
note() { echo "p2pdma-lab: $*"; }
# Module parameters from the kernel command line (`nvme_core.multipath=N`), as kmod's
# modprobe passes them: the kernel itself applies them only to built-in modules.
modparams=$(tr ' ' '\n' < /proc/cmdline | grep '^[a-z0-9_-]*\.[^=]*=')
while read -r module; do
    params=
    if [ -n "$modparams" ]; then
        name=${module##*/}; name=$(echo "${name%%.ko*}" | tr - _)
        params=$(echo "$modparams" | sed -n "s/^$name\.//p")
    fi
    # shellcheck disable=SC2086 # one word per parameter
    insmod "/lib/modules/$(uname -r)/$module" $params || note "insmod $module failed"
done < /lab/boot-modules
if grep -qw configfs /proc/filesystems; then
    mount -t configfs configfs /sys/kernel/config
fi
hostname lab
ip link set lo up
if [ -n "$LAB_SHARE" ]; then
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 p2pdma-share /lab/share || note "cannot mount the 9p share"
fi
# NVMe probing is asynchronous: wait (up to 10 s) for every namespace's block device (with
# native multipath, its head: hidden path disks `nvme0c0n1` are not counted).
namespaces() { ls -d /sys/block/nvme* 2>/dev/null | grep -cv 'nvme[0-9]*c[0-9]'; }
tries=0
while [ "$(namespaces)" -lt "$LAB_NVME_COUNT" ] && [ "$tries" -lt 200 ]; do
    sleep 0.05
    tries=$((tries + 1))
done
[ "$tries" -lt 200 ] || note "expected $LAB_NVME_COUNT NVMe namespaces, found $(namespaces)"
cd /root
if [ "$LAB_MODE" = run ]; then
    echo "P2PDMA-LAB-BEGIN:$LAB_NONCE"
    sh /lab/command.sh </dev/null
    status=$?
    echo "P2PDMA-LAB-EXIT:$LAB_NONCE:$status"
    # stty sets the mode with TCSADRAIN: it returns once the console has sent everything.
    stty -F /dev/console onlcr 2>/dev/null
else
    echo "p2pdma-lab shell: p2pdma is on PATH; 'exit' powers the machine off (QEMU: Ctrl-a x quits)"
    setsid cttyhack sh -l
fi
sync
poweroff -f
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, deps: &[&str]) -> Module {
        Module {
            name: name.into(),
            guest_path: format!("kernel/{name}.ko"),
            host_path: PathBuf::new(),
            depends: deps.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn modules_dep_lists_the_closure() {
        let modules = [
            module("nvme_auth", &[]),
            module("nvme_keyring", &[]),
            module("nvme_core", &["nvme_auth", "nvme_keyring"]),
            module("nvme", &["nvme_core"]),
        ];
        let dep = modules_dep(&modules);
        assert!(dep.contains("kernel/nvme.ko: kernel/nvme_core.ko kernel/nvme_auth.ko kernel/nvme_keyring.ko\n"));
        assert!(dep.contains("kernel/nvme_auth.ko:\n"));
    }

    #[test]
    fn init_script_markers_match_constants() {
        assert!(INIT_SCRIPT.contains(&format!("{BEGIN_MARKER}$LAB_NONCE")));
        assert!(INIT_SCRIPT.contains(&format!("{EXIT_MARKER}$LAB_NONCE:$status")));
        assert!(INIT_SCRIPT.contains(crate::machine::SHARE_TAG));
        assert!(INIT_SCRIPT.contains(GUEST_SHARE_DIR));
    }
}
