//! The simulator's batch upsert and update, as `shared/hubspot-api.md` describes them:
//! `idProperty` in each input and unique (else a whole-batch 400 "non-unique"), the same
//! record twice in one batch refused whole ("Duplicate IDs found in batch input"), a value
//! of another unique property that belongs to another record refused whole (409), unknown
//! properties and missing records reported per input (207), an upsert's result saying
//! whether it created the record (`new`). An empty string clears a property.

use std::collections::{BTreeMap, HashSet};

use axum::http::StatusCode;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use super::gate::{after_writing, error_body};
use super::{Sim, SimFaults, SimObject};

/// One input after schema checks.
struct Input {
    id_property: Option<String>,
    id: String,
    properties: BTreeMap<String, String>,
    trace_id: Option<String>,
}

/// Applies a batch upsert (`upsert`) or update to `object_type`.
pub fn apply(
    sim: &Sim,
    object_type: &str,
    upsert: bool,
    body: &[u8],
    faults: &SimFaults,
) -> (StatusCode, Value) {
    let inputs = match parse(body, upsert) {
        Ok(inputs) => inputs,
        Err(message) => return error_body(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &message),
    };
    let uniques = sim.unique_properties(object_type);
    let mut seen = HashSet::new();
    for input in &inputs {
        if let Some(p) = &input.id_property
            && !uniques.contains(p)
        {
            let kind = if upsert { "upsert" } else { "update" };
            return error_body(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                &format!("Unable to perform update/{kind} by non-unique 0-1 property {p}"),
            );
        }
        let key = (input.id_property.clone(), input.id.to_lowercase());
        if !seen.insert(key) {
            return error_body(
                StatusCode::BAD_REQUEST,
                "VALIDATION_ERROR",
                &format!("Duplicate IDs found in batch input: [{}]", input.id),
            );
        }
    }
    let mut objects = sim.objects.lock().expect("lock");
    let mut index = sim.unique_index.lock().expect("lock");
    let stored = objects.entry(object_type.to_owned()).or_default();
    // Which stored object each input names (None: none yet).
    let find = |input: &Input| -> Option<usize> {
        let id = match &input.id_property {
            Some(p) => index
                .get(&(object_type.to_owned(), p.clone(), input.id.to_lowercase()))?
                .clone(),
            None => input.id.clone(),
        };
        stored.iter().position(|o| o.id == id)
    };
    let targets: Vec<Option<usize>> = inputs.iter().map(find).collect();
    // A value of another unique property that belongs to another record: the whole batch
    // is refused, naming the first.
    for (input, target) in inputs.iter().zip(&targets) {
        let own = target.map(|t| stored[t].id.clone());
        for unique in &uniques {
            let Some(value) = input.properties.get(unique).filter(|v| !v.is_empty()) else {
                continue;
            };
            let key = (object_type.to_owned(), unique.clone(), value.to_lowercase());
            if let Some(existing) = index.get(&key)
                && Some(existing) != own.as_ref()
            {
                return error_body(
                    StatusCode::CONFLICT,
                    "OBJECT_ALREADY_EXISTS",
                    &format!("Object already exists. Existing ID: {existing}"),
                );
            }
        }
    }
    let mut errors = Vec::new();
    let mut bad = HashSet::new();
    for (i, input) in inputs.iter().enumerate() {
        if let Some(name) = input
            .properties
            .keys()
            .find(|k| !sim.property_exists(object_type, k))
        {
            bad.insert(i);
            errors.push(json!({"status": "error", "category": "VALIDATION_ERROR",
                "message": format!("Property \"{name}\" does not exist"),
                "context": {"objectWriteTraceId": [input.trace_id.clone().unwrap_or_default()]}}));
        }
    }
    // Without a trace id on every input, HubSpot has no way to name the bad one.
    let traced = inputs.iter().all(|i| i.trace_id.is_some());
    if !errors.is_empty() && (!traced || faults.whole_batch_errors) {
        let message = errors[0]["message"].as_str().unwrap_or_default().to_owned();
        return error_body(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &message);
    }
    let mut results = Vec::new();
    for (i, (input, target)) in inputs.into_iter().zip(targets).enumerate() {
        if bad.contains(&i) {
            continue;
        }
        let (position, new) = match target {
            Some(t) => (t, false),
            None if upsert => {
                let id = {
                    let mut next = sim.next_id.lock().expect("lock");
                    *next += 1;
                    next.to_string()
                };
                let mut properties = BTreeMap::new();
                if let Some(p) = &input.id_property {
                    properties.insert(p.clone(), input.id.clone());
                }
                stored.push(SimObject {
                    id,
                    properties,
                    object_write_trace_id: input.trace_id.clone(),
                });
                (stored.len() - 1, true)
            }
            None => {
                // HubSpot names the missing record by its id, not the trace id.
                errors.push(json!({"status": "error", "category": "OBJECT_NOT_FOUND",
                    "message": "Object not found.  objectId are usually numeric.",
                    "context": {"ids": [input.id]}}));
                continue;
            }
        };
        let object = &mut stored[position];
        for (k, v) in input.properties {
            if v.is_empty() {
                object.properties.remove(&k);
            } else if k == "email" {
                object.properties.insert(k, v.to_lowercase());
            } else {
                object.properties.insert(k, v);
            }
        }
        for unique in &uniques {
            if let Some(value) = object.properties.get(unique) {
                index.insert(
                    (object_type.to_owned(), unique.clone(), value.to_lowercase()),
                    object.id.clone(),
                );
            }
        }
        let mut result = json!({"id": object.id, "properties": object.properties,
            "createdAt": chrono::Utc::now().to_rfc3339(), "updatedAt": chrono::Utc::now().to_rfc3339(),
            "archived": false});
        if upsert {
            result["new"] = json!(new);
        }
        if sim.options.echo_trace_ids
            && let Some(t) = &input.trace_id
        {
            result["objectWriteTraceId"] = json!(t);
        }
        results.push(result);
    }
    drop(index);
    drop(objects);
    if let Some(fault) = after_writing(faults) {
        return fault;
    }
    results.shuffle(&mut rand::rng());
    let status = if errors.is_empty() {
        StatusCode::OK
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

/// HubSpot's schema: at most 100 `inputs`, each with `id` (and an upsert's `idProperty`),
/// string property values, no `associations`.
fn parse(body: &[u8], upsert: bool) -> Result<Vec<Input>, String> {
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
        if input.get("associations").is_some() {
            return Err(format!(
                "inputs[{i}].associations is not a field of this input"
            ));
        }
        let id = input
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(format!("inputs[{i}].id is required"))?;
        let id_property = input.get("idProperty").and_then(Value::as_str);
        if upsert && id_property.is_none() {
            return Err(format!("inputs[{i}].idProperty is required"));
        }
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
        out.push(Input {
            id_property: id_property.map(str::to_owned),
            id: id.to_owned(),
            properties,
            trace_id: input
                .get("objectWriteTraceId")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    Ok(out)
}
