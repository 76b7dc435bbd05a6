-- The dashboard at a million writes (issue 13; SQLite's 0014 keeps its counts by row
-- triggers). Writes per object type, operation and state without counting every row (the
-- GROUP BY over a million writes took 130 ms of every overview). As the queue's count
-- (0001): each statement that changes the counts appends its changes to
-- `write_count_changes`, and a daemon folds them into `write_counts`, so no producer's
-- transaction waits on a counter row. `queue_depth` shows the sum of both, and every
-- daemon start counts afresh (a count never drifts for long, even after rows changed with
-- the triggers off, as a logical replica or a restore does).

-- Nobody writes to the outbox between the count below and the triggers that keep it.
LOCK TABLE outbox IN SHARE ROW EXCLUSIVE MODE;

CREATE TABLE write_counts (
    object_type text   NOT NULL,
    operation   text   NOT NULL,
    state       text   NOT NULL,
    writes      bigint NOT NULL,
    PRIMARY KEY (object_type, operation, state)
);
INSERT INTO write_counts (object_type, operation, state, writes)
SELECT object_type, operation, state, count(*) FROM outbox GROUP BY object_type, operation, state;

CREATE TABLE write_count_changes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    object_type text   NOT NULL,
    operation   text   NOT NULL,
    state       text   NOT NULL,
    delta       bigint NOT NULL
);

-- 0001's statement triggers, each now also appending its statement's count changes.
CREATE OR REPLACE FUNCTION outbox_after_insert() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM new_rows WHERE state IN ('pending', 'waiting', 'in_flight');
    IF n != 0 THEN
        INSERT INTO queue_changes (delta) VALUES (n);
    END IF;
    INSERT INTO write_count_changes (object_type, operation, state, delta)
    SELECT object_type, operation, state, count(*) FROM new_rows
    GROUP BY object_type, operation, state;
    PERFORM pg_notify('hubspot_outbox', t) FROM (SELECT DISTINCT object_type AS t FROM new_rows) AS d;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION outbox_after_update() RETURNS trigger LANGUAGE plpgsql
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
    INSERT INTO write_count_changes (object_type, operation, state, delta)
    SELECT object_type, operation, state, sum(d) FROM (
        SELECT object_type, operation, state, 1 AS d FROM new_rows
        UNION ALL
        SELECT object_type, operation, state, -1 AS d FROM old_rows
    ) AS c
    GROUP BY object_type, operation, state HAVING sum(d) != 0;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION outbox_after_delete() RETURNS trigger LANGUAGE plpgsql
    SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    n bigint;
BEGIN
    SELECT count(*) INTO n FROM old_rows WHERE state IN ('pending', 'waiting', 'in_flight');
    IF n != 0 THEN
        INSERT INTO queue_changes (delta) VALUES (-n);
    END IF;
    INSERT INTO write_count_changes (object_type, operation, state, delta)
    SELECT object_type, operation, state, -count(*) FROM old_rows
    GROUP BY object_type, operation, state;
    RETURN NULL;
END $$;

-- The same view (its grants kept), from the counts.
CREATE OR REPLACE VIEW queue_depth AS
SELECT object_type, operation, state, sum(writes)::bigint AS writes
FROM (SELECT object_type, operation, state, writes FROM write_counts
      UNION ALL
      SELECT object_type, operation, state, delta FROM write_count_changes) AS c
GROUP BY object_type, operation, state
HAVING sum(writes) != 0;

-- The oldest pending write of each type, found without reading every pending row.
CREATE INDEX outbox_pending_by_type ON outbox (object_type, id) WHERE state = 'pending';
