-- cronmgr schema, version 6: the `cancelled` status, and who cancelled (`cronmgr kill`).
-- Never edit a shipped migration: add a new numbered file, for both engines.
--
-- SQLite cannot change a CHECK constraint in place: the executions table is rebuilt (the
-- documented create-copy-drop-rename procedure), with every index and trigger it had. No table
-- references executions, so this is safe with foreign keys on. Ids are kept.

CREATE TABLE executions_v6 (
    id               INTEGER PRIMARY KEY,
    job_id           INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    status           TEXT NOT NULL CHECK (status IN
                        ('running', 'success', 'failed', 'timeout', 'skipped', 'missed', 'interrupted',
                         'cancelled')),
    scheduled_for    TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    duration_ms      INTEGER,
    output           TEXT,
    error_message    TEXT,
    exit_code        INTEGER,
    triggered_by     TEXT NOT NULL CHECK (triggered_by IN ('schedule', 'manual', 'retry')),
    attempt          INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 0), -- 0: a bookkeeping row (missed)
    memory_used_mb   REAL,
    cpu_used_percent REAL,
    pid              INTEGER,
    runner_pid       INTEGER,
    runner_id        INTEGER,
    -- Who asked for the execution to be cancelled (the audit log's actor), written before its
    -- process group is signalled: whoever records the end then records it `cancelled`.
    cancelled_by     TEXT,
    UNIQUE (job_id, scheduled_for, attempt)
);
INSERT INTO executions_v6 (id, job_id, status, scheduled_for, started_at, finished_at, duration_ms,
        output, error_message, exit_code, triggered_by, attempt, memory_used_mb, cpu_used_percent,
        pid, runner_pid, runner_id)
    SELECT id, job_id, status, scheduled_for, started_at, finished_at, duration_ms,
        output, error_message, exit_code, triggered_by, attempt, memory_used_mb, cpu_used_percent,
        pid, runner_pid, runner_id
    FROM executions;
DROP TABLE executions;
ALTER TABLE executions_v6 RENAME TO executions;

CREATE INDEX executions_job_id ON executions (job_id);
CREATE INDEX executions_status ON executions (status);
CREATE INDEX executions_started_at ON executions (started_at);
CREATE INDEX executions_job_started ON executions (job_id, started_at);
CREATE INDEX executions_at ON executions (coalesce(started_at, scheduled_for));
CREATE INDEX executions_running ON executions (runner_id) WHERE status = 'running';

CREATE TRIGGER executions_count_insert AFTER INSERT ON executions WHEN NEW.status != 'running'
BEGIN
    INSERT INTO job_run_counts (job_id, status, count) VALUES (NEW.job_id, NEW.status, 1)
        ON CONFLICT (job_id, status) DO UPDATE SET count = count + 1;
END;
CREATE TRIGGER executions_count_update AFTER UPDATE OF status ON executions
    WHEN OLD.status = 'running' AND NEW.status != 'running'
BEGIN
    INSERT INTO job_run_counts (job_id, status, count) VALUES (NEW.job_id, NEW.status, 1)
        ON CONFLICT (job_id, status) DO UPDATE SET count = count + 1;
    UPDATE jobs SET last_success_at = NEW.finished_at, failure_streak = 0
        WHERE id = NEW.job_id AND NEW.status = 'success';
END;
