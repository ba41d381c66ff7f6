//! Real processes, short durations. Time bounds are generous: a loaded 2-core machine passes them.

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

const SH: &str = "/bin/sh";
/// Upper bound for things that should take a fraction of a second.
const QUICK: Duration = Duration::from_secs(5);

fn spec(program: &str, args: &[&str]) -> Spec {
    Spec {
        program: PathBuf::from(program),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: None,
        timeout: Duration::from_secs(20),
        grace: Duration::from_millis(500),
        output_cap: DEFAULT_OUTPUT_CAP,
        live_log: None,
        stdin_null: true,
        limits: Limits::default(),
        run_as: None,
    }
}

fn sh(script: &str) -> Spec {
    spec(SH, &["-c", script])
}

fn run_plain(spec: &Spec) -> io::Result<Outcome> {
    run(spec, &Cancel::new(), |_| {})
}

/// No process of the group runs any more, and once init has reaped the zombies, `kill(-pgid, 0)`
/// finds nothing at all (init may take a moment: allow it a few seconds).
fn assert_group_gone(pgid: u32) {
    assert!(!group_alive(pgid), "a process of group {pgid} still runs");
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        // SAFETY: signal 0 only checks existence; pgid is a child's pid, so > 1.
        let rc = unsafe { libc::kill(-(pgid as libc::pid_t), 0) };
        if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return;
        }
        assert!(Instant::now() < until, "group {pgid} still exists");
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn success_with_output() -> io::Result<()> {
    let out = run_plain(&sh("echo out; echo err >&2; echo again"))?;
    assert_eq!(out.ending, Ending::Exited(0));
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.output, "out\nerr\nagain\n");
    assert_eq!(out.output_bytes, 14);
    assert!(out.pid > 1);
    assert!(out.duration < QUICK);
    assert!(out.cpu_percent >= 0.0);
    Ok(())
}

#[test]
fn non_zero_exit_code() -> io::Result<()> {
    let out = run_plain(&sh("exit 3"))?;
    assert_eq!(out.ending, Ending::Exited(3));
    assert_eq!(out.exit_code, Some(3));
    Ok(())
}

#[test]
fn killed_by_signal_reports_128_plus_n() -> io::Result<()> {
    let out = run_plain(&sh("kill -KILL $$"))?;
    assert_eq!(out.ending, Ending::Signaled(libc::SIGKILL));
    assert_eq!(out.exit_code, Some(128 + libc::SIGKILL));
    Ok(())
}

#[test]
fn timeout_kills_the_whole_group() -> io::Result<()> {
    let mut spec = sh("sleep 30 & sleep 30");
    spec.timeout = Duration::from_secs(1);
    let out = run_plain(&spec)?;
    assert_eq!(out.ending, Ending::TimedOut);
    assert_eq!(out.exit_code, Some(128 + libc::SIGTERM));
    assert!(out.duration >= Duration::from_secs(1));
    assert!(out.duration < Duration::from_secs(1) + spec.grace + QUICK);
    assert_group_gone(out.pid);
    Ok(())
}

#[test]
fn a_child_ignoring_term_is_killed_after_grace() -> io::Result<()> {
    // The ignored TERM is inherited by the sleep, so both must be KILLed.
    let mut spec = sh("trap '' TERM; sleep 30; echo survived");
    spec.timeout = Duration::from_millis(300);
    let out = run_plain(&spec)?;
    assert_eq!(out.ending, Ending::TimedOut);
    assert_eq!(out.exit_code, Some(128 + libc::SIGKILL));
    assert!(out.duration >= spec.timeout + spec.grace);
    assert!(out.duration < QUICK * 2);
    assert!(!out.output.contains("survived"));
    assert_group_gone(out.pid);
    Ok(())
}

