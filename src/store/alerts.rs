//! Alerts: open conditions, the outbox of deliveries, failure streaks, auto-disable, runner state.
//!
//! A condition (system, job, kind) is open from its firing alert until its resolved alert, so a
//! failing job produces one message per state change, not one per failure. Each alert gets one
//! delivery row per channel; the runner's delivery thread works through the pending ones.

use super::sql::{params, Connection, Row};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{fmt_time, parse_enum, parse_opt_time, parse_time, OptionalRow, Result, Store};
use crate::model::{Alert, AlertKind, AlertState, Channel, Delivery, NewAlert};

/// The runner as it last described itself.
#[derive(Debug, Clone, Serialize)]
pub struct RunnerState {
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub running: u32,
    pub queued: u32,
    pub capacity: u32,
}

const ALERT_COLUMNS: &str =
    "id, system, job_id, job, kind, state, summary, details, execution_id, created_at, resolved_at";
const DELIVERY_COLUMNS: &str =
    "id, alert_id, channel, target, state, attempts, next_attempt_at, last_error, sent_at";

fn alert_from_row(row: &Row<'_>) -> super::sql::Result<Alert> {
    let details: String = row.get(7)?;
    Ok(Alert {
        id: row.get(0)?,
        system: row.get(1)?,
        job_id: row.get(2)?,
        job: row.get(3)?,
        kind: parse_enum(&row.get::<_, String>(4)?)?,
        state: parse_enum(&row.get::<_, String>(5)?)?,
        summary: row.get(6)?,
        details: serde_json::from_str(&details).unwrap_or(serde_json::Value::Null),
        execution_id: row.get(8)?,
        created_at: parse_time(&row.get::<_, String>(9)?)?,
        resolved_at: parse_opt_time(row.get(10)?)?,
        deliveries: Vec::new(),
    })
}

fn delivery_from_row(row: &Row<'_>) -> super::sql::Result<Delivery> {
    Ok(Delivery {
        id: row.get(0)?,
        alert_id: row.get(1)?,
        channel: parse_enum(&row.get::<_, String>(2)?)?,
        target: row.get(3)?,
        state: parse_enum(&row.get::<_, String>(4)?)?,
        attempts: row.get(5)?,
        next_attempt_at: parse_opt_time(row.get(6)?)?,
        last_error: row.get(7)?,
        sent_at: parse_opt_time(row.get(8)?)?,
    })
}

fn insert_alert(
    conn: &Connection,
    a: &NewAlert,
    state: AlertState,
    now: DateTime<Utc>,
) -> Result<i64> {
    let id: i64 = conn.prepare_cached(
        "INSERT INTO alerts (system, job_id, job, kind, state, summary, details, execution_id, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
    )?
    .query_row(params![
        a.system,
        a.job_id,
        a.job,
        a.kind.as_str(),
        state.as_str(),
        a.summary,
        a.details.to_string(),
        a.execution_id,
        fmt_time(now),
    ], |r| r.get(0))?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO alert_deliveries (alert_id, channel, target, next_attempt_at) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (channel, target) in &a.targets {
        stmt.execute(params![id, channel.as_str(), target, fmt_time(now)])?;
    }
    Ok(id)
}

fn is_open(conn: &Connection, system: &str, job_id: Option<i64>, kind: AlertKind) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM alert_conditions WHERE system = ?1 AND coalesce(job_id, 0) = coalesce(?2, 0) AND kind = ?3",
        )?
        .exists(params![system, job_id, kind.as_str()])?)
}

