//! Each operation's happy path and documented errors, through the real
//! aws-sdk-mturk client.

use std::time::SystemTime;

use crate::common::{error_code, mturk, turk_code};
use aws_sdk_mturk::operation::get_assignment::GetAssignmentError;
use aws_sdk_mturk::types::{
    AssignmentStatus as SdkAssignmentStatus, EventType, NotificationSpecification,
    NotificationTransport, QualificationStatus, QualificationTypeStatus,
};
use mturk_double::{AssignmentStatus, GrantStatus, MturkDouble, Outcome};

async fn double() -> MturkDouble {
    MturkDouble::start(None).await.expect("start the double")
}

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

#[tokio::test]
async fn get_assignment_returns_assignment_and_hit() {
    let double = double().await;
    let client = mturk(&double);
    let hit_type = double.new_hit_type_id();
    let hit = double.create_hit(&hit_type);
    let submission = double
        .submit_assignment(&hit, "A1B2C3D4E5F6G7")
        .await
        .expect("submit");
    let before = SystemTime::now();

    let out = client
        .get_assignment()
        .assignment_id(&submission.assignment_id)
        .send()
        .await
        .expect("GetAssignment");
    let assignment = out.assignment().expect("Assignment");
    assert_eq!(
        assignment.assignment_id(),
        Some(submission.assignment_id.as_str())
    );
    assert_eq!(assignment.worker_id(), Some("A1B2C3D4E5F6G7"));
    assert_eq!(assignment.hit_id(), Some(hit.as_str()));
    assert_eq!(
        assignment.assignment_status(),
        Some(&SdkAssignmentStatus::Submitted)
    );
    let submit = assignment.submit_time().expect("SubmitTime");
    let accept = assignment.accept_time().expect("AcceptTime");
    let auto = assignment.auto_approval_time().expect("AutoApprovalTime");
    assert!(accept.secs() < submit.secs() && submit.secs() < auto.secs());
    let now = before
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    assert!((submit.secs() - now).abs() <= 5);
    assert!(assignment.approval_time().is_none());
    assert!(assignment
        .answer()
        .is_some_and(|a| a.contains("QuestionFormAnswers")));

    let hit_out = out.hit().expect("HIT");
    assert_eq!(hit_out.hit_id(), Some(hit.as_str()));
    assert_eq!(hit_out.hit_type_id(), Some(hit_type.as_str()));
    assert!(hit_out.hit_group_id().is_some_and(|g| g.len() == 30));
    assert_eq!(hit_out.reward(), Some("0.50"));
    assert_eq!(hit_out.max_assignments(), Some(100));
    assert_eq!(hit_out.number_of_assignments_available(), Some(99));
    assert_eq!(hit_out.number_of_assignments_pending(), Some(0));
    assert_eq!(hit_out.number_of_assignments_completed(), Some(0));
    assert!(hit_out.creation_time().is_some() && hit_out.expiration().is_some());
    assert!(hit_out.title().is_some() && hit_out.description().is_some());
    assert_eq!(hit_out.assignment_duration_in_seconds(), Some(3600));
    assert_eq!(hit_out.auto_approval_delay_in_seconds(), Some(259_200));

    let request = &double.calls_to("GetAssignment")[0];
    assert_eq!(
        request.request["AssignmentId"],
        submission.assignment_id.as_str()
    );
    assert_eq!(request.outcome, Outcome::Answered);
}

#[tokio::test]
async fn get_assignment_shows_approval_and_rejection_times() {
    let double = double().await;
    let client = mturk(&double);
    let hit = double.create_hit(&double.new_hit_type_id());
    let approved = double.add_assignment(&hit, "A1APPROVED", AssignmentStatus::Approved);
    let rejected = double.add_assignment(&hit, "A1REJECTED", AssignmentStatus::Rejected);
    double.add_assignment(&hit, "A1WORKING", AssignmentStatus::Accepted);
    let out = client
        .get_assignment()
        .assignment_id(&approved)
        .send()
        .await
        .expect("approved");
    let a = out.assignment().expect("assignment");
    assert_eq!(a.assignment_status(), Some(&SdkAssignmentStatus::Approved));
    assert!(a.approval_time().is_some() && a.rejection_time().is_none());
    let hit_out = out.hit().expect("HIT");
    assert_eq!(hit_out.number_of_assignments_completed(), Some(2));
    assert_eq!(hit_out.number_of_assignments_pending(), Some(1));
    assert_eq!(hit_out.number_of_assignments_available(), Some(97));
    let out = client
        .get_assignment()
        .assignment_id(&rejected)
        .send()
        .await
        .expect("rejected");
    let a = out.assignment().expect("assignment");
    assert_eq!(a.assignment_status(), Some(&SdkAssignmentStatus::Rejected));
    assert!(a.rejection_time().is_some() && a.approval_time().is_none());
}

