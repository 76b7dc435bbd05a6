//! One request, one HTTP call to HubSpot (a batch create, or a properties-API call);
//! no SQL, no decisions.
//!
//! The dispatcher sends through the [`BatchSender`] trait, so its tests script HubSpot's
//! answers without a server. [`HttpSender`] is the real one: one shared reqwest client
//! (rustls), `Authorization: Bearer`, a `User-Agent` naming the daemon, the configured
//! timeout. [`batch_body`] builds the request body from claimed rows.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER, USER_AGENT};
use serde_json::value::RawValue;

use crate::config::{AccessToken, HubSpotConfig};
use crate::hubspot::classify::parse_retry_after;
use crate::hubspot::wire::{
    AssociateInput, AssociationTypeRef, BatchAssociateRequest, BatchCreateRequest,
    BatchReadRequest, BatchRecordRequest, CreateInput, IdRef, RateHeaders, ReadInput, RecordInput,
};
use crate::model::{Association, AssociationCategory, BatchRow, ClaimedRow};

/// What came back for one request.
#[derive(Debug)]
pub enum Sent {
    /// An HTTP answer, whatever its status.
    Answered {
        status: u16,
        retry_after: Option<Duration>,
        rate: RateHeaders,
        body: Bytes,
        duration: Duration,
    },
    /// No answer after the request was sent (a timeout, a connection lost mid-request):
    /// HubSpot may have acted on it.
    NoAnswer { error: String, duration: Duration },
    /// The connection could not be made (refused, DNS, TLS handshake): the request never
    /// reached HubSpot, which cannot have acted on it.
    NotSent { error: String, duration: Duration },
}

/// One call to HubSpot: a batch create or read, or a properties-API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `POST` with a JSON body, or `GET` without one.
    pub body: Option<Vec<u8>>,
    pub url: String,
}

impl Request {
    pub fn post(url: String, body: Vec<u8>) -> Self {
        Self {
            body: Some(body),
            url,
        }
    }

    pub fn get(url: String) -> Self {
        Self { body: None, url }
    }
}

/// Where the dispatcher sends its requests: HubSpot over HTTP ([`HttpSender`]), or a
/// scripted stand-in in the dispatcher's tests.
pub trait BatchSender: Send + Sync + 'static {
    /// Sends one request. Never retries by itself: whether to resend is the reconciler's
    /// call.
    fn send(&self, request: Request) -> impl Future<Output = Sent> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("the access token holds characters an HTTP header cannot carry")]
    Token,
    #[error("row {trace_id} holds JSON that cannot be sent: {error}")]
    BadRow { trace_id: String, error: String },
}

/// The real sender: HubSpot's batch-create endpoint over HTTPS.
pub struct HttpSender {
    client: reqwest::Client,
    /// Marked sensitive, so HTTP-level debug output shows it as `Sensitive`.
    authorization: reqwest::header::HeaderValue,
}

impl HttpSender {
    pub fn new(config: HubSpotConfig, token: &AccessToken) -> Result<Self, SenderError> {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .build()?;
        let mut authorization =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| SenderError::Token)?;
        authorization.set_sensitive(true);
        Ok(Self {
            client,
            authorization,
        })
    }
}

impl BatchSender for HttpSender {
    async fn send(&self, request: Request) -> Sent {
        let start = Instant::now();
        let builder = match request.body {
            Some(body) => self
                .client
                .post(request.url)
                .header(CONTENT_TYPE, "application/json")
                .body(body),
            None => self.client.get(request.url),
        };
        let response = builder
            .header(AUTHORIZATION, self.authorization.clone())
            .header(
                USER_AGENT,
                concat!("hubspot-outbox/", env!("CARGO_PKG_VERSION")),
            )
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            // A connect error (refused, DNS, TLS handshake, a connect timeout) means the
            // request was never written to HubSpot.
            Err(e) if e.is_connect() => {
                return Sent::NotSent {
                    error: describe(&e),
                    duration: start.elapsed(),
                };
            }
            Err(e) => {
                return Sent::NoAnswer {
                    error: describe(&e),
                    duration: start.elapsed(),
                };
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        match response.bytes().await {
            Ok(body) => Sent::Answered {
                status,
                retry_after: headers
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after),
                rate: rate_headers(&headers),
                body,
                duration: start.elapsed(),
            },
            Err(e) => Sent::NoAnswer {
                error: format!(
                    "HubSpot answered {status} but the body was lost: {}",
                    describe(&e)
                ),
                duration: start.elapsed(),
            },
        }
    }
}

