//! The output pipe and the thread that reads it.
//!
//! The reader must end even when a descendant that escaped the group (setsid) keeps the pipe
//! open: once told the group is gone, it reads what is left for at most [`DRAIN`], then stops.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::output::{Capture, LiveLog};

/// How long the reader keeps reading after the group is gone. Everything the group wrote is
/// already in the pipe and is read at memory speed; only an escaped descendant writes later.
const DRAIN: Duration = Duration::from_millis(500);
const CHUNK: usize = 64 * 1024;

/// A pipe whose both ends are close-on-exec, so a child spawned by another worker thread at the
/// same moment cannot inherit (and hold open) this job's pipe. `(read, write)`.
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two c_int for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let ends = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok(ends)
}

pub(super) struct Reader {
    thread: JoinHandle<Capture>,
    /// Dropping it (closing the pipe's write end) tells the thread to drain and stop.
    finish: OwnedFd,
}

impl Reader {
    pub(super) fn start(
        output: OwnedFd,
        cap: usize,
        live_log: Option<LiveLog>,
    ) -> io::Result<Reader> {
        let (finish_rx, finish) = pipe()?;
        let thread = thread::Builder::new()
            .name("job-output".into())
            .spawn(move || read(File::from(output), &finish_rx, cap, live_log))?;
        Ok(Reader { thread, finish })
    }

    /// Call once no process of the group is left: waits at most about [`DRAIN`].
    pub(super) fn finish(self) -> io::Result<Capture> {
        drop(self.finish);
        self.thread
            .join()
            .map_err(|_| io::Error::other("the output reader thread panicked"))
    }
}

fn read(mut output: File, finish: &OwnedFd, cap: usize, mut live_log: Option<LiveLog>) -> Capture {
    let mut capture = Capture::new(cap);
    let mut buf = vec![0; CHUNK];
    let mut drain_until: Option<Instant> = None;
    loop {
        let mut fds = [
            libc::pollfd {
                fd: output.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: finish.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let (nfds, timeout_ms) = match drain_until {
            None => (2, -1),
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    tracing::debug!(
                        "output pipe still open after the group ended; a descendant escaped it"
                    );
                    break;
                }
                (1, millis_rounded_up(left))
            }
        };
        // SAFETY: fds is a valid array of at least nfds pollfd structs for the whole call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout_ms) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::warn!("polling the job's output failed: {err}");
            break;
        }
        if ready == 0 {
            break; // drain deadline, nothing more came
        }
        if drain_until.is_none() && fds[1].revents != 0 {
            drain_until = Instant::now().checked_add(DRAIN);
        }
        if fds[0].revents == 0 {
            continue;
        }
        match output.read(&mut buf) {
            Ok(0) => break, // every writer closed the pipe
            Ok(n) => {
                capture.push(&buf[..n]);
                if let Some(log) = &mut live_log {
                    log.write(&buf[..n]);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                tracing::warn!("reading the job's output failed: {err}");
                break;
            }
        }
    }
    capture
}

fn millis_rounded_up(d: Duration) -> libc::c_int {
    let ms = d.as_micros().div_ceil(1000);
    libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
}
