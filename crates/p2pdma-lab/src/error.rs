//! The lab's single error type. Every message says what to do next.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong in the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The machine description cannot be turned into a QEMU command line.
    #[error("invalid lab machine: {0}")]
    InvalidMachine(String),

    /// A topology file with a part QEMU cannot emulate (the part named).
    #[error("the lab cannot emulate this: {0}")]
    CannotEmulate(String),

    /// A lab option has a value it cannot take.
    #[error("{0}")]
    InvalidOption(String),

    /// A host tool the lab needs is missing.
    #[error("{tool} not found: {hint}")]
    MissingTool {
        /// The program that was looked for.
        tool: String,
        /// How to get it.
        hint: String,
    },

    /// A host command ran but failed.
    #[error("`{command}` failed: {detail}; {hint}")]
    CommandFailed {
        /// The command line, for the user to re-run by hand.
        command: String,
        /// Exit status and the end of its stderr.
        detail: String,
        /// What to do next.
        hint: String,
    },

    /// Resolving or unpacking the Debian kernel failed.
    #[error("kernel: {0}")]
    Kernel(String),

    /// The kernel lacks a configuration the lab needs.
    #[error(
        "kernel {version} is built without {option} (config: {config}); the lab needs a kernel \
         with {option}=y: remove the cached kernel or unset P2PDMA_KERNEL_DIR and run `p2pdma lab fetch`"
    )]
    KernelConfig {
        /// Kernel release.
        version: String,
        /// The missing option, e.g. CONFIG_PCI_P2PDMA.
        option: String,
        /// Where the config was read.
        config: PathBuf,
    },

    /// A kernel module the guest needs is not in the kernel's module tree.
    #[error(
        "kernel module `{module}` not found under {dir} (and not built in); check the module name \
         or use a kernel that provides it"
    )]
    MissingModule {
        /// Module name as requested or as named by a `depends=` field.
        module: String,
        /// Module tree searched.
        dir: PathBuf,
    },

    /// A binary for the guest is dynamically linked.
    #[error(
        "{path} is dynamically linked and cannot run in the lab's busybox initramfs: build it \
         static with scripts/build-static (`cargo build-static`: --target x86_64-unknown-linux-gnu \
         with -C target-feature=+crt-static)"
    )]
    NotStatic {
        /// The offending binary.
        path: PathBuf,
    },

    /// The guest did not finish in time; QEMU was killed.
    #[error(
        "the guest did not finish within {timeout:?}; QEMU was killed. Raise the timeout or \
         look at the console:\n{}", tail.join("\n")
    )]
    Timeout {
        /// The timeout that expired.
        timeout: Duration,
        /// The last console lines.
        tail: Vec<String>,
    },

    /// QEMU exited before the command reported its status.
    #[error(
        "QEMU exited ({status}) before the guest command finished{}; check the QEMU stderr and \
         the console below (re-run with kernel_log on to see all kernel messages):\nstderr: {stderr}\n{}",
        if *panicked { " (the guest kernel panicked)" } else { "" }, tail.join("\n")
    )]
    GuestDied {
        /// QEMU's exit status, as text.
        status: String,
        /// Whether a kernel panic was seen on the console.
        panicked: bool,
        /// QEMU's stderr.
        stderr: String,
        /// The last console lines.
        tail: Vec<String>,
    },

    /// The host process got SIGINT or SIGTERM; QEMU was killed.
    #[error("interrupted by signal {0}; QEMU was stopped and the run's temporary files removed")]
    Interrupted(i32),

    /// An I/O error on a host path.
    #[error("{context}: {source}")]
    Io {
        /// What the lab was doing, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl LabError {
    /// Wraps an I/O error with what the lab was doing.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io { context: context.into(), source }
    }
}

/// Shorthand used throughout the crate.
pub(crate) type Result<T> = std::result::Result<T, LabError>;
