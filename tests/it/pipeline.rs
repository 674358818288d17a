//! The exclusion pipeline end to end: MTurk double → SQS (moto) → event
//! source loop → the real handler → DynamoDB Local and back to the double.

use std::time::Duration;

use mturk_exclusion::handler::{self, Failure};
use mturk_exclusion::ids::{AssignmentId, WorkerId};
use mturk_exclusion::ledger::ExclusionState;
use testkit::mturk_double::Fault;
use testkit::pipeline::{document, record, submitted, Options, Pipeline};
use tokio::time::Instant;

#[tokio::test]
async fn a_submission_excludes_its_worker_silently() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    let s = p
        .double
        .submit_assignment(&hit, "A1WORKERONE")
        .await
        .unwrap();

    let totals = p.drain().await;

    assert_eq!((totals.records, totals.failed_records), (1, 0));
    assert!(p.granted("A1WORKERONE"));
    p.assert_every_grant_silent();
    let assignment = AssignmentId::parse(&s.assignment_id).unwrap();
    let participation = p.ledger.participation(&assignment).await.unwrap().unwrap();
    assert_eq!(participation.worker_id.as_str(), "A1WORKERONE");
    assert_eq!(
        participation.hit_id.as_ref().map(|h| h.as_str()),
        Some(hit.as_str())
    );
    assert_eq!(
        participation.hit_type_id.as_ref().map(|t| t.as_str()),
        Some(p.hit_type.as_str())
    );
    assert!(matches!(
        participation.learned,
        mturk_exclusion::ledger::Learned::Notification { .. }
    ));
    assert!(participation.submit_time.is_some());
    assert!(participation.event_doc_id.is_some());
    assert!(participation.excluded_at.is_some());
    let exclusion = p
        .ledger
        .exclusion(&WorkerId::parse("A1WORKERONE").unwrap(), &p.qualification)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exclusion.state, ExclusionState::Excluded);
    assert_eq!(
        exclusion.excluded_because.as_deref(),
        Some(s.assignment_id.as_str())
    );
    assert!(p.dead_letters().await.is_empty());
    // No rejections, no blocks, no revocations: only a lookup and a grant.
    let ops: Vec<_> = p.double.calls().into_iter().map(|c| c.operation).collect();
    assert_eq!(
        ops,
        [
            "UpdateNotificationSettings",
            "GetAssignment",
            "AssociateQualificationWithWorker"
        ]
    );
}

#[tokio::test]
async fn several_events_in_one_record_all_count() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    let workers = ["A1FIRST", "A2SECOND", "A3THIRD"];
    let mut events = Vec::new();
    for w in workers {
        let a =
            p.double
                .add_assignment(&hit, w, testkit::mturk_double::AssignmentStatus::Submitted);
        events.push(submitted(&p.hit_type, &hit, &a));
    }
    p.send(&document("doc-several", &events)).await;

    let totals = p.drain().await;

    assert_eq!((totals.records, totals.failed_records), (1, 0));
    for w in workers {
        assert!(p.granted(w), "{w} not excluded");
    }
    assert_eq!(p.double.call_count("AssociateQualificationWithWorker"), 3);
}

#[tokio::test]
async fn duplicates_change_nothing() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    let s = p.double.submit_assignment(&hit, "A1REPEAT").await.unwrap();
    p.drain().await;
    let body = s.notification.clone().unwrap();
    // The same message again, and the same EventDocId in a different message
    // that also names the assignment twice.
    p.send(&body).await;
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    let doc_id = doc["EventDocId"].as_str().unwrap();
    let event = submitted(&p.hit_type, &hit, &s.assignment_id);
    p.send(&document(doc_id, &[event.clone(), event])).await;

    let totals = p.drain().await;

    assert_eq!((totals.records, totals.failed_records), (2, 0));
    assert!(p.granted("A1REPEAT"));
    // The worker was looked up and granted once; duplicates were answered from the ledger.
    assert_eq!(p.double.call_count("GetAssignment"), 1);
    assert_eq!(p.double.call_count("AssociateQualificationWithWorker"), 1);
    let participations = p
        .ledger
        .participations_of(&WorkerId::parse("A1REPEAT").unwrap())
        .await
        .unwrap();
    assert_eq!(participations.len(), 1);
}

