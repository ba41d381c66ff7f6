//! Chains in the history: which execution's end triggered which. A chain's start is claimed like
//! any slot (see `claims.rs`), with `caused_by` naming the parent's execution; the claim stands
//! only when that execution ended with a status a chain fires on, and once per (job, cause,
//! attempt) (`executions_chain_key`, migration 009).

//!
//! `status` shows each chain's last run from here: a root job (one with children and no
//! parents), its last execution, and what that execution's end caused, step by step.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::sql::params;
use super::{parse_enum, parse_opt_time, Result, Status, Store};
use crate::model::chain::{self, On};

/// The jobs that have parents (`after` not empty), through the partial index `jobs_chained`
/// (migration 011): a status call does not read every job.
const CHAINED_JOBS: &str = "SELECT system, name, after FROM jobs \
     WHERE after <> '[]' AND (CAST(?1 AS TEXT) IS NULL OR system = ?1) ORDER BY system, name";

/// A root job's last started execution (through `executions_job_started`) and every execution
/// its end caused, and theirs, down the chain (through the partial index
/// `executions_caused_by`, migration 011). `e.id > t.id`: a cause is always older than what it
/// caused, so even a damaged row cannot make the walk loop.
const CHAIN_ROWS: &str =
    "WITH RECURSIVE tree (id, job_id, status, started_at, finished_at, caused_by, attempt) AS ( \
       SELECT id, job_id, status, started_at, finished_at, caused_by, attempt FROM executions \
       WHERE id = (SELECT id FROM executions \
                   WHERE job_id = (SELECT id FROM jobs WHERE system = ?1 AND name = ?2) \
                     AND started_at IS NOT NULL ORDER BY started_at DESC LIMIT 1) \
       UNION \
       SELECT e.id, e.job_id, e.status, e.started_at, e.finished_at, e.caused_by, e.attempt \
       FROM executions e JOIN tree t ON e.caused_by = t.id WHERE e.id > t.id) \
     SELECT t.id, j.name, t.status, t.started_at, t.finished_at, t.caused_by, t.attempt \
     FROM tree t JOIN jobs j ON j.id = t.job_id ORDER BY t.id";

/// The deepest chain `status` follows (the graph has no cycle; this bounds a damaged one).
const MAX_DEPTH: usize = 32;

/// A chain's last run: its root job's last execution and what its end caused.
#[derive(Debug, Clone, Serialize)]
pub struct ChainRun {
    pub system: String,
    /// The root job: it has children and no parents.
    pub root: String,
    pub run: ChainStep,
}

