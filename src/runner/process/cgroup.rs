//! cgroup v2: each execution in a child cgroup of its own, where the runner's cgroup is
//! delegated to it.
//!
//! The runner finds its cgroup from the `0::` line of `/proc/self/cgroup` and the cgroup2 mount
//! in `/proc/self/mountinfo`. It uses it when the cgroup is delegated (systemd's `Delegate=yes`
//! marks it with the `trusted.delegate` or `user.delegate` attribute), or when it is the root of
//! the hierarchy (a container, or a host with no service manager on cgroup v2), can create child
//! cgroups there, and the kernel has `cgroup.kill` (Linux ≥ 5.14). It then moves itself into
//! a leaf, `runner/` (cgroup v2 lets only leaves hold processes once controllers are enabled for
//! children), enables the `memory` and `cpu` controllers for its children where it can, and
//! starts each execution in `exec-<runner pid>-<n>/`:
//!
//! - the child joins the cgroup before its exec, by writing `0` ("myself") to the cgroup's
//!   `cgroup.procs`, opened by the runner before the spawn. So the program, and everything it
//!   starts, runs in the cgroup from its first instruction: no window in which a fork escapes.
//! - `memory.max` (with `memory.swap.max = 0` and `memory.oom.group = 1`) enforces the memory
//!   limit when the memory controller is there; `memory.peak` is the job's honest peak.
//! - `cpu.stat`'s `usage_usec` is the CPU time of every process of the job, reaped or not.
//! - on timeout, cancel, or once the leader has exited, TERM goes to every process of the cgroup,
//!   and after the grace period `cgroup.kill` ends what is left, processes that left the process
//!   group (`setsid`) included. Then the cgroup is removed.
//!
//! Anything else (no cgroup v2, not delegated, `CRONMGR_CGROUPS=off`): the rlimits of
//! [`crate::limits`], process groups, and `wait4`'s rusage, whose memory figure is an upper
//! bound (see [`Accounting::summary`]). `run-now` and other commands always work that way: only
//! the runner (a service with its own cgroup) moves itself.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Serialize;

/// The leaf the runner moves itself into.
pub const RUNNER_LEAF: &str = "runner";
/// Set to `off` to keep a runner out of cgroups (rlimits only).
pub const ENV_SWITCH: &str = "CRONMGR_CGROUPS";
/// How long to wait for an emptied cgroup's last process to be gone (after `cgroup.kill`).
const SETTLE: Duration = Duration::from_secs(2);

/// How a process's executions are accounted and limited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Accounting {
    /// Process groups, `setrlimit` and `wait4`'s rusage.
    Rlimits {
        /// Why not cgroup v2.
        why: String,
    },
    /// A child cgroup per execution.
    CgroupV2(Delegation),
}

/// The delegated cgroup the executions' cgroups are made in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delegation {
    /// The cgroup's folder, under the cgroup2 mount.
    pub cgroup: PathBuf,
    /// The memory controller is enabled for the executions: `memory.max`, `memory.peak`.
    pub memory: bool,
    /// The cpu controller is enabled for the executions (`cpu.max`).
    pub cpu: bool,
}

impl Accounting {
    /// One line for `status` and the runner's log.
    pub fn summary(&self) -> String {
        match self {
            Accounting::Rlimits { why } => {
                format!(
                    "rlimits; memory figures are upper bounds, CPU quotas are not enforced ({why})"
                )
            }
            Accounting::CgroupV2(d) => {
                let mut s = format!("cgroup v2 (delegated at {})", d.cgroup.display());
                if !d.memory {
                    s.push_str(
                        "; no memory controller: memory figures are upper bounds and \
                         --memory-limit is an address-space rlimit",
                    );
                }
                if !d.cpu {
                    s.push_str("; no cpu controller: CPU quotas (--cpu-quota) are not enforced");
                }
                s
            }
        }
    }

    /// Whether recorded memory figures are exact peaks (else upper bounds: see the docs).
    pub fn memory_exact(&self) -> bool {
        matches!(self, Accounting::CgroupV2(d) if d.memory)
    }
}

static MODE: OnceLock<Accounting> = OnceLock::new();

/// The delegated cgroup this process starts executions in, if [`init_runner`] found one.
pub(super) fn current() -> Option<&'static Delegation> {
    match MODE.get()? {
        Accounting::CgroupV2(d) => Some(d),
        Accounting::Rlimits { .. } => None,
    }
}

