//! Block devices and files opened for direct I/O (O_DIRECT), so that devices DMA straight
//! to or from the buffer, P2P memory included.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::{IoCause, MemError};

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
        Ok(DirectFile { fd, path: path.into() })
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
}
