-- SQL producers stay inside the state machine (issue 9). Whatever a producer's INSERT says
-- about the state, validation, attempts, HubSpot id or batch columns, the row enters as a
-- new pending write that the daemon's intake validates before anything is sent.

-- While the daemon inserts writes it has already validated (the socket's), this table
-- holds one row, inside the daemon's own write transaction and deleted before it commits.
-- SQLite admits one writer at a time, so no other connection ever sees that row.
CREATE TABLE ingest_marker (
    id INTEGER PRIMARY KEY CHECK (id = 1)
) STRICT;

-- Any other insert is made a new, unvalidated, pending write due now. (The daemon's
-- columns a producer did not touch already hold these values, and then nothing is
-- rewritten.)
CREATE TRIGGER outbox_sql_insert AFTER INSERT ON outbox
WHEN NOT EXISTS (SELECT 1 FROM ingest_marker)
 AND (NEW.state != 'pending' OR NEW.validated != 0 OR NEW.attempts != 0
      OR NEW.hubspot_id IS NOT NULL OR NEW.last_error IS NOT NULL OR NEW.batch_id IS NOT NULL
      OR NEW.split_to IS NOT NULL OR NEW.note IS NOT NULL OR NEW.first_failed_at IS NOT NULL
      OR NEW.sent_with IS NOT NULL OR NEW.read_by IS NOT NULL
      OR NEW.next_attempt_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
BEGIN
    UPDATE outbox
       SET state = 'pending', validated = 0, attempts = 0, hubspot_id = NULL,
           last_error = NULL, batch_id = NULL, split_to = NULL, note = NULL,
           first_failed_at = NULL, sent_with = NULL, read_by = NULL,
           next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
     WHERE id = NEW.id;
END;