/// Called once by the runner at start, before it spawns anything: choose how executions are
/// accounted, and when it is cgroup v2, move this process into its leaf and enable the
/// controllers for the executions. Never fails: anything that does not work means rlimits.
pub fn init_runner() -> &'static Accounting {
    MODE.get_or_init(|| {
        let mode = match std::env::var(ENV_SWITCH).as_deref() {
            Ok("off") => Accounting::Rlimits {
                why: format!("turned off by {ENV_SWITCH}=off"),
            },
            _ => set_up().unwrap_or_else(|why| Accounting::Rlimits { why }),
        };
        tracing::info!("resource accounting: {}", mode.summary());
        mode
    })
}

/// What the runner with this pid uses, as seen from outside (for `status`): cgroup v2 when it
/// sits in its `runner/` leaf, with the controllers its parent enables for children.
pub fn of_process(pid: u32) -> Accounting {
    let read = |path: String| fs::read_to_string(path).map_err(|e| e.to_string());
    let found = (|| {
        let cgroup = read(format!("/proc/{pid}/cgroup"))?;
        let mountinfo = read("/proc/self/mountinfo".into())?;
        let dir = own_dir(&cgroup, &mountinfo)?;
        if dir.file_name().and_then(|n| n.to_str()) != Some(RUNNER_LEAF) {
            return Err("the runner is not in a delegated cgroup".to_string());
        }
        let parent = dir.parent().ok_or("no parent cgroup")?.to_path_buf();
        let enabled = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
        Ok(Delegation {
            memory: has_word(&enabled, "memory"),
            cpu: has_word(&enabled, "cpu"),
            cgroup: parent,
        })
    })();
    match found {
        Ok(d) => Accounting::CgroupV2(d),
        Err(why) => Accounting::Rlimits { why },
    }
}

/// Find the runner's cgroup, check it is ours, move into the leaf, enable controllers.
fn set_up() -> Result<Accounting, String> {
    let cgroup = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    let dir = own_dir(&cgroup, &mountinfo)?;
    let is_root = unified_path(&cgroup) == Some("/");
    if !is_root && !delegated(&dir) {
        return Err(format!(
            "cgroup {} is not delegated to the runner (systemd: Delegate=yes)",
            dir.display()
        ));
    }
    let leaf = dir.join(RUNNER_LEAF);
    mkdir(&leaf).map_err(|e| format!("cannot create {}: {e}", leaf.display()))?;
    // The root cgroup has no cgroup.kill of its own: look at a child's.
    if !leaf.join("cgroup.kill").exists() {
        return Err("no cgroup.kill (Linux 5.14 or later needed)".into());
    }
    fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
        .map_err(|e| format!("cannot move the runner into {}: {e}", leaf.display()))?;
    remove_stale(&dir);
    let available = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    for controller in ["memory", "cpu"] {
        if has_word(&available, controller) {
            // Fails when another process still sits in `dir` itself: then without it.
            if let Err(e) = fs::write(dir.join("cgroup.subtree_control"), format!("+{controller}"))
            {
                tracing::warn!(controller, "cannot enable the {controller} controller: {e}");
            }
        }
    }
    let enabled = fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    Ok(Accounting::CgroupV2(Delegation {
        memory: has_word(&enabled, "memory"),
        cpu: has_word(&enabled, "cpu"),
        cgroup: dir,
    }))
}

/// Remove the executions' cgroups that a runner which is gone left behind (it crashed, or was
/// killed before it could remove them), when they are empty. One that still holds processes is
/// left alone: the runner of another database on this host shares the delegated cgroup, and
/// whether an orphan is stopped is the start-up recovery's decision, made from its database
/// (a dead runner's job may even be mid-cancel), not from a cgroup's name.
fn remove_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(stale_owner) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue; // its runner still runs
        }
        let path = entry.path();
        // rmdir fails (EBUSY) while the cgroup has processes.
        if fs::remove_dir(&path).is_ok() {
            tracing::info!(cgroup = %path.display(), "removed an empty execution cgroup left by runner {pid}");
        }
    }
}