/// One job of a chain's run: the execution that ran it, and the jobs after it.
#[derive(Debug, Clone, Serialize)]
pub struct ChainStep {
    pub job: String,
    /// Which of its parent's ends start it (absent for the root).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<On>,
    /// Its execution in this run (the last attempt, if retried); None when it did not run.
    pub execution: Option<i64>,
    /// The parent step's execution, whose end started this one.
    pub caused_by: Option<i64>,
    pub status: Option<Status>,
    pub attempt: Option<u32>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it has no execution: `never run` (the root has not started yet), `waiting` (its
    /// parent is still running), `not triggered` (its parent's end is not one it runs on),
    /// `not started` (it should have started and has no row: queued, or refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_run: Option<&'static str>,
    pub children: Vec<ChainStep>,
}

/// One execution of a chain's run, as read.
struct Row {
    id: i64,
    job: String,
    status: Status,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    caused_by: Option<i64>,
    attempt: u32,
}

/// (system, parent's name) → its children: (name, the ends of the parent that start it).
type Children = BTreeMap<(String, String), Vec<(String, Vec<On>)>>;

impl Store {
    /// The last run of every chain of `system` (every system: None), by system and root name.
    pub fn chain_runs(&self, system: Option<&str>) -> Result<Vec<ChainRun>> {
        let mut stmt = self.conn.prepare_cached(CHAINED_JOBS)?;
        let rows = stmt.query_map(params![system], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut children = Children::new();
        let mut has_parents = std::collections::BTreeSet::new();
        for row in rows {
            let (system, name, after) = row?;
            let after: Vec<String> = serde_json::from_str(&after).unwrap_or_default();
            for parent in chain::parents(&after) {
                let list = children.entry((system.clone(), parent.job)).or_default();
                match list.iter_mut().find(|(child, _)| *child == name) {
                    Some((_, ons)) if !ons.contains(&parent.on) => ons.push(parent.on),
                    Some(_) => {}
                    None => list.push((name.clone(), vec![parent.on])),
                }
            }
            has_parents.insert((system, name));
        }
        let roots: Vec<(String, String)> = children
            .keys()
            .filter(|key| !has_parents.contains(*key))
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(roots.len());
        for (system, root) in roots {
            let rows = self.chain_rows(&system, &root)?;
            let mut caused: HashMap<i64, Vec<&Row>> = HashMap::new();
            for row in &rows {
                if let Some(cause) = row.caused_by {
                    caused.entry(cause).or_default().push(row);
                }
            }
            let first = rows.first().filter(|r| r.job == root);
            let run = step(
                &system,
                &root,
                Vec::new(),
                first,
                None,
                &children,
                &caused,
                0,
            );
            out.push(ChainRun { system, root, run });
        }
        Ok(out)
    }

    fn chain_rows(&self, system: &str, root: &str) -> Result<Vec<Row>> {
        let mut stmt = self.conn.prepare_cached(CHAIN_ROWS)?;
        let rows = stmt.query_map(params![system, root], |r| {
            Ok(Row {
                id: r.get(0)?,
                job: r.get(1)?,
                status: parse_enum(&r.get::<_, String>(2)?)?,
                started_at: parse_opt_time(r.get(3)?)?,
                finished_at: parse_opt_time(r.get(4)?)?,
                caused_by: r.get(5)?,
                attempt: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<super::sql::Result<_>>()?)
    }
}

/// The step of job `name` run by `row` (None: not run; `parent` is its parent's execution), and
/// below it the steps of its children.
#[allow(clippy::too_many_arguments)]
fn step(
    system: &str,
    name: &str,
    on: Vec<On>,
    row: Option<&Row>,
    parent: Option<&Row>,
    children: &Children,
    caused: &HashMap<i64, Vec<&Row>>,
    depth: usize,
) -> ChainStep {
    let Some(row) = row else {
        let not_run = match parent {
            None => "never run",
            Some(p) if p.status == Status::Running => "waiting",
            Some(p) if on.iter().any(|on| on.matches(p.status)) => "not started",
            Some(_) => "not triggered",
        };
        return ChainStep {
            job: name.to_string(),
            on,
            execution: None,
            caused_by: None,
            status: None,
            attempt: None,
            started_at: None,
            finished_at: None,
            not_run: Some(not_run),
            children: Vec::new(),
        };
    };
    let mut steps = Vec::new();
    if depth < MAX_DEPTH {
        let key = (system.to_string(), name.to_string());
        for (child, ons) in children.get(&key).into_iter().flatten() {
            // Its last attempt caused by this execution (a retried chain start keeps its cause).
            let run = (caused.get(&row.id).into_iter().flatten())
                .filter(|r| r.job == *child)
                .max_by_key(|r| r.attempt)
                .copied();
            steps.push(step(
                system,
                child,
                ons.clone(),
                run,
                Some(row),
                children,
                caused,
                depth + 1,
            ));
        }
    }
    ChainStep {
        job: name.to_string(),
        on,
        execution: Some(row.id),
        caused_by: row.caused_by,
        status: Some(row.status),
        attempt: Some(row.attempt),
        started_at: row.started_at,
        finished_at: row.finished_at,
        not_run: None,
        children: steps,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, TimeZone, Utc};

    use crate::store::{Finish, Job, NewExecution, Status, Store, Trigger};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 6, 0, 0).unwrap()
    }

    fn job(store: &Store, name: &str) -> Job {
        store
            .insert_job(
                &Job::new("default", name, "* * * * *", "shell"),
                t0(),
                crate::store::test_by(),
            )
            .unwrap()
    }

    fn start(job: &Job, trigger: Trigger, cause: Option<i64>, at: DateTime<Utc>) -> NewExecution {
        NewExecution {
            job_id: job.id,
            status: Status::Running,
            scheduled_for: at,
            started_at: Some(at),
            triggered_by: trigger,
            attempt: 1,
            error_message: None,
            runner_pid: None,
            runner_id: None,
            fleet: None,
            caused_by: cause,
        }
    }

    fn end(status: Status) -> Finish {
        Finish {
            status,
            finished_at: t0() + Duration::seconds(1),
            duration_ms: 1000,
            output: String::new(),
            error_message: None,
            exit_code: Some(0),
            memory_used_mb: None,
            cpu_used_percent: None,
            memory_upper_bound: None,
            cpu_quota_enforced: None,
        }
    }

    /// A parent that ends `status`, and whether its child's claim stands (twice: once at most).
    fn fires(store: &Store, status: Status) -> (Option<i64>, Option<i64>) {
        let (a, b) = (
            job(store, &format!("a-{status}")),
            job(store, &format!("b-{status}")),
        );
        let parent = store
            .claim(&start(&a, Trigger::Schedule, None, t0()))
            .unwrap()
            .unwrap();
        let child = start(
            &b,
            Trigger::Chain,
            Some(parent),
            t0() + Duration::seconds(1),
        );
        // Still running: no chain yet.
        assert_eq!(store.claim(&child).unwrap(), None);
        store.finish(parent, &end(status)).unwrap();
        let first = store.claim(&child).unwrap();
        // Another runner, a millisecond later: the same cause fires once.
        let again = NewExecution {
            scheduled_for: child.scheduled_for + Duration::milliseconds(1),
            ..child
        };
        (first, store.claim(&again).unwrap())
    }

    fn check_chain_claims(store: &Store) {
        let (first, again) = fires(store, Status::Success);
        let id = first.expect("a chain's claim after a success");
        assert_eq!(again, None);
        let row = store.execution(id).unwrap();
        assert_eq!(row.triggered_by, Trigger::Chain);
        assert!(row.caused_by.is_some());
        assert!(fires(store, Status::Failed).0.is_some());
        assert!(fires(store, Status::Timeout).0.is_some());
        // Recorded interrupted (a lost runner's end overruled) or cancelled: nothing fires.
        assert_eq!(fires(store, Status::Interrupted).0, None);
        assert_eq!(fires(store, Status::Cancelled).0, None);
    }

    fn after(store: &Store, name: &str, parents: &[&str]) -> Job {
        let mut j = Job::new("default", name, "@never", "shell");
        j.after = parents.iter().map(|p| p.to_string()).collect();
        store.insert_job(&j, t0(), crate::store::test_by()).unwrap()
    }

    /// (job, execution, status, not_run) of a step.
    type Flat<'a> = (String, Option<i64>, Option<Status>, Option<&'a str>);

    /// The step and its children, depth first.
    fn flat(s: &super::ChainStep) -> Vec<Flat<'_>> {
        let mut out = vec![(s.job.clone(), s.execution, s.status, s.not_run)];
        for c in &s.children {
            out.extend(flat(c));
        }
        out
    }

