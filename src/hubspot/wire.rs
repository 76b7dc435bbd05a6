//! HubSpot's batch-create request and response shapes, exactly as sent and as defensively
//! as they must be read: every response field is optional, because status codes and
//! shapes have changed without notice.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// `POST .../batch/create` body: `{"inputs": [...]}`.
#[derive(Debug, Serialize)]
pub struct BatchCreateRequest<'a> {
    pub inputs: Vec<CreateInput<'a>>,
}

/// One input. `properties` and `associations` are the outbox's stored JSON texts, embedded
/// as they are (they were validated and canonicalised on the way in), so a batch is built
/// without parsing anything again. `associations` is always present, even when `[]`:
/// HubSpot's schema requires it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateInput<'a> {
    pub properties: &'a RawValue,
    pub associations: std::borrow::Cow<'a, RawValue>,
    pub object_write_trace_id: &'a str,
}

/// `POST .../batch/upsert` and `.../batch/update` body: `{"inputs": [...]}`.
#[derive(Debug, Serialize)]
pub struct BatchRecordRequest<'a> {
    pub inputs: Vec<RecordInput<'a>>,
}

/// One upsert or update input: the record by `id` (a value of `idProperty`, or a record
/// id when an update has no `idProperty`), its new property values, and the trace id.
/// HubSpot takes `idProperty` in each input (not as a query parameter) and no
/// `associations`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordInput<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_property: Option<&'a str>,
    pub id: &'a str,
    pub properties: &'a RawValue,
    pub object_write_trace_id: &'a str,
}

/// `POST /crm/v4/associations/{from}/{to}/batch/create` body.
#[derive(Debug, Serialize)]
pub struct BatchAssociateRequest<'a> {
    pub inputs: Vec<AssociateInput<'a>>,
}

/// One pair: record `from` to record `to`, with the association types (labels).
#[derive(Debug, Serialize)]
pub struct AssociateInput<'a> {
    pub from: IdRef<'a>,
    pub to: IdRef<'a>,
    pub types: &'a [AssociationTypeRef],
}

/// `{"id": "123"}`.
#[derive(Debug, Serialize)]
pub struct IdRef<'a> {
    pub id: &'a str,
}

/// `{"associationCategory": C, "associationTypeId": N}`, as the v4 endpoint takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociationTypeRef {
    pub association_category: String,
    pub association_type_id: i64,
}

/// `POST .../batch/read` body: values of a unique property (`idProperty`), and the
/// properties to return (the `idProperty` among them, to map results back).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchReadRequest<'a> {
    pub id_property: &'a str,
    pub inputs: Vec<ReadInput<'a>>,
    pub properties: Vec<&'a str>,
}

/// One value to look up.
#[derive(Debug, Serialize)]
pub struct ReadInput<'a> {
    pub id: &'a str,
}

/// A 2xx body (200, 201, 207): `results[]` and `errors[]`, either possibly absent.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BatchResponse {
    pub status: Option<String>,
    pub results: Vec<CreatedObject>,
    pub errors: Vec<BatchError>,
    pub num_errors: Option<u64>,
}

/// One created (or upserted, updated, read) object. `objectWriteTraceId` is in the
/// current schema; older responses lack it, which is why the reconciler can also match
/// by property values. An upsert's result says whether it created the record (`new`). A
/// v4 association result names its pair instead (`fromObjectId`, `toObjectId`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CreatedObject {
    #[serde(deserialize_with = "id_text")]
    pub id: Option<String>,
    pub properties: HashMap<String, Value>,
    pub object_write_trace_id: Option<String>,
    pub new: Option<bool>,
    #[serde(deserialize_with = "id_text")]
    pub from_object_id: Option<String>,
    #[serde(deserialize_with = "id_text")]
    pub to_object_id: Option<String>,
}

