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
    std::fs::read_to_string("/proc/mounts")
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
        let builtin = std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("configfs"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PathKind;

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