/// The request body, exactly HubSpot's schema, every input tagged with its trace id
/// (`objectWriteTraceId`) and, when `trace_property` names one, carrying the trace id in
/// that property too (replacing a value the producer may have set there).
pub fn batch_body(
    rows: &[ClaimedRow],
    trace_property: Option<&str>,
) -> Result<Vec<u8>, SenderError> {
    let bad = |row: &ClaimedRow, e: serde_json::Error| SenderError::BadRow {
        trace_id: row.trace_id.clone(),
        error: e.to_string(),
    };
    let traced: Vec<Option<Box<RawValue>>> = rows
        .iter()
        .map(|row| {
            let Some(name) = trace_property else {
                return Ok(None);
            };
            let mut properties: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&row.properties).map_err(|e| bad(row, e))?;
            properties.insert(name.to_owned(), row.trace_id.clone().into());
            let text = serde_json::Value::Object(properties).to_string();
            RawValue::from_string(text)
                .map(Some)
                .map_err(|e| bad(row, e))
        })
        .collect::<Result<_, _>>()?;
    let mut inputs = Vec::with_capacity(rows.len());
    for (row, traced) in rows.iter().zip(&traced) {
        let properties: &RawValue = match traced {
            Some(with_trace) => with_trace,
            None => serde_json::from_str(&row.properties).map_err(|e| bad(row, e))?,
        };
        inputs.push(CreateInput {
            properties,
            associations: inline_associations(row).map_err(|e| bad(row, e))?,
            object_write_trace_id: &row.trace_id,
        });
    }
    Ok(serde_json::to_vec(&BatchCreateRequest { inputs }).expect("a batch serializes"))
}

/// A create's associations as HubSpot's schema has them: the stored text as it is,
/// unless an item carries the daemon's own `toObjectType`, which is left out.
fn inline_associations(
    row: &ClaimedRow,
) -> Result<std::borrow::Cow<'_, RawValue>, serde_json::Error> {
    if !row.associations.contains("toObjectType") {
        let raw: &RawValue = serde_json::from_str(&row.associations)?;
        return Ok(std::borrow::Cow::Borrowed(raw));
    }
    let mut items: Vec<Association> = serde_json::from_str(&row.associations)?;
    for a in &mut items {
        a.to_object_type = None;
    }
    Ok(std::borrow::Cow::Owned(RawValue::from_string(
        serde_json::to_string(&items)?,
    )?))
}

/// The body of a batch upsert or update: each row's record (`idProperty` when it has
/// one, and `id`), its properties as stored, and its trace id. No trace property: the
/// trace property names the write that created a record, and an upsert or update must
/// not overwrite it (a create read back by it would no longer be found).
pub fn record_body(rows: &[ClaimedRow]) -> Result<Vec<u8>, SenderError> {
    let mut inputs = Vec::with_capacity(rows.len());
    for row in rows {
        let bad = |error: String| SenderError::BadRow {
            trace_id: row.trace_id.clone(),
            error,
        };
        let properties: &RawValue =
            serde_json::from_str(&row.properties).map_err(|e| bad(e.to_string()))?;
        let id = row
            .record_key
            .as_deref()
            .ok_or_else(|| bad("an upsert or update without `id`".into()))?;
        inputs.push(RecordInput {
            id_property: row.id_property.as_deref(),
            id,
            properties,
            object_write_trace_id: &row.trace_id,
        });
    }
    Ok(serde_json::to_vec(&BatchRecordRequest { inputs }).expect("a batch serializes"))
}

