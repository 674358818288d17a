//! MTurk's notification document: the body of each SQS message MTurk sends.
//!
//! Parsed here, per record, rather than in the Lambda event type, so that one
//! poison body fails only its own record. The parser is deliberately strict
//! about what we act on (an `AssignmentSubmitted` event must name a plausible
//! assignment, HIT and HIT type) and lenient about what we only acknowledge
//! (other event types, fields MTurk may add later, and a test event's
//! placeholder ids, which are not promised to look like real ones).

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::ids::{shown, AssignmentId, HitId, HitTypeId, InvalidId};

/// The only document version MTurk has ever sent (REST API 2014-08-15).
pub const EVENT_DOC_VERSION: &str = "2014-08-15";

/// SQS's own limit on a message body; anything larger did not come from SQS.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A parsed notification document.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// MTurk's id for this document. The same document can arrive in two SQS messages.
    pub doc_id: String,
    pub customer_id: String,
    pub source_account: Option<String>,
    pub events: Vec<Event>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A worker submitted an assignment: the one event that excludes someone.
    AssignmentSubmitted {
        at: OffsetDateTime,
        hit_type_id: HitTypeId,
        hit_id: HitId,
        assignment_id: AssignmentId,
    },
    /// A test event from `SendTestEventNotification`. Its ids are placeholders.
    Ping {
        at: OffsetDateTime,
        placeholder_hit_type_id: Option<String>,
    },
    /// Any other event type: acknowledged, logged, nothing done.
    Other {
        event_type: String,
        at: OffsetDateTime,
    },
}

/// Why a body is not a notification we can act on. Always the record's own fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MalformedNotification {
    #[error("body is {0} bytes, over SQS's 256 KiB limit")]
    TooLarge(usize),
    #[error("body is not a notification document: {0}")]
    Json(String),
    #[error("unsupported EventDocVersion {0} (expected \"2014-08-15\")")]
    Version(String),
    #[error("{0} is missing")]
    Missing(String),
    #[error("{field} is not valid: {problem}")]
    Invalid { field: String, problem: String },
    #[error("{field}: {source}")]
    Id {
        field: String,
        #[source]
        source: InvalidId,
    },
    #[error("the document has no events")]
    NoEvents,
}

// Raw shapes: every field optional, so a missing one gets a message naming it
// instead of serde's generic one.
#[derive(Deserialize)]
struct RawDocument {
    #[serde(rename = "EventDocVersion")]
    version: Option<String>,
    #[serde(rename = "EventDocId")]
    doc_id: Option<String>,
    #[serde(rename = "CustomerId")]
    customer_id: Option<String>,
    #[serde(rename = "SourceAccount")]
    source_account: Option<String>,
    #[serde(rename = "Events")]
    events: Option<Vec<RawEvent>>,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "EventType")]
    event_type: Option<String>,
    #[serde(rename = "EventTimestamp")]
    timestamp: Option<String>,
    #[serde(rename = "HITTypeId")]
    hit_type_id: Option<String>,
    #[serde(rename = "HITId")]
    hit_id: Option<String>,
    #[serde(rename = "AssignmentId")]
    assignment_id: Option<String>,
}

impl Notification {
    pub fn parse(body: &str) -> Result<Self, MalformedNotification> {
        if body.len() > MAX_BODY_BYTES {
            return Err(MalformedNotification::TooLarge(body.len()));
        }
        let raw: RawDocument =
            serde_json::from_str(body).map_err(|e| MalformedNotification::Json(e.to_string()))?;
        let version = raw.version.ok_or_else(|| missing("EventDocVersion"))?;
        if version != EVENT_DOC_VERSION {
            return Err(MalformedNotification::Version(shown(&version)));
        }
        let doc_id = opaque("EventDocId", raw.doc_id)?;
        let customer_id = opaque("CustomerId", raw.customer_id)?;
        let source_account = raw
            .source_account
            .map(|s| opaque("SourceAccount", Some(s)))
            .transpose()?;
        let raw_events = raw.events.ok_or_else(|| missing("Events"))?;
        if raw_events.is_empty() {
            return Err(MalformedNotification::NoEvents);
        }
        let events = raw_events
            .into_iter()
            .enumerate()
            .map(|(i, e)| Event::from_raw(i, e))
            .collect::<Result<_, _>>()?;
        Ok(Notification {
            doc_id,
            customer_id,
            source_account,
            events,
        })
    }
}

impl Event {
    fn from_raw(index: usize, raw: RawEvent) -> Result<Self, MalformedNotification> {
        let field = |name: &str| format!("Events[{index}].{name}");
        let event_type = raw
            .event_type
            .ok_or_else(|| MalformedNotification::Missing(field("EventType")))?;
        let timestamp = raw
            .timestamp
            .ok_or_else(|| MalformedNotification::Missing(field("EventTimestamp")))?;
        let at = OffsetDateTime::parse(&timestamp, &Rfc3339).map_err(|e| {
            MalformedNotification::Invalid {
                field: field("EventTimestamp"),
                problem: format!("{} is not an RFC 3339 time ({e})", shown(&timestamp)),
            }
        })?;
        match event_type.as_str() {
            "AssignmentSubmitted" => {
                let id = |name: &str, value: Option<String>| {
                    value.ok_or_else(|| MalformedNotification::Missing(field(name)))
                };
                let wrap = |name: &str| {
                    let f = field(name);
                    move |source| MalformedNotification::Id { field: f, source }
                };
                Ok(Event::AssignmentSubmitted {
                    at,
                    hit_type_id: HitTypeId::parse(&id("HITTypeId", raw.hit_type_id)?)
                        .map_err(wrap("HITTypeId"))?,
                    hit_id: HitId::parse(&id("HITId", raw.hit_id)?).map_err(wrap("HITId"))?,
                    assignment_id: AssignmentId::parse(&id("AssignmentId", raw.assignment_id)?)
                        .map_err(wrap("AssignmentId"))?,
                })
            }
            "Ping" => Ok(Event::Ping {
                at,
                placeholder_hit_type_id: raw.hit_type_id.map(|s| bounded(&s)),
            }),
            other => Ok(Event::Other {
                event_type: bounded(other),
                at,
            }),
        }
    }
}

