//! The dashboard in a real browser (issue 13): headless Chromium, driven through
//! ChromeDriver, against the real binary serving the dashboard on TCP (`ui.listen`) with
//! a login, and the simulator in HubSpot's place. Log in (a wrong password refused); the
//! overview's counts are the database's; filter the failed writes; open one, edit its bad
//! property and replay it until it succeeds; retry the rest by filter after checking the
//! count; see both in the audit log; a post without its CSRF token and a read-only
//! user's action are refused, changing nothing.
//!
//! With `HUBSPOT_OUTBOX_SCREENSHOTS=DIR` it saves the overview and the failed writes as
//! `DIR/overview.png` and `DIR/failed-writes.png` (the README's pictures in `docs/`).
//! Skipped, saying so, where Chromium is missing (see `common::browser`).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use common::browser::Browser;
use common::sim::{Simulator, fast};
use common::{Daemon, eventually, sqlite3};
use hubspot_outbox::simulator::SimOptions;
use serde_json::json;

const ADA: &str = "correct horse battery staple";
const BOB: &str = "another long secret";

/// The address the daemon says its dashboard listens on.
async fn dashboard_addr(d: &Daemon) -> String {
    let mut addr = String::new();
    eventually("the daemon logged its dashboard address", || {
        let log = d.log_text();
        addr = log
            .lines()
            .find(|l| l.contains("dashboard listening on TCP"))
            .and_then(|l| l.split("addr=").nth(1))
            .map(|a| a.split_whitespace().next().unwrap_or("").to_owned())
            .unwrap_or_default();
        let found = !addr.is_empty();
        async move { found }
    })
    .await;
    addr
}

