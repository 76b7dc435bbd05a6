-- The dashboard at a million writes (issue 13).
--
-- Writes per object type, operation and state, kept by triggers, so the overview,
-- `status` and `/metrics` read a few rows instead of counting every write (a GROUP BY
-- over a million rows took a second). Every change is an upsert of +1 or -1, so the
-- result does not depend on the order SQLite fires these and the SQL-insert guard in
-- (the guard rewrites a producer's row after it is inserted: -1 for the state it was
-- inserted with, +1 for pending). The daemon's own inserts are counted the same way,
-- row by row: one rule for every writer, whatever marks it sets.
CREATE TABLE write_counts (
    object_type TEXT    NOT NULL,
    operation   TEXT    NOT NULL,
    state       TEXT    NOT NULL,
    writes      INTEGER NOT NULL,
    PRIMARY KEY (object_type, operation, state)
) STRICT, WITHOUT ROWID;

INSERT INTO write_counts (object_type, operation, state, writes)
SELECT object_type, operation, state, count(*) FROM outbox GROUP BY object_type, operation, state;

CREATE TRIGGER write_counts_insert AFTER INSERT ON outbox
BEGIN
    INSERT INTO write_counts (object_type, operation, state, writes)
    VALUES (NEW.object_type, NEW.operation, NEW.state, 1)
    ON CONFLICT DO UPDATE SET writes = writes + 1;
END;

CREATE TRIGGER write_counts_update AFTER UPDATE OF object_type, operation, state ON outbox
WHEN OLD.object_type IS NOT NEW.object_type OR OLD.operation IS NOT NEW.operation
  OR OLD.state IS NOT NEW.state
BEGIN
    INSERT INTO write_counts (object_type, operation, state, writes)
    VALUES (OLD.object_type, OLD.operation, OLD.state, -1)
    ON CONFLICT DO UPDATE SET writes = writes - 1;
    INSERT INTO write_counts (object_type, operation, state, writes)
    VALUES (NEW.object_type, NEW.operation, NEW.state, 1)
    ON CONFLICT DO UPDATE SET writes = writes + 1;
END;

CREATE TRIGGER write_counts_delete AFTER DELETE ON outbox
BEGIN
    INSERT INTO write_counts (object_type, operation, state, writes)
    VALUES (OLD.object_type, OLD.operation, OLD.state, -1)
    ON CONFLICT DO UPDATE SET writes = writes - 1;
END;

-- The same view, from the counts.
DROP VIEW queue_depth;
CREATE VIEW queue_depth AS
SELECT object_type, operation, state, writes FROM write_counts WHERE writes != 0;

-- A write found by its HubSpot id (the dashboard's search; set once, when it succeeds).
CREATE INDEX outbox_hubspot_id ON outbox (hubspot_id) WHERE hubspot_id IS NOT NULL;
