//! The runners sharing a database: registration, heartbeats, and declaring a silent one lost.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::sql::{params, Connection, Row};
use super::{fmt_time, parse_opt_time, parse_time, Backend, Execution, Result, Store};

/// A runner as it registers itself.
#[derive(Debug, Clone)]
pub struct NewRunner {
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub labels: Vec<String>,
    pub max_concurrent: Option<u32>,
    /// Seconds without a heartbeat after which the others declare it lost.
    pub lease: u64,
}

/// A row of `runners`, with how many executions it is running now.
#[derive(Debug, Clone, Serialize)]
pub struct Runner {
    pub id: i64,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub labels: Vec<String>,
    pub max_concurrent: Option<u32>,
    pub lease: u64,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
    pub lost_at: Option<DateTime<Utc>>,
    pub running: u64,
}

impl Runner {
    /// up, stopped, lost, or silent (past its lease, not yet declared lost by another runner).
    pub fn state(&self, now: DateTime<Utc>) -> &'static str {
        if self.stopped_at.is_some() {
            "stopped"
        } else if self.lost_at.is_some() {
            "lost"
        } else if self.past_lease(now) {
            "silent"
        } else {
            "up"
        }
    }

    fn past_lease(&self, now: DateTime<Utc>) -> bool {
        // A lease past chrono's range (a row written behind cronmgr's back) never runs out.
        let lease = i64::try_from(self.lease)
            .ok()
            .and_then(chrono::Duration::try_seconds);
        lease.is_some_and(|lease| now - self.heartbeat_at > lease)
    }
}

const COLUMNS: &str = "r.id, r.host, r.pid, r.version, r.labels, r.max_concurrent, r.lease, \
     r.started_at, r.heartbeat_at, r.stopped_at, r.lost_at, \
     (SELECT count(*) FROM executions e WHERE e.runner_id = r.id AND e.status = 'running')";

fn from_row(row: &Row<'_>) -> super::sql::Result<Runner> {
    Ok(Runner {
        id: row.get(0)?,
        host: row.get(1)?,
        pid: row.get(2)?,
        version: row.get(3)?,
        labels: serde_json::from_str(&row.get::<_, String>(4)?)
            .map_err(|e| super::sql::Error::conversion(4, e))?,
        max_concurrent: row.get(5)?,
        lease: row.get(6)?,
        started_at: parse_time(&row.get::<_, String>(7)?)?,
        heartbeat_at: parse_time(&row.get::<_, String>(8)?)?,
        stopped_at: parse_opt_time(row.get(9)?)?,
        lost_at: parse_opt_time(row.get(10)?)?,
        running: row.get(11)?,
    })
}

/// The database's own clock on PostgreSQL (one clock for every host's heartbeats and lease
/// checks, whatever their clocks say); `now` on SQLite, where every runner shares the host's.
fn db_now(conn: &Connection, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    Ok(match conn.backend() {
        Backend::Sqlite => now,
        Backend::Postgres => {
            let text: String = conn.query_row(
                "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', \
                 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
                (),
                |r| r.get(0),
            )?;
            parse_time(&text)?
        }
    })
}

/// The fleet as the database sees it: its clock, and the runners that have neither stopped nor
/// been declared lost (up, or silent past their lease), newest first.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The database's clock (PostgreSQL) when it was read, for heartbeat ages that do not
    /// depend on the clock of the host asking.
    pub now: DateTime<Utc>,
    pub runners: Vec<Runner>,
}

impl Fleet {
    /// Runners whose heartbeat is within their lease.
    pub fn up(&self) -> impl Iterator<Item = &Runner> {
        self.runners.iter().filter(|r| r.state(self.now) == "up")
    }

    /// How long ago a runner last heartbeat, in seconds (never negative).
    pub fn heartbeat_age(&self, r: &Runner) -> f64 {
        ((self.now - r.heartbeat_at).num_milliseconds().max(0) as f64) / 1000.0
    }
}

impl Store {
    /// The fleet now (see [`Fleet`]); `now` is the clock on SQLite, where there is one host.
    pub fn fleet(&self, now: DateTime<Utc>) -> Result<Fleet> {
        let now = db_now(&self.conn, now)?;
        Ok(Fleet {
            now,
            runners: self.runners(false)?,
        })
    }

    /// Register a starting runner; its id.
    pub fn register_runner(&self, r: &NewRunner, now: DateTime<Utc>) -> Result<i64> {
        self.write_unlocked(|conn| {
            let at = fmt_time(db_now(conn, now)?);
            Ok(conn.query_row(
                "INSERT INTO runners (host, pid, version, labels, max_concurrent, lease, started_at, heartbeat_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING id",
                params![
                    r.host,
                    r.pid,
                    r.version,
                    serde_json::to_string(&r.labels).expect("strings serialize"),
                    r.max_concurrent,
                    r.lease as i64,
                    at
                ],
                |row| row.get(0),
            )?)
        })
    }

