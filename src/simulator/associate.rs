//! The simulator's v4 associations batch create
//! (`POST /crm/v4/associations/{from}/{to}/batch/create`): both records must exist, and a
//! `HUBSPOT_DEFINED` type id must be one for that pair of object types (per the daemon's
//! table of them); each refused pair is reported in `errors[]`. Answers 200 (HubSpot moved
//! it from 201 in 2025), 207 with errors. Creating a pair that exists adds its labels. What
//! exists is listed by `GET /_sim/associations`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

use super::gate::{admit, error_body, finish};
use super::{Sim, known_type};
use crate::model::association_types::{target_of, type_name};

/// One association the simulator holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimAssociation {
    pub from_object_type: String,
    pub from_id: String,
    pub to_object_type: String,
    pub to_id: String,
    /// `CATEGORY/typeId`, e.g. `HUBSPOT_DEFINED/279`.
    pub types: Vec<String>,
}

pub async fn associate(
    State(sim): State<Arc<Sim>>,
    Path((from, to)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.count("associate");
    let faults = sim.faults.lock().expect("lock").clone();
    let remaining = match admit(&sim, &headers, &faults).await {
        Ok(r) => r,
        Err((status, value, remaining)) => return finish(&sim, status, value, remaining),
    };
    let (status, value) = if rand::random::<f64>() < faults.fail_rate {
        error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "simulated outage",
        )
    } else if let Some(t) = [&from, &to].into_iter().find(|t| !known_type(t)) {
        error_body(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("Unable to infer object type from: {t}"),
        )
    } else {
        create(&sim, &from, &to, &body)
    };
    finish(&sim, status, value, Some(remaining))
}

fn create(sim: &Sim, from: &str, to: &str, body: &[u8]) -> (StatusCode, Value) {
    let Some(inputs) = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("inputs").and_then(Value::as_array).cloned())
    else {
        return error_body(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Invalid input JSON: inputs is required",
        );
    };
    if inputs.len() > 100 {
        return error_body(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Batch size exceeds 100",
        );
    }
    let objects = sim.objects.lock().expect("lock");
    let exists = |t: &str, id: &str| {
        objects
            .get(type_name(t))
            .or_else(|| objects.get(t))
            .is_some_and(|o| o.iter().any(|o| o.id == id))
    };
    let mut made = Vec::new();
    let mut errors = Vec::new();
    let mut held = sim.associations.lock().expect("lock");
    for input in &inputs {
        let id = |k: &str| {
            input
                .get(k)
                .and_then(|v| v.get("id"))
                .and_then(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .or_else(|| v.as_u64().map(|n| n.to_string()))
                })
                .unwrap_or_default()
        };
        let (from_id, to_id) = (id("from"), id("to"));
        let types: Vec<(String, i64)> = input
            .get("types")
            .and_then(Value::as_array)
            .map(|t| {
                t.iter()
                    .filter_map(|t| {
                        Some((
                            t.get("associationCategory")?.as_str()?.to_owned(),
                            t.get("associationTypeId")?.as_i64()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let wrong_type = types.iter().find(|(c, n)| {
            c == "HUBSPOT_DEFINED" && target_of(*n, from).is_none_or(|t| t != type_name(to))
        });
        let problem = if !exists(from, &from_id) {
            Some(("OBJECT_NOT_FOUND", format!("No {from} with id {from_id}")))
        } else if !exists(to, &to_id) {
            Some(("OBJECT_NOT_FOUND", format!("No {to} with id {to_id}")))
        } else if types.is_empty() {
            Some(("VALIDATION_ERROR", "types is required".to_owned()))
        } else {
            wrong_type.map(|(_, n)| {
                (
                    "VALIDATION_ERROR",
                    format!("{n} is not a valid association type between {from} and {to}"),
                )
            })
        };
        if let Some((category, message)) = problem {
            errors.push(
                json!({"status": "error", "category": category, "message": message,
                "context": {"fromObjectId": [from_id], "toObjectId": [to_id]}}),
            );
            continue;
        }
        let labels: Vec<String> = types.iter().map(|(c, n)| format!("{c}/{n}")).collect();
        match held.iter_mut().find(|a| {
            a.from_object_type == from
                && a.from_id == from_id
                && a.to_object_type == to
                && a.to_id == to_id
        }) {
            Some(a) => {
                for l in labels {
                    if !a.types.contains(&l) {
                        a.types.push(l);
                    }
                }
            }
            None => held.push(SimAssociation {
                from_object_type: from.to_owned(),
                from_id: from_id.clone(),
                to_object_type: to.to_owned(),
                to_id: to_id.clone(),
                types: labels,
            }),
        }
        let number = |s: &str| s.parse::<u64>().map_or(json!(s), |n| json!(n));
        made.push(
            json!({"fromObjectTypeId": from, "fromObjectId": number(&from_id),
            "toObjectTypeId": to, "toObjectId": number(&to_id), "labels": []}),
        );
    }
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    let mut body = json!({"status": "COMPLETE", "results": made});
    if !errors.is_empty() {
        body["numErrors"] = json!(errors.len());
        body["errors"] = Value::Array(errors);
    }
    (status, body)
}
