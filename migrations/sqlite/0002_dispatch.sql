-- What the dispatcher needs beside the outbox: per-row batch hints, the history of every
-- error, a log line per request, the daily request count, and sending pauses. All of it
-- is readable by operators with the sqlite3 shell.

-- After a whole-batch 400 (or an unattributable 409) the batch is halved: the rows may
-- go next in a batch of at most this many. NULL: no cap.
ALTER TABLE outbox ADD COLUMN split_to INTEGER CHECK (split_to IS NULL OR split_to >= 1);

-- A remark on a succeeded row, e.g. that its id was adopted from a 409.
ALTER TABLE outbox ADD COLUMN note TEXT;

-- One row per error a write met, in order: what HubSpot (or the network) said.
CREATE TABLE error_history (
    id             INTEGER PRIMARY KEY,
    trace_id       TEXT    NOT NULL,
    attempt        INTEGER NOT NULL,
    batch_id       TEXT,
    at             TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- 0 when there was no HTTP answer (timeout, connection error, daemon restart).
    http_status    INTEGER NOT NULL,
    category       TEXT,
    message        TEXT    NOT NULL,
    correlation_id TEXT,
    -- The error as received (HubSpot's JSON), for the record.
    raw            TEXT
) STRICT;
CREATE INDEX error_history_trace ON error_history (trace_id, id);

-- One row per request sent to HubSpot.
CREATE TABLE batch_log (
    batch_id       TEXT    PRIMARY KEY,
    object_type    TEXT    NOT NULL,
    size           INTEGER NOT NULL,
    http_status    INTEGER NOT NULL,
    outcome        TEXT    NOT NULL,
    duration_ms    INTEGER NOT NULL,
    correlation_id TEXT,
    sent_at        TEXT    NOT NULL,
    finished_at    TEXT    NOT NULL
) STRICT;
CREATE INDEX batch_log_sent ON batch_log (sent_at);

-- Requests sent per day of the HubSpot account's time zone, counted when a batch is
-- claimed, so a restart never forgets what the day has used.
CREATE TABLE daily_usage (
    day      TEXT    PRIMARY KEY,
    requests INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Why sending is paused: scope 'all' or 'object:<type>'.
CREATE TABLE pauses (
    scope      TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('unauthorized', 'forbidden', 'rate_limited', 'daily_limit')),
    reason     TEXT NOT NULL,
    -- When sending may resume; NULL until a probe request succeeds.
    until      TEXT,
    updated_at TEXT NOT NULL
) STRICT;
