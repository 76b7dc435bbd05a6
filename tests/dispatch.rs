//! Sending, end to end: the daemon (in this process) against the HubSpot simulator on
//! 127.0.0.1:0, through every kind of answer HubSpot gives.

mod common;

use std::time::Duration;

use common::sim::{
    Simulator, enqueue, fast, settled, sql, sql_count, start_daemon, start_daemon_on,
};
use common::{Backend, eventually};
use hubspot_outbox::simulator::{SimFaults, SimOptions};
use serde_json::{Value, json};

fn contact(i: usize) -> Value {
    json!({"objectType": "contacts", "properties": {"email": format!("c{i}@example.com"), "firstname": format!("F{i}")},
           "objectWriteTraceId": format!("c-{i}")})
}

crate::on_both_backends! {
async fn a_mixed_207_batch_fails_the_bad_input_and_creates_the_rest(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    let mut writes: Vec<Value> = (0..10).map(contact).collect();
    writes[4]["properties"]["unknown_colour"] = json!("red");
    enqueue(&d, writes).await;
    settled(&d, 10).await;
    assert_eq!(
        sql_count(&d, "state = 'succeeded' AND hubspot_id IS NOT NULL").await,
        9
    );
    let failed = sql(
        &d,
        "SELECT trace_id, last_error FROM outbox WHERE state = 'failed'",
    )
    .await;
    assert!(
        failed.starts_with("c-4|VALIDATION_ERROR: ") && failed.contains("unknown_colour"),
        "{failed}"
    );
    let history = d.store.error_history("c-4").await.unwrap();
    assert_eq!((history.len(), history[0].status), (1, 207));
    assert!(history[0].raw.contains("PROPERTY_DOESNT_EXIST"));
    assert_eq!(sim.objects("contacts").await.len(), 9);
    d.stop().await;
}
}