#[tokio::test]
async fn get_assignment_errors() {
    let double = double().await;
    let client = mturk(&double);
    let hit = double.create_hit(&double.new_hit_type_id());
    let accepted = double.add_assignment(&hit, "A1ACCEPTED", AssignmentStatus::Accepted);
    let other_hit = double.create_hit(&double.new_hit_type_id());
    let disposed = double.add_assignment(&other_hit, "A1DISPOSED", AssignmentStatus::Approved);
    double.dispose_hit(&other_hit);

    for id in ["3NOSUCHASSIGNMENT", accepted.as_str(), disposed.as_str()] {
        let err = client
            .get_assignment()
            .assignment_id(id)
            .send()
            .await
            .expect_err("no such assignment");
        match err.into_service_error() {
            GetAssignmentError::RequestError(e) => {
                assert_eq!(
                    e.turk_error_code(),
                    Some("AWS.MechanicalTurk.AssignmentDoesNotExist")
                );
                assert!(e.message().is_some_and(|m| m.contains(id)));
            }
            other => panic!("expected RequestError, got {other:?}"),
        }
    }
    let err = client
        .get_assignment()
        .assignment_id("lower-case")
        .send()
        .await
        .expect_err("invalid id");
    assert_eq!(error_code(err).as_deref(), Some("ParameterValidationError"));
}

#[tokio::test]
async fn associate_grants_idempotently_and_updates_the_value() {
    let double = double().await;
    let client = mturk(&double);
    let qual = double.create_qualification_type("already-took-part");
    for value in [1, 1, 7] {
        client
            .associate_qualification_with_worker()
            .qualification_type_id(&qual)
            .worker_id("A2WORKER")
            .integer_value(value)
            .send_notification(false)
            .send()
            .await
            .expect("associate");
    }
    let grant = double.qualification(&qual, "A2WORKER").expect("granted");
    assert_eq!(grant.status, GrantStatus::Granted);
    assert_eq!(grant.integer_value, 7);
    assert_eq!(double.workers_with(&qual).len(), 1);
    let sent = &double.calls_to("AssociateQualificationWithWorker")[0].request;
    assert_eq!(sent["SendNotification"], false);
    assert_eq!(sent["IntegerValue"], 1);

    // Without IntegerValue, MTurk uses 1.
    client
        .associate_qualification_with_worker()
        .qualification_type_id(&qual)
        .worker_id("A3WORKER")
        .send()
        .await
        .expect("associate");
    assert_eq!(
        double
            .qualification(&qual, "A3WORKER")
            .map(|g| g.integer_value),
        Some(1)
    );
}

#[tokio::test]
async fn associate_errors() {
    let double = double().await;
    let client = mturk(&double);
    let qual = double.create_qualification_type("took-part");
    let err = client
        .associate_qualification_with_worker()
        .qualification_type_id("3NOSUCHTYPE")
        .worker_id("A2WORKER")
        .send()
        .await
        .expect_err("unknown type");
    assert_eq!(
        turk_code(err).as_deref(),
        Some("AWS.MechanicalTurk.QualificationTypeDoesNotExist")
    );
    for worker in ["A2-WORKER", "a2worker", "B2WORKER", ""] {
        let err = client
            .associate_qualification_with_worker()
            .qualification_type_id(&qual)
            .worker_id(worker)
            .send()
            .await
            .expect_err("malformed worker id");
        assert_eq!(
            error_code(err).as_deref(),
            Some("ParameterValidationError"),
            "{worker:?}"
        );
    }
    double.treat_as_foreign_worker("A9PRODUCTIONONLY");
    let err = client
        .associate_qualification_with_worker()
        .qualification_type_id(&qual)
        .worker_id("A9PRODUCTIONONLY")
        .send()
        .await
        .expect_err("foreign worker");
    assert_eq!(error_code(err).as_deref(), Some("ParameterValidationError"));
    assert!(double.workers_with(&qual).is_empty());
}

