//! A write as every stage knows it: object type, trace id, association, state, and a
//! write that has passed validation.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest trace id we accept. HubSpot sets no documented limit; 255 keeps ids
/// readable in logs and is far more than a UUID or ULID needs.
pub const MAX_TRACE_ID_LEN: usize = 255;

/// HubSpot refuses text property values longer than this many characters.
pub const MAX_PROPERTY_VALUE_CHARS: usize = 65_536;

/// An object type in a form HubSpot accepts in the batch-create path: a lowercase name
/// (`contacts`, `line_items`), an object type id (`0-1`, `2-12345`), or a custom object's
/// fully qualified name (`p12345_cars`, `p_cars`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectType(String);

impl ObjectType {
    /// Parses an object type, saying what is wrong when it is not one of HubSpot's forms.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 100 {
            return Err("must be 1 to 100 characters".into());
        }
        if is_object_type_id(s) || is_custom_name(s) || is_plain_name(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "`{s}` is not an object type HubSpot accepts: use a lowercase name \
                 (contacts, line_items), an id (0-1, 2-12345) or a custom name (p12345_name, p_name)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `0-1`, `2-12345`: a digit, a dash, digits.
fn is_object_type_id(s: &str) -> bool {
    let Some((head, tail)) = s.split_once('-') else {
        return false;
    };
    head.len() == 1
        && head.bytes().all(|b| b.is_ascii_digit())
        && !tail.is_empty()
        && tail.bytes().all(|b| b.is_ascii_digit())
}

/// `p12345_name` or `p_name`.
fn is_custom_name(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('p') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let Some(name) = rest[digits..].strip_prefix('_') else {
        return false;
    };
    !name.is_empty() && name.bytes().all(is_name_byte)
}

/// `contacts`, `line_items`, `postal_mail`: lowercase words joined by single underscores.
fn is_plain_name(s: &str) -> bool {
    s.split('_')
        .all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase()))
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

/// The `objectWriteTraceId` of a write: the key HubSpot reports per-input errors under, and
/// this daemon's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TraceId(String);

impl TraceId {
    /// Parses a producer-supplied trace id.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("must not be empty".into());
        }
        if s.len() > MAX_TRACE_ID_LEN {
            return Err(format!("must be at most {MAX_TRACE_ID_LEN} bytes"));
        }
        if s.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        // A URL path segment of only `.` or `..` is resolved away by browsers and HTTP
        // clients, even percent-encoded: such a write could not be named in a URL
        // (`/v1/writes/{traceId}`, the dashboard's pages).
        if s == "." || s == ".." {
            return Err("must not be `.` or `..`".into());
        }
        Ok(Self(s.to_owned()))
    }

    /// A new unique id that sorts by creation time (a UUIDv7).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a write is in its life. Stored as lowercase text in `outbox.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteState {
    /// Waiting to be sent (first time or again).
    Pending,
    /// Its associations point at writes that have not succeeded yet; never claimed.
    Waiting,
    /// Claimed into a batch that is being sent.
    InFlight,
    /// HubSpot created it; `hubspot_id` holds the id.
    Succeeded,
    /// Given up; `last_error` says why.
    Failed,
    /// HubSpot may or may not have created it; held for an operator, never resent alone.
    Unconfirmed,
    /// Given up by an operator; kept for the record.
    Discarded,
}

impl WriteState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Waiting => "waiting",
            Self::InFlight => "in_flight",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Unconfirmed => "unconfirmed",
            Self::Discarded => "discarded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "waiting" => Self::Waiting,
            "in_flight" => Self::InFlight,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "unconfirmed" => Self::Unconfirmed,
            "discarded" => Self::Discarded,
            _ => return None,
        })
    }
}

/// HubSpot's association categories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssociationCategory {
    HubspotDefined,
    UserDefined,
    IntegratorDefined,
    Work,
}

impl AssociationCategory {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "HUBSPOT_DEFINED" => Self::HubspotDefined,
            "USER_DEFINED" => Self::UserDefined,
            "INTEGRATOR_DEFINED" => Self::IntegratorDefined,
            "WORK" => Self::Work,
            _ => return None,
        })
    }
}

/// One association of a write, in HubSpot's wire shape, with the object type it points
/// at when known (`toObjectType`: given by the producer, or told by the association
/// type; see [`crate::model::association_types`]). That field is the daemon's own: it is
/// stored and shown, and left out of what a create sends inline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Association {
    pub to: AssociationTarget,
    #[serde(
        rename = "toObjectType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub to_object_type: Option<ObjectType>,
    pub types: Vec<AssociationType>,
}

/// What an association points at: a record by its HubSpot id (`{"id": "123"}`, what
/// HubSpot takes), or another write of this outbox by its trace id
/// (`{"objectWriteTraceId": "company-42"}`), which the daemon rewrites to that write's
/// HubSpot id once it has succeeded (see [`crate::model::references`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AssociationTarget {
    Record {
        id: String,
    },
    Write {
        #[serde(rename = "objectWriteTraceId")]
        trace_id: TraceId,
    },
}