    /// a → b on success (b → d on any end), a → c on failure; `lone` is in no chain. The last
    /// run of the chain is followed down `caused_by`, a retried step by its last attempt, and a
    /// step without a row says why.
    #[test]
    fn status_follows_a_chains_last_run_from_its_root() {
        let store = Store::open_in_memory().unwrap();
        let a = job(&store, "a");
        job(&store, "lone");
        let b = after(&store, "b", &["a:success"]);
        after(&store, "c", &["a:failure"]);
        let d = after(&store, "d", &["b:any"]);
        let runs = store.chain_runs(Some("default")).unwrap();
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(
            (runs[0].root.as_str(), runs[0].system.as_str()),
            ("a", "default")
        );
        assert_eq!(
            flat(&runs[0].run),
            [("a".into(), None, None, Some("never run"))]
        );
        assert!(store.chain_runs(Some("elsewhere")).unwrap().is_empty());

        let a1 = store
            .claim(&start(&a, Trigger::Schedule, None, t0()))
            .unwrap()
            .unwrap();
        let waiting = store.chain_runs(None).unwrap();
        assert_eq!(
            flat(&waiting[0].run),
            [
                ("a".into(), Some(a1), Some(Status::Running), None),
                ("b".into(), None, None, Some("waiting")),
                ("c".into(), None, None, Some("waiting")),
            ]
        );
        store.finish(a1, &end(Status::Success)).unwrap();
        let at = t0() + Duration::seconds(2);
        let b1 = store
            .claim(&start(&b, Trigger::Chain, Some(a1), at))
            .unwrap()
            .unwrap();
        store.finish(b1, &end(Status::Failed)).unwrap();
        // Its retry keeps the cause; d runs after the retry's end.
        let b2 = store
            .claim(&NewExecution {
                attempt: 2,
                ..start(&b, Trigger::Retry, Some(a1), at + Duration::seconds(1))
            })
            .unwrap()
            .unwrap();
        store.finish(b2, &end(Status::Success)).unwrap();
        let d1 = store
            .claim(&start(
                &d,
                Trigger::Chain,
                Some(b2),
                at + Duration::seconds(2),
            ))
            .unwrap()
            .unwrap();
        let runs = store.chain_runs(None).unwrap();
        assert_eq!(
            flat(&runs[0].run),
            [
                ("a".into(), Some(a1), Some(Status::Success), None),
                ("b".into(), Some(b2), Some(Status::Success), None),
                ("d".into(), Some(d1), Some(Status::Running), None),
                ("c".into(), None, None, Some("not triggered")),
            ]
        );
        let b_step = &runs[0].run.children[0];
        assert_eq!((b_step.caused_by, b_step.attempt), (Some(a1), Some(2)));
        assert_eq!(b_step.children[0].caused_by, Some(b2));
        assert_eq!(runs[0].run.started_at, Some(t0()));

        // The next run of a fails and nothing has started after it yet.
        let a2 = store
            .claim(&start(
                &a,
                Trigger::Schedule,
                None,
                t0() + Duration::minutes(1),
            ))
            .unwrap()
            .unwrap();
        store.finish(a2, &end(Status::Failed)).unwrap();
        assert_eq!(
            flat(&store.chain_runs(None).unwrap()[0].run),
            [
                ("a".into(), Some(a2), Some(Status::Failed), None),
                ("b".into(), None, None, Some("not triggered")),
                ("c".into(), None, None, Some("not started")),
            ]
        );
    }

