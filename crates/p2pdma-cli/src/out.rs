//! Everything the binary writes goes through here, so that no write can panic.
//!
//! - Standard output: [`text`] and [`json`]. A closed pipe (`p2pdma topo | head -1`) is
//!   [`OutputError::Closed`]: the process ends quietly with [`CLOSED_PIPE_EXIT`], the status
//!   a shell reports for `cat` killed by SIGPIPE. Any other failure (a full disk) is one line
//!   on stderr and exit 2.
//! - Standard error: [`note`] and [`error_line`]; a closed stderr is ignored (there is
//!   nowhere left to tell).
//! - Files: [`write_file`] writes a temporary file beside the target and renames it over,
//!   so `snapshot -o`, `report -o`, `metrics -o`, `topo --svg` and `nvmet save` leave the
//!   whole file or none, and never write through another user's link in `/tmp`.
//!
//! Rust ignores SIGPIPE, so `print!` would panic on a closed pipe; restoring the default
//! action is no option while `lab run` holds QEMU, which must be cleaned up on every exit.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use p2pdma_core::text::{inert_lines, Inert};

/// The exit status when standard output was closed by the reader: 128 + SIGPIPE.
pub const CLOSED_PIPE_EXIT: u8 = 141;

/// Standard output could not be written.
#[derive(Debug)]
pub enum OutputError {
    /// The reader went away (EPIPE): not an error for the user.
    Closed,
    Failed(io::Error),
}

impl std::fmt::Display for OutputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutputError::Closed => f.write_str("standard output was closed"),
            OutputError::Failed(e) => write!(f, "cannot write to standard output: {e}"),
        }
    }
}

impl std::error::Error for OutputError {}

impl From<io::Error> for OutputError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            OutputError::Closed
        } else {
            OutputError::Failed(e)
        }
    }
}

/// Writes `s` to standard output and flushes it. Text output is for a terminal: any
/// control character or bidi override in it came from input (a name, a path, a value read
/// from a tree), so it is shown visibly ([`p2pdma_core::text::inert_lines`]); lines and tabs
/// stay.
pub fn text(s: &str) -> Result<(), OutputError> {
    let mut out = io::stdout().lock();
    out.write_all(inert_lines(s).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Pretty JSON and a newline on standard output, in one write: standard output is
/// line-buffered, and written line by line a copy's report cost some 60 system calls, 13-16 ms
/// in the lab's guest when stdout is a file on its 9p share (scripts/bench-startup).
pub fn json<T: serde::Serialize>(value: &T) -> Result<(), OutputError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| OutputError::from(io::Error::from(e)))?;
    bytes.push(b'\n');
    let mut out = io::stdout().lock();
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(())
}

/// Text written piece by piece (`topo` of 10,000 functions), never held whole: complete lines
/// are made inert as in [`text`] and passed on once 64 KiB are pending; `flush` passes the
/// rest. A line feed never sits inside a UTF-8 sequence, so whole lines decode whole.
pub struct InertLines<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

const PENDING: usize = 64 * 1024;

impl<W: Write> InertLines<W> {
    pub fn new(inner: W) -> Self {
        InertLines { inner, pending: Vec::with_capacity(PENDING) }
    }

    fn pass(&mut self, all: bool) -> io::Result<()> {
        let end =
            if all { self.pending.len() } else { self.pending.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) };
        if end > 0 {
            let text = String::from_utf8_lossy(&self.pending[..end]);
            self.inner.write_all(inert_lines(&text).as_bytes())?;
            self.pending.drain(..end);
        }
        Ok(())
    }
}

impl<W: Write> Write for InertLines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= PENDING {
            self.pass(false)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pass(true)?;
        self.inner.flush()
    }
}

/// Standard output as a buffered stream (the caller flushes at the end).
pub fn stdout_stream() -> io::BufWriter<io::StdoutLock<'static>> {
    io::BufWriter::with_capacity(PENDING, io::stdout().lock())
}