#[tokio::test]
async fn disassociate_revokes_and_errors_when_not_held() {
    let double = double().await;
    let client = mturk(&double);
    let qual = double.create_qualification_type("took-part");
    double.grant(&qual, "A2WORKER", 1);
    client
        .disassociate_qualification_from_worker()
        .qualification_type_id(&qual)
        .worker_id("A2WORKER")
        .reason("test")
        .send()
        .await
        .expect("disassociate");
    assert_eq!(
        double.qualification(&qual, "A2WORKER").map(|g| g.status),
        Some(GrantStatus::Revoked)
    );
    for worker in ["A2WORKER", "A3NEVERHELD"] {
        let err = client
            .disassociate_qualification_from_worker()
            .qualification_type_id(&qual)
            .worker_id(worker)
            .send()
            .await
            .expect_err("not held");
        assert_eq!(
            turk_code(err).as_deref(),
            Some("AWS.MechanicalTurk.QualificationDoesNotExist")
        );
    }
    let err = client
        .disassociate_qualification_from_worker()
        .qualification_type_id("3NOSUCHTYPE")
        .worker_id("A2WORKER")
        .send()
        .await
        .expect_err("unknown type");
    assert_eq!(
        turk_code(err).as_deref(),
        Some("AWS.MechanicalTurk.QualificationTypeDoesNotExist")
    );
    // Granting again restores it.
    double.grant(&qual, "A2WORKER", 3);
    assert_eq!(
        double
            .qualification(&qual, "A2WORKER")
            .map(|g| (g.status, g.integer_value)),
        Some((GrantStatus::Granted, 3))
    );
}

#[tokio::test]
async fn list_assignments_for_hit_filters_and_hides_accepted() {
    let double = double().await;
    let client = mturk(&double);
    let hit = double.create_hit(&double.new_hit_type_id());
    double.add_assignment(&hit, "A1ONE", AssignmentStatus::Submitted);
    double.add_assignment(&hit, "A1TWO", AssignmentStatus::Approved);
    double.add_assignment(&hit, "A1THREE", AssignmentStatus::Rejected);
    double.add_assignment(&hit, "A1FOUR", AssignmentStatus::Accepted);

    let out = client
        .list_assignments_for_hit()
        .hit_id(&hit)
        .send()
        .await
        .expect("list");
    assert_eq!(out.num_results(), Some(3));
    assert!(out.next_token().is_none());
    let workers: Vec<_> = out
        .assignments()
        .iter()
        .filter_map(|a| a.worker_id())
        .collect();
    assert_eq!(workers, ["A1ONE", "A1TWO", "A1THREE"]);

    let out = client
        .list_assignments_for_hit()
        .hit_id(&hit)
        .assignment_statuses(SdkAssignmentStatus::Approved)
        .assignment_statuses(SdkAssignmentStatus::Rejected)
        .send()
        .await
        .expect("list");
    let workers: Vec<_> = out
        .assignments()
        .iter()
        .filter_map(|a| a.worker_id())
        .collect();
    assert_eq!(workers, ["A1TWO", "A1THREE"]);

    let err = client
        .list_assignments_for_hit()
        .hit_id(&hit)
        .assignment_statuses(SdkAssignmentStatus::from("Accepted"))
        .send()
        .await
        .expect_err("Accepted is not a listable status");
    assert_eq!(error_code(err).as_deref(), Some("ParameterValidationError"));
}

