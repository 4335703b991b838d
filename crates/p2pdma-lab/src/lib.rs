//! The lab: QEMU plumbing (kernel, initramfs, boot, run). Knows nothing of P2P rules.
//!
//! A [`LabMachine`] describes an emulated q35 machine (root ports, switches, NVMe drives
//! with or without a CMB, an optional emulated IOMMU). [`run`] boots the Debian unstable
//! kernel (fetched and cached by [`fetch_kernel`]) on it under QEMU/TCG with a busybox
//! initramfs built on the fly, runs one shell command inside the guest, streams the
//! command's output and returns its exit status. [`shell`] gives an interactive console,
//! [`qemu_args`] the exact QEMU argv.
//!
//! Getting files out of the guest: [`LabOptions::share_dir`] is a host directory shared
//! with the guest over virtio-9p and mounted at [`GUEST_SHARE_DIR`].

// stderr through `stderr_line` (a closed pipe must not panic while QEMU runs).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cache;
mod cpio;
mod debs;
mod elf;
mod error;
pub mod from_spec;
mod initramfs;
mod kernel;
mod machine;
mod qemu;
mod run;

pub use cache::{lock as lock_cache, CacheLock, Freshness};
pub use cpio::CpioWriter;
pub use elf::is_static_executable;
pub use error::LabError;
pub use initramfs::{DEFAULT_BOOT_MODULES, DEFAULT_EXTRA_MODULES, GUEST_SHARE_DIR};
pub use kernel::{default_cache_dir, fetch_kernel, find_kernel, suite_kernel, Kernel, KERNEL_DIR_ENV, SUITES};
pub use machine::{
    blkdebug_config, qemu_args, DiskFault, FaultOp, LabAssets, LabDevice, LabDeviceKind, LabMachine, NVME_BOUNCE_BUFFER,
};
pub use qemu::{find_qemu, Qemu, QemuChoice, QemuVersion, QEMU_ENV};
pub use run::{run, shell, LabOptions, RunOutcome};

/// A line on stderr that cannot panic: `eprintln!` does when stderr is a closed pipe
/// (`p2pdma lab run ... 2>&1 | head`), which would leave QEMU to the death signal.
pub(crate) fn stderr_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
