//! The writes pages: the list (filtered by state, object type, error category, time and
//! free text; newest first; a page at a time by key) with the failed writes' errors
//! grouped by category and message, and one write with its whole history.

use chrono::{DateTime, Datelike, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::overview::STATES;
use crate::model::ErrorRecord;
use crate::operator::parse_since;
use crate::store::browse::{ErrorGroup, WINDOW, WriteLine, WriteQuery};
use crate::store::read::StoredWrite;

/// Writes per page.
pub const PAGE: i64 = 50;

/// The list's filters as the form sends them (`GET /ui/writes?state=failed&...`); empty
/// fields are no filter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WriteForm {
    pub state: Option<String>,
    #[serde(rename = "type")]
    pub object_type: Option<String>,
    pub category: Option<String>,
    /// A duration back from now (`2h`) or a time (`2026-11-29T10:00:00Z`).
    pub since: Option<String>,
    pub until: Option<String>,
    pub q: Option<String>,
    pub before: Option<i64>,
}

fn given(field: &Option<String>) -> Option<String> {
    field
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl WriteForm {
    /// The store's query, or what is wrong with the form, in words.
    pub fn query(&self, now: DateTime<Utc>) -> Result<WriteQuery, String> {
        let state = given(&self.state);
        if let Some(s) = &state
            && !STATES.contains(&s.as_str())
        {
            return Err(format!("state `{s}` is none of {}", STATES.join(", ")));
        }
        // Years 1 to 9999 only: both databases store those, and nothing older or later
        // is a time a write changed at.
        let time = |field: &Option<String>, name: &str| -> Result<Option<DateTime<Utc>>, String> {
            given(field)
                .map(|t| {
                    parse_since(&t, now)
                        .ok()
                        .filter(|at| (1..=9999).contains(&at.year()))
                        .ok_or_else(|| {
                            format!("{name} `{t}` is neither a duration (2h) nor a time (2026-11-29T10:00:00Z) in the years 1 to 9999")
                        })
                })
                .transpose()
        };
        if let Some(before) = self.before
            && before < 1
        {
            return Err(format!("before `{before}` is not a write's id (1 or more)"));
        }
        Ok(WriteQuery {
            state,
            object_type: given(&self.object_type),
            category: given(&self.category),
            since: time(&self.since, "since")?,
            until: time(&self.until, "until")?,
            text: given(&self.q),
            before_id: self.before,
            floor_id: None,
            limit: PAGE,
        })
    }

    /// The filters given, by their names in the query string.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("state", &self.state),
            ("type", &self.object_type),
            ("category", &self.category),
            ("since", &self.since),
            ("until", &self.until),
            ("q", &self.q),
        ]
        .into_iter()
        .filter_map(|(name, value)| given(value).map(|v| (name, v)))
        .collect()
    }

    /// The query string of the page after one ending at `last_id`, filters kept.
    pub fn next(&self, last_id: i64) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.pairs() {
            s.append_pair(name, &value);
        }
        s.append_pair("before", &last_id.to_string());
        s.finish()
    }
}

