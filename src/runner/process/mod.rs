//! One child process in its own process group: clean environment, captured output, timeout, rusage.
//!
//! [`run`] spawns the program as the leader of a new process group, so every process it starts
//! can be signalled at once. A timeout or a [`Cancel`] sends TERM to the group, waits the grace
//! period, then sends KILL. When the leader exits on its own, what it left behind in its group is
//! stopped the same way (as systemd does for a unit). The leader is reaped with `wait4` for its
//! rusage. Output (stdout and stderr on one pipe, in order) is read into a capture of bounded size,
//! and optionally streamed to a live log file. All of it on the calling thread: one `poll(2)` over
//! the leader's pidfd, the pipe and the cancel handle's eventfd ([`watch`]).

mod cancel;
pub mod cgroup;
mod group;
mod identity;
mod output;
mod pool;
mod spawn;
#[cfg(test)]
mod tests;
mod watch;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

pub use crate::limits::Limits;
pub use cancel::Cancel;
pub use cgroup::{init_runner, Accounting};
pub use group::{group_alive, kill_group};
pub use identity::group_is_executions;
pub use pool::on_worker;

use cancel::Wake;
use output::Capture;
use watch::{Live, Reaped, Watch};

/// What callers use for [`Spec::grace`] unless told otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);
/// What callers use for [`Spec::output_cap`] unless told otherwise (1 MiB).
pub const DEFAULT_OUTPUT_CAP: usize = 1024 * 1024;

/// What to run and under which limits.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Already resolved absolute path.
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The complete environment: nothing is inherited from the runner.
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// Then TERM to the whole process group. `Duration::MAX` means no timeout.
    pub timeout: Duration,
    /// After TERM, wait this long, then KILL the group.
    pub grace: Duration,
    /// Bytes kept of combined stdout+stderr: the first half and the last half.
    pub output_cap: usize,
    /// If set, output is appended to this file as it arrives (for `cronmgr logs --follow`),
    /// up to `output_cap` bytes and a one-line marker.
    pub live_log: Option<PathBuf>,
    /// Stdin from /dev/null; otherwise inherited from the runner.
    pub stdin_null: bool,
    /// Resource limits set in the child before exec (`setrlimit`, soft and hard).
    pub limits: Limits,
    /// Switch to this user and group in the child before exec (the runner must be root).
    pub run_as: Option<RunAs>,
}

/// The identity a child takes before exec: supplementary groups, then gid, then uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the user's, as `initgroups` would set them).
    pub groups: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
    /// The kernel killed it (or a process of it: the whole cgroup goes) at its cgroup's
    /// `memory.max`; `exit_code` says how the leader ended.
    MemoryLimit,
    TimedOut,
    /// Stopped through the [`Cancel`] handle.
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub ending: Ending,
    /// The code, or 128+signal when killed by a signal (as shells report it); also set for
    /// `TimedOut` and `Cancelled`, from how the leader ended.
    pub exit_code: Option<i32>,
    /// Capped as [`Spec::output_cap`] says, with a marker line where bytes were left out;
    /// bytes that are not UTF-8 are replaced by U+FFFD.
    pub output: String,
    /// Total bytes the child wrote, kept or not.
    pub output_bytes: u64,
    /// Wall time, spawn to reap.
    pub duration: Duration,
    /// Peak memory: of the execution's cgroup (`memory.peak`) where the runner has the memory
    /// controller ([`Accounting::memory_exact`]); else the peak resident size of the leader and
    /// its reaped descendants (rusage `ru_maxrss`), an upper bound: the kernel counts the
    /// runner's own size at the exec in.
    pub max_rss_mb: f64,
    /// `max_rss_mb` is rusage's upper bound, not the cgroup's `memory.peak`.
    pub memory_upper_bound: bool,
    /// With a CPU quota in the limits: whether the execution's cgroup enforced it (`cpu.max`).
    pub cpu_quota_enforced: Option<bool>,
    /// User+system CPU time over wall time, in % of one core.
    pub cpu_percent: f64,
    /// User+system CPU seconds of the leader and its reaped descendants; in a cgroup, of every
    /// process of the execution.
    pub cpu_seconds: f64,
    pub pid: u32,
    /// The limits it ran under (from the [`Spec`]), to tell a limit's kill from another end.
    pub limits: Limits,
    /// Whether the live log file was created (a quick, silent job never creates one).
    pub live_log: bool,
}

