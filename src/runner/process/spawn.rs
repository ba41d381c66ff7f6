//! Starting a job's process the way `posix_spawn` does, minus what a burst pays for in it.
//!
//! The child is a `clone(CLONE_VM | CLONE_VFORK)`: it borrows this process's memory and runs on a
//! stack carved from the calling thread's own, while that thread waits in `clone` until the child
//! has exec'd (or failed to). In the child: into the execution's cgroup, killed if the runner dies
//! ([`die_with_parent`]), stdin, stdout and stderr put in place, a process group of its own, the
//! working directory, SIGPIPE back to its default (the runner ignores it, as every Rust program
//! does), an empty signal mask, then `execve`. Nothing else.
//!
//! Why not glibc's `posix_spawn` (what it costs a burst): docs/design/benchmarks.md, "Burst".
//!
//! Jobs that need code between fork and exec (resource limits, another user) are still started
//! through `Command`, by a real fork.

use std::ffi::{CString, OsStr};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

/// The child's stack, on the parent thread's stack. The child makes nine system calls through
/// libc wrappers; this is generous.
const CHILD_STACK: usize = 16 * 1024;

/// Where the child was when it gave up (the parent turns it into the error's text).
const STEP_STDIO: i32 = 1;
const STEP_GROUP: i32 = 2;
const STEP_CWD: i32 = 3;
const STEP_EXEC: i32 = 4;
const STEP_CGROUP: i32 = 5;
const STEP_PARENT: i32 = 6;

/// What to start. Everything the child touches is prepared here, in the parent: the child
/// allocates nothing and takes no lock.
pub(super) struct Plan<'a> {
    pub program: &'a Path,
    pub args: &'a [String],
    /// The complete environment; a name given twice keeps its last value.
    pub env: &'a [(String, String)],
    pub cwd: Option<&'a Path>,
    /// None: stdin is inherited.
    pub stdin: Option<BorrowedFd<'a>>,
    /// Stdout and stderr, both.
    pub output: BorrowedFd<'a>,
    /// The execution's `cgroup.procs`, open for writing (numbered 3 or more): the child joins
    /// that cgroup first.
    pub cgroup: Option<libc::c_int>,
}

/// What the child reads, and where it leaves its error.
struct Shared {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    stdin: libc::c_int,
    output: libc::c_int,
    cgroup: libc::c_int,
    /// The runner's pid: the child's parent as long as the runner lives.
    parent: libc::pid_t,
    /// errno of the step that failed, and which step; 0 while all is well.
    errno: AtomicI32,
    step: AtomicI32,
}

/// Start the program as the leader of a new process group. Returns its pid once it has exec'd.
///
/// Errors: a string holds a NUL byte; the program cannot be executed (missing, not executable,
/// not a program); the working directory cannot be entered; no process can be created. A child
/// that failed before its exec has been reaped.
pub(super) fn spawn(plan: &Plan<'_>) -> io::Result<libc::pid_t> {
    let program = c_string(plan.program.as_os_str())?;
    let args = std::iter::once(Ok(program.clone()))
        .chain(plan.args.iter().map(|a| c_string(OsStr::new(a))))
        .collect::<io::Result<Vec<CString>>>()?;
    let env = environment(plan.env)?;
    let cwd = plan.cwd.map(|c| c_string(c.as_os_str())).transpose()?;
    let argv = null_terminated(&args);
    let envp = null_terminated(&env);
    // Descriptors 0–2 are the child's targets: a source among them could be overwritten before
    // it is copied (only if the runner itself was started with one of them closed).
    let stdin = plan.stdin.map(above_stdio).transpose()?;
    let output = above_stdio(plan.output)?;
    let shared = Shared {
        program: program.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        cwd: cwd.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
        stdin: stdin.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
        output: output.as_raw_fd(),
        cgroup: plan.cgroup.unwrap_or(-1),
        // SAFETY: getpid has no preconditions and cannot fail.
        parent: unsafe { libc::getpid() },
        errno: AtomicI32::new(0),
        step: AtomicI32::new(0),
    };
    let mut stack = MaybeUninit::<[u8; CHILD_STACK]>::uninit();
    // The stack grows down: the child starts at the top, 16-byte aligned as every ABI wants.
    let top = {
        let end = stack.as_mut_ptr() as usize + CHILD_STACK;
        (end & !15) as *mut libc::c_void
    };
    let all = SigSet::full();
    let mut old = SigSet::empty();
    // No signal handler may run in the child: it would run on this process's memory. Blocked
    // here, the child inherits the mask and clears it just before its exec.
    all.set_mask(Some(&mut old));
    // SAFETY: `child` is an extern "C" fn that only reads `shared`, which lives (like `top`'s
    // stack, the strings and the arrays it points to) until clone returns: with CLONE_VFORK this
    // thread is suspended until the child has exec'd or exited, and the child calls only
    // async-signal-safe functions. The stack is this thread's own, unused while it waits.
    let pid = unsafe {
        libc::clone(
            child,
            top,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &shared as *const Shared as *mut libc::c_void,
        )
    };
    let clone_error = io::Error::last_os_error();
    old.set_mask(None);
    if pid < 0 {
        return Err(clone_error);
    }
    let errno = shared.errno.load(Ordering::Acquire);
    if errno != 0 {
        reap(pid);
        let err = io::Error::from_raw_os_error(errno);
        return Err(match shared.step.load(Ordering::Acquire) {
            STEP_EXEC => err,
            STEP_CWD => io::Error::new(
                err.kind(),
                format!("cannot enter the working directory: {err}"),
            ),
            STEP_GROUP => {
                io::Error::new(err.kind(), format!("cannot start a process group: {err}"))
            }
            STEP_CGROUP => io::Error::new(
                err.kind(),
                format!("cannot join the execution's cgroup: {err}"),
            ),
            STEP_PARENT => io::Error::new(
                err.kind(),
                format!("cannot tie the job to the runner's life: {err}"),
            ),
            _ => io::Error::new(err.kind(), format!("cannot set up stdin/stdout: {err}")),
        });
    }
    Ok(pid)
}

