-- cronmgr schema, version 13: nothing for SQLite.
-- Never edit a shipped migration: add a new numbered file, for both engines.
-- On PostgreSQL this version makes the triggers on the runners' hot path cheaper (see
-- postgres/013_jobs_changed.sql). SQLite keeps its triggers: there a trigger is a function
-- call in the runner's own process, and its runner learns of changes from `PRAGMA data_version`.
SELECT 1;
