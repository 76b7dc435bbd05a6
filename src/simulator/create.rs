//! The simulator's batch create: token, limits, schema and faults checked in the order
//! HubSpot checks them, then the objects created and the answer shaped like HubSpot's.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use super::gate::{CLOSE, HANG, admit, after_writing, error_body, finish};
use super::{Sim, SimFaults, SimObject, known_type};
use crate::model::association_types::{target_of, type_name};

/// Which object batch endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Upsert,
    Update,
}

pub async fn create_v3(
    State(sim): State<Arc<Sim>>,
    Path((object_type, action)): Path<(String, Action)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(sim, object_type, action, headers, body).await
}

pub async fn create_dated(
    State(sim): State<Arc<Sim>>,
    Path((_version, object_type, action)): Path<(String, String, Action)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(sim, object_type, action, headers, body).await
}

async fn create(
    sim: Arc<Sim>,
    object_type: String,
    action: Action,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if action != Action::Create {
        sim.count(match action {
            Action::Upsert => "upsert",
            _ => "update",
        });
    }
    let faults = sim.faults.lock().expect("lock").clone();
    let remaining = match admit(&sim, &headers, &faults).await {
        Ok(remaining) => remaining,
        Err((status, value, remaining)) => return finish(&sim, status, value, remaining),
    };
    let (status, value) = decide(&sim, &object_type, action, &body, &faults);
    if status == HANG {
        sim.count("hang_after_create");
        // Created, and never answered: the client times out, as after a lost connection.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if status == CLOSE {
        sim.count("close_after_create");
        // Created, then the connection breaks: the body fails, and hyper drops the
        // connection instead of finishing the answer.
        return Response::new(axum::body::Body::new(BrokenBody));
    }
    finish(&sim, status, value, Some(remaining))
}

/// Batch create's (upsert's, update's) own checks, in HubSpot's order, then the objects
/// created or changed.
fn decide(
    sim: &Sim,
    object_type: &str,
    action: Action,
    body: &[u8],
    faults: &SimFaults,
) -> (StatusCode, Value) {
    if rand::random::<f64>() < faults.fail_rate {
        return error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "simulated outage",
        );
    }
    if faults.forbidden_types.iter().any(|t| t == object_type) {
        return error_body(
            StatusCode::FORBIDDEN,
            "MISSING_SCOPES",
            "This app hasn't been granted all required scopes to make this call.",
        );
    }
    if !known_type(object_type) {
        return error_body(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("Unable to infer object type from: {object_type}"),
        );
    }
    match action {
        Action::Create => create_inputs(sim, object_type, body, faults),
        Action::Upsert | Action::Update => {
            super::record::apply(sim, object_type, action == Action::Upsert, body, faults)
        }
    }
}

/// A response body that fails at once, so the connection is dropped mid-answer.
struct BrokenBody;

impl http_body::Body for BrokenBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::other(
            "simulated connection loss",
        ))))
    }
}

/// A unique value that exists: HubSpot's 409 naming the existing id, or, for a created
/// (custom) unique property when the fault asks for it, its whole-batch 400.
fn conflict(
    builtin: bool,
    faults: &SimFaults,
    property: &str,
    value: &str,
    existing: &str,
) -> (StatusCode, Value) {
    if !builtin && faults.custom_conflict_400 {
        return error_body(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("Property \"{property}\" already has that value: {value}"),
        );
    }
    let kind = if builtin { "Contact" } else { "Object" };
    error_body(
        StatusCode::CONFLICT,
        "OBJECT_ALREADY_EXISTS",
        &format!("{kind} already exists. Existing ID: {existing}"),
    )
}

/// One input after schema checks.
struct Input {
    properties: BTreeMap<String, String>,
    trace_id: Option<String>,
    /// Inline associations: the record id `to.id` names ("" when absent) and the types
    /// as `CATEGORY/typeId`.
    associations: Vec<(String, Vec<String>)>,
}

