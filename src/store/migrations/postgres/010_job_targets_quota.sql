-- cronmgr schema, version 10: per-job Slack and webhook targets, a CPU quota, and whether an
-- execution's memory figure is an upper bound and its CPU quota was enforced.
-- Never edit a shipped migration: add a new numbered file, for both engines.

-- The job's own Slack incoming-webhook URL and generic webhook URL: instead of the system's
-- slack_webhook / webhook_url for this job's alerts (as alert_email replaces the system's).
ALTER TABLE jobs ADD COLUMN alert_slack TEXT;
ALTER TABLE jobs ADD COLUMN alert_webhook TEXT;
-- Percent of one CPU (50: half a core; 200: two cores), enforced as cgroup v2 `cpu.max`.
ALTER TABLE jobs ADD COLUMN cpu_quota BIGINT CHECK (cpu_quota IS NULL OR cpu_quota > 0);

-- 1: memory_used_mb came from rusage (the runner's own size is counted in): an upper bound.
-- 0: the cgroup's memory.peak, exact. NULL: not measured, or recorded before version 10.
ALTER TABLE executions ADD COLUMN is_memory_upper_bound INTEGER CHECK (is_memory_upper_bound IN (0, 1));
-- The job had a CPU quota: 1 it was enforced (cpu.max), 0 it was not (no cgroup cpu controller).
-- NULL: no quota.
ALTER TABLE executions ADD COLUMN is_cpu_quota_enforced INTEGER CHECK (is_cpu_quota_enforced IN (0, 1));
