-- cronmgr schema, version 1. Never edit a shipped migration: add a new numbered file.
-- Instants are UTC RFC 3339 text with milliseconds ("2026-11-28T10:00:00.000Z"), so they sort as text
-- and read well in the sqlite3 shell. Durations in seconds unless the name ends in _ms.

CREATE TABLE settings (
    system              TEXT PRIMARY KEY NOT NULL,
    is_enabled          INTEGER NOT NULL DEFAULT 1 CHECK (is_enabled IN (0, 1)),
    max_concurrent_jobs INTEGER NOT NULL DEFAULT 5 CHECK (max_concurrent_jobs >= 1),
    default_timeout     INTEGER NOT NULL DEFAULT 3600 CHECK (default_timeout >= 1),
    keep_executions     INTEGER NOT NULL DEFAULT 1000 CHECK (keep_executions >= 0),
    cleanup_days        INTEGER NOT NULL DEFAULT 30 CHECK (cleanup_days >= 0),
    alert_on_failure    INTEGER NOT NULL DEFAULT 1 CHECK (alert_on_failure IN (0, 1)),
    alert_email         TEXT,
    slack_webhook       TEXT,
    timezone            TEXT NOT NULL,
    shutdown_grace      INTEGER NOT NULL DEFAULT 30 CHECK (shutdown_grace >= 0),
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);

CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY,
    system            TEXT NOT NULL,
    name              TEXT NOT NULL,
    description       TEXT,
    schedule          TEXT NOT NULL,
    timezone          TEXT NOT NULL DEFAULT '',
    command           TEXT NOT NULL,
    params            TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(params) AND json_type(params) = 'object'),
    is_active         INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    timeout           INTEGER CHECK (timeout IS NULL OR timeout >= 1),
    retries           INTEGER NOT NULL DEFAULT 0 CHECK (retries >= 0),
    retry_delay       INTEGER NOT NULL DEFAULT 60 CHECK (retry_delay >= 0),
    backoff           TEXT NOT NULL DEFAULT 'linear' CHECK (backoff IN ('linear', 'exponential')),
    category          TEXT,
    priority          INTEGER NOT NULL DEFAULT 5 CHECK (priority BETWEEN 1 AND 10),
    max_runtime       INTEGER CHECK (max_runtime IS NULL OR max_runtime >= 1),
    allow_concurrent  INTEGER NOT NULL DEFAULT 0 CHECK (allow_concurrent IN (0, 1)),
    catch_up          TEXT NOT NULL DEFAULT 'none' CHECK (catch_up IN ('none', 'latest')),
    starting_deadline INTEGER CHECK (starting_deadline IS NULL OR starting_deadline >= 1),
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    last_run_at       TEXT,
    next_run_at       TEXT,
    UNIQUE (system, name)
);
CREATE INDEX jobs_system ON jobs (system);
CREATE INDEX jobs_is_active ON jobs (is_active);
CREATE INDEX jobs_next_run_at ON jobs (next_run_at);
CREATE INDEX jobs_category ON jobs (category);

CREATE TABLE executions (
    id               INTEGER PRIMARY KEY,
    job_id           INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    status           TEXT NOT NULL CHECK (status IN
                        ('running', 'success', 'failed', 'timeout', 'skipped', 'missed', 'interrupted')),
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
    UNIQUE (job_id, scheduled_for, attempt)
);
CREATE INDEX executions_job_id ON executions (job_id);
CREATE INDEX executions_status ON executions (status);
CREATE INDEX executions_started_at ON executions (started_at);
