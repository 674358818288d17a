//! MTurk's notification document: the body of each SQS message MTurk sends.
//!
//! Parsed here, per record, rather than in the Lambda event type, so that one
//! poison body fails only its own record. Inside a document each event is
//! read on its own: an event we act on (`AssignmentSubmitted`) needs only a
//! plausible `AssignmentId`; an odd neighbour (an unknown type, a bad or
//! missing timestamp, a HIT event without an assignment) is set aside with
//! its reason and never sinks the submission beside it.

use serde::Deserialize;
use serde_json::Value;
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
    /// The requester account the document is about. Absent only in documents
    /// MTurk did not write.
    pub customer_id: Option<String>,
    pub source_account: Option<String>,
    /// The events that could be read, in the document's order.
    pub events: Vec<Event>,
    /// The events that could not be read, with why.
    pub unreadable: Vec<Unreadable>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A worker submitted an assignment: the one event that excludes someone.
    /// Only the assignment id is needed: the worker, HIT and submit time
    /// come from MTurk's own answer to GetAssignment.
    AssignmentSubmitted {
        assignment_id: AssignmentId,
        /// The event's time, the fallback when MTurk gives no SubmitTime.
        at: Option<OffsetDateTime>,
        hit_id: Option<HitId>,
        hit_type_id: Option<HitTypeId>,
    },
    /// The worker gave the assignment back: whatever they claimed for it ends.
    AssignmentReturned { assignment_id: AssignmentId },
    /// The assignment's time ran out unsubmitted: likewise.
    AssignmentAbandoned { assignment_id: AssignmentId },
    /// A test event from `SendTestEventNotification`. Its ids are placeholders.
    Ping {
        at: Option<OffsetDateTime>,
        placeholder_hit_type_id: Option<String>,
    },
    /// Any other event type: acknowledged, logged, nothing done.
    Other { event_type: String },
}

/// An event that could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    /// Where it stands in `Events`.
    pub index: usize,
    /// Its type, bounded for logs, when it had one.
    pub event_type: Option<String>,
    /// True when it is a submission: its worker cannot be excluded, so the
    /// record must fail (and in the end wait in the dead-letter queue).
    pub must_act: bool,
    pub problem: MalformedNotification,
}

/// Why a body (or one event in it) is not something we can act on. Always
/// the record's own fault.
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

// The document's own fields; the events stay raw JSON so that each is read
// (and fails) on its own.
#[derive(Deserialize)]
struct RawDocument {
    #[serde(rename = "EventDocVersion")]
    version: Option<Value>,
    #[serde(rename = "EventDocId")]
    doc_id: Option<Value>,
    #[serde(rename = "CustomerId")]
    customer_id: Option<Value>,
    #[serde(rename = "SourceAccount")]
    source_account: Option<Value>,
    #[serde(rename = "Events")]
    events: Option<Value>,
}

impl Notification {
    pub fn parse(body: &str) -> Result<Self, MalformedNotification> {
        if body.len() > MAX_BODY_BYTES {
            return Err(MalformedNotification::TooLarge(body.len()));
        }
        let raw: RawDocument = serde_json::from_str(body).map_err(|e| {
            // serde's message can quote the input; keep only its category and place.
            MalformedNotification::Json(json_problem(&e))
        })?;
        let version =
            text("EventDocVersion", raw.version)?.ok_or_else(|| missing("EventDocVersion"))?;
        if version != EVENT_DOC_VERSION {
            return Err(MalformedNotification::Version(shown(&version)));
        }
        let doc_id = opaque("EventDocId", text("EventDocId", raw.doc_id)?)?
            .ok_or_else(|| missing("EventDocId"))?;
        let customer_id = opaque("CustomerId", text("CustomerId", raw.customer_id)?)?;
        let source_account = opaque("SourceAccount", text("SourceAccount", raw.source_account)?)?;
        let raw_events = match raw.events {
            None | Some(Value::Null) => return Err(missing("Events")),
            Some(Value::Array(events)) => events,
            Some(_) => {
                return Err(MalformedNotification::Invalid {
                    field: "Events".into(),
                    problem: "it is not a list".into(),
                })
            }
        };
        if raw_events.is_empty() {
            return Err(MalformedNotification::NoEvents);
        }
        let mut events = Vec::with_capacity(raw_events.len());
        let mut unreadable = Vec::new();
        for (index, raw) in raw_events.iter().enumerate() {
            match Event::from_raw(index, raw) {
                Ok(event) => events.push(event),
                Err(u) => unreadable.push(*u),
            }
        }
        Ok(Notification {
            doc_id,
            customer_id,
            source_account,
            events,
            unreadable,
        })
    }

