//! Getting the machine ready: configfs mounted at `/sys/kernel/config`, nvmet and the
//! transport's target module loaded (`modprobe`). Only for the machine's own configfs.

use std::path::Path;
use std::process::Command;

use crate::plan::Transport;
use crate::NvmetError;

/// The machine's configfs mount point.
pub const CONFIGFS: &str = "/sys/kernel/config";

fn module_loaded(name: &str) -> bool {
    Path::new("/sys/module").join(name.replace('-', "_")).exists()
}

fn configfs_mounted() -> bool {
    p2pdma_host::bounded::read_string(Path::new("/proc/mounts"), p2pdma_host::bounded::Bound::PROC_TABLE)
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some(CONFIGFS) && l.contains(" configfs ")))
        .unwrap_or(false)
}

fn run(what: &str, cmd: &mut Command, hint: &str) -> Result<(), NvmetError> {
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
            Err(NvmetError::Setup {
                what: what.into(),
                reason: format!("{}{hint}", if err.is_empty() { format!("failed ({})", o.status) } else { err + "; " }),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(NvmetError::Setup {
            what: what.into(),
            reason: format!("{} is not installed{hint}", cmd.get_program().to_string_lossy()),
        }),
        Err(e) => Err(NvmetError::Setup { what: what.into(), reason: e.to_string() }),
    }
}

fn modprobe(module: &str) -> Result<(), NvmetError> {
    run(
        &format!("modprobe {module}"),
        Command::new("modprobe").arg(module),
        &format!(
            " (is {module} built for this kernel? `ls /lib/modules/$(uname -r)`; install kmod for modprobe, or load it yourself)"
        ),
    )
}

/// Mounts configfs and loads `nvmet` and the transport's module where needed; returns what
/// it did (`modprobe nvmet`, ...). Needs root when anything is missing.
pub fn prepare(transport: Option<Transport>) -> Result<Vec<String>, NvmetError> {
    let mut modules = vec!["nvmet"];
    modules.extend(transport.map(|t| t.module()));
    let missing: Vec<&str> = modules.iter().copied().filter(|m| !module_loaded(m)).collect();
    let mount = !configfs_mounted();
    if missing.is_empty() && !mount {
        return Ok(Vec::new());
    }
    if !rustix::process::geteuid().is_root() {
        let what =
            if mount { format!("mounting configfs at {CONFIGFS}") } else { format!("loading {}", missing.join(", ")) };
        return Err(NvmetError::Setup { what, reason: "needs root".into() });
    }
    let mut done = Vec::new();
    if mount {
        let filesystems = Path::new("/proc/filesystems");
        let builtin = p2pdma_host::bounded::read_string(filesystems, p2pdma_host::bounded::Bound::PROC_TABLE)
            .is_ok_and(|f| f.contains("configfs"));
        if !builtin {
            modprobe("configfs")?;
            done.push("modprobe configfs".into());
        }
        run(
            &format!("mount configfs at {CONFIGFS}"),
            Command::new("mount").args(["-t", "configfs", "configfs", CONFIGFS]),
            "",
        )?;
        done.push(format!("mount -t configfs configfs {CONFIGFS}"));
    }
    for m in missing {
        modprobe(m)?;
        done.push(format!("modprobe {m}"));
    }
    Ok(done)
}

/// What `path` is (following symlinks), and for a block device its kernel name, from
/// `<sysfs>/dev/block/<major>:<minor>` (so `/dev/disk/by-id/...` works too).
pub fn inspect_path(path: &Path, sysfs: &Path) -> (crate::plan::PathKind, Option<String>) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use crate::plan::PathKind;
    let m = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (PathKind::Missing, None),
        Err(e) => return (PathKind::NotBlock(format!("path that cannot be examined ({e})")), None),
    };
    let t = m.file_type();
    if t.is_block_device() {
        let dev = m.rdev();
        let link = sysfs.join(format!("dev/block/{}:{}", rustix::fs::major(dev), rustix::fs::minor(dev)));
        let name = std::fs::read_link(&link)
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
            .or_else(|| path.file_name().map(|n| n.to_string_lossy().into_owned()));
        return (PathKind::Block, name);
    }
    let what = if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_char_device() {
        "character device"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else {
        "special file"
    };
    (PathKind::NotBlock(what.into()), None)
}

/// `NETLINK_RDMA` message type for `RDMA_NLDEV_CMD_NEWLINK` (`RDMA_NL_GET_TYPE(RDMA_NL_NLDEV, 3)`).
const RDMA_NLDEV_NEWLINK: u16 = (5 << 10) + 3;
const RDMA_NLDEV_ATTR_DEV_NAME: u16 = 2;
const RDMA_NLDEV_ATTR_NDEV_NAME: u16 = 51;
const RDMA_NLDEV_ATTR_LINK_TYPE: u16 = 65;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;