/// Pretty JSON and a newline written to standard output as serde produces it, for reports
/// too big to hold as one string (`topo --json`).
pub fn json_stream<T: serde::Serialize>(value: &T) -> Result<(), OutputError> {
    let mut out = stdout_stream();
    serde_json::to_writer_pretty(&mut out, value).map_err(|e| OutputError::from(io::Error::from(e)))?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// JSON lines: one compact object per line, streamed (`topo --pairs all`).
pub fn json_lines<T: serde::Serialize>(items: impl Iterator<Item = T>) -> Result<(), OutputError> {
    let mut out = stdout_stream();
    for item in items {
        serde_json::to_writer(&mut out, &item).map_err(|e| OutputError::from(io::Error::from(e)))?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// A line on standard error, prefixed `p2pdma: `, with control characters from input shown
/// visibly as in [`text`] (a line feed too: a note is one line); a closed stderr is ignored.
pub fn note(line: &str) {
    let _ = writeln!(io::stderr().lock(), "p2pdma: {}", Inert(line));
}

/// An error as one line: the cause chain joined by `: `, without a cause the message
/// before it already holds (thiserror's `{source}` in a message that also returns it as
/// `source()` would otherwise print it twice).
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

/// clap's own answer to the command line: help and version as clap prints them (styled on
/// a terminal, nothing from input in them); a bad flag or value as plain text with any
/// control character from the command line shown visibly (`--class $'\e]0;x\a'`).
pub fn clap_exit(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let code = u8::try_from(e.exit_code()).unwrap_or(2);
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        return match e.print() {
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(CLOSED_PIPE_EXIT),
            _ => ExitCode::from(code),
        };
    }
    let text = e.render().to_string();
    let _ = io::stderr().lock().write_all(inert_lines(&text).as_bytes());
    ExitCode::from(code)
}

/// The exit for an error that reached `main`: quietly 141 for a closed standard output,
/// else the one-line error and exit 2.
pub fn fail(e: &anyhow::Error) -> ExitCode {
    if matches!(e.downcast_ref::<OutputError>(), Some(OutputError::Closed)) {
        return ExitCode::from(CLOSED_PIPE_EXIT);
    }
    note(&error_line(e));
    ExitCode::from(2)
}

/// `-` for standard output, else a file written whole or not at all through
/// [`p2pdma_host::output::write_file`]: a temporary file made with O_EXCL in the target's
/// directory, synced, then renamed onto the name. An existing target keeps its permissions;
/// the caller's own symbolic link is followed (the file it names is replaced), another
/// user's link in a sticky world-writable directory (`/tmp`) is refused as the kernel's
/// `fs.protected_symlinks` would, any other link is replaced itself; a target that is not a
/// regular file (`/dev/null`, a pipe) is written directly, as there is nothing to rename
/// over. `what` names the content in errors ("the snapshot").
pub fn write_file(path: &Path, content: &[u8], what: &str) -> anyhow::Result<()> {
    if path.as_os_str() == "-" {
        let mut out = io::stdout().lock();
        out.write_all(content).and_then(|_| out.flush()).map_err(OutputError::from)?;
        return Ok(());
    }
    p2pdma_host::output::write_file(path, content, 0o666)
        .map_err(|e| anyhow::anyhow!("cannot write {what} to {}: {}", path.display(), why(&e)))
}

/// What went wrong writing, without the path the message already names.
pub fn why(e: &p2pdma_host::Error) -> String {
    match e {
        p2pdma_host::Error::Invalid { msg, .. } => msg.clone(),
        p2pdma_host::Error::Io { source, .. } => io_cause(source),
        e => e.to_string(),
    }
}

/// The OS's words for an I/O error, without the wrapping of a path.
fn io_cause(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code).to_string(),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_line_drops_a_cause_the_message_already_holds() {
        let io = io::Error::from_raw_os_error(2);
        let e = anyhow::Error::new(p2pdma_host::Error::Io { path: "/x".into(), source: io });
        assert_eq!(error_line(&e), "/x: No such file or directory (os error 2)");
        let e = anyhow::anyhow!("inner cause").context("outer");
        assert_eq!(error_line(&e), "outer: inner cause");
    }

    #[test]
    fn inert_lines_stream_writes_whole_lines_made_inert() {
        let mut w = InertLines::new(Vec::new());
        for i in 0..20_000 {
            writeln!(w, "line {i} \u{1b}[31m é").unwrap();
        }
        w.flush().unwrap();
        let text = String::from_utf8(w.inner).unwrap();
        assert_eq!(text.lines().count(), 20_000);
        assert!(!text.contains('\u{1b}') && text.lines().all(|l| l.ends_with(" é")), "every line inert, whole");
    }

    #[test]
    fn write_file_leaves_the_whole_file_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("out.json");
        write_file(&f, b"first", "the test").unwrap();
        write_file(&f, b"second", "the test").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"second");
        let err = write_file(&dir.path().join("no/such/dir/x"), b"x", "the test").unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        let err = write_file(dir.path(), b"x", "the test").unwrap_err().to_string();
        assert!(err.ends_with("it is a directory"), "{err}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.json")], "no temporary file is left");
        write_file(Path::new("/dev/null"), b"x", "the test").unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(Path::new("/dev/null").metadata().unwrap().file_type().is_char_device(), "not replaced by a file");
    }
}
