-- The outbox on PostgreSQL (issue 12): the same table contract as on SQLite
-- (migrations/sqlite, as of its migration 0011), in one migration. Same columns, meanings,
-- defaults and states, so a producer's
--     INSERT INTO outbox (object_type, properties) VALUES ('contacts', '{"email":"a@example.com"}');
-- works here too, inside the producer's own transaction (the transactional outbox).
--
-- Differences, each for PostgreSQL's sake: JSON columns are jsonb (an object or array is
-- checked by the table); times are timestamptz; `validated` is a boolean; the SQL-insert
-- guard is a BEFORE INSERT trigger that rewrites the row instead of updating it after.
-- Every insert notifies channel `hubspot_outbox` at commit, so a listening daemon sees new
-- rows at once. The queue's count is kept as appended changes, not a counter row (see
-- `queue_changes`).

CREATE TABLE outbox (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trace_id        text        NOT NULL UNIQUE DEFAULT replace(gen_random_uuid()::text, '-', '')
                                CHECK (length(trace_id) BETWEEN 1 AND 255),
    object_type     text        NOT NULL CHECK (length(object_type) BETWEEN 1 AND 100),
    properties      jsonb       NOT NULL CHECK (jsonb_typeof(properties) = 'object'),
    associations    jsonb       NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(associations) = 'array'),
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'waiting', 'in_flight', 'succeeded',
                                                 'failed', 'unconfirmed', 'discarded')),
    hubspot_id      text,
    attempts        bigint      NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      text,
    validated       boolean     NOT NULL DEFAULT false,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    batch_id        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    split_to        bigint      CHECK (split_to IS NULL OR split_to >= 1),
    note            text,
    first_failed_at timestamptz,
    sent_with       text,
    read_by         text,
    operation       text        NOT NULL DEFAULT 'create'
        CONSTRAINT "operation must be create, upsert or update"
        CHECK (operation IN ('create', 'upsert', 'update')),
    id_property     text
        CONSTRAINT "id_property is for upsert and update only, 1 to 100 characters"
        CHECK (id_property IS NULL OR (operation != 'create' AND length(id_property) BETWEEN 1 AND 100)),
    record_key      text
        CONSTRAINT "record_key is required for upsert and update (upsert also needs id_property) and not allowed on create"
        CHECK ((operation = 'create') = (record_key IS NULL)
               AND (record_key IS NULL OR length(record_key) >= 1)
               AND (operation != 'upsert' OR id_property IS NOT NULL)),
    new_record      boolean,
    order_key       text,
    step            text        NOT NULL DEFAULT 'record' CHECK (step IN ('record', 'associations')),
    associations_done jsonb     CHECK (associations_done IS NULL OR jsonb_typeof(associations_done) = 'array'),
    lane            text GENERATED ALWAYS AS (
        CASE WHEN step = 'associations' THEN 'associations'
             WHEN operation = 'create' THEN 'create'
             ELSE operation || ':' || coalesce(id_property, '') END) STORED,
    referenced_associations jsonb
        CHECK (referenced_associations IS NULL OR jsonb_typeof(referenced_associations) = 'array'),
    -- PostgreSQL only: the daemon whose claim put the row in flight, as the key of the
    -- advisory lock that daemon holds for as long as it runs (see store::postgres).
    claimed_by      bigint
);

CREATE INDEX outbox_unvalidated ON outbox (id) WHERE NOT validated;
CREATE INDEX outbox_state ON outbox (state, object_type);
CREATE INDEX outbox_read_due ON outbox (object_type, read_by, next_attempt_at, id)
    WHERE state = 'pending' AND validated AND read_by IS NOT NULL;
CREATE INDEX outbox_finished ON outbox (state, updated_at)
    WHERE state IN ('succeeded', 'discarded');
CREATE INDEX outbox_due ON outbox (object_type, lane, next_attempt_at, id)
    WHERE state = 'pending' AND validated;
CREATE INDEX outbox_order ON outbox (object_type, order_key, id)
    WHERE order_key IS NOT NULL AND state IN ('pending', 'waiting', 'in_flight');