#[tokio::test]
async fn concurrent_invocations_on_one_assignment_count_once() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    let a = p.double.add_assignment(
        &hit,
        "A1RACER",
        testkit::mturk_double::AssignmentStatus::Submitted,
    );
    let body = document("doc-race", &[submitted(&p.hit_type, &hit, &a)]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let (r1, r2) = tokio::join!(
        p.handler.process(vec![record("m1", &body)], deadline),
        p.handler.process(vec![record("m2", &body)], deadline),
    );
    assert!(r1.unwrap().response().batch_item_failures.is_empty());
    assert!(r2.unwrap().response().batch_item_failures.is_empty());
    assert!(p.granted("A1RACER"));
    p.assert_every_grant_silent();
    // A race may cost one extra (harmless) lookup and grant, never a second participation.
    assert!(p.double.call_count("AssociateQualificationWithWorker") <= 2);
    let participations = p
        .ledger
        .participations_of(&WorkerId::parse("A1RACER").unwrap())
        .await
        .unwrap();
    assert_eq!(participations.len(), 1);
    assert!(participations[0].excluded_at.is_some());
}

#[tokio::test]
async fn a_ping_leaves_a_heartbeat_and_calls_no_one() {
    let p = Pipeline::start().await;
    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    let ping = serde_json::json!({
        "EventType": "Ping",
        "EventTimestamp": "2026-03-02T17:04:11Z",
        "HITTypeId": "KDNWS3GH4ZNT6RVCHVVDMCQ7DZ3BA1",
        "HITId": "3XJOUITW8URHJMX7F00H20LGRIAKAJ",
    });
    p.send(&document("doc-ping", &[ping])).await;

    let totals = p.drain().await;

    assert_eq!((totals.records, totals.failed_records), (1, 0));
    let beats = p.ledger.heartbeats_since(before).await.unwrap();
    assert_eq!(beats.len(), 1);
    assert_eq!(beats[0].event_doc_id, "doc-ping");
    assert_eq!(
        beats[0].placeholder_hit_type_id.as_deref(),
        Some("KDNWS3GH4ZNT6RVCHVVDMCQ7DZ3BA1")
    );
    // Only the test's own subscription call reached MTurk.
    assert_eq!(p.double.total_calls(), 1);
}

#[tokio::test]
async fn a_test_event_sent_through_mturk_comes_back_as_a_heartbeat() {
    use aws_sdk_mturk::types::{EventType, NotificationSpecification, NotificationTransport};
    let p = Pipeline::start().await;
    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    p.mturk
        .send_test_event_notification()
        .notification(
            NotificationSpecification::builder()
                .destination(&p.queues.url)
                .transport(NotificationTransport::Sqs)
                .version("2014-08-15")
                .event_types(EventType::AssignmentSubmitted)
                .build()
                .unwrap(),
        )
        .test_event_type(EventType::Ping)
        .send()
        .await
        .unwrap();

    p.drain().await;

    assert_eq!(p.ledger.heartbeats_since(before).await.unwrap().len(), 1);
}

#[tokio::test]
async fn other_event_types_are_acknowledged_without_mturk_calls() {
    let p = Pipeline::start().await;
    let mut reviewable = submitted(&p.hit_type, "3ZC62PVYDIVS0QE7NFAMN5S6YNQXXN", "X");
    reviewable["EventType"] = "HITReviewable".into();
    reviewable.as_object_mut().unwrap().remove("AssignmentId");
    p.send(&document("doc-reviewable", &[reviewable])).await;

    let totals = p.drain().await;

    assert_eq!((totals.records, totals.failed_records), (1, 0));
    assert_eq!(p.double.total_calls(), 1);
}

