use std::path::PathBuf;

/// Everything that can stop an export, a listing or a removal before the kernel is asked.
/// Refusals that come from the verdict or from configfs's current state are not errors:
/// they are plans with `outcome: refused` and their reasons.
#[derive(Debug, thiserror::Error)]
pub enum NvmetError {
    /// A request that cannot mean anything: a malformed NQN, nsid or address, a namespace
    /// that is not a block device.
    #[error("{0}")]
    BadInput(String),
    /// A device name the topology does not know, or a device in a role it cannot play.
    #[error(transparent)]
    Topology(#[from] p2pdma_core::Error),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A file read through p2pdma-host's bounded reader: not a regular file, too large.
    #[error(transparent)]
    Read(#[from] p2pdma_host::Error),
    /// A kernel module or configfs that is not there and cannot be loaded or mounted.
    #[error("{what}: {reason}")]
    Setup { what: String, reason: String },
}

impl NvmetError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NvmetError::Io { path: path.into(), source }
    }

    /// Bad input (exit 2) rather than a failure of the machine (exit 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, NvmetError::BadInput(_) | NvmetError::Topology(_))
    }
}
