//! Upserts and updates beside creates (issue 10) and associations that name their target
//! type (issue 14), end to end: the daemon in this process against the simulator.

mod common;

use std::collections::HashMap;

use common::eventually;
use common::sim::{Simulator, enqueue, fast, settled, sql, sql_count, start_daemon_on};
use hubspot_outbox::simulator::SimOptions;
use serde_json::{Value, json};

const EMAIL_UNIQUE: (&str, &str) = (
    "HUBSPOT_OUTBOX__OBJECTS__CONTACTS__UNIQUE_PROPERTY",
    "email",
);

fn upsert(trace: &str, email: &str, seq: usize) -> Value {
    json!({"objectType": "contacts", "operation": "upsert", "idProperty": "email", "id": email,
           "properties": {"seq": seq.to_string()}, "objectWriteTraceId": trace})
}

/// A tiny deterministic generator, so a failure can be replayed.
fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

crate::on_both_backends! {
async fn each_record_ends_with_the_last_write_enqueued_for_it(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[EMAIL_UNIQUE])).await;
    let mut state = 7;
    let mut last: HashMap<String, usize> = HashMap::new();
    let mut writes = Vec::new();
    let mut upserts = 0;
    let mut creates = 0;
    while upserts < 1000 {
        let seq = writes.len();
        let email = format!("p{}@example.com", next(&mut state) % 300);
        let roll = next(&mut state) % 10;
        if roll == 0 {
            // A create of a record no one else touches.
            creates += 1;
            writes.push(json!({"objectType": "contacts", "objectWriteTraceId": format!("w{seq}"),
                               "properties": {"email": format!("new{seq}@example.com"), "seq": seq.to_string()}}));
        } else if roll == 1 && last.contains_key(&email) {
            // An update by unique value of a record an earlier upsert made.
            writes.push(
                json!({"objectType": "contacts", "operation": "update", "idProperty": "email",
                               "id": email.to_uppercase(), "objectWriteTraceId": format!("w{seq}"),
                               "properties": {"seq": seq.to_string()}}),
            );
            last.insert(email, seq);
        } else {
            upserts += 1;
            writes.push(upsert(&format!("w{seq}"), &email, seq));
            last.insert(email, seq);
        }
    }
    let total = writes.len();
    // In several requests, as producers would send them.
    for chunk in writes.chunks(250) {
        enqueue(&d, chunk.to_vec()).await;
    }
    settled(&d, total as i64).await;
    assert_eq!(sql_count(&d, "state = 'succeeded'").await, total as i64);
    let objects = sim.objects("contacts").await;
    let by_email: HashMap<&str, &Value> = objects
        .iter()
        .map(|o| (o["properties"]["email"].as_str().unwrap(), o))
        .collect();
    assert_eq!(by_email.len(), last.len() + creates, "no record twice");
    for (email, seq) in &last {
        assert_eq!(
            by_email[email.as_str()]["properties"]["seq"],
            json!(seq.to_string()),
            "{email}"
        );
    }
    // Every upsert knows whether it made its record: one `new` per email.
    assert_eq!(
        sql_count(&d, "operation = 'upsert' AND new_record").await,
        last.len() as i64
    );
    let stats = sim.stats().await;
    assert_eq!(
        stats["by_status"].get("400"),
        None,
        "no batch held one record twice"
    );
    d.stop().await;
}
}