    /// The runner is alive. False when another runner had declared it lost meanwhile (its
    /// executions were interrupted): it is taken back into the fleet.
    ///
    /// No writers' lock: the runner's own row, locked (PostgreSQL) for the read and the update,
    /// so a reaper's conditioned update ([`Store::reap_lost_runners`]) and this one serialise on
    /// that row alone.
    pub fn heartbeat(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        self.write_unlocked(|conn| {
            let at = fmt_time(db_now(conn, now)?);
            let read = match conn.backend() {
                Backend::Sqlite => "SELECT lost_at FROM runners WHERE id = ?1",
                Backend::Postgres => "SELECT lost_at FROM runners WHERE id = ?1 FOR UPDATE",
            };
            let lost: Option<String> = conn.query_row(read, [id], |r| r.get(0))?;
            conn.execute(
                "UPDATE runners SET heartbeat_at = ?2, lost_at = NULL WHERE id = ?1",
                params![id, at],
            )?;
            Ok(lost.is_none())
        })
    }

    /// The runner stopped cleanly.
    pub fn runner_stopped(&self, id: i64, now: DateTime<Utc>) -> Result<()> {
        self.write_unlocked(|conn| {
            let at = fmt_time(db_now(conn, now)?);
            conn.execute(
                "UPDATE runners SET stopped_at = ?2, heartbeat_at = ?2 WHERE id = ?1",
                params![id, at],
            )?;
            Ok(())
        })
    }

