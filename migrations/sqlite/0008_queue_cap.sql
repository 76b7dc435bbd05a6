-- The queue is bounded (issue 9): writes not yet finished (pending or in flight) are
-- counted as they come and go, and past `queue.max_queued`, or while the database's disk
-- is short of `queue.min_free_disk`, new writes are refused: the socket answers 503, and a
-- producer's INSERT fails with the message below. Writes already accepted keep flowing.

CREATE TABLE queue_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    -- Writes pending or in flight, kept by the triggers below (and by the daemon for the
    -- rows it inserts, once per group).
    queued      INTEGER NOT NULL,
    -- queue.max_queued, written by the daemon at start; 0: no cap.
    max_queued  INTEGER NOT NULL DEFAULT 0,
    -- Set by the daemon while the disk is short of space (why, in words); NULL otherwise.
    full_reason TEXT
) STRICT;
INSERT INTO queue_state (id, queued)
SELECT 1, count(*) FROM outbox WHERE state IN ('pending', 'in_flight');

-- A producer's insert past the cap is refused by the database itself.
CREATE TRIGGER queue_cap BEFORE INSERT ON outbox
WHEN NOT EXISTS (SELECT 1 FROM ingest_marker)
 AND EXISTS (SELECT 1 FROM queue_state
             WHERE (max_queued > 0 AND queued >= max_queued) OR full_reason IS NOT NULL)
BEGIN
    SELECT RAISE(ABORT, 'hubspot-outbox: the queue is full (queue.max_queued or queue.min_free_disk; see `hubspot-outbox status`); nothing was stored, try again later');
END;

-- The daemon counts the rows it inserts itself, one update per group.
CREATE TRIGGER queue_count_insert AFTER INSERT ON outbox
WHEN NEW.state IN ('pending', 'in_flight') AND NOT EXISTS (SELECT 1 FROM ingest_marker)
BEGIN
    UPDATE queue_state SET queued = queued + 1;
END;

CREATE TRIGGER queue_count_update AFTER UPDATE OF state ON outbox
WHEN (OLD.state IN ('pending', 'in_flight')) != (NEW.state IN ('pending', 'in_flight'))
BEGIN
    UPDATE queue_state
       SET queued = queued + CASE WHEN NEW.state IN ('pending', 'in_flight') THEN 1 ELSE -1 END;
END;

CREATE TRIGGER queue_count_delete AFTER DELETE ON outbox
WHEN OLD.state IN ('pending', 'in_flight')
BEGIN
    UPDATE queue_state SET queued = queued - 1;
END;
