//! A stored write as operators see it, in one shape for `GET /v1/writes`, `show --json`
//! and the socket's look-ups: camelCase like HubSpot, JSON columns as JSON.

use serde_json::{Value, json};

use crate::store::read::StoredWrite;

/// A stored write as the API shows it (camelCase like HubSpot; JSON columns as JSON).
pub fn write_json(w: &StoredWrite) -> Value {
    let as_json =
        |text: &str| serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    json!({
        "id": w.id,
        "objectWriteTraceId": w.trace_id,
        "objectType": w.object_type,
        "operation": w.operation,
        "idProperty": w.id_property,
        // The write's `id` (the record it names); `id` above is the row's key.
        "recordKey": w.record_key,
        "properties": as_json(&w.properties),
        "associations": as_json(&w.associations),
        "state": w.state,
        "hubspotId": w.hubspot_id,
        "new": w.new_record,
        "step": w.step,
        "associationsDone": w.associations_done.as_deref().map(as_json),
        // As written, when an association points at a queued write by trace id.
        "associationsAsWritten": w.referenced_associations.as_deref().map(as_json),
        "waitingFor": as_json(&w.waiting_for),
        "attempts": w.attempts,
        "lastError": w.last_error,
        "validated": w.validated,
        "nextAttemptAt": w.next_attempt_at,
        "createdAt": w.created_at,
        "updatedAt": w.updated_at,
    })
}
