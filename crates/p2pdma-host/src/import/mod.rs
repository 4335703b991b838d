//! `p2pdma import`: a machine from what people paste (issue 21).
//!
//! Pastes hold `lspci -vvv`/`-x` and `lspci -tv`, `nvidia-smi topo -m`, dmesg, hwloc XML,
//! `/proc/cmdline`, `uname -a`, `lscpu`, each wrapped in prose, markdown fences, shell
//! prompts and headings. [`sections::split_sections`] finds the parts each parser knows (by
//! content, never by file name) and counts the lines it skipped; each parser is a pure
//! function from text to a typed result that never panics; [`assemble::assemble`] builds
//! the `Topology` a snapshot holds from any mix of them, every fact with the input it came
//! from and nothing unknown defaulted; [`crosscheck`] holds p2pdma's path classes against
//! `nvidia-smi topo -m` cells and its verdicts against the kernel's own P2PDMA lines.
//!
//! Only [`read_input`] touches the filesystem; everything else is pure.

pub mod assemble;
pub mod crosscheck;
pub mod dmesg;
pub mod hwloc;
pub mod lspci;
pub mod lspci_tree;
pub mod names;
pub mod nvsmi;
pub mod report;
pub mod sections;
pub mod sysinfo;
#[cfg(feature = "kernel")]
pub mod tarball;

use std::path::Path;

use serde::Serialize;

use crate::Error;

pub use assemble::{assemble, Assembled};
pub use report::ImportReport;
pub use sections::{split_sections, Format, Section, Sections};

/// The largest input `import` reads (one file, or standard input): 16 MiB. A full `lspci
/// -vvv` of a 1,000-device machine is about 3 MiB; anything larger is not a paste.
pub const MAX_INPUT_BYTES: usize = 16 << 20;

/// One named input: a file or standard input, as text.
#[derive(Debug, Clone)]
pub struct Input {
    /// How it is named in facts and errors (the path, or `-`).
    pub name: String,
    pub text: String,
}

/// Refuses text over [`MAX_INPUT_BYTES`]; every parser calls it first.
pub(crate) fn bounded<'a>(text: &'a str, what: &str) -> Result<&'a str, Error> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(Error::Invalid {
            path: what.into(),
            msg: format!("is larger than {} MiB: not a paste `import` reads", MAX_INPUT_BYTES >> 20),
        });
    }
    Ok(text)
}

/// Reads one input: `-` is standard input. Directories and device files are refused before
/// any read; more than [`MAX_INPUT_BYTES`] is refused; bytes that are not UTF-8 become
/// U+FFFD (a paste with one stray byte is still a paste), binary content is refused.
pub fn read_input(path: &Path) -> Result<Input, Error> {
    text_input(path, read_raw(path)?)
}

/// One input as read: text, or a sysfs tarball already read as a machine.
#[derive(Debug)]
pub enum AnyInput {
    Text(Input),
    #[cfg(feature = "kernel")]
    Tarball(Box<Assembled>),
}

/// Reads one input, a tarball (by its magic bytes) or text, as [`read_input`] does.
pub fn read_any(path: &Path) -> Result<AnyInput, Error> {
    let bytes = read_raw(path)?;
    #[cfg(feature = "kernel")]
    if let Some(c) = tarball::sniff(&bytes) {
        let name = path.display().to_string();
        return tarball::read(&name, &bytes, c).map(|a| AnyInput::Tarball(Box::new(a)));
    }
    text_input(path, bytes).map(AnyInput::Text)
}

/// The bytes of a file or of standard input, through the one bounded reader (regular files
/// and pipes, never a device).
fn read_raw(path: &Path) -> Result<Vec<u8>, Error> {
    if path.as_os_str() == "-" {
        crate::bounded::read_from(std::io::stdin().lock(), path, crate::bounded::Bound::INPUT)
    } else {
        crate::bounded::read_bytes(path, crate::bounded::Bound::INPUT)
    }
}

