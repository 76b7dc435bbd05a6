-- Retention (issue 9): succeeded and discarded writes are purged automatically after
-- `retention.succeeded` / `retention.discarded`, with their error history and batch log.
-- Their trace ids are remembered here for `retention.trace_ids`, so a producer retrying an
-- old write still gets "duplicate" rather than a second record.
CREATE TABLE purged_traces (
    trace_id  TEXT PRIMARY KEY,
    purged_at TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX purged_traces_at ON purged_traces (purged_at);

-- A producer's insert that repeats a purged write's trace id is refused, as the UNIQUE
-- constraint refused it before the purge.
CREATE TRIGGER outbox_purged_trace BEFORE INSERT ON outbox
WHEN EXISTS (SELECT 1 FROM purged_traces WHERE trace_id = NEW.trace_id)
BEGIN
    SELECT RAISE(ABORT, 'UNIQUE constraint failed: outbox.trace_id (a write with this trace id was sent and has since been purged: it is a duplicate)');
END;

-- Finished writes by age, for the purge.
CREATE INDEX outbox_finished ON outbox (state, updated_at)
    WHERE state IN ('succeeded', 'discarded');
