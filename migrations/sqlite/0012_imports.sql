-- Imports (issue 12, `hubspot-outbox import`): every export read into this outbox, by the
-- id its header carries, so the same file imported twice is refused whole, even a file
-- with no writes in it (its daily counts would otherwise be added again).
CREATE TABLE imports (
    export_id   TEXT PRIMARY KEY,
    exported_at TEXT NOT NULL,
    source      TEXT NOT NULL,
    imported_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;