/// The object type of the record an inline association points at: HubSpot takes only
/// records that exist, of the type a HUBSPOT_DEFINED type id says (else of any type). The
/// simulator's ids are unique across types.
fn association_target(
    sim: &Sim,
    from: &str,
    to_id: &str,
    types: &[String],
) -> Result<String, String> {
    let objects = sim.objects.lock().expect("lock");
    let found = objects
        .iter()
        .find(|(_, o)| o.iter().any(|o| o.id == to_id))
        .map(|(t, _)| type_name(t).to_owned())
        .ok_or_else(|| format!("Association target {to_id:?} does not exist"))?;
    let told = types.iter().find_map(|t| {
        let n = t.strip_prefix("HUBSPOT_DEFINED/")?.parse().ok()?;
        Some(target_of(n, from).map(str::to_owned))
    });
    match told {
        Some(Some(t)) if t == found => Ok(found),
        Some(_) => Err(format!(
            "{} is not a valid association type between {from} and {found}",
            types.join(", ")
        )),
        None => Ok(found),
    }
}

fn create_inputs(
    sim: &Sim,
    object_type: &str,
    body: &[u8],
    faults: &SimFaults,
) -> (StatusCode, Value) {
    let inputs = match parse_inputs(body) {
        Ok(inputs) => inputs,
        Err(message) => return error_body(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &message),
    };
    let traced: HashSet<&str> = inputs
        .iter()
        .filter_map(|i| i.trace_id.as_deref())
        .collect();
    let per_input = traced.len() == inputs.len() && !faults.whole_batch_errors;
    let mut errors = Vec::new();
    let mut valid = Vec::new();
    for input in &inputs {
        if let Some(problem) = input
            .associations
            .iter()
            .find_map(|(to, types)| association_target(sim, object_type, to, types).err())
        {
            errors.push(json!({
                "status": "error", "category": "VALIDATION_ERROR", "message": problem,
                "context": {"objectWriteTraceId": [input.trace_id.clone().unwrap_or_default()]}
            }));
            continue;
        }
        match input.properties.keys().find(|k| !sim.property_exists(object_type, k)) {
            Some(name) => errors.push(json!({
                "status": "error", "category": "VALIDATION_ERROR",
                "message": format!("Property values were not valid: [{{\"isValid\":false,\"message\":\"Property \\\"{name}\\\" does not exist\",\"error\":\"PROPERTY_DOESNT_EXIST\",\"name\":\"{name}\"}}]"),
                "context": {"objectWriteTraceId": [input.trace_id.clone().unwrap_or_default()]},
                "errors": [{"message": format!("Property \"{name}\" does not exist"), "code": "PROPERTY_DOESNT_EXIST"}]
            })),
            None => valid.push(input),
        }
    }
    if !errors.is_empty() && !per_input {
        let message = errors[0]["message"].as_str().unwrap_or_default().to_owned();
        return error_body(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &message);
    }
    let mut objects = sim.objects.lock().expect("lock");
    let mut index = sim.unique_index.lock().expect("lock");
    let stored = objects.entry(object_type.to_owned()).or_default();
    let uniques = sim.unique_properties(object_type);
    for unique in &uniques {
        let builtin = unique == "email";
        let mut seen = HashSet::new();
        for input in &valid {
            let Some(value) = input.properties.get(unique).map(|v| v.to_lowercase()) else {
                continue;
            };
            let key = (object_type.to_owned(), unique.clone(), value.clone());
            if let Some(existing) = index.get(&key) {
                return conflict(builtin, faults, unique, &value, existing);
            }
            if !seen.insert(value.clone()) {
                return error_body(
                    StatusCode::CONFLICT,
                    "OBJECT_ALREADY_EXISTS",
                    "Contact already exists. Duplicate values in the batch",
                );
            }
        }
    }
    let mut results = Vec::new();
    let mut inline = Vec::new();
    for input in valid {
        let id = {
            let mut next = sim.next_id.lock().expect("lock");
            *next += 1;
            next.to_string()
        };
        // HubSpot stores (and answers with) emails lowercased.
        let mut properties = input.properties.clone();
        if let Some(email) = properties.get_mut("email") {
            *email = email.to_lowercase();
        }
        let object = SimObject {
            id: id.clone(),
            properties,
            object_write_trace_id: input.trace_id.clone(),
        };
        for unique in &uniques {
            if let Some(value) = object.properties.get(unique) {
                index.insert(
                    (object_type.to_owned(), unique.clone(), value.to_lowercase()),
                    id.clone(),
                );
            }
        }
        stored.push(object.clone());
        inline.extend(
            input
                .associations
                .iter()
                .map(|(to, types)| (id.clone(), to, types)),
        );
        let mut props: serde_json::Map<String, Value> = object
            .properties
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        props.insert("hs_object_id".into(), Value::String(id.clone()));
        let mut result = json!({"id": id, "properties": props, "createdAt": chrono::Utc::now().to_rfc3339(),
                                "updatedAt": chrono::Utc::now().to_rfc3339(), "archived": false});
        if sim.options.echo_trace_ids
            && let Some(t) = &object.object_write_trace_id
        {
            result["objectWriteTraceId"] = json!(t);
        }
        results.push(result);
    }
    drop(index);
    drop(objects);
    for (from_id, to, types) in inline {
        // Checked above; the target exists.
        let to_object_type = association_target(sim, object_type, to, types).unwrap_or_default();
        sim.associations
            .lock()
            .expect("lock")
            .push(super::associate::SimAssociation {
                from_object_type: object_type.to_owned(),
                from_id,
                to_object_type,
                to_id: to.clone(),
                types: types.clone(),
            });
    }
    sim.stats.lock().expect("lock").inputs_created += results.len() as u64;
    if let Some(fault) = after_writing(faults) {
        return fault;
    }
    // HubSpot does not keep the input order.
    results.shuffle(&mut rand::rng());
    let status = if errors.is_empty() {
        StatusCode::CREATED
    } else {
        StatusCode::MULTI_STATUS
    };
    let mut body = json!({"status": "COMPLETE", "results": results,
                          "startedAt": chrono::Utc::now().to_rfc3339(), "completedAt": chrono::Utc::now().to_rfc3339()});
    if !errors.is_empty() {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Value::Array(errors);
    }
    (status, body)
}

