//! Turning a `POST /v1/writes` body into validated writes, all or nothing: one write
//! object, a JSON array of them, or NDJSON. Errors say where (array index or NDJSON line)
//! and which field.

use serde::Serialize;
use serde_json::Value;

use crate::model::NewWrite;
use crate::model::references::request_cycles;
use crate::model::validate::{kind, parse_write};

/// The body formats the API reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Ndjson,
}

impl BodyFormat {
    /// From a `Content-Type` header; parameters such as `charset=utf-8` are ignored.
    pub fn from_content_type(header: Option<&str>) -> Result<Self, BodyError> {
        let Some(header) = header else {
            return Err(BodyError::UnsupportedMediaType(
                "no Content-Type: send application/json or application/x-ndjson".into(),
            ));
        };
        let essence = header
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Ok(Self::Json),
            "application/x-ndjson" | "application/ndjson" => Ok(Self::Ndjson),
            _ => Err(BodyError::UnsupportedMediaType(format!(
                "Content-Type `{header}` is not supported: send application/json or application/x-ndjson"
            ))),
        }
    }
}

/// Where in the body one write was, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriteError {
    /// Position among the writes of the request, from 0.
    pub index: usize,
    /// NDJSON line number, from 1 (NDJSON bodies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl WriteError {
    /// `line 3` or `index 2`, for one-line messages.
    pub fn position(&self) -> String {
        match self.line {
            Some(line) => format!("line {line}"),
            None => format!("index {}", self.index),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    UnsupportedMediaType(String),
    /// Not JSON, or not the right JSON shape.
    Malformed {
        line: Option<usize>,
        message: String,
    },
    Empty,
    TooManyWrites {
        count: usize,
        max: usize,
    },
    Invalid(Vec<WriteError>),
}

/// A body's writes, with the NDJSON line each came from (`None` for JSON bodies).
#[derive(Debug)]
pub struct ParsedBody {
    pub writes: Vec<NewWrite>,
    pub lines: Vec<Option<usize>>,
}

/// Parses and validates a whole body. `max_writes` is checked before validating, so an
/// oversized request costs no validation work.
pub fn parse_body(
    format: BodyFormat,
    body: &[u8],
    max_writes: usize,
) -> Result<ParsedBody, BodyError> {
    let values = match format {
        BodyFormat::Json => json_values(body)?,
        BodyFormat::Ndjson => ndjson_values(body, max_writes)?,
    };
    if values.is_empty() {
        return Err(BodyError::Empty);
    }
    if values.len() > max_writes {
        return Err(BodyError::TooManyWrites {
            count: values.len(),
            max: max_writes,
        });
    }
    let mut writes = Vec::with_capacity(values.len());
    let mut errors = Vec::new();
    let lines: Vec<Option<usize>> = values.iter().map(|(line, _)| *line).collect();
    for (index, (line, value)) in values.into_iter().enumerate() {
        match parse_write(value) {
            Ok(w) => writes.push(w),
            Err(field_errors) => errors.extend(field_errors.into_iter().map(|e| WriteError {
                index,
                line,
                field: e.field,
                message: e.message,
            })),
        }
    }
    if errors.is_empty() {
        // Writes that point at each other in a circle could never be sent.
        errors.extend(
            request_cycles(&writes)
                .into_iter()
                .map(|(index, e)| WriteError {
                    index,
                    line: lines[index],
                    field: e.field,
                    message: e.message,
                }),
        );
    }
    if errors.is_empty() {
        Ok(ParsedBody { writes, lines })
    } else {
        Err(BodyError::Invalid(errors))
    }
}

fn json_values(body: &[u8]) -> Result<Vec<(Option<usize>, Value)>, BodyError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| BodyError::Malformed {
        line: None,
        message: format!("body is not valid JSON: {e}"),
    })?;
    match value {
        Value::Array(items) => Ok(items.into_iter().map(|v| (None, v)).collect()),
        Value::Object(_) => Ok(vec![(None, value)]),
        other => Err(BodyError::Malformed {
            line: None,
            message: format!(
                "body must be a write object or an array of writes, not {}",
                kind(&other)
            ),
        }),
    }
}

