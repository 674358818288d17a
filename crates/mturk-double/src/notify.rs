//! Notification documents (EventDocVersion 2014-08-15) and their delivery.

use std::time::SystemTime;

use serde::Serialize;
use time::macros::format_description;
use time::OffsetDateTime;

use crate::ids::event_doc_id;

/// The notification format version MTurk accepts and sends.
pub const EVENT_DOC_VERSION: &str = "2014-08-15";
/// The requester's AWS account, as it appears in `SourceAccount`.
pub const SOURCE_ACCOUNT: &str = "123456789012";
/// The requester's customer id, as it appears in `CustomerId`.
pub const CUSTOMER_ID: &str = "A2DBLREQUESTER7";

/// Event types `UpdateNotificationSettings` and `SendTestEventNotification` accept.
pub const EVENT_TYPES: &[&str] = &[
    "AssignmentAccepted",
    "AssignmentAbandoned",
    "AssignmentReturned",
    "AssignmentSubmitted",
    "AssignmentRejected",
    "AssignmentApproved",
    "HITCreated",
    "HITExpired",
    "HITReviewable",
    "HITExtended",
    "HITDisposed",
    "Ping",
];

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Document<'a> {
    event_doc_version: &'a str,
    event_doc_id: String,
    source_account: &'a str,
    customer_id: &'a str,
    events: [Event<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Event<'a> {
    event_type: &'a str,
    event_timestamp: String,
    #[serde(rename = "HITTypeId")]
    hit_type_id: &'a str,
    #[serde(rename = "HITId")]
    hit_id: &'a str,
    assignment_id: &'a str,
}

/// RFC 3339 UTC with whole seconds and a `Z`, as in MTurk's documents.
pub(crate) fn event_timestamp(at: SystemTime) -> String {
    OffsetDateTime::from(at)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default()
}

pub(crate) struct EventIds<'a> {
    pub hit_type_id: &'a str,
    pub hit_id: &'a str,
    pub assignment_id: &'a str,
}

pub(crate) fn document(
    doc_counter: u64,
    event_type: &str,
    at: SystemTime,
    ids: EventIds<'_>,
) -> String {
    let document = Document {
        event_doc_version: EVENT_DOC_VERSION,
        event_doc_id: event_doc_id(doc_counter),
        source_account: SOURCE_ACCOUNT,
        customer_id: CUSTOMER_ID,
        events: [Event {
            event_type,
            event_timestamp: event_timestamp(at),
            hit_type_id: ids.hit_type_id,
            hit_id: ids.hit_id,
            assignment_id: ids.assignment_id,
        }],
    };
    // Serialising plain strings into a String cannot fail.
    serde_json::to_string(&document).unwrap_or_default()
}

/// A document on its way to a destination.
#[derive(Clone, Debug)]
pub(crate) struct PendingDelivery {
    pub destination: String,
    pub transport: String,
    pub event_type: String,
    pub body: String,
}

/// What became of one notification document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// SQS accepted the message.
    Sent { message_id: Option<String> },
    /// Dropped on purpose (see [`crate::MturkDouble::lose_deliveries_to`]).
    Lost,
    /// The send failed (no SQS client, queue missing, endpoint down...). MTurk
    /// does not tell the requester either.
    Failed(String),
    /// Email and SNS destinations are stored but not delivered to.
    NotSimulated,
}

/// A notification document the double produced, and where it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub destination: String,
    pub transport: String,
    pub event_type: String,
    pub body: String,
    pub outcome: DeliveryOutcome,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn documents_have_mturk_field_order_and_timestamp_shape() {
        let at = UNIX_EPOCH + Duration::from_millis(1_772_471_051_500);
        let body = document(
            1,
            "AssignmentSubmitted",
            at,
            EventIds {
                hit_type_id: "T",
                hit_id: "H",
                assignment_id: "A",
            },
        );
        let expected_prefix = "{\"EventDocVersion\":\"2014-08-15\",\"EventDocId\":\"";
        assert!(body.starts_with(expected_prefix), "{body}");
        assert!(body.contains(
            "\"Events\":[{\"EventType\":\"AssignmentSubmitted\",\"EventTimestamp\":\"2026-03-02T17:04:11Z\",\"HITTypeId\":\"T\",\"HITId\":\"H\",\"AssignmentId\":\"A\"}]"
        ), "{body}");
    }
}
