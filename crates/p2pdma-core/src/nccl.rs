//! NCCL's P2P and GPUDirect RDMA levels and how it reads their environment variables, from
//! NCCL's sources (v2.30): src/graph/paths.cc `ncclGetLevel`, `ncclGetUserP2pLevel`,
//! `ncclTopoCheckP2p`, `ncclTopoCheckGdr`; src/misc/param.cc `ncclLoadParam` (`NCCL_PARAM`).
//! The environment is the job's, given as input (a topology file's `[machine] nccl_env`,
//! `check --nccl-env`): p2pdma's own environment is not the NCCL job's and is never read.

use std::collections::BTreeMap;

/// NCCL's path types in order (src/include/graph.h, `topoPathTypeStr` in src/graph/topo.cc),
/// up to SYS: the names `ncclGetLevel` accepts.
pub const PATH_NAMES: [&str; 10] = ["LOC", "NVL", "NVB", "C2C", "PIX", "PXB", "P2C", "PXN", "PHB", "SYS"];
pub const PATH_LOC: u8 = 0;
pub const PATH_PIX: u8 = 4;
pub const PATH_PXB: u8 = 5;
pub const PATH_P2C: u8 = 6;
pub const PATH_PHB: u8 = 8;
pub const PATH_SYS: u8 = 9;

/// `levelsOldToNew`: the numbers of older NCCL releases (0..5), larger ones clamp to 5.
const OLD_LEVELS: [u8; 6] = [PATH_LOC, PATH_PIX, PATH_PXB, PATH_PHB, PATH_SYS, PATH_SYS];