    /// The chains are found through the partial index of jobs with parents, and a run is walked
    /// down through the partial index of causes: no scan of jobs or executions.
    #[test]
    fn chain_reads_are_index_seeks() {
        let store = Store::open_in_memory().unwrap();
        if store.sqlite_only("reads SQLite's query plan") {
            return;
        }
        let plan = |sql: &str, params: &[Option<&str>]| -> String {
            let mut stmt = store
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let rows: Vec<String> = match params {
                [one] => stmt.query_map(crate::store::sql::params![*one], |r| r.get(3)),
                _ => stmt.query_map(crate::store::sql::params![params[0], params[1]], |r| {
                    r.get(3)
                }),
            }
            .unwrap()
            .collect::<crate::store::sql::Result<_>>()
            .unwrap();
            rows.join("\n")
        };
        let jobs = plan(super::CHAINED_JOBS, &[None]);
        assert_eq!(jobs, "SCAN jobs USING INDEX jobs_chained", "{jobs}");
        let rows = plan(super::CHAIN_ROWS, &[Some("default"), Some("a")]);
        for seek in [
            "SEARCH e USING INDEX executions_caused_by (caused_by=? AND rowid>?)",
            "SEARCH executions USING COVERING INDEX executions_job_started (job_id=? AND started_at>?)",
            "(system=? AND name=?)",
        ] {
            assert!(rows.contains(seek), "{seek}:\n{rows}");
        }
        assert!(
            !rows.contains("SCAN executions") && !rows.contains("SCAN e\n"),
            "{rows}"
        );
    }

    /// SQLite in a file; the test engine (PostgreSQL with CRONMGR_TEST_POSTGRES) in memory.
    #[test]
    fn a_fresh_database_takes_chain_starts_once_per_cause() {
        let dir = tempfile::tempdir().unwrap();
        check_chain_claims(&Store::open(&dir.path().join("c.db")).unwrap());
        check_chain_claims(&Store::open_in_memory().unwrap());
    }

    /// A database made before chains (schema 8, with rows) is upgraded in place: the CHECK on
    /// `triggered_by` takes `chain`, the rows are kept, and the file passes SQLite's checks.
    #[test]
    fn an_upgraded_sqlite_database_takes_chain_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            for sql in &super::super::MIGRATIONS[..8] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "application_id", super::super::APPLICATION_ID)
                .unwrap();
            c.pragma_update(None, "user_version", 8).unwrap();
            c.execute_batch(
                "INSERT INTO jobs (system, name, schedule, command, created_at, updated_at) \
                 VALUES ('default', 'old', '* * * * *', 'shell', 'x', 'x'); \
                 INSERT INTO executions (job_id, status, scheduled_for, triggered_by) \
                 VALUES (1, 'success', '2026-12-01T00:00:00.000Z', 'schedule');",
            )
            .unwrap();
            let refused = c.execute(
                "INSERT INTO executions (job_id, status, scheduled_for, triggered_by) \
                 VALUES (1, 'success', '2026-12-01T00:01:00.000Z', 'chain')",
                (),
            );
            assert!(refused.is_err(), "schema 8 refuses the chain trigger");
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.executions(&Default::default()).unwrap().len(), 1);
        check_chain_claims(&store);
        drop(store);
        let c = rusqlite::Connection::open(&path).unwrap();
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let version: i32 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, super::super::SCHEMA_VERSION);
    }
}