CREATE TABLE waits_for (
    trace_id      text        NOT NULL,
    write_id      bigint      NOT NULL,
    missing_since timestamptz,
    PRIMARY KEY (trace_id, write_id)
);
CREATE INDEX waits_for_write ON waits_for (write_id);
CREATE INDEX waits_for_missing ON waits_for (missing_since) WHERE missing_since IS NOT NULL;

CREATE TABLE error_history (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trace_id       text        NOT NULL,
    attempt        bigint      NOT NULL,
    batch_id       text,
    at             timestamptz NOT NULL DEFAULT now(),
    http_status    bigint      NOT NULL,
    category       text,
    message        text        NOT NULL,
    correlation_id text,
    raw            text
);
CREATE INDEX error_history_trace ON error_history (trace_id, id);

CREATE TABLE batch_log (
    batch_id       text        PRIMARY KEY,
    object_type    text        NOT NULL,
    size           bigint      NOT NULL,
    http_status    bigint      NOT NULL,
    outcome        text        NOT NULL,
    duration_ms    bigint      NOT NULL,
    correlation_id text,
    sent_at        timestamptz NOT NULL,
    finished_at    timestamptz NOT NULL
);
CREATE INDEX batch_log_sent ON batch_log (sent_at);

CREATE TABLE daily_usage (
    day      text    PRIMARY KEY,
    requests bigint  NOT NULL DEFAULT 0
);

CREATE TABLE pauses (
    scope      text        PRIMARY KEY,
    kind       text        NOT NULL CHECK (kind IN ('unauthorized', 'forbidden', 'rate_limited',
                                                    'daily_limit', 'unreachable', 'rejected')),
    reason     text        NOT NULL,
    until      timestamptz,
    updated_at timestamptz NOT NULL
);

CREATE TABLE trace_properties (
    object_type text        PRIMARY KEY,
    property    text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('ready', 'unavailable')),
    reason      text,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE purged_traces (
    trace_id  text        PRIMARY KEY,
    purged_at timestamptz NOT NULL
);
CREATE INDEX purged_traces_at ON purged_traces (purged_at);

-- The queue's count and cap (as on SQLite, migration 0008). Unfinished: pending, waiting
-- or in flight. Changes to the count are appended to `queue_changes` (one row per
-- statement, by the statement triggers below) and folded into `queue_count` by the daemon,
-- never updated in place: a counter row updated by every insert would make each
-- producer's transaction wait for every other one's commit. `queue_state` shows the sum.
CREATE TABLE queue_count (
    id          integer PRIMARY KEY CHECK (id = 1),
    queued      bigint  NOT NULL,
    max_queued  bigint  NOT NULL DEFAULT 0,
    full_reason text
);
INSERT INTO queue_count (id, queued) VALUES (1, 0);

CREATE TABLE queue_changes (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delta bigint NOT NULL
);

CREATE VIEW queue_state AS
SELECT id, queued + coalesce((SELECT sum(delta) FROM queue_changes), 0)::bigint AS queued,
       max_queued, full_reason
FROM queue_count;

-- The rate budget several daemons share (one HubSpot account): every departure any of them
-- took, by the database's clock, and the row whose lock orders the taking (held for the
-- few statements of a claim, never across a request).
CREATE TABLE rate_ledger (
    id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL
);
CREATE INDEX rate_ledger_at ON rate_ledger (at);
CREATE TABLE rate_budget (
    id integer PRIMARY KEY CHECK (id = 1)
);
INSERT INTO rate_budget (id) VALUES (1);

-- Times as the daemon reads them, in SQLite's stored format (`2026-12-04T21:00:00.000Z`).
CREATE FUNCTION outbox_ts(t timestamptz) RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- The trigger functions run as the daemon's role (SECURITY DEFINER, with the schema they
-- were made in), so a producer's role needs INSERT on `outbox` and nothing else: not the
-- queue's count, not the purged trace ids (see docs/postgresql.md, "Roles and grants").

-- Imports (`hubspot-outbox import`): every export read into this outbox, by the id its
-- header carries, so the same file imported twice is refused whole (as on SQLite, 0012).
CREATE TABLE imports (
    export_id   text        PRIMARY KEY,
    exported_at text        NOT NULL,
    source      text        NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now()
);

