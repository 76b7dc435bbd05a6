//! The simulator's batch create: token, limits, schema and faults checked in the order
//! HubSpot checks them, then the objects created and the answer shaped like HubSpot's.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rand::seq::SliceRandom;
use serde_json::{Value, json};

use super::{Phase, Sim, SimFaults, SimObject, known_type, unique_property};

pub async fn create_v3(
    State(sim): State<Arc<Sim>>,
    Path(object_type): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(sim, object_type, headers, body).await
}

pub async fn create_dated(
    State(sim): State<Arc<Sim>>,
    Path((_version, object_type)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create(sim, object_type, headers, body).await
}

fn error_body(status: StatusCode, category: &str, message: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"status": "error", "message": message, "category": category,
               "correlationId": uuid::Uuid::now_v7().to_string()}),
    )
}

async fn create(sim: Arc<Sim>, object_type: String, headers: HeaderMap, body: Bytes) -> Response {
    match sim.phase(Instant::now()) {
        // A connection made just before the listener closed: answered like the rest.
        Phase::Up | Phase::Refusing => {}
        Phase::Failing => {
            let mut stats = sim.stats.lock().expect("lock");
            stats.requests += 1;
            *stats.by_status.entry(503).or_default() += 1;
            let (status, body) = error_body(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "Service Unavailable (simulated outage)",
            );
            return (status, axum::Json(body)).into_response();
        }
        Phase::Hanging => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }
    let faults = sim.faults.lock().expect("lock").clone();
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let (status, value, remaining) = decide(&sim, &object_type, &headers, &body, &faults);
    if status == HANG {
        // Created, and never answered: the client times out, as after a lost connection.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if status == CLOSE {
        // Created, then the connection breaks: the body fails, and hyper drops the
        // connection instead of finishing the answer.
        return Response::new(axum::body::Body::new(BrokenBody));
    }
    {
        let mut stats = sim.stats.lock().expect("lock");
        stats.requests += 1;
        *stats.by_status.entry(status.as_u16()).or_default() += 1;
    }
    let mut response = (status, axum::Json(value)).into_response();
    // An unauthenticated request belongs to no app, so it gets no rate-limit headers.
    if !sim.options.rate_headers || status == StatusCode::UNAUTHORIZED {
        return response;
    }
    let h = response.headers_mut();
    let num = |n: u64| HeaderValue::from_str(&n.to_string()).expect("digits");
    h.insert(
        "x-hubspot-ratelimit-max",
        num(sim.options.requests_per_interval.into()),
    );
    h.insert("x-hubspot-ratelimit-remaining", num(remaining));
    h.insert(
        "x-hubspot-ratelimit-interval-milliseconds",
        num(sim.options.interval.as_millis() as u64),
    );
    if sim.options.daily_limit > 0 {
        let used = *sim.daily_used.lock().expect("lock");
        h.insert("x-hubspot-ratelimit-daily", num(sim.options.daily_limit));
        h.insert(
            "x-hubspot-ratelimit-daily-remaining",
            num(sim.options.daily_limit.saturating_sub(used)),
        );
    }
    response
}

/// Everything but the waiting: (status, body, requests remaining in the window).
fn decide(
    sim: &Sim,
    object_type: &str,
    headers: &HeaderMap,
    body: &[u8],
    faults: &SimFaults,
) -> (StatusCode, Value, u64) {
    let token = sim.token.lock().expect("lock").clone();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {token}")) {
        let (s, v) = error_body(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found.",
        );
        return (s, v, 0);
    }
    // Rolling window.
    let now = Instant::now();
    let remaining = {
        let mut window = sim.window.lock().expect("lock");
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= sim.options.interval)
        {
            window.pop_front();
        }
        if window.len() >= sim.options.requests_per_interval as usize {
            let v = json!({"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                           "errorType": "RATE_LIMIT", "correlationId": uuid::Uuid::now_v7().to_string(),
                           "policyName": "TEN_SECONDLY_ROLLING", "groupName": "simulator"});
            return (StatusCode::TOO_MANY_REQUESTS, v, 0);
        }
        window.push_back(now);
        let mut stats = sim.stats.lock().expect("lock");
        stats.max_in_window = stats.max_in_window.max(window.len());
        (sim.options.requests_per_interval as usize - window.len()) as u64
    };
    if sim.options.daily_limit > 0 {
        let mut used = sim.daily_used.lock().expect("lock");
        if *used >= sim.options.daily_limit {
            let v = json!({"status": "error", "message": "You have reached your daily limit.",
                           "errorType": "RATE_LIMIT", "policyName": "DAILY", "groupName": "simulator"});
            return (StatusCode::TOO_MANY_REQUESTS, v, remaining);
        }
        *used += 1;
    }
    if rand::random::<f64>() < faults.fail_rate {
        let (s, v) = error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "simulated outage",
        );
        return (s, v, remaining);
    }
    if faults.forbidden_types.iter().any(|t| t == object_type) {
        let (s, v) = error_body(
            StatusCode::FORBIDDEN,
            "MISSING_SCOPES",
            "This app hasn't been granted all required scopes to make this call.",
        );
        return (s, v, remaining);
    }
    if !known_type(object_type) {
        let (s, v) = error_body(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            &format!("Unable to infer object type from: {object_type}"),
        );
        return (s, v, remaining);
    }
    let (status, value) = create_inputs(sim, object_type, body, faults);
    (status, value, remaining)
}

/// Statuses no real answer has: "created, now hang" and "created, now close".
const HANG: StatusCode = StatusCode::LOOP_DETECTED;
const CLOSE: StatusCode = StatusCode::NOT_EXTENDED;

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

/// One input after schema checks.
struct Input {
    properties: BTreeMap<String, String>,
    trace_id: Option<String>,
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
        match input.properties.keys().find(|k| k.starts_with("unknown") || k.chars().any(|c| c.is_ascii_uppercase())) {
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
    let unique = unique_property(object_type);
    if let Some(unique) = unique {
        let mut seen = HashSet::new();
        for input in &valid {
            let Some(value) = input.properties.get(unique).map(|v| v.to_lowercase()) else {
                continue;
            };
            if let Some(existing) = index.get(&(object_type.to_owned(), value.clone())) {
                return error_body(
                    StatusCode::CONFLICT,
                    "OBJECT_ALREADY_EXISTS",
                    &format!("Contact already exists. Existing ID: {existing}"),
                );
            }
            if !seen.insert(value) {
                return error_body(
                    StatusCode::CONFLICT,
                    "OBJECT_ALREADY_EXISTS",
                    "Contact already exists. Duplicate values in the batch",
                );
            }
        }
    }
    let mut results = Vec::new();
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
        if let Some(value) = unique.and_then(|u| object.properties.get(u)) {
            index.insert((object_type.to_owned(), value.to_lowercase()), id.clone());
        }
        stored.push(object.clone());
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
    sim.stats.lock().expect("lock").inputs_created += results.len() as u64;
    if rand::random::<f64>() < faults.hang_after_create_rate {
        return (HANG, Value::Null);
    }
    if rand::random::<f64>() < faults.close_after_create_rate {
        return (CLOSE, Value::Null);
    }
    if rand::random::<f64>() < faults.fail_after_create_rate {
        return error_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "simulated failure after creating",
        );
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
        if !input.get("associations").is_some_and(Value::is_array) {
            return Err(format!("inputs[{i}].associations is required"));
        }
        let trace_id = input
            .get("objectWriteTraceId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        out.push(Input {
            properties,
            trace_id,
        });
    }
    Ok(out)
}
