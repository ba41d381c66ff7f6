//! Is a stored pid still the process it was? A pid is reused once its process is gone, so a
//! recorded process group is signalled only when its leader's start time matches the
//! execution's (start-up recovery, `cronmgr kill`).

use chrono::{DateTime, Utc};

use crate::host::process_start;

/// A leader whose start is this close to the execution's start is the execution's.
const START_SKEW_SECS: i64 = 10;

/// May the process group `pgid` be the one spawned for an execution that started at
/// `started_at`? Its leader must have started then (within a few seconds); with the leader gone
/// the group, if any is left, is still the execution's (Linux does not hand out a pid while a
/// group of that id lives). Without a start time nothing can be matched: no.
pub fn group_is_executions(pgid: u32, started_at: Option<DateTime<Utc>>) -> bool {
    match (process_start(pgid), started_at) {
        (Some(started), Some(at)) => (started - at).num_seconds().abs() <= START_SKEW_SECS,
        (None, _) => true,
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_start_matches_now_for_a_fresh_child() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let started = process_start(child.id()).expect("start time");
        let skew = (Utc::now() - started).num_seconds().abs();
        assert!(group_is_executions(child.id(), Some(Utc::now())));
        assert!(!group_is_executions(
            child.id(),
            Some(Utc::now() - chrono::Duration::hours(1))
        ));
        assert!(!group_is_executions(child.id(), None));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(skew <= 2, "start time off by {skew} s");
        assert!(process_start(u32::MAX - 1).is_none());
        assert!(group_is_executions(u32::MAX - 1, None));
    }
}
