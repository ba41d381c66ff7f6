-- cronmgr schema, version 3: the audit log, critical jobs, resource limits, run-as user, and the
-- settings that go with them. Never edit a shipped migration: add a new numbered file.

-- Who changed or triggered what. Written in the same transaction as the change it records; only
-- retention (audit_retention_days) deletes rows. No foreign key: a job's audit outlives the job.
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    uid        INTEGER NOT NULL,
    user       TEXT NOT NULL,                -- the name of uid, or the number when it has none
    sudo_user  TEXT,                         -- SUDO_USER, when set
    action     TEXT NOT NULL,                -- add, edit, rm, enable, disable, apply, import-crontab,
                                             -- settings, run-now, kill, prune, auto-disable
    system     TEXT NOT NULL,
    target     TEXT,                         -- a job name, a setting key, an execution id
    outcome    TEXT NOT NULL CHECK (outcome IN ('ok', 'refused')),
    reason     TEXT,                         -- why it was refused, or a note
    diff       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(diff))  -- {"field": {"before", "after"}}
);
CREATE INDEX audit_at ON audit (at);
CREATE INDEX audit_target ON audit (system, target);

ALTER TABLE jobs ADD COLUMN is_critical INTEGER NOT NULL DEFAULT 0 CHECK (is_critical IN (0, 1));
-- Limits set in the child before exec (NULL: the system's default, if any).
ALTER TABLE jobs ADD COLUMN memory_limit INTEGER CHECK (memory_limit IS NULL OR memory_limit >= 1);  -- bytes, RLIMIT_AS
ALTER TABLE jobs ADD COLUMN cpu_limit INTEGER CHECK (cpu_limit IS NULL OR cpu_limit >= 1);           -- seconds, RLIMIT_CPU
ALTER TABLE jobs ADD COLUMN nofile_limit INTEGER CHECK (nofile_limit IS NULL OR nofile_limit >= 1);  -- RLIMIT_NOFILE
ALTER TABLE jobs ADD COLUMN nproc_limit INTEGER CHECK (nproc_limit IS NULL OR nproc_limit >= 1);     -- RLIMIT_NPROC
-- Run as this user and group (names, resolved when the job is added and again at each run).
ALTER TABLE jobs ADD COLUMN run_user TEXT;
ALTER TABLE jobs ADD COLUMN run_group TEXT;

ALTER TABLE settings ADD COLUMN default_memory_limit INTEGER CHECK (default_memory_limit IS NULL OR default_memory_limit >= 1);
ALTER TABLE settings ADD COLUMN default_cpu_limit INTEGER CHECK (default_cpu_limit IS NULL OR default_cpu_limit >= 1);
ALTER TABLE settings ADD COLUMN default_nofile_limit INTEGER CHECK (default_nofile_limit IS NULL OR default_nofile_limit >= 1);
ALTER TABLE settings ADD COLUMN default_nproc_limit INTEGER CHECK (default_nproc_limit IS NULL OR default_nproc_limit >= 1);
ALTER TABLE settings ADD COLUMN audit_retention_days INTEGER NOT NULL DEFAULT 365 CHECK (audit_retention_days >= 0);
