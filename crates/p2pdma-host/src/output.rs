//! The one way p2pdma writes a file (`snapshot -o`, `report -o`, `metrics -o`, `topo --svg`,
//! `nvmet save`, `manpages`, the kernel-image whitelist cache): whole or not at all, and
//! never through a link someone else planted. p2pdma runs as root, so a symbolic link in
//! `/tmp` owned by another user and pointing at `/etc/shadow` must not be written through.
//!
//! [`write_file`]:
//! - a regular file or nothing at the name: a temporary file is created in the
//!   destination's own directory with `O_CREAT | O_EXCL` (tempfile's `NamedTempFile`: an
//!   existing name or link there makes the create fail, it is never followed), written,
//!   synced, then renamed onto the name. The destination is never resolved first
//!   (`canonicalize`): the rename replaces whatever is at the name itself. An existing
//!   file's permission bits are kept;
//! - a symbolic link: refused when the kernel's own `fs.protected_symlinks` rule would
//!   refuse to follow it: the link sits in a sticky, world-writable directory and is owned
//!   neither by the caller (euid) nor by the directory's owner. Otherwise a link owned by
//!   the caller is written through (its target is replaced as above, the link stays; each
//!   further link is judged the same way), and a link owned by someone else (allowed by the
//!   rule: a directory that is not sticky, or the directory owner's link) is itself replaced
//!   by the file, so nothing outside the link's directory is touched;
//! - a directory: refused; a device or pipe (`/dev/null`): written in place, opened without
//!   following a link and without creating anything, as there is nothing to rename over.

use std::fs::{self, Metadata};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Error;

/// Links followed one after another before giving up (the kernel's own limit is 40).
const MAX_LINKS: usize = 8;

/// Writes `content` to `path` as the module doc says. `mode` is the permission of a new file
/// (before the umask); an existing file keeps its own.
pub fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<(), Error> {
    let mut path = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => Some(m),
            // Its directory is missing or no directory: said by `replace`, naming it.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => None,
            Err(e) => return Err(Error::io(&path, e)),
        };
        match meta {
            Some(m) if m.file_type().is_symlink() => match through_link(&path, &m)? {
                Some(target) => path = target,
                None => return replace(&path, content, mode, None),
            },
            Some(m) if m.is_dir() => return Err(Error::invalid(&path, "it is a directory")),
            Some(m) if !m.is_file() => return write_in_place(&path, content),
            Some(m) => return replace(&path, content, m.permissions().mode(), Some(&m)),
            None => return replace(&path, content, mode, None),
        }
    }
    Err(Error::invalid(&path, "too many levels of symbolic links"))
}

/// Creates `dir` and its missing parents with mode 0700 (a cache: nobody else's business);
/// an existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| Error::io(dir, e))
}

/// The link at `link` judged by `fs.protected_symlinks`: an error when refused, the path it
/// names when it is the caller's own (written through), None when the link itself is to be
/// replaced.
fn through_link(link: &Path, meta: &Metadata) -> Result<Option<PathBuf>, Error> {
    let dir = parent(link);
    let dir_meta = fs::metadata(&dir).map_err(|e| Error::io(&dir, e))?;
    let euid = rustix::process::geteuid().as_raw();
    if refused_by_protected_symlinks(&dir_meta, meta.uid(), euid) {
        return Err(Error::invalid(
            link,
            format!(
                "refused: a symbolic link owned by uid {} in the sticky world-writable directory {} (the kernel's \
                 fs.protected_symlinks rule); the file it points to is left unchanged",
                meta.uid(),
                dir.display()
            ),
        ));
    }
    if meta.uid() != euid {
        return Ok(None);
    }
    let target = fs::read_link(link).map_err(|e| Error::io(link, e))?;
    Ok(Some(if target.is_absolute() { target } else { dir.join(target) }))
}

/// The kernel's rule (`may_follow_link` in fs/namei.c): a link in a sticky, world-writable
/// directory is followed only when its owner is the follower or the directory's owner.
pub fn refused_by_protected_symlinks(dir: &Metadata, link_uid: u32, euid: u32) -> bool {
    const STICKY: u32 = 0o1000;
    const WORLD_WRITABLE: u32 = 0o002;
    let sticky_world = dir.mode() & STICKY != 0 && dir.mode() & WORLD_WRITABLE != 0;
    sticky_world && link_uid != euid && link_uid != dir.uid()
}

/// A temporary file beside `path`, written, synced, renamed onto it.
fn replace(path: &Path, content: &[u8], mode: u32, existing: Option<&Metadata>) -> Result<(), Error> {
    let dir = parent(path);
    match fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Error::invalid(path, format!("{} is not a directory", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::invalid(path, format!("{} does not exist", dir.display())))
        }
        Err(e) => return Err(Error::io(&dir, e)),
    }
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(mode & 0o7777))
        .tempfile_in(&dir)
        .map_err(|e| Error::invalid(path, format!("cannot create a file in {}: {}", dir.display(), os_words(&e))))?;
    if existing.is_some() {
        // The umask applied at creation: an existing file's bits are set exactly.
        tmp.as_file().set_permissions(fs::Permissions::from_mode(mode & 0o7777)).map_err(|e| Error::io(path, e))?;
    }
    tmp.write_all(content).and_then(|_| tmp.as_file().sync_all()).map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::invalid(path, os_words(&e.error)))?;
    Ok(())
}

/// A device or a pipe: written where it is, never created, never through a link.
fn write_in_place(path: &Path, content: &[u8]) -> Result<(), Error> {
    let flags = (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32;
    let mut f = fs::OpenOptions::new().write(true).custom_flags(flags).open(path).map_err(|e| Error::io(path, e))?;
    f.write_all(content).and_then(|_| f.flush()).map_err(|e| Error::io(path, e))
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The OS's words for an I/O error, without tempfile's own wrapping of the path.
fn os_words(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_write_file_replaces_whole_follows_own_links_keeps_devices() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("out.json");
        write_file(&f, b"first", 0o666).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
        write_file(&f, b"second", 0o666).unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"second");
        assert_eq!(fs::metadata(&f).unwrap().permissions().mode() & 0o777, 0o640);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("out.json", &link).unwrap();
        write_file(&link, b"third", 0o666).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&f).unwrap(), b"third");
        let e = write_file(dir.path(), b"x", 0o666).unwrap_err().to_string();
        assert!(e.ends_with("it is a directory"), "{e}");
        let e = write_file(&dir.path().join("no/such/x"), b"x", 0o666).unwrap_err().to_string();
        assert!(e.ends_with("does not exist"), "{e}");
        write_file(Path::new("/dev/null"), b"x", 0o666).unwrap();
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
    }

    #[test]
    fn test_protected_symlinks_rule_matches_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
        let m = fs::metadata(dir.path()).unwrap();
        let owner = m.uid();
        assert!(refused_by_protected_symlinks(&m, 65534, owner + 1));
        assert!(!refused_by_protected_symlinks(&m, 65534, 65534), "the follower's own link");
        assert!(!refused_by_protected_symlinks(&m, owner, 65534), "the directory owner's link");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!refused_by_protected_symlinks(&fs::metadata(dir.path()).unwrap(), 65534, owner + 1), "not sticky");
    }
}
