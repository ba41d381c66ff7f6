//! Everything `run` waits for, on its own thread, with one `poll(2)`: the leader's exit (a pidfd),
//! the output pipe, and the cancel handle's eventfd.
//!
//! One thread per execution instead of three (a waiter blocked in `wait4`, a reader, and the one
//! that ties them together): the leader is reaped with `wait4` once its pidfd says it has exited.
//! Without pidfds (Linux < 5.3, or a seccomp filter that refuses them) the leader is looked for
//! with `wait4(WNOHANG)` at growing intervals instead.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::cancel::Wake;
use super::cgroup::Cgroup;
use super::group;
use super::output::{Capture, LiveLog};

/// Read from the output pipe at a time.
const CHUNK: usize = 16 * 1024;
/// Longest pause between two `wait4(WNOHANG)` when there is no pidfd.
const MAX_REAP_POLL: Duration = Duration::from_millis(50);

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

/// A descriptor that becomes readable when `pid` (our unreaped child) exits; None when the
/// kernel has no pidfds. The pid cannot be reused before we reap it, so it names our child.
pub(super) fn pidfd_open(pid: libc::pid_t) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags, no pointers. The fd it returns is close-on-exec.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = libc::c_int::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: the call succeeded, so fd is open and owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[derive(Debug)]
pub(super) struct Reaped {
    pub(super) status: libc::c_int,
    pub(super) rusage: libc::rusage,
    pub(super) at: Instant,
}

/// The live log, opened when it is first worth having: when output arrives, or once the child has
/// run for a moment (so `logs --follow` finds the file of a job that is silent for a while). A job
/// that ends quickly and silently never creates one.
pub(super) enum Live {
    Off,
    Pending {
        path: PathBuf,
        cap: usize,
        open_at: Instant,
    },
    Open(LiveLog),
}

impl Live {
    pub(super) fn open(&mut self) {
        let Live::Pending { path, cap, .. } = std::mem::replace(self, Live::Off) else {
            return;
        };
        // The live log only serves `logs --follow`: a job still runs when it cannot be opened (a
        // full disk), its output is captured all the same.
        match open_live_log(&path) {
            Ok(file) => *self = Live::Open(LiveLog::new(file, path, cap)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "no live log for this execution")
            }
        }
    }

    fn open_at(&self) -> Option<Instant> {
        match self {
            Live::Pending { open_at, .. } => Some(*open_at),
            _ => None,
        }
    }
}

/// Create the live log for appending (never through a planted link: see `runner::logfile`).
fn open_live_log(path: &std::path::Path) -> io::Result<File> {
    crate::runner::logfile::create(path)
}

pub(super) struct Watch {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    /// None once every writer closed it (or reading failed).
    output: Option<File>,
    wake: Option<std::sync::Arc<Wake>>,
    pub(super) cancelled: bool,
    pub(super) reaped: Option<Reaped>,
    capture: Capture,
    live: Live,
    /// Without a pidfd: the pause before the next `wait4(WNOHANG)`.
    reap_pause: Duration,
    /// The execution's cgroup, if it has one: what is signalled and waited for with the group.
    cgroup: Option<Cgroup>,
}

impl Watch {
    /// `pidfd`: from [`pidfd_open`]; None polls `wait4(WNOHANG)` instead.
    pub(super) fn new(
        pid: libc::pid_t,
        pidfd: Option<OwnedFd>,
        output: OwnedFd,
        cap: usize,
        live: Live,
        wake: std::sync::Arc<Wake>,
    ) -> Watch {
        Watch {
            pid,
            pidfd,
            output: Some(File::from(output)),
            wake: Some(wake),
            cancelled: false,
            reaped: None,
            capture: Capture::new(cap),
            live,
            reap_pause: Duration::from_millis(1),
            cgroup: None,
        }
    }

    /// Also signal, and wait for, every process of this cgroup: those that left the group too.
    pub(super) fn with_cgroup(mut self, cgroup: Option<Cgroup>) -> Watch {
        self.cgroup = cgroup;
        self
    }

    /// Whether a process of the execution's cgroup is alive (false without one).
    pub(super) fn cgroup_populated(&self) -> bool {
        self.cgroup.as_ref().is_some_and(Cgroup::populated)
    }

    /// The cgroup, for its figures once everything has ended.
    pub(super) fn take_cgroup(&mut self) -> Option<Cgroup> {
        self.cgroup.take()
    }