#[tokio::test]
async fn a_malformed_record_fails_alone_and_reaches_the_dead_letter_queue() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    let a = p.double.add_assignment(
        &hit,
        "A1GOOD",
        testkit::mturk_double::AssignmentStatus::Submitted,
    );
    let good = document("doc-good", &[submitted(&p.hit_type, &hit, &a)]);
    let bad_id = document("doc-bad-id", &[submitted(&p.hit_type, &hit, "NOT AN ID")]);

    // In one batch, each record gets its own outcome.
    let report = p
        .handler
        .process(
            vec![
                record("m-good", &good),
                record("m-json", "{not json"),
                record("m-id", &bad_id),
            ],
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    let failed: Vec<_> = report
        .response()
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(failed, ["m-json", "m-id"]);
    assert!(
        matches!(&report.records[2].1, Err(Failure::Malformed(m)) if m.contains("AssignmentId"))
    );
    assert!(p.granted("A1GOOD"));

    // Through the queue, the poison bodies end in the DLQ after maxReceiveCount.
    p.send("{not json").await;
    p.send(&good).await;
    let totals = p.drain().await;
    assert_eq!(totals.failed_records, 3, "{totals:?}"); // three receives of the bad one
    assert_eq!(p.dead_letters().await, ["{not json"]);
}

#[tokio::test]
async fn throttling_is_retried_until_it_passes() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    // More throttles than one invocation's SDK retries absorb (3 attempts).
    p.double
        .fail_next(Some("GetAssignment"), 4, Fault::Throttle);
    p.double.submit_assignment(&hit, "A1PATIENT").await.unwrap();

    let totals = p.drain().await;

    // The throttled calls waited for their next slot inside the invocation
    // (the SDK retries none of them): the record never bounced through SQS.
    assert_eq!(
        totals.failed_invocations + totals.failed_records,
        0,
        "{totals:?}"
    );
    assert!(p.granted("A1PATIENT"));
    assert!(p.dead_letters().await.is_empty());
    assert_eq!(p.double.call_count("GetAssignment"), 5);
}

#[tokio::test]
async fn a_batch_that_is_all_throttled_fails_whole_so_lambda_backs_off() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    let a = p.double.add_assignment(
        &hit,
        "A1SLOW",
        testkit::mturk_double::AssignmentStatus::Submitted,
    );
    p.double.throttle_above(Some(0.000_001));
    p.double.fail_next(None, 100, Fault::Throttle);
    let body = document("doc-t", &[submitted(&p.hit_type, &hit, &a)]);
    let result = p
        .handler
        .process(
            vec![record("m1", &body), record("m2", &body)],
            Instant::now() + Duration::from_secs(30),
        )
        .await;
    assert!(
        matches!(
            result,
            Err(mturk_exclusion::handler::BatchError::AllThrottled(2))
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn persistent_failure_ends_in_the_dead_letter_queue_with_nothing_lost() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    p.double.fail_fraction(
        Some("AssociateQualificationWithWorker"),
        1.0,
        Fault::ServiceFault,
        7,
    );
    let s = p.double.submit_assignment(&hit, "A1UNLUCKY").await.unwrap();

    let totals = p.drain().await;

    assert_eq!(totals.deleted, 0);
    let dead = p.dead_letters().await;
    assert_eq!(dead.len(), 1);
    // The ledger already knows who took part; only the grant is missing.
    let assignment = AssignmentId::parse(&s.assignment_id).unwrap();
    let participation = p.ledger.participation(&assignment).await.unwrap().unwrap();
    assert_eq!(participation.worker_id.as_str(), "A1UNLUCKY");
    assert!(participation.excluded_at.is_none());
    assert!(!p.granted("A1UNLUCKY"));

    // Once MTurk recovers, the redriven message completes the exclusion.
    p.double.clear_faults();
    p.send(&dead[0]).await;
    p.drain().await;
    assert!(p.granted("A1UNLUCKY"));
    assert!(p
        .ledger
        .participation(&assignment)
        .await
        .unwrap()
        .unwrap()
        .excluded_at
        .is_some());
}

#[tokio::test]
async fn a_crash_between_ledger_and_grant_is_repaired_by_redelivery() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    // The first invocation records the participation, then dies at the grant
    // (every attempt of it fails), leaving the message undeleted.
    p.double
        .fail_next(Some("AssociateQualificationWithWorker"), 3, Fault::Drop);
    let s = p.double.submit_assignment(&hit, "A1CRASH").await.unwrap();

    let totals = p.drain().await;

    assert!(totals.failed_records >= 1, "{totals:?}");
    assert!(p.granted("A1CRASH"));
    // The redelivery found the worker in the ledger instead of asking MTurk again.
    assert_eq!(p.double.call_count("GetAssignment"), 1);
    let assignment = AssignmentId::parse(&s.assignment_id).unwrap();
    assert!(p
        .ledger
        .participation(&assignment)
        .await
        .unwrap()
        .unwrap()
        .excluded_at
        .is_some());
}