/// The netlink request `rdma link add NAME type TYPE netdev NETDEV` sends.
fn newlink_message(name: &str, link_type: &str, netdev: &str, seq: u32) -> Vec<u8> {
    let mut attrs = Vec::new();
    for (kind, value) in
        [(RDMA_NLDEV_ATTR_DEV_NAME, name), (RDMA_NLDEV_ATTR_LINK_TYPE, link_type), (RDMA_NLDEV_ATTR_NDEV_NAME, netdev)]
    {
        let len = 4 + value.len() + 1;
        attrs.extend_from_slice(&(len as u16).to_ne_bytes());
        attrs.extend_from_slice(&kind.to_ne_bytes());
        attrs.extend_from_slice(value.as_bytes());
        attrs.push(0);
        attrs.resize(attrs.len().next_multiple_of(4), 0);
    }
    let mut msg = Vec::with_capacity(16 + attrs.len());
    msg.extend_from_slice(&((16 + attrs.len()) as u32).to_ne_bytes());
    msg.extend_from_slice(&RDMA_NLDEV_NEWLINK.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg.extend_from_slice(&seq.to_ne_bytes());
    msg.extend_from_slice(&0u32.to_ne_bytes());
    msg.extend_from_slice(&attrs);
    msg
}

/// Creates a soft-RoCE device `name` on network interface `netdev`, as `rdma link add NAME
/// type rxe netdev NETDEV` (iproute2) does: one RDMA netlink NEWLINK request. For trying
/// NVMe/RDMA without an RNIC (the lab's busybox guest has no iproute2). Loads rdma_rxe first.
pub fn add_soft_roce(name: &str, netdev: &str) -> Result<(), NvmetError> {
    use rustix::net::{netlink, recv, sendto, socket, AddressFamily, RecvFlags, SendFlags, SocketType};
    let what = format!("rdma link add {name} type rxe netdev {netdev}");
    let fail = |reason: String| NvmetError::Setup { what: what.clone(), reason };
    if !module_loaded("rdma_rxe") {
        modprobe("rdma_rxe")?;
    }
    let fd = socket(AddressFamily::NETLINK, SocketType::RAW, Some(netlink::RDMA)).map_err(|e| fail(e.to_string()))?;
    let msg = newlink_message(name, "rxe", netdev, 1);
    sendto(&fd, &msg, SendFlags::empty(), &netlink::SocketAddrNetlink::new(0, 0)).map_err(|e| fail(e.to_string()))?;
    let mut buf = [0u8; 4096];
    let (_, n) = recv(&fd, &mut buf[..], RecvFlags::empty()).map_err(|e| fail(e.to_string()))?;
    let ty = u16::from_ne_bytes([buf[4], buf[5]]);
    if n < 20 || ty != NLMSG_ERROR {
        return Err(fail(format!("unexpected netlink answer (type {ty}, {n} bytes)")));
    }
    match i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]) {
        0 => Ok(()),
        e => Err(fail(std::io::Error::from_raw_os_error(-e).to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PathKind;

    #[test]
    fn newlink_message_is_what_rdma_link_add_sends() {
        let m = newlink_message("rxe0", "rxe", "dummy0", 7);
        // header: len, type 5123, flags REQUEST|ACK, seq 7, pid 0
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize, m.len());
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 5123);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 5);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 7);
        // first attribute: len 9 ("rxe0\0" + 4), type DEV_NAME, padded to 12
        assert_eq!(u16::from_ne_bytes([m[16], m[17]]), 9);
        assert_eq!(u16::from_ne_bytes([m[18], m[19]]), 2);
        assert_eq!(&m[20..25], b"rxe0\0");
        assert_eq!(u16::from_ne_bytes([m[30], m[31]]), 65);
        assert_eq!(m.len(), 16 + 12 + 8 + 12);
    }

    #[test]
    fn paths_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        assert_eq!(inspect_path(&f, Path::new("/sys")).0, PathKind::NotBlock("regular file".into()));
        assert_eq!(inspect_path(dir.path(), Path::new("/sys")).0, PathKind::NotBlock("directory".into()));
        assert_eq!(
            inspect_path(Path::new("/dev/null"), Path::new("/sys")).0,
            PathKind::NotBlock("character device".into())
        );
        assert_eq!(inspect_path(&dir.path().join("nope"), Path::new("/sys")).0, PathKind::Missing);
    }
}
