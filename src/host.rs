//! Facts about this host and its processes, read the cheap way: its name, our effective uid,
//! whether a pid is alive and when it started, the load (`/proc/stat` deltas), a process's
//! usage, and disk space (`statvfs`). A leaf: it imports nothing of ours.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use chrono::{DateTime, Utc};

/// CPU time counters from the first (`cpu`) line of /proc/stat: (busy, total) in ticks.
pub fn parse_proc_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is already in user/nice).
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Percent of all CPUs busy between two readings.
#[derive(Debug, Default)]
pub struct CpuSampler {
    last: Option<(u64, u64)>,
}

impl CpuSampler {
    /// Read /proc/stat; the busy percent since the previous call (None the first time).
    pub fn sample(&mut self) -> Option<f64> {
        let now = parse_proc_stat(&std::fs::read_to_string("/proc/stat").ok()?)?;
        self.feed(now)
    }

    pub fn feed(&mut self, now: (u64, u64)) -> Option<f64> {
        let prev = self.last.replace(now)?;
        let total = now.1.checked_sub(prev.1)?;
        let busy = now.0.checked_sub(prev.0)?;
        (total > 0).then(|| busy as f64 * 100.0 / total as f64)
    }
}

/// Space on the file system holding `path`, in bytes, as `df` counts it: `available` is what
/// unprivileged users may still write, `size` is what is used plus that. Blocks reserved for root
/// count in neither, so `free_percent` is 100 minus `df`'s Use%.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiskSpace {
    pub available: u64,
    pub size: u64,
}

impl DiskSpace {
    fn from_counts(blocks: u64, free: u64, available: u64, fragment: u64) -> DiskSpace {
        let used = blocks.saturating_sub(free);
        DiskSpace {
            available: available * fragment,
            size: (used + available) * fragment,
        }
    }

    pub fn free_percent(&self) -> f64 {
        if self.size == 0 {
            return 0.0;
        }
        self.available as f64 * 100.0 / self.size as f64
    }
}

/// `statvfs` of `path`.
pub fn disk_space(path: &Path) -> std::io::Result<DiskSpace> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs writes into a zeroed struct we own; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(DiskSpace::from_counts(
        st.f_blocks as u64,
        st.f_bfree as u64,
        st.f_bavail as u64,
        st.f_frsize as u64,
    ))
}

/// Free space of the file system holding `path`, in percent, as `df` shows it (100 − Use%).
/// None when it cannot be read or the file system has no size (procfs and the like).
pub fn free_percent(path: &Path) -> Option<f64> {
    let space = disk_space(path).ok()?;
    (space.size > 0).then(|| space.free_percent())
}

/// The runner's own CPU (% of one core since it started) and resident memory (MB), from /proc.
pub fn process_usage(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(0) … utime(11) stime(12) … starttime(19), in clock ticks.
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let used = (ticks(11)? + ticks(12)?) / hz;
    let alive = uptime - ticks(19)? / hz;
    let cpu = if alive > 0.0 {
        used * 100.0 / alive
    } else {
        0.0
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some((cpu, rss_kb / 1024.0))
}

/// This host's name (the kernel's nodename, as `hostname` prints it), for messages, the sender
/// of alert emails and the `runners` table; `localhost` if it cannot be read.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and we read up to the first NUL only.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if rc != 0 || name.is_empty() {
        return "localhost".into();
    }
    name
}

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// When a process started, from /proc (boot time + start ticks); None if it is gone.
pub fn process_start(pid: u32) -> Option<DateTime<Utc>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let ticks: i64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let btime: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    let ms = btime * 1000 + ticks * 1000 / hz;
    DateTime::from_timestamp_millis(ms)
}

/// Whether a process `pid` exists (it may be another user's).
pub fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_deltas_give_busy_percent() {
        let a = parse_proc_stat("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(a, (200, 1000));
        let mut s = CpuSampler::default();
        assert_eq!(s.feed(a), None);
        assert_eq!(s.feed((200 + 90, 1000 + 100)), Some(90.0));
        assert!(parse_proc_stat("intr 1 2").is_none());
    }

    #[test]
    fn free_space_is_counted_as_df_counts_it() {
        // A build machine's root file system: 252 GiB of blocks, 65 GiB used, 27 GiB available
        // to users; df says 72% used. Blocks reserved for root are neither used nor free.
        let s = DiskSpace::from_counts(66_053_021, 49_109_749, 6_878_200, 4096);
        assert_eq!(s.available, 6_878_200 * 4096);
        assert_eq!(s.size, (66_053_021 - 49_109_749 + 6_878_200) * 4096);
        assert!(
            (s.free_percent() - 28.87).abs() < 0.01,
            "{}",
            s.free_percent()
        );
        // Full to the reserve: nothing free for users.
        let full = DiskSpace::from_counts(1000, 50, 0, 4096);
        assert_eq!(full.free_percent(), 0.0);
        // Empty.
        assert_eq!(
            DiskSpace::from_counts(1000, 1000, 950, 4096).free_percent(),
            100.0
        );
        assert_eq!(DiskSpace::from_counts(0, 0, 0, 4096).free_percent(), 0.0);
    }

    #[test]
    fn the_one_hostname_is_the_kernels_nodename() {
        let name = hostname();
        assert!(!name.is_empty() && !name.contains('\0'), "{name:?}");
        match std::fs::read_to_string("/proc/sys/kernel/hostname") {
            Ok(proc_name) => assert_eq!(name, proc_name.trim()),
            Err(e) => eprintln!("skipped: /proc/sys/kernel/hostname unreadable ({e})"),
        }
    }

    #[test]
    fn euid_and_pids_of_this_process() {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(euid(), unsafe { libc::geteuid() });
        assert!(pid_alive(std::process::id()));
        assert!(process_start(std::process::id()).is_some());
    }

    #[test]
    fn reads_this_machine() {
        let free = free_percent(Path::new("/")).unwrap();
        assert!((0.0..=100.0).contains(&free));
        let (cpu, mem) = process_usage(std::process::id()).unwrap();
        assert!(cpu >= 0.0 && mem > 0.0);
    }
}