/// The list page's content: the filter form, `offer` (the actions on everything it
/// matches, when the viewer may act), the error groups, the writes, the next link.
pub fn list(
    form: &WriteForm,
    offer: Markup,
    error: Option<&str>,
    lines: &[WriteLine],
    groups: &[ErrorGroup],
    window: Option<Window>,
    exact: &[String],
) -> Markup {
    let value = |f: &Option<String>| given(f).unwrap_or_default();
    html! {
        h2 { "Writes" }
        form method="get" action="/ui/writes" class="filters" {
            label { "State " select name="state" {
                option value="" { "any" }
                @for s in STATES {
                    option value=(s) selected[given(&form.state).as_deref() == Some(s)] { (s) }
                }
            } }
            label { "Object type " input name="type" value=(value(&form.object_type)) size="12"; }
            label { "Error category " input name="category" value=(value(&form.category)) size="16"; }
            label { "Changed since " input name="since" value=(value(&form.since)) placeholder="2h or 2026-11-29T10:00:00Z" size="14"; }
            label { "until " input name="until" value=(value(&form.until)) size="14"; }
            label { "Trace id, HubSpot id or value " input name="q" type="search" value=(value(&form.q)) size="20"; }
            button type="submit" { "Show" }
        }
        @if let Some(e) = error {
            p role="alert" class="attention" { (e) }
        } @else {
            (offer)
        }
        @if !groups.is_empty() {
            table {
                caption { "Failed writes by error (by type, category and time of failure, as filtered; not by text)" }
                thead { tr { th scope="col" { "category" } th scope="col" { "message" } th scope="col" { "writes" } } }
                tbody {
                    @for g in groups {
                        tr {
                            td {
                                @if let Some(c) = &g.category {
                                    a href=(format!("/ui/writes?{}", url::form_urlencoded::Serializer::new(String::new()).append_pair("state", "failed").append_pair("category", c).finish())) { (c) }
                                } @else { "none" }
                            }
                            td { (g.message) }
                            td class="n" { (g.writes) }
                        }
                    }
                }
            }
        }
        @if !exact.is_empty() {
            p class="exact" {
                "The write with that trace id or HubSpot id: "
                @for (i, t) in exact.iter().enumerate() {
                    @if i > 0 { ", " }
                    a href=(format!("/ui/writes/{}", encode(t))) { (t) }
                }
            }
        }
        @if let Some(w) = window {
            p class="note" {
                "This filter is looked for among writes " (w.from) " to " (w.to - 1)
                " (by id; " (WINDOW) " at a time, so a page never reads the whole outbox)."
            }
        }
        @if lines.is_empty() {
            p { "No write matches." }
        } @else {
            div class="wide" {
                table {
                    caption { "Newest first" }
                    thead { tr {
                        th scope="col" { "trace id" } th scope="col" { "type" } th scope="col" { "operation" }
                        th scope="col" { "state" } th scope="col" { "HubSpot id" } th scope="col" { "attempts" }
                        th scope="col" { "error" } th scope="col" { "changed (UTC)" }
                    } }
                    tbody {
                        @for w in lines {
                            tr {
                                td { a href=(format!("/ui/writes/{}", encode(&w.trace_id))) { (w.trace_id) } }
                                td { (w.object_type) }
                                td { (w.operation) }
                                td class=[NEEDS_WORDS.contains(&w.state.as_str()).then_some("attention")] { (w.state) }
                                td { (w.hubspot_id.as_deref().unwrap_or("")) }
                                td class="n" { (w.attempts) }
                                td {
                                    // The stored error usually starts with its category already.
                                    @if let Some(c) = &w.category {
                                        @if !w.last_error.as_deref().unwrap_or("").starts_with(c.as_str()) { (c) ": " }
                                    }
                                    (w.last_error.as_deref().map(short).unwrap_or_default())
                                }
                                td { (w.updated_at) }
                            }
                        }
                    }
                }
            }
        }
        @if lines.len() as i64 == PAGE {
            @if let Some(last) = lines.last() {
                p { a href=(format!("/ui/writes?{}", form.next(last.id))) rel="next" { "Older writes →" } }
            }
        } @else if let Some(w) = window.filter(|w| w.from > 1) {
            p { a href=(format!("/ui/writes?{}", form.next(w.from))) rel="next" { "Look among older writes →" } }
        }
    }
}

/// The ids a page whose filter no index serves looked among: `from` up to (not
/// including) `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: i64,
    pub to: i64,
}

/// States shown marked (in words by the state itself, and in weight).
const NEEDS_WORDS: [&str; 2] = ["failed", "unconfirmed"];

/// At most 160 characters of an error, on a character boundary.
fn short(text: &str) -> String {
    match text.char_indices().nth(160) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// Where a record's page in HubSpot's app is: `{app_url}/contacts/{portal_id}/record/
/// {objectTypeId}/{id}` (`ui.portal_id`, `ui.app_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLink {
    /// `https://app.hubspot.com`, or `https://app-eu1.hubspot.com` for an EU portal.
    pub app_url: String,
    pub portal_id: u64,
}

impl RecordLink {
    /// The address of record `id` of `object_type`. HubSpot's app names a type by its id
    /// (`0-1` for contacts, ...); a custom object's type given by its id (`2-123`) is
    /// passed as it is.
    pub fn to(&self, object_type: &str, id: &str) -> String {
        let type_id = match object_type {
            "contacts" | "contact" => "0-1",
            "companies" | "company" => "0-2",
            "deals" | "deal" => "0-3",
            "tickets" | "ticket" => "0-5",
            other => other,
        };
        format!(
            "{}/contacts/{}/record/{}/{}",
            self.app_url.trim_end_matches('/'),
            self.portal_id,
            encode(type_id),
            encode(id)
        )
    }
}