/// One JSON value per line; blank lines are skipped but still counted, so line numbers
/// match the producer's file.
fn ndjson_values(body: &[u8], max_writes: usize) -> Result<Vec<(Option<usize>, Value)>, BodyError> {
    let mut values = Vec::new();
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if values.len() == max_writes {
            let rest = body.split(|b| *b == b'\n').skip(i + 1);
            let count = max_writes
                + 1
                + rest
                    .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                    .count();
            return Err(BodyError::TooManyWrites {
                count,
                max: max_writes,
            });
        }
        let value = serde_json::from_slice(line).map_err(|e| BodyError::Malformed {
            line: Some(i + 1),
            message: format!("line {} is not valid JSON: {e}", i + 1),
        })?;
        values.push((Some(i + 1), value));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"objectType":"contacts","properties":{"email":"a@example.com"}}"#;

    #[test]
    fn content_types() {
        assert_eq!(
            BodyFormat::from_content_type(Some("application/json; charset=utf-8")),
            Ok(BodyFormat::Json)
        );
        assert_eq!(
            BodyFormat::from_content_type(Some("application/x-ndjson")),
            Ok(BodyFormat::Ndjson)
        );
        assert!(matches!(
            BodyFormat::from_content_type(Some("text/plain")),
            Err(BodyError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            BodyFormat::from_content_type(None),
            Err(BodyError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn one_object_an_array_and_ndjson_all_work() {
        assert_eq!(
            parse_body(BodyFormat::Json, GOOD.as_bytes(), 10)
                .unwrap()
                .writes
                .len(),
            1
        );
        assert_eq!(
            parse_body(BodyFormat::Json, format!("[{GOOD},{GOOD}]").as_bytes(), 10)
                .unwrap()
                .writes
                .len(),
            2
        );
        let nd = format!("{GOOD}\n\n{GOOD}\r\n{GOOD}\n");
        assert_eq!(
            parse_body(BodyFormat::Ndjson, nd.as_bytes(), 10)
                .unwrap()
                .writes
                .len(),
            3
        );
    }

    #[test]
    fn errors_name_the_index_or_line_and_the_field() {
        let bad = r#"{"objectType":"contacts","properties":{"age":null}}"#;
        let Err(BodyError::Invalid(e)) =
            parse_body(BodyFormat::Json, format!("[{GOOD},{bad}]").as_bytes(), 10)
        else {
            panic!()
        };
        assert_eq!(
            (e[0].index, e[0].line, e[0].field.as_str()),
            (1, None, "properties.age")
        );
        let Err(BodyError::Invalid(e)) = parse_body(
            BodyFormat::Ndjson,
            format!("{GOOD}\n\n{bad}\n").as_bytes(),
            10,
        ) else {
            panic!()
        };
        assert_eq!(
            (e[0].index, e[0].line, e[0].field.as_str()),
            (1, Some(3), "properties.age")
        );
    }

    #[test]
    fn malformed_empty_and_oversized_bodies() {
        assert!(matches!(
            parse_body(BodyFormat::Json, b"{nope", 10),
            Err(BodyError::Malformed { line: None, .. })
        ));
        assert!(matches!(
            parse_body(BodyFormat::Json, b"42", 10),
            Err(BodyError::Malformed { .. })
        ));
        assert!(matches!(
            parse_body(
                BodyFormat::Ndjson,
                format!("{GOOD}\n{{nope\n").as_bytes(),
                10
            ),
            Err(BodyError::Malformed { line: Some(2), .. })
        ));
        assert!(matches!(
            parse_body(BodyFormat::Json, b"[]", 10),
            Err(BodyError::Empty)
        ));
        assert!(matches!(
            parse_body(BodyFormat::Ndjson, b"\n\n", 10),
            Err(BodyError::Empty)
        ));
        assert!(matches!(
            parse_body(
                BodyFormat::Json,
                format!("[{GOOD},{GOOD},{GOOD}]").as_bytes(),
                2
            ),
            Err(BodyError::TooManyWrites { count: 3, max: 2 })
        ));
        assert!(matches!(
            parse_body(
                BodyFormat::Ndjson,
                format!("{GOOD}\n{GOOD}\n{GOOD}\n").as_bytes(),
                2
            ),
            Err(BodyError::TooManyWrites { count: 3, max: 2 })
        ));
    }
}
