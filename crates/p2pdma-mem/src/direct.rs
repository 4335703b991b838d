//! Block devices and files opened for direct I/O (O_DIRECT), so that devices DMA straight
//! to or from the buffer, P2P memory included.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::{IoBuffer, IoCause, MemError};

/// How a [`DirectFile`] is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// `exclusive`: a block device opened with O_EXCL, which fails with EBUSY while it (or a
    /// partition of it) is mounted, held by another driver or opened exclusively, and keeps
    /// others from claiming it while we write. `create`: a regular file that may not exist yet.
    Write {
        exclusive: bool,
        create: bool,
    },
}

pub struct DirectFile {
    fd: OwnedFd,
    path: PathBuf,
}

impl DirectFile {
    pub fn open(path: &Path, access: Access) -> Result<Self, MemError> {
        let flags = match access {
            Access::Read => OFlags::RDONLY,
            Access::Write { exclusive, create } => {
                let mut f = OFlags::RDWR;
                f.set(OFlags::EXCL, exclusive);
                f.set(OFlags::CREATE, create);
                f
            }
        };
        let fd = rustix::fs::open(path, flags | OFlags::DIRECT | OFlags::CLOEXEC, Mode::from_raw_mode(0o644))
            .map_err(|e| MemError::Io { path: path.into(), op: "open", offset: 0, cause: IoCause(e) })?;
        let file = DirectFile { fd, path: path.into() };
        if matches!(access, Access::Write { .. }) {
            file.lock_if_regular()?;
        }
        Ok(file)
    }

    /// A regular file written by a copy is locked for writing (an open file description
    /// lock over the whole file, released when the file is closed), so a second p2pdma
    /// writing the same file is refused instead of racing. Block devices have O_EXCL.
    fn lock_if_regular(&self) -> Result<(), MemError> {
        let stat = rustix::fs::fstat(&self.fd).map_err(|e| self.error("fstat", 0, e))?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Ok(());
        }
        // SAFETY: an all-zero `flock` is a valid value (plain integers).
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        // l_start = l_len = 0: the whole file, however far it grows; l_pid must be 0 for OFD locks.
        // SAFETY: F_OFD_SETLK reads the `flock` we pass, which lives across the call; the fd
        // is ours and open.
        let r = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&self.fd), libc::F_OFD_SETLK, &lock) };
        if r == 0 {
            return Ok(());
        }
        match Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO) {
            Errno::AGAIN | Errno::ACCESS => Err(MemError::Locked { path: self.path.clone() }),
            // File systems without locks (some network ones): copy unlocked.
            Errno::NOLCK | Errno::INVAL | Errno::NOSYS => Ok(()),
            e => Err(self.error("lock", 0, e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Reads exactly `buf.len()` bytes at `offset`; a short read is an error naming where.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), MemError> {
        let fd = self.fd.as_fd();
        self.until_done("read", buf.len(), offset, Errno::NXIO, |done, at| rustix::io::pread(fd, &mut buf[done..], at))
    }

    /// Writes all of `buf` at `offset`.
    pub fn write_all_at(&self, buf: &[u8], offset: u64) -> Result<(), MemError> {
        let fd = self.fd.as_fd();
        self.until_done("write", buf.len(), offset, Errno::NOSPC, |done, at| rustix::io::pwrite(fd, &buf[done..], at))
    }

    /// Reads `len` bytes at `offset` into the start of `buf` (P2P or host memory): the
    /// kernel writes the memory, the CPU does not touch it.
    pub fn read_exact_into(&self, buf: &mut IoBuffer, len: usize, offset: u64) -> Result<(), MemError> {
        assert!(len <= buf.len(), "the read fits the buffer");
        let ptr = buf.as_mut_ptr();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.fd);
        self.until_done("read", len, offset, Errno::NXIO, |done, at| {
            // SAFETY: `done < len <= buf.len()`: the kernel writes inside the buffer, which
            // `&mut buf` keeps alive and unshared for the call. A raw pointer, not a slice,
            // because the memory may be a device's.
            let r = unsafe { libc::pread(fd, ptr.add(done).cast(), len - done, at as libc::off_t) };
            syscall_result(r)
        })
    }

    /// Writes the first `len` bytes of `buf` at `offset` (see [`DirectFile::read_exact_into`]).
    pub fn write_all_from(&self, buf: &mut IoBuffer, len: usize, offset: u64) -> Result<(), MemError> {
        assert!(len <= buf.len(), "the write fits the buffer");
        let ptr = buf.as_mut_ptr().cast_const();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.fd);
        self.until_done("write", len, offset, Errno::NOSPC, |done, at| {
            // SAFETY: as in `read_exact_into`; the kernel only reads the buffer.
            let r = unsafe { libc::pwrite(fd, ptr.add(done).cast(), len - done, at as libc::off_t) };
            syscall_result(r)
        })
    }

    /// Makes written data durable (the device's volatile cache included).
    pub fn sync(&self) -> Result<(), MemError> {
        rustix::fs::fsync(&self.fd).map_err(|e| self.error("fsync", 0, e))
    }

    pub(crate) fn error(&self, op: &'static str, offset: u64, e: Errno) -> MemError {
        MemError::Io { path: self.path.clone(), op, offset, cause: IoCause(e) }
    }

    /// Repeats `step(bytes done, device offset)` until `len` bytes are transferred, retrying
    /// on EINTR; a zero-byte step is reported as `at_end` at the offset where it happened.
    fn until_done(
        &self,
        op: &'static str,
        len: usize,
        offset: u64,
        at_end: Errno,
        mut step: impl FnMut(usize, u64) -> Result<usize, Errno>,
    ) -> Result<(), MemError> {
        let mut done = 0usize;
        while done < len {
            let at = offset + done as u64;
            match step(done, at) {
                Ok(0) => return Err(self.error(op, at, at_end)),
                Ok(n) => done += n,
                Err(Errno::INTR) => {}
                Err(e) => return Err(self.error(op, at, e)),
            }
        }
        Ok(())
    }
}

fn syscall_result(r: isize) -> Result<usize, Errno> {
    usize::try_from(r).map_err(|_| Errno::from_io_error(&std::io::Error::last_os_error()).unwrap_or(Errno::IO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_path_and_offset() {
        let err = DirectFile::open(Path::new("/nonexistent/dev"), Access::Read).err().unwrap();
        assert_eq!(
            err.to_string(),
            "/nonexistent/dev: open failed at offset 0: No such file or directory (os error 2)"
        );
        assert_eq!(err.errno(), Some(2));
    }

    #[test]
    fn a_second_writer_of_a_file_is_refused_while_the_first_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dst");
        let write = Access::Write { exclusive: false, create: true };
        let first = DirectFile::open(&path, write).unwrap();
        let err = DirectFile::open(&path, write).err().unwrap();
        assert!(matches!(err, MemError::Locked { .. }), "{err}");
        assert!(err.to_string().contains("another writer"), "{err}");
        assert!(DirectFile::open(&path, Access::Read).is_ok(), "readers are not locked out");
        drop(first);
        assert!(DirectFile::open(&path, write).is_ok(), "the lock goes with the first writer");
    }
}
