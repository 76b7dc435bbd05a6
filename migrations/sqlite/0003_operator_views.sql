-- Views for people who query the outbox with the sqlite3 shell (see README).

-- One row per failed write, with its last error's category and message.
CREATE VIEW failed_writes AS
SELECT o.trace_id,
       o.object_type,
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

-- How many writes each object type has in each state.
CREATE VIEW queue_depth AS
SELECT object_type, state, count(*) AS writes
FROM outbox
GROUP BY object_type, state;
