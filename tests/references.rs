//! Writes that point at writes still in the queue (issue 11), end to end: the daemon in
//! this process against the simulator, checked against the simulator's record of
//! associations.

mod common;

use std::collections::HashMap;

use common::eventually;
use common::sim::{Simulator, enqueue, fast, settled, sql, sql_count, start_daemon_on};
use hubspot_outbox::simulator::SimOptions;
use hubspot_outbox::store::ops::Selection;
use serde_json::{Value, json};

/// An association to the write `trace` by trace id, HUBSPOT_DEFINED `type_id`.
fn to_write(trace: &str, type_id: i64) -> Value {
    json!({"to": {"objectWriteTraceId": trace},
           "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]})
}

fn create(object_type: &str, trace: &str, properties: Value, associations: Vec<Value>) -> Value {
    json!({"objectType": object_type, "objectWriteTraceId": trace, "properties": properties,
           "associations": associations})
}

async fn hubspot_id(d: &common::InProcess, trace: &str) -> String {
    sql(
        d,
        &format!("SELECT hubspot_id FROM outbox WHERE trace_id = '{trace}'"),
    )
    .await
}

/// The simulator's associations as (from type, from id) → [(to type, to id)].
async fn associations_by_source(
    sim: &Simulator,
) -> HashMap<(String, String), Vec<(String, String)>> {
    let mut out: HashMap<(String, String), Vec<(String, String)>> = HashMap::new();
    for a in sim.associations().await {
        let s = |k: &str| a[k].as_str().unwrap().to_owned();
        out.entry((s("fromObjectType"), s("fromId")))
            .or_default()
            .push((s("toObjectType"), s("toId")));
    }
    out
}

crate::on_both_backends! {
async fn a_company_and_200_contacts_in_one_request_contacts_first(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    let mut writes: Vec<Value> = (0..200)
        .map(|i| {
            create(
                "contacts",
                &format!("contact-{i}"),
                json!({"email": format!("c{i}@example.com")}),
                vec![to_write("company-42", 279)],
            )
        })
        .collect();
    writes.push(create(
        "companies",
        "company-42",
        json!({"name": "Forty-two"}),
        vec![],
    ));
    enqueue(&d, writes).await;
    settled(&d, 201).await;
    assert_eq!(sql_count(&d, "state = 'succeeded'").await, 201);
    let company = hubspot_id(&d, "company-42").await;
    let by_source = associations_by_source(&sim).await;
    for i in 0..200 {
        let contact = hubspot_id(&d, &format!("contact-{i}")).await;
        assert_eq!(
            by_source[&("contacts".to_owned(), contact)],
            [("companies".to_owned(), company.clone())],
            "contact-{i}"
        );
    }
    // One batch per level: the company, then the contacts in batches of 100.
    assert_eq!(
        sql(&d, "SELECT count(*) FROM batch_log").await,
        "3",
        "one request for the company, two for the contacts"
    );
    // The references as written are kept beside the ids they were resolved to.
    let kept = sql(
        &d,
        &format!(
            "SELECT {}, {} FROM outbox WHERE trace_id = 'contact-7'",
            d.json_at("referenced_associations", "$[0].to.objectWriteTraceId"),
            d.json_at("associations", "$[0].to.id")
        ),
    )
    .await;
    assert_eq!(kept, format!("company-42|{company}"));
    assert_eq!(sql(&d, "SELECT count(*) FROM waits_for").await, "0");
    d.stop().await;
}
}

crate::on_both_backends! {
async fn a_three_level_chain_resolves_level_by_level(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    // Deepest first: a line item of a deal of a company, none of which exists yet.
    enqueue(
        &d,
        vec![
            create(
                "line_items",
                "item-1",
                json!({"name": "Widget"}),
                vec![to_write("deal-1", 20)],
            ),
            create(
                "deals",
                "deal-1",
                json!({"dealname": "Big"}),
                vec![to_write("company-1", 341)],
            ),
            create("companies", "company-1", json!({"name": "Acme"}), vec![]),
        ],
    )
    .await;
    settled(&d, 3).await;
    assert_eq!(sql_count(&d, "state = 'succeeded'").await, 3);
    let (item, deal, company) = (
        hubspot_id(&d, "item-1").await,
        hubspot_id(&d, "deal-1").await,
        hubspot_id(&d, "company-1").await,
    );
    let by_source = associations_by_source(&sim).await;
    assert_eq!(
        by_source[&("line_items".to_owned(), item)],
        [("deals".to_owned(), deal.clone())]
    );
    assert_eq!(
        by_source[&("deals".to_owned(), deal)],
        [("companies".to_owned(), company)]
    );
    assert_eq!(sql(&d, "SELECT count(*) FROM batch_log").await, "3");
    d.stop().await;
}
}

crate::on_both_backends! {
async fn references_across_requests_sql_inserts_and_a_restart(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    // A contact over the socket and a deal by SQL, both before their company exists.
    enqueue(
        &d,
        vec![create(
            "contacts",
            "early",
            json!({"email": "early@example.com"}),
            vec![to_write("co-later", 279)],
        )],
    )
    .await;
    d.sql(
        r#"INSERT INTO outbox (trace_id, object_type, properties, associations)
           VALUES ('by-sql', 'deals', '{"dealname": "D"}',
                   '[{"to": {"objectWriteTraceId": "co-later"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 341}]}]')"#,
    );
    eventually("both wait", || async {
        sql_count(&d, "state = 'waiting'").await == 2
    })
    .await;
    let mut c = d.client().await;
    let shown = c.get("/v1/writes/early").await.unwrap().json();
    assert_eq!(shown["state"], "waiting");
    assert_eq!(shown["waitingFor"], json!(["co-later"]));
    assert_eq!(
        sql(
            &d,
            "SELECT state, writes FROM queue_depth WHERE state = 'waiting' ORDER BY object_type"
        )
        .await,
        "waiting|1\nwaiting|1"
    );
    let metrics = c.get("/metrics").await.unwrap().body;
    assert!(
        String::from_utf8_lossy(&metrics)
            .contains("hubspot_outbox_queue_writes{object_type=\"contacts\",state=\"waiting\"} 1")
    );
    drop(c);
    // Nothing is sent for a waiting write, and a restart keeps it waiting.
    let d = d.restart().await;
    assert_eq!(sql_count(&d, "state = 'waiting'").await, 2);
    assert_eq!(sql(&d, "SELECT count(*) FROM batch_log").await, "0");
    enqueue(
        &d,
        vec![create(
            "companies",
            "co-later",
            json!({"name": "Later"}),
            vec![],
        )],
    )
    .await;
    settled(&d, 3).await;
    assert_eq!(sql_count(&d, "state = 'succeeded'").await, 3);
    let company = hubspot_id(&d, "co-later").await;
    let by_source = associations_by_source(&sim).await;
    assert_eq!(
        by_source[&("contacts".to_owned(), hubspot_id(&d, "early").await)],
        [("companies".to_owned(), company.clone())]
    );
    assert_eq!(
        by_source[&("deals".to_owned(), hubspot_id(&d, "by-sql").await)],
        [("companies".to_owned(), company)]
    );
    d.stop().await;
}
}

crate::on_both_backends! {
async fn a_reference_to_a_write_that_fails_fails_and_both_replay(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    // The simulator refuses properties named `unknown…`: the company fails, and the
    // contact and the deal pointing at it (the deal through the contact) fail with it.
    enqueue(
        &d,
        vec![
            create("companies", "bad-co", json!({"unknown_field": "x"}), vec![]),
            create(
                "contacts",
                "needs-co",
                json!({"email": "n@example.com"}),
                vec![to_write("bad-co", 279)],
            ),
            create(
                "deals",
                "needs-contact",
                json!({"dealname": "N"}),
                vec![to_write("needs-co", 3)],
            ),
        ],
    )
    .await;
    settled(&d, 3).await;
    assert_eq!(sql_count(&d, "state = 'failed'").await, 3);
    let why = sql(
        &d,
        "SELECT last_error FROM outbox WHERE trace_id = 'needs-co'",
    )
    .await;
    assert!(
        why.starts_with("associations[0].to.objectWriteTraceId: write `bad-co` failed: ")
            && why.contains("unknown_field"),
        "{why}"
    );
    let why = sql(
        &d,
        "SELECT last_error FROM outbox WHERE trace_id = 'needs-contact'",
    )
    .await;
    assert!(why.contains("write `needs-co` failed"), "{why}");
    assert_eq!(
        sql(
            &d,
            "SELECT category FROM failed_writes WHERE trace_id = 'needs-co'"
        )
        .await,
        "REFERENCE"
    );
    // Fixed and replayed: the company, then the ones that pointed at it.
    let seen = d.store.get_write("bad-co").await.unwrap().unwrap().updated_at;
    assert!(
        d.store
            .edit_and_retry("bad-co", r#"{"name":"Fixed"}"#, None, &seen, &tester(), "set name")
            .await
            .unwrap()
    );
    eventually("the fixed company succeeded", || async {
        sql(&d, "SELECT state FROM outbox WHERE trace_id = 'bad-co'").await == "succeeded"
    })
    .await;
    d.store
        .retry_writes(
            &Selection::TraceIds(vec![
            "needs-co".into(),
            "needs-contact".into(),
            ]),
            &tester(),
        )
        .await
        .unwrap();
    eventually("both replays succeeded", || async {
        sql_count(&d, "state = 'succeeded'").await == 3
    })
    .await;
    let by_source = associations_by_source(&sim).await;
    assert_eq!(
        by_source[&("contacts".to_owned(), hubspot_id(&d, "needs-co").await)],
        [("companies".to_owned(), hubspot_id(&d, "bad-co").await)]
    );
    assert_eq!(
        by_source[&("deals".to_owned(), hubspot_id(&d, "needs-contact").await)],
        [("contacts".to_owned(), hubspot_id(&d, "needs-co").await)]
    );
    d.stop().await;
}
}

crate::on_both_backends! {
async fn an_operator_gives_up_a_waiting_write_and_what_waits_for_it_fails(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    enqueue(
        &d,
        vec![
            create(
                "deals",
                "deal-w",
                json!({}),
                vec![to_write("co-never", 341)],
            ),
            create(
                "line_items",
                "item-w",
                json!({}),
                vec![to_write("deal-w", 20)],
            ),
        ],
    )
    .await;
    assert_eq!(sql_count(&d, "state = 'waiting'").await, 2);
    let deal = Selection::TraceIds(vec!["deal-w".into()]);
    // Retry does not take a waiting write; discard does, named by its trace id.
    assert_eq!(d.store.count_selection(&deal).await.unwrap(), 0);
    assert_eq!(d.store.count_discard(&deal).await.unwrap(), 1);
    assert_eq!(d.store.discard_writes(&deal, &tester()).await.unwrap(), 1);
    assert_eq!(
        sql(
            &d,
            "SELECT trace_id, state, last_error FROM outbox ORDER BY id"
        )
        .await,
        "deal-w|discarded|\nitem-w|failed|associations[0].to.objectWriteTraceId: write `deal-w` was discarded"
    );
    assert_eq!(sql(&d, "SELECT count(*) FROM waits_for").await, "0");
    assert_eq!(sql(&d, "SELECT queued FROM queue_state").await, "0");
    d.stop().await;
}
}

crate::on_both_backends! {
async fn a_reference_never_enqueued_fails_after_wait_for_missing(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(
        &sim,
        &[
            ("HUBSPOT_OUTBOX__REFERENCES__WAIT_FOR_MISSING", "1s"),
            ("HUBSPOT_OUTBOX__DATABASE__POLL_INTERVAL", "100ms"),
        ],
    ))
    .await;
    enqueue(
        &d,
        vec![create(
            "contacts",
            "lonely",
            json!({"email": "l@example.com"}),
            vec![to_write("ghost", 279)],
        )],
    )
    .await;
    assert_eq!(sql_count(&d, "state = 'waiting'").await, 1);
    settled(&d, 1).await;
    let why = sql(
        &d,
        "SELECT last_error FROM outbox WHERE trace_id = 'lonely'",
    )
    .await;
    assert_eq!(
        why,
        "associations: no write `ghost` was enqueued within references.wait_for_missing (1s)"
    );
    assert_eq!(sql(&d, "SELECT count(*) FROM batch_log").await, "0");
    d.stop().await;
}
}

crate::on_both_backends! {
async fn a_cycle_is_refused_and_one_closed_later_fails_the_write_that_closes_it(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    let a = create("contacts", "a", json!({}), vec![to_write("b", 279)]);
    let b = create("companies", "b", json!({}), vec![to_write("a", 280)]);
    let mut c = d.client().await;
    let refused = c
        .post_json(Value::Array(vec![a.clone(), b.clone()]).to_string())
        .await
        .unwrap();
    assert_eq!(refused.status, 422);
    let body = refused.json();
    let err = &body["errors"][0];
    assert_eq!(err["index"], 0);
    assert_eq!(err["field"], "associations[0].to.objectWriteTraceId");
    assert!(
        err["message"].as_str().unwrap().contains("(a → b → a)"),
        "{err}"
    );
    assert_eq!(d.rows().await, 0, "nothing stored");
    // Pointing at itself is the smallest cycle.
    let me = c
        .post_json(create("contacts", "me", json!({}), vec![to_write("me", 279)]).to_string())
        .await
        .unwrap();
    assert_eq!(me.status, 422);
    // Across requests: `a` waits for `b`; `b` comes later pointing at `a`.
    enqueue(&d, vec![a]).await;
    enqueue(&d, vec![b]).await;
    settled(&d, 2).await;
    let why = sql(&d, "SELECT last_error FROM outbox WHERE trace_id = 'b'").await;
    assert_eq!(
        why,
        "associations: closes a reference cycle (b → a → b): none of these writes could ever be sent"
    );
    let why = sql(&d, "SELECT last_error FROM outbox WHERE trace_id = 'a'").await;
    assert!(
        why.contains("write `b` failed: associations: closes a reference cycle"),
        "{why}"
    );
    // Through a record's order: `first` upserts x@ pointing at `second`, a later upsert of
    // the same record, which must wait behind `first`.
    let upsert = |trace: &str, to: Option<&str>| {
        let mut w = json!({"objectType": "contacts", "operation": "upsert", "idProperty": "email",
                           "id": "x@example.com", "objectWriteTraceId": trace, "properties": {}});
        if let Some(to) = to {
            w["associations"] = json!([{"to": {"objectWriteTraceId": to},
                "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": 9}]}]);
        }
        w
    };
    enqueue(&d, vec![upsert("first", Some("second"))]).await;
    enqueue(&d, vec![upsert("second", None)]).await;
    settled(&d, 4).await;
    let why = sql(
        &d,
        "SELECT last_error FROM outbox WHERE trace_id = 'second'",
    )
    .await;
    assert_eq!(
        why,
        "closes a reference cycle (second → first (an earlier write to the same record) → \
         second): it waits behind an earlier write to the same record, which waits for it"
    );
    // A row inserted with SQL that points at itself.
    d.sql(
        r#"INSERT INTO outbox (trace_id, object_type, properties, associations)
           VALUES ('selfish', 'contacts', '{}',
                   '[{"to": {"objectWriteTraceId": "selfish"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]}]')"#,
    );
    settled(&d, 5).await;
    assert_eq!(
        sql(
            &d,
            "SELECT last_error FROM outbox WHERE trace_id = 'selfish'"
        )
        .await,
        "associations: closes a reference cycle (selfish → selfish): none of these writes could ever be sent"
    );
    // Through the trace property: an update of the contact a queued create makes, named by
    // that create's trace id, waits for the create, which waits (through a deal) for it.
    enqueue(
        &d,
        vec![
            create("contacts", "c1", json!({}), vec![to_write("d1", 4)]),
            create("deals", "d1", json!({}), vec![to_write("u1", 3)]),
        ],
    )
    .await;
    enqueue(
        &d,
        vec![json!({"objectType": "contacts", "operation": "update",
                    "idProperty": "hubspot_outbox_trace_id", "id": "c1",
                    "objectWriteTraceId": "u1", "properties": {"firstname": "U"}})],
    )
    .await;
    settled(&d, 8).await;
    let why = sql(&d, "SELECT last_error FROM outbox WHERE trace_id = 'u1'").await;
    assert!(
        why.starts_with(
            "closes a reference cycle (u1 → c1 (an earlier write to the same record) → d1 → u1)"
        ),
        "{why}"
    );
    assert_eq!(sql(&d, "SELECT count(*) FROM batch_log").await, "0");
    d.stop().await;
}
}

