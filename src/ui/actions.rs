//! The actions on writes, as pages and forms: retry, discard and edit-then-retry for one
//! write; retry or discard everything the list's filter matches, after a page that shows
//! the count (the dry run) and asks to confirm. Every form posts its viewer's CSRF token;
//! a viewer who may not act sees no form. What a post does is the store's (one
//! transaction with its audit line); this file only draws.

use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::writes::{WriteForm, encode};
use super::{Viewer, csrf_field};
use crate::store::browse::WriteQuery;
use crate::store::read::StoredWrite;
use crate::store::timestamp;

/// States a write may be retried from (and discarded from, by filter).
pub const ACTIONABLE: [&str; 2] = ["failed", "unconfirmed"];

/// Whether a write in `state` may be discarded: what may be retried, and a write waiting
/// for another (the store's discard takes the same).
pub fn discardable(state: &str) -> bool {
    ACTIONABLE.contains(&state) || state == "waiting"
}

/// The buttons on one write's page.
pub fn write_buttons(w: &StoredWrite, viewer: &Viewer) -> Markup {
    let retryable = ACTIONABLE.contains(&w.state.as_str());
    let discardable = discardable(&w.state);
    let base = format!("/ui/writes/{}", encode(&w.trace_id));
    html! {
        @if discardable && !viewer.may_act {
            p class="note" { "You may look at this write, not change it." }
        } @else if discardable {
            section aria-labelledby="actions" class="actions" {
                h3 id="actions" { "Actions" }
                @if retryable {
                    form method="post" action=(format!("{base}/retry")) {
                        (csrf_field(viewer))
                        button type="submit" { "Retry" }
                    }
                    a href=(format!("{base}/edit")) class="button" { "Edit and retry…" }
                }
                a href=(format!("{base}/discard")) class="button" { "Discard…" }
            }
        }
    }
}

/// The page that asks before one write is discarded (a discarded write is kept but
/// never sent again).
pub fn confirm_discard(w: &StoredWrite, viewer: &Viewer) -> Markup {
    let base = format!("/ui/writes/{}", encode(&w.trace_id));
    html! {
        h2 { "Discard " code { (w.trace_id) } "?" }
        p { "It is " (w.state) ". Discarded, it stays in the outbox for the record but is never sent again; writes waiting for it fail, naming it." }
        form method="post" action=(format!("{base}/discard")) {
            (csrf_field(viewer))
            button type="submit" class="danger" { "Discard this write" }
            " " a href=(base) { "Cancel" }
        }
    }
}

/// The form that edits a write's properties (as a JSON object) and, for an upsert or
/// update, the record it names, then sends it again from its first step. `properties`
/// and `record_key` are what the form shows: the write's own, or what was posted when
/// `error` says why it was refused.
pub fn edit_form(
    w: &StoredWrite,
    viewer: &Viewer,
    properties: &str,
    record_key: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let base = format!("/ui/writes/{}", encode(&w.trace_id));
    html! {
        h2 { "Edit and retry " code { (w.trace_id) } }
        @if let Some(e) = error { p role="alert" class="attention" { (e) } }
        p { "The " (w.operation) " of a " (w.object_type) " record, " (w.state) ": " (w.last_error.as_deref().unwrap_or("")) }
        form method="post" action=(format!("{base}/edit")) class="edit" {
            (csrf_field(viewer))
            // An edit saved from an older state of the write is refused, not applied over a
            // newer change (another operator's edit, a retry that failed again).
            input type="hidden" name="seen" value=(w.updated_at);
            label for="properties" { "Properties (a JSON object of name → value)" }
            textarea id="properties" name="properties" rows="14" spellcheck="false" { (properties) }
            @if w.operation != "create" {
                label for="record_key" { "The record's " (w.id_property.as_deref().unwrap_or("id")) }
                input id="record_key" name="record_key" value=(record_key.unwrap_or(""));
            }
            p { "The write is checked as a new one would be, then queued again from its first step." }
            button type="submit" { "Save and retry" }
            " " a href=(base) { "Cancel" }
        }
    }
}

/// A bulk action's form, as `GET /ui/bulk` (the count) and `POST /ui/bulk` (the action)
/// receive it: the list's filters and what to do.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BulkForm {
    /// `retry` or `discard`.
    pub action: String,
    pub state: Option<String>,
    #[serde(rename = "type")]
    pub object_type: Option<String>,
    pub category: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub q: Option<String>,
    pub csrf: Option<String>,
}

