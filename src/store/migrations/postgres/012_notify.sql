-- cronmgr schema, version 12, for PostgreSQL: runners are woken by LISTEN/NOTIFY instead of
-- polling each second (docs/fleet.md, "How runners learn of changes").
-- Never edit a shipped migration: add a new numbered file, for both engines.
--
-- Every notification goes to one channel, `cronmgr_changes`, and is sent by a trigger in the
-- transaction of the change, so no writer (the CLI, `apply`, `migrate`, the web dashboard, or
-- SQL typed by hand) can forget it, and it is delivered only if that transaction commits.
-- The payload is `SCHEMA:KIND`: LISTEN is per database, and several cronmgr schemas may share
-- one; a runner ignores the other schemas' notifications. KIND is
--   changes  jobs or settings changed (what bumps cronmgr_schema.changes): reload;
--   freed    an execution ended (it held a place under its system's cap, and maybe a job's
--            no-overlap rule): a slot waiting for the fleet's cap may be claimed now;
--   runners  a runner (or a run-now) joined: its lease is watched from now on.
-- PostgreSQL folds identical notifications of one transaction into one, so a batch of ends, or
-- an `apply` of a hundred jobs, notifies once.

CREATE OR REPLACE FUNCTION cronmgr_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE cronmgr_schema SET changes = changes + 1;
    PERFORM pg_notify('cronmgr_changes', TG_TABLE_SCHEMA || ':changes');
    RETURN NULL;
END $$;

-- The kind is the trigger's argument.
CREATE FUNCTION cronmgr_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cronmgr_changes', TG_TABLE_SCHEMA || ':' || TG_ARGV[0]);
    RETURN NULL;
END $$;

CREATE TRIGGER executions_freed AFTER UPDATE OF status ON executions FOR EACH ROW
    WHEN (OLD.status = 'running' AND NEW.status != 'running')
    EXECUTE FUNCTION cronmgr_notify('freed');
CREATE TRIGGER runners_joined AFTER INSERT ON runners FOR EACH STATEMENT
    EXECUTE FUNCTION cronmgr_notify('runners');