/// The body of a v4 associations batch: one input per association of each row to
/// `target`, from the row's record (`hubspot_id`, set when its record step succeeded).
pub fn associate_body(rows: &[ClaimedRow], target: &str) -> Result<Vec<u8>, SenderError> {
    let mut parsed: Vec<(&ClaimedRow, &str, Vec<Association>)> = Vec::with_capacity(rows.len());
    for row in rows {
        let bad = |error: String| SenderError::BadRow {
            trace_id: row.trace_id.clone(),
            error,
        };
        let from = row
            .hubspot_id
            .as_deref()
            .ok_or_else(|| bad("its record's id is not known".into()))?;
        let items: Vec<Association> =
            serde_json::from_str(&row.associations).map_err(|e| bad(e.to_string()))?;
        parsed.push((row, from, items));
    }
    let types: Vec<Vec<Vec<AssociationTypeRef>>> = parsed
        .iter()
        .map(|(_, _, items)| {
            items
                .iter()
                .map(|a| a.types.iter().map(type_ref).collect())
                .collect()
        })
        .collect();
    let mut inputs = Vec::new();
    for ((_, from, items), types) in parsed.iter().zip(&types) {
        for (a, types) in items.iter().zip(types) {
            if a.to_object_type
                .as_ref()
                .is_some_and(|t| t.as_str() == target)
            {
                inputs.push(AssociateInput {
                    from: IdRef { id: from },
                    // A reference to a queued write is resolved before the write can be claimed;
                    // an unresolved one (a bug) goes as "" and HubSpot refuses it, loudly.
                    to: IdRef {
                        id: a.to.record_id().unwrap_or_default(),
                    },
                    types,
                });
            }
        }
    }
    Ok(serde_json::to_vec(&BatchAssociateRequest { inputs }).expect("a batch serializes"))
}

fn type_ref(t: &crate::model::AssociationType) -> AssociationTypeRef {
    AssociationTypeRef {
        association_category: match t.association_category {
            AssociationCategory::HubspotDefined => "HUBSPOT_DEFINED",
            AssociationCategory::UserDefined => "USER_DEFINED",
            AssociationCategory::IntegratorDefined => "INTEGRATOR_DEFINED",
            AssociationCategory::Work => "WORK",
        }
        .to_owned(),
        association_type_id: t.association_type_id,
    }
}

/// The body of a batch read: each row's value of `read_by` (its trace id when it is read
/// back by the trace property), asking for `properties` (which must include `read_by`).
pub fn read_body(rows: &[ClaimedRow], read_by: &str, properties: &[&str]) -> Vec<u8> {
    let batch: Vec<BatchRow> = rows.iter().map(BatchRow::from_claimed).collect();
    let inputs = batch
        .iter()
        .map(|r| ReadInput {
            id: r.read_value(read_by),
        })
        .collect();
    serde_json::to_vec(&BatchReadRequest {
        id_property: read_by,
        inputs,
        properties: properties.to_vec(),
    })
    .expect("a read serializes")
}

