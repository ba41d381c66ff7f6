//! Stopping a running child from another thread (runner shutdown, `cronmgr kill`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Cancel a running child from another thread (runner shutdown, `cronmgr kill`): TERM the group,
/// grace, KILL. Clones share one flag: cancelling any clone cancels them all, and it stays
/// cancelled (a `run` started with a cancelled handle stops its child right after the spawn).
#[derive(Clone, Debug, Default)]
pub struct Cancel {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    cancelled: bool,
    next_id: u64,
    /// The `run` calls waiting on this handle, each woken through its own [`Wake`].
    listeners: Vec<(u64, Arc<Wake>)>,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        let mut state = self.lock();
        state.cancelled = true;
        for (_, listener) in &state.listeners {
            listener.wake();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.lock().cancelled
    }

    /// Wake `wake` when cancelled (at once if it already is), until the returned guard is dropped.
    pub(super) fn subscribe(&self, wake: Arc<Wake>) -> Subscription<'_> {
        let mut state = self.lock();
        if state.cancelled {
            wake.wake();
        }
        let id = state.next_id;
        state.next_id += 1;
        state.listeners.push((id, wake));
        Subscription { cancel: self, id }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a flag and a list, consistent after every statement: poison tells nothing.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub(super) struct Subscription<'a> {
    cancel: &'a Cancel,
    id: u64,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.cancel
            .lock()
            .listeners
            .retain(|(id, _)| *id != self.id);
    }
}

/// An eventfd the waiting thread polls: readable once woken, and it stays readable.
#[derive(Debug)]
pub(super) struct Wake(OwnedFd);

impl Wake {
    pub(super) fn new() -> io::Result<Wake> {
        // SAFETY: eventfd takes no pointers; the flags are valid.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: eventfd succeeded, so fd is open and owned by nobody else.
        Ok(Wake(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(super) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd this value owns. It cannot block
        // (non-blocking) and cannot overflow in practice (one write per cancel).
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub(super) fn fd(&self) -> libc::c_int {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn woken(wake: &Wake) -> bool {
        let mut fds = [libc::pollfd {
            fd: wake.fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: fds is a valid array of one pollfd for the whole call.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) == 1 }
    }

    #[test]
    fn clones_share_the_flag_and_listeners_hear_it() -> io::Result<()> {
        let cancel = Cancel::new();
        let other = cancel.clone();
        let wake = Arc::new(Wake::new()?);
        let sub = cancel.subscribe(wake.clone());
        assert!(!other.is_cancelled());
        assert!(!woken(&wake));
        other.cancel();
        assert!(cancel.is_cancelled());
        assert!(woken(&wake));
        drop(sub);
        assert!(cancel.lock().listeners.is_empty());
        Ok(())
    }

    #[test]
    fn subscribing_to_a_cancelled_handle_hears_it_at_once() -> io::Result<()> {
        let cancel = Cancel::new();
        cancel.cancel();
        let wake = Arc::new(Wake::new()?);
        let _sub = cancel.subscribe(wake.clone());
        assert!(woken(&wake));
        Ok(())
    }
}
