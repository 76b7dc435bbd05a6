-- The audit log (issue 13): every retry, discard and edit an operator makes, through the
-- command line, the socket or the dashboard, written in the change's own transaction.
-- Only the daemon and operators' commands write it; it is never purged by retention.
CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY,
    at      TEXT    NOT NULL,
    who     TEXT    NOT NULL,
    via     TEXT    NOT NULL CHECK (via IN ('command', 'socket', 'dashboard', 'dashboard-tcp')),
    action  TEXT    NOT NULL CHECK (action IN ('retry', 'discard', 'edit')),
    target  TEXT    NOT NULL,
    writes  INTEGER NOT NULL CHECK (writes >= 0),
    detail  TEXT
) STRICT;
