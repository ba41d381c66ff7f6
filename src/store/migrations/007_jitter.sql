-- cronmgr schema, version 7: spreading a job's slots (`--jitter`).
-- Never edit a shipped migration: add a new numbered file, for both engines.

-- Seconds: each slot fires up to this much after its time; NULL: on time.
ALTER TABLE jobs ADD COLUMN jitter INTEGER CHECK (jitter IS NULL OR jitter >= 0);
