-- cronmgr schema, version 9: chains (a job triggered by another job's end).
-- Never edit a shipped migration: add a new numbered file, for both engines.
-- The `chain` trigger is added to executions.triggered_by's CHECK by the store itself (SQLite
-- cannot change a CHECK in place; see allow_chain_trigger in store/mod.rs, which edits the
-- schema as SQLite's documentation describes instead of rebuilding a large table).

-- The jobs whose end triggers this one: ["NAME:success|failure|any", ...].
ALTER TABLE jobs ADD COLUMN after TEXT NOT NULL DEFAULT '[]'
    CHECK (json_valid(after) AND json_type(after) = 'array');
-- The execution whose end triggered this one (a chain).
ALTER TABLE executions ADD COLUMN caused_by INTEGER;
-- One start of a job per cause and attempt: a chain fires once, whichever runner records the end.
CREATE UNIQUE INDEX executions_chain_key ON executions (job_id, caused_by, attempt)
    WHERE caused_by IS NOT NULL;
