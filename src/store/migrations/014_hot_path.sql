-- cronmgr schema, version 14: nothing for SQLite.
-- Never edit a shipped migration: add a new numbered file, for both engines.
-- On PostgreSQL this version drops two indexes that repeat the first column of another, and
-- sends the `freed` notification once per statement (see postgres/014_hot_path.sql). SQLite
-- keeps both indexes: there `executions_job_id` also orders a job's executions by id (the rowid
-- ends every index), which the dashboard's newest status per job reads with one probe.
SELECT 1;
