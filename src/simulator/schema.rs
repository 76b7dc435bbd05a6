//! The simulator's properties API, as far as the daemon uses it: read one property,
//! list a type's property groups, create a property (text, optionally with unique values).
//! Creating needs `crm.schemas.*.write` (the `schema_write_forbidden` fault says the
//! token lacks it); a type holds at most 10 unique properties, as in HubSpot.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};

use super::Sim;
use super::gate::{admit, error_body, finish};

/// HubSpot allows this many unique-value properties per object type.
const MAX_UNIQUE: usize = 10;

/// A property created through the API.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimProperty {
    pub name: String,
    pub label: String,
    pub group_name: String,
    #[serde(rename = "hasUniqueValue")]
    pub unique: bool,
}

/// `GET /crm/v3/properties/{objectType}/{name}`: 200 with the property, 404 when missing.
pub async fn get_property(
    State(sim): State<Arc<Sim>>,
    Path((object_type, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    sim.count("property_get");
    let faults = sim.faults.lock().expect("lock").clone();
    let remaining = match admit(&sim, &headers, &faults).await {
        Ok(r) => r,
        Err((status, value, remaining)) => return finish(&sim, status, value, remaining),
    };
    let found = sim
        .schema
        .lock()
        .expect("lock")
        .get(&object_type)
        .and_then(|p| p.get(&name))
        .cloned();
    let (status, value) = match found {
        Some(p) => (StatusCode::OK, json!(p)),
        None if name == "email" && object_type == "contacts" => (
            StatusCode::OK,
            json!({"name": "email", "label": "Email", "groupName": "contactinformation", "hasUniqueValue": true}),
        ),
        None => error_body(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            &format!("Unable to find property {name} for object type {object_type}"),
        ),
    };
    finish(&sim, status, value, Some(remaining))
}

/// `GET /crm/v3/properties/{objectType}/groups`: `{singular}information`, as HubSpot's
/// standard objects have.
pub async fn groups(
    State(sim): State<Arc<Sim>>,
    Path(object_type): Path<String>,
    headers: HeaderMap,
) -> Response {
    sim.count("groups");
    let faults = sim.faults.lock().expect("lock").clone();
    let remaining = match admit(&sim, &headers, &faults).await {
        Ok(r) => r,
        Err((status, value, remaining)) => return finish(&sim, status, value, remaining),
    };
    let singular = object_type.strip_suffix('s').unwrap_or(&object_type);
    let body = json!({"results": [
        {"name": format!("{singular}information"), "label": "Information"},
        {"name": "analytics", "label": "Analytics"},
    ]});
    finish(&sim, StatusCode::OK, body, Some(remaining))
}

/// `POST /crm/v3/properties/{objectType}`.
pub async fn create_property(
    State(sim): State<Arc<Sim>>,
    Path(object_type): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    sim.count("property_create");
    let faults = sim.faults.lock().expect("lock").clone();
    let remaining = match admit(&sim, &headers, &faults).await {
        Ok(r) => r,
        Err((status, value, remaining)) => return finish(&sim, status, value, remaining),
    };
    if faults.schema_write_forbidden {
        let (status, value) = error_body(
            StatusCode::FORBIDDEN,
            "MISSING_SCOPES",
            "This app hasn't been granted all required scopes to make this call. Required: crm.schemas.contacts.write",
        );
        return finish(&sim, status, value, Some(remaining));
    }
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let (Some(name), Some(group)) = (text("name"), text("groupName")) else {
        let (status, value) = error_body(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "name and groupName are required",
        );
        return finish(&sim, status, value, Some(remaining));
    };
    let unique = body.get("hasUniqueValue").and_then(Value::as_bool) == Some(true);
    let mut schema = sim.schema.lock().expect("lock");
    let properties = schema.entry(object_type.clone()).or_default();
    let (status, value) = if properties.contains_key(&name) {
        error_body(
            StatusCode::CONFLICT,
            "OBJECT_ALREADY_EXISTS",
            &format!("A property named '{name}' already exists."),
        )
    } else if unique && properties.values().filter(|p| p.unique).count() >= MAX_UNIQUE {
        error_body(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Cannot create more than 10 unique value properties for this object type",
        )
    } else {
        let property = SimProperty {
            name: name.clone(),
            label: text("label").unwrap_or_else(|| name.clone()),
            group_name: group,
            unique,
        };
        properties.insert(name, property.clone());
        (StatusCode::CREATED, json!(property))
    };
    drop(schema);
    finish(&sim, status, value, Some(remaining))
}
