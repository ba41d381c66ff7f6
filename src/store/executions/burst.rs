//! A fleet runner's claims of one loop turn in one statement (PostgreSQL): the overlap and cap
//! checks, the inserts and the jobs' last/next runs for every slot the turn picked, instead of
//! a round trip per slot. The same rules as one claim ([`super::claims`]), under the same locks
//! ([`super::Fence`], taken first).

use chrono::{DateTime, Utc};

use super::claims::{claim, Batch, RUNNING};
use super::NewExecution;
use crate::store::sql::params;
use crate::store::{fmt_time, Backend, Result, Status, StoreError};

/// Slots per statement: a bound on one statement's size (its JSON parameter).
const CHUNK: usize = 1000;

/// What one claim of a turn came to.
pub type Claimed = Result<Option<i64>>;

impl Batch<'_> {
    /// Claim at most `want` of `slots` (each with the job's next run to record), in order, as
    /// [`Batch::claim_run`] would one by one. A slot past the first `want` is a spare: it takes
    /// the place of one before it that another runner has, so a runner of a fleet fills its free
    /// places in one turn even while the others take half of what it asks for.
    ///
    /// One result per slot considered, in order: Some(id) to run it, None when another runner has
    /// it (or it is still running elsewhere: then a `skipped` row says so), Err(FleetFull) when
    /// the system is at its fleet-wide cap. The slots considered are a prefix: those up to the
    /// `want`-th claimed (all of them when fewer could be); the rest were not tried and wait.
    /// Where a slot's claim is not a fleet claim on PostgreSQL, each is claimed on its own.
    pub fn claim_runs(
        &self,
        slots: &[(NewExecution, Option<DateTime<Utc>>)],
        want: usize,
    ) -> Result<Vec<Claimed>> {
        let together = self.conn().backend() == Backend::Postgres
            && slots
                .iter()
                .all(|(n, _)| n.fleet.is_some() && n.status == Status::Running);
        let mut out = Vec::with_capacity(slots.len());
        let mut left = want;
        if !together {
            for (new, next) in slots {
                if left == 0 {
                    break;
                }
                let claimed = self.claim_run(new, *next)?;
                left -= usize::from(claimed.is_some());
                out.push(Ok(claimed));
            }
            return Ok(out);
        }
        // A transaction that took its locks up front (the recorder's, for the turn's claims and
        // ends) does not take them again: that was a second round trip inside the cap lock.
        if !self.fenced.get() {
            self.fence(&super::Fence::for_claims(slots.iter().map(|(n, _)| n)))?;
        }
        for chunk in slots.chunks(CHUNK) {
            if left == 0 {
                break;
            }
            let got = self.claim_chunk(chunk, left)?;
            let considered = got.len();
            left -= got.iter().filter(|c| matches!(c, Ok(Some(_)))).count();
            out.extend(got);
            if considered < chunk.len() {
                break;
            }
        }
        Ok(out)
    }

    fn claim_chunk(
        &self,
        slots: &[(NewExecution, Option<DateTime<Utc>>)],
        want: usize,
    ) -> Result<Vec<Claimed>> {
        // The turn's slots go as one JSON parameter, so the statement's text is the same
        // whatever their number: the server plans it once per session, not once per batch
        // size (planning took 0.27 ms of each claim, inside the cap lock).
        let rows: Vec<serde_json::Value> = slots
            .iter()
            .enumerate()
            .map(|(ord, (new, next))| {
                let rules = new.fleet.as_ref().expect("fleet claims only");
                let (system, cap) = match &rules.cap {
                    Some((system, cap)) => (system.as_str(), i64::from(*cap)),
                    None => ("", -1),
                };
                serde_json::json!({
                    "ord": ord,
                    "job_id": new.job_id,
                    "status": new.status.as_str(),
                    "scheduled_for": fmt_time(new.scheduled_for),
                    "started_at": new.started_at.map(fmt_time),
                    "triggered_by": new.triggered_by.as_str(),
                    "attempt": new.attempt,
                    "error_message": new.error_message,
                    "runner_pid": new.runner_pid,
                    "runner_id": new.runner_id,
                    "caused_by": new.caused_by,
                    "exclusive": i64::from(rules.exclusive),
                    "system": system,
                    "cap": cap,
                    "set_run": 1,
                    "next_run_at": next.map(fmt_time),
                })
            })
            .collect();
        // `eligible`: nothing runs the job that forbids overlap, the chain's cause ended as one
        // that fires, and no runner has the slot yet. `rank_n`: the slot's place among its
        // system's eligible slots of the turn; with the system's running count it keeps the cap.
        // (The fence's locks make the reads current; a slot another runner inserts meanwhile
        // is caught by ON CONFLICT and only makes the turn take one fewer under the cap.)
        // `OFFSET 0` keeps each EXISTS a probe of an index per slot: the planner takes the JSON
        // for 100 rows and would otherwise hash the whole `executions` table once per claim
        // (a sequential scan: 3 ms at 3,000 rows, growing with the table).
        let sql = format!(
            "WITH v AS (SELECT * FROM json_to_recordset(CAST(CAST(?1 AS TEXT) AS JSON)) AS v ( \
                 ord INTEGER, job_id BIGINT, status TEXT, scheduled_for TEXT, started_at TEXT, \
                 triggered_by TEXT, attempt INTEGER, error_message TEXT, runner_pid BIGINT, \
                 runner_id BIGINT, caused_by BIGINT, exclusive INTEGER, system TEXT, cap BIGINT, \
                 set_run INTEGER, next_run_at TEXT)), \
             busy AS ( \
                 SELECT DISTINCT ON (e.job_id) e.job_id, e.id, r.host FROM executions e \
                 LEFT JOIN runners r ON r.id = e.runner_id \
                 WHERE e.status = 'running' AND e.job_id IN (SELECT job_id FROM v WHERE exclusive = 1) \
                 ORDER BY e.job_id, e.id), \
             load AS ( \
                 SELECT j.system, count(*) AS n FROM ({RUNNING}) e JOIN jobs j ON j.id = e.job_id \
                 WHERE j.system IN (SELECT system FROM v WHERE cap >= 0) \
                 GROUP BY j.system), \
             c0 AS ( \
                 SELECT v.*, b.id AS busy_id, b.host AS busy_host, coalesce(l.n, 0) AS load_n, \
                     (b.id IS NULL AND (v.caused_by IS NULL OR EXISTS (SELECT 1 FROM executions p \
                         WHERE p.id = v.caused_by AND p.status IN ('success', 'failed', 'timeout') \
                         OFFSET 0)) \
                      AND NOT EXISTS (SELECT 1 FROM executions x WHERE x.job_id = v.job_id \
                         AND x.scheduled_for = v.scheduled_for AND x.attempt = v.attempt OFFSET 0)) \
                         AS eligible \
                 FROM v LEFT JOIN busy b ON v.exclusive = 1 AND b.job_id = v.job_id \
                 LEFT JOIN load l ON l.system = v.system), \
             c1 AS ( \
                 SELECT c0.*, sum(CASE WHEN eligible THEN 1 ELSE 0 END) \
                     OVER (PARTITION BY system ORDER BY ord) AS rank_n FROM c0), \
             c2 AS ( \
                 SELECT c1.*, (eligible AND (cap < 0 OR load_n + rank_n <= cap)) AS fits FROM c1), \
             c AS ( \
                 SELECT c2.*, sum(CASE WHEN fits THEN 1 ELSE 0 END) OVER (ORDER BY ord) AS take_n \
                 FROM c2), \
             ins AS ( \
                 INSERT INTO executions (job_id, status, scheduled_for, started_at, triggered_by, \
                     attempt, error_message, runner_pid, runner_id, caused_by) \
                 SELECT job_id, status, scheduled_for, started_at, triggered_by, attempt, \
                     error_message, runner_pid, runner_id, caused_by \
                 FROM c WHERE fits AND take_n <= CAST(?2 AS BIGINT) ORDER BY ord \
                 ON CONFLICT DO NOTHING RETURNING id, job_id, scheduled_for, attempt), \
             runs AS ( \
                 SELECT DISTINCT ON (c.job_id) c.job_id, c.started_at, c.next_run_at FROM c \
                 JOIN ins i ON i.job_id = c.job_id AND i.scheduled_for = c.scheduled_for \
                     AND i.attempt = c.attempt \
                 WHERE c.set_run = 1 ORDER BY c.job_id, c.ord DESC), \
             upd AS ( \
                 UPDATE jobs j SET last_run_at = coalesce(runs.started_at, j.last_run_at), \
                     next_run_at = runs.next_run_at \
                 FROM runs WHERE j.id = runs.job_id RETURNING j.id) \
             SELECT c.ord, i.id, c.busy_id, c.busy_host, \
                 CASE WHEN c.eligible AND c.cap >= 0 AND c.load_n + c.rank_n > c.cap THEN 1 ELSE 0 END \
             FROM c LEFT JOIN ins i ON i.job_id = c.job_id AND i.scheduled_for = c.scheduled_for \
                 AND i.attempt = c.attempt \
             WHERE c.take_n - CASE WHEN c.fits THEN 1 ELSE 0 END < CAST(?2 AS BIGINT) \
             ORDER BY c.ord"
        );
        type Out = (i64, Option<i64>, Option<i64>, Option<String>, i64);
        let answers: Vec<Out> = self
            .conn()
            .prepare_cached(&sql)?
            .query_map(
                params![serde_json::Value::from(rows).to_string(), want as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?
            .collect::<crate::store::sql::Result<_>>()?;
        let mut out = Vec::with_capacity(slots.len());
        for ((new, _), (_, id, busy, host, full)) in slots.iter().zip(answers) {
            if id.is_some() {
                out.push(Ok(id));
                continue;
            }
            if let Some(other) = busy {
                let mut skipped = new.clone();
                skipped.status = Status::Skipped;
                skipped.fleet = None;
                skipped.error_message = Some(super::claims::still_going(other, host));
                claim(self.conn(), &skipped)?;
                out.push(Ok(None));
                continue;
            }
            if full == 1 {
                let (system, cap) = new
                    .fleet
                    .as_ref()
                    .and_then(|r| r.cap.clone())
                    .expect("a slot over the cap has a cap");
                out.push(Err(StoreError::FleetFull { system, cap }));
                continue;
            }
            out.push(Ok(None)); // another runner has the slot
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::FleetRules;
    use crate::store::{Job, Status, StoreError};
    use chrono::Duration;

    fn fleet(job: &Job, minute: i64, exclusive: bool, cap: u32) -> super::NewExecution {
        super::NewExecution {
            fleet: Some(FleetRules {
                exclusive,
                cap: Some(("default".into(), cap)),
            }),
            ..new(job, t0() + Duration::minutes(minute), 1)
        }
    }

    /// The turn's claims in one statement decide as one claim at a time would: a slot another
    /// runner has is not claimed, a job that forbids overlap and runs gets a `skipped` row, the
    /// system's cap stops the rest, and the jobs' next runs are recorded.
    #[test]
    fn a_turns_claims_keep_the_rules_of_one_claim() {
        let (store, j) = setup();
        let k = store
            .insert_job(
                &Job::new("default", "k", "* * * * *", "shell"),
                t0(),
                crate::store::test_by(),
            )
            .unwrap();
        // Another runner has j's 10:01 slot; k runs (forbids overlap).
        assert!(store
            .claim(&new(&j, t0() + Duration::minutes(1), 1))
            .unwrap()
            .is_some());
        store.claim(&new(&k, t0(), 1)).unwrap().unwrap();
        let next = Some(t0() + Duration::minutes(9));
        let slots = vec![
            (fleet(&j, 1, false, 4), next), // taken
            (fleet(&k, 2, true, 4), next),  // k still runs: skipped
            (fleet(&j, 2, false, 4), next), // running: 2 + this = 3
            (fleet(&j, 3, false, 4), next), // 4: the cap
            (fleet(&j, 4, false, 4), next), // over the cap
        ];
        let got = store.batch(|b| b.claim_runs(&slots, 5)).unwrap();
        assert_eq!(got.len(), 5);
        if store.backend() == crate::store::Backend::Sqlite {
            // One runner per SQLite database: it keeps overlap and caps itself, the store
            // only the slot's key.
            let claimed: Vec<bool> = got.iter().map(|g| matches!(g, Ok(Some(_)))).collect();
            assert_eq!(claimed, [false, true, true, true, true]);
            return;
        }
        assert!(matches!(got[0], Ok(None)), "{:?}", got[0]);
        assert!(matches!(got[1], Ok(None)), "{:?}", got[1]);
        assert!(matches!(got[2], Ok(Some(_))), "{:?}", got[2]);
        assert!(matches!(got[3], Ok(Some(_))), "{:?}", got[3]);
        assert!(
            matches!(&got[4], Err(StoreError::FleetFull { cap: 4, .. })),
            "{:?}",
            got[4]
        );
        let skipped = store
            .executions(&super::super::ExecutionFilter {
                status: Some(Status::Skipped),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("is still going")));
        let j = store.job("default", "j").unwrap();
        assert_eq!(j.next_run_at, next);
        assert_eq!(j.last_run_at, Some(t0() + Duration::minutes(3)));
        assert_eq!(store.running(None).unwrap().len(), 4);
    }

    /// Asked for `want` places with spares after them: the spares take the places of the slots
    /// other runners have, in order; once `want` are claimed the rest are not tried (no row, no
    /// result), and a slot over the cap before that says so.
    #[test]
    fn spares_fill_the_places_of_taken_slots_and_the_rest_are_not_tried() {
        let (store, j) = setup();
        // Another runner has j's 10:01 and 10:03 slots.
        for minute in [1, 3] {
            let at = t0() + Duration::minutes(minute);
            store.claim(&new(&j, at, 1)).unwrap().unwrap();
        }
        let next = Some(t0() + Duration::minutes(9));
        let slots: Vec<_> = (1..=6).map(|m| (fleet(&j, m, false, 9), next)).collect();
        let got = store.batch(|b| b.claim_runs(&slots, 2)).unwrap();
        // 10:01 taken, 10:02 ours, 10:03 taken, 10:04 ours: two places filled; 10:05 and 10:06
        // not tried.
        let claimed: Vec<bool> = got.iter().map(|g| matches!(g, Ok(Some(_)))).collect();
        assert_eq!(claimed, [false, true, false, true], "{got:?}");
        let mut slots_run: Vec<_> = (store.running(None).unwrap().into_iter())
            .map(|e| e.scheduled_for)
            .collect();
        slots_run.sort();
        let at = |m| t0() + Duration::minutes(m);
        assert_eq!(slots_run, [at(1), at(2), at(3), at(4)]);
        assert_eq!(store.job("default", "j").unwrap().last_run_at, Some(at(4)));

        // Nothing taken: exactly `want`, the first ones.
        let slots: Vec<_> = (7..=9).map(|m| (fleet(&j, m, false, 9), next)).collect();
        let got = store.batch(|b| b.claim_runs(&slots, 1)).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(matches!(got[0], Ok(Some(_))));
        if store.backend() == crate::store::Backend::Sqlite {
            return; // no fleet-wide cap on SQLite's one runner
        }
        // 5 running, cap 6: the first spare claimed fills it; the next one is over the cap and
        // says so, before the want of 3 is met.
        let slots: Vec<_> = (10..=13).map(|m| (fleet(&j, m, false, 6), next)).collect();
        let got = store.batch(|b| b.claim_runs(&slots, 3)).unwrap();
        assert!(matches!(got[0], Ok(Some(_))), "{got:?}");
        assert!(
            got[1..]
                .iter()
                .all(|g| matches!(g, Err(StoreError::FleetFull { cap: 6, .. }))),
            "{got:?}"
        );
        assert_eq!(got.len(), 4);
        assert_eq!(store.running(None).unwrap().len(), 6);
    }
}