crate::on_both_backends! {
async fn updates_by_record_id_and_by_value_and_a_missing_record_fails_clearly(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[EMAIL_UNIQUE])).await;
    enqueue(
        &d,
        vec![json!({"objectType": "contacts", "objectWriteTraceId": "c",
                    "properties": {"email": "a@example.com", "firstname": "A"}})],
    )
    .await;
    settled(&d, 1).await;
    let id = sql(&d, "SELECT hubspot_id FROM outbox WHERE trace_id = 'c'").await;
    enqueue(
        &d,
        vec![
            json!({"objectType": "contacts", "operation": "update", "id": id, "objectWriteTraceId": "by-id",
                   "properties": {"firstname": "B"}}),
            json!({"objectType": "contacts", "operation": "update", "idProperty": "email", "id": "a@example.com",
                   "objectWriteTraceId": "by-value", "properties": {"lastname": "L"}}),
            json!({"objectType": "contacts", "operation": "update", "id": "999999", "objectWriteTraceId": "missing",
                   "properties": {"firstname": "X"}}),
        ],
    )
    .await;
    settled(&d, 4).await;
    let objects = sim.objects("contacts").await;
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0]["properties"]["firstname"], "B");
    assert_eq!(objects[0]["properties"]["lastname"], "L");
    assert_eq!(
        sql(&d, "SELECT state, hubspot_id FROM outbox WHERE trace_id IN ('by-id', 'by-value') ORDER BY trace_id").await,
        format!("succeeded|{id}\nsucceeded|{id}")
    );
    let failed = sql(
        &d,
        "SELECT state, last_error FROM outbox WHERE trace_id = 'missing'",
    )
    .await;
    assert!(failed.starts_with("failed|OBJECT_NOT_FOUND: "), "{failed}");
    // `retry --edit --set-id` names the right record; it is sent again and succeeds.
    let seen = d.store.get_write("missing").await.unwrap().unwrap().updated_at;
    assert!(
        !d.store
            .edit_and_retry("missing", r#"{"firstname":"X"}"#, Some(&id), "2000-01-01T00:00:00.000Z", &tester(), "set id")
            .await
            .unwrap(),
        "an edit made from an older reading changes nothing"
    );
    assert!(
        d.store
            .edit_and_retry("missing", r#"{"firstname":"X"}"#, Some(&id), &seen, &tester(), "set id")
            .await
            .unwrap()
    );
    eventually("the edited update succeeded", || async {
        sql(&d, "SELECT state FROM outbox WHERE trace_id = 'missing'").await == "succeeded"
    })
    .await;
    assert_eq!(
        sim.objects("contacts").await[0]["properties"]["firstname"],
        "X"
    );
    d.stop().await;
}
}

