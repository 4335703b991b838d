//! Kernel releases as values: [`KernelRelease`] (`major.minor[.patch]`, from `uname -r` or
//! a person) and [`NamedRelease`] (`--kernel`: a release and the words it was given in),
//! each parsed once where the text comes in. A leaf module: the model records them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::whitelist;

/// A kernel release, `major.minor[.patch]`, read from `uname -r` (`7.2.13+deb14-amd64`,
/// `6.1.0-28-amd64`) or given by the user (`6.6`, `7.1.3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelRelease {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl FromStr for KernelRelease {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, crate::Error> {
        KernelRelease::parse_text(s).map_err(crate::Error::BadValue)
    }
}

impl KernelRelease {
    fn parse_text(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{s}` is not a kernel release (expected MAJOR.MINOR[.PATCH], e.g. 6.6, 7.2.13 or 7.2.13+deb14-amd64)"
            )
        };
        let t = s.trim().strip_prefix('v').unwrap_or(s.trim());
        // The version ends where a suffix starts: `-rc1`, `-28-amd64`, `+deb14-amd64`.
        let head = t.split(['-', '+', '_', '~']).next().unwrap_or("");
        let mut parts = head.split('.');
        let mut num = |required: bool| -> Result<Option<u32>, String> {
            match parts.next() {
                Some(p) if !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()) => {
                    p.parse().map(Some).map_err(|_| bad())
                }
                None if !required => Ok(None),
                _ => Err(bad()),
            }
        };
        let major = num(true)?.ok_or_else(bad)?;
        let minor = num(true)?.ok_or_else(bad)?;
        let patch = num(false)?.unwrap_or(0);
        if parts.next().is_some() || !(2..=99).contains(&major) {
            return Err(bad());
        }
        Ok(KernelRelease { major, minor, patch })
    }
}

impl fmt::Display for KernelRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl KernelRelease {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        KernelRelease { major, minor, patch }
    }

    pub fn at_least(&self, (major, minor): (u32, u32)) -> bool {
        (self.major, self.minor) >= (major, minor)
    }

    /// The newest release whose whitelist p2pdma knows.
    pub fn newest_known() -> Self {
        KernelRelease::new(whitelist::NEWEST_KNOWN.0, whitelist::NEWEST_KNOWN.1, 0)
    }
}

/// `--kernel VERSION`: the release to judge the observed machine as, and the text it was
/// given as (reports show `6.6` as the person wrote it, not `6.6.0`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NamedRelease {
    pub release: KernelRelease,
    pub text: String,
}

impl FromStr for NamedRelease {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self, crate::Error> {
        Ok(NamedRelease { release: s.parse()?, text: s.trim().to_string() })
    }
}

impl TryFrom<String> for NamedRelease {
    type Error = crate::Error;

    fn try_from(s: String) -> Result<Self, crate::Error> {
        s.parse()
    }
}

impl From<NamedRelease> for String {
    fn from(n: NamedRelease) -> String {
        n.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_parse_from_uname_and_users() {
        assert_eq!("7.2.13+deb14-amd64".parse::<KernelRelease>().unwrap(), KernelRelease::new(7, 2, 13));
        assert_eq!("6.1.0-28-amd64".parse::<KernelRelease>().unwrap(), KernelRelease::new(6, 1, 0));
        assert_eq!("6.6".parse::<KernelRelease>().unwrap(), KernelRelease::new(6, 6, 0));
        assert_eq!("v7.3-rc1".parse::<KernelRelease>().unwrap(), KernelRelease::new(7, 3, 0));
        for bad in ["", "7", "abc", "7.x", "7.2.13.4", "1.0", "7..2", "99999.1"] {
            assert!(bad.parse::<KernelRelease>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_named_release_keeps_the_words_it_was_given_in() {
        let n: NamedRelease = " 6.6 ".parse().unwrap();
        assert_eq!((n.release, n.text.as_str()), (KernelRelease::new(6, 6, 0), "6.6"));
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"6.6\"");
        assert!(serde_json::from_str::<NamedRelease>("\"seven\"").is_err());
    }
}