    /// The first unreadable event that must be acted on: the record fails with it.
    pub fn blocking_problem(&self) -> Option<&Unreadable> {
        self.unreadable.iter().find(|u| u.must_act)
    }
}

impl Event {
    fn from_raw(index: usize, raw: &Value) -> Result<Self, Box<Unreadable>> {
        let field = |name: &str| format!("Events[{index}].{name}");
        let unreadable = |event_type: Option<&str>, must_act: bool, problem| {
            Box::new(Unreadable {
                index,
                event_type: event_type.map(bounded),
                must_act,
                problem,
            })
        };
        let Value::Object(map) = raw else {
            return Err(unreadable(
                None,
                false,
                MalformedNotification::Invalid {
                    field: format!("Events[{index}]"),
                    problem: "it is not an object".into(),
                },
            ));
        };
        let get = |name: &str| -> Result<Option<String>, MalformedNotification> {
            text(&field(name), map.get(name).cloned())
        };
        let event_type = match get("EventType") {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Err(unreadable(
                    None,
                    false,
                    MalformedNotification::Missing(field("EventType")),
                ))
            }
            Err(e) => return Err(unreadable(None, false, e)),
        };
        let must_act = event_type == "AssignmentSubmitted";
        // A timestamp is never needed to act: a bad one is only dropped.
        let at = get("EventTimestamp")
            .ok()
            .flatten()
            .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok());
        let assignment = || -> Result<AssignmentId, MalformedNotification> {
            let raw = get("AssignmentId")?
                .ok_or_else(|| MalformedNotification::Missing(field("AssignmentId")))?;
            AssignmentId::parse(&raw).map_err(|source| MalformedNotification::Id {
                field: field("AssignmentId"),
                source,
            })
        };
        match event_type.as_str() {
            "AssignmentSubmitted" => Ok(Event::AssignmentSubmitted {
                assignment_id: assignment()
                    .map_err(|e| unreadable(Some(&event_type), must_act, e))?,
                at,
                // Kept for logs only when plausible: MTurk's answer is what counts.
                hit_id: get("HITId")
                    .ok()
                    .flatten()
                    .and_then(|h| HitId::parse(&h).ok()),
                hit_type_id: get("HITTypeId")
                    .ok()
                    .flatten()
                    .and_then(|h| HitTypeId::parse(&h).ok()),
            }),
            // A claim that cannot be ended here runs out by itself (its
            // time is bounded), so an unreadable one is only set aside.
            "AssignmentReturned" => Ok(Event::AssignmentReturned {
                assignment_id: assignment().map_err(|e| unreadable(Some(&event_type), false, e))?,
            }),
            "AssignmentAbandoned" => Ok(Event::AssignmentAbandoned {
                assignment_id: assignment().map_err(|e| unreadable(Some(&event_type), false, e))?,
            }),
            "Ping" => Ok(Event::Ping {
                at,
                placeholder_hit_type_id: get("HITTypeId").ok().flatten().map(|s| bounded(&s)),
            }),
            other => Ok(Event::Other {
                event_type: bounded(other),
            }),
        }
    }
}

fn missing(name: &str) -> MalformedNotification {
    MalformedNotification::Missing(name.to_owned())
}

/// A field that must be a string when present.
fn text(name: &str, value: Option<Value>) -> Result<Option<String>, MalformedNotification> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(MalformedNotification::Invalid {
            field: name.to_owned(),
            problem: "it is not a string".into(),
        }),
    }
}

/// serde_json's error without the input it may quote: the category, line and column.
fn json_problem(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "not an object of the expected shape",
        serde_json::error::Category::Eof => "cut short",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}

