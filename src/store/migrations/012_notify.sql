-- cronmgr schema, version 12: nothing for SQLite.
-- Never edit a shipped migration: add a new numbered file, for both engines.
-- On PostgreSQL this version makes the writes that concern runners NOTIFY them (see
-- postgres/012_notify.sql). A runner on SQLite shares its host with every writer: the CLI nudges
-- it (SIGUSR1) and it reads `PRAGMA data_version`, as before.
SELECT 1;
