use std::path::PathBuf;

/// Everything that can go wrong judging a topology's text or asking for a verdict.
/// Each message names the file or device and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file that exists but does not say what it should (malformed, truncated, wrong type).
    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },
    #[error("{}: snapshot schema version {found} is newer than this p2pdma understands (up to {supported}); upgrade p2pdma", path.display())]
    NewerSnapshot { path: PathBuf, found: u64, supported: u64 },
    /// A topology whose parts do not fit together (dangling references, duplicate names).
    #[error("inconsistent topology: {0}")]
    Inconsistent(String),
    #[error("unknown device `{0}`: no topology name or device name `{0}` in this topology (see `p2pdma topo`)")]
    UnknownDevice(String),
    /// A well-formed PCI address with no device there.
    #[error("unknown device `{name}`: no PCI device at {bdf} in this topology (see `p2pdma topo`)")]
    AbsentAddress { name: String, bdf: crate::Bdf },
    /// Written like a PCI address (it has a `:`) but not one.
    #[error("unknown device `{0}`: not a valid PCI address (hex [DOMAIN:]BUS:DEVICE.FUNCTION, such as 0000:03:00.0 or 03:00.0)")]
    BadAddress(String),
    /// A device used in a role it cannot play (a non-provider as provider, a bridge as client).
    #[error("{0}")]
    WrongRole(String),
    /// A copy operand that is both a file in the current directory and a device name.
    #[error("`{0}` is ambiguous: it is both a file here and a device; write `./{0}` for the file or `/dev/{0}` (or the device's PCI address) for the device")]
    AmbiguousOperand(String),
    /// A copy source that is neither a file nor a device name.
    #[error("`{0}`: no such file here and no such device (see `p2pdma topo`)")]
    UnknownOperand(String),
    /// A value that does not parse (a kernel release, a device class, an `addr` target, a
    /// time) or a topology file whose parts do not fit; the message says which and why.
    #[error("{0}")]
    BadValue(String),
    /// A copy or benchmark that can never be carried out as asked (ranges, alignment, sizes).
    #[error(transparent)]
    Range(#[from] RangeError),
}

impl Error {
    pub(crate) fn invalid(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Invalid { path: path.into(), msg: msg.into() }
    }
}

/// Why a request can never be carried out as given (exit 2: bad input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("{path}: offset {offset} is past its end ({size} bytes)")]
    OffsetPastEnd { path: String, offset: u64, size: u64 },
    #[error("{path}: {length} bytes from offset {offset} run past its end ({size} bytes); refusing to write or read outside it")]
    PastEnd { path: String, offset: u64, length: u64, size: u64 },
    #[error("{path}: --dst-offset {offset} is past its end ({size} bytes): the copy would leave a hole of unwritten bytes; refusing")]
    GapInFile { path: String, offset: u64, size: u64 },
    #[error("--depth must be at least 1")]
    NoDepth,
    #[error("nothing to copy: the length is 0")]
    Empty,
    #[error("{path}: {what} {value} is not a multiple of its logical block size ({block_size}); direct I/O needs whole blocks")]
    Unaligned { path: String, what: &'static str, value: u64, block_size: u32 },
    #[error("--chunk {chunk} must be a positive multiple of {multiple} (the page size and both block sizes)")]
    BadChunk { chunk: usize, multiple: usize },
    #[error("{src} bytes {src_start}..{src_end} and {dst} bytes {dst_start}..{dst_end} are the same storage: an overlapping copy would overwrite its own source")]
    Overlap { src: String, dst: String, src_start: u64, src_end: u64, dst_start: u64, dst_end: u64 },
}
