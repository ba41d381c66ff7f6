-- cronmgr schema, version 14, for PostgreSQL: less work per execution on the runners' hot path
-- (benches/README.md, the burst on each store).
-- Never edit a shipped migration: add a new numbered file, for both engines.
--
-- Two indexes repeat the first column of a unique key, and every insert into their table, and
-- every update of an indexed column, wrote them too: `executions_job_id` is the first column of
-- (job_id, scheduled_for, attempt), which serves the same lookups (a job's history, the cascade
-- when a job is removed), and `jobs_system` the first column of (system, name).
DROP INDEX executions_job_id;
DROP INDEX jobs_system;

-- An execution's end notified `freed` from a row trigger: a PL/pgSQL call per end. The
-- statement trigger that counts the ends (013) now sends it, once per statement that ended
-- any: PostgreSQL folded the row trigger's identical notifications of one transaction into
-- one anyway, so the runners see the same.
DROP TRIGGER executions_freed ON executions;
CREATE OR REPLACE FUNCTION cronmgr_count_ends() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    groups BIGINT;
BEGIN
    INSERT INTO job_run_counts (job_id, status, count)
        SELECT n.job_id, n.status, count(*) FROM ended_new n JOIN ended_old o ON o.id = n.id
        WHERE o.status = 'running' AND n.status != 'running'
        GROUP BY n.job_id, n.status
        ON CONFLICT (job_id, status) DO UPDATE SET count = job_run_counts.count + EXCLUDED.count;
    GET DIAGNOSTICS groups = ROW_COUNT;
    IF groups = 0 THEN
        RETURN NULL;
    END IF;
    UPDATE jobs SET last_success_at = s.at, failure_streak = 0
        FROM (SELECT n.job_id, max(n.finished_at) AS at
              FROM ended_new n JOIN ended_old o ON o.id = n.id
              WHERE o.status = 'running' AND n.status = 'success'
              GROUP BY n.job_id) s
        WHERE jobs.id = s.job_id;
    PERFORM pg_notify('cronmgr_changes', TG_TABLE_SCHEMA || ':freed');
    RETURN NULL;
END $$;
