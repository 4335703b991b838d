//! The whitelist read out of the lab kernel's own image equals p2pdma's table for that
//! release: the table's history and the image reader check each other.
//!
//! The lab kernel comes from `p2pdma lab fetch` (scripts/test fetches it before this tier);
//! without one the test skips, or fails under CI (`common::missing`).

mod common;

use std::path::PathBuf;

use p2pdma_core::model::WhitelistEntry;
use p2pdma_core::release::KernelRelease;
use p2pdma_core::whitelist;
use p2pdma_host::kernel_image;

/// p2pdma-lab's cache, by its rule (`p2pdma_lab::default_cache_dir`, which this crate
/// cannot reach): `$P2PDMA_CACHE_DIR`, else `$XDG_CACHE_HOME/p2pdma`, else `~/.cache/p2pdma`.
fn cache_dir() -> PathBuf {
    let env = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("P2PDMA_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("p2pdma")))
        .unwrap_or_else(|| env("HOME").unwrap_or_else(std::env::temp_dir).join(".cache/p2pdma"))
}

/// Cached lab kernels (`<cache>/kernel/<release>/vmlinuz`, other suites' under
/// `<cache>/kernel/<suite>/<release>/`, each complete once `.complete` is there), as
/// p2pdma-lab lays them out.
fn cached_kernels() -> Vec<(String, PathBuf)> {
    let cache = cache_dir();
    let list = |dir: PathBuf| -> Vec<PathBuf> {
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
    };
    let mut out: Vec<(String, PathBuf)> = list(cache.join("kernel"))
        .into_iter()
        .flat_map(|p| if p.join(".complete").exists() { vec![p] } else { list(p) })
        .filter(|p| p.join(".complete").exists() && p.join("vmlinuz").is_file())
        .filter_map(|p| Some((p.file_name()?.to_string_lossy().into_owned(), p)))
        .collect();
    out.sort();
    out
}

#[test]
fn lab_kernel_image_whitelist_equals_the_release_table() {
    let kernels = cached_kernels();
    if kernels.is_empty() {
        return common::missing(
            &format!("no cached lab kernel in {}", cache_dir().join("kernel").display()),
            "run `p2pdma lab fetch` to get Debian unstable's (the cache is $P2PDMA_CACHE_DIR, else \
             $XDG_CACHE_HOME/p2pdma, else ~/.cache/p2pdma)",
        );
    }
    let mut checked = 0;
    for (release, dir) in kernels {
        let config = std::fs::read_to_string(dir.join("config")).unwrap_or_default();
        let built = p2pdma_core::kernel::p2pdma_in_config(&config);
        let image = std::fs::read(dir.join("vmlinuz")).unwrap();
        let read = kernel_image::whitelist_from_image(&image);
        if built != Some(true) {
            // A kernel without P2PDMA (bookworm's xz image, trixie's zstd): decompressed, no table.
            assert_eq!(read, Err(kernel_image::ImageError::NoTable), "{release}");
            eprintln!("{release}: no CONFIG_PCI_P2PDMA, no table in its image (as expected)");
            continue;
        }
        let read = read.unwrap_or_else(|e| panic!("{release}: {e}"));
        let r: KernelRelease = release.parse().unwrap();
        let table: Vec<WhitelistEntry> =
            whitelist::for_release(r.major, r.minor, r.patch).iter().map(WhitelistEntry::from).collect();
        let ids =
            |v: &[WhitelistEntry]| v.iter().map(|e| (e.vendor, e.device, e.same_host_bridge_only)).collect::<Vec<_>>();
        assert_eq!(ids(&read), ids(&table), "{release}: the image's whitelist differs from p2pdma's table");
        checked += 1;
    }
    eprintln!("{checked} kernel image(s) with P2PDMA checked");
    if checked == 0 {
        // Only other suites' kernels (built without P2PDMA): no table was compared.
        common::missing(
            &format!("no cached lab kernel with CONFIG_PCI_P2PDMA in {}", cache_dir().join("kernel").display()),
            "run `p2pdma lab fetch` to get Debian unstable's",
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 400, ..Default::default() })]

    /// Kernel images from anywhere: an answer or an error, never a panic.
    #[test]
    fn kernel_image_reader_never_panics(
        prefix in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        magic in 0usize..5,
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
    ) {
        let magics: [&[u8]; 5] = [b"", &[0x28, 0xb5, 0x2f, 0xfd], &[0xfd, b'7', b'z', b'X', b'Z', 0], &[0x1f, 0x8b, 0x08], &[0x02, 0x21, 0x4c, 0x18]];
        let mut image = prefix;
        image.extend_from_slice(magics[magic]);
        image.extend_from_slice(&body);
        let _ = kernel_image::whitelist_from_image(&image);
    }
}