crate::on_both_backends! {
async fn a_whole_batch_400_is_split_until_the_one_bad_input_fails(db) {
    let sim = Simulator::start(SimOptions {
        faults: SimFaults {
            whole_batch_errors: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    let mut writes: Vec<Value> = (0..50).map(contact).collect();
    writes[31]["properties"]["unknown_field"] = json!("x");
    enqueue(&d, writes).await;
    settled(&d, 50).await;
    assert_eq!(sql_count(&d, "state = 'succeeded'").await, 49);
    assert_eq!(
        sql(&d, "SELECT trace_id FROM outbox WHERE state = 'failed'").await,
        "c-31"
    );
    assert!(
        sql(&d, "SELECT last_error FROM outbox WHERE trace_id = 'c-31'")
            .await
            .contains("HTTP 400")
    );
    assert_eq!(
        sql_count(&d, "attempts > 1").await,
        0,
        "splitting counts no attempt"
    );
    assert_eq!(sim.objects("contacts").await.len(), 49);
    d.stop().await;
}
}

crate::on_both_backends! {
async fn a_409_for_an_existing_contact_is_adopted_with_its_id(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(
        &sim,
        &[(
            "HUBSPOT_OUTBOX__OBJECTS__CONTACTS__UNIQUE_PROPERTY",
            "email",
        )],
    ))
    .await;
    enqueue(&d, vec![contact(1)]).await;
    settled(&d, 1).await;
    let first_id = sql(&d, "SELECT hubspot_id FROM outbox WHERE trace_id = 'c-1'").await;
    let mut again = contact(1);
    again["objectWriteTraceId"] = json!("c-1-again");
    enqueue(&d, vec![again, contact(2), contact(3)]).await;
    settled(&d, 4).await;
    assert_eq!(
        sql(
            &d,
            "SELECT state, hubspot_id FROM outbox WHERE trace_id = 'c-1-again'"
        )
        .await,
        format!("succeeded|{first_id}")
    );
    assert!(
        sql(&d, "SELECT note FROM outbox WHERE trace_id = 'c-1-again'")
            .await
            .contains("already existed")
    );
    assert_eq!(sql_count(&d, "state = 'succeeded'").await, 4);
    assert_eq!(
        sim.objects("contacts").await.len(),
        3,
        "no duplicate was created"
    );
    d.stop().await;
}
}

crate::on_both_backends! {
async fn a_429_storm_fails_nothing_and_counts_no_attempt(db) {
    // HubSpot allows less than the daemon was told, and sends no rate-limit headers to
    // adapt to: every excess request gets a 429.
    let sim = Simulator::start(SimOptions {
        requests_per_interval: 3,
        interval: Duration::from_millis(500),
        rate_headers: false,
        ..Default::default()
    })
    .await;
    let d = start_daemon_on(&db, &fast(&sim, &[("HUBSPOT_OUTBOX__BATCHING__MAX_SIZE", "5")])).await;
    enqueue(&d, (0..60).map(contact).collect()).await;
    settled(&d, 60).await;
    assert_eq!(sql_count(&d, "state = 'succeeded'").await, 60);
    assert_eq!(
        sql_count(&d, "attempts != 1").await,
        0,
        "429s counted no attempt"
    );
    let stats = sim.stats().await;
    assert!(
        stats["by_status"]["429"].as_u64().unwrap_or(0) > 0,
        "{stats}"
    );
    assert!(
        sql(
            &d,
            "SELECT count(*) FROM error_history WHERE http_status = 429"
        )
        .await
        .parse::<u32>()
        .unwrap()
            > 0
    );
    d.stop().await;
}
}

crate::on_both_backends! {
async fn a_401_fails_nothing_and_sending_resumes_when_the_token_works(db) {
    let sim = Simulator::start(SimOptions {
        token: "another-token".into(),
        ..Default::default()
    })
    .await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    enqueue(&d, (0..20).map(contact).collect()).await;
    eventually("a 401 was met and recorded", || async {
        sql(&d, "SELECT kind FROM pauses WHERE scope = 'all'").await == "unauthorized"
    })
    .await;
    // That only one probe goes at a time is shown with a virtual clock in
    // `dispatch::tests::a_401_pause_admits_one_probe_at_a_time`.
    assert_eq!(sql_count(&d, "state = 'failed'").await, 0);
    assert_eq!(sql_count(&d, "state = 'pending'").await, 20);
    sim.control("/_sim/token", json!({"token": "sim-token"}))
        .await;
    settled(&d, 20).await;
    assert_eq!(sql_count(&d, "state = 'succeeded'").await, 20);
    assert_eq!(sql(&d, "SELECT count(*) FROM pauses").await, "0");
    d.stop().await;
}
}

crate::on_both_backends! {
async fn server_errors_are_retried_with_back_off_until_they_succeed(db) {
    let sim = Simulator::start(SimOptions {
        faults: SimFaults {
            fail_rate: 1.0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    enqueue(&d, (0..10).map(contact).collect()).await;
    eventually("a retry is scheduled", || async {
        sql_count(&d, "attempts >= 2 AND state = 'pending'").await == 10
    })
    .await;
    assert!(
        sql(&d, "SELECT last_error FROM outbox LIMIT 1")
            .await
            .contains("HTTP 503")
    );
    sim.control("/_sim/faults", json!({})).await;
    settled(&d, 10).await;
    assert_eq!(sql_count(&d, "state = 'succeeded'").await, 10);
    assert_eq!(sim.objects("contacts").await.len(), 10);
    d.stop().await;
}
}

crate::on_both_backends! {
async fn shuffled_results_are_mapped_to_their_own_rows_with_or_without_echoed_ids(db) {
    for echo in [true, false] {
        let sim = Simulator::start(SimOptions {
            echo_trace_ids: echo,
            ..Default::default()
        })
        .await;
        // Without echoed trace ids, HubSpot's lowercased email is what identifies each
        // result (the writes' emails are mixed case).
        let d = start_daemon_on(&db.another(), &fast(
            &sim,
            &[(
                "HUBSPOT_OUTBOX__OBJECTS__CONTACTS__UNIQUE_PROPERTY",
                "email",
            )],
        ))
        .await;
        enqueue(
            &d,
            (0..100)
                .map(|i| {
                    json!({"objectType": "contacts", "objectWriteTraceId": format!("c-{i}"),
                           "properties": {"email": format!("Mixed.Case{i}@Example.com"), "firstname": "Same"}})
                })
                .collect(),
        )
        .await;
        settled(&d, 100).await;
        let created: std::collections::HashMap<String, String> = sim
            .objects("contacts")
            .await
            .iter()
            .map(|o| {
                (
                    o["id"].as_str().unwrap().to_owned(),
                    o["properties"]["email"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let rows = sql(
            &d,
            "SELECT hubspot_id, properties ->> 'email' FROM outbox",
        )
        .await;
        for line in rows.lines() {
            let (id, email) = line.split_once('|').unwrap();
            assert_eq!(
                created.get(id).map(|e| e.to_lowercase()),
                Some(email.to_lowercase()),
                "echo={echo}: {line}"
            );
        }
        // Deals have no unique property and identical names: the trace property's value
        // is what identifies each result.
        enqueue(
            &d,
            (0..50)
                .map(|i| {
                    json!({"objectType": "deals", "objectWriteTraceId": format!("d-{i}"),
                                "properties": {"dealname": "Same"}})
                })
                .collect(),
        )
        .await;
        settled(&d, 150).await;
        let traces: std::collections::HashMap<String, String> = sim
            .objects("deals")
            .await
            .iter()
            .map(|o| {
                (
                    o["id"].as_str().unwrap().to_owned(),
                    o["properties"]["hubspot_outbox_trace_id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                )
            })
            .collect();
        let rows = sql(
            &d,
            "SELECT hubspot_id, trace_id FROM outbox WHERE object_type = 'deals'",
        )
        .await;
        assert_eq!(rows.lines().count(), 50);
        for line in rows.lines() {
            let (id, trace) = line.split_once('|').unwrap();
            assert_eq!(
                traces.get(id).map(String::as_str),
                Some(trace),
                "echo={echo}: {line}"
            );
        }
        d.stop().await;
    }
}
}

/// Creates objects in the simulator directly, as someone else would in HubSpot.
async fn create_directly(sim: &Simulator, object_type: &str, inputs: Vec<Value>) {
    let r = sim
        .http
        .post(format!(
            "{}/crm/v3/objects/{object_type}/batch/create",
            sim.url()
        ))
        .bearer_auth("sim-token")
        .header("content-type", "application/json")
        .body(json!({"inputs": inputs}).to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

/// Batch creates the simulator saw: every request but the calls it counts by kind.
fn creates(stats: &Value) -> u64 {
    let others: u64 = stats["calls"]
        .as_object()
        .map(|c| c.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    stats["requests"].as_u64().unwrap() - others
}

crate::on_both_backends! {
async fn forty_conflicts_in_a_batch_of_a_hundred_cost_one_read_and_one_resend(db) {
    for custom in [false, true] {
        // Contacts conflict on email (HubSpot's 409 "Existing ID"); deals on a custom
        // unique property, which HubSpot answers with a whole-batch 400 "already has that
        // value".
        let sim = Simulator::start(SimOptions {
            faults: SimFaults {
                custom_conflict_400: true,
                ..Default::default()
            },
            ..Default::default()
        })
        .await;
        let (object_type, key) = if custom {
            ("deals", "deal_key")
        } else {
            ("contacts", "email")
        };
        if custom {
            let r = sim
                .http
                .post(format!("{}/crm/v3/properties/deals", sim.url()))
                .bearer_auth("sim-token")
                .header("content-type", "application/json")
                .body(json!({"name": "deal_key", "label": "Deal key", "type": "string", "fieldType": "text",
                             "groupName": "dealinformation", "hasUniqueValue": true}).to_string())
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
        let value = |i: usize| format!("k{i}@example.com");
        create_directly(
            &sim,
            object_type,
            (0..40)
                .map(|i| json!({"properties": {key: value(i * 2)}, "associations": []}))
                .collect(),
        )
        .await;
        let before = sim.stats().await;
        let unique_env = if custom {
            "HUBSPOT_OUTBOX__OBJECTS__DEALS__UNIQUE_PROPERTY"
        } else {
            "HUBSPOT_OUTBOX__OBJECTS__CONTACTS__UNIQUE_PROPERTY"
        };
        let d = start_daemon_on(&db.another(), &fast(
            &sim,
            &[
                (unique_env, key),
                ("HUBSPOT_OUTBOX__BATCHING__LINGER", "300ms"),
            ],
        ))
        .await;
        // One batch of 100, every other one of the first 80 already in HubSpot.
        enqueue(
            &d,
            (0..100)
                .map(|i| {
                    json!({"objectType": object_type, "objectWriteTraceId": format!("w-{i}"),
                                "properties": {key: value(i)}})
                })
                .collect(),
        )
        .await;
        settled(&d, 100).await;
        let after = sim.stats().await;
        assert_eq!(
            sql_count(
                &d,
                "state = 'succeeded' AND note LIKE 'already existed in HubSpot (found by%'"
            )
            .await,
            40,
            "custom={custom}"
        );
        assert_eq!(sql_count(&d, "state = 'succeeded'").await, 100);
        assert_eq!(sim.objects(object_type).await.len(), 100, "no duplicate");
        let reads = after["calls"]["read"].as_u64().unwrap_or(0);
        assert_eq!(reads, 1, "custom={custom}: one read: {after}");
        assert_eq!(
            creates(&after) - creates(&before),
            2,
            "custom={custom}: the conflicting batch and one resend: {after}"
        );
        d.stop().await;
    }
}
}

crate::on_both_backends! {
async fn an_unknown_object_type_fails_its_writes_and_not_the_others(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    enqueue(
        &d,
        vec![
            json!({"objectType": "widgets", "properties": {"a": "1"}}),
            json!({"objectType": "widgets", "properties": {"a": "2"}}),
            json!({"objectType": "deals", "properties": {"dealname": "x"}}),
        ],
    )
    .await;
    settled(&d, 3).await;
    assert_eq!(sql_count(&d, "object_type = 'widgets' AND state = 'failed' AND last_error LIKE '%Unable to infer object type%'").await, 2);
    assert_eq!(
        sql_count(&d, "object_type = 'deals' AND state = 'succeeded'").await,
        1
    );
    d.stop().await;
}
}

crate::on_both_backends! {
async fn a_403_pauses_only_its_object_type_until_the_scope_is_granted(db) {
    let sim = Simulator::start(SimOptions {
        faults: SimFaults {
            forbidden_types: vec!["deals".into()],
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    let mut writes: Vec<Value> = (0..5).map(contact).collect();
    writes.extend(
        (0..5).map(|i| json!({"objectType": "deals", "properties": {"dealname": format!("d{i}")}})),
    );
    enqueue(&d, writes).await;
    eventually("contacts sent, deals paused", || async {
        sql_count(&d, "object_type = 'contacts' AND state = 'succeeded'").await == 5
            && sql(&d, "SELECT kind FROM pauses WHERE scope = 'object:deals'").await == "forbidden"
    })
    .await;
    assert_eq!(
        sql_count(
            &d,
            "object_type = 'deals' AND state = 'pending' AND attempts = 0"
        )
        .await,
        5
    );
    sim.control("/_sim/faults", json!({})).await;
    settled(&d, 10).await;
    assert_eq!(sql_count(&d, "state = 'succeeded'").await, 10);
    assert_eq!(sql(&d, "SELECT count(*) FROM pauses").await, "0");
    d.stop().await;
}
}

crate::on_both_backends! {
async fn retryable_errors_give_up_after_max_attempts_and_give_up_after_with_the_last_error(db) {
    let sim = Simulator::start(SimOptions {
        faults: SimFaults {
            fail_rate: 1.0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let d = start_daemon_on(&db, &fast(
        &sim,
        &[
            ("HUBSPOT_OUTBOX__RETRY__MAX_ATTEMPTS", "3"),
            ("HUBSPOT_OUTBOX__RETRY__GIVE_UP_AFTER", "0s"),
            // Every request fails: keep sending rather than probing, to count attempts.
            ("HUBSPOT_OUTBOX__RETRY__UNREACHABLE_AFTER", "1000"),
        ],
    ))
    .await;
    enqueue(&d, (0..4).map(contact).collect()).await;
    settled(&d, 4).await;
    assert_eq!(sql_count(&d, "state = 'failed' AND attempts = 3 AND last_error LIKE 'gave up after 3 attempts over %: HTTP 503%'").await, 4);
    let history = d.store.error_history("c-0").await.unwrap();
    assert_eq!(
        history.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    d.stop().await;
}
}

crate::on_both_backends! {
async fn hold_parks_ambiguous_writes_as_unconfirmed_and_never_resends_them(db) {
    let sim = Simulator::start(SimOptions {
        faults: SimFaults {
            fail_after_create_rate: 1.0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    // Deals without the trace property cannot be read back.
    let d = start_daemon_on(&db, &fast(
        &sim,
        &[
            ("HUBSPOT_OUTBOX__RETRY__ON_AMBIGUOUS", "hold"),
            ("HUBSPOT_OUTBOX__HUBSPOT__TRACE_PROPERTY", ""),
        ],
    ))
    .await;
    enqueue(
        &d,
        (0..6)
            .map(|i| json!({"objectType": "deals", "properties": {"dealname": format!("d{i}")}}))
            .collect(),
    )
    .await;
    eventually("all unconfirmed", || async {
        sql_count(&d, "state = 'unconfirmed'").await == 6
    })
    .await;
    // That they are never resent, however long the daemon runs, is shown with a virtual
    // clock in `dispatch::tests::held_writes_are_never_resent_however_long_the_daemon_runs`.
    assert_eq!(
        sim.objects("deals").await.len(),
        6,
        "created once, never resent"
    );
    assert_eq!(sim.stats().await["requests"], 1);
    d.stop().await;
}
}

crate::on_both_backends! {
async fn the_daily_limit_is_counted_in_the_database_and_survives_a_restart(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let env = fast(
        &sim,
        &[
            ("HUBSPOT_OUTBOX__RATE_LIMIT__DAILY_LIMIT", "3"),
            ("HUBSPOT_OUTBOX__BATCHING__MAX_SIZE", "1"),
            ("HUBSPOT_OUTBOX__HUBSPOT__TRACE_PROPERTY", ""),
        ],
    );
    let d = start_daemon_on(&db, &env).await;
    enqueue(&d, (0..6).map(contact).collect()).await;
    eventually("the daily limit stops sending", || async {
        sql(&d, "SELECT kind FROM pauses WHERE scope = 'all'").await == "daily_limit"
    })
    .await;
    eventually("the last request settled", || async {
        sql_count(&d, "state = 'succeeded'").await == 3
    })
    .await;
    let paused_at = sql(&d, "SELECT updated_at FROM pauses WHERE scope = 'all'").await;
    let d = d.restart().await;
    match &db {
        // Alone, the new run forgets the recorded pause, counts the day from the
        // database, and pauses again before it sends anything.
        common::Backend::Sqlite => {
            eventually("the restarted daemon paused on its own count", || async {
                let now = sql(&d, "SELECT updated_at FROM pauses WHERE scope = 'all'").await;
                !now.is_empty() && now != paused_at
            })
            .await
        }
        // Sharing the outbox, the pause is every daemon's: the new run keeps it (and
        // sends nothing meanwhile; given a few ticks to show it).
        common::Backend::Postgres(_) => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(
                sql(&d, "SELECT kind FROM pauses WHERE scope = 'all'").await,
                "daily_limit"
            );
        }
    }
    assert_eq!(
        sql_count(&d, "state = 'succeeded'").await,
        3,
        "a restart does not reset the day's count"
    );
    assert_eq!(sql_count(&d, "state = 'pending'").await, 3);
    assert_eq!(sim.stats().await["requests"], 3);
    d.stop().await;
}
}

crate::on_both_backends! {
async fn a_connection_lost_after_creating_is_read_back_and_never_resent(db) {
    let sim = Simulator::start(SimOptions {
        faults: SimFaults {
            close_after_create_rate: 1.0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let d = start_daemon_on(&db, &fast(
        &sim,
        &[(
            "HUBSPOT_OUTBOX__OBJECTS__CONTACTS__UNIQUE_PROPERTY",
            "email",
        )],
    ))
    .await;
    enqueue(&d, (0..10).map(contact).collect()).await;
    settled(&d, 10).await;
    assert_eq!(
        sql_count(
            &d,
            "state = 'succeeded' AND note LIKE 'found in HubSpot by hubspot_outbox_trace_id%'"
        )
        .await,
        10
    );
    assert_eq!(
        sim.objects("contacts").await.len(),
        10,
        "created once each, found by reading back"
    );
    let stats = sim.stats().await;
    assert_eq!(stats["calls"]["read"], 1, "{stats}");
    assert_eq!(stats["inputs_created"], 10, "never resent: {stats}");
    let first = d.store.error_history("c-0").await.unwrap();
    assert_eq!(
        first[0].status, 0,
        "the lost answer is in the history: {first:?}"
    );
    d.stop().await;
}
}

crate::on_both_backends! {
async fn the_socket_lists_retries_reports_status_and_serves_metrics(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    let mut writes: Vec<Value> = (0..5).map(contact).collect();
    writes[2]["properties"]["unknown_x"] = json!("1");
    enqueue(&d, writes).await;
    settled(&d, 5).await;
    let mut c = d.client().await;
    let listed = c
        .get("/v1/writes?state=failed&objectType=contacts")
        .await
        .unwrap()
        .json();
    assert_eq!(listed["writes"].as_array().unwrap().len(), 1);
    assert_eq!(listed["writes"][0]["objectWriteTraceId"], "c-2");
    assert_eq!(c.get("/v1/writes?state=bogus").await.unwrap().status, 400);

    let retry = |body: Value| body.to_string();
    let a = c
        .send(
            hyper::Method::POST,
            "/v1/retry",
            Some("application/json"),
            retry(json!({"failed": true, "dryRun": true})),
        )
        .await
        .unwrap();
    assert_eq!(a.json(), json!({"writes": 1, "dryRun": true}));
    let a = c
        .send(
            hyper::Method::POST,
            "/v1/retry",
            Some("application/json"),
            retry(json!({"traceIds": ["c-2"]})),
        )
        .await
        .unwrap();
    assert_eq!(a.json()["writes"], 1);
    let a = c
        .send(
            hyper::Method::POST,
            "/v1/retry",
            Some("application/json"),
            retry(json!({"failed": true, "unconfirmed": true})),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 400);
    // Replayed, it fails again (the property still does not exist).
    eventually("replayed", || async {
        sql_count(&d, "trace_id = 'c-2' AND state = 'failed' AND attempts = 1").await == 1
    })
    .await;

    let status = c.get("/v1/status").await.unwrap().json();
    assert!(
        status["writes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["state"] == "succeeded" && w["writes"] == 4)
    );
    assert_eq!(status["paused"], json!([]));

    let metrics = String::from_utf8(c.get("/metrics").await.unwrap().body.to_vec()).unwrap();
    for needle in [
        "hubspot_outbox_queue_writes{object_type=\"contacts\",state=\"succeeded\"} 4",
        "hubspot_outbox_writes_total{object_type=\"contacts\",outcome=\"succeeded\"} 4",
        "hubspot_outbox_requests_total{status=\"207\"} 2",
        "hubspot_outbox_writes_total{object_type=\"contacts\",outcome=\"failed\"} 2",
        "hubspot_outbox_paused 0",
    ] {
        assert!(metrics.contains(needle), "missing {needle}:\n{metrics}");
    }
    d.stop().await;
}
}

crate::on_both_backends! {
async fn an_outage_of_refused_connections_then_503s_fails_nothing_and_the_backlog_drains_after(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    // Time compressed: a 3 s refusal and 3 s of 503s stand for hours, with probes at most
    // 500 ms apart standing for a minute. Two attempts would have failed every write.
    let d = start_daemon_on(&db, &fast(
        &sim,
        &[
            ("HUBSPOT_OUTBOX__BATCHING__MAX_SIZE", "10"),
            ("HUBSPOT_OUTBOX__RETRY__MAX_ATTEMPTS", "2"),
            ("HUBSPOT_OUTBOX__RETRY__GIVE_UP_AFTER", "1h"),
            ("HUBSPOT_OUTBOX__RETRY__UNREACHABLE_AFTER", "3"),
            ("HUBSPOT_OUTBOX__RETRY__MAX_PROBE_INTERVAL", "500ms"),
        ],
    ))
    .await;
    sim.control("/_sim/outage", json!({"refuseFor": "3s", "failFor": "3s"}))
        .await;
    let outage = std::time::Instant::now();
    enqueue(&d, (0..60).map(contact).collect()).await;
    eventually("operators see HubSpot unreachable", || async {
        sql(&d, "SELECT kind FROM pauses WHERE scope = 'hubspot'").await == "unreachable"
    })
    .await;
    let reason = sql(&d, "SELECT reason FROM pauses WHERE scope = 'hubspot'").await;
    assert!(
        reason.starts_with("HubSpot unreachable since ") && reason.contains("could not connect"),
        "{reason}"
    );
    let mut c = d.client().await;
    let metrics = c.get("/metrics").await.unwrap();
    assert!(
        String::from_utf8_lossy(&metrics.body).contains("hubspot_outbox_hubspot_unreachable 1"),
        "/metrics says so too"
    );
    settled(&d, 60).await;
    let drained = outage.elapsed();
    assert_eq!(sql_count(&d, "state = 'succeeded'").await, 60);
    assert_eq!(sim.objects("contacts").await.len(), 60);
    assert!(drained >= Duration::from_secs(6), "the outage lasted");
    assert!(
        drained < Duration::from_secs(16),
        "and the backlog drained soon after it: {drained:?}"
    );
    // While HubSpot answered 503, only single probes went, at most one per 500 ms.
    let stats = sim.stats().await;
    let answered_503 = stats["by_status"]["503"].as_u64().unwrap_or(0);
    assert!(
        (1..=12).contains(&answered_503),
        "{answered_503} requests met the 503s"
    );
    assert_eq!(sql(&d, "SELECT count(*) FROM pauses").await, "0");
    d.stop().await;
}
}

/// SQLite only: its single writer lock and busy timeout make a settle fail outright
/// while a producer holds the lock; on PostgreSQL row locks make it wait instead.
#[tokio::test]
async fn a_settle_that_meets_a_locked_database_is_retried_and_the_answer_kept() {
    use sqlx::Connection;
    let sim = Simulator::start(SimOptions {
        faults: SimFaults {
            latency: Duration::from_millis(600),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let d = start_daemon(&fast(
        &sim,
        &[
            ("HUBSPOT_OUTBOX__DATABASE__BUSY_TIMEOUT", "100ms"),
            ("HUBSPOT_OUTBOX__HUBSPOT__TRACE_PROPERTY", ""),
        ],
    ))
    .await;
    enqueue(&d, (0..5).map(contact).collect()).await;
    eventually("the batch is in flight", || async {
        sql_count(&d, "state = 'in_flight'").await == 5
    })
    .await;
    // A producer holds SQLite's write lock past the answer and far past the busy timeout.
    let mut producer = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(d.db_path()),
    )
    .await
    .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut producer)
        .await
        .unwrap();
    eventually("HubSpot answered", || async {
        sim.stats().await["requests"] == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    sqlx::query("COMMIT").execute(&mut producer).await.unwrap();
    producer.close().await.unwrap();
    settled(&d, 5).await;
    assert_eq!(sql_count(&d, "state = 'succeeded'").await, 5);
    assert_eq!(sim.objects("contacts").await.len(), 5);
    assert_eq!(
        sim.stats().await["requests"],
        1,
        "the answer was kept, not resent for"
    );
    d.stop().await;
}

crate::on_both_backends! {
async fn a_trace_property_that_cannot_be_created_is_reported_and_nothing_is_duplicated(db) {
    // The token may not create properties, and every create is answered 500 after
    // HubSpot made the records.
    let sim = Simulator::start(SimOptions {
        faults: SimFaults {
            schema_write_forbidden: true,
            fail_after_create_rate: 1.0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    enqueue(
        &d,
        (0..5)
            .map(|i| json!({"objectType": "deals", "properties": {"dealname": format!("d{i}")}}))
            .collect(),
    )
    .await;
    eventually("held, not resent", || async {
        sql_count(&d, "state = 'unconfirmed'").await == 5
    })
    .await;
    assert_eq!(sim.objects("deals").await.len(), 5, "nothing duplicated");
    let stats = sim.stats().await;
    assert_eq!(stats["calls"]["property_create"], 1, "{stats}");
    assert_eq!(creates(&stats), 1, "sent once: {stats}");
    let mut c = d.client().await;
    let status: Value = serde_json::from_slice(&c.get("/v1/status").await.unwrap().body).unwrap();
    let trace = &status["traceProperty"][0];
    assert_eq!(trace["objectType"], "deals");
    assert_eq!(trace["state"], "unavailable");
    assert!(
        trace["reason"]
            .as_str()
            .unwrap()
            .contains("crm.schemas.deals.write"),
        "the fix is named: {trace}"
    );
    let metrics = String::from_utf8_lossy(&c.get("/metrics").await.unwrap().body).into_owned();
    assert!(
        metrics.contains("hubspot_outbox_trace_property_ready{object_type=\"deals\"} 0"),
        "{metrics}"
    );
    let held = sql(&d, "SELECT last_error FROM outbox LIMIT 1").await;
    assert!(held.contains("cannot be read back"), "{held}");
    d.stop().await;
}
}

/// Runs the binary's `setup` against `sim`; returns (exit success, stdout); the log
/// (stderr) is shown when an assertion fails.
async fn setup(
    db: &Backend,
    sim: &Simulator,
    dir: &std::path::Path,
    args: &[&str],
) -> (bool, String) {
    let mut cmd = common::daemon_command(dir, &[&["setup"], args].concat());
    cmd.envs(db.env())
        .env("HUBSPOT_ACCESS_TOKEN", "sim-token")
        .env("HUBSPOT_OUTBOX__HUBSPOT__BASE_URL", sim.url());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    eprintln!("setup {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

crate::on_both_backends! {
async fn setup_checks_and_creates_the_trace_property_and_says_what_it_did(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = setup(&db, &sim, dir.path(), &["--object-type", "deals", "--dry-run"]).await;
    assert!(ok, "{out}");
    assert_eq!(
        out.trim(),
        "deals: hubspot_outbox_trace_id is missing; would be created in group dealinformation (dry run)"
    );
    assert_eq!(sim.stats().await["calls"].get("property_create"), None);

    let (ok, out) = setup(
        &db,
        &sim,
        dir.path(),
        &["--object-type", "deals", "--object-type", "contacts"],
    )
    .await;
    assert!(ok, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "contacts: hubspot_outbox_trace_id was missing; created in group contactinformation: ready",
            "deals: hubspot_outbox_trace_id was missing; created in group dealinformation: ready",
        ]
    );
    let (ok, out) = setup(&db, &sim, dir.path(), &["--object-type", "deals", "--json"]).await;
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["outcome"], "ready");
    assert_eq!(sim.stats().await["calls"]["property_create"], 2);

    // Without the scope to create properties: the type is named with the fix, exit 1.
    sim.control("/_sim/faults", json!({"schema_write_forbidden": true}))
        .await;
    let (ok, out) = setup(&db, &sim, dir.path(), &["--object-type", "tickets"]).await;
    assert!(!ok);
    assert!(
        out.starts_with("tickets: hubspot_outbox_trace_id UNAVAILABLE: ")
            && out.contains("crm.schemas.tickets.write"),
        "{out}"
    );
    let (ok, out) = setup(&db, &sim, dir.path(), &[]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("deals:") && out.contains("tickets:"),
        "every type checked before: {out}"
    );
}
}