fn count(d: &Daemon, filter: &str) -> i64 {
    let out = sqlite3(
        &d.database,
        &format!("SELECT count(*) FROM outbox WHERE {filter}"),
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// The numbers in the overview's row for `object_type`, one per state column.
async fn overview_row(b: &Browser, object_type: &str) -> Vec<i64> {
    let script = format!(
        "const row = [...document.querySelectorAll('tr')].find(r => r.querySelector('th')?.textContent === '{object_type}');
         return row ? [...row.querySelectorAll('td')].map(td => parseInt(td.textContent, 10) || 0) : [];"
    );
    serde_json::from_value(b.run(&script).await).unwrap()
}

async fn log_in(b: &Browser, base: &str, user: &str, password: &str) {
    b.goto(&format!("{base}/ui/login")).await;
    b.fill("#user", user).await;
    b.fill("#password", password).await;
    b.click("form.login button").await;
}

#[tokio::test]
async fn an_operator_finds_fixes_and_replays_failed_writes_in_a_browser() {
    let Some(b) =
        Browser::start("an_operator_finds_fixes_and_replays_failed_writes_in_a_browser").await
    else {
        return;
    };
    let sim = Simulator::start(SimOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("ui-users");
    std::fs::write(&users, format!("ada:operator:{ADA}\nbob:read-only:{BOB}\n")).unwrap();
    std::fs::set_permissions(&users, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut env = fast(&sim, &[]);
    env.push(("HUBSPOT_OUTBOX__UI__LISTEN".into(), "127.0.0.1:0".into()));
    env.push((
        "HUBSPOT_OUTBOX__UI__USERS_FILE".into(),
        users.display().to_string(),
    ));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let d = Daemon::start_with(dir.path(), &pairs).await;
    let base = format!("http://{}", dashboard_addr(&d).await);

    // Twelve contacts that succeed, three that fail on a property HubSpot does not have,
    // two deals.
    let mut writes: Vec<_> = (0..12)
        .map(|i| {
            json!({"objectType": "contacts", "objectWriteTraceId": format!("ok-{i}"),
                        "properties": {"email": format!("ok{i}@example.com"), "firstname": "Ok"}})
        })
        .collect();
    for i in 1..=3 {
        writes.push(json!({"objectType": "contacts", "objectWriteTraceId": format!("bad-{i}"),
                           "properties": {"email": format!("bad{i}@example.com"), "unknown_colour": "teal"}}));
    }
    writes.push(json!({"objectType": "deals", "properties": {"dealname": "Big one"}}));
    writes.push(json!({"objectType": "deals", "properties": {"dealname": "Small one"}}));
    let mut c = d.client().await;
    assert_eq!(
        c.post_json(serde_json::Value::Array(writes).to_string())
            .await
            .unwrap()
            .status,
        202
    );
    eventually("every write settled", || async {
        count(&d, "state IN ('succeeded', 'failed')") == 17
    })
    .await;

    // Not logged in: the login page. A wrong password is refused.
    b.goto(&format!("{base}/ui/")).await;
    assert!(b.url().await.ends_with("/ui/login"), "{}", b.url().await);
    log_in(&b, &base, "ada", "not the password").await;
    b.wait_for("Wrong user or password.").await;

    // Logged in: the overview, its counts the database's.
    log_in(&b, &base, "ada", ADA).await;
    b.wait_for("Writes by object type and state").await;
    let contacts = overview_row(&b, "contacts").await;
    // pending, waiting, in_flight, succeeded, failed, unconfirmed, discarded
    assert_eq!(
        contacts,
        vec![
            0,
            0,
            0,
            count(&d, "object_type = 'contacts' AND state = 'succeeded'"),
            count(&d, "object_type = 'contacts' AND state = 'failed'"),
            0,
            0
        ]
    );
    assert_eq!(contacts[3..5], [12, 3]);
    assert_eq!(overview_row(&b, "deals").await[3], 2);
    let shots = std::env::var_os("HUBSPOT_OUTBOX_SCREENSHOTS").map(PathBuf::from);
    if let Some(dir) = &shots {
        b.screenshot(&dir.join("overview.png")).await;
    }

    // The failed writes, by the list's own filter form.
    b.click("nav a[href='/ui/writes']").await;
    b.wait_for("Show").await;
    b.run("document.querySelector('select[name=state]').value = 'failed'; return null;")
        .await;
    b.click("form.filters button").await;
    b.wait_for("Failed writes by error").await;
    assert_eq!(b.count("tbody a[href^='/ui/writes/bad-']").await, 3);
    assert!(b.text("main").await.contains("PROPERTY_DOESNT_EXIST"));
    if let Some(dir) = &shots {
        b.screenshot(&dir.join("failed-writes.png")).await;
    }

    // One write: edit the bad property away and replay it; it succeeds.
    b.click("a[href='/ui/writes/bad-1']").await;
    b.wait_for("Every error it met").await;
    b.click("a[href='/ui/writes/bad-1/edit']").await;
    b.wait_for("Save and retry").await;
    b.fill("#properties", r#"{"email": "bad1@example.com"}"#)
        .await;
    b.click("form.edit button").await;
    eventually("bad-1 succeeded", || async {
        count(&d, "trace_id = 'bad-1' AND state = 'succeeded'") == 1
    })
    .await;
    b.goto(&format!("{base}/ui/writes/bad-1")).await;
    b.wait_for("succeeded").await;

    // A post that lost its CSRF token is refused, and changes nothing.
    b.goto(&format!("{base}/ui/writes/bad-2")).await;
    b.wait_for("Every error it met").await;
    b.run("const f = document.querySelector('form[action$=\"/retry\"]'); f.querySelector('input[name=csrf]').remove(); f.submit(); return null;").await;
    b.wait_for("the form carries no token").await;
    assert_eq!(
        count(
            &d,
            "trace_id = 'bad-2' AND state = 'failed' AND attempts = 1"
        ),
        1
    );

    // Everything still failed, by filter: the count first, then the confirmed retry.
    b.goto(&format!("{base}/ui/writes?state=failed")).await;
    b.click("a[href^='/ui/bulk?action=retry']").await;
    b.wait_for("write(s) match").await;
    let shown = b.text("p.count strong").await;
    assert_eq!(shown, count(&d, "state = 'failed'").to_string());
    assert_eq!(shown, "2");
    b.click("form[action='/ui/bulk'] button").await;
    b.wait_for("Requeued 2 write(s).").await;
    eventually("both were sent again (and failed again)", || async {
        count(
            &d,
            "trace_id IN ('bad-2', 'bad-3') AND state = 'failed' AND attempts = 1",
        ) == 2
            && count(&d, "trace_id IN ('bad-2', 'bad-3')") == 2
    })
    .await;

    // The audit log names ada, the dashboard on TCP, and what each change was.
    b.click("nav a[href='/ui/audit']").await;
    b.wait_for("Audit log").await;
    let audit = b.text("main table").await;
    assert!(audit.contains("ada dashboard-tcp retry 2"), "{audit}");
    assert!(
        audit.contains("ada dashboard-tcp edit 1 bad-1 unset unknown_colour"),
        "{audit}"
    );
    assert_eq!(
        b.count("main tbody tr").await,
        2,
        "the refused post is not a change: {audit}"
    );

    // Bob may look, not act: no buttons, and a forged post with his own token is refused.
    b.click("form.logout button").await;
    b.wait_for("Log in").await;
    log_in(&b, &base, "bob", BOB).await;
    b.wait_for("(read-only)").await;
    b.goto(&format!("{base}/ui/writes/bad-2")).await;
    b.wait_for("You may look at this write, not change it.")
        .await;
    assert_eq!(b.count("form[action$='/retry']").await, 0);
    b.run("const f = document.createElement('form'); f.method = 'post'; f.action = '/ui/writes/bad-2/retry';
           f.appendChild(document.querySelector('form.logout input[name=csrf]').cloneNode());
           document.body.appendChild(f); f.submit(); return null;").await;
    b.wait_for("your login is read-only").await;
    eventually("the write stays as it was", || async {
        count(&d, "trace_id = 'bad-2' AND state = 'failed'") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        count(
            &d,
            "trace_id = 'bad-2' AND state = 'failed' AND attempts = 1"
        ),
        1
    );

    b.quit().await;
    d.terminate();
}