/// The runner pid in an execution cgroup's name, `exec-<pid>-<n>`.
fn stale_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("exec-")?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether systemd (≥ 251) marked the cgroup as delegated: `trusted.delegate` (the system
/// manager) or `user.delegate` (a user's) set to `1`.
fn delegated(dir: &Path) -> bool {
    ["trusted.delegate", "user.delegate"]
        .iter()
        .any(|name| xattr(dir, name).is_some_and(|v| v == b"1"))
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let name = std::ffi::CString::new(name).ok()?;
    let mut buf = [0u8; 16];
    // SAFETY: both strings are NUL-terminated; buf is valid for buf.len() bytes.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let n = usize::try_from(n).ok()?;
    Some(buf[..n].to_vec())
}

fn mkdir(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// The folder of the cgroup that a `/proc/PID/cgroup` text names, under the cgroup2 mount.
fn own_dir(cgroup: &str, mountinfo: &str) -> Result<PathBuf, String> {
    let path = unified_path(cgroup).ok_or("no cgroup v2 (no 0:: line in /proc/self/cgroup)")?;
    let (root, mount) = cgroup2_mount(mountinfo).ok_or("no cgroup2 file system mounted")?;
    // Under a cgroup namespace or a bind mount, the mount shows the hierarchy from `root` down.
    let rest = if root == "/" {
        path
    } else {
        path.strip_prefix(root)
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .ok_or_else(|| format!("cgroup {path} is outside the cgroup2 mount ({root})"))?
    };
    let dir = match rest.trim_start_matches('/') {
        "" => PathBuf::from(mount),
        rest => Path::new(mount).join(rest),
    };
    if path.ends_with(" (deleted)") || !dir.is_dir() {
        return Err(format!("cgroup folder {} not found", dir.display()));
    }
    Ok(dir)
}

/// The unified hierarchy's path in a `/proc/PID/cgroup` text: its `0::PATH` line.
fn unified_path(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::trim_end)
        .filter(|p| p.starts_with('/'))
}

/// The first cgroup2 mount in a `/proc/PID/mountinfo` text: (its root in the hierarchy, its
/// mount point). Fields: `id parent major:minor root mountpoint options [optional…] - fstype …`.
fn cgroup2_mount(text: &str) -> Option<(&str, &str)> {
    text.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mut fields = left.split_whitespace();
        let root = fields.nth(3)?;
        let mount = fields.next()?;
        // Octal escapes (`\040` for a space) are rare in mount points; refuse rather than guess.
        (!root.contains('\\') && !mount.contains('\\')).then_some((root, mount))
    })
}

fn has_word(text: &str, word: &str) -> bool {
    text.split_whitespace().any(|w| w == word)
}

/// The value of `key` in a flat-keyed cgroup file (`cpu.stat`, `memory.events`, `cgroup.events`).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// What an execution's cgroup measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Usage {
    /// CPU time of all its processes (`cpu.stat` usage_usec).
    pub cpu: Option<Duration>,
    /// Peak memory in bytes (`memory.peak`), with the memory controller.
    pub memory_peak: Option<u64>,
    /// Processes the kernel killed at `memory.max` (`memory.events` oom_kill).
    pub oom_kills: u64,
}

impl Usage {
    fn read(dir: &Path) -> Usage {
        let text = |name: &str| fs::read_to_string(dir.join(name)).ok();
        Usage {
            cpu: text("cpu.stat")
                .and_then(|t| keyed(&t, "usage_usec"))
                .map(Duration::from_micros),
            memory_peak: text("memory.peak").and_then(|t| t.trim().parse().ok()),
            oom_kills: text("memory.events")
                .and_then(|t| keyed(&t, "oom_kill"))
                .unwrap_or(0),
        }
    }
}

/// One execution's cgroup: made before the spawn, removed (its processes killed first) when
/// dropped.
#[derive(Debug)]
pub(super) struct Cgroup {
    dir: PathBuf,
    /// `cgroup.procs`, open for writing: the child writes `0` to it before its exec.
    procs: OwnedFd,
    /// `memory.max` is set: no RLIMIT_AS for this execution.
    pub(super) limits_memory: bool,
    /// `cpu.max` is set: the CPU quota is enforced.
    pub(super) limits_cpu: bool,
}

