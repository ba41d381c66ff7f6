-- cronmgr schema, version 11: a start-ordered covering index for `stats`, and what `status`
-- reads to show each chain's last run.
-- Never edit a shipped migration: add a new numbered file, for both engines.

-- `cronmgr stats --since 7d` of every job reads every execution of the period. Through
-- `executions_job_status` (migration 8) that is a range per job and status: 5,000 ranges for
-- 1,000 jobs, each on pages of its own (8,000 page reads for the last week of 1,000,000 rows).
-- In start order, with the columns `stats` reads, the period is one contiguous range of a
-- quarter of those pages, and no table row. It begins with `started_at`, so it also serves
-- every query `executions_started_at` served (the last day of `status`, `history --since`):
-- that index goes (the runner keeps as many indexes; an execution's end now rewrites its entry
-- in this one too).
CREATE INDEX executions_started_stats
    ON executions (started_at, job_id, status, duration_ms, memory_used_mb, cpu_used_percent);
DROP INDEX executions_started_at;

-- The jobs that have parents: `status` finds the chains without reading every job.
CREATE INDEX jobs_chained ON jobs (system, name) WHERE after <> '[]';
-- What an execution's end caused (only chain starts have a cause): `status` walks a chain's
-- last run down from its root's execution, one index seek a step.
CREATE INDEX executions_caused_by ON executions (caused_by) WHERE caused_by IS NOT NULL;
