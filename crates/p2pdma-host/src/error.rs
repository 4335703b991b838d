use std::path::PathBuf;

/// Everything that can go wrong reading the machine or a file a person named.
/// Each message names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// A file that exists but does not say what it should (malformed, truncated, wrong type).
    #[error("{}: {msg}", path.display())]
    Invalid { path: PathBuf, msg: String },
    /// What was read, judged by the model (a snapshot's schema, a topology file's contents).
    #[error(transparent)]
    Core(#[from] p2pdma_core::Error),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Invalid { path: path.into(), msg: msg.into() }
    }
}
