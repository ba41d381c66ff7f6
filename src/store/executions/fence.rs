//! How a fleet's runners write without a global lock (PostgreSQL).
//!
//! A runner's transaction (its claims, pids and ends of one loop turn) locks only what it
//! touches, always in the same order, in one statement, before it writes anything:
//!
//! 1. one advisory lock per system whose cap it checks, in key order: the count of the
//!    system's running executions and the insert that follows it are one runner's at a time.
//! 2. the rows in `jobs` it claims for or ends executions of (an end updates the job's streak),
//!    `FOR UPDATE` in id order: the overlap check and the insert that follows it are one
//!    runner's at a time, per job.
//! 3. its own row in `runners`, `FOR SHARE`: the fence. A runner the fleet declared lost (its
//!    lease ran out, another runner marked it and interrupted its executions, both under that
//!    row's lock) claims nothing until its heartbeat takes it back ([`StoreError::NotInFleet`]);
//!    a runner being declared lost right now waits for that to commit, then sees it. (Declaring
//!    a runner lost takes no cap or job lock, so it never waits on a claim in a cycle.)
//!
//! Every later statement of the transaction then reads what the previous holder committed
//! (READ COMMITTED takes a new snapshot per statement). Two runners' transactions take the
//! locks they share in the same order, so they never wait on each other in a cycle. A stalled
//! member holds these rows for at most its session's `idle_in_transaction_session_timeout`
//! (5 s), and only the systems and jobs it touched: the fleet goes on with the rest.

use super::claims::Batch;
use super::NewExecution;
use crate::store::sql::{OptionalExtension, ToValue};
use crate::store::{Backend, Result, StoreError};

/// What one transaction of a fleet runner will touch.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    /// The runner that claims (None: a transaction that only ends executions).
    pub runner: Option<i64>,
    /// Systems whose fleet-wide cap its claims check.
    pub systems: Vec<String>,
    /// Jobs it claims slots of.
    pub jobs: Vec<i64>,
    /// Executions it ends.
    pub executions: Vec<i64>,
}

impl Fence {
    /// The locks fleet claims `news` need (claims without fleet rules need none).
    pub fn for_claims<'a>(news: impl Iterator<Item = &'a NewExecution>) -> Fence {
        let mut fence = Fence::default();
        for new in news {
            let Some(rules) = &new.fleet else { continue };
            if new.status != crate::store::Status::Running {
                continue;
            }
            fence.runner = fence.runner.or(new.runner_id);
            fence.jobs.push(new.job_id);
            if let Some((system, _)) = &rules.cap {
                fence.systems.push(system.clone());
            }
        }
        fence
    }

    /// Also lock for ending `executions`.
    pub fn ending(mut self, executions: impl IntoIterator<Item = i64>) -> Fence {
        self.executions.extend(executions);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.runner.is_none()
            && self.systems.is_empty()
            && self.jobs.is_empty()
            && self.executions.is_empty()
    }
}

/// The advisory lock key of a system's cap: the first half of PostgreSQL's two-key form is
/// cronmgr's application id (the one-key space holds the CLI's writers' lock), the second a
/// stable hash of the system's name (FNV-1a: the same on every host and version).
pub fn cap_key(system: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in system.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as i32
}

