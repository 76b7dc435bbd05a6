//! What a HubSpot answer to a batch create means, as one pure, exhaustively matched
//! function from (status, `Retry-After`, body) to [`Answer`]. Every row of the error table
//! in `shared/hubspot-api.md` has a variant here and a test from a saved body.

use std::time::Duration;

use super::wire::{BatchResponse, ErrorBody, parse_batch_response};

/// The window a 429 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatePolicy {
    /// `TEN_SECONDLY_ROLLING`: the burst window (the configured interval).
    Interval,
    /// `SECONDLY`: one second.
    Secondly,
    /// `DAILY`: until the daily reset at midnight in the account's time zone.
    Daily,
    /// A 429 that names no policy we know: treated as the burst window.
    Unknown,
}

/// HubSpot's words about a failed call, kept for the error history and `last_error`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detail {
    pub status: u16,
    pub category: Option<String>,
    pub message: String,
    pub correlation_id: Option<String>,
    /// The body as received (truncated when huge), for the error history.
    pub raw: String,
}

/// What one batch-create answer means for the batch.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Any 2xx with a readable body: per-input results and errors (either may be empty).
    Created(BatchResponse),
    /// A 2xx whose body cannot be read: HubSpot may or may not have created the objects.
    MalformedSuccess(Detail),
    /// 400 for the whole batch with no per-input attribution: bad input somewhere.
    Invalid(Detail),
    /// 400/404 "Unable to infer object type": the object type itself is wrong.
    UnknownObjectType(Detail),
    /// 409 (or a 400 "already has that value"): a unique value exists. The whole batch was
    /// rejected; only the first conflict is named, with the existing object's id when the
    /// message carries it.
    Conflict {
        detail: Detail,
        existing_id: Option<String>,
    },
    /// 401: the token is bad or expired.
    Unauthorized(Detail),
    /// 403 (`MISSING_SCOPES` or another refusal): the token may not write this object type.
    Forbidden(Detail),
    /// 429: wait out the window, nothing is wrong with the batch.
    RateLimited {
        detail: Detail,
        policy: RatePolicy,
        retry_after: Option<Duration>,
    },
    /// 404 (for the path), 405, 413, 415, 422: HubSpot refused the request itself, not
    /// the writes in it; nothing was created. 413 says the batch is too large.
    Rejected(Detail),
    /// The request never reached HubSpot (connection refused, DNS, TLS handshake):
    /// nothing can have been created.
    Unreachable(Detail),
    /// 423, 477, 5xx and other statuses worth retrying, or a request that got no answer
    /// after it was sent: the batch may have been created.
    Transient {
        detail: Detail,
        retry_after: Option<Duration>,
    },
}

/// The largest slice of a body kept in the error history.
const MAX_RAW: usize = 8 * 1024;

/// Classifies one answer. `retry_after` is the `Retry-After` header in seconds, if any.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &[u8]) -> Answer {
    if (200..300).contains(&status) {
        return match parse_batch_response(body) {
            Ok(parsed) => Answer::Created(parsed),
            Err(e) => Answer::MalformedSuccess(Detail {
                status,
                category: None,
                message: format!(
                    "HubSpot answered {status} with a body that is not a batch result: {e}"
                ),
                correlation_id: None,
                raw: raw_text(body),
            }),
        };
    }
    let error: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let detail = Detail {
        status,
        category: error.category.clone(),
        message: error
            .message
            .clone()
            .unwrap_or_else(|| format!("HubSpot answered {status} with no message")),
        correlation_id: error.correlation_id.clone(),
        raw: raw_text(body),
    };
    let unknown_type = detail.message.contains("Unable to infer object type");
    match status {
        400 | 404 if unknown_type => Answer::UnknownObjectType(detail),
        // HubSpot's answer to a conflict on a custom unique property: a whole-batch 400
        // naming the property, rather than a 409 with "Existing ID".
        400 if detail.message.contains("already has that value") => Answer::Conflict {
            existing_id: None,
            detail,
        },
        400 => Answer::Invalid(detail),
        404 | 405 | 413 | 415 | 422 => Answer::Rejected(detail),
        401 => Answer::Unauthorized(detail),
        403 => Answer::Forbidden(detail),
        409 => Answer::Conflict {
            existing_id: existing_id(&detail.message),
            detail,
        },
        429 => Answer::RateLimited {
            policy: match error.policy_name.as_deref() {
                Some("TEN_SECONDLY_ROLLING") => RatePolicy::Interval,
                Some("SECONDLY") => RatePolicy::Secondly,
                Some("DAILY") => RatePolicy::Daily,
                _ => RatePolicy::Unknown,
            },
            retry_after,
            detail,
        },
        // 423 Locked: HubSpot asks for at least 2 s.
        423 => Answer::Transient {
            retry_after: Some(retry_after.unwrap_or_default().max(Duration::from_secs(2))),
            detail,
        },
        // 477 Migration in progress, 408 timeouts, every 5xx (including Cloudflare's
        // 521-524), and any status HubSpot has not documented: the batch may or may not
        // have been created, so it is retried under the ambiguity rules.
        _ => Answer::Transient {
            retry_after,
            detail,
        },
    }
}

