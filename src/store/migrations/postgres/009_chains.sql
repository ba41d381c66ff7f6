-- cronmgr schema, version 9, for PostgreSQL: as ../009_chains.sql.

ALTER TABLE jobs ADD COLUMN after TEXT NOT NULL DEFAULT '[]'
    CHECK (jsonb_typeof(after::jsonb) = 'array');
ALTER TABLE executions ADD COLUMN caused_by BIGINT;
CREATE UNIQUE INDEX executions_chain_key ON executions (job_id, caused_by, attempt)
    WHERE caused_by IS NOT NULL;
ALTER TABLE executions DROP CONSTRAINT executions_triggered_by_check;
ALTER TABLE executions ADD CONSTRAINT executions_triggered_by_check
    CHECK (triggered_by IN ('schedule', 'manual', 'retry', 'chain'));