impl AssociationTarget {
    /// The HubSpot record id, when it points at a record (always, once resolved).
    pub fn record_id(&self) -> Option<&str> {
        match self {
            Self::Record { id } => Some(id),
            Self::Write { .. } => None,
        }
    }

    /// The trace id of the write it points at, if it points at one.
    pub fn write(&self) -> Option<&TraceId> {
        match self {
            Self::Record { .. } => None,
            Self::Write { trace_id } => Some(trace_id),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociationType {
    pub association_category: AssociationCategory,
    pub association_type_id: i64,
}

/// What a write does to its record in HubSpot. Stored as lowercase text in
/// `outbox.operation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// A new record (`batch/create`); associations go inline.
    #[default]
    Create,
    /// Create or update the record whose unique `idProperty` has the value `id`
    /// (`batch/upsert`).
    Upsert,
    /// Update the record with id `id`, or whose unique `idProperty` has that value
    /// (`batch/update`).
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Upsert => "upsert",
            Self::Update => "update",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "create" => Self::Create,
            "upsert" => Self::Upsert,
            "update" => Self::Update,
            _ => return None,
        })
    }
}

/// The record an upsert or update names: by the value of a unique property, or (an
/// update without `idProperty`) by its HubSpot record id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordKey {
    /// `None`: `id` is a HubSpot record id (updates only).
    pub id_property: Option<String>,
    pub id: String,
}

/// A write that passed validation, in the canonical form it is stored and sent in:
/// property values are strings (HubSpot takes only strings), keys sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWrite {
    pub object_type: ObjectType,
    pub operation: Operation,
    /// Set for upserts and updates, `None` for creates.
    pub key: Option<RecordKey>,
    pub properties: BTreeMap<String, String>,
    pub associations: Vec<Association>,
    /// `None` when the producer left it to us; one is generated at commit.
    pub trace_id: Option<TraceId>,
}

/// The property an update by record id is keyed by, for ordering writes to one record.
pub const RECORD_ID_PROPERTY: &str = "hs_object_id";

impl NewWrite {
    /// What identifies the record this write changes, for applying writes to one record
    /// in the order they came: `property=value` (value lowercased, so keys that HubSpot
    /// may treat alike are kept in order too). An upsert or update by a unique value is
    /// keyed by it, an update by record id by `hs_object_id=id`, a create by its value of
    /// the type's configured `unique_property` (`unique`), when it has one; else `None`.
    pub fn order_key(&self, unique: Option<&str>) -> Option<String> {
        let (property, value) = match &self.key {
            Some(k) => (
                k.id_property.as_deref().unwrap_or(RECORD_ID_PROPERTY),
                k.id.as_str(),
            ),
            None => {
                let u = unique?;
                (
                    u,
                    self.properties.get(u).filter(|v| !v.is_empty())?.as_str(),
                )
            }
        };
        Some(format!("{property}={}", value.to_lowercase()))
    }

    /// `outbox.id_property`.
    pub fn id_property(&self) -> Option<&str> {
        self.key.as_ref().and_then(|k| k.id_property.as_deref())
    }

    /// `outbox.record_key`.
    pub fn record_key(&self) -> Option<&str> {
        self.key.as_ref().map(|k| k.id.as_str())
    }

    /// The stored JSON text of `properties`.
    pub fn properties_json(&self) -> String {
        serde_json::to_string(&self.properties).expect("a map of strings always serializes")
    }

    /// The stored JSON text of `associations`.
    pub fn associations_json(&self) -> String {
        serde_json::to_string(&self.associations).expect("associations always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_type_accepts_every_form_hubspot_documents() {
        for ok in [
            "contacts",
            "line_items",
            "postal_mail",
            "0-1",
            "0-136",
            "2-12345",
            "p12345_cars",
            "p_cars",
        ] {
            assert!(ObjectType::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn object_type_refuses_other_forms() {
        for bad in [
            "",
            "Contacts",
            "con tacts",
            "0-",
            "-1",
            "12-3",
            "0-1a",
            "p_",
            "p12_",
            "_x",
            "1abc",
            "contacts/..",
            "pX_name",
            "line__items",
            "items_",
        ] {
            assert!(ObjectType::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generated_trace_ids_are_unique_and_sort_by_time() {
        let a = TraceId::generate();
        let b = TraceId::generate();
        assert_ne!(a, b);
        assert!(a < b);
    }

    #[test]
    fn states_round_trip_through_their_stored_text() {
        use WriteState::*;
        for s in [
            Pending,
            Waiting,
            InFlight,
            Succeeded,
            Failed,
            Unconfirmed,
            Discarded,
        ] {
            assert_eq!(WriteState::parse(s.as_str()), Some(s));
        }
        assert_eq!(WriteState::parse("done"), None);
    }

    #[test]
    fn trace_id_refuses_empty_long_and_control_characters() {
        assert!(TraceId::parse("").is_err());
        assert!(TraceId::parse(&"x".repeat(256)).is_err());
        assert!(TraceId::parse("a\nb").is_err());
        assert!(TraceId::parse(".").is_err() && TraceId::parse("..").is_err());
        assert!(TraceId::parse("order-42").is_ok() && TraceId::parse("...").is_ok());
    }
}