/// One entry of `errors[]` in a 2xx body. `context.objectWriteTraceId` names the inputs it
/// is about.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BatchError {
    pub status: Option<String>,
    pub category: Option<String>,
    pub message: Option<String>,
    pub context: HashMap<String, Value>,
    /// The entry as HubSpot sent it, kept for the error history.
    #[serde(skip)]
    pub raw: Value,
}

impl BatchError {
    /// The trace ids this error names (context values are arrays of strings; a plain
    /// string is accepted too).
    pub fn trace_ids(&self) -> Vec<String> {
        self.context_values("objectWriteTraceId")
    }

    /// The strings under one `context` key (a batch read's `ids` not found, say).
    pub fn context_values(&self, key: &str) -> Vec<String> {
        match self.context.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }
}

/// A non-2xx body. HubSpot's error bodies share these fields; 429s add `errorType` and
/// `policyName`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ErrorBody {
    pub status: Option<String>,
    pub message: Option<String>,
    pub category: Option<String>,
    pub correlation_id: Option<String>,
    pub error_type: Option<String>,
    pub policy_name: Option<String>,
    pub context: HashMap<String, Value>,
}

/// Ids are strings in HubSpot's schema; accept a number too rather than lose a result.
fn id_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) if !s.is_empty() => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// Parses a 2xx body, keeping each `errors[]` entry's raw JSON for the error history.
pub fn parse_batch_response(body: &[u8]) -> Result<BatchResponse, serde_json::Error> {
    let raw: Value = serde_json::from_slice(body)?;
    let mut parsed: BatchResponse = serde_json::from_value(raw.clone())?;
    if let Some(Value::Array(errors)) = raw.get("errors") {
        for (error, raw) in parsed.errors.iter_mut().zip(errors) {
            error.raw = raw.clone();
        }
    }
    Ok(parsed)
}

/// HubSpot's `X-HubSpot-RateLimit-*` headers on an answer, each optional: the limit
/// in force, what is left of it, its window, and what is left of the day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub max: Option<u32>,
    pub remaining: Option<u32>,
    pub interval_ms: Option<u64>,
    pub daily_remaining: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_exactly_hubspots_schema() {
        let props = RawValue::from_string(r#"{"email":"a@example.com"}"#.into()).unwrap();
        let assocs = RawValue::from_string("[]".into()).unwrap();
        let body = BatchCreateRequest {
            inputs: vec![CreateInput {
                properties: &props,
                associations: std::borrow::Cow::Borrowed(&assocs),
                object_write_trace_id: "t-1",
            }],
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"inputs":[{"properties":{"email":"a@example.com"},"associations":[],"objectWriteTraceId":"t-1"}]}"#
        );
    }

    #[test]
    fn a_207_body_keeps_results_errors_and_their_trace_ids() {
        let r = parse_batch_response(include_bytes!(
            "../../tests/fixtures/hubspot/207_multi_status.json"
        ))
        .unwrap();
        assert_eq!(r.results.len(), 1);
        assert_eq!(r.results[0].id.as_deref(), Some("701"));
        assert_eq!(r.results[0].object_write_trace_id.as_deref(), Some("good"));
        assert_eq!(r.errors[0].trace_ids(), ["bad"]);
        assert_eq!(r.errors[0].category.as_deref(), Some("VALIDATION_ERROR"));
        assert_eq!(
            r.errors[0].raw["errors"][0]["code"],
            "PROPERTY_DOESNT_EXIST"
        );
        assert_eq!(r.num_errors, Some(1));
    }

    #[test]
    fn missing_fields_and_numeric_ids_are_tolerated() {
        let r = parse_batch_response(br#"{"results":[{"id":42},{"properties":{}}]}"#).unwrap();
        assert_eq!(r.results[0].id.as_deref(), Some("42"));
        assert_eq!(r.results[1].id, None);
        assert!(r.errors.is_empty());
        assert!(parse_batch_response(b"{}").unwrap().results.is_empty());
        assert!(parse_batch_response(b"<html>").is_err());
    }
}
