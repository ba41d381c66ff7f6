//! Signalling and watching a whole process group: TERM, a grace period, then KILL.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

/// How long to wait for a group to empty after KILL (the kernel needs a moment, not a grace).
pub(super) const KILL_SETTLE: Duration = Duration::from_secs(2);
/// Longest pause between two looks at a group that is dying.
pub(super) const MAX_POLL: Duration = Duration::from_millis(50);

/// Kill a whole process group: TERM, wait up to `grace` for it to empty, then KILL.
/// Returns true if the group existed.
///
/// Refuses (returns false) for ids that `kill(2)` would read as something else than one group
/// (0, 1, above `i32::MAX`) and for the caller's own group.
pub fn kill_group(pgid: u32, grace: Duration) -> bool {
    let Some(pgid) = target(pgid) else {
        return false;
    };
    stop(pgid, grace)
}

/// Whether any process of the group is still running. Zombies do not count: they run nothing and
/// hold no files, they only wait for their parent (often init) to reap them.
pub fn group_alive(pgid: u32) -> bool {
    match i32::try_from(pgid) {
        Ok(pgid) if pgid > 1 => alive(pgid),
        _ => false,
    }
}

/// The group id to signal, or None if signalling it could hit anything but one foreign group.
fn target(pgid: u32) -> Option<libc::pid_t> {
    let pgid = libc::pid_t::try_from(pgid).ok().filter(|&p| p > 1)?;
    // SAFETY: getpgrp has no preconditions and cannot fail.
    let own = unsafe { libc::getpgrp() };
    if pgid == own {
        tracing::warn!(pgid, "refusing to signal the runner's own process group");
        return None;
    }
    Some(pgid)
}

/// TERM, wait up to `grace`, KILL, wait for the kernel. True if the group existed.
pub(super) fn stop(pgid: libc::pid_t, grace: Duration) -> bool {
    if !signal(pgid, libc::SIGTERM) {
        return false;
    }
    if !wait_gone(pgid, Instant::now().checked_add(grace)) {
        tracing::debug!(pgid, "process group outlived its grace period, killing it");
        signal(pgid, libc::SIGKILL);
        wait_gone(pgid, Instant::now().checked_add(KILL_SETTLE));
    }
    true
}

/// Send `sig` to every process of the group. False if the group does not exist.
pub(super) fn signal(pgid: libc::pid_t, sig: libc::c_int) -> bool {
    debug_assert!(pgid > 1);
    // SAFETY: kill has no memory preconditions; pgid > 1, so -pgid names exactly one group
    // (never 0 = our own group, never -1 = every process we may signal).
    let rc = unsafe { libc::kill(-pgid, sig) };
    if rc == 0 {
        return true;
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::ESRCH) {
        tracing::warn!(pgid, sig, "signalling process group failed: {err}");
    }
    // EPERM: it exists, but is not ours to signal.
    err.raw_os_error() == Some(libc::EPERM)
}

/// Wait until no process of the group runs, or until `until` (None: no limit). True if it emptied.
pub(super) fn wait_gone(pgid: libc::pid_t, until: Option<Instant>) -> bool {
    let mut pause = Duration::from_millis(2);
    loop {
        if !alive(pgid) {
            return true;
        }
        let left = match until {
            Some(until) => until.saturating_duration_since(Instant::now()),
            None => MAX_POLL,
        };
        if left.is_zero() {
            return false;
        }
        thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_POLL);
    }
}

pub(super) fn alive(pgid: libc::pid_t) -> bool {
    // SAFETY: kill with signal 0 only checks existence and permission; pgid > 1 (see `signal`).
    let rc = unsafe { libc::kill(-pgid, 0) };
    if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    // The group exists, but maybe only as zombies.
    runs_anything(pgid).unwrap_or(true)
}

/// Whether /proc lists a member of the group that is not a zombie; None without /proc.
fn runs_anything(pgid: libc::pid_t) -> Option<bool> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let mut seen_any = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        // A process that exits between read_dir and read is simply gone.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        seen_any = true;
        if let Some((state, group)) = parse_stat(&stat) {
            if group == pgid && state != 'Z' && state != 'X' {
                return Some(true);
            }
        }
    }
    // An unreadable /proc (hidepid, not mounted) tells nothing: let the caller assume alive.
    seen_any.then_some(false)
}

/// State and process group from `/proc/<pid>/stat`: `pid (comm) S ppid pgrp …`, where comm may
/// hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<(char, libc::pid_t)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let stat = "4242 (a) b (c) S 1 4240 4240 0 -1 4194560 98 0 0 0";
        assert_eq!(parse_stat(stat), Some(('S', 4240)));
        assert_eq!(parse_stat("12 (sleep) Z 1 7 7 0"), Some(('Z', 7)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn refuses_ids_kill_would_misread() {
        for pgid in [0, 1, u32::MAX, i32::MAX as u32 + 1] {
            assert!(!kill_group(pgid, Duration::ZERO), "{pgid}");
            assert!(!group_alive(pgid), "{pgid}");
        }
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() };
        if own > 1 {
            assert!(!kill_group(own as u32, Duration::ZERO));
            assert!(group_alive(own as u32));
        }
    }

    #[test]
    fn a_group_that_does_not_exist() {
        // pid_max is at most 2^22 on Linux, so this id names no process and no group.
        assert!(!group_alive(i32::MAX as u32));
        assert!(!kill_group(i32::MAX as u32, Duration::ZERO));
    }
}