#[test]
fn cancel_from_another_thread() -> io::Result<()> {
    let cancel = Cancel::new();
    let canceller = {
        let cancel = cancel.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(300));
            cancel.cancel();
        })
    };
    let started = Instant::now();
    let out = run(&sh("sleep 30"), &cancel, |_| {})?;
    let _ = canceller.join();
    assert_eq!(out.ending, Ending::Cancelled);
    assert!(started.elapsed() < QUICK);
    assert_group_gone(out.pid);
    Ok(())
}

#[test]
fn a_cancelled_handle_stops_the_child_at_once() -> io::Result<()> {
    let cancel = Cancel::new();
    cancel.cancel();
    let out = run(&sh("sleep 30"), &cancel, |_| {})?;
    assert_eq!(out.ending, Ending::Cancelled);
    assert!(out.duration < QUICK);
    Ok(())
}

#[test]
fn on_spawn_gets_the_pid_which_is_the_pgid() -> io::Result<()> {
    let seen = AtomicU32::new(0);
    let out = run(&sh("sleep 0.2"), &Cancel::new(), |pid| {
        // SAFETY: getpgid only reads; the child is alive for 0.2 s at least.
        let pgid = unsafe { libc::getpgid(pid as libc::pid_t) };
        assert_eq!(pgid, pid as libc::pid_t);
        seen.store(pid, Ordering::SeqCst);
    })?;
    assert_eq!(seen.load(Ordering::SeqCst), out.pid);
    Ok(())
}

#[test]
fn large_output_is_capped_to_head_and_tail() -> io::Result<()> {
    let mut spec = sh("printf HEAD; head -c 5000000 /dev/zero | tr '\\0' x; printf TAIL");
    spec.output_cap = 64 * 1024;
    let out = run_plain(&spec)?;
    assert_eq!(out.ending, Ending::Exited(0));
    assert_eq!(out.output_bytes, 5_000_008);
    assert!(out.output.starts_with("HEADxxx"), "{}", &out.output[..20]);
    assert!(out.output.ends_with("xxxTAIL"));
    assert!(out.output.contains("\n[… 4.7 MiB of output omitted …]\n"));
    assert!(out.output.len() < 64 * 1024 + 100);
    Ok(())
}

#[test]
fn invalid_utf8_is_kept_lossy() -> io::Result<()> {
    let out = run_plain(&sh("printf '\\377\\376abc'"))?;
    assert_eq!(out.output, "\u{FFFD}\u{FFFD}abc");
    assert_eq!(out.output_bytes, 5);
    Ok(())
}

#[test]
fn environment_is_exactly_what_was_passed() -> io::Result<()> {
    let mut spec = spec("/usr/bin/env", &[]);
    spec.env = vec![
        ("FOO".into(), "bar".into()),
        ("CRONMGR_X".into(), "1".into()),
    ];
    let out = run_plain(&spec)?;
    let mut lines: Vec<&str> = out.output.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["CRONMGR_X=1", "FOO=bar"]);
    Ok(())
}

#[test]
fn cwd_is_honoured() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut spec = sh("pwd -P");
    spec.cwd = Some(dir.path().to_path_buf());
    let out = run_plain(&spec)?;
    let expected = dir.path().canonicalize()?;
    assert_eq!(out.output.trim_end(), expected.to_string_lossy());
    Ok(())
}

#[test]
fn a_missing_cwd_is_an_error_naming_it() {
    let mut spec = sh("true");
    spec.cwd = Some(PathBuf::from("/nonexistent/cronmgr-test"));
    let err = run_plain(&spec).err();
    assert!(
        matches!(&err, Some(e) if e.kind() == io::ErrorKind::NotFound && e.to_string().contains("working directory")),
        "{err:?}"
    );
}

