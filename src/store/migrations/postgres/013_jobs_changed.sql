-- cronmgr schema, version 13, for PostgreSQL: cheaper triggers on the runners' hot path (a burst
-- of 10,000 jobs on two runners: 16.4 s → 10.8 s on the test machine, benches/README.md).
--
-- The trigger that tells runners a job changed fires on the columns a person edits, and no
-- longer looks at the runners' own bookkeeping.
-- Never edit a shipped migration: add a new numbered file, for both engines.
--
-- Until now it fired on every update of a job and compared the whole row, as JSON, without the
-- four columns the runners keep (last_run_at, next_run_at, failure_streak, last_success_at):
-- two to_jsonb() of a 45-column row for each claim and each end, 75 % of the cost of those
-- updates (measured: 10,000 updates of failure_streak took 887 ms with it, 216 ms without).
-- A column list does that for free: a runner's statements set only those four columns, so the
-- trigger is not even considered for them. An edit that sets a column to its own value now
-- counts as a change: the runners reload for nothing, which is harmless.
--
-- Every other column is listed. A column added later must be added here too: the store test
-- `every_column_but_the_runners_bookkeeping_tells_the_runners` fails until it is.

DROP TRIGGER jobs_changed ON jobs;
CREATE TRIGGER jobs_changed AFTER UPDATE OF
    id, system, name, description, schedule, timezone, command, params, is_active, timeout,
    retries, retry_delay, backoff, category, priority, max_runtime, allow_concurrent, catch_up,
    starting_deadline, created_at, updated_at, alerts_enabled, alert_email, escalate_after,
    disable_after, max_silence, disabled_reason, enabled_at, is_critical, memory_limit,
    cpu_limit, nofile_limit, nproc_limit, run_user, run_group, runner_labels, jitter, after,
    alert_slack, alert_webhook, cpu_quota
    ON jobs FOR EACH ROW EXECUTE FUNCTION cronmgr_changed();

-- An execution's end is counted (job_run_counts) and, for a success, clears its job's failure
-- streak once per statement instead of once per row. The ends of a runner's loop turn are one
-- statement; a row trigger ran two statements per end, each with its own start-up (measured:
-- 0.13 ms per end for its `UPDATE jobs` alone, against 0.02 ms per row for one update of many
-- rows). Several successes of one job in one statement
-- leave the latest `finished_at`: the last of them, since a turn lists its ends in the order
-- they came, as the row trigger did.
DROP TRIGGER executions_count_update ON executions;
DROP FUNCTION cronmgr_count_update();
CREATE FUNCTION cronmgr_count_ends() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_run_counts (job_id, status, count)
        SELECT n.job_id, n.status, count(*) FROM ended_new n JOIN ended_old o ON o.id = n.id
        WHERE o.status = 'running' AND n.status != 'running'
        GROUP BY n.job_id, n.status
        ON CONFLICT (job_id, status) DO UPDATE SET count = job_run_counts.count + EXCLUDED.count;
    UPDATE jobs SET last_success_at = s.at, failure_streak = 0
        FROM (SELECT n.job_id, max(n.finished_at) AS at
              FROM ended_new n JOIN ended_old o ON o.id = n.id
              WHERE o.status = 'running' AND n.status = 'success'
              GROUP BY n.job_id) s
        WHERE jobs.id = s.job_id;
    RETURN NULL;
END $$;
CREATE TRIGGER executions_count_ends AFTER UPDATE ON executions
    REFERENCING OLD TABLE AS ended_old NEW TABLE AS ended_new
    FOR EACH STATEMENT EXECUTE FUNCTION cronmgr_count_ends();