#[tokio::test]
async fn a_released_participation_is_not_granted_again_by_a_stale_event() {
    let p = Pipeline::start().await;
    let worker = WorkerId::parse("A1FORGIVEN").unwrap();
    let hit = p.double.create_hit(&p.hit_type);
    let s = p
        .double
        .submit_assignment(&hit, worker.as_str())
        .await
        .unwrap();
    p.drain().await;
    assert!(p.granted(worker.as_str()));

    // The lab releases the worker: ledger first, then MTurk, without a reason.
    let released = p
        .ledger
        .record_release(
            &worker,
            &p.qualification,
            None,
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    assert_eq!(released.participations.len(), 1);
    p.mturk
        .disassociate_qualification_from_worker()
        .worker_id(worker.as_str())
        .qualification_type_id(p.qualification.as_str())
        .send()
        .await
        .unwrap();

    // A stale redelivery of the old notification changes nothing.
    p.send(s.notification.as_deref().unwrap()).await;
    p.drain().await;
    assert!(!p.granted(worker.as_str()));
    assert_eq!(p.double.call_count("AssociateQualificationWithWorker"), 1);

    // A new submission by the same worker excludes them again.
    let hit2 = p.double.create_hit(&p.hit_type);
    p.double
        .submit_assignment(&hit2, worker.as_str())
        .await
        .unwrap();
    p.drain().await;
    assert!(p.granted(worker.as_str()));
    let exclusion = p
        .ledger
        .exclusion(&worker, &p.qualification)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exclusion.state, ExclusionState::Excluded);
}