#[test]
fn missing_or_unexecutable_program_is_an_error() -> io::Result<()> {
    let called = AtomicU32::new(0);
    let missing = spec("/nonexistent/cronmgr-test-program", &[]);
    let err = run(&missing, &Cancel::new(), |_| {
        called.fetch_add(1, Ordering::SeqCst);
    })
    .err();
    assert!(
        matches!(&err, Some(e) if e.kind() == io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert_eq!(called.load(Ordering::SeqCst), 0);

    let dir = tempfile::tempdir()?;
    let script = dir.path().join("not-executable");
    std::fs::write(&script, "#!/bin/sh\necho hi\n")?;
    let err = run_plain(&spec(&script.to_string_lossy(), &[])).err();
    assert!(
        matches!(&err, Some(e) if e.kind() == io::ErrorKind::PermissionDenied),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn live_log_receives_the_output() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("live.log");
    let mut spec = sh("echo one; echo two >&2");
    spec.live_log = Some(path.clone());
    let out = run_plain(&spec)?;
    assert_eq!(std::fs::read_to_string(&path)?, "one\ntwo\n");
    assert_eq!(out.output, "one\ntwo\n");
    Ok(())
}

#[test]
fn run_creates_the_live_log_before_the_spawn_start_only_when_needed() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut spec = sh("true");
    spec.live_log = Some(dir.path().join("logs").join("1.log"));
    // `run`: a follower on another thread may look for the file only after the job ended.
    assert!(run_plain(&spec)?.live_log);
    assert!(dir.path().join("logs/1.log").exists());
    // `start`: a quick, silent job leaves no file behind, and says so (nothing to remove).
    spec.live_log = Some(dir.path().join("logs").join("2.log"));
    assert!(!start(&spec)?.wait(&Cancel::new())?.live_log);
    assert!(!dir.path().join("logs/2.log").exists());
    // ... and a job that writes gets it.
    let mut spec = sh("echo hi");
    spec.live_log = Some(dir.path().join("logs").join("3.log"));
    assert!(start(&spec)?.wait(&Cancel::new())?.live_log);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("logs/3.log"))?,
        "hi\n"
    );
    Ok(())
}

#[test]
fn live_log_stops_at_the_cap() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("live.log");
    let mut spec = sh("head -c 100000 /dev/zero | tr '\\0' y");
    spec.live_log = Some(path.clone());
    spec.output_cap = 1024;
    run_plain(&spec)?;
    let text = std::fs::read_to_string(&path)?;
    assert!(text.starts_with(&"y".repeat(1024)));
    assert!(text.ends_with("[… output cap of 1.0 KiB reached: the rest is not logged here …]\n"));
    assert_eq!(text.lines().count(), 2);
    Ok(())
}

#[test]
fn rusage_reports_memory() -> io::Result<()> {
    let out = run_plain(&sh("true"))?;
    assert!(out.max_rss_mb > 0.0, "{}", out.max_rss_mb);
    assert!(out.max_rss_mb < 1024.0, "{}", out.max_rss_mb);
    Ok(())
}

#[test]
fn a_background_grandchild_in_the_group_does_not_hang_run() -> io::Result<()> {
    let started = Instant::now();
    let out = run_plain(&sh("sleep 30 & echo started"))?;
    assert_eq!(out.ending, Ending::Exited(0));
    assert_eq!(out.output, "started\n");
    assert!(started.elapsed() < QUICK);
    assert_group_gone(out.pid);
    Ok(())
}

#[test]
fn an_escaped_descendant_holding_the_pipe_does_not_hang_run() -> io::Result<()> {
    // setsid leaves the group, so nothing kills it: it holds the pipe for 3 s, then exits.
    let started = Instant::now();
    let out = run_plain(&sh("setsid sleep 3 & echo started"))?;
    assert_eq!(out.ending, Ending::Exited(0));
    assert_eq!(out.output, "started\n");
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
    Ok(())
}

#[test]
fn kill_group_stops_a_leftover_group() -> io::Result<()> {
    let mut command = Command::new(SH);
    command
        .args(["-c", "trap '' TERM; sleep 30 & sleep 30"])
        .process_group(0)
        .stdout(Stdio::null());
    let mut child = command.spawn()?;
    let pgid = child.id();
    thread::sleep(Duration::from_millis(100));
    assert!(group_alive(pgid));
    assert!(kill_group(pgid, Duration::from_millis(200)));
    child.wait()?;
    assert_group_gone(pgid);
    assert!(!kill_group(pgid, Duration::ZERO));
    Ok(())
}

