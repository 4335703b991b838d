//! Booting a [`LabMachine`] under QEMU: preparing the run directory, streaming the console,
//! reading the exit marker, and making sure QEMU never outlives the run.

use std::collections::VecDeque;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::machine::blkdebug_config;

use crate::cache::Freshness;
use crate::error::{LabError, Result};
use crate::initramfs::{
    build_initramfs, find_busybox, InitramfsSpec, BEGIN_MARKER, DEFAULT_BOOT_MODULES, DEFAULT_EXTRA_MODULES,
    EXIT_MARKER,
};
use crate::kernel::{default_cache_dir, find_kernel, Kernel};
use crate::machine::{qemu_args, validate, LabAssets, LabDeviceKind, LabMachine, NVME_BOUNCE_BUFFER};
use crate::qemu::{find_qemu, QemuChoice};

/// How many console lines errors and [`RunOutcome::console_tail`] keep.
const TAIL_LINES: usize = 40;
/// How long QEMU may take to power off after the command reported its status.
const POWEROFF_GRACE: Duration = Duration::from_secs(15);

/// How to run the lab.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Whole-run limit (boot, command, power-off). QEMU is killed when it expires.
    pub timeout: Duration,
    /// Host files copied into the initramfs: (host path, absolute guest path).
    pub extra_files: Vec<(PathBuf, String)>,
    /// Host directory shared read-write with the guest over virtio-9p, mounted at
    /// [`crate::GUEST_SHARE_DIR`] (`/lab/share`). Adds a virtio-9p-pci device at pcie.0 slot 0x1e.
    pub share_dir: Option<PathBuf>,
    /// The static `p2pdma` binary, installed as `/usr/local/bin/p2pdma` (on PATH).
    pub p2pdma_binary: Option<PathBuf>,
    /// The kernel; `None`: `$P2PDMA_KERNEL_DIR`, the newest cached kernel, or a fetch.
    pub kernel: Option<Kernel>,
    /// Cache directory; `None`: [`crate::default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Modules `/init` loads at boot (dependencies added). The 9p modules are added when
    /// `share_dir` is set.
    pub boot_modules: Vec<String>,
    /// Modules packed for `modprobe` in the guest (dependencies added; missing ones skipped).
    pub extra_modules: Vec<String>,
    /// Stream the command's output to the host's stdout as it comes.
    pub echo_output: bool,
    /// Copy the rest of the console (firmware, kernel, /init notes) to the host's stderr.
    pub echo_console: bool,
    /// Let all kernel messages reach the console (`loglevel=7`), not only emergencies.
    pub kernel_log: bool,
    /// The QEMU to run; `None`: `$P2PDMA_QEMU`, else the machine's `qemu-system-x86_64`.
    pub qemu: Option<QemuChoice>,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            timeout: Duration::from_secs(300),
            extra_files: Vec::new(),
            share_dir: None,
            p2pdma_binary: None,
            kernel: None,
            cache_dir: None,
            boot_modules: DEFAULT_BOOT_MODULES.iter().map(|s| s.to_string()).collect(),
            extra_modules: DEFAULT_EXTRA_MODULES.iter().map(|s| s.to_string()).collect(),
            echo_output: true,
            echo_console: false,
            kernel_log: false,
            qemu: None,
        }
    }
}

/// The result of [`run`].
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The guest command's exit status (0-255, as `sh` reports it).
    pub exit_status: i32,
    /// The command's output (stdout and stderr interleaved, `\r` removed).
    pub output: String,
    /// The last console lines (boot and command).
    pub console_tail: Vec<String>,
    /// The QEMU argv used.
    pub qemu_args: Vec<String>,
    /// Building the initramfs and disk images.
    pub prepare_time: Duration,
    /// From starting QEMU to the command starting in the guest.
    pub boot_time: Duration,
    /// The command itself.
    pub command_time: Duration,
    /// Everything, from the call to QEMU's exit.
    pub total_time: Duration,
}