impl Cgroup {
    /// A new cgroup under `under` for one execution, with its memory limit if the memory
    /// controller is there and its CPU quota (percent of one CPU) if the cpu controller is.
    pub(super) fn create(
        under: &Delegation,
        memory_limit: Option<u64>,
        cpu_quota: Option<u32>,
    ) -> io::Result<Cgroup> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = under
            .cgroup
            .join(format!("exec-{}-{n}", std::process::id()));
        fs::create_dir(&dir)?;
        let mut cgroup = Cgroup {
            procs: open_for_child(&dir.join("cgroup.procs")).inspect_err(|_| {
                let _ = fs::remove_dir(&dir);
            })?,
            dir,
            limits_memory: false,
            limits_cpu: false,
        };
        cgroup.set_limits(under, memory_limit, cpu_quota)?;
        Ok(cgroup)
    }

    /// Write the limits whose controller `under` has enabled.
    fn set_limits(
        &mut self,
        under: &Delegation,
        memory_limit: Option<u64>,
        cpu_quota: Option<u32>,
    ) -> io::Result<()> {
        if let (true, Some(bytes)) = (under.memory, memory_limit) {
            self.write("memory.max", &bytes.to_string())?;
            // A limit, not a trigger for swapping; and an OOM ends the whole job, as systemd's
            // OOMPolicy=stop does, rather than one process of it.
            if self.dir.join("memory.swap.max").exists() {
                self.write("memory.swap.max", "0")?;
            }
            self.write("memory.oom.group", "1")?;
            self.limits_memory = true;
        }
        if let (true, Some(percent)) = (under.cpu, cpu_quota) {
            self.write("cpu.max", &crate::model::quota::cpu_max(percent))?;
            self.limits_cpu = true;
        }
        Ok(())
    }

    fn write(&self, file: &str, value: &str) -> io::Result<()> {
        fs::write(self.dir.join(file), value).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("writing {value} to {}: {e}", self.dir.join(file).display()),
            )
        })
    }

    /// The descriptor the child writes `0` to, to join.
    pub(super) fn procs_fd(&self) -> libc::c_int {
        self.procs.as_raw_fd()
    }

    /// Whether any process of the cgroup is alive (zombies do not count).
    pub(super) fn populated(&self) -> bool {
        match fs::read_to_string(self.dir.join("cgroup.events")) {
            Ok(text) => keyed(&text, "populated") != Some(0),
            Err(_) => false, // removed
        }
    }

    /// Send `sig` to every process of the cgroup. A pid read from `cgroup.procs` is a member
    /// until it is reaped, and our members' parents are the job's own processes or init.
    pub(super) fn signal(&self, sig: libc::c_int) {
        let Ok(text) = fs::read_to_string(self.dir.join("cgroup.procs")) else {
            return;
        };
        for pid in text
            .lines()
            .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
        {
            if pid > 1 {
                // SAFETY: kill takes no pointers; pid > 1 names one process.
                unsafe { libc::kill(pid, sig) };
            }
        }
    }

    /// SIGKILL every process of the cgroup, those forked meanwhile included (`cgroup.kill`).
    pub(super) fn kill(&self) {
        if let Err(e) = self.write("cgroup.kill", "1") {
            tracing::warn!("{e}");
        }
    }

    /// Kill what is left, wait for it to be gone, read the figures, remove the cgroup.
    pub(super) fn finish(self) -> Usage {
        if self.populated() {
            self.kill();
            self.wait_empty(Instant::now() + SETTLE);
        }
        Usage::read(&self.dir)
        // dropped: removed
    }

    /// Wait until no process is left, or `until`. True if it emptied.
    pub(super) fn wait_empty(&self, until: Instant) -> bool {
        let mut pause = Duration::from_millis(1);
        while self.populated() {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
        true
    }

    #[cfg(test)]
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if self.populated() {
            self.kill();
            self.wait_empty(Instant::now() + SETTLE);
        }
        // The kernel may report it empty a moment before it lets it go.
        let until = Instant::now() + SETTLE;
        loop {
            match fs::remove_dir(&self.dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    tracing::warn!(cgroup = %self.dir.display(), "cannot remove: {e}");
                    break;
                }
                _ => break,
            }
        }
    }
}

/// Open for writing, close-on-exec, numbered 3 or more (the child puts its stdio at 0–2 after
/// it has joined, but `Command` does so before).
fn open_for_child(path: &Path) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a cgroup path"))?;
    // SAFETY: c is NUL-terminated; open returns a new descriptor or -1.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open succeeded: fd is ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor returns a new one (≥ 3) we own, or -1.
    let copy = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl succeeded.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// In the child, before exec: join the cgroup whose `cgroup.procs` is open as `fd` (writing
