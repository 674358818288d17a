//! Notification delivery to a real SQS endpoint (moto, or the project's local
//! stack via AWS_ENDPOINT_URL_SQS).

use std::time::Duration;

use crate::common::{mturk, Sqs};
use aws_sdk_mturk::types::{EventType, NotificationSpecification, NotificationTransport};
use mturk_double::{DeliveryOutcome, MturkDouble};
use serde_json::Value;

fn spec(destination: &str, events: &[EventType]) -> NotificationSpecification {
    let mut builder = NotificationSpecification::builder()
        .destination(destination)
        .transport(NotificationTransport::Sqs)
        .version("2014-08-15");
    for event in events {
        builder = builder.event_types(event.clone());
    }
    builder.build().expect("a complete specification")
}

fn is_upper_alnum(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// `2026-03-02T17:04:11Z`: RFC 3339, UTC, whole seconds.
fn is_event_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

fn event(doc: &Value) -> &Value {
    let events = doc["Events"].as_array().expect("Events");
    assert_eq!(events.len(), 1);
    &events[0]
}

#[tokio::test]
async fn notifications_reach_sqs_like_mturk_sends_them() {
    let sqs = Sqs::start().await;
    let queue = sqs.queue("submitted").await;
    let double = MturkDouble::start(Some(sqs.client.clone()))
        .await
        .expect("start");
    let client = mturk(&double);
    let hit_type = double.new_hit_type_id();
    let hit = double.create_hit(&hit_type);

    // No setting yet: nothing is sent.
    let quiet = double
        .submit_assignment(&hit, "A1EARLY")
        .await
        .expect("submit");
    assert_eq!(quiet.notification, None);
    assert_eq!(quiet.delivery, None);

    client
        .update_notification_settings()
        .hit_type_id(&hit_type)
        .notification(spec(&queue, &[EventType::AssignmentSubmitted]))
        .active(true)
        .send()
        .await
        .expect("update");

    let submission = double
        .submit_assignment(&hit, "A1WORKER")
        .await
        .expect("submit");
    assert!(matches!(
        submission.delivery,
        Some(DeliveryOutcome::Sent {
            message_id: Some(_)
        })
    ));
    let body = submission.notification.clone().expect("a document");
    let received = sqs.drain(&queue, 1, Duration::from_secs(5)).await;
    assert_eq!(received, std::slice::from_ref(&body));

    let doc: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(doc["EventDocVersion"], "2014-08-15");
    let doc_id = doc["EventDocId"].as_str().expect("EventDocId");
    assert!(doc_id.len() >= 32 && doc_id.chars().all(|c| c.is_ascii_hexdigit()));
    let account = doc["SourceAccount"].as_str().expect("SourceAccount");
    assert!(account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()));
    assert!(doc["CustomerId"]
        .as_str()
        .is_some_and(|c| c.starts_with('A') && is_upper_alnum(c)));
    let e = event(&doc);
    assert_eq!(e["EventType"], "AssignmentSubmitted");
    assert_eq!(e["HITTypeId"], hit_type.as_str());
    assert_eq!(e["HITId"], hit.as_str());
    assert_eq!(e["AssignmentId"], submission.assignment_id.as_str());
    assert!(
        e["EventTimestamp"].as_str().is_some_and(is_event_timestamp),
        "{e}"
    );

    // The body starts with the version, as MTurk's documents do.
    assert!(body.starts_with("{\"EventDocVersion\":\"2014-08-15\",\"EventDocId\":"));

    // Each document has its own id.
    let second = double
        .submit_assignment(&hit, "A1SECOND")
        .await
        .expect("submit");
    let second_doc: Value =
        serde_json::from_str(second.notification.as_deref().expect("doc")).expect("JSON");
    assert_ne!(second_doc["EventDocId"], doc["EventDocId"]);
    assert_eq!(sqs.drain(&queue, 1, Duration::from_secs(5)).await.len(), 1);

    // Deactivated: nothing more.
    client
        .update_notification_settings()
        .hit_type_id(&hit_type)
        .active(false)
        .send()
        .await
        .expect("deactivate");
    let after = double
        .submit_assignment(&hit, "A1LATE")
        .await
        .expect("submit");
    assert_eq!(after.notification, None);
    assert!(sqs
        .drain(&queue, 0, Duration::from_millis(300))
        .await
        .is_empty());
}

#[tokio::test]
async fn only_subscribed_event_types_and_hit_types_are_sent() {
    let sqs = Sqs::start().await;
    let queue = sqs.queue("filtered").await;
    let double = MturkDouble::start(Some(sqs.client.clone()))
        .await
        .expect("start");
    let client = mturk(&double);
    let watched = double.new_hit_type_id();
    let other = double.new_hit_type_id();
    client
        .update_notification_settings()
        .hit_type_id(&watched)
        .notification(spec(&queue, &[EventType::AssignmentReturned]))
        .send()
        .await
        .expect("update");
    let submission = double
        .submit_assignment(&double.create_hit(&watched), "A1WORKER")
        .await
        .expect("submit");
    assert_eq!(submission.notification, None);
    let submission = double
        .submit_assignment(&double.create_hit(&other), "A1WORKER")
        .await
        .expect("submit");
    assert_eq!(submission.notification, None);
    assert!(sqs
        .drain(&queue, 0, Duration::from_millis(300))
        .await
        .is_empty());
}

