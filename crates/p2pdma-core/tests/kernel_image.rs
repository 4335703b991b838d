//! The whitelist read out of the lab kernel's own image equals p2pdma's table for that
//! release: the table's history and the image reader check each other.

use std::path::PathBuf;

use p2pdma_core::kernel::{Release, WhitelistEntry};
use p2pdma_core::{kernel_image, whitelist};

/// Cached lab kernels (`<cache>/kernel/<release>/vmlinuz`), as p2pdma-lab lays them out.
fn cached_kernels() -> Vec<(String, PathBuf)> {
    let env = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty()).map(PathBuf::from);
    let cache = env("P2PDMA_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("p2pdma")))
        .unwrap_or_else(|| env("HOME").unwrap_or_default().join(".cache/p2pdma"));
    let Ok(dir) = std::fs::read_dir(cache.join("kernel")) else { return Vec::new() };
    let mut out: Vec<(String, PathBuf)> = dir
        .flatten()
        .filter(|e| e.path().join(".complete").exists() && e.path().join("vmlinuz").is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    out
}

#[test]
fn lab_kernel_image_whitelist_equals_the_release_table() {
    let kernels = cached_kernels();
    if kernels.is_empty() {
        eprintln!("skipped: no cached lab kernel (run `p2pdma lab fetch` to get Debian unstable's)");
        return;
    }
    let mut checked = 0;
    for (release, dir) in kernels {
        let config = std::fs::read_to_string(dir.join("config")).unwrap_or_default();
        let built = p2pdma_core::kernel::p2pdma_in_config(&config);
        let image = std::fs::read(dir.join("vmlinuz")).unwrap();
        let read = kernel_image::whitelist_from_image(&image);
        if built != Some(true) {
            // A kernel without P2PDMA has no table to find.
            assert_eq!(read, Err(kernel_image::ImageError::NoTable), "{release}");
            continue;
        }
        let read = read.unwrap_or_else(|e| panic!("{release}: {e}"));
        let r: Release = release.parse().unwrap();
        let table: Vec<WhitelistEntry> =
            whitelist::for_release(r.major, r.minor, r.patch).iter().map(WhitelistEntry::from).collect();
        let ids =
            |v: &[WhitelistEntry]| v.iter().map(|e| (e.vendor, e.device, e.same_host_bridge_only)).collect::<Vec<_>>();
        assert_eq!(ids(&read), ids(&table), "{release}: the image's whitelist differs from p2pdma's table");
        checked += 1;
    }
    eprintln!("{checked} kernel image(s) with P2PDMA checked");
}