/// A trace id as one path segment.
pub fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// One write's page: what it is, where it stands, `buttons` (what the viewer may do to
/// it), and every error it met.
pub fn one(
    w: &StoredWrite,
    history: &[ErrorRecord],
    buttons: Markup,
    link: Option<&RecordLink>,
) -> Markup {
    let properties: Vec<(String, String)> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&w.properties)
            .map(|m| {
                m.into_iter()
                    .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                    .collect()
            })
            .unwrap_or_default();
    let pretty = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| text.to_owned())
    };
    html! {
        h2 { "Write " code { (w.trace_id) } }
        (buttons)
        dl {
            dt { "State" } dd class=[NEEDS_WORDS.contains(&w.state.as_str()).then_some("attention")] { (w.state) }
            dt { "Object type" } dd { (w.object_type) }
            dt { "Operation" } dd {
                (w.operation)
                @if let (Some(p), Some(k)) = (&w.id_property, &w.record_key) { " by " (p) " = " (k) }
            }
            dt { "HubSpot id" } dd {
                @match (&w.hubspot_id, link) {
                    (Some(id), Some(link)) => a href=(link.to(&w.object_type, id)) rel="noopener noreferrer" target="_blank" { (id) " (open in HubSpot)" },
                    (Some(id), None) => (id),
                    (None, _) => "none yet",
                }
            }
            dt { "Attempts" } dd { (w.attempts) }
            @if let Some(e) = &w.last_error { dt { "Last error" } dd { (e) } }
            dt { "Next attempt" } dd { (w.next_attempt_at) }
            dt { "Created" } dd { (w.created_at) }
            dt { "Changed" } dd { (w.updated_at) }
        }
        table {
            caption { "Properties" }
            thead { tr { th scope="col" { "name" } th scope="col" { "value" } } }
            tbody { @for (k, v) in &properties { tr { th scope="row" { (k) } td { (v) } } } }
        }
        h3 { "Associations" }
        pre { (pretty(w.referenced_associations.as_deref().unwrap_or(&w.associations))) }
        @if history.is_empty() {
            p { "No error so far." }
        } @else {
            table {
                caption { "Every error it met, oldest first" }
                thead { tr {
                    th scope="col" { "attempt" } th scope="col" { "HTTP status" } th scope="col" { "category" }
                    th scope="col" { "message" } th scope="col" { "correlation id" }
                } }
                tbody {
                    @for e in history {
                        tr {
                            td class="n" { (e.attempt) }
                            td class="n" { @if e.status == 0 { "no answer" } @else { (e.status) } }
                            td { (e.category.as_deref().unwrap_or("")) }
                            td { (e.message) }
                            td { code { (e.correlation_id.as_deref().unwrap_or("")) } }
                        }
                    }
                }
            }
        }
        p { a href="/ui/writes" { "← All writes" } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_becomes_a_query_or_says_what_is_wrong() {
        let now: DateTime<Utc> = "2026-12-04T21:00:00Z".parse().unwrap();
        let form = WriteForm {
            state: Some("failed".into()),
            object_type: Some(" ".into()),
            since: Some("2h".into()),
            q: Some("a@example.com".into()),
            before: Some(90),
            ..Default::default()
        };
        let q = form.query(now).unwrap();
        assert_eq!(q.state.as_deref(), Some("failed"));
        assert_eq!(q.object_type, None, "a blank field is no filter");
        assert_eq!(q.since, Some("2026-12-04T19:00:00Z".parse().unwrap()));
        assert_eq!((q.before_id, q.limit), (Some(90), PAGE));
        assert_eq!(
            form.next(41),
            "state=failed&since=2h&q=a%40example.com&before=41"
        );
        let bad = WriteForm {
            state: Some("lost".into()),
            ..Default::default()
        };
        assert!(bad.query(now).unwrap_err().contains("state `lost`"));
        let bad = WriteForm {
            until: Some("soon".into()),
            ..Default::default()
        };
        assert!(bad.query(now).unwrap_err().contains("until `soon`"));
        for (since, before) in [
            ("1000000y", None),
            ("0000-01-01T00:00:00Z", None),
            ("2h", Some(i64::MIN)),
            ("2h", Some(0)),
        ] {
            let bad = WriteForm {
                since: Some(since.into()),
                before,
                ..Default::default()
            };
            assert!(bad.query(now).is_err(), "{since} {before:?}");
        }
    }

    #[test]
    fn a_window_that_found_too_few_offers_to_look_further_back() {
        let form = WriteForm {
            q: Some("x".into()),
            ..Default::default()
        };
        let window = Some(Window { from: 5, to: 105 });
        let page = list(&form, html! {}, None, &[], &[], window, &[]).into_string();
        assert!(page.contains("among writes 5 to 104"), "{page}");
        assert!(
            page.contains("href=\"/ui/writes?q=x&amp;before=5\""),
            "{page}"
        );
        let first = Some(Window { from: 1, to: 105 });
        let page = list(&form, html! {}, None, &[], &[], first, &[]).into_string();
        assert!(!page.contains("rel=\"next\""), "nothing older: {page}");
    }

    #[test]
    fn record_links_name_the_type_by_its_id() {
        let link = RecordLink {
            app_url: "https://app-eu1.hubspot.com/".into(),
            portal_id: 42,
        };
        assert_eq!(
            link.to("contacts", "901"),
            "https://app-eu1.hubspot.com/contacts/42/record/0-1/901"
        );
        assert_eq!(
            link.to("2-77", "5"),
            "https://app-eu1.hubspot.com/contacts/42/record/2-77/5"
        );
    }

    #[test]
    fn trace_ids_are_one_path_segment() {
        assert_eq!(encode("a b/c?d"), "a%20b%2Fc%3Fd");
    }
}
