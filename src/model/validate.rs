//! What a valid write is: pure checks that turn a producer's JSON into a [`NewWrite`], or
//! into errors that name the field at fault. Used by the socket API before storing and by
//! the intake for rows inserted with plain SQL, and by `retry --edit` before it requeues.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

mod association;
mod operation;

use crate::model::{Association, MAX_PROPERTY_VALUE_CHARS, NewWrite, ObjectType, TraceId};
use association::parse_associations;
use operation::{parse_key, parse_operation};

/// The most associations an upsert or update may carry: they are created after the
/// record, at most 100 per request to HubSpot's v4 endpoint, one request per target type.
pub const MAX_STEP_ASSOCIATIONS: usize = 100;

/// One thing wrong with a write: the field (a dotted path such as `properties.age` or
/// `associations[0].types[1].associationTypeId`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

const KNOWN_FIELDS: [&str; 7] = [
    "objectType",
    "operation",
    "idProperty",
    "id",
    "properties",
    "associations",
    "objectWriteTraceId",
];

/// Validates one write as sent to `POST /v1/writes`, collecting every error in it.
///
/// Unknown top-level fields are refused: a misspelt `associations` would otherwise be
/// dropped without a word.
///
/// Takes the value by value so property strings move into the write instead of being copied.
pub fn parse_write(value: Value) -> Result<NewWrite, Vec<FieldError>> {
    let mut obj = match value {
        Value::Object(obj) => obj,
        other => {
            return Err(vec![FieldError::new(
                "",
                format!("a write must be a JSON object, not {}", kind(&other)),
            )]);
        }
    };
    let mut errors = Vec::new();
    for key in obj.keys() {
        if !KNOWN_FIELDS.contains(&key.as_str()) {
            errors.push(FieldError::new(
                key.clone(),
                format!("unknown field; a write has {}", KNOWN_FIELDS.join(", ")),
            ));
        }
    }
    let object_type = match obj.get("objectType") {
        None => Err(FieldError::new("objectType", "is required")),
        Some(Value::String(s)) => {
            ObjectType::parse(s).map_err(|m| FieldError::new("objectType", m))
        }
        Some(other) => Err(FieldError::new(
            "objectType",
            format!("must be a string, not {}", kind(other)),
        )),
    };
    let properties = match obj.remove("properties") {
        None => Err(vec![FieldError::new("properties", "is required")]),
        Some(v) => parse_properties(v),
    };
    let operation = parse_operation(obj.get("operation"));
    let key = match &operation {
        Ok(op) => parse_key(*op, obj.get("idProperty"), obj.get("id")),
        Err(_) => Ok(None),
    };
    let target_from = match (&object_type, &operation) {
        (Ok(t), Ok(op)) => Some((t.as_str(), *op)),
        _ => None,
    };
    let associations = match obj.get("associations") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => parse_associations(v, target_from),
    };
    let trace_id = match obj.get("objectWriteTraceId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => TraceId::parse(s)
            .map(Some)
            .map_err(|m| FieldError::new("objectWriteTraceId", m)),
        Some(other) => Err(FieldError::new(
            "objectWriteTraceId",
            format!("must be a string, not {}", kind(other)),
        )),
    };
    if let (Ok(Some(own)), Ok(assocs)) = (&trace_id, &associations) {
        errors.extend(self_references(own, assocs));
    }
    let object_type = object_type.map_err(|e| errors.push(e));
    let operation = operation.map_err(|e| errors.push(e));
    let key = key.map_err(|e| errors.extend(e));
    let properties = properties.map_err(|e| errors.extend(e));
    let associations = associations.map_err(|e| errors.extend(e));
    let trace_id = trace_id.map_err(|e| errors.push(e));
    match (
        object_type,
        operation,
        key,
        properties,
        associations,
        trace_id,
    ) {
        (
            Ok(object_type),
            Ok(operation),
            Ok(key),
            Ok(properties),
            Ok(associations),
            Ok(trace_id),
        ) if errors.is_empty() => Ok(NewWrite {
            object_type,
            operation,
            key,
            properties,
            associations,
            trace_id,
        }),
        _ => Err(errors),
    }
}

/// A write that points at itself could never be sent: the smallest reference cycle.
fn self_references(own: &TraceId, associations: &[Association]) -> Vec<FieldError> {
    associations
        .iter()
        .enumerate()
        .filter(|(_, a)| a.to.write() == Some(own))
        .map(|(i, _)| {
            FieldError::new(
                format!("associations[{i}].to.objectWriteTraceId"),
                format!("points at this write itself (`{own}`): a reference cycle"),
            )
        })
        .collect()
}

/// A stored row's columns, as [`parse_stored`] checks them.
#[derive(Debug, Clone, Copy)]
pub struct StoredFields<'a> {
    pub object_type: &'a str,
    pub operation: &'a str,
    pub id_property: Option<&'a str>,
    pub record_key: Option<&'a str>,
    pub properties: &'a str,
    pub associations: &'a str,
}