/// A transport error in one line, without the URL's query (there is none) or the token
/// (never part of an error).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Reads HubSpot's `X-HubSpot-RateLimit-*` headers (each optional).
pub fn rate_headers(headers: &HeaderMap) -> RateHeaders {
    let num = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    RateHeaders {
        max: num("x-hubspot-ratelimit-max").map(|v| v.min(u32::MAX as u64) as u32),
        remaining: num("x-hubspot-ratelimit-remaining").map(|v| v.min(u32::MAX as u64) as u32),
        interval_ms: num("x-hubspot-ratelimit-interval-milliseconds"),
        daily_remaining: num("x-hubspot-ratelimit-daily-remaining"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_embeds_stored_json_and_the_trace_id() {
        let rows = [ClaimedRow {
            id: 1,
            trace_id: "t-1".into(),
            properties: r#"{"email":"a@example.com"}"#.into(),
            associations: "[]".into(),
            attempts: 0,
            split_to: None,
            first_failed_at: None,
            read_by: None,
            sent_with: None,
            last_error: None,
            ..Default::default()
        }];
        assert_eq!(
            String::from_utf8(batch_body(&rows, None).unwrap()).unwrap(),
            r#"{"inputs":[{"properties":{"email":"a@example.com"},"associations":[],"objectWriteTraceId":"t-1"}]}"#
        );
        assert_eq!(
            String::from_utf8(batch_body(&rows, Some("hubspot_outbox_trace_id")).unwrap()).unwrap(),
            r#"{"inputs":[{"properties":{"email":"a@example.com","hubspot_outbox_trace_id":"t-1"},"associations":[],"objectWriteTraceId":"t-1"}]}"#
        );
    }

    #[test]
    fn a_create_sends_hubspot_exactly_its_schema_without_to_object_type() {
        let rows = [ClaimedRow {
            id: 1,
            trace_id: "t-1".into(),
            properties: "{}".into(),
            associations: r#"[{"to":{"id":"9"},"toObjectType":"companies","types":[{"associationCategory":"HUBSPOT_DEFINED","associationTypeId":279}]}]"#.into(),
            ..Default::default()
        }];
        assert_eq!(
            String::from_utf8(batch_body(&rows, None).unwrap()).unwrap(),
            r#"{"inputs":[{"properties":{},"associations":[{"to":{"id":"9"},"types":[{"associationCategory":"HUBSPOT_DEFINED","associationTypeId":279}]}],"objectWriteTraceId":"t-1"}]}"#
        );
    }

    #[test]
    fn upserts_updates_and_associations_have_hubspots_shapes() {
        let row = |id: i64, op, prop: Option<&str>, key: &str| {
            ClaimedRow {
            id,
            trace_id: format!("t-{id}"),
            properties: r#"{"a":"1"}"#.into(),
            associations: r#"[{"to":{"id":"9"},"toObjectType":"companies","types":[{"associationCategory":"USER_DEFINED","associationTypeId":7}]},{"to":{"id":"8"},"toObjectType":"deals","types":[{"associationCategory":"HUBSPOT_DEFINED","associationTypeId":4}]}]"#.into(),
            operation: op,
            id_property: prop.map(str::to_owned),
            record_key: Some(key.into()),
            hubspot_id: Some(format!("{id}00")),
            ..Default::default()
        }
        };
        use crate::model::Operation::{Update, Upsert};
        assert_eq!(
            String::from_utf8(
                record_body(&[
                    row(1, Upsert, Some("email"), "a@x"),
                    row(2, Update, None, "77")
                ])
                .unwrap()
            )
            .unwrap(),
            r#"{"inputs":[{"idProperty":"email","id":"a@x","properties":{"a":"1"},"objectWriteTraceId":"t-1"},{"id":"77","properties":{"a":"1"},"objectWriteTraceId":"t-2"}]}"#
        );
        assert_eq!(
            String::from_utf8(
                associate_body(&[row(1, Upsert, Some("email"), "a@x")], "companies").unwrap()
            )
            .unwrap(),
            r#"{"inputs":[{"from":{"id":"100"},"to":{"id":"9"},"types":[{"associationCategory":"USER_DEFINED","associationTypeId":7}]}]}"#
        );
    }

    #[test]
    fn a_read_asks_by_each_rows_value_or_its_trace_id() {
        let row = |id: i64, props: &str| ClaimedRow {
            id,
            trace_id: format!("t-{id}"),
            properties: props.into(),
            associations: "[]".into(),
            attempts: 0,
            split_to: None,
            first_failed_at: None,
            read_by: Some("email".into()),
            sent_with: None,
            last_error: None,
            ..Default::default()
        };
        let rows = [
            row(1, r#"{"email":"a@example.com"}"#),
            row(2, r#"{"email":""}"#),
        ];
        assert_eq!(
            String::from_utf8(read_body(&rows, "email", &["email", "trace"])).unwrap(),
            r#"{"idProperty":"email","inputs":[{"id":"a@example.com"},{"id":"t-2"}],"properties":["email","trace"]}"#
        );
        // Read by the trace property its create carried: its trace id, whatever value the
        // producer put in that property (the create replaced it).
        let mut traced = row(3, r#"{"trace":"the producer's own"}"#);
        traced.sent_with = Some("trace".into());
        assert_eq!(
            String::from_utf8(read_body(&[traced], "trace", &["trace"])).unwrap(),
            r#"{"idProperty":"trace","inputs":[{"id":"t-3"}],"properties":["trace"]}"#
        );
    }

    #[test]
    fn rate_headers_are_read_when_present() {
        let mut h = HeaderMap::new();
        h.insert("X-HubSpot-RateLimit-Max", "190".parse().unwrap());
        h.insert("X-HubSpot-RateLimit-Remaining", "3".parse().unwrap());
        h.insert(
            "X-HubSpot-RateLimit-Daily-Remaining",
            "nope".parse().unwrap(),
        );
        let r = rate_headers(&h);
        assert_eq!(
            (r.max, r.remaining, r.interval_ms, r.daily_remaining),
            (Some(190), Some(3), None, None)
        );
    }
}
