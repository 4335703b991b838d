//! PCI addresses as the kernel names them: `0000:03:00.0`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A PCI function address: domain, bus, device (slot) and function.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub domain: u32,
    pub bus: u8,
    pub dev: u8,
    pub func: u8,
}

impl Bdf {
    pub const fn new(domain: u32, bus: u8, dev: u8, func: u8) -> Self {
        Bdf { domain, bus, dev, func }
    }

    /// The 8-bit devfn the kernel uses (`PCI_DEVFN`).
    pub const fn devfn(self) -> u8 {
        (self.dev << 3) | self.func
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{}", self.domain, self.bus, self.dev, self.func)
    }
}

impl fmt::Debug for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a PCI address (expected DDDD:BB:DD.F or BB:DD.F)")]
pub struct BdfParseError(pub String);

impl FromStr for Bdf {
    type Err = BdfParseError;

    /// Accepts `DDDD:BB:DD.F` and the short form `BB:DD.F` (domain 0).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BdfParseError(s.to_string());
        let (head, func) = s.rsplit_once('.').ok_or_else(bad)?;
        let parts: Vec<&str> = head.split(':').collect();
        let (domain, bus, dev) = match parts.as_slice() {
            [bus, dev] => ("0", *bus, *dev),
            [domain, bus, dev] => (*domain, *bus, *dev),
            _ => return Err(bad()),
        };
        let hex = |t: &str, max_len: usize| -> Result<u32, BdfParseError> {
            if t.is_empty() || t.len() > max_len || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad());
            }
            u32::from_str_radix(t, 16).map_err(|_| bad())
        };
        let domain = hex(domain, 8)?;
        let bus = hex(bus, 2)? as u8;
        let dev = hex(dev, 2)?;
        let func = hex(func, 1)?;
        if dev > 0x1f || func > 7 {
            return Err(bad());
        }
        Ok(Bdf::new(domain, bus, dev as u8, func as u8))
    }
}

impl Serialize for Bdf {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Bdf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdf_parses_long_and_short_forms() {
        let b: Bdf = "0000:03:00.0".parse().unwrap();
        assert_eq!(b, Bdf::new(0, 3, 0, 0));
        assert_eq!("03:1f.7".parse::<Bdf>().unwrap(), Bdf::new(0, 3, 0x1f, 7));
        assert_eq!("10000:80:01.2".parse::<Bdf>().unwrap().to_string(), "10000:80:01.2");
        assert_eq!(b.to_string(), "0000:03:00.0");
    }

    #[test]
    fn bdf_rejects_garbage() {
        for s in ["", "03:00", "3:0.8", "03:20.0", "x:00.0", "0000:03:00.0.1", "000:003:00.0"] {
            assert!(s.parse::<Bdf>().is_err(), "{s}");
        }
    }
}