    /// Send `sig` to the group and to every process of the cgroup; KILL is `cgroup.kill`, which
    /// also catches processes forked meanwhile. True if any process was there to signal.
    pub(super) fn signal(&self, sig: libc::c_int) -> bool {
        let group = group::signal(self.pid, sig);
        let Some(cgroup) = self.cgroup.as_ref().filter(|c| c.populated()) else {
            return group;
        };
        if sig == libc::SIGKILL {
            cgroup.kill();
        } else {
            cgroup.signal(sig);
        }
        true
    }

    /// The leader's pid, which is the group's id.
    pub(super) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Whether the live log file was created.
    pub(super) fn live_log_opened(&self) -> bool {
        matches!(self.live, Live::Open(_))
    }

    /// Wait for whatever comes first: output, the leader's exit, a cancel, or `until` (None: no
    /// limit). Handles what came and returns; callers loop on their own condition.
    pub(super) fn step(&mut self, until: Option<Instant>) -> io::Result<()> {
        let now = Instant::now();
        let mut wake_at = until;
        if let Some(at) = self.live.open_at() {
            if now >= at {
                self.live.open();
            } else {
                wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
            }
        }
        let polling_reap = self.reaped.is_none() && self.pidfd.is_none();
        if polling_reap {
            let at = now + self.reap_pause;
            wake_at = Some(wake_at.map_or(at, |w| w.min(at)));
        }

        const NONE: libc::pollfd = libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        };
        // Slots: 0 the pidfd, 1 the output, 2 the cancel eventfd; a negative fd is ignored.
        let mut fds = [NONE; 3];
        if self.reaped.is_none() {
            if let Some(pidfd) = &self.pidfd {
                fds[0] = pollin(pidfd.as_raw_fd());
            }
        }
        if let Some(output) = &self.output {
            fds[1] = pollin(output.as_raw_fd());
        }
        if let Some(wake) = &self.wake {
            fds[2] = pollin(wake.fd());
        }
        let timeout_ms = match wake_at {
            None => -1,
            Some(at) => millis_rounded_up(at.saturating_duration_since(now)),
        };
        // SAFETY: fds is a valid array of 3 pollfd structs for the whole call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ready < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(err);
        }
        if fds[1].revents != 0 {
            self.read_output();
        }
        if fds[2].revents != 0 {
            self.cancelled = true;
            self.wake = None; // stays readable: stop polling it
        }
        if fds[0].revents != 0 {
            self.try_reap()?;
        } else if polling_reap {
            self.try_reap()?;
            self.reap_pause = (self.reap_pause * 2).min(MAX_REAP_POLL);
        }
        Ok(())
    }

    /// Keep handling output, exit and cancel until `until`.
    pub(super) fn pump_until(&mut self, until: Instant) -> io::Result<()> {
        while Instant::now() < until {
            self.step(Some(until))?;
        }
        Ok(())
    }

    /// Wait until no process of the group runs, or until `until` (None: no limit), reading output
    /// meanwhile. True if it emptied. (As `group::wait_gone`, without leaving the pipe unread.)
    pub(super) fn wait_gone(&mut self, until: Option<Instant>) -> io::Result<bool> {
        let mut pause = Duration::from_millis(2);
        loop {
            if !group::alive(self.pid) && !self.cgroup_populated() {
                return Ok(true);
            }
            let left = match until {
                Some(until) => until.saturating_duration_since(Instant::now()),
                None => group::MAX_POLL,
            };
            if left.is_zero() {
                return Ok(false);
            }
            let at = Instant::now() + pause.min(left);
            self.pump_until(at)?;
            pause = (pause * 2).min(group::MAX_POLL);
        }
    }

    /// TERM the group, wait up to `grace` (reading output), KILL, wait for the kernel.
    pub(super) fn stop_group(&mut self, grace: Duration) -> io::Result<()> {
        if !self.signal(libc::SIGTERM) {
            return Ok(());
        }
        if !self.wait_gone(Instant::now().checked_add(grace))? {
            tracing::debug!(
                pgid = self.pid,
                "process group outlived its grace period, killing it"
            );
            self.signal(libc::SIGKILL);
            self.wait_gone(Instant::now().checked_add(group::KILL_SETTLE))?;
        }
        Ok(())
    }

    /// Read what is left in the pipe once no process of the group is left: until every writer
    /// closed it, or for at most `drain` (a descendant that escaped the group may hold it open).
    pub(super) fn drain(&mut self, drain: Duration) -> io::Result<()> {
        let until = Instant::now() + drain;
        self.wake = None;
        while self.output.is_some() {
            if Instant::now() >= until {
                tracing::debug!(
                    "output pipe still open after the group ended; a descendant escaped it"
                );
                break;
            }
            self.step(Some(until))?;
        }
        Ok(())
    }

    pub(super) fn take_capture(&mut self) -> Capture {
        std::mem::replace(&mut self.capture, Capture::new(0))
    }

    fn read_output(&mut self) {
        let Some(output) = &mut self.output else {
            return;
        };
        // On the stack: most jobs write little or nothing, and a heap buffer of this size would
        // be zeroed (and often given back to the system) once per execution.
        let mut buf = [0u8; CHUNK];
        match output.read(&mut buf) {
            Ok(0) => self.output = None, // every writer closed the pipe
            Ok(n) => {
                self.capture.push(&buf[..n]);
                if matches!(self.live, Live::Pending { .. }) {
                    self.live.open();
                }
                if let Live::Open(log) = &mut self.live {
                    log.write(&buf[..n]);
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                tracing::warn!("reading the job's output failed: {err}");
                self.output = None;
            }
        }
    }

    /// Reap the leader with its rusage if it has exited.
    fn try_reap(&mut self) -> io::Result<()> {
        if self.reaped.is_none() {
            self.reaped = wait4(self.pid, libc::WNOHANG)?;
        }
        Ok(())
    }
}