/// Ids we only store and log, never send to MTurk: any printable text of sane length.
fn opaque(name: &str, value: Option<String>) -> Result<Option<String>, MalformedNotification> {
    let Some(value) = value else {
        return Ok(None);
    };
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
        None => Ok(Some(value)),
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
    fn each_defect_of_the_document_is_named() {
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
                r#"{"EventDocVersion":"2014-08-15","EventDocId":"d","CustomerId":"c","Events":[]}"#
                    .into(),
                "no events",
            ),
            (
                r#"{"EventDocVersion":"2014-08-15","EventDocId":"d","Events":"x"}"#.into(),
                "Events is not valid",
            ),
            ("x".repeat(MAX_BODY_BYTES + 1), "over SQS's 256 KiB limit"),
        ];
        for (body, expected) in cases {
            let err = Notification::parse(body).unwrap_err().to_string();
            assert!(err.contains(expected), "{expected:?} not in {err:?}");
        }
    }

    #[test]
    fn an_unreadable_submission_blocks_its_record_and_is_named() {
        let cases: &[(String, &str)] = &[
            (
                SUBMITTED.replace(",\"AssignmentId\":\"3X4JMASXCM8FCX94IM0KEMYGMD5B0E\"", ""),
                "Events[0].AssignmentId is missing",
            ),
            (
                SUBMITTED.replace("3X4JMASXCM8FCX94IM0KEMYGMD5B0E", "3X4J-MASX"),
                "Events[0].AssignmentId: assignment id",
            ),
        ];
        for (body, expected) in cases {
            let n = Notification::parse(body).unwrap();
            let problem = n.blocking_problem().expect("a blocking problem");
            assert!(
                problem.problem.to_string().contains(expected),
                "{expected:?} not in {:?}",
                problem.problem.to_string()
            );
        }
    }

    #[test]
    fn an_odd_neighbour_does_not_sink_a_submission() {
        let submitted = r#"{"EventType":"AssignmentSubmitted","EventTimestamp":"yesterday","HITId":42,"AssignmentId":"3X4JMASXCM8FCX94IM0KEMYGMD5B0E"}"#;
        let neighbours = [
            r#"{"EventType":"SomethingNew2031","EventTimestamp":"2026-03-02T17:04:11Z"}"#,
            r#"{"EventType":"HITExpired","HITId":"3ZC62PVYDIVS0QE7NFAMN5S6YNQXXN"}"#,
            r#"{"EventTimestamp":"2026-03-02T17:04:11Z"}"#,
            r#"{"EventType":["not","text"]}"#,
            r#"17"#,
            r#"{"EventType":"AssignmentReturned","AssignmentId":"bad id"}"#,
        ];
        let body = format!(
            r#"{{"EventDocVersion":"2014-08-15","EventDocId":"d","CustomerId":"c","Events":[{}, {submitted}]}}"#,
            neighbours.join(",")
        );
        let n = Notification::parse(&body).unwrap();
        assert!(n.blocking_problem().is_none(), "{:?}", n.unreadable);
        assert!(n.events.iter().any(|e| matches!(
            e,
            Event::AssignmentSubmitted { assignment_id, at: None, hit_id: None, .. }
                if assignment_id.as_str() == "3X4JMASXCM8FCX94IM0KEMYGMD5B0E"
        )));
        assert_eq!(n.unreadable.len(), 4, "{:?}", n.unreadable);
    }

    #[test]
    fn returned_and_abandoned_name_their_assignment() {
        let body = SUBMITTED.replace("AssignmentSubmitted", "AssignmentReturned");
        let n = Notification::parse(&body).unwrap();
        assert!(
            matches!(&n.events[0], Event::AssignmentReturned { assignment_id } if assignment_id.as_str() == "3X4JMASXCM8FCX94IM0KEMYGMD5B0E")
        );
        let body = SUBMITTED.replace("AssignmentSubmitted", "AssignmentAbandoned");
        let n = Notification::parse(&body).unwrap();
        assert!(matches!(&n.events[0], Event::AssignmentAbandoned { .. }));
    }

    #[test]
    fn errors_never_quote_the_body() {
        let huge = "Z".repeat(200 * 1024);
        for body in [
            format!(r#"{{"Events":"{huge}"#),
            format!(r#"{{"EventDocVersion":1,"Events":"{huge}"}}"#),
            format!(r#"{{"EventDocVersion":"{huge}"}}"#),
        ] {
            let err = Notification::parse(&body).unwrap_err().to_string();
            assert!(
                err.len() < 200,
                "{} bytes: {}",
                err.len(),
                &err[..200.min(err.len())]
            );
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