/// How long the output pipe is still read once no process of the group is left. Everything the
/// group wrote is already in the pipe and is read at memory speed; only an escaped descendant
/// (setsid) writes later, and it must not hold `run` up.
const DRAIN: Duration = Duration::from_millis(500);
/// A job silent this long gets its (empty) live log, so `logs --follow` finds the file.
const LIVE_LOG_AFTER: Duration = Duration::from_millis(250);
/// How often, at most, spawning resets the runner's peak resident size (see [`reset_peak_rss`]).
const PEAK_RESET_EVERY: Duration = Duration::from_millis(100);

/// Spawn and wait. `on_spawn` is called with the pid (== pgid) right after the spawn, before
/// waiting (the caller records it in the database). As [`start`], then [`Started::wait`] on
/// this thread, except that the live log is created before the spawn: a caller that streams it
/// from another thread (`run-now`) may give up on a file that is missing once `run` returned.
///
/// Errors: the program cannot be spawned (missing, not executable, bad working directory), the
/// child could not be waited for or reaped.
pub fn run(spec: &Spec, cancel: &Cancel, on_spawn: impl FnOnce(u32)) -> io::Result<Outcome> {
    let started = spawn(spec, LiveLogAt::Spawn)?;
    on_spawn(started.pid());
    started.wait(cancel)
}

/// When the live log file is created.
#[derive(Clone, Copy, PartialEq)]
enum LiveLogAt {
    /// Before the spawn, whether or not the child writes anything.
    Spawn,
    /// When output first arrives, or once the child has run [`LIVE_LOG_AFTER`].
    FirstNeed,
}

/// A child spawned by [`start`] and not yet waited for. Dropped without [`Started::wait`] (a
/// panic, no thread to wait on it), it kills the group and reaps the leader: a job must not
/// outlive its runner's interest in it unseen.
pub struct Started {
    pgid: libc::pid_t,
    at: Instant,
    deadline: Option<Instant>,
    grace: Duration,
    limits: Limits,
    watch: Watch,
    wake: Arc<Wake>,
}

/// Spawn the program as the leader of a new process group, its output on a pipe, and return at
/// once. Cheap enough for the runner's loop thread: a vfork-style clone that execs at once
/// ([`spawn`]) unless limits or another user need code run in the child (then a fork), a pipe,
/// an eventfd and a pidfd.
///
/// The live log is created when output first arrives, or once the child has run 250 ms (so
/// `logs --follow` finds the file of a job that is silent for a while): a job that ends quickly
/// and silently creates none.
///
/// Errors: the program cannot be spawned (missing, not executable, bad working directory).
pub fn start(spec: &Spec) -> io::Result<Started> {
    spawn(spec, LiveLogAt::FirstNeed)
}