impl<'a> StoredFields<'a> {
    /// A create's columns.
    pub fn create(object_type: &'a str, properties: &'a str, associations: &'a str) -> Self {
        Self {
            object_type,
            operation: "create",
            id_property: None,
            record_key: None,
            properties,
            associations,
        }
    }
}

/// Validates a row as stored (one a producer inserted with plain SQL, or one being
/// retried or compared). The table's CHECK constraints already ensured the JSON texts
/// parse as an object and an array, and the operation's columns go together.
pub fn parse_stored(row: &StoredFields<'_>) -> Result<NewWrite, Vec<FieldError>> {
    let props: Value = serde_json::from_str(row.properties)
        .map_err(|e| vec![FieldError::new("properties", format!("is not JSON: {e}"))])?;
    let assocs: Value = serde_json::from_str(row.associations)
        .map_err(|e| vec![FieldError::new("associations", format!("is not JSON: {e}"))])?;
    let mut obj = Map::new();
    obj.insert(
        "objectType".into(),
        Value::String(row.object_type.to_owned()),
    );
    obj.insert("operation".into(), Value::String(row.operation.to_owned()));
    if let Some(p) = row.id_property {
        obj.insert("idProperty".into(), Value::String(p.to_owned()));
    }
    if let Some(k) = row.record_key {
        obj.insert("id".into(), Value::String(k.to_owned()));
    }
    obj.insert("properties".into(), props);
    obj.insert("associations".into(), assocs);
    parse_write(Value::Object(obj))
}

/// Property values may be strings, numbers or booleans; the latter two are stored as their
/// string form because HubSpot takes only strings. Null, arrays and objects are refused:
/// HubSpot has no such property values, and guessing a conversion would hide a bug.
fn parse_properties(value: Value) -> Result<BTreeMap<String, String>, Vec<FieldError>> {
    let obj = match value {
        Value::Object(obj) => obj,
        other => {
            return Err(vec![FieldError::new(
                "properties",
                format!(
                    "must be an object of property names to values, not {}",
                    kind(&other)
                ),
            )]);
        }
    };
    let mut errors = Vec::new();
    let mut out = BTreeMap::new();
    for (name, v) in obj {
        if name.is_empty() {
            errors.push(FieldError::new(
                "properties.",
                "property names must not be empty",
            ));
            continue;
        }
        let text = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                errors.push(FieldError::new(
                    format!("properties.{name}"),
                    format!("must be a string, number or boolean, not {}", kind(&other)),
                ));
                continue;
            }
        };
        // Bytes bound characters from above: count characters only when it may matter.
        if text.len() > MAX_PROPERTY_VALUE_CHARS && text.chars().count() > MAX_PROPERTY_VALUE_CHARS
        {
            errors.push(FieldError::new(
                format!("properties.{name}"),
                format!("is longer than HubSpot's {MAX_PROPERTY_VALUE_CHARS} characters"),
            ));
            continue;
        }
        out.insert(name, text);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

pub(super) fn refuse_unknown(
    path: &str,
    obj: &Map<String, Value>,
    known: &[&str],
    errors: &mut Vec<FieldError>,
) {
    for key in obj.keys() {
        if !known.contains(&key.as_str()) {
            errors.push(FieldError::new(
                format!("{path}.{key}"),
                format!("unknown field; expected {}", known.join(", ")),
            ));
        }
    }
}

