-- Writes that point at writes still in the queue (issue 11).
--
-- An association's `to` may name another write by its trace id,
-- `{"to": {"objectWriteTraceId": "company-42"}, ...}`. Such a write is `waiting` until
-- every write it points at has succeeded; then its references are rewritten to HubSpot ids
-- (the associations as written are kept in `referenced_associations`) and it is due.
--
-- The state CHECK gains 'waiting'. SQLite cannot change a CHECK in place, so the table is
-- rebuilt with its rows, ids, indexes, triggers and views (SQLite's documented procedure:
-- new table, copy, drop, rename). The views go first: renaming checks every view.
DROP VIEW failed_writes;
DROP VIEW queue_depth;

CREATE TABLE outbox_new (
    id              INTEGER PRIMARY KEY,
    trace_id        TEXT    NOT NULL UNIQUE DEFAULT (lower(hex(randomblob(16))))
                            CHECK (length(trace_id) BETWEEN 1 AND 255),
    object_type     TEXT    NOT NULL CHECK (length(object_type) BETWEEN 1 AND 100),
    properties      TEXT    NOT NULL
                            CHECK (json_valid(properties) AND json_type(properties) = 'object'),
    associations    TEXT    NOT NULL DEFAULT '[]'
                            CHECK (json_valid(associations) AND json_type(associations) = 'array'),
    -- 'waiting': its associations point at writes not yet succeeded (never claimed).
    -- 'unconfirmed' (HubSpot may have created it; an operator decides) and 'discarded'
    -- (given up by an operator, kept for the record) are set only by the daemon.
    state           TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (state IN ('pending', 'waiting', 'in_flight', 'succeeded',
                                             'failed', 'unconfirmed', 'discarded')),
    hubspot_id      TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      TEXT,
    -- 0 until the daemon has checked the row against its own validation (rows from the
    -- socket API are checked before they are stored and arrive with 1).
    validated       INTEGER NOT NULL DEFAULT 0 CHECK (validated IN (0, 1)),
    -- When the row may next be sent; retries push it into the future.
    next_attempt_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- The batch that claimed the row while it is in flight.
    batch_id        TEXT,
    created_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    split_to        INTEGER CHECK (split_to IS NULL OR split_to >= 1),
    note            TEXT,
    first_failed_at TEXT,
    sent_with       TEXT,
    read_by         TEXT,
    operation       TEXT    NOT NULL DEFAULT 'create'
        CONSTRAINT "operation must be create, upsert or update"
        CHECK (operation IN ('create', 'upsert', 'update')),
    id_property     TEXT
        CONSTRAINT "id_property is for upsert and update only, 1 to 100 characters"
        CHECK (id_property IS NULL OR (operation != 'create' AND length(id_property) BETWEEN 1 AND 100)),
    record_key      TEXT
        CONSTRAINT "record_key is required for upsert and update (upsert also needs id_property) and not allowed on create"
        CHECK ((operation = 'create') = (record_key IS NULL)
               AND (record_key IS NULL OR length(record_key) >= 1)
               AND (operation != 'upsert' OR id_property IS NOT NULL)),
    new_record      INTEGER CHECK (new_record IS NULL OR new_record IN (0, 1)),
    order_key       TEXT,
    step            TEXT    NOT NULL DEFAULT 'record' CHECK (step IN ('record', 'associations')),
    associations_done TEXT
        CHECK (associations_done IS NULL OR (json_valid(associations_done) AND json_type(associations_done) = 'array')),
    lane            TEXT GENERATED ALWAYS AS (
        CASE WHEN step = 'associations' THEN 'associations'
             WHEN operation = 'create' THEN 'create'
             ELSE operation || ':' || coalesce(id_property, '') END) VIRTUAL,
    -- Set by the daemon. The associations as the producer wrote them, when one of them
    -- points at a write by trace id; `associations` then holds them with HubSpot ids once
    -- resolved. A retry starts again from these.
    referenced_associations TEXT
        CHECK (referenced_associations IS NULL
               OR (json_valid(referenced_associations) AND json_type(referenced_associations) = 'array'))
) STRICT;

INSERT INTO outbox_new (id, trace_id, object_type, properties, associations, state, hubspot_id,
                        attempts, last_error, validated, next_attempt_at, batch_id, created_at,
                        updated_at, split_to, note, first_failed_at, sent_with, read_by,
                        operation, id_property, record_key, new_record, order_key, step,
                        associations_done)
SELECT id, trace_id, object_type, properties, associations, state, hubspot_id,
       attempts, last_error, validated, next_attempt_at, batch_id, created_at,
       updated_at, split_to, note, first_failed_at, sent_with, read_by,
       operation, id_property, record_key, new_record, order_key, step,
       associations_done
FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;

