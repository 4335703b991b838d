//! What the unit tests share: whether they run under CI, and the engines a "both engines"
//! test runs, with io_uring required wherever the kernel has it.

use std::path::Path;

use rustix::io::Errno;

use crate::IoEngine;

/// Whether the tests run under CI: `CI` set to anything but empty, `0` or `false`.
pub fn under_ci() -> bool {
    means_ci(std::env::var("CI").ok().as_deref())
}

fn means_ci(ci: Option<&str>) -> bool {
    ci.is_some_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

/// What the running kernel says of io_uring, read from the kernel itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelUring {
    /// `kernel.io_uring_disabled` is 0, or absent (before 6.6) on a release from 5.1 on.
    Enabled(String),
    /// Turned off by the admin: `kernel.io_uring_disabled` is 1 (root and `io_uring_group`
    /// only) or 2 (no one).
    Disabled(String),
    /// No io_uring in this kernel: a release before 5.1, or none that can be read.
    Absent(String),
}

/// The verdict from `io_uring_disabled` (the sysctl's text, `None` when the file is absent)
/// and the release (`uname -r`).
pub fn kernel_uring(io_uring_disabled: Option<&str>, release: &str) -> KernelUring {
    match io_uring_disabled.map(str::trim) {
        Some("0") => KernelUring::Enabled("kernel.io_uring_disabled = 0".into()),
        Some(v) => KernelUring::Disabled(format!("kernel.io_uring_disabled = {v}")),
        None => {
            let mut nums = release.split(|c: char| !c.is_ascii_digit()).map(|n| n.parse::<u32>().ok());
            match (nums.next().flatten(), nums.next().flatten()) {
                (Some(major), Some(minor)) if (major, minor) >= (5, 1) => {
                    KernelUring::Enabled(format!("release {release} (io_uring since 5.1; no io_uring_disabled sysctl)"))
                }
                (Some(_), Some(_)) => KernelUring::Absent(format!("release {release} is before 5.1")),
                _ => KernelUring::Absent(format!("release {release:?} unreadable")),
            }
        }
    }
}

/// [`kernel_uring`] of the running kernel.
pub fn this_kernel_uring() -> KernelUring {
    let sysctl = std::fs::read_to_string(Path::new("/proc/sys/kernel/io_uring_disabled")).ok();
    let release = rustix::system::uname().release().to_string_lossy().into_owned();
    kernel_uring(sysctl.as_deref(), &release)
}

/// The engines a "both engines" test runs: sync, and io_uring. Without io_uring the test
/// goes on with sync alone only where io_uring is legitimately missing: the kernel has none
/// or the admin turned it off (a printed line says so, under CI too). Where the kernel has
/// it enabled, a failing `io_uring_setup` fails the test; EPERM or ENOSYS there (a seccomp
/// filter, as container runtimes install) fails it under CI and skips io_uring with a
/// printed line elsewhere.
pub fn engines(depth: usize) -> Vec<IoEngine> {
    let mut v = vec![IoEngine::Sync];
    let err = match IoEngine::uring(depth) {
        Ok(e) => {
            v.push(e);
            return v;
        }
        Err(e) => e,
    };
    let errno = err.errno().map(Errno::from_raw_os_error);
    let name = match errno {
        Some(Errno::PERM) => "EPERM".to_string(),
        Some(Errno::NOSYS) => "ENOSYS".to_string(),
        Some(e) => format!("errno {}", e.raw_os_error()),
        None => "an error".to_string(),
    };
    match this_kernel_uring() {
        KernelUring::Enabled(why) => {
            let msg =
                format!("io_uring_setup failed with {name} ({err}) although the kernel has io_uring enabled ({why})");
            let blocked = matches!(errno, Some(Errno::PERM | Errno::NOSYS));
            if blocked && !under_ci() {
                eprintln!("skipped io_uring (only sync tested): {msg}; a seccomp filter (container) may block it");
            } else if blocked {
                panic!(
                    "{msg}: a seccomp filter (container runtime) blocks it? Allow io_uring_setup, io_uring_enter \
                     and io_uring_register, or turn io_uring off in the kernel (sysctl kernel.io_uring_disabled=2) \
                     to test sync alone (CI is set: this fails, it does not skip)"
                );
            } else {
                panic!("{msg}");
            }
        }
        KernelUring::Disabled(why) | KernelUring::Absent(why) => {
            eprintln!("skipped io_uring (only sync tested): the kernel has none to give ({why}): {err}");
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_says_whether_io_uring_is_there() {
        assert!(matches!(kernel_uring(Some("0\n"), "6.18.44"), KernelUring::Enabled(_)));
        assert!(matches!(kernel_uring(Some("1\n"), "6.18.44"), KernelUring::Disabled(_)));
        assert!(matches!(kernel_uring(Some("2\n"), "6.18.44"), KernelUring::Disabled(_)));
        // Before 6.6 there is no sysctl: the release decides.
        assert!(matches!(kernel_uring(None, "6.1.0-18-amd64"), KernelUring::Enabled(_)));
        assert!(matches!(kernel_uring(None, "5.1.0"), KernelUring::Enabled(_)));
        assert!(matches!(kernel_uring(None, "5.0.21"), KernelUring::Absent(_)));
        assert!(matches!(kernel_uring(None, "4.19.0-26-amd64"), KernelUring::Absent(_)));
        assert!(matches!(kernel_uring(None, "10.0"), KernelUring::Enabled(_)));
        assert!(matches!(kernel_uring(None, ""), KernelUring::Absent(_)));
    }

    #[test]
    fn ci_is_set_unless_empty_zero_or_false() {
        assert!(means_ci(Some("true")) && means_ci(Some("1")) && means_ci(Some("yes")));
        assert!(!means_ci(None) && !means_ci(Some("")) && !means_ci(Some("0")) && !means_ci(Some("False")));
    }
}