/// A JSON value's kind, for error messages.
pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Operation;
    use serde_json::json;

    fn fields(v: Value) -> Vec<String> {
        parse_write(v)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn numbers_and_booleans_become_strings() {
        let w = parse_write(json!({
            "objectType": "contacts",
            "properties": {"email": "a@example.com", "age": 42, "vip": true, "score": 1.5}
        }))
        .unwrap();
        assert_eq!(w.properties["age"], "42");
        assert_eq!(w.properties["vip"], "true");
        assert_eq!(w.properties["score"], "1.5");
        assert!(w.associations.is_empty());
        assert!(w.trace_id.is_none());
        assert_eq!(
            w.properties_json(),
            r#"{"age":"42","email":"a@example.com","score":"1.5","vip":"true"}"#
        );
    }

    #[test]
    fn null_object_and_array_values_are_refused_by_name() {
        let f = fields(json!({
            "objectType": "contacts",
            "properties": {"a": null, "b": {}, "c": [], "d": "ok"}
        }));
        assert_eq!(f, ["properties.a", "properties.b", "properties.c"]);
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        assert_eq!(fields(json!({})), ["objectType", "properties"]);
        assert_eq!(
            fields(json!({"objectType": 3, "properties": [], "objectWriteTraceId": 5})),
            ["objectType", "properties", "objectWriteTraceId"]
        );
        assert_eq!(
            fields(json!({"objectType": "contacts", "properties": {}, "asociations": []})),
            ["asociations"]
        );
        assert_eq!(fields(json!("contacts")), [""]);
    }

    #[test]
    fn association_shape_is_checked_field_by_field() {
        let f = fields(json!({
            "objectType": "contacts",
            "properties": {"email": "a@example.com"},
            "associations": [
                {"to": {"id": "1"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]},
                {"to": {"id": ""}, "types": [{"associationCategory": "MADE_UP", "associationTypeId": "x"}]},
                {"to": {"id": 7}, "types": []}
            ]
        }));
        assert_eq!(
            f,
            [
                "associations[1].to.id",
                "associations[1].types[0].associationCategory",
                "associations[1].types[0].associationTypeId",
                "associations[2].types"
            ]
        );
    }

    #[test]
    fn a_valid_association_is_kept_in_hubspot_shape() {
        let w = parse_write(json!({
            "objectType": "contacts",
            "properties": {},
            "associations": [{"to": {"id": 123}, "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": 9}]}],
            "objectWriteTraceId": "t-1"
        }))
        .unwrap();
        assert_eq!(
            w.associations_json(),
            r#"[{"to":{"id":"123"},"types":[{"associationCategory":"USER_DEFINED","associationTypeId":9}]}]"#
        );
        assert_eq!(w.trace_id.unwrap().as_str(), "t-1");
    }

    #[test]
    fn the_example_writes_in_config_are_valid() {
        let text = include_str!("../../config/example-writes.ndjson");
        for line in text.lines() {
            let w = parse_write(serde_json::from_str(line).unwrap()).unwrap();
            if w.operation != Operation::Create {
                assert!(w.associations.iter().all(|a| a.to_object_type.is_some()));
            }
        }
    }

    #[test]
    fn operations_need_their_keys_and_nothing_else() {
        let f = |v: Value| fields(v);
        assert_eq!(
            f(
                json!({"objectType": "contacts", "operation": "upsert", "id": "a", "properties": {}})
            ),
            ["idProperty"]
        );
        assert_eq!(
            f(json!({"objectType": "contacts", "operation": "update", "properties": {}})),
            ["id"]
        );
        assert_eq!(
            f(
                json!({"objectType": "contacts", "operation": "update", "id": "a@x", "properties": {}})
            ),
            ["id"]
        );
        assert_eq!(
            f(json!({"objectType": "contacts", "idProperty": "email", "id": "", "properties": {}})),
            ["idProperty", "id"]
        );
        assert_eq!(
            f(json!({"objectType": "contacts", "operation": "merge", "properties": {}})),
            ["operation"]
        );
        let w = parse_write(
            json!({"objectType": "contacts", "operation": "update", "idProperty": "email",
                                   "id": "A@x", "properties": {}}),
        )
        .unwrap();
        assert_eq!(w.order_key(None).as_deref(), Some("email=a@x"));
        let by_id = parse_write(
            json!({"objectType": "contacts", "operation": "update", "id": 42, "properties": {}}),
        )
        .unwrap();
        assert_eq!(by_id.order_key(None).as_deref(), Some("hs_object_id=42"));
    }

    #[test]
    fn an_upsert_association_needs_a_target_type_the_table_or_the_producer_gives() {
        let with = |assoc: Value| {
            parse_write(
                json!({"objectType": "contacts", "operation": "upsert", "idProperty": "email",
                               "id": "a@x", "properties": {}, "associations": [assoc]}),
            )
        };
        let told = with(json!({"to": {"id": "1"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]}))
            .unwrap();
        assert_eq!(
            told.associations[0]
                .to_object_type
                .as_ref()
                .unwrap()
                .as_str(),
            "companies"
        );
        let label = json!({"to": {"id": "1"}, "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": 9}]});
        assert_eq!(
            with(label.clone()).unwrap_err()[0].field,
            "associations[0].toObjectType"
        );
        let mut given = label;
        given["toObjectType"] = json!("p123_cars");
        assert!(with(given).is_ok());
        let contradicts = json!({"to": {"id": "1"}, "toObjectType": "deals",
                                 "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]});
        assert_eq!(
            with(contradicts).unwrap_err()[0].field,
            "associations[0].toObjectType"
        );
    }

    #[test]
    fn too_long_values_are_refused() {
        let long = "x".repeat(MAX_PROPERTY_VALUE_CHARS + 1);
        assert_eq!(
            fields(json!({"objectType": "contacts", "properties": {"bio": long}})),
            ["properties.bio"]
        );
    }

    #[test]
    fn stored_rows_are_checked_like_socket_writes() {
        let w = parse_stored(&StoredFields::create("contacts", r#"{"age": 3}"#, "[]")).unwrap();
        assert_eq!(w.properties["age"], "3");
        let e = parse_stored(&StoredFields::create(
            "contacts",
            "{}",
            r#"[{"to":{"id":"1"},"types":[{"associationCategory":"NOPE","associationTypeId":1}]}]"#,
        ))
        .unwrap_err();
        assert_eq!(e[0].field, "associations[0].types[0].associationCategory");
        assert_eq!(
            parse_stored(&StoredFields::create("Bad Type", "{}", "[]")).unwrap_err()[0].field,
            "objectType"
        );
    }
}
