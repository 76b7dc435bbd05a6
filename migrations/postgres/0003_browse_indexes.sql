-- The dashboard at a million writes (issue 13; as SQLite's 0014, but for the counts: on
-- PostgreSQL the counts are still a GROUP BY, since one row per count would be a row
-- every daemon's every settle updates). The oldest pending write without reading every
-- pending row, and a write found by its HubSpot id.
CREATE INDEX outbox_pending_age ON outbox (created_at) WHERE state = 'pending';
CREATE INDEX outbox_hubspot_id ON outbox (hubspot_id) WHERE hubspot_id IS NOT NULL;
-- A state's writes in id order (the dashboard's list by state, newest first).
CREATE INDEX outbox_state_id ON outbox (state, id);