-- Indexes as before; `outbox_order` now counts waiting writes among a record's unfinished
-- ones (a waiting write keeps its place in its record's order).
CREATE INDEX outbox_unvalidated ON outbox (id) WHERE validated = 0;
CREATE INDEX outbox_state ON outbox (state, object_type);
CREATE INDEX outbox_read_due ON outbox (object_type, read_by, next_attempt_at, id)
    WHERE state = 'pending' AND validated = 1 AND read_by IS NOT NULL;
CREATE INDEX outbox_finished ON outbox (state, updated_at)
    WHERE state IN ('succeeded', 'discarded');
CREATE INDEX outbox_due ON outbox (object_type, lane, next_attempt_at, id)
    WHERE state = 'pending' AND validated = 1;
CREATE INDEX outbox_order ON outbox (object_type, order_key, id)
    WHERE order_key IS NOT NULL AND state IN ('pending', 'waiting', 'in_flight');

-- Which writes wait for which: one row per (waiting write, trace id it points at), kept
-- only while the write waits, so finding the writes a settled write unblocks is one
-- look-up by trace id and never a scan of the waiting set. `missing_since`: when the
-- referenced write was first found not to be in the outbox (NULL: it is).
CREATE TABLE waits_for (
    trace_id      TEXT    NOT NULL,
    write_id      INTEGER NOT NULL,
    missing_since TEXT,
    PRIMARY KEY (trace_id, write_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX waits_for_write ON waits_for (write_id);
CREATE INDEX waits_for_missing ON waits_for (missing_since) WHERE missing_since IS NOT NULL;

-- Triggers as before; a waiting write counts as queued (it is not finished).
CREATE TRIGGER queue_cap BEFORE INSERT ON outbox
WHEN NOT EXISTS (SELECT 1 FROM ingest_marker)
 AND EXISTS (SELECT 1 FROM queue_state
             WHERE (max_queued > 0 AND queued >= max_queued) OR full_reason IS NOT NULL)
BEGIN
    SELECT RAISE(ABORT, 'hubspot-outbox: the queue is full (queue.max_queued or queue.min_free_disk; see `hubspot-outbox status`); nothing was stored, try again later');
END;

CREATE TRIGGER queue_count_insert AFTER INSERT ON outbox
WHEN NEW.state IN ('pending', 'waiting', 'in_flight') AND NOT EXISTS (SELECT 1 FROM ingest_marker)
BEGIN
    UPDATE queue_state SET queued = queued + 1;
END;

CREATE TRIGGER queue_count_update AFTER UPDATE OF state ON outbox
WHEN (OLD.state IN ('pending', 'waiting', 'in_flight')) != (NEW.state IN ('pending', 'waiting', 'in_flight'))
BEGIN
    UPDATE queue_state
       SET queued = queued + CASE WHEN NEW.state IN ('pending', 'waiting', 'in_flight') THEN 1 ELSE -1 END;
END;

CREATE TRIGGER queue_count_delete AFTER DELETE ON outbox
WHEN OLD.state IN ('pending', 'waiting', 'in_flight')
BEGIN
    UPDATE queue_state SET queued = queued - 1;
END;

CREATE TRIGGER outbox_purged_trace BEFORE INSERT ON outbox
WHEN EXISTS (SELECT 1 FROM purged_traces WHERE trace_id = NEW.trace_id)
BEGIN
    SELECT RAISE(ABORT, 'UNIQUE constraint failed: outbox.trace_id (a write with this trace id was sent and has since been purged: it is a duplicate)');
END;

-- The SQL-insert guard, with the new column: a producer's row enters as a new pending,
-- unvalidated write; the intake finds its references and makes it wait.
CREATE TRIGGER outbox_sql_insert AFTER INSERT ON outbox
WHEN NOT EXISTS (SELECT 1 FROM ingest_marker)
 AND (NEW.state != 'pending' OR NEW.validated != 0 OR NEW.attempts != 0
      OR NEW.hubspot_id IS NOT NULL OR NEW.last_error IS NOT NULL OR NEW.batch_id IS NOT NULL
      OR NEW.split_to IS NOT NULL OR NEW.note IS NOT NULL OR NEW.first_failed_at IS NOT NULL
      OR NEW.sent_with IS NOT NULL OR NEW.read_by IS NOT NULL
      OR NEW.new_record IS NOT NULL OR NEW.order_key IS NOT NULL OR NEW.step != 'record'
      OR NEW.associations_done IS NOT NULL OR NEW.referenced_associations IS NOT NULL
      OR NEW.next_attempt_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
BEGIN
    UPDATE outbox
       SET state = 'pending', validated = 0, attempts = 0, hubspot_id = NULL,
           last_error = NULL, batch_id = NULL, split_to = NULL, note = NULL,
           first_failed_at = NULL, sent_with = NULL, read_by = NULL,
           new_record = NULL, order_key = NULL, step = 'record', associations_done = NULL,
           referenced_associations = NULL,
           next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
     WHERE id = NEW.id;
END;

-- The operator views, as in migration 0010.
CREATE VIEW failed_writes AS
SELECT o.trace_id,
       o.object_type,
       o.operation,
       o.id_property,
       o.record_key,
       o.hubspot_id,
       o.attempts,
       coalesce(e.category, CASE WHEN o.last_error LIKE 'invalid write:%' THEN 'INVALID_WRITE' END) AS category,
       coalesce(e.message, o.last_error) AS message,
       o.last_error,
       e.correlation_id,
       o.updated_at AS failed_at
FROM outbox AS o
LEFT JOIN error_history AS e
       ON e.id = (SELECT max(id) FROM error_history WHERE trace_id = o.trace_id)
WHERE o.state = 'failed';

CREATE VIEW queue_depth AS
SELECT object_type, operation, state, count(*) AS writes
FROM outbox
GROUP BY object_type, operation, state;
