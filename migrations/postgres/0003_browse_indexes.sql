-- The dashboard at a million writes (issue 13; as SQLite's 0014, but for the counts: on
-- PostgreSQL the counts are still a GROUP BY, since one row per count would be a row
-- every daemon's every settle updates). A write found by its HubSpot id.
CREATE INDEX outbox_hubspot_id ON outbox (hubspot_id) WHERE hubspot_id IS NOT NULL;
