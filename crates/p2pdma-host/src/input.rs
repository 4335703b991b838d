//! Reading the files a person names (topology files, snapshots, `diff`'s files, `nvmet
//! restore`'s config): only regular files and pipes, as text, with one clear error for each
//! way a wrong file shows up; `read_spec` and `read_snapshot` hand the text to core.

use std::io::Read;
use std::path::Path;

use p2pdma_core::spec::{self, Spec};
use p2pdma_core::{snapshot, Topology};

use crate::Error;

/// Files larger than this are not topology files or snapshots (a 1,000-device snapshot
/// is a few MiB); refusing them keeps a mistaken `--snapshot /dev/sda1`-sized file out.
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// The text of `path`. Directories and device files are refused before any read (reading
/// `/dev/zero` would never end); binary content, an empty file and an oversized one are
/// errors that say so.
pub fn read_text(path: &Path) -> Result<String, Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let kind = file_kind(&meta);
    if let Some(kind) = kind {
        return Err(Error::invalid(path, format!("is {kind}, not a file")));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    read_text_from(file, path)
}

/// The text of a stream (standard input, an opened file), `shown` naming it in errors:
/// the same limits as [`read_text`] (`restore - < /dev/zero` must end).
pub fn read_text_from(stream: impl Read, shown: &Path) -> Result<String, Error> {
    let path = shown;
    let mut bytes = Vec::new();
    stream.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(Error::invalid(path, format!("is larger than {} MiB: not a p2pdma input", MAX_INPUT_BYTES >> 20)));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::invalid(path, "is not a text file (binary content, or not UTF-8)"))?;
    if text.trim().is_empty() {
        return Err(Error::invalid(path, "is empty"));
    }
    Ok(text)
}

/// Reads and lowers a topology file.
pub fn read_spec(path: &Path) -> Result<(Spec, Topology), Error> {
    let text = read_text(path)?;
    Ok(spec::from_text(&text, path)?)
}

/// Reads a snapshot file.
pub fn read_snapshot(path: &Path) -> Result<Topology, Error> {
    let text = read_text(path)?;
    Ok(snapshot::from_json(&text, path)?)
}

/// What a path is when it is not a regular file or a pipe (`--spec <(...)` is a pipe).
fn file_kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() || t.is_fifo() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(path: &Path) -> String {
        read_text(path).unwrap_err().to_string()
    }

    #[test]
    fn wrong_kinds_of_file_are_named_not_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(err(dir.path()).ends_with("is a directory, not a file"), "{}", err(dir.path()));
        assert!(err(Path::new("/dev/zero")).ends_with("is a character device, not a file"));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        assert!(err(&empty).ends_with("is empty"));
        let binary = dir.path().join("bin");
        std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
        assert!(err(&binary).contains("not a text file"));
        let missing = dir.path().join("missing");
        let e = err(&missing);
        assert!(e.contains("No such file or directory") && e.starts_with(missing.to_str().unwrap()), "{e}");
        std::fs::write(&empty, "x = 1\n").unwrap();
        assert_eq!(read_text(&empty).unwrap(), "x = 1\n");
    }
}