impl BulkForm {
    /// What to do (`retry` or `discard`) to which writes, or what is wrong, in words.
    /// Only failed or unconfirmed writes are acted on by filter, so the filter must name
    /// one of those states.
    pub fn query(&self, now: DateTime<Utc>) -> Result<(&'static str, WriteQuery), String> {
        let action = match self.action.as_str() {
            "retry" => "retry",
            "discard" => "discard",
            other => return Err(format!("action `{other}` is neither retry nor discard")),
        };
        let filter = WriteForm {
            state: self.state.clone(),
            object_type: self.object_type.clone(),
            category: self.category.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            q: self.q.clone(),
            before: None,
        };
        let query = filter.query(now)?;
        match query.state.as_deref() {
            Some(s) if ACTIONABLE.contains(&s) => Ok((action, query)),
            _ => Err(format!(
                "{action} by filter acts on failed or unconfirmed writes: choose one of those states"
            )),
        }
    }
}

/// On the list, when its filter names failed or unconfirmed writes: the way to act on
/// all of them (each leads to the count first).
pub fn bulk_offer(form: &WriteForm, viewer: &Viewer) -> Markup {
    let state = form.state.as_deref().map(str::trim).unwrap_or("");
    if !viewer.may_act || !ACTIONABLE.contains(&state) {
        return html! {};
    }
    let link = |action: &str| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("action", action);
        for (name, value) in form.pairs() {
            s.append_pair(name, &value);
        }
        format!("/ui/bulk?{}", s.finish())
    };
    html! {
        p class="actions" {
            a href=(link("retry")) class="button" { "Retry all matching…" }
            " "
            a href=(link("discard")) class="button" { "Discard all matching…" }
        }
    }
}

/// The dry run: how many writes the action would change, and the form that confirms it.
/// Relative times (`since=2h`) are fixed here to the times they meant now, and the form's
/// `until` is the time the count was taken (`counted_at`, or the filter's own `until` when
/// earlier): a write that changed after the count (failed anew, failed again after a
/// retry) no longer matches, so the confirmed action takes at most the writes counted,
/// never more (fewer when some changed meanwhile; the result says how many).
pub fn bulk_confirm(
    action: &str,
    query: &WriteQuery,
    count: u64,
    counted_at: DateTime<Utc>,
    viewer: &Viewer,
) -> Markup {
    let until = query.until.map_or(counted_at, |u| u.min(counted_at));
    let hidden = [
        ("state", query.state.clone()),
        ("type", query.object_type.clone()),
        ("category", query.category.clone()),
        ("since", query.since.map(timestamp)),
        ("until", Some(timestamp(until))),
        ("q", query.text.clone()),
    ];
    let verb = if action == "retry" {
        "Retry"
    } else {
        "Discard"
    };
    html! {
        h2 { (verb) " all matching" }
        dl {
            @for (name, value) in &hidden {
                @if let Some(v) = value { dt { (name) } dd { code { (v) } } }
            }
        }
        @if count == 0 {
            p { "No write matches: nothing to do." }
        } @else {
            p class="count" { strong { (count) } " write(s) match. " (verb) " them?" }
            @if action == "discard" {
                p { "Discarded writes stay in the outbox for the record and are never sent again." }
            }
            form method="post" action="/ui/bulk" {
                (csrf_field(viewer))
                input type="hidden" name="action" value=(action);
                @for (name, value) in &hidden {
                    @if let Some(v) = value { input type="hidden" name=(name) value=(v); }
                }
                button type="submit" class=[(action == "discard").then_some("danger")] {
                    (verb) " " (count) " write(s)"
                }
            }
        }
        p { a href="/ui/writes" { "← Writes" } }
    }
}

/// What an action did.
pub fn done(message: &str, back: &str) -> Markup {
    html! {
        h2 { "Done" }
        p role="status" { (message) }
        p { a href=(back) { "← Back" } " · " a href="/ui/audit" { "Audit log" } }
    }
}

/// Why an action was refused; nothing was changed.
pub fn refused(reason: &str) -> Markup {
    html! {
        h2 { "Refused" }
        p role="alert" class="attention" { (reason) }
        p { "Nothing was changed." }
        p { a href="/ui/writes" { "← Writes" } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_actions_need_a_failed_or_unconfirmed_state() {
        let now: DateTime<Utc> = "2026-12-04T21:00:00Z".parse().unwrap();
        let form = BulkForm {
            action: "retry".into(),
            state: Some("failed".into()),
            since: Some("1h".into()),
            ..Default::default()
        };
        let (action, q) = form.query(now).unwrap();
        assert_eq!(action, "retry");
        assert_eq!(q.since, Some("2026-12-04T20:00:00Z".parse().unwrap()));
        assert_eq!(q.before_id, None, "everything matching, not a page");
        for (action, state) in [
            ("retry", None),
            ("retry", Some("succeeded")),
            ("purge", Some("failed")),
        ] {
            let form = BulkForm {
                action: action.into(),
                state: state.map(Into::into),
                ..Default::default()
            };
            assert!(form.query(now).is_err(), "{action} {state:?}");
        }
    }
}