#[test]
fn timeout_max_means_none() -> io::Result<()> {
    let mut spec = sh("echo ok");
    spec.timeout = Duration::MAX;
    spec.grace = Duration::MAX;
    let out = run_plain(&spec)?;
    assert_eq!(out.ending, Ending::Exited(0));
    Ok(())
}

#[test]
fn a_panicking_on_spawn_does_not_leave_the_job_running() {
    let seen = AtomicU32::new(0);
    let result = std::panic::catch_unwind(|| {
        run(&sh("sleep 30"), &Cancel::new(), |pid| {
            seen.store(pid, Ordering::SeqCst);
            panic!("recording the pid failed");
        })
    });
    assert!(result.is_err());
    let pgid = seen.load(Ordering::SeqCst) as libc::pid_t;
    assert!(group::wait_gone(pgid, Some(Instant::now() + QUICK)));
}

#[test]
fn a_started_child_dropped_unwaited_is_killed_and_reaped() -> io::Result<()> {
    let started = start(&sh("sleep 30"))?;
    let pid = started.pid();
    drop(started);
    // KILLed members other than the leader may take a moment to end.
    assert!(group::wait_gone(
        pid as libc::pid_t,
        Some(Instant::now() + QUICK)
    ));
    assert_group_gone(pid);
    // Reaped, not a zombie of ours: waiting for it finds no such child.
    // SAFETY: waitpid accepts a null status pointer.
    let rc = unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), libc::WNOHANG) };
    assert_eq!(rc, -1);
    Ok(())
}

#[test]
fn started_here_waited_on_another_thread() -> io::Result<()> {
    let started = start(&sh("echo hi"))?;
    let pid = started.pid();
    let out = thread::spawn(move || started.wait(&Cancel::new()))
        .join()
        .map_err(|_| io::Error::other("the waiting thread panicked"))??;
    assert_eq!(out.pid, pid);
    assert_eq!(out.output, "hi\n");
    Ok(())
}

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<Cancel>();
    send_sync::<Spec>();
    send_sync::<Outcome>();
    send::<Started>();
}

/// This process's peak resident size (VmHWM) in MB.
fn own_peak_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap()
        / 1024.0
}

#[test]
fn a_small_child_does_not_inherit_the_parents_peak_memory() {
    // Raise this process's peak resident size by ~300 MB, then give it back. Other tests run in
    // this process at the same time, so compare with the peak rather than with a fixed figure.
    // Their spawns reset the peak too (each start does): one of a few tries must find the peak
    // still high when it is read; a leak fails every try.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let mut big = vec![0u8; 300 * 1024 * 1024];
        for i in (0..big.len()).step_by(4096) {
            big[i] = 1;
        }
        std::hint::black_box(&big);
        drop(big);
        let peak = own_peak_mb();
        let out = run_plain(&spec("/bin/true", &[])).unwrap();
        if peak >= 300.0 && out.max_rss_mb < peak - 200.0 {
            return;
        }
        seen.push((out.max_rss_mb, peak));
    }
    panic!(
        "/bin/true reported (its MB, this process's peak MB) {seen:?}: the old peak leaked into it"
    );
}

