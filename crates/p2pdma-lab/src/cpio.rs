//! A writer for "newc" cpio archives, the format the Linux kernel unpacks as initramfs.
//!
//! Each entry is a 110-byte ASCII header (`070701` then thirteen 8-digit hex fields), the
//! NUL-terminated name padded to a 4-byte boundary, then the data padded the same way. The
//! archive ends with an entry named `TRAILER!!!`. Several archives may be concatenated; the
//! kernel unpacks them in order.

use std::collections::BTreeSet;
use std::io::{self, Write};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Writes a newc cpio archive to `W`, creating parent directories on the way.
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    dirs: BTreeSet<String>,
    finished: bool,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive.
    pub fn new(out: W) -> Self {
        CpioWriter { out, written: 0, next_ino: 1, dirs: BTreeSet::new(), finished: false }
    }

    /// Adds a directory (and its parents). Adding one twice is harmless.
    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        let path = normalize(path)?;
        if self.dirs.contains(&path) {
            return Ok(());
        }
        self.parents(&path)?;
        self.dirs.insert(path.clone());
        self.entry(&path, S_IFDIR | (mode & 0o7777), 2, &[])
    }

    /// Adds a regular file with the given permission bits (e.g. 0o755).
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.entry(&path, S_IFREG | (mode & 0o7777), 1, data)
    }

    /// Adds a symbolic link `path` -> `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.entry(&path, S_IFLNK | 0o777, 1, target.as_bytes())
    }

    /// Adds a character device node.
    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.entry_dev(&path, S_IFCHR | (mode & 0o7777), (major, minor))
    }

    /// Writes the trailer and returns the output. Bytes written so far: [`Self::len`].
    pub fn finish(mut self) -> io::Result<W> {
        self.trailer()?;
        Ok(self.out)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.written
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }

    fn trailer(&mut self) -> io::Result<()> {
        if !self.finished {
            self.finished = true;
            self.header("TRAILER!!!", 0, 0, 1, 0, (0, 0))?;
            self.pad()?;
        }
        Ok(())
    }

    fn parents(&mut self, path: &str) -> io::Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/') {
            if !self.dirs.contains(parent) {
                self.dir(parent, 0o755)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{name}: larger than 4 GiB")))?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(name, ino, mode, nlink, size, (0, 0))?;
        self.write(data)?;
        self.pad()
    }

    fn entry_dev(&mut self, name: &str, mode: u32, rdev: (u32, u32)) -> io::Result<()> {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(name, ino, mode, 1, 0, rdev)
    }

    fn header(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, size: u32, rdev: (u32, u32)) -> io::Result<()> {
        let name_size = name.len() + 1;
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name_size as u32, 0];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.write(header.as_bytes())?;
        self.write(name.as_bytes())?;
        self.write(&[0])?;
        self.pad()
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.written % 4) as usize;
        if rem != 0 {
            self.write(&[0u8; 3][..4 - rem])?;
        }
        Ok(())
    }
}

/// Strips leading "/" and "./", rejects empty components, "..", NUL and overly long names.
fn normalize(path: &str) -> io::Result<String> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, format!("bad archive path {path:?}: {why}"));
    if path.contains('\0') {
        return Err(bad("contains NUL"));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(bad("contains ..")),
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    if joined.is_empty() {
        return Err(bad("empty"));
    }
    if joined.len() > 4000 {
        return Err(bad("too long"));
    }
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, mode, rdev, data) of one parsed entry.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Parses a newc archive back into entries.
    fn parse(mut bytes: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut offset = 0usize;
        loop {
            assert_eq!(&bytes[..6], b"070701", "magic at offset {offset}");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&bytes[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap()
            };
            let (mode, size, rmaj, rmin, namesize) =
                (field(1), field(6) as usize, field(9), field(10), field(11) as usize);
            let name = std::str::from_utf8(&bytes[110..110 + namesize - 1]).unwrap().to_string();
            assert_eq!(bytes[110 + namesize - 1], 0);
            let data_start = (110 + namesize).div_ceil(4) * 4;
            let data = bytes[data_start..data_start + size].to_vec();
            let next = (data_start + size).div_ceil(4) * 4;
            offset += next;
            bytes = &bytes[next..];
            if name == "TRAILER!!!" {
                assert!(bytes.is_empty());
                return out;
            }
            out.push((name, mode, (rmaj, rmin), data));
        }
    }

    #[test]
    fn writes_entries_with_parents_and_padding() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("/bin/hello", 0o755, b"hi!").unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        w.dir("/bin", 0o755).unwrap(); // already there: no second entry
        w.char_device("/dev/console", 0o600, 5, 1).unwrap();
        w.file("./lab/a/b", 0o644, b"").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse(&bytes);
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["bin", "bin/hello", "bin/sh", "dev", "dev/console", "lab", "lab/a", "lab/a/b"]);
        assert_eq!(entries[0].1, 0o040755);
        assert_eq!(entries[1].1, 0o100755);
        assert_eq!(entries[1].3, b"hi!");
        assert_eq!(entries[2].1, 0o120777);
        assert_eq!(entries[2].3, b"busybox");
        assert_eq!(entries[4].1, 0o020600);
        assert_eq!(entries[4].2, (5, 1));
    }

    #[test]
    fn header_layout_is_exact() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("a", 0o644, b"xyz").unwrap();
        let bytes = w.finish().unwrap();
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(
            header,
            "07070100000001000081a40000000000000000000000010000000000000003000000000000000000000000000000000000000200000000"
        );
        assert_eq!(&bytes[110..112], b"a\0");
        assert_eq!(&bytes[112..115], b"xyz");
        assert_eq!(bytes[115], 0);
    }

    #[test]
    fn rejects_bad_paths() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file("../etc/passwd", 0o644, b"").is_err());
        assert!(w.file("a\0b", 0o644, b"").is_err());
        assert!(w.file("/", 0o644, b"").is_err());
    }

    #[test]
    fn empty_archive_is_only_a_trailer() {
        let bytes = CpioWriter::new(Vec::new()).finish().unwrap();
        assert!(parse(&bytes).is_empty());
    }
}
