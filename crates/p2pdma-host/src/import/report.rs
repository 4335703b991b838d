//! What `import` says about the machine it assembled: the JSON contract of
//! `p2pdma import --json`, shared by the assembler and the cross-checks.

use p2pdma_core::Bdf;
use serde::Serialize;

use crate::import::dmesg::P2pEvent;
use crate::import::{Format, Origin};

/// `import`'s summary: the JSON contract of `p2pdma import --json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub inputs: Vec<InputSummary>,
    pub devices: usize,
    pub host_bridges: Vec<String>,
    pub numa_nodes: Option<u32>,
    /// Every fact kept, with the input (and line) that gave it.
    pub facts: Vec<Fact>,
    /// What no input gives, and the command that would tell.
    pub unknown: Vec<Unknown>,
    /// Devices named by an input whose place in the tree none gives.
    pub left_out: Vec<LeftOut>,
    /// Facts two inputs give differently (the first value is the one kept).
    pub disagreements: Vec<Disagreement>,
    pub crosscheck: CrossCheck,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputSummary {
    pub name: String,
    /// Lines of a text input; entries of a sysfs tarball.
    pub lines: usize,
    /// Lines skipped; of a tarball, its device files, fifos and hard links.
    pub skipped_lines: usize,
    /// The sections found; a tarball's one section counts its regular files as `lines`.
    pub sections: Vec<SectionSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SectionSummary {
    pub format: Format,
    pub first_line: usize,
    pub lines: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fact {
    /// `machine`, or a device's address.
    pub subject: String,
    pub fact: &'static str,
    pub value: String,
    pub origin: Origin,
    /// How it was derived, when it was not printed as such.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derived: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unknown {
    pub subject: String,
    pub fact: &'static str,
    /// What stays uncertain because of it.
    pub consequence: String,
    /// The command that would reveal it.
    pub reveal: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeftOut {
    pub device: Bdf,
    pub why: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disagreement {
    pub subject: String,
    pub fact: &'static str,
    pub values: Vec<(String, Origin)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub agree: usize,
    pub disagree: usize,
    pub not_compared: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Agree,
    Disagree,
    NotCompared,
}

/// One `nvidia-smi topo -m` cell against p2pdma's path class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellCheck {
    pub row: String,
    pub column: String,
    pub row_device: Option<Bdf>,
    pub column_device: Option<Bdf>,
    pub nvidia_smi: String,
    pub p2pdma: Option<String>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub origin: Origin,
}

/// One kernel P2PDMA line against p2pdma's verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineCheck {
    pub event: P2pEvent,
    /// What the line means, in p2pdma's words.
    pub kernel: String,
    pub p2pdma: Option<String>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub origin: Origin,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CrossCheck {
    pub path_classes: Counts,
    pub cells: Vec<CellCheck>,
    pub kernel_lines: Counts,
    pub lines: Vec<LineCheck>,
}

impl CrossCheck {
    /// Whether any cell or line disagrees (`import` exits 1).
    pub fn disagrees(&self) -> bool {
        self.path_classes.disagree + self.kernel_lines.disagree > 0
    }
}
