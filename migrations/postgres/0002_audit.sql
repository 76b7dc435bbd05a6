-- The audit log (issue 13; SQLite's 0013): every retry, discard and edit an operator
-- makes, through the command line, the socket or the dashboard, written in the change's
-- own transaction. A producer's role has no right on it.
CREATE TABLE audit_log (
    id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL,
    who     text        NOT NULL,
    via     text        NOT NULL CHECK (via IN ('command', 'socket', 'dashboard', 'dashboard-tcp')),
    action  text        NOT NULL CHECK (action IN ('retry', 'discard', 'edit')),
    target  text        NOT NULL,
    writes  bigint      NOT NULL CHECK (writes >= 0),
    detail  text
);