/// Bytes as a text input: import's own, smaller limit, then no NUL and not empty.
fn text_input(path: &Path, bytes: Vec<u8>) -> Result<Input, Error> {
    let name = path.display().to_string();
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(Error::invalid(
            path,
            format!("is larger than {} MiB: not a paste `import` reads", MAX_INPUT_BYTES >> 20),
        ));
    }
    if bytes.contains(&0) {
        return Err(Error::invalid(
            path,
            "is binary (NUL bytes): import reads text outputs and tar archives of sysfs (plain, gzip, bzip2, xz)",
        ));
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if text.trim().is_empty() {
        return Err(Error::invalid(path, "is empty"));
    }
    Ok(Input { name, text })
}

/// Where a fact came from: the input, its line (1-based) and the format that said so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Origin {
    pub input: String,
    pub line: usize,
    pub format: Format,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{} ({})", self.input, self.line, self.format.as_str())
    }
}

/// Strings from inputs, made safe for a terminal: control characters (escape sequences
/// included) written as `\u{..}` escapes.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Parses every input: its sections, each parsed by its format's parser.
pub fn parse_inputs(inputs: &[Input]) -> Result<Vec<ParsedInput>, Error> {
    inputs.iter().map(parse_input).collect()
}

/// One input split and parsed.
#[derive(Debug, Clone)]
pub struct ParsedInput {
    pub name: String,
    pub lines: usize,
    pub skipped_lines: usize,
    pub parts: Vec<Parsed>,
}

/// A section's parse result.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub origin: Origin,
    pub lines: usize,
    pub data: ParsedData,
}

#[derive(Debug, Clone)]
pub enum ParsedData {
    Lspci(lspci::Listing),
    Tree(lspci_tree::Tree),
    Topo(nvsmi::TopoMatrix),
    Dmesg(dmesg::KernelLog),
    Hwloc(hwloc::HwlocTopology),
    Sys(sysinfo::SysInfo),
}

/// Splits and parses one input. A section whose parser refuses it (a hwloc document cut
/// short) is counted as skipped lines and named in `warnings` rather than failing the input.
pub fn parse_input(input: &Input) -> Result<ParsedInput, Error> {
    let text = bounded(&input.text, &input.name)?;
    let split = split_sections(text);
    let mut parts = Vec::new();
    let mut skipped = split.skipped_lines;
    for s in &split.sections {
        let origin = Origin { input: input.name.clone(), line: s.first_line, format: s.format };
        let data = match s.format {
            Format::LspciVerbose => lspci::parse(&s.text).map(ParsedData::Lspci),
            Format::LspciTree => lspci_tree::parse(&s.text).map(ParsedData::Tree),
            Format::NvidiaSmiTopo => nvsmi::parse(&s.text).map(ParsedData::Topo),
            Format::KernelLog => dmesg::parse(&s.text).map(ParsedData::Dmesg),
            Format::HwlocXml => hwloc::parse(s.text.as_bytes()).map(ParsedData::Hwloc),
            Format::Cmdline | Format::Uname | Format::Lscpu | Format::Numactl | Format::Grub => {
                sysinfo::parse(s.format, &s.text).map(ParsedData::Sys)
            }
            // Never a text section: a tarball is read by `tarball::read`, whole.
            Format::SysfsTarball => Err(Error::invalid(&input.name, "a sysfs tarball is not text")),
        };
        match data {
            Ok(data) => parts.push(Parsed { origin, lines: s.line_count, data }),
            Err(_) => skipped += s.line_count,
        }
    }
    Ok(ParsedInput { name: input.name.clone(), lines: split.total_lines, skipped_lines: skipped, parts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_terminal_controls() {
        assert_eq!(printable("a\x1b[31mb\tc"), "a\\u{1b}[31mb\\u{9}c");
        assert_eq!(printable("plain ü"), "plain ü");
    }

    #[test]
    fn bounded_refuses_more_than_16_mib() {
        let big = "x".repeat(MAX_INPUT_BYTES + 1);
        assert!(bounded(&big, "big").unwrap_err().to_string().contains("16 MiB"));
        assert!(bounded("ok", "small").is_ok());
    }
}
