//! The simulator's batch read by a unique property (`idProperty`): found records in
//! `results` with the requested properties, the values not found as 207 `errors[]` with
//! category `OBJECT_NOT_FOUND` and the values in `context.ids`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};

use super::Sim;
use super::gate::{admit, error_body, finish};

pub async fn read_v3(
    State(sim): State<Arc<Sim>>,
    Path(object_type): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    read(sim, object_type, headers, body).await
}

pub async fn read_dated(
    State(sim): State<Arc<Sim>>,
    Path((_version, object_type)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    read(sim, object_type, headers, body).await
}

async fn read(sim: Arc<Sim>, object_type: String, headers: HeaderMap, body: Bytes) -> Response {
    sim.count("read");
    let faults = sim.faults.lock().expect("lock").clone();
    let remaining = match admit(&sim, &headers, &faults).await {
        Ok(r) => r,
        Err((status, value, remaining)) => return finish(&sim, status, value, remaining),
    };
    let (status, value) = lookup(&sim, &object_type, &body);
    finish(&sim, status, value, Some(remaining))
}

fn lookup(sim: &Sim, object_type: &str, body: &[u8]) -> (StatusCode, Value) {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error_body(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Invalid input JSON",
        );
    };
    let Some(id_property) = request.get("idProperty").and_then(Value::as_str) else {
        return error_body(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "the simulator reads by idProperty only",
        );
    };
    if !sim
        .unique_properties(object_type)
        .iter()
        .any(|p| p == id_property)
    {
        return error_body(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("Unable to perform a read by non-unique property {id_property}"),
        );
    }
    let wanted: Vec<String> = request
        .get("properties")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let ids: Vec<String> = request
        .get("inputs")
        .and_then(Value::as_array)
        .map(|i| {
            i.iter()
                .filter_map(|x| x.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if ids.len() > 100 {
        return error_body(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Batch size exceeds 100",
        );
    }
    // The same order create takes them in: objects, then the index.
    let objects = sim.objects.lock().expect("lock");
    let index = sim.unique_index.lock().expect("lock");
    let stored = objects.get(object_type);
    let mut results = Vec::new();
    let mut missing = Vec::new();
    for value in ids {
        let key = (
            object_type.to_owned(),
            id_property.to_owned(),
            value.to_lowercase(),
        );
        let object = index
            .get(&key)
            .and_then(|id| stored?.iter().find(|o| &o.id == id));
        match object {
            Some(o) => {
                let mut props: serde_json::Map<String, Value> = wanted
                    .iter()
                    .filter_map(|p| o.properties.get(p).map(|v| (p.clone(), json!(v))))
                    .collect();
                props.insert("hs_object_id".into(), json!(o.id));
                results.push(json!({"id": o.id, "properties": props, "archived": false}));
            }
            None => missing.push(value),
        }
    }
    let mut body = json!({"status": "COMPLETE", "results": results});
    if missing.is_empty() {
        return (StatusCode::OK, body);
    }
    body["numErrors"] = json!(1);
    body["errors"] = json!([{"status": "error", "category": "OBJECT_NOT_FOUND",
        "message": "Could not get some objects, they may be deleted or not exist.",
        "context": {"ids": missing}}]);
    (StatusCode::MULTI_STATUS, body)
}
