//! HubSpot's own (`HUBSPOT_DEFINED`) association types: which object type each one goes
//! from and to. The daemon needs the target type to create associations after the fact
//! (`POST /crm/v4/associations/{from}/{to}/batch/create`, for upserts and updates), and a
//! producer need not say it where a type id tells it.
//!
//! Source: the "Association type ID values" table of HubSpot's v4 associations guide
//! (<https://developers.hubspot.com/docs/api-reference/crm-associations-v4/guide>), as
//! summarised in `shared/hubspot-api.md`. Only the standard objects' common pairs are
//! here; any other type id (custom labels, custom objects, activities not listed) needs
//! `toObjectType` on upserts and updates. A wrong entry would make the v4 call fail for
//! that pair, which fails the write with an error naming the association.

/// (type id, from, to), by the object types' names.
const TABLE: [(i64, &str, &str); 29] = [
    (1, "contacts", "companies"), // primary company
    (279, "contacts", "companies"),
    (2, "companies", "contacts"), // primary
    (280, "companies", "contacts"),
    (4, "contacts", "deals"),
    (3, "deals", "contacts"),
    (5, "deals", "companies"), // primary
    (341, "deals", "companies"),
    (6, "companies", "deals"), // primary
    (342, "companies", "deals"),
    (15, "contacts", "tickets"),
    (16, "tickets", "contacts"),
    (26, "tickets", "companies"), // primary
    (339, "tickets", "companies"),
    (25, "companies", "tickets"), // primary
    (340, "companies", "tickets"),
    (13, "companies", "companies"), // parent to child
    (14, "companies", "companies"), // child to parent
    (19, "deals", "line_items"),
    (20, "line_items", "deals"),
    (201, "contacts", "notes"),
    (202, "notes", "contacts"),
    (203, "contacts", "tasks"),
    (204, "tasks", "contacts"),
    (193, "contacts", "calls"),
    (194, "calls", "contacts"),
    (197, "contacts", "emails"),
    (198, "emails", "contacts"),
    (200, "meetings", "contacts"),
];

/// The standard objects' ids, so `0-1` and `contacts` are one type.
const IDS: [(&str, &str); 11] = [
    ("0-1", "contacts"),
    ("0-2", "companies"),
    ("0-3", "deals"),
    ("0-5", "tickets"),
    ("0-8", "line_items"),
    ("0-27", "tasks"),
    ("0-46", "notes"),
    ("0-47", "meetings"),
    ("0-48", "calls"),
    ("0-49", "emails"),
    ("0-7", "products"),
];

/// A standard object type's name (`0-1` → `contacts`); other types as they are.
pub fn type_name(object_type: &str) -> &str {
    IDS.iter()
        .find(|(id, _)| *id == object_type)
        .map_or(object_type, |(_, name)| name)
}

/// The object type a `HUBSPOT_DEFINED` association type points at, when it starts from
/// `from` (by name or id); `None` when the table does not know the pair.
pub fn target_of(type_id: i64, from: &str) -> Option<&'static str> {
    let from = type_name(from);
    TABLE
        .iter()
        .find(|(id, f, _)| *id == type_id && *f == from)
        .map(|(_, _, to)| *to)
}

/// What the table says a type id is, for an error message: `contacts → companies`.
pub fn describe(type_id: i64) -> Option<String> {
    TABLE
        .iter()
        .find(|(id, _, _)| *id == type_id)
        .map(|(_, f, t)| format!("{f} → {t}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_id_tells_its_target_only_from_its_own_source() {
        assert_eq!(target_of(279, "contacts"), Some("companies"));
        assert_eq!(target_of(279, "0-1"), Some("companies"));
        assert_eq!(target_of(279, "deals"), None);
        assert_eq!(target_of(341, "deals"), Some("companies"));
        assert_eq!(target_of(999_999, "contacts"), None);
        assert_eq!(describe(280).as_deref(), Some("companies → contacts"));
    }

    #[test]
    fn each_type_id_appears_once_per_source() {
        for (i, a) in TABLE.iter().enumerate() {
            for b in &TABLE[i + 1..] {
                assert!(!(a.0 == b.0 && a.1 == b.1), "{a:?} {b:?}");
            }
        }
    }
}
