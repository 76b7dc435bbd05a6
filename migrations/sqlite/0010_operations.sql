-- Upsert and update beside create (issue 10): one queue for every record write.

-- What the write does: 'create' (the default, as before), 'upsert' (create or update the
-- record whose unique property id_property has the value record_key) or 'update' (the
-- record with HubSpot id record_key, or whose id_property has that value). The table
-- refuses a combination that means nothing, whoever inserts it.
ALTER TABLE outbox ADD COLUMN operation TEXT NOT NULL DEFAULT 'create'
    CONSTRAINT "operation must be create, upsert or update"
    CHECK (operation IN ('create', 'upsert', 'update'));
ALTER TABLE outbox ADD COLUMN id_property TEXT
    CONSTRAINT "id_property is for upsert and update only, 1 to 100 characters"
    CHECK (id_property IS NULL OR (operation != 'create' AND length(id_property) BETWEEN 1 AND 100));
ALTER TABLE outbox ADD COLUMN record_key TEXT
    CONSTRAINT "record_key is required for upsert and update (upsert also needs id_property) and not allowed on create"
    CHECK ((operation = 'create') = (record_key IS NULL)
           AND (record_key IS NULL OR length(record_key) >= 1)
           AND (operation != 'upsert' OR id_property IS NOT NULL));

-- Set by the daemon. Whether an upsert created its record (1) or updated one (0).
ALTER TABLE outbox ADD COLUMN new_record INTEGER CHECK (new_record IS NULL OR new_record IN (0, 1));
-- The record the write changes, `property=value` (lowercased): writes with the same key
-- are sent one at a time, in the order they were stored. NULL: no key (a create without
-- a value of its type's unique property).
ALTER TABLE outbox ADD COLUMN order_key TEXT;
-- An upsert or update with associations has two steps: 'record' (the upsert or update
-- itself) and, once the record exists (hubspot_id set), 'associations' (created through
-- HubSpot's v4 endpoint). The write is succeeded only when both are done.
ALTER TABLE outbox ADD COLUMN step TEXT NOT NULL DEFAULT 'record'
    CHECK (step IN ('record', 'associations'));
-- The target object types whose associations are created already (a JSON array), so a
-- replay redoes only what is missing. NULL: none.
ALTER TABLE outbox ADD COLUMN associations_done TEXT
    CHECK (associations_done IS NULL OR (json_valid(associations_done) AND json_type(associations_done) = 'array'));

-- Which kind of request a due write goes in: a batch holds one lane of one object type.
ALTER TABLE outbox ADD COLUMN lane TEXT GENERATED ALWAYS AS (
    CASE WHEN step = 'associations' THEN 'associations'
         WHEN operation = 'create' THEN 'create'
         ELSE operation || ':' || coalesce(id_property, '') END) VIRTUAL;

-- Due work per object type and lane, oldest first: what the scheduler claims from.
DROP INDEX outbox_due;
CREATE INDEX outbox_due ON outbox (object_type, lane, next_attempt_at, id)
    WHERE state = 'pending' AND validated = 1;

-- Unfinished writes per record, for keeping writes to one record in order.
CREATE INDEX outbox_order ON outbox (object_type, order_key, id)
    WHERE order_key IS NOT NULL AND state IN ('pending', 'in_flight');

-- The SQL-insert guard of migration 0007, with the daemon's new columns.
DROP TRIGGER outbox_sql_insert;
CREATE TRIGGER outbox_sql_insert AFTER INSERT ON outbox
WHEN NOT EXISTS (SELECT 1 FROM ingest_marker)
 AND (NEW.state != 'pending' OR NEW.validated != 0 OR NEW.attempts != 0
      OR NEW.hubspot_id IS NOT NULL OR NEW.last_error IS NOT NULL OR NEW.batch_id IS NOT NULL
      OR NEW.split_to IS NOT NULL OR NEW.note IS NOT NULL OR NEW.first_failed_at IS NOT NULL
      OR NEW.sent_with IS NOT NULL OR NEW.read_by IS NOT NULL
      OR NEW.new_record IS NOT NULL OR NEW.order_key IS NOT NULL OR NEW.step != 'record'
      OR NEW.associations_done IS NOT NULL
      OR NEW.next_attempt_at > strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
BEGIN
    UPDATE outbox
       SET state = 'pending', validated = 0, attempts = 0, hubspot_id = NULL,
           last_error = NULL, batch_id = NULL, split_to = NULL, note = NULL,
           first_failed_at = NULL, sent_with = NULL, read_by = NULL,
           new_record = NULL, order_key = NULL, step = 'record', associations_done = NULL,
           next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
     WHERE id = NEW.id;
END;

-- The operator views, with each write's operation.
DROP VIEW failed_writes;
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

DROP VIEW queue_depth;
CREATE VIEW queue_depth AS
SELECT object_type, operation, state, count(*) AS writes
FROM outbox
GROUP BY object_type, operation, state;