#[tokio::test]
async fn list_assignments_for_unknown_or_disposed_hit() {
    let double = double().await;
    let client = mturk(&double);
    let hit = double.create_hit(&double.new_hit_type_id());
    double.add_assignment(&hit, "A1ONE", AssignmentStatus::Submitted);
    double.dispose_hit(&hit);
    for id in [hit.as_str(), "3NOSUCHHIT"] {
        let err = client
            .list_assignments_for_hit()
            .hit_id(id)
            .send()
            .await
            .expect_err("no HIT");
        assert_eq!(
            turk_code(err).as_deref(),
            Some("AWS.MechanicalTurk.HITDoesNotExist")
        );
    }
}

#[tokio::test]
async fn list_workers_with_qualification_type_by_status() {
    let double = double().await;
    let client = mturk(&double);
    let qual = double.create_qualification_type("took-part");
    double.grant(&qual, "A1ONE", 1);
    double.grant(&qual, "A1TWO", 2);
    client
        .disassociate_qualification_from_worker()
        .qualification_type_id(&qual)
        .worker_id("A1ONE")
        .send()
        .await
        .expect("revoke");

    let out = client
        .list_workers_with_qualification_type()
        .qualification_type_id(&qual)
        .send()
        .await
        .expect("list");
    assert_eq!(out.num_results(), Some(1));
    let q = &out.qualifications()[0];
    assert_eq!(q.worker_id(), Some("A1TWO"));
    assert_eq!(q.integer_value(), Some(2));
    assert_eq!(q.status(), Some(&QualificationStatus::Granted));
    assert_eq!(q.qualification_type_id(), Some(qual.as_str()));
    assert!(q.grant_time().is_some());

    let out = client
        .list_workers_with_qualification_type()
        .qualification_type_id(&qual)
        .status(QualificationStatus::Revoked)
        .send()
        .await
        .expect("list");
    let workers: Vec<_> = out
        .qualifications()
        .iter()
        .filter_map(|q| q.worker_id())
        .collect();
    assert_eq!(workers, ["A1ONE"]);

    let err = client
        .list_workers_with_qualification_type()
        .qualification_type_id("3NOSUCHTYPE")
        .send()
        .await
        .expect_err("unknown type");
    assert_eq!(
        turk_code(err).as_deref(),
        Some("AWS.MechanicalTurk.QualificationTypeDoesNotExist")
    );
}

#[tokio::test]
async fn list_hits_omits_disposed_hits() {
    let double = double().await;
    let client = mturk(&double);
    let hit_type = double.new_hit_type_id();
    let first = double.create_hit(&hit_type);
    let second = double.create_hit(&hit_type);
    double.dispose_hit(&first);
    let out = client.list_hits().send().await.expect("list");
    assert_eq!(out.num_results(), Some(1));
    assert_eq!(out.hits()[0].hit_id(), Some(second.as_str()));
    assert_eq!(out.hits()[0].hit_type_id(), Some(hit_type.as_str()));
}

