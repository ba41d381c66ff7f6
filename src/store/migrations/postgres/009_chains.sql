-- cronmgr schema, version 8, for PostgreSQL: as ../008_chains.sql.

ALTER TABLE jobs ADD COLUMN after TEXT NOT NULL DEFAULT '[]'
    CHECK (jsonb_typeof(after::jsonb) = 'array');
ALTER TABLE executions ADD COLUMN caused_by BIGINT;
ALTER TABLE executions DROP CONSTRAINT executions_triggered_by_check;
ALTER TABLE executions ADD CONSTRAINT executions_triggered_by_check
    CHECK (triggered_by IN ('schedule', 'manual', 'retry', 'chain'));
