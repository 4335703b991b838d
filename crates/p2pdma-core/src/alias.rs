//! Short names for the devices people ask about (`GPU0`, `NIC0`, `NVME0`, `ACC0`), as
//! `nvidia-smi topo -m` labels its matrix, and the glob patterns `--device` takes.
//!
//! GPUn follows nvidia-smi's numbering (`CUDA_DEVICE_ORDER=PCI_BUS_ID`, the order the
//! importer's cross-check assumes in `p2pdma_host::import::crosscheck::gpus`): NVIDIA GPUs
//! in bus order first, then any other display controller, so that GPU0..GPU7 name the same
//! boards here and in a pasted `nvidia-smi topo -m`. Only physical functions get a short
//! name: VFs are shown as their PF's group.

use crate::model::Topology;
use crate::pathclass::DeviceClass;

/// Every device's short name, if its class has one (indices as `topo.devices`).
#[derive(Debug, Clone)]
pub struct ShortNames {
    of_device: Vec<Option<String>>,
}

const NVIDIA: u16 = 0x10de;

fn prefix(class: DeviceClass) -> Option<&'static str> {
    match class {
        DeviceClass::Gpu => Some("GPU"),
        DeviceClass::Nic => Some("NIC"),
        DeviceClass::Nvme => Some("NVME"),
        DeviceClass::Accel => Some("ACC"),
        DeviceClass::Storage | DeviceClass::Other => None,
    }
}

impl ShortNames {
    /// Numbers each class's physical functions in bus order (`topo.devices` is sorted by
    /// address), NVIDIA GPUs before other GPUs.
    pub fn new(topo: &Topology) -> ShortNames {
        let mut order: Vec<usize> = (0..topo.devices.len())
            .filter(|&i| {
                let d = &topo.devices[i];
                d.physfn.is_none() && d.is_dma_capable() && prefix(DeviceClass::of(d)).is_some()
            })
            .collect();
        // Stable: bus order within each rank.
        order.sort_by_key(|&i| {
            let d = &topo.devices[i];
            (DeviceClass::of(d) == DeviceClass::Gpu && d.vendor != NVIDIA, d.bdf)
        });
        let mut next = [0usize; DeviceClass::ALL.len()];
        let mut of_device = vec![None; topo.devices.len()];
        for i in order {
            let class = DeviceClass::of(&topo.devices[i]);
            let slot = DeviceClass::ALL.iter().position(|&c| c == class).unwrap_or(0);
            of_device[i] = prefix(class).map(|p| format!("{p}{}", next[slot]));
            next[slot] += 1;
        }
        ShortNames { of_device }
    }

    pub fn get(&self, device: usize) -> Option<&str> {
        self.of_device.get(device).and_then(|n| n.as_deref())
    }

    /// The device a short name stands for (any case: `gpu0`, `GPU0`).
    pub fn find(&self, name: &str) -> Option<usize> {
        self.of_device.iter().position(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
    }
}

/// Whether `s` is a pattern rather than a name: it holds `*` or `?`.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Shell-style matching, ASCII case ignored: `*` any run of characters, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    // The last `*` and where in the text it started matching: backtrack there on mismatch.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c.eq_ignore_ascii_case(&t[ti]) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;
    use std::path::Path;

    #[test]
    fn globs_match_as_a_shell_does_without_case() {
        assert!(glob_match("nvme*", "nvme-a") && glob_match("NVME*", "nvme0") && glob_match("*", ""));
        assert!(glob_match("gpu?", "gpu7") && !glob_match("gpu?", "gpu10") && glob_match("*:03:*", "0000:03:00.0"));
        assert!(!glob_match("nvme*", "nic0") && glob_match("a*b*c", "aXbYbc") && !glob_match("a*b", "ab-c"));
        assert!(is_glob("nvme*") && !is_glob("gpu0"));
    }

    #[test]
    fn gpus_are_numbered_nvidia_first_in_bus_order_like_nvidia_smi() {
        let text = std::fs::read_to_string("../../examples/topologies/gpu-server.toml").unwrap();
        let (_, topo) = spec::from_text(&text, Path::new("g.toml")).unwrap();
        let names = ShortNames::new(&topo);
        let gpus: Vec<usize> = (0..topo.devices.len())
            .filter(|&i| topo.devices[i].vendor == NVIDIA && topo.devices[i].class >> 16 == 3)
            .collect();
        for (n, &i) in gpus.iter().enumerate() {
            assert_eq!(names.get(i), Some(format!("GPU{n}").as_str()));
            assert_eq!(names.find(&format!("gpu{n}")), Some(i));
        }
        let nics = (0..topo.devices.len()).filter(|&i| names.get(i).is_some_and(|n| n.starts_with("NIC"))).count();
        assert_eq!((gpus.len(), nics), (8, 4));
        assert!(names.get(0).is_none(), "a bridge has no short name");
    }
}