fn open(conn: &Connection, a: &NewAlert, now: DateTime<Utc>) -> Result<Option<i64>> {
    if is_open(conn, &a.system, a.job_id, a.kind)? {
        return Ok(None);
    }
    let id = insert_alert(conn, a, AlertState::Firing, now)?;
    conn.prepare_cached(
        "INSERT INTO alert_conditions (system, job_id, kind, alert_id, opened_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![a.system, a.job_id, a.kind.as_str(), id, fmt_time(now)])?;
    Ok(Some(id))
}

impl Store {
    /// Open the condition (system, job, kind) with this alert, unless it is open already.
    /// Returns the new alert's id.
    pub fn open_alert(&self, alert: &NewAlert, now: DateTime<Utc>) -> Result<Option<i64>> {
        self.write(|conn| open(conn, alert, now))
    }

    /// Close whichever of `kinds` are open for (system, job); if any was, record one resolved
    /// alert (`resolved.kind` is replaced by the first kind that was open). Returns its id.
    pub fn resolve_alerts(
        &self,
        kinds: &[AlertKind],
        resolved: &NewAlert,
        now: DateTime<Utc>,
    ) -> Result<Option<(i64, Vec<AlertKind>)>> {
        self.write(|conn| {
            let mut closed = Vec::new();
            for kind in kinds {
                let alert_id: Option<i64> = conn
                    .prepare_cached(
                        "DELETE FROM alert_conditions WHERE system = ?1 AND coalesce(job_id, 0) = coalesce(?2, 0) \
                         AND kind = ?3 RETURNING alert_id",
                    )?
                    .query_row(params![resolved.system, resolved.job_id, kind.as_str()], |r| r.get(0))
                    .opt()?;
                if let Some(alert_id) = alert_id {
                    conn.prepare_cached("UPDATE alerts SET resolved_at = ?2 WHERE id = ?1")?
                        .execute(params![alert_id, fmt_time(now)])?;
                    closed.push(*kind);
                }
            }
            let Some(first) = closed.first().copied() else {
                return Ok(None);
            };
            let mut details = resolved.details.clone();
            if let Some(map) = details.as_object_mut() {
                map.insert(
                    "resolved".into(),
                    serde_json::json!(closed.iter().map(|k| k.as_str()).collect::<Vec<_>>()),
                );
            }
            let alert = NewAlert {
                kind: first,
                details,
                ..resolved.clone()
            };
            let id = insert_alert(conn, &alert, AlertState::Resolved, now)?;
            Ok(Some((id, closed)))
        })
    }

    /// The open conditions: (system, job id, kind).
    pub fn open_conditions(&self) -> Result<Vec<(String, Option<i64>, AlertKind)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT system, job_id, kind FROM alert_conditions ORDER BY opened_at",
        )?;
        let rows = stmt.query_map((), |r| {
            Ok((r.get(0)?, r.get(1)?, parse_enum(&r.get::<_, String>(2)?)?))
        })?;
        Ok(rows.collect::<super::sql::Result<_>>()?)
    }

    /// The kinds of the conditions open for (system, job).
    pub fn open_kinds(&self, system: &str, job_id: Option<i64>) -> Result<Vec<AlertKind>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT kind FROM alert_conditions WHERE system = ?1 AND coalesce(job_id, 0) = coalesce(?2, 0)",
        )?;
        let rows = stmt.query_map(params![system, job_id], |r| {
            parse_enum(&r.get::<_, String>(0)?)
        })?;
        Ok(rows.collect::<super::sql::Result<_>>()?)
    }

    /// The jobs with at least one open condition.
    pub fn jobs_with_open_conditions(&self) -> Result<std::collections::HashSet<i64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT job_id FROM alert_conditions WHERE job_id IS NOT NULL",
        )?;
        let rows = stmt.query_map((), |r| r.get(0))?;
        Ok(rows.collect::<super::sql::Result<_>>()?)
    }

    /// Count one more failed run of the job; returns the streak.
    pub fn bump_failure_streak(&self, job_id: i64) -> Result<u32> {
        self.write(|conn| {
            Ok(conn
                .prepare_cached(
                    "UPDATE jobs SET failure_streak = failure_streak + 1 WHERE id = ?1 RETURNING failure_streak",
                )?
                .query_row([job_id], |r| r.get(0))
                .opt()?
                .unwrap_or(0))
        })
    }

    /// Disable the job with a reason and, in the same transaction, open its `disabled` alert.
    pub fn auto_disable(
        &self,
        job_id: i64,
        reason: &str,
        alert: &NewAlert,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>> {
        self.write(|conn| {
            let before = super::jobs::job_by_id(conn, job_id)?;
            conn.prepare_cached(
                "UPDATE jobs SET is_active = 0, disabled_reason = ?2, next_run_at = NULL, updated_at = ?3 \
                 WHERE id = ?1",
            )?
            .execute(params![job_id, reason, fmt_time(now)])?;
            let after = super::jobs::job_by_id(conn, job_id)?;
            let runner = super::Actor::runner();
            let by = super::By {
                actor: &runner,
                action: "auto-disable",
            };
            super::audit::job_change(conn, by, before.as_ref(), after.as_ref(), now)?;
            open(conn, alert, now)
        })
    }

    /// Alerts, newest first, with their deliveries. `active`: only those whose condition is open.
    pub fn alerts(&self, system: Option<&str>, active: bool, limit: usize) -> Result<Vec<Alert>> {
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE (CAST(?1 AS TEXT) IS NULL OR system = ?1) {} ORDER BY id DESC LIMIT ?2",
            if active {
                "AND id IN (SELECT alert_id FROM alert_conditions)"
            } else {
                ""
            }
        );
        let mut alerts: Vec<Alert> = {
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![system, limit as i64], alert_from_row)?;
            rows.collect::<super::sql::Result<_>>()?
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE alert_id = ?1 ORDER BY id"
        ))?;
        for a in &mut alerts {
            let rows = stmt.query_map([a.id], delivery_from_row)?;
            a.deliveries = rows.collect::<super::sql::Result<_>>()?;
        }
        Ok(alerts)
    }

    pub fn alert(&self, id: i64) -> Result<Option<Alert>> {
        self.conn
            .prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"))?
            .query_row([id], alert_from_row)
            .opt()
    }

    /// How many conditions are open (optionally in one system).
    pub fn active_alert_count(&self, system: Option<&str>) -> Result<u64> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM alert_conditions WHERE CAST(?1 AS TEXT) IS NULL OR system = ?1",
            [system],
            |r| r.get(0),
        )?)
    }

    /// Pending deliveries due by `now`, oldest first.
    pub fn due_deliveries(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Delivery>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries \
             WHERE state = 'pending' AND coalesce(next_attempt_at, '') <= ?1 ORDER BY id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![fmt_time(now), limit as i64], delivery_from_row)?;
        Ok(rows.collect::<super::sql::Result<_>>()?)
    }

    /// When the next pending delivery is due.
    pub fn next_delivery_at(&self) -> Result<Option<DateTime<Utc>>> {
        let t: Option<String> = self.conn.query_row(
            "SELECT min(coalesce(next_attempt_at, '')) FROM alert_deliveries WHERE state = 'pending'",
            (),
            |r| r.get(0),
        )?;
        Ok(match t.as_deref() {
            None => None,
            Some("") => Some(DateTime::<Utc>::UNIX_EPOCH),
            Some(t) => Some(parse_time(t)?),
        })
    }

    /// Record one attempt: sent, or failed with an error and either a next try or giving up.
    pub fn record_attempt(
        &self,
        id: i64,
        result: std::result::Result<(), &str>,
        next_attempt_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.write(|conn| {
            match result {
                Ok(()) => conn
                    .prepare_cached(
                        "UPDATE alert_deliveries SET state = 'sent', attempts = attempts + 1, sent_at = ?2, \
                         next_attempt_at = NULL, last_error = NULL WHERE id = ?1",
                    )?
                    .execute(params![id, fmt_time(now)])?,
                Err(error) => conn
                    .prepare_cached(
                        "UPDATE alert_deliveries SET state = ?2, attempts = attempts + 1, last_error = ?3, \
                         next_attempt_at = ?4 WHERE id = ?1",
                    )?
                    .execute(params![
                        id,
                        if next_attempt_at.is_some() { "pending" } else { "failed" },
                        error,
                        next_attempt_at.map(fmt_time)
                    ])?,
            };
            Ok(())
        })
    }

    /// Put a delivery off (rate limit) without counting an attempt.
    pub fn defer_delivery(&self, id: i64, until: DateTime<Utc>) -> Result<()> {
        self.write(|conn| {
            conn.prepare_cached("UPDATE alert_deliveries SET next_attempt_at = ?2 WHERE id = ?1")?
                .execute(params![id, fmt_time(until)])?;
            Ok(())
        })
    }

    /// When the system's deliveries on a channel were sent since `since` (for the rate limit).
    pub fn sent_since(
        &self,
        system: &str,
        channel: Channel,
        since: DateTime<Utc>,
    ) -> Result<Vec<DateTime<Utc>>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.sent_at FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id \
             WHERE d.channel = ?1 AND d.sent_at >= ?2 AND a.system = ?3 ORDER BY d.sent_at",
        )?;
        let rows = stmt.query_map(params![channel.as_str(), fmt_time(since), system], |r| {
            parse_time(&r.get::<_, String>(0)?)
        })?;
        Ok(rows.collect::<super::sql::Result<_>>()?)
    }

    /// The runner says who it is and how busy it is.
    pub fn put_runner_state(&self, state: &RunnerState) -> Result<()> {
        self.write(|conn| {
            conn.prepare_cached(
                "INSERT INTO runner_state (id, pid, started_at, updated_at, running, queued, capacity) \
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO UPDATE SET pid = ?1, \
                 started_at = ?2, updated_at = ?3, running = ?4, queued = ?5, capacity = ?6",
            )?
            .execute(params![
                state.pid,
                fmt_time(state.started_at),
                fmt_time(state.updated_at),
                state.running,
                state.queued,
                state.capacity
            ])?;
            Ok(())
        })
    }

    pub fn runner_state(&self) -> Result<Option<RunnerState>> {
        self.conn
            .prepare_cached(
                "SELECT pid, started_at, updated_at, running, queued, capacity FROM runner_state WHERE id = 1",
            )?
            .query_row((), |r| {
                Ok(RunnerState {
                    pid: r.get(0)?,
                    started_at: parse_time(&r.get::<_, String>(1)?)?,
                    updated_at: parse_time(&r.get::<_, String>(2)?)?,
                    running: r.get(3)?,
                    queued: r.get(4)?,
                    capacity: r.get(5)?,
                })
            })
            .opt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Finish, Job, NewExecution, Status, Trigger};
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
    }

    fn alert(job: &Job, kind: AlertKind) -> NewAlert {
        NewAlert {
            system: job.system.clone(),
            job_id: Some(job.id),
            job: Some(job.name.clone()),
            kind,
            summary: format!("{kind}"),
            details: serde_json::json!({}),
            execution_id: None,
            targets: vec![(Channel::Webhook, "https://example.invalid/hook".into())],
        }
    }

    #[test]
    fn a_condition_opens_once_and_resolves_once() {
        let store = Store::open_in_memory().unwrap();
        let job = store
            .insert_job(
                &Job::new("s", "j", "* * * * *", "shell"),
                t0(),
                crate::store::test_by(),
            )
            .unwrap();
        assert!(store
            .open_alert(&alert(&job, AlertKind::Failed), t0())
            .unwrap()
            .is_some());
        assert!(store
            .open_alert(&alert(&job, AlertKind::Failed), t0())
            .unwrap()
            .is_none());
        assert!(store
            .open_alert(&alert(&job, AlertKind::Escalated), t0())
            .unwrap()
            .is_some());
        assert_eq!(store.active_alert_count(None).unwrap(), 2);
        let (_, closed) = store
            .resolve_alerts(
                &[AlertKind::Failed, AlertKind::Timeout, AlertKind::Escalated],
                &alert(&job, AlertKind::Failed),
                t0(),
            )
            .unwrap()
            .unwrap();
        assert_eq!(closed, vec![AlertKind::Failed, AlertKind::Escalated]);
        assert!(store
            .resolve_alerts(&[AlertKind::Failed], &alert(&job, AlertKind::Failed), t0())
            .unwrap()
            .is_none());
        let all = store.alerts(None, false, 10).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].state, AlertState::Resolved);
        assert_eq!(all[0].deliveries.len(), 1);
        assert!(store.alerts(None, true, 10).unwrap().is_empty());
        // Host conditions (no job) are keyed too.
        let mut cpu = alert(&job, AlertKind::Cpu);
        cpu.job_id = None;
        assert!(store.open_alert(&cpu, t0()).unwrap().is_some());
        assert!(store.open_alert(&cpu, t0()).unwrap().is_none());
    }

    #[test]
    fn deliveries_move_through_their_states_and_targets_serialize_redacted() {
        let store = Store::open_in_memory().unwrap();
        let job = store
            .insert_job(
                &Job::new("s", "j", "* * * * *", "shell"),
                t0(),
                crate::store::test_by(),
            )
            .unwrap();
        store
            .open_alert(&alert(&job, AlertKind::Failed), t0())
            .unwrap();
        let due = store.due_deliveries(t0(), 10).unwrap();
        assert_eq!(due.len(), 1);
        let later = t0() + chrono::Duration::seconds(5);
        store
            .record_attempt(due[0].id, Err("refused"), Some(later), t0())
            .unwrap();
        assert!(store.due_deliveries(t0(), 10).unwrap().is_empty());
        assert_eq!(store.next_delivery_at().unwrap(), Some(later));
        store
            .record_attempt(due[0].id, Ok(()), None, later)
            .unwrap();
        assert_eq!(store.next_delivery_at().unwrap(), None);
        assert_eq!(
            store.sent_since("s", Channel::Webhook, t0()).unwrap(),
            vec![later]
        );
        let a = &store.alerts(None, false, 1).unwrap()[0];
        assert_eq!(a.deliveries[0].attempts, 2);
        let json = serde_json::to_string(a).unwrap();
        assert!(!json.contains("/hook"), "{json}");
    }

    #[test]
    fn success_resets_the_streak_and_enable_does_too() {
        let store = Store::open_in_memory().unwrap();
        let job = store
            .insert_job(
                &Job::new("s", "j", "* * * * *", "shell"),
                t0(),
                crate::store::test_by(),
            )
            .unwrap();
        assert_eq!(store.bump_failure_streak(job.id).unwrap(), 1);
        assert_eq!(store.bump_failure_streak(job.id).unwrap(), 2);
        let id = store
            .claim(&NewExecution {
                job_id: job.id,
                status: Status::Running,
                scheduled_for: t0(),
                started_at: Some(t0()),
                triggered_by: Trigger::Schedule,
                attempt: 1,
                error_message: None,
                runner_pid: None,
                runner_id: None,
                fleet: None,
                caused_by: None,
            })
            .unwrap()
            .unwrap();
        store
            .finish(
                id,
                &Finish {
                    status: Status::Success,
                    finished_at: t0(),
                    duration_ms: 5,
                    output: String::new(),
                    error_message: None,
                    exit_code: Some(0),
                    memory_used_mb: None,
                    cpu_used_percent: None,
                    memory_upper_bound: None,
                    cpu_quota_enforced: None,
                },
            )
            .unwrap();
        let j = store.job("s", "j").unwrap();
        assert_eq!(j.failure_streak, 0);
        assert_eq!(j.last_success_at, Some(t0()));
        store.bump_failure_streak(job.id).unwrap();
        store
            .auto_disable(
                job.id,
                "3 failures",
                &alert(&job, AlertKind::Disabled),
                t0(),
            )
            .unwrap();
        let mut j = store.job("s", "j").unwrap();
        assert!(!j.is_active);
        assert_eq!(j.disabled_reason.as_deref(), Some("3 failures"));
        // The runner's own change is in the audit log, in the same transaction.
        let audit = store.audit(&Default::default()).unwrap();
        assert_eq!(audit[0].action, "auto-disable");
        assert_eq!(audit[0].user, "cronmgr runner");
        assert_eq!(audit[0].diff["is_active"]["after"], false);
        j.is_active = true;
        j.disabled_reason = None;
        let j = store.update_job(&j, t0(), crate::store::test_by()).unwrap();
        assert_eq!(j.failure_streak, 0);
        assert_eq!(j.enabled_at, Some(t0()));
    }
}