/// A request that got no HTTP answer (timeout, connection reset, refused after sending):
/// like a 5xx, HubSpot may or may not have created the objects.
pub fn transport_failure(message: impl Into<String>) -> Answer {
    let message = message.into();
    Answer::Transient {
        detail: Detail {
            status: 0,
            category: Some("TRANSPORT".into()),
            raw: message.clone(),
            message,
            correlation_id: None,
        },
        retry_after: None,
    }
}

/// A request that never reached HubSpot: the connection could not be made (refused,
/// DNS, TLS handshake). Nothing was created; it is not an attempt.
pub fn not_sent(message: impl Into<String>) -> Answer {
    let message = message.into();
    Answer::Unreachable(Detail {
        status: 0,
        category: Some("UNREACHABLE".into()),
        raw: message.clone(),
        message,
        correlation_id: None,
    })
}

/// `Retry-After` in seconds (the form HubSpot uses). An HTTP date or garbage gives `None`,
/// and the caller falls back to its own schedule.
pub fn parse_retry_after(header: &str) -> Option<Duration> {
    let seconds: f64 = header.trim().parse().ok()?;
    (0.0..86_400.0 * 2.0)
        .contains(&seconds)
        .then(|| Duration::from_secs_f64(seconds))
}

/// `"... already exists. Existing ID: 12345"` → `12345`.
pub fn existing_id(message: &str) -> Option<String> {
    let rest = &message[message.find("Existing ID:")? + "Existing ID:".len()..];
    let id: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!id.is_empty()).then_some(id)
}