crate::on_both_backends! {
async fn an_upsert_pointing_at_a_queued_create_associates_after_it(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    enqueue(
        &d,
        vec![
            json!({"objectType": "contacts", "operation": "upsert", "idProperty": "email",
                   "id": "u@example.com", "objectWriteTraceId": "upsert-1",
                   "properties": {"firstname": "U"},
                   "associations": [to_write("company-u", 279)]}),
            create("companies", "company-u", json!({"name": "U Inc"}), vec![]),
        ],
    )
    .await;
    settled(&d, 2).await;
    assert_eq!(sql_count(&d, "state = 'succeeded'").await, 2);
    let by_source = associations_by_source(&sim).await;
    assert_eq!(
        by_source[&("contacts".to_owned(), hubspot_id(&d, "upsert-1").await)],
        [("companies".to_owned(), hubspot_id(&d, "company-u").await)]
    );
    // The target type came from the company's write.
    assert_eq!(
        sql(
            &d,
            &format!(
                "SELECT {} FROM outbox WHERE trace_id = 'upsert-1'",
                d.json_at("associations", "$[0].toObjectType")
            )
        )
        .await,
        "companies"
    );
    d.stop().await;
}
}

/// Who the test's changes are made by, for the audit log.
fn tester() -> hubspot_outbox::store::audit::Actor {
    hubspot_outbox::store::audit::Actor::this_process()
}
