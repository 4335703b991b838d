//! What the core tests share: one copy of the CI and prerequisite rules, and the scenario
//! files (tests/support/prereq.rs).

#[path = "../../../../tests/support/prereq.rs"]
mod prereq;
#[allow(unused_imports)]
pub use prereq::{missing, scenarios, under_ci, MIN_SCENARIOS};
