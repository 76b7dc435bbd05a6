//! One association of a write: its target (a record id or a queued write's trace id), its
//! types, and, for an upsert or update, its target object type.

use serde_json::{Map, Value};

use super::operation::target_type;
use super::{FieldError, MAX_STEP_ASSOCIATIONS, kind, refuse_unknown};
use crate::model::{
    Association, AssociationCategory, AssociationTarget, AssociationType, ObjectType, Operation,
    TraceId,
};

/// `from`: the write's object type and operation, when they are valid; an upsert's or
/// update's associations are created after the record, which needs each one's target
/// type (see [`target_type`]).
pub(super) fn parse_associations(
    value: &Value,
    from: Option<(&str, Operation)>,
) -> Result<Vec<Association>, Vec<FieldError>> {
    let Some(items) = value.as_array() else {
        return Err(vec![FieldError::new(
            "associations",
            format!("must be an array, not {}", kind(value)),
        )]);
    };
    let mut errors = Vec::new();
    if let Some((_, op)) = from
        && op != Operation::Create
        && items.len() > MAX_STEP_ASSOCIATIONS
    {
        errors.push(FieldError::new(
            "associations",
            format!(
                "an {} may carry at most {MAX_STEP_ASSOCIATIONS} associations",
                op.as_str()
            ),
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("associations[{i}]");
        match parse_association(&path, item) {
            Ok(a) => match target_type(&path, a, from) {
                Ok(a) => out.push(a),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// `{"to": {"id": "123"}, "types": [{"associationCategory": C, "associationTypeId": N}]}`.
fn parse_association(path: &str, value: &Value) -> Result<Association, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(obj) = value.as_object() else {
        return Err(vec![FieldError::new(
            path,
            "must be an object with `to` and `types`",
        )]);
    };
    refuse_unknown(path, obj, &["to", "toObjectType", "types"], &mut errors);
    let to_object_type = match obj.get("toObjectType") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => ObjectType::parse(s)
            .map_err(|m| errors.push(FieldError::new(format!("{path}.toObjectType"), m)))
            .ok(),
        Some(other) => {
            errors.push(FieldError::new(
                format!("{path}.toObjectType"),
                format!("must be a string, not {}", kind(other)),
            ));
            None
        }
    };
    let to = match obj.get("to").and_then(Value::as_object) {
        None => {
            errors.push(FieldError::new(
                format!("{path}.to"),
                "must be an object like {\"id\": \"123\"} or {\"objectWriteTraceId\": \"...\"}",
            ));
            None
        }
        Some(to) => parse_target(&format!("{path}.to"), to, &mut errors),
    };
    let types = match obj.get("types").and_then(Value::as_array) {
        Some(types) if !types.is_empty() => {
            let mut out = Vec::with_capacity(types.len());
            for (j, t) in types.iter().enumerate() {
                match parse_association_type(&format!("{path}.types[{j}]"), t) {
                    Ok(t) => out.push(t),
                    Err(e) => errors.extend(e),
                }
            }
            Some(out)
        }
        _ => {
            errors.push(FieldError::new(
                format!("{path}.types"),
                "must be a non-empty array",
            ));
            None
        }
    };
    match (to, types) {
        (Some(to), Some(types)) if errors.is_empty() => Ok(Association {
            to,
            to_object_type,
            types,
        }),
        _ => Err(errors),
    }
}

/// `{"id": "123"}` (a record) or `{"objectWriteTraceId": "company-42"}` (a write of
/// this outbox), exactly one of them.
fn parse_target(
    path: &str,
    to: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> Option<AssociationTarget> {
    refuse_unknown(path, to, &["id", "objectWriteTraceId"], errors);
    match (to.get("id"), to.get("objectWriteTraceId")) {
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(
                path,
                "names both a record `id` and a write's `objectWriteTraceId`; give one",
            ));
            None
        }
        (None, Some(Value::String(s))) => match TraceId::parse(s) {
            Ok(trace_id) => Some(AssociationTarget::Write { trace_id }),
            Err(m) => {
                errors.push(FieldError::new(format!("{path}.objectWriteTraceId"), m));
                None
            }
        },
        (None, Some(other)) => {
            errors.push(FieldError::new(
                format!("{path}.objectWriteTraceId"),
                format!("must be a string, not {}", kind(other)),
            ));
            None
        }
        (Some(Value::String(s)), None) if !s.is_empty() => {
            Some(AssociationTarget::Record { id: s.clone() })
        }
        // Ids are strings on the wire; accept a JSON integer and send its digits.
        (Some(Value::Number(n)), None) if n.is_u64() => {
            Some(AssociationTarget::Record { id: n.to_string() })
        }
        (Some(_), None) => {
            errors.push(FieldError::new(
                format!("{path}.id"),
                "must be a non-empty string",
            ));
            None
        }
        (None, None) => {
            errors.push(FieldError::new(
                path,
                "must name a record {\"id\": \"123\"} or a queued write {\"objectWriteTraceId\": \"...\"}",
            ));
            None
        }
    }
}

fn parse_association_type(path: &str, value: &Value) -> Result<AssociationType, Vec<FieldError>> {
    let Some(obj) = value.as_object() else {
        return Err(vec![FieldError::new(
            path,
            "must be an object with associationCategory and associationTypeId",
        )]);
    };
    let mut errors = Vec::new();
    refuse_unknown(
        path,
        obj,
        &["associationCategory", "associationTypeId"],
        &mut errors,
    );
    let category = match obj.get("associationCategory").and_then(Value::as_str) {
        Some(s) => AssociationCategory::parse(s).or_else(|| {
            errors.push(FieldError::new(
                format!("{path}.associationCategory"),
                format!(
                    "`{s}` is not one of HUBSPOT_DEFINED, USER_DEFINED, INTEGRATOR_DEFINED, WORK"
                ),
            ));
            None
        }),
        None => {
            errors.push(FieldError::new(
                format!("{path}.associationCategory"),
                "is required: one of HUBSPOT_DEFINED, USER_DEFINED, INTEGRATOR_DEFINED, WORK",
            ));
            None
        }
    };
    let type_id = match obj.get("associationTypeId").and_then(Value::as_i64) {
        Some(n) if n > 0 => Some(n),
        _ => {
            errors.push(FieldError::new(
                format!("{path}.associationTypeId"),
                "must be a positive integer",
            ));
            None
        }
    };
    match (category, type_id) {
        (Some(association_category), Some(association_type_id)) if errors.is_empty() => {
            Ok(AssociationType {
                association_category,
                association_type_id,
            })
        }
        _ => Err(errors),
    }
}