#[tokio::test]
async fn create_get_and_list_qualification_types() {
    let double = double().await;
    let client = mturk(&double);
    let created = client
        .create_qualification_type()
        .name("Lab X: took part in study 12")
        .description("Granted on submission; excludes repeat participants")
        .keywords("exclusion")
        .qualification_type_status(QualificationTypeStatus::Active)
        .send()
        .await
        .expect("create");
    let qt = created.qualification_type().expect("QualificationType");
    let id = qt.qualification_type_id().expect("id").to_owned();
    assert_eq!(id.len(), 30);
    assert!(id
        .chars()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()));
    assert_eq!(qt.name(), Some("Lab X: took part in study 12"));
    assert_eq!(qt.keywords(), Some("exclusion"));
    assert_eq!(
        qt.qualification_type_status(),
        Some(&QualificationTypeStatus::Active)
    );
    assert_eq!(qt.is_requestable(), Some(true));
    assert_eq!(qt.auto_granted(), Some(false));
    assert!(qt.creation_time().is_some());

    let err = client
        .create_qualification_type()
        .name("Lab X: took part in study 12")
        .description("again")
        .qualification_type_status(QualificationTypeStatus::Active)
        .send()
        .await
        .expect_err("duplicate");
    assert_eq!(
        turk_code(err).as_deref(),
        Some("AWS.MechanicalTurk.QualificationTypeAlreadyExists")
    );

    let err = client
        .create_qualification_type()
        .name("no status")
        .description("d")
        .send()
        .await
        .expect_err("status is required");
    assert_eq!(error_code(err).as_deref(), Some("ParameterValidationError"));

    let got = client
        .get_qualification_type()
        .qualification_type_id(&id)
        .send()
        .await
        .expect("get");
    assert_eq!(got.qualification_type(), created.qualification_type());

    let err = client
        .get_qualification_type()
        .qualification_type_id("3NOSUCHTYPE")
        .send()
        .await
        .expect_err("unknown");
    assert_eq!(
        turk_code(err).as_deref(),
        Some("AWS.MechanicalTurk.QualificationTypeDoesNotExist")
    );

    double.create_qualification_type("Unrelated");
    let listed = client
        .list_qualification_types()
        .query("TOOK PART")
        .must_be_requestable(false)
        .must_be_owned_by_caller(true)
        .send()
        .await
        .expect("list");
    assert_eq!(listed.num_results(), Some(1));
    assert_eq!(
        listed.qualification_types()[0].qualification_type_id(),
        Some(id.as_str())
    );
    let listed = client
        .list_qualification_types()
        .query("excludes repeat")
        .must_be_requestable(true)
        .send()
        .await
        .expect("list by description");
    assert_eq!(listed.num_results(), Some(1));
    let all = client
        .list_qualification_types()
        .must_be_requestable(false)
        .send()
        .await
        .expect("list all");
    assert_eq!(all.num_results(), Some(2));

    let err = client
        .list_qualification_types()
        .send()
        .await
        .expect_err("MustBeRequestable is required");
    assert_eq!(error_code(err).as_deref(), Some("ParameterValidationError"));
}

#[tokio::test]
async fn update_notification_settings_replaces_and_deactivates() {
    let double = double().await;
    let client = mturk(&double);
    let hit_type = double.new_hit_type_id();
    client
        .update_notification_settings()
        .hit_type_id(&hit_type)
        .notification(spec(
            "https://sqs.us-east-1.amazonaws.com/123456789012/first",
            &[EventType::AssignmentSubmitted],
        ))
        .active(true)
        .send()
        .await
        .expect("update");
    client
        .update_notification_settings()
        .hit_type_id(&hit_type)
        .notification(spec(
            "https://sqs.us-east-1.amazonaws.com/123456789012/second",
            &[
                EventType::AssignmentSubmitted,
                EventType::AssignmentReturned,
            ],
        ))
        .send()
        .await
        .expect("replace");
    let setting = double.notification_setting(&hit_type).expect("setting");
    assert_eq!(
        setting.destination,
        "https://sqs.us-east-1.amazonaws.com/123456789012/second"
    );
    assert_eq!(setting.transport, "SQS");
    assert_eq!(setting.version, "2014-08-15");
    assert_eq!(
        setting.event_types,
        ["AssignmentSubmitted", "AssignmentReturned"]
    );
    assert!(setting.active);

    client
        .update_notification_settings()
        .hit_type_id(&hit_type)
        .active(false)
        .send()
        .await
        .expect("deactivate");
    let setting = double.notification_setting(&hit_type).expect("setting");
    assert!(!setting.active);
    assert_eq!(
        setting.destination,
        "https://sqs.us-east-1.amazonaws.com/123456789012/second"
    );
}

