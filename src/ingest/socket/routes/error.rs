//! The one error type of the socket API. Every error answer is JSON:
//! `{"error": CODE, "message": ONE_LINE, "errors": [...]?}`; the handlers return
//! `Result<_, ApiError>` and this file is the only place that turns an error into a
//! response.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::ingest::socket::body::{BodyError, WriteError};
use crate::operator::OpsError;
use crate::store::StoreError;

/// An error answer: status, a stable machine code, a one-line message, and per-write
/// details where there are some.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub errors: Option<Value>,
    /// Seconds for `Retry-After`; every 503 carries one (5 unless set).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            errors: None,
            retry_after: None,
        }
    }

    /// Says when to try again (`Retry-After`).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Adds the per-write details (`errors`).
    pub fn with_errors(mut self, errors: Value) -> Self {
        self.errors = Some(errors);
        self
    }

    pub fn bad_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_query", message)
    }

    pub fn bad_body(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_body", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.code, "message": self.message});
        if let Some(errors) = self.errors {
            body["errors"] = errors;
        }
        let retry_after = self
            .retry_after
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(5));
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// The outbox cannot answer now: 503, so a client retries later.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        )
    }
}

/// An operator request the socket passed on: a usage error is the client's, the rest the
/// store's.
impl From<OpsError> for ApiError {
    fn from(e: OpsError) -> Self {
        match e {
            OpsError::Store(e) => e.into(),
            OpsError::NotFound(_) => Self::not_found(e.to_string()),
            other => Self::bad_body(other.to_string()),
        }
    }
}

/// A body that is not a batch of valid writes: nothing from it was stored.
impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> Self {
        match e {
            BodyError::UnsupportedMediaType(m) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                m,
            ),
            BodyError::Malformed { line, message } => {
                let error = Self::new(StatusCode::BAD_REQUEST, "malformed_json", message);
                match line {
                    Some(l) => error.with_errors(
                        json!([{"line": l, "field": "", "message": "not valid JSON"}]),
                    ),
                    None => error,
                }
            }
            BodyError::Empty => Self::new(
                StatusCode::BAD_REQUEST,
                "empty_request",
                "the request holds no writes",
            ),
            BodyError::TooManyWrites { count, max } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_many_writes",
                format!("the request holds {count} writes; limits.max_writes_per_request is {max}"),
            ),
            BodyError::Invalid(errors) => {
                let first = &errors[0];
                let message = format!(
                    "{} invalid field(s); first at {}: {}: {}; nothing from this request was stored",
                    errors.len(),
                    first.position(),
                    if first.field.is_empty() {
                        "(write)"
                    } else {
                        &first.field
                    },
                    first.message
                );
                let errors = serde_json::to_value::<&[WriteError]>(&errors).unwrap_or(Value::Null);
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_writes", message)
                    .with_errors(errors)
            }
        }
    }
}