fn spawn(spec: &Spec, live_log_at: LiveLogAt) -> io::Result<Started> {
    if let Some(cwd) = &spec.cwd {
        // std reports a missing cwd like a missing program; say which one it was.
        if !cwd.is_dir() {
            let err = io::Error::new(io::ErrorKind::NotFound, "no such directory");
            return Err(with_path(err, "working directory", cwd));
        }
    }
    let mut live = match &spec.live_log {
        Some(path) => Live::Pending {
            path: path.clone(),
            cap: spec.output_cap,
            open_at: Instant::now() + LIVE_LOG_AFTER,
        },
        None => Live::Off,
    };
    if live_log_at == LiveLogAt::Spawn {
        live.open();
    }
    let wake = Arc::new(Wake::new()?);
    let (read_end, write_end) = watch::pipe()?;
    let cgroup = cgroup::current().and_then(|under| {
        cgroup::Cgroup::create(under, spec.limits.memory, spec.limits.cpu_quota)
            .inspect_err(|e| {
                tracing::warn!("no cgroup for this execution, rlimits and process group only: {e}")
            })
            .ok()
    });
    let limits = rlimits(&spec.limits, cgroup.as_ref());
    // The child starts as a vfork of this process, and the kernel folds that shared memory's peak
    // into the child's ru_maxrss. Reset our peak to our current size first, so a job's figure is
    // floored by the runner's present footprint (a few MB), not by its historical peak.
    reset_peak_rss();
    let at = Instant::now();
    let join = cgroup.as_ref().map(cgroup::Cgroup::procs_fd);
    let pgid = if limits.is_empty() && spec.run_as.is_none() {
        let null = if spec.stdin_null {
            Some(dev_null()?)
        } else {
            None
        };
        spawn::spawn(&spawn::Plan {
            program: &spec.program,
            args: &spec.args,
            env: &spec.env,
            cwd: spec.cwd.as_deref(),
            stdin: null.as_ref().map(|fd| fd.as_fd()),
            output: write_end.as_fd(),
            cgroup: join,
        })
        .map_err(|e| with_path(e, "starting", &spec.program))?
    } else {
        fork(spec, write_end, limits, join)?
    };
    let pidfd = watch::pidfd_open(pgid);
    Ok(Started {
        pgid,
        at,
        deadline: at.checked_add(spec.timeout),
        grace: spec.grace,
        limits: spec.limits,
        watch: Watch::new(pgid, pidfd, read_end, spec.output_cap, live, wake.clone())
            .with_cgroup(cgroup),
        wake,
    })
}

impl Started {
    /// The leader's pid, which is also the group's id.
    pub fn pid(&self) -> u32 {
        self.pgid as u32
    }

    /// Wait for the child on this thread (one `poll(2)` over the leader's pidfd, the output pipe
    /// and the cancel handle: see [`watch`]), stopping the group on timeout or cancel, then stop
    /// what the leader left in its group.
    ///
    /// Errors: the child could not be waited for or reaped (it is killed).
    pub fn wait(mut self, cancel: &Cancel) -> io::Result<Outcome> {
        let stopped = {
            let _subscription = cancel.subscribe(self.wake.clone());
            wait(&mut self.watch, self.deadline, self.grace)?
        };
        let pgid = self.pgid;
        // Whatever the leader left in its group (or cgroup) goes the way the group would have gone.
        if group_alive(self.pid()) || self.watch.cgroup_populated() {
            tracing::debug!(pgid, "stopping what the job left running in its group");
            self.watch.stop_group(self.grace)?;
        }
        self.watch.drain(DRAIN)?;
        let Some(reaped) = self.watch.reaped.take() else {
            return Err(io::Error::other("the child was not reaped")); // wait() returns once it is
        };
        // Reaped: from here on, dropping `self` must not signal the group (its id is free).
        self.pgid = 0;
        let capture = self.watch.take_capture();
        let cgroup = self.watch.take_cgroup();
        let quota_enforced = cgroup.as_ref().is_some_and(|c| c.limits_cpu);
        let usage = cgroup.map(cgroup::Cgroup::finish);
        let mut outcome = outcome(pgid as u32, self.at, reaped, stopped, capture);
        if let Some(usage) = usage {
            with_cgroup_usage(&mut outcome, usage);
        }
        outcome.cpu_quota_enforced = self.limits.cpu_quota.map(|_| quota_enforced);
        outcome.limits = self.limits;
        outcome.live_log = self.watch.live_log_opened();
        Ok(outcome)
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if self.pgid > 1 && self.watch.reaped.is_none() {
            group::signal(self.pgid, libc::SIGKILL);
            // KILL cannot be caught: this returns as soon as the kernel has ended the leader.
            let _ = watch::wait4(self.pgid, 0);
        }
    }
}

