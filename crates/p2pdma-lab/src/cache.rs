//! The lab's download cache (`~/.cache/p2pdma`): one writer at a time per entry.
//!
//! Every fetch takes an exclusive `flock` on `<cache>/<entry>.lock`, looks at the cache again
//! once it holds the lock (another process may have just filled it), builds in a staging
//! directory and renames it into place. So two processes, or twenty test threads, asking for
//! the same kernel or QEMU at once get one download and the same result; a fetch killed
//! half-way leaves only a staging directory, which the next fetch replaces.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::error::{LabError, Result};

/// Whether a fetch may answer from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Freshness {
    /// Use what the cache holds without asking the network; fetch only what is missing.
    #[default]
    Cached,
    /// Ask the mirror for the current version (`p2pdma lab fetch --refresh`); a version
    /// already in the cache is still not downloaded again.
    Refresh,
}

/// An exclusive lock on one cache entry, released when dropped (or when the process dies:
/// the kernel drops `flock` locks with the file).
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

/// Takes the lock of `entry` in `cache` (creating the cache directory, 0700, when missing),
/// waiting for another holder with a note on stderr.
pub fn lock(cache: &Path, entry: &str) -> Result<CacheLock> {
    create_private_dir(cache)?;
    let path = cache.join(format!("{entry}.lock"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(|e| LabError::io(format!("opening the lock {}", path.display()), e))?;
    if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        crate::stderr_line(&format!(
            "p2pdma-lab: waiting for another p2pdma fetching into {}",
            cache.join(entry).display()
        ));
        flock(&file, FlockOperation::LockExclusive)
            .map_err(|e| LabError::io(format!("locking {}", path.display()), e.into()))?;
    }
    Ok(CacheLock { _file: file })
}

/// `mkdir -p` with mode 0700 for the directories it creates (the cache holds what the lab
/// boots as root: other users must not swap it).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn lock_serializes_holders_and_creates_a_private_cache() {
        let dir = tempfile_dir();
        let cache = dir.join("cache");
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (cache, inside, most) = (cache.clone(), inside.clone(), most.clone());
                std::thread::spawn(move || {
                    let _held = lock(&cache, "entry").unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1, "two holders at once");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&cache).unwrap().permissions().mode() & 0o777, 0o700);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lock_refuses_a_symlinked_lock_file() {
        let dir = tempfile_dir();
        fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("entry.lock")).unwrap();
        assert!(lock(&dir, "entry").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        std::env::temp_dir().join(format!(
            "p2pdma-lab-cache-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ))
    }
}
