-- cronmgr schema, version 6: the `cancelled` status, and who cancelled (`cronmgr kill`).
-- Never edit a shipped migration: add a new numbered file, for both engines.

ALTER TABLE executions DROP CONSTRAINT executions_status_check;
ALTER TABLE executions ADD CONSTRAINT executions_status_check CHECK (status IN
    ('running', 'success', 'failed', 'timeout', 'skipped', 'missed', 'interrupted', 'cancelled'));
-- Who asked for the execution to be cancelled (the audit log's actor), written before its
-- process group is signalled: whoever records the end then records it `cancelled`.
ALTER TABLE executions ADD COLUMN cancelled_by TEXT;