/// The child, between clone and exec. Async-signal-safe calls only: it shares the parent's
/// memory, and the parent's thread is frozen in whatever state it was in.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Shared` that `spawn` passed, alive until this child execs or exits.
    let shared = unsafe { &*(arg as *const Shared) };
    let fail = |step: i32| -> ! {
        // SAFETY: reading errno right after the failed call; _exit ends only this child.
        unsafe {
            shared
                .errno
                .store(*libc::__errno_location(), Ordering::Release);
            shared.step.store(step, Ordering::Release);
            libc::_exit(127)
        }
    };
    // SAFETY: each call takes descriptors, C strings and arrays prepared by `spawn`, all valid
    // and NUL-terminated; none of them allocates or locks.
    unsafe {
        // First, before anything else runs in the child: all it starts is in the cgroup too.
        if shared.cgroup >= 0 && super::cgroup::join(shared.cgroup).is_err() {
            fail(STEP_CGROUP);
        }
        if die_with_parent(shared.parent).is_err() {
            fail(STEP_PARENT);
        }
        if shared.stdin >= 0 && libc::dup2(shared.stdin, 0) < 0 {
            fail(STEP_STDIO);
        }
        if libc::dup2(shared.output, 1) < 0 || libc::dup2(shared.output, 2) < 0 {
            fail(STEP_STDIO);
        }
        if libc::setpgid(0, 0) < 0 {
            fail(STEP_GROUP);
        }
        if !shared.cwd.is_null() && libc::chdir(shared.cwd) < 0 {
            fail(STEP_CWD);
        }
        inherit_only_stdio();
        // Handlers are reset by exec; an ignored signal stays ignored, and the runner ignores
        // SIGPIPE. A job gets it back, as from a shell (what std's Command does too).
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        unblock_all_signals();
        libc::execve(shared.program, shared.argv, shared.envp);
    }
    fail(STEP_EXEC)
}

/// Ask the kernel to SIGKILL the calling child when its parent dies, then make sure the parent
/// (`parent`, the runner's pid) had not died already: a child whose runner was killed between
/// the clone and here has been handed to another process (init or a subreaper), and ends at once
/// with no one to wait for it. So a job never outlives its runner unseen. Async-signal-safe.
///
/// The parent the kernel means is the *thread* that cloned: the signal comes when that thread
/// ends, even while the runner lives. The runner spawns on its loop thread (the process's main
/// thread, which ends only with the process) or on a worker thread that then waits for this
/// very child, so no spawning thread ends before its child; `run-now` waits on the thread that
/// spawned. The signal reaches this process only, not the rest of its group: what the job
/// started itself is stopped by the next runner start on this host (start-up recovery).
///
/// Called after any change of identity (setuid and setgid clear the setting).
pub(super) fn die_with_parent(parent: libc::pid_t) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; getppid cannot fail. Both are
    // plain system calls.
    unsafe {
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != parent {
            // The runner is gone: end here, as SIGKILL would have (nothing reads the error).
            libc::_exit(128 + libc::SIGKILL);
        }
    }
    Ok(())
}

