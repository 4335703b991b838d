//! `nvidia-smi topo -m`: the matrix of connection types between GPUs and NICs (`X`, `PIX`,
//! `PXB`, `PHB`, `NODE`, `SYS`, `NV#`), the CPU and NUMA affinity columns, and the
//! `NIC Legend:` (`NIC0: mlx5_0`). Tabs or spaces (a markdown paste loses the tabs).

use serde::Serialize;

use crate::Error;

/// The parsed matrix.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TopoMatrix {
    /// Column labels in order (`GPU0`, `GPU1`, `NIC0`, ...).
    pub labels: Vec<String>,
    pub rows: Vec<TopoRow>,
    /// `NIC0` → `mlx5_0`, in legend order.
    pub nic_legend: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopoRow {
    pub label: String,
    /// One cell per column (`X`, `PIX`, `NV12`, ...); fewer when the row was cut.
    pub cells: Vec<String>,
    pub cpu_affinity: Option<String>,
    /// `N/A` becomes None.
    pub numa_affinity: Option<i32>,
    /// 1-based line in the section.
    pub line: usize,
}

/// `GPU0`, `NIC1`, `mlx5_0`: a row or column label.
pub fn is_label(t: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(n) = t.strip_prefix("GPU").or_else(|| t.strip_prefix("NIC")) {
        return digits(n);
    }
    // Older nvidia-smi labels NICs by their RDMA device: `mlx5_0`.
    t.strip_prefix("mlx").and_then(|r| r.split_once('_')).is_some_and(|(a, b)| digits(a) && digits(b))
}

/// A cell value nvidia-smi writes.
fn is_cell(t: &str) -> bool {
    matches!(t, "X" | "PIX" | "PXB" | "PHB" | "NODE" | "SYS" | "SOC")
        || t.strip_prefix("NV").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Parses the matrix. Never panics; a section without a header line is an error.
pub fn parse(text: &str) -> Result<TopoMatrix, Error> {
    let text = crate::import::bounded(text, "nvidia-smi topo -m")?;
    let mut m = TopoMatrix::default();
    let mut in_legend = false;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        if t.starts_with("NIC Legend") {
            in_legend = true;
            continue;
        }
        if in_legend {
            if let Some((k, v)) = t.split_once(':') {
                if is_label(k.trim()) {
                    m.nic_legend.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            continue;
        }
        let Some(&first) = words.first() else { continue };
        if !is_label(first) {
            continue;
        }
        if m.labels.is_empty() {
            // The header: labels, then `CPU Affinity  NUMA Affinity  GPU NUMA ID`.
            m.labels = words.iter().take_while(|w| is_label(w)).map(|w| w.to_string()).collect();
            continue;
        }
        let cells: Vec<String> =
            words[1..].iter().take(m.labels.len()).take_while(|w| is_cell(w)).map(|w| w.to_string()).collect();
        let rest = &words[1 + cells.len()..];
        let (cpu_affinity, numa_affinity) = if cells.len() == m.labels.len() && first.starts_with("GPU") {
            (rest.first().filter(|a| **a != "N/A").map(|a| a.to_string()), rest.get(1).and_then(|n| n.parse().ok()))
        } else {
            (None, None)
        };
        m.rows.push(TopoRow { label: first.to_string(), cells, cpu_affinity, numa_affinity, line: i + 1 });
    }
    if m.labels.is_empty() {
        return Err(Error::invalid("nvidia-smi topo -m", "no header line (GPU0 GPU1 ...)"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRX90: &str = "        GPU0    GPU1    NIC0    NIC1    CPU Affinity    NUMA Affinity   GPU NUMA ID
GPU0     X      PHB     NODE    NODE    0-23    0               N/A
GPU1    PHB      X      NODE    NODE    0-23    0               N/A
NIC0    NODE    NODE     X      PIX
NIC1    NODE    NODE    PIX      X

Legend:

  X    = Self
  NV#  = Connection traversing a bonded set of # NVLinks

NIC Legend:

  NIC0: mlx5_0
  NIC1: mlx5_1";

    #[test]
    fn topo_matrix_with_spaces_affinity_and_nic_legend() {
        let m = parse(WRX90).unwrap();
        assert_eq!(m.labels, ["GPU0", "GPU1", "NIC0", "NIC1"]);
        assert_eq!(m.rows.len(), 4);
        assert_eq!(m.rows[0].cells, ["X", "PHB", "NODE", "NODE"]);
        assert_eq!(m.rows[0].cpu_affinity.as_deref(), Some("0-23"));
        assert_eq!(m.rows[0].numa_affinity, Some(0));
        assert_eq!(m.rows[3].cells, ["NODE", "NODE", "PIX", "X"]);
        assert_eq!(m.rows[3].numa_affinity, None);
        assert_eq!(m.nic_legend, [("NIC0".into(), "mlx5_0".into()), ("NIC1".into(), "mlx5_1".into())]);
    }

    #[test]
    fn topo_matrix_with_tabs_and_nvlink() {
        let m = parse("\tGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\nGPU0\t X \tNV2\t0-7\t0\nGPU1\tNV2\t X \t8-15\t1\n")
            .unwrap();
        assert_eq!(m.rows[1].cells, ["NV2", "X"]);
        assert_eq!(m.rows[1].numa_affinity, Some(1));
    }
}