/// Boots `machine`, runs `command` (a `sh` command line) in the guest, and returns its exit
/// status. Output is streamed as it comes (see [`LabOptions::echo_output`]).
pub fn run(machine: &LabMachine, command: &str, opts: &LabOptions) -> Result<RunOutcome> {
    let started = Instant::now();
    let prepared = prepare(machine, opts, Some(command))?;
    let prepare_time = started.elapsed();
    let _signals = SignalGuard::install();

    let mut cmd = Command::new(&prepared.args[0]);
    cmd.args(&prepared.args[1..])
        .envs(prepared.qemu_env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut qemu = spawn_guarded(cmd, true)?;
    let qemu_started = Instant::now();

    let (lines, stderr_reader) = read_output(&mut qemu);
    let mut console = Console::new(&prepared.nonce);
    follow_console(&mut qemu, &lines, &mut console, opts, qemu_started + opts.timeout)?;

    // QEMU closed its stdout: it is exiting (or was killed).
    let status = qemu.wait_with_deadline(Duration::from_secs(5));
    let stderr_text = stderr_reader.join().unwrap_or_default();
    let total_time = started.elapsed();
    match (console.exit, console.command_started) {
        (Some((exit_status, exit_at)), Some(begin_at)) => Ok(RunOutcome {
            exit_status,
            output: console.output,
            console_tail: console.tail.into(),
            qemu_args: prepared.args.clone(),
            prepare_time,
            boot_time: begin_at - qemu_started,
            command_time: exit_at - begin_at,
            total_time,
        }),
        _ => Err(LabError::GuestDied {
            status: status.map_or_else(|| "killed".to_string(), |s| s.to_string()),
            panicked: console.panicked,
            stderr: stderr_text.trim().to_string(),
            tail: console.tail.into(),
        }),
    }
}

/// QEMU's stdout as console lines on a channel (ending with [`Event::StdoutClosed`]), and
/// its whole stderr from a thread, so neither pipe can fill up.
fn read_output(qemu: &mut Guarded) -> (mpsc::Receiver<Event>, std::thread::JoinHandle<String>) {
    let (tx, rx) = mpsc::channel();
    let stdout = qemu.child.stdout.take();
    let stderr = qemu.child.stderr.take();
    std::thread::spawn(move || {
        if let Some(out) = stdout {
            read_lines(out, |line| tx.send(Event::Line(line)).is_ok());
        }
        let _ = tx.send(Event::StdoutClosed);
    });
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut err) = stderr {
            let _ = err.read_to_string(&mut text);
        }
        text
    });
    (rx, stderr_reader)
}

