//! The thin applier: runs a plan's steps against configfs, one syscall each, collecting the
//! kernel's log lines per step; on a failure it undoes exactly what it did, in reverse, and
//! reports the errno and the kernel's own words.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use serde::Serialize;

use crate::plan::Step;

/// Where steps land. [`DirConfigFs`] is the real one; tests use a fake.
pub trait ConfigFs {
    fn run(&mut self, step: &Step) -> std::io::Result<()>;
}

/// New kernel log lines since the last call (empty when the log cannot be read).
pub trait KernelLog {
    fn drain(&mut self) -> Vec<String>;
}

/// No kernel log: for trees that are not the machine's own configfs.
pub struct NoLog;

impl KernelLog for NoLog {
    fn drain(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// configfs (or any directory tree) under `root`.
pub struct DirConfigFs {
    pub root: PathBuf,
}

impl ConfigFs for DirConfigFs {
    fn run(&mut self, step: &Step) -> std::io::Result<()> {
        let at = |p: &str| self.root.join(p);
        match step {
            Step::Mkdir { path } => fs::create_dir(at(path)),
            // One write(2) per attribute, as `echo` does: configfs stores on each write.
            Step::Write { path, value } => {
                let mut f = fs::OpenOptions::new().write(true).open(at(path))?;
                f.write_all(format!("{value}\n").as_bytes())
            }
            Step::Set { path, value } => {
                if p2pdma_host::bounded::attribute(&at(path)).is_some_and(|v| v == value.as_str()) {
                    return Ok(());
                }
                let mut f = fs::OpenOptions::new().write(true).open(at(path))?;
                f.write_all(format!("{value}\n").as_bytes())
            }
            Step::Symlink { target, link } => std::os::unix::fs::symlink(at(target), at(link)),
            Step::Unlink { path } => fs::remove_file(at(path)),
            Step::Rmdir { path } => fs::remove_dir(at(path)),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: Step,
    /// Kernel log lines that appeared during the step.
    pub kernel_log: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepFailure {
    pub step: Step,
    pub errno: Option<i32>,
    pub error: String,
    /// What the errno means here, where p2pdma knows.
    pub hint: Option<String>,
    pub kernel_log: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub done: Vec<StepRecord>,
    pub failed: Option<StepFailure>,
    /// The undo steps run after a failure, newest first.
    pub rolled_back: Vec<StepRecord>,
    pub rollback_failed: Vec<StepFailure>,
}

impl ApplyReport {
    pub fn ok(&self) -> bool {
        self.failed.is_none()
    }
}

fn attr(step: &Step) -> &str {
    step.path().rsplit('/').next().unwrap_or("")
}

/// What an errno means for this step, from the kernel's nvmet code.
fn hint(step: &Step, errno: i32) -> Option<String> {
    const ENOENT: i32 = 2;
    const EEXIST: i32 = 17;
    const ENODEV: i32 = 19;
    const EINVAL: i32 = 22;
    const EBUSY: i32 = 16;
    const EACCES: i32 = 13;
    const EPERM: i32 = 1;
    const EADDRINUSE: i32 = 98;
    const EADDRNOTAVAIL: i32 = 99;
    let h = match (step, attr(step), errno) {
        (_, _, EPERM | EACCES) => "configfs needs root",
        (Step::Write { .. }, "p2pmem", ENODEV) => {
            "the kernel knows no PCI device of that name with published P2P memory (see its log line)"
        }
        (Step::Write { .. }, "p2pmem", ENOENT) => {
            "this kernel's nvmet has no p2pmem attribute (built without CONFIG_PCI_P2PDMA)"
        }
        (Step::Write { .. }, "p2pmem", EBUSY) => "the namespace is enabled: p2pmem can only change while it is disabled",
        (Step::Write { .. }, "enable", EINVAL) => {
            "the kernel refused to enable the namespace: the device could not be opened or the P2P check failed (see its log lines)"
        }
        (Step::Write { .. }, "device_path", EBUSY) => "the namespace is enabled: disable it first",
        (Step::Symlink { .. }, _, EADDRINUSE) => "something else listens on this address and port",
        (Step::Symlink { .. }, _, EADDRNOTAVAIL) => "no interface on this machine has that address",
        (Step::Symlink { .. }, _, EINVAL) => {
            "the port could not be enabled: its transport module is not loaded, or its address is incomplete (see the kernel log)"
        }
        (Step::Set { .. }, _, ENOENT) => {
            "this kernel has no such attribute (a file saved on a kernel built with other options?): remove the key from the file"
        }
        (Step::Mkdir { .. }, _, EEXIST) => "it exists: created by someone else since configfs was read",
        (Step::Mkdir { .. }, _, ENOENT) => "the parent is missing: is nvmet loaded and configfs mounted?",
        (Step::Rmdir { .. }, _, EBUSY) => "still in use (linked from a port?)",
        _ => return None,
    };
    Some(h.to_string())
}

fn failure(step: &Step, e: &std::io::Error, kernel_log: Vec<String>) -> StepFailure {
    let errno = e.raw_os_error();
    StepFailure { step: step.clone(), errno, error: e.to_string(), hint: errno.and_then(|n| hint(step, n)), kernel_log }
}

/// Runs `steps` in order. With `rollback`, a failure undoes every completed step in reverse
/// (rmdir what was made, unlink what was linked, disable what was enabled); without it, the
/// run stops at the failure (teardown cannot be undone).
pub fn apply(fs: &mut dyn ConfigFs, log: &mut dyn KernelLog, steps: &[Step], rollback: bool) -> ApplyReport {
    let mut report = ApplyReport::default();
    log.drain();
    for step in steps {
        match fs.run(step) {
            Ok(()) => report.done.push(StepRecord { step: step.clone(), kernel_log: log.drain() }),
            Err(e) => {
                report.failed = Some(failure(step, &e, log.drain()));
                break;
            }
        }
    }
    if report.failed.is_some() && rollback {
        for done in report.done.iter().rev() {
            let Some(undo) = done.step.undo() else { continue };
            match fs.run(&undo) {
                Ok(()) => report.rolled_back.push(StepRecord { step: undo, kernel_log: log.drain() }),
                Err(e) => {
                    let f = failure(&undo, &e, log.drain());
                    report.rollback_failed.push(f);
                }
            }
        }
    }
    report
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory configfs with nvmet's shape: default groups appear with their parent,
    //! attributes exist only where the kernel has them, rmdir refuses non-empty or linked
    //! directories, and chosen steps fail with chosen errnos.

    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    #[derive(Default)]
    pub struct FakeConfigFs {
        pub dirs: BTreeSet<String>,
        pub attrs: BTreeMap<String, String>,
        pub links: BTreeMap<String, String>,
        /// (path suffix, errno): the first step whose path ends so fails.
        pub fail: Vec<(String, i32)>,
        pub log: Vec<String>,
        pub pending_kernel_log: Vec<String>,
    }

    /// What the kernel shows in a new object's attribute.
    fn default_value(attr: &str) -> &'static str {
        match attr {
            "enable" | "p2pmem" | "attr_allow_any_host" => "0",
            "attr_model" => "Linux",
            "attr_serial" => "0123456789abcdef",
            "device_uuid" => "00000000-0000-0000-0000-000000000001",
            "ana_grpid" => "1",
            "addr_treq" => "not specified",
            "ana_state" => "optimized",
            _ => "",
        }
    }

    /// The tree as files under `dir` (directories, attribute files, symlinks), for the
    /// readers that work on a real configfs.
    pub fn materialize(fs: &FakeConfigFs, dir: &std::path::Path) {
        for d in &fs.dirs {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        for (a, v) in &fs.attrs {
            std::fs::write(dir.join(a), format!("{v}\n")).unwrap();
        }
        for (l, t) in &fs.links {
            std::os::unix::fs::symlink(dir.join(t), dir.join(l)).unwrap();
        }
    }

    fn parent(p: &str) -> &str {
        p.rsplit_once('/').map(|(a, _)| a).unwrap_or("")
    }

    impl FakeConfigFs {
        pub fn nvmet() -> Self {
            let mut f = FakeConfigFs::default();
            for d in ["nvmet", "nvmet/subsystems", "nvmet/ports", "nvmet/hosts"] {
                f.dirs.insert(d.into());
            }
            f
        }

        /// Everything, as `find` would list it: the comparison before/after.
        pub fn listing(&self) -> Vec<String> {
            let mut v: Vec<String> = self.dirs.iter().cloned().collect();
            v.extend(self.attrs.iter().map(|(k, val)| format!("{k}={val}")));
            v.extend(self.links.iter().map(|(k, t)| format!("{k}->{t}")));
            v.sort();
            v
        }

        fn mkdir(&mut self, path: &str) -> std::io::Result<()> {
            let err = |n| Err(std::io::Error::from_raw_os_error(n));
            if self.dirs.contains(path) {
                return err(17);
            }
            if !self.dirs.contains(parent(path)) {
                return err(2);
            }
            let p = parent(path);
            const ADDR: &[&str] = &["addr_trtype", "addr_adrfam", "addr_traddr", "addr_trsvcid", "addr_treq"];
            let (defaults, attrs): (&[&str], &[&str]) = if p == "nvmet/subsystems" {
                (&["namespaces", "allowed_hosts"], &["attr_allow_any_host", "attr_model", "attr_serial"])
            } else if p.ends_with("/namespaces") {
                (&[], &["device_path", "device_uuid", "enable", "p2pmem", "ana_grpid"])
            } else if p == "nvmet/hosts" {
                (&[], &[])
            } else if p == "nvmet/ports" {
                (&["subsystems", "referrals", "ana_groups", "ana_groups/1"], ADDR)
            } else if p.ends_with("/ana_groups") {
                (&[], &["ana_state"])
            } else if p.ends_with("/referrals") {
                (&[], &["addr_trtype", "addr_adrfam", "addr_traddr", "addr_trsvcid", "addr_treq", "enable"])
            } else {
                return err(1);
            };
            self.dirs.insert(path.into());
            for d in defaults {
                self.dirs.insert(format!("{path}/{d}"));
            }
            for a in attrs {
                self.attrs.insert(format!("{path}/{a}"), default_value(a).into());
            }
            if p == "nvmet/ports" {
                self.attrs.insert(format!("{path}/ana_groups/1/ana_state"), "optimized".into());
            }
            Ok(())
        }

        fn rmdir(&mut self, path: &str) -> std::io::Result<()> {
            let err = |n| Err(std::io::Error::from_raw_os_error(n));
            if !self.dirs.contains(path) {
                return err(2);
            }
            if self.links.values().any(|t| t == path) {
                return err(16);
            }
            let prefix = format!("{path}/");
            let defaults = ["namespaces", "allowed_hosts", "subsystems", "referrals", "ana_groups", "ana_groups/1"];
            let user_child =
                self.dirs.iter().any(|d| d.strip_prefix(&prefix).is_some_and(|rest| !defaults.contains(&rest)))
                    || self.links.keys().any(|l| l.starts_with(&prefix));
            if user_child {
                return err(39);
            }
            self.dirs.retain(|d| d != path && !d.starts_with(&prefix));
            self.attrs.retain(|a, _| !a.starts_with(&prefix));
            Ok(())
        }
    }

    impl ConfigFs for FakeConfigFs {
        fn run(&mut self, step: &Step) -> std::io::Result<()> {
            self.log.push(step.to_string());
            if let Some(i) = self.fail.iter().position(|(suffix, _)| step.path().ends_with(suffix.as_str())) {
                let (_, errno) = self.fail.remove(i);
                return Err(std::io::Error::from_raw_os_error(errno));
            }
            match step {
                Step::Mkdir { path } => self.mkdir(path),
                Step::Rmdir { path } => self.rmdir(path),
                Step::Write { path, value } | Step::Set { path, value } => match self.attrs.get_mut(path) {
                    Some(v) => {
                        *v = value.clone();
                        Ok(())
                    }
                    None => Err(std::io::Error::from_raw_os_error(2)),
                },
                Step::Symlink { target, link } => {
                    if !self.dirs.contains(target) || !self.dirs.contains(parent(link)) {
                        return Err(std::io::Error::from_raw_os_error(2));
                    }
                    self.links.insert(link.clone(), target.clone());
                    Ok(())
                }
                Step::Unlink { path } => {
                    self.links.remove(path).map(|_| ()).ok_or_else(|| std::io::Error::from_raw_os_error(2))
                }
            }
        }
    }

    impl KernelLog for FakeConfigFs {
        fn drain(&mut self) -> Vec<String> {
            std::mem::take(&mut self.pending_kernel_log)
        }
    }

    /// A log that hands out lines when asked, in order (one batch per drain).
    pub struct ScriptedLog(pub Vec<Vec<String>>);

    impl KernelLog for ScriptedLog {
        fn drain(&mut self) -> Vec<String> {
            if self.0.is_empty() {
                Vec::new()
            } else {
                self.0.remove(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::*;
    use super::*;

    fn steps() -> Vec<Step> {
        let w = |p: &str, v: &str| Step::Write { path: p.into(), value: v.into() };
        let s = "nvmet/subsystems/nqn.t";
        vec![
            Step::Mkdir { path: s.into() },
            w(&format!("{s}/attr_allow_any_host"), "1"),
            Step::Mkdir { path: format!("{s}/namespaces/1") },
            w(&format!("{s}/namespaces/1/device_path"), "/dev/nvme0n1"),
            w(&format!("{s}/namespaces/1/p2pmem"), "0000:03:00.0"),
            w(&format!("{s}/namespaces/1/enable"), "1"),
            Step::Mkdir { path: "nvmet/ports/1".into() },
            w("nvmet/ports/1/addr_trtype", "tcp"),
            Step::Symlink { target: s.into(), link: "nvmet/ports/1/subsystems/nqn.t".into() },
        ]
    }

    #[test]
    fn apply_runs_every_step_in_order() {
        let mut fs = FakeConfigFs::nvmet();
        let r = apply(&mut fs, &mut NoLog, &steps(), true);
        assert!(r.ok());
        assert_eq!(r.done.len(), 9);
        assert_eq!(fs.attrs["nvmet/subsystems/nqn.t/namespaces/1/enable"], "1");
        assert_eq!(fs.links["nvmet/ports/1/subsystems/nqn.t"], "nvmet/subsystems/nqn.t");
    }

    #[test]
    fn apply_failure_at_link_rolls_back_everything_in_reverse() {
        let mut fs = FakeConfigFs::nvmet();
        let before = fs.listing();
        fs.fail.push(("ports/1/subsystems/nqn.t".into(), 98)); // EADDRINUSE at the link
        let mut log = ScriptedLog(vec![
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec![],
            vec!["nvmet_tcp: failed to bind".into()],
        ]);
        let r = apply(&mut fs, &mut log, &steps(), true);
        let f = r.failed.as_ref().unwrap();
        assert_eq!(f.errno, Some(98));
        assert!(f.hint.as_deref().unwrap().contains("listens"));
        assert_eq!(f.kernel_log, vec!["nvmet_tcp: failed to bind".to_string()]);
        let undone: Vec<String> = r.rolled_back.iter().map(|s| s.step.to_string()).collect();
        assert_eq!(
            undone,
            vec![
                "rmdir nvmet/ports/1",
                "echo 0 > nvmet/subsystems/nqn.t/namespaces/1/enable",
                "rmdir nvmet/subsystems/nqn.t/namespaces/1",
                "rmdir nvmet/subsystems/nqn.t",
            ]
        );
        assert!(r.rollback_failed.is_empty());
        assert_eq!(fs.listing(), before);
    }

    #[test]
    fn apply_failure_at_enable_keeps_the_kernel_reason() {
        let mut fs = FakeConfigFs::nvmet();
        let before = fs.listing();
        fs.fail.push(("/enable".into(), 22));
        let r = apply(&mut fs, &mut NoLog, &steps(), true);
        assert_eq!(r.failed.as_ref().unwrap().errno, Some(22));
        assert_eq!(r.rolled_back.len(), 2);
        assert_eq!(fs.listing(), before);
    }

    #[test]
    fn apply_without_rollback_stops_at_the_failure() {
        let mut fs = FakeConfigFs::nvmet();
        fs.fail.push(("/p2pmem".into(), 19));
        let r = apply(&mut fs, &mut NoLog, &steps(), false);
        assert_eq!(r.done.len(), 4);
        assert!(r.rolled_back.is_empty());
        assert!(r.failed.unwrap().hint.unwrap().contains("published P2P memory"));
    }

    #[test]
    fn dir_configfs_writes_values_with_a_newline() {
        let dir = tempfile::tempdir().unwrap();
        let mut fs = DirConfigFs { root: dir.path().to_path_buf() };
        fs.run(&Step::Mkdir { path: "a".into() }).unwrap();
        std::fs::write(dir.path().join("a/enable"), "0\n").unwrap();
        fs.run(&Step::Write { path: "a/enable".into(), value: "1".into() }).unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a/enable")).unwrap(), "1\n");
        fs.run(&Step::Symlink { target: "a".into(), link: "b".into() }).unwrap();
        assert_eq!(std::fs::read_link(dir.path().join("b")).unwrap(), dir.path().join("a"));
        fs.run(&Step::Unlink { path: "b".into() }).unwrap();
        let e = fs.run(&Step::Rmdir { path: "a".into() }).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(39)); // a plain directory keeps its files: ENOTEMPTY
    }
}

#[cfg(test)]
impl fake::FakeConfigFs {
    /// The fake's tree as `state::read` would see it.
    pub(crate) fn state(&self) -> crate::state::NvmetState {
        use crate::state::{parse_port_id, Namespace, NvmetState, Port, Subsystem};
        let children = |dir: &str| -> Vec<String> {
            let prefix = format!("{dir}/");
            let mut v: Vec<String> = self
                .dirs
                .iter()
                .filter_map(|d| d.strip_prefix(&prefix))
                .chain(self.links.keys().filter_map(|l| l.strip_prefix(&prefix)))
                .filter(|rest| !rest.contains('/'))
                .map(str::to_string)
                .collect();
            v.sort();
            v
        };
        let attr = |p: String| self.attrs.get(&p).cloned();
        let mut st = NvmetState { loaded: true, ..NvmetState::default() };
        for nqn in children("nvmet/subsystems") {
            let d = format!("nvmet/subsystems/{nqn}");
            let namespaces = children(&format!("{d}/namespaces"))
                .into_iter()
                .map(|n| {
                    let nd = format!("{d}/namespaces/{n}");
                    Namespace {
                        nsid: n.parse().unwrap(),
                        device_path: attr(format!("{nd}/device_path")).unwrap_or_default(),
                        enabled: attr(format!("{nd}/enable")).as_deref() == Some("1"),
                        p2pmem: attr(format!("{nd}/p2pmem")),
                        block_device: None,
                    }
                })
                .collect();
            st.subsystems.push(Subsystem {
                allow_any_host: attr(format!("{d}/attr_allow_any_host")).as_deref() == Some("1"),
                allowed_hosts: children(&format!("{d}/allowed_hosts")),
                namespaces,
                nqn,
            });
        }
        for name in children("nvmet/ports") {
            let d = format!("nvmet/ports/{name}");
            let a = |k: &str| attr(format!("{d}/{k}")).filter(|v| !v.is_empty());
            st.ports.push(Port {
                id: parse_port_id(&name),
                trtype: a("addr_trtype"),
                adrfam: a("addr_adrfam"),
                traddr: a("addr_traddr"),
                trsvcid: a("addr_trsvcid"),
                subsystems: children(&format!("{d}/subsystems")),
                referrals: children(&format!("{d}/referrals")).len(),
                extra_ana_groups: children(&format!("{d}/ana_groups")).iter().filter(|g| *g != "1").count(),
                name,
            });
        }
        st.hosts = children("nvmet/hosts");
        st
    }
}