-- The daemon's own inserts (writes it validated on the way in, an import): its transaction
-- marks itself here, by backend and transaction id, and removes the mark before it
-- commits. A producer's role has no right on this table, so no producer can pass its rows
-- off as the daemon's (a custom setting could be set by any role).
CREATE TABLE ingest_marker (
    pid  integer PRIMARY KEY,
    xact bigint  NOT NULL
);
CREATE FUNCTION outbox_own_insert() RETURNS boolean LANGUAGE sql STABLE
    SET search_path FROM CURRENT AS $$
    SELECT EXISTS (SELECT 1 FROM ingest_marker
                   WHERE pid = pg_backend_pid() AND xact = txid_current_if_assigned())
$$;

-- Whatever a producer's INSERT says about the daemon's columns, the row enters as a new,
-- unvalidated, pending write due now.
CREATE FUNCTION outbox_before_insert() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM purged_traces WHERE trace_id = NEW.trace_id) THEN
        RAISE unique_violation USING MESSAGE =
            'duplicate key value violates unique constraint "outbox_trace_id_key" (a write with this trace id was sent and has since been purged: it is a duplicate)';
    END IF;
    IF NOT outbox_own_insert() THEN
        NEW.state := 'pending';
        NEW.validated := false;
        NEW.attempts := 0;
        NEW.hubspot_id := NULL;
        NEW.last_error := NULL;
        NEW.batch_id := NULL;
        NEW.split_to := NULL;
        NEW.note := NULL;
        NEW.first_failed_at := NULL;
        NEW.sent_with := NULL;
        NEW.read_by := NULL;
        NEW.new_record := NULL;
        NEW.order_key := NULL;
        NEW.step := 'record';
        NEW.associations_done := NULL;
        NEW.referenced_associations := NULL;
        NEW.claimed_by := NULL;
        NEW.next_attempt_at := least(NEW.next_attempt_at, now());
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER outbox_before_insert BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_before_insert();

-- A producer's insert is refused while the queue is full: checked once per statement,
-- against the count as of its start (a statement's own rows count from its end).
CREATE FUNCTION outbox_check_full() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT outbox_own_insert()
       AND EXISTS (SELECT 1 FROM queue_state
                   WHERE (max_queued > 0 AND queued >= max_queued) OR full_reason IS NOT NULL) THEN
        RAISE EXCEPTION 'hubspot-outbox: the queue is full (queue.max_queued or queue.min_free_disk; see `hubspot-outbox status`); nothing was stored, try again later';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_check_full BEFORE INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_check_full();

-- Counting unfinished writes (one `queue_changes` row per statement that changes the
-- count), and the notification a listening daemon wakes on (one per object type per
-- statement; PostgreSQL delivers it at commit, and not at all on a rollback).
CREATE FUNCTION outbox_after_insert() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM new_rows WHERE state IN ('pending', 'waiting', 'in_flight');
    IF n != 0 THEN
        INSERT INTO queue_changes (delta) VALUES (n);
    END IF;
    PERFORM pg_notify('hubspot_outbox', t) FROM (SELECT DISTINCT object_type AS t FROM new_rows) AS d;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_after_insert AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_after_insert();

CREATE FUNCTION outbox_after_update() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    n bigint;
BEGIN
    SELECT (SELECT count(*) FROM new_rows WHERE state IN ('pending', 'waiting', 'in_flight'))
         - (SELECT count(*) FROM old_rows WHERE state IN ('pending', 'waiting', 'in_flight'))
      INTO n;
    IF n != 0 THEN
        INSERT INTO queue_changes (delta) VALUES (n);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_after_update AFTER UPDATE ON outbox
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_after_update();

CREATE FUNCTION outbox_after_delete() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM old_rows WHERE state IN ('pending', 'waiting', 'in_flight');
    IF n != 0 THEN
        INSERT INTO queue_changes (delta) VALUES (-n);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_after_delete AFTER DELETE ON outbox
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_after_delete();

-- The operator views.
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
LEFT JOIN LATERAL (SELECT * FROM error_history AS h WHERE h.trace_id = o.trace_id
                   ORDER BY h.id DESC LIMIT 1) AS e ON true
WHERE o.state = 'failed';

CREATE VIEW queue_depth AS
SELECT object_type, operation, state, count(*) AS writes
FROM outbox
GROUP BY object_type, operation, state;
