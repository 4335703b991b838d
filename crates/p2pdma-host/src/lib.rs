//! p2pdma-host: the one reader of the machine. Everything that reads the live system or a
//! file lives here: the whole machine (`machine`), sysfs and procfs facts (`sysfs`, `procfs`, `block`, `multipath`), what the running kernel
//! says about itself (`kernel_live`, `kernel_image`: its config, BTF, image and whitelist),
//! the PCI ID file (`pciids`), and the files a person names (`input`: topology files,
//! snapshots). Every reader takes its root as a parameter, so fixture trees work.
//! p2pdma-core, below, stays pure: it judges what this crate reads.

pub mod block;
pub mod bounded;
mod error;
pub mod import;
pub mod input;
#[cfg(feature = "kernel")]
pub mod kernel_image;
#[cfg(feature = "kernel")]
pub mod kernel_live;
#[cfg(feature = "kernel")]
pub mod machine;
pub mod multipath;
pub mod output;
pub mod pciids;
pub mod procfs;
pub mod roots;
pub mod sysfs;

pub use error::Error;