fn pollin(fd: libc::c_int) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Reap `pid` with its rusage, retrying on EINTR. With `WNOHANG`, None while it still runs.
pub(super) fn wait4(pid: libc::pid_t, flags: libc::c_int) -> io::Result<Option<Reaped>> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain integers; all zeroes is a valid value.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: status and rusage are valid, writable, and live for the whole call.
        let rc = unsafe { libc::wait4(pid, &mut status, flags, &mut rusage) };
        if rc == pid {
            return Ok(Some(Reaped {
                status,
                rusage,
                at: Instant::now(),
            }));
        }
        if rc == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn millis_rounded_up(d: Duration) -> libc::c_int {
    let ms = d.as_micros().div_ceil(1000);
    libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::sync::Arc;

    /// Spawn `sh -c script` in its own group with its output on a pipe, and watch it.
    fn watch(script: &str, pidfd: bool, live: Live) -> io::Result<Watch> {
        let (read_end, write_end) = pipe()?;
        let child = Command::new("/bin/sh")
            .args(["-c", script])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write_end))
            .spawn()?;
        let pid = child.id() as libc::pid_t;
        let pidfd = if pidfd { pidfd_open(pid) } else { None };
        let wake = Arc::new(Wake::new()?);
        Ok(Watch::new(pid, pidfd, read_end, 1024, live, wake))
    }

    fn until_reaped(w: &mut Watch) -> io::Result<()> {
        let give_up = Instant::now() + Duration::from_secs(10);
        while w.reaped.is_none() {
            assert!(Instant::now() < give_up, "never reaped");
            w.step(Some(give_up))?;
        }
        w.drain(Duration::from_millis(500))
    }

    #[test]
    fn reaps_and_reads_with_and_without_a_pidfd() -> io::Result<()> {
        for pidfd in [true, false] {
            let mut w = watch("echo hi; exit 7", pidfd, Live::Off)?;
            until_reaped(&mut w)?;
            let status = w.reaped.as_ref().map(|r| r.status).unwrap_or(-1);
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 7);
            assert_eq!(w.take_capture().into_text(), "hi\n", "pidfd {pidfd}");
        }
        Ok(())
    }

    #[test]
    fn a_quick_silent_job_creates_no_live_log() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("logs").join("1.log");
        let live = Live::Pending {
            path: path.clone(),
            cap: 1024,
            open_at: Instant::now() + Duration::from_secs(5),
        };
        let mut w = watch("true", true, live)?;
        until_reaped(&mut w)?;
        assert!(!path.exists());
        Ok(())
    }

    #[test]
    fn a_silent_job_gets_its_live_log_after_a_moment_in_a_new_folder() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("logs").join("1.log");
        let live = Live::Pending {
            path: path.clone(),
            cap: 1024,
            open_at: Instant::now() + Duration::from_millis(100),
        };
        let mut w = watch("sleep 0.6; echo late", true, live)?;
        w.pump_until(Instant::now() + Duration::from_millis(400))?;
        assert!(path.exists(), "no live log while the job runs");
        assert_eq!(std::fs::read_to_string(&path)?, "");
        until_reaped(&mut w)?;
        assert_eq!(std::fs::read_to_string(&path)?, "late\n");
        Ok(())
    }
}