fn raw_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX_RAW)]);
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../../tests/fixtures/hubspot/", $name))
        };
    }

    #[test]
    fn any_2xx_with_a_batch_body_is_created() {
        for status in [200, 201, 207] {
            let Answer::Created(r) = classify(status, None, fixture!("207_multi_status.json"))
            else {
                panic!("{status}")
            };
            assert_eq!((r.results.len(), r.errors.len()), (1, 1));
        }
        let Answer::Created(r) = classify(201, None, fixture!("201_complete.json")) else {
            panic!()
        };
        assert_eq!(r.results.len(), 2);
        let Answer::Created(r) = classify(201, None, fixture!("201_empty_results.json")) else {
            panic!()
        };
        assert!(
            r.results.is_empty(),
            "empty results are for the reconciler to notice"
        );
    }

    #[test]
    fn a_2xx_that_is_not_a_batch_body_is_malformed() {
        assert!(matches!(
            classify(201, None, fixture!("502_html.txt")),
            Answer::MalformedSuccess(_)
        ));
        assert!(matches!(
            classify(200, None, b""),
            Answer::MalformedSuccess(_)
        ));
    }

    #[test]
    fn a_whole_batch_400_is_invalid_with_hubspots_words() {
        let Answer::Invalid(d) = classify(400, None, fixture!("400_validation.json")) else {
            panic!()
        };
        assert_eq!(d.category.as_deref(), Some("VALIDATION_ERROR"));
        assert!(d.message.contains("INVALID_INTEGER"));
        assert_eq!(
            d.correlation_id.as_deref(),
            Some("3d1c3b0a-1b2c-4d5e-8f90-123456789abc")
        );
    }

    #[test]
    fn unable_to_infer_object_type_is_its_own_answer_on_400_and_404() {
        assert!(matches!(
            classify(400, None, fixture!("400_unknown_object_type.json")),
            Answer::UnknownObjectType(_)
        ));
        assert!(matches!(
            classify(404, None, fixture!("404_unknown_object_type.json")),
            Answer::UnknownObjectType(_)
        ));
    }

    #[test]
    fn auth_failures() {
        assert!(matches!(
            classify(401, None, fixture!("401_invalid_authentication.json")),
            Answer::Unauthorized(_)
        ));
        let Answer::Forbidden(d) = classify(403, None, fixture!("403_missing_scopes.json")) else {
            panic!()
        };
        assert_eq!(d.category.as_deref(), Some("MISSING_SCOPES"));
    }

    #[test]
    fn conflicts_carry_the_existing_id_in_both_spellings() {
        for (body, id) in [
            (&fixture!("409_object_already_exists.json")[..], "12345"),
            (&fixture!("409_conflict_legacy.json")[..], "67890"),
        ] {
            let Answer::Conflict { existing_id, .. } = classify(409, None, body) else {
                panic!()
            };
            assert_eq!(existing_id.as_deref(), Some(id));
        }
        let Answer::Conflict { existing_id, .. } = classify(409, None, b"{}") else {
            panic!()
        };
        assert_eq!(existing_id, None);
    }

    #[test]
    fn rate_limits_name_their_policy_and_keep_retry_after() {
        let cases = [
            (&fixture!("429_ten_secondly.json")[..], RatePolicy::Interval),
            (&fixture!("429_secondly.json")[..], RatePolicy::Secondly),
            (&fixture!("429_daily.json")[..], RatePolicy::Daily),
            (&b"{}"[..], RatePolicy::Unknown),
        ];
        for (body, expected) in cases {
            let Answer::RateLimited {
                policy,
                retry_after,
                ..
            } = classify(429, Some(Duration::from_secs(3)), body)
            else {
                panic!()
            };
            assert_eq!(policy, expected);
            assert_eq!(retry_after, Some(Duration::from_secs(3)));
        }
    }

    #[test]
    fn locked_migration_and_server_errors_are_transient() {
        let Answer::Transient { retry_after, .. } =
            classify(423, None, fixture!("423_locked.json"))
        else {
            panic!()
        };
        assert_eq!(
            retry_after,
            Some(Duration::from_secs(2)),
            "423 waits at least 2 s"
        );
        let Answer::Transient { retry_after, .. } = classify(
            477,
            Some(Duration::from_secs(30)),
            fixture!("477_migration.json"),
        ) else {
            panic!()
        };
        assert_eq!(retry_after, Some(Duration::from_secs(30)));
        for status in [500, 502, 503, 504, 521, 522, 523, 524] {
            let body = if status == 502 {
                &fixture!("502_html.txt")[..]
            } else {
                &fixture!("500_internal.json")[..]
            };
            let Answer::Transient { detail, .. } = classify(status, None, body) else {
                panic!("{status}")
            };
            assert_eq!(detail.status, status);
            assert!(!detail.message.is_empty());
        }
    }

    #[test]
    fn a_request_refused_as_a_request_is_rejected_and_nothing_was_created() {
        for status in [404, 405, 413, 415, 422] {
            let Answer::Rejected(d) = classify(status, None, br#"{"message":"nope"}"#) else {
                panic!("{status}")
            };
            assert_eq!((d.status, d.message.as_str()), (status, "nope"));
        }
        let Answer::Unreachable(d) = not_sent("could not connect: connection refused") else {
            panic!()
        };
        assert_eq!((d.status, d.category.as_deref()), (0, Some("UNREACHABLE")));
    }

    #[test]
    fn transport_failures_and_retry_after() {
        let Answer::Transient { detail, .. } = transport_failure("timed out after 30s") else {
            panic!()
        };
        assert_eq!(
            (detail.status, detail.category.as_deref()),
            (0, Some("TRANSPORT"))
        );
        assert_eq!(parse_retry_after(" 10 "), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn existing_id_parsing() {
        assert_eq!(
            existing_id("Contact already exists. Existing ID: 12345").as_deref(),
            Some("12345")
        );
        assert_eq!(existing_id("Existing ID:   987."), Some("987".into()));
        assert_eq!(existing_id("already exists"), None);
    }
}