/// Start a job that needs code run between fork and exec (resource limits, another user):
/// `Command`, with the limits and the identity set in the child.
fn fork(
    spec: &Spec,
    write_end: OwnedFd,
    limits: Vec<(libc::__rlimit_resource_t, libc::rlim_t, libc::rlim_t)>,
    cgroup: Option<libc::c_int>,
) -> io::Result<libc::pid_t> {
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .process_group(0)
        .stdin(if spec.stdin_null {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .stderr(Stdio::from(write_end.try_clone()?))
        .stdout(Stdio::from(write_end));
    if let Some(cwd) = &spec.cwd {
        command.current_dir(cwd);
    }
    let run_as = spec.run_as.clone();
    // SAFETY: getpid has no preconditions and cannot fail.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (write, close_range, rt_sigprocmask, setrlimit, setgroups,
    // setgid, setuid, prctl, getppid) on data prepared here, in the parent: it allocates
    // nothing and takes no lock.
    unsafe {
        command.pre_exec(move || in_child(cgroup, &limits, run_as.as_ref(), parent));
    }
    let child = command
        .spawn()
        .map_err(|e| with_path(e, "starting", &spec.program))?;
    // Our copies of the pipe's write end live in `command`: close them, or EOF never comes.
    drop(command);
    let pid = child.id();
    // Reaped by wait4 in `Started`, not by std: dropping the handle neither waits nor kills.
    drop(child);
    // Cannot fail (pids fit pid_t), and then nothing could signal or reap it either.
    libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::other(format!("child pid {pid} out of range")))
}

/// `/dev/null` for the children's stdin, opened once (close-on-exec: each child gets a copy).
fn dev_null() -> io::Result<&'static OwnedFd> {
    static NULL: OnceLock<OwnedFd> = OnceLock::new();
    if let Some(fd) = NULL.get() {
        return Ok(fd);
    }
    let file = std::fs::File::open("/dev/null")?;
    Ok(NULL.get_or_init(|| file.into()))
}

/// The (resource, value) pairs to set, computed before the fork: the memory limit is the
/// cgroup's `memory.max` when it has one, else the address space's rlimit.
fn rlimits(
    limits: &Limits,
    cgroup: Option<&cgroup::Cgroup>,
) -> Vec<(libc::__rlimit_resource_t, libc::rlim_t, libc::rlim_t)> {
    let clamp = |v: u64| libc::rlim_t::try_from(v).unwrap_or(libc::RLIM_INFINITY);
    let mut out = Vec::new();
    if let Some(m) = limits
        .memory
        .filter(|_| !cgroup.is_some_and(|c| c.limits_memory))
    {
        out.push((libc::RLIMIT_AS, clamp(m), clamp(m)));
    }
    if let Some(c) = limits.cpu {
        // SIGXCPU at the soft limit (it ends the job unless caught), SIGKILL a second later.
        out.push((libc::RLIMIT_CPU, clamp(c), clamp(c.saturating_add(1))));
    }
    if let Some(n) = limits.nofile {
        out.push((libc::RLIMIT_NOFILE, clamp(n), clamp(n)));
    }
    if let Some(n) = limits.nproc {
        out.push((libc::RLIMIT_NPROC, clamp(n), clamp(n)));
    }
    out
}

