//! Property test of the front door (issue 9): whatever bytes a client sends to
//! `POST /v1/writes`, under whatever content type, the answer is a 2xx or a 4xx with a JSON
//! error, never a 5xx, the daemon keeps answering, and a request is stored whole or not at
//! all (the rows grow by exactly the answer's `new`, or not at all).

mod common;

use std::sync::OnceLock;

use common::InProcess;
use common::json_gen::any_json;
use hubspot_outbox::operator::client::SocketClient;
use hyper::Method;
use proptest::prelude::*;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

/// One daemon per backend for every case: a runtime that outlives them, and the daemon
/// in it (none on PostgreSQL where it is not installed).
fn daemon(postgres: bool) -> Option<&'static (Runtime, InProcess)> {
    static SQLITE: OnceLock<Option<(Runtime, InProcess)>> = OnceLock::new();
    static POSTGRES: OnceLock<Option<(Runtime, InProcess)>> = OnceLock::new();
    let cell = if postgres { &POSTGRES } else { &SQLITE };
    cell.get_or_init(|| {
        let backend = match postgres {
            true => common::Backend::postgres()?,
            false => common::Backend::Sqlite,
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let daemon = rt.block_on(InProcess::start_on_backend(
            &backend,
            &[
                // Small limits, so the generated bodies reach them too.
                ("HUBSPOT_OUTBOX__LIMITS__MAX_REQUEST_BYTES", "4096"),
                ("HUBSPOT_OUTBOX__LIMITS__MAX_WRITES_PER_REQUEST", "5"),
            ],
        ));
        Some((rt, daemon))
    })
    .as_ref()
}

/// The property, on one backend's daemon: any body is stored whole (as many rows as the
/// answer says are new) or refused with a JSON 4xx that stores nothing, and the daemon
/// still answers.
fn stored_whole_or_refused(
    postgres: bool,
    body: Vec<u8>,
    content_type: Option<String>,
) -> Result<(), TestCaseError> {
    let Some((rt, daemon)) = daemon(postgres) else {
        return Ok(());
    };
    rt.block_on(async {
        let before = daemon.rows().await;
        let mut client = SocketClient::connect(&daemon.config.socket.path)
            .await
            .unwrap();
        let answer = client
            .send(
                Method::POST,
                "/v1/writes",
                content_type.as_deref(),
                body.clone(),
            )
            .await
            .expect("the daemon answers");
        let after = daemon.rows().await;
        let status = answer.status.as_u16();
        let json = answer.json();
        match status {
            200..=299 => {
                let new = json["new"].as_i64().expect("a 2xx says how many were new");
                prop_assert_eq!(after - before, new, "{}", json);
            }
            400..=499 => {
                prop_assert!(json["error"].is_string(), "{} {:?}", status, answer.body);
                prop_assert!(json["message"].is_string(), "{} {:?}", status, answer.body);
                prop_assert_eq!(after, before, "a refused request stored rows: {}", json);
            }
            _ => prop_assert!(
                false,
                "status {} for {:?}: {}",
                status,
                String::from_utf8_lossy(&body),
                json
            ),
        }
        // And the daemon is still there.
        prop_assert_eq!(client.get("/healthz").await.unwrap().status.as_u16(), 200);
        Ok(())
    })
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("contacts".to_owned()),
        Just("companies".to_owned()),
        Just("2-12345".to_owned()),
        Just("p_custom".to_owned()),
        Just("email".to_owned()),
        Just("objectWriteTraceId".to_owned()),
        (0..4u8).prop_map(|i| format!("trace-{i}")),
        Just(String::new()),
        "\\PC{0,16}",
        ".{0,8}",
    ]
}

/// Something shaped like a write, each field right or wrong at random.
fn write_like() -> impl Strategy<Value = Value> {
    (
        prop_oneof![3 => word().prop_map(Value::String), 1 => any_json(word().boxed())],
        prop_oneof![
            3 => prop::collection::btree_map(word(), prop_oneof![
                3 => word().prop_map(Value::String),
                1 => any_json(word().boxed()),
            ], 0..4)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
            1 => any_json(word().boxed()),
        ],
        prop::option::of(
            prop_oneof![3 => word().prop_map(Value::String), 1 => any_json(word().boxed())],
        ),
        prop::option::of((word(), any_json(word().boxed()))),
    )
        .prop_map(|(object_type, properties, trace, extra)| {
            let mut w = json!({"objectType": object_type, "properties": properties});
            if let Some(t) = trace {
                w["objectWriteTraceId"] = t;
            }
            if let Some((k, v)) = extra {
                w[k] = v;
            }
            w
        })
}

/// A write that validates, its trace id from a small set (so retries and conflicts occur).
fn valid_write() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec!["contacts", "companies", "deals"]),
        "[a-z]{1,8}",
        prop::option::of(0..40u8),
    )
        .prop_map(|(object_type, value, trace)| {
            let mut w = json!({"objectType": object_type, "properties": {"name": value}});
            if let Some(t) = trace {
                w["objectWriteTraceId"] = json!(format!("trace-{t}"));
            }
            w
        })
}

/// A write, valid more often than not.
fn a_write() -> impl Strategy<Value = Value> {
    prop_oneof![2 => valid_write(), 1 => write_like()]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => a_write().prop_map(|w| w.to_string().into_bytes()),
        3 => prop::collection::vec(a_write(), 0..7)
            .prop_map(|ws| Value::Array(ws).to_string().into_bytes()),
        3 => prop::collection::vec(
            prop_oneof![
                4 => a_write().prop_map(|w| w.to_string()),
                1 => "\\PC{0,20}",
                1 => Just(String::new()),
            ],
            0..7,
        )
        .prop_map(|lines| lines.join("\n").into_bytes()),
        1 => any_json(word().boxed()).prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..300),
        1 => (1usize..3).prop_map(|k| vec![b'['; k * 3000]),
    ]
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        4 => Just(Some("application/json".to_owned())),
        4 => Just(Some("application/x-ndjson".to_owned())),
        1 => Just(None),
        1 => "\\PC{0,24}".prop_map(Some),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn any_body_is_stored_whole_or_refused_with_a_json_4xx_on_sqlite(
        body in body(),
        content_type in content_type(),
    ) {
        stored_whole_or_refused(false, body, content_type)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_body_is_stored_whole_or_refused_with_a_json_4xx_on_postgres(
        body in body(),
        content_type in content_type(),
    ) {
        stored_whole_or_refused(true, body, content_type)?;
    }
}
