-- cronmgr schema, version 5: runners sharing one database (PostgreSQL fleets; an SQLite database
-- has one runner, registered the same way), and jobs pinned to runners by label.
-- Never edit a shipped migration: add a new numbered file, for both engines.

-- Labels a runner must all carry to run the job (`run --label`); [] runs anywhere.
ALTER TABLE jobs ADD COLUMN runner_labels TEXT NOT NULL DEFAULT '[]'
    CHECK (json_valid(runner_labels) AND json_type(runner_labels) = 'array');

-- Each `cronmgr run`, registered at start. It heartbeats while up; another runner that sees no
-- heartbeat for lease seconds declares it lost and interrupts its executions.
CREATE TABLE runners (
    id             INTEGER PRIMARY KEY,
    host           TEXT NOT NULL,
    pid            INTEGER NOT NULL,
    version        TEXT NOT NULL,
    labels         TEXT NOT NULL DEFAULT '[]',
    max_concurrent INTEGER,
    lease          INTEGER NOT NULL DEFAULT 30 CHECK (lease >= 1),
    started_at     TEXT NOT NULL,
    heartbeat_at   TEXT NOT NULL,
    stopped_at     TEXT,                -- stopped cleanly
    lost_at        TEXT                 -- declared lost by another runner
);

-- Which runner started an execution.
ALTER TABLE executions ADD COLUMN runner_id INTEGER;
CREATE INDEX executions_running ON executions (runner_id) WHERE status = 'running';
