-- cronmgr schema, version 2: alerts, missed-run detection, auto-disable, runner state, counters.
-- Never edit a shipped migration: add a new numbered file.

-- Per-system alert rules and channels (secrets: webhook_url, webhook_secret, slack_webhook).
ALTER TABLE settings ADD COLUMN alert_on_timeout INTEGER NOT NULL DEFAULT 1 CHECK (alert_on_timeout IN (0, 1));
ALTER TABLE settings ADD COLUMN webhook_url TEXT;
ALTER TABLE settings ADD COLUMN webhook_secret TEXT;
ALTER TABLE settings ADD COLUMN escalate_after INTEGER CHECK (escalate_after IS NULL OR escalate_after >= 1);
ALTER TABLE settings ADD COLUMN escalate_to TEXT;
ALTER TABLE settings ADD COLUMN disable_after INTEGER CHECK (disable_after IS NULL OR disable_after >= 1);
ALTER TABLE settings ADD COLUMN max_silence INTEGER CHECK (max_silence IS NULL OR max_silence >= 1);
ALTER TABLE settings ADD COLUMN cpu_threshold INTEGER NOT NULL DEFAULT 80 CHECK (cpu_threshold BETWEEN 1 AND 100);
ALTER TABLE settings ADD COLUMN cpu_window INTEGER NOT NULL DEFAULT 300 CHECK (cpu_window >= 0);
ALTER TABLE settings ADD COLUMN disk_min_free INTEGER NOT NULL DEFAULT 10 CHECK (disk_min_free BETWEEN 0 AND 100);
ALTER TABLE settings ADD COLUMN alert_rate_limit INTEGER NOT NULL DEFAULT 30 CHECK (alert_rate_limit >= 1);

-- Per-job overrides (NULL: the system's), the auto-disable reason, and what the runner keeps up to
-- date: the failure streak (runs whose last attempt failed, since the last success or enable).
ALTER TABLE jobs ADD COLUMN alerts_enabled INTEGER NOT NULL DEFAULT 1 CHECK (alerts_enabled IN (0, 1));
ALTER TABLE jobs ADD COLUMN alert_email TEXT;
ALTER TABLE jobs ADD COLUMN escalate_after INTEGER CHECK (escalate_after IS NULL OR escalate_after >= 1);
ALTER TABLE jobs ADD COLUMN disable_after INTEGER CHECK (disable_after IS NULL OR disable_after >= 1);
ALTER TABLE jobs ADD COLUMN max_silence INTEGER CHECK (max_silence IS NULL OR max_silence >= 1);
ALTER TABLE jobs ADD COLUMN disabled_reason TEXT;
ALTER TABLE jobs ADD COLUMN failure_streak INTEGER NOT NULL DEFAULT 0 CHECK (failure_streak >= 0);
ALTER TABLE jobs ADD COLUMN last_success_at TEXT;
ALTER TABLE jobs ADD COLUMN enabled_at TEXT;

UPDATE jobs SET last_success_at = (
    SELECT max(finished_at) FROM executions e WHERE e.job_id = jobs.id AND e.status = 'success');

-- One message per state change: a firing alert opens a condition, a resolved one closes it.
CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY,
    system       TEXT NOT NULL,
    job_id       INTEGER REFERENCES jobs (id) ON DELETE SET NULL,
    job          TEXT,
    kind         TEXT NOT NULL CHECK (kind IN
                    ('failed', 'timeout', 'escalated', 'disabled', 'silent', 'cpu', 'disk')),
    state        TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
    summary      TEXT NOT NULL,
    details      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details)),
    execution_id INTEGER,
    created_at   TEXT NOT NULL,
    resolved_at  TEXT
);
CREATE INDEX alerts_created_at ON alerts (created_at);

-- The conditions open now, one per (system, job, kind); job_id NULL for the host's (cpu, disk).
CREATE TABLE alert_conditions (
    system    TEXT NOT NULL,
    job_id    INTEGER REFERENCES jobs (id) ON DELETE CASCADE,
    kind      TEXT NOT NULL,
    alert_id  INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    opened_at TEXT NOT NULL
);
CREATE UNIQUE INDEX alert_conditions_key ON alert_conditions (system, ifnull(job_id, 0), kind);

-- The outbox: one row per (alert, channel), delivered by the runner's delivery thread.
CREATE TABLE alert_deliveries (
    id              INTEGER PRIMARY KEY,
    alert_id        INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    channel         TEXT NOT NULL CHECK (channel IN ('email', 'slack', 'webhook')),
    target          TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    last_error      TEXT,
    sent_at         TEXT
);
CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id);
CREATE INDEX alert_deliveries_state ON alert_deliveries (state, next_attempt_at);
CREATE INDEX alert_deliveries_sent ON alert_deliveries (channel, sent_at);

-- The runner that is (or was last) up: written at start, refreshed as it works.
CREATE TABLE runner_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    pid        INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    running    INTEGER NOT NULL DEFAULT 0,
    queued     INTEGER NOT NULL DEFAULT 0,
    capacity   INTEGER NOT NULL DEFAULT 0
);

-- Monotonic per-job counts of finished executions by status (Prometheus counters), kept by triggers
-- so every writer counts and retention does not make them go back.
CREATE TABLE job_run_counts (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    status TEXT NOT NULL,
    count  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, status)
) WITHOUT ROWID;
INSERT INTO job_run_counts (job_id, status, count)
    SELECT job_id, status, count(*) FROM executions WHERE status != 'running' GROUP BY job_id, status;

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

-- Bounded scans for status, stats and metrics on a big history.
CREATE INDEX executions_job_started ON executions (job_id, started_at);
