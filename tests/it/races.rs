//! The promise under races and stale events, each interleaving forced
//! deterministically: the MTurk double holds one call at its door (before
//! it takes effect) while the other side runs.
//!
//! - a stale notification (delayed, redriven) never undoes a release;
//! - a release racing a grant in flight: the release waits the grant out,
//!   revokes, and the handler settles the participation as released;
//! - a release between the handler's decision and its last write: the
//!   handler's write fails on the worker's version and it decides again;
//! - copies of one notification on two instances cost one look-up and one grant;
//! - a copy whose lease another copy took over is retried, never acknowledged
//!   with nothing recorded;
//! - learners of the lab's CustomerId at once all keep the first one;
//! - two batches on one instance at once each count only their own MTurk calls.

use std::sync::Arc;
use std::time::Duration;

use mturk_exclusion::exclusion::{Excluder, Outcome, Releases, Timing};
use mturk_exclusion::handler::Failure;
use mturk_exclusion::ids::{AssignmentId, QualificationTypeId, WorkerId};
use mturk_exclusion::ledger::{AgainIf, Begin, ExclusionState, Finished, Settled, ToSettle};
use mturk_exclusion::mturk::Mturk;
use mturk_exclusion::rate::RateLimiter;
use testkit::pipeline::{document, record, submitted, Pipeline};
use tokio::time::Instant;

const GRANT: &str = "AssociateQualificationWithWorker";
const LOOKUP: &str = "GetAssignment";

/// The lab's side (what the CLI builds), on the pipeline's clients.
fn lab(p: &Pipeline) -> Excluder {
    Excluder::new(
        Mturk::new(
            p.clients.mturk.clone(),
            Arc::new(RateLimiter::per_second(100.0)),
        ),
        p.ledger.clone(),
        p.qualification.clone(),
    )
    .with_timing(Timing {
        lease: p.config.assignment_lease,
        grant_window: p.config.grant_window,
    })
}

fn worker(id: &str) -> WorkerId {
    WorkerId::parse(id).unwrap()
}

async fn standing(p: &Pipeline, w: &str) -> ExclusionState {
    p.ledger
        .exclusion(&worker(w), &p.qualification)
        .await
        .unwrap()
        .expect("the ledger knows the worker")
        .state
}

#[tokio::test]
async fn a_stale_notification_does_not_undo_a_release() {
    let p = Pipeline::start().await;
    let w = "A1STALEWORKER";
    // A0's notification is delayed (throttled into the DLQ, or in flight).
    p.double.lose_deliveries_to(&p.queues.url);
    let hit0 = p.double.create_hit(&p.hit_type);
    let a0 = p.double.submit_assignment(&hit0, w).await.unwrap();
    p.double.clear_faults();
    // A1 is handled: W is excluded.
    let hit1 = p.double.create_hit(&p.hit_type);
    p.double.submit_assignment(&hit1, w).await.unwrap();
    p.drain().await;
    assert!(p.granted(w));
    // The lab releases W.
    let released = lab(&p)
        .release_worker(&worker(w), None, None)
        .await
        .unwrap();
    assert_eq!(released.changed_since, None);
    assert!(!p.granted(w));
    // Then A0's notification arrives (a redrive, or simply late).
    p.send(a0.notification.as_deref().unwrap()).await;
    p.drain().await;

    assert!(
        !p.granted(w),
        "an event older than the release excluded the worker again"
    );
    assert_eq!(p.double.call_count(GRANT), 1);
    assert_eq!(standing(&p, w).await, ExclusionState::Released);
    let a0 = p
        .ledger
        .participation(&AssignmentId::parse(&a0.assignment_id).unwrap())
        .await
        .unwrap()
        .expect("A0 is recorded");
    assert!(
        a0.released_at.is_some(),
        "A0 is recorded as released: {a0:?}"
    );
    assert!(a0.excluded_at.is_none());

    // A submission made after the release excludes W again.
    let hit2 = p.double.create_hit(&p.hit_type);
    p.double.submit_assignment(&hit2, w).await.unwrap();
    p.drain().await;
    assert!(p.granted(w));
    assert_eq!(standing(&p, w).await, ExclusionState::Excluded);
}

