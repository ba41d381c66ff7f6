-- cronmgr schema, version 8: an index `stats` reads without touching the table.
-- Never edit a shipped migration: add a new numbered file, for both engines.
--
-- `cronmgr stats --since 7d` reads every execution of the period (its p95 needs each duration):
-- through (job_id, started_at) that was a table row per execution (0.1 s for the last week of
-- 1,000,000 rows, 0.8 s for 30 days). This index holds every column it reads, one range per job
-- and status, so the table is not read at all.
CREATE INDEX executions_job_status
    ON executions (job_id, status, started_at, duration_ms, memory_used_mb, cpu_used_percent);