crate::on_both_backends! {
async fn an_upsert_succeeds_only_once_its_associations_exist(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[EMAIL_UNIQUE])).await;
    enqueue(
        &d,
        vec![
            json!({"objectType": "companies", "objectWriteTraceId": "co1", "properties": {"name": "One"}}),
            json!({"objectType": "companies", "objectWriteTraceId": "co2", "properties": {"name": "Two"}}),
        ],
    )
    .await;
    settled(&d, 2).await;
    let co1 = sql(&d, "SELECT hubspot_id FROM outbox WHERE trace_id = 'co1'").await;
    let co2 = sql(&d, "SELECT hubspot_id FROM outbox WHERE trace_id = 'co2'").await;
    // Without toObjectType, a USER_DEFINED label does not say what it points at: refused,
    // nothing stored.
    let mut c = d.client().await;
    let refused = c
        .post_json(
            json!({"objectType": "contacts", "operation": "upsert", "idProperty": "email", "id": "z@example.com",
                   "properties": {}, "associations": [{"to": {"id": co1}, "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": 7}]}]})
            .to_string(),
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 422, "{:?}", refused.body);
    assert!(
        String::from_utf8_lossy(&refused.body).contains("associations[0].toObjectType"),
        "{:?}",
        refused.body
    );
    assert_eq!(sql_count(&d, "trace_id NOT LIKE 'co%'").await, 0);
    enqueue(
        &d,
        vec![
            // HUBSPOT_DEFINED 279 (contact → company): the table tells the target.
            json!({"objectType": "contacts", "operation": "upsert", "idProperty": "email", "id": "u@example.com",
                   "objectWriteTraceId": "u", "properties": {"firstname": "U"},
                   "associations": [
                       {"to": {"id": co1}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]},
                       {"to": {"id": co2}, "toObjectType": "companies",
                        "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": 7}]}
                   ]}),
            // A target that does not exist: the record is done, the association fails it.
            json!({"objectType": "contacts", "operation": "upsert", "idProperty": "email", "id": "v@example.com",
                   "objectWriteTraceId": "v", "properties": {"firstname": "V"},
                   "associations": [{"to": {"id": "424242"}, "toObjectType": "companies",
                                     "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": 7}]}]}),
        ],
    )
    .await;
    settled(&d, 4).await;
    assert_eq!(
        sql(&d, "SELECT state, step FROM outbox WHERE trace_id = 'u'").await,
        "succeeded|associations"
    );
    let stored: Value = serde_json::from_str(
        &sql(&d, "SELECT associations FROM outbox WHERE trace_id = 'u'").await,
    )
    .unwrap();
    assert_eq!(
        stored[0]["toObjectType"], "companies",
        "the table's answer is stored"
    );
    let contact = sql(&d, "SELECT hubspot_id FROM outbox WHERE trace_id = 'u'").await;
    let mut made: Vec<(String, String, String, String)> = sim
        .associations()
        .await
        .iter()
        .map(|a| {
            (
                a["fromObjectType"].as_str().unwrap().to_owned(),
                a["fromId"].as_str().unwrap().to_owned(),
                a["toId"].as_str().unwrap().to_owned(),
                a["types"].to_string(),
            )
        })
        .collect();
    made.sort();
    let mut expected = vec![
        (
            "contacts".to_owned(),
            contact.clone(),
            co1.clone(),
            json!(["HUBSPOT_DEFINED/279"]).to_string(),
        ),
        (
            "contacts".to_owned(),
            contact.clone(),
            co2.clone(),
            json!(["USER_DEFINED/7"]).to_string(),
        ),
    ];
    expected.sort();
    assert_eq!(made, expected);
    assert!(
        sim.associations()
            .await
            .iter()
            .all(|a| a["toObjectType"] == "companies")
    );
    let v = sql(
        &d,
        "SELECT state, CAST(hubspot_id IS NOT NULL AS INTEGER), last_error FROM outbox WHERE trace_id = 'v'",
    )
    .await;
    assert!(
        v.starts_with("failed|1|its record ")
            && v.contains("associations[0] (to companies 424242)"),
        "{v}"
    );
    // A replay redoes only what is missing: the association, not the upsert.
    let upserts = sim.stats().await["calls"]["upsert"].clone();
    d.store
        .retry_writes(
            &hubspot_outbox::store::ops::Selection::TraceIds(vec!["v".into()]),
            &tester(),
        )
        .await
        .unwrap();
    eventually("the replay failed again", || async {
        sql(
            &d,
            "SELECT state, attempts FROM outbox WHERE trace_id = 'v'",
        )
        .await
            == "failed|1"
    })
    .await;
    assert_eq!(sim.stats().await["calls"]["upsert"], upserts);
    d.stop().await;
}
}

crate::on_both_backends! {
async fn a_non_unique_id_property_pauses_only_its_lane(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[EMAIL_UNIQUE])).await;
    enqueue(
        &d,
        vec![
            json!({"objectType": "contacts", "operation": "upsert", "idProperty": "firstname", "id": "Ann",
                   "objectWriteTraceId": "by-name", "properties": {"lastname": "X"}}),
            upsert("by-email", "e@example.com", 1),
            json!({"objectType": "contacts", "objectWriteTraceId": "create", "properties": {"email": "n@example.com"}}),
        ],
    )
    .await;
    eventually("the other lanes went on", || async {
        sql_count(&d, "state = 'succeeded'").await == 2
    })
    .await;
    eventually("the lane is paused, with HubSpot's reason", || async {
        sql(
            &d,
            "SELECT scope, kind, CAST(reason LIKE '%non-unique%' AS INTEGER) FROM pauses",
        )
        .await
            == "lane:contacts upsert:firstname|rejected|1"
    })
    .await;
    assert_eq!(
        sql(
            &d,
            "SELECT state, attempts FROM outbox WHERE trace_id = 'by-name'"
        )
        .await,
        "pending|0",
        "kept, no attempt charged"
    );
    d.stop().await;
}
}

/// Who the test's changes are made by, for the audit log.
fn tester() -> hubspot_outbox::store::audit::Actor {
    hubspot_outbox::store::audit::Actor::this_process()
}