#[tokio::test]
async fn a_backfill_of_an_older_study_keeps_a_released_worker_released_unless_asked() {
    let p = Pipeline::start().await;
    let w = "A1BACKFILLED";
    let hit0 = p.double.create_hit(&p.hit_type);
    p.double.lose_deliveries_to(&p.queues.url);
    let old = p.double.submit_assignment(&hit0, w).await.unwrap();
    p.double.clear_faults();
    let hit1 = p.double.create_hit(&p.hit_type);
    p.double.submit_assignment(&hit1, w).await.unwrap();
    p.drain().await;
    let lab = lab(&p);
    lab.release_worker(&worker(w), None, None).await.unwrap();

    let a = p
        .clients
        .mturk
        .get_assignment()
        .assignment_id(&old.assignment_id)
        .send()
        .await
        .unwrap();
    let submit = a.assignment.unwrap().submit_time.unwrap();
    let new = mturk_exclusion::ledger::NewParticipation {
        worker_id: worker(w),
        assignment_id: AssignmentId::parse(&old.assignment_id).unwrap(),
        hit_id: mturk_exclusion::ids::HitId::parse(&hit0).unwrap(),
        hit_type_id: None,
        submit_time: time::OffsetDateTime::from_unix_timestamp(submit.secs()).ok(),
        learned: mturk_exclusion::ledger::Learned::Backfill,
    };
    // The dry run and the real run decide alike.
    assert_eq!(
        lab.predict_participation(&new, Releases::Respect)
            .await
            .unwrap(),
        Outcome::KeptReleased
    );
    assert_eq!(
        lab.exclude_participation(new.clone(), Releases::Respect)
            .await
            .unwrap(),
        Outcome::KeptReleased
    );
    assert!(!p.granted(w));
    assert_eq!(standing(&p, w).await, ExclusionState::Released);
    // Asked explicitly, the lab's new decision wins.
    assert_eq!(
        lab.exclude_worker(&worker(w), mturk_exclusion::ledger::Learned::Manual)
            .await
            .unwrap(),
        Outcome::Excluded
    );
    assert!(p.granted(w));
}

