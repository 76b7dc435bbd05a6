-- Outages fail nothing (issue 8, section 4).

-- When a write first failed transiently (a 5xx, a timeout, a lost connection): a write
-- gives up only once it has been failing for `retry.give_up_after`, so an outage shorter
-- than that fails nothing. NULL: it has not failed transiently since it was (re)queued.
ALTER TABLE outbox ADD COLUMN first_failed_at TEXT;

-- Two more kinds of pause: 'unreachable' (scope 'hubspot': requests in a row found no
-- connection, no answer or a 5xx; single probes until HubSpot answers) and 'rejected'
-- (scope 'object:<type>': HubSpot refused the request itself, a 404, 405, 415 or 422).
-- SQLite cannot change a CHECK in place: the table is rebuilt, its rows kept.
CREATE TABLE pauses_new (
    scope      TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('unauthorized', 'forbidden', 'rate_limited',
                                             'daily_limit', 'unreachable', 'rejected')),
    reason     TEXT NOT NULL,
    -- When sending may resume; NULL until a probe request succeeds.
    until      TEXT,
    updated_at TEXT NOT NULL
) STRICT;
INSERT INTO pauses_new (scope, kind, reason, until, updated_at)
    SELECT scope, kind, reason, until, updated_at FROM pauses;
DROP TABLE pauses;
ALTER TABLE pauses_new RENAME TO pauses;
