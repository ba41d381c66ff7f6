-- cronmgr schema, version 8: chains (a job triggered by another job's end).
-- Never edit a shipped migration: add a new numbered file, for both engines.
-- The `chain` trigger is added to executions.triggered_by's CHECK by the store itself (SQLite
-- cannot change a CHECK in place; see Store::migrate, which edits the schema as SQLite's
-- documentation describes instead of rebuilding a large table).

-- The jobs whose end triggers this one: ["NAME:success|failure|any", ...].
ALTER TABLE jobs ADD COLUMN after TEXT NOT NULL DEFAULT '[]'
    CHECK (json_valid(after) AND json_type(after) = 'array');
-- The execution whose end triggered this one (a chain).
ALTER TABLE executions ADD COLUMN caused_by INTEGER;
