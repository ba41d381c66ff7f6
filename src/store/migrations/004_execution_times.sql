-- When an execution happened, as history filters and retention read it: its start, or its slot for
-- rows that never started (skipped, missed). Indexed so `history --since` and age-based retention
-- read a range instead of the whole table.
CREATE INDEX executions_at ON executions (coalesce(started_at, scheduled_for));