/// Feeds the console until QEMU closes its stdout, or the guest reported its exit status
/// and power-off takes too long; a signal or the deadline kills QEMU and ends the run.
fn follow_console(
    qemu: &mut Guarded,
    lines: &mpsc::Receiver<Event>,
    console: &mut Console,
    opts: &LabOptions,
    deadline: Instant,
) -> Result<()> {
    let stdout = std::io::stdout();
    loop {
        if let Some(sig) = pending_signal() {
            qemu.kill();
            return Err(LabError::Interrupted(sig));
        }
        let now = Instant::now();
        if console.exit.is_none() && now >= deadline {
            qemu.kill();
            return Err(LabError::Timeout { timeout: opts.timeout, tail: console.tail.clone().into() });
        }
        if let Some((_, at)) = console.exit {
            if now >= at + POWEROFF_GRACE {
                qemu.kill();
                return Ok(());
            }
        }
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Line(raw)) => console.line(&raw, opts, &stdout),
            Ok(Event::StdoutClosed) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

/// What the guest's console said so far: the markers around the command (with this run's
/// nonce), the command's output, its exit status, the last lines, a kernel panic.
struct Console {
    begin: String,
    exit_prefix: String,
    tail: VecDeque<String>,
    output: String,
    command_started: Option<Instant>,
    exit: Option<(i32, Instant)>,
    panicked: bool,
}

impl Console {
    fn new(nonce: &str) -> Console {
        Console {
            begin: format!("{BEGIN_MARKER}{nonce}"),
            exit_prefix: format!("{EXIT_MARKER}{nonce}:"),
            tail: VecDeque::new(),
            output: String::new(),
            command_started: None,
            exit: None,
            panicked: false,
        }
    }

    /// One console line: boot noise before the begin marker, the command's output after
    /// it, its exit status from the exit marker, power-off noise after that.
    fn line(&mut self, raw: &str, opts: &LabOptions, stdout: &std::io::Stdout) {
        let line = printable(raw);
        self.panicked |= line.contains("Kernel panic");
        push_tail(&mut self.tail, line.clone());
        if self.exit.is_some() {
            if opts.echo_console {
                crate::stderr_line(&line);
            }
        } else if self.command_started.is_none() {
            if line.contains(&self.begin) {
                self.command_started = Some(Instant::now());
            } else if opts.echo_console {
                crate::stderr_line(&line);
            }
        } else if let Some(pos) = raw.find(&self.exit_prefix) {
            let before = &raw[..pos];
            if !before.is_empty() {
                emit(stdout, &mut self.output, before, opts.echo_output);
            }
            let status = raw[pos + self.exit_prefix.len()..].trim().parse::<i32>().unwrap_or(255);
            self.exit = Some((status, Instant::now()));
        } else {
            emit(stdout, &mut self.output, raw, opts.echo_output);
        }
    }
}

/// Boots `machine` with an interactive shell on the serial console (this terminal).
/// Returns QEMU's exit code once the guest powers off (`exit` in the shell) or QEMU quits
/// (Ctrl-a x). `opts.timeout` does not apply.
pub fn shell(machine: &LabMachine, opts: &LabOptions) -> Result<i32> {
    let prepared = prepare(machine, opts, None)?;
    let _signals = SignalGuard::install();
    let mut cmd = Command::new(&prepared.args[0]);
    cmd.args(&prepared.args[1..]).envs(prepared.qemu_env.iter().cloned());
    // QEMU owns the terminal (raw mode): it must stay in our process group.
    let mut qemu = spawn_guarded(cmd, false)?;
    loop {
        if let Some(sig) = pending_signal() {
            qemu.kill();
            return Err(LabError::Interrupted(sig));
        }
        match qemu.child.try_wait() {
            Ok(Some(status)) => {
                qemu.reaped = true;
                return Ok(status
                    .code()
                    .unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                qemu.kill();
                return Err(LabError::io("waiting for QEMU", e));
            }
        }
    }
}

enum Event {
    Line(String),
    StdoutClosed,
}

/// Everything a run needs on disk, removed when dropped.
struct Prepared {
    args: Vec<String>,
    /// QEMU's environment: an unpacked QEMU's library path.
    qemu_env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    nonce: String,
    _dir: TempDir,
}

fn prepare(machine: &LabMachine, opts: &LabOptions, command: Option<&str>) -> Result<Prepared> {
    validate(machine)?;
    let cache = opts.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let choice = match &opts.qemu {
        Some(choice) => choice.clone(),
        None => QemuChoice::from_env()?,
    };
    let qemu = find_qemu(&choice, &cache, Freshness::Cached)?;
    let qemu_env = qemu.env();
    let kernel = match &opts.kernel {
        Some(kernel) => kernel.clone(),
        None => find_kernel(&cache)?,
    };
    if let Some(share) = &opts.share_dir {
        if !share.is_dir() {
            return Err(LabError::io(
                format!("share directory {}", share.display()),
                std::io::Error::from(std::io::ErrorKind::NotFound),
            ));
        }
    }
    for (host, guest) in &opts.extra_files {
        if !guest.starts_with('/') {
            return Err(LabError::InvalidMachine(format!(
                "extra file {} -> {guest:?}: the guest path must be absolute",
                host.display()
            )));
        }
    }
    let nonce = make_nonce();
    let dir = TempDir::create(&nonce)?;
    let assets = LabAssets {
        nvme_bounce_buffer: qemu.version.has_device_bounce_buffers().then_some(NVME_BOUNCE_BUFFER),
        qemu: qemu.program,
        qemu_data_dirs: qemu.data_dirs,
        kernel: kernel.vmlinuz.clone(),
        initrd: dir.0.join("initrd.cpio"),
        disk_dir: dir.0.clone(),
        share_dir: match &opts.share_dir {
            Some(share) => Some(
                share.canonicalize().map_err(|e| LabError::io(format!("share directory {}", share.display()), e))?,
            ),
            None => None,
        },
        kernel_log: opts.kernel_log,
    };
    let mut nvme_count = 0;
    for dev in &machine.devices {
        if let LabDeviceKind::Nvme { size_mib, .. } = dev.kind {
            nvme_count += 1;
            let path = assets.disk_path(&dev.id);
            let file = fs::File::create(&path).map_err(|e| LabError::io(format!("creating {}", path.display()), e))?;
            // A sparse file: takes no disk space until the guest writes.
            file.set_len(size_mib * 1024 * 1024).map_err(|e| LabError::io(format!("sizing {}", path.display()), e))?;
            if let Some(config) = blkdebug_config(machine, &dev.id) {
                let path = assets.blkdebug_path(&dev.id);
                fs::write(&path, config).map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
            }
        }
    }
    let spec = InitramfsSpec {
        kernel: &kernel,
        ko_cache: cache.join("ko"),
        boot_modules: opts.boot_modules.clone(),
        extra_modules: opts.extra_modules.clone(),
        busybox: find_busybox(&cache)?,
        p2pdma_binary: opts.p2pdma_binary.clone(),
        extra_files: &opts.extra_files,
        command,
        nonce: &nonce,
        nvme_count,
        share: assets.share_dir.is_some(),
    };
    build_initramfs(&spec, &assets.initrd)?;
    let args = qemu_args(machine, &assets)?;
    Ok(Prepared { args, qemu_env, nonce, _dir: dir })
}

/// A QEMU child that is killed and reaped when dropped.
struct Guarded {
    child: Child,
    reaped: bool,
}

impl Guarded {
    fn kill(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.reaped = true;
        }
    }

    fn wait_with_deadline(&mut self, limit: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.reaped = true;
                    return Some(status);
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        self.kill();
        None
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns QEMU so that it dies with us: PR_SET_PDEATHSIG(SIGKILL), and (for non-interactive
/// runs) its own process group, so a terminal Ctrl-C reaches only us and we stop it cleanly.
fn spawn_guarded(mut cmd: Command, own_group: bool) -> Result<Guarded> {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the child between fork and exec and only makes the raw
    // system calls prctl, getppid and setpgid (rustix: no libc state, no allocation on
    // these paths), which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // The parent may have died before prctl took effect.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::other("parent exited"));
            }
            if own_group {
                rustix::process::setpgid(None, None)?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|e| LabError::io(format!("starting {:?}", cmd.get_program()), e))?;
    Ok(Guarded { child, reaped: false })
}

/// A per-run directory (initrd, NVMe images), removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn create(nonce: &str) -> Result<Self> {
        sweep_stale_dirs();
        let path = std::env::temp_dir().join(format!("p2pdma-lab-{}-{nonce}", std::process::id()));
        fs::create_dir_all(&path).map_err(|e| {
            LabError::io(format!("creating {} (set TMPDIR to a writable directory)", path.display()), e)
        })?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Removes run directories left by lab processes that were killed (SIGKILL leaves no chance
/// to clean up): `p2pdma-lab-<pid>-<nonce>` whose pid no longer exists.
fn sweep_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("p2pdma-lab-"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        else {
            continue;
        };
        // Signal 0 only checks whether the process exists.
        let gone = rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH);
        if gone {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn make_nonce() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32) ^ count.rotate_left(48);
    format!("{:016x}", mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Calls `each` with every line (without `\n` and `\r`); stops when it returns false.
fn read_lines(mut input: impl Read, mut each: impl FnMut(String) -> bool) {
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            if !each(clean_line(&line)) {
                return;
            }
        }
    }
    if !pending.is_empty() {
        each(clean_line(&pending));
    }
}

fn clean_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.trim_end_matches(['\n', '\r']).replace('\r', "")
}

/// The line without terminal escapes and control characters (for tails and stderr).
fn printable(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final byte, or ESC + one char.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else if !c.is_control() || c == '\t' {
            out.push(c);
        }
    }
    out
}

fn push_tail(tail: &mut VecDeque<String>, line: String) {
    if tail.len() == TAIL_LINES {
        tail.pop_front();
    }
    tail.push_back(line);
}

fn emit(stdout: &std::io::Stdout, output: &mut String, line: &str, echo: bool) {
    output.push_str(line);
    output.push('\n');
    if echo {
        let mut lock = stdout.lock();
        let _ = writeln!(lock, "{line}");
        let _ = lock.flush();
    }
}

// ---- SIGINT/SIGTERM while a run is in progress ----

/// The signal caught (0: none), shared with the handlers.
static PENDING_SIGNAL: std::sync::LazyLock<std::sync::Arc<AtomicUsize>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(AtomicUsize::new(0)));
/// How many runs are active, and the handlers while any is.
static SIGNAL_STATE: Mutex<(usize, Vec<signal_hook::SigId>)> = Mutex::new((0, Vec::new()));

