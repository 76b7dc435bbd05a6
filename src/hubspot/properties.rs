//! The properties API, as far as the trace property needs it: what an answer to reading
//! or creating a property means, which group a new property goes in, and the body that
//! creates it. Pure; the dispatcher makes the calls.

use serde_json::{Value, json};

/// What HubSpot's answer to reading or creating a property means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PropertyAnswer {
    /// It exists (read: 200; create: 201, or 409 when another creator was first).
    Exists { unique: bool },
    /// It does not exist (read: 404).
    Missing,
    /// The token is refused (401).
    Unauthorized,
    /// The token may not do this (403), with HubSpot's message.
    Forbidden(String),
    /// HubSpot refused the request (a 400: at its limit of unique properties, a bad name),
    /// with its message.
    Refused(String),
    /// No answer, a 429 or a 5xx: ask again later.
    Transient(String),
}

fn message(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned())
}

fn unique_of(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("hasUniqueValue").and_then(Value::as_bool))
        .unwrap_or(false)
}

/// An answer to `GET /crm/v3/properties/{type}/{name}` or `POST /crm/v3/properties/{type}`.
pub fn property_answer(status: u16, body: &[u8]) -> PropertyAnswer {
    match status {
        200 | 201 => PropertyAnswer::Exists {
            unique: unique_of(body),
        },
        // Created meanwhile by someone else (another daemon): it is there; whether with
        // unique values is read again.
        409 => PropertyAnswer::Exists { unique: true },
        404 => PropertyAnswer::Missing,
        401 => PropertyAnswer::Unauthorized,
        403 => PropertyAnswer::Forbidden(message(body)),
        400 | 405 | 413 | 415 | 422 => PropertyAnswer::Refused(message(body)),
        _ => PropertyAnswer::Transient(format!("HTTP {status}: {}", message(body))),
    }
}

/// The group a new property of `object_type` goes in: `{singular}information` when the
/// type has it (contacts: `contactinformation`, deals: `dealinformation`), else the first
/// group listed.
pub fn pick_group(object_type: &str, groups_body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(groups_body).ok()?;
    let names: Vec<&str> = value
        .get("results")?
        .as_array()?
        .iter()
        .filter_map(|g| g.get("name").and_then(Value::as_str))
        .collect();
    let singular = object_type.strip_suffix('s').unwrap_or(object_type);
    let preferred = format!("{singular}information");
    names
        .iter()
        .find(|n| **n == preferred)
        .or_else(|| names.first())
        .map(|n| (*n).to_owned())
}

/// The body that creates the trace property: text, unique values, kept off forms.
pub fn create_body(name: &str, group: &str) -> Vec<u8> {
    json!({
        "name": name,
        "label": "hubspot-outbox trace id",
        "type": "string",
        "fieldType": "text",
        "groupName": group,
        "hasUniqueValue": true,
        "formField": false,
        "description": "The objectWriteTraceId of the hubspot-outbox write that created this record. \
                        Its values are unique, so a resent write can never create a second record.",
    })
    .to_string()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_to_reading_and_creating_a_property() {
        assert_eq!(
            property_answer(200, br#"{"name":"x","hasUniqueValue":true}"#),
            PropertyAnswer::Exists { unique: true }
        );
        assert_eq!(
            property_answer(200, br#"{"name":"x"}"#),
            PropertyAnswer::Exists { unique: false }
        );
        assert_eq!(property_answer(404, b"{}"), PropertyAnswer::Missing);
        assert_eq!(property_answer(401, b"{}"), PropertyAnswer::Unauthorized);
        assert_eq!(
            property_answer(403, br#"{"message":"needs crm.schemas.contacts.write"}"#),
            PropertyAnswer::Forbidden("needs crm.schemas.contacts.write".into())
        );
        assert!(matches!(
            property_answer(400, b"{}"),
            PropertyAnswer::Refused(_)
        ));
        assert!(
            matches!(property_answer(503, b"down"), PropertyAnswer::Transient(m) if m == "HTTP 503: down")
        );
    }

    #[test]
    fn a_new_property_goes_in_the_types_information_group() {
        let groups = br#"{"results":[{"name":"analytics"},{"name":"contactinformation"}]}"#;
        assert_eq!(
            pick_group("contacts", groups).as_deref(),
            Some("contactinformation")
        );
        assert_eq!(pick_group("p_cars", groups).as_deref(), Some("analytics"));
        assert_eq!(pick_group("contacts", br#"{"results":[]}"#), None);
        let body: Value = serde_json::from_slice(&create_body("t", "g")).unwrap();
        assert_eq!(
            (
                body["hasUniqueValue"].as_bool(),
                body["formField"].as_bool(),
                body["type"].as_str()
            ),
            (Some(true), Some(false), Some("string"))
        );
    }
}