#[tokio::test]
async fn the_deadline_is_met_and_unstarted_records_fail() {
    let options = Options {
        configure: |c| {
            c.record_concurrency = 1;
            c.deadline_margin = Duration::from_millis(1500);
        },
        ..Options::default()
    };
    let p = Pipeline::with(options).await;
    let hit = p.double.create_hit(&p.hit_type);
    p.double.set_latency(Duration::from_millis(400));
    let records: Vec<_> = (0..6)
        .map(|i| {
            let a = p.double.add_assignment(
                &hit,
                &format!("A{i}LATE"),
                testkit::mturk_double::AssignmentStatus::Submitted,
            );
            record(
                &format!("m{i}"),
                &document(&format!("d{i}"), &[submitted(&p.hit_type, &hit, &a)]),
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(3);

    let report = p.handler.process(records, deadline).await.unwrap();

    assert!(Instant::now() < deadline, "answered after the deadline");
    let done = report.records.iter().filter(|(_, r)| r.is_ok()).count();
    let late = report
        .records
        .iter()
        .filter(|(_, r)| matches!(r, Err(Failure::Deadline)))
        .count();
    assert!(done >= 1, "{report:?}");
    assert!(late >= 1, "{report:?}");
    assert_eq!(done + late, 6);
}

#[tokio::test]
async fn a_batch_with_a_nameless_record_fails_whole() {
    let p = Pipeline::start().await;
    let mut nameless = record("x", "{}");
    nameless.message_id = None;
    let result = p
        .handler
        .process(
            vec![record("m1", "{}"), nameless],
            Instant::now() + Duration::from_secs(5),
        )
        .await;
    assert!(matches!(
        result,
        Err(mturk_exclusion::handler::BatchError::MissingMessageId(1))
    ));
}

#[tokio::test]
async fn unknown_senders_are_refused_only_when_the_lab_asks() {
    let options = Options {
        configure: |c| c.reject_unknown_senders = true,
        ..Options::default()
    };
    let strict = Pipeline::with(options).await;
    let hit = strict.double.create_hit(&strict.hit_type);
    let a = strict.double.add_assignment(
        &hit,
        "A1FORGED",
        testkit::mturk_double::AssignmentStatus::Submitted,
    );
    let body = document("doc-f", &[submitted(&strict.hit_type, &hit, &a)]);
    let mut forged = record("m1", &body);
    forged
        .attributes
        .insert("SenderId".into(), "AIDAEVIL".into());
    let report = strict
        .handler
        .process(
            vec![forged.clone()],
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(matches!(
        &report.records[0].1,
        Err(Failure::UnknownSender(_))
    ));
    assert_eq!(strict.double.call_count("GetAssignment"), 0);

    // By default such a record only gets a warning: the worker still comes from MTurk.
    let lenient = Pipeline::start().await;
    let hit = lenient.double.create_hit(&lenient.hit_type);
    let a = lenient.double.add_assignment(
        &hit,
        "A1LOCALTOOL",
        testkit::mturk_double::AssignmentStatus::Submitted,
    );
    forged.body = Some(document("doc-f", &[submitted(&lenient.hit_type, &hit, &a)]));
    let report = lenient
        .handler
        .process(vec![forged], Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert!(report.records[0].1.is_ok());
    assert!(lenient.granted("A1LOCALTOOL"));
}

#[tokio::test]
async fn a_release_between_ledger_write_and_grant_is_honoured_on_redelivery() {
    let p = Pipeline::start().await;
    let worker = WorkerId::parse("A1INBETWEEN").unwrap();
    let hit = p.double.create_hit(&p.hit_type);
    let a = p.double.add_assignment(
        &hit,
        worker.as_str(),
        testkit::mturk_double::AssignmentStatus::Submitted,
    );
    let body = document("doc-between", &[submitted(&p.hit_type, &hit, &a)]);
    let deadline = || Instant::now() + Duration::from_secs(30);

    // The grant fails after the participation was recorded...
    p.double
        .fail_next(Some("AssociateQualificationWithWorker"), 3, Fault::Drop);
    let first = p
        .handler
        .process(vec![record("m1", &body)], deadline())
        .await
        .unwrap();
    assert!(first.records[0].1.is_err());
    // ...and before the redelivery, the lab releases the worker.
    p.ledger
        .record_release(
            &worker,
            &p.qualification,
            None,
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();

    let again = p
        .handler
        .process(vec![record("m1", &body)], deadline())
        .await
        .unwrap();

    assert_eq!(
        again.records[0].1.as_ref().unwrap().settled.kept_released,
        1
    );
    assert!(!p.granted(worker.as_str()));
}

/// The lab's own requester, as `subscribe` learns it from its test event.
async fn learn_the_labs_customer(p: &Pipeline) {
    let now = time::OffsetDateTime::now_utc();
    let stamp = mturk_exclusion::ledger::stamp(now);
    p.ledger
        .learn_own_customer(
            &mturk_exclusion::ledger::Heartbeat {
                event_doc_id: "doc-own-test".into(),
                event_at: stamp.clone(),
                received_at: stamp,
                placeholder_hit_type_id: None,
                customer_id: Some(testkit::mturk_double::CUSTOMER_ID.into()),
                source_account: Some(testkit::mturk_double::SOURCE_ACCOUNT.into()),
            },
            now,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn another_requesters_documents_cost_no_mturk_call_once_the_lab_is_known() {
    use testkit::pipeline::{foreign_document, ping_now};
    let p = Pipeline::start().await;
    learn_the_labs_customer(&p).await;
    let hit = p.double.create_hit(&p.hit_type);
    let own = p
        .double
        .submit_assignment(&hit, "A1OWNWORKER")
        .await
        .unwrap()
        .notification
        .unwrap();
    let foreign_submission = foreign_document(
        "doc-foreign-submitted",
        &[submitted(
            "3FOREIGNHITTYPE",
            "3FOREIGNHIT",
            "3FOREIGNASSIGNMENT",
        )],
    );
    let foreign_ping = foreign_document("doc-foreign-ping", &[ping_now()]);
    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    p.double.clear_calls();

    let report = p
        .handler
        .process(
            vec![
                record("m-own", &own),
                record("m-foreign-submitted", &foreign_submission),
                record("m-foreign-ping", &foreign_ping),
            ],
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();

    let summaries: Vec<_> = report
        .records
        .iter()
        .map(|(id, r)| (id.as_str(), r.clone().expect("every record succeeds")))
        .collect();
    assert_eq!(summaries[0].1.settled.excluded, 1);
    assert_eq!(summaries[0].1.foreign_documents, 0);
    for (id, s) in &summaries[1..] {
        assert_eq!(s.foreign_documents, 1, "{id}: {s:?}");
        assert_eq!(
            (s.settled.excluded, s.heartbeats, s.settled.duplicates),
            (0, 0, 0),
            "{id}"
        );
    }
    // Only the lab's own submission reached MTurk.
    assert_eq!(p.double.call_count("GetAssignment"), 1);
    assert!(p.granted("A1OWNWORKER"));
    // The foreign Ping left no heartbeat that `subscribe` could mistake.
    assert!(p.ledger.heartbeats_since(before).await.unwrap().is_empty());
}

#[tokio::test]
async fn before_the_lab_is_known_every_document_is_handled_as_before() {
    use testkit::pipeline::{foreign_document, ping_now};
    let p = Pipeline::start().await;
    let foreign_ping = foreign_document("doc-foreign-ping", &[ping_now()]);
    let foreign_submission = foreign_document(
        "doc-foreign-submitted",
        &[submitted(
            "3FOREIGNHITTYPE",
            "3FOREIGNHIT",
            "3FOREIGNASSIGNMENT",
        )],
    );
    let before = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    p.double.clear_calls();

    let report = p
        .handler
        .process(
            vec![
                record("m-foreign-ping", &foreign_ping),
                record("m-foreign-submitted", &foreign_submission),
            ],
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap();

    assert_eq!(report.records[0].1.as_ref().unwrap().heartbeats, 1);
    // Looked up (and refused: the assignment is not the lab's), as today.
    assert!(report.records[1].1.is_err(), "{:?}", report.records[1]);
    assert!(p.double.call_count("GetAssignment") >= 1);
    // The heartbeat keeps who sent it, for `subscribe` to judge.
    let beats = p.ledger.heartbeats_since(before).await.unwrap();
    assert_eq!(beats.len(), 1);
    assert_eq!(
        beats[0].customer_id.as_deref(),
        Some(testkit::pipeline::FOREIGN_CUSTOMER_ID)
    );
    assert_eq!(
        beats[0].source_account.as_deref(),
        Some(testkit::pipeline::FOREIGN_ACCOUNT)
    );
}

#[tokio::test]
async fn more_than_ten_failed_records_all_have_their_redelivery_spaced_out() {
    // SQS takes at most 10 visibility changes a request and refuses more
    // whole (scripts/moto-server.py enforces it as SQS does).
    let p = Pipeline::with(Options {
        visibility_secs: 1,
        configure: |c| {
            c.backoff_base = Duration::from_secs(60);
            c.backoff_max = Duration::from_secs(120);
            c.record_concurrency = 10;
        },
        ..Options::default()
    })
    .await;
    const N: usize = 13;
    let hit = p.double.create_hit(&p.hit_type);
    for i in 0..N {
        p.double
            .submit_assignment(&hit, &format!("A1SPACED{i:02}"))
            .await
            .unwrap();
    }
    // Everything MTurk is asked fails for a while: a transient fault.
    p.double
        .fail_next(Some("GetAssignment"), 10_000, Fault::ServiceFault);
    let records = received(&p, N).await;
    assert_eq!(records.len(), N, "all submissions received in one batch");

    let report = p
        .handler
        .process(records, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        report.records.iter().filter(|(_, r)| r.is_err()).count(),
        N,
        "every record failed"
    );
    // The receive gave 20 s; the handler's backoff gives at least 60. Had
    // any chunk been refused, its records would be visible after 20 s.
    tokio::time::sleep(Duration::from_secs(22)).await;
    assert_eq!(
        visible(&p).await.len(),
        0,
        "a failed record came back before its spaced-out redelivery"
    );
}

/// The learned CustomerId is read once per instance, not once per record:
/// an instance that read "nothing learned" keeps that answer until the
/// re-read interval has passed, then picks the learned id up by itself.
#[tokio::test]
async fn an_instance_reads_the_labs_customer_once_and_again_only_after_the_interval() {
    use mturk_exclusion::handler::OWN_CUSTOMER_REREAD;
    use testkit::pipeline::foreign_document;
    let p = Pipeline::start().await;
    let foreign = |n: usize| {
        foreign_document(
            &format!("doc-foreign-{n}"),
            &[submitted(
                "3FOREIGNHITTYPE",
                "3FOREIGNHIT",
                &format!("3FOREIGNASSIGNMENT{n}"),
            )],
        )
    };
    let run = |body: String| {
        let handler = p.handler.clone();
        async move {
            handler
                .process(
                    vec![record("m", &body)],
                    Instant::now() + Duration::from_secs(30),
                )
                .await
                .unwrap()
                .records
                .remove(0)
                .1
        }
    };
    // Cold start: nothing learned yet; handled as before (looked up, refused).
    assert!(run(foreign(1)).await.is_err());
    // subscribe learns the lab's CustomerId meanwhile.
    learn_the_labs_customer(&p).await;
    // The instance does not read again per record: still handled as before.
    p.double.clear_calls();
    assert!(run(foreign(2)).await.is_err());
    assert_eq!(p.double.call_count("GetAssignment"), 1);
    // After the interval, the next foreign document reads again and is skipped.
    tokio::time::sleep(OWN_CUSTOMER_REREAD + Duration::from_secs(1)).await;
    p.double.clear_calls();
    let summary = run(foreign(3)).await.expect("acknowledged");
    assert_eq!(summary.foreign_documents, 1);
    assert_eq!(p.double.total_calls(), 0);
}

/// A worker with two submissions in one burst: the second record finds the
/// first's grant in flight and fails, as it must (the ledger decides once).
/// It comes back in seconds, not after the whole backoff: at 30 s it held a
/// burst open for one worker (the rate bench at R = 20, 2026-12-08: all of
/// its failed records were this).
#[tokio::test]
async fn a_second_submission_that_finds_the_workers_grant_in_flight_comes_back_in_seconds() {
    let p = Pipeline::with(Options {
        visibility_secs: 1,
        configure: |c| {
            c.backoff_base = Duration::from_secs(60);
            c.backoff_max = Duration::from_secs(120);
        },
        ..Options::default()
    })
    .await;
    let w = "A1TWICEINBURST";
    let (first, second) = (
        p.double.create_hit(&p.hit_type),
        p.double.create_hit(&p.hit_type),
    );
    let a1 = p
        .double
        .submit_assignment(&first, w)
        .await
        .unwrap()
        .assignment_id;
    let a2 = p
        .double
        .submit_assignment(&second, w)
        .await
        .unwrap()
        .assignment_id;
    let records = received(&p, 2).await;
    assert_eq!(records.len(), 2, "both submissions received");
    let is_of = |r: &aws_lambda_events::event::sqs::SqsMessage, a: &str| {
        r.body.as_deref().is_some_and(|b| b.contains(a))
    };
    let (one, two): (Vec<_>, Vec<_>) = records.into_iter().partition(|r| is_of(r, &a1));
    assert!(is_of(&two[0], &a2));

    // The first submission's grant is held at MTurk's door.
    let grant = p.double.hold_next("AssociateQualificationWithWorker", 1);
    let first_handler = p.handler_with(|_| {});
    let handling = tokio::spawn(async move {
        first_handler
            .process(one, Instant::now() + Duration::from_secs(60))
            .await
            .unwrap()
    });
    tokio::time::timeout(Duration::from_secs(20), grant.arrived())
        .await
        .expect("the first submission reached its grant");
    let report = p
        .handler
        .process(two, Instant::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        matches!(&report.records[0].1, Err(Failure::UnderWay(reason)) if reason.contains("in flight")),
        "{:?}",
        report.records[0].1
    );
    grant.open();
    assert!(handling.await.unwrap().records[0].1.is_ok());

    // Back within seconds (the backoff alone would keep it away for 60 s),
    // and its participation is then recorded under the worker's exclusion.
    tokio::time::sleep(handler::UNDER_WAY_RETRY + Duration::from_secs(2)).await;
    let back = visible(&p).await;
    assert_eq!(back.len(), 1, "the second submission is back");
    let again = p
        .handler
        .process(
            vec![record(
                back[0].message_id().unwrap(),
                back[0].body().unwrap(),
            )],
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(again.records[0].1.is_ok(), "{:?}", again.records[0].1);
    let second_recorded = p
        .ledger
        .participation(&AssignmentId::parse(&a2).unwrap())
        .await
        .unwrap();
    assert!(
        second_recorded.is_some_and(|x| x.excluded_at.is_some()),
        "the second submission is recorded as excluded"
    );
    assert_eq!(
        p.double.call_count("AssociateQualificationWithWorker"),
        1,
        "one grant for the worker"
    );
}

/// Up to `n` of the queue's messages, received for 20 s as Lambda's event
/// source receives them (their receipt handles, a first receive), as records.
async fn received(p: &Pipeline, n: usize) -> Vec<aws_lambda_events::event::sqs::SqsMessage> {
    let mut records = Vec::new();
    for _ in 0..10 {
        if records.len() >= n {
            break;
        }
        let got = p
            .stack
            .sqs
            .receive_message()
            .queue_url(&p.queues.url)
            .max_number_of_messages(10)
            .visibility_timeout(20)
            .send()
            .await
            .unwrap();
        for m in got.messages.unwrap_or_default() {
            let mut r = record(m.message_id().unwrap(), m.body().unwrap());
            r.receipt_handle = m.receipt_handle.clone();
            r.attributes
                .insert("ApproximateReceiveCount".into(), "1".into());
            records.push(r);
        }
    }
    records
}

/// The queue's messages visible now.
async fn visible(p: &Pipeline) -> Vec<aws_sdk_sqs::types::Message> {
    let got = p.stack.sqs.receive_message().queue_url(&p.queues.url);
    let got = got.max_number_of_messages(10).send().await.unwrap();
    got.messages.unwrap_or_default()
}
