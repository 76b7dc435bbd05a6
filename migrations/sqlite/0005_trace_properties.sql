-- Per object type, whether the trace property (issue 8, section 1) can be used: 'ready'
-- (it exists with unique values, and every create carries it) or 'unavailable' (it could
-- not be had; the reason says why and how to fix it, and that type is sent without it).
-- Written by the daemon when it first sends a type; read by `status` and `/metrics`.
CREATE TABLE trace_properties (
    object_type TEXT PRIMARY KEY,
    property    TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('ready', 'unavailable')),
    reason      TEXT,
    updated_at  TEXT NOT NULL
) STRICT;