#[tokio::test]
async fn test_events_carry_placeholder_ids_and_the_requested_type() {
    let sqs = Sqs::start().await;
    let queue = sqs.queue("ping").await;
    let double = MturkDouble::start(Some(sqs.client.clone()))
        .await
        .expect("start");
    let client = mturk(&double);
    let hit_type = double.new_hit_type_id();
    client
        .send_test_event_notification()
        .notification(spec(&queue, &[EventType::AssignmentSubmitted]))
        .test_event_type(EventType::Ping)
        .send()
        .await
        .expect("test event");
    let received = sqs.drain(&queue, 1, Duration::from_secs(5)).await;
    assert_eq!(received.len(), 1);
    let doc: Value = serde_json::from_str(&received[0]).expect("JSON");
    let e = event(&doc);
    assert_eq!(e["EventType"], "Ping");
    let placeholder_type = e["HITTypeId"].as_str().expect("HITTypeId");
    assert!(is_upper_alnum(placeholder_type));
    assert_ne!(placeholder_type, hit_type);
    // Nothing in the account answers to the placeholder HIT.
    let err = client
        .list_assignments_for_hit()
        .hit_id(e["HITId"].as_str().expect("HITId"))
        .send()
        .await
        .expect_err("placeholder HIT does not exist");
    assert_eq!(
        crate::common::turk_code(err).as_deref(),
        Some("AWS.MechanicalTurk.HITDoesNotExist")
    );

    let deliveries = double.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].destination, queue);
    assert_eq!(deliveries[0].body, received[0]);
    assert!(matches!(
        deliveries[0].outcome,
        DeliveryOutcome::Sent { .. }
    ));
    // Sending a test event changes no setting.
    assert!(double.notification_setting(&hit_type).is_none());
}

#[tokio::test]
async fn lost_and_failed_deliveries_are_silent_to_the_caller() {
    let sqs = Sqs::start().await;
    let queue = sqs.queue("lost").await;
    let double = MturkDouble::start(Some(sqs.client.clone()))
        .await
        .expect("start");
    let client = mturk(&double);
    let hit_type = double.new_hit_type_id();
    let hit = double.create_hit(&hit_type);
    client
        .update_notification_settings()
        .hit_type_id(&hit_type)
        .notification(spec(&queue, &[EventType::AssignmentSubmitted]))
        .send()
        .await
        .expect("update");

    double.lose_deliveries_to(&queue);
    let lost = double
        .submit_assignment(&hit, "A1LOST")
        .await
        .expect("submit");
    assert_eq!(lost.delivery, Some(DeliveryOutcome::Lost));
    assert!(
        lost.notification.is_some(),
        "the document is still available for replays"
    );
    client
        .send_test_event_notification()
        .notification(spec(&queue, &[EventType::AssignmentSubmitted]))
        .test_event_type(EventType::AssignmentSubmitted)
        .send()
        .await
        .expect("test events to a lost queue still answer {}");
    assert!(sqs
        .drain(&queue, 0, Duration::from_millis(300))
        .await
        .is_empty());

    double.clear_faults();
    let found = double
        .submit_assignment(&hit, "A1FOUND")
        .await
        .expect("submit");
    assert!(matches!(found.delivery, Some(DeliveryOutcome::Sent { .. })));
    assert_eq!(sqs.drain(&queue, 1, Duration::from_secs(5)).await.len(), 1);

    // A queue that does not exist: the API call still succeeds.
    let missing = format!("{}/123456789012/no-such-queue", sqs.endpoint);
    client
        .send_test_event_notification()
        .notification(spec(&missing, &[EventType::AssignmentSubmitted]))
        .test_event_type(EventType::Ping)
        .send()
        .await
        .expect("silent failure");
    let last = double.deliveries().pop().expect("recorded");
    assert_eq!(last.destination, missing);
    assert!(
        matches!(last.outcome, DeliveryOutcome::Failed(_)),
        "{last:?}"
    );
}

#[tokio::test]
async fn a_replayed_document_is_byte_identical() {
    let sqs = Sqs::start().await;
    let queue = sqs.queue("replay").await;
    let double = MturkDouble::start(Some(sqs.client.clone()))
        .await
        .expect("start");
    let client = mturk(&double);
    let hit_type = double.new_hit_type_id();
    let hit = double.create_hit(&hit_type);
    client
        .update_notification_settings()
        .hit_type_id(&hit_type)
        .notification(spec(&queue, &[EventType::AssignmentSubmitted]))
        .send()
        .await
        .expect("update");
    let submission = double
        .submit_assignment(&hit, "A1WORKER")
        .await
        .expect("submit");
    let body = submission.notification.expect("document");
    sqs.client
        .send_message()
        .queue_url(&queue)
        .message_body(&body)
        .send()
        .await
        .expect("duplicate");
    let received = sqs.drain(&queue, 2, Duration::from_secs(5)).await;
    assert_eq!(received, [body.clone(), body]);
}
