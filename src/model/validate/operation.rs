//! The parts of a write that say what it does to its record: the operation, the record
//! an upsert or update names (`idProperty`, `id`), and the object type each association
//! of an upsert or update points at.

use serde_json::Value;

use super::{FieldError, kind};
use crate::model::association_types::{target_of, type_name};
use crate::model::{
    Association, AssociationCategory, MAX_PROPERTY_VALUE_CHARS, ObjectType, Operation, RecordKey,
};

/// `"operation"`: `create` (the default), `upsert` or `update`.
pub(super) fn parse_operation(value: Option<&Value>) -> Result<Operation, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(Operation::Create),
        Some(Value::String(s)) => Operation::parse(s).ok_or_else(|| {
            FieldError::new(
                "operation",
                format!("`{s}` is not one of create, upsert, update"),
            )
        }),
        Some(other) => Err(FieldError::new(
            "operation",
            format!("must be a string, not {}", kind(other)),
        )),
    }
}

/// A field given with a value (`null` counts as absent).
fn given(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

/// `"idProperty"` and `"id"`, as the operation needs them: none on a create; both on an
/// upsert; `id` on an update, a record id (digits) unless `idProperty` names the unique
/// property it is a value of (HubSpot takes any other `id` for a record id and may change
/// nothing).
pub(super) fn parse_key(
    operation: Operation,
    id_property: Option<&Value>,
    id: Option<&Value>,
) -> Result<Option<RecordKey>, Vec<FieldError>> {
    let mut errors = Vec::new();
    if operation == Operation::Create {
        for (name, v) in [("idProperty", id_property), ("id", id)] {
            if given(v).is_some() {
                errors.push(FieldError::new(
                    name,
                    "only an upsert or update names a record; a create has no `idProperty` or `id`",
                ));
            }
        }
        return if errors.is_empty() {
            Ok(None)
        } else {
            Err(errors)
        };
    }
    let op = operation.as_str();
    let id_property = match given(id_property) {
        None if operation == Operation::Upsert => {
            errors.push(FieldError::new(
                "idProperty",
                "is required for an upsert: a property with unique values (email for contacts, or a custom unique property)",
            ));
            None
        }
        None => None,
        Some(Value::String(s)) if is_property_name(s) => Some(s.clone()),
        Some(Value::String(_)) => {
            errors.push(FieldError::new(
                "idProperty",
                "must be a property name: 1 to 100 characters, no spaces or control characters",
            ));
            None
        }
        Some(other) => {
            errors.push(FieldError::new(
                "idProperty",
                format!("must be a string, not {}", kind(other)),
            ));
            None
        }
    };
    let id = match given(id) {
        None => {
            errors.push(FieldError::new("id", format!("is required for an {op}")));
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.push(FieldError::new("id", "must not be empty"));
            None
        }
        Some(Value::String(s)) if s.chars().count() > MAX_PROPERTY_VALUE_CHARS => {
            errors.push(FieldError::new(
                "id",
                format!("is longer than HubSpot's {MAX_PROPERTY_VALUE_CHARS} characters"),
            ));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        // A record id given as a JSON integer: sent as its digits.
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        Some(other) => {
            errors.push(FieldError::new(
                "id",
                format!("must be a non-empty string, not {}", kind(other)),
            ));
            None
        }
    };
    if let Some(id) = &id
        && operation == Operation::Update
        && id_property.is_none()
        && errors.iter().all(|e| e.field != "idProperty")
        && !id.bytes().all(|b| b.is_ascii_digit())
    {
        errors.push(FieldError::new(
            "id",
            "is not a HubSpot record id (digits); to update by a unique value, name its property in `idProperty`",
        ));
    }
    match id {
        Some(id) if errors.is_empty() => Ok(Some(RecordKey { id_property, id })),
        _ => Err(errors),
    }
}

/// A property name HubSpot could have: 1 to 100 characters, no whitespace or control
/// characters.
fn is_property_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 100 && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Settles an association's target type. A `HUBSPOT_DEFINED` type id from HubSpot's table
/// tells it ([`target_of`]); a `toObjectType` that contradicts it is refused. An upsert or
/// update needs it (its associations are created after the record, by type pair) and
/// stores the one the table tells; a create keeps what the producer gave, since HubSpot
/// takes its associations inline without it. An association to a queued write may leave
/// it out: the write's own object type fills it in when the reference is resolved.
pub(super) fn target_type(
    path: &str,
    mut a: Association,
    from: Option<(&str, Operation)>,
) -> Result<Association, FieldError> {
    let Some((from, op)) = from else {
        return Ok(a);
    };
    let told: Vec<&'static str> = a
        .types
        .iter()
        .filter(|t| t.association_category == AssociationCategory::HubspotDefined)
        .filter_map(|t| target_of(t.association_type_id, from))
        .collect();
    let field = format!("{path}.toObjectType");
    let given = a
        .to_object_type
        .as_ref()
        .map(|t| type_name(t.as_str()).to_owned());
    if let Some(first) = told.first() {
        if let Some(other) = told.iter().find(|t| *t != first) {
            return Err(FieldError::new(
                format!("{path}.types"),
                format!("its association types point at different object types ({first}, {other})"),
            ));
        }
        if let Some(given) = given.filter(|g| g != first) {
            return Err(FieldError::new(
                field,
                format!("is `{given}`, but the association type points from {from} to {first}"),
            ));
        }
        if op != Operation::Create && a.to_object_type.is_none() {
            a.to_object_type = Some(ObjectType::parse(first).expect("the table holds valid types"));
        }
        return Ok(a);
    }
    // A queued write's type is known when it is resolved (see `model::references`).
    if op != Operation::Create && a.to_object_type.is_none() && a.to.write().is_none() {
        return Err(FieldError::new(
            field,
            format!(
                "is required on an {}: its associations are created after the record, by \
                 object type pair, and no HUBSPOT_DEFINED type id from {from} tells the target",
                op.as_str()
            ),
        ));
    }
    Ok(a)
}