fn pending_signal() -> Option<i32> {
    match PENDING_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        sig => i32::try_from(sig).ok(),
    }
}

/// Catches SIGINT and SIGTERM while at least one run is active, so QEMU is stopped and the
/// run directory removed; the handlers go when the last guard drops (signal-hook keeps the
/// previous disposition chained).
struct SignalGuard;

impl SignalGuard {
    fn install() -> SignalGuard {
        let mut state = SIGNAL_STATE.lock().unwrap_or_else(|p| p.into_inner());
        if state.0 == 0 {
            PENDING_SIGNAL.store(0, Ordering::SeqCst);
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                let id = signal_hook::flag::register_usize(sig, std::sync::Arc::clone(&PENDING_SIGNAL), sig as usize);
                // Registration fails only for forbidden signals (SIGKILL, SIGSTOP): not these.
                if let Ok(id) = id {
                    state.1.push(id);
                }
            }
        }
        state.0 += 1;
        SignalGuard
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        let mut state = SIGNAL_STATE.lock().unwrap_or_else(|p| p.into_inner());
        state.0 = state.0.saturating_sub(1);
        if state.0 == 0 {
            for id in state.1.drain(..) {
                signal_hook::low_level::unregister(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_and_cleaned() {
        let mut lines = Vec::new();
        read_lines(&b"a\r\nb\nc\r\r\npartial"[..], |l| {
            lines.push(l);
            true
        });
        assert_eq!(lines, ["a", "b", "c", "partial"]);
    }

    #[test]
    fn escapes_are_removed_from_tails() {
        assert_eq!(printable("\u{1b}[2J\u{1b}[01;01Hhello\u{7}"), "hello");
        assert_eq!(printable("\u{1b}cSeaBIOS"), "SeaBIOS");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut tail = VecDeque::new();
        for i in 0..100 {
            push_tail(&mut tail, i.to_string());
        }
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.back().map(String::as_str), Some("99"));
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(make_nonce(), make_nonce());
    }
}