/// What a job finds when it starts, by either way of starting it: its own process group, stdin
/// from /dev/null, only descriptors 0–2, no blocked signal (the runner may block signals in its
/// threads), SIGPIPE not ignored (the runner ignores it), argv[0] the program's path.
#[test]
fn a_job_starts_in_a_clean_process_state() -> io::Result<()> {
    // The second way: code in the child (a resource limit) makes it a fork.
    let forked = |mut spec: Spec| {
        spec.limits.nofile = Some(64);
        spec
    };
    // SIGUSR2 blocked in this thread, and a descriptor that is not close-on-exec, while it
    // starts the children.
    let blocked = SigMask::block(libc::SIGUSR2);
    // SAFETY: dup of stderr, which is open; the copy (without close-on-exec) is closed below.
    let stray = unsafe { libc::dup(2) };
    assert!(stray > 2, "{}", io::Error::last_os_error());
    // Signals ignored here stay ignored in a job (as with any exec), except SIGPIPE.
    let own = std::fs::read_to_string("/proc/self/status")?;
    let own_ignored = own
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or_default();
    let pipe = 1u64 << (libc::SIGPIPE - 1);
    assert_ne!(
        own_ignored & pipe,
        0,
        "this test expects SIGPIPE ignored here, as Rust does"
    );
    let expected_ignored = format!("{:016x}", own_ignored & !pipe);
    for (way, how) in [
        ("clone", (|s: Spec| s) as fn(Spec) -> Spec),
        ("fork", forked),
    ] {
        let status = run_plain(&how(spec("/usr/bin/cat", &["/proc/self/status"])))?;
        let field = |name: &str| {
            status
                .output
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        assert_eq!(
            field("SigBlk:").as_deref(),
            Some("0000000000000000"),
            "{way}"
        );
        assert_eq!(field("SigIgn:"), Some(expected_ignored.clone()), "{way}");
        assert_eq!(field("NSpgid:"), Some(status.pid.to_string()), "{way}");
        let fds = run_plain(&how(spec("/usr/bin/ls", &["/proc/self/fd"])))?;
        // 3 is the folder `ls` reads.
        assert_eq!(fds.output, "0\n1\n2\n3\n", "{way}");
        let stdin = run_plain(&how(spec("/usr/bin/readlink", &["/proc/self/fd/0"])))?;
        assert_eq!(stdin.output, "/dev/null\n", "{way}");
        let argv0 = run_plain(&how(sh("echo \"$0\"")))?;
        assert_eq!(argv0.output, format!("{SH}\n"), "{way}");
    }
    drop(blocked);
    // SAFETY: closes the copy made above, which nothing else uses.
    unsafe { libc::close(stray) };
    Ok(())
}

/// Blocks a signal in the calling thread until dropped.
struct SigMask(libc::sigset_t);

impl SigMask {
    fn block(sig: libc::c_int) -> SigMask {
        // SAFETY: sigset_t is plain data, filled by sigemptyset/sigaddset before use, and
        // pthread_sigmask gets valid pointers.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, sig);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
            SigMask(old)
        }
    }
}

impl Drop for SigMask {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `block`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// The thread that spawned a job ends (as the runner's threads do when it is killed) while the
/// job runs: the kernel kills the job (PR_SET_PDEATHSIG), on both ways of starting it (the
/// vfork-style clone, and the fork that resource limits need).
#[test]
fn a_job_dies_with_the_thread_that_started_it() -> io::Result<()> {
    let plain = spec("/bin/sleep", &["30"]);
    let limited = Spec {
        limits: Limits {
            nofile: Some(256),
            ..Limits::default()
        },
        ..spec("/bin/sleep", &["30"])
    };
    for spec in [plain, limited] {
        let pid = thread::spawn(move || {
            let started = start(&spec)?;
            let pid = started.pid() as libc::pid_t;
            // Not waited for and not killed on drop: left as a dead runner leaves it.
            std::mem::forget(started);
            io::Result::Ok(pid)
        })
        .join()
        .map_err(|_| io::Error::other("the spawning thread panicked"))??;
        let until = Instant::now() + QUICK;
        let mut status = 0;
        loop {
            // SAFETY: waiting for this process's own child (any thread's); `status` is valid.
            let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if rc == pid {
                break;
            }
            if Instant::now() >= until {
                // SAFETY: our own child, still running.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                panic!("the job outlived the thread that started it");
            }
            thread::sleep(Duration::from_millis(20));
        }
        assert!(libc::WIFSIGNALED(status), "{status:#x}");
        assert_eq!(libc::WTERMSIG(status), libc::SIGKILL);
    }
    Ok(())
}
