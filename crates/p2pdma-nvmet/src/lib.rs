//! p2pdma-nvmet: NVMe over Fabrics exports with P2P memory through the kernel's own target
//! (nvmet, configured through configfs), made safe and explained.
//!
//! nvmet's P2P switch is a per-namespace `p2pmem` attribute with sharp edges: no `auto`
//! keyword (`1` means "find one"), EBUSY once the namespace is enabled, a refusal at enable
//! time said only in the kernel log, and P2P used only by transports that name a PCI client
//! (RDMA with a PCI RNIC); TCP and loop silently use host memory.
//!
//! - [`plan`]: the pure planner. Request + verdict engine + configfs state ([`state`]) → a
//!   plan: checks, what the kernel will do with P2P memory, and configfs steps in the
//!   kernel's order. Refusals happen here, before configfs is touched.
//! - [`apply`]: the thin applier: steps against a configfs root, the kernel's log lines per
//!   step ([`kmsg`]), rollback of exactly what it did on any failure.
//! - [`list`]: configfs joined with the verdict engine.
//! - [`config`]: nvmetcli's `config.json`: read from configfs (save), planned back (restore)
//!   through the same checks as an export.
//! - [`system`]: configfs mount and module loading.

pub mod apply;
pub mod config;
mod error;
pub mod kmsg;
pub mod list;
pub mod plan;
pub mod state;
pub mod system;

pub use error::NvmetError;
pub use plan::{
    plan_export, plan_remove, Access, ExportPlan, ExportRequest, Outcome, P2pmemRequest, RemovePlan, Step, Transport,
};
pub use state::NvmetState;