/// HubSpot's schema: `inputs` of at most 100, string property values, `associations`
/// present.
fn parse_inputs(body: &[u8]) -> Result<Vec<Input>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("Invalid input JSON on line 1: {e}"))?;
    let inputs = value
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or("Invalid input JSON: inputs is required")?;
    if inputs.len() > 100 {
        return Err(format!(
            "Batch size {} exceeds the limit of 100",
            inputs.len()
        ));
    }
    let mut out = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let props = input
            .get("properties")
            .and_then(Value::as_object)
            .ok_or(format!("inputs[{i}].properties is required"))?;
        let mut properties = BTreeMap::new();
        for (k, v) in props {
            let v = v
                .as_str()
                .ok_or(format!("inputs[{i}].properties.{k} must be a string"))?;
            properties.insert(k.clone(), v.to_owned());
        }
        let Some(items) = input.get("associations").and_then(Value::as_array) else {
            return Err(format!("inputs[{i}].associations is required"));
        };
        let associations = items
            .iter()
            .map(|a| {
                let to = a
                    .pointer("/to/id")
                    .and_then(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .or_else(|| v.as_u64().map(|n| n.to_string()))
                    })
                    .unwrap_or_default();
                let types = a
                    .get("types")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|t| {
                        Some(format!(
                            "{}/{}",
                            t.get("associationCategory")?.as_str()?,
                            t.get("associationTypeId")?.as_i64()?
                        ))
                    })
                    .collect();
                (to, types)
            })
            .collect();
        let trace_id = input
            .get("objectWriteTraceId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        out.push(Input {
            properties,
            trace_id,
            associations,
        });
    }
    Ok(out)
}