#[tokio::test]
async fn a_release_racing_a_grant_in_flight_stands() {
    let p = Pipeline::start().await;
    let w = "A1RACEGRANT";
    let hit = p.double.create_hit(&p.hit_type);
    // The handler's grant is held at MTurk's door.
    let gate = p.double.hold_next(GRANT, 1);
    let s = p.double.submit_assignment(&hit, w).await.unwrap();
    let body = s.notification.clone().unwrap();
    let handler = p.handler.clone();
    let handling = tokio::spawn(async move {
        handler
            .process(
                vec![record("m1", &body)],
                Instant::now() + Duration::from_secs(60),
            )
            .await
            .unwrap()
    });
    tokio::time::timeout(Duration::from_secs(20), gate.arrived())
        .await
        .expect("the handler reached its grant");
    // The ledger says excluded (ledger first); the lab releases now.
    assert_eq!(standing(&p, w).await, ExclusionState::Excluded);
    let lab = lab(&p);
    let releasing = tokio::spawn({
        let w = worker(w);
        async move { lab.release_worker(&w, None, None).await.unwrap() }
    });
    // Give the release time to record itself and start waiting; then the
    // held grant lands on MTurk.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(standing(&p, w).await, ExclusionState::Released);
    assert_eq!(
        p.double.call_count("DisassociateQualificationFromWorker"),
        0,
        "the release revoked before the grant window closed"
    );
    gate.open();
    let report = handling.await.unwrap();
    let release = tokio::time::timeout(Duration::from_secs(30), releasing)
        .await
        .expect("the release ends after the grant window")
        .unwrap();

    // The handler lost the race and decided again: kept released.
    match &report.records[0].1 {
        Ok(summary) => assert_eq!(summary.settled.kept_released, 1, "{summary:?}"),
        Err(f) => panic!("record failed: {f}"),
    }
    // The release revoked after the grant landed: MTurk agrees with the ledger.
    assert!(!p.granted(w), "a grant in flight undid the release");
    assert_eq!(standing(&p, w).await, ExclusionState::Released);
    assert_eq!(release.changed_since, None);
    let participation = p
        .ledger
        .participation(&AssignmentId::parse(&s.assignment_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert!(participation.released_at.is_some(), "{participation:?}");
}

#[tokio::test]
async fn a_release_between_decision_and_last_write_makes_the_handler_decide_again() {
    let p = Pipeline::start().await;
    let w = worker("A1RACEWRITE");
    let q: &QualificationTypeId = &p.qualification;
    let hit = p.double.create_hit(&p.hit_type);
    p.double.submit_assignment(&hit, w.as_str()).await.unwrap();
    p.drain().await;
    // A second submission: the handler reads "already excluded" (no grant)...
    let hit2 = p.double.create_hit(&p.hit_type);
    let s2 = p.double.submit_assignment(&hit2, w.as_str()).await.unwrap();
    let new = mturk_exclusion::ledger::NewParticipation {
        worker_id: w.clone(),
        assignment_id: AssignmentId::parse(&s2.assignment_id).unwrap(),
        hit_id: mturk_exclusion::ids::HitId::parse(&hit2).unwrap(),
        hit_type_id: None,
        submit_time: Some(time::OffsetDateTime::now_utc() - time::Duration::seconds(5)),
        learned: mturk_exclusion::ledger::Learned::Backfill,
    };
    let now = time::OffsetDateTime::now_utc();
    let begun = p
        .ledger
        .begin_exclusion(
            &w,
            q,
            AgainIf::SubmittedAfterRelease(new.submit_time),
            "A2",
            now,
            time::Duration::seconds(6),
        )
        .await
        .unwrap();
    let Begin::AlreadyExcluded { version } = begun else {
        panic!("expected already excluded, got {begun:?}")
    };
    // ...the lab releases W (its index does not show A2 yet)...
    lab(&p).release_worker(&w, None, None).await.unwrap();
    // ...and the handler's last write, based on what it read, fails.
    let finished = p
        .ledger
        .finish_exclusion(
            ToSettle::New {
                participation: &new,
                lease_owner: None,
            },
            q,
            version,
            Settled::Excluded { granted: false },
            None,
            now,
        )
        .await
        .unwrap();
    assert_eq!(finished, Finished::WorkerChanged);
    assert!(
        p.ledger
            .participation(&new.assignment_id)
            .await
            .unwrap()
            .is_none(),
        "nothing was written"
    );
    // Deciding again (the whole path) keeps A2 released: it was submitted before the release.
    assert_eq!(
        lab(&p)
            .exclude_participation(new.clone(), Releases::Respect)
            .await
            .unwrap(),
        Outcome::KeptReleased
    );
    assert!(!p.granted(w.as_str()));
}

#[tokio::test]
async fn copies_on_two_instances_cost_one_lookup_and_one_grant() {
    let p = Pipeline::start().await;
    let hit = p.double.create_hit(&p.hit_type);
    p.double.lose_deliveries_to(&p.queues.url);
    let s = p
        .double
        .submit_assignment(&hit, "A1TWOCOPIES")
        .await
        .unwrap();
    let body = document(
        "doc-copies",
        &[submitted(&p.hit_type, &hit, &s.assignment_id)],
    );
    let first = p.handler.clone();
    let second = p.handler_with(|_| {});
    // The first instance takes the lease and is held at its look-up.
    let gate = p.double.hold_next(LOOKUP, 1);
    let handling = tokio::spawn({
        let body = body.clone();
        async move {
            first
                .process(
                    vec![record("m1", &body)],
                    Instant::now() + Duration::from_secs(60),
                )
                .await
                .unwrap()
        }
    });
    tokio::time::timeout(Duration::from_secs(20), gate.arrived())
        .await
        .expect("the first copy reached its look-up");
    // The second copy, on another instance, finds the live lease: no MTurk call.
    let copy = second
        .process(
            vec![record("m2", &body)],
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(
        matches!(&copy.records[0].1, Err(Failure::UnderWay(reason)) if reason.contains("another copy")),
        "{:?}",
        copy.records[0].1
    );
    gate.open();
    let done = handling.await.unwrap();
    assert!(done.records[0].1.is_ok(), "{:?}", done.records[0].1);
    // Redelivered after the first finished, the copy is a duplicate.
    let again = second
        .process(
            vec![record("m2", &body)],
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(again.records[0].1.as_ref().unwrap().settled.duplicates, 1);
    assert_eq!(p.double.call_count(LOOKUP), 1);
    assert_eq!(p.double.call_count(GRANT), 1);
    assert!(p.granted("A1TWOCOPIES"));
}

/// A copy of a new submission's notification on an instance whose lease
/// lasts only 400 ms, held at its grant; the test then plays the other copy.
struct SlowCopy {
    p: Pipeline,
    assignment: AssignmentId,
    body: String,
    /// The instance the other copy of the notification lands on.
    other: Arc<mturk_exclusion::handler::Handler>,
    grant: testkit::mturk_double::Gate,
    handling: tokio::task::JoinHandle<mturk_exclusion::handler::BatchReport>,
}

async fn slow_copy_held_at_its_grant(worker: &str, doc_id: &str) -> SlowCopy {
    let p = Pipeline::with(testkit::pipeline::Options {
        // Attempts outlast the held calls, so the SDK does not retry them.
        limits: mturk_exclusion::aws::Limits {
            attempt: Duration::from_secs(10),
            operation: Duration::from_secs(20),
            ..testkit::pipeline::Options::default().limits
        },
        ..testkit::pipeline::Options::default()
    })
    .await;
    let hit = p.double.create_hit(&p.hit_type);
    p.double.lose_deliveries_to(&p.queues.url);
    let s = p.double.submit_assignment(&hit, worker).await.unwrap();
    let assignment = AssignmentId::parse(&s.assignment_id).unwrap();
    let body = document(doc_id, &[submitted(&p.hit_type, &hit, &s.assignment_id)]);
    let slow = p.handler_with(|c| c.assignment_lease = Duration::from_millis(400));
    let other = p.handler_with(|_| {});
    let grant = p.double.hold_next(GRANT, 1);
    let handling = tokio::spawn({
        let body = body.clone();
        async move {
            slow.process(
                vec![record("m1", &body)],
                Instant::now() + Duration::from_secs(60),
            )
            .await
            .unwrap()
        }
    });
    tokio::time::timeout(Duration::from_secs(20), grant.arrived())
        .await
        .expect("the slow copy reached its grant");
    // Its lease runs out.
    tokio::time::sleep(Duration::from_millis(600)).await;
    SlowCopy {
        p,
        assignment,
        body,
        other,
        grant,
        handling,
    }
}

/// A slow copy's last write finds the participation another copy recorded
/// as pending (its lease ran out while the slow copy's grant was held; the
/// other copy found the grant in flight and gave up, leaving the worker it
/// looked up as pending). The slow copy must settle that participation, not
/// call it a duplicate and let its message be deleted with the
/// participation unfinished (fixed in 64ab697).
#[tokio::test]
async fn a_participation_another_copy_left_pending_is_settled_not_called_a_duplicate() {
    let w = "A1PENDINGTAKEN";
    let SlowCopy {
        p,
        assignment,
        body,
        other,
        grant: gate,
        handling,
    } = slow_copy_held_at_its_grant(w, "doc-pending").await;
    // The message comes back to another instance, which takes the lease
    // over, looks the worker up, finds the grant in flight, and leaves the
    // participation pending.
    let copy = other
        .process(
            vec![record("m2", &body)],
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert!(
        matches!(&copy.records[0].1, Err(Failure::UnderWay(reason)) if reason.contains("in flight")),
        "{:?}",
        copy.records[0].1
    );
    let pending = p.ledger.participation(&assignment).await.unwrap();
    assert!(
        matches!(&pending, Some(x) if x.excluded_at.is_none() && x.released_at.is_none()),
        "the other copy left the participation pending: {pending:?}"
    );
    // The slow copy's grant lands; its last write finds the pending item.
    gate.open();
    let done = handling.await.unwrap();
    match &done.records[0].1 {
        Ok(summary) => assert_eq!(
            (summary.settled.excluded, summary.settled.duplicates),
            (1, 0),
            "{summary:?}"
        ),
        Err(f) => panic!("the slow copy failed: {f}"),
    }
    let settled = p.ledger.participation(&assignment).await.unwrap().unwrap();
    assert!(
        settled.excluded_at.is_some(),
        "the message was acknowledged with the participation still pending: {settled:?}"
    );
    assert!(p.granted(w));
    assert_eq!(standing(&p, w).await, ExclusionState::Excluded);
}

/// A slow copy's last write finds the assignment leased to another copy
/// that has not recorded anything yet (the slow copy's lease ran out while
/// its grant was held). Nothing is recorded, so the slow copy must fail and
/// be retried: acknowledging it would end the notification with no
/// participation if the other copy then failed too. A lease alone is not a
/// participation for the ledger's readers either (an export during a burst
/// must not stop at it).
#[tokio::test]
async fn a_copy_whose_lease_was_taken_over_is_retried_not_acknowledged() {
    let w = "A1LEASETAKEN";
    let SlowCopy {
        p,
        assignment,
        body,
        other,
        grant,
        handling: slow_handling,
    } = slow_copy_held_at_its_grant(w, "doc-lease-taken").await;
    // Another copy takes the lease over and is held at its look-up, so the
    // item holds that copy's lease and nothing else.
    let lookup = p.double.hold_next(LOOKUP, 1);
    let other_handling = tokio::spawn({
        let body = body.clone();
        async move {
            other
                .process(
                    vec![record("m2", &body)],
                    Instant::now() + Duration::from_secs(60),
                )
                .await
                .unwrap()
        }
    });
    tokio::time::timeout(Duration::from_secs(20), lookup.arrived())
        .await
        .expect("the other copy took the lease and reached its look-up");
    assert!(p.ledger.participation(&assignment).await.unwrap().is_none());
    assert!(
        p.ledger
            .all_participations(None)
            .await
            .unwrap()
            .iter()
            .all(|x| x.assignment_id.as_ref() != Some(&assignment)),
        "a lease listed as a participation"
    );

    grant.open();
    let slow_done = slow_handling.await.unwrap();
    assert!(
        matches!(&slow_done.records[0].1, Err(Failure::UnderWay(reason)) if reason.contains("took the assignment over")),
        "the slow copy must be retried: {:?}",
        slow_done.records[0].1
    );
    lookup.open();
    let other_done = other_handling.await.unwrap();
    assert!(
        other_done.records[0].1.is_ok(),
        "{:?}",
        other_done.records[0].1
    );
    let settled = p.ledger.participation(&assignment).await.unwrap().unwrap();
    assert!(settled.excluded_at.is_some(), "{settled:?}");
    assert!(p.granted(w));
    assert_eq!(standing(&p, w).await, ExclusionState::Excluded);
    // The slow copy's retry is a duplicate.
    let again = p
        .handler
        .process(
            vec![record("m1", &body)],
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(again.records[0].1.as_ref().unwrap().settled.duplicates, 1);
}

/// Two `subscribe` runs (or two labs' test events) learning the lab's
/// CustomerId at the same moment: one conditional write wins, and every
/// learner, the losers included, is told the one the ledger kept.
#[tokio::test]
async fn learners_of_the_labs_customer_at_once_all_keep_the_first() {
    use mturk_exclusion::ledger::Heartbeat;
    let p = Pipeline::start().await;
    let now = time::OffsetDateTime::now_utc();
    let beat = |customer: &str| Heartbeat {
        event_doc_id: format!("doc-{customer}"),
        event_at: mturk_exclusion::ledger::stamp(now),
        received_at: mturk_exclusion::ledger::stamp(now),
        placeholder_hit_type_id: None,
        customer_id: Some(customer.to_owned()),
        source_account: None,
    };
    let beats: Vec<Heartbeat> = (0..8).map(|i| beat(&format!("A{i}CUSTOMER"))).collect();
    let learned =
        futures::future::join_all(beats.iter().map(|b| p.ledger.learn_own_customer(b, now))).await;

    let kept = p
        .ledger
        .own_customer()
        .await
        .unwrap()
        .expect("one was kept");
    for l in learned {
        assert_eq!(l.unwrap(), kept);
    }
    // Later, another CustomerId is refused the same way.
    let later = p
        .ledger
        .learn_own_customer(&beat("A9LATECOMER"), now)
        .await
        .unwrap();
    assert_eq!(later, kept);
}

/// Two batches on one instance at once (Lambda never does this, but the
/// handler allows it and the benchmarks and the demo do it): each batch's
/// metrics count its own MTurk calls only. Batch A is held at its look-up
/// while batch B runs from start to end, so B's calls land inside A's run.
#[tokio::test]
async fn two_batches_at_once_each_count_their_own_mturk_calls() {
    let p = Pipeline::start().await;
    p.double.lose_deliveries_to(&p.queues.url);
    let hit = p.double.create_hit(&p.hit_type);
    let mut bodies = Vec::new();
    for (i, worker) in ["A1BATCHA", "A2BATCHB", "A3BATCHB", "A4BATCHB"]
        .iter()
        .enumerate()
    {
        let s = p.double.submit_assignment(&hit, worker).await.unwrap();
        bodies.push(document(
            &format!("doc-batch-{i}"),
            &[submitted(&p.hit_type, &hit, &s.assignment_id)],
        ));
    }
    let deadline = || Instant::now() + Duration::from_secs(60);
    let gate = p.double.hold_next(LOOKUP, 1);
    let batch_a = tokio::spawn({
        let handler = p.handler.clone();
        let body = bodies[0].clone();
        async move {
            handler
                .process_measured(vec![record("a1", &body)], deadline())
                .await
        }
    });
    tokio::time::timeout(Duration::from_secs(20), gate.arrived())
        .await
        .expect("batch A reached its look-up");
    let b_records = bodies[1..]
        .iter()
        .enumerate()
        .map(|(i, body)| record(&format!("b{i}"), body))
        .collect();
    let (b_result, b_metrics) = p.handler.process_measured(b_records, deadline()).await;
    gate.open();
    let (a_result, a_metrics) = batch_a.await.unwrap();

    assert!(a_result.unwrap().records.iter().all(|(_, r)| r.is_ok()));
    assert!(b_result.unwrap().records.iter().all(|(_, r)| r.is_ok()));
    // A look-up and a grant per new worker, counted where they were made.
    assert_eq!(a_metrics.mturk_calls, 2, "{a_metrics:?}");
    assert_eq!(b_metrics.mturk_calls, 6, "{b_metrics:?}");
    assert_eq!(
        a_metrics.mturk_calls + b_metrics.mturk_calls,
        (p.double.call_count(LOOKUP) + p.double.call_count(GRANT)) as u64
    );
    assert_eq!(
        (
            a_metrics.summary.settled.excluded,
            b_metrics.summary.settled.excluded
        ),
        (1, 3)
    );
}
