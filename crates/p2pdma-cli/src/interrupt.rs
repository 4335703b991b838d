//! SIGINT and SIGTERM during `copy` and `bench`: the first asks the engine to stop (no new
//! I/O, the I/O in flight finishes, the outcome is reported); a second ends the process at
//! once, as an unhandled signal would. Exit codes follow the shell: 128 + the signal.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::SigId;

/// The handlers, installed for the life of the value.
pub struct Interrupt {
    stop: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
    ids: Vec<SigId>,
}

impl Interrupt {
    pub fn install() -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let signal = Arc::new(AtomicUsize::new(0));
        let mut ids = Vec::new();
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as the earlier signal left it.
            ids.push(signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&stop))?);
            ids.push(signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)?);
            ids.push(signal_hook::flag::register(sig, Arc::clone(&stop))?);
        }
        Ok(Interrupt { stop, signal, ids })
    }

    /// Set once a signal arrived: what the engine watches.
    pub fn flag(&self) -> &AtomicBool {
        &self.stop
    }

    fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => i32::try_from(s).ok(),
        }
    }

    /// `SIGINT` or `SIGTERM`, once one arrived.
    pub fn signal_name(&self) -> Option<String> {
        self.signal().map(|s| if s == SIGINT { "SIGINT".into() } else { "SIGTERM".into() })
    }

    /// 130 for SIGINT, 143 for SIGTERM.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(128 + self.signal().unwrap_or(SIGINT) as u8)
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