/// One `KEY=VALUE` of the NCCL job's environment (`check --nccl-env NCCL_P2P_LEVEL=SYS`):
/// the key must be an `NCCL_` variable name.
pub fn parse_assignment(s: &str) -> Result<(String, String), crate::Error> {
    let bad =
        |why: &str| crate::Error::BadValue(format!("`{s}`: {why} (expected NCCL_NAME=VALUE, e.g. NCCL_P2P_LEVEL=SYS)"));
    let (k, v) = s.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let name_ok = k.len() > 5
        && k.starts_with("NCCL_")
        && k.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !name_ok {
        return Err(bad("not an NCCL_ variable name"));
    }
    if v.len() > 256 || v.chars().any(char::is_control) {
        return Err(bad("the value is too long or holds control characters"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// The name of a path type (`PXB`).
pub fn path_name(t: u8) -> &'static str {
    PATH_NAMES.get(t as usize).copied().unwrap_or("?")
}

/// C's `strtol(s, NULL, 0)`: leading blanks, a sign, then `0x` hex, `0` octal or decimal, as
/// far as digits go. None when no digit was read (C gives 0 and leaves the end at `s`).
pub fn strtol(s: &str) -> Option<i64> {
    let t = s.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let hex = t.len() > 2 && (t.starts_with("0x") || t.starts_with("0X")) && t.as_bytes()[2].is_ascii_hexdigit();
    let (radix, digits) = if hex {
        (16, &t[2..])
    } else if t.starts_with('0') {
        (8, t)
    } else {
        (10, t)
    };
    let end = digits.find(|c: char| !c.is_digit(radix)).unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    // Saturate as strtol does on overflow (ERANGE).
    let v = i64::from_str_radix(&digits[..end], radix).unwrap_or(i64::MAX);
    Some(if neg { v.saturating_neg() } else { v })
}

/// `ncclGetLevel(level, disableEnv, levelEnv)`: the user's level and the words that say where
/// it came from, or None when unset or not understood (NCCL then keeps its default).
pub fn user_level(env: &BTreeMap<String, String>, disable_var: Option<&str>, level_var: &str) -> Option<(u8, String)> {
    if let Some((var, v)) = disable_var.and_then(|d| env.get(d).map(|v| (d, v))) {
        if strtol(v) == Some(1) {
            return Some((PATH_LOC, format!("{var}=1")));
        }
    }
    let v = env.get(level_var)?;
    // Names are compared exactly (strcmp), LOC..SYS.
    if let Some(i) = PATH_NAMES.iter().position(|n| *n == v) {
        return Some((i as u8, format!("{level_var}={v}")));
    }
    if v.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        let old = strtol(v).unwrap_or(0).clamp(0, OLD_LEVELS.len() as i64 - 1);
        let l = OLD_LEVELS[old as usize];
        return Some((l, format!("{level_var}={v} (old numbering: {})", path_name(l))));
    }
    None
}

/// `NCCL_PARAM`'s read (`ncclLoadParam`): `strtoll(str, &end, 0)`; empty or no digits keeps
/// the default.
pub fn param(env: &BTreeMap<String, String>, var: &str, default: i64) -> i64 {
    env.get(var).filter(|v| !v.is_empty()).and_then(|v| strtol(v)).unwrap_or(default)
}

/// Variables that are set but NCCL would ignore (unknown level names): said in the reason.
pub fn ignored(env: &BTreeMap<String, String>, level_var: &str) -> Option<String> {
    let v = env.get(level_var)?;
    user_level(env, None, level_var)
        .is_none()
        .then(|| format!("{level_var}={v} is not a level NCCL knows (LOC..SYS or 0..5): ignored"))
}

/// `ncclTopoCheckP2p`'s level: PXB, SYS on x86 AMD with at most two GPUs, then the user's
/// `NCCL_P2P_DISABLE` / `NCCL_P2P_LEVEL` (`ncclGetUserP2pLevel`).
pub fn p2p_level(env: &BTreeMap<String, String>, amd_cpu_few_gpus: bool) -> (u8, String) {
    match user_level(env, Some("NCCL_P2P_DISABLE"), "NCCL_P2P_LEVEL") {
        Some((l, from)) => (l, format!("{} (set: {from})", path_name(l))),
        None if amd_cpu_few_gpus => (PATH_SYS, "SYS (default on x86 AMD with at most 2 GPUs)".into()),
        None => (PATH_PXB, "PXB (default)".into()),
    }
}

/// `ncclTopoCheckGdr`'s level: P2C when `NCCL_NET_GDR_C2C` (default 1) else PXB, then the
/// user's `NCCL_NET_GDR_LEVEL`.
pub fn gdr_level(env: &BTreeMap<String, String>) -> (u8, String) {
    match user_level(env, None, "NCCL_NET_GDR_LEVEL") {
        Some((l, from)) => (l, format!("{} (set: {from})", path_name(l))),
        None if param(env, "NCCL_NET_GDR_C2C", 1) != 0 => (PATH_P2C, "P2C (default, NCCL_NET_GDR_C2C=1)".into()),
        None => (PATH_PXB, "PXB (default with NCCL_NET_GDR_C2C=0)".into()),
    }
}

/// `NCCL_NET_GDR_READ` (default -2): whether GPUDirect RDMA is used for sends, the NIC reading
/// GPU memory. 0: never; positive: always; negative: not before compute capability 8.0
/// (Ampere) unless NVLink peers or a single GPU.
pub fn gdr_read(env: &BTreeMap<String, String>) -> &'static str {
    match param(env, "NCCL_NET_GDR_READ", -2) {
        0 => "NCCL_NET_GDR_READ=0: sends (the NIC reading GPU memory) are staged through host memory; receives use GPUDirect RDMA",
        v if v > 0 => "NCCL_NET_GDR_READ set: sends use GPUDirect RDMA too",
        _ => "sends use it from compute capability 8.0 (Ampere) on, or with NVLink peers; older GPUs stage sends through host memory",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn assignments_name_nccl_variables() {
        assert_eq!(parse_assignment("NCCL_P2P_LEVEL=SYS").unwrap(), ("NCCL_P2P_LEVEL".into(), "SYS".into()));
        assert_eq!(parse_assignment("NCCL_NET_GDR_LEVEL=").unwrap().1, "");
        for bad in ["NCCL_P2P_LEVEL", "P2P_LEVEL=SYS", "nccl_p2p_level=SYS", "NCCL_=1", "NCCL_X=a\x1b"] {
            assert!(parse_assignment(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn strtol_reads_like_c() {
        assert_eq!(strtol("1"), Some(1));
        assert_eq!(strtol("  +3abc"), Some(3));
        assert_eq!(strtol("0x10"), Some(16));
        assert_eq!(strtol("010"), Some(8));
        assert_eq!(strtol("08"), Some(0), "octal stops at 8");
        assert_eq!(strtol("-2"), Some(-2));
        assert_eq!(strtol("0x"), Some(0), "the 0 is read, the x is not");
        assert_eq!(strtol("yes"), None);
        assert_eq!(strtol(""), None);
    }

    #[test]
    fn nccl_get_level_names_numbers_and_disable() {
        let l =
            |pairs: &[(&str, &str)]| user_level(&env(pairs), Some("NCCL_P2P_DISABLE"), "NCCL_P2P_LEVEL").map(|x| x.0);
        assert_eq!(l(&[]), None);
        assert_eq!(l(&[("NCCL_P2P_LEVEL", "SYS")]), Some(PATH_SYS));
        assert_eq!(l(&[("NCCL_P2P_LEVEL", "PHB")]), Some(PATH_PHB));
        assert_eq!(l(&[("NCCL_P2P_LEVEL", "phb")]), None, "strcmp: names are case-sensitive");
        assert_eq!(l(&[("NCCL_P2P_LEVEL", "NET")]), None, "only LOC..SYS");
        assert_eq!(l(&[("NCCL_P2P_LEVEL", "2")]), Some(PATH_PXB), "old numbering");
        assert_eq!(l(&[("NCCL_P2P_LEVEL", "3")]), Some(PATH_PHB));
        assert_eq!(l(&[("NCCL_P2P_LEVEL", "9")]), Some(PATH_SYS), "clamped to 5");
        assert_eq!(l(&[("NCCL_P2P_DISABLE", "1"), ("NCCL_P2P_LEVEL", "SYS")]), Some(PATH_LOC), "disable wins");
        assert_eq!(l(&[("NCCL_P2P_DISABLE", "0"), ("NCCL_P2P_LEVEL", "SYS")]), Some(PATH_SYS));
        assert_eq!(l(&[("NCCL_P2P_DISABLE", "2")]), None, "only 1 disables");
    }

    #[test]
    fn nccl_topo_check_p2p_level_defaults_and_overrides() {
        assert_eq!(p2p_level(&env(&[]), false).0, PATH_PXB);
        assert_eq!(p2p_level(&env(&[]), true).0, PATH_SYS);
        assert_eq!(p2p_level(&env(&[("NCCL_P2P_LEVEL", "PIX")]), true).0, PATH_PIX, "the user overrides AMD's SYS");
        assert!(p2p_level(&env(&[("NCCL_P2P_DISABLE", "1")]), false).1.contains("NCCL_P2P_DISABLE=1"));
    }

    #[test]
    fn nccl_topo_check_gdr_level_defaults_and_overrides() {
        assert_eq!(gdr_level(&env(&[])).0, PATH_P2C);
        assert_eq!(gdr_level(&env(&[("NCCL_NET_GDR_C2C", "0")])).0, PATH_PXB);
        assert_eq!(gdr_level(&env(&[("NCCL_NET_GDR_C2C", "x")])).0, PATH_P2C, "no digits: default");
        assert_eq!(gdr_level(&env(&[("NCCL_NET_GDR_LEVEL", "PHB")])).0, PATH_PHB);
        assert_eq!(gdr_level(&env(&[("NCCL_NET_GDR_LEVEL", "4")])).0, PATH_SYS);
        assert!(ignored(&env(&[("NCCL_NET_GDR_LEVEL", "bogus")]), "NCCL_NET_GDR_LEVEL").is_some());
        assert!(gdr_read(&env(&[("NCCL_NET_GDR_READ", "0")])).contains("staged"));
        assert!(gdr_read(&env(&[("NCCL_NET_GDR_READ", "1")])).contains("sends use GPUDirect RDMA too"));
        assert!(gdr_read(&env(&[])).contains("Ampere"));
    }
}