/// Mark every descriptor above 2 close-on-exec, in the calling child's own table: a job gets
/// stdin, stdout and stderr, never a descriptor the runner was started with (a service manager's
/// or a build tool's). One system call (Linux ≥ 5.11; older kernels pass such descriptors on,
/// as std's `Command` does). Async-signal-safe.
pub(super) fn inherit_only_stdio() {
    // SAFETY: close_range takes no pointers; CLOSE_RANGE_CLOEXEC closes nothing.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
}

/// Clear the calling thread's signal mask: a job starts with no signal blocked, whatever the
/// thread that started it blocked. Async-signal-safe.
pub(super) fn unblock_all_signals() {
    SigSet::empty().set_mask(None);
}

/// A kernel signal set, changed with the raw system call: glibc's wrapper keeps its own two
/// internal signals unblocked, and they too must not reach the child.
struct SigSet(u64);

impl SigSet {
    fn full() -> SigSet {
        SigSet(!0)
    }

    fn empty() -> SigSet {
        SigSet(0)
    }

    /// Make this the calling thread's mask; the previous one into `old`.
    fn set_mask(&self, old: Option<&mut SigSet>) {
        let old = old.map_or(std::ptr::null_mut(), |o| &mut o.0 as *mut u64);
        // SAFETY: both pointers are valid 8-byte sets (the kernel's size) or null.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                &self.0 as *const u64,
                old,
                std::mem::size_of::<u64>(),
            );
        }
    }
}

/// Reap a child that failed before its exec (it exits at once).
fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waiting for our own child; `status` is a valid int.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
}

fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} holds a NUL byte", s.to_string_lossy()),
        )
    })
}

/// `NAME=value` strings, a name given twice keeping its last value.
fn environment(env: &[(String, String)]) -> io::Result<Vec<CString>> {
    let mut out = Vec::with_capacity(env.len());
    for (i, (name, value)) in env.iter().enumerate() {
        if env[i + 1..].iter().any(|(later, _)| later == name) {
            continue;
        }
        // The message names the variable only: its value may be a secret.
        let pair = CString::new(format!("{name}={value}")).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("environment variable {name:?} holds a NUL byte"),
            )
        })?;
        out.push(pair);
    }
    Ok(out)
}

fn null_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// A descriptor numbered 3 or more: `fd` itself, or a close-on-exec copy of it (closed on drop).
fn above_stdio(fd: BorrowedFd<'_>) -> io::Result<Fd<'_>> {
    if fd.as_raw_fd() > 2 {
        return Ok(Fd::Borrowed(fd));
    }
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor returns a new one we own.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl succeeded, so `copy` is open and owned by nobody else.
    Ok(Fd::Owned(unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(copy)
    }))
}

enum Fd<'a> {
    Borrowed(BorrowedFd<'a>),
    Owned(std::os::fd::OwnedFd),
}

impl AsRawFd for Fd<'_> {
    fn as_raw_fd(&self) -> libc::c_int {
        match self {
            Fd::Borrowed(fd) => fd.as_raw_fd(),
            Fd::Owned(fd) => fd.as_raw_fd(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn the_environment_keeps_the_last_of_a_name_given_twice() -> io::Result<()> {
        let env = environment(&[
            ("PATH".into(), "/a".into()),
            ("HOME".into(), "/root".into()),
            ("PATH".into(), "/b".into()),
        ])?;
        let env: Vec<&str> = env.iter().map(|s| s.to_str().unwrap_or("?")).collect();
        assert_eq!(env, ["HOME=/root", "PATH=/b"]);
        Ok(())
    }

    #[test]
    fn a_working_directory_that_cannot_be_entered_is_an_error_saying_so() -> io::Result<()> {
        let (_read, write) = super::super::watch::pipe()?;
        let err = spawn(&Plan {
            program: Path::new("/bin/true"),
            args: &[],
            env: &[],
            cwd: Some(Path::new("/nonexistent/cronmgr-test")),
            stdin: None,
            output: write.as_fd(),
            cgroup: None,
        })
        .err();
        assert!(
            matches!(&err, Some(e) if e.kind() == io::ErrorKind::NotFound
                && e.to_string().contains("working directory")),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn a_nul_byte_is_refused_before_anything_starts() {
        let err = environment(&[("A".into(), "x\0y".into())]).err();
        assert!(
            matches!(&err, Some(e) if e.kind() == io::ErrorKind::InvalidInput
                && e.to_string().contains("\"A\"") && !e.to_string().contains('x')),
            "{err:?}"
        );
    }
}
