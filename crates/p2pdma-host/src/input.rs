//! Reading the files a person names (topology files, snapshots, `diff`'s files, `nvmet
//! restore`'s config): only regular files and pipes, as text, with one clear error for each
//! way a wrong file shows up; `read_spec` and `read_snapshot` hand the text to core.

use std::io::Read;
use std::path::Path;

use p2pdma_core::spec::{self, Spec};
use p2pdma_core::{snapshot, Topology};

use crate::bounded::{self, Bound};
use crate::Error;

/// Files larger than this are not topology files or snapshots (a 1,000-device snapshot
/// is a few MiB); refusing them keeps a mistaken `--snapshot /dev/sda1`-sized file out.
pub const MAX_INPUT_BYTES: u64 = Bound::INPUT.limit;

/// The text of `path`, read through [`bounded`]: directories, devices, sockets and
/// oversized files are refused (reading `/dev/zero` would never end; a pipe is read);
/// binary content and an empty file are errors that say so.
pub fn read_text(path: &Path) -> Result<String, Error> {
    let bytes = bounded::read_bytes(path, Bound::INPUT)?;
    text(bytes, path)
}

/// The text of a stream (standard input, an opened file), `shown` naming it in errors:
/// the same limits as [`read_text`] (`restore - < /dev/zero` must end).
pub fn read_text_from(stream: impl Read, shown: &Path) -> Result<String, Error> {
    let bytes = bounded::read_from(stream, shown, Bound::INPUT)?;
    text(bytes, shown)
}

fn text(bytes: Vec<u8>, path: &Path) -> Result<String, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn err(path: &Path) -> String {
        read_text(path).unwrap_err().to_string()
    }

    #[test]
    fn wrong_kinds_of_file_are_named_not_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(err(dir.path()).ends_with("is a directory, not a file: not read"), "{}", err(dir.path()));
        assert!(err(Path::new("/dev/zero")).ends_with("is a character device, not a file: not read"));
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
