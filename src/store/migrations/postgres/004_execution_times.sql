-- cronmgr schema, version 4, for PostgreSQL: as ../004_execution_times.sql.
CREATE INDEX executions_at ON executions ((coalesce(started_at, scheduled_for)));
