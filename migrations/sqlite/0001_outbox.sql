-- The outbox: one row per write a producer handed to the daemon.
--
-- Producers may INSERT here directly (see README, "Front door 2"); every column but
-- object_type and properties has a default. The CHECK constraints are the table's own
-- guard against careless inserts: text that is not a JSON object/array is refused by
-- SQLite itself, before the daemon ever sees it. Deeper checks (object type form,
-- association shape, property value types) are done by the daemon, which marks rows that
-- fail them `failed` with a readable last_error.
--
-- Times are UTC text in one fixed format, 'YYYY-MM-DDTHH:MM:SS.sssZ', so they sort and
-- compare as strings and read well in the sqlite3 shell.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    trace_id        TEXT    NOT NULL UNIQUE DEFAULT (lower(hex(randomblob(16))))
                            CHECK (length(trace_id) BETWEEN 1 AND 255),
    object_type     TEXT    NOT NULL CHECK (length(object_type) BETWEEN 1 AND 100),
    properties      TEXT    NOT NULL
                            CHECK (json_valid(properties) AND json_type(properties) = 'object'),
    associations    TEXT    NOT NULL DEFAULT '[]'
                            CHECK (json_valid(associations) AND json_type(associations) = 'array'),
    -- 'unconfirmed' (HubSpot may have created it; an operator decides) and 'discarded'
    -- (given up by an operator, kept for the record) are set only by the daemon's
    -- dispatcher and operator commands; they are in the CHECK now so that adding them
    -- later does not need a table rebuild.
    state           TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (state IN ('pending', 'in_flight', 'succeeded', 'failed',
                                             'unconfirmed', 'discarded')),
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
    updated_at      TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

-- Rows the daemon has not validated yet (SQL inserts): small, since rows leave it at once.
CREATE INDEX outbox_unvalidated ON outbox (id) WHERE validated = 0;

-- Due work per object type, oldest first: what the scheduler claims from.
CREATE INDEX outbox_due ON outbox (object_type, next_attempt_at, id)
    WHERE state = 'pending' AND validated = 1;

-- Operators list rows by state (failed, in_flight after a crash) and object type.
CREATE INDEX outbox_state ON outbox (state, object_type);