/// `0` moves the writer). Async-signal-safe: one `write`.
pub(super) fn join(fd: libc::c_int) -> io::Result<()> {
    // SAFETY: writing one byte from a static buffer to a descriptor we were given.
    if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
30 22 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory
";

    #[test]
    fn finds_the_unified_line_among_v1_lines() {
        let text = "4:memory:/x\n1:cpu:/\n0::/system.slice/cronmgr.service\n";
        assert_eq!(unified_path(text), Some("/system.slice/cronmgr.service"));
        assert_eq!(unified_path("0::/\n"), Some("/"));
        // v1 only: no 0:: line.
        assert_eq!(unified_path("4:memory:/x\n1:cpu:/\n"), None);
    }

    #[test]
    fn finds_the_cgroup2_mount_not_the_v1_ones() {
        assert_eq!(
            cgroup2_mount(MOUNTINFO),
            Some(("/", "/sys/fs/cgroup/unified"))
        );
        let v1 = "32 30 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert_eq!(cgroup2_mount(v1), None);
        // Optional fields before the separator.
        let ns = "40 1 0:30 /lxc/c1 /sys/fs/cgroup rw shared:3 master:1 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(ns), Some(("/lxc/c1", "/sys/fs/cgroup")));
    }

    #[test]
    fn the_own_folder_maps_the_path_under_the_mount() -> Result<(), String> {
        // The root of this machine's hierarchy exists wherever cgroup2 is mounted there; a
        // missing folder is an error naming it.
        let err = own_dir("0::/no/such/cgroup-cronmgr-test\n", MOUNTINFO).err();
        assert!(
            err.as_deref().is_some_and(
                |e| e.contains("/sys/fs/cgroup/unified/no/such/cgroup-cronmgr-test not found")
            ),
            "{err:?}"
        );
        let ns = "40 1 0:30 /lxc/c1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let err = own_dir("0::/other/x\n", ns).err();
        assert!(
            err.as_deref().is_some_and(|e| e.contains("outside")),
            "{err:?}"
        );
        assert!(own_dir("1:cpu:/\n", MOUNTINFO).is_err());
        Ok(())
    }

    /// This process's own cgroup when it may make children there (root on cgroup v2, as CI
    /// runs); None after saying so, or a panic under CRONMGR_TEST_NO_SKIP=1.
    fn here(test: &str) -> Option<Delegation> {
        let found = (|| {
            let cgroup = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
            let mountinfo =
                fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
            let dir = own_dir(&cgroup, &mountinfo)?;
            let probe = dir.join(format!("cronmgr-probe-{}", std::process::id()));
            fs::create_dir(&probe).map_err(|e| format!("cannot create a cgroup: {e}"))?;
            let kill = probe.join("cgroup.kill").exists();
            let _ = fs::remove_dir(&probe);
            kill.then_some(dir).ok_or("no cgroup.kill".to_string())
        })();
        match found {
            Ok(dir) => Some(Delegation {
                cgroup: dir,
                memory: false,
                cpu: false,
            }),
            Err(why) => {
                assert!(
                    std::env::var("CRONMGR_TEST_NO_SKIP").as_deref() != Ok("1"),
                    "{test}: would be skipped: {why}"
                );
                eprintln!("skipped: {test}: {why}");
                None
            }
        }
    }

    #[test]
    fn cgroup_kill_ends_what_left_the_group_and_the_cgroup_is_removed() -> io::Result<()> {
        use std::os::unix::process::CommandExt;
        let Some(under) = here("cgroup_kill_ends_what_left_the_group") else {
            return Ok(());
        };
        let cgroup = Cgroup::create(&under, None, None)?;
        let fd = cgroup.procs_fd();
        let mut command = std::process::Command::new("/bin/sh");
        command
            .args(["-c", "setsid sleep 1000 & exec sleep 1000"])
            .process_group(0)
            .stdout(std::process::Stdio::null());
        // SAFETY: join makes one write(2), async-signal-safe.
        unsafe {
            command.pre_exec(move || join(fd));
        }
        let mut child = command.spawn()?;
        let procs = || fs::read_to_string(cgroup.dir().join("cgroup.procs")).unwrap_or_default();
        let until = Instant::now() + Duration::from_secs(10);
        while procs().lines().count() < 2 {
            assert!(
                Instant::now() < until,
                "the job and its setsid child never both joined"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(procs().contains(&child.id().to_string()));
        assert!(cgroup.populated());
        cgroup.kill();
        assert!(cgroup.wait_empty(Instant::now() + Duration::from_secs(10)));
        let status = child.wait()?;
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        let dir = cgroup.dir().to_path_buf();
        let usage = cgroup.finish();
        assert!(
            usage.cpu.is_some(),
            "cpu.stat is there without the cpu controller"
        );
        assert!(!dir.exists(), "{} was not removed", dir.display());
        Ok(())
    }

    #[test]
    fn limits_are_written_only_where_their_controller_is() -> io::Result<()> {
        // A plain folder stands in for the cgroup: the files are what the kernel would read.
        let dir = tempfile::tempdir()?;
        let cgroup = |d: &Path| -> io::Result<Cgroup> {
            Ok(Cgroup {
                dir: d.to_path_buf(),
                procs: fs::File::open("/dev/null")?.into(),
                limits_memory: false,
                limits_cpu: false,
            })
        };
        let mut under = Delegation {
            cgroup: dir.path().to_path_buf(),
            memory: false,
            cpu: false,
        };
        let mut bare = cgroup(dir.path())?;
        bare.set_limits(&under, Some(64 << 20), Some(20))?;
        assert!(!bare.limits_memory && !bare.limits_cpu);
        assert!(!dir.path().join("cpu.max").exists());
        assert!(!dir.path().join("memory.max").exists());
        under.cpu = true;
        let mut quota = cgroup(dir.path())?;
        quota.set_limits(&under, None, Some(20))?;
        assert!(quota.limits_cpu && !quota.limits_memory);
        assert_eq!(
            fs::read_to_string(dir.path().join("cpu.max"))?,
            "20000 100000"
        );
        under.memory = true;
        let mut both = cgroup(dir.path())?;
        both.set_limits(&under, Some(64 << 20), Some(150))?;
        assert!(both.limits_cpu && both.limits_memory);
        assert_eq!(
            fs::read_to_string(dir.path().join("cpu.max"))?,
            "150000 100000"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("memory.max"))?,
            (64u64 << 20).to_string()
        );
        Ok(())
    }

    #[test]
    fn names_its_execution_cgroups_so_a_later_runner_finds_the_stale_ones() {
        assert_eq!(stale_owner("exec-4242-17"), Some(4242));
        assert_eq!(stale_owner("runner"), None);
        assert_eq!(stale_owner("exec-4242"), None);
        assert_eq!(stale_owner("exec-x-1"), None);
    }

    #[test]
    fn reads_flat_keyed_files() {
        let cpu = "usage_usec 137826\nuser_usec 65079\nsystem_usec 72746\nnice_usec 0\n";
        assert_eq!(keyed(cpu, "usage_usec"), Some(137_826));
        assert_eq!(keyed(cpu, "usage"), None);
        let events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 1\n";
        assert_eq!(keyed(events, "oom_kill"), Some(1));
        assert_eq!(keyed("populated 0\nfrozen 0\n", "populated"), Some(0));
        assert_eq!(keyed("garbage", "populated"), None);
    }

    #[test]
    fn usage_reads_the_figures_and_tolerates_missing_files() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(Usage::read(dir.path()), Usage::default());
        fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 2500000\nuser_usec 1\n",
        )?;
        fs::write(dir.path().join("memory.peak"), "1216512\n")?;
        fs::write(
            dir.path().join("memory.events"),
            "max 3\noom 1\noom_kill 1\n",
        )?;
        let u = Usage::read(dir.path());
        assert_eq!(u.cpu, Some(Duration::from_millis(2500)));
        assert_eq!(u.memory_peak, Some(1_216_512));
        assert_eq!(u.oom_kills, 1);
        Ok(())
    }

    #[test]
    fn the_summary_says_which_and_whether_memory_figures_are_exact() {
        let r = Accounting::Rlimits {
            why: "no cgroup v2".into(),
        };
        assert_eq!(
            r.summary(),
            "rlimits; memory figures are upper bounds, CPU quotas are not enforced (no cgroup v2)"
        );
        assert!(!r.memory_exact());
        let mut d = Delegation {
            cgroup: "/sys/fs/cgroup/system.slice/cronmgr.service".into(),
            memory: true,
            cpu: true,
        };
        let full = Accounting::CgroupV2(d.clone());
        assert_eq!(
            full.summary(),
            "cgroup v2 (delegated at /sys/fs/cgroup/system.slice/cronmgr.service)"
        );
        assert!(full.memory_exact());
        let mut no_cpu = d.clone();
        no_cpu.cpu = false;
        d.memory = false;
        let bare = Accounting::CgroupV2(d);
        assert!(bare.summary().contains("memory figures are upper bounds"));
        assert!(!bare.summary().contains("cpu controller"));
        assert!(Accounting::CgroupV2(no_cpu)
            .summary()
            .ends_with("no cpu controller: CPU quotas (--cpu-quota) are not enforced"));
        assert!(!bare.memory_exact());
        let json = serde_json::to_value(&full).unwrap_or_default();
        assert_eq!(json["mode"], "cgroup_v2");
        assert_eq!(json["memory"], true);
    }
}
