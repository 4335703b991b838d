//! What decides which stacks exist on a machine, read from text: the loaded modules
//! (`/proc/modules`) and NVIDIA's registry keys (`/proc/driver/nvidia/params`). Pure parsing;
//! p2pdma-host reads the files (bounded), topology files give the same as `[machine]` keys.

use std::collections::BTreeMap;

/// The registry key `nv_grdma_pci_topology_supported` (open-gpu-kernel-modules,
/// kernel-open/nvidia/nv-pci.c) switches on: 0 the driver's check, 1 allow, 2 deny.
pub const GRDMA_OVERRIDE_KEY: &str = "GrdmaPciTopoCheckOverride";

/// Module names from `/proc/modules` (the first field of each line), `-` read as `_` as the
/// kernel names them.
pub fn parse_proc_modules(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| {
            !n.is_empty() && n.len() <= 64 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .map(|n| n.replace('-', "_"))
        .collect()
}

/// `Key: value` lines of `/proc/driver/nvidia/params`; lines that are not are skipped.
pub fn parse_nvidia_params(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, _)| !k.is_empty() && k.len() <= 64 && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').chars().take(256).collect()))
        .collect()
}

/// `NVreg_GrdmaPciTopoCheckOverride` from the registry; None when no registry was read (or
/// the value is not a number).
pub fn grdma_override(registry: &BTreeMap<String, String>) -> Option<i64> {
    let v = registry.get(GRDMA_OVERRIDE_KEY).or_else(|| registry.get(&format!("NVreg_{GRDMA_OVERRIDE_KEY}")))?;
    crate::nccl::strtol(v)
}

/// Whether a module is loaded: Some(true/false) from a known list, None when unknown.
pub fn loaded(modules: Option<&[String]>, name: &str) -> Option<bool> {
    modules.map(|m| m.iter().any(|x| x == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_modules_first_fields() {
        let text = "nvidia_peermem 16384 0 - Live 0x0000000000000000 (POE)\nnvidia 11620352 2 nvidia_peermem, Live 0x0 (POE)\nnvmet-rdma 1 0 - Live 0x0\n\n";
        assert_eq!(parse_proc_modules(text), ["nvidia_peermem", "nvidia", "nvmet_rdma"]);
        assert!(parse_proc_modules("\u{1b}[31m 1 0\n").is_empty(), "no control characters");
    }

    #[test]
    fn nvidia_params_and_the_grdma_override() {
        let text = "ResmanDebugLevel: 4294967295\nGrdmaPciTopoCheckOverride: 1\nRegistryDwords: \"\"\nnot a line\n";
        let r = parse_nvidia_params(text);
        assert_eq!(r.get("RegistryDwords").map(String::as_str), Some(""));
        assert_eq!(grdma_override(&r), Some(1));
        assert_eq!(grdma_override(&BTreeMap::new()), None);
        assert_eq!(loaded(None, "nvidia"), None);
        assert_eq!(loaded(Some(&["nvidia".to_string()]), "nvidia_peermem"), Some(false));
    }
}