/// In the child, between fork and exec: into the execution's cgroup (while still root), no
/// descriptor but 0–2 passed on, no signal blocked (std resets SIGPIPE but keeps the mask),
/// limits (as root they can be set to anything), then the identity, groups before gid before
/// uid (after setuid, neither can change), then tied to the runner's life (after the identity,
/// whose change would clear it).
fn in_child(
    cgroup: Option<libc::c_int>,
    limits: &[(libc::__rlimit_resource_t, libc::rlim_t, libc::rlim_t)],
    run_as: Option<&RunAs>,
    parent: libc::pid_t,
) -> io::Result<()> {
    if let Some(fd) = cgroup {
        cgroup::join(fd)?;
    }
    spawn::inherit_only_stdio();
    spawn::unblock_all_signals();
    for &(resource, soft, hard) in limits {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: setrlimit is async-signal-safe; `lim` is a valid rlimit.
        if unsafe { libc::setrlimit(resource, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    if let Some(who) = run_as {
        // SAFETY: setgroups, setgid and setuid are async-signal-safe system calls; `groups`
        // was allocated before the fork and holds `len` gids.
        unsafe {
            if libc::setgroups(who.groups.len(), who.groups.as_ptr()) != 0
                || libc::setgid(who.gid) != 0
                || libc::setuid(who.uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
    }
    spawn::die_with_parent(parent)
}

/// Wait for the leader, reading its output; on timeout or cancel, stop the group. Returns, once
/// the leader is reaped (in `watch.reaped`), why it was stopped if it was.
fn wait(
    watch: &mut Watch,
    deadline: Option<Instant>,
    grace: Duration,
) -> io::Result<Option<Ending>> {
    let why = loop {
        if watch.reaped.is_some() {
            return Ok(None);
        }
        if watch.cancelled {
            break Ending::Cancelled;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Ending::TimedOut;
        }
        watch.step(deadline)?;
    };
    let pgid = watch.pid();
    tracing::debug!(pgid, ?why, "terminating process group");
    watch.signal(libc::SIGTERM);
    let kill_at = Instant::now().checked_add(grace);
    while watch.reaped.is_none() && kill_at.is_none_or(|k| Instant::now() < k) {
        watch.step(kill_at)?;
    }
    // The leader's exit does not end the grace of the rest of the group.
    if watch.reaped.is_none() || !watch.wait_gone(kill_at)? {
        tracing::debug!(pgid, "process group outlived its grace period, killing it");
        watch.signal(libc::SIGKILL);
    }
    // KILL cannot be caught: this returns as soon as the kernel has ended the leader.
    while watch.reaped.is_none() {
        watch.step(None)?;
    }
    Ok(Some(why))
}

fn outcome(
    pid: u32,
    started: Instant,
    reaped: Reaped,
    stopped: Option<Ending>,
    capture: Capture,
) -> Outcome {
    let status = reaped.status;
    let (ended, exit_code) = if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        (Ending::Exited(code), code)
    } else {
        // wait4 without WUNTRACED/WCONTINUED reports only exits and deaths by signal.
        let sig = libc::WTERMSIG(status);
        (Ending::Signaled(sig), 128 + sig)
    };
    let duration = reaped.at.saturating_duration_since(started);
    let cpu = seconds(reaped.rusage.ru_utime) + seconds(reaped.rusage.ru_stime);
    let wall = duration.as_secs_f64();
    Outcome {
        ending: stopped.unwrap_or(ended),
        exit_code: Some(exit_code),
        output_bytes: capture.total(),
        output: capture.into_text(),
        duration,
        max_rss_mb: max_rss_mb(reaped.rusage.ru_maxrss),
        memory_upper_bound: true,
        cpu_quota_enforced: None,
        cpu_percent: if wall > 0.0 { cpu / wall * 100.0 } else { 0.0 },
        cpu_seconds: cpu,
        pid,
        limits: Limits::default(),
        live_log: false,
    }
}

/// Replace rusage's figures by the cgroup's where it has them: CPU time of every process of the
/// execution (reaped or not), its memory peak without the runner's size in it.
fn with_cgroup_usage(outcome: &mut Outcome, usage: cgroup::Usage) {
    if let Some(cpu) = usage.cpu {
        outcome.cpu_seconds = cpu.as_secs_f64();
        let wall = outcome.duration.as_secs_f64();
        outcome.cpu_percent = if wall > 0.0 {
            outcome.cpu_seconds / wall * 100.0
        } else {
            0.0
        };
    }
    if let Some(peak) = usage.memory_peak {
        outcome.max_rss_mb = peak as f64 / (1024.0 * 1024.0);
        outcome.memory_upper_bound = false;
    }
    // A timeout or a cancel says why it was stopped; a clean exit was not killed.
    if usage.oom_kills > 0 && matches!(outcome.ending, Ending::Exited(1..) | Ending::Signaled(_)) {
        outcome.ending = Ending::MemoryLimit;
    }
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// `ru_maxrss` is in KiB on Linux and the BSDs, in bytes on macOS.
fn max_rss_mb(maxrss: libc::c_long) -> f64 {
    let kib = if cfg!(target_os = "macos") {
        maxrss as f64 / 1024.0
    } else {
        maxrss as f64
    };
    kib / 1024.0
}

fn with_path(err: io::Error, what: &str, path: &std::path::Path) -> io::Error {
    io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
}

/// Reset this process's peak resident size (`VmHWM`) to its current size (Linux ≥ 4.0), at most
/// every [`PEAK_RESET_EVERY`]: the spawns of a burst share one reset (three system calls and the
/// address space's write lock), as our size moves little between them.
fn reset_peak_rss() {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    {
        let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < PEAK_RESET_EVERY) {
            return;
        }
        *last = Some(Instant::now());
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