    /// Declare lost every other runner silent for longer than its lease, and mark its running
    /// executions interrupted, in one transaction (exactly one survivor does it: see below). Returns
    /// the lost runners with the executions it interrupted, for the caller to apply each job's
    /// retry policy.
    pub fn reap_lost_runners(
        &self,
        me: i64,
        now: DateTime<Utc>,
    ) -> Result<Vec<(Runner, Vec<Execution>)>> {
        // A cheap read first: the write lock only when someone is past their lease.
        let at = db_now(&self.conn, now)?;
        let late = self
            .runners(false)?
            .iter()
            .any(|r| r.id != me && r.past_lease(at));
        if !late {
            return Ok(Vec::new());
        }
        // No writers' lock: the update that declares a runner lost is conditioned on the
        // heartbeat it read and locks that runner's row, so of two reapers one declares it and
        // the other finds it declared; a claim of that runner holds the same row `FOR SHARE`
        // (see `Fence`), so its claim lands before (and is interrupted here) or is refused.
        self.write_unlocked(|conn| {
            let at = db_now(conn, now)?;
            let candidates: Vec<Runner> = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM runners r \
                     WHERE r.stopped_at IS NULL AND r.lost_at IS NULL AND r.id != ?1"
                ))?
                .query_map([me], from_row)?
                .collect::<super::sql::Result<_>>()?;
            let mut lost = Vec::new();
            for runner in candidates {
                if !runner.past_lease(at) {
                    continue;
                }
                // Conditioned on the heartbeat read: one that landed since (heartbeats take no
                // writers' lock) keeps the runner in the fleet.
                let declared = conn.execute(
                    "UPDATE runners SET lost_at = ?2 \
                     WHERE id = ?1 AND heartbeat_at = ?3 AND lost_at IS NULL",
                    params![runner.id, fmt_time(at), fmt_time(runner.heartbeat_at)],
                )?;
                if declared == 0 {
                    continue;
                }
                let ids: Vec<i64> = conn
                    .prepare_cached(
                        "SELECT id FROM executions WHERE runner_id = ?1 AND status = 'running' ORDER BY id",
                    )?
                    .query_map([runner.id], |r| r.get(0))?
                    .collect::<super::sql::Result<_>>()?;
                let why = format!(
                    "interrupted: runner {} (pid {}) stopped heartbeating for more than its {} s lease",
                    runner.host, runner.pid, runner.lease
                );
                let mut interrupted = Vec::new();
                for id in ids {
                    super::executions::interrupt_in(conn, id, at, &why)?;
                    interrupted.push(super::executions::execution_in(conn, id)?);
                }
                lost.push((runner, interrupted));
            }
            Ok(lost)
        })
    }

    /// Runners, newest first: those up (or silent) and, with `all`, stopped and lost ones too.
    pub fn runners(&self, all: bool) -> Result<Vec<Runner>> {
        let filter = if all {
            ""
        } else {
            "WHERE r.stopped_at IS NULL AND r.lost_at IS NULL"
        };
        Ok(self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM runners r {filter} ORDER BY r.id DESC"
            ))?
            .query_map((), from_row)?
            .collect::<super::sql::Result<_>>()?)
    }

    /// Executions marked `interrupted` whose runner ran on `host`, never stopped cleanly and is
    /// not `me`: those whose runner died (kill -9, a crash) and were marked ended by others (the
    /// fleet's reaping) or by an earlier start, while processes they started may live on.
    /// Each with the pid of the runner that ran it, for the caller to check it is dead.
    pub fn interrupted_on_host(&self, host: &str, me: i64) -> Result<Vec<(Execution, u32)>> {
        let rows: Vec<(i64, u32)> = self
            .conn
            .prepare_cached(
                "SELECT e.id, r.pid FROM executions e JOIN runners r ON r.id = e.runner_id \
                 WHERE e.status = 'interrupted' AND e.pid IS NOT NULL AND r.host = ?1 \
                 AND r.id != ?2 AND r.stopped_at IS NULL ORDER BY e.id",
            )?
            .query_map(params![host, me], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<super::sql::Result<_>>()?;
        rows.into_iter()
            .map(|(id, pid)| Ok((super::executions::execution_in(&self.conn, id)?, pid)))
            .collect()
    }

    /// The runner that owns execution `id`, if any.
    pub fn runner_of(&self, execution: i64) -> Result<Option<Runner>> {
        use super::OptionalRow;
        self.conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM runners r JOIN executions x ON x.runner_id = r.id WHERE x.id = ?1"
            ))?
            .query_row([execution], from_row)
            .opt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Job, NewExecution, Status, Trigger};
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
    }

    #[test]
    fn a_lease_past_chronos_range_never_runs_out() {
        let now = t0();
        let r = Runner {
            id: 1,
            host: "h".into(),
            pid: 1,
            version: "v".into(),
            labels: Vec::new(),
            max_concurrent: None,
            lease: u64::MAX,
            started_at: now,
            heartbeat_at: now,
            stopped_at: None,
            lost_at: None,
            running: 0,
        };
        assert_eq!(r.state(now + chrono::Duration::days(3650)), "up");
        let r = Runner { lease: 5, ..r };
        assert_eq!(r.state(now + chrono::Duration::seconds(6)), "silent");
    }

    fn runner(host: &str, lease: u64) -> NewRunner {
        NewRunner {
            host: host.into(),
            pid: 42,
            version: "test".into(),
            labels: vec!["db-host".into()],
            max_concurrent: Some(4),
            lease,
        }
    }

    /// A heartbeat is a row update conditioned on the runner's row, not a write under the
    /// writers' lock: a member stalled holding that lock cannot make the others miss theirs.
    #[test]
    fn a_heartbeat_does_not_wait_for_the_writers_lock() {
        let store = Store::open_in_memory().unwrap();
        if store.backend() != Backend::Postgres {
            eprintln!("skipped: a_heartbeat_does_not_wait_for_the_writers_lock: PostgreSQL only (CRONMGR_TEST_STORE_POSTGRES)");
            return;
        }
        store
            .set_lock_wait(std::time::Duration::from_millis(300))
            .unwrap();
        let me = store.register_runner(&runner("a", 30), t0()).unwrap();
        let holder = store.reopen().unwrap();
        holder
            .connection()
            .execute_batch(&crate::store::write_prologue())
            .unwrap();
        assert!(store.heartbeat(me, t0()).unwrap());
        holder.connection().execute_batch("ROLLBACK").unwrap();
    }

    #[test]
    fn a_silent_runner_is_declared_lost_once_and_its_executions_interrupted() {
        let store = Store::open_in_memory().unwrap();
        let job = store
            .insert_job(
                &Job::new("default", "j", "* * * * *", "shell"),
                t0(),
                crate::store::test_by(),
            )
            .unwrap();
        let a = store.register_runner(&runner("a", 1), t0()).unwrap();
        let b = store.register_runner(&runner("b", 30), t0()).unwrap();
        let id = store
            .claim(&NewExecution {
                job_id: job.id,
                status: Status::Running,
                scheduled_for: t0(),
                started_at: Some(t0()),
                triggered_by: Trigger::Schedule,
                attempt: 1,
                error_message: None,
                runner_pid: Some(42),
                runner_id: Some(a),
                fleet: None,
                caused_by: None,
            })
            .unwrap()
            .unwrap();
        assert_eq!(store.runners(false).unwrap().len(), 2);
        assert_eq!(store.runner_of(id).unwrap().unwrap().host, "a");
        // Within the lease (PostgreSQL reads its own clock: wait it out there).
        if store.backend() == Backend::Postgres {
            std::thread::sleep(std::time::Duration::from_millis(2100));
        }
        let later = t0() + chrono::Duration::seconds(5);
        let lost = store.reap_lost_runners(b, later).unwrap();
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].0.id, a);
        assert_eq!(lost[0].1.len(), 1);
        assert_eq!(lost[0].1[0].status, Status::Interrupted);
        assert!(lost[0].1[0]
            .error_message
            .as_deref()
            .unwrap()
            .contains("lease"));
        // Nobody declares it lost twice.
        assert!(store.reap_lost_runners(b, later).unwrap().is_empty());
        assert_eq!(store.runners(false).unwrap().len(), 1);
        let all = store.runners(true).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].state(later), "lost");
        // A lost runner that heartbeats again learns it was declared lost, and is back.
        assert!(!store.heartbeat(a, later).unwrap());
        assert!(store.heartbeat(a, later).unwrap());
        store.runner_stopped(a, later).unwrap();
        assert_eq!(store.runners(true).unwrap()[1].state(later), "stopped");
    }
}
