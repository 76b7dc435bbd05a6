-- Resolve doubt by reading (issue 8, section 2).

-- The trace property the row's last create carried (NULL: none), set when a batch is
-- claimed, so that after a crash the row is read back by the property it was really sent
-- with, whatever the configuration says by then.
ALTER TABLE outbox ADD COLUMN sent_with TEXT;

-- Set on a pending row whose fate is unknown (no answer, a 5xx, a crash while in flight,
-- a conflict): before it is sent again, it is read back from HubSpot (`batch/read`) by
-- this property (its unique property, or the trace property it was sent with). Found: it
-- succeeds with that id; not found: it is sent again. NULL: send it.
ALTER TABLE outbox ADD COLUMN read_by TEXT;

-- Due read-backs per object type: what the scheduler claims before any create of the type.
CREATE INDEX outbox_read_due ON outbox (object_type, read_by, next_attempt_at, id)
    WHERE state = 'pending' AND validated = 1 AND read_by IS NOT NULL;
