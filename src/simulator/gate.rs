//! What every simulated request meets before its own work, in HubSpot's order: an outage
//! in force, the configured latency, the Bearer token, the rolling window and the daily
//! limit; and how every answer leaves: counted, with HubSpot's rate-limit headers.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Phase, Sim, SimFaults};

/// HubSpot's error shape.
pub fn error_body(status: StatusCode, category: &str, message: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"status": "error", "message": message, "category": category,
               "correlationId": uuid::Uuid::now_v7().to_string()}),
    )
}

/// Lets a request through (`Ok`: requests left in the window) or answers it (with
/// what is left in the window when the answer is a 429).
pub async fn admit(
    sim: &Sim,
    headers: &HeaderMap,
    faults: &SimFaults,
) -> Result<u64, (StatusCode, Value, Option<u64>)> {
    match sim.phase(Instant::now()) {
        // A connection made just before the listener closed: answered like the rest.
        Phase::Up | Phase::Refusing => {}
        Phase::Failing => {
            let (status, value) = error_body(
                StatusCode::SERVICE_UNAVAILABLE,
                "SERVICE_UNAVAILABLE",
                "Service Unavailable (simulated outage)",
            );
            return Err((status, value, None));
        }
        Phase::Hanging => tokio::time::sleep(Duration::from_secs(3600)).await,
    }
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    let token = sim.token.lock().expect("lock").clone();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {token}")) {
        let (status, value) = error_body(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found.",
        );
        return Err((status, value, None));
    }
    let now = Instant::now();
    let remaining = {
        let mut window = sim.window.lock().expect("lock");
        if rand::random::<f64>() < faults.rate_limited_rate {
            return Err(ten_secondly_429());
        }
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= sim.options.interval)
        {
            window.pop_front();
        }
        if window.len() >= sim.options.requests_per_interval as usize {
            return Err(ten_secondly_429());
        }
        window.push_back(now);
        let mut stats = sim.stats.lock().expect("lock");
        stats.max_in_window = stats.max_in_window.max(window.len());
        (sim.options.requests_per_interval as usize - window.len()) as u64
    };
    if sim.options.daily_limit > 0 {
        let mut used = sim.daily_used.lock().expect("lock");
        if *used >= sim.options.daily_limit {
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                json!({"status": "error", "message": "You have reached your daily limit.",
                       "errorType": "RATE_LIMIT", "policyName": "DAILY", "groupName": "simulator"}),
                Some(remaining),
            ));
        }
        *used += 1;
    }
    Ok(remaining)
}

/// HubSpot's 429 for the rolling window.
fn ten_secondly_429() -> (StatusCode, Value, Option<u64>) {
    (
        StatusCode::TOO_MANY_REQUESTS,
        json!({"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
               "errorType": "RATE_LIMIT", "correlationId": uuid::Uuid::now_v7().to_string(),
               "policyName": "TEN_SECONDLY_ROLLING", "groupName": "simulator"}),
        Some(0),
    )
}

/// The answer, counted in the stats, with the rate-limit headers when the request was
/// counted against the window (`remaining`): not on a 401 (the request belongs to no
/// app), not on an outage's 503 (an edge answers it), nor when the simulator is told to
/// leave them out.
pub fn finish(sim: &Sim, status: StatusCode, value: Value, remaining: Option<u64>) -> Response {
    {
        let mut stats = sim.stats.lock().expect("lock");
        stats.requests += 1;
        *stats.by_status.entry(status.as_u16()).or_default() += 1;
    }
    let mut response = (status, axum::Json(value)).into_response();
    let Some(remaining) = remaining.filter(|_| sim.options.rate_headers) else {
        return response;
    };
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

/// Statuses no real answer has: "created, now hang" and "created, now close".
pub const HANG: StatusCode = StatusCode::LOOP_DETECTED;
pub const CLOSE: StatusCode = StatusCode::NOT_EXTENDED;

/// The faults that strike after the objects were written: no answer, a broken
/// connection, or a 500 (each by its rate); `None` when none strikes.
pub fn after_writing(faults: &SimFaults) -> Option<(StatusCode, Value)> {
    if rand::random::<f64>() < faults.hang_after_create_rate {
        return Some((HANG, Value::Null));
    }
    if rand::random::<f64>() < faults.close_after_create_rate {
        return Some((CLOSE, Value::Null));
    }
    if rand::random::<f64>() < faults.fail_after_create_rate {
        return Some(error_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "simulated failure after creating",
        ));
    }
    None
}