impl Batch<'_> {
    /// Take the locks `fence` names, in the fleet's order (see the module's comment). Nothing
    /// on SQLite, where `BEGIN IMMEDIATE` already makes the writer alone. Err
    /// [`StoreError::NotInFleet`] when the runner was declared lost.
    pub fn fence(&self, fence: &Fence) -> Result<()> {
        if self.conn().backend() != Backend::Postgres || fence.is_empty() {
            return Ok(());
        }
        let list = |ids: &[i64]| {
            let mut ids = ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
        };
        let mut keys: Vec<i32> = fence.systems.iter().map(|s| cap_key(s)).collect();
        keys.sort_unstable();
        keys.dedup();
        let keys = keys
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        // One round trip for every lock, with the lists as parameters (comma-separated
        // integers), so the text is the same for every transaction: the server plans it once
        // per session (written into the text, each took a plan of 0.17 ms). The cap locks in
        // key order; the jobs in id order, by one array (the jobs', then the ended executions'
        // jobs: an index scan of `jobs`, where `id IN (…) OR id IN (SELECT …)` reads the whole
        // table); then the runner's row, which says whether it is lost.
        let caps = format!(
            "(SELECT count(*) FROM (SELECT pg_advisory_xact_lock({}, k) \
             FROM unnest(CAST(string_to_array(CAST(?1 AS TEXT), ',') AS INTEGER[])) AS k \
             ORDER BY k) AS caps)",
            crate::store::APPLICATION_ID
        );
        let jobs = "(SELECT count(*) FROM (SELECT id FROM jobs WHERE id = ANY \
             (CAST(string_to_array(CAST(?2 AS TEXT), ',') AS BIGINT[]) || \
             ARRAY(SELECT job_id FROM executions WHERE id = ANY \
             (CAST(string_to_array(CAST(?3 AS TEXT), ',') AS BIGINT[])))) \
             ORDER BY id FOR UPDATE) AS locked)";
        let mut args = vec![
            keys.to_value(),
            list(&fence.jobs).to_value(),
            list(&fence.executions).to_value(),
        ];
        match fence.runner {
            Some(runner) => {
                args.push(runner.to_value());
                let lost: Option<bool> = self
                    .conn()
                    .prepare_cached(&format!(
                        "SELECT r.lost_at IS NOT NULL OR r.stopped_at IS NOT NULL, {caps}, {jobs} \
                         FROM runners r WHERE r.id = ?4 FOR SHARE OF r"
                    ))?
                    .query_row(args, |r| r.get(0))
                    .optional()?;
                if lost != Some(false) {
                    return Err(StoreError::NotInFleet { runner });
                }
            }
            None => {
                self.conn()
                    .prepare_cached(&format!("SELECT {caps}, {jobs}"))?
                    .query_row(args, |r| r.get::<_, i64>(0))?;
            }
        }
        self.fenced.set(true);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_systems_cap_key_is_stable_and_differs_by_name() {
        // Every host and every version must lock the same key for a system.
        assert_eq!(cap_key(""), 0x811c_9dc5_u32 as i32);
        assert_eq!(cap_key("default"), cap_key("default"));
        assert_ne!(cap_key("default"), cap_key("backups"));
    }

    /// The fence on a fleet's database: a runner the fleet declared lost claims nothing, and
    /// its heartbeat takes it back. (SQLite has one runner: no fence.)
    #[test]
    fn a_runner_declared_lost_claims_nothing_until_its_heartbeat_takes_it_back() {
        use super::super::fixtures::*;
        use crate::store::{Backend, FleetRules, NewRunner};
        let (store, job) = setup();
        let runner = store
            .register_runner(
                &NewRunner {
                    host: "h".into(),
                    pid: 1,
                    version: "0".into(),
                    labels: vec![],
                    max_concurrent: None,
                    lease: 30,
                },
                t0(),
            )
            .unwrap();
        let claim = |minute: i64| {
            let new = super::NewExecution {
                runner_id: Some(runner),
                fleet: Some(FleetRules {
                    exclusive: false,
                    cap: Some(("default".into(), 10)),
                }),
                ..new(&job, t0() + chrono::Duration::minutes(minute), 1)
            };
            store.batch(|b| b.claim_run(&new, None))
        };
        assert!(matches!(claim(1), Ok(Some(_))));
        // Declared lost by another runner.
        store
            .conn
            .execute(
                "UPDATE runners SET lost_at = heartbeat_at WHERE id = ?1",
                [runner],
            )
            .unwrap();
        if store.backend() == Backend::Sqlite {
            assert!(matches!(claim(2), Ok(Some(_))), "SQLite keeps no fence");
            return;
        }
        assert!(
            matches!(claim(2), Err(StoreError::NotInFleet { runner: r }) if r == runner),
            "a lost runner's claim was taken"
        );
        assert_eq!(store.running(None).unwrap().len(), 1, "nothing written");
        assert!(
            !store.heartbeat(runner, t0()).unwrap(),
            "it learns it was lost"
        );
        assert!(matches!(claim(2), Ok(Some(_))));
    }

    #[test]
    fn an_empty_fence_locks_nothing() {
        assert!(Fence::default().is_empty());
        assert!(!Fence {
            executions: vec![1],
            ..Fence::default()
        }
        .is_empty());
    }
}
