//! Where the machine is read from, so fixture trees and chroots work.

use std::path::PathBuf;

/// Where to read from: `/sys` and `/proc` on a live machine.
#[derive(Debug, Clone)]
pub struct Roots {
    pub sys: PathBuf,
    pub proc: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots { sys: PathBuf::from("/sys"), proc: PathBuf::from("/proc") }
    }
}
