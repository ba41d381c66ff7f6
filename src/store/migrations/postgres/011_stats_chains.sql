-- cronmgr schema, version 11, for PostgreSQL: as ../011_stats_chains.sql.

CREATE INDEX executions_started_stats
    ON executions (started_at, job_id, status, duration_ms, memory_used_mb, cpu_used_percent);
DROP INDEX executions_started_at;
CREATE INDEX jobs_chained ON jobs (system, name) WHERE after <> '[]';
CREATE INDEX executions_caused_by ON executions (caused_by) WHERE caused_by IS NOT NULL;