fn missing(name: &str) -> MalformedNotification {
    MalformedNotification::Missing(name.to_owned())
}

/// Ids we only store and log, never send to MTurk: any printable text of sane length.
fn opaque(name: &str, value: Option<String>) -> Result<String, MalformedNotification> {
    let value = value.ok_or_else(|| missing(name))?;
    let problem = if value.is_empty() {
        Some("it is empty".to_owned())
    } else if value.len() > 255 {
        Some("it is longer than 255 bytes".to_owned())
    } else if value.chars().any(char::is_control) {
        Some(format!("{} contains control characters", shown(&value)))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(MalformedNotification::Invalid {
            field: name.to_owned(),
            problem,
        }),
        None => Ok(value),
    }
}

/// Text from the message kept only for logs: cut to a sane length, control characters escaped.
fn bounded(raw: &str) -> String {
    let s = shown(raw);
    s[1..s.len() - 1].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBMITTED: &str = r#"{"EventDocVersion":"2014-08-15","EventDocId":"5e2b7f3c9a","CustomerId":"A1REQUESTER","SourceAccount":"123456789012","Events":[{"EventType":"AssignmentSubmitted","EventTimestamp":"2026-03-02T17:04:11Z","HITTypeId":"3XJOUITW8URHJMX7F00H20LGRIAKAJ","HITId":"3ZC62PVYDIVS0QE7NFAMN5S6YNQXXN","AssignmentId":"3X4JMASXCM8FCX94IM0KEMYGMD5B0E"}]}"#;

    #[test]
    fn parses_a_submitted_assignment() {
        let n = Notification::parse(SUBMITTED).unwrap();
        assert_eq!(n.doc_id, "5e2b7f3c9a");
        assert_eq!(n.source_account.as_deref(), Some("123456789012"));
        match &n.events[..] {
            [Event::AssignmentSubmitted { assignment_id, .. }] => {
                assert_eq!(assignment_id.as_str(), "3X4JMASXCM8FCX94IM0KEMYGMD5B0E")
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn tolerates_fields_mturk_may_add() {
        let body = SUBMITTED.replace("\"CustomerId\"", "\"NewField\":[1,2],\"CustomerId\"");
        assert!(Notification::parse(&body).is_ok());
    }

    #[test]
    fn ping_placeholders_are_not_validated_as_ids() {
        let body = r#"{"EventDocVersion":"2014-08-15","EventDocId":"d","CustomerId":"c","Events":[{"EventType":"Ping","EventTimestamp":"2026-03-02T17:04:11Z","HITTypeId":"placeholder-type id"}]}"#;
        let n = Notification::parse(body).unwrap();
        assert!(
            matches!(&n.events[0], Event::Ping { placeholder_hit_type_id: Some(t), .. } if t == "placeholder-type id")
        );
    }

    #[test]
    fn other_event_types_are_kept_for_logging() {
        let body = SUBMITTED.replace("AssignmentSubmitted", "HITReviewable");
        let n = Notification::parse(&body).unwrap();
        assert!(
            matches!(&n.events[0], Event::Other { event_type, .. } if event_type == "HITReviewable")
        );
    }

    #[test]
    fn each_defect_is_named() {
        let cases: &[(String, &str)] = &[
            ("not json".into(), "not a notification document"),
            ("[]".into(), "not a notification document"),
            (
                SUBMITTED.replace("2014-08-15", "2006-05-05"),
                "unsupported EventDocVersion",
            ),
            (
                SUBMITTED.replace("\"EventDocId\":\"5e2b7f3c9a\",", ""),
                "EventDocId is missing",
            ),
            (
                SUBMITTED.replace(",\"AssignmentId\":\"3X4JMASXCM8FCX94IM0KEMYGMD5B0E\"", ""),
                "Events[0].AssignmentId is missing",
            ),
            (
                SUBMITTED.replace("3X4JMASXCM8FCX94IM0KEMYGMD5B0E", "3X4J-MASX"),
                "Events[0].AssignmentId: assignment id",
            ),
            (
                SUBMITTED.replace("2026-03-02T17:04:11Z", "yesterday"),
                "Events[0].EventTimestamp is not valid",
            ),
            (
                SUBMITTED.replace(
                    "\"HITId\":\"3ZC62PVYDIVS0QE7NFAMN5S6YNQXXN\"",
                    "\"HITId\":42",
                ),
                "not a notification document",
            ),
            (
                r#"{"EventDocVersion":"2014-08-15","EventDocId":"d","CustomerId":"c","Events":[]}"#
                    .into(),
                "no events",
            ),
            ("x".repeat(MAX_BODY_BYTES + 1), "over SQS's 256 KiB limit"),
        ];
        for (body, expected) in cases {
            let err = Notification::parse(body).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected:?} not in {err:?}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(Notification::parse(&body[..MAX_BODY_BYTES.min(body.len())]).is_err());
        let nested = format!(
            "{{\"EventDocVersion\":\"2014-08-15\",\"X\":{}1{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(Notification::parse(&nested).is_err());
    }
}