#[tokio::test]
async fn update_notification_settings_rejects_bad_specifications() {
    let double = double().await;
    let client = mturk(&double);
    let hit_type = double.new_hit_type_id();
    let queue = "https://sqs.us-east-1.amazonaws.com/123456789012/q";
    let bad = [
        NotificationSpecification::builder()
            .destination(queue)
            .transport(NotificationTransport::from("Carrier-Pigeon"))
            .version("2014-08-15")
            .event_types(EventType::AssignmentSubmitted)
            .build(),
        NotificationSpecification::builder()
            .destination(queue)
            .transport(NotificationTransport::Sqs)
            .version("2006-05-05")
            .event_types(EventType::AssignmentSubmitted)
            .build(),
        NotificationSpecification::builder()
            .destination(queue)
            .transport(NotificationTransport::Sqs)
            .version("2014-08-15")
            .set_event_types(Some(Vec::new()))
            .build(),
        NotificationSpecification::builder()
            .destination(queue)
            .transport(NotificationTransport::Sqs)
            .version("2014-08-15")
            .event_types(EventType::from("AssignmentPaid"))
            .build(),
        NotificationSpecification::builder()
            .destination("not a url")
            .transport(NotificationTransport::Sqs)
            .version("2014-08-15")
            .event_types(EventType::AssignmentSubmitted)
            .build(),
    ];
    for spec in bad {
        let spec = spec.expect("complete");
        let err = client
            .update_notification_settings()
            .hit_type_id(&hit_type)
            .notification(spec.clone())
            .send()
            .await
            .expect_err("invalid specification");
        assert_eq!(error_code(err).as_deref(), Some("RequestError"), "{spec:?}");
    }
    assert!(double.notification_setting(&hit_type).is_none());

    let err = client
        .update_notification_settings()
        .hit_type_id(&hit_type)
        .send()
        .await
        .expect_err("neither Notification nor Active");
    assert_eq!(error_code(err).as_deref(), Some("RequestError"));

    let err = client
        .update_notification_settings()
        .hit_type_id("3NOSUCHHITTYPE")
        .notification(spec(queue, &[EventType::AssignmentSubmitted]))
        .send()
        .await
        .expect_err("unknown HIT type");
    assert_eq!(
        turk_code(err).as_deref(),
        Some("AWS.MechanicalTurk.HITTypeDoesNotExist")
    );

    // Email and SNS are stored too.
    client
        .update_notification_settings()
        .hit_type_id(&hit_type)
        .notification(
            NotificationSpecification::builder()
                .destination("lab@example.org")
                .transport(NotificationTransport::Email)
                .version("2014-08-15")
                .event_types(EventType::HitReviewable)
                .build()
                .expect("complete"),
        )
        .send()
        .await
        .expect("email");
    assert_eq!(
        double.notification_setting(&hit_type).map(|s| s.transport),
        Some("Email".to_owned())
    );
}

#[tokio::test]
async fn send_test_event_notification_without_sqs_is_silent() {
    let double = double().await;
    let client = mturk(&double);
    client
        .send_test_event_notification()
        .notification(spec(
            "https://sqs.us-east-1.amazonaws.com/123456789012/q",
            &[EventType::AssignmentSubmitted],
        ))
        .test_event_type(EventType::Ping)
        .send()
        .await
        .expect("test event");
    let deliveries = double.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].event_type, "Ping");
    assert!(matches!(
        deliveries[0].outcome,
        mturk_double::DeliveryOutcome::Failed(_)
    ));

    let err = client
        .send_test_event_notification()
        .notification(spec(
            "https://sqs.us-east-1.amazonaws.com/123456789012/q",
            &[EventType::AssignmentSubmitted],
        ))
        .test_event_type(EventType::from("Nonsense"))
        .send()
        .await
        .expect_err("unknown test event type");
    assert_eq!(error_code(err).as_deref(), Some("RequestError"));
}

#[tokio::test]
async fn get_account_balance() {
    let double = double().await;
    let out = mturk(&double)
        .get_account_balance()
        .send()
        .await
        .expect("balance");
    assert_eq!(out.available_balance(), Some("10000.00"));
    assert_eq!(double.call_count("GetAccountBalance"), 1);
    assert_eq!(double.calls()[0].request, serde_json::json!({}));
}

#[tokio::test]
async fn submit_assignment_refusals() {
    let double = double().await;
    let hit = double.create_hit(&double.new_hit_type_id());
    double
        .submit_assignment(&hit, "A1ONCE")
        .await
        .expect("first");
    assert!(double.submit_assignment(&hit, "A1ONCE").await.is_err());
    assert!(double
        .submit_assignment(&hit, "not-a-worker")
        .await
        .is_err());
    assert!(double
        .submit_assignment("3NOSUCHHIT", "A1ONCE")
        .await
        .is_err());
    double.dispose_hit(&hit);
    assert!(double.submit_assignment(&hit, "A1OTHER").await.is_err());
}
