//! The two io_uring steps the copy engine and the read-back share: queue a request, and
//! submit and collect completions (a signal's interruption is no error).

use io_uring::IoUring;
use rustix::io::Errno;

use crate::{IoCause, MemError};

/// Queues one request.
///
/// # Safety
/// The memory the request reads or writes must stay valid, and untouched by anyone else,
/// until its completion is seen; the queue must have room (one entry per buffer).
pub(crate) unsafe fn push(ring: &mut IoUring, sqe: &io_uring::squeue::Entry) {
    // SAFETY: the caller's promise, passed on.
    if unsafe { ring.submission().push(sqe) }.is_err() {
        unreachable!("the queue has one entry per buffer");
    }
}

/// Submits what is queued, waits for at least one completion and returns every completion
/// there is (user data, result); none when a signal interrupted the wait, so the caller
/// looks at its stop flag and waits again. An error means the ring itself failed.
pub(crate) fn wait(ring: &mut IoUring) -> Result<Vec<(usize, i32)>, MemError> {
    match ring.submit_and_wait(1) {
        Ok(_) => Ok(ring.completion().map(|c| (c.user_data() as usize, c.result())).collect()),
        Err(e) if e.raw_os_error() == Some(Errno::INTR.raw_os_error()) => Ok(Vec::new()),
        Err(e) => Err(MemError::Uring {
            cause: IoCause(Errno::from_raw_os_error(e.raw_os_error().unwrap_or(Errno::IO.raw_os_error()))),
        }),
    }
}
